#!/usr/bin/env bash
# Stops the services up.sh started itself (Tansu, ClickHouse, the OpenID provider). Redis is the machine's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
for svc in tansu clickhouse oidc; do
  pidfile="$ARUS_CACHE/$svc.pid"
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" && say "stopped $svc"
  fi
  rm -f "$pidfile"
done
