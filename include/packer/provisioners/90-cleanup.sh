#!/usr/bin/env bash
# 90-cleanup.sh: leave no build credentials or per-instance identity in the image.
#
#   - authorized_keys of the build user (Packer's temporary key) and of every other account
#   - AWS credential files, shell and tool histories
#   - SSH host keys: recreated per instance on first boot (cloud-init, or
#     phoenix-ssh-host-keys.service from 30-harden-ssh.sh)
#   - machine-id: emptied so systemd gives each instance its own
#   - cloud-init instance state and logs, apt's downloaded .debs, /tmp and /var/tmp, login records
#
# Packer keeps its SSH connection open, so the provisioners after this one still run.
# Idempotent: removing what is already gone is fine.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

build_user="${PHOENIX_BUILD_USER:-admin}"
echo "90-cleanup: build user ${build_user}"

apt-get -y -q autoremove --purge
apt-get -y -q clean

shopt -s nullglob
homes=(/root /home/*)
if build_home="$(getent passwd "$build_user" | cut -d: -f6)" && [ -n "$build_home" ]; then
  homes+=("$build_home")
fi
for home in "${homes[@]}"; do
  [ -d "$home" ] || continue
  rm -f "$home/.ssh/authorized_keys" "$home/.ssh/authorized_keys2"
  rm -rf "$home/.aws" "$home/.config/gcloud" "$home/.docker"
  rm -f "$home/.bash_history" "$home/.python_history" "$home/.lesshst" "$home/.wget-hsts" \
    "$home/.viminfo" "$home/.sudo_as_admin_successful"
done

rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub

: >/etc/machine-id
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
  rm -f /var/lib/dbus/machine-id
fi

if command -v cloud-init >/dev/null; then
  cloud-init clean --logs
fi

# Uploads (the test suite in /tmp/tests, Packer's scripts) and anything else left in the temp dirs;
# systemd's private temp dirs of running services stay.
find /tmp /var/tmp -mindepth 1 -maxdepth 1 ! -name 'systemd-private-*' -exec rm -rf {} +

for f in /var/log/wtmp /var/log/btmp /var/log/lastlog; do
  if [ -f "$f" ]; then : >"$f"; fi
done
if [ -d /run/systemd/system ]; then
  journalctl --rotate >/dev/null 2>&1 || true
  journalctl --vacuum-time=1s >/dev/null 2>&1 || true
fi

echo "90-cleanup: done"
