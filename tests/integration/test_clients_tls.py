"""The clients people use, over TLS, against the real broker on real Kafka: firehose-tail and the
Python package (consumers/python, imported from the source tree here; make python-client-test
tests the installed wheel) subscribe over wss:// and verify the broker's certificate, refuse a
certificate for another name or from another CA, resume after the broker restarts with no gap
and no duplicate, and --wait build / wait_for_build give the right answer for a green and a red
build. firehose-tail also goes through an HTTP CONNECT proxy named by HTTPS_PROXY, and refuses to
send a token over plain ws:// to another host.

Certificates are made here with openssl: a test CA, the broker's certificate for 127.0.0.1 signed
by it, one for another name signed by it, and a second CA that signed nothing of the broker's.
Every connection goes to 127.0.0.1.
"""

import asyncio
import collections
import csv
import io
import json
import os
import pathlib
import re
import socket
import ssl
import subprocess
import sys
import threading
import uuid
import warnings

import pytest
import requests

import gen_events
from conftest import ROOT, wait_for
from stream_support import Broker, TopicSet, emit, wait_topics
from test_tail import TAIL, Tail, build_events, free_port, next_brid

sys.path.insert(0, str(ROOT / "consumers" / "python" / "src"))
import firehose_client as fh  # noqa: E402

DLQ = "ctls.dlq"


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem",
                "-days", "2", "-subj", "/CN=firehose test %s" % ca, cwd=d)
    for name, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("wrong-name", "DNS:other.example.org")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + name, cwd=d)
        (d / (name + ".ext")).write_text("subjectAltName=%s\n" % san)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=d)
    return d


@pytest.fixture(scope="module")
def topics(kafka):
    ts = TopicSet("ctls", "main", 3)
    specs = dict(ts.specs(), **{DLQ: 1})
    kafka.create_topics(specs)
    wait_topics(kafka.bootstrap, specs)
    return ts


class TlsBroker(Broker):
    """stream_support.Broker with http.tls_cert/http.tls_key: the one port speaks only TLS."""

    def __init__(self, kafka, topics, name, tmp, certs, cert="server", args=()):
        self.ca = str(certs / "ca.pem")
        super().__init__(kafka, topics, DLQ, name, tmp, args=["--http.tls_cert", str(certs / (cert + ".pem")),
                                                               "--http.tls_key", str(certs / (cert + ".key"))]
                         + list(args))
        self.ws_url = "wss://127.0.0.1:%d/v1/stream" % self.port

    def _url(self):
        if self.proc.poll() is not None:
            raise AssertionError("broker %s exited %s:\n%s" % (self.name, self.proc.returncode, self.log_tail()))
        m = re.search(r"event=http\.listening url=(https://127\.0\.0\.1:\d+/)", self.log())
        return m.group(1) if m else None

    def _get(self, path, timeout):
        # the probes do not check the certificate: some of these brokers have a wrong one on purpose
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return requests.get(self.url + path, timeout=timeout, verify=False)

    def _ready(self):
        try:
            return self._get("readyz", 2).status_code == 200
        except requests.RequestException:
            return False

    def metrics(self):
        r = self._get("metrics", 5)
        out = {}
        for line in r.text.splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if m and not line.startswith("#"):
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
        return out


_N = [0]


@pytest.fixture
def tls_broker(kafka, topics, tmp_path, certs):
    made = []

    def make(cert="server", args=()):
        _N[0] += 1
        b = TlsBroker(kafka, topics, "ctls%d-%d" % (os.getpid(), _N[0]), tmp_path, certs, cert, args)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


RUN = uuid.uuid4().hex[:8]   # told apart from earlier runs on the same Kafka


def status_events(n, seed, master):
    evs = gen_events.generate(n, seed=seed, exclude_types="log.*")
    for e in evs:
        e["master"] = master + RUN
        e["id"] = "%s-%s" % (e["id"], RUN)
    return evs


async def py_collect(url, n, **kw):
    got = []
    async for ev in fh.subscribe(url, **kw):
        got.append(ev.event["id"])
        if len(got) >= n:
            break
    return got


def test_tail_and_python_subscribe_over_wss_verifying_the_certificate(kafka, topics, tls_broker, certs):
    """Both clients get every event over wss:// with the test CA, compressed; the tail says so."""
    evs = status_events(200, 4242, "ctls-basic")
    emit(kafka, topics, evs)
    b = tls_broker()
    want = [e["id"] for e in evs]
    t = Tail(b.ws_url, "--cacert", certs / "ca.pem", "--from", "earliest", "--master", "ctls-basic" + RUN,
             "--max-events", len(evs), "--timeout", "60")
    assert t.wait(60) == 0, t.stderr()
    assert sorted(e["id"] for e in t.events()) == sorted(want)
    assert "connected to wss://127.0.0.1:%d/v1/stream (compressed)" % b.port in t.stderr()
    got = asyncio.run(asyncio.wait_for(py_collect(b.ws_url, len(evs), filter={"master": "ctls-basic" + RUN},
                                                  from_="earliest", cafile=str(certs / "ca.pem")), 60))
    assert sorted(got) == sorted(want)
    # the REST client over https with the same CA
    rest = fh.RestClient(b.url, cafile=str(certs / "ca.pem"))
    with pytest.raises(fh.RestError) as e:
        rest.pending()             # the view is off in these brokers: 503, as JSON
    assert e.value.status == 503


def test_certificates_for_another_name_or_from_another_ca_are_refused(kafka, topics, tls_broker, certs):
    """A certificate for another name (our CA) and ours checked against another CA (or the system's) both fail; --insecure does not check."""
    good = tls_broker()
    wrong = tls_broker(cert="wrong-name")
    cases = [(wrong.ws_url, ["--cacert", certs / "ca.pem"], str(certs / "ca.pem")),
             (good.ws_url, ["--cacert", certs / "other-ca.pem"], str(certs / "other-ca.pem")),
             (good.ws_url, [], None)]
    for url, args, cafile in cases:
        t = Tail(url, "--reconnects", 0, "--timeout", "30", *args)
        assert t.wait(30) == 2, (url, args, t.stderr())
        assert "verify" in t.stderr().lower() or "certificate" in t.stderr().lower(), t.stderr()

        async def one():
            async for ev in fh.subscribe(url, cafile=cafile, max_reconnects=0):
                return ev
        with pytest.raises(fh.CertificateError):
            asyncio.run(asyncio.wait_for(one(), 30))
    evs = status_events(5, 4343, "ctls-insecure")
    emit(kafka, topics, evs)
    t = Tail(wrong.ws_url, "--insecure", "--from", "earliest", "--master", "ctls-insecure" + RUN, "--max-events", 5,
             "--timeout", "60")
    assert t.wait(60) == 0, t.stderr()
    assert "NOT checked" in t.stderr()


def test_both_clients_resume_after_a_broker_restart_without_gap_or_duplicate(kafka, topics, tls_broker, certs):
    """The broker stops mid-stream and comes back on the same port: both clients reconnect over wss:// and print every event once."""
    port = free_port()
    batch1 = status_events(300, 4444, "ctls-restart")
    batch2 = status_events(600, 4444, "ctls-restart")[300:]
    emit(kafka, topics, batch1)
    b1 = tls_broker(args=["--listen=127.0.0.1:%d" % port])
    t = Tail(b1.ws_url, "--cacert", certs / "ca.pem", "--from", "earliest", "--master", "ctls-restart" + RUN,
             "--max-events", 600, "--timeout", "120", "--tail.backoff_ms=50", "--tail.backoff_max_ms=200")
    py_got = []
    py_err = []

    def python_client():
        try:
            for ev in fh.subscribe_sync(b1.ws_url, {"master": "ctls-restart" + RUN}, "earliest",
                                        cafile=str(certs / "ca.pem"), backoff=fh.Backoff(0.05, 0.2)):
                py_got.append(ev.event["id"])
                if len(py_got) >= 600:
                    break
        except BaseException as e:   # reported by the test thread
            py_err.append(e)
    th = threading.Thread(target=python_client, daemon=True)
    th.start()
    try:
        wait_for(lambda: len(t.events()) >= 300 and len(py_got) >= 300, 60, interval=0.05, what="the first batch")
        b1.stop()
        t.wait_stderr("reconnecting")
        emit(kafka, topics, batch2)
        tls_broker(args=["--listen=127.0.0.1:%d" % port])
        assert t.wait(90) == 0, t.stderr()
        th.join(90)
        assert not py_err, py_err
        want = collections.Counter(e["id"] for e in batch1 + batch2)
        assert collections.Counter(e["id"] for e in t.events()) == want
        assert collections.Counter(py_got) == want
    finally:
        t.kill()


@pytest.mark.parametrize("results,green", [(0, True), (2, False)])
def test_wait_build_and_wait_for_build_over_wss(kafka, topics, tls_broker, certs, results, green):
    """firehose-tail --wait build and wait_for_build both return the build's verdict: green 0/1, else red."""
    b = tls_broker()
    brid = next_brid()
    t = Tail(b.ws_url, "--cacert", certs / "ca.pem", "--buildrequestid", brid, "--wait", "build", "--timeout", "60")
    box = {}

    def waiter():
        try:
            box["r"] = fh.wait_for_build_sync(b.ws_url, {"buildrequestid": brid}, cafile=str(certs / "ca.pem"),
                                              timeout=60)
        except BaseException as e:
            box["e"] = e
    th = threading.Thread(target=waiter, daemon=True)
    th.start()
    try:
        t.wait_stderr("firehose-tail: subscribed")
        wait_for(lambda: b.metric("firehose_stream_connections") >= 2, 30, what="both clients connected")
        emit(kafka, topics, build_events(brid, results))
        assert t.wait(60) == (0 if green else 1), t.stderr()
        th.join(60)
        assert "e" not in box, box
        assert box["r"].green is green and box["r"].results == results
    finally:
        t.kill()


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that only tunnels to 127.0.0.1, recording each
    CONNECT target."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.targets = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.tunnel, args=(c,), daemon=True).start()

    def tunnel(self, c):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = c.recv(4096)
            if not chunk:
                return c.close()
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = line.split(" ", 2)
        host, port = target.rsplit(":", 1)
        self.targets.append(target)
        if method != "CONNECT" or host != "127.0.0.1":
            c.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            return c.close()
        up = socket.create_connection((host, int(port)), timeout=10)
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        threading.Thread(target=pump, args=(up, c), daemon=True).start()
        pump(c, up)

    def close(self):
        self.sock.close()


def test_tail_goes_through_the_https_proxy_and_guards_its_token(kafka, topics, tls_broker, certs, monkeypatch):
    """HTTPS_PROXY carries the wss:// connection (TLS inside the tunnel, still verified); NO_PROXY turns it off; a token never goes over plain ws:// to another host."""
    b = tls_broker()
    evs = status_events(20, 4545, "ctls-proxy")
    emit(kafka, topics, evs)
    proxy = ConnectProxy()
    try:
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:%d" % proxy.port)
        monkeypatch.delenv("https_proxy", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        t = Tail(b.ws_url, "--cacert", certs / "ca.pem", "--from", "earliest", "--master", "ctls-proxy" + RUN,
                 "--max-events", 20, "--timeout", "60")
        assert t.wait(60) == 0, t.stderr()
        assert len(t.events()) == 20
        assert proxy.targets == ["127.0.0.1:%d" % b.port], proxy.targets
        assert "through a proxy" in t.stderr()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        t = Tail(b.ws_url, "--cacert", certs / "ca.pem", "--from", "earliest", "--master", "ctls-proxy" + RUN,
                 "--max-events", 20, "--timeout", "60")
        assert t.wait(60) == 0, t.stderr()
        assert len(proxy.targets) == 1, "NO_PROXY was not honoured"
    finally:
        proxy.close()
    # refused before any connection is tried: nothing leaves this machine
    r = subprocess.run([str(TAIL), "--url", "ws://firehose.example.org/v1/stream", "--token", "secret"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 64 and "--allow-insecure-token" in r.stderr, r.stderr
    with pytest.raises(fh.InsecureToken):
        asyncio.run(py_collect("ws://firehose.example.org", 1, token="secret"))


EXAMPLES = ROOT / "consumers" / "python" / "examples"


def run_example(name, *args, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "consumers" / "python" / "src"))
    return subprocess.Popen([sys.executable, str(EXAMPLES / name)] + [str(a) for a in args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_examples_run_against_the_broker_over_wss(kafka, topics, tls_broker, certs):
    """notify_build.py exits 1 for a red build with a bell, replay_csv.py writes one row per build.finished, dashboard.py reports the view it cannot reach."""
    b = tls_broker()
    ca = certs / "ca.pem"
    brid = next_brid()
    n = run_example("notify_build.py", "--url", b.ws_url, "--buildrequestid", brid, "--cafile", ca, "--timeout", 60)
    wait_for(lambda: b.metric("firehose_stream_connections") >= 1 or n.poll() is not None, 30,
             what="notify_build.py to connect")
    evs = build_events(brid, 2)
    emit(kafka, topics, evs)
    out, err = n.communicate(timeout=60)
    assert n.returncode == 1, err
    assert out.startswith("\a") and "FAILURE" in out
    r = run_example("replay_csv.py", "--url", b.ws_url, "--cafile", ca, "--from", "earliest", "--builder",
                    "tail-linux-rel", "--idle", 3)
    out, err = r.communicate(timeout=120)
    assert r.returncode == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert any(row["buildid"] == str(brid + 500000) and row["results"] == "2" for row in rows), rows[-3:]
    assert all(row["type"] == "build.finished" for row in rows)
    assert "tail-linux-rel" in err
    d = run_example("dashboard.py", "--url", b.url, "--cafile", ca, "--once")
    out, err = d.communicate(timeout=60)
    assert d.returncode == 1 and "view is unavailable" in err, (out, err)
