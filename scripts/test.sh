#!/usr/bin/env bash
# The test command: installs everything the tests need, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
mkdir -p test-output
exec python3 -m pytest -p no:cacheprovider -q -rfEs --durations=15 "$@"
