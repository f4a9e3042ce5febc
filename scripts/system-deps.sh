#!/usr/bin/env bash
# Debian packages the integration tests start for real: redis-server (the cache's shared
# backend), and chromium + chromium-driver for the dashboard's page test and
# `tierwise bench log`. Idempotent; needs root (CI runs as root) or passwordless sudo.
set -euo pipefail

PACKAGES=(redis-server chromium chromium-driver fonts-dejavu-core)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! sudo -n true 2>/dev/null; then
        echo "[system-deps] not root and no passwordless sudo: cannot install ${missing[*]}" >&2
        exit 1
    fi
    SUDO="sudo -n"
fi
echo "[system-deps] installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
# The package's own redis service is not needed: tests start redis-server on a free port.
command -v systemctl >/dev/null 2>&1 && $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
echo "[system-deps] done"
