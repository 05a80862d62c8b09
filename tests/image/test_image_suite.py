"""The image test suite, for real: Packer's provisioners in a debootstrapped Debian root, then testinfra.

For each role the template's provisioners run in order inside a chroot (tests/image/rootfs.py), the
build-time runs of the suite (60-run-tests.sh, 98-final-tests.sh, Debian's pytest and testinfra inside
the image) must pass, and the suite from this checkout (the venv's testinfra, chroot backend) must
pass too. Then the other direction: a copy of the image with root login re-enabled, a key left
behind and more must fail exactly the checks that guard those things, a build whose image fails a
check must stop at 60-run-tests.sh, and a broken provisioner must stop the build with its output.

Needs root, debootstrap and the network path to the Debian mirror this machine's apt uses. Never
skipped in CI (env CI set): a missing tool fails loudly instead.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.image import rootfs

pytestmark = [pytest.mark.image, pytest.mark.timeout(1500)]

ROLES = ("web", "worker")
VERSION = "ci-0.0.1"
ROLE_PACKAGES = {"web": "nginx", "worker": "python3"}
# Checks that cannot pass or fail in a chroot: the SSM agent comes with the real base AMI, and the
# role-specific checks skip for the other role. Every other check must pass.
EXPECTED_SKIPS = {
    "web": {"test_role.py::test_ssm_agent", "test_role.py::test_worker_unit"},
    "worker": {"test_role.py::test_ssm_agent", "test_role.py::test_nginx"},
}


def _requirements() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (chroot, mount)")
    for tool in ("debootstrap", "chroot", "mount", "umount", "tar", "cp"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not on PATH")
    return problems


@dataclass
class Image:
    role: str
    root: Path
    outdir: Path
    log: Path
    provision: rootfs.ProvisionResult


@dataclass
class Images:
    """Provisioned roots per role, built lazily once per session and shared by the tests."""

    workspace: rootfs.Workspace
    timings: dict[str, float] = field(default_factory=dict)
    _tarball: Path | None = None
    _images: dict[str, Image | BaseException] = field(default_factory=dict)

    def tarball(self) -> Path:
        if self._tarball is None:
            start = time.monotonic()
            self._tarball, built = rootfs.base_tarball(
                self.workspace, log=self.workspace.dir / "debootstrap.log"
            )
            self.timings["base_debootstrap" if built else "base_cached"] = time.monotonic() - start
        return self._tarball

    def get(self, role: str) -> Image:
        if role not in self._images:
            try:
                self._images[role] = self._provision(role)
            except BaseException as exc:  # remember: every test of this role fails with the same error
                self._images[role] = exc
                raise
        image = self._images[role]
        if isinstance(image, BaseException):
            raise image
        return image

    def _provision(self, role: str) -> Image:
        tarball = self.tarball()
        root = self.workspace.path(f"root-{role}")
        outdir = self.workspace.path(f"out-{role}")
        log = outdir / "provision.log"
        outdir.mkdir(parents=True)
        start = time.monotonic()
        rootfs.extract(tarball, root)
        self.timings[f"{role}_extract"] = time.monotonic() - start
        variables = {"role": role, "version": VERSION, "build_run": f"ci__{role}", "git_sha": "0" * 40}
        start = time.monotonic()
        try:
            with rootfs.chroot_session(root):
                result = rootfs.run_provisioners(root, variables, outdir, log)
        except rootfs.ProvisionerError as exc:
            pytest.fail(f"{role}: {exc}\n(full log: {_keep_log(log, role)})", pytrace=False)
        finally:
            _keep_log(log, role)
        self.timings[f"{role}_provision"] = time.monotonic() - start
        for script, seconds in result.timings.items():
            self.timings[f"{role}_{script}"] = seconds
        return Image(role, root, outdir, log, result)

    def scratch_copy(self, role: str, label: str) -> Path:
        copy = self.workspace.path(f"{label}-{role}")
        start = time.monotonic()
        rootfs.copy_root(self.get(role).root, copy)
        self.timings[f"{label}_copy"] = time.monotonic() - start
        return copy


def _gate(problems: list[str], ci: bool) -> None:
    """Skip on a developer machine without the tools (plain pytest); under `make test` (PHOENIX_NO_SKIP) and in
    CI, fail loudly instead, naming the installer."""
    if problems:
        message = "the image tests cannot run: " + "; ".join(problems)
        if ci:
            pytest.fail(
                message + " (make test and CI must run them: run .ci/install-packages, which installs "
                ".ci/apt-packages.txt, debootstrap among them)", pytrace=False
            )
        pytest.skip(message)


@pytest.fixture(scope="session")
def images():
    _gate(_requirements(), ci=bool(os.environ.get("CI") or os.environ.get("PHOENIX_NO_SKIP")))
    rootfs.clean_stale_runs()
    workspace = rootfs.Workspace()
    session = Images(workspace)
    start = time.monotonic()
    try:
        yield session
    finally:
        session.timings["session_total"] = time.monotonic() - start
        rootfs.WORK_DIR.mkdir(parents=True, exist_ok=True)
        (rootfs.WORK_DIR / "timings.json").write_text(json.dumps(session.timings, indent=2, sort_keys=True))
        workspace.close()


def _keep_log(log: Path, role: str) -> Path:
    """Provisioning logs outlive the session's workspace: .sandbox/image-test/logs/provision-<role>.log."""
    kept = rootfs.WORK_DIR / "logs" / f"provision-{role}.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    if log.exists():
        shutil.copyfile(log, kept)
    return kept


def _checks(junit: Path) -> dict[str, str]:
    """{check name: passed|failed|error|skipped} from the suite's JUnit report ("check" property)."""
    import xml.etree.ElementTree as ET

    results = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        state = "passed"
        for child, label in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            if case.find(child) is not None:
                state = label
        results[props.get("check") or case.get("name", "?")] = state
    return results


def _not_passed(results: dict[str, str]) -> dict[str, str]:
    return {name: state for name, state in results.items() if state != "passed"}


def test_missing_tools_fail_loudly_in_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    problems = _requirements()
    assert "debootstrap is not on PATH" in problems
    with pytest.raises(pytest.fail.Exception, match="debootstrap is not on PATH"):
        _gate(problems, ci=True)
    with pytest.raises(pytest.skip.Exception):
        _gate(problems, ci=False)


# --------------------------------------------------------------------------------------------------
# A correctly provisioned image passes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_provisioned_image_passes_the_suite(images, role):
    image = images.get(role)
    junit = image.outdir / "suite-from-checkout.xml"
    start = time.monotonic()
    out = rootfs.run_suite(image.root, role, junit)
    images.timings[f"{role}_suite"] = time.monotonic() - start
    assert out.returncode == 0, (
        f"suite failed on the {role} image:\n{out.stdout[-8000:]}\n{out.stderr[-2000:]}"
    )
    results = _checks(junit)
    assert len(results) >= 30, f"too few checks ran: {sorted(results)}"
    assert _not_passed(results) == dict.fromkeys(EXPECTED_SKIPS[role], "skipped")
    assert "phoenix-check: PASSED test_ssh.py::test_sshd_setting[permitrootlogin]" in out.stdout
    # the harness's policy-rc.d (no daemons in the chroot) is gone again; Packer builds never have one
    assert not (image.root / "usr/sbin/policy-rc.d").exists()


@pytest.mark.parametrize("role", ROLES)
def test_build_time_runs_passed_inside_the_image(images, role):
    """60-run-tests.sh and 98-final-tests.sh ran the installed suite (Debian's pytest) in the image."""
    image = images.get(role)
    log = image.log.read_text()
    for stage in ("build", "final"):
        assert f"phoenix-image-test: result=pass exit=0 stage={stage} role={role} " in log, log[-4000:]
        report = image.outdir / f"image-test-{stage}.xml"
        report.write_bytes(rootfs.chroot_read(image.root, f"/var/log/phoenix/image-test-{stage}.xml"))
        results = _checks(report)
        assert _not_passed(results) == dict.fromkeys(EXPECTED_SKIPS[role], "skipped"), stage
        after_cleanup = {
            "test_credentials.py::test_no_authorized_keys",
            "test_ssh.py::test_host_keys_per_instance",
        }
        if stage == "build":
            assert not after_cleanup & set(results), "the build stage must deselect after_cleanup checks"
        else:
            assert after_cleanup <= set(results)


@pytest.mark.parametrize("role", ROLES)
def test_package_list_downloaded(images, role):
    image = images.get(role)
    tsv = image.outdir / f"packages-{role}-{VERSION}.tsv"
    assert image.provision.downloads["packages-${var.role}-${var.version}.tsv"] == tsv
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert rows and all(len(row) == 2 and row[0] and row[1] for row in rows), "want name<TAB>version lines"
    names = [row[0] for row in rows]
    assert names == sorted(set(names)), "sorted by name, one line per package"
    assert {
        "openssh-server",
        "chrony",
        "unattended-upgrades",
        "python3-testinfra",
        ROLE_PACKAGES[role],
    } <= set(names)
    installed = rootfs.chroot_run(
        image.root, "dpkg-query", "-W", "-f=${db:Status-Status}\\t${Package}\\t${Version}\\n", check=True
    ).stdout
    expected = sorted(
        line.split("\t")[1:] for line in installed.splitlines() if line.startswith("installed\t")
    )
    assert sorted(rows) == expected


# --------------------------------------------------------------------------------------------------
# ... and the suite and the build fail when something is wrong
# --------------------------------------------------------------------------------------------------

# check that must fail -> how the copy of the image is broken (shell, run inside the chroot)
BREAKAGES = {
    "test_ssh.py::test_sshd_setting[permitrootlogin]": (
        # sorts before 00-phoenix-hardening.conf, so sshd takes its value
        "echo 'PermitRootLogin yes' > /etc/ssh/sshd_config.d/00-aaa-debug.conf"
    ),
    "test_credentials.py::test_no_authorized_keys": (
        "install -d -m 0700 /root/.ssh && echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIForgotten x' > /root/.ssh/authorized_keys"
    ),
    "test_updates.py::test_periodic_updates_on": (
        "echo 'APT::Periodic::Unattended-Upgrade \"0\";' > /etc/apt/apt.conf.d/99zz-debug"
    ),
    "test_role.py::test_required_services": "systemctl disable nginx.service 2>/dev/null",
    "test_credentials.py::test_no_private_keys_outside_etc_ssh": (
        "install -d /opt/leak && ssh-keygen -q -t ed25519 -N '' -f /opt/leak/deploy_key"
    ),
    "test_credentials.py::test_no_aws_credentials": (
        "install -d /home/admin/.aws && printf '[default]\\naws_access_key_id = AKIAEXAMPLE\\n' > /home/admin/.aws/credentials"
    ),
}


@pytest.fixture(scope="module")
def broken_web(images):
    root = images.scratch_copy("web", "broken")
    with rootfs.chroot_session(root):
        for script in BREAKAGES.values():
            rootfs.chroot_run(root, "/bin/sh", "-ec", script, check=True)
    return root


def test_suite_fails_exactly_the_broken_checks(images, broken_web, tmp_path):
    junit = tmp_path / "broken.xml"
    out = rootfs.run_suite(broken_web, "web", junit)
    assert out.returncode == 1, out.stdout[-4000:]
    results = _checks(junit)
    failed = {name for name, state in results.items() if state in ("failed", "error")}
    assert failed == set(BREAKAGES), out.stdout[-8000:]
    for check in BREAKAGES:
        assert f"phoenix-check: FAILED {check}" in out.stdout


def test_runner_contract_on_the_broken_image(images, broken_web):
    """What the verify stage gets from `phoenix-image-test` (no arguments) through SSM: exit 1, one
    FAILED line per failed check, and the result line last."""
    with rootfs.chroot_session(broken_web):
        out = rootfs.chroot_run(broken_web, "/usr/local/bin/phoenix-image-test")
    assert out.returncode == 1, out.stdout[-4000:] + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("phoenix-image-test: result=fail exit=1 stage=final role=web junit=")
    failed = {line.split(" ", 2)[2] for line in lines if line.startswith("phoenix-check: FAILED ")}
    assert failed == set(BREAKAGES)
    with rootfs.chroot_session(broken_web):
        usage = rootfs.chroot_run(broken_web, "/usr/local/bin/phoenix-image-test", "--stage", "nonsense")
    assert usage.returncode == 2 and "unknown stage" in usage.stderr


def test_instance_stage_wants_per_instance_identity(images, tmp_path):
    """On a booted instance (stage instance) the unbooted image's missing host keys and machine-id are
    failures: the branch the verify stage relies on, exercised against the clean image."""
    image = images.get("web")
    junit = tmp_path / "instance.xml"
    out = rootfs.run_suite(image.root, "web", junit, stage="instance")
    assert out.returncode == 1, out.stdout[-4000:]
    failed = {name for name, state in _checks(junit).items() if state in ("failed", "error")}
    assert failed == {
        "test_ssh.py::test_host_keys_per_instance",
        "test_credentials.py::test_machine_id_per_instance",
    }


def test_failing_check_fails_the_build(images, broken_web):
    """60-run-tests.sh inside the broken image exits non-zero: Packer would stop the build there."""
    script = rootfs.PACKER_DIR / "provisioners" / "60-run-tests.sh"
    log = broken_web.parent / "broken-60.log"
    with rootfs.chroot_session(broken_web), pytest.raises(rootfs.ProvisionerError) as failure:
        rootfs.run_script(broken_web, script, {"PHOENIX_ROLE": "web"}, log)
    error = failure.value
    assert error.name == "60-run-tests.sh" and error.rc == 1
    assert "phoenix-check: FAILED test_ssh.py::test_sshd_setting[permitrootlogin]" in error.output
    assert "phoenix-image-test: result=fail exit=1 stage=build role=web" in error.output
    # the build stage deselects after_cleanup checks: the planted authorized_keys is judged later
    assert "test_no_authorized_keys" not in error.output


def test_broken_provisioner_fails_the_build(images, tmp_path):
    """A provisioner that exits non-zero raises with its name, exit status and output."""
    root = images.scratch_copy("web", "badrole")
    script = rootfs.PACKER_DIR / "provisioners" / "20-role.sh"
    with rootfs.chroot_session(root), pytest.raises(rootfs.ProvisionerError) as failure:
        rootfs.run_script(root, script, {"PHOENIX_ROLE": "database"}, tmp_path / "bad.log")
    assert failure.value.name == "20-role.sh" and failure.value.rc == 64
    assert "unknown role 'database'" in failure.value.output
    assert "Script exited with non-zero exit status: 64" in str(failure.value)
    assert not rootfs.mounts_under(root), "chroot_session must unmount on failure too"


def test_provisioners_are_idempotent(images, tmp_path):
    """The whole provisioner sequence again on a finished image (e.g. a retried build step)."""
    root = images.scratch_copy("worker", "rerun")
    variables = {"role": "worker", "version": VERSION, "build_run": "ci__rerun", "git_sha": "1" * 40}
    start = time.monotonic()
    try:
        with rootfs.chroot_session(root):
            rootfs.run_provisioners(root, variables, tmp_path / "out", tmp_path / "rerun.log")
    except rootfs.ProvisionerError as exc:
        pytest.fail(f"second run failed: {exc}", pytrace=False)
    images.timings["rerun_provision"] = time.monotonic() - start
    out = rootfs.run_suite(root, "worker", tmp_path / "rerun.xml")
    assert out.returncode == 0, out.stdout[-6000:]
    assert "PHOENIX_BUILD_RUN=ci__rerun" in rootfs.chroot_read(root, "/etc/phoenix/build-info").decode()
