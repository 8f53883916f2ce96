#!/usr/bin/env bash
# Ingest benchmark: bin/firehose-emit -> real Apache Kafka (KRaft, single node on loopback), and
# in the same run the broker's HTTP ingest: HttpStatusPush posts, GitHub and GitLab webhooks.
#
#   bench/ingest.sh            (what `make bench` runs)
#
# Starts Kafka with tests/kafka/kafka.sh, creates firehose.events/firehose.logs (6 partitions),
# generates two inputs once with firehose-sim (cached in build/bench/): status events (every
# type but log.*) and ~4 KiB log.chunk events, runs firehose-emit on each BENCH_RUNS times (the two
# inputs alternating, after a warm-up run), prints each figure as the median of the runs with their
# range (min-max) and writes them into docs/performance.md between the bench:ingest markers
# (bench/write_section.py). Then one bin/firehose-broker on the same Kafka and topics, and
# build/bench/ingest_post (bench/ingest_post.c) posting to its three ingest endpoints,
# BENCH_RUNS rounds of statuspush, github, gitlab (after a warm-up round): BENCH_POST_LIFECYCLES
# lifecycles each, on BENCH_POST_CONCURRENCY keep-alive connections; a lifecycle is the
# deliveries of one vector (tests/vectors/) with fresh ids: GitHub 01 (a job queued, in progress,
# completed with five steps: 3 requests, 16 events), GitLab 01 (pending, running, success: 3
# requests, 6 events), Buildbot 05's HttpStatusPush posts (started, finished: 2 requests,
# 4 events). Each endpoint answers once Kafka has acknowledged the events (acks=all), so
# requests/s measure that round trip. Kafka is stopped on exit. With the defaults it takes a
# couple of minutes once the inputs exist.
#
# Knobs (environment): BENCH_STATUS_COUNT (300000), BENCH_LOG_COUNT (50000), BENCH_RUNS (5),
#   BENCH_LOG_CHUNK_BYTES (3500 -> ~4 KiB records), BENCH_RUN_TIMEOUT (s per run, 120),
#   BENCH_BOOTSTRAP (use a running Kafka instead of starting one), BENCH_NO_DOC=1 (do not
#   touch docs/performance.md), BENCH_EMIT_ARGS (extra firehose-emit arguments, recorded in the doc),
#   BENCH_POST_LIFECYCLES (1500), BENCH_POST_CONCURRENCY (8), BENCH_HTTP_THREADS (the broker's
#   http.threads, 2 as its default; each delivery holds a thread until Kafka acknowledges its
#   events, so this bounds requests in flight), BENCH_NICE (a prefix for every
#   program the bench starts, e.g. "nice -n 10" on a shared machine; recorded in the doc).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
EMIT="$ROOT/bin/firehose-emit"
BROKER="$ROOT/bin/firehose-broker"
POSTER="$ROOT/build/bench/ingest_post"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
DATA="$ROOT/build/bench"
DOC="$ROOT/docs/performance.md"

STATUS_COUNT="${BENCH_STATUS_COUNT:-300000}"
LOG_COUNT="${BENCH_LOG_COUNT:-50000}"
RUNS="${BENCH_RUNS:-5}"
CHUNK="${BENCH_LOG_CHUNK_BYTES:-3500}"
RUN_TIMEOUT="${BENCH_RUN_TIMEOUT:-120}"
POST_LIFECYCLES="${BENCH_POST_LIFECYCLES:-1500}"
POST_CONC="${BENCH_POST_CONCURRENCY:-8}"
HTTP_THREADS="${BENCH_HTTP_THREADS:-2}"
read -r -a EXTRA <<<"${BENCH_EMIT_ARGS:-}"
read -r -a NICE <<<"${BENCH_NICE:-}"

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$EMIT" ] || die "$EMIT is missing: run make"
command -v python3 >/dev/null || die "python3 is needed"
T0=$SECONDS
mkdir -p "$DATA"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-ingest.XXXXXX")"

STATE=""
BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ]; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    if [ -n "$STATE" ]; then
        "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true
        rm -rf "$STATE"
    fi
    rm -rf "$WORK"
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
    local g0=$SECONDS
    if [ -n "$filter" ]; then
        "$SIM" -q "$@" | grep -E "$filter" >"$file.tmp" || true
    else
        "$SIM" -q "$@" >"$file.tmp"
    fi
    mv "$file.tmp" "$file"
    ONCE_S=$((ONCE_S + SECONDS - g0))
}
ONCE_S=0   # of the run time, what went to generating inputs (cached for later runs)
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
    timeout "$RUN_TIMEOUT" "${NICE[@]}" "$EMIT" --brokers "$BOOTSTRAP" "${EXTRA[@]}" "$file" 2>"$err" >/dev/null || rc=$?
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

# ---- HTTP ingest: HttpStatusPush, GitHub and GitLab webhooks on one broker ----------------------
make -C "$ROOT" --no-print-directory -s ingest-tools >&2
[ -x "$BROKER" ] && [ -x "$POSTER" ] || die "$BROKER or $POSTER is missing: run make"
SECRET="bench-github-secret-$$"
TOKEN="bench-gitlab-token-$$"
ADMIN="bench-admin-token-$$-0123456789"
BLOG="$DATA/ingest-broker.log"
FIREHOSE_INGEST_GITHUB_SECRET="$SECRET" FIREHOSE_INGEST_GITLAB_TOKEN="$TOKEN" \
    FIREHOSE_AUTH_ADMIN_TOKEN="$ADMIN" "${NICE[@]}" "$BROKER" --brokers "$BOOTSTRAP" \
    --listen 127.0.0.1:0 --http.threads "$HTTP_THREADS" --topics.create=false \
    --kafka.group "bench-ingest-$$" \
    --view.path "$WORK/view.db" --webhooks.path "$WORK/webhooks.db" >/dev/null 2>"$BLOG" &
BROKER_PID=$!
URL=""
for _ in $(seq 1 300); do
    URL="$(sed -n 's/.*event=http\.listening url=\([^ ]*\).*/\1/p' "$BLOG" | tail -n 1)"
    [ -n "$URL" ] && break
    kill -0 "$BROKER_PID" 2>/dev/null || { tail -n 20 "$BLOG" >&2; die "the broker exited"; }
    sleep 0.1
done
[ -n "$URL" ] || die "the broker did not listen within 30 s"
say "broker at $URL"
VEC="$ROOT/tests/vectors"
run_post() {   # run_post LABEL LIFECYCLES BASE: one endpoint, LIFECYCLES lifecycles from id BASE
    local label="$1" n="$2" base="$3" line rc=0 args
    case "$label" in
        statuspush) args=(--url "${URL}api/v1/ingest/buildbot?master=bb-bench" --statuspush
                          --vector "$VEC/buildbot/05-build-forced-two-codebases.json"
                          --id-path buildid --id-path buildrequestid --bearer "$ADMIN") ;;
        github) args=(--url "${URL}api/v1/ingest/github"
                      --vector "$VEC/github/01-workflow-job-success-with-steps.json"
                      --id-path workflow_job.id --github-secret "$SECRET") ;;
        gitlab) args=(--url "${URL}api/v1/ingest/gitlab"
                      --vector "$VEC/gitlab/01-job-pending-running-success.json"
                      --id-path build_id --gitlab-token "$TOKEN") ;;
    esac
    line="$(timeout "$RUN_TIMEOUT" "${NICE[@]}" "$POSTER" "${args[@]}" --lifecycles "$n" \
        --concurrency "$POST_CONC" --base "$base" 2>"$DATA/post-$label.err")" || rc=$?
    if [ "$rc" != 0 ] || [ -z "$line" ]; then
        cat "$DATA/post-$label.err" >&2
        die "ingest_post $label exited $rc"
    fi
    printf 'post-%s\t%s\n' "$label" "$line" >>"$RESULTS"
    say "$label: $line"
}
for label in statuspush github gitlab; do               # warm-up: connections, the broker's caches
    run_post "$label" 100 900000000
done
sed -i '/^post-/d' "$RESULTS"
for i in $(seq 1 "$RUNS"); do
    for label in statuspush github gitlab; do
        run_post "$label" "$POST_LIFECYCLES" "$((1000000000 + i * 10000000))"
    done
done
kill -TERM "$BROKER_PID"
wait "$BROKER_PID" || die "the broker exited $? when stopped (log: $BLOG)"
BROKER_PID=""

# ---- report ----------------------------------------------------------------------------------
RDKAFKA="$(pkg-config --modversion rdkafka 2>/dev/null || dpkg-query -W -f '${Version}' librdkafka1 2>/dev/null || echo unknown)"
JAVA="$(java -version 2>&1 | head -n 1 || true)"

export RESULTS STATUS_FILE LOG_FILE RDKAFKA JAVA RUNS STATUS_COUNT LOG_COUNT ONCE_S
export POST_LIFECYCLES POST_CONC HTTP_THREADS BENCH_NICE="${BENCH_NICE:-}"
export DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" RUN_S=$((SECONDS - T0))
export KAFKA_DESC="$([ -n "${BENCH_BOOTSTRAP:-}" ] && echo "external Kafka at $BENCH_BOOTSTRAP" \
    || echo "Apache Kafka 3.9.1 (KRaft, one combined node on loopback, same machine, -Xmx512m), topics with 6 partitions")"
PYTHONPATH="$ROOT/bench" python3 - >"$WORK/section.md" <<'EOF'
import os, re, sys
import stats

env = os.environ
rows = {}
posts = {}
for line in open(env["RESULTS"]):
    label, summary = line.rstrip("\n").split("\t", 1)
    f = dict(re.findall(r"([a-z_]+)=([0-9.]+)", summary))
    if label.startswith("post-"):
        posts.setdefault(label[5:], []).append((float(f["req_per_s"]), float(f["events_per_s"]),
                                                int(f["requests"]), int(f["events"])))
        continue
    sent, nbytes, elapsed = int(f["sent"]), int(f["bytes"]), float(f["elapsed"].rstrip("s"))
    rows.setdefault(label, []).append((sent / elapsed, nbytes / elapsed / 1e6, elapsed, sent, nbytes))

def size(path):
    n = sum(1 for _ in open(path, "rb"))
    return os.path.getsize(path) / max(n, 1)

inputs = {"status": ("status events (every type but log.*)", env["STATUS_FILE"]),
          "logchunk": ("log.chunk events", env["LOG_FILE"])}
table = ["| input | events | avg record | runs | events/s | MB/s |",
         "|---|---:|---:|---:|---:|---:|"]
print(file=sys.stderr)
for label, (desc, path) in inputs.items():
    r = rows[label]
    eps = [x[0] for x in r]; mbs = [x[1] for x in r]
    table.append("| %s | %s | %s B | %d | %s | %s |" % (
        desc, stats.num(r[0][3]), stats.num(size(path)), len(r),
        stats.med_range(eps, bold=True), stats.med_range(mbs, 1, bold=True)))
    print("%-10s events/s %s  MB/s %s  (runs: %s)" % (
        label, stats.med_range(eps), stats.med_range(mbs, 1), ", ".join(stats.num(x) for x in eps)), file=sys.stderr)

nice = env.get("BENCH_NICE") or ""
post_table = ["| endpoint | lifecycle (vector) | requests per run | events per run | runs | requests/s | events/s |",
              "|---|---|---:|---:|---:|---:|---:|"]
post_desc = {"statuspush": ("`POST /api/v1/ingest/buildbot` (HttpStatusPush)", "Buildbot 05: started, finished"),
             "github": ("`POST /api/v1/ingest/github`", "GitHub 01: queued, in_progress, completed (5 steps)"),
             "gitlab": ("`POST /api/v1/ingest/gitlab`", "GitLab 01: pending, running, success")}
for label, (ep, life) in post_desc.items():
    r = posts[label]
    rps = [x[0] for x in r]; eps = [x[1] for x in r]
    post_table.append("| %s | %s | %s | %s | %d | %s | %s |" % (
        ep, life, stats.num(r[0][2]), stats.num(r[0][3]), len(r), stats.med_range(rps, bold=True),
        stats.med_range(eps, bold=True)))
    print("%-10s requests/s %s  events/s %s" % (label, stats.med_range(rps), stats.med_range(eps)), file=sys.stderr)

print("\n".join([
    "## Ingest: firehose-emit to Kafka",
    "",
    "- Command: %s (what `make bench` runs; each run `bin/firehose-emit --brokers 127.0.0.1:PORT%s FILE`, %s runs "
    "per input, the inputs alternating, after a warm-up run)" % (
        stats.command("bench/ingest.sh"), (" " + env["BENCH_EMIT_ARGS"]) if env.get("BENCH_EMIT_ARGS") else "",
        env["RUNS"]),
    "- Date: %s; the script took %s s (%s s of it generating inputs, cached for later runs)" % (
        env["DATE"], env["RUN_S"], env["ONCE_S"]),
    "- Machine: %s" % stats.machine(),
    "- Software: librdkafka %s; %s; %s" % (env["RDKAFKA"], env["KAFKA_DESC"], env["JAVA"]),
    "- Inputs: bin/firehose-sim (profile mozilla-2010: status events with --logs=false, and its log.chunk events), "
    "generated once into build/bench/; events/s = sent / elapsed and MB/s = bytes / elapsed / 10^6, both from "
    "firehose-emit's summary line (elapsed as firehose-emit reports it). Each figure is the median of the runs, "
    "with the lowest and highest run in parentheses.",
    "- Goal (DESIGN.md): at least 200,000 events/s. Kafka runs on the same two cores as firehose-emit.",
    "",
] + table + [
    "",
    "### HTTP ingest: HttpStatusPush, GitHub and GitLab webhooks",
    "",
    "- Same run, same Kafka and topics: one `bin/firehose-broker` (`http.threads` %s; view and webhook "
    "threads on, as by default) and build/bench/ingest_post (bench/ingest_post.c, libcurl multi) posting a vector's deliveries "
    "as lifecycles with fresh ids (no duplicates), %s lifecycles per endpoint and run on %s keep-alive "
    "connections, the endpoints in turn, %s rounds after a warm-up round. Every answer was 2xx; each is sent "
    "only once Kafka has acknowledged its events (acks=all), so a request's time is mostly that round trip "
    "(HttpStatusPush handles one post at a time, GitHub and GitLab deliveries run concurrently on the HTTP "
    "threads, each holding its thread until Kafka answers). events/s counts the events the answers report "
    "(`accepted`)." % (env["HTTP_THREADS"], stats.num(int(env["POST_LIFECYCLES"])), env["POST_CONC"], env["RUNS"]),
    "- Programs run as `%s` (the machine is shared)." % nice if nice else "- Programs at normal priority.",
    "",
] + post_table))
EOF
if [ -n "${BENCH_NO_DOC:-}" ]; then
    cat "$WORK/section.md"
else
    python3 "$ROOT/bench/write_section.py" ingest "$DOC" <"$WORK/section.md"
fi
say "done in $((SECONDS - T0)) s"
