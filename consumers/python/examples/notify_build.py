#!/usr/bin/env python3
"""Try-build notifier: waits for your build to finish, rings the terminal bell and, when
notify-send is installed, pops up a desktop notification; exits 0 when the build was green
(SUCCESS or WARNINGS), 1 when it was not, 3 on --timeout.

    notify_build.py --url wss://firehose.example.org --owner me@example.org          # my next try build
    notify_build.py --url wss://firehose.example.org --buildrequestid 4711 --cafile ca.pem

The token comes from FIREHOSE_TOKEN (kept out of ps)."""

import argparse
import asyncio
import os
import shutil
import subprocess
import sys

import firehose_client as fh


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="ws://127.0.0.1:8080")
    ap.add_argument("--owner", help="your build requests' owner (with --branch)")
    ap.add_argument("--branch", default="try")
    ap.add_argument("--buildrequestid", type=int, help="one build request instead of owner/branch")
    ap.add_argument("--builder", help="only this builder")
    ap.add_argument("--cafile", help="CA certificate(s) for wss://, instead of the system's")
    ap.add_argument("--timeout", type=float, help="give up after this many seconds")
    ap.add_argument("--from", dest="from_", default="latest", help="latest (default), earliest, a time or a cursor")
    a = ap.parse_args()
    flt = {"type": "build.finished"}
    if a.buildrequestid:
        flt["buildrequestid"] = a.buildrequestid
    elif a.owner:
        flt.update(owner=a.owner, branch=a.branch)
    else:
        ap.error("name your build: --owner (and --branch) or --buildrequestid")
    if a.builder:
        flt["builder"] = a.builder
    print("waiting for %s ..." % ", ".join("%s=%s" % kv for kv in flt.items() if kv[0] != "type"), file=sys.stderr)
    try:
        r = fh.wait_for_build_sync(a.url, flt, a.from_, token=os.environ.get("FIREHOSE_TOKEN"),
                                   cafile=a.cafile, timeout=a.timeout)
    except asyncio.TimeoutError:
        print("timed out", file=sys.stderr)
        return 3
    except fh.FirehoseError as e:
        print("firehose: %s" % e, file=sys.stderr)
        return 2
    d = r.event.get("data", {})
    text = "%s #%s %s: %s" % (d.get("builder"), d.get("number"), d.get("branch"), r.results_name)
    print("\a" + text, flush=True)
    if shutil.which("notify-send"):
        subprocess.run(["notify-send", "-u", "normal" if r.green else "critical", "build finished", text],
                       check=False, timeout=10)
    return 0 if r.green else 1


if __name__ == "__main__":
    sys.exit(main())
