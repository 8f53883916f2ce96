/* memory: what the broker's memory is for, on /metrics as firehose_memory_bytes{part=...} beside
 * process_resident_memory_bytes:
 *   ring            the stream's recent events held for resume, and its slots (set by the
 *                   stream thread as events arrive; capped by stream.ring_bytes)
 *   conn_queues     outbound bytes queued for stream clients (stream.total_queue_bytes)
 *   kafka_prefetch  what librdkafka may hold prefetched for the open consumers (their configured
 *                   bound: fh_consumer_prefetch_bound)
 *   sqlite          SQLite's heap: the page caches and statements of the view and the webhook
 *                   store (view.sqlite_cache_kib, ...)
 *   answer_cache    rendered REST answers (view.cache_bytes)
 *   malloc_free     heap the allocator holds free for reuse (not yet given back to the system)
 * The parts other than ring are read when /metrics is scraped (memory_refresh). */
#ifndef FH_BROKER_MEMORY_H
#define FH_BROKER_MEMORY_H

#include "fh_metrics.h"

#define FH_MEMORY_HELP                                                                             \
    "Memory the broker holds, by what it is for (part); see docs/operations.md#memory."

typedef struct fh_stream fh_stream;
typedef struct fh_view fh_view;
typedef struct fh_http fh_http;

typedef struct broker_memory {
    fh_stream *stream; /* NULL: none (conn_queues 0) */
    fh_view *view;     /* NULL: none (answer_cache 0) */
    fh_http *http;     /* NULL: none (no trims: they follow its connections) */
    fh_metric *queues, *prefetch, *sqlite, *acache, *malloc_free, *trims, *looks;
    long conns_peak; /* the most connections since the last fall (memory_trim's thread) */
} broker_memory;

/* Registers the gauges the scrape refreshes (ring is the stream's own). */
void memory_register(broker_memory *m);

/* Reads every part into its gauge. Any thread (the /metrics handler); m may be NULL. */
void memory_refresh(broker_memory *m);

/* Load fell when the connections open now are at least MEMORY_FALL_CONNS fewer, and at least a
 * quarter fewer, than the most open since the last fall. */
#define MEMORY_FALL_CONNS 64
static inline int memory_load_fell(long peak, long now)
{
    return peak - now >= MEMORY_FALL_CONNS && peak - now >= peak / 4;
}

/* Gives free heap back to the system (malloc_trim) after a burst: when the port's connections
 * fell (memory_load_fell) and the allocator holds more than min_free bytes free. What a burst
 * (a thousand clients) freed stays resident otherwise. Under steady load the free heap swings
 * as it is reused; a trim then gives back pages that fault straight back in, so a growth in
 * free heap alone does not trim. min_free 0: never. One thread (a timer). */
void memory_trim(broker_memory *m, long long min_free);

/* Tunes glibc malloc before the threads start. arenas (M_ARENA_MAX): each thread that allocates
 * would otherwise get an arena of its own (up to 8 per core), each keeping what was freed in it
 * for itself. mmap_threshold (M_MMAP_THRESHOLD): blocks this large or larger (librdkafka's fetch
 * buffers) get a mapping of their own, given back to the system when freed; glibc's default
 * raises the threshold to 32 MiB after the first such block is freed, so later ones stay in an
 * arena. 0 (either): glibc's default. */
void memory_tune_malloc(long long arenas, long long mmap_threshold);

#endif
