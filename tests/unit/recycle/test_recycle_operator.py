"""AsgRecycleOperator against the sandbox (describe-count mode: nothing sleeps): forward rollouts, dry run,
lock, canary and resume, argument errors, template fields."""

from __future__ import annotations

import pytest
import recycle_fleet as F
from phoenix_fleet.operators.recycle_operators import (
    SUMMARY_XCOM_KEY,
    AsgRecycleOperator,
    RolloutLockedError,
    derive_rollout_id,
)

from tests.helpers.airflow_run import make_context, run_task


def test_surge_rollout_ends_on_new_image_at_original_capacity(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f)
    op.hook = F.scripted_hook()
    ctx = make_context()
    run = run_task(op, ctx)

    result = run.result
    assert result["outcome"] == "forward"
    assert result["from_image"] == f.old_ami and result["to_image"] == f.new_ami
    assert result["replaced"] == 4 and result["batches"] == 2 and result["launched"] == 4
    assert result["final_images"] == {f.new_ami: 4}
    assert ctx["ti"].xcom[SUMMARY_XCOM_KEY] == result
    # the deferrable path was taken for the health waits, through the real trigger round trip
    assert run.deferrals and {d["trigger"] for d in run.deferrals} == {"AsgRolloutWaitTrigger"}
    assert all(d["event"]["status"] == "success" and d["timeout"] for d in run.deferrals)
    # every wait deferred (inline_wait_seconds=0): no worker slot held while waiting, the triggerer polled
    assert result["defers"] == len(run.deferrals) and result["inline_polls"] == 0
    assert result["inline_wait_seconds"] == 0 and result["trigger_polls"] >= len(run.deferrals)
    g = F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    assert g["LaunchTemplate"]["Version"] == "2"
    # the surge raised max size for the extra instances, and restored it
    writes = [(name, kw) for name, _, kw in op.hook.actions if name == "set_capacity"]
    assert any(kw.get("max_size") == 6 for _, kw in writes)
    # only outdated instances were terminated, each once
    old = set(F.terminations(op.hook))
    assert len(old) == 4 == len(F.terminations(op.hook))


def test_replace_rollout_polls_inline_and_keeps_capacity(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    op = F.operator(
        f, policy={"strategy": "replace", "batch_size": 1, "min_healthy_percent": 75}, inline_wait_seconds=30
    )
    op.hook = F.scripted_hook()
    run = run_task(op, make_context())
    assert run.result["outcome"] == "forward"
    assert run.result["batches"] == 4 and run.result["replaced"] == 4
    assert run.deferrals == []  # every wait here is short: polled in the worker, no defer
    # ... holding the worker slot while it waits: the summary says how long
    assert run.result["inline_polls"] > 0 and run.result["inline_wait_seconds"] > 0
    assert run.result["defers"] == 0 and run.result["trigger_polls"] == 0
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    # replace never raises desired: each terminate lets the ASG launch the replacement
    assert all(not kw.get("desired") or kw["desired"] == 4 for n, _, kw in op.hook.actions if n == "set_capacity")
    assert all(not kw["decrement_desired"] for n, _, kw in op.hook.actions if n == "terminate_instance")


def test_not_deferrable_runs_in_the_worker(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, deferrable=False, target_image_id=None)
    run = run_task(op, make_context())
    assert run.deferrals == [] and run.result["outcome"] == "forward"
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)


def test_target_by_image_id_finds_the_launch_template_version(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, target_launch_template_version=None, target_image_id=f.new_ami, dry_run=True)
    result = run_task(op, make_context()).result
    assert result["outcome"] == "dry_run" and result["to_image"] == f.new_ami
    assert any(f"point the ASG at {f.lt_id}:2" in line for line in result["plan"])


def test_dry_run_prints_the_plan_and_changes_nothing(sandbox_clean, capsys):
    f = F.build_fleet(sandbox_clean)
    before = F.group(sandbox_clean)
    op = F.operator(f, dry_run="True")
    calls = F.record_calls(op.hook)
    result = run_task(op, make_context()).result
    out = capsys.readouterr().out
    assert result["outcome"] == "dry_run" and result["batches"] == 2
    assert result["plan"][-1].endswith(f"done: 4/4 on {f.new_ami} (2026.11.30-1)")
    assert any("launch 2 (desired -> 6, max 6)" in line for line in result["plan"])
    assert "DRY RUN" in out and "terminate 2 with decrement" in out
    assert calls and all(c.startswith("Describe") for c in calls), calls
    after = F.group(sandbox_clean)
    assert after == before
    assert set(F.fleet_images(sandbox_clean).values()) == {f.old_ami}


def test_a_dry_run_plans_a_target_no_template_version_launches_yet(sandbox_clean, capsys):
    """A rollout's dry run runs before its apply has made the version: it plans anyway (a real run refuses,
    see test_bad_targets_name_the_field_and_the_fix) and still only describes."""
    f = F.build_fleet(sandbox_clean)
    unmade = "ami-0123456789abcdef0"
    op = F.operator(f, target_launch_template_version=None, target_image_id=unmade, dry_run=True)
    calls = F.record_calls(op.hook)
    result = run_task(op, make_context()).result
    assert result["outcome"] == "dry_run" and result["batches"] == 2
    assert result["plan"][-1].endswith(f"done: 4/4 on {unmade}")
    assert "no version of launch template web-lt launches " + unmade + " yet" in capsys.readouterr().out
    assert calls and all(c.startswith("Describe") for c in calls), calls
    assert set(F.fleet_images(sandbox_clean).values()) == {f.old_ami}


def test_lock_refuses_another_rollout_and_the_canary_resumes(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    # canary: one batch of the first rollout, then stop healthy, lock held
    canary = F.operator(f, max_batches=1, rollout_id="release/run-1")
    canary.hook = F.scripted_hook()
    result = run_task(canary, make_context()).result
    assert result["outcome"] == "canary"
    images = F.fleet_images(sandbox_clean)
    assert sorted(images.values()).count(f.new_ami) == 2 and len(images) == 4
    tags = {t["Key"]: t["Value"] for t in F.group(sandbox_clean)["Tags"]}
    assert tags["phoenix:rollout:id"] == "release/run-1"

    # another rollout id is refused, with the holder and the fix in the message
    other = F.operator(f, rollout_id="release/run-2")
    other.hook = F.scripted_hook()
    with pytest.raises(RolloutLockedError) as err:
        run_task(other, make_context())
    message = str(err.value)
    assert "locked by rollout release/run-1" in message and "refusing to start rollout release/run-2" in message
    assert "Fix:" in message
    assert other.hook.actions == []  # refused before any write

    # the same rollout id resumes where the canary stopped: no instance replaced twice
    rest = F.operator(f, rollout_id="release/run-1")
    rest.hook = F.scripted_hook()
    result = run_task(rest, make_context()).result
    assert result["outcome"] == "forward" and result["resumed"] is True
    assert result["replaced"] == 2
    assert not set(F.terminations(canary.hook)) & set(F.terminations(rest.hook))
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)


def test_lock_refuses_while_an_instance_refresh_runs(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f)
    op.hook = F.scripted_hook()
    op.hook.instance_refreshes = lambda name: [
        {"InstanceRefreshId": "ir-123", "Status": "InProgress", "PercentageComplete": 40}
    ]
    with pytest.raises(RolloutLockedError, match="instance refresh .*ir-123.* in progress"):
        run_task(op, make_context())
    assert op.hook.actions == []


def test_missing_instance_refresh_api_counts_as_none_and_is_logged_once(sandbox_clean, capsys):
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, dry_run=True)
    assert op.hook.active_instance_refresh(f.asg) is None
    assert op.hook.active_instance_refresh(f.asg) is None
    assert capsys.readouterr().out.count("treating it as no instance refresh in progress") == 1


def test_nothing_to_do_when_already_on_target(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, target_launch_template_version=1)
    op.hook = F.scripted_hook()
    result = run_task(op, make_context()).result
    assert result["outcome"] == "forward" and result["replaced"] == 0
    assert not F.terminations(op.hook)
    F.assert_converged(sandbox_clean, f, f.old_ami, 4)


def test_bad_targets_name_the_field_and_the_fix(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    with pytest.raises(ValueError, match="target_image_id / target_launch_template_version: neither is set"):
        AsgRecycleOperator(task_id="t", asg_name=f.asg)
    op = F.operator(f, target_launch_template_version=None, target_image_id="ami-00000000000000000")
    with pytest.raises(ValueError, match="no version of launch template web-lt .* launches ami-0+. Fix: apply first"):
        run_task(op, make_context())
    op = F.operator(f, target_launch_template_version=2, target_image_id=f.old_ami)
    with pytest.raises(ValueError, match="disagree"):
        run_task(op, make_context())
    op = F.operator(f, policy={"batch_sise": 2})
    with pytest.raises(ValueError, match="policy: unknown rollout policy field.*batch_sise"):
        run_task(op, make_context())


def test_rollout_id_is_derived_from_dag_and_run():
    assert derive_rollout_id("fleet_rollout_web", "manual__2026-11-30T03:00:00+00:00") == (
        "fleet_rollout_web/manual__2026-11-30T03:00:00+00:00"
    )
    assert derive_rollout_id("d", "scheduled__x#y") == "d/scheduled__x-y"
    long = derive_rollout_id("d" * 150, "r" * 150)
    assert len(long) <= 200 and long != derive_rollout_id("d" * 150, "r" * 149 + "s")


def test_template_fields():
    op = AsgRecycleOperator(task_id="t", asg_name="web", target_image_id="ami-1")
    assert set(op.template_fields) >= {
        "asg_name", "target_image_id", "target_launch_template_version", "target_label", "role", "policy",
        "rollout_id", "dry_run", "max_batches", "aws_conn_id", "region_name",
    }
    assert op.aws_conn_id == "aws_default" and op.region_name is None and op.deferrable is True


def test_role_policy_comes_from_the_fleet_config():
    op = AsgRecycleOperator(task_id="t", asg_name="worker-a", target_image_id="ami-1", role="worker",
                            policy={"warmup_seconds": 5})
    policy = op.resolved_policy
    assert policy.strategy == "replace" and policy.batch_size == 1 and policy.warmup_seconds == 5
    op = AsgRecycleOperator(task_id="t", asg_name="web-a", target_image_id="ami-1", role="web",
                            policy='{"batch_size": 3}')
    assert op.resolved_policy.batch_size == 3 and op.resolved_policy.batch_percent is None


def _timed_calls(hook):
    """(time.monotonic(), operation) of every call the hook's sync clients send from now on."""
    import time

    from phoenix_fleet.hooks.asg_hook import SERVICES

    seen: list[tuple[float, str]] = []
    for service in SERVICES:
        hook.client(service).meta.events.register(
            "before-call", lambda model=None, **_: seen.append((time.monotonic(), model.name)))
    return seen


def _between(calls: list[str], first: str, then: str, start: int = 0) -> list[str]:
    """The calls after the first ``first`` (from ``start``) up to the next ``then``."""
    i = calls.index(first, start)
    return calls[i + 1: calls.index(then, i + 1)]


WRITES = ("CreateOrUpdateTags", "DeleteTags", "UpdateAutoScalingGroup", "SuspendProcesses", "ResumeProcesses",
          "TerminateInstanceInAutoScalingGroup", "SetDesiredCapacity")


def test_the_start_and_the_end_make_no_observation_a_write_did_not_need(sandbox_clean):
    """bench/rollout (issue 13): the first observation is made inside the lock's settle (reads only: nothing is
    written before the read-back confirms the lock), and a write that moves no capacity (pointing the group,
    suspending processes, restoring sizes and processes) is not followed by a fresh observation: the loop plans
    the next step on the view it had, with that write's effect applied."""
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, lock_settle_seconds=0.3)
    op.hook = F.scripted_hook()
    timed = _timed_calls(op.hook)
    result = run_task(op, make_context()).result
    assert result["outcome"] == "forward"
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    calls = [name for _, name in timed]
    lock = calls.index("CreateOrUpdateTags")
    first_write = next(i for i in range(lock + 1, len(calls)) if calls[i] in WRITES)
    settle = calls[lock + 1: first_write]
    # inside the settle: the lifecycle hooks and a whole observation, then the read-back, then the first write
    assert "DescribeLifecycleHooks" in settle and "DescribeInstanceStatus" in settle, settle
    assert settle[-1] == "DescribeAutoScalingGroups" and settle.count("DescribeAutoScalingGroups") == 2, settle
    assert timed[first_write - 1][0] - timed[lock][0] >= 0.3  # the read-back waited the whole settle
    assert calls[first_write] == "UpdateAutoScalingGroup"  # pointing the group at version 2
    # then, with no observation in between: suspend, the launch (desired re-read right before it, with the
    # record's write beside it)
    assert calls[first_write + 1] == "SuspendProcesses", calls[first_write:]
    launch = _between(calls, "SuspendProcesses", "UpdateAutoScalingGroup")
    assert sorted(launch) == ["CreateOrUpdateTags", "DescribeAutoScalingGroups"], launch
    # the end: sizes restored and processes resumed, then the end recorded and the lock released, no look between
    resume = calls.index("ResumeProcesses")
    assert calls[resume + 1:] == ["CreateOrUpdateTags", "DeleteTags", "DeleteTags"], calls[resume - 3:]


def test_a_view_carried_past_a_write_never_terminates(sandbox_clean):
    """The other side of the test above: a Terminate (the floor is judged on the view) is planned again on a
    fresh observation, never on a view carried past a write. Replace strategy: the first terminate comes right
    after suspending the processes; an observation (health) comes between them."""
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, policy={"strategy": "replace", "batch_size": 1, "min_healthy_percent": 75})
    op.hook = F.scripted_hook()
    calls = F.record_calls(op.hook)
    assert run_task(op, make_context()).result["outcome"] == "forward"
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    before = _between(calls, "SuspendProcesses", "TerminateInstanceInAutoScalingGroup")
    assert "DescribeInstanceStatus" in before and "DescribeTargetHealth" in before, before
