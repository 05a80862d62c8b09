"""A connection per environment: ``environments.<env>.aws_conn_id`` reaches every AWS task; another account is
reached through the connection's ``role_arn`` (STS AssumeRole in the sandbox, a second account id); an unknown
connection fails the task, naming the field and the connection id."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from phoenix_fleet.aws_conn import UnknownAwsConnection, require_aws_connection
from phoenix_fleet.config import FleetConfigError, parse_fleet_config
from phoenix_fleet.dag_facts import facts_from_config

REPO = Path(__file__).resolve().parents[2]
OTHER_ACCOUNT = "222233334444"
ROLE_ARN = f"arn:aws:iam::{OTHER_ACCOUNT}:role/phoenix-fleet"


@pytest.fixture
def raw() -> dict[str, Any]:
    return yaml.safe_load((REPO / "include" / "fleet.yaml").read_text())


def with_conn(raw: dict[str, Any], conn_id: str, env: str = "sandbox") -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    raw["environments"][env]["aws_conn_id"] = conn_id
    return raw


def connection(endpoint_url: str, **extra: Any) -> str:
    return json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": endpoint_url, "region_name": "us-east-1", **extra},
    })


# --------------------------------------------------------------------------------------------- the config


def test_each_role_gets_its_environments_connection(raw: dict[str, Any]) -> None:
    cfg = parse_fleet_config(raw)
    assert cfg.aws_conn("web") == ("aws_default", "environments.sandbox.aws_conn_id")  # the default
    assert cfg.artifacts_aws_conn() == ("aws_default", "environments.sandbox.aws_conn_id")
    cfg = parse_fleet_config(with_conn(raw, "aws_sandbox"))
    assert cfg.aws_conn("worker").conn_id == "aws_sandbox" and cfg.artifacts_aws_conn().conn_id == "aws_sandbox"
    assert {f["aws_conn_id"] for f in facts_from_config(cfg).values()} == {"aws_sandbox"}


def test_several_connections_need_an_artifacts_connection(raw: dict[str, Any]) -> None:
    raw = with_conn(raw, "aws_prod", env="prod")
    raw["roles"]["worker"]["env"] = "prod"
    with pytest.raises(FleetConfigError) as exc:
        parse_fleet_config(raw)
    assert "artifacts_aws_conn_id: not set, and the roles' environments use several AWS connections " \
           "(aws_default, aws_prod). Fix: set artifacts_aws_conn_id" in str(exc.value)
    raw["artifacts_aws_conn_id"] = "aws_prod"
    cfg = parse_fleet_config(raw)
    assert cfg.aws_conn("web").conn_id == "aws_default" and cfg.aws_conn("worker").conn_id == "aws_prod"
    assert cfg.artifacts_aws_conn() == ("aws_prod", "artifacts_aws_conn_id")


def test_a_connection_id_is_validated(raw: dict[str, Any]) -> None:
    with pytest.raises(FleetConfigError, match=r"environments.sandbox.aws_conn_id: 'aws prod' is not an Airflow "
                                               r"connection id. Fix:"):
        parse_fleet_config(with_conn(raw, "aws prod"))


# --------------------------------------------------------------------------------------------- the DAGs


def _conn_of(task: Any) -> Any:
    partial = getattr(task, "partial_kwargs", None)
    if partial is not None:  # a mapped task: what it does not set comes from the DAG's default_args when unmapped
        return partial.get("aws_conn_id", task.dag.default_args.get("aws_conn_id"))
    return task.aws_conn_id


def _takes_conn(task: Any) -> bool:
    import inspect

    cls = getattr(task, "operator_class", type(task))
    return any("aws_conn_id" in inspect.signature(c.__init__).parameters for c in cls.__mro__ if "__init__" in c.__dict__)


def test_every_aws_task_of_the_generated_dags_uses_the_environments_connection(raw: dict[str, Any]) -> None:
    from phoenix_fleet.pipelines.release_dag import build_release_dag
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    facts = facts_from_config(parse_fleet_config(with_conn(raw, "aws_sandbox")))
    for f in facts.values():
        for dag in (build_release_dag(f), build_rollout_dag(f)):
            conns = {t.task_id: _conn_of(t) for t in dag.tasks if _takes_conn(t)}
            assert conns and set(conns.values()) == {"aws_sandbox"}, (dag.dag_id, conns)
            if dag.dag_id.startswith("ami_release"):
                assert {"bake", "ami_available", "verify.launch_canary", "release", "copy_to_region", "publish"} <= set(conns)
                copy = dag.task_dict["copy_to_region"].unmap({"dest_region": "eu-west-1"})  # what a worker runs
                assert copy.aws_conn_id == "aws_sandbox"
            else:
                assert {"apply", "check_launch_templates", "canary", "recycle", "health_gate"} <= set(conns), conns


def test_notifications_go_through_the_environments_or_the_artifacts_connection(
    raw: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DAGs' notifiers read their targets, and the connection SNS is reached through, when they send."""
    from phoenix_fleet.pipelines.notify import targets

    raw = with_conn(raw, "aws_prod", env="prod")
    raw["roles"]["worker"]["env"] = "prod"
    raw["artifacts_aws_conn_id"] = "aws_reports"
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert targets("rollout", "web", str(path)).aws_conn_id == "aws_default"
    assert targets("release", "worker", str(path)).aws_conn_id == "aws_prod"
    assert targets("inventory", None, str(path)).aws_conn_id == "aws_reports"


def test_the_first_task_of_each_run_fails_on_an_unknown_connection_naming_the_field(
    raw: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any AWS call: the release and rollout plans, the inventory's regions, retention's roles."""
    from airflow.dag_processing.dagbag import DagBag
    from phoenix_fleet.pipelines.release_dag import build_release_dag
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(with_conn(raw, "aws_nowhere")))
    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", str(path))
    monkeypatch.setenv("PHOENIX_PARSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AIRFLOW_CONN_AWS_NOWHERE", raising=False)
    expected = (
        "environments.sandbox.aws_conn_id: Airflow has no connection 'aws_nowhere'. Fix: create it (Admin > "
        "Connections, the connections CLI, a secrets backend or AIRFLOW_CONN_AWS_NOWHERE), or name an existing one "
        "in environments.sandbox.aws_conn_id"
    )
    facts = facts_from_config(parse_fleet_config(with_conn(raw, "aws_nowhere")))["web"]
    calls = [
        lambda: build_release_dag(facts).task_dict["plan"].python_callable(params={}, dag_run=None),
        lambda: build_rollout_dag(facts).task_dict["plan"].python_callable(params={}, triggering_asset_events=None),
    ]
    import sys

    sys.path.insert(0, str(REPO / "dags"))
    try:
        bag = DagBag(dag_folder=str(REPO / "dags"), safe_mode=False)
    finally:
        sys.path.remove(str(REPO / "dags"))
    calls += [
        lambda: bag.dags["fleet_inventory"].task_dict["regions"].python_callable(params={}),
        lambda: bag.dags["ami_retention"].task_dict["roles"].python_callable(params={}),
    ]
    for call in calls:
        with pytest.raises(UnknownAwsConnection) as exc:
            call()
        assert str(exc.value) == expected


def test_the_inventory_sweeps_each_region_through_its_roles_connection(raw: dict[str, Any]) -> None:
    from phoenix_fleet.inventory.report import fleet_sweeps

    raw = with_conn(raw, "aws_prod", env="prod")
    raw["roles"]["worker"]["env"] = "prod"
    raw["artifacts_aws_conn_id"] = "aws_default"
    cfg = parse_fleet_config(raw)
    assert fleet_sweeps(cfg) == [
        {"region_name": "eu-west-1", "aws_conn_id": "aws_default"},
        {"region_name": "us-east-1", "aws_conn_id": "aws_default"},
        {"region_name": "us-east-1", "aws_conn_id": "aws_prod"},
    ]
    assert fleet_sweeps(cfg, ["eu-west-1"]) == [{"region_name": "eu-west-1", "aws_conn_id": "aws_default"}]


# --------------------------------------------------------------------------------------------- hooks, accounts


def test_our_hooks_refuse_an_unknown_connection_instead_of_falling_back(sandbox_clean: Any) -> None:
    """The provider's AwsBaseHook would log a warning and use boto3's default credentials (the worker's account)."""
    from phoenix_fleet.hooks.asg_hook import AsgHook
    from phoenix_fleet.hooks.image_hook import ImageHook
    from phoenix_fleet.triggers.ami_triggers import PhoenixEc2Hook

    for hook in (ImageHook(aws_conn_id="aws_gone"), AsgHook(aws_conn_id="aws_gone"), PhoenixEc2Hook(aws_conn_id="aws_gone")):
        with pytest.raises(UnknownAwsConnection, match=r"^aws_conn_id: Airflow has no connection 'aws_gone'"):
            hook.conn  # noqa: B018
    assert ImageHook(aws_conn_id="aws_default", region_name="us-east-1").get_account_id() == "123456789012"
    require_aws_connection(None)  # None: deliberately no connection (the provider's meaning), not an error


def test_another_account_through_the_connections_role_arn(sandbox_clean: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``aws_prod`` assumes a role in account 222233334444: hooks, operators and Terraform's credentials all act
    there, and see nothing of the sandbox's own account."""
    import boto3
    from phoenix_fleet.hooks.image_hook import ImageHook
    from phoenix_fleet.operators.apply_operators import TerraformApplyOperator
    from phoenix_fleet.operators.inventory_operators import CollectInventoryOperator

    from tests.helpers.airflow_run import make_context, run_task

    endpoint = sandbox_clean.endpoint_url
    monkeypatch.setenv("AIRFLOW_CONN_AWS_PROD", connection(endpoint, role_arn=ROLE_ARN))
    # what lives in each account: an instance in the sandbox's own, an ASG with an instance in the other
    own_ec2 = sandbox_clean.client("ec2")
    ami = own_ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    own = own_ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    creds = sandbox_clean.client("sts").assume_role(RoleArn=ROLE_ARN, RoleSessionName="seed")["Credentials"]
    other = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"], region_name="us-east-1",
    )
    other_ec2, other_asg = other.client("ec2", endpoint_url=endpoint), other.client("autoscaling", endpoint_url=endpoint)
    lt = other_ec2.create_launch_template(LaunchTemplateName="prod-web", LaunchTemplateData={"ImageId": ami})
    other_asg.create_auto_scaling_group(
        AutoScalingGroupName="prod-web-a", MinSize=1, MaxSize=1, DesiredCapacity=1, AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"], "Version": "$Default"},
        Tags=[{"Key": "phoenix:role", "Value": "web", "PropagateAtLaunch": True}],
    )

    hook = ImageHook(aws_conn_id="aws_prod", region_name="us-east-1")
    assert hook.get_account_id() == OTHER_ACCOUNT
    assert [g["AutoScalingGroupName"] for g in hook.find_asgs(tags={"phoenix:role": "web"})] == ["prod-web-a"]
    assert ImageHook(aws_conn_id="aws_default", region_name="us-east-1").find_asgs(tags={"phoenix:role": "web"}) == []

    snapshot = run_task(CollectInventoryOperator(task_id="c", aws_conn_id="aws_prod", region_name="us-east-1",
                                                 ssm_prefix="/phoenix/images"), make_context()).result
    swept = {i["id"] for i in snapshot["instances"]}
    assert len(swept) == 1 and own not in swept

    # what Terraform gets: the assumed role's credentials through a profile (an SDK reading it, as Terraform's does)
    apply = TerraformApplyOperator(task_id="a", aws_conn_id="aws_prod", region_name="us-east-1")
    env = apply._aws_env()
    try:
        assert env["AWS_ACCESS_KEY_ID"] is None and env["AWS_PROFILE"] == "phoenix-fleet"
        monkeypatch.setenv("AWS_CONFIG_FILE", str(env["AWS_CONFIG_FILE"]))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(env["AWS_SHARED_CREDENTIALS_FILE"]))
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        who = boto3.Session(profile_name="phoenix-fleet").client("sts", endpoint_url=endpoint, region_name="us-east-1")
        assert who.get_caller_identity()["Account"] == OTHER_ACCOUNT
    finally:
        apply.stop_credentials()
    with pytest.raises(UnknownAwsConnection, match="aws_conn_id: Airflow has no connection 'aws_nope'"):
        TerraformApplyOperator(task_id="a", aws_conn_id="aws_nope")._aws_env()
