"""Helpers for tests/integration/test_stream.py: a broker process on real Kafka, producing with
firehose-emit, a `websockets` client that records everything, a `curl -N` SSE client, the filter
language re-implemented in Python (the oracle), and /metrics parsing.

Every wait is a poll with a deadline; all traffic goes to 127.0.0.1.
"""

import json
import os
import pathlib
import re
import subprocess
import threading
import time
import urllib.parse

import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import BIN, thread_stacks, wait_for

BROKER = pathlib.Path(os.environ.get("FIREHOSE_TEST_BROKER", str(BIN / "firehose-broker")))
EMIT = BIN / "firehose-emit"
ENC = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# ---- the filter language, in Python (docs/stream.md "Filters"; lib/fh_filter.h) -----------------

INT_FIELDS = {"results", "buildrequestid", "buildid", "builderid"}
STR_FIELDS = {"type", "master", "builder", "branch", "revision", "repository", "project", "codebase",
              "owner", "worker"}


def _glob(pattern, s):
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), s, re.S) is not None


def _value(ev, field):
    if field == "type":
        return ev["type"]
    if field == "master":
        return ev.get("master")
    v = (ev.get("data") or {}).get(field)
    if field in INT_FIELDS:
        return v if isinstance(v, int) and not isinstance(v, bool) else None
    return v if isinstance(v, str) else None


def matches(flt, ev):
    """1:1 with fh_filter_match: AND across keys, a list is any of, `*` globs in strings, an
    event without the field does not match, {} matches everything."""
    for key, want in (flt or {}).items():
        v = _value(ev, key)
        if v is None:
            return False
        wants = want if isinstance(want, list) else [want]
        if key in INT_FIELDS:
            ok = any(int(w) == v for w in wants)
        else:
            ok = any(_glob(w, v) if "*" in w else w == v for w in wants)
        if not ok:
            return False
    return True


def build_order_problems(events, index):
    """Per build request and topic, the received events must come in production order. index
    maps event id to its position in the production log. Returns a list of problems.

    log.* events live on their own topic (docs/events.md "Topics and keys"), so Kafka orders a
    build's log events among themselves and its other events among themselves, but not the two
    streams against each other; the broker merges the topics as they arrive."""
    last = {}
    problems = []
    for ev in events:
        brid = (ev.get("data") or {}).get("buildrequestid")
        if brid is None:
            continue
        key = (brid, ev["type"].startswith("log."))
        i = index[ev["id"]]
        if key in last and i <= last[key]:
            problems.append("buildrequest %s: %s (%s, produced #%d) after produced #%d"
                            % (brid, ev["id"], ev["type"], i, last[key]))
        last[key] = i
    return problems


# ---- topics and producing -----------------------------------------------------------------------

class TopicSet:
    """The events and logs topics one or more brokers read, and everything produced to them."""

    def __init__(self, prefix, name, partitions):
        self.events = "%s.%s.events" % (prefix, name)
        self.logs = "%s.%s.logs" % (prefix, name)
        self.partitions = partitions
        self.produced = []          # every event produced, in production order
        self.index = {}             # event id -> position in produced

    def specs(self):
        return {self.events: self.partitions, self.logs: self.partitions}

    def record(self, events):
        for ev in events:
            self.index[ev["id"]] = len(self.produced)
            self.produced.append(ev)


def emit(kafka, topics, events, timeout=60):
    """Produces events with firehose-emit (NDJSON on stdin) and records them."""
    data = "".join(ENC(e) + "\n" for e in events).encode()
    r = subprocess.run([str(EMIT), "--brokers", kafka.bootstrap, "--topic-events", topics.events,
                        "--topic-logs", topics.logs, "-q"], input=data, capture_output=True,
                       timeout=timeout)
    assert r.returncode == 0, "firehose-emit exit %d: %s" % (r.returncode, r.stderr.decode()[-2000:])
    topics.record(events)


def wait_topics(bootstrap, specs, timeout=60):
    """Waits until every topic of specs ({name: partitions}) has that many partitions, each with
    a leader (kafka.sh create-topics can return while metadata still says "unknown topic")."""
    def ready(name, parts):
        r = subprocess.run(["kcat", "-L", "-J", "-b", bootstrap, "-t", name, "-m", "5"],
                           capture_output=True, timeout=30)
        if r.returncode != 0:
            return False
        try:
            md = json.loads(r.stdout)
        except ValueError:
            return False
        ts = [t for t in md.get("topics", []) if t.get("topic") == name and not t.get("error")]
        return bool(ts) and len([p for p in ts[0].get("partitions", [])
                                 if p.get("leader", -1) >= 0 and not p.get("error")]) == parts
    for name, parts in specs.items():
        wait_for(lambda: ready(name, parts), timeout, interval=0.2,
                 what="topic %s with %d partitions and leaders" % (name, parts))


class PacedEmitter:
    """firehose-emit reading from a pipe, so events can be written a few at a time; write()
    returns the time the lines were handed over (the start of a produce-to-receive latency)."""

    def __init__(self, kafka, topics):
        self.topics = topics
        self.proc = subprocess.Popen([str(EMIT), "--brokers", kafka.bootstrap, "--topic-events",
                                      topics.events, "--topic-logs", topics.logs, "-q"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.sent_at = {}

    def write(self, events):
        self.topics.record(events)
        self.proc.stdin.write("".join(ENC(e) + "\n" for e in events).encode())
        self.proc.stdin.flush()
        t = time.monotonic()
        for e in events:
            self.sent_at[e["id"]] = t
        return t

    def close(self, timeout=60):
        self.proc.stdin.close()
        rc = self.proc.wait(timeout)
        err = self.proc.stderr.read().decode()
        assert rc == 0, "firehose-emit exit %d: %s" % (rc, err[-2000:])


# ---- the broker process ---------------------------------------------------------------------------

_HELP = {}


def broker_supports(option):
    """1 when `firehose-broker --help` lists option (the binary grows while the tests are written)."""
    if "text" not in _HELP:
        _HELP["text"] = subprocess.run([str(BROKER), "--help"], capture_output=True, text=True,
                                       timeout=30).stdout
    return option in _HELP["text"]


class Broker:
    """bin/firehose-broker on real Kafka, listening on 127.0.0.1:<random port>. The stream tests
    switch the materialised view off when the broker has one (it is not what they test, and it
    would write var/view.db in the working directory)."""

    def __init__(self, kafka, topics, dlq, name, tmp, args=(), anonymous=True, preexec_fn=None):
        self.kafka = kafka
        self.topics = topics
        self.name = name
        self.log_path = pathlib.Path(tmp) / ("broker-%s.log" % name)
        cmd = [str(BROKER), "--brokers", kafka.bootstrap, "--topic-events", topics.events,
               "--topic-logs", topics.logs, "--topic-dlq", dlq, "--topics.partitions=%d" % topics.partitions,
               "--kafka.group", "%s-%s" % (topics.events, name), "--listen=127.0.0.1:0",
               "--broker.stats_interval_ms=60000"]
        if anonymous:
            cmd.append("--auth.anonymous_read")
        # The fixtures create the topics: a broker left to create its own would make a derived
        # topic of topics.partitions partitions (1,024 for the wide cursor test) and wait for all
        # their leaders before it listens.
        if broker_supports("--topics.create"):
            cmd.append("--topics.create=false")
        if broker_supports("--view.enabled"):
            cmd.append("--view.enabled=false")
        # nor webhooks: every broker here would join one webhook consumer group and share
        # var/webhooks.db in the working directory, and a stop could wait on that group's rebalance
        if broker_supports("--webhooks.enabled"):
            cmd.append("--webhooks.enabled=false")
        cmd += list(args)
        self.cmd = cmd
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        try:
            self.url = wait_for(self._url, 30, what="broker %s to log http.listening" % name)
            self.port = int(urllib.parse.urlparse(self.url).port)
            self.ws_url = "ws://127.0.0.1:%d/v1/stream" % self.port
            wait_for(self._ready, 60, interval=0.1, what="broker %s /readyz" % name)
        except BaseException:
            self.stop()
            raise

    def _url(self):
        if self.proc.poll() is not None:
            raise AssertionError("broker %s exited %s:\n%s" % (self.name, self.proc.returncode, self.log_tail()))
        m = re.search(r"event=http\.listening url=(http://127\.0\.0\.1:\d+/)", self.log())
        return m.group(1) if m else None

    def _ready(self):
        try:
            return requests.get(self.url + "readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=4000):
        return self.log()[-n:]

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after timeout; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # hung on the way out: keep where every thread was, in the log the test shows
                self.logf.write(("\nshutdown hung; threads:\n" + thread_stacks(self.proc.pid)).encode())
                self.logf.flush()
                self.proc.kill()
                self.proc.wait(10)
        self.logf.close()
        return self.proc.returncode

    def emit(self, events):
        emit(self.kafka, self.topics, events)

    def metrics(self):
        """{(name, labels): value} from /metrics."""
        r = requests.get(self.url + "metrics", timeout=5)
        assert r.status_code == 200, r.text
        out = {}
        for line in r.text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if m:
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
        return out

    def metric(self, name, labels=""):
        return self.metrics().get((name, labels), 0.0)

    def wait_connections(self, n, timeout=10):
        """Waits until the broker counts n stream connections (closed clients are gone)."""
        return wait_for(lambda: self.metric("firehose_stream_connections") == n, timeout,
                        what="firehose_stream_connections == %d on %s" % (n, self.name))


# ---- a websockets client that records everything --------------------------------------------------

class Client:
    """A `websockets` connection whose messages are read by a thread and kept with their arrival
    time. proto: None (default protocol) or a list of subprotocols."""

    def __init__(self, broker, token=None, query="", subprotocols=None, token_in_query=False):
        headers = {}
        url = broker.ws_url
        params = query
        if token and token_in_query:
            params = (params + "&" if params else "") + "access_token=" + urllib.parse.quote(token)
        elif token:
            headers["Authorization"] = "Bearer " + token
        if params:
            url += "?" + params
        # __enter__: used as a context manager without a with-block (closed in close())
        self.ws = connect(url, additional_headers=headers, subprotocols=subprotocols, max_size=None,
                          open_timeout=10, close_timeout=3, ping_interval=None).__enter__()
        self.msgs = []        # (monotonic time, decoded message)
        self.cond = threading.Condition()
        self.close_code = None
        self.close_reason = None
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while True:
                raw = self.ws.recv()
                msg = json.loads(raw)
                with self.cond:        # waiters poll (every 50 ms): no notify per message
                    self.msgs.append((time.monotonic(), msg))
        except ConnectionClosed as e:
            if e.rcvd is not None:
                self.close_code, self.close_reason = e.rcvd.code, e.rcvd.reason
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def send(self, obj):
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def wait(self, pred, timeout=10, what="a message", idle=None):
        """Waits until pred(list of messages) is truthy; returns its value. idle: give up early
        when no message has arrived for that many seconds (a stream that stopped short)."""
        start = time.monotonic()
        deadline = start + timeout
        with self.cond:
            while True:
                v = pred([m for _, m in self.msgs])
                if v:
                    return v
                now = time.monotonic()
                left = deadline - now
                quiet = idle is not None and now - max(start, self.msgs[-1][0] if self.msgs else 0) > idle
                if left <= 0 or self.done or quiet:
                    raise TimeoutError("timed out waiting for %s; last messages: %s; closed %s %s"
                                       % (what, [m for _, m in self.msgs[-3:]], self.close_code,
                                          self.close_reason))
                self.cond.wait(min(left, 0.05))

    def request(self, msg, sid, timeout=30):
        """Sends msg and returns the first reply about sid that arrives after it (subscribed,
        unsubscribed or error carrying that id)."""
        with self.cond:
            start = len(self.msgs)
        self.send(msg)

        def find(_):
            with self.cond:
                for _, m in self.msgs[start:]:
                    if m.get("op") != "event" and m.get("id") == sid:
                        return m
            return None
        return self.wait(find, timeout, what="a reply for %r" % sid)

    def subscribe(self, sid, flt=None, frm="latest", timeout=30):
        msg = {"op": "subscribe", "id": sid, "filter": flt or {}}
        if frm is not None:
            msg["from"] = frm
        r = self.request(msg, sid, timeout)
        assert r.get("op") == "subscribed", r
        return r

    def unsubscribe(self, sid, timeout=10):
        return self.request({"op": "unsubscribe", "id": sid}, sid, timeout)

    def events(self, sub=None):
        with self.cond:
            return [m for _, m in self.msgs if m.get("op") == "event" and (sub is None or m["sub"] == sub)]

    def timed_events(self, sub=None):
        with self.cond:
            return [(t, m) for t, m in self.msgs if m.get("op") == "event" and (sub is None or m["sub"] == sub)]

    def others(self):
        with self.cond:
            return [m for _, m in self.msgs if m.get("op") != "event"]

    def wait_events(self, sub, n, timeout=60, idle=5):
        """Waits for at least n events on sub (sub None: plain CloudEvents of cloudevents.json);
        returns them. Gives up after idle seconds without any message."""
        def enough(msgs):
            if sub is None:
                evs = [m for m in msgs if "specversion" in m]
            else:
                evs = [m for m in msgs if m.get("op") == "event" and m["sub"] == sub]
            return evs if len(evs) >= n else None
        return self.wait(enough, timeout, what="%d events on %s" % (n, sub), idle=idle)

    def cloudevents(self):
        with self.cond:
            return [m for _, m in self.msgs if "specversion" in m]

    def barrier(self, timeout=10):
        """Returns once everything the broker queued for this connection before now has been
        received and recorded: an application ping answered by a pong (firehose protocol)."""
        with self.cond:
            before = sum(1 for _, m in self.msgs if m.get("op") == "pong")
        self.send({"op": "ping"})
        self.wait(lambda msgs: sum(1 for m in msgs if m.get("op") == "pong") > before, timeout,
                  what="pong")

    def ws_barrier(self, timeout=10):
        """The same for a cloudevents.json connection (no application ping): a WebSocket ping is
        answered after what is queued; then wait until the reader thread has caught up."""
        assert self.ws.ping().wait(timeout), "no pong"
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            with self.cond:
                n = len(self.msgs)
                if n == last:
                    return
                last = n
                self.cond.wait(0.2)
        raise TimeoutError("messages kept arriving")

    def wait_closed(self, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("connection still open")
                self.cond.wait(min(left, 0.05))
        return self.close_code

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.thread.join(5)


def ws_status(broker, token=None, query="", headers=None, subprotocols=None):
    """Tries a WebSocket upgrade; returns (HTTP status, body) when refused, (101, None) when not."""
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = "Bearer " + token
    url = broker.ws_url + ("?" + query if query else "")
    try:
        with connect(url, additional_headers=hdrs, subprotocols=subprotocols, open_timeout=10,
                     close_timeout=2, ping_interval=None):
            pass
    except InvalidStatus as e:
        return e.response.status_code, e.response.body.decode("utf-8", "replace")
    return 101, None


# ---- SSE with curl -N ---------------------------------------------------------------------------

class Sse:
    """`curl -N` on /v1/events; a thread parses the stream into events and comments."""

    def __init__(self, broker, query="", headers=None):
        self.url = broker.url + "v1/events" + ("?" + query if query else "")
        cmd = ["curl", "-N", "-s", "-S", "--max-time", "120", self.url]
        for k, v in (headers or {}).items():
            cmd += ["-H", "%s: %s" % (k, v)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events = []       # {"id", "event", "data" (decoded), "t"}
        self.comments = []     # (monotonic time, text)
        self.fields = []       # other fields seen (e.g. retry)
        self.cond = threading.Condition()
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        cur = {}
        data = []
        try:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.endswith("\r"):
                    line = line[:-1]
                if line == "":
                    if data or cur:
                        try:
                            decoded = json.loads("\n".join(data)) if data else None
                        except ValueError:
                            decoded = {"undecodable": "\n".join(data)[:500]}
                        ev = dict(cur, data=decoded, t=time.monotonic())
                        with self.cond:
                            self.events.append(ev)
                    cur, data = {}, []
                    continue
                if line.startswith(":"):
                    with self.cond:
                        self.comments.append((time.monotonic(), line[1:].strip()))
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "data":
                    data.append(value)
                elif field in ("id", "event"):
                    cur[field] = value
                else:
                    with self.cond:
                        self.fields.append((field, value))
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def wait(self, pred, timeout=20, what="SSE events", idle=None):
        start = time.monotonic()
        deadline = start + timeout
        with self.cond:
            while True:
                v = pred(self)
                if v:
                    return v
                now = time.monotonic()
                left = deadline - now
                last = self.events[-1]["t"] if self.events else start
                if left <= 0 or self.done or (idle is not None and now - max(start, last) > idle):
                    raise TimeoutError("timed out waiting for %s (have %d events, done=%s, stderr=%s)"
                                       % (what, len(self.events), self.done,
                                          self.proc.stderr.read1(2000) if self.done else b""))
                self.cond.wait(min(left, 0.05))

    def wait_count(self, n, timeout=60, idle=5):
        return self.wait(lambda s: list(s.events) if len(s.events) >= n else None, timeout,
                         what="%d SSE events" % n, idle=idle)

    def heartbeats_after(self, t):
        with self.cond:
            return [c for c in self.comments if c[0] > t and c[1] == "heartbeat"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.thread.join(5)
