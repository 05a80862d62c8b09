"""ami_release_<role> end to end with dag.test() against the sandbox (Packer double, SSM, S3)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _dag(role: str):
    sys.path.insert(0, str(REPO / "dags"))
    try:
        import ami_release
    finally:
        sys.path.remove(str(REPO / "dags"))
    return getattr(ami_release, f"ami_release_{role}")


def _states(dr):
    return {ti.task_id: ti.state for ti in dr.get_task_instances()}


def test_weekly_release_bakes_verifies_and_publishes(airflow_db, seeded):
    ec2 = seeded["handle"].client("ec2")
    ssm = seeded["handle"].client("ssm")
    dr = _dag("web").test(run_conf={})
    states = _states(dr)
    assert dr.state == "success", states
    assert states["verify.terminate_canary"] == "success"
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:phoenix:role", "Values": ["web"]}])["Images"]
    newest = max(images, key=lambda i: i["CreationDate"])
    tags = {t["Key"]: t["Value"] for t in newest["Tags"]}
    assert tags["phoenix:verified"] == "true"
    version = tags["phoenix:version"]
    assert ssm.get_parameter(Name="/phoenix/images/web/latest")["Parameter"]["Value"] == newest["ImageId"]
    assert ssm.get_parameter(Name="/phoenix/images/web/latest-version")["Parameter"]["Value"] == version
    # no canary left running
    canaries = ec2.describe_instances(Filters=[{"Name": "tag:phoenix:canary", "Values": ["true"]},
                                               {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert not [i for r in canaries["Reservations"] for i in r["Instances"]]


def test_dry_run_changes_nothing(airflow_db, seeded):
    ec2 = seeded["handle"].client("ec2")
    before = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    dr = _dag("web").test(run_conf={"dry_run": True})
    assert dr.state == "success"
    states = _states(dr)
    assert states["bake"] == "skipped" and states["publish"] == "skipped"
    assert {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]} == before


def test_bad_trigger_conf_fails_in_plan_naming_the_field(airflow_db, seeded):
    ec2 = seeded["handle"].client("ec2")
    before = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    dr = _dag("web").test(run_conf={"base_ami_name": "debian-12-*", "regions": ["us-east-1", "ap-south-1"]})
    states = _states(dr)
    assert states["plan"] == "failed"
    assert states["bake"] in ("upstream_failed", None)
    assert {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]} == before
