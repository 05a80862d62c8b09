"""Strategy instance-refresh: StartInstanceRefresh with the planner's preferences, then the botocore waiter
``InstanceRefreshComplete`` (waiters/autoscaling.json) in ``InstanceRefreshTrigger``.

moto (the sandbox) does not implement instance refresh, so these tests run on botocore's ``Stubber`` (sync
clients) and aiobotocore's ``AioStubber`` (the trigger's async client): AWS answers are scripted, no server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiobotocore.session import get_session
from aiobotocore.stub import AioStubber
from botocore.exceptions import WaiterError
from botocore.stub import ANY, Stubber
from phoenix_fleet.hooks.asg_hook import AsgHook
from phoenix_fleet.operators.recycle_operators import AsgRecycleOperator, RolloutFailed
from phoenix_fleet.triggers.rollout_triggers import InstanceRefreshTrigger

from tests.helpers.airflow_run import make_context, run_task

LT = "lt-0123456789abcdef0"
OLD, NEW = "ami-0000000000000a0a0", "ami-0000000000000b0b0"
LAUNCHED = datetime.now(UTC) - timedelta(days=3)
POLICY = {"strategy": "instance-refresh", "warmup_seconds": 0, "health_signals": ["asg"], "batch_size": 1}


def group(ids: list[str], version: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "AutoScalingGroupName": "web",
        "MinSize": 1, "MaxSize": 3, "DesiredCapacity": 2, "DefaultCooldown": 300,
        "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "EC2", "CreatedTime": LAUNCHED,
        "LaunchTemplate": {"LaunchTemplateId": LT, "LaunchTemplateName": "web-lt", "Version": version},
        "Instances": [
            {"InstanceId": i, "AvailabilityZone": "us-east-1a", "LifecycleState": "InService",
             "HealthStatus": "Healthy", "ProtectedFromScaleIn": False}
            for i in ids
        ],
        "TargetGroupARNs": [], "SuspendedProcesses": [],
        "Tags": [{"ResourceId": "web", "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                  "PropagateAtLaunch": False} for k, v in (tags or {}).items()],
    }


def instances(ids: list[str], image: str) -> dict[str, Any]:
    return {"Reservations": [{"Instances": [{"InstanceId": i, "ImageId": image, "LaunchTime": LAUNCHED} for i in ids]}]}


def lt_version(number: int, image: str) -> dict[str, Any]:
    return {"LaunchTemplateVersions": [{"LaunchTemplateId": LT, "VersionNumber": number,
                                        "LaunchTemplateData": {"ImageId": image}}]}


class StubbedWorld:
    """The operator's sync clients, each behind a Stubber. The group's tags are live: every response made by
    ``self.group`` shares one ``Tags`` list that follows what the operator writes and deletes (its record holds
    a random token and the time it began, and the lock reads the whole record back)."""

    def __init__(self) -> None:
        self.hook = AsgHook(aws_conn_id=None, region_name="us-east-1")
        self.hook.session.__dict__  # noqa: B018 - build the session now
        self.stubs = {s: Stubber(self.hook.client(s)) for s in ("autoscaling", "ec2")}
        self.asg, self.ec2 = self.stubs["autoscaling"], self.stubs["ec2"]
        self.tags: dict[str, str] = {}
        self.tag_list: list[dict[str, Any]] = []
        events = self.hook.client("autoscaling").meta.events
        events.register("before-parameter-build.autoscaling.CreateOrUpdateTags", self._written)
        events.register("before-parameter-build.autoscaling.DeleteTags", self._deleted)

    def _sync(self) -> None:
        self.tag_list[:] = [{"ResourceId": "web", "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                             "PropagateAtLaunch": False} for k, v in self.tags.items()]

    def _written(self, params: dict[str, Any], **_: Any) -> None:
        self.tags.update({t["Key"]: t["Value"] for t in params.get("Tags") or []})
        self._sync()

    def _deleted(self, params: dict[str, Any], **_: Any) -> None:
        for t in params.get("Tags") or []:
            self.tags.pop(t["Key"], None)
        self._sync()

    def group(self, ids: list[str], version: str) -> dict[str, Any]:
        """DescribeAutoScalingGroups' answer, with the live tags."""
        g = group(ids, version)
        g["Tags"] = self.tag_list
        return {"AutoScalingGroups": [g]}

    def start(self, old_ids: list[str]) -> None:
        """Everything up to StartInstanceRefresh (then the task defers)."""
        self.asg.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group(old_ids, "1")]})
        self.ec2.add_response("describe_instances", instances(old_ids, OLD))
        self.ec2.add_response("describe_launch_template_versions", lt_version(1, OLD),
                              {"LaunchTemplateId": LT, "Versions": ["1"]})
        self.asg.add_response("describe_instance_refreshes", {"InstanceRefreshes": []})
        self.ec2.add_response("describe_launch_template_versions", lt_version(2, NEW),
                              {"LaunchTemplateId": LT, "Versions": ["2"]})
        self.ec2.add_response("describe_images", {"Images": [
            {"ImageId": NEW, "Tags": [{"Key": "phoenix:version", "Value": "2026.11.30-1"}]},
            {"ImageId": OLD, "Tags": [{"Key": "phoenix:version", "Value": "2026.11.23-1"}]}]})
        # the lock: look again, write the whole record, read it back whole; then the loop's observation
        self.asg.add_response("describe_auto_scaling_groups", self.group(old_ids, "1"))
        self.asg.add_response("create_or_update_tags", {})
        for _ in range(2):
            self.asg.add_response("describe_auto_scaling_groups", self.group(old_ids, "1"))
        self.asg.add_response("describe_instance_refreshes", {"InstanceRefreshes": []})
        self.asg.add_response(
            "start_instance_refresh",
            {"InstanceRefreshId": "ir-1"},
            {
                "AutoScalingGroupName": "web",
                "Strategy": "Rolling",
                "Preferences": {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 150, "InstanceWarmup": 0,
                                "SkipMatching": True, "AutoRollback": True, "ScaleInProtectedInstances": "Ignore",
                                "StandbyInstances": "Ignore"},
                "DesiredConfiguration": {"LaunchTemplate": {"LaunchTemplateId": LT, "Version": "2"}},
            },
        )

    def unlock(self) -> None:
        """The end recorded (phoenix:rollout-ended), then the record deleted: the id (the lock) first, the rest."""
        self.asg.add_response("create_or_update_tags", {})
        lock = [{"ResourceId": "web", "ResourceType": "auto-scaling-group", "Key": "phoenix:rollout:id"}]
        self.asg.add_response("delete_tags", {}, {"Tags": lock})
        self.asg.add_response("delete_tags", {}, {"Tags": ANY})

    def __enter__(self) -> StubbedWorld:
        for s in self.stubs.values():
            s.activate()
        return self

    def __exit__(self, *exc: Any) -> None:
        for s in self.stubs.values():
            s.deactivate()


def stub_trigger(monkeypatch: pytest.MonkeyPatch, statuses: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """InstanceRefreshTrigger's async client answers DescribeInstanceRefreshes with ``statuses`` in turn."""
    asked: list[dict[str, Any]] = []

    class StubbedAsyncConn:
        async def __aenter__(self) -> Any:
            self._ctx = get_session().create_client(
                "autoscaling", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
            )
            client = await self._ctx.__aenter__()
            stub = AioStubber(client)
            for status, reason in statuses:
                refresh = {"InstanceRefreshId": "ir-1", "AutoScalingGroupName": "web", "Status": status,
                           "PercentageComplete": 100 if status == "Successful" else 40}
                if reason:
                    refresh["StatusReason"] = reason
                stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [refresh]},
                                  {"AutoScalingGroupName": "web", "InstanceRefreshIds": ["ir-1"]})
                asked.append(refresh)
            stub.activate()
            return client

        async def __aexit__(self, *exc: Any) -> None:
            await self._ctx.__aexit__(*exc)

    class StubbedHook(AsgHook):
        async def get_async_conn(self) -> Any:
            return StubbedAsyncConn()

    monkeypatch.setattr(InstanceRefreshTrigger, "hook", lambda self: StubbedHook(aws_conn_id=None))
    return asked


def refresh_operator(world: StubbedWorld) -> AsgRecycleOperator:
    op = AsgRecycleOperator(task_id="recycle", asg_name="web", target_launch_template_version=2, policy=POLICY,
                            poll_interval=0, aws_conn_id=None, region_name="us-east-1", lock_settle_seconds=0)
    op.hook = world.hook
    return op


def test_instance_refresh_starts_with_the_planner_preferences_and_waits_on_the_waiter(monkeypatch):
    world = StubbedWorld()
    world.start(["i-01", "i-02"])
    world.asg.add_response("describe_auto_scaling_groups", world.group(["i-11", "i-12"], "2"))
    world.ec2.add_response("describe_instances", instances(["i-11", "i-12"], NEW))
    world.unlock()
    stub_trigger(monkeypatch, [("InProgress", None), ("Successful", None)])
    with world:
        run = run_task(refresh_operator(world), make_context())
        world.asg.assert_no_pending_responses()
        world.ec2.assert_no_pending_responses()
    assert [d["trigger"] for d in run.deferrals] == ["InstanceRefreshTrigger"]
    assert run.deferrals[0]["event"] == {"status": "success", "instance_refresh_id": "ir-1"}
    assert run.result["outcome"] == "forward" and run.result["strategy"] == "instance-refresh"
    assert run.result["from_image"] == OLD and run.result["to_image"] == NEW
    assert run.result["final_images"] == {NEW: 2}


def test_an_instance_refresh_rolled_back_by_aws_fails_the_task_and_unlocks(monkeypatch):
    world = StubbedWorld()
    world.start(["i-01", "i-02"])
    world.asg.add_response("describe_auto_scaling_groups", world.group(["i-01", "i-02"], "1"))
    world.unlock()
    stub_trigger(monkeypatch, [("RollbackSuccessful", "alarm web-5xx fired")])
    ctx = make_context()
    with world, pytest.raises(RolloutFailed, match="rolled back by AWS: .*RollbackSuccessful: alarm web-5xx fired"):
        run_task(refresh_operator(world), ctx)
    assert ctx["ti"].xcom["recycle_summary"]["outcome"] == "rolled_back"


def test_a_failed_instance_refresh_halts_and_keeps_the_lock(monkeypatch):
    world = StubbedWorld()
    world.start(["i-01", "i-02"])
    world.asg.add_response("describe_auto_scaling_groups", world.group(["i-01", "i-02"], "1"))
    world.asg.add_response("create_or_update_tags", {})  # the record, phase failed
    world.asg.add_response("describe_auto_scaling_groups", world.group(["i-01", "i-02"], "1"))
    stub_trigger(monkeypatch, [("Failed", "instances failed to launch")])
    with world, pytest.raises(RolloutFailed, match=r"failed \(halted\): instance refresh ir-1 of web ended Failed: "
                                                       "instances failed to launch"):
        run_task(refresh_operator(world), make_context())
    world.asg.assert_no_pending_responses()


def test_an_instance_refresh_past_the_deadline_is_cancelled_before_the_halt():
    """Issue 13 item 13: the waiter ran out (the rollout's deadline) while the refresh was still InProgress: it is
    cancelled (CancelInstanceRefresh), and only once AWS says Cancelled does the rollout halt and restore."""
    world = StubbedWorld()
    world.start(["i-01", "i-02"])
    in_progress = {"InstanceRefreshes": [{"InstanceRefreshId": "ir-1", "Status": "InProgress"}]}
    asked = {"AutoScalingGroupName": "web", "InstanceRefreshIds": ["ir-1"]}
    for _ in range(61):  # the waiter's attempts up to the deadline (1 min, delay 0: 61)
        world.asg.add_response("describe_instance_refreshes", in_progress, asked)
    world.asg.add_response("describe_auto_scaling_groups", world.group(["i-01", "i-02"], "1"))
    world.asg.add_response("cancel_instance_refresh", {"InstanceRefreshId": "ir-1"}, {"AutoScalingGroupName": "web"})
    for status in ("Cancelling", "Cancelling", "Cancelled"):
        world.asg.add_response("describe_instance_refreshes",
                               {"InstanceRefreshes": [{"InstanceRefreshId": "ir-1", "Status": status}]}, asked)
    world.asg.add_response("create_or_update_tags", {})  # the record, phase failed
    world.asg.add_response("describe_auto_scaling_groups", world.group(["i-01", "i-02"], "1"))
    op = refresh_operator(world)
    op.deferrable = False
    op.policy = {**POLICY, "deadline_minutes": 1}
    with world, pytest.raises(RolloutFailed, match=r"failed \(halted\): .*instance refresh ir-1 cancelled \(Cancelled\)"):
        run_task(op, make_context())
    world.asg.assert_no_pending_responses()
    assert world.tags["phoenix:rollout:phase"] == "failed"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("Successful", None), ("Failed", "failure"), ("Cancelled", "failure"), ("RollbackFailed", "failure"),
     ("RollbackSuccessful", "failure")],
)
def test_waiter_json_acceptors(status, outcome):
    hook = AsgHook(aws_conn_id=None, region_name="us-east-1")
    client = hook.client("autoscaling")
    with Stubber(client) as stub:
        stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
            {"InstanceRefreshId": "ir-1", "Status": "InProgress"}]})
        stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
            {"InstanceRefreshId": "ir-1", "Status": status}]})
        waiter = hook.get_waiter("InstanceRefreshComplete", client=client)
        args = {"AutoScalingGroupName": "web", "InstanceRefreshIds": ["ir-1"], "WaiterConfig": {"Delay": 0, "MaxAttempts": 3}}
        if outcome is None:
            waiter.wait(**args)
        else:
            with pytest.raises(WaiterError, match="terminal failure"):
                waiter.wait(**args)
