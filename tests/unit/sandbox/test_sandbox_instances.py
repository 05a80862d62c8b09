"""Instance boot latency (EC2 pending -> running) and status checks (initializing -> ok), boto3 and aiobotocore."""

from __future__ import annotations

import time
from typing import Any

from sandbox.realism import TAG_STATUS_CHECK


def _state(ec2: Any, instance_id: str, **filters: list[str]) -> str | None:
    kwargs: dict[str, Any] = {"InstanceIds": [instance_id]}
    if filters:
        kwargs["Filters"] = [{"Name": k.replace("_", "-"), "Values": v} for k, v in filters.items()]
    reservations = ec2.describe_instances(**kwargs)["Reservations"]
    return reservations[0]["Instances"][0]["State"]["Name"] if reservations else None


def test_pending_for_n_describes_then_running(ec2: Any, run_instance: Any) -> None:
    reply = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    assert reply["State"] == {"Code": 0, "Name": "pending"}
    instance_id = reply["InstanceId"]
    assert [_state(ec2, instance_id) for _ in range(3)] == ["pending", "pending", "running"]


def test_state_filter_does_not_hide_a_pending_instance_from_its_clock(ec2: Any, run_instance: Any) -> None:
    instance_id = run_instance()
    seen = [_state(ec2, instance_id, instance_state_name=["running"]) for _ in range(3)]
    assert seen == [None, None, "running"]


def test_runtime_config_change_applies_to_instances_in_flight(
    sandbox_clean: Any, ec2: Any, run_instance: Any
) -> None:
    sandbox_clean.update_config(instance_boot={"describes": 100})
    instance_id = run_instance()
    assert _state(ec2, instance_id) == "pending"
    sandbox_clean.update_config(instance_boot={"describes": 0})
    assert _state(ec2, instance_id) == "running"


def test_time_mode_and_settle(sandbox_clean: Any, ec2: Any, run_instance: Any) -> None:
    sandbox_clean.update_config(instance_boot={"seconds": 3600})
    instance_id = run_instance()
    assert [_state(ec2, instance_id) for _ in range(5)] == ["pending"] * 5
    assert sandbox_clean.settle()["instances"] == 1
    assert _state(ec2, instance_id) == "running"


def test_plain_profile_is_moto(sandbox_clean: Any, ec2: Any, run_instance: Any) -> None:
    sandbox_clean.update_config(profile="plain")
    instance_id = run_instance()
    assert _state(ec2, instance_id) == "running"  # (moto's RunInstances reply always says pending)


def test_start_after_stop_boots_again(ec2: Any, running_instance: Any) -> None:
    instance_id = running_instance()
    ec2.stop_instances(InstanceIds=[instance_id])
    assert _state(ec2, instance_id) == "stopped"
    reply = ec2.start_instances(InstanceIds=[instance_id])["StartingInstances"][0]
    assert reply["CurrentState"]["Name"] == "pending"
    assert [_state(ec2, instance_id) for _ in range(3)] == ["pending", "pending", "running"]


def test_terminating_a_pending_instance(ec2: Any, run_instance: Any) -> None:
    instance_id = run_instance()
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert [_state(ec2, instance_id) for _ in range(3)] == ["terminated"] * 3


def test_status_checks_initializing_then_ok(ec2: Any, run_instance: Any) -> None:
    instance_id = run_instance()

    def status(**kwargs: Any) -> list[dict[str, Any]]:
        return ec2.describe_instance_status(InstanceIds=[instance_id], **kwargs)["InstanceStatuses"]

    # pending: only IncludeAllInstances shows it (as AWS); both calls count as boot observations
    assert status() == []
    pending = status(IncludeAllInstances=True)[0]
    assert pending["InstanceState"]["Name"] == "pending"
    assert pending["InstanceStatus"]["Status"] == "not-applicable"
    checks = [
        (s["InstanceStatus"]["Status"], s["SystemStatus"]["Status"]) for s in (status()[0], status()[0])
    ]
    assert checks == [("initializing", "initializing"), ("ok", "ok")]


def test_status_checks_start_when_the_boot_was_due_not_when_someone_looks(
    sandbox_clean: Any, ec2: Any, run_instance: Any
) -> None:
    # AWS: running at launch + boot, status ok at launch + boot + checks, however late the first look
    sandbox_clean.update_config(instance_boot={"seconds": 0.5}, instance_status_checks={"seconds": 0.5})
    instance_id = run_instance()
    time.sleep(1.2)  # nobody looked while it booted (0.5 s) and while its checks ran (0.5 s more)
    found = ec2.describe_instance_status(InstanceIds=[instance_id], IncludeAllInstances=True)["InstanceStatuses"][0]
    assert found["InstanceState"]["Name"] == "running"
    assert (found["InstanceStatus"]["Status"], found["SystemStatus"]["Status"]) == ("ok", "ok")


def test_status_check_injected_by_tag(ec2: Any, running_instance: Any) -> None:
    instance_id = running_instance()
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": TAG_STATUS_CHECK, "Value": "impaired"}])
    found = ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"][0]
    assert found["InstanceStatus"]["Status"] == "impaired"
    assert found["InstanceStatus"]["Details"][0]["Status"] == "failed"
    assert found["SystemStatus"]["Status"] in ("initializing", "ok")
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": TAG_STATUS_CHECK, "Value": "system-impaired"}])
    found = ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"][0]
    assert found["SystemStatus"]["Status"] == "impaired"


def test_aiobotocore_pending_to_running_and_waiters(aio: Any) -> None:
    async def scenario() -> tuple[list[str], str]:
        async with aio.client("ec2") as ec2:
            reply = await ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
            instance_id = reply["Instances"][0]["InstanceId"]
            seen = []
            for _ in range(3):
                found = await ec2.describe_instances(InstanceIds=[instance_id])
                seen.append(found["Reservations"][0]["Instances"][0]["State"]["Name"])
            await ec2.get_waiter("instance_status_ok").wait(
                InstanceIds=[instance_id], WaiterConfig={"Delay": 0, "MaxAttempts": 5}
            )
            final = await ec2.describe_instance_status(InstanceIds=[instance_id])
            return seen, final["InstanceStatuses"][0]["InstanceStatus"]["Status"]

    assert aio.run(scenario()) == (["pending", "pending", "running"], "ok")
