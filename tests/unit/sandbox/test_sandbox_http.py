"""The control endpoints under /phoenix-sandbox/ (info, config, reset, settle) over plain HTTP, and realism staying
inside the sandbox server (mock_aws in the same process sees plain moto)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import pytest

from sandbox.realism import RealismConfig

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(sandbox: Any, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        f"{sandbox.endpoint_url}/phoenix-sandbox/{path}", data=data, method=method
    )
    request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_info_proves_it_is_the_sandbox(sandbox_clean: Any) -> None:
    status, info = call(sandbox_clean, "info")
    assert status == 200
    assert info["service"] == "phoenix-sandbox"
    assert info["pid"] == os.getpid()
    assert info["port"] == sandbox_clean.port and info["endpoint_url"] == sandbox_clean.endpoint_url
    assert info["moto_version"] == "5.2.5"
    assert info["config"] == RealismConfig.profile("tests").to_dict()


def test_config_get_post_put(sandbox_clean: Any) -> None:
    assert call(sandbox_clean, "config") == (200, RealismConfig.profile("tests").to_dict())
    status, cfg = call(
        sandbox_clean,
        "config",
        "POST",
        {"instance_boot": {"seconds": 20}, "fail_image_name_patterns": ["x-*"]},
    )
    assert status == 200 and cfg["instance_boot"] == {"seconds": 20} and cfg["fault_tags"] is True
    assert sandbox_clean.config.instance_boot.seconds == 20  # the server's live config
    status, cfg = call(sandbox_clean, "config", "PUT", {"image_build": {"describes": 1}})
    assert status == 200
    assert cfg == RealismConfig().updated({"image_build": {"describes": 1}}).to_dict()
    status, cfg = call(sandbox_clean, "config", "POST", {"profile": "interactive"})
    assert cfg == RealismConfig.profile("interactive").to_dict()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instance_boot": {"seconds": -3}}, ">= 0"),
        ({"no_such_field": 1}, "unknown config field"),
        (b"{not json", "not JSON"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_config_is_a_400_and_changes_nothing(sandbox_clean: Any, body: Any, message: str) -> None:
    status, error = call(sandbox_clean, "config", "POST", body)
    assert status == 400 and message in error["error"]
    assert sandbox_clean.config == RealismConfig.profile("tests")


def test_config_change_reaches_resources_in_flight(sandbox_clean: Any, ec2: Any, run_instance: Any) -> None:
    call(sandbox_clean, "config", "POST", {"instance_boot": {"describes": 50}})
    instance_id = run_instance()
    assert (
        ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
        == "pending"
    )
    call(sandbox_clean, "config", "POST", {"instance_boot": None})
    assert (
        ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
        == "running"
    )


def test_reset_clears_state_and_optionally_config(sandbox_clean: Any, ec2: Any, run_instance: Any) -> None:
    run_instance()
    call(sandbox_clean, "config", "POST", {"instance_boot": {"describes": 9}})
    status, body = call(sandbox_clean, "reset", "POST", {})
    assert status == 200 and body["config"]["instance_boot"] == {"describes": 9}
    assert ec2.describe_instances()["Reservations"] == []
    status, body = call(sandbox_clean, "reset", "POST", {"config": True})
    assert body["config"] == RealismConfig.profile("tests").to_dict()


def test_settle_finishes_everything_in_flight(
    sandbox_clean: Any, ec2: Any, ssm: Any, run_instance: Any
) -> None:
    call(sandbox_clean, "config", "POST", {"profile": "interactive"})  # wall-clock latencies: nothing moves
    instance_id = run_instance()
    image_id = ec2.create_image(InstanceId=instance_id, Name="settle-me")["ImageId"]
    status, body = call(sandbox_clean, "settle", "POST", {})
    assert status == 200 and body["settled"] == {"instances": 1, "images": 1, "invocations": 0}
    assert (
        ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
        == "running"
    )
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available"
    status_checks = ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"][0]
    assert status_checks["InstanceStatus"]["Status"] == "ok"
    command_id = ssm.send_command(InstanceIds=[instance_id], DocumentName="AWS-RunShellScript")["Command"][
        "CommandId"
    ]
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)["Status"] == "InProgress"
    assert call(sandbox_clean, "settle", "POST", {})[1]["settled"]["invocations"] == 1
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)["Status"] == "Success"


def test_age_moves_launch_times_into_the_past(
    sandbox_clean: Any, ec2: Any, autoscaling: Any, run_instance: Any
) -> None:
    """fleet_max_age needs old instances to act on; AWS has no API to age one, the sandbox has."""
    lt = ec2.create_launch_template(LaunchTemplateName="age-lt", LaunchTemplateData={"ImageId": "ami-0b5a5e0000000b45e"})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="age-asg", LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]},
        MinSize=2, MaxSize=2, DesiredCapacity=2, AvailabilityZones=["us-east-1a"],
    )
    lone, untouched = run_instance(), run_instance()

    def launched() -> dict[str, Any]:
        return {
            i["InstanceId"]: i["LaunchTime"]
            for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
        }

    before = launched()
    status, body = call(sandbox_clean, "age", "POST",
                        {"region": "us-east-1", "asg": "age-asg", "instance_ids": [lone], "days": 20})
    assert status == 200 and len(body["aged"]) == 3 and lone in body["aged"] and untouched not in body["aged"]
    after = launched()
    for iid in body["aged"]:
        assert round((before[iid] - after[iid]).total_seconds()) == 20 * 86400
    assert after[untouched] == before[untouched]
    assert sandbox_clean.age_instances(instance_ids=[untouched], days=1.5) == [untouched]
    # bad input names the field
    for bad, field in (({"region": "us-east-1", "days": 3}, "instance_ids / asg"),
                       ({"region": "us-east-1", "asg": "nope", "days": 3}, "asg"),
                       ({"region": "us-east-1", "instance_ids": [lone], "days": "x"}, "days"),
                       ({"region": "us-east-1", "instance_ids": [lone], "days": 3, "hours": 1}, "unknown field"),
                       ({"instance_ids": [lone], "days": 3}, "region"),
                       ({"region": "us-east-1", "instance_ids": ["i-0000000000000dead"], "days": 3}, "instance_ids")):
        status, body = call(sandbox_clean, "age", "POST", bad)
        assert status == 400 and body["error"].startswith(field), (bad, body)


def test_unknown_control_path_is_404(sandbox_clean: Any) -> None:
    assert call(sandbox_clean, "nope")[0] == 404
    assert call(sandbox_clean, "info", "POST", {})[0] == 404


def test_realism_does_not_leak_into_mock_aws(sandbox_clean: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The patches are installed process-wide but act only on requests the sandbox server serves."""
    import boto3
    from moto import mock_aws

    assert sandbox_clean.config.instance_boot.enabled
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0][
            "InstanceId"
        ]
        state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"][
            "Name"
        ]
        assert state == "running"
        ssm = boto3.client("ssm", region_name="us-east-1")
        with pytest.raises(
            NotImplementedError
        ):  # moto 5.2.5 lacks it; the sandbox adds it for its own requests
            ssm.list_command_invocations()
