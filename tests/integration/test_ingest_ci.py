"""GitHub Actions and GitLab CI reach firehose through their webhooks: every delivery of the vectors
(tests/vectors/github, gitlab), signed, makes exactly its events on real Kafka; a bad or missing
signature or token is 401 and produces nothing; a redelivery is answered from the delivery-id memory
and produces nothing, and the same payload after a restart is the very same events; an oversized
body is 413; and the REST view answers pending, running, revisions and last-green across Buildbot
and GitHub Actions building one repository.

Why: these endpoints take input from outside (GitHub, GitLab) and promise what HttpStatusPush
promises: 2xx only once Kafka has the events, the contract always, and no second set of events for
one delivery. docs/ingest.md is the mapping; tests/vectors/README.md the vectors' format.

Run: python3 -m pytest -q -p no:cacheprovider tests/integration/test_ingest_ci.py
"""

import concurrent.futures
import copy
import datetime
import hashlib
import hmac
import json
import re
import uuid

import pytest
import requests

pytest.importorskip("confluent_kafka")

from conftest import ROOT, wait_for  # noqa: E402
from kafka_reader import TopicReader  # noqa: E402
from test_schemas import EVENT_VALIDATOR  # noqa: E402
from view_helpers import Broker, OpenAPI, Script, emit, write_ndjson  # noqa: E402

SECRET = "It's a test secret, 0123456789"
TOKEN = "gitlab-test-token-0123456789"
MAX_BODY = 262144
SPEC = OpenAPI()
CE = [("content-type", b"application/cloudevents+json")]

SYSTEMS = {
    "github": {"path": "/api/v1/ingest/github", "event": "X-GitHub-Event", "sig": "X-Hub-Signature-256"},
    "gitlab": {"path": "/api/v1/ingest/gitlab", "event": "X-Gitlab-Event", "sig": "X-Gitlab-Token"},
}


def load_vectors():
    out = []
    for system in ("github", "gitlab"):
        for p in sorted((ROOT / "tests" / "vectors" / system).glob("*.json")):
            v = json.loads(p.read_text(encoding="utf-8"))
            v["name"] = "%s/%s" % (system, p.stem)
            out.append(v)
    return out


VECTORS = load_vectors()


def post(b, system, body, headers, sign=True, secret=None):
    """Posts one delivery; body is JSON-able or bytes. Signs (GitHub) or adds the token (GitLab)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    h.update(headers)
    if sign and system == "github":
        mac = hmac.new((secret or SECRET).encode(), raw, hashlib.sha256).hexdigest()
        h["X-Hub-Signature-256"] = "sha256=" + mac
    elif sign:
        h["X-Gitlab-Token"] = secret or TOKEN
    r = requests.post(b.url + SYSTEMS[system]["path"].lstrip("/"), data=raw, headers=h, timeout=30)
    SPEC.check(SYSTEMS[system]["path"], r, method="post")       # the answer docs/openapi.yaml declares
    return r


def fresh(system, headers):
    """The headers of a delivery with a new delivery id."""
    h = dict(headers)
    key = "X-GitHub-Delivery" if system == "github" else "Idempotency-Key"
    h[key] = str(uuid.uuid4())
    return h


def canonical(event):
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.fixture(scope="module")
def env(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ingest-ci")
    topics = {k: "ci-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("events", "logs", "dlq")}
    kafka.create_topics({topics["events"]: 3, topics["logs"]: 3, topics["dlq"]: 1})
    b = Broker(kafka, topics, tmp / "view.db", tmp / "broker.log",
               extra=["--ingest.github.secret", SECRET, "--ingest.gitlab.token", TOKEN,
                      "--ingest.ci.max_body_bytes", str(MAX_BODY),
                      "--view.required_builders", "trunk=linux-x64-rel,CI / build,CI / test"]).start()
    reader = TopicReader(kafka.bootstrap, [topics["events"], topics["logs"]])
    yield {"broker": b, "topics": topics, "reader": reader, "tmp": tmp, "kafka": kafka}
    reader.close()
    b.stop()


def read_ids(reader, ids, timeout=60):
    """Reads until a record of each id is there; returns {id: [records]} of every record read so far."""
    def have():
        reader.read(timeout=2)
        got = {r["event"]["id"] for r in reader.records}
        return set(ids) <= got
    wait_for(have, timeout, interval=0.1, what="records %s" % sorted(ids)[:3])
    by_id = {}
    for r in reader.records:
        by_id.setdefault(r["event"]["id"], []).append(r)
    return by_id


# ---------------------------------------------------------------- the vectors, end to end


def test_vectors_cover_every_mapped_event_type():
    seen = set()
    for v in VECTORS:
        for d in v["deliveries"]:
            body = d["body"]
            ev = d["headers"].get("X-GitHub-Event") or d["headers"].get("X-Gitlab-Event")
            what = body.get("action") or body.get("build_status") or body.get("object_attributes", {}).get("status")
            seen.add((v["system"], ev, what, bool(d["events"])))
            for e in d["events"]:
                errors = [err.message for err in EVENT_VALIDATOR.iter_errors(e["event"])]
                assert not errors, (v["name"], e["event"]["id"], errors)
    mapped = {(s, e, w) for s, e, w, has in seen if has}
    for want in [("github", "workflow_job", "queued"), ("github", "workflow_job", "waiting"),
                 ("github", "workflow_job", "in_progress"), ("github", "workflow_job", "completed"),
                 ("github", "workflow_run", "requested"), ("github", "check_run", "created"),
                 ("github", "check_run", "completed"), ("gitlab", "Job Hook", "pending"),
                 ("gitlab", "Job Hook", "running"), ("gitlab", "Job Hook", "success"),
                 ("gitlab", "Job Hook", "failed"), ("gitlab", "Job Hook", "canceled"),
                 ("gitlab", "Job Hook", "skipped"), ("gitlab", "Pipeline Hook", "pending"),
                 ("gitlab", "System Hook", "running")]:
        assert want in mapped, want


def test_every_vector_delivery_makes_exactly_its_events(env):
    b, reader, topics = env["broker"], env["reader"], env["topics"]
    sent = []                                    # (vector, delivery, answer ids)
    for v in VECTORS:
        for d in v["deliveries"]:
            r = post(b, v["system"], d["body"], d["headers"])
            assert r.status_code == d["answer"]["status"], (v["name"], r.status_code, r.text)
            j = r.json()
            assert j["ids"] == [e["event"]["id"] for e in d["events"]], (v["name"], j)
            assert j["accepted"] == len(d["events"])
            assert ("ignored" in j) == d["answer"]["ignored"], (v["name"], j)
            sent.append((v, d))
    want_ids = {e["event"]["id"] for _, d in sent for e in d["events"]}
    by_id = read_ids(reader, want_ids)
    problems = []
    used = {}
    for v, d in sent:
        for e in d["events"]:
            eid = e["event"]["id"]
            k = used.get(eid, 0)              # the same id twice (waiting then queued): in order
            used[eid] = k + 1
            recs = sorted(by_id[eid], key=lambda r: (r["partition"], r["offset"]))
            if k >= len(recs):
                problems.append("%s %s: %d records, want more" % (v["name"], eid, len(recs)))
                continue
            rec = recs[k]
            got = dict(rec["event"], seq=e["event"]["seq"])      # seq: time-based, the one normalised member
            if canonical(got) != canonical(e["event"]):
                problems.append("%s %s:\n got  %s\n want %s" % (v["name"], eid, canonical(got),
                                                                canonical(e["event"])))
            if (rec["topic"], rec["key"], rec["headers"]) != (topics[e["topic"]], e["key"], CE):
                problems.append("%s %s: on %s key %s headers %r" % (v["name"], eid, rec["topic"], rec["key"],
                                                                   rec["headers"]))
            if not isinstance(rec["event"]["seq"], int) or rec["event"]["seq"] <= 0:
                problems.append("%s %s: seq %r" % (v["name"], eid, rec["event"]["seq"]))
    for eid, n in used.items():
        if len(by_id[eid]) != n:
            problems.append("%s: %d records, want %d" % (eid, len(by_id[eid]), n))
    assert not problems, "\n".join(problems)
    # One job's events keep their order on its partition: the key is the job's request.
    last = {}
    for r in sorted(reader.records, key=lambda r: (r["partition"], r["offset"])):
        if r["event"]["type"] == "buildrequest.complete":
            last[r["key"]] = "complete"
        elif r["key"] in last and r["event"]["type"].startswith(("build.", "step.")):
            problems.append("%s after its request completed" % r["event"]["id"])
    assert not problems, problems
    # The view has them: GitLab's and GitHub's builds with their results.
    wait_for(lambda: b.get("/api/v1/builds/2000000000077132").status_code == 200, 30, what="GitLab build in view")
    assert b.json("/api/v1/builds/2000000000077132")["build"]["results"] == 4
    assert b.json("/api/v1/builds/2000000000077133")["build"]["results"] == 1
    gh = wait_for(lambda: b.json("/api/v1/builds/1000031415926535")["build"].get("steps"), 30,
                  what="steps of the GitHub build")
    assert [s["name"] for s in gh] == ["Set up job", "Run actions/checkout@v4", "make -j2 all unit",
                                      "Post Run actions/checkout@v4", "Complete job"]
    metrics = b.get("/metrics").text
    assert 'firehose_ingest_ci_ignored_total{system="github"}' in metrics


# ---------------------------------------------------------------- refused deliveries


def a_job(jid, action="queued", sha="0" * 40, branch="main", repo="acme-ci/refused"):
    """A small workflow_job payload of its own (so its ids appear nowhere else)."""
    web = "https://github.com/" + repo
    return {"action": action,
            "workflow_job": {"id": jid, "run_id": jid + 1, "run_attempt": 1, "workflow_name": "CI", "name": "build",
                             "head_branch": branch, "head_sha": sha, "status": action, "conclusion": None,
                             "created_at": "2026-11-22T12:00:00Z", "started_at": "2026-11-22T12:00:00Z",
                             "completed_at": None, "runner_name": None, "steps": [], "labels": ["ubuntu-24.04"]},
            "repository": {"html_url": web, "full_name": repo, "clone_url": web + ".git"},
            "sender": {"login": "mallory"}}


def test_bad_or_missing_signature_is_401_and_produces_nothing(env):
    b, reader = env["broker"], env["reader"]
    body = a_job(90000001)
    gh = {"X-GitHub-Event": "workflow_job"}
    other = json.dumps(a_job(90000002)).encode()
    cases = [
        ("github", dict(gh, **{"X-Hub-Signature-256": "sha256=" + "0" * 64}), "X-Hub-Signature-256"),
        ("github", dict(gh, **{"X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), other,
                                                                           hashlib.sha256).hexdigest()}),
         "X-Hub-Signature-256"),
        ("github", dict(gh, **{"X-Hub-Signature-256": "sha1=" + "0" * 40}), "X-Hub-Signature-256"),
        ("github", dict(gh), "X-Hub-Signature-256"),
        ("gitlab", {"X-Gitlab-Event": "Job Hook", "X-Gitlab-Token": "wrong-token"}, "X-Gitlab-Token"),
        ("gitlab", {"X-Gitlab-Event": "Job Hook"}, "X-Gitlab-Token"),
    ]
    for system, headers, param in cases:
        r = post(b, system, body, fresh(system, headers), sign=False)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert r.json()["parameter"] == param, r.json()
    # A signature made with another secret is refused too.
    r = post(b, "github", body, fresh("github", gh), secret="not the secret")
    assert r.status_code == 401
    # Nothing was produced: a valid delivery made after them is read, theirs never.
    r = post(b, "github", a_job(90000003), fresh("github", gh))
    assert r.status_code == 202, r.text
    by_id = read_ids(reader, ["github:github.com:job:90000003:requested"])
    assert not [i for i in by_id if ":90000001:" in i or ":90000002:" in i], sorted(by_id)
    assert 'firehose_ingest_ci_rejected_total{system="github"}' in b.get("/metrics").text


def test_a_redelivery_produces_nothing_and_a_restart_the_same_events(env, tmp_path):
    b, reader, kafka, topics = env["broker"], env["reader"], env["kafka"], env["topics"]
    headers = fresh("github", {"X-GitHub-Event": "workflow_job"})
    body = a_job(90000010)
    first = post(b, "github", body, headers)
    assert first.status_code == 202 and first.json()["accepted"] == 1, first.text
    again = post(b, "github", body, headers)
    assert again.status_code == 200, again.text
    assert again.json() == {"accepted": 0, "ids": [], "duplicate": headers["X-GitHub-Delivery"]}
    eid = "github:github.com:job:90000010:requested"
    read_ids(reader, [eid])
    # Two copies of one delivery at once: one is produced, the other answered as a duplicate.
    h2 = fresh("github", {"X-GitHub-Event": "workflow_job"})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        codes = sorted(f.result().status_code for f in [pool.submit(post, b, "github", a_job(90000011), h2)
                                                        for _ in range(2)])
    assert codes == [200, 202], codes
    # A broker that never saw it (a restart: empty memory) makes the very same event from it.
    b2 = Broker(kafka, topics, tmp_path / "view2.db", tmp_path / "broker2.log",
                extra=["--ingest.github.secret", SECRET]).start()
    try:
        r = post(b2, "github", body, headers)
        assert r.status_code == 202 and r.json()["ids"] == [eid], r.text
        r = post(b2, "gitlab", {"object_kind": "build"}, {"X-Gitlab-Event": "Job Hook"})
        assert r.status_code == 503 and r.json()["error"] == "disabled", r.text
    finally:
        b2.stop()
    wait_for(lambda: len(read_ids(reader, [eid])[eid]) == 2, 30, what="the restarted broker's copy")
    by_id = read_ids(reader, [eid, "github:github.com:job:90000011:requested"])
    a, c = by_id[eid]
    no_seq = lambda raw: re.sub(rb'"seq":[0-9]+', b'"seq":0', raw)  # noqa: E731
    assert no_seq(a["value"]) == no_seq(c["value"])                   # all but seq, byte for byte
    assert (a["key"], a["partition"], a["headers"]) == (c["key"], c["partition"], c["headers"])
    assert len(by_id["github:github.com:job:90000011:requested"]) == 1
    # The view applies it once: one pending request.
    pend = wait_for(lambda: [p for p in b.json("/api/v1/pending", {"limit": 10000})["pending"]
                             if p["buildrequestid"] == 10**15 + 90000010], 30, what="the request pending")
    assert len(pend) == 1


def test_oversized_body_is_413_and_produces_nothing(env):
    b, reader = env["broker"], env["reader"]
    big = a_job(90000020)
    big["workflow_job"]["padding"] = "x" * MAX_BODY
    r = post(b, "github", big, fresh("github", {"X-GitHub-Event": "workflow_job"}))
    assert r.status_code == 413, r.text
    r = post(b, "gitlab", dict(big, object_kind="build"), fresh("gitlab", {"X-Gitlab-Event": "Job Hook"}))
    assert r.status_code == 413, r.text
    # A body past http.max_body_bytes (64 KiB, REST's cap) but within ingest.ci.max_body_bytes is taken:
    # GitLab pipelines with many jobs are that large.
    v = [v for v in VECTORS if v["name"] == "gitlab/04-pipeline-hook-is-a-change"][0]
    d = copy.deepcopy(v["deliveries"][0])
    job = d["body"]["builds"][0]
    d["body"]["builds"] = [dict(job, id=80000 + i, name="shard %d/400" % i) for i in range(400)]
    raw = json.dumps(d["body"]).encode()
    assert 65536 < len(raw) < MAX_BODY
    r = post(b, "gitlab", raw, fresh("gitlab", d["headers"]))
    assert r.status_code == 202 and r.json()["ids"] == [d["events"][0]["event"]["id"]], r.text
    # Nothing of the 413s: a later delivery is read, their events never.
    r = post(b, "github", a_job(90000021), fresh("github", {"X-GitHub-Event": "workflow_job"}))
    by_id = read_ids(reader, ["github:github.com:job:90000021:requested"])
    assert not [i for i in by_id if ":90000020:" in i]


def test_malformed_deliveries_are_4xx_naming_what_is_wrong(env):
    b = env["broker"]
    gh = {"X-GitHub-Event": "workflow_job"}
    cases = [
        ("github", b"{not json", gh, 400, "body"),
        ("github", b"[1,2]", gh, 400, "body"),
        ("github", {"action": "queued"}, gh, 400, "body.workflow_job"),
        ("github", dict(a_job(90000030), workflow_job={"id": "7"}), gh, 400, "body.workflow_job.id"),
        ("github", a_job(90000031), {}, 400, "X-GitHub-Event"),
        ("gitlab", {"object_kind": "pipeline"}, {"X-Gitlab-Event": "Job Hook"}, 400, "body.object_kind"),
    ]
    for system, body, headers, status, param in cases:
        r = post(b, system, body, fresh(system, headers))
        assert r.status_code == status, (body, r.status_code, r.text)
        assert r.json()["parameter"] == param, (body, r.json())
    # Without a delivery id GitHub's delivery is refused (GitHub always sends one).
    r = post(b, "github", a_job(90000032), gh)
    assert r.status_code == 400 and r.json()["parameter"] == "X-GitHub-Delivery", r.text
    # Form-encoded webhooks are refused with a hint.
    raw = b"payload=" + json.dumps(a_job(90000033)).encode()
    h = fresh("github", gh)
    h["X-Hub-Signature-256"] = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    h["Content-Type"] = "application/x-www-form-urlencoded"
    r = requests.post(b.url + "api/v1/ingest/github", data=raw, headers=h, timeout=30)
    SPEC.check("/api/v1/ingest/github", r, method="post")
    assert r.status_code == 415 and "application/json" in r.json()["message"], r.text
    # An unknown event is acknowledged and counted, not an error.
    r = post(b, "github", {"zen": "hello"}, fresh("github", {"X-GitHub-Event": "ping"}))
    assert r.status_code == 202 and r.json()["accepted"] == 0 and "ping" in r.json()["ignored"], r.text


# ---------------------------------------------------------------- REST across Buildbot and GitHub


REPO = "https://github.com/acme-ci/mixed"
REVS = ["a1" * 20, "b2" * 20, "c3" * 20]
T0 = 1795338000.0                     # 2026-11-22T08:20:00Z


def gh_iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def gh_mixed_job(jid, name, action, rev_i, t, conclusion=None):
    body = a_job(jid, action=action, sha=REVS[rev_i], branch="trunk", repo="acme-ci/mixed")
    j = body["workflow_job"]
    j.update(name=name, created_at=gh_iso(t), started_at=gh_iso(t + 5))
    if action in ("in_progress", "completed"):
        j.update(runner_name="GitHub Actions %d" % jid, runner_id=jid)
    if action == "completed":
        j.update(completed_at=gh_iso(t + 60), conclusion=conclusion)
    return body


def gh_mixed_run(rid, rev_i, t):
    return {"action": "requested",
            "workflow_run": {"id": rid, "name": "CI", "head_branch": "trunk", "head_sha": REVS[rev_i],
                             "created_at": gh_iso(t), "event": "push", "status": "queued",
                             "head_commit": {"id": REVS[rev_i], "message": "change %d" % rev_i,
                                             "timestamp": gh_iso(T0 + 100 * rev_i),
                                             "author": {"name": "Alice", "email": "alice@acme.example"}}},
            "repository": {"html_url": REPO, "full_name": "acme-ci/mixed"}, "sender": {"login": "alice-dev"}}


def buildbot_events():
    """Buildbot's builder linux-x64-rel on the same repository and branch: changes for the three
    revisions, green builds at the first two, the third running; a request pending at the third."""
    s = Script(T0)
    ctx = lambda br, rev, bid=None: dict(  # noqa: E731
        {"buildrequestid": br}, **({"buildid": bid} if bid else {}),
        **{"builder": "linux-x64-rel", "builderid": 12, "branch": "trunk", "revision": REVS[rev],
           "repository": REPO, "project": "acme-ci/mixed", "codebase": "", "owner": "alice@acme.example"})
    for i in range(3):
        s.add("change.new", {"changeid": 700 + i, "author": "Alice <alice@acme.example>", "comments": "change %d" % i,
                             "files": ["w.c"], "when": T0 + 100 * i, "category": None, "revlink": "",
                             "branch": "trunk", "revision": REVS[i], "repository": REPO, "project": "acme-ci/mixed",
                             "codebase": ""}, 100 * i)
    for i in range(3):
        br, bid, t = 800 + i, 900 + i, 100 * i + 10
        s.add("buildrequest.new", dict(ctx(br, i), buildsetid=600 + i, priority=0, submitted_at=T0 + t,
                                       reason="scheduler"), t)
        s.add("buildrequest.claimed", dict(ctx(br, i), claimed_at=T0 + t + 1, claimed_by_master="bb-1"), t + 1)
        s.add("build.started", dict(ctx(br, i, bid), number=i, worker="w-1", started_at=T0 + t + 2), t + 2)
        if i < 2:
            s.add("build.finished", dict(ctx(br, i, bid), number=i, complete_at=T0 + t + 50, results=0,
                                         state_string="build successful", duration_s=48.0), t + 50)
            s.add("buildrequest.complete", dict(ctx(br, i, bid), complete_at=T0 + t + 50, results=0), t + 50)
    s.add("buildrequest.new", dict(ctx(810, 2), buildsetid=610, priority=0, submitted_at=T0 + 290,
                                   reason="force"), 290)
    return s.events


def test_rest_answers_across_buildbot_and_github_actions(env):
    b, topics, kafka = env["broker"], env["topics"], env["kafka"]
    nd = env["tmp"] / "buildbot.ndjson"
    write_ndjson(nd, buildbot_events())
    emit(kafka, topics, nd)
    gh = lambda body: post(b, "github", body, fresh("github", {"X-GitHub-Event": body.get("workflow_run") and  # noqa
                                                              "workflow_run" or "workflow_job"}))
    for i in range(3):
        assert gh(gh_mixed_run(5000 + i, i, T0 + 100 * i + 5)).status_code == 202
    for i, (build, test) in enumerate([("success", "success"), ("success", "failure")]):
        t = T0 + 100 * i + 20
        for jid, name, concl in ((6000 + 10 * i, "build", build), (6001 + 10 * i, "test", test)):
            for action in ("queued", "in_progress", "completed"):
                assert gh(gh_mixed_job(jid, name, action, i, t, concl)).status_code == 202
    # At the third revision: build queued (pending), test running.
    assert gh(gh_mixed_job(6020, "build", "queued", 2, T0 + 220)).status_code == 202
    assert gh(gh_mixed_job(6021, "test", "queued", 2, T0 + 220)).status_code == 202
    assert gh(gh_mixed_job(6021, "test", "in_progress", 2, T0 + 220)).status_code == 202

    def answers():
        pend = b.json("/api/v1/pending", {"repository": REPO})["pending"]
        run = b.json("/api/v1/running", {"repository": REPO})["running"]
        return ({(p["builder"], p["revision"]) for p in pend} == {("CI / build", REVS[2]),
                                                                  ("linux-x64-rel", REVS[2])} and
                {(r["builder"], r["revision"]) for r in run} == {("CI / test", REVS[2]),
                                                                 ("linux-x64-rel", REVS[2])} and (pend, run))
    pend, run = wait_for(answers, 60, interval=0.2, what="pending and running of both systems")
    gh_pend = [p for p in pend if p["builder"] == "CI / build"][0]
    assert gh_pend["buildrequestid"] == 10**15 + 6020 and gh_pend["buildsetid"] == 10**15 + 6020 + 1
    gh_run = [r for r in run if r["builder"] == "CI / test"][0]
    assert (gh_run["buildid"], gh_run["worker"], gh_run["master"]) == (10**15 + 6021, "GitHub Actions 6021",
                                                                        "github.com")

    # Revisions: each once, newest first, with both systems' builders.
    revs = b.json("/api/v1/revisions", {"branch": "trunk"})
    assert [r["revision"] for r in revs["revisions"]] == REVS[::-1]
    assert set(revs["builders"]) == {"linux-x64-rel", "CI / build", "CI / test"}
    first = revs["revisions"][2]["builds"]
    assert {k: v["results"] for k, v in first.items()} == {"linux-x64-rel": 0, "CI / build": 0, "CI / test": 0}

    # Last green requires builders of both systems (view.required_builders): the test job failed at
    # the second revision, so the first is the newest good for all three.
    lg = b.json("/api/v1/last-green", {"branch": "trunk"})
    assert lg["required_from"] == "config"
    assert lg["required_builders"] == ["CI / build", "CI / test", "linux-x64-rel"]
    assert lg["revision"] == REVS[0], lg
    # Everything green at the third: it becomes the last green.
    for jid, name, action in ((6020, "build", "in_progress"), (6020, "build", "completed"),
                              (6021, "test", "completed")):
        assert gh(gh_mixed_job(jid, name, action, 2, T0 + 220, "success")).status_code == 202
    bb = Script(T0)
    bb.seq["master-1"] = 1000
    bb.n = 1000
    bb.add("build.finished", {"buildrequestid": 802, "buildid": 902, "builder": "linux-x64-rel", "builderid": 12,
                              "branch": "trunk", "revision": REVS[2], "repository": REPO, "project": "acme-ci/mixed",
                              "codebase": "", "owner": "alice@acme.example", "number": 2,
                              "complete_at": T0 + 300, "results": 0, "state_string": "build successful",
                              "duration_s": 88.0}, 300)
    write_ndjson(nd, bb.events)
    emit(kafka, topics, nd)
    lg = wait_for(lambda: (lambda x: x if x["revision"] == REVS[2] else None)(
        b.json("/api/v1/last-green", {"branch": "trunk"})), 60, interval=0.2, what="last green at the third")
    assert {x["builder"]: x["good_by"] for x in lg["builders"]} == {
        "linux-x64-rel": "green_build", "CI / build": "green_build", "CI / test": "green_build"}
