"""bench/plot.py draws well-formed, deterministic SVG charts with the series and points it is given,
ticks at round numbers."""

import pathlib
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

