#!/usr/bin/env bash
# Webhook benchmark: Kafka -> firehose-broker -> 100 endpoints on a local keep-alive receiver.
#
#   bench/webhooks.sh            (part of `make bench`)
#
# Starts Kafka with tests/kafka/kafka.sh (or uses BENCH_BOOTSTRAP), the C receiver
# bench/webhook_sink.c on 127.0.0.1, and one broker with webhooks on; creates BENCH_WH_ENDPOINTS
# endpoints that all match every event (filter {}), then
#   throughput: BENCH_WH_RUNS times, emits BENCH_WH_EVENTS fresh events at once and times until the
#               broker has every delivery acknowledged (firehose_webhook_delivered_total): signed
#               deliveries/s = events x endpoints / (last ack - start of emit);
#   latency:    emits BENCH_WH_LAT_RATE events/s for BENCH_WH_LAT_SECONDS and reads the broker's
#               histogram of Kafka timestamp (produce) -> 2xx of the first attempt.
# Prints the medians and writes them into docs/performance.md between the bench:webhooks markers.
# Everything listens on 127.0.0.1. Knobs: BENCH_WH_ENDPOINTS (100), BENCH_WH_EVENTS (2000),
# BENCH_WH_RUNS (3), BENCH_WH_LAT_RATE (50), BENCH_WH_LAT_SECONDS (10), BENCH_WH_ARGS (extra broker
# arguments, recorded in the doc), BENCH_BOOTSTRAP, BENCH_NO_DOC=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BROKER="$ROOT/bin/firehose-broker"
EMIT="$ROOT/bin/firehose-emit"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
DATA="$ROOT/build/bench"
DOC="$ROOT/docs/performance.md"
ENDPOINTS="${BENCH_WH_ENDPOINTS:-100}"
EVENTS="${BENCH_WH_EVENTS:-2000}"
RUNS="${BENCH_WH_RUNS:-3}"
LAT_RATE="${BENCH_WH_LAT_RATE:-50}"
LAT_SECONDS="${BENCH_WH_LAT_SECONDS:-10}"
read -r -a EXTRA <<<"${BENCH_WH_ARGS:-}"
TOKEN="bench-admin-token-$$"

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ -x "$BROKER" ] && [ -x "$EMIT" ] || die "bin/ is missing: run make"
T0=$SECONDS
mkdir -p "$DATA"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-wh.XXXXXX")"
STATE="" SINK_PID="" BROKER_PID=""
cleanup() {
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null || true
    [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null || true
    if [ -n "$STATE" ]; then "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true; rm -rf "$STATE"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc -O2 -Wall -Wextra -Werror -o "$DATA/webhook_sink" "$ROOT/bench/webhook_sink.c"

# ---- Kafka -----------------------------------------------------------------------------------
P="wb$$"
if [ -n "${BENCH_BOOTSTRAP:-}" ]; then
    BOOTSTRAP="$BENCH_BOOTSTRAP"
    say "using Kafka at $BOOTSTRAP (topics $P.* are created by the broker)"
    TOPIC_ARGS=(--topics.create=true --topics.partitions=6)
else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-kafka.XXXXXX")"
    BOOTSTRAP="$(KAFKA_WATCH_PID=$$ "$KAFKA_SH" start "$STATE")"
    "$KAFKA_SH" create-topics "$STATE" "$P.events:6" "$P.logs:1" "$P.dlq:1" 2>/dev/null
    TOPIC_ARGS=(--topics.create=false)
fi

# ---- receiver and broker -------------------------------------------------------------------
"$DATA/webhook_sink" 0 </dev/null >"$WORK/sink.out" &
SINK_PID=$!
for _ in $(seq 100); do grep -q '^port=' "$WORK/sink.out" 2>/dev/null && break; sleep 0.05; done
SINK_PORT="$(sed -n 's/^port=//p' "$WORK/sink.out")"
[ -n "$SINK_PORT" ] || die "the receiver did not start"

start_broker() {
    "$BROKER" --brokers "$BOOTSTRAP" --listen 127.0.0.1:0 --kafka.group "$P-ingest" \
        --topic-events "$P.events" --topic-logs "$P.logs" --topic-dlq "$P.dlq" "${TOPIC_ARGS[@]}" \
        --view.enabled=false --auth.admin_token="$TOKEN" --webhooks.path="$WORK/webhooks.db" \
        --webhooks.group="$P-webhooks" --webhooks.allow_cidrs=127.0.0.1/32 \
        --broker.stats_interval_ms=600000 "${EXTRA[@]}" 2>"$WORK/broker.log" &
    BROKER_PID=$!
    URL=""
    for _ in $(seq 300); do
        URL="$(sed -n 's/.*event=http\.listening url=\([^ ]*\).*/\1/p' "$WORK/broker.log" | tail -n 1)"
        [ -n "$URL" ] && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || { BROKER_PID=""; return 1; }
        sleep 0.1
    done
    return 1
}
# Topics the broker just created may have no leader for a moment (it then exits): try again.
for attempt in 1 2 3 4 5; do
    start_broker && break
    say "the broker exited (attempt $attempt): $(grep -m1 'level=error' "$WORK/broker.log" || true)"
    sleep 2
done
[ -n "$URL" ] || die "the broker did not listen"
for i in $(seq 1 "$ENDPOINTS"); do
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "{\"url\":\"http://127.0.0.1:$SINK_PORT/ep/$i\",\"filter\":{}}" "${URL}api/v1/webhooks" ||
        die "creating endpoint $i failed"
done
metric() { curl -sf "${URL}metrics" | awk -v n="$1" '$1 == n {print $2}'; }
wait_delivered() {   # wait_delivered TOTAL TIMEOUT_S: prints the time (s, epoch) it was reached
    local want="$1" deadline=$((SECONDS + $2)) d
    while :; do
        d="$(metric firehose_webhook_delivered_total)"
        if [ "${d:-0}" -ge "$want" ]; then date +%s.%N; return 0; fi
        [ $SECONDS -lt $deadline ] || die "stuck at ${d:-0} of $want deliveries"
        sleep 0.02
    done
}
gen() {   # gen FILE COUNT SEED: status events (the webhook consumer reads the events topic)
    python3 "$ROOT/tests/integration/gen_events.py" --count "$2" --seed "$3" --exclude-types 'log.*' >"$1"
}
emit() { "$EMIT" --brokers "$BOOTSTRAP" --topic-events "$P.events" --topic-logs "$P.logs" --topic-dlq "$P.dlq" "$@" 2>>"$WORK/emit.log" >/dev/null; }

# ---- warm-up ---------------------------------------------------------------------------------
gen "$WORK/warm.ndjson" 200 500
emit "$WORK/warm.ndjson"
TOTAL=$((200 * ENDPOINTS))
wait_delivered "$TOTAL" 120 >/dev/null
say "warm-up: $TOTAL deliveries to $ENDPOINTS endpoints"

# ---- throughput ------------------------------------------------------------------------------
: >"$WORK/runs.txt"
for r in $(seq 1 "$RUNS"); do
    gen "$WORK/run$r.ndjson" "$EVENTS" $((600 + r))
    TOTAL=$((TOTAL + EVENTS * ENDPOINTS))
    t0="$(date +%s.%N)"
    emit "$WORK/run$r.ndjson"
    t1="$(wait_delivered "$TOTAL" 600)"
    rate="$(python3 -c "print(round($EVENTS * $ENDPOINTS / ($t1 - $t0)))")"
    echo "$rate" >>"$WORK/runs.txt"
    say "run $r: $((EVENTS * ENDPOINTS)) signed deliveries in $(python3 -c "print(round($t1 - $t0, 2))") s = $rate/s"
done

# ---- latency at a steady rate ------------------------------------------------------------------
curl -sf "${URL}metrics" | grep '^firehose_webhook_latency_ms' >"$WORK/lat0.txt"
gen "$WORK/lat.ndjson" $((LAT_RATE * LAT_SECONDS)) 999
python3 - "$WORK/lat.ndjson" "$LAT_RATE" <<'EOF' | emit
import sys, time
lines = open(sys.argv[1]).read().splitlines()
rate = int(sys.argv[2])
t0 = time.monotonic()
for i, line in enumerate(lines):
    delay = t0 + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
EOF
TOTAL=$((TOTAL + LAT_RATE * LAT_SECONDS * ENDPOINTS))
wait_delivered "$TOTAL" 300 >/dev/null
curl -sf "${URL}metrics" | grep '^firehose_webhook_latency_ms' >"$WORK/lat1.txt"
kill "$BROKER_PID"; wait "$BROKER_PID" || true; BROKER_PID=""
kill "$SINK_PID"; wait "$SINK_PID" || true; SINK_PID=""
SINK="$(tail -n 1 "$WORK/sink.out")"
say "receiver: $SINK (expected requests=$TOTAL)"
case "$SINK" in "requests=$TOTAL signed=$TOTAL") ;; *) die "the receiver saw $SINK, expected $TOTAL signed requests" ;; esac

# ---- report ----------------------------------------------------------------------------------
export WORK DOC ENDPOINTS EVENTS RUNS LAT_RATE LAT_SECONDS TOTAL
export CPU="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
export MEM_KB="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" NPROC="$(nproc)" KERNEL="$(uname -sr)"
export DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" CURL="$(curl-config --version 2>/dev/null || echo libcurl)"
export SQLITE="$(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?')" ARGS="${BENCH_WH_ARGS:-}"
export WRITE_DOC="$([ -n "${BENCH_NO_DOC:-}" ] && echo 0 || echo 1)"
export KAFKA_DESC="$([ -n "${BENCH_BOOTSTRAP:-}" ] && echo "external Kafka at $BENCH_BOOTSTRAP" \
    || echo "Apache Kafka 3.9.1 (KRaft, one node on loopback, same machine), events topic with 6 partitions")"
python3 - <<'EOF'
import os, re, statistics
env = os.environ
rates = [int(x) for x in open(os.path.join(env["WORK"], "runs.txt")).read().split()]

def hist(path):
    b = {}
    for line in open(path):
        m = re.match(r'firehose_webhook_latency_ms_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            b[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = int(m.group(2))
    return b
h0, h1 = hist(os.path.join(env["WORK"], "lat0.txt")), hist(os.path.join(env["WORK"], "lat1.txt"))
d = sorted((le, h1[le] - h0.get(le, 0)) for le in h1)
n = d[-1][1]

def q(p):   # upper bound of the bucket holding the p-quantile (buckets are cumulative)
    for le, c in d:
        if c >= p * n:
            return le
    return float("inf")
p50, p99 = q(0.50), q(0.99)
med = statistics.median(rates)
print("\nwebhooks: median %s signed deliveries/s (runs: %s); latency at %s deliveries/s: p50 <= %g ms, p99 <= %g ms (%d samples)"
      % (format(round(med), ","), ", ".join(format(r, ",") for r in rates),
         format(int(env["LAT_RATE"]) * int(env["ENDPOINTS"]), ","), p50, p99, n))
if env["WRITE_DOC"] != "1":
    raise SystemExit(0)
mem_gib = int(env["MEM_KB"]) / 1024 / 1024
cmd = "make bench" + ("  (BENCH_WH_ARGS=%r)" % env["ARGS"] if env["ARGS"] else "")
section = "\n".join([
    "<!-- bench:webhooks:begin (written by bench/webhooks.sh; edits inside these markers are overwritten) -->",
    "## Webhooks: Kafka to 100 endpoints on a local receiver",
    "",
    "- Command: `%s` (bench/webhooks.sh: one broker, %s endpoints with filter `{}` on bench/webhook_sink.c, a C "
    "epoll HTTP/1.1 keep-alive receiver on 127.0.0.1 answering 204; %s throughput runs of %s events each)"
    % (cmd, env["ENDPOINTS"], env["RUNS"], format(int(env["EVENTS"]), ",")),
    "- Date: %s" % env["DATE"],
    "- Machine: %s CPUs (%s), %.1f GiB RAM, %s; Kafka, broker, receiver and emitter share them" % (
        env["NPROC"], env["CPU"] or "unknown CPU", mem_gib, env["KERNEL"]),
    "- Software: %s, SQLite %s; %s" % (env["CURL"], env["SQLITE"], env["KAFKA_DESC"]),
    "- Throughput: signed deliveries/s = events x endpoints / (broker's last 2xx - start of emit); every "
    "delivery is recorded in SQLite before its offset is committed, signed (HMAC-SHA256), POSTed and its attempt "
    "logged. The receiver counted %s requests, all with webhook-id, webhook-timestamp and a v1 signature." % format(int(env["TOTAL"]), ","),
    "- Latency: %s events/s for %s s (%s deliveries/s), from the broker's histogram "
    "`firehose_webhook_latency_ms` (Kafka produce timestamp to the 2xx of the first attempt); values are bucket "
    "upper bounds." % (env["LAT_RATE"], env["LAT_SECONDS"], format(int(env["LAT_RATE"]) * int(env["ENDPOINTS"]), ",")),
    "- Goal (DESIGN.md): at least 20,000 signed deliveries/s.",
    "",
    "| measure | median | runs |",
    "|---|---:|---|",
    "| signed deliveries/s (burst of %s x %s) | **%s** | %s |" % (
        format(int(env["EVENTS"]), ","), env["ENDPOINTS"], format(round(med), ","), ", ".join(format(r, ",") for r in rates)),
    "| produce -> 2xx p50 at %s deliveries/s | %g ms | %d samples |" % (format(int(env["LAT_RATE"]) * int(env["ENDPOINTS"]), ","), p50, n),
    "| produce -> 2xx p99 at %s deliveries/s | **%g ms** | |" % (format(int(env["LAT_RATE"]) * int(env["ENDPOINTS"]), ","), p99),
    "",
    "<!-- bench:webhooks:end -->"])
doc = env["DOC"]
text = open(doc).read() if os.path.exists(doc) else "# Performance\n"
pat = re.compile(r"<!-- bench:webhooks:begin.*?<!-- bench:webhooks:end -->", re.S)
text = pat.sub(lambda m: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
with open(doc + ".tmp", "w") as f:
    f.write(text)
os.replace(doc + ".tmp", doc)
print("wrote the webhooks section of %s" % doc)
EOF
say "done in $((SECONDS - T0)) s"
