#!/usr/bin/env bash
# Buildbot master build throughput with and without the firehose integration (bench/buildbot_bench.py
# has the method: two deployments side by side, alternating bursts A B A B ... A, the idle one
# stopped, each B burst against the A bursts around it).
#
#   flock /tmp/firehose-cpu.lock bash bench/buildbot.sh
#
# Starts Kafka with tests/kafka/kafka.sh (or uses BENCH_BOOTSTRAP), creates bench.events and
# bench.logs, prints the result and writes it into docs/performance.md between the bench:buildbot
# markers with bench/write_section.py (BENCH_NO_DOC=1: not).
#
# Kafka, both masters, their workers and the change senders run at nice BENCH_BB_NICE (-10): on
# cores shared with other work (fuzzers, other engineers' brokers) that work yields to the
# benchmark instead of landing in some bursts and not others. Without the privilege to raise the
# priority, nice says so and the run goes on at the normal one (the section reports which).
#
# Knobs (environment): BENCH_BB_CHANGES (5 changes per burst), BENCH_BB_BUILDERS (4 builders per
#   change), BENCH_BB_LINES (2000 log lines per build), BENCH_BB_PAIRS (25 bursts with the
#   integration, one more without), BENCH_BB_NICE (-10), BENCH_BB_JSON (also keep the raw numbers
#   there), BENCH_BOOTSTRAP (use that Kafka; its priority is then its own) with BENCH_KAFKA_PID (its
#   pid, so its CPU is not counted as other work).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
KAFKA_SH="$ROOT/tests/kafka/kafka.sh"
NICE="${BENCH_BB_NICE:--10}"
DOC="$ROOT/docs/performance.md"

say() { printf 'bench: %s\n' "$*" >&2; }

STATE=""
cleanup() {
    if [ -n "$STATE" ]; then
        "$KAFKA_SH" stop "$STATE" >/dev/null 2>&1 || true
        rm -rf "$STATE"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${BENCH_BOOTSTRAP:-}" ]; then
    BOOTSTRAP="$BENCH_BOOTSTRAP"
else
    STATE="$(mktemp -d "${TMPDIR:-/tmp}/firehose-bench-kafka.XXXXXX")"
    BOOTSTRAP="$(KAFKA_WATCH_PID=$$ nice -n "$NICE" "$KAFKA_SH" start "$STATE")"
    "$KAFKA_SH" create-topics "$STATE" bench.events:6 bench.logs:6 2>/dev/null
    say "Kafka $BOOTSTRAP ready"
fi

SECTION="$(nice -n "$NICE" python3 "$ROOT/bench/buildbot_bench.py" --bootstrap "$BOOTSTRAP" \
    --changes "${BENCH_BB_CHANGES:-5}" --builders "${BENCH_BB_BUILDERS:-4}" --lines "${BENCH_BB_LINES:-2000}" \
    --pairs "${BENCH_BB_PAIRS:-25}" ${BENCH_BB_JSON:+--json "$BENCH_BB_JSON"} \
    ${STATE:+--kafka-pid "$(cat "$STATE/pid")"} ${BENCH_KAFKA_PID:+--kafka-pid "$BENCH_KAFKA_PID"})"
printf '%s\n' "$SECTION"
if [ -z "${BENCH_NO_DOC:-}" ]; then
    printf '%s\n' "$SECTION" | python3 "$ROOT/bench/write_section.py" buildbot "$DOC"
fi
