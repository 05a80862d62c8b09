"""After a canary, an approval that is rejected or never answered: the canary group goes back to where it was.
And an approval that takes longer than the policy's deadline does not turn the rest of the canary group's rollout
into a rollback. Against the sandbox (describe-count mode), watching the group through the AWS API."""

from __future__ import annotations

import datetime as dt

import pytest
import recycle_fleet as F

from tests.helpers.airflow_run import make_context, run_task

RID = "fleet_rollout_web:manual__1"
FAST = {"min_poll_interval": 0.01, "poll_interval": 0.05, "inline_wait_seconds": 0, "region_name": F.REGION}


def rollback_op(f, **kwargs):
    from phoenix_fleet.operators.canary_operators import CanaryRollbackOperator

    kwargs.setdefault("policy", {"warmup_seconds": 0, "batch_size": 2, "max_surge": 2})
    kwargs.setdefault("rollout_id", RID)
    return CanaryRollbackOperator(task_id="canary_rollback", asg_name=f.asg, target_launch_template_version=2,
                                  **FAST, **kwargs)


def canary(sandbox, f, **policy):
    op = F.operator(f, max_batches=1, rollout_id=RID, policy=policy)
    result = run_task(op, make_context()).result
    assert result["outcome"] == "canary"
    g = F.group(sandbox)
    assert f.new_ami in F.fleet_images(sandbox).values()
    assert g["SuspendedProcesses"] and g["MaxSize"] > 5  # left locked, processes suspended, max raised
    return g


def test_a_rejected_canary_is_rolled_back_restored_and_released(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    canary(sandbox_clean, f)
    lowest: list[int] = []
    op = rollback_op(f, reason="the approval was rejected")
    op.hook = F.scripted_hook(monitor=lambda: lowest.append(F.healthy_in_service(sandbox_clean, f)))
    result = run_task(op, make_context()).result
    assert result["outcome"] == "rolled_back", result
    assert result["to_image"] == f.old_ami and result["replaced"] >= 1
    assert "rolled back to" in result["message"] and "the approval was rejected" in result["message"]
    assert "lock released" in result["message"]
    g = F.assert_converged(sandbox_clean, f, f.old_ami, 4)  # processes resumed, tags gone, min/max restored
    assert g["LaunchTemplate"]["Version"] == "1"  # back on the previous launch-template version
    assert min(lowest) >= 4  # never below the floor (min_healthy_percent 100 of 4), watched from outside
    leftover = {t["Key"]: t["Value"] for t in g["Tags"] if t["Key"].startswith("phoenix:rollout")}
    assert leftover in ({}, {"phoenix:rollout-ended": f"rolled_back {RID}"}), leftover  # no record, no pause
    # run again (a retry): nothing left to do, and it says so
    again = run_task(rollback_op(f), make_context()).result
    assert again["outcome"] == "nothing" and "nothing to roll back" in again["message"]


def test_nothing_to_roll_back_when_no_canary_holds_the_group(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    before = F.group(sandbox_clean)
    op = rollback_op(f)
    calls = F.record_calls(op.hook)
    result = run_task(op, make_context()).result
    assert result["outcome"] == "nothing"
    assert all(c.startswith("Describe") for c in calls), calls
    assert F.group(sandbox_clean)["Instances"] == before["Instances"]


def test_another_rollouts_canary_is_left_alone(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    canary(sandbox_clean, f)
    result = run_task(rollback_op(f, rollout_id="fleet_rollout_web:manual__other"), make_context()).result
    assert result["outcome"] == "nothing" and RID in result["message"]
    g = F.group(sandbox_clean)
    assert {t["Key"]: t["Value"] for t in g["Tags"]}["phoenix:rollout:id"] == RID


def _age_the_rollout(sandbox, asg, minutes):
    """As if ``minutes`` had passed since the rollout (and its phase) started: a long wait for a human."""
    autoscaling = sandbox.client("autoscaling")
    g = F.group(sandbox, asg)
    tags = {t["Key"]: t["Value"] for t in g["Tags"]}
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    aged = {}
    for key in ("phoenix:rollout:started", "phoenix:rollout:phase-started"):
        when = dt.datetime.strptime(tags[key], fmt).replace(tzinfo=dt.UTC) - dt.timedelta(minutes=minutes)
        aged[key] = when.strftime(fmt)
    autoscaling.create_or_update_tags(Tags=[
        {"ResourceId": asg, "ResourceType": "auto-scaling-group", "Key": k, "Value": v, "PropagateAtLaunch": False}
        for k, v in aged.items()])


@pytest.mark.parametrize("approved", [True, False])
def test_an_approval_that_takes_longer_than_the_deadline(sandbox_clean, approved):
    """The canary stops healthy; the human answers after 90 minutes (deadline 60). Approved: the rest of the group
    rolls forward with a fresh deadline (the wait for a human is not rollout time), instead of the canary group
    alone rolling back while the others roll forward. Rejected: the canary is rolled back all the same."""
    f = F.build_fleet(sandbox_clean)
    canary(sandbox_clean, f, deadline_minutes=60)
    _age_the_rollout(sandbox_clean, f.asg, 90)
    if approved:
        rest = F.operator(f, rollout_id=RID, policy={"deadline_minutes": 60})
        result = run_task(rest, make_context()).result
        assert result["outcome"] == "forward", result
        F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    else:
        result = run_task(rollback_op(f), make_context()).result
        assert result["outcome"] == "rolled_back", result
        F.assert_converged(sandbox_clean, f, f.old_ami, 4)
