"""Helpers of the whole-DAG tests (import as ``e2e_fleet``): load a DAG from dags/, read an ASG's images."""

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
