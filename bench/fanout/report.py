#!/usr/bin/env python3
"""Turns bench/fanout.sh's results (environment: RESULTS, SOAK, ...) into a summary on stdout and,
with WRITE_DOC=1, the bench:fanout section of DOC (through bench/write_section.py) and its three
plots (bench/plot.py) in the plots/ directory beside DOC, which the section links:

    fanout-deliveries-vs-subscribers.svg   deliveries/s against filtered subscribers (the sweep)
    fanout-latency.svg                     p50/p99/p999 against offered rate (the ladder), log y
    fanout-soak-rss.svg                    broker RSS against events read (the soak's samples)

Servers (the TSV's first column): firehose (this tree's broker), firehose-b (FANOUT_BROKER_B, named
by BROKER_B_LABEL) and centrifugo, each optional; every per-server table has a row per server in the
run (in that order), and the ratios compare this tree's broker with each other one. Results from
before firehose-b (two servers, fewer columns, no BROKER_* variables) still give their report; only
the ladder and sweep rows are now in that server order rather than the run's.

bench/fanout.sh also leaves build/bench/fanout-report.env, so the report and plots of its last run
can be made again elsewhere:
    set -a; . build/bench/fanout-report.env; set +a
    DOC=/tmp/p/performance.md WRITE_DOC=1 python3 bench/fanout/report.py
"""
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import plot  # noqa: E402  (bench/plot.py)

env = os.environ


def kv(line):
    return dict(re.findall(r"([a-z_0-9]+)=([^ \t]+)", line))


def num(d, k, default=0.0):
    try:
        return float(d.get(k, default))
    except ValueError:
        return default


def fmt(n):
    return format(int(round(n)), ",")


rows = []
for line in open(env["RESULTS"]):
    f = line.rstrip("\n").split("\t")
    if len(f) < 10:
        continue
    server, kind, rate, pline, lline, cpu, rss, ok, lag, expected = f[:10]
    # columns 11-12 (filtered clients, what was checked) came with the sweep; older files lack them
    filtered = int(f[10]) if len(f) > 10 and f[10] else int(env["FILTERED"])
    # columns 13-14 (CPU ticks, the firehose broker's stage histograms) came later still
    ticks = int(f[12]) if len(f) > 12 and f[12] else 0
    rows.append(dict(server=server, kind=kind, rate=int(rate), p=kv(pline), l=kv(lline),
                     cpu=float(cpu or 0), rss=int(rss or 0), ok=ok, lag=int(lag or 0),
                     expected=int(expected or 0), filtered=filtered, check=f[11] if len(f) > 11 else "all",
                     ticks=ticks, st=kv(f[13]) if len(f) > 13 else {}))


def per_cpu_s(r):
    """Deliveries the clients counted per CPU-second of the server over the producing interval."""
    return num(r["l"], "deliveries") * int(env["HZ"]) / r["ticks"] if r["ticks"] else 0.0

# table order: this tree's broker, the other broker build, Centrifugo
servers = [s for s in ("firehose", "firehose-b", "centrifugo") if any(r["server"] == s for r in rows)]
label = {"firehose": "firehose-broker", "firehose-b": env.get("BROKER_B_LABEL") or "firehose-broker (base)",
         "centrifugo": "Centrifugo"}


def pairs():
    """The (a, b) pairs the ratios a / b are for: this tree's broker against each other server in the run."""
    return [("firehose", b) for b in ("centrifugo", "firehose-b") if "firehose" in servers and b in servers]


def step_table(kind, head, cell):
    """The rows of one kind (step, sweep) as a table; head/cell: the first column after server."""
    out = ["| server | %s | sent | delivered / expected | deliveries/s | p50 | p99 | p999 "
           "| last delivery after producer stop | disconnects (close codes) | server CPU | deliveries per CPU-second "
           "| server RSS | sustained |" % head,
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted((r for r in rows if r["kind"] == kind), key=lambda r: servers.index(r["server"])):
        l, p = r["l"], r["p"]
        got = "%s / %s" % (fmt(num(l, "deliveries")), fmt(r["expected"]))
        if r["check"] == "full":   # the filtered clients' share cannot be predicted: full-stream only
            got = "full-stream: %s / %s" % (fmt(num(l, "full")), fmt(r["expected"]))
        out.append("| %s | %s | %s | %s | **%s** | %.2f ms | **%.2f ms** | %.2f ms | %s ms | %s (%s) | %d%% | %s | %.0f MiB | %s |" % (
            label[r["server"]], cell(r), fmt(num(p, "sent")), got, fmt(num(l, "deliveries_per_s")),
            num(l, "p50_ms"), num(l, "p99_ms"), num(l, "p999_ms"), fmt(r["lag"]), l.get("disconnects", "?"),
            l.get("close_codes", "-"), r["cpu"], fmt(per_cpu_s(r)) if r["ticks"] else "-", r["rss"] / 1024, r["ok"]))
    return out


def ladder_table():
    return step_table("step", "offered events/s", lambda r: fmt(r["rate"]))


def sweep(server):
    return sorted((r for r in rows if r["server"] == server and r["kind"] == "sweep"), key=lambda r: r["filtered"])


def sweep_lines():
    if not any(sweep(s) for s in servers):
        return ["Subscriber sweep: not run.", ""]
    out = ["Sustained as in the ladder. Where the filtered count is not a multiple of the %s builders, which "
           "events reach the filtered clients is not predicted, so only the full-stream clients' deliveries are "
           "counted (`full-stream:`); disconnects, errors and the lag are checked for all." % env["NBUILDERS"], ""]
    out += step_table("sweep", "filtered clients", lambda r: fmt(r["filtered"])) + [""]
    by = {s: {r["filtered"]: r for r in sweep(s)} for s in servers}
    for sa, sb in pairs():
        common = sorted(set(by[sa]) & set(by[sb]))
        if common:
            out += ["Ratios, %s / %s, at each sweep step:" % (label[sa], label[sb]), ""]
            out += [sweep_ratio(by[sa][n], by[sb][n]) for n in common] + [""]
    return out


def sweep_ratio(a, b):
    """One sweep step's ratios a / b, as a list item."""
    parts = []
    for key, name in (("deliveries_per_s", "deliveries/s"), ("p50_ms", "p50"), ("p99_ms", "p99")):
        if num(b["l"], key):
            parts.append("%s **%.2fx**" % (name, num(a["l"], key) / num(b["l"], key)))
    if b["cpu"]:
        parts.append("CPU **%.2fx**" % (a["cpu"] / b["cpu"]))
    if b["rss"]:
        parts.append("RSS **%.2fx**" % (a["rss"] / b["rss"]))
    return "- %s filtered + %s full-stream clients: %s" % (fmt(a["filtered"]), env["FULL"], ", ".join(parts))


def best(server):
    ok = [r for r in rows if r["server"] == server and r["kind"] == "step" and r["ok"] == "yes"]
    return max(ok, key=lambda r: r["rate"]) if ok else None


def peak(server):
    st = [r for r in rows if r["server"] == server and r["kind"] == "step"]
    return max(st, key=lambda r: num(r["l"], "deliveries_per_s")) if st else None


def lat(server):
    return [r for r in rows if r["server"] == server and r["kind"] == "latency"]


def med_range(vals, unit="", prec=2):
    if not vals:
        return "-"
    return ("%.*f%s (%.*f-%.*f)" % (prec, statistics.median(vals), unit, prec, min(vals), prec, max(vals)))


def lat_table():
    out = ["| server | runs | sustained | deliveries/s | p50 | p99 | p999 | max | server CPU | deliveries per CPU-second "
           "| server RSS |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in servers:
        L = lat(s)
        if not L:
            continue
        out.append("| %s | %d | %d of %d | %s | %s | **%s** | %s | %s | %s | %s | %s |" % (
            label[s], len(L), sum(r["ok"] == "yes" for r in L), len(L),
            med_range([num(r["l"], "deliveries_per_s") for r in L], "", 0),
            med_range([num(r["l"], "p50_ms") for r in L], " ms"),
            med_range([num(r["l"], "p99_ms") for r in L], " ms"),
            med_range([num(r["l"], "p999_ms") for r in L], " ms"),
            med_range([num(r["l"], "max_ms") for r in L], " ms"),
            med_range([r["cpu"] for r in L], "%", 0),
            med_range([per_cpu_s(r) for r in L if r["ticks"]], "", 0),
            med_range([r["rss"] / 1024 for r in L], " MiB", 0)))
    return out


STAGES = (("kafka", "Kafka timestamp (pacer's produce call)", "taken from the stream's consumer"),
          ("route", "taken", "queued for the connection"),
          ("write", "queued", "last byte written to the socket"),
          ("total", "Kafka timestamp", "last byte written"))


def stage_cells(L, key):
    """p50, p99, p999 of one stage over the runs L, each median (min-max); "-" where no run has it."""
    cells = []
    for i in range(3):
        vals = []
        for r in L:
            try:
                vals.append(float(r["st"].get("st_" + key, "").split("/")[i]))
            except (IndexError, ValueError):
                pass
        cells.append(med_range(vals))
    return cells


def stage_lines():
    """The firehose brokers' own account of the latency runs: their stage histograms (docs/stream.md,
    Metrics), p50/p99/p999 per run, as medians (min-max) of the runs. A broker build without the
    histograms gets a sentence instead of rows; one with some of them, "-" for the others."""
    brokers = [s for s in ("firehose", "firehose-b") if lat(s)]
    have = [s for s in brokers if any(r["st"] for r in lat(s))]
    if not have:
        return []
    two = len(brokers) > 1
    out = ["Where the firehose broker%s milliseconds went in those runs (%s stage histograms on /metrics, "
           "read before and after each run; p50 / p99 / p999 in ms, median (min-max) of the runs; Kafka "
           "timestamps have ms resolution, so kafka and total read up to 1 ms high):" % (
               "s'" if two else "'s", "their" if two else "its"), ""]
    if two:
        out += ["| server | stage | from | to | p50 | p99 | p999 |", "|---|---|---|---|---:|---:|---:|"]
    else:
        out += ["| stage | from | to | p50 | p99 | p999 |", "|---|---|---|---:|---:|---:|"]
    for s in have:
        L = [r for r in lat(s) if r["st"]]
        for key, frm, to in STAGES:
            out.append("| %s%s | %s | %s | %s | %s | %s |" % (
                label[s] + " | " if two else "", key, frm, to, *stage_cells(L, key)))
    out.append("")
    for s in brokers:
        if s not in have:
            out += ["%s exports none of these histograms (a build from before them): no stage rows for it." % label[s], ""]
    return out


def ratio_lines():
    out = []
    for a, b in pairs():
        out += ratio_block(a, b)
    return out


def ratio_block(sa, sb):
    """The ratios sa / sb over the ladder and the latency runs, as a list with its heading."""
    same = ("same run, same records, same clients" if sb == "centrifugo"
            else "same run, same input and clients, run right after it")
    out = ["Ratios, %s / %s, %s:" % (label[sa], label[sb], same), ""]
    bf, bc = best(sa), best(sb)
    if bf and bc:
        out.append("- highest sustained input rate: %s / %s events/s = **%.2fx**" % (
            fmt(bf["rate"]), fmt(bc["rate"]), bf["rate"] / bc["rate"]))
    elif bf:
        out.append("- highest sustained input rate: %s events/s / none sustained (%s)" % (fmt(bf["rate"]), label[sb]))
    elif bc:
        out.append("- highest sustained input rate: none sustained (%s) / %s events/s" % (label[sa], fmt(bc["rate"])))
    pf, pc = peak(sa), peak(sb)
    if pf and pc and num(pc["l"], "deliveries_per_s"):
        out.append("- highest deliveries/s seen in a step: %s / %s = **%.2fx**" % (
            fmt(num(pf["l"], "deliveries_per_s")), fmt(num(pc["l"], "deliveries_per_s")),
            num(pf["l"], "deliveries_per_s") / num(pc["l"], "deliveries_per_s")))
    Lf, Lc = lat(sa), lat(sb)
    if Lf and Lc:
        for key, name in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p999")):
            a = statistics.median([num(r["l"], key) for r in Lf])
            b = statistics.median([num(r["l"], key) for r in Lc])
            if b:
                out.append("- latency %s at %s events/s (median of runs): %.2f ms / %.2f ms = **%.2fx** (lower is better)" % (
                    name, fmt(int(env["LAT_RATE"])), a, b, a / b))
        a = statistics.median([r["cpu"] for r in Lf])
        b = statistics.median([r["cpu"] for r in Lc])
        if b:
            out.append("- server CPU at %s events/s: %d%% / %d%% = **%.2fx**" % (fmt(int(env["LAT_RATE"])), a, b, a / b))
        a = [per_cpu_s(r) for r in Lf if r["ticks"]]
        b = [per_cpu_s(r) for r in Lc if r["ticks"]]
        if a and b:
            out.append("- deliveries per server CPU-second at %s events/s: %s / %s = **%.2fx** (higher is better)" % (
                fmt(int(env["LAT_RATE"])), fmt(statistics.median(a)), fmt(statistics.median(b)),
                statistics.median(a) / statistics.median(b)))
        a = statistics.median([r["rss"] for r in Lf])
        b = statistics.median([r["rss"] for r in Lc])
        if b:
            out.append("- server RSS at %s events/s: %.0f / %.0f MiB = **%.2fx**" % (fmt(int(env["LAT_RATE"])), a / 1024, b / 1024, a / b))
    for rate in sorted({r["rate"] for r in rows if r["kind"] == "step"}):
        a = [per_cpu_s(r) for r in rows if r["kind"] == "step" and r["rate"] == rate and r["server"] == sa and r["ticks"]]
        b = [per_cpu_s(r) for r in rows if r["kind"] == "step" and r["rate"] == rate and r["server"] == sb and r["ticks"]]
        if a and b and b[0]:
            out.append("- deliveries per server CPU-second in the %s events/s ladder step: %s / %s = **%.2fx**" % (
                fmt(rate), fmt(a[0]), fmt(b[0]), a[0] / b[0]))
    return out + [""]


def read_soak():
    """The soak TSV: (RSS kB before, [(mark, events, rss_kb, s)], [(events, rss_kb, s)] samples,
    end row's fields or None)."""
    start_rss, marks, samples, end = 0, [], [], None
    for line in open(env["SOAK"]):
        f = line.rstrip("\n").split("\t")
        if f[0] == "end":
            end = f
        elif f[0] == "start":
            start_rss = int(f[2])
        elif f[0] == "sample":
            samples.append((int(f[1]), int(f[2]), float(f[3])))
        elif f[0]:
            marks.append((int(f[0]), int(f[1]), int(f[2]), int(f[3])))
    return start_rss, marks, samples, end


def soak_lines():
    start_rss, marks, samples, end = read_soak()
    if not marks:
        return ["Memory soak: not run."]
    out = ["| mark | events read by the stream | broker RSS | seconds since the producer started |",
           "|---:|---:|---:|---:|",
           "| before | 0 | %.1f MiB | 0 |" % (start_rss / 1024)]
    scale = int(env["SOAK_EVENTS"]) / 10000000   # the marks are for 10M events, scaled to the soak
    for m, n, rss, s in marks:
        out.append("| %s | %s | %.1f MiB | %d |" % (fmt(m * scale), fmt(n), rss / 1024, s))
    if samples:
        rs = [rss for _, rss, _ in samples]
        out += ["", "Sampled every ~0.5 s: %d samples, RSS %.1f-%.1f MiB (lowest-highest), the last %.1f MiB at %s events." % (
            len(samples), min(rs) / 1024, max(rs) / 1024, samples[-1][1] / 1024, fmt(samples[-1][0]))]
    r1 = next((rss for m, n, rss, s in marks if m == 1000000), None)
    r10 = next((rss for m, n, rss, s in marks if m == 10000000), None)
    out.append("")
    if r1 and r10:
        out.append("RSS after %s / after %s events: %.1f / %.1f MiB = **%.3f** (goal, for 10M / 1M: within 5%%, "
                   "i.e. <= 1.05, and under 256 MiB)." % (fmt(10000000 * scale), fmt(1000000 * scale), r10 / 1024,
                                                          r1 / 1024, r10 / r1))
    else:
        out.append("The soak did not reach %s events within its time bound (last mark: %s events)." % (
            fmt(int(env["SOAK_EVENTS"])), fmt(marks[-1][1])))
    if end:
        lc = kv(end[5] if len(end) > 5 else "")
        ticks = int(end[4].split("=")[1])
        secs = max(int(end[3]), 1)
        out.append("Soak subscribers: %s connections, %s deliveries, %s disconnects (close codes %s); broker CPU "
                   "%d%% over the %d s the events took to pass." % (
                       lc.get("conns", "?"), fmt(num(lc, "deliveries")), lc.get("disconnects", "?"),
                       lc.get("close_codes", "-"), 100 * ticks / int(env["HZ"]) / secs, secs))
    return out


COLOR = {"firehose": "#1f77b4", "firehose-b": "#2ca02c", "centrifugo": "#ff7f0e"}
# the servers deliver the same rate while they keep up: dashes let the lower lines show through
SWEEP_DASH = {"firehose": "solid", "firehose-b": "dashdot", "centrifugo": "dash"}
NOTE = "bench/fanout.sh, %s, %s CPUs" % (env["DATE"], env["NPROC"])


def plots():
    """{file name: (alt text, SVG)} for each plot this run has data for."""
    out = {}
    series = [plot.Series(label[s], [(r["filtered"], num(r["l"], "deliveries_per_s")) for r in sweep(s)], COLOR[s],
                          SWEEP_DASH[s]) for s in servers if sweep(s)]
    if series:
        rate = fmt(next(r["rate"] for r in rows if r["kind"] == "sweep"))
        out["fanout-deliveries-vs-subscribers.svg"] = (
            "Deliveries/s against the number of filtered subscribers at %s events/s, one line per server" % rate,
            plot.render("Fan-out: deliveries/s at %s events/s in" % rate,
                        "filtered subscribers (plus %s full-stream)" % env["FULL"], "deliveries/s", series,
                        xlog=True, yzero=True, note=NOTE))
    series = []
    for s in servers:
        steps = sorted((r for r in rows if r["server"] == s and r["kind"] == "step"), key=lambda r: r["rate"])
        for key, name, dash in (("p50_ms", "p50", "solid"), ("p99_ms", "p99", "dash"), ("p999_ms", "p999", "dot")):
            if steps:
                series.append(plot.Series("%s %s" % (label[s], name), [(r["rate"], num(r["l"], key)) for r in steps],
                                          COLOR[s], dash))
    if series:
        out["fanout-latency.svg"] = (
            "Delivery latency p50, p99 and p999 in ms (log scale) against offered events/s in the rate ladder, per server",
            plot.render("Fan-out: latency over the rate ladder (%s filtered + %s full-stream clients)" % (
                fmt(int(env["FILTERED"])), env["FULL"]), "offered events/s", "latency, ms", series,
                xlog=True, ylog=True, note=NOTE))
    start_rss, marks, samples, end = read_soak()
    pts = [(0, start_rss)] + [(n, rss) for n, rss, _ in samples] + [(n, rss) for _, n, rss, _ in marks]
    pts = sorted(set(pts + ([(int(end[1]), int(end[2]))] if end else [])))
    if marks or samples:
        out["fanout-soak-rss.svg"] = (
            "firehose-broker RSS in MiB against events read during the memory soak",
            plot.render("Memory soak: broker RSS, %s subscribers" % env["SOAK_SUBS"],
                        "events read by the stream (firehose_stream_events_total)", "VmRSS, MiB",
                        [plot.Series("firehose-broker", [(n, rss / 1024) for n, rss in pts], COLOR["firehose"],
                                     markers=len(pts) <= 60)],
                        yzero=True, note=NOTE))
    return out


PLOTS = plots()


def link(name):
    """The markdown image line for one plot, if this run has it."""
    return ["![%s](plots/%s)" % (PLOTS[name][0], name), ""] if name in PLOTS else []


mem_gib = int(env["MEM_KB"]) / 1024 / 1024
summary = []
for s in servers:
    b, p = best(s), peak(s)
    summary.append("- %s: highest sustained input %s events/s%s; peak %s deliveries/s (at %s events/s offered)." % (
        label[s], fmt(b["rate"]) if b else "none", " (%s deliveries/s)" % fmt(num(b["l"], "deliveries_per_s")) if b else "",
        fmt(num(p["l"], "deliveries_per_s")) if p else "-", fmt(p["rate"]) if p else "-"))


def headline(sa, sb):
    """One line of the latency runs' medians, sa / sb (the full set is under the latency table)."""
    La, Lb = lat(sa), lat(sb)
    if not La or not Lb:
        return []
    parts = []
    for name, f in (("p99", lambda r: num(r["l"], "p99_ms")), ("CPU", lambda r: r["cpu"])):
        a, b = statistics.median(map(f, La)), statistics.median(map(f, Lb))
        if b:
            parts.append("%s **%.2fx**" % (name, a / b))
    a, b = [per_cpu_s(r) for r in La if r["ticks"]], [per_cpu_s(r) for r in Lb if r["ticks"]]
    if a and b and statistics.median(b):
        parts.append("deliveries per CPU-second **%.2fx**" % (statistics.median(a) / statistics.median(b)))
    if not parts:
        return []
    return ["- %s / %s at %s events/s (medians of the latency runs): %s." % (
        label[sa], label[sb], fmt(int(env["LAT_RATE"])), ", ".join(parts))]


for sa, sb in pairs():
    summary += headline(sa, sb)

centrifugo_line = ("- Centrifugo: %s, Kafka async consumer in publication data mode (channels from the "
                   "`centrifugo-channels` header the pacer adds: `<builder>,all`), memory engine, `client.insecure`, "
                   "JSON protocol over `/connection/websocket` (connect + subscribe; filtered clients subscribe "
                   "channel `<builder>`, full-stream clients `all`); defaults otherwise (client queue 1 MiB, "
                   "max_poll_records 100). It runs first: a new consumer group starts at the beginning of the topic, "
                   "so it must see an empty one." % (env["CENTRIFUGO_VERSION"] or "?")) if env["CENTRIFUGO_VERSION"] else (
    "- Centrifugo: %s" % env["CENTRIFUGO_NOTE"])

def repo_path(path):
    """path relative to the repository when it is inside it (the doc should not name this machine's directories)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rel = os.path.relpath(os.path.abspath(path), root)
    return path if rel.startswith("..") else rel


base_line = []
if "firehose-b" in servers:
    base_line = ["- %s: `%s` with `%s` and the same fixed arguments; the same warm-up, ladder, latency runs and "
                 "sweep, in a fresh process right after this tree's broker (back to back, not interleaved: both up "
                 "at once would each consume every record). The memory soak is this tree's broker's alone." % (
                     label["firehose-b"], repo_path(env.get("BROKER_B") or "?"), env.get("BROKER_B_ARGS") or "--view.enabled=false")]

section = [
    "## Fan-out: Kafka -> broker -> %s filtered + %s full-stream WebSocket clients" % (fmt(int(env["FILTERED"])), env["FULL"]),
    "",
    "- Command: `%sflock /tmp/firehose-bench.lock bash bench/fanout.sh` (what `make bench` runs, without the lock%s)" % (
        env.get("KNOBS", ""), " and the settings" if env.get("KNOBS") else ""),
    "- Date: %s" % env["DATE"],
    "- Machine: %s CPUs (%s), %.1f GiB RAM, %s. Kafka, the broker, the producer and the load client all share "
    "these two cores (and other engineers' jobs may run between locked benchmarks)." % (
        env["NPROC"], env["CPU_MODEL"] or "unknown CPU", mem_gib, env["KERNEL"]),
    "- Software: Apache Kafka 3.9.1 (KRaft, one node on loopback, JVM `%s`), topics with 6 partitions; librdkafka %s; "
    "firehose-broker `%s --auth.anonymous_read --stream.max_connections=20000`, stream defaults "
    "(client queue 4 MiB, drain grace 500 ms)." % (
        (env.get("KAFKA_HEAP", "") + " " + env.get("KAFKA_GC", "")).strip() or "-Xmx512m -XX:+UseG1GC", env["RDKAFKA"], env.get("BROKER_ARGS") or "--view.enabled=false"),
] + base_line + [
    centrifugo_line,
    "- Input: `firehose-sim --profile mozilla-2010 --builders 1000 --logs=false --count %s --seed 7` "
    "(status events, %s B on average; %s builders). Producer: build/bench/pacer (bench/fanout/pacer.c, librdkafka, "
    "lz4, acks=all, linger.ms=1) at a fixed rate, each record stamped with a `sentns` extension attribute "
    "(CLOCK_REALTIME) just before it is produced." % (fmt(int(env["INPUT_COUNT"])), env["AVG_BYTES"], env["NBUILDERS"]),
    "- Clients: build/bench/loadclient (bench/fanout/loadclient.c, epoll, 2 threads): %s connections each "
    "subscribing `{\"builder\": NAME}` (one builder each) and %s subscribing `{}`, `from: latest`; latency = receive "
    "time - `sentns` on the same clock, 10 us buckets. A fresh set of connections for every run." % (
        fmt(int(env["FILTERED"])), env["FULL"]),
    "- Ladder: after %s s of warm-up at %s events/s (not reported), each offered rate for %s s; it stops after the "
    "first rate not sustained. Sustained = every expected "
    "delivery arrived (each event to its builder's client and to every full-stream client), no disconnect, no "
    "error, and the last delivery at most %s ms after the producer stopped. Server CPU = utime+stime of the "
    "server process over the producing interval (100%% = one core); RSS = VmRSS at the end of it." % (
        env.get("WARMUP_S", "0"), fmt(int(env["LAT_RATE"])), env["STEP_S"], env["MAX_LAG_MS"]),
    "- Goals (DESIGN.md): >= 1,000,000 deliveries/s with no drops; p99 <= 10 ms at 10,000 events/s; RSS after 10M "
    "events within 5% of RSS after 1M and under 256 MiB.",
    "",
] + summary + ["", "### Rate ladder", ""] + ladder_table() + [""] + link("fanout-latency.svg") + [
    "### Latency at %s events/s (%s runs of %s s; median (min-max))" % (fmt(int(env["LAT_RATE"])), env["LAT_RUNS"], env["LAT_S"]), ""
] + lat_table() + [""] + stage_lines() + ratio_lines() + [
    "### Subscriber sweep: %s events/s offered, %s filtered clients (one builder each, builders reused past %s) "
    "+ %s full-stream, %s s per step" % (
        fmt(int(env["SWEEP_RATE"])), ", ".join(fmt(int(n)) for n in env["SWEEP_SUBS"].split()), env["NBUILDERS"],
        env["FULL"], env["STEP_S"]), ""
] + sweep_lines() + link("fanout-deliveries-vs-subscribers.svg") + [
    "### Memory soak: %s status events, %s subscribers (one builder each), firehose-sim | firehose-emit flat out" % (
        fmt(int(env["SOAK_EVENTS"])), env["SOAK_SUBS"]), ""
] + soak_lines() + [""] + link("fanout-soak-rss.svg")

text = "\n".join(section)
print(text)
if env.get("WRITE_DOC") == "1":
    plot_dir = os.path.join(os.path.dirname(os.path.abspath(env["DOC"])), "plots")
    for name in ("fanout-deliveries-vs-subscribers.svg", "fanout-latency.svg", "fanout-soak-rss.svg"):
        path = os.path.join(plot_dir, name)
        if name in PLOTS:
            plot.write(path, PLOTS[name][1])
            print("wrote %s" % path)
        elif os.path.exists(path):   # no data for it in this run: the section no longer links it
            os.remove(path)
    subprocess.run([sys.executable, env["WRITER"], "fanout", env["DOC"]], input=text.encode(), check=True)
