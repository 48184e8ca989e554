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
# Tests against real services fail, rather than skip, when an address is missing.
export ARUS_REQUIRE_SERVICES=1
# The jobs page test keeps its screenshot here (a person's look at what the test checked).
export ARUS_SCREENSHOTS="${ARUS_SCREENSHOTS:-${ARUS_CACHE:-$HOME/.cache/arus}/screenshots}"

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "tests"
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --all-features --locked --no-fail-fast
else
  cargo test --workspace --all-features --locked --no-fail-fast
fi

step "doc tests"
cargo test --workspace --all-features --doc --locked

step "screenshots"
ls -l "$ARUS_SCREENSHOTS"/*.png >&2
