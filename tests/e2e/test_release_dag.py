"""ami_release_<role> with dag.test() against the sandbox: dry run and bad trigger input.

The full release (bake, verify, publish) runs in tests/e2e/test_release_rollout.py, followed by its rollout.
"""

from __future__ import annotations

import pytest
from e2e_fleet import dag_from

pytestmark = pytest.mark.e2e


def _dag(role: str):
    return dag_from("ami_release", f"ami_release_{role}")


def _states(dr):
    return {ti.task_id: ti.state for ti in dr.get_task_instances()}


def test_dry_run_changes_nothing(airflow_db, seeded):
    ec2 = seeded["handle"].client("ec2")
    before = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    dr = _dag("web").test(run_conf={"dry_run": True})
    assert dr.state == "success"
    states = _states(dr)
    assert states["bake"] == "skipped" and states["publish"] == "skipped"
    assert {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]} == before


def test_bad_trigger_conf_fails_in_plan_naming_the_field(airflow_db, seeded):
    ec2 = seeded["handle"].client("ec2")
    before = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    dr = _dag("web").test(run_conf={"base_ami_name": "debian-12-*", "regions": ["us-east-1", "ap-south-1"]})
    states = _states(dr)
    assert states["plan"] == "failed"
    assert states["bake"] in ("upstream_failed", None)
    assert {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]} == before


def test_a_late_scheduled_run_skips_every_task(airflow_db, seeded, monkeypatch):
    """When plan judges the run late (a scheduled run created by unpausing: dag.test can only make manual
    runs, so the judgement is forced here), the whole release is skipped: no bake, no canary, no publish,
    and the run itself succeeds (nothing failed; nothing to alert on)."""
    import phoenix_fleet.pipelines.release_plan as release_plan

    monkeypatch.setattr(release_plan, "late_scheduled_run", lambda *a: "this scheduled run is for the slot at ...")
    ec2 = seeded["handle"].client("ec2")
    before = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    dr = _dag("web").test()
    states = _states(dr)
    assert dr.state == "success", states
    assert states["plan"] == "skipped"
    assert {t: s for t, s in states.items() if s != "skipped"} == {}, states
    assert {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]} == before


def test_skip_bake_releases_an_existing_ami_after_verifying_it(airflow_db, seeded, worker_fleet):
    """skip_bake + ami_id: no Packer build; the branch goes straight to image_under_test (its join), the AMI is
    verified on a canary (and the canary torn down), then versioned and published as the role's latest."""
    h = seeded["handle"]
    ec2, ssm = h.client("ec2"), h.client("ssm")
    instance = h.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[worker_fleet["asg"]])["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=instance, Name="worker-handmade-1")["ImageId"]
    dr = dag_from("ami_release", "ami_release_worker").test(run_conf={"skip_bake": True, "ami_id": ami})
    states = _states(dr)
    assert dr.state == "success", states
    assert states["bake"] == "skipped" and states["image_under_test"] == "success", states
    assert states["verify.terminate_canary"] == "success", states
    assert ssm.get_parameter(Name="/phoenix/images/worker/latest")["Parameter"]["Value"] == ami
    tags = {t["Key"]: t["Value"] for t in ec2.describe_images(ImageIds=[ami])["Images"][0]["Tags"]}
    assert tags["phoenix:verified"] == "true"
    assert tags["phoenix:version"] == ssm.get_parameter(Name="/phoenix/images/worker/latest-version")["Parameter"]["Value"]


def test_a_failed_reverify_of_the_live_image_releases_its_claim_and_demotes_nothing(airflow_db, seeded, worker_fleet):
    """skip_bake on the AMI that latest points at, and its image tests fail on the canary: the run fails, the live
    image stays phoenix:verified=true (the failure is recorded in phoenix:verify-failed), the canary is gone, and
    the run's version claim is released (nothing was published under it)."""
    h = seeded["handle"]
    ec2, ssm = h.client("ec2"), h.client("ssm")
    live = ssm.get_parameter(Name="/phoenix/images/worker/latest")["Parameter"]["Value"]
    ec2.create_tags(Resources=[live], Tags=[
        {"Key": "phoenix-sandbox:ssm-exit-code", "Value": "1"},
        {"Key": "phoenix-sandbox:ssm-output", "Value": (
            "phoenix-check: FAILED test_ssh.py::test_sshd_setting[permitrootlogin]\n"
            "phoenix-image-test: result=fail exit=1 stage=instance role=worker junit=x\n")},
    ])
    dr = dag_from("ami_release", "ami_release_worker").test(run_conf={"skip_bake": True, "ami_id": live})
    states = _states(dr)
    assert dr.state == "failed", states
    assert states["verify.run_image_tests"] == "failed" and states["publish"] in ("upstream_failed", None), states
    assert states["verify.terminate_canary"] == "success" and states["settle_version_claim"] == "success", states
    tags = {t["Key"]: t["Value"] for t in ec2.describe_images(ImageIds=[live])["Images"][0]["Tags"]}
    assert tags["phoenix:verified"] == "true"
    assert tags["phoenix:verify-failed"].startswith("1 image check(s) failed: test_ssh.py::test_sshd_setting")
    assert ssm.get_parameter(Name="/phoenix/images/worker/latest")["Parameter"]["Value"] == live
    canaries = ec2.describe_instances(Filters=[{"Name": "tag:phoenix:canary", "Values": ["true"]},
                                               {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert not [i for r in canaries["Reservations"] for i in r["Instances"]], "a canary was left running"
    plan = [ti for ti in dr.get_task_instances() if ti.task_id == "plan"][0]
    claim = plan.xcom_pull(task_ids="plan", key="claim")
    assert claim and claim["run_id"] == dr.run_id
    assert not ssm.get_parameters(Names=[claim["parameter"]])["Parameters"], "the claim of a failed run stayed"
