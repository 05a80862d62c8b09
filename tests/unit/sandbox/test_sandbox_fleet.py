"""AutoScaling + ELBv2: Pending -> InService, target initial -> healthy, injected target health (over HTTP, by tag),
deregistration of terminated instances and registration of replacements. boto3 and aiobotocore."""

from __future__ import annotations

from typing import Any

from sandbox.realism import TAG_TARGET_HEALTH


def _boot(asg_states: Any, tg_states: Any, stack: Any) -> None:
    """Describe until every instance is InService and every target healthy."""
    for _ in range(10):
        lifecycle, health = asg_states(stack.asg_name), tg_states(stack.target_group_arn)
        if set(lifecycle.values()) == {"InService"} and {s for s, _ in health.values()} == {"healthy"}:
            return
    raise AssertionError("the fleet never became healthy")


def test_asg_pending_to_inservice_and_targets_initial_to_healthy(
    web_stack: Any, asg_states: Any, tg_states: Any
) -> None:
    stack = web_stack(desired=2)
    # Each call below observes both instances once; boot takes 2 observations, health checks 1 more.
    assert set(asg_states(stack.asg_name).values()) == {"Pending"}
    assert {v for v in tg_states(stack.target_group_arn).values()} == {
        ("initial", "Elb.RegistrationInProgress")
    }
    assert set(asg_states(stack.asg_name).values()) == {"InService"}
    assert {v for v in tg_states(stack.target_group_arn).values()} == {
        ("initial", "Elb.InitialHealthChecking")
    }
    assert {v for v in tg_states(stack.target_group_arn).values()} == {("healthy", None)}


def test_pending_instances_count_toward_capacity(web_stack: Any, autoscaling: Any, asg_states: Any) -> None:
    stack = web_stack(desired=2)
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asg_name, DesiredCapacity=2)
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=stack.asg_name, DesiredCapacity=2)
    assert len(asg_states(stack.asg_name)) == 2


def test_unhealthy_target_injected_by_tag(web_stack: Any, ec2: Any, asg_states: Any, tg_states: Any) -> None:
    stack = web_stack(desired=2)
    _boot(asg_states, tg_states, stack)
    victim, other = sorted(asg_states(stack.asg_name))
    ec2.create_tags(Resources=[victim], Tags=[{"Key": TAG_TARGET_HEALTH, "Value": "unhealthy"}])
    assert tg_states(stack.target_group_arn) == {
        victim: ("unhealthy", "Target.FailedHealthChecks"),
        other: ("healthy", None),
    }
    ec2.create_tags(
        Resources=[victim], Tags=[{"Key": TAG_TARGET_HEALTH, "Value": "unhealthy:Target.Timeout"}]
    )
    assert tg_states(stack.target_group_arn)[victim] == ("unhealthy", "Target.Timeout")
    ec2.delete_tags(Resources=[victim], Tags=[{"Key": TAG_TARGET_HEALTH}])
    assert tg_states(stack.target_group_arn)[victim] == ("healthy", None)


def test_asg_terminate_deregisters_and_registers_the_pending_replacement(
    web_stack: Any, autoscaling: Any, elbv2: Any, asg_states: Any, tg_states: Any
) -> None:
    stack = web_stack(desired=2)
    _boot(asg_states, tg_states, stack)
    old, kept = sorted(asg_states(stack.asg_name))
    autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=old, ShouldDecrementDesiredCapacity=False)
    lifecycle = asg_states(stack.asg_name)
    (replacement,) = set(lifecycle) - {kept}
    assert lifecycle == {kept: "InService", replacement: "Pending"}
    health = tg_states(stack.target_group_arn)
    assert set(health) == {kept, replacement}  # the terminated one left the target group
    assert health[replacement][0] == "initial"
    asked = elbv2.describe_target_health(TargetGroupArn=stack.target_group_arn, Targets=[{"Id": old}])
    assert asked["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "draining"
    _boot(asg_states, tg_states, stack)


def test_ec2_terminate_registers_the_asg_replacement(
    web_stack: Any, ec2: Any, asg_states: Any, tg_states: Any
) -> None:
    stack = web_stack(desired=2)
    _boot(asg_states, tg_states, stack)
    old, kept = sorted(asg_states(stack.asg_name))
    ec2.terminate_instances(InstanceIds=[old])
    (replacement,) = set(asg_states(stack.asg_name)) - {kept}
    assert set(tg_states(stack.target_group_arn)) == {kept, replacement}


def test_scale_in_deregisters(web_stack: Any, autoscaling: Any, asg_states: Any, tg_states: Any) -> None:
    stack = web_stack(desired=3)
    _boot(asg_states, tg_states, stack)
    autoscaling.set_desired_capacity(AutoScalingGroupName=stack.asg_name, DesiredCapacity=1)
    remaining = asg_states(stack.asg_name)
    assert len(remaining) == 1
    assert set(tg_states(stack.target_group_arn)) == set(remaining)


def test_without_the_fix_moto_keeps_terminated_targets(
    sandbox_clean: Any, web_stack: Any, autoscaling: Any, tg_states: Any, asg_states: Any
) -> None:
    """Documents moto's own behaviour (profile plain): what code running on plain moto must design around."""
    sandbox_clean.update_config(profile="plain")
    stack = web_stack(desired=2)
    old, kept = sorted(asg_states(stack.asg_name))
    autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=old, ShouldDecrementDesiredCapacity=False)
    health = tg_states(stack.target_group_arn)
    assert old in health and health[old] == ("healthy", None)


def test_aiobotocore_unhealthy_target_and_deregistration(
    aio: Any, web_stack: Any, asg_states: Any, tg_states: Any
) -> None:
    stack = web_stack(desired=2)
    _boot(asg_states, tg_states, stack)
    victim, other = sorted(asg_states(stack.asg_name))

    async def scenario() -> tuple[dict[str, str], set[str]]:
        async with aio.client("ec2") as ec2, aio.client("elbv2") as elbv2, aio.client("autoscaling") as asg:
            await ec2.create_tags(Resources=[victim], Tags=[{"Key": TAG_TARGET_HEALTH, "Value": "unhealthy"}])
            found = await elbv2.describe_target_health(TargetGroupArn=stack.target_group_arn)
            health = {
                t["Target"]["Id"]: t["TargetHealth"]["State"] for t in found["TargetHealthDescriptions"]
            }
            await asg.terminate_instance_in_auto_scaling_group(
                InstanceId=victim, ShouldDecrementDesiredCapacity=False
            )
            found = await elbv2.describe_target_health(TargetGroupArn=stack.target_group_arn)
            return health, {t["Target"]["Id"] for t in found["TargetHealthDescriptions"]}

    health, registered = aio.run(scenario())
    assert health == {victim: "unhealthy", other: "healthy"}
    assert victim not in registered and other in registered and len(registered) == 2


def test_terraform_fidelity_fixes(ec2: Any, autoscaling: Any, web_stack: Any) -> None:
    """moto drops DefaultInstanceWarmup and copies a template's own tags into its data; the sandbox does not."""
    stack = web_stack(desired=1)
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=stack.asg_name, DefaultInstanceWarmup=120)
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.asg_name])[
        "AutoScalingGroups"
    ][0]
    assert group["DefaultInstanceWarmup"] == 120
    template = ec2.create_launch_template(
        LaunchTemplateName="tagged",
        LaunchTemplateData={"ImageId": "ami-12c6146b"},
        TagSpecifications=[
            {"ResourceType": "launch-template", "Tags": [{"Key": "phoenix:role", "Value": "web"}]}
        ],
    )["LaunchTemplate"]
    assert {"Key": "phoenix:role", "Value": "web"} in template["Tags"]
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ]
    assert "TagSpecifications" not in data[0]["LaunchTemplateData"]


def test_a_repeated_terminate_or_exit_standby_answers_as_aws_does(
    web_stack: Any, autoscaling: Any, asg_states: Any, tg_states: Any
) -> None:
    """Issue 13 item 16: a retried TerminateInstanceInAutoScalingGroup (its first reply lost) reaches an instance
    the group no longer has: moto raised StopIteration (HTTP 500, which botocore retries as a parse error);
    AWS answers ValidationError. A repeated ExitStandby made moto add the capacity twice; AWS refuses it."""
    import pytest
    from botocore.exceptions import ClientError

    stack = web_stack(desired=3)
    _boot(asg_states, tg_states, stack)
    first, second, _ = sorted(asg_states(stack.asg_name))
    autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=first, ShouldDecrementDesiredCapacity=True)
    with pytest.raises(ClientError) as err:
        autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=first, ShouldDecrementDesiredCapacity=True)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert err.value.response["Error"]["Message"] == (
        f"Instance Id not found - No managed instance found for instance ID {first}")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    def desired() -> int:
        return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.asg_name])[
            "AutoScalingGroups"][0]["DesiredCapacity"]

    assert desired() == 2  # decremented once, not twice
    autoscaling.enter_standby(AutoScalingGroupName=stack.asg_name, InstanceIds=[second],
                              ShouldDecrementDesiredCapacity=True)
    assert desired() == 1
    autoscaling.exit_standby(AutoScalingGroupName=stack.asg_name, InstanceIds=[second])
    assert desired() == 2
    with pytest.raises(ClientError, match=f"The instance {second} is not in Standby"):
        autoscaling.exit_standby(AutoScalingGroupName=stack.asg_name, InstanceIds=[second])
    assert desired() == 2 and asg_states(stack.asg_name)[second] == "InService"
