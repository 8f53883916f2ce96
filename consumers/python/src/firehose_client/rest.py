"""A thin client for the broker's REST API (docs/api.md): pending, running, last green, builds,
stats. Standard library only; ``AsyncRestClient`` runs the same calls in a worker thread."""

from __future__ import annotations

import asyncio
import json
import ssl as ssl_module
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, Optional

from .errors import RestError, TokenRefused
from .stream import check_token_transport, ssl_context

Json = Dict[str, Any]


class RestClient:
    """Calls on ``base_url`` (http(s)://HOST:PORT). Each method returns the decoded JSON answer
    (its ``as_of`` says what the view reflected); errors raise RestError, or TokenRefused for 401
    and 403. Filters are passed as keyword arguments (``builder="linux"``); None values are left
    out."""

    def __init__(self, base_url: str, token: Optional[str] = None, *,
                 ssl: Optional[ssl_module.SSLContext] = None, cafile: Optional[str] = None,
                 timeout: float = 30.0, allow_insecure_token: bool = False) -> None:
        u = urllib.parse.urlsplit(base_url)
        if u.scheme in ("ws", "wss"):
            base_url = urllib.parse.urlunsplit(("http" if u.scheme == "ws" else "https", u.netloc, "", "", ""))
        elif u.scheme not in ("http", "https"):
            raise ValueError("%s: expected an http:// or https:// URL" % base_url)
        self.base = base_url.rstrip("/") + "/"
        check_token_transport(self.base, token, allow_insecure_token)
        self.token = token
        self.timeout = timeout
        self.ctx = ssl_context(self.base, ssl, cafile)

    def get(self, path: str, **params: Any) -> Json:
        """GET /api/v1/PATH?params: the decoded answer."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = self.base + "api/v1/" + path.lstrip("/") + ("?" + query if query else "")
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ctx) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                body = json.loads(e.read() or b"{}")
            except ValueError:
                body = {}
            if e.code in (401, 403):
                raise TokenRefused(e.code, str(body.get("message", ""))) from None
            raise RestError(e.code, str(body.get("error", "http_error")), str(body.get("message", e.reason)),
                            body.get("parameter")) from None

    def pending(self, **filters: Any) -> Json:
        """Build requests neither claimed nor complete (builder, branch, project, owner,
        repository, limit)."""
        return self.get("pending", **filters)

    def running(self, **filters: Any) -> Json:
        """Builds started and not finished (builder, branch, project, owner, repository, worker,
        limit)."""
        return self.get("running", **filters)

    def last_green(self, branch: str, repository: Optional[str] = None) -> Json:
        """The newest revision of branch that is good on every required builder, and why."""
        return self.get("last-green", branch=branch, repository=repository)

    def builds(self, **filters: Any) -> Json:
        """One page of builds, newest first (builder, branch, ..., results, state,
        buildrequestid, limit, cursor); ``next_cursor`` leads to the next page."""
        return self.get("builds", **filters)

    def iter_builds(self, **filters: Any) -> Iterator[Json]:
        """Every build matching filters, newest first, following next_cursor page by page."""
        while True:
            page = self.builds(**filters)
            yield from page.get("builds", [])
            if not page.get("next_cursor"):
                return
            filters["cursor"] = page["next_cursor"]

    def build(self, buildid: int) -> Json:
        """One build with its steps, logs and properties."""
        return self.get("builds/%d" % int(buildid))

    def builders(self) -> Json:
        return self.get("builders")

    def stats_steps(self, **params: Any) -> Json:
        """Slowest steps (builder, window, limit)."""
        return self.get("stats/steps", **params)

    def stats_builds(self, **params: Any) -> Json:
        """Duration trend, failure rate and queue wait per bucket (builder, window, bucket)."""
        return self.get("stats/builds", **params)


class AsyncRestClient:
    """RestClient's calls for asyncio code, each run in a worker thread."""

    def __init__(self, base_url: str, token: Optional[str] = None, **kwargs: Any) -> None:
        self.sync = RestClient(base_url, token, **kwargs)

    async def get(self, path: str, **params: Any) -> Json:
        return await asyncio.to_thread(self.sync.get, path, **params)

    async def pending(self, **filters: Any) -> Json:
        return await asyncio.to_thread(self.sync.pending, **filters)

    async def running(self, **filters: Any) -> Json:
        return await asyncio.to_thread(self.sync.running, **filters)

    async def last_green(self, branch: str, repository: Optional[str] = None) -> Json:
        return await asyncio.to_thread(self.sync.last_green, branch, repository)

    async def builds(self, **filters: Any) -> Json:
        return await asyncio.to_thread(self.sync.builds, **filters)

    async def build(self, buildid: int) -> Json:
        return await asyncio.to_thread(self.sync.build, buildid)

    async def stats_steps(self, **params: Any) -> Json:
        return await asyncio.to_thread(self.sync.stats_steps, **params)

    async def stats_builds(self, **params: Any) -> Json:
        return await asyncio.to_thread(self.sync.stats_builds, **params)
