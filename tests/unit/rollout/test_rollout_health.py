"""Health rules: which instances count as healthy capacity, and when a new instance has failed."""

from __future__ import annotations

import pytest
from phoenix_fleet.rollout import Policy, failure, health_problems, healthy_ids, is_healthy
from phoenix_fleet.rollout.health import only_warming_up, target_group_name
from rollout_builders import fleet, inst
from rollout_sim import ALARM, NEW, TG

TG2 = "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/api/fedcba9876543210"
POLICY = Policy(warmup_seconds=60, alarms=(ALARM,), health_timeout_seconds=300)


@pytest.mark.parametrize(
    "lifecycle",
    ["Pending", "Pending:Wait", "Pending:Proceed", "Standby", "EnteringStandby", "Terminating",
     "Terminating:Wait", "Terminating:Proceed", "Detaching", "Quarantined"],
)
def test_only_in_service_counts(lifecycle: str) -> None:
    i = inst("i-1", lifecycle=lifecycle, target_health={TG: "healthy"})
    state = fleet(i, desired=1)
    assert not is_healthy(i, state, POLICY)
    assert f"lifecycle {lifecycle}" in health_problems(i, state, POLICY)


def test_a_settled_instance_on_every_signal_is_healthy() -> None:
    i = inst("i-1")
    assert is_healthy(i, fleet(i), POLICY)
    assert healthy_ids(fleet(i), POLICY) == {"i-1"}


@pytest.mark.parametrize("target", ["initial", "unhealthy", "draining", "unused", "unavailable", None])
def test_target_must_be_healthy_in_every_group(target: str | None) -> None:
    th = {TG: "healthy"} if target is None else {TG: "healthy", TG2: target}
    i = inst("i-1", target_health=th)
    state = fleet(i, target_group_arns=(TG, TG2))
    assert not is_healthy(i, state, POLICY)
    assert f"target {target or 'not registered'} in api" in health_problems(i, state, POLICY)
    # without the elb signal target health does not matter
    assert is_healthy(i, state, Policy(health_signals=frozenset({"asg", "ec2_status"})))


def test_asg_health_status_checks_and_alarms() -> None:
    sick = inst("i-1", asg_health="Unhealthy")
    init = inst("i-2", status="initializing")
    unknown = inst("i-3", status=None)
    ok = inst("i-4")
    state = fleet(sick, init, unknown, ok)
    assert healthy_ids(state, POLICY) == {"i-4"}
    assert healthy_ids(state, Policy(health_signals=frozenset({"elb"}))) == {"i-1", "i-2", "i-3", "i-4"}
    firing = fleet(ok, alarms_in_alarm=frozenset({ALARM, "other"}))
    assert not is_healthy(ok, firing, POLICY)
    assert is_healthy(ok, firing, POLICY, alarms=False)  # the rollback phase ignores alarms
    assert is_healthy(ok, firing, Policy(alarms=("other-one",)))  # not one of the policy's alarms
    assert is_healthy(ok, firing, Policy(alarms=(ALARM,), health_signals=frozenset({"asg"})))


def test_warmup_always_applies() -> None:
    young = inst("i-1", NEW, age=30)
    state = fleet(young)
    assert not is_healthy(young, state, Policy(warmup_seconds=60, health_signals=frozenset()))
    assert "warming up (30s left)" in health_problems(young, state, POLICY)
    assert only_warming_up(young, state, POLICY)
    assert is_healthy(young, fleet(young, now_offset=30), POLICY)  # launch + warmup <= now


def test_no_failure_during_warmup() -> None:
    for bad in (inst("i-1", NEW, age=10, asg_health="Unhealthy"), inst("i-2", NEW, age=10, status="impaired"),
                inst("i-3", NEW, age=10, target_health={TG: "unhealthy"})):
        assert failure(bad, fleet(bad), POLICY) is None


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"asg_health": "Unhealthy"}, "i-1 is Unhealthy in the ASG"),
        ({"target_health": {TG: "unhealthy"}}, "i-1 is unhealthy in target group web"),
        ({"status": "impaired"}, "i-1 status checks are impaired"),
    ],
)
def test_failure_after_warmup(kw: dict, why: str) -> None:
    bad = inst("i-1", NEW, age=61, **kw)
    assert failure(bad, fleet(bad), POLICY) == why
    assert failure(bad, fleet(bad), Policy(health_signals=frozenset(), warmup_seconds=60)) is None


def test_failure_by_timeout_names_what_is_missing() -> None:
    stuck = inst("i-1", NEW, lifecycle="Pending:Wait", age=359)
    assert failure(stuck, fleet(stuck, desired=1), POLICY) is None  # warmup 60 + timeout 300 not reached
    stuck = inst("i-1", NEW, lifecycle="Pending:Wait", age=360)
    why = failure(stuck, fleet(stuck, desired=1), POLICY)
    assert why is not None and why.startswith("i-1 not healthy 360s after launch (lifecycle Pending:Wait")
    slow_target = inst("i-2", NEW, age=400, healthy=False)
    why = failure(slow_target, fleet(slow_target), POLICY)
    assert why is not None and "target initial in web" in why
    # an alarm is judged for the whole fleet, never as an instance timeout
    fine = inst("i-3", NEW, age=4000)
    assert failure(fine, fleet(fine, alarms_in_alarm=frozenset({ALARM})), POLICY) is None


def test_target_group_name() -> None:
    assert target_group_name(TG) == "web"
    assert target_group_name("weird") == "weird"


def test_health_is_three_valued_and_unknown_is_neither_healthy_nor_bad() -> None:
    """Issue 13 item 1: a signal that could not be observed (status checks missing for a chunk, the target
    group not found) makes health unknown: not healthy capacity, not a failure, never 'unhealthy'."""
    from phoenix_fleet.rollout import health_state, unknown_ids

    no_status = inst("i-1", status=None)
    no_tg = inst("i-2", unknown=frozenset({"elb"}), target_health={})
    ok = inst("i-3")
    sick_and_blind = inst("i-4", status=None, asg_health="Unhealthy")  # something known is bad: unhealthy
    warming_blind = inst("i-5", NEW, age=10, unknown=frozenset({"elb"}))
    state = fleet(no_status, no_tg, ok, sick_and_blind, warming_blind)
    assert [health_state(i, state, POLICY) for i in state.instances] == [
        "unknown", "unknown", "healthy", "unhealthy", "unhealthy"]
    assert healthy_ids(state, POLICY) == {"i-3"}
    assert unknown_ids(state, POLICY) == {"i-1", "i-2"}
    assert "target health unknown" in health_problems(no_tg, state, POLICY)
    assert "status checks unknown" in health_problems(no_status, state, POLICY)
    assert health_problems(no_tg, state, POLICY, known_only=True) == []
    # a signal the policy does not count is not unknown
    assert health_state(no_tg, state, Policy(health_signals=frozenset({"asg"}), warmup_seconds=0)) == "healthy"
    # never a failure by timeout on an unknown signal alone; a known bad signal still is
    old_blind = inst("i-6", NEW, age=4000, status=None, unknown=frozenset({"elb"}))
    assert failure(old_blind, fleet(old_blind), POLICY) is None
    old_bad = inst("i-7", NEW, age=4000, status=None, asg_health="Unhealthy")
    assert failure(old_bad, fleet(old_bad), POLICY) == "i-7 is Unhealthy in the ASG"


def test_is_healthy_agrees_with_health_problems() -> None:
    cases = [inst("i-1"), inst("i-2", status=None), inst("i-3", unknown=frozenset({"elb"})),
             inst("i-4", lifecycle="Pending"), inst("i-5", NEW, age=5), inst("i-6", asg_health="Unhealthy"),
             inst("i-7", target_health={TG: "draining"}), inst("i-8", status="initializing")]
    for state in (fleet(*cases), fleet(*cases, alarms_in_alarm=frozenset({ALARM}))):
        for policy in (POLICY, Policy(health_signals=frozenset({"elb"})), Policy(health_signals=frozenset())):
            for i in cases:
                assert is_healthy(i, state, policy) == (not health_problems(i, state, policy)), (i, policy)
