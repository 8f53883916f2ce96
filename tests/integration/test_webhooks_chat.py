"""Chat webhook formats on real Kafka: an endpoint with format "slack" gets the Slack
incoming-webhook body for a failing build (escaped mrkdwn, link to the build), signed like every
other format; "matrix" gets an m.text message with escaped HTML; types not worth a message
(build.updated, step.started) are not sent; and the subscription docs/webhooks.md shows for
"tell me when trunk breaks or is fixed" is accepted as written and delivers exactly the derived
builder.broken and builder.fixed as Slack messages.
"""

import json
import time
import uuid

import pytest

from conftest import wait_for
from view_helpers import Script, emit, write_ndjson
from webhook_support import Receiver, WebhookBroker, topics_for, verify


def scripted(t0):
    s = Script(t0)
    ctx = {"buildrequestid": 7, "buildid": 70, "builder": "linux <x64> & co", "builderid": 1,
           "branch": "main", "revision": "3f9c2a7e5b1d4c8f9a0e6b2d7c1f4a8e9b3d5c70",
           "repository": "https://git.example.org/r.git", "project": "p", "codebase": "",
           "owner": "Alice <alice@example.org>"}
    s.add("build.started", dict(ctx, number=12, worker="w-1", started_at=t0 + 1), 1)
    s.add("build.updated", dict(ctx, state_string="compiling"), 2)
    s.add("step.started", dict(ctx, stepid=700, number=0, name="compile", started_at=t0 + 3), 3)
    s.add("build.finished", dict(ctx, number=12, complete_at=t0 + 9, results=2,
                                 state_string="failed test", duration_s=8.0,
                                 url="https://ci.example.org/#/builders/1/builds/12?x=1&y=2"), 9)
    return s.events


@pytest.fixture
def env(kafka, tmp_path):
    topics = topics_for(kafka, "whc-%s" % uuid.uuid4().hex[:8])
    recv = Receiver()
    b = WebhookBroker(kafka, topics, tmp_path).start()
    yield {"kafka": kafka, "topics": topics, "recv": recv, "tmp": tmp_path, "broker": b}
    recv.close()
    assert b.stop() == 0, b.log()[-3000:]


def test_slack_and_matrix_endpoints_get_readable_signed_messages(env):
    b, recv = env["broker"], env["recv"]
    slack = b.create(recv.url("/slack"), format="slack", filter={"type": ["build.*", "step.*"]})
    matrix = b.create(recv.url("/matrix"), format="matrix",
                      filter={"type": "build.finished", "results": 2})
    r = b.api("POST", "/api/v1/webhooks", {"url": recv.url("/x"), "format": "irc"})
    assert r.status_code == 400 and "slack" in r.text and "matrix" in r.text
    b.wait_consumer()
    t0 = int(time.time()) - 60
    events = scripted(t0)
    path = env["tmp"] / "chat.ndjson"
    write_ndjson(path, events)
    emit(env["kafka"], env["topics"], path, expected=len(events))
    wait_for(lambda: len(recv.got("/slack")) >= 2 and len(recv.got("/matrix")) >= 1, 60,
             what="the chat deliveries")
    time.sleep(1.0)  # a delivery that should not exist (build.updated, step.started) shows here
    got = recv.got("/slack")
    assert len(got) == 2, [r["body"] for r in got]
    for r in got:
        assert verify(slack["secret"], r["id"], r["ts"], r["body"], r["sig"])
        assert r["ctype"] == "application/json"
    texts = [json.loads(r["body"])["text"] for r in got]
    fin = json.loads([r["body"] for r in got if b"failure" in r["body"]][0])
    assert fin["text"] == (
        "*linux &lt;x64&gt; &amp; co* #12 *failure* on `main` at `3f9c2a7e5b1d` "
        "(Alice &lt;alice@example.org&gt;): failed test "
        "<https://ci.example.org/#/builders/1/builds/12?x=1&amp;y=2|build>")
    assert fin["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": fin["text"]}}]
    assert "*linux &lt;x64&gt; &amp; co* #12 started on `main` at `3f9c2a7e5b1d` " \
           "(Alice &lt;alice@example.org&gt;) on worker w-1" in texts
    (m,) = recv.got("/matrix")
    assert verify(matrix["secret"], m["id"], m["ts"], m["body"], m["sig"])
    body = json.loads(m["body"])
    assert body["msgtype"] == "m.text" and body["format"] == "org.matrix.custom.html"
    assert body["body"].startswith("linux <x64> & co #12 failure on main at 3f9c2a7e5b1d")
    assert body["formatted_body"].startswith(
        "<b>linux &lt;x64&gt; &amp; co</b> #12 <b>failure</b> on <code>main</code>")
    assert 'href="https://ci.example.org/#/builders/1/builds/12?x=1&amp;y=2"' in body["formatted_body"]


def test_trunk_breaks_or_is_fixed_subscription_of_the_docs(kafka, tmp_path):
    """The example of docs/webhooks.md, as written, on a broker that derives events: a receiver
    gets exactly the builder.broken and the builder.fixed of main (not the lkgr.advanced, not the
    other branch), signed, as Slack messages naming the suspect and the fixing build."""
    from test_view_rest import World, rev
    topics = topics_for(kafka, "whcd-%s" % uuid.uuid4().hex[:8])
    topics["derived"] = topics["events"].replace(".events", ".derived")
    kafka.create_topics({topics["derived"]: 3})
    recv = Receiver()
    b = WebhookBroker(kafka, topics, tmp_path, extra=[
        "--view.enabled=true", "--derive.enabled=true", "--topic-derived", topics["derived"],
        "--view.required_builders=main=linux", "--derive.stale_after="]).start()
    try:
        body = {"url": recv.url("/trunk"), "format": "slack",
                "filter": {"type": ["builder.broken", "builder.fixed"], "branch": "main"}}
        r = b.api("POST", "/api/v1/webhooks", body)
        assert r.status_code == 201, r.text
        hook = r.json()
        assert hook["format"] == "slack" and hook["filter"] == body["filter"]
        b.wait_consumer()
        w = World(time.time() - 600)
        sent = 0

        def step(name):
            # Kafka orders nothing across partitions: each build is applied before the next is
            # produced, so the builds complete in the view in the order written here.
            nonlocal sent
            path = tmp_path / ("%s.ndjson" % name)
            write_ndjson(path, w.events[sent:])
            emit(kafka, topics, path, expected=len(w.events) - sent)
            sent = len(w.events)
            b.wait_applied(sent)

        w.change(1, "main", "m1", 1)
        w.change(2, "main", "m2", 2)
        w.full(801, "linux", "main", "m1", 901, 0, 10)
        step("green")
        w.full(802, "linux", "main", "m2", 902, 2, 20)           # broken: suspect m2
        step("broken")
        w.full(803, "linux", "other", "m2", 903, 2, 25)          # red before green: nothing
        step("other")
        w.full(804, "linux", "main", "m3", 904, 0, 30)           # fixed
        step("fixed")
        wait_for(lambda: len(recv.got("/trunk")) >= 2, 60, what="broken and fixed delivered")
        time.sleep(1.0)  # a delivery that should not exist (lkgr.advanced, a copy) shows here
        got = recv.got("/trunk")
        assert len(got) == 2, [g["body"] for g in got]
        for g in got:
            assert verify(hook["secret"], g["id"], g["ts"], g["body"], g["sig"])
            assert g["ctype"] == "application/json"
        msgs = sorted(json.loads(g["body"])["text"] for g in got)
        assert msgs == [
            "*linux* broke on `main` at `%s`: build #1902; suspect `%s` by Dev 2 "
            "&lt;dev2@example.org&gt;" % (rev("m2")[:12], rev("m2")[:12]),
            "*linux* fixed on `main` at `%s` by build #1904, broken since build #1902"
            % rev("m3")[:12]], msgs
        for g in got:
            j = json.loads(g["body"])
            assert j["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": j["text"]}}]
    finally:
        recv.close()
        assert b.stop() == 0, b.log()[-3000:]
