"""Build throughput of a real Buildbot master with and without the firehose integration.

Each round starts a fresh master + worker (sqlite, loopback) per configuration, sends CHANGES
changes in one burst (one client, buildbot.clients.sendchange), each starting a build on every one
of BUILDERS builders (requests not collapsed), and times the first change to the last finished
build.  Configurations alternate (off, on, off, on, ...) so drift on the machine hits both.
Prints one JSON object.  Used by bench/buildbot.sh.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from buildbot_harness import PY, REPO, Deployment, wait_for  # noqa: E402

BODY = textwrap.dedent('''\
    c["collapseRequests"] = False
    NAMES = ["bench-%d" % i for i in range({builders})]
    c["schedulers"] = [schedulers.AnyBranchScheduler(name="all", treeStableTimer=None, builderNames=NAMES)]
    OUT = ("import sys\\n"
           "for i in range({lines}):\\n"
           "    sys.stdout.write('bench line %05d with some typical compiler output in it\\\\n' % i)\\n")
    f = util.BuildFactory()
    f.addStep(steps.ShellCommand(name="compile", command=[PY, "-c", OUT]))
    f.addStep(steps.SetProperty(name="mark", property="bench", value="yes"))
    f.addStep(steps.ShellCommand(name="test", command=[PY, "-c", "print('ok')"]))
    c["builders"] = [util.BuilderConfig(name=n, workernames=["w1"], factory=f) for n in NAMES]
''')

SENDER = textwrap.dedent('''\
    import sys
    from twisted.internet import defer, task
    from buildbot.clients.sendchange import Sender

    async def main(reactor, master, n):
        s = Sender(master, auth=("change", "changepw"))
        for i in range(n):
            await s.send(branch="trunk", revision="%040x" % (i + 1), comments="bench %d" % i,
                         files=["f%d.c" % i], who="Bench <bench@example.org>", repository={repo!r},
                         project="bench", vc="git")

    task.react(lambda r: defer.ensureDeferred(main(r, sys.argv[1], int(sys.argv[2]))))
''')


def run_once(tmp, firehose, args):
    d = Deployment(tmp, firehose, body=BODY.format(builders=args.builders, lines=args.lines))
    try:
        d.start()
        want = args.changes * args.builders
        cpu0, main0 = d.master_cpu_s(), d.master_cpu_s(main_thread=True)
        t0 = time.monotonic()
        subprocess.run([PY, "-c", SENDER.format(repo=REPO), "127.0.0.1:%d" % d.pb_port, str(args.changes)],
                       env=d.env, check=True, timeout=120)
        wait_for(lambda: len(d.finished_builds()) >= want, args.timeout, interval=0.05,
                 what="%d finished builds" % want)
        elapsed = time.monotonic() - t0
        cpu = d.master_cpu_s() - cpu0
        main = d.master_cpu_s(main_thread=True) - main0
        results = [r for _, r in d.finished_builds()]
        assert results == [0] * want, results
        stats = d.stats_lines()
        return {"builds": want, "elapsed_s": elapsed, "builds_per_s": want / elapsed,
                "master_cpu_s": cpu, "master_cpu_ms_per_build": cpu * 1000 / want,
                "reactor_cpu_ms_per_build": main * 1000 / want,
                "stats": stats[-1] if stats else None}
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--builders", type=int, default=4)
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    fh = {"brokers": args.bootstrap, "master_name": "bench", "topic_prefix": "bench.", "stats_interval": 1.0}
    runs = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="firehose-bench-bb-") as tmp:
        for r in range(args.rounds):
            for label, conf in (("off", None), ("on", fh)):
                res = run_once(pathlib.Path(tmp) / ("%s-%d" % (label, r)), conf, args)
                runs[label].append(res)
                sys.stderr.write("bench: round %d %-3s %d builds in %.2f s = %.2f builds/s; master CPU %.2f s "
                                 "(%.0f ms/build, reactor thread %.0f ms/build)\n"
                                 % (r + 1, label, res["builds"], res["elapsed_s"], res["builds_per_s"],
                                    res["master_cpu_s"], res["master_cpu_ms_per_build"],
                                    res["reactor_cpu_ms_per_build"]))
    med = {k: statistics.median(x["builds_per_s"] for x in v) for k, v in runs.items()}
    cpu = {k: statistics.median(x["master_cpu_ms_per_build"] for x in v) for k, v in runs.items()}
    reactor = {k: statistics.median(x["reactor_cpu_ms_per_build"] for x in v) for k, v in runs.items()}
    paired = [on["builds_per_s"] / off["builds_per_s"] for off, on in zip(runs["off"], runs["on"])]
    on_stats = [x["stats"] for x in runs["on"] if x["stats"]]
    out = {"args": vars(args), "runs": runs, "median_builds_per_s": med, "median_cpu_ms_per_build": cpu,
           "median_reactor_cpu_ms_per_build": reactor, "paired_ratios": paired,
           "median_paired_ratio": statistics.median(paired),
           "slowdown_pct": (1 - med["on"] / med["off"]) * 100.0,
           "events_per_run": [s["delivered"] for s in on_stats],
           "dropped": sum(s["dropped"] for s in on_stats)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
