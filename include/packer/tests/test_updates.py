"""Security updates: none pending at build time, unattended security updates on."""

from __future__ import annotations

import re

from imagecheck import service_problems


def apt_config(host, key: str) -> str:
    return host.check_output(f"apt-config dump {key}")


def test_unattended_upgrades_installed(host):
    assert host.run("dpkg-query -W -f='${db:Status-Status}' unattended-upgrades").stdout == "installed"


def test_periodic_updates_on(host):
    dump = apt_config(host, "APT::Periodic")
    assert re.search(r'^APT::Periodic::Update-Package-Lists "1";$', dump, re.M), dump
    assert re.search(r'^APT::Periodic::Unattended-Upgrade "1";$', dump, re.M), dump


def test_security_origin_allowed(host):
    dump = apt_config(host, "Unattended-Upgrade::Origins-Pattern")
    assert "label=Debian-Security" in dump, f"no Debian-Security origin in Origins-Pattern:\n{dump}"


def test_update_timers_enabled(host, booted):
    units = ["apt-daily.timer", "apt-daily-upgrade.timer", "unattended-upgrades.service"]
    assert not service_problems(host, units, booted)


def test_security_source_configured(host):
    policy = host.check_output("apt-cache policy")
    assert re.search(r"n=[a-z]+-security", policy), f"no -security apt source configured:\n{policy}"


def test_no_pending_security_updates(host):
    """Against the package lists of the build: every security update is installed."""
    sim = host.run("apt-get -s -o Debug::NoLocking=1 full-upgrade")
    assert sim.rc == 0, sim.stderr
    pending = [line for line in sim.stdout.splitlines() if line.startswith("Inst ") and "-security" in line]
    assert not pending, "security updates not installed:\n" + "\n".join(pending)
