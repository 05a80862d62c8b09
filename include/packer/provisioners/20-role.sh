#!/usr/bin/env bash
# 20-role.sh: set up the role named by PHOENIX_ROLE, plus what every phoenix image has.
#
#   common  chrony (Amazon Time Sync Service preferred), openssh-server, ca-certificates,
#           /etc/phoenix/role and /etc/phoenix/build-info, amazon-ssm-agent enabled when the base
#           AMI ships it (Debian has no package for it; the phoenix base AMI installs AWS's .deb)
#   web     nginx with a /healthz endpoint on :80, default site removed, server_tokens off
#   worker  a phoenix-worker.service placeholder (the worker application's unit), run as a
#           dynamic unprivileged user with systemd sandboxing
#
# Idempotent: re-running rewrites the same files and installs nothing new.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

role="${PHOENIX_ROLE:-}"
case "$role" in
  web) role_packages=(nginx) ;;
  worker) role_packages=(python3) ;;
  *)
    echo "20-role.sh: unknown role '${role}' (PHOENIX_ROLE must be one of: web worker)" >&2
    exit 64
    ;;
esac
common_packages=(chrony openssh-server ca-certificates)

apt_get() {
  apt-get -y -q -o Acquire::Retries=3 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# systemd is the running init (a booted builder instance), not a chroot or container build
booted() { [ -d /run/systemd/system ]; }

echo "20-role: installing ${common_packages[*]} ${role_packages[*]}"
apt_get install --no-install-recommends "${common_packages[@]}" "${role_packages[@]}"

# --- identity of the image ------------------------------------------------------------------------
install -d -m 0755 /etc/phoenix
printf '%s\n' "$role" >/etc/phoenix/role
{
  printf 'PHOENIX_ROLE=%s\n' "$role"
  printf 'PHOENIX_VERSION=%s\n' "${PHOENIX_VERSION:-unknown}"
  printf 'PHOENIX_BUILD_RUN=%s\n' "${PHOENIX_BUILD_RUN:-unknown}"
  printf 'PHOENIX_GIT_SHA=%s\n' "${PHOENIX_GIT_SHA:-unknown}"
  printf 'PHOENIX_SOURCE_AMI=%s\n' "${PHOENIX_SOURCE_AMI:-unknown}"
} >/etc/phoenix/build-info
chmod 0644 /etc/phoenix/role /etc/phoenix/build-info

# --- time: chrony, Amazon Time Sync Service first -------------------------------------------------
install -d -m 0755 /etc/chrony/sources.d
cat >/etc/chrony/sources.d/phoenix-amazon-time-sync.sources <<'CONF'
# Amazon Time Sync Service (link-local, every EC2 instance); the Debian pool stays as fallback.
server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4
CONF
systemctl enable chrony.service

# --- SSM agent: comes with the base AMI, enabled when present -------------------------------------
if [ -e /lib/systemd/system/amazon-ssm-agent.service ] || [ -e /etc/systemd/system/amazon-ssm-agent.service ]; then
  systemctl enable amazon-ssm-agent.service
  echo "20-role: amazon-ssm-agent enabled"
else
  echo "20-role: amazon-ssm-agent is not installed in this base image (the verify stage needs it; see docs/packer.md)"
fi

# --- the role -------------------------------------------------------------------------------------
case "$role" in
  web)
    install -d -m 0755 /var/www/phoenix
    printf 'phoenix %s %s\n' "$role" "${PHOENIX_VERSION:-unknown}" >/var/www/phoenix/index.html
    cat >/etc/nginx/conf.d/phoenix-hardening.conf <<'CONF'
# phoenix-fleet: no version in headers and error pages
server_tokens off;
CONF
    cat >/etc/nginx/sites-available/phoenix <<'CONF'
# phoenix-fleet web role: the load balancer's health check is GET /healthz
server {
    listen 80 default_server;
    server_name _;
    root /var/www/phoenix;

    location = /healthz {
        access_log off;
        default_type text/plain;
        return 200 "ok\n";
    }
}
CONF
    rm -f /etc/nginx/sites-enabled/default
    ln -sfn /etc/nginx/sites-available/phoenix /etc/nginx/sites-enabled/phoenix
    nginx -t
    systemctl enable nginx.service
    if booted; then systemctl reload-or-restart nginx.service; fi
    ;;
  worker)
    cat >/usr/local/bin/phoenix-worker <<'SH'
#!/usr/bin/env bash
# Placeholder for the worker application: logs a heartbeat every minute.
set -euo pipefail
while true; do
  echo "phoenix-worker: alive ($(cat /etc/phoenix/role 2>/dev/null || echo unknown))"
  sleep 60
done
SH
    chmod 0755 /usr/local/bin/phoenix-worker
    cat >/etc/systemd/system/phoenix-worker.service <<'UNIT'
[Unit]
Description=phoenix-fleet worker (placeholder for the worker application)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/phoenix-worker
Restart=always
RestartSec=5
DynamicUser=yes
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
UNIT
    systemctl enable phoenix-worker.service
    if booted; then
      systemctl daemon-reload
      systemctl restart phoenix-worker.service
    fi
    ;;
esac

if booted; then systemctl restart chrony.service; fi
echo "20-role: role ${role} set up"
