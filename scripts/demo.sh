#!/usr/bin/env bash
# The main job on the embedded default (local store + SQLite, no servers): installs
# ElliptIO, runs the user stories from Python, then shows the same lake from the `eio`
# command. Everything lives in ./demo-lake (override with DEMO_DIR); rerunning adds to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
DEMO_DIR=$(realpath -m "${DEMO_DIR:-demo-lake}")
mkdir -p "$DEMO_DIR"
export ELLIPTIO_STORE="file://$DEMO_DIR/store"
export ELLIPTIO_CATALOGUE="sqlite:///$DEMO_DIR/catalogue.sqlite"
export ELLIPTIO_READLOG="$DEMO_DIR/readlog.sqlite"
echo "== the stories, from Python (lake in $DEMO_DIR)"
out=$(python3 examples/story.py "$DEMO_DIR/work")
echo "$out"
andy=$(echo "$out" | sed -n 's/^ANDY_ID=//p')
echo
echo "== eio search 'user=andy,since=10d,file=*.txt,tag=*dataset*'"
eio search 'user=andy,since=10d,file=*.txt,tag=*dataset*'
echo
echo "== eio show $andy"
eio show "$andy"
echo
echo "== eio lineage $andy --children"
eio lineage "$andy" --children
echo
echo "== eio fsck"
eio fsck
if [ -n "${DEMO_MOUNT:-}" ] && command -v elliptiofs >/dev/null; then
    echo
    echo "== the same lake as a filesystem: elliptiofs $DEMO_MOUNT"
    mkdir -p "$DEMO_MOUNT"
    elliptiofs "$DEMO_MOUNT"
    trap 'fusermount3 -u "$DEMO_MOUNT"' EXIT
    ls -l "$DEMO_MOUNT/by-user/andy/" "$DEMO_MOUNT/based-on/$andy/"
fi
if [ -n "${DEMO_WEB:-}" ]; then
    echo
    echo "== the catalogue web page (Ctrl-C to stop)"
    eio web --port "${DEMO_WEB}"
fi
