"""Helpers for test_view_rest.py: the broker as a subprocess, scripted CloudEvents, firehose-emit,
OpenAPI response checks and a dump of the view's SQLite file.

FIREHOSE_TEST_BROKER=PATH runs another broker binary (e.g. build/asan/bin/firehose-broker).
"""

import copy
import datetime as _dt
import json
import os
import pathlib
import re
import signal
import sqlite3
import subprocess
import time
import uuid

import requests
import yaml

from conftest import BIN, ROOT, thread_stacks, wait_for

BROKER = pathlib.Path(os.environ.get("FIREHOSE_TEST_BROKER") or (BIN / "firehose-broker"))
EMIT = BIN / "firehose-emit"
OPENAPI = ROOT / "docs" / "openapi.yaml"


def rfc3339(t):
    ms = int(round(t * 1000))
    d = _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


# ---- the broker ---------------------------------------------------------------------------

class Broker:
    """bin/firehose-broker on real Kafka with its own topics, group and view file."""

    def __init__(self, kafka, topics, view_path, log_path, extra=(), anonymous=True):
        self.args = [str(BROKER), "--brokers", kafka.bootstrap, "--listen=127.0.0.1:0",
                     "--kafka.group", "view-test-%s" % uuid.uuid4().hex[:10],
                     "--topic-events", topics["events"], "--topic-logs", topics["logs"],
                     "--topic-dlq", topics["dlq"], "--view.path", str(view_path),
                     "--topics.create=false", "--broker.stats_interval_ms=60000",
                     "--derive.enabled=false",  # tests of derived events turn it on
                     # its own webhooks file: the file records the Kafka cluster it belongs to, and
                     # tests use more than one cluster (extra may name another file)
                     "--webhooks.path", str(pathlib.Path(view_path).with_suffix(".webhooks.db"))]
        if anonymous:
            self.args.append("--auth.anonymous_read")
        self.args += list(extra)
        self.log_path = pathlib.Path(log_path)
        self.proc = None
        self.url = None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout=30):
        self._log = open(self.log_path, "ab")
        skip = self._log.tell()        # the log may hold earlier runs: read only this one's lines
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self._log)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("broker exited %s:\n%s" % (self.proc.returncode, self.log()[-3000:]))
            m = re.findall(r"event=http\.listening url=(\S+)", self.log()[skip:])
            return m[-1] if m else None
        self.url = wait_for(listening, timeout, interval=0.05, what="the broker's http.listening line")
        return self

    def get(self, path, params=None, headers=None):
        return requests.get(self.url + path.lstrip("/"), params=params, headers=headers, timeout=30)

    def json(self, path, params=None):
        r = self.get(path, params)
        assert r.status_code == 200, "%s %s -> %d %s" % (path, params, r.status_code, r.text[:500])
        return r.json()

    def wait_applied(self, records, timeout=60):
        """Polls until the view reflects `records` records on its topics and nothing more is known."""
        last = {}

        def applied():
            r = self.get("/api/v1/pending", {"limit": 1})
            if r.status_code != 200:
                return False
            a = r.json()["as_of"]
            last["as_of"] = a
            return a["view_offsets"] >= records and a["behind"] == 0 and a
        try:
            return wait_for(applied, timeout, interval=0.05, what="the view to apply %d records" % records)
        except TimeoutError:
            raise AssertionError("view stuck at %s (want %d records); log tail:\n%s"
                                 % (last.get("as_of"), records, self.log()[-3000:]))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close()

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stacks = thread_stacks(self.proc.pid)
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("broker did not stop within %ds; threads:\n%s" % (timeout, stacks))
        self._close()
        return self.proc.returncode if self.proc else None

    def _close(self):
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None
        # A sanitizer build (FIREHOSE_TEST_BROKER) reports here; any report fails the test.
        text = self.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in text, "sanitizer report in %s:\n%s" % (
                self.log_path, text[text.index(marker) - 200:][:4000])


# ---- events -------------------------------------------------------------------------------

class Script:
    """Builds a list of v1 CloudEvents with explicit ids, times and per-master seq."""

    def __init__(self, t0):
        self.t0 = t0
        self.events = []
        self.seq = {}
        self.n = 0

    def add(self, type_, data, t, master="master-1", subject=None):
        self.seq[master] = self.seq.get(master, 0) + 1
        self.n += 1
        ev = {"specversion": "1.0", "id": "view-test-%06d" % self.n, "source": "buildbot://" + master,
              "type": type_, "time": rfc3339(self.t0 + t), "subject": subject or type_.split(".")[0],
              "datacontenttype": "application/json", "master": master, "seq": self.seq[master],
              "data": data}
        self.events.append(ev)
        return ev

    def dup(self, ev):
        """Sends the very same event (same id) again."""
        self.events.append(copy.deepcopy(ev))


def write_ndjson(path, events):
    enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with open(path, "w", encoding="utf-8") as f:
        for ev in events:
            f.write(enc(ev) + "\n")


def emit(kafka, topics, path, expected=None, timeout=120):
    proc = subprocess.run([str(EMIT), "--brokers", kafka.bootstrap, "--topic-events", topics["events"],
                           "--topic-logs", topics["logs"], "--topic-dlq", topics["dlq"], str(path)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, "firehose-emit exit %d:\n%s" % (proc.returncode, proc.stderr[-2000:])
    if expected is not None:
        m = re.search(r"sent=(\d+)", proc.stderr)
        assert m and int(m.group(1)) == expected, proc.stderr[-500:]
    return proc


# ---- OpenAPI --------------------------------------------------------------------------------

class OpenAPI:
    """Validates answers against the response schemas docs/openapi.yaml declares for each path."""

    def __init__(self):
        import jsonschema
        import referencing
        import referencing.jsonschema
        self.doc = yaml.safe_load(OPENAPI.read_text())
        self.base = "urn:firehose:openapi"
        res = referencing.Resource.from_contents(self.doc,
                                                 default_specification=referencing.jsonschema.DRAFT202012)
        self.registry = referencing.Registry().with_resource(self.base, res)
        self.jsonschema = jsonschema
        self.checked = set()

    @staticmethod
    def _ptr(*parts):
        return "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)

    def check(self, template, resp, method="get"):
        """Validates a requests.Response against paths[template][method].responses[status]."""
        status = str(resp.status_code)
        op = self.doc["paths"][template][method]
        assert status in op["responses"], "%s: status %s is not documented" % (template, status)
        r = op["responses"][status]
        if "$ref" in r:
            ptr = r["$ref"].lstrip("#/")
            r = self.doc
            for p in ptr.split("/"):
                r = r[p]
            pointer = "#/" + ptr
        else:
            pointer = "#/" + self._ptr("paths", template, method, "responses", status)
        self.checked.add((template, status))
        if "content" not in r:
            assert not resp.content, "%s %s: documented without a body" % (template, status)
            return
        schema = {"$ref": self.base + pointer + "/content/application~1json/schema"}
        v = self.jsonschema.Draft202012Validator(schema, registry=self.registry)
        body = resp.json()
        errors = sorted(v.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, "%s %s does not match docs/openapi.yaml:\n%s\nbody: %.1500s" % (
            template, status, "\n".join("  %s: %s" % (list(e.absolute_path), e.message[:300])
                                        for e in errors[:10]), json.dumps(body))


# ---- the view's file --------------------------------------------------------------------------

# Columns that legitimately differ between two views of the same records: how many transactions
# it took, when they were committed, and when an id was first remembered.
_VOLATILE = {"view_state": {"version", "applied_at_ms", "record_ts_ms"}, "applied": {"at"}}


def dump_view(path):
    """Every table of the view file, rows sorted, minus the volatile columns."""
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        out = {}
        for t in tables:
            cols = [r[1] for r in con.execute("PRAGMA table_info(%s)" % t)]
            keep = [c for c in cols if c not in _VOLATILE.get(t, ())]
            rows = con.execute("SELECT %s FROM %s ORDER BY %s" % (
                ",".join(keep), t, ",".join(str(i + 1) for i in range(len(keep))))).fetchall()
            out[t] = (keep, rows)
        return out
    finally:
        con.close()


def view_state(path):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM view_state WHERE id = 1").fetchone()
        return dict(row) if row else {}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
