"""
### fleet_config_check

Validates the fleet configuration (`include/fleet.yaml`) and prints, for each role, its environment,
regions, weekly release schedule, rollout strategy and apply backend.

**When to run it:** after editing `include/fleet.yaml`, before the next scheduled release. A bad file
fails this DAG with one line per problem, each naming the field and the fix, e.g.
`roles.web.rollout.batch_size: must be at least 1 (got 0). Fix: ...`.

**Trigger form:** `role` narrows the check to one role (empty: all roles).
"""

from __future__ import annotations

# Airflow modules this file uses, named so that the DAG processor imports them once, before it forks each
# parse ([dag_processor] parsing_pre_import_modules reads a DAG file's top-level airflow imports).
import airflow.providers.standard.decorators.python  # noqa: F401
import airflow.sdk.definitions.decorators  # noqa: F401
import pendulum
from airflow.sdk import dag, task
from phoenix_fleet.form_params import form_param


@dag(
    dag_id="fleet_config_check",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["phoenix-fleet", "config"],
    doc_md=__doc__,
    default_args={"owner": "platform", "retries": 1},
    params={
        "role": form_param(
            "",
            type="string",
            description="Only check this role (empty: every role in include/fleet.yaml).",
        ),
    },
)
def fleet_config_check():
    @task(multiple_outputs=False)  # one XCom (its keys are never pulled alone)
    def validate(params: dict | None = None) -> dict:
        from phoenix_fleet.config import load_fleet_config

        cfg = load_fleet_config()
        roles = [params["role"]] if params and params.get("role") else sorted(cfg.roles)
        summary = {}
        for name in roles:
            role = cfg.role(name)
            summary[name] = {
                "env": role.env,
                "regions": role.regions,
                "schedule": role.schedule,
                "strategy": role.rollout.strategy,
                "backend": role.terraform.backend,
            }
            print(f"{name}: {summary[name]}")
        return summary

    validate()


fleet_config_check()
