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
from phoenix_fleet.form_params import ROLE_PATTERN, form_param

PARAMS = {
    "role": form_param(
        None,
        "Only check this role. Empty: every role in include/fleet.yaml.",
        title="Role",
        section="What to check",
        type="string",
        pattern=ROLE_PATTERN,
        maxLength=31,
        **{"x-fix": "a role name as in include/fleet.yaml (lowercase letters, digits, -), e.g. web"},
    ),
}


@dag(
    dag_id="fleet_config_check",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["phoenix-fleet", "config"],
    doc_md=__doc__,
    default_args={"owner": "platform", "retries": 1},
    params=PARAMS,
)
def fleet_config_check():
    @task(multiple_outputs=False)  # one XCom (its keys are never pulled alone)
    def validate(params: dict | None = None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException
        from phoenix_fleet.config import load_fleet_config
        from phoenix_fleet.form_params import unknown_fields

        params = params or {}
        problems = unknown_fields(params, PARAMS)
        if problems:  # bad input: fail now, no retry
            raise AirflowFailException("invalid fleet_config_check parameters:\n  " + "\n  ".join(problems))
        cfg = load_fleet_config()
        if params.get("role") and params["role"] not in cfg.roles:
            raise AirflowFailException(
                f"params.role: {params['role']!r} is not a role of include/fleet.yaml. "
                f"Fix: use one of {sorted(cfg.roles)} or leave it empty"
            )
        roles = [params["role"]] if params.get("role") else sorted(cfg.roles)
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
