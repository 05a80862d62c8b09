"""The pure core of the rolling recycle engine: observed fleet state, policy, health rules, planner.

No I/O anywhere in this package: no boto3, no Airflow, no clock (``now`` is part of the observed state),
no randomness. See docs/rollout.md.
"""

from .fleet_state import FleetState, Instance, Lifecycle
from .health import failure, firing_alarms, fleet_healthy, health_problems, healthy_ids, is_healthy
from .planner import (
    adopt_baseline,
    describe_action,
    instance_refresh_preferences,
    plan,
    progress_line,
    wait_over,
)
from .rollout_actions import (
    Action,
    DelegateInstanceRefresh,
    Done,
    Fail,
    FailKind,
    Halt,
    Launch,
    PrepareInstances,
    Restore,
    SetLaunchTemplate,
    StartRollback,
    SuspendProcesses,
    Terminate,
    Wait,
    WaitFor,
)
from .rollout_policy import Policy
from .rollout_preview import PlanStep, describe_plan, format_plan
from .rollout_record import FAILED, FORWARD, ROLLBACK, TAG_PREFIX, RecordError, RolloutRecord

__all__ = [
    "FAILED",
    "FORWARD",
    "ROLLBACK",
    "TAG_PREFIX",
    "Action",
    "DelegateInstanceRefresh",
    "Done",
    "Fail",
    "FailKind",
    "FleetState",
    "Halt",
    "Instance",
    "Launch",
    "Lifecycle",
    "PlanStep",
    "Policy",
    "PrepareInstances",
    "RecordError",
    "Restore",
    "RolloutRecord",
    "SetLaunchTemplate",
    "StartRollback",
    "SuspendProcesses",
    "Terminate",
    "Wait",
    "WaitFor",
    "adopt_baseline",
    "describe_action",
    "describe_plan",
    "failure",
    "firing_alarms",
    "fleet_healthy",
    "format_plan",
    "health_problems",
    "healthy_ids",
    "instance_refresh_preferences",
    "is_healthy",
    "plan",
    "progress_line",
    "wait_over",
]
