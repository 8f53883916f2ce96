#!/usr/bin/env bash
# Broker CPU per ingested event, two broker binaries side by side in one run.
#
#   bash bench/cpu.sh                       (this tree's bin/firehose-broker against CPU_BASE)
#   CPU_BASE=5610376 bash bench/cpu.sh      (the base: a commit, built into build/bench/base-SHA/)
#   CPU_BROKER_B=/path/to/firehose-broker bash bench/cpu.sh   (or any built binary)
#
# Real Apache Kafka (tests/kafka/kafka.sh, one KRaft node on 127.0.0.1). Every run gets topics
# of its own (6 partitions), a fresh view file, a fresh webhook store and fresh consumer groups,
# so each broker starts on an empty topic and reads exactly the run's records. With everything on,
# as a deployment runs it:
#   - the view (view.enabled, the default), deriving events when the broker can (its derived topic
#     is created too; CPU_ARGS_A="--derive.enabled=false" compares the same work as a base without
#     derivation),
#   - webhooks: CPU_ENDPOINTS endpoints on bench/webhook_sink.c, endpoint i filtering
#     {"type":["build.finished"]} (so the deliveries are a fraction of the input, as with real
#     subscriptions, and the delivery path is not what is measured),
#   - the stream: build/bench/loadclient with CPU_FILTERED filtered + CPU_FULL full-stream
#     WebSocket clients (bench/fanout/loadclient.c).
# The input is the fan-out benchmark's (firehose-sim --profile mozilla-2010 --builders 1000,
# status events, cached in build/bench/). build/bench/pacer produces CPU_EVENTS_PER_S events/s
# for CPU_SECONDS s; the broker's CPU (utime+stime of /proc/PID/stat) is taken from the first
# record produced until the view has applied every record, every webhook delivery is acknowledged
# and the stream clients have every event, then divided by the records produced. Runs alternate
# A, B, A, B, ... (CPU_RUNS each) after one unreported warm-up run of each, so the two share the
# machine's noise. Prints each figure as the median with its range, and the ratio B/A of the
# medians; writes the table into docs/performance.md between the bench:cpu markers unless
# CPU_NO_DOC=1.
#
# Knobs: CPU_RUNS (3), CPU_SECONDS (20), CPU_EVENTS_PER_S (10000), CPU_FILTERED (100), CPU_FULL
#   (2), CPU_ENDPOINTS (1), CPU_BASE (5610376), CPU_BROKER_A (bin/firehose-broker),
#   CPU_BROKER_B (the base's broker), CPU_ARGS_A / CPU_ARGS_B (extra broker arguments),
#   CPU_NO_DOC=1, CPU_PERF_DIR (perf record -g of each run's measured window into DIR/NAME.data).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
DATA="$ROOT/build/bench"
DOC="$ROOT/docs/performance.md"
LC="$DATA/loadclient"
PACER="$DATA/pacer"
RUNS="${CPU_RUNS:-3}"
SECS="${CPU_SECONDS:-20}"
RATE="${CPU_EVENTS_PER_S:-10000}"
FILTERED="${CPU_FILTERED:-100}"
FULL="${CPU_FULL:-2}"
ENDPOINTS="${CPU_ENDPOINTS:-1}"
BASE="${CPU_BASE:-5610376}"
BROKER_A="${CPU_BROKER_A:-$ROOT/bin/firehose-broker}"
read -r -a ARGS_A <<<"${CPU_ARGS_A:-}"
read -r -a ARGS_B <<<"${CPU_ARGS_B:-}"
TOKEN="cpu-bench-$$"

say() { printf 'cpu: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

[ -x "$BROKER_A" ] || die "$BROKER_A is missing: run make"
make -C "$ROOT" --no-print-directory -s fanout-tools >&2
mkdir -p "$DATA"
cc -O2 -Wall -Wextra -Werror -o "$DATA/webhook_sink" "$ROOT/bench/webhook_sink.c"

if [ -n "${CPU_BROKER_B:-}" ]; then
    BROKER_B="$CPU_BROKER_B"
    BASE_NAME="$BROKER_B"
else
    BROKER_B="$(base_broker "$BASE")" || die "CPU_BASE=$BASE: no base broker"
    BASE_NAME="commit $(git -C "$ROOT" rev-parse --short=7 "$BASE^{commit}")"
fi
[ -x "$BROKER_B" ] || die "$BROKER_B is missing"

bench_run_setup cpu

bench_kafka_start
say "Kafka $BOOTSTRAP"

bench_fanout_input

"$DATA/webhook_sink" 0 </dev/null >"$RUN/sink.out" &
PIDS+=("$!")
for _ in $(seq 100); do grep -q '^port=' "$RUN/sink.out" 2>/dev/null && break; sleep 0.05; done
SINK_PORT="$(sed -n 's/^port=//p' "$RUN/sink.out")"
[ -n "$SINK_PORT" ] || die "the webhook receiver did not start"

# metric NAME...: the sum of the named series (all their labels)
metric() { curl -sf "${URL}metrics" | awk -v n=" $* " 'index(n, " " $1 " ") {s += $2} END {printf "%d\n", s}'; }

FIRST=0   # the next input record: runs do not repeat records
# one_run NAME BINARY ARGS...: prints "ticks sent finished" for one run
one_run() {
    local name="$1" bin="$2"; shift 2
    local p="cpu$$-$name-$RANDOM" dir="$RUN/$name-$RANDOM" log pid lcpid pline c0 c1 sent bf want
    mkdir -p "$dir"; log="$dir/broker.log"
    : >"$log" # exists before the broker starts: the wait below reads it at once (set -e, pipefail)
    "$KAFKA_SH" create-topics "$STATE" "$p.events:6" "$p.logs:1" "$p.dlq:1" "$p.derived:6" \
        "$p.wh-endpoints:1+cleanup.policy=compact" "$p.wh-deliveries:6+cleanup.policy=compact,delete" \
        >/dev/null 2>&1
    local derived=()   # a broker that derives events gets its topic (older ones have none)
    if "$bin" --help 2>&1 | grep -q -- '--topic-derived'; then derived=(--topic-derived "$p.derived"); fi
    # a broker that keeps webhook state in Kafka gets its topics and a key (older ones have none)
    if "$bin" --help 2>&1 | grep -q -- 'webhooks.secret_key'; then
        derived+=(--topics.webhook_endpoints="$p.wh-endpoints" --topics.webhook_deliveries="$p.wh-deliveries"
                  --webhooks.secret_key="$(openssl rand -hex 32)" --webhooks.migrate_from=)
    fi
    "$bin" --brokers "$BOOTSTRAP" --listen 127.0.0.1:0 --kafka.group "$p-ingest" \
        --topic-events "$p.events" --topic-logs "$p.logs" --topic-dlq "$p.dlq" --topics.create=false \
        --view.path="$dir/view.db" --webhooks.path="$dir/webhooks.db" --webhooks.group="$p-wh" \
        --webhooks.allow_cidrs=127.0.0.1/32 --auth.admin_token="$TOKEN" --auth.anonymous_read \
        --stream.max_connections=5000 --http.max_connections=5000 \
        --broker.stats_interval_ms=600000 "${derived[@]}" "$@" 2>"$log" &
    pid=$!; PIDS+=("$pid")
    bench_await_broker "$name" "$pid" "$log"
    for i in $(seq 1 "$ENDPOINTS"); do
        curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
            -d "{\"url\":\"http://127.0.0.1:$SINK_PORT/ep/$i\",\"filter\":{\"type\":[\"build.finished\"]}}" \
            "${URL}api/v1/webhooks" || die "$name: creating endpoint $i failed"
    done
    local ws="ws://${URL#http://}v1/stream"
    "$LC" --url "$ws" --builders "$BUILDERS" --filtered "$FILTERED" --full "$FULL" --threads 1 \
        --max-s "$((SECS + 120))" --quiet-ms 2000 --ready-file "$dir/ready" \
        >"$dir/lc.out" 2>"$dir/lc.err" &
    lcpid=$!; PIDS+=("$lcpid")
    for _ in $(seq 600); do [ -e "$dir/ready" ] && break; kill -0 "$lcpid" 2>/dev/null || break; sleep 0.1; done
    [ -e "$dir/ready" ] || die "$name: the stream clients did not subscribe: $(tail -n 3 "$dir/lc.err")"
    # the webhook consumer group must hold its partitions before the first record
    for _ in $(seq 300); do
        grep -q 'webhook.partitions change=assigned\|webhook.caught_up' "$log" && break
        sleep 0.1
    done
    sleep 1
    local perfpid=""
    if [ -n "${CPU_PERF_DIR:-}" ]; then
        mkdir -p "$CPU_PERF_DIR"
        perf record -q -F 499 ${CPU_PERF_ARGS:--g} -p "$pid" -o "$CPU_PERF_DIR/$name.data" >/dev/null 2>&1 &
        perfpid=$!
    fi
    c0="$(ticks "$pid")"
    pline="$("$PACER" --brokers "$BOOTSTRAP" --input "$INPUT" --rate "$RATE" --duration "$SECS" \
        --first "$FIRST" --topic "$p.events" 2>>"$RUN/pacer.err" || true)"
    sent="$(kv "$pline" sent)"; sent="${sent:-0}"; FIRST=$((FIRST + sent))
    bf="$(sed -n "$((FIRST - sent + 1)),${FIRST}p" "$INPUT" | grep -c '"type":"build.finished"' || true)"
    want=$((bf * ENDPOINTS))
    local deadline=$((SECONDS + 180)) applied delivered
    while :; do
        # every record the view took: applied, or set aside as a duplicate, skipped or invalid
        applied="$(metric firehose_view_events_applied_total firehose_view_duplicates_total \
            firehose_view_skipped_total firehose_view_invalid_total)"
        delivered="$(metric firehose_webhook_delivered_total)"
        if [ "$applied" -ge "$sent" ] && [ "$delivered" -ge "$want" ] && ! kill -0 "$lcpid" 2>/dev/null; then
            break
        fi
        [ $SECONDS -lt $deadline ] || die "$name: stuck: applied=$applied/$sent delivered=$delivered/$want"
        sleep 0.05
    done
    c1="$(ticks "$pid")"
    [ -z "$perfpid" ] || { kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true; }
    wait "$lcpid" 2>/dev/null || true
    local lline; lline="$(cat "$dir/lc.out")"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    say "$name: sent=$sent cpu_ticks=$((c1 - c0)) applied=$applied delivered=$delivered/$want" \
        "stream_deliveries=$(kv "$lline" deliveries) p99_ms=$(kv "$lline" p99_ms)"
    echo "$((c1 - c0)) $sent $(kv "$lline" p50_ms) $(kv "$lline" p99_ms)"
}

HZ="$(getconf CLK_TCK)"
: >"$RUN/a.txt"; : >"$RUN/b.txt"
say "warm-up (not reported)"
one_run warmA "$BROKER_A" "${ARGS_A[@]}" >/dev/null
one_run warmB "$BROKER_B" "${ARGS_B[@]}" >/dev/null
for r in $(seq 1 "$RUNS"); do
    one_run "A$r" "$BROKER_A" "${ARGS_A[@]}" >>"$RUN/a.txt"
    one_run "B$r" "$BROKER_B" "${ARGS_B[@]}" >>"$RUN/b.txt"
done

export HZ RATE SECS RUNS FILTERED FULL ENDPOINTS BASE_NAME
export ARGS_A_TEXT="${CPU_ARGS_A:-}" ARGS_B_TEXT="${CPU_ARGS_B:-}"
export DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" NPROC="$(nproc)" KERNEL="$(uname -sr)"
export CPU_MODEL="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
export HEAD_NAME="$(git -C "$ROOT" rev-parse --short=7 HEAD 2>/dev/null || echo tree)"
python3 - "$RUN/a.txt" "$RUN/b.txt" >"$RUN/section.md" <<'EOF'
import os, statistics, sys
def load(path):
    rows = [l.split() for l in open(path) if l.strip()]
    hz = float(os.environ["HZ"])
    us = [float(r[0]) / hz * 1e6 / float(r[1]) for r in rows]        # CPU microseconds per event
    p99 = [float(r[3]) for r in rows if len(r) > 3]
    return us, p99
a, pa = load(sys.argv[1]); b, pb = load(sys.argv[2])
def fig(xs, nd=1):
    return f"**{statistics.median(xs):.{nd}f}** ({min(xs):.{nd}f}-{max(xs):.{nd}f})" if xs else "-"
ratio = statistics.median(a) / statistics.median(b)
e = os.environ
print("## Broker CPU per ingested event, two brokers side by side")
print()
print(f"- Command: `bash bench/cpu.sh` (CPU_RUNS={e['RUNS']}, {e['RATE']} events/s for {e['SECS']} s "
      f"per run; the view on, {e['ENDPOINTS']} webhook endpoint(s) taking build.finished, "
      f"{e['FILTERED']} filtered + {e['FULL']} full-stream WebSocket clients)")
print(f"- Machine: {e['NPROC']} cores, {e['CPU_MODEL']}, {e['KERNEL']}; date {e['DATE']}; "
      "Kafka, the producer, the clients and the broker on the same cores")
def args(name):
    return f" with `{e[name]}`" if e.get(name) else ""
print(f"- A: this tree ({e['HEAD_NAME']}){args('ARGS_A_TEXT')}; B: {e['BASE_NAME']}{args('ARGS_B_TEXT')}; "
      "runs alternate A, B after one warm-up run of each")
print()
print("| | A (this tree) | B (base) |")
print("|---|---|---|")
print(f"| broker CPU per ingested event, µs: median (range) | {fig(a)} | {fig(b)} |")
print(f"| stream p99 latency, ms | {fig(pa, 2)} | {fig(pb, 2)} |")
print()
print(f"A uses **{100 * (1 - ratio):.0f}%** less CPU per event than B (ratio of medians {ratio:.2f}).")
EOF
cat "$RUN/section.md"
if [ "${CPU_NO_DOC:-0}" != 1 ]; then
    python3 "$ROOT/bench/write_section.py" cpu "$DOC" <"$RUN/section.md"
fi
