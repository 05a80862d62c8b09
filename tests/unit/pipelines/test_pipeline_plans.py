"""The plan tasks' pure parts: trigger-form validation names the field; asset events carry the version."""

from types import SimpleNamespace

import pytest
from phoenix_fleet.config import load_fleet_config
from phoenix_fleet.config_file import default_config_path
from phoenix_fleet.pipelines.release_plan import ReleaseParamError, validate_release_params
from phoenix_fleet.pipelines.rollout_plan import RolloutParamError, policy_overrides, version_from_events

FLEET = load_fleet_config()
FLEET_PATH = default_config_path()
WEB = FLEET.role("web")


def test_release_defaults():
    p = validate_release_params({}, WEB, "web")
    assert p["version"] is None and p["regions"] == WEB.regions and not p["dry_run"] and not p["skip_bake"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"version": "2026-11-30"}, "params.version"),
        ({"skip_bake": True}, "params.ami_id"),
        ({"skip_bake": True, "ami_id": "i-123"}, "params.ami_id"),
        ({"ami_id": "ami-0123456789abcdef0"}, "params.ami_id"),
        ({"base_ami_name": "debian-12-*"}, "params.base_ami_owners"),
        ({"base_ami_owners": ["self"]}, "params.base_ami_name"),
        ({"base_ami_name": "x", "base_ami_owners": ["evil"]}, "params.base_ami_owners"),
        ({"regions": ["ap-south-1"]}, "params.regions"),
        ({"regions": ["eu-west-1"]}, "params.regions"),  # the home region is required
    ],
)
def test_release_bad_params_name_the_field(params, field):
    with pytest.raises(ReleaseParamError) as e:
        validate_release_params(params, WEB, "web")
    assert field in str(e.value) and "Fix:" in str(e.value)


def test_release_subset_and_override():
    p = validate_release_params(
        {"regions": "us-east-1", "base_ami_name": "debian-12-*", "base_ami_owners": "136693071363"}, WEB, "web"
    )
    assert p["regions"] == ["us-east-1"] and p["base_ami_owners"] == ["136693071363"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"batch_size": -1}, "params.batch_size"),
        ({"batch_size": 0}, "params.batch_size"),
        ({"batch_size": "two"}, "params.batch_size"),
        ({"batch_size": True}, "params.batch_size"),
        ({"min_healthy_percent": 150}, "params.min_healthy_percent"),
        ({"strategy": "yolo"}, "params.strategy"),
    ],
)
def test_rollout_policy_overrides_are_validated(params, field):
    with pytest.raises(RolloutParamError) as e:
        policy_overrides(params, WEB.rollout)
    assert field in str(e.value)


def test_rollout_overrides_replace_batch_percent():
    assert policy_overrides({"batch_size": "2", "strategy": "replace"}, WEB.rollout) == {
        "batch_size": 2, "batch_percent": None, "strategy": "replace",
    }
    assert policy_overrides({}, WEB.rollout) == {}


def test_version_from_asset_events_newest_wins():
    from airflow.sdk import Asset

    asset = Asset(name="phoenix_image_web", uri="x-phoenix://images/web")
    other = Asset(name="phoenix_image_worker", uri="x-phoenix://images/worker")
    events = {
        asset: [SimpleNamespace(extra={"version": "2026.11.23-1"}), SimpleNamespace(extra={"version": "2026.11.30-1"})],
        other: [SimpleNamespace(extra={"version": "2026.12.01-1"})],
    }
    assert version_from_events(events, "x-phoenix://images/web") == "2026.11.30-1"
    assert version_from_events({}, "x-phoenix://images/web") is None


def test_a_scheduled_release_created_late_skips_and_a_manual_one_never_does():
    import datetime as dt

    from airflow.utils.types import DagRunType
    from phoenix_fleet.pipelines.release_plan import late_scheduled_run

    slot = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)  # Monday 03:00
    on_time = slot + dt.timedelta(minutes=2)
    unpaused = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC)  # Wednesday afternoon
    assert late_scheduled_run(DagRunType.SCHEDULED, slot, on_time, 6) is None
    assert late_scheduled_run("scheduled", slot, slot + dt.timedelta(hours=5, minutes=59), 6) is None
    why = late_scheduled_run(DagRunType.SCHEDULED, slot, unpaused, 6)
    assert why and "slot at 2026-11-23 03:00 UTC, 61.0 h ago" in why and "schedule_grace_hours=6" in why
    assert "Fix: trigger the DAG by hand" in why
    assert late_scheduled_run(DagRunType.MANUAL, slot, unpaused, 6) is None
    assert late_scheduled_run(DagRunType.ASSET_TRIGGERED, slot, unpaused, 6) is None
    assert late_scheduled_run("scheduled", None, unpaused, 6) is None


def test_the_release_plan_task_skips_a_late_scheduled_run_before_any_aws_call(monkeypatch):
    """The plan task of ami_release_web, called as Airflow calls it: a late scheduled run skips (so every
    downstream task skips), before it builds a hook or reads AWS."""
    import datetime as dt

    import phoenix_fleet.hooks.image_hook as image_hook
    from airflow.sdk.exceptions import AirflowSkipException
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.pipelines.release_dag import build_release_dag

    def no_aws(*a, **k):
        raise AssertionError("the plan task touched AWS")

    monkeypatch.setattr(image_hook, "ImageHook", no_aws)
    dag = build_release_dag(facts_from_config(FLEET)["web"])
    callable_ = dag.task_dict["plan"].python_callable
    late = SimpleNamespace(run_type="scheduled", run_after=dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC))
    with pytest.raises(AirflowSkipException, match="this scheduled run is for the slot at 2026-11-02 03:00 UTC"):
        callable_(params={}, dag_run=late)
    manual = SimpleNamespace(run_type="manual", run_after=late.run_after)
    with pytest.raises(AssertionError, match="touched AWS"):  # a manual run goes on to plan (and reads AWS)
        callable_(params={}, dag_run=manual)


def test_terraform_vars_are_expanded_on_the_apply_worker_never_in_the_plan(sandbox_clean, tmp_path, monkeypatch):
    """fleet.yaml's terraform.vars may reference the worker's environment (``${AWS_ENDPOINT_URL}``, a token): the
    rollout's ``plan`` task must not expand them, since its return value is XCom (stored in the metadata DB, shown
    in the UI) and the ``apply`` task's ``variables`` would be a rendered template field. ``apply`` reads the role's
    vars itself and expands them where Terraform runs."""
    import json

    import yaml
    from phoenix_fleet.dag_facts import facts_from_config
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    from sandbox.seed import seed

    raw = yaml.safe_load(open(FLEET_PATH).read())
    raw["roles"]["web"]["terraform"]["vars"] = {"endpoint": "${AWS_ENDPOINT_URL}", "token": "${PHX_TEST_TF_TOKEN}"}
    raw["roles"]["web"]["regions"] = ["us-east-1"]
    (tmp_path / "terraform" / "envs" / "sandbox").mkdir(parents=True)
    cfg_path = tmp_path / "fleet.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", str(cfg_path))
    monkeypatch.setenv("PHX_TEST_TF_TOKEN", "tf-token-0123456789")
    seed(sandbox_clean.endpoint_url, roles={"web": ["us-east-1"]})
    ec2, autoscaling = sandbox_clean.client("ec2"), sandbox_clean.client("autoscaling")
    ami = sandbox_clean.client("ssm").get_parameter(Name="/phoenix/images/web/latest")["Parameter"]["Value"]
    lt = ec2.create_launch_template(LaunchTemplateName="web-a", LaunchTemplateData={"ImageId": ami})["LaunchTemplate"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="web-a", MinSize=0, MaxSize=1, DesiredCapacity=0, AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Default"},
        Tags=[{"Key": k, "Value": v} for k, v in {"phoenix:role": "web", "phoenix:env": "sandbox"}.items()],
    )

    from phoenix_fleet.config import load_fleet_config as load

    dag = build_rollout_dag(facts_from_config(load(cfg_path))["web"])
    result = dag.task_dict["plan"].python_callable(params={}, triggering_asset_events=None)
    assert result["targets"] == [{"asg_name": "web-a", "region_name": "us-east-1", "target_image_id": ami}]
    text = json.dumps(result)
    assert "tf-token-0123456789" not in text and sandbox_clean.endpoint_url not in text, text
    apply = dag.task_dict["apply"]
    assert apply.variables is None  # nothing wired from XCom: the operator takes the role's vars at run time
    assert apply.resolved_variables() == {"endpoint": sandbox_clean.endpoint_url, "token": "tf-token-0123456789"}
    assert apply.variables is None
