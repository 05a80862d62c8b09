"""The API budget per account and region (issue 16): names, defaults, and what the config asks for.

Two halves draw from one budget per environment (its account, ``environments.<env>.aws_conn_id``) and region:

* **task slots**: an Airflow pool per environment and region, :func:`pool_name` (``phoenix_<env>_<region>``), of
  ``environments.<env>.api_budget.pool_slots`` slots. Every AWS-calling task of that environment's roles in that
  region runs in it (``pool=`` set when the DAG is built), so the tasks of every role, rollout, inventory, max age
  and retention together never hold more than that many slots against one account and region.
* **triggerer polls**: :mod:`phoenix_fleet.api_limiter`, one shared limiter per AWS connection and region in the
  triggerer process, at ``environments.<env>.api_budget.calls_per_second``.

Import-light (stdlib only): the DAG builders call :func:`pool_name` at parse time; the models live in
:mod:`phoenix_fleet.config` (``ApiBudget``). docs/scale.md explains the model and the sizes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from phoenix_fleet.config import FleetConfig

#: task slots per environment and region (the pool's size) when ``api_budget.pool_slots`` is not set
DEFAULT_POOL_SLOTS = 8
#: triggerer AWS calls per second per connection and region when ``api_budget.calls_per_second`` is not set:
#: half of EC2's published refill rate for describe calls (20 a second per account and region, docs/scale.md)
DEFAULT_CALLS_PER_SECOND = 10.0
#: the highest ``calls_per_second`` the config accepts: EC2's published refill rate for non-mutating (describe)
#: calls per account and region. Above it the triggerer alone would be throttled, and every other tool with it.
MAX_CALLS_PER_SECOND = 20.0
#: the most slots a pool may have (a typo guard: 1,000 ASGs need far fewer, docs/scale.md)
MAX_POOL_SLOTS = 512

POOL_PREFIX = "phoenix"
#: Airflow's own pool (always there): where the DAGs' tasks that call no AWS API run
NO_BUDGET_POOL = "default_pool"
_ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")


def pool_name(env: str, region: str) -> str:
    """The Airflow pool of ``env``'s AWS calls in ``region``: ``phoenix_<env>_<region>``."""
    return f"{POOL_PREFIX}_{env}_{region}"


def valid_env_name(name: str) -> bool:
    """Environment names go into pool names: lowercase letters, digits, '-' and '_', starting with a letter."""
    return bool(_ENV_NAME_RE.match(name))


class PoolSpec(NamedTuple):
    """One pool the config asks for."""

    name: str
    slots: int
    env: str
    region: str
    #: the config field that sets ``slots`` (error messages and the check name it)
    field: str

    @property
    def description(self) -> str:
        return f"phoenix-fleet API budget: AWS-calling tasks of environment {self.env} in {self.region} ({self.field})"


def pool_specs(fleet: FleetConfig) -> list[PoolSpec]:
    """Every pool the fleet's roles need: one per environment a role uses and region it lists, sorted by name."""
    wanted: dict[str, PoolSpec] = {}
    for role_name, role in fleet.roles.items():
        env = role.env
        budget = fleet.environment(role_name).api_budget
        for region in role.regions:
            name = pool_name(env, region)
            wanted[name] = PoolSpec(name, budget.pool_slots, env, region, f"environments.{env}.api_budget.pool_slots")
    return [wanted[k] for k in sorted(wanted)]


def pools_import_json(specs: Iterable[PoolSpec]) -> dict[str, dict[str, object]]:
    """The pools as ``airflow pools import <file>`` reads them (it creates or updates each one). Deferred tasks hold
    no slot (``include_deferred: false``): a rollout waiting in the triggerer leaves the slots to tasks that call."""
    return {
        s.name: {"slots": s.slots, "description": s.description, "include_deferred": False} for s in specs
    }


def calls_per_second_for(fleet: FleetConfig, aws_conn_id: str | None) -> float:
    """The triggerer's budget for one AWS connection (an account): the lowest ``calls_per_second`` of the
    environments that use it (two environments on one account share its limits); the default when none does."""
    rates = [
        e.api_budget.calls_per_second
        for e in fleet.environments.values()
        if aws_conn_id is None or e.aws_conn_id == aws_conn_id
    ]
    return min(rates) if rates else DEFAULT_CALLS_PER_SECOND


def pools_problems(wanted: Iterable[PoolSpec], existing: Mapping[str, int]) -> list[str]:
    """What is wrong with the Airflow pools ``existing`` (name -> slots) against the ``wanted`` ones, each problem
    naming the pool, the config field and the fix. Empty: every pool exists with its configured size."""
    problems: list[str] = []
    for spec in wanted:
        have = existing.get(spec.name)
        if have is None:
            problems.append(
                f"pool {spec.name} does not exist: the {spec.env} environment's tasks in {spec.region} would not "
                f"run. Fix: `airflow pools set {spec.name} {spec.slots} '<description>'` (or `make airflow`, which "
                f"creates every pool from {spec.field})"
            )
        elif have != spec.slots:
            problems.append(
                f"pool {spec.name} has {have} slots, {spec.field} says {spec.slots}. Fix: "
                f"`airflow pools set {spec.name} {spec.slots} '<description>'`, or change {spec.field}"
            )
    return problems


# ------------------------------------------------------------------------------------------------------
# reading the pools back (fleet_config_check): Airflow 3 tasks cannot read the metadata DB and the Task SDK has no
# pool accessor, so through the REST API of the api-server (which every worker reaches anyway: the execution API)

#: the api-server's base URL, when it is not the one the execution API URL points at
API_URL_ENV = "PHOENIX_AIRFLOW_API_URL"
#: an optional Airflow connection (login, password) of a user allowed to read pools, for auth managers that need one
API_CONN_ID = "phoenix_airflow_api"


class PoolsUnreadable(RuntimeError):
    """The pools could not be read through the REST API (the message names the URL and the fix)."""


def airflow_api_url(environ: Mapping[str, str] | None = None) -> str:
    """The api-server's base URL: ``$PHOENIX_AIRFLOW_API_URL``, else the execution API URL without its
    ``/execution/`` (``[core] execution_api_server_url``, as workers reach it), else ``http://localhost:8080``."""
    import os

    env = os.environ if environ is None else environ
    if env.get(API_URL_ENV):
        return env[API_URL_ENV].rstrip("/")
    execution = env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
    if not execution:
        try:
            from airflow.sdk.configuration import conf

            execution = conf.get("core", "execution_api_server_url", fallback=None)
        except Exception:  # noqa: BLE001 - outside Airflow: the default
            execution = None
    if execution:
        base = execution.rstrip("/")
        return base[: -len("/execution")] if base.endswith("/execution") else base
    return "http://localhost:8080"


def read_pools(
    base_url: str, *, username: str | None = None, password: str | None = None, timeout: float = 15.0
) -> dict[str, int]:
    """Every Airflow pool (name -> slots) through ``GET /api/v2/pools`` (a bearer token from ``POST /auth/token``
    first when ``username`` is given). Raises :class:`PoolsUnreadable` naming the URL and the fix."""
    import json
    import urllib.error
    import urllib.request

    def send(method: str, path: str, body: dict[str, str] | None, token: str | None) -> object:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{base_url}{path}", data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the configured api-server
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            hint = (
                f"Fix: give the Airflow connection {API_CONN_ID} (login, password) a user allowed to read pools"
                if e.code in (401, 403)
                else "Fix: check the api-server's log"
            )
            raise PoolsUnreadable(f"{method} {base_url}{path} answered HTTP {e.code}. {hint}") from None
        except (OSError, ValueError) as e:
            raise PoolsUnreadable(
                f"{method} {base_url}{path} failed: {e}. Fix: set {API_URL_ENV} to the api-server's URL "
                "(the one the workers' execution API uses, without /execution/)"
            ) from None

    token = None
    if username:
        answer = send("POST", "/auth/token", {"username": username, "password": password or ""}, None)
        token = str(answer.get("access_token")) if isinstance(answer, dict) else None
    pools: dict[str, int] = {}
    offset = 0
    while True:
        page = send("GET", f"/api/v2/pools?limit=100&offset={offset}", None, token)
        items = page.get("pools", []) if isinstance(page, dict) else []
        pools.update({str(p["name"]): int(p["slots"]) for p in items})
        offset += len(items)
        if not items or offset >= int(page.get("total_entries", 0)):  # type: ignore[union-attr]
            return pools


def main(argv: list[str] | None = None) -> int:
    """``python -m phoenix_fleet.api_budget [fleet.yaml]``: the pools of the fleet config as ``airflow pools import``
    JSON, on stdout (what ``make airflow``, the e2e harnesses and compose's airflow-init import)."""
    import json
    import sys

    from phoenix_fleet.config import FleetConfigError, load_fleet_config

    args = sys.argv[1:] if argv is None else argv
    try:
        fleet = load_fleet_config(args[0] if args else None)
    except FleetConfigError as e:
        print(e, file=sys.stderr)
        return 1
    print(json.dumps(pools_import_json(pool_specs(fleet)), indent=1, sort_keys=True))
    return 0


__all__ = [
    "API_CONN_ID",
    "API_URL_ENV",
    "DEFAULT_CALLS_PER_SECOND",
    "DEFAULT_POOL_SLOTS",
    "MAX_CALLS_PER_SECOND",
    "MAX_POOL_SLOTS",
    "NO_BUDGET_POOL",
    "POOL_PREFIX",
    "PoolSpec",
    "PoolsUnreadable",
    "airflow_api_url",
    "calls_per_second_for",
    "pool_name",
    "pool_specs",
    "pools_import_json",
    "pools_problems",
    "read_pools",
    "valid_env_name",
]


if __name__ == "__main__":
    raise SystemExit(main())
