"""Masters that cannot run the plugin still reach firehose: Buildbot's stock HttpStatusPush reporter
posts its build dictionaries to POST /api/v1/ingest/buildbot, and the broker turns them into v1
events on real Kafka that the view serves. Bad posts get a 400 naming the member; the ingest scope
is required; a retried post is the same events (stable ids), applied once.
"""

import json
import textwrap
import uuid

import pytest
import requests

from buildbot_harness import REPO, REVISION, TEST_BODY, Deployment
from conftest import wait_for
from view_helpers import Broker, OpenAPI

PATH = "/api/v1/ingest/buildbot"
SPEC = OpenAPI()

ADMIN = "statuspush-admin-token-0123456789"
INGEST = "statuspush-ingest-token-0123456789"
READER = "statuspush-reader-token-0123456789"


@pytest.fixture(scope="module")
def broker(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("statuspush")
    names = {k: "sp-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("events", "logs", "dlq")}
    kafka.create_topics({names["events"]: 3, names["logs"]: 3, names["dlq"]: 1})
    tokens = tmp / "tokens.json"
    tokens.write_text(json.dumps([{"name": "pusher", "token": INGEST, "scopes": ["ingest"]},
                                  {"name": "reader", "token": READER, "scopes": ["read"]}]))
    b = Broker(kafka, names, tmp / "view.db", tmp / "broker.log", anonymous=False,
               extra=["--auth.admin_token", ADMIN, "--auth.tokens_file", str(tokens)]).start()
    yield b, tmp
    b.stop()


def post(b, body, token=INGEST, master="bb-push"):
    headers = {"Authorization": "Bearer " + token} if token else {}
    params = {"master": master} if master else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    r = requests.post(b.url + "api/v1/ingest/buildbot", params=params, data=data, headers=headers, timeout=30)
    SPEC.check(PATH, r, method="post")          # every answer is the one docs/openapi.yaml declares
    return r


def read(b, path, params=None):
    r = requests.get(b.url + path.lstrip("/"), params=params, headers={"Authorization": "Bearer " + READER},
                     timeout=30)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


# A build dictionary as Buildbot 4's HttpStatusPush sends it (data API build + builder + buildset).
def build_dict(buildid, complete, results=None):
    d = {"buildid": buildid, "number": 7, "builderid": 3, "buildrequestid": 900 + buildid, "workerid": 1,
         "masterid": 1, "started_at": 1795323662.1, "complete_at": 1795323901.45 if complete else None,
         "complete": complete, "state_string": "build successful" if complete else "building",
         "results": results, "locks_duration_s": 0,
         "properties": {"owner": ["bob@example.org", "Build"], "workername": ["w-7", "Worker"],
                        "buildnumber": [7, "Build"]},
         "builder": {"builderid": 3, "name": "linux-push", "description": None, "tags": []},
         "buildset": {"bsid": 5, "reason": "push", "submitted_at": 1795323660, "complete": complete,
                      "sourcestamps": [{"ssid": 2, "branch": "trunk", "revision": REVISION, "project": "firehose",
                                        "repository": REPO, "codebase": "", "created_at": 1795323655,
                                        "patch": None}]},
         "url": "http://127.0.0.1:8010/#/builders/3/builds/7"}
    return d


def test_post_becomes_events_the_view_serves_and_a_retry_is_applied_once(broker):
    b, _ = broker
    r = post(b, build_dict(41, False))
    assert r.status_code == 202, r.text
    assert r.json()["ids"] == ["statuspush:bb-push:41:started", "statuspush:bb-push:41:properties-started"]
    wait_for(lambda: [x for x in read(b, "/api/v1/running")["running"] if x["buildid"] == 41], 30,
             what="build 41 running in the view")
    run = [x for x in read(b, "/api/v1/running")["running"] if x["buildid"] == 41][0]
    assert (run["builder"], run["branch"], run["revision"], run["owner"], run["worker"]) == \
        ("linux-push", "trunk", REVISION, "bob@example.org", "w-7")
    for _ in range(2):                                 # the reporter retries: same ids, applied once
        r = post(b, build_dict(41, True, results=2))
        assert r.status_code == 202, r.text
    wait_for(lambda: read(b, "/api/v1/builds/41")["build"]["finished"], 30, what="build 41 finished")
    got = read(b, "/api/v1/builds/41")["build"]
    assert got["results"] == 2 and got["duration_s"] == pytest.approx(239.35, abs=0.01)
    assert got["properties"]["owner"] == ["bob@example.org", "Build"]
    builds = read(b, "/api/v1/builds", {"builder": "linux-push"})["builds"]
    assert [x["buildid"] for x in builds] == [41]
    assert not [x for x in read(b, "/api/v1/running")["running"] if x["buildid"] == 41]


def test_a_post_without_workername_names_the_worker_as_the_plugin_does(broker):
    # firehose_buildbot names a worker it cannot look up worker-<workerid>; "" would fail the contract.
    b, _ = broker
    body = build_dict(70, False)
    del body["properties"]["workername"]
    r = post(b, body)
    assert r.status_code == 202, r.text
    run = wait_for(lambda: [x for x in read(b, "/api/v1/running")["running"] if x["buildid"] == 70], 30,
                   what="build 70 running in the view")
    assert run[0]["worker"] == "worker-1", run


def test_bad_posts_get_400_naming_what_is_wrong(broker):
    b, _ = broker
    cases = [
        ({"master": None, "body": build_dict(50, False)}, "master"),
        ({"master": "bad name!", "body": build_dict(50, False)}, "master"),
        ({"body": "{not json"}, "body"),
        ({"body": "[1,2]"}, "body"),
        ({"body": dict(build_dict(50, False), buildid="x")}, "body.buildid"),
        ({"body": dict(build_dict(50, False), started_at=None)}, "body.started_at"),
        ({"body": dict(build_dict(50, True), results=None)}, "body.results"),
        ({"body": dict(build_dict(50, True), results=9)}, "body.results"),
        ({"body": dict(build_dict(50, False), properties=[1])}, "body.properties"),
    ]
    for case, param in cases:
        r = post(b, case["body"], master=case.get("master", "bb-push"))
        assert r.status_code == 400, (case, r.status_code, r.text)
        j = r.json()
        assert j["parameter"] == param and param.split(".")[-1] in j["message"], (case, j)


def test_the_ingest_scope_is_required(broker):
    b, _ = broker
    assert post(b, build_dict(60, False), token=None).status_code == 401
    assert post(b, build_dict(60, False), token="not-a-token-0123456789").status_code == 401
    r = post(b, build_dict(60, False), token=READER)
    assert r.status_code == 403 and "ingest" in r.json()["message"]
    assert post(b, build_dict(60, False), token=ADMIN).status_code == 202


def test_a_real_master_with_httpstatuspush_reaches_the_view(broker, tmp_path):
    b, _ = broker
    body = TEST_BODY + textwrap.dedent('''\
        from buildbot.plugins import reporters
        c.setdefault("services", []).append(reporters.HttpStatusPush(
            serverUrl=%r, headers={"Authorization": "Bearer %s"}))
    ''') % (b.url + "api/v1/ingest/buildbot?master=bb-stock", INGEST)
    d = Deployment(tmp_path, None, body=body)
    try:
        d.start()
        d.sendchange("push without the plugin", ["a.c"])
        wait_for(lambda: len(d.finished_builds()) >= 2, 120, interval=0.3, what="two finished builds")

        def both():
            got = {x["builder"]: x for x in read(b, "/api/v1/builds", {"branch": "trunk"})["builds"]
                   if x["master"] == "bb-stock" and x["finished"]}
            return got if {"pass", "fail"} <= set(got) else None
        got = wait_for(both, 60, interval=0.3, what="both builds finished in the view")
    finally:
        d.stop()
    assert got["pass"]["results"] == 0 and got["fail"]["results"] == 2, got
    assert got["pass"]["revision"] == REVISION and got["pass"]["repository"] == REPO
    detail = read(b, "/api/v1/builds/%d" % got["pass"]["buildid"])["build"]
    # HttpStatusPush sends the build's properties with the finished build (want_properties).
    assert detail["properties"]["color"] == ["blue", "color"], detail["properties"]
    assert detail["properties"]["buildername"][0] == "pass"
