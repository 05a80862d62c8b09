"""Helpers for the apply tests: a fleet config, verified AMIs, a published pointer, ASGs on launch templates."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

REGION = "us-east-1"
_names = itertools.count(1)


def fleet_config(tmp_path: Path, role: str = "worker", workdir: str | None = None, regions: list[str] | None = None) -> str:
    terraform = {"backend": "terraform", "workdir": workdir} if workdir else {"backend": "native"}
    cfg = {
        "version": 1,
        "artifacts_bucket": "phoenix-fleet-artifacts",
        "roles": {
            role: {
                "env": "sandbox",
                "image": {
                    "packer_template": "packer/phoenix.pkr.hcl",
                    "base_ami": {"name": "phoenix-base-debian-12-*", "owners": ["self"]},
                },
                "asgs": {"tags": {"phoenix:role": role, "phoenix:env": "sandbox"}},
                "regions": list(regions or [REGION]),
                "terraform": terraform,
            }
        },
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def bake(
    sandbox: Any, role: str = "worker", version: str = "2026.11.30-1", verified: str = "true", region: str = REGION
) -> str:
    """A self-owned AMI tagged like a verified release image."""
    ec2 = sandbox.client("ec2", region_name=region)
    source = sorted(
        ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"],
        key=lambda i: i["ImageId"],
    )[0]["ImageId"]
    builder = ec2.run_instances(ImageId=source, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    for _ in range(4):
        ec2.describe_instances(InstanceIds=[builder])
    image_id = ec2.create_image(InstanceId=builder, Name=f"phoenix-{role}-{version}-{next(_names)}")["ImageId"]
    tags = {"phoenix:role": role, "phoenix:version": version, "phoenix:verified": verified}
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    for _ in range(10):
        if ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available":
            break
    ec2.terminate_instances(InstanceIds=[builder])
    return image_id


def publish_pointer(sandbox: Any, role: str, ami: str, version: str) -> None:
    """What publish leaves in SSM (the operators themselves are tested in tests/unit/publish)."""
    ssm = sandbox.client("ssm")
    put = ssm.put_parameter(
        Name=f"/phoenix/images/{role}/latest", Value=ami, Type="String", DataType="aws:ec2:image", Overwrite=True
    )
    ssm.label_parameter_version(Name=f"/phoenix/images/{role}/latest", ParameterVersion=put["Version"], Labels=[f"v{version}"])


def launch_template(sandbox: Any, name: str, ami: str, region: str = REGION) -> str:
    ec2 = sandbox.client("ec2", region_name=region)
    return ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={
            "ImageId": ami,
            "InstanceType": "t3.small",
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "app", "Value": name}]}],
        },
    )["LaunchTemplate"]["LaunchTemplateId"]


def asg(
    sandbox: Any, name: str, lt_id: str, version: str, role: str = "worker", desired: int = 1, region: str = REGION
) -> str:
    ec2 = sandbox.client("ec2", region_name=region)
    subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]["SubnetId"]
    sandbox.client("autoscaling", region_name=region).create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": lt_id, "Version": version},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=desired,
        VPCZoneIdentifier=subnet,
        Tags=[
            {"Key": "phoenix:role", "Value": role, "PropagateAtLaunch": True},
            {"Key": "phoenix:env", "Value": "sandbox", "PropagateAtLaunch": True},
        ],
    )
    return name


def lock(sandbox: Any, asg_name: str, rollout_id: str, target: str, previous: str) -> dict[str, str]:
    """Put another rollout's record (made by the record itself) on the group, as a canary or a renewal leaves it."""
    import datetime as dt

    from phoenix_fleet.rollout import FleetState, Policy, RolloutRecord

    now = dt.datetime.now(dt.UTC)
    record = RolloutRecord.begin(rollout_id, FleetState(asg_name, 1, 0, 4, (), now), Policy(),
                                 target_image=target, previous_image=previous)
    tags = record.to_tags()
    sandbox.client("autoscaling").create_or_update_tags(Tags=[
        {"ResourceId": asg_name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v, "PropagateAtLaunch": False}
        for k, v in tags.items()
    ])
    return tags


def group_spec(sandbox: Any, name: str, region: str = REGION) -> dict[str, Any]:
    return sandbox.client("autoscaling", region_name=region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
        "LaunchTemplate"
    ]
