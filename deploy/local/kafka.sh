#!/usr/bin/env bash
# A Kafka-protocol broker on 127.0.0.1:9092: Tansu, built once from crates.io into the cache
# (the cold build takes 20-45 minutes on 2 cores), started with in-memory storage.
# Tansu does not auto-create topics: clients create them through the admin API.
# Built with PostgreSQL storage too: the broker-restart tests run a Tansu of their own whose log
# is kept in the local PostgreSQL (tests/common's DurableBroker, with the schema Tansu 0.6.0
# ships in its repository: deploy/local/tansu-0.6.0-postgres.sql), so that it survives a restart.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TANSU_VERSION=0.6.0
TANSU_FEATURES=dynostore,postgres
TANSU_ROOT="$ARUS_CACHE/tansu-$TANSU_VERSION-${TANSU_FEATURES//,/-}"
TANSU="$TANSU_ROOT/bin/tansu"
KAFKA_PORT="${KAFKA_PORT:-9092}"

if [[ ! -x "$TANSU" ]]; then
  say "building Tansu $TANSU_VERSION into $TANSU_ROOT (once; 20-45 minutes on 2 cores; log: $ARUS_LOGS/tansu-build.log)"
  cargo install "tansu@$TANSU_VERSION" --locked --features "$TANSU_FEATURES" --root "$TANSU_ROOT" \
    >"$ARUS_LOGS/tansu-build.log" 2>&1 || die "building Tansu failed: see $ARUS_LOGS/tansu-build.log"
else
  say "Tansu $TANSU_VERSION already built ($TANSU)"
fi
# The binary, for up.sh to write into services.env.
echo "$TANSU"

if port_open 127.0.0.1 "$KAFKA_PORT"; then
  say "a broker is already listening on 127.0.0.1:$KAFKA_PORT"
  exit 0
fi

# Tansu reads a .env file from its working directory; run it from an empty one.
run_dir="$ARUS_CACHE/tansu-run"
mkdir -p "$run_dir"
rm -f "$run_dir/.env"
say "starting Tansu on 127.0.0.1:$KAFKA_PORT (log: $ARUS_LOGS/tansu.log)"
(
  cd "$run_dir"
  nohup "$TANSU" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$ARUS_LOGS/tansu.log" 2>&1 &
  echo $! >"$ARUS_CACHE/tansu.pid"
)
wait_until 60 "Tansu on 127.0.0.1:$KAFKA_PORT" port_open 127.0.0.1 "$KAFKA_PORT" \
  || die "Tansu did not start listening within 60 s: see $ARUS_LOGS/tansu.log"
