"""Webhooks across hosts: three broker instances, each with its own data directory, on a 3-node
KRaft cluster, sharing nothing but Kafka (docs/webhooks.md, "Across hosts"). Endpoints live in a
compacted topic with their secrets sealed, deliveries in a changelog every instance reads; the
instance owning an events partition sends its deliveries and keeps its retries.

One cluster and one set of instances for the whole module (its tests run in file order and build
on each other's endpoints); each test names what it adds."""
import base64
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests

from conftest import KafkaCluster, wait_for
from view_helpers import Broker, emit, write_ndjson
from webhook_support import ADMIN, AUTH, SECRET_KEY, Receiver, WebhookBroker, event_id_of, verify
import gen_events

# Retries 1 s apart for 20 attempts: a delivery refused while a test takes an instance away is
# still pending when the instance is back.
SCHEDULE = ",".join(["0"] + ["1"] * 19)


class Hosts:
    def __init__(self, cluster, base):
        self.cluster = cluster
        self.base = base
        prefix = "hosts-%s" % uuid.uuid4().hex[:8]
        self.topics = {"events": prefix + ".events", "logs": prefix + ".logs", "dlq": prefix + ".dlq",
                       "wh_endpoints": prefix + ".wh-endpoints", "wh_deliveries": prefix + ".wh-deliveries"}
        cluster.create_topics({self.topics["events"]: 3, self.topics["logs"]: 1, self.topics["dlq"]: 1})
        self.group = "hosts-%s" % uuid.uuid4().hex[:6]
        self.recv = Receiver()
        self.inst = {}
        for name in "abc":
            self.start(name)

    def start(self, name, extra=()):
        """Instance name in its own data directory (base/name), static member host-NAME. The webhook
        topics are the broker's to create (topics.create, replication 3)."""
        d = self.base / name
        d.mkdir(exist_ok=True)
        b = WebhookBroker(self.cluster, self.topics, d, name=name, group=self.group, schedule=SCHEDULE,
                          extra=["--webhooks.instance_id=host-" + name, "--topics.create=true",
                                 "--topics.replication=3", "--topics.partitions=3",
                                 "--topics.derived=%s.derived" % self.topics["events"]] + list(extra))
        b.start()
        self.inst[name] = b
        return b

    def feed(self, events, name="events"):
        path = self.base / ("%s-%s.ndjson" % (name, uuid.uuid4().hex[:6]))
        write_ndjson(path, events)
        emit(self.cluster, self.topics, path, expected=len(events))

    def live(self):
        return [b for b in self.inst.values() if b.proc and b.proc.poll() is None]

    def settled(self):
        """Nothing pending or in flight on any live instance."""
        return all(b.metric("firehose_webhook_pending") == 0 and b.metric("firehose_webhook_in_flight") == 0
                   for b in self.live())

    def close(self):
        self.recv.close()
        for b in self.live():
            assert b.stop() == 0, b.log()[-3000:]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    c = KafkaCluster(pathlib.Path(tempfile.mkdtemp(prefix="firehose-hosts-")))
    sys.stderr.write("\n[kafka] 3-node cluster %s up in %.1fs\n" % (c.bootstrap, c.started_in))
    base = tmp_path_factory.mktemp("hosts")
    h = None
    try:
        h = Hosts(c, base)
        for b in h.inst.values():
            b.wait_consumer()
        yield h
    finally:
        if h:
            h.close()
        c.destroy()


def events_of(n, seed):
    """Events of the types the events topic carries (log chunks go to the logs topic)."""
    return gen_events.generate(n, seed=seed, types="buildrequest.*,build.*,step.*")


def kcat_values(bootstrap, topic):
    """Every record of topic as raw bytes (key, tab, value per line), read with kcat."""
    p = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-f", "%k\t%s\n"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def first_seen(b, path, t_from, bound=5.0):
    """Seconds from t_from until GET path on b first answers 200 (polled every 20 ms)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if b.api("GET", path).status_code == 200:
            return time.monotonic() - t_from
        time.sleep(0.02)
    raise AssertionError("%s never answered %s" % (b.name if hasattr(b, "name") else b, path))


def log_db(b):
    con = sqlite3.connect("file:%s?mode=ro" % b.store, uri=True, timeout=30)
    return con


def test_the_topics_are_the_brokers_and_an_endpoint_made_on_a_reaches_b_and_c_within_a_second(hosts):
    """The brokers created the endpoints topic compacted with 1 partition and the changelog
    compact,delete with the events' partition count and webhooks.history_ms; an endpoint created
    through A answers on B and C within 1 s of A's answer, and events produced right after are
    delivered exactly once, by all three instances."""
    from confluent_kafka.admin import AdminClient, ConfigResource
    admin = AdminClient({"bootstrap.servers": hosts.cluster.bootstrap})
    md = admin.list_topics(timeout=30).topics
    assert len(md[hosts.topics["wh_endpoints"]].partitions) == 1
    assert len(md[hosts.topics["wh_deliveries"]].partitions) == 3
    res = [ConfigResource(ConfigResource.Type.TOPIC, hosts.topics[k]) for k in ("wh_endpoints", "wh_deliveries")]
    cfg = {r.name: f.result(timeout=30) for r, f in admin.describe_configs(res).items()}
    assert cfg[hosts.topics["wh_endpoints"]]["cleanup.policy"].value == "compact"
    assert cfg[hosts.topics["wh_deliveries"]]["cleanup.policy"].value == "compact,delete"
    assert cfg[hosts.topics["wh_deliveries"]]["retention.ms"].value == "604800000"

    a, b, c = hosts.inst["a"], hosts.inst["b"], hosts.inst["c"]
    ep = a.create(hosts.recv.url("/all"), filter={})
    t_answer = time.monotonic()
    for x in (b, c):
        took = first_seen(x, "/api/v1/webhooks/" + ep["id"], t_answer)
        assert took <= 1.0, "%s saw the endpoint %.3f s after A answered" % (x.store, took)
    events = events_of(600, 301)
    hosts.feed(events, "steady")
    wait_for(lambda: len(hosts.recv.got("/all")) >= len(events), 90, what="every event at /all")
    wait_for(hosts.settled, 30, what="nothing pending")
    got = [event_id_of(r, "firehose") for r in hosts.recv.got("/all")]
    assert sorted(got) == sorted(e["id"] for e in events), "exactly once per endpoint"
    ids = {}
    for r in hosts.recv.got("/all"):
        ids.setdefault(r["id"], set()).add(event_id_of(r, "firehose"))
    assert all(len(v) == 1 for v in ids.values()), "one webhook-id per event"

    def by_instance():
        con = log_db(a)
        rows = dict(con.execute("SELECT last_instance, count(*) FROM deliveries WHERE endpoint_id = ?"
                                " AND state = 1 GROUP BY last_instance", (ep["id"],)).fetchall())
        con.close()
        return sum(rows.values()) == len(events) and rows
    rows = wait_for(by_instance, 10, what="A's log to hold every delivery")
    assert set(rows) == {"host-a", "host-b", "host-c"}, rows
    print_changelog_size(hosts, len(events))


def print_changelog_size(hosts, deliveries):
    """Changelog bytes per delivery (docs/operations.md): the records' keys and values as kcat
    reads them, and the partition directories on node 1 (lz4 batches, indexes), before compaction."""
    p = subprocess.run(["kcat", "-C", "-b", hosts.cluster.bootstrap, "-t", hosts.topics["wh_deliveries"],
                        "-e", "-q", "-f", "%K %S %k\n"], stdout=subprocess.PIPE, timeout=60, check=True)
    kinds, logical = {}, 0
    for line in p.stdout.splitlines():
        klen, vlen, key = line.split(b" ", 2)
        n = int(klen) + max(int(vlen), 0)
        logical += n
        k = kinds.setdefault(key[:1].decode(), [0, 0])
        k[0] += 1
        k[1] += n
    kinds = {k: "%d records, %.0f B each" % (c, b / c) for k, (c, b) in kinds.items()}
    disk = 0
    for d in (hosts.cluster.node_dir(1) / "data").glob(hosts.topics["wh_deliveries"] + "-*"):
        disk += sum(f.stat().st_size for f in d.glob("*.log"))
    print("changelog: %d deliveries, records %s, %d key+value bytes (%.0f per delivery), %d bytes of"
          " log segments on a node (%.0f per delivery)"
          % (deliveries, kinds, logical, logical / deliveries, disk, disk / deliveries))


def test_secrets_are_sealed_in_the_endpoints_topic(hosts):
    """The endpoints topic holds the secret only sealed: kcat shows v1:KEYID:ciphertext, and the
    secret's text is nowhere in the raw bytes."""
    import hashlib
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    ep = hosts.inst["b"].create(hosts.recv.url("/sealed"), filter={"type": "build.finished"}, secret=secret)
    raw = kcat_values(hosts.cluster.bootstrap, hosts.topics["wh_endpoints"])
    assert secret.encode() not in raw and secret[6:].encode() not in raw
    key_id = hashlib.sha256(bytes.fromhex(SECRET_KEY)).hexdigest()[:8]
    line = [ln for ln in raw.splitlines() if ln.startswith(ep["id"].encode())][-1]
    assert b'"secret":"v1:' + key_id.encode() + b":" in line, line[:300]
    for b in hosts.inst.values():
        con = log_db(b)
        stored = con.execute("SELECT secret FROM endpoints WHERE id = ?", (ep["id"],)).fetchone()
        con.close()
        assert stored and stored[0].startswith("v1:" + key_id + ":") and secret not in stored[0]
    hosts.sealed = (ep, secret)


def test_the_delivery_log_is_the_same_on_all_instances_within_a_second_and_redeliver_works_anywhere(hosts):
    """A delivery whose first attempt failed: within 1 s of its successful attempt all three
    instances show the same delivery with the same two attempts, and the same list; a redeliver
    asked of an instance that does not own the delivery is carried out by its owner (same
    webhook-id)."""
    recv = hosts.recv
    recv.behaviour = lambda path, msg_id, n: (500, {}, 0) if path == "/log" and n == 0 else (200, {}, 0)
    a = hosts.inst["a"]
    ep = a.create(recv.url("/log"), filter={"type": "build.finished"})
    events = [e for e in events_of(300, 303) if e["type"] == "build.finished"][:12]
    hosts.feed(events, "log")
    wait_for(lambda: len(recv.got("/log")) >= len(events), 60, what="every /log delivery")
    worst = 0.0
    for r in recv.got("/log")[:3]:
        path = "/api/v1/webhooks/%s/deliveries/%s" % (ep["id"], r["id"])

        def same():
            views = [b.api("GET", path) for b in hosts.inst.values()]
            bodies = [v.json() for v in views if v.status_code == 200]
            ok = len(bodies) == 3 and all(d["state"] == "delivered" and len(d["attempts"]) == 2 for d in bodies)
            return ok and all(d == bodies[0] for d in bodies) and bodies[0]
        d = wait_for(same, 10, interval=0.02, what="the same delivery everywhere")
        worst = max(worst, time.time() - r["at"])
        assert [x["status"] for x in d["attempts"]] == [500, 200]
    assert worst <= 1.0, "the log agreed %.3f s after the attempt" % worst

    def listing(b):
        j = b.api("GET", "/api/v1/webhooks/%s/deliveries" % ep["id"], params={"limit": 1000}).json()
        return sorted(j["deliveries"], key=lambda d: d["id"])
    wait_for(lambda: listing(hosts.inst["b"]) == listing(a) == listing(hosts.inst["c"])
             and len(listing(a)) == len(events), 10, what="the same delivery list everywhere")

    # redeliver through every instance: whichever owns the delivery sends it again
    target = recv.got("/log")[0]["id"]
    before = len([r for r in recv.got("/log") if r["id"] == target])
    for k, b in enumerate(hosts.inst.values()):
        r = b.api("POST", "/api/v1/webhooks/%s/deliveries/%s/redeliver" % (ep["id"], target))
        assert r.status_code == 202 and r.json() == {"id": target, "state": "pending"}, r.text
        wait_for(lambda: len([x for x in recv.got("/log") if x["id"] == target]) >= before + k + 1, 30,
                 what="redelivery %d" % (k + 1))


def test_sigkill_of_one_instance_under_load_loses_nothing(hosts):
    """SIGKILL of B while deliveries are in flight: every event still arrives; a repeat only for
    what was in flight at the kill (sent in the last moments before it), with the same
    webhook-id."""
    recv = hosts.recv
    recv.behaviour = lambda path, msg_id, n: (200, {}, 0.02 if path == "/kill" else 0)
    a = hosts.inst["a"]
    ep = a.create(recv.url("/kill"), filter={})
    for b in hosts.inst.values():
        first_seen(b, "/api/v1/webhooks/" + ep["id"], time.monotonic())
    events = events_of(900, 305)
    hosts.feed(events, "kill")
    wait_for(lambda: len(recv.got("/kill")) >= len(events) // 4, 60, what="a quarter of /kill")
    t_kill = time.time()
    hosts.inst["b"].kill()
    at_kill = len(recv.got("/kill"))
    assert at_kill < len(events), "the kill came too late to prove anything"
    wait_for(lambda: {event_id_of(r, "firehose") for r in recv.got("/kill")} >= {e["id"] for e in events},
             120, what="every /kill event after the kill")
    ids = {}
    for r in recv.got("/kill"):
        ids.setdefault(r["id"], set()).add(event_id_of(r, "firehose"))
    assert all(len(v) == 1 for v in ids.values()), "one webhook-id per event"
    dups = len(recv.got("/kill")) - len(ids)
    # A repeat is an attempt B had in flight at the kill: started, or finished with its outcome not
    # yet acknowledged by Kafka (milliseconds). Its first arrival is right before the kill.
    first = {}
    for r in recv.got("/kill"):
        first.setdefault(r["id"], r["at"])
    counts = {}
    for r in recv.got("/kill"):
        counts[r["id"]] = counts.get(r["id"], 0) + 1
    late = [i for i, n in counts.items() if n > 1 and first[i] < t_kill - 0.5]
    assert not late, "repeats of deliveries made well before the kill: %s" % (
        ["%s %.2f s before" % (i, t_kill - first[i]) for i in late[:5]])
    print("sigkill: %d of %d delivered at the kill, %d repeated" % (at_kill, len(events), dups))


def test_an_instance_whose_data_directory_is_gone_rebuilds_and_keeps_its_retries(hosts):
    """B comes back with an empty data directory: it rebuilds endpoints and the delivery log from
    the topics, answers as A does, and the retries of its partitions (pending while the receiver
    refused) are sent by it once the receiver accepts."""
    recv = hosts.recv
    state = {"up": False}
    recv.behaviour = lambda path, msg_id, n: (200 if state["up"] or path != "/retry" else 503, {}, 0)
    a = hosts.inst["a"]
    ep = a.create(recv.url("/retry"), filter={"type": "build.finished"})
    b_dir = hosts.base / "b"
    shutil.rmtree(b_dir)
    events = [e for e in events_of(400, 307) if e["type"] == "build.finished"][:30]
    hosts.feed(events, "retry")

    def refused_everywhere():
        con = log_db(a)
        n = con.execute("SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND state = 0 AND attempts > 0",
                        (ep["id"],)).fetchone()[0]
        con.close()
        return n == len(events)
    wait_for(refused_everywhere, 60, what="every /retry delivery refused once and pending")
    b = hosts.start("b")
    b.wait_consumer()
    assert "event=webhook.caught_up" in b.log()
    # failing_since is each instance's own streak (docs/webhooks.md): everything else is the same

    def endpoints(x):
        return [dict(e, failing_since=None) for e in x.api("GET", "/api/v1/webhooks").json()["webhooks"]]
    assert endpoints(b) == endpoints(a)
    state["up"] = True
    wait_for(lambda: {event_id_of(r, "firehose") for r in recv.got("/retry")} >= {e["id"] for e in events},
             60, what="every /retry delivery after the receiver came back")

    def log(x):
        j = x.api("GET", "/api/v1/webhooks/%s/deliveries" % ep["id"], params={"limit": 1000}).json()
        return sorted((d["id"], d["state"], d["attempt_count"]) for d in j["deliveries"])
    wait_for(lambda: log(b) == log(a) and all(s == "delivered" for _, s, _ in log(a)), 10,
             what="B's rebuilt log to match A's")
    con = log_db(a)
    rows = dict(con.execute("SELECT last_instance, count(*) FROM deliveries WHERE endpoint_id = ?"
                            " GROUP BY last_instance", (ep["id"],)).fetchall())
    con.close()
    assert "host-b" in rows, "B kept the retries of its partitions: %s" % rows


OLD_SCHEMA = (
    "CREATE TABLE wh_meta(id INTEGER PRIMARY KEY CHECK (id = 1), schema INTEGER NOT NULL,"
    " endpoints_version INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO wh_meta(id, schema) VALUES(1, 1);"
    "CREATE TABLE endpoints(id TEXT PRIMARY KEY, url TEXT NOT NULL, filter TEXT NOT NULL, format TEXT NOT NULL,"
    " description TEXT NOT NULL DEFAULT '', secret TEXT NOT NULL, old_secret TEXT, old_secret_until_ms INTEGER,"
    " enabled INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT, ordered INTEGER NOT NULL DEFAULT 0,"
    " failing_since_ms INTEGER, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE payloads(id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, kind TEXT NOT NULL,"
    " body BLOB NOT NULL, created_ms INTEGER NOT NULL, UNIQUE (event_id, kind));"
    "CREATE TABLE deliveries(id INTEGER PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE, endpoint_id TEXT NOT NULL,"
    " event_id TEXT NOT NULL, event_type TEXT NOT NULL, payload_id INTEGER NOT NULL, part INTEGER NOT NULL,"
    " kafka_offset INTEGER NOT NULL, produced_ms INTEGER NOT NULL, build_key TEXT NOT NULL DEFAULT '',"
    " state INTEGER NOT NULL DEFAULT 0, tries INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, last_status INTEGER,"
    " last_error TEXT, last_latency_ms INTEGER, last_response TEXT, last_instance TEXT,"
    " requeued INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE attempts(id INTEGER PRIMARY KEY, delivery_id INTEGER NOT NULL, at_ms INTEGER NOT NULL,"
    " status INTEGER NOT NULL, latency_ms INTEGER NOT NULL, error TEXT, response TEXT,"
    " instance TEXT NOT NULL DEFAULT '');")


def test_an_old_design_webhooks_db_is_migrated_once(hosts):
    """The old design's shared webhooks.db (schema 1, secrets in clear) beside a new instance: its
    endpoint (secret sealed) and its pending delivery are published once, the delivery arrives
    signed with the old secret, one log line says what was migrated, and a restart migrates
    nothing again."""
    recv = hosts.recv
    recv.behaviour = lambda path, msg_id, n: (200, {}, 0)
    old = hosts.base / "old-webhooks.db"
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    now = int(time.time() * 1000)
    body = json.dumps({"type": "build.finished", "data": {"id": "ev-migrated"}}).encode()
    con = sqlite3.connect(str(old))
    con.executescript(OLD_SCHEMA)
    con.execute("INSERT INTO endpoints(id, url, filter, format, secret, created_ms, updated_ms)"
                " VALUES('ep_oldone', ?, '{\"type\":\"build.finished\"}', 'firehose', ?, ?, ?)",
                (recv.url("/old"), secret, now, now))
    con.execute("INSERT INTO payloads(id, event_id, kind, body, created_ms) VALUES(1, 'ev-migrated', 'firehose', ?, ?)",
                (body, now))
    con.execute("INSERT INTO deliveries(msg_id, endpoint_id, event_id, event_type, payload_id, part, kafka_offset,"
                " produced_ms, next_ms, created_ms, updated_ms) VALUES('msg_migratedone', 'ep_oldone',"
                " 'ev-migrated', 'build.finished', 1, 0, 0, ?, ?, ?, ?)", (now, now, now, now))
    con.commit()
    con.close()
    d = hosts.start("d", extra=["--webhooks.migrate_from=%s" % old])
    try:
        lines = [ln for ln in d.log().splitlines() if "event=webhook.migrated" in ln]
        assert len(lines) == 1 and "endpoints=1 pending_deliveries=1" in lines[0], lines
        r = wait_for(lambda: (lambda g: g and g[0])(recv.got("/old")), 60, what="the migrated delivery")
        assert r["id"] == "msg_migratedone" and r["body"] == body
        assert verify(secret, r["id"], r["ts"], r["body"], r["sig"]), "signed with the migrated secret"
        raw = kcat_values(hosts.cluster.bootstrap, hosts.topics["wh_endpoints"])
        assert secret.encode() not in raw and b"ep_oldone" in raw
        for b in hosts.live():   # D included: every instance holds the endpoint and the delivery
            first_seen(b, "/api/v1/webhooks/ep_oldone", time.monotonic())
            wait_for(lambda: b.api("GET", "/api/v1/webhooks/ep_oldone/deliveries/msg_migratedone")
                     .json().get("state") == "delivered", 10, what="the migrated delivery in every log")
        assert d.stop() == 0
        d = hosts.start("d", extra=["--webhooks.migrate_from=%s" % old])
        assert d.log().count("event=webhook.migrated") == 1, "migrated once"
        con = sqlite3.connect(str(old))
        assert con.execute("SELECT endpoints, deliveries FROM wh_migrated").fetchall() == [(1, 1)]
        con.close()
    finally:
        if d.proc.poll() is None:
            assert d.stop() == 0
        hosts.inst.pop("d", None)


def test_without_the_key_webhooks_stay_off_and_a_wrong_key_is_named(hosts):
    """No webhooks.secret_key: the broker runs, webhooks stay off, and the API and the log say why
    and how to make one. Another key: the endpoints' secrets do not open, and the log names both
    key ids; that instance sends nothing."""
    import hashlib
    d = hosts.base / "nokey"
    d.mkdir(exist_ok=True)
    common = ["--auth.admin_token=" + ADMIN, "--view.enabled=false", "--webhooks.migrate_from=",
              "--topics.webhook_endpoints=" + hosts.topics["wh_endpoints"],
              "--topics.webhook_deliveries=" + hosts.topics["wh_deliveries"],
              "--webhooks.group=other-%s" % uuid.uuid4().hex[:6], "--webhooks.allow_cidrs=127.0.0.1/32"]
    b = Broker(hosts.cluster, hosts.topics, d / "v.db", d / "nokey.log",
               extra=common + ["--webhooks.path=%s" % (d / "w.db")]).start()
    try:
        r = requests.get(b.url + "api/v1/webhooks", headers=AUTH, timeout=30)
        assert r.status_code == 503 and "openssl rand -hex 32" in r.json()["message"], r.text
        assert "webhooks.secret_key" in r.json()["message"]
        assert "event=webhook.start" in b.log() and "openssl rand -hex 32" in b.log()
        wait_for(lambda: requests.get(b.url + "readyz", timeout=5).status_code == 200, 60, what="ready")
    finally:
        assert b.stop() == 0
    other = "ab" * 32
    b = Broker(hosts.cluster, hosts.topics, d / "v2.db", d / "wrongkey.log",
               extra=common + ["--webhooks.path=%s" % (d / "w2.db"), "--webhooks.secret_key=" + other]).start()
    try:
        ours = hashlib.sha256(bytes.fromhex(SECRET_KEY)).hexdigest()[:8]
        theirs = hashlib.sha256(bytes.fromhex(other)).hexdigest()[:8]
        wait_for(lambda: "sealed with key %s, but this broker's webhooks.secret_key is %s" % (ours, theirs)
                 in b.log(), 30, what="the wrong key named in the log")
        assert "event=webhook.endpoints count=0" in b.log()
    finally:
        assert b.stop() == 0
