"""Helpers for the sandbox's own tests: boto3/aiobotocore clients on ``sandbox_clean`` and a web ASG stack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

AMI = "ami-12c6146b"  # one of moto's default images


@dataclass
class WebStack:
    vpc_id: str
    subnet_id: str
    launch_template_id: str
    target_group_arn: str
    asg_name: str


@pytest.fixture
def ec2(sandbox_clean: Any) -> Any:
    return sandbox_clean.client("ec2")


@pytest.fixture
def autoscaling(sandbox_clean: Any) -> Any:
    return sandbox_clean.client("autoscaling")


@pytest.fixture
def elbv2(sandbox_clean: Any) -> Any:
    return sandbox_clean.client("elbv2")


@pytest.fixture
def ssm(sandbox_clean: Any) -> Any:
    return sandbox_clean.client("ssm")


@pytest.fixture
def run_instance(ec2: Any) -> Callable[..., str]:
    def run(tags: dict[str, str] | None = None, image_id: str = AMI) -> str:
        kwargs: dict[str, Any] = {}
        if tags:
            kwargs["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ]
        return ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, **kwargs)["Instances"][0][
            "InstanceId"
        ]

    return run


@pytest.fixture
def running_instance(ec2: Any, run_instance: Callable[..., str]) -> Callable[..., str]:
    """Launch an instance and describe it until it runs (the tests profile boots in 2 describes)."""

    def run(tags: dict[str, str] | None = None, image_id: str = AMI) -> str:
        instance_id = run_instance(tags, image_id)
        for _ in range(10):
            state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0][
                "State"
            ]
            if state["Name"] == "running":
                return instance_id
        raise AssertionError(f"{instance_id} never ran")

    return run


@pytest.fixture
def web_stack(ec2: Any, autoscaling: Any, elbv2: Any) -> Callable[..., WebStack]:
    """Build VPC, subnet, launch template, target group and an ASG (launch template + target group)."""

    def build(desired: int = 2, name: str = "web") -> WebStack:
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")[
            "Subnet"
        ]["SubnetId"]
        template = ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData={
                "ImageId": AMI,
                "InstanceType": "t3.micro",
                "MetadataOptions": {"HttpTokens": "required"},
            },
        )["LaunchTemplate"]["LaunchTemplateId"]
        tg = elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance")[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "$Default"},
            MinSize=0,
            MaxSize=6,
            DesiredCapacity=desired,
            VPCZoneIdentifier=subnet,
            TargetGroupARNs=[tg],
        )
        return WebStack(vpc, subnet, template, tg, name)

    return build


def asg_instances(autoscaling: Any, name: str) -> dict[str, str]:
    """instance id -> lifecycle state (one DescribeAutoScalingGroups call)."""
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}


def target_states(elbv2: Any, tg_arn: str) -> dict[str, tuple[str, str | None]]:
    """instance id -> (state, reason) of every registered target (one DescribeTargetHealth call)."""
    found = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return {t["Target"]["Id"]: (t["TargetHealth"]["State"], t["TargetHealth"].get("Reason")) for t in found}


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def aio_client(service: str) -> Any:
    """An aiobotocore client (async context manager) that finds the sandbox through AWS_ENDPOINT_URL."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    return get_session().create_client(
        service, region_name="us-east-1", config=AioConfig(retries={"max_attempts": 1})
    )


@pytest.fixture
def asg_states(autoscaling: Any) -> Callable[[str], dict[str, str]]:
    return lambda name: asg_instances(autoscaling, name)


@pytest.fixture
def tg_states(elbv2: Any) -> Callable[[str], dict[str, tuple[str, str | None]]]:
    return lambda arn: target_states(elbv2, arn)


@dataclass
class Aio:
    """``aio.run(coro)`` runs a coroutine; ``aio.client("ec2")`` is an aiobotocore client context manager."""

    run: Callable[[Coroutine[Any, Any, Any]], Any]
    client: Callable[[str], Any]


@pytest.fixture
def aio(sandbox_clean: Any) -> Aio:
    return Aio(run=run_async, client=aio_client)
