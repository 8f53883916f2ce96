#!/usr/bin/env bash
# Webhook benchmark: Kafka -> firehose-broker -> 100 endpoints on a local keep-alive receiver,
# three configurations side by side in one run.
#
#   bench/webhooks.sh                        (part of `make bench`)
#   WH_BASE=872b26b bench/webhooks.sh        (the base: a commit, built into build/bench/base-SHA/)
#   WH_BROKER_B=/path/to/firehose-broker bench/webhooks.sh   (or any built binary)
#
# Configurations, each with topics, consumer groups and data directories of its own:
#   a1  this tree's broker (WH_BROKER_A, default bin/firehose-broker), one instance;
#   a3  the same broker, three instances on this machine sharing the webhook consumer group, each
#       with its own data directory and webhooks.path;
#   b1  the base broker (WH_BROKER_B, or WH_BASE's; default 872b26b, the SQLite-file design), one
#       instance.
# Starts Kafka with tests/kafka/kafka.sh (or uses BENCH_BOOTSTRAP), the C receiver
# bench/webhook_sink.c on 127.0.0.1 and every configuration's brokers; creates BENCH_WH_ENDPOINTS
# endpoints per configuration that all match every event (filter {}). A broker whose --help lists
# webhooks.secret_key keeps endpoints in Kafka: the endpoints are created through one instance and
# awaited on the others, and it gets a generated 64-hex --webhooks.secret_key; otherwise each
# instance has its own file and the endpoints are created on each. After a warm-up of each
# configuration, BENCH_WH_RUNS rounds, each running every configuration in turn (a1, a3,
# b1, then a3, b1, a1, ...: they share the machine's noise) with
#   throughput: emits BENCH_WH_EVENTS fresh events at once and times until the configuration's
#               brokers have every delivery acknowledged (firehose_webhook_delivered_total summed
#               over its instances): signed deliveries/s = events x endpoints / (last ack - start
#               of emit);
#   changelog:  when the configuration's changelog topic exists after the burst (its own
#               P-CONFIG.wh-deliveries for a broker that keeps endpoints in Kafka, otherwise
#               BENCH_WH_CHANGELOG, firehose.webhooks.deliveries), the key+value bytes of its records written during the burst (kcat), per
#               delivery; noted as absent otherwise;
#   latency:    emits BENCH_WH_LAT_RATE events/s for BENCH_WH_LAT_SECONDS and reads the brokers'
#               histograms of Kafka timestamp (produce) -> 2xx of the first attempt over that window.
# Prints each figure as the median of the rounds with their range (min-max), and the ratio a1/b1
# of the throughput medians; writes them into docs/performance.md between the bench:webhooks
# markers (bench/write_section.py) unless BENCH_NO_DOC=1.
# Everything listens on 127.0.0.1. Knobs: BENCH_WH_ENDPOINTS (100), BENCH_WH_EVENTS (2000),
# BENCH_WH_RUNS (3), BENCH_WH_LAT_RATE (50), BENCH_WH_LAT_SECONDS (10), BENCH_WH_ARGS (extra
# arguments of every broker), WH_ARGS_A / WH_ARGS_B (extra arguments of a1 and a3 / of b1),
# WH_BROKER_A, WH_BROKER_B, WH_BASE, BENCH_WH_CHANGELOG, BENCH_BOOTSTRAP, BENCH_NO_DOC=1,
# BENCH_WH_CONFIGS (a subset of "a1 a3 b1" while iterating; implies BENCH_NO_DOC=1).
# Time with the defaults: about 6 minutes at ~12,000 deliveries/s (a round is three ~17 s bursts
# and three 10 s windows; Kafka's start, the base's build and the warm-ups besides).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
EMIT="$ROOT/bin/firehose-emit"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
DATA="$ROOT/build/bench"
DOC="$ROOT/docs/performance.md"
ENDPOINTS="${BENCH_WH_ENDPOINTS:-100}"
EVENTS="${BENCH_WH_EVENTS:-2000}"
RUNS="${BENCH_WH_RUNS:-3}"
LAT_RATE="${BENCH_WH_LAT_RATE:-50}"
LAT_SECONDS="${BENCH_WH_LAT_SECONDS:-10}"
CHANGELOG="${BENCH_WH_CHANGELOG:-firehose.webhooks.deliveries}"
BROKER_A="${WH_BROKER_A:-$ROOT/bin/firehose-broker}"
BASE="${WH_BASE:-872b26b}"
read -r -a EXTRA <<<"${BENCH_WH_ARGS:-}"
TOKEN="bench-admin-token-$$"

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
[ -x "$BROKER_A" ] && [ -x "$EMIT" ] || die "bin/ is missing: run make"
command -v kcat >/dev/null || die "kcat is needed (apt-get install kcat)"
T0=$SECONDS
mkdir -p "$DATA"
if [ -n "${WH_BROKER_B:-}" ]; then
    BROKER_B="$WH_BROKER_B" BASE_NAME="$WH_BROKER_B"
else
    BROKER_B="$(base_broker "$BASE")" || die "WH_BASE=$BASE: no base broker"
    BASE_NAME="commit $(git -C "$ROOT" rev-parse --short=7 "$BASE^{commit}")"
fi
[ -x "$BROKER_B" ] || die "$BROKER_B is missing"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-wh.XXXXXX")"
STATE="" SINK_PID=""
declare -A BIN ARGS N URLS PIDS
cleanup() {
    local p
    for p in ${PIDS[@]+"${PIDS[@]}"} $SINK_PID; do kill "$p" 2>/dev/null || true; done
    for p in ${PIDS[@]+"${PIDS[@]}"} $SINK_PID; do wait "$p" 2>/dev/null || true; done
    if [ -n "$STATE" ]; then "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true; rm -rf "$STATE"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc -O2 -Wall -Wextra -Werror -o "$DATA/webhook_sink" "$ROOT/bench/webhook_sink.c"

# ---- configurations ----------------------------------------------------------------------------
P="wb$$"   # this run's topic and group prefix
# BENCH_WH_CONFIGS: a subset while iterating (e.g. "a1 b1"); the document needs all three
read -r -a CONFIGS <<<"${BENCH_WH_CONFIGS:-a1 a3 b1}"
[ "${#CONFIGS[@]}" -eq 3 ] || BENCH_NO_DOC=1
# args_for CONFIG BINARY EXTRA...: EXTRA; and when BINARY keeps webhook state in Kafka (it takes
# webhooks.secret_key), a generated key and CONFIG's own endpoint and changelog topics
args_for() {
    local c="$1" bin="$2"; shift 2
    [ "$#" -eq 0 ] || printf '%s\n' "$@"
    if "$bin" --help 2>&1 | grep -q 'webhooks\.secret_key'; then
        printf -- '--webhooks.secret_key=%s\n' "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
        printf -- '%s\n' "--topics.webhook_endpoints=$P-$c.wh-endpoints" \
            "--topics.webhook_deliveries=$P-$c.wh-deliveries" --webhooks.migrate_from=
    fi
}
read -r -a a_extra <<<"${WH_ARGS_A:-}"
read -r -a b_extra <<<"${WH_ARGS_B:-}"
BIN[a1]="$BROKER_A" BIN[a3]="$BROKER_A" BIN[b1]="$BROKER_B"
N[a1]=1 N[a3]=3 N[b1]=1
# One key per side: the instances of a configuration must share it.
ARGS[a1]="$(args_for a1 "$BROKER_A" ${EXTRA[@]+"${EXTRA[@]}"} ${a_extra[@]+"${a_extra[@]}"})"
ARGS[a3]="$(args_for a3 "$BROKER_A" ${EXTRA[@]+"${EXTRA[@]}"} ${a_extra[@]+"${a_extra[@]}"})"
ARGS[b1]="$(args_for b1 "$BROKER_B" ${EXTRA[@]+"${EXTRA[@]}"} ${b_extra[@]+"${b_extra[@]}"})"
shared_endpoints() { "${BIN[$1]}" --help 2>&1 | grep -q 'webhooks\.secret_key'; }

# ---- Kafka -----------------------------------------------------------------------------------
if [ -n "${BENCH_BOOTSTRAP:-}" ]; then
    BOOTSTRAP="$BENCH_BOOTSTRAP"
    say "using Kafka at $BOOTSTRAP (topics $P-*.* are created by the brokers)"
    TOPIC_ARGS=(--topics.create=true --topics.partitions=6)
else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-kafka.XXXXXX")"
    BOOTSTRAP="$(KAFKA_WATCH_PID=$$ "$KAFKA_SH" start "$STATE")"
    specs=()
    for c in "${CONFIGS[@]}"; do
        specs+=("$P-$c.events:6" "$P-$c.logs:1" "$P-$c.dlq:1")
        ! shared_endpoints "$c" || specs+=("$P-$c.wh-endpoints:1+cleanup.policy=compact"
            "$P-$c.wh-deliveries:6+cleanup.policy=compact,delete+retention.ms=604800000")
    done
    "$KAFKA_SH" create-topics "$STATE" "${specs[@]}" 2>/dev/null
    TOPIC_ARGS=(--topics.create=false)
fi

# ---- receiver and brokers ------------------------------------------------------------------
"$DATA/webhook_sink" 0 </dev/null >"$WORK/sink.out" &
SINK_PID=$!
for _ in $(seq 100); do grep -q '^port=' "$WORK/sink.out" 2>/dev/null && break; sleep 0.05; done
SINK_PORT="$(sed -n 's/^port=//p' "$WORK/sink.out")"
[ -n "$SINK_PORT" ] || die "the receiver did not start"

# start_instance CONFIG I: starts instance I of CONFIG in WORK/CONFIG/iI; sets URL and PID
start_instance() {
    local c="$1" i="$2" dir="$WORK/$1/i$2" args
    mkdir -p "$dir"
    mapfile -t args < <(grep -v '^$' <<<"${ARGS[$c]}" || true)
    "${BIN[$c]}" --brokers "$BOOTSTRAP" --listen 127.0.0.1:0 --kafka.group "$P-$c-ingest" \
        --topic-events "$P-$c.events" --topic-logs "$P-$c.logs" --topic-dlq "$P-$c.dlq" \
        "${TOPIC_ARGS[@]}" --view.enabled=false --view.path="$dir/view.db" \
        --auth.admin_token="$TOKEN" --webhooks.path="$dir/webhooks.db" \
        --webhooks.group="$P-$c-webhooks" --webhooks.allow_cidrs=127.0.0.1/32 \
        --broker.stats_interval_ms=600000 ${args[@]+"${args[@]}"} 2>"$dir/broker.log" &
    PID=$!
    URL=""
    for _ in $(seq 300); do
        URL="$(sed -n 's/.*event=http\.listening url=\([^ ]*\).*/\1/p' "$dir/broker.log" | tail -n 1)"
        [ -n "$URL" ] && return 0
        kill -0 "$PID" 2>/dev/null || { wait "$PID" 2>/dev/null || true; return 1; }
        sleep 0.1
    done
    return 1
}
for c in "${CONFIGS[@]}"; do
    URLS[$c]=""
    for i in $(seq 1 "${N[$c]}"); do
        # Topics a broker just created may have no leader for a moment (it then exits): again.
        for attempt in 1 2 3 4 5; do
            start_instance "$c" "$i" && break
            say "$c/$i exited (attempt $attempt): $(grep -m1 'level=error' "$WORK/$c/i$i/broker.log" || true)"
            sleep 2
        done
        [ -n "$URL" ] || die "$c/$i did not listen"
        URLS[$c]+="$URL " PIDS[$c-$i]=$PID
    done
    say "$c: ${N[$c]} instance(s) of ${BIN[$c]} at ${URLS[$c]}"
done

api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }
create_endpoints() {   # create_endpoints URL
    local i
    for i in $(seq 1 "$ENDPOINTS"); do
        api -o /dev/null -d "{\"url\":\"http://127.0.0.1:$SINK_PORT/ep/$i\",\"filter\":{}}" \
            "${1}api/v1/webhooks" || die "creating endpoint $i at $1 failed"
    done
}
listed() { api "${1}api/v1/webhooks" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["webhooks"]))'; }
for c in "${CONFIGS[@]}"; do
    read -r -a urls <<<"${URLS[$c]}"
    if shared_endpoints "$c"; then
        create_endpoints "${urls[0]}"
        for u in "${urls[@]}"; do
            for _ in $(seq 600); do [ "$(listed "$u")" -ge "$ENDPOINTS" ] && break; sleep 0.1; done
            [ "$(listed "$u")" -ge "$ENDPOINTS" ] || die "$c: $u does not list the $ENDPOINTS endpoints"
        done
    else
        for u in "${urls[@]}"; do create_endpoints "$u"; done
    fi
done

# metric CONFIG NAME: NAME summed over CONFIG's instances
metric() {
    local u s=0 v
    for u in ${URLS[$1]}; do
        v="$(curl -sf "${u}metrics" | awk -v n="$2" '$1 == n {print $2}')"
        s=$((s + ${v:-0}))
    done
    echo "$s"
}
wait_delivered() {   # wait_delivered CONFIG TOTAL TIMEOUT_S: prints the time (s, epoch) it was reached
    local want="$2" deadline=$((SECONDS + $3)) d
    while :; do
        d="$(metric "$1" firehose_webhook_delivered_total)"
        if [ "$d" -ge "$want" ]; then date +%s.%N; return 0; fi
        [ $SECONDS -lt $deadline ] || die "$1: stuck at $d of $want deliveries"
        sleep 0.02
    done
}
gen() {   # gen FILE COUNT SEED: status events (the webhook consumer reads the events topic)
    python3 "$ROOT/tests/integration/gen_events.py" --count "$2" --seed "$3" --exclude-types 'log.*' >"$1"
}
emit() {   # emit CONFIG [FILE]: to CONFIG's topics
    local c="$1"; shift
    "$EMIT" --brokers "$BOOTSTRAP" --topic-events "$P-$c.events" --topic-logs "$P-$c.logs" \
        --topic-dlq "$P-$c.dlq" "$@" 2>>"$WORK/emit.log" >/dev/null
}
# latency CONFIG FILE: every instance's latency histogram series
latency() { local u; for u in ${URLS[$1]}; do curl -sf "${u}metrics" | grep '^firehose_webhook_latency_ms' || true; done >"$2"; }
# changelog_topic CONFIG: the changelog topic CONFIG's brokers write (args_for gives each its own)
changelog_topic() { if shared_endpoints "$1"; then echo "$P-$1.wh-deliveries"; else echo "$CHANGELOG"; fi; }
# changelog_bytes TOPIC FROM_MS TO_MS: key+value bytes of TOPIC's records timestamped from FROM
# to a second after TO (records the last acknowledgements caused), or "absent" when the topic does
# not exist (kcat -L without -t never creates a topic)
changelog_bytes() {
    if ! kcat -L -b "$BOOTSTRAP" -m 10 2>/dev/null | grep -q "^ *topic \"$1\" with"; then
        echo absent; return 0
    fi
    sleep 1
    kcat -C -b "$BOOTSTRAP" -t "$1" -o "s@$2" -o "e@$(($3 + 1000))" -e -q -f '%K %S\n' 2>/dev/null |
        awk '{s += ($1 > 0 ? $1 : 0) + ($2 > 0 ? $2 : 0)} END {printf "%d\n", s}'
}
now_ms() { date +%s%3N; }

# ---- warm-up ---------------------------------------------------------------------------------
gen "$WORK/warm.ndjson" 200 500
declare -A TOTAL
for c in "${CONFIGS[@]}"; do
    emit "$c" "$WORK/warm.ndjson"
    TOTAL[$c]=$((200 * ENDPOINTS))
    wait_delivered "$c" "${TOTAL[$c]}" 180 >/dev/null
    say "$c warm-up: ${TOTAL[$c]} deliveries to $ENDPOINTS endpoints"
done

# ---- rounds: each configuration in turn, a throughput burst, then latency at a steady rate ------
for c in "${CONFIGS[@]}"; do : >"$WORK/$c-rate.txt"; : >"$WORK/$c-changelog.txt"; done
for r in $(seq 1 "$RUNS"); do
    gen "$WORK/run$r.ndjson" "$EVENTS" $((600 + r))
    gen "$WORK/lat$r.ndjson" $((LAT_RATE * LAT_SECONDS)) $((900 + r))
    # the order turns each round (a1 a3 b1, a3 b1 a1, ...): no configuration is always the first
    # after the others' turns
    k=$(((r - 1) % ${#CONFIGS[@]}))
    for c in "${CONFIGS[@]:k}" "${CONFIGS[@]:0:k}"; do
        n=$((EVENTS * ENDPOINTS))
        TOTAL[$c]=$((TOTAL[$c] + n))
        m0="$(now_ms)" t0="$(date +%s.%N)"
        emit "$c" "$WORK/run$r.ndjson"
        t1="$(wait_delivered "$c" "${TOTAL[$c]}" 600)"
        rate="$(python3 -c "print(round($n / ($t1 - $t0)))")"
        echo "$rate" >>"$WORK/$c-rate.txt"
        m1="$(now_ms)"
        bytes="$(changelog_bytes "$(changelog_topic "$c")" "$m0" "$m1")"
        if [ "$bytes" = absent ]; then
            echo absent >>"$WORK/$c-changelog.txt"
            note="changelog topic $(changelog_topic "$c") absent"
        else
            per="$(python3 -c "print(round($bytes / $n, 1))")"
            echo "$per" >>"$WORK/$c-changelog.txt"
            note="changelog $bytes bytes = $per bytes/delivery"
        fi
        say "round $r $c: $n signed deliveries in $(python3 -c "print(round($t1 - $t0, 2))") s = $rate/s; $note"

        latency "$c" "$WORK/$c-lat$r-0.txt"
        python3 - "$WORK/lat$r.ndjson" "$LAT_RATE" <<'EOF' | emit "$c"
import sys, time
lines = open(sys.argv[1]).read().splitlines()
rate = int(sys.argv[2])
t0 = time.monotonic()
for i, line in enumerate(lines):
    delay = t0 + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
EOF
        TOTAL[$c]=$((TOTAL[$c] + LAT_RATE * LAT_SECONDS * ENDPOINTS))
        wait_delivered "$c" "${TOTAL[$c]}" 300 >/dev/null
        latency "$c" "$WORK/$c-lat$r-1.txt"
        say "round $r $c: $((LAT_RATE * LAT_SECONDS)) events at $LAT_RATE/s delivered"
    done
done
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
PIDS=()
kill "$SINK_PID"; wait "$SINK_PID" || true; SINK_PID=""
SINK="$(tail -n 1 "$WORK/sink.out")"
ALL=0
for c in "${CONFIGS[@]}"; do ALL=$((ALL + TOTAL[$c])); done
say "receiver: $SINK (expected requests=$ALL)"
case "$SINK" in "requests=$ALL signed=$ALL") ;; *) die "the receiver saw $SINK, expected $ALL signed requests" ;; esac

# ---- report ----------------------------------------------------------------------------------
export WORK ENDPOINTS EVENTS RUNS LAT_RATE LAT_SECONDS ALL CHANGELOG BASE_NAME
export RUN_CONFIGS="${CONFIGS[*]}"
export WH_ARGS_A="${WH_ARGS_A:-}" WH_ARGS_B="${WH_ARGS_B:-}" WH_BROKER_B="${WH_BROKER_B:-}"
export WH_BASE="${WH_BASE:-}" WH_BROKER_A="${WH_BROKER_A:-}"
export DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" CURL="$(curl-config --version 2>/dev/null || echo libcurl)"
export SQLITE="$(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?')" RUN_S=$((SECONDS - T0))
export KAFKA_DESC="$([ -n "${BENCH_BOOTSTRAP:-}" ] && echo "external Kafka at $BENCH_BOOTSTRAP" \
    || echo "Apache Kafka 3.9.1 (KRaft, one node on loopback, same machine), events topics with 6 partitions")"
PYTHONPATH="$ROOT/bench" python3 - >"$WORK/section.md" <<'EOF'
import os, re, statistics, sys
import stats
env = os.environ
W = env["WORK"]
CONFIGS = [(c, n) for c, n in [("a1", "this tree, 1 instance"), ("a3", "this tree, 3 instances"),
                               ("b1", "base (%s), 1 instance" % env["BASE_NAME"])]
           if c in env["RUN_CONFIGS"].split()]
R = int(env["RUNS"])
rates = {c: [int(x) for x in open(os.path.join(W, c + "-rate.txt")).read().split()] for c, _ in CONFIGS}
cl = {c: open(os.path.join(W, c + "-changelog.txt")).read().split() for c, _ in CONFIGS}

def hist(path):
    """Cumulative buckets summed over the instances whose series the file holds."""
    b = {}
    for line in open(path):
        m = re.match(r'firehose_webhook_latency_ms_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            b[le] = b.get(le, 0) + int(m.group(2))
    return b

def window(c, r):
    """p50, p99 (upper bounds of the buckets holding them; buckets are cumulative) and samples of
    configuration c's window in round r."""
    h0, h1 = hist(os.path.join(W, "%s-lat%d-0.txt" % (c, r))), hist(os.path.join(W, "%s-lat%d-1.txt" % (c, r)))
    d = sorted((le, h1[le] - h0.get(le, 0)) for le in h1)
    n = d[-1][1] if d else 0
    q = lambda p: next((le for le, k in d if k >= p * n), float("inf"))
    return q(0.50), q(0.99), n

lat = {c: [window(c, r) for r in range(1, R + 1)] for c, _ in CONFIGS}
at = stats.num(int(env["LAT_RATE"]) * int(env["ENDPOINTS"]))
runs = lambda vals: ", ".join("%g" % v for v in vals)
med = lambda c: statistics.median(rates[c]) if c in rates else None
a_to_b = stats.ratio(med("a1"), med("b1"))
a3_to_a1 = stats.ratio(med("a3"), med("a1"))

def changelog(c):
    vals = [float(x) for x in cl[c] if x != "absent"]
    if not vals:
        return "no changelog topic"
    return stats.med_range(vals, prec=1) + ((" (absent in %d rounds)" % (len(cl[c]) - len(vals)))
                                            if len(vals) < len(cl[c]) else "")

for c, name in CONFIGS:
    p50, p99 = [x[0] for x in lat[c]], [x[1] for x in lat[c]]
    print("webhooks %s (%s): %s signed deliveries/s (rounds: %s); latency at %s deliveries/s: p50 <= %s ms, "
          "p99 <= %s ms; changelog bytes/delivery: %s" % (
              c, name, stats.med_range(rates[c]), runs(rates[c]), at, stats.med_range(p50),
              stats.med_range(p99), changelog(c).replace("`", "")), file=sys.stderr)
print("webhooks: a1/b1 = %s, a3/a1 = %s (ratios of the throughput medians)" % (a_to_b, a3_to_a1), file=sys.stderr)

knobs = " ".join("%s=%s" % (k, env[k]) for k in ("WH_BROKER_A", "WH_BROKER_B", "WH_BASE", "WH_ARGS_A", "WH_ARGS_B")
                 if env.get(k))
cmd = stats.command("bench/webhooks.sh")
if knobs:
    cmd = "`%s %s" % (knobs, cmd[1:])
rows = []
for c, name in CONFIGS:
    p50, p99, n = [x[0] for x in lat[c]], [x[1] for x in lat[c]], [x[2] for x in lat[c]]
    rows.append("| %s | %s | %s | <= %s | <= %s | %s |" % (
        name, stats.med_range(rates[c], bold=True), ", ".join(stats.num(x) for x in rates[c]),
        stats.med_range(p50, unit=" ms"), stats.med_range(p99, unit=" ms"), changelog(c)))
print("\n".join([
    "## Webhooks: Kafka to %s endpoints on a local receiver" % env["ENDPOINTS"],
    "",
    "- Command: %s (what `make bench` runs; %s endpoints with filter `{}` on bench/webhook_sink.c, a C epoll "
    "HTTP/1.1 keep-alive receiver on 127.0.0.1 answering 204; three configurations side by side, each with "
    "its own topics, groups and data directories: this tree's broker with 1 instance, with 3 instances "
    "sharing the webhook consumer group, and the base's broker with 1 instance; %s rounds, each a throughput "
    "burst of %s events and a latency window per configuration, configurations taking turns)%s" % (
        cmd, env["ENDPOINTS"], env["RUNS"], stats.num(int(env["EVENTS"])),
        (" with `%s`" % env["BENCH_WH_ARGS"]) if env.get("BENCH_WH_ARGS") else ""),
    "- Date: %s; the script took %s s" % (env["DATE"], env["RUN_S"]),
    "- Machine: %s; Kafka, every broker, the receiver and the emitter share them" % stats.machine(),
    "- Software: %s, SQLite %s; %s" % (env["CURL"], env["SQLITE"], env["KAFKA_DESC"]),
    "- Throughput: signed deliveries/s = events x endpoints / (the configuration's last 2xx - start of emit); "
    "each delivery is signed (HMAC-SHA256), POSTed and its result recorded. The receiver counted %s requests, "
    "all with webhook-id, webhook-timestamp and a v1 signature." % stats.num(int(env["ALL"])),
    "- Latency: in each round, %s events/s for %s s (%s deliveries/s), from the brokers' histograms "
    "`firehose_webhook_latency_ms` over that window (Kafka produce timestamp to the 2xx of the first attempt); "
    "values are bucket upper bounds." % (env["LAT_RATE"], env["LAT_SECONDS"], at),
    "- Changelog: key+value bytes of the records written to the configuration's delivery changelog "
    "(this tree: its own `topics.webhook_deliveries`) during a burst, per delivery (kcat).",
    "- Each figure is the median of the rounds, with the lowest and highest round in parentheses. "
    "Ratios of the throughput medians: this tree / base, 1 instance = **%s**; 3 instances / 1 instance = %s."
    % (a_to_b, a3_to_a1),
    "- Goal (DESIGN.md): at least 20,000 signed deliveries/s.",
    "",
    "| configuration | signed deliveries/s (burst of %s x %s) | rounds | produce -> 2xx p50 at %s/s | p99 | "
    "changelog bytes/delivery |" % (stats.num(int(env["EVENTS"])), env["ENDPOINTS"], at),
    "|---|---:|---|---:|---:|---:|",
] + rows))
EOF
if [ -n "${BENCH_NO_DOC:-}" ]; then
    cat "$WORK/section.md"
else
    python3 "$ROOT/bench/write_section.py" webhooks "$DOC" <"$WORK/section.md"
fi
say "done in $((SECONDS - T0)) s"
