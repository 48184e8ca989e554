#!/usr/bin/env bash
# schemathesis (PyPI), the schema-driven fuzzer the gateway's OpenAPI test runs, in a venv
# under the cache. Prints the path of its command; up.sh exports it as SCHEMATHESIS.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SCHEMATHESIS_VERSION=4.32.5
VENV="$ARUS_CACHE/venv-schemathesis-$SCHEMATHESIS_VERSION"
bin="$VENV/bin/schemathesis"

if [[ ! -x "$bin" ]]; then
  command -v python3 >/dev/null || die "python3 not found"
  say "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    >"$ARUS_LOGS/schemathesis-install.log" 2>&1 || { rm -rf "$VENV"; die "pip install schemathesis==$SCHEMATHESIS_VERSION failed: see $ARUS_LOGS/schemathesis-install.log"; }
fi
say "schemathesis: $("$bin" --version 2>&1 | head -1)"
echo "$bin"
