#!/usr/bin/env python3
"""Dashboard poller: every --interval seconds, one screen of what the CI is doing, from the
broker's REST API: pending requests and how long the oldest waited, running builds with their
current step, and the last green revision of a branch.

    dashboard.py --url https://firehose.example.org --branch main --repository https://git.example.org/x.git
    dashboard.py --url http://127.0.0.1:8080 --once        # one screen, then exit (scripts, tests)

The token comes from FIREHOSE_TOKEN."""

import argparse
import os
import sys
import time

import firehose_client as fh


def screen(rest: fh.RestClient, branch: str, repository: str) -> str:
    lines = []
    p = rest.pending(limit=10)
    oldest = max((x.get("waiting_s", 0) for x in p["pending"]), default=0)
    lines.append("pending: %d (oldest waiting %.0f s)" % (p["total"], oldest))
    r = rest.running(limit=20)
    lines.append("running: %d" % r["total"])
    for b in r["running"]:
        step = (b.get("current_step") or {}).get("name", "-")
        lines.append("  %-24s #%-5s %-12s %6.0f s  %s" % (b.get("builder"), b.get("number"), b.get("worker"),
                                                        b.get("elapsed_s", 0), step))
    if branch:
        try:
            g = rest.last_green(branch, repository or None)
            lines.append("last green on %s: %s" % (branch, g.get("revision") or "none"))
        except fh.RestError as e:
            lines.append("last green on %s: %s" % (branch, e.message))
    lag = p.get("as_of", {}).get("lag_ms")
    lines.append("(view behind by %s records, %s ms)" % (p.get("as_of", {}).get("behind"), lag))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--branch", default="")
    ap.add_argument("--repository", default="")
    ap.add_argument("--cafile")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--once", action="store_true")
    a = ap.parse_args()
    rest = fh.RestClient(a.url, os.environ.get("FIREHOSE_TOKEN"), cafile=a.cafile)
    while True:
        try:
            text = screen(rest, a.branch, a.repository)
        except fh.RestError as e:
            text = "the broker's view is unavailable: %s" % e
            if a.once:
                print(text, file=sys.stderr)
                return 1
        except fh.TokenRefused as e:
            print("firehose: %s (set FIREHOSE_TOKEN)" % e, file=sys.stderr)
            return 2
        if a.once:
            print(text)
            return 0
        print("\033[H\033[2J" + time.strftime("%H:%M:%S ") + a.url + "\n" + text, flush=True)
        time.sleep(a.interval)


if __name__ == "__main__":
    sys.exit(main())
