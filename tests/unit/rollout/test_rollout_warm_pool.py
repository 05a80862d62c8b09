"""The warm pool step of the planner (issue 18 item 5): once a phase converged, warmed instances on another image
are terminated (not capacity: the floor is untouched) and the phase waits until the pool is refilled on its
target at its size, bounded by the phase deadline; a rollback does the same toward its own target."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from phoenix_fleet.rollout import (
    Done,
    Fail,
    FailKind,
    Halt,
    Policy,
    Restore,
    TerminateWarmed,
    Wait,
    WaitFor,
    WarmInstance,
    plan,
    warm_pool_size_for,
)
from phoenix_fleet.rollout.rollout_preview import describe_plan
from rollout_builders import fleet, inst, record
from rollout_sim import NEW, OLD, T0

SURGE = Policy(strategy="surge", batch_size=2, max_surge=2, warmup_seconds=60, soak_seconds=0)


def warm(iid: str, image: str, lifecycle: str = "Warmed:Stopped", age: int = 600) -> WarmInstance:
    return WarmInstance(iid, image, lifecycle, T0 - timedelta(seconds=age))


def news(n: int) -> list:
    return [inst(f"i-new{k}", NEW, az="us-east-1" + "ab"[k % 2], age=600 + k) for k in range(n)]


def test_the_size_aws_keeps_a_pool_at() -> None:
    assert warm_pool_size_for(None, 6, 2) is None
    assert warm_pool_size_for({"MinSize": 0}, 6, 2) == 4  # no MaxGroupPreparedCapacity: MaxSize - desired
    assert warm_pool_size_for({"MaxGroupPreparedCapacity": -1, "MinSize": 0}, 6, 2) == 4
    assert warm_pool_size_for({"MaxGroupPreparedCapacity": 5, "MinSize": 1}, 6, 2) == 3
    assert warm_pool_size_for({"MaxGroupPreparedCapacity": 1, "MinSize": 2}, 6, 4) == 2  # MinSize wins
    assert warm_pool_size_for({"MaxGroupPreparedCapacity": 1}, 6, 4) == 0


def test_a_converged_group_replaces_its_old_warmed_instances_then_waits_for_the_refill() -> None:
    pool = (warm("i-w1", OLD), warm("i-w2", OLD), warm("i-w3", NEW, age=30))
    state = fleet(*news(4), warm_pool_size=3, warm=pool)
    rec = record(state, SURGE)
    assert plan(state, rec, SURGE) == TerminateWarmed(instance_ids=("i-w1", "i-w2"))
    # not capacity: the same step whatever the floor (100 %: no instance of the group could go)
    strict = replace(SURGE, min_healthy_percent=100)
    assert plan(state, record(state, strict), strict) == TerminateWarmed(instance_ids=("i-w1", "i-w2"))
    refilling = replace(state, warm=(pool[2], warm("i-w4", NEW, "Warmed:Pending", age=5)))
    wait = plan(refilling, rec, SURGE)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.WARM_POOL
    assert wait.reason == "warm pool at 1 of 3 warmed on ami-0new; 1 in Warmed:Pending (i-w4)"
    assert wait.instance_ids == ("i-w4",) and wait.until == rec.deadline(SURGE)
    refilled = replace(state, warm=(pool[2], warm("i-w4", NEW), warm("i-w5", NEW)))
    assert isinstance(plan(refilled, rec, SURGE), Restore)
    done = plan(replace(refilled, suspended_processes=frozenset()), rec, SURGE)
    assert isinstance(done, Done) and done.summary.endswith("; warm pool 3 on ami-0new")


def test_old_warmed_instances_go_as_soon_as_the_group_launches_the_target() -> None:
    """Before the first batch: its scale-out draws from the pool, and an old-image draw would replace nothing."""
    state = fleet(inst("i-old0"), inst("i-old1", az="us-east-1b"), warm_pool_size=1, warm=(warm("i-w1", OLD),))
    rec = record(state, SURGE)
    assert plan(state, rec, SURGE) == TerminateWarmed(instance_ids=("i-w1",))
    # not while the group still launches the old image: the pool would refill with it
    pointing = plan(replace(state, launch_image_id=OLD), rec, SURGE)
    assert not isinstance(pointing, TerminateWarmed) and pointing.kind == "SetLaunchTemplate"
    # nor again while it terminates
    gone = replace(state, warm=(warm("i-w1", OLD, "Warmed:Terminating"),))
    assert plan(gone, rec, SURGE).kind == "Launch"


def test_a_pool_that_never_refills_halts_at_the_deadline_naming_what_it_holds() -> None:
    state = fleet(*news(4), warm_pool_size=2, warm=(warm("i-w9", NEW, "Warmed:Pending"),), now_offset=3600)
    rec = record(state, SURGE)
    halt = plan(state, rec, SURGE)
    assert isinstance(halt, Halt) and halt.record is not None
    assert halt.reason == ("deadline passed (60 min) in the forward phase waiting for warm-pool: warm pool at 0 of 2 "
                           "warmed on ami-0new; 1 in Warmed:Pending (i-w9)")
    restore = plan(state, halt.record, SURGE)
    assert isinstance(restore, Restore)
    failed = plan(replace(state, suspended_processes=frozenset()), halt.record, SURGE)
    assert failed == Fail(reason=halt.reason, fail_kind=FailKind.BLOCKED)


def test_a_rollback_brings_the_pool_back_to_its_own_target() -> None:
    state = fleet(*[inst(f"i-old{k}", OLD, age=60) for k in range(2)], launch_image_id=OLD, warm_pool_size=2,
                  warm=(warm("i-w1", NEW), warm("i-w2", OLD)))
    back = record(state, SURGE).for_rollback(T0 - timedelta(minutes=10), "alarm in ALARM")
    assert plan(state, back, SURGE) == TerminateWarmed(instance_ids=("i-w1",))


def test_a_group_without_a_pool_is_not_held_and_the_dry_run_refills_the_pool() -> None:
    state = fleet(*news(2))
    assert isinstance(plan(state, record(state, SURGE), SURGE), Restore)
    start = fleet(inst("i-old0"), inst("i-old1", az="us-east-1b"), warm_pool_size=2,
                  warm=(warm("i-w1", OLD), warm("i-w2", OLD)))
    steps = describe_plan(start, record(start, SURGE), SURGE)
    kinds = [s.action.kind for s in steps]
    assert kinds.count("TerminateWarmed") == 1 and kinds[-1] == "Done"
    assert kinds.index("TerminateWarmed") < kinds.index("Launch")  # before the first batch
    assert "warm pool 2 on ami-0new" in steps[-1].line


def test_a_pool_that_refills_with_another_image_is_not_churned_and_ends_by_the_deadline() -> None:
    """A pool warmed during the phase on another image (a resolve:ssm: parameter that moved: the template is
    trusted, not resolved) refills with it: terminating it again would churn the pool forever; it is waited on,
    named, and past the deadline the phase halts (no TerminateWarmed past the deadline either)."""
    refilled = WarmInstance("i-w7", OLD, "Warmed:Stopped", T0 + timedelta(minutes=20))
    state = fleet(*news(4), warm_pool_size=1, warm=(refilled,), now_offset=30 * 60, launch_image_id=None)
    rec = record(state, SURGE)
    wait = plan(state, rec, SURGE)
    assert isinstance(wait, Wait) and wait.condition == WaitFor.WARM_POOL and wait.instance_ids == ("i-w7",)
    assert "1 warmed on ami-0old (i-w7): the pool refills with another image" in wait.reason
    late = replace(state, now=T0 + timedelta(minutes=61))
    halt = plan(late, rec, SURGE)
    assert isinstance(halt, Halt) and "waiting for warm-pool" in halt.reason and "i-w7" in halt.reason
    # an old warmed instance from before the phase is not terminated past the deadline either
    stale = replace(late, warm=(warm("i-w1", OLD),))
    assert isinstance(plan(stale, rec, SURGE), Halt)


def test_a_halt_that_points_the_group_back_takes_the_pool_back_too() -> None:
    """The pool refilled from the target when the phase began; a halt that replaced nothing points the group
    back at the previous version, and the warmed instances on the target go too (the pool refills from it)."""
    state = fleet(inst("i-old0"), inst("i-old1", az="us-east-1b"), warm_pool_size=2,
                  warm=(warm("i-w1", NEW, age=60), warm("i-w2", OLD)))
    halting = replace(SURGE, on_failure="halt")
    halted = record(state, halting).halted(T0, "blocked: no room")
    assert plan(state, halted, halting).kind == "SetLaunchTemplate"  # the group first
    back = replace(state, launch_image_id=OLD)
    assert plan(back, halted, halting) == TerminateWarmed(instance_ids=("i-w1",))
    refilled = replace(back, warm=(warm("i-w2", OLD), warm("i-w3", OLD, age=1)))
    assert isinstance(plan(refilled, halted, halting), Restore)
    # a halt that did replace some keeps the group (and the pool) on the target
    mixed = replace(state, instances=(inst("i-old0"), inst("i-new0", NEW, az="us-east-1b", age=60)))
    assert not isinstance(plan(mixed, halted, halting), TerminateWarmed)
