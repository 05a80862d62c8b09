"""Helpers of the whole-DAG tests (import as ``e2e_fleet``): load a DAG from dags/, read an ASG's images, make the
sandbox network the Terraform fleet root looks up."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def dag_from(module: str, dag_id: str):
    """A freshly built DAG ``dag_id`` of ``dags/<module>.py`` (a generated one is a module global: the module is
    executed again; a ``@dag`` function is called). Fresh, because ``dag.test(run_conf=...)`` leaves the run's
    conf in its tasks' Params (runs in-process), where it would become the next test's defaults."""
    import importlib

    from airflow.sdk import DAG

    sys.path.insert(0, str(REPO / "dags"))
    try:
        mod = importlib.reload(sys.modules[module]) if module in sys.modules else importlib.import_module(module)
    finally:
        sys.path.remove(str(REPO / "dags"))
    found = getattr(mod, dag_id)
    return found if isinstance(found, DAG) else found()


def images_in(h, asg_name):
    asg, ec2 = h.client("autoscaling"), h.client("ec2")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in group["Instances"]]
    res = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return group, {i["InstanceId"]: i["ImageId"] for r in res for i in r["Instances"]}


def sandbox_network(sandbox, env: str = "sandbox") -> None:
    """What include/terraform/envs/sandbox/network makes, as far as the fleet root looks it up (by tags and names)."""
    ec2, elbv2 = sandbox.client("ec2"), sandbox.client("elbv2")
    net = [{"Key": "phoenix:network", "Value": env}]
    vpc = ec2.create_vpc(
        CidrBlock="10.42.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [*net, {"Key": "Name", "Value": f"{env}-phoenix"}]}],
    )["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(
            VpcId=vpc,
            CidrBlock=f"10.42.{i}.0/24",
            AvailabilityZone=az,
            TagSpecifications=[{"ResourceType": "subnet", "Tags": [*net, {"Key": "phoenix:tier", "Value": "public"}]}],
        )["Subnet"]["SubnetId"]
        for i, az in enumerate(("us-east-1a", "us-east-1b"))
    ]
    ec2.create_security_group(GroupName=f"{env}-phoenix-instances", Description="instances", VpcId=vpc)
    alb_sg = ec2.create_security_group(GroupName=f"{env}-phoenix-alb", Description="alb", VpcId=vpc)["GroupId"]
    elbv2.create_load_balancer(Name=f"{env}-phoenix", Subnets=subnets, SecurityGroups=[alb_sg], Type="application")
