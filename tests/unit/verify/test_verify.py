"""The verify stage against the sandbox: canary launch, health, SSM image tests, verdict tags, teardown."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from phoenix_fleet.operators.verify_operators import (
    CanaryError,
    ImageVerificationFailed,
    LaunchCanaryOperator,
    MarkVerifiedOperator,
    RunImageTestsOperator,
    TerminateCanaryOperator,
    WaitCanaryHealthyOperator,
    failed_checks,
    safe_key_part,
    tag_value,
)

from tests.helpers.airflow_run import make_context, rebuild_trigger, run_task
from tests.helpers.image_support import make_image, tag_map

VERSION = "2026.11.30-1"
RUN_ID = "manual__2026-11-30T03:00:00+00:00"
FAILING_OUTPUT = (
    "test_ssh.py::test_sshd_setting[permitrootlogin] FAILED\n"
    "phoenix-check: PASSED test_role.py::test_role_file\n"
    "phoenix-check: FAILED test_ssh.py::test_sshd_setting[permitrootlogin]\n"
    "phoenix-check: ERROR test_role.py::test_nginx\n"
    "phoenix-image-test: result=fail exit=1 stage=instance role=web junit=/var/log/phoenix/image-test-instance.xml\n"
)


@pytest.fixture
def new_ami(seeded, sandbox_clean) -> str:
    """A freshly baked (available, unverified) web AMI, as bake leaves it."""
    return make_image(
        sandbox_clean,
        seeded["base_ami"]["id"],
        f"phoenix-web-{VERSION}",
        {"phoenix:role": "web", "phoenix:version": VERSION, "phoenix:verified": "false"},
        settle=True,
    )


def _ctx() -> dict[str, Any]:
    return make_context(run_id=RUN_ID, task_id="verify")


def _ops(ami: str, inline_wait: float = 0) -> dict[str, Any]:
    """The stage's operators, polling without sleeps; the waits defer at once unless ``inline_wait`` is given
    (most tests here exercise the triggers)."""
    common = {"poll_interval": 0}
    waits = {**common, "inline_wait": inline_wait, "inline_poll_interval": 0}
    return {
        "launch": LaunchCanaryOperator(task_id="launch_canary", image_id=ami, role="web"),
        "healthy": WaitCanaryHealthyOperator(task_id="wait_canary_healthy", launch_task_id="launch_canary", **waits),
        "tests": RunImageTestsOperator(task_id="run_image_tests", image_id=ami, launch_task_id="launch_canary", **waits),
        "mark": MarkVerifiedOperator(task_id="mark_verified", image_id=ami, tests_task_id="run_image_tests"),
        "terminate": TerminateCanaryOperator(task_id="terminate_canary", launch_task_id="launch_canary", **common),
    }


def _run_launch(ops: dict[str, Any], ctx: dict[str, Any]) -> str:
    instance_id = run_task(ops["launch"], ctx).result
    ctx["ti"].xcom_push("return_value", instance_id)  # what the task runner does with a return value
    return instance_id


def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def _snapshot_tags(ec2: Any, ami: str) -> list[dict[str, str]]:
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    snaps = [b["Ebs"]["SnapshotId"] for b in image["BlockDeviceMappings"] if b.get("Ebs", {}).get("SnapshotId")]
    return [tag_map(s) for s in ec2.describe_snapshots(SnapshotIds=snaps)["Snapshots"]]


# ------------------------------------------------------------------------------------------- pure
def test_failed_checks_and_tag_values():
    assert failed_checks(FAILING_OUTPUT) == ["test_ssh.py::test_sshd_setting[permitrootlogin]", "test_role.py::test_nginx"]
    assert failed_checks("FAILED test_x.py::test_y - AssertionError\n") == ["test_x.py::test_y"]
    assert failed_checks("all good\n") == []
    assert len(tag_value("x" * 1000)) == 255 and tag_value("a\nb") == "a b"
    assert safe_key_part(RUN_ID) == "manual__2026-11-30T03_00_00_00_00"


def test_only_a_suite_that_ran_and_judged_the_image_fails_it():
    from phoenix_fleet.operators.verify_operators import suite_outcome

    assert suite_outcome("Success", 0, "") == "passed"
    assert suite_outcome("Failed", 1, FAILING_OUTPUT) == "failed"
    assert suite_outcome("Failed", 4, "phoenix-image-test: result=fail exit=4 stage=instance role=web junit=x\n") == "failed"
    assert suite_outcome("Failed", 1, "FAILED test_x.py::test_y - AssertionError\n") == "failed"
    # no verdict: interrupted runner, no output, timeouts, cancels, undeliverable
    assert suite_outcome("Failed", 2, "phoenix-image-test: result=fail exit=2 stage=instance role=web junit=x\n") == "error"
    assert suite_outcome("Failed", 127, "bash: phoenix-image-test: command not found\n") == "error"
    for status in ("TimedOut", "Cancelled", "Undeliverable", "DeliveryTimedOut", "Terminated"):
        assert suite_outcome(status, -1, FAILING_OUTPUT) == "error", status


def test_template_fields():
    assert set(LaunchCanaryOperator.template_fields) == {
        "image_id", "role", "subnet_id", "instance_type", "instance_profile", "extra_tags", "aws_conn_id", "region_name",
    }
    assert set(WaitCanaryHealthyOperator.template_fields) == {"instance_id", "launch_task_id", "aws_conn_id", "region_name"}
    assert set(RunImageTestsOperator.template_fields) == {
        "image_id", "instance_id", "launch_task_id", "command", "artifacts_bucket", "aws_conn_id", "region_name",
    }
    assert set(MarkVerifiedOperator.template_fields) == {"image_id", "tests_task_id", "aws_conn_id", "region_name"}
    assert set(TerminateCanaryOperator.template_fields) == {"instance_id", "launch_task_id", "aws_conn_id", "region_name"}
    assert MarkVerifiedOperator(task_id="m", image_id="ami-1").trigger_rule == "all_done"


def test_canary_trigger_serialize_round_trip():
    from phoenix_fleet.triggers.verify_triggers import CanaryStatusOkTrigger

    trigger = CanaryStatusOkTrigger(instance_id="i-0abc", waiter_delay=5, waiter_max_attempts=6, region_name="us-east-1")
    classpath, kwargs = trigger.serialize()
    assert classpath == "phoenix_fleet.triggers.verify_triggers.CanaryStatusOkTrigger"
    assert kwargs == {
        "instance_id": "i-0abc", "waiter_delay": 5, "waiter_max_attempts": 6, "aws_conn_id": "aws_default",
        "region_name": "us-east-1",
    }
    assert rebuild_trigger(trigger).serialize() == trigger.serialize()
    assert rebuild_trigger(trigger).waiter_args == {"InstanceIds": ["i-0abc"], "IncludeAllInstances": True}


# ------------------------------------------------------------------------------------- the stage
def test_verify_success_tags_the_ami_and_terminates_the_canary(seeded, sandbox_clean, new_ami):
    ec2, s3 = sandbox_clean.client("ec2"), sandbox_clean.client("s3")
    ops, ctx = _ops(new_ami), _ctx()

    instance_id = _run_launch(ops, ctx)
    inst = _instance(ec2, instance_id)
    tags = tag_map(inst)
    assert tags["phoenix:canary"] == "true" and tags["phoenix:role"] == "web"
    assert tags["phoenix:verify-run"] == RUN_ID and tags["phoenix:version"] == VERSION
    assert inst["ImageId"] == new_ami and inst["SubnetId"] == seeded["canary_subnet"]["id"]
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["IamInstanceProfile"]["Arn"].endswith("/phoenix-canary")
    assert "KeyName" not in inst  # SSM only: a key pair would leave an authorized_keys behind

    healthy = run_task(ops["healthy"], ctx)
    assert [d["trigger"] for d in healthy.deferrals] == ["CanaryStatusOkTrigger"]
    assert healthy.deferrals[0]["timeout"] == timedelta(seconds=900)
    assert healthy.result == instance_id

    tests = run_task(ops["tests"], ctx)
    assert [d["trigger"] for d in tests.deferrals] == ["BudgetedSsmRunCommandTrigger"]
    result = tests.result
    assert result["passed"] is True and result["status"] == "Success" and result["exit_code"] == 0
    assert ctx["ti"].xcom["verify_result"] == result
    key = f"images/web/{VERSION}/verify-{safe_key_part(RUN_ID)}.txt"
    assert result["output_s3_uri"] == f"s3://phoenix-fleet-artifacts/{key}"
    body = s3.get_object(Bucket="phoenix-fleet-artifacts", Key=key)["Body"].read().decode()
    assert f"image: {new_ami}" in body and "status: Success" in body

    mark = run_task(ops["mark"], ctx).result
    assert mark["verified"] is True
    image = ec2.describe_images(ImageIds=[new_ami])["Images"][0]
    assert tag_map(image)["phoenix:verified"] == "true" and "phoenix:verified-reason" not in tag_map(image)
    assert all(t.get("phoenix:verified") == "true" for t in _snapshot_tags(ec2, new_ami))

    assert run_task(ops["terminate"], ctx).result == [instance_id]
    assert _instance(ec2, instance_id)["State"]["Name"] == "terminated"


def test_verify_failure_tags_false_with_reason_and_still_terminates(seeded, sandbox_clean, new_ami, capfd):
    ec2 = sandbox_clean.client("ec2")
    ec2.create_tags(
        Resources=[new_ami],
        Tags=[
            {"Key": "phoenix-sandbox:ssm-exit-code", "Value": "1"},
            {"Key": "phoenix-sandbox:ssm-output", "Value": FAILING_OUTPUT},
        ],
    )
    ops, ctx = _ops(new_ami), _ctx()
    instance_id = _run_launch(ops, ctx)
    run_task(ops["healthy"], ctx)

    with pytest.raises(ImageVerificationFailed) as err:
        run_task(ops["tests"], ctx)
    message = str(err.value)
    assert "test_ssh.py::test_sshd_setting[permitrootlogin]" in message and "test_role.py::test_nginx" in message
    assert "canary| phoenix-check: FAILED test_ssh.py::test_sshd_setting[permitrootlogin]" in "".join(capfd.readouterr())
    tags = tag_map(ec2.describe_images(ImageIds=[new_ami])["Images"][0])
    assert tags["phoenix:verified"] == "false"
    assert tags["phoenix:verified-reason"] == (
        "2 image check(s) failed: test_ssh.py::test_sshd_setting[permitrootlogin], test_role.py::test_nginx"
    )
    assert ctx["ti"].xcom["verify_result"]["passed"] is False

    with pytest.raises(ImageVerificationFailed, match="is not verified: 2 image check"):
        run_task(ops["mark"], ctx)
    assert tag_map(ec2.describe_images(ImageIds=[new_ami])["Images"][0])["phoenix:verified"] == "false"
    assert all(t.get("phoenix:verified") == "false" for t in _snapshot_tags(ec2, new_ami))

    assert run_task(ops["terminate"], ctx).result == [instance_id]
    assert _instance(ec2, instance_id)["State"]["Name"] == "terminated"
    assert run_task(ops["terminate"], ctx).result == []  # idempotent


def test_mark_without_a_test_result_records_an_error_not_a_verdict(seeded, sandbox_clean):
    """The canary never launched (or never got healthy): nothing was learnt about the image. The run fails, the
    reason goes in phoenix:verify-error, and phoenix:verified is left as it was (here: never set)."""
    ec2 = sandbox_clean.client("ec2")
    ami = make_image(sandbox_clean, seeded["base_ami"]["id"], "handmade-web-1", {"phoenix:role": "web"}, settle=True)
    ops, ctx = _ops(ami), _ctx()
    with pytest.raises(ImageVerificationFailed, match="did not complete"):
        run_task(ops["mark"], ctx)
    tags = tag_map(ec2.describe_images(ImageIds=[ami])["Images"][0])
    assert "phoenix:verified" not in tags and "phoenix:verified-reason" not in tags
    assert tags["phoenix:verify-error"].startswith("verification did not complete")


def _published_web(seeded: Any, sandbox_clean: Any) -> str:
    """The seeded web release: verified, and named by /phoenix/images/web/latest."""
    ami = seeded["roles"]["web"]["ami_id"]
    pointer = sandbox_clean.client("ssm").get_parameter(Name="/phoenix/images/web/latest")["Parameter"]["Value"]
    assert pointer == ami and tag_map(sandbox_clean.client("ec2").describe_images(ImageIds=[ami])["Images"][0])[
        "phoenix:verified"] == "true"
    return str(ami)


def test_a_reverify_that_never_starts_leaves_the_live_image_verified(seeded, sandbox_clean):
    """skip_bake on the AMI that latest points at, and the canary never launches: the live image must stay
    publishable (a false here would fail every Terraform plan's require_verified_image postcondition)."""
    ec2 = sandbox_clean.client("ec2")
    live = _published_web(seeded, sandbox_clean)
    ops, ctx = _ops(live), _ctx()
    with pytest.raises(ImageVerificationFailed, match="did not complete"):
        run_task(ops["mark"], ctx)
    tags = tag_map(ec2.describe_images(ImageIds=[live])["Images"][0])
    assert tags["phoenix:verified"] == "true" and "phoenix:verified-reason" not in tags
    assert tags["phoenix:verify-error"].startswith("verification did not complete")
    assert not [t for t in _snapshot_tags(ec2, live) if t.get("phoenix:verified") == "false"]


def test_an_inconclusive_ssm_run_is_an_error_not_a_verdict(seeded, sandbox_clean):
    """SSM timed out: the suite never reached a verdict. No phoenix:verified=false, the reason in
    phoenix:verify-error, and the task fails retryably (not ImageVerificationFailed)."""
    from phoenix_fleet.operators.verify_operators import VerificationIncomplete

    ec2 = sandbox_clean.client("ec2")
    ami = make_image(sandbox_clean, seeded["base_ami"]["id"], "handmade-web-2", {"phoenix:role": "web"}, settle=True)
    ec2.create_tags(Resources=[ami], Tags=[{"Key": "phoenix-sandbox:ssm-status", "Value": "TimedOut"}])
    ops, ctx = _ops(ami), _ctx()
    instance_id = _run_launch(ops, ctx)
    run_task(ops["healthy"], ctx)
    # deferred: the provider's trigger itself fails on TimedOut (the task fails, retries apply, no result)
    with pytest.raises(Exception, match="TimedOut"):
        run_task(ops["tests"], ctx)
    assert "verify_result" not in ctx["ti"].xcom
    # on the worker: the task reads the invocation and says so
    tests = RunImageTestsOperator(
        task_id="run_image_tests", image_id=ami, instance_id=instance_id, deferrable=False, poll_interval=0,
    )
    with pytest.raises(VerificationIncomplete, match="did not reach a verdict") as err:
        tests.execute(ctx)
    assert not isinstance(err.value, ImageVerificationFailed)
    assert ctx["ti"].xcom["verify_result"]["outcome"] == "error"
    tags = tag_map(ec2.describe_images(ImageIds=[ami])["Images"][0])
    assert "phoenix:verified" not in tags and "TimedOut" in tags["phoenix:verify-error"]
    with pytest.raises(ImageVerificationFailed, match="did not complete"):
        run_task(ops["mark"], ctx)
    tags = tag_map(ec2.describe_images(ImageIds=[ami])["Images"][0])
    assert "phoenix:verified" not in tags and "TimedOut" in tags["phoenix:verify-error"]


def test_failed_image_tests_on_a_published_image_do_not_demote_it(seeded, sandbox_clean):
    """Even a real failure (the suite ran and checks failed) never demotes an image the SSM pointer names: it is
    recorded in phoenix:verify-failed and the run fails loudly; the fix is a new release."""
    ec2 = sandbox_clean.client("ec2")
    live = _published_web(seeded, sandbox_clean)
    ec2.create_tags(
        Resources=[live],
        Tags=[
            {"Key": "phoenix-sandbox:ssm-exit-code", "Value": "1"},
            {"Key": "phoenix-sandbox:ssm-output", "Value": FAILING_OUTPUT},
        ],
    )
    ops, ctx = _ops(live), _ctx()
    _run_launch(ops, ctx)
    run_task(ops["healthy"], ctx)
    with pytest.raises(ImageVerificationFailed, match="not demoted") as err:
        run_task(ops["tests"], ctx)
    assert "/phoenix/images/web/latest" in str(err.value)
    with pytest.raises(ImageVerificationFailed, match="not demoted"):
        run_task(ops["mark"], ctx)
    tags = tag_map(ec2.describe_images(ImageIds=[live])["Images"][0])
    assert tags["phoenix:verified"] == "true" and "phoenix:verified-reason" not in tags
    assert tags["phoenix:verify-failed"].startswith("2 image check(s) failed: test_ssh.py::test_sshd_setting")


def test_an_image_the_release_log_names_is_not_demoted_when_ssm_no_longer_does(seeded, sandbox_clean):
    """A release older than the 100 versions SSM keeps of latest is named only by the release log in S3: its
    image tests failing on a canary still never demote it (the log is read, not only the pointer's history)."""
    from phoenix_fleet.release.release_log import PUBLISHED, ReleaseRecord, record_key

    ec2, s3 = sandbox_clean.client("ec2"), sandbox_clean.client("s3")
    old = make_image(
        sandbox_clean, seeded["base_ami"]["id"], "phoenix-web-2026.01.05-1",
        {"phoenix:role": "web", "phoenix:version": "2026.01.05-1", "phoenix:verified": "true"}, settle=True,
    )
    ec2.create_tags(Resources=[old], Tags=[
        {"Key": "phoenix-sandbox:ssm-exit-code", "Value": "1"},
        {"Key": "phoenix-sandbox:ssm-output", "Value": FAILING_OUTPUT},
    ])
    history = sandbox_clean.client("ssm").get_parameter_history(Name="/phoenix/images/web/latest")["Parameters"]
    assert old not in [h["Value"] for h in history]
    rec = ReleaseRecord(role="web", version="2026.01.05-1", amis={"us-east-1": old}, home_region="us-east-1",
                        state=PUBLISHED, published_by="manual__january")
    s3.put_object(Bucket="phoenix-fleet-artifacts", Key=record_key("web", "2026.01.05-1"), Body=rec.to_json().encode())
    ops, ctx = _ops(old), _ctx()
    _run_launch(ops, ctx)
    run_task(ops["healthy"], ctx)
    with pytest.raises(ImageVerificationFailed, match="not demoted") as err:
        run_task(ops["tests"], ctx)
    assert "release log s3://phoenix-fleet-artifacts/images/web/2026.01.05-1/release.json" in str(err.value)
    tags = tag_map(ec2.describe_images(ImageIds=[old])["Images"][0])
    assert tags["phoenix:verified"] == "true" and "phoenix:verify-failed" in tags

    # the same record rolled back (a publish that was undone) is no evidence: a real failure demotes
    rec.state = "rolled-back"
    s3.put_object(Bucket="phoenix-fleet-artifacts", Key=record_key("web", "2026.01.05-1"), Body=rec.to_json().encode())
    ops, ctx = _ops(old), make_context(run_id="manual__again", task_id="verify")
    _run_launch(ops, ctx)
    run_task(ops["healthy"], ctx)
    with pytest.raises(ImageVerificationFailed) as err:
        run_task(ops["tests"], ctx)
    assert "not demoted" not in str(err.value)
    assert tag_map(ec2.describe_images(ImageIds=[old])["Images"][0])["phoenix:verified"] == "false"


def test_a_pass_clears_earlier_errors(seeded, sandbox_clean, new_ami):
    ec2 = sandbox_clean.client("ec2")
    ec2.create_tags(Resources=[new_ami], Tags=[{"Key": "phoenix:verify-error", "Value": "an earlier SSM timeout"}])
    ops, ctx = _ops(new_ami), _ctx()
    _run_launch(ops, ctx)
    run_task(ops["healthy"], ctx)
    run_task(ops["tests"], ctx)
    assert run_task(ops["mark"], ctx).result["verified"] is True
    tags = tag_map(ec2.describe_images(ImageIds=[new_ami])["Images"][0])
    assert tags["phoenix:verified"] == "true" and "phoenix:verify-error" not in tags


def test_launch_is_idempotent_per_run(seeded, sandbox_clean, new_ami):
    first = run_task(_ops(new_ami)["launch"], _ctx()).result
    again = run_task(_ops(new_ami)["launch"], _ctx()).result
    other = run_task(_ops(new_ami)["launch"], make_context(run_id="another-run")).result
    assert again == first and other != first


def test_teardown_finds_the_canary_by_tag_after_a_kill_mid_launch(seeded, sandbox_clean, new_ami):
    ec2 = sandbox_clean.client("ec2")
    # the launch task died after RunInstances, before returning the id: only the tags know
    orphan = ec2.run_instances(
        ImageId=new_ami, MinCount=1, MaxCount=1, InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "phoenix:canary", "Value": "true"}, {"Key": "phoenix:verify-run", "Value": RUN_ID},
        ]}],
    )["Instances"][0]["InstanceId"]
    bystander = ec2.run_instances(ImageId=new_ami, MinCount=1, MaxCount=1, InstanceType="t3.small")["Instances"][0]["InstanceId"]
    op = TerminateCanaryOperator(task_id="terminate_canary", launch_task_id="launch_canary", poll_interval=0)
    assert run_task(op, _ctx()).result == [orphan]  # no XCom from launch: found by tag
    assert _instance(ec2, orphan)["State"]["Name"] == "terminated"
    assert _instance(ec2, bystander)["State"]["Name"] != "terminated"


def test_short_waits_are_polled_inline_and_never_deferred(seeded, sandbox_clean, new_ami):
    """Status checks and an SSM command that end within the inline bound finish on the worker: no deferral, so
    no resume for the scheduler to race (docs/e2e.md). A failing suite and an impaired canary fail the same way
    inline as through the triggers."""
    sandbox_clean.update_config(instance_status_checks={"describes": 3}, ssm_command={"describes": 3})
    ops, ctx = _ops(new_ami, inline_wait=5), _ctx()  # 50 checks without sleeping (describe-count latencies)
    instance_id = _run_launch(ops, ctx)
    healthy = run_task(ops["healthy"], ctx)
    assert healthy.deferrals == [] and healthy.result == instance_id
    tests = run_task(ops["tests"], ctx)
    assert tests.deferrals == [] and tests.result["passed"] is True and tests.result["status"] == "Success"
    assert run_task(ops["mark"], ctx).result["verified"] is True

    ec2 = sandbox_clean.client("ec2")
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "phoenix-sandbox:ssm-output", "Value": FAILING_OUTPUT},
                                                  {"Key": "phoenix-sandbox:ssm-exit-code", "Value": "1"}])
    with pytest.raises(ImageVerificationFailed, match="test_role.py::test_nginx"):
        ops["tests"].execute(ctx)  # no TaskDeferred: the suite's failure came back inline
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "phoenix-sandbox:status-check", "Value": "impaired"}])
    with pytest.raises(CanaryError, match=f"canary {instance_id} did not pass its status checks"):
        ops["healthy"].execute(ctx)


def test_a_long_wait_is_polled_inline_up_to_the_bound_then_deferred(seeded, sandbox_clean, new_ami):
    sandbox_clean.update_config(instance_status_checks={"describes": 30}, ssm_command={"describes": 30})
    ops, ctx = _ops(new_ami, inline_wait=1), _ctx()  # 10 inline checks, then the trigger
    _run_launch(ops, ctx)
    assert [d["trigger"] for d in run_task(ops["healthy"], ctx).deferrals] == ["CanaryStatusOkTrigger"]
    tests = run_task(ops["tests"], ctx)
    assert [d["trigger"] for d in tests.deferrals] == ["BudgetedSsmRunCommandTrigger"] and tests.result["passed"] is True


def test_impaired_canary_fails_the_health_wait(seeded, sandbox_clean, new_ami):
    ec2 = sandbox_clean.client("ec2")
    ops, ctx = _ops(new_ami), _ctx()
    instance_id = _run_launch(ops, ctx)
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "phoenix-sandbox:status-check", "Value": "impaired"}])
    with pytest.raises(CanaryError, match=f"canary {instance_id} is running .*impaired"):
        run_task(ops["healthy"], ctx)


def test_no_matching_canary_subnet_names_the_config_field(sandbox_clean):
    ec2 = sandbox_clean.client("ec2")
    source = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    from tests.helpers.image_support import make_image as mk

    ami = mk(sandbox_clean, source, f"phoenix-web-{VERSION}", {"phoenix:role": "web"}, settle=True)
    op = LaunchCanaryOperator(task_id="launch_canary", image_id=ami, role="web")
    with pytest.raises(ValueError, match=r"roles\.web\.image\.canary_subnet_tags: no subnet in us-east-1 has the tags"):
        op.execute(_ctx())


def test_non_deferrable_stage(seeded, sandbox_clean, new_ami):
    ops, ctx = _ops(new_ami), _ctx()
    instance_id = _run_launch(ops, ctx)
    healthy = WaitCanaryHealthyOperator(task_id="h", instance_id=instance_id, deferrable=False, poll_interval=0)
    assert healthy.execute(ctx) == instance_id
    tests = RunImageTestsOperator(
        task_id="t", image_id=new_ami, instance_id=instance_id, deferrable=False, poll_interval=0, upload_output=False,
    )
    result = tests.execute(ctx)
    assert result["passed"] is True and result["output_s3_uri"] is None


# ---------------------------------------------------------------------------------------- canary bound
def test_launch_tags_the_canary_with_its_bound(seeded, sandbox_clean, new_ami):
    import datetime as dt

    ops, ctx = _ops(new_ami), _ctx()
    ops["launch"].max_lifetime = timedelta(hours=5, minutes=55)
    before = dt.datetime.now(dt.UTC)
    instance_id = _run_launch(ops, ctx)
    expires = dt.datetime.fromisoformat(tag_map(_instance(sandbox_clean.client("ec2"), instance_id))["phoenix:canary-expires"])
    assert before + timedelta(hours=5, minutes=55) - timedelta(seconds=2) <= expires
    assert expires <= dt.datetime.now(dt.UTC) + timedelta(hours=5, minutes=55)


def test_the_sweep_ends_only_canaries_past_their_bound(seeded, sandbox_clean, new_ami):
    """A canary whose run ended without its teardown (dagrun_timeout skips it) is terminated by the next release's
    sweep once past its bound; a canary of a live run, and any other instance, is left alone; a dry run only
    reports."""
    import datetime as dt

    from phoenix_fleet.canaries import sweep_expired_canaries

    ec2 = sandbox_clean.client("ec2")
    now = dt.datetime.now(dt.UTC)

    def launch(tags: dict[str, str]) -> str:
        return ec2.run_instances(
            ImageId=new_ami, MinCount=1, MaxCount=1, InstanceType="t3.small",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )["Instances"][0]["InstanceId"]

    ours = {"phoenix:canary": "true", "phoenix:managed-by": "phoenix-fleet", "phoenix:role": "web"}
    orphan = launch({**ours, "phoenix:verify-run": "timed-out", "phoenix:canary-expires": (now - timedelta(minutes=5)).isoformat()})
    live = launch({**ours, "phoenix:verify-run": "running", "phoenix:canary-expires": (now + timedelta(hours=5)).isoformat()})
    bystander = launch({"phoenix:role": "web", "phoenix:canary-expires": (now - timedelta(hours=1)).isoformat()})
    sandbox_clean.settle()

    dry = sweep_expired_canaries(ec2, now, dry_run=True)
    assert [c["instance_id"] for c in dry] == [orphan] and dry[0]["terminated"] is False
    assert _instance(ec2, orphan)["State"]["Name"] == "running"

    swept = sweep_expired_canaries(ec2, now)
    assert [(c["instance_id"], c["verify_run"], c["terminated"]) for c in swept] == [(orphan, "timed-out", True)]
    assert _instance(ec2, orphan)["State"]["Name"] in ("shutting-down", "terminated")
    assert _instance(ec2, live)["State"]["Name"] == "running"
    assert _instance(ec2, bystander)["State"]["Name"] == "running"
    assert sweep_expired_canaries(ec2, now) == []
