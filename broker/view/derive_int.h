/* view/derive_int.h: what derive.c and derive_rules.c share (view thread only). */
#ifndef FH_VIEW_DERIVE_INT_H
#define FH_VIEW_DERIVE_INT_H

#include "derive.h"
#include "internal.h"

#include "fh_derive.h"

#define DERIVE_FLUSH_MAX 256

enum dst {
    D_SEEN,
    D_OUTBOX,
    D_OUTBOX_COUNT,
    D_OUTBOX_READ,
    D_OUTBOX_DEL,
    D_BUILDER_GET,
    D_BUILDER_PUT,
    D_FLAKY_GET,
    D_FLAKY_PUT,
    D_REV_POS,
    D_REV_ABOVE,
    D_REVS,
    D_AUTHOR,
    D_OWNERS,
    D_LKGR_GET,
    D_LKGR_PUT,
    D_STALE_SCAN,
    D_STALE_PUT,
    D_DIRTY_PUT,
    D_DIRTY_FIRST,
    D_DIRTY_NEXT,
    D_DIRTY_ANY,
    D_DIRTY_DEL,
    D_TEST_OTHER,
    D_BUILD_REF,
    D_NEXT_VERDICT,
    D__COUNT
};

/* A branch of derive_dirty and the newest build.finished on it (for the context of
 * lkgr.advanced). Owned: the strings and the reference. */
typedef struct derive_dirty {
    char *repository, *branch;
    json_t *trigger; /* the whole event */
} derive_dirty;

/* Derivation's state: the view's (v->derive), made by derive_open, freed by derive_close. */
struct derive {
    int on;
    const char *topic;
    long long check_ms, max_suspects, outbox_max, lkgr_ms, lkgr_per_turn;
    int64_t next_lkgr;
    /* A last-green round in progress: the last (repository, branch) of derive_dirty looked at;
     * the next turn goes on after it. NULL between rounds. Owned. */
    char *lkgr_repo, *lkgr_branch;
    fh_stale_rules stale;
    sqlite3_stmt *st[D__COUNT];
    struct view_reader rd; /* last-green's queries, on the writer connection */
    rd_kafka_t *producer;
    int outbox_pending;                   /* the outbox may hold rows not yet produced */
    long long inflight[DERIVE_FLUSH_MAX]; /* outbox seqs produced, awaiting their reports */
    int delivered[DERIVE_FLUSH_MAX];      /* 1 acknowledged, 0 failed or not reported yet */
    int ninflight, nreported;
    int dirty_pending; /* derive_dirty may have rows */
    int64_t next_check, next_prune;
    fh_metric *m_emitted;
};

/* derive.c */
void derive_time_text(double epoch_s, char out[48]);
/* Inside an open transaction: serves the producer's delivery reports and, once every record of
 * the round in flight is reported, deletes the acknowledged ones from the outbox (the rest are
 * produced again). SQLITE_OK or the error. */
int derive_outbox_settle(fh_view *v);
/* Records the event (type, id from parts) in derive_seen and the outbox unless its id was
 * emitted before. Takes data (its reference). subject is "builds" or "buildrequests" (the
 * envelope's subject names data's buildid or buildrequestid). SQLITE_OK or the error. */
int derive_emit(fh_view *v, const char *type, const char *const *parts, size_t nparts, json_t *data,
                const char *time, const char *subject);

/* derive_rules.c */
int derive_flaky_note(fh_view *v, const fh_event *ev, const char *test, int passed, json_t *ref);
void derive_stale_check(fh_view *v, int64_t now_ms);
/* Between batches: last-green of the touched branches when derive.lkgr_interval_ms is up. */
void derive_lkgr_due(fh_view *v, int64_t now_ms);
void derive_prune(fh_view *v);

#endif
