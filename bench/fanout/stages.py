#!/usr/bin/env python3
"""The firehose broker's stage histograms over one run: two /metrics texts (before, after) in,
one line out with each stage's p50/p99/p999 in ms over the observations between them:

    stages.py BEFORE AFTER
    st_kafka=0.62/2.95/4.88 st_route=0.05/0.61/1.90 st_write=0.03/0.48/2.10 st_total=0.80/4.20/7.70 st_n=110000

Stages (docs/stream.md, Metrics): kafka = Kafka timestamp -> taken from the consumer (per
record), route = taken -> queued, write = queued -> written, total = timestamp -> written (per
delivery). A quantile is read off the cumulative buckets, linearly within its bucket (as
Prometheus' histogram_quantile does); past the last finite bound it is that bound. A stage whose
histogram the AFTER file lacks is left out of the line (an older broker may export some or none;
the report shows such a stage as "-"), and a file with none of them gives an empty line.
"""
import re
import sys

STAGES = (("kafka", "firehose_stream_kafka_delay_seconds"), ("route", "firehose_stream_route_delay_seconds"),
          ("write", "firehose_stream_write_delay_seconds"), ("total", "firehose_stream_delivery_delay_seconds"))


def buckets(text, name):
    """[(le seconds, cumulative count)] of one histogram, in order; [] when absent."""
    return [(float(le), float(v)) for le, v in re.findall(r'^%s_bucket\{le="([^"]+)"\} (\S+)$' % name, text, re.M)]


def quantile(q, bs):
    total = bs[-1][1] if bs else 0
    if total <= 0:
        return float("nan")
    rank, lo_le, lo_n = q * total, 0.0, 0.0
    for le, n in bs:
        if n >= rank:
            if le == float("inf"):
                return lo_le
            return lo_le + (le - lo_le) * ((rank - lo_n) / (n - lo_n) if n > lo_n else 1.0)
        lo_le, lo_n = le, n
    return lo_le


def main():
    before, after = (open(p).read() for p in sys.argv[1:3])
    out = []
    for short, name in STAGES:
        b0, b1 = buckets(before, name), buckets(after, name)
        if not b1:
            continue
        if len(b0) != len(b1):
            b0 = [(le, 0.0) for le, _ in b1]
        d = [(le, n1 - n0) for (le, n1), (_, n0) in zip(b1, b0)]
        out.append("st_%s=%s" % (short, "/".join("%.2f" % (1000 * quantile(q, d)) for q in (0.5, 0.99, 0.999))))
        if short == "total":
            out.append("st_n=%d" % d[-1][1])
    if out:
        print(" ".join(out))


if __name__ == "__main__":
    main()
