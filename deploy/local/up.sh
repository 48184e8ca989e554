#!/usr/bin/env bash
# Installs (where missing) and starts every local service the integration tests use, then
# writes their addresses to $ARUS_CACHE/services.env. Safe to run again: running services are
# left alone.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib.sh"

"$here/redis.sh"
"$here/clickhouse.sh"
ort_lib="$("$here/onnxruntime.sh")"
promtool="$("$here/promtool.sh")"
schemathesis="$("$here/schemathesis.sh")"
tansu="$("$here/kafka.sh")"
oidc="$("$here/oidc.sh")"
chromium="$("$here/chromium.sh")"
oidc_issuer="$(sed -n 1p <<<"$oidc")"; oidc_clients="$(sed -n 2p <<<"$oidc")"; oidc_provider="$(sed -n 3p <<<"$oidc")"; oidc_keys="$(sed -n 4p <<<"$oidc")"

cat >"$ARUS_CACHE/services.env" <<ENV
export KAFKA_BROKERS=127.0.0.1:${KAFKA_PORT:-9092}
export TANSU=$tansu
export REDIS_URL=redis://127.0.0.1:${REDIS_PORT:-6379}/
export CLICKHOUSE_URL=http://127.0.0.1:${CLICKHOUSE_HTTP_PORT:-8123}
export ORT_DYLIB_PATH=$ort_lib
export PROMTOOL=$promtool
export SCHEMATHESIS=$schemathesis
export OIDC_ISSUER=$oidc_issuer
export OIDC_CLIENTS=$oidc_clients
export OIDC_PROVIDER=$oidc_provider
export OIDC_KEYS=$oidc_keys
export CHROMIUM=$chromium
export POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
ENV
say "services up; addresses in $ARUS_CACHE/services.env"
