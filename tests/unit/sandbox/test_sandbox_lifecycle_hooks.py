"""Launch lifecycle hooks in the sandbox: moto stores hooks and ignores them (instances go InService at once,
CompleteLifecycleAction is unimplemented). The sandbox holds each launch in Pending:Wait until
CompleteLifecycleAction or the heartbeat timeout, then applies the hook's result (ABANDON terminates, the ASG
replaces). The tests profile times a heartbeat out after 4 DescribeAutoScalingGroups (no sleeping)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import asg_instances


def _hook(autoscaling: Any, group: str, *, result: str = "ABANDON", name: str = "nobody-completes") -> None:
    autoscaling.put_lifecycle_hook(
        LifecycleHookName=name, AutoScalingGroupName=group, LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
        HeartbeatTimeout=60, DefaultResult=result,
    )


def _in_service(autoscaling: Any, name: str) -> None:
    for _ in range(5):
        if set(asg_instances(autoscaling, name).values()) == {"InService"}:
            return
    raise AssertionError("the group never settled")


def _group(autoscaling: Any, name: str) -> dict[str, Any]:
    return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def test_a_launch_waits_in_pending_wait_until_completed(web_stack: Any, autoscaling: Any) -> None:
    stack = web_stack(desired=1)
    _hook(autoscaling, stack.asg_name)
    (first,) = asg_instances(autoscaling, stack.asg_name)
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asg_name, DesiredCapacity=2)
    states = asg_instances(autoscaling, stack.asg_name)
    (new,) = set(states) - {first}
    later = [asg_instances(autoscaling, stack.asg_name) for _ in range(2)]
    assert [states[new], later[0][new], later[1][new]] == ["Pending", "Pending", "Pending:Wait"]  # boot, then held
    assert later[1][first] == "InService"  # launched before the hook existed: never held
    autoscaling.record_lifecycle_action_heartbeat(
        LifecycleHookName="nobody-completes", AutoScalingGroupName=stack.asg_name, InstanceId=new)
    autoscaling.complete_lifecycle_action(
        LifecycleHookName="nobody-completes", AutoScalingGroupName=stack.asg_name, InstanceId=new,
        LifecycleActionResult="CONTINUE")
    assert asg_instances(autoscaling, stack.asg_name) == {first: "InService", new: "InService"}
    # nothing holds it any more: a second completion is refused, as AWS does
    with pytest.raises(ClientError, match="No active Lifecycle Action found"):
        autoscaling.complete_lifecycle_action(
            LifecycleHookName="nobody-completes", AutoScalingGroupName=stack.asg_name, InstanceId=new,
            LifecycleActionResult="CONTINUE")
    with pytest.raises(ClientError, match="No Lifecycle Hook found"):
        autoscaling.complete_lifecycle_action(
            LifecycleHookName="other", AutoScalingGroupName=stack.asg_name, InstanceId=new,
            LifecycleActionResult="CONTINUE")


def test_a_hook_nobody_completes_abandons_at_its_heartbeat_and_the_asg_replaces(
    web_stack: Any, autoscaling: Any, ec2: Any
) -> None:
    stack = web_stack(desired=1)
    _in_service(autoscaling, stack.asg_name)
    _hook(autoscaling, stack.asg_name)
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asg_name, DesiredCapacity=2)
    history: list[dict[str, str]] = [asg_instances(autoscaling, stack.asg_name) for _ in range(12)]
    launched = {iid for states in history for iid in states}
    # a stream: every launch held, abandoned after its heartbeat (4 describes), replaced by the next
    assert len(launched) >= 3, history
    for states in history:
        assert len(states) == 2 and list(states.values()).count("InService") == 1, states
    abandoned = sorted(launched - set(history[-1]))
    gone = ec2.describe_instances(InstanceIds=abandoned)["Reservations"]
    assert {i["State"]["Name"] for r in gone for i in r["Instances"]} <= {"shutting-down", "terminated"}
    assert _group(autoscaling, stack.asg_name)["DesiredCapacity"] == 2  # abandoning does not lower desired


def test_a_continue_default_lets_it_in_service_at_the_heartbeat(web_stack: Any, autoscaling: Any) -> None:
    stack = web_stack(desired=0)
    _hook(autoscaling, stack.asg_name, result="CONTINUE")
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asg_name, DesiredCapacity=1)
    seen = [next(iter(asg_instances(autoscaling, stack.asg_name).values())) for _ in range(6)]
    assert seen == ["Pending", "Pending", "Pending:Wait", "Pending:Wait", "InService", "InService"]
