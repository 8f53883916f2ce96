"""Records Kafka deletes before a consumer reads them are never lost silently.

Retention (here: tiny segments, a tiny retention.bytes and a retention check every 500 ms on a Kafka
of this module's own) deletes records the broker's consumers still needed while the broker is
down. When it comes back, each consumer that had a position in the deleted range (the view, the
ingest group, the webhooks group) logs records.lost with the range, counts it in
firehose_records_lost_total, /readyz says degraded, and every REST answer's as_of carries
records_lost, also after a restart. And the embedded Kafka, which drops old records past 5 MiB per
partition, is kept from taking records it cannot hold.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

from conftest import BIN, KAFKA_SH, Kafka, wait_for
from view_helpers import Broker, OpenAPI, Script, emit, write_ndjson
from webhook_support import webhook_args

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

EMIT = BIN / "firehose-emit"
BROKER = BIN / "firehose-broker"
SEGMENT = 65536


@pytest.fixture(scope="module")
def retention_kafka():
    """A Kafka of its own that runs retention every 500 ms (the default is every 5 minutes)."""
    if os.environ.get("FIREHOSE_TEST_BOOTSTRAP"):
        pytest.skip("needs a Kafka started with log.retention.check.interval.ms=500")
    state = pathlib.Path(tempfile.mkdtemp(prefix="firehose-kafka-retention-"))
    env = dict(os.environ, KAFKA_WATCH_PID=str(os.getpid()),
               KAFKA_SERVER_PROPS="log.retention.check.interval.ms=500 log.segment.delete.delay.ms=0")
    proc = subprocess.run([str(KAFKA_SH), "start", str(state)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        subprocess.run([str(KAFKA_SH), "stop", str(state)], timeout=120)
        pytest.fail("kafka.sh start failed (%d):\n%s" % (proc.returncode, proc.stderr[-4000:]))
    try:
        yield Kafka(proc.stdout.strip().splitlines()[-1], state)
    finally:
        subprocess.run([str(KAFKA_SH), "stop", str(state)], timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def create_topics(kafka, prefix):
    """events: one partition that keeps about one 64 KiB segment; logs and dlq: plain."""
    t = {"events": prefix + ".events", "logs": prefix + ".logs", "dlq": prefix + ".dlq"}
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    small = {"segment.bytes": str(SEGMENT), "retention.bytes": str(SEGMENT),
             "file.delete.delay.ms": "0"}
    futures = admin.create_topics([NewTopic(t["events"], 1, 1, config=small),
                                   NewTopic(t["logs"], 1, 1), NewTopic(t["dlq"], 1, 1)])
    for f in futures.values():
        f.result(timeout=60)
    wait_for(lambda: watermarks(kafka, t["events"]) is not None, 60, what="a leader for " + t["events"])
    return t


def watermarks(kafka, topic, partition=0):
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "watermarks"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
    except confluent_kafka.KafkaException:
        return None
    finally:
        c.close()


def committed(kafka, group, topic, partition=0):
    c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        c.close()


def requests_script(t0, first, n, pad=0):
    """n buildrequest.new events for requests first.., each padded with pad characters."""
    s = Script(t0)
    for brid in range(first, first + n):
        s.add("buildrequest.new", {"buildrequestid": brid, "builder": "linux", "builderid": 1,
                                   "branch": "trunk", "revision": "%040x" % brid,
                                   "repository": "https://git.example.org/firehose.git",
                                   "project": "firehose", "codebase": "", "owner": "",
                                   "buildsetid": brid, "priority": 0, "submitted_at": t0 + brid,
                                   "reason": "x" * pad or "scripted"},
              brid, subject="buildrequests/%d" % brid)
    for ev in s.events:
        ev["id"] = "lost-%d" % ev["data"]["buildrequestid"]
    return s.events


def lost_lines(log, consumer):
    """(from, to, records) of every records.lost line of consumer."""
    return [(int(m.group(1)), int(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"event=records\.lost consumer=%s topic=\S+ partition=0 from=(\d+) to=(\d+) records=(\d+)"
        % re.escape(consumer), log)]


def lost_metric(b, consumer, topic):
    text = b.get("/metrics").text
    m = re.search(r'^firehose_records_lost_total\{consumer="%s",topic="%s",partition="0"\} (\d+)$'
                  % (re.escape(consumer), re.escape(topic)), text, re.M)
    return int(m.group(1)) if m else None


def test_records_deleted_before_the_broker_read_them_are_logged_counted_and_marked(retention_kafka,
                                                                                  tmp_path):
    kafka = retention_kafka
    topics = create_topics(kafka, "lost-%s" % uuid.uuid4().hex[:8])
    wh_group = "lost-wh-%s" % uuid.uuid4().hex[:8]
    extra = ["--webhooks.path=%s" % (tmp_path / "webhooks.db"), "--webhooks.group=" + wh_group] + \
        webhook_args(kafka, topics)
    t0 = int(time.time()) - 600

    # 1. The broker reads requests 1-3 and remembers where it is: the view in its file, the ingest
    #    and webhooks groups in Kafka.
    write_ndjson(tmp_path / "first.ndjson", requests_script(t0, 1, 3))
    emit(kafka, topics, tmp_path / "first.ndjson", expected=3)
    group = "lost-%s" % uuid.uuid4().hex[:8]

    def broker():
        """A broker on topics that keeps its view file and consumer groups across restarts."""
        b = Broker(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log", extra=extra)
        b.args[b.args.index("--kafka.group") + 1] = group
        return b.start()

    b = broker()
    try:
        b.wait_applied(3)
        wait_for(lambda: committed(kafka, group, topics["events"]) == 3, 60, what="ingest commits offset 3")
        wait_for(lambda: committed(kafka, wh_group, topics["events"]) == 3, 60,
                 what="webhooks commit offset 3")
    finally:
        assert b.stop() == 0, b.log()[-3000:]

    # 2. While it is down: request 4, then enough padded requests that retention deletes the
    #    segments holding request 4 and more.
    #    Uncompressed, in batches well below a segment, so the records fill several segments.
    write_ndjson(tmp_path / "second.ndjson", [requests_script(t0, 4, 1)[0]] +
                 requests_script(t0, 5, 300, pad=900))
    p = subprocess.run([str(EMIT), "--brokers", kafka.bootstrap, "--topic-events", topics["events"],
                        "--topic-logs", topics["logs"], "--topic-dlq", topics["dlq"],
                        "-X", "compression.codec=none", "-X", "batch.size=16384",
                        str(tmp_path / "second.ndjson")],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "sent=301" in p.stderr, p.stderr[-2000:]
    wait_for(lambda: (lambda w: w and w[0] > 4)(watermarks(kafka, topics["events"])), 90,
             interval=0.2, what="retention to delete the segment holding request 4")
    # A retention pass that ran while the records arrived may leave more for the next one: wait
    # until four passes in a row (500 ms apart) left the low watermark where it was.
    seen = []
    wm = wait_for(lambda: (seen.append(watermarks(kafka, topics["events"])) or
                           (len(seen) >= 5 and len(set(seen[-5:])) == 1 and seen[-1])),
                  60, interval=0.5, what="retention to settle")
    lo, hi = wm

    # 3. Back up: every consumer that still needed offsets 3.. says what it lost.
    b = broker()
    try:
        for consumer in ("view", "ingest", "webhooks"):
            found = wait_for(lambda: lost_lines(b.log(), consumer), 60,
                             what="a records.lost line of the %s consumer" % consumer)
            assert len(found) == 1, found
            frm, to, n = found[0]
            # from: the first offset the consumer needed; to: the first it got, at or past the
            # low watermark seen before the broker started (retention may have gone on since)
            assert frm == 3 and to >= lo and n == to - frm, (consumer, found, wm)
            assert wait_for(lambda: lost_metric(b, consumer, topics["events"]), 10,
                            what="firehose_records_lost_total of " + consumer) == n
        assert lost_metric(b, "stream", topics["events"]) is None  # the stream starts at the end
        view_lost = lost_lines(b.log(), "view")[0][2]

        # The view counts what it lost when the batch that met the gap commits, a moment after the
        # log line and the metric: await that, then hold /readyz to the figures.
        ready = wait_for(lambda: (lambda x: "view" in x.json().get("records_lost", {}) and x)(b.get("/readyz")),
                         30, what="/readyz to count the view's lost records")
        assert ready.status_code == 200, ready.text
        r = ready.json()
        assert r["status"] == "degraded" and "deleted records" in r["reason"], r
        assert r["records_lost"]["view"] == view_lost and r["records_lost"]["ingest"] > 0 \
            and r["records_lost"]["webhooks"] > 0, r

        b.wait_applied(hi)
        resp = b.get("/api/v1/pending", {"limit": 10000})
        OpenAPI().check("/api/v1/pending", resp)
        pending = resp.json()
        assert pending["as_of"]["records_lost"] == view_lost, pending["as_of"]
        ids = {p["buildrequestid"] for p in pending["pending"]}
        assert {1, 2, 3} <= ids and 4 not in ids, sorted(ids)[:10]
    finally:
        assert b.stop() == 0, b.log()[-3000:]

    # 4. The mark is the view file's: a restart still shows it (and finds nothing new to report).
    before = len(lost_lines(b.log(), "view"))
    b = broker()
    try:
        wait_for(lambda: b.get("/readyz").status_code == 200, 60, what="ready")
        assert b.json("/api/v1/pending", {"limit": 1})["as_of"]["records_lost"] == view_lost
        r = b.get("/readyz").json()
        assert r["status"] == "degraded" and r["records_lost"] == {"view": view_lost}, r
        assert len(lost_lines(b.log(), "view")) == before
    finally:
        assert b.stop() == 0, b.log()[-3000:]


# ---- the embedded Kafka -------------------------------------------------------------------------

def test_embedded_broker_refuses_a_record_size_its_kafka_cannot_hold(tmp_path):
    """events.max_bytes over 1 MiB with the embedded Kafka: the broker says why and does not start."""
    p = subprocess.run([str(BROKER), "--listen=127.0.0.1:0", "--events.max_bytes=2097152",
                        "--view.path=%s" % (tmp_path / "v.db"), "--webhooks.path=%s" % (tmp_path / "w.db")],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "events.max_bytes=2097152 is more than the embedded Kafka can hold" in p.stderr, p.stderr[-2000:]


def test_emit_refuses_records_the_embedded_kafka_cannot_hold(tmp_path):
    """firehose-emit into a broker's embedded Kafka rejects a record over 1 MiB, whatever its own
    events.max_bytes, with the reason; the records around it go through."""
    log = open(tmp_path / "broker.log", "wb")
    proc = subprocess.Popen([str(BROKER), "--listen=127.0.0.1:0", "--auth.anonymous_read",
                             "--view.path=%s" % (tmp_path / "v.db"),
                             "--webhooks.path=%s" % (tmp_path / "w.db")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        text = lambda: (tmp_path / "broker.log").read_text(errors="replace")  # noqa: E731
        boot = wait_for(lambda: re.search(r"event=kafka\.embedded bootstrap=(\S+)", text()), 30,
                        what="the embedded bootstrap").group(1)
        url = wait_for(lambda: re.search(r"event=http\.listening url=(\S+)", text()), 30,
                       what="http.listening").group(1)
        evs = requests_script(int(time.time()), 1, 2)
        big = dict(evs[0], id="lost-big")
        big["data"] = dict(big["data"], reason="x" * (1536 * 1024))
        with open(tmp_path / "in.ndjson", "w") as f:
            for ev in (evs[0], big, evs[1]):
                f.write(json.dumps(ev) + "\n")
        p = subprocess.run([str(EMIT), "--brokers", boot, "--events.max_bytes=4194304", "--skip-invalid",
                            "-X", "message.max.bytes=8000000", str(tmp_path / "in.ndjson")],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stderr[-2000:]
        assert "line 2" in p.stderr and "limit of the embedded Kafka" in p.stderr, p.stderr[-2000:]
        assert "sent=2" in p.stderr, p.stderr[-2000:]
        wait_for(lambda: requests.get(url + "api/v1/pending", timeout=10).json()["total"] == 2, 30,
                 what="both requests in the view")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
