#!/usr/bin/env bash
# 98-final-tests.sh: the whole image test suite on the cleaned image, the last step of the build.
# A failed check fails the build, so no AMI is registered.
set -euo pipefail

/usr/local/bin/phoenix-image-test --stage final
