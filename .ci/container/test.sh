#!/usr/bin/env bash
# Container test: build the real Dockerfile unchanged with podman, run the image as a
# read-only, non-root consumer-group member against a broker on loopback, scale it to three
# replicas, stop it, check the dev image's hot reload, and print the figures.
#
#   .ci/container/test.sh    # broker: $KAFKA_BOOTSTRAP_SERVERS, else Kafka via .ci/kafka/kafka.sh
#   CONTAINER_TEST_BROKER=embedded .ci/container/test.sh    # the embedded Tansu broker
#
# Needs root (installs podman, buildah, runc, mmdebstrap when missing) and the project's .venv
# (made by scripts/bootstrap when missing). Caches the stand-in base image and the wheelhouse
# under ~/.cache/observer-insights/container/. Last line: "container: N passed, N failed".
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

IMAGE=localhost/observer-insights:ci
DEV_IMAGE=localhost/observer-insights:ci-dev
RUN_ID="ct$(date +%s)$$"
LABEL="ci.observer-insights.run=$RUN_ID"
WORK=$(mktemp -d /tmp/oci-container.XXXXXX)
READY_LIMIT_S=5        # acceptance: run-to-ready with a warm broker
STOP_LIMIT_S=10        # acceptance: podman stop exits 0 within the grace period
APP_LAYERS_LIMIT_MB=66 # image minus base: 60 MB accepted, + ~4 MB for cramjam (compressed input, issue 23)
PASSED=0 FAILED=0
BROKER_PID='' KAFKA_DIR=''

pass() { PASSED=$((PASSED + 1)); log "ok   $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL $*"; }
check() {  # check DESCRIPTION COMMAND...: run, count, show what the command said
    local what=$1 out=$WORK/check.out; shift
    if "$@" >"$out" 2>&1; then pass "$what"; sed -n '1,4s/^/       /p' "$out" >&2
    else fail "$what"; tail -8 "$out" | sed 's/^/       /' >&2; fi
    cat "$out" >>"$WORK/checks.log"
}
ms() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }
podman() { command podman "$@" 2> >(grep -v 'systemd' >&2); }  # no systemd here: health timers warn

cleanup() {
    local ids
    ids=$(command podman ps -aq --filter "label=$LABEL" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || command podman rm -f -v -t 2 $ids >/dev/null 2>&1 || true
    [ -z "$KAFKA_DIR" ] || .ci/kafka/kafka.sh stop "$KAFKA_DIR" >/dev/null 2>&1 || true
    if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_ready() {  # wait_ready PORT DEADLINE_S: poll /readyz until 200
    local port=$1 end=$(($(date +%s) + $2))
    while [ "$(date +%s)" -lt "$end" ]; do
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/readyz" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

wait_healthy() {  # no systemd: podman evaluates HEALTHCHECK only when asked, so ask
    local name=$1 end=$(($(date +%s) + $2))
    while [ "$(date +%s)" -lt "$end" ]; do
        if command podman healthcheck run "$name" >/dev/null 2>&1 \
            && [ "$(podman inspect -f '{{.State.Health.Status}}' "$name")" = healthy ]; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

run_worker() {  # run_worker NAME WEB_PORT METRICS_PORT APP_ID [podman run options...]
    local name=$1 web=$2 metrics=$3 app=$4; shift 4
    podman run -d --name "$name" --label "$LABEL" --network host \
        --read-only --cap-drop ALL --security-opt no-new-privileges "$@" \
        -e KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" -e INSIGHTS_APP_ID="$app" \
        -e INSIGHTS_INPUT_TOPIC="$RUN_ID.observations" \
        -e INSIGHTS_DEADLETTER_TOPIC="$RUN_ID.deadletter" \
        -e INSIGHTS_ROLLING_TOPIC="$RUN_ID.rolling" -e INSIGHTS_ANOMALY_TOPIC="$RUN_ID.anomalies" \
        -e INSIGHTS_OBSERVER_TOPIC="$RUN_ID.observers" \
        -e INSIGHTS_WEB_PORT="$web" -e INSIGHTS_METRICS_PORT="$metrics" \
        "$IMAGE" >/dev/null
}

stop_timed() {  # stop_timed NAME: podman stop with the grace period; sets STOP_S; checks exit 0
    local name=$1 t0 code
    t0=$(ms)
    podman stop -t "$STOP_LIMIT_S" "$name" >/dev/null
    STOP_S=$(secs "$t0" "$(ms)")
    code=$(podman inspect -f '{{.State.ExitCode}}' "$name")
    log "$name stopped in ${STOP_S}s, exit code $code"
    [ "$code" = 0 ] && awk -v s="$STOP_S" -v l="$STOP_LIMIT_S" 'BEGIN { exit !(s < l) }'
}

probe() { PYTHONPATH=. .venv/bin/python .ci/container/kafka_probe.py "$@"; }

# ------------------------------------------------------------------------------ tools and inputs
apt_install curl
setup_podman
[ -x .venv/bin/python ] || scripts/bootstrap
ensure_base_image
ensure_wheelhouse
base_bytes=$(podman image inspect -f '{{.Size}}' "$BASE_IMAGE")

# ------------------------------------------------------------------------------ cold build
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
build() {  # the Dockerfile as users build it; only the package index differs (mounted pip.conf)
    podman build --pull=never --format docker \
        -v "$WHEELHOUSE:/wheels:ro" -v "$PIP_CONF:/etc/pip.conf:ro" \
        --build-arg VERSION="$version" --build-arg REVISION="$revision" \
        --build-arg SOURCE=https://example.invalid/observer-coordinator-insights "$@" .
}
log "cold build (--no-cache) of the runtime image"
t0=$(ms)
build --no-cache -t "$IMAGE" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; die "build failed"; }
BUILD_S=$(secs "$t0" "$(ms)")
image_bytes=$(podman image inspect -f '{{.Size}}' "$IMAGE")
APP_MB=$(awk -v i="$image_bytes" -v b="$base_bytes" 'BEGIN { printf "%.1f", (i - b) / 1e6 }')
IMAGE_MB=$(awk -v i="$image_bytes" 'BEGIN { printf "%.1f", i / 1e6 }')
pass "cold build in ${BUILD_S}s: image ${IMAGE_MB} MB, app layers ${APP_MB} MB"

# ------------------------------------------------------------------------------ image metadata
inspect() { podman image inspect -f "$1" "$IMAGE"; }
check "runs as 10001:10001" test "$(inspect '{{.Config.User}}')" = 10001:10001
check "exec-form entry point observer-insights worker" \
    test "$(inspect '{{json .Config.Entrypoint}} {{json .Config.Cmd}}')" = '["/opt/venv/bin/observer-insights"] ["worker"]'
check "HEALTHCHECK kept (docker format), through the project's probe" \
    grep -q streams.web.probe <<<"$(inspect '{{json .Config.Healthcheck}}')"
check "STOPSIGNAL SIGTERM" test "$(inspect '{{.Config.StopSignal}}')" = SIGTERM
check "OCI labels version/revision/source" test \
    "$(inspect '{{index .Labels "org.opencontainers.image.version"}} {{index .Labels "org.opencontainers.image.revision"}}')" \
    = "$version $revision"
check "app layers <= ${APP_LAYERS_LIMIT_MB} MB" awk -v a="$APP_MB" -v l="$APP_LAYERS_LIMIT_MB" 'BEGIN { exit !(a <= l) }'
check "no pip, compiler, tests or sources in the image" podman run --rm --network none --entrypoint /bin/sh "$IMAGE" -c '
    ! python3 -c "import pip" 2>/dev/null && ! python3 -m ensurepip --version 2>/dev/null &&
    ! command -v pip pip3 gcc cc make curl >/dev/null &&
    [ -z "$(find /opt/venv -path "*/site-packages/*" -type d -name tests)" ] && [ ! -e /src ] &&
    observer-insights --version &&
    python3 -c "import aiohttp._http_parser, pydantic_core, orjson, rocksdict; print(\"stripped extension modules import\")"'

# ------------------------------------------------------------------------------ the broker
# $KAFKA_BOOTSTRAP_SERVERS when set (.ci/run's Kafka); else Apache Kafka from .ci/kafka/kafka.sh
# in a run dir of our own; CONTAINER_TEST_BROKER=embedded uses the embedded Tansu instead. Tansu
# holds every first JoinGroup for 5 s and its DescribeGroups carries no assignments, so on it
# the ready limit gets those 5 s added and the replica check counts members only.
SPLIT_CHECK=(--partitions 12)
if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    BOOTSTRAP=$KAFKA_BOOTSTRAP_SERVERS BROKER_KIND="external ($BOOTSTRAP)"
elif [ "${CONTAINER_TEST_BROKER:-kafka}" = kafka ]; then
    KAFKA_DIR="$WORK/kafka"
    line=$(KAFKA_PORT=0 KAFKA_CONTROLLER_PORT=0 .ci/kafka/kafka.sh start "$KAFKA_DIR" | tail -n 1)
    BOOTSTRAP=${line#KAFKA_BOOTSTRAP_SERVERS=} BROKER_KIND="Apache Kafka, .ci/kafka/kafka.sh ($BOOTSTRAP)"
else
    PYTHONPATH=. .venv/bin/python .ci/container/kafka_probe.py broker "$WORK/broker.addr" \
        --log "$WORK/broker.log" >/dev/null 2>&1 &
    BROKER_PID=$!  # the broker process itself: the cleanup's kill reaches it
    for _ in $(seq 100); do [ -s "$WORK/broker.addr" ] && break; sleep 0.2; done
    [ -s "$WORK/broker.addr" ] || die "embedded broker did not start"
    BOOTSTRAP=$(cat "$WORK/broker.addr") BROKER_KIND="embedded Tansu ($BOOTSTRAP)"
    READY_LIMIT_S=$((READY_LIMIT_S + 5)) SPLIT_CHECK=(--members-only)
fi
log "broker: $BROKER_KIND"

# ------------------------------------------------------------------------------ one worker
# No --init here: Python is PID 1, as in a Kubernetes pod; it must handle SIGTERM itself.
read -r -a ports <<<"$(.venv/bin/python -c 'from streams.cli.embedded import free_port; print(*(free_port() for _ in range(8)))')"
t0=$(ms)
run_worker "$RUN_ID-single" "${ports[0]}" "${ports[1]}" "$RUN_ID-single"
if wait_ready "${ports[0]}" 60; then READY_S=$(secs "$t0" "$(ms)"); pass "/readyz 200 after ${READY_S}s"
else READY_S=never; fail "/readyz never 200"; podman logs --tail 20 "$RUN_ID-single" >&2; fi
check "HEALTHCHECK turns healthy" wait_healthy "$RUN_ID-single" 30
check "worker process runs as UID 10001" \
    test "$(podman top "$RUN_ID-single" huser | sed 1d | sort -u | tr -d ' ')" = 10001
check "root filesystem read-only, /tmp and the data volume writable" podman exec "$RUN_ID-single" sh -c '
    ! touch /opt/venv/x 2>/dev/null && ! touch /etc/x 2>/dev/null &&
    touch /tmp/x /var/lib/observer-insights/x && rm /tmp/x /var/lib/observer-insights/x'
events_flow() {
    probe produce --bootstrap "$BOOTSTRAP" --run "$RUN_ID" --topic "$RUN_ID.observations" --count 20 \
        && probe expect --bootstrap "$BOOTSTRAP" --run "$RUN_ID" --app-id "$RUN_ID-single" \
            --deadletter-topic "$RUN_ID.deadletter" --rolling-topic "$RUN_ID.rolling" --count 20
}
metrics_count() {
    local metrics
    metrics=$(curl -fsS "http://127.0.0.1:${ports[1]}/metrics") || return 1
    awk '$1 == "insights_events_received_total" { print; found = 1; ok = ($2 >= 21) }
         END { exit !(found && ok) }' <<<"$metrics"
}
# Every line the worker wrote, read whole: `podman logs | head` under pipefail fails at
# random once the log is longer than head reads (podman logs dies of SIGPIPE).
json_logs() {
    podman logs "$RUN_ID-single" >"$WORK/single.log" 2>&1
    .venv/bin/python - "$WORK/single.log" <<'PY'
import json, sys
lines = [line for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
for number, line in enumerate(lines, 1):
    try:
        record = json.loads(line)
    except ValueError as error:
        sys.exit(f"line {number} is not JSON ({error}): {line[:200]!r}")
    if not isinstance(record, dict) or "event" not in record:
        sys.exit(f"line {number} is not a log event with an 'event' field: {line[:200]!r}")
print(f"{len(lines)} line(s), each a JSON log event")
PY
}
check "events in, outputs and dead letter out" events_flow
check "/metrics counts the events" metrics_count
check "JSON logs on stdout" json_logs
if stop_timed "$RUN_ID-single"; then pass "podman stop (Python as PID 1): exit 0 in ${STOP_S}s"
else fail "podman stop (Python as PID 1): ${STOP_S}s, exit $(podman inspect -f '{{.State.ExitCode}}' "$RUN_ID-single")"; fi
SINGLE_STOP_S=$STOP_S

# Warm start: the broker is up, the topics exist; a fresh container joins a fresh group.
t0=$(ms)
run_worker "$RUN_ID-warm" "${ports[0]}" "${ports[1]}" "$RUN_ID-warm" --init
if wait_ready "${ports[0]}" 60; then WARM_READY_S=$(secs "$t0" "$(ms)"); else WARM_READY_S=never; fi
check "run-to-ready with a warm broker ${WARM_READY_S}s <= ${READY_LIMIT_S}s" \
    awk -v s="$WARM_READY_S" -v l="$READY_LIMIT_S" 'BEGIN { exit !(s != "never" && s <= l) }'
podman stats --no-stream --format '{{.MemUsage}}' "$RUN_ID-warm" >"$WORK/mem" 2>/dev/null || echo "n/a" >"$WORK/mem"
MEM=$(cut -d/ -f1 "$WORK/mem" | tr -d ' ')
stop_timed "$RUN_ID-warm" >/dev/null 2>&1 || true

# ------------------------------------------------------------------------------ three replicas
# Same app id = one consumer group; --init as compose's `init: true`.
for i in 0 1 2; do
    run_worker "$RUN_ID-replica-$i" "${ports[$((2 + 2 * i))]}" "${ports[$((3 + 2 * i))]}" "$RUN_ID-scaled" --init
done
split_what="three replicas share the input partitions (4 each)"
[ "${SPLIT_CHECK[0]}" = --members-only ] && split_what="three replicas in one consumer group (members only)"
check "$split_what" \
    probe group --bootstrap "$BOOTSTRAP" --group "$RUN_ID-scaled" --topic "$RUN_ID.observations" \
    --members 3 "${SPLIT_CHECK[@]}" --timeout 90
all_ready() { local p; for p in "$@"; do wait_ready "$p" 60 || return 1; done; }
check "all three replicas ready" all_ready "${ports[2]}" "${ports[4]}" "${ports[6]}"
# The compose demo profile's load generator, as compose runs it, feeding the three replicas.
received() {
    local p total=0 n
    for p in "${ports[3]}" "${ports[5]}" "${ports[7]}"; do
        n=$(curl -fsS "http://127.0.0.1:$p/metrics" | awk '$1 == "insights_events_received_total" { print int($2) }')
        total=$((total + ${n:-0}))
    done
    echo "$total"
}
loadgen() {
    local before after code
    before=$(received)
    podman run -d --name "$RUN_ID-loadgen" --label "$LABEL" --network host --read-only --init \
        --cap-drop ALL --entrypoint python3 -v "$REPO_ROOT/deploy/compose/loadgen.py:/opt/loadgen/loadgen.py:ro" \
        -e KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" -e INSIGHTS_INPUT_TOPIC="$RUN_ID.observations" \
        -e LOADGEN_RATE=200 "$IMAGE" /opt/loadgen/loadgen.py >/dev/null
    sleep 5
    podman stop -t 10 "$RUN_ID-loadgen" >/dev/null
    code=$(podman inspect -f '{{.State.ExitCode}}' "$RUN_ID-loadgen")
    sleep 3
    after=$(received)
    echo "load generator exit code $code; the replicas received $((after - before)) more events"
    [ "$code" = 0 ] && [ $((after - before)) -ge 500 ]
}
check "demo load generator (compose's loadgen) feeds the replicas, stops with exit 0" loadgen
REPLICA_STOPS=()
for i in 0 1 2; do
    if stop_timed "$RUN_ID-replica-$i"; then pass "replica $i stopped: exit 0 in ${STOP_S}s"
    else fail "replica $i: stop ${STOP_S}s, exit $(podman inspect -f '{{.State.ExitCode}}' "$RUN_ID-replica-$i")"; fi
    REPLICA_STOPS+=("$STOP_S")
done

# ------------------------------------------------------------------------------ dev image
log "building the dev target (dependency layer shared with the runtime build)"
t0=$(ms)
build --target dev -t "$DEV_IMAGE" >"$WORK/build-dev.log" 2>&1 || { tail -30 "$WORK/build-dev.log" >&2; die "dev build failed"; }
DEV_BUILD_S=$(secs "$t0" "$(ms)")
cp -r streams agents models "$WORK/"
chmod -R a+rX "$WORK"
podman run -d --name "$RUN_ID-dev" --label "$LABEL" --network host --init \
    -v "$WORK/streams:/src/streams:ro" -v "$WORK/agents:/src/agents:ro" -v "$WORK/models:/src/models:ro" \
    -e KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" -e INSIGHTS_APP_ID="$RUN_ID-dev" \
    -e INSIGHTS_INPUT_TOPIC="$RUN_ID.observations" -e INSIGHTS_DEADLETTER_TOPIC="$RUN_ID.deadletter" \
    -e INSIGHTS_WEB_PORT="${ports[0]}" -e INSIGHTS_METRICS_PORT="${ports[1]}" "$DEV_IMAGE" >/dev/null
hot_reload() {
    wait_ready "${ports[0]}" 60 || return 1
    echo "# touched by the container test" >>"$WORK/agents/ingest.py"
    local end=$(($(date +%s) + 60))
    while [ "$(date +%s)" -lt "$end" ]; do
        [ "$(podman logs "$RUN_ID-dev" 2>&1 | grep -c '"event": "worker_starting"')" -ge 2 ] && wait_ready "${ports[0]}" 60 && return 0
        sleep 0.5
    done
    return 1
}
check "dev image: hot reload on a source change (worker restarted, ready again)" hot_reload
check "dev image: podman stop exits 0" stop_timed "$RUN_ID-dev"

# ------------------------------------------------------------------------------ figures
cat <<EOF

container figures ($(date -u +%FT%TZ), $(nproc) cores, podman $(command podman --version | awk '{print $3}'), broker: $BROKER_KIND)
  image size                 ${IMAGE_MB} MB   (stand-in base $(awk -v b="$base_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB)
  app layers (image - base)  ${APP_MB} MB   (limit ${APP_LAYERS_LIMIT_MB} MB)
  cold build (--no-cache)    ${BUILD_S} s    (dev target after it: ${DEV_BUILD_S} s)
  run-to-ready, first run    ${READY_S} s    (creates the topics)
  run-to-ready, warm broker  ${WARM_READY_S} s    (limit ${READY_LIMIT_S} s)
  stop, Python as PID 1      ${SINGLE_STOP_S} s    (limit ${STOP_LIMIT_S} s)
  stop, 3 replicas (--init)  ${REPLICA_STOPS[*]} s
  memory of one idle worker  ${MEM}
EOF
echo "container: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
