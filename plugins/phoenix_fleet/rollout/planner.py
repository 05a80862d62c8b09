"""The rollout planner: ``plan(state, record, policy) -> Action``, a pure function.

The operator observes the ASG, asks for the next action, persists ``action.record`` if any, performs the
action, and (for ``Wait``) defers until ``wait_over`` says so. Every call re-derives everything from the
observation and the few facts in the record, so a crash anywhere is resumed by simply planning again.

The rules (docs/rollout.md explains them at length):

- **Policy.** The core a rollout began with (strategy, batch, max surge, floor, deadline, on_failure) is
  in the record and wins over the policy passed in (a fleet config changed between canary and recycle).
- **Baseline.** The capacity the rollout maintains is ``record.baseline`` (initially the original
  desired). The record also holds the desired capacity the rollout itself last wrote (``desired_written``:
  from -> to, a stepwise range for decrementing terminations). An observed desired it does not explain is an
  outside change: adopted as the new baseline (a scale-out minus our surge, a scale-in as set; the returned
  action carries the updated record). We never
  fight it; at the end desired is restored to the baseline and min/max to the originals (widened only to
  hold the baseline).
- **Unknown health** (an API error hid a signal) is never acted on: the planner waits and re-observes;
  when it stays unknown ``unknown_timeout_seconds``, it halts (blocked) naming the error.
- **Floor.** Healthy capacity must stay >= ``ceil(min_healthy_percent% x baseline)``. A Terminate never
  takes a healthy instance out if that would leave fewer healthy instances than the floor; unhealthy
  outdated instances go first (they cost no healthy capacity).
- **Only outdated instances** (EC2 image != record's target; in a renewal, also those on the target
  launched before ``record.replace_before``) are terminated, at most one batch
  (``policy.batch_for(baseline)``) per action, and only when nothing is in transition, the ASG is at its
  desired capacity, every instance on the target is healthy (the batch has proven itself), and the last
  batch's soak is over.
- **Failure** of an instance on the target (see health.failure) or a configured alarm in ALARM (forward
  phase) -> ``StartRollback`` (on_failure=rollback and a previous image is known) else ``Halt``. A failure
  during the rollback -> ``Halt``: never a second rollback.
  In a rollback, only instances launched after the rollback began are judged; an instance of the previous
  image that was already failing is replaced like any other outdated one, and outdated instances still
  Pending (a lifecycle hook that never completes) are terminated instead of waited for.
- **Deadline** (per phase) passed while outdated instances remain -> the same as a failure; while only
  wait-policy instances remain, or the group is not at its desired capacity -> ``Halt`` (blocked). Past it
  nothing is waited for (``_past_deadline``): new instances still not healthy -> the same as a failure,
  any other wait (the soak of a fully replaced fleet too) -> ``Halt`` (blocked); before it, no wait reaches
  past it. A stream of fresh launches (each with its own health horizon) cannot hold a phase open.
- **AZ balance at the end**: a converged phase whose AZs differ by more than one live instance runs a final
  balancing round under the same floor and gates (surge: launch, AWS places into the emptiest AZ, then the
  surplus goes from the fullest; replace: terminate in the fullest, the ASG refills the emptiest); a round
  that does not lower the moves needed (``record.az_moves``) is the last (``_balance``).
- **Warm pool**: as soon as the group launches the phase's target, warmed instances of its warm pool on another
  image (or too old in a renewal) are terminated (``TerminateWarmed``: not capacity, the floor is untouched; AWS
  refills the pool from the current template), so that the batches' scale-outs, which draw from the pool, do
  not bring the old image back; once the phase converged (every gate passed, AZs balanced) it waits until the
  pool reports itself refilled on the target at its size, bounded by the phase deadline (past it: ``Halt``,
  blocked, naming what the pool holds). A rollback does the same toward its own target (``_warm_pool``).
- **Halting** (phase failed): terminate surplus instances known to be unhealthy (down to the baseline),
  point the group back at the previous version when the rollout replaced nothing, restore capacity and
  processes, then ``Fail``. A replace rollout that cannot take a single instance out halts before it
  points the group anywhere.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from . import health
from .fleet_state import FleetState, Instance, WarmInstance
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
    TerminateWarmed,
    Wait,
    WaitFor,
)
from .rollout_policy import Policy
from .rollout_record import FAILED, FORWARD, ROLLBACK, RolloutRecord

#: launches this long after a phase began count as the phase's own (see the stray check in _plan_active)
STRAY_GRACE = timedelta(minutes=5)

# ------------------------------------------------------------------------------------------------------
# derived view of one observation


def surges(policy: Policy) -> bool:
    """Launch before terminate (surge; instance-refresh falls back to it for a rollback we run)."""
    return policy.strategy in ("surge", "instance-refresh") and policy.max_surge > 0


def desired_is_ours(desired: int, record: RolloutRecord, policy: Policy) -> bool:
    """Does our own last write explain this desired capacity? The value it wrote or the one it replaced (one
    write: it landed or not), anything between them for a stepwise write (a batch of decrementing
    terminations). A record of an older version, which did not keep it: the surge band
    ``[baseline, baseline + max_surge]``."""
    written = record.desired_written
    if written is None:
        band = policy.max_surge if surges(policy) else 0
        return record.base <= desired <= record.base + band
    a, b = written
    if record.desired_stepwise:
        return min(a, b) <= desired <= max(a, b)
    return desired in (a, b)


def outside_change(state: FleetState, record: RolloutRecord, policy: Policy) -> tuple[int, int] | None:
    """(the desired we last wrote, the desired observed) when someone else changed desired capacity; else None."""
    if desired_is_ours(state.desired, record, policy):
        return None
    if record.desired_written is not None:
        return record.desired_written[1], state.desired
    return (record.base if state.desired < record.base else record.base + policy.max_surge), state.desired


def exit_standby_not_landed(state: FleetState, record: RolloutRecord) -> bool:
    """Does this observation show an ExitStandby whose baseline bump the record counts before it landed? The
    record of ``PrepareInstances`` raises the baseline with the write (``baseline = to``, desired ``from to to``,
    one write); desired still at ``from`` means the ExitStandby was not made (or was scaled in from outside at
    once). No other write of ours raises desired to exactly the baseline: a Launch writes above it, a Restore
    never raises, a batch of decrementing terminations is stepwise."""
    written = record.desired_written
    if written is None or record.desired_stepwise:
        return False
    a, b = written
    return a < b == record.base and state.desired == a


def adopt_baseline(state: FleetState, record: RolloutRecord, policy: Policy) -> RolloutRecord:
    """The record as this observation leaves it: an outside change of desired adopted as the new baseline
    (never fought, never undone), or our own last write, once seen landed, settled (so that any other value,
    its old one included, reads as outside from then on), or the baseline bump of an ExitStandby that did not
    land dropped (``exit_standby_not_landed``).

    A scale-out (above what we wrote) is adopted as the observed desired minus the surge our last write made
    (it counts the surge instances it saw; at least the group's min size); a scale-in (below) as the observed
    desired itself, so that the fleet never ends below what was set. Our surge is taken as what our last write
    made it (``to - baseline``): a write lands within milliseconds, so the reading is wrong only when a worker
    died between recording a write and making it *and* someone changed desired before the retry."""
    change = outside_change(state, record, policy)
    written = record.desired_written
    if change is None:
        if written is not None and written[0] != written[1] and state.desired == written[1]:
            return replace(record, desired_written=(state.desired, state.desired), desired_stepwise=False)
        if exit_standby_not_landed(state, record):
            # the bump the record counted never happened (a crash between the record and the ExitStandby), or
            # happened and was scaled in from outside right after: either way the baseline is the desired seen
            return replace(record, baseline=state.desired, desired_written=(state.desired, state.desired))
        return record
    expected, observed = change
    if observed < expected:
        baseline = observed  # a scale-in: the end is exactly what was set (never below it)
    else:
        # a scale-out: what was set counts our surge in flight; never below the group's min size
        surge = max(0, written[1] - record.base) if written is not None else 0
        baseline = max(observed - surge, min(observed, state.min_size))
    return replace(record, baseline=baseline, desired_written=(observed, observed), desired_stepwise=False)


def describe_outside_change(state: FleetState, record: RolloutRecord, policy: Policy) -> str | None:
    """The log line for an outside change this observation shows, e.g.
    ``outside change: desired 4 -> 6 adopted (baseline 4 -> 6)`` (from the desired the rollout last wrote to
    the one observed); None when there is none."""
    policy = record.policy_for(policy)
    change = outside_change(state, record, policy)
    if change is None:
        return None
    new = adopt_baseline(state, record, policy)
    wrote = record.desired_written[1] if record.desired_written is not None else change[0]
    return f"outside change: desired {wrote} -> {change[1]} adopted (baseline {record.base} -> {new.base})"


def is_current(inst: Instance, state: FleetState, record: RolloutRecord, policy: Policy) -> bool:
    """Needs no replacing: on the record's target (and, in a renewal, launched after ``replace_before``).
    In a rollback, an instance of the (previous) target launched before the rollback began that has failed
    is not: the rollback replaces it like any outdated instance instead of counting it as its own failure."""
    if not record.is_current(inst.image_id, inst.launch_time):
        return False
    if record.phase == ROLLBACK and inst.in_service and inst.launch_time < record.phase_start:
        return health.failure(inst, state, policy) is None
    return True


@dataclass(frozen=True)
class _View:
    state: FleetState
    rec: RolloutRecord
    policy: Policy

    @property
    def now(self) -> datetime:
        return self.state.now

    @property
    def target(self) -> str:
        return self.rec.target_image

    @property
    def base(self) -> int:
        return self.rec.base

    @property
    def excess(self) -> int:
        return self.state.desired - self.base

    @cached_property
    def floor(self) -> int:
        return self.policy.floor_for(self.base)

    @cached_property
    def batch(self) -> int:
        return self.policy.batch_for(self.base)

    @cached_property
    def deadline(self) -> datetime:
        return self.rec.deadline(self.policy)

    @property
    def count_alarms(self) -> bool:
        """Alarms gate health (and fail the rollout) in the forward phase only: in a rollback they may be
        firing because of the very instances the rollback replaces."""
        return self.rec.phase == FORWARD

    @cached_property
    def healthy(self) -> frozenset[str]:
        return health.healthy_ids(self.state, self.policy, alarms=self.count_alarms)

    @cached_property
    def unknown(self) -> frozenset[str]:
        """Members whose health could not be observed (never acted on)."""
        return health.unknown_ids(self.state, self.policy, alarms=self.count_alarms)

    @cached_property
    def sick(self) -> frozenset[str]:
        """Members known not to be healthy (neither healthy nor unknown)."""
        return frozenset(i.instance_id for i in self.state.members) - self.healthy - self.unknown

    def current(self, inst: Instance) -> bool:
        """Needs no replacing (see ``is_current``)."""
        return is_current(inst, self.state, self.rec, self.policy)

    def writing(self, desired: int, *, stepwise: bool = False) -> RolloutRecord:
        """The record for a write (``stepwise``: terminations with decrement) that takes desired to ``desired``."""
        return self.rec.writing(self.state.desired, desired, stepwise=stepwise)

    @cached_property
    def on_target_live(self) -> tuple[Instance, ...]:
        """Live instances that need no replacing: the ones whose health the rollout judges."""
        return tuple(i for i in self.state.live if self.current(i))

    @cached_property
    def outdated(self) -> tuple[Instance, ...]:
        """Members to replace (another image, or too old in a renewal), not already on their way out."""
        return tuple(i for i in self.state.members if not self.current(i) and not i.terminating)

    def instance_policy(self, inst: Instance) -> str | None:
        """skip / wait / replace for a standby or protected instance (the stricter wins), else None."""
        rules = []
        if inst.standby or inst.lifecycle == "EnteringStandby":
            rules.append(self.policy.standby)
        if inst.protected:
            rules.append(self.policy.protected)
        for rule in ("skip", "wait", "replace"):
            if rule in rules:
                return rule
        return None

    @cached_property
    def eligible(self) -> tuple[Instance, ...]:
        """Outdated instances we may replace now (standby/protected ones only under policy replace)."""
        out = []
        for i in self.outdated:
            rule = self.instance_policy(i)
            if rule in ("skip", "wait"):
                continue
            if i.in_service or (i.standby and rule == "replace"):
                out.append(i)
        return tuple(out)

    @cached_property
    def blocked(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.outdated if self.instance_policy(i) == "wait")

    @cached_property
    def skipped(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.outdated if self.instance_policy(i) == "skip")

    @cached_property
    def pending_outdated(self) -> tuple[Instance, ...]:
        """Outdated instances in transition that are not yet classified (e.g. coming out of standby)."""
        return tuple(i for i in self.outdated if i.in_transition)

    def until(self, t: datetime | None = None) -> datetime:
        """A Wait's horizon: `t`, capped by the phase deadline while that is still ahead."""
        if t is None:
            return self.deadline if self.deadline > self.now else self.now + timedelta(minutes=10)
        return min(t, self.deadline) if self.deadline > self.now else t


def skipped_by_policy(state: FleetState, policy: Policy, target_image: str) -> tuple[str, ...]:
    """The instances a forward rollout to ``target_image`` leaves on their image by policy (``protected: skip``,
    ``standby: skip``), as its ``Done`` lists them: what a rollout that already ended reports when run again."""
    rec = RolloutRecord.begin("skipped-by-policy", state, policy, target_image=target_image, previous_image=None)
    return _ids(_View(state, rec, policy).skipped)


def _ids(instances: Sequence[Instance | WarmInstance]) -> tuple[str, ...]:
    return tuple(sorted(i.instance_id for i in instances))


def _secs(delta: timedelta) -> int:
    return max(0, math.ceil(delta.total_seconds()))


# ------------------------------------------------------------------------------------------------------
# the planner


def group_bounded(policy: Policy, state: FleetState, base: int) -> Policy:
    """The policy within the group's own InstanceMaintenancePolicy, when it has one: ``MinHealthyPercentage``
    raises the floor when it is stricter than ours, ``MaxHealthyPercentage`` caps the surge (the group may hold
    at most ``floor(max% x baseline)`` instances in service or pending)."""
    if state.maintenance_policy is None:
        return policy
    lo, hi = state.maintenance_policy
    floor_pct = max(policy.min_healthy_percent, lo)
    surge = min(policy.max_surge, max(0, (hi * base) // 100 - base))
    if (floor_pct, surge) == (policy.min_healthy_percent, policy.max_surge):
        return policy
    return replace(policy, min_healthy_percent=floor_pct, max_surge=surge)


def maintenance_conflict(state: FleetState, policy: Policy, base: int) -> str | None:
    """How the group's InstanceMaintenancePolicy changes the role's policy (None when it does not): for the plan
    and for the halt it may cause."""
    if state.maintenance_policy is None:
        return None
    bounded = group_bounded(policy, state, base)
    lo, hi = state.maintenance_policy
    parts = []
    if bounded.min_healthy_percent != policy.min_healthy_percent:
        parts.append(f"its MinHealthyPercentage {lo} raises min_healthy_percent {policy.min_healthy_percent} -> {lo}")
    if bounded.max_surge != policy.max_surge and surges(policy):
        parts.append(f"its MaxHealthyPercentage {hi} caps max_surge {policy.max_surge} -> {bounded.max_surge} "
                     f"(at most {(hi * base) // 100} instances for a baseline of {base})")
    if not parts:
        return None
    return f"{state.asg_name}'s instance maintenance policy (min {lo} %, max {hi} %): " + "; ".join(parts)


def plan(state: FleetState, record: RolloutRecord, policy: Policy) -> Action:
    """The one next action for this ASG. Pure: same inputs, same action. The policy's core (strategy,
    batch, surge, floor, deadline, on_failure) is the one the record began with, when it kept one, bounded by
    the group's own instance maintenance policy (``group_bounded``)."""
    policy = group_bounded(record.policy_for(policy), state, record.base)
    if record.phase == FAILED:
        adopted = adopt_baseline(state, record, policy)
        action = _plan_halting(_View(state, adopted, policy))
    elif policy.strategy == "instance-refresh" and record.phase == FORWARD:
        return delegate_instance_refresh(state, record, policy)
    else:
        adopted = adopt_baseline(state, record, policy)
        if adopted.unknown_since is not None and not health.unknown_ids(state, policy):
            adopted = replace(adopted, unknown_since=None)  # known again: the bound starts over next time
        action = _plan_active(_View(state, adopted, policy))
    if adopted != record and action.record is None:
        action = replace(action, record=adopted)
    return action


def _fail_over(v: _View, reason: str) -> Action:
    """A failure: roll back if the policy says so and we can, else halt."""
    rec = v.rec
    if rec.phase == FORWARD and v.policy.on_failure == "rollback" and rec.previous_image:
        return StartRollback(reason=reason, record=rec.for_rollback(v.now, reason))
    kind = FailKind.HALTED if rec.phase == FORWARD else FailKind.ROLLBACK_FAILED
    return _halt(v, kind, reason)


def _halt(v: _View, kind: FailKind, reason: str) -> Halt:
    return Halt(reason=reason, record=v.rec.halted(v.now, f"{kind.value}: {reason}"))


def _plan_active(v: _View) -> Action:
    """The next step of an active phase; past the phase's deadline, never a wait (``_past_deadline``), and
    before it, no wait's horizon beyond it: whatever the phase waits for, it ends by its deadline."""
    action = _plan_active_step(v)
    if not isinstance(action, Wait):
        return action
    if v.now >= v.deadline:
        return _past_deadline(v, action)
    if action.until > v.deadline:
        return replace(action, until=v.deadline)
    return action


def _never_healthy(v: _View) -> str:
    """What on the target is not healthy yet, e.g. ``2 instance(s) on ami-0new never became healthy (i-0a:
    lifecycle Pending:Wait)``; empty when all of it is healthy."""
    sick = sorted((i for i in v.on_target_live if i.instance_id not in v.healthy), key=lambda i: i.instance_id)
    short = v.state.desired - len(v.state.live)
    if not sick:
        if short > 0:  # launches left the group (or never came) before any became healthy
            return (f"the ASG is at {len(v.state.live)} of desired {v.state.desired}: the new instances never became "
                    "healthy and left the group (a lifecycle hook's ABANDON? no capacity?)")
        return ""
    problems = "; ".join(health.health_problems(sick[0], v.state, v.policy, alarms=v.count_alarms))
    return f"{len(sick)} instance(s) on {v.target} never became healthy ({sick[0].instance_id}: {problems})"


def _past_deadline(v: _View, wait: Wait) -> Action:
    """The phase's deadline passed while it still waits: it ends now, whatever it waits for (a stream of
    fresh instances, each with its own health horizon, must not keep it open). New instances that never
    became healthy are a failure (forward: the rollback starts; in the rollback: it failed); any other wait
    (settling, capacity, unknown health, the soak) halts it (blocked)."""
    head = f"deadline passed ({v.policy.deadline_minutes} min) in the {v.rec.phase} phase"
    if wait.condition in (WaitFor.HEALTHY, WaitFor.WARMUP) and _never_healthy(v):
        return _fail_over(v, f"{head}: {_never_healthy(v)}")
    return _halt(v, FailKind.BLOCKED, f"{head} waiting for {wait.condition.value}: {wait.reason}")


def _plan_active_step(v: _View) -> Action:
    state, rec, policy = v.state, v.rec, v.policy

    # 1. failures: an instance on the target failed, or (forward) an alarm fires
    firing = health.firing_alarms(state, policy) if v.count_alarms else ()
    if firing:
        return _fail_over(v, f"alarm {', '.join(firing)} in ALARM")
    for inst in sorted(v.on_target_live, key=lambda i: i.instance_id):
        why = health.failure(inst, state, policy)
        if why:
            return _fail_over(v, why)

    # 1b. launches of this phase on an image that is neither the target nor the previous one: the group's
    # launch template launches something else (a resolve:ssm: parameter that moved, a template edited by
    # hand). Replacing them would only launch more of them: halt, naming it (after a grace for launches
    # that were already under way when the phase began)
    strays = sorted(
        (i for i in state.live
         if i.launch_time >= rec.phase_start + STRAY_GRACE and i.image_id not in (rec.target_image, rec.previous_image)),
        key=lambda i: i.instance_id,
    )
    if strays:
        return _halt(
            v, FailKind.BLOCKED,
            f"{len(strays)} instance(s) launched during this {rec.phase} phase run {strays[0].image_id} (e.g. "
            f"{strays[0].instance_id}), not the target {rec.target_image}: the group's launch template launches "
            "something else (an SSM parameter that moved?). Fix: point the template back, then resume",
        )

    # 2. deadline
    if v.now >= v.deadline:
        if v.eligible or v.pending_outdated:
            n = len(v.eligible) + len(v.pending_outdated)
            sick = _never_healthy(v)
            return _fail_over(v, f"deadline passed ({policy.deadline_minutes} min) with {n} outdated left"
                              + (f"; {sick}" if sick else ""))
        if v.blocked:
            return _halt(v, FailKind.BLOCKED, _blocked_reason(v, "deadline passed; still "))
        if len(state.live) != state.desired:  # short of desired, or more than desired (e.g. all protected)
            return _halt(
                v, FailKind.BLOCKED,
                f"deadline passed waiting for the ASG to reach desired capacity ({len(state.live)} live for "
                f"desired {state.desired})" + (f"; {_never_healthy(v)}" if _never_healthy(v) else ""),
            )

    # 3. the ASG must launch the target, and the rollout's processes must be suspended; a replace rollout
    # that cannot take a single instance out halts before it points the group anywhere
    if rec.phase == FORWARD and not v.on_target_live:
        no_room = _no_room(v)
        if no_room:
            return _halt(v, FailKind.BLOCKED, no_room)
    if state.launch_unresolved is not None:
        # never a silent skip of the check below: a group that launches nothing we can name is not rolled
        return _halt(
            v, FailKind.BLOCKED,
            f"{state.asg_name} resolves to no launch image: {state.launch_unresolved}. Refusing to roll it (its "
            f"launches could be anything). Fix: point the group at a launch template version that launches "
            f"{rec.target_image} (or {rec.previous_image or 'the previous image'}), then resume",
        )
    if state.launch_image_id is not None and state.launch_image_id != rec.target_image:
        if rec.target_lt:
            return SetLaunchTemplate(launch_template=rec.target_lt, image_id=rec.target_image)
        return _halt(
            v,
            FailKind.BLOCKED,
            f"the ASG launches {state.launch_image_id}, not {rec.target_image}, and no launch template "
            "version is recorded",
        )
    converging = not v.eligible and not v.blocked and not v.pending_outdated
    missing = tuple(p for p in rec.suspended if p not in state.suspended_processes)
    if missing and not converging:  # once converged, Restore resumes them: never suspend again
        return SuspendProcesses(processes=missing)

    # 3a. the group launches the target: warmed instances of its warm pool on another image go now (not capacity:
    # the floor is untouched), so that the pool refills from the target before the batches' scale-outs draw from it
    old_warm = _old_warmed(v)
    if old_warm and v.now < v.deadline:
        return TerminateWarmed(instance_ids=_ids(old_warm))

    # 3b. a rollback does not wait for outdated instances still launching (a lifecycle hook that never
    # completes would hold it until its deadline): they are not healthy, removing them costs nothing
    if rec.phase == ROLLBACK:
        launching = sorted((i for i in v.outdated if i.pending), key=lambda i: (i.launch_time, i.instance_id))
        if launching:
            if v.excess > 0:  # surplus: take desired down with them
                victims = launching[: min(v.excess, v.batch)]
                return Terminate(instance_ids=_ids(victims), decrement_desired=True,
                                 record=v.writing(state.desired - len(victims), stepwise=True))
            return Terminate(instance_ids=_ids(launching[: v.batch]), decrement_desired=False)

    # 4. never act on unknown health: re-observe; past the bound, halt naming the API error
    if v.unknown:
        since = rec.unknown_since or v.now
        bound = since + timedelta(seconds=policy.unknown_timeout_seconds)
        why = "; ".join(state.observe_errors) or "their health signals were missing from the answers"
        example = min(v.unknown)
        if v.now >= bound:
            return _halt(
                v, FailKind.BLOCKED,
                f"health of {len(v.unknown)} instance(s) unknown for {_secs(v.now - since)}s (e.g. {example}): "
                f"{why}. Not acting on it. Fix: look at the API error, then resume",
            )
        return Wait(
            condition=WaitFor.UNKNOWN,
            reason=f"health of {len(v.unknown)} instance(s) unknown (e.g. {example}: {why}); re-observing",
            until=v.until(bound),
            instance_ids=_ids([i for i in state.members if i.instance_id in v.unknown]),
            record=replace(rec, unknown_since=since) if rec.unknown_since is None else None,
        )

    # 5. gates: settled, at capacity, the target healthy, soak over
    moving = [
        i
        for i in state.members
        if i.in_transition
        and not (i.pending and v.current(i))
        and not (converging and i.terminating)
    ]
    if moving:
        states = sorted({i.lifecycle for i in moving})
        return Wait(
            condition=WaitFor.SETTLED,
            reason=f"{len(moving)} instance(s) in {'/'.join(states)}",
            until=v.until(),
            instance_ids=_ids(moving),
        )
    if len(state.live) != state.desired:
        return Wait(
            condition=WaitFor.CAPACITY,
            reason=f"ASG at {len(state.live)} of desired {state.desired}",
            until=v.until(),
        )
    unhealthy = [i for i in v.on_target_live if i.instance_id not in v.healthy]
    if unhealthy:
        if all(health.only_warming_up(i, state, policy, alarms=v.count_alarms) for i in unhealthy):
            end = max(health.warmup_end(i, policy) for i in unhealthy)
            return Wait(
                condition=WaitFor.WARMUP,
                reason=f"warmup {_secs(end - v.now)}s",
                until=end,
                instance_ids=_ids(unhealthy),
            )
        first = min(health.health_deadline(i, policy) for i in unhealthy)
        sample = min(unhealthy, key=lambda i: i.instance_id)
        problems = health.health_problems(sample, state, policy, alarms=v.count_alarms)
        return Wait(
            condition=WaitFor.HEALTHY,
            reason=f"{len(unhealthy)} new instance(s) not healthy yet ({sample.instance_id}: {'; '.join(problems)})",
            until=v.until(first),
            instance_ids=_ids(unhealthy),
        )
    if rec.phase == FORWARD and policy.soak_seconds > 0 and v.on_target_live:
        # the soak counts from when we first saw the newest batch all healthy (kept in the record, valid
        # while later than the newest launch); a lost record update only makes the soak longer
        newest = max(i.launch_time for i in v.on_target_live)
        soak = timedelta(seconds=policy.soak_seconds)
        if rec.soak_from is None or rec.soak_from <= newest:
            return Wait(
                condition=WaitFor.SOAK,
                reason=f"soak {policy.soak_seconds}s",
                until=v.now + soak,
                record=replace(rec, soak_from=v.now),
            )
        if v.now < rec.soak_from + soak:
            return Wait(
                condition=WaitFor.SOAK,
                reason=f"soak {_secs(rec.soak_from + soak - v.now)}s",
                until=rec.soak_from + soak,
            )

    # 6. converged: balance the AZs (a final step under the same floor), restore, then done
    if converging:
        balance = _balance(v)
        if balance is not None:
            return balance
        warm = _warm_pool(v)
        if warm is not None:
            return warm
        return _finish(v)
    if not v.eligible:
        return Wait(
            condition=WaitFor.RELEASE,
            reason=_blocked_reason(v, ""),
            until=v.until(),
            instance_ids=_ids(v.blocked),
        )

    # 7. the next batch
    if surges(policy):
        if v.excess > 0:
            victims = _choose_victims(v, min(v.excess, v.batch), standby=False)
            if victims:
                return _terminate(v, victims, decrement=True)
            return _stuck(v)
        # standby instances of the next batch come back first, while no surge is in flight: only then is
        # the baseline bump of ExitStandby unambiguous after a crash (desired below the recorded baseline)
        returning = [i for i in _choose_victims(v, v.batch) if i.standby]
        if returning:
            return _terminate(v, returning, decrement=True)
        count = min(v.batch, policy.max_surge, len(v.eligible))
        new_desired = v.base + count
        return Launch(count=count, new_desired=new_desired, new_max=max(state.max_size, new_desired),
                      record=v.writing(new_desired))
    victims = _choose_victims(v, v.batch)
    if victims:
        return _terminate(v, victims, decrement=False)
    if len(state.live) - 1 < v.floor:
        return _halt(v, FailKind.BLOCKED, _no_room_reason(v))
    return _stuck(v)


def _no_room_reason(v: _View, size: int | None = None) -> str:
    group = ""
    if v.state.maintenance_policy is not None:
        lo, hi = v.state.maintenance_policy
        group = (f" (the group's instance maintenance policy min {lo} % / max {hi} % allows a surge of "
                 f"{v.policy.max_surge}: raise its MaxHealthyPercentage or lower its MinHealthyPercentage)")
    return (
        f"strategy {v.policy.strategy} cannot take any instance out of {len(v.state.live) if size is None else size} "
        f"without dropping below the floor of {v.floor} (min_healthy_percent {v.policy.min_healthy_percent}); "
        "use strategy surge or lower min_healthy_percent" + group
    )


def _no_room(v: _View) -> str | None:
    """Why a rollout that does not surge can never replace a single instance (None when it may): the floor is
    the whole baseline, and no instance it would take out is known to be unhealthy (those go for free)."""
    if surges(v.policy) or not v.eligible or v.base - 1 >= v.floor:
        return None
    if any(i.instance_id in v.sick for i in v.eligible):
        return None
    return _no_room_reason(v, v.base)


def _stuck(v: _View) -> Wait:
    """Outdated instances remain but the floor allows no termination: wait for health to recover."""
    not_healthy = [i for i in v.state.live if i.instance_id not in v.healthy]
    return Wait(
        condition=WaitFor.HEALTHY,
        reason=f"healthy {len(v.healthy)} leaves no room above floor {v.floor}",
        until=v.until(),
        instance_ids=_ids(not_healthy),
    )


def _blocked_reason(v: _View, prefix: str) -> str:
    standby = _ids([i for i in v.blocked if not i.protected])
    protected = _ids([i for i in v.blocked if i.protected])
    parts = []
    if standby:
        parts.append(f"{len(standby)} outdated in standby ({' '.join(standby[:5])})")
    if protected:
        parts.append(f"{len(protected)} outdated protected from scale-in ({' '.join(protected[:5])})")
    return prefix + " and ".join(parts) + " (policy wait)"


def _choose_victims(v: _View, limit: int, *, standby: bool = True) -> list[Instance]:
    """Up to `limit` eligible outdated instances, never taking healthy capacity below the floor.

    Not-healthy ones first (oldest first): removing them costs no healthy capacity. Then healthy ones, each
    from the availability zone that currently has the most live instances (keeps the zones balanced),
    oldest first."""
    if limit <= 0:
        return []
    healthy = v.healthy
    budget = len(healthy) - v.floor
    cands = sorted((i for i in v.eligible if standby or not i.standby), key=lambda i: (i.launch_time, i.instance_id))
    # known not healthy first (free); unknown health is never a victim (not known to be free, nor healthy)
    picks = [i for i in cands if i.instance_id in v.sick][:limit]
    rest = [i for i in cands if i.instance_id in healthy]
    per_az = Counter(i.az for i in v.state.live)
    for p in picks:
        per_az[p.az] -= 1
    while len(picks) < limit and budget > 0 and rest:
        best = min(rest, key=lambda i: (-per_az[i.az], i.az, i.launch_time, i.instance_id))
        picks.append(best)
        rest.remove(best)
        per_az[best.az] -= 1
        budget -= 1
    return picks


def _terminate(v: _View, victims: list[Instance], *, decrement: bool) -> Action:
    exit_standby = _ids([i for i in victims if i.standby])
    unprotect = _ids([i for i in victims if i.protected])
    if exit_standby or unprotect:
        # policy replace: bring them back / unprotect them first; the next plan terminates them. ExitStandby
        # raises desired by one per instance (AWS), so the baseline grows with it: persisted first, as "d to
        # d+n" with the baseline at d+n. A bump persisted but not done (a crash) is dropped by the next plan
        # (exit_standby_not_landed): it never counts twice, nor at the end.
        n = len(exit_standby)
        d = v.state.desired
        new_max = d + n if d + n > v.state.max_size else None
        record = None
        if n:
            record = replace(v.rec, baseline=min(v.base, d) + n).writing(d, d + n)
        return PrepareInstances(exit_standby=exit_standby, unprotect=unprotect, new_max=new_max, record=record)
    if decrement:
        return Terminate(instance_ids=_ids(victims), decrement_desired=True,
                         record=v.writing(v.state.desired - len(victims), stepwise=True))
    return Terminate(instance_ids=_ids(victims), decrement_desired=False)


def balances_azs(state: FleetState, record: RolloutRecord) -> bool:
    """Does the rollout balance the group's AZs at its end? Yes, unless the group has a single AZ or someone
    else suspended AZRebalance (they keep the group as placed: the rollout then does not rebalance either)."""
    if "AZRebalance" in state.suspended_processes and "AZRebalance" not in record.suspended:
        return False
    return len(state.zones) > 1


def az_moves(counts: dict[str, int]) -> int:
    """How many instances must change AZ for the spread to be at most one (AWS's balance)."""
    if len(counts) < 2:
        return 0
    total, n = sum(counts.values()), len(counts)
    lo, hi = total // n, -(-total // n)
    return max(sum(max(0, lo - c) for c in counts.values()), sum(max(0, c - hi) for c in counts.values()))


def describe_azs(counts: dict[str, int]) -> str:
    """``us-east-1a:2 us-east-1b:1 us-east-1c:0``."""
    return " ".join(f"{az}:{n}" for az, n in sorted(counts.items()))


def _balance(v: _View) -> Action | None:
    """The final AZ balancing step of a converged phase (None: nothing to do, or it cannot; then ``_finish``).

    AWS places each launch into the AZ with the fewest instances, so a surge whose launch lands in an AZ with
    nothing left to replace forces the spread apart (3 AZs of 1 at a 100 % floor ended a:2 b:1 c:0); with
    AZRebalance suspended for the rollout, AWS would close the gap only after the lock is gone, launching and
    terminating outside our floor. Here, under the same floor: a surge launches ``min(batch, max_surge, moves)``
    (AWS places them into the emptiest AZs), and the surplus, once healthy (every gate passed), is taken out of
    the fullest AZs with decrement; a replace rollout takes instances on the target out of the fullest AZs
    without decrement (the ASG launches their replacements into the emptiest) while the floor allows. A round
    starts only while its instances can warm up and turn healthy before the deadline."""
    state, policy = v.state, v.policy
    if not balances_azs(state, v.rec):
        return None
    if v.excess <= 0 and (not az_moves(state.az_counts()) or not _balance_room(v)):
        return None
    moving = [i for i in state.members if i.in_transition]
    if moving:  # the last batch's terminations still draining: like any batch, a round starts once settled
        return Wait(
            condition=WaitFor.SETTLED,
            reason=f"{len(moving)} instance(s) in {'/'.join(sorted({i.lifecycle for i in moving}))} before "
                   f"balancing AZs {describe_azs(state.az_counts())}",
            until=v.until(),
            instance_ids=_ids(moving),
        )
    if v.excess > 0:
        victims = _balance_victims(v, min(v.excess, v.batch))
        if not victims:
            return None
        return Terminate(instance_ids=_ids(victims), decrement_desired=True, balance=True,
                         record=v.writing(state.desired - len(victims), stepwise=True))
    moves = az_moves(state.az_counts())
    if v.rec.az_moves is not None and moves >= v.rec.az_moves:
        return None  # the last round did not help: launches do not go where AWS would put them (an AZ short of
        # capacity, a group placed by hand): never a loop; the end reports the spread
    if surges(policy):
        count = min(v.batch, policy.max_surge, moves)
        new_desired = v.base + count
        return Launch(count=count, new_desired=new_desired, new_max=max(state.max_size, new_desired), balance=True,
                      record=replace(v.writing(new_desired), az_moves=moves))
    victims = _balance_victims(v, min(v.batch, moves))
    if not victims:
        return None
    return Terminate(instance_ids=_ids(victims), decrement_desired=False, balance=True,
                     record=replace(v.rec, az_moves=moves))


def _old_warmed(v: _View) -> list[WarmInstance]:
    """Warmed instances of the group's warm pool to terminate: not current (another image, or launched before
    ``replace_before`` in a renewal), not already on their way out, and warmed before this phase began (plus the
    stray grace): one warmed during the phase on another image means the pool refills with it (a
    ``resolve:ssm:`` parameter that moved): terminating it would only churn the pool, so it is waited on and
    named instead (``_warm_pool``)."""
    return [w for w in v.state.warm if not v.rec.is_current(w.image_id, w.launch_time) and not w.terminating
            and w.launch_time < v.rec.phase_start + STRAY_GRACE]


def _warm_pool(v: _View) -> Action | None:
    """The warm pool at the end of a converged phase (None: no pool, or it is on the target at its size).

    AWS leaves a warm pool alone when the launch template moves: its instances keep the image they were warmed
    with, and every scale-out from it brings that image back. AWS refreshes a pool by terminating its warmed
    instances so that it refills from the current template; so does the rollout (step 3a, as soon as the group
    launches the target: the batches' own scale-outs draw from the pool). Here, once everything else converged,
    the phase waits for the pool to hold ``warm_pool_size`` settled instances on the target, nothing in
    transition, up to the phase deadline (past it, ``_past_deadline`` halts naming what the pool holds)."""
    state = v.state
    if state.warm_pool_size is None:
        return None
    old = _old_warmed(v)
    if old and v.now < v.deadline:  # e.g. warmed while the last batch settled
        return TerminateWarmed(instance_ids=_ids(old))
    ready = [w for w in state.warm if w.settled and v.rec.is_current(w.image_id, w.launch_time)]
    moving = sorted((w for w in state.warm if not w.settled), key=lambda w: w.instance_id)
    wrong = sorted((w for w in state.warm if not w.terminating and not v.rec.is_current(w.image_id, w.launch_time)),
                   key=lambda w: w.instance_id)
    if not moving and not wrong and len(ready) >= state.warm_pool_size:
        return None
    reason = f"warm pool at {len(ready)} of {state.warm_pool_size} warmed on {v.target}"
    if moving:
        reason += f"; {len(moving)} in {'/'.join(sorted({w.lifecycle for w in moving}))} ({' '.join(_ids(moving[:5]))})"
    if wrong:
        reason += (f"; {len(wrong)} warmed on {wrong[0].image_id} ({' '.join(_ids(wrong[:5]))}): the pool refills "
                   "with another image than the target (does the group's launch template launch it?)")
    return Wait(condition=WaitFor.WARM_POOL, reason=reason, until=v.until(), instance_ids=_ids(moving + wrong))


def _balance_room(v: _View) -> bool:
    """Can a balancing round's instances warm up and turn healthy before the phase's deadline?"""
    return v.now + timedelta(seconds=v.policy.warmup_seconds + v.policy.health_timeout_seconds) < v.deadline


def _balance_victims(v: _View, limit: int) -> list[Instance]:
    """Up to ``limit`` in-service instances on the target, each from the AZ that has the most live instances
    at that point (newest first: the rollout's own launches before instances it never touched, e.g. the young
    ones a renewal keeps), never taking healthy capacity below the floor."""
    counts = v.state.az_counts()
    budget = len(v.healthy) - v.floor
    cands = [i for i in v.on_target_live if i.in_service and not i.protected and i.instance_id not in v.unknown]
    picks: list[Instance] = []
    while len(picks) < limit and cands:
        best = min(cands, key=lambda i: (-counts[i.az], i.instance_id in v.healthy, -i.launch_time.timestamp(),
                                         i.instance_id))
        if best.instance_id in v.healthy:
            if budget <= 0:
                break
            budget -= 1
        picks.append(best)
        cands.remove(best)
        counts[best.az] -= 1
    return picks


def _restore_desired(v: _View) -> int:
    """The baseline, unless lowering desired to it (the ASG picks what to remove) could cross the floor:
    then the surplus stays (only possible when unhealthy instances are protected from scale-in). The ASG
    removes only the live instances above the baseline: a surplus it has not launched yet (a launch that a
    lifecycle hook abandoned, its replacement not started) costs nothing to drop."""
    removed = min(v.excess, len(v.state.live) - v.base)
    if removed > 0 and len(v.healthy) - removed < v.floor:
        return v.state.desired
    return v.base


def _restore_action(v: _View, desired: int) -> Restore | None:
    desired, min_size, max_size = v.rec.restore_capacity(desired)
    resume = tuple(p for p in v.rec.suspended if p in v.state.suspended_processes)
    s = v.state
    if (s.desired, s.min_size, s.max_size) == (desired, min_size, max_size) and not resume:
        return None
    record = v.writing(desired) if desired != s.desired else None
    return Restore(desired=desired, min_size=min_size, max_size=max_size, resume_processes=resume, record=record)


def _finish(v: _View) -> Action:
    if _restore_desired(v) != v.base:
        # lowering desired lets the ASG pick what to remove: only once that cannot cross the floor
        if v.now < v.deadline:
            return _stuck(v)
        return _halt(v, FailKind.BLOCKED, f"deadline passed; removing the surplus of {v.excess} would drop "
                     f"healthy capacity below the floor of {v.floor}")
    restore = _restore_action(v, v.base)
    if restore is not None:
        return restore
    outcome = "completed" if v.rec.phase == FORWARD else "rolled_back"
    on = len(v.on_target_live)
    summary = f"{on}/{len(v.state.live)} on {_image_name(v.rec, v.target)}"
    if v.rec.replace_before is not None and v.rec.phase == FORWARD:
        summary += f" launched since {v.rec.replace_before:%Y-%m-%d %H:%M}Z"
    if v.rec.phase == ROLLBACK:
        summary = f"rolled back: {summary} ({v.rec.reason})"
    if v.state.warm_pool_size is not None:
        summary += f"; warm pool {len(v.state.warm)} on {v.target}"
    skipped = _ids(v.skipped)
    if skipped:
        summary += f"; skipped {len(skipped)} outdated by policy ({' '.join(skipped[:5])})"
    counts = v.state.az_counts()
    if az_moves(counts):
        if not balances_azs(v.state, v.rec):
            why = "not balanced: AZRebalance was suspended by someone else"
        elif v.rec.az_moves is not None and az_moves(counts) >= v.rec.az_moves:
            why = "not balanced: the group's launches did not go to its emptiest AZ"
        elif not _balance_room(v):
            why = "not balanced: too close to the deadline"
        else:
            why = "not balanced: the floor leaves no room"
        summary += f"; AZs {describe_azs(counts)} ({why})"
    return Done(outcome=outcome, summary=summary, skipped=skipped)


def _plan_halting(v: _View) -> Action:
    """Phase failed: remove surplus known to be unhealthy (down to the baseline), point the group back when
    the rollout replaced nothing (and its warm pool: warmed instances on the target are terminated, the pool
    refills from the previous version), restore, then Fail."""
    if v.excess > 0:
        surplus = [i for i in v.state.live if i.instance_id in v.sick and not i.protected]
        surplus.sort(key=lambda i: (not v.current(i), -i.launch_time.timestamp(), i.instance_id))
        victims = surplus[: min(v.excess, v.batch)]
        if victims:
            return Terminate(instance_ids=_ids(victims), decrement_desired=True,
                             record=v.writing(v.state.desired - len(victims), stepwise=True))
    reason = v.rec.reason or "failed"
    kind = FailKind.HALTED
    for k in FailKind:
        if reason.startswith(k.value + ": "):
            kind, reason = k, reason[len(k.value) + 2 :]
    rec, state = v.rec, v.state
    if (
        kind != FailKind.ROLLBACK_FAILED
        and rec.previous_image
        and rec.previous_lt
        and state.launch_image_id == rec.target_image
        and not any(i.image_id == rec.target_image for i in state.members)
    ):
        # nothing was replaced (or what was, was drained): the group goes back to the version it launched
        # before, so that a later scale-out does not launch the image this rollout never got onto it
        return SetLaunchTemplate(launch_template=rec.previous_lt, image_id=rec.previous_image)
    if (
        kind != FailKind.ROLLBACK_FAILED
        and rec.previous_image
        and state.launch_image_id == rec.previous_image
        and not any(i.image_id == rec.target_image for i in state.members)
    ):
        # pointed back: the warm pool, refilled from the target when the phase began, goes back too (else the
        # next scale-out would draw the image this rollout never got onto the group)
        back = [w for w in state.warm if w.image_id == rec.target_image and not w.terminating]
        if back:
            return TerminateWarmed(instance_ids=_ids(back))
    restore = _restore_action(v, _restore_desired(v))
    if restore is not None:
        return restore
    return Fail(reason=reason, fail_kind=kind)


# ------------------------------------------------------------------------------------------------------
# helpers for the operator and its triggers


def wait_over(wait: Wait, state: FleetState, record: RolloutRecord, policy: Policy) -> bool:
    """For a trigger polling a Wait: True once ``until`` passed or the planner would do something else.

    Timer waits (warmup, soak) end at ``until`` by themselves, but polling them still pays: a failure
    during the soak (an alarm, an instance turning unhealthy) ends the wait at once."""
    if state.now >= wait.until:
        return True
    return not wait.same_wait(plan(state, record, policy))


def _lt_spec(ref: str) -> dict[str, str]:
    name, _, version = ref.rpartition(":")
    key = "LaunchTemplateId" if name.startswith("lt-") else "LaunchTemplateName"
    return {key: name, "Version": version}


def instance_refresh_preferences(policy: Policy, desired: int) -> dict[str, Any]:
    """The policy as StartInstanceRefresh Preferences (pure mapping, no AWS).

    MaxHealthyPercentage = 100 + surge as a share of desired (AWS: 100..200, at most min + 100)."""
    surge_pct = math.ceil(100 * policy.max_surge / max(1, desired)) if policy.max_surge else 0
    max_healthy = max(100, min(200, 100 + surge_pct, policy.min_healthy_percent + 100))
    on_rule = {"skip": "Ignore", "wait": "Wait"}
    prefs: dict[str, Any] = {
        "MinHealthyPercentage": policy.min_healthy_percent,
        "MaxHealthyPercentage": max_healthy,
        "InstanceWarmup": policy.warmup_seconds,
        "SkipMatching": True,
        "AutoRollback": policy.on_failure == "rollback",
        "ScaleInProtectedInstances": on_rule.get(policy.protected, "Refresh"),
        "StandbyInstances": on_rule.get(policy.standby, "Terminate"),
    }
    if policy.soak_seconds:
        prefs["BakeTime"] = policy.soak_seconds
        if policy.batch_size is not None or policy.batch_percent is not None:
            step = max(1, min(100, math.ceil(100 * policy.batch_for(desired) / max(1, desired))))
            points = list(range(step, 100, step)) + [100]
            prefs["CheckpointPercentages"] = points
            prefs["CheckpointDelay"] = policy.soak_seconds
    alarms = list(policy.alarms) if policy.uses("alarms") else []
    if alarms:
        prefs["AlarmSpecification"] = {"Alarms": alarms}
    return prefs


def delegate_instance_refresh(state: FleetState, record: RolloutRecord, policy: Policy) -> DelegateInstanceRefresh:
    config = {"LaunchTemplate": _lt_spec(record.target_lt)} if record.target_lt else None
    return DelegateInstanceRefresh(
        preferences=instance_refresh_preferences(policy, record.base),
        desired_configuration=config,
    )


def _image_name(rec: RolloutRecord, image_id: str) -> str:
    label = rec.label_of(image_id)
    return f"{image_id} ({label})" if label else image_id


def describe_action(action: Action, now: datetime) -> str:
    """A short human phrase for an action (the ``next:`` part of a progress line)."""
    if isinstance(action, Wait):
        if action.condition.timer:
            return f"wait {action.reason}"
        return f"wait {action.condition.value}: {action.reason} (up to {_secs(action.until - now)}s)"
    if isinstance(action, Launch):
        what = "balance AZs: launch" if action.balance else "launch"
        return f"{what} {action.count} (desired -> {action.new_desired}, max {action.new_max})"
    if isinstance(action, Terminate):
        how = "with" if action.decrement_desired else "without"
        what = "balance AZs: terminate" if action.balance else "terminate"
        return f"{what} {len(action.instance_ids)} {how} decrement: {' '.join(action.instance_ids)}"
    if isinstance(action, TerminateWarmed):
        return f"replace {len(action.instance_ids)} warmed instance(s) of the warm pool: {' '.join(action.instance_ids)}"
    if isinstance(action, PrepareInstances):
        parts = []
        if action.exit_standby:
            parts.append(f"exit standby {' '.join(action.exit_standby)}")
        if action.unprotect:
            parts.append(f"unprotect {' '.join(action.unprotect)}")
        return "prepare: " + ", ".join(parts)
    if isinstance(action, SuspendProcesses):
        return f"suspend {' '.join(action.processes)}"
    if isinstance(action, SetLaunchTemplate):
        return f"point the ASG at {action.launch_template} ({action.image_id})"
    if isinstance(action, StartRollback):
        return f"ROLL BACK: {action.reason}"
    if isinstance(action, Halt):
        return f"HALT: {action.reason}"
    if isinstance(action, Restore):
        resume = f", resume {' '.join(action.resume_processes)}" if action.resume_processes else ""
        return f"restore desired={action.desired} min={action.min_size} max={action.max_size}{resume}"
    if isinstance(action, DelegateInstanceRefresh):
        return "start an AWS instance refresh"
    if isinstance(action, Done):
        return f"done: {action.summary}"
    if isinstance(action, Fail):
        return f"FAILED ({action.fail_kind.value}): {action.reason}"
    return action.kind


def progress_line(state: FleetState, record: RolloutRecord, policy: Policy, action: Action) -> str:
    """One human line per step, e.g.
    ``batch 3/8: 24/64 on ami-123 (2026.11.30-1), healthy 64 >= floor 58, next: wait warmup 90s``."""
    rec = adopt_baseline(state, record, policy)
    v = _View(state, rec, policy)
    on_target = len(v.on_target_live)
    remaining = len(v.eligible) + len(v.blocked) + len(v.pending_outdated)
    total = max(1, math.ceil((on_target + remaining - max(0, v.excess)) / v.batch))
    current = min(total, max(1, math.ceil(on_target / v.batch)))
    prefix = {FORWARD: "", ROLLBACK: "rollback ", FAILED: "failed "}[rec.phase]
    healthy = len(v.healthy)
    cmp = ">=" if healthy >= v.floor else "<"
    return (
        f"{prefix}batch {current}/{total}: {on_target}/{v.base} on {_image_name(rec, v.target)}, "
        f"healthy {healthy} {cmp} floor {v.floor}, next: {describe_action(action, state.now)}"
    )
