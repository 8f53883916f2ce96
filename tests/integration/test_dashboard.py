"""The dashboard at / works in a real browser: Debian's headless Chromium, driven by playwright-core,
loads it from a broker on real Kafka, shows the pending queue, running builds, the revision matrix
and the charts from the view, and shows a newly produced event in its live feed within a second.
`make run`'s demo (tools/run-demo.sh, embedded Kafka) fills every panel at once from its day of
history. The tests save screenshots (build/dashboard.png, build/dashboard-demo.png).
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import BIN, ROOT, wait_for
from view_helpers import Broker, emit, write_ndjson

NODE_DIR = ROOT / "tests" / "dashboard"
SHOT = ROOT / "build" / "dashboard.png"
DEMO_SHOT = ROOT / "build" / "dashboard-demo.png"
needs_browser = pytest.mark.skipif(
    not shutil.which("node") or not (NODE_DIR / "node_modules" / "playwright-core").is_dir(),
    reason="node and tests/dashboard/node_modules are installed by `make deps`")


@pytest.fixture(scope="module")
def broker(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    names = {k: "dash-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("events", "logs", "dlq", "derived")}
    kafka.create_topics({names["events"]: 3, names["logs"]: 3, names["dlq"]: 1, names["derived"]: 3})
    b = Broker(kafka, names, tmp / "view.db", tmp / "broker.log",
               extra=["--derive.enabled=true", "--topic-derived", names["derived"]]).start()
    # Simulated builds that end about now (a first run measures the span the stream covers; the
    # seed makes the second run the same stream): some finished, some running, some pending.
    # With test results: seed 5 has tests that failed and passed on retry (the flaky list).
    sim = [str(BIN / "firehose-sim"), "--count", "6000", "--seed", "5", "--tests", "24"]
    first = subprocess.run(sim, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True, timeout=60)
    span = int(re.search(r"simulated_s=(\d+)", first.stderr).group(1))
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=span + 2)
    raw = subprocess.run(sim + ["-q", "--start", start.strftime("%Y-%m-%dT%H:%M:%S.000Z")],
                         stdout=subprocess.PIPE, check=True, timeout=60).stdout
    (tmp / "sim.ndjson").write_bytes(raw)
    emit(kafka, names, tmp / "sim.ndjson", expected=6000)
    b.wait_applied(6000)
    wait_for(lambda: b.json("/api/v1/running")["running"], 30, what="running builds in the view")
    yield b, names, tmp
    b.stop()


def test_pages_are_served_with_their_types(broker):
    b, _, _ = broker
    for path, ctype, needle in (("/", "text/html", "<title>firehose"), ("/dashboard.js", "text/javascript", "EventSource"),
                                ("/dashboard.css", "text/css", "--ok")):
        r = b.get(path)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(ctype), (path, r.status_code, r.headers)
        assert needle in r.text
    assert b.get("/nope.js").status_code == 404


@needs_browser
def test_dashboard_shows_the_view_and_a_new_event_within_a_second(kafka, broker):
    b, names, tmp = broker
    ev = json.loads((ROOT / "schemas" / "examples" / "valid" / "build-finished.json").read_text())
    ev["id"] = "dash-" + uuid.uuid4().hex
    # and a builder that goes green, then red, after everything the sim finished: builder.broken,
    # which the page's derived feed gets over its WebSocket subscription (one build request, so one
    # partition: the view applies them in this order)
    now = time.time()
    flip = []
    for i, results in enumerate((0, 2)):
        e = json.loads(json.dumps(ev))
        e["id"] = "dash-%d-%s" % (i, uuid.uuid4().hex)
        e["data"].update(builder="dash-flip", builderid=900, buildid=990001 + i, number=1 + i,
                         buildrequestid=880001, results=results, complete_at=now + i,
                         state_string="failed" if results else "build successful")
        e["time"] = datetime.datetime.fromtimestamp(now + i, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        flip.append(e)
    write_ndjson(tmp / "one.ndjson", [ev] + flip)
    cmd = [str(BIN / "firehose-emit"), "--brokers", kafka.bootstrap, "--topic-events", names["events"],
           "--topic-logs", names["logs"], "--topic-dlq", names["dlq"], "-q", str(tmp / "one.ndjson")]
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["node", str(NODE_DIR / "check.mjs"), b.url, str(SHOT), ev["id"], json.dumps(cmd)],
                          cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=180)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and "failure" not in out, (out, proc.stderr[-2000:], b.log()[-2000:])
    assert out["errors"] == [], out["errors"]
    assert out["latency_ms"] < 1000, out
    assert "build.finished" in out["feed_text"] and "linux-x64-rel" in out["feed_text"], out
    running = b.json("/api/v1/running")
    assert int(out["n_running"]) == running.get("total", len(running["running"]))
    assert out["running_rows"] > 0 and out["matrix_cells"] > 0 and out["step_bars"] > 0, out
    assert out["trend_lines"] >= 1 and out["lastgreen_rows"] > 0, out
    # Builder state, from /api/v1/builders/state: broken ones first, with how long and since which build.
    states = b.json("/api/v1/builders/state", {"limit": 500})["states"]
    broken = [s for s in states if s["state"] == "broken"]
    assert out["state_rows"] == min(40, len(states)) and out["state_rows"] > 0, out
    assert out["state_broken"] == min(40, len(broken)), out
    assert out["state_note"].startswith("(%d broken, %d green" % (len(broken), len(states) - len(broken))), out
    first = (broken or states)[0]
    assert first["builder"] in out["state_first"] and first["state"] in out["state_first"], out
    assert "#%s" % first["since_build"]["number"] in out["state_first"], out
    # The flaky list is /api/v1/flaky's; the derived feed shows the builder.broken of dash-flip.
    flaky = b.json("/api/v1/flaky", {"limit": 20})
    assert flaky["flaky"] and out["flaky_rows"] == len(flaky["flaky"]), (out, flaky)
    assert out["flaky_first"].startswith(flaky["flaky"][0]["name"][-47:]), (out, flaky["flaky"][0])
    assert out["derived_live"] == "1", out
    assert "dash-flip" in out["derived_text"] and "build #2" in out["derived_text"], out
    assert SHOT.stat().st_size > 10000


def stop_group(proc, timeout=20):
    """SIGTERM to the process group proc leads (run-demo.sh, its broker, sim, emit, tee), then
    SIGKILL if it has not gone within timeout; waits until no process of the group is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def group_gone():
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    try:
        wait_for(group_gone, timeout, what="the demo's processes to exit")
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        wait_for(group_gone, 10, what="the demo's processes to exit after SIGKILL")


@needs_browser
def test_make_run_demo_fills_every_dashboard_panel_within_10_s(tmp_path):
    """Someone trying `make run` opens the dashboard it prints and sees a day of CI at once:
    numbers in the 24 h cards, a last green revision, a revisions x builders grid and both charts,
    within 10 s of opening the page. Runs tools/run-demo.sh itself (what `make run` runs after
    building), on a free port with its files in a temporary directory. The seed is pinned: a
    branch has a last green revision only when every builder it requires was green there, and
    with a random seed a day of the demo's history can, rarely, leave every branch without one."""
    env = dict(os.environ, FIREHOSE_DEMO_DIR=str(tmp_path), FIREHOSE_DEMO_SEED="1")
    out_path, err_path = tmp_path / "demo.out", tmp_path / "demo.err"
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        demo = subprocess.Popen(["bash", str(ROOT / "tools" / "run-demo.sh"), "--http.listen", "127.0.0.1:0"],
                                cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        def banner():
            assert demo.poll() is None, (out_path.read_text(), err_path.read_text()[-3000:])
            m = re.search(r"^ +http: +(http://\S+)", out_path.read_text(), re.M)
            return m and m.group(1)

        # The banner comes once the history is in the view (the script waits at most 120 s).
        url = wait_for(banner, 150, what="run-demo.sh's banner")
        ready_s = time.monotonic() - t0
        text = out_path.read_text()
        loaded = re.search(r"loading 24 h of simulated history into the embedded Kafka \.\.\. "
                           r"(\d+) events in ([\d.]+) s", text)
        assert loaded, text
        events = int(loaded.group(1))
        assert events > 20000, text

        DEMO_SHOT.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["node", str(NODE_DIR / "filled.mjs"), url, "10000", str(DEMO_SHOT), "90000"],
                              cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=210)
        assert proc.stdout.strip(), proc.stderr[-3000:]
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert proc.returncode == 0 and "failure" not in seen, (seen, proc.stderr[-2000:])
        assert seen["errors"] == [], seen["errors"]
        panels = seen["panels"]
        assert panels["empty"] == [], panels
        assert seen["filled_ms"] <= 10000, seen
        # A day of history, not a few seconds of live traffic: thousands of builds, a trend line
        # through most of the 24 hours.
        assert int(panels["builds_24h"]) > 1000, panels
        assert panels["trend_points"] >= 2 * 20, panels
        # The derived feed (the day's builder.broken and the like, then live) and, once the live
        # traffic's first test steps flaked, the flaky list.
        assert panels["derived_items"] > 0 and panels["flaky_rows"] > 0, panels
        assert set(panels["derived_types"]) <= {"builder.broken", "builder.fixed", "lkgr.advanced",
                                                "request.stale", "test.flaky"}, panels
        print("demo: %d events of history, banner after %.1f s, every panel filled %d ms after opening the page,"
              " flaky list and derived feed %d ms after that" % (events, ready_s, seen["filled_ms"], seen["live_ms"]))
    finally:
        stop_group(demo)
    assert "firehose-broker exited" not in out_path.read_text() + err_path.read_text()
