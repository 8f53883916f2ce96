"""Hostile input, end to end on real Kafka: numbers at and past the contract's int64 bounds, and
request paths and queries holding %00 or bytes that are not UTF-8.

Every integer the contract defines is at most 2^63 - 1, what the view stores: a record past that
is dead-lettered by the broker's ingest consumer (header firehose-error naming the member) instead
of passing and then being skipped by the view; one at exactly 2^63 - 1 is stored. Every answer is
valid UTF-8 JSON whatever the request held; a NUL or invalid UTF-8 in a parameter or the path is a
400 naming it, never a value cut short at the NUL.
"""

import json
import socket
import time
import uuid

import confluent_kafka
import pytest

from conftest import wait_for
from kafka_reader import TopicReader
from view_helpers import Broker, rfc3339

INT64_MAX = 2**63 - 1
PARTS = 2


def topics_for(kafka):
    p = "hi-%s" % uuid.uuid4().hex[:8]
    t = {"events": p + ".events", "logs": p + ".logs", "dlq": p + ".dlq"}
    kafka.create_topics({t["events"]: PARTS, t["logs"]: PARTS, t["dlq"]: 1})
    return t


def event(n, type_, data, t0):
    return {"specversion": "1.0", "id": "hostile-%d" % n, "source": "buildbot://m1", "type": type_,
            "time": rfc3339(t0 + n), "datacontenttype": "application/json", "master": "m1", "seq": n,
            "data": data}


def ctx(brid, buildid):
    return {"buildrequestid": brid, "buildid": buildid, "builder": "linux", "builderid": 1,
            "branch": "trunk", "revision": "", "repository": "https://git.example.org/r.git",
            "project": "", "codebase": "", "owner": ""}


def started(n, brid, buildid, t0):
    return json.dumps(event(n, "build.started", dict(ctx(brid, buildid), number=1, worker="w1",
                                                     started_at=t0 + n), t0))


def finished(n, brid, buildid, t0, number, extra=""):
    """A build.finished whose "number" member is the literal text `number` (JSON can say more
    than Python's json module would write, e.g. 18446744073709551616 or 1e3)."""
    d = dict(ctx(brid, buildid), number=0, complete_at=t0 + n, results=0, state_string="ok",
             duration_s=1)
    text = json.dumps(event(n, "build.finished", d, t0))
    return text.replace('"number": 0', '"number": %s%s' % (number, extra), 1)


@pytest.fixture(scope="module")
def hostile(kafka, tmp_path_factory):
    """A broker on fresh topics that already hold the records below: (broker, topics)."""
    tmp = tmp_path_factory.mktemp("hostile")
    topics = topics_for(kafka)
    t0 = int(time.time()) - 600
    records = [
        started(1, 701, 9001, t0),
        finished(2, 701, 9001, t0, "18446744073709551616"),      # 2^64: refused, stays running
        started(3, 702, 9002, t0),
        finished(4, 702, 9002, t0, str(INT64_MAX)),             # the largest valid number
        started(5, 703, 9003, t0),
        # 1e3 is an integer to JSON Schema, and an extra member may hold any number at all
        finished(6, 703, 9003, t0, "1e3", ', "extra": 18446744073709551616'),
    ]
    p = confluent_kafka.Producer({"bootstrap.servers": kafka.bootstrap})
    for i, r in enumerate(records):
        p.produce(topics["events"], r.encode(), key=b"buildrequest/%d" % (701 + i // 2))
    assert p.flush(30) == 0
    b = Broker(kafka, topics, tmp / "view.db", tmp / "broker.log").start()
    try:
        b.wait_applied(len(records))
        yield b, topics
    finally:
        rc = b.stop()
        assert rc == 0, b.log()[-3000:]


def metric(b, name):
    for line in b.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_a_number_past_int64_is_dead_lettered_naming_the_member(hostile, kafka):
    b, topics = hostile
    reader = TopicReader(kafka.bootstrap, [topics["dlq"]])
    try:
        recs = wait_for(lambda: reader.read() or reader.records, 30, what="the dead letter")
        assert len(recs) == 1, [r["value"][:200] for r in recs]
        assert recs[0]["event"]["id"] == "hostile-2"
        h = dict(recs[0]["headers"])
        assert h["firehose-error"] == b"data.number: must be <= 9223372036854775807"
        assert h["firehose-source-topic"] == topics["events"].encode()
        assert "firehose-consumer" not in h, "the ingest consumer's dead letters name no consumer"
    finally:
        reader.close()
    assert metric(b, "firehose_dlq_total") == 1
    # The view counts the record it cannot use (the ingest consumer dead-lettered it) ...
    assert metric(b, "firehose_view_invalid_total") == 1
    # ... and the build it would have finished is still running, as its master last said.
    running = [x["buildid"] for x in b.json("/api/v1/running")["running"]]
    assert running == [9001]


def test_a_number_at_int64_max_is_stored_exactly(hostile):
    b, _ = hostile
    build = b.json("/api/v1/builds/9002")["build"]
    assert build["number"] == INT64_MAX and build["results"] == 0
    assert build["finished"] is True


def test_integral_reals_and_big_extra_members_are_stored(hostile):
    b, _ = hostile
    build = b.json("/api/v1/builds/9003")["build"]
    assert build["number"] == 1000 and build["finished"] is True
    assert 9003 not in [x["buildid"] for x in b.json("/api/v1/running")["running"]]


# ---- requests holding NUL and bytes that are not UTF-8 -----------------------------------------

def raw_get(b, target, method="GET"):
    """Sends the request target byte for byte (no client re-encoding); returns (status, body)."""
    host, port = b.url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                  % (method.encode(), target))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, body


def json_answer(body):
    """The body as JSON, insisting on strict UTF-8 (json.loads alone would take lone surrogates)."""
    return json.loads(body.decode("utf-8", errors="strict"))


@pytest.mark.parametrize("target, param", [
    (b"/api/v1/last-green?branch=%ff", "branch"),
    (b"/api/v1/last-green?branch=a%00b&repository=x", "branch"),
    (b"/api/v1/pending?limit=1%00", "limit"),
    (b"/api/v1/revisions?branch=trunk&repository=%c3", "repository"),
    (b"/api/v1/stats/steps?builder=%ed%a0%80", "builder"),          # an encoded surrogate
    (b"/api/v1/builds?owner=%c0%af", "owner"),                       # an overlong '/'
])
def test_nul_or_bad_utf8_in_a_value_is_a_400_naming_the_parameter(hostile, target, param):
    status, body = raw_get(hostile[0], target)
    a = json_answer(body)
    assert status == 400 and a["error"] == "bad_parameter" and a["parameter"] == param, body


def test_a_parameter_name_that_is_not_text_is_named_in_valid_json(hostile):
    b = hostile[0]
    status, body = raw_get(b, b"/api/v1/pending?%ff%fe=1")
    a = json_answer(body)
    assert status == 400 and a["parameter"] == "\ufffd\ufffd", body
    status, body = raw_get(b, b"/api/v1/pending?li%00mit=1")
    a = json_answer(body)
    assert status == 400 and a["parameter"] == "li\x00mit", body
    status, body = raw_get(b, b"/api/v1/pending?caf%c3%a9=1")            # valid, but unknown
    a = json_answer(body)
    assert status == 400 and a["error"] == "unknown_parameter" and a["parameter"] == "caf\u00e9"


def test_a_nul_in_the_path_never_serves_what_precedes_it(hostile):
    b = hostile[0]
    status, body = raw_get(b, b"/index.html")
    assert status == 200 and b"<html" in body.lower()
    for target in (b"/index.html%00.js", b"/api/v1/builds/9002%00", b"/%00"):
        status, body = raw_get(b, target)
        a = json_answer(body)
        assert status == 400 and a["error"] == "bad_path", (target, body)


def test_a_path_that_is_not_utf8_gets_valid_json(hostile):
    b = hostile[0]
    status, body = raw_get(b, b"/nope%ff%c3")
    assert status == 400 and json_answer(body)["error"] == "bad_path"
    # A valid path longer than the 404 message quotes is cut between characters, not inside one.
    status, body = raw_get(b, b"/x" + b"%c3%a9" * 150)
    a = json_answer(body)
    assert status == 404 and "\ufffd" not in a["message"] and a["message"].endswith("\u00e9"), a


def test_statuspush_master_with_a_nul_is_refused_not_cut(hostile):
    status, body = raw_get(hostile[0], b"/api/v1/ingest/buildbot?master=a%00b", method="POST")
    a = json_answer(body)
    assert status == 400 and a["parameter"] == "master", body


def test_answers_that_quote_long_multibyte_values_stay_valid_utf8(hostile):
    b = hostile[0]
    # 510 bytes of two-byte characters: within the 512-byte parameter limit, and long enough that
    # the last-green reason quoting it is cut by its buffer.
    branch = b"%c3%a9" * 255
    for target in (b"/api/v1/last-green?repository=r&branch=" + branch,
                   b"/api/v1/revisions?repository=r&branch=" + branch,
                   b"/api/v1/stats/builds?builder=" + branch):
        status, body = raw_get(b, target)
        a = json_answer(body)
        assert status == 200, (target, body[:300])
        assert "as_of" in a
