"""permessage-deflate on /v1/stream (RFC 7692, docs/stream.md "Compression") against a real broker
on real Kafka: negotiated only when a client offers it, events arrive intact (the inflated bytes
are exactly what a plain client of the same subscription gets) in fewer bytes on the wire,
compressed client messages are inflated with a cap, and a client that does not ask sees the
stream unchanged.

Frames are read with a raw socket client (stream_ws.RawWs) so that the RSV1 bit and the bytes on
the wire can be checked; zlib is the client's decoder.
"""

import json
import os
import time
import zlib

import pytest
from websockets.sync.client import connect

import gen_events
from conftest import wait_for
from stream_support import Broker, TopicSet, emit, wait_topics
from stream_ws import OP_TEXT, RawWs

RESPONSE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
DLQ = "deflate.dlq"


@pytest.fixture(scope="module")
def topics(kafka):
    ts = TopicSet("deflate", "main", 3)
    specs = dict(ts.specs(), **{DLQ: 1})
    kafka.create_topics(specs)
    wait_topics(kafka.bootstrap, specs)
    return ts


@pytest.fixture(scope="module")
def broker(kafka, topics, tmp_path_factory):
    b = Broker(kafka, topics, DLQ, "deflate-%d" % os.getpid(), tmp_path_factory.mktemp("deflate"),
               args=["--stream.max_message_bytes=4096"])
    yield b
    assert b.stop() == 0


def raw_frame(ws, timeout=10.0):
    """The next frame as (first byte, opcode, payload), pings answered."""
    while True:
        deadline = time.monotonic() + timeout
        ws._fill(2, deadline)
        b0 = ws.buf[ws.pos]
        op, payload = ws.recv_frame(timeout)
        if op == 0x9:
            ws.send_frame(0xA, payload)
            continue
        return b0, op, payload


def inflate(payload):
    """What a client does with a compressed message: append 00 00 ff ff, inflate from scratch."""
    d = zlib.decompressobj(-15)
    return d.decompress(payload + b"\x00\x00\xff\xff") + d.flush()


def message(ws):
    """The next text message on a connection that negotiated the extension, decoded. Every text
    message there is marked compressed (replies as stored blocks: docs/stream.md)."""
    b0, op, payload = raw_frame(ws)
    assert op == OP_TEXT and b0 & 0x40, (b0, op)
    return json.loads(inflate(payload))


def client_deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def read_events(ws, n, compressed):
    """Reads until n event messages; returns [(wire payload bytes, message bytes)]."""
    got = []
    while len(got) < n:
        b0, op, payload = raw_frame(ws)
        assert op == OP_TEXT, op
        rsv1 = bool(b0 & 0x40)
        assert b0 & 0x30 == 0
        text = inflate(payload) if rsv1 else payload
        if not compressed:
            assert not rsv1, "a plain client got a compressed frame"
        msg = json.loads(text)
        if msg["op"] == "event":
            got.append((payload, text, rsv1))
    return got


def status_events(n, seed, master):
    evs = gen_events.generate(n, seed=seed, exclude_types="log.*")
    for e in evs:
        e["master"] = master
    return evs


def test_deflate_is_negotiated_and_shrinks_the_wire_while_every_event_arrives_intact(broker, kafka, topics,
                                                                                     capsys):
    """A deflate client and a plain one on the same subscription: the inflated messages are the plain ones byte for byte, in fewer bytes."""
    evs = status_events(400, 9191, "deflate-ratio")
    plain = RawWs("127.0.0.1", broker.port)
    z = RawWs("127.0.0.1", broker.port,
              headers={"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    try:
        assert "sec-websocket-extensions" not in plain.headers
        assert z.headers.get("sec-websocket-extensions") == RESPONSE
        sub = {"op": "subscribe", "id": "s", "filter": {"master": "deflate-ratio"}, "from": "latest"}
        plain.send_json(sub)
        z.send_json(sub)
        assert plain.recv_message()["op"] == "subscribed"
        assert message(z)["op"] == "subscribed"
        before = broker.metrics()
        emit(kafka, topics, evs)
        p_got = read_events(plain, len(evs), compressed=False)
        z_got = read_events(z, len(evs), compressed=True)
        assert [t for _, t, _ in z_got] == [t for _, t, _ in p_got], "inflated bytes differ from the plain ones"
        ids = [json.loads(t)["event"]["id"] for _, t, _ in z_got]
        assert sorted(ids) == sorted(e["id"] for e in evs)
        assert all(r for _, _, r in z_got), "a status event went out uncompressed"
        plain_bytes = sum(len(p) for p, _, _ in p_got)
        wire_bytes = sum(len(p) for p, _, _ in z_got)
        ratio = wire_bytes / plain_bytes
        with capsys.disabled():
            print("\n[deflate] %d status events: %d payload bytes plain, %d compressed, ratio %.3f"
                  % (len(evs), plain_bytes, wire_bytes, ratio))
        assert ratio < 0.75, ratio
        after = broker.metrics()
        key = "firehose_stream_deflate_bytes_total"
        d_plain = after[(key, '{form="plain"}')] - before.get((key, '{form="plain"}'), 0)
        d_sent = after[(key, '{form="sent"}')] - before.get((key, '{form="sent"}'), 0)
        assert d_sent == wire_bytes
        assert d_plain == plain_bytes
    finally:
        plain.close()
        z.close()


def test_resumes_and_cloudevents_are_compressed_too(broker, kafka, topics):
    """A resume from a cursor (each delivery with its own cursor) and the cloudevents.json protocol, through the websockets library with its default compression."""
    evs = status_events(120, 9292, "deflate-resume")
    emit(kafka, topics, evs)
    wait_for(lambda: broker.metric("firehose_stream_events_total") >= 120, 30, what="the broker to read them")
    with connect(broker.ws_url, max_size=None, open_timeout=10) as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"] == RESPONSE
        ws.send(json.dumps({"op": "subscribe", "id": "r", "filter": {"master": "deflate-resume"},
                            "from": "earliest"}))
        got, cursors = [], []
        while len(got) < 60:
            m = json.loads(ws.recv(timeout=20))
            if m["op"] == "event":
                got.append(m["event"]["id"])
                cursors.append(m["cursor"])
    with connect(broker.ws_url, max_size=None, open_timeout=10) as ws:
        ws.send(json.dumps({"op": "subscribe", "id": "r2", "filter": {"master": "deflate-resume"},
                            "from": {"cursor": cursors[-1]}}))
        while len(got) < 120:
            m = json.loads(ws.recv(timeout=20))
            if m["op"] == "event":
                got.append(m["event"]["id"])
    assert got == [e["id"] for e in evs] or sorted(got) == sorted(e["id"] for e in evs)
    assert len(set(got)) == 120

    broker.wait_connections(0)
    ce = RawWs("127.0.0.1", broker.port, path="/v1/stream?master=deflate-ce",
               headers={"Sec-WebSocket-Protocol": "cloudevents.json",
                        "Sec-WebSocket-Extensions": "permessage-deflate"})
    try:
        assert ce.headers.get("sec-websocket-extensions") == RESPONSE
        more = status_events(30, 9393, "deflate-ce")
        # the cloudevents.json subscription starts at the live position, when the stream thread
        # takes the connection: wait until it counts it, then produce
        broker.wait_connections(1)
        emit(kafka, topics, more)
        seen = []
        while len(seen) < len(more):
            b0, op, payload = raw_frame(ce)
            ev = json.loads(inflate(payload) if b0 & 0x40 else payload)
            assert b0 & 0x40, "a cloudevents.json event went out uncompressed"
            seen.append(ev["id"])
        assert sorted(seen) == sorted(e["id"] for e in more)
    finally:
        ce.close()


def test_compressed_client_messages_are_inflated_with_a_cap(broker):
    """A compressed subscribe and ping are understood; one inflating past stream.max_message_bytes closes with 1009, bad DEFLATE with 1007."""
    z = RawWs("127.0.0.1", broker.port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    try:
        z.send_frame(OP_TEXT, client_deflate(b'{"op":"ping"}'), rsv=4)
        assert message(z) == {"op": "pong"}
        sub = {"op": "subscribe", "id": "c", "filter": {"type": "build.*"}}
        z.send_frame(OP_TEXT, client_deflate(json.dumps(sub).encode()), rsv=4)
        assert message(z)["op"] == "subscribed"
        # 100 kB of spaces inside a JSON string compress to about 100 bytes: over the 4096 cap
        bomb = client_deflate(b'{"op":"ping","pad":"' + b" " * 100000 + b'"}')
        assert len(bomb) < 4096
        z.send_frame(OP_TEXT, bomb, rsv=4)
        z.read_until_close()
        assert z.close_frame[0] == 1009, z.close_frame
    finally:
        z.close()
    z = RawWs("127.0.0.1", broker.port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    try:
        z.send_frame(OP_TEXT, b"\xff\xff\xff\xff", rsv=4)
        z.read_until_close()
        assert z.close_frame[0] == 1007, z.close_frame
    finally:
        z.close()


def test_offers_the_broker_cannot_honour_leave_the_stream_plain(broker):
    """server_max_window_bits under 15, or a malformed offer: no extension, plain frames, and RSV1 from the client is a protocol error."""
    for offer in ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; bogus",
                  "x-webkit-deflate-frame"):
        ws = RawWs("127.0.0.1", broker.port, headers={"Sec-WebSocket-Extensions": offer})
        try:
            assert "sec-websocket-extensions" not in ws.headers, offer
            ws.send_frame(OP_TEXT, client_deflate(b'{"op":"ping"}'), rsv=4)
            ws.read_until_close()
            assert ws.close_frame[0] == 1002, (offer, ws.close_frame)
        finally:
            ws.close()
    # and the next offer in the list is taken when the first cannot be
    ws = RawWs("127.0.0.1", broker.port, headers={
        "Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=9, permessage-deflate"})
    try:
        assert ws.headers.get("sec-websocket-extensions") == RESPONSE
    finally:
        ws.close()
