"""Blocking wrappers for scripts that do not use asyncio. Each runs its own event loop, so call
them from plain code, not from inside a running loop."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator, Optional

from .stream import BuildResult, Event, Filter, Position, RevisionResult, subscribe, wait_for_build, wait_for_revision


def subscribe_sync(url: str, filter: Optional[Filter] = None, from_: Position = "latest",
                   **kwargs: Any) -> Iterator[Event]:
    """subscribe() as a plain iterator: ``for ev in subscribe_sync(url, {"type": "build.*"}):``.
    Closing it (break, or the generator being collected) saves the cursor of the last event."""
    loop = asyncio.new_event_loop()
    agen = subscribe(url, filter, from_, **kwargs)
    try:
        while True:
            try:
                ev = loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
            yield ev
    finally:
        try:
            loop.run_until_complete(agen.aclose())
        finally:
            loop.close()


def wait_for_build_sync(url: str, filter: Optional[Filter] = None, from_: Position = "latest",
                        **kwargs: Any) -> BuildResult:
    """wait_for_build() for plain code."""
    return asyncio.run(wait_for_build(url, filter, from_, **kwargs))


def wait_for_revision_sync(url: str, revision: str, filter: Optional[Filter] = None,
                           from_: Position = "latest", **kwargs: Any) -> RevisionResult:
    """wait_for_revision() for plain code."""
    return asyncio.run(wait_for_revision(url, revision, filter, from_, **kwargs))
