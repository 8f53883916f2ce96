#!/usr/bin/env bash
# firehose-sim's top rate: flat out to /dev/null, BENCH_RUNS runs (5) per case, medians into
# docs/performance.md between the bench:sim markers. No Kafka involved.
#
# Knobs: BENCH_RUNS (5), BENCH_SIM_COUNT (events per run, 1000000), BENCH_NO_DOC=1 (print only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SIM="$ROOT/bin/firehose-sim"
RUNS="${BENCH_RUNS:-5}"
COUNT="${BENCH_SIM_COUNT:-1000000}"
[ -x "$SIM" ] || { echo "bench: $SIM is missing: run make" >&2; exit 1; }

CASES=("demo|--profile demo"
       "mozilla-2010|--profile mozilla-2010"
       "mozilla-2010, status only|--profile mozilla-2010 --logs=false"
       "mozilla-2010 x10000, status only|--profile mozilla-2010 --scale 10000 --logs=false")
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
for c in "${CASES[@]}"; do
    label="${c%%|*}"; read -r -a args <<<"${c#*|}"
    for i in $(seq 1 "$RUNS"); do
        line="$("$SIM" "${args[@]}" --count "$COUNT" --seed "$i" 2>&1 >/dev/null | tail -n 1)"
        printf '%s\t%s\n' "$label" "$line" >>"$OUT"
        echo "bench: sim $label: ${line#firehose-sim: }" >&2
    done
done

export OUT RUNS COUNT DOC="$ROOT/docs/performance.md" WRITE_DOC="$([ -n "${BENCH_NO_DOC:-}" ] && echo 0 || echo 1)"
export MACHINE="$(nproc) CPUs ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
export DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
python3 - <<'PY' | { if [ "$WRITE_DOC" = 1 ]; then python3 "$(dirname "$0")/write_section.py" sim "$DOC"; else cat; fi; }
import os, re, statistics
env = os.environ
rows = {}
for line in open(env["OUT"]):
    label, summary = line.rstrip("\n").split("\t", 1)
    f = dict(re.findall(r"([a-zA-Z_/]+)=([0-9.]+)", summary))
    el = float(f["elapsed"].rstrip("s"))
    rows.setdefault(label, []).append((int(f["events"]) / el, int(f["bytes"]) / el / 1e6,
                                      int(f["bytes"]) / int(f["events"]), float(f["simulated_s"]) / el))
print("## firehose-sim: top rate\n")
print("- Command: `make bench` (bench/sim.sh: `bin/firehose-sim --count %s --seed N ... > /dev/null`, %s runs per case, seeds 1..%s)" % (
    format(int(env["COUNT"]), ","), env["RUNS"], env["RUNS"]))
print("- Date: %s" % env["DATE"])
print("- Machine: %s" % env["MACHINE"])
print("- One thread, writing NDJSON to /dev/null; \"simulated/wall\" is how many simulated seconds pass per second.\n")
print("| case | median events/s | median MB/s | avg record | simulated/wall | events/s min-max |")
print("|---|---:|---:|---:|---:|---:|")
for label, r in rows.items():
    eps = [x[0] for x in r]
    print("| %s | **%s** | %.1f | %s B | %s | %s-%s |" % (
        label, format(round(statistics.median(eps)), ","), statistics.median([x[1] for x in r]),
        format(round(statistics.median([x[2] for x in r])), ","),
        format(round(statistics.median([x[3] for x in r])), ","),
        format(round(min(eps)), ","), format(round(max(eps)), ",")))
PY
