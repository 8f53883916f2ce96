/* ring: the window of recent events kept for resume, and building an event once for all its
 * recipients (the shared tail and SSE bytes). */
#include "internal.h"

/* ---- ring -------------------------------------------------------------------------------------
 */

/* The slot array starts at this many slots (or stream.ring_events when that is fewer) and
 * doubles as events arrive, up to stream.ring_events: a ring that holds few events (bounded by
 * stream.ring_bytes, or a quiet stream) costs the slots it uses, not its cap. */
#define RING_FIRST_SLOTS 1024

/* Resizes the slot array to n slots (n >= ring_count), oldest event first in slot 0.
 * Returns 0, or -1 when out of memory (the ring is unchanged). */
static int ring_resize(fh_stream *s, size_t n)
{
    sev **r = malloc(n * sizeof(*r));
    if (!r)
        return -1;
    for (size_t i = 0; i < s->ring_count; i++)
        r[i] = s->ring[(s->ring_head + i) % s->ring_slots];
    free(s->ring);
    s->ring = r;
    s->ring_slots = n;
    s->ring_head = 0;
    return 0;
}

int stream_ring_init(fh_stream *s)
{
    s->ring = NULL;
    s->ring_slots = s->ring_count = s->ring_head = 0;
    return ring_resize(s, s->ring_cap < RING_FIRST_SLOTS ? s->ring_cap : RING_FIRST_SLOTS);
}

size_t stream_ring_slot_bytes(const fh_stream *s)
{
    return s->ring_slots * sizeof(*s->ring);
}

sev *stream_ring_at_seq(fh_stream *s, uint64_t seq)
{
    if (s->ring_count == 0)
        return NULL;
    uint64_t first = s->next_seq - s->ring_count;
    if (seq < first || seq >= s->next_seq)
        return NULL;
    return s->ring[(s->ring_head + (size_t)(seq - first)) % s->ring_slots];
}

void stream_ring_evict_one(fh_stream *s)
{
    sev *e = s->ring[s->ring_head];
    s->ring[s->ring_head] = NULL;
    s->ring_head = (s->ring_head + 1) % s->ring_slots;
    s->ring_count--;
    s->ring_bytes -= e->bytes;
    e->in_ring = 0;
    if (e->offset + 1 > s->evicted_hw[e->part])
        s->evicted_hw[e->part] = e->offset + 1;
    sev_unref(e);
}

void stream_ring_push(fh_stream *s, sev *e)
{
    while (s->ring_count &&
           (s->ring_count == s->ring_cap || s->ring_bytes + e->bytes > s->ring_max_bytes))
        stream_ring_evict_one(s);
    if (s->ring_count == s->ring_slots) {
        size_t n = s->ring_slots * 2 < s->ring_cap ? s->ring_slots * 2 : s->ring_cap;
        /* out of memory: the ring stays as large as it is, the oldest event makes room */
        if (n <= s->ring_slots || ring_resize(s, n))
            stream_ring_evict_one(s);
    }
    s->ring[(s->ring_head + s->ring_count) % s->ring_slots] = sev_ref(e);
    e->in_ring = 1;
    s->ring_count++;
    s->ring_bytes += e->bytes;
    fh_metric_set(s->m_ring_events, (long long)s->ring_count);
    fh_metric_set(s->m_ring_bytes, (long long)s->ring_bytes);
    fh_metric_set(s->m_mem_ring, (long long)(s->ring_bytes + stream_ring_slot_bytes(s)));
}

/* 1 when every event at or after vec (per partition) is in the ring (or not yet produced). */
int stream_ring_covers(const fh_stream *s, const int64_t *vec)
{
    for (int p = 0; p < s->nparts; p++)
        if (vec[p] < s->evicted_hw[p])
            return 0;
    return 1;
}

/* ---- building events --------------------------------------------------------------------------
 */

/* Builds a stream event from a Kafka record, validating it in doc (the calling thread's; reset
 * here). with_cursor: ring events carry the cursor of the position after them (s->hw must
 * already include this record). Returns NULL for invalid records (the ingest consumer
 * dead-letters those). */
sev *stream_sev_build(fh_stream *s, fh_json_doc *doc, const rd_kafka_message_t *m, int part,
                      int with_cursor)
{
    char err[256];
    size_t clen = 0;
    fh_event_view view;
    if (fh_event_check(s->b->contract, doc, m->payload, m->len, s->max_event_bytes, &view, err,
                       sizeof(err)))
        return NULL;
    if (with_cursor) /* only on the stream thread: its scratch */
        clen = stream_cursor_encode(s, s->hw, s->cur, CURSOR_MAX);
    /* tail: `","cursor":"C"` + `,"event":` + RAW + `}` */
    size_t a_len = with_cursor ? 12 + clen + 1 : 0, tail_len = a_len + 9 + m->len + 1;
    sev *e = calloc(1, sizeof(*e) + tail_len + 1);
    if (!e)
        return NULL;
    atomic_init(&e->refs, 1);
    e->type = view.type;
    if (fh_filter_facts_from_view(&view, &e->facts)) {
        free(e);
        return NULL;
    }
    e->part = part;
    e->offset = m->offset;
    e->kafka_ns = -1; /* no Kafka timestamp (kafka_route sets it for live events) */
    e->tail = (char *)(e + 1);
    e->tail_len = tail_len;
    char *p = e->tail;
    if (with_cursor) {
        memcpy(p, "\",\"cursor\":\"", 12);
        memcpy(p + 12, s->cur, clen);
        p[12 + clen] = '"';
        p += a_len;
    } else {
        /* catch-up events: the sub builds its own `","cursor":"C"` head; keep the closing quote */
    }
    e->b_off = (size_t)(p - e->tail);
    memcpy(p, ",\"event\":", 9);
    memcpy(p + 9, m->payload, m->len);
    p[9 + m->len] = '}';
    e->raw_off = e->b_off + 9;
    e->raw_len = m->len;
    e->tail[e->tail_len] = '\0';
    /* the two blocks, with malloc's overhead of about 16 bytes each */
    e->bytes = sizeof(*e) + e->tail_len + 1 + e->facts.blob_len + 2 * 16;
    return e;
}

/* "event: TYPE\ndata: RAW\n\n", with one data: line per line of RAW. Built once per event, by
 * the stream thread; a ring event's bytes then count it. */
int stream_sev_sse(fh_stream *s, sev *e)
{
    if (e->sse)
        return 0;
    fh_buf b;
    fh_buf_init(&b, e->raw_len * 2 + 256);
    fh_buf_printf(&b, "event: %s\n", fh_event_type_name(e->type));
    const char *raw = e->tail + e->raw_off, *end = raw + e->raw_len;
    while (raw < end) {
        const char *nl = memchr(raw, '\n', (size_t)(end - raw));
        size_t n = nl ? (size_t)(nl - raw) : (size_t)(end - raw);
        if (n && raw[n - 1] == '\r')
            n--;
        if (fh_buf_append(&b, "data: ", 6) || fh_buf_append(&b, raw, n) ||
            fh_buf_append(&b, "\n", 1))
            break;
        raw = nl ? nl + 1 : end;
    }
    if (fh_buf_append(&b, "\n", 1)) {
        fh_buf_free(&b);
        return -1;
    }
    e->sse = b.data;
    e->sse_len = b.len;
    e->bytes += b.cap + 16;
    if (e->in_ring)
        s->ring_bytes += b.cap + 16;
    return 0;
}
