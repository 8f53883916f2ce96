"""A real Buildbot master with the firehose integration, and a real worker, as processes.

Used by tests/integration/test_buildbot.py and bench/buildbot.sh.  Everything listens on
127.0.0.1; the master has a sqlite DB in its directory and no web UI.  Waits are bounded.
"""

import os
import pathlib
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRODUCER_DIR = ROOT / "producers" / "buildbot"
PY = sys.executable
BIN_DIR = pathlib.Path(PY).parent
BIG_LINES = 3000          # stdout lines of the "big" step
BIG_ERR_EVERY = 250       # one stderr line after every 250 stdout lines
REVISION = "3f9c2a7e5b1d4c8f9a0e6b2d7c1f4a8e9b3d5c70"
REPO = "https://git.example.org/firehose.git"
AUTHOR = "Alice <alice@example.org>"


class HarnessError(Exception):
    pass


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


def _tool(name):
    p = BIN_DIR / name
    if p.exists():
        return str(p)
    w = shutil.which(name)
    if not w:
        raise HarnessError("%s not found (make deps installs buildbot and buildbot-worker)" % name)
    return w


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BASE_CFG = textwrap.dedent('''\
    from buildbot.plugins import changes, schedulers, steps, util, worker

    PY = {py!r}
    c = BuildmasterConfig = {{}}
    c["buildbotNetUsageData"] = None
    c["title"] = "firehose test"
    c["db"] = {{"db_url": "sqlite:///state.sqlite"}}
    c["protocols"] = {{"pb": {{"port": "tcp:{pb_port}:interface=127.0.0.1"}}}}
    c["workers"] = [worker.Worker("w1", "w1pass")]
    c["change_source"] = [changes.PBChangeSource(user="change", passwd="changepw")]
    FIREHOSE = {firehose!r}
    if FIREHOSE is not None:
        from firehose_buildbot import FirehoseService
        c["services"] = [FirehoseService(**FIREHOSE)]
''')

# Two builders on one change: "pass" prints BIG_LINES stdout lines (a stderr line among them
# every BIG_ERR_EVERY) and sets properties; "fail" fails in its second step.
TEST_BODY = textwrap.dedent('''\
    c["schedulers"] = [schedulers.SingleBranchScheduler(
        name="trunk", change_filter=util.ChangeFilter(branch="trunk"), treeStableTimer=None,
        builderNames=["pass", "fail"])]
    BIG = ("import sys\\n"
           "for i in range({big_lines}):\\n"
           "    sys.stdout.write('line %05d of the big step\\\\n' % i)\\n"
           "    if i % {err_every} == {err_every} - 1:\\n"
           "        sys.stdout.flush(); sys.stderr.write('progress %d\\\\n' % i); sys.stderr.flush()\\n")
    fp = util.BuildFactory()
    fp.addStep(steps.ShellCommand(name="big", command=[PY, "-c", BIG]))
    fp.addStep(steps.SetPropertyFromCommand(name="answer", command=[PY, "-c", "print(42)"],
                                            property="fh_answer"))
    fp.addStep(steps.SetProperty(name="color", property="color", value="blue"))
    fp.addStep(steps.ShellCommand(name="short", command=[PY, "-c", "print('ok')"]))
    ff = util.BuildFactory()
    ff.addStep(steps.ShellCommand(name="before", command=[PY, "-c", "print('about to fail')"]))
    ff.addStep(steps.ShellCommand(name="boom", command=[PY, "-c",
               "import sys; print('failing', file=sys.stderr); sys.exit(3)"]))
    c["builders"] = [util.BuilderConfig(name="pass", workernames=["w1"], factory=fp),
                     util.BuilderConfig(name="fail", workernames=["w1"], factory=ff)]
''').format(big_lines=BIG_LINES, err_every=BIG_ERR_EVERY)


# One builder whose "unittests" step records a test result set through Buildbot's own step API
# (addTestResultSet / addTestResult): TEST_RESULTS results, every tenth a failure, then
# "test_flaky" failed and passed again (a retried test, recorded twice).
TEST_RESULTS = 1200
TESTS_BODY = textwrap.dedent('''\
    from buildbot.process import buildstep
    from twisted.internet import defer

    class RecordTests(buildstep.BuildStep):
        @defer.inlineCallbacks
        def run(self):
            setid = yield self.addTestResultSet("unit tests", "pass_fail", "boolean")
            for i in range({n}):
                self.addTestResult(setid, "0" if i % 10 == 0 else "1", test_name="test_%04d" % i,
                                   test_code_path="tests/test_unit.py", line=i + 1,
                                   duration_ns=i * 1000000)
            self.addTestResult(setid, "0", test_name="test_flaky", duration_ns=5000000000)
            self.addTestResult(setid, "1", test_name="test_flaky", duration_ns=7000000000)
            return util.SUCCESS

    c["schedulers"] = [schedulers.SingleBranchScheduler(
        name="trunk", change_filter=util.ChangeFilter(branch="trunk"), treeStableTimer=None,
        builderNames=["tests"])]
    ft = util.BuildFactory()
    ft.addStep(RecordTests(name="unittests"))
    c["builders"] = [util.BuilderConfig(name="tests", workernames=["w1"], factory=ft)]
''').format(n=TEST_RESULTS)


class Deployment:
    """A Buildbot master (with the integration) and one worker, each its own process."""

    def __init__(self, tmp, firehose, body=TEST_BODY):
        self.tmp = tmp
        self.mdir = tmp / "master"
        self.wdir = tmp / "worker"
        self.pb_port = free_port()
        self.firehose = firehose
        self.body = body
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(PRODUCER_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.master = None
        self.worker = None

    def _run(self, args, timeout=120):
        p = subprocess.run(args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise HarnessError("%s failed (%d):\n%s" % (args[:3], p.returncode, p.stdout[-3000:]))
        return p.stdout

    def start(self):
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._run([_tool("buildbot"), "create-master", "-q", "--db", "sqlite:///state.sqlite", str(self.mdir)])
        (self.mdir / "master.cfg").write_text(
            BASE_CFG.format(py=PY, pb_port=self.pb_port, firehose=self.firehose) + self.body)
        self._run([_tool("buildbot"), "checkconfig", str(self.mdir)])
        self.master = subprocess.Popen([_tool("buildbot"), "start", "--nodaemon", str(self.mdir)], env=self.env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: "BuildMaster is running" in self.log() or self.master.poll() is not None, 60,
                 interval=0.2, what="the master to start")
        if self.master.poll() is not None:
            raise HarnessError("master exited:\n" + self.log()[-4000:])
        self._run([_tool("buildbot-worker"), "create-worker", "-q", str(self.wdir),
                   "127.0.0.1:%d" % self.pb_port, "w1", "w1pass"])
        self.worker = subprocess.Popen([_tool("buildbot-worker"), "start", "--nodaemon", str(self.wdir)],
                                       env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self._worker_attached(), 60, interval=0.2, what="the worker to attach")

    def _worker_attached(self):
        return self.db("SELECT count(*) FROM connected_workers")[0][0] > 0

    def log(self):
        p = self.mdir / "twistd.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def db(self, sql):
        con = sqlite3.connect("file:%s?mode=ro" % (self.mdir / "state.sqlite"), uri=True, timeout=5)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def finished_builds(self):
        return self.db("SELECT b.name, bu.results FROM builds bu JOIN builders b ON b.id = bu.builderid "
                       "WHERE bu.complete_at IS NOT NULL ORDER BY bu.id")

    def master_cpu_s(self, main_thread=False):
        """CPU seconds (user + system) the master process (or only its main, reactor thread) has
        used so far."""
        path = "/proc/%d/task/%d/stat" % (self.master.pid, self.master.pid) if main_thread \
            else "/proc/%d/stat" % self.master.pid
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sendchange(self, comments, files):
        self._run([_tool("buildbot"), "sendchange", "--master", "127.0.0.1:%d" % self.pb_port,
                   "--auth", "change:changepw", "--who", AUTHOR, "--branch", "trunk", "--revision", REVISION,
                   "--repository", REPO, "--project", "firehose", "--vc", "git", "--comments", comments] + files,
                  timeout=60)

    def stats_lines(self):
        """The integration's periodic stats lines from twistd.log, parsed into dicts."""
        out = []
        for m in re.finditer(r"firehose-buildbot: stats ([^|\n]*)", self.log()):
            out.append({k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", m.group(1))})
        return out

    def pause(self):
        """SIGSTOP the master and the worker: an idle deployment takes no CPU while another is
        measured (bench/buildbot_bench.py). resume() or stop() lets them run again."""
        for proc in (self.master, self.worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGSTOP)

    def resume(self):
        for proc in (self.master, self.worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)

    def finished_count(self):
        return self.db("SELECT count(*) FROM builds WHERE complete_at IS NOT NULL")[0][0]

    def _stop(self, proc, timeout=30):
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)           # a paused process would not act on SIGTERM
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def stop_worker(self):
        self._stop(self.worker)

    def stop(self):
        self._stop(self.worker)
        self._stop(self.master, timeout=60)
