#!/usr/bin/env bash
# Ingest benchmark: bin/firehose-emit -> real Apache Kafka (KRaft, single node on loopback).
#
#   bench/ingest.sh            (what `make bench` runs)
#
# Starts Kafka with tests/kafka/kafka.sh, creates firehose.events/firehose.logs (6 partitions),
# generates two inputs once with firehose-sim (cached in build/bench/): status events (every
# type but log.*) and ~4 KiB log.chunk events, runs firehose-emit on each BENCH_RUNS times, prints the medians and
# writes them into docs/performance.md between the bench:ingest markers.  Kafka is stopped on exit.
#
# Knobs (environment): BENCH_STATUS_COUNT (300000), BENCH_LOG_COUNT (50000), BENCH_RUNS (5),
#   BENCH_LOG_CHUNK_BYTES (3500 -> ~4 KiB records), BENCH_RUN_TIMEOUT (s per run, 120),
#   BENCH_BOOTSTRAP (use a running Kafka instead of starting one), BENCH_NO_DOC=1 (do not
#   touch docs/performance.md), BENCH_EMIT_ARGS (extra firehose-emit arguments, recorded in the doc).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
EMIT="$ROOT/bin/firehose-emit"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
DATA="$ROOT/build/bench"
DOC="$ROOT/docs/performance.md"

STATUS_COUNT="${BENCH_STATUS_COUNT:-300000}"
LOG_COUNT="${BENCH_LOG_COUNT:-50000}"
RUNS="${BENCH_RUNS:-5}"
CHUNK="${BENCH_LOG_CHUNK_BYTES:-3500}"
RUN_TIMEOUT="${BENCH_RUN_TIMEOUT:-120}"
read -r -a EXTRA <<<"${BENCH_EMIT_ARGS:-}"

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$EMIT" ] || die "$EMIT is missing: run make"
command -v python3 >/dev/null || die "python3 is needed"
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

# ---- Kafka ---------------------------------------------------------------------------------
if [ -n "${BENCH_BOOTSTRAP:-}" ]; then
    BOOTSTRAP="$BENCH_BOOTSTRAP"
    say "using Kafka at $BOOTSTRAP (topics must exist or be auto-created)"
else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-kafka.XXXXXX")"
    k0=$SECONDS
    BOOTSTRAP="$(KAFKA_WATCH_PID=$$ "$KAFKA_SH" start "$STATE")"
    "$KAFKA_SH" create-topics "$STATE" firehose.events:6 firehose.logs:6 2>/dev/null
    say "Kafka $BOOTSTRAP ready in $((SECONDS - k0)) s"
fi

# ---- inputs (generated once by firehose-sim; regenerated when the simulator is rebuilt) ------
SIM="$ROOT/bin/firehose-sim"
[ -x "$SIM" ] || die "$SIM is missing: run make"
gen() {   # gen FILE FILTER ARGS...: firehose-sim ARGS, lines matching FILTER (grep -E; "" keeps all)
    local file="$1" filter="$2"; shift 2
    if [ -s "$file" ] && [ "$file" -nt "$SIM" ]; then return 0; fi
    say "generating $file"
    if [ -n "$filter" ]; then
        "$SIM" -q "$@" | grep -E "$filter" >"$file.tmp" || true
    else
        "$SIM" -q "$@" >"$file.tmp"
    fi
    mv "$file.tmp" "$file"
}
STATUS_FILE="$DATA/sim-status-$STATUS_COUNT.ndjson"
LOG_FILE="$DATA/sim-logchunk-$LOG_COUNT-$CHUNK.ndjson"
WARM_FILE="$DATA/sim-warmup-2000.ndjson"
gen "$STATUS_FILE" "" --profile mozilla-2010 --logs=false --count "$STATUS_COUNT" --seed 11
# log.chunk records only: the mozilla-2010 stream is mostly chunks; keep exactly LOG_COUNT of them.
gen "$LOG_FILE.all" '"type":"log.chunk"' --profile mozilla-2010 --log-chunk-bytes "$CHUNK" \
    --count "$((LOG_COUNT + LOG_COUNT / 5 + 1000))" --seed 12
head -n "$LOG_COUNT" "$LOG_FILE.all" >"$LOG_FILE"
[ "$(wc -l <"$LOG_FILE")" -eq "$LOG_COUNT" ] || die "$LOG_FILE: fewer than $LOG_COUNT log.chunk events"
gen "$WARM_FILE" "" --count 2000 --seed 13

# ---- runs ------------------------------------------------------------------------------------
RESULTS="$DATA/results.txt"
: >"$RESULTS"
run_emit() {   # run_emit LABEL FILE EXPECTED
    local label="$1" file="$2" expected="$3" err rc line
    err="$DATA/emit-$label.err"
    rc=0
    timeout "$RUN_TIMEOUT" "$EMIT" --brokers "$BOOTSTRAP" "${EXTRA[@]}" "$file" 2>"$err" >/dev/null || rc=$?
    line="$(grep '^firehose-emit: .*sent=' "$err" | tail -n 1 || true)"
    if [ "$rc" != 0 ] || [ -z "$line" ]; then
        tail -n 20 "$err" >&2
        die "firehose-emit on $file exited $rc"
    fi
    case "$line" in *" sent=$expected "*) ;; *) die "$label: expected sent=$expected, got: $line" ;; esac
    printf '%s\t%s\n' "$label" "$line" >>"$RESULTS"
    say "$label: ${line#firehose-emit: }"
}

run_emit warmup "$WARM_FILE" 2000 && sed -i '/^warmup/d' "$RESULTS"
for i in $(seq 1 "$RUNS"); do
    run_emit status "$STATUS_FILE" "$STATUS_COUNT"
    run_emit logchunk "$LOG_FILE" "$LOG_COUNT"
done

# ---- report ----------------------------------------------------------------------------------
CPU="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
MEM_KB="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
RDKAFKA="$(pkg-config --modversion rdkafka 2>/dev/null || dpkg-query -W -f '${Version}' librdkafka1 2>/dev/null || echo unknown)"
JAVA="$(java -version 2>&1 | head -n 1 || true)"

export RESULTS STATUS_FILE LOG_FILE DOC CPU MEM_KB RDKAFKA JAVA RUNS STATUS_COUNT LOG_COUNT
export NPROC="$(nproc)" KERNEL="$(uname -sr)" DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
export EMIT_ARGS="${BENCH_EMIT_ARGS:-}" WRITE_DOC="$([ -n "${BENCH_NO_DOC:-}" ] && echo 0 || echo 1)"
export KAFKA_DESC="$([ -n "${BENCH_BOOTSTRAP:-}" ] && echo "external Kafka at $BENCH_BOOTSTRAP" \
    || echo "Apache Kafka 3.9.1 (KRaft, one combined node on loopback, same machine, -Xmx512m), topics with 6 partitions")"
python3 - <<'EOF'
import os, re, statistics

env = os.environ
rows = {}
for line in open(env["RESULTS"]):
    label, summary = line.rstrip("\n").split("\t", 1)
    f = dict(re.findall(r"([a-z_]+)=([0-9.]+)", summary))
    sent, nbytes, elapsed = int(f["sent"]), int(f["bytes"]), float(f["elapsed"].rstrip("s"))
    rows.setdefault(label, []).append((sent / elapsed, nbytes / elapsed / 1e6, elapsed, sent, nbytes))

def size(path):
    n = sum(1 for _ in open(path, "rb"))
    return os.path.getsize(path) / max(n, 1)

inputs = {"status": ("status events (every type but log.*)", env["STATUS_FILE"]),
          "logchunk": ("log.chunk events", env["LOG_FILE"])}
table = ["| input | events | avg record | runs | median events/s | median MB/s | events/s min-max |",
         "|---|---:|---:|---:|---:|---:|---:|"]
print()
for label, (desc, path) in inputs.items():
    r = rows[label]
    eps = [x[0] for x in r]; mbs = [x[1] for x in r]
    line = "| %s | %s | %s B | %d | **%s** | **%.1f** | %s-%s |" % (
        desc, format(r[0][3], ","), format(round(size(path)), ","), len(r),
        format(round(statistics.median(eps)), ","), statistics.median(mbs),
        format(round(min(eps)), ","), format(round(max(eps)), ","))
    table.append(line)
    print("%-10s median %10s events/s  %7.1f MB/s   (runs: %s)" % (
        label, format(round(statistics.median(eps)), ","), statistics.median(mbs),
        ", ".join(format(round(x), ",") for x in eps)))

if env["WRITE_DOC"] != "1":
    raise SystemExit(0)

mem_gib = int(env["MEM_KB"]) / 1024 / 1024
cmd = "make bench" + ("  (BENCH_EMIT_ARGS=%r)" % env["EMIT_ARGS"] if env["EMIT_ARGS"] else "")
section = "\n".join([
    "<!-- bench:ingest:begin (written by bench/ingest.sh; edits inside these markers are overwritten) -->",
    "## Ingest: firehose-emit to Kafka",
    "",
    "- Command: `%s` (bench/ingest.sh: `bin/firehose-emit --brokers 127.0.0.1:PORT FILE`, %s runs per input after a warm-up run)" % (cmd, env["RUNS"]),
    "- Date: %s" % env["DATE"],
    "- Machine: %s CPUs (%s), %.1f GiB RAM, %s" % (env["NPROC"], env["CPU"] or "unknown CPU", mem_gib, env["KERNEL"]),
    "- Software: librdkafka %s; %s; %s" % (env["RDKAFKA"], env["KAFKA_DESC"], env["JAVA"]),
    "- Inputs: bin/firehose-sim (profile mozilla-2010: status events with --logs=false, and its log.chunk events), generated once into build/bench/; events/s = sent / elapsed and "
    "MB/s = bytes / elapsed / 10^6, both from firehose-emit's summary line (elapsed as firehose-emit reports it).",
    "- Goal (DESIGN.md): at least 200,000 events/s. Kafka runs on the same two cores as firehose-emit.",
    "",
] + table + ["", "<!-- bench:ingest:end -->"])

doc = env["DOC"]
text = open(doc).read() if os.path.exists(doc) else (
    "# Performance\n\nMeasured with `make bench`; each section is rewritten by the benchmark that owns it.\n")
pat = re.compile(r"<!-- bench:ingest:begin.*?<!-- bench:ingest:end -->", re.S)
if pat.search(text):
    text = pat.sub(lambda m: section, text)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
with open(doc + ".tmp", "w") as f:
    f.write(text)
os.replace(doc + ".tmp", doc)
print("\nwrote the ingest section of %s" % doc)
EOF
say "done in $((SECONDS - T0)) s"
