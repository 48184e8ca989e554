#!/usr/bin/env bash
# The whole test suite, from a fresh clone: starts (installing where missing) the local
# services the integration tests use, then checks formatting and lints and runs every test.
# Builds go to $CARGO_TARGET_DIR (default: ~/.cache/arus/target, outside the clone) so a
# fresh clone reuses earlier builds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/arus/target}"
step() { printf '\n== %s\n' "$*" >&2; }

step "local services"
"$root/deploy/local/up.sh"
# shellcheck disable=SC1091
source "${ARUS_CACHE:-$HOME/.cache/arus}/services.env"

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "doc tests"
cargo test --workspace --doc --locked
