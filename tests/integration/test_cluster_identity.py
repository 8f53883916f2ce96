"""Local state knows which Kafka cluster it came from: a view file built from one cluster and
opened by a broker on another is rebuilt from the new cluster's topics (REST answers only its
data, the log names both cluster ids), and a webhooks file holding one cluster's pending
deliveries makes a broker on another cluster refuse to start webhooks (nothing from the first
cluster's state reaches the receiver; the log names both ids, the file and what to do). An
embedded Kafka is a new cluster at every start: its webhooks file keeps its endpoints and drops
the earlier run's pending deliveries.

Two real Kafkas: the session's `kafka` and a second single-node Kafka started the same way
(tests/kafka/kafka.sh start), with topics of the same names on both. Loopback only.
"""

import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests

from conftest import KAFKA_SH, Kafka, wait_for
from view_helpers import BROKER, Broker, Script, emit, write_ndjson
from webhook_support import ADMIN, AUTH, Receiver, WebhookBroker

REPO = "https://git.example.org/firehose.git"


@pytest.fixture(scope="module")
def kafka2():
    """A second single-node Kafka: another cluster, with its own cluster id."""
    state = pathlib.Path(tempfile.mkdtemp(prefix="firehose-kafka2-"))
    env = dict(os.environ, KAFKA_WATCH_PID=str(os.getpid()))
    t0 = time.monotonic()
    proc = subprocess.run([str(KAFKA_SH), "start", str(state)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300, env=env)
    if proc.returncode != 0:
        subprocess.run([str(KAFKA_SH), "stop", str(state)], timeout=120)
        shutil.rmtree(state, ignore_errors=True)
        pytest.fail("kafka.sh start (second cluster) failed (%d):\n%s" % (proc.returncode, proc.stderr[-4000:]))
    sys.stderr.write("\n[kafka2] %s up in %.1fs\n" % (proc.stdout.strip().splitlines()[-1], time.monotonic() - t0))
    try:
        yield Kafka(proc.stdout.strip().splitlines()[-1], state)
    finally:
        subprocess.run([str(KAFKA_SH), "stop", str(state)], timeout=120,
                       env=dict(os.environ, KAFKA_STOP_TIMEOUT="5"), stdout=subprocess.DEVNULL)
        shutil.rmtree(state, ignore_errors=True)


def same_topics(prefix, *clusters):
    """The same topic names on every cluster given."""
    t = {"events": prefix + ".events", "logs": prefix + ".logs", "dlq": prefix + ".dlq"}
    for k in clusters:
        k.create_topics({t["events"]: 2, t["logs"]: 1, t["dlq"]: 1})
    return t


def started_builds(builder, buildids, t0):
    """build.started events of one builder, one per build id."""
    s = Script(t0)
    for i, bid in enumerate(buildids):
        s.add("build.started", {"buildrequestid": bid, "buildid": bid, "builder": builder, "builderid": bid,
                                "branch": "main", "revision": "%040x" % bid, "repository": REPO,
                                "project": "firehose", "codebase": "", "owner": "", "number": i + 1,
                                "worker": "w-1", "started_at": t0 + i}, i, subject="builds/%d" % bid)
    return s.events


def cluster_id(broker):
    m = re.search(r"event=kafka\.cluster id=(\S+)", broker.log())
    assert m, "no kafka.cluster line:\n%s" % broker.log()[-2000:]
    return m.group(1)


def test_view_built_from_one_cluster_is_rebuilt_from_another(kafka, kafka2, tmp_path):
    """Cluster 1's builds are in the view; restarted on cluster 2 with the same file, REST answers
    only cluster 2's builds and the log names both ids."""
    topics = same_topics("ident-v-%s" % uuid.uuid4().hex[:8], kafka, kafka2)
    view = tmp_path / "view.db"
    t0 = time.time() - 600
    one, two = started_builds("c1", [101, 102, 103], t0), started_builds("c2", [201, 202], t0)
    write_ndjson(tmp_path / "one.ndjson", one)
    write_ndjson(tmp_path / "two.ndjson", two)
    emit(kafka, topics, tmp_path / "one.ndjson", expected=len(one))
    emit(kafka2, topics, tmp_path / "two.ndjson", expected=len(two))

    b1 = Broker(kafka, topics, view, tmp_path / "b1.log", extra=["--webhooks.enabled=false"]).start()
    try:
        b1.wait_applied(len(one))
        assert sorted(x["buildid"] for x in b1.json("/api/v1/builds")["builds"]) == [101, 102, 103]
    finally:
        assert b1.stop() == 0
    id1 = cluster_id(b1)

    b2 = Broker(kafka2, topics, view, tmp_path / "b2.log", extra=["--webhooks.enabled=false"]).start()
    try:
        b2.wait_applied(len(two))
        assert sorted(x["buildid"] for x in b2.json("/api/v1/builds")["builds"]) == [201, 202]
    finally:
        assert b2.stop() == 0
    id2 = cluster_id(b2)
    assert id1 != id2
    lines = [l for l in b2.log().splitlines() if "event=view.rebuild" in l]
    assert len(lines) == 1, b2.log()[-3000:]
    assert "cluster_id=%s" % id2 in lines[0] and "built_from=%s" % id1 in lines[0], lines[0]


def test_webhooks_file_of_another_cluster_is_refused_and_nothing_is_delivered(kafka, kafka2, tmp_path):
    """Pending deliveries made from cluster 1's events stay undelivered when a broker on cluster 2
    opens the same webhooks file: it exits naming both ids, the file and the way out."""
    topics = same_topics("ident-w-%s" % uuid.uuid4().hex[:8], kafka, kafka2)
    store = tmp_path / "webhooks.db"
    recv = Receiver(lambda path, msg_id, n: (500, {}, 0))
    try:
        # a second attempt only after 10 minutes: the deliveries stay pending
        b1 = WebhookBroker(kafka, topics, tmp_path, name="w1", store=store, schedule="0,600").start()
        try:
            b1.wait_consumer()
            b1.create(recv.url("/hook"), filter={"type": "build.started"})
            events = started_builds("c1", [301, 302, 303], time.time() - 60)
            write_ndjson(tmp_path / "w.ndjson", events)
            emit(kafka, topics, tmp_path / "w.ndjson", expected=len(events))
            wait_for(lambda: len(recv.got("/hook", ok_only=False)) >= len(events), 60,
                     what="a first (failed) attempt of every delivery")
        finally:
            assert b1.stop() == 0
        id1 = cluster_id(b1)
        con = sqlite3.connect(str(store))
        pending = con.execute("SELECT count(*) FROM deliveries WHERE state = 0").fetchone()[0]
        con.close()
        assert pending == len(events)

        # From here on the receiver would accept anything: nothing may reach it.
        recv.behaviour = lambda path, msg_id, n: (200, {}, 0)
        before = len(recv.got(ok_only=False))
        b2 = WebhookBroker(kafka2, topics, tmp_path, name="w2", store=store, schedule="0,600")
        with pytest.raises(AssertionError, match="broker exited 1"):
            b2.start()
        b2._close()
        log = b2.log()
        id2 = cluster_id(b2)
        assert id1 != id2
        err = [l for l in log.splitlines() if "event=webhook.start" in l]
        assert len(err) == 1, log[-3000:]
        for part in (str(store), "cluster %s" % id1, "cluster %s" % id2, "Move or delete"):
            assert part in err[0], (part, err[0])
        assert len(recv.got(ok_only=False)) == before
        con = sqlite3.connect(str(store))
        assert con.execute("SELECT count(*) FROM deliveries WHERE state = 0").fetchone()[0] == pending
        con.close()
    finally:
        recv.close()


def start_embedded(args, log_path):
    """bin/firehose-broker on its embedded Kafka: (process, HTTP URL, Kafka bootstrap)."""
    log = open(log_path, "ab")
    skip = log.tell()
    proc = subprocess.Popen([str(BROKER), "--listen=127.0.0.1:0", "--view.enabled=false"] + args,
                            stdout=subprocess.DEVNULL, stderr=log)
    log.close()

    def up():
        assert proc.poll() is None, pathlib.Path(log_path).read_text()[-3000:]
        text = pathlib.Path(log_path).read_text()[skip:]
        url = re.search(r"event=http\.listening url=(\S+)", text)
        boot = re.search(r"event=kafka\.embedded bootstrap=(\S+)", text)
        return url and boot and (url.group(1), boot.group(1))
    url, boot = wait_for(up, 30, what="the embedded broker")
    return proc, url, boot


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_embedded_kafka_restart_drops_the_earlier_runs_pending_deliveries(tmp_path):
    """Every embedded Kafka is a new cluster whose events die with it: a webhooks file of an
    earlier embedded run keeps its endpoints, and its pending deliveries are dropped, not made."""
    store, log = tmp_path / "webhooks.db", tmp_path / "embedded.log"
    args = ["--auth.admin_token=" + ADMIN, "--webhooks.path=%s" % store, "--webhooks.retry_schedule=0,600",
            "--webhooks.allow_cidrs=127.0.0.1/32", "--webhooks.scan_interval_ms=200"]
    topics = {"events": "firehose.events", "logs": "firehose.logs", "dlq": "firehose.dlq"}
    recv = Receiver(lambda path, msg_id, n: (500, {}, 0))
    try:
        proc, url, boot = start_embedded(args, log)
        try:
            r = requests.post(url + "api/v1/webhooks", json={"url": recv.url("/hook"), "filter": {"type": "build.started"}},
                              headers=AUTH, timeout=30)
            assert r.status_code == 201, r.text
            events = started_builds("e1", [401, 402], time.time() - 60)
            write_ndjson(tmp_path / "e.ndjson", events)
            emit(Kafka(boot), topics, tmp_path / "e.ndjson", expected=len(events))
            wait_for(lambda: len(recv.got("/hook", ok_only=False)) >= len(events), 60,
                     what="a first (failed) attempt of every delivery")
        finally:
            stop(proc)
        con = sqlite3.connect(str(store))
        assert con.execute("SELECT count(*) FROM deliveries WHERE state = 0").fetchone()[0] == len(events)
        con.close()
        first = re.findall(r"event=kafka\.cluster id=(\S+)", log.read_text())[-1]

        recv.behaviour = lambda path, msg_id, n: (200, {}, 0)
        before = len(recv.got(ok_only=False))
        proc, url, _ = start_embedded(args, log)
        try:
            second = re.findall(r"event=kafka\.cluster id=(\S+)", log.read_text())[-1]
            assert first != second and first.startswith("mockCluster") and second.startswith("mockCluster")
            line = [l for l in log.read_text().splitlines() if "event=webhook.cluster" in l]
            assert len(line) == 1 and "dropped=%d" % len(events) in line[0], line
            assert "cluster_id=%s was=%s" % (second, first) in line[0], line[0]
            listed = requests.get(url + "api/v1/webhooks", headers=AUTH, timeout=30).json()["webhooks"]
            assert [w["url"] for w in listed] == [recv.url("/hook")]
        finally:
            stop(proc)
        con = sqlite3.connect(str(store))
        assert con.execute("SELECT count(*) FROM deliveries WHERE state = 0").fetchone()[0] == 0
        con.close()
        assert len(recv.got(ok_only=False)) == before
    finally:
        recv.close()
