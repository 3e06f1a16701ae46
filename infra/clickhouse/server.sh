#!/usr/bin/env bash
# Local single-node ClickHouse server for the native-protocol (clickhouse-driver) integration
# tests, without Docker. It runs Debian's `clickhouse-server` package (18.16, old: see the SQL
# it lacks in the tests that use it) as a background process with its own config and data.
#
#   infra/clickhouse/server.sh install   apt-get install clickhouse-server and clickhouse-client if missing
#   infra/clickhouse/server.sh start     install if needed, write the config, start, wait until SELECT 1 answers
#   infra/clickhouse/server.sh stop      stop cleanly (SIGTERM, then SIGKILL after 20 s)
#   infra/clickhouse/server.sh restart   stop, then start
#   infra/clickhouse/server.sh status    exit 0 when the server answers
#
# Idempotent: a second `start` reuses a running server; data survives stop/start.
# The server listens on 127.0.0.1 only; user `default`, no password, allowed from 127.0.0.1 only.
# Settings (environment): PW_CH_SERVER_HOME (folder for config, data and logs, default
# .cache/clickhouse-server in the repo), PW_CH_SERVER_PORT (native TCP, 19000),
# PW_CH_SERVER_HTTP_PORT (18123), PW_CH_SERVER_START_TIMEOUT (seconds, 60).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
home=${PW_CH_SERVER_HOME:-$repo/.cache/clickhouse-server}
port=${PW_CH_SERVER_PORT:-19000}
http_port=${PW_CH_SERVER_HTTP_PORT:-18123}
data=$home/data
pidfile=$home/server.pid
logfile=$home/log/clickhouse-server.log
errlog=$home/log/clickhouse-server.err.log
stdlog=$home/log/stdout.log
config=$home/config.xml
users=$home/users.xml

log() { printf 'server.sh: %s\n' "$*" >&2; }

# Debian puts the server in /usr/sbin, which a non-login PATH may lack.
server_bin() { command -v clickhouse-server || { [ -x /usr/sbin/clickhouse-server ] && echo /usr/sbin/clickhouse-server; }; }

install() {
  if server_bin >/dev/null && command -v clickhouse-client >/dev/null; then return 0; fi
  log "installing Debian's clickhouse-server and clickhouse-client"
  export DEBIAN_FRONTEND=noninteractive
  # The package's postinst tries to start the system service; policy-rc.d denies it in a
  # container, which is harmless: this script runs its own instance.
  if ! apt-get install -y clickhouse-server clickhouse-client; then
    apt-get update
    apt-get install -y clickhouse-server clickhouse-client
  fi
}

write_config() {
  mkdir -p "$data" "$home/tmp" "$home/user_files" "$home/format_schemas" "$home/log"
  # 18.16 reads XML with a <yandex> root (the <clickhouse> root came in 20.x). No
  # interserver_http_port: a single node has no replicas, and it would take another port.
  cat >"$config" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$logfile</log>
        <errorlog>$errlog</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$port</tcp_port>
    <http_port>$http_port</http_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$data/</path>
    <tmp_path>$home/tmp/</tmp_path>
    <user_files_path>$home/user_files/</user_files_path>
    <format_schema_path>$home/format_schemas/</format_schema_path>
    <users_config>$users</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <umask>022</umask>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
  cat >"$users" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# `SELECT 1` over the native port. timeout: the 18.16 client can spin forever on some inputs.
answers() {
  [ "$(timeout 10 clickhouse-client --host 127.0.0.1 --port "$port" --query 'SELECT 1' </dev/null 2>/dev/null)" = 1 ]
}

start() {
  install
  if running; then
    log "server already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
    wait_ready
    return 0
  fi
  if answers; then log "port $port already answers, but not from a server this script started"; exit 1; fi
  write_config
  local bin; bin=$(server_bin)
  # 18.16 runs as root without complaint (the owner-of-data check came later), so no user switch.
  log "starting ClickHouse server on 127.0.0.1:$port (http $http_port, log $logfile)"
  # setsid: the server must outlive the shell that started it and ignore its terminal's signals.
  # Run from $home: the server resolves some relative paths (e.g. preprocessed configs) from there.
  (cd "$home" && exec setsid "$bin" --config-file="$config" >>"$stdlog" 2>&1 </dev/null) &
  echo $! >"$pidfile"
  wait_ready
}

wait_ready() {
  local deadline=$((SECONDS + ${PW_CH_SERVER_START_TIMEOUT:-60}))
  until answers; do
    if ! running; then
      log "server exited during start; last lines of $errlog and $stdlog:"
      tail -n 30 "$errlog" "$stdlog" >&2 2>/dev/null || true
      rm -f "$pidfile"
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then log "server did not answer in time; see $logfile and $errlog"; exit 1; fi
    sleep 0.5
  done
  log "server ready on 127.0.0.1:$port"
}

stop() {
  if ! running; then rm -f "$pidfile"; log "server not running"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "server did not stop in 20 s; killing"; kill -KILL "$pid"; fi
  rm -f "$pidfile"
  log "server stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) running && answers ;;
  *) echo "usage: $0 install|start|stop|restart|status" >&2; exit 2 ;;
esac
