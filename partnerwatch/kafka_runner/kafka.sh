#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for the demo, the tests and CI, without Docker.
# Shipped inside the `partnerwatch` package, so `partnerwatch kafka start` works from an installed
# wheel too; in a checkout, infra/kafka/kafka.sh runs this file.
#
#   kafka.sh fetch    resolve the broker jars from Maven Central into the cache
#   kafka.sh start    fetch if needed, format storage once, start, wait until it answers
#   kafka.sh stop     stop cleanly (SIGTERM, then SIGKILL after a grace period)
#   kafka.sh status   exit 0 when the broker answers
#   kafka.sh reset    stop and delete the broker's data (not the jars)
#
# Idempotent: a second `start` reuses the jars, the formatted storage and a running broker.
#
# Port: the one setting PW_KAFKA_BROKER (127.0.0.1:9092), the clients' broker address
# (pipeline/config.py Settings.kafka_broker), is also where this broker listens: its port is
# taken from it, so the two cannot disagree. `partnerwatch kafka start` passes the value Settings
# resolved (environment, PW_ENV_FILE or default). Starting refuses an address that is not local
# (127.0.0.1 or localhost) or that names several brokers. PW_KAFKA_PORT is no longer read.
# Other settings (environment): PW_KAFKA_HOME (cache folder; default .cache/kafka in a source
# checkout, else ${XDG_CACHE_HOME:-~/.cache}/partnerwatch/kafka, never inside the installed
# package), PW_KAFKA_CONTROLLER_PORT (9093), PW_KAFKA_HEAP (512m), PW_KAFKA_LIBS (folder of the
# broker jars, default $PW_KAFKA_HOME/<version>/libs).
#
# A node of a local multi-node cluster (tests/reliability/kraft_cluster.py starts three): each node
# has its own PW_KAFKA_HOME, PW_KAFKA_BROKER and PW_KAFKA_CONTROLLER_PORT, and all share
# PW_KAFKA_QUORUM_VOTERS (id@127.0.0.1:<controller port>,...; default: this node alone) with
# PW_KAFKA_NODE_ID (1) naming this node among them. Every node is broker and controller.
# PW_KAFKA_REPLICATION (1) is the replication factor of new topics and of the internal ones
# (__consumer_offsets, __transaction_state); PW_KAFKA_MIN_INSYNC (1) their min.insync.replicas.
# The nodes start together: each waits for a quorum of the voters before it answers.
#
# SASL_SSL (to test the clients' PW_KAFKA_SECURITY_PROTOCOL=SASL_SSL settings against a private
# broker): PW_KAFKA_SASL_SSL_PORT adds a second listener, SASL_SSL with SCRAM-SHA-256 and
# SCRAM-SHA-512, on 127.0.0.1:<that port>; the PW_KAFKA_BROKER port stays PLAINTEXT (the broker's
# own traffic and this script's checks). It then needs PW_KAFKA_SSL_KEYSTORE (PKCS12 file: the
# broker's key and a certificate valid for 127.0.0.1), PW_KAFKA_SSL_KEYSTORE_PASSWORD, and
# PW_KAFKA_SASL_USERNAME / PW_KAFKA_SASL_PASSWORD: a SCRAM user created when the storage is
# formatted (the first start, or after `reset`). server.properties is then readable by its owner only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# This file is partnerwatch/kafka_runner/kafka.sh: two levels up is the checkout, or site-packages.
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
if [ -f "$repo/pyproject.toml" ]; then
  default_home=$repo/.cache/kafka
else
  default_home=${XDG_CACHE_HOME:-${HOME:?set PW_KAFKA_HOME or HOME}/.cache}/partnerwatch/kafka
fi
home=${PW_KAFKA_HOME:-$default_home}
# PW_KAFKA_LIBS: jars already fetched elsewhere (a second, private broker reuses the main cache).
libs=${PW_KAFKA_LIBS:-$home/$version/libs}
data=$home/data
log() { printf 'kafka.sh: %s\n' "$*" >&2; }

if [ -n "${PW_KAFKA_PORT:-}" ]; then
  log "PW_KAFKA_PORT is no longer read: set PW_KAFKA_BROKER=127.0.0.1:$PW_KAFKA_PORT (the clients' address and this broker's port are one setting)"
  exit 2
fi
broker=${PW_KAFKA_BROKER:-127.0.0.1:9092}
broker_host=${broker%:*}
port=${broker##*:}
if [ "$broker_host" = "$broker" ]; then port=9092; fi  # a host alone: Kafka's default port
case $port in
  ''|*[!0-9]*) log "PW_KAFKA_BROKER=$broker: the port must be a number"; exit 2 ;;
esac
cport=${PW_KAFKA_CONTROLLER_PORT:-9093}
sasl_port=${PW_KAFKA_SASL_SSL_PORT:-}
case $sasl_port in
  *[!0-9]*) log "PW_KAFKA_SASL_SSL_PORT=$sasl_port: must be a port number"; exit 2 ;;
esac
heap=${PW_KAFKA_HEAP:-512m}
node_id=${PW_KAFKA_NODE_ID:-1}
voters=${PW_KAFKA_QUORUM_VOTERS:-$node_id@127.0.0.1:$cport}
replication=${PW_KAFKA_REPLICATION:-1}
min_insync=${PW_KAFKA_MIN_INSYNC:-1}
for pair in "PW_KAFKA_NODE_ID=$node_id" "PW_KAFKA_REPLICATION=$replication" "PW_KAFKA_MIN_INSYNC=$min_insync"; do
  case ${pair#*=} in
    ''|*[!0-9]*|0) log "$pair: must be a whole number from 1"; exit 2 ;;
  esac
done
if [ "$min_insync" -gt "$replication" ]; then
  log "PW_KAFKA_MIN_INSYNC=$min_insync is more than PW_KAFKA_REPLICATION=$replication: no write could succeed"; exit 2
fi
case ,$voters, in
  *",$node_id@127.0.0.1:$cport,"*) ;;
  *) log "PW_KAFKA_QUORUM_VOTERS=$voters does not name this node as $node_id@127.0.0.1:$cport (PW_KAFKA_NODE_ID, PW_KAFKA_CONTROLLER_PORT)"; exit 2 ;;
esac
pidfile=$home/broker.pid
logfile=$home/broker.log
props=$home/server.properties

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install maven)"; exit 1; }
  log "resolving Apache Kafka $version from Maven Central into $libs"
  mkdir -p "$libs" "$home"
  # Maven runs on a copy in the cache: nothing is written beside this file (site-packages when installed).
  cp "$here/pom.xml" "$home/pom.xml"
  mvn -q -B -Dstyle.color=never -f "$home/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime
  touch "$libs/.complete"
}

write_props() {
  mkdir -p "$data"
  local listeners=PLAINTEXT://127.0.0.1:$port advertised=PLAINTEXT://127.0.0.1:$port
  local map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
  if [ -n "$sasl_port" ]; then
    listeners=$listeners,SASL_SSL://127.0.0.1:$sasl_port
    advertised=$advertised,SASL_SSL://127.0.0.1:$sasl_port
    map=$map,SASL_SSL:SASL_SSL
  fi
  (umask 077; : >"$props")
  cat >"$props" <<EOF
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$voters
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$map
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=4
default.replication.factor=$replication
min.insync.replicas=$min_insync
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_insync
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=4194304
log.retention.hours=168
EOF
  if [ -n "$sasl_port" ]; then
    local module=org.apache.kafka.common.security.scram.ScramLoginModule
    cat >>"$props" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$module required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$module required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$PW_KAFKA_SSL_KEYSTORE
listener.name.sasl_ssl.ssl.keystore.password=$PW_KAFKA_SSL_KEYSTORE_PASSWORD
listener.name.sasl_ssl.ssl.key.password=$PW_KAFKA_SSL_KEYSTORE_PASSWORD
EOF
  fi
}

# The SASL_SSL listener's requirements, checked before anything is written.
sasl_ready() {
  [ -n "$sasl_port" ] || return 0
  local name
  for name in PW_KAFKA_SSL_KEYSTORE PW_KAFKA_SSL_KEYSTORE_PASSWORD PW_KAFKA_SASL_USERNAME PW_KAFKA_SASL_PASSWORD; do
    if [ -z "${!name:-}" ]; then log "PW_KAFKA_SASL_SSL_PORT is set: $name is required too"; exit 2; fi
  done
  if [ ! -r "$PW_KAFKA_SSL_KEYSTORE" ]; then log "PW_KAFKA_SSL_KEYSTORE=$PW_KAFKA_SSL_KEYSTORE: no such readable file"; exit 2; fi
}

# `kafka-storage format` arguments: the SCRAM user of the SASL_SSL listener, for both mechanisms.
scram_args() {
  [ -n "$sasl_port" ] || return 0
  local user="name=$PW_KAFKA_SASL_USERNAME,password=$PW_KAFKA_SASL_PASSWORD"
  printf '%s\n' --add-scram "SCRAM-SHA-256=[$user]" --add-scram "SCRAM-SHA-512=[$user]"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

java_bin() {
  if [ -n "${JAVA_HOME:-}" ]; then echo "$JAVA_HOME/bin/java"; else command -v java; fi
}

local_broker() {
  case $broker in
    *,*) log "PW_KAFKA_BROKER=$broker names several brokers; the local runner is one, on 127.0.0.1"; exit 2 ;;
  esac
  case $broker_host in
    127.0.0.1|localhost) ;;
    *) log "PW_KAFKA_BROKER=$broker is not local: the local runner listens on 127.0.0.1 (use 127.0.0.1:<port>)"; exit 2 ;;
  esac
}

start() {
  local_broker
  sasl_ready
  fetch
  if running; then
    log "broker already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
    wait_ready
    return 0
  fi
  # A port held by another program would only show up as a Java BindException in the broker's
  # log: say so in one line instead (exit 3: something the command needs is not there).
  if answers; then
    log "port $port on 127.0.0.1 (PW_KAFKA_BROKER) is in use by another program, not a broker this runner started: stop it, or set PW_KAFKA_BROKER=127.0.0.1:<free port>"
    exit 3
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$cport") 2>/dev/null; then
    log "controller port $cport on 127.0.0.1 (PW_KAFKA_CONTROLLER_PORT) is in use by another program: stop it, or set PW_KAFKA_CONTROLLER_PORT to a free port"
    exit 3
  fi
  write_props
  log_from=$(( $( { wc -l <"$logfile"; } 2>/dev/null || echo 0) + 1 ))
  if [ ! -f "$data/meta.properties" ]; then
    log "formatting KRaft storage in $data"
    local scram=()
    mapfile -t scram < <(scram_args)
    "$(java_bin)" -cp "$libs/*" -Dlog4j2.configurationFile="$here/log4j2.properties" \
      kafka.tools.StorageTool format -t "pw-local-cluster-0001" -c "$props" --ignore-formatted "${scram[@]}" >>"$logfile" 2>&1
  fi
  log "starting Kafka $version on 127.0.0.1:$port (heap $heap, log $logfile)"
  # setsid: the broker must outlive the shell that started it and ignore its terminal's signals.
  setsid "$(java_bin)" -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$props" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_ready
}

wait_ready() {
  local deadline=$((SECONDS + ${PW_KAFKA_START_TIMEOUT:-90}))
  # only this start's lines: the log keeps those of earlier runs (a restarted node); grep reads
  # to the end (no -q), so tail never dies of SIGPIPE and fails the pipeline (pipefail)
  until answers && tail -n +"${log_from:-1}" "$logfile" 2>/dev/null | grep "Kafka Server started" >/dev/null; do
    if ! running; then
      if tail -n +"${log_from:-1}" "$logfile" 2>/dev/null | grep -q "BindException"; then
        log "port $port or $cport on 127.0.0.1 was taken while the broker started: stop what holds it, or choose free ports (PW_KAFKA_BROKER, PW_KAFKA_CONTROLLER_PORT)"
        exit 3
      fi
      log "broker exited during start; last lines of $logfile:"; tail -n 30 "$logfile" >&2; exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then log "broker did not answer in time; see $logfile"; exit 1; fi
    sleep 0.5
  done
  log "broker ready on 127.0.0.1:$port"
}

stop() {
  if ! running; then rm -f "$pidfile"; log "broker not running"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "broker did not stop in 30 s; killing"; kill -KILL "$pid"; fi
  rm -f "$pidfile"
  log "broker stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) answers && running ;;
  reset) stop; rm -rf "$data" "$logfile"; log "data removed" ;;
  *) echo "usage: $0 fetch|start|stop|status|reset" >&2; exit 2 ;;
esac
