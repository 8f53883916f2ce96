"""The programs as a user meets them: --help, clear errors and exit codes, the config docs, and
the embedded Kafka of `make run` (broker starts it, logs bootstrap=, emit reaches it, counts show).
"""

import json
import os
import re
import subprocess
import tempfile

from conftest import BIN, ROOT, wait_for

EMIT = str(BIN / "firehose-emit")
BROKER = str(BIN / "firehose-broker")
VALID = sorted((ROOT / "schemas" / "examples" / "valid").glob("*.json"))
# Examples of the types the broker derives: firehose-emit sends them to topics.derived, which the
# ingest consumer does not read (docs/events.md, "Derived events").
DERIVED_TYPES = {"builder.broken", "builder.fixed", "lkgr.advanced", "request.stale", "test.flaky"}
N_INGESTED = sum(json.loads(p.read_text())["type"] not in DERIVED_TYPES for p in VALID)


def run(args, stdin=None, env=None, timeout=60):
    return subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, env=env)


def test_help_lists_every_key_and_exits_zero():
    for prog, key in ((EMIT, "--emit.skip_invalid"), (BROKER, "--kafka.group")):
        r = run([prog, "--help"])
        assert r.returncode == 0
        out = r.stdout.decode()
        assert out.startswith("usage: ")
        assert key in out and "--kafka.brokers" in out and "FIREHOSE_KAFKA_BROKERS" in out


def test_configuration_doc_matches_the_tables():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    generated = run(["bash", str(ROOT / "tools" / "gen-config-doc.sh"), str(BIN)]).stdout.decode()
    assert doc == generated, "docs/configuration.md is stale: run `make docs`"


def test_unknown_option_and_bad_values_are_usage_errors():
    r = run([EMIT, "--no-such-flag"])
    assert r.returncode == 64
    assert b"--no-such-flag: unknown option" in r.stderr
    r = run([EMIT, "--events.max_bytes=12"], stdin=b"")
    assert r.returncode == 64
    assert b"out of range" in r.stderr
    env = dict(os.environ, FIREHOSE_EVENTS_MAX_BYTES="lots")
    r = run([EMIT, "--dry-run"], stdin=b"", env=env)
    assert r.returncode == 64
    assert b"FIREHOSE_EVENTS_MAX_BYTES" in r.stderr


def test_dry_run_accepts_every_valid_example():
    r = run([EMIT, "--dry-run"] + [str(p) for p in VALID])
    assert r.returncode == 0, r.stderr
    assert re.search(rb"valid=%d rejected=0" % len(VALID), r.stderr)


def test_invalid_line_names_line_and_field_and_stops():
    good = VALID[0].read_bytes().strip()
    bad_line = json.dumps({**json.loads(good), "seq": "twelve"}).encode()
    lines = [good] * 11 + [bad_line] + [good] * 3
    r = run([EMIT, "--dry-run"], stdin=b"\n".join(lines) + b"\n")
    assert r.returncode == 2
    assert b"line 12: seq: expected integer" in r.stderr
    assert b"valid=11 rejected=1" in r.stderr  # stopped at the first invalid line

    r = run([EMIT, "--dry-run", "--skip-invalid"], stdin=b"\n".join(lines) + b"\n")
    assert r.returncode == 2
    assert b"valid=14 rejected=1" in r.stderr


def test_non_json_oversized_and_blank_lines():
    good = VALID[0].read_bytes().strip()
    big = b'{"pad":"' + b"x" * 5000 + b'"}'
    data = b"\n".join([good, b"", b"{not json", big, good]) + b"\n"
    r = run([EMIT, "--dry-run", "--skip-invalid", "--events.max_bytes=4096"], stdin=data)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "line 3: not JSON" in err
    assert "line 4: record is over the 4096-byte limit" in err
    assert "valid=2 rejected=2" in err


def test_fill_options_complete_the_envelope():
    ev = json.loads(VALID[0].read_bytes())
    for k in ("id", "time", "seq"):
        del ev[k]
    line = (json.dumps(ev) + "\n").encode()
    r = run([EMIT, "--dry-run"], stdin=line)
    assert r.returncode == 2 and b"missing required field" in r.stderr
    r = run([EMIT, "--dry-run", "--fill-id", "--fill-time", "--fill-seq"], stdin=line * 3)
    assert r.returncode == 0, r.stderr
    assert b"valid=3" in r.stderr


def test_emit_refuses_embedded_without_an_address():
    r = run([EMIT], stdin=VALID[0].read_bytes())
    assert r.returncode == 64
    assert b"--brokers HOST:PORT" in r.stderr


def test_embedded_broker_counts_what_emit_sends():
    """`make run`'s promise: the broker starts the in-memory Kafka, says where it listens, and
    events sent there with firehose-emit show up in its counts; bad records go to the DLQ."""
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as wh:
        # its own webhooks file: a file of a real cluster (the other tests') is refused
        broker = subprocess.Popen([BROKER, "--broker.stats_interval_ms=200", "--listen=127.0.0.1:0",
                                   "--webhooks.path=%s/webhooks.db" % wh], stderr=log)
        try:
            def logged():
                log.seek(0)
                return log.read().decode()

            text = wait_for(lambda: "bootstrap=" in logged() and logged(), 20, what="bootstrap")
            assert "in memory" in text
            bootstrap = re.search(r"bootstrap=(\S+)", text).group(1)
            assert bootstrap.startswith("127.0.0.1:")
            r = run([EMIT, "--brokers", bootstrap] + [str(p) for p in VALID])
            assert r.returncode == 0, r.stderr
            assert re.search(rb"sent=%d rejected=0" % len(VALID), r.stderr)
            subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "firehose.events"],
                           input=b'{"specversion":"1.0"}\n', check=True, timeout=30)
            want = "total=%d dlq=1" % N_INGESTED
            wait_for(lambda: want in logged(), 30, what=want)
            counts = [l for l in logged().splitlines() if want in l][-1]
            assert "build.finished=" in counts and "log.chunk=" in counts
            dlq = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", "firehose.dlq", "-e",
                                  "-f", "%h\n"], capture_output=True, timeout=30).stdout
            assert b"firehose-error=" in dlq
            url = re.search(r"event=http.listening url=(\S+)", logged()).group(1)
            import requests
            assert requests.get(url + "healthz", timeout=10).json() == {"status": "ok"}
            assert requests.get(url + "readyz", timeout=10).status_code == 200
            metrics = requests.get(url + "metrics", timeout=10).text
            assert 'firehose_events_in_total{type="build.finished"}' in metrics
            assert "firehose_dlq_total 1" in metrics
            r = requests.get(url + "nope", timeout=10)
            assert r.status_code == 404 and r.json()["error"] == "not_found"
            r = requests.post(url + "healthz", timeout=10)
            assert r.status_code == 405 and "GET" in r.json()["message"]
            r = requests.get(url + "healthz?x=1", timeout=10)
            assert r.status_code == 400 and r.json()["parameter"] == "x"
        finally:
            broker.terminate()
            broker.wait(timeout=30)
        assert broker.returncode == 0
        assert "broker.stopping" in logged()
