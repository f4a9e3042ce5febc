#!/usr/bin/env bash
# Debian packages the integration tests start for real: redis-server (the cache's shared
# backend). Idempotent; needs root (CI runs as root) or passwordless sudo.
set -euo pipefail

PACKAGES=(redis-server)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
echo "[system-deps] installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package's own service is not needed: tests start their own redis-server on a free port.
command -v systemctl >/dev/null 2>&1 && $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
echo "[system-deps] done"
