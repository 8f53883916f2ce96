"""Promises under faults (DESIGN.md), proved with real processes:

- Kafka going away and coming back: the broker stays up, /readyz reports not ready with the reason,
  and when Kafka returns it resumes: every event produced before and after reaches the view and a
  live SSE client exactly once, in per-build order.
- A flood of malformed records goes to the dead-letter topic with its reason, is counted in
  /metrics, and never stops the stream.

Each test runs its own Kafka (it is stopped on purpose), on loopback.
"""

import collections
import json
import os
import pathlib
import subprocess
import tempfile
import threading
import uuid

import pytest
import requests

from conftest import BIN, KAFKA_SH, Kafka, wait_for
from view_helpers import Broker

SIM = BIN / "firehose-sim"
EMIT = BIN / "firehose-emit"


@pytest.fixture
def own_kafka():
    state = pathlib.Path(tempfile.mkdtemp(prefix="firehose-fault-kafka-"))
    env = dict(os.environ, KAFKA_WATCH_PID=str(os.getpid()))
    start = lambda: subprocess.run([str(KAFKA_SH), "start", str(state)], stdout=subprocess.PIPE, text=True,
                                   check=True, timeout=300, env=env).stdout.strip().splitlines()[-1]
    k = Kafka(start(), state)

    def restart():
        again = start()
        assert again == k.bootstrap, "kafka.sh must restart on the same port (%s, was %s)" % (again, k.bootstrap)
    k.restart = restart
    k.stop = lambda: subprocess.run([str(KAFKA_SH), "stop", str(state)], check=True, timeout=120)
    try:
        yield k
    finally:
        subprocess.run([str(KAFKA_SH), "stop", str(state), "--purge"], timeout=120)


class SseIds:
    """A live SSE client (requests, streaming) collecting event ids in arrival order."""

    def __init__(self, url):
        self.ids, self.events, self.error = [], [], None
        self.resp = requests.get(url + "v1/events", params={"from": "earliest"}, stream=True, timeout=(5, 300))
        assert self.resp.status_code == 200, self.resp.text
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for line in self.resp.iter_lines(decode_unicode=True):
                if line and line.startswith("data: "):
                    ev = json.loads(line[6:])
                    self.events.append(ev)
                    self.ids.append(ev["id"])
        except Exception as e:  # the connection closes at the end of the test
            self.error = e

    def close(self):
        self.resp.close()


def sim_batch(tmp, seed, count):
    path = tmp / ("batch-%d.ndjson" % seed)
    raw = subprocess.run([str(SIM), "--count", str(count), "--seed", str(seed), "--logs=false", "-q",
                          "--start", "2026-11-2%dT05:00:00.000Z" % seed], stdout=subprocess.PIPE, check=True,
                         timeout=60).stdout
    path.write_bytes(raw)
    return path, [json.loads(l) for l in raw.splitlines()]


def emit(kafka, topics, path):
    r = subprocess.run([str(EMIT), "--brokers", kafka.bootstrap, "--topic-events", topics["events"],
                        "--topic-logs", topics["logs"], "--topic-dlq", topics["dlq"], "-q", str(path)],
                       stderr=subprocess.PIPE, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]


def per_build_order_ok(received, produced):
    order = {e["id"]: i for i, e in enumerate(produced)}
    last = {}
    for e in received:
        k = e["data"].get("buildrequestid")
        if k is None:
            continue
        if order[e["id"]] < last.get(k, -1):
            return False
        last[k] = order[e["id"]]
    return True


def test_kafka_stop_and_restart_the_broker_stays_up_and_loses_nothing(own_kafka, tmp_path):
    topics = {k: "fault-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("events", "logs", "dlq")}
    own_kafka.create_topics({topics["events"]: 3, topics["logs"]: 3, topics["dlq"]: 1})
    b = Broker(own_kafka, topics, tmp_path / "view.db", tmp_path / "broker.log",
               extra=["--kafka.reconnect.backoff.max.ms=1000"]).start()
    sse = None
    try:
        wait_for(lambda: b.get("/readyz").status_code == 200, 60, what="ready")
        sse = SseIds(b.url)
        first, ev1 = sim_batch(tmp_path, 1, 3000)
        emit(own_kafka, topics, first)
        b.wait_applied(3000)
        wait_for(lambda: len(sse.ids) >= 3000, 60, what="SSE to get the first batch")

        own_kafka.stop()
        down = wait_for(lambda: (lambda r: r.status_code == 503 and r.json())(b.get("/readyz")), 90,
                        interval=0.5, what="/readyz to say not ready")
        assert "Kafka" in down["reason"], down
        assert b.proc.poll() is None, "the broker must stay up without Kafka"
        assert b.get("/healthz").status_code == 200
        assert b.json("/api/v1/builders")["builders"], "REST still answers from the view"

        own_kafka.restart()
        second, ev2 = sim_batch(tmp_path, 2, 3000)
        emit(own_kafka, topics, second)
        wait_for(lambda: b.get("/readyz").status_code == 200, 90, interval=0.5, what="/readyz ready again")
        b.wait_applied(6000, timeout=120)
        wait_for(lambda: len(sse.ids) >= 6000, 120, what="SSE to get the second batch")
    finally:
        if sse:
            sse.close()
        rc = b.stop()
    produced = ev1 + ev2
    counts = collections.Counter(sse.ids)
    assert set(counts) == {e["id"] for e in produced}
    assert max(counts.values()) == 1, [i for i, n in counts.items() if n > 1][:5]
    assert per_build_order_ok(sse.events, produced)
    assert rc == 0
    log = b.log()
    assert "event=kafka.down" in log and "event=kafka.up" in log


def test_a_flood_of_malformed_records_goes_to_the_dlq_and_the_stream_goes_on(own_kafka, tmp_path):
    topics = {k: "flood-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("events", "logs", "dlq")}
    own_kafka.create_topics({topics["events"]: 3, topics["logs"]: 3, topics["dlq"]: 1})
    b = Broker(own_kafka, topics, tmp_path / "view.db", tmp_path / "broker.log").start()
    sse = None
    try:
        wait_for(lambda: b.get("/readyz").status_code == 200, 60, what="ready")
        sse = SseIds(b.url)
        good, evs = sim_batch(tmp_path, 3, 2000)
        bad = ["not json %d" % i if i % 3 == 0 else
               json.dumps({"specversion": "1.0", "id": "bad-%d" % i, "type": "build.finished"}) if i % 3 == 1 else
               "{" * 5000 for i in range(3000)]
        # Interleave: bad records straight onto the events topic (kcat bypasses firehose-emit's checks).
        lines = []
        good_lines = good.read_text().splitlines()
        for i in range(max(len(bad), len(good_lines))):
            if i < len(bad):
                lines.append(bad[i])
            if i < len(good_lines):
                lines.append(good_lines[i])
        mixed = tmp_path / "mixed.txt"
        mixed.write_text("\n".join(lines) + "\n")
        subprocess.run(["kcat", "-P", "-b", own_kafka.bootstrap, "-t", topics["events"], "-l", str(mixed)],
                       check=True, timeout=120)
        wait_for(lambda: len(sse.ids) >= 2000, 120, what="the good events on the stream")

        def dlq_count():
            for line in b.get("/metrics").text.splitlines():
                if line.startswith("firehose_dlq_total"):
                    return int(float(line.split()[-1]))
            return 0
        wait_for(lambda: dlq_count() >= 3000, 120, what="3000 records in the dead-letter topic")
        dlq = subprocess.run(["kcat", "-C", "-b", own_kafka.bootstrap, "-t", topics["dlq"], "-e", "-q",
                              "-f", "%h\\n"], stdout=subprocess.PIPE, text=True, check=True, timeout=120).stdout
        reasons = [l for l in dlq.splitlines() if "firehose-error=" in l]
        assert len(reasons) == 3000, len(reasons)
        assert any("not JSON" in r for r in reasons) and any("data" in r or "required" in r for r in reasons)
    finally:
        if sse:
            sse.close()
        rc = b.stop()
    assert collections.Counter(sse.ids) == collections.Counter(e["id"] for e in evs)
    assert rc == 0


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _metric(b, name, labels=""):
    for line in b.get("/metrics").text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return 0.0


def test_a_thousand_never_reading_clients_are_cut_off_and_a_fast_one_gets_everything(kafka, tmp_path):
    import asyncio
    import time
    import websockets
    from stream_ws import RawWs

    n_slow = 1000
    topics = {k: "slow-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("events", "logs", "dlq")}
    kafka.create_topics({topics["events"]: 3, topics["logs"]: 3, topics["dlq"]: 1})
    b = Broker(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log",
               extra=["--view.enabled=false", "--stream.client_queue_bytes=65536",
                      "--stream.max_connections=%d" % (n_slow + 50), "--http.max_connections=%d" % (n_slow + 100)]).start()
    slow = []
    try:
        wait_for(lambda: b.get("/readyz").status_code == 200, 60, what="ready")
        port = int(b.url.rsplit(":", 1)[1].strip("/"))
        for _ in range(n_slow):
            ws = RawWs("127.0.0.1", port, rcvbuf=4096, headers={"Sec-WebSocket-Protocol": "firehose"})
            ws.send_json({"op": "subscribe", "id": "s", "filter": {}, "from": "latest"})
            slow.append(ws)                                 # and never read again
        wait_for(lambda: _metric(b, "firehose_stream_connections") >= n_slow, 60, what="the slow clients connected")
        path, evs = sim_batch(tmp_path, 4, 5000)
        got, started = [], []

        async def fast():
            async with websockets.connect(b.url.replace("http://", "ws://") + "v1/stream",
                                          subprotocols=["firehose"], max_size=None) as s:
                await s.send(json.dumps({"op": "subscribe", "id": "f", "filter": {}, "from": "latest"}))
                assert json.loads(await asyncio.wait_for(s.recv(), 30))["op"] == "subscribed"
                started.append(time.monotonic())
                deadline = time.monotonic() + 120
                while len(got) < len(evs) and time.monotonic() < deadline:
                    m = json.loads(await asyncio.wait_for(s.recv(), 60))
                    if m["op"] == "event":
                        got.append(m["event"]["id"])

        def produce_when_subscribed():
            wait_for(lambda: started, 30, interval=0.05, what="the fast client subscribed")
            emit(kafka, topics, path)
        t = threading.Thread(target=produce_when_subscribed)
        t.start()
        asyncio.run(fast())
        t.join(timeout=180)
        assert collections.Counter(got) == collections.Counter(e["id"] for e in evs), \
            "the fast client got %d of %d" % (len(set(got)), len(evs))
        wait_for(lambda: _metric(b, "firehose_stream_disconnects_total", '{reason="slow_consumer"}') >= n_slow, 120,
                 interval=0.5, what="every never-reading client cut off as a slow consumer")
        wait_for(lambda: _metric(b, "firehose_stream_queued_bytes") < 1 << 20, 60, what="queues drained")
        rss = _rss_kib(b.proc.pid)
        assert rss < 256 * 1024, "broker RSS %d KiB with %d slow clients" % (rss, n_slow)
    finally:
        for ws in slow:
            try:
                ws.sock.close()
            except OSError:
                pass
        assert b.stop() == 0
