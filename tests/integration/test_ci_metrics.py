"""CI metrics (/metrics/ci) and builder state (/api/v1/builders/state) from the view, on real Kafka.

A scripted history of requests and builds goes through Kafka into a real broker. The exposition
is parsed with prometheus_client's parser; pending and running must equal what the view's REST
answers say, the queue-wait and build-duration histograms must count exactly the scripted builds,
builder state must follow the last deciding build (skipped, retry and cancelled builds change
nothing) with the right "since", and past metrics.ci_max_builders the rest go to builder="_other".
"""

import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for
from view_helpers import Broker, OpenAPI, Script, emit, write_ndjson

R = "https://git.example.org/firehose.git"
WEIRD = 'q"uote\\back\nline'  # label values must escape ", \\ and newline
BUILDERS = {"linux": 1, "mac": 2, "win": 3, WEIRD: 4}
# The buckets /metrics/ci uses (broker/view/cimetrics.c).
WAIT_LE = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200]
DUR_LE = [10, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 14400]


class History(Script):
    """Requests and builds with explicit times; remembers what the metrics must show."""

    def __init__(self, t0):
        super().__init__(t0)
        self.ctx = {}
        self.waits = {}      # builder -> [queue wait of each started build]
        self.durations = {}  # builder -> [duration of each finished build]
        self.finished_builds = {}  # buildid -> (builder, branch, results, complete_at, number, rev)

    def new(self, brid, builder, branch, t, owner="dev@example.org"):
        self.ctx[brid] = {"buildrequestid": brid, "builder": builder, "builderid": BUILDERS[builder],
                          "branch": branch, "revision": "%040x" % brid, "repository": R,
                          "project": "firehose", "codebase": "", "owner": owner,
                          "_submitted": self.t0 + t}
        d = {k: v for k, v in self.ctx[brid].items() if not k.startswith("_")}
        self.add("buildrequest.new", dict(d, buildsetid=brid, priority=0,
                                          submitted_at=self.t0 + t, reason="scripted"), t)

    def _d(self, brid, **kw):
        d = {k: v for k, v in self.ctx[brid].items() if not k.startswith("_")}
        d.update(kw)
        return d

    def claimed(self, brid, t):
        self.add("buildrequest.claimed", self._d(brid, claimed_at=self.t0 + t,
                                                 claimed_by_master="master-1"), t)

    def started(self, brid, buildid, t):
        c = self.ctx[brid]
        self.waits.setdefault(c["builder"], []).append(self.t0 + t - c["_submitted"])
        self.add("build.started", self._d(brid, buildid=buildid, number=buildid, worker="w-1",
                                          started_at=self.t0 + t), t)

    def finished(self, brid, buildid, t, results, duration):
        c = self.ctx[brid]
        self.durations.setdefault(c["builder"], []).append(duration)
        self.finished_builds[buildid] = (c["builder"], c["branch"], results, self.t0 + t, buildid,
                                         c["revision"])
        self.add("build.finished", self._d(brid, buildid=buildid, number=buildid,
                                           complete_at=self.t0 + t, results=results,
                                           state_string="done", duration_s=duration), t)

    def complete(self, brid, t, results, buildid=None):
        kw = {"complete_at": self.t0 + t, "results": results}
        if buildid:
            kw["buildid"] = buildid
        self.add("buildrequest.complete", self._d(brid, **kw), t)

    def build(self, brid, builder, branch, t, wait, duration, results):
        """A whole request: submitted at t, started after wait, finished after duration."""
        self.new(brid, builder, branch, t)
        self.claimed(brid, t + wait / 2)
        self.started(brid, brid + 1000, t + wait)
        self.finished(brid, brid + 1000, t + wait + duration, results, duration)
        self.complete(brid, t + wait + duration + 1, results, brid + 1000)


def history(t0):
    h = History(t0)
    # linux/main: green, then two failures: broken since the first failure (build 1002).
    h.build(1, "linux", "main", 100, 3, 40, 0)
    h.build(2, "linux", "main", 200, 20, 400, 2)
    h.build(3, "linux", "main", 1000, 0.5, 95, 2)
    # linux/release: an exception counts as broken.
    h.build(4, "linux", "release", 300, 700, 2000, 4)
    # mac/main: failure, then warnings (green since 1006), then a skipped build (no change).
    h.build(5, "mac", "main", 100, 2, 10, 2)
    h.build(6, "mac", "main", 300, 90, 20, 1)
    h.build(7, "mac", "main", 600, 4000, 5, 3)
    # win/main: success, then retry and cancelled: still green since 1008.
    h.build(8, "win", "main", 100, 10, 7300, 0)
    h.build(9, "win", "main", 8000, 1, 1, 5)
    h.build(10, "win", "main", 8100, 2, 2, 6)
    h.build(11, WEIRD, "main", 150, 1, 5, 0)
    # Pending: two linux, one mac. Running: one linux, one win.
    h.new(20, "linux", "main", 9000)
    h.new(21, "linux", "release", 9100)
    h.new(22, "mac", "main", 9200)
    h.new(23, "linux", "main", 9300)
    h.claimed(23, 9301)
    h.started(23, 1023, 9302)
    h.new(24, "win", "main", 9400)
    h.claimed(24, 9401)
    h.started(24, 1024, 9405)
    return h


EXPECT_STATE = {  # (builder, branch) -> (state, since build, last build)
    ("linux", "main"): ("broken", 1002, 1003),
    ("linux", "release"): ("broken", 1004, 1004),
    ("mac", "main"): ("green", 1006, 1006),
    ("win", "main"): ("green", 1008, 1008),
    (WEIRD, "main"): ("green", 1011, 1011),
}


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def by_builder(fam, sample_name=None):
    return {s.labels["builder"]: s.value for s in fam.samples
            if sample_name is None or s.name == sample_name}


@pytest.fixture(scope="module")
def ci(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cimetrics")
    prefix = "cim-%s" % uuid.uuid4().hex[:8]
    topics = {"events": prefix + ".events", "logs": prefix + ".logs", "dlq": prefix + ".dlq"}
    kafka.create_topics({topics["events"]: 3, topics["logs"]: 1, topics["dlq"]: 1})
    t0 = int(time.time()) - 10000
    h = history(t0)
    write_ndjson(tmp / "h.ndjson", h.events)
    emit(kafka, topics, tmp / "h.ndjson", expected=len(h.events))
    b = Broker(kafka, topics, tmp / "view.db", tmp / "broker.log",
               extra=["--metrics.ci_ttl_ms=0"]).start()
    try:
        b.wait_applied(len(h.events))
        yield {"broker": b, "h": h, "t0": t0, "topics": topics, "tmp": tmp, "n": len(h.events)}
    finally:
        rc = b.stop()
        assert rc == 0, b.log()[-3000:]


def scrape(b):
    r = b.get("/metrics/ci")
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# HELP firehose_ci_pending_requests " in r.text
    assert "# TYPE firehose_ci_queue_wait_seconds histogram" in r.text
    return r.text, families(r.text)


def test_pending_and_running_equal_the_rest_answers(ci):
    b = ci["broker"]
    text, f = scrape(b)
    pending = by_builder(f["firehose_ci_pending_requests"])
    running = by_builder(f["firehose_ci_running_builds"])
    assert set(pending) == set(BUILDERS) and set(running) == set(BUILDERS)
    for builder in BUILDERS:
        assert pending[builder] == b.json("/api/v1/pending", {"builder": builder})["total"]
        assert running[builder] == b.json("/api/v1/running", {"builder": builder})["total"]
    assert pending == {"linux": 2, "mac": 1, "win": 0, WEIRD: 0}
    assert running == {"linux": 1, "mac": 0, "win": 1, WEIRD: 0}
    oldest = by_builder(f["firehose_ci_oldest_pending_seconds"])
    now = time.time()
    # linux's oldest pending request was submitted at t0 + 9000; the answer is read "now"
    assert now - (ci["t0"] + 9000) - 30 <= oldest["linux"] <= now - (ci["t0"] + 9000) + 1
    assert oldest["win"] == 0
    assert f["firehose_ci_builders"].samples[0].value == 4
    assert f["firehose_ci_builders_other"].samples[0].value == 0
    assert '{builder="_other"' not in text


def test_histograms_count_the_scripted_builds(ci):
    h = ci["h"]
    _, f = scrape(ci["broker"])
    for fam, le, want in (("firehose_ci_queue_wait_seconds", WAIT_LE, h.waits),
                          ("firehose_ci_build_duration_seconds", DUR_LE, h.durations)):
        assert f[fam].type == "histogram"
        for builder, values in want.items():
            s = [x for x in f[fam].samples if x.labels.get("builder") == builder]
            buckets = {float(x.labels["le"]): x.value for x in s if x.name == fam + "_bucket"}
            count = [x.value for x in s if x.name == fam + "_count"][0]
            total = [x.value for x in s if x.name == fam + "_sum"][0]
            assert count == len(values), (fam, builder)
            assert total == pytest.approx(sum(values), abs=1e-6), (fam, builder)
            assert buckets[float("inf")] == len(values)
            for bound in le:
                assert buckets[float(bound)] == sum(1 for v in values if v <= bound), (
                    fam, builder, bound)


def test_builder_state_follows_the_last_deciding_build(ci):
    b, h = ci["broker"], ci["h"]
    _, f = scrape(b)
    green = {(s.labels["builder"], s.labels["branch"]): s.value
             for s in f["firehose_ci_builder_green"].samples}
    since = {(s.labels["builder"], s.labels["branch"]): s.value
             for s in f["firehose_ci_builder_state_since_seconds"].samples}
    assert green == {k: (1 if v[0] == "green" else 0) for k, v in EXPECT_STATE.items()}
    for k, (_, since_build, _) in EXPECT_STATE.items():
        assert since[k] == pytest.approx(h.finished_builds[since_build][3])
    assert f["firehose_ci_state_series_omitted"].samples[0].value == 0


def test_builders_state_rest_answer(ci):
    b, h = ci["broker"], ci["h"]
    openapi = OpenAPI()
    r = b.get("/api/v1/builders/state")
    openapi.check("/api/v1/builders/state", r)
    body = r.json()
    got = {(s["builder"], s["branch"]): s for s in body["states"]}
    assert set(got) == set(EXPECT_STATE) and body["total"] == 5
    for k, (state, since_build, last_build) in EXPECT_STATE.items():
        s = got[k]
        assert s["state"] == state, k
        assert s["since_build"]["buildid"] == since_build
        assert s["since"] == pytest.approx(h.finished_builds[since_build][3])
        assert s["since_build"]["results"] == h.finished_builds[since_build][2]
        assert s["since_build"]["revision"] == h.finished_builds[since_build][5]
        assert s["since_build"]["owner"] == "dev@example.org"
        assert s["last_build"]["buildid"] == last_build
    # newest last build first
    times = [s["last_build"]["complete_at"] for s in body["states"]]
    assert times == sorted(times, reverse=True)
    broken = b.json("/api/v1/builders/state", {"state": "broken"})["states"]
    assert {(s["builder"], s["branch"]) for s in broken} == {("linux", "main"), ("linux", "release")}
    one = b.json("/api/v1/builders/state", {"builder": "mac", "branch": "main"})["states"]
    assert [(s["builder"], s["state"]) for s in one] == [("mac", "green")]
    r = b.get("/api/v1/builders/state", params={"state": "red"})
    assert r.status_code == 400 and "state" in r.text


def test_new_builds_move_the_numbers(ci, kafka):
    """A fixing build turns linux/main green and is counted once in the histograms."""
    b, h = ci["broker"], ci["h"]
    more = History(ci["t0"])
    more.seq = dict(h.seq)
    more.n = h.n
    more.build(30, "linux", "main", 9500, 5, 50, 0)
    write_ndjson(ci["tmp"] / "more.ndjson", more.events)
    emit(kafka, ci["topics"], ci["tmp"] / "more.ndjson", expected=len(more.events))
    ci["n"] += len(more.events)
    b.wait_applied(ci["n"])

    def fixed():
        _, f = scrape(b)
        g = {(s.labels["builder"], s.labels["branch"]): s.value
             for s in f["firehose_ci_builder_green"].samples}
        return g[("linux", "main")] == 1 and f
    f = wait_for(fixed, 30, what="linux/main to turn green on /metrics/ci")
    count = [s.value for s in f["firehose_ci_build_duration_seconds"].samples
             if s.name.endswith("_count") and s.labels["builder"] == "linux"][0]
    assert count == len(h.durations["linux"]) + 1
    st = b.json("/api/v1/builders/state", {"builder": "linux", "branch": "main"})["states"][0]
    assert st["state"] == "green" and st["since_build"]["buildid"] == 1030


def test_builders_past_the_cap_are_summed_into_other(ci, kafka, tmp_path):
    """A second broker with metrics.ci_max_builders=2 rebuilds its view from the same topics."""
    b = Broker(kafka, ci["topics"], tmp_path / "view.db", tmp_path / "broker.log",
               extra=["--metrics.ci_ttl_ms=0", "--metrics.ci_max_builders=2"]).start()
    try:
        b.wait_applied(ci["n"], timeout=90)
        text, f = scrape(b)
        pending = by_builder(f["firehose_ci_pending_requests"])
        named = [k for k in pending if k != "_other"]
        assert len(named) == 2 and "_other" in pending
        assert sum(pending.values()) == b.json("/api/v1/pending")["total"]
        assert sum(by_builder(f["firehose_ci_running_builds"]).values()) == \
            b.json("/api/v1/running")["total"]
        assert f["firehose_ci_builders_other"].samples[0].value == 2
        assert f["firehose_ci_builders"].samples[0].value == 2
        counts = by_builder(f["firehose_ci_build_duration_seconds"],
                            "firehose_ci_build_duration_seconds_count")
        assert set(counts) == set(named) | {"_other"}
        assert sum(counts.values()) >= sum(len(v) for v in ci["h"].durations.values())
        # state series of the builder in _other are left out, and counted
        states = {s.labels["builder"] for s in f["firehose_ci_builder_green"].samples}
        assert states <= set(named)
        assert f["firehose_ci_state_series_omitted"].samples[0].value >= 1
    finally:
        assert b.stop() == 0, b.log()[-3000:]


def test_metrics_ci_needs_the_read_scope(kafka, ci, tmp_path):
    b = Broker(kafka, ci["topics"], tmp_path / "view.db", tmp_path / "broker.log",
               anonymous=False).start()
    try:
        assert b.get("/metrics/ci").status_code == 401
        assert b.get("/metrics").status_code == 200
    finally:
        assert b.stop() == 0, b.log()[-3000:]
