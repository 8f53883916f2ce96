"""firehose-replay against real Apache Kafka: what it reads is checked against kcat (the records,
their partitions, offsets and timestamps) and against the produced events; --summary against the
same statistics computed here in Python; CSV against its documented columns.

Two batches are produced with a clock boundary between them, so time windows have a known answer.
"""

import collections
import csv
import datetime as dt
import io
import json
import math
import os
import subprocess
import time

import pytest

from conftest import BIN, ROOT
import gen_events
from stream_support import TopicSet, emit, matches, wait_topics

REPLAY = BIN / "firehose-replay"
PARTITIONS = 3
CSV_COLUMNS = ["topic", "partition", "offset", "kafka_time", "id", "type", "time", "master", "seq",
               "buildrequestid", "buildid", "builder", "branch", "revision", "owner", "project",
               "worker", "stepid", "name", "number", "results", "duration_s", "started_at",
               "complete_at", "state_string"]


def kcat_records(bootstrap, topic):
    """Every record of topic as kcat sees it: dicts with partition, offset, ts, payload."""
    r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data(kafka):
    if not REPLAY.exists():
        pytest.fail("%s does not exist: run `make` first" % REPLAY)
    # a name of its own per session: an external Kafka (FIREHOSE_TEST_BOOTSTRAP) keeps old topics
    topics = TopicSet("replay", "main-%d-%d" % (os.getpid(), int(time.time())), PARTITIONS)
    kafka.create_topics(topics.specs())
    wait_topics(kafka.bootstrap, topics.specs())
    evs = gen_events.generate(5000, seed=4242)
    first, second = evs[:3000], evs[3000:]
    emit(kafka, topics, first)
    # The boundary: every record of the first batch was produced before it, every record of the
    # second after it (firehose-emit exits only once everything is delivered).
    boundary_ms = int(time.time() * 1000) + 2
    while time.time() * 1000 < boundary_ms + 2:
        time.sleep(0.001)
    emit(kafka, topics, second)
    recs = {t: kcat_records(kafka.bootstrap, t) for t in (topics.events, topics.logs)}
    assert sum(len(v) for v in recs.values()) == len(evs)
    return {"kafka": kafka, "topics": topics, "events": evs, "first": first, "second": second,
            "boundary_ms": boundary_ms, "recs": recs}


def replay(data, *args, expect=0, timeout=120):
    t = data["topics"]
    cmd = [str(REPLAY), "--brokers", data["kafka"].bootstrap, "--topic-events", t.events,
           "--topic-logs", t.logs] + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, timeout=timeout)
    assert r.returncode == expect, "exit %d: %s" % (r.returncode, r.stderr.decode()[-3000:])
    return r


def lines(r):
    return [l for l in r.stdout.decode().split("\n") if l]


def rfc3339(ms):
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def check_order(out_ids, recs):
    """out_ids must hold each record exactly once, and each partition's records in offset order."""
    assert collections.Counter(out_ids) == collections.Counter(json.loads(r["payload"])["id"] for r in recs)
    pos = {i: n for n, i in enumerate(out_ids)}
    per_part = collections.defaultdict(list)
    for r in sorted(recs, key=lambda r: (r["topic"], r["partition"], r["offset"])):
        per_part[(r["topic"], r["partition"])].append(pos[json.loads(r["payload"])["id"]])
    for k, p in per_part.items():
        assert p == sorted(p), "partition %s out of order" % (k,)


def test_replay_of_whole_topics_yields_exactly_the_produced_records(data):
    """No filter, no window: every record of both topics once, byte for byte, in partition order."""
    r = replay(data, "-q")
    out = lines(r)
    produced = {e["id"]: gen_events_line(e) for e in data["events"]}
    ids = [json.loads(l)["id"] for l in out]
    assert len(out) == len(data["events"])
    for l, i in zip(out, ids):
        assert l == produced[i], "record %s changed on the way" % i
    check_order(ids, data["recs"][data["topics"].events] + data["recs"][data["topics"].logs])


def gen_events_line(ev):
    return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode(ev)


def test_offset_range_of_one_partition(data):
    """--partitions 1 --offset-start 10 --offset-end 60 on the events topic: exactly those offsets, in order."""
    t = data["topics"]
    r = replay(data, "-q", "--topics", t.events, "--partitions", "1", "--offset-start", "10", "--offset-end", "60")
    want = [json.loads(x["payload"])["id"] for x in sorted(data["recs"][t.events], key=lambda x: x["offset"])
            if x["partition"] == 1 and 10 <= x["offset"] < 60]
    assert len(want) == 50
    assert [json.loads(l)["id"] for l in lines(r)] == want


@pytest.mark.parametrize("window", ["since", "until", "between"])
def test_time_windows_select_exactly_the_records_produced_in_them(data, window):
    """--since/--until select by Kafka timestamp: exactly the records kcat reports in the window."""
    b = data["boundary_ms"]
    allrecs = data["recs"][data["topics"].events] + data["recs"][data["topics"].logs]
    stamps = sorted(x["ts"] for x in allrecs)
    if window == "since":
        lo, hi, args = b, None, ["--since", rfc3339(b)]
    elif window == "until":
        lo, hi, args = None, b, ["--until", rfc3339(b)]
    else:
        lo, hi = stamps[len(stamps) // 4], stamps[3 * len(stamps) // 4]
        args = ["--since", rfc3339(lo), "--until", rfc3339(hi)]
    want = [x for x in allrecs if (lo is None or x["ts"] >= lo) and (hi is None or x["ts"] < hi)]
    assert want and len(want) < len(allrecs)
    if window == "since":
        assert {json.loads(x["payload"])["id"] for x in want} == {e["id"] for e in data["second"]}
    if window == "until":
        assert {json.loads(x["payload"])["id"] for x in want} == {e["id"] for e in data["first"]}
    r = replay(data, "-q", *args)
    check_order([json.loads(l)["id"] for l in lines(r)], want)


def test_filter_flags_select_what_the_filter_language_matches(data):
    """Repeated flags are any-of, different flags AND: the same events as the filter's Python oracle."""
    flt = {"type": ["build.finished", "step.finished"], "branch": ["try", "main"]}
    r = replay(data, "-q", "--type", "build.finished", "--type", "step.finished", "--branch", "try,main")
    want = [e["id"] for e in data["events"] if matches(flt, e)]
    got = [json.loads(l)["id"] for l in lines(r)]
    assert want and collections.Counter(got) == collections.Counter(want)
    r2 = replay(data, "-q", "--filter", json.dumps({"results": [2, 4], "type": "build.*"}))
    want2 = [e["id"] for e in data["events"] if matches({"results": [2, 4], "type": "build.*"}, e)]
    assert want2 and sorted(json.loads(l)["id"] for l in lines(r2)) == sorted(want2)


def test_csv_has_the_documented_columns(data):
    """--format csv: the header is the documented column list (docs/consumers.md) and each row carries its event's values."""
    doc = (ROOT / "docs" / "consumers.md").read_text()
    assert ",".join(CSV_COLUMNS) in doc, "docs/consumers.md does not list the CSV columns"
    r = replay(data, "-q", "--format", "csv", "--type", "build.finished,step.finished,build.started")
    rows = list(csv.reader(io.StringIO(r.stdout.decode())))
    assert rows[0] == CSV_COLUMNS
    by_id = {e["id"]: e for e in data["events"]}
    want = [e for e in data["events"] if e["type"] in ("build.finished", "step.finished", "build.started")]
    assert len(rows) - 1 == len(want)
    for row in rows[1:]:
        rec = dict(zip(CSV_COLUMNS, row))
        ev = by_id[rec["id"]]
        d = ev["data"]
        assert rec["type"] == ev["type"] and rec["time"] == ev["time"] and rec["master"] == ev["master"]
        assert int(rec["seq"]) == ev["seq"] and rec["topic"] == data["topics"].events
        assert rec["builder"] == d["builder"] and int(rec["buildid"]) == d["buildid"]
        assert rec["revision"] == d["revision"] and rec["owner"] == d["owner"]
        if "results" in d:
            assert int(rec["results"]) == d["results"]
            assert float(rec["duration_s"]) == d["duration_s"]
            assert rec["state_string"] == d["state_string"]
        if ev["type"] == "build.started":
            assert rec["worker"] == d["worker"] and float(rec["started_at"]) == d["started_at"]
        if ev["type"] == "step.finished":
            assert rec["name"] == d["name"] and int(rec["stepid"]) == d["stepid"]


# ---- the summary, computed independently ------------------------------------------------------

def q(values, pct):
    v = sorted(values)
    return v[max(1, (pct * len(v) + 99) // 100) - 1]


def stats(values):
    return {"count": len(values), "mean": sum(values) / len(values), "min": min(values), "max": max(values),
            "p50": q(values, 50), "p95": q(values, 95)}


def python_summary(events):
    steps, days, results, waits, waits_b = (collections.defaultdict(list), collections.defaultdict(list),
                                            collections.defaultdict(collections.Counter), [],
                                            collections.defaultdict(list))
    pending = {}
    for e in events:
        d, t = e["data"], e["type"]
        if t == "step.finished":
            steps[(d["builder"], d["name"])].append(d["duration_s"])
        elif t == "build.finished":
            day = dt.datetime.fromtimestamp(math.floor(d["complete_at"]), tz=dt.timezone.utc).strftime("%Y-%m-%d")
            days[(d["builder"], day)].append(d["duration_s"])
            results[d["builder"]][d["results"]] += 1
        elif t == "buildrequest.new":
            pending[d["buildrequestid"]] = d["submitted_at"]
        elif t == "buildrequest.complete":
            pending.pop(d["buildrequestid"], None)
        elif t == "build.started" and d["buildrequestid"] in pending:
            w = d["started_at"] - pending.pop(d["buildrequestid"])
            waits.append(w)
            waits_b[d["builder"]].append(w)
    return steps, days, results, waits, waits_b


def close(a, b):
    return a == pytest.approx(b, rel=1e-9, abs=1e-9)


def check_stats(got, values, what):
    want = stats(values)
    for k, v in want.items():
        assert close(got[k], v), "%s: %s is %r, want %r" % (what, k, got[k], v)
    assert got["exact"] is True


def test_summary_matches_an_independent_computation(data):
    """--summary: slowest steps, build duration per builder per day, failure rate and queue wait equal Python's over the same events."""
    r = replay(data, "-q", "--summary")
    s = json.loads(r.stdout)
    evs = [e for e in data["events"] if not e["type"].startswith("log.")]   # the summary reads the events topic
    assert s["records"] == len(evs) and s["matched"] == len(evs)
    steps, days, results, waits, waits_b = python_summary(evs)

    assert len(s["steps"]) == len(steps)
    for x in s["steps"]:
        check_stats(x, steps[(x["builder"], x["step"])], "step %s/%s" % (x["builder"], x["step"]))
    p95s = [x["p95"] for x in s["steps"]]
    assert p95s == sorted(p95s, reverse=True), "steps are listed slowest first"

    assert len(s["build_duration"]) == len(days)
    for x in s["build_duration"]:
        check_stats(x, days[(x["builder"], x["day"])], "builds %s %s" % (x["builder"], x["day"]))

    fr = s["failure_rate"]
    total = collections.Counter()
    assert len(fr["builders"]) == len(results)
    for x in fr["builders"]:
        c = results[x["builder"]]
        total.update(c)
        n = sum(c.values())
        assert x["builds"] == n and x["green"] == c[0] + c[1]
        assert close(x["rate"], (n - c[0] - c[1]) / n)
        assert all(x["results"][str(k)] == c[k] for k in range(7))
    n = sum(total.values())
    assert fr["overall"]["builds"] == n and close(fr["overall"]["rate"], (n - total[0] - total[1]) / n)

    check_stats(s["queue_wait"]["overall"], waits, "queue wait")
    assert len(s["queue_wait"]["builders"]) == len(waits_b)
    for x in s["queue_wait"]["builders"]:
        check_stats(x, waits_b[x["builder"]], "queue wait %s" % x["builder"])
    assert all(v == 0 for k, v in s["capped"].items() if k not in ("pending_left", "queue_wait_unmatched"))


def test_summary_bounds_cap_keys_into_other_and_count_them(data):
    """With summary.max_keys=3 and summary.samples=4 the tables hold 3 keys plus "(other)", counts stay exact and what was capped is counted."""
    r = replay(data, "-q", "--summary", "--summary.max_keys=3", "--summary.samples=4")
    s = json.loads(r.stdout)
    evs = [e for e in data["events"] if e["type"] == "step.finished"]
    assert len(s["steps"]) == 4 and any(x["builder"] == "(other)" for x in s["steps"])
    assert sum(x["count"] for x in s["steps"]) == len(evs)
    other = [x for x in s["steps"] if x["builder"] == "(other)"][0]
    assert s["capped"]["steps"] == other["count"] > 0
    assert any(x["exact"] is False for x in s["steps"])


def test_summary_with_a_time_window_and_a_filter(data):
    """--summary honours --since and the filter flags: only the second batch's try builds count."""
    b = data["boundary_ms"]
    r = replay(data, "-q", "--summary", "--since", rfc3339(b), "--branch", "try")
    s = json.loads(r.stdout)
    evs = [e for e in data["second"] if not e["type"].startswith("log.") and matches({"branch": "try"}, e)]
    assert s["matched"] == len(evs)
    steps = python_summary(evs)[0]
    assert sum(x["count"] for x in s["steps"]) == sum(len(v) for v in steps.values())


def test_usage_errors_exit_64(data):
    """Bad options are refused before Kafka is touched, naming the option."""
    r = replay(data, "--since", "yesterday", expect=64)
    assert b"--since" in r.stderr
    r = replay(data, "--results", "9", expect=64)
    assert b"filter.results" in r.stderr
    r = replay(data, "--format", "xml", expect=64)
    assert b"--format" in r.stderr
