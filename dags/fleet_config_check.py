"""
### fleet_config_check

Validates the fleet configuration (`include/fleet.yaml`) and prints, for each role, its environment,
regions, weekly release schedule, rollout strategy and apply backend.

**When to run it:** after editing `include/fleet.yaml`, before the next scheduled release. A bad file
fails this DAG with one line per problem, each naming the field and the fix, e.g.
`roles.web.rollout.batch_size: must be at least 1 (got 0). Fix: ...`.

`pools` checks the API budget's Airflow pools (docs/scale.md): `phoenix_<env>_<region>` for every environment and
region of the roles, each of `environments.<env>.api_budget.pool_slots` slots. It reads them through the REST API
of the api-server (`GET /api/v2/pools`; the URL the workers' execution API uses, or `PHOENIX_AIRFLOW_API_URL`; the
connection `phoenix_airflow_api` holds a user's login when the auth manager needs one). A missing pool or one of
another size fails it, naming the pool, the field and the fix. When the API cannot be read (unreachable, refused)
it fails too (after its one retry), saying why: the pools are then **not** checked.

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

    @task(multiple_outputs=False)  # a missing or wrongly sized pool fails it at once (no retry)
    def pools(summary: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException
        from phoenix_fleet.api_budget import (
            API_CONN_ID,
            PoolsUnreadable,
            airflow_api_url,
            pool_specs,
            pools_problems,
            read_pools,
        )
        from phoenix_fleet.config import load_fleet_config

        wanted = pool_specs(load_fleet_config())
        url = airflow_api_url()
        username = password = None
        try:
            from airflow.sdk import BaseHook

            conn = BaseHook.get_connection(API_CONN_ID)
            username, password = conn.login, conn.password
        except Exception:  # noqa: BLE001 - no such connection: the API needs no login (e.g. the sandbox's)
            pass
        try:
            existing = read_pools(url, username=username, password=password)
        except PoolsUnreadable as e:
            raise RuntimeError(f"the API budget's pools were NOT checked: {e}") from None  # retried: may pass
        problems = pools_problems(wanted, existing)
        if problems:
            raise AirflowFailException("the API budget's pools are wrong:\n  " + "\n  ".join(problems))
        checked = {s.name: s.slots for s in wanted}
        for name, slots in checked.items():
            print(f"pool {name}: {slots} slots, as configured")
        return checked

    pools(validate())


fleet_config_check()
