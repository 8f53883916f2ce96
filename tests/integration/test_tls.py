"""TLS for REST, the stream and SSE (http.tls_cert / http.tls_key): with a certificate configured
the one port speaks only TLS; REST answers over https, a WebSocket client subscribes over wss and
gets its events, curl reads SSE over https; a plain-HTTP request gets no answer; a bad TLS setting
stops the broker with an error naming the key.
"""

import asyncio
import json
import ssl
import subprocess
import uuid

import pytest
import requests
import websockets

from conftest import BIN
from view_helpers import Broker, emit, write_ndjson


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return d


def test_rest_stream_and_sse_over_tls(kafka, tmp_path, certs):
    names = {k: "tls-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("events", "logs", "dlq")}
    kafka.create_topics({names["events"]: 3, names["logs"]: 3, names["dlq"]: 1})
    b = Broker(kafka, names, tmp_path / "view.db", tmp_path / "broker.log",
               extra=["--http.tls_cert", str(certs / "cert.pem"), "--http.tls_key", str(certs / "key.pem")]).start()
    try:
        assert b.url.startswith("https://127.0.0.1:"), b.url
        ca = str(certs / "cert.pem")
        ev = json.loads((BIN.parent / "schemas" / "examples" / "valid" / "build-finished.json").read_text())
        ev["id"] = "tls-" + uuid.uuid4().hex
        write_ndjson(tmp_path / "one.ndjson", [ev])
        emit(kafka, names, tmp_path / "one.ndjson", expected=1)
        assert requests.get(b.url + "healthz", verify=ca, timeout=10).json() == {"status": "ok"}
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(b.url + "healthz", timeout=10)              # not trusted without the CA
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(b.url.replace("https://", "http://") + "healthz", timeout=10)

        async def ws():
            ctx = ssl.create_default_context(cafile=ca)
            async with websockets.connect(b.url.replace("https://", "wss://") + "v1/stream", ssl=ctx,
                                          subprotocols=["firehose"]) as s:
                await s.send(json.dumps({"op": "subscribe", "id": "t", "filter": {"type": "build.finished"},
                                         "from": "earliest"}))
                while True:
                    m = json.loads(await asyncio.wait_for(s.recv(), 30))
                    if m["op"] == "event":
                        return m["event"]["id"]
        assert asyncio.run(ws()) == ev["id"]

        sse = subprocess.run(["curl", "-sN", "--cacert", ca, "--max-time", "5",
                              b.url + "v1/events?from=earliest&type=build.finished"],
                             stdout=subprocess.PIPE, text=True, timeout=30).stdout
        assert ev["id"] in sse and "event: build.finished" in sse
    finally:
        assert b.stop() == 0


def test_bad_tls_settings_stop_the_broker_naming_the_key(tmp_path, certs):
    for args, needle in ((["--http.tls_cert", str(certs / "cert.pem")], "http.tls_key"),
                         (["--http.tls_cert", str(tmp_path / "missing.pem"), "--http.tls_key", str(certs / "key.pem")],
                          "http.tls_cert"),
                         (["--http.tls_cert", str(certs / "key.pem"), "--http.tls_key", str(certs / "cert.pem")],
                          "TLS")):
        r = subprocess.run([str(BIN / "firehose-broker"), "--listen", "127.0.0.1:0", "--view.enabled=false",
                            "--webhooks.path=%s" % (tmp_path / "webhooks.db")] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode != 0, (args, r.stderr[-1000:])
        assert needle in r.stderr, (args, r.stderr[-1000:])
