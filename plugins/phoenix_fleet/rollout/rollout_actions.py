"""The actions the planner returns: exactly one per call, each a small frozen value.

Every action may carry ``record``: a new rollout record the operator must persist to the ASG tags
*before* doing anything else the action asks (persist first, then act; a crash in between is safe
because the planner re-derives everything from what it observes next time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .rollout_record import RolloutRecord


class WaitFor(StrEnum):
    """What a ``Wait`` waits for. Timer conditions (warmup, soak) end at ``until`` by themselves; polling
    them with ``planner.wait_over`` still catches a failure early. The others must be polled."""

    SETTLED = "settled"  # instances in transition (Pending*, Terminating*, EnteringStandby, Detaching)
    CAPACITY = "capacity"  # the ASG launching/removing instances until Pending+InService == desired
    HEALTHY = "healthy"  # instances on the target image to pass the health gate (or fail)
    WARMUP = "warmup"  # time: the newest instances' warmup
    SOAK = "soak"  # time: the last batch's soak
    RELEASE = "release"  # a human to take outdated instances out of Standby / scale-in protection
    UNKNOWN = "unknown"  # health that could not be observed (an API error) to be observed again
    WARM_POOL = "warm-pool"  # the warm pool to refill from the target after its old-image instances went

    @property
    def timer(self) -> bool:
        return self in (WaitFor.WARMUP, WaitFor.SOAK)


class FailKind(StrEnum):
    HALTED = "halted"  # on_failure=halt and the forward phase failed
    ROLLBACK_FAILED = "rollback-failed"  # the rollback itself failed: never a second rollback
    BLOCKED = "blocked"  # nothing can progress (wait-policy instances past the deadline, no room, ...)


@dataclass(frozen=True)
class Action:
    record: RolloutRecord | None = field(default=None, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class Launch(Action):
    """Surge: set desired to ``new_desired`` (absolute, idempotent) after raising max to ``new_max``."""

    count: int
    new_desired: int
    new_max: int
    #: a round of the final AZ balancing (planner._balance), not a batch of the rollout
    balance: bool = False


@dataclass(frozen=True)
class Terminate(Action):
    """TerminateInstanceInAutoScalingGroup for each id, ShouldDecrementDesiredCapacity=``decrement_desired``.

    Only outdated instances, at most one batch (or, ``balance``, instances on the target in the fullest AZs: the
    final AZ balancing). With decrement=False the ASG launches replacements from the launch template (which
    points at the target)."""

    instance_ids: tuple[str, ...]
    decrement_desired: bool
    balance: bool = False


@dataclass(frozen=True)
class TerminateWarmed(Action):
    """TerminateInstanceInAutoScalingGroup for each warmed instance of the group's warm pool (not capacity:
    desired and the floor are untouched); AWS refills the pool from the group's current launch template."""

    instance_ids: tuple[str, ...]


@dataclass(frozen=True)
class PrepareInstances(Action):
    """Policy ``replace`` for standby/protected victims: ExitStandby ``exit_standby`` (AWS raises desired by
    one each; raise max to ``new_max`` first when given) and SetInstanceProtection(False) for ``unprotect``.
    The record that comes with it already counts the exited instances in the baseline."""

    exit_standby: tuple[str, ...] = ()
    unprotect: tuple[str, ...] = ()
    new_max: int | None = None


@dataclass(frozen=True)
class SuspendProcesses(Action):
    """SuspendProcesses for these (the record's ``suspended``, not yet suspended on the ASG)."""

    processes: tuple[str, ...]


@dataclass(frozen=True)
class SetLaunchTemplate(Action):
    """Point the ASG at this explicit launch template version (``lt-...:N``) whose AMI is ``image_id``.
    Returned when the ASG launches something other than the record's target (e.g. after StartRollback)."""

    launch_template: str
    image_id: str


@dataclass(frozen=True)
class Wait(Action):
    """Defer until ``condition`` holds (see ``planner.wait_over``) or ``until`` passes, then re-plan."""

    condition: WaitFor
    reason: str
    until: datetime
    instance_ids: tuple[str, ...] = ()

    def same_wait(self, other: Action) -> bool:
        """Is ``other`` (the next plan) still this wait, with nothing new to do?

        A timer by its condition. A polled wait also while it is on no instance it was not on before: some of
        them getting there (one of a batch turning healthy) is progress, not a reason to wake the task; a new
        instance in the wait (a replacement launched) is."""
        if not isinstance(other, Wait) or other.condition != self.condition:
            return False
        return self.condition.timer or set(other.instance_ids) <= set(self.instance_ids)


@dataclass(frozen=True)
class StartRollback(Action):
    """Persist ``record`` (phase rollback, target = previous image), point the ASG explicitly at
    ``record.target_lt`` (never $Latest/$Default), then re-plan."""

    reason: str


@dataclass(frozen=True)
class Halt(Action):
    """Persist ``record`` (phase failed), then re-plan: the planner drains surplus, restores capacity and
    processes, then returns Fail."""

    reason: str


@dataclass(frozen=True)
class Restore(Action):
    """UpdateAutoScalingGroup(MinSize=min_size, MaxSize=max_size, DesiredCapacity=desired), then
    ResumeProcesses(resume_processes)."""

    desired: int
    min_size: int
    max_size: int
    resume_processes: tuple[str, ...]


@dataclass(frozen=True)
class DelegateInstanceRefresh(Action):
    """strategy instance-refresh: StartInstanceRefresh(Preferences=preferences,
    DesiredConfiguration=desired_configuration or omitted), then wait on DescribeInstanceRefreshes."""

    preferences: Mapping[str, Any]
    desired_configuration: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Done(Action):
    """Terminal. outcome "completed" (all on the target) or "rolled_back" (all back on the previous image:
    the task should still fail). Delete the record's tags. ``skipped``: outdated instances left by policy."""

    outcome: str
    summary: str
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fail(Action):
    """Terminal. Capacity and processes are already restored. Keep the tags (phase failed): the ASG stays
    locked until a human looks; raise with ``reason``."""

    reason: str
    fail_kind: FailKind = FailKind.HALTED


TERMINAL = (Done, Fail)
