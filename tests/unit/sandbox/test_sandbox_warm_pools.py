"""Warm pools in the sandbox. moto 5.2.5 stores a warm pool's configuration and keeps no warmed instances
(DescribeWarmPool answers ``Instances: []``, a scale-out always launches new instances). The sandbox keeps the
pool at its size (AWS: MaxGroupPreparedCapacity, or MaxSize, minus desired; at least MinSize) with instances
launched from the group's *current* launch template, draws scale-outs from it (Pending -> InService), returns
scaled-in instances with ReuseOnScaleIn, and refills it when a warmed instance is terminated. Warmed instances
are not in DescribeAutoScalingGroups' Instances (as on AWS). The tests profile boots in 2 describes."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import AMI, asg_instances

NEW_AMI = "ami-03cf127a"  # another of moto's default images


def _pool(autoscaling: Any, name: str) -> dict[str, str]:
    """warmed instance id -> LifecycleState (one DescribeWarmPool call)."""
    found = autoscaling.describe_warm_pool(AutoScalingGroupName=name)["Instances"]
    return {i["InstanceId"]: i["LifecycleState"] for i in found}


def _settled_pool(autoscaling: Any, name: str) -> dict[str, str]:
    for _ in range(6):
        pool = _pool(autoscaling, name)
        if pool and not any(s == "Warmed:Pending" for s in pool.values()):
            return pool
    raise AssertionError(f"the warm pool never settled: {pool}")


def _images(ec2: Any, ids: Any) -> dict[str, str]:
    found = ec2.describe_instances(InstanceIds=sorted(ids))["Reservations"]
    return {i["InstanceId"]: i["ImageId"] for r in found for i in r["Instances"]}


def _ec2_states(ec2: Any, ids: Any) -> set[str]:
    found = ec2.describe_instances(InstanceIds=sorted(ids))["Reservations"]
    return {i["State"]["Name"] for r in found for i in r["Instances"]}


def _new_version(ec2: Any, template_id: str, image: str) -> None:
    version = ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion="1", LaunchTemplateData={"ImageId": image}
    )["LaunchTemplateVersion"]["VersionNumber"]
    ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(version))


def test_the_pool_is_kept_at_its_size_with_warmed_instances_outside_the_group(
    web_stack: Any, autoscaling: Any, ec2: Any
) -> None:
    stack = web_stack(desired=2)  # MaxSize 6
    autoscaling.put_warm_pool(AutoScalingGroupName=stack.asg_name, MaxGroupPreparedCapacity=5, MinSize=1)
    first = _pool(autoscaling, stack.asg_name)
    assert len(first) == 3 and set(first.values()) == {"Warmed:Pending"}  # 5 prepared - 2 desired, booting
    pool = _settled_pool(autoscaling, stack.asg_name)
    assert set(pool) == set(first) and set(pool.values()) == {"Warmed:Stopped"}
    assert _ec2_states(ec2, pool) == {"stopped"}
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.asg_name])["AutoScalingGroups"][0]
    assert not set(pool) & {i["InstanceId"] for i in group["Instances"]}  # not members, as on AWS
    assert group["WarmPoolSize"] == 3 and group["WarmPoolConfiguration"]["MinSize"] == 1
    answer = autoscaling.describe_warm_pool(AutoScalingGroupName=stack.asg_name)["Instances"][0]
    assert answer["LaunchTemplate"]["Version"] == "1" and answer["AvailabilityZone"] == "us-east-1a"
    # MinSize wins over a prepared capacity below desired; Running pools keep their instances running
    autoscaling.put_warm_pool(AutoScalingGroupName=stack.asg_name, MaxGroupPreparedCapacity=1, MinSize=2,
                              PoolState="Running")
    pool = _pool(autoscaling, stack.asg_name)
    assert len(pool) == 2
    pool = {**_settled_pool(autoscaling, stack.asg_name)}
    new = [i for i in pool if i not in first]
    assert all(pool[i] == "Warmed:Running" for i in new)
    autoscaling.delete_warm_pool(AutoScalingGroupName=stack.asg_name)
    assert _ec2_states(ec2, pool) <= {"shutting-down", "terminated"}  # AWS deletes the warmed instances with it
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.asg_name])["AutoScalingGroups"][0]
    assert "WarmPoolSize" not in group


def test_a_scale_out_draws_from_the_pool_and_it_refills_from_the_current_template(
    web_stack: Any, autoscaling: Any, ec2: Any
) -> None:
    stack = web_stack(desired=1)
    autoscaling.put_warm_pool(AutoScalingGroupName=stack.asg_name, MaxGroupPreparedCapacity=3)
    old_pool = _settled_pool(autoscaling, stack.asg_name)
    assert len(old_pool) == 2
    _new_version(ec2, stack.launch_template_id, NEW_AMI)
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asg_name, DesiredCapacity=2)
    states = asg_instances(autoscaling, stack.asg_name)
    (drawn,) = set(states) & set(old_pool)  # the warmed instance, not a new launch
    assert states[drawn] == "Pending"  # started from Warmed:Stopped: boots before it is in service
    assert _images(ec2, [drawn]) == {drawn: AMI}  # a warm pool keeps the image it was warmed with
    for _ in range(3):
        states = asg_instances(autoscaling, stack.asg_name)
    assert states[drawn] == "InService" and _ec2_states(ec2, [drawn]) == {"running"}
    pool = _settled_pool(autoscaling, stack.asg_name)
    assert len(pool) == 1 and set(pool) < set(old_pool)  # 3 prepared - 2 desired: nothing to refill
    # terminating a warmed instance (the ASG API or EC2's) refills the pool from the current template
    (left,) = pool
    autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=left, ShouldDecrementDesiredCapacity=False)
    pool = _settled_pool(autoscaling, stack.asg_name)
    (refill,) = pool
    assert refill != left and _images(ec2, [refill]) == {refill: NEW_AMI}
    ec2.terminate_instances(InstanceIds=[refill])
    (again,) = _settled_pool(autoscaling, stack.asg_name)
    assert again != refill and _images(ec2, [again]) == {again: NEW_AMI}
    assert asg_instances(autoscaling, stack.asg_name).keys() >= {drawn}  # the group itself untouched
    with pytest.raises(Exception, match="No managed instance found"):
        autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=left, ShouldDecrementDesiredCapacity=False)


def test_reuse_on_scale_in_returns_instances_to_the_pool(web_stack: Any, autoscaling: Any, ec2: Any,
                                                           elbv2: Any) -> None:
    stack = web_stack(desired=3)
    autoscaling.put_warm_pool(AutoScalingGroupName=stack.asg_name, MaxGroupPreparedCapacity=3, MinSize=0,
                              InstanceReusePolicy={"ReuseOnScaleIn": True})
    assert _pool(autoscaling, stack.asg_name) == {}  # 3 prepared - 3 desired
    members = set(asg_instances(autoscaling, stack.asg_name))
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asg_name, DesiredCapacity=1)
    pool = _settled_pool(autoscaling, stack.asg_name)
    assert len(pool) == 2 and set(pool) < members and set(pool.values()) == {"Warmed:Stopped"}
    assert _ec2_states(ec2, pool) == {"stopped"}  # returned, not terminated
    registered = {t["Target"]["Id"] for t in elbv2.describe_target_health(TargetGroupArn=stack.target_group_arn)[
        "TargetHealthDescriptions"]}
    assert not registered & set(pool)
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asg_name, DesiredCapacity=3)
    assert set(asg_instances(autoscaling, stack.asg_name)) == members  # the same instances come back
