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


__all__ = [
    "DEFAULT_CALLS_PER_SECOND",
    "DEFAULT_POOL_SLOTS",
    "MAX_CALLS_PER_SECOND",
    "MAX_POOL_SLOTS",
    "POOL_PREFIX",
    "PoolSpec",
    "calls_per_second_for",
    "pool_name",
    "pool_specs",
    "pools_problems",
    "valid_env_name",
]
