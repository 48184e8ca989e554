#!/usr/bin/env bash
# ONNX Runtime for `ort` (load-dynamic): PyPI's onnxruntime wheel in a venv under the cache.
# Prints the library path; up.sh exports it as ORT_DYLIB_PATH.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ORT_VERSION=1.32.0
VENV="$ARUS_CACHE/venv-onnxruntime-$ORT_VERSION"

find_lib() { find "$VENV" -name 'libonnxruntime.so*' -type f 2>/dev/null | sort | head -n 1; }

if [[ -z "$(find_lib)" ]]; then
  command -v python3 >/dev/null || die "python3 not found"
  say "installing onnxruntime==$ORT_VERSION into $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "onnxruntime==$ORT_VERSION" \
    >"$ARUS_LOGS/onnxruntime-install.log" 2>&1 || die "pip install onnxruntime==$ORT_VERSION failed: see $ARUS_LOGS/onnxruntime-install.log"
fi
lib="$(find_lib)"
[[ -n "$lib" ]] || die "onnxruntime installed, but no libonnxruntime.so found under $VENV"
say "ONNX Runtime $ORT_VERSION: $lib"
echo "$lib"
