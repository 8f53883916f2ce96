"""Per-test history in the view: test.results and test.result_set on real Kafka (firehose-emit
and kcat) give exactly the expected GET /api/v1/stats/tests and GET /api/v1/flaky answers.

Why: the slowest, failing and flaky lists are read by people deciding which test to fix or
quarantine; a result counted twice (a chunk delivered again), a flaky test missed (its pass and
fail in different chunks or builds of one revision), or a history that grows without bound would
each mislead them or take the broker down. Every answer is checked against docs/openapi.yaml.
"""

import sqlite3
import subprocess
import time
import uuid

import pytest

from view_helpers import Broker, OpenAPI, Script, emit, write_ndjson

R = "https://git.example.org/firehose.git"
BUILDERS = {"linux": 1, "mac": 2}
PARTS = 3


def rev(name):
    return (uuid.uuid5(uuid.NAMESPACE_URL, name).hex * 2)[:40]


def topics_for(kafka, prefix):
    t = {"events": prefix + ".events", "logs": prefix + ".logs", "dlq": prefix + ".dlq"}
    kafka.create_topics({t["events"]: PARTS, t["logs"]: PARTS, t["dlq"]: 1})
    return t


class Sets(Script):
    """Builds that each record one test result set, cut into chunks as given."""

    def ctx(self, brid, buildid, builder, revision):
        return {"buildrequestid": brid, "buildid": buildid, "builder": builder,
                "builderid": BUILDERS[builder], "branch": "trunk", "revision": rev(revision),
                "repository": R, "project": "firehose", "codebase": "", "owner": ""}

    def result_set(self, t, brid, buildid, builder, revision, chunks, category="pass_fail",
                   unit="boolean"):
        """chunks: lists of (name, outcome, duration_s); outcome "pass"/"fail"/None."""
        setid = buildid * 10
        ctx = self.ctx(brid, buildid, builder, revision)
        sent = []
        for i, tests in enumerate(chunks):
            items = [{"name": n, "code_path": None, "line": None,
                      "value": {"pass": "1", "fail": "0"}.get(o, "%g" % (d or 0)), "outcome": o,
                      "duration_s": d} for n, o, d in tests]
            sent.append(self.add("test.results", dict(ctx, test_result_setid=setid, stepid=buildid * 100,
                                                      category=category, value_unit=unit, chunk=i,
                                                      last=i == len(chunks) - 1, tests=items),
                                 t + i * 0.1, subject="builds/%d" % buildid))
        outcomes = [o for c in chunks for _, o, _ in c]
        counted = category == "pass_fail"
        self.add("test.result_set", dict(ctx, test_result_setid=setid, stepid=buildid * 100,
                                         description="unit tests", category=category, value_unit=unit,
                                         tests_passed=outcomes.count("pass") if counted else None,
                                         tests_failed=outcomes.count("fail") if counted else None,
                                         results=len(outcomes), chunks=len(chunks)),
                 t + 1, subject="builds/%d" % buildid)
        return sent


def scenario(t0):
    s = Sets(t0)
    # r1 on linux: F fails, then passes on retry, in another chunk: flaky on r1.
    first = s.result_set(10, 1, 11, "linux", "r1", [
        [("A", "pass", 1.0), ("B", "fail", 2.0), ("F", "fail", 0.25)],
        [("C", "pass", 0.5), ("F", "pass", 0.75)]])
    # r2 on linux, twice: C fails, then passes in the second build: flaky on r2 across builds.
    s.result_set(20, 2, 12, "linux", "r2", [[("A", "pass", 1.0), ("B", "fail", 4.0),
                                             ("C", "fail", 0.5), ("F", "pass", 0.25)]])
    s.result_set(30, 3, 13, "linux", "r2", [[("C", "pass", 0.5)]])
    # mac, r1: A fails and B passes once each: failing, never flaky.
    s.result_set(40, 4, 14, "mac", "r1", [[("A", "fail", 3.0), ("B", "pass", 1.5)]])
    # a measurement: slowest by duration, neither passed nor failed.
    s.result_set(50, 5, 15, "linux", "r2", [[("bench.startup", None, 9.0)]], category="performance",
                 unit="s")
    # the very same chunk again (same id), and again under a new id: counted once either way.
    s.dup(first[0])
    again = dict(first[1], id="view-test-again")
    s.events.append(again)
    return s.events


@pytest.fixture(scope="module")
def openapi():
    return OpenAPI()


@pytest.fixture(scope="module")
def world(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewtests")
    topics = topics_for(kafka, "vt-%s" % uuid.uuid4().hex[:8])
    t0 = int(time.time()) - 600
    evs = scenario(t0)
    last, evs = evs[-1], evs[:-1]
    write_ndjson(tmp / "tests.ndjson", evs)
    emit(kafka, topics, tmp / "tests.ndjson", expected=len(evs))
    # the last record through kcat, straight onto the logs topic, as any producer may send it
    write_ndjson(tmp / "last.ndjson", [last])
    subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", topics["logs"], "-k",
                    "buildrequest/%d" % last["data"]["buildrequestid"], tmp / "last.ndjson"],
                   check=True, timeout=60)
    b = Broker(kafka, topics, tmp / "view.db", tmp / "broker.log").start()
    try:
        b.wait_applied(len(evs) + 1)
        yield {"broker": b, "tmp": tmp}
    finally:
        assert b.stop() == 0, b.log()[-3000:]


def strip(d):
    return {k: v for k, v in d.items() if k not in ("as_of", "from", "to")}


def test_flaky_lists_tests_that_passed_and_failed_on_one_revision(world, openapi):
    b = world["broker"]
    r = b.get("/api/v1/flaky")
    openapi.check("/api/v1/flaky", r)
    got = r.json()
    assert got["to"] is not None and got["window_s"] == 86400
    flaky = {(f["builder"], f["name"]): f for f in got["flaky"]}
    assert set(flaky) == {("linux", "F"), ("linux", "C")} and got["total"] == 2
    assert (flaky[("linux", "F")]["revisions"], flaky[("linux", "F")]["passed"],
            flaky[("linux", "F")]["failed"], flaky[("linux", "F")]["last_revision"]) == (1, 1, 1, rev("r1"))
    assert (flaky[("linux", "C")]["revisions"], flaky[("linux", "C")]["passed"],
            flaky[("linux", "C")]["failed"], flaky[("linux", "C")]["last_revision"]) == (1, 1, 1, rev("r2"))
    assert flaky[("linux", "C")]["last_branch"] == "trunk"
    # newest first among equals: C was last seen at t0+30, F at t0+10.1
    assert [f["name"] for f in got["flaky"]] == ["C", "F"]
    assert b.json("/api/v1/flaky", {"builder": "mac"})["flaky"] == []
    one = b.json("/api/v1/flaky", {"limit": 1})
    assert len(one["flaky"]) == 1 and one["total"] == 2
    # the clock is t0+51 (the last set): a 35 s window holds r2's runs (t0+20, t0+30), not r1's
    assert [f["name"] for f in b.json("/api/v1/flaky", {"window": "35"})["flaky"]] == ["C"]
    assert b.json("/api/v1/flaky", {"window": "25"})["flaky"] == []   # C's failure left it


def test_stats_tests_slowest_and_failing(world, openapi):
    b = world["broker"]
    r = b.get("/api/v1/stats/tests")
    openapi.check("/api/v1/stats/tests", r)
    got = r.json()
    assert got["tests"] == 7   # linux A B C F bench.startup, mac A B: (builder, name) pairs
    slow = [(x["builder"], x["name"], x["runs"], x["mean_s"], x["max_s"]) for x in got["slowest"]]
    assert slow[:3] == [("linux", "bench.startup", 1, 9.0, 9.0), ("linux", "B", 2, 3.0, 4.0),
                        ("mac", "A", 1, 3.0, 3.0)]
    assert ("linux", "F", 3, 0.416667, 0.75) in slow     # the re-sent chunk counted once
    failing = [(x["builder"], x["name"], x["runs"], x["failed"], x["passed"], x["failure_rate"])
               for x in got["failing"]]
    assert failing[0] == ("linux", "B", 2, 2, 0, 1.0)
    assert set(failing[1:]) == {("linux", "C", 3, 1, 2, 0.3333), ("linux", "F", 3, 1, 2, 0.3333),
                                ("mac", "A", 1, 1, 0, 1.0)}
    assert all("bench" not in x["name"] for x in got["failing"])
    mac = b.json("/api/v1/stats/tests", {"builder": "mac", "limit": 1})
    assert mac["tests"] == 2 and len(mac["slowest"]) == 1 and mac["failing"][0]["name"] == "A"


def test_test_result_sets_are_applied_and_chunks_counted_once(world):
    con = sqlite3.connect("file:%s?mode=ro" % (world["tmp"] / "view.db"), uri=True)
    try:
        runs = con.execute("SELECT count(*) FROM test_runs").fetchone()[0]
    finally:
        con.close()
    assert runs == 5 + 4 + 1 + 2 + 1
    metrics = world["broker"].get("/metrics").text
    assert "firehose_view_duplicates_total 1\n" in metrics


def test_bad_parameters_get_400(world, openapi):
    b = world["broker"]
    for path, q, param in [("/api/v1/stats/tests", {"limit": "0"}, "limit"),
                           ("/api/v1/stats/tests", {"window": "soon"}, "window"),
                           ("/api/v1/flaky", {"builder": ""}, "builder"),
                           ("/api/v1/flaky", {"revision": "x"}, "revision")]:
        r = b.get(path, q)
        openapi.check(path, r)
        assert r.status_code == 400 and r.json()["parameter"] == param, (path, q, r.text)


def test_history_stays_within_its_caps(kafka, tmp_path, openapi):
    """view.max_tests and view.max_test_runs bound the history; the newest tests stay."""
    topics = topics_for(kafka, "vtc-%s" % uuid.uuid4().hex[:8])
    s = Sets(int(time.time()) - 600)
    # 1,200 results of 30 tests (40 builds of one set each), then 12 new tests later on
    for k in range(40):
        s.result_set(k, 100 + k, 200 + k, "linux", "r%d" % k,
                     [[("T%02d" % i, "pass" if (i + k) % 7 else "fail", 0.01 * i) for i in range(30)]])
    s.result_set(100, 300, 400, "linux", "late", [[("N%02d" % i, "pass", 1.0) for i in range(12)]])
    write_ndjson(tmp_path / "caps.ndjson", s.events)
    emit(kafka, topics, tmp_path / "caps.ndjson", expected=len(s.events))
    b = Broker(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log",
               extra=["--view.max_tests=20", "--view.max_test_runs=1000"]).start()
    try:
        b.wait_applied(len(s.events))
        r = b.get("/api/v1/stats/tests", {"limit": 1000})
        openapi.check("/api/v1/stats/tests", r)
        got = r.json()
        names = {x["name"] for x in got["slowest"]}
        assert got["tests"] <= 20 and {"N%02d" % i for i in range(12)} <= names
        con = sqlite3.connect("file:%s?mode=ro" % (tmp_path / "view.db"), uri=True)
        try:
            assert con.execute("SELECT count(*) FROM tests").fetchone()[0] <= 20
            assert con.execute("SELECT count(*) FROM test_runs").fetchone()[0] <= 1000
        finally:
            con.close()
    finally:
        assert b.stop() == 0, b.log()[-3000:]
