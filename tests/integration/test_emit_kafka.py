"""firehose-emit against real Apache Kafka: realistic events in, everything read back with kcat.

Checks the contract of docs/CONVENTIONS-DRAFT.md: topics (log.* -> firehose.logs, the rest ->
firehose.events), keys (buildrequest/<id>, change/<id>, worker/<id>, master/<name>), one
partition per key, order per key, the summary line and the exit codes.
"""

import collections
import json
import re
import shutil
import subprocess
import time

import pytest

from conftest import BIN, wait_for
import gen_events

EMIT = BIN / "firehose-emit"
N_EVENTS = 100_000
PARTITIONS = 6
# CONVENTIONS-DRAFT.md: "firehose-emit: sent=N rejected=N bytes=N elapsed=1.234s rate=N events/s".
# Parsed as key=value words so that extra fields (e.g. failed=N, "27.9 MB/s") do not break it.
SUMMARY_RE = re.compile(r"^firehose-emit: (?=.*\bsent=)(.*)$", re.M)
SUMMARY_FIELDS = ("sent", "rejected", "bytes", "elapsed", "rate")


@pytest.fixture(scope="module")
def emit_bin():
    if not EMIT.exists():
        pytest.fail("%s does not exist: run `make` first" % EMIT)
    if shutil.which("kcat") is None:
        pytest.fail("kcat is needed to read the topics back (apt-get install kcat)")
    return EMIT


def write_ndjson(path, events):
    enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with open(path, "w", encoding="utf-8") as f:
        for ev in events:
            f.write(enc(ev) + "\n")


def run_emit(emit_bin, args, timeout=600):
    t0 = time.monotonic()
    proc = subprocess.run([str(emit_bin)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    proc.elapsed = time.monotonic() - t0
    return proc


def summary(proc):
    m = SUMMARY_RE.findall(proc.stderr)
    assert m, "no summary line on stderr; stderr tail:\n" + proc.stderr[-2000:]
    fields = dict(re.findall(r"([a-z_]+)=([0-9.]+)", m[-1]))
    missing = [f for f in SUMMARY_FIELDS if f not in fields]
    assert not missing, "summary line %r lacks %s" % (m[-1], missing)
    return {k: (float(v) if "." in v else int(v)) for k, v in fields.items()}


def consume_once(bootstrap, topic):
    """All records of topic, as dicts with topic/partition/offset/key/payload (kcat -J)."""
    proc = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J",
                           "-X", "fetch.message.max.bytes=16777216"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if proc.returncode != 0:
        return None
    out = []
    for line in proc.stdout.splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def consume(bootstrap, topic, expected, timeout=120):
    """Poll (bounded) until topic holds at least `expected` records; return them all."""
    got = {}

    def enough():
        recs = consume_once(bootstrap, topic)
        if recs is not None:
            got["recs"] = recs
        return recs is not None and len(recs) >= expected

    try:
        wait_for(enough, timeout, interval=0.5, what="%d records on %s" % (expected, topic))
    except TimeoutError:
        pass                                   # the assertions below report what is missing
    return got.get("recs", [])


def check_records(records, inputs, topic_events, topic_logs):
    """The shared assertions: ids exactly once, topic, key, partition per key, order per key."""
    index = {ev["id"]: i for i, ev in enumerate(inputs)}
    by_id = {ev["id"]: ev for ev in inputs}
    seen = collections.Counter()
    key_partition = {}
    per_key = collections.defaultdict(list)     # (topic, key) -> [(partition, offset, input index, ev)]
    problems = []

    for r in records:
        payload = r.get("payload")
        try:
            ev = json.loads(payload)
        except (TypeError, ValueError):
            problems.append("undecodable payload at %s/%s@%s: %.200r" % (r["topic"], r["partition"],
                                                                          r["offset"], payload))
            continue
        eid = ev.get("id")
        seen[eid] += 1
        if eid not in index:
            problems.append("record with unknown id %r at %s/%s@%s" % (eid, r["topic"], r["partition"], r["offset"]))
            continue
        if ev != by_id[eid]:
            problems.append("payload of %s differs from the input line" % eid)
        want_topic = topic_logs if ev["type"].startswith("log.") else topic_events
        if r["topic"] != want_topic:
            problems.append("%s (%s) on %s, want %s" % (eid, ev["type"], r["topic"], want_topic))
        want_key = gen_events.kafka_key(ev)
        if r.get("key") != want_key:
            problems.append("%s (%s): key %r, want %r" % (eid, ev["type"], r.get("key"), want_key))
        k = (r["topic"], r.get("key"))
        if key_partition.setdefault(k, r["partition"]) != r["partition"]:
            problems.append("key %r on partitions %s and %s" % (k, key_partition[k], r["partition"]))
        per_key[k].append((r["partition"], r["offset"], index[eid], ev))

    missing = [i for i in index if seen[i] == 0]
    dups = [i for i, c in seen.items() if c > 1]
    assert not missing, "%d of %d events never arrived, e.g. %s" % (len(missing), len(inputs), missing[:5])
    assert not dups, "%d events arrived more than once, e.g. %s" % (len(dups), dups[:5])

    for k, recs in per_key.items():
        recs.sort(key=lambda x: (x[0], x[1]))
        order = [x[2] for x in recs]
        if order != sorted(order):
            problems.append("key %r: partition order differs from input order" % (k,))
        last_seq = {}
        for _, off, _, ev in recs:
            m = ev["master"]
            if m in last_seq and ev["seq"] <= last_seq[m]:
                problems.append("key %r master %s: seq %d after %d (offset %d)" % (k, m, ev["seq"], last_seq[m], off))
            last_seq[m] = ev["seq"]

    assert not problems, "%d problems, first ones:\n  %s" % (len(problems), "\n  ".join(problems[:20]))
    return per_key


def test_emit_100k_events_to_kafka(kafka, emit_bin, tmp_path):
    events = gen_events.generate(N_EVENTS, seed=20261122)
    path = tmp_path / "events.ndjson"
    write_ndjson(path, events)
    n_logs = sum(1 for e in events if e["type"].startswith("log."))
    assert 0 < n_logs < N_EVENTS

    kafka.create_topics({"firehose.events": PARTITIONS, "firehose.logs": PARTITIONS})
    proc = run_emit(emit_bin, ["--brokers", kafka.bootstrap, path])
    print("\nfirehose-emit: %.2fs wall; stderr tail: %s" % (proc.elapsed, proc.stderr.strip()[-300:]))
    assert proc.returncode == 0, "exit %d, stderr tail:\n%s" % (proc.returncode, proc.stderr[-3000:])
    s = summary(proc)
    assert s["sent"] == N_EVENTS and s["rejected"] == 0, s

    recs = consume(kafka.bootstrap, "firehose.events", N_EVENTS - n_logs)
    recs_logs = consume(kafka.bootstrap, "firehose.logs", n_logs)
    assert len(recs) == N_EVENTS - n_logs
    assert len(recs_logs) == n_logs
    per_key = check_records(recs + recs_logs, events, "firehose.events", "firehose.logs")

    # The keys spread over the partitions (a sanity check on the partitioner, not a contract).
    parts = {p for recs_ in per_key.values() for p, _, _, _ in recs_}
    assert len(parts) == PARTITIONS, parts


def _mixed_input(tmp_path):
    """~3,000 valid events with a few invalid lines at known (1-based) line numbers.
    Returns (path, valid events, {line number: expected error path or ''})."""
    valid = gen_events.generate(3000, seed=7)
    enc = json.JSONEncoder(separators=(",", ":")).encode
    lines = [enc(e) for e in valid]
    bad = {}

    def first(t):
        return json.loads(next(l for l in lines if '"type":"%s"' % t in l))

    ev = first("build.finished")
    ev["id"] = "bad-results"
    ev["data"]["results"] = "SUCCESS"
    bad[101] = ("data.results", enc(ev))
    bad[502] = ("", '{"specversion":"1.0","id":"truncated","source":"buildbot://master-1","type":"build.st')
    ev = first("step.started")
    ev["id"] = "bad-time"
    ev["time"] = "2026-11-22 05:00:00"
    bad[1203] = ("time", enc(ev))
    ev = first("change.new")
    ev["id"] = "bad-files"
    ev["data"]["files"] = ["a.c", 7]
    bad[2004] = ("data.files[1]", enc(ev))
    ev = first("log.chunk")
    del ev["id"]
    bad[2805] = ("id", enc(ev))

    out = list(lines)
    for n in sorted(bad):
        out.insert(n - 1, bad[n][1])
    for n, (_, text) in bad.items():
        assert out[n - 1] == text
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path, valid, {n: p for n, (p, _) in bad.items()}


def _line_reports(stderr):
    """{line number: message} from 'line N: ...' lines (optionally prefixed by a file name)."""
    reps = {}
    for m in re.finditer(r"^(?:[^\n]*?:\s*)?line (\d+): ?(.*)$", stderr, re.M):
        reps.setdefault(int(m.group(1)), m.group(2))
    return reps


def test_emit_skip_invalid_sends_valid_rest(kafka, emit_bin, tmp_path):
    path, valid, bad = _mixed_input(tmp_path)
    tev, tlog = "mixed.skip.events", "mixed.skip.logs"
    kafka.create_topics({tev: PARTITIONS, tlog: PARTITIONS})
    proc = run_emit(emit_bin, ["--brokers", kafka.bootstrap, "--skip-invalid",
                               "--topic-events", tev, "--topic-logs", tlog, path])
    assert proc.returncode == 2, "exit %d, stderr:\n%s" % (proc.returncode, proc.stderr[-3000:])
    s = summary(proc)
    assert s["sent"] == len(valid) and s["rejected"] == len(bad), s

    reps = _line_reports(proc.stderr)
    assert set(reps) == set(bad), "reported lines %s, want %s\nstderr:\n%s" % (
        sorted(reps), sorted(bad), proc.stderr[-3000:])
    for n, field in bad.items():
        if field:
            assert reps[n].startswith(field + ":"), "line %d: %r should name %s" % (n, reps[n], field)

    n_logs = sum(1 for e in valid if e["type"].startswith("log."))
    recs = consume(kafka.bootstrap, tev, len(valid) - n_logs) + consume(kafka.bootstrap, tlog, n_logs)
    assert len(recs) == len(valid)
    check_records(recs, valid, tev, tlog)


def test_emit_invalid_line_without_skip_exits_2(kafka, emit_bin, tmp_path):
    path, valid, bad = _mixed_input(tmp_path)
    tev, tlog = "mixed.strict.events", "mixed.strict.logs"
    kafka.create_topics({tev: PARTITIONS, tlog: PARTITIONS})
    proc = run_emit(emit_bin, ["--brokers", kafka.bootstrap, "--topic-events", tev, "--topic-logs", tlog, path])
    assert proc.returncode == 2, "exit %d, stderr:\n%s" % (proc.returncode, proc.stderr[-3000:])
    reps = _line_reports(proc.stderr)
    first_bad = min(bad)
    assert first_bad in reps, "line %d not reported; stderr:\n%s" % (first_bad, proc.stderr[-3000:])
    assert reps[first_bad].startswith(bad[first_bad] + ":"), reps[first_bad]
    # Whatever was sent before stopping must be valid input, each at most once.
    recs = consume_once(kafka.bootstrap, tev) or []
    recs += consume_once(kafka.bootstrap, tlog) or []
    ids = collections.Counter(json.loads(r["payload"]).get("id") for r in recs)
    valid_ids = {e["id"] for e in valid}
    assert all(i in valid_ids and c == 1 for i, c in ids.items()), ids.most_common(3)


def test_dry_run_accepts_generated_events(emit_bin, tmp_path):
    """Every generated event type validates with the C validator (no Kafka involved)."""
    events = gen_events.generate(20_000, seed=3)
    assert {e["type"] for e in events} >= {
        "change.new", "buildrequest.new", "buildrequest.claimed", "buildrequest.complete", "build.started",
        "build.finished", "step.started", "step.finished", "log.new", "log.chunk", "log.finished",
        "property.set", "worker.connected", "master.started"}
    path = tmp_path / "dry.ndjson"
    write_ndjson(path, events)
    proc = run_emit(emit_bin, ["--dry-run", path])
    assert proc.returncode == 0, "exit %d, stderr:\n%s" % (proc.returncode, proc.stderr[-3000:])


def test_generated_events_match_the_json_schemas(root):
    """gen_events output validates with Python jsonschema against schemas/ (independent of the C validator)."""
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    registry = referencing.Registry()
    for f in sorted((root / "schemas").rglob("*.schema.json")):
        doc = json.loads(f.read_text())
        registry = registry.with_resource(doc["$id"], referencing.Resource.from_contents(doc))
    entry = json.loads((root / "schemas" / "event.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(entry, registry=registry)
    problems, seen = collections.Counter(), collections.Counter()
    for ev in gen_events.generate(20_000, seed=9):
        # At most 300 of each type (log.chunk is 40% of the stream): every type the generator
        # makes is still checked hundreds of times, in a fifth of the time.
        seen[ev["type"]] += 1
        if seen[ev["type"]] > 300:
            continue
        for err in validator.iter_errors(ev):
            problems[(ev["type"], err.json_path, err.message[:120])] += 1
    assert not problems, "\n".join("%5d %s" % (n, k) for k, n in problems.most_common(20))
