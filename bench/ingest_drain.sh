#!/usr/bin/env bash
# The broker's ingest consumer (main thread) draining a backlog, two broker binaries side by side.
#
#   DRAIN_BROKER_B=/path/to/other/firehose-broker bash bench/ingest_drain.sh
#
# Real Apache Kafka (tests/kafka/kafka.sh, one KRaft node on 127.0.0.1). The status-event input of
# bench/ingest.sh (firehose-sim --profile mozilla-2010 --logs=false, cached in build/bench/) is
# produced once with firehose-emit into topics of this run (6 partitions). Then each run starts a
# broker (view, webhooks and derivation off, so the main thread's consumer is what works) with a
# consumer group of its own, so it reads the whole backlog, and logs its counts every 100 ms
# (broker.stats_interval_ms); events/s = the events counted between the first counts line and the
# first line counting the whole input, over the time between the two. Runs alternate A, B, A, B ... (DRAIN_RUNS each) after
# one unreported warm-up run of each. Prints each binary's median events/s and CPU (utime+stime of
# the whole process, start-up included) with their ranges, and the ratios B/A of the medians. Nothing is written to docs/.
#
# Knobs: DRAIN_COUNT (300000), DRAIN_RUNS (3), DRAIN_BROKER_A (bin/firehose-broker),
#   DRAIN_BROKER_B (required), DRAIN_TIMEOUT (s per run, 120).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
DATA="$ROOT/build/bench"
COUNT="${DRAIN_COUNT:-300000}"
RUNS="${DRAIN_RUNS:-3}"
TIMEOUT="${DRAIN_TIMEOUT:-120}"
BROKER_A="${DRAIN_BROKER_A:-$ROOT/bin/firehose-broker}"
BROKER_B="${DRAIN_BROKER_B:-}"

say() { printf 'drain: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

[ -x "$BROKER_A" ] || die "$BROKER_A is missing: run make"
[ -x "$BROKER_B" ] || die "DRAIN_BROKER_B must name another firehose-broker binary"
mkdir -p "$DATA"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/firehose-drain.XXXXXX")"
STATE="$RUN/kafka"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_kafka_start
P="drain$$"
"$KAFKA_SH" create-topics "$STATE" "$P.events:6" "$P.logs:6" "$P.dlq:1" >/dev/null 2>&1
INPUT="$DATA/sim-status-$COUNT.ndjson"
if [ ! -s "$INPUT" ] || [ "$INPUT" -ot "$ROOT/bin/firehose-sim" ]; then
    say "generating $INPUT"
    "$ROOT/bin/firehose-sim" -q --profile mozilla-2010 --logs=false --count "$COUNT" --seed 11 \
        >"$INPUT.tmp"
    mv "$INPUT.tmp" "$INPUT"
fi
"$ROOT/bin/firehose-emit" --brokers "$BOOTSTRAP" --topic-events "$P.events" --topic-logs "$P.logs" \
    --topic-dlq "$P.dlq" -q "$INPUT" >&2
say "Kafka $BOOTSTRAP holds $COUNT events"

# one_run BINARY: prints the broker's CPU ticks (start-up included) and the events/s of one drain, from the broker's own counts log (every 100 ms
# while the count moves): the first line counting anything to the first counting everything
one_run() {
    local bin="$1" log="$RUN/broker-$RANDOM.log"
    "$bin" --brokers "$BOOTSTRAP" --listen 127.0.0.1:0 --kafka.group "$P-$RANDOM" \
        --topic-events "$P.events" --topic-logs "$P.logs" --topic-dlq "$P.dlq" \
        --topics.create=false --view.enabled=false --webhooks.enabled=false \
        --broker.stats_interval_ms=100 2>"$log" &
    PID=$!
    local deadline=$((SECONDS + TIMEOUT))
    until grep -q "event=broker.counts total=$COUNT " "$log"; do
        [ $SECONDS -lt $deadline ] || die "the broker did not count $COUNT events in ${TIMEOUT}s"
        sleep 0.1
    done
    local cpu; cpu="$(ticks "$PID")"
    kill -TERM "$PID"; wait "$PID" || true; PID=""
    printf '%s ' "$cpu"
    python3 - "$log" "$COUNT" <<'PY'
import datetime, re, sys
first = last = None
n0 = 0
for line in open(sys.argv[1]):
    m = re.search(r"^ts=(\S+) .*event=broker.counts total=(\d+) ", line)
    if not m:
        continue
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
    n = int(m.group(2))
    if first is None:
        first, n0 = t, n
    if n >= int(sys.argv[2]):
        last = t
        break
print(round((int(sys.argv[2]) - n0) / (last - first)))
PY
}

one_run "$BROKER_A" >/dev/null
one_run "$BROKER_B" >/dev/null
: >"$RUN/a.txt"; : >"$RUN/b.txt"
for r in $(seq "$RUNS"); do
    a="$(one_run "$BROKER_A")"; echo "$a" >>"$RUN/a.txt"; say "A$r ticks, events/s: $a"
    b="$(one_run "$BROKER_B")"; echo "$b" >>"$RUN/b.txt"; say "B$r ticks, events/s: $b"
done
python3 - "$RUN/a.txt" "$RUN/b.txt" "$BROKER_A" "$BROKER_B" "$COUNT" <<'PY'
import statistics, sys
def read(path):
    rows = [line.split() for line in open(path) if line.strip()]
    return [int(r[1]) for r in rows], [int(r[0]) for r in rows]
a, ac = read(sys.argv[1])
b, bc = read(sys.argv[2])
ma, mb = statistics.median(a), statistics.median(b)
mac, mbc = statistics.median(ac), statistics.median(bc)
print("events: %s per run, %d runs each; CPU in ticks (1/100 s) of the whole process" % (sys.argv[5], len(a)))
print("A %s: %d events/s (%d-%d), CPU %d (%d-%d)" % (sys.argv[3], ma, min(a), max(a), mac, min(ac), max(ac)))
print("B %s: %d events/s (%d-%d), CPU %d (%d-%d)" % (sys.argv[4], mb, min(b), max(b), mbc, min(bc), max(bc)))
print("B/A: events/s %.2f, CPU %.2f" % (mb / ma, mbc / mac))
PY
