"""FirehoseService: consumes the master's message queue and emits firehose v1 events to Kafka.

Thread model: everything runs in the reactor thread except librdkafka's own threads (which only
move bytes) and the final flush at stop (a pool thread, while nothing else touches the producer).

    mq.produce(key, msg) --(sync, O(1))--> inbox (deque, capped) --callLater(0)--> _drain()
    _drain(): one message at a time, in arrival order: context from the bounded caches (a data
    API query only on a miss), then _emit(): seq stamped, JSON encoded, sink.send() (never blocks)

One sequential drain keeps the order in which events are emitted (and so their seq) consistent
per build even where Buildbot's queue reorders: a parent that was not seen yet (a build for a
step, a step for a log, a request's .new for its claim) is emitted first from what the message
or one query says, and the late message is then suppressed.

Log content never travels on Buildbot's queue: ('logs', id, 'append') only says num_lines.  Open
logs are marked dirty and read in batches (one getLogLines per log per log_flush_interval, or at
log/step/build end), then cut into log.chunk events of whole lines (<= 65536 characters).

Test results do not travel on the queue either: a completed test result set is read through the
data API in pages and emitted as test.results chunks, then test.result_set (testresults.py).
"""

import json
import time
from collections import OrderedDict
from collections import deque

from twisted.internet import defer
from twisted.internet import task
from twisted.internet import threads
from twisted.python import log

from buildbot import config
from buildbot.util import service

from firehose_buildbot import events as ev
from firehose_buildbot.cache import LRU
from firehose_buildbot.sink import KafkaSink
from firehose_buildbot.sink import producer_config
from firehose_buildbot.testresults import TestResults

LOG_PREFIX = "firehose-buildbot: "
# seq is persisted in the master's state table in blocks: one DB write per SEQ_BLOCK events.
SEQ_BLOCK = 100000
# After this many messages in one reactor turn, the drain yields to the reactor.
DRAIN_SLICE = 200

# The routing keys consumed.  Each resource is consumed under exactly one of its event paths
# (Buildbot produces every event once per path pattern).
CONSUME = [
    ("changes", None, "new"),
    ("buildsets", None, "new"),
    ("buildrequests", None, None),
    ("builds", None, None),
    ("builds", None, "properties", "update"),
    ("steps", None, None),
    ("logs", None, None),
    ("workers", None, None),
    ("masters", None, None),
    ("builders", None, None),
    ("test_result_sets", None, "completed"),
]

_FLUSH = ("_firehose", "flush-logs")


async def _as_coro(d):
    return await d


def _chunk_reader(logs):
    """(compressed id, bytes) -> bytes for this Buildbot's log chunk compressors, or None."""
    get = getattr(logs, "_get_compressor", None)            # Buildbot 4.x
    if get is not None:
        return lambda cid, content: get(cid).read(content)
    byid = getattr(logs, "COMPRESSION_BYID", None)          # Buildbot 3.x
    if isinstance(byid, dict):
        return lambda cid, content: byid[cid]["read"](content)
    return None


class FirehoseService(service.BuildbotService):
    """c['services'].append(FirehoseService(brokers='kafka:9092', master_name='master-1'))

    Options (all keyword):
      brokers              Kafka bootstrap servers, "host:port[,host:port...]" (required)
      master_name          envelope `master` and `source` (buildbot://<master_name>);
                           default: Buildbot's own master name (hostname:basedir)
      topic_prefix         topics are <prefix>events and <prefix>logs (default "firehose.")
      topic_events, topic_logs   explicit topic names (override topic_prefix)
      builders             list of builder-name globs; build-scoped events of other builders are
                           not emitted (default: all)
      types                list of event-type globs to emit, e.g. ["build.*", "buildrequest.*"]
      log_content          False: emit log.new/log.finished but no log.chunk (no log reads)
      buffer_max_messages  cap of the Kafka buffer, events (default 100000)
      buffer_max_kbytes    cap of the Kafka buffer, KiB (default 262144)
      inbox_max            cap of messages waiting to be turned into events (default 50000)
      cache_size           cap of each context cache (default 4096 entries)
      max_open_logs        cap of logs followed at once (default 4096)
      log_flush_interval   seconds between batched reads of growing logs (default 1.0)
      log_read_max_lines   most lines fetched by one log read (default 20000)
      test_results_page    most test results fetched by one data API read of a completed test
                           result set (default 5000); each read becomes test.results chunks
      stats_interval       seconds between stats lines in twistd.log (default 60; 0: none)
      flush_timeout        seconds to wait for Kafka at stop (default 10)
      kafka                dict of extra librdkafka producer properties (override defaults)
    """

    name = "firehose"

    def checkConfig(self, brokers=None, master_name=None, topic_prefix="firehose.", topic_events=None,
                    topic_logs=None, builders=None, types=None, log_content=True,
                    buffer_max_messages=100000, buffer_max_kbytes=262144, inbox_max=50000,
                    cache_size=4096, max_open_logs=4096, log_flush_interval=1.0,
                    log_read_max_lines=20000, stats_interval=60.0, flush_timeout=10.0, kafka=None,
                    test_results_page=5000):
        if not brokers or not isinstance(brokers, str):
            config.error("FirehoseService: brokers must be 'host:port[,host:port...]'")
        if master_name is not None and (not isinstance(master_name, str) or not master_name):
            config.error("FirehoseService: master_name must be a non-empty string")
        for n, v, lo in (("buffer_max_messages", buffer_max_messages, 1), ("buffer_max_kbytes", buffer_max_kbytes, 1),
                         ("inbox_max", inbox_max, 1), ("cache_size", cache_size, 1),
                         ("max_open_logs", max_open_logs, 1), ("log_read_max_lines", log_read_max_lines, 1),
                         ("test_results_page", test_results_page, 1)):
            if not isinstance(v, int) or v < lo:
                config.error("FirehoseService: %s must be an integer >= %d" % (n, lo))
        for n, v in (("log_flush_interval", log_flush_interval), ("stats_interval", stats_interval),
                     ("flush_timeout", flush_timeout)):
            if not isinstance(v, (int, float)) or v < 0:
                config.error("FirehoseService: %s must be a number >= 0" % n)
        if kafka is not None and not isinstance(kafka, dict):
            config.error("FirehoseService: kafka must be a dict of librdkafka properties")

    # ------------------------------------------------------------------ configuration

    def __init__(self, *args, **kwargs):
        self.sink = None
        self.master_name = None
        self._source = None
        self._inbox = deque()
        self._draining = False
        self._drain_call = None
        self._flush_call = None
        self._flush_queued = False
        self._qrefs = []
        self._loops = []
        self._seq = 0
        self._seq_reserved = 0
        self._seq_reserving = False
        self._state_objectid = None
        self._master_started_sent = False
        self._fast_logs = True
        self._last_drop_log = 0.0
        self._dropped_logged = 0
        self.counters = {"inbox_dropped": 0, "filtered": 0, "errors": 0, "queries": 0,
                         "log_reads": 0, "log_lines": 0, "lines_truncated": 0, "logs_evicted": 0,
                         "emitted": 0, "test_results": 0}
        self._tests = TestResults(self)
        super().__init__(*args, **kwargs)

    def reconfigService(self, brokers=None, master_name=None, topic_prefix="firehose.", topic_events=None,
                        topic_logs=None, builders=None, types=None, log_content=True,
                        buffer_max_messages=100000, buffer_max_kbytes=262144, inbox_max=50000,
                        cache_size=4096, max_open_logs=4096, log_flush_interval=1.0,
                        log_read_max_lines=20000, stats_interval=60.0, flush_timeout=10.0, kafka=None,
                    test_results_page=5000):
        prefix = topic_prefix or ""
        self.topic_events = topic_events or prefix + "events"
        self.topic_logs = topic_logs or prefix + "logs"
        self._builders = ev.Globs(builders)
        self._types = ev.Globs(types)
        self.log_content = bool(log_content)
        self.inbox_max = inbox_max
        self.max_open_logs = max_open_logs
        self.log_flush_interval = float(log_flush_interval)
        self.log_read_max_lines = log_read_max_lines
        self._tests.page = test_results_page
        self.stats_interval = float(stats_interval)
        self.flush_timeout = float(flush_timeout)
        name = master_name or self.master.name
        if self.master_name is None:
            self.master_name = name
            self._source = "buildbot://" + name
        elif name != self.master_name:
            log.msg(LOG_PREFIX + "master_name change (%r -> %r) takes effect at the next restart"
                    % (self.master_name, name))
        if not hasattr(self, "c_builders") or self.c_builders.cap != cache_size:
            self._make_caches(cache_size)
        conf = producer_config(brokers, buffer_max_messages, buffer_max_kbytes, kafka)
        old = None
        if self.sink is None or self.sink.conf != conf:
            old = self.sink
            self.sink = KafkaSink(conf, log.msg)
            log.msg(LOG_PREFIX + "producing to %s (topics %s, %s; buffer cap %d events / %d KiB) as master %r"
                    % (brokers, self.topic_events, self.topic_logs, buffer_max_messages,
                       buffer_max_kbytes, self.master_name))
        if self.running:
            self._start_loops()
        if old is not None:
            # The old producer is drained off the reactor thread, bounded by flush_timeout.
            return threads.deferToThread(old.flush, self.flush_timeout).addBoth(lambda _: None)
        return defer.succeed(None)

    def _make_caches(self, n):
        self.c_builders = LRU("builders", n)      # builderid -> name
        self.c_workers = LRU("workers", n)        # workerid -> name
        self.c_masters = LRU("masters", 64)       # masterid -> name
        self.c_buildsets = LRU("buildsets", n)    # bsid -> {source, ssids, reason, owner}
        self.c_ss_author = LRU("ss_author", n)    # ssid -> author of its change
        self.c_brs = LRU("buildrequests", n)      # brid -> {bsid, builderid, buildid, new}
        self.c_builds = LRU("builds", n)          # buildid -> {brid, ..., ctx, started, finished}
        self.c_steps = LRU("steps", n * 4)        # stepid -> {buildid, number, name, ...}
        self.c_done_logs = LRU("done_logs", n * 4)  # logid -> True once log.finished went out
        self._open_logs = OrderedDict()           # logid -> state, capped by max_open_logs
        self._dirty = OrderedDict()               # logid -> state with unread lines

    def caches(self):
        return [self.c_builders, self.c_workers, self.c_masters, self.c_buildsets, self.c_ss_author,
                self.c_brs, self.c_builds, self.c_steps, self.c_done_logs]

    # ------------------------------------------------------------------ lifecycle

    @defer.inlineCallbacks
    def startService(self):
        yield super().startService()
        db = self.master.db
        self._state_objectid = yield db.state.getObjectId("firehose:" + self.master_name, "FirehoseService")
        self._seq = int((yield db.state.getState(self._state_objectid, "seq_next", 0)))
        self._seq_reserved = self._seq + SEQ_BLOCK
        yield db.state.setState(self._state_objectid, "seq_next", self._seq_reserved)
        for f in CONSUME:
            q = yield self.master.mq.startConsuming(self._on_message, f)
            self._qrefs.append(q)
        self._start_loops()
        log.msg(LOG_PREFIX + "started; seq continues at %d" % self._seq)

    def _start_loops(self):
        for lc in self._loops:
            if lc.running:
                lc.stop()
        self._loops = []
        lc = task.LoopingCall(self._poll)
        lc.clock = self.master.reactor
        lc.start(0.1, now=False)
        self._loops.append(lc)
        if self.stats_interval > 0:
            lc = task.LoopingCall(self._log_stats)
            lc.clock = self.master.reactor
            lc.start(self.stats_interval, now=False)
            self._loops.append(lc)

    @defer.inlineCallbacks
    def stopService(self):
        for q in self._qrefs:
            yield q.stopConsuming()
        self._qrefs = []
        reactor = self.master.reactor
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        # Turn what is already in the inbox into events, then read what the open logs still have.
        self._enqueue_flush()
        deadline = time.monotonic() + 5.0
        while (self._inbox or self._draining) and time.monotonic() < deadline:
            yield task.deferLater(reactor, 0.02, lambda: None)
        if self._inbox:
            log.msg(LOG_PREFIX + "%d queue messages not turned into events at stop" % len(self._inbox))
            self._inbox.clear()
        self._emit("master.stopped", "masters/" + self.master_name, "master/" + self.master_name,
                   {"name": self.master_name})
        try:
            yield self.master.db.state.setState(self._state_objectid, "seq_next", self._seq)
        except Exception:
            log.err(None, LOG_PREFIX + "could not store seq")
        for lc in self._loops:
            if lc.running:
                lc.stop()
        self._loops = []
        left = yield threads.deferToThread(self.sink.flush, self.flush_timeout)
        self.sink.poll()
        if left:
            log.msg(LOG_PREFIX + "%d events still buffered after %.0fs at stop: dropped" % (left, self.flush_timeout))
        self._log_stats()
        yield super().stopService()

    # ------------------------------------------------------------------ intake

    def _on_message(self, key, msg):
        """The mq callback: O(1), never blocks, never raises."""
        if len(self._inbox) >= self.inbox_max:
            self.counters["inbox_dropped"] += 1
            self._note_drop()
            return
        self._inbox.append((key, msg))
        self._kick()

    def _kick(self):
        if not self._draining and self._drain_call is None:
            self._drain_call = self.master.reactor.callLater(0, self._start_drain)

    def _start_drain(self):
        self._drain_call = None
        if self._draining:
            return
        self._draining = True
        d = defer.ensureDeferred(self._drain())
        d.addErrback(log.err, LOG_PREFIX + "drain failed")

    async def _drain(self):
        try:
            n = 0
            while self._inbox:
                key, msg = self._inbox.popleft()
                try:
                    await self._handle(key, msg)
                except Exception:
                    self.counters["errors"] += 1
                    log.err(None, LOG_PREFIX + "while handling %r" % (key,))
                n += 1
                if n % DRAIN_SLICE == 0:
                    await task.deferLater(self.master.reactor, 0, lambda: None)
        finally:
            self._draining = False

    async def _handle(self, key, msg):
        kind, event = key[0], key[-1]
        if key is _FLUSH:
            self._flush_queued = False
            await self._flush_logs()
        elif kind == "logs":
            await self._on_log(event, msg)
        elif kind == "builds":
            if len(key) == 4:
                await self._on_properties(int(key[1]), msg)
            else:
                await self._on_build(event, msg)
        elif kind == "steps":
            await self._on_step(event, msg)
        elif kind == "buildrequests":
            await self._on_buildrequest(event, msg)
        elif kind == "buildsets":
            self.c_buildsets.put(msg["bsid"], self._buildset_entry(msg))
        elif kind == "changes":
            self._on_change(msg)
        elif kind == "workers":
            self._on_worker(event, msg)
        elif kind == "masters":
            self._on_master(event, msg)
        elif kind == "builders":
            if msg and msg.get("name"):
                self.c_builders.put(msg["builderid"], msg["name"])
        elif kind == "test_result_sets":
            await self._tests.on_completed(msg)

    # ------------------------------------------------------------------ emit

    def _next_seq(self):
        seq = self._seq
        self._seq += 1
        if (not self._seq_reserving and self._state_objectid is not None
                and self._seq >= self._seq_reserved - SEQ_BLOCK // 2):
            self._seq_reserving = True
            new = self._seq_reserved + SEQ_BLOCK
            d = self.master.db.state.setState(self._state_objectid, "seq_next", new)

            def done(_):
                self._seq_reserved = new
                self._seq_reserving = False

            def failed(f):
                self._seq_reserving = False
                log.err(f, LOG_PREFIX + "could not reserve seq block")

            d.addCallbacks(done, failed)
        return seq

    def _emit(self, etype, subject, key, data):
        if not self._types.match(etype):
            self.counters["filtered"] += 1
            return
        builder = data.get("builder")
        if builder is not None and not self._builders.match(builder):
            self.counters["filtered"] += 1
            return
        seq = self._next_seq()
        env = {"specversion": "1.0", "id": "%s-%d" % (self.master_name, seq), "source": self._source,
               "type": etype, "time": ev.rfc3339_ms(time.time()), "subject": subject,
               "datacontenttype": "application/json", "master": self.master_name, "seq": seq,
               "data": data}
        # "replace": a lone surrogate in a log line must not cost the event.
        payload = json.dumps(env, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8", "replace")
        # Bulk types go to the logs topic (docs/events.md, "Topics and keys").
        topic = self.topic_logs if etype.startswith("log.") or etype == "test.results" else self.topic_events
        self.counters["emitted"] += 1
        if not self.sink.send(topic, key.encode("utf-8"), payload):
            self._note_drop()

    def _note_drop(self):
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:
            self._last_drop_log = now
            total = self.sink.dropped + self.counters["inbox_dropped"]
            log.msg(LOG_PREFIX + "dropping events: Kafka buffer full (%d/%d events) or unreachable; "
                    "dropped=%d so far (+%d in the last 10 s); last Kafka error: %s"
                    % (self.sink.buffered(), self.sink.cap, total, total - self._dropped_logged,
                       self.sink.last_error))
            self._dropped_logged = total

    def _poll(self):
        before = self.sink.dropped_failed
        self.sink.poll()
        if self.sink.dropped_failed != before:
            self._note_drop()

    def stats(self):
        s = self.sink
        out = {"buffered": s.buffered(), "cap": s.cap, "queued": s.queued, "delivered": s.delivered,
               "dropped": s.dropped + self.counters["inbox_dropped"], "dropped_full": s.dropped_full,
               "dropped_failed": s.dropped_failed, "dropped_error": s.dropped_error,
               "inbox": len(self._inbox), "open_logs": len(self._open_logs), "seq": self._seq}
        out.update(self.counters)
        out["cache_misses"] = sum(c.misses for c in self.caches())
        out["cache_hits"] = sum(c.hits for c in self.caches())
        out["cache_evictions"] = sum(c.evictions for c in self.caches())
        return out

    def _log_stats(self):
        st = self.stats()
        per = " ".join("%s=%d/%d/%d" % (c.name, len(c), c.misses, c.evictions) for c in self.caches())
        log.msg(LOG_PREFIX + "stats " + " ".join("%s=%s" % kv for kv in st.items())
                + " | caches size/misses/evictions: " + per)

    # ------------------------------------------------------------------ context

    async def _get(self, path):
        self.counters["queries"] += 1
        return await self.master.data.get(tuple(str(p) for p in path))

    async def _builder_name(self, builderid):
        name = self.c_builders.get(builderid)
        if name is None:
            b = await self._get(("builders", builderid))
            name = b["name"] if b else "builder-%d" % builderid
            self.c_builders.put(builderid, name)
        return name

    async def _worker_name(self, workerid):
        if workerid is None:
            return "unknown"
        name = self.c_workers.get(workerid)
        if name is None:
            w = await self._get(("workers", workerid))
            name = w["name"] if w else "worker-%d" % workerid
            self.c_workers.put(workerid, name)
        return name

    async def _master_name_of(self, masterid):
        if masterid is None:
            return None
        if masterid == getattr(self.master, "masterid", None):
            return self.master_name
        name = self.c_masters.get(masterid)
        if name is None:
            m = await self._get(("masters", masterid))
            name = m["name"] if m else "master-%d" % masterid
            self.c_masters.put(masterid, name)
        return name

    @staticmethod
    def _buildset_entry(msg):
        sss = msg.get("sourcestamps") or []
        return {"source": ev.source_fields(ev.first_sourcestamp(sss)),
                "ssids": [ss.get("ssid") for ss in sss if ss.get("ssid")],
                "reason": ev.s(msg.get("reason")), "owner": None}

    async def _buildset(self, bsid):
        bs = self.c_buildsets.get(bsid)
        if bs is None:
            m = await self._get(("buildsets", bsid))
            bs = self.c_buildsets.put(bsid, self._buildset_entry(m or {}))
        if bs["owner"] is None:
            # One properties query per buildset (not per event): Buildbot's queue does not carry them.
            props = await self._get(("buildsets", bsid, "properties"))
            owner = ev.owner_from_properties(props)
            if not owner:
                for ssid in bs["ssids"]:
                    author = self.c_ss_author.get(ssid)
                    if author is None:
                        changes = await self._get(("sourcestamps", ssid, "changes"))
                        author = self.c_ss_author.put(ssid, (changes[-1].get("author") or "") if changes else "")
                    owner = ev.owner_from_author(author)
                    if owner:
                        break
            bs["owner"] = owner
        return bs

    async def _br(self, brid, msg=None):
        br = self.c_brs.peek(brid) if msg is not None else self.c_brs.get(brid)
        if br is None:
            if msg is None:
                msg = await self._get(("buildrequests", brid))
                if msg is None:
                    return None
            br = self.c_brs.put(brid, {"bsid": msg["buildsetid"], "builderid": msg["builderid"],
                                       "buildid": None, "new": False, "ctx": None})
        if br["ctx"] is None:
            bs = await self._buildset(br["bsid"])
            ctx = {"buildrequestid": brid, "builder": await self._builder_name(br["builderid"]),
                   "builderid": br["builderid"]}
            ctx.update(bs["source"])
            ctx["owner"] = bs["owner"]
            br["ctx"] = ctx
        return br

    async def _build(self, buildid, msg=None):
        b = self.c_builds.peek(buildid) if msg is not None else self.c_builds.get(buildid)
        if b is None:
            if msg is None:
                msg = await self._get(("builds", buildid))
                if msg is None:
                    return None
            b = self.c_builds.put(buildid, {
                "buildid": buildid, "brid": msg["buildrequestid"], "number": msg["number"],
                "workerid": msg.get("workerid"), "started_at": ev.epoch(msg.get("started_at")),
                "started": False, "finished": False, "state": None, "ctx": None})
        if b["ctx"] is None:
            br = await self._br(b["brid"])
            br["buildid"] = buildid
            b["ctx"] = ev.with_buildid(br["ctx"], buildid)
        return b

    async def _step(self, stepid, msg=None):
        st = self.c_steps.peek(stepid) if msg is not None else self.c_steps.get(stepid)
        if st is None:
            if msg is None:
                msg = await self._get(("steps", stepid))
                if msg is None:
                    return None
            st = self.c_steps.put(stepid, {"stepid": stepid, "buildid": msg["buildid"], "number": msg["number"],
                                           "name": msg["name"], "started_at": ev.epoch(msg.get("started_at")),
                                           "started": False, "finished": False})
        elif msg is not None and st["started_at"] is None:
            st["started_at"] = ev.epoch(msg.get("started_at"))
        return st

    # ------------------------------------------------------------------ build requests

    async def _ensure_br_new(self, brid, br, msg):
        if br["new"]:
            return
        br["new"] = True
        if msg is None:
            msg = await self._get(("buildrequests", brid)) or {}
        bs = await self._buildset(br["bsid"])
        data = ev.with_buildid(br["ctx"], br["buildid"])
        data.update({"buildsetid": br["bsid"], "priority": int(msg.get("priority") or 0),
                     "submitted_at": ev.epoch(msg.get("submitted_at")) or time.time(),
                     "reason": bs["reason"]})
        self._emit("buildrequest.new", "buildrequests/%d" % brid, "buildrequest/%d" % brid, data)

    async def _on_buildrequest(self, event, msg):
        if event not in ("new", "claimed", "unclaimed", "complete") or not msg:
            return
        brid = msg["buildrequestid"]
        br = await self._br(brid, msg)
        await self._ensure_br_new(brid, br, msg)
        if event == "new":
            return
        data = ev.with_buildid(br["ctx"], br["buildid"])
        if event == "claimed":
            data["claimed_at"] = ev.epoch(msg.get("claimed_at")) or time.time()
            data["claimed_by_master"] = await self._master_name_of(msg.get("claimed_by_masterid")) or "unknown"
        elif event == "unclaimed":
            data["claimed_at"] = ev.epoch(msg.get("claimed_at"))
            data["claimed_by_master"] = await self._master_name_of(msg.get("claimed_by_masterid"))
        else:
            data["complete_at"] = ev.epoch(msg.get("complete_at")) or time.time()
            results = msg.get("results")
            data["results"] = int(results) if results is not None else 4
        self._emit("buildrequest." + event, "buildrequests/%d" % brid, "buildrequest/%d" % brid, data)

    # ------------------------------------------------------------------ builds, steps, properties

    async def _ensure_build_started(self, b):
        if b["started"]:
            return
        b["started"] = True
        data = dict(b["ctx"])
        data.update({"number": b["number"], "worker": await self._worker_name(b["workerid"]),
                     "started_at": b["started_at"] or time.time()})
        self._emit("build.started", "builds/%d" % b["buildid"], "buildrequest/%d" % b["brid"], data)

    async def _on_build(self, event, msg):
        if event not in ("new", "update", "finished") or not msg:
            return
        b = await self._build(msg["buildid"], msg)
        await self._ensure_build_started(b)
        if event == "new" or b["finished"]:
            return
        subject, key = "builds/%d" % b["buildid"], "buildrequest/%d" % b["brid"]
        state = ev.s(msg.get("state_string"))
        if event == "update":
            if state != b["state"]:
                b["state"] = state
                data = dict(b["ctx"])
                data["state_string"] = state
                self._emit("build.updated", subject, key, data)
            return
        await self._settle_logs(lambda lg: lg["buildid"] == b["buildid"])
        b["finished"] = True
        complete_at = ev.epoch(msg.get("complete_at")) or time.time()
        results = msg.get("results")
        data = dict(b["ctx"])
        data.update({"number": b["number"], "complete_at": complete_at,
                     "results": int(results) if results is not None else 4, "state_string": state,
                     "duration_s": ev.duration(b["started_at"], complete_at)})
        self._emit("build.finished", subject, key, data)

    async def _ensure_step_started(self, b, st):
        if st["started"]:
            return
        st["started"] = True
        data = dict(b["ctx"])
        data.update({"stepid": st["stepid"], "number": st["number"], "name": st["name"],
                     "started_at": st["started_at"] or time.time()})
        self._emit("step.started", "builds/%d/steps/%d" % (b["buildid"], st["number"]),
                   "buildrequest/%d" % b["brid"], data)

    async def _on_step(self, event, msg):
        if event not in ("started", "finished") or not msg:
            if event == "new" and msg:
                await self._step(msg["stepid"], msg)
            return
        st = await self._step(msg["stepid"], msg)
        if st["finished"]:
            return
        b = await self._build(st["buildid"])
        await self._ensure_build_started(b)
        await self._ensure_step_started(b, st)
        if event == "started":
            return
        await self._settle_logs(lambda lg: lg["stepid"] == st["stepid"])
        st["finished"] = True
        complete_at = ev.epoch(msg.get("complete_at")) or time.time()
        results = msg.get("results")
        data = dict(b["ctx"])
        data.update({"stepid": st["stepid"], "number": st["number"], "name": st["name"],
                     "complete_at": complete_at, "results": int(results) if results is not None else 4,
                     "state_string": ev.s(msg.get("state_string")),
                     "duration_s": ev.duration(st["started_at"], complete_at),
                     "urls": [{"name": ev.s(u.get("name")), "url": ev.s(u.get("url"))}
                              for u in (msg.get("urls") or [])],
                     "hidden": bool(msg.get("hidden"))})
        self._emit("step.finished", "builds/%d/steps/%d" % (b["buildid"], st["number"]),
                   "buildrequest/%d" % b["brid"], data)

    async def _on_properties(self, buildid, msg):
        if not msg:
            return
        b = await self._build(buildid)
        if b is None:
            return
        await self._ensure_build_started(b)
        props = {}
        for name, pv in msg.items():
            try:
                value, source = pv
            except (TypeError, ValueError):
                value, source = pv, ""
            props[str(name)] = [value, ev.s(source)]
        if not props:
            return
        data = dict(b["ctx"])
        data["properties"] = props
        self._emit("property.set", "builds/%d" % buildid, "buildrequest/%d" % b["brid"], data)

    # ------------------------------------------------------------------ logs

    async def _on_log(self, event, msg):
        if not msg or event not in ("new", "append", "finished"):
            return
        logid = msg["logid"]
        if logid in self.c_done_logs:
            return
        lg = self._open_logs.get(logid)
        if lg is None:
            st = await self._step(msg["stepid"])
            b = await self._build(st["buildid"]) if st else None
            if b is None:
                return
            await self._ensure_build_started(b)
            await self._ensure_step_started(b, st)
            lg = {"logid": logid, "stepid": st["stepid"], "buildid": b["buildid"], "brid": b["brid"],
                  "number": st["number"], "name": ev.s(msg.get("name")), "slug": ev.s(msg.get("slug")),
                  "type": msg.get("type") or "t", "next": 0, "target": 0, "ctx": b["ctx"]}
            self._open_logs[logid] = lg
            while len(self._open_logs) > self.max_open_logs:
                old_id, _ = self._open_logs.popitem(last=False)
                self._dirty.pop(old_id, None)
                self.c_done_logs.put(old_id, True)     # its later messages are ignored, not restarted
                self.counters["logs_evicted"] += 1
            self._emit_log("log.new", lg, {"name": lg["name"], "slug": lg["slug"], "type": lg["type"],
                                           "num_lines": 0})
        num_lines = int(msg.get("num_lines") or 0)
        if num_lines > lg["target"]:
            lg["target"] = num_lines
        if event == "finished":
            await self._read_log(lg)
            self._finish_log(lg, num_lines)
        elif lg["next"] < lg["target"]:
            self._dirty[logid] = lg
            if self._flush_call is None:
                self._flush_call = self.master.reactor.callLater(self.log_flush_interval, self._enqueue_flush)

    def _emit_log(self, etype, lg, fields):
        data = dict(lg["ctx"])
        data["logid"] = lg["logid"]
        data["stepid"] = lg["stepid"]
        data.update(fields)
        self._emit(etype, "builds/%d/steps/%d/logs/%s" % (lg["buildid"], lg["number"], lg["slug"]),
                   "buildrequest/%d" % lg["brid"], data)

    def _enqueue_flush(self):
        self._flush_call = None
        if not self._flush_queued:
            self._flush_queued = True
            self._inbox.append((_FLUSH, None))   # always accepted: one marker at most
            self._kick()

    async def _flush_logs(self):
        for lg in list(self._dirty.values()):
            if lg["logid"] in self._open_logs:
                await self._read_log(lg)
        self._dirty = OrderedDict((k, v) for k, v in self._dirty.items() if v["next"] < v["target"])

    async def _read_log(self, lg):
        """Read lines [next, target) in batches and emit them as log.chunk events."""
        self._dirty.pop(lg["logid"], None)
        if not self.log_content:
            lg["next"] = max(lg["next"], lg["target"])
            return
        while lg["next"] < lg["target"]:
            first = lg["next"]
            last = min(lg["target"], first + self.log_read_max_lines) - 1
            text = await self._log_lines(lg["logid"], first, last)
            self.counters["log_reads"] += 1
            pieces, n, truncated = ev.split_lines(text or "")
            if n == 0:
                break
            self.counters["log_lines"] += n
            self.counters["lines_truncated"] += truncated
            for off, content in pieces:
                self._emit_log("log.chunk", lg, {"firstline": first + off, "content": content})
            lg["next"] = first + n

    def _log_lines(self, logid, first, last):
        """Lines first..last (inclusive) of a log, each ending in '\\n'; a Deferred.

        Fast path: one query for the chunk rows, decompressed and split in the DB thread, so the
        reactor thread only gets the finished string (Buildbot 4's getLogLines hands every line
        across threads one by one).  Falls back to db.logs.getLogLines where the DB layout or the
        compressor registry is not the one this code knows."""
        logs = self.master.db.logs
        reader = _chunk_reader(logs)
        if reader is None or not self._fast_logs:
            return defer.ensureDeferred(_as_coro(logs.getLogLines(logid, first, last)))
        tbl = self.master.db.model.logchunks

        def thd(conn):
            import sqlalchemy as sa
            q = (sa.select(tbl.c.first_line, tbl.c.last_line, tbl.c.content, tbl.c.compressed)
                 .where(tbl.c.logid == logid).where(tbl.c.last_line >= first).where(tbl.c.first_line <= last)
                 .order_by(tbl.c.first_line))
            out = []
            for row in conn.execute(q).fetchall():
                data = reader(row.compressed, row.content)
                if isinstance(data, bytes):
                    data = data.decode("utf-8", errors="replace")
                # Buildbot strips the chunk's last line ending on insert.
                lines = data.split("\n")[:row.last_line - row.first_line + 1]
                lo = max(first, row.first_line) - row.first_line
                hi = min(last, row.last_line) - row.first_line + 1
                out.extend(ln + "\n" for ln in lines[lo:hi])
            return "".join(out)

        d = self.master.db.pool.do(thd)

        def fallback(f):
            log.err(f, LOG_PREFIX + "fast log read failed; using db.logs.getLogLines from now on")
            self._fast_logs = False
            return defer.ensureDeferred(_as_coro(logs.getLogLines(logid, first, last)))

        return d.addErrback(fallback)

    def _finish_log(self, lg, num_lines):
        self._open_logs.pop(lg["logid"], None)
        self._dirty.pop(lg["logid"], None)
        self.c_done_logs.put(lg["logid"], True)
        self._emit_log("log.finished", lg, {"name": lg["name"], "slug": lg["slug"], "type": lg["type"],
                                            "num_lines": max(num_lines, lg["next"])})

    async def _settle_logs(self, pred):
        """Before a step or build finishes: logs of it still open (their own 'finished' message
        not seen yet, the queue reorders) are read to their end and finished if the DB says so."""
        for lg in [lg for lg in self._open_logs.values() if pred(lg)]:
            row = await self._get(("logs", lg["logid"]))
            if row is None:
                continue
            lg["target"] = max(lg["target"], int(row.get("num_lines") or 0))
            await self._read_log(lg)
            if row.get("complete"):
                self._finish_log(lg, int(row.get("num_lines") or 0))

    # ------------------------------------------------------------------ not build-scoped

    def _on_change(self, msg):
        if not msg:
            return
        ss = msg.get("sourcestamp") or {}
        if ss.get("ssid"):
            self.c_ss_author.put(ss["ssid"], ev.s(msg.get("author")))
        cid = msg["changeid"]
        category = msg.get("category")
        data = {"changeid": cid, "author": ev.s(msg.get("author")), "comments": ev.s(msg.get("comments")),
                "files": [ev.s(f) for f in (msg.get("files") or [])],
                "when": ev.epoch(msg.get("when_timestamp")) or 0.0,
                "category": None if category is None else str(category), "revlink": ev.s(msg.get("revlink"))}
        data.update(ev.source_fields(msg))
        self._emit("change.new", "changes/%d" % cid, "change/%d" % cid, data)

    def _on_worker(self, event, msg):
        if not msg or not msg.get("workerid"):
            return
        wid = msg["workerid"]
        if msg.get("name"):
            self.c_workers.put(wid, msg["name"])
        if event in ("connected", "disconnected"):
            self._emit("worker." + event, "workers/%d" % wid, "worker/%d" % wid,
                       {"workerid": wid, "name": ev.s(msg.get("name")) or "worker-%d" % wid})

    def _on_master(self, event, msg):
        if not msg:
            return
        mid = msg.get("masterid")
        if mid is not None and mid != getattr(self.master, "masterid", None):
            if msg.get("name"):
                self.c_masters.put(mid, msg["name"])
            return   # other masters emit their own master.* events
        if event == "started" and not self._master_started_sent:
            self._master_started_sent = True
            self._emit("master.started", "masters/" + self.master_name, "master/" + self.master_name,
                       {"name": self.master_name})
