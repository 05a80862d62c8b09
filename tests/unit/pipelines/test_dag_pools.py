"""The API budget's task slots: every AWS-calling task of a role's DAGs runs in its environment and region's pool.

Built from the facts of a config whose role lives in the prod environment with eu-west-1 as home region, so the
pool (phoenix_prod_eu-west-1) cannot be a default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from phoenix_fleet.config import parse_fleet_config
from phoenix_fleet.dag_facts import facts_from_config

FLEET_YAML = Path(__file__).resolve().parents[3] / "include" / "fleet.yaml"
POOL = "phoenix_prod_eu-west-1"

#: the tasks that call no AWS API (branches, list shaping, the human approval, the summary)
NO_AWS = {
    "ami_release_web": {"choose_source", "image_under_test", "publish_regions"},
    "fleet_rollout_web": {"targets", "approval_needed", "approval", "canary_needs_rollback", "gate_targets", "summary"},
}
#: the tasks that call AWS (each named, so a task added without thought fails here)
AWS = {
    "ami_release_web": {
        "plan", "bake", "ami_available", "verify.launch_canary", "verify.wait_canary_healthy",
        "verify.run_image_tests", "verify.mark_verified", "verify.terminate_canary", "release", "copy_to_region",
        "publish", "settle_version_claim",
    },
    "fleet_rollout_web": {
        "plan", "apply", "check_launch_templates", "canary", "canary_rollback", "recycle", "health_gate",
        "restore_launch_templates",
    },
}


@pytest.fixture(scope="module")
def dags() -> dict:
    from phoenix_fleet.pipelines.release_dag import build_release_dag
    from phoenix_fleet.pipelines.rollout_dag import build_rollout_dag

    raw = yaml.safe_load(FLEET_YAML.read_text())
    raw["roles"]["web"]["env"] = "prod"
    raw["roles"]["web"]["regions"] = ["eu-west-1", "us-east-1"]
    raw["artifacts_aws_conn_id"] = "aws_default"
    facts = facts_from_config(parse_fleet_config(raw))["web"]
    return {d.dag_id: d for d in (build_release_dag(facts), build_rollout_dag(facts))}


@pytest.mark.parametrize("dag_id", sorted(AWS))
def test_aws_calling_tasks_run_in_the_environment_and_region_pool(dags: dict, dag_id: str) -> None:
    dag = dags[dag_id]
    pools = {t.task_id: t.pool for t in dag.tasks}
    assert set(pools) == AWS[dag_id] | NO_AWS[dag_id]  # every task is classified
    assert {t: p for t, p in pools.items() if t in AWS[dag_id]} == dict.fromkeys(AWS[dag_id], POOL)
    assert {t: p for t, p in pools.items() if t in NO_AWS[dag_id]} == dict.fromkeys(NO_AWS[dag_id], "default_pool")
    # an operator with an AWS connection is an AWS-calling task
    assert all(t.pool == POOL for t in dag.tasks if getattr(t, "aws_conn_id", None))
