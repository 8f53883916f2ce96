"""A partition added to the events topic while the broker runs is read without a restart.

Real Kafka (conftest.py); the partition is added with Kafka's own TopicCommand (--alter
--partitions), as an operator would with bin/kafka-topics.sh. The broker runs the stream, the view
and webhooks; events produced into the new partition (kcat -p) must reach (a) a WebSocket
subscriber of /v1/stream, (b) the view's REST answers and (c) a webhook endpoint. A resume cursor
taken before the partition was added is still accepted afterwards, the new partition read from its
beginning. Every wait is a poll with a deadline; all traffic is on loopback.
"""

import json
import re
import subprocess
import threading
import time
import uuid

import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import ROOT, wait_for
from stream_support import wait_topics
from view_helpers import Broker, Script, emit, write_ndjson
from webhook_support import ADMIN, AUTH, Receiver, webhook_args

R = "https://git.example.org/firehose.git"
ENC = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def add_partitions(kafka, topic, count):
    """TopicCommand --alter --partitions, from the jars the fixtures run Kafka with."""
    lib = ROOT / "tests" / "kafka" / "lib"
    r = subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1",
                        "-Dlog4j.configuration=file:%s" % (ROOT / "tests" / "kafka" / "tools-log4j.properties"),
                        "-cp", str(lib / "*"), "org.apache.kafka.tools.TopicCommand",
                        "--bootstrap-server", kafka.bootstrap, "--alter", "--topic", topic,
                        "--partitions", str(count)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "TopicCommand --alter: %s %s" % (r.stdout[-2000:], r.stderr[-2000:])


def produce_to(kafka, topic, partition, events):
    """Produces events to one partition with kcat -p (metadata of a just-added partition can take
    a moment to reach every broker: retried within a deadline)."""
    data = "".join(ENC(e) + "\n" for e in events).encode()

    def once():
        r = subprocess.run(["kcat", "-P", "-b", kafka.bootstrap, "-t", topic, "-p", str(partition),
                            "-X", "topic.request.required.acks=all"], input=data, capture_output=True,
                           timeout=60)
        return r.returncode == 0
    wait_for(once, 60, interval=0.5, what="kcat to produce to %s/%d" % (topic, partition))


def build(script, brid, buildid, t):
    """A build request and its build starting, as a CI would send them."""
    c = {"buildrequestid": brid, "builder": "linux", "builderid": 1, "branch": "main",
         "revision": uuid.uuid5(uuid.NAMESPACE_URL, "r%d" % brid).hex + "00000000", "repository": R,
         "project": "firehose", "codebase": "", "owner": ""}
    a = script.add("buildrequest.new", dict(c, buildsetid=brid, priority=0, submitted_at=script.t0 + t,
                                            reason="scripted"), t, subject="buildrequests/%d" % brid)
    b = script.add("build.started", dict(c, buildid=buildid, number=buildid, worker="w-1",
                                         started_at=script.t0 + t + 1), t + 1, subject="builds/%d" % buildid)
    return [a, b]


def ws_collect(ws_url, sub_from, box, stop):
    """Subscribes on /v1/stream and appends every message to box until stop is set."""
    with connect(ws_url, subprotocols=["firehose"], open_timeout=10) as ws:
        ws.send(json.dumps({"op": "subscribe", "id": "s", "filter": {}, "from": sub_from}))
        while not stop.is_set():
            try:
                box.append(json.loads(ws.recv(timeout=0.2)))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return


def test_partition_added_at_run_time_reaches_stream_view_and_webhooks(kafka, tmp_path):
    prefix = "padd-%s" % uuid.uuid4().hex[:8]
    topics = {"events": prefix + ".events", "logs": prefix + ".logs", "dlq": prefix + ".dlq"}
    kafka.create_topics({topics["events"]: 2, topics["logs"]: 1, topics["dlq"]: 1})
    wait_topics(kafka.bootstrap, {topics["events"]: 2, topics["logs"]: 1})
    recv = Receiver()
    b = Broker(kafka, topics, tmp_path / "view.db", tmp_path / "broker.log",
               extra=["--auth.admin_token=" + ADMIN, "--webhooks.path=%s" % (tmp_path / "webhooks.db"),
                      "--webhooks.group=wh-%s" % prefix, "--webhooks.allow_cidrs=127.0.0.1/32",
                      "--webhooks.scan_interval_ms=200", "--kafka.session.timeout.ms=6000",
                      "--kafka.partition_check_ms=500", "--view.metadata_refresh_ms=500"]
               + webhook_args(kafka, topics, 2)).start()
    stop = threading.Event()
    threads = []
    try:
        wait_for(lambda: requests.get(b.url + "readyz", timeout=2).status_code == 200, 60, what="/readyz")
        r = requests.post(b.url + "api/v1/webhooks", json={"url": recv.url("/hook")}, headers=AUTH, timeout=30)
        assert r.status_code == 201, r.text
        wait_for(lambda: re.search(r"event=webhook.caught_up ", b.log()), 60,
                 what="the webhook consumer's assignment")
        ws_url = b.url.replace("http://", "ws://") + "v1/stream"
        live = []
        t = threading.Thread(target=ws_collect, args=(ws_url, "latest", live, stop), daemon=True)
        t.start()
        threads.append(t)
        wait_for(lambda: any(m.get("op") == "subscribed" for m in list(live)), 30, what="subscribed")

        # before: two partitions; everything is seen, and a cursor is taken
        script = Script(time.time() - 600)
        before = build(script, 1, 101, 0)
        write_ndjson(tmp_path / "before.ndjson", before)
        emit(kafka, topics, tmp_path / "before.ndjson", expected=2)
        def live_events():
            return [m for m in list(live) if m.get("op") == "event"]
        got = wait_for(lambda: len(live_events()) >= 2 and live_events(), 60, what="the first events live")
        old_cursor = got[-1]["cursor"]
        assert old_cursor.startswith("3."), old_cursor   # two events partitions and one logs partition
        wait_for(lambda: b.get("/api/v1/builds/101").status_code == 200, 60, what="build 101 in the view")

        # a third partition, and events produced straight into it
        add_partitions(kafka, topics["events"], 3)
        wait_topics(kafka.bootstrap, {topics["events"]: 3})
        after = build(script, 2, 202, 10)
        produce_to(kafka, topics["events"], 2, after)
        ids = {e["id"] for e in after}

        # (a) the live WebSocket subscriber gets them
        wait_for(lambda: ids <= {m["event"]["id"] for m in list(live) if m.get("op") == "event"}, 60,
                 what="the new partition's events on the live stream")
        # (b) the view applied them
        wait_for(lambda: b.get("/api/v1/builds/202").status_code == 200, 60, what="build 202 in the view")
        running = b.json("/api/v1/builds", {"state": "running"})["builds"]
        assert {x["buildid"] for x in running} >= {101, 202}, running
        # (c) the webhook endpoint got them
        wait_for(lambda: ids <= {json.loads(x["body"])["data"]["id"] for x in recv.got("/hook")}, 90,
                 what="the new partition's events at the webhook endpoint")

        # a cursor from before the partition was added is still a cursor of this stream: the
        # resume reads the added partition from its beginning
        resumed = []
        t2 = threading.Thread(target=ws_collect, args=(ws_url, {"cursor": old_cursor}, resumed, stop),
                              daemon=True)
        t2.start()
        threads.append(t2)
        sub = wait_for(lambda: [m for m in list(resumed) if m.get("op") in ("subscribed", "error")], 30,
                       what="the resume's answer")
        assert sub[0]["op"] == "subscribed", sub
        wait_for(lambda: ids <= {m["event"]["id"] for m in list(resumed) if m.get("op") == "event"}, 60,
                 what="the added partition's events on the resume")
        before_ids = {e["id"] for e in before}
        assert not before_ids & {m["event"]["id"] for m in list(resumed) if m.get("op") == "event"}
        # new cursors name three events partitions
        assert [m for m in list(resumed) if m.get("op") == "event"][-1]["cursor"].startswith("4.")
        # a cursor of more partitions than the topics have is refused, as before
        refused = []
        t3 = threading.Thread(target=ws_collect, args=(ws_url, {"cursor": "5.0.0.0.0.0"}, refused, stop),
                              daemon=True)
        t3.start()
        threads.append(t3)
        err = wait_for(lambda: [m for m in list(refused) if m.get("op") in ("subscribed", "error")], 30,
                       what="the refusal")
        assert err[0]["op"] == "error" and "not a cursor of this stream" in err[0]["message"], err
    finally:
        stop.set()
        for x in threads:
            x.join(10)
        b.stop()
        recv.close()
