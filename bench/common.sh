# bench/common.sh: what the benchmarks share (sourced by bench/fanout.sh, bench/cpu.sh,
# bench/ingest_drain.sh, bench/webhooks.sh and bench/catchup.sh, not run). The sourcing script
# sets ROOT, DATA and KAFKA_SH first (STATE too, or bench_run_setup sets it), and defines say()
# (its own prefix) and die().

INPUT_COUNT=1200000

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }          # ticks PID: utime+stime
kv() { { grep -o " $2=[^ ]*" <<<" $1" || true; } | head -n1 | cut -d= -f2; }   # kv LINE KEY

# bench_run_setup NAME: RUN, a directory of this run (Kafka's state in STATE) deleted at exit;
# PIDS, background processes killed and reaped at exit; the descriptor limit raised for clients.
bench_run_setup() {
    RUN="$(mktemp -d "${TMPDIR:-/tmp}/firehose-$1.XXXXXX")"
    STATE="$RUN/kafka"
    PIDS=()
    trap bench_run_cleanup EXIT
    trap 'exit 130' INT TERM
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
}
bench_run_cleanup() {
    local p
    for p in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$p" 2>/dev/null || true; done
    for p in ${PIDS[@]+"${PIDS[@]}"}; do wait "$p" 2>/dev/null || true; done
    "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true
    rm -rf "$RUN"
}

# bench_await_broker NAME PID LOG: waits until the broker logs http.listening (dies if it exits
# or does not listen within 30 s), then up to 60 s for /readyz; sets URL.
bench_await_broker() {
    URL=""
    for _ in $(seq 300); do
        URL="$(sed -n 's/.*event=http\.listening url=\([^ ]*\).*/\1/p' "$3" | tail -n 1)"
        [ -n "$URL" ] && break
        kill -0 "$2" 2>/dev/null || { tail -n 5 "$3" >&2; die "$1: the broker exited"; }
        sleep 0.1
    done
    [ -n "$URL" ] || die "$1: the broker did not listen"
    for _ in $(seq 600); do curl -sf -o /dev/null "${URL}readyz" && break; sleep 0.1; done
}

# Starts one Kafka node with its state in STATE (stopped when the script exits) and sets BOOTSTRAP.
bench_kafka_start() {
    mkdir -p "$STATE"
    BOOTSTRAP="$(KAFKA_WATCH_PID=$$ "$KAFKA_SH" start "$STATE")"
}

# The fan-out input, INPUT_COUNT status events of 1000 builders (firehose-sim --profile
# mozilla-2010, seed 7) in INPUT, and their builder names in BUILDERS: generated once into DATA,
# again when the simulator is rebuilt.
bench_fanout_input() {
    INPUT="$DATA/fanout-events-$INPUT_COUNT.ndjson"
    BUILDERS="$DATA/fanout-builders.txt"
    if [ ! -s "$INPUT" ] || [ "$INPUT" -ot "$ROOT/bin/firehose-sim" ]; then
        say "generating $INPUT"
        "$ROOT/bin/firehose-sim" -q --profile mozilla-2010 --builders 1000 --logs=false \
            --count "$INPUT_COUNT" --seed 7 >"$INPUT.tmp"
        mv "$INPUT.tmp" "$INPUT"
        rm -f "$BUILDERS"
    fi
    if [ ! -s "$BUILDERS" ] || [ "$BUILDERS" -ot "$INPUT" ]; then
        grep -o '"builder":"[^"]*"' "$INPUT" | cut -d'"' -f4 | sort -u >"$BUILDERS.tmp"
        mv "$BUILDERS.tmp" "$BUILDERS"
    fi
}

# base_broker COMMIT: prints the path of COMMIT's bin/firehose-broker, built once into
# DATA/base-SHA/ (git archive of the commit, then make there); later runs reuse it.
base_broker() {
    local sha dir
    sha="$(git -C "$ROOT" rev-parse --short=7 "$1^{commit}")" || die "$1 is not a commit here"
    dir="$DATA/base-$sha"
    if [ ! -x "$dir/bin/firehose-broker" ]; then
        say "building the base broker ($sha) in $dir"
        rm -rf "$dir" && mkdir -p "$dir"
        git -C "$ROOT" archive "$sha" | tar -x -C "$dir"
        make -C "$dir" --no-print-directory -s -j2 bin/firehose-broker >&2
    fi
    echo "$dir/bin/firehose-broker"
}
