"""Promises under faults (DESIGN.md), proved with real processes:

- Kafka going away and coming back: the broker stays up, /readyz reports not ready with the reason,
  and when Kafka returns it resumes: every event produced before and after reaches the view and a
  live SSE client exactly once, in per-build order.
- A partition leader change on a three-node cluster (the leader killed under traffic, later back
  and leading again) loses nothing and duplicates nothing on the stream.
- A broker SIGKILLed under load loses nothing: stream clients resume from their cursors, webhooks
  are delivered at least once, the view holds every event once.
- A flood of malformed records goes to the dead-letter topic with its reason, is counted in
  /metrics, and never stops the stream; oversized records, client messages and HTTP requests get
  their documented outcome.
- Never-reading clients are cut off; a storm of connections past the limits is refused as
  documented and the broker recovers.

The Kafka stop/restart and flood tests run their own Kafka (it is stopped on purpose), the leader
test its own three-node cluster, the others the session's; all on loopback.
"""

import collections
import concurrent.futures
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid

import pytest
import requests

import gen_events
from conftest import BIN, KAFKA_SH, Kafka, KafkaCluster, wait_for
from stream_support import Client, PacedEmitter, Sse, TopicSet, build_order_problems, matches
from stream_support import emit as emit_events
from stream_ws import OP_CONT, OP_TEXT, Closed, HandshakeError, RawWs
from view_helpers import Broker, view_state
from webhook_support import ADMIN, AUTH, Receiver, WebhookBroker

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
    import websockets

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
        # (not under ASan: its shadow memory and quarantine are most of the RSS there)
        if not os.environ.get("FIREHOSE_TEST_ASAN"):
            rss = _rss_kib(b.proc.pid)
            assert rss < 256 * 1024, "broker RSS %d KiB with %d slow clients" % (rss, n_slow)
    finally:
        for ws in slow:
            try:
                ws.sock.close()
            except OSError:
                pass
        assert b.stop() == 0


# ---- helpers of the tests below ----------------------------------------------------------------

def ws_url(b):
    return b.url.replace("http://", "ws://") + "v1/stream"


def port_of(b):
    return int(b.url.rstrip("/").rsplit(":", 1)[1])


def ready_broker(kafka, topics, tmp_path, *extra):
    """bin/firehose-broker (view on, webhooks off) on topics, once /readyz says ready."""
    b = Broker(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log",
               extra=["--webhooks.enabled=false"] + list(extra)).start()
    try:
        wait_for(lambda: b.get("/readyz").status_code == 200, 60, what="ready")
    except BaseException:
        b.stop()
        raise
    return b


class Follower:
    """A WebSocket subscriber that keeps its place: it records every event with its cursor, and
    resume() replaces an ended connection by one subscribing from the last cursor it got."""

    def __init__(self, url, flt=None):
        self.flt = flt or {}
        self.before = []          # events of the connections that ended, in arrival order
        self.cursor = None
        self.resumes = 0
        self._connect(url)

    def _connect(self, url):
        self.client = Client(types.SimpleNamespace(ws_url=url))
        frm = {"cursor": self.cursor} if self.cursor else "latest"
        r = self.client.subscribe("f", self.flt, frm=frm)
        self.cursor = self.cursor or r["cursor"]

    def events(self):
        return self.before + [m["event"] for m in self.client.events("f")]

    def resume(self, url):
        """Closes the current connection (if still open) and resumes on url from the last cursor."""
        self.client.close()
        msgs = self.client.events("f")
        self.before += [m["event"] for m in msgs]
        if msgs:
            self.cursor = msgs[-1]["cursor"]
        self.resumes += 1
        self._connect(url)

    def wait_ids(self, ids, timeout, url=None):
        """Waits until every id of ids has arrived; with url, a connection the broker ended is
        resumed (allowed, and counted in .resumes)."""
        def have():
            if url and self.client.done:
                self.resume(url)
            return ids <= {e["id"] for e in self.events()}
        wait_for(have, timeout, interval=0.1, what="%d events on the follower" % len(ids))

    def close(self):
        self.client.close()


class Prober:
    """A thread asking url every 0.1 s until stop(), which returns the statuses (or errors) seen."""

    def __init__(self, url):
        self.answers = []
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()

    def _run(self, url):
        while not self.halt.wait(0.1):
            try:
                self.answers.append(requests.get(url, timeout=10).status_code)
            except requests.RequestException as e:
                self.answers.append(type(e).__name__)

    def stop(self):
        self.halt.set()
        self.thread.join(30)
        return self.answers


class Feeder:
    """Steady traffic: a thread hands `chunk` generated events to firehose-emit every `pace`
    seconds until stop(); everything produced is recorded in topics (a TopicSet)."""

    def __init__(self, kafka, topics, seed, chunk=50, pace=0.05):
        self.emitter = PacedEmitter(kafka, topics)
        self.topics = topics
        self.events = gen_events.iter_events(seed=seed)
        self.chunk, self.pace = chunk, pace
        self.halt = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.halt.is_set():
                self.emitter.write([next(self.events) for _ in range(self.chunk)])
                self.halt.wait(self.pace)
        except Exception as e:           # reported by stop()
            self.error = e

    def produced(self):
        return len(self.topics.produced)

    def wait_more(self, n, timeout=60):
        """Waits until n more events than now have been handed to the producer."""
        want = self.produced() + n
        wait_for(lambda: self.produced() >= want, timeout, what="%d more events produced" % n)

    def stop(self):
        self.halt.set()
        self.thread.join(30)
        self.emitter.close()
        assert self.error is None, self.error
        return list(self.topics.produced)


def stream_problems(got, want, index):
    """Problems of a stream that should carry exactly `want` (events) in per-build order."""
    counts = collections.Counter(e["id"] for e in got)
    problems = []
    missing = [e["id"] for e in want if not counts[e["id"]]]
    if missing:
        problems.append("%d of %d events missing, e.g. %s" % (len(missing), len(want), missing[:3]))
    extra = set(counts) - {e["id"] for e in want}
    if extra:
        problems.append("%d unexpected events, e.g. %s" % (len(extra), sorted(extra)[:3]))
    dups = [i for i, n in counts.items() if n > 1]
    if dups:
        problems.append("%d events delivered twice, e.g. %s" % (len(dups), dups[:3]))
    return problems + build_order_problems(got, index)[:5]


def fault_topics(kafka, name, parts=3):
    """A fresh TopicSet (events, logs) plus a dead-letter topic; returns (TopicSet, dict for Broker)."""
    ts = TopicSet("ft%s" % uuid.uuid4().hex[:8], name, parts)
    topics = {"events": ts.events, "logs": ts.logs, "dlq": ts.events + ".dlq"}
    kafka.create_topics(dict(ts.specs(), **{topics["dlq"]: 1}))
    return ts, topics


# ---- a leader change on a three-node cluster --------------------------------------------------

@pytest.fixture
def cluster():
    c = KafkaCluster(pathlib.Path(tempfile.mkdtemp(prefix="firehose-kraft3-")))
    sys.stderr.write("\n[kafka] 3-node cluster %s up in %.1fs\n" % (c.bootstrap, c.started_in))
    try:
        yield c
    finally:
        c.destroy()


def test_the_leader_of_every_partition_dies_under_traffic_and_the_stream_goes_on(cluster, tmp_path):
    """A partition leader change loses nothing: on a three-node cluster (replication 3,
    min.insync.replicas 2) the node leading every event and log partition is SIGKILLed under
    steady traffic, comes back and leads again; the broker stays up, REST answers throughout, and
    a WebSocket subscriber gets every event exactly once in per-build order (resuming from its
    cursor if it was cut off); the view applies every event."""
    t0 = time.monotonic()
    ts = TopicSet("lc%s" % uuid.uuid4().hex[:8], "x", 3)
    topics = {"events": ts.events, "logs": ts.logs, "dlq": ts.events + ".dlq"}
    cluster.create_topics(dict(ts.specs(), **{topics["dlq"]: 1}), leader=1)
    led = lambda: [l for t in (ts.events, ts.logs) for l, _ in cluster.partitions(t).values()]
    b = ready_broker(cluster, topics, tmp_path)
    follower = feeder = rest = None
    timings = {}
    try:
        follower = Follower(ws_url(b))
        feeder = Feeder(cluster, ts, seed=71)
        feeder.wait_more(500)
        follower.wait_ids({e["id"] for e in list(ts.produced)}, 60, ws_url(b))

        rest = Prober(b.url + "api/v1/pending?limit=1")
        t_kill = time.monotonic()
        cluster.kill(1)
        wait_for(lambda: (lambda ls: len(ls) == 6 and 1 not in ls and -1 not in ls)(led()), 60,
                 interval=0.2, what="new leaders for every partition")
        timings["failover"] = time.monotonic() - t_kill
        # Everything produced so far (part of it retried by the producer across the failover)
        # and what follows reaches the subscriber through the new leaders.
        feeder.wait_more(500)
        follower.wait_ids({e["id"] for e in list(ts.produced)}, 90, ws_url(b))
        assert b.proc.poll() is None, "the broker must stay up"
        assert b.get("/healthz").status_code == 200
        timings["caught up"] = time.monotonic() - t_kill

        t_back = time.monotonic()
        cluster.restart(1)
        timings["restart"] = time.monotonic() - t_back
        wait_for(lambda: (lambda ps: len(ps) == 6 and all(isr == [1, 2, 3] for _, isr in ps))(
            list(cluster.partitions(ts.events).values()) + list(cluster.partitions(ts.logs).values())),
            60, interval=0.2, what="node 1 back in every ISR")
        timings["in sync"] = time.monotonic() - t_back
        cluster.elect_preferred_leaders()
        wait_for(lambda: led() == [1] * 6, 30, interval=0.2, what="node 1 leading again")
        timings["back"] = time.monotonic() - t_back
        answers = rest.stop()
        assert answers and set(answers) == {200}, collections.Counter(answers)
        feeder.wait_more(500)
        produced = feeder.stop()
        feeder = None
        follower.wait_ids({e["id"] for e in produced}, 90, ws_url(b))
        b.wait_applied(len(produced), timeout=90)
        assert b.json("/api/v1/builders")["builders"]
        timings["drained"] = time.monotonic() - t_back
    finally:
        if rest:
            rest.stop()
        if feeder:
            feeder.stop()
        if follower:
            follower.close()
        rc = b.stop()
    problems = stream_problems(follower.events(), produced, ts.index)
    assert not problems, "\n".join(problems)
    assert rc == 0
    print("leader change: %d events, %d resumes, test %.1fs (cluster start %.1fs); %s"
          % (len(produced), follower.resumes, time.monotonic() - t0, cluster.started_in,
             ", ".join("%s %.1fs" % kv for kv in timings.items())))


# ---- SIGKILL of the broker under load -----------------------------------------------------------

STREAM_FILTER = {"type": ["buildrequest.*", "build.*", "step.finished"]}
HOOK_FILTER = {"type": ["build.started", "build.finished"]}


def oracle_pending_running(events):
    """Build request ids that are pending and build ids that are running after events (in
    production order, which Kafka keeps per build request): pending = submitted, neither claimed
    (unless unclaimed again) nor complete; running = started, not finished."""
    state, started, finished = {}, set(), set()
    for e in events:
        d, t = e["data"], e["type"]
        if t == "buildrequest.new":
            state.setdefault(d["buildrequestid"], "pending")
        elif t in ("buildrequest.claimed", "buildrequest.unclaimed") and state.get(d["buildrequestid"]) != "done":
            state[d["buildrequestid"]] = "claimed" if t == "buildrequest.claimed" else "pending"
        elif t == "buildrequest.complete":
            state[d["buildrequestid"]] = "done"
        elif t == "build.started":
            started.add(d["buildid"])
        elif t == "build.finished":
            finished.add(d["buildid"])
    return {k for k, v in state.items() if v == "pending"}, started - finished


def test_sigkill_under_load_with_stream_webhooks_and_view_loses_nothing(kafka, tmp_path):
    """A broker SIGKILLed under load loses nothing: with a stream client, a webhook endpoint and
    the view all busy, after the restart the client resuming from its last cursor gets every later
    matching event with no gap and no duplicate, the webhook receiver gets every matching event at
    least once (a repeat keeps its webhook-id), and the view holds every event once (REST's
    pending and running lists are exactly what was produced)."""
    ts, topics = fault_topics(kafka, "kill")
    recv = Receiver()
    args = ["--view.enabled=true", "--webhooks.instance_id=kill-%s" % uuid.uuid4().hex[:6]]
    b = WebhookBroker(kafka, topics, tmp_path, extra=args).start()
    b2 = follower = feeder = None
    try:
        wait_for(lambda: b.get("/readyz").status_code == 200, 60, what="ready")
        ep = b.create(recv.url("/hook"), filter=HOOK_FILTER)
        b.wait_consumer()
        follower = Follower(ws_url(b), STREAM_FILTER)
        feeder = Feeder(kafka, ts, seed=83)
        wait_for(lambda: len(follower.events()) >= 300 and len(recv.got()) >= 30
                 and b.json("/api/v1/pending", {"limit": 1})["as_of"]["view_offsets"] >= 1000, 60,
                 what="stream, webhooks and view all busy")
        b.kill()
        at_kill = (len(follower.events()), len(recv.got()), feeder.produced())
        feeder.wait_more(500)                     # produced while no broker runs
        b2 = WebhookBroker(kafka, topics, tmp_path, store=b.store, group=b.group, extra=args).start()
        follower.resume(ws_url(b2))
        feeder.wait_more(500)
        produced = feeder.stop()
        feeder = None
        want = [e for e in produced if matches(STREAM_FILTER, e)]
        follower.wait_ids({e["id"] for e in want}, 90)
        hooked = {e["id"] for e in produced if matches(HOOK_FILTER, e)}
        delivered = lambda: {json.loads(r["body"])["data"]["id"]: r["id"] for r in recv.got("/hook")}
        wait_for(lambda: hooked <= set(delivered()), 90, what="every webhook delivery")
        b2.wait_applied(len(produced), timeout=90)
        pending = {r["buildrequestid"] for r in b2.json("/api/v1/pending", {"limit": 10000})["pending"]}
        running = {r["buildid"] for r in b2.json("/api/v1/running", {"limit": 10000})["running"]}
    finally:
        if feeder:
            feeder.stop()
        if follower:
            follower.close()
        rc = (b2 or b).stop()
        recv.close()
    problems = stream_problems(follower.events(), want, ts.index)
    assert not problems, "\n".join(problems)
    assert len(follower.before) < len(want), "the kill came after the last matching event"
    by_event = collections.defaultdict(set)
    for r in recv.got("/hook"):
        by_event[json.loads(r["body"])["data"]["id"]].add(r["id"])
    assert set(by_event) == hooked
    assert all(len(ids) == 1 for ids in by_event.values()), "a repeated delivery keeps its webhook-id"
    want_pending, want_running = oracle_pending_running(produced)
    assert (pending, running) == (want_pending, want_running)
    st = view_state(tmp_path / "broker-view.db")
    assert st["view_offsets"] == len(produced) and st["duplicates"] == 0 and st["invalid"] == 0, st
    assert st["events"] + st["skipped"] == len(produced), st
    assert rc == 0
    print("sigkill: at the kill the client had %d, the receiver %d deliveries, %d produced; finally "
          "%d produced, %d matching, %d webhook deliveries for %d events, endpoint %s"
          % (at_kill + (len(produced), len(want), len(recv.got("/hook")), len(hooked), ep["id"])))


# ---- oversized input ----------------------------------------------------------------------------

def padded_event(size, n):
    """A valid build.updated whose JSON is exactly size bytes (state_string takes the padding)."""
    ev = {"specversion": "1.0", "id": "big-%d-%s" % (n, uuid.uuid4().hex[:8]), "source": "buildbot://master-1",
          "type": "build.updated", "time": "2026-11-22T05:00:00.000Z", "subject": "builds/1",
          "datacontenttype": "application/json", "master": "master-1", "seq": 1,
          "data": {"buildrequestid": 999999999, "buildid": 999999999, "builder": "linux", "builderid": 1,
                   "branch": "main",
                   "revision": "r", "repository": "", "project": "", "codebase": "", "owner": "",
                   "state_string": ""}}
    base = len(json.dumps(ev, separators=(",", ":")))
    ev["data"]["state_string"] = "x" * (size - base)
    raw = json.dumps(ev, separators=(",", ":"))
    assert len(raw) == size
    return ev, raw


def closed_with(ws, act):
    """Runs act(ws) and returns the close code the broker answered with."""
    try:
        act(ws)
    except OSError:
        pass                                    # the broker may close before all is sent
    ws.read_until_close(timeout=10)
    return ws.close_frame and ws.close_frame[0]


def test_oversized_records_messages_and_requests_get_their_documented_outcome(kafka, tmp_path):
    """Oversized input gets its documented outcome and nobody else notices: a record over
    events.max_bytes goes to the dead-letter topic with its reason and is counted (one too large
    even for that topic goes there cut short, marked firehose-truncated); a client message over
    stream.max_message_bytes closes that connection with 1009, also when it arrives in fragments
    or its header merely announces the size; a request body over http.max_body_bytes gets 413,
    headers over the server's request buffer 431 and a request line over it 414. Meanwhile a
    subscriber gets every other event exactly once and REST answers."""
    ts, topics = fault_topics(kafka, "big")
    b = ready_broker(kafka, topics, tmp_path, "--events.max_bytes=4096", "--stream.max_message_bytes=1024",
                     "--http.max_body_bytes=2048", "--auth.admin_token=" + ADMIN)
    follower = None
    try:
        follower = Follower(ws_url(b))
        first = gen_events.generate(300, seed=91)
        emit_events(kafka, ts, first)
        at_limit, at_limit_raw = padded_event(4096, 1)
        over_raw = padded_event(4097, 2)[1]
        huge_raw = padded_event(1040000, 3)[1]
        lines = tmp_path / "big.txt"
        lines.write_text("\n".join([at_limit_raw, over_raw, huge_raw]) + "\n")
        # kcat bypasses firehose-emit's own limit; Kafka takes records up to about 1 MiB
        subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", ts.events, "-X", "message.max.bytes=1048576",
                        "-l", str(lines)], check=True, timeout=60)
        ts.record([at_limit])

        other = '{reason="other"}'
        closes_before = _metric(b, "firehose_stream_disconnects_total", other)
        frames = {
            "one message over the limit": lambda w: w.send_text(json.dumps({"op": "ping", "pad": "x" * 2000})),
            "fragments over the limit": lambda w: (w.send_frame(OP_TEXT, b" " * 600, fin=False),
                                                   w.send_frame(OP_CONT, b" " * 600)),
            "an announced 4 GiB frame": lambda w: w.send_frame(OP_TEXT, b"", length_override=1 << 32),
        }
        for what, act in frames.items():
            ws = RawWs("127.0.0.1", port_of(b))
            try:
                assert closed_with(ws, act) == 1009, "%s: closed with %s" % (what, ws.close_frame)
            finally:
                ws.close()
        wait_for(lambda: _metric(b, "firehose_stream_disconnects_total", other) >= closes_before + len(frames), 10,
                 what="the 1009 closes counted")

        r = requests.post(b.url + "api/v1/ingest/buildbot", data=b"{" + b" " * 3000 + b"}", headers=AUTH, timeout=10)
        assert r.status_code == 413 and r.json()["error"] == "body_too_large", r.text
        assert requests.get(b.url + "api/v1/pending", headers={"X-Pad": "a" * 40000}, timeout=10).status_code == 431
        assert requests.get(b.url + "api/v1/pending?builder=" + "a" * 40000, timeout=10).status_code == 414
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "X-Pad": "a" * 40000}
        assert requests.get(ws_url(b).replace("ws:", "http:"), headers=upgrade, timeout=10).status_code == 431
        assert _metric(b, "firehose_stream_connections") == 1, "only the follower is connected"

        second = gen_events.generate(600, seed=92)[300:]
        emit_events(kafka, ts, second)
        want = first + [at_limit] + second
        follower.wait_ids({e["id"] for e in want}, 60)
        wait_for(lambda: _metric(b, "firehose_dlq_total") >= 2, 60, what="two records dead-lettered")
        assert b.json("/api/v1/pending", {"limit": 1})["as_of"]["view_offsets"] >= len(want) + 2
        assert follower.client.close_code is None, "the subscriber was not disturbed"
        assert _metric(b, "firehose_dlq_failed_total") == 0
        got = follower.events()
    finally:
        if follower:
            follower.close()
        rc = b.stop()
    problems = stream_problems(got, want, ts.index)
    assert not problems, "\n".join(problems)
    dlq = subprocess.run(["kcat", "-C", "-b", kafka.bootstrap, "-t", topics["dlq"], "-e", "-q", "-J"],
                         stdout=subprocess.PIPE, text=True, check=True, timeout=60).stdout.splitlines()
    records = sorted(((dict(zip(r["headers"][::2], r["headers"][1::2])), len(r["payload"]))
                      for r in map(json.loads, dlq)), key=lambda r: -r[1])
    assert [(h["firehose-error"], h.get("firehose-truncated"), n) for h, n in records] == [
        ("record is 1040000 bytes, over the 4096-byte limit", "1040000", 65536),
        ("record is 4097 bytes, over the 4096-byte limit", None, 4097)], records
    assert all(h["firehose-source-topic"] == ts.events for h, _ in records)
    assert rc == 0


# ---- connection storms --------------------------------------------------------------------------

STREAM_MAX, HTTP_MAX = 12, 40


def storm_ws(port):
    """One WebSocket of a storm: 'served' when it can subscribe and gets a pong, else its close code."""
    ws = RawWs("127.0.0.1", port)
    try:
        ws.send_json({"op": "subscribe", "id": "s", "filter": {"builder": "nobody"}})
        ws.send_json({"op": "ping"})
        ops = []
        while "pong" not in ops:
            m = ws.recv_message(timeout=10)
            if m is None:
                ws.close()
                return ws.close_frame[0], None
            ops.append(m["op"])
        assert ops == ["subscribed", "pong"], ops
        return "served", ws
    except (Closed, OSError):
        ws.read_until_close(timeout=5)
        ws.close()
        return ws.close_frame and ws.close_frame[0], None


def sse_refused(url):
    """An SSE request past the limit: 200, then the stream ends after its opening comment."""
    with requests.get(url + "v1/events", stream=True, timeout=(5, 10)) as r:
        body = r.raw.read()
    return r.status_code == 200 and body.startswith(b": firehose stream") and b"\ndata:" not in body


def test_a_connection_storm_past_the_limits_is_refused_and_the_broker_recovers(kafka, tmp_path):
    """A storm of connections past the limits gets the documented refusals and nobody else
    suffers: past stream.max_connections a WebSocket is closed with 4029 right after the upgrade
    and an SSE stream ends after its opening comment, while the connections within the limit are
    served and the subscribers already there keep receiving every event; past
    http.max_connections a new connection waits until one closes. Afterwards the stream count on
    /metrics returns to zero and new clients are accepted."""
    ts, topics = fault_topics(kafka, "storm")
    b = ready_broker(kafka, topics, tmp_path, "--stream.max_connections=%d" % STREAM_MAX,
                     "--http.max_connections=%d" % HTTP_MAX, "--stream.heartbeat_s=1")
    port = port_of(b)
    conns = lambda: _metric(b, "firehose_stream_connections")
    follower = sse = feeder = None
    served, idle = [], []
    try:
        follower = Follower(ws_url(b))
        sse = Sse(b)
        wait_for(lambda: conns() == 2, 10, what="the two subscribers connected")
        feeder = Feeder(kafka, ts, seed=97, chunk=20)
        refused_before = _metric(b, "firehose_stream_disconnects_total", '{reason="other"}')

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: storm_ws(port), range(30)))
            sse_results = list(pool.map(lambda _: sse_refused(b.url), range(6)))
        served = [ws for what, ws in results if what == "served"]
        codes = collections.Counter(what for what, _ in results)
        assert codes == {"served": STREAM_MAX - 2, 4029: 30 - (STREAM_MAX - 2)}, codes
        assert all(sse_results), "every SSE request past the limit ends after its opening comment"
        assert conns() == STREAM_MAX
        # counted by the stream thread as it refuses, a moment after the client saw the refusal
        refused = refused_before + 30 - len(served) + 6
        wait_for(lambda: _metric(b, "firehose_stream_disconnects_total", '{reason="other"}') == refused, 10,
                 what="%d refusals counted in firehose_stream_disconnects_total" % refused)
        assert b.json("/api/v1/builders") is not None, "REST answers at the stream limit"

        # Past http.max_connections (stream connections count) the server stops accepting: a new
        # request waits in the listen queue until a connection closes.
        for _ in range(HTTP_MAX - STREAM_MAX + 5):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        probe = {}
        waiter = threading.Thread(target=lambda: probe.update(r=requests.get(b.url + "healthz", timeout=60)))
        waiter.start()
        waiter.join(1.0)
        assert "r" not in probe, "a request past http.max_connections was answered at once"
        for s in idle:
            s.close()
        idle = []
        waiter.join(30)
        assert probe["r"].status_code == 200, "the waiting request is served once connections close"

        produced = feeder.stop()
        feeder = None
        follower.wait_ids({e["id"] for e in produced}, 60)
        sse.wait(lambda s: {e["data"]["id"] for e in s.events} >= {e["id"] for e in produced}, 60,
                 what="every event on the SSE subscriber")
        for ws in served:
            ws.close()
        served = []
        wait_for(lambda: conns() == 2, 10, what="the storm's connections gone")
        got_ws, got_sse = follower.events(), [e["data"] for e in sse.events]
        follower.close()
        sse.close()
        wait_for(lambda: conns() == 0, 10, what="no stream connection left")

        late = Client(types.SimpleNamespace(ws_url=ws_url(b)))
        late.subscribe("late", {})
        late_sse = Sse(b)
        wait_for(lambda: conns() == 2, 10, what="new clients accepted")
        more = gen_events.generate(50, seed=98)
        emit_events(kafka, ts, more)
        late.wait_events("late", len(more))
        late_sse.wait_count(len(more))
        late.close()
        late_sse.close()
        wait_for(lambda: conns() == 0, 10, what="the new clients gone")
    finally:
        for s in idle + [ws for ws in served]:
            s.close()
        if feeder:
            feeder.stop()
        if follower:
            follower.close()
        if sse:
            sse.close()
        rc = b.stop()
    for what, got in (("WebSocket", got_ws), ("SSE", got_sse)):
        problems = stream_problems(got, produced, ts.index)
        assert not problems, "%s subscriber: %s" % (what, "\n".join(problems))
    assert rc == 0


# ---- start-up -------------------------------------------------------------------------------------

def test_a_first_start_creates_the_topics_and_serves_at_once(kafka, tmp_path):
    """A broker started on a cluster without its topics creates them (topics.create, the
    default) and serves at once: it waits for the new partitions' leaders, so the stream's
    start-up does not fail with "not leader for partition"."""
    prefix = "fresh%s" % uuid.uuid4().hex[:8]
    ts = TopicSet(prefix, "x", 3)
    topics = {"events": ts.events, "logs": ts.logs, "dlq": prefix + ".dlq"}
    b = ready_broker(kafka, topics, tmp_path, "--topics.create=true", "--topics.partitions=3")
    follower = None
    try:
        follower = Follower(ws_url(b))
        evs = gen_events.generate(100, seed=99)
        emit_events(kafka, ts, evs)
        follower.wait_ids({e["id"] for e in evs}, 30)
    finally:
        if follower:
            follower.close()
        rc = b.stop()
    assert "event=stream.start" not in b.log(), b.log()[-2000:]
    assert rc == 0
