"""Release then rollout, end to end with dag.test() in the sandbox: the fleet ends on the new version.

Role ``worker`` (native launch-template backend, strategy replace) so no Terraform state is needed; the
Terraform backend is covered by tests/e2e/test_apply_terraform.py and test_terraform_fleet.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _dag(module: str, dag_id: str):
    sys.path.insert(0, str(REPO / "dags"))
    try:
        mod = __import__(module)
    finally:
        sys.path.remove(str(REPO / "dags"))
    return getattr(mod, dag_id)


@pytest.fixture
def worker_fleet(seeded):
    """The seeded worker release running in one ASG (2 instances) tagged like the Terraform fleet."""
    h = seeded["handle"]
    ec2, asg = h.client("ec2"), h.client("autoscaling")
    ami = seeded["roles"]["worker"]["ami_id"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    lt = ec2.create_launch_template(
        LaunchTemplateName="sandbox-worker-a",
        LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.small", "MetadataOptions": {"HttpTokens": "required"}},
    )["LaunchTemplate"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName="sandbox-worker-a", MinSize=1, MaxSize=4, DesiredCapacity=2,
        VPCZoneIdentifier=",".join(subnets),
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Default"},
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in
              {"phoenix:role": "worker", "phoenix:env": "sandbox"}.items()],
    )
    h.settle()
    return {"asg": "sandbox-worker-a", "old_ami": ami, "lt": lt["LaunchTemplateId"]}


def _images_in(h, asg_name):
    asg, ec2 = h.client("autoscaling"), h.client("ec2")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in group["Instances"]]
    res = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return group, {i["InstanceId"]: i["ImageId"] for r in res for i in r["Instances"]}


def test_release_then_rollout_moves_the_fleet(airflow_db, seeded, worker_fleet):
    h = seeded["handle"]
    release = _dag("ami_release", "ami_release_worker").test(run_conf={})
    assert release.state == "success", {ti.task_id: ti.state for ti in release.get_task_instances()}
    assert {ti.task_id: ti.state for ti in release.get_task_instances()}["verify.terminate_canary"] == "success"
    ssm, ec2 = h.client("ssm"), h.client("ec2")
    new_ami = ssm.get_parameter(Name="/phoenix/images/worker/latest")["Parameter"]["Value"]
    version = ssm.get_parameter(Name="/phoenix/images/worker/latest-version")["Parameter"]["Value"]
    assert new_ami != worker_fleet["old_ami"]
    image = ec2.describe_images(ImageIds=[new_ami])["Images"][0]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["phoenix:verified"] == "true" and tags["phoenix:version"] == version
    canaries = ec2.describe_instances(Filters=[{"Name": "tag:phoenix:canary", "Values": ["true"]},
                                               {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert not [i for r in canaries["Reservations"] for i in r["Instances"]], "a canary was left running"

    rollout = _dag("fleet_rollout", "fleet_rollout_worker").test(run_conf={"target_version": "latest"})
    states = {ti.task_id: ti.state for ti in rollout.get_task_instances()}
    assert rollout.state == "success", states
    group, images = _images_in(h, worker_fleet["asg"])
    assert group["DesiredCapacity"] == 2 and len(images) == 2
    assert set(images.values()) == {new_ami}, f"fleet not entirely on {version}: {images}"
    summary = [ti for ti in rollout.get_task_instances() if ti.task_id == "summary"][0]
    assert summary.state == "success"


def test_bad_rollout_conf_is_rejected_before_anything_changes(airflow_db, seeded, worker_fleet):
    h = seeded["handle"]
    for conf, field in (
        ({"asgs": ["no-such-asg"]}, "params.asgs"),
        ({"target_version": "2020.01.01-1"}, "params.target_version"),
    ):
        run = _dag("fleet_rollout", "fleet_rollout_worker").test(run_conf=conf)
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert states["plan"] == "failed", (conf, states)
        assert states.get("apply") in ("upstream_failed", None), states
        _, images = _images_in(h, worker_fleet["asg"])
        assert set(images.values()) == {worker_fleet["old_ami"]}, field
