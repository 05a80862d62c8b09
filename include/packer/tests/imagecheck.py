"""Checks shared by the test modules of the phoenix image test suite: role tables and host helpers.

Only ``host.run`` and ``host.file`` are used, so Debian's testinfra 7 (on the image) and testinfra 10
(in CI, with the chroot backend) both work.
"""

from __future__ import annotations

import shlex

# What every image has, and what each role adds. The role provisioner (20-role.sh) installs them.
COMMON_PACKAGES = [
    "openssh-server",
    "chrony",
    "ca-certificates",
    "unattended-upgrades",
    "python3-pytest",
    "python3-testinfra",
]
COMMON_SERVICES = [
    "ssh.service",
    "chrony.service",
    "unattended-upgrades.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
]
# Enabled, but oneshot or first-boot only: never checked as running.
COMMON_ONESHOT_UNITS = ["phoenix-ssh-host-keys.service"]

ROLES = {
    "web": {"packages": ["nginx"], "services": ["nginx.service"]},
    "worker": {"packages": ["python3"], "services": ["phoenix-worker.service"]},
}

STAGES = ("build", "final", "instance")

# The address sshd -T evaluates Match blocks for: root, connecting from an outside address.
SSHD_MATCH_SPEC = "user=root,host=phoenix-image-test.invalid,addr=192.0.2.1"


def unit_state(host, unit: str, query: str) -> str:
    """``systemctl is-enabled`` / ``is-active`` output; works offline in a chroot for is-enabled."""
    result = host.run(f"systemctl {query} {shlex.quote(unit)}")
    return (result.stdout.strip() or result.stderr.strip() or f"rc={result.rc}").splitlines()[0]


def service_problems(host, units: list[str], booted: bool, *, running: bool = True) -> list[str]:
    """Units that are not enabled (and, on a booted instance, not active)."""
    problems = []
    for unit in units:
        enabled = unit_state(host, unit, "is-enabled")
        if enabled != "enabled":
            problems.append(f"{unit} is-enabled: {enabled}")
        if booted and running:
            active = unit_state(host, unit, "is-active")
            if active != "active":
                problems.append(f"{unit} is-active: {active}")
    return problems


def package_installed(host, name: str) -> bool:
    result = host.run(f"dpkg-query -W -f='${{db:Status-Status}}' {shlex.quote(name)}")
    return result.rc == 0 and result.stdout.strip() == "installed"


SSHD_T_SCRIPT = r"""
[ -d /run/sshd ] || mkdir -p -m 0755 /run/sshd
set -- /etc/ssh/ssh_host_*_key
if [ -e "$1" ]; then
    /usr/sbin/sshd -T -C "$SPEC"
    exit $?
fi
# No host keys (a cleaned image): sshd -T needs one, so lend it a throwaway key.
d=$(mktemp -d) || exit 90
ssh-keygen -q -t ed25519 -N '' -f "$d/key" >/dev/null || { rm -rf "$d"; exit 91; }
/usr/sbin/sshd -T -h "$d/key" -C "$SPEC"
rc=$?
rm -rf "$d"
exit $rc
"""


def home_dirs(host) -> list[str]:
    """/root, every directory in /home, and every login account's home from /etc/passwd."""
    homes = {"/root"}
    listing = host.run("ls -1d /home/*/ 2>/dev/null")
    homes.update(line.rstrip("/") for line in listing.stdout.split() if line.strip())
    for line in host.file("/etc/passwd").content_string.splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[5].startswith(("/home/", "/root")):
            homes.add(fields[5].rstrip("/") or "/")
    return sorted(homes)
