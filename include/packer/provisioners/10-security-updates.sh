#!/usr/bin/env bash
# 10-security-updates.sh: bring every installed package up to date, security updates included.
#
# Debian stable only receives security fixes and point-release fixes, so a full upgrade from the
# configured suites (<codename>, <codename>-updates, <codename>-security) is the security upgrade.
# Refuses to continue when no <codename>-security source is configured: the image would silently
# miss security fixes. Idempotent: a second run finds nothing to upgrade.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt_get() {
  apt-get -y -q -o Acquire::Retries=3 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# shellcheck source=/dev/null
. /etc/os-release
codename="${VERSION_CODENAME:?/etc/os-release has no VERSION_CODENAME}"

echo "10-security-updates: apt-get update (${PRETTY_NAME:-$codename})"
apt_get update

if ! apt-cache policy | grep -q "n=${codename}-security"; then
  echo "10-security-updates: no ${codename}-security apt source is configured; refusing to build an image without security updates" >&2
  apt-cache policy >&2
  exit 1
fi

echo "10-security-updates: apt-get full-upgrade"
apt_get full-upgrade

simulation="$(apt-get -s -o Debug::NoLocking=1 full-upgrade)"
pending="$(grep -c '^Inst ' <<<"$simulation" || true)"
if [ "$pending" != "0" ]; then
  echo "10-security-updates: ${pending} upgrades still pending after full-upgrade" >&2
  grep '^Inst ' <<<"$simulation" >&2
  exit 1
fi
echo "10-security-updates: all packages up to date"
