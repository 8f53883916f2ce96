#!/usr/bin/env bash
# `make run`: starts firehose-broker on the embedded (in-memory) Kafka, loads 24 hours of
# simulated history, feeds it live demo traffic and says where to look. Ctrl-C stops everything.
# Extra arguments go to the broker (e.g. --http.listen 127.0.0.1:0 for a free port).
#
# Environment:
#   FIREHOSE_DEMO_DIR        where the broker log, the sim log and (when set) the view and webhook
#                            databases go (default var/, the broker's own default paths)
#   FIREHOSE_DEMO_HISTORY_S  seconds of history loaded before live traffic starts (default 86400;
#                            0: none)
#   FIREHOSE_DEMO_SEED       firehose-sim's seed (default 1, a day known to fill every panel,
#                            a last green revision included; another seed, another day)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${FIREHOSE_DEMO_DIR:-var}"
history_s="${FIREHOSE_DEMO_HISTORY_S:-86400}"
seed="${FIREHOSE_DEMO_SEED:-1}"
# The history's job rate: a twelfth of the live demo's 1,200 jobs/h, so that a day of builds
# (about 53,000 events, status only) fits the embedded Kafka's 5 MiB per partition with room for
# hours of live traffic, and the view applies it in a few seconds.
history_jobs_per_hour=100
# Test results in the live traffic's test steps (the history stays status only): 24 tests a set,
# one of them flaky a third of the time, so the dashboard's flaky list fills within a minute and
# the derived feed gets test-level test.flaky; a few KiB per test step.
tests=24
mkdir -p "$dir"
log="$dir/broker.log"
simlog="$dir/sim.log"
: > "$log"
: > "$simlog"
paths=()
[ -z "${FIREHOSE_DEMO_DIR:-}" ] || paths=(--view.path "$dir/view.db" --webhooks.path "$dir/webhooks.db")

# webhooks seal endpoint secrets with a key of their own (kept beside the demo's files)
key="$dir/webhooks.key"
[ -s "$key" ] || (umask 077 && openssl rand -hex 32 >"$key")
paths+=(--webhooks.secret_key_file "$key")

bin/firehose-broker --auth.anonymous_read "${paths[@]}" "$@" 2> >(tee -a "$log" >&2) &
broker=$!
feeder=""
cleanup() {
    [ -n "$feeder" ] && kill "$feeder" 2>/dev/null || true
    kill "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The broker logs bootstrap=HOST:PORT once the embedded Kafka listens, then its HTTP address
# (bounded wait: 10 s).
bootstrap=""
for _ in $(seq 100); do
    bootstrap=$(grep -o 'bootstrap=[^ ]*' "$log" | head -1 | cut -d= -f2 || true)
    [ -n "$bootstrap" ] && grep -q 'event=http.listening' "$log" && break
    kill -0 "$broker" 2>/dev/null || { echo "firehose-broker exited; see $log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$bootstrap" ] || { echo "no bootstrap address after 10 s; see $log" >&2; exit 1; }
url=$(grep -o 'url=[^ ]*' "$log" | head -1 | cut -d= -f2)
hostport=${url#*://}
hostport=${hostport%%/*}

# One GET over bash's /dev/tcp (no curl needed); prints the body. Bounded: 5 s.
http_get() {
    timeout 5 bash -c 'exec 3<>"/dev/tcp/${1%:*}/${1##*:}" &&
        printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$1" >&3 && sed "1,/^\r$/d" <&3' _ "$1" "$2"
}

# Events the view has taken in so far: applied, plus those it counted and left (duplicates,
# invalid, skipped); "none" when the broker keeps no view (view.enabled=false).
view_seen() {
    http_get "$hostport" /metrics 2>/dev/null | awk '
        /^firehose_view_(events_applied|duplicates|invalid|skipped)_total / { n += $2; v = 1 }
        /^firehose_/ { up = 1 }
        END { print v ? n + 0 : up ? "none" : 0 }'
}

# Demo traffic, one firehose-sim and one long-lived firehose-emit feeding the embedded Kafka:
# first the history (flat out, status only: the demo profile's builds of the 24 h before now, at
# history_jobs_per_hour), then live traffic on the wall clock (the demo profile: builds of a few
# steps that finish within a minute, with test results). One simulation throughout, so ids, build numbers and
# revisions carry on from the history into the live traffic.
t0=$(date +%s%N)
if [ "$history_s" -gt 0 ]; then
    printf '  loading %s h of simulated history into the embedded Kafka ...' "$((history_s / 3600))"
fi
bin/firehose-sim --profile demo --realtime --start now --seed "$seed" --tests "$tests" \
    --history "$history_s" --history-jobs-per-hour "$history_jobs_per_hour" 2>"$simlog" |
    bin/firehose-emit --brokers "$bootstrap" --emit.flush_timeout_ms=3000 -q &
feeder=$!

# History loaded: firehose-sim has written it (its "history events=N" line) and the view has
# taken in that many events. Bounded: 120 s, after which the demo goes on and the dashboard fills
# as the view catches up.
if [ "$history_s" -gt 0 ]; then
    n=""
    seen=0
    for _ in $(seq 1200); do
        [ -n "$n" ] || n=$(sed -n 's/^firehose-sim: history events=\([0-9]*\).*/\1/p' "$simlog")
        if [ -n "$n" ]; then
            [ "${url%%://*}" = http ] || { seen=$n; break; } # over TLS: the sim's word only
            seen=$(view_seen)
            [ "$seen" != none ] || { seen=$n; break; } # no view to wait for
            [ "$seen" -ge "$n" ] && break
        fi
        kill -0 "$broker" 2>/dev/null || { echo; echo "firehose-broker exited; see $log" >&2; exit 1; }
        sleep 0.1
    done
    secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    if [ -n "$n" ] && [ "$seen" -ge "$n" ]; then
        echo " $n events in $secs s"
    else
        echo " not finished after $secs s (the view has ${seen} of ${n:-?} events; it goes on)"
    fi
fi

cat <<MSG

  firehose is running on the embedded Kafka (in memory: everything is gone when it stops).
    bootstrap:     $bootstrap
    http:          $url  (dashboard; healthz, readyz, metrics)
    REST:          curl -s ${url%/}/api/v1/running
    live stream:   curl -N ${url%/}/v1/events?type=build.finished
    broker log:    $log  (per-type counts every few seconds)
    send events:   bin/firehose-emit --brokers $bootstrap schemas/examples/valid/*.json
    read events:   kcat -C -b $bootstrap -t firehose.events -o end
    dead letters:  kcat -C -b $bootstrap -t firehose.dlq -f '%h %s\n'
  Demo traffic: firehose-sim --profile demo on the wall clock$([ "$history_s" -gt 0 ] &&
    printf ', after %s h of history' "$((history_s / 3600))"). Ctrl-C stops.

MSG

wait "$broker"
