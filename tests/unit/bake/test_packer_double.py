"""The Packer double itself: CLI surface, machine-readable format, template evaluation, package lists."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from phoenix_fleet.release.package_diff import diff_packages, parse_package_list

from sandbox.packer_double import HclContext, HclError, human_duration, package_list
from tests.helpers.image_support import DOUBLE, TEMPLATE

VARS = ["-var", "role=web", "-var", "version=2026.11.30-1"]


def _packer(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DOUBLE), *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def _machine(stdout: str) -> list[list[str]]:
    return [line.split(",") for line in stdout.splitlines() if line.split(",")[0].isdigit()]


def test_version_machine_readable(tmp_path):
    out = _packer("version", "-machine-readable", cwd=tmp_path)
    assert out.returncode == 0
    rows = _machine(out.stdout)
    assert [r[1:3] for r in rows] == [["", "version"], ["", "version-prelease"], ["", "version-commit"], ["", "ui"]]
    assert rows[0][3] == "1.11.2" and rows[-1][3:] == ["say", "Packer v1.11.2"]


def test_validate_and_its_errors(packer_env, tmp_path):
    ok = _packer("validate", *VARS, str(TEMPLATE), cwd=tmp_path)
    assert (ok.returncode, ok.stdout.strip()) == (0, "The configuration is valid.")

    bad = _packer("validate", "-machine-readable", *VARS, "-var", "nope=1", str(TEMPLATE), cwd=tmp_path)
    assert bad.returncode == 1
    (row,) = _machine(bad.stdout)
    assert row[2:4] == ["ui", "error"]
    assert row[4].startswith("Error: Undefined -var variable\\n\\nA \"nope\" variable was passed in")
    assert "%!(PACKER_COMMA)" in row[4]  # the comma in "...variables. To declare" text is escaped

    unset = _packer("validate", "-var", "role=web", str(TEMPLATE), cwd=tmp_path)
    assert unset.returncode == 1 and 'Error: Unset variable "version"' in unset.stdout

    owners = _packer("validate", *VARS, "-var", "base_ami_owners=[]", str(TEMPLATE), cwd=tmp_path)
    assert owners.returncode == 1 and "must name at least one trusted owner" in owners.stdout

    flag = _packer("build", "-nope", str(TEMPLATE), cwd=tmp_path)
    assert flag.returncode == 1 and "flag provided but not defined: -nope" in flag.stdout


def test_build_needs_init(packer_env, tmp_path):
    out = _packer("build", "-machine-readable", *VARS, str(TEMPLATE), cwd=tmp_path)
    assert out.returncode == 1 and "Error: Missing plugins" in out.stdout
    init = _packer("init", str(TEMPLATE), cwd=tmp_path)
    assert init.returncode == 0 and "Installed plugin github.com/hashicorp/amazon v1.3.10" in init.stdout
    assert _packer("init", str(TEMPLATE), cwd=tmp_path).stdout == ""  # already installed


def test_build_output_manifest_and_name_clash(seeded, packer_env, sandbox_clean, tmp_path):
    assert _packer("init", str(TEMPLATE), cwd=tmp_path).returncode == 0
    out = _packer("build", "-machine-readable", "-color=false", *VARS, str(TEMPLATE), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    rows = _machine(out.stdout)
    assert all(len(r) >= 3 for r in rows) and all(r[2] != "ui" or r[3] in ("say", "message", "error") for r in rows)
    artifact = [r for r in rows if r[2] in ("artifact-count", "artifact")]
    target = "phoenix.amazon-ebs.phoenix"
    assert [r[1] for r in artifact] == [target] * 6
    assert [r[2:5] for r in artifact][:3] == [["artifact-count", "1"], ["artifact", "0", "builder-id"], ["artifact", "0", "id"]]
    ami = artifact[2][5].split(":")[1]
    assert artifact[2][5] == f"us-east-1:{ami}"
    assert artifact[3][4] == "string" and artifact[3][5] == f"AMIs were created:\\nus-east-1: {ami}\\n"
    assert [r[4] for r in artifact[4:]] == ["files-count", "end"]

    manifest = json.loads((tmp_path / "manifest-web-2026.11.30-1.json").read_text())
    (build,) = manifest["builds"]
    assert set(build) == {"name", "builder_type", "build_time", "files", "artifact_id", "packer_run_uuid", "custom_data"}
    assert build["artifact_id"] == f"us-east-1:{ami}" and manifest["last_run_uuid"] == build["packer_run_uuid"]
    assert build["custom_data"]["packages_file"] == "packages-web-2026.11.30-1.tsv"
    assert (tmp_path / "packages-web-2026.11.30-1.tsv").read_text() == package_list("web", "2026.11.30-1")

    # the name is taken now: Packer refuses, unless -force (which deregisters the old AMI)
    again = _packer("build", "-machine-readable", *VARS, str(TEMPLATE), cwd=tmp_path)
    assert again.returncode == 1
    assert f"AMI Name: 'phoenix-web-2026.11.30-1' is used by an existing AMI: {ami}" in again.stdout
    forced = _packer("build", "-machine-readable", "-force", *VARS, str(TEMPLATE), cwd=tmp_path)
    assert forced.returncode == 0
    ec2 = sandbox_clean.client("ec2")
    names = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["phoenix-web-2026.11.30-1"]}])
    (image,) = names["Images"]
    assert image["ImageId"] != ami
    assert len(json.loads((tmp_path / "manifest-web-2026.11.30-1.json").read_text())["builds"]) == 1  # -force truncates


def test_source_ami_filter_is_owner_pinned(seeded, packer_env, sandbox_clean, tmp_path):
    # an image named like the base but owned by nobody we trust is never picked: owners=[111122223333]
    assert _packer("init", str(TEMPLATE), cwd=tmp_path).returncode == 0
    out = _packer(
        "build", "-machine-readable", *VARS, "-var", 'base_ami_owners=["111122223333"]', str(TEMPLATE), cwd=tmp_path
    )
    assert out.returncode == 1
    assert "No AMI was found matching filters" in out.stdout and "111122223333" in out.stdout


def test_multi_region_build_copies_and_tags(seeded, packer_env, sandbox_clean, tmp_path):
    assert _packer("init", str(TEMPLATE), cwd=tmp_path).returncode == 0
    out = _packer(
        "build", "-machine-readable", *VARS, "-var", 'regions=["us-east-1","eu-west-1"]', str(TEMPLATE), cwd=tmp_path
    )
    assert out.returncode == 0, out.stdout[-2000:]
    (idrow,) = [r for r in _machine(out.stdout) if r[2] == "artifact" and r[4] == "id"]
    ids = dict(p.split(":") for p in idrow[5].replace("%!(PACKER_COMMA)", ",").split(","))
    assert set(ids) == {"us-east-1", "eu-west-1"}
    copy = sandbox_clean.client("ec2", region_name="eu-west-1").describe_images(ImageIds=[ids["eu-west-1"]])["Images"][0]
    assert {t["Key"]: t["Value"] for t in copy["Tags"]}["phoenix:version"] == "2026.11.30-1"


def test_hcl_evaluator():
    ctx = HclContext(var={"role": "web", "regions": ["us-east-1", "eu-west-1"], "owners": []}, path={"root": "/t"})
    assert ctx.value('"phoenix-${var.role}-x"') == "phoenix-web-x"
    assert ctx.value("${var.regions[0]}") == "us-east-1"
    assert ctx.value("${slice(var.regions, 1, length(var.regions))}") == ["eu-west-1"]
    assert ctx.value('${can(regex("^[a-z]+$", var.role))}') is True
    assert ctx.value('${can(regex("^[0-9]+$", var.role))}') is False
    assert ctx.value("${length(var.owners) > 0}") is False
    assert ctx.value('"${path.root}/tests"') == "/t/tests"
    assert ctx.value('"{{ .SourceAMI }}"') == "{{ .SourceAMI }}"
    assert ctx.value('"$${literal}"') == "${literal}"
    with pytest.raises(HclError, match="unknown function"):
        ctx.value("${nope(1)}")
    with pytest.raises(HclError, match='no variable named "local"'):
        ctx.value("${local.x}")


def test_package_lists_are_deterministic_and_move_a_little_each_week():
    week1, week2 = package_list("web", "2026.11.23-1"), package_list("web", "2026.11.30-1")
    assert package_list("web", "2026.11.30-1") == week2 == package_list("web", "2026.11.30-2")
    a, b = parse_package_list(week1), parse_package_list(week2)
    diff = diff_packages(a, b)
    assert 1 <= len(diff.upgraded) <= 25 and not diff.downgraded and not diff.added and not diff.removed
    assert "nginx" in b and "nginx" not in parse_package_list(package_list("worker", "2026.11.30-1"))
    assert list(b) == sorted(b)


def test_custom_package_list_and_delay_env(seeded, packer_env, sandbox_clean, tmp_path):
    custom = tmp_path / "custom.tsv"
    custom.write_text("bash\t5.2.15-2+b7\n")
    assert _packer("init", str(TEMPLATE), cwd=tmp_path).returncode == 0
    out = _packer("build", *VARS, str(TEMPLATE), cwd=tmp_path, env={"PHOENIX_PACKER_DOUBLE_PACKAGES": str(custom)})
    assert out.returncode == 0 and "==> phoenix.amazon-ebs.phoenix: Creating AMI" in out.stdout  # human output
    assert (tmp_path / "packages-web-2026.11.30-1.tsv").read_text() == "bash\t5.2.15-2+b7\n"


def test_human_duration():
    assert human_duration(0.4123) == "412 milliseconds"
    assert human_duration(12.041) == "12 seconds 41 milliseconds"
    assert human_duration(123) == "2 minutes 3 seconds"


def test_argv_log(packer_env, tmp_path):
    _packer("version", cwd=tmp_path)
    assert packer_env.invocations() == [["version"]]


def test_a_build_that_fails_after_create_image_leaves_nothing_the_project_cannot_delete(
    seeded, packer_env, sandbox_clean, tmp_path, monkeypatch
):
    """The AMI fails after CreateImage, as the Packer principal under enforced IAM. Like the amazon plugin, the
    double puts the run tags on the image and its snapshot in CreateImage, so: left as it is (-on-error=abort), the
    failed image and its snapshot carry tags that satisfy the conditions of the Packer principal's clean-up and of
    the worker's retirement (include/iam/, evaluated by tests/helpers/iam_conditions.py: the sandbox evaluates
    none); a second failing build with -force (the default clean-up) removes both builds' images and snapshots,
    with no call refused."""
    from tests.helpers.iam_conditions import allowing_sids
    from tests.helpers.iam_enforced import assert_no_denials, enforce_iam

    principals = enforce_iam(sandbox_clean, monkeypatch)
    as_packer = {**principals["packer"].env(), "PHOENIX_PACKER_DOUBLE_FAIL": "ami"}
    ec2 = sandbox_clean.client("ec2")  # the account root: the test's own looks
    name = "phoenix-web-2026.11.30-1"

    def leftovers() -> tuple[list[dict], list[dict]]:
        images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
        snaps = ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "tag:phoenix:version", "Values": ["2026.11.30-1"]}]
        )["Snapshots"]
        return images, snaps

    assert _packer("init", str(TEMPLATE), cwd=tmp_path).returncode == 0
    kept = _packer("build", "-on-error=abort", *VARS, str(TEMPLATE), cwd=tmp_path, env=as_packer)
    assert kept.returncode == 1 and "Attaching run tags to AMI..." in kept.stdout, kept.stdout[-2000:]
    (image,), snaps = leftovers()
    assert image["State"] == "failed" and snaps, (image, snaps)
    snapshot_ids = {b["Ebs"]["SnapshotId"] for b in image["BlockDeviceMappings"] if b.get("Ebs", {}).get("SnapshotId")}
    assert snapshot_ids == {s["SnapshotId"] for s in snaps}
    for resource, action in [(image, "ec2:DeregisterImage")] + [(s, "ec2:DeleteSnapshot") for s in snaps]:
        tags = {t["Key"]: t["Value"] for t in resource.get("Tags", [])}
        assert tags["phoenix:role"] == "web" and tags["phoenix:managed-by"] == "phoenix-fleet", tags
        assert allowing_sids("packer", action, tags) == ["CleanUpFailedBuild"], (action, tags)
        assert allowing_sids("worker", action, tags) == ["RetireProjectImages"], (action, tags)

    cleaned = _packer("build", "-force", *VARS, str(TEMPLATE), cwd=tmp_path, env=as_packer)
    assert cleaned.returncode == 1, cleaned.stdout[-2000:]
    assert f"Deregistered AMI id: {image['ImageId']}" in cleaned.stdout
    assert "Deregistering the AMI and deleting associated snapshots" in cleaned.stdout + cleaned.stderr
    assert leftovers() == ([], [])
    sandbox_clean.update_config(iam_access_control=False)
    assert_no_denials(sandbox_clean)
