"""SSM Run Command: single-instance targeting fix, InProgress -> Success/Failed with exit code and output, per
instance, in GetCommandInvocation and ListCommandInvocations(Details=True). boto3 and aiobotocore."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.realism import TAG_SSM_EXIT_CODE, TAG_SSM_OUTPUT, TAG_SSM_STATUS, TAG_SSM_STDERR

SHELL = {"DocumentName": "AWS-RunShellScript", "Parameters": {"commands": ["/opt/tests/run"]}}


def _send(ssm: Any, *instance_ids: str, **kwargs: Any) -> str:
    return ssm.send_command(InstanceIds=list(instance_ids), **{**SHELL, **kwargs})["Command"]["CommandId"]


def test_send_command_targets_only_the_given_instance(ssm: Any, running_instance: Any) -> None:
    one, other = running_instance(), running_instance()
    reply = ssm.send_command(InstanceIds=[one], **SHELL)["Command"]
    assert reply["InstanceIds"] == [one]
    assert reply["TargetCount"] == 1
    listed = ssm.list_command_invocations(CommandId=reply["CommandId"])["CommandInvocations"]
    assert [i["InstanceId"] for i in listed] == [one]
    with pytest.raises(ssm.exceptions.InvocationDoesNotExist):
        ssm.get_command_invocation(CommandId=reply["CommandId"], InstanceId=other)


def test_moto_targets_every_instance_without_the_fix(
    sandbox_clean: Any, ssm: Any, running_instance: Any
) -> None:
    """Documents the moto bug the sandbox fixes (profile plain)."""
    one, other = running_instance(), running_instance()
    sandbox_clean.update_config(profile="plain")
    reply = ssm.send_command(InstanceIds=[one], **SHELL)["Command"]
    assert sorted(reply["InstanceIds"]) == sorted([one, other])


def test_targets_by_tag(ssm: Any, running_instance: Any) -> None:
    web = running_instance({"phoenix:role": "web"})
    running_instance({"phoenix:role": "worker"})
    reply = ssm.send_command(Targets=[{"Key": "tag:phoenix:role", "Values": ["web"]}], **SHELL)["Command"]
    assert reply["InstanceIds"] == [web]


def test_terminated_or_unknown_instances_are_invalid(ssm: Any, ec2: Any, running_instance: Any) -> None:
    gone = running_instance()
    ec2.terminate_instances(InstanceIds=[gone])
    for instance_id in (gone, "i-0123456789abcdef0"):
        with pytest.raises(ssm.exceptions.InvalidInstanceId):
            _send(ssm, instance_id)


def test_failed_command_with_exit_code_and_output(ssm: Any, running_instance: Any) -> None:
    bad = running_instance(
        {TAG_SSM_EXIT_CODE: "3", TAG_SSM_OUTPUT: "2 passed, 1 failed", TAG_SSM_STDERR: "test_nginx FAILED"}
    )
    good = running_instance()
    command_id = _send(ssm, bad, good)
    # tests profile: InProgress for the first observing call per invocation, then final
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=bad)["Status"] == "InProgress"
    failed = ssm.get_command_invocation(CommandId=command_id, InstanceId=bad)
    assert (failed["Status"], failed["StatusDetails"], failed["ResponseCode"]) == ("Failed", "Failed", 3)
    assert failed["StandardOutputContent"] == "2 passed, 1 failed"
    assert failed["StandardErrorContent"] == "test_nginx FAILED"
    listed = ssm.list_command_invocations(CommandId=command_id, Details=True)["CommandInvocations"]
    by_id = {i["InstanceId"]: i for i in listed}
    assert by_id[good]["Status"] == "InProgress"  # its first observation
    plugin = by_id[bad]["CommandPlugins"][0]
    assert (plugin["Status"], plugin["ResponseCode"]) == ("Failed", 3)
    assert plugin["Output"] == "2 passed, 1 failed\n----------ERROR-------\ntest_nginx FAILED"
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=good)["Status"] == "Success"
    command = ssm.list_commands(CommandId=command_id)["Commands"][0]
    assert (command["Status"], command["CompletedCount"], command["ErrorCount"]) == ("Failed", 2, 1)
    assert (
        ssm.list_command_invocations(CommandId=command_id, Details=False)["CommandInvocations"][0][
            "CommandPlugins"
        ]
        == []
    )


def test_success_is_in_progress_for_n_polls(sandbox_clean: Any, ssm: Any, running_instance: Any) -> None:
    sandbox_clean.update_config(ssm_command={"describes": 3})
    instance_id = running_instance()
    command_id = _send(ssm, instance_id)
    statuses = [
        ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)["Status"] for _ in range(4)
    ]
    assert statuses == ["InProgress"] * 3 + ["Success"]


def test_outcome_from_the_image_tags_and_timed_out_status(ec2: Any, ssm: Any, running_instance: Any) -> None:
    builder = running_instance()
    image_id = ec2.create_image(InstanceId=builder, Name="web-bad-image")["ImageId"]
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": TAG_SSM_STATUS, "Value": "TimedOut"}])
    canary = running_instance(image_id=image_id)
    command_id = _send(ssm, canary)
    ssm.get_command_invocation(CommandId=command_id, InstanceId=canary)
    final = ssm.get_command_invocation(CommandId=command_id, InstanceId=canary)
    assert (final["Status"], final["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")


def test_outcome_from_config_rules_over_http(sandbox_clean: Any, ssm: Any, running_instance: Any) -> None:
    import json
    import urllib.request

    rules = {"ssm_rules": [{"document_name": "AWS-RunShellScript", "exit_code": 42, "stdout": "rule hit"}]}
    request = urllib.request.Request(
        f"{sandbox_clean.endpoint_url}/phoenix-sandbox/config",
        data=json.dumps(rules).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as resp:
        assert json.loads(resp.read())["ssm_rules"][0]["exit_code"] == 42
    instance_id = running_instance()
    command_id = _send(ssm, instance_id)
    ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    final = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    assert (final["Status"], final["ResponseCode"], final["StandardOutputContent"]) == (
        "Failed",
        42,
        "rule hit",
    )


def test_aiobotocore_failed_command_and_waiter(aio: Any, running_instance: Any) -> None:
    from botocore.exceptions import WaiterError

    bad = running_instance({TAG_SSM_EXIT_CODE: "1", TAG_SSM_OUTPUT: "boom"})
    running_instance()  # a bystander: must not be targeted

    async def scenario() -> tuple[str, dict[str, Any], str]:
        async with aio.client("ssm") as ssm:
            sent = await ssm.send_command(InstanceIds=[bad], **SHELL)
            assert sent["Command"]["InstanceIds"] == [bad]
            command_id = sent["Command"]["CommandId"]
            first = (await ssm.list_command_invocations(CommandId=command_id, Details=True))[
                "CommandInvocations"
            ][0]
            try:
                await ssm.get_waiter("command_executed").wait(
                    CommandId=command_id, InstanceId=bad, WaiterConfig={"Delay": 0, "MaxAttempts": 5}
                )
                waited = "success"
            except WaiterError as exc:
                waited = str(exc)
            final = await ssm.get_command_invocation(CommandId=command_id, InstanceId=bad)
            return first["Status"], final, waited

    first, final, waited = aio.run(scenario())
    assert first == "InProgress"
    assert (final["Status"], final["ResponseCode"], final["StandardOutputContent"]) == ("Failed", 1, "boom")
    assert "terminal failure" in waited
