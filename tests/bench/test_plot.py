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
    env = dict(os.environ, RESULTS=str(tmp_path / "results.tsv"), SOAK=str(tmp_path / "soak.tsv"), DOC=str(doc),
               FILTERED="1000", FULL="10", NBUILDERS="1000", AVG_BYTES="656", STEP_S="5", LAT_RATE="10000",
               LAT_RUNS="1", LAT_S="5", MAX_LAG_MS="1000", SWEEP_RATE="5000", SWEEP_SUBS="10 100",
               SOAK_EVENTS="300000", SOAK_SUBS="100", CENTRIFUGO_NOTE="", CENTRIFUGO_VERSION="Centrifugo v6 (test)",
               INPUT_COUNT="1200000", NPROC="2", KERNEL="Linux", DATE="2026-12-01T00:00:00Z", HZ="100",
               CPU_MODEL="test CPU", MEM_KB="1048576", RDKAFKA="2.0.2", WRITER=str(ROOT / "bench" / "write_section.py"),
               KNOBS="FANOUT_SWEEP_SUBS=10\\ 100 ", WRITE_DOC="1")
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
    assert "- Command: `FANOUT_SWEEP_SUBS=10\\ 100 flock /tmp/firehose-cpu.lock bash bench/fanout.sh`" in text
    assert "| Centrifugo | 100 |" in text and "full-stream: 250,000 / 250,000" in text
    subprocess.run(report, env=env, check=True, stdout=subprocess.DEVNULL, timeout=60)
    assert {p.name: p.read_text() for p in plots.iterdir()} == svgs, "a re-run must not change the plots"
