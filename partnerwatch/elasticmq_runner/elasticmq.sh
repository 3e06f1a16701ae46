#!/usr/bin/env bash
# Local ElasticMQ (an SQS-compatible queue server) for the demo and the tests, without Docker: the
# stand-in for the Amazon SQS queue that SP-API notifications arrive on. Shipped inside the
# `partnerwatch` package like the Kafka runner (`partnerwatch elasticmq ...`); in a checkout,
# infra/elasticmq/elasticmq.sh runs this file.
#
#   elasticmq.sh fetch    resolve the server's jars from Maven Central into the cache
#   elasticmq.sh start    fetch if needed, start, wait until it answers
#   elasticmq.sh stop     stop (SIGTERM, then SIGKILL after a grace period)
#   elasticmq.sh status   exit 0 when it answers
#
# Idempotent: a second `start` reuses the jars and a running server. Queues live in memory: a
# restart empties them.
#
# Port: taken from PW_SQS_ENDPOINT_URL (default http://127.0.0.1:9324), the clients' endpoint,
# so the two cannot disagree; an endpoint that is not http://127.0.0.1 or localhost is refused.
# Other settings (environment): PW_ELASTICMQ_HOME (cache folder; default .cache/elasticmq in a
# source checkout, else ${XDG_CACHE_HOME:-~/.cache}/partnerwatch/elasticmq), PW_ELASTICMQ_HEAP
# (128m).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's:.*<elasticmq.version>\(.*\)</elasticmq.version>.*:\1:p' "$here/pom.xml")
if [ -f "$repo/pyproject.toml" ]; then
  default_home=$repo/.cache/elasticmq
else
  default_home=${XDG_CACHE_HOME:-${HOME:?set PW_ELASTICMQ_HOME or HOME}/.cache}/partnerwatch/elasticmq
fi
home=${PW_ELASTICMQ_HOME:-$default_home}
libs=$home/$version/libs
heap=${PW_ELASTICMQ_HEAP:-128m}
log() { printf 'elasticmq.sh: %s\n' "$*" >&2; }

endpoint=${PW_SQS_ENDPOINT_URL:-http://127.0.0.1:9324}
case $endpoint in
  http://127.0.0.1:*|http://localhost:*) ;;
  *) log "PW_SQS_ENDPOINT_URL=$endpoint is not local: the local runner listens on http://127.0.0.1:<port>"; exit 2 ;;
esac
port=${endpoint#http://*:}
port=${port%%/*}
case $port in
  ''|*[!0-9]*) log "PW_SQS_ENDPOINT_URL=$endpoint: the port must be a number"; exit 2 ;;
esac
run=$home/run-$port
pidfile=$run/server.pid
logfile=$run/server.log
conf=$run/elasticmq.conf

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install maven)"; exit 1; }
  mkdir -p "$home"
  # one fetch at a time (two test processes may start a server at once): the second waits, then
  # finds the jars complete
  (
    flock 9
    if [ -f "$libs/.complete" ]; then exit 0; fi
    log "resolving ElasticMQ $version from Maven Central into $libs"
    mkdir -p "$libs"
    cp "$here/pom.xml" "$home/pom.xml"
    mvn -q -B -Dstyle.color=never -f "$home/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$libs" -DincludeScope=runtime
    touch "$libs/.complete"
  ) 9>"$home/.fetch.lock"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
java_bin() { if [ -n "${JAVA_HOME:-}" ]; then echo "$JAVA_HOME/bin/java"; else command -v java; fi; }

start() {
  fetch
  mkdir -p "$run"
  if running; then
    log "ElasticMQ already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
    wait_ready
    return 0
  fi
  if answers; then log "something else answers on 127.0.0.1:$port"; exit 1; fi
  cat >"$conf" <<CONF
include classpath("application.conf")
node-address { protocol = http, host = 127.0.0.1, port = $port, context-path = "" }
rest-sqs { enabled = true, bind-port = $port, bind-hostname = "127.0.0.1", sqs-limits = strict }
rest-stats { enabled = false }
CONF
  : >"$logfile"
  log "starting ElasticMQ $version on 127.0.0.1:$port (log $logfile)"
  setsid "$(java_bin)" -Xms"$heap" -Xmx"$heap" -Djava.awt.headless=true -Dconfig.file="$conf" \
    -cp "$libs/*" org.elasticmq.server.Main >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_ready
}

wait_ready() {
  local deadline=$((SECONDS + ${PW_ELASTICMQ_START_TIMEOUT:-60}))
  until answers && grep -q "started in" "$logfile" 2>/dev/null; do
    if ! running; then log "ElasticMQ exited during start; last lines of $logfile:"; tail -n 30 "$logfile" >&2; exit 1; fi
    if [ $SECONDS -ge $deadline ]; then log "ElasticMQ did not answer in time; see $logfile"; exit 1; fi
    sleep 0.3
  done
  log "ElasticMQ ready on http://127.0.0.1:$port"
}

stop() {
  if ! running; then rm -f "$pidfile"; log "ElasticMQ not running"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then log "ElasticMQ did not stop in 10 s; killing"; kill -KILL "$pid"; fi
  rm -f "$pidfile"
  log "ElasticMQ stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) answers && running ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
