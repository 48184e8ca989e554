#!/usr/bin/env bash
# ClickHouse on 127.0.0.1 (HTTP 8123, native 9000): Debian's clickhouse-server 18.16, run
# without systemd from a config and data folder of our own under the cache.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CH_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
CH_TCP_PORT="${CLICKHOUSE_TCP_PORT:-9000}"
CH_DIR="$ARUS_CACHE/clickhouse"
ping() { [[ "$(curl -fsS "http://127.0.0.1:$CH_HTTP_PORT/ping" 2>/dev/null)" == "Ok." ]]; }

command -v curl >/dev/null || apt_install curl
if ping; then
  say "ClickHouse already answers on 127.0.0.1:$CH_HTTP_PORT"
  exit 0
fi
# The package's post-install script would try to start the service; there is no systemd here,
# so keep it from starting anything and run the server ourselves.
if ! command -v clickhouse-server >/dev/null; then
  policy=/usr/sbin/policy-rc.d
  created_policy=""
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && created_policy=1; fi
  apt_install clickhouse-server clickhouse-client
  [[ -n $created_policy ]] && rm -f $policy
fi

mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas"
cat >"$CH_DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$ARUS_LOGS/clickhouse.log</log>
        <errorlog>$ARUS_LOGS/clickhouse.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>64</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>536870912</mark_cache_size>
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>$CH_DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
XML
cat >"$CH_DIR/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML

say "starting ClickHouse on 127.0.0.1:$CH_HTTP_PORT (data: $CH_DIR, log: $ARUS_LOGS/clickhouse.log)"
nohup clickhouse-server --config-file="$CH_DIR/config.xml" >"$ARUS_LOGS/clickhouse.stdout.log" 2>&1 &
echo $! >"$ARUS_CACHE/clickhouse.pid"
wait_until 60 "ClickHouse on 127.0.0.1:$CH_HTTP_PORT" ping \
  || die "ClickHouse did not answer /ping within 60 s: see $ARUS_LOGS/clickhouse.err.log and $ARUS_LOGS/clickhouse.stdout.log"
