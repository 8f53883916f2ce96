"""Reads Kafka topics back for the Buildbot tests (confluent-kafka, no consumer group offsets)."""

import json
import time
import uuid

import confluent_kafka


class TopicReader:
    """Every record of some topics from the beginning: read() catches up to the high watermarks.

    Each record: topic, partition, offset, key (text), value (the bytes), headers (list of
    (name, bytes)) and event (the value decoded as JSON)."""

    def __init__(self, bootstrap, topics):
        self.c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "t-" + uuid.uuid4().hex,
                                           "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        md = self.c.list_topics(timeout=20)
        self.tps = []
        for t in topics:
            assert t in md.topics, "topic %s missing" % t
            for p in md.topics[t].partitions:
                self.tps.append(confluent_kafka.TopicPartition(t, p, confluent_kafka.OFFSET_BEGINNING))
        self.c.assign(self.tps)
        self.records = []
        self.pos = {(tp.topic, tp.partition): 0 for tp in self.tps}

    def read(self, timeout=30):
        high = {}
        for tp in self.tps:
            _, hi = self.c.get_watermark_offsets(tp, timeout=10)
            high[(tp.topic, tp.partition)] = hi
        deadline = time.monotonic() + timeout
        while any(self.pos[k] < high[k] for k in high) and time.monotonic() < deadline:
            for m in self.c.consume(1000, timeout=0.5):
                if m.error():
                    continue
                self.pos[(m.topic(), m.partition())] = m.offset() + 1
                self.records.append({"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                                     "key": m.key().decode() if m.key() is not None else None,
                                     "value": m.value(), "headers": m.headers() or [],
                                     "event": json.loads(m.value())})
        return self.records

    def count(self, etype):
        """Catch up (briefly), then count the events of one type read so far."""
        self.read(timeout=2)
        return sum(r["event"]["type"] == etype for r in self.records)

    def close(self):
        self.c.close()
