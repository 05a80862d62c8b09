"""Shared fixtures of the phoenix image test suite (testinfra, the ``host`` fixture).

The suite runs in three places, against the same files:

* during the Packer build, on the builder instance (``phoenix-image-test --stage build|final``);
* on a canary instance booted from the new AMI, through SSM (the verify stage);
* in CI, from the repository against a debootstrapped root (``--connection=chroot --hosts=/path/to/root``).

So every check works on an unbooted root filesystem (no systemd running: services are checked as
*enabled*) and, when systemd is the running init, also checks that services are *running*.
The role comes from ``PHOENIX_ROLE`` or ``/etc/phoenix/role`` (written by provisioners/20-role.sh).
Helpers and the role tables are in imagecheck.py.
"""

from __future__ import annotations

import os
import shlex

import pytest
from imagecheck import ROLES, SSHD_MATCH_SPEC, SSHD_T_SCRIPT, STAGES


@pytest.fixture(scope="module")
def role(host) -> str:
    """The role of the image: PHOENIX_ROLE if set, else /etc/phoenix/role."""
    from_env = os.environ.get("PHOENIX_ROLE", "").strip()
    role_file = host.file("/etc/phoenix/role")
    from_file = role_file.content_string.strip() if role_file.exists else ""
    value = from_env or from_file
    if not value:
        pytest.fail("no role: set PHOENIX_ROLE or write /etc/phoenix/role (provisioners/20-role.sh)")
    if value not in ROLES:
        pytest.fail(f"unknown role {value!r}; the suite knows {sorted(ROLES)}")
    return value


@pytest.fixture(scope="module")
def booted(host) -> bool:
    """True when systemd is the running init of the root under test (a booted instance).

    sd_booted(): /run/systemd/system exists only while systemd runs as init. A chroot shares the
    host's /proc, so PID 1 must also be systemd and have this very root as its root directory.
    """
    if not host.file("/run/systemd/system").is_directory:
        return False
    comm = host.run("cat /proc/1/comm")
    if comm.rc != 0 or comm.stdout.strip() != "systemd":
        return False
    return host.run("test / -ef /proc/1/root").rc == 0


@pytest.fixture(scope="module")
def stage(booted) -> str:
    """Where the suite runs: ``build`` (before 90-cleanup.sh), ``final`` (the finished image: after cleanup
    on the builder, or an unbooted root) or ``instance`` (an instance booted from the AMI: the verify stage).

    From PHOENIX_IMAGE_STAGE (set by phoenix-image-test), else ``instance`` when booted, else ``final``.
    The builder instance is booted too, which is why the runner always names the stage during the build.
    """
    value = os.environ.get("PHOENIX_IMAGE_STAGE", "").strip() or ("instance" if booted else "final")
    if value not in STAGES:
        pytest.fail(f"PHOENIX_IMAGE_STAGE={value!r}; expected one of {STAGES}")
    return value


@pytest.fixture(scope="module")
def sshd_config(host) -> dict[str, list[str]]:
    """Effective sshd settings (``sshd -T``, Match blocks evaluated for root from outside)."""
    if not host.file("/usr/sbin/sshd").exists:
        pytest.fail("openssh-server is not installed (/usr/sbin/sshd missing)")
    script = "SPEC=" + shlex.quote(SSHD_MATCH_SPEC) + "\n" + SSHD_T_SCRIPT
    result = host.run("sh -c " + shlex.quote(script))
    if result.rc != 0:
        pytest.fail(f"sshd -T failed (rc={result.rc}): {result.stderr.strip() or result.stdout.strip()}")
    settings: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            settings.setdefault(key.lower(), []).append(value.strip())
    return settings


# --- one line per check, independent of the host id testinfra puts into test ids -----------------
# "phoenix-check: FAILED test_ssh.py::test_sshd_setting[permitrootlogin]" in the output, and the
# same name as the "check" property of each test case in the JUnit report.

_OUTCOMES: dict[str, str] = {}


def _check_name(item) -> str:
    name = item.nodeid
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec is not None else None
    if host is not None:
        host_id = host.backend.get_pytest_id()
        name = name.replace(f"[{host_id}]", "").replace(f"[{host_id}-", "[")
    return name


def pytest_collection_modifyitems(items):
    for item in items:
        item.user_properties.append(("check", _check_name(item)))


def pytest_runtest_logreport(report):
    name = dict(report.user_properties).get("check", report.nodeid)
    if report.failed:
        _OUTCOMES[name] = "FAILED" if report.when == "call" else "ERROR"
    elif report.skipped and name not in _OUTCOMES:
        _OUTCOMES[name] = "SKIPPED"
    elif report.when == "call" and report.passed:
        _OUTCOMES.setdefault(name, "PASSED")


def pytest_terminal_summary(terminalreporter):
    if not _OUTCOMES:
        return
    terminalreporter.write_sep("-", "phoenix checks")
    for name, outcome in _OUTCOMES.items():
        terminalreporter.write_line(f"phoenix-check: {outcome} {name}")
