"""A rollout that ends before rolling a group puts it back on the launch-template version it had before apply.

Against the sandbox, with the native backend's apply (it moves templates and pinned groups, and records each group's
version first) and the restore the rollout DAG runs as apply's teardown. Watched through the AWS API: what each group
launches now (a replacement launched after the restore), and that no instance was touched.
"""

from __future__ import annotations

from typing import Any

import pytest
from apply_helpers import REGION, asg, bake, fleet_config, launch_template, lock, publish_pointer
from phoenix_fleet.operators.apply_operators import NativeLaunchTemplateUpdateOperator
from phoenix_fleet.pipelines.template_restore import restore_unrolled_groups

from tests.helpers.airflow_run import make_context, run_task

OLD, NEW = "2026.11.23-1", "2026.11.30-1"
RID = "fleet_rollout_worker:manual__1"


@pytest.fixture
def fleet(sandbox_clean: Any, tmp_path: Any) -> dict[str, Any]:
    """Groups on $Default, $Latest and a pinned version of template a, one on template b; one the run will roll
    forward; one held by the run's own rollout (a canary that halted: its record names where to go back)."""
    sb = sandbox_clean
    old, new = bake(sb, version=OLD), bake(sb, version=NEW)
    publish_pointer(sb, "worker", old, OLD)
    publish_pointer(sb, "worker", new, NEW)
    lt_a, lt_b = launch_template(sb, "sandbox-worker-a", old), launch_template(sb, "sandbox-worker-b", old)
    for name, lt, version in [("worker-default", lt_a, "$Default"), ("worker-latest", lt_a, "$Latest"),
                              ("worker-pinned", lt_a, "1"), ("worker-b", lt_b, "$Default"),
                              ("worker-forward", lt_a, "1"), ("worker-held", lt_a, "1")]:
        asg(sb, name, lt, version)
    lock(sb, "worker-held", RID, new, old)
    return {"sb": sb, "old": old, "new": new, "cfg": fleet_config(tmp_path)}


def groups(sb: Any) -> dict[str, dict[str, Any]]:
    found = sb.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: g for g in found}


def launches(sb: Any, name: str) -> str:
    """The image a replacement launched now runs (terminate one instance without decrement, look at the new one)."""
    autoscaling, ec2 = sb.client("autoscaling"), sb.client("ec2")
    victim = groups(sb)[name]["Instances"][0]["InstanceId"]
    autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=victim, ShouldDecrementDesiredCapacity=False)
    fresh = [i["InstanceId"] for i in groups(sb)[name]["Instances"] if i["InstanceId"] != victim]
    (image,) = {i["ImageId"] for r in ec2.describe_instances(InstanceIds=fresh)["Reservations"] for i in r["Instances"]}
    return str(image)


def test_a_run_that_ends_before_rolling_puts_every_unrolled_group_back(fleet: dict[str, Any]) -> None:
    sb, old, new = fleet["sb"], fleet["old"], fleet["new"]
    ctx = make_context()
    apply = NativeLaunchTemplateUpdateOperator(task_id="apply", role="worker", config_path=fleet["cfg"],
                                               rollout_id=RID)
    run_task(apply, ctx)
    pins = ctx["ti"].xcom["pins_before"]
    assert set(pins) == {REGION} and set(pins[REGION]) == set(groups(sb))
    assert {(p["number"], p["image_id"]) for p in pins[REGION].values()} == {(1, old)}  # recorded before the move

    launches(sb, "worker-forward")  # this group's instance was replaced on the release: it rolled forward
    before = {n: sorted(i["InstanceId"] for i in g["Instances"]) for n, g in groups(sb).items()}
    targets = [{"asg_name": n, "region_name": REGION, "target_image_id": new} for n in sorted(before)]

    dry = restore_unrolled_groups(targets, pins, aws_conn_id="aws_default", dry_run=True)
    assert sorted(r["asg"] for r in dry["restored"]) == ["worker-b", "worker-default", "worker-latest", "worker-pinned"]
    assert {n: g.get("LaunchTemplate", {}).get("Version") for n, g in groups(sb).items()}["worker-pinned"] == "2"

    lines: list[str] = []
    result = restore_unrolled_groups(targets, pins, aws_conn_id="aws_default", log=lines.append)
    assert sorted(r["asg"] for r in result["restored"]) == ["worker-b", "worker-default", "worker-latest",
                                                            "worker-pinned"]
    left = {r["asg"]: r["reason"] for r in result["left"]}
    assert "rolled forward, kept" in left["worker-forward"]
    assert f"held by rollout {RID}" in left["worker-held"]
    assert any(line.startswith("worker-b (us-east-1): pointed back: never rolled to") for line in lines), lines

    # from outside: no instance was touched, and what each group launches now
    assert {n: sorted(i["InstanceId"] for i in g["Instances"]) for n, g in groups(sb).items()} == before
    for name in ("worker-default", "worker-latest", "worker-pinned", "worker-b"):
        assert groups(sb)[name]["LaunchTemplate"]["Version"] == "1", name
        assert launches(sb, name) == old, name
    assert launches(sb, "worker-forward") == new
    assert groups(sb)["worker-held"]["LaunchTemplate"]["Version"] == "2"  # its rollout's record decides

    # idempotent: a retry of the teardown finds nothing left to do
    again = restore_unrolled_groups(targets, pins, aws_conn_id="aws_default")
    assert again["restored"] == [] and "still on version 1" in {r["asg"]: r["reason"] for r in again["left"]}[
        "worker-pinned"]


def test_a_dry_run_apply_records_nothing_to_put_back(fleet: dict[str, Any]) -> None:
    ctx = make_context()
    apply = NativeLaunchTemplateUpdateOperator(task_id="apply", role="worker", config_path=fleet["cfg"],
                                               rollout_id=RID, dry_run=True)
    run_task(apply, ctx)
    assert "pins_before" not in ctx["ti"].xcom


def test_a_group_deleted_during_the_run_is_left_and_the_others_are_put_back(fleet: dict[str, Any]) -> None:
    sb, old, new = fleet["sb"], fleet["old"], fleet["new"]
    ctx = make_context()
    run_task(NativeLaunchTemplateUpdateOperator(task_id="apply", role="worker", config_path=fleet["cfg"],
                                                rollout_id=RID), ctx)
    pins = ctx["ti"].xcom["pins_before"]
    sb.client("autoscaling").delete_auto_scaling_group(AutoScalingGroupName="worker-b", ForceDelete=True)
    targets = [{"asg_name": n, "region_name": REGION, "target_image_id": new}
               for n in ("worker-b", "worker-pinned")]

    result = restore_unrolled_groups(targets, pins, aws_conn_id="aws_default")

    assert {r["asg"]: r["reason"] for r in result["left"]} == {
        "worker-b": "the group no longer exists: nothing to put back"}
    assert [r["asg"] for r in result["restored"]] == ["worker-pinned"]  # the one after it is still put back
    assert launches(sb, "worker-pinned") == old
