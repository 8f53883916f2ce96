"""tools/deps.sh on this machine: `check` passes on the package lists as they are and fails, naming
the conflict, when a package that cannot go beside them is added; `wanted` never asks for Debian's
npm when another npm is already on PATH. Debian's apt-get is asked (simulations only, -s), nothing
is installed. Run by `make deps-test` (part of `make test`).
"""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPS = ROOT / "tools" / "deps.sh"


def deps(*args, env=None, timeout=300):
    e = dict(os.environ, LC_ALL="C")
    e.pop("FIREHOSE_DEPS_EXTRA", None)
    e.update(env or {})
    return subprocess.run(["bash", str(DEPS), *args], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return r.stdout == "install ok installed"


def test_check_passes_on_the_package_lists():
    r = deps("check")
    assert r.returncode == 0, r.stderr
    assert "install together" in r.stderr, r.stderr


def test_check_fails_naming_npm_and_nodejs_when_debian_npm_is_added():
    # Whether Debian's npm conflicts here depends on the machine (it does beside NodeSource's
    # nodejs, which bundles its own npm): ask apt-get first, the same way the check does.
    def simulate():
        return subprocess.run(["apt-get", "install", "-s", "-q", "--no-install-recommends", "npm"],
                              env=dict(os.environ, LC_ALL="C"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=300)

    sim = simulate()
    if "Unable to locate package" in sim.stdout:
        assert deps("check").returncode == 0  # the check fetches the package lists when they lack ours
        sim = simulate()
    if sim.returncode == 0:
        pytest.skip("Debian's npm installs beside this machine's packages (no NodeSource nodejs here), "
                    "so there is no conflict for the check to find")
    r = deps("check", env={"FIREHOSE_DEPS_EXTRA": "npm"})
    assert r.returncode != 0, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("deps: check failed"), r.stderr
    assert "npm" in last and "nodejs" in last, last


def test_check_refuses_extra_that_is_not_package_names():
    r = deps("check", env={"FIREHOSE_DEPS_EXTRA": "npm; rm -rf /"}, timeout=30)
    assert r.returncode != 0
    assert "FIREHOSE_DEPS_EXTRA" in r.stderr, r.stderr


def test_wanted_leaves_debian_npm_out_when_an_npm_is_on_path(tmp_path):
    if installed("npm"):
        pytest.skip("Debian's npm package is installed here: it is wanted whatever is on PATH")
    # A PATH with only what deps.sh needs to answer `wanted`, so npm is there or not by our choice.
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("bash", "dirname", "sed", "awk", "id", "tr", "dpkg-query"):
        found = shutil.which(tool)
        assert found, tool
        (bare / tool).symlink_to(found)
    without = deps("wanted", "test", env={"PATH": str(bare)}, timeout=60)
    assert without.returncode == 0, without.stderr
    assert "npm" in without.stdout.split(), without.stdout

    fake = tmp_path / "other-npm"
    fake.mkdir()
    npm = fake / "npm"
    npm.write_text("#!/bin/sh\necho 10.0.0\n")
    npm.chmod(0o755)
    with_npm = deps("wanted", "test", env={"PATH": "%s:%s" % (fake, bare)}, timeout=60)
    assert with_npm.returncode == 0, with_npm.stderr
    wanted = with_npm.stdout.split()
    assert "npm" not in wanted, wanted
    assert set(without.stdout.split()) - set(wanted) == {"npm"}, (without.stdout, wanted)

    # And on this machine's own PATH, where an npm may come from anywhere (NodeSource's nodejs).
    if shutil.which("npm"):
        assert "npm" not in deps("wanted", "test").stdout.split()


def test_a_refused_install_says_why_and_how_to_install_by_hand(tmp_path):
    # apt-get and dpkg-query stand-ins: nothing is installed, and apt-get refuses the way it does
    # beside a conflicting package (its reasons on stdout, the error on stderr, status 100).
    fake = tmp_path / "fake"
    fake.mkdir()
    scripts = {
        "dpkg-query": "#!/bin/sh\necho 'unknown ok not-installed'\n",
        "apt-get": "#!/bin/sh\n[ \"$1\" = update ] && exit 0\n"
                   "echo 'The following packages have unmet dependencies:'\n"
                   "echo ' libjansson-dev : Conflicts: something-here'\n"
                   "echo 'E: Unable to correct problems, you have held broken packages.' >&2\nexit 100\n",
        "sudo": "#!/bin/sh\nexec \"$@\"\n",
    }
    for name, text in scripts.items():
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    r = deps("install", "run", env={"PATH": "%s:%s" % (fake, os.environ["PATH"])}, timeout=60)
    assert r.returncode != 0
    assert "libjansson-dev : Conflicts: something-here" in r.stderr, r.stderr
    assert "E: Unable to correct problems" in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    # (gcc is left out where a cc is on PATH: another compiler stands in for it)
    assert last.startswith("deps: apt-get did not install: "), last
    listed, _, by_hand = last[len("deps: apt-get did not install: "):].partition(" (by hand: ")
    want = [l.split()[0] for l in (ROOT / "tools" / "deps" / "apt-run.txt").read_text().splitlines()
            if l.split() and not l.startswith("#") and l.split()[0] != "gcc"]
    assert listed.split() == want, (listed, want)  # every package of the list, in its order
    assert by_hand.startswith("apt-get install " + " ".join(want)), last
    assert "apt-get install " in last and "When a package install is refused" in last, last
