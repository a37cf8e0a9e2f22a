#!/usr/bin/env bash
# A real Apache Kafka 4.x broker for CI and tests: one combined broker+controller
# node in KRaft mode on 127.0.0.1, built only from Maven Central (no Docker, no
# tarball download). Needs `java` (17+) and, for the first `fetch`, `mvn`.
#
# Usage:
#   .ci/kafka/kafka.sh fetch          resolve the broker's jars into the cache (once)
#   .ci/kafka/kafka.sh start [DIR]    fetch if needed, format storage if new, start the
#                                     broker in the background, wait until it answers a
#                                     Kafka request; last stdout line is
#                                     KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<port>
#   .ci/kafka/kafka.sh stop [DIR]     SIGTERM (then SIGKILL after a deadline); removes the
#                                     run dir unless KAFKA_KEEP=1
#   .ci/kafka/kafka.sh status [DIR]   exit 0 if the broker of DIR is running (prints the
#                                     KAFKA_BOOTSTRAP_SERVERS line), 1 if not
#   .ci/kafka/kafka.sh classpath      print the classpath glob of the cached jars (for
#                                     running Kafka's own tools with java -cp)
#
#   eval "$(.ci/kafka/kafka.sh start | tail -n 1)"; export KAFKA_BOOTSTRAP_SERVERS
#
# Restart with data kept (fault tests):
#   KAFKA_KEEP=1 .ci/kafka/kafka.sh stop; sleep 15; .ci/kafka/kafka.sh start
# A run dir whose storage is already formatted is started again as it is: same
# cluster id, same server.properties (so the same ports), same topics and records.
#
# Environment (all optional):
#   KAFKA_VERSION           Kafka version from Maven Central (default 4.1.1)
#   KAFKA_CACHE_DIR         jar cache (default $HOME/.cache/observer-insights/kafka-<version>)
#   KAFKA_RUN_DIR           run dir when DIR is not given (default /tmp/oci-kafka)
#   KAFKA_PORT              client listener port (default 19092; 0 = first free from 19092)
#   KAFKA_CONTROLLER_PORT   KRaft controller port (default 19093; 0 = first free after it)
#   KAFKA_START_TIMEOUT     seconds to wait for the broker to be ready (default 90)
#   KAFKA_STOP_TIMEOUT      seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_KEEP=1            `stop` keeps the run dir (storage, config, logs)
#   KAFKA_HEAP_OPTS         JVM heap flags (default "-Xms256m -Xmx512m")
#   KAFKA_JVM_OPTS          more JVM flags (e.g. -Djava.security.auth.login.config=...)
#   KAFKA_EXTRA_PROPERTIES  path of a file whose lines are appended to server.properties
#                           when a run dir is first set up (a restart of a formatted run
#                           dir keeps its server.properties). Later keys win in a Java
#                           properties file, so it can override anything written here.
#                           @PORT@ and @CONTROLLER_PORT@ are replaced by the chosen ports.
#                           E.g. SASL/SCRAM on the client listener (with KAFKA_FORMAT_ARGS
#                           below creating the user):
#                             listeners=SASL_PLAINTEXT://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@
#                             advertised.listeners=SASL_PLAINTEXT://127.0.0.1:@PORT@
#                             inter.broker.listener.name=SASL_PLAINTEXT
#                             sasl.enabled.mechanisms=SCRAM-SHA-512
#                             sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
#                             listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-secret";
#   KAFKA_FORMAT_ARGS       extra arguments for the storage format step, word-split, e.g.
#                           "--add-scram SCRAM-SHA-512=[name=admin,password=admin-secret]"
#                           (SCRAM users must exist before a SASL-only broker can start)
#   KAFKA_READY_PROBE=0     readiness by the log line only (see below)
#   MVN                     maven command (default mvn)
#
# Readiness = the process is alive, its log says "Kafka Server started", and the
# client port answers a real ApiVersions request (sent from bash, no extra JVM).
# That probe speaks plaintext Kafka, which PLAINTEXT and SASL_PLAINTEXT listeners
# answer before authentication; for an SSL client listener set KAFKA_READY_PROBE=0
# to rely on the log line alone.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/pom.xml"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
CACHE_DIR="${KAFKA_CACHE_DIR:-${HOME:-/tmp}/.cache/observer-insights/kafka-$KAFKA_VERSION}"
DEFAULT_RUN_DIR="${KAFKA_RUN_DIR:-/tmp/oci-kafka}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
MVN="${MVN:-mvn}"
STAMP="$CACHE_DIR/.fetched"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The stamp records the version and the pom it was fetched with, so editing the
# pom (e.g. a logging dependency) refetches instead of using a stale cache.
stamp_content() {
    printf 'kafka_2.13 %s\npom %s\n' "$KAFKA_VERSION" "$(cksum <"$POM" | cut -d' ' -f1)"
}

is_fetched() {
    [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(stamp_content)" ]]
}

do_fetch() {
    is_fetched && return 0
    command -v "$MVN" >/dev/null 2>&1 || die "'$MVN' not found; Maven is needed to fetch Kafka $KAFKA_VERSION"
    local parent lock tmp
    parent="$(dirname "$CACHE_DIR")"
    mkdir -p "$parent"
    lock="$CACHE_DIR.lock"
    # Serialize concurrent fetches (parallel test workers) on the same cache.
    exec 9>"$lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if is_fetched; then exec 9>&-; return 0; fi
    log "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies into $CACHE_DIR"
    tmp="$(mktemp -d "$CACHE_DIR.tmp.XXXXXX")"
    if ! "$MVN" -q -B -Dstyle.color=never -f "$POM" \
            -Dkafka.version="$KAFKA_VERSION" \
            -DincludeScope=runtime -DoutputDirectory="$tmp" \
            dependency:copy-dependencies 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2; then
        rm -rf "$tmp"
        die "maven could not resolve Kafka $KAFKA_VERSION (see above)"
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"; }
    rm -rf "$CACHE_DIR"
    mv "$tmp" "$CACHE_DIR"
    stamp_content >"$STAMP"
    exec 9>&-
    log "fetched $(find "$CACHE_DIR" -name '*.jar' | wc -l) jars"
}

classpath() { printf '%s/*' "$CACHE_DIR"; }

port_in_use() {  # a TCP connect on loopback succeeds
    # shellcheck disable=SC2016  # expanded by the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

first_free_port() {  # first port >= $1 that nothing listens on, other than $2
    local p="$1"
    while (( p < $1 + 200 )); do
        if [[ "$p" != "${2:-}" ]] && ! port_in_use "$p"; then echo "$p"; return 0; fi
        p=$((p + 1))
    done
    die "no free port in $1..$(($1 + 199))"
}

check_ports_free() {
    local p
    for p in "$@"; do
        if port_in_use "$p"; then
            die "port $p on 127.0.0.1 is already in use (set KAFKA_PORT / KAFKA_CONTROLLER_PORT, or 0 for a free one)"
        fi
    done
}

# One ApiVersions v0 request (api key 18, correlation id 7, null client id);
# ready when a response frame with correlation id 7 comes back.
api_versions_ok() {
    local hex
    # shellcheck disable=SC2016  # expanded by the inner shell
    hex="$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x07\xff\xff" >&3
        head -c 8 <&3 | od -An -tx1 | tr -d " \n"' _ "$1" 2>/dev/null)" || return 1
    [[ "${hex:8:8}" == "00000007" ]]
}

read_prop() {  # last value of key $2 in properties file $1
    sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1" | tail -n 1
}

client_port() {  # port of the first advertised listener of run dir $1
    local adv
    adv="$(read_prop "$1/server.properties" advertised.listeners)"
    adv="${adv%%,*}"
    echo "${adv##*:}"
}

broker_pid() {  # prints the pid if the broker of run dir $1 is alive
    local pidf="$1/kafka.pid" pid
    [[ -f "$pidf" ]] || return 1
    pid="$(cat "$pidf")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid: it must be our broker for this run dir.
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$1/server.properties" || return 1
    fi
    echo "$pid"
}

new_cluster_id() {  # 16 random bytes, base64url without padding, as Kafka's Uuid
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && { echo "$id"; return 0; }
    done
}

write_config() {  # run dir, client port, controller port
    local run="$1" port="$2" cport="$3"
    cat >"$run/server.properties" <<EOF
# Written by .ci/kafka/kafka.sh: single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
controller.quorum.bootstrap.servers=127.0.0.1:$cport
log.dirs=$run/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
    if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
        [[ -f "$KAFKA_EXTRA_PROPERTIES" ]] || die "KAFKA_EXTRA_PROPERTIES=$KAFKA_EXTRA_PROPERTIES is not a file"
        { printf '\n# From KAFKA_EXTRA_PROPERTIES=%s\n' "$KAFKA_EXTRA_PROPERTIES"
          sed -e "s/@PORT@/$port/g" -e "s/@CONTROLLER_PORT@/$cport/g" "$KAFKA_EXTRA_PROPERTIES"
          echo; } >>"$run/server.properties"
    fi
    # Kafka 4 logs through log4j2; the broker's stdout goes to broker.log.
    cat >"$run/log4j2.properties" <<'EOF'
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

tail_log() {
    [[ -f "$1/broker.log" ]] && { log "last lines of $1/broker.log:"; tail -n "${2:-60}" "$1/broker.log" >&2; }
    return 0
}

do_start() {
    local run="$1" pid port cport
    run="$(mkdir -p "$run" && cd "$run" && pwd)"
    if pid="$(broker_pid "$run")"; then
        port="$(client_port "$run")"
        log "already running (pid $pid) in $run"
        wait_ready "$run" "$port"
        return 0
    fi
    do_fetch
    command -v "$JAVA" >/dev/null 2>&1 || die "'$JAVA' not found"
    local cp; cp="$(classpath)"

    if [[ -f "$run/data/meta.properties" && -f "$run/server.properties" ]]; then
        port="$(client_port "$run")"
        cport="$(read_prop "$run/server.properties" controller.quorum.bootstrap.servers)"
        cport="${cport##*:}"
        log "reusing formatted storage in $run (cluster $(cat "$run/cluster.id" 2>/dev/null || echo '?'), port $port)"
        [[ -z "${KAFKA_PORT:-}" || "${KAFKA_PORT}" == 0 || "$KAFKA_PORT" == "$port" ]] \
            || log "warning: KAFKA_PORT=$KAFKA_PORT ignored, this run dir was set up with port $port"
    else
        port="${KAFKA_PORT:-19092}"
        cport="${KAFKA_CONTROLLER_PORT:-19093}"
        [[ "$port" == 0 ]] && port="$(first_free_port 19092 "")"
        [[ "$cport" == 0 ]] && cport="$(first_free_port $((port + 1)) "$port")"
        [[ "$port" != "$cport" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT are both $port"
        check_ports_free "$port" "$cport"
        rm -rf "$run/data"
        write_config "$run" "$port" "$cport"
        # KAFKA_EXTRA_PROPERTIES may have moved the listeners: use what was written.
        port="$(client_port "$run")"
        cport="$(read_prop "$run/server.properties" controller.quorum.bootstrap.servers)"
        cport="${cport##*:}"
        new_cluster_id >"$run/cluster.id"
        local -a fmt_args=()
        # shellcheck disable=SC2206  # word splitting is the documented behaviour
        [[ -n "${KAFKA_FORMAT_ARGS:-}" ]] && fmt_args=(${KAFKA_FORMAT_ARGS})
        log "formatting storage in $run/data (cluster $(cat "$run/cluster.id"))"
        if ! "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$run/log4j2.properties" -cp "$cp" \
                kafka.tools.StorageTool format --standalone \
                -t "$(cat "$run/cluster.id")" -c "$run/server.properties" \
                "${fmt_args[@]+"${fmt_args[@]}"}" >"$run/format.log" 2>&1; then
            cat "$run/format.log" >&2
            die "storage format failed"
        fi
    fi
    check_ports_free "$port" "$cport"

    rm -f "$run/kafka.pid"  # stale after a crash or kill -9
    [[ -f "$run/broker.log" ]] && mv -f "$run/broker.log" "$run/broker.log.1"
    # shellcheck disable=SC2206
    local -a jvm=(${HEAP_OPTS} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent
                  -Djava.awt.headless=true
                  -Dlog4j2.configurationFile="$run/log4j2.properties"
                  -Dkafka.logs.dir="$run")
    # shellcheck disable=SC2206
    [[ -n "${KAFKA_JVM_OPTS:-}" ]] && jvm+=(${KAFKA_JVM_OPTS})
    log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$port (controller $cport), run dir $run"
    # setsid: own session, so the broker outlives the shell that started it and
    # is not hit by signals sent to that shell's process group. The inner shell
    # writes its own pid and then execs java, so the pid file is the JVM's pid.
    # shellcheck disable=SC2016  # expanded by the inner shell
    nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$run/kafka.pid" \
        "$JAVA" "${jvm[@]}" -cp "$cp" kafka.Kafka "$run/server.properties" \
        >"$run/broker.log" 2>&1 </dev/null &
    local deadline=$((SECONDS + 10))
    # Wait for the pid file (written by the inner shell right away).
    while [[ ! -s "$run/kafka.pid" ]] && (( SECONDS < deadline )); do sleep 0.1; done
    wait_ready "$run" "$port"
}

# Poll until the broker of run dir $1 serves requests on port $2, then print the
# bootstrap line; on death or timeout print the log tail and fail.
wait_ready() {
    local run="$1" port="$2" t0=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        if ! broker_pid "$run" >/dev/null; then
            tail_log "$run"
            die "broker exited during startup"
        fi
        if grep -q "Kafka Server started" "$run/broker.log" 2>/dev/null \
                && { [[ "${KAFKA_READY_PROBE:-1}" == 0 ]] || api_versions_ok "$port"; }; then
            break
        fi
        if (( SECONDS >= deadline )); then
            tail_log "$run"
            log "broker not ready after ${START_TIMEOUT}s; stopping it"
            KAFKA_KEEP=1 do_stop "$run" || true
            die "broker did not come up within ${START_TIMEOUT}s (run dir kept: $run)"
        fi
        sleep 0.2
    done
    log "ready after $((SECONDS - t0))s (pid $(cat "$run/kafka.pid"))"
    echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port"
}

do_stop() {
    local run="$1" pid
    if [[ -d "$run" ]]; then run="$(cd "$run" && pwd)"; fi
    if pid="$(broker_pid "$run")"; then
        log "stopping broker pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "still alive after ${STOP_TIMEOUT}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
    else
        log "no broker running in $run"
    fi
    rm -f "$run/kafka.pid"
    if [[ "${KAFKA_KEEP:-0}" == 1 ]]; then
        log "keeping $run"
    else
        rm -rf "$run"
    fi
}

do_status() {
    local run="$1" pid
    if [[ -d "$run" ]]; then run="$(cd "$run" && pwd)"; fi
    if pid="$(broker_pid "$run")"; then
        log "running (pid $pid) in $run"
        echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(client_port "$run")"
        return 0
    fi
    log "not running ($run)"
    return 1
}

cmd="${1:-}"
shift || true
case "$cmd" in
    fetch)     do_fetch; echo "KAFKA_CACHE_DIR=$CACHE_DIR" ;;
    start)     do_start "${1:-$DEFAULT_RUN_DIR}" ;;
    stop)      do_stop "${1:-$DEFAULT_RUN_DIR}" ;;
    status)    do_status "${1:-$DEFAULT_RUN_DIR}" ;;
    classpath) do_fetch; classpath; echo ;;
    *)         sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
