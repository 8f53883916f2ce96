"""The deployment files are right without a container engine: docker-compose.yml passes
`docker-compose config`, every FIREHOSE_* variable it sets is a real key, the Dockerfiles copy
what exists, the systemd unit passes `systemd-analyze verify`, the example master.cfg passes
`buildbot checkconfig`; and the compose file's own processes (two brokers, firehose-sim piped
into firehose-emit) run directly on loopback against real Kafka and both brokers serve the view.
"""

import os
import re
import shlex
import shutil
import subprocess
import uuid

import pytest
import requests
import yaml

from conftest import BIN, ROOT, wait_for

COMPOSE = ROOT / "docker-compose.yml"


def compose():
    return yaml.safe_load(COMPOSE.read_text())


def keys_of(prog):
    out = subprocess.run([str(BIN / prog), "--help"], stdout=subprocess.PIPE, text=True, timeout=30).stdout
    return set(re.findall(r"\b(FIREHOSE_[A-Z0-9_]+)", out))


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="make deps installs docker-compose")
def test_compose_file_passes_docker_compose_config():
    r = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], stderr=subprocess.PIPE, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


def test_compose_has_kafka_two_brokers_sim_and_buildbot_with_real_keys():
    services = compose()["services"]
    assert {"kafka", "broker-1", "broker-2", "sim", "buildbot"} <= set(services)
    broker_keys = keys_of("firehose-broker")
    for name in ("broker-1", "broker-2"):
        env = services[name]["environment"]
        assert set(env) <= broker_keys, set(env) - broker_keys
        assert env["FIREHOSE_KAFKA_BROKERS"] == "kafka:9092"
    assert services["broker-1"]["ports"] != services["broker-2"]["ports"]
    sim_cmd = " ".join(services["sim"]["command"])
    assert "firehose-sim" in sim_cmd and "firehose-emit" in sim_cmd
    for dockerfile in (ROOT / "Dockerfile", ROOT / "deploy" / "buildbot" / "Dockerfile"):
        for src in re.findall(r"^COPY (?!--)(\S+) ", dockerfile.read_text(), re.M):
            assert (ROOT / src).exists(), (dockerfile, src)
    # What the broker embeds at build time must be copied into the build stage.
    copied = re.findall(r"^COPY (\S+) ", (ROOT / "Dockerfile").read_text(), re.M)
    assert {"lib", "broker", "producers", "schemas", "web", "tools"} <= set(copied)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    unit = (ROOT / "deploy" / "systemd" / "firehose-broker.service").read_text()
    unit = unit.replace("/usr/local/bin/firehose-broker", str(BIN / "firehose-broker"))
    path = tmp_path / "firehose-broker.service"
    path.write_text(unit)
    r = subprocess.run(["systemd-analyze", "verify", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout


def test_example_master_cfg_passes_buildbot_checkconfig(tmp_path):
    buildbot = shutil.which("buildbot")
    if not buildbot:
        pytest.skip("make deps installs buildbot")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "producers" / "buildbot"))
    mdir = tmp_path / "master"
    subprocess.run([buildbot, "create-master", "-q", str(mdir)], check=True, env=env, timeout=120)
    shutil.copy(ROOT / "deploy" / "buildbot" / "master.cfg", mdir / "master.cfg")
    r = subprocess.run([buildbot, "checkconfig", str(mdir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout
    assert subprocess.run(["sh", "-n", str(ROOT / "deploy" / "buildbot" / "start.sh")]).returncode == 0


def local(cmd, bootstrap):
    """A compose command as it runs here: our bin/ for /usr/local/bin, the test Kafka for kafka:9092."""
    return cmd.replace("/usr/local/bin/", str(BIN) + "/").replace("kafka:9092", bootstrap)


def test_the_compose_processes_run_and_both_brokers_serve_the_view(kafka, tmp_path):
    services = compose()["services"]
    topics = {k: "deploy-%s-%s" % (k, uuid.uuid4().hex[:6]) for k in ("events", "logs", "dlq")}
    kafka.create_topics({topics["events"]: 6, topics["logs"]: 6, topics["dlq"]: 1})
    topic_env = {"FIREHOSE_TOPICS_EVENTS": topics["events"], "FIREHOSE_TOPICS_LOGS": topics["logs"],
                 "FIREHOSE_TOPICS_DLQ": topics["dlq"]}
    procs, urls = [], []
    try:
        for i, name in enumerate(("broker-1", "broker-2")):
            env = dict(os.environ, **{k: local(str(v), kafka.bootstrap) for k, v in services[name]["environment"].items()})
            env.update(topic_env, FIREHOSE_HTTP_LISTEN="127.0.0.1:0", FIREHOSE_VIEW_PATH=str(tmp_path / ("view-%d.db" % i)))
            log = tmp_path / ("%s.log" % name)
            procs.append(subprocess.Popen([str(BIN / "firehose-broker")], env=env, stdout=subprocess.DEVNULL,
                                          stderr=open(log, "wb")))

            def url(log=log, p=procs[-1]):
                assert p.poll() is None, log.read_text()[-3000:]
                m = re.search(r"event=http\.listening url=(\S+)", log.read_text())
                return m and m.group(1)
            urls.append(wait_for(url, 30, what="%s to listen" % name))
        # The sim service's command, sped up (600 simulated seconds a second) and bounded.
        sim = local(" ".join(services["sim"]["command"]), kafka.bootstrap)
        sim = sim.replace("--start now", "--start now --speed 600 --count 20000")
        sim = sim.replace("firehose-emit --brokers", "firehose-emit --topic-events %s --topic-logs %s --topic-dlq %s --brokers"
                          % (topics["events"], topics["logs"], topics["dlq"]))
        r = subprocess.run(["sh", "-c", "set -e; " + sim], stderr=subprocess.PIPE, text=True, timeout=300)
        assert r.returncode == 0, r.stderr

        def served(u):
            try:
                a = requests.get(u + "api/v1/builders", timeout=10).json()
            except (requests.RequestException, ValueError):
                return None
            return a["as_of"]["view_offsets"] >= 20000 and a["as_of"]["behind"] == 0 and a
        answers = [wait_for(lambda u=u: served(u), 120, interval=0.5, what="the view of %s" % u) for u in urls]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
    assert [p.returncode for p in procs] == [0, 0]
    names = [sorted(b["name"] for b in a["builders"]) for a in answers]
    assert names[0] and names[0] == names[1], "both instances read every partition into their own view"
