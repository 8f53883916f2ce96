"""The Kafka side: one confluent-kafka producer (batched, lz4, idempotent) behind a bounded buffer.

The buffer is librdkafka's own producer queue, capped by queue.buffering.max.messages and
queue.buffering.max.kbytes.  send() never blocks: when the queue is full (Kafka unreachable or
slower than the master for longer than the buffer lasts) the event is dropped and counted;
records that Kafka finally refuses or that time out in the queue are counted as dropped too.
Delivery reports are served by poll(0), which the service calls from a reactor timer.
"""

import time

from confluent_kafka import KafkaException
from confluent_kafka import Producer


# The CloudEvents Kafka binding's structured mode: the content-type header names the event
# format.  firehose-emit and the broker's HttpStatusPush ingest send the same header.
HEADERS = [("content-type", b"application/cloudevents+json")]


def producer_config(brokers, buffer_max_messages, buffer_max_kbytes, extra=None):
    conf = {
        "bootstrap.servers": brokers,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 50,
        "batch.size": 1048576,
        "queue.buffering.max.messages": int(buffer_max_messages),
        "queue.buffering.max.kbytes": int(buffer_max_kbytes),
        # An event older than this in the buffer is dropped (counted) rather than kept forever.
        "message.timeout.ms": 300000,
        "client.id": "firehose-buildbot",
        "log.connection.close": False,
    }
    conf.update(extra or {})
    return conf


class KafkaSink:
    """send(topic, key, value) never blocks; counters say what happened to every event.

    Counters: queued (accepted into the buffer), delivered, dropped_full (buffer at its cap),
    dropped_failed (Kafka refused or the buffer timed out), dropped_error (produce raised)."""

    def __init__(self, conf, logger):
        self.conf = dict(conf)
        self.cap = int(self.conf["queue.buffering.max.messages"])
        self.log = logger
        self.queued = 0
        self.delivered = 0
        self.dropped_full = 0
        self.dropped_failed = 0
        self.dropped_error = 0
        self.bytes = 0
        self.last_error = None
        self._kafka_log = []
        conf = dict(self.conf)
        conf["error_cb"] = self._on_error
        self.producer = Producer(conf)

    @property
    def dropped(self):
        return self.dropped_full + self.dropped_failed + self.dropped_error

    def buffered(self):
        """Events in the buffer (accepted, delivery not yet reported), at most cap.

        Counted here rather than with len(producer): librdkafka's outq_len also counts queued
        error events and requests, so it can read above the cap while Kafka is down."""
        return self.queued - self.delivered - self.dropped_failed

    def send(self, topic, key, value):
        try:
            self.producer.produce(topic, value=value, key=key, headers=HEADERS, on_delivery=self._on_delivery)
        except BufferError:
            self.dropped_full += 1
            return False
        except (KafkaException, ValueError, TypeError) as e:
            self.dropped_error += 1
            self.last_error = str(e)
            return False
        self.queued += 1
        self.bytes += len(value)
        return True

    def poll(self):
        """Serve delivery reports and errors; never blocks."""
        return self.producer.poll(0)

    def flush(self, timeout):
        """Blocks up to timeout seconds (call it in a thread); returns what is still buffered."""
        deadline = time.monotonic() + timeout
        left = len(self.producer)
        while left and time.monotonic() < deadline:
            left = self.producer.flush(min(0.5, max(0.0, deadline - time.monotonic())))
        return left

    def _on_delivery(self, err, msg):
        if err is None:
            self.delivered += 1
        else:
            self.dropped_failed += 1
            self.last_error = str(err)

    def _on_error(self, err):
        # Transport errors (broker down, all brokers down) are retried by librdkafka; only note them.
        self.last_error = str(err)
