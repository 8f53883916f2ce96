#!/usr/bin/env bash
# `make run`: starts firehose-broker on the embedded (in-memory) Kafka, feeds it demo traffic and
# says where to look. Ctrl-C stops everything. Extra arguments go to the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
log=var/broker.log
: > "$log"

bin/firehose-broker --auth.anonymous_read "$@" 2> >(tee -a "$log" >&2) &
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

cat <<MSG

  firehose is running on the embedded Kafka (in memory: everything is gone when it stops).
    bootstrap:     $bootstrap
    http:          $(grep -o 'url=[^ ]*' "$log" | head -1 | cut -d= -f2)  (healthz, readyz, metrics)
    REST:          curl -s $(grep -o 'url=[^ ]*' "$log" | head -1 | cut -d= -f2 | sed 's,/$,,')/api/v1/running
    live stream:   curl -N $(grep -o 'url=[^ ]*' "$log" | head -1 | cut -d= -f2 | sed 's,/$,,')/v1/events?type=build.finished
    broker log:    $log  (per-type counts every few seconds)
    send events:   bin/firehose-emit --brokers $bootstrap schemas/examples/valid/*.json
    read events:   kcat -C -b $bootstrap -t firehose.events -o end
    dead letters:  kcat -C -b $bootstrap -t firehose.dlq -f '%h %s\n'
  Demo traffic: firehose-sim --profile demo on the wall clock. Ctrl-C stops.

MSG

# Demo traffic: firehose-sim on the wall clock (the demo profile: builds of a few steps that
# finish within a minute), one long-lived firehose-emit feeding the embedded Kafka.
bin/firehose-sim --profile demo --realtime --start now --seed "$(date +%s)" -q |
    bin/firehose-emit --brokers "$bootstrap" --emit.flush_timeout_ms=3000 -q &
feeder=$!
wait "$broker"
