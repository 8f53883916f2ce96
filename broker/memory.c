/* memory: the parts of firehose_memory_bytes read at each scrape (see memory.h). */
#include "memory.h"

#include <malloc.h>
#include <sqlite3.h>

#include "fh_consumer.h"
#include "http.h"
#include "stream/stream.h"
#include "view/view.h"

static const fh_metric_row memory_metrics[] = {
    FH_METRIC_ROW(broker_memory, queues, "firehose_memory_bytes", "part=\"conn_queues\"",
                  FH_MEMORY_HELP, 1),
    FH_METRIC_ROW(broker_memory, prefetch, "firehose_memory_bytes", "part=\"kafka_prefetch\"",
                  FH_MEMORY_HELP, 1),
    FH_METRIC_ROW(broker_memory, sqlite, "firehose_memory_bytes", "part=\"sqlite\"", FH_MEMORY_HELP,
                  1),
    FH_METRIC_ROW(broker_memory, acache, "firehose_memory_bytes", "part=\"answer_cache\"",
                  FH_MEMORY_HELP, 1),
    FH_METRIC_ROW(broker_memory, malloc_free, "firehose_memory_bytes", "part=\"malloc_free\"",
                  FH_MEMORY_HELP, 1),
    FH_METRIC_ROW(broker_memory, trims, "firehose_memory_trims_total", NULL,
                  "Times free heap was given back to the system after connections fell "
                  "(broker.malloc_trim_bytes).",
                  0),
    FH_METRIC_ROW(broker_memory, looks, "firehose_memory_trim_looks_total", NULL,
                  "Times the connections were looked at for a fall that trims the free heap "
                  "(every 5 s).",
                  0),
};

void memory_register(broker_memory *m)
{
    fh_metrics_register(m, memory_metrics, sizeof(memory_metrics) / sizeof(memory_metrics[0]));
}

void memory_refresh(broker_memory *m)
{
    if (!m)
        return;
    fh_metric_set(m->queues, (long long)fh_stream_queued_bytes(m->stream));
    fh_metric_set(m->prefetch, fh_consumer_prefetch_bound());
    fh_metric_set(m->sqlite, (long long)sqlite3_memory_used());
    fh_metric_set(m->acache, (long long)view_cache_bytes(m->view));
    /* free chunks in every arena, fastbins included */
    struct mallinfo2 mi = mallinfo2();
    fh_metric_set(m->malloc_free, (long long)mi.fordblks);
}

void memory_trim(broker_memory *m, long long min_free)
{
    long peak;
    long now = fh_http_connections(m->http, &peak);
    fh_metric_add(m->looks, 1);
    if (peak > m->conns_peak)
        m->conns_peak = peak;
    if (!memory_load_fell(m->conns_peak, now))
        return;
    m->conns_peak = now; /* this fall is seen; the next counts from here */
    if (min_free <= 0 || mallinfo2().fordblks <= (size_t)min_free)
        return;
    malloc_trim(0);
    fh_metric_add(m->trims, 1);
}

void memory_tune_malloc(long long arenas, long long mmap_threshold)
{
    if (arenas > 0)
        mallopt(M_ARENA_MAX, (int)arenas);
    if (mmap_threshold > 0)
        mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold);
}
