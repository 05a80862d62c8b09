"""Fault injection for the rolling recycle, against the sandbox (describe-count mode: nothing sleeps).

Each fault ends with the group entirely on one image, at full capacity, with its processes resumed, its rollout
tags gone and its sizes restored; healthy capacity is sampled after every write the operator makes.
"""

from __future__ import annotations

import botocore.endpoint
import pytest
from phoenix_fleet.operators.recycle_operators import SUMMARY_XCOM_KEY, RolloutFailed, RolloutLockedError

from tests.helpers.airflow_run import make_context, run_task
from tests.unit.recycle import recycle_fleet as F

pytestmark = pytest.mark.e2e


def sampled_hook(sandbox, f, **kwargs):
    samples: list[int] = []
    hook = F.scripted_hook(monitor=lambda: samples.append(F.healthy_in_service(sandbox, f)), **kwargs)
    return hook, samples


def test_new_instances_unhealthy_roll_back_to_the_previous_version(sandbox_clean):
    f = F.build_fleet(sandbox_clean, bad_new=True)  # v2's instances are unhealthy in the target group
    op = F.operator(f)
    op.hook, samples = sampled_hook(sandbox_clean, f)
    ctx = make_context()
    with pytest.raises(RolloutFailed, match="rolled back"):
        run_task(op, ctx)
    g = F.assert_converged(sandbox_clean, f, f.old_ami, 4)
    # pointed back at the previous version explicitly, never $Latest/$Default
    assert g["LaunchTemplate"]["Version"] == "1"
    versions = [args[2] for n, args, _ in op.hook.actions if n == "set_launch_template"]
    assert versions == [2, 1]
    summary = ctx["ti"].xcom[SUMMARY_XCOM_KEY]
    assert summary["outcome"] == "rolled_back" and "unhealthy in target group web-tg" in summary["reason"]
    assert summary["final_images"] == {f.old_ami: 4}
    assert min(samples) >= 4  # the old instances kept serving throughout


def test_replace_strategy_rolls_back_too(sandbox_clean):
    f = F.build_fleet(sandbox_clean, bad_new=True)
    op = F.operator(f, policy={"strategy": "replace", "batch_size": 1, "min_healthy_percent": 75})
    op.hook, samples = sampled_hook(sandbox_clean, f)
    with pytest.raises(RolloutFailed, match="rolled back"):
        run_task(op, make_context())
    F.assert_converged(sandbox_clean, f, f.old_ami, 4)
    assert min(samples) >= 3  # the floor: 75 % of 4


def test_an_alarm_firing_mid_roll_rolls_back(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    cw = sandbox_clean.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="web-5xx", MetricName="HTTPCode_Target_5XX_Count", Namespace="AWS/ApplicationELB", Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )
    cw.set_alarm_state(AlarmName="web-5xx", StateValue="OK", StateReason="quiet")

    def fire() -> None:
        cw.set_alarm_state(AlarmName="web-5xx", StateValue="ALARM", StateReason="5xx after the new image")

    op = F.operator(f, policy={"alarms": ["web-5xx"]})
    op.hook = F.scripted_hook(on_action={"set_capacity": fire})  # right after the first launch
    ctx = make_context()
    with pytest.raises(RolloutFailed, match=r"rolled back: .*\(alarm web-5xx in ALARM\)"):
        run_task(op, ctx)
    F.assert_converged(sandbox_clean, f, f.old_ami, 4)  # the rollback ignores the alarm its own image caused


def test_instance_killed_from_outside_mid_roll(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    ec2 = sandbox_clean.client("ec2")
    killed: list[str] = []

    def kill_one_old_and_one_new() -> None:
        images = F.fleet_images(sandbox_clean)
        old = sorted(i for i, a in images.items() if a == f.old_ami)
        new = sorted(i for i, a in images.items() if a == f.new_ami)
        killed.extend([old[0], new[0]])
        ec2.terminate_instances(InstanceIds=killed)

    op = F.operator(f)
    # right after the first launch
    op.hook, samples = sampled_hook(sandbox_clean, f, on_action={"set_capacity": kill_one_old_and_one_new})
    result = run_task(op, make_context()).result
    assert len(killed) == 2
    assert result["outcome"] == "forward"
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    assert not set(killed) & set(F.fleet_images(sandbox_clean))
    assert not set(killed) & set(F.terminations(op.hook))  # never asked to terminate what was already gone


@pytest.mark.parametrize(("new_desired", "end"), [(8, 6), (3, 3)])
def test_desired_capacity_changed_mid_roll(sandbox_clean, new_desired, end):
    f = F.build_fleet(sandbox_clean)
    autoscaling = sandbox_clean.client("autoscaling")

    def autoscaler() -> None:  # a scaling policy moves desired (and max, to make room) mid-roll
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=f.asg, DesiredCapacity=new_desired, MaxSize=max(6, new_desired)
        )

    op = F.operator(f)
    # right after our first launch (desired 4 -> 6: a surge of 2 in flight)
    op.hook, samples = sampled_hook(sandbox_clean, f, on_action={"set_capacity": autoscaler})
    result = run_task(op, make_context()).result
    assert result["outcome"] == "forward"
    # adopted as the baseline, never fought: a scale-out counts our surge of 2 (8 -> 6), a scale-in is kept as
    # set; min/max back to the originals, widened to hold it
    F.assert_converged(sandbox_clean, f, f.new_ami, end, max_size=max(5, end))
    assert result["capacity"]["desired"] == end
    assert result["outside_changes"] == [f"outside change: desired 6 -> {new_desired} adopted (baseline 4 -> {end})"]


def test_desired_raised_between_the_observation_and_the_write_is_adopted(sandbox_clean):
    """Issue 13 items 2 and 3: desired raised 4 -> 6 from outside just before the first surge launch, after the
    observation that planned it. The operator re-reads desired right before the capacity write, writes nothing
    (its Launch would have written 6 over it, and 6 then looked like its own surge: the rollout ended at 4),
    adopts 6 as the baseline and ends there."""
    f = F.build_fleet(sandbox_clean, max_size=10)
    autoscaling = sandbox_clean.client("autoscaling")
    state = {"fired": False}

    def raise_desired() -> None:
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=f.asg, DesiredCapacity=6)

    op = F.operator(f)
    op.hook, samples = sampled_hook(sandbox_clean, f)
    reread = op.hook.desired_capacity

    def race_then_reread(*args, **kwargs):
        # the first launch is planned (on the view the loop has: observed, or carried past the writes that
        # moved no capacity), and its write is next: desired moves now, from outside
        if not state["fired"]:
            state["fired"] = True
            raise_desired()
        return reread(*args, **kwargs)

    op.hook.desired_capacity = race_then_reread
    result = run_task(op, make_context()).result
    assert state["fired"] and result["outcome"] == "forward"
    assert result["outside_changes"] == ["outside change: desired 4 -> 6 adopted (baseline 4 -> 6)"]
    F.assert_converged(sandbox_clean, f, f.new_ami, 6, max_size=10)
    # our launches went on top of 6, never wrote 6 over it
    launches = [kw["desired"] for n, _, kw in op.hook.actions if n == "set_capacity" and kw.get("desired")]
    assert launches and launches[0] == 8, launches
    assert min(samples) >= 4


def test_throttling_is_retried_with_backoff(sandbox_clean, monkeypatch):
    f = F.build_fleet(sandbox_clean)
    recorder = F.SleepRecorder()
    monkeypatch.setattr(botocore.endpoint, "time", recorder)  # botocore's retry sleeps, recorded not slept
    op = F.operator(f, deferrable=False)
    op.hook = F.scripted_hook()
    throttled = F.inject_throttling(
        op.hook,
        {
            ("autoscaling", "DescribeAutoScalingGroups"): 3,
            ("ec2", "DescribeInstanceStatus"): 2,
            ("elbv2", "DescribeTargetHealth"): 2,
            ("autoscaling", "TerminateInstanceInAutoScalingGroup"): 2,
            ("autoscaling", "UpdateAutoScalingGroup"): 1,
        },
    )
    result = run_task(op, make_context()).result
    assert result["outcome"] == "forward"
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    assert len(throttled) == 10
    # each throttled call was retried after a backoff (standard mode: random * 2**attempt, capped at 20 s)
    assert len(recorder.sleeps) == 10 and all(0 <= s <= 20 for s in recorder.sleeps)
    assert sum(recorder.sleeps) > 0
    assert len(F.terminations(op.hook)) == 4  # a throttled terminate is retried by botocore, not replanned


@pytest.mark.parametrize("strategy", ["surge", "replace"])
def test_every_write_loses_its_reply_once_and_the_rollout_still_ends_whole(sandbox_clean, monkeypatch, strategy):
    """Issue 13 item 16: every write reaches AWS and is applied, then its reply is lost (a Throttling error in its
    place), so each is sent again. The retried TerminateInstanceInAutoScalingGroup of an instance already gone
    got an HTTP 500 from moto (now: AWS's ValidationError, taken as done); every other retried write is
    idempotent. The rollout ends on one image at full capacity, each old instance terminated once, never
    below the floor (healthy capacity sampled from outside after every write)."""
    f = F.build_fleet(sandbox_clean)
    monkeypatch.setattr(botocore.endpoint, "time", F.SleepRecorder())  # botocore's retry sleeps, not slept
    policy = {"strategy": "replace", "batch_size": 1, "min_healthy_percent": 75} if strategy == "replace" else {}
    op = F.operator(f, policy=policy)
    op.hook, samples = sampled_hook(sandbox_clean, f)
    lost = F.lose_replies(op.hook)
    result = run_task(op, make_context()).result
    assert result["outcome"] == "forward"
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    assert lost.count("TerminateInstanceInAutoScalingGroup") == 4 and "CreateOrUpdateTags" in lost
    assert "UpdateAutoScalingGroup" in lost and "DeleteTags" in lost
    done = F.terminations(op.hook)
    assert len(done) == len(set(done)) == 4
    assert min(samples) >= (3 if strategy == "replace" else 4)


@pytest.mark.parametrize(
    "kill_at",
    [
        ("terminate_instance", 1),  # between the two terminations of a batch
        ("set_capacity", 1),  # just before the second launch
        ("set_launch_template", 0),  # right after the record (the lock) was written
        ("resume_processes", 0),  # during the final restore
        ("delete_tags", 0),  # fleet converged, tags still there
    ],
)
def test_worker_killed_then_retried_completes_without_extra_terminations(sandbox_clean, kill_at):
    f = F.build_fleet(sandbox_clean)
    name, nth = kill_at
    first = F.operator(f, rollout_id="rel/run-7")
    first.hook = F.scripted_hook(kill_before=lambda n, actions: n == name and F.count_of(actions, n) == nth)
    with pytest.raises(F.WorkerKilled):
        run_task(first, make_context())
    # a new worker: a fresh operator (and hook) with the same rollout id, e.g. the task's retry
    retry = F.operator(f, rollout_id="rel/run-7")
    retry.hook = F.scripted_hook()
    result = run_task(retry, make_context()).result
    assert result["outcome"] == "forward" and result["resumed"] is True
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    done = F.terminations(first.hook) + F.terminations(retry.hook)
    assert len(done) == len(set(done)) == 4, done  # each old instance terminated once, nothing else


def test_a_crash_right_after_the_lock_is_released_never_rolls_forward_again(sandbox_clean):
    """Issue 13 item 7: the record (the lock) used to be deleted before the summary and the RolloutFailed of a
    rollback; a crash in between restarted the task with no record, and it rolled forward again onto the
    known-bad version. The end is recorded first (XCom, then ``phoenix:rollout-ended``), and the same rollout,
    run again, ends the same way without touching the group."""
    f = F.build_fleet(sandbox_clean, bad_new=True)
    first = F.operator(f, rollout_id="rel/run-5")
    first.hook = F.scripted_hook()

    def crash_once_unlocked() -> None:
        name, args, _ = first.hook.actions[-1]
        if name == "delete_tags" and "phoenix:rollout:id" in args[1]:
            raise F.WorkerKilled("killed right after the lock was released")

    first.hook.monitor = crash_once_unlocked
    ctx = make_context()
    with pytest.raises(F.WorkerKilled):
        run_task(first, ctx)
    assert ctx["ti"].xcom[SUMMARY_XCOM_KEY]["outcome"] == "rolled_back"  # recorded before the lock went
    before = F.group(sandbox_clean)
    retry = F.operator(f, rollout_id="rel/run-5")
    retry.hook = F.scripted_hook()
    with pytest.raises(RolloutFailed, match=r"rollout rel/run-5 already ended on this group \(rolled_back\)"):
        run_task(retry, make_context())
    assert retry.hook.actions == [] and F.group(sandbox_clean) == before
    assert set(F.fleet_images(sandbox_clean).values()) == {f.old_ami}
    # another rollout (a new run) is not bound by it
    nxt = F.operator(f, target_launch_template_version=1, rollout_id="rel/run-6")
    assert run_task(nxt, make_context()).result["outcome"] == "forward"


def test_two_operators_racing_for_one_group_exactly_one_acts(sandbox_clean):
    """Issue 13 item 8: two starters that both saw no record could both pass the read-back (it compared only the
    id, right after their own write), and the loser's record keys (here a renewal's replace-before) merged into
    the winner's. Now: the whole record with a unique token, read back after a settle, every key compared; the
    winner removes the loser's keys. A renewal (A) and a rollout to v2 (B) both look, then A writes, then B."""
    import threading
    import time

    f = F.build_fleet(sandbox_clean)
    looked = threading.Barrier(2, timeout=60)
    a_wrote = threading.Event()
    ops = {
        "A": F.operator(f, rollout_id="renew/run-1", target_launch_template_version=None, max_age_days=1,
                        deferrable=False, lock_settle_seconds=0.5),
        "B": F.operator(f, rollout_id="release/run-1", deferrable=False, lock_settle_seconds=0.5),
    }
    seen_by_b: list[dict[str, str]] = []

    def first_lock_write(who: str):
        def hold(name, actions):
            if name == "put_tags" and not actions:  # both have looked (no record), neither has written
                looked.wait()
                if who == "B":
                    a_wrote.wait(timeout=30)
                    time.sleep(0.2)  # B's write lands after A's, inside A's settle
            return None
        return hold

    def after_a_write():
        a_wrote.set()

    ops["A"].hook = F.scripted_hook(kill_before=first_lock_write("A"), on_action={1: after_a_write})
    ops["B"].hook = F.scripted_hook(
        kill_before=first_lock_write("B"),
        on_action={"set_launch_template": lambda: seen_by_b.append(
            {t["Key"]: t["Value"] for t in F.group(sandbox_clean)["Tags"]})},
    )
    results: dict[str, object] = {}

    def run(who: str) -> None:
        try:
            results[who] = run_task(ops[who], make_context(run_id=who)).result
        except BaseException as exc:  # noqa: BLE001 - the outcome is asserted below
            results[who] = exc

    threads = [threading.Thread(target=run, args=(w,)) for w in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    acted = [w for w, r in results.items() if isinstance(r, dict) and r.get("outcome") == "forward"]
    refused = [w for w, r in results.items() if isinstance(r, RolloutLockedError)]
    assert (acted, refused) == (["B"], ["A"]), results
    # A wrote its record once (the lock attempt) and nothing else; B's record never carried A's keys
    assert [n for n, _, _ in ops["A"].hook.actions] == ["put_tags"]
    assert seen_by_b and "phoenix:rollout:replace-before" not in seen_by_b[0]
    assert seen_by_b[0]["phoenix:rollout:id"] == "release/run-1"
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)


def test_second_rollout_on_the_same_group_is_refused(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    first = F.operator(f, rollout_id="rel/run-1")
    first.hook = F.scripted_hook(kill_before=lambda n, actions: n == "terminate_instance")
    with pytest.raises(F.WorkerKilled):
        run_task(first, make_context())  # dies mid-roll, holding the lock
    before = F.group(sandbox_clean)
    second = F.operator(f, target_launch_template_version=1, rollout_id="rel/run-2")
    second.hook = F.scripted_hook()
    with pytest.raises(RolloutLockedError, match=r"web is locked by rollout rel/run-1 \(phase forward"):
        run_task(second, make_context())
    assert second.hook.actions == [] and F.group(sandbox_clean) == before
    resumed = F.operator(f, rollout_id="rel/run-1")
    assert run_task(resumed, make_context()).result["outcome"] == "forward"
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)


def test_on_failure_halt_restores_capacity_and_keeps_the_lock(sandbox_clean):
    f = F.build_fleet(sandbox_clean, bad_new=True)
    op = F.operator(f, policy={"on_failure": "halt"})
    op.hook = F.scripted_hook()
    with pytest.raises(RolloutFailed, match=r"failed \(halted\).*unhealthy in target group web-tg"):
        run_task(op, make_context())
    g = F.group(sandbox_clean)
    # the unhealthy surplus is drained, capacity and processes restored; the tags stay (phase failed)
    assert g["DesiredCapacity"] == 4 and g["MaxSize"] == 5 and g["SuspendedProcesses"] == []
    tags = {t["Key"]: t["Value"] for t in g["Tags"]}
    assert tags["phoenix:rollout:phase"] == "failed"
    assert sorted(F.fleet_images(sandbox_clean).values()) == [f.old_ami] * 4


def _aws_error():
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "InternalFailure", "Message": "AWS had a bad day"}},
                       "TerminateInstanceInAutoScalingGroup")


def test_an_error_on_the_last_try_halts_safely(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, retries=0)  # this try is the last one
    op.hook = F.scripted_hook(
        kill_before=lambda n, actions: _aws_error() if n == "terminate_instance" and F.count_of(actions, n) == 1 else None
    )
    with pytest.raises(Exception, match="AWS had a bad day"):
        run_task(op, make_context())
    g = F.group(sandbox_clean)
    # unhealthy surplus drained, capacity and processes restored, the lock kept (phase failed) for a human
    assert g["DesiredCapacity"] == 4 and g["MaxSize"] == 5 and g["MinSize"] == 1 and g["SuspendedProcesses"] == []
    tags = {t["Key"]: t["Value"] for t in g["Tags"]}
    assert tags["phoenix:rollout:phase"] == "failed" and "AWS had a bad day" in tags["phoenix:rollout:reason"]
    assert len(F.fleet_images(sandbox_clean)) == 4


def test_an_execution_timeout_mid_rollout_still_restores_capacity_and_processes(sandbox_clean):
    """Issue 13 item 12: AirflowTaskTimeout (execution_timeout's SIGALRM) is a BaseException: it skipped the safe
    halt and left the group surged, with its processes suspended. Now the timeout halts safely (phase failed,
    surplus drained, capacity and processes restored), then the timeout goes on up."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, retries=2, deferrable=False)  # retries left: a timeout halts anyway (its budget is spent)
    op.hook = F.scripted_hook(
        kill_before=lambda n, actions: AirflowTaskTimeout("Timeout") if n == "terminate_instance" else None
    )
    with pytest.raises(AirflowTaskTimeout):
        run_task(op, make_context())
    g = F.group(sandbox_clean)
    assert g["DesiredCapacity"] == 4 and g["MaxSize"] == 5 and g["MinSize"] == 1 and g["SuspendedProcesses"] == []
    tags = {t["Key"]: t["Value"] for t in g["Tags"]}
    assert tags["phoenix:rollout:phase"] == "failed" and "timed out" in tags["phoenix:rollout:reason"]
    assert len(F.fleet_images(sandbox_clean)) == 4


def test_a_wait_timed_out_in_the_triggerer_still_restores_capacity_and_processes(sandbox_clean):
    """Issue 13 item 12: a trigger timeout fails the task in resume_execution, before any method of ours runs."""
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
    from airflow.sdk.exceptions import TaskDeferralTimeout

    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, rollout_id="rel/run-3")  # dies before its first termination: surged, processes suspended
    op.hook = F.scripted_hook(kill_before=lambda n, actions: n == "terminate_instance")
    with pytest.raises(F.WorkerKilled):
        run_task(op, make_context())
    assert F.group(sandbox_clean)["DesiredCapacity"] == 6
    late = F.operator(f, rollout_id="rel/run-3")
    with pytest.raises(TaskDeferralTimeout):
        late.resume_execution(TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, make_context())
    g = F.group(sandbox_clean)
    assert g["DesiredCapacity"] == 4 and g["MaxSize"] == 5 and g["SuspendedProcesses"] == []
    assert {t["Key"]: t["Value"] for t in g["Tags"]}["phoenix:rollout:phase"] == "failed"


def test_an_error_with_retries_left_leaves_the_rollout_to_the_retry(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    op = F.operator(f, retries=2, rollout_id="rel/run-9")
    op.hook = F.scripted_hook(
        kill_before=lambda n, actions: _aws_error() if n == "terminate_instance" and F.count_of(actions, n) == 1 else None
    )
    with pytest.raises(Exception, match="AWS had a bad day"):
        run_task(op, make_context())
    tags = {t["Key"]: t["Value"] for t in F.group(sandbox_clean)["Tags"]}
    assert tags["phoenix:rollout:phase"] == "forward"  # untouched: the retry resumes
    retry = F.operator(f, rollout_id="rel/run-9")
    retry.hook = F.scripted_hook()
    assert run_task(retry, make_context()).result["outcome"] == "forward"
    F.assert_converged(sandbox_clean, f, f.new_ami, 4)
    done = F.terminations(op.hook) + F.terminations(retry.hook)
    assert len(done) == len(set(done)) == 4


WIRING_DAG = """
import datetime as dt

from airflow.sdk import DAG
from phoenix_fleet.operators.recycle_operators import AsgRecycleOperator
from phoenix_fleet.sensors.asg_sensors import AsgHealthySensor

FAST = {{"min_poll_interval": 0.01, "poll_interval": 0.05, "region_name": "{region}"}}
POLICY = {{"warmup_seconds": 0, "batch_size": 2, "max_surge": 2}}

with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2026, 11, 1), catchup=False) as dag:
    canary = AsgRecycleOperator(
        task_id="canary", asg_name="web", target_launch_template_version=2, max_batches=1, policy=POLICY,
        inline_wait_seconds=0, **FAST,
    )
    recycle = AsgRecycleOperator.partial(
        task_id="recycle", target_label="{{{{ dag_run.conf.get('version', 'unknown') }}}}", policy=POLICY,
        inline_wait_seconds=0, max_active_tis_per_dagrun=2, **FAST,
    ).expand_kwargs([
        {{"asg_name": "web", "target_image_id": "{web_ami}"}},
        {{"asg_name": "api", "target_launch_template_version": "2"}},
    ])
    gate = AsgHealthySensor.partial(task_id="gate", policy={{"warmup_seconds": 0}}, timeout=60, **FAST).expand_kwargs(
        [{{"asg_name": "web", "image_id": "{web_ami}"}}, {{"asg_name": "api", "image_id": "{api_ami}"}}]
    )
    canary >> recycle >> gate
"""


def test_canary_then_mapped_recycle_then_health_gate_with_dag_test(airflow_db, sandbox_clean, tmp_path, monkeypatch):
    """The wiring a DAG author uses, run by Airflow itself (dag.test: real templating, XComs, deferrals and
    resumes with the event payload): a canary batch on the first group, the mapped recycle of every group
    (resuming the canary's rollout through the shared rollout id), then the mapped health gate."""
    import importlib.util
    import json
    import uuid

    web = F.build_fleet(sandbox_clean, asg="web")
    api = F.build_fleet(sandbox_clean, asg="api")
    dag_id = f"recycle_wiring_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "dags"
    folder.mkdir()
    path = folder / f"{dag_id}.py"
    path.write_text(WIRING_DAG.format(dag_id=dag_id, region=F.REGION, web_ami=web.new_ami, api_ami=api.new_ami))
    monkeypatch.setenv(  # dag.test() serializes the DAG from a bundle: give this file one of its own
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        json.dumps([{"name": "phoenix-recycle-test", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                     "kwargs": {"path": str(folder), "refresh_interval": 0}}]),
    )
    spec = importlib.util.spec_from_file_location(dag_id, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        run = module.dag.test(run_conf={"version": "2026.11.30-1"})
        tis = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}
        assert run.state == "success", {k: ti.state for k, ti in tis.items()}
        canary = tis[("canary", -1)].xcom_pull(task_ids="canary")
        assert canary["outcome"] == "canary" and canary["replaced"] == 2
        results = tis[("recycle", 0)].xcom_pull(task_ids="recycle")
        by_asg = {r["asg"]: r for r in results}
        assert by_asg["web"]["resumed"] is True and by_asg["web"]["replaced"] == 2  # the canary did the first 2
        assert by_asg["api"]["resumed"] is False and by_asg["api"]["replaced"] == 4
        assert by_asg["web"]["rollout_id"] == by_asg["api"]["rollout_id"] == f"{dag_id}/{run.run_id}"
        assert by_asg["web"]["defers"] >= 1  # resumed from the trigger's event payload, as Airflow does it
        F.assert_converged(sandbox_clean, web, web.new_ami, 4)
        F.assert_converged(sandbox_clean, api, api.new_ami, 4)
    finally:
        from airflow.api.common.delete_dag import delete_dag
        from airflow.exceptions import DagNotFound

        try:
            delete_dag(dag_id)
        except DagNotFound:
            pass
