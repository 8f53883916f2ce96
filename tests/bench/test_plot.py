"""bench/plot.py draws well-formed, deterministic SVG charts with the series and points it is given,
ticks at round numbers; and bench/fanout/report.py turns a fan-out run's TSVs into the three plots
and the section that links them. No Kafka, no servers: the TSVs are written here."""

import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import plot  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


def series_of(svg):
    """{series name: (polyline point count, circle count)} of a rendered chart."""
    out = {}
    for g in ET.fromstring(svg).iter(SVG + "g"):
        if g.get("class") == "series":
            line = g.find(SVG + "polyline")
            out[g.get("data-name")] = (len(line.get("points").split()) if line is not None else 0,
                                       len(g.findall(SVG + "circle")))
    return out


def test_chart_is_wellformed_svg_with_every_series_point_and_legend_entry():
    svg = plot.render("Latency <p99> & co", "offered events/s", "ms", [
        plot.Series("a p50", [(2000, 3.3), (5000, 11.9), (10000, 12.5)]),
        plot.Series("a p99", [(2000, 523.0), (5000, 37.0)], dash="dash"),
        plot.Series("b", [(2000, 75.7)], color="#123456", dash="dot"),
    ], xlog=True, ylog=True)
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    assert root.find(SVG + "title").text == "Latency <p99> & co"
    assert series_of(svg) == {"a p50": (3, 3), "a p99": (2, 2), "b": (0, 1)}
    legend = [g.find(SVG + "text").text for g in root.iter(SVG + "g") if g.get("class") == "legend"]
    assert legend == ["a p50", "a p99", "b"]
    assert plot.render("Latency <p99> & co", "offered events/s", "ms", [
        plot.Series("a p50", [(2000, 3.3), (5000, 11.9), (10000, 12.5)]),
        plot.Series("a p99", [(2000, 523.0), (5000, 37.0)], dash="dash"),
        plot.Series("b", [(2000, 75.7)], color="#123456", dash="dot"),
    ], xlog=True, ylog=True) == svg, "the same input must give the same bytes"


def test_ticks_are_round_numbers_covering_the_data():
    lo, hi, ticks = plot.linear_ticks(0, 55086)
    assert (lo, hi) == (0, 60000) and ticks == [0, 10000, 20000, 30000, 40000, 50000, 60000]
    lo, hi, ticks = plot.linear_ticks(13.2, 17.9)
    assert ticks == [13.0, 14.0, 15.0, 16.0, 17.0, 18.0]
    assert plot.log_ticks(2.4, 5174) == (1.0, 10000.0, [1.0, 10.0, 100.0, 1000.0, 10000.0])
    assert plot.log_ticks(2000, 100000)[2] == [1000, 2000, 5000, 10000, 20000, 50000, 100000]
    assert [plot.label(v) for v in (0.05, 20, 1500, 25000, 2500000)] == ["0.05", "20", "1,500", "25k", "2.5M"]


def test_log_axis_leaves_out_nonpositive_points_and_dense_series_lose_markers():
    svg = plot.render("t", "x", "y", [plot.Series("s", [(1, 0), (2, 5), (3, 50)]),
                                      plot.Series("d", [(i, i) for i in range(1, 200)], markers=False)], ylog=True)
    assert series_of(svg) == {"s": (2, 2), "d": (199, 0)}
    empty = plot.render("t", "x", "y", [])
    assert "no data" in empty and ET.fromstring(empty) is not None


PACER = "pacer: sent={sent} builder_events={sent} failed=0 rate={rate} elapsed=5.000 start_ns=1 end_ns=5000000000"
LC = ("loadclient: conns=110 subscribed=110 deliveries={d} filtered=0 full={full} full_min=0 full_max=0 first_ns=1 "
      "last_ns=5000000000 deliveries_per_s={dps} disconnects=0 close_codes=- errors=0 samples={d} p50_ms={p50} "
      "p99_ms={p99} p999_ms={p999} max_ms=9.00")


def result(server, kind, rate, filtered, dps, p50, check="all"):
    sent = rate * 5
    return "\t".join([server, kind, str(rate), PACER.format(sent=sent, rate=rate),
                      LC.format(d=dps * 5, full=10 * sent, dps=dps, p50=p50, p99=p50 * 4, p999=p50 * 6),
                      "30", "204800", "yes", "5", str(10 * sent), str(filtered), check])


def report_env(tmp_path, doc, **extra):
    """bench/fanout/report.py's environment for results.tsv and soak.tsv in tmp_path, writing doc."""
    return dict(os.environ, RESULTS=str(tmp_path / "results.tsv"), SOAK=str(tmp_path / "soak.tsv"), DOC=str(doc),
                FILTERED="1000", FULL="10", NBUILDERS="1000", AVG_BYTES="656", STEP_S="5", LAT_RATE="10000",
                LAT_RUNS="1", LAT_S="5", MAX_LAG_MS="1000", SWEEP_RATE="5000", SWEEP_SUBS="10 100",
                SOAK_EVENTS="300000", SOAK_SUBS="100", CENTRIFUGO_NOTE="", CENTRIFUGO_VERSION="Centrifugo v6 (test)",
                INPUT_COUNT="1200000", NPROC="2", KERNEL="Linux", DATE="2026-12-01T00:00:00Z", HZ="100",
                CPU_MODEL="test CPU", MEM_KB="1048576", RDKAFKA="2.0.2", WRITER=str(ROOT / "bench" / "write_section.py"),
                WRITE_DOC="1", **extra)


def test_fanout_report_writes_three_plots_and_links_them(tmp_path):
    rows = [result(s, "step", r, 1000, r * 11, p) for s in ("centrifugo", "firehose")
            for r, p in ((2000, 3.0), (5000, 8.0))]
    rows += [result(s, "sweep", 5000, n, 5000 * (10 + n / 1000), 2.0, "full") for s in ("centrifugo", "firehose")
             for n in (10, 100)]
    (tmp_path / "results.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "soak.tsv").write_text("start\t0\t15000\t0\n" + "".join(
        "sample\t%d\t%d\t%.3f\n" % (i * 30000, 300000 + i * 100, i * 0.5) for i in range(1, 11))
        + "30000\t30001\t300500\t1\nend\t300000\t301500\t5\tcpu_ticks=300\tloadclient: conns=100 deliveries=300\n")
    doc = tmp_path / "docs" / "performance.md"
    doc.parent.mkdir()
    doc.write_text("# Performance\n")
    env = report_env(tmp_path, doc, KNOBS="FANOUT_SWEEP_SUBS=10\\ 100 ")
    report = [sys.executable, str(ROOT / "bench" / "fanout" / "report.py")]
    subprocess.run(report, env=env, check=True, stdout=subprocess.DEVNULL, timeout=60)
    plots = doc.parent / "plots"
    svgs = {p.name: p.read_text() for p in plots.iterdir()}
    assert sorted(svgs) == ["fanout-deliveries-vs-subscribers.svg", "fanout-latency.svg", "fanout-soak-rss.svg"]
    assert series_of(svgs["fanout-deliveries-vs-subscribers.svg"]) == {"Centrifugo": (2, 2), "firehose-broker": (2, 2)}
    lat = series_of(svgs["fanout-latency.svg"])
    assert sorted(lat) == sorted("%s %s" % (s, p) for s in ("Centrifugo", "firehose-broker") for p in ("p50", "p99", "p999"))
    assert set(lat.values()) == {(2, 2)}
    assert series_of(svgs["fanout-soak-rss.svg"]) == {"firehose-broker": (13, 13)}   # start, 10 samples, mark, end
    text = doc.read_text()
    for name in svgs:
        assert "](plots/%s)" % name in text
    assert "- Command: `FANOUT_SWEEP_SUBS=10\\ 100 flock /tmp/firehose-bench.lock bash bench/fanout.sh`" in text
    assert "| Centrifugo | 100 |" in text and "full-stream: 250,000 / 250,000" in text
    subprocess.run(report, env=env, check=True, stdout=subprocess.DEVNULL, timeout=60)
    assert {p.name: p.read_text() for p in plots.iterdir()} == svgs, "a re-run must not change the plots"


def test_fanout_report_puts_a_second_broker_beside_the_first_and_centrifugo(tmp_path):
    # FANOUT_BROKER_B's rows (server firehose-b) reach every per-server table, the ratios and the
    # plots; its build exports no stage histograms, so it gets a sentence instead of stage rows
    servers = ("centrifugo", "firehose", "firehose-b")
    rows = [result(s, "step", 2000, 1000, 22000, 3.0) for s in servers]
    rows += [result(s, "sweep", 5000, 10, 50100, 2.0, "full") for s in servers]
    p50 = {"centrifugo": 4.0, "firehose": 1.0, "firehose-b": 2.0}
    ticks = {"centrifugo": "200", "firehose": "50", "firehose-b": "100"}
    stages = {"firehose": "st_kafka=0.50/2.00/3.00 st_route=0.01/0.10/0.20 st_write=0.02/0.30/0.40 "
                          "st_total=0.60/2.50/3.50 st_n=1000", "firehose-b": "", "centrifugo": ""}
    rows += [result(s, "latency", 10000, 1000, 110000, p50[s]) + "\t" + ticks[s] + "\t" + stages[s]
             for s in servers for _ in range(2)]
    (tmp_path / "results.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "soak.tsv").write_text("")
    doc = tmp_path / "docs" / "performance.md"
    doc.parent.mkdir()
    doc.write_text("# Performance\n")
    env = report_env(tmp_path, doc, KNOBS="", BROKER_B="/opt/base/bin/firehose-broker",
                     BROKER_B_ARGS="--view.enabled=false", BROKER_B_LABEL="firehose-broker abc1234")
    subprocess.run([sys.executable, str(ROOT / "bench" / "fanout" / "report.py")], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
    text = doc.read_text()
    for table_row in ("| firehose-broker abc1234 | 2,000 |", "| firehose-broker abc1234 | 10 |",
                      "| firehose-broker abc1234 | 2 | 2 of 2 |"):
        assert table_row in text
    assert "- firehose-broker abc1234: `/opt/base/bin/firehose-broker` with `--view.enabled=false`" in text
    assert "Ratios, firehose-broker / Centrifugo, same run" in text
    assert "Ratios, firehose-broker / firehose-broker abc1234, same run" in text
    assert "Ratios, firehose-broker / firehose-broker abc1234, at each sweep step:" in text
    # p99 = 4 x p50; CPU 30% for all; deliveries per CPU-second = 550,000 x 100 / ticks
    assert "- firehose-broker / firehose-broker abc1234 at 10,000 events/s (medians of the latency runs): " \
           "p99 **0.50x**, CPU **1.00x**, deliveries per CPU-second **2.00x**." in text
    assert "- firehose-broker / Centrifugo at 10,000 events/s (medians of the latency runs): p99 **0.25x**" in text
    ladder = [line.split(" | ")[0] for line in text.splitlines() if " | 2,000 | 10,000 |" in line]
    assert ladder == ["| firehose-broker", "| firehose-broker abc1234", "| Centrifugo"]
    assert "| firehose-broker | kafka | Kafka timestamp" in text and "| firehose-broker abc1234 | kafka" not in text
    assert "firehose-broker abc1234 exports none of these histograms" in text
    svgs = {p.name: p.read_text() for p in (doc.parent / "plots").iterdir()}
    assert sorted(series_of(svgs["fanout-deliveries-vs-subscribers.svg"])) == [
        "Centrifugo", "firehose-broker", "firehose-broker abc1234"]
    assert len(series_of(svgs["fanout-latency.svg"])) == 9
