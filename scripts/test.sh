#!/usr/bin/env bash
# The test command: installs everything the tests need into the project's environment
# (.venv, from requirements/test.txt; see scripts/setup.sh), then runs the whole suite
# from it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
VENV=$(realpath -m "${ELLIPTIO_VENV:-.venv}")
export PATH="$VENV/bin:$PATH"
mkdir -p test-output
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rfEs --durations=15 "$@"
