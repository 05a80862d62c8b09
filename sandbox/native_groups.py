"""The groups of native-backend roles in the sandbox: made with the EC2 and AutoScaling APIs, not by Terraform.

A role on ``terraform.backend: native`` (``worker`` in include/fleet.yaml) has its launch templates moved by the
native apply backend (a new template version per release). Terraform must not manage those templates too: two
writers of one template fight (a plain ``terraform apply`` would move it back to whatever the root reads, and a
release of another role applied through the root would move it too). So the sandbox's Terraform root holds the
Terraform roles only, and this module makes the native roles' groups, as a team's own tooling would:

* ``sandbox-<role>-a``: a launch template (the role's current AMI from ``/phoenix/images/<role>/latest``,
  IMDSv2 required) and an AutoScaling group on ``$Default`` (1/2/4), tagged ``phoenix:role``/``phoenix:env``
  (propagated), in the network root's subnets when they exist (``phoenix:tier=public``), else the region's
  first two subnets.

Idempotent: an existing template or group is left as it is. ``python -m sandbox.native_groups`` (endpoint from
``$AWS_ENDPOINT_URL``) or :func:`make_native_groups`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

ENV = "sandbox"


def _client(service: str, endpoint_url: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service, endpoint_url=endpoint_url, region_name=region, aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries={"max_attempts": 3}),
    )


def native_roles(config_path: str | None = None) -> list[str]:
    """The roles of the fleet config that are on the native backend."""
    from phoenix_fleet.config import load_fleet_config

    fleet = load_fleet_config(config_path)
    return sorted(name for name, role in fleet.roles.items() if role.terraform.backend == "native")


def make_native_groups(
    endpoint_url: str, region: str = "us-east-1", roles: list[str] | None = None, env: str = ENV
) -> dict[str, dict[str, Any]]:
    """Make ``<env>-<role>-a`` (template + group) per native-backend role; returns ``{asg: {...}}``."""
    ec2, asg = _client("ec2", endpoint_url, region), _client("autoscaling", endpoint_url, region)
    ssm = _client("ssm", endpoint_url, region)
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "tag:phoenix:tier", "Values": ["public"]}, {"Name": "tag:phoenix:network", "Values": [env]}]
    )["Subnets"]] or [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]]
    out: dict[str, dict[str, Any]] = {}
    for role in native_roles() if roles is None else roles:
        name = f"{env}-{role}-a"
        ami = ssm.get_parameter(Name=f"/phoenix/images/{role}/latest")["Parameter"]["Value"]
        found = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [name]}])
        if found["LaunchTemplates"]:
            lt_id = found["LaunchTemplates"][0]["LaunchTemplateId"]
        else:
            tags = {"phoenix:role": role, "phoenix:env": env}
            lt_id = ec2.create_launch_template(
                LaunchTemplateName=name,
                LaunchTemplateData={
                    "ImageId": ami,
                    "InstanceType": "t3.small",
                    "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
                    "TagSpecifications": [
                        {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
                    ],
                },
                TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
                    {"Key": k, "Value": v} for k, v in {**tags, "phoenix:managed-by": "native-backend"}.items()
                ]}],
            )["LaunchTemplate"]["LaunchTemplateId"]
        if not asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]:
            asg.create_auto_scaling_group(
                AutoScalingGroupName=name, MinSize=1, MaxSize=4, DesiredCapacity=2,
                VPCZoneIdentifier=",".join(subnets[:2]),
                LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "$Default"},
                Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True}
                      for k, v in {"phoenix:role": role, "phoenix:env": env}.items()],
            )
        out[name] = {"asg": name, "role": role, "lt": lt_id, "ami": ami}
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5055"))
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    for name, info in make_native_groups(args.endpoint_url, args.region).items():
        print(f"{name}: {info['role']} on {info['ami']} ({info['lt']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
