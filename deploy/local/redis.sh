#!/usr/bin/env bash
# Redis on 127.0.0.1:6379. Machines of this kind start it before the session; this script
# starts it (installing Debian's package if needed) only when nothing answers PING.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REDIS_PORT="${REDIS_PORT:-6379}"
ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

command -v redis-server >/dev/null || apt_install redis-server redis-tools
if ping; then
  say "Redis already answers on 127.0.0.1:$REDIS_PORT"
  exit 0
fi
say "starting Redis on 127.0.0.1:$REDIS_PORT (no persistence)"
mkdir -p "$ARUS_CACHE/redis"
redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --dir "$ARUS_CACHE/redis" --logfile "$ARUS_LOGS/redis.log"
wait_until 30 "Redis on 127.0.0.1:$REDIS_PORT" ping || die "Redis did not answer within 30 s: see $ARUS_LOGS/redis.log"
