"""The Buildbot integration against a real Buildbot master, a real worker and real Kafka.

Why: the integration lives inside the master; what it emits is only as good as what a real
master's message queue gives it.  These tests start `buildbot` and `buildbot-worker` (sqlite DB in
a temporary directory, every port on 127.0.0.1, no web UI), push a change with
`buildbot sendchange`, and check what lands in Kafka: every expected event, schema-valid, keyed
and routed as docs/events.md says, in a sane order per build by seq, with every log line.  With
Kafka unreachable the master must keep building while the integration's buffer sits at its cap
and the drop counter rises.

Run: flock /tmp/firehose-cpu.lock python3 -m pytest -q -p no:cacheprovider tests/integration/test_buildbot.py
"""

import collections
import time
import uuid

import pytest

from conftest import wait_for

confluent_kafka = pytest.importorskip("confluent_kafka")
pytest.importorskip("buildbot")
pytest.importorskip("buildbot_worker")
from buildbot_harness import (AUTHOR, BIG_ERR_EVERY, BIG_LINES, REPO, REVISION, TEST_RESULTS,  # noqa: E402
                              TESTS_BODY, Deployment, free_port)
from gen_events import topic_for  # noqa: E402
from kafka_reader import TopicReader  # noqa: E402
from test_schemas import EVENT_VALIDATOR  # noqa: E402


@pytest.fixture
def deployments():
    made = []
    yield made
    for d in made:
        d.stop()


def _expected_key(e):
    t, d = e["type"], e["data"]
    if t == "change.new":
        return "change/%d" % d["changeid"]
    if t.startswith("worker."):
        return "worker/%d" % d["workerid"]
    if t.startswith("master."):
        return "master/" + d["name"]
    return "buildrequest/%d" % d["buildrequestid"]


def _check_order(evs):
    """One build request's events, sorted by seq: the order a consumer may rely on."""
    problems = []
    types = [e["type"] for e in evs]
    rid = evs[0]["data"]["buildrequestid"]
    if types[0] != "buildrequest.new":
        problems.append("request %d: first event %s" % (rid, types[0]))
    if types[-1] != "buildrequest.complete":
        problems.append("request %d: last event %s" % (rid, types[-1]))
    for t in ("buildrequest.new", "buildrequest.claimed", "buildrequest.complete", "build.started", "build.finished"):
        if types.count(t) != 1:
            problems.append("request %d: %d x %s" % (rid, types.count(t), t))
    if problems:
        return problems
    i_claim, i_start, i_fin = (types.index(t) for t in ("buildrequest.claimed", "build.started", "build.finished"))
    if not types.index("buildrequest.new") < i_claim < i_start < i_fin:
        problems.append("request %d: new/claimed/started/finished out of order: %s" % (rid, types))
    for i, e in enumerate(evs):
        if e["type"].split(".")[0] in ("step", "log", "property") and not i_start < i < i_fin:
            problems.append("request %d: %s at %d outside build.started %d .. build.finished %d"
                            % (rid, e["type"], i, i_start, i_fin))
    steps = collections.defaultdict(list)
    logs = collections.defaultdict(list)
    for i, e in enumerate(evs):
        if e["type"].startswith("step."):
            steps[e["data"]["stepid"]].append((i, e))
        if e["type"].startswith("log."):
            logs[e["data"]["logid"]].append((i, e))
            steps[e["data"]["stepid"]].append((i, e))
    for sid, lst in steps.items():
        ts = [e["type"] for _, e in lst]
        if ts[0] != "step.started" or ts[-1] != "step.finished" or ts.count("step.started") != 1 \
                or ts.count("step.finished") != 1:
            problems.append("step %d: events %s" % (sid, ts))
    for lid, lst in logs.items():
        ts = [e["type"] for _, e in lst]
        if ts[0] != "log.new" or ts[-1] != "log.finished" or ts.count("log.new") != 1 or ts.count("log.finished") != 1:
            problems.append("log %d: events %s" % (lid, ts))
            continue
        line = 0
        for _, e in lst[1:-1]:
            if e["data"]["firstline"] != line:
                problems.append("log %d: chunk at line %d, expected %d" % (lid, e["data"]["firstline"], line))
            line += e["data"]["content"].count("\n")
        if lst[-1][1]["data"]["num_lines"] != line:
            problems.append("log %d: log.finished num_lines %d, chunks hold %d lines"
                            % (lid, lst[-1][1]["data"]["num_lines"], line))
    return problems


def _log_text(evs, logid):
    return "".join(e["data"]["content"] for e in sorted(evs, key=lambda e: e["seq"])
                   if e["type"] == "log.chunk" and e["data"]["logid"] == logid)


def test_buildbot_master_emits_every_event_schema_valid_and_in_order(kafka, tmp_path, deployments):
    prefix = "bb-%s." % uuid.uuid4().hex[:8]     # per run: a reused external Kafka keeps old records
    topics = {prefix + "events": 3, prefix + "logs": 3}
    kafka.create_topics(topics)
    d = Deployment(tmp_path, {"brokers": kafka.bootstrap, "master_name": "bb-test-1", "topic_prefix": prefix,
                              "log_flush_interval": 0.2, "stats_interval": 1.0, "cache_size": 64})
    deployments.append(d)
    d.start()
    d.sendchange("fix the frobnicator", ["src/frob.c", "docs/frob.md"])

    reader = TopicReader(kafka.bootstrap, list(topics))
    try:
        # The events arrive while the master runs (not only at the flush on stop).
        wait_for(lambda: reader.count("buildrequest.complete") >= 2, 90, interval=0.3,
                 what="two buildrequest.complete events in Kafka")
        assert sorted(d.finished_builds()) == [("fail", 2), ("pass", 0)], d.finished_builds()
        d.stop_worker()
        wait_for(lambda: reader.count("worker.disconnected") >= 1, 30, interval=0.3,
                 what="worker.disconnected in Kafka")
        d.stop()
        assert "firehose-buildbot: started" in d.log()
        assert "fast log read failed" not in d.log(), "log lines came through the getLogLines fallback"
        recs = reader.read()
    finally:
        reader.close()
    evs = [r["event"] for r in recs]
    log_tail = d.log()[-3000:]

    # 1. Every record validates against schemas/ and sits on its topic under its key.
    validator = EVENT_VALIDATOR
    problems = []
    for r in recs:
        e = r["event"]
        for err in validator.iter_errors(e):
            problems.append("%s seq %s: %s: %s" % (e.get("type"), e.get("seq"), err.json_path, err.message[:200]))
        want_topic = topic_for(e, prefix + "events", prefix + "logs")
        if r["topic"] != want_topic:
            problems.append("%s on %s, want %s" % (e["type"], r["topic"], want_topic))
        if r["key"] != _expected_key(e):
            problems.append("%s: key %r, want %r" % (e["type"], r["key"], _expected_key(e)))
        if e["master"] != "bb-test-1" or e["source"] != "buildbot://bb-test-1":
            problems.append("%s: master %r source %r" % (e["type"], e["master"], e["source"]))
    assert not problems, "%d problems:\n  %s" % (len(problems), "\n  ".join(problems[:30]))

    # 2. seq: unique, contiguous (nothing dropped while Kafka was up); ids unique; per key the
    #    partition order is the seq order.
    seqs = sorted(e["seq"] for e in evs)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq has gaps or repeats: %s..." % seqs[:20]
    assert len({e["id"] for e in evs}) == len(evs)
    per_key = collections.defaultdict(list)
    for r in sorted(recs, key=lambda r: (r["topic"], r["partition"], r["offset"])):
        per_key[(r["topic"], r["key"])].append(r["event"]["seq"])
    for k, s in per_key.items():
        assert s == sorted(s), "%s: Kafka order differs from seq order" % (k,)

    # 3. Every expected type is there.
    count = collections.Counter(e["type"] for e in evs)
    for t in ("master.started", "master.stopped", "worker.connected", "worker.disconnected", "change.new",
              "buildrequest.new", "buildrequest.claimed", "buildrequest.complete", "build.started",
              "build.updated", "build.finished", "step.started", "step.finished", "log.new", "log.chunk",
              "log.finished", "property.set"):
        assert count[t] >= 1, "no %s event; counts %s\nmaster log tail:\n%s" % (t, dict(count), log_tail)
    for t in ("buildrequest.new", "buildrequest.claimed", "buildrequest.complete", "build.started", "build.finished"):
        assert count[t] == 2, (t, dict(count))
    assert count["change.new"] == 1 and count["master.started"] == 1 and count["master.stopped"] == 1, dict(count)
    ms = sorted((e for e in evs if e["type"].startswith("master.")), key=lambda e: e["seq"])
    assert [e["type"] for e in ms] == ["master.started", "master.stopped"]
    assert max(seqs) == ms[-1]["seq"], "master.stopped must be the last event"

    ch = next(e["data"] for e in evs if e["type"] == "change.new")
    assert (ch["author"], ch["comments"], sorted(ch["files"]), ch["branch"], ch["revision"], ch["repository"],
            ch["project"]) == (AUTHOR, "fix the frobnicator", ["docs/frob.md", "src/frob.c"], "trunk", REVISION,
                               REPO, "firehose")

    # 4. The context is filled in on every build-scoped event.
    by_req = collections.defaultdict(list)
    for e in evs:
        if "buildrequestid" in e["data"]:
            by_req[e["data"]["buildrequestid"]].append(e)
    assert len(by_req) == 2
    builds = {}
    for rid, lst in by_req.items():
        lst.sort(key=lambda e: e["seq"])
        started = next(e["data"] for e in lst if e["type"] == "build.started")
        builds[started["builder"]] = (rid, started, lst)
        for e in lst:
            dd = e["data"]
            ctx = (dd["builder"], dd["builderid"], dd["branch"], dd["revision"], dd["repository"], dd["project"],
                   dd["codebase"], dd["owner"])
            assert ctx == (started["builder"], started["builderid"], "trunk", REVISION, REPO, "firehose", "",
                           "alice@example.org"), (e["type"], ctx)
            if not e["type"].startswith("buildrequest."):
                assert dd["buildid"] == started["buildid"], (e["type"], dd)
        assert started["worker"] == "w1"
    assert sorted(builds) == ["fail", "pass"]

    # 5. Per build, in seq order: request new < claimed < build.started < steps/logs/properties
    #    < build.finished < request complete; each step and log opens, then closes; chunks
    #    cover every line exactly once.
    problems = []
    for rid, _, lst in builds.values():
        problems += _check_order(lst)
    assert not problems, "\n".join(problems[:30])

    # 6. Results: one passes, one fails; both for the build and for the request.
    for name, want in (("pass", 0), ("fail", 2)):
        _, _, lst = builds[name]
        fin = next(e["data"] for e in lst if e["type"] == "build.finished")
        done = next(e["data"] for e in lst if e["type"] == "buildrequest.complete")
        assert (fin["results"], done["results"]) == (want, want), (name, fin, done)
        assert fin["duration_s"] >= 0 and fin["number"] >= 0
    # Every step of each build, by name (Buildbot 3.x+ adds its own worker_preparation step).
    for name, want in (("pass", {"big", "answer", "color", "short"}), ("fail", {"before", "boom"})):
        got = [e["data"]["name"] for e in builds[name][2] if e["type"] == "step.started"]
        assert len(got) == len(set(got)) and set(got) - {"worker_preparation"} == want, (name, got)
    fail_steps = {e["data"]["name"]: e["data"]["results"] for e in builds["fail"][2] if e["type"] == "step.finished"}
    assert fail_steps.get("before") == 0 and fail_steps.get("boom") == 2, fail_steps

    # 7. Properties set during the build arrive as property.set.
    props = {}
    for e in builds["pass"][2]:
        if e["type"] == "property.set":
            props.update(e["data"]["properties"])
    assert props.get("fh_answer", [None])[0] == "42", props.get("fh_answer")
    assert props.get("color") == ["blue", "color"], props.get("color")   # source: the step name
    assert props.get("workername", [None])[0] == "w1"

    # 8. The big step's log, complete and in order, with Buildbot's stream letters.
    pass_evs = builds["pass"][2]
    big = next(e["data"] for e in pass_evs if e["type"] == "step.started" and e["data"]["name"] == "big")
    stdio = next(e["data"] for e in pass_evs if e["type"] == "log.new" and e["data"]["stepid"] == big["stepid"]
                 and e["data"]["name"] == "stdio")
    assert stdio["type"] == "s"
    text = _log_text(pass_evs, stdio["logid"])
    lines = text.splitlines()
    out = [ln[1:] for ln in lines if ln.startswith("o")]
    err = [ln[1:] for ln in lines if ln.startswith("e")]
    assert out == ["line %05d of the big step" % i for i in range(BIG_LINES)], "stdout lines differ"
    assert err == ["progress %d" % i for i in range(BIG_ERR_EVERY - 1, BIG_LINES, BIG_ERR_EVERY)], err
    assert lines[0].startswith("h"), lines[:3]
    assert all(ln[:1] in "oeh" for ln in lines)
    fin = next(e["data"] for e in pass_evs if e["type"] == "log.finished" and e["data"]["logid"] == stdio["logid"])
    assert fin["num_lines"] == len(lines)
    chunks = [e for e in pass_evs if e["type"] == "log.chunk" and e["data"]["logid"] == stdio["logid"]]
    # Batched: a few thousand lines travel in a few chunks, not one event per line or per append.
    assert len(chunks) < len(lines) / 50, len(chunks)

    # 9. The stats line counts what it did; the caches are bounded and their misses counted.
    st = d.stats_lines()[-1]
    assert st["dropped"] == 0 and st["delivered"] == len(evs) and st["errors"] == 0, st
    assert st["log_lines"] == sum(e["data"]["num_lines"] for e in evs if e["type"] == "log.finished"), st
    # Context lookups are per build request / buildset, not per event.
    assert st["queries"] <= 10 * len(by_req), st
    print("\nbuildbot: %d events %s; stats %s" % (len(evs), dict(count), st))


def test_buildbot_master_keeps_building_when_kafka_is_down(tmp_path, deployments):
    # Nothing listens on this port: Kafka is "down" for the whole test.
    closed = free_port()
    cap = 40
    d = Deployment(tmp_path, {"brokers": "127.0.0.1:%d" % closed, "master_name": "bb-down", "topic_prefix": "bb.",
                              "buffer_max_messages": cap, "stats_interval": 0.5, "log_flush_interval": 0.2,
                              "flush_timeout": 1.0, "kafka": {"message.timeout.ms": 600000,
                                                              "reconnect.backoff.max.ms": 1000}})
    deployments.append(d)
    d.start()
    t0 = time.monotonic()

    def stats_after(n_builds, min_dropped):
        def ok():
            if len(d.finished_builds()) < n_builds:
                return None
            st = d.stats_lines()
            return st and st[-1]["dropped"] > min_dropped and st[-1]["buffered"] == cap and st[-1]
        return wait_for(ok, 90, interval=0.3, what="%d finished builds and dropped > %d" % (n_builds, min_dropped))

    d.sendchange("first change", ["a.c"])
    st1 = stats_after(2, 0)
    d.sendchange("second change", ["b.c"])
    st2 = stats_after(4, st1["dropped"])
    elapsed = time.monotonic() - t0

    results = d.finished_builds()
    assert sorted(results) == [("fail", 2), ("fail", 2), ("pass", 0), ("pass", 0)], results
    assert st2["buffered"] == cap and st2["cap"] == cap, st2
    assert st2["dropped"] > st1["dropped"] > 0, (st1, st2)
    assert st2["delivered"] == 0
    # Every emitted event was either buffered or dropped; nothing got lost between the two.
    assert st2["emitted"] == st2["buffered"] + st2["dropped"], st2
    assert st2["errors"] == 0, st2
    assert "firehose-buildbot: dropping events: Kafka buffer full (%d/%d events)" % (cap, cap) in d.log()
    assert elapsed < 90, elapsed
    d.stop()
    assert d.master.returncode is not None


def test_buildbot_test_result_set_arrives_as_events_and_in_the_view(kafka, tmp_path, deployments):
    """A step's test result set (Buildbot's addTestResultSet/addTestResult) becomes test.results
    chunks on the logs topic and one test.result_set on the events topic, every result in
    Buildbot's order, read through the data API in pages; a broker on those topics then lists the
    retried test as flaky and the failures in /api/v1/stats/tests."""
    from view_helpers import Broker, OpenAPI
    prefix = "bbt-%s." % uuid.uuid4().hex[:8]
    topics = {prefix + "events": 3, prefix + "logs": 3, prefix + "dlq": 1}
    kafka.create_topics(topics)
    page = 250
    d = Deployment(tmp_path, {"brokers": kafka.bootstrap, "master_name": "bb-tests", "topic_prefix": prefix,
                              "log_flush_interval": 0.2, "stats_interval": 1.0, "test_results_page": page},
                   body=TESTS_BODY)
    deployments.append(d)
    d.start()
    d.sendchange("add tests", ["tests/test_unit.py"])
    reader = TopicReader(kafka.bootstrap, [prefix + "events", prefix + "logs"])
    try:
        wait_for(lambda: reader.count("buildrequest.complete") >= 1, 90, interval=0.3,
                 what="buildrequest.complete in Kafka")
        recs = reader.read()
    finally:
        reader.close()
    problems = []
    for r in recs:
        e = r["event"]
        for err in EVENT_VALIDATOR.iter_errors(e):
            problems.append("%s seq %s: %s: %s" % (e["type"], e["seq"], err.json_path, err.message[:200]))
        if e["type"].startswith("test."):
            if r["topic"] != topic_for(e, prefix + "events", prefix + "logs") or r["key"] != _expected_key(e):
                problems.append("%s on %s key %s" % (e["type"], r["topic"], r["key"]))
    assert not problems, "\n".join(problems[:30])
    evs = sorted((r["event"] for r in recs), key=lambda e: e["seq"])
    sets = [e for e in evs if e["type"] == "test.result_set"]
    chunks = [e for e in evs if e["type"] == "test.results"]
    assert len(sets) == 1, [e["type"] for e in evs]
    s = sets[0]["data"]
    total = TEST_RESULTS + 2
    failed = len(range(0, TEST_RESULTS, 10)) + 1
    assert (s["category"], s["value_unit"], s["description"]) == ("pass_fail", "boolean", "unit tests")
    assert (s["tests_passed"], s["tests_failed"], s["results"]) == (total - failed, failed, total), s
    # one chunk per page of the data API read: every chunk within the contract's 500
    assert s["chunks"] == len(chunks) == -(-total // page), (s["chunks"], len(chunks))
    assert [c["data"]["chunk"] for c in chunks] == list(range(len(chunks)))
    assert [c["data"]["last"] for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c["seq"] < sets[0]["seq"] for c in chunks)
    step = next(e["data"] for e in evs if e["type"] == "step.started" and e["data"]["name"] == "unittests")
    build = next(e["data"] for e in evs if e["type"] == "build.started")
    for c in chunks + sets:
        dd = c["data"]
        assert (dd["stepid"], dd["buildid"], dd["builder"], dd["revision"], dd["branch"],
                dd["test_result_setid"]) == (step["stepid"], build["buildid"], "tests", REVISION, "trunk",
                                             s["test_result_setid"]), dd
    tests = [t for c in chunks for t in c["data"]["tests"]]
    assert [t["name"] for t in tests] == ["test_%04d" % i for i in range(TEST_RESULTS)] + ["test_flaky"] * 2
    assert tests[3] == {"name": "test_0003", "code_path": "tests/test_unit.py", "line": 4, "value": "1",
                        "outcome": "pass", "duration_s": 0.003}, tests[3]
    assert [t["outcome"] for t in tests[:11]] == ["fail"] + ["pass"] * 9 + ["fail"]
    assert [(t["outcome"], t["duration_s"]) for t in tests[-2:]] == [("fail", 5.0), ("pass", 7.0)]

    # The same records through the broker's view: the REST answers.
    openapi = OpenAPI()
    b = Broker(kafka, {"events": prefix + "events", "logs": prefix + "logs", "dlq": prefix + "dlq"},
               tmp_path / "view.db", tmp_path / "broker.log").start()
    try:
        b.wait_applied(len(recs))
        r = b.get("/api/v1/flaky")
        openapi.check("/api/v1/flaky", r)
        flaky = r.json()["flaky"]
        assert [(f["builder"], f["name"], f["passed"], f["failed"], f["last_revision"]) for f in flaky] == [
            ("tests", "test_flaky", 1, 1, REVISION)], flaky
        r = b.get("/api/v1/stats/tests", {"builder": "tests", "limit": 3})
        openapi.check("/api/v1/stats/tests", r)
        st = r.json()
        assert st["tests"] == TEST_RESULTS + 1
        assert [(x["name"], x["runs"], x["mean_s"]) for x in st["slowest"]][0] == ("test_flaky", 2, 6.0)
        assert len(st["failing"]) == 3 and all(x["failed"] == 1 for x in st["failing"])
    finally:
        assert b.stop() == 0, b.log()[-3000:]
