"""What the broker's memory is for, on /metrics (docs/operations.md "Memory"): every part of
firehose_memory_bytes is there, the ring part grows with the events the stream holds and stays
under stream.ring_bytes (plus its slots) past it, and a resume is still served from memory; free
heap goes back to the system once after a burst of connections leaves, not while they stay.

Real Apache Kafka (conftest), bin/firehose-broker, a `websockets` client; loopback only.
"""

import json
import uuid

import pytest

import gen_events
from conftest import wait_for
from stream_support import Broker, Client, TopicSet, wait_topics
from stream_ws import HandshakeStorm

PARTS = ("ring", "conn_queues", "kafka_prefetch", "sqlite", "answer_cache", "malloc_free")
RING_BYTES = 1 << 20          # the smallest stream.ring_bytes
SLOT_BYTES = 8                # one pointer per event the ring holds


@pytest.fixture(scope="module")
def topics(kafka):
    prefix = "mem%s" % uuid.uuid4().hex[:8]
    t = TopicSet(prefix, "main", 3)
    specs = dict(t.specs())
    specs[prefix + ".dlq"] = 1
    kafka.create_topics(specs)
    wait_topics(kafka.bootstrap, specs)
    return t, prefix + ".dlq"


def part(m, name):
    return m[("firehose_memory_bytes", '{part="%s"}' % name)]


def emit_and_settle(b, evs):
    base = b.metric("firehose_stream_events_total")
    b.emit(evs)
    wait_for(lambda: b.metric("firehose_stream_events_total") >= base + len(evs), 60,
             what="the stream to read %d events" % len(evs))
    return b.metrics()


def record_bytes(evs):
    return sum(len(json.dumps(e, separators=(",", ":"))) for e in evs)


def test_memory_parts_are_on_metrics_and_the_ring_part_grows_with_events_up_to_its_cap(
        kafka, topics, tmp_path):
    """Each part is a gauge on /metrics; the ring part follows what the ring holds and never
    passes stream.ring_bytes plus its slots, while a resume inside it is not read from Kafka."""
    tset, dlq = topics
    b = Broker(kafka, tset, dlq, "mem", tmp_path, ["--stream.ring_bytes=%d" % RING_BYTES])
    c = None
    try:
        m0 = b.metrics()
        for p in PARTS:
            assert ("firehose_memory_bytes", '{part="%s"}' % p) in m0, "no part %s on /metrics" % p
            assert part(m0, p) >= 0
        # an empty ring: its first 1,024 slots
        assert part(m0, "ring") == 1024 * SLOT_BYTES and m0[("firehose_stream_ring_events", "")] == 0
        # the stream's and the ingest consumer's prefetch bounds at least (4 MiB + 2 MiB each)
        assert part(m0, "kafka_prefetch") >= 2 * (4 << 20)
        assert m0[("process_resident_memory_bytes", "")] > 0
        assert ("firehose_memory_trims_total", "") in m0

        c = Client(b)
        cur = c.subscribe("all", {})["cursor"]
        c.close()
        c = None
        few = gen_events.generate(200, seed=1701)
        m1 = emit_and_settle(b, few)
        held = m1[("firehose_stream_ring_events", "")]
        assert held == len(few)
        # every record is held whole: the part is at least the records, and is the ring's bytes
        # plus its slots
        assert part(m1, "ring") >= record_bytes(few)
        assert part(m1, "ring") > m1[("firehose_stream_ring_bytes", "")]
        assert part(m1, "ring") <= RING_BYTES + 2048 * SLOT_BYTES

        # a resume from before those events is served from the ring
        catchups = m1[("firehose_stream_catchups_total", "")]
        c = Client(b)
        c.subscribe("all", {}, {"cursor": cur})
        c.wait_events("all", len(few))
        c.barrier()
        got = [m["event"]["id"] for m in c.events("all")]
        assert len(got) == len(few) and set(got) == {e["id"] for e in few}
        assert b.metric("firehose_stream_catchups_total") == catchups, "served from Kafka, not the ring"
        c.close()
        c = None

        # three times the cap: the part grew, and stays under the cap
        more = []
        seed = 1702
        while record_bytes(more) < 3 * RING_BYTES:
            more += gen_events.generate(500, seed=seed)
            seed += 1
        m2 = emit_and_settle(b, more)
        assert m2[("firehose_stream_ring_events", "")] < len(few) + len(more), "nothing evicted"
        assert m2[("firehose_stream_ring_bytes", "")] <= RING_BYTES
        assert part(m2, "ring") > part(m1, "ring")
        slots = part(m2, "ring") - m2[("firehose_stream_ring_bytes", "")]
        assert 0 < slots <= 2 * m2[("firehose_stream_ring_events", "")] * SLOT_BYTES + 1024 * SLOT_BYTES
        assert part(m2, "ring") <= RING_BYTES + slots
    finally:
        if c:
            c.close()
        b.stop()


def test_free_heap_goes_back_when_a_burst_of_connections_leaves(kafka, topics, tmp_path):
    """A hundred WebSocket clients come and go: their arrival gives nothing back, their leaving
    (more than 64 and a quarter of the peak fewer) trims the free heap once, at the next 5 s
    look, and the count says so."""
    tset, dlq = topics
    b = Broker(kafka, tset, dlq, "memtrim", tmp_path, ["--broker.malloc_trim_bytes=1"])
    storm = None
    try:
        assert b.metric("firehose_memory_trims_total") == 0
        storm = HandshakeStorm("127.0.0.1", b.port, 100)

        def upgraded():
            storm.step(0.2)
            return storm.count("open") == 100 and b.metric("firehose_stream_connections") == 100
        wait_for(upgraded, 30, interval=0, what="100 clients upgraded: %s" % storm.states())
        emit_and_settle(b, gen_events.generate(500, seed=1703))   # the clients' queues fill
        # at least one 5 s look saw them all open: the peak is recorded, and a rise trims nothing
        looks = b.metric("firehose_memory_trim_looks_total")
        wait_for(lambda: b.metric("firehose_memory_trim_looks_total") >= looks + 2, 20,
                 what="two looks with the clients open")
        assert b.metric("firehose_memory_trims_total") == 0
        storm.close()
        storm = None
        wait_for(lambda: b.metric("firehose_stream_connections") == 0, 30,
                 what="the clients' connections to close")
        wait_for(lambda: b.metric("firehose_memory_trims_total") == 1, 20,
                 what="a trim after the clients left")
        # the fall is counted once: later looks with nobody connected do not trim again
        looks = b.metric("firehose_memory_trim_looks_total")
        wait_for(lambda: b.metric("firehose_memory_trim_looks_total") >= looks + 2, 20,
                 what="two more looks")
        assert b.metric("firehose_memory_trims_total") == 1
    finally:
        if storm:
            storm.close()
        b.stop()
