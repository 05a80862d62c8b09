"""No build credentials or per-instance identity left in the image."""

from __future__ import annotations

import shlex

import pytest
from imagecheck import home_dirs

# Where a stray private key could hide (/etc/ssh, the host keys, is checked by test_ssh.py).
KEY_SCAN_DIRS = ["/root", "/home", "/tmp", "/var/tmp", "/opt", "/srv", "/usr/local", "/etc"]
# Written so that this file itself does not match.
PRIVATE_KEY_RE = "-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"


@pytest.mark.after_cleanup
def test_no_authorized_keys(host):
    found = []
    for home in home_dirs(host):
        for name in ("authorized_keys", "authorized_keys2"):
            path = f"{home}/.ssh/{name}"
            if host.file(path).exists:
                found.append(path)
    assert not found, f"authorized_keys left in the image (the build user's key?): {found}"


def test_no_aws_credentials(host):
    found = [
        f"{home}/.aws/{name}"
        for home in home_dirs(host)
        for name in ("credentials", "config")
        if host.file(f"{home}/.aws/{name}").exists
    ]
    env = host.run(
        "grep -lsE '^[^#]*(AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|AWS_SESSION_TOKEN)' "
        "/etc/environment /etc/profile /etc/profile.d/* /etc/default/* /etc/phoenix/*"
    )
    found += env.stdout.split()
    assert not found, f"AWS credentials in the image: {found}"


def test_no_private_keys_outside_etc_ssh(host):
    dirs = " ".join(shlex.quote(d) for d in KEY_SCAN_DIRS)
    scan = host.run(
        f"find {dirs} -xdev -path /etc/ssh -prune -o -type f -size -256k -print0 2>/dev/null"
        f" | xargs -0 -r grep -lsE -- {shlex.quote(PRIVATE_KEY_RE)}"
    )
    keys = scan.stdout.split()
    assert not keys, f"private keys outside /etc/ssh: {keys}"


@pytest.mark.after_cleanup
def test_no_shell_history(host):
    found = []
    for home in home_dirs(host):
        for name in (".bash_history", ".python_history", ".lesshst", ".viminfo"):
            if host.file(f"{home}/{name}").exists:
                found.append(f"{home}/{name}")
    assert not found, f"shell history left in the image: {found}"


@pytest.mark.after_cleanup
def test_no_build_uploads(host):
    """The uploaded test suite (installed to /opt/phoenix/image-tests) is gone from /tmp."""
    assert not host.file("/tmp/tests").exists, "/tmp/tests (the build's upload) left in the image"


@pytest.mark.after_cleanup
def test_machine_id_per_instance(host, stage):
    machine_id = host.file("/etc/machine-id")
    content = machine_id.content_string.strip() if machine_id.exists else ""
    if stage == "instance":
        assert content, "the instance has no machine-id"
    else:
        assert content == "", "machine-id baked into the image (every instance would share it)"
