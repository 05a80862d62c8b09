"""fleet_inventory, fleet_max_age and ami_retention parse, and are wired as documented (the generic checks are in tests/dags)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[3] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    sys.path.insert(0, str(DAGS))
    try:
        bag = DagBag(dag_folder=str(DAGS), safe_mode=False)
    finally:
        sys.path.remove(str(DAGS))
    assert not {k: v for k, v in bag.import_errors.items() if any(n in k for n in ("fleet_inventory", "ami_retention", "fleet_max_age"))}
    return bag


def test_fleet_inventory_shape(dagbag) -> None:
    dag = dagbag.dags["fleet_inventory"]
    assert dag.timetable.expression == "0 2 * * *"
    assert set(dag.task_dict) == {"regions", "collect", "report", "notify"}
    assert dag.task_dict["collect"].upstream_task_ids == {"regions"}
    assert dag.task_dict["report"].upstream_task_ids == {"collect"}
    assert dag.task_dict["notify"].upstream_task_ids == {"report"}
    outlets = dag.task_dict["report"].outlets
    assert [o.uri for o in outlets] == ["x-phoenix://inventory/fleet"]
    assert [o.name for o in outlets] == ["phoenix_fleet_inventory"]
    assert set(dag.params) == {"regions", "max_age_days", "write_s3", "sns_topic_arn"}


def test_ami_retention_shape(dagbag) -> None:
    dag = dagbag.dags["ami_retention"]
    assert set(dag.task_dict) == {"roles", "retention"}
    assert dag.task_dict["retention"].upstream_task_ids == {"roles"}
    assert set(dag.params) == {"roles", "dry_run", "keep_versions", "grace_days"}
    assert dag.params["dry_run"] is False and dag.params["grace_days"] == 14


def test_fleet_max_age_runs_on_the_inventory_asset(dagbag) -> None:
    dag = dagbag.dags["fleet_max_age"]
    assert [a.uri for a in dag.timetable.asset_condition.objects] == ["x-phoenix://inventory/fleet"]
    assert set(dag.task_dict) == {"select", "renew", "summary"}
    assert dag.task_dict["renew"].upstream_task_ids == {"select"}
    assert dag.task_dict["summary"].trigger_rule == "none_failed"
    renew = dag.task_dict["renew"]
    assert renew.partial_kwargs["if_locked"] == "skip" and renew.partial_kwargs["max_active_tis_per_dagrun"] == 2
    assert set(dag.params) == {"dry_run", "max_asgs", "lead_days", "report"}
    assert dag.max_active_runs == 1
