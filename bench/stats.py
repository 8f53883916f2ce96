"""What the benchmarks' reports share: a median with its range, ratios of medians, the machine line.

    PYTHONPATH=bench python3 -c 'import stats; print(stats.med_range([3, 1, 2]))'   # 2 (1-3)

Every figure a section reports is the median of its runs with the lowest and highest run beside
it, so a reader sees the spread, not only the middle.
"""
import os
import shlex
import statistics


def num(v, prec=0):
    """v with thousands separators and prec decimals; inf as 'inf'."""
    if v == float("inf"):
        return "inf"
    return format(round(v, prec) if prec else round(v), ",.%df" % prec)


def med_range(vals, prec=0, unit="", bold=False):
    """'median (min-max)' of vals, each with prec decimals and unit after the median; the median
    alone when there is one value. bold puts the median in **...**."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    m = num(statistics.median(vals), prec) + unit
    if bold:
        m = "**%s**" % m
    if len(vals) == 1:
        return m
    return "%s (%s-%s)" % (m, num(min(vals), prec), num(max(vals), prec))


def ratio(a, b):
    """a / b as text: whole numbers from 10 up, two decimals below; None when b is 0 or missing."""
    if a is None or not b:
        return None
    r = a / b
    return num(r) if r >= 10 else "%.2f" % r


def machine():
    """'N CPUs (model), X GiB RAM, kernel' of this machine."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    u = os.uname()
    return "%d CPUs (%s), %.1f GiB RAM, %s %s" % (
        len(os.sched_getaffinity(0)), model, kb / 1024 / 1024, u.sysname, u.release)


def command(script):
    """The command line that ran script, for a section's Command line: the BENCH_* settings in the
    environment, and `flock LOCK` when the script's parent is flock (the shared-CPU lock)."""
    knobs = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(os.environ.items())
                     if k.startswith("BENCH_") and k != "BENCH_NO_DOC")
    cmd = "bash " + script
    try:   # this is the script's Python; its parent the script, whose parent may be flock
        with open("/proc/%d/stat" % os.getppid()) as f:
            grandparent = int(f.read().rsplit(")", 1)[1].split()[1])
        with open("/proc/%d/cmdline" % grandparent, "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        if argv and os.path.basename(argv[0]) == "flock" and len(argv) > 1:
            cmd = "flock %s %s" % (argv[1], cmd)
    except (OSError, ValueError, IndexError):
        pass
    return "`%s`" % ((knobs + " " + cmd) if knobs else cmd)
