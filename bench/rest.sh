#!/usr/bin/env bash
# REST benchmark: wrk against /api/v1/last-green and /api/v1/pending of a broker whose view holds
# 10,000 pending requests, while ~10,000 events/s flow through Kafka into it; plus freshness
# (produce -> visible in REST).
#
#   make bench   (runs bench/ingest.sh, then this)   or   bash bench/rest.sh
#
# Starts Kafka with tests/kafka/kafka.sh (or uses BENCH_KAFKA_STATE), creates fresh topics,
# starts bin/firehose-broker with a fresh view, loads 10,000 pending build requests, then, for
# each rate of BENCH_RATES, paces a generated event stream into bin/firehose-emit's stdin at that
# many events/s. While it flows, wrk (Debian package; installed with apt-get when missing) runs
# BENCH_WRK_SECONDS against each endpoint, and probe requests injected into the stream are polled
# through REST until visible. That is done BENCH_REST_RUNS times per rate, interleaved (2000,
# 10000, 2000, 10000, ...), each run with its own ingest session, wrk runs and probes; the report
# gives every figure as the median of the runs with their range. Writes docs/performance.md
# between the bench:rest markers (bench/write_section.py).
#
# Knobs (environment): BENCH_RATES (events/s; "2000 10000"), BENCH_REST_RUNS (runs per rate and
#   per side-by-side URL; 3), BENCH_PENDING (10000), BENCH_WRK_SECONDS (10),
#   BENCH_WRK_THREADS (1), BENCH_WRK_CONNECTIONS (16), BENCH_HTTP_THREADS (2),
#   BENCH_KAFKA_STATE (the DIR of a Kafka already started with `tests/kafka/kafka.sh start DIR`),
#   BENCH_NO_DOC=1 (do not touch docs/performance.md), BENCH_BUILDBOT=0 (skip the Buildbot side),
#   BENCH_BROKER (another firehose-broker binary, e.g. an older commit's, measured instead of
#   this tree's), BENCH_BROKER_LABEL (what the report calls it; "this tree"),
#   BENCH_REST_ARGS (extra broker arguments, e.g. "--derive.enabled=false"),
#   BENCH_BROKER_B (a second firehose-broker binary measured beside the first in the same run),
#   BENCH_BROKER_B_LABEL (what the report calls it; "base"), BENCH_REST_ARGS_B (its extra
#   arguments; BENCH_REST_ARGS when unset, none when set empty).
#
# With BENCH_BROKER_B, two brokers (A, the first; B) share one Kafka, each with its own topics,
# consumer group and fresh view, both loaded with the same pending requests and fed the same
# event stream. Their sessions interleave: per run and rate, A's session, then B's, then the next
# rate, so whatever else the machine does falls on both alike. Each table has a row per broker
# and the requests/s table a ratio row per endpoint and rate (A / B of the medians, and the range
# of the per-round ratios). The Buildbot side by side measures A only (B is stopped first).
# Options a broker binary does not list in its --help (an older commit's) are not passed to it,
# and the report names them (with one broker, all but --topic-derived).
#
# Side by side in the same run: a Buildbot master (PyPI `buildbot` + `buildbot-www`, installed
# into build/bench/buildbot-venv when missing) whose own database holds the same number of
# pending build requests (bench/buildbot/load.py), its data API on a loopback port; wrk runs
# against /api/v2/buildrequests?claimed=false (every pending request, as Buildbot answers it) and
# with limit=100 (one page like ours), and against our /api/v1/pending with limit=100 and
# limit=10000, all after the ingest has stopped so both sides see the same machine. The four URLs
# run back to back (Buildbot first, per answer size) BENCH_REST_RUNS times; each firehose /
# Buildbot ratio is of the two medians, beside the range of the per-round ratios.
#
# Time with the defaults: about 7-8 minutes (6 ingest sessions of ~40 s, 12 side-by-side wrk runs
# of 10 s, Kafka and the Buildbot master starting), plus, once, the stream file and Buildbot's venv;
# BENCH_BROKER_B adds as many ingest sessions again (about 4 minutes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
EMIT="$ROOT/bin/firehose-emit"
BROKER="${BENCH_BROKER:-$ROOT/bin/firehose-broker}"
BROKER_B="${BENCH_BROKER_B:-}"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
GEN="$ROOT/tests/integration/gen_events.py"
DATA="$ROOT/build/bench"
DOC="$ROOT/docs/performance.md"

read -r -a RATES <<<"${BENCH_RATES:-2000 10000}"
RUNS="${BENCH_REST_RUNS:-3}"
SUM_RATES=0
for r in "${RATES[@]}"; do SUM_RATES=$((SUM_RATES + r)); done
PENDING="${BENCH_PENDING:-10000}"
WRK_SECONDS="${BENCH_WRK_SECONDS:-10}"
WRK_THREADS="${BENCH_WRK_THREADS:-1}"
WRK_CONN="${BENCH_WRK_CONNECTIONS:-16}"
HTTP_THREADS="${BENCH_HTTP_THREADS:-2}"
# The stream must outlast warm-up + two wrk runs + probes.
STREAM_SECONDS=$((WRK_SECONDS * 2 + 15))
STREAM_COUNT=$((SUM_RATES * STREAM_SECONDS * RUNS))

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$EMIT" ] && [ -x "$BROKER" ] || die "bin/ is incomplete: run make"
[ -z "$BROKER_B" ] || [ -x "$BROKER_B" ] || die "BENCH_BROKER_B: $BROKER_B is not an executable"
if ! command -v wrk >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    say "installing wrk (Debian package)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2 || die "cannot install wrk"
fi
T0=$SECONDS
ONCE_S=0   # of the run time, what went to things cached for later runs (stream file, Buildbot venv)
mkdir -p "$DATA"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-rest.XXXXXX")"
STATE=""
SIDE_PID=()
BB_DIR=""
cleanup() {
    local p
    for p in ${SIDE_PID[@]+"${SIDE_PID[@]}"}; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    if [ -n "$BB_DIR" ] && [ -f "$BB_DIR/twistd.pid" ]; then
        "$BB_VENV/bin/buildbot" stop "$BB_DIR" >/dev/null 2>&1 || kill "$(cat "$BB_DIR/twistd.pid")" 2>/dev/null || true
    fi
    if [ -n "$STATE" ]; then
        "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true
        rm -rf "$STATE"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Kafka and topics ------------------------------------------------------------------------
if [ -n "${BENCH_KAFKA_STATE:-}" ]; then
    KSTATE="$BENCH_KAFKA_STATE"
    BOOTSTRAP="$("$KAFKA_SH" status "$KSTATE")" || die "no Kafka running in $KSTATE"
    say "using Kafka at $BOOTSTRAP"
else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-kafka.XXXXXX")"
    KSTATE="$STATE"
    BOOTSTRAP="$(KAFKA_WATCH_PID=$$ "$KAFKA_SH" start "$STATE")"
fi
# Side 0 is BROKER (A); side 1, with BENCH_BROKER_B, the broker it is compared with (B). Per side:
# binary, label, topic prefix (also its consumer group), extra arguments.
PREFIX="bench-rest-$$-$(date +%s)"
SIDE_BIN=("$BROKER")
SIDE_LABEL=("${BENCH_BROKER_LABEL:-this tree}")
SIDE_PREFIX=("$PREFIX")
SIDE_ARGS=("${BENCH_REST_ARGS:-}")
if [ -n "$BROKER_B" ]; then
    SIDE_BIN+=("$BROKER_B")
    SIDE_LABEL+=("${BENCH_BROKER_B_LABEL:-base}")
    SIDE_PREFIX+=("$PREFIX-b")
    SIDE_ARGS+=("${BENCH_REST_ARGS_B-${BENCH_REST_ARGS:-}}")
fi
SIDE_TOPICS=()   # per side, the topic options as one string (topic names hold no spaces)
SIDE_OPTS=()     # per side, the optional broker options its binary has, as one string
SIDE_DROPPED=()  # per side, the optional options its binary lacks (named in the report)
for i in "${!SIDE_BIN[@]}"; do
    p="${SIDE_PREFIX[$i]}"
    "$KAFKA_SH" create-topics "$KSTATE" "$p.events:6" "$p.logs:6" "$p.dlq:1" "$p.derived:6" 2>/dev/null
    # --help is read whole before searching: grep -q stopping early could kill the writer
    # with SIGPIPE, and pipefail would turn that into "option missing".
    help="$("${SIDE_BIN[$i]}" --help 2>&1 || true)"
    topics="--topic-events $p.events --topic-logs $p.logs --topic-dlq $p.dlq"
    opts="" dropped=""
    # a broker that derives events reads its topic back at start (an older one has no such option)
    if grep -qF -- '--topic-derived' <<<"$help"; then
        topics+=" --topic-derived $p.derived"
    else
        dropped=" --topic-derived"
    fi
    SIDE_TOPICS+=("$topics")
    for o in --topics.create=false --webhooks.path="$WORK/s$i-webhooks.db" --auth.anonymous_read \
        --http.threads="$HTTP_THREADS"; do
        if grep -qF -- "${o%%=*}" <<<"$help"; then opts+=" $o"; else dropped+=" ${o%%=*}"; fi
    done
    SIDE_OPTS+=("$opts")
    SIDE_DROPPED+=("${dropped# }")
    [ -z "$dropped" ] || say "${SIDE_LABEL[$i]}: the binary has no$dropped; it runs without"
done
# With one broker the report does not mention a missing --topic-derived (an older broker that
# derives nothing), as before; with two it names it, since it is a difference between them.
[ "${#SIDE_BIN[@]}" = 2 ] ||
    SIDE_DROPPED[0]="$(tr ' ' '\n' <<<"${SIDE_DROPPED[0]}" | grep -vx -- '--topic-derived' | paste -sd' ' || true)"

# ---- inputs ------------------------------------------------------------------------------------
STREAM_FILE="$DATA/rest-stream-$STREAM_COUNT.ndjson"
if ! [ -s "$STREAM_FILE" ] || [ "$GEN" -nt "$STREAM_FILE" ]; then
    say "generating $STREAM_FILE"
    g0=$SECONDS
    python3 "$GEN" --count "$STREAM_COUNT" --seed 21 --start "$(date -u +%Y-%m-%dT%H:00:00Z)" >"$STREAM_FILE.tmp"
    mv "$STREAM_FILE.tmp" "$STREAM_FILE"
    ONCE_S=$((ONCE_S + SECONDS - g0))
fi
PENDING_FILE="$WORK/pending.ndjson"
python3 - "$PENDING" >"$PENDING_FILE" <<'EOF'
import json, sys, time, datetime
n = int(sys.argv[1])
now = time.time()
def ts(t):
    d = datetime.datetime.fromtimestamp(int(t), tz=datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % int((t % 1) * 1000)
for i in range(n):
    brid = 50_000_001 + i
    t = now - 3600 + i * 0.3
    b = i % 40
    print(json.dumps({"specversion": "1.0", "id": "bench-pending-%d" % i, "source": "buildbot://bench",
        "type": "buildrequest.new", "time": ts(t), "subject": "buildrequests/%d" % brid,
        "datacontenttype": "application/json", "master": "bench", "seq": i + 1,
        "data": {"buildrequestid": brid, "builder": "queue-builder-%02d" % b, "builderid": 1000 + b,
                 "branch": "main", "revision": "%040x" % (i + 1), "repository": "https://git.example.org/queue.git",
                 "project": "queue", "codebase": "", "owner": "dev%d@example.org" % (i % 97),
                 "buildsetid": brid, "priority": 0, "submitted_at": round(t, 3), "reason": "bench"}},
        separators=(",", ":")))
EOF

# ---- brokers -----------------------------------------------------------------------------------
# With two, both run from here to the end of the sessions, but only the one being measured gets
# ingest and wrk; the other sits idle (its view caught up, its consumer long-polling empty
# topics; its CPU over each of the other's sessions is recorded and reported). Restarting a
# broker per session instead would put reopening the view and rejoining the consumer group into
# every session, which is not how a broker serves.
SIDE_URL=()
SIDE_START=()    # per side, the stream line its next session starts at
for i in "${!SIDE_BIN[@]}"; do
    read -r -a topics <<<"${SIDE_TOPICS[$i]}"
    read -r -a opts <<<"${SIDE_OPTS[$i]}"
    read -r -a extra <<<"${SIDE_ARGS[$i]}"
    LOG="$WORK/s$i-broker.log"
    "${SIDE_BIN[$i]}" --brokers "$BOOTSTRAP" --listen 127.0.0.1:0 --kafka.group "${SIDE_PREFIX[$i]}" \
        "${topics[@]}" --view.path "$WORK/s$i-view.db" ${opts[@]+"${opts[@]}"} ${extra[@]+"${extra[@]}"} 2>"$LOG" &
    SIDE_PID+=($!)
    URL=""
    for _ in $(seq 1 600); do grep -q 'event=http.listening' "$LOG" && break; sleep 0.05; done
    URL="$(grep -o 'event=http.listening url=[^ ]*' "$LOG" | head -n1 | cut -d= -f3 || true)"
    [ -n "$URL" ] || { tail -n 20 "$LOG" >&2; die "${SIDE_LABEL[$i]}: broker did not start"; }
    SIDE_URL+=("$URL")
    SIDE_START+=(0)
    say "broker ${SIDE_LABEL[$i]} at $URL"
done

for i in "${!SIDE_BIN[@]}"; do
    read -r -a topics <<<"${SIDE_TOPICS[$i]}"
    "$EMIT" --brokers "$BOOTSTRAP" "${topics[@]}" "$PENDING_FILE" 2>"$WORK/emit-pending.err" ||
        { cat "$WORK/emit-pending.err" >&2; die "loading the pending requests failed"; }
    python3 - "${SIDE_URL[$i]}" "$PENDING" <<'EOF'
import json, sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 120
while time.time() < deadline:
    a = json.load(urllib.request.urlopen(url + "api/v1/pending?limit=1"))
    if a["total"] >= n and a["as_of"]["behind"] == 0:
        sys.exit(0)
    time.sleep(0.2)
sys.exit("the view did not reach %d pending requests" % n)
EOF
    say "$PENDING pending requests in the view of ${SIDE_LABEL[$i]}"
done

# Last green: the busiest branch of the generated stream.
LG_PATH="api/v1/last-green?branch=main&repository=https%3A%2F%2Fgit.example.org%2Fchromium%2Fsrc.git"
PD_PATH="api/v1/pending"

# ---- per rate: ingest + probes + wrk --------------------------------------------------------
# The pacer feeds the generated stream into firehose-emit's stdin at RATE events/s (continuing
# where this broker's previous session stopped, so no event is sent twice; with two brokers each
# gets the same stream from its first line); every 250 ms a probe request goes
# in with it and is polled through REST until visible (produce -> visible, as a client sees it).
cat >"$WORK/pacer.py" <<'EOF'
import json, os, subprocess, sys, threading, time, urllib.request, datetime
env = os.environ
rate, secs, start_line = int(env["RATE"]), int(env["STREAM_SECONDS"]), int(env["START_LINE"])
out = env["OUT"]
emit = subprocess.Popen([env["EMIT"], "--brokers", env["BOOTSTRAP"]] + env["TOPIC_ARGS"].split() + ["-"],
                        stdin=subprocess.PIPE, stderr=open(out + ".emit.err", "w"))
lines = open(env["STREAM_FILE"], "rb")
for _ in range(start_line):
    lines.readline()
probes, seen, lock = {}, {}, threading.Lock()
stop = threading.Event()
tag = "%d%d" % (os.getpid(), start_line)
stop_at = [0.0]

def ts(t):
    d = datetime.datetime.fromtimestamp(int(t), tz=datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % int((t % 1) * 1000)

def probe_line(k, t):
    brid = 90_000_001 + start_line + k
    return (json.dumps({"specversion": "1.0", "id": "bench-probe-%s-%d" % (tag, k),
        "source": "buildbot://probe", "type": "buildrequest.new", "time": ts(t), "subject": "p",
        "datacontenttype": "application/json", "master": "probe", "seq": k + 1,
        "data": {"buildrequestid": brid, "builder": "probe", "builderid": 999999, "branch": "probe",
                 "revision": "", "repository": "probe", "project": "probe", "codebase": "",
                 "owner": "probe-%s-%d" % (tag, k), "buildsetid": brid, "priority": 0,
                 "submitted_at": round(t, 3), "reason": "probe"}}, separators=(",", ":")) + "\n").encode()

def poller():
    while True:
        try:
            body = json.load(urllib.request.urlopen(env["URL"] + "api/v1/pending?builder=probe&limit=10000"))
        except Exception:
            time.sleep(0.01)
            continue
        now = time.time()
        with lock:
            for p in body["pending"]:
                parts = p["owner"].split("-")
                if len(parts) == 3 and parts[1] == tag:
                    k = int(parts[2])
                    if k in probes and k not in seen:
                        seen[k] = now - probes[k]
            done = stop.is_set() and (len(seen) == len(probes) or now > stop_at[0] + 15)
        if done:
            break
        time.sleep(0.002)

th = threading.Thread(target=poller, daemon=True)
th.start()
t_start = time.time()
sent = 0
next_probe = t_start + 1
k = 0
while time.time() - t_start < secs:
    target = int((time.time() - t_start) * rate)
    chunk = []
    while sent < target:
        line = lines.readline()
        if not line:
            sys.exit("the stream file is too short")
        chunk.append(line)
        sent += 1
    now = time.time()
    if now >= next_probe:
        with lock:
            probes[k] = now
        chunk.append(probe_line(k, now))
        k += 1
        next_probe = now + 0.25
    if chunk:
        emit.stdin.write(b"".join(chunk))
        emit.stdin.flush()
    time.sleep(0.01)
elapsed = time.time() - t_start
stop_at[0] = time.time()
stop.set()
emit.stdin.close()
emit.wait()
th.join(20)
lat = sorted(seen.values())
def pct(p):
    return lat[min(len(lat) - 1, max(0, -(-p * len(lat) // 100) - 1))] * 1000 if lat else None
json.dump({"sent": sent, "elapsed": elapsed, "rate": sent / elapsed, "next_line": start_line + sent,
           "probes": len(probes), "probes_seen": len(seen), "probe_p50_ms": pct(50),
           "probe_p99_ms": pct(99), "probe_max_ms": lat[-1] * 1000 if lat else None}, open(out, "w"))
EOF

metrics() {
    python3 - "$URL" <<'EOF'
import sys, urllib.request, re, json
text = urllib.request.urlopen(sys.argv[1] + "metrics").read().decode()
out = {}
for m in re.finditer(r'^(firehose_view_freshness_ms_bucket\{le="([^"]+)"\}|firehose_view_events_applied_total'
                     r'|firehose_view_skipped_total|firehose_view_duplicates_total|process_resident_memory_bytes) (\d+)',
                     text, re.M):
    out[m.group(2) or m.group(1)] = int(m.group(3))
print(json.dumps(out))
EOF
}
view_ticks() {  # view_ticks PID: user + system CPU of the broker's view thread (fh-view), in ticks
    local t
    for t in /proc/"$1"/task/*; do
        [ "$(cat "$t/comm" 2>/dev/null)" = fh-view ] && { awk '{print $14 + $15}' "$t/stat"; return; }
    done
    echo 0
}
cpu_ticks() {   # cpu_ticks PID: user + system CPU of a process, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

export URL BOOTSTRAP EMIT STREAM_FILE STREAM_SECONDS TOPIC_ARGS
# session SIDE RUN RATE: one ingest session of side SIDE's broker (see above); appends
# "RATE RUN FILES-PREFIX SIDE" to sessions.txt.
session() {
    local i=$1 run=$2 RATE=$3 OUT PACER path ep c0 c1 v0 v1 t0 t1 o0 o1 other
    local pid="${SIDE_PID[$i]}" name=""
    URL="${SIDE_URL[$i]}"
    TOPIC_ARGS="${SIDE_TOPICS[$i]}"
    [ "${#SIDE_BIN[@]}" = 1 ] || name=", ${SIDE_LABEL[$i]}"
    say "run $run of $RUNS$name: ingest at $RATE events/s"
    OUT="$WORK/s$i-rate-$RATE-run$run"
    RATE="$RATE" START_LINE="${SIDE_START[$i]}" OUT="$OUT.stream.json" python3 "$WORK/pacer.py" &
    PACER=$!
    sleep 5
    metrics >"$OUT.metrics-before.json"
    other="${SIDE_PID[$((1 - i))]:-}"   # the idle broker, when there are two
    c0=$(cpu_ticks "$pid")
    v0=$(view_ticks "$pid")
    [ -z "$other" ] || o0=$(cpu_ticks "$other")
    t0=$(date +%s.%N)
    for ep in last-green pending; do
        path="$LG_PATH"
        [ "$ep" = pending ] && path="$PD_PATH"
        say "  wrk ${WRK_SECONDS}s -t$WRK_THREADS -c$WRK_CONN /$path"
        wrk -t"$WRK_THREADS" -c"$WRK_CONN" -d"${WRK_SECONDS}s" --latency "$URL$path" >"$OUT.wrk-$ep.txt"
    done
    c1=$(cpu_ticks "$pid")
    v1=$(view_ticks "$pid")
    t1=$(date +%s.%N)
    echo "$c0 $c1 $t0 $t1 $(getconf CLK_TCK) $(cut -d' ' -f1 /proc/loadavg) $v0 $v1" >"$OUT.cpu"
    if [ -n "$other" ]; then
        o1=$(cpu_ticks "$other")
        echo "$o0 $o1" >"$OUT.idle-cpu"
    fi
    metrics >"$OUT.metrics-after.json"
    curl -s "$URL$LG_PATH" >"$OUT.last-green.json" || true
    curl -s "$URL$PD_PATH?limit=1" >"$OUT.pending.json" || true
    wait "$PACER" || die "the ingest pacer failed at $RATE events/s"
    SIDE_START[$i]="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["next_line"])' "$OUT.stream.json")"
    echo "$RATE $run $OUT $i" >>"$WORK/sessions.txt"
    # Let the view catch up before the next session, so that one (this broker's next, or the
    # other broker's) does not share the machine with a backlog.
    python3 - "$URL" <<'EOF' || say "the view did not catch up within 120 s"
import json, sys, time, urllib.request
deadline = time.time() + 120
while time.time() < deadline:
    if json.load(urllib.request.urlopen(sys.argv[1] + "api/v1/pending?limit=1"))["as_of"]["behind"] == 0:
        sys.exit(0)
    time.sleep(0.5)
sys.exit(1)
EOF
}

: >"$WORK/sessions.txt"
for run in $(seq 1 "$RUNS"); do
    for RATE in "${RATES[@]}"; do
        for i in "${!SIDE_BIN[@]}"; do
            session "$i" "$run" "$RATE"
        done
    done
done
# The Buildbot side by side measures A alone: B stops here so it does not share the machine.
if [ "${#SIDE_PID[@]}" = 2 ]; then
    kill "${SIDE_PID[1]}" 2>/dev/null && wait "${SIDE_PID[1]}" 2>/dev/null || true
    SIDE_PID[1]=""
fi
URL="${SIDE_URL[0]}"

# ---- Buildbot's own data API, side by side -----------------------------------------------------
BB_VENV="$DATA/buildbot-venv"
BB_OK=0
if [ "${BENCH_BUILDBOT:-1}" != 0 ]; then
    if ! [ -x "$BB_VENV/bin/buildbot" ]; then
        say "installing Buildbot from PyPI into $BB_VENV"
        g0=$SECONDS
        { python3 -m venv "$BB_VENV" && "$BB_VENV/bin/pip" install -q buildbot buildbot-www; } >"$WORK/bb-install.log" 2>&1 ||
            { tail -n 20 "$WORK/bb-install.log" >&2; say "Buildbot did not install: skipping it"; }
        ONCE_S=$((ONCE_S + SECONDS - g0))
    fi
fi
if [ "${BENCH_BUILDBOT:-1}" != 0 ] && [ -x "$BB_VENV/bin/buildbot" ]; then
    BB_DIR="$WORK/buildbot-master"
    BB_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    export BB_WWW_PORT="$BB_PORT"
    "$BB_VENV/bin/buildbot" create-master -r "$BB_DIR" >"$WORK/bb.log" 2>&1
    cp "$ROOT/bench/buildbot/master.cfg" "$BB_DIR/master.cfg"
    # First start registers the builders in the master's database; then the requests go in,
    # and the second start serves them.
    if timeout 120 "$BB_VENV/bin/buildbot" start "$BB_DIR" >>"$WORK/bb.log" 2>&1 &&
        "$BB_VENV/bin/buildbot" stop "$BB_DIR" >>"$WORK/bb.log" 2>&1 &&
        "$BB_VENV/bin/python" "$ROOT/bench/buildbot/load.py" "$BB_DIR" "$PENDING" >>"$WORK/bb.log" 2>&1 &&
        timeout 120 "$BB_VENV/bin/buildbot" start "$BB_DIR" >>"$WORK/bb.log" 2>&1; then
        BB_URL="http://127.0.0.1:$BB_PORT/"
        BB_TOTAL="$(curl -s "${BB_URL}api/v2/buildrequests?claimed=false" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["buildrequests"]))' || echo 0)"
        say "Buildbot $("$BB_VENV/bin/python" -c 'import buildbot; print(buildbot.version)') at $BB_URL with $BB_TOTAL pending requests"
        BB_OK=1
        # Same wrk settings on both sides; the whole-queue answers are MB-sized, so they get
        # fewer connections and a long timeout.
        run_wrk() {   # run_wrk NAME RUN CONNECTIONS URL: wrk into side-NAME-RUN.txt; the answer's size once
            wrk -t"$WRK_THREADS" -c"$3" -d"${WRK_SECONDS}s" --timeout 30s --latency "$4" >"$WORK/side-$1-$2.txt" 2>&1 || true
            [ "$2" != 1 ] || curl -s -o /dev/null -w '%{size_download}' "$4" >"$WORK/side-$1.bytes" || echo 0 >"$WORK/side-$1.bytes"
        }
        for run in $(seq 1 "$RUNS"); do
            say "  side by side, run $run of $RUNS: wrk ${WRK_SECONDS}s on each of four URLs"
            run_wrk bb-page "$run" "$WRK_CONN" "${BB_URL}api/v2/buildrequests?claimed=false&limit=100"
            run_wrk fh-page "$run" "$WRK_CONN" "${URL}api/v1/pending?limit=100"
            run_wrk bb-all "$run" 2 "${BB_URL}api/v2/buildrequests?claimed=false"
            run_wrk fh-all "$run" 2 "${URL}api/v1/pending?limit=10000"
        done
        echo "$BB_TOTAL $("$BB_VENV/bin/python" -c 'import buildbot; print(buildbot.version)')" >"$WORK/side.meta"
    else
        tail -n 30 "$WORK/bb.log" >&2
        [ -f "$BB_DIR/twistd.log" ] && tail -n 30 "$BB_DIR/twistd.log" >&2
        say "the Buildbot master did not start: the report says so"
        echo "the Buildbot master did not start (see the bench output)" >"$WORK/side.failed"
    fi
fi

# ---- report ------------------------------------------------------------------------------------
export WORK PENDING WRK_SECONDS WRK_THREADS WRK_CONN HTTP_THREADS LG_PATH PD_PATH RUNS
export RATES_LIST="${RATES[*]}" DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" RUN_S=$((SECONDS - T0)) ONCE_S
export WRK_VERSION="$(wrk -v 2>&1 | head -n1 | awk '{print $2}')"
# Per side: LABEL_i, ARGS_i, DROPPED_i and WHAT_i (which binary, for the report).
for i in "${!SIDE_BIN[@]}"; do
    export "LABEL_$i=${SIDE_LABEL[$i]}" "ARGS_$i=${SIDE_ARGS[$i]}" "DROPPED_$i=${SIDE_DROPPED[$i]}" \
        "WHAT_$i=\`${SIDE_BIN[$i]}\`"
done
if [ -z "${BENCH_BROKER:-}" ]; then
    WHAT_0="bin/firehose-broker of this tree"
    if sha="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"; then
        WHAT_0+=" at $sha"
        [ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] ||
            WHAT_0+=" with uncommitted changes"
    fi
fi
PYTHONPATH="$ROOT/bench" python3 - >"$WORK/section.md" <<'EOF'
import json, os, re, statistics, sys
import stats

env = os.environ
W = env["WORK"]
med, med_range, num = statistics.median, stats.med_range, stats.num

def say(*a):
    print(*a, file=sys.stderr)

def wrk(path):
    """wrk --latency output: requests/s, p50/p99 in ms, requests, timeouts, non-2xx; None without an answer."""
    text = open(path).read() if os.path.exists(path) else ""
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if not m:
        return None
    def lat(p):
        m = re.search(r"^\s+%s%%\s+([0-9.]+)(us|ms|s)\s*$" % p, text, re.M)
        if not m:
            return None
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v * 1000 if u == "s" else v
    def count(pat):
        m = re.search(pat, text)
        return int(m.group(1)) if m else 0
    return {"rps": float(m.group(1)), "p50": lat(50), "p99": lat(99), "n": count(r"(\d+) requests in"),
            "timeouts": count(r"timeout (\d+)"), "non2xx": count(r"Non-2xx or 3xx responses: (\d+)")}

def hist(before, after, p):
    """Upper bound (ms) of the freshness bucket holding the p-th percentile over the session; inf past the
    last bound; None without samples. Also the number of samples."""
    les = sorted((k for k in after if re.fullmatch(r"[0-9]+|\+Inf", k)),
                 key=lambda k: float("inf") if k == "+Inf" else float(k))
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    if not total:
        return None, 0
    for k in les:
        if after[k] - before.get(k, 0) >= p / 100 * total:
            return float("inf") if k == "+Inf" else float(k), total
    return None, total

# ---- under ingest: one record per session (rate, run, side: 0 is A, 1 is B) ----
labels = [env["LABEL_0"]] + ([env["LABEL_1"]] if "LABEL_1" in env else [])
two = len(labels) == 2
sessions = []
for line in open(os.path.join(W, "sessions.txt")):
    rate, run, pre, side = line.split()
    st = json.load(open(pre + ".stream.json"))
    mb, ma = json.load(open(pre + ".metrics-before.json")), json.load(open(pre + ".metrics-after.json"))
    c0, c1, t0, t1, hz, load, v0, v1 = open(pre + ".cpu").read().split()
    secs = float(t1) - float(t0)
    applied = sum(ma.get(k, 0) - mb.get(k, 0) for k in ("firehose_view_events_applied_total",
                                                         "firehose_view_skipped_total"))
    h50, n = hist(mb, ma, 50)
    h99, _ = hist(mb, ma, 99)
    idle = None   # with two brokers, the other one's CPU while this one was measured
    if os.path.exists(pre + ".idle-cpu"):
        o0, o1 = open(pre + ".idle-cpu").read().split()
        idle = (int(o1) - int(o0)) / int(hz) / secs * 100
    sessions.append({"rate": int(rate), "run": int(run), "side": int(side), "idle": idle,
                     "achieved": st["rate"], "applied": applied / secs,
                     "lg": wrk(pre + ".wrk-last-green.txt"), "pd": wrk(pre + ".wrk-pending.txt"),
                     "h50": h50, "h99": h99, "hn": n, "st": st,
                     "cpu": (int(c1) - int(c0)) / int(hz) / secs * 100,
                     "vcpu": (int(v1) - int(v0)) / int(hz) / secs * 100, "load": float(load),
                     "rss": ma.get("process_resident_memory_bytes", 0) / 2**20,
                     "pending_total": json.load(open(pre + ".pending.json"))["total"]})
    r = sessions[-1]
    say("run %d%s, ingest %6d/s (achieved %.0f/s; view applied %.0f/s while wrk ran; broker CPU %.0f%% (view thread "
        "%.0f%%), RSS %.0f MiB; load average %.1f)" % (r["run"], ", " + labels[r["side"]] if two else "", r["rate"],
                                                     r["achieved"], r["applied"], r["cpu"], r["vcpu"], r["rss"],
                                                     r["load"]))
    if idle is not None:
        say("  the idle broker (%s) meanwhile: CPU %.1f%%" % (labels[1 - r["side"]], idle))
    for name, x in (("last-green", r["lg"]), ("pending", r["pd"])):
        say("  %-10s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  non-2xx %d" % (name, x["rps"], x["p50"], x["p99"], x["non2xx"]))
    say("  freshness: produce->committed p50 <= %s ms p99 <= %s ms (%d records); probes p50 %s p99 %s max %s ms "
        "(%d/%d seen)" % (num(h50 or 0), num(h99 or 0), n, num(st["probe_p50_ms"] or 0, 1),
                          num(st["probe_p99_ms"] or 0, 1), num(st["probe_max_ms"] or 0, 1),
                          st["probes_seen"], st["probes"]))

rates = [int(x) for x in env["RATES_LIST"].split()]
# (rate, side) -> that broker's sessions at that rate, in run order; A before B within a rate
by_rate = {(rate, side): sorted((s for s in sessions if s["rate"] == rate and s["side"] == side),
                                key=lambda s: s["run"])
           for rate in rates for side in range(len(labels))}

def lead(rate, side):
    """The first cells of a per-broker row: the rate (on A's row only, when there are two brokers), then the
    broker's label when there are two."""
    return ["%s/s" % num(rate) if side == 0 else ""] + ([labels[side]] if two else [])

def col(ss, f):
    return [f(s) for s in ss]

def bound(vals, bold=False):
    """Freshness bucket bounds (ms) of the runs: '<= median (min-max)'."""
    return "<= " + med_range(vals, unit=" ms", bold=bold) if any(v is not None for v in vals) else "n/a"

def ratio_cell(a, b, bold=False):
    """A / B of the medians of a and b, and in parentheses the lowest and highest of the per-round ratios
    (a[i] / b[i], the same run); 'n/a' without both."""
    xs, ys = [x for x in a if x is not None], [y for y in b if y is not None]
    r = stats.ratio(med(xs), med(ys)) if xs and ys else None
    if not r:
        return "n/a"
    cell = ("**%sx**" if bold else "%sx") % r
    per = sorted(x / y for x, y in zip(a, b) if x is not None and y)
    if len(per) > 1:
        cell += " (%s-%sx)" % (stats.ratio(per[0], 1), stats.ratio(per[-1], 1))
    return cell

say()
for (rate, side), ss in by_rate.items():
    say("ingest %d/s%s, %d runs: last-green %s req/s, pending %s req/s, probe p99 %s ms" % (
        rate, " (%s)" % labels[side] if two else "", len(ss), med_range(col(ss, lambda s: s["lg"]["rps"])),
        med_range(col(ss, lambda s: s["pd"]["rps"])), med_range(col(ss, lambda s: s["st"]["probe_p99_ms"]), 1)))
if two:
    for rate in rates:
        a, b = by_rate[(rate, 0)], by_rate[(rate, 1)]
        for key, name in (("lg", "last-green"), ("pd", "pending")):
            say("ingest %d/s, %s, %s / %s: requests/s %s, p99 %s" % (
                rate, name, labels[0], labels[1], ratio_cell(col(a, lambda s: s[key]["rps"]), col(b, lambda s: s[key]["rps"])),
                ratio_cell(col(a, lambda s: s[key]["p99"]), col(b, lambda s: s[key]["p99"]))))

lines = [
    "## REST: last-green and pending under ingest",
    "",
    "- Command: %s (what `make bench` runs; %s runs per rate, interleaved by rate)" % (
        stats.command("bench/rest.sh"), env["RUNS"]),
    "- Date: %s; the script took %s s (%s s of it generating the stream file or installing Buildbot, "
    "both cached for later runs)" % (env["DATE"], env["RUN_S"], env["ONCE_S"]),
    "- Machine: %s. Kafka, the broker, firehose-emit, the pacer and wrk all share these CPUs." % stats.machine(),
    "- Software: Apache Kafka 3.9.1 (KRaft, one node on loopback), topics with 6 partitions; wrk %s "
    "(`-t%s -c%s -d%ss --latency`, same machine); broker `http.threads=%s`, view defaults." % (
        env["WRK_VERSION"], env["WRK_THREADS"], env["WRK_CONN"], env["WRK_SECONDS"], env["HTTP_THREADS"]),
]
def args_note(i):
    """What side i ran with beyond the defaults: its extra arguments, and the options its binary lacks."""
    notes = ["`%s`" % env["ARGS_%d" % i]] if env["ARGS_%d" % i].strip() else []
    if env["DROPPED_%d" % i]:
        notes.append("its binary has no %s, so it ran without" % ", ".join(
            "`%s`" % o for o in env["DROPPED_%d" % i].split()))
    return " (%s)" % "; ".join(notes) if notes else ""
if two:
    idle = [col([s for s in sessions if s["side"] == 1 - i], lambda s: s["idle"]) for i in range(2)]
    lines += [
        "- Two brokers in this run: A, **%s**, is %s%s; B, **%s**, is %s%s. One Kafka; each broker has its own "
        "topics, consumer group and fresh view, and gets the same pending requests and the same event stream "
        "(each from its first line). Both run throughout, but only one gets ingest and wrk at a time: per run and "
        "rate, A's session, then B's, then the next rate, so other load on the machine falls on both alike. The "
        "idle one, its view caught up, used little CPU over the wrk time of the other's sessions: A %s while B was "
        "measured, B %s while A was. Ratio rows are A / B of the two medians, and in parentheses the lowest and highest of "
        "the per-round ratios (A's session over B's of the same run and rate): above 1 for requests/s, and below 1 "
        "for p99, favour A." % (labels[0], env["WHAT_0"], args_note(0), labels[1], env["WHAT_1"], args_note(1),
                                 med_range(idle[0], 1, "%"), med_range(idle[1], 1, "%")),
    ]
elif env["DROPPED_0"]:
    lines += ["- The broker%s." % args_note(0)]
lines += [
    "- View: %s pending requests loaded first; then tests/integration/gen_events.py events (every type, log.chunk "
    "included) paced into `firehose-emit` stdin, one session per run and rate (%s)%s, each continuing the stream "
    "where the %s stopped: 5 s of ingest, then wrk on `/%s`, then on `/%s` (default limit 100: the first 100 of "
    "%s-%s pending requests, about 40 KB), then the rest of the session; the view catches up before the next one." % (
        num(int(env["PENDING"])), ", ".join(num(s["rate"]) for s in sessions if s["side"] == 0),
        " for each broker" if two else "", "broker's last" if two else "last", env["LG_PATH"], env["PD_PATH"],
        num(min(col(sessions, lambda s: s["pending_total"]))), num(max(col(sessions, lambda s: s["pending_total"])))),
    "- Freshness, two ways: the view's `firehose_view_freshness_ms` histogram (Kafka timestamp of each record to "
    "the commit that makes it visible; bucket bounds), and probe requests injected into the stream every 250 ms, "
    "timed from being written to firehose-emit until a client polling `/api/v1/pending?builder=probe` every 2 ms "
    "sees them.",
    "- Goals (DESIGN.md): >= 50,000 requests/s and p99 <= 5 ms at 10,000 events/s of ingest; freshness p99 <= 100 ms.",
    "- Every figure is the median of the runs, with the lowest and highest run in parentheses. \"view applied\" is "
    "what the view's thread applied while wrk ran (below the offered rate means it fell behind); \"broker CPU\" is "
    "the broker process (all threads) over the same time; \"view thread CPU\" is the view's apply thread alone "
    "(`fh-view`), the figure least disturbed by other load; \"load avg\" is the machine's 1-minute load average at "
    "the end of wrk (other work on the machine inflates it).",
    "",
    "| ingest offered |%s runs | sent | view applied | broker CPU | view thread CPU | load avg |" % (
        " broker |" if two else ""),
    "|---:|%s---:|---:|---:|---:|---:|---:|" % ("---|" if two else ""),
]
def row(cells):
    return "| " + " | ".join(cells) + " |"
for (rate, side), ss in by_rate.items():
    lines.append(row(lead(rate, side) + [
        "%d" % len(ss), med_range(col(ss, lambda s: s["achieved"]), unit="/s"),
        med_range(col(ss, lambda s: s["applied"]), unit="/s"),
        med_range(col(ss, lambda s: s["cpu"]), unit="%"), med_range(col(ss, lambda s: s["vcpu"]), unit="%"),
        med_range(col(ss, lambda s: s["load"]), 1)]))
lines += ["", "| ingest offered | endpoint |%s requests/s | p50 | p99 |" % (" broker |" if two else ""),
          "|---:|---|%s---:|---:|---:|" % ("---|" if two else "")]
bad = []
for rate in rates:
    for i, (key, name) in enumerate((("lg", "`/api/v1/last-green`"), ("pd", "`/api/v1/pending`"))):
        for side in range(len(labels)):
            xs = col(by_rate[(rate, side)], lambda s: s[key])
            first = ["%s/s" % num(rate) if i == 0 and side == 0 else "", name if side == 0 else ""]
            lines.append(row(first + ([labels[side]] if two else []) + [
                med_range(col(xs, lambda x: x["rps"]), bold=True), med_range(col(xs, lambda x: x["p50"]), 2, " ms"),
                med_range(col(xs, lambda x: x["p99"]), 2, " ms", True)]))
            bad += ["%s at %s/s%s: %d" % (name, num(rate), " (%s)" % labels[side] if two else "", x["non2xx"])
                    for x in xs if x["non2xx"]]
        if two:
            a, b = col(by_rate[(rate, 0)], lambda s: s[key]), col(by_rate[(rate, 1)], lambda s: s[key])
            lines.append(row(["", "", "%s / %s" % tuple(labels),
                              ratio_cell(col(a, lambda x: x["rps"]), col(b, lambda x: x["rps"]), True), "",
                              ratio_cell(col(a, lambda x: x["p99"]), col(b, lambda x: x["p99"]), True)]))
if bad:
    lines += ["", "Non-2xx answers: " + "; ".join(bad) + "."]
lines += ["", "| ingest offered |%s produce -> committed p50 | p99 | probe -> visible p50 | p99 | max | probes seen |" % (
              " broker |" if two else ""),
          "|---:|%s---:|---:|---:|---:|---:|---:|" % ("---|" if two else "")]
for (rate, side), ss in by_rate.items():
    sts = col(ss, lambda s: s["st"])
    lines.append(row(lead(rate, side) + [
        bound(col(ss, lambda s: s["h50"])), bound(col(ss, lambda s: s["h99"]), True),
        med_range(col(sts, lambda s: s["probe_p50_ms"]), 1, " ms"),
        med_range(col(sts, lambda s: s["probe_p99_ms"]), 1, " ms", True),
        med_range(col(sts, lambda s: s["probe_max_ms"]), 1, " ms"),
        "%s of %s" % (num(sum(col(sts, lambda s: s["probes_seen"]))), num(sum(col(sts, lambda s: s["probes"]))))]))

# ---- side by side: every URL once per round, Buildbot first ----
lines += ["", "### Side by side: Buildbot's own data API", ""]
runs = int(env["RUNS"])
if os.path.exists(os.path.join(W, "side.meta")):
    bb_total, bb_version = open(os.path.join(W, "side.meta")).read().split()
    res = {k: [wrk(os.path.join(W, "side-%s-%d.txt" % (k, i))) for i in range(1, runs + 1)]
           for k in ("bb-page", "fh-page", "bb-all", "fh-all")}
    size = {k: int(open(os.path.join(W, "side-%s.bytes" % k)).read().strip() or 0) for k in res}
    lines += [
        "- Buildbot %s from PyPI (`buildbot`, `buildbot-www`), one master with its SQLite database and the www data "
        "API on loopback, same machine, measured in the same run right after the firehose rows above (ingest "
        "stopped, so both sides see the same machine with no ingest running; the broker is %s, its view at rest)." % (
            bb_version, "A above (%s) alone, B stopped before" % labels[0] if two else "the one above"),
        "- Both hold the same %s pending build requests (Buildbot: %s unclaimed, inserted by bench/buildbot/load.py "
        "into its own schema: sourcestamp, buildset, buildrequest each, over the same 40 builders, no worker ever "
        "connects). wrk `-t%s -d%ss --timeout 30s --latency`; `-c%s` for one page, `-c2` for the whole queue "
        "(each answer is megabytes)." % (num(int(env["PENDING"])), num(int(bb_total)),
                                        env["WRK_THREADS"], env["WRK_SECONDS"], env["WRK_CONN"]),
        "- %d rounds; each round runs the four URLs back to back (Buildbot's page, ours, Buildbot's whole queue, ours). "
        "Figures are the median of the rounds (lowest-highest); the ratio is firehose's median requests/s over "
        "Buildbot's, and in parentheses the lowest and highest of the per-round ratios." % runs,
        "",
        "| what | URL | answer | requests per run | requests/s | p50 | p99 | firehose / Buildbot |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    def row(label, url, k, peer):
        xs = [x for x in res[k] if x]
        if not xs:
            return "| %s | `%s` | | | no answer | | | |" % (label, url)
        rps = col(xs, lambda x: x["rps"])
        cell = ""
        if peer:
            per_round = [stats.ratio(a["rps"], b["rps"]) for a, b in zip(res[k], res[peer]) if a and b]
            ys = [y for y in res[peer] if y]
            r = stats.ratio(med(rps), med(col(ys, lambda y: y["rps"]))) if ys else None
            cell = "**%sx**" % r if r else "n/a"
            if len(per_round) > 1:
                vals = sorted(per_round, key=lambda t: float(t.replace(",", "")))
                cell += " (%s-%sx)" % (vals[0], vals[-1])
        return "| %s | `%s` | %s B | %s | %s | %s | %s | %s |" % (
            label, url, num(size[k]), med_range(col(xs, lambda x: x["n"])),
            med_range(rps, 1 if med(rps) < 100 else 0, bold=True), med_range(col(xs, lambda x: x["p50"]), 2, " ms"),
            med_range(col(xs, lambda x: x["p99"]), 2, " ms"), cell)
    lines += [row("one page, Buildbot", "/api/v2/buildrequests?claimed=false&limit=100", "bb-page", None),
              row("one page, firehose", "/api/v1/pending?limit=100", "fh-page", "bb-page"),
              row("whole queue, Buildbot", "/api/v2/buildrequests?claimed=false", "bb-all", None),
              row("whole queue, firehose", "/api/v1/pending?limit=10000", "fh-all", "bb-all")]
    timeouts = ["%s run %d: %d" % (k, i + 1, x["timeouts"]) for k, xs in res.items() for i, x in enumerate(xs)
                if x and x["timeouts"]]
    if timeouts:
        lines += ["", "wrk timeouts (30 s): " + ", ".join(timeouts)]
    for k, xs in res.items():
        say("side by side %-8s %s req/s" % (k, med_range([x["rps"] if x else None for x in xs], 1)))
elif os.path.exists(os.path.join(W, "side.failed")):
    lines += ["Not measured in this run: " + open(os.path.join(W, "side.failed")).read().strip() + "."]
else:
    lines += ["Not measured in this run (BENCH_BUILDBOT=0, or Buildbot did not install)."]
print("\n".join(lines))
EOF
if [ -n "${BENCH_NO_DOC:-}" ]; then
    cat "$WORK/section.md"
else
    python3 "$ROOT/bench/write_section.py" rest "$DOC" <"$WORK/section.md"
fi
say "done in $((SECONDS - T0)) s"
