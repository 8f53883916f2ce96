/* stream: the broker's live fan-out.
 *
 * Threads:
 *  - the stream thread owns everything below: the Kafka consumer that reads every partition of the
 *    events and logs topics, the ring of recent events, the subscriptions and their routing index,
 *    and the WebSocket sockets (epoll). It never blocks on a client.
 *  - libmicrohttpd threads run the HTTP handlers: they check the request, then hand a new
 *    WebSocket socket or SSE client to the stream thread through a mutex-protected inbox and an
 *    eventfd. SSE output is copied out of the client's queue by libmicrohttpd's content reader,
 *    under the client's mutex.
 *  - the catch-up thread serves resumes older than the ring from Kafka, every job in one shared
 *    pass (catchup.c), with flow control from the stream thread (credit per job), and posts
 *    batches to the inbox. While no job is active it also asks Kafka how many partitions the
 *    topics have (every
 *    kafka.partition_check_ms); the stream thread's partition timer takes the added ones on, from
 *    their beginning, so the stream thread never waits for metadata.
 *
 * Every event is decoded once, and its wire bytes are built once and shared (reference-counted)
 * by every recipient: a delivery is a small per-recipient head plus a pointer into the shared
 * bytes, written with writev.
 */
#include "internal.h"
#include "memory.h"

/* ---- Kafka side -------------------------------------------------------------------------------
 */

/* The topics the stream reads: events, logs, and (when the view derives events) the derived
 * topic last, so a cursor of a broker without derivation is the same as before. */
static int stream_topics(const fh_stream *s, const char *topics[3])
{
    const fh_config *c = &s->b->cfg;
    topics[0] = fh_kafka_topic(c, FH_TOPIC_EVENTS);
    topics[1] = fh_kafka_topic(c, FH_TOPIC_LOGS);
    topics[2] = fh_kafka_topic(c, FH_TOPIC_DERIVED);
    return fh_config_bool(c, "view.enabled") && fh_config_bool(c, "derive.enabled") ? 3 : 2;
}

/* Rebuilds the cursor order after partitions were added, and remembers the layout. Under
 * layout_mu. */
static void layout_update(fh_stream *s)
{
    fh_cursor_layout now = {s->kc->ntopics, {0}};
    int i = 0;
    for (int t = 0; t < s->kc->ntopics; t++)
        for (int p; (p = stream_part_index(s, s->kc->topics[t], now.parts[t])) >= 0; now.parts[t]++)
            s->wire[i++] = p;
    s->wire_identity = 1;
    for (int k = 0; k < i; k++)
        if (s->wire[k] != k)
            s->wire_identity = 0;
    int n = s->nlayouts;
    if (n && memcmp(&s->layouts[n - 1], &now, sizeof(now)) == 0)
        return;
    if (n == (int)(sizeof(s->layouts) / sizeof(s->layouts[0]))) {
        memmove(s->layouts, s->layouts + 1, (size_t)(n - 1) * sizeof(s->layouts[0]));
        n--;
    }
    s->layouts[n] = now;
    s->nlayouts = n + 1;
}

size_t stream_cursor_encode(fh_stream *s, const int64_t *vec, char *out, size_t size)
{
    if (s->wire_identity)
        return fh_cursor_encode(vec, s->nparts, out, size);
    for (int i = 0; i < s->nparts; i++)
        s->wvec[i] = vec[s->wire[i]];
    return fh_cursor_encode(s->wvec, s->nparts, out, size);
}

fh_err stream_from(fh_stream *s, const json_t *from, const char *text, int64_t *vec,
                   fh_wsmsg_from_kind *kind, char *errbuf, size_t errsize)
{
    int64_t *w = stream_vec_new(s);
    if (!w)
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&s->layout_mu);
    int n = s->nparts;
    /* from NULL (and no text): latest */
    fh_err rc = text ? fh_wsmsg_from_text(text, n, w, kind, errbuf, errsize)
                     : fh_wsmsg_from(from, n, w, kind, errbuf, errsize);
    if (rc == FH_ERR_PARSE) {
        /* a cursor made before partitions were added to the topics */
        const char *c = text;
        if (!text && json_is_object(from) && json_object_size(from) == 1)
            c = json_string_value(json_object_get(from, "cursor"));
        if (c && fh_cursor_decode_grown(c, s->layouts, s->nlayouts, w) == FH_OK) {
            *kind = FH_FROM_CURSOR;
            rc = FH_OK;
        }
    }
    if (rc == FH_OK && *kind != FH_FROM_LATEST)
        for (int i = 0; i < n; i++)
            vec[s->wire[i]] = w[i];
    pthread_mutex_unlock(&s->layout_mu);
    free(w);
    return rc;
}

/* fh_consumer_check's question for each partition added to the events or logs topic: takes it
 * on, from its beginning, unless every partition vector is full. */
static int on_partition_added(void *arg, const char *topic, int32_t partition, int64_t *offset)
{
    fh_stream *s = arg;
    int n = s->nparts;
    (void)offset; /* RD_KAFKA_OFFSET_BEGINNING: everything in a new partition is new */
    if (n >= s->vec_cap) {
        static int64_t warned;
        if (fh_now_ms() - warned > 60000) {
            warned = fh_now_ms();
            fh_log(FH_LOG_ERROR, "stream.partitions",
                   "topic=%s partition=%d error=\"the stream has room for %d partitions, the "
                   "number at start-up doubled plus 64; restart the broker to read more\"",
                   topic, (int)partition, s->vec_cap);
        }
        return 1;
    }
    if (!(s->part_topic[n] = strdup(topic)))
        return 1;
    s->part_id[n] = partition;
    s->hw[n] = s->evicted_hw[n] = 0;
    /* the other threads read nparts without the lock: after the partition it counts */
    __atomic_store_n(&s->nparts, n + 1, __ATOMIC_RELEASE);
    return 0;
}

/* Takes on the partitions the catch-up thread saw added to the topics (it asks Kafka, so the
 * stream thread never waits for metadata). */
static int64_t partition_timer(fh_loop *l, void *arg)
{
    fh_stream *s = arg;
    char err[256];
    int counts[FH_CONSUMER_MAX_TOPICS], added = 0;
    (void)l;
    for (int t = 0; t < s->kc->ntopics; t++)
        counts[t] = atomic_load(&s->seen_counts[t]);
    pthread_mutex_lock(&s->layout_mu);
    if (fh_consumer_grow(s->kc, counts, on_partition_added, s, &added, err, sizeof(err)))
        fh_log(FH_LOG_WARN, "stream.partitions", "error=\"%s\"", err);
    if (added)
        layout_update(s);
    pthread_mutex_unlock(&s->layout_mu);
    if (added)
        fh_log(FH_LOG_INFO, "stream.partitions", "added=%d partitions=%d events=%d logs=%d", added,
               s->nparts, s->layouts[s->nlayouts - 1].parts[0],
               s->layouts[s->nlayouts - 1].parts[1]);
    return s->check_ms;
}

static int kafka_start(fh_stream *s, char *err, size_t errsize)
{
    /* auto.offset.reset=earliest: a position Kafka deleted (the stream fell that far behind)
     * moves to the oldest record it kept, not to the end (librdkafka's default) */
    static const char *const defaults[] = {"enable.auto.commit=false",
                                           "enable.auto.offset.store=false",
                                           "auto.offset.reset=earliest",
                                           "group.id=firehose-stream",
                                           "log_level=4",
                                           "fetch.wait.max.ms=5",
                                           "fetch.error.backoff.ms=50",
                                           "queued.max.messages.kbytes=8192",
                                           "queued.min.messages=10000",
                                           "fetch.max.bytes=4194304",
                                           NULL};
    const char *topics[3];
    int nt = stream_topics(s, topics);
    fh_consumer_opts o = {.policy = FH_CONSUMER_POSITION,
                          .bootstrap = s->b->bootstrap,
                          .defaults = defaults,
                          .check_ms = s->check_ms,
                          .wake_fd = s->kafka_efd,
                          .errors_with_records = 1,
                          .thread_nice = s->nice};
    rd_kafka_topic_partition_list_t *l = NULL;
    if (fh_consumer_new(&s->b->cfg, &o, &s->kc, err, errsize) ||
        fh_consumer_assign_from(s->kc, topics, nt, 2, FH_CONSUMER_AT_END, 0, 10000, &l, err,
                                errsize))
        return -1;
    if (err[0]) {
        /* No derived topic (topics.create=false and nobody made it): the stream goes on
         * without derived events rather than not at all. */
        char q[420];
        fh_log(FH_LOG_WARN, "stream.derived_topic", "topic=%s error=%s", topics[2],
               fh_log_quote(q, sizeof(q), err));
    }
    s->rk = s->kc->rk;
    s->rkq = s->kc->q;
    if (l->cnt > MAX_PARTS) {
        /* a cursor names every partition: reading only some would lose events silently */
        snprintf(err, errsize, "%s and %s have more than %d partitions together", topics[0],
                 topics[1], MAX_PARTS);
        rd_kafka_topic_partition_list_destroy(l);
        return -1;
    }
    /* events then logs, each in id order: the cursor order */
    for (int p = 0; p < l->cnt; p++) {
        s->part_topic[p] = strdup(l->elems[p].topic);
        s->part_id[p] = l->elems[p].partition;
        s->hw[p] = s->evicted_hw[p] = l->elems[p].offset;
    }
    for (int t = 0; t < s->kc->ntopics; t++)
        atomic_init(&s->seen_counts[t], s->kc->known[t]);
    s->nparts = l->cnt;
    s->vec_cap = 2 * l->cnt + 64 < MAX_PARTS ? 2 * l->cnt + 64 : MAX_PARTS;
    rd_kafka_topic_partition_list_destroy(l);
    layout_update(s);
    return 0;
}

/* Routes one record of the events or logs topics: into the ring, then to live subscribers. */
static void kafka_route(fh_stream *s, rd_kafka_message_t *m)
{
    int p;
    if (!m->err && (p = stream_part_index(s, rd_kafka_topic_name(m->rkt), m->partition)) >= 0 &&
        m->offset >= s->hw[p]) {
        int64_t to;
        if (m->offset > s->hw[p] &&
            fh_lost_check(s->rk, s->part_topic[p], s->part_id[p], s->hw[p], m->offset, &to))
            health_records_lost("stream", s->part_topic[p], s->part_id[p], s->hw[p], to);
        s->hw[p] = m->offset + 1;
        sev *e = stream_sev_build(s, &s->doc, m, p, 1);
        if (e) {
            rd_kafka_timestamp_type_t tt;
            int64_t ts = rd_kafka_message_timestamp(m, &tt);
            e->taken_ns = s->batch_ns;
            if (ts >= 0 && tt != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
                /* a producer's clock ahead of ours: counted as no delay */
                e->kafka_ns = s->batch_real_ns - ts * 1000000;
                if (e->kafka_ns < 0)
                    e->kafka_ns = 0;
                fh_histogram_observe(s->h_kafka, e->kafka_ns);
            }
            e->seq = s->next_seq;
            stream_ring_push(s, e);
            s->next_seq++;
            fh_metric_add(s->m_in, 1);
            size_t queued = s->live_queued;
            s->route_ns = fh_mono_ns();
            stream_route(s, e);
            fh_histogram_observe_n(s->h_route, (int64_t)(s->route_ns - s->batch_ns),
                                   (long long)(s->live_queued - queued));
            sev_unref(e);
        }
    } else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        fh_log(FH_LOG_WARN, "stream.kafka", "error=\"%s\"", rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
}

/* Takes records from Kafka and routes them, one at a time, stopping while a connection past its
 * queue cap holds the stream (the rest of the batch waits in s->kbatch). */
static void kafka_drain(fh_stream *s)
{
    for (int rounds = 0; rounds < 8; rounds++) {
        if (s->kb_i == s->kb_n) {
            ssize_t n = fh_consumer_batch(s->kc, 0, s->kbatch, KAFKA_BATCH);
            s->kb_i = s->kb_n = 0;
            if (n <= 0)
                return;
            s->kb_n = (size_t)n;
            struct timespec rt;
            clock_gettime(CLOCK_REALTIME, &rt);
            s->batch_real_ns = (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec;
            s->batch_ns = fh_mono_ns();
        }
        while (s->kb_i < s->kb_n) {
            if (s->over && !stream_holds_clear(s)) {
                if (!s->held_since_ms)
                    s->held_since_ms = fh_now_ms();
                stream_flush_dirty(s);
                return;
            }
            if (s->held_since_ms) {
                fh_metric_add(s->m_held_ms, fh_now_ms() - s->held_since_ms);
                s->held_since_ms = 0;
            }
            kafka_route(s, s->kbatch[s->kb_i++]);
        }
        stream_flush_dirty(s);
        if (s->kb_n < KAFKA_BATCH)
            return;
    }
}

/* ---- the stream thread ------------------------------------------------------------------------
 */

static void heartbeat(fh_stream *s)
{
    int64_t now = fh_now_ms();
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        if (c->kind == CONN_SSE) {
            stream_sse_send(s, c, ": heartbeat\n\n", 13);
        } else if (now - c->last_active_ms > (int64_t)s->heartbeat_s * 1000) {
            stream_send_frame(s, c, FH_WS_OP_PING, "hb", 2);
        }
    }
    stream_flush_dirty(s);
}

/* Drops WebSocket connections the broker closed whose client has not read the close frame (a
 * slow consumer that stopped reading altogether would otherwise keep its socket and the frame
 * half written on it forever). */
static void close_timeouts(fh_stream *s)
{
    int64_t now = fh_now_ms();
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->kind == CONN_WS && c->closing && now - c->closing_ms > s->close_timeout_ms) {
            fh_log(FH_LOG_INFO, "stream.close_timeout",
                   "queued=%zu note=\"client did not read its close frame\"", c->q.bytes);
            stream_conn_drop(s, c);
        }
    }
}

/* The stream thread's loop: Kafka's queue and the inbox wake it, sockets call stream_conn_io;
 * before each sleep it routes what Kafka has, writes what was queued and continues paced
 * replays; after each pass it frees the connections dropped during it. */
static void on_kafka(fh_loop *l, fh_loop_io *io, unsigned what)
{
    fh_stream *s = io->arg;
    uint64_t v;
    ssize_t r = read(s->kafka_efd, &v, sizeof(v));
    (void)l;
    (void)what;
    (void)r;
    kafka_drain(s);
}

static void on_wake(fh_loop *l, void *arg)
{
    (void)l;
    stream_drain_inbox(arg);
}

static void before_sleep(fh_loop *l, void *arg)
{
    fh_stream *s = arg;
    /* Kafka's io-event fires on a non-empty queue; keep draining while there is work */
    kafka_drain(s);
    stream_flush_dirty(s);
    int waiting = stream_room_service(s);
    stream_flush_dirty(s);
    /* do not sleep while work is ready (a replay whose queue drained meanwhile), nor long
     * while the stream is held (its deadline, and SSE drains, signal nothing); otherwise
     * EPOLLOUT and the SSE reader's wake-up say when a paced replay can go on */
    fh_loop_sleep_at_most(l, s->over ? 5 : 100);
    for (conn *c = s->conns; waiting && c; c = c->next)
        if (c->want_room && !c->closing && stream_conn_queued(c) <= s->client_queue_max / 2) {
            fh_loop_no_sleep(l);
            break;
        }
}

static void after_pass(fh_loop *l, void *arg)
{
    fh_stream *s = arg;
    (void)l;
    fh_metric_set(s->m_queued, (long long)s->total_queued);
    stream_reap(s);
}

static int64_t heartbeat_timer(fh_loop *l, void *arg)
{
    fh_stream *s = arg;
    (void)l;
    heartbeat(s);
    return (int64_t)s->heartbeat_s * 1000;
}

static int64_t sweep_timer(fh_loop *l, void *arg)
{
    (void)l;
    close_timeouts(arg);
    return 1000;
}

static void *stream_main(void *arg)
{
    fh_stream *s = arg;
    /* Every live delivery waits for this thread: on cores shared with Kafka and busy clients it
     * otherwise waits behind them (tens of ms at the tail); stream.nice lets it run when it has
     * records. Without the privilege it keeps the process's niceness. */
    if (s->nice && fh_thread_nice(s->nice))
        fh_log(FH_LOG_INFO, "stream.nice", "nice=%d applied=false error=\"%s\"", s->nice,
               strerror(errno));
    kafka_drain(s);
    fh_loop_run(s->loop, 100);
    /* shutting down: tell every client, flush what we can */
    for (conn *c = s->conns; c; c = c->next)
        stream_close_conn(s, c, CLOSE_SHUTDOWN, "broker shutting down");
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->kind == CONN_WS)
            stream_ws_flush(s, c);
    }
    while (s->conns)
        stream_conn_drop(s, s->conns);
    stream_reap(s);
    return NULL;
}

/* ---- start and stop ---------------------------------------------------------------------------
 */

static const fh_metric_row stream_metrics[] = {
    FH_METRIC_ROW(fh_stream, m_in, "firehose_stream_events_total", NULL,
                  "Events read by the stream.", 0),
    FH_METRIC_ROW(fh_stream, m_deliveries, "firehose_stream_deliveries_total", NULL,
                  "Events queued to stream subscribers.", 0),
    FH_METRIC_ROW(fh_stream, m_slow, "firehose_stream_disconnects_total",
                  "reason=\"slow_consumer\"",
                  "Stream clients disconnected by the broker, by reason.", 0),
    FH_METRIC_ROW(fh_stream, m_closed_other, "firehose_stream_disconnects_total",
                  "reason=\"other\"", "Stream clients disconnected by the broker, by reason.", 0),
    FH_METRIC_ROW(fh_stream, m_connections, "firehose_stream_connections", NULL,
                  "Open WebSocket and SSE connections.", 1),
    FH_METRIC_ROW(fh_stream, m_queued, "firehose_stream_queued_bytes", NULL,
                  "Bytes queued for stream clients.", 1),
    FH_METRIC_ROW(fh_stream, m_ring_events, "firehose_stream_ring_events", NULL,
                  "Recent events held for resume.", 1),
    FH_METRIC_ROW(fh_stream, m_catchups, "firehose_stream_catchups_total", NULL,
                  "Resumes served from Kafka.", 0),
    FH_METRIC_ROW(fh_stream, m_cu_passes, "firehose_stream_catchup_passes_total", NULL,
                  "Passes over Kafka the shared catch-up reader started (each serves every "
                  "resume that joins it).",
                  0),
    FH_METRIC_ROW(fh_stream, m_cu_detaches, "firehose_stream_catchup_detaches_total", NULL,
                  "Resumes the catch-up reader left behind because their client read slowly "
                  "(stream.catchup_detach_ms).",
                  0),
    FH_METRIC_ROW(fh_stream, m_cu_rejoins, "firehose_stream_catchup_rejoins_total", NULL,
                  "Resumes left behind that joined a pass again from their own position.", 0),
    FH_METRIC_ROW(fh_stream, m_ring_bytes, "firehose_stream_ring_bytes", NULL,
                  "Bytes the recent events held for resume cost.", 1),
    FH_METRIC_ROW(fh_stream, m_mem_ring, "firehose_memory_bytes", "part=\"ring\"", FH_MEMORY_HELP,
                  1),
    FH_METRIC_ROW(fh_stream, m_holds, "firehose_stream_holds_total", NULL,
                  "Times a connection past stream.client_queue_bytes held the "
                  "stream (no record routed until it drained or was dropped).",
                  0),
    FH_METRIC_ROW(fh_stream, m_z_plain, "firehose_stream_deflate_bytes_total", "form=\"plain\"",
                  "Payload bytes of compressed deliveries (permessage-deflate), "
                  "before (plain) and after (sent) compression.",
                  0),
    FH_METRIC_ROW(fh_stream, m_z_sent, "firehose_stream_deflate_bytes_total", "form=\"sent\"",
                  "Payload bytes of compressed deliveries (permessage-deflate), "
                  "before (plain) and after (sent) compression.",
                  0),
    FH_METRIC_ROW(fh_stream, m_held_ms, "firehose_stream_held_milliseconds_total", NULL,
                  "Time the stream spent held by connections past their cap.", 0),
    FH_METRIC_ROW(fh_stream, m_refused, "firehose_stream_refused_total", "reason=\"resources\"",
                  "WebSocket connections refused for want of memory or file "
                  "descriptors (HTTP 503 before the upgrade, close 4029 after it).",
                  0),
};

/* The stage histograms' bounds, ns (rendered in seconds): fine below 10 ms, where the goals
 * are, coarse up to the seconds a held stream or a backlog can cost. */
static const int64_t stage_le[] = {
    25000,     50000,     100000,     250000,     500000,     1000000,    2000000,  3000000,
    5000000,   7500000,   10000000,   15000000,   20000000,   30000000,   50000000, 100000000,
    250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000};

static const struct {
    size_t off;
    const char *name, *help;
} stage_rows[] = {
    {offsetof(fh_stream, h_kafka), "firehose_stream_kafka_delay_seconds",
     "Live records: Kafka timestamp (the producer's create time) to the stream taking the record "
     "from its consumer."},
    {offsetof(fh_stream, h_route), "firehose_stream_route_delay_seconds",
     "Live deliveries: the record taken from Kafka to the delivery queued for its connection."},
    {offsetof(fh_stream, h_write), "firehose_stream_write_delay_seconds",
     "Live deliveries: queued to the write that put its last byte into the socket (SSE: into "
     "the HTTP server's buffer)."},
    {offsetof(fh_stream, h_total), "firehose_stream_delivery_delay_seconds",
     "Live deliveries: Kafka timestamp to the write that put its last byte into the socket."},
};

size_t fh_stream_queued_bytes(fh_stream *s)
{
    return s ? atomic_load(&s->total_queued) : 0;
}

static void register_metrics(fh_stream *s)
{
    fh_metrics_register(s, stream_metrics, sizeof(stream_metrics) / sizeof(stream_metrics[0]));
    for (size_t i = 0; i < sizeof(stage_rows) / sizeof(stage_rows[0]); i++)
        *(fh_histogram **)((char *)s + stage_rows[i].off) =
            fh_histogram_new(stage_rows[i].name, NULL, stage_rows[i].help, stage_le,
                             (int)(sizeof(stage_le) / sizeof(stage_le[0])), 1e-9);
}

fh_err fh_stream_start(fh_broker *b, fh_stream **out, char *errbuf, size_t errsize)
{
    fh_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return FH_ERR_NOMEM;
    s->b = b;
    s->ring_cap = (size_t)fh_config_int(&b->cfg, "stream.ring_events");
    s->ring_max_bytes = (size_t)fh_config_int(&b->cfg, "stream.ring_bytes");
    s->client_queue_max = (size_t)fh_config_int(&b->cfg, "stream.client_queue_bytes");
    s->max_total_queued = (size_t)fh_config_int(&b->cfg, "stream.total_queue_bytes");
    s->max_conns = (int)fh_config_int(&b->cfg, "stream.max_connections");
    s->max_subs = (int)fh_config_int(&b->cfg, "stream.max_subscriptions");
    s->max_message = (size_t)fh_config_int(&b->cfg, "stream.max_message_bytes");
    s->max_event_bytes = (size_t)fh_config_int(&b->cfg, "events.max_bytes");
    fh_json_doc_init(&s->doc, FH_EVENT_DOC_CAP(s->max_event_bytes));
    s->heartbeat_s = (int)fh_config_int(&b->cfg, "stream.heartbeat_s");
    s->nice = (int)fh_config_int(&b->cfg, "stream.nice");
    s->max_jobs = (int)fh_config_int(&b->cfg, "stream.catchup_max");
    s->catchup_batch = (int)fh_config_int(&b->cfg, "stream.catchup_batch_events");
    s->catchup_credit = (int)fh_config_int(&b->cfg, "stream.catchup_batches");
    s->catchup_detach_ms = fh_config_int(&b->cfg, "stream.catchup_detach_ms");
    s->catchup_rewind = fh_config_int(&b->cfg, "stream.catchup_rewind_events");
    s->catchup_prefetch_kib = fh_config_int(&b->cfg, "stream.catchup_prefetch_kib");
    s->drain_grace_ms = fh_config_int(&b->cfg, "stream.drain_grace_ms");
    s->close_timeout_ms = fh_config_int(&b->cfg, "stream.close_timeout_ms");
    int ring_failed = stream_ring_init(s);
    s->cur = malloc(CURSOR_MAX);
    s->next_seq = 1; /* 0 is "no event" in sub->mark */
    pthread_mutex_init(&s->inbox_mu, NULL);
    pthread_mutex_init(&s->layout_mu, NULL);
    s->check_ms = (int)fh_config_int(&b->cfg, "kafka.partition_check_ms");
    if (s->check_ms <= 0)
        s->check_ms = 5000; /* a program whose table lacks the key */
    pthread_mutex_init(&s->cmu, NULL);
    s->kafka_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ring_failed || !s->cur || s->kafka_efd < 0 ||
        fh_loop_new(&s->loop, 256, 4, errbuf, errsize) != FH_OK ||
        fh_loop_new(&s->cloop, 4, 4, errbuf, errsize) != FH_OK) {
        fh_errf(errbuf, errsize, FH_ERR_NOMEM, "stream: cannot allocate its ring or descriptors");
        goto err;
    }
    fh_loop_on_wake(s->loop, on_wake, s);
    fh_loop_before_sleep(s->loop, before_sleep, s);
    fh_loop_after_pass(s->loop, after_pass, s);
    fh_loop_timer(s->loop, (int64_t)s->heartbeat_s * 1000, heartbeat_timer, s);
    fh_loop_timer(s->loop, 1000, sweep_timer, s);
    fh_loop_timer(s->loop, s->check_ms, partition_timer, s);
    if (fh_config_bool(&b->cfg, "stream.permessage_deflate") &&
        (!(s->zd = fh_deflater_new((int)fh_config_int(&b->cfg, "stream.deflate_level"))) ||
         !(s->zi = fh_inflater_new()))) {
        fh_errf(errbuf, errsize, FH_ERR_NOMEM, "stream: cannot allocate its deflater");
        goto err;
    }
    register_metrics(s);
    fh_metric_set(s->m_mem_ring, (long long)stream_ring_slot_bytes(s)); /* the first slots */
    if (kafka_start(s, errbuf, errsize))
        goto err;
    s->kafka_io = (fh_loop_io){.fd = s->kafka_efd, .fn = on_kafka, .arg = s};
    if (fh_loop_watch(s->loop, &s->kafka_io, FH_LOOP_READ) != FH_OK) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "stream: cannot watch its Kafka queue");
        goto err;
    }
    if (pthread_create(&s->thread, NULL, stream_main, s) ||
        pthread_create(&s->cthread, NULL, stream_catchup_main, s)) {
        fh_errf(errbuf, errsize, FH_ERR_IO, "stream: cannot start its threads");
        goto err;
    }
    s->ready = 1;
    *out = s;
    return FH_OK;
err:
    *out = NULL;
    fh_stream_free(s);
    return FH_ERR_KAFKA;
}

void fh_stream_stop(fh_stream *s)
{
    if (!s || atomic_exchange(&s->stop, 1))
        return;
    if (s->loop)
        fh_loop_stop(s->loop);
    if (s->cloop)
        fh_loop_stop(s->cloop);
    if (s->ready) {
        pthread_join(s->thread, NULL);
        pthread_join(s->cthread, NULL);
    }
}

void fh_stream_free(fh_stream *s)
{
    if (!s)
        return;
    fh_stream_stop(s);
    /* SSE responses destroyed by the HTTP server left their last word in the inbox (a drain
     * may leave catch-up batches for the next one) */
    while (s->inbox_first)
        stream_drain_inbox(s);
    while (s->ring_count)
        stream_ring_evict_one(s);
    free(s->ring);
    free(s->cur);
    stream_index_free(s);
    while (s->qfree) {
        qent *e = s->qfree;
        s->qfree = e->next;
        free(e);
    }
    fh_json_doc_free(&s->doc);
    fh_deflater_free(s->zd);
    fh_inflater_free(s->zi);
    while (s->kb_i < s->kb_n)
        rd_kafka_message_destroy(s->kbatch[s->kb_i++]);
    fh_consumer_free(s->kc); /* closes before it destroys */
    for (int p = 0; p < s->nparts; p++)
        free(s->part_topic[p]);
    for (cjob *j = s->jobs_first, *n; j; j = n) {
        n = j->next;
        stream_cjob_unref(j); /* the catch-up thread's reference: it never took them */
    }
    fh_loop_free(s->loop);
    fh_loop_free(s->cloop);
    if (s->kafka_efd >= 0)
        close(s->kafka_efd);
    pthread_mutex_destroy(&s->inbox_mu);
    pthread_mutex_destroy(&s->layout_mu);
    pthread_mutex_destroy(&s->cmu);
    free(s);
}
