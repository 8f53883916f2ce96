#!/usr/bin/env bash
# Fan-out with and without permessage-deflate, in the same run: real Apache Kafka -> firehose-broker
# -> FD_FILTERED connections filtering one builder each plus FD_FULL full-stream connections, all
# on 127.0.0.1, once with plain WebSocket and once offering permessage-deflate (loadclient
# --deflate 1, which inflates every message before counting it), alternating, FD_ROUNDS times.
#
#   nice bash bench/fanout_deflate.sh          (docs/performance.md, "permessage-deflate")
#
# Input: bin/firehose-sim status events (mozilla-2010 profile, 1,000 builders, no logs), paced by
# build/bench/pacer at FD_RATE events/s for FD_SECONDS per step. Per step: deliveries/s and the
# p50/p99 produce-to-receive latency (loadclient), bytes the subscribers read from their sockets
# (wire_bytes), the broker's CPU (utime+stime over the producing interval) and whether every
# expected delivery arrived with no disconnect. Prints one line per step and a summary per mode
# (median and range over the rounds) on stdout; raw lines in build/bench/fanout-deflate.tsv.
#
# Knobs: FD_RATE (5000), FD_SECONDS (10), FD_ROUNDS (3), FD_FILTERED (1000), FD_FULL (10),
#   FD_LEVEL (stream.deflate_level, 6).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
DATA="$ROOT/build/bench"
LC="$DATA/loadclient"
PACER="$DATA/pacer"
RATE="${FD_RATE:-5000}"
SECS="${FD_SECONDS:-10}"
ROUNDS="${FD_ROUNDS:-3}"
FILTERED="${FD_FILTERED:-1000}"
FULL="${FD_FULL:-10}"
LEVEL="${FD_LEVEL:-6}"
COUNT=$(( RATE * SECS * ROUNDS * 2 + RATE * SECS ))

say() { printf 'fanout-deflate: %s\n' "$*" >&2; }
make -C "$ROOT" --no-print-directory -s all fanout-tools >&2
RUN="$(mktemp -d "${TMPDIR:-/tmp}/firehose-fd.XXXXXX")"
STATE="$RUN/kafka"
BROKER_PID=""
LC_PID=""
cleanup() {
    [ -z "$LC_PID" ] || kill -TERM "$LC_PID" 2>/dev/null || true
    if [ -n "$BROKER_PID" ]; then kill -TERM "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
    "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
kv() { { grep -o " $2=[^ ]*" <<<" $1" || true; } | head -n1 | cut -d= -f2; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

mkdir -p "$STATE" "$DATA"
BOOTSTRAP="$(KAFKA_WATCH_PID=$$ "$KAFKA_SH" start "$STATE")"
"$KAFKA_SH" create-topics "$STATE" firehose.events:6 firehose.logs:6 2>/dev/null
INPUT="$RUN/events.ndjson"
"$ROOT/bin/firehose-sim" -q --profile mozilla-2010 --builders 1000 --logs=false --count "$COUNT" --seed 7 >"$INPUT"
BUILDERS="$RUN/builders.txt"
grep -o '"builder":"[^"]*"' "$INPUT" | cut -d'"' -f4 | sort -u >"$BUILDERS"
NB="$(wc -l <"$BUILDERS")"
say "Kafka $BOOTSTRAP; $COUNT events, $NB builders, $(( $(wc -c <"$INPUT") / COUNT )) B each"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$ROOT/bin/firehose-broker" --brokers "$BOOTSTRAP" --listen "127.0.0.1:$PORT" --auth.anonymous_read \
    --view.enabled=false --webhooks.enabled=false --stream.deflate_level="$LEVEL" \
    --broker.stats_interval_ms=600000 >"$RUN/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break; sleep 0.1; done

OUT="$DATA/fanout-deflate.tsv"
: >"$OUT"
FIRST=0
step() {   # step MODE ROUND
    local mode="$1" round="$2" ready="$RUN/ready.$1.$2" z=0 c0 c1 w0 w1 pline lline
    [ "$mode" = deflate ] && z=1
    "$LC" --url "ws://127.0.0.1:$PORT/v1/stream" --builders "$BUILDERS" --filtered "$FILTERED" --full "$FULL" \
        --threads 2 --max-s "$((SECS + 60))" --quiet-ms 3000 --ready-file "$ready" --deflate "$z" \
        >"$RUN/lc.out" 2>"$RUN/lc.err" &
    LC_PID=$!
    for _ in $(seq 1 600); do [ -e "$ready" ] && break; sleep 0.1; done
    sleep 0.5
    c0="$(ticks "$BROKER_PID")"; w0="$(date +%s%N)"
    pline="$("$PACER" --brokers "$BOOTSTRAP" --input "$INPUT" --rate "$RATE" --duration "$SECS" --first "$FIRST")"
    c1="$(ticks "$BROKER_PID")"; w1="$(date +%s%N)"
    wait "$LC_PID" || true
    LC_PID=""
    lline="$(cat "$RUN/lc.out")"
    FIRST=$(( FIRST + $(kv "$pline" sent) ))
    # every delivery is checked on the full-stream connections (FULL x sent); a filtered one's
    # builder may have several connections (FD_FILTERED need not divide by the builder count)
    local sent expected got cpu
    sent="$(kv "$pline" sent)"
    expected=$(( FULL * sent ))
    got="$(kv "$lline" full)"
    cpu="$(python3 -c "import sys; c0,c1,w0,w1,hz=map(float,sys.argv[1:]); print(round(100*(c1-c0)/hz/((w1-w0)/1e9)))" "$c0" "$c1" "$w0" "$w1" "$(getconf CLK_TCK)")"
    local ok=yes
    [ "$got" = "$expected" ] && [ "$(kv "$lline" disconnects)" = 0 ] && [ "$(kv "$lline" errors)" = 0 ] || ok=no
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$round" "$(kv "$lline" deliveries_per_s)" \
        "$(kv "$lline" p50_ms)" "$(kv "$lline" p99_ms)" "$(kv "$lline" wire_bytes)" "$got" "$expected" "$cpu" "$ok" >>"$OUT"
    say "$mode round $round: deliveries/s=$(kv "$lline" deliveries_per_s) p50=$(kv "$lline" p50_ms) ms" \
        "p99=$(kv "$lline" p99_ms) ms wire=$(kv "$lline" wire_bytes) B inflated=$(kv "$lline" inflated)" \
        "full-stream delivered=$got/$expected cpu=${cpu}% ok=$ok"
}

step plain 0 >/dev/null   # warm-up, not counted (the first run's fetches are slow for everyone)
: >"$OUT"
for r in $(seq 1 "$ROUNDS"); do
    step plain "$r"
    step deflate "$r"
done
python3 - "$OUT" "$RATE" "$SECS" "$FILTERED" "$FULL" "$LEVEL" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
rate, secs, filt, full, level = sys.argv[2:]
print("fan-out %s events/s for %s s, %s filtered + %s full-stream connections, level %s, %d rounds"
      % (rate, secs, filt, full, level, len(rows) // 2))
cols = {"deliveries/s": 2, "p50 ms": 3, "p99 ms": 4, "wire MB": 5, "broker CPU %": 8}
for mode in ("plain", "deflate"):
    rs = [r for r in rows if r[0] == mode]
    parts = []
    for name, i in cols.items():
        v = [float(r[i]) / (1e6 if name == "wire MB" else 1) for r in rs]
        parts.append("%s %s (%s-%s)" % (name, round(statistics.median(v), 2), round(min(v), 2), round(max(v), 2)))
    print("%-8s %s; all delivered: %s" % (mode, "; ".join(parts), all(r[9] == "yes" for r in rs)))
p = statistics.median(float(r[5]) for r in rows if r[0] == "plain")
z = statistics.median(float(r[5]) for r in rows if r[0] == "deflate")
print("wire bytes deflate/plain: %.3f" % (z / p))
EOF
