/* memory: the parts of firehose_memory_bytes read at each scrape (see memory.h). */
#include "memory.h"

#include <malloc.h>
#include <sqlite3.h>

#include "fh_consumer.h"
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
                  "Times free heap was given back to the system (broker.malloc_trim_bytes).", 0),
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

void memory_trim(broker_memory *m, long long grow)
{
    if (grow <= 0)
        return;
    size_t free_now = mallinfo2().fordblks;
    if (free_now < m->trim_base)
        m->trim_base = free_now; /* reused since: a later trim counts from here */
    if (free_now - m->trim_base <= (size_t)grow)
        return;
    malloc_trim(0);
    fh_metric_add(m->trims, 1);
    m->trim_base = mallinfo2().fordblks;
}

void memory_tune_malloc(long long arenas, long long mmap_threshold)
{
    if (arenas > 0)
        mallopt(M_ARENA_MAX, (int)arenas);
    if (mmap_threshold > 0)
        mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold);
}
