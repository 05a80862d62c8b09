"""AsgHook: the batched observation (call budget, lifecycle states, status checks), retries, and the sync and
async (aiobotocore) paths agreeing on the sandbox."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import recycle_fleet as F
from botocore.config import Config
from botocore.exceptions import ClientError
from phoenix_fleet.hooks.asg_hook import (
    AsgHook,
    Call,
    fleet_state_from,
    observation_calls,
    worst_status,
)
from phoenix_fleet.rollout import (
    Halt,
    Lifecycle,
    Policy,
    RolloutRecord,
    Wait,
    WaitFor,
    health_problems,
    is_healthy,
    plan,
)

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
TG1 = "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/web/1"
TG2 = "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/web-admin/2"


def group(members, desired=None, tgs=(TG1,), tags=()):
    return {
        "AutoScalingGroupName": "web",
        "DesiredCapacity": desired if desired is not None else len(members),
        "MinSize": 1,
        "MaxSize": 10,
        "Instances": [
            {"InstanceId": iid, "AvailabilityZone": "us-east-1a", "LifecycleState": life, "HealthStatus": "Healthy",
             "ProtectedFromScaleIn": False}
            for iid, life in members
        ],
        "TargetGroupARNs": list(tgs),
        "HealthCheckType": "ELB",
        "SuspendedProcesses": [],
        "LaunchTemplate": {"LaunchTemplateId": "lt-0abc", "Version": "7"},
        "Tags": list(tags),
    }


def ok_status(iid, state="running", inst="ok", system="ok"):
    return {"InstanceId": iid, "InstanceState": {"Name": state}, "InstanceStatus": {"Status": inst},
            "SystemStatus": {"Status": system}}


def drive(gen, answer):
    """Run an observation generator, answering each call with ``answer(call)``; returns (obs, calls)."""
    seen: list[Call] = []
    try:
        batch = next(gen)
        while True:
            seen += batch
            batch = gen.send([answer(c) for c in batch])
    except StopIteration as stop:
        return stop.value, seen


def test_pending_wait_and_terminating_wait_are_not_in_service():
    members = [("i-1", "InService"), ("i-2", "Pending:Wait"), ("i-3", "Terminating:Wait"), ("i-4", "Pending")]
    g = group(members, desired=3)
    ec2 = {iid: ("ami-new", NOW - timedelta(hours=1)) for iid, _ in members}
    statuses = {iid: "ok" for iid, _ in members}
    th = {TG1: {iid: "healthy" for iid, _ in members}}  # even a healthy target does not make it InService
    state = fleet_state_from(g, ec2, statuses, th, (), "ami-new", NOW)
    by_id = state.by_id()
    assert by_id["i-1"].in_service and not by_id["i-2"].in_service and not by_id["i-4"].in_service
    assert by_id["i-2"].pending and by_id["i-3"].terminating
    policy = Policy(warmup_seconds=0)
    assert is_healthy(by_id["i-1"], state, policy)
    assert health_problems(by_id["i-2"], state, policy) == ["lifecycle Pending:Wait"]
    assert [i.instance_id for i in state.live] == ["i-1", "i-2", "i-4"]


def test_a_lifecycle_hook_holds_the_rollout():
    """Observed through a stubbed DescribeAutoScalingGroups: an instance in Pending:Wait is waited for."""
    g = group([("i-1", "InService"), ("i-2", "InService"), ("i-3", "Pending:Wait")], desired=3)
    g["SuspendedProcesses"] = [{"ProcessName": p} for p in ("AZRebalance", "AlarmNotification", "ScheduledActions")]
    launched = NOW - timedelta(minutes=5)

    def answer(call):
        if call.method == "describe_auto_scaling_groups":
            return {"AutoScalingGroups": [g]}
        if call.method == "describe_instances":
            images = {"i-1": "ami-old", "i-2": "ami-old", "i-3": "ami-new"}
            return {"Reservations": [{"Instances": [
                {"InstanceId": i, "ImageId": images[i], "LaunchTime": launched}
                for i in call.params["Filters"][0]["Values"]]}]}
        if call.method == "describe_instance_status":
            return {"InstanceStatuses": [ok_status(i) for i in call.params["InstanceIds"]]}
        if call.method == "describe_target_health":
            return {"TargetHealthDescriptions": [{"Target": {"Id": i}, "TargetHealth": {"State": "healthy"}}
                                                 for i in ("i-1", "i-2", "i-3")]}
        if call.method == "describe_launch_template_versions":
            return {"LaunchTemplateVersions": [{"VersionNumber": 7, "LaunchTemplateData": {"ImageId": "ami-new"}}]}
        raise AssertionError(call)

    policy = Policy(warmup_seconds=0, batch_size=1)
    obs, _ = drive(observation_calls("web", policy, now=lambda: NOW), answer)
    assert obs.launch_template.number == 7 and obs.state.launch_image_id == "ami-new"
    record = RolloutRecord.begin("r", obs.state, policy, target_image="ami-new", previous_image="ami-old")
    action = plan(obs.state, record, policy)
    assert isinstance(action, Wait) and action.condition == WaitFor.HEALTHY
    assert "lifecycle Pending:Wait" in action.reason and action.instance_ids == ("i-3",)


def test_a_health_poll_costs_one_plus_n_over_100_plus_target_groups():
    n = 250
    ids = [f"i-{k:05x}" for k in range(n)]
    g = group([(i, "InService") for i in ids], tgs=(TG1, TG2))
    known = {i: ("ami-new", NOW) for i in ids}
    policy = Policy(warmup_seconds=0)

    def answer(call):
        if call.method == "describe_auto_scaling_groups":
            return {"AutoScalingGroups": [g]}
        if call.method == "describe_instance_status":
            assert len(call.params["InstanceIds"]) <= 100
            return {"InstanceStatuses": [ok_status(i) for i in call.params["InstanceIds"]]}
        if call.method == "describe_target_health":
            return {"TargetHealthDescriptions": [{"Target": {"Id": i}, "TargetHealth": {"State": "healthy"}} for i in ids]}
        if call.method == "describe_alarms":
            return {"MetricAlarms": [{"AlarmName": "web-5xx", "StateValue": "ALARM"}], "CompositeAlarms": []}
        if call.method == "describe_instances":
            return {"Reservations": [{"Instances": [
                {"InstanceId": i, "ImageId": "ami-new", "LaunchTime": NOW} for i in call.params["Filters"][0]["Values"]]}]}
        raise AssertionError(call)

    obs, calls = drive(observation_calls("web", policy, known=known, resolve_launch_template=False, now=lambda: NOW), answer)
    assert obs.calls == len(calls) == 1 + math.ceil(n / 100) + 2
    assert len(obs.state.instances) == n and all(i.status == "ok" for i in obs.state.instances)
    # alarms add one call; instances never seen before add ceil(N/200) DescribeInstances, once
    alarmed = Policy(warmup_seconds=0, alarms=("web-5xx",))
    obs, calls = drive(observation_calls("web", alarmed, resolve_launch_template=False, now=lambda: NOW), answer)
    assert obs.calls == 1 + math.ceil(n / 200) + math.ceil(n / 100) + 2 + 1
    assert obs.state.alarms_in_alarm == {"web-5xx"}
    # signals the policy does not count are not observed
    lean = Policy(warmup_seconds=0, health_signals=frozenset({"asg"}))
    obs, calls = drive(observation_calls("web", lean, known=known, resolve_launch_template=False, now=lambda: NOW), answer)
    assert [c.method for c in calls] == ["describe_auto_scaling_groups"]


def test_worst_status_check():
    assert worst_status(ok_status("i")) == "ok"
    assert worst_status(ok_status("i", inst="initializing")) == "initializing"
    assert worst_status(ok_status("i", system="impaired", inst="initializing")) == "impaired"
    assert worst_status(ok_status("i", inst="insufficient-data")) == "insufficient-data"
    assert worst_status(None) is None


def test_a_member_ec2_does_not_describe_is_left_out():
    g = group([("i-1", "InService"), ("i-2", "InService")])
    state = fleet_state_from(g, {"i-1": ("ami", NOW)}, None, {}, (), None, NOW)
    assert [i.instance_id for i in state.instances] == ["i-1"] and state.desired == 2  # -> the planner waits


def test_retries_default_to_standard_and_respect_the_connection(sandbox_clean):
    cfg = AsgHook(aws_conn_id="aws_default")._get_config()
    assert cfg.retries == {"mode": "standard", "max_attempts": 10}
    cfg = AsgHook(aws_conn_id="aws_default", config={"retries": {"mode": "adaptive", "max_attempts": 5}})._get_config()
    assert cfg.retries == {"mode": "adaptive", "max_attempts": 5}


def test_the_hooks_clients_share_one_botocore_config_built_once(sandbox_clean, monkeypatch):
    """The provider builds a config's user agent from ``inspect.stack()`` (source lines of every frame: ~0.1-0.2 s
    of CPU in a task process); the hook's clients of every service share the one it built."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    built = []
    real = AwsGenericHook._generate_user_agent_extra_field
    monkeypatch.setattr(AwsGenericHook, "_generate_user_agent_extra_field",
                        lambda self, existing_user_agent_extra: built.append(1) or real(self, existing_user_agent_extra))
    hook = AsgHook(aws_conn_id="aws_default", region_name="us-east-1")
    clients = [hook.client(s) for s in ("autoscaling", "ec2", "elbv2", "cloudwatch")]
    assert len(built) == 1
    assert {c.meta.config.retries["mode"] for c in clients} == {"standard"}
    assert all("Airflow/" in c.meta.config.user_agent_extra for c in clients)
    assert hook._get_config() is hook._get_config()
    explicit = hook._get_config(Config(retries={"mode": "adaptive", "max_attempts": 2}))  # an explicit one: its own
    assert explicit.retries == {"mode": "adaptive", "max_attempts": 2} and len(built) == 2


def test_status_of_a_vanished_instance_is_dropped_not_fatal():
    class FakeEc2:
        def describe_instance_status(self, **params):
            if "i-0dead00000000beef" in params["InstanceIds"]:
                raise ClientError(
                    {"Error": {"Code": "InvalidInstanceID.NotFound", "Message": "The instance ID 'i-0dead00000000beef' does not exist"}},
                    "DescribeInstanceStatus",
                )
            return {"InstanceStatuses": [ok_status(i) for i in params["InstanceIds"]]}

    hook = AsgHook(aws_conn_id=None)
    call = Call("ec2", "describe_instance_status", {"InstanceIds": ["i-1", "i-0dead00000000beef"], "IncludeAllInstances": True},
                tolerate=("InvalidInstanceID.NotFound",))
    resp = hook._invoke(call, {"ec2": FakeEc2()})
    assert [s["InstanceId"] for s in resp.partial["InstanceStatuses"]] == ["i-1"]
    assert resp.code == "InvalidInstanceID.NotFound"


def _answers(ids, *, status_error=None, tg_error=None, alarm_pages=None):
    g = group([(i, "InService") for i in ids], tgs=(TG1,))
    pages = list(alarm_pages or [])

    def answer(call):
        if call.method == "describe_auto_scaling_groups":
            return {"AutoScalingGroups": [g]}
        if call.method == "describe_instances":
            return {"Reservations": [{"Instances": [
                {"InstanceId": i, "ImageId": "ami-old", "LaunchTime": NOW - timedelta(hours=1)}
                for i in call.params["Filters"][0]["Values"]]}]}
        if call.method == "describe_instance_status":
            if status_error:
                return status_error
            return {"InstanceStatuses": [ok_status(i) for i in call.params["InstanceIds"]]}
        if call.method == "describe_target_health":
            if tg_error:
                return tg_error
            return {"TargetHealthDescriptions": [{"Target": {"Id": i}, "TargetHealth": {"State": "healthy"}} for i in ids]}
        if call.method == "describe_alarms":
            return pages.pop(0)
        raise AssertionError(call)

    return answer


def test_tolerated_errors_make_health_unknown_and_are_named():
    """Issue 13 item 1: DescribeInstanceStatus NotFound for a whole chunk and TargetGroupNotFound used to make
    every instance look unhealthy (status None, "not registered"): free victims. They are unknown now, and
    the observation names the error, so that a halt can name it."""
    from phoenix_fleet.hooks.asg_hook import Tolerated
    from phoenix_fleet.rollout import unknown_ids

    ids = ["i-1", "i-2", "i-3", "i-4"]
    policy = Policy(warmup_seconds=0, strategy="replace", batch_size=3, min_healthy_percent=75)
    gone = Tolerated("InvalidInstanceID.NotFound", "The instance IDs 'i-0gone' do not exist")
    obs, _ = drive(observation_calls("web", policy, resolve_launch_template=False, now=lambda: NOW),
                   _answers(ids, status_error=gone))
    assert all(i.status is None for i in obs.state.instances)
    assert unknown_ids(obs.state, policy) == set(ids)
    assert obs.state.observe_errors == (
        "DescribeInstanceStatus (4 instances): InvalidInstanceID.NotFound (The instance IDs 'i-0gone' do not exist)",)
    no_tg = Tolerated("TargetGroupNotFound", "One or more target groups not found")
    obs, _ = drive(observation_calls("web", policy, resolve_launch_template=False, now=lambda: NOW),
                   _answers(ids, tg_error=no_tg))
    assert all(i.unknown == {"elb"} for i in obs.state.instances)
    assert unknown_ids(obs.state, policy) == set(ids)
    assert "DescribeTargetHealth targetgroup/web/1: TargetGroupNotFound" in obs.state.observe_errors[0]
    # the planner waits on it (re-observes) and names the error; it never picks the 4 as free victims
    from dataclasses import replace

    state = replace(obs.state, suspended_processes=frozenset(policy.suspend_processes))
    record = RolloutRecord.begin("r", state, policy, target_image="ami-new", previous_image="ami-old")
    action = plan(state, record, policy)
    assert isinstance(action, Wait) and action.condition == WaitFor.UNKNOWN
    assert "TargetGroupNotFound" in action.reason


def test_describe_alarms_is_paginated():
    """Issue 13 item 17: DescribeAlarms answers at most MaxRecords alarms and a NextToken: the alarm in ALARM
    on the second page counts."""
    ids = ["i-1"]
    policy = Policy(warmup_seconds=0, alarms=("a-1", "a-2"))
    pages = [
        {"MetricAlarms": [{"AlarmName": "a-1", "StateValue": "OK"}], "CompositeAlarms": [], "NextToken": "t-2"},
        {"MetricAlarms": [{"AlarmName": "a-2", "StateValue": "ALARM"}], "CompositeAlarms": []},
    ]
    obs, calls = drive(observation_calls("web", policy, resolve_launch_template=False, now=lambda: NOW),
                       _answers(ids, alarm_pages=pages))
    alarm_calls = [c for c in calls if c.method == "describe_alarms"]
    assert [c.params.get("NextToken") for c in alarm_calls] == [None, "t-2"]
    assert alarm_calls[0].params["MaxRecords"] == 100
    assert obs.state.alarms_in_alarm == {"a-2"}
    assert obs.calls == len(calls)


def test_sync_and_async_observations_agree(sandbox_clean):
    f = F.build_fleet(sandbox_clean)
    policy = Policy(warmup_seconds=0)
    sync = AsgHook(aws_conn_id="aws_default", region_name=F.REGION)
    obs = sync.observe(f.asg, policy)
    assert obs.calls == 5  # ASG, instances (first time), status, target health, launch template version
    again = sync.observe(f.asg, policy)
    assert again.calls == 3  # instances known, version 1 cached
    assert obs.state.launch_image_id == f.old_ami and obs.launch_template.explicit() == f"{f.lt_id}:1"

    async def observe_async():
        hook = AsgHook(aws_conn_id="aws_default", region_name=F.REGION)
        async with hook.async_clients() as clients:
            return await hook.async_observe(clients, f.asg, policy, resolve_launch_template=True)

    aobs = asyncio.run(observe_async())
    assert aobs.state.instances == obs.state.instances
    assert (aobs.state.desired, aobs.state.target_group_arns, aobs.state.launch_image_id) == (
        obs.state.desired, obs.state.target_group_arns, obs.state.launch_image_id)
    assert {i.image_id for i in aobs.state.instances} == {f.old_ami}
    assert all(i.target_health == {f.tg_arn: "healthy"} and i.status == "ok" for i in aobs.state.instances)
    assert Lifecycle.IN_SERVICE == aobs.state.instances[0].lifecycle


def test_a_failed_write_is_looked_at_again_before_it_counts_as_failed(sandbox_clean):
    """Issue 13 item 16: a write applied whose reply was lost (here an InternalFailure in its place, and no
    botocore retry) is not an error when the group shows it done; a write that did not happen still fails."""
    import pytest

    f = F.build_fleet(sandbox_clean)
    hook = AsgHook(aws_conn_id="aws_default", region_name=F.REGION, config={"retries": {"mode": "standard", "total_max_attempts": 1}})
    lost = F.lose_replies(hook, retried=False)
    hook.set_capacity(f.asg, max_size=7, desired=5)
    hook.put_tags(f.asg, {"phoenix:test": "x"})
    victim = sorted(F.fleet_images(sandbox_clean))[0]
    assert hook.terminate_instance(victim, decrement_desired=True) is True
    g = F.group(sandbox_clean)
    assert lost == ["UpdateAutoScalingGroup", "CreateOrUpdateTags", "TerminateInstanceInAutoScalingGroup"]
    assert (g["MaxSize"], g["DesiredCapacity"]) == (7, 4) and victim not in F.fleet_images(sandbox_clean)
    assert {"Key": "phoenix:test", "Value": "x"} in [{"Key": t["Key"], "Value": t["Value"]} for t in g["Tags"]]
    # a write that never reached AWS still fails (here: refused before it was sent)
    fresh = AsgHook(aws_conn_id="aws_default", region_name=F.REGION, config={"retries": {"mode": "standard", "total_max_attempts": 1}})
    F.inject_throttling(fresh, {("autoscaling", "UpdateAutoScalingGroup"): 1})
    with pytest.raises(ClientError, match="Throttling"):
        fresh.set_capacity(f.asg, desired=6)
    assert F.group(sandbox_clean)["DesiredCapacity"] == 4


def _answer_with(g, lt_versions):
    def answer(call):
        if call.method == "describe_auto_scaling_groups":
            return {"AutoScalingGroups": [g]}
        if call.method == "describe_instances":
            return {"Reservations": [{"Instances": [
                {"InstanceId": i, "ImageId": "ami-old", "LaunchTime": NOW - timedelta(hours=1)}
                for i in call.params["Filters"][0]["Values"]]}]}
        if call.method == "describe_instance_status":
            return {"InstanceStatuses": [ok_status(i) for i in call.params["InstanceIds"]]}
        if call.method == "describe_target_health":
            return {"TargetHealthDescriptions": []}
        if call.method == "describe_launch_template_versions":
            return {"LaunchTemplateVersions": lt_versions}
        raise AssertionError(call)
    return answer


def test_a_group_that_resolves_to_no_launch_image_is_refused_naming_what_it_reported():
    """Issue 18 item 4: moto's UpdateAutoScalingGroup drops a MixedInstancesPolicy on a desired-only update,
    and the group then reports no launch template; launch_image_id None made the planner skip its "the group
    launches the target" check silently. Now the observation says what the group reported and the planner
    halts (blocked) naming the group and that, before any other step; nothing but the record changes."""
    policy = Policy(warmup_seconds=0, batch_size=1)
    bare = group([("i-1", "InService"), ("i-2", "InService")])
    del bare["LaunchTemplate"]
    obs, calls = drive(observation_calls("web", policy, now=lambda: NOW), _answer_with(bare, []))
    assert obs.launch_template is None and obs.state.launch_image_id is None
    assert obs.state.launch_unresolved == (
        "the group reports no LaunchTemplate, no MixedInstancesPolicy and no launch configuration"
    )
    record = RolloutRecord.begin("r", obs.state, policy, target_image="ami-new", previous_image="ami-old")
    halt = plan(obs.state, record, policy)
    assert isinstance(halt, Halt) and halt.record is not None and halt.record.phase == "failed"
    assert halt.reason.startswith("web resolves to no launch image: the group reports no LaunchTemplate")
    assert "Refusing to roll it" in halt.reason and "ami-new" in halt.reason

    # a MixedInstancesPolicy that lost its launch template specification, named as such
    mixed = {**bare, "MixedInstancesPolicy": {"InstancesDistribution": {"OnDemandBaseCapacity": 0}}}
    obs, _ = drive(observation_calls("web", policy, now=lambda: NOW), _answer_with(mixed, []))
    assert obs.state.launch_unresolved == (
        "the group reports a MixedInstancesPolicy without a launch template specification (['InstancesDistribution'])"
    )
    # a version that is gone, or names no ImageId
    obs, _ = drive(observation_calls("web", policy, now=lambda: NOW), _answer_with(group([("i-1", "InService")]), []))
    assert obs.state.launch_unresolved == "version 7 of launch template lt-0abc not found"
    no_image = [{"VersionNumber": 7, "LaunchTemplateData": {"InstanceType": "t3.micro"}}]
    obs, _ = drive(observation_calls("web", policy, now=lambda: NOW),
                   _answer_with(group([("i-1", "InService")]), no_image))
    assert obs.state.launch_unresolved == "version 7 of launch template lt-0abc names no ImageId"
    assert isinstance(plan(obs.state, record, policy), Halt)
    # not asked (a trigger's poll): nothing is claimed
    obs, _ = drive(observation_calls("web", policy, resolve_launch_template=False, now=lambda: NOW),
                   _answer_with(bare, []))
    assert obs.state.launch_unresolved is None
    # resolved: no claim either
    good = [{"VersionNumber": 7, "LaunchTemplateData": {"ImageId": "ami-new"}}]
    obs, _ = drive(observation_calls("web", policy, now=lambda: NOW), _answer_with(group([("i-1", "InService")]), good))
    assert obs.state.launch_unresolved is None and obs.state.launch_image_id == "ami-new"


def test_a_poll_that_knows_the_group_asks_everything_in_one_round():
    """With the previous observation's members and target groups (``expect``), the status checks and target
    health are asked together with DescribeAutoScalingGroups: a poll waits for one round of answers, not two,
    and makes the same calls. Only new members (or target groups) are asked in a second round."""
    ids = [f"i-{k:05x}" for k in range(150)]
    known = {i: ("ami-new", NOW) for i in ids}
    policy = Policy(warmup_seconds=0)
    answer = _answers(ids)
    rounds: list[list[str]] = []

    def recorder(gen):
        try:
            batch = next(gen)
            while True:
                rounds.append([c.method for c in batch])
                batch = gen.send([answer(c) for c in batch])
        except StopIteration as stop:
            return stop.value

    plain = recorder(observation_calls("web", policy, known=known, resolve_launch_template=False, now=lambda: NOW))
    assert len(rounds) == 2 and plain.calls == 1 + 2 + 1
    rounds.clear()
    fast = recorder(observation_calls("web", policy, known=known, resolve_launch_template=False, now=lambda: NOW,
                                      expect=plain.shape))
    assert rounds == [["describe_auto_scaling_groups", "describe_instance_status", "describe_instance_status",
                       "describe_target_health"]]
    assert fast.calls == plain.calls and fast.state == plain.state
    # a member that left is dropped; a new one is asked (with DescribeInstances) in a second round
    rounds.clear()
    answer = _answers(ids[1:] + ["i-new"])
    moved = recorder(observation_calls("web", policy, known=known, resolve_launch_template=False, now=lambda: NOW,
                                       expect=plain.shape))
    assert rounds[1] == ["describe_instances", "describe_instance_status"]
    assert {i.instance_id for i in moved.state.instances} == set(ids[1:]) | {"i-new"}
    assert all(i.status == "ok" for i in moved.state.instances)


def test_a_batch_is_terminated_concurrently_through_contention_answers(sandbox_clean, monkeypatch):
    """The terminations of one batch go out together (one instance a call); an answer that another change of
    the group is under way (ScalingActivityInProgress, ResourceContention) is tried again, not a failure."""
    import threading

    import phoenix_fleet.hooks.asg_hook as H

    pauses: list[float] = []
    monkeypatch.setattr(H.time, "sleep", pauses.append)
    F.build_fleet(sandbox_clean, desired=8, max_size=10)
    victims = sorted(F.fleet_images(sandbox_clean))[:6]
    sandbox_clean.update_config(api_faults=[
        {"action": "TerminateInstanceInAutoScalingGroup", "params": {"InstanceId": victims[1]},
         "code": "ScalingActivityInProgress", "message": "Scaling activity 1 is in progress and blocks this action",
         "times": 2},
        {"action": "TerminateInstanceInAutoScalingGroup", "params": {"InstanceId": victims[4]},
         "code": "ResourceContention", "status": 500, "times": 1},
    ])
    hook = AsgHook(aws_conn_id="aws_default", region_name=F.REGION,
                   config={"retries": {"mode": "standard", "total_max_attempts": 1}})
    threads: set[str] = set()
    hook.client("autoscaling").meta.events.register(
        "before-call.auto-scaling.TerminateInstanceInAutoScalingGroup",
        lambda **_: threads.add(threading.current_thread().name),
    )
    assert hook.terminate_instances(victims, decrement_desired=True) == victims
    assert len(threads) > 1  # concurrently
    first, second = H.CONTENTION_PAUSES[:2]
    assert sorted(pauses) == sorted([first, second, first])  # twice for one instance, once for another
    g = F.group(sandbox_clean)
    assert g["DesiredCapacity"] == 2 and not set(victims) & set(F.fleet_images(sandbox_clean))


def test_a_failed_termination_stops_the_batch_and_is_raised(sandbox_clean, monkeypatch):
    """A termination that fails for good (past the contention pauses) starts no further termination of the
    batch; those under way finish, and the failure is raised: the next observation sees what landed."""
    import phoenix_fleet.hooks.asg_hook as H
    import pytest

    monkeypatch.setattr(H.time, "sleep", lambda _: None)
    monkeypatch.setattr(H, "MAX_PARALLEL", 1)  # one at a time: which ones did not start is then known
    f = F.build_fleet(sandbox_clean, desired=6, max_size=8)
    victims = sorted(F.fleet_images(sandbox_clean))[:4]
    sandbox_clean.update_config(api_faults=[
        {"action": "TerminateInstanceInAutoScalingGroup", "params": {"InstanceId": victims[1]},
         "code": "ScalingActivityInProgress", "message": "Scaling activity 1 is in progress"},
    ])
    hook = AsgHook(aws_conn_id="aws_default", region_name=F.REGION,
                   config={"retries": {"mode": "standard", "total_max_attempts": 1}})
    with pytest.raises(ClientError, match="ScalingActivityInProgress"):
        hook.terminate_instances(victims, decrement_desired=True)
    left = set(F.fleet_images(sandbox_clean, f.asg))
    assert victims[0] not in left and set(victims[1:]) <= left
    assert F.group(sandbox_clean)["DesiredCapacity"] == 5
