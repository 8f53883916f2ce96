"""Buildbot test result sets as test.result_set and test.results events (docs/events.md,
"Test results from Buildbot").

Buildbot announces a set on its queue when it is complete (('test_result_sets', id, 'completed'));
its single results never travel on the queue and are final by then.  TestResults reads them
through the data API in pages of `page` rows (limited in SQL, so a set of any size never sits in
the master's memory whole), cuts each page into test.results chunks of at most 500
results and 256 KiB of encoded results, and emits the test.result_set after its last chunk.
"""

import json

from twisted.python import log

from firehose_buildbot import events as ev

# docs/events.md, test.results: the schema's maxItems, and the producer's byte budget.
CHUNK_MAX_RESULTS = 500
CHUNK_MAX_BYTES = 256 * 1024
NAME_MAX = 1024
VALUE_MAX = 256


def outcome(category, value_unit, value):
    """pass/fail as Buildbot counts tests_passed/tests_failed for the category; None otherwise
    (measurements, or a pass_fail value that is not an integer).  lib/fh_testres.c is the same."""
    if category == "pass_only":
        return "pass"
    if category in ("fail_only", "code_issue"):
        return "fail"
    if category != "pass_fail" or value_unit != "boolean":
        return None
    try:
        return "pass" if int(str(value).strip()) else "fail"
    except (TypeError, ValueError):
        return None


def _cut(text, n):
    return None if text is None else str(text)[:n]


def result_item(row, category, value_unit):
    """One Buildbot test_results row -> one element of test.results' tests."""
    name = row.get("test_name") or row.get("test_code_path") or "test-%s" % row.get("test_resultid")
    line = row.get("line")
    dur = row.get("duration_ns")
    value = ev.s(row.get("value"))
    return {"name": _cut(name, NAME_MAX), "code_path": _cut(row.get("test_code_path"), NAME_MAX),
            "line": line if isinstance(line, int) and line >= 0 else None,
            "value": value[:VALUE_MAX], "outcome": outcome(category, value_unit, value),
            "duration_s": dur / 1e9 if isinstance(dur, int) and dur >= 0 else None}


def chunks(items, max_results=CHUNK_MAX_RESULTS, max_bytes=CHUNK_MAX_BYTES):
    """Cuts items into lists of at most max_results whose encoded size stays under max_bytes
    (a lone item over it travels alone), in order."""
    out, cur, size = [], [], 0
    for it in items:
        n = len(json.dumps(it, ensure_ascii=False, separators=(",", ":")).encode("utf-8")) + 1
        if cur and (len(cur) >= max_results or size + n > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += n
    if cur:
        out.append(cur)
    return out


class TestResults:
    """Turns completed sets into events for a FirehoseService (svc): its build and step context,
    its _emit, its counters."""

    def __init__(self, svc, page=5000):
        self.svc = svc
        self.page = page

    async def _rows(self, setid, offset):
        """(rows from offset on, in id order; True when they are the set's last)."""
        data = self.svc.master.data
        path = ("test_result_sets", str(setid), "results")
        self.svc.counters["queries"] += 1
        try:
            # No order: Buildbot's results endpoint maps no field for SQL ordering, and an order it
            # cannot push down makes it read the whole set and slice it in Python.  Without one,
            # limit and offset go into its SQL query (one plan, so pages neither overlap nor skip);
            # rows are put in id order within the page.
            rows = await data.get(path, limit=self.page, offset=offset)
            last = len(rows or []) < self.page
        except Exception:
            if offset:
                raise
            log.err(None, "firehose-buildbot: paged test result read failed; reading set %d whole" % setid)
            rows, last = await data.get(path), True
        return sorted(rows or [], key=lambda r: r.get("test_resultid") or 0), last

    async def on_completed(self, msg):
        if not msg or not msg.get("test_result_setid") or not msg.get("stepid"):
            return
        svc = self.svc
        setid, stepid = msg["test_result_setid"], msg["stepid"]
        st = await svc._step(stepid)
        b = await svc._build(st["buildid"]) if st else None
        if b is None:
            return
        await svc._ensure_build_started(b)
        await svc._ensure_step_started(b, st)
        category, unit = ev.s(msg.get("category")), ev.s(msg.get("value_unit"))
        subject = "builds/%d/steps/%d/test_result_sets/%d" % (b["buildid"], st["number"], setid)
        key = "buildrequest/%d" % b["brid"]
        base = dict(b["ctx"])
        base.update({"test_result_setid": setid, "stepid": stepid})
        nresults = nchunks = 0
        offset = 0
        pending = None     # held back one chunk, so the set's last one goes out with last=True
        while True:
            rows, done = await self._rows(setid, offset)
            offset += len(rows)
            for c in chunks([result_item(r, category, unit) for r in rows]):
                if pending is not None:
                    self._emit_chunk(base, category, unit, nchunks - 1, False, pending, subject, key)
                pending = c
                nchunks += 1
                nresults += len(c)
            if done:
                break
        if pending is not None:
            self._emit_chunk(base, category, unit, nchunks - 1, True, pending, subject, key)
        data = dict(base)
        data.update({"description": ev.s(msg.get("description")), "category": category,
                     "value_unit": unit, "tests_passed": msg.get("tests_passed"),
                     "tests_failed": msg.get("tests_failed"), "results": nresults, "chunks": nchunks})
        svc.counters["test_results"] += nresults
        svc._emit("test.result_set", subject, key, data)

    def _emit_chunk(self, base, category, unit, index, last, tests, subject, key):
        data = dict(base)
        data.update({"category": category, "value_unit": unit, "chunk": index, "last": last,
                     "tests": tests})
        self.svc._emit("test.results", subject + "/results", key, data)
