#!/usr/bin/env bash
# Webhook benchmark: Kafka -> firehose-broker -> 100 endpoints on a local keep-alive receiver.
#
#   bench/webhooks.sh            (part of `make bench`)
#
# Starts Kafka with tests/kafka/kafka.sh (or uses BENCH_BOOTSTRAP), the C receiver
# bench/webhook_sink.c on 127.0.0.1, and one broker with webhooks on; creates BENCH_WH_ENDPOINTS
# endpoints that all match every event (filter {}), then BENCH_WH_RUNS rounds of
#   throughput: emits BENCH_WH_EVENTS fresh events at once and times until the broker has every
#               delivery acknowledged (firehose_webhook_delivered_total): signed deliveries/s =
#               events x endpoints / (last ack - start of emit);
#   latency:    emits BENCH_WH_LAT_RATE events/s for BENCH_WH_LAT_SECONDS and reads the broker's
#               histogram of Kafka timestamp (produce) -> 2xx of the first attempt over that window.
# Prints each figure as the median of the rounds with their range (min-max) and writes them into
# docs/performance.md between the bench:webhooks markers (bench/write_section.py).
# Everything listens on 127.0.0.1. Knobs: BENCH_WH_ENDPOINTS (100), BENCH_WH_EVENTS (2000),
# BENCH_WH_RUNS (3), BENCH_WH_LAT_RATE (50), BENCH_WH_LAT_SECONDS (10), BENCH_WH_ARGS (extra broker
# arguments, recorded in the doc), BENCH_BOOTSTRAP, BENCH_NO_DOC=1.
# Time with the defaults: about 2 minutes at ~12,000 deliveries/s (a round is a ~17 s burst and a
# 10 s window; Kafka's start and the warm-up besides).
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
    "$KAFKA_SH" create-topics "$STATE" "$P.events:6" "$P.logs:1" "$P.dlq:1" \
        "$P.wh-endpoints:1+cleanup.policy=compact" \
        "$P.wh-deliveries:6+cleanup.policy=compact,delete+retention.ms=604800000" 2>/dev/null
    TOPIC_ARGS=(--topics.create=false)
fi
# the webhook topics of this run, and the key that seals endpoint secrets
TOPIC_ARGS+=(--topics.webhook_endpoints="$P.wh-endpoints" --topics.webhook_deliveries="$P.wh-deliveries"
             --webhooks.secret_key="$(openssl rand -hex 32)" --webhooks.migrate_from=)

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

# ---- rounds: a throughput burst, then latency at a steady rate ---------------------------------
: >"$WORK/runs.txt"
for r in $(seq 1 "$RUNS"); do
    gen "$WORK/run$r.ndjson" "$EVENTS" $((600 + r))
    TOTAL=$((TOTAL + EVENTS * ENDPOINTS))
    t0="$(date +%s.%N)"
    emit "$WORK/run$r.ndjson"
    t1="$(wait_delivered "$TOTAL" 600)"
    rate="$(python3 -c "print(round($EVENTS * $ENDPOINTS / ($t1 - $t0)))")"
    echo "$rate" >>"$WORK/runs.txt"
    say "round $r: $((EVENTS * ENDPOINTS)) signed deliveries in $(python3 -c "print(round($t1 - $t0, 2))") s = $rate/s"

    gen "$WORK/lat$r.ndjson" $((LAT_RATE * LAT_SECONDS)) $((900 + r))
    curl -sf "${URL}metrics" | grep '^firehose_webhook_latency_ms' >"$WORK/lat$r-0.txt"
    python3 - "$WORK/lat$r.ndjson" "$LAT_RATE" <<'EOF' | emit
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
    curl -sf "${URL}metrics" | grep '^firehose_webhook_latency_ms' >"$WORK/lat$r-1.txt"
    say "round $r: $((LAT_RATE * LAT_SECONDS)) events at $LAT_RATE/s delivered"
done
kill "$BROKER_PID"; wait "$BROKER_PID" || true; BROKER_PID=""
kill "$SINK_PID"; wait "$SINK_PID" || true; SINK_PID=""
SINK="$(tail -n 1 "$WORK/sink.out")"
say "receiver: $SINK (expected requests=$TOTAL)"
case "$SINK" in "requests=$TOTAL signed=$TOTAL") ;; *) die "the receiver saw $SINK, expected $TOTAL signed requests" ;; esac

# ---- report ----------------------------------------------------------------------------------
export WORK ENDPOINTS EVENTS RUNS LAT_RATE LAT_SECONDS TOTAL
export DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" CURL="$(curl-config --version 2>/dev/null || echo libcurl)"
export SQLITE="$(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?')" RUN_S=$((SECONDS - T0))
export KAFKA_DESC="$([ -n "${BENCH_BOOTSTRAP:-}" ] && echo "external Kafka at $BENCH_BOOTSTRAP" \
    || echo "Apache Kafka 3.9.1 (KRaft, one node on loopback, same machine), events topic with 6 partitions")"
PYTHONPATH="$ROOT/bench" python3 - >"$WORK/section.md" <<'EOF'
import os, re, sys
import stats
env = os.environ
W = env["WORK"]
rates = [int(x) for x in open(os.path.join(W, "runs.txt")).read().split()]

def hist(path):
    b = {}
    for line in open(path):
        m = re.match(r'firehose_webhook_latency_ms_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            b[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = int(m.group(2))
    return b

def window(r):
    """p50, p99 (upper bounds of the buckets holding them; buckets are cumulative) and samples of round r."""
    h0, h1 = hist(os.path.join(W, "lat%d-0.txt" % r)), hist(os.path.join(W, "lat%d-1.txt" % r))
    d = sorted((le, h1[le] - h0.get(le, 0)) for le in h1)
    n = d[-1][1]
    q = lambda p: next((le for le, c in d if c >= p * n), float("inf"))
    return q(0.50), q(0.99), n
lat = [window(r) for r in range(1, int(env["RUNS"]) + 1)]
p50, p99, samples = [x[0] for x in lat], [x[1] for x in lat], [x[2] for x in lat]
at = stats.num(int(env["LAT_RATE"]) * int(env["ENDPOINTS"]))
runs = lambda vals: ", ".join("%g" % v for v in vals)
print("\nwebhooks: %s signed deliveries/s (rounds: %s); latency at %s deliveries/s: p50 <= %s ms, p99 <= %s ms "
      "(bucket bounds, rounds: %s / %s)" % (stats.med_range(rates), runs(rates), at, stats.med_range(p50),
                                            stats.med_range(p99), runs(p50), runs(p99)), file=sys.stderr)
print("\n".join([
    "## Webhooks: Kafka to %s endpoints on a local receiver" % env["ENDPOINTS"],
    "",
    "- Command: %s (what `make bench` runs; one broker%s, %s endpoints with filter `{}` on bench/webhook_sink.c, "
    "a C epoll HTTP/1.1 keep-alive receiver on 127.0.0.1 answering 204; %s rounds, each a throughput burst of %s "
    "events, then a latency window)" % (
        stats.command("bench/webhooks.sh"), (" with `%s`" % env["BENCH_WH_ARGS"]) if env.get("BENCH_WH_ARGS") else "",
        env["ENDPOINTS"], env["RUNS"], stats.num(int(env["EVENTS"]))),
    "- Date: %s; the script took %s s" % (env["DATE"], env["RUN_S"]),
    "- Machine: %s; Kafka, broker, receiver and emitter share them" % stats.machine(),
    "- Software: %s, SQLite %s; %s" % (env["CURL"], env["SQLITE"], env["KAFKA_DESC"]),
    "- Throughput: signed deliveries/s = events x endpoints / (broker's last 2xx - start of emit); every "
    "delivery is recorded in SQLite before its offset is committed, signed (HMAC-SHA256), POSTed and its result "
    "recorded. The receiver counted %s requests, all with webhook-id, webhook-timestamp and a v1 signature."
    % stats.num(int(env["TOTAL"])),
    "- Latency: in each round, %s events/s for %s s (%s deliveries/s), from the broker's histogram "
    "`firehose_webhook_latency_ms` over that window (Kafka produce timestamp to the 2xx of the first attempt); "
    "values are bucket upper bounds." % (env["LAT_RATE"], env["LAT_SECONDS"], at),
    "- Each figure is the median of the rounds, with the lowest and highest round in parentheses.",
    "- Goal (DESIGN.md): at least 20,000 signed deliveries/s.",
    "",
    "| measure | median (min-max) | rounds |",
    "|---|---:|---|",
    "| signed deliveries/s (burst of %s x %s) | %s | %s |" % (
        stats.num(int(env["EVENTS"])), env["ENDPOINTS"], stats.med_range(rates, bold=True),
        ", ".join(stats.num(r) for r in rates)),
    "| produce -> 2xx p50 at %s deliveries/s | <= %s | %s ms; %s samples per round |" % (
        at, stats.med_range(p50, unit=" ms"), runs(p50), "/".join(stats.num(n) for n in samples)),
    "| produce -> 2xx p99 at %s deliveries/s | <= %s | %s ms |" % (at, stats.med_range(p99, unit=" ms", bold=True),
                                                                 runs(p99)),
]))
EOF
if [ -n "${BENCH_NO_DOC:-}" ]; then
    cat "$WORK/section.md"
else
    python3 "$ROOT/bench/write_section.py" webhooks "$DOC" <"$WORK/section.md"
fi
say "done in $((SECONDS - T0)) s"
