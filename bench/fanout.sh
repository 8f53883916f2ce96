#!/usr/bin/env bash
# Fan-out benchmark: real Apache Kafka -> server -> many WebSocket subscribers, all on
# 127.0.0.1, with Centrifugo side by side on the same topic and the same records.
#
#   flock /tmp/firehose-bench.lock bash bench/fanout.sh        (make bench runs bash bench/fanout.sh)
#
# 1. Kafka (tests/kafka/kafka.sh), topics firehose.events/firehose.logs with 6 partitions.
# 2. Input: bin/firehose-sim --profile mozilla-2010 --builders 1000 --logs=false (status events),
#    generated once into build/bench/; its 1,000 builder names are the filtered clients' filters.
# 3. Producer: build/bench/pacer (bench/fanout/pacer.c, librdkafka, linger.ms=1) at a fixed rate,
#    stamping each record with "sentns" (CLOCK_REALTIME) just before it is produced, and adding a
#    centrifugo-channels header ("<builder>,all") that the firehose broker ignores.
# 4. Subscribers: build/bench/loadclient (bench/fanout/loadclient.c, epoll, 2 threads): 1,000
#    connections filtering one builder each + 10 full-stream connections, from latest.
# 5. Per server: a ladder of rates (each FANOUT_STEP_S seconds, a fresh set of connections per
#    step) until a step is not sustained, then FANOUT_LAT_RUNS latency runs at FANOUT_LAT_RATE.
#    Sustained = every expected delivery arrived, no disconnect, no error, and the last delivery
#    came at most FANOUT_MAX_LAG_MS after the producer stopped. Server CPU (utime+stime from
#    /proc/PID/stat over the producing interval) and RSS (VmRSS at the end of producing).
#    Then the subscriber sweep: at FANOUT_SWEEP_RATE, one step per count in FANOUT_SWEEP_SUBS of
#    filtered clients (connection i filters builder i mod 1,000), each with the FANOUT_FULL
#    full-stream clients too. Deliveries per server CPU-second = deliveries the clients counted /
#    the server's CPU seconds over the producing interval; for the firehose broker each run also
#    reads its stage histograms from /metrics before and after (bench/fanout/stages.py). Centrifugo runs first (a fresh consumer group on an empty topic
#    starts at the beginning, so it must see an empty topic; the firehose broker starts at the
#    high watermark by design).
#    With FANOUT_BROKER_B, a second firehose-broker binary (another commit's build) goes through
#    the same phases right after this tree's broker, each in a fresh process. The two run back to
#    back, not interleaved: running both at once would have the idle one consume every record
#    beside the measured one on these two cores, and a restart per run would need a warm-up per
#    run and change what the latency runs measure (a broker that has been through the ladder).
# 6. Memory soak, this tree's broker only: a fresh broker, FANOUT_SOAK_SUBS connections each
#    filtering one builder, FANOUT_SOAK_EVENTS status events (firehose-sim | firehose-emit, flat
#    out); VmRSS and
#    firehose_stream_events_total sampled every ~0.5 s, and marks when the count passes 1M and 10M
#    (and a few points between; all scaled by FANOUT_SOAK_EVENTS / 10M).
# Results go to docs/performance.md between the bench:fanout markers (bench/write_section.py), and
# bench/fanout/report.py draws three plots into docs/plots/ (bench/plot.py) that the section links.
# The raw results stay in build/bench/fanout-{results,soak}.tsv, with fanout-report.env to run the
# report on them again (see bench/fanout/report.py).
#
# Knobs (environment): FANOUT_RATES ("2000 5000 10000 20000 50000 100000"), FANOUT_STEP_S (10),
#   FANOUT_WARMUP_S (5: one unreported run at FANOUT_LAT_RATE before each server's ladder; 0: none),
#   FANOUT_LAT_RATE (10000), FANOUT_LAT_RUNS (3), FANOUT_LAT_S (10), FANOUT_FILTERED (1000),
#   FANOUT_FULL (10), FANOUT_MAX_LAG_MS (1000), FANOUT_SWEEP_RATE (5000), FANOUT_SWEEP_SUBS
#   ("10 100 1000 3000"), FANOUT_SOAK_EVENTS (10000000), FANOUT_SOAK_SUBS (100), FANOUT_CENTRIFUGO
#   (path, default ~/go/bin/centrifugo; "none" to skip), FANOUT_SKIP (words: centrifugo firehose
#   sweep soak), FANOUT_BROKER (another firehose-broker binary), FANOUT_BROKER_ARGS (the broker's
#   arguments past the fixed ones; default "--view.enabled=false": e.g. "--view.path=/tmp/v.db" runs
#   it with the view and derivation on), FANOUT_BROKER_B (path of a second firehose-broker binary
#   measured beside it, e.g. build/bench/base-SHA/bin/firehose-broker; unset: none),
#   FANOUT_BROKER_B_ARGS (its arguments past the fixed ones; default "--view.enabled=false", not
#   FANOUT_BROKER_ARGS' value), FANOUT_BROKER_B_LABEL (its name in the tables and plots; default
#   "firehose-broker (base)", e.g. "firehose-broker 5610376"), FANOUT_NO_DOC=1 (do not touch
#   docs/performance.md or docs/plots/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
# Kafka's JVM: a 2 GiB heap and the Shenandoah collector (Debian's OpenJDK 17 has it). With the
# tests' 512 MiB heap and G1, Kafka stopped for 4-5 ms every ~0.65 s at 10,000 events/s, and every
# reader of Kafka, this broker and Centrifugo alike, saw those pauses as its delivery tail (see the
# Kafka section of docs/operations.md). KAFKA_HEAP and KAFKA_GC override.
# A JVM built without Shenandoah (some vendors leave it out) gets ZGC, then G1; without java yet,
# kafka.sh installs Debian's OpenJDK 17, which has Shenandoah.
if [ -z "${KAFKA_GC:-}" ] && command -v java >/dev/null; then
    for gc in -XX:+UseShenandoahGC -XX:+UseZGC "-XX:+UseG1GC -XX:MaxGCPauseMillis=20"; do
        # shellcheck disable=SC2086 # $gc is a list of JVM options
        if java $gc -version >/dev/null 2>&1; then KAFKA_GC="$gc"; break; fi
    done
fi
export KAFKA_HEAP="${KAFKA_HEAP:--Xmx2g -Xms2g}" KAFKA_GC="${KAFKA_GC:--XX:+UseShenandoahGC}"
DATA="$ROOT/build/bench"
DOC="$ROOT/docs/performance.md"
LC="$ROOT/build/bench/loadclient"
PACER="$ROOT/build/bench/pacer"
BROKER="${FANOUT_BROKER:-$ROOT/bin/firehose-broker}"
BROKER_ARGS="${FANOUT_BROKER_ARGS:---view.enabled=false}"
BROKER_B="${FANOUT_BROKER_B:-}"
BROKER_B_ARGS="${FANOUT_BROKER_B_ARGS:---view.enabled=false}"
BROKER_B_LABEL="${FANOUT_BROKER_B_LABEL:-firehose-broker (base)}"

RATES="${FANOUT_RATES:-2000 5000 10000 20000 50000 100000}"
STEP_S="${FANOUT_STEP_S:-10}"
WARMUP_S="${FANOUT_WARMUP_S:-5}"
LAT_RATE="${FANOUT_LAT_RATE:-10000}"
LAT_RUNS="${FANOUT_LAT_RUNS:-3}"
LAT_S="${FANOUT_LAT_S:-10}"
FILTERED="${FANOUT_FILTERED:-1000}"
FULL="${FANOUT_FULL:-10}"
MAX_LAG_MS="${FANOUT_MAX_LAG_MS:-1000}"
SWEEP_RATE="${FANOUT_SWEEP_RATE:-5000}"
SWEEP_SUBS="${FANOUT_SWEEP_SUBS:-10 100 1000 3000}"
SOAK_EVENTS="${FANOUT_SOAK_EVENTS:-10000000}"
SOAK_SUBS="${FANOUT_SOAK_SUBS:-100}"
CENTRIFUGO="${FANOUT_CENTRIFUGO:-$HOME/go/bin/centrifugo}"
SKIP=" ${FANOUT_SKIP:-} "

say() { printf 'fanout: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

[ -x "$BROKER" ] || die "$BROKER is missing: run make"
[ -z "$BROKER_B" ] || [ -x "$BROKER_B" ] || die "FANOUT_BROKER_B=$BROKER_B is not an executable"
make -C "$ROOT" --no-print-directory -s fanout-tools >&2
T0=$SECONDS
mkdir -p "$DATA"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/firehose-fanout.XXXXXX")"
STATE="$RUN/kafka"
SERVER_PID=""
BG_PIDS=()

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    stop_server
    "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true
    rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now_ns() { date +%s%N; }

# ---- Kafka and input ------------------------------------------------------------------------
k0=$SECONDS
bench_kafka_start
"$KAFKA_SH" create-topics "$STATE" firehose.events:6 firehose.logs:6 firehose.derived:6 2>/dev/null
say "Kafka $BOOTSTRAP ready in $((SECONDS - k0)) s"

bench_fanout_input
NBUILDERS="$(wc -l <"$BUILDERS")"
AVG_BYTES="$(python3 -c 'import os,sys; print(round(os.path.getsize(sys.argv[1])/int(sys.argv[2])))' "$INPUT" "$INPUT_COUNT")"
say "input: $INPUT_COUNT events, $NBUILDERS builders, $AVG_BYTES B per event"

RESULTS="$RUN/results.tsv"
: >"$RESULTS"
FIRST=0   # next input record, so successive runs do not repeat records

# run_step SERVER PROTO URL RATE SECONDS KIND [FILTERED]: one set of connections (FILTERED, default
# FANOUT_FILTERED, filtered clients + FANOUT_FULL full-stream ones), one paced run. Appends:
#   server kind rate pacer-line loadclient-line cpu% rss_kb sustained lag_ms expected filtered check
#   cpu_ticks stages
# cpu_ticks: the server's utime+stime over the producing interval (deliveries per CPU-second);
# stages: a firehose broker's stage histograms over the run (bench/fanout/stages.py), else empty
# (Centrifugo, or a broker build without them).
# check: "all" when every delivery is predicted (FILTERED a multiple of the builder count: each
# builder has FILTERED/NBUILDERS clients), else "full" (only the full-stream clients' count), or
# "none" (no full-stream clients either: sustained is then "unchecked" at best).
run_step() {
    local server="$1" proto="$2" url="$3" rate="$4" secs="$5" kind="$6" filtered="${7:-$FILTERED}"
    local tag="$server-$kind-$rate-$RANDOM" ready lcpid pline lline c0 c1 w0 w1 rss
    ready="$RUN/ready.$tag"
    "$LC" --url "$url" --proto "$proto" --builders "$BUILDERS" --filtered "$filtered" --full "$FULL" \
        --threads 2 --max-s "$((secs + 90))" --quiet-ms 3000 --ready-file "$ready" \
        >"$RUN/lc.$tag.out" 2>"$RUN/lc.$tag.err" &
    lcpid=$!
    BG_PIDS+=("$lcpid")
    for _ in $(seq 1 600); do [ -e "$ready" ] || ! kill -0 "$lcpid" 2>/dev/null && break; sleep 0.1; done
    if [ ! -e "$ready" ]; then
        kill -TERM "$lcpid" 2>/dev/null || true; wait "$lcpid" 2>/dev/null || true
        cat "$RUN/lc.$tag.err" >&2
        say "$server $rate/s: the connections did not all subscribe"
        printf '%s\t%s\t%s\tpacer: sent=0\t%s\t0\t0\tno\t0\t0\t%s\tnone\n' "$server" "$kind" "$rate" \
            "$(cat "$RUN/lc.$tag.out" 2>/dev/null)" "$filtered" >>"$RESULTS"
        return 1
    fi
    sleep 0.5
    local m0="$RUN/metrics0.$tag" m1="$RUN/metrics1.$tag" stages=""
    [[ "$server" != firehose* ]] || curl -fsS -o "$m0" "${URL%/}/metrics" 2>/dev/null || true
    c0="$(ticks "$SERVER_PID")"; w0="$(now_ns)"
    pline="$("$PACER" --brokers "$BOOTSTRAP" --input "$INPUT" --rate "$rate" --duration "$secs" \
        --first "$FIRST" --centrifugo 2>>"$RUN/pacer.err" || true)"
    c1="$(ticks "$SERVER_PID")"; w1="$(now_ns)"; rss="$(rss_kb "$SERVER_PID")"
    local nsent; nsent="$(kv "$pline" sent)"; FIRST=$((FIRST + ${nsent:-0}))
    wait "$lcpid" 2>/dev/null || true
    lline="$(cat "$RUN/lc.$tag.out")"
    if [ -s "$m0" ] && curl -fsS -o "$m1" "${URL%/}/metrics" 2>/dev/null; then
        stages="$(python3 "$ROOT/bench/fanout/stages.py" "$m0" "$m1" 2>/dev/null || true)"
    fi
    local hz cpu sent bev expected got disc errs last end lag ok=yes check=all
    hz="$(getconf CLK_TCK)"
    cpu="$(python3 -c "import sys; c0,c1,w0,w1,hz=map(float,sys.argv[1:]); print(round(100*(c1-c0)/hz/((w1-w0)/1e9)))" "$c0" "$c1" "$w0" "$w1" "$hz")"
    sent="$(kv "$pline" sent)"; bev="$(kv "$pline" builder_events)"; end="$(kv "$pline" end_ns)"
    sent="${sent:-0}"; bev="${bev:-0}"   # a pacer that failed prints nothing
    got="$(kv "$lline" deliveries)"; disc="$(kv "$lline" disconnects)"; errs="$(kv "$lline" errors)"
    if [ $((filtered % NBUILDERS)) = 0 ]; then
        expected=$(( filtered / NBUILDERS * bev + FULL * sent ))
    else
        check=full; expected=$((FULL * sent)); got="$(kv "$lline" full)"
        [ "$FULL" -gt 0 ] || check=none
    fi
    last="$(kv "$lline" last_ns)"
    lag=$(( ( ${last:-0} - ${end:-0} ) / 1000000 ))
    if [ "${got:-0}" != "$expected" ] || [ "${disc:-1}" != 0 ] || [ "${errs:-1}" != 0 ] || [ "$lag" -gt "$MAX_LAG_MS" ]; then ok=no; fi
    [ "$check" != none ] || [ "$ok" = no ] || ok=unchecked
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$kind" "$rate" "$pline" "$lline" \
        "$cpu" "$rss" "$ok" "$lag" "$expected" "$filtered" "$check" "$((c1 - c0))" "$stages" >>"$RESULTS"
    say "$server $kind $rate/s, $filtered+$FULL clients: sustained=$ok sent=$sent delivered=$got/$expected ($check)" \
        "lag=${lag}ms" \
        "deliveries/s=$(kv "$lline" deliveries_per_s) p50=$(kv "$lline" p50_ms) p99=$(kv "$lline" p99_ms)" \
        "p999=$(kv "$lline" p999_ms) disconnects=$disc codes=$(kv "$lline" close_codes) cpu=${cpu}% rss=$((rss / 1024))MiB" \
        "deliveries/cpu-s=$(python3 -c "import sys; d,t,hz=map(float,sys.argv[1:]); print(round(d*hz/t) if t else '-')" "$(kv "$lline" deliveries)" "$((c1 - c0))" "$hz")" \
        ${stages:+"stages(ms p50/p99/p999): $stages"}
    [ "$ok" != no ]
}

run_server() {   # run_server NAME PROTO URL: the ladder, the latency runs, then the sweep
    local name="$1" proto="$2" url="$3" r
    # warm-up, not reported: a server's first run (its consumer's first fetches, the JIT of the
    # Kafka broker serving them) had a p99 of 0.4-1 s for both servers whatever came after
    [ "$WARMUP_S" -gt 0 ] && { run_step "$name" "$proto" "$url" "$LAT_RATE" "$WARMUP_S" warmup || true; }
    for r in $RATES; do
        run_step "$name" "$proto" "$url" "$r" "$STEP_S" step || break
    done
    for r in $(seq 1 "$LAT_RUNS"); do
        run_step "$name" "$proto" "$url" "$LAT_RATE" "$LAT_S" latency || true
    done
    [[ "$SKIP" != *" sweep "* ]] || return 0
    for r in $SWEEP_SUBS; do   # every count, even after one not sustained: the curve is the point
        run_step "$name" "$proto" "$url" "$SWEEP_RATE" "$STEP_S" sweep "$r" || true
    done
}

wait_http() {   # wait_http URL SECONDS
    for _ in $(seq 1 $(($2 * 10))); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# ---- Centrifugo (first: its fresh consumer group reads the topic from the start) -----------
CENTRIFUGO_NOTE=""
CENTRIFUGO_VERSION=""
if [ "$CENTRIFUGO" = none ] || [[ "$SKIP" == *" centrifugo "* ]]; then
    CENTRIFUGO_NOTE="skipped (FANOUT_CENTRIFUGO=none or FANOUT_SKIP)"
elif [ ! -x "$CENTRIFUGO" ]; then
    CENTRIFUGO_NOTE="not installed at $CENTRIFUGO (go install github.com/centrifugal/centrifugo/v6@latest)"
else
    # a `go install` build calls itself v0.0.0; the module version is in the binary's build info
    CENTRIFUGO_VERSION="$( { /usr/local/go/bin/go version -m "$CENTRIFUGO" 2>/dev/null || go version -m "$CENTRIFUGO" 2>/dev/null; } \
        | awk '$1 == "mod" {print "Centrifugo " $3 " (" $2 ", go install)"}' | head -n1)"
    [ -n "$CENTRIFUGO_VERSION" ] || CENTRIFUGO_VERSION="$("$CENTRIFUGO" version 2>/dev/null | head -n1)"
    cport="$(free_port)"
    cat >"$RUN/centrifugo.json" <<EOF
{
  "http_server": {"address": "127.0.0.1", "port": $cport},
  "log": {"level": "warn"},
  "usage_stats": {"disabled": true},
  "health": {"enabled": true},
  "client": {"insecure": true, "allow_anonymous_connect_without_token": true},
  "channel": {"without_namespace": {"allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true}},
  "consumers": [{
    "name": "firehose", "enabled": true, "type": "kafka",
    "kafka": {"brokers": ["$BOOTSTRAP"], "topics": ["firehose.events"],
              "consumer_group": "centrifugo-bench-$$",
              "publication_data_mode": {"enabled": true, "channels_header": "centrifugo-channels"}}
  }]
}
EOF
    "$CENTRIFUGO" -c "$RUN/centrifugo.json" >"$RUN/centrifugo.log" 2>&1 &
    SERVER_PID=$!
    if wait_http "http://127.0.0.1:$cport/health" 30; then
        sleep 3   # let the consumer group join and get its partitions
        say "Centrifugo $CENTRIFUGO_VERSION on 127.0.0.1:$cport (pid $SERVER_PID)"
        run_server centrifugo centrifugo "ws://127.0.0.1:$cport/connection/websocket" || true
        grep -qi 'error' "$RUN/centrifugo.log" && { say "centrifugo log:"; grep -i error "$RUN/centrifugo.log" | head -n 5 >&2; }
    else
        CENTRIFUGO_NOTE="did not answer /health within 30 s: $(tail -n 3 "$RUN/centrifugo.log" | tr '\n' ' ')"
    fi
    stop_server
fi
[ -z "$CENTRIFUGO_NOTE" ] || say "Centrifugo: $CENTRIFUGO_NOTE"

# ---- firehose-broker (and FANOUT_BROKER_B) ---------------------------------------------------
start_broker() {   # start_broker BINARY ARGS LOG: sets SERVER_PID, URL, WSURL; 1 if it did not listen
    local bin="$1" extra log="$3"
    read -r -a extra <<<"$2"
    "$bin" --brokers "$BOOTSTRAP" --listen 127.0.0.1:0 --auth.anonymous_read \
        --stream.max_connections=20000 --http.max_connections=20000 \
        --kafka.group="fanout-bench-$$-$RANDOM" --webhooks.path="$RUN/webhooks.db" "${extra[@]}" \
        >"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 600); do grep -q 'event=http.listening' "$log" && break; sleep 0.05; done
    URL="$(grep -o 'event=http.listening url=[^ ]*' "$log" | head -n1 | cut -d= -f3 || true)"
    [ -n "$URL" ] || { tail -n 20 "$log" >&2; say "$bin did not start"; return 1; }
    wait_http "${URL%/}/readyz" 60 || say "warning: /readyz not ready after 60 s"
    WSURL="ws://${URL#http://}"; WSURL="${WSURL%/}/v1/stream"
}
if [[ "$SKIP" != *" firehose "* ]]; then
    start_broker "$BROKER" "$BROKER_ARGS" "$RUN/broker.log" || die "the broker did not start"
    say "firehose-broker at $URL (pid $SERVER_PID)"
    run_server firehose firehose "$WSURL" || true
    stop_server
    if [ -n "$BROKER_B" ]; then   # TSV server name firehose-b; BROKER_B_LABEL names it in the report
        if start_broker "$BROKER_B" "$BROKER_B_ARGS" "$RUN/broker-b.log"; then
            say "$BROKER_B_LABEL ($BROKER_B) at $URL (pid $SERVER_PID)"
            run_server firehose-b firehose "$WSURL" || true
        else   # the report then has no rows for it, and the run's other results stand
            say "$BROKER_B_LABEL left out"
        fi
        stop_server
    fi
fi

# ---- memory soak ---------------------------------------------------------------------------
SOAK="$RUN/soak.tsv"
: >"$SOAK"
if [[ "$SKIP" != *" soak "* ]]; then
    start_broker "$BROKER" "$BROKER_ARGS" "$RUN/broker-soak.log" || die "the broker did not start"
    say "soak: firehose-broker at $URL (pid $SERVER_PID), $SOAK_SUBS subscribers, $SOAK_EVENTS events"
    "$LC" --url "$WSURL" --builders "$BUILDERS" --filtered "$SOAK_SUBS" --full 0 --threads 1 \
        --max-s 1200 --quiet-ms 10000 --ready-file "$RUN/ready.soak" >"$RUN/lc.soak.out" 2>"$RUN/lc.soak.err" &
    lcpid=$!; BG_PIDS+=("$lcpid")
    for _ in $(seq 1 600); do [ -e "$RUN/ready.soak" ] && break; sleep 0.1; done
    printf 'start\t0\t%s\t0\n' "$(rss_kb "$SERVER_PID")" >>"$SOAK"
    s0=$SECONDS; c0="$(ticks "$SERVER_PID")"
    "$ROOT/bin/firehose-sim" -q --profile mozilla-2010 --builders 1000 --logs=false \
        --count "$SOAK_EVENTS" --seed 9 2>"$RUN/soak-sim.log" \
        | "$ROOT/bin/firehose-emit" -q --brokers "$BOOTSTRAP" >"$RUN/soak-emit.log" 2>&1 &
    prod=$!; BG_PIDS+=("$prod")   # firehose-emit; firehose-sim ends when the pipe closes
    marks=(1000000 2000000 5000000 8000000 10000000)
    mi=0
    us0="${EPOCHREALTIME/./}"; next_us="$us0"   # the samples: one per ~0.5 s (microseconds)
    while [ "$mi" -lt "${#marks[@]}" ] && [ $((SECONDS - s0)) -lt 900 ]; do
        n="$(curl -fsS "${URL%/}/metrics" 2>/dev/null | awk '/^firehose_stream_events_total/ {print $2}' | head -n1)"
        n="${n%.*}"; n="${n:-0}"
        us="${EPOCHREALTIME/./}"
        if [ "$us" -ge "$next_us" ]; then
            printf 'sample\t%s\t%s\t%d.%03d\n' "$n" "$(rss_kb "$SERVER_PID")" $(((us - us0) / 1000000)) \
                $(((us - us0) / 1000 % 1000)) >>"$SOAK"
            next_us=$((us + 500000))
        fi
        while [ "$mi" -lt "${#marks[@]}" ] && [ "$n" -ge "$((marks[mi] * SOAK_EVENTS / 10000000))" ]; do
            printf '%s\t%s\t%s\t%s\n' "${marks[$mi]}" "$n" "$(rss_kb "$SERVER_PID")" $((SECONDS - s0)) >>"$SOAK"
            say "soak: $n events read, RSS $(( $(rss_kb "$SERVER_PID") / 1024 )) MiB after $((SECONDS - s0)) s"
            mi=$((mi + 1))
        done
        sleep 0.2
    done
    soak_cpu=$(( ( $(ticks "$SERVER_PID") - c0 ) ))
    soak_s=$((SECONDS - s0))
    kill -TERM "$prod" 2>/dev/null || true   # only still running when the time bound cut the soak
    wait "$prod" 2>/dev/null || true
    kill -TERM "$lcpid" 2>/dev/null || true; wait "$lcpid" 2>/dev/null || true
    printf 'end\t%s\t%s\t%s\tcpu_ticks=%s\t%s\n' "$n" "$(rss_kb "$SERVER_PID")" "$soak_s" "$soak_cpu" "$(cat "$RUN/lc.soak.out")" >>"$SOAK"
    stop_server
fi

# ---- report --------------------------------------------------------------------------------
cp "$RESULTS" "$DATA/fanout-results.tsv"; cp "$SOAK" "$DATA/fanout-soak.tsv"
RESULTS="$DATA/fanout-results.tsv"; SOAK="$DATA/fanout-soak.tsv"
NPROC="$(nproc)" KERNEL="$(uname -sr)" DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" HZ="$(getconf CLK_TCK)"
CPU_MODEL="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
MEM_KB="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
RDKAFKA="$(pkg-config --modversion rdkafka 2>/dev/null || echo unknown)"
WRITER="$ROOT/bench/write_section.py"
KNOBS=""   # the FANOUT_* settings of this run, for the section's command line
for v in $(compgen -e | grep '^FANOUT_' | sort); do KNOBS+="$v=$(printf '%q' "${!v}") "; done
REPORT_VARS=(RESULTS SOAK DOC BOOTSTRAP FILTERED FULL NBUILDERS AVG_BYTES STEP_S WARMUP_S LAT_RATE LAT_RUNS LAT_S
    MAX_LAG_MS SWEEP_RATE SWEEP_SUBS SOAK_EVENTS SOAK_SUBS CENTRIFUGO_NOTE CENTRIFUGO_VERSION INPUT_COUNT
    NPROC KERNEL DATE HZ CPU_MODEL MEM_KB RDKAFKA WRITER KNOBS BROKER_ARGS BROKER_B BROKER_B_ARGS BROKER_B_LABEL
    KAFKA_HEAP KAFKA_GC)
for v in "${REPORT_VARS[@]}"; do printf '%s=%q\n' "$v" "${!v}"; done >"$DATA/fanout-report.env"
export "${REPORT_VARS[@]}"
WRITE_DOC="$([ -n "${FANOUT_NO_DOC:-}" ] && echo 0 || echo 1)" python3 "$ROOT/bench/fanout/report.py"
say "done in $((SECONDS - T0)) s"
