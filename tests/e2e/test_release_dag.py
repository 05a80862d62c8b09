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
