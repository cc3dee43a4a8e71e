#!/usr/bin/env bash
# The test command: installs everything the tests need into the project's environment
# (.venv, from the committed lock requirements/test.txt; see scripts/setup.sh), then runs
# the whole suite from it. Extra arguments go to pytest.
#
# With CI=true (as CI runs it) or ELLIPTIO_TEST_NEWEST=1, the suite then runs twice more:
# at the lower bounds pyproject.toml states (requirements/lowest.txt, .venv-lowest, the
# same Python), and on Python 3.13 (NEWEST_PYTHON, default python3.13) in a fresh
# environment resolved to the newest versions pyproject.toml allows (.venv-newest). All
# passes must pass; a failing newest pass is followed by the list of packages that moved
# since the lock.
set -uo pipefail
cd "$(dirname "$0")/.."

run_pass() {  # run_pass NAME VENV PYTHON DEPS [pytest args]
    local name=$1 venv=$2 python=$3 deps=$4
    shift 4
    echo "== test pass: $name"
    PYTHON="$python" ELLIPTIO_VENV="$venv" ELLIPTIO_DEPS="$deps" \
        bash scripts/setup.sh test || return 3
    venv=$(realpath -m "$venv")
    PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -p no:cacheprovider -q -rfEs \
        --durations=15 "$@"
}

mkdir -p test-output
. scripts/python.sh
LOCKED_PYTHON=${PYTHON:-$(find_python 3.11 || echo python3)}
run_pass "locked (requirements/test.txt, $LOCKED_PYTHON)" "${ELLIPTIO_VENV:-.venv}" \
    "$LOCKED_PYTHON" locked "$@"
locked=$?
if [ "${CI:-}" != true ] && [ "${ELLIPTIO_TEST_NEWEST:-}" != 1 ]; then
    exit $locked
fi

run_pass "lowest (requirements/lowest.txt, $LOCKED_PYTHON)" .venv-lowest \
    "$LOCKED_PYTHON" lowest "$@"
lowest=$?

NEWEST_PYTHON=${NEWEST_PYTHON:-$(find_python 3.13 || true)}
if [ -z "$NEWEST_PYTHON" ]; then
    echo "test: no Python 3.13 found: the newest-versions pass needs it (set NEWEST_PYTHON)" >&2
    exit 3
fi
run_pass "newest versions pyproject.toml allows ($NEWEST_PYTHON)" .venv-newest \
    "$NEWEST_PYTHON" newest "$@"
newest=$?
if [ $newest != 0 ]; then
    echo "test: the newest-versions pass failed (exit $newest); what moved since the lock:"
    .venv-newest/bin/python scripts/lockdiff.py requirements/test.txt || true
fi
echo "test: locked pass exit $locked, lowest pass exit $lowest, newest pass exit $newest"
for code in $locked $lowest $newest; do
    if [ "$code" != 0 ]; then exit "$code"; fi
done
