#!/usr/bin/env bash
# Debian's headless browser for the dashboard's page test and `tierwise bench log`:
# chromium and its WebDriver (chromium-driver). Idempotent; needs root (CI runs as root) or
# passwordless sudo. Without either, the browser tests skip and say why.
set -euo pipefail

PACKAGES=(chromium chromium-driver fonts-dejavu-core)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! sudo -n true 2>/dev/null; then
        echo "[browser-deps] not root and no passwordless sudo: skipping ${missing[*]}" >&2
        exit 0
    fi
    SUDO="sudo -n"
fi
echo "[browser-deps] installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
echo "[browser-deps] done"
