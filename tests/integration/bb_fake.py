"""A fake Buildbot master for driving FirehoseService in-process: no Buildbot process, no Kafka
(unless a real sink is given).  Used by test_buildbot_fake_master.py and test_vectors.py.

make_service() starts the service on a FakeMaster whose reactor is a twisted Clock; feed()
delivers one queue message to the consumers whose routing-key filter matches, as Buildbot's mq
does, and lets the reactor run what is due now.
"""

import json
import pathlib
import sys

from twisted.internet import defer
from twisted.internet import task

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT / "producers" / "buildbot") not in sys.path:
    sys.path.insert(0, str(ROOT / "producers" / "buildbot"))

from firehose_buildbot import service as svcmod  # noqa: E402


class FakeSink:
    """KafkaSink's interface in memory: sent holds (topic, key, decoded event), raw the bytes."""

    def __init__(self, cap=1000):
        self.cap = cap
        self.sent = []
        self.raw = []
        self.dropped_full = self.dropped_failed = self.dropped_error = 0
        self.queued = self.delivered = 0
        self.last_error = None
        self.conf = {}

    dropped = property(lambda s: s.dropped_full + s.dropped_failed + s.dropped_error)

    def buffered(self):
        return len(self.sent)

    def send(self, topic, key, value):
        if len(self.sent) >= self.cap:
            self.dropped_full += 1
            return False
        self.sent.append((topic, key.decode(), json.loads(value)))
        self.raw.append((topic, key, value))
        self.queued += 1
        return True

    def poll(self):
        return 0

    def flush(self, timeout):
        return 0


class FakeMQ:
    def __init__(self):
        self.consumers = []

    def startConsuming(self, cb, f):
        self.consumers.append((cb, f))

        class Q:
            def stopConsuming(q):
                return None
        return defer.succeed(Q())


class FakeData:
    def __init__(self):
        self.store = {}
        self.gets = []

    def get(self, path, limit=None, offset=None):
        self.gets.append(path)
        rows = self.store.get(path)
        if isinstance(rows, list) and (limit is not None or offset):   # a page, as Buildbot's SQL cuts it
            rows = rows[offset or 0:][:limit]
        return defer.succeed(rows)


class FakeState:
    def __init__(self):
        self.values = {}

    def getObjectId(self, name, cls):
        return defer.succeed(7)

    def getState(self, oid, key, default=None):
        return defer.succeed(self.values.get(key, default))

    def setState(self, oid, key, value):
        self.values[key] = value
        return defer.succeed(None)


class FakeLogs:
    def __init__(self):
        self.lines = {}
        self.reads = 0

    def getLogLines(self, logid, first, last):
        self.reads += 1
        return defer.succeed("".join(self.lines.get(logid, [])[first:last + 1]))


class FakeDB:
    def __init__(self):
        self.state = FakeState()
        self.logs = FakeLogs()


class FakeMaster:
    name = "host:/srv/master"
    masterid = 1

    @property
    def master(self):
        return self

    def __init__(self):
        self.reactor = task.Clock()
        self.mq = FakeMQ()
        self.data = FakeData()
        self.db = FakeDB()


def make_service(sink=None, seq=None, **kw):
    """A started FirehoseService on a FakeMaster.  sink(conf) makes its sink (default: a FakeSink);
    seq is the seq_next the master's state holds (default: none stored yet)."""
    master = FakeMaster()
    if seq is not None:
        master.db.state.values["seq_next"] = seq
    opts = dict(brokers="127.0.0.1:1", master_name="m1", stats_interval=0, log_flush_interval=1.0)
    opts.update(kw)
    svc = svcmod.FirehoseService(**opts)
    svc.parent = master      # BuildbotService.master walks up to parent.master
    orig = svcmod.KafkaSink
    svcmod.KafkaSink = lambda conf, logger: (sink or (lambda c: FakeSink()))(conf)
    try:
        d = defer.ensureDeferred(_start(svc))
        master.reactor.advance(0)
        assert d.called
        d.result if not hasattr(d.result, "raiseException") else d.result.raiseException()
    finally:
        svcmod.KafkaSink = orig
    return svc, master


async def _start(svc):
    await svc.startService()


def feed(svc, master, key, msg):
    for cb, f in master.mq.consumers:
        if len(f) == len(key) and all(a is None or a == b for a, b in zip(f, key)):
            cb(key, msg)
    master.reactor.advance(0)


def stop_service(svc, master):
    """Stops the service as the master would, the reactor clock moving on while it waits; its
    final Kafka flush runs inline (the service runs it in a pool thread). Returns the Deferred."""
    d = defer.ensureDeferred(_stop(svc))
    for _ in range(300):
        if d.called:
            break
        master.reactor.advance(0.05)
    return d


async def _stop(svc):
    orig = svcmod.threads.deferToThread
    svcmod.threads.deferToThread = lambda f, *a: defer.succeed(f(*a))
    try:
        await svc.stopService()
    finally:
        svcmod.threads.deferToThread = orig
