#!/usr/bin/env bash
# Replay benchmark: real Apache Kafka -> bin/firehose-replay -> NDJSON on /dev/null, side by side
# with kcat (`kcat -C -e -o beginning -f '%s\n'`, what a user would reach for) on the same topic,
# and the --summary rate.
#
#   bench/replay.sh            (what `make bench` runs after bench/ingest.sh)
#
# Starts Kafka with tests/kafka/kafka.sh, creates one topic (6 partitions), fills it with status
# events from tests/integration/gen_events.py (generated once into build/bench/, produced
# BENCH_REPLAY_COPIES times with firehose-emit), then runs each reader BENCH_RUNS times, taking
# the wall time of each run; prints the medians and writes docs/performance.md between the
# bench:replay markers. Kafka is stopped on exit.
#
# Knobs (environment): BENCH_REPLAY_COUNT (300000 events per copy), BENCH_REPLAY_COPIES (3),
#   BENCH_RUNS (5), BENCH_RUN_TIMEOUT (s per run, 300), BENCH_BOOTSTRAP (use a running Kafka),
#   BENCH_NO_DOC=1 (do not touch docs/performance.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
REPLAY="$ROOT/bin/firehose-replay"
EMIT="$ROOT/bin/firehose-emit"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
GEN="$ROOT/tests/integration/gen_events.py"
DATA="$ROOT/build/bench"
DOC="$ROOT/docs/performance.md"

COUNT="${BENCH_REPLAY_COUNT:-300000}"
COPIES="${BENCH_REPLAY_COPIES:-3}"
RUNS="${BENCH_RUNS:-5}"
RUN_TIMEOUT="${BENCH_RUN_TIMEOUT:-300}"
TOPIC="replay.bench.$$.events"

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$REPLAY" ] || die "$REPLAY is missing: run make"
[ -x "$EMIT" ] || die "$EMIT is missing: run make"
command -v kcat >/dev/null || die "kcat is needed for the side-by-side run"
T0=$SECONDS
mkdir -p "$DATA"

STATE=""
cleanup() {
    if [ -n "$STATE" ]; then
        "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true
        rm -rf "$STATE"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${BENCH_BOOTSTRAP:-}" ]; then
    BOOTSTRAP="$BENCH_BOOTSTRAP"
    say "using Kafka at $BOOTSTRAP (topic $TOPIC is auto-created by the producer)"
else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-kafka.XXXXXX")"
    BOOTSTRAP="$(KAFKA_WATCH_PID=$$ "$KAFKA_SH" start "$STATE")"
    "$KAFKA_SH" create-topics "$STATE" "$TOPIC:6" 2>/dev/null
    say "Kafka $BOOTSTRAP ready"
fi

# ---- input: status events (every type but log.*), the ingest benchmark's file when present ----
INPUT="$DATA/status-$COUNT.ndjson"
if ! [ -s "$INPUT" ] || ! [ "$INPUT" -nt "$GEN" ]; then
    say "generating $INPUT"
    python3 "$GEN" --count "$COUNT" --seed 11 --exclude-types 'log.*' >"$INPUT.tmp"
    mv "$INPUT.tmp" "$INPUT"
fi
for i in $(seq 1 "$COPIES"); do
    "$EMIT" --brokers "$BOOTSTRAP" --topic-events "$TOPIC" -q "$INPUT"
done
TOTAL=$((COUNT * COPIES))
BYTES=$(( $(stat -c %s "$INPUT") * COPIES - TOTAL ))   # payload bytes (without the newlines)
say "topic $TOPIC holds $TOTAL records ($BYTES payload bytes)"

# ---- runs -------------------------------------------------------------------------------------
RESULTS="$DATA/replay-results.txt"
: >"$RESULTS"
now_ns() { date +%s%N; }
run() {   # run LABEL CMD... ; records the wall time; checks the record count on stdout
    local label="$1"; shift
    local t0 t1 n
    t0=$(now_ns)
    n=$(timeout "$RUN_TIMEOUT" "$@" | wc -l)
    t1=$(now_ns)
    [ "$n" = "$TOTAL" ] || [ "$label" = summary ] || die "$label: $n lines, want $TOTAL"
    printf '%s\t%s\n' "$label" "$((t1 - t0))" >>"$RESULTS"
    say "$label: $(( (t1 - t0) / 1000000 )) ms"
}
REPLAY_CMD=("$REPLAY" --brokers "$BOOTSTRAP" --topics "$TOPIC" -q --progress never)
KCAT_CMD=(kcat -C -b "$BOOTSTRAP" -t "$TOPIC" -e -o beginning -q -f '%s\n')
run warmup "${REPLAY_CMD[@]}" && sed -i '/^warmup/d' "$RESULTS"
for i in $(seq 1 "$RUNS"); do
    run replay "${REPLAY_CMD[@]}"
    run kcat "${KCAT_CMD[@]}"
    run summary "${REPLAY_CMD[@]}" --summary
done

# ---- report -----------------------------------------------------------------------------------
CPU="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
MEM_KB="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
RDKAFKA="$(pkg-config --modversion rdkafka 2>/dev/null || echo unknown)"
KCAT_V="$(kcat -V 2>&1 | head -n 1 || true)"
export RESULTS DOC CPU MEM_KB RDKAFKA KCAT_V RUNS TOTAL BYTES COPIES COUNT
export NPROC="$(nproc)" KERNEL="$(uname -sr)" DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
export WRITE_DOC="$([ -n "${BENCH_NO_DOC:-}" ] && echo 0 || echo 1)"
python3 - <<'EOF'
import os, re, statistics

env = os.environ
total, nbytes = int(env["TOTAL"]), int(env["BYTES"])
runs = {}
for line in open(env["RESULTS"]):
    label, ns = line.split("\t")
    runs.setdefault(label, []).append(int(ns) / 1e9)
med = {k: statistics.median(v) for k, v in runs.items()}
rate = {k: total / v for k, v in med.items()}
ratio = rate["replay"] / rate["kcat"]
for k in ("replay", "kcat", "summary"):
    print("%-8s median %.3f s  %10s events/s  %7.1f MB/s  (runs: %s)" % (
        k, med[k], format(round(rate[k]), ","), nbytes / med[k] / 1e6,
        ", ".join("%.3f" % x for x in runs[k])))
print("replay / kcat = %.2f" % ratio)
if env["WRITE_DOC"] != "1":
    raise SystemExit(0)

def row(label, what, k):
    r = runs[k]
    return "| %s | %s | %d | **%s** | **%.1f** | %s-%s |" % (
        label, what, len(r), format(round(rate[k]), ","), nbytes / med[k] / 1e6,
        format(round(total / max(r)), ","), format(round(total / min(r)), ","))

section = "\n".join([
    "<!-- bench:replay:begin (written by bench/replay.sh; edits inside these markers are overwritten) -->",
    "## Replay: Kafka to NDJSON, firehose-replay and kcat side by side",
    "",
    "- Command: `make bench` (bench/replay.sh); readers, each run %s times in the same session, alternating:" % env["RUNS"],
    "  - `bin/firehose-replay --brokers 127.0.0.1:PORT --topics TOPIC -q --progress never | wc -l` (NDJSON, records as they are)",
    "  - `kcat -C -b 127.0.0.1:PORT -t TOPIC -e -o beginning -q -f '%s\\n' | wc -l`",
    "  - `bin/firehose-replay ... --summary` (steps p50/p95, build durations per day, failure rate, queue wait)",
    "- Date: %s" % env["DATE"],
    "- Machine: %s CPUs (%s), %.1f GiB RAM, %s; Kafka, the reader and `wc` share these CPUs" % (
        env["NPROC"], env["CPU"] or "unknown CPU", int(env["MEM_KB"]) / 1024 / 1024, env["KERNEL"]),
    "- Software: librdkafka %s; %s; Apache Kafka 3.9.1 (KRaft, one node on loopback, -Xmx512m)" % (env["RDKAFKA"], env["KCAT_V"]),
    "- Data: one topic, 6 partitions, %s status events (tests/integration/gen_events.py, every type but log.*, %s events produced %s times), %.0f B per record on average, lz4-compressed by firehose-emit" % (
        format(total, ","), format(int(env["COUNT"]), ","), env["COPIES"], nbytes / total),
    "- Rates: records / median wall time of the whole command (start-up, metadata and watermark lookups included); MB/s counts the record payloads.",
    "- Goal (DESIGN.md): at least 500,000 events/s to NDJSON.",
    "",
    "| reader | output | runs | median events/s | median MB/s | events/s min-max |",
    "|---|---|---:|---:|---:|---:|",
    row("firehose-replay", "NDJSON to a pipe", "replay"),
    row("kcat `-f '%s\\n'`", "payloads to a pipe", "kcat"),
    row("firehose-replay --summary", "one JSON report", "summary"),
    "",
    "firehose-replay / kcat, NDJSON, same run: **%.2f x**." % ratio,
    "",
    "<!-- bench:replay:end -->",
])
doc = env["DOC"]
text = open(doc).read()
pat = re.compile(r"<!-- bench:replay:begin.*?<!-- bench:replay:end -->", re.S)
text = pat.sub(lambda m: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
with open(doc + ".tmp", "w") as f:
    f.write(text)
os.replace(doc + ".tmp", doc)
print("wrote the replay section of %s" % doc)
EOF
say "done in $((SECONDS - T0)) s"
