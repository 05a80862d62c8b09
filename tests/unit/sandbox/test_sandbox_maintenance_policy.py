"""The group's InstanceMaintenancePolicy and CapacityRebalance: moto 5.2.5 drops the policy on create and
update (never described) and ignores CapacityRebalance on update. The sandbox keeps both, as AWS does."""

from __future__ import annotations

from typing import Any


def _group(autoscaling: Any, name: str) -> dict[str, Any]:
    return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def test_the_instance_maintenance_policy_is_stored_kept_and_cleared(web_stack: Any, autoscaling: Any) -> None:
    stack = web_stack(desired=1)
    assert "InstanceMaintenancePolicy" not in _group(autoscaling, stack.asg_name)
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=stack.asg_name, CapacityRebalance=True,
        InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 110},
    )
    g = _group(autoscaling, stack.asg_name)
    assert g["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 110}
    assert g["CapacityRebalance"] is True
    # an update that names neither keeps both (a desired-only write, as the rollout makes)
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=stack.asg_name, DesiredCapacity=2, MaxSize=6)
    g = _group(autoscaling, stack.asg_name)
    assert g["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 110}
    assert g["CapacityRebalance"] is True
    # both -1 removes it (AWS)
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=stack.asg_name,
        InstanceMaintenancePolicy={"MinHealthyPercentage": -1, "MaxHealthyPercentage": -1},
    )
    assert "InstanceMaintenancePolicy" not in _group(autoscaling, stack.asg_name)


def test_create_keeps_the_instance_maintenance_policy(web_stack: Any, autoscaling: Any, ec2: Any) -> None:
    stack = web_stack(desired=0)
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="web-2", LaunchTemplate={"LaunchTemplateId": stack.launch_template_id},
        MinSize=0, MaxSize=2, DesiredCapacity=0, VPCZoneIdentifier=stack.subnet_id,
        InstanceMaintenancePolicy={"MinHealthyPercentage": 90, "MaxHealthyPercentage": 120},
    )
    assert _group(autoscaling, "web-2")["InstanceMaintenancePolicy"] == {
        "MinHealthyPercentage": 90, "MaxHealthyPercentage": 120}
