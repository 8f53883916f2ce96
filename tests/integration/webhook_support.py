"""Helpers for test_webhooks.py: a loopback webhook receiver that verifies Standard Webhooks
signatures with Python's own hmac (independent of the broker's C code), a broker with webhook
settings, and a Python copy of the filter language to compute what each endpoint must get.

Everything listens on and talks to 127.0.0.1 only.
"""

import base64
import fnmatch
import hashlib
import hmac
import http.server
import json
import os
import re
import threading
import time
import uuid

import requests

from conftest import wait_for
from view_helpers import Broker

ADMIN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": "Bearer " + ADMIN}


def sign(secret, msg_id, ts, body):
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    mac = hmac.new(key, ("%s.%s." % (msg_id, ts)).encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret, msg_id, ts, body, header):
    """True when one of the space-separated signatures in header is secret's (constant time)."""
    want = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(want, s) for s in header.split(" "))


class Receiver:
    """ThreadingHTTPServer on 127.0.0.1:0 (HTTP/1.1 keep-alive). Each path is one endpoint;
    behaviour(path, msg_id, n) -> (status, headers dict, delay s) decides the answer, n being how
    many times this id reached this path before. Every request is recorded."""

    def __init__(self, behaviour=None):
        self.behaviour = behaviour or (lambda path, msg_id, n: (200, {}, 0))
        self.lock = threading.Lock()
        self.requests = []           # dicts: path, id, ts, sig, body, status, at
        self.seen = {}               # (path, id) -> attempts so far
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                msg_id = self.headers.get("webhook-id")
                with recv.lock:
                    k = (self.path, msg_id)
                    seen = recv.seen.get(k, 0)
                    recv.seen[k] = seen + 1
                status, headers, delay = recv.behaviour(self.path, msg_id, seen)
                if delay:
                    time.sleep(delay)
                rec = {"path": self.path, "id": msg_id, "ts": self.headers.get("webhook-timestamp"),
                       "sig": self.headers.get("webhook-signature") or "", "body": body,
                       "ctype": self.headers.get("Content-Type"), "status": status, "at": time.time()}
                with recv.lock:
                    recv.requests.append(rec)
                out = b'{"ok":true}' if status < 300 else b'{"error":"test says no"}'
                self.send_response(status)
                for h, v in headers.items():
                    self.send_header(h, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def got(self, path=None, ok_only=True):
        with self.lock:
            return [r for r in self.requests
                    if (path is None or r["path"] == path) and (not ok_only or 200 <= r["status"] < 300)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def matches(flt, ev):
    """The filter language of lib/fh_filter.h, in Python."""
    for key, want in flt.items():
        if key in ("type", "master"):
            have = ev.get(key)
        else:
            have = ev["data"].get(key)
        if have is None:
            return False
        wants = want if isinstance(want, list) else [want]
        ok = False
        for w in wants:
            if isinstance(w, str) and "*" in w:
                ok = ok or fnmatch.fnmatchcase(str(have), w)
            else:
                ok = ok or str(have) == str(w)
        if not ok:
            return False
    return True


CDEVENTS_BODIES = {"buildrequest.new": 2, "build.started": 2, "build.finished": 2,
                   "step.started": 1, "step.finished": 1}


def bodies(fmt, ev):
    if fmt != "cdevents":
        return 1
    return CDEVENTS_BODIES.get(ev["type"], 0)


# The AES-256-GCM key that seals endpoint secrets (webhooks.secret_key): every instance of a test
# shares it, as every instance of a deployment must.
SECRET_KEY = "5c0f3b2a9d8e7f6a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f607182"


def seal(secret, endpoint_id, key_hex=SECRET_KEY):
    """A secret sealed as the broker seals it (lib/fh_aead.h): "v1:" KEYID ":" base64(IV || ciphertext
    || tag), AES-256-GCM with the endpoint id as AAD, KEYID the first 4 bytes of SHA-256(key)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    key = bytes.fromhex(key_hex)
    iv = os.urandom(12)
    ct = AESGCM(key).encrypt(iv, secret.encode(), endpoint_id.encode())
    return "v1:%s:%s" % (hashlib.sha256(key).hexdigest()[:8], base64.b64encode(iv + ct).decode())


def webhook_topic_specs(prefix, parts):
    """The webhook topics of a test whose topics start with prefix, as create_topics specs."""
    return {prefix + ".wh-endpoints": "1+cleanup.policy=compact",
            prefix + ".wh-deliveries": "%d+cleanup.policy=compact,delete+retention.ms=604800000" % parts}


def topics_for(kafka, prefix, parts=3):
    t = {"events": prefix + ".events", "logs": prefix + ".logs", "dlq": prefix + ".dlq",
         "wh_endpoints": prefix + ".wh-endpoints", "wh_deliveries": prefix + ".wh-deliveries"}
    kafka.create_topics(dict({t["events"]: parts, t["logs"]: 1, t["dlq"]: 1}, **webhook_topic_specs(prefix, parts)))
    return t


_created = set()


def webhook_topics(kafka, topics, parts=3):
    """(endpoints topic, changelog) of a test's topics: those topics_for made, or made now for a
    topics dict that has none (named after its events topic)."""
    if "wh_endpoints" in topics:
        return topics["wh_endpoints"], topics["wh_deliveries"]
    prefix = topics["events"]
    specs = webhook_topic_specs(prefix, parts)
    if (kafka.bootstrap, prefix) not in _created:
        kafka.create_topics(specs)
        _created.add((kafka.bootstrap, prefix))
    return tuple(specs)


def webhook_args(kafka, topics, parts=3):
    """What every broker that runs webhooks needs on top of its own arguments: the key that seals
    secrets, the test's own webhook topics, and no migration from a file in the working directory."""
    eps, cl = webhook_topics(kafka, topics, parts)
    return ["--webhooks.secret_key=" + SECRET_KEY, "--topics.webhook_endpoints=" + eps,
            "--topics.webhook_deliveries=" + cl, "--webhooks.migrate_from="]


class WebhookBroker(Broker):
    """bin/firehose-broker with webhooks on: admin token, a store, a group, loopback allowed."""

    def __init__(self, kafka, topics, tmp, name="broker", store=None, group=None, schedule="0,0.2,0.4,0.8,1",
                 allow="127.0.0.1/32", extra=(), parts=3):
        # each instance its own file (a cache of the topics): instances share nothing but Kafka
        self.store = store or (tmp / ("%s-webhooks.db" % name))
        self.group = group or ("wh-test-%s" % uuid.uuid4().hex[:8])
        args = ["--auth.admin_token=" + ADMIN, "--webhooks.path=%s" % self.store,
                "--webhooks.group=" + self.group, "--webhooks.retry_schedule=" + schedule,
                "--webhooks.allow_cidrs=" + allow, "--view.enabled=false",
                "--kafka.session.timeout.ms=6000", "--webhooks.scan_interval_ms=200"]
        args += webhook_args(kafka, topics, parts) + list(extra)
        super().__init__(kafka, topics, tmp / ("%s-view.db" % name), tmp / ("%s.log" % name), extra=args)

    def api(self, method, path, body=None, params=None, token=ADMIN):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return requests.request(method, self.url + path.lstrip("/"), json=body, params=params,
                                headers=headers, timeout=30)

    def create(self, url, **kw):
        body = dict(kw, url=url)
        r = self.api("POST", "/api/v1/webhooks", body)
        assert r.status_code == 201, r.text
        return r.json()

    def metric(self, name):
        text = requests.get(self.url + "metrics", timeout=10).text
        m = re.search(r"^%s(?:\{[^}]*\})? (\d+)$" % re.escape(name), text, re.M)
        return int(m.group(1)) if m else None

    def wait_consumer(self, timeout=60):
        """Waits until the webhook consumer owns partitions: assigned, and caught up on their changelog
        partitions (its log says webhook.caught_up)."""
        wait_for(lambda: re.search(r"event=webhook.caught_up ", self.log()),
                 timeout, what="the webhook consumer's assignment")


def expected(events, endpoints):
    """{path: set of (event id, body index)} every endpoint must get: endpoints = {path: (filter, format)}."""
    out = {}
    for path, (flt, fmt) in endpoints.items():
        s = set()
        for ev in events:
            if matches(flt, ev):
                for i in range(bodies(fmt, ev)):
                    s.add((ev["id"], i))
        out[path] = s
    return out


def event_id_of(rec, fmt):
    """The firehose event id a received body carries, in any format."""
    d = json.loads(rec["body"])
    if fmt == "firehose":
        return d["data"]["id"]
    if fmt == "cloudevents":
        return d["id"]
    return d["customData"]["id"]
