"""Where a subscription keeps its cursor between reconnects and runs."""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Optional, Protocol, Union


class CursorStore(Protocol):
    """Holds the cursor of the last event handled. ``load`` returns None when there is none."""

    def load(self) -> Optional[str]: ...

    def save(self, cursor: str) -> None: ...


class MemoryCursorStore:
    """A cursor kept in memory: resumes across reconnects, not across runs."""

    def __init__(self, cursor: Optional[str] = None) -> None:
        self.cursor = cursor

    def load(self) -> Optional[str]:
        return self.cursor

    def save(self, cursor: str) -> None:
        self.cursor = cursor


class FileCursorStore:
    """A cursor kept in a file, rewritten atomically (a temporary file renamed over it), so the
    file always names an event that was handled: the same file firehose-tail --cursor-file keeps,
    so the two can take turns."""

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self.path = pathlib.Path(path)

    def load(self) -> Optional[str]:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def save(self, cursor: str) -> None:
        d = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=str(d))
        try:
            with os.fdopen(fd, "w") as f:
                f.write(cursor + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
