"""Build throughput of a real Buildbot master with and without the firehose integration.

Method (made for a shared, noisy machine):

- Two deployments live side by side for the whole run, each a master + worker (sqlite, loopback):
  A without the integration, B with it (producing to Kafka). Each has its own long-lived change
  sender, so no process start-up falls inside a timed window.
- They take turns, A B A B ... A: one burst of CHANGES changes, each building on every one of
  BUILDERS builders (requests not collapsed), timed from the burst's first change to its last
  finished build. While one deployment is measured the other is SIGSTOPped, so it takes no CPU;
  after a burst the deployment settles for a moment (buildset completion, the integration's
  last events) before it is stopped. Each side runs one unmeasured warm-up burst first.
- Everything the run starts inherits the bench's nice value (bench/buildbot.sh: -10), so other
  work on shared cores yields to it rather than landing in some bursts and not others.
- Each B burst is compared with the A bursts just before and after it:
  ratio_i = B_i / sqrt(A_i * A_(i+1)), so a load that drifts linearly over the three bursts
  cancels. The result is the median of those ratios with their range and quartiles; the same is
  reported for master CPU per build.
- Every burst also measures how much CPU other work took meanwhile (/proc/stat's busy time minus
  what this bench's processes and Kafka used, leaving out work at nice >= 10). A triple whose
  three bursts all saw other work below --quiet (10% of the CPUs) is quiet; the goal is judged on
  the quiet triples, and all of them are reported beside.

Prints the docs/performance.md section (markdown) on stdout; --json FILE also writes the raw
numbers. Used by bench/buildbot.sh.
"""

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats  # noqa: E402  (bench/stats.py: one machine line for every bench)

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

# Reads a number N per line on stdin, sends N changes, answers "sent" (or "error ...").
SENDER = textwrap.dedent('''\
    import sys
    from twisted.internet import defer, stdio, task
    from twisted.protocols.basic import LineReceiver
    from buildbot.clients.sendchange import Sender

    class Burst(LineReceiver):
        delimiter = b"\\n"

        def __init__(self, master, done):
            self.sender, self.n, self.done = Sender(master, auth=("change", "changepw")), 0, done

        def lineReceived(self, line):
            d = defer.ensureDeferred(self.burst(int(line)))
            d.addCallbacks(lambda _: self.sendLine(b"sent"),
                           lambda f: self.sendLine(b"error " + str(f.value).encode()))

        async def burst(self, count):
            for _ in range(count):
                self.n += 1
                await self.sender.send(branch="trunk", revision="%040x" % self.n, comments="bench %d" % self.n,
                                       files=["f%d.c" % self.n], who="Bench <bench@example.org>",
                                       repository={repo!r}, project="bench", vc="git")

        def connectionLost(self, reason):
            self.done.callback(None)

    def main(reactor, master):
        done = defer.Deferred()
        stdio.StandardIO(Burst(master, done))
        return done

    task.react(main, [sys.argv[1]])
''')


TICK = os.sysconf("SC_CLK_TCK")


def machine_busy():
    """Jiffies the whole machine spent busy (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def processes():
    """pid -> (ppid, nice, jiffies it used, jiffies of the children it reaped)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                v = f.read().rsplit(")", 1)[1].split()
            out[int(d)] = (int(v[1]), int(v[16]), int(v[11]) + int(v[12]), int(v[13]) + int(v[14]))
        except (OSError, IndexError, ValueError):
            pass
    return out


def ours(procs, roots):
    """roots and every process below them."""
    mine = set(roots)
    while True:
        kids = {p for p, (pp, _, _, _) in procs.items() if pp in mine and p not in mine}
        if not kids:
            return mine
        mine |= kids


class Disturbance:
    """How much CPU other work took over a window, as a share of all CPUs: the machine's busy time
    (/proc/stat) minus what this bench's processes (masters, workers, the build steps they reaped,
    senders) and Kafka used. `foreground` leaves out processes at nice 10 or more (fuzzers, batch
    jobs) that only take what this bench's nice -10 processes leave idle; time no process accounts
    for (exited processes, the kernel) counts as foreground."""

    def __init__(self, extra_pids):
        self.roots = set(extra_pids) | {os.getpid()}

    def start(self):
        self.t0, self.busy0, self.p0 = time.monotonic(), machine_busy(), processes()

    def stop(self):
        wall = time.monotonic() - self.t0
        busy, p1 = machine_busy() - self.busy0, processes()
        mine = ours(p1, self.roots) | ours(self.p0, self.roots)
        own = background = other = kafka = 0
        for pid, (_, nice, t, children) in p1.items():
            t0, c0 = self.p0[pid][2:] if pid in self.p0 else (0, 0)
            d = t - t0
            if pid in self.roots and pid != os.getpid():
                kafka += d
            if pid in mine:
                # Ours with the build steps they reaped. Others' reaped children are left out: a
                # parent reaping a long-lived child would book all of its life in one burst; what
                # short-lived processes used stays in the unaccounted rest.
                own += d + children - c0
            elif nice >= 10:
                background += d
            else:
                other += d
        cap = wall * TICK * os.cpu_count()
        unaccounted = max(0, busy - own - background - other)
        everything = max(0, busy - own)
        return {"foreground": min(everything, other + unaccounted) / cap, "all": everything / cap,
                "kafka_s": kafka / TICK}


class Side:
    """One deployment and its change sender."""

    def __init__(self, label, tmp, firehose, args):
        self.label = label
        self.d = Deployment(tmp, firehose, body=BODY.format(builders=args.builders, lines=args.lines))
        self.sender = None
        self.builds = 0

    def start(self):
        self.d.start()
        self.sender = subprocess.Popen([PY, "-c", SENDER.format(repo=REPO), "127.0.0.1:%d" % self.d.pb_port],
                                       env=self.d.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       bufsize=1)

    def burst(self, args, disturbance):
        """One timed burst; returns its measurements."""
        want = self.builds + args.changes * args.builders
        cpu0, main0 = self.d.master_cpu_s(), self.d.master_cpu_s(main_thread=True)
        disturbance.start()
        t0 = time.monotonic()
        self.sender.stdin.write("%d\n" % args.changes)
        answer = self.sender.stdout.readline().strip()
        if answer != "sent":
            raise RuntimeError("%s: change sender said %r" % (self.label, answer))
        wait_for(lambda: self.d.finished_count() >= want, args.timeout, interval=0.05,
                 what="%s: %d finished builds" % (self.label, want))
        elapsed = time.monotonic() - t0
        others = disturbance.stop()
        cpu = self.d.master_cpu_s() - cpu0
        main = self.d.master_cpu_s(main_thread=True) - main0
        n = want - self.builds
        self.builds = want
        return {"side": self.label, "builds": n, "elapsed_s": elapsed, "builds_per_s": n / elapsed,
                "cpu_ms_per_build": cpu * 1000 / n, "reactor_ms_per_build": main * 1000 / n,
                "kafka_ms_per_build": others.pop("kafka_s") * 1000 / n, "others_cpu": others,
                "loadavg": os.getloadavg()[0]}

    def stop(self):
        if self.sender is not None and self.sender.poll() is None:
            self.sender.stdin.close()
            try:
                self.sender.wait(10)
            except subprocess.TimeoutExpired:
                self.sender.kill()
        self.d.stop()


def quartiles(xs):
    xs = sorted(xs)
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def bracketed(a, b, key):
    """B_i against the geometric mean of A_i and A_(i+1)."""
    return [b[i][key] / math.sqrt(a[i][key] * a[i + 1][key]) for i in range(len(b))]


def summary(xs):
    if not xs:
        return None
    lo, hi = quartiles(xs)
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "q1": lo, "q3": hi, "n": len(xs)}


def quiet_triples(a, b, limit):
    """Which B bursts had every burst of their triple (A_i, B_i, A_i+1) undisturbed."""
    return [all(x["others_cpu"]["foreground"] <= limit for x in (a[i], b[i], a[i + 1])) for i in range(len(b))]


def run(args):
    fh = {"brokers": args.bootstrap, "master_name": "bench", "topic_prefix": "bench.", "stats_interval": 1.0}
    runs = []
    with tempfile.TemporaryDirectory(prefix="firehose-bench-bb-") as tmp:
        a = Side("off", pathlib.Path(tmp) / "off", None, args)
        b = Side("on", pathlib.Path(tmp) / "on", fh, args)
        try:
            for side in (a, b):
                side.start()
                side.d.pause()
            order = ["off", "on"] * args.pairs + ["off"]
            disturbance = Disturbance([args.kafka_pid] if args.kafka_pid else [])
            for i, label in enumerate(["off", "on"] + order):      # the first two: warm-up
                side = a if label == "off" else b
                side.d.resume()
                time.sleep(args.settle)
                res = side.burst(args, disturbance)
                time.sleep(args.settle)
                side.d.pause()
                res["warmup"] = i < 2
                runs.append(res)
                sys.stderr.write("bench: %-7s %-3s %d builds in %5.2f s = %.3f builds/s; master CPU %.0f ms/build "
                                 "(reactor %.0f); other work %2.0f%% of the CPUs (%2.0f%% below nice 10), "
                                 "load %.1f\n"
                                 % ("warm-up" if i < 2 else "#%d" % (i - 1), label, res["builds"], res["elapsed_s"],
                                    res["builds_per_s"], res["cpu_ms_per_build"], res["reactor_ms_per_build"],
                                    res["others_cpu"]["all"] * 100, res["others_cpu"]["foreground"] * 100,
                                    res["loadavg"]))
            b.d.resume()
            time.sleep(2.5)                  # one more stats line, after the last burst's events
            stats = b.d.stats_lines()
            b_stats = stats[-1] if stats else {}
            failed = [row for side in (a, b) for row in side.d.db("SELECT id FROM builds WHERE results != 0")]
        finally:
            a.stop()
            b.stop()
    if failed:
        raise RuntimeError("%d builds did not succeed" % len(failed))
    timed = [r for r in runs if not r["warmup"]]
    offs = [r for r in timed if r["side"] == "off"]
    ons = [r for r in timed if r["side"] == "on"]
    quiet = quiet_triples(offs, ons, args.quiet)
    ratios = {k: bracketed(offs, ons, k) for k in ("builds_per_s", "cpu_ms_per_build", "reactor_ms_per_build")}

    def both(k):
        return {"all": summary(ratios[k]), "quiet": summary([x for x, q in zip(ratios[k], quiet) if q])}
    return {"args": vars(args), "runs": runs,
            "throughput_ratio": both("builds_per_s"),
            "throughput_ratios": ratios["builds_per_s"], "quiet": quiet,
            "cpu_ratio": both("cpu_ms_per_build"),
            "reactor_ratio": both("reactor_ms_per_build"),
            "median_builds_per_s": {k: statistics.median(r["builds_per_s"] for r in v)
                                    for k, v in (("off", offs), ("on", ons))},
            "median_cpu_ms_per_build": {k: statistics.median(r["cpu_ms_per_build"] for r in v)
                                        for k, v in (("off", offs), ("on", ons))},
            "median_reactor_ms_per_build": {k: statistics.median(r["reactor_ms_per_build"] for r in v)
                                            for k, v in (("off", offs), ("on", ons))},
            "median_kafka_ms_per_build": {k: statistics.median(r["kafka_ms_per_build"] for r in v)
                                          for k, v in (("off", offs), ("on", ons))},
            "started": args.started, "finished": time.time(),
            "integration": {k: b_stats.get(k) for k in ("delivered", "dropped", "emitted", "errors")},
            "loadavg": [r["loadavg"] for r in runs]}


def software():
    import buildbot
    import buildbot_worker
    import confluent_kafka
    return "Buildbot %s, buildbot-worker %s, confluent-kafka %s (librdkafka %s), Python %s" % (
        buildbot.version, buildbot_worker.version, importlib.metadata.version("confluent-kafka"),
        confluent_kafka.libversion()[0], platform.python_version())


def markdown(r):
    a = r["args"]
    started = datetime.datetime.fromtimestamp(r["started"], datetime.timezone.utc)
    timed = [x for x in r["runs"] if not x["warmup"]]

    def row(label):
        v = [x for x in timed if x["side"] == label]
        bps = [x["builds_per_s"] for x in v]
        return "| %s | %d | %.3f | %.3f-%.3f | %.0f | %.0f | %.0f |" % (
            "without the integration" if label == "off" else "with the integration (to Kafka)", len(v),
            r["median_builds_per_s"][label], min(bps), max(bps), r["median_cpu_ms_per_build"][label],
            r["median_reactor_ms_per_build"][label], r["median_kafka_ms_per_build"][label])

    def ratio(name, both):
        cells = []
        for k in ("quiet", "all"):
            s = both[k]
            cells.append("-" if s is None else "**%.3f** (%.3f-%.3f; %.3f-%.3f)" % (
                s["median"], s["min"], s["max"], s["q1"], s["q3"]))
        return "| %s | %s | %s |" % (name, cells[0], cells[1])

    t = r["throughput_ratio"]
    nq, n = sum(r["quiet"]), len(r["quiet"])
    if t["quiet"] is None:
        verdict = "not shown: no B burst had a quiet triple (other work above %.0f%% of the CPUs throughout)" % (
            a["quiet"] * 100)
    else:
        tq = t["quiet"]
        if tq["q1"] >= 0.95:
            word = "met"
        elif tq["q3"] < 0.95:
            word = "not met"
        else:
            word = "borderline (the quartiles straddle 0.95)"
        verdict = "%s on the quiet triples: median %.3f (%.1f%% %s), quartiles %.3f-%.3f, %d of %d below 0.95" % (
            word, tq["median"], abs(1 - tq["median"]) * 100, "slower" if tq["median"] < 1 else "faster",
            tq["q1"], tq["q3"], sum(x < 0.95 for x, q in zip(r["throughput_ratios"], r["quiet"]) if q), nq)
    others = [x["others_cpu"]["all"] * 100 for x in timed]
    fg = [x["others_cpu"]["foreground"] * 100 for x in timed]
    load = r["loadavg"]
    return "\n".join([
        "## Buildbot: master build throughput with and without the integration",
        "",
        "- Command: `flock /tmp/firehose-cpu.lock bash bench/buildbot.sh` (bench/buildbot_bench.py)",
        "- Method: two deployments side by side for the whole run, each a master + worker on loopback with "
        "sqlite, A without the integration, B with it producing to Kafka; they take turns A B A B ... A "
        "(%d B bursts, %d A bursts, after one unmeasured warm-up burst each), the idle one SIGSTOPped, "
        "everything at nice %d. A burst: %d changes sent by a long-lived sender, each building on %d "
        "builders (%d builds; 3 steps, %d log lines and a property each), timed from its first change to its "
        "last finished build. Each B burst is compared with the A bursts before and after it, "
        "B_i / sqrt(A_i A_i+1), so a load drifting over the three cancels. A triple is *quiet* when other "
        "work (the machine's busy time in /proc/stat minus our processes', Kafka's included, leaving out "
        "processes at nice >= 10, which only get what ours leave idle) used at most %.0f%% of the CPUs "
        "during each of its three bursts; the goal is judged on the quiet ones."
        % (a["pairs"], a["pairs"] + 1, os.nice(0), a["changes"], a["builders"], a["changes"] * a["builders"],
           a["lines"], a["quiet"] * 100),
        "- Date: %s (run took %.0f min)" % (started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                           (r["finished"] - r["started"]) / 60),
        "- Machine: %s; Kafka (KRaft, one node on loopback) on the same cores; shared with other work: it used "
        "%.0f-%.0f%% of the CPUs per burst (median %.0f%%), %.0f-%.0f%% (median %.0f%%) below nice 10; 1-min "
        "load average %.1f-%.1f"
        % (stats.machine(), min(others), max(others), statistics.median(others), min(fg), max(fg),
           statistics.median(fg), min(load), max(load)),
        "- Software: %s" % software(),
        "- Goal: the integration costs at most 5% of the master's build throughput (ratio >= 0.95).",
        "",
        "| with / without, per B burst: median (range; quartiles) | %d quiet triples | all %d |" % (nq, n),
        "|---|---:|---:|",
        ratio("build throughput", t),
        ratio("master process CPU per build", r["cpu_ratio"]),
        ratio("reactor thread CPU per build", r["reactor_ratio"]),
        "",
        "| master | bursts | median builds/s | min-max builds/s | master CPU ms/build | reactor CPU ms/build "
        "| Kafka CPU ms/build |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("off"),
        row("on"),
        "",
        "Throughput goal: %s. Throughput ratio per B burst (q: quiet triple): %s. With the integration the "
        "service delivered %s events to Kafka, dropped %s, errors %s. CPU from /proc (utime + stime) over "
        "each burst." % (verdict, ", ".join("%.3f%s" % (x, " q" if q else "")
                                           for x, q in zip(r["throughput_ratios"], r["quiet"])),
                         r["integration"]["delivered"], r["integration"]["dropped"], r["integration"]["errors"]),
    ])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", help="Kafka bootstrap servers (needed for a run)")
    ap.add_argument("--changes", type=int, default=5, help="changes per burst")
    ap.add_argument("--builders", type=int, default=4)
    ap.add_argument("--lines", type=int, default=2000, help="log lines per build")
    ap.add_argument("--pairs", type=int, default=25, help="B bursts (A bursts: one more)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds before and after each burst")
    ap.add_argument("--quiet", type=float, default=0.10,
                    help="a burst is undisturbed when other work below nice 10 used at most this share of the CPUs")
    ap.add_argument("--kafka-pid", type=int, help="Kafka's pid: its CPU counts as ours, not as other work")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", help="also write the raw numbers here")
    ap.add_argument("--from-json", help="no run: print the section for the raw numbers of an earlier one")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            print(markdown(json.load(f)))
        return
    if not args.bootstrap:
        ap.error("--bootstrap is needed for a run")
    args.started = time.time()
    r = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    print(markdown(r))


if __name__ == "__main__":
    main()
