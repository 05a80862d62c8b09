"""Release then rollout, end to end with dag.test() in the sandbox: the fleet ends on the new version.

Role ``worker`` (native launch-template backend, strategy replace) so no Terraform state is needed; the
Terraform backend is covered by tests/e2e/test_apply_terraform.py and test_terraform_fleet.py.
"""

from __future__ import annotations

import pytest
from e2e_fleet import dag_from, images_in

pytestmark = pytest.mark.e2e


def test_release_then_rollout_moves_the_fleet(airflow_db, seeded, worker_fleet):
    h = seeded["handle"]
    ssm, ec2 = h.client("ssm"), h.client("ec2")
    # a canary an earlier run left behind (its dagrun_timeout skipped the teardown), past its bound
    orphan = ec2.run_instances(
        ImageId=worker_fleet["old_ami"], MinCount=1, MaxCount=1, InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": k, "Value": v} for k, v in {
                "phoenix:canary": "true", "phoenix:managed-by": "phoenix-fleet", "phoenix:role": "worker",
                "phoenix:verify-run": "manual__timed-out", "phoenix:canary-expires": "2026-01-01T00:00:00+00:00",
            }.items()]}],
    )["Instances"][0]["InstanceId"]
    notes = "Weekly security release: openssl 3.0.15 (CVE-2024-5535).\nNo config change."
    release_dag = dag_from("ami_release", "ami_release_worker")
    release = release_dag.test(run_conf={"release_notes": notes})
    states = {ti.task_id: ti.state for ti in release.get_task_instances()}
    assert release.state == "success", states
    assert states["verify.terminate_canary"] == "success" and states["settle_version_claim"] == "success", states
    plan = [ti for ti in release.get_task_instances() if ti.task_id == "plan"][0]
    assert plan.xcom_pull(task_ids="plan", key="expired_canaries") == [orphan]
    orphan_state = ec2.describe_instances(InstanceIds=[orphan])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert orphan_state in ("shutting-down", "terminated")
    new_ami = ssm.get_parameter(Name="/phoenix/images/worker/latest")["Parameter"]["Value"]
    version = ssm.get_parameter(Name="/phoenix/images/worker/latest-version")["Parameter"]["Value"]
    assert new_ami != worker_fleet["old_ami"]
    image = ec2.describe_images(ImageIds=[new_ami])["Images"][0]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["phoenix:verified"] == "true" and tags["phoenix:version"] == version
    # the published version keeps its claim, naming this run
    claim = ssm.get_parameter(Name=f"/phoenix/images-claims/worker/{version}")["Parameter"]["Value"]
    assert release.run_id in claim
    canaries = ec2.describe_instances(Filters=[{"Name": "tag:phoenix:canary", "Values": ["true"]},
                                               {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert not [i for r in canaries["Reservations"] for i in r["Instances"]], "a canary was left running"

    rollout = dag_from("fleet_rollout", "fleet_rollout_worker").test(run_conf={"target_version": "latest"})
    states = {ti.task_id: ti.state for ti in rollout.get_task_instances()}
    assert rollout.state == "success", states
    group, images = images_in(h, worker_fleet["asg"])
    assert group["DesiredCapacity"] == 2 and len(images) == 2
    assert set(images.values()) == {new_ami}, f"fleet not entirely on {version}: {images}"
    summary = [ti for ti in rollout.get_task_instances() if ti.task_id == "summary"][0]
    assert summary.state == "success"

    # the operator's release notes, read back from every place they go (issue 14, item 3)
    import json

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from phoenix_fleet.config import load_fleet_config
    from phoenix_fleet.pipelines.notify import release_message, rollout_message, xcom

    bucket = load_fleet_config().artifacts_bucket
    stored = h.client("s3").get_object(Bucket=bucket, Key=f"images/worker/{version}/release-notes.json")["Body"]
    assert json.loads(stored.read())["operator_notes"] == notes  # the published release notes
    md = h.client("s3").get_object(Bucket=bucket, Key=f"images/worker/{version}/release-notes.md")["Body"].read()
    assert notes in md.decode()
    [entry] = [e for e in ssm.get_parameter_history(Name="/phoenix/images/worker/latest-version")["Parameters"]
               if f"v{version}" in e.get("Labels", [])]
    assert entry["Description"].endswith(f"Operator's notes: {notes}"), entry  # the release log entry
    with create_session() as session:
        extras = [e.extra for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == release.run_id)]
    assert [x["operator_notes"] for x in extras] == [notes], extras  # the asset event's extra
    release_context = {"dag": release_dag, "dag_run": release, "run_id": release.run_id}
    assert f"Operator's notes: {notes}" in release_message("worker", "succeeded", release_context).body
    rollout_context = {"dag": dag_from("fleet_rollout", "fleet_rollout_worker"), "dag_run": rollout,
                       "run_id": rollout.run_id}
    rolled = xcom(rollout_context, "summary")
    assert rolled["operator_notes"] == notes  # the rollout's summary
    assert rolled["release_notes_uri"] == f"s3://{bucket}/images/worker/{version}/release-notes.md"
    body = rollout_message("worker", "succeeded", rollout_context).body
    assert f"Operator's release notes: {notes}" in body and rolled["release_notes_uri"] in body  # its notification


def test_bad_rollout_conf_is_rejected_before_anything_changes(airflow_db, seeded, worker_fleet):
    h = seeded["handle"]
    for conf, field in (
        ({"asgs": ["no-such-asg"]}, "params.asgs"),
        ({"target_version": "2020.01.01-1"}, "params.target_version"),
    ):
        run = dag_from("fleet_rollout", "fleet_rollout_worker").test(run_conf=conf)
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert states["plan"] == "failed", (conf, states)
        assert states.get("apply") in ("upstream_failed", None), states
        _, images = images_in(h, worker_fleet["asg"])
        assert set(images.values()) == {worker_fleet["old_ami"]}, field


def test_a_rollout_dry_run_plans_everything_and_changes_nothing(airflow_db, seeded, worker_fleet, capfd):
    """A new version is published (skip_bake of a handmade AMI: the quickest release); the rollout's dry run
    runs apply (logs the template change), skips the check, plans the canary and every ASG, and leaves the
    launch template and every instance as they were."""
    h = seeded["handle"]
    ec2 = h.client("ec2")
    instance = h.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[worker_fleet["asg"]])["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=instance, Name="worker-handmade-2")["ImageId"]
    release = dag_from("ami_release", "ami_release_worker").test(run_conf={"skip_bake": True, "ami_id": ami})
    assert release.state == "success", {ti.task_id: ti.state for ti in release.get_task_instances()}
    capfd.readouterr()

    dry = dag_from("fleet_rollout", "fleet_rollout_worker").test(run_conf={"dry_run": True})
    states = {ti.task_id: ti.state for ti in dry.get_task_instances()}
    assert dry.state == "success", states
    assert states["apply"] == "success" and states["check_launch_templates"] == "skipped", states
    assert states["canary"] == "success" and states["approval"] == "skipped" and states["recycle"] == "success", states
    assert states["health_gate"] == "skipped" and states["summary"] == "success", states
    out = capfd.readouterr().out
    assert "dry run: would make a version from 1 that launches " + ami in out
    plan = out.split("DRY RUN of sandbox-worker-a (nothing changes)")[1]
    assert f"done: 2/2 on {ami}" in plan and "blocked" not in plan
    lt = ec2.describe_launch_templates(LaunchTemplateIds=[worker_fleet["lt"]])["LaunchTemplates"][0]
    assert (lt["DefaultVersionNumber"], lt["LatestVersionNumber"]) == (1, 1)
    _, images = images_in(h, worker_fleet["asg"])
    assert set(images.values()) == {worker_fleet["old_ami"]}


def test_apply_refuses_a_locked_group_then_a_protected_instance_is_skipped_and_reported(airflow_db, seeded, worker_fleet):
    """1. Another rollout's record on sandbox-worker-a (a canary that stopped, a renewal in flight): the next
    rollout's apply must not move its launch template. It fails naming the holder and the fix; the template, the
    group and the holder's record stay as they were, and nothing downstream runs.
    2. The lock gone and one instance protected from scale-in (the worker role's policy: protected: skip), the
    rollout succeeds: the recycle leaves that instance on the old image, the health gate accepts exactly it, and
    the summary and the notification say "1 instance skipped (scale-in protected)"."""
    import datetime as dt

    from phoenix_fleet.rollout import FleetState, Policy, RolloutRecord

    h = seeded["handle"]
    ec2, autoscaling = h.client("ec2"), h.client("autoscaling")
    instance = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[worker_fleet["asg"]])["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    # a new version, as publish leaves it (the release DAG itself is tested above): verified, the pointer moved
    ami = ec2.create_image(InstanceId=instance, Name="phoenix-worker-2099.01.01-1")["ImageId"]
    ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in {
        "phoenix:role": "worker", "phoenix:version": "2099.01.01-1", "phoenix:verified": "true"}.items()])
    ssm = h.client("ssm")
    ssm.put_parameter(Name="/phoenix/images/worker/latest", Value=ami, Type="String", DataType="aws:ec2:image",
                      Overwrite=True)
    ssm.put_parameter(Name="/phoenix/images/worker/latest-version", Value="2099.01.01-1", Type="String", Overwrite=True)
    now = dt.datetime.now(dt.UTC)
    record = RolloutRecord.begin("fleet_max_age:renew-1", FleetState(worker_fleet["asg"], 2, 1, 4, (), now), Policy(),
                                 target_image=worker_fleet["old_ami"], previous_image=worker_fleet["old_ami"])
    autoscaling.create_or_update_tags(Tags=[
        {"ResourceId": worker_fleet["asg"], "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
         "PropagateAtLaunch": False} for k, v in record.to_tags().items()])

    run = dag_from("fleet_rollout", "fleet_rollout_worker").test(run_conf={})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and states["apply"] == "failed", states
    assert states["canary"] == "upstream_failed", states
    assert states["restore_launch_templates"] == "upstream_failed", states  # apply's teardown: apply failed
    lt = ec2.describe_launch_templates(LaunchTemplateIds=[worker_fleet["lt"]])["LaunchTemplates"][0]
    assert (lt["DefaultVersionNumber"], lt["LatestVersionNumber"]) == (1, 1)
    group, images = images_in(h, worker_fleet["asg"])
    assert set(images.values()) == {worker_fleet["old_ami"]}
    assert group["LaunchTemplate"]["Version"] == "$Default"
    tags = {t["Key"]: t["Value"] for t in group["Tags"] if t["Key"].startswith("phoenix:rollout:")}
    assert tags == record.to_tags()

    # 2. the holder is gone; one instance is protected from scale-in
    autoscaling.delete_tags(Tags=[{"ResourceId": worker_fleet["asg"], "ResourceType": "auto-scaling-group", "Key": k}
                                  for k in tags])
    kept = sorted(images)[0]
    autoscaling.set_instance_protection(AutoScalingGroupName=worker_fleet["asg"], InstanceIds=[kept],
                                        ProtectedFromScaleIn=True)
    dag = dag_from("fleet_rollout", "fleet_rollout_worker")
    run = dag.test(run_conf={})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states["health_gate"] == "success", states
    group, images = images_in(h, worker_fleet["asg"])
    assert images[kept] == worker_fleet["old_ami"] and sorted(images.values()).count(ami) == 1, images
    assert group["DesiredCapacity"] == 2
    from phoenix_fleet.pipelines.notify import rollout_message, xcom

    context = {"dag": dag, "dag_run": run, "run_id": run.run_id}
    restore = xcom(context, "restore_launch_templates")  # apply's teardown: a group rolled forward stays
    assert restore["restored"] == [] and "rolled forward, kept" in restore["left"][0]["reason"], restore
    summary = xcom(context, "summary")
    [line] = summary["lines"]  # (the canary replaced the one instance; the recycle that resumed it counts its own)
    assert line.startswith(f"{worker_fleet['asg']}: forward {worker_fleet['old_ami']} -> {ami}, "), line
    assert line.endswith(f"; 1 instance skipped (scale-in protected): {kept} (still on {worker_fleet['old_ami']})"), line
    message = rollout_message("worker", "succeeded", context)
    assert "1 instance skipped (scale-in protected)" in message.body, message.body
