#!/usr/bin/env bash
# 50-install-tests.sh: install the image test suite and its runner on the image.
#
#   /opt/phoenix/image-tests           the testinfra suite (uploaded by the template's file
#                                      provisioner to PHOENIX_TESTS_SRC, default /tmp/tests)
#   /usr/local/bin/phoenix-image-test  the runner: 60-run-tests.sh and 98-final-tests.sh call it
#                                      during the build, the verify stage calls it through SSM
#
# pytest and testinfra come from Debian's packages (python3-pytest, python3-testinfra), so the
# suite needs no network access and no pip at verify time. Idempotent: replaces the installed copy.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

src="${PHOENIX_TESTS_SRC:-/tmp/tests}"
dest=/opt/phoenix/image-tests

if [ ! -f "$src/conftest.py" ] || [ ! -f "$src/phoenix-image-test" ]; then
  echo "50-install-tests: no test suite at ${src} (the template's file provisioner uploads it)" >&2
  exit 1
fi

apt-get -y -q -o Acquire::Retries=3 \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  install --no-install-recommends python3 python3-pytest python3-testinfra

install -d -m 0755 /opt/phoenix
rm -rf "${dest}.new"
install -d -m 0755 "${dest}.new"
cp -R "$src/." "${dest}.new/"
find "${dest}.new" -depth \( -name __pycache__ -o -name '*.pyc' -o -name .pytest_cache \) -exec rm -rf {} +
chown -R root:root "${dest}.new"
chmod -R u=rwX,go=rX "${dest}.new"
rm -rf "$dest"
mv "${dest}.new" "$dest"

install -m 0755 -o root -g root "$dest/phoenix-image-test" /usr/local/bin/phoenix-image-test
install -d -m 0755 /var/log/phoenix

echo "50-install-tests: $(find "$dest" -name 'test_*.py' | wc -l) test files in ${dest}; runner /usr/local/bin/phoenix-image-test"
