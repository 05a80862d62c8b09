"""The rollout triggers: serialize() round trips, run() against the sandbox, the adaptive interval."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import recycle_fleet as F
from phoenix_fleet.hooks.asg_hook import AsgHook
from phoenix_fleet.rollout import Policy, RolloutRecord, Wait, WaitFor, plan
from phoenix_fleet.triggers.rollout_triggers import (
    AsgHealthyTrigger,
    AsgRolloutWaitTrigger,
    InstanceRefreshTrigger,
    known_to_json,
    next_interval,
    policy_from_json,
    policy_to_json,
    wait_from_json,
    wait_to_json,
)

from tests.helpers.airflow_run import first_event, rebuild_trigger

POLICY = Policy(warmup_seconds=0, batch_size=2, max_surge=2, alarms=("web-5xx",))


def in_a_minute() -> str:
    return (datetime.now(UTC) + timedelta(minutes=1)).isoformat()


def test_json_forms_round_trip():
    assert policy_from_json(policy_to_json(POLICY)) == POLICY
    wait = Wait(condition=WaitFor.HEALTHY, reason="2 new", until=datetime(2026, 11, 30, 10, tzinfo=UTC),
                instance_ids=("i-1", "i-2"))
    assert wait_from_json(wait_to_json(wait)) == wait


def test_serialize_round_trips():
    wait = wait_to_json(Wait(condition=WaitFor.SETTLED, reason="r", until=datetime.now(UTC), instance_ids=("i-1",)))
    triggers = [
        AsgRolloutWaitTrigger(asg_name="web", rollout_id="d/r", wait=wait, policy=policy_to_json(POLICY),
                              known={"i-1": ["ami-1", "2026-11-30T10:00:00+00:00"]}, carry={"batches": 2},
                              poll_interval=7, min_poll_interval=0.5, region_name="eu-west-1"),
        AsgHealthyTrigger(asg_name="web", image_id="ami-1", policy=policy_to_json(POLICY), deadline=in_a_minute()),
        InstanceRefreshTrigger(asg_name="web", instance_refresh_id="ir-1", waiter_delay=5, waiter_max_attempts=9),
    ]
    for trigger in triggers:
        classpath, kwargs = trigger.serialize()
        again = rebuild_trigger(trigger)
        assert again.serialize() == (classpath, kwargs)
        assert classpath.startswith("phoenix_fleet.triggers.rollout_triggers.")
    _, kwargs = triggers[0].serialize()
    assert kwargs["carry"] == {"batches": 2} and kwargs["deadline"] == wait["until"]


def test_adaptive_interval():
    assert next_interval(0, min_interval=1, max_interval=15, backoff=0.1, left=None) == 1
    assert next_interval(60, min_interval=1, max_interval=15, backoff=0.1, left=None) == 6
    assert next_interval(600, min_interval=1, max_interval=15, backoff=0.1, left=None) == 15
    assert next_interval(600, min_interval=1, max_interval=15, backoff=0.1, left=2.5) == 2.5


def _rollout_in_flight(sandbox):
    """A fleet mid-rollout: record in the tags, the group on v2, one new instance launching."""
    f = F.build_fleet(sandbox)
    hook = AsgHook(aws_conn_id="aws_default", region_name=F.REGION)
    obs = hook.observe(f.asg, POLICY)
    record = RolloutRecord.begin("d/r", obs.state, POLICY, target_image=f.new_ami, previous_image=f.old_ami,
                                 target_lt=f"{f.lt_id}:2", previous_lt=f"{f.lt_id}:1")
    hook.put_tags(f.asg, record.to_tags())
    hook.set_launch_template(f.asg, obs.launch_template, 2)
    hook.suspend_processes(f.asg, record.suspended)
    hook.set_capacity(f.asg, max_size=6, desired=5)
    obs = hook.observe(f.asg, POLICY, resolve_launch_template=False)
    return f, hook, obs


def test_wait_trigger_yields_when_the_new_instance_is_healthy(sandbox_clean):
    f, hook, obs = _rollout_in_flight(sandbox_clean)
    action = plan(obs.state, obs.record, POLICY)
    assert isinstance(action, Wait) and action.condition == WaitFor.HEALTHY
    trigger = rebuild_trigger(AsgRolloutWaitTrigger(
        asg_name=f.asg, rollout_id="d/r", wait=wait_to_json(action), policy=policy_to_json(POLICY),
        known=known_to_json(hook.known), carry={"batches": 1}, min_poll_interval=0.01, poll_interval=0.05,
        region_name=F.REGION,
    ))
    event = asyncio.run(first_event(trigger, 60)).payload
    assert event["status"] == "success" and event["outcome"] == "over"
    assert event["carry"] == {"batches": 1} and event["polls"] >= 1
    # known instances are not described again: ASG + status + target health + alarms, per poll
    assert event["calls"] == 4 * event["polls"]
    new = [i for i in hook.observe(f.asg, POLICY).state.live if i.image_id == f.new_ami]
    assert new and all(i.in_service for i in new)


def test_wait_trigger_notices_a_lost_record(sandbox_clean):
    f, hook, obs = _rollout_in_flight(sandbox_clean)
    action = plan(obs.state, obs.record, POLICY)
    trigger = AsgRolloutWaitTrigger(asg_name=f.asg, rollout_id="someone-else", wait=wait_to_json(action),
                                    policy=policy_to_json(POLICY), min_poll_interval=0.01, region_name=F.REGION)
    event = asyncio.run(first_event(trigger, 60)).payload
    assert event["outcome"] == "record-changed"


def test_timer_waits_are_polled_and_end_early_when_the_plan_changes(sandbox_clean):
    f, hook, obs = _rollout_in_flight(sandbox_clean)
    soak = Wait(condition=WaitFor.SOAK, reason="soak 600s", until=datetime.now(UTC) + timedelta(minutes=10))
    trigger = AsgRolloutWaitTrigger(asg_name=f.asg, rollout_id="d/r", wait=wait_to_json(soak),
                                    policy=policy_to_json(POLICY), min_poll_interval=0.01, region_name=F.REGION)
    event = asyncio.run(first_event(trigger, 60)).payload
    assert event["outcome"] == "over" and event["polls"] >= 1 and event["waited_seconds"] < 60


def test_wait_trigger_reports_a_missing_group(sandbox_clean):
    wait = Wait(condition=WaitFor.HEALTHY, reason="r", until=datetime.now(UTC) + timedelta(minutes=1))
    trigger = AsgRolloutWaitTrigger(asg_name="nope", rollout_id="d/r", wait=wait_to_json(wait),
                                    policy=policy_to_json(POLICY), region_name=F.REGION)
    event = asyncio.run(first_event(trigger, 30)).payload
    assert event["status"] == "error" and "'nope' does not exist" in event["message"]


def test_healthy_trigger_and_its_deadline(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    lean = policy_to_json(Policy(warmup_seconds=0))
    ok = AsgHealthyTrigger(asg_name=f.asg, image_id=f.old_ami, policy=lean, deadline=in_a_minute(),
                           min_poll_interval=0.01, region_name=F.REGION)
    event = asyncio.run(first_event(ok, 30)).payload
    assert event["status"] == "success" and event["message"] == f"{f.asg}: 4/4 healthy on {f.old_ami}"
    soon = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
    never = AsgHealthyTrigger(asg_name=f.asg, image_id=f.new_ami, policy=lean, deadline=soon,
                              min_poll_interval=0.05, region_name=F.REGION)
    event = asyncio.run(first_event(never, 30)).payload
    assert event["status"] == "error"
    assert f"not healthy by the deadline: 4 instance(s) not on {f.new_ami}" in event["message"]


def _imports(path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_import_circle_between_sensors_triggers_and_the_pure_core():
    """The health gate (``fleet_healthy``) lives in the pure core: the triggers never import the sensors (the
    sensor imports its trigger), and rollout/ imports nothing of the Airflow shell (anywhere in a file, also
    inside functions)."""
    from pathlib import Path

    import phoenix_fleet

    root = Path(phoenix_fleet.__file__).parent
    for path in (root / "triggers").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("phoenix_fleet.sensors")}, path
    shell = ("phoenix_fleet.sensors", "phoenix_fleet.triggers", "phoenix_fleet.hooks", "phoenix_fleet.operators",
             "airflow", "boto3", "botocore")
    for path in (root / "rollout").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith(shell)}, path
