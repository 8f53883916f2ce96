#!/usr/bin/env python3
"""Turns bench/fanout.sh's results (environment: RESULTS, SOAK, ...) into a summary on stdout and
the bench:fanout section of docs/performance.md (through bench/write_section.py)."""
import os
import re
import statistics
import subprocess
import sys

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
    rows.append(dict(server=server, kind=kind, rate=int(rate), p=kv(pline), l=kv(lline),
                     cpu=float(cpu or 0), rss=int(rss or 0), ok=ok, lag=int(lag or 0),
                     expected=int(expected or 0)))

servers = [s for s in ("firehose", "centrifugo") if any(r["server"] == s for r in rows)]
label = {"firehose": "firehose-broker", "centrifugo": "Centrifugo"}


def ladder_table():
    out = ["| server | offered events/s | sent | delivered / expected | deliveries/s | p50 | p99 | p999 "
           "| last delivery after producer stop | disconnects (close codes) | server CPU | server RSS | sustained |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["kind"] != "step":
            continue
        l, p = r["l"], r["p"]
        out.append("| %s | %s | %s | %s / %s | **%s** | %.2f ms | **%.2f ms** | %.2f ms | %s ms | %s (%s) | %d%% | %.0f MiB | %s |" % (
            label[r["server"]], fmt(r["rate"]), fmt(num(p, "sent")), fmt(num(l, "deliveries")),
            fmt(r["expected"]), fmt(num(l, "deliveries_per_s")), num(l, "p50_ms"), num(l, "p99_ms"),
            num(l, "p999_ms"), fmt(r["lag"]), l.get("disconnects", "?"), l.get("close_codes", "-"),
            r["cpu"], r["rss"] / 1024, r["ok"]))
    return out


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
    out = ["| server | runs | sustained | deliveries/s | p50 | p99 | p999 | max | server CPU | server RSS |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in servers:
        L = lat(s)
        if not L:
            continue
        out.append("| %s | %d | %d of %d | %s | %s | **%s** | %s | %s | %s | %s |" % (
            label[s], len(L), sum(r["ok"] == "yes" for r in L), len(L),
            med_range([num(r["l"], "deliveries_per_s") for r in L], "", 0),
            med_range([num(r["l"], "p50_ms") for r in L], " ms"),
            med_range([num(r["l"], "p99_ms") for r in L], " ms"),
            med_range([num(r["l"], "p999_ms") for r in L], " ms"),
            med_range([num(r["l"], "max_ms") for r in L], " ms"),
            med_range([r["cpu"] for r in L], "%", 0),
            med_range([r["rss"] / 1024 for r in L], " MiB", 0)))
    return out


def ratio_lines():
    if len(servers) < 2:
        return []
    out = ["Ratios, firehose-broker / Centrifugo, same run, same records, same clients:", ""]
    bf, bc = best("firehose"), best("centrifugo")
    if bf and bc:
        out.append("- highest sustained input rate: %s / %s events/s = **%.2fx**" % (
            fmt(bf["rate"]), fmt(bc["rate"]), bf["rate"] / bc["rate"]))
    elif bf:
        out.append("- highest sustained input rate: %s events/s / none sustained (Centrifugo)" % fmt(bf["rate"]))
    pf, pc = peak("firehose"), peak("centrifugo")
    if pf and pc and num(pc["l"], "deliveries_per_s"):
        out.append("- highest deliveries/s seen in a step: %s / %s = **%.2fx**" % (
            fmt(num(pf["l"], "deliveries_per_s")), fmt(num(pc["l"], "deliveries_per_s")),
            num(pf["l"], "deliveries_per_s") / num(pc["l"], "deliveries_per_s")))
    Lf, Lc = lat("firehose"), lat("centrifugo")
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
        a = statistics.median([r["rss"] for r in Lf])
        b = statistics.median([r["rss"] for r in Lc])
        if b:
            out.append("- server RSS at %s events/s: %.0f / %.0f MiB = **%.2fx**" % (fmt(int(env["LAT_RATE"])), a / 1024, b / 1024, a / b))
    return out + [""]


def soak_lines():
    marks, end = [], None
    for line in open(env["SOAK"]):
        f = line.rstrip("\n").split("\t")
        if f[0] == "end":
            end = f
        elif f[0] != "start":
            marks.append((int(f[0]), int(f[1]), int(f[2]), int(f[3])))
        else:
            start_rss = int(f[2])
    if not marks:
        return ["Memory soak: not run."]
    out = ["| mark | events read by the stream | broker RSS | seconds since the producer started |",
           "|---:|---:|---:|---:|",
           "| before | 0 | %.1f MiB | 0 |" % (start_rss / 1024)]
    for m, n, rss, s in marks:
        out.append("| %s | %s | %.1f MiB | %d |" % (fmt(m), fmt(n), rss / 1024, s))
    r1 = next((rss for m, n, rss, s in marks if m == 1000000), None)
    r10 = next((rss for m, n, rss, s in marks if m == 10000000), None)
    out.append("")
    if r1 and r10:
        out.append("RSS after 10M / after 1M: %.1f / %.1f MiB = **%.3f** (goal: within 5%%, i.e. <= 1.05, and under 256 MiB)." % (
            r10 / 1024, r1 / 1024, r10 / r1))
    else:
        out.append("The soak did not reach 10M events within its time bound (last mark: %s events)." % fmt(marks[-1][1]))
    if end:
        lc = kv(end[5] if len(end) > 5 else "")
        ticks = int(end[4].split("=")[1])
        secs = max(int(end[3]), 1)
        out.append("Soak subscribers: %s connections, %s deliveries, %s disconnects (close codes %s); broker CPU "
                   "%d%% over the %d s the events took to pass." % (
                       lc.get("conns", "?"), fmt(num(lc, "deliveries")), lc.get("disconnects", "?"),
                       lc.get("close_codes", "-"), 100 * ticks / int(env["HZ"]) / secs, secs))
    return out


mem_gib = int(env["MEM_KB"]) / 1024 / 1024
summary = []
for s in servers:
    b, p = best(s), peak(s)
    summary.append("- %s: highest sustained input %s events/s%s; peak %s deliveries/s (at %s events/s offered)." % (
        label[s], fmt(b["rate"]) if b else "none", " (%s deliveries/s)" % fmt(num(b["l"], "deliveries_per_s")) if b else "",
        fmt(num(p["l"], "deliveries_per_s")) if p else "-", fmt(p["rate"]) if p else "-"))

centrifugo_line = ("- Centrifugo: %s, Kafka async consumer in publication data mode (channels from the "
                   "`centrifugo-channels` header the pacer adds: `<builder>,all`), memory engine, `client.insecure`, "
                   "JSON protocol over `/connection/websocket` (connect + subscribe; filtered clients subscribe "
                   "channel `<builder>`, full-stream clients `all`); defaults otherwise (client queue 1 MiB, "
                   "max_poll_records 100). It runs first: a new consumer group starts at the beginning of the topic, "
                   "so it must see an empty one." % (env["CENTRIFUGO_VERSION"] or "?")) if env["CENTRIFUGO_VERSION"] else (
    "- Centrifugo: %s" % env["CENTRIFUGO_NOTE"])

section = [
    "## Fan-out: Kafka -> broker -> %s filtered + %s full-stream WebSocket clients" % (fmt(int(env["FILTERED"])), env["FULL"]),
    "",
    "- Command: `flock /tmp/firehose-cpu.lock bash bench/fanout.sh` (what `make bench` runs, without the lock)",
    "- Date: %s" % env["DATE"],
    "- Machine: %s CPUs (%s), %.1f GiB RAM, %s. Kafka, the broker, the producer and the load client all share "
    "these two cores (and other engineers' jobs may run between locked benchmarks)." % (
        env["NPROC"], env["CPU_MODEL"] or "unknown CPU", mem_gib, env["KERNEL"]),
    "- Software: Apache Kafka 3.9.1 (KRaft, one node on loopback, -Xmx512m), topics with 6 partitions; librdkafka %s; "
    "firehose-broker `--view.enabled=false --auth.anonymous_read --stream.max_connections=20000`, stream defaults "
    "(client queue 4 MiB, drain grace 500 ms)." % env["RDKAFKA"],
    centrifugo_line,
    "- Input: `firehose-sim --profile mozilla-2010 --builders 1000 --logs=false --count %s --seed 7` "
    "(status events, %s B on average; %s builders). Producer: build/bench/pacer (bench/fanout/pacer.c, librdkafka, "
    "lz4, acks=all, linger.ms=1) at a fixed rate, each record stamped with a `sentns` extension attribute "
    "(CLOCK_REALTIME) just before it is produced." % (fmt(int(env["INPUT_COUNT"])), env["AVG_BYTES"], env["NBUILDERS"]),
    "- Clients: build/bench/loadclient (bench/fanout/loadclient.c, epoll, 2 threads): %s connections each "
    "subscribing `{\"builder\": NAME}` (one builder each) and %s subscribing `{}`, `from: latest`; latency = receive "
    "time - `sentns` on the same clock, 10 us buckets. A fresh set of connections for every run." % (
        fmt(int(env["FILTERED"])), env["FULL"]),
    "- Ladder: each offered rate for %s s; it stops after the first rate not sustained. Sustained = every expected "
    "delivery arrived (each event to its builder's client and to every full-stream client), no disconnect, no "
    "error, and the last delivery at most %s ms after the producer stopped. Server CPU = utime+stime of the "
    "server process over the producing interval (100%% = one core); RSS = VmRSS at the end of it." % (
        env["STEP_S"], env["MAX_LAG_MS"]),
    "- Goals (DESIGN.md): >= 1,000,000 deliveries/s with no drops; p99 <= 10 ms at 10,000 events/s; RSS after 10M "
    "events within 5% of RSS after 1M and under 256 MiB.",
    "",
] + summary + ["", "### Rate ladder", ""] + ladder_table() + [
    "", "### Latency at %s events/s (%s runs of %s s; median (min-max))" % (fmt(int(env["LAT_RATE"])), env["LAT_RUNS"], env["LAT_S"]), ""
] + lat_table() + [""] + ratio_lines() + [
    "### Memory soak: %s status events, %s subscribers (one builder each), firehose-sim | firehose-emit flat out" % (
        fmt(int(env["SOAK_EVENTS"])), env["SOAK_SUBS"]), ""
] + soak_lines()

text = "\n".join(section)
print(text)
if env.get("WRITE_DOC") == "1":
    subprocess.run([sys.executable, env["WRITER"], "fanout", env["DOC"]], input=text.encode(), check=True)
