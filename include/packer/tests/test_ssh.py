"""SSH: hardened, no root login, no passwords, host keys made per instance."""

from __future__ import annotations

import pytest
from imagecheck import COMMON_ONESHOT_UNITS, service_problems

# Effective value sshd must end up with (sshd -T, lower-case keywords).
REQUIRED_SSHD = {
    "permitrootlogin": "no",
    "passwordauthentication": "no",
    "kbdinteractiveauthentication": "no",
    "permitemptypasswords": "no",
    "pubkeyauthentication": "yes",
    "authenticationmethods": "publickey",
    "hostbasedauthentication": "no",
    "ignorerhosts": "yes",
    "permituserenvironment": "no",
    "x11forwarding": "no",
    "allowagentforwarding": "no",
}


@pytest.mark.parametrize("keyword", sorted(REQUIRED_SSHD))
def test_sshd_setting(sshd_config, keyword):
    assert sshd_config.get(keyword) == [REQUIRED_SSHD[keyword]], (
        f"sshd effective {keyword} is {sshd_config.get(keyword)}, want {REQUIRED_SSHD[keyword]!r}"
    )


def test_sshd_max_auth_tries(sshd_config):
    tries = int(sshd_config["maxauthtries"][0])
    assert tries <= 3, f"MaxAuthTries {tries} > 3"


def test_hardening_dropin(host):
    dropin = host.file("/etc/ssh/sshd_config.d/00-phoenix-hardening.conf")
    assert dropin.exists, "the hardening drop-in of 30-harden-ssh.sh is missing"
    assert dropin.user == "root"
    assert dropin.mode & 0o022 == 0, f"drop-in is group/world writable: {oct(dropin.mode)}"


def test_no_password_logins(host):
    """No account has a usable or empty password: logins are by key only (root included)."""
    usable = []
    for line in host.file("/etc/shadow").content_string.splitlines():
        fields = line.split(":")
        if len(fields) < 2:
            continue
        name, password = fields[0], fields[1]
        if not password.startswith(("!", "*")):
            usable.append(name if password else f"{name} (empty password)")
    assert not usable, f"accounts with a password: {usable}"


def test_ssh_service_enabled(host, booted):
    assert not service_problems(host, ["ssh.service"], booted)


def test_host_key_unit_enabled(host, booted):
    assert not service_problems(host, COMMON_ONESHOT_UNITS, booted, running=False)


@pytest.mark.after_cleanup
def test_host_keys_per_instance(host, stage):
    """The image carries no SSH host keys; an instance booted from it has its own."""
    keys = host.run("ls -1 /etc/ssh/ssh_host_*_key 2>/dev/null").stdout.split()
    if stage == "instance":
        assert keys, (
            "the instance has no SSH host keys (phoenix-ssh-host-keys.service or cloud-init makes them)"
        )
    else:
        assert not keys, f"SSH host keys baked into the image (every instance would share them): {keys}"
