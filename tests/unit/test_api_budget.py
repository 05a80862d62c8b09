"""phoenix_fleet.api_budget: pool names, what fleet_config_check reports about the pools, the api-server's URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from phoenix_fleet.api_budget import PoolSpec, airflow_api_url, pool_name, pools_problems

REPO = Path(__file__).resolve().parents[2]
WANTED = [
    PoolSpec("phoenix_prod_eu-west-1", 4, "prod", "eu-west-1", "environments.prod.api_budget.pool_slots"),
    PoolSpec("phoenix_prod_us-east-1", 4, "prod", "us-east-1", "environments.prod.api_budget.pool_slots"),
]


def test_pool_names() -> None:
    assert pool_name("prod", "eu-west-1") == "phoenix_prod_eu-west-1"


def test_the_check_reports_a_missing_and_a_wrongly_sized_pool_naming_the_field_and_the_fix() -> None:
    assert pools_problems(WANTED, {"phoenix_prod_eu-west-1": 4, "phoenix_prod_us-east-1": 4, "default_pool": 128}) == []
    problems = pools_problems(WANTED, {"phoenix_prod_eu-west-1": 16, "default_pool": 128})
    assert problems == [
        "pool phoenix_prod_eu-west-1 has 16 slots, environments.prod.api_budget.pool_slots says 4. Fix: "
        "`airflow pools set phoenix_prod_eu-west-1 4 '<description>'`, or change environments.prod.api_budget.pool_slots",
        "pool phoenix_prod_us-east-1 does not exist: the prod environment's tasks in us-east-1 would not run. Fix: "
        "`airflow pools set phoenix_prod_us-east-1 4 '<description>'` (or `make airflow`, which creates every pool "
        "from environments.prod.api_budget.pool_slots)",
    ]


def test_the_api_url_is_the_execution_api_s_server() -> None:
    assert airflow_api_url({"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://10.0.0.5:8081/execution/"}) == (
        "http://10.0.0.5:8081"
    )
    assert airflow_api_url({"PHOENIX_AIRFLOW_API_URL": "https://airflow.example/", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL":
                            "http://x/execution/"}) == "https://airflow.example"


def test_the_pools_file_make_airflow_imports() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "phoenix_fleet.api_budget", str(REPO / "include" / "fleet.yaml")],
        capture_output=True, text=True, check=True,
    ).stdout
    pools = json.loads(out)
    assert sorted(pools) == ["phoenix_sandbox_eu-west-1", "phoenix_sandbox_us-east-1"]
    assert pools["phoenix_sandbox_us-east-1"]["slots"] == 8
    assert pools["phoenix_sandbox_us-east-1"]["include_deferred"] is False
    assert "environments.sandbox.api_budget.pool_slots" in pools["phoenix_sandbox_us-east-1"]["description"]
