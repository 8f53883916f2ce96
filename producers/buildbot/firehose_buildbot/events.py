"""Pure helpers: Buildbot data API values to firehose v1 fields (no Twisted, no Kafka)."""

import datetime
import fnmatch
import re

# docs/events.md: log.chunk content is at most 65536 characters (code points).
MAX_CHUNK_CHARS = 65536

_EMAIL = re.compile(r"<([^<>@\s]+@[^<>\s]+)>")


def epoch(value):
    """Buildbot date (datetime, int or float epoch seconds) -> float epoch seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    return float(value)


def rfc3339_ms(t):
    """Epoch seconds -> '2026-11-22T05:00:00.123Z' (UTC, exactly three fractional digits)."""
    ms = int(t * 1000)
    secs, frac = divmod(ms, 1000)
    return time_fmt(secs) + ".%03dZ" % frac


def time_fmt(secs):
    return datetime.datetime.fromtimestamp(secs, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def s(value):
    """Context source fields are always strings: None -> ''."""
    return "" if value is None else str(value)


def source_fields(ss):
    """The context's source fields from a Buildbot sourcestamp dict (or None)."""
    ss = ss or {}
    return {"branch": s(ss.get("branch")), "revision": s(ss.get("revision")),
            "repository": s(ss.get("repository")), "project": s(ss.get("project")),
            "codebase": s(ss.get("codebase"))}


def first_sourcestamp(sourcestamps):
    """The sourcestamp that fills the context of a multi-codebase buildset: the default codebase
    ('') when present, else the first by codebase name.  Deterministic for every event of a build."""
    if not sourcestamps:
        return None
    return min(sourcestamps, key=lambda ss: ss.get("codebase") or "")


def owner_from_author(author):
    """'Alice <alice@example.org>' -> 'alice@example.org'; a bare author is kept as it is."""
    if not author:
        return ""
    m = _EMAIL.search(author)
    return m.group(1) if m else author.strip()


def with_buildid(ctx, buildid):
    """A copy of a request's context with buildid (when there is one) in its documented place,
    right after buildrequestid, as docs/events.md orders the context."""
    out = {"buildrequestid": ctx["buildrequestid"]}
    if buildid:
        out["buildid"] = buildid
    out.update(ctx)
    return out


def owner_from_properties(props):
    """Buildbot's owner: the 'owner' property as it is (ForceScheduler, try), else the e-mail
    address in the first of 'owners' (Buildbot's blamelist: change authors)."""
    if not props:
        return ""
    v = props.get("owner")
    if v is not None:
        v = v[0] if isinstance(v, (list, tuple)) else v
        if isinstance(v, str) and v:
            return v
    v = props.get("owners")
    if v is not None:
        v = v[0] if isinstance(v, (list, tuple)) else v
        if isinstance(v, (list, tuple)) and v and isinstance(v[0], str):
            return owner_from_author(v[0])
        if isinstance(v, str) and v:
            return owner_from_author(v)
    return ""


def duration(start, end):
    if start is None or end is None:
        return 0.0
    return max(0.0, end - start)


def split_lines(text, max_chars=MAX_CHUNK_CHARS):
    """Whole lines (each ending in '\\n'; only '\\n' ends a line, as in Buildbot's line numbers)
    -> (pieces, number of lines, number of truncated lines); pieces are (line offset, content) of
    at most max_chars characters each.  A single line longer than the limit is cut to
    max_chars - 1 characters plus '\\n' and travels alone.  Cuts with str.rfind: no per-line loop."""
    if not text:
        return [], 0, 0
    if not text.endswith("\n"):
        text += "\n"
    out = []
    pos = 0
    line = 0
    truncated = 0
    n = len(text)
    while pos < n:
        if n - pos <= max_chars:
            piece = text[pos:]
        else:
            cut = text.rfind("\n", pos, pos + max_chars)
            if cut == -1:
                end = text.find("\n", pos)
                out.append((line, text[pos:pos + max_chars - 1] + "\n"))
                truncated += 1
                line += 1
                pos = end + 1
                continue
            piece = text[pos:cut + 1]
        out.append((line, piece))
        line += piece.count("\n")
        pos += len(piece)
    return out, line, truncated


class Globs:
    """A list of fnmatch patterns; None or empty matches everything."""

    def __init__(self, patterns):
        if isinstance(patterns, str):
            patterns = [patterns]
        self.patterns = list(patterns or [])
        self._cache = {}

    def match(self, name):
        if not self.patterns:
            return True
        r = self._cache.get(name)
        if r is None:
            r = any(fnmatch.fnmatchcase(name, p) for p in self.patterns)
            if len(self._cache) < 4096:
                self._cache[name] = r
        return r
