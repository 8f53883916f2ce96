/* fh_loop: descriptors, unwatch within a batch, timers in order, wake-ups from other threads,
 * and the hooks around a pass. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fh_loop.h"
#include "fh_test.h"

typedef struct probe {
    fh_loop_io io;
    int calls;
    unsigned what;
    struct probe *victim; /* unwatched and freed by this probe's callback */
} probe;

static probe *freed_probe; /* compared, never read */

static void on_io(fh_loop *l, fh_loop_io *io, unsigned what)
{
    probe *p = io->arg;
    p->calls++;
    p->what |= what;
    char buf[64];
    ssize_t r = read(io->fd, buf, sizeof(buf));
    (void)r;
    if (p->victim) {
        fh_loop_unwatch(l, &p->victim->io);
        freed_probe = p->victim;
        free(p->victim);
        p->victim = NULL;
    }
}

static fh_loop *new_loop(void)
{
    fh_loop *l = NULL;
    char err[128];
    CHECK(fh_loop_new(&l, 16, 8, err, sizeof(err)) == FH_OK);
    return l;
}

TEST(loop_dispatches_a_readable_descriptor)
{
    fh_loop *l = new_loop();
    int fds[2];
    CHECK(pipe(fds) == 0);
    probe p = {.io = {.fd = fds[0], .fn = on_io}};
    p.io.arg = &p;
    CHECK(fh_loop_watch(l, &p.io, FH_LOOP_READ) == FH_OK);
    CHECK(fh_loop_once(l, 0) == 0); /* nothing to read yet */
    CHECK(write(fds[1], "x", 1) == 1);
    CHECK(fh_loop_once(l, 1000) == 1);
    CHECK(p.calls == 1 && (p.what & FH_LOOP_READ));
    fh_loop_unwatch(l, &p.io);
    CHECK(write(fds[1], "y", 1) == 1);
    CHECK(fh_loop_once(l, 0) == 0);
    close(fds[1]);
    close(fds[0]);
    fh_loop_free(l);
}

TEST(loop_unwatch_in_a_batch_forgets_the_rest_of_it)
{
    /* both descriptors are ready in one batch; whichever runs first frees the other, which must
     * then not be called (ASan would see a use after free) */
    fh_loop *l = new_loop();
    int a[2], b[2];
    CHECK(pipe(a) == 0 && pipe(b) == 0);
    probe *pa = calloc(1, sizeof(*pa)), *pb = calloc(1, sizeof(*pb));
    pa->io = (fh_loop_io){.fd = a[0], .fn = on_io, .arg = pa};
    pb->io = (fh_loop_io){.fd = b[0], .fn = on_io, .arg = pb};
    pa->victim = pb;
    pb->victim = pa;
    CHECK(fh_loop_watch(l, &pa->io, FH_LOOP_READ) == FH_OK);
    CHECK(fh_loop_watch(l, &pb->io, FH_LOOP_READ) == FH_OK);
    CHECK(write(a[1], "x", 1) == 1 && write(b[1], "x", 1) == 1);
    freed_probe = NULL;
    CHECK(fh_loop_once(l, 1000) == 1); /* one callback: the other io was forgotten */
    CHECK(freed_probe == pa || freed_probe == pb);
    probe *survivor = freed_probe == pa ? pb : pa;
    CHECK(survivor->calls == 1 && survivor->victim == NULL);
    fh_loop_unwatch(l, &survivor->io);
    free(survivor);
    fh_loop_free(l);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
}

typedef struct tick {
    int order[8];
    int n;
    int repeats;
} tick;

static tick ticks;

static int64_t timer_a(fh_loop *l, void *arg)
{
    (void)l;
    ticks.order[ticks.n++] = (int)(intptr_t)arg;
    return -1;
}

static int64_t timer_repeat(fh_loop *l, void *arg)
{
    (void)l;
    (void)arg;
    return ++ticks.repeats < 3 ? 0 : -1;
}

TEST(loop_runs_timers_in_order_repeats_and_cancels)
{
    fh_loop *l = new_loop();
    memset(&ticks, 0, sizeof(ticks));
    CHECK(fh_loop_timer(l, 30, timer_a, (void *)(intptr_t)3) != 0);
    CHECK(fh_loop_timer(l, 10, timer_a, (void *)(intptr_t)1) != 0);
    uint64_t gone = fh_loop_timer(l, 15, timer_a, (void *)(intptr_t)9);
    CHECK(fh_loop_timer(l, 20, timer_a, (void *)(intptr_t)2) != 0);
    CHECK(fh_loop_timer(l, 0, timer_repeat, NULL) != 0);
    fh_loop_timer_cancel(l, gone);
    for (int i = 0; i < 100 && (ticks.n < 3 || ticks.repeats < 3); i++)
        fh_loop_once(l, 1000); /* the timers themselves bound each wait */
    CHECK(ticks.n == 3);
    CHECK(ticks.order[0] == 1 && ticks.order[1] == 2 && ticks.order[2] == 3);
    CHECK(ticks.repeats == 3);
    fh_loop_free(l);
}

TEST(loop_timer_cap_is_kept)
{
    fh_loop *l = new_loop(); /* 8 timers */
    int added = 0;
    for (int i = 0; i < 12; i++)
        added += fh_loop_timer(l, 1000, timer_a, NULL) != 0;
    CHECK(added == 8);
    fh_loop_free(l);
}

TEST(loop_cancel_frees_the_slot_at_once)
{
    /* a timer that follows a deadline is cancelled and added again many times: the cancelled
     * ones must not count against the cap until they would have come up */
    fh_loop *l = new_loop(); /* 8 timers */
    for (int round = 0; round < 50; round++) {
        uint64_t id = fh_loop_timer(l, 60000, timer_a, NULL);
        CHECK(id != 0);
        fh_loop_timer_cancel(l, id);
    }
    int added = 0;
    for (int i = 0; i < 8; i++)
        added += fh_loop_timer(l, 60000, timer_a, NULL) != 0;
    CHECK(added == 8);
    fh_loop_timer_cancel(l, 0); /* id 0 is nobody's */
    fh_loop_free(l);
}

TEST(loop_rearm_moves_a_timer_and_adds_one_that_ended)
{
    fh_loop *l = new_loop();
    memset(&ticks, 0, sizeof(ticks));
    uint64_t late = fh_loop_timer(l, 60000, timer_a, (void *)(intptr_t)1);
    CHECK(fh_loop_timer(l, 30, timer_a, (void *)(intptr_t)2) != 0);
    /* the 60 s timer now comes first, and keeps its id */
    CHECK(fh_loop_timer_rearm(l, late, 5, timer_a, (void *)(intptr_t)1) == late);
    for (int i = 0; i < 100 && ticks.n < 2; i++)
        fh_loop_once(l, 1000);
    CHECK(ticks.n == 2 && ticks.order[0] == 1 && ticks.order[1] == 2);
    /* it ended: rearming it adds a new timer under a new id */
    uint64_t again = fh_loop_timer_rearm(l, late, 0, timer_a, (void *)(intptr_t)3);
    CHECK(again != 0 && again != late);
    /* moving one later: a 0 ms timer pushed to 60 s does not run */
    uint64_t later = fh_loop_timer(l, 0, timer_a, (void *)(intptr_t)4);
    CHECK(fh_loop_timer_rearm(l, later, 60000, timer_a, (void *)(intptr_t)4) == later);
    for (int i = 0; i < 100 && ticks.n < 3; i++)
        fh_loop_once(l, 1000);
    fh_loop_once(l, 20);
    CHECK(ticks.n == 3 && ticks.order[2] == 3);
    fh_loop_free(l);
}

typedef struct nest {
    probe p;
    int depth, max_depth, inner_reads;
} nest;

static void nest_after(fh_loop *l, void *arg)
{
    nest *n = arg;
    if (n->depth > 0)
        return; /* the nested pass's own after-pass hook */
    n->depth++;
    /* wait (nested) for what the outer pass needs: the probe's descriptor */
    int before_calls = n->p.calls;
    for (int i = 0; i < 20 && n->p.calls == before_calls; i++)
        fh_loop_once(l, 50);
    n->inner_reads = n->p.calls - before_calls;
    if (n->depth > n->max_depth)
        n->max_depth = n->depth;
    n->depth--;
}

static void *late_writer(void *arg)
{
    usleep(20000);
    ssize_t w = write(*(int *)arg, "z", 1);
    (void)w;
    return NULL;
}

TEST(loop_pass_may_nest_in_the_after_pass_hook)
{
    fh_loop *l = new_loop();
    int fds[2];
    CHECK(pipe(fds) == 0);
    nest n;
    memset(&n, 0, sizeof(n));
    n.p.io = (fh_loop_io){.fd = fds[0], .fn = on_io, .arg = &n.p};
    CHECK(fh_loop_watch(l, &n.p.io, FH_LOOP_READ) == FH_OK);
    fh_loop_after_pass(l, nest_after, &n);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, late_writer, &fds[1]) == 0);
    fh_loop_once(l, 0);
    pthread_join(t, NULL);
    CHECK(n.max_depth == 1 && n.inner_reads == 1);
    fh_loop_unwatch(l, &n.p.io);
    close(fds[0]);
    close(fds[1]);
    fh_loop_free(l);
}

static int woken;

static void on_wake(fh_loop *l, void *arg)
{
    (void)arg;
    woken++;
    fh_loop_stop(l);
}

static void *waker(void *arg)
{
    fh_loop_wake(arg);
    return NULL;
}

TEST(loop_wakes_from_another_thread_and_stops)
{
    fh_loop *l = new_loop();
    woken = 0;
    fh_loop_on_wake(l, on_wake, NULL);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waker, l) == 0);
    fh_loop_run(l, 5000); /* returns once the wake hook stopped it */
    pthread_join(t, NULL);
    CHECK(woken >= 1);
    CHECK(fh_loop_stopped(l));
    fh_loop_free(l);
}

static int before, after;

static void hook_before(fh_loop *l, void *arg)
{
    (void)arg;
    before++;
    fh_loop_no_sleep(l);
}

static void hook_after(fh_loop *l, void *arg)
{
    (void)l;
    (void)arg;
    after++;
}

TEST(loop_hooks_run_around_every_pass_and_no_sleep_returns_at_once)
{
    fh_loop *l = new_loop();
    before = after = 0;
    fh_loop_before_sleep(l, hook_before, NULL);
    fh_loop_after_pass(l, hook_after, NULL);
    int64_t t0 = fh_loop_now(l);
    for (int i = 0; i < 3; i++)
        fh_loop_once(l, 10000); /* would block 10 s each without no_sleep */
    CHECK(before == 3 && after == 3);
    CHECK(fh_loop_now(l) - t0 < 5000);
    fh_loop_free(l);
}

TEST(loop_rejects_bad_sizes)
{
    fh_loop *l = NULL;
    char err[128];
    CHECK(fh_loop_new(&l, 0, 8, err, sizeof(err)) == FH_ERR_INVAL && !l);
    CHECK(fh_loop_new(&l, 8, 0, err, sizeof(err)) == FH_ERR_INVAL && !l);
}
