#!/usr/bin/env python3
"""Replay to CSV for analytics: reads the stream from a start position (a time, "earliest" or a
cursor) with a filter, writes one CSV row per build.finished (or any --type), and stops once the
stream has been quiet for --idle seconds (it has caught up) or after --max-events; then prints a
failure-rate summary per builder on stderr. The last cursor goes to --cursor-file, so the next
run appends only what is new.

    replay_csv.py --url wss://firehose.example.org --from 2026-11-01T00:00:00Z --branch main > builds.csv
    replay_csv.py --url ws://127.0.0.1:8080 --cursor-file builds.cursor >> builds.csv   # incremental

The token comes from FIREHOSE_TOKEN. For months of history firehose-replay (reading Kafka
directly) is faster; this one needs only the broker's URL."""

import argparse
import asyncio
import collections
import csv
import os
import sys

import firehose_client as fh

COLUMNS = ["time", "type", "builder", "buildid", "number", "branch", "revision", "owner", "worker",
           "results", "duration_s", "cursor"]


async def replay(a, writer) -> collections.Counter:
    flt = {"type": a.type}
    for k in ("branch", "builder", "owner", "repository"):
        if getattr(a, k):
            flt[k] = getattr(a, k)
    store = fh.FileCursorStore(a.cursor_file) if a.cursor_file else None
    stats: collections.Counter = collections.Counter()
    agen = fh.subscribe(a.url, flt, a.from_, cursor_store=store, token=os.environ.get("FIREHOSE_TOKEN"),
                        cafile=a.cafile)
    n = 0
    try:
        while a.max_events is None or n < a.max_events:
            try:
                ev = await asyncio.wait_for(agen.__anext__(), a.idle)
            except asyncio.TimeoutError:
                break   # quiet for --idle seconds: caught up
            d = ev.data
            writer.writerow([ev.event.get("time"), ev.type] + [d.get(c, "") for c in COLUMNS[2:-1]] + [ev.cursor])
            n += 1
            r = d.get("results")
            if isinstance(r, int):
                stats[(d.get("builder"), r in fh.stream.GREEN)] += 1
    finally:
        await agen.aclose()
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="ws://127.0.0.1:8080")
    ap.add_argument("--from", dest="from_", default="earliest")
    ap.add_argument("--type", default="build.finished")
    ap.add_argument("--branch")
    ap.add_argument("--builder")
    ap.add_argument("--owner")
    ap.add_argument("--repository")
    ap.add_argument("--cursor-file")
    ap.add_argument("--cafile")
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--max-events", type=int)
    ap.add_argument("--no-header", action="store_true")
    a = ap.parse_args()
    w = csv.writer(sys.stdout)
    if not a.no_header:
        w.writerow(COLUMNS)
    try:
        stats = asyncio.run(replay(a, w))
    except fh.FirehoseError as e:
        print("firehose: %s" % e, file=sys.stderr)
        return 2
    builders = sorted({b for b, _ in stats})
    for b in builders:
        green, red = stats[(b, True)], stats[(b, False)]
        print("%-30s builds %5d  not green %5d  (%.1f %%)" % (b, green + red, red, 100.0 * red / max(1, green + red)),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
