"""FirehoseService against a fake master (no Buildbot process, no Kafka): the event mapping, the
context, the order repair when Buildbot's queue reorders, batched log reads, and the caps.

Why: the integration test proves the real thing end to end, but a real master cannot be made to
reorder its queue on demand; here the messages are fed in any order we like.

Run: python3 -m pytest -q -p no:cacheprovider tests/integration/test_buildbot_fake_master.py
"""

import datetime
import sys

import pytest
from twisted.internet import defer

pytest.importorskip("buildbot")
pytest.importorskip("confluent_kafka")

from bb_fake import feed, make_service, stop_service, svcmod  # noqa: E402
from firehose_buildbot.events import split_lines  # noqa: E402
from gen_events import topic_for  # noqa: E402
from test_schemas import EVENT_VALIDATOR as VALIDATOR  # noqa: E402

T0 = datetime.datetime(2026, 11, 22, 5, 0, 0, tzinfo=datetime.timezone.utc)


def bb_records(master):
    """A buildset with one request, a build, a step with a stdio log: data API rows."""
    st = master.data.store
    st[("builders", "3")] = {"builderid": 3, "name": "linux"}
    st[("workers", "5")] = {"workerid": 5, "name": "w1"}
    st[("buildsets", "11", "properties")] = {"owner": ["bob@example.org", "Force Build Form"]}
    ss = {"ssid": 21, "branch": "trunk", "revision": "abc", "repository": "https://r", "project": "p",
          "codebase": ""}
    bs = {"bsid": 11, "reason": "forced", "sourcestamps": [ss], "submitted_at": 100}
    st[("buildsets", "11")] = bs
    br = {"buildrequestid": 31, "buildsetid": 11, "builderid": 3, "priority": 0, "claimed": False,
          "claimed_at": None, "claimed_by_masterid": None, "complete": False, "results": None,
          "submitted_at": T0, "complete_at": None, "waited_for": False, "properties": None}
    st[("buildrequests", "31")] = br
    build = {"buildid": 41, "number": 7, "builderid": 3, "buildrequestid": 31, "workerid": 5, "masterid": 1,
             "started_at": T0, "complete": False, "complete_at": None, "results": None,
             "state_string": "created"}
    st[("builds", "41")] = build
    step = {"stepid": 51, "number": 0, "name": "compile", "buildid": 41, "started_at": T0, "complete": False,
            "complete_at": None, "results": None, "state_string": "running", "urls": [], "hidden": False}
    st[("steps", "51")] = step
    log = {"logid": 61, "name": "stdio", "slug": "stdio", "stepid": 51, "complete": False, "num_lines": 0,
           "type": "s"}
    st[("logs", "61")] = log
    return bs, br, build, step, log


def check_all_valid(sent):
    problems = []
    for topic, key, e in sent:
        for err in VALIDATOR.iter_errors(e):
            problems.append("%s: %s: %s" % (e["type"], err.json_path, err.message[:160]))
    assert not problems, "\n".join(problems)


def test_normal_order_maps_every_message_to_a_valid_event():
    svc, m = make_service()
    bs, br, build, step, log = bb_records(m)
    feed(svc, m, ("masters", "1", "started"), {"masterid": 1, "name": m.name, "active": True})
    feed(svc, m, ("buildsets", "11", "new"), bs)
    feed(svc, m, ("buildrequests", "31", "new"), br)
    feed(svc, m, ("buildrequests", "31", "claimed"), dict(br, claimed=True, claimed_at=T0, claimed_by_masterid=1))
    feed(svc, m, ("builds", "41", "new"), build)
    feed(svc, m, ("builds", "41", "update"), dict(build, state_string="compiling"))
    feed(svc, m, ("builds", "41", "properties", "update"), {"workername": ("w1", "Worker")})
    feed(svc, m, ("steps", "51", "new"), dict(step, started_at=None))
    feed(svc, m, ("steps", "51", "started"), step)
    feed(svc, m, ("logs", "61", "new"), log)
    m.db.logs.lines[61] = ["hheader\n"] + ["oline %d\n" % i for i in range(500)]
    feed(svc, m, ("logs", "61", "append"), dict(log, num_lines=201))
    feed(svc, m, ("logs", "61", "append"), dict(log, num_lines=501))
    assert m.db.logs.reads == 0, "log reads are batched by the flush timer"
    m.reactor.advance(1.0)
    m.reactor.advance(0)
    assert m.db.logs.reads == 1
    feed(svc, m, ("logs", "61", "finished"), dict(log, num_lines=501, complete=True))
    feed(svc, m, ("steps", "51", "finished"), dict(step, complete=True, complete_at=T0, results=0))
    feed(svc, m, ("builds", "41", "finished"), dict(build, complete=True, complete_at=T0, results=0,
                                                    state_string="build successful"))
    feed(svc, m, ("buildrequests", "31", "complete"), dict(br, complete=True, results=0, complete_at=T0))

    sent = svc.sink.sent
    check_all_valid(sent)
    types = [e["type"] for _, _, e in sent]
    assert types == ["master.started", "buildrequest.new", "buildrequest.claimed", "build.started",
                     "build.updated", "property.set", "step.started", "log.new", "log.chunk", "log.finished",
                     "step.finished", "build.finished", "buildrequest.complete"], types
    assert [e["seq"] for _, _, e in sent] == list(range(len(sent)))
    for topic, key, e in sent[1:]:
        assert key == "buildrequest/31"
        assert topic == topic_for(e)
        d = e["data"]
        assert (d["builder"], d["branch"], d["revision"], d["owner"]) == ("linux", "trunk", "abc",
                                                                          "bob@example.org")
    chunk = next(e for _, _, e in sent if e["type"] == "log.chunk")["data"]
    assert chunk["firstline"] == 0 and chunk["content"] == "".join(m.db.logs.lines[61])
    claimed = next(e for _, _, e in sent if e["type"] == "buildrequest.claimed")["data"]
    assert claimed["claimed_by_master"] == "m1"
    # Context lookups that the queue messages did not answer: builder name, buildset properties.
    assert set(m.data.gets) <= {("builders", "3"), ("buildsets", "11", "properties"), ("workers", "5")}, m.data.gets


def test_reordered_queue_still_gives_parents_first():
    svc, m = make_service()
    bs, br, build, step, log = bb_records(m)
    m.db.logs.lines[61] = ["oa\n", "ob\n", "oc\n"]
    # The log's append and the property update arrive before anything else of the build.
    feed(svc, m, ("logs", "61", "append"), dict(log, num_lines=2))
    feed(svc, m, ("builds", "41", "properties", "update"), {"x": (1, "test")})
    feed(svc, m, ("buildrequests", "31", "claimed"), dict(br, claimed=True, claimed_at=T0, claimed_by_masterid=2))
    m.data.store[("masters", "2")] = {"masterid": 2, "name": "other"}
    feed(svc, m, ("buildrequests", "31", "new"), br)           # late: ignored
    feed(svc, m, ("builds", "41", "new"), build)               # late: ignored
    feed(svc, m, ("logs", "61", "new"), log)                   # late: ignored
    # The step finishes before the log's own 'finished' message: the log is settled first.
    m.data.store[("logs", "61")] = dict(log, num_lines=3, complete=True)
    feed(svc, m, ("steps", "51", "finished"), dict(step, complete=True, complete_at=T0, results=2))
    feed(svc, m, ("logs", "61", "finished"), dict(log, num_lines=3, complete=True))   # late: ignored
    feed(svc, m, ("logs", "61", "append"), dict(log, num_lines=3))                    # late: ignored
    m.reactor.advance(2)
    types = [e["type"] for _, _, e in svc.sink.sent]
    check_all_valid(svc.sink.sent)
    assert types == ["build.started", "step.started", "log.new", "property.set", "buildrequest.new",
                     "buildrequest.claimed", "log.chunk", "log.finished", "step.finished"], types
    lines = "".join(e["data"]["content"] for _, _, e in svc.sink.sent if e["type"] == "log.chunk")
    assert lines == "oa\nob\noc\n"


def test_caches_are_capped_and_count_misses():
    svc, m = make_service(cache_size=4)
    for i in range(1, 20):
        m.data.store[("builders", str(i))] = {"builderid": i, "name": "b%d" % i}
        d = defer.ensureDeferred(svc._builder_name(i))
        assert d.result == "b%d" % i
    c = svc.c_builders
    assert len(c) == 4 and c.misses == 19 and c.evictions == 15


def test_open_logs_cap_evicts_the_oldest_and_ignores_it_afterwards():
    svc, m = make_service(max_open_logs=2)
    bs, br, build, step, log = bb_records(m)
    for lid in (61, 62, 63):
        feed(svc, m, ("logs", str(lid), "new"), dict(log, logid=lid, name="l%d" % lid, slug="l%d" % lid))
    assert list(svc._open_logs) == [62, 63] and svc.counters["logs_evicted"] == 1
    n = len(svc.sink.sent)
    m.db.logs.lines[61] = ["oa\n"]
    feed(svc, m, ("logs", "61", "append"), dict(log, num_lines=1))
    feed(svc, m, ("logs", "61", "finished"), dict(log, num_lines=1, complete=True))
    assert len(svc.sink.sent) == n, [e["type"] for _, _, e in svc.sink.sent[n:]]


def test_full_buffer_drops_and_counts_but_seq_shows_the_gap():
    svc, m = make_service()
    svc.sink.cap = 3
    for i in range(1, 8):
        feed(svc, m, ("workers", str(i), "connected"), {"workerid": i, "name": "w%d" % i})
    assert len(svc.sink.sent) == 3 and svc.sink.dropped_full == 4
    # The dropped events took seq 3..6: the next event delivered shows the gap.
    svc.sink.cap = 4
    feed(svc, m, ("workers", "9", "connected"), {"workerid": 9, "name": "w9"})
    assert [e["seq"] for _, _, e in svc.sink.sent] == [0, 1, 2, 7]
    assert svc.stats()["dropped"] == 4 and svc.stats()["buffered"] == 4


def test_inbox_cap_drops_without_blocking():
    svc, m = make_service(inbox_max=5)
    for cb, f in m.mq.consumers:
        if f == ("workers", None, None):
            for i in range(1, 11):
                cb(("workers", str(i), "connected"), {"workerid": i, "name": "w%d" % i})
    assert svc.counters["inbox_dropped"] == 5
    m.reactor.advance(0)
    assert len(svc.sink.sent) == 5


def test_filters_skip_without_using_seq():
    svc, m = make_service(types=["worker.*"], builders=["nothing"])
    feed(svc, m, ("changes", "1", "new"), {"changeid": 1, "author": "a", "comments": "", "files": [],
                                           "when_timestamp": 1, "branch": None, "revision": None,
                                           "repository": "", "project": "", "codebase": "",
                                           "category": None, "revlink": None, "sourcestamp": {"ssid": 2}})
    feed(svc, m, ("workers", "1", "connected"), {"workerid": 1, "name": "w"})
    assert [e["type"] for _, _, e in svc.sink.sent] == ["worker.connected"]
    assert svc.sink.sent[0][2]["seq"] == 0 and svc.counters["filtered"] == 1


def test_seq_survives_a_restart_and_stop_stores_it():
    svc, m = make_service()
    assert m.db.state.values["seq_next"] == svcmod.SEQ_BLOCK
    feed(svc, m, ("workers", "1", "connected"), {"workerid": 1, "name": "w"})
    d = stop_service(svc, m)
    assert d.called
    assert m.db.state.values["seq_next"] == 2     # worker.connected 0, master.stopped 1
    assert svc.sink.sent[-1][2]["type"] == "master.stopped"


def test_split_lines_respects_the_chunk_limit():
    text = "".join("o%s\n" % ("x" * 999) for _ in range(200))
    pieces, n, truncated = split_lines(text)
    assert n == 200 and truncated == 0
    assert all(len(c) <= 65536 for _, c in pieces)
    assert "".join(c for _, c in pieces) == text
    assert [off for off, _ in pieces] == [i * 65 for i in range(len(pieces))]
    pieces, n, truncated = split_lines("o" + "y" * 70000 + "\n")
    assert truncated == 1 and len(pieces[0][1]) == 65536 and pieces[0][1].endswith("\n")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
