"""AsgRecycleOperator: roll one AutoScaling group onto a new image, safely, resumably. See docs/recycle.md.

The reconcile loop, every step::

    observe (batched describes) -> plan (pure: phoenix_fleet.rollout.plan) -> persist the record -> act
    -> (Wait) poll inline when short, else defer on AsgRolloutWaitTrigger -> observe ...

State lives in AWS: each instance's EC2 ``ImageId`` and lifecycle, plus the rollout record in the group's
``phoenix:rollout:*`` tags (rollout id = the lock, phase, target/previous image and launch-template version,
original capacity, suspended processes). Nothing is kept in the worker: a retried task, a new worker or the
resume after a deferral re-observes and re-plans, so it never double-acts.

Import-light: only ``airflow.sdk`` and the stdlib at module level; the rollout core (``_rollout()``), the hook (boto3, the
Amazon provider) and the triggers are imported inside the methods.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from phoenix_fleet.operators.operator_args import as_bool

if TYPE_CHECKING:
    from types import ModuleType

    from phoenix_fleet.rollout import Action, Policy, RolloutRecord, Wait


def _rollout() -> ModuleType:
    """The pure rollout core, imported on first use: DAG files import this module at every parse, and the
    planner's modules cost more than the rest of the operator."""
    import phoenix_fleet.rollout

    return phoenix_fleet.rollout


SUMMARY_XCOM_KEY = "recycle_summary"
MAX_STEPS = 5000
#: extra time the task may stay deferred past a wait's own horizon before Airflow times it out
DEFER_GRACE = timedelta(minutes=10)
#: after an unexpected error on the last try: how long the safe halt may run inline
SAFE_HALT_SECONDS = 300
#: an instance refresh that timed out is cancelled: how long to wait for AWS to say Cancelled
REFRESH_CANCEL_SECONDS = 600
#: taking the lock: the read-back waits at least this many times what our own look and write took
LOCK_SETTLE_FACTOR = 5
#: instance refresh statuses that are not an end yet
REFRESH_RUNNING = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")
#: instances whose (image, launch time) travel in the trigger's kwargs (~80 bytes each, stored in the DB)
KNOWN_MAX = 1000
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")
_ID_TAG = "phoenix:rollout:id"
#: beside the record (not one of its keys, so never part of its compare-and-set, yet inside ``phoenix:rollout:*``,
#: the keys the workers' IAM policy lets them tag): "the canary of rollout <id> stopped here, waiting for the next
#: task (an approval may sit in between)". The task that resumes it restarts the phase clock: the wait for a human
#: is not rollout time (else an approval answered after the deadline rolls the canary group back alone).
PAUSED_TAG = "phoenix:rollout:paused"


class RolloutLockedError(AirflowFailException):
    """Another rollout (another rollout id, or an AWS instance refresh) holds the group."""


class RolloutFailed(AirflowFailException):
    """The rollout ended without reaching the target: rolled back, halted or blocked (capacity restored)."""


class _WorkerStop(Exception):
    """Internal: stop the loop here (canary done)."""


def derive_rollout_id(dag_id: str, run_id: str) -> str:
    """``<dag_id>/<run_id>`` in tag-safe characters (mapped and canary tasks of one run share it)."""
    raw = f"{dag_id}/{run_id}"
    safe = _ID_UNSAFE.sub("-", raw)
    if len(safe) > 200:
        safe = safe[:180] + "-" + hashlib.sha1(raw.encode()).hexdigest()[:12]
    return safe


def _as_int(value: Any, name: str) -> int | None:
    if value is None or value == "" or value == "None":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a whole number") from None
    if n < 1:
        raise ValueError(f"{name}: must be at least 1 (got {n}). Fix: leave it unset to replace every batch")
    return n


def _as_days(value: Any, name: str) -> float | None:
    if value is None or value == "" or value == "None":
        return None
    try:
        days = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a number of days") from None
    if not 0 < days <= 365:
        raise ValueError(f"{name}: must be more than 0 and at most 365 days (got {days:g}). Fix: e.g. 14")
    return days


def _skip_reasons(state: Any, ids: Sequence[str]) -> dict[str, str]:
    """Why the policy left each of ``ids`` on its image (``protected: skip`` / ``standby: skip``), for the
    summary and the notification: ``scale-in protected``, ``in standby`` (or both)."""
    by_id = state.by_id()
    out: dict[str, str] = {}
    for iid in ids:
        inst = by_id.get(iid)
        why = [w for w, on in (("scale-in protected", getattr(inst, "protected", False)),
                               ("in standby", getattr(inst, "standby", False))) if on]
        out[iid] = ", ".join(why) or "skipped by policy"
    return out


def _lt_parts(ref: str) -> tuple[str, str]:
    key, _, version = str(ref).rpartition(":")
    return key, version


_HOOK_HOLDS = {
    "autoscaling:EC2_INSTANCE_LAUNCHING": ("launches", "Pending:Wait"),
    "autoscaling:EC2_INSTANCE_TERMINATING": ("terminations", "Terminating:Wait"),
}
_HOOK_RESULTS = {
    ("autoscaling:EC2_INSTANCE_LAUNCHING", "ABANDON"): "ABANDON (the instance is terminated, the ASG launches another)",
    ("autoscaling:EC2_INSTANCE_LAUNCHING", "CONTINUE"): "CONTINUE (the instance goes InService)",
}


def describe_lifecycle_hook(hook: Mapping[str, Any]) -> str:
    """One DescribeLifecycleHooks entry as a sentence, e.g. ``nobody-completes: launches wait in Pending:Wait up to
    60s without a heartbeat, then ABANDON (the instance is terminated, the ASG launches another)``."""
    transition = str(hook.get("LifecycleTransition"))
    what, state = _HOOK_HOLDS.get(transition, (transition, "a wait state"))
    result = str(hook.get("DefaultResult") or "ABANDON")
    then = _HOOK_RESULTS.get((transition, result), result)
    return (f"{hook.get('LifecycleHookName')}: {what} wait in {state} up to {hook.get('HeartbeatTimeout', 3600)}s "
            f"without a heartbeat, then {then}")


#: how many abandoned instance ids a rollout names (the count is kept whole)
ABANDONED_NAMED = 20


def note_held(state: Any, carry: dict[str, Any]) -> None:
    """Track launches seen held by a lifecycle hook (``Pending:Wait``): one that is no longer in the group (or is
    on its way out) without the rollout having terminated it was abandoned (a launch hook's ``ABANDON``: its
    heartbeat ran out, or the team's automation abandoned it). A halt names them (``abandoned_note``); the
    rollout sees only what its own observations saw (a launch held and abandoned entirely inside a deferral's
    wait is not named)."""
    members = {i.instance_id: i for i in state.members}
    held = list(carry.get("held") or [])
    abandoned = list(carry.get("abandoned") or [])
    count = int(carry.get("abandoned_count", len(abandoned)))
    for iid in held:
        inst = members.get(iid)
        if inst is None or inst.terminating:
            count += 1
            abandoned = [*abandoned, iid][-ABANDONED_NAMED:]
    now_held = sorted(i.instance_id for i in state.members if i.lifecycle == "Pending:Wait")
    if now_held or held:
        carry["held"] = now_held
    if count:
        carry["abandoned"], carry["abandoned_count"] = abandoned, count


def abandoned_note(carry: Mapping[str, Any]) -> str:
    """``; 3 instance(s) abandoned from Pending:Wait by lifecycle hook nobody-completes (left the group without
    the rollout terminating them): i-0a i-0b i-0c`` (empty when none)."""
    count = int(carry.get("abandoned_count") or 0)
    if not count:
        return ""
    hooks = list(carry.get("launch_hooks") or [])
    by = f"lifecycle hook {' '.join(hooks)}" if hooks else "a launch lifecycle hook"
    named = list(carry.get("abandoned") or [])
    more = f" (the last {len(named)})" if count > len(named) else ""
    return (f"; {count} instance(s) abandoned from Pending:Wait by {by} (left the group without the rollout "
            f"terminating them){more}: {' '.join(named)}")


class AsgRecycleOperator(BaseOperator):
    """Replace every instance of ``asg_name`` that is not on the target image, batch by batch, behind the
    health gate; roll back to the previous launch-template version when the new instances fail.

    :param asg_name: the AutoScaling group.
    :param target_image_id: the AMI every instance must end on. The group's launch template must have a
        version that launches it (apply first); the newest such version is used.
    :param target_launch_template_version: or the launch-template version to roll to: ``7``,
        ``"lt-0abc:7"``, ``"web-lt:7"`` (``$Latest``/``$Default`` are resolved to their number once).
    :param target_label: the release label shown in progress lines (default: the AMI's ``phoenix:version``).
    :param role: take the rollout policy from this role in the fleet config (else the defaults).
    :param policy: overrides of the rollout policy (dict or JSON): ``strategy`` (surge | replace |
        instance-refresh), ``batch_size``/``batch_percent``, ``min_healthy_percent``, ``max_surge``,
        ``warmup_seconds``, ``soak_seconds``, ``health_signals``, ``alarms``, ``standby``, ``protected``,
        ``deadline_minutes``, ``on_failure`` (rollback | halt), ``suspend_processes``, ``health_timeout_seconds``.
    :param rollout_id: the lock and resume key (default ``<dag_id>/<run_id>``: a retry, and the mapped task
        after a canary in the same run, resume the same rollout).
    :param dry_run: print the whole plan and change nothing.
    :param max_batches: canary mode: replace this many batches, then stop healthy and leave the rollout
        (lock, suspended processes) for the next task with the same rollout id to resume.
    :param max_age_days: renewal (fleet_max_age): also replace instances *on the target* launched more than
        this many days before the rollout starts. Without a target, the target is the group's current launch
        template version; with ``target_image_id``, the group's launch template must still launch it (else
        the task skips: a rollout of a newer image is due, not a renewal). A renewal never rolls back (there
        is no other image to go back to): on failure it halts and restores capacity.
    :param if_locked: ``fail`` (default) or ``skip`` when another rollout or an AWS instance refresh holds
        the group at the start (fleet_max_age skips, the next night tries again).
    :param lock_settle_seconds: taking the lock, the least pause between writing the record and reading it
        back whole (compare-and-set on tags: another starter's write lands within it); at least 5 times what
        this starter's own look and write took.
    :param deferrable: wait in the triggerer for long waits (else poll in the worker).
    :param inline_wait_seconds: waits expected to end within this are polled in the worker: a deferral
        costs ~2.4 s in a real Airflow (defer, trigger, resume).
    :param poll_interval: the longest pause between two looks while waiting (the pause grows with the
        time waited, from ``min_poll_interval``).
    """

    template_fields: Sequence[str] = (
        "asg_name",
        "target_image_id",
        "target_launch_template_version",
        "target_label",
        "role",
        "policy",
        "rollout_id",
        "dry_run",
        "max_batches",
        "max_age_days",
        "aws_conn_id",
        "region_name",
    )
    template_fields_renderers = {"policy": "json"}
    ui_color = "#ffe9d6"

    def __init__(
        self,
        *,
        asg_name: str,
        target_image_id: str | None = None,
        target_launch_template_version: str | int | None = None,
        target_label: str | None = None,
        role: str | None = None,
        policy: Mapping[str, Any] | str | None = None,
        fleet_config_path: str | None = None,
        rollout_id: str | None = None,
        dry_run: bool | str = False,
        max_batches: int | str | None = None,
        max_age_days: float | str | None = None,
        if_locked: str = "fail",
        lock_settle_seconds: float = 0.5,
        deferrable: bool = True,
        inline_wait_seconds: float = 20.0,
        poll_interval: float = 15.0,
        min_poll_interval: float = 2.0,
        poll_backoff: float = 0.1,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if target_image_id in (None, "") and target_launch_template_version in (None, "") and max_age_days in (None, ""):
            raise ValueError(
                "target_image_id / target_launch_template_version: neither is set. Fix: pass the AMI to roll to "
                "(target_image_id='ami-...') or the launch template version (target_launch_template_version=7), "
                "or max_age_days to renew the group on its current launch template"
            )
        if if_locked not in ("fail", "skip"):
            raise ValueError(f"if_locked: {if_locked!r} is not fail or skip. Fix: if_locked='fail' or 'skip'")
        self.asg_name = asg_name
        self.target_image_id = target_image_id
        self.target_launch_template_version = target_launch_template_version
        self.target_label = target_label
        self.role = role
        self.policy = policy
        self.fleet_config_path = fleet_config_path
        self.rollout_id = rollout_id
        self.dry_run = dry_run
        self.max_batches = max_batches
        self.max_age_days = max_age_days
        self.if_locked = if_locked
        self.lock_settle_seconds = float(lock_settle_seconds)
        self.deferrable = deferrable
        self.inline_wait_seconds = float(inline_wait_seconds)
        self.poll_interval = float(poll_interval)
        self.min_poll_interval = float(min_poll_interval)
        self.poll_backoff = float(poll_backoff)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    # ------------------------------------------------------------------ plumbing

    @cached_property
    def hook(self) -> Any:
        from phoenix_fleet.hooks.asg_hook import AsgHook

        return AsgHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )

    @cached_property
    def resolved_policy(self) -> Policy:
        from phoenix_fleet.sensors.asg_sensors import resolve_policy

        return resolve_policy(self.role, self.policy, self.fleet_config_path)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def _rid(self, context: Context) -> str:
        if self.rollout_id:
            rid = str(self.rollout_id)
            if _ID_UNSAFE.search(rid) or len(rid) > 256:
                raise ValueError(
                    f"rollout_id: {rid!r} must be at most 256 characters of letters, digits and ' +-=._:/@'"
                )
            return rid
        ti = context.get("ti")
        dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None) or self.dag_id
        run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None) or "manual"
        return derive_rollout_id(str(dag_id), str(run_id))

    def _observe(self, *, resolve: bool = True) -> Any:
        return self.hook.observe(self.asg_name, self.resolved_policy, resolve_launch_template=resolve)

    # ------------------------------------------------------------------ entry points

    def execute(self, context: Context) -> Any:
        R = _rollout()
        policy = self.resolved_policy
        rid = self._rid(context)
        dry_run = as_bool(self.dry_run)
        _as_int(self.max_batches, "max_batches")
        renew_days = _as_days(self.max_age_days, "max_age_days")
        obs = self._observe()
        if obs.record_error:
            raise AirflowFailException(
                f"{self.asg_name}: the rollout tags are malformed ({obs.record_error}). Fix: look at the group's "
                "phoenix:rollout:* tags; delete them all once no rollout runs on it"
            )
        record = obs.record
        if record is not None and record.rollout_id != rid:
            self._locked(self._locked_message(record, rid))
        ended = R.ended_outcome(obs.tags, rid) if record is None and not dry_run else None
        if ended is not None:  # this very rollout ended on the group already (a retry after its last step)
            return self._ended_already(context, obs, rid, ended)
        if record is not None:
            policy = self._policy_of(record)
        self._check_timeout(policy)
        refresh = self.hook.active_instance_refresh(self.asg_name)
        ours = record is not None and policy.strategy == "instance-refresh" and record.phase == R.FORWARD
        if refresh is not None and not ours:
            self._locked(
                f"{self.asg_name}: an AWS instance refresh ({refresh.get('InstanceRefreshId')}, "
                f"{refresh.get('Status')}, {refresh.get('PercentageComplete', 0)}% done) is in progress; refusing to "
                "start a second rollout on the same group. Fix: wait for it to end, or cancel it "
                f"(aws autoscaling cancel-instance-refresh --auto-scaling-group-name {self.asg_name})"
            )
        if record is None:
            target_image, target_lt = self._resolve_target(obs, dry_run)
        else:
            try:
                target_image, target_lt = self._resolve_target(obs, dry_run)
            except (ValueError, AirflowSkipException) as exc:  # e.g. the version was deleted (or, in a renewal,
                # the template moved) since: the record alone resumes it; never leave a group half-done
                self.log.warning("%s: %s; resuming rollout %s from its record", self.asg_name, exc, rid)
                target_image = record.previous_image if record.phase == R.ROLLBACK else record.target_image
                target_image, target_lt = target_image or record.target_image, record.target_lt
        carry: dict[str, Any] = {
            "batches": 0, "terminated": 0, "launched": 0, "steps": 0, "defers": 0, "inline_polls": 0,
            "trigger_polls": 0, "trigger_calls": 0, "resumed": record is not None, "to_image": target_image,
        }
        if record is None:
            replace_before = obs.state.now - timedelta(days=renew_days) if renew_days else None
            record = self._begin(obs, policy, rid, target_image, target_lt, replace_before)
            carry["from_image"] = self._from_image
            self._report_group_policy(obs, policy, record, carry)
            if dry_run:
                return self._dry_run(context, obs, record, policy, carry)
            hooks: list[Any] = []
            first = self._take_lock(record, rid, during_settle=lambda: self._settle_reads(hooks))
            self.log.info(
                "Rollout %s of %s started: %s -> %s (%s), strategy %s, baseline %d (min %d max %d)",
                rid, self.asg_name, record.previous_image or "?", record.target_image, target_lt or "no LT version",
                policy.strategy, record.original_desired, record.original_min, record.original_max,
            )
            carry["lifecycle_hooks"] = self._describe_lifecycle_hooks(carry, hooks[0] if hooks else None)
            return self._run(context, rid, carry, first=first)
        else:
            self._check_same_target(record, target_image)
            carry["from_image"] = record.target_image if record.target_image != target_image else record.previous_image
            if dry_run:
                return self._dry_run(context, obs, record, policy, carry)
            if obs.tags.get(PAUSED_TAG) == rid and not _as_int(self.max_batches, "max_batches"):
                record = self._unpause(obs, record)
            self.log.info(
                "Resuming rollout %s of %s: phase %s, target %s, started %s",
                rid, self.asg_name, record.phase, record.target_image, record.started_at.isoformat(),
            )
        if refresh is not None and ours:
            return self._defer_refresh(context, str(refresh["InstanceRefreshId"]), record, policy, carry)
        return self._run(context, rid, carry)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """A wait that timed out in the triggerer (its trigger timeout: the wait's horizon + DEFER_GRACE) fails
        the task before any method of ours runs: halt safely first (restore capacity and processes)."""
        from airflow.sdk.exceptions import TaskDeferralTimeout

        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout as exc:
            rid = self._rid(context)
            self.log.error("%s: the wait timed out in the triggerer: halting rollout %s safely", self.asg_name, rid)
            self._safe_halt(context, rid, f"timed out: the wait in the triggerer ran past its timeout ({exc})", {})
            raise

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after a wait: validate the event, then the same loop (everything re-observed)."""
        if not event:
            raise AirflowException(f"{self.asg_name}: resumed without a trigger event")
        carry = dict(event.get("carry") or {})
        carry["trigger_polls"] = int(carry.get("trigger_polls", 0)) + int(event.get("polls", 0))
        carry["trigger_calls"] = int(carry.get("trigger_calls", 0)) + int(event.get("calls", 0))
        rid = self._rid(context)
        if event.get("status") != "success":
            exc = AirflowException(f"{self.asg_name}: waiting failed: {event.get('message')}")
            self._after_error(context, rid, exc, carry)
            raise exc
        self.log.info(
            "Wait ended (%s) after %.1fs, %d poll(s), %d call(s)",
            event.get("outcome"), float(event.get("waited_seconds", 0)), int(event.get("polls", 0)),
            int(event.get("calls", 0)),
        )
        return self._run(context, rid, carry)

    def execute_refresh_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after an AWS instance refresh ended (strategy instance-refresh)."""
        if not event:
            raise AirflowException(f"{self.asg_name}: resumed without a trigger event")
        rid = self._rid(context)
        carry = dict(event.get("carry") or {})
        obs = self._observe()
        record = obs.record
        if record is None or record.rollout_id != rid:
            raise AirflowFailException(f"{self.asg_name}: the rollout record of {rid} is gone after the instance refresh")
        carry.setdefault("to_image", record.target_image)
        carry.setdefault("from_image", record.previous_image)
        refresh_id = event.get("instance_refresh_id")
        if event.get("status") == "success":
            on = sum(1 for i in obs.state.live if i.image_id == record.target_image)
            summary = self._summary(context, obs, record, carry, "forward",
                                    f"instance refresh {refresh_id} Successful: {on}/{len(obs.state.live)} on {record.target_image}")
            self._end(obs, rid, "forward")
            self.log.info("%s", summary["message"])
            return summary
        status = event.get("refresh_status")
        message = str(event.get("message"))
        if status == "RollbackSuccessful":
            summary = self._summary(context, obs, record, carry, "rolled_back", message)
            self._end(obs, rid, "rolled_back")
            raise RolloutFailed(f"{self.asg_name}: rolled back by AWS: {message}")
        self.log.warning("%s", message)
        if status is None or status in REFRESH_RUNNING:  # it timed out (our deadline), still running: cancel it
            message = self._cancel_refresh(refresh_id, message)
        self._persist(obs.tags, record.halted(obs.state.now, f"halted: {message}"))
        return self._run(context, rid, carry)

    def _cancel_refresh(self, refresh_id: Any, message: str) -> str:
        """CancelInstanceRefresh and wait (inline, at most REFRESH_CANCEL_SECONDS) until AWS says Cancelled (or
        another end): only then may the halt restore capacity. Returns the halt's reason."""
        cancelled = self.hook.cancel_instance_refresh(self.asg_name)
        refresh_id = cancelled or refresh_id
        self.log.warning("%s: cancelling instance refresh %s (%s)", self.asg_name, refresh_id, message)
        started = time.monotonic()
        status: str | None = None
        waited = 0.0
        while time.monotonic() - started < REFRESH_CANCEL_SECONDS:
            status = self.hook.instance_refresh_status(self.asg_name, str(refresh_id))
            if status is None or status not in REFRESH_RUNNING:
                break
            self._sleep(min(self.poll_interval, max(self.min_poll_interval, self.poll_backoff * waited)))
            waited = time.monotonic() - started
        if status in REFRESH_RUNNING:
            return (f"{message}; cancelled instance refresh {refresh_id}, still {status} after "
                    f"{REFRESH_CANCEL_SECONDS}s")
        return f"{message}; instance refresh {refresh_id} cancelled ({status or 'gone'})"

    # ------------------------------------------------------------------ the loop

    def _run(self, context: Context, rid: str, carry: dict[str, Any], *, first: Any = None) -> Any:
        from airflow.sdk.exceptions import AirflowTaskTimeout, TaskDeferred

        try:
            return self._loop(context, rid, carry, first=first)
        except (TaskDeferred, AirflowFailException):
            raise
        except _WorkerStop as stop:
            return stop.args[0]
        except AirflowTaskTimeout as exc:  # a BaseException: execution_timeout ran out mid-rollout
            self.log.error("%s: execution_timeout reached mid-rollout: halting rollout %s safely", self.asg_name, rid)
            self._safe_halt(context, rid, f"timed out: the task's execution_timeout ({self.execution_timeout}) "
                                          "ran out", carry)
            raise exc
        except Exception as exc:
            self._after_error(context, rid, exc, carry)
            raise

    def _loop(
        self, context: Context, rid: str, carry: dict[str, Any], *, safe_halt: bool = False, first: Any = None
    ) -> Any:
        """Observe, plan, act, until an end or a deferral. A view carried over (``first``: the observation made
        inside the lock's settle; or the last observation with the known effect of a write that moved no
        capacity, ``_carried``) saves a round trip, but only these act on it: writes that take nothing out
        (SuspendProcesses, SetLaunchTemplate; Launch, which adds capacity and re-reads desired right before
        its write), a Wait (the waiting re-observes), Done, and handing the group to an AWS instance refresh
        (AWS keeps its floor on what it sees). Anything else is planned again on a fresh
        observation first (a Terminate's floor, a Restore, a halt or a rollback never act on an older view)."""
        R = _rollout()
        policy = self.resolved_policy
        max_batches = _as_int(self.max_batches, "max_batches")
        started = time.monotonic()
        carried = first
        if first is not None:
            note_held(first.state, carry)
        for _ in range(MAX_STEPS):
            if carried is not None:
                obs, carried = carried, None
                record = self._own_record(obs, rid)
                policy = self._policy_of(record)
                action = R.plan(obs.state, record, policy)
                if not isinstance(action, R.SuspendProcesses | R.SetLaunchTemplate | R.Launch | R.Wait | R.Done
                                          | R.DelegateInstanceRefresh):
                    continue  # plan it again on a fresh observation
            else:
                obs = self._observe()
                note_held(obs.state, carry)
                record = self._own_record(obs, rid)
                policy = self._policy_of(record)
                action = R.plan(obs.state, record, policy)
            carry["steps"] = int(carry.get("steps", 0)) + 1
            outside = R.describe_outside_change(obs.state, record, policy)
            if outside:
                self.log.warning("%s: %s", self.asg_name, outside)
                carry["outside_changes"] = [*carry.get("outside_changes", []), outside]
            self.log.info("%s: %s", self.asg_name, R.progress_line(obs.state, record, policy, action))
            if max_batches and not safe_halt and self._canary_done(obs, record, policy, action, max_batches):
                summary = self._summary(context, obs, record, carry, "canary",
                                        f"canary: {max_batches} batch(es) replaced and healthy; the rollout stays "
                                        f"locked by {rid} for the next task to resume")
                self.log.info("%s", summary["message"])
                if obs.tags.get(PAUSED_TAG) != rid:
                    self.hook.put_tags(self.asg_name, {PAUSED_TAG: rid})
                raise _WorkerStop(summary)
            if self._writes_capacity(action):
                if self._persist_unless_moved(obs, record, action, policy):
                    continue  # desired moved since the observation: plan again with the freshest view
                record = action.record or record
            elif action.record is not None and action.record != record:
                self._persist(obs.tags, action.record)
                record = action.record
            result = self._act(context, rid, action, obs, record, policy, carry, safe_halt=safe_halt)
            if result is not None:
                return result
            carried = self._carried(obs, action, record)
            if safe_halt and time.monotonic() - started > SAFE_HALT_SECONDS:
                raise AirflowException(f"{self.asg_name}: the safe halt did not finish within {SAFE_HALT_SECONDS}s")
        raise AirflowException(f"{self.asg_name}: no end after {MAX_STEPS} steps")

    def _check_timeout(self, policy: Policy) -> None:
        """Warn when the task's execution_timeout is shorter than what this rollout may need."""
        budget = policy.execution_budget()
        if self.execution_timeout is not None and self.execution_timeout < budget and self.deferrable is False:
            self.log.warning(
                "%s: execution_timeout %s is shorter than this rollout's budget %s (forward and rollback deadlines, "
                "what a replaced fleet may take past one, a safe halt): a late rollback may be cut short (it then "
                "halts, restoring capacity). Fix: execution_timeout=timedelta(minutes=%d)", self.asg_name,
                self.execution_timeout, budget, -(-int(budget.total_seconds()) // 60),
            )

    def _policy_of(self, record: RolloutRecord) -> Policy:
        """The policy with the core the rollout began with (strategy, batch, surge, floor, deadline,
        on_failure, kept in its record): a fleet config changed since does not change a rollout under way."""
        policy = self.resolved_policy
        effective = record.policy_for(policy)
        if effective != policy and not getattr(self, "_policy_noted", False):
            self._policy_noted = True
            self.log.warning(
                "%s: the rollout policy changed since rollout %s began; it goes on with what it began with: %s "
                "(the config says now: %s)", self.asg_name, record.rollout_id, record.policy, policy.core(),
            )
        return effective

    @staticmethod
    def _writes_capacity(action: Action) -> bool:
        """Does the action write desired capacity (absolutely, or by a decrement / ExitStandby)? Desired is then
        read again right before the write (``_persist_unless_moved``)."""
        R = _rollout()
        return (
            isinstance(action, R.Launch | R.Restore)
            or (isinstance(action, R.Terminate) and action.decrement_desired)
            or (isinstance(action, R.PrepareInstances) and bool(action.exit_standby))
        )

    def _carried(self, obs: Any, action: Action, record: RolloutRecord) -> Any:
        """The observation with the known effect of ``action`` (done just now) applied, when that effect is the
        whole change the action made and it moved no instance: SuspendProcesses, SetLaunchTemplate, Restore
        (capacity set to the values written, processes resumed). None: observe again."""
        from dataclasses import replace

        from phoenix_fleet.hooks.asg_hook import LaunchTemplateRef

        R = _rollout()
        state = obs.state
        if isinstance(action, R.SuspendProcesses):
            state = replace(state, suspended_processes=state.suspended_processes | frozenset(action.processes))
            lt = obs.launch_template
        elif isinstance(action, R.SetLaunchTemplate):
            key, number = _lt_parts(action.launch_template)
            current = obs.launch_template
            lt = LaunchTemplateRef(
                template_id=key if key.startswith("lt-") else None,
                template_name=None if key.startswith("lt-") else key,
                version=number, mixed=bool(current and current.mixed), number=int(number),
                image_id=action.image_id,
            )
            state = replace(state, launch_image_id=action.image_id)
        elif isinstance(action, R.Restore):
            state = replace(state, desired=action.desired, min_size=action.min_size, max_size=action.max_size,
                            suspended_processes=state.suspended_processes - frozenset(action.resume_processes))
            lt = obs.launch_template
        else:
            return None
        tags = {k: v for k, v in obs.tags.items() if k not in R.RolloutRecord.tag_keys()}
        tags.update(record.to_tags())
        return replace(obs, state=state, tags=tags, record=record, record_error=None, launch_template=lt)

    def _persist_unless_moved(self, obs: Any, record: RolloutRecord, action: Action, policy: Policy) -> bool:
        """Before a capacity write: persist its record and, at the same time, read desired again (one
        DescribeAutoScalingGroups). When desired moved since the observation the plan was made on, put back what
        that observation settled (the write's expectation must not stand: the move would read as ours), write
        nothing, and answer True (plan again). What remains is the window between this read and the write."""
        from concurrent.futures import ThreadPoolExecutor

        R = _rollout()
        new = action.record if action.record is not None and action.record != record else None
        with ThreadPoolExecutor(max_workers=2) as pool:
            reread = pool.submit(self.hook.desired_capacity, self.asg_name)
            wrote = pool.submit(self._persist, obs.tags, new) if new is not None else None
            now = reread.result()
            if wrote is not None:
                wrote.result()
        if now == obs.state.desired:
            return False
        self.log.warning(
            "%s: desired capacity moved %d -> %d since the observation; not writing, planning again",
            self.asg_name, obs.state.desired, now,
        )
        settled = R.adopt_baseline(obs.state, record, policy)
        if new is not None:
            current = {k: v for k, v in obs.tags.items() if k not in R.RolloutRecord.tag_keys()}
            self._persist({**current, **new.to_tags()}, settled)
        elif settled != record:
            self._persist(obs.tags, settled)
        return True

    def _own_record(self, obs: Any, rid: str) -> RolloutRecord:
        record = obs.record
        if obs.record_error:
            raise AirflowFailException(f"{self.asg_name}: the rollout tags became malformed: {obs.record_error}")
        if record is None:
            raise AirflowException(
                f"{self.asg_name}: the record of rollout {rid} vanished from the group's tags (someone removed the "
                "phoenix:rollout:* tags). Fix: check the group; a retry starts over from what it observes"
            )
        if record.rollout_id != rid:
            raise RolloutLockedError(self._locked_message(record, rid))
        return record

    def _act(
        self,
        context: Context,
        rid: str,
        action: Action,
        obs: Any,
        record: RolloutRecord,
        policy: Policy,
        carry: dict[str, Any],
        *,
        safe_halt: bool = False,
    ) -> Any:
        R = _rollout()
        hook, asg, state = self.hook, self.asg_name, obs.state
        if isinstance(action, R.SuspendProcesses):
            hook.suspend_processes(asg, action.processes)
        elif isinstance(action, R.Launch):
            hook.set_capacity(asg, max_size=action.new_max if action.new_max > state.max_size else None,
                              desired=action.new_desired)
            if action.balance:  # the final AZ balancing: instances moved, not a batch
                carry["az_balanced"] = int(carry.get("az_balanced", 0)) + action.count
            else:
                carry["batches"] = int(carry.get("batches", 0)) + 1
                carry["launched"] = int(carry.get("launched", 0)) + action.count
        elif isinstance(action, R.Terminate):
            done = hook.terminate_instances(action.instance_ids, decrement_desired=action.decrement_desired)
            if carry.get("held"):  # ours: not abandoned by a hook
                carry["held"] = [i for i in carry["held"] if i not in action.instance_ids]
            if action.balance:
                if not action.decrement_desired:  # replace: the ASG's replacement is the move
                    carry["az_balanced"] = int(carry.get("az_balanced", 0)) + len(done)
            else:
                carry["terminated"] = int(carry.get("terminated", 0)) + len(done)
                if not action.decrement_desired:
                    carry["batches"] = int(carry.get("batches", 0)) + 1
        elif isinstance(action, R.TerminateWarmed):  # the warm pool: not capacity, refilled from the template
            done = hook.terminate_instances(action.instance_ids, decrement_desired=False)
            carry["warm_replaced"] = int(carry.get("warm_replaced", 0)) + len(done)
        elif isinstance(action, R.PrepareInstances):
            if action.new_max is not None and action.new_max > state.max_size:
                hook.set_capacity(asg, max_size=action.new_max)
            if action.exit_standby:
                hook.exit_standby(asg, action.exit_standby)
            if action.unprotect:
                hook.set_instance_protection(asg, action.unprotect, False)
        elif isinstance(action, R.SetLaunchTemplate):
            self._point_at(obs, action.launch_template)
        elif isinstance(action, R.StartRollback):
            self.log.warning("%s: ROLLING BACK rollout %s: %s", asg, rid, action.reason)
            carry["rollback_reason"] = action.reason
            if record.target_lt:
                self._point_at(obs, record.target_lt)
        elif isinstance(action, R.Halt):
            self.log.warning("%s: HALTING rollout %s: %s (restoring capacity and processes)", asg, rid, action.reason)
        elif isinstance(action, R.Restore):
            if (state.desired, state.min_size, state.max_size) != (action.desired, action.min_size, action.max_size):
                hook.set_capacity(asg, min_size=action.min_size, max_size=action.max_size, desired=action.desired)
            if action.resume_processes:
                hook.resume_processes(asg, action.resume_processes)
        elif isinstance(action, R.Done):
            outcome = "forward" if action.outcome == "completed" else "rolled_back"
            # the end is recorded (XCom, then the ended marker) before the lock goes: a crash in between
            # resumes the record (or honours the marker), never starts over onto a known-bad version
            message = action.summary + abandoned_note(carry)  # launches a hook abandoned, whatever the end
            summary = self._summary(context, obs, record, carry, outcome, message, skipped=action.skipped)
            self._end(obs, rid, outcome)
            self.log.info("%s: %s", asg, summary["message"])
            if outcome == "rolled_back":
                raise RolloutFailed(f"{asg}: {message}")
            return summary
        elif isinstance(action, R.Fail):
            reason = action.reason + abandoned_note(carry)
            summary = self._summary(context, obs, record, carry, "failed", reason)
            raise RolloutFailed(
                f"{asg}: rollout {rid} failed ({action.fail_kind.value}): {reason}. Capacity and processes "
                "are restored; the group stays locked (tags phoenix:rollout:*, phase failed) until a human looks. "
                f"Fix: investigate, then delete the tags (aws autoscaling delete-tags ...) and run again"
            )
        elif isinstance(action, R.DelegateInstanceRefresh):
            if safe_halt:
                raise AirflowException("instance refresh during a safe halt")
            refresh = hook.active_instance_refresh(asg)
            if refresh is None:
                refresh_id = hook.start_instance_refresh(asg, action.preferences, action.desired_configuration)
                self.log.info("%s: started instance refresh %s with %s", asg, refresh_id, dict(action.preferences))
            else:
                refresh_id = str(refresh["InstanceRefreshId"])
            return self._defer_refresh(context, refresh_id, record, policy, carry)
        elif isinstance(action, R.Wait):
            self._wait(rid, action, obs, record, policy, carry, inline_only=safe_halt)
        else:  # pragma: no cover - a new action kind
            raise AirflowException(f"unknown action {action.kind}")
        return None

    # ------------------------------------------------------------------ waits

    def _wait(
        self, rid: str, wait: Wait, obs: Any, record: RolloutRecord, policy: Policy, carry: dict[str, Any],
        *, inline_only: bool = False,
    ) -> None:
        """Poll the wait in the worker when it is expected to be short, else defer on AsgRolloutWaitTrigger.

        A timer wait (warmup, soak) is short when its ``until`` is within ``inline_wait_seconds``; any other
        wait gets that budget once (the first time the planner asks for it): most end within it (a launch
        already in service, a batch that was nearly healthy); the rest defer."""
        left = (wait.until - obs.state.now).total_seconds()
        if not self.deferrable or inline_only:
            self._poll_inline(rid, wait, policy, carry, budget=None if not inline_only else SAFE_HALT_SECONDS)
            return
        key = f"{wait.condition.value}:" + hashlib.sha1(",".join(wait.instance_ids).encode()).hexdigest()[:12]
        short_timer = wait.condition.timer and left <= self.inline_wait_seconds
        if short_timer or (carry.get("inline_key") != key and self.inline_wait_seconds > 0):
            carry["inline_key"] = key
            budget = left + 1.0 if short_timer else min(self.inline_wait_seconds, max(0.0, left))
            if self._poll_inline(rid, wait, policy, carry, budget=budget):
                return
        carry["inline_key"] = key
        self._defer_wait(rid, wait, policy, carry)

    def _poll_inline(
        self, rid: str, wait: Wait, policy: Policy, carry: dict[str, Any], budget: float | None
    ) -> bool:
        """Poll the wait's condition in the worker for up to ``budget`` seconds; True once it is over."""
        R = _rollout()
        from phoenix_fleet.triggers.rollout_triggers import next_interval

        start = time.monotonic()
        try:
            while True:
                waited = time.monotonic() - start
                left = None if budget is None else budget - waited
                if left is not None and left <= 0:
                    return False
                self._sleep(next_interval(waited, min_interval=self.min_poll_interval,
                                          max_interval=self.poll_interval, backoff=self.poll_backoff, left=left))
                obs = self._observe(resolve=False)
                note_held(obs.state, carry)
                carry["inline_polls"] = int(carry.get("inline_polls", 0)) + 1
                if obs.record is None or obs.record.rollout_id != rid:
                    return True
                if R.wait_over(wait, obs.state, obs.record, policy):
                    return True
        finally:  # the worker slot held while waiting (the summary's inline_wait_seconds)
            carry["inline_wait_seconds"] = round(float(carry.get("inline_wait_seconds", 0)) + time.monotonic() - start, 3)

    def _defer_wait(self, rid: str, wait: Wait, policy: Policy, carry: dict[str, Any]) -> None:
        from phoenix_fleet.triggers.rollout_triggers import (
            AsgRolloutWaitTrigger,
            known_to_json,
            policy_to_json,
            wait_to_json,
        )

        carry["defers"] = int(carry.get("defers", 0)) + 1
        left = max(0.0, (wait.until - datetime.now(UTC)).total_seconds())
        self.log.info("%s: deferring: %s (up to %ds)", self.asg_name, wait.reason, int(left))
        self.defer(
            trigger=AsgRolloutWaitTrigger(
                asg_name=self.asg_name,
                rollout_id=rid,
                wait=wait_to_json(wait),
                policy=policy_to_json(policy),
                poll_interval=self.poll_interval,
                min_poll_interval=self.min_poll_interval,
                poll_backoff=self.poll_backoff,
                # what the trigger need not describe again; past KNOWN_MAX it describes them once itself
                known=known_to_json(self.hook.known) if len(self.hook.known) <= KNOWN_MAX else {},
                carry=carry,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=left) + DEFER_GRACE,
        )

    def _defer_refresh(self, context: Context, refresh_id: str, record: RolloutRecord, policy: Policy, carry: dict[str, Any]) -> Any:
        from phoenix_fleet.triggers.rollout_triggers import InstanceRefreshTrigger

        left = max(60.0, (record.deadline(policy) - datetime.now(UTC)).total_seconds())
        delay = max(0, round(self.poll_interval))
        if not self.deferrable:
            waiter = self.hook.get_waiter("InstanceRefreshComplete", client=self.hook.autoscaling)
            from botocore.exceptions import WaiterError

            try:
                waiter.wait(
                    AutoScalingGroupName=self.asg_name,
                    InstanceRefreshIds=[refresh_id],
                    WaiterConfig={"Delay": delay, "MaxAttempts": int(left // max(1, delay)) + 1},
                )
                event: dict[str, Any] = {"status": "success", "instance_refresh_id": refresh_id}
            except WaiterError as exc:
                last = exc.last_response or {}
                refreshes = last.get("InstanceRefreshes") or [{}]
                event = {
                    "status": "error", "instance_refresh_id": refresh_id, "message": str(exc),
                    "refresh_status": refreshes[0].get("Status"), "status_reason": refreshes[0].get("StatusReason"),
                }
            event["carry"] = carry
            return self.execute_refresh_complete(context, event)
        self.defer(
            trigger=InstanceRefreshTrigger(
                asg_name=self.asg_name,
                instance_refresh_id=refresh_id,
                waiter_delay=delay,
                waiter_max_attempts=int(left // max(1, delay)) + 1,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_refresh_complete",
            timeout=timedelta(seconds=left) + DEFER_GRACE,
        )

    # ------------------------------------------------------------------ starting: target, previous, record

    def _report_group_policy(self, obs: Any, policy: Policy, record: RolloutRecord, carry: dict[str, Any]) -> None:
        """At plan (a dry run) and at begin: how the group's own InstanceMaintenancePolicy bounds the role's
        policy (the planner applies it: surge capped, floor raised), and CapacityRebalance (left on)."""
        R = _rollout()
        conflict = R.maintenance_conflict(obs.state, policy, record.base)
        if conflict:
            carry["maintenance_policy"] = conflict
            self.log.warning("%s (the rollout keeps within it)", conflict)
        if obs.group.get("CapacityRebalance"):
            self.log.info("%s: CapacityRebalance is on and left on: Spot replacements it launches during the rollout "
                          "are judged like any launch", self.asg_name)

    def _settle_reads(self, hooks: list[Any]) -> Any:
        """The reads made while the lock settles (nothing written): the group's lifecycle hooks (into ``hooks``:
        the list, or the error) and the loop's first observation."""
        try:
            hooks.append(self.hook.lifecycle_hooks(self.asg_name))
        except Exception as exc:  # noqa: BLE001 - informative only (_describe_lifecycle_hooks logs it)
            hooks.append(exc)
        return self._observe()

    def _describe_lifecycle_hooks(self, carry: dict[str, Any], listed: Any = None) -> list[str]:
        """Log the group's lifecycle hooks at begin: which transitions hold instances, for how long, and what
        happens then. The rollout never completes a hook (the team's automation does): a launch held in
        Pending:Wait is not healthy capacity, and the phase's deadline bounds the wait for it. ``listed``: what
        DescribeLifecycleHooks answered already (its list, or its error); None: ask now."""
        try:
            if isinstance(listed, BaseException):
                raise listed
            hooks = listed if listed is not None else self.hook.lifecycle_hooks(self.asg_name)
        except Exception as exc:  # noqa: BLE001 - informative only: the rollout judges instances by their lifecycle
            self.log.warning("%s: could not list its lifecycle hooks (%s)", self.asg_name, exc)
            return []
        lines = [describe_lifecycle_hook(h) for h in hooks]
        carry["launch_hooks"] = [str(h.get("LifecycleHookName")) for h in hooks
                                 if h.get("LifecycleTransition") == "autoscaling:EC2_INSTANCE_LAUNCHING"]
        if lines:
            self.log.info("%s: lifecycle hooks (completed by your automation, never by the rollout):\n  %s",
                          self.asg_name, "\n  ".join(lines))
        else:
            self.log.info("%s: no lifecycle hooks", self.asg_name)
        return lines

    def _resolve_target(self, obs: Any, dry_run: bool) -> tuple[str, str | None]:
        """(target AMI, explicit launch template version ``lt-...:N``) from the task's arguments (a dry run
        accepts a target no version launches yet: None)."""
        from phoenix_fleet.hooks.asg_hook import LaunchTemplateRef, launch_source

        lt = obs.launch_template
        if lt is None:
            raise ValueError(
                f"asg_name: {self.asg_name} resolves to no launch template: the group reports {launch_source(obs.group)}. "
                "Fix: move the group to a launch template (phoenix-fleet rolls launch-template versions only)"
            )

        wanted_image = str(self.target_image_id) if self.target_image_id not in (None, "", "None") else None
        version = self.target_launch_template_version
        if self.max_age_days not in (None, "", "None") and version in (None, "", "None"):
            return self._renewal_target(lt, wanted_image)
        if version not in (None, "", "None"):
            text = str(version)
            key, number = _lt_parts(text) if ":" in text else ("", text)
            ref = lt if not key else LaunchTemplateRef(
                template_id=key if key.startswith("lt-") else None,
                template_name=None if key.startswith("lt-") else key,
                version=number,
            )
            try:
                versions = self.hook.launch_template_versions(ref, [number])
            except Exception as exc:
                raise ValueError(
                    f"target_launch_template_version: {text!r} not found in launch template {ref.key} ({exc}). "
                    "Fix: pass an existing version number of the group's launch template"
                ) from None
            if not versions:
                raise ValueError(f"target_launch_template_version: {text!r} not found in launch template {ref.key}")
            v = versions[0]
            image = self._ami((v.get("LaunchTemplateData") or {}).get("ImageId"), "target_launch_template_version",
                              f"version {text} of {ref.key}")
            if not image:
                raise ValueError(f"target_launch_template_version: version {text} of {ref.key} names no ImageId")
            if wanted_image and image != wanted_image:
                raise ValueError(
                    f"target_image_id / target_launch_template_version disagree: version {v['VersionNumber']} of "
                    f"{ref.key} launches {image}, not {wanted_image}. Fix: pass only one of them"
                )
            return str(image), f"{v.get('LaunchTemplateId') or ref.key}:{int(v['VersionNumber'])}"
        assert wanted_image is not None
        if lt.number is not None and self._ami(lt.image_id, None, "") == wanted_image:
            return wanted_image, lt.explicit()
        for v in self.hook.launch_template_versions(lt):
            if self._ami((v.get("LaunchTemplateData") or {}).get("ImageId"), None, "") == wanted_image:
                return wanted_image, f"{v.get('LaunchTemplateId') or lt.key}:{int(v['VersionNumber'])}"
        if dry_run:  # a rollout's dry run comes before its apply has made that version
            self.log.info(
                "dry run: no version of launch template %s launches %s yet (the apply step makes it); planning as "
                "if it did", lt.template_name or lt.key, wanted_image,
            )
            return wanted_image, None
        raise ValueError(
            f"target_image_id: no version of launch template {lt.template_name or lt.key} (used by {self.asg_name}) "
            f"launches {wanted_image}. Fix: apply first (Terraform or the native backend create the version), or "
            "pass target_launch_template_version"
        )

    def _renewal_target(self, lt: Any, wanted_image: str | None) -> tuple[str, str | None]:
        """A renewal stays on the group's current launch template version (never an older one)."""
        if not lt.image_id or lt.number is None:
            raise ValueError(
                f"max_age_days: the launch template of {self.asg_name} ({lt.key} {lt.version}) names no ImageId. "
                "Fix: give the launch template version an AMI"
            )
        image = self._ami(lt.image_id, "max_age_days", f"the launch template of {self.asg_name} ({lt.key} version "
                          f"{lt.number})")
        if wanted_image and image != wanted_image:
            raise AirflowSkipException(
                f"{self.asg_name}: its launch template ({lt.key} version {lt.number}) launches {image} now, "
                f"not {wanted_image}: a rollout of the new image is due (it renews these instances too), not a "
                "renewal. Skipping"
            )
        return str(image), lt.explicit()

    def _ami(self, image: str | None, field: str | None, where: str) -> str | None:
        """A launch template's ImageId as the AMI it launches: ``resolve:ssm:<parameter>`` is resolved once,
        here at the start (AWS resolves it at every launch: the record must hold the AMI instances will run,
        or every instance looks outdated forever). Unresolvable: ValueError naming ``field`` (None: answer None
        instead, e.g. while searching the versions)."""
        if not image or not str(image).startswith("resolve:ssm:"):
            return image
        cache: dict[str, str] = self.__dict__.setdefault("_ssm_amis", {})
        if image not in cache:
            try:
                cache[image] = self.hook.resolve_ssm_image(str(image))
            except Exception as exc:
                if field is None:
                    self.log.info("%s: %s does not resolve to an AMI (%s)", self.asg_name, image, exc)
                    return None
                raise ValueError(
                    f"{field}: {where} launches {image}, and that SSM parameter does not resolve to an AMI ({exc}). "
                    "Fix: create the parameter with an AMI id (phoenix-fleet resolves it once, when a rollout begins), "
                    "or give the launch template version an AMI id"
                ) from None
            self.log.info("%s: %s resolves to %s (kept in the rollout record)", self.asg_name, image, cache[image])
        return cache[image]

    def _begin(
        self, obs: Any, policy: Policy, rid: str, target_image: str, target_lt: str | None,
        replace_before: datetime | None = None,
    ) -> RolloutRecord:
        R = _rollout()
        state, lt = obs.state, obs.launch_template
        lt_image = self._ami(lt.image_id, None, "") if lt is not None else None
        counts = Counter(i.image_id for i in state.live if i.image_id != target_image)
        previous = counts.most_common(1)[0][0] if counts else None
        if previous is None and lt is not None and lt_image and lt_image != target_image:
            previous = lt_image
        self._from_image = previous
        previous_lt: str | None = None
        if previous is not None and lt is not None:
            if lt_image == previous and lt.number is not None:
                previous_lt = lt.explicit()
            else:
                target_no = int(_lt_parts(target_lt)[1]) if target_lt else None
                for v in self.hook.launch_template_versions(lt):
                    v_image = self._ami((v.get("LaunchTemplateData") or {}).get("ImageId"), None, "")
                    if v_image == previous and int(v["VersionNumber"]) != target_no:
                        previous_lt = f"{v.get('LaunchTemplateId') or lt.key}:{int(v['VersionNumber'])}"
                        break
        rollback_image = previous
        if replace_before is not None:
            if previous is not None:
                self.log.info(
                    "%s: renewal: instances on %s are replaced too; a failure HALTS (restores capacity), never rolls "
                    "back to an older image", self.asg_name, previous,
                )
            rollback_image = None
        elif previous is not None and previous_lt is None:
            self.log.warning(
                "%s: no version of its launch template launches the previous image %s: a failure will HALT "
                "(restore capacity), not roll back", self.asg_name, previous,
            )
            rollback_image = None
        labels = self.hook.image_labels([target_image] + ([previous] if previous else []))
        return R.RolloutRecord.begin(
            rid,
            state,
            policy,
            target_image=target_image,
            previous_image=rollback_image,
            target_lt=target_lt,
            previous_lt=previous_lt if rollback_image else None,
            target_label=str(self.target_label) if self.target_label else labels.get(target_image),
            previous_label=labels.get(previous) if previous else None,
            replace_before=replace_before,
            token=uuid.uuid4().hex,
        )

    def _take_lock(self, record: RolloutRecord, rid: str, *, during_settle: Any = None) -> Any:
        """Compare-and-set on tags (AutoScaling has no conditional write): look again right before writing,
        write the whole record with its unique token (deleting every record key that is not ours), wait
        ``lock_settle_seconds`` and at least LOCK_SETTLE_FACTOR times what that look and write took, read the
        whole record back and compare every key. Another writer's record
        (or any of its keys on ours) means it won: refuse, touching nothing more. Won: delete the record keys a
        loser left behind. What remains: two starters whose writes land more than the settle apart after
        both looked (a worker paused for longer than that between its look and its write).

        ``during_settle``: reads (never a write) made inside the settle, e.g. the loop's first observation: the
        settle is counted from the write, so they cost no time unless they outlast it; their result is
        returned, its record replaced by the one read back (None without it)."""
        R = _rollout()

        def tags_now() -> dict[str, str]:
            group = self.hook.describe_group(self.asg_name)
            return {t["Key"]: t.get("Value", "") for t in group.get("Tags") or []}

        def holder_of(tags: Mapping[str, str]) -> str:
            try:
                holder = R.RolloutRecord.from_tags(tags)
            except R.RecordError:
                holder = None
            if holder is not None and holder.rollout_id != rid:
                return self._locked_message(holder, rid)
            return (
                f"{self.asg_name}: another writer changed the rollout tags while rollout {rid} took the lock "
                "(two rollouts started at the same moment?); refusing to act. Fix: look at the group's "
                "phoenix:rollout:* tags, then run again"
            )

        started = time.monotonic()
        before = tags_now()  # the freshest look, right before the write
        if before.get(_ID_TAG) not in (None, rid):
            self._locked(holder_of(before))
        ours = record.to_tags()
        self.hook.put_tags(self.asg_name, ours)
        stale = [k for k in R.RolloutRecord.tag_keys() if k in before and k not in ours]
        if stale:
            self.hook.delete_tags(self.asg_name, stale)
        # another starter's look-to-write takes about what ours took: wait well past that
        wrote = time.monotonic()
        settle = max(self.lock_settle_seconds, LOCK_SETTLE_FACTOR * (wrote - started))
        seen = during_settle() if during_settle is not None else None
        self._sleep(settle - (time.monotonic() - wrote))
        after = tags_now()
        if any(after.get(k) != v for k, v in ours.items()):
            raise RolloutLockedError(holder_of(after))
        leftovers = [k for k in R.RolloutRecord.tag_keys() if k in after and k not in ours]
        if leftovers:  # a loser's keys merged into ours (its write came first): not ours, never used
            self.log.warning("%s: removing rollout tags another writer left: %s", self.asg_name, ", ".join(leftovers))
            self.hook.delete_tags(self.asg_name, leftovers)
            after = {k: v for k, v in after.items() if k not in leftovers}
        if seen is None:
            return None
        from dataclasses import replace

        return replace(seen, tags=after, record=R.RolloutRecord.from_tags(after), record_error=None)

    def _ended_already(self, context: Context, obs: Any, rid: str, ended: str) -> Any:
        """The group says this rollout ended already (``phoenix:rollout-ended``, written before its lock was
        released): end the same way, acting on nothing (a retry never rolls forward again after a rollback)."""
        R = _rollout()
        state = obs.state
        message = f"{self.asg_name}: rollout {rid} already ended on this group ({ended}); nothing to do"
        to_image: str | None = None
        skipped: tuple[str, ...] = ()
        if ended == "forward":
            # e.g. the DAG's recycle after a canary whose one batch finished the group: report what the policy
            # left on its image again (the health gate accepts exactly those; the summary names them)
            wanted = self.target_image_id if self.target_image_id not in (None, "", "None") else None
            to_image = str(wanted) if wanted else state.launch_image_id
            if to_image:
                skipped = R.skipped_by_policy(state, self.resolved_policy, to_image)
        by_id = state.by_id()
        left = {by_id[i].image_id for i in skipped if i in by_id}
        summary = {
            "asg": self.asg_name, "rollout_id": rid, "strategy": self.resolved_policy.strategy, "outcome": ended,
            "from_image": left.pop() if len(left) == 1 else None, "to_image": to_image,
            "final_images": dict(Counter(i.image_id for i in state.live)),
            "replaced": 0, "launched": 0, "batches": 0, "duration_seconds": 0.0,
            "capacity": {"desired": state.desired, "min": state.min_size, "max": state.max_size},
            "skipped": list(skipped), "skipped_reasons": _skip_reasons(state, skipped), "reason": None,
            "resumed": True, "outside_changes": [], "steps": 0, "defers": 0, "message": message,
        }
        ti = context.get("ti") if context else None
        if ti is not None:
            ti.xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
        self.log.info("%s", message)
        if ended != "forward":
            raise RolloutFailed(message)
        return summary

    def _end(self, obs: Any, rid: str, outcome: str) -> None:
        """Record the terminal outcome (outside the record: it outlives the lock), then release the lock."""
        R = _rollout()
        self.hook.put_tags(self.asg_name, {R.ENDED_TAG: R.ended_value(rid, outcome)})
        self._clear_tags(obs.tags)

    def _check_same_target(self, record: RolloutRecord, target_image: str) -> None:
        if target_image in (record.target_image, record.previous_image):
            return
        raise RolloutLockedError(
            f"{self.asg_name}: rollout {record.rollout_id} on this group targets {record.target_image} (phase "
            f"{record.phase}), but this task asks for {target_image}. Fix: let it finish (or clear its tags) and "
            "start a new rollout with a new rollout id (a new DAG run)"
        )

    def _locked(self, message: str) -> None:
        """Another rollout holds the group at the start: fail, or skip (``if_locked='skip'``)."""
        if self.if_locked == "skip":
            raise AirflowSkipException(f"{message} (if_locked=skip: skipping this group)")
        raise RolloutLockedError(message)

    def _locked_message(self, record: RolloutRecord, rid: str) -> str:
        return (
            f"{self.asg_name} is locked by rollout {record.rollout_id} (phase {record.phase}, target "
            f"{record.target_image}, started {record.started_at.isoformat()}); refusing to start rollout {rid}. "
            "Fix: wait for it to finish; if it is dead, resume it by running again with "
            f"rollout_id={record.rollout_id!r}; if it failed, look at the group, then delete its phoenix:rollout:* tags"
        )

    # ------------------------------------------------------------------ AWS writes that the planner asks for

    def _persist(self, current: Mapping[str, str], record: RolloutRecord) -> None:
        """Write the record to the group's tags before acting (only changed keys; stale keys deleted)."""
        R = _rollout()
        tags = record.to_tags()
        changed = {k: v for k, v in tags.items() if current.get(k) != v}
        stale = [k for k in R.RolloutRecord.tag_keys() if k in current and k not in tags]
        if changed:
            self.hook.put_tags(self.asg_name, changed)
        if stale:
            self.hook.delete_tags(self.asg_name, stale)

    def _unpause(self, obs: Any, record: RolloutRecord) -> RolloutRecord:
        """Resume a canary's rollout after its pause: the forward phase's clock restarts now (the deadline counts
        rollout time, not the time a human took to approve), then the pause marker goes."""
        from dataclasses import replace

        R = _rollout()
        if record.phase == R.FORWARD:
            self.log.info(
                "%s: resuming the canary of %s after a pause since %s: the forward deadline (%d min) counts from now",
                self.asg_name, record.rollout_id, record.phase_start.isoformat(),
                self._policy_of(record).deadline_minutes,
            )
            record = replace(record, phase_started_at=obs.state.now)
            self._persist(obs.tags, record)
        self.hook.delete_tags(self.asg_name, [PAUSED_TAG])
        return record

    def _clear_tags(self, current: Mapping[str, str]) -> None:
        """Delete the record: the id (the lock) first, so that a crash in between leaves no half record (a
        later rollout's first write deletes the leftovers)."""
        R = _rollout()
        keys = [k for k in R.RolloutRecord.tag_keys() if k in current]
        lock = [k for k in keys if k == _ID_TAG]
        if lock:
            self.hook.delete_tags(self.asg_name, lock)
        rest = [k for k in keys if k != _ID_TAG]
        if rest:
            self.hook.delete_tags(self.asg_name, rest)

    def _point_at(self, obs: Any, ref: str) -> None:
        from phoenix_fleet.hooks.asg_hook import LaunchTemplateRef

        key, number = _lt_parts(ref)
        if not number.isdigit():
            raise AirflowFailException(f"{self.asg_name}: refusing to point the group at {ref!r}: not an explicit version")
        current = obs.launch_template
        target = LaunchTemplateRef(
            template_id=key if key.startswith("lt-") else None,
            template_name=None if key.startswith("lt-") else key,
            version=number,
            mixed=bool(current and current.mixed),
        )
        self.log.info("%s: pointing the group at launch template %s version %s", self.asg_name, key, number)
        self.hook.set_launch_template(self.asg_name, target, int(number))

    # ------------------------------------------------------------------ canary, summary, errors

    def _canary_done(self, obs: Any, record: RolloutRecord, policy: Policy, action: Action, max_batches: int) -> bool:
        """Canary mode: the next action starts a new batch and ``max_batches`` batches are on the target."""
        R = _rollout()
        if record.phase != R.FORWARD:
            return False
        starts = isinstance(action, R.Launch | R.PrepareInstances) or (
            isinstance(action, R.Terminate) and not action.decrement_desired
        )
        if not starts:
            return False
        batch = policy.batch_for(record.base)
        surging = policy.strategy in ("surge", "instance-refresh") and policy.max_surge > 0
        step = min(batch, policy.max_surge) if surging else batch
        on_target = sum(1 for i in obs.state.live if i.image_id == record.target_image)
        return on_target >= max_batches * max(1, step)

    def _summary(
        self, context: Context, obs: Any, record: RolloutRecord, carry: Mapping[str, Any], outcome: str, message: str,
        *, skipped: Sequence[str] = (),
    ) -> dict[str, Any]:
        R = _rollout()
        state = obs.state
        images = Counter(i.image_id for i in state.live)
        summary = {
            "asg": self.asg_name,
            "rollout_id": record.rollout_id,
            "strategy": record.policy_for(self.resolved_policy).strategy,
            "outcome": outcome,
            "from_image": carry.get("from_image"),
            "to_image": carry.get("to_image", record.target_image),
            "final_images": dict(images),
            "replaced": int(carry.get("terminated", 0)),
            "launched": int(carry.get("launched", 0)),
            "batches": int(carry.get("batches", 0)),
            "az_balanced": int(carry.get("az_balanced", 0)),
            # the warm pool: warmed instances terminated for being on another image, and the pool's images now
            "warm_replaced": int(carry.get("warm_replaced", 0)),
            "warm_images": dict(Counter(w.image_id for w in state.warm)),
            "duration_seconds": round((state.now - record.started_at).total_seconds(), 1),
            "capacity": {"desired": state.desired, "min": state.min_size, "max": state.max_size},
            "skipped": list(skipped),
            "skipped_reasons": _skip_reasons(state, skipped),
            "reason": carry.get("rollback_reason") or (record.reason if record.phase in (R.ROLLBACK, R.FAILED) else None),
            "resumed": bool(carry.get("resumed")),
            "outside_changes": list(carry.get("outside_changes", [])),
            "steps": int(carry.get("steps", 0)),
            "defers": int(carry.get("defers", 0)),
            # waits polled in the worker (a slot held while waiting) and in the triggerer
            "inline_polls": int(carry.get("inline_polls", 0)),
            "inline_wait_seconds": float(carry.get("inline_wait_seconds", 0)),
            "trigger_polls": int(carry.get("trigger_polls", 0)),
            "message": message,
        }
        ti = context.get("ti") if context else None
        if ti is not None:
            ti.xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
        from phoenix_fleet.fleet_metrics import rollout_ended

        rollout_ended(self.role, summary)  # phoenix.rollout.instances_replaced / rolled_back
        return summary

    def _dry_run(self, context: Context, obs: Any, record: RolloutRecord, policy: Policy, carry: dict[str, Any]) -> Any:
        R = _rollout()
        from phoenix_fleet.rollout.rollout_preview import describe_plan, format_plan

        state = obs.state
        if record.target_lt is None and state.launch_image_id not in (None, record.target_image):
            from dataclasses import replace

            # no template version launches the target yet (the apply step makes it): simulate the group after it
            state = replace(state, launch_image_id=record.target_image)
        steps = describe_plan(state, record, policy)
        text = format_plan(steps)
        self.log.info("DRY RUN of %s (nothing changes):\n%s", self.asg_name, text)
        batches = sum(
            1 for s in steps
            if (isinstance(s.action, R.Launch) or (isinstance(s.action, R.Terminate) and not s.action.decrement_desired))
            and not s.action.balance
        )
        balanced = sum(s.action.count if isinstance(s.action, R.Launch) else len(s.action.instance_ids)
                       for s in steps if isinstance(s.action, R.Launch | R.Terminate) and s.action.balance
                       and not (isinstance(s.action, R.Terminate) and s.action.decrement_desired))
        carry = {**carry, "batches": batches, "az_balanced": balanced}
        summary = self._summary(context, obs, record, carry, "dry_run", f"dry run: {len(steps)} step(s), {batches} batch(es)")
        summary["plan"] = [s.line for s in steps]
        return summary

    def _retries_left(self, context: Context) -> bool:
        ti = context.get("ti") if context else None
        try_number = int(getattr(ti, "try_number", 1) or 1)
        max_tries = getattr(ti, "max_tries", None)
        if max_tries is None:
            max_tries = int(self.retries or 0)
        return try_number <= int(max_tries)

    def _after_error(self, context: Context, rid: str, exc: BaseException, carry: dict[str, Any]) -> None:
        """An unexpected error mid-rollout. With retries left: leave everything for the retry to resume. On the
        last try: halt safely (phase failed -> drain unhealthy surplus, restore capacity and processes)."""
        if self._retries_left(context):
            self.log.warning("%s: %s; the retry resumes rollout %s from what it observes", self.asg_name, exc, rid)
            return
        self.log.error("%s: %s on the last try: halting rollout %s safely", self.asg_name, exc, rid)
        self._safe_halt(context, rid, f"error: {exc}", carry)

    def _safe_halt(self, context: Context, rid: str, why: str, carry: dict[str, Any]) -> None:
        """Phase failed (reason ``why``), then the halting loop inline (drain unhealthy surplus, point back,
        restore capacity and processes), at most SAFE_HALT_SECONDS. Never raises: the caller re-raises."""
        R = _rollout()
        try:
            obs = self._observe()
            record = obs.record
            if record is None or record.rollout_id != rid:
                return
            if record.phase != R.FAILED:
                self._persist(obs.tags, record.halted(obs.state.now, f"halted: {why}"))
            self._loop(context, rid, carry, safe_halt=True)
        except RolloutFailed as done:
            self.log.error("%s", done)
        except Exception as again:
            self.log.error(
                "%s: the safe halt failed too (%s). The group may be left with rollout %s's tags, suspended "
                "processes and raised capacity: run the task again with rollout_id=%r to resume, or restore it by hand",
                self.asg_name, again, rid, rid,
            )
