#!/usr/bin/env bash
# 30-harden-ssh.sh: sshd hardening as a drop-in, and SSH host keys made per instance.
#
# sshd uses the first value it reads for a keyword, and Debian's sshd_config includes
# /etc/ssh/sshd_config.d/*.conf at its top, so 00-phoenix-hardening.conf wins over the main file
# and over later drop-ins (cloud-init writes 50-cloud-init.conf). The host keys are removed by
# 90-cleanup.sh; phoenix-ssh-host-keys.service creates them on first boot, after cloud-init (which
# regenerates them per instance when it is present) and before ssh.service.
# Idempotent: rewrites the same files.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v sshd >/dev/null && [ ! -x /usr/sbin/sshd ]; then
  apt-get -y -q -o Acquire::Retries=3 install --no-install-recommends openssh-server
fi

if ! grep -qE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' /etc/ssh/sshd_config; then
  echo "30-harden-ssh: /etc/ssh/sshd_config does not include /etc/ssh/sshd_config.d/*.conf" >&2
  exit 1
fi

install -d -m 0755 /etc/ssh/sshd_config.d
cat >/etc/ssh/sshd_config.d/00-phoenix-hardening.conf <<'CONF'
# phoenix-fleet SSH hardening (include/packer/provisioners/30-harden-ssh.sh).
# First value wins in sshd: this drop-in is read before the rest of the configuration.
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PubkeyAuthentication yes
AuthenticationMethods publickey
HostbasedAuthentication no
IgnoreRhosts yes
PermitUserEnvironment no
X11Forwarding no
AllowAgentForwarding no
MaxAuthTries 3
LoginGraceTime 30
ClientAliveInterval 300
ClientAliveCountMax 2
LogLevel VERBOSE
CONF
chmod 0644 /etc/ssh/sshd_config.d/00-phoenix-hardening.conf

cat >/etc/systemd/system/phoenix-ssh-host-keys.service <<'UNIT'
[Unit]
Description=Create missing SSH host keys (phoenix-fleet images ship without them)
After=cloud-init.service
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable phoenix-ssh-host-keys.service

# Validate the configuration: sshd -t needs its privilege separation directory (ssh.service's
# RuntimeDirectory) and a host key; use a throwaway key when the host keys are already gone.
[ -d /run/sshd ] || install -d -m 0755 /run/sshd
tmpkey_dir=""
cleanup() { if [ -n "$tmpkey_dir" ]; then rm -rf "$tmpkey_dir"; fi; }
trap cleanup EXIT
hostkey_args=()
if ! compgen -G '/etc/ssh/ssh_host_*_key' >/dev/null; then
  tmpkey_dir="$(mktemp -d)"
  ssh-keygen -q -t ed25519 -N '' -f "$tmpkey_dir/key"
  hostkey_args=(-h "$tmpkey_dir/key")
fi
/usr/sbin/sshd -t "${hostkey_args[@]}"
echo "30-harden-ssh: sshd configuration hardened and valid"
