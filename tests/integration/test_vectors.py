"""Shared test vectors (tests/vectors/buildbot/): where the Buildbot integration, firehose-emit and
the broker's HttpStatusPush ingest all apply, they make the same event for the same input.

Why: three producers write the one contract (two in C, one in Python). Each vector holds Buildbot
queue messages (and, where the stock reporter sees the same build, its HttpStatusPush posts) and
the contract events they stand for, byte for byte. Here every expected event validates against
schemas/ (Python jsonschema and the C validator); the integration's event-building code, fed the
messages in-process, writes exactly those bytes; on real Kafka firehose-emit (fed the expected
events) and the integration's producer (fed the messages) put them on the same topic, key and
partition with the same bytes and headers; and the broker turns the posts into the same events.
tests/vectors/README.md describes the format and what is normalised (statuspush's id, time, seq).

Run: python3 -m pytest -q -p no:cacheprovider tests/integration/test_vectors.py
"""

import contextlib
import datetime
import json
import subprocess
import time
import uuid

import pytest
import requests

pytest.importorskip("buildbot")
pytest.importorskip("confluent_kafka")

from bb_fake import feed, make_service, stop_service, svcmod  # noqa: E402
from conftest import BIN, ROOT  # noqa: E402
from firehose_buildbot.sink import KafkaSink  # noqa: E402
from gen_events import kafka_key, topic_for  # noqa: E402
from kafka_reader import TopicReader  # noqa: E402
from test_schemas import EVENT_VALIDATOR  # noqa: E402
from view_helpers import Broker  # noqa: E402

VECTORS = sorted((ROOT / "tests" / "vectors" / "buildbot").glob("*.json"))
ADMIN = "vectors-admin-token-0123456789"
NORMALISED = ("id", "time", "seq")     # statuspush makes these itself (README: "Normalised")
PARTITIONS = 3


def _decode(x):
    """{"$dt": epoch} -> the aware datetime Buildbot's data layer puts in messages; the rest as is."""
    if isinstance(x, dict):
        if set(x) == {"$dt"}:
            return datetime.datetime.fromtimestamp(x["$dt"], datetime.timezone.utc)
        return {k: _decode(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_decode(v) for v in x]
    return x


def load(path):
    v = json.loads(path.read_text(encoding="utf-8"))
    v["name"] = path.stem
    v["mq"] = _decode(v["mq"])
    v["data_api"] = _decode(v.get("data_api", {}))
    return v


def line(event):
    """The vector's byte form of an event (README: "Bytes")."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def canonical(event):
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


ALL = [load(p) for p in VECTORS]
IDS = [v["name"] for v in ALL]


class _Clock:
    """Stands in for the time module inside the service: time() is the vector's clock."""

    def __init__(self, iso):
        self.now = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        self.monotonic = time.monotonic

    def time(self):
        return self.now


@contextlib.contextmanager
def integration(v, sink=None, **opts):
    """A FirehoseService on a fake master holding the vector's data API rows and log lines, with the
    vector's master name, first seq and clock; yields (service, master) after every message."""
    real_time = svcmod.time
    svcmod.time = _Clock(v["clock"])
    try:
        svc, m = make_service(sink=sink, seq=v["seq"], master_name=v["master"], **opts)
        m.data.store.update({tuple(k.split("/")): row for k, row in v["data_api"].items()})
        m.db.logs.lines.update({int(k): lines for k, lines in v.get("log_lines", {}).items()})
        for item in v["mq"]:
            if "advance" in item:
                m.reactor.advance(item["advance"])
                m.reactor.advance(0)
            elif "stop" in item:
                assert stop_service(svc, m).called, "stopService did not finish"
            else:
                feed(svc, m, tuple(item["key"]), item["msg"])
        m.reactor.advance(5)                # timers still due (a log flush) find nothing left
        m.reactor.advance(0)
        assert not svc.counters["errors"], svc.counters
        yield svc, m
    finally:
        svcmod.time = real_time


# ---------------------------------------------------------------- the vectors themselves


def test_vectors_cover_every_type_and_the_statuspush_posts():
    # the vectors are what masters send; the derived types come from the broker's view alone
    from test_schemas import DERIVED_TYPES
    types = {e["event"]["type"] for v in ALL for e in v["events"]}
    schema_types = set(json.loads((ROOT / "schemas" / "envelope.schema.json").read_text())["properties"]["type"]["enum"])
    assert types == schema_types - DERIVED_TYPES, sorted(schema_types - DERIVED_TYPES - types)
    assert not types & DERIVED_TYPES
    assert sum(len(v.get("statuspush", {}).get("posts", [])) for v in ALL) >= 4


@pytest.mark.parametrize("v", ALL, ids=IDS)
def test_vector_events_are_valid_and_routed_as_the_contract_says(v):
    problems = []
    for i, e in enumerate(v["events"]):
        ev = e["event"]
        for err in EVENT_VALIDATOR.iter_errors(ev):
            problems.append("event %d (%s): %s: %s" % (i, ev["type"], err.json_path, err.message[:200]))
        if e["key"] != kafka_key(ev):
            problems.append("event %d (%s): key %r, the contract says %r" % (i, ev["type"], e["key"], kafka_key(ev)))
        want = topic_for(ev, "events", "logs")
        if e["topic"] != want:
            problems.append("event %d (%s): topic %s, the contract says %s" % (i, ev["type"], e["topic"], want))
        if (ev["seq"], ev["id"], ev["time"], ev["master"]) != (v["seq"] + i, "%s-%d" % (v["master"], v["seq"] + i),
                                                               v["clock"], v["master"]):
            problems.append("event %d: seq/id/time/master %r do not follow the vector's" % (i, ev["seq"]))
    for s in v.get("statuspush", {}).get("events", []):
        idx = [s["like"]] if "like" in s else s["merge"]
        if not all(0 <= i < len(v["events"]) for i in idx):
            problems.append("statuspush %r names an event the vector does not have" % s)
    assert not problems, "\n".join(problems)


def test_the_c_validator_accepts_every_vector_event(tmp_path):
    nd = tmp_path / "all.ndjson"
    nd.write_bytes(b"".join(line(e["event"]) + b"\n" for v in ALL for e in v["events"]))
    p = subprocess.run([str(BIN / "firehose-emit"), "--dry-run", str(nd)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    n = sum(len(v["events"]) for v in ALL)
    assert p.returncode == 0 and "valid=%d rejected=0" % n in p.stderr, p.stderr


# ---------------------------------------------------------------- (a) the integration, in-process


@pytest.mark.parametrize("v", ALL, ids=IDS)
def test_integration_builds_exactly_the_vector_events(v):
    with integration(v) as (svc, m):
        got = [(t, k.decode(), b) for t, k, b in svc.sink.raw]
    want = [("firehose." + e["topic"], e["key"], line(e["event"])) for e in v["events"]]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, "event %d differs:\n got  %s %s %s\n want %s %s %s" % (
            i, g[0], g[1], g[2].decode(), w[0], w[1], w[2].decode())
    assert len(got) == len(want), "got %d events, want %d; extra or missing: %s" % (
        len(got), len(want), [x[2][:120] for x in (got[len(want):] or want[len(got):])])


# ---------------------------------------------------------------- (b) both producers on real Kafka


@pytest.fixture(scope="module")
def on_kafka(kafka, tmp_path_factory):
    """firehose-emit produces every expected event, then the integration's producer the same
    vectors from their messages, onto the same topics; yields both sets of records."""
    tmp = tmp_path_factory.mktemp("vectors")
    run = uuid.uuid4().hex[:8]
    topics = {k: "vec-%s-%s" % (run, k) for k in ("events", "logs", "dlq")}
    kafka.create_topics({topics["events"]: PARTITIONS, topics["logs"]: PARTITIONS, topics["dlq"]: 1})
    reader = TopicReader(kafka.bootstrap, [topics["events"], topics["logs"]])
    expected = [e for v in ALL for e in v["events"]]

    nd = tmp / "expected.ndjson"
    nd.write_bytes(b"".join(line(e["event"]) + b"\n" for e in expected))
    p = subprocess.run([str(BIN / "firehose-emit"), "--brokers", kafka.bootstrap, "--topic-events",
                        topics["events"], "--topic-logs", topics["logs"], "--topic-dlq", topics["dlq"], str(nd)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    emit = _read_new(reader, len(expected))

    sink = {}

    def shared_sink(conf):
        if "s" not in sink:
            sink["s"] = KafkaSink(conf, lambda *a: None)
        return sink["s"]

    for v in ALL:
        with integration(v, sink=shared_sink, brokers=kafka.bootstrap, topic_events=topics["events"],
                         topic_logs=topics["logs"]):
            pass
    s = sink["s"]
    assert s.flush(60) == 0 and s.dropped == 0, (s.dropped, s.last_error)
    produced = _read_new(reader, len(expected))
    yield {"topics": topics, "emit": emit, "integration": produced, "expected": expected, "reader": reader,
           "tmp": tmp}
    reader.close()
    s.producer = None             # destroyed now, not after the session's Kafka has gone


def _read_new(reader, n, timeout=60):
    start = len(reader.records)
    deadline = time.monotonic() + timeout
    while len(reader.records) - start < n and time.monotonic() < deadline:
        reader.read(timeout=2)
    new = reader.records[start:]
    assert len(new) == n, "read %d records, want %d" % (len(new), n)
    return new


def _by_partition(records):
    out = {}
    for r in sorted(records, key=lambda r: (r["topic"], r["partition"], r["offset"])):
        out.setdefault((r["topic"], r["partition"]), []).append((r["key"], r["value"], r["headers"]))
    return out


def test_emit_and_the_integration_put_the_same_records_on_kafka(on_kafka):
    emit, produced, topics = on_kafka["emit"], on_kafka["integration"], on_kafka["topics"]
    # Every expected event once from each producer, on its topic under its key ...
    for who, recs in (("firehose-emit", emit), ("integration", produced)):
        got = sorted((r["topic"], r["key"], r["value"]) for r in recs)
        want = sorted((topics[e["topic"]], e["key"], line(e["event"])) for e in on_kafka["expected"])
        assert got == want, "%s: records differ from the vectors' events" % who
        for r in recs:
            assert r["headers"] == [("content-type", b"application/cloudevents+json")], (who, r["headers"])
    # ... and partition by partition, the same records in the same order: same partition per key,
    # the same bytes and headers.
    a, b = _by_partition(emit), _by_partition(produced)
    assert a.keys() == b.keys()
    for tp in a:
        assert a[tp] == b[tp], "%s partition %d: firehose-emit and the integration differ" % tp


# ---------------------------------------------------------------- the broker's HttpStatusPush ingest


def _expected_statuspush(v, spec):
    """The vector event a statuspush event must equal: one event as it is, or the last of several
    property.set events with their properties merged (consumers merge them, docs/events.md)."""
    if "like" in spec:
        return v["events"][spec["like"]]
    events = [v["events"][i] for i in spec["merge"]]
    merged = json.loads(json.dumps(events[-1]))
    props = {}
    for e in events:
        props.update(e["event"]["data"]["properties"])
    merged["event"]["data"]["properties"] = props
    return merged


def test_statuspush_posts_make_the_same_events(kafka, on_kafka):
    topics, tmp = on_kafka["topics"], on_kafka["tmp"]
    where = {}                                   # expected bytes -> the emit record's partition
    for r in on_kafka["emit"]:
        where[(r["topic"], r["key"], r["value"])] = r["partition"]
    b = Broker(kafka, topics, tmp / "view.db", tmp / "broker.log", extra=["--auth.admin_token", ADMIN]).start()
    try:
        cases = []
        for v in ALL:
            sp = v.get("statuspush")
            if not sp:
                continue
            ids = []
            for body in sp["posts"]:
                r = requests.post(b.url + "api/v1/ingest/buildbot", params={"master": v["master"]},
                                  data=json.dumps(body), headers={"Authorization": "Bearer " + ADMIN}, timeout=30)
                assert r.status_code == 202, (v["name"], r.status_code, r.text)
                ids += r.json()["ids"]
            assert len(ids) == len(sp["events"]), (v["name"], ids)
            cases.append((v, ids))
        new = _read_new(on_kafka["reader"], sum(len(ids) for _, ids in cases))
    finally:
        b.stop()
    by_id = {r["event"]["id"]: r for r in new}
    problems = []
    for v, ids in cases:
        last = -1
        for eid, spec in zip(ids, v["statuspush"]["events"]):
            r, want = by_id[eid], _expected_statuspush(v, spec)
            got = dict(r["event"], **{k: want["event"][k] for k in NORMALISED})
            if canonical(got) != canonical(want["event"]):
                problems.append("%s %s:\n got  %s\n want %s" % (v["name"], eid, canonical(got),
                                                                canonical(want["event"])))
            if (r["topic"], r["key"]) != (topics[want["topic"]], want["key"]):
                problems.append("%s %s: on %s key %s, want %s key %s" % (v["name"], eid, r["topic"], r["key"],
                                                                          topics[want["topic"]], want["key"]))
            pos = max([spec["like"]] if "like" in spec else spec["merge"])
            part = where.get((topics[want["topic"]], want["key"], line(v["events"][pos]["event"])))
            if r["partition"] != part:
                problems.append("%s %s: partition %d, firehose-emit's %s" % (v["name"], eid, r["partition"], part))
            if pos < last:
                problems.append("%s %s: out of the integration's order" % (v["name"], eid))
            last = pos
            if r["headers"] != [("content-type", b"application/cloudevents+json")]:
                problems.append("%s %s: headers %r" % (v["name"], eid, r["headers"]))
    assert not problems, "\n".join(problems)
