#!/usr/bin/env python3
"""Line charts as SVG, from the Python standard library alone, for the benchmarks' docs.

    import plot
    svg = plot.render(title="...", xlabel="...", ylabel="...", ylog=True,
                      series=[plot.Series("firehose-broker p99", [(2000, 152.2), (5000, 189.3)])])
    plot.write("docs/plots/x.svg", svg)

Axes with ticks at round numbers (1, 2, 5 x 10^k on a linear axis; decades, with 2 and 5 between
them when the axis spans few decades, on a log axis), any number of series (a polyline with a
marker per point unless markers=False; each marker carries a <title> with its values) and a
legend to the right of the plot. Output is deterministic: the same input gives the same bytes (no
dates, no ids, coordinates rounded to 0.1 px), so a re-run of a benchmark diffs cleanly. Each
series is one <g class="series" data-name="NAME"> holding its <polyline> (when it has two points
or more) and one <circle> per point, which is what the tests count.
On a log axis points whose value there is <= 0 are left out (they have no place on it).
"""
import math
import os
from xml.sax.saxutils import escape, quoteattr

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
DASHES = {"solid": None, "dash": "7 4", "dot": "2 3", "dashdot": "7 3 2 3"}


class Series:
    """One line: name (legend text), points [(x, y), ...], colour (CSS colour; None: from the
    palette by position), dash (a key of DASHES), markers (a circle per point; off for dense
    series, which are then the polyline alone)."""

    def __init__(self, name, points, color=None, dash="solid", markers=True):
        if dash not in DASHES:
            raise ValueError("dash %r: one of %s" % (dash, ", ".join(DASHES)))
        self.name = name
        self.points = [(float(x), float(y)) for x, y in points]
        self.color = color
        self.dash = dash
        self.markers = markers


def label(v, short=None):
    """A tick label: 0.5, 20, 1,500, 20k, 2.5M. short (default: v >= 10,000): thousands as k, so
    one axis can label all its ticks alike."""
    a = abs(v)
    if a >= 1e6:
        return "%gM" % round(v / 1e6, 3)
    if a >= 1000 and (a >= 1e4 if short is None else short):
        return "%gk" % round(v / 1e3, 3)
    if a >= 1000:
        return format(int(round(v)), ",")
    return "%g" % round(v, 6)


def nice_step(span, count):
    """The round step (1, 2, 2.5 or 5 x 10^k) that cuts span into the number of intervals nearest
    to count."""
    mag = 10 ** math.floor(math.log10(span / max(count, 1)))
    return min((m * mag for m in (1, 2, 2.5, 5, 10)), key=lambda st: (abs(span / st - count), st))


def linear_ticks(lo, hi, count=5):
    """(axis low, axis high, ticks): the data range widened to whole steps."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, count)
    digits = max(0, -int(math.floor(math.log10(step))) + 1)
    a, b = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = [round(i * step, digits) for i in range(a, b + 1)]
    return ticks[0], ticks[-1], ticks


def log_ticks(lo, hi):
    """(axis low, axis high, ticks) on a log axis: whole decades around the data, with 2 and 5
    between them when it spans at most two decades (lo and hi > 0)."""
    a, b = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    if b == a:
        b += 1
    mults = (1, 2, 5) if b - a <= 2 else (1,)
    ticks = [round(m * 10.0 ** e, max(0, -e)) for e in range(a, b + 1) for m in mults]
    ticks = [t for t in ticks if t <= 10.0 ** b * 1.0001]
    return 10.0 ** a, 10.0 ** b, ticks


class Axis:
    def __init__(self, values, log, zero, count):
        if log:
            values = [v for v in values if v > 0] or [1.0, 10.0]
            self.lo, self.hi, self.ticks = log_ticks(min(values), max(values))
        else:
            values = (values or [0.0, 1.0]) + ([0.0] if zero else [])
            self.lo, self.hi, self.ticks = linear_ticks(min(values), max(values), count)
        self.log = log
        self.short = max(abs(t) for t in self.ticks) >= 1e4

    def label(self, v):
        return label(v, self.short)

    def frac(self, v):
        if self.log:
            return (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)

    def usable(self, v):
        return v > 0 or not self.log


def f1(v):
    """A coordinate, rounded so output does not depend on float noise."""
    s = "%.1f" % v
    return "0.0" if s == "-0.0" else s


def render(title, xlabel, ylabel, series, xlog=False, ylog=False, yzero=False, width=760, height=440,
           note=None):
    """The chart as an SVG document (str). yzero: the linear y axis includes 0. note: a line of
    small text under the x axis label (e.g. the run it comes from)."""
    left, top, legend_w = 72, 44, 200
    bottom = 64 if note else 50
    pw, ph = width - left - legend_w, height - top - bottom
    pts = [(s, [(x, y) for x, y in s.points if (x > 0 or not xlog) and (y > 0 or not ylog)]) for s in series]
    xa = Axis([x for _, p in pts for x, _ in p], xlog, False, 6)
    ya = Axis([y for _, p in pts for _, y in p], ylog, yzero, 5)

    def X(v):
        return left + pw * xa.frac(v)

    def Y(v):
        return top + ph * (1 - ya.frac(v))

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif" font-size="12">' % (width, height, width, height),
           "<title>%s</title>" % escape(title),
           '<rect width="%d" height="%d" fill="#ffffff"/>' % (width, height),
           '<text x="%s" y="24" font-size="15" font-weight="bold" text-anchor="middle">%s</text>' % (
               f1(left + pw / 2), escape(title))]
    out.append('<g class="grid" stroke="#e0e0e0" stroke-width="1">')
    for t in xa.ticks:
        out.append('<line x1="%s" y1="%d" x2="%s" y2="%d"/>' % (f1(X(t)), top, f1(X(t)), top + ph))
    for t in ya.ticks:
        out.append('<line x1="%d" y1="%s" x2="%d" y2="%s"/>' % (left, f1(Y(t)), left + pw, f1(Y(t))))
    out.append("</g>")
    out.append('<g class="axes" stroke="#333333" stroke-width="1" fill="none">'
               '<rect x="%d" y="%d" width="%d" height="%d"/></g>' % (left, top, pw, ph))
    out.append('<g class="xticks" text-anchor="middle">')
    for t in xa.ticks:
        out.append('<text x="%s" y="%d">%s</text>' % (f1(X(t)), top + ph + 16, escape(xa.label(t))))
    out.append("</g>")
    out.append('<g class="yticks" text-anchor="end">')
    for t in ya.ticks:
        out.append('<text x="%d" y="%s">%s</text>' % (left - 6, f1(Y(t) + 4), escape(ya.label(t))))
    out.append("</g>")
    out.append('<text class="xlabel" x="%s" y="%d" text-anchor="middle">%s</text>' % (
        f1(left + pw / 2), top + ph + 36, escape(xlabel + (" (log scale)" if xlog else ""))))
    out.append('<text class="ylabel" x="16" y="%s" text-anchor="middle" transform="rotate(-90 16 %s)">%s</text>' % (
        f1(top + ph / 2), f1(top + ph / 2), escape(ylabel + (" (log scale)" if ylog else ""))))
    if note:
        out.append('<text class="note" x="%s" y="%d" text-anchor="middle" font-size="10" fill="#666666">%s</text>' % (
            f1(left + pw / 2), top + ph + 54, escape(note)))

    lx, ly = left + pw + 16, top + 8
    for i, (s, p) in enumerate(pts):
        color = s.color or PALETTE[i % len(PALETTE)]
        dash = DASHES[s.dash]
        stroke = 'stroke=%s stroke-width="2" fill="none"%s' % (
            quoteattr(color), ' stroke-dasharray="%s"' % dash if dash else "")
        out.append("<g class=\"series\" data-name=%s>" % quoteattr(s.name))
        if len(p) > 1 or (p and not s.markers):
            out.append('<polyline %s points="%s"/>' % (stroke, " ".join("%s,%s" % (f1(X(x)), f1(Y(y))) for x, y in p)))
        for x, y in p if s.markers else ():
            out.append('<circle cx="%s" cy="%s" r="3" fill=%s><title>%s</title></circle>' % (
                f1(X(x)), f1(Y(y)), quoteattr(color), escape("%s: %s, %s" % (s.name, label(x, False), label(y, False)))))
        out.append("</g>")
        out.append('<g class="legend"><line x1="%d" y1="%d" x2="%d" y2="%d" %s/>'
                   '<text x="%d" y="%d">%s</text></g>' % (
                       lx, ly + 18 * i, lx + 24, ly + 18 * i, stroke, lx + 30, ly + 18 * i + 4, escape(s.name)))
    if not any(p for _, p in pts):
        out.append('<text x="%s" y="%s" text-anchor="middle" fill="#666666">no data</text>' % (
            f1(left + pw / 2), f1(top + ph / 2)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(path, svg):
    """Writes svg to path (its directory created if missing), through a temporary file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(svg)
    os.replace(path + ".tmp", path)
