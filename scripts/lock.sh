#!/usr/bin/env bash
# Makes the committed locks from pyproject.toml with pip-tools' pip-compile on Python 3.11
# (the oldest Python supported; the lock must install there):
#   requirements/test.txt  the test extra: what `bash scripts/test.sh` installs
#   requirements/run.txt   the fuse and web extras: what `bash scripts/demo.sh` installs,
#                          constrained to the test lock so that the two never disagree
#   requirements/lowest.txt the test extra with every direct dependency at the lower bound
#                          pyproject.toml states (uv's lowest-direct resolution), for CI's
#                          pass that proves those bounds (scripts/test.sh)
# Run it after changing a dependency in pyproject.toml (tests/test_t0_environment.py fails
# until the lock agrees), or with --upgrade to move every pin to today's newest release.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
TOOLS=${LOCK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/elliptio-lock-tools}
if [ ! -x "$TOOLS/bin/pip-compile" ]; then
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check 'pip-tools>=7.4' uv
fi
COMPILE=("$TOOLS/bin/pip-compile" -q --strip-extras --allow-unsafe --no-emit-index-url
         --no-emit-find-links --no-emit-trusted-host "$@")
"${COMPILE[@]}" --extra test -o requirements/test.txt pyproject.toml
# The test extra names elliptio[all], so pip-compile pins the project itself as
# "elliptio @ file:///<this checkout>": a path that exists in no other clone. The project
# is installed from the tree (setup.sh: pip install --no-deps -e .), never from the lock.
drop_self() {
    awk '/^elliptio @ /{skip=1; next} skip && /^ +#/{next} {skip=0; print}' "$1" > "$1.tmp"
    mv "$1.tmp" "$1"
}
drop_self requirements/test.txt
"${COMPILE[@]}" --extra fuse --extra web -c requirements/test.txt \
    -o requirements/run.txt pyproject.toml
drop_self requirements/run.txt
"$TOOLS/bin/uv" pip compile -q --resolution lowest-direct --python-version 3.11 \
    --extra test --no-header --annotation-style line -o requirements/lowest.txt pyproject.toml
sed -i '1i # The test extra at the lower bounds pyproject.toml states: made by scripts/lock.sh\n# (uv pip compile --resolution lowest-direct --python-version 3.11 --extra test)' \
    requirements/lowest.txt
echo "lock: wrote requirements/test.txt ($(grep -c '==' requirements/test.txt) pins)" \
     "requirements/run.txt ($(grep -c '==' requirements/run.txt) pins) and" \
     "requirements/lowest.txt ($(grep -c '==' requirements/lowest.txt) pins)"
