#!/usr/bin/env bash
# 40-unattended-upgrades.sh: unattended security updates on every instance of the image.
#
# apt's daily timers refresh the package lists and run unattended-upgrade, which installs updates
# from the origins in Unattended-Upgrade::Origins-Pattern: here only Debian-Security.
# No automatic reboots: phoenix-fleet replaces instances (new AMI weekly, fleet_max_age) instead.
# Idempotent: rewrites the same files.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get -y -q -o Acquire::Retries=3 \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  install --no-install-recommends unattended-upgrades

cat >/etc/apt/apt.conf.d/20auto-upgrades <<'CONF'
// phoenix-fleet (include/packer/provisioners/40-unattended-upgrades.sh)
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
CONF

cat >/etc/apt/apt.conf.d/52phoenix-unattended-upgrades <<'CONF'
// phoenix-fleet: security updates only (replacing Debian's list in 50unattended-upgrades), and
// never reboot on our own: instances are replaced instead.
#clear Unattended-Upgrade::Origins-Pattern;
Unattended-Upgrade::Origins-Pattern {
        "origin=Debian,codename=${distro_codename},label=Debian-Security";
        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
};
Unattended-Upgrade::Automatic-Reboot "false";
Unattended-Upgrade::Remove-Unused-Dependencies "true";
Unattended-Upgrade::SyslogEnable "true";
CONF
chmod 0644 /etc/apt/apt.conf.d/20auto-upgrades /etc/apt/apt.conf.d/52phoenix-unattended-upgrades

systemctl enable apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service
if [ -d /run/systemd/system ]; then
  systemctl start apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service
fi

echo "40-unattended-upgrades: $(apt-config dump APT::Periodic | tr '\n' ' ')"
