"""The stream (docs/stream.md) proved against real Apache Kafka with real clients: `websockets` for
WebSocket (/v1/stream, protocols firehose and cloudevents.json), `curl -N` for SSE (/v1/events).

Each broker here is bin/firehose-broker (FIREHOSE_TEST_BROKER overrides it, e.g. the ASan build)
on its own topics, group and port. Expected deliveries are computed in Python from the events
produced (stream_support.matches re-implements the filter language), so every test compares sets
of event ids: nothing missing, nothing extra, nothing twice, and per build request the order of
production.
"""

import base64
import collections
import datetime
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import time
import uuid

import pytest
import requests
import yaml

import gen_events
from conftest import ROOT, wait_for
from stream_support import (Broker, Client, PacedEmitter, Sse, TopicSet, build_order_problems,
                            matches, wait_topics, ws_status)
from stream_ws import HandshakeError, HandshakeStorm, OP_BINARY, OP_TEXT, RawWs, http_exchange

PARTS = 3          # partitions of each topic of a topic set (events + logs: a cursor has 6 offsets)
WIDE_PARTS = 100   # the wide topic set: cursors of 200 offsets
HUGE_PARTS = 1024  # test_cursors_of_1024_partitions_per_topic's own topics: cursors of 2048 offsets

TOKENS = [
    {"name": "alice-ci", "token": "alice-token-0123456789", "scopes": ["read"],
     "filter": {"branch": "try", "owner": "alice@example.org"}},
    {"name": "dashboard", "token": "reader-token-0123456789", "scopes": ["read"]},
    {"name": "ops", "token": "admin-only-token-0123456789", "scopes": ["admin"]},
]
ALICE = TOKENS[0]["filter"]

# name: (topic set, extra arguments, anonymous read)
BROKERS = {
    "main": ("main", ["--stream.heartbeat_s=1", "--stream.max_subscriptions=8",
                      "--stream.max_message_bytes=4096"], True),
    "sse": ("main", ["--stream.heartbeat_s=1"], True),
    "ring": ("ring", ["--stream.ring_events=100"], True),
    "slow": ("live", ["--stream.client_queue_bytes=262144", "--stream.heartbeat_s=1"], True),
    "tight": ("live", ["--stream.ring_events=100", "--stream.client_queue_bytes=65536",
                       "--stream.close_timeout_ms=1000"], True),
    "auth": ("live", ["--stream.heartbeat_s=1"], False),
    "limits": ("live", ["--stream.max_connections=2"], True),
    "wide": ("wide", [], True),
}

def cursor_re(nparts):
    return re.compile(r"^%d(\.[0-9a-z]+){%d}$" % (nparts, nparts))


def rfc3339_ms(epoch_ms):
    d = datetime.datetime.fromtimestamp(epoch_ms // 1000, tz=datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (epoch_ms % 1000)


def exact_problems(got, expected, topics, what):
    """got: received CloudEvents (dicts); expected: produced events. Returns problems: missing,
    unexpected, duplicated, changed payloads, per-build order."""
    want = {e["id"] for e in expected}
    count = collections.Counter(e["id"] for e in got)
    problems = []
    missing = [e for e in expected if count[e["id"]] == 0]
    extra = [i for i in count if i not in want]
    dups = [i for i, n in count.items() if n > 1]
    if missing:
        problems.append("%s: %d of %d expected events missing, first ones: %s" % (
            what, len(missing), len(expected),
            ["#%d %s %s" % (topics.index[e["id"]], e["type"], e["id"]) for e in missing[:5]]))
    if extra:
        problems.append("%s: %d unexpected events, e.g. %s" % (
            what, len(extra), [(i, topics.produced[topics.index[i]]["type"]) if i in topics.index else i
                               for i in extra[:5]]))
    if dups:
        problems.append("%s: %d events delivered more than once, e.g. %s" % (what, len(dups), dups[:5]))
    changed = [e["id"] for e in got if e["id"] in topics.index and e != topics.produced[topics.index[e["id"]]]]
    if changed:
        problems.append("%s: %d events differ from what was produced, e.g. %s" % (what, len(changed), changed[:3]))
    order = build_order_problems([e for e in got if e["id"] in topics.index], topics.index)
    if order:
        problems.append("%s: per-build order broken: %s" % (what, order[:5]))
    return problems


def resume_problems(broker, sid, cursor, want, what):
    """A new client subscribes sid from cursor and waits for len(want) events; returns its
    subscribed message and exact_problems of what it got against want."""
    again = Client(broker)
    try:
        subscribed = again.subscribe(sid, {}, {"cursor": cursor})
        again.wait_events(sid, len(want))
        again.barrier()
        return subscribed, exact_problems([m["event"] for m in again.events(sid)], want,
                                          broker.topics, what)
    finally:
        again.close()


def settle(broker, n_in, clients=(), timeout=30):
    """Waits until the broker's stream has read n_in events in total (so every one of them has
    been routed), then until each client has received everything queued for it."""
    wait_for(lambda: broker.metric("firehose_stream_events_total") >= n_in, timeout,
             what="%s to read %d events" % (broker.name, n_in))
    for c in clients:
        c.barrier()


# ---- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def topics(kafka):
    prefix = "st%s" % uuid.uuid4().hex[:8]
    sets = {n: TopicSet(prefix, n, PARTS) for n in ("main", "ring", "live", "expire")}
    sets["wide"] = TopicSet(prefix, "wide", WIDE_PARTS)
    specs = {prefix + ".dlq": 1}
    for s in sets.values():
        specs.update(s.specs())
    kafka.create_topics(specs)
    wait_topics(kafka.bootstrap, specs)
    sets["dlq"] = prefix + ".dlq"
    return sets


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("stream-auth") / "tokens.json"
    f.write_text(json.dumps(TOKENS))
    return f


def _start(kafka, topics, name, tmp, tokens_file, label=None):
    tset, args, anonymous = BROKERS[name]
    if not anonymous:
        args = args + ["--auth.tokens_file=%s" % tokens_file]
    return Broker(kafka, topics[tset], topics["dlq"], label or name, tmp, args, anonymous)


@pytest.fixture(scope="module")
def brokers(kafka, topics, tokens_file, tmp_path_factory):
    """brokers(name): the module's shared broker of BROKERS[name], started on first use."""
    tmp = tmp_path_factory.mktemp("stream")
    started = {}

    def get(name):
        if name not in started:
            started[name] = _start(kafka, topics, name, tmp, tokens_file)
        return started[name]

    get.tmp = tmp
    yield get
    for b in started.values():
        b.stop()


@pytest.fixture
def fresh(kafka, topics, tokens_file, tmp_path):
    """fresh(name): a broker of BROKERS[name] for this test alone (its state cannot leak into
    other tests: a hung catch-up, a crash), stopped at the end."""
    started = []

    def get(name):
        b = _start(kafka, topics, name, tmp_path, tokens_file, "%s-%d" % (name, len(started)))
        started.append(b)
        return b

    yield get
    for b in started:
        b.stop()


# ---- the documents --------------------------------------------------------------------------------

STREAM_MD = ROOT / "docs" / "stream.md"
ASYNCAPI = ROOT / "docs" / "asyncapi.yaml"


def _doc_names():
    """Ops, error codes and close codes that docs/stream.md names (its JSON examples and tables)."""
    text = STREAM_MD.read_text()
    ops = set(re.findall(r'"op"\s*:\s*"([a-z_]+)"', text))
    section = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    codes = set(re.findall(r"^\|\s*`([a-z_]+)`\s*\|", section, re.M))
    close = set(int(c) for c in re.findall(r"^\|\s*`?(\d{4})`?\s*\|", text, re.M))
    return ops, codes, close


def test_asyncapi_describes_every_op_error_and_close_code_of_stream_md():
    """docs/asyncapi.yaml parses, is AsyncAPI 2.6/3.x, and names every op, error code and close code of docs/stream.md."""
    doc = yaml.safe_load(ASYNCAPI.read_text())
    assert str(doc.get("asyncapi", "")).startswith(("2.6", "3.")), doc.get("asyncapi")
    assert doc.get("channels"), "no channels"
    ops, codes, close = _doc_names()
    assert {"subscribe", "unsubscribe", "ping", "subscribed", "unsubscribed", "event", "error", "pong"} <= ops, ops
    assert {"bad_request", "bad_filter", "cursor_expired"} <= codes, codes
    assert {1000, 1001, 4000, 4001, 4008, 4029} <= close, close
    flat = json.dumps(doc)
    missing = [o for o in sorted(ops) if '"%s"' % o not in flat]
    missing += [c for c in sorted(codes) if '"%s"' % c not in flat]
    missing += [c for c in sorted(close) if not re.search(r"(?<![0-9])%d(?![0-9])" % c, flat)]
    assert not missing, "docs/asyncapi.yaml lacks %s" % missing
    text = json.dumps(doc["channels"])
    for path in ("/v1/stream", "/v1/events"):
        assert path in text, "no channel for %s" % path


def test_stream_md_documents_every_code_the_broker_sends_and_every_stream_key():
    """Every error code and close code in the stream module (broker/stream/), and every stream.* config key, is documented in docs/stream.md."""
    src = "".join(p.read_text() for p in sorted((ROOT / "broker" / "stream").glob("*.[ch]")))
    text = STREAM_MD.read_text()
    _, codes, close = _doc_names()
    sent = set(re.findall(r'send_error\([^;]*?"([a-z_]+)",', src, re.S))
    assert {"bad_request", "bad_filter", "duplicate_id"} <= sent, sent
    assert not sent - codes, "error codes sent by the stream but not in the Errors table: %s" % (sent - codes)
    sent_close = set(int(c) for c in re.findall(r"CLOSE_[A-Z_]+ = (\d+)", src))
    sent_close |= set(int(c) for c in re.findall(r"close_conn\([^;]*?, (\d{4}),", src))
    assert {1003, 4008} <= sent_close, sent_close
    sent_close |= {1002, 1007, 1009}    # from lib/fh_ws.c's parser
    assert not sent_close - close, "close codes not in docs/stream.md: %s" % (sent_close - close)
    helptext = subprocess.run([str(ROOT / "bin" / "firehose-broker"), "--help"], capture_output=True,
                              text=True, timeout=30).stdout
    keys = set(re.findall(r"--(stream\.[a-z_]+)", helptext))
    assert len(keys) >= 9, keys
    assert not [k for k in keys if k not in text], "stream keys missing from docs/stream.md: %s" % (
        [k for k in keys if k not in text])


# ---- 1. filters -----------------------------------------------------------------------------------

def test_filtered_subscribers_get_exactly_their_events(brokers):
    """Subscribers with different filters each get exactly the events their filter matches, in per-build order."""
    b = brokers("main")
    events = gen_events.generate(3000, seed=101)
    builders = collections.Counter(e["data"]["builder"] for e in events if "builder" in e["data"])
    builder = builders.most_common(1)[0][0]
    builderids = sorted({e["data"]["builderid"] for e in events if "builderid" in e["data"]})[:2]
    owner = collections.Counter(e["data"]["owner"] for e in events
                                if e["data"].get("branch") == "try" and e["data"].get("owner")).most_common(1)[0][0]
    filters = {
        # connection A: four subscriptions
        "by-builder": {"builder": builder},
        "try.owner": {"branch": "try", "owner": owner},
        "type_glob": {"type": "build.*"},
        "skia:steps": {"builder": "skia-*", "type": ["step.started", "step.finished"]},
        # connection B
        "red": {"results": [2, 4], "type": ["build.finished", "step.finished", "buildrequest.complete"]},
        "ids": {"builderid": [builderids[0], str(builderids[1])], "type": "log.*"},
        # connection C
        "all": {},
    }
    conns = {"A": ["by-builder", "try.owner", "type_glob", "skia:steps"], "B": ["red", "ids"], "C": ["all"]}
    clients = {}
    try:
        for name, subs in conns.items():
            clients[name] = Client(b)
            for sid in subs:
                r = clients[name].subscribe(sid, filters[sid])
                assert cursor_re(2 * PARTS).match(r["cursor"]), r
        base = b.metric("firehose_stream_events_total")
        b.emit(events)
        settle(b, base + len(events), clients.values())
        problems = []
        for name, subs in conns.items():
            c = clients[name]
            for sid in subs:
                expected = [e for e in events if matches(filters[sid], e)]
                assert 0 < len(expected) < len(events) or sid == "all", (sid, len(expected))
                msgs = c.events(sid)
                bad_cursors = [m["cursor"] for m in msgs if not cursor_re(2 * PARTS).match(m["cursor"])]
                assert not bad_cursors, bad_cursors[:3]
                problems += exact_problems([m["event"] for m in msgs], expected, b.topics, sid)
            stray = [m for m in c.events() if m["sub"] not in subs]
            assert not stray, stray[:2]
        assert not problems, "\n".join(problems)
    finally:
        for c in clients.values():
            c.close()


def test_the_first_event_after_subscribing_is_delivered(brokers):
    """A full-stream subscription gets the very first event produced after its "subscribed" reply."""
    b = brokers("main")
    events = gen_events.generate(5, seed=111)
    c = Client(b)
    try:
        c.subscribe("all", {})
        base = b.metric("firehose_stream_events_total")
        b.emit(events)
        settle(b, base + len(events), [c])
        # Order is promised per build (one key, one partition), not across partitions.
        problems = exact_problems([m["event"] for m in c.events("all")], events, b.topics, "all")
        assert not problems, "\n".join(problems)
    finally:
        c.close()


# ---- 2. cursors, resume, earliest, time -------------------------------------------------------------

def test_resume_across_a_gap_served_from_kafka(fresh):
    """A cursor older than the ring resumes from Kafka: every matching event after it exactly once, in order, then live."""
    b = fresh("ring")
    evs = gen_events.generate(2600, seed=202)
    flt = {"type": ["build.*", "step.*", "buildrequest.*"]}
    c = Client(b)
    try:
        c.subscribe("all", {})
        c.subscribe("f", flt)
        base = b.metric("firehose_stream_events_total")
        b.emit(evs[:300])
        settle(b, base + 300, [c])
        assert len(c.events("all")) == 300, "phase 1: %d of 300 events" % len(c.events("all"))
        cur_all = c.events("all")[-1]["cursor"]
        cur_f = c.events("f")[-1]["cursor"]
    finally:
        c.close()
    b.emit(evs[300:2300])          # 2,000 events while away: 20x the ring (stream.ring_events=100)
    catchups = b.metric("firehose_stream_catchups_total")
    c = Client(b)
    try:
        r = c.subscribe("all", {}, {"cursor": cur_all})
        assert r["cursor"] == cur_all, r
        c.subscribe("f", flt, {"cursor": cur_f})
        gap = evs[300:2300]
        c.wait_events("all", len(gap))
        c.wait_events("f", sum(1 for e in gap if matches(flt, e)))
        assert b.metric("firehose_stream_catchups_total") == catchups + 2
        base = b.metric("firehose_stream_events_total")
        b.emit(evs[2300:])          # live again
        settle(b, base + 300, [c])
        problems = exact_problems([m["event"] for m in c.events("all")], evs[300:], b.topics, "all")
        problems += exact_problems([m["event"] for m in c.events("f")],
                                   [e for e in evs[300:] if matches(flt, e)], b.topics, "f")
        assert not problems, "\n".join(problems)
    finally:
        c.close()


def test_resume_within_the_ring(brokers):
    """A cursor the ring still covers resumes from memory (no Kafka read): exactly the events after it, then live."""
    b = brokers("ring")
    evs = gen_events.generate(90, seed=212)
    c = Client(b)
    cur = c.subscribe("all", {})["cursor"]   # the position now; take it and leave
    c.close()
    b.emit(evs[:50])                         # fewer than stream.ring_events=100
    catchups = b.metric("firehose_stream_catchups_total")
    c = Client(b)
    try:
        c.subscribe("all", {}, {"cursor": cur})
        c.wait_events("all", 50)
        base = b.metric("firehose_stream_events_total")
        b.emit(evs[50:])
        settle(b, base + 40, [c])
        assert b.metric("firehose_stream_catchups_total") == catchups, "served from Kafka, not the ring"
        problems = exact_problems([m["event"] for m in c.events("all")], evs, b.topics, "all")
        assert not problems, "\n".join(problems)
    finally:
        c.close()


def test_from_earliest_and_from_a_time(fresh):
    """from "earliest" replays the whole topics then goes live; from {"time": T} starts at the first event produced at or after T."""
    b = fresh("ring")
    evs = gen_events.generate(900, seed=222)
    b.emit(evs[:400])
    t_ms = int(time.time() * 1000) + 2           # after every record of the first batch
    wait_for(lambda: time.time() * 1000 > t_ms + 5, 2, interval=0.002, what="the clock to pass T")
    b.emit(evs[400:700])
    flt = {"type": ["build.finished", "step.finished", "log.finished"]}
    c = Client(b)
    try:
        r = c.subscribe("e", flt, "earliest")
        assert "cursor" not in r, r               # resolved to offsets later: cursors come with events
        r = c.subscribe("t", {}, {"time": rfc3339_ms(t_ms)})
        assert "cursor" not in r, r
        history = list(b.topics.produced)         # everything ever produced to these topics
        c.wait_events("e", sum(1 for e in history if matches(flt, e)))
        c.wait_events("t", 300)
        base = b.metric("firehose_stream_events_total")
        b.emit(evs[700:])
        settle(b, base + 200, [c])
        problems = exact_problems([m["event"] for m in c.events("e")],
                                  [e for e in b.topics.produced if matches(flt, e)], b.topics, "earliest")
        problems += exact_problems([m["event"] for m in c.events("t")], evs[400:], b.topics, "time")
        assert not problems, "\n".join(problems)
        assert all(cursor_re(2 * PARTS).match(m["cursor"]) for m in c.events())
    finally:
        c.close()


def test_a_large_resume_from_the_ring_completes(brokers):
    """A resume served from the ring that is many times half the client queue runs to the end (the client reads promptly)."""
    b = brokers("slow")                        # client queue 256 KiB, ring 200,000 events
    evs = gen_events.generate(3000, seed=262)  # ~2.6 MB, all in the ring
    c = Client(b)
    cur = c.subscribe("all", {})["cursor"]
    c.close()
    b.emit(evs)
    catchups = b.metric("firehose_stream_catchups_total")
    c = Client(b)
    try:
        c.subscribe("all", {}, {"cursor": cur})
        try:
            c.wait_events("all", len(evs), timeout=30, idle=5)
        except TimeoutError:
            pass
        assert b.metric("firehose_stream_catchups_total") == catchups, "served from Kafka, not the ring"
        assert c.close_code is None, (c.close_code, c.close_reason)
        problems = exact_problems([m["event"] for m in c.events("all")], evs, b.topics, "resumed")
        assert not problems, "\n".join(problems)
    finally:
        c.close()


def test_resume_from_kafka_while_events_keep_flowing(fresh):
    """A resume from Kafka that is still running while the ring moves on has no gap: the events evicted meanwhile are read too."""
    b = fresh("ring")
    evs = gen_events.generate(8600, seed=232)
    c = Client(b)
    cur = c.subscribe("all", {})["cursor"]
    c.close()
    b.emit(evs[:8000])                         # ~7 MB: more than the client queue (4 MiB) holds
    raw = RawWs("127.0.0.1", b.port, rcvbuf=8192)
    try:
        delivered = b.metric("firehose_stream_deliveries_total")
        raw.send_json({"op": "subscribe", "id": "r", "filter": {}, "from": {"cursor": cur}})
        # The client reads nothing: the catch-up fills its queue to half and waits for credit.
        state = {"last": -1.0, "since": time.monotonic()}

        def stalled():
            n = b.metric("firehose_stream_deliveries_total")
            if n != state["last"]:
                state["last"], state["since"] = n, time.monotonic()
                return False
            return n > delivered + 1000 and time.monotonic() - state["since"] > 0.5
        wait_for(stalled, 30, interval=0.1, what="the catch-up to wait for the client")
        b.emit(evs[8000:])                     # 600 more: the ring (100) moves far past the gap's end
        got = []
        deadline = time.monotonic() + 60
        while len(got) < len(evs) and time.monotonic() < deadline:
            try:
                m = raw.recv_message(timeout=5)
            except TimeoutError:
                break
            assert m is not None, "closed: %s" % (raw.close_frame,)
            if m.get("op") == "event":
                got.append(m["event"])
            else:
                assert m.get("op") == "subscribed", m
        problems = exact_problems(got, evs, b.topics, "resumed")
        assert not problems, "\n".join(problems)
    finally:
        raw.close()


def test_consecutive_resumes_from_kafka_each_complete(fresh):
    """Two resumes from Kafka one after the other on the same broker both read their whole gap."""
    b = fresh("ring")                          # ring 100: earliest is always read from Kafka
    b.emit(gen_events.generate(400, seed=252))
    want = list(b.topics.produced)
    c = Client(b)
    try:
        for sid in ("first", "second"):
            c.subscribe(sid, {}, "earliest")
            try:
                c.wait_events(sid, len(want), timeout=30, idle=5)
            except TimeoutError:
                pass
            problems = exact_problems([m["event"] for m in c.events(sid)], want, b.topics, sid)
            assert not problems, "\n".join(problems)
    finally:
        c.close()


def test_resume_from_kafka_with_a_small_client_queue(fresh):
    """A client that reads promptly is not disconnected while its resume is served from Kafka, however small stream.client_queue_bytes is."""
    b = fresh("tight")                       # ring 100 events, client queue 64 KiB
    evs = gen_events.generate(2000, seed=242)
    c = Client(b)
    cur = c.subscribe("all", {})["cursor"]
    c.close()
    b.emit(evs)
    c = Client(b)
    try:
        c.subscribe("all", {}, {"cursor": cur})
        try:
            c.wait_events("all", len(evs))
        except TimeoutError:
            pass
        assert c.close_code is None, "disconnected with %s %r after %d of %d events" % (
            c.close_code, c.close_reason, len(c.events("all")), len(evs))
        problems = exact_problems([m["event"] for m in c.events("all")], evs, b.topics, "resumed")
        assert not problems, "\n".join(problems)
    finally:
        c.close()


def _catchup_filters(evs):
    """20 different filters over evs: everything, types, builders (indexed), branches, a glob."""
    builders = [b for b, _ in collections.Counter(
        e["data"].get("builder") for e in evs if isinstance(e.get("data"), dict)
        and e["data"].get("builder")).most_common(8)]
    flts = [{}, {"type": ["build.*"]}, {"type": ["step.finished", "log.finished"]},
            {"type": "log.chunk"}, {"branch": "main"}, {"branch": "try"},
            {"branch": "try", "type": ["step.*"]}, {"builder": "chromium-*"},
            {"builder": builders[:3]}, {"type": ["buildrequest.*", "master.*"]},
            {"builder": "*-tsan"}, {"type": "property.set"}]
    flts += [{"builder": b} for b in builders]
    return flts[:20]


def test_twenty_catch_ups_from_earliest_at_once_each_get_exactly_their_events(fresh):
    """20 subscriptions from earliest with different filters, all at once, share the catch-up reader: each gets exactly its events of the whole history in order, then continues live with no gap and no duplicate."""
    b = fresh("ring")                      # ring 100 events: the history is read from Kafka
    evs = gen_events.generate(2600, seed=262)
    b.emit(evs[:2000])
    history = list(b.topics.produced)
    flts = _catchup_filters(history)
    assert len(flts) == 20
    catchups = b.metric("firehose_stream_catchups_total")
    clients = [Client(b) for _ in range(4)]
    try:
        for i, flt in enumerate(flts):     # five subscriptions on each connection
            clients[i % 4].subscribe("s%d" % i, flt, "earliest")
        for i, flt in enumerate(flts):     # bounds for a loaded machine (the ASan broker)
            clients[i % 4].wait_events("s%d" % i, sum(1 for e in history if matches(flt, e)),
                                       timeout=180, idle=30)
        assert b.metric("firehose_stream_catchups_total") == catchups + 20
        base = b.metric("firehose_stream_events_total")
        b.emit(evs[2000:])                 # live again
        settle(b, base + 600, clients)
        problems = []
        for i, flt in enumerate(flts):
            got = [m["event"] for m in clients[i % 4].events("s%d" % i)]
            problems += exact_problems(got, [e for e in b.topics.produced if matches(flt, e)],
                                       b.topics, "s%d %s" % (i, json.dumps(flt)))
        assert not problems, "\n".join(problems[:40])
    finally:
        for c in clients:
            c.close()


def test_a_catch_up_client_that_never_reads_does_not_hold_back_the_others(fresh):
    """A catch-up client that stops reading (its queue full) does not stop the other catch-ups: they finish, exactly, while it waits, and it is not disconnected for it."""
    b = fresh("tight")                     # ring 100 events, client queue 64 KiB
    b.emit(gen_events.generate(3000, seed=272))
    history = list(b.topics.produced)      # far more than 64 KiB of events
    raw = RawWs("127.0.0.1", b.port, rcvbuf=4096)
    c = Client(b)
    try:
        raw.send_json({"op": "subscribe", "id": "stuck", "filter": {}, "from": "earliest"})
        m = raw.recv_message(timeout=10)
        assert m and m.get("op") == "subscribed", m
        flt = {"type": ["step.*", "build.*"]}
        c.subscribe("all", {}, "earliest")
        c.subscribe("f", flt, "earliest")
        c.wait_events("all", len(history), timeout=180, idle=30)
        c.wait_events("f", sum(1 for e in history if matches(flt, e)), timeout=180, idle=30)
        c.barrier()
        problems = exact_problems([m["event"] for m in c.events("all")], history, b.topics, "all")
        problems += exact_problems([m["event"] for m in c.events("f")],
                                   [e for e in history if matches(flt, e)], b.topics, "f")
        assert not problems, "\n".join(problems[:40])
        assert c.close_code is None, (c.close_code, c.close_reason)
        # the stuck one is still connected and gets the rest once it reads
        got = []
        deadline = time.monotonic() + 60
        while len(got) < len(history) and time.monotonic() < deadline:
            m = raw.recv_message(timeout=10)
            assert m is not None and m.get("op") in ("event", "heartbeat"), m
            if m.get("op") == "event":
                got.append(m["event"])
        problems = exact_problems(got, history, b.topics, "stuck")
        assert not problems, "\n".join(problems[:40])
    finally:
        c.close()
        raw.close()


def test_catch_ups_left_behind_by_a_slow_connection_rejoin_and_each_get_exactly_their_events(fresh):
    """Three catch-ups on one connection that stops reading are left behind by the shared reader (detached: the others go on and finish); once it reads again each rejoins from its own position and gets exactly its events, then live."""
    b = fresh("tight")                     # ring 100 events, client queue 64 KiB
    evs = gen_events.generate(3300, seed=282)
    b.emit(evs[:3000])
    history = list(b.topics.produced)      # far more than 64 KiB of events
    flts = {"all": {}, "builds": {"type": ["build.*", "step.*"]}, "logs": {"type": "log.chunk"}}
    detaches = b.metric("firehose_stream_catchup_detaches_total")
    rejoins = b.metric("firehose_stream_catchup_rejoins_total")
    raw = RawWs("127.0.0.1", b.port, rcvbuf=4096)
    c = Client(b)
    try:
        for sid, flt in flts.items():
            raw.send_json({"op": "subscribe", "id": sid, "filter": flt, "from": "earliest"})
        c.subscribe("other", {"type": "log.*"}, "earliest")
        want = [e for e in history if matches({"type": "log.*"}, e)]
        c.wait_events("other", len(want), timeout=180, idle=30)
        # the slow connection's jobs were left behind (not the whole pass held for them)
        wait_for(lambda: b.metric("firehose_stream_catchup_detaches_total") > detaches, 60,
                 what="a catch-up of the slow connection to be left behind")
        got = collections.defaultdict(list)
        want_n = {sid: sum(1 for e in history if matches(flt, e)) for sid, flt in flts.items()}
        deadline = time.monotonic() + 180
        while any(len(got[s]) < n for s, n in want_n.items()) and time.monotonic() < deadline:
            m = raw.recv_message(timeout=30)
            assert m is not None, "nothing for 30 s; got %s of %s" % (
                {s: len(v) for s, v in got.items()}, want_n)
            if m.get("op") == "event":
                got[m["sub"]].append(m["event"])
        assert b.metric("firehose_stream_catchup_rejoins_total") > rejoins
        base = b.metric("firehose_stream_events_total")
        b.emit(evs[3000:])                 # live again: each continues without a gap
        settle(b, base + 300)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
                len(got[s]) < sum(1 for e in b.topics.produced if matches(f, e))
                for s, f in flts.items()):
            m = raw.recv_message(timeout=30)
            assert m is not None, "closed: %s" % (raw.close_frame,)
            if m.get("op") == "event":
                got[m["sub"]].append(m["event"])
        problems = []
        for sid, flt in flts.items():
            problems += exact_problems(got[sid], [e for e in b.topics.produced if matches(flt, e)],
                                       b.topics, sid)
        assert not problems, "\n".join(problems[:40])
    finally:
        c.close()
        raw.close()


# ---- 3. backpressure --------------------------------------------------------------------------------

def _paced(em, evs, per=100, every=0.05):
    """Writes evs to a PacedEmitter in bursts of `per` events every `every` seconds, then closes it."""
    t_next = time.monotonic()
    for i in range(0, len(evs), per):
        wait_for(lambda: time.monotonic() >= t_next, 5, interval=0.005, what="the pace")
        em.write(evs[i:i + per])
        t_next += every
    em.close()


def _slow_client(b, sid="slow"):
    """A raw client with a 4 KiB receive buffer that subscribes to everything and then stops reading."""
    raw = RawWs("127.0.0.1", b.port, rcvbuf=4096)
    raw.send_json({"op": "subscribe", "id": sid, "filter": {}, "from": "latest"})
    m = raw.recv_message(timeout=10)
    assert m and m.get("op") == "subscribed", m
    return raw


def test_slow_consumer_is_disconnected_and_a_fast_one_keeps_up(brokers, kafka):
    """A client that stops reading is closed with 4008 once its queue passes stream.client_queue_bytes; a fast client on the same broker gets everything promptly."""
    b = brokers("slow")                        # client queue 256 KiB
    evs = gen_events.generate(4000, seed=303)
    fast = Client(b)
    slow = None
    try:
        fast.subscribe("all", {})
        slow = _slow_client(b)
        slow_before = b.metric("firehose_stream_disconnects_total", '{reason="slow_consumer"}')
        em = PacedEmitter(kafka, b.topics)
        _paced(em, evs)                        # 2,000 events/s for 2 s
        fast.wait_events("all", len(evs), timeout=60)
        wait_for(lambda: b.metric("firehose_stream_disconnects_total", '{reason="slow_consumer"}') > slow_before,
                 10, what="the slow consumer to be counted")
        lat = sorted(t - em.sent_at[m["event"]["id"]] for t, m in fast.timed_events("all"))
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
        print("\nfast client: %d events, latency p50 %.1f ms p99 %.1f ms max %.1f ms"
              % (len(lat), p50 * 1e3, p99 * 1e3, lat[-1] * 1e3))
        msgs = slow.read_until_close(timeout=30)
        assert slow.close_frame is not None and slow.close_frame[0] == 4008, slow.close_frame
        assert "slow consumer" in slow.close_frame[1]
        got = [m["event"] for m in msgs if m.get("op") == "event"]
        assert 0 < len(got) < len(evs), len(got)
        # what the slow client did get is a clean prefix: no gap, no duplicate, valid frames
        ids = [e["id"] for e in got]
        assert len(set(ids)) == len(ids)
        problems = exact_problems([m["event"] for m in fast.events("all")], evs, b.topics, "fast")
        assert not problems, "\n".join(problems)
        assert fast.close_code is None
        assert p50 < 0.25 and lat[-1] < 2.0, "the fast client was slowed down: p50 %.3fs max %.3fs" % (p50, lat[-1])
        # the disconnected client resumes from its last cursor and gets exactly the rest
        last = [m for m in msgs if m.get("op") == "event"][-1]["cursor"]
        rest = [e for e in evs if e["id"] not in set(ids)]
        _, problems = resume_problems(b, "slow", last, rest, "resumed")
        assert not problems, "\n".join(problems)
    finally:
        fast.close()
        if slow:
            slow.close()


def test_a_prompt_client_survives_a_burst_bigger_than_its_queue(fresh):
    """A client that reads promptly is not taken for a slow consumer when one Kafka fetch brings more than stream.client_queue_bytes at once."""
    b = fresh("tight")                         # client queue 64 KiB
    evs = gen_events.generate(2000, seed=323)  # ~1.7 MB produced in one go
    c = Client(b)
    try:
        c.subscribe("all", {})
        base = b.metric("firehose_stream_events_total")
        holds = b.metric("firehose_stream_holds_total")
        b.emit(evs)
        wait_for(lambda: b.metric("firehose_stream_events_total") >= base + len(evs) or c.done, 30,
                 what="the broker to read the burst")
        assert b.metric("firehose_stream_holds_total") > holds, "the burst never passed the queue cap"
        assert c.close_code is None, "disconnected with %s %r after %d events" % (
            c.close_code, c.close_reason, len(c.events()))
        c.barrier()
        problems = exact_problems([m["event"] for m in c.events("all")], evs, b.topics, "burst")
        assert not problems, "\n".join(problems)
    finally:
        c.close()


def test_a_closed_client_that_never_reads_its_close_frame_is_dropped(fresh):
    """A slow consumer that stopped reading for good cannot keep its socket: once closed, it has
    stream.close_timeout_ms (1 s here) to take the close frame, then the broker drops the connection."""
    b = fresh("tight")                         # client queue 64 KiB, close timeout 1 s
    b.wait_connections(0)
    slow = _slow_client(b)
    try:
        b.wait_connections(1)
        before = b.metric("firehose_stream_disconnects_total", '{reason="slow_consumer"}')
        b.emit(gen_events.generate(8000, seed=331))   # ~7 MB: more than the queue and both socket buffers
        wait_for(lambda: b.metric("firehose_stream_disconnects_total", '{reason="slow_consumer"}') > before,
                 30, what="the slow consumer to be closed")
        b.wait_connections(0)                  # not a socket kept open behind an unread close frame
        assert "stream.close_timeout" in b.log(), "the drop was not logged"
    finally:
        slow.close()


def test_an_sse_client_leaving_does_not_hurt_the_broker(fresh):
    """When an SSE client goes away the broker keeps running and forgets the connection."""
    b = fresh("sse")
    s = Sse(b, "type=build.finished")
    s.wait(lambda x: x.comments, 10, what="the opening comment")
    b.wait_connections(1)
    s.close()
    b.wait_connections(0)
    assert b.proc.poll() is None, "the broker died (%s):\n%s" % (b.proc.returncode, b.log_tail())
    assert requests.get(b.url + "healthz", timeout=5).status_code == 200
    s = Sse(b)                                 # and serves the next one
    try:
        s.wait(lambda x: x.comments, 10, what="the opening comment")
    finally:
        s.close()


# ---- 4. auth ----------------------------------------------------------------------------------------

def test_tokens_are_required_and_a_restricted_token_cannot_widen_its_filter(fresh):
    """Without a valid read token the upgrade is refused with 401; a token limited to branch=try, owner=alice sees only such events whatever it asks for."""
    b = fresh("auth")
    assert ws_status(b)[0] == 401
    assert ws_status(b, token="not-a-token-at-all-0000")[0] == 401
    assert ws_status(b, headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})[0] == 401
    assert ws_status(b, token=TOKENS[2]["token"])[0] == 101         # the admin scope implies read
    st, body = ws_status(b, query="access_token=wrong-token-0000000000")
    assert st == 401 and json.loads(body)["error"] == "unauthorized", body
    assert requests.get(b.url + "v1/events", timeout=5).status_code == 401
    assert ws_status(b, token=TOKENS[1]["token"])[0] == 101

    evs = gen_events.generate(3000, seed=418)     # 123 of them are alice's try builds
    assert sum(1 for e in evs if matches(ALICE, e)) > 20
    reader = Client(b, token=TOKENS[1]["token"])
    alice = Client(b, token=TOKENS[0]["token"])
    alice_q = Client(b, token=TOKENS[0]["token"], token_in_query=True)
    alice_ce = Client(b, token=TOKENS[0]["token"], token_in_query=True, subprotocols=["cloudevents.json"])
    sse_all = Sse(b, "access_token=" + TOKENS[0]["token"])
    sse_main = Sse(b, "branch=main", headers={"Authorization": "Bearer " + TOKENS[0]["token"]})
    clients = [reader, alice, alice_q]
    try:
        reader.subscribe("all", {})
        asks = {"any": {}, "main": {"branch": "main"}, "owners": {"owner": "*"},
                "bob": {"owner": "bob@example.org", "branch": "try"}}
        for sid, flt in asks.items():
            alice.subscribe(sid, flt)
        alice_q.subscribe("builds", {"type": "build.*"})
        b.wait_connections(6)
        base = b.metric("firehose_stream_events_total")
        t_emit = time.monotonic()
        b.emit(evs)
        settle(b, base + len(evs), clients)
        alice_ce.ws_barrier()
        sse_all.wait(lambda s: len(s.heartbeats_after(t_emit)) >= 2, 10, what="2 heartbeats")
        sse_main.wait(lambda s: len(s.heartbeats_after(t_emit)) >= 2, 10, what="2 heartbeats")

        mine = [e for e in evs if matches(ALICE, e)]
        problems = exact_problems([m["event"] for m in reader.events("all")], evs, b.topics, "reader")
        problems += exact_problems([m["event"] for m in alice.events("any")], mine, b.topics, "alice {}")
        problems += exact_problems([m["event"] for m in alice.events("owners")], mine, b.topics, "alice owner=*")
        problems += exact_problems([m["event"] for m in alice_q.events("builds")],
                                   [e for e in mine if e["type"].startswith("build.")], b.topics, "alice build.*")
        problems += exact_problems(alice_ce.cloudevents(), mine, b.topics, "alice cloudevents.json")
        problems += exact_problems([s["data"] for s in sse_all.events], mine, b.topics, "alice SSE")
        assert not alice.events("main"), "alice saw %d branch=main events" % len(alice.events("main"))
        assert not alice.events("bob"), "alice saw bob's events"
        assert not sse_main.events, "alice saw %d branch=main events over SSE" % len(sse_main.events)
        assert not problems, "\n".join(problems)
    finally:
        for c in clients + [alice_ce]:
            c.close()
        sse_all.close()
        sse_main.close()


# ---- 5. bad input -----------------------------------------------------------------------------------

def test_bad_messages_get_errors_and_the_connection_stays_usable(brokers):
    """Malformed client messages get an error naming the problem (bad_request, bad_filter naming the key, duplicate_id, unknown_subscription, too_many_subscriptions); the connection keeps working."""
    b = brokers("main")                        # stream.max_subscriptions=8
    c = Client(b)
    try:
        def error_for(msg, sid=None):
            before = len(c.others())
            c.send(msg)
            m = c.wait(lambda ms: [x for x in ms if x.get("op") != "event"][before:] or None,
                       what="a reply to %r" % (msg,))[0]
            assert m["op"] == "error", m
            assert m.get("id") == sid, m
            assert isinstance(m["message"], str) and m["message"], m
            return m

        assert error_for("this is not JSON")["code"] == "bad_request"
        assert error_for("[1, 2]")["message"] == "expected a JSON object"
        assert error_for('{"op": "subscribe", "op": "ping"}')["code"] == "bad_request"
        m = error_for({"op": "dance", "id": "x1"}, "x1")
        assert m["code"] == "bad_request" and "dance" in m["message"], m
        assert error_for({"id": "x2"}, "x2")["message"].startswith("op:")
        assert error_for({"op": "subscribe", "filter": {}})["message"].startswith("id:")
        assert error_for({"op": "subscribe", "id": "bad id!"})["message"].startswith("id:")
        assert error_for({"op": "subscribe", "id": "x" * 65})["message"].startswith("id:")
        # an invalid id is not echoed: one this long made the error frame overflow its buffer
        # (`"id":,` — not JSON), and the op is quoted whole characters at a time (UTF-8)
        assert error_for({"op": "dance", "id": "x" * 4060})["code"] == "bad_request"
        m = error_for({"op": "a" * 39 + "\u00e9\u00e9"})
        assert m["message"] == 'op: unknown operation "%s"' % ("a" * 39), m
        for flt, key in (({"colour": "red"}, "filter.colour"), ({"results": [9]}, "filter.results"),
                         ({"results": "green"}, "filter.results"), ({"type": "build.nope"}, "filter.type"),
                         ({"builderid": "abc"}, "filter.builderid"), ({"builder": []}, "filter.builder"),
                         ({"branch": ["x" * 300]}, "filter.branch"), ("main", "filter"),
                         ({"owner": {"a": 1}}, "filter.owner")):
            m = error_for({"op": "subscribe", "id": "f", "filter": flt}, "f")
            assert m["code"] == "bad_filter" and m["message"].startswith(key + ":"), (flt, m)
        for frm, prefix in (("yesterday", "from:"), ({"cursor": "garbage"}, "from.cursor:"),
                            ({"cursor": "3.0.0.0"}, "from.cursor:"), ({"time": "last tuesday"}, "from.time:"),
                            ({"time": "2026-11-22T05:00:00Z", "cursor": "6.0.0.0.0.0.0"}, "from:"), (7, "from:"),
                            ({"time": "1969-12-31T23:59:59.990Z"}, "from.time: before 1970")):
            m = error_for({"op": "subscribe", "id": "t", "filter": {}, "from": frm}, "t")
            assert m["code"] == "bad_request" and m["message"].startswith(prefix), (frm, m)
        c.subscribe("s1", {"type": "build.finished"})
        assert error_for({"op": "subscribe", "id": "s1", "filter": {}}, "s1")["code"] == "duplicate_id"
        assert error_for({"op": "unsubscribe", "id": "nope"}, "nope")["code"] == "unknown_subscription"
        assert c.unsubscribe("s1") == {"op": "unsubscribed", "id": "s1"}
        for i in range(8):
            c.subscribe("k%d" % i, {"builderid": i + 1})
        m = error_for({"op": "subscribe", "id": "k8", "filter": {}}, "k8")
        assert m["code"] == "too_many_subscriptions" and "8" in m["message"], m
        assert c.unsubscribe("k0")["op"] == "unsubscribed"
        c.subscribe("k8", {"type": "build.started"})        # room again
        c.barrier()                                         # and ping still answers
        # after all that the subscriptions still deliver
        evs = gen_events.generate(600, seed=505)
        base = b.metric("firehose_stream_events_total")
        b.emit(evs)
        settle(b, base + len(evs), [c])
        problems = exact_problems([m["event"] for m in c.events("k8")],
                                  [e for e in evs if e["type"] == "build.started"], b.topics, "k8")
        assert not problems, "\n".join(problems)
        assert c.close_code is None
    finally:
        c.close()


def test_bad_frames_close_with_the_documented_codes(brokers):
    """A binary frame closes with 1003, invalid UTF-8 with 1007, a message over stream.max_message_bytes with 1009, an unmasked frame with 1002; plain HTTP gets 426."""
    b = brokers("main")                        # stream.max_message_bytes=4096
    other = '{reason="other"}'
    before = b.metric("firehose_stream_disconnects_total", other)
    cases = [
        ("binary", 1003, lambda r: r.send_frame(OP_BINARY, b'{"op":"ping"}')),
        ("bad utf-8", 1007, lambda r: r.send_frame(OP_TEXT, b'{"op":"ping","x":"\xc3\x28"}')),
        ("too big", 1009, lambda r: r.send_text(json.dumps({"op": "ping", "pad": "x" * 5000}))),
        ("unmasked", 1002, lambda r: r.send_frame(OP_TEXT, b'{"op":"ping"}', mask=False)),
        ("reserved bits", 1002, lambda r: r.send_frame(OP_TEXT, b'{"op":"ping"}', rsv=4)),
    ]
    for what, code, act in cases:
        raw = RawWs("127.0.0.1", b.port)
        try:
            act(raw)
            raw.read_until_close(timeout=10)
            assert raw.close_frame is not None, "%s: no close frame" % what
            assert raw.close_frame[0] == code, "%s: closed with %s, want %d" % (what, raw.close_frame, code)
        finally:
            raw.close()
    # a message just under the limit is fine
    c = Client(b)
    try:
        c.send(json.dumps({"op": "ping", "pad": "x" * 3900}))
        c.wait(lambda ms: any(m.get("op") == "pong" for m in ms), what="pong")
    finally:
        c.close()
    wait_for(lambda: b.metric("firehose_stream_disconnects_total", other) >= before + len(cases), 5,
             what="disconnects{reason=other} to count the closes")
    r = requests.get(b.url + "v1/stream", timeout=5)
    assert r.status_code == 426 and r.json()["error"] == "upgrade_required", r.text
    try:
        RawWs("127.0.0.1", b.port, headers={}).close()
    except HandshakeError as e:
        raise AssertionError("a valid handshake was refused: %s" % e)
    with pytest.raises(HandshakeError) as e:
        RawWs("127.0.0.1", b.port, version="8")
    assert e.value.status == 426 and json.loads(e.value.body)["parameter"] == "Sec-WebSocket-Version"


def _tokens(headers, name):
    """Every comma-separated token of every header called name, lowercase."""
    return [t.strip().lower() for k, v in headers if k == name for t in v.split(",") if t.strip()]


def test_handshake_answers_follow_rfc_6455(brokers):
    """Every refused handshake gets an answer that says how to succeed (426 with Upgrade, Connection and Sec-WebSocket-Version: 13; 400 naming Host; 400 saying HTTP/1.1 for HTTP/1.0); the 101 says Connection: Upgrade once; conflicting Content-Length headers are a 400."""
    b = brokers("main")
    key = base64.b64encode(os.urandom(16)).decode()
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    host = "Host: 127.0.0.1:%d" % b.port

    def ask(first, *lines, body=b""):
        return http_exchange("127.0.0.1", b.port, [first] + list(lines), body, timeout=10)

    upgrade = ("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + key)
    for what, lines, code, param in [
            ("plain GET", (host,), "upgrade_required", None),
            ("version 8", (host,) + upgrade + ("Sec-WebSocket-Version: 8",), "unsupported_version",
             "Sec-WebSocket-Version"),
            ("no version", (host,) + upgrade, "unsupported_version", "Sec-WebSocket-Version")]:
        status, headers, body = ask("GET /v1/stream HTTP/1.1", *lines)
        assert status == 426, (what, status, body)
        assert _tokens(headers, "upgrade") == ["websocket"], (what, headers)
        assert "upgrade" in _tokens(headers, "connection"), (what, headers)
        assert _tokens(headers, "sec-websocket-version") == ["13"], (what, headers)
        err = json.loads(body)
        assert err["error"] == code and err.get("parameter") == param, (what, err)

    status, headers, body = ask("GET /v1/stream HTTP/1.1", *upgrade, "Sec-WebSocket-Version: 13")
    assert status == 400 and json.loads(body)["parameter"] == "Host", (status, body)

    # HTTP/1.0 has no upgrade: an answer in JSON, not a silently closed connection
    status, headers, body = ask("GET /v1/stream HTTP/1.0", host, *upgrade, "Sec-WebSocket-Version: 13")
    err = json.loads(body)
    assert status == 400 and err["error"] == "bad_request" and "HTTP/1.1" in err["message"], (status, body)

    status, headers, rest = ask("GET /v1/stream HTTP/1.1", host, *upgrade, "Sec-WebSocket-Version: 13")
    assert status == 101, (status, rest)
    assert [v for k, v in headers if k == "connection"] == ["Upgrade"], headers
    assert _tokens(headers, "upgrade") == ["websocket"], headers
    assert [v for k, v in headers if k == "sec-websocket-accept"] == [accept], headers

    # two lengths are two readings of where the request ends: refused before any route runs
    status, headers, body = ask("GET /healthz HTTP/1.1", host, "Content-Length: 2", "Content-Length: 7",
                                body=b"{}")
    err = json.loads(body)
    assert status == 400 and err["parameter"] == "Content-Length", (status, body)
    status, headers, body = ask("POST /v1/stream HTTP/1.1", host, "Content-Length: 7", "Content-Length: 2",
                                body=b"{}abcde")
    assert status == 400 and json.loads(body)["parameter"] == "Content-Length", (status, body)
    status, headers, body = ask("GET /healthz HTTP/1.1", host, "Content-Length: 2", "Content-Length: 2",
                                body=b"{}")
    assert status == 200 and json.loads(body) == {"status": "ok"}, (status, body)


def test_connection_limit_closes_with_4029(brokers):
    """Past stream.max_connections a new WebSocket is closed with 4029 right after the upgrade; a slot freed is usable again."""
    b = brokers("limits")                      # stream.max_connections=2
    b.wait_connections(0)
    one, two = Client(b), Client(b)
    try:
        b.wait_connections(2)
        raw = RawWs("127.0.0.1", b.port)
        try:
            assert raw.recv_message(timeout=10) is None
            assert raw.close_frame[0] == 4029, raw.close_frame
        finally:
            raw.close()
        one.close()
        b.wait_connections(1)
        three = Client(b)
        try:
            three.subscribe("x", {})
        finally:
            three.close()
    finally:
        one.close()
        two.close()


def test_connection_limits_fit_the_descriptor_limit_and_every_client_gets_an_answer(kafka, topics, tmp_path):
    """Under ulimit -n 256 the broker lowers its connection limits to fit and logs limits.adjusted; of 400 WebSocket clients at once each upgrades or is refused with 4029 within seconds while /healthz answers; out of descriptors, new clients get 503 at once (counted) and /healthz still answers."""
    b = Broker(kafka, topics["live"], topics["dlq"], "fds", tmp_path,
               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)))
    storms = []
    try:
        m = re.search(r"event=limits\.adjusted nofile=256 .*http\.max_connections=(\d+) "
                      r"http\.max_connections_was=24576 stream\.max_connections=(\d+) "
                      r"stream\.max_connections_was=20000", b.log())
        assert m, b.log_tail()
        http_max, stream_max = int(m.group(1)), int(m.group(2))
        assert 16 <= stream_max < http_max <= 256 - 64, (http_max, stream_max)

        storm = HandshakeStorm("127.0.0.1", b.port, 400)
        storms.append(storm)
        health = []

        def settled():
            storm.step(0.2)
            if not health:        # asked while the 400 are still arriving
                health.append(requests.get(b.url + "healthz", timeout=10).status_code)
            if storm.count("connecting") or storm.count("waiting") or storm.count("open") > stream_max:
                return False
            return storm.count("open") == stream_max and b.metric("firehose_stream_connections") == stream_max
        t0 = time.monotonic()
        wait_for(settled, 60, interval=0, what="400 clients upgraded or refused: %s" % storm.states())
        assert health == [200]
        answers = collections.Counter((c.state, c.status, c.code) for c in storm.clients)
        assert set(answers) <= {("open", 101, None), ("closed", 101, 4029)}, answers
        assert answers[("closed", 101, 4029)] == 400 - stream_max, answers
        sys.stderr.write("\n[fds] http.max_connections=%d stream.max_connections=%d: 400 answered in %.1fs\n"
                         % (http_max, stream_max, time.monotonic() - t0))

        # Now the process runs out of descriptors: its soft limit drops to the lowest descriptor
        # number it does not hold. RLIMIT_NOFILE bounds descriptor numbers, not how many are open,
        # and the storm leaves free numbers below the highest one held (the refused clients' were
        # taken wherever they were free): a limit at the count would leave that many free, and
        # every late client accepted into one, refused with 4029 and closed frees it for the next.
        fds = lambda: frozenset(int(n) for n in os.listdir("/proc/%d/fd" % b.proc.pid))
        last = []
        wait_for(lambda: last.append(fds()) or (len(last) > 3 and len(set(last[-3:])) == 1), 10,
                 interval=0.2, what="the broker's descriptors to settle")
        lowest_free = min(set(range(max(last[-1]) + 2)) - last[-1])
        resource.prlimit(b.proc.pid, resource.RLIMIT_NOFILE, (lowest_free, 256))
        try:
            late = HandshakeStorm("127.0.0.1", b.port, 20)
            storms.append(late)

            def answered():
                late.step(0.2)
                return not (late.count("connecting") or late.count("waiting") or late.count("open"))
            wait_for(answered, 10, interval=0, what="20 clients answered out of descriptors: %s" % late.states())
            status, _, body = http_exchange("127.0.0.1", b.port, ["GET /healthz HTTP/1.1", "Host: x"])
            assert status == 200 and json.loads(body) == {"status": "ok"}, (status, body)
        finally:
            resource.prlimit(b.proc.pid, resource.RLIMIT_NOFILE, (256, 256))
        answers = collections.Counter((c.state, c.status, c.code) for c in late.clients)
        busy = [c for c in late.clients if c.status == 503]
        assert busy and set(answers) <= {("refused", 503, None), ("closed", 101, 4029)}, answers
        assert all(json.loads(c.body)["error"] == "unavailable" for c in busy)
        assert b.metric("firehose_http_refused_total", '{reason="descriptors"}') >= len(busy)
        assert "event=http.descriptors_exhausted" in b.log()
        # descriptors back: the port serves again, the stream still refuses past its limit
        assert requests.get(b.url + "healthz", timeout=10).status_code == 200
        raw = RawWs("127.0.0.1", b.port)
        try:
            assert raw.recv_message(timeout=10) is None and raw.close_frame[0] == 4029, raw.close_frame
        finally:
            raw.close()
    finally:
        for s in storms:
            s.close()
        assert b.stop() == 0, b.log_tail()


# ---- 6. SSE -----------------------------------------------------------------------------------------

def test_sse_filter_earliest_cursor_ids_resume_and_heartbeats(fresh):
    """SSE with curl -N: the query filters, from=earliest replays then goes live, each id is a cursor, Last-Event-ID resumes with exactly the rest, heartbeats are comments."""
    b = fresh("sse")                           # stream.heartbeat_s=1
    query = "branch=main,release&type=build.*,step.finished"
    flt = {"branch": ["main", "release"], "type": ["build.*", "step.finished"]}
    evs = gen_events.generate(2000, seed=606)
    base = b.metric("firehose_stream_events_total")
    b.emit(evs[:1500])
    # "latest" is the next event this broker reads: let it read the history first
    wait_for(lambda: b.metric("firehose_stream_events_total") >= base + 1500, 30, what="1500 events read")
    everything = Sse(b)                        # no filter, from latest
    s1 = Sse(b, query + "&from=earliest")
    s2 = None
    try:
        b.wait_connections(2)
        history = [e for e in b.topics.produced if matches(flt, e)]
        s1.wait_count(len(history))
        base = b.metric("firehose_stream_events_total")
        t_live = time.monotonic()
        b.emit(evs[1500:])
        wait_for(lambda: b.metric("firehose_stream_events_total") >= base + 500, 30, what="500 events read")
        expected = [e for e in b.topics.produced if matches(flt, e)]
        s1.wait(lambda s: len(s.heartbeats_after(t_live)) >= 2, 10, what="2 heartbeats")
        everything.wait(lambda s: len(s.heartbeats_after(t_live)) >= 2, 10, what="2 heartbeats")
        assert ("retry", "2000") in s1.fields
        assert s1.comments[0][1] == "firehose stream", s1.comments[:2]
        problems = exact_problems([s["data"] for s in s1.events], expected, b.topics, "SSE earliest")
        problems += exact_problems([s["data"] for s in everything.events], evs[1500:], b.topics, "SSE all")
        assert not problems, "\n".join(problems)
        for s in s1.events + everything.events:
            assert s["event"] == s["data"]["type"], s
            assert cursor_re(2 * PARTS).match(s.get("id", "")), s.get("id")

        # Last-Event-ID: a browser's EventSource reconnecting after event k gets exactly the rest
        k = len(s1.events) // 3
        t_resume = time.monotonic()
        s2 = Sse(b, query, headers={"Last-Event-ID": s1.events[k]["id"]})
        s2.wait_count(len(s1.events) - k - 1)
        s2.wait(lambda s: len(s.heartbeats_after(t_resume)) >= 2, 10, what="2 heartbeats")
        problems = exact_problems([s["data"] for s in s2.events], [s["data"] for s in s1.events[k + 1:]],
                                  b.topics, "SSE Last-Event-ID")
        assert not problems, "\n".join(problems)
        # a cursor in ?from= works the same way
        s3 = Sse(b, query + "&from=" + s1.events[-2]["id"])
        try:
            got = s3.wait_count(1)
            assert got[0]["data"]["id"] == s1.events[-1]["data"]["id"]
        finally:
            s3.close()
    finally:
        for s in (everything, s1, s2):
            if s:
                s.close()


@pytest.mark.parametrize("query,headers,param", [
    ("colour=red", {}, "colour"),
    ("results=9", {}, "results"),
    ("type=build.nope", {}, "type"),
    ("builderid=twelve", {}, "builderid"),
    ("from=yesterday", {}, "from"),
    ("from=3.0.0.0", {}, "from"),
    ("", {"Last-Event-ID": "not-a-cursor"}, "Last-Event-ID"),
    ("from=1969-12-31T23:59:59.990Z", {}, "from"),     # before Kafka timestamps: once offset 8
])
def test_sse_bad_parameters_get_400_naming_them(brokers, query, headers, param):
    """A bad SSE query parameter or Last-Event-ID gets a 400 JSON error naming it."""
    b = brokers("main")
    # stream=True: a stream wrongly accepted (200) would otherwise be read forever
    with requests.get(b.url + "v1/events" + ("?" + query if query else ""), headers=headers,
                      timeout=5, stream=True) as r:
        assert r.status_code == 400, r.status_code
        body = r.json()
    assert body.get("parameter") == param, body
    assert body.get("error") and body.get("message"), body


# ---- 7. cloudevents.json ----------------------------------------------------------------------------

def test_cloudevents_subprotocol_sends_plain_events_filtered_by_the_url(brokers):
    """Sec-WebSocket-Protocol cloudevents.json: one plain CloudEvent per text frame, byte-for-byte the produced event, filtered by the URL query."""
    b = brokers("main")
    b.wait_connections(0)
    query = "type=build.finished,step.finished&branch=main,try"
    flt = {"type": ["build.finished", "step.finished"], "branch": ["main", "try"]}
    ce = Client(b, query=query, subprotocols=["cloudevents.json"])
    ce_all = Client(b, subprotocols=["cloudevents.json"])
    fh = Client(b, subprotocols=["firehose.v1"])
    try:
        assert ce.ws.subprotocol == "cloudevents.json"
        assert fh.ws.subprotocol == "firehose.v1"
        b.wait_connections(3)                  # both cloudevents.json subscriptions exist
        ce.send('{"op":"subscribe","id":"ignored","filter":{}}')   # client messages are ignored
        evs = gen_events.generate(1000, seed=707)
        base = b.metric("firehose_stream_events_total")
        b.emit(evs)
        settle(b, base + len(evs))
        ce.ws_barrier()
        ce_all.ws_barrier()
        problems = exact_problems(ce.cloudevents(), [e for e in evs if matches(flt, e)], b.topics, "ce filtered")
        problems += exact_problems(ce_all.cloudevents(), evs, b.topics, "ce all")
        assert not problems, "\n".join(problems)
        assert len(ce.cloudevents()) == len(ce.msgs), "cloudevents.json sent something else than events"
        assert all(set(m) >= {"specversion", "id", "source", "type", "time", "data"} for m in ce.cloudevents())
        fh.subscribe("x", {})                  # firehose.v1 is the default protocol by name
    finally:
        for c in (ce, ce_all, fh):
            c.close()
    st, body = ws_status(b, query="colour=red", subprotocols=["cloudevents.json"])
    assert st == 400 and json.loads(body)["parameter"] == "colour", (st, body)


# ---- 8. metrics -------------------------------------------------------------------------------------

def test_metrics_count_deliveries_connections_and_disconnects(brokers):
    """/metrics: firehose_stream_deliveries_total grows by exactly what subscribers received; connections and disconnects by reason move."""
    b = brokers("main")
    b.wait_connections(0)
    m0 = b.metrics()
    for name in ("firehose_stream_events_total", "firehose_stream_deliveries_total", "firehose_stream_connections",
                 "firehose_stream_queued_bytes", "firehose_stream_ring_events", "firehose_stream_ring_bytes",
                 "firehose_stream_catchups_total", "firehose_stream_holds_total",
                 "firehose_stream_held_milliseconds_total"):
        assert (name, "") in m0, "no %s in /metrics" % name
    for reason in ("slow_consumer", "other"):
        assert ("firehose_stream_disconnects_total", '{reason="%s"}' % reason) in m0
    c = Client(b)
    try:
        c.subscribe("a", {"type": "build.finished"})
        c.subscribe("b", {"builder": "chromium-*"})
        b.wait_connections(1)
        evs = gen_events.generate(500, seed=808)
        base = m0[("firehose_stream_events_total", "")]
        b.emit(evs)
        settle(b, base + len(evs), [c])
        m1 = b.metrics()
        assert m1[("firehose_stream_events_total", "")] - base == len(evs)
        received = len(c.events())
        assert received > 0
        assert m1[("firehose_stream_deliveries_total", "")] - m0[("firehose_stream_deliveries_total", "")] == received
        assert m1[("firehose_stream_ring_events", "")] >= min(len(evs), 200000)
        # every event's record is held whole, so the ring costs at least the records' bytes
        record_bytes = sum(len(json.dumps(e, separators=(",", ":"))) for e in evs)
        assert m1[("firehose_stream_ring_bytes", "")] >= record_bytes
        assert sum(v for (n, _), v in m1.items() if n == "firehose_events_in_total") >= len(evs)
        raw = RawWs("127.0.0.1", b.port)
        raw.send_frame(OP_BINARY, b"x")
        raw.read_until_close(10)
        raw.close()
        wait_for(lambda: b.metric("firehose_stream_disconnects_total", '{reason="other"}')
                 == m0[("firehose_stream_disconnects_total", '{reason="other"}')] + 1, 5, what="disconnect counted")
    finally:
        c.close()
    b.wait_connections(0)


STAGES = ("firehose_stream_kafka_delay_seconds", "firehose_stream_route_delay_seconds",
          "firehose_stream_write_delay_seconds", "firehose_stream_delivery_delay_seconds")


def histograms(b):
    """{name: (buckets [(le, cumulative count)], sum, count)} of the stage histograms on /metrics,
    after checking each is declared a histogram."""
    text = requests.get(b.url + "metrics", timeout=5).text
    out = {}
    for name in STAGES:
        assert "# TYPE %s histogram\n" % name in text, "%s is not a histogram on /metrics" % name
        buckets = [(float(le), float(v)) for le, v in
                   re.findall(r'^%s_bucket\{le="([^"]+)"\} (\S+)$' % name, text, re.M)]
        s = re.search(r"^%s_sum (\S+)$" % name, text, re.M)
        n = re.search(r"^%s_count (\S+)$" % name, text, re.M)
        assert buckets and s and n, "%s lacks its buckets, sum or count" % name
        out[name] = (buckets, float(s.group(1)), float(n.group(1)))
    return out


def test_metrics_stage_histograms_count_each_live_delivery(brokers):
    """/metrics has one histogram per stage of a live delivery (Kafka timestamp to taken, taken to queued, queued to written, and timestamp to written): the first counts every record the stream reads, the others every live delivery, WebSocket and SSE; a replay counts in none of them."""
    b = brokers("sse")
    b.wait_connections(0)
    h0 = histograms(b)
    n0 = b.metric("firehose_stream_events_total")
    c = Client(b)
    s = Sse(b, "type=step.started")
    try:
        c.subscribe("all", {})
        c.subscribe("fin", {"type": "step.started"})
        s.wait(lambda x: x.comments, 10, what="the opening comment")
        b.wait_connections(2)
        evs = gen_events.generate(300, seed=909)
        b.emit(evs)
        settle(b, n0 + len(evs), [c])
        fin = sum(1 for e in evs if e["type"] == "step.started")
        assert fin > 0
        s.wait_count(fin)
        ws_got = len(c.events())
        assert ws_got == len(evs) + fin, (ws_got, len(evs), fin)
        live = ws_got + fin

        def grown():
            h = histograms(b)
            return h if all(h[n][2] - h0[n][2] == (len(evs) if n == STAGES[0] else live)
                            for n in STAGES) else None
        h1 = wait_for(grown, 10, what="each stage to count %d records and %d deliveries" % (len(evs), live))
        for name, (buckets, total, count) in h1.items():
            les = [le for le, _ in buckets]
            counts = [v for _, v in buckets]
            assert les == sorted(les) and les[-1] == float("inf"), (name, les)
            assert counts == sorted(counts), "%s: buckets not cumulative: %s" % (name, counts)
            assert counts[-1] == count, "%s: +Inf %s, count %s" % (name, counts[-1], count)
            assert total > h0[name][1], "%s: its sum did not grow" % name
        # a replay of the same events is not a live delivery: no stage counts it
        r = Client(b)
        try:
            r.subscribe("again", {}, frm="earliest")
            ids = {e["id"] for e in evs}
            wait_for(lambda: ids <= {m["event"]["id"] for m in r.events("again")}, 60, what="the replay")
            r.barrier()
        finally:
            r.close()
        assert {n: v[2] for n, v in histograms(b).items()} == {n: v[2] for n, v in h1.items()}
    finally:
        c.close()
        s.close()
    b.wait_connections(0)


# ---- many partitions --------------------------------------------------------------------------------

def test_long_cursors_with_many_partitions(fresh):
    """With 200 partitions a cursor is over 400 characters: SSE ids and WebSocket cursors carry it whole, and resuming from it works."""
    b = fresh("wide")
    b.wait_connections(0)
    c = Client(b)
    sse = Sse(b)
    try:
        c.subscribe("all", {})
        b.wait_connections(2)
        evs = gen_events.generate(300, seed=909)
        base = b.metric("firehose_stream_events_total")
        b.emit(evs)
        settle(b, base + len(evs), [c])
        sse.wait_count(len(c.events("all")), idle=3)
        cur = {m["event"]["id"]: m["cursor"] for m in c.events("all")}
        assert all(cursor_re(2 * WIDE_PARTS).match(v) for v in cur.values()), list(cur.values())[:1]
        assert len(next(iter(cur.values()))) > 400
        bad = [((s["data"] or {}).get("id"), s.get("id", "")[:60] + "...") for s in sse.events
               if not isinstance(s["data"], dict) or s.get("id") != cur.get(s["data"].get("id"))]
        assert not bad, "%d SSE ids are not the event's cursor, e.g. %s" % (len(bad), bad[:2])
        # resume (replayed from the ring: per-subscriber cursors, too long for the inline head)
        k = len(c.events("all")) // 2
        again = Client(b)
        try:
            again.subscribe("r", {}, {"cursor": c.events("all")[k]["cursor"]})
            want = [m["event"] for m in c.events("all")[k + 1:]]
            again.wait_events("r", len(want))
            again.barrier()
            problems = exact_problems([m["event"] for m in again.events("r")], want, b.topics, "wide resume")
            assert not problems, "\n".join(problems)
            assert all(cursor_re(2 * WIDE_PARTS).match(m["cursor"]) for m in again.events("r"))
        finally:
            again.close()
    finally:
        c.close()
        sse.close()


def test_cursors_of_1024_partitions_per_topic(kafka, topics, tmp_path):
    """With 1024 partitions per topic a cursor holds 2048 offsets, past the 1400 bytes the stream's cursor buffers once had: subscribed, every event and every SSE id carry it whole, resuming from one over WebSocket and SSE works, and a 16 KiB cursor fits an SSE request."""
    huge = TopicSet(topics["dlq"][:-len(".dlq")], "huge", HUGE_PARTS)
    kafka.create_topics(huge.specs())
    wait_topics(kafka.bootstrap, huge.specs(), timeout=180)
    # Right after 2048 partitions are created the stream's start-up watermark query can still meet
    # "Not leader for partition" (fatal to the broker: it does not retry); start again then.
    for attempt in range(5):
        try:
            b = Broker(kafka, huge, topics["dlq"], "huge-%d" % attempt, tmp_path)
            break
        except AssertionError as e:
            if "Not leader" not in str(e) or attempt == 4:
                raise
            time.sleep(2)
    c = Client(b)
    sses = []
    try:
        first = c.subscribe("all", {})["cursor"]
        assert cursor_re(2 * HUGE_PARTS).match(first), first[:80] + "..."
        sses.append(Sse(b))
        b.wait_connections(2)
        evs = gen_events.generate(300, seed=929)
        base = b.metric("firehose_stream_events_total")
        b.emit(evs)
        settle(b, base + len(evs), [c])
        got = c.events("all")
        problems = exact_problems([m["event"] for m in got], evs, b.topics, "huge live")
        assert not problems, "\n".join(problems)
        assert all(cursor_re(2 * HUGE_PARTS).match(m["cursor"]) for m in got), got[0]["cursor"][:80]
        assert len(got[-1]["cursor"]) > 4096
        cur = {m["event"]["id"]: m["cursor"] for m in got}
        sse = sses[0].wait_count(len(got), idle=5)
        bad = [(s["data"] or {}).get("id") for s in sse
               if not isinstance(s["data"], dict) or s.get("id") != cur.get(s["data"].get("id"))]
        assert not bad, "%d SSE ids are not the event's cursor, e.g. %s" % (len(bad), bad[:2])
        # resume after event k: over WebSocket (a replay from the ring, per-subscriber cursors)
        k = len(got) // 2
        want = [m["event"] for m in got[k + 1:]]
        subscribed, problems = resume_problems(b, "r", got[k]["cursor"], want, "huge resume")
        assert subscribed["cursor"] == got[k]["cursor"]
        assert not problems, "\n".join(problems)
        # and over SSE, with the cursor in Last-Event-ID
        sses.append(Sse(b, headers={"Last-Event-ID": got[k]["cursor"]}))
        resumed = sses[-1].wait_count(len(want), idle=5)
        problems = exact_problems([s["data"] for s in resumed], want, b.topics, "huge SSE resume")
        assert not problems, "\n".join(problems)
        # offsets of 7 base-36 digits (below 36^7, 78 billion): 8 bytes a partition, 16 KiB in all
        big = "%d." % (2 * HUGE_PARTS) + ".".join(["zzzzzzz"] * (2 * HUGE_PARTS))
        assert len(big) > 16000
        sses.append(Sse(b, headers={"Last-Event-ID": big}))
        sses[-1].wait(lambda s: ("firehose stream" in [t for _, t in s.comments]) or None,
                      what="the stream's opening comment for a 16 KiB cursor")
    finally:
        c.close()
        for s in sses:
            s.close()
        b.stop()


# ---- retention and shutdown -------------------------------------------------------------------------

def _delete_all_records(kafka, topics, tmp):
    """Kafka DeleteRecords up to the high watermark of every partition (what retention does)."""
    spec = {"version": 1, "partitions": [{"topic": t, "partition": p, "offset": -1}
                                         for t in (topics.events, topics.logs) for p in range(topics.partitions)]}
    f = tmp / ("delete-%s.json" % uuid.uuid4().hex[:6])
    f.write_text(json.dumps(spec))
    lib = ROOT / "tests" / "kafka" / "lib"
    r = subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1",
                        "-Dlog4j.configuration=file:%s" % (ROOT / "tests" / "kafka" / "tools-log4j.properties"),
                        "-cp", str(lib / "*"), "org.apache.kafka.tools.DeleteRecordsCommand",
                        "--bootstrap-server", kafka.bootstrap, "--offset-json-file", str(f)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def expired_cursor(kafka, topics, tokens_file, tmp_path_factory):
    """(broker, cursor): a broker with a ring of 100 events on its own topics, and a cursor whose
    events Kafka no longer has (DeleteRecords up to the end, as retention would)."""
    if not (ROOT / "tests" / "kafka" / "lib").is_dir():
        pytest.skip("needs Kafka's tools (tests/kafka/lib) for DeleteRecords")
    tmp = tmp_path_factory.mktemp("stream-expired")
    b = Broker(kafka, topics["expire"], topics["dlq"], "expired", tmp, ["--stream.ring_events=100"])
    try:
        c = Client(b)
        cur = c.subscribe("all", {})["cursor"]
        c.close()
        b.emit(gen_events.generate(300, seed=919))
        _delete_all_records(kafka, b.topics, tmp)
        yield b, cur
    finally:
        b.stop()


def test_expired_cursor_gets_cursor_expired_and_the_earliest_position(expired_cursor):
    """A cursor older than what Kafka keeps gets error cursor_expired naming the earliest cursor, which then works."""
    b, cur = expired_cursor
    c = Client(b)
    try:
        err = c.request({"op": "subscribe", "id": "old", "filter": {}, "from": {"cursor": cur}}, "old")
        assert err["op"] == "subscribed" and err["cursor"] == cur, err     # accepted, checked against Kafka later
        err = c.wait(lambda ms: [m for m in ms if m.get("op") == "error"], 30, what="an error")[0]
        assert err["code"] == "cursor_expired" and err["id"] == "old", err
        m = re.search(r"earliest position is cursor (\S+)", err["message"])
        assert m and cursor_re(2 * PARTS).match(m.group(1)), err
        earliest = m.group(1)
        assert earliest != cur
        # the subscription is gone (the id is free again) and the earliest cursor is accepted
        r = c.subscribe("old", {}, {"cursor": earliest})
        assert r["cursor"] == earliest
        c.barrier()
        assert c.close_code is None
    finally:
        c.close()


def test_expired_cursor_over_sse_says_why_the_stream_ends(expired_cursor):
    """Over SSE an expired Last-Event-ID gets an `event: error` with code cursor_expired before the stream ends (an EventSource would otherwise retry it forever)."""
    b, cur = expired_cursor
    sse = Sse(b, headers={"Last-Event-ID": cur})
    try:
        sse.wait(lambda s: s.done or s.events, 30, what="the SSE stream to end or say something")
        assert sse.events and sse.events[0].get("event") == "error", (
            "the SSE stream ended without an error event (events: %s)" % sse.events[:1])
        assert sse.events[0]["data"]["code"] == "cursor_expired", sse.events[0]
    finally:
        sse.close()


def test_shutdown_closes_clients_with_1001(kafka, topics, tmp_path):
    """On SIGTERM the broker closes WebSocket clients with 1001, ends SSE streams, and exits 0."""
    b = Broker(kafka, topics["live"], topics["dlq"], "shutdown", tmp_path)
    try:
        c = Client(b)
        c.subscribe("all", {})
        sse = Sse(b)
        b.wait_connections(2)
        rc = b.stop()
        assert c.wait_closed(10) == 1001, (c.close_code, c.close_reason)
        sse.wait(lambda s: s.done, 10, what="curl to see the end of the stream")
        assert rc == 0, b.log_tail()
        sse.close()
        c.close()
    finally:
        b.stop()
