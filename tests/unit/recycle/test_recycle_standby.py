"""Standby and scale-in-protected outdated instances, per policy (skip / replace), against the sandbox."""

from __future__ import annotations

import pytest
import recycle_fleet as F

from tests.helpers.airflow_run import make_context, run_task


def _old(sandbox, f):
    return sorted(i for i, a in F.fleet_images(sandbox, f.asg).items() if a == f.old_ami)


@pytest.mark.parametrize("rule", ["skip", "replace"])
def test_standby_instance(sandbox_clean, rule):
    f = F.build_fleet(sandbox_clean)
    autoscaling = sandbox_clean.client("autoscaling")
    parked = _old(sandbox_clean, f)[0]
    autoscaling.enter_standby(AutoScalingGroupName=f.asg, InstanceIds=[parked], ShouldDecrementDesiredCapacity=True)
    op = F.operator(f, policy={"standby": rule})
    op.hook = F.scripted_hook()
    result = run_task(op, make_context()).result
    g = F.group(sandbox_clean)
    states = {i["InstanceId"]: i["LifecycleState"] for i in g["Instances"]}
    images = F.fleet_images(sandbox_clean)
    if rule == "skip":
        assert result["skipped"] == [parked] and states[parked] == "Standby" and images[parked] == f.old_ami
        assert result["skipped_reasons"] == {parked: "in standby"}
        assert g["DesiredCapacity"] == 3
        assert sorted(a for i, a in images.items() if i != parked) == [f.new_ami] * 3
    else:
        assert parked not in images and set(images.values()) == {f.new_ami}
        assert g["DesiredCapacity"] == 4 == len(images)  # ExitStandby grew desired by one: kept
    assert g["SuspendedProcesses"] == [] and not [t for t in g["Tags"] if t["Key"].startswith("phoenix:rollout:")]


@pytest.mark.parametrize("rule", ["skip", "replace"])
def test_protected_instance(sandbox_clean, rule):
    f = F.build_fleet(sandbox_clean)
    autoscaling = sandbox_clean.client("autoscaling")
    kept = _old(sandbox_clean, f)[0]
    autoscaling.set_instance_protection(AutoScalingGroupName=f.asg, InstanceIds=[kept], ProtectedFromScaleIn=True)
    op = F.operator(f, policy={"protected": rule})
    op.hook = F.scripted_hook()
    result = run_task(op, make_context()).result
    images = F.fleet_images(sandbox_clean)
    g = F.group(sandbox_clean)
    if rule == "skip":
        assert result["skipped"] == [kept] and images[kept] == f.old_ami
        assert result["skipped_reasons"] == {kept: "scale-in protected"}
        assert sorted(images.values()).count(f.new_ami) == 3
    else:
        assert kept not in images and set(images.values()) == {f.new_ami}
    assert g["DesiredCapacity"] == 4 == len(images) and g["MaxSize"] == 5 and g["SuspendedProcesses"] == []


def test_the_same_rollout_run_again_reports_what_its_policy_skipped(sandbox_clean):
    """The rollout DAG's recycle after a canary that finished the whole group (its one batch was all there was to
    replace) finds this rollout ended on the group: it acts on nothing, and still reports the instances the policy
    left on their image, with the images, so that the health gate accepts exactly those and the summary says so
    (it reported none: the gate waited its whole timeout for an image that never comes)."""
    f = F.build_fleet(sandbox_clean)
    autoscaling = sandbox_clean.client("autoscaling")
    kept = _old(sandbox_clean, f)[0]
    autoscaling.set_instance_protection(AutoScalingGroupName=f.asg, InstanceIds=[kept], ProtectedFromScaleIn=True)
    first = run_task(F.operator(f, policy={"protected": "skip"}), make_context()).result
    assert first["skipped"] == [kept]
    before = F.fleet_images(sandbox_clean)
    again = run_task(F.operator(f, policy={"protected": "skip"}, target_image_id=f.new_ami), make_context()).result
    assert again["outcome"] == "forward" and "already ended" in again["message"], again
    assert again["skipped"] == [kept] and again["skipped_reasons"] == {kept: "scale-in protected"}, again
    assert (again["from_image"], again["to_image"], again["replaced"]) == (f.old_ami, f.new_ami, 0), again
    assert F.fleet_images(sandbox_clean) == before  # nothing acted on
    # without a target image (a version number): the image the group launches now
    third = run_task(F.operator(f, policy={"protected": "skip"}), make_context()).result
    assert (third["skipped"], third["to_image"]) == ([kept], f.new_ami), third
