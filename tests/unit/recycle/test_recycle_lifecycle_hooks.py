"""A launch lifecycle hook nobody completes, against the sandbox (which holds each launch in Pending:Wait until
the heartbeat times out, then ABANDONs it and the ASG launches the next: a stream of fresh instances that never
turn healthy). Issue 18 items 2 and 3: the forward roll rolls back at its deadline and the rollback ENDS by its
own deadline, with desired, min/max and processes restored; the group is watched through the AWS API alone.

The rollout's clock is the observation's ``now``: the hook here advances it 5 s per observation, so the
1-minute deadlines pass in a few describes (the sandbox's heartbeat is counted in describes too): no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import recycle_fleet as F
from phoenix_fleet.operators.recycle_operators import SUMMARY_XCOM_KEY, RolloutFailed
from phoenix_fleet.rollout import RolloutRecord

from tests.helpers.airflow_run import make_context, run_task

STEP = timedelta(seconds=5)
DEADLINE = timedelta(minutes=1)


class NeverEnds(BaseException):  # noqa: N818 - escapes the operator's error handling, like a kill
    """The rollout ran far past both deadlines."""


def clocked_hook(sandbox: Any, f: F.Fleet) -> Any:
    """A recording hook whose observations see a clock that moves 5 s per observation, and that watches the
    group from outside after every observation (healthy InService count, desired, record phase)."""
    hook = F.scripted_hook()
    start = datetime.now(UTC)
    hook.fake_now = start
    hook.watch = []
    base_observe = type(hook).observe

    def now() -> datetime:
        hook.fake_now += STEP
        if hook.fake_now - start > timedelta(minutes=20):
            raise NeverEnds(f"still rolling 20 minutes after it began: {hook.watch[-3:]}")
        return hook.fake_now

    def observe(self: Any, asg_name: str, policy: Any, *, resolve_launch_template: bool = True, **_: Any) -> Any:
        obs = base_observe(self, asg_name, policy, resolve_launch_template=resolve_launch_template, now=now)
        g = F.group(sandbox, f.asg)
        record = RolloutRecord.from_tags({t["Key"]: t["Value"] for t in g["Tags"]})
        hook.watch.append((hook.fake_now, F.healthy_in_service(sandbox, f), g["DesiredCapacity"],
                           record.phase if record else None, record.phase_start if record else None))
        return obs

    type(hook).observe = observe
    return hook


def test_a_launch_hook_nobody_completes_rolls_back_and_the_rollback_ends_by_its_deadline(sandbox_clean, capsys):
    f = F.build_fleet(sandbox_clean, desired=3)
    autoscaling = sandbox_clean.client("autoscaling", region_name=F.REGION)
    autoscaling.put_lifecycle_hook(
        LifecycleHookName="nobody-completes", AutoScalingGroupName=f.asg,
        LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING", HeartbeatTimeout=60, DefaultResult="ABANDON",
    )
    op = F.operator(f, policy={"batch_size": 1, "max_surge": 1, "deadline_minutes": 1}, deferrable=False)
    op.hook = clocked_hook(sandbox_clean, f)
    ctx = make_context()
    with pytest.raises(RolloutFailed) as failed:
        run_task(op, ctx)
    watch = op.hook.watch
    phases = [(t, phase, started) for t, _, _, phase, started in watch]
    # forward rolled back at its deadline (+ one observation)
    forward_start = next(s for _, p, s in phases if p == "forward")
    rollback_start = next(s for _, p, s in phases if p == "rollback")
    assert rollback_start <= forward_start + DEADLINE + STEP
    # ...and the rollback ENDED by its own: halted (or done) within its deadline + one observation
    # the halt is planned at the first observation past the deadline (phase-started keeps whole seconds: up to
    # one more step) and seen from outside at the next one
    halted = next(t for t, p, _ in phases if p == "failed")
    assert halted <= rollback_start + DEADLINE + 3 * STEP, phases
    # the halt's own steps (remove the held surplus, restore) take a few observations, not a new horizon
    assert op.hook.fake_now <= halted + 4 * STEP, phases
    # the old instances kept serving throughout; never a launch counted as healthy while held
    assert min(healthy for _, healthy, _, _, _ in watch) >= 3
    # from outside, at the end: desired, sizes and processes restored, only the previous image in service
    g = F.group(sandbox_clean, f.asg)
    assert g["DesiredCapacity"] == 3 and (g["MinSize"], g["MaxSize"]) == (1, 4)
    assert g["SuspendedProcesses"] == []
    assert set(F.fleet_images(sandbox_clean, f.asg).values()) <= {f.old_ami, f.new_ami}
    assert g["LaunchTemplate"]["Version"] == "1"  # pointed back at the previous version
    summary = ctx["ti"].xcom[SUMMARY_XCOM_KEY]
    assert summary["outcome"] == "failed" and summary["capacity"] == {"desired": 3, "min": 1, "max": 4}
    # both halts name what never became healthy, and why
    assert "never became healthy" in summary["reason"] and "lifecycle Pending:Wait" in summary["reason"], summary
    assert summary["message"].startswith("deadline passed (1 min) in the rollback phase: 1 instance(s) on "
                                         f"{f.old_ami} never became healthy"), summary
    assert "lifecycle Pending:Wait" in str(failed.value)
    # the hooks were listed when the rollout began: which transition holds, how long, what then
    assert ("nobody-completes: launches wait in Pending:Wait up to 60s without a heartbeat, then ABANDON (the "
            "instance is terminated, the ASG launches another)") in capsys.readouterr().out
