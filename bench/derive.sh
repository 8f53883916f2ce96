#!/usr/bin/env bash
# Derived events benchmark: how much derivation (broker/view/derive*.c) costs the view. The same
# input (tests/integration/gen_events.py, log.chunk left out) is put on fresh topics once; then
# brokers with a fresh view file each catch up on it from offset 0, with derive.enabled=false and
# =true alternating (off, on, off, on, ...), BENCH_DERIVE_RUNS times each. Each "on" run gets its
# own empty derived topic (so every run derives and produces everything, nothing is suppressed
# by ids read back). The apply rate is the records the view applied between its first and its
# last poll (every 50 ms, /api/v1/pending as_of) over that time; beside it the CPU time of the
# view thread over the whole catch-up. Writes docs/performance.md
# between the bench:derive markers.
#
#   bash bench/derive.sh
#
# Knobs (environment): BENCH_DERIVE_EVENTS (200000), BENCH_DERIVE_RUNS (3),
#   BENCH_KAFKA_STATE (a Kafka already started with `tests/kafka/kafka.sh start DIR`),
#   BENCH_NO_DOC=1 (do not touch docs/performance.md).
# Time with the defaults: about 3-4 minutes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
EMIT="$ROOT/bin/firehose-emit"
BROKER="$ROOT/bin/firehose-broker"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
GEN="$ROOT/tests/integration/gen_events.py"
DOC="$ROOT/docs/performance.md"
N="${BENCH_DERIVE_EVENTS:-200000}"
RUNS="${BENCH_DERIVE_RUNS:-3}"

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ -x "$EMIT" ] && [ -x "$BROKER" ] || die "bin/ is incomplete: run make"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-derive.XXXXXX")"
STATE=""
cleanup() {
    if [ -n "$STATE" ]; then
        "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true
        rm -rf "$STATE"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${BENCH_KAFKA_STATE:-}" ]; then
    KSTATE="$BENCH_KAFKA_STATE"
    BOOTSTRAP="$("$KAFKA_SH" status "$KSTATE")" || die "no Kafka running in $KSTATE"
else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-kafka.XXXXXX")"
    KSTATE="$STATE"
    BOOTSTRAP="$(KAFKA_WATCH_PID=$$ "$KAFKA_SH" start "$STATE")"
fi
PREFIX="bench-derive-$$-$(date +%s)"
specs=("$PREFIX.events:6" "$PREFIX.logs:6" "$PREFIX.dlq:1")
for i in $(seq 1 "$RUNS"); do specs+=("$PREFIX.derived.$i:6"); done
"$KAFKA_SH" create-topics "$KSTATE" "${specs[@]}" 2>/dev/null

say "generating and producing $N events"
python3 "$GEN" --count "$N" --seed 15 --exclude-types log.chunk \
    --start "$(date -u +%Y-%m-%dT%H:00:00Z)" >"$WORK/in.ndjson"
"$EMIT" --brokers "$BOOTSTRAP" --topic-events "$PREFIX.events" --topic-logs "$PREFIX.logs" \
    --topic-dlq "$PREFIX.dlq" -q "$WORK/in.ndjson"

python3 - "$BROKER" "$BOOTSTRAP" "$PREFIX" "$WORK" "$N" "$RUNS" >"$WORK/section.md" <<'PY'
import json, os, re, statistics, subprocess, sys, time, urllib.request
broker, bootstrap, prefix, work, n, runs = sys.argv[1:7]
n, runs = int(n), int(runs)

def poll(url):
    with urllib.request.urlopen(url + "api/v1/pending?limit=1", timeout=10) as r:
        return json.load(r)["as_of"]

def view_cpu_s(pid):
    """CPU seconds (user + system) of the broker's view thread (fh-view) so far."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            if open("/proc/%d/task/%s/comm" % (pid, tid)).read().strip() == "fh-view":
                f = open("/proc/%d/task/%s/stat" % (pid, tid)).read().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return float("nan")

def run(on, i):
    log = os.path.join(work, "broker-%s-%d.log" % ("on" if on else "off", i))
    args = [broker, "--brokers", bootstrap, "--listen=127.0.0.1:0", "--auth.anonymous_read",
            "--topic-events", prefix + ".events", "--topic-logs", prefix + ".logs",
            "--topic-dlq", prefix + ".dlq", "--topic-derived", "%s.derived.%d" % (prefix, i),
            "--topics.create=false", "--webhooks.enabled=false",
            "--kafka.group", "%s-%s-%d" % (prefix, on, i),
            "--view.path", os.path.join(work, "view-%s-%d.db" % (on, i)),
            "--derive.enabled=%s" % ("true" if on else "false")]
    with open(log, "wb") as lf:
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=lf)
    try:
        url = None
        deadline = time.monotonic() + 120
        while not url and time.monotonic() < deadline:
            m = re.search(r"event=http\.listening url=(\S+)", open(log).read())
            url = m.group(1) if m else None
            time.sleep(0.02)
        first = None
        while time.monotonic() < deadline + 600:
            a = poll(url)
            t = time.monotonic()
            if first is None and a["view_offsets"] > 0:
                first = (t, a["view_offsets"])
            if a["view_offsets"] >= n and a["behind"] == 0:
                break
            time.sleep(0.05)
        cpu = view_cpu_s(p.pid)
        emitted = len(re.findall(r"event=derive\.emitted", open(log).read()))
        return (a["view_offsets"] - first[1]) / (t - first[0]), emitted, cpu
    finally:
        p.terminate()
        p.wait(timeout=60)

rates = {False: [], True: []}
cpus = {False: [], True: []}
emitted = []
for i in range(1, runs + 1):
    for on in (False, True):
        r, e, c = run(on, i)
        rates[on].append(r)
        cpus[on].append(c)
        if on:
            emitted.append(e)
        print("bench: derive=%s run %d: %.0f records/s applied, view thread %.2f CPU s%s" % (
            on, i, r, c, ", %d derived events" % e if on else ""), file=sys.stderr)
pair = [rates[True][i] / rates[False][i] for i in range(runs)]
cpair = [cpus[True][i] / cpus[False][i] for i in range(runs)]

def fmt(v, f="{:,.0f}"):
    return "%s (%s-%s)" % (f.format(statistics.median(v)), f.format(min(v)), f.format(max(v)))

off, on = statistics.median(rates[False]), statistics.median(rates[True])
print("## Derived events: view apply rate with derivation on and off\n")
print("- Command: `bash bench/derive.sh` (BENCH_DERIVE_EVENTS=%d, BENCH_DERIVE_RUNS=%d), %s." % (
    n, runs, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
print("- Machine: %s, %d cores (shared with other work); Kafka 3.9 (KRaft, one node, loopback); "
      "topics of 6 partitions." % (os.uname().machine, os.cpu_count()))
print("- Input: %d events of tests/integration/gen_events.py (seed 15, log.chunk left out), produced "
      "once; each run is a broker with a fresh view file catching up on all of it from offset 0 "
      "(webhooks off), off and on alternating; each \"on\" run has its own empty derived topic, so "
      "it derives and produces everything (%s derived events per run)." % (
          n, "/".join(str(e) for e in emitted)))
print("- Rate: records the view applied between its first and its last poll (every 50 ms) over that "
      "time. Median (lowest-highest) of %d runs." % runs)
print("- View thread CPU: user + system seconds of the broker's `fh-view` thread over the whole "
      "catch-up (/proc), the figure least disturbed by other load on the machine.\n")
print("| derive.enabled | view apply rate (records/s) | view thread CPU (s) |")
print("|---|---|---|")
print("| false | %s | %s |" % (fmt(rates[False]), fmt(cpus[False], "{:.2f}")))
print("| true | %s | %s |" % (fmt(rates[True]), fmt(cpus[True], "{:.2f}")))
print("\nOn / off: apply rate %.2fx of the medians, %s per side-by-side pair; view thread CPU "
      "%.2fx of the medians, %s per pair." % (
          on / off, ", ".join("%.2f" % x for x in pair),
          statistics.median(cpus[True]) / statistics.median(cpus[False]),
          ", ".join("%.2f" % x for x in cpair)))
PY
cat "$WORK/section.md"
if [ -z "${BENCH_NO_DOC:-}" ]; then
    python3 "$ROOT/bench/write_section.py" derive "$DOC" <"$WORK/section.md"
fi
