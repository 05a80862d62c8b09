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
