"""A small fleet on the sandbox for the inventory and retention tests (import as ``inventory_fleet``).

``build_fleet(sandbox)`` makes, in ``us-east-1``:

* our AMIs ``web`` 2026.11.01-1, 2026.11.08-1, 2026.11.15-1 (the latest) and ``worker`` 2026.11.15-1, tagged
  like the pipeline tags them; SSM ``/phoenix/images/<role>/latest`` and ``latest-version`` at the newest;
* ASG ``web-a`` on launch template ``web-lt`` ``$Default`` = v2 (image 2026.11.08-1): its template is *behind
  the latest*; 3 instances, one of them backdated 20 days (**stale**);
* ASG ``web-b`` launched on 2026.11.08-1, then its template's default moved to 2026.11.15-1: its 2 instances are
  *behind their launch template*;
* ASG ``worker-a`` on ``$Latest`` (the latest worker image), 2 instances;
* a lone instance launched from one of moto's Amazon images: an AMI that is *not ours*.

Instance launch times are set through moto's in-process backend (the sandbox runs in this process): AWS has no
API to set LaunchTime, and a report can only find a stale instance if one is old.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"
WEB_VERSIONS = ("2026.11.01-1", "2026.11.08-1", "2026.11.15-1")
WORKER_VERSION = "2026.11.15-1"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@dataclass
class Fleet:
    region: str
    amazon_ami: str
    web: dict[str, str] = field(default_factory=dict)  # version -> ami
    worker: dict[str, str] = field(default_factory=dict)
    instances: dict[str, list[str]] = field(default_factory=dict)  # asg (or "lone") -> ids
    stale_instance: str = ""
    lone_instance: str = ""


def tags(mapping: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in mapping.items()]


def amazon_image(ec2: Any) -> str:
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"]
    return sorted(images, key=lambda i: i["ImageId"])[0]["ImageId"]


def make_image(ec2: Any, builder: str, role: str, version: str, extra: dict[str, str] | None = None) -> str:
    name = f"phoenix-{role}-{version}"
    t = {
        "Name": name,
        "phoenix:role": role,
        "phoenix:version": version,
        "phoenix:verified": "true",
        "phoenix:managed-by": "phoenix-fleet",
        **(extra or {}),
    }
    image_id = ec2.create_image(InstanceId=builder, Name=name)["ImageId"]
    ec2.create_tags(Resources=[image_id], Tags=tags(t))
    return image_id


def set_pointer(ssm: Any, role: str, ami: str, version: str) -> None:
    ssm.put_parameter(Name=f"/phoenix/images/{role}/latest", Value=ami, Type="String", DataType="aws:ec2:image", Overwrite=True)
    ssm.put_parameter(Name=f"/phoenix/images/{role}/latest-version", Value=version, Type="String", Overwrite=True)


def asg_instances(autoscaling: Any, name: str) -> list[str]:
    g = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return sorted(i["InstanceId"] for i in g["Instances"])


def make_asg(autoscaling: Any, name: str, lt_id: str, version: str, desired: int, role: str, region: str = REGION) -> list[str]:
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": lt_id, "Version": version},
        MinSize=0,
        MaxSize=max(desired * 2, 1),
        DesiredCapacity=desired,
        AvailabilityZones=[f"{region}a"],
        Tags=[
            {"Key": "phoenix:role", "Value": role, "PropagateAtLaunch": True},
            {"Key": "phoenix:env", "Value": "sandbox", "PropagateAtLaunch": True},
        ],
    )
    return asg_instances(autoscaling, name)


def backdate(region: str, instance_id: str, when: dt.datetime) -> None:
    """Set an instance's LaunchTime in the in-process moto backend (there is no AWS API for it)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    inst = ec2_backends[DEFAULT_ACCOUNT_ID][region].get_instance_by_id(instance_id)
    inst.launch_time = when.astimezone(dt.UTC).replace(tzinfo=None)


def lt(ec2: Any, name: str, amis: list[str], default: int) -> str:
    lt_id = ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": amis[0], "InstanceType": "t3.small"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    for ami in amis[1:]:
        ec2.create_launch_template_version(LaunchTemplateId=lt_id, LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.small"})
    ec2.modify_launch_template(LaunchTemplateId=lt_id, DefaultVersion=str(default))
    return lt_id


def build_fleet(sandbox: Any, region: str = REGION, now: dt.datetime = NOW) -> Fleet:
    ec2 = sandbox.client("ec2", region_name=region)
    autoscaling = sandbox.client("autoscaling", region_name=region)
    ssm = sandbox.client("ssm", region_name=region)
    amazon = amazon_image(ec2)
    fleet = Fleet(region=region, amazon_ami=amazon)
    builder = ec2.run_instances(ImageId=amazon, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    for v in WEB_VERSIONS:
        fleet.web[v] = make_image(ec2, builder, "web", v)
    fleet.worker[WORKER_VERSION] = make_image(ec2, builder, "worker", WORKER_VERSION)
    ec2.terminate_instances(InstanceIds=[builder])
    sandbox.settle()
    set_pointer(ssm, "web", fleet.web[WEB_VERSIONS[-1]], WEB_VERSIONS[-1])
    set_pointer(ssm, "worker", fleet.worker[WORKER_VERSION], WORKER_VERSION)

    web_lt = lt(ec2, "web-lt", [fleet.web[v] for v in WEB_VERSIONS], default=2)
    fleet.instances["web-a"] = make_asg(autoscaling, "web-a", web_lt, "$Default", 3, "web", region)
    web_b_lt = lt(ec2, "web-b-lt", [fleet.web[WEB_VERSIONS[1]]], default=1)
    fleet.instances["web-b"] = make_asg(autoscaling, "web-b", web_b_lt, "$Default", 2, "web", region)
    ec2.create_launch_template_version(
        LaunchTemplateId=web_b_lt, LaunchTemplateData={"ImageId": fleet.web[WEB_VERSIONS[2]], "InstanceType": "t3.small"}
    )
    ec2.modify_launch_template(LaunchTemplateId=web_b_lt, DefaultVersion="2")
    worker_lt = lt(ec2, "worker-lt", [fleet.worker[WORKER_VERSION]], default=1)
    fleet.instances["worker-a"] = make_asg(autoscaling, "worker-a", worker_lt, "$Latest", 2, "worker", region)
    fleet.lone_instance = ec2.run_instances(
        ImageId=amazon, MinCount=1, MaxCount=1, TagSpecifications=[{"ResourceType": "instance", "Tags": tags({"Name": "bastion"})}]
    )["Instances"][0]["InstanceId"]
    fleet.instances["lone"] = [fleet.lone_instance]
    sandbox.settle()
    for ids in fleet.instances.values():
        for i in ids:
            backdate(region, i, now - dt.timedelta(days=2))
    fleet.stale_instance = fleet.instances["web-a"][0]
    backdate(region, fleet.stale_instance, now - dt.timedelta(days=20))
    return fleet


def clients(sandbox: Any, region: str = REGION) -> tuple[Any, Any, Any]:
    return (
        sandbox.client("ec2", region_name=region),
        sandbox.client("autoscaling", region_name=region),
        sandbox.client("ssm", region_name=region),
    )
