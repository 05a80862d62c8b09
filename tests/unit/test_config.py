"""Fleet config validation: every error names the field and the fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from phoenix_fleet.config import (
    FleetConfigError,
    load_fleet_config,
    parse_fleet_config,
)

REPO = Path(__file__).resolve().parents[2]
FLEET_YAML = REPO / "include" / "fleet.yaml"


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(FLEET_YAML.read_text())


def _errors(raw: dict) -> str:
    with pytest.raises(FleetConfigError) as exc:
        parse_fleet_config(raw)
    return str(exc.value)


def test_shipped_config_is_valid_and_merges_defaults():
    cfg = load_fleet_config(FLEET_YAML)
    assert set(cfg.roles) == {"web", "worker"}
    web, worker = cfg.roles["web"], cfg.roles["worker"]
    # defaults flow in, role keys win
    assert web.rollout.warmup_seconds == 30
    assert web.rollout.batch_percent == 50
    assert worker.rollout.batch_size == 1 and worker.rollout.batch_percent is None
    assert worker.rollout.strategy == "replace"
    assert web.image.base_ami.owners == ["self"]
    assert web.home_region == "us-east-1"
    assert cfg.latest_parameter("web") == "/phoenix/images/web/latest"
    assert cfg.max_age_for("web") == 14
    assert cfg.environment("web").require_approval is False


def test_unknown_key_names_field_and_suggests(raw):
    raw["roles"]["web"]["image"]["instance_typ"] = "t3.micro"
    msg = _errors(raw)
    assert "roles.web.image.instance_typ: unknown key" in msg
    assert "did you mean 'instance_type'" in msg


def test_unknown_key_without_close_match_lists_allowed(raw):
    raw["roles"]["web"]["xyzzy"] = "blue"
    msg = _errors(raw)
    assert "roles.web.xyzzy: unknown key" in msg
    assert "allowed keys here:" in msg and "regions" in msg


@pytest.mark.parametrize("cron", ["61 3 * * 1", "every monday", "0 3 * *", "0 3 * * 1 2026"])
def test_bad_cron(raw, cron):
    raw["roles"]["web"]["schedule"] = cron
    msg = _errors(raw)
    assert "roles.web.schedule:" in msg and "Fix:" in msg and "0 3 * * 1" in msg


def test_cron_presets_accepted(raw):
    raw["roles"]["web"]["schedule"] = "@weekly"
    assert parse_fleet_config(raw).roles["web"].schedule == "@weekly"


def test_batch_size_zero(raw):
    raw["roles"]["worker"]["rollout"]["batch_size"] = 0
    msg = _errors(raw)
    assert "roles.worker.rollout.batch_size: must be at least 1 (got 0)" in msg
    assert "Fix:" in msg


def test_min_healthy_over_100(raw):
    raw["roles"]["web"]["rollout"]["min_healthy_percent"] = 120
    msg = _errors(raw)
    assert "roles.web.rollout.min_healthy_percent: must be between 0 and 100 (got 120)" in msg


def test_base_ami_filter_without_owners(raw):
    del raw["roles"]["web"]["image"]["base_ami"]["owners"]
    msg = _errors(raw)
    assert "roles.web.image.base_ami.owners: required but missing" in msg


def test_base_ami_filter_with_empty_owners(raw):
    raw["roles"]["web"]["image"]["base_ami"]["owners"] = []
    msg = _errors(raw)
    assert "roles.web.image.base_ami.owners:" in msg and "name squatting" in msg


def test_bad_owner_and_account(raw):
    raw["roles"]["web"]["image"]["base_ami"]["owners"] = ["evil-corp"]
    raw["roles"]["web"]["share_with_accounts"] = [111122223333]  # unquoted int in YAML
    msg = _errors(raw)
    assert "roles.web.image.base_ami.owners: 'evil-corp' is not an account id" in msg
    assert "roles.web.share_with_accounts.0:" in msg


def test_errors_in_defaults_are_reported_once_under_defaults(raw):
    raw["defaults"]["rollout"]["min_healthy_percent"] = -5
    msg = _errors(raw)
    assert "defaults.rollout.min_healthy_percent" in msg
    assert "roles.web.rollout.min_healthy_percent" not in msg


def test_typo_in_defaults(raw):
    raw["defaults"]["rollout"]["batchsize"] = 2
    assert "defaults.rollout.batchsize: unknown key. Fix: did you mean 'batch_size'?" in _errors(raw)


def test_unknown_defaults_section(raw):
    raw["defaults"]["image"] = {}
    assert "defaults.image: unknown key" in _errors(raw)


def test_batch_size_and_percent_conflict_on_same_level(raw):
    raw["roles"]["web"]["rollout"]["batch_size"] = 2
    raw["roles"]["web"]["rollout"]["batch_percent"] = 20
    assert "roles.web.rollout: batch_size and batch_percent both set" in _errors(raw)


def test_surge_that_can_never_progress(raw):
    raw["roles"]["web"]["rollout"].update(strategy="surge", max_surge=0, min_healthy_percent=100)
    assert "can never replace anything" in _errors(raw)


def test_bad_region_and_duplicate(raw):
    raw["roles"]["web"]["regions"] = ["us-east-1", "mars-1"]
    assert "roles.web.regions: 'mars-1' is not an AWS region" in _errors(raw)
    raw["roles"]["web"]["regions"] = ["us-east-1", "us-east-1"]
    assert "lists a region twice" in _errors(raw)


def test_undeclared_environment(raw):
    raw["roles"]["web"]["env"] = "staging"
    msg = _errors(raw)
    assert "roles.web.env: 'staging' is not a declared environment" in msg


def test_terraform_backend_needs_workdir(raw):
    raw["roles"]["web"]["terraform"] = {"backend": "terraform"}
    assert "roles.web.terraform: backend terraform needs a workdir" in _errors(raw)


def test_terraform_backend_config(raw):
    web = parse_fleet_config(raw).roles["web"].terraform
    assert web.backend_config == {"bucket": "phoenix-fleet-tfstate", "key": "sandbox/fleet.tfstate", "region": "us-east-1"}
    assert web.allow_local_state is False
    raw["roles"]["web"]["terraform"]["backend_config"]["bucket=x"] = "y"
    msg = _errors(raw)
    assert "roles.web.terraform.backend_config: 'bucket=x' is not a backend setting name" in msg and "Fix:" in msg


def test_native_backend_takes_no_state_settings(raw):
    raw["roles"]["worker"]["terraform"]["allow_local_state"] = True
    msg = _errors(raw)
    assert "roles.worker.terraform: backend native runs no Terraform" in msg and "Fix: remove them" in msg


def test_unknown_suspend_process(raw):
    raw["roles"]["web"]["rollout"]["suspend_processes"] = ["AZRebalance", "Rebalance"]
    assert "'Rebalance' is not an AutoScaling process" in _errors(raw)


def test_literal_error_names_field(raw):
    raw["roles"]["web"]["rollout"]["on_failure"] = "panic"
    msg = _errors(raw)
    assert "roles.web.rollout.on_failure:" in msg and "'rollback' or 'halt'" in msg


def test_asg_selector_must_select_something(raw):
    raw["roles"]["web"]["asgs"] = {}
    assert "roles.web.asgs: selects nothing" in _errors(raw)


def test_batch_for(raw):
    cfg = parse_fleet_config(raw)
    assert cfg.roles["web"].rollout.batch_for(4) == 2  # 50 %
    assert cfg.roles["web"].rollout.batch_for(1) == 1  # never 0
    assert cfg.roles["worker"].rollout.batch_for(40) == 1


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "fleet.yaml"
    bad.write_text("roles: [unclosed\n")
    with pytest.raises(FleetConfigError, match="not valid YAML"):
        load_fleet_config(bad)
    with pytest.raises(FleetConfigError, match="cannot read .*PHOENIX_FLEET_CONFIG"):
        load_fleet_config(tmp_path / "nope.yaml")


def test_env_var_points_to_config(tmp_path, monkeypatch, raw):
    alt = copy.deepcopy(raw)
    del alt["roles"]["worker"]
    p = tmp_path / "fleet.yaml"
    p.write_text(yaml.safe_dump(alt))
    monkeypatch.setenv("PHOENIX_FLEET_CONFIG", str(p))
    assert set(load_fleet_config().roles) == {"web"}


def test_cli_reports_errors(tmp_path, capsys, raw):
    from phoenix_fleet.config import main

    raw["roles"]["web"]["rollout"]["batch_size"] = 0
    raw["roles"]["web"]["rollout"].pop("batch_percent")
    p = tmp_path / "fleet.yaml"
    p.write_text(yaml.safe_dump(raw))
    assert main([str(p)]) == 1
    assert "roles.web.rollout.batch_size" in capsys.readouterr().err
    assert main([str(FLEET_YAML)]) == 0


def test_notification_targets_are_checked_and_the_fleet_ones_default_to_the_environments(raw):
    raw["environments"]["prod"]["notify_sns_topic_arn"] = "phoenix-releases"
    raw["notifications"] = {"slack_conn_id": "slack releases", "on_succes": True}
    errors = _errors(copy.deepcopy(raw))
    assert "environments.prod.notify_sns_topic_arn: 'phoenix-releases' is not an SNS topic ARN. Fix: arn:aws:sns:" in errors
    assert "notifications.slack_conn_id: 'slack releases' is not an Airflow connection id. Fix:" in errors
    assert "notifications.on_succes: unknown key. Fix: did you mean 'on_success'?" in errors

    topic = "arn:aws:sns:us-east-1:123456789012:phoenix-releases"
    raw["environments"]["prod"].update(notify_sns_topic_arn=topic, slack_conn_id="slack_releases")
    raw["notifications"] = {}
    cfg = parse_fleet_config(raw)
    assert cfg.environments["prod"].notify_on_success is True  # a release and a rollout are announced by default
    n = cfg.fleet_notifications()  # the fleet-wide DAGs: the one topic and connection the environments name
    assert (n.sns_topic_arn, n.slack_conn_id, n.on_success) == (topic, "slack_releases", False)
    raw["environments"]["sandbox"]["notify_sns_topic_arn"] = topic.replace("releases", "sandbox")
    assert parse_fleet_config(raw).fleet_notifications().sns_topic_arn is None  # two topics: none is guessed
    raw["notifications"] = {"sns_topic_arn": topic}
    assert parse_fleet_config(raw).fleet_notifications().sns_topic_arn == topic


# -- the API budget (issue 16) -------------------------------------------------------------------------------


def test_api_budget_defaults_and_pools_per_environment_and_region(raw):
    from phoenix_fleet.api_budget import (
        DEFAULT_CALLS_PER_SECOND,
        DEFAULT_POOL_SLOTS,
        calls_per_second_for,
        pool_specs,
    )

    raw["environments"]["prod"]["api_budget"] = {"pool_slots": 3, "calls_per_second": 4}
    raw["roles"]["worker"]["env"] = "prod"
    raw["roles"]["worker"]["regions"] = ["us-east-1", "ap-southeast-2"]
    raw["artifacts_aws_conn_id"] = "aws_default"
    cfg = parse_fleet_config(raw)
    assert cfg.api_budget("web").pool_slots == DEFAULT_POOL_SLOTS
    assert cfg.api_budget("web").calls_per_second == DEFAULT_CALLS_PER_SECOND
    assert cfg.pool("worker", "ap-southeast-2") == "phoenix_prod_ap-southeast-2"
    assert [(p.name, p.slots) for p in pool_specs(cfg)] == [
        ("phoenix_prod_ap-southeast-2", 3),
        ("phoenix_prod_us-east-1", 3),
        ("phoenix_sandbox_eu-west-1", DEFAULT_POOL_SLOTS),
        ("phoenix_sandbox_us-east-1", DEFAULT_POOL_SLOTS),
    ]
    assert calls_per_second_for(cfg, "aws_prod") == 4
    assert calls_per_second_for(cfg, "aws_default") == DEFAULT_CALLS_PER_SECOND


@pytest.mark.parametrize(
    ("budget", "field", "fix"),
    [
        ({"pool_slots": 0}, "environments.prod.api_budget.pool_slots", "must be a whole number from 1 to 512"),
        ({"pool_slots": 2.5}, "environments.prod.api_budget.pool_slots", "the task slots of this environment"),
        ({"calls_per_second": 0}, "environments.prod.api_budget.calls_per_second", "must be a number above 0"),
        ({"calls_per_second": 50}, "environments.prod.api_budget.calls_per_second", "at 20 a second per region"),
        ({"calls_per_secnd": 5}, "environments.prod.api_budget.calls_per_secnd: unknown key", "calls_per_second"),
    ],
)
def test_api_budget_errors_name_the_field_and_the_fix(raw, budget, field, fix):
    raw["environments"]["prod"]["api_budget"] = budget
    msg = _errors(raw)
    assert field in msg and fix in msg and "Fix:" in msg


def test_environment_names_must_fit_a_pool_name(raw):
    raw["environments"]["Prod Env"] = raw["environments"].pop("prod")
    msg = _errors(raw)
    assert "environments: environment name 'Prod Env' is invalid" in msg and "Fix: lowercase" in msg


def test_inline_wait_seconds_bounds_name_the_field_and_the_fix(raw):
    raw["roles"]["web"]["rollout"]["inline_wait_seconds"] = -1
    msg = _errors(raw)
    assert "roles.web.rollout.inline_wait_seconds: must be between 0 and 600 seconds (got -1)" in msg
    assert "Fix: 0 defers every wait" in msg
    raw["roles"]["web"]["rollout"]["inline_wait_seconds"] = 601
    assert "must be between 0 and 600 seconds (got 601)" in _errors(raw)
