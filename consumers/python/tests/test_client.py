"""firehose_client's own tests, against a small fake broker in the same process (the firehose.v1
protocol's subscribe / subscribed / event / error, close codes, a 401) and a fake REST server,
all on 127.0.0.1. They prove reconnect-and-resume without a gap or duplicate, the cursor stores,
the exceptions, wait_for_build / wait_for_revision and the REST client. The real broker, over
TLS, is tests/integration/test_clients_tls.py's job.

Run: python -m unittest discover -s consumers/python/tests
"""

import asyncio
import http.server
import json
import os
import socket
import tempfile
import threading
import unittest
import urllib.parse

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

import firehose_client as fh


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def build_event(i, typ="step.finished", results=0, brid=None, revision="r1"):
    return {"specversion": "1.0", "id": "ev-%d" % i, "type": typ,
            "data": {"results": results, "buildrequestid": brid or 100 + i, "revision": revision,
                     "builder": "linux"}}


class FakeBroker:
    """Serves self.events: event i carries cursor str(i + 1). drop_after: close each connection
    with 1001 after that many events. close_with: close right after subscribing with this code."""

    def __init__(self, events, drop_after=None, token=None, close_with=None):
        self.events = events
        self.drop_after = drop_after
        self.token = token
        self.close_with = close_with
        self.connections = 0
        self.froms = []
        self.compression = []

    def process_request(self, conn, request):
        if self.token and request.headers.get("Authorization") != "Bearer " + self.token:
            body = b'{"error":"unauthorized","message":"unknown token"}'
            return Response(401, "Unauthorized", Headers([("Content-Length", str(len(body)))]), body)
        return None

    async def handler(self, ws):
        try:
            await self.serve_one(ws)
        except ConnectionClosed:
            pass

    async def serve_one(self, ws):
        self.connections += 1
        self.compression.append(ws.response.headers.get("Sec-WebSocket-Extensions"))
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("op") != "subscribe":
                continue
            flt = msg.get("filter") or {}
            if flt.get("results") == 9:
                await ws.send(json.dumps({"op": "error", "id": msg["id"], "code": "bad_filter",
                                          "message": "filter.results: expected integers 0-6"}))
                continue
            frm = msg.get("from")
            self.froms.append(frm)
            if frm == "earliest":
                start = 0
            elif frm == "latest":
                start = len(self.events)
            else:
                start = int(frm["cursor"])
            await ws.send(json.dumps({"op": "subscribed", "id": msg["id"], "cursor": str(start)}))
            if self.close_with:
                await ws.close(self.close_with, "test")
                return
            sent = 0
            for i in range(start, len(self.events)):
                ev = self.events[i]
                if "type" in flt and ev["type"] != flt["type"]:
                    continue
                await ws.send(json.dumps({"op": "event", "sub": msg["id"], "cursor": str(i + 1), "event": ev}))
                sent += 1
                if self.drop_after and sent >= self.drop_after:
                    await ws.close(1001, "going away")
                    return
            await ws.wait_closed()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def with_broker(fake, body):
    async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.process_request) as server:
        port = server.sockets[0].getsockname()[1]
        return await body("ws://127.0.0.1:%d" % port)


FAST = fh.Backoff(first=0.01, max=0.05)


class StreamTests(unittest.TestCase):
    def test_reconnects_resume_from_the_cursor_without_gap_or_duplicate(self):
        """The fake broker drops every connection after 3 events: all 10 arrive once, in order."""
        fake = FakeBroker([build_event(i) for i in range(10)], drop_after=3)

        async def body(url):
            got = []
            async for ev in fh.subscribe(url, from_="earliest", backoff=FAST):
                got.append(ev)
                if len(got) == 10:
                    break
            return got
        got = run(with_broker(fake, body))
        self.assertEqual([e.event["id"] for e in got], ["ev-%d" % i for i in range(10)])
        self.assertEqual(fake.froms[0], "earliest")
        self.assertEqual(fake.froms[1:], [{"cursor": "3"}, {"cursor": "6"}, {"cursor": "9"}])
        self.assertTrue(fake.compression[0].startswith("permessage-deflate"))

    def test_file_cursor_store_resumes_a_second_run_where_the_first_stopped(self):
        """A run that stops after 4 events leaves cursor 4 in the file; the next run starts there."""
        fake = FakeBroker([build_event(i) for i in range(8)])
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "cursor")

            async def first(url):
                n = 0
                async for _ in fh.subscribe(url, from_="earliest", cursor_store=fh.FileCursorStore(path)):
                    n += 1
                    if n == 4:
                        break
            run(with_broker(fake, first))
            self.assertEqual(read_text(path).strip(), "4")

            async def second(url):
                got = []
                async for ev in fh.subscribe(url, cursor_store=fh.FileCursorStore(path)):
                    got.append(ev.event["id"])
                    if len(got) == 4:
                        break
                return got
            self.assertEqual(run(with_broker(fake, second)), ["ev-4", "ev-5", "ev-6", "ev-7"])
            self.assertEqual(fake.froms[-1], {"cursor": "4"})
            self.assertEqual(read_text(path).strip(), "8")

    def test_subscribed_cursor_is_kept_before_any_event(self):
        """From latest, the subscribed answer's cursor is stored at once."""
        fake = FakeBroker([build_event(i) for i in range(3)])
        store = fh.MemoryCursorStore()

        async def body(url):
            agen = fh.subscribe(url, cursor_store=store)
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(agen.__anext__(), 0.5)
        run(with_broker(fake, body))
        self.assertEqual(store.load(), "3")

    def test_refusals_raise_clear_exceptions(self):
        """401 -> TokenRefused, bad_filter -> BadFilter, close 1009 -> ServerClosed, close 4001 -> TokenRefused."""
        async def first(url, **kw):
            async for ev in fh.subscribe(url, backoff=FAST, **kw):
                return ev

        fake = FakeBroker([], token="secret")
        with self.assertRaises(fh.TokenRefused) as cm:
            run(with_broker(fake, lambda url: first(url, token="wrong")))
        self.assertEqual(cm.exception.status, 401)
        with self.assertRaises(fh.BadFilter) as cm:
            run(with_broker(FakeBroker([]), lambda url: first(url, filter={"results": 9})))
        self.assertIn("filter.results", str(cm.exception))
        with self.assertRaises(fh.ServerClosed) as cm:
            run(with_broker(FakeBroker([], close_with=1009), first))
        self.assertEqual(cm.exception.code, 1009)
        with self.assertRaises(fh.TokenRefused):
            run(with_broker(FakeBroker([], close_with=4001), first))

    def test_gives_up_after_max_reconnects_and_guards_the_token(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()   # nothing listens there now

        async def first(url, **kw):
            async for ev in fh.subscribe(url, **kw):
                return ev
        with self.assertRaises(fh.GaveUp):
            run(first("ws://127.0.0.1:%d" % port, max_reconnects=2, backoff=FAST))
        with self.assertRaises(fh.InsecureToken):
            run(first("ws://firehose.example.org", token="t"))
        with self.assertRaises(fh.InsecureToken):
            fh.RestClient("http://firehose.example.org", token="t")

    def test_wait_for_build_returns_green_or_red(self):
        evs = [build_event(0, "build.started"), build_event(1, "build.finished", results=2),
               build_event(2, "build.finished", results=0)]
        r = run(with_broker(FakeBroker(evs), lambda url: fh.wait_for_build(url, from_="earliest")))
        self.assertFalse(r.green)
        self.assertEqual((r.results, r.results_name), (2, "FAILURE"))
        r = run(with_broker(FakeBroker(evs[2:]), lambda url: fh.wait_for_build(url, from_="earliest")))
        self.assertTrue(r.green)
        with self.assertRaises(ValueError):
            run(fh.wait_for_build("ws://127.0.0.1:1", {"type": "step.*"}))
        with self.assertRaises(asyncio.TimeoutError):
            run(with_broker(FakeBroker([]), lambda url: fh.wait_for_build(url, timeout=0.3)))

    def test_wait_for_revision_waits_for_every_request(self):
        evs = [build_event(0, "buildrequest.new", brid=1), build_event(1, "buildrequest.new", brid=2),
               build_event(2, "buildrequest.complete", results=0, brid=1),
               build_event(3, "buildrequest.complete", results=4, brid=2),
               build_event(4, "buildrequest.new", brid=3, revision="other")]
        r = run(with_broker(FakeBroker(evs), lambda url: fh.wait_for_revision(url, "r1", from_="earliest", settle=0.2)))
        self.assertEqual(r.requests, {1: 0, 2: 4})
        self.assertFalse(r.green)
        with self.assertRaises(asyncio.TimeoutError):   # request 2 never completes
            run(with_broker(FakeBroker(evs[:3]), lambda url: fh.wait_for_revision(url, "r1", from_="earliest",
                                                                                  settle=0.2, timeout=1.0)))

    def test_sync_wrappers(self):
        fake = FakeBroker([build_event(i) for i in range(5)] + [build_event(5, "build.finished", results=1)])
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        holder = {}

        async def serve_forever():
            async with serve(fake.handler, "127.0.0.1", 0) as server:
                holder["url"] = "ws://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
                holder["stop"] = loop.create_future()
                ready.set()
                await holder["stop"]
        t = threading.Thread(target=loop.run_until_complete, args=(serve_forever(),), daemon=True)
        t.start()
        ready.wait(10)
        try:
            got = []
            for ev in fh.subscribe_sync(holder["url"], from_="earliest"):
                got.append(ev.event["id"])
                if len(got) == 3:
                    break
            self.assertEqual(got, ["ev-0", "ev-1", "ev-2"])
            r = fh.wait_for_build_sync(holder["url"], from_="earliest", timeout=10)
            self.assertTrue(r.green and r.results == 1)
        finally:
            loop.call_soon_threadsafe(holder["stop"].set_result, None)
            t.join(10)
            loop.close()


class FakeRest(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if self.headers.get("Authorization") != "Bearer tok":
            return self.reply(401, {"error": "unauthorized", "message": "unknown token"})
        if u.path == "/api/v1/pending":
            if "bogus" in q:
                return self.reply(400, {"error": "unknown_parameter", "message": "unknown query parameter 'bogus'",
                                        "parameter": "bogus"})
            return self.reply(200, {"pending": [{"buildrequestid": 1}], "total": 1, "query": q})
        if u.path == "/api/v1/builds":
            page = {None: ([{"buildid": 3}, {"buildid": 2}], "b2"), "b2": ([{"buildid": 1}], None)}[q.get("cursor")]
            return self.reply(200, {"builds": page[0], "next_cursor": page[1]})
        return self.reply(404, {"error": "not_found", "message": "no such path"})

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class RestTests(unittest.TestCase):
    def setUp(self):
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRest)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]

    def tearDown(self):
        self.srv.shutdown()
        self.srv.server_close()

    def test_calls_errors_and_pagination(self):
        c = fh.RestClient(self.url, token="tok")
        r = c.pending(builder="linux", branch=None)
        self.assertEqual(r["query"], {"builder": "linux"})
        with self.assertRaises(fh.RestError) as cm:
            c.pending(bogus=1)
        self.assertEqual((cm.exception.status, cm.exception.parameter), (400, "bogus"))
        self.assertEqual([b["buildid"] for b in c.iter_builds()], [3, 2, 1])
        with self.assertRaises(fh.TokenRefused):
            fh.RestClient(self.url, token="nope").running()
        self.assertEqual(asyncio.run(fh.AsyncRestClient(self.url, token="tok").pending())["total"], 1)


if __name__ == "__main__":
    unittest.main()
