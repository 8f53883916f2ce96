/* view/checkpoint: the checkpointer thread (an fh_loop woken by the writer's WAL hook), and the
 * view thread's own copy of the WAL tail so the WAL can start over. */
#include "internal.h"

/* ---- checkpoints ------------------------------------------------------------------------ */

/* SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, so the view
 * thread would copy pages into the database file and fdatasync it while records wait. Instead
 * the writer's WAL hook wakes this thread, which checkpoints PASSIVE (never blocking the writer
 * or the readers) on a connection of its own. Durability does not change: a committed batch is
 * in the WAL before COMMIT returns, whether or not it has been copied back yet. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    fh_view *v = arg;
    (void)db;
    (void)name;
    v->wal_pages = pages;
    if (pages >= v->checkpoint_pages)
        fh_loop_wake(v->ckpt_loop); /* wake-ups coalesce: one checkpoint for several commits */
    return SQLITE_OK;
}

/* The wake hook, on the checkpointer's loop: one PASSIVE checkpoint. */
static void ckpt_run(fh_loop *l, void *arg)
{
    fh_view *v = arg;
    int logged = 0, copied = 0;
    (void)l;
    int rc =
        sqlite3_wal_checkpoint_v2(v->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &logged, &copied);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        char q[420];
        fh_log(FH_LOG_WARN, "view.checkpoint", "error=%s",
               fh_log_quote(q, sizeof(q), sqlite3_errmsg(v->ckpt_db)));
    }
    fh_metric_add(v->m_checkpoints, 1);
}

/* The checkpointer thread: its fh_loop has no descriptors or timers of its own, only the wake-up
 * the writer's WAL hook signals (ckpt_run) and the stop. */
static void *ckpt_main(void *arg)
{
    fh_view *v = arg;
    pthread_setname_np(pthread_self(), "fh-view-ckpt");
    view_thread_nice(v, "checkpointer");
    fh_loop_run(v->ckpt_loop, -1);
    return NULL;
}

/* Opens the checkpointer's connection and starts it; on failure the writer keeps SQLite's
 * automatic checkpoints. */
void view_ckpt_start(fh_view *v)
{
    if (sqlite3_open_v2(v->path, &v->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        fh_log(FH_LOG_WARN, "view.checkpoint",
               "note=\"no checkpointer connection: automatic "
               "checkpoints\"");
        sqlite3_close(v->ckpt_db);
        v->ckpt_db = NULL;
        return;
    }
    sqlite3_busy_timeout(v->ckpt_db, 1000);
    /* A connection checkpoints only once its pager has seen the file in WAL mode: until it
     * reads, sqlite3_wal_checkpoint_v2 returns OK and does nothing. */
    if (sqlite3_exec(v->ckpt_db, "PRAGMA journal_mode=WAL; SELECT count(*) FROM view_state;", NULL,
                     NULL, NULL) != SQLITE_OK) {
        sqlite3_close(v->ckpt_db);
        v->ckpt_db = NULL;
        return;
    }
    char err[256];
    if (fh_loop_new(&v->ckpt_loop, 1, 1, err, sizeof(err)) == FH_OK)
        fh_loop_on_wake(v->ckpt_loop, ckpt_run, v);
    if (!v->ckpt_loop || pthread_create(&v->ckpt_thread, NULL, ckpt_main, v)) {
        fh_loop_free(v->ckpt_loop);
        v->ckpt_loop = NULL;
        sqlite3_close(v->ckpt_db);
        v->ckpt_db = NULL;
        return;
    }
    v->ckpt_started = 1;
    sqlite3_exec(v->db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL);
    sqlite3_wal_hook(v->db, wal_hook, v);
}

/* SQLite starts the WAL over from its beginning only when a write transaction begins on a
 * fully copied WAL. The view thread begins its next batch right after a commit, before the
 * background checkpoint can finish, so the WAL would grow without end. Once it holds twice
 * view.checkpoint_pages, the view thread finishes the copy itself between two batches: the
 * checkpointer has already copied (and synced) nearly everything, so this is the tail of a
 * batch or two. */
void view_ckpt_tail(fh_view *v)
{
    if (!v->ckpt_started || v->wal_pages < 2 * v->checkpoint_pages)
        return;
    sqlite3_wal_checkpoint_v2(v->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    v->wal_pages = 0;
    fh_metric_add(v->m_checkpoints_tail, 1);
}

void view_ckpt_stop(fh_view *v)
{
    if (v->ckpt_started) {
        fh_loop_stop(v->ckpt_loop);
        pthread_join(v->ckpt_thread, NULL);
        v->ckpt_started = 0;
    }
    fh_loop_free(v->ckpt_loop);
    v->ckpt_loop = NULL;
    if (v->db)
        sqlite3_wal_hook(v->db, NULL, NULL);
    sqlite3_close(v->ckpt_db);
    v->ckpt_db = NULL;
}
