"""firehose_client: subscribe to a firehose broker's build events from Python.

    import asyncio, firehose_client as fh

    async def main():
        async for ev in fh.subscribe("wss://firehose.example.org", {"type": "build.finished"},
                                     cursor_store=fh.FileCursorStore("cursor.txt"), token=TOKEN):
            print(ev.data["builder"], ev.data["results"])

    result = fh.wait_for_build_sync("wss://firehose.example.org", {"buildrequestid": 4711}, token=TOKEN)

Dependencies: ``websockets`` and the standard library.
"""

from .cursor import CursorStore, FileCursorStore, MemoryCursorStore
from .errors import (BadFilter, BadRequest, CertificateError, CursorExpired, FirehoseError, GaveUp,
                     InsecureToken, RestError, ServerClosed, TokenRefused)
from .rest import AsyncRestClient, RestClient
from .stream import (Backoff, BuildResult, Event, RevisionResult, subscribe, wait_for_build,
                     wait_for_revision)
from .sync import subscribe_sync, wait_for_build_sync, wait_for_revision_sync

__version__ = "0.1.0"

__all__ = [
    "AsyncRestClient", "Backoff", "BadFilter", "BadRequest", "BuildResult", "CertificateError",
    "CursorExpired", "CursorStore", "Event", "FileCursorStore", "FirehoseError", "GaveUp",
    "InsecureToken", "MemoryCursorStore", "RestClient", "RestError", "RevisionResult",
    "ServerClosed", "TokenRefused", "subscribe", "subscribe_sync", "wait_for_build",
    "wait_for_build_sync", "wait_for_revision", "wait_for_revision_sync",
]
