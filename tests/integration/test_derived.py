"""Derived events on real Kafka: builder.broken, builder.fixed, lkgr.advanced, request.stale and
test.flaky, each exactly once by id with the right content, across a broker SIGKILL and a full
view rebuild; and a WebSocket subscriber with a type+branch filter receives builder.broken.

Why: consumers page people and move release branches on these events; a second, different copy
of one (or a missing one) after a restart or a rebuild is a wrong page or a wrong ship.

Run: python3 -m pytest -q tests/integration/test_derived.py
"""

import json
import re
import time
import uuid

import pytest

from conftest import wait_for
from kafka_reader import TopicReader
from stream_support import Client, Sse
import test_view_rest as tvr
from test_view_rest import World, rev, R
from view_helpers import Broker, emit, write_ndjson

PARTS = 3
BRANCH = "main"
tvr.BUILDERS.update({"queue-x": 7, "queue-y": 8})


def topics_for(kafka, prefix):
    t = {"events": prefix + ".events", "logs": prefix + ".logs", "dlq": prefix + ".dlq",
         "derived": prefix + ".derived"}
    kafka.create_topics({t["events"]: PARTS, t["logs"]: PARTS, t["dlq"]: 1, t["derived"]: PARTS})
    return t


STARTED = []   # every broker a test started: killed at its end if it is still running


@pytest.fixture(autouse=True)
def _kill_leftover_brokers():
    yield
    while STARTED:
        STARTED.pop().kill()


def start(kafka, topics, view, log, extra=()):
    b = Broker(kafka, topics, view, log,
               extra=["--derive.enabled=true", "--topic-derived", topics["derived"],
                      "--view.required_builders=%s=linux" % BRANCH,
                      "--derive.stale_after=queue-*=60,*=100000",
                      "--derive.check_interval_ms=200"] + list(extra))
    STARTED.append(b)
    b.start()
    return b


class Derived:
    """Every record of the derived topic, grouped by id."""

    def __init__(self, kafka, topic):
        self.r = TopicReader(kafka.bootstrap, [topic])

    def close(self):
        self.r.close()

    def by_id(self):
        self.r.read()
        out = {}
        for rec in self.r.records:
            out.setdefault(rec["event"]["id"], []).append(rec)
        return out

    def of(self, etype):
        return [recs[0]["event"] for recs in self.by_id().values() if recs[0]["event"]["type"] == etype]

    def wait(self, pred, what, timeout=60):
        return wait_for(lambda: pred(self), timeout, interval=0.2, what=what)


def step(kafka, topics, broker, world, path, total):
    """Emits what world gathered since the last step and waits until the view applied it."""
    write_ndjson(path, world.events)
    emit(kafka, topics, path, expected=len(world.events))
    total += len(world.events)
    world.events = []
    broker.wait_applied(total)
    return total


def same_copies(d):
    """Each id's copies are byte-identical (a re-send after a crash is allowed, a different one is not)."""
    bad = {i: [r["value"] for r in recs] for i, recs in d.items() if len({r["value"] for r in recs}) > 1}
    assert not bad, "ids with different copies: %s" % json.dumps({k: [v.decode() for v in vs] for k, vs in bad.items()})[:3000]


def test_break_fix_lkgr_stale_flake_once_each_across_restart_and_rebuild(kafka, tmp_path):
    topics = topics_for(kafka, "derived-%s" % uuid.uuid4().hex[:8])
    view = tmp_path / "view.db"
    log = tmp_path / "broker.log"
    now = time.time()
    w = World(now - 900)
    for i in range(1, 5):
        w.change(i, BRANCH, "m%d" % i, 10 * i)
    # A request of queue-x waits from t0 (15 minutes, rule 60 s): stale. queue-y's was claimed.
    w.new(301, "queue-x", BRANCH, "m1", 0)
    w.new(302, "queue-y", BRANCH, "m1", 1)
    w.claimed(302, 2)
    w.full(201, "linux", BRANCH, "m1", 101, 0, 50)
    derived = Derived(kafka, topics["derived"])
    b = start(kafka, topics, view, log)
    ws = Client(type("B", (), {"ws_url": "ws" + b.url[4:] + "v1/stream"})())
    sse = Sse(b, query="type=builder.broken,builder.fixed&branch=" + BRANCH)
    try:
        ws.subscribe("bf", {"type": ["builder.broken", "builder.fixed"], "branch": BRANCH})
        total = step(kafka, topics, b, w, tmp_path / "a1.ndjson", 0)
        derived.wait(lambda d: d.of("request.stale") and d.of("lkgr.advanced"), "stale and first lkgr")
        w.full(202, "linux", BRANCH, "m2", 102, 0, 60)
        total = step(kafka, topics, b, w, tmp_path / "a2.ndjson", total)
        derived.wait(lambda d: len(d.of("lkgr.advanced")) == 2, "lkgr m1 -> m2")
        w.full(203, "linux", BRANCH, "m4", 103, 2, 70)       # breaks: suspects m3, m4
        w.full(204, "linux", "other", "m4", 104, 2, 71)     # red before any green: nothing
        total = step(kafka, topics, b, w, tmp_path / "a3.ndjson", total)
        derived.wait(lambda d: d.of("builder.broken"), "builder.broken")
        got = ws.wait(lambda msgs: [m["event"] for m in msgs if m.get("op") == "event"],
                      timeout=30, what="builder.broken on the WebSocket")
        assert [(e["type"], e["data"]["buildid"]) for e in got] == [("builder.broken", 103)], got
        sse.wait(lambda s: s.events, timeout=30, what="builder.broken over SSE")
        assert [(e["event"], e["data"]["data"]["buildid"]) for e in sse.events] == [("builder.broken", 103)], sse.events
    finally:
        ws.close()
        sse.close()
    # A crash: the view re-applies from its stored offsets.
    b.kill()
    b = start(kafka, topics, view, log)
    w.full(205, "linux", BRANCH, "m4", 105, 0, 80)          # fixes; m4 passed and failed: flaky
    total = step(kafka, topics, b, w, tmp_path / "b1.ndjson", total)
    derived.wait(lambda d: d.of("builder.fixed") and d.of("test.flaky") and len(d.of("lkgr.advanced")) == 3,
                 "fixed, flaky, lkgr m2 -> m4")
    before = derived.by_id()
    # A full rebuild: the file goes, the view re-applies everything from the topics.
    b.stop()
    for suffix in ("", "-wal", "-shm"):
        p = tmp_path / ("view.db" + suffix)
        if p.exists():
            p.unlink()
    b = start(kafka, topics, view, log)
    b.wait_applied(total)
    assert re.search(r"event=derive\.seeded topic=\S+ ids=%d" % len(before), b.log()), b.log()[-2000:]
    # one more tick and commit after the rebuild: nothing new may appear
    w.full(206, "linux", BRANCH, "m4", 106, 0, 90)
    total = step(kafka, topics, b, w, tmp_path / "c1.ndjson", total)
    time.sleep(1.0)  # two check intervals: a wrong re-emission would have been produced by now
    b.stop()
    after = derived.by_id()
    derived.close()
    same_copies(after)
    assert set(after) == set(before), "the rebuild emitted new ids: %s" % (set(after) - set(before))

    evs = {i: recs[0]["event"] for i, recs in after.items()}
    kinds = sorted(e["type"] for e in evs.values())
    assert kinds == ["builder.broken", "builder.fixed", "lkgr.advanced", "lkgr.advanced",
                     "lkgr.advanced", "request.stale", "test.flaky"], kinds
    for i, recs in after.items():
        e = recs[0]["event"]
        assert i.startswith("derived-") and e["master"] == "firehose.derive"
        assert e["subject"] == ("buildrequests/%d" % e["data"]["buildrequestid"] if e["type"] == "request.stale"
                                else "builds/%d" % e["data"]["buildid"]), e
        assert recs[0]["key"] == "buildrequest/%d" % e["data"]["buildrequestid"], recs[0]["key"]
    one = {t: [e for e in evs.values() if e["type"] == t] for t in set(kinds)}
    br = one["builder.broken"][0]["data"]
    assert (br["builder"], br["branch"], br["buildid"], br["last_green"]["buildid"]) == ("linux", BRANCH, 103, 102)
    assert [s["revision"] for s in br["suspects"]] == [rev("m3"), rev("m4")], br["suspects"]
    assert [s["author"] for s in br["suspects"]] == ["Dev 3 <dev3@example.org>", "Dev 4 <dev4@example.org>"]
    assert [s["changeid"] for s in br["suspects"]] == [3, 4] and br["suspects_truncated"] is False
    fx = one["builder.fixed"][0]["data"]
    assert (fx["buildid"], fx["broken_since"]["buildid"]) == (105, 103)
    fl = one["test.flaky"][0]["data"]
    assert (fl["test"], fl["revision"], fl["failed"]["buildid"], fl["passed"]["buildid"]) == (None, rev("m4"), 103, 105)
    moves = {(e["data"]["old_revision"], e["data"]["new_revision"]) for e in one["lkgr.advanced"]}
    assert moves == {(None, rev("m1")), (rev("m1"), rev("m2")), (rev("m2"), rev("m4"))}, moves
    for e in one["lkgr.advanced"]:
        assert e["data"]["required_builders"] == ["linux"]
        assert e["data"]["builders"][0]["builder"] == "linux"
    st = one["request.stale"][0]["data"]
    assert (st["buildrequestid"], st["builder"], st["threshold_s"]) == (301, "queue-x", 60)
    assert st["stale_at"] == pytest.approx(st["submitted_at"] + 60)


def test_lkgr_of_more_branches_than_one_turn_handles_all_advance(kafka, tmp_path):
    """derive.lkgr_per_turn=1 with five branches made dirty by one batch: the round goes on turn
    after turn until every branch had its look (each gets its lkgr.advanced), and a second round
    (each branch green again at a newer revision) moves every one again."""
    topics = topics_for(kafka, "derivedlt-%s" % uuid.uuid4().hex[:8])
    branches = ["lt-%d" % i for i in range(5)]
    w = World(time.time() - 900)
    for i, br in enumerate(branches):
        w.change(10 + i, br, "%s-a" % br, i)
        w.full(800 + i, "linux", br, "%s-a" % br, 900 + i, 0, 10 + i)
    derived = Derived(kafka, topics["derived"])
    b = start(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log",
              extra=["--derive.lkgr_per_turn=1", "--derive.lkgr_interval_ms=200"])
    moves = lambda d: sorted((e["data"]["branch"], e["data"]["old_revision"] or "", e["data"]["new_revision"])
                             for e in d.of("lkgr.advanced"))
    try:
        total = step(kafka, topics, b, w, tmp_path / "l1.ndjson", 0)
        derived.wait(lambda d: len(d.of("lkgr.advanced")) >= len(branches), "lkgr.advanced of every branch")
        assert moves(derived) == [(br, "", rev("%s-a" % br)) for br in branches]
        for i, br in enumerate(branches):
            w.change(20 + i, br, "%s-b" % br, 100 + i)
            w.full(810 + i, "linux", br, "%s-b" % br, 910 + i, 0, 110 + i)
        step(kafka, topics, b, w, tmp_path / "l2.ndjson", total)
        derived.wait(lambda d: len(d.of("lkgr.advanced")) >= 2 * len(branches), "the second round")
    finally:
        b.stop()
    got = moves(derived)
    derived.close()
    assert got == sorted([(br, "", rev("%s-a" % br)) for br in branches] +
                         [(br, rev("%s-a" % br), rev("%s-b" % br)) for br in branches]), got


def test_builder_broken_lists_the_newest_max_suspects_and_says_truncated(kafka, tmp_path):
    """Five revisions between the last green and the break with derive.max_suspects=3: the event
    lists the three newest, oldest first, ending with the broken one, and says the list was cut."""
    topics = topics_for(kafka, "derivedtr-%s" % uuid.uuid4().hex[:8])
    br = "tr-main"
    w = World(time.time() - 900)
    for i in range(1, 7):
        w.change(40 + i, br, "t%d" % i, 10 * i)
    w.full(851, "linux", br, "t1", 951, 0, 70)   # green at t1
    derived = Derived(kafka, topics["derived"])
    b = start(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log", extra=["--derive.max_suspects=3"])
    try:
        # the changes are applied before the break (records of other partitions have no order)
        total = step(kafka, topics, b, w, tmp_path / "t1.ndjson", 0)
        w.full(852, "linux", br, "t6", 952, 2, 80)   # red at t6: t2..t6 are suspects, 3 fit
        step(kafka, topics, b, w, tmp_path / "t2.ndjson", total)
        derived.wait(lambda d: d.of("builder.broken"), "builder.broken")
    finally:
        b.stop()
    ev = derived.of("builder.broken")[0]["data"]
    derived.close()
    assert [s["revision"] for s in ev["suspects"]] == [rev("t4"), rev("t5"), rev("t6")], ev["suspects"]
    assert [s["changeid"] for s in ev["suspects"]] == [44, 45, 46] and ev["suspects_truncated"] is True


def test_a_green_build_applied_after_a_later_red_one_still_breaks_and_the_next_green_fixes(kafka, tmp_path):
    """Records of other partitions apply in any order (a rebuild applies them in another order
    again): a green build applied after the red one that completed after it still came first, so
    the red one broke the builder (builder.broken names the green one as last_green) and the next
    green build fixes it."""
    from test_schemas import EVENT_VALIDATOR
    topics = topics_for(kafka, "derivedlg-%s" % uuid.uuid4().hex[:8])
    br = "lg-main"
    w = World(time.time() - 900)
    w.change(61, br, "g1", 5)
    w.change(62, br, "g2", 15)
    w.full(872, "linux", br, "g2", 972, 2, 20)     # red, completed at t0+26: applied first
    derived = Derived(kafka, topics["derived"])
    b = start(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log")
    try:
        total = step(kafka, topics, b, w, tmp_path / "lg1.ndjson", 0)
        w.full(871, "linux", br, "g1", 971, 0, 10)  # green, completed at t0+16: applied after it
        total = step(kafka, topics, b, w, tmp_path / "lg2.ndjson", total)
        derived.wait(lambda d: d.of("builder.broken"), "builder.broken")
        w.full(873, "linux", br, "g2", 973, 0, 40)  # green again
        step(kafka, topics, b, w, tmp_path / "lg3.ndjson", total)
        derived.wait(lambda d: d.of("builder.fixed"), "builder.fixed")
    finally:
        b.stop()
    after = derived.by_id()
    derived.close()
    same_copies(after)
    evs = [recs[0]["event"] for recs in after.values() if recs[0]["event"]["type"].startswith("builder.")]
    assert sorted(e["type"] for e in evs) == ["builder.broken", "builder.fixed"], evs
    for e in evs:
        assert list(EVENT_VALIDATOR.iter_errors(e)) == [], e
    broken = [e for e in evs if e["type"] == "builder.broken"][0]
    d = broken["data"]
    assert (d["builder"], d["branch"], d["buildrequestid"], d["buildid"], d["revision"], broken["subject"]) == (
        "linux", br, 872, 972, rev("g2"), "builds/972"), broken
    assert d["build"] == {"buildid": 972, "number": 1972, "revision": rev("g2"), "results": 2,
                          "complete_at": pytest.approx(w.t0 + 26)}, d
    assert d["last_green"] == {"buildid": 971, "number": 1971, "revision": rev("g1"), "results": 0,
                               "complete_at": pytest.approx(w.t0 + 16)}, d
    assert [s["revision"] for s in d["suspects"]] == [rev("g2")] and d["suspects_truncated"] is False, d
    fixed = [e for e in evs if e["type"] == "builder.fixed"][0]["data"]
    assert (fixed["buildid"], fixed["broken_since"]) == (973, d["build"]), fixed


def test_webhook_with_type_and_branch_filter_receives_builder_broken(kafka, tmp_path):
    """The webhook consumer reads the derived topic too: the same filter language selects them."""
    from webhook_support import Receiver, WebhookBroker
    topics = topics_for(kafka, "derivedwh-%s" % uuid.uuid4().hex[:8])
    recv = Receiver()
    b = WebhookBroker(kafka, topics, tmp_path, extra=[
        "--view.enabled=true", "--derive.enabled=true", "--topic-derived", topics["derived"],
        "--view.required_builders=%s=linux" % BRANCH, "--derive.stale_after="])
    STARTED.append(b)
    b.start()
    try:
        flt = {"type": ["builder.broken", "builder.fixed"], "branch": BRANCH}
        b.create(recv.url("/bf"), filter=flt, format="cloudevents")
        b.create(recv.url("/other"), filter={"type": ["builder.broken"], "branch": "other"},
                 format="cloudevents")
        b.wait_consumer()
        w = World(time.time() - 600)
        w.full(401, "linux", BRANCH, "m1", 501, 0, 10)
        w.full(402, "linux", BRANCH, "m2", 502, 2, 20)
        w.full(403, "linux", "other", "m2", 503, 2, 30)      # red before green: no event
        write_ndjson(tmp_path / "wh.ndjson", w.events)
        emit(kafka, topics, tmp_path / "wh.ndjson", expected=len(w.events))
        got = wait_for(lambda: recv.got("/bf"), 60, interval=0.1, what="builder.broken by webhook")
        evs = [json.loads(r["body"]) for r in got]
        assert [(e["type"], e["data"]["buildid"], e["data"]["branch"]) for e in evs] == [
            ("builder.broken", 502, BRANCH)], evs
        b.wait_applied(len(w.events))
        assert recv.got("/other") == []
    finally:
        b.stop()
        recv.close()


class ResultsWorld(World):
    """World with test results: one test.results chunk per call, in the context of a build."""

    def results(self, brid, buildid, setid, t, tests, chunk=0):
        items = [{"name": n, "code_path": None, "line": None, "value": "1" if o == "pass" else "0",
                  "outcome": o, "duration_s": 0.5} for n, o in tests]
        return self.add("test.results", dict(self._c(brid, buildid), test_result_setid=setid,
                                             stepid=buildid * 10, category="pass_fail",
                                             value_unit="boolean", chunk=chunk, last=True,
                                             tests=items), t, subject="builds/%d" % buildid)


def test_test_level_flaky_once_across_restart_and_rebuild(kafka, tmp_path):
    """One test passes then fails on one revision (others stable): exactly one test.flaky naming
    it, with both builds; a crash, results arriving again (the same chunk under a new id, more
    flips of the same test) and a rebuild add no second copy."""
    from test_schemas import EVENT_VALIDATOR
    topics = topics_for(kafka, "derivedtf-%s" % uuid.uuid4().hex[:8])
    view = tmp_path / "view.db"
    log = tmp_path / "broker.log"
    w = ResultsWorld(time.time() - 900)
    w.full(601, "linux", BRANCH, "m1", 701, 0, 10)                  # green at m1
    w.results(601, 701, 7010, 13, [("A", "pass"), ("F", "pass"), ("B", "fail")])
    w.new(602, "linux", BRANCH, "m1", 20)
    w.claimed(602, 21)
    w.started(602, 702, 1702, 22)
    derived = Derived(kafka, topics["derived"])
    b = start(kafka, topics, view, log)
    # in two steps: the view applies the events and logs topics in no fixed order between them
    total = step(kafka, topics, b, w, tmp_path / "t0.ndjson", 0)
    second = w.results(602, 702, 7020, 23, [("A", "pass"), ("F", "fail"), ("B", "fail")])
    total = step(kafka, topics, b, w, tmp_path / "t1.ndjson", total)
    flaky = lambda d: [e for e in d.of("test.flaky") if e["data"]["test"] is not None]
    derived.wait(flaky, "test.flaky of F")
    b.kill()
    b = start(kafka, topics, view, log)
    w.events.append(dict(second, id="again-7020"))                   # the same chunk, a new id
    w.results(602, 702, 7021, 24, [("F", "pass"), ("F", "fail"), ("A", "pass")])
    w.finished(602, 702, 1702, 26, 2)                                 # builder-level flip too
    w.complete(602, 27, 2, 702)
    total = step(kafka, topics, b, w, tmp_path / "t2.ndjson", total)
    # builder.broken and the builder-level test.flaky come after everything the results caused
    derived.wait(lambda d: d.of("builder.broken") and len(d.of("test.flaky")) == 2,
                 "builder.broken and builder-level test.flaky")
    before = derived.by_id()
    b.stop()
    for suffix in ("", "-wal", "-shm"):
        p = tmp_path / ("view.db" + suffix)
        if p.exists():
            p.unlink()
    b = start(kafka, topics, view, log)
    b.wait_applied(total)
    assert re.search(r"event=derive\.seeded topic=\S+ ids=%d" % len(before), b.log()), b.log()[-2000:]
    w.full(603, "linux", BRANCH, "m1", 703, 0, 40)                    # fixed: one more event
    total = step(kafka, topics, b, w, tmp_path / "t3.ndjson", total)
    derived.wait(lambda d: d.of("builder.fixed"), "builder.fixed after the rebuild")
    b.stop()
    after = derived.by_id()
    derived.close()
    same_copies(after)
    assert set(after) - set(before) == {e["id"] for e in
                                         [r[0]["event"] for r in after.values()]
                                         if e["type"] == "builder.fixed"}, after.keys()
    tests = sorted(([e["data"]["test"] for e in (r[0]["event"] for r in after.values())
                     if e["type"] == "test.flaky"]), key=str)
    assert tests == ["F", None], tests
    ev = [r[0]["event"] for r in after.values()
          if r[0]["event"]["type"] == "test.flaky" and r[0]["event"]["data"]["test"] == "F"][0]
    assert list(EVENT_VALIDATOR.iter_errors(ev)) == [], ev
    d = ev["data"]
    assert (d["builder"], d["branch"], d["revision"], d["buildid"], ev["subject"]) == (
        "linux", BRANCH, rev("m1"), 702, "builds/702"), ev
    assert d["passed"] == {"buildid": 701, "number": 1701, "revision": rev("m1"), "results": 0,
                           "complete_at": pytest.approx(w.t0 + 16)}, d
    # build 702 had started but not finished when its results flipped F
    assert d["failed"] == {"buildid": 702, "number": 1702, "revision": rev("m1"), "results": None,
                           "complete_at": None}, d
