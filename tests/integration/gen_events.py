#!/usr/bin/env python3
"""Realistic Buildbot-like event streams as firehose v1 CloudEvents (see DESIGN.md).

Several masters share one Buildbot database (ids are global), each with its own workers.
Changes arrive and schedule build requests on a few builders; requests wait, are claimed,
builds run steps that write stdio logs in chunks, set properties and finish; requests
complete (a RETRY result unclaims the request and it runs again).  Many builds are
interleaved, workers come and go, a few pending requests are cancelled (results 6).
Everything is deterministic for a given seed.

As a module:
    import gen_events
    events = gen_events.generate(1000, seed=7)            # list of dicts
    for ev in gen_events.iter_events(seed=7): ...         # endless generator
    gen_events.kafka_key(ev), gen_events.topic_for(ev)    # the rules of CONVENTIONS-DRAFT.md

As a CLI (NDJSON on stdout):
    python3 gen_events.py --count N [--seed S] [--log-chunk-bytes B] [--types T,..] [--exclude-types T,..]
"""

import argparse
import datetime as _dt
import fnmatch
import json
import random
import sys
import uuid

# 2026-11-22T05:00:00Z
DEFAULT_START = _dt.datetime(2026, 11, 22, 5, 0, 0, tzinfo=_dt.timezone.utc).timestamp()
DEFAULT_LOG_CHUNK_BYTES = 600

SUCCESS, WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED = range(7)

PROJECTS = [
    # project, repository, codebase, revlink template, branches (weight)
    ("chromium", "https://git.example.org/chromium/src.git", "",
     "https://git.example.org/chromium/src/+/{rev}", [("main", 6), ("refs/branch-heads/6723", 1), ("try", 4)]),
    ("skia", "https://git.example.org/skia.git", "skia",
     "https://git.example.org/skia/+/{rev}", [("main", 3), ("try", 2)]),
    ("firefox", "https://hg.example.org/mozilla-central", "",
     "https://hg.example.org/mozilla-central/rev/{rev}", [("default", 4), ("try", 3), ("release", 1)]),
]

PLATFORMS = ["linux-x64", "linux-arm64", "mac-x64", "mac-arm64", "win-x64", "android-arm", "ios-arm64"]
VARIANTS = ["rel", "dbg", "asan", "tsan", "msan", "tests", "perf"]

AUTHORS = ["alice@example.org", "bob@example.org", "carol@example.org", "dave@example.org",
           "erin@example.org", "frank@example.org", "grace@example.org", "heidi@example.org",
           "ivan@example.org", "judy@example.org", "mallory@example.org", "oscar@example.org",
           "peggy@example.org", "trent@example.org", "victor@example.org", "walter@example.org"]

SUBJECTS = ["Fix flaky {t} on {p}", "Roll {d} to {r}", "Refactor {t} for clarity", "Add tests for {t}",
            "Revert \"Speed up {t}\"", "Reland \"Speed up {t}\"", "[{d}] Handle empty input in {t}",
            "Bump {d} version", "Remove dead code in {t}", "Use bounded queue in {t}"]
TOPICS = ["net::HttpCache", "base::FilePath", "V8 inliner", "GPU rasterizer", "the scheduler",
          "the sandbox", "WebSocket framing", "URL parsing", "font fallback", "ICU data loading",
          "the JIT", "crash reporting", "IPC channels", "memory pressure", "the compositor"]
DEPS = ["v8", "skia", "angle", "dawn", "icu", "boringssl", "libc++", "harfbuzz", "zlib", "webrtc"]
DIRS = ["base", "net/http", "content/browser", "third_party/blink/renderer/core", "gpu/command_buffer",
        "v8/src/compiler", "ui/gfx", "components/sync", "chrome/browser/ui", "media/audio",
        "src/core", "src/gpu", "dom/base", "js/src/jit", "layout/generic", "netwerk/protocol/http"]
EXTS = [".cc", ".h", ".cpp", ".py", ".js", ".gn", ".mm", ".rs", ".json", ".md"]

STEP_TEMPLATES = {
    "build": ["git", "set_build_properties", "gclient runhooks", "generate_build_files", "compile",
              "check_binary_size", "upload build"],
    "tests": ["git", "set_build_properties", "download build", "base_unittests", "net_unittests",
              "content_unittests", "browser_tests", "blink_web_tests", "archive test results"],
    "perf": ["git", "set_build_properties", "download build", "run benchmarks", "upload perf results"],
}
REASONS = ["The SingleBranchScheduler scheduler named '{s}' triggered this build",
           "The Nightly scheduler named 'nightly' triggered this build",
           "The Try_Jobdir scheduler named 'try' triggered this build",
           "The web-page 'rebuild' button was pressed by '{o}': retry",
           "The Triggerable scheduler named 'tests-{s}' triggered this build"]
STATE_DONE = {SUCCESS: "build successful", WARNINGS: "warnings", FAILURE: "failed",
              SKIPPED: "skipped", EXCEPTION: "exception", RETRY: "retry", CANCELLED: "cancelled"}


def rfc3339_ms(t):
    """Epoch seconds -> '2026-11-22T05:00:00.123Z'."""
    ms = int(round(t * 1000))
    d = _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def kafka_key(ev):
    """The record key, per docs/CONVENTIONS-DRAFT.md."""
    data = ev.get("data") or {}
    t = ev.get("type", "")
    if "buildrequestid" in data:
        return "buildrequest/%d" % data["buildrequestid"]
    if t == "change.new":
        return "change/%d" % data["changeid"]
    if t.startswith("worker."):
        return "worker/%d" % data["workerid"]
    if t.startswith("master."):
        return "master/%s" % data["name"]
    return None


def topic_for(ev, events="firehose.events", logs="firehose.logs"):
    """docs/events.md, "Topics and keys": log.* and test.results (bulk) on the logs topic."""
    t = ev.get("type", "")
    return logs if t.startswith("log.") or t == "test.results" else events


class _World:
    def __init__(self, rng, n_masters, start):
        self.rng = rng
        self.now = start
        self.masters = ["master-%d" % (i + 1) for i in range(n_masters)]
        self.ids = {k: 0 for k in ("change", "buildset", "buildrequest", "build", "step", "log", "worker")}
        self.build_numbers = {}
        # builders: (name, builderid, project tuple, kind)
        self.builders = []
        for pi, proj in enumerate(PROJECTS):
            plats = rng.sample(PLATFORMS, k=5 if pi == 0 else 3)
            for plat in plats:
                for var in rng.sample(VARIANTS, k=3 if pi == 0 else 2):
                    kind = "perf" if var == "perf" else ("tests" if var in ("tests", "asan", "tsan", "msan")
                                                         else "build")
                    name = "%s-%s-%s" % (proj[0], plat, var)
                    self.builders.append((name, len(self.builders) + 1, proj, kind))
        # workers per master: name, id, connected
        self.workers = {}
        for m in self.masters:
            ws = []
            for _ in range(rng.randint(6, 10)):
                wid = self.next_id("worker")
                plat = rng.choice(PLATFORMS).split("-")[0]
                ws.append({"name": "%s-%s-%03d" % (plat, m.split("-")[-1], wid), "platform": plat,
                           "workerid": wid, "connected": False})
            self.workers[m] = ws

    def next_id(self, kind):
        self.ids[kind] += 1
        return self.ids[kind]

    def tick(self):
        # Global clock: every event advances it a little (exponential gaps, ms resolution).
        self.now = round(self.now + self.rng.expovariate(1 / 0.025), 3)
        return self.now

    def revision(self):
        return "%040x" % self.rng.getrandbits(160)


def _ev(type_, master, subject, data):
    # id/time/seq are filled in by the emitter (after filtering, so seq has no gaps).
    return {"specversion": "1.0", "type": type_, "source": "buildbot://" + master, "subject": subject,
            "datacontenttype": "application/json", "master": master, "data": data}


def _log_lines(rng, step, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if step == "compile":
            if r < 0.9:
                d = rng.choice(DIRS)
                out.append("o[%d/%d] CXX obj/%s/%s_%d.o" % (rng.randint(1, 40000), 41234, d,
                                                          rng.choice(TOPICS).split()[-1].lower().replace(":", ""),
                                                          rng.randint(1, 99)))
            else:
                out.append("e../../%s/file_%d.cc:%d:%d: warning: unused variable 'tmp' [-Wunused-variable]"
                           % (rng.choice(DIRS), rng.randint(1, 500), rng.randint(1, 3000), rng.randint(1, 80)))
        elif "test" in step or "benchmark" in step:
            suite = rng.choice(["FileUtilTest", "HttpCacheTest", "URLParserTest", "SchedulerTest", "IPCTest",
                                "WebSocketTest", "FontFallbackTest", "CompositorTest"])
            case = "%sCase%d" % (rng.choice(["Handles", "Rejects", "Parses", "Reads", "Writes"]), rng.randint(1, 300))
            if r < 0.45:
                out.append("o[ RUN      ] %s.%s" % (suite, case))
            elif r < 0.93:
                out.append("o[       OK ] %s.%s (%d ms)" % (suite, case, rng.randint(0, 2500)))
            elif r < 0.97:
                out.append("e[%d:%d:WARNING:%s.cc(%d)] slow test" % (rng.randint(1000, 99999), rng.randint(1, 30),
                                                                    suite.lower(), rng.randint(10, 900)))
            else:
                out.append("o[  FAILED  ] %s.%s (%d ms)" % (suite, case, rng.randint(0, 5000)))
        else:
            if r < 0.8:
                out.append("o%s %s" % (rng.choice(["Fetching", "Updating", "Uploading", "Resolving", "Checking"]),
                                       rng.choice(DIRS)))
            else:
                out.append("e%s" % rng.choice(["remote: Counting objects: 100% (812/812), done.",
                                              "warning: redirecting to https://git.example.org/",
                                              "gsutil: 1 file(s) copied"]))
    return out


def _build_proc(w, builder, change, owner, reason, buildsetid, cancel, log_chunk_bytes):
    """Generator for one build request's life.  Yields event dicts, or None to let others run."""
    rng = w.rng
    name, builderid, proj, kind = builder
    brid = w.next_id("buildrequest")
    ctx = {"buildrequestid": brid, "builder": name, "builderid": builderid, "branch": change["branch"],
           "revision": change["revision"], "repository": proj[1], "project": proj[0], "codebase": proj[2],
           "owner": owner}
    sched_master = rng.choice(w.masters)
    br_subject = "buildrequests/%d" % brid
    yield _ev("buildrequest.new", sched_master, br_subject,
              dict(ctx, buildsetid=buildsetid, priority=rng.choice([0, 0, 0, 0, 10, -5]),
                   submitted_at=w.now, reason=reason))
    for _ in range(rng.randint(2, 40)):         # pending for a while
        yield None
    if cancel:
        yield _ev("buildrequest.complete", sched_master, br_subject, dict(ctx, complete_at=w.now, results=CANCELLED))
        return

    base_ctx = ctx
    while True:
        master = rng.choice(w.masters)
        yield _ev("buildrequest.claimed", master, br_subject,
                  dict(base_ctx, claimed_at=w.now, claimed_by_master=master))
        yield None
        ctx, results = yield from _run_build(w, builder, change, owner, base_ctx, master, log_chunk_bytes)
        if results != RETRY:
            break
        # Buildbot resubmits the request after a RETRY: it is unclaimed and waits again.
        yield _ev("buildrequest.unclaimed", master, br_subject,
                  dict(ctx, claimed_at=None, claimed_by_master=None))
        for _ in range(rng.randint(2, 20)):
            yield None
    yield _ev("buildrequest.complete", master, br_subject, dict(ctx, complete_at=w.now, results=results))


def _run_build(w, builder, change, owner, ctx, master, log_chunk_bytes):
    """One build of a claimed request; returns (context with buildid, build results)."""
    rng = w.rng
    name, builderid, proj, kind = builder
    plat = name.split("-")[1]
    connected = [x for x in w.workers[master] if x["connected"]] or w.workers[master]
    worker = rng.choice([x for x in connected if x["platform"] == plat] or connected)["name"]
    buildid = w.next_id("build")
    number = w.build_numbers.get(name, rng.randint(0, 5000))
    w.build_numbers[name] = number + 1
    ctx = dict(ctx, buildid=buildid)
    b_subject = "builds/%d" % buildid
    started = w.now
    yield _ev("build.started", master, b_subject, dict(ctx, number=number, worker=worker, started_at=started))
    yield _ev("property.set", master, b_subject, dict(ctx, properties={
        "buildername": [name, "Builder"], "buildnumber": [number, "Build"], "workername": [worker, "Worker"],
        "branch": [change["branch"], "Build"], "revision": [change["revision"], "Build"],
        "project": [proj[0], "Build"], "repository": [proj[1], "Build"], "scheduler": ["sched-" + kind, "Scheduler"],
        "owners": [[owner] if owner else [], "Build"]}))

    steps = STEP_TEMPLATES[kind]
    build_results = SUCCESS
    failed = False
    for number_s, sname in enumerate(steps):
        stepid = w.next_id("step")
        s_subject = "builds/%d/steps/%d" % (buildid, stepid)
        yield None
        s_started = w.now
        yield _ev("step.started", master, s_subject,
                  dict(ctx, stepid=stepid, number=number_s, name=sname, started_at=s_started))
        if rng.random() < 0.15:
            yield _ev("build.updated", master, b_subject, dict(ctx, state_string="building: " + sname))
        urls = []
        if failed:
            results = SKIPPED
        else:
            heavy = sname == "compile" or "test" in sname or "benchmark" in sname
            logs = [("stdio", "stdio", "s")]
            if heavy and rng.random() < 0.3:
                logs.append(("summary", "summary", "t"))
            if "test" in sname and rng.random() < 0.2:
                logs.append(("results.html", "results_html", "h"))
            for lname, slug, ltype in logs:
                logid = w.next_id("log")
                l_subject = "logs/%d" % logid
                lctx = dict(ctx, logid=logid, stepid=stepid)
                yield _ev("log.new", master, l_subject, dict(lctx, name=lname, slug=slug, type=ltype, num_lines=0))
                if ltype == "s":
                    n_chunks = rng.randint(3, 14) if heavy else rng.randint(0, 3)
                else:
                    n_chunks = 1
                line = 0
                for _ in range(n_chunks):
                    yield None
                    if ltype == "s":
                        lines, size = [], 0
                        while size < log_chunk_bytes:
                            ln = _log_lines(rng, sname, 1)[0]
                            lines.append(ln)
                            size += len(ln) + 1
                    elif ltype == "t":
                        lines = ["%d tests, %d passed, %d failed" % (rng.randint(100, 9000), rng.randint(100, 9000),
                                                                    rng.randint(0, 3))]
                    else:
                        lines = ["<html><body><h1>%s</h1><p>%d failures</p></body></html>" % (sname, rng.randint(0, 3))]
                    content = "\n".join(lines) + "\n"
                    yield _ev("log.chunk", master, l_subject, dict(lctx, firstline=line, content=content))
                    line += len(lines)
                yield _ev("log.finished", master, l_subject,
                          dict(lctx, name=lname, slug=slug, type=ltype, num_lines=line))
            r = rng.random()
            if r < 0.86:
                results = SUCCESS
            elif r < 0.92:
                results = WARNINGS
            elif r < 0.985:
                results = FAILURE
            elif r < 0.995:
                results = EXCEPTION
            else:
                results = RETRY
            if results in (FAILURE, EXCEPTION, RETRY):
                failed = True
            if "test" in sname:
                urls.append({"name": "test results", "url": "https://results.example.org/%s/%d/%s" % (
                    name, number, sname.replace(" ", "_"))})
            if sname == "upload build":
                urls.append({"name": "build archive", "url": "https://storage.example.org/builds/%s/%d.zip" % (
                    name, number)})
        build_results = max(build_results, results) if results != SKIPPED else build_results
        if sname == "git" and results == SUCCESS:
            yield _ev("property.set", master, b_subject, dict(ctx, properties={
                "got_revision": [change["revision"], "Git"]}))
        if sname in ("compile", "check_binary_size") and results == SUCCESS and rng.random() < 0.5:
            yield _ev("property.set", master, b_subject, dict(ctx, properties={
                "binary_size": [rng.randint(150_000_000, 190_000_000), "check_binary_size"],
                "compile_targets": [["all"], "compile"]}))
        state = {SUCCESS: sname, WARNINGS: sname + " (warnings)", FAILURE: sname + " (failure)",
                 SKIPPED: sname + " (skipped)", EXCEPTION: sname + " (exception)",
                 RETRY: sname + " (retry)"}[results]
        yield _ev("step.finished", master, s_subject, dict(
            ctx, stepid=stepid, number=number_s, name=sname, complete_at=w.now, results=results,
            state_string=state, duration_s=round(w.now - s_started, 3), urls=urls,
            hidden=sname == "set_build_properties"))

    yield None
    complete = w.now
    yield _ev("build.finished", master, b_subject, dict(
        ctx, number=number, complete_at=complete, results=build_results, state_string=STATE_DONE[build_results],
        duration_s=round(complete - started, 3)))
    return ctx, build_results


def _worker_flap(w, master, worker):
    worker["connected"] = False
    yield _ev("worker.disconnected", master, "workers/%d" % worker["workerid"],
              {"workerid": worker["workerid"], "name": worker["name"]})
    for _ in range(w.rng.randint(5, 60)):
        yield None
    worker["connected"] = True
    yield _ev("worker.connected", master, "workers/%d" % worker["workerid"],
              {"workerid": worker["workerid"], "name": worker["name"]})


def _raw_events(seed, n_masters, start, log_chunk_bytes):
    rng = random.Random(seed)
    w = _World(rng, n_masters, start)
    # Masters start and their workers connect.
    boot = []
    for m in w.masters:
        boot.append(_ev("master.started", m, "masters/" + m, {"name": m}))
        for x in w.workers[m]:
            x["connected"] = True
            boot.append(_ev("worker.connected", m, "workers/%d" % x["workerid"],
                            {"workerid": x["workerid"], "name": x["name"]}))
    for ev in boot:
        yield ev, w.tick()

    procs = []
    target = 8 * n_masters                      # roughly how many request lifecycles are in flight
    while True:
        if len(procs) < target and rng.random() < 0.08 or not procs:
            # A change lands (or a try job is sent) and schedules requests on a few builders.
            proj = rng.choice(PROJECTS)
            branch = rng.choices([b for b, _ in proj[4]], weights=[wt for _, wt in proj[4]])[0]
            author = rng.choice(AUTHORS)
            rev = w.revision()
            changeid = w.next_id("change")
            files = ["%s/%s%s" % (rng.choice(DIRS), rng.choice(TOPICS).split()[-1].lower().replace(":", "_"),
                                  rng.choice(EXTS)) for _ in range(rng.randint(1, 8))]
            subj = rng.choice(SUBJECTS).format(t=rng.choice(TOPICS), p=rng.choice(PLATFORMS),
                                               d=rng.choice(DEPS), r=rev[:12])
            change = {"branch": branch, "revision": rev}
            w.tick()
            yield (_ev("change.new", rng.choice(w.masters), "changes/%d" % changeid, {
                "changeid": changeid, "author": "%s <%s>" % (author.split("@")[0].title(), author),
                "comments": "%s\n\nBug: %d\nChange-Id: I%040x\n" % (subj, rng.randint(100000, 999999),
                                                                    rng.getrandbits(160)),
                "files": files, "when": w.now, "category": rng.choice([None, "", "cq", "autoroll"]),
                "revlink": proj[3].format(rev=rev), "branch": branch, "revision": rev, "repository": proj[1],
                "project": proj[0], "codebase": proj[2]}), w.now)
            candidates = [b for b in w.builders if b[2] is proj]
            n = rng.randint(1, 3) if branch == "try" else rng.randint(2, min(6, len(candidates)))
            buildsetid = w.next_id("buildset")
            owner = author if (branch == "try" or rng.random() < 0.7) else ""
            sched = "%s-%s" % (proj[0], branch.split("/")[-1])
            reason = rng.choice(REASONS).format(s=sched, o=owner or "anonymous")
            for b in rng.sample(candidates, k=min(n, len(candidates))):
                procs.append(_build_proc(w, b, change, owner, reason, buildsetid,
                                         cancel=rng.random() < 0.03, log_chunk_bytes=log_chunk_bytes))
            continue
        if rng.random() < 0.0003:
            m = rng.choice(w.masters)
            ws = [x for x in w.workers[m] if x["connected"]]
            if len(ws) > 1:
                procs.append(_worker_flap(w, m, rng.choice(ws)))
        i = rng.randrange(len(procs))
        # Time passes on every turn; epoch fields in data are read from w.now while the
        # generator runs, so they equal the envelope time of the event that carries them.
        w.tick()
        try:
            ev = next(procs[i])
        except StopIteration:
            procs[i] = procs[-1]
            procs.pop()
            continue
        if ev is not None:
            yield ev, w.now


# Every type this generator emits (master.stopped is in the contract but not generated).
TYPES = ("change.new", "buildrequest.new", "buildrequest.claimed", "buildrequest.unclaimed",
         "buildrequest.complete", "build.started", "build.updated", "build.finished", "step.started",
         "step.finished", "log.new", "log.chunk", "log.finished", "property.set", "worker.connected",
         "worker.disconnected", "master.started")


def _compile_filters(types, exclude):
    inc = [t.strip() for t in (types or "").split(",") if t.strip()]
    exc = [t.strip() for t in (exclude or "").split(",") if t.strip()]
    for pat in inc:
        if not any(fnmatch.fnmatchcase(t, pat) for t in TYPES):
            raise ValueError("--types %r matches no generated type (%s)" % (pat, ", ".join(TYPES)))
    if inc and not [t for t in TYPES if any(fnmatch.fnmatchcase(t, p) for p in inc)
                    and not any(fnmatch.fnmatchcase(t, p) for p in exc)]:
        raise ValueError("the type filters leave nothing to generate")

    def ok(t):
        if inc and not any(fnmatch.fnmatchcase(t, p) for p in inc):
            return False
        return not any(fnmatch.fnmatchcase(t, p) for p in exc)
    return ok


def iter_events(seed=0, masters=3, start=DEFAULT_START, log_chunk_bytes=DEFAULT_LOG_CHUNK_BYTES,
                types=None, exclude_types=None):
    """Endless stream of firehose events (dicts).  types/exclude_types: comma-separated globs
    ("log.*,build.finished").  id, time and seq are assigned after filtering, so seq counts
    from 1 per master without gaps in the output."""
    rng_id = random.Random("ids-%s" % seed)
    seqs = {}
    ok = _compile_filters(types, exclude_types)
    dry = 0
    for ev, t in _raw_events(seed, masters, start, log_chunk_bytes):
        if not ok(ev["type"]):
            dry += 1
            if dry > 500_000:      # a filter such as "master.*" selects only a handful of events
                return
            continue
        dry = 0
        m = ev["master"]
        seqs[m] = seqs.get(m, 0) + 1
        # Envelope order: specversion, id, source, type, time, subject, datacontenttype, master, seq, data
        out = {"specversion": "1.0", "id": str(uuid.UUID(int=rng_id.getrandbits(128), version=4)),
               "source": ev["source"], "type": ev["type"], "time": rfc3339_ms(t), "subject": ev["subject"],
               "datacontenttype": "application/json", "master": m, "seq": seqs[m], "data": ev["data"]}
        yield out


def generate(count, seed=0, **kw):
    """A list of `count` events; see iter_events for the keyword arguments."""
    out = []
    for ev in iter_events(seed=seed, **kw):
        out.append(ev)
        if len(out) >= count:
            break
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", "-n", type=int, required=True, help="number of events to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--masters", type=int, default=3)
    ap.add_argument("--log-chunk-bytes", type=int, default=DEFAULT_LOG_CHUNK_BYTES,
                    help="approximate size of each stdio log.chunk's content (default %(default)s)")
    ap.add_argument("--types", help="only these types (comma-separated globs, e.g. 'log.chunk' or 'build.*')")
    ap.add_argument("--exclude-types", help="drop these types (comma-separated globs, e.g. 'log.*')")
    ap.add_argument("--start", help="time of the first event, RFC 3339 (default 2026-11-22T05:00:00Z)")
    a = ap.parse_args(argv)
    try:
        _compile_filters(a.types, a.exclude_types)
    except ValueError as e:
        ap.error(str(e))
    start = DEFAULT_START
    if a.start:
        start = _dt.datetime.fromisoformat(a.start.replace("Z", "+00:00")).timestamp()
    out = sys.stdout
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    buf, n = [], 0
    if a.count > 0:
        for ev in iter_events(seed=a.seed, masters=a.masters, start=start, log_chunk_bytes=a.log_chunk_bytes,
                              types=a.types, exclude_types=a.exclude_types):
            buf.append(dumps(ev))
            n += 1
            if len(buf) >= 1000:
                out.write("\n".join(buf) + "\n")
                buf = []
            if n >= a.count:
                break
    if buf:
        out.write("\n".join(buf) + "\n")
    out.flush()
    if n < a.count:
        sys.stderr.write("gen_events: only %d events match the type filters\n" % n)
        return 1
    return 0

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.exit(0)
