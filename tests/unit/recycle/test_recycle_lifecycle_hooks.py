"""A rollout against a launch lifecycle hook, in the sandbox (which holds each launch in ``Pending:Wait`` until the
hook is completed or its heartbeat runs out, then applies the hook's DefaultResult; ABANDON terminates the launch
and the ASG launches the next), the group watched through the AWS API alone after every observation. Issue 18
items 2 and 3:

* a hook nobody completes (a stream of fresh launches that never turn healthy): the forward roll rolls back by
  its deadline, the rollback ends by its own, desired, sizes and processes are restored, the lock is kept (phase
  ``failed``, for a human), and the halt names the instances the hook abandoned;
* a hook the team's automation completes: the roll finishes; the rollout never completes a hook itself and never
  counts a held launch as capacity.

Deterministic by construction (the withdrawn version of this file passed in one checkout and failed in another):

* **one clock, driven by the test**: every observation moves the rollout's clock ``STEP`` forward, nothing else
  does (no wall-clock deadline, no sleep racing a timeout; the operator's inline polls sleep a few ms, but none
  of its bounds is wall-clock). The hook's heartbeat runs on the same clock (``Heartbeat``: at its timeout the
  test applies the DefaultResult, ABANDON, through CompleteLifecycleAction, as AWS does on a timeout), at the
  start of an observation, so nothing happens between an observation and the action planned on it.
* why: the withdrawn test left the heartbeat to the sandbox's describe-count clock (4 DescribeAutoScalingGroups
  of anyone). The rollout itself makes such calls between an observation and its action (the re-read of desired
  before a capacity write), so a held launch could be abandoned, and replaced, right between the halt's plan to
  terminate it and the terminate: where that clock ran out relative to the rollout's steps decided whether the
  halt ended at once or chased a fresh launch every step (seen here: 2 runs in 5 never ended). Boots are instant
  too (``instance_boot`` off): one observation asks DescribeAutoScalingGroups, DescribeInstanceStatus and
  DescribeTargetHealth concurrently, and a boot counted over those calls showed ``Pending`` or ``Pending:Wait``
  by which the sandbox served first; a held launch is now ``Pending:Wait`` from its first observation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import recycle_fleet as F
from phoenix_fleet.operators.recycle_operators import SUMMARY_XCOM_KEY, RolloutFailed
from phoenix_fleet.rollout import RolloutRecord

from tests.helpers.airflow_run import make_context, run_task

STEP = timedelta(seconds=5)
#: seconds (AWS allows 30 to 7200; the sandbox stores any). 5 observations: where the hook's ABANDON lands relative
#: to the rollout's steps is fixed by it and by how many observations the rollout makes; a heartbeat running out
#: right between the rollback's plan and its terminate of the held launch makes the rollback wait for the
#: replacement the ASG launches (the limit docs/rollout.md names). 20 s put it there once the rollout stopped
#: re-observing after writes that move no capacity (3 observations fewer); 25 s does not.
HEARTBEAT = 25
DEADLINE = timedelta(minutes=1)
HOOK = "nobody-completes"


class NeverEnds(BaseException):  # noqa: N818 - escapes the operator's error handling, like a kill
    """The rollout ran far past both deadlines."""


def watched_hook(sandbox: Any, f: F.Fleet, *, before_each: Any = None, after_each: Any = None) -> Any:
    """A recording hook whose observations see a clock that moves ``STEP`` per observation (from a whole second),
    and that looks at the group from outside after every observation: healthy in-service count, desired, the
    record's phase and phase start, the members held in Pending:Wait. ``before_each(now)`` runs before each
    observation, at its time (the world moving on: a hook's heartbeat running out); ``after_each(look)`` after it
    (the team's automation)."""
    hook = F.scripted_hook()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    hook.fake_now = start
    hook.watch = []
    base_observe = type(hook).observe

    def observe(self: Any, asg_name: str, policy: Any, *, resolve_launch_template: bool = True, **_: Any) -> Any:
        hook.fake_now += STEP
        t = hook.fake_now
        if t - start > timedelta(minutes=20):
            raise NeverEnds(f"still rolling 20 minutes after it began: {hook.watch[-3:]}")
        if before_each is not None:
            before_each(t)
        obs = base_observe(self, asg_name, policy, resolve_launch_template=resolve_launch_template, now=lambda: t)
        g = F.group(sandbox, f.asg)
        record = RolloutRecord.from_tags({t["Key"]: t["Value"] for t in g["Tags"]})
        look = {
            "now": hook.fake_now,
            "healthy": F.healthy_in_service(sandbox, f),
            "desired": g["DesiredCapacity"],
            "phase": record.phase if record else None,
            "phase_start": record.phase_start if record else None,
            "held": sorted(i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "Pending:Wait"),
            "members": sorted(i["InstanceId"] for i in g["Instances"]),
        }
        hook.watch.append(look)
        if after_each is not None:
            after_each(look)
        return obs

    type(hook).observe = observe
    return hook


def _put_hook(sandbox: Any, f: F.Fleet, name: str) -> None:
    sandbox.client("autoscaling", region_name=F.REGION).put_lifecycle_hook(
        LifecycleHookName=name, AutoScalingGroupName=f.asg, LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
        HeartbeatTimeout=HEARTBEAT, DefaultResult="ABANDON",
    )


class Heartbeat:
    """The hook's heartbeat on the rollout's clock: a launch held ``HEARTBEAT`` seconds (from the observation that
    first saw it held) gets the hook's DefaultResult, ABANDON, as AWS applies it when nobody records a heartbeat
    or completes the action (the sandbox's own heartbeat, counted in describe calls, is set out of reach: its
    count moves with every DescribeAutoScalingGroups of anyone, the rollout's re-read of desired included, so
    where it ran out relative to the rollout's steps was not something this test could hold still). Applied at
    the start of an observation, so the observation sees the result."""

    def __init__(self, sandbox: Any, f: F.Fleet, hook: str) -> None:
        self.autoscaling = sandbox.client("autoscaling", region_name=F.REGION)
        self.f, self.hook = f, hook
        self.since: dict[str, datetime] = {}
        self.abandoned: list[str] = []

    def before(self, now: datetime) -> None:
        for iid, since in sorted(self.since.items()):
            if now - since >= timedelta(seconds=HEARTBEAT):
                self.autoscaling.complete_lifecycle_action(
                    LifecycleHookName=self.hook, AutoScalingGroupName=self.f.asg, InstanceId=iid,
                    LifecycleActionResult="ABANDON")
                self.abandoned.append(iid)
                del self.since[iid]

    def after(self, look: dict[str, Any]) -> None:
        self.since = {iid: self.since.get(iid, look["now"]) for iid in look["held"]}  # (the rollout's own
        # terminations of held launches end their wait too)


def _nobody_completes(sandbox: Any, *, hook_after_first_batch: bool) -> tuple[Any, Any, Heartbeat, Any, dict[str, Any]]:
    """Roll a group of 3 (batch 1, surge 1, 1-minute deadlines) into a launch hook nobody completes; the hook is
    put before the rollout, or (``hook_after_first_batch``) once its first batch is replaced (the forward phase
    then leaves an instance on the new image for the rollback to replace)."""
    # instant boots (held launches are Pending:Wait at once); the heartbeat on the rollout's clock (Heartbeat)
    sandbox.update_config(instance_boot=None, lifecycle_hook_heartbeat={"describes": 10**6})
    f = F.build_fleet(sandbox, desired=3)
    if not hook_after_first_batch:
        _put_hook(sandbox, f, HOOK)
    heartbeat = Heartbeat(sandbox, f, HOOK)
    op = F.operator(f, policy={"batch_size": 1, "max_surge": 1, "deadline_minutes": 1}, deferrable=False)
    op.hook = watched_hook(sandbox, f, before_each=heartbeat.before, after_each=heartbeat.after)
    if hook_after_first_batch:
        op.hook.on_action["terminate_instance"] = lambda: _put_hook(sandbox, f, HOOK)
    ctx = make_context()
    with pytest.raises(RolloutFailed) as failed:
        run_task(op, ctx)
    return f, op.hook, heartbeat, failed.value, ctx["ti"].xcom[SUMMARY_XCOM_KEY]


def _phase_starts(watch: list[dict[str, Any]]) -> dict[str, datetime]:
    return {w["phase"]: w["phase_start"] for w in reversed(watch) if w["phase"]}


def _names_the_abandoned(summary: dict[str, Any], failed: Exception, heartbeat: Heartbeat,
                         by: str = f"lifecycle hook {HOOK}") -> None:
    note = (f"; {len(heartbeat.abandoned)} instance(s) abandoned from Pending:Wait by {by} (left the "
            f"group without the rollout terminating them): {' '.join(heartbeat.abandoned)}")
    assert summary["message"].endswith(note), summary["message"]
    assert note in str(failed)


def test_a_launch_hook_nobody_completes_rolls_back_by_the_deadline_naming_the_abandoned_launches(
        sandbox_clean, capsys):
    f, hook, heartbeat, failed, summary = _nobody_completes(sandbox_clean, hook_after_first_batch=False)
    watch = hook.watch
    starts = _phase_starts(watch)
    # the forward phase rolled back at the first observation at or past its deadline; the rollback, with only
    # the held launch to take out (it does not wait for launches of the image it leaves), ended at once
    assert starts["forward"] + DEADLINE <= starts["rollback"] <= starts["forward"] + DEADLINE + STEP, starts
    assert hook.fake_now <= starts["rollback"] + 4 * STEP, watch[-6:]
    assert len(heartbeat.abandoned) >= 2  # launch after launch abandoned, none ever healthy capacity
    assert min(w["healthy"] for w in watch) >= 3
    # from outside: back on the previous version, desired, sizes and processes restored, the lock released
    g = F.group(sandbox_clean, f.asg)
    assert summary["outcome"] == "rolled_back", summary
    F.assert_converged(sandbox_clean, f, f.old_ami, 3, max_size=4)
    assert g["LaunchTemplate"]["Version"] == "1"
    tags = {t["Key"]: t["Value"] for t in g["Tags"]}
    assert tags["phoenix:rollout-ended"] == f"rolled_back {summary['rollout_id']}"
    # why, and which launches the hook abandoned
    assert "never became healthy" in summary["reason"] and "lifecycle Pending:Wait" in summary["reason"], summary
    _names_the_abandoned(summary, failed, heartbeat)
    # the hooks were listed when the rollout began: which transition holds, how long, what then
    assert (f"{HOOK}: launches wait in Pending:Wait up to {HEARTBEAT}s without a heartbeat, then ABANDON (the "
            "instance is terminated, the ASG launches another)") in capsys.readouterr().out


def test_a_launch_hook_nobody_completes_mid_rollout_the_rollback_ends_by_its_own_deadline(sandbox_clean):
    f, hook, heartbeat, failed, summary = _nobody_completes(sandbox_clean, hook_after_first_batch=True)
    watch = hook.watch
    starts = _phase_starts(watch)
    # forward rolled back at its deadline; the rollback, whose own launches of the previous image are held and
    # abandoned one after the other (a stream of fresh instances), ENDED by its own deadline: halted at the first
    # observation at or past it, and the halt's own steps (take the held surplus out, restore) took a few more
    assert starts["forward"] + DEADLINE <= starts["rollback"] <= starts["forward"] + DEADLINE + STEP, starts
    assert starts["rollback"] + DEADLINE <= starts["failed"] <= starts["rollback"] + DEADLINE + STEP, starts
    assert hook.fake_now <= starts["failed"] + 4 * STEP, watch[-6:]
    assert any(w["held"] for w in watch if w["phase"] == "forward") and any(
        w["held"] for w in watch if w["phase"] == "rollback")
    assert min(w["healthy"] for w in watch) >= 3  # never below the floor (100 % of 3), watched from outside
    # from outside, at the end: desired, sizes and processes restored, no launch left held, the group pointed at
    # the previous version; the lock is kept (phase failed) for a human to look at
    g = F.group(sandbox_clean, f.asg)
    assert (g["DesiredCapacity"], g["MinSize"], g["MaxSize"]) == (3, 1, 4)
    assert g["SuspendedProcesses"] == []
    assert all(i["LifecycleState"] == "InService" for i in g["Instances"]) and len(g["Instances"]) == 3
    assert g["LaunchTemplate"]["Version"] == "1"
    assert sorted(F.fleet_images(sandbox_clean, f.asg).values()) == sorted([f.old_ami, f.old_ami, f.new_ami])
    record = RolloutRecord.from_tags({t["Key"]: t["Value"] for t in g["Tags"]})
    assert record is not None and record.phase == "failed" and record.rollout_id == summary["rollout_id"]
    assert summary["outcome"] == "failed" and summary["capacity"] == {"desired": 3, "min": 1, "max": 4}
    # the halt names what never became healthy, why, and the launches the hook abandoned
    assert summary["message"].startswith("deadline passed (1 min) with 1 outdated left; 1 instance(s) on "
                                         f"{f.old_ami} never became healthy ("), summary
    assert "(rollback-failed)" in str(failed)
    assert "lifecycle Pending:Wait" in summary["message"], summary
    _names_the_abandoned(summary, failed, heartbeat, by="a launch lifecycle hook")  # (put after the rollout began)


def test_a_launch_hook_the_teams_automation_completes_lets_the_roll_finish(sandbox_clean):
    sandbox_clean.update_config(instance_boot=None, lifecycle_hook_heartbeat={"describes": 10**6})
    f = F.build_fleet(sandbox_clean, desired=3)
    _put_hook(sandbox_clean, f, "bootstrap-done")
    autoscaling = sandbox_clean.client("autoscaling", region_name=F.REGION)
    sightings: dict[str, int] = {}
    completed: list[str] = []

    def automation(look: dict[str, Any]) -> None:
        """The team's automation: completes a held launch (CONTINUE) the second time the watcher sees it held
        (the rollout has observed it in Pending:Wait at least once by then)."""
        for iid in look["held"]:
            sightings[iid] = sightings.get(iid, 0) + 1
            if sightings[iid] == 2:
                autoscaling.complete_lifecycle_action(
                    LifecycleHookName="bootstrap-done", AutoScalingGroupName=f.asg, InstanceId=iid,
                    LifecycleActionResult="CONTINUE")
                completed.append(iid)

    op = F.operator(f, policy={"batch_size": 1, "max_surge": 1, "min_healthy_percent": 100}, deferrable=False)
    op.hook = watched_hook(sandbox_clean, f, after_each=automation)
    calls = F.record_calls(op.hook)
    summary = run_task(op, make_context()).result
    assert summary["outcome"] == "forward", summary
    # every launch of the roll was held and completed by the automation, never by the rollout
    assert len(completed) >= 3 and "CompleteLifecycleAction" not in calls
    # a held launch is never capacity: healthy in service never below the floor (100 % of 3), and a batch's
    # outdated instance goes only after its launch was completed and turned healthy
    assert min(w["healthy"] for w in op.hook.watch) >= 3
    terminated = F.terminations(op.hook)
    assert len(terminated) >= 3 and not set(terminated) & set(completed)
    F.assert_converged(sandbox_clean, f, f.new_ami, 3, max_size=4)
