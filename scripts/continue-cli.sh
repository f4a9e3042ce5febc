#!/usr/bin/env bash
# Install (or reuse) Continue's own CLI, `cn` from the npm package @continuedev/cli, pinned,
# into a project-local prefix under the tierwise cache, for tests/test_continue_cli.py.
#
# Never global: the prefix is keyed by the version, built once, then reused read-only.
# Output: progress on stderr; on stdout, one line `CONTINUE_CLI=<path of cn>`.
# Exit 75 with a line starting `cannot build:` when this machine has no usable node/npm.
set -euo pipefail

VERSION=${TIERWISE_CONTINUE_CLI_VERSION:-1.5.47}
CACHE=${TIERWISE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tierwise}
PREFIX="$CACHE/continue-cli-$VERSION"
EX_CANNOT_BUILD=75

say() { echo "[continue-cli] $*" >&2; }
cannot_build() {
    echo "cannot build: $*" >&2
    exit "$EX_CANNOT_BUILD"
}

# Tried with Node.js 20 (this project's machines); not installed by scripts/system-deps.sh,
# since Debian's npm package conflicts with the NodeSource nodejs these machines carry.
command -v npm >/dev/null 2>&1 || cannot_build "npm is not installed (Continue's CLI runs on Node.js)"

mkdir -p "$CACHE"
exec 9>"$PREFIX.lock"
flock 9
if [ ! -f "$PREFIX/.complete" ]; then
    say "installing @continuedev/cli@$VERSION into $PREFIX (once)"
    rm -rf "$PREFIX"
    npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
        "@continuedev/cli@$VERSION" >&2
    touch "$PREFIX/.complete"
fi
CN="$PREFIX/node_modules/.bin/cn"
[ -x "$CN" ] || {
    echo "error: $CN is missing after the install" >&2
    exit 1
}
echo "CONTINUE_CLI=$CN"
