/* fh_summary: the analytics of firehose-replay --summary, computed in one pass in bounded memory.
 *
 * What it computes (docs/consumers.md, "Summary"):
 *   steps          step.finished duration_s per (builder, step name): count, mean, min, max, p50,
 * p95 build_duration build.finished duration_s per (builder, UTC day of complete_at): the same
 * stats failure_rate   build.finished results per builder and overall; rate = not green / finished
 *   queue_wait     build.started started_at - buildrequest.new submitted_at of the same request,
 *                  per builder and overall
 *
 * Bounds: each statistic keeps at most `samples` values per key. Up to that many the quantiles are
 * exact (nearest rank: the value at rank ceil(q * n) of the sorted values); past it the values are
 * a uniform reservoir sample (algorithm R, fixed seed, so a run is reproducible) and the quantiles
 * are estimates, marked "exact": false. count, mean, min and max are always exact. Each table holds
 * at most `max_keys` keys; values of further keys go to one "(other)" entry and are counted in
 * "capped". Requests waiting for their build are remembered up to `max_pending`; past it new
 * requests are not tracked (counted). Memory is at most about
 * (3 * max_keys + 2) * samples * 8 bytes + max_pending * 32 bytes. */
#ifndef FH_SUMMARY_H
#define FH_SUMMARY_H

#include <stdio.h>

#include "fh_error.h"
#include "fh_json.h"

typedef struct fh_summary_opts {
    size_t max_keys;    /* keys per table */
    unsigned samples;   /* values kept per key */
    size_t max_pending; /* build requests remembered between buildrequest.new and build.started */
} fh_summary_opts;

typedef struct fh_summary fh_summary;

/* Returns FH_ERR_NOMEM or FH_ERR_INVAL (a zero bound). Caller frees with fh_summary_free. */
fh_err fh_summary_new(const fh_summary_opts *o, fh_summary **out);

/* Feeds one event (the root of a parsed CloudEvent; only type and data are read; NULL counts an
 * event the caller already knows is of no interest). Events of other
 * types, and events lacking a field a statistic needs, are counted as seen and otherwise ignored.
 */
void fh_summary_add(fh_summary *s, const fh_jv *root);

/* Writes the report as one JSON object (pretty enough to read, one entry per line); `extra` (may
 * be NULL) is inserted verbatim as the first members, e.g. "\"records\":12,". Returns 0 or -1 on an
 * output error. Sorts the samples it holds: call it once, at the end. */
int fh_summary_write(fh_summary *s, const char *extra, FILE *out);

void fh_summary_free(fh_summary *s);

/* Formats x as the shorter of %.15g and %.17g that reads back as exactly x. Returns buf. */
const char *fh_summary_num(double x, char *buf, size_t size);

#endif
