"""Reset storms against the stream while events flow: any client allowed to read must not be able to
take the broker down.

Hundreds of WebSocket clients subscribe to everything, never read, and then all reset their
connections at once (SO_LINGER 0, so the broker sees RST), round after round, while events flow
and the broker's queues for those clients are dirty. The broker's epoll batch then holds both a
flush of a dirty queue that fails (and drops the connection) and the hang-up of the same
connection; other rounds cut the never-reading clients off as slow consumers first. Normal
subscribers connected throughout must receive every event, in per-build order, and the broker must
still be alive and serving at the end.

Run against the normal build and (FIREHOSE_TEST_BROKER=build/asan/bin/firehose-broker, as
`make integration-asan` does) the ASan+UBSan build, where a use after free ends the process.
"""

import socket
import struct
import threading
import time
import uuid

import pytest
import requests

import gen_events
from conftest import wait_for
from stream_support import Broker, Client, PacedEmitter, TopicSet, build_order_problems, wait_topics
from stream_ws import RawWs

PARTS = 3
ROUNDS = 20            # reset storms per test
STORM = 400           # never-reading clients per storm
RATE = 250            # events per second while the storms run
NORMAL = 3            # ordinary subscribers that must see everything


@pytest.fixture(scope="module")
def topics(kafka):
    t = TopicSet("storm%s" % uuid.uuid4().hex[:8], "main", PARTS)
    specs = dict(t.specs())
    dlq = "%s.dlq" % t.events
    specs[dlq] = 1
    kafka.create_topics(specs)
    wait_topics(kafka.bootstrap, specs)
    t.dlq = dlq
    return t


def open_storm(port, n, deadline):
    """n raw clients that subscribe to every event from the latest and never read again."""
    out = []
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        ws = RawWs("127.0.0.1", port, rcvbuf=4096, timeout=10,
                   headers={"Sec-WebSocket-Protocol": "firehose"})
        ws.send_json({"op": "subscribe", "id": "s", "filter": {}, "from": "latest"})
        out.append(ws)
    return out


def reset_all(clients):
    """Closes every client with RST instead of FIN (SO_LINGER on, timeout 0), all at once."""
    for ws in clients:
        try:
            ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.sock.close()
        except OSError:
            pass


class Feeder(threading.Thread):
    """Produces generated events at about RATE per second until stopped (bounded: at most
    max_events), recording them in the topic set."""

    def __init__(self, emitter, max_events):
        super().__init__(daemon=True)
        self.emitter = emitter
        self.events = iter(gen_events.iter_events(seed=7, exclude_types="log.*"))
        self.max_events = max_events
        self.sent = 0
        self.stop = threading.Event()

    def run(self):
        step = max(1, RATE // 20)
        while not self.stop.is_set() and self.sent < self.max_events:
            batch = [next(self.events) for _ in range(step)]
            self.emitter.write(batch)
            self.sent += len(batch)
            self.stop.wait(step / RATE)


def storms(b, deadline):
    """ROUNDS storms of never-reading clients, each reset at once; events keep flowing."""
    for rnd in range(ROUNDS):
        assert b.proc.poll() is None, "broker died before round %d:\n%s" % (rnd, b.log_tail())
        before = b.metric("firehose_stream_deliveries_total")
        storm = open_storm(b.port, STORM, deadline)
        assert storm, "no time left for round %d" % rnd
        # events queued for the storm's clients (dirty queues); on odd rounds enough of them to
        # pass the queue cap, so some are cut off as slow consumers while the others reset:
        # drops from flushes, hold checks and hang-ups in one batch
        per_client = 40 if rnd % 2 else 2
        wait_for(lambda: b.metric("firehose_stream_deliveries_total") - before >= per_client * len(storm),
                 60, what="events queued for the never-reading clients (round %d)" % rnd)
        reset_all(storm)
        wait_for(lambda: b.metric("firehose_stream_connections") <= NORMAL, 60, interval=0.1,
                 what="the storm's connections gone (round %d)" % rnd)


def test_reset_storms_while_events_flow_leave_the_broker_up_and_readers_whole(kafka, topics, tmp_path):
    b = Broker(kafka, topics, topics.dlq, "storm", tmp_path,
               args=["--stream.client_queue_bytes=65536", "--stream.drain_grace_ms=300",
                     "--stream.max_connections=%d" % (STORM + 100),
                     "--http.max_connections=%d" % (STORM + 200)])
    normal, feeder, emitter = [], None, None
    try:
        for i in range(NORMAL):
            c = Client(b, query="")
            c.subscribe("all", {}, "latest")
            normal.append(c)
        first = len(topics.produced)
        emitter = PacedEmitter(kafka, topics)
        feeder = Feeder(emitter, max_events=RATE * 120)
        feeder.start()
        deadline = time.monotonic() + 240
        try:
            storms(b, deadline)
        except (requests.ConnectionError, OSError) as e:
            raise AssertionError("the broker stopped answering (%s):\n%s" % (e, b.log_tail(8000)))
        feeder.stop.set()
        feeder.join(30)
        emitter.close()
        emitter = None
        assert b.proc.poll() is None, "broker died:\n%s" % b.log_tail()
        want = [e["id"] for e in topics.produced[first:]]
        assert want, "nothing was produced"
        for c in normal:
            got = [m["event"] for m in c.wait_events("all", len(want), timeout=120, idle=30)]
            ids = [e["id"] for e in got]
            assert sorted(ids) == sorted(want), \
                "a normal subscriber got %d of %d events (%d missing, %d extra)" % (
                    len(set(ids)), len(want), len(set(want) - set(ids)), len(ids) - len(set(ids)))
            problems = build_order_problems(got, topics.index)
            assert not problems, problems[:5]
        assert b.metric("firehose_stream_connections") == NORMAL
        assert b.proc.poll() is None, "broker died:\n%s" % b.log_tail()
    finally:
        if feeder:
            feeder.stop.set()
            feeder.join(30)
        if emitter:
            try:
                emitter.close()
            except AssertionError:
                pass
        for c in normal:
            c.close()
        rc = b.stop()
    assert rc == 0, "broker exit status %s (a sanitizer report or a crash):\n%s" % (rc, b.log_tail(8000))
