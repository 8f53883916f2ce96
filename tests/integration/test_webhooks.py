"""Webhooks on real Kafka: endpoint management, Standard Webhooks signatures checked by
Python's hmac, exactly-once in steady state, retries with stable webhook-ids, dead letters and
recovery, 410 and continuous failure disabling an endpoint, Retry-After, secret rotation, the
SSRF guard end to end, the queue cap pausing the consumer, SIGKILL and two instances.

Every receiver listens on 127.0.0.1; no test sends traffic anywhere else (the SSRF cases that
name other addresses are refused before any connection is made).
"""

import json
import os
import pathlib
import re
import signal
import sqlite3
import time
import uuid

import pytest
import requests
import yaml

from conftest import ROOT, wait_for
from view_helpers import emit, write_ndjson
from webhook_support import (ADMIN, Receiver, WebhookBroker, event_id_of, expected, matches, seal,
                             topics_for, verify)
import gen_events

OPENAPI = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())


def openapi_check(method, template, resp):
    """Validates an answer against docs/openapi.yaml: the status is documented for the method and
    the body matches its schema."""
    import jsonschema
    import referencing
    import referencing.jsonschema
    op = OPENAPI["paths"][template][method.lower()]
    status = str(resp.status_code)
    assert status in op["responses"], "%s %s: status %s not documented" % (method, template, status)
    r = op["responses"][status]
    ptr = "/".join(p.replace("~", "~0").replace("/", "~1")
                   for p in ("paths", template, method.lower(), "responses", status))
    if "$ref" in r:
        ptr = r["$ref"].lstrip("#/")
        r = OPENAPI
        for p in ptr.split("/"):
            r = r[p]
    if "content" not in r:
        assert not resp.content, "%s %s %s: documented without a body" % (method, template, status)
        return
    base = "urn:firehose:openapi"
    res = referencing.Resource.from_contents(OPENAPI, default_specification=referencing.jsonschema.DRAFT202012)
    reg = referencing.Registry().with_resource(base, res)
    v = jsonschema.Draft202012Validator({"$ref": base + "#/" + ptr + "/content/application~1json/schema"},
                                        registry=reg)
    errors = list(v.iter_errors(resp.json()))
    assert not errors, "%s %s %s does not match docs/openapi.yaml: %s\n%.1000s" % (
        method, template, status, [e.message[:200] for e in errors[:5]], resp.text)


def events_of(n, seed, types="buildrequest.*,build.*,step.*"):
    return gen_events.generate(n, seed=seed, types=types)


def feed(kafka, topics, tmp, events, name="events"):
    path = tmp / ("%s-%s.ndjson" % (name, uuid.uuid4().hex[:6]))
    write_ndjson(path, events)
    emit(kafka, topics, path, expected=len(events))


def delivered_ids(recv, path, fmt):
    """(event id, webhook-id) of every 2xx request to path."""
    return [(event_id_of(r, fmt), r["id"]) for r in recv.got(path)]


@pytest.fixture
def env(kafka, tmp_path):
    """Fresh topics, a receiver and a list of brokers stopped at the end (SIGTERM must exit 0)."""
    topics = topics_for(kafka, "wh-%s" % uuid.uuid4().hex[:8])
    recv = Receiver()
    brokers = []
    yield {"kafka": kafka, "topics": topics, "recv": recv, "tmp": tmp_path, "brokers": brokers}
    recv.close()
    for b in brokers:
        if b.proc and b.proc.poll() is None:
            assert b.stop() == 0, b.log()[-3000:]


def start(env, **kw):
    b = WebhookBroker(env["kafka"], env["topics"], env["tmp"], **kw).start()
    env["brokers"].append(b)
    return b


# ---- management ---------------------------------------------------------------------------

def test_endpoint_crud_validation_auth_and_ssrf_refusals(env):
    """Admin-only CRUD; bad input is a 400 naming the field; secrets are shown once; the SSRF guard
    refuses private, loopback (other than the allow-listed 127.0.0.1), link-local and metadata."""
    b = start(env, extra=["--auth.anonymous_read"])
    url = env["recv"].url("/a")
    r = b.api("GET", "/api/v1/webhooks", token=None)   # anonymous readers are not admins
    assert r.status_code == 403
    openapi_check("GET", "/api/v1/webhooks", r)
    r = b.api("GET", "/api/v1/webhooks", token="not-a-token")
    assert r.status_code == 401
    openapi_check("GET", "/api/v1/webhooks", r)
    bad = [({"filter": {}}, "url"), ({"url": "ftp://127.0.0.1/x"}, "url"), ({"url": "not a url"}, "url"),
           ({"url": url, "filter": {"results": ["x"]}}, "filter"), ({"url": url, "filter": {"nope": 1}}, "filter"),
           ({"url": url, "format": "xml"}, "format"), ({"url": url, "secret": "whsec_c2hvcnQ="}, "secret"),
           ({"url": url, "secret": "plain"}, "secret"), ({"url": url, "color": "red"}, "color"),
           ({"url": url, "enabled": "yes"}, "enabled"),
           ({"url": "http://127.0.0.2:%d/a" % env["recv"].port}, "url"),
           ({"url": "http://10.1.2.3/a"}, "url"), ({"url": "http://172.16.0.1/a"}, "url"),
           ({"url": "http://192.168.1.1/a"}, "url"), ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
           ({"url": "http://[::1]:%d/a" % env["recv"].port}, "url"), ({"url": "http://[fd00::1]/a"}, "url"),
           ({"url": "http://[::ffff:10.0.0.1]/a"}, "url")]
    for body, field in bad:
        r = b.api("POST", "/api/v1/webhooks", body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.json()["parameter"] == field, (body, r.json())
        openapi_check("POST", "/api/v1/webhooks", r)
        assert "whsec_c2hvcnQ" not in r.text
    r = b.api("POST", "/api/v1/webhooks", {"url": "http://127.0.0.2:%d/a" % env["recv"].port})
    assert "loopback" in r.json()["message"] and "SSRF" in r.json()["message"]
    r = b.api("POST", "/api/v1/webhooks", {"url": "http://169.254.169.254/"})
    assert "cloud-metadata" in r.json()["message"]

    r = b.api("POST", "/api/v1/webhooks", {"url": url, "filter": {"type": "build.finished"},
                                           "description": "ci bot"})
    openapi_check("POST", "/api/v1/webhooks", r)
    assert r.status_code == 201 and r.headers["Location"] == "/api/v1/webhooks/" + r.json()["id"]
    ep = r.json()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", ep["secret"]) and ep["format"] == "firehose"
    given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    ep2 = b.create(url, format="cloudevents", secret=given)
    assert ep2["secret"] == given
    r = b.api("GET", "/api/v1/webhooks")
    openapi_check("GET", "/api/v1/webhooks", r)
    assert [e["id"] for e in r.json()["webhooks"]] == [ep["id"], ep2["id"]]
    assert ep["secret"] not in r.text and given not in r.text and "secret\"" not in r.text
    r = b.api("GET", "/api/v1/webhooks/" + ep["id"])
    openapi_check("GET", "/api/v1/webhooks/{id}", r)
    assert r.json()["filter"] == {"type": "build.finished"} and ep["secret"] not in r.text
    assert r.json()["stats"] == {"pending": 0, "delivered": 0, "failed": 0}
    r = b.api("PATCH", "/api/v1/webhooks/" + ep["id"], {"filter": {"branch": ["main", "try"]}, "enabled": False})
    openapi_check("PATCH", "/api/v1/webhooks/{id}", r)
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["disabled_reason"]
    assert "secret" not in r.json()
    r = b.api("PATCH", "/api/v1/webhooks/" + ep["id"], {"filter": {"results": 9}})
    assert r.status_code == 400 and r.json()["parameter"] == "filter"
    r = b.api("PATCH", "/api/v1/webhooks/" + ep["id"], {"enabled": True})
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None
    assert b.api("DELETE", "/api/v1/webhooks/" + ep["id"], token="wrong").status_code == 401
    r = b.api("DELETE", "/api/v1/webhooks/" + ep["id"])
    openapi_check("DELETE", "/api/v1/webhooks/{id}", r)
    assert r.status_code == 204
    r = b.api("GET", "/api/v1/webhooks/" + ep["id"])
    openapi_check("GET", "/api/v1/webhooks/{id}", r)
    assert r.status_code == 404
    assert b.api("DELETE", "/api/v1/webhooks/" + ep["id"]).status_code == 404
    assert ep["secret"] not in b.log() and given not in b.log()


def test_urls_with_credentials_or_port_zero_are_refused_and_never_listed(env):
    """A URL with port 0, or with credentials in any spelling, is a 400 naming url that does not
    echo them; an endpoint stored with credentials before they were refused is listed without them."""
    b = start(env)
    port = env["recv"].port
    refused = [("http://127.0.0.1:0/a", "port 0"),
               ("http://alice:s3cret-pw@127.0.0.1:%d/a" % port, "credentials"),
               ("http://alice@127.0.0.1:%d/a" % port, "credentials"),
               ("http://:s3cret-pw@127.0.0.1:%d/a" % port, "credentials"),
               ("https://alice:s3cret-pw@127.0.0.1:%d/a" % port, "credentials")]
    ep = b.create(env["recv"].url("/ok"))
    for url, why in refused:
        for method, path in (("POST", "/api/v1/webhooks"), ("PATCH", "/api/v1/webhooks/" + ep["id"])):
            r = b.api(method, path, {"url": url})
            assert r.status_code == 400, (method, url, r.status_code, r.text)
            assert r.json()["parameter"] == "url" and why in r.json()["message"], (url, r.json())
            assert "s3cret-pw" not in r.text and "alice" not in r.text, r.text
            openapi_check(method, "/api/v1/webhooks" if method == "POST" else "/api/v1/webhooks/{id}", r)
    assert b.api("GET", "/api/v1/webhooks/" + ep["id"]).json()["url"] == env["recv"].url("/ok")

    legacy = "http://alice:s3cret-pw@127.0.0.1:%d/legacy?token=x@y" % port
    now = int(time.time() * 1000)
    db = sqlite3.connect(str(b.store), timeout=30)
    with db:
        db.execute("INSERT INTO endpoints(id, url, filter, format, secret, created_ms, updated_ms)"
                   " VALUES('ep_legacy', ?, '{}', 'firehose', ?, ?, ?)",
                   (legacy, seal("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "ep_legacy"), now, now))
    db.close()
    shown = "http://127.0.0.1:%d/legacy?token=x@y" % port
    r = b.api("GET", "/api/v1/webhooks")
    assert r.status_code == 200 and "s3cret-pw" not in r.text and "alice" not in r.text, r.text
    assert {e["id"]: e["url"] for e in r.json()["webhooks"]}["ep_legacy"] == shown
    r = b.api("GET", "/api/v1/webhooks/ep_legacy")
    assert r.json()["url"] == shown and "s3cret-pw" not in r.text, r.text
    r = b.api("PATCH", "/api/v1/webhooks/ep_legacy", {"description": "kept"})
    assert r.status_code == 200 and r.json()["url"] == shown and "s3cret-pw" not in r.text, r.text
    assert "s3cret-pw" not in b.log()


# ---- delivery -----------------------------------------------------------------------------

def test_each_matching_event_reaches_each_endpoint_exactly_once_signed(env):
    """Three endpoints with different filters and formats get exactly the events their filters
    match, once each, every signature verified by Python's hmac, and the log agrees."""
    b = start(env)
    recv = env["recv"]
    spec = {"/fin": ({"type": "build.finished"}, "firehose"),
            "/main-steps": ({"type": ["step.started", "step.finished"], "branch": "main"}, "cloudevents"),
            "/cd": ({"type": ["build.*", "buildrequest.new", "step.*"]}, "cdevents")}
    secrets = {}
    for path, (flt, fmt) in spec.items():
        ep = b.create(recv.url(path), filter=flt, format=fmt)
        secrets[path] = (ep["id"], ep["secret"])
    events = events_of(600, seed=5)
    want = expected(events, spec)
    assert all(len(v) > 10 for v in want.values()), {k: len(v) for k, v in want.items()}
    feed(env["kafka"], env["topics"], env["tmp"], events)
    total = sum(len(v) for v in want.values())
    wait_for(lambda: len(recv.got()) >= total, 90, what="%d deliveries" % total)
    time.sleep(1.0)  # anything extra (a double) would arrive in this window
    for path, (flt, fmt) in spec.items():
        recs = recv.got(path)
        secret = secrets[path][1]
        for r in recs:
            assert verify(secret, r["id"], r["ts"], r["body"], r["sig"]), (path, r["id"])
            assert abs(int(r["ts"]) - time.time()) < 120
            assert r["ctype"] == ("application/cloudevents+json" if fmt == "cloudevents" else "application/json")
        ids = [r["id"] for r in recs]
        assert len(ids) == len(set(ids)), "%s: duplicate webhook-ids" % path
        if fmt == "cdevents":
            got = {}
            for r in recs:
                d = json.loads(r["body"])
                got.setdefault(d["customData"]["id"], []).append(d["context"]["type"])
            for ev in events:
                if ev["id"] in got and ev["type"] == "build.finished":
                    assert sorted(got[ev["id"]]) == ["dev.cdevents.build.finished.0.2.0",
                                                     "dev.cdevents.pipelinerun.finished.0.2.0"]
            assert sum(len(v) for v in got.values()) == len(want[path])
            assert set(got) == {e for e, _ in want[path]}
        else:
            got = [event_id_of(r, fmt) for r in recs]
            assert sorted(got) == sorted(e for e, _ in want[path]), path
    # The delivery log.
    ep_id = secrets["/fin"][0]
    r = b.api("GET", "/api/v1/webhooks/%s/deliveries" % ep_id, params={"limit": 5})
    openapi_check("GET", "/api/v1/webhooks/{id}/deliveries", r)
    page = r.json()
    assert len(page["deliveries"]) == 5 and page["next"]
    assert all(d["state"] == "delivered" and d["attempt_count"] == 1 for d in page["deliveries"])
    r2 = b.api("GET", "/api/v1/webhooks/%s/deliveries" % ep_id, params={"limit": 1000, "before": page["next"]})
    assert len(r2.json()["deliveries"]) == len(want["/fin"]) - 5
    d = page["deliveries"][0]
    r = b.api("GET", "/api/v1/webhooks/%s/deliveries/%s" % (ep_id, d["id"]))
    openapi_check("GET", "/api/v1/webhooks/{id}/deliveries/{delivery}", r)
    one = r.json()
    assert len(one["attempts"]) == 1 and one["attempts"][0]["status"] == 200
    assert one["attempts"][0]["response"] == '{"ok":true}' and one["attempts"][0]["latency_ms"] >= 0
    assert b.api("GET", "/api/v1/webhooks/%s/deliveries" % ep_id, params={"state": "odd"}).json()["parameter"] == "state"
    assert b.metric("firehose_webhook_delivered_total") == total


def test_failing_receiver_gets_everything_with_unchanged_ids(env):
    """500 for the first attempts of every message, then 2xx: all arrive, each retry keeps its
    webhook-id and body, and the attempts are in the log."""
    fails = 2
    env["recv"].behaviour = lambda path, msg_id, n: (500, {}, 0) if n < fails else (200, {}, 0)
    b = start(env, schedule="0,0.1,0.2,0.3")
    ep = b.create(env["recv"].url("/x"), filter={"type": "build.finished"})
    events = events_of(400, seed=9)
    want = [e["id"] for e in events if e["type"] == "build.finished"]
    feed(env["kafka"], env["topics"], env["tmp"], events)
    wait_for(lambda: len(env["recv"].got("/x")) >= len(want), 90, what="all deliveries after retries")
    recv = env["recv"]
    by_id = {}
    for r in recv.got("/x", ok_only=False):
        by_id.setdefault(r["id"], []).append(r)
    assert len(by_id) == len(want)
    for msg_id, rs in by_id.items():
        assert [r["status"] for r in rs] == [500] * fails + [200], msg_id
        assert len({r["body"] for r in rs}) == 1
        for r in rs:
            assert verify(ep["secret"], r["id"], r["ts"], r["body"], r["sig"])
    assert sorted(event_id_of(r, "firehose") for r in recv.got("/x")) == sorted(want)
    d = b.api("GET", "/api/v1/webhooks/%s/deliveries" % ep["id"], params={"limit": 1}).json()["deliveries"][0]

    def recorded():
        # the receiver answers before the broker records the answer: await the attempt's row
        one = b.api("GET", "/api/v1/webhooks/%s/deliveries/%s" % (ep["id"], d["id"])).json()
        return len(one["attempts"]) >= fails + 1 and one
    one = wait_for(recorded, 10, what="the last attempt recorded")
    assert [a["status"] for a in one["attempts"]] == [500, 500, 200]
    assert one["attempts"][0]["error"] == "HTTP 500" and "test says no" in one["attempts"][0]["response"]


def test_exhausted_schedule_dead_letters_then_recover_and_redeliver(env):
    """A receiver that always fails: after the last scheduled attempt each delivery is failed and
    listed as such; once the receiver works, recover re-sends all of them and redeliver one."""
    state = {"ok": False}
    env["recv"].behaviour = lambda path, msg_id, n: (200, {}, 0) if state["ok"] else (503, {}, 0)
    b = start(env, schedule="0,0.1,0.1")
    ep = b.create(env["recv"].url("/dead"), filter={"type": "build.finished"})
    events = events_of(300, seed=11)
    want = [e["id"] for e in events if e["type"] == "build.finished"]
    t0 = time.time()
    feed(env["kafka"], env["topics"], env["tmp"], events)

    def failed():
        r = b.api("GET", "/api/v1/webhooks/%s/deliveries" % ep["id"], params={"state": "failed", "limit": 1000})
        return len(r.json()["deliveries"]) == len(want) and r
    r = wait_for(failed, 60, what="every delivery dead-lettered")
    openapi_check("GET", "/api/v1/webhooks/{id}/deliveries", r)
    assert all(d["attempt_count"] == 3 and d["last_status"] == 503 for d in r.json()["deliveries"])
    assert len(env["recv"].got("/dead", ok_only=False)) == 3 * len(want)
    assert b.metric("firehose_webhook_dead_total") == len(want)
    state["ok"] = True
    first = r.json()["deliveries"][0]["id"]
    r = b.api("POST", "/api/v1/webhooks/%s/recover" % ep["id"], {"since": "1970-01-01T00:00:00Z"})
    openapi_check("POST", "/api/v1/webhooks/{id}/recover", r)
    assert r.status_code == 202 and r.json() == {"recovered": len(want)}
    wait_for(lambda: len(env["recv"].got("/dead")) >= len(want), 60, what="recovered deliveries")
    assert sorted(event_id_of(x, "firehose") for x in env["recv"].got("/dead")) == sorted(want)
    r = b.api("POST", "/api/v1/webhooks/%s/deliveries/%s/redeliver" % (ep["id"], first))
    openapi_check("POST", "/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver", r)
    assert r.status_code == 202
    wait_for(lambda: len([x for x in env["recv"].got("/dead") if x["id"] == first]) == 2, 30,
             what="the redelivery")
    assert b.api("POST", "/api/v1/webhooks/%s/recover" % ep["id"], {"since": "yesterday"}).json()["parameter"] == "since"
    assert b.api("POST", "/api/v1/webhooks/%s/deliveries/msg_nope/redeliver" % ep["id"]).status_code == 404
    del t0


def test_gone_disables_endpoint_and_continuous_failure_disables_with_reason(env):
    """410 disables the endpoint at once; an endpoint failing for webhooks.disable_after_s is
    disabled saying why; neither holds up a healthy endpoint."""
    env["recv"].behaviour = lambda path, msg_id, n: {"/gone": (410, {}, 0), "/bad": (500, {}, 0)}.get(path, (200, {}, 0))
    b = start(env, schedule="0,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
              extra=["--webhooks.disable_after_s=1"])
    gone = b.create(env["recv"].url("/gone"), filter={"type": "build.finished"})
    bad = b.create(env["recv"].url("/bad"), filter={"type": "build.finished"})
    b.create(env["recv"].url("/good"), filter={"type": "build.finished"})
    events = events_of(400, seed=13)
    want = [e["id"] for e in events if e["type"] == "build.finished"]
    feed(env["kafka"], env["topics"], env["tmp"], events)
    wait_for(lambda: len(env["recv"].got("/good")) >= len(want), 60, what="the healthy endpoint's deliveries")
    g = wait_for(lambda: (lambda j: not j["enabled"] and j)(b.api("GET", "/api/v1/webhooks/" + gone["id"]).json()),
                 30, what="410 to disable")
    assert "410" in g["disabled_reason"]
    # Only the first wave (at most webhooks.endpoint_concurrency in flight) reached it, then nothing.
    n_gone = len(env["recv"].got("/gone", ok_only=False))
    assert 1 <= n_gone <= 8, n_gone
    x = wait_for(lambda: (lambda j: not j["enabled"] and j)(b.api("GET", "/api/v1/webhooks/" + bad["id"]).json()),
                 30, what="continuous failure to disable")
    assert "failing continuously since" in x["disabled_reason"] and "HTTP 500" in x["disabled_reason"]
    time.sleep(1.0)  # attempts already in flight when it was disabled may still land
    n = len(env["recv"].got("/bad", ok_only=False))
    time.sleep(1.0)
    assert len(env["recv"].got("/bad", ok_only=False)) == n, "a disabled endpoint got traffic"
    assert len(env["recv"].got("/gone", ok_only=False)) == n_gone, "a disabled endpoint got traffic"


def test_retry_after_is_honoured_on_429(env):
    """429 with Retry-After: 2 delays the next attempt by at least 2 s, though the schedule says 0.1 s."""
    env["recv"].behaviour = lambda path, msg_id, n: (429, {"Retry-After": "2"}, 0) if n == 0 else (200, {}, 0)
    b = start(env, schedule="0,0.1,0.1")
    b.create(env["recv"].url("/ra"), filter={"type": "build.finished"})
    events = [e for e in events_of(200, seed=17) if e["type"] == "build.finished"][:3]
    feed(env["kafka"], env["topics"], env["tmp"], events)
    wait_for(lambda: len(env["recv"].got("/ra")) >= len(events), 30, what="deliveries after Retry-After")
    by = {}
    for r in env["recv"].got("/ra", ok_only=False):
        by.setdefault(r["id"], []).append(r["at"])
    for msg_id, ts in by.items():
        assert len(ts) == 2 and ts[1] - ts[0] >= 1.9, (msg_id, ts)


def test_secret_rotation_signs_with_both_until_the_overlap_ends(env):
    b = start(env)
    recv = env["recv"]
    ep = b.create(recv.url("/rot"), filter={"type": "build.finished"})
    old = ep["secret"]
    events = [e for e in events_of(600, seed=19) if e["type"] == "build.finished"]
    feed(env["kafka"], env["topics"], env["tmp"], events[:3], "before")
    wait_for(lambda: len(recv.got("/rot")) >= 3, 30, what="deliveries before the rotation")
    assert all(len(r["sig"].split(" ")) == 1 for r in recv.got("/rot"))
    r = b.api("PATCH", "/api/v1/webhooks/" + ep["id"], {"secret": None, "secret_overlap_s": 3})
    assert r.status_code == 200
    new = r.json()["secret"]
    assert new != old and r.json()["previous_secret_expires"]
    assert b.api("GET", "/api/v1/webhooks/" + ep["id"]).text.count("whsec_") == 0
    feed(env["kafka"], env["topics"], env["tmp"], events[3:6], "during")
    wait_for(lambda: len(recv.got("/rot")) >= 6, 30, what="deliveries during the overlap")
    for r in recv.got("/rot")[3:6]:
        sigs = r["sig"].split(" ")
        assert len(sigs) == 2
        assert verify(new, r["id"], r["ts"], r["body"], sigs[0])
        assert verify(old, r["id"], r["ts"], r["body"], sigs[1])
    time.sleep(3.5)
    feed(env["kafka"], env["topics"], env["tmp"], events[6:9], "after")
    wait_for(lambda: len(recv.got("/rot")) >= 9, 30, what="deliveries after the overlap")
    for r in recv.got("/rot")[6:9]:
        assert verify(new, r["id"], r["ts"], r["body"], r["sig"]) and not verify(old, r["id"], r["ts"], r["body"], r["sig"])
    assert new not in b.log() and old not in b.log()


def test_ssrf_guard_at_delivery_refuses_what_the_allow_list_no_longer_allows(env):
    """Delivery checks the address it connects to: an endpoint accepted while 127.0.0.1 was
    allow-listed gets no traffic once the broker runs without that allow-list entry."""
    b = start(env)
    ep = b.create(env["recv"].url("/ssrf"), filter={"type": "build.finished"})
    assert b.stop() == 0
    env["brokers"].remove(b)
    b = start(env, store=b.store, group=b.group, allow="", schedule="0,0.1")
    events = events_of(200, seed=23)
    n = sum(1 for e in events if e["type"] == "build.finished")
    feed(env["kafka"], env["topics"], env["tmp"], events)
    r = wait_for(lambda: (lambda j: len(j["deliveries"]) == n and j)(
        b.api("GET", "/api/v1/webhooks/%s/deliveries" % ep["id"], params={"state": "failed", "limit": 1000}).json()),
        60, what="refused deliveries to dead-letter")
    assert all("SSRF guard" in d["last_error"] and "loopback" in d["last_error"] for d in r["deliveries"])
    assert env["recv"].got(ok_only=False) == []
    assert b.metric("firehose_webhook_ssrf_refused_total") >= n


def test_queue_cap_pauses_the_consumer_and_loses_nothing(env):
    """At webhooks.queue_max pending deliveries the consumer pauses (metric), never drops; when the
    receiver comes back everything arrives."""
    state = {"ok": False}
    env["recv"].behaviour = lambda path, msg_id, n: (200, {}, 0) if state["ok"] else (500, {}, 0)
    b = start(env, schedule="0,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3",
              extra=["--webhooks.queue_max=30", "--webhooks.batch_max=10"])
    b.create(env["recv"].url("/cap"), filter={})
    events = events_of(400, seed=29)
    feed(env["kafka"], env["topics"], env["tmp"], events)
    wait_for(lambda: b.metric("firehose_webhook_paused") == 1, 30, what="the consumer to pause")
    pending = b.metric("firehose_webhook_pending")
    assert 30 <= pending < 400, pending
    state["ok"] = True
    wait_for(lambda: len(env["recv"].got("/cap")) >= len(events), 90, what="everything after the pause")
    assert sorted(event_id_of(r, "firehose") for r in env["recv"].got("/cap")) == sorted(e["id"] for e in events)
    assert b.metric("firehose_webhook_paused") == 0


def test_ordered_endpoint_keeps_each_builds_order_through_retries(env):
    """ordered=true: a build's deliveries arrive in Kafka order even when some first attempts fail."""
    env["recv"].behaviour = lambda path, msg_id, n: (500, {}, 0) if n == 0 and hash(msg_id) % 3 == 0 else (200, {}, 0)
    b = start(env, schedule="0,0.1,0.1,0.1")
    b.create(env["recv"].url("/ord"), filter={"type": ["build.*", "step.*"]}, ordered=True)
    events = events_of(500, seed=31, types="build.*,step.*")
    feed(env["kafka"], env["topics"], env["tmp"], events)
    wait_for(lambda: len(env["recv"].got("/ord")) >= len(events), 60, what="ordered deliveries")
    order = {}
    for r in env["recv"].got("/ord"):
        d = json.loads(r["body"])["data"]
        order.setdefault(d["data"]["buildrequestid"], []).append(d["id"])
    sent = {}
    for e in events:
        sent.setdefault(e["data"]["buildrequestid"], []).append(e["id"])
    assert order == sent


# ---- crashes and scale-out -----------------------------------------------------------------

def test_sigkill_mid_delivery_loses_nothing(env):
    """A slow receiver, a SIGKILL while deliveries are in flight and queued, a restart on the same
    store: every matching event arrives (at least once; with the same webhook-id if twice)."""
    env["recv"].behaviour = lambda path, msg_id, n: (200, {}, 0.02)
    b = start(env, extra=["--webhooks.endpoint_concurrency=4", "--webhooks.instance_id=wh-kill"])
    spec = {"/k1": ({"type": "build.finished"}, "firehose"), "/k2": ({}, "firehose")}
    for path, (flt, fmt) in spec.items():
        b.create(env["recv"].url(path), filter=flt, format=fmt)
    events = events_of(800, seed=37)
    want = expected(events, spec)
    total = sum(len(v) for v in want.values())
    feed(env["kafka"], env["topics"], env["tmp"], events)
    wait_for(lambda: len(env["recv"].got()) >= total // 4, 60, what="a quarter of the deliveries")
    b.kill()
    at_kill = len(env["recv"].got())
    assert at_kill < total, "the kill came too late to prove anything"
    b2 = start(env, store=b.store, group=b.group, extra=["--webhooks.endpoint_concurrency=4",
                                                         "--webhooks.instance_id=wh-kill"])
    wait_for(lambda: all({(event_id_of(r, "firehose"), 0) for r in env["recv"].got(p)} >= want[p] for p in spec),
             120, what="every delivery after the restart")
    for path in spec:
        got = env["recv"].got(path)
        ids = {}
        for r in got:
            ids.setdefault(r["id"], set()).add(event_id_of(r, "firehose"))
        assert all(len(v) == 1 for v in ids.values()), "one webhook-id, one event"
        dups = len(got) - len(ids)
        # Only what was in flight at the kill can come twice: 4 per endpoint.
        assert dups <= 4, (path, dups)
    print("sigkill: %d of %d delivered at the kill" % (at_kill, total))
    del b2


def test_two_instances_deliver_once_and_one_takes_over_when_the_other_dies(env):
    """Two brokers, one group, each its own file (nothing shared but Kafka): steady state has no
    doubles and both deliver; after a SIGKILL of one, the other delivers everything that follows."""
    group = "wh-two-%s" % uuid.uuid4().hex[:6]
    a = start(env, name="a", group=group)
    bb = start(env, name="b", group=group)
    ep = a.create(env["recv"].url("/two"), filter={})
    a.wait_consumer()
    bb.wait_consumer()
    events = events_of(600, seed=41)
    feed(env["kafka"], env["topics"], env["tmp"], events, "one")
    wait_for(lambda: len(env["recv"].got("/two")) >= len(events), 90, what="deliveries from two instances")
    time.sleep(1.0)
    got = [event_id_of(r, "firehose") for r in env["recv"].got("/two")]
    assert sorted(got) == sorted(e["id"] for e in events), "no doubles, no gaps in steady state"
    # a's file holds the whole delivery log (it reads every changelog partition), b's deliveries too

    def delivered_by():
        con = sqlite3.connect("file:%s?mode=ro" % a.store, uri=True, timeout=30)
        inst = dict(con.execute("SELECT last_instance, count(*) FROM deliveries WHERE state = 1"
                                " GROUP BY last_instance").fetchall())
        con.close()
        return sum(inst.values()) == len(events) and inst
    inst = wait_for(delivered_by, 10, what="a's log to hold every delivery")
    assert len(inst) == 2 and sum(inst.values()) == len(events), "both instances delivered: %s" % inst
    bb.kill()
    more = events_of(1200, seed=41)[600:]
    feed(env["kafka"], env["topics"], env["tmp"], more, "two")
    want = {e["id"] for e in events + more}
    wait_for(lambda: {event_id_of(r, "firehose") for r in env["recv"].got("/two")} >= want, 90,
             what="the survivor to take over")
    assert "change=revoked" in a.log() or a.log().count("change=assigned") >= 2
