"""The dashboard at / works in a real browser: Debian's headless Chromium, driven by playwright-core,
loads it from a broker on real Kafka, shows the pending queue, running builds, the revision matrix
and the charts from the view, and shows a newly produced event in its live feed within a second.
The test saves a screenshot (build/dashboard.png).
"""

import datetime
import json
import re
import shutil
import subprocess
import uuid

import pytest

from conftest import BIN, ROOT, wait_for
from view_helpers import Broker, emit, write_ndjson

NODE_DIR = ROOT / "tests" / "dashboard"
SHOT = ROOT / "build" / "dashboard.png"


@pytest.fixture(scope="module")
def broker(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    names = {k: "dash-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("events", "logs", "dlq")}
    kafka.create_topics({names["events"]: 3, names["logs"]: 3, names["dlq"]: 1})
    b = Broker(kafka, names, tmp / "view.db", tmp / "broker.log").start()
    # Simulated builds that end about now (a first run measures the span the stream covers; the
    # seed makes the second run the same stream): some finished, some running, some pending.
    sim = [str(BIN / "firehose-sim"), "--count", "6000", "--seed", "5"]
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


@pytest.mark.skipif(not shutil.which("node") or not (NODE_DIR / "node_modules" / "playwright-core").is_dir(),
                    reason="node and tests/dashboard/node_modules are installed by `make deps`")
def test_dashboard_shows_the_view_and_a_new_event_within_a_second(kafka, broker):
    b, names, tmp = broker
    ev = json.loads((ROOT / "schemas" / "examples" / "valid" / "build-finished.json").read_text())
    ev["id"] = "dash-" + uuid.uuid4().hex
    write_ndjson(tmp / "one.ndjson", [ev])
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
    assert SHOT.stat().st_size > 10000
