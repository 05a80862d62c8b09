"""The rollout policy as the planner uses it: a frozen mirror of ``config.RolloutPolicy``.

Kept separate from the pydantic model so that the pure core (and its property tests) can build
policies cheaply; ``Policy.from_config`` accepts the pydantic model or any object with the same
attributes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

STRATEGIES = ("surge", "replace", "instance-refresh")
HEALTH_SIGNALS = ("asg", "elb", "ec2_status", "alarms")
INSTANCE_POLICIES = ("skip", "wait", "replace")
ON_FAILURE = ("rollback", "halt")
DEFAULT_SUSPEND = ("AZRebalance", "AlarmNotification", "ScheduledActions")
#: A new instance must be healthy within warmup + this many seconds of its launch, or it has failed.
DEFAULT_HEALTH_TIMEOUT = 600
#: Health that stays unknown (an API error) this long halts the rollout (blocked) instead of acting on it.
DEFAULT_UNKNOWN_TIMEOUT = 300
#: A halt after an error or a timeout (restore capacity and processes) may take this long (execution_budget).
HALT_ALLOWANCE = timedelta(minutes=5)
#: On top of everything in execution_budget: the operator's own steps, clock skew.
BUDGET_SLACK = timedelta(minutes=10)
#: The policy fields a rollout keeps in its record (``Policy.core``): decided once, when it begins.
CORE_FIELDS = ("strategy", "batch", "max-surge", "min-healthy", "deadline", "on-failure")


@dataclass(frozen=True)
class Policy:
    strategy: str = "surge"
    batch_size: int | None = None
    batch_percent: int | None = None
    min_healthy_percent: int = 100
    max_surge: int = 1
    warmup_seconds: int = 60
    soak_seconds: int = 0
    health_signals: frozenset[str] = frozenset(HEALTH_SIGNALS)
    alarms: tuple[str, ...] = ()
    standby: str = "skip"
    protected: str = "skip"
    deadline_minutes: int = 60
    on_failure: str = "rollback"
    suspend_processes: tuple[str, ...] = DEFAULT_SUSPEND
    #: not in the fleet config (yet): seconds past warmup a new instance gets to become healthy
    health_timeout_seconds: int = DEFAULT_HEALTH_TIMEOUT
    #: not in the fleet config (yet): seconds health may stay unknown (API errors) before the rollout halts
    unknown_timeout_seconds: int = DEFAULT_UNKNOWN_TIMEOUT

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy {self.strategy!r} not in {STRATEGIES}")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        if self.batch_percent is not None and not 1 <= self.batch_percent <= 100:
            problems.append("batch_percent must be 1..100")
        if self.batch_size is not None and self.batch_percent is not None:
            problems.append("batch_size and batch_percent are alternatives")
        if not 0 <= self.min_healthy_percent <= 100:
            problems.append("min_healthy_percent must be 0..100")
        if self.max_surge < 0:
            problems.append("max_surge must be >= 0")
        if min(self.warmup_seconds, self.soak_seconds, self.health_timeout_seconds, self.unknown_timeout_seconds) < 0:
            problems.append("warmup/soak/health timeout/unknown timeout must be >= 0")
        if self.deadline_minutes < 1:
            problems.append("deadline_minutes must be >= 1")
        if not set(self.health_signals) <= set(HEALTH_SIGNALS):
            problems.append(f"health_signals must be a subset of {HEALTH_SIGNALS}")
        if self.standby not in INSTANCE_POLICIES or self.protected not in INSTANCE_POLICIES:
            problems.append(f"standby/protected must be one of {INSTANCE_POLICIES}")
        if self.on_failure not in ON_FAILURE:
            problems.append(f"on_failure must be one of {ON_FAILURE}")
        if problems:
            raise ValueError("invalid rollout policy: " + "; ".join(problems))

    @classmethod
    def from_config(cls, rollout_policy: Any) -> Policy:
        """From ``config.RolloutPolicy`` (or any object with its attributes)."""
        p = rollout_policy
        return cls(
            strategy=p.strategy,
            batch_size=p.batch_size,
            batch_percent=p.batch_percent,
            min_healthy_percent=p.min_healthy_percent,
            max_surge=p.max_surge,
            warmup_seconds=p.warmup_seconds,
            soak_seconds=p.soak_seconds,
            health_signals=frozenset(p.health_signals),
            alarms=tuple(p.alarms),
            standby=p.standby,
            protected=p.protected,
            deadline_minutes=p.deadline_minutes,
            on_failure=p.on_failure,
            suspend_processes=tuple(p.suspend_processes),
            health_timeout_seconds=getattr(p, "health_timeout_seconds", DEFAULT_HEALTH_TIMEOUT),
            unknown_timeout_seconds=getattr(p, "unknown_timeout_seconds", DEFAULT_UNKNOWN_TIMEOUT),
        )

    # -- the core a rollout keeps in its record ----------------------------------------------------------
    def core(self) -> str:
        """The fields a rollout decides once, as the text of its ``phoenix:rollout:policy`` tag, e.g.
        ``strategy=surge batch=25pct max-surge=1 min-healthy=100 deadline=60 on-failure=rollback`` (batch
        ``N`` instances, ``Npct`` percent of the baseline, or ``default``)."""
        if self.batch_size is not None:
            batch = str(self.batch_size)
        elif self.batch_percent is not None:
            batch = f"{self.batch_percent}pct"
        else:
            batch = "default"
        return (
            f"strategy={self.strategy} batch={batch} max-surge={self.max_surge} "
            f"min-healthy={self.min_healthy_percent} deadline={self.deadline_minutes} on-failure={self.on_failure}"
        )

    def with_core(self, core: str) -> Policy:
        """This policy with the recorded core (``core()``'s text) put back: the values a rollout began with
        win over a fleet config changed since (a resume, a retry, the recycle after a canary). ValueError
        when the text is not a core."""
        return _with_core(self, core)


    # -- derived numbers ---------------------------------------------------------------------------------
    def execution_budget(self) -> timedelta:
        """The longest a recycle task of this policy may run (size its ``execution_timeout`` from this): the
        forward deadline, the rollback's own deadline (on_failure rollback), what a fully replaced fleet may
        still take past a deadline (warmup, health timeout, soak), health staying unknown up to its bound, a
        safe halt, and slack."""
        phases = 2 if self.on_failure == "rollback" else 1
        past_deadline = self.warmup_seconds + self.health_timeout_seconds + self.soak_seconds
        return (
            timedelta(minutes=self.deadline_minutes * phases, seconds=past_deadline + self.unknown_timeout_seconds)
            + HALT_ALLOWANCE + BUDGET_SLACK
        )

    def batch_for(self, desired: int) -> int:
        """Instances per batch for a baseline of `desired` (same rule as config.RolloutPolicy.batch_for)."""
        if self.batch_size is not None:
            return self.batch_size
        pct = self.batch_percent if self.batch_percent is not None else 25
        return max(1, (desired * pct) // 100)

    def floor_for(self, desired: int) -> int:
        """Healthy capacity that must remain: ceil(min_healthy_percent% x desired)."""
        return -(-self.min_healthy_percent * desired // 100)  # integer ceil, no float rounding

    @property
    def surges(self) -> bool:
        """Launch before terminate? (surge with max_surge 0 degrades to replace)."""
        return self.strategy == "surge" and self.max_surge > 0

    def uses(self, signal: str) -> bool:
        return signal in self.health_signals


def parse_core(core: str) -> dict[str, str]:
    """``Policy.core()``'s text as a dict (every field of CORE_FIELDS, checked); ValueError otherwise."""
    values: dict[str, str] = {}
    for part in core.split():
        key, sep, value = part.partition("=")
        if not sep or key not in CORE_FIELDS or key in values or not value:
            raise ValueError(f"{core!r} is not a policy core like {Policy().core()!r}")
        values[key] = value
    missing = [k for k in CORE_FIELDS if k not in values]
    if missing:
        raise ValueError(f"{core!r} lacks {', '.join(missing)}")
    batch = values["batch"]
    numbers = [values["max-surge"], values["min-healthy"], values["deadline"]]
    if not (batch == "default" or batch.isdigit() or (batch.endswith("pct") and batch[:-3].isdigit())) or not all(
        n.isdigit() for n in numbers
    ):
        raise ValueError(f"{core!r}: batch must be N, Npct or default and the other numbers whole")
    return values


@functools.lru_cache(maxsize=64)
def _with_core(self: Policy, core: str) -> Policy:
    """Policy.with_core, cached: the planner applies the recorded core on every call."""
    if core == self.core():
        return self
    values = parse_core(core)
    batch = values["batch"]
    return replace(
        self,
        strategy=values["strategy"],
        batch_size=int(batch) if batch.isdigit() else None,
        batch_percent=int(batch[:-3]) if batch.endswith("pct") else None,
        max_surge=int(values["max-surge"]),
        min_healthy_percent=int(values["min-healthy"]),
        deadline_minutes=int(values["deadline"]),
        on_failure=values["on-failure"],
    )
