#!/usr/bin/env bash
# Makes the committed locks from pyproject.toml with pip-tools' pip-compile on Python 3.11
# (the oldest Python supported; the lock must install there):
#   requirements/test.txt  the test extra: what `bash scripts/test.sh` installs
#   requirements/run.txt   the fuse and web extras: what `bash scripts/demo.sh` installs,
#                          constrained to the test lock so that the two never disagree
# Run it after changing a dependency in pyproject.toml (tests/test_t0_environment.py fails
# until the lock agrees), or with --upgrade to move every pin to today's newest release.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
TOOLS=${LOCK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/elliptio-lock-tools}
if [ ! -x "$TOOLS/bin/pip-compile" ]; then
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check 'pip-tools>=7.4'
fi
COMPILE=("$TOOLS/bin/pip-compile" -q --strip-extras --allow-unsafe --no-emit-index-url
         --no-emit-find-links --no-emit-trusted-host "$@")
"${COMPILE[@]}" --extra test -o requirements/test.txt pyproject.toml
"${COMPILE[@]}" --extra fuse --extra web -c requirements/test.txt \
    -o requirements/run.txt pyproject.toml
echo "lock: wrote requirements/test.txt ($(grep -c '==' requirements/test.txt) pins)" \
     "and requirements/run.txt ($(grep -c '==' requirements/run.txt) pins)"
