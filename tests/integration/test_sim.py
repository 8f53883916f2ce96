"""firehose-sim writes streams that the contract accepts, that repeat exactly for a seed, and that
tell a self-consistent story: every build request goes new -> claimed -> build -> complete in time
order, steps and logs nest inside their build, seq counts up per master without gaps, and the
mozilla-2010 profile runs at the seeds' rates (jobs and steps an hour).
"""

import collections
import json
import re
import subprocess

import pytest

from conftest import BIN

SIM = str(BIN / "firehose-sim")
EMIT = str(BIN / "firehose-emit")


def sim(*args, timeout=120):
    proc = subprocess.run([SIM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout, proc.stderr.decode()


def events(raw):
    return [json.loads(line) for line in raw.splitlines()]


@pytest.fixture(scope="module")
def demo():
    raw, _ = sim("--count", "60000", "--seed", "11")
    return raw, events(raw)


def test_every_event_passes_the_contract(demo, tmp_path):
    raw, evs = demo
    path = tmp_path / "sim.ndjson"
    path.write_bytes(raw)
    proc = subprocess.run([EMIT, "--dry-run", str(path)], stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "valid=%d rejected=0" % len(evs) in proc.stderr


def test_same_seed_same_bytes_other_seed_other_stream(demo):
    raw, _ = demo
    again, _ = sim("--count", "60000", "--seed", "11")
    assert again == raw
    paced, _ = sim("--count", "60000", "--seed", "11", "--rate", "5000000")
    assert paced == raw, "pacing must not change the stream"
    other, _ = sim("--count", "60000", "--seed", "12")
    assert other != raw


def test_count_is_exact_and_every_type_appears(demo):
    _, evs = demo
    assert len(evs) == 60000
    types = collections.Counter(e["type"] for e in evs)
    for t in ("change.new", "buildrequest.new", "buildrequest.claimed", "buildrequest.complete",
              "build.started", "build.updated", "build.finished", "step.started", "step.finished",
              "log.new", "log.chunk", "log.finished", "property.set", "worker.connected",
              "master.started"):
        assert types[t] > 0, "no %s in 60,000 events: %s" % (t, dict(types))
    results = collections.Counter(e["data"]["results"] for e in evs if e["type"] == "build.finished")
    assert results[0] > 0 and sum(n for r, n in results.items() if r >= 2) > 0, results
    assert any(e["data"]["results"] == 6 for e in evs if e["type"] == "buildrequest.complete"), \
        "no cancelled request"


def test_seq_counts_up_per_master_and_time_never_goes_back(demo):
    _, evs = demo
    last = {}
    for e in evs:
        assert e["seq"] == last.get(e["master"], 0) + 1, e
        last[e["master"]] = e["seq"]
    times = [e["time"] for e in evs]
    assert times == sorted(times)
    assert len({e["id"] for e in evs}) == len(evs)


ORDER = {"buildrequest.new": 0, "buildrequest.claimed": 1, "build.started": 2, "build.finished": 3,
         "buildrequest.unclaimed": 4, "buildrequest.complete": 5}


def test_each_request_lives_a_whole_consistent_life(demo):
    _, evs = demo
    by_br = collections.defaultdict(list)
    for e in evs:
        if "buildrequestid" in e["data"]:
            by_br[e["data"]["buildrequestid"]].append(e)
    completed = 0
    for brid, life in by_br.items():
        kinds = [e["type"] for e in life]
        assert kinds[0] == "buildrequest.new", (brid, kinds[:3])
        ctx = {k: life[0]["data"][k] for k in ("builder", "branch", "revision", "repository", "owner")}
        for e in life:
            assert {k: e["data"][k] for k in ctx} == ctx, "context changed within request %d" % brid
        if kinds[-1] != "buildrequest.complete":
            continue                                  # still alive when the count ran out
        completed += 1
        assert kinds.count("buildrequest.complete") == 1
        if life[-1]["data"]["results"] == 6:
            assert kinds == ["buildrequest.new", "buildrequest.complete"], kinds
            continue
        # Between claims: claimed, build.started ... build.finished, then unclaimed (retry) or complete.
        claims = kinds.count("buildrequest.claimed")
        assert claims == kinds.count("build.started") == kinds.count("build.finished")
        assert kinds.count("buildrequest.unclaimed") == claims - 1
        finished = [e for e in life if e["type"] == "build.finished"]
        assert all(f["data"]["results"] == 5 for f in finished[:-1]), "only RETRY builds run again"
        assert life[-1]["data"]["results"] == finished[-1]["data"]["results"]
        builds = collections.defaultdict(list)
        for e in life:
            if "buildid" in e["data"]:
                builds[e["data"]["buildid"]].append(e)
        for bid, b in builds.items():
            assert b[0]["type"] == "build.started"
            assert b[-1]["type"] in ("build.finished", "buildrequest.unclaimed", "buildrequest.complete")
            started = [e for e in b if e["type"] == "step.started"]
            done = [e for e in b if e["type"] == "step.finished"]
            assert [s["data"]["stepid"] for s in started] == [s["data"]["stepid"] for s in done]
            assert [s["data"]["number"] for s in started] == list(range(len(started)))
            worst = max([s["data"]["results"] for s in done if s["data"]["results"] != 3] or [0])
            fin = [e for e in b if e["type"] == "build.finished"][0]
            assert fin["data"]["results"] == worst, "build results are the worst step's"
    assert completed > 100


def test_logs_nest_in_their_step_and_lines_add_up(demo):
    _, evs = demo
    open_steps, logs, kinds = set(), {}, {}
    for e in evs:
        d = e["data"]
        if e["type"] == "step.started":
            open_steps.add(d["stepid"])
        elif e["type"] == "step.finished":
            open_steps.discard(d["stepid"])
        elif e["type"] == "log.new":
            assert d["stepid"] in open_steps
            logs[d["logid"]] = 0
            kinds[d["logid"]] = d["type"]
        elif e["type"] == "log.chunk":
            assert d["firstline"] == logs[d["logid"]], "chunks are contiguous"
            assert d["content"].endswith("\n")
            if kinds[d["logid"]] == "s":             # stdio lines keep Buildbot's stream letter
                assert all(line[:1] in "oeh" for line in d["content"].splitlines()), d["content"][:200]
            logs[d["logid"]] += d["content"].count("\n")
        elif e["type"] == "log.finished":
            assert d["num_lines"] == logs.pop(d["logid"])


def test_mozilla_2010_profile_runs_at_the_seeds_rates():
    # Status only (the log rate is a byte figure the benchmark reports), a day of simulated time.
    raw, err = sim("--profile", "mozilla-2010", "--logs=false", "--count", "400000", "--seed", "3")
    span_h = int(re.search(r"simulated_s=(\d+)", err).group(1)) / 3600
    assert span_h > 20, span_h
    # 260 MB of JSON: read each line's envelope type and hour with one regex instead of parsing
    # it (the simulator writes "type" then "time" before any nested object); every line must match.
    envs = [(m.group(1), m.group(2)) for m in
            re.finditer(rb'^\{[^{\n]*?"type":"([^"]+)","time":"([^"]{13})', raw, re.M)]
    assert len(envs) == raw.count(b"\n") == 400000, len(envs)
    assert [t.decode() for t, _ in envs[:50]] == [e["type"] for e in events(b"\n".join(raw.split(b"\n", 50)[:50]))]
    warm = envs[0][1]                                # skip the first two hours (empty queue)
    hours = set(sorted({h for _, h in envs})[2:-1])
    jobs = sum(1 for t, h in envs if t == b"buildrequest.new" and h in hours)
    steps = sum(1 for t, h in envs if t == b"step.started" and h in hours)
    assert warm < min(hours)
    jobs_h, steps_h = jobs / len(hours), steps / len(hours)
    assert 100 <= jobs_h <= 165, jobs_h              # seeds: ~130 jobs an hour
    assert 3700 <= steps_h <= 6100, steps_h          # seeds: ~4,773 steps an hour


def test_history_comes_first_status_only_at_its_own_rate_and_the_stream_goes_on():
    # What `make run` loads before live traffic: the hours before --start, then the live stream
    # from one simulation (ids, build numbers and seq carry on across the boundary).
    args = ["--history", "7200", "--history-jobs-per-hour", "600", "--start", "2026-11-22T05:00:00.000Z",
            "--count", "40000", "--seed", "4"]
    raw, err = sim(*args)
    n = int(re.search(r"^firehose-sim: history events=(\d+) bytes=\d+ simulated_s=7200 ", err, re.M).group(1))
    evs = events(raw)
    start = "2026-11-22T05:00:00.000Z"
    assert evs[0]["time"] == "2026-11-22T03:00:00.000Z"
    assert all(e["time"] < start for e in evs[:n]) and all(e["time"] >= start for e in evs[n:])
    assert len(evs) - n > 1000, "the live stream goes on after the history"
    # Status only before --start; the live part has its logs.
    assert not [e for e in evs[:n] if e["type"].startswith("log.")]
    assert any(e["type"] == "log.chunk" for e in evs[n:])
    # The history's own job rate (600 an hour for 2 hours), not the profile's 1,200; the live rate
    # from --start on (a change every few seconds, not a gap drawn at the history's rate).
    jobs = sum(1 for e in evs[:n] if e["type"] == "buildrequest.new")
    assert 900 <= jobs <= 1500, jobs
    first_live_change = next(e["time"] for e in evs[n:] if e["type"] == "change.new")
    assert first_live_change < "2026-11-22T05:01:00.000Z", first_live_change
    # One world: seq without gaps per master, unique ids, build numbers rising per builder, and
    # requests made in the history finish in the live part.
    seq, numbers, ids = {}, {}, set()
    for e in evs:
        assert seq.get(e["master"], 0) + 1 == e["seq"], e
        seq[e["master"]] = e["seq"]
        assert e["id"] not in ids
        ids.add(e["id"])
        if e["type"] == "build.started":
            d = e["data"]
            assert d["number"] > numbers.get(d["builder"], -1), e
            numbers[d["builder"]] = d["number"]
    open_ = {e["data"]["buildrequestid"] for e in evs[:n] if e["type"] == "buildrequest.new"}
    open_ -= {e["data"]["buildrequestid"] for e in evs[:n] if e["type"] == "buildrequest.complete"}
    assert open_, "requests are under way when the history ends"
    assert open_ <= {e["data"]["buildrequestid"] for e in evs[n:] if e["type"] == "buildrequest.complete"}
    # Pacing applies from --start on and never changes the bytes.
    paced, _ = sim(*args, "--rate", "5000000")
    assert paced == raw


def test_history_is_written_at_once_before_realtime_traffic():
    # --realtime --start now: an hour of history flat out, then the wall clock (stopped after 2 s).
    proc = subprocess.run([SIM, "--history", "3600", "--realtime", "--start", "now", "--duration", "2", "--seed", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"^firehose-sim: history events=(\d+) .* elapsed=([\d.]+)s$", proc.stderr, re.M)
    assert m, proc.stderr
    assert int(m.group(1)) > 1000 and float(m.group(2)) < 2.0, m.group(0)
    assert len(proc.stdout.splitlines()) >= int(m.group(1))


def test_bad_options_are_usage_errors():
    for args, needle in ((["--profile", "nope"], "unknown profile"), (["--start", "yesterday"], "--start"),
                         (["--scale", "0"], "sim.scale"), (["extra"], "unexpected argument")):
        proc = subprocess.run([SIM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        assert proc.returncode == 64, (args, proc.returncode)
        assert needle in proc.stderr, (args, proc.stderr)
    help_ = subprocess.run([SIM, "--help"], stdout=subprocess.PIPE, text=True, timeout=30)
    assert help_.returncode == 0 and "--profile" in help_.stdout and "mozilla-2010" in help_.stdout


# ---------------------------------------------------------------- the mixed profile


@pytest.fixture(scope="module")
def mixed():
    raw, err = sim("--profile", "mixed", "--logs=false", "--count", "30000", "--seed", "7")
    return raw, events(raw), err


def test_mixed_profile_builds_one_repository_with_buildbot_and_github_actions(mixed, tmp_path):
    raw, evs, err = mixed
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(raw)
    proc = subprocess.run([EMIT, "--dry-run", str(path)], stderr=subprocess.PIPE, text=True, timeout=120)
    assert "valid=%d rejected=0" % len(evs) in proc.stderr, proc.stderr[-2000:]
    assert re.search(r"github events=\d+ unmapped_deliveries=0$", err, re.M), err
    again, _ = sim("--profile", "mixed", "--logs=false", "--count", "30000", "--seed", "7")
    assert again == raw
    scoped = [e for e in evs if "buildrequestid" in e["data"] or e["type"] == "change.new"]
    assert {e["data"]["repository"] for e in scoped} == {"https://github.com/acme-ci/widget"}
    gh = [e for e in evs if e["master"] == "github.com"]
    bb = [e for e in evs if e["master"] == "master-1"]
    assert len(gh) > 2000 and len(bb) > 2000
    # GitHub's events are those the ingest makes: its ids, sources and id ranges.
    assert all(e["source"] == "github://github.com" and e["id"].startswith("github:github.com:") for e in gh)
    assert all(10**15 < e["data"]["buildrequestid"] < 2 * 10**15 for e in gh if "buildrequestid" in e["data"])
    builders = {e["data"]["builder"] for e in gh if "builder" in e["data"]}
    assert builders == {"CI / build (ubuntu-24.04)", "CI / build (macos-14)", "CI / test", "Lint / lint"}
    # The same revisions are built by both systems.
    built = collections.defaultdict(set)
    for e in evs:
        if e["type"] == "build.finished":
            built[e["data"]["revision"]].add(e["master"])
    assert sum(1 for m in built.values() if m == {"master-1", "github.com"}) > 20
    # A job's life as GitHub reports it: requested, claimed, started, properties, then its steps
    # and finish together (or, cancelled while queued, complete alone).
    lives = collections.defaultdict(list)
    for e in gh:
        if "buildrequestid" in e["data"]:
            lives[e["data"]["buildrequestid"]].append(e["type"])
    whole = [k for k in lives.values() if k[-1] == "buildrequest.complete"]
    assert len(whole) > 100
    for kinds in whole:
        assert kinds[0] == "buildrequest.new"
        assert kinds[1:] == ["buildrequest.complete"] or (
            kinds[1:4] == ["buildrequest.claimed", "build.started", "property.set"]
            and kinds[-2:] == ["build.finished", "buildrequest.complete"]
            and kinds[4:-2] == ["step.started", "step.finished"] * 5), kinds
    results = collections.Counter(e["data"]["results"] for e in gh if e["type"] == "buildrequest.complete")
    assert results[0] > results[2] > 0 and results[6] > 0


def test_mixed_profile_seq_counts_up_and_only_githubs_steps_come_late(mixed):
    _, evs, _ = mixed
    last = {}
    for e in evs:
        assert e["seq"] == last.get(e["master"], 0) + 1, e
        last[e["master"]] = e["seq"]
    # GitHub sends a job's steps with its completion, so their times lie before the events around
    # them; every other event's time never goes back.
    timely = [e["time"] for e in evs if not (e["master"] == "github.com" and e["type"].startswith("step."))]
    assert timely == sorted(timely)
    # Ids are unique but where GitHub reports one fact twice: every workflow of a push names the
    # same change.
    ids = collections.Counter(e["id"] for e in evs)
    assert {i for i, n in ids.items() if n > 1} <= {e["id"] for e in evs if e["type"] == "change.new"}


def test_test_steps_record_chunked_results_with_flaky_tests(tmp_path):
    """--tests: every test step records a result set: chunks within --test-chunk and in order,
    set counts that add up, the contract accepts them (firehose-emit), the same seed gives the
    same bytes, and some tests both fail and pass on one revision (flaky)."""
    args = ("--count", "20000", "--seed", "5", "--tests", "120", "--test-chunk", "50")
    raw, _ = sim(*args)
    assert sim(*args)[0] == raw
    path = tmp_path / "tests.ndjson"
    path.write_bytes(raw)
    proc = subprocess.run([EMIT, "--dry-run", str(path)], stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 0 and " rejected=0" in proc.stderr, proc.stderr[-2000:]
    evs = events(raw)
    chunks = collections.defaultdict(list)
    sets = {}
    for e in evs:
        if e["type"] == "test.results":
            chunks[e["data"]["test_result_setid"]].append(e["data"])
        elif e["type"] == "test.result_set":
            sets[e["data"]["test_result_setid"]] = e["data"]
    assert len(sets) >= 5, len(sets)
    runs = collections.defaultdict(set)     # (builder, test, revision) -> outcomes seen
    for sid, s in sets.items():
        cs = chunks[sid]
        assert [c["chunk"] for c in cs] == list(range(s["chunks"])) and len(cs) == s["chunks"]
        assert [c["last"] for c in cs] == [False] * (len(cs) - 1) + [True]
        assert all(1 <= len(c["tests"]) <= 50 for c in cs)
        tests = [t for c in cs for t in c["tests"]]
        outcomes = collections.Counter(t["outcome"] for t in tests)
        assert (s["results"], s["tests_passed"], s["tests_failed"], s["tests_skipped"]) == (
            len(tests), outcomes["pass"], outcomes["fail"], outcomes["skip"])
        assert len(tests) >= 120 and "test" in s["description"]
        for t in tests:
            runs[(s["builder"], t["name"], s["revision"])].add(t["outcome"])
    flaky = [k for k, o in runs.items() if {"pass", "fail"} <= o]
    assert flaky, "no test both passed and failed on one revision"
    # without --tests the stream has none (and stays as it was)
    assert b"test.result" not in sim("--count", "20000", "--seed", "5")[0]
