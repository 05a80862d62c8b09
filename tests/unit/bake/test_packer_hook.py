"""PackerHook against the Packer double and the sandbox: build, failure, SIGINT cleanup, hostile values."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from phoenix_fleet.hooks.packer_hook import (
    PackerBuildError,
    PackerError,
    PackerHook,
    parse_artifact_id,
    parse_machine_line,
    var_args,
)

from tests.helpers.image_support import TEMPLATE, poll, tag_map

VERSION = "2026.11.30-1"


def _vars(**extra: Any) -> dict[str, Any]:
    return {"role": "web", "version": VERSION, "build_run": "manual__test", "git_sha": "abc1234", **extra}


def _images(ec2: Any, name: str) -> list[dict[str, Any]]:
    return ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]


def _builders(ec2: Any, version: str = VERSION) -> list[dict[str, Any]]:
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [f"phoenix-build-web-{version}"]}])
    return [i for r in reservations["Reservations"] for i in r["Instances"]]


def _leftovers(ec2: Any) -> dict[str, Any]:
    return {
        "key_pairs": [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]],
        "security_groups": [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"],
        "live_builders": [i["InstanceId"] for i in _builders(ec2) if i["State"]["Name"] != "terminated"],
    }


# ------------------------------------------------------------------------------------------- pure
def test_parse_machine_line_unescapes_commas_and_newlines():
    ml = parse_machine_line("1700000000,phoenix.amazon-ebs.phoenix,artifact,0,string,AMIs were created:\\nus-east-1: ami-1%!(PACKER_COMMA) ok\\n")
    assert ml is not None
    assert (ml.timestamp, ml.target, ml.type) == (1700000000, "phoenix.amazon-ebs.phoenix", "artifact")
    assert ml.data == ("0", "string", "AMIs were created:\nus-east-1: ami-1, ok\n")
    assert parse_machine_line("==> not machine readable") is None
    assert parse_machine_line("") is None


def test_parse_artifact_id_multi_region():
    assert parse_artifact_id("eu-west-1:ami-2,us-east-1:ami-1") == {"eu-west-1": "ami-2", "us-east-1": "ami-1"}
    assert parse_artifact_id("") == {}


def test_var_args_literal_strings_and_hcl_for_the_rest():
    args = var_args({"version": "1; rm -rf /", "regions": ["us-east-1"], "n": 8, "flag": True, "skip": None})
    assert args == ["-var", "version=1; rm -rf /", "-var", 'regions=["us-east-1"]', "-var", "n=8", "-var", "flag=true"]
    with pytest.raises(PackerError, match="variable name"):
        var_args({"x=y": "1"})


def test_missing_binary_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PHOENIX_PACKER_BIN", raising=False)
    with pytest.raises(PackerError, match="packer not found on PATH"):
        PackerHook(working_dir=tmp_path).find_packer()
    with pytest.raises(PackerError, match="not an executable file"):
        PackerHook(packer_bin=str(tmp_path / "nope"), working_dir=tmp_path).find_packer()


# ------------------------------------------------------------------------------------ against the double
def test_build_success_parses_artifacts_manifest_and_packages(seeded, packer_env, sandbox_clean, tmp_path):
    ec2 = sandbox_clean.client("ec2")
    hook = PackerHook(working_dir=tmp_path / "work")
    assert hook.version() == "1.11.2"
    result = hook.build(TEMPLATE, _vars())

    (ami_id,) = result.artifacts.values()
    assert list(result.artifacts) == ["us-east-1"]
    (image,) = _images(ec2, f"phoenix-web-{VERSION}")
    assert image["ImageId"] == ami_id and image["State"] == "available"
    tags = tag_map(image)
    assert tags == {
        "Name": f"phoenix-web-{VERSION}",
        "phoenix:role": "web",
        "phoenix:version": VERSION,
        "phoenix:source-ami": seeded["base_ami"]["id"],
        "phoenix:source-ami-name": seeded["base_ami"]["name"],
        "phoenix:build-run": "manual__test",
        "phoenix:git-sha": "abc1234",
        "phoenix:build-inputs": "",  # the operator computes it; the hook passes what it is given
        "phoenix:verified": "false",
        "phoenix:managed-by": "phoenix-fleet",
    }
    assert result.manifest is not None
    assert result.manifest["artifact_id"] == f"us-east-1:{ami_id}"
    assert result.manifest["builder_type"] == "amazon-ebs" and result.manifest["name"] == "phoenix"
    assert result.manifest["custom_data"]["source_ami"] == seeded["base_ami"]["id"]
    assert result.manifest_path is not None and result.manifest_path.name == f"manifest-web-{VERSION}.json"
    data = json.loads(result.manifest_path.read_text())
    assert data["last_run_uuid"] == result.manifest["packer_run_uuid"]
    assert result.packages_path is not None and result.packages_path.name == f"packages-web-{VERSION}.tsv"
    lines = result.packages_path.read_text().splitlines()
    assert len(lines) > 50 and all(len(line.split("\t")) == 2 for line in lines)
    assert any(line.startswith("nginx\t") for line in lines)
    # the human text went to the log, decoded
    assert f"==> phoenix.amazon-ebs.phoenix: Creating AMI phoenix-web-{VERSION} from instance" in "\n".join(result.output)
    assert "No volumes to clean up, skipping" in "\n".join(result.output)  # %!(PACKER_COMMA) decoded
    # the builder is gone, and so are the temporary key pair and security group
    assert _leftovers(ec2) == {"key_pairs": [], "security_groups": [], "live_builders": []}
    (builder,) = _builders(ec2)
    assert builder["MetadataOptions"]["HttpTokens"] == "required"
    # init, validate, build: each an argv list
    assert [argv[0] for argv in packer_env.invocations()] == ["version", "init", "validate", "build"]
    build_argv = packer_env.invocations()[-1]
    assert build_argv[:3] == ["build", "-machine-readable", "-color=false"] and build_argv[-1] == str(TEMPLATE)


def test_build_failure_raises_with_packer_error_lines_and_cleans_up(seeded, packer_env, sandbox_clean, tmp_path, monkeypatch):
    monkeypatch.setenv("PHOENIX_PACKER_DOUBLE_FAIL", "provision:test_ssh.py::test_sshd_setting[permitrootlogin]")
    ec2 = sandbox_clean.client("ec2")
    with pytest.raises(PackerBuildError) as err:
        PackerHook(working_dir=tmp_path).build(TEMPLATE, _vars())
    e = err.value
    assert e.returncode == 1 and not e.cancelled
    assert e.errors == ["phoenix.amazon-ebs.phoenix: Script exited with non-zero exit status: 1. Allowed exit codes are: [0]"]
    assert "Script exited with non-zero exit status: 1" in str(e)
    assert any("phoenix-check: FAILED test_ssh.py::test_sshd_setting[permitrootlogin]" in c for c in e.failed_checks)
    assert "test_sshd_setting[permitrootlogin]" in str(e)
    assert any("Build 'phoenix.amazon-ebs.phoenix' errored" in line for line in e.error_lines)
    assert _images(ec2, f"phoenix-web-{VERSION}") == []
    assert _leftovers(ec2) == {"key_pairs": [], "security_groups": [], "live_builders": []}


def test_failed_ami_is_deregistered_by_packer(seeded, packer_env, sandbox_clean, tmp_path, monkeypatch):
    monkeypatch.setenv("PHOENIX_PACKER_DOUBLE_FAIL", "ami")
    ec2 = sandbox_clean.client("ec2")
    with pytest.raises(PackerBuildError, match="Error waiting for AMI"):
        PackerHook(working_dir=tmp_path).build(TEMPLATE, _vars())
    assert _images(ec2, f"phoenix-web-{VERSION}") == []
    assert _leftovers(ec2)["live_builders"] == []


def test_on_kill_sends_sigint_and_packer_cleans_up(seeded, packer_env, sandbox_clean, tmp_path, monkeypatch):
    monkeypatch.setenv("PHOENIX_PACKER_DOUBLE_DELAY", "300")
    ec2 = sandbox_clean.client("ec2")
    hook = PackerHook(working_dir=tmp_path, kill_grace_seconds=60)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = hook.build(TEMPLATE, _vars())
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    # the builder runs and the key pair exists: Packer is "provisioning" (and lingering)
    builder = poll(lambda: next((i for i in _builders(ec2) if i["State"]["Name"] == "running"), None))
    assert ec2.describe_key_pairs()["KeyPairs"]
    hook.on_kill()
    thread.join(timeout=60)
    assert not thread.is_alive()

    error = outcome.get("error")
    assert isinstance(error, PackerBuildError) and error.cancelled, outcome
    assert "cancelled" in str(error)
    assert any("Cancelling build after receiving interrupt" in line for line in error.error_lines)
    state = ec2.describe_instances(InstanceIds=[builder["InstanceId"]])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] == "terminated"
    assert _leftovers(ec2) == {"key_pairs": [], "security_groups": [], "live_builders": []}
    assert _images(ec2, f"phoenix-web-{VERSION}") == []


def test_hostile_values_are_literal_arguments(seeded, packer_env, sandbox_clean, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    pwned = tmp_path / "pwned"
    hostile_run = f"$(touch {pwned}); rm -rf {victim} `touch {pwned}` | tee {pwned} && echo 'x' \"y\""
    hostile_sha = "a;b\nc$HOME'd"
    ec2 = sandbox_clean.client("ec2")

    result = PackerHook(working_dir=tmp_path / "work").build(TEMPLATE, _vars(build_run=hostile_run, git_sha=hostile_sha))

    build_argv = packer_env.invocations()[-1]
    assert f"build_run={hostile_run}" in build_argv
    assert f"git_sha={hostile_sha}" in build_argv
    i = build_argv.index(f"build_run={hostile_run}")
    assert build_argv[i - 1] == "-var"
    assert not pwned.exists() and victim.is_dir()
    (image,) = _images(ec2, f"phoenix-web-{VERSION}")
    assert tag_map(image)["phoenix:build-run"] == hostile_run
    assert result.manifest is not None and result.manifest["custom_data"]["build_run"] == hostile_run

    # a value the template's validation refuses: Packer's own error, still nothing executed
    with pytest.raises(PackerError, match="Invalid value for variable") as err:
        PackerHook(working_dir=tmp_path / "work2").build(TEMPLATE, _vars(version="1; rm -rf /"))
    assert "The version must be letters" in str(err.value)
    assert "version=1; rm -rf /" in packer_env.invocations()[-1]
    assert not pwned.exists() and victim.is_dir()


def test_undeclared_variable_is_rejected_like_packer(packer_env, tmp_path):
    with pytest.raises(PackerError) as err:
        PackerHook(working_dir=tmp_path).validate(TEMPLATE, _vars(not_a_variable="x"))
    assert 'Undefined -var variable' in str(err.value)
    assert 'A "not_a_variable" variable was passed in but was not found in known variables' in str(err.value)


def test_working_dir_defaults_to_a_fresh_temp_dir():
    hook = PackerHook()
    assert hook.working_dir.is_dir() and hook.working_dir.name.startswith("phoenix-packer-")
    Path(hook.working_dir).rmdir()
