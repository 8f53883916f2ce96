#!/usr/bin/env bash
# Catch-up benchmark: subscribers reading a backlog from Kafka's beginning while live subscribers
# keep receiving new events; two broker binaries side by side in one run.
#
#   bash bench/catchup.sh                       (this tree's bin/firehose-broker against CATCHUP_BASE)
#   CATCHUP_BROKER_B=/path/to/firehose-broker bash bench/catchup.sh
#
# Real Apache Kafka (tests/kafka/kafka.sh, one KRaft node on 127.0.0.1). The backlog is
# CATCHUP_EVENTS status events (firehose-sim --profile mozilla-2010 --builders 1000, no logs),
# produced once with firehose-emit before any broker starts; no producer runs during a catch-up
# but the live one. Each run starts a fresh broker (stream only: view and webhooks off) on the
# same topics, then:
#   live:     CATCHUP_LIVE filtered WebSocket clients from "latest" (build/bench/loadclient), fed by
#             build/bench/pacer at CATCHUP_LIVE_RATE events/s stamped with their send time, so
#             their p99 is the live subscribers' latency while the catch-up runs;
#   catch-up: one set of clients subscribing with "from":"earliest" that read the whole backlog
#             (and the live events produced meanwhile): CATCHUP_FULL full-stream clients, and in
#             a second phase of the same run CATCHUP_FILTERED clients filtering one builder each.
# Reported per phase: aggregate deliveries/s of the catch-up clients (their deliveries over first
# to last delivery), the broker's CPU (utime+stime from /proc/PID/stat over that window) and
# deliveries per broker CPU-second, and the live clients' p50/p99 over the same window. Runs
# alternate A, B, A, B, ... (CATCHUP_RUNS each) so both share the machine's noise; each figure is
# the median with its range, and the ratio A/B. Writes the table into docs/performance.md between
# the bench:catchup markers unless CATCHUP_NO_DOC=1.
#
# Knobs: CATCHUP_EVENTS (2000000), CATCHUP_FULL (10), CATCHUP_FILTERED (1000), CATCHUP_LIVE (100),
#   CATCHUP_LIVE_RATE (1000), CATCHUP_RUNS (3), CATCHUP_BASE (5610376, the commit before the
#   broker's redesign; built into build/bench/base-SHA/), CATCHUP_BROKER_A (bin/firehose-broker),
#   CATCHUP_BROKER_B, CATCHUP_ARGS_A / CATCHUP_ARGS_B (extra broker arguments), CATCHUP_SKIP
#   ("filtered" skips the filtered phase), CATCHUP_MAX_S (300: each catch-up phase ends by then; a
#   phase that has not delivered everything is reported over that window and marked "did not
#   finish in N s"), CATCHUP_NO_DOC=1.
# Disk: the backlog file is ~650 B per event (1.3 GB at the default, cached in build/bench/) and
# Kafka keeps about as much in its temporary state directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
DATA="$ROOT/build/bench"
DOC="$ROOT/docs/performance.md"
LC="$DATA/loadclient"
PACER="$DATA/pacer"
EVENTS="${CATCHUP_EVENTS:-2000000}"
FULL="${CATCHUP_FULL:-10}"
FILTERED="${CATCHUP_FILTERED:-1000}"
LIVE="${CATCHUP_LIVE:-100}"
LIVE_RATE="${CATCHUP_LIVE_RATE:-1000}"
RUNS="${CATCHUP_RUNS:-3}"
MAX_S="${CATCHUP_MAX_S:-300}"
BASE="${CATCHUP_BASE:-5610376}"
BROKER_A="${CATCHUP_BROKER_A:-$ROOT/bin/firehose-broker}"
SKIP=" ${CATCHUP_SKIP:-} "
read -r -a ARGS_A <<<"${CATCHUP_ARGS_A:-}"
read -r -a ARGS_B <<<"${CATCHUP_ARGS_B:-}"

say() { printf 'catchup: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$BROKER_A" ] || die "$BROKER_A is missing: run make"
make -C "$ROOT" --no-print-directory -s fanout-tools >&2
mkdir -p "$DATA"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

if [ -n "${CATCHUP_BROKER_B:-}" ]; then
    BROKER_B="$CATCHUP_BROKER_B"; NAME_B="$BROKER_B"
else
    BROKER_B="$(base_broker "$BASE")" || die "CATCHUP_BASE=$BASE: no base broker"
    NAME_B="commit $(git -C "$ROOT" rev-parse --short=7 "$BASE^{commit}")"
fi
[ -x "$BROKER_B" ] || die "$BROKER_B is missing"

bench_run_setup catchup

bench_kafka_start
"$KAFKA_SH" create-topics "$STATE" cu.events:6 cu.logs:1 cu.dlq:1 cu.derived:6 >/dev/null 2>&1
say "Kafka $BOOTSTRAP"
bench_fanout_input   # the live input (INPUT) and the builder names (BUILDERS)

BACKLOG="$DATA/catchup-events-$EVENTS.ndjson"
if [ ! -s "$BACKLOG" ] || [ "$BACKLOG" -ot "$ROOT/bin/firehose-sim" ]; then
    say "generating $BACKLOG"
    "$ROOT/bin/firehose-sim" -q --profile mozilla-2010 --builders 1000 --logs=false \
        --count "$EVENTS" --seed 8 >"$BACKLOG.tmp"
    mv "$BACKLOG.tmp" "$BACKLOG"
fi
t0=$SECONDS
"$ROOT/bin/firehose-emit" --brokers "$BOOTSTRAP" --topic-events cu.events --topic-logs cu.logs \
    --topic-dlq cu.dlq -X linger.ms=20 "$BACKLOG" 2>"$RUN/emit.err" \
    || die "firehose-emit failed: $(tail -n 3 "$RUN/emit.err")"
say "backlog: $EVENTS events in Kafka in $((SECONDS - t0)) s"
# What the catch-up clients must receive before they are done: every backlog event for each
# full-stream client, and for the filtered ones (client i filters builder i mod the list) the
# backlog events of their builders. Live events keep coming, so "quiet" never ends a catch-up.
WANT_FULL=$((FULL * EVENTS))
WANT_FILTERED="$(python3 - "$BACKLOG" "$BUILDERS" "$FILTERED" <<'PY'
import collections, re, sys
pat = re.compile(rb'"builder":"([^"]*)"')
count = collections.Counter()
with open(sys.argv[1], "rb") as f:
    for line in f:
        m = pat.search(line)
        if m:
            count[m.group(1).decode()] += 1
names = [l.strip() for l in open(sys.argv[2]) if l.strip()]
print(sum(count[names[i % len(names)]] for i in range(int(sys.argv[3]))))
PY
)"
say "catch-up deliveries per phase: full $WANT_FULL, filtered $WANT_FILTERED"

FIRST=0   # the next live input record: runs do not repeat records

# start_broker NAME BINARY ARGS...: starts it on the cu.* topics; sets BPID, URL, WS.
start_broker() {
    local name="$1" bin="$2" dir="$RUN/$1-$RANDOM"; shift 2
    mkdir -p "$dir"; BLOG="$dir/broker.log"; BDIR="$dir"
    "$bin" --brokers "$BOOTSTRAP" --listen 127.0.0.1:0 --kafka.group "cu-$name-$RANDOM" \
        --topic-events cu.events --topic-logs cu.logs --topic-dlq cu.dlq --topics.create=false \
        --view.enabled=false --webhooks.enabled=false --auth.anonymous_read \
        --stream.max_connections=5000 --http.max_connections=5000 \
        --stream.catchup_max=$((FULL + FILTERED + 10)) \
        --broker.stats_interval_ms=600000 "$@" 2>"$BLOG" &
    BPID=$!; PIDS+=("$BPID")
    bench_await_broker "$name" "$BPID" "$BLOG"
    WS="ws://${URL#http://}v1/stream"
}

# loadclient OUT ARGS...: starts build/bench/loadclient in the background, waits until every
# connection is subscribed; sets LCPID.
loadclient() {
    local out="$1"; shift
    "$LC" --url "$WS" --builders "$BUILDERS" --threads 1 --ready-file "$out.ready" "$@" \
        >"$out" 2>"$out.err" &
    LCPID=$!; PIDS+=("$LCPID")
    for _ in $(seq 600); do [ -e "$out.ready" ] && break; kill -0 "$LCPID" 2>/dev/null || break; sleep 0.1; done
    [ -e "$out.ready" ] || die "loadclient did not subscribe: $(tail -n 3 "$out.err")"
}

# phase KIND (full|filtered): one catch-up with the live clients and the live producer running;
# prints "deliveries_per_s cpu_ticks deliveries live_p50 live_p99 finished" (finished: 1 when the
# clients got every catch-up delivery within CATCHUP_MAX_S, else 0).
phase() {
    local kind="$1" n_full=0 n_filt=0 want
    if [ "$kind" = full ]; then n_full="$FULL" want="$WANT_FULL"; else n_filt="$FILTERED" want="$WANT_FILTERED"; fi
    loadclient "$BDIR/live-$kind.out" --filtered "$LIVE" --full 0 --max-s 900 --quiet-ms 3000
    local livepid="$LCPID"
    # the live producer runs until the catch-up ends (bounded by its duration)
    "$PACER" --brokers "$BOOTSTRAP" --input "$INPUT" --rate "$LIVE_RATE" --duration 600 \
        --first "$FIRST" --topic cu.events >"$BDIR/pacer-$kind.out" 2>>"$RUN/pacer.err" &
    local pacerpid=$!; PIDS+=("$pacerpid")
    # its SIGINT handler is in place once it has loaded the input (a background job starts with
    # SIGINT ignored: an earlier kill -INT would be lost and the phase would wait out --duration)
    local _
    for _ in $(seq 600); do
        (( 0x$(sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$pacerpid/status" 2>/dev/null || echo 0) & 2 )) && break
        kill -0 "$pacerpid" 2>/dev/null || break
        sleep 0.1
    done
    local c0; c0="$(ticks "$BPID")"
    loadclient "$BDIR/cu-$kind.out" --filtered "$n_filt" --full "$n_full" --from '"earliest"' \
        --total "$want" --max-s "$MAX_S" --quiet-ms 0
    wait "$LCPID" 2>/dev/null || true
    local c1; c1="$(ticks "$BPID")"
    kill -INT "$pacerpid" 2>/dev/null || true; wait "$pacerpid" 2>/dev/null || true
    local sent; sent="$(kv "$(cat "$BDIR/pacer-$kind.out")" sent)"; FIRST=$((FIRST + ${sent:-0}))
    kill -TERM "$livepid" 2>/dev/null || true; wait "$livepid" 2>/dev/null || true
    local cu live; cu="$(cat "$BDIR/cu-$kind.out")"; live="$(cat "$BDIR/live-$kind.out")"
    # the broker's CPU over the catch-up clients' life (subscribe to quiet end): the quiet tail
    # is idle time, so the rate is per CPU-second of the whole window
    say "  $kind: deliveries=$(kv "$cu" deliveries) deliveries_per_s=$(kv "$cu" deliveries_per_s)" \
        "cpu_ticks=$((c1 - c0)) disconnects=$(kv "$cu" disconnects) live_p99_ms=$(kv "$live" p99_ms)" \
        "live_samples=$(kv "$live" samples)"
    [ "$(kv "$cu" disconnects)" = 0 ] || say "  $kind: catch-up clients were disconnected: $cu"
    local done=1
    [ "$(kv "$cu" deliveries)" -ge "$want" ] 2>/dev/null || done=0
    [ "$done" = 1 ] || say "  $kind: did not finish in $MAX_S s ($(kv "$cu" deliveries) of $want)"
    echo "$(kv "$cu" deliveries_per_s) $((c1 - c0)) $(kv "$cu" deliveries) $(kv "$live" p50_ms) $(kv "$live" p99_ms) $done"
}

# crashed NAME BINARY KIND [ARGS...]: when the broker exited during phase KIND (the base has
# crashed at the end of a catch-up it did not finish), says so, counts it in CRASHES for the
# section and, given ARGS, starts a fresh broker for the next phase.
CRASHES="$RUN/crashes.txt"
: >"$CRASHES"
crashed() {
    local name="$1" bin="$2" kind="$3" rc=0; shift 3
    kill -0 "$BPID" 2>/dev/null && return 0
    wait "$BPID" 2>/dev/null || rc=$?
    say "  $name: the broker exited (status $rc) during the $kind phase; its log: $BLOG"
    echo "$name $kind $rc" >>"$CRASHES"
    [ "$kind" = full ] && start_broker "$name" "$bin" "$@"
    return 0
}

# one_run NAME BINARY ARGS...: appends "NAME KIND dps ticks deliveries p50 p99" lines to RESULTS
RESULTS="$RUN/results.txt"
: >"$RESULTS"
one_run() {
    local name="$1" bin="$2"; shift 2
    start_broker "$name" "$bin" "$@"
    say "$name ($bin)"
    echo "$name full $(phase full)" >>"$RESULTS"
    case "$SKIP" in *" filtered "*) ;; *)
        crashed "$name" "$bin" full "$@"
        echo "$name filtered $(phase filtered)" >>"$RESULTS" ;; esac
    crashed "$name" "$bin" filtered
    kill -TERM "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null || true
}

for r in $(seq 1 "$RUNS"); do
    say "run $r of $RUNS"
    one_run A "$BROKER_A" "${ARGS_A[@]}"
    one_run B "$BROKER_B" "${ARGS_B[@]}"
done

export HZ="$(getconf CLK_TCK)" EVENTS FULL FILTERED LIVE LIVE_RATE RUNS NAME_B MAX_S
export DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" HEAD_NAME="$(git -C "$ROOT" rev-parse --short=7 HEAD 2>/dev/null || echo tree)"
export ARGS_A_TEXT="${CATCHUP_ARGS_A:-}" ARGS_B_TEXT="${CATCHUP_ARGS_B:-}"
PYTHONPATH="$ROOT/bench" python3 - "$RESULTS" "$CRASHES" >"$RUN/section.md" <<'PY'
import os, sys
import stats
e = os.environ
hz = float(e["HZ"])
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 7:
        continue
    name, kind, dps, ticks, n, p50, p99 = f[:7]
    cpu_s = float(ticks) / hz
    rows.setdefault((kind, name), []).append({
        "dps": float(dps), "cpu_s": cpu_s, "per_cpu_s": float(n) / cpu_s if cpu_s else None,
        "p50": float(p50), "p99": float(p99), "done": len(f) < 8 or f[7] == "1"})
def col(kind, name, key):
    return [r[key] for r in rows.get((kind, name), [])]
import statistics
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def unfinished(kind, name):
    n = sum(1 for r in rows.get((kind, name), []) if not r["done"])
    if not n:
        return ""
    return " (%s did not finish in %s s: rate over that window)" % (
        "all runs" if n == len(rows[(kind, name)]) else "%d run%s" % (n, "s" if n > 1 else ""), e["MAX_S"])
print("## Catch-up: subscribers reading a backlog while live subscribers keep up")
print()
print("- Command: `bash bench/catchup.sh` (CATCHUP_RUNS=%s; a backlog of %s status events in Kafka,"
      " no producer but the live one: %s filtered live clients fed %s events/s)"
      % (e["RUNS"], stats.num(int(e["EVENTS"])), e["LIVE"], e["LIVE_RATE"]))
print("- Machine: %s; date %s; Kafka, the producer, the clients and the broker on the same cores"
      % (stats.machine(), e["DATE"]))
print("- A: this tree (%s)%s; B: %s%s; runs alternate A, B"
      % (e["HEAD_NAME"], (" with `%s`" % e["ARGS_A_TEXT"]) if e["ARGS_A_TEXT"] else "",
         e["NAME_B"], (" with `%s`" % e["ARGS_B_TEXT"]) if e["ARGS_B_TEXT"] else ""))
print()
print("| catch-up clients | figure | A (this tree) | B (base) | A/B |")
print("|---|---|---|---|---|")
for kind, label in (("full", "%s full-stream" % e["FULL"]), ("filtered", "%s filtered" % e["FILTERED"])):
    if not rows.get((kind, "A")):
        continue
    for key, fig, prec in (("dps", "aggregate deliveries/s", 0), ("per_cpu_s", "deliveries per broker CPU-second", 0),
                           ("cpu_s", "broker CPU, s", 1), ("p99", "live subscribers' p99, ms", 2)):
        a, b = col(kind, "A", key), col(kind, "B", key)
        print("| %s | %s | %s | %s | %s |" % (label, fig, stats.med_range(a, prec, bold=True) + unfinished(kind, "A"),
                                              stats.med_range(b, prec) + unfinished(kind, "B"),
                                              stats.ratio(med(a), med(b)) or "n/a"))
crashes = [l.split() for l in open(sys.argv[2]) if l.strip()]
if crashes:
    print()
    print("Broker exits during a phase (its figures are what the clients got until then; a fresh "
          "broker ran the next phase): " + ", ".join("%s, %s phase (status %s)" % tuple(c[:3]) for c in crashes) + ".")
PY
cat "$RUN/section.md"
if [ -z "${CATCHUP_NO_DOC:-}" ]; then
    python3 "$ROOT/bench/write_section.py" catchup "$DOC" <"$RUN/section.md"
fi
