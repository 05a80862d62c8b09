"""Fast checks of include/packer: the template as python-hcl2 reads it, and the provisioner scripts.

No Packer binary here: these pin down what DESIGN.md asks of the template (pinned plugin, typed and
described variables, owner-pinned source AMI, IMDSv2, encrypted root, tags, manifest, package list)
and what the Packer double relies on (every ${var.*} declared). The scripts must be strict bash,
parse with ``bash -n`` and pass shellcheck (required in CI).
"""

from __future__ import annotations

import os
import py_compile
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.image import rootfs

PROVISIONERS = rootfs.PACKER_DIR / "provisioners"
RUNNER = rootfs.SUITE_DIR / "phoenix-image-test"
EXPECTED_VARIABLES = {
    "role": "string",
    "version": "string",
    "base_ami_name": "string",
    "base_ami_owners": "${list(string)}",
    "regions": "${list(string)}",
    "instance_type": "string",
    "subnet_id": "string",
    "iam_instance_profile": "string",
    "ssh_username": "string",
    "build_run": "string",
    "git_sha": "string",
    "build_inputs": "string",
    "root_device_name": "string",
    "root_volume_size": "number",
    "kms_key_id": "string",
}
EXPECTED_TAGS = {
    "phoenix:role": "${var.role}",
    "phoenix:version": "${var.version}",
    "phoenix:source-ami": "{{ .SourceAMI }}",
    "phoenix:build-run": "${var.build_run}",
    "phoenix:git-sha": "${var.git_sha}",
    "phoenix:build-inputs": "${var.build_inputs}",
    "phoenix:verified": "false",
    "phoenix:managed-by": "phoenix-fleet",
}
EXPECTED_SCRIPTS = [
    "10-security-updates.sh",
    "20-role.sh",
    "30-harden-ssh.sh",
    "40-unattended-upgrades.sh",
    "50-install-tests.sh",
    "60-run-tests.sh",
    "90-cleanup.sh",
    "95-package-list.sh",
    "98-final-tests.sh",
]


@pytest.fixture(scope="module")
def template():
    return rootfs.load_template()


@pytest.fixture(scope="module")
def source(template):
    (block,) = template["source"]
    return block["amazon-ebs"]["phoenix"]


def _scripts(template) -> list[Path]:
    return [
        Path(rootfs.interpolate(script, {}))
        for kind, body in rootfs.provisioners(template)
        if kind == "shell"
        for script in body["scripts"]
    ]


def test_parses_with_default_hcl2_options():
    import hcl2

    with rootfs.TEMPLATE.open() as f:
        parsed = hcl2.load(f)
    assert {"packer", "variable", "source", "build"} <= set(parsed)


def test_required_plugins_pinned(template):
    (packer,) = template["packer"]
    (plugins,) = packer["required_plugins"]
    amazon = plugins["amazon"]
    assert amazon["source"] == "github.com/hashicorp/amazon"
    assert re.fullmatch(r"= \d+\.\d+\.\d+", amazon["version"]), amazon["version"]


def test_variables_typed_and_described(template):
    variables = rootfs.template_variables(template)
    assert {name: body.get("type") for name, body in variables.items()} == EXPECTED_VARIABLES
    for name, body in variables.items():
        assert len(body.get("description", "")) > 20, f"variable {name} needs a description"
    assert variables["ssh_username"]["default"] == "admin"
    assert variables["base_ami_owners"]["default"] == ["self"]
    assert variables["regions"]["default"] == ["us-east-1"], "build in one region; publish copies"
    assert "default" not in variables["role"] and "default" not in variables["version"]
    for name in ("base_ami_owners", "regions"):
        (validation,) = variables[name]["validation"]
        assert validation["condition"] == f"${{length(var.{name}) > 0}}"


def test_every_variable_reference_is_declared(template):
    declared = set(rootfs.template_variables(template))
    used = set(re.findall(r"var\.([A-Za-z_][A-Za-z0-9_]*)", rootfs.TEMPLATE.read_text()))
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    assert declared <= used, f"declared but unused: {sorted(declared - used)}"


def test_source_ami_pinned_to_owners(source):
    (ami_filter,) = source["source_ami_filter"]
    assert ami_filter["owners"] == "${var.base_ami_owners}"
    assert ami_filter["most_recent"] is True
    assert ami_filter["filters"]["name"] == "${var.base_ami_name}"


def test_imdsv2_encrypted_root_and_naming(source):
    (metadata,) = source["metadata_options"]
    assert metadata["http_tokens"] == "required"
    assert source["imds_support"] == "v2.0"
    (root,) = source["launch_block_device_mappings"]
    assert root["encrypted"] is True
    assert root["volume_type"] == "gp3"
    assert root["device_name"] == "${var.root_device_name}"
    assert source["ami_name"] == "phoenix-${var.role}-${var.version}"
    assert source["region"] == "${var.regions[0]}"
    assert source["ami_regions"] == "${slice(var.regions, 1, length(var.regions))}"
    assert source["temporary_key_pair_type"] == "ed25519"
    assert source["ssh_username"] == "${var.ssh_username}"


def test_tags_on_ami_and_snapshots(source):
    for key, value in EXPECTED_TAGS.items():
        assert source["tags"].get(key) == value, key
    assert source["snapshot_tags"] == source["tags"]


def test_manifest_and_package_list(template):
    (build,) = template["build"]
    (post,) = build["post-processor"]
    manifest = post["manifest"]
    assert manifest["output"] == "manifest-${var.role}-${var.version}.json"
    assert manifest["strip_path"] is True
    assert {"role", "version", "build_run", "git_sha"} <= set(manifest["custom_data"])
    downloads = [
        b for kind, b in rootfs.provisioners(template) if kind == "file" and b.get("direction") == "download"
    ]
    assert [d["destination"] for d in downloads] == ["packages-${var.role}-${var.version}.tsv"]
    assert manifest["custom_data"]["packages_file"] == downloads[0]["destination"]


def test_provisioner_order_and_environment(template):
    assert [p.name for p in _scripts(template)] == EXPECTED_SCRIPTS
    assert sorted(p.name for p in PROVISIONERS.glob("*.sh")) == EXPECTED_SCRIPTS, (
        "scripts not in the template"
    )
    values = rootfs.resolve_variables(template, {"role": "web", "version": "1"})
    for kind, body in rootfs.provisioners(template):
        if kind == "shell":
            assert body["execute_command"] == "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
            env = dict(rootfs.interpolate(v, values).split("=", 1) for v in body["environment_vars"])
            assert env["PHOENIX_ROLE"] == "web" and env["DEBIAN_FRONTEND"] == "noninteractive"
        for value in body.values():
            if isinstance(value, str):
                rootfs.interpolate(value, values)  # every reference resolvable


@pytest.mark.parametrize("script", EXPECTED_SCRIPTS + ["phoenix-image-test"])
def test_script_is_strict_bash(script):
    path = RUNNER if script == "phoenix-image-test" else PROVISIONERS / script
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    code = [line for line in lines[1:] if line.strip() and not line.lstrip().startswith("#")]
    assert code[0] == "set -euo pipefail", f"{script}: the first command must be set -euo pipefail"
    assert os.access(path, os.X_OK), f"{script} is not executable"
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") or os.environ.get("PHOENIX_NO_SKIP"):  # make test and CI never skip
            pytest.fail("shellcheck is not installed. Fix: run .ci/install-packages (.ci/apt-packages.txt)", pytrace=False)
        pytest.skip("shellcheck is not installed")
    paths = [str(p) for p in sorted(PROVISIONERS.glob("*.sh"))] + [str(RUNNER)]
    check = subprocess.run(
        ["shellcheck", "--shell=bash", "--severity=style", *paths], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_image_suite_compiles(tmp_path):
    """The suite runs under the image's python3 (Debian 12: 3.11); at least it must compile."""
    files = sorted(rootfs.SUITE_DIR.glob("*.py"))
    assert {"conftest.py", "imagecheck.py"} <= {f.name for f in files}
    for f in files:
        py_compile.compile(str(f), cfile=str(tmp_path / (f.name + "c")), doraise=True)


def test_run_tags_let_the_project_clean_up_a_failed_build(source):
    """Packer's amazon builder puts the run_tags on the new image and its snapshot in CreateImage (unless
    skip_ami_run_tags): a build that fails before the final tags leaves an image and a snapshot that the Packer
    principal (its own failure clean-up) and the worker (the bake's retry, retention) may delete, whose conditions
    require the project's tags. The final tags alone set phoenix:verified: how the bake tells a finished build."""
    from phoenix_fleet.operators.bake_operators import FINAL_TAG

    from tests.helpers.iam_conditions import allowing_sids

    assert not source.get("skip_ami_run_tags")
    run_tags = {k: v for k, v in source["run_tags"].items()}
    for action in ("ec2:DeregisterImage", "ec2:DeleteSnapshot"):
        assert allowing_sids("packer", action, run_tags) == ["CleanUpFailedBuild"], action
        assert allowing_sids("worker", action, run_tags) == ["RetireProjectImages"], action
        assert allowing_sids("packer", action, {}) == [] and allowing_sids("worker", action, {}) == [], action
    assert FINAL_TAG not in run_tags and FINAL_TAG in source["tags"] and FINAL_TAG in source["snapshot_tags"]
