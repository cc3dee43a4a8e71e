#!/usr/bin/env bash
# Installs everything ElliptIO and its tests need on a fresh Debian machine (as root, or
# with sudo), into a virtual environment of the project's own: nothing the machine's Python
# has preinstalled is used. Idempotent: quick when everything is there already.
#
#   bash scripts/setup.sh [demo|test]
#
# demo  the fuse and web extras (the main job), from requirements/run.txt
# test  the test extra (everything the suite needs), from requirements/test.txt
#
# Environment:
#   PYTHON          the interpreter the environment is made from (default: python3.11 if
#                   there is one, else python3; 3.11 to 3.13)
#   ELLIPTIO_VENV   where the environment lives (default: .venv in the repository)
#   ELLIPTIO_DEPS   "locked" (default): exactly the committed lock; "lowest" (test only):
#                   exactly requirements/lowest.txt, every direct dependency at the lower
#                   bound pyproject.toml states; "newest": a fresh environment resolved to
#                   the newest versions pyproject.toml allows, followed by the list of
#                   packages that moved since the lock
#
# The locks are made by `bash scripts/lock.sh` (pip-tools' pip-compile, Python 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-test}
case "$MODE" in
    demo) APT_PACKAGES=(fuse3 libfuse3-dev pkg-config gcc git)
          EXTRAS=fuse,web; LOCK=requirements/run.txt ;;
    test) APT_PACKAGES=(fuse3 libfuse3-dev pkg-config gcc attr rsync chromium s3fs rclone
                        sqlite3 git postgresql)
          EXTRAS=test; LOCK=requirements/test.txt ;;
    *) echo "setup: usage: setup.sh [demo|test]" >&2; exit 2 ;;
esac
DEPS=${ELLIPTIO_DEPS:-locked}
case "$DEPS" in locked|newest) ;;
    lowest) if [ "$MODE" != test ]; then
                echo "setup: ELLIPTIO_DEPS=lowest is for the tests" >&2; exit 2
            fi
            LOCK=requirements/lowest.txt ;;
    *) echo "setup: ELLIPTIO_DEPS must be locked, lowest or newest, not '$DEPS'" >&2; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

. scripts/python.sh
if [ -z "${PYTHON:-}" ]; then PYTHON=$(find_python 3.11 || echo python3); fi
if ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))' \
     2>/dev/null
then
    echo "setup: $PYTHON is $("$PYTHON" -V 2>&1 | head -1); ElliptIO needs Python 3.11 to 3.13" \
         "(set PYTHON=/path/to/python3.x)" >&2
    exit 2
fi
VENV=$(realpath -m "${ELLIPTIO_VENV:-.venv}")
VPY="$VENV/bin/python"
want_version=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')

# The environment is made anew when it is missing, sees system site-packages, was made
# from another Python, holds another lock than the committed one (so it is exactly the
# lock, never the lock plus leftovers), or always for "newest": a resolution must not start
# from what is there. The test lock holds the demo's (scripts/lock.sh), so an environment
# set up for the tests serves the demo as it is.
# The marker .elliptio-lock says which lock, at which content, from which Python.
lock_id() { echo "$1 $(cat "$1" pyproject.toml | sha256sum | cut -c1-16) $want_version"; }
have=$(cat "$VENV/.elliptio-lock" 2>/dev/null || true)
want=$(lock_id "$LOCK")
if [ "$DEPS" != newest ] && [ -x "$VPY" ] \
   && ! grep -qi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" 2>/dev/null \
   && { [ "$have" = "$want" ] \
        || { [ "$MODE" = demo ] && [ "$have" = "$(lock_id requirements/test.txt)" ]; }; }
then
    echo "setup: $VENV is up to date with $(echo "$have" | cut -d' ' -f1)"
    exit 0
fi
PIP=("$VPY" -m pip -q --disable-pip-version-check --no-input)
quiet() {  # pip, without this machine's notes on find-links folders that are not there
    "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a dir" || true; }
}
export PIP_ROOT_USER_ACTION=ignore   # root is the normal case on these machines
echo "setup: making the environment $VENV (Python $want_version)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
if [ "$DEPS" != newest ]; then
    echo "setup: installing $LOCK into it"
    quiet "${PIP[@]}" install -r "$LOCK"
    quiet "${PIP[@]}" install --no-deps -e .
    echo "$want" > "$VENV/.elliptio-lock"
else
    echo "setup: installing ElliptIO[$EXTRAS] at the newest versions pyproject.toml allows"
    # uv resolves; pip would take many minutes backtracking through boto3's daily releases
    # to the one the newest aiobotocore (s3fs) admits. uv is a tool of this step only: it
    # is installed into the environment, used, and removed again.
    quiet "${PIP[@]}" install uv
    "$VENV/bin/uv" pip install -q --python "$VPY" --upgrade -e ".[$EXTRAS]"
    quiet "${PIP[@]}" uninstall -y uv
    # What moved since the lock, so that a failure of this pass names its suspects.
    "$VPY" scripts/lockdiff.py "$LOCK"
fi
echo "setup: ready: $VENV ($("$VPY" -V))"
