#!/usr/bin/env bash
# 60-run-tests.sh: run the image test suite during the build; a failed check fails the build.
#
# Stage "build": every check except those marked after_cleanup (no leftover authorized_keys, host
# keys, history...), which cannot hold while Packer is still logged in; 98-final-tests.sh runs the
# whole suite once 90-cleanup.sh has run.
set -euo pipefail

/usr/local/bin/phoenix-image-test --stage build
