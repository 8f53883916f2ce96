"""The materialised view and its REST layer on real Kafka.

Scripted scenarios (branches, builders, failures, retries, cancellations, reordering across
partitions, duplicated events) must give exactly the expected pending / running / last-green /
revisions answers; bad parameters get 400 naming the parameter; ETag gives 304; every answer
matches docs/openapi.yaml; and a broker SIGKILLed ten times during ingest ends with the same view
as a fresh broker that builds it from scratch.
"""

import json
import random
import re
import sqlite3
import subprocess
import threading
import time
import uuid

import pytest
import requests

from conftest import wait_for
from view_helpers import Broker, OpenAPI, Script, dump_view, emit, view_state, write_ndjson
import gen_events

R = "https://git.example.org/firehose.git"
R2 = "https://git.example.org/other.git"
BUILDERS = {"linux": 1, "mac": 2, "win": 3}
PARTS = 3


def rev(name):
    """A 40-hex revision per symbolic name (r1, rel2, ...)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, name).hex + "%08x" % (sum(map(ord, name)) & 0xFFFFFFFF)


def topics_for(kafka, prefix):
    t = {"events": prefix + ".events", "logs": prefix + ".logs", "dlq": prefix + ".dlq"}
    kafka.create_topics({t["events"]: PARTS, t["logs"]: PARTS, t["dlq"]: 1})
    return t


class World(Script):
    """A small CI: requests, builds, steps, properties, logs and changes with explicit times."""

    def __init__(self, t0):
        super().__init__(t0)
        self.ctx = {}
        self.nfull = 0

    def _c(self, brid, buildid=None):
        d = dict(self.ctx[brid])
        if buildid:
            d["buildid"] = buildid
        return d

    def new(self, brid, builder, branch, revision, t, owner="", repo=R):
        self.ctx[brid] = {"buildrequestid": brid, "builder": builder, "builderid": BUILDERS[builder],
                          "branch": branch, "revision": rev(revision), "repository": repo,
                          "project": "firehose" if repo == R else "other", "codebase": "",
                          "owner": owner}
        return self.add("buildrequest.new", dict(self._c(brid), buildsetid=brid, priority=0,
                                                 submitted_at=self.t0 + t, reason="scripted"), t,
                        subject="buildrequests/%d" % brid)

    def claimed(self, brid, t, master="master-1"):
        return self.add("buildrequest.claimed", dict(self._c(brid), claimed_at=self.t0 + t,
                                                     claimed_by_master=master), t, master=master)

    def unclaimed(self, brid, t):
        return self.add("buildrequest.unclaimed", dict(self._c(brid), claimed_at=None,
                                                       claimed_by_master=None), t)

    def complete(self, brid, t, results, buildid=None):
        return self.add("buildrequest.complete", dict(self._c(brid, buildid), complete_at=self.t0 + t,
                                                      results=results), t)

    def started(self, brid, buildid, number, t, worker="w-1"):
        return self.add("build.started", dict(self._c(brid, buildid), number=number, worker=worker,
                                              started_at=self.t0 + t), t, subject="builds/%d" % buildid)

    def updated(self, brid, buildid, t, state):
        return self.add("build.updated", dict(self._c(brid, buildid), state_string=state), t)

    def finished(self, brid, buildid, number, t, results, duration=6.0):
        return self.add("build.finished", dict(self._c(brid, buildid), number=number,
                                               complete_at=self.t0 + t, results=results,
                                               state_string=gen_events.STATE_DONE[results],
                                               duration_s=duration), t)

    def step_started(self, brid, buildid, stepid, number, name, t):
        return self.add("step.started", dict(self._c(brid, buildid), stepid=stepid, number=number,
                                             name=name, started_at=self.t0 + t), t)

    def step_finished(self, brid, buildid, stepid, number, name, t, results, duration):
        return self.add("step.finished", dict(self._c(brid, buildid), stepid=stepid, number=number,
                                              name=name, complete_at=self.t0 + t, results=results,
                                              state_string=name, duration_s=duration, urls=[],
                                              hidden=False), t)

    def props(self, brid, buildid, t, props):
        return self.add("property.set", dict(self._c(brid, buildid), properties=props), t)

    def log(self, brid, buildid, t, logid, stepid, type_="log.new", num_lines=0):
        return self.add(type_, dict(self._c(brid, buildid), logid=logid, stepid=stepid, name="stdio",
                                    slug="stdio", type="s", num_lines=num_lines), t)

    def change(self, changeid, branch, revision, when, repo=R):
        return self.add("change.new", {"changeid": changeid, "author": "Dev %d <dev%d@example.org>" % (
            changeid, changeid), "comments": "change %d" % changeid, "files": ["src/%d.c" % changeid],
            "when": self.t0 + when, "category": None, "revlink": "", "branch": branch,
            "revision": rev(revision), "repository": repo, "project": "firehose", "codebase": ""},
            when, subject="changes/%d" % changeid)

    def full(self, brid, builder, branch, revision, buildid, results, t, repo=R):
        """A whole request: new, claimed, build with one compile step, finished, complete."""
        self.nfull += 1
        self.new(brid, builder, branch, revision, t, repo=repo)
        self.claimed(brid, t + 1)
        self.started(brid, buildid, buildid + 1000, t + 2)
        self.step_started(brid, buildid, buildid * 10, 0, "compile", t + 3)
        self.step_finished(brid, buildid, buildid * 10, 0, "compile", t + 4, results, float(self.nfull))
        self.finished(brid, buildid, buildid + 1000, t + 6, results)
        self.complete(brid, t + 7, results, buildid)


def scenario(t0):
    """Returns (phase 1 events: every request and build; phase 2 events: the changes)."""
    w = World(t0)
    # trunk of R. Revision order r1 < ... < r6 comes from the changes of phase 2; builds are sent
    # first, in an order that differs from it.
    w.full(11, "linux", "trunk", "r1", 21, 0, 100)
    w.full(12, "linux", "trunk", "r4", 22, 0, 110)
    w.full(13, "linux", "trunk", "r6", 23, 2, 120)
    w.full(14, "mac", "trunk", "r2", 24, 0, 130)
    w.full(15, "mac", "trunk", "r5", 25, 1, 140)
    w.full(16, "win", "trunk", "r3", 26, 2, 150)   # failure, then a green rebuild at the same revision
    w.full(17, "win", "trunk", "r3", 27, 0, 160)
    w.full(18, "win", "trunk", "r4", 28, 4, 170)   # exception
    w.full(19, "win", "trunk", "r6", 29, 6, 180)   # cancelled: no verdict
    w.new(20, "mac", "trunk", "r6", 190)
    w.claimed(20, 191)
    w.started(20, 30, 1030, 192)                   # running
    # release: required builders from config (linux only); no changes, order from build times.
    w.full(31, "linux", "release", "rel1", 41, 0, 200)
    w.full(32, "linux", "release", "rel2", 42, 2, 210)
    w.full(33, "mac", "release", "rel2", 43, 0, 215)
    # feature: never green.
    w.full(34, "linux", "feature", "feat1", 44, 2, 220)
    # trunk of another repository.
    w.full(35, "linux", "trunk", "o1", 45, 0, 225, repo=R2)

    # Pending and running.
    dup_new = w.new(50, "linux", "trunk", "r6", 300, owner="alice@example.org")      # pending
    w.new(51, "mac", "trunk", "r6", 301)
    w.claimed(51, 302)                                                                # claimed
    w.new(52, "win", "release", "rel2", 303, owner="bob@example.org")
    w.claimed(52, 304)
    dup_unclaim = w.unclaimed(52, 305)                                                # pending again
    w.new(53, "linux", "trunk", "r6", 306)
    w.claimed(53, 336)
    w.unclaimed(53, 326)          # older than the claim that arrived before it: stays claimed
    w.new(54, "mac", "trunk", "r6", 307)
    w.complete(54, 308, 6)        # cancelled before a build
    w.claimed(54, 309)            # a late claim must not resurrect it
    w.new(55, "win", "trunk", "r6", 310)
    w.claimed(55, 311)
    w.finished(55, 65, 7, 313, 0)  # finished arrives before started: ends finished
    w.started(55, 65, 7, 312)
    w.new(56, "linux", "release", "rel2", 314)
    w.claimed(56, 315)
    w.started(56, 66, 9, 316, worker="linux-w2")
    w.updated(56, 66, 317, "compiling")
    w.step_started(56, 66, 601, 0, "compile", 318)
    p1 = w.props(56, 66, 319, {"a": [1, "Step"]})
    w.props(56, 66, 320, {"a": [2, "Step"], "b": ["x", "Worker"]})
    w.log(56, 66, 321, 701, 601)
    w.new(57, "linux", "trunk", "r6", 322)
    w.claimed(57, 323)
    w.started(57, 67, 11, 324)
    w.finished(57, 67, 11, 325, 5)   # RETRY
    w.unclaimed(57, 326)             # back in the queue
    # Duplicates (same id): none of them may change anything.
    w.dup(dup_new)
    w.dup(dup_unclaim)
    w.dup(p1)
    phase1 = list(w.events)
    w.events = []
    for i in range(1, 7):
        w.change(i, "trunk", "r%d" % i, 10 * i)
    return phase1, list(w.events), t0


@pytest.fixture(scope="module")
def openapi():
    return OpenAPI()


@pytest.fixture(scope="module")
def world(kafka, tmp_path_factory):
    """One broker on the scenario's topics: (broker, topics, interim last-green answer)."""
    tmp = tmp_path_factory.mktemp("view")
    topics = topics_for(kafka, "vs-%s" % uuid.uuid4().hex[:8])
    t0 = int(time.time()) - 3600
    phase1, phase2, _ = scenario(t0)
    write_ndjson(tmp / "phase1.ndjson", phase1)
    write_ndjson(tmp / "phase2.ndjson", phase2)
    emit(kafka, topics, tmp / "phase1.ndjson", expected=len(phase1))
    # One record that is not an event: the view counts it and moves past it.
    subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", topics["events"]],
                   input=b"this is not json\n", check=True, timeout=60)
    b = Broker(kafka, topics, tmp / "view.db", tmp / "broker.log",
               extra=["--view.required_builders=release=linux, linux;nightly=mac"]).start()
    try:
        b.wait_applied(len(phase1) + 1)
        interim = b.json("/api/v1/last-green", {"branch": "trunk", "repository": R})
        emit(kafka, topics, tmp / "phase2.ndjson", expected=len(phase2))
        b.wait_applied(len(phase1) + 1 + len(phase2))
        yield {"broker": b, "topics": topics, "interim": interim, "t0": t0, "tmp": tmp}
    finally:
        rc = b.stop()
        assert rc == 0, b.log()[-3000:]


def strip_asof(d):
    return {k: v for k, v in d.items() if k != "as_of"}


def test_pending_is_exactly_unclaimed_incomplete_requests(world, openapi):
    b = world["broker"]
    r = b.get("/api/v1/pending")
    openapi.check("/api/v1/pending", r)
    body = r.json()
    assert [p["buildrequestid"] for p in body["pending"]] == [50, 52, 57]
    assert body["total"] == 3 and body["limit"] == 100
    p50 = body["pending"][0]
    assert p50["builder"] == "linux" and p50["owner"] == "alice@example.org"
    assert p50["revision"] == rev("r6") and p50["repository"] == R and p50["branch"] == "trunk"
    assert p50["submitted_at"] == world["t0"] + 300
    assert p50["waiting_s"] >= 3000
    for q, want in (({"builder": "linux"}, [50, 57]), ({"owner": "bob@example.org"}, [52]),
                    ({"branch": "release"}, [52]), ({"project": "other"}, []),
                    ({"limit": 1}, [50])):
        got = b.json("/api/v1/pending", q)
        assert [p["buildrequestid"] for p in got["pending"]] == want, q
    assert b.json("/api/v1/pending", {"limit": 1})["total"] == 3


def test_running_is_exactly_started_unfinished_builds(world, openapi):
    b = world["broker"]
    r = b.get("/api/v1/running")
    openapi.check("/api/v1/running", r)
    body = r.json()
    assert [x["buildid"] for x in body["running"]] == [30, 66] and body["total"] == 2
    b30, b66 = body["running"]
    assert b30["current_step"] is None and b30["builder"] == "mac"
    assert b66["current_step"] == {"stepid": 601, "number": 0, "name": "compile",
                                   "started_at": world["t0"] + 318}
    assert b66["state_string"] == "compiling" and b66["worker"] == "linux-w2"
    assert b66["elapsed_s"] >= 3000
    assert [x["buildid"] for x in b.json("/api/v1/running", {"worker": "linux-w2"})["running"]] == [66]


def test_last_green_follows_the_bracketing_rule(world, openapi):
    b = world["broker"]
    # Before the changes arrived, the order came from build times and no revision qualified.
    interim = world["interim"]
    assert interim["revision"] is None and "mac" in interim["reason"], interim

    r = b.get("/api/v1/last-green", {"branch": "trunk", "repository": R})
    openapi.check("/api/v1/last-green", r)
    t0 = world["t0"]

    def gb(buildid, revision, results, t):
        return {"buildid": buildid, "number": buildid + 1000, "revision": rev(revision),
                "results": results, "complete_at": t0 + t}
    assert strip_asof(r.json()) == {
        "branch": "trunk", "repository": R, "revision": rev("r3"), "position": t0 + 30,
        "changeid": 3, "reason": None, "required_from": "recent_builds",
        "required_builders": ["linux", "mac", "win"],
        "builders": [
            {"builder": "linux", "good_by": "between_green_builds",
             "build_before": gb(21, "r1", 0, 106), "build_after": gb(22, "r4", 0, 116)},
            {"builder": "mac", "good_by": "between_green_builds",
             "build_before": gb(24, "r2", 0, 136), "build_after": gb(25, "r5", 1, 146)},
            {"builder": "win", "good_by": "green_build", "build": gb(27, "r3", 0, 166)},
        ]}

    rel = b.json("/api/v1/last-green", {"branch": "release"})
    assert rel["revision"] == rev("rel1") and rel["required_from"] == "config"
    assert rel["required_builders"] == ["linux"] and rel["changeid"] is None
    assert rel["builders"] == [{"builder": "linux", "good_by": "green_build", "build": gb(41, "rel1", 0, 206)}]

    feat = b.get("/api/v1/last-green", {"branch": "feature"})
    openapi.check("/api/v1/last-green", feat)
    feat = feat.json()
    assert feat["revision"] is None and feat["builders"] == []
    assert feat["reason"] == "builder 'linux' has no green build on branch 'feature'"

    other = b.json("/api/v1/last-green", {"branch": "trunk", "repository": R2})
    assert other["revision"] == rev("o1") and other["builders"][0]["build"]["buildid"] == 45

    unknown = b.json("/api/v1/last-green", {"branch": "nope"})
    assert unknown["revision"] is None and unknown["reason"].startswith("no revisions known")

    amb = b.get("/api/v1/last-green", {"branch": "trunk"})
    openapi.check("/api/v1/last-green", amb)
    assert amb.status_code == 400 and amb.json()["parameter"] == "repository"


def test_revisions_matrix_newest_first(world, openapi):
    b = world["broker"]
    r = b.get("/api/v1/revisions", {"branch": "trunk", "repository": R})
    openapi.check("/api/v1/revisions", r)
    body = r.json()
    assert body["builders"] == ["linux", "mac", "win"] and body["limit"] == 20
    t0 = world["t0"]

    def cell(buildid, finished, results, state):
        return {"buildid": buildid, "number": buildid + 1000 if buildid < 60 else {30: 1030, 65: 7, 67: 11}[buildid],
                "finished": finished, "results": results, "state_string": state}
    want = {
        "r6": {"linux": cell(67, True, 5, "retry"), "mac": cell(30, False, None, None),
               "win": cell(65, True, 0, "build successful")},
        "r5": {"mac": cell(25, True, 1, "warnings")},
        "r4": {"linux": cell(22, True, 0, "build successful"), "win": cell(28, True, 4, "exception")},
        "r3": {"win": cell(27, True, 0, "build successful")},
        "r2": {"mac": cell(24, True, 0, "build successful")},
        "r1": {"linux": cell(21, True, 0, "build successful")},
    }
    assert [x["revision"] for x in body["revisions"]] == [rev("r%d" % i) for i in range(6, 0, -1)]
    for row, i in zip(body["revisions"], range(6, 0, -1)):
        assert row["changeid"] == i and row["when"] == t0 + 10 * i and row["position"] == t0 + 10 * i
        assert row["author"] == "Dev %d <dev%d@example.org>" % (i, i)
        assert row["builds"] == want["r%d" % i], "r%d" % i
    two = b.json("/api/v1/revisions", {"branch": "trunk", "repository": R, "limit": 2})
    assert [x["revision"] for x in two["revisions"]] == [rev("r6"), rev("r5")]
    rel = b.json("/api/v1/revisions", {"branch": "release"})
    assert [x["revision"] for x in rel["revisions"]] == [rev("rel2"), rev("rel1")]
    assert rel["revisions"][0]["changeid"] is None and rel["builders"] == ["linux", "mac"]


def test_builds_filters_pagination_and_detail(world, openapi):
    b = world["broker"]
    seen, cursor = [], None
    while True:
        q = {"builder": "win", "branch": "trunk", "repository": R, "limit": 2}
        if cursor:
            q["cursor"] = cursor
        r = b.get("/api/v1/builds", q)
        openapi.check("/api/v1/builds", r)
        page = r.json()
        seen.append([x["buildid"] for x in page["builds"]])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [[65, 29], [28, 27], [26]]
    assert [x["buildid"] for x in b.json("/api/v1/builds", {"state": "running"})["builds"]] == [66, 30]
    assert [x["buildid"] for x in b.json("/api/v1/builds", {"results": 2})["builds"]] == [44, 42, 26, 23]
    assert [x["buildid"] for x in b.json("/api/v1/builds", {"buildrequestid": 57})["builds"]] == [67]

    r = b.get("/api/v1/builds/66")
    openapi.check("/api/v1/builds/{buildid}", r)
    build = r.json()["build"]
    assert build["finished"] is False and build["state_string"] == "compiling"
    assert build["properties"] == {"a": [2, "Step"], "b": ["x", "Worker"]}
    assert [(s["stepid"], s["name"], s["finished"]) for s in build["steps"]] == [(601, "compile", False)]
    assert build["steps"][0]["logs"] == [{"logid": 701, "name": "stdio", "slug": "stdio", "type": "s",
                                          "num_lines": 0, "finished": False}]
    b65 = b.json("/api/v1/builds/65")["build"]
    assert b65["finished"] is True and b65["results"] == 0 and b65["started_at"] == world["t0"] + 312
    r = b.get("/api/v1/builds/9999")
    openapi.check("/api/v1/builds/{buildid}", r)
    assert r.status_code == 404


def test_builders_and_stats(world, openapi):
    b = world["broker"]
    r = b.get("/api/v1/builders")
    openapi.check("/api/v1/builders", r)
    got = {x["name"]: (x["builderid"], x["project"], x["pending"], x["running"], x["last_build"]["buildid"])
           for x in r.json()["builders"]}
    assert got == {"linux": (1, "firehose", 2, 1, 67), "mac": (2, "firehose", 0, 1, 43),
                   "win": (3, "firehose", 1, 0, 65)}

    r = b.get("/api/v1/stats/steps")
    openapi.check("/api/v1/stats/steps", r)
    s = r.json()
    # 14 finished compile steps took 1..14 s: nearest-rank p50 is the 7th, p95 the 14th.
    assert s["steps"] == [{"name": "compile", "count": 14, "p50_s": 7, "p95_s": 14, "max_s": 14, "mean_s": 7.5}]
    assert s["to"] is not None and s["window_s"] == 86400
    assert b.json("/api/v1/stats/steps", {"builder": "mac"})["steps"][0]["count"] == 3

    r = b.get("/api/v1/stats/builds", {"window": "2h", "bucket": "30m"})
    openapi.check("/api/v1/stats/builds", r)
    s = r.json()
    totals = {k: sum(bk["results"][k] for bk in s["buckets"]) for k in s["buckets"][0]["results"]}
    assert totals == {"success": 8, "warnings": 1, "failure": 4, "skipped": 0, "exception": 1,
                      "retry": 1, "cancelled": 1}
    assert sum(bk["builds"] for bk in s["buckets"]) == 16 and len(s["buckets"]) == 5
    for bk in s["buckets"]:
        if bk["builds"]:
            assert bk["queue_wait_s"] == {"p50": 2, "p95": 2, "max": 2}


def test_invalid_records_and_duplicates_are_counted_not_applied(world):
    metrics = world["broker"].get("/metrics").text
    assert "firehose_view_invalid_total 1\n" in metrics
    assert "firehose_view_duplicates_total 3\n" in metrics


def test_an_event_sqlite_refuses_is_undone_alone_and_the_rest_of_its_batch_applies(kafka, tmp_path):
    """The view applies a batch without a savepoint per event and, when one valid event fails in
    SQLite, replays the batch with savepoints: that event alone is undone (its first statement
    too) and dead-lettered, and every other event of the same batch is applied."""
    topics = topics_for(kafka, "vr-%s" % uuid.uuid4().hex[:8])
    view = tmp_path / "view.db"
    args = ["--log.level=debug", "--view.batch_ms=2000"]
    # A first start makes the view file; a trigger then refuses one builder name, as a constraint
    # would: build.started writes its build row, then the builder row fails.
    Broker(kafka, topics, view, tmp_path / "first.log", extra=args).start().stop()
    con = sqlite3.connect(view)
    con.execute("CREATE TRIGGER poison BEFORE INSERT ON builders WHEN NEW.name = 'poison'"
                " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    con.commit()
    con.close()
    w = World(int(time.time()) - 3600)
    w.full(11, "linux", "trunk", "p1", 21, 0, 100)
    w.full(12, "mac", "trunk", "p2", 22, 0, 110)
    w.new(13, "win", "trunk", "p3", 120)
    w.claimed(13, 121)
    bad = w.started(13, 23, 5, 122)
    bad["data"]["builder"] = "poison"
    w.full(14, "linux", "trunk", "p4", 24, 2, 130)
    write_ndjson(tmp_path / "events.ndjson", w.events)
    emit(kafka, topics, tmp_path / "events.ndjson", expected=len(w.events))
    b = Broker(kafka, topics, view, tmp_path / "broker.log", extra=args).start()
    try:
        b.wait_applied(len(w.events))
        m = b.get("/metrics").text
        assert "firehose_view_invalid_total 1\n" in m and "firehose_view_errors_total 1\n" in m, m
        assert "firehose_view_events_applied_total %d\n" % (len(w.events) - 1) in m, m
    finally:
        assert b.stop() == 0
    log = b.log()
    # the replay ran, over the records of the batch so far (the refused one is not the first)
    replays = [int(n) for n in re.findall(r"event=view\.replay records=(\d+)", log)]
    assert replays and replays[0] > 1, log[-3000:]
    assert re.search(r'event=view\.apply .*id="?%s"? .*refused by the test' % bad["id"], log), log[-3000:]
    con = sqlite3.connect("file:%s?mode=ro" % view, uri=True)
    try:
        builds = [r[0] for r in con.execute("SELECT buildid FROM builds ORDER BY buildid")]
        applied = {r[0] for r in con.execute("SELECT id FROM applied")}
        requests_ = dict(con.execute("SELECT buildrequestid, claimed FROM buildrequests"))
    finally:
        con.close()
    assert builds == [21, 22, 24], builds                 # build 23's row was undone with its event
    assert applied == {e["id"] for e in w.events} - {bad["id"]}
    assert requests_ == {11: 1, 12: 1, 13: 1, 14: 1}, requests_
    dlq = subprocess.run(["kcat", "-C", "-b", kafka.bootstrap, "-t", topics["dlq"], "-e", "-q", "-J"],
                         stdout=subprocess.PIPE, text=True, check=True, timeout=60).stdout.splitlines()
    assert len(dlq) == 1, dlq
    r = json.loads(dlq[0])
    h = dict(zip(r["headers"][::2], r["headers"][1::2]))
    assert json.loads(r["payload"])["id"] == bad["id"]
    assert h["firehose-consumer"] == "view" and "SQLite refused the event" in h["firehose-error"], h


def test_bad_parameters_get_400_naming_them(world, openapi):
    b = world["broker"]
    cases = [
        ("/api/v1/pending", {"limit": "0"}, "limit"),
        ("/api/v1/pending", {"limit": "ten"}, "limit"),
        ("/api/v1/pending", {"bogus": "1"}, "bogus"),
        ("/api/v1/pending", {"builder": ""}, "builder"),
        ("/api/v1/running", {"worker": "w" * 600}, "worker"),
        ("/api/v1/last-green", {}, "branch"),
        ("/api/v1/last-green", {"branch": "trunk"}, "repository"),
        ("/api/v1/revisions", {"branch": "trunk", "repository": R, "limit": "201"}, "limit"),
        ("/api/v1/builds", {"results": "7"}, "results"),
        ("/api/v1/builds", {"state": "done"}, "state"),
        ("/api/v1/builds", {"cursor": "xyz"}, "cursor"),
        ("/api/v1/builds", {"limit": "1001"}, "limit"),
        ("/api/v1/builders", {"x": "1"}, "x"),
        ("/api/v1/stats/steps", {"window": "10x"}, "window"),
        ("/api/v1/stats/steps", {"window": "0"}, "window"),
        ("/api/v1/stats/builds", {"window": "7d", "bucket": "1"}, "bucket"),
    ]
    for path, q, param in cases:
        r = b.get(path, q)
        openapi.check(path, r)
        assert r.status_code == 400 and r.json()["parameter"] == param, (path, q, r.text)
    for bad in ("abc", "0", "-3"):
        r = b.get("/api/v1/builds/" + bad)
        openapi.check("/api/v1/builds/{buildid}", r)
        assert r.status_code == 400 and r.json()["parameter"] == "buildid", (bad, r.text)


def test_etag_gives_304_until_the_view_changes(world, openapi):
    b = world["broker"]
    q = {"branch": "trunk", "repository": R}
    r1 = b.get("/api/v1/last-green", q)
    etag = r1.headers["ETag"]
    assert r1.headers["Cache-Control"] == "max-age=0"
    r2 = b.get("/api/v1/last-green", q, headers={"If-None-Match": etag})
    openapi.check("/api/v1/last-green", r2)
    assert r2.status_code == 304 and not r2.content
    r3 = b.get("/api/v1/last-green", {"branch": "release"}, headers={"If-None-Match": etag})
    assert r3.status_code == 200


def test_every_documented_path_was_checked(world, openapi):
    """Runs last in this module: each path of docs/openapi.yaml had a 200 validated above."""
    missing = [p for p in openapi.doc["paths"] if (p, "200") not in openapi.checked
               and "x-tested-by" not in openapi.doc["paths"][p]]  # webhooks: test_webhooks.py
    assert not missing, missing


def test_tokens_are_required_without_anonymous_read(kafka, tmp_path, openapi):
    topics = topics_for(kafka, "va-%s" % uuid.uuid4().hex[:8])
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps([
        {"name": "ci", "token": "tok-read-0123456789", "scopes": ["read"]},
        {"name": "alice", "token": "tok-alice-0123456789", "scopes": ["read"], "filter": {"owner": "alice@example.org"}}]))
    b = Broker(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log", anonymous=False,
               extra=["--auth.tokens_file", str(tokens)]).start()
    try:
        r = b.get("/api/v1/pending")
        openapi.check("/api/v1/pending", r)
        assert r.status_code == 401
        r = b.get("/api/v1/pending", headers={"Authorization": "Bearer tok-read-0123456789"})
        openapi.check("/api/v1/pending", r)
        assert r.status_code == 200 and r.json()["pending"] == []
        assert b.get("/api/v1/builders", {"access_token": "tok-read-0123456789"}).status_code == 200
        r = b.get("/api/v1/running", headers={"Authorization": "Bearer tok-alice-0123456789"})
        openapi.check("/api/v1/running", r)
        assert r.status_code == 403
    finally:
        assert b.stop() == 0


def test_disabled_view_answers_503(kafka, tmp_path, openapi):
    topics = topics_for(kafka, "vd-%s" % uuid.uuid4().hex[:8])
    b = Broker(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log",
               extra=["--view.enabled=false"]).start()
    try:
        r = b.get("/api/v1/last-green", {"branch": "trunk"})
        openapi.check("/api/v1/last-green", r)
        assert r.status_code == 503 and "view.enabled=false" in r.json()["message"]
        assert not (tmp_path / "view.db").exists()
    finally:
        assert b.stop() == 0


# ---- retention --------------------------------------------------------------------------------

def test_retention_prunes_old_finished_builds_with_their_steps_properties_and_logs(kafka, tmp_path, openapi):
    """Without retention the view grows with every build (the Buildbot memory ticket): finished
    builds older than view.retention_s by the view clock go, with their steps, properties and log
    metadata, as do completed requests and old changes; running builds, pending requests and
    recent builds stay."""
    now = int(time.time())
    t0 = now - 3 * 86400
    day = 86400
    w = World(t0)

    def detail(brid, buildid, t, finished=True):
        w.log(brid, buildid, t + 3.5, buildid * 100, buildid * 10)
        w.props(brid, buildid, t + 3.6, {"got_revision": [rev("x%d" % buildid), "Git"]})
        if finished:
            w.log(brid, buildid, t + 3.7, buildid * 100, buildid * 10, "log.finished", 12)
    old = [(101, 201, 0), (102, 202, 50), (103, 203, 100)]
    for brid, buildid, t in old:                        # three days old, finished and complete
        w.full(brid, "linux", "trunk", "o%d" % brid, buildid, 0, t)
        detail(brid, buildid, t)
    w.change(1, "trunk", "o101", -10)                   # an old change
    w.new(110, "mac", "trunk", "o103", 200)             # old but still pending: never pruned
    w.new(111, "win", "trunk", "o103", 210)             # old and still running: never pruned
    w.claimed(111, 211)
    w.started(111, 211, 5, 212)
    w.step_started(111, 211, 2110, 0, "compile", 213)
    detail(111, 211, 210, finished=False)
    w.full(120, "linux", "trunk", "n120", 220, 0, 3 * day - 100)   # recent: stays
    detail(120, 220, 3 * day - 100)
    w.change(2, "trunk", "n120", 3 * day - 120)

    topics = topics_for(kafka, "vr-%s" % uuid.uuid4().hex[:8])
    write_ndjson(tmp_path / "events.ndjson", w.events)
    emit(kafka, topics, tmp_path / "events.ndjson", expected=len(w.events))
    b = Broker(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log",
               extra=["--view.retention_s=3600", "--view.prune_interval_s=1"]).start()
    try:
        b.wait_applied(len(w.events))

        def pruned():
            r = b.get("/api/v1/builds/201")
            return [r] if r.status_code == 404 else None     # a 404 Response is falsy
        r = wait_for(pruned, 30, interval=0.1, what="build 201 to be pruned")[0]
        openapi.check("/api/v1/builds/{buildid}", r)
        d = dump_view(tmp_path / "view.db")

        def col(table, name):
            keep, rows = d[table]
            i = keep.index(name)
            return sorted({r[i] for r in rows})
        assert col("builds", "buildid") == [211, 220]
        assert col("steps", "buildid") == [211, 220]
        assert col("properties", "buildid") == [211, 220]
        assert col("logs", "buildid") == [211, 220]
        assert col("buildrequests", "buildrequestid") == [110, 111, 120]
        assert col("changes", "changeid") == [2]
        for buildid in (211, 220):
            build = b.json("/api/v1/builds/%d" % buildid)["build"]
            assert build["steps"] and build["properties"], build
        assert [p["buildrequestid"] for p in b.json("/api/v1/pending")["pending"]] == [110]
        assert [r["buildid"] for r in b.json("/api/v1/running")["running"]] == [211]
        m = b.get("/metrics").text
        n = int(re.search(r"^firehose_view_pruned_rows_total (\d+)", m, re.M).group(1))
        # 3 builds, 3 steps, 3 properties, 3 logs, 3 requests, 1 change, and old revisions.
        assert n >= 16, n
    finally:
        assert b.stop() == 0


# ---- crash safety ---------------------------------------------------------------------------

KILLS = 10
PIECES = 8


def test_sigkill_during_ingest_ten_times_equals_a_rebuild(kafka, tmp_path):
    """Offsets commit with the changes they cover: ten SIGKILLs at random moments while events
    flow, and the view still equals one built from scratch (nothing applied twice or skipped)."""
    t_start = time.monotonic()
    rng = random.Random(20261122)
    topics = topics_for(kafka, "vk-%s" % uuid.uuid4().hex[:8])
    events = gen_events.generate(3000, seed=41)
    dup_types = []
    for i in sorted(rng.sample(range(100, len(events)), 30), reverse=True):   # 30 duplicates, later on
        j = min(len(events), i + rng.randint(1, 200))
        events.insert(j, json.loads(json.dumps(events[i])))
        dup_types.append(events[i]["type"])
    chunks = [events[i * len(events) // KILLS:(i + 1) * len(events) // KILLS] for i in range(KILLS)]
    view = tmp_path / "killed.db"
    sent = 0
    mid_ingest = 0
    for n, chunk in enumerate(chunks):
        b = Broker(kafka, topics, view, tmp_path / "killed.log", extra=["--view.batch_max=20"]).start()
        # The kill lands right after a random piece of the chunk reached Kafka, while the view
        # is applying it and more pieces are still to come.
        pieces = [chunk[i * len(chunk) // PIECES:(i + 1) * len(chunk) // PIECES] for i in range(PIECES)]
        kill_after = rng.randint(0, PIECES - 2)
        reached = threading.Event()
        errors = []

        def feed(pieces=pieces, n=n, kill_after=kill_after):
            try:
                for k, piece in enumerate(pieces):
                    path = tmp_path / ("c%d-%d.ndjson" % (n, k))
                    write_ndjson(path, piece)
                    emit(kafka, topics, path, expected=len(piece))
                    if k == kill_after:
                        reached.set()
            except Exception as e:        # reported below
                errors.append(e)
            finally:
                reached.set()
        feeder = threading.Thread(target=feed)
        feeder.start()
        reached.wait(60)
        time.sleep(rng.uniform(0, 0.03))
        b.kill()
        feeder.join()
        assert not errors, errors
        sent += len(chunk)
        st = view_state(view)
        if st.get("view_offsets", 0) < sent:
            mid_ingest += 1
        print("kill %d: view_offsets=%s of %d sent" % (n + 1, st.get("view_offsets"), sent))
    # The kills must have landed while there was work left, else this proves little.
    assert mid_ingest == KILLS, mid_ingest

    b = Broker(kafka, topics, view, tmp_path / "killed.log").start()
    b.wait_applied(len(events))
    assert b.stop() == 0
    fresh = tmp_path / "fresh.db"
    b = Broker(kafka, topics, fresh, tmp_path / "fresh.log").start()
    b.wait_applied(len(events))
    assert b.stop() == 0

    got, want = dump_view(view), dump_view(fresh)
    assert set(got) == set(want)
    for table in sorted(want):
        assert got[table] == want[table], "table %s differs after %d kills" % (table, KILLS)
    # Each record counted exactly once: applied, skipped (log.chunk and master.* are not stored,
    # duplicates of them included) or dropped as a duplicate.
    st = view_state(view)

    def skip(t):
        return t == "log.chunk" or t.startswith("master.")
    n_skip = sum(1 for e in events if skip(e["type"]))
    n_dups = sum(1 for t in dup_types if not skip(t))
    assert st["view_offsets"] == len(events) and st["invalid"] == 0
    assert (st["events"], st["skipped"], st["duplicates"]) == (len(events) - n_skip - n_dups, n_skip, n_dups)
    assert len(want["builds"][1]) > 50 and len(want["steps"][1]) > 200
    elapsed = time.monotonic() - t_start
    print("sigkill test: %d events, %d kills (%d mid-ingest), %.1fs" % (len(events), KILLS, mid_ingest, elapsed))
    assert elapsed < 120, elapsed
