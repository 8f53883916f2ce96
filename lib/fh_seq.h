/* fh_seq: the per-master seq that the broker stamps on events it makes itself (HttpStatusPush
 * posts, GitHub and GitLab webhooks). A seq is time-based: epoch milliseconds, or the master's
 * last seq + 1 when the clock has not moved past it, so it only grows, also across broker
 * restarts. A gap means nothing for these sources (they report builds only).
 *
 * Not thread-safe: the owner serialises calls (both ingest modules hold their mutex). */
#ifndef FH_SEQ_H
#define FH_SEQ_H

#include <stddef.h>

#define FH_SEQ_NAME_MAX 64 /* bytes of a master's name that are kept (the rest is cut) */

typedef struct fh_seq_entry {
    char name[FH_SEQ_NAME_MAX + 1];
    long long last;
} fh_seq_entry;

/* The owner supplies the entries (its cap on masters): {entries, 0, count of entries}. */
typedef struct fh_seq_table {
    fh_seq_entry *masters;
    size_t n, cap;
} fh_seq_table;

/* The next seq of master at time now_ms (epoch ms): now_ms, or the master's last + 1 when that is
 * larger. A master not seen before is added; -1 when the table already holds cap others. */
long long fh_seq_next(fh_seq_table *t, const char *master, long long now_ms);

#endif
