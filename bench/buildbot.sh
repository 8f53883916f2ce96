#!/usr/bin/env bash
# Buildbot master build throughput with and without the firehose integration (bench/buildbot_bench.py).
#
#   flock /tmp/firehose-cpu.lock bash bench/buildbot.sh
#
# Starts Kafka with tests/kafka/kafka.sh (or uses BENCH_BOOTSTRAP), creates bench.events and
# bench.logs, runs BENCH_BB_ROUNDS rounds of (master without the integration, master with it),
# each a fresh master + worker on loopback with sqlite, prints the medians and the slowdown, and
# writes them into docs/performance.md between the bench:buildbot markers (BENCH_NO_DOC=1: not).
#
# Knobs (environment): BENCH_BB_CHANGES (10 changes per run), BENCH_BB_BUILDERS (4 builders per
#   change), BENCH_BB_LINES (2000 log lines per build), BENCH_BB_ROUNDS (3), BENCH_BOOTSTRAP.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
DOC="$ROOT/docs/performance.md"
CHANGES="${BENCH_BB_CHANGES:-10}"
BUILDERS="${BENCH_BB_BUILDERS:-4}"
LINES="${BENCH_BB_LINES:-2000}"
ROUNDS="${BENCH_BB_ROUNDS:-3}"

say() { printf 'bench: %s\n' "$*" >&2; }

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
else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-kafka.XXXXXX")"
    BOOTSTRAP="$(KAFKA_WATCH_PID=$$ "$KAFKA_SH" start "$STATE")"
    "$KAFKA_SH" create-topics "$STATE" bench.events:6 bench.logs:6 2>/dev/null
    say "Kafka $BOOTSTRAP ready"
fi

OUT="$(mktemp "${TMPDIR:-/tmp}/firehose-bench-bb.XXXXXX.json")"
python3 "$ROOT/bench/buildbot_bench.py" --bootstrap "$BOOTSTRAP" --changes "$CHANGES" --builders "$BUILDERS" \
    --lines "$LINES" --rounds "$ROUNDS" >"$OUT"

export OUT DOC WRITE_DOC="$([ -n "${BENCH_NO_DOC:-}" ] && echo 0 || echo 1)"
export CPU="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
export NPROC="$(nproc)" MEM_KB="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" KERNEL="$(uname -sr)"
export DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
export VERSIONS="$(python3 -c 'import buildbot, buildbot_worker, confluent_kafka, importlib.metadata, sys; print("Buildbot %s, buildbot-worker %s, confluent-kafka %s (librdkafka %s), Python %s" % (buildbot.version, buildbot_worker.version, importlib.metadata.version("confluent-kafka"), confluent_kafka.libversion()[0], sys.version.split()[0]))')"
python3 - <<'PYEOF'
import json, os, re
env = os.environ
r = json.load(open(env["OUT"]))
a = r["args"]
med = r["median_builds_per_s"]
def row(label):
    v = [x["builds_per_s"] for x in r["runs"][label]]
    return ("%.2f" % med[label], "%.2f-%.2f" % (min(v), max(v)), "%.0f" % r["median_cpu_ms_per_build"][label],
            "%.0f" % r["median_reactor_cpu_ms_per_build"][label],
            ", ".join("%.1f s" % x["elapsed_s"] for x in r["runs"][label]))
lines = [
    "## Buildbot: master build throughput with and without the integration",
    "",
    "- Command: `flock /tmp/firehose-cpu.lock bash bench/buildbot.sh` (bench/buildbot_bench.py: %d rounds, "
    "each a fresh master + worker without the integration, then with it; per run %d changes sent in one burst, "
    "each building on %d builders, %d builds, each build printing %d log lines, setting a property, 3 steps; "
    "timed from the first change to the last finished build)" % (a["rounds"], a["changes"], a["builders"],
                                                               a["changes"] * a["builders"], a["lines"]),
    "- Date: %s" % env["DATE"],
    "- Machine: %s CPUs (%s), %.1f GiB RAM, %s; Kafka (KRaft, one node on loopback) on the same cores; "
    "master sqlite DB, one worker, all on the same machine" % (env["NPROC"], env["CPU"], int(env["MEM_KB"]) / 1048576, env["KERNEL"]),
    "- Software: %s" % env["VERSIONS"],
    "- Goal: the integration costs at most 5% of the master's build throughput.",
    "",
    "| master | median builds/s | min-max builds/s | master process CPU ms/build | reactor thread CPU ms/build | run times |",
    "|---|---:|---:|---:|---:|---|",
    "| without the integration | %s | %s | %s | %s | %s |" % row("off"),
    "| with the integration (to Kafka) | %s | %s | %s | %s | %s |" % row("on"),
    "",
    "**Throughput ratio with/without: %.3f of the medians (%.1f%% %s); per round (with / without of the same "
    "round): %s, median %.3f.** Master CPU per build (medians): %+.1f%% for the process (librdkafka's "
    "threads included), %+.1f%% for the reactor thread. Events delivered per run with the integration: %s; "
    "dropped: %d. CPU times come from /proc (utime + stime) over the timed window."
    % (med["on"] / med["off"], abs(r["slowdown_pct"]), "slower" if r["slowdown_pct"] > 0 else "faster",
       ", ".join("%.3f" % x for x in r["paired_ratios"]), r["median_paired_ratio"],
       (r["median_cpu_ms_per_build"]["on"] / r["median_cpu_ms_per_build"]["off"] - 1) * 100,
       (r["median_reactor_cpu_ms_per_build"]["on"] / r["median_reactor_cpu_ms_per_build"]["off"] - 1) * 100,
       ", ".join(str(x) for x in r["events_per_run"]), r["dropped"]),
    "",
]
section = "\n".join(lines)
print(section)
if env["WRITE_DOC"] == "1":
    doc = open(env["DOC"]).read()
    begin = "<!-- bench:buildbot:begin (written by bench/buildbot.sh; edits inside these markers are overwritten) -->"
    end = "<!-- bench:buildbot:end -->"
    block = begin + "\n" + section + "\n" + end
    if re.search(r"<!-- bench:buildbot:begin.*?-->", doc):
        doc = re.sub(r"<!-- bench:buildbot:begin.*?<!-- bench:buildbot:end -->", lambda m: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    open(env["DOC"], "w").write(doc)
PYEOF
rm -f "$OUT"
