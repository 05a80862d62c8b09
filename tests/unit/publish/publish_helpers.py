"""Helpers for the publish tests: a small fleet config, and what bake + verify leave behind (AMIs, package lists)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

HOME = "us-east-1"
OTHER = "eu-west-1"
ACCOUNTS = ["111122223333", "444455556666"]
BUCKET = "phoenix-fleet-artifacts"


def fleet_config(
    tmp_path: Path, regions: tuple[str, ...] = (HOME, OTHER), accounts: list[str] | None = None, role: str = "web"
) -> str:
    base = {
        "packer_template": "packer/phoenix.pkr.hcl",
        "base_ami": {"name": "phoenix-base-debian-12-*", "owners": ["self"]},
    }
    cfg = {
        "version": 1,
        "artifacts_bucket": BUCKET,
        "roles": {
            role: {
                "env": "sandbox",
                "image": base,
                "asgs": {"tags": {"phoenix:role": role, "phoenix:env": "sandbox"}},
                "regions": list(regions),
                "share_with_accounts": ACCOUNTS if accounts is None else accounts,
                "terraform": {"backend": "native"},
            },
        },
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def today(n: int) -> str:
    return f"{dt.datetime.now(dt.UTC).date():%Y.%m.%d}-{n}"


def wait_image(ec2: Any, image_id: str) -> dict[str, Any]:
    for _ in range(50):
        image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        if image["State"] != "pending":
            return image
    raise AssertionError(f"{image_id} stays pending")


def bake(
    sandbox: Any,
    role: str = "web",
    version: str | None = None,
    verified: str | None = "true",
    name: str | None = None,
    region: str = HOME,
) -> str:
    """What bake + verify produce: a self-owned AMI (with an EBS snapshot) tagged like a verified release image."""
    ec2 = sandbox.client("ec2", region)
    source = sorted(
        ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"],
        key=lambda i: i["ImageId"],
    )[0]["ImageId"]
    builder = ec2.run_instances(ImageId=source, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0][
        "InstanceId"
    ]
    for _ in range(5):
        state = ec2.describe_instances(InstanceIds=[builder])["Reservations"][0]["Instances"][0]["State"]["Name"]
        if state == "running":
            break
    name = name or f"phoenix-{role}-{version or dt.datetime.now(dt.UTC).strftime('%H%M%S%f')}"
    image_id = ec2.create_image(InstanceId=builder, Name=name, Description=f"phoenix-fleet {role} image")["ImageId"]
    tags = {"phoenix:role": role, "phoenix:managed-by": "phoenix-fleet", "Name": name}
    if version:
        tags["phoenix:version"] = version
    if verified is not None:
        tags["phoenix:verified"] = verified
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    wait_image(ec2, image_id)
    ec2.terminate_instances(InstanceIds=[builder])
    return image_id


def make_bucket(sandbox: Any) -> Any:
    s3 = sandbox.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return s3


def upload_packages(s3: Any, role: str, version: str, text: str) -> str:
    key = f"images/{role}/{version}/packages-{role}-{version}.tsv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())
    return key


def outlet_context(**extra: Any) -> dict[str, Any]:
    """make_context plus the outlet-event accessors the task runner gives a task."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from tests.helpers.airflow_run import make_context

    return make_context(outlet_events=OutletEventAccessors(), **extra)
