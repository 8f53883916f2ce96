"""firehose-tail against a real bin/firehose-broker on real Apache Kafka.

--wait build / --wait revision exit codes for simulated builds that finish green or red, cursor
resume without a gap or a duplicate, and reconnecting across a broker restart.

Each test uses a fresh broker.
"""

import collections
import copy
import json
import os
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import BIN, wait_for
import gen_events
from stream_support import Broker, TopicSet, emit, wait_topics

TAIL = BIN / "firehose-tail"
PARTITIONS = 3
DLQ = "tail.dlq"


@pytest.fixture(scope="module")
def topics(kafka):
    if not TAIL.exists():
        pytest.fail("%s does not exist: run `make` first" % TAIL)
    ts = TopicSet("tail", "main", PARTITIONS)
    specs = dict(ts.specs(), **{DLQ: 1})
    kafka.create_topics(specs)
    wait_topics(kafka.bootstrap, specs)
    return ts


_N = [0]


@pytest.fixture
def broker(kafka, topics, tmp_path):
    """A fresh broker per test (a new consumer group, so its ring holds everything in the topics)."""
    made = []

    def make(args=()):
        _N[0] += 1
        b = Broker(kafka, topics, DLQ, "tail%d-%d" % (os.getpid(), _N[0]), tmp_path, args=list(args))
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


class Tail:
    """bin/firehose-tail as a subprocess; stdout and stderr are read by threads."""

    def __init__(self, url, *args):
        self.cmd = [str(TAIL), "--url", url, "--format", "ndjson"] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, f, into):
        for line in f:
            with self.lock:
                into.append(line.decode("utf-8", "replace").rstrip("\n"))

    def events(self):
        with self.lock:
            return [json.loads(l) for l in self.out if l]

    def stderr(self):
        with self.lock:
            return "\n".join(self.err)

    def wait_stderr(self, text, timeout=30):
        return wait_for(lambda: text in self.stderr() or self.proc.poll() is not None, timeout,
                        interval=0.02, what="tail to say %r" % text)

    def wait(self, timeout=60):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("firehose-tail did not exit within %ss; stderr:\n%s" % (timeout, self.stderr()))
        for t in self.threads:
            t.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def build_events(brid, results, revision=None, builder="tail-linux-rel", owner="me@example.com"):
    """One build request's life as firehose events, ending in build.finished with results."""
    now = time.time()
    ctx = {"buildrequestid": brid, "builder": builder, "builderid": 900, "branch": "try",
           "revision": revision or "%040x" % brid, "repository": "https://git.example.org/x.git",
           "project": "x", "codebase": "", "owner": owner}
    bctx = dict(ctx, buildid=brid + 500000)
    seq = [0]

    def ev(t, data, subject):
        seq[0] += 1
        return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "buildbot://tail-master",
                "type": t, "time": gen_events.rfc3339_ms(now + seq[0] / 1000), "subject": subject,
                "datacontenttype": "application/json", "master": "tail-master-%d" % brid, "seq": seq[0],
                "data": data}
    br = "buildrequests/%d" % brid
    b = "builds/%d" % (brid + 500000)
    return [
        ev("buildrequest.new", dict(ctx, buildsetid=brid, priority=0, submitted_at=now, reason="test"), br),
        ev("buildrequest.claimed", dict(ctx, claimed_at=now, claimed_by_master="tail-master"), br),
        ev("build.started", dict(bctx, number=1, worker="w1", started_at=now), b),
        ev("step.started", dict(bctx, stepid=brid, number=0, name="compile", started_at=now), b + "/steps/1"),
        ev("step.finished", dict(bctx, stepid=brid, number=0, name="compile", complete_at=now + 1,
                                 results=results, state_string="compile", duration_s=1.0, urls=[],
                                 hidden=False), b + "/steps/1"),
        ev("build.finished", dict(bctx, number=1, complete_at=now + 2, results=results,
                                  state_string="done", duration_s=2.0), b),
        ev("buildrequest.complete", dict(bctx, complete_at=now + 2, results=results), br),
    ]


_BRID = [7_000_000 + (os.getpid() % 1000) * 1000]


def next_brid():
    _BRID[0] += 1
    return _BRID[0]


@pytest.mark.parametrize("results,want", [(0, 0), (1, 0), (2, 1), (4, 1)])
def test_wait_build_exit_status_follows_the_build_results(kafka, topics, broker, results, want):
    """--wait build exits 0 when the matching build finishes green (results 0/1) and 1 when it does not."""
    b = broker()
    brid = next_brid()
    t = Tail(b.ws_url, "--buildrequestid", brid, "--wait", "build", "--timeout", "60")
    try:
        t.wait_stderr("firehose-tail: subscribed")
        evs = build_events(brid, results)
        emit(kafka, topics, evs)
        rc = t.wait(60)
        assert rc == want, "exit %d, want %d; stderr:\n%s" % (rc, want, t.stderr())
        got = t.events()
        fin = [e for e in got if e["type"] == "build.finished"]
        assert [e["id"] for e in fin] == [evs[5]["id"]]
        # everything printed is this build's, in production order (the first may be lost to BUG_MARK)
        ids = [e["id"] for e in got]
        want_ids = [e["id"] for e in evs[:6]]
        assert ids == want_ids[len(want_ids) - len(ids):]
    finally:
        t.kill()


@pytest.mark.parametrize("second,want", [(0, 0), (2, 1)])
def test_wait_revision_waits_for_every_request_of_the_revision(kafka, topics, broker, second, want):
    """--wait revision=REV exits once every request of REV has completed: 0 when all are green, 1 otherwise."""
    rev = uuid.uuid4().hex + "abcdefgh"
    b1, b2 = next_brid(), next_brid()
    first = build_events(b1, 0, revision=rev, builder="tail-linux-rel")
    other = build_events(b2, second, revision=rev, builder="tail-mac-rel")
    b = broker()
    t = Tail(b.ws_url, "--wait", "revision=" + rev, "--timeout", "60", "--tail.settle_ms=500")
    try:
        t.wait_stderr("firehose-tail: subscribed")
        # both requests start (the very first event may be lost to BUG_MARK: the request is
        # still known from its next events)
        emit(kafka, topics, first[:3] + other[:3])
        wait_for(lambda: len(t.events()) >= 5 or t.proc.poll() is not None, 30, interval=0.05,
                 what="the tail to print the revision's first events")
        assert t.proc.poll() is None, "exited early: %s" % t.stderr()
        emit(kafka, topics, first[3:])
        wait_for(lambda: any(e["type"] == "buildrequest.complete" for e in t.events()) or
                 t.proc.poll() is not None, 30, interval=0.05, what="the first completion")
        assert t.proc.poll() is None, "exited before every request completed: %s" % t.stderr()
        emit(kafka, topics, other[3:])
        rc = t.wait(60)
        assert rc == want, "exit %d, want %d; stderr:\n%s" % (rc, want, t.stderr())
        assert {e["data"]["revision"] for e in t.events()} == {rev}
    finally:
        t.kill()


def test_cursor_file_resume_has_no_gap_and_no_duplicate(kafka, topics, broker, tmp_path):
    """Two runs with one --cursor-file (the first stops after 250 events) together print every event exactly once, in order."""
    b = broker()
    evs = gen_events.generate(600, seed=7171, exclude_types="log.*")
    for e in evs:   # this test's own events, told apart by master
        e["master"] = "tail-cursor"
    before = b.metric("firehose_stream_events_total")
    emit(kafka, topics, evs)
    # produced after the broker started, so they are in its ring: the second run's resume is
    # served from memory, and the only read from Kafka is the first run's "earliest"
    wait_for(lambda: b.metric("firehose_stream_events_total") >= before + len(evs), 30,
             what="the broker to read every record")
    cur = tmp_path / "cursor"
    t1 = Tail(b.ws_url, "--from", "earliest", "--master", "tail-cursor", "--cursor-file", cur,
              "--max-events", 250, "--timeout", "60")
    assert t1.wait(60) == 0, t1.stderr()
    first = t1.events()
    assert len(first) == 250
    saved = cur.read_text().strip()
    assert saved, "no cursor saved"
    t2 = Tail(b.ws_url, "--master", "tail-cursor", "--cursor-file", cur, "--max-events", 350,
              "--timeout", "60")
    assert t2.wait(60) == 0, t2.stderr()
    second = t2.events()
    ids = [e["id"] for e in first + second]
    assert collections.Counter(ids) == collections.Counter(e["id"] for e in evs), "gap or duplicate"
    # per build request (one partition each) the order is the production order
    index = {e["id"]: i for i, e in enumerate(evs)}
    last = {}
    for e in first + second:
        k = (e["data"].get("buildrequestid"), e["type"].startswith("log."))
        if k[0] is not None:
            assert index[e["id"]] > last.get(k, -1)
            last[k] = index[e["id"]]
    assert cur.read_text().strip() != saved


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_reconnects_across_a_broker_restart_and_resumes_from_its_cursor(kafka, topics, broker):
    """The broker goes away mid-stream and comes back: tail reconnects with backoff and prints every event once."""
    port = free_port()
    batch1 = gen_events.generate(300, seed=8181, exclude_types="log.*")
    batch2 = gen_events.generate(600, seed=8181, exclude_types="log.*")[300:]
    for e in batch1 + batch2:
        e["master"] = "tail-restart"
    emit(kafka, topics, batch1)
    b1 = broker(["--listen=127.0.0.1:%d" % port])
    t = Tail("ws://127.0.0.1:%d" % port, "--from", "earliest", "--master", "tail-restart",
             "--max-events", 600, "--timeout", "90", "--tail.backoff_ms=50", "--tail.backoff_max_ms=200")
    try:
        wait_for(lambda: len(t.events()) >= 300, 30, interval=0.05, what="the first batch")
        b1.stop()
        t.wait_stderr("reconnecting")
        # The second batch is in Kafka before the second broker starts: the stream starts at the
        # head, so the resume is one catch-up from Kafka that ends where the batch ends, and
        # nothing is produced once it is live (BUG_MARK).
        emit(kafka, topics, batch2)
        broker(["--listen=127.0.0.1:%d" % port])
        rc = t.wait(60)
        assert rc == 0, "exit %d; stderr:\n%s" % (rc, t.stderr())
        ids = [e["id"] for e in t.events()]
        assert collections.Counter(ids) == collections.Counter(e["id"] for e in batch1 + batch2)
        assert "resuming from the last cursor" in t.stderr()
    finally:
        t.kill()


def test_refusals_are_fatal_and_documented(kafka, topics, broker):
    """A 401 from the broker and a filter the broker refuses end the tail with status 2; bad flags with 64."""
    b = broker()
    auth = Broker(kafka, topics, DLQ, "tail-auth-%d" % os.getpid(), b.log_path.parent, anonymous=False)
    try:
        t = Tail(auth.ws_url, "--timeout", "30")
        assert t.wait(30) == 2
        assert "401" in t.stderr()
    finally:
        auth.stop()
    t = Tail(b.ws_url, "--results", "9")
    assert t.wait(30) == 64 and "filter.results" in t.stderr()
    t = Tail("http://127.0.0.1:1/")
    assert t.wait(30) == 64 and "wss://" in t.stderr()
    r = subprocess.run([str(TAIL), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "wss://" in r.stdout and "--cursor-file" in r.stdout
    assert "--insecure" in r.stdout and "DANGEROUS" in r.stdout
