"""AZ balance (issue 18 item 7, the sandbox part): moto launches every ASG instance into the first subnet of
VPCZoneIdentifier; with ``balance_azs`` the sandbox launches each into the AZ with the fewest instances, as
AWS does."""

from __future__ import annotations

from collections import Counter
from typing import Any


def _zones(autoscaling: Any, name: str) -> Counter[str]:
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return Counter(i["AvailabilityZone"] for i in group["Instances"])


def _three_az_group(ec2: Any, autoscaling: Any, desired: int) -> str:
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{k}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]
               ["SubnetId"] for k, az in enumerate("abc")]
    lt = ec2.create_launch_template(LaunchTemplateName="az", LaunchTemplateData={"ImageId": "ami-12c6146b"})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="az", LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]},
        MinSize=0, MaxSize=9, DesiredCapacity=desired, VPCZoneIdentifier=",".join(subnets),
    )
    return "az"


def test_launches_go_to_the_az_with_the_fewest_instances(sandbox_clean: Any, ec2: Any, autoscaling: Any) -> None:
    assert sandbox_clean.config.balance_azs  # on in the tests profile (and every profile but plain)
    name = _three_az_group(ec2, autoscaling, 4)
    assert sorted(_zones(autoscaling, name).values()) == [1, 1, 2]
    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=6)
    assert _zones(autoscaling, name) == {"us-east-1a": 2, "us-east-1b": 2, "us-east-1c": 2}


def test_without_it_moto_uses_the_first_subnet(sandbox_clean: Any, ec2: Any, autoscaling: Any) -> None:
    sandbox_clean.update_config({"balance_azs": False})
    name = _three_az_group(ec2, autoscaling, 3)
    assert _zones(autoscaling, name) == {"us-east-1a": 3}
