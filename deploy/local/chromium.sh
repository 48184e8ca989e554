#!/usr/bin/env bash
# Chromium (Debian's package), headless: the jobs page test loads the controller's page in it
# and keeps a screenshot. Prints chromium's path.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

command -v chromium >/dev/null || apt_install chromium
command -v chromium >/dev/null || die "chromium not found after installing it"
say "chromium: $(chromium --version 2>/dev/null | head -1)"
command -v chromium
