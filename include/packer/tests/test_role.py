"""The role: identity files, required packages and services, role-specific behaviour."""

from __future__ import annotations

import os

import pytest
from imagecheck import COMMON_PACKAGES, COMMON_SERVICES, ROLES, package_installed, service_problems


def test_role_file(host, role):
    role_file = host.file("/etc/phoenix/role")
    assert role_file.exists, "/etc/phoenix/role is missing (provisioners/20-role.sh)"
    assert role_file.content_string.strip() == role
    expected = os.environ.get("PHOENIX_ROLE")
    if expected:
        assert role_file.content_string.strip() == expected, "image role differs from PHOENIX_ROLE"


def test_build_info(host, role):
    info = host.file("/etc/phoenix/build-info")
    assert info.exists, "/etc/phoenix/build-info is missing"
    keys = dict(line.split("=", 1) for line in info.content_string.splitlines() if "=" in line)
    for key in (
        "PHOENIX_ROLE",
        "PHOENIX_VERSION",
        "PHOENIX_BUILD_RUN",
        "PHOENIX_GIT_SHA",
        "PHOENIX_SOURCE_AMI",
    ):
        assert key in keys, f"{key} missing from /etc/phoenix/build-info"
    assert keys["PHOENIX_ROLE"] == role


def test_required_packages(host, role):
    wanted = COMMON_PACKAGES + ROLES[role]["packages"]
    missing = [name for name in wanted if not package_installed(host, name)]
    assert not missing, f"packages not installed for role {role}: {missing}"


def test_required_services(host, role, booted):
    problems = service_problems(host, COMMON_SERVICES + ROLES[role]["services"], booted)
    assert not problems, f"services of role {role}: {problems}"


def test_time_sync_prefers_amazon(host):
    sources = host.file("/etc/chrony/sources.d/phoenix-amazon-time-sync.sources")
    assert sources.exists
    assert "server 169.254.169.123 prefer" in sources.content_string


def test_ssm_agent(host, booted):
    """The verify stage reaches instances through SSM; the agent comes with the base AMI."""
    installed = host.run(
        "test -e /lib/systemd/system/amazon-ssm-agent.service -o -e /etc/systemd/system/amazon-ssm-agent.service"
    )
    if installed.rc != 0:
        if booted:
            pytest.fail("amazon-ssm-agent is not installed: the verify stage cannot reach this instance")
        pytest.skip("amazon-ssm-agent is not in this root (it comes with the phoenix base AMI)")
    assert not service_problems(host, ["amazon-ssm-agent.service"], booted)


def test_nginx(host, role, booted):
    if role != "web":
        pytest.skip("web role only")
    check = host.run("nginx -t")
    assert check.rc == 0, check.stderr
    assert not host.file("/etc/nginx/sites-enabled/default").exists, "nginx default site still enabled"
    assert host.file("/etc/nginx/sites-enabled/phoenix").is_symlink
    if booted:
        probe = host.run(
            "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1/healthz', timeout=5).read().decode())\""
        )
        assert probe.rc == 0 and probe.stdout.strip() == "ok", probe.stderr


def test_worker_unit(host, role):
    if role != "worker":
        pytest.skip("worker role only")
    verify = host.run("systemd-analyze verify /etc/systemd/system/phoenix-worker.service")
    assert verify.rc == 0, verify.stderr
    assert host.file("/usr/local/bin/phoenix-worker").mode & 0o111
