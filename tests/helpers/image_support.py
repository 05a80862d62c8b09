"""Helpers of the bake and verify tests: tags, trivial polling, AMIs in any state (pending by default)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "include" / "packer" / "phoenix.pkr.hcl"
DOUBLE = REPO / "sandbox" / "bin" / "packer"


def tag_map(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", []) or []}


def poll(probe: Any, timeout: float = 60.0) -> Any:
    """Trivial polling of a subprocess' effects (describe-count latencies: no real waiting involved)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def make_image(sandbox: Any, base_ami: str, name: str, tags: dict[str, str], settle: bool = False) -> str:
    """An AMI made like a build would: builder instance -> create_image (pending by default) -> tags."""
    ec2 = sandbox.client("ec2")
    instance = ec2.run_instances(ImageId=base_ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
    image_id = ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"]
    if tags:
        ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    if settle:
        sandbox.settle()
    return image_id
