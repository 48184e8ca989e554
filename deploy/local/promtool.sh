#!/usr/bin/env bash
# promtool (Debian's `prometheus` package): the tests check every /metrics with
# `promtool check metrics`. Only the tool is used; the package's server is kept from starting.
# Prints promtool's path.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if ! command -v promtool >/dev/null; then
  policy=/usr/sbin/policy-rc.d
  created_policy=""
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && created_policy=1; fi
  apt_install prometheus
  [[ -n $created_policy ]] && rm -f $policy
fi
command -v promtool >/dev/null || die "promtool not found after installing prometheus"
say "promtool: $(promtool --version 2>&1 | head -1)"
command -v promtool
