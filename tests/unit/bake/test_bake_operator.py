"""PackerBuildOperator against the Packer double and the sandbox: build, reuse, pending, failed, on_kill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from phoenix_fleet.operators.bake_operators import PackerBuildOperator, manifest_key, packages_key

from tests.helpers.airflow_run import make_context, run_task
from tests.helpers.image_support import REPO, make_image, tag_map

VERSION = "2026.11.30-1"
NAME = f"phoenix-web-{VERSION}"


def _op(**kwargs: Any) -> PackerBuildOperator:
    kwargs.setdefault("task_id", "bake")
    kwargs.setdefault("role", "web")
    kwargs.setdefault("version", VERSION)
    kwargs.setdefault("git_sha", "abc1234")
    kwargs.setdefault("poll_interval", 0)
    kwargs.setdefault("tag_grace_seconds", 0)
    return PackerBuildOperator(**kwargs)


def _images(ec2: Any) -> list[dict[str, Any]]:
    by_name = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [NAME]}])["Images"]
    return sorted(by_name, key=lambda i: i["ImageId"])


def _builds(packer_env: Any) -> int:
    return sum(1 for argv in packer_env.invocations() if argv and argv[0] == "build")


def test_template_fields():
    assert set(PackerBuildOperator.template_fields) == {
        "role", "version", "template", "git_sha", "build_run", "extra_vars", "subnet_id", "ami_name",
        "artifacts_bucket", "aws_conn_id", "packer_aws_conn_id", "region_name",
    }


def test_bake_builds_tags_and_uploads(seeded, packer_env, sandbox_clean):
    ctx = make_context(run_id="scheduled__2026-11-30T03:00:00+00:00")
    record = run_task(_op(), ctx)
    out = record.result
    ec2, s3 = sandbox_clean.client("ec2"), sandbox_clean.client("s3")

    (image,) = _images(ec2)
    assert out["ami_id"] == image["ImageId"] and out["reused"] is False
    assert out["artifacts"] == {"us-east-1": image["ImageId"]} and out["region"] == "us-east-1"
    tags = tag_map(image)
    assert tags["phoenix:role"] == "web" and tags["phoenix:version"] == VERSION
    assert tags["phoenix:source-ami"] == seeded["base_ami"]["id"] == out["source_ami"]
    assert tags["phoenix:build-run"] == "scheduled__2026-11-30T03:00:00+00:00" == out["build_run"]
    assert tags["phoenix:git-sha"] == "abc1234" and tags["phoenix:verified"] == "false"
    assert tags["phoenix:build-inputs"].startswith("sha256:")
    assert out["manifest"]["artifact_id"] == f"us-east-1:{image['ImageId']}"

    assert out["bucket"] == "phoenix-fleet-artifacts"
    assert out["manifest_s3_key"] == manifest_key("web", VERSION) == f"images/web/{VERSION}/manifest-web-{VERSION}.json"
    assert out["packages_s3_key"] == packages_key("web", VERSION) == f"images/web/{VERSION}/packages-web-{VERSION}.tsv"
    manifest = json.loads(s3.get_object(Bucket=out["bucket"], Key=out["manifest_s3_key"])["Body"].read())
    assert manifest["builds"][-1]["artifact_id"] == out["manifest"]["artifact_id"]
    packages = s3.get_object(Bucket=out["bucket"], Key=out["packages_s3_key"])["Body"].read().decode()
    assert len(packages.splitlines()) == out["packages_count"] > 50

    # the fleet config's variables reached Packer: owners-pinned base filter, one region, the canary subnet
    build_argv = next(argv for argv in packer_env.invocations() if argv[0] == "build")
    assert 'base_ami_owners=["self"]' in build_argv and "base_ami_name=phoenix-base-debian-12-*" in build_argv
    assert 'regions=["us-east-1"]' in build_argv and "instance_type=t3.small" in build_argv
    assert f"subnet_id={seeded['canary_subnet']['id']}" in build_argv


def test_retry_reuses_the_available_ami(seeded, packer_env, sandbox_clean):
    first = run_task(_op(), make_context(run_id="run-1")).result
    second = run_task(_op(), make_context(run_id="run-1")).result
    assert second["reused"] is True and second["ami_id"] == first["ami_id"]
    assert second["manifest"] == first["manifest"] and second["packages_s3_key"] == first["packages_s3_key"]
    assert second["packages_count"] == first["packages_count"]
    assert len(_images(sandbox_clean.client("ec2"))) == 1
    assert _builds(packer_env) == 1


def _own_build_tags(op: PackerBuildOperator, ctx: dict[str, Any], sandbox: Any) -> dict[str, str]:
    """The tags a build of this task (same run, same inputs) leaves on its AMI."""
    from phoenix_fleet.operators.bake_operators import INPUTS_TAG

    variables = op._variables(ctx, sandbox.client("ec2"), op._template_path())
    return {
        "phoenix:role": "web", "phoenix:version": VERSION, "phoenix:build-run": variables["build_run"],
        "phoenix:git-sha": variables["git_sha"], INPUTS_TAG: variables["build_inputs"], "phoenix:verified": "false",
    }


def test_reuse_without_uploaded_artifacts_rebuilds_the_manifest_from_tags(seeded, packer_env, sandbox_clean):
    op, ctx = _op(git_sha="f00"), make_context()
    ami = make_image(sandbox_clean, seeded["base_ami"]["id"], NAME, _own_build_tags(op, ctx, sandbox_clean), settle=True)
    out = run_task(op, ctx).result
    assert out["reused"] is True and out["ami_id"] == ami
    assert out["manifest"]["reconstructed"] is True and out["manifest"]["custom_data"]["git_sha"] == "f00"
    assert out["packages_s3_key"] is None and out["manifest_s3_key"] is None
    assert _builds(packer_env) == 0


def test_pending_ami_of_an_earlier_try_is_waited_for_then_reused(seeded, packer_env, sandbox_clean):
    sandbox_clean.update_config(image_build={"describes": 4})
    op, ctx = _op(), make_context()
    ami = make_image(sandbox_clean, seeded["base_ami"]["id"], NAME, _own_build_tags(op, ctx, sandbox_clean))
    record = run_task(op, ctx)
    assert [d["trigger"] for d in record.deferrals] == ["AmiAvailableTrigger"]
    assert record.deferrals[0]["event"] == {"status": "success", "image_id": ami}
    assert record.deferrals[0]["timeout"].total_seconds() == 3600
    assert record.result["reused"] is True and record.result["ami_id"] == ami
    assert _builds(packer_env) == 0


def test_failed_ami_of_an_earlier_try_is_deregistered_and_rebuilt(seeded, packer_env, sandbox_clean):
    ec2 = sandbox_clean.client("ec2")
    bad = make_image(
        sandbox_clean, seeded["base_ami"]["id"], NAME,
        {"phoenix:role": "web", "phoenix:version": VERSION, "phoenix-sandbox:fail": "true"},
    )
    record = run_task(_op(), make_context())
    # it was pending when the task looked: the task deferred, the trigger saw it fail
    assert record.deferrals and record.deferrals[0]["event"]["state"] == "failed"
    assert "injected image failure" in record.deferrals[0]["event"]["message"]
    out = record.result
    assert out["reused"] is False and out["ami_id"] != bad
    assert [i["ImageId"] for i in _images(ec2)] == [out["ami_id"]]
    assert _builds(packer_env) == 1


def test_another_runs_image_of_the_version_is_never_reused(seeded, packer_env, sandbox_clean):
    """Run B with the same explicit version and a new base AMI must not take run A's (failed) image as its own:
    the task refuses, builds nothing, and leaves A's image alone."""
    from airflow.sdk.exceptions import AirflowFailException

    ec2 = sandbox_clean.client("ec2")
    first = run_task(_op(), make_context(run_id="run-A")).result
    ec2.create_tags(Resources=[first["ami_id"]], Tags=[{"Key": "phoenix:verified-reason", "Value": "2 checks failed"}])
    other_base = {"base_ami_name": "phoenix-base-debian-12-*", "base_ami_owners": ["self", "123456789012"]}
    with pytest.raises(AirflowFailException, match=r"already baked as .* by run run-A") as err:
        run_task(_op(extra_vars=other_base), make_context(run_id="run-B"))
    assert "Fix: release under a new version" in str(err.value)
    assert _builds(packer_env) == 1
    assert [i["ImageId"] for i in _images(ec2)] == [first["ami_id"]]


def test_the_same_run_with_other_inputs_does_not_reuse_its_image(seeded, packer_env, sandbox_clean):
    from airflow.sdk.exceptions import AirflowFailException

    first = run_task(_op(git_sha="abc1234"), make_context(run_id="run-A")).result
    with pytest.raises(AirflowFailException, match="built from other inputs"):
        run_task(_op(git_sha="def5678"), make_context(run_id="run-A"))
    assert _builds(packer_env) == 1
    assert [i["ImageId"] for i in _images(sandbox_clean.client("ec2"))] == [first["ami_id"]]


def test_untagged_available_ami_is_incomplete_and_rebuilt(seeded, packer_env, sandbox_clean):
    orphan = make_image(sandbox_clean, seeded["base_ami"]["id"], NAME, {}, settle=True)
    out = run_task(_op(), make_context()).result
    assert out["reused"] is False and out["ami_id"] != orphan
    assert [i["ImageId"] for i in _images(sandbox_clean.client("ec2"))] == [out["ami_id"]]


def test_an_ami_with_only_packers_run_tags_is_incomplete_and_rebuilt(seeded, packer_env, sandbox_clean):
    """Packer tags the image with the template's run_tags in CreateImage: an image whose Packer died before the final
    tags carries role, version and this run, but not the build's inputs. It is this run's unfinished build: deregistered
    (its tags allow the worker to) and built again, not refused as "built from other inputs"."""
    op, ctx = _op(), make_context()
    run_tags = {"Name": f"phoenix-build-web-{VERSION}", "phoenix:role": "web", "phoenix:version": VERSION,
                "phoenix:build-run": ctx["run_id"], "phoenix:managed-by": "phoenix-fleet"}
    orphan = make_image(sandbox_clean, seeded["base_ami"]["id"], NAME, run_tags, settle=True)
    out = run_task(op, ctx).result
    assert out["reused"] is False and out["ami_id"] != orphan
    assert [i["ImageId"] for i in _images(sandbox_clean.client("ec2"))] == [out["ami_id"]]
    assert _builds(packer_env) == 1


def test_packer_failure_fails_the_task_with_the_error_lines(seeded, packer_env, sandbox_clean, monkeypatch):
    from phoenix_fleet.hooks.packer_hook import PackerBuildError

    monkeypatch.setenv("PHOENIX_PACKER_DOUBLE_FAIL", "provision")
    with pytest.raises(PackerBuildError, match="Script exited with non-zero exit status") as err:
        run_task(_op(), make_context())
    assert "phoenix-check: FAILED test_ssh.py::" in str(err.value)
    assert _images(sandbox_clean.client("ec2")) == []


def test_no_base_ami_fails_at_once_naming_the_field(seeded, packer_env, sandbox_clean):
    """A base image that matches nothing is bad input: AirflowFailException (no retry), naming where the name
    came from: the trigger form's override, else the role's config (its AMI deregistered since)."""
    from airflow.sdk.exceptions import AirflowFailException

    override = {"base_ami_name": "../../etc", "base_ami_owners": ["self"]}
    with pytest.raises(AirflowFailException, match=r"params.base_ami_name: Packer found no base AMI named "
                       r"'../../etc' owned by \['self'\] in us-east-1. Fix: .*retrying cannot help"):
        run_task(_op(extra_vars=override), make_context())
    sandbox_clean.client("ec2").deregister_image(ImageId=seeded["base_ami"]["id"])
    with pytest.raises(AirflowFailException, match=r"roles.web.image.base_ami: Packer found no base AMI named "
                       r"'phoenix-base-debian-12-\*'"):
        run_task(_op(), make_context())
    assert _builds(packer_env) == 2 and _images(sandbox_clean.client("ec2")) == []


def test_bad_version_is_refused_before_anything_runs(packer_env):
    with pytest.raises(ValueError, match=r"version: '1; rm -rf /' is not a release version. Fix: use YYYY.MM.DD-N"):
        _op(version="1; rm -rf /").execute(make_context())
    assert packer_env.invocations() == []


def test_unknown_role_names_the_fix(packer_env):
    with pytest.raises(ValueError, match="role 'nope' is not in the fleet config. Fix: use one of"):
        _op(role="nope").execute(make_context())


def test_on_kill_forwards_to_the_hook():
    op = _op()
    op.on_kill()  # nothing running: no-op

    class _Hook:
        killed = False

        def on_kill(self) -> None:
            self.killed = True

    op._hook = _Hook()
    op.on_kill()
    assert op._hook.killed


def test_operator_and_sensor_modules_are_import_light():
    code = (
        "import sys, airflow.sdk\n"
        "before = set(sys.modules)\n"
        "import phoenix_fleet.operators.bake_operators, phoenix_fleet.operators.verify_operators\n"
        "import phoenix_fleet.sensors.ami_sensors\n"
        "heavy = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('boto3', 'botocore', 'aiobotocore')"
        " or m.startswith('airflow.providers.amazon') or m.startswith('phoenix_fleet.hooks')"
        " or m.startswith('phoenix_fleet.triggers'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------ the task is stopped while Packer builds
def _live_in_group(pgid: int) -> list[str]:
    """Processes of a process group that are not zombies."""
    import os

    live = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(entry)
    return live


def _builder_leftovers(ec2: Any) -> dict[str, Any]:
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [f"phoenix-build-web-{VERSION}"]}])
    builders = [i for r in reservations["Reservations"] for i in r["Instances"]]
    return {
        "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]],
        "security_groups": [
            g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"].startswith("packer_")
        ],
        "live_builders": [i["InstanceId"] for i in builders if i["State"]["Name"] not in ("terminated", "shutting-down")],
        "images": [i["ImageId"] for i in _images(ec2)],
    }


def _stop_the_task_while_packer_provisions(packer_env: Any, ec2: Any, signum: int, op: PackerBuildOperator) -> tuple[BaseException, int]:
    """Run the bake the way the task runner does (execution_timeout armed), and deliver ``signum`` to this process
    once Packer's builder runs and its key pair exists, as the alarm of execution_timeout or a worker's SIGINT
    would. Returns the exception the task raised and Packer's process group."""
    import os
    import threading
    import time

    from airflow.sdk.execution_time.task_runner import _run_execute_callable

    from tests.helpers.image_support import poll

    def deliver() -> None:
        try:
            poll(lambda: _builder_leftovers(ec2)["live_builders"] and _builder_leftovers(ec2)["key_pairs"], timeout=120)
        except AssertionError:
            return
        time.sleep(0.2)
        os.kill(os.getpid(), signum)

    sender = threading.Thread(target=deliver, daemon=True)
    sender.start()
    raised: BaseException | None = None
    try:
        _run_execute_callable(make_context(), op.execute, op)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it (KeyboardInterrupt included)
        raised = exc
    sender.join(timeout=5)
    builds = [json.loads(line) for line in packer_env.argv_log.read_text().splitlines() if '"build"' in line]
    pgid = builds[-1]["pid"]
    assert raised is not None, "the task was not stopped"
    return raised, pgid


@pytest.mark.parametrize("signum", ["SIGALRM", "SIGINT"], ids=["execution_timeout", "worker_sigint"])
def test_a_stopped_task_leaves_no_packer_and_no_builder(seeded, packer_env, sandbox_clean, monkeypatch, signum):
    """execution_timeout (SIGALRM raises AirflowTaskTimeout inside execute, on_kill only afterwards) and the SIGINT a
    worker shutdown forwards (KeyboardInterrupt) must each stop Packer and let it delete its builder, key pair and
    security group before the task lets go of it."""
    import os
    import signal
    from datetime import timedelta

    from airflow.sdk.exceptions import AirflowTaskTimeout

    monkeypatch.setenv("PHOENIX_PACKER_DOUBLE_DELAY", "600")
    ec2 = sandbox_clean.client("ec2")
    op = _op(execution_timeout=timedelta(hours=2), kill_grace_seconds=60)
    sig = getattr(signal, signum)
    pgid = 0
    try:
        raised, pgid = _stop_the_task_while_packer_provisions(packer_env, ec2, sig, op)
        assert isinstance(raised, AirflowTaskTimeout if signum == "SIGALRM" else KeyboardInterrupt), repr(raised)
        assert _live_in_group(pgid) == [], "packer still runs after the task stopped"
        assert _builder_leftovers(ec2) == {"key_pairs": [], "security_groups": [], "live_builders": [], "images": []}
    finally:
        if pgid and _live_in_group(pgid):
            os.killpg(pgid, signal.SIGKILL)


# ------------------------------------------------------------------------------------- Packer's environment
FAKE_SECRETS = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:fake-secret-db-7f3a@db/airflow",
    "AIRFLOW__CORE__FERNET_KEY": "fake-secret-fernet-91bc",
    "AIRFLOW_CONN_VAULT": "vault://approle:fake-secret-conn-5d2e@vault:8200",
    "AIRFLOW_VAR_SLACK_TOKEN": "fake-secret-var-0c41",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/fake-secret-webhook-a8d0",
}


def test_packer_gets_an_allow_listed_environment_and_no_worker_secret(seeded, packer_env, sandbox_clean, monkeypatch, capfd):
    """Secrets planted in the worker's environment reach neither Packer's environment (each invocation: init,
    validate, build) nor the task log; the AWS credentials of the connection and what Packer needs do."""
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(name, value)
    out = run_task(_op(), make_context()).result
    assert out["reused"] is False

    logged = [json.loads(line) for line in packer_env.argv_log.read_text().splitlines() if line.strip()]
    assert [e["argv"][0] for e in logged] == ["init", "validate", "build"]
    for entry in logged:
        env = entry["env"]
        leaked = {k for k, v in env.items() if k in FAKE_SECRETS or any(s in v for s in FAKE_SECRETS.values())}
        assert leaked == set(), f"packer {entry['argv'][0]} got worker secrets: {sorted(leaked)}"
        assert not [k for k in env if k.startswith("AIRFLOW")], sorted(env)
        # what it needs: the connection's credentials, region and endpoint, PATH and HOME, Packer's own settings
        assert env["AWS_ACCESS_KEY_ID"] == "testing" and env["AWS_SECRET_ACCESS_KEY"] == "testing"
        assert env["AWS_REGION"] == "us-east-1" and env["AWS_ENDPOINT_URL"] == sandbox_clean.endpoint_url
        assert env["PATH"] and env["HOME"] and env["CHECKPOINT_DISABLE"] == "1"
        assert env["PACKER_PLUGIN_PATH"] == str(packer_env.tmp / "packer-plugins")
    captured = capfd.readouterr()
    log_text = captured.out + captured.err
    assert "Creating temporary keypair" in log_text  # Packer's output is in the task log ...
    assert not [s for s in FAKE_SECRETS.values() if s in log_text]  # ... and no secret is


def test_packer_runs_as_the_packer_connection(seeded, packer_env, sandbox_clean, monkeypatch):
    """Packer gets the credentials of packer_aws_conn_id (the Packer builder's principal), the task's own calls stay
    on aws_conn_id; with neither set, Packer runs as the task's connection."""
    conn = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_AWS_PACKER", json.dumps({**conn, "login": "packer-key", "password": "packer-secret"}))
    op = _op(packer_aws_conn_id="aws_packer")
    assert "packer_aws_conn_id" in PackerBuildOperator.template_fields and op.packer_conn_id() == "aws_packer"
    run_task(op, make_context())
    logged = [json.loads(line) for line in packer_env.argv_log.read_text().splitlines() if line.strip()]
    build = [e["env"] for e in logged if e["argv"][0] == "build"][0]
    assert (build["AWS_ACCESS_KEY_ID"], build["AWS_SECRET_ACCESS_KEY"]) == ("packer-key", "packer-secret")
    assert _op().packer_conn_id() == "aws_default"


def test_an_env_allow_list_entry_cannot_open_airflow_secrets(packer_env, monkeypatch):
    from phoenix_fleet.hooks.packer_hook import PackerError, PackerHook

    monkeypatch.setenv("PHOENIX_PACKER_ENV_ALLOW", "MY_TOOL_*,AIRFLOW_CONN_*")
    with pytest.raises(PackerError, match=r"PHOENIX_PACKER_ENV_ALLOW: 'AIRFLOW_CONN_\*' would pass Airflow's"):
        PackerHook().environment()
