#!/usr/bin/env bash
# The main job on the embedded default (local store + SQLite, no servers): installs
# ElliptIO into the project's environment (.venv, from requirements/run.txt), runs the user
# stories from Python, shows the same lake from the `eio` command, then mounts it with
# elliptiofs (where /dev/fuse is usable): ls, a cat through the mount, a cp into outbox/
# that becomes an artifact based on what that shell read, its lineage; then unmounts.
#
# Everything lives in ./demo-lake (DEMO_DIR moves it); rerunning adds to it. The mount is at
# $DEMO_DIR/mnt (DEMO_MOUNT moves it; DEMO_MOUNT=no skips it). DEMO_WEB=8080 serves the
# catalogue web page on http://127.0.0.1:8080 at the end (Ctrl-C stops it). DEMO_SETUP=no
# uses the environment ELLIPTIO_VENV as it is (the suite's test of this script does).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DEMO_SETUP:-yes}" != no ]; then bash scripts/setup.sh demo; fi
VENV=$(realpath -m "${ELLIPTIO_VENV:-.venv}")
export PATH="$VENV/bin:$PATH"   # python, eio and elliptiofs of the project's environment
DEMO_DIR=$(realpath -m "${DEMO_DIR:-demo-lake}")
mkdir -p "$DEMO_DIR"
export ELLIPTIO_STORE="file://$DEMO_DIR/store"
export ELLIPTIO_CATALOGUE="sqlite:///$DEMO_DIR/catalogue.sqlite"
export ELLIPTIO_READLOG="$DEMO_DIR/readlog.sqlite"
export ELLIPTIO_SPOOL="$DEMO_DIR/spool"
echo "== the stories, from Python (lake in $DEMO_DIR; $(command -v python))"
out=$(python examples/story.py "$DEMO_DIR/work")
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

# -- the same lake as a filesystem ---------------------------------------------------------
why_not=""
MNT=${DEMO_MOUNT:-$DEMO_DIR/mnt}
if [ "$MNT" = no ]; then why_not="DEMO_MOUNT=no"
elif [ ! -c /dev/fuse ]; then why_not="there is no /dev/fuse (modprobe fuse, or pass the device to the container)"
elif ! { true <>/dev/fuse; } 2>/dev/null; then why_not="/dev/fuse is not readable and writable by $(id -un)"
elif ! command -v fusermount3 >/dev/null; then why_not="fusermount3 is missing (apt-get install fuse3)"
fi
echo
if [ -n "$why_not" ]; then
    echo "== the mount is skipped: $why_not"
else
    MNT=$(realpath -m "$MNT")
    echo "== the same lake as a filesystem: elliptiofs $MNT"
    mkdir -p "$MNT"
    ELLIPTIO_OUTBOX_QUIET=0.5 elliptiofs "$MNT" --log "$DEMO_DIR/elliptiofs.log"
    trap 'fusermount3 -u "$MNT" 2>/dev/null && echo "== unmounted $MNT"' EXIT
    echo "\$ ls $MNT/by-user/andy/"
    ls "$MNT/by-user/andy/"
    echo "\$ ls $MNT/artifacts/$andy/"
    ls "$MNT/artifacts/$andy/"
    # One shell session (setsid: a session of its own, as a new terminal would be) reads
    # Andy's file through the mount and copies a result into outbox/: the daemon saves it
    # as an artifact of the writing user, based on what that session read.
    name="summary-$(date +%s).txt"
    echo "\$ setsid bash -c 'cat artifacts/$andy/train.txt | wc -l > $name && cp $name outbox/'"
    (cd "$DEMO_DIR/work" && setsid --wait bash -c \
        "cat '$MNT/artifacts/$andy/train.txt' | wc -l > '$name' && cp '$name' '$MNT/outbox/'")
    for _ in $(seq 1 100); do  # committed: the entry becomes a symlink ../artifacts/<id>
        [ -L "$MNT/outbox/$name" ] && break
        sleep 0.1
    done
    target=$(readlink "$MNT/outbox/$name" || true)
    if [ -z "$target" ]; then
        echo "demo: the outbox did not commit $name (log: $DEMO_DIR/elliptiofs.log)" >&2
        exit 1
    fi
    new=${target##*/}
    echo "\$ readlink $MNT/outbox/$name"
    echo "$target"
    echo
    echo "== eio lineage $new (the outbox artifact is based on what that shell read)"
    eio lineage "$new"
    eio show "$new" --json | python -c \
        'import json,sys; a=json.load(sys.stdin); assert sys.argv[1] in a["based_on"], a' \
        "$andy"
fi
if [ -n "${DEMO_WEB:-}" ]; then
    echo
    echo "== the catalogue web page on http://127.0.0.1:${DEMO_WEB} (Ctrl-C to stop)"
    eio web --port "${DEMO_WEB}"
fi
