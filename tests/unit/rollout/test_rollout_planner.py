"""Example-based tests of the planner, one rule at a time (the property tests cover the combinations)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from phoenix_fleet.config import RolloutPolicy
from phoenix_fleet.rollout import (
    DelegateInstanceRefresh,
    Done,
    Fail,
    FailKind,
    Halt,
    Launch,
    Policy,
    PrepareInstances,
    Restore,
    SetLaunchTemplate,
    StartRollback,
    SuspendProcesses,
    Terminate,
    Wait,
    WaitFor,
    adopt_baseline,
    describe_outside_change,
    group_bounded,
    instance_refresh_preferences,
    maintenance_conflict,
    plan,
    progress_line,
    wait_over,
)
from phoenix_fleet.rollout.rollout_preview import describe_plan, format_plan
from rollout_builders import fleet, inst, record
from rollout_sim import ALARM, NEW, OLD, T0, TG

SUSPEND = frozenset({"AZRebalance", "AlarmNotification", "ScheduledActions"})
SURGE = Policy(strategy="surge", batch_size=2, max_surge=2, warmup_seconds=60, soak_seconds=0, alarms=(ALARM,))
REPLACE = Policy(strategy="replace", batch_size=3, min_healthy_percent=75, warmup_seconds=60, alarms=(ALARM,))


def news(n: int, *, age: int = 600, prefix: str = "i-new", **kw: object) -> list:
    return [inst(f"{prefix}{k}", NEW, az="us-east-1" + "ab"[k % 2], age=age + k, **kw)  # type: ignore[arg-type]
            for k in range(n)]


def olds(n: int, **kw: object) -> list:
    return [inst(f"i-old{k:02d}", az="us-east-1" + "ab"[k % 2], age=3600 + k, **kw) for k in range(n)]  # type: ignore[arg-type]


# -- surge and replace ------------------------------------------------------------------------------------


def test_surge_launches_proves_soaks_then_terminates_with_decrement() -> None:
    start = fleet(*olds(4))
    policy = replace(SURGE, soak_seconds=120)
    rec = record(start, policy)
    launch = plan(start, rec, policy)
    # the record says what we write (desired 4 -> 6) before we write it: any other value is someone else's
    assert launch == Launch(count=2, new_desired=6, new_max=6, record=rec.writing(4, 6))
    rec = launch.record  # type: ignore[assignment]

    booting = fleet(*olds(4), *news(2, age=20, lifecycle="Pending"), desired=6, max_size=6)
    wait = plan(booting, rec, policy)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.HEALTHY
    assert wait.instance_ids == ("i-new0", "i-new1")
    assert wait.until == T0 - timedelta(seconds=21) + timedelta(seconds=60 + 600)  # the first failure horizon
    assert wait.record == rec.writing(6, 6)  # our write is seen landed: settled, so any later change is outside
    rec = wait.record

    warming = fleet(*olds(4), *news(2, age=30), desired=6, max_size=6)
    wait = plan(warming, rec, policy)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.WARMUP
    assert wait.until == T0 + timedelta(seconds=30) and wait.reason == "warmup 30s"

    proven = fleet(*olds(4), *news(2, age=61), desired=6, max_size=6)
    soak = plan(proven, rec, policy)
    assert isinstance(soak, Wait) and soak.condition == WaitFor.SOAK
    assert soak.until == T0 + timedelta(seconds=120)
    assert soak.record == replace(rec, soak_from=T0)  # persisted: a resumed worker does not restart it
    assert plan(replace(proven, now=T0 + timedelta(seconds=60)), soak.record, policy) == replace(
        soak, record=None, reason="soak 60s"
    )

    done_soaking = replace(proven, now=T0 + timedelta(seconds=120))
    # one victim per zone (the zone with most live instances first), oldest first
    assert plan(done_soaking, soak.record, policy) == Terminate(
        ("i-old02", "i-old03"), decrement_desired=True, record=soak.record.writing(6, 4, stepwise=True))  # type: ignore[union-attr]


def test_surge_never_exceeds_batch_surge_or_what_is_left() -> None:
    state = fleet(*olds(1), *news(5))
    policy = replace(SURGE, batch_size=3, max_surge=2)
    rec = record(state, policy)
    assert plan(state, rec, policy) == Launch(count=1, new_desired=7, new_max=7, record=rec.writing(6, 7))


def test_replace_terminates_without_decrement_within_the_floor() -> None:
    state = fleet(*olds(4))
    # floor ceil(75% x 4) = 3: only one healthy instance may go, though the batch is 3 (zones tie: the
    # first zone's oldest)
    assert plan(state, record(state, REPLACE), REPLACE) == Terminate(("i-old02",), decrement_desired=False)
    # an unhealthy outdated instance costs no healthy capacity: it goes first, for free
    sick = fleet(*olds(4), inst("i-sick", az="us-east-1b", age=10, asg_health="Unhealthy"))
    policy = replace(REPLACE, min_healthy_percent=60)  # floor 3 of 5, healthy 4: one healthy may go too
    assert plan(sick, record(sick, policy), policy) == Terminate(("i-old02", "i-sick"), decrement_desired=False)


def test_replace_at_100_percent_cannot_start_and_says_why() -> None:
    state = fleet(*olds(3))
    policy = replace(REPLACE, min_healthy_percent=100)
    halt = plan(state, record(state, policy), policy)
    assert isinstance(halt, Halt) and "cannot take any instance out of 3" in halt.reason
    assert halt.record is not None and halt.record.phase == "failed"
    # halting: the group launched the target but nothing was replaced: point it back at the previous
    # version, restore (resume what we suspended), then fail
    back = plan(state, halt.record, policy)
    assert back == SetLaunchTemplate(launch_template="lt-0123456789abcdef0:7", image_id=OLD)
    state = replace(state, launch_image_id=OLD)
    restore = plan(state, halt.record, policy)
    assert restore == Restore(desired=3, min_size=3, max_size=3, resume_processes=tuple(sorted(SUSPEND)))
    fail = plan(replace(state, suspended_processes=frozenset()), halt.record, policy)
    assert isinstance(fail, Fail) and fail.fail_kind == FailKind.BLOCKED and "floor of 3" in fail.reason


def test_a_blocked_replace_halts_before_pointing_the_group_or_suspending_anything() -> None:
    """Issue 13 item 6: strategy replace on a 1-instance group halted only after it had pointed the group at
    the new version (and suspended its processes); feasibility is now checked first, so the halt changes
    nothing: no SetLaunchTemplate, no SuspendProcesses, and then straight to Fail."""
    state = fleet(inst("i-only"), launch_image_id=OLD, suspended_processes=frozenset())
    policy = replace(REPLACE, min_healthy_percent=75)  # floor ceil(0.75) = 1 of 1
    halt = plan(state, record(state, policy), policy)
    assert isinstance(halt, Halt) and halt.record is not None, halt
    assert "cannot take any instance out of 1" in halt.reason and "use strategy surge" in halt.reason
    fail = plan(state, halt.record, policy)
    assert isinstance(fail, Fail) and fail.fail_kind == FailKind.BLOCKED
    # an outdated instance already unhealthy can go for free: that is not blocked
    sick = fleet(inst("i-only", healthy=False), launch_image_id=OLD, suspended_processes=frozenset())
    assert plan(sick, record(sick, policy), policy) == SetLaunchTemplate("lt-0123456789abcdef0:8", NEW)


def test_a_halt_that_replaced_nothing_points_the_group_back() -> None:
    """Issue 13 item 6: a halt that made no replacement (here: the surge's new instances failed and were
    drained) leaves the group on the version it launched before, not on the one nothing runs."""
    policy = replace(SURGE, on_failure="halt")
    state = fleet(*olds(4), launch_image_id=NEW, suspended_processes=frozenset())
    halted = record(state, policy).halted(T0, "halted: i-new0 is Unhealthy in the ASG")
    assert plan(state, halted, policy) == SetLaunchTemplate("lt-0123456789abcdef0:7", OLD)
    # one instance did get onto the target: the group stays pointed at it (no mixed launches either way)
    kept = fleet(*olds(3), *news(1), launch_image_id=NEW, suspended_processes=frozenset())
    assert isinstance(plan(kept, halted, policy), Fail)
    # a failed rollback is never pointed "back" at the image it was rolling away from
    failed_back = record(state, policy).for_rollback(T0, "x").halted(T0, "rollback-failed: i-old0 sick")
    assert isinstance(plan(replace(state, launch_image_id=OLD), failed_back, policy), Fail)


def test_skip_matching_and_convergence() -> None:
    mixed = fleet(*olds(2), *news(2))
    launch = plan(mixed, record(mixed, SURGE), SURGE)
    assert launch == Launch(count=2, new_desired=6, new_max=6, record=record(mixed, SURGE).writing(4, 6))
    # (only the 2 outdated ones are replaced)
    converged = fleet(*news(4))
    rec = record(converged, SURGE)
    assert plan(converged, rec, SURGE) == Restore(
        desired=4, min_size=4, max_size=4, resume_processes=("AZRebalance", "AlarmNotification", "ScheduledActions")
    )
    restored = replace(converged, suspended_processes=frozenset())
    assert plan(restored, rec, SURGE) == Done(outcome="completed", summary="4/4 on ami-0new (2026.11.30-1)")


def test_processes_are_suspended_before_anything_and_never_after_convergence() -> None:
    state = fleet(*olds(2), suspended_processes=frozenset({"AZRebalance"}))
    rec = record(state, SURGE)
    assert plan(state, rec, SURGE) == SuspendProcesses(("AlarmNotification", "ScheduledActions"))
    converged = fleet(*news(2), suspended_processes=frozenset())
    assert isinstance(plan(converged, record(converged, SURGE), SURGE), Done)


# -- waits: lifecycle hooks, capacity, terminations ---------------------------------------------------


def test_lifecycle_hooks_are_not_in_service() -> None:
    state = fleet(*olds(4), *news(2, age=90, lifecycle="Pending:Wait"), desired=6, max_size=6)
    wait = plan(state, record(state, SURGE), SURGE)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.HEALTHY
    assert "lifecycle Pending:Wait" in wait.reason
    draining = fleet(*olds(3), inst("i-old09", lifecycle="Terminating:Wait"), *news(3))
    wait = plan(draining, record(draining, REPLACE), REPLACE)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.SETTLED and wait.instance_ids == ("i-old09",)
    assert "Terminating:Wait" in wait.reason


def test_capacity_killed_from_outside_is_waited_for() -> None:
    state = fleet(*olds(3), desired=4, max_size=4)  # one was killed; the ASG has not replaced it yet
    wait = plan(state, record(state, SURGE), SURGE)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.CAPACITY and wait.reason == "ASG at 3 of desired 4"


# -- failures, rollback, halt ---------------------------------------------------------------------------


def test_a_failed_new_instance_starts_the_rollback() -> None:
    state = fleet(*olds(4), *news(2, age=200, status="impaired"), desired=6, max_size=6)
    rec = record(state, SURGE)
    action = plan(state, rec, SURGE)
    assert isinstance(action, StartRollback) and action.reason == "i-new0 status checks are impaired"
    assert action.record == rec.for_rollback(T0, action.reason)
    assert action.record.target_image == OLD and action.record.target_lt == "lt-0123456789abcdef0:7"


def test_a_firing_alarm_starts_the_rollback_but_does_not_stop_it() -> None:
    state = fleet(*olds(2), *news(2), alarms_in_alarm=frozenset({ALARM}))
    rec = record(state, REPLACE)
    action = plan(state, rec, REPLACE)
    assert isinstance(action, StartRollback) and action.reason == "alarm web-5xx in ALARM"
    # rolling back: the alarm may be firing because of the new instances; the rollback proceeds
    back = replace(state, launch_image_id=OLD)
    step = plan(back, action.record, REPLACE)  # type: ignore[arg-type]
    assert step == Terminate(("i-new0",), decrement_desired=False)


def test_rollback_points_the_asg_at_the_previous_version_explicitly() -> None:
    state = fleet(*olds(2), *news(2))  # the ASG still launches NEW after StartRollback was persisted
    back = record(state, REPLACE).for_rollback(T0, "x")
    assert plan(state, back, REPLACE) == SetLaunchTemplate(launch_template="lt-0123456789abcdef0:7", image_id=OLD)
    no_lt = replace(back, target_lt=None)
    halt = plan(state, no_lt, REPLACE)
    assert isinstance(halt, Halt) and "no launch template version is recorded" in halt.reason


@pytest.mark.parametrize("why", ["halt", "no-previous"])
def test_halt_instead_of_rollback(why: str) -> None:
    state = fleet(*olds(4), *news(2, age=200, asg_health="Unhealthy"), desired=6, max_size=6)
    policy = replace(SURGE, on_failure="halt") if why == "halt" else SURGE
    rec = record(state, policy, previous_image=None if why == "no-previous" else OLD, original_desired=4,
                 original_max=4, original_min=4)
    halt = plan(state, rec, policy)
    assert isinstance(halt, Halt) and halt.record is not None
    assert halt.record.reason == "halted: i-new0 is Unhealthy in the ASG"
    # halting removes the failed surplus (not healthy, with decrement), points the group back at the previous
    # version when nothing is left on the new one, then restores, then fails
    drain = plan(state, halt.record, policy)
    assert drain == Terminate(("i-new0", "i-new1"), decrement_desired=True, record=halt.record.writing(6, 4, stepwise=True))
    rec = drain.record.writing(4, 4)  # type: ignore[union-attr]  (a stepwise write seen whole: settled)
    after = fleet(*olds(4), desired=4, max_size=6, launch_image_id=OLD)
    if why == "halt":
        assert plan(replace(after, launch_image_id=NEW), drain.record, policy) == SetLaunchTemplate(  # type: ignore[arg-type]
            "lt-0123456789abcdef0:7", OLD, record=rec)
    assert plan(after, rec, policy) == Restore(
        desired=4, min_size=4, max_size=4, resume_processes=("AZRebalance", "AlarmNotification", "ScheduledActions")
    )
    final = plan(fleet(*olds(4), suspended_processes=frozenset(), launch_image_id=OLD), rec, policy)
    assert final == Fail(reason="i-new0 is Unhealthy in the ASG", fail_kind=FailKind.HALTED)


def test_a_failing_rollback_fails_and_never_rolls_back_again() -> None:
    # an instance of the previous image the rollback launched (2 min ago, after it began) fails
    relaunched = inst("i-back0", OLD, age=120, asg_health="Unhealthy")
    state = fleet(*olds(2), relaunched, *news(1), launch_image_id=OLD)
    back = record(state, SURGE).for_rollback(T0 - timedelta(minutes=5), "i-new0 unhealthy")
    halt = plan(state, back, SURGE)
    assert isinstance(halt, Halt) and halt.record is not None
    assert halt.record.reason == "rollback-failed: i-back0 is Unhealthy in the ASG"
    final = plan(replace(state, suspended_processes=frozenset()), halt.record, SURGE)
    assert final == Fail(reason="i-back0 is Unhealthy in the ASG", fail_kind=FailKind.ROLLBACK_FAILED)


def test_a_rollback_replaces_a_previous_instance_that_was_failing_before_it_began() -> None:
    """Issue 13 item 10: one old instance already unhealthy before the rollout used to make the whole rollback
    fail (rollback-failed). Only instances launched after the rollback began count as its failures; an older
    one that is failing is replaced like any outdated instance."""
    policy = replace(REPLACE, batch_size=1, min_healthy_percent=50)
    sick_old = inst("i-old09", OLD, az="us-east-1b", age=7200, asg_health="Unhealthy")
    state = fleet(*olds(2), sick_old, *news(1), launch_image_id=OLD)
    back = record(state, policy).for_rollback(T0 - timedelta(minutes=5), "i-new0 unhealthy")
    action = plan(state, back, policy)
    assert not isinstance(action, Halt), action
    assert action == Terminate(("i-old09",), decrement_desired=False)  # the sick one first: it costs nothing
    # and a rollback whose instances are all back on the previous image, the sick one replaced, is done
    done = fleet(*olds(4), launch_image_id=OLD, suspended_processes=frozenset())
    assert isinstance(plan(done, back, policy), Done)


def test_a_rollback_removes_outdated_instances_stuck_launching() -> None:
    """Issue 13 item 9: new-image instances held in Pending:Wait (a lifecycle hook that never completes) used
    to hold the rollback (a settled wait) until its deadline, then rollback-failed. The rollback terminates
    them instead: with decrement while they are surplus, without once they are not."""
    stuck = news(2, age=1200, lifecycle="Pending:Wait")
    state = fleet(*olds(4), *stuck, desired=6, max_size=6, launch_image_id=OLD)
    rec = record(state, SURGE, original_desired=4)
    back = rec.for_rollback(T0 - timedelta(minutes=10), "i-new0 not healthy")
    action = plan(state, back, SURGE)
    assert action == Terminate(("i-new0", "i-new1"), decrement_desired=True, record=back.writing(6, 4, stepwise=True))
    # replace: the two were launched for terminated old ones (desired at the baseline): no decrement
    rstate = fleet(*olds(2), *stuck, launch_image_id=OLD)
    rback = record(rstate, REPLACE).for_rollback(T0 - timedelta(minutes=10), "x")
    assert plan(rstate, rback, REPLACE) == Terminate(("i-new0", "i-new1"), decrement_desired=False)
    # forward, the same instances on the target are waited for (they may still pass their hook)
    fwd = fleet(*olds(4), *news(2, age=20, lifecycle="Pending:Wait"), desired=6, max_size=6)
    assert isinstance(plan(fwd, record(fwd, SURGE, original_desired=4), SURGE), Wait)


def test_rollback_done_reports_the_reason() -> None:
    state = fleet(*olds(3), launch_image_id=OLD, suspended_processes=frozenset())
    back = record(state, SURGE).for_rollback(T0, "alarm web-5xx in ALARM")
    done = plan(state, back, SURGE)
    assert done == Done(
        outcome="rolled_back", summary="rolled back: 3/3 on ami-0old (2026.11.23-1) (alarm web-5xx in ALARM)"
    )


# -- deadline -------------------------------------------------------------------------------------------


def test_deadline_rolls_back_or_halts_while_outdated_instances_remain() -> None:
    state = fleet(*olds(2), *news(2), now_offset=3600)
    rec = record(state, SURGE)
    action = plan(state, rec, SURGE)
    assert isinstance(action, StartRollback) and action.reason == "deadline passed (60 min) with 2 outdated left"
    halting = replace(SURGE, on_failure="halt")
    halt = plan(state, record(state, halting), halting)
    assert isinstance(halt, Halt) and halt.record is not None and halt.record.reason.startswith("halted: deadline")


def test_a_fully_replaced_fleet_still_soaking_at_the_deadline_halts_without_rollback() -> None:
    """Issue 18 item 2: past the deadline nothing is waited for, not even the soak; the fleet is on the new
    image and nothing failed, so no rollback: a blocked halt naming the soak, then restore and Fail."""
    state = fleet(*news(4, age=70), now_offset=3600)
    policy = replace(SURGE, soak_seconds=300)
    rec = record(state, policy, started_at=T0 - timedelta(hours=2))
    halt = plan(state, rec, policy)
    assert isinstance(halt, Halt) and halt.record is not None
    assert halt.reason == "deadline passed (60 min) in the forward phase waiting for soak: soak 300s"
    restore = plan(state, halt.record, policy)
    assert isinstance(restore, Restore) and restore.resume_processes
    failed = plan(replace(state, suspended_processes=frozenset()), halt.record, policy)
    assert failed == Fail(reason=halt.reason, fail_kind=FailKind.BLOCKED)


def test_a_wait_never_reaches_past_the_deadline() -> None:
    """The warmup (and soak) of a batch launched just before the deadline: the wait ends at the deadline, where
    the next plan ends the phase (an instance's own horizon never carries the phase beyond it)."""
    state = fleet(*olds(2), *news(2, age=-3580), desired=4, now_offset=3590)  # launched 10 s ago
    rec = record(state, SURGE, desired_written=(4, 4), baseline=2)
    wait = plan(state, rec, SURGE)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.WARMUP
    assert wait.until == T0 + timedelta(seconds=3600)  # not its warmup end, 50 s later


def test_a_stream_of_fresh_launches_cannot_hold_the_rollback_past_its_deadline() -> None:
    """Issue 18 item 2 (found from outside): a launch hook nobody completes abandons each replacement after
    its heartbeat, so the rollback's surplus instance on the previous image is always fresh and its own health
    horizon always ahead. Past the rollback's deadline it fails, naming what never became healthy; the halt
    removes the surplus, restores desired and processes."""
    rec = record(fleet(*olds(3)), SURGE).for_rollback(T0 - timedelta(minutes=61), "deadline passed")
    fresh = inst("i-fresh", OLD, lifecycle="Pending:Wait", age=30)
    state = fleet(*olds(3), fresh, desired=4, max_size=4, launch_image_id=OLD)
    rec = replace(rec, desired_written=(4, 4))
    halt = plan(state, rec, SURGE)
    assert isinstance(halt, Halt) and halt.record is not None
    assert halt.reason == (
        "deadline passed (60 min) in the rollback phase: 1 instance(s) on ami-0old never became healthy "
        "(i-fresh: lifecycle Pending:Wait; target not registered in web; warming up (30s left))"
    )
    assert halt.record.reason.startswith("rollback-failed: ")
    cleanup = plan(state, halt.record, SURGE)
    assert cleanup == Terminate(instance_ids=("i-fresh",), decrement_desired=True,
                                record=halt.record.writing(4, 3, stepwise=True))
    # before the deadline the same observation waits, for no longer than the deadline
    early = plan(replace(state, now=T0 - timedelta(minutes=2)), rec, SURGE)
    assert isinstance(early, Wait) and early.until <= rec.deadline(SURGE)


# -- standby and scale-in protected instances -----------------------------------------------------------


def test_skip_leaves_them_and_reports_them() -> None:
    state = fleet(*news(3), inst("i-prot", protected=True, az="us-east-1b"), inst("i-stby", lifecycle="Standby"),
                  suspended_processes=frozenset())
    done = plan(state, record(state, SURGE), SURGE)
    assert isinstance(done, Done) and done.skipped == ("i-prot", "i-stby")
    assert done.summary == "3/4 on ami-0new (2026.11.30-1); skipped 2 outdated by policy (i-prot i-stby)"


def test_wait_holds_until_the_deadline_then_halts_without_rollback() -> None:
    policy = replace(SURGE, protected="wait", standby="wait")
    state = fleet(*news(3), inst("i-prot", protected=True), now_offset=600)
    wait = plan(state, record(state, policy), policy)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.RELEASE and wait.instance_ids == ("i-prot",)
    assert wait.until == T0 + timedelta(minutes=60)
    late = replace(state, now=T0 + timedelta(minutes=60))
    halt = plan(late, record(state, policy), policy)
    assert isinstance(halt, Halt) and halt.record is not None
    assert halt.record.reason == "blocked: deadline passed; still 1 outdated protected from scale-in (i-prot) (policy wait)"


def test_replace_unprotects_and_brings_standby_back_first() -> None:
    policy = replace(REPLACE, protected="replace", standby="replace", min_healthy_percent=50)
    state = fleet(*olds(2), inst("i-prot", az="us-east-1b", age=9000, protected=True),
                  inst("i-stby", lifecycle="Standby"))
    rec = record(state, policy)
    prep = plan(state, rec, policy)
    # ExitStandby raises desired by one (AWS): the baseline grows with it, persisted before acting
    assert prep == PrepareInstances(exit_standby=("i-stby",), unprotect=("i-prot",), new_max=4,
                                    record=rec.with_baseline(4).writing(3, 4))
    # surge: standby instances come back only while no surge is in flight
    surge = replace(SURGE, standby="replace")
    prep = plan(state, record(state, surge), surge)
    assert isinstance(prep, PrepareInstances) and prep.exit_standby == ("i-stby",) and prep.unprotect == ()
    surging = fleet(*olds(2), inst("i-stby", lifecycle="Standby"), *news(2), desired=4, max_size=4)
    srec = record(surging, surge, baseline=2, original_desired=2)
    assert plan(surging, srec, surge) == Terminate(
        ("i-old00", "i-old01"), decrement_desired=True, record=srec.writing(4, 2, stepwise=True)
    )



def test_an_exit_standby_recorded_but_never_made_is_not_counted_at_the_end() -> None:
    """A crash right after PrepareInstances' record was persisted (baseline 1 -> 2, desired "1 to 2") and before
    the ExitStandby itself: the next observation shows desired 1 and the instance still in Standby. The bump did
    not land, so it is not counted: halted here, the rollout restores exactly the capacity it started with (the
    old code restored desired 2, more capacity than the group had)."""
    policy = replace(SURGE, standby="replace", on_failure="halt")
    state = fleet(inst("i-old00"), inst("i-stby", lifecycle="Standby"), desired=1, min_size=1, max_size=1)
    rec = record(state, policy)
    prep = plan(state, rec, policy)
    assert prep == PrepareInstances(exit_standby=("i-stby",), new_max=2, record=rec.with_baseline(2).writing(1, 2))
    assert prep.record is not None
    # the crash: only the record persisted; an alarm fires before the rollout resumes
    later = replace(state, now=T0 + timedelta(seconds=60), alarms_in_alarm=frozenset({ALARM}))
    halt = plan(later, prep.record, policy)
    assert isinstance(halt, Halt) and halt.record is not None
    # halting: nothing was replaced, so the group goes back to the previous version, then restores desired 1
    back = plan(later, halt.record, policy)
    assert back == SetLaunchTemplate(launch_template="lt-0123456789abcdef0:7", image_id=OLD)
    pointed = replace(later, launch_image_id=OLD)
    restore = plan(pointed, halt.record, policy)
    assert restore == Restore(desired=1, min_size=1, max_size=1, resume_processes=tuple(sorted(SUSPEND)))
    restored = replace(pointed, suspended_processes=frozenset())
    end = plan(restored, halt.record, policy)
    assert isinstance(end, Fail) and end.fail_kind == FailKind.HALTED, end
    assert halt.record.base == 1 and halt.record.desired_written == (1, 1)


def test_an_exit_standby_made_then_scaled_in_from_outside_ends_where_it_was_set() -> None:
    """The same record, but the ExitStandby was made (desired 1 -> 2) and someone scaled the group back in to 1
    right after (the ASG removed one instance): desired 1 reads as our write not landed, and either way the
    rollout must end at 1 (a scale-in is adopted as set), never raise it back to 2."""
    policy = replace(SURGE, standby="replace")
    state = fleet(inst("i-old00"), inst("i-stby", lifecycle="Standby"), desired=1, min_size=1, max_size=1)
    prep = plan(state, record(state, policy), policy)
    assert isinstance(prep, PrepareInstances) and prep.record is not None
    after = fleet(inst("i-old00"), inst("i-stby", lifecycle="Terminating"), desired=1, min_size=1, max_size=2,
                  now_offset=30)
    adopted = adopt_baseline(after, prep.record, policy)
    assert (adopted.base, adopted.desired_written) == (1, (1, 1))


# -- desired capacity changed by someone else -----------------------------------------------------------


def test_a_scale_in_by_someone_else_becomes_the_baseline() -> None:
    policy = replace(REPLACE, min_healthy_percent=50)
    state = fleet(*olds(3), max_size=6)
    rec = record(state, policy, original_desired=5, baseline=5, original_min=3, desired_written=(5, 5))
    action = plan(state, rec, policy)
    adopted = replace(rec, baseline=3, desired_written=(3, 3))
    assert action == Terminate(("i-old02",), decrement_desired=False, record=adopted)
    assert describe_outside_change(state, rec, policy) == "outside change: desired 5 -> 3 adopted (baseline 5 -> 3)"
    converged = fleet(*news(3), max_size=6)
    restore = plan(converged, adopted, policy)
    assert restore == Restore(desired=3, min_size=3, max_size=6,
                              resume_processes=("AZRebalance", "AlarmNotification", "ScheduledActions"))


def test_an_outside_scale_out_before_the_first_launch_is_adopted_not_undone() -> None:
    """Issue 13 item 2: desired raised 4 -> 6 from outside just before the first surge launch used to look like
    our own surge (inside [baseline, baseline + max_surge]) and the rollout ended at 4. The record holds the
    desired the rollout last wrote (4): 6 is an outside change, adopted as the baseline, and the end keeps it."""
    start = fleet(*olds(4), max_size=8)
    rec = record(start, SURGE)  # desired written: 4 (observed when it began)
    raised = fleet(*olds(4), *news(2, age=5, lifecycle="Pending"), desired=6, max_size=8)
    assert describe_outside_change(raised, rec, SURGE) == "outside change: desired 4 -> 6 adopted (baseline 4 -> 6)"
    wait = plan(raised, rec, SURGE)
    assert isinstance(wait, Wait) and wait.record == replace(rec, baseline=6, desired_written=(6, 6))
    # the batch is then surged on top of 6, and the end restores 6
    settled = fleet(*olds(4), *news(2), desired=6, max_size=8)
    launch = plan(settled, wait.record, SURGE)
    assert launch == Launch(count=2, new_desired=8, new_max=8, record=wait.record.writing(6, 8))
    done = fleet(*news(6), min_size=4, max_size=8, suspended_processes=frozenset())
    assert plan(done, wait.record, SURGE) == Done(outcome="completed", summary="6/6 on ami-0new (2026.11.30-1)")
    # the same value written by us (a launch in flight: the record says 4 -> 6) is ours, not adopted; so is 4
    # (it has not landed yet); 5 is not: one write lands whole
    ours = rec.writing(4, 6)
    assert describe_outside_change(raised, ours, SURGE) is None
    assert plan(raised, ours, SURGE).record == ours.writing(6, 6)  # seen landed: settled
    five = replace(raised, desired=5)
    assert describe_outside_change(five, ours, SURGE) == "outside change: desired 6 -> 5 adopted (baseline 4 -> 5)"
    # a stepwise write (decrementing terminations) may stop anywhere between its ends; seen whole, it settles
    down = rec.writing(6, 4, stepwise=True)
    assert describe_outside_change(five, down, SURGE) is None
    assert adopt_baseline(fleet(*olds(4), max_size=8), down, SURGE) == down.writing(4, 4)


def test_an_outside_change_during_a_surge_keeps_our_surge_out_of_the_baseline() -> None:
    # our launch 4 -> 6 landed; then an autoscaler adds 2 more (8): the baseline is 8 minus our surge of 2
    state = fleet(*olds(4), *news(4), min_size=4, max_size=10)
    rec = record(fleet(*olds(4)), SURGE).writing(4, 6)
    action = plan(state, rec, SURGE)
    adopted = replace(rec, baseline=6, desired_written=(8, 8))
    assert action == Terminate(("i-old02", "i-old03"), decrement_desired=True, record=adopted.writing(8, 6, stepwise=True))
    assert describe_outside_change(state, rec, SURGE) == "outside change: desired 6 -> 8 adopted (baseline 4 -> 6)"
    # a record of an older version (no desired written) keeps the surge band it used
    legacy = replace(rec, desired_written=None)
    assert describe_outside_change(fleet(*olds(4), *news(1), max_size=8), legacy, SURGE) is None


def test_the_policy_a_rollout_began_with_is_used_on_resume() -> None:
    """Issue 13 item 2: a fleet.yaml changed between the canary and the recycle (surge 2 -> replace) used to
    change the rollout under way (a surge in flight became permanent capacity). The core of the policy the
    rollout began with is in its record and wins."""
    start = fleet(*olds(4), *news(2), desired=6, max_size=6)
    rec = record(start, SURGE, original_desired=4, baseline=4)  # canary: surge of 2 in flight, new ones healthy
    changed = replace(SURGE, strategy="replace", max_surge=0, batch_size=1, min_healthy_percent=50)
    action = plan(start, rec, changed)
    assert action == Terminate(("i-old02", "i-old03"), decrement_desired=True, record=rec.writing(6, 4, stepwise=True))
    assert rec.policy == "strategy=surge batch=2 max-surge=2 min-healthy=100 deadline=60 on-failure=rollback"
    assert rec.policy_for(changed) == SURGE


def test_unknown_health_is_never_acted_on() -> None:
    """Issue 13 item 1: two tolerated API errors (DescribeInstanceStatus NotFound for a chunk, TargetGroupNotFound)
    made health unknown, and unknown counted as unhealthy: victims for free. Reproduced: replace, batch 3,
    min-healthy 75 %, 4 healthy old instances: known status terminates 1, unknown status terminated 3 (healthy
    4 -> 1, floor 3). Now the planner re-observes, and halts naming the API error past the bound."""
    policy = replace(REPLACE, batch_size=3, min_healthy_percent=75)
    known = fleet(*olds(4), launch_image_id=NEW)
    assert plan(known, record(known, policy), policy) == Terminate(("i-old02",), decrement_desired=False)
    error = "DescribeInstanceStatus: InvalidInstanceID.NotFound (i-0gone)"
    blind = fleet(*olds(4, status=None), launch_image_id=NEW, observe_errors=(error,))
    rec = record(blind, policy)
    wait = plan(blind, rec, policy)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.UNKNOWN, wait
    assert error in wait.reason and wait.instance_ids == ("i-old00", "i-old01", "i-old02", "i-old03")
    assert wait.record == replace(rec, unknown_since=T0) and wait.until == T0 + timedelta(seconds=300)
    # still unknown at the bound: halt (blocked), naming the API error; nothing was terminated
    late = replace(blind, now=T0 + timedelta(seconds=300))
    halt = plan(late, wait.record, policy)  # type: ignore[arg-type]
    assert isinstance(halt, Halt) and halt.record is not None
    assert halt.record.reason.startswith("blocked: health of 4 instance(s) unknown for 300s") and error in halt.reason
    # known again before the bound: the mark is cleared (the bound starts over next time) and it proceeds
    seen = replace(known, now=T0 + timedelta(seconds=60))
    assert plan(seen, wait.record, policy) == Terminate(  # type: ignore[arg-type]
        ("i-old02",), decrement_desired=False, record=rec)
    # the target group not found: every instance's ELB health is unknown, the same
    no_tg = fleet(*olds(4, unknown=frozenset({"elb"})), launch_image_id=NEW)
    assert plan(no_tg, record(no_tg, policy), policy).condition == WaitFor.UNKNOWN  # type: ignore[union-attr]
    # a signal the policy does not count does not matter
    asg_only = replace(policy, health_signals=frozenset({"asg"}))
    assert isinstance(plan(no_tg, record(no_tg, asg_only), asg_only), Terminate)


def test_unknown_is_neither_healthy_nor_a_failure() -> None:
    policy = replace(SURGE, health_timeout_seconds=60)
    # new instances long past their health deadline with unknown status: not a failure, not healthy
    state = fleet(*olds(4), *news(2, age=3000, status=None), desired=6, max_size=6)
    action = plan(state, record(state, policy, original_desired=4), policy)
    assert isinstance(action, Wait) and action.condition == WaitFor.UNKNOWN
    # one known failure among unknown ones still rolls back (acting on what is known)
    bad = fleet(*olds(4), *news(1, age=3000, status=None), inst("i-bad", NEW, age=3000, asg_health="Unhealthy"),
                desired=6, max_size=6)
    assert isinstance(plan(bad, record(bad, policy, original_desired=4), policy), StartRollback)


def test_launches_on_a_third_image_halt_instead_of_being_chased() -> None:
    """Issue 13 item 14: when the launch template launches something else than the record's target (a
    resolve:ssm: parameter that moved mid-rollout), every replacement is 'outdated' again: the planner halts
    (blocked) naming it instead of replacing its own launches until the deadline."""
    OTHER = "ami-0other"
    stray = inst("i-stray", OTHER, age=-540)  # launched 9 min into the rollout (now: 10 min in)
    state = fleet(*olds(3), stray, launch_image_id=None, now_offset=600)
    halt = plan(state, record(state, SURGE), SURGE)
    assert isinstance(halt, Halt) and halt.record is not None, halt
    assert halt.reason.startswith("1 instance(s) launched during this forward phase run ami-0other (e.g. i-stray)")
    # one launched before the rollout (or in the first minutes, already under way) is replaced like any other
    early = fleet(*olds(3), inst("i-early", OTHER, age=-60), launch_image_id=None, now_offset=600)
    assert not isinstance(plan(early, record(early, SURGE), SURGE), Halt)


def test_the_deadline_holds_when_the_group_has_more_instances_than_desired() -> None:
    """Issue 13 item 11: all instances scale-in protected and desired lowered from outside: the ASG cannot
    remove any, and Wait(capacity) repeated forever. Past the deadline any live != desired halts (blocked)."""
    policy = replace(SURGE, protected="skip")
    protected = [inst(f"i-new{k}", NEW, age=600 + k, protected=True) for k in range(4)]
    state = fleet(*protected, desired=3, min_size=1, max_size=4, now_offset=1800)
    rec = record(state, policy, original_desired=4, baseline=3)
    wait = plan(state, rec, policy)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.CAPACITY
    late = replace(state, now=T0 + timedelta(minutes=60))
    halt = plan(late, rec, policy)
    assert isinstance(halt, Halt) and halt.record is not None, halt
    assert halt.record.reason == "blocked: deadline passed waiting for the ASG to reach desired capacity (4 live for desired 3)"


# -- instance refresh, progress, triggers, dry run ------------------------------------------------------


def test_instance_refresh_preferences_map_the_policy() -> None:
    policy = Policy(strategy="instance-refresh", min_healthy_percent=90, max_surge=3, warmup_seconds=120,
                    soak_seconds=600, batch_percent=25, alarms=(ALARM,), protected="wait", standby="replace")
    assert instance_refresh_preferences(policy, 20) == {
        "MinHealthyPercentage": 90,
        "MaxHealthyPercentage": 115,  # 100 + 3/20 surge
        "InstanceWarmup": 120,
        "SkipMatching": True,
        "AutoRollback": True,
        "ScaleInProtectedInstances": "Wait",
        "StandbyInstances": "Terminate",
        "BakeTime": 600,
        "CheckpointPercentages": [25, 50, 75, 100],
        "CheckpointDelay": 600,
        "AlarmSpecification": {"Alarms": [ALARM]},
    }
    lean = Policy(strategy="instance-refresh", min_healthy_percent=50, max_surge=0, on_failure="halt",
                  health_signals=frozenset({"asg"}), alarms=(ALARM,))
    prefs = instance_refresh_preferences(lean, 4)
    assert prefs["MaxHealthyPercentage"] == 100 and prefs["AutoRollback"] is False
    assert "AlarmSpecification" not in prefs and "BakeTime" not in prefs
    assert instance_refresh_preferences(replace(lean, max_surge=10, min_healthy_percent=0), 2)["MaxHealthyPercentage"] == 100
    assert instance_refresh_preferences(replace(lean, max_surge=10, min_healthy_percent=90), 2)["MaxHealthyPercentage"] == 190


def test_instance_refresh_strategy_is_delegated() -> None:
    state = fleet(*olds(4))
    policy = replace(SURGE, strategy="instance-refresh")
    action = plan(state, record(state, policy), policy)
    assert isinstance(action, DelegateInstanceRefresh)
    assert action.desired_configuration == {
        "LaunchTemplate": {"LaunchTemplateId": "lt-0123456789abcdef0", "Version": "8"}
    }


def test_progress_line_format() -> None:
    policy = Policy(strategy="surge", batch_size=8, max_surge=8, min_healthy_percent=90, warmup_seconds=90)
    state = fleet(
        *[inst(f"i-n{k:02d}", "ami-123", age=900) for k in range(16)],
        *[inst(f"i-w{k:02d}", "ami-123", age=0) for k in range(8)],
        *[inst(f"i-o{k:02d}", OLD, age=3600) for k in range(48)],
        desired=72, min_size=64, max_size=72, launch_image_id="ami-123",
    )
    rec = record(state, policy, target_image="ami-123", original_desired=64, original_min=64, original_max=64)
    action = plan(state, rec, policy)
    assert progress_line(state, rec, policy, action) == (
        "batch 3/8: 24/64 on ami-123 (2026.11.30-1), healthy 64 >= floor 58, next: wait warmup 90s"
    )
    back = rec.for_rollback(T0, "x")
    assert progress_line(state, back, policy, action).startswith("rollback batch ")


def test_wait_over_for_triggers() -> None:
    policy = replace(SURGE, soak_seconds=0)
    booting = fleet(*olds(4), *news(2, age=20, lifecycle="Pending"), desired=6, max_size=6)
    rec = record(booting, policy)
    wait = plan(booting, rec, policy)
    assert isinstance(wait, Wait)
    assert not wait_over(wait, replace(booting, now=T0 + timedelta(seconds=5)), rec, policy)
    ready = fleet(*olds(4), *news(2, age=61), desired=6, max_size=6)
    assert wait_over(wait, ready, rec, policy)
    # a polled wait is over when the planner would act, not at every bit of progress: one of the two new
    # instances turning healthy leaves the same wait on the other (no wake-up); a new instance joining it does
    assert wait.instance_ids == ("i-new0", "i-new1")
    half = fleet(*olds(4), inst("i-new0", NEW, az="us-east-1a", age=61),
                 inst("i-new1", NEW, az="us-east-1b", lifecycle="Pending", age=21), desired=6, max_size=6)
    assert plan(half, rec, policy).instance_ids == ("i-new1",)
    assert not wait_over(wait, half, rec, policy)
    joined = fleet(*olds(3), inst("i-new0", NEW, az="us-east-1a", age=61),
                   inst("i-new1", NEW, az="us-east-1b", lifecycle="Pending", age=21),
                   inst("i-new2", NEW, az="us-east-1a", lifecycle="Pending", age=1), desired=6, max_size=6)
    assert "i-new2" in plan(joined, rec, policy).instance_ids
    assert wait_over(wait, joined, rec, policy)
    warm = fleet(*olds(4), *news(2, age=30), desired=6, max_size=6)
    timer = plan(warm, rec, policy)
    assert isinstance(timer, Wait) and timer.condition.timer
    assert not wait_over(timer, replace(warm, now=T0 + timedelta(seconds=29)), rec, policy)
    assert wait_over(timer, replace(warm, now=T0 + timedelta(seconds=30)), rec, policy)
    # a soak is a timer, but an alarm firing during it ends the wait at once (the next plan rolls back)
    soak_policy = replace(policy, soak_seconds=600)
    proven = fleet(*olds(4), *news(2, age=61), desired=6, max_size=6)
    soak = plan(proven, rec, soak_policy)
    assert isinstance(soak, Wait) and soak.condition == WaitFor.SOAK and soak.record is not None
    later = replace(proven, now=T0 + timedelta(seconds=300))
    assert not wait_over(soak, later, soak.record, soak_policy)
    assert wait_over(soak, replace(later, alarms_in_alarm=frozenset({ALARM})), soak.record, soak_policy)


def test_policy_from_the_fleet_config() -> None:
    cfg = RolloutPolicy(strategy="replace", batch_percent=50, min_healthy_percent=75, health_signals=["asg", "elb"],
                        alarms=["a"], protected="wait", suspend_processes=["AZRebalance"])
    policy = Policy.from_config(cfg)
    assert policy.strategy == "replace" and policy.batch_percent == 50 and policy.alarms == ("a",)
    assert policy.health_signals == frozenset({"asg", "elb"}) and policy.suspend_processes == ("AZRebalance",)
    assert policy.batch_for(10) == cfg.batch_for(10) == 5
    assert policy.floor_for(10) == 8 and policy.floor_for(0) == 0
    with pytest.raises(ValueError, match="batch_size and batch_percent"):
        Policy(batch_size=1, batch_percent=1)


def test_dry_run_prints_the_whole_plan_and_changes_nothing() -> None:
    state = fleet(*olds(5), inst("i-stby", lifecycle="Standby"), suspended_processes=frozenset())
    policy = replace(SURGE, soak_seconds=120)
    rec = record(state, policy)
    steps = describe_plan(state, rec, policy)
    kinds = [s.action.kind for s in steps]
    assert kinds[0] == "SuspendProcesses" and kinds[-2:] == ["Restore", "Done"]
    assert kinds.count("Launch") == 3 and kinds.count("Terminate") == 3  # batches of 2, 2, 1
    launched = sum(s.action.count for s in steps if isinstance(s.action, Launch))
    assert launched == 5
    final = steps[-1].action
    assert isinstance(final, Done) and final.skipped == ("i-stby",)
    # 3 batches x (warmup 60 + soak 120)
    assert steps[-1].at - steps[0].at == timedelta(seconds=3 * 180)
    text = format_plan(steps)
    assert text.splitlines()[1].startswith("+     0s  batch 1/3: 0/5 on ami-0new (2026.11.30-1)")
    assert state == fleet(*olds(5), inst("i-stby", lifecycle="Standby"), suspended_processes=frozenset())


def test_dry_run_shows_an_honest_end() -> None:
    policy = replace(SURGE, protected="wait")
    state = fleet(*olds(2), inst("i-prot", protected=True))
    steps = describe_plan(state, record(state, policy), policy)
    assert isinstance(steps[-1].action, Fail) and steps[-1].action.fail_kind == FailKind.BLOCKED
    assert "Wait" in [s.action.kind for s in steps]
    assert TG  # the ideal instances are healthy in every attached target group


# -- the group's instance maintenance policy (issue 18 item 6) ------------------------------------------------


def test_the_groups_max_healthy_percentage_caps_the_surge() -> None:
    policy = replace(SURGE, max_surge=3, batch_size=3, min_healthy_percent=50)
    state = fleet(*olds(4), maintenance_policy=(50, 150))
    launch = plan(state, record(state, policy), policy)
    assert isinstance(launch, Launch) and launch.count == 2 and launch.new_desired == 6  # 150 % of 4, not 7
    assert maintenance_conflict(state, policy, 4) == (
        "web-asg's instance maintenance policy (min 50 %, max 150 %): its MaxHealthyPercentage 150 caps max_surge "
        "3 -> 2 (at most 6 instances for a baseline of 4)"
    )


def test_the_groups_min_healthy_percentage_raises_the_floor() -> None:
    policy = replace(REPLACE, min_healthy_percent=50, batch_size=4)
    state = fleet(*olds(4), maintenance_policy=(75, 100))
    terminate = plan(state, record(state, policy), policy)
    assert isinstance(terminate, Terminate) and len(terminate.instance_ids) == 1  # floor 3 of 4, not 2
    assert "MinHealthyPercentage 75 raises min_healthy_percent 50 -> 75" in str(maintenance_conflict(state, policy, 4))
    # a policy stricter than the group's own is left alone
    assert maintenance_conflict(state, replace(policy, min_healthy_percent=90), 4) is None


def test_a_group_policy_that_leaves_no_room_halts_before_anything_naming_it() -> None:
    """Issue 18: 100/110 on a 3-instance group: the surge took it to 4 (133 %). Now the surge is capped at 0, the
    floor is the whole group, and the rollout halts at once (nothing changed but the record), naming the group's
    policy and the fix."""
    state = fleet(*olds(3), maintenance_policy=(100, 110))
    policy = replace(SURGE, min_healthy_percent=100, max_surge=1, batch_size=1)
    halt = plan(state, record(state, policy), policy)
    assert isinstance(halt, Halt)
    assert "the group's instance maintenance policy min 100 % / max 110 % allows a surge of 0" in halt.reason
    assert "raise its MaxHealthyPercentage" in halt.reason
    assert group_bounded(policy, state, 3).max_surge == 0
    assert plan(replace(state, maintenance_policy=None), record(state, policy), policy) == Launch(
        count=1, new_desired=4, new_max=4, record=record(state, policy).writing(3, 4))
