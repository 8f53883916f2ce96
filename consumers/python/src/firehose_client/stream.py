"""The broker's WebSocket stream (/v1/stream, protocol firehose.v1): subscribe with reconnects and
resume, and wait for a build or a revision (the Python twin of ``firehose-tail --wait``)."""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
import random
import ssl as ssl_module
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, Mapping, Optional, Union

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .cursor import CursorStore, MemoryCursorStore
from .errors import (BadFilter, BadRequest, CertificateError, CursorExpired, FirehoseError, GaveUp,
                     InsecureToken, ServerClosed, TokenRefused)

# A start position: "latest", "earliest", {"time": RFC3339}, {"cursor": C}, or a plain string that
# is an RFC 3339 time or a cursor (as firehose-tail --from takes them).
Position = Union[str, Mapping[str, str]]
Filter = Mapping[str, Any]

GREEN = (0, 1)   # Buildbot SUCCESS, WARNINGS
RESULT_NAMES = ("SUCCESS", "WARNINGS", "FAILURE", "SKIPPED", "EXCEPTION", "RETRY", "CANCELLED")

# close codes that say the client must change something: reconnecting would fail the same way
_FATAL_CLOSE = {1002, 1003, 1007, 1009, 4000, 4001}
# errors from the broker after which a reconnect (resuming from the cursor) is the answer
_RETRY_ERRORS = {"busy", "unavailable", "internal"}


@dataclass(frozen=True)
class Event:
    """One event: the CloudEvent as produced (``event``, a dict) and the cursor of the position
    just after it (resume from it to get everything after this event)."""

    cursor: str
    event: Dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.event.get("type", ""))

    @property
    def data(self) -> Dict[str, Any]:
        d = self.event.get("data")
        return d if isinstance(d, dict) else {}


@dataclass
class Backoff:
    """Reconnect delays: ``first`` seconds, doubling up to ``max``, half fixed and half random
    (a fleet of clients does not reconnect in step after a broker restart)."""

    first: float = 0.25
    max: float = 30.0
    _next: float = field(default=0.0, init=False, repr=False)

    def reset(self) -> None:
        self._next = self.first

    def delay(self) -> float:
        if self._next <= 0:
            self._next = self.first
        d = self._next / 2 + random.random() * self._next / 2
        self._next = min(self._next * 2, self.max)
        return d


def stream_url(url: str) -> str:
    """ws(s)://HOST:PORT[/PATH] as given, http(s):// turned into ws(s)://, /v1/stream added
    when there is no path."""
    u = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(u.scheme, u.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError("%s: expected a ws://, wss://, http:// or https:// URL" % url)
    path = u.path if u.path not in ("", "/") else "/v1/stream"
    return urllib.parse.urlunsplit((scheme, u.netloc, path, u.query, ""))


def is_loopback(host: Optional[str]) -> bool:
    """True when host is this machine by its text alone (localhost, 127.0.0.0/8, ::1)."""
    if not host:
        return False
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_token_transport(url: str, token: Optional[str], allow_insecure_token: bool) -> None:
    """Raises InsecureToken when token would cross a plain (non-TLS) connection to another host."""
    u = urllib.parse.urlsplit(url)
    if token and u.scheme in ("ws", "http") and not is_loopback(u.hostname) and not allow_insecure_token:
        raise InsecureToken("refusing to send the token in clear text over %s:// to %s: use %s:// "
                            "(or allow_insecure_token=True if you accept that anyone on the path can read it)"
                            % (u.scheme, u.hostname, "wss" if u.scheme == "ws" else "https"))


def ssl_context(url: str, ssl: Optional[ssl_module.SSLContext], cafile: Optional[str]) -> Optional[ssl_module.SSLContext]:
    """The TLS context for a wss:// or https:// URL: ssl when given, else one that verifies the
    certificate and host name against cafile (or the system's CAs). None for plain URLs."""
    if urllib.parse.urlsplit(url).scheme not in ("wss", "https"):
        return None
    if ssl is not None:
        return ssl
    return ssl_module.create_default_context(cafile=cafile)


def position(p: Position) -> Union[str, Dict[str, str]]:
    """The JSON form of a start position."""
    if isinstance(p, Mapping):
        return dict(p)
    if p in ("latest", "earliest"):
        return p
    if len(p) >= 20 and p[4:5] == "-" and p[10:11] in ("T", "t"):
        return {"time": p}
    return {"cursor": p}


def _raise_for_error(msg: Mapping[str, Any]) -> None:
    code = str(msg.get("code", ""))
    text = str(msg.get("message", ""))
    if code == "bad_filter":
        raise BadFilter(text)
    if code == "cursor_expired":
        earliest = text.rsplit("cursor ", 1)[-1].strip() if "cursor " in text else None
        raise CursorExpired(text, earliest)
    if code in ("bad_request", "duplicate_id", "unknown_subscription", "too_many_subscriptions"):
        raise BadRequest("%s: %s" % (code, text))
    raise FirehoseError("%s: %s" % (code, text))


async def subscribe(url: str, filter: Optional[Filter] = None, from_: Position = "latest", *,
                    cursor_store: Optional[CursorStore] = None, token: Optional[str] = None,
                    ssl: Optional[ssl_module.SSLContext] = None, cafile: Optional[str] = None,
                    backoff: Optional[Backoff] = None, max_reconnects: Optional[int] = None,
                    open_timeout: float = 10.0, compression: Optional[str] = "deflate",
                    allow_insecure_token: bool = False, sub_id: str = "py",
                    max_size: Optional[int] = 16 * 1024 * 1024) -> AsyncIterator[Event]:
    """Yields every event matching ``filter`` from ``from_`` on, for as long as the caller
    iterates, reconnecting with backoff and resuming from the last cursor: no gap, no duplicate.

    The cursor goes into ``cursor_store`` (memory by default; ``FileCursorStore`` keeps it across
    runs, and a stored cursor wins over ``from_``) once the event is handled: when the next one
    is asked for, or when the iteration is closed (``break``, ``aclose``). The ``subscribed``
    answer's cursor is kept too, so a restart before any event loses nothing.

    Raises TokenRefused, BadFilter, BadRequest, CursorExpired, ServerClosed, InsecureToken,
    CertificateError (the broker's certificate did not verify: not retried), and
    GaveUp after ``max_reconnects`` failed attempts in a row (None: never give up). Transient
    failures (connection lost, broker shutting down 1001, slow consumer 4008, too many
    connections 4029, 1011, ``busy``, ``unavailable``) reconnect.

    ``ssl``/``cafile``: TLS for wss:// (the certificate and host name are verified against
    ``cafile`` or the system's CAs unless you pass your own context). ``compression``:
    "deflate" (permessage-deflate, the default) or None. Proxies come from the environment as
    ``websockets`` reads them (``https_proxy`` for wss://).
    """
    ws_url = stream_url(url)
    check_token_transport(ws_url, token, allow_insecure_token)
    tls = ssl_context(ws_url, ssl, cafile)
    store = cursor_store if cursor_store is not None else MemoryCursorStore()
    bo = backoff or Backoff()
    bo.reset()
    headers = {"Authorization": "Bearer " + token} if token else {}
    subscription = {"op": "subscribe", "id": sub_id, "filter": dict(filter or {})}
    pending: Optional[str] = None   # the cursor of the event handed out last, saved once handled
    failures = 0
    try:
        while True:
            try:
                kwargs: Dict[str, Any] = {}
                if tls is not None:
                    kwargs["ssl"] = tls
                async with connect(ws_url, additional_headers=headers, subprotocols=["firehose.v1"],  # type: ignore[list-item]
                                   compression=compression, open_timeout=open_timeout,
                                   max_size=max_size, **kwargs) as ws:
                    saved = store.load()
                    subscription["from"] = {"cursor": saved} if saved else position(from_)
                    await ws.send(json.dumps(subscription))
                    async for raw in ws:
                        msg = json.loads(raw)
                        op = msg.get("op")
                        if op == "event":
                            if pending is not None:
                                store.save(pending)
                            pending = None
                            failures = 0
                            bo.reset()
                            ev = Event(str(msg.get("cursor", "")), msg.get("event") or {})
                            pending = ev.cursor
                            try:
                                yield ev
                            except GeneratorExit:   # the caller is done: say goodbye properly
                                await ws.close()
                                raise
                        elif op == "subscribed":
                            failures = 0
                            bo.reset()
                            if msg.get("cursor") and pending is None and not store.load():
                                store.save(str(msg["cursor"]))
                        elif op == "error":
                            await ws.close()   # a clean close either way, then decide
                            if msg.get("code") not in _RETRY_ERRORS:
                                _raise_for_error(msg)
                            break
                # the connection ended (closed by the broker, or busy/unavailable): reconnect
            except ConnectionClosed as e:
                rcvd = e.rcvd
                if rcvd is not None and rcvd.code == 4001:
                    raise TokenRefused(401, rcvd.reason) from None
                if rcvd is not None and rcvd.code in _FATAL_CLOSE:
                    raise ServerClosed(rcvd.code, rcvd.reason) from None
            except InvalidStatus as e:
                status = e.response.status_code
                body = e.response.body.decode("utf-8", "replace") if e.response.body else ""
                if status in (401, 403):
                    raise TokenRefused(status, body) from None
                if status in (400, 404, 426):
                    raise BadRequest("HTTP %d: %s" % (status, body)) from None
            except ssl_module.SSLCertVerificationError as e:
                raise CertificateError(str(e)) from e   # before OSError: it is one
            except (OSError, asyncio.TimeoutError, InvalidHandshake):
                pass
            if pending is not None:
                store.save(pending)
                pending = None
            failures += 1
            if max_reconnects is not None and failures > max_reconnects:
                raise GaveUp("gave up after %d failed attempts in a row" % failures)
            await asyncio.sleep(bo.delay())
    finally:
        # closed by the caller (break, aclose) or by an error: the last event handed out was
        # handled as far as we can tell
        if pending is not None:
            store.save(pending)


@dataclass(frozen=True)
class BuildResult:
    """The first matching build.finished: ``green`` when its results are 0 or 1."""

    green: bool
    results: int
    event: Dict[str, Any]

    @property
    def results_name(self) -> str:
        return RESULT_NAMES[self.results] if 0 <= self.results < len(RESULT_NAMES) else str(self.results)


@dataclass(frozen=True)
class RevisionResult:
    """Every build request seen for the revision, completed: ``requests`` maps build request id to
    its results; ``green`` when all are 0 or 1."""

    green: bool
    requests: Dict[int, int]


def _type_possible(flt: Optional[Filter], wanted: str) -> bool:
    t = (flt or {}).get("type")
    if t is None:
        return True
    values = t if isinstance(t, (list, tuple)) else [t]
    return any(fnmatch.fnmatchcase(wanted, str(v).replace("[", "[[]")) for v in values)


async def wait_for_build(url: str, filter: Optional[Filter] = None, from_: Position = "latest", *,
                         timeout: Optional[float] = None, **kwargs: Any) -> BuildResult:
    """Waits for the first build.finished matching ``filter`` (narrow it to your build:
    ``{"buildrequestid": 4711}``, or ``{"owner": me, "branch": "try"}`` for "my next try build")
    and returns its result. Raises asyncio.TimeoutError after ``timeout`` seconds; the rest of
    the keyword arguments are subscribe()'s."""
    if not _type_possible(filter, "build.finished"):
        raise ValueError("wait_for_build: the type filter excludes build.finished")

    async def run() -> BuildResult:
        agen = subscribe(url, filter, from_, **kwargs)
        try:
            async for ev in agen:
                r = ev.data.get("results")
                if ev.type == "build.finished" and isinstance(r, int):
                    return BuildResult(r in GREEN, r, ev.event)
        finally:
            await agen.aclose()
        raise FirehoseError("the stream ended")   # subscribe() never ends by itself
    return await asyncio.wait_for(run(), timeout)


async def wait_for_revision(url: str, revision: str, filter: Optional[Filter] = None,
                            from_: Position = "latest", *, settle: float = 1.0,
                            timeout: Optional[float] = None, max_requests: int = 65536,
                            **kwargs: Any) -> RevisionResult:
    """Waits until every build request seen for ``revision`` has completed
    (buildrequest.complete, which covers retried and cancelled requests too) and ``settle``
    seconds passed without a new one; returns whether all were green. Start it before the
    requests are created, or pass ``from_`` (a time or "earliest") so that it sees them all."""
    flt = dict(filter or {})
    if flt.setdefault("revision", revision) != revision:
        raise ValueError("wait_for_revision: the filter selects another revision")
    if not _type_possible(flt, "buildrequest.complete"):
        raise ValueError("wait_for_revision: the type filter excludes buildrequest.complete")
    requests: Dict[int, Optional[int]] = {}

    async def run() -> RevisionResult:
        agen = subscribe(url, flt, from_, **kwargs)
        settled_at: Optional[float] = None
        try:
            while True:
                wait = None if settled_at is None else max(0.0, settled_at + settle - time.monotonic())
                try:
                    ev = await asyncio.wait_for(agen.__anext__(), wait)
                except asyncio.TimeoutError:
                    done = {k: v for k, v in requests.items() if v is not None}
                    return RevisionResult(all(v in GREEN for v in done.values()), done)
                d = ev.data
                brid = d.get("buildrequestid")
                if d.get("revision") != revision or not isinstance(brid, int) or brid <= 0:
                    continue
                if brid not in requests:
                    if len(requests) >= max_requests:
                        raise FirehoseError("wait_for_revision: more than %d build requests" % max_requests)
                    requests[brid] = None
                r = d.get("results")
                if ev.type == "buildrequest.complete" and requests[brid] is None and isinstance(r, int):
                    requests[brid] = r
                settled_at = time.monotonic() if all(v is not None for v in requests.values()) else None
        finally:
            await agen.aclose()
    return await asyncio.wait_for(run(), timeout)
