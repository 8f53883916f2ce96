"""Shared pytest fixtures for the integration tests: paths, and one real Kafka per session.

Kafka comes from tests/kafka/kafka.sh (Apache Kafka 3.9 KRaft on loopback), started once per
session in a temporary directory and stopped at the end (FIREHOSE_TEST_KEEP_KAFKA=1 keeps the
directory). KafkaCluster is a three-node cluster of the same, for the tests that stop a node.  FIREHOSE_TEST_BOOTSTRAP=HOST:PORT uses an already running Kafka instead; topics are
then created with Kafka's TopicCommand if tests/kafka/lib is present, else assumed to exist
(or auto-created by the broker).
"""

import atexit
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = ROOT / "bin"
KAFKA_SH = ROOT / "tests" / "kafka" / "kafka.sh"

# Brokers the tests start without naming a webhooks file share one of this session, not the
# working tree's var/webhooks.db: that file records the Kafka cluster it belongs to, and every
# session starts a new cluster.
if "FIREHOSE_WEBHOOKS_PATH" not in os.environ:
    _WEBHOOKS_DIR = tempfile.mkdtemp(prefix="firehose-test-webhooks-")
    os.environ["FIREHOSE_WEBHOOKS_PATH"] = os.path.join(_WEBHOOKS_DIR, "webhooks.db")
    atexit.register(shutil.rmtree, _WEBHOOKS_DIR, True)

# gen_events lives beside this file; make it importable as a plain module from the tests.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def wait_for(predicate, timeout, interval=0.1, what="condition"):
    """Poll predicate() until it returns a truthy value or timeout (s) passes; returns the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def thread_stacks(pid):
    """Every thread's stack of a hung process (gdb, bounded), for a failure message; '' when gdb
    is not there."""
    if not shutil.which("gdb"):
        return ""
    try:
        r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt"],
                           capture_output=True, text=True, timeout=60)
    except (subprocess.TimeoutExpired, OSError) as e:
        return "gdb: %s" % e
    return r.stdout[-20000:]


class Kafka:
    """A running Kafka: .bootstrap is HOST:PORT; create_topics({"name": partitions, ...})."""

    def __init__(self, bootstrap, state_dir=None):
        self.bootstrap = bootstrap
        self.state_dir = state_dir

    def create_topics(self, topics):
        specs = ["%s:%d" % (name, parts) for name, parts in topics.items()]
        if not specs:
            return
        if self.state_dir is not None:
            subprocess.run([str(KAFKA_SH), "create-topics", str(self.state_dir)] + specs,
                           check=True, timeout=180, stdout=subprocess.DEVNULL)
            return
        # External Kafka: use TopicCommand directly against the bootstrap if the jars are here.
        lib = ROOT / "tests" / "kafka" / "lib"
        if not lib.is_dir():
            return
        for name, parts in topics.items():
            subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1",
                            "-Dlog4j.configuration=file:%s" % (ROOT / "tests" / "kafka" / "tools-log4j.properties"),
                            "-cp", str(lib / "*"), "org.apache.kafka.tools.TopicCommand",
                            "--bootstrap-server", self.bootstrap, "--create", "--if-not-exists",
                            "--topic", name, "--partitions", str(parts), "--replication-factor", "1"],
                           check=True, timeout=120, stdout=subprocess.DEVNULL)

    def __repr__(self):
        return "Kafka(%r)" % self.bootstrap


class KafkaCluster(Kafka):
    """Three (or n) KRaft nodes on loopback from `kafka.sh start-cluster`: replication 3,
    min.insync.replicas 2. Nodes are numbered from 1; kill() and restart() act on one of them."""

    def __init__(self, state_dir, n=3):
        self.n = n
        env = dict(os.environ, KAFKA_WATCH_PID=str(os.getpid()))
        t0 = time.monotonic()
        proc = subprocess.run([str(KAFKA_SH), "start-cluster", str(state_dir), str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=300, env=env)
        if proc.returncode != 0:
            self.destroy(state_dir)
            pytest.fail("kafka.sh start-cluster failed (%d):\n%s" % (proc.returncode, proc.stderr[-4000:]))
        super().__init__(proc.stdout.strip().splitlines()[-1], state_dir)
        self.started_in = time.monotonic() - t0

    def node_dir(self, k):
        return pathlib.Path(self.state_dir) / ("node%d" % k)

    def create_topics(self, topics, leader=None):
        """As Kafka.create_topics; leader: the node every partition prefers as its leader."""
        specs = ["%s:%d%s" % (name, parts, "@%d" % leader if leader else "") for name, parts in topics.items()]
        subprocess.run([str(KAFKA_SH), "create-topics", str(self.state_dir)] + specs, check=True, timeout=180,
                       stdout=subprocess.DEVNULL)

    def kill(self, k):
        """SIGKILL node k (no controlled shutdown: its partitions move once it is fenced)."""
        pid = int((self.node_dir(k) / "pid").read_text())
        os.kill(pid, 9)
        wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                 open("/proc/%d/stat" % pid).read().split()[2] == "Z", 30, what="node %d to die" % k)

    def restart(self, k):
        env = dict(os.environ, KAFKA_WATCH_PID=str(os.getpid()))
        subprocess.run([str(KAFKA_SH), "start", str(self.node_dir(k))], check=True, timeout=180,
                       stdout=subprocess.DEVNULL, env=env)

    def elect_preferred_leaders(self):
        subprocess.run([str(KAFKA_SH), "elect-leaders", str(self.state_dir)], check=True, timeout=120,
                       stdout=subprocess.DEVNULL)

    def partitions(self, topic):
        """{partition: (leader, isr list)} from the metadata of any live node; {} if none answers."""
        r = subprocess.run(["kcat", "-L", "-J", "-b", self.bootstrap, "-t", topic, "-m", "3"],
                           capture_output=True, timeout=30)
        try:
            md = json.loads(r.stdout)
        except ValueError:
            return {}
        out = {}
        for t in md.get("topics", []):
            if t.get("topic") == topic and not t.get("error"):
                for p in t.get("partitions", []):
                    if not p.get("error"):
                        out[p["partition"]] = (p.get("leader", -1), sorted(r["id"] for r in p.get("isrs", [])))
        return out

    def destroy(self, state_dir=None):
        """Stops every node without waiting for controlled shutdowns and deletes the state."""
        state_dir = state_dir or self.state_dir
        subprocess.run([str(KAFKA_SH), "stop", str(state_dir), "--purge"], timeout=120,
                       env=dict(os.environ, KAFKA_STOP_TIMEOUT="2"), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def bin_dir():
    return BIN


@pytest.fixture(scope="session")
def kafka():
    external = os.environ.get("FIREHOSE_TEST_BOOTSTRAP")
    if external:
        yield Kafka(external)
        return
    state = pathlib.Path(tempfile.mkdtemp(prefix="firehose-kafka-"))
    t0 = time.monotonic()
    # KAFKA_WATCH_PID: the broker stops by itself if this pytest process dies without cleaning up.
    env = dict(os.environ, KAFKA_WATCH_PID=str(os.getpid()))
    proc = subprocess.run([str(KAFKA_SH), "start", str(state)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        subprocess.run([str(KAFKA_SH), "stop", str(state)], timeout=120)
        pytest.fail("kafka.sh start failed (%d):\n%s" % (proc.returncode, proc.stderr[-4000:]))
    bootstrap = proc.stdout.strip().splitlines()[-1]
    sys.stderr.write("\n[kafka] %s up in %.1fs (state in %s)\n" % (bootstrap, time.monotonic() - t0, state))
    try:
        yield Kafka(bootstrap, state)
    finally:
        keep = os.environ.get("FIREHOSE_TEST_KEEP_KAFKA")
        # The state is deleted next unless kept, so a controlled shutdown (flushing every test's
        # topics; ~45 s at the end of a full run) buys nothing: SIGKILL after 2 s.
        env = os.environ if keep else dict(os.environ, KAFKA_STOP_TIMEOUT="2")
        t0 = time.monotonic()
        subprocess.run([str(KAFKA_SH), "stop", str(state)], timeout=120, env=env)
        sys.stderr.write("\n[kafka] stopped in %.1fs\n" % (time.monotonic() - t0))
        if keep:
            sys.stderr.write("[kafka] state kept in %s\n" % state)
        else:
            shutil.rmtree(state, ignore_errors=True)
