#!/usr/bin/env bash
# Installs everything ElliptIO and its tests need on a fresh Debian machine (as root, or
# with sudo). Idempotent: quick when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-test}
if [ "$MODE" = demo ]; then
    APT_PACKAGES=(fuse3 libfuse3-dev pkg-config git)   # the demo may mount the lake
    EXTRAS=fuse,web
else
    APT_PACKAGES=(fuse3 libfuse3-dev pkg-config attr rsync chromium s3fs rclone sqlite3 git)
    EXTRAS=test
fi
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

PY=${PYTHON:-python3}
echo "setup: installing ElliptIO ($EXTRAS extras) with pip"
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[$EXTRAS]"
