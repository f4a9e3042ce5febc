#!/usr/bin/env bash
# Set up the environment, then run the whole test suite (unit + integration against real hosts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser-deps.sh
exec .venv/bin/python -m pytest "$@"
