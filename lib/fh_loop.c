#include "fh_loop.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct ltimer {
    int64_t when;
    uint64_t id;
    fh_loop_timer_fn fn;
    void *arg;
} ltimer;

typedef struct hook {
    fh_loop_hook_fn fn;
    void *arg;
} hook;

struct fh_loop {
    int epfd, wakefd;
    int max_events;
    struct epoll_event *evs;
    int nevs, cur; /* the batch being dispatched, and where (for unwatch) */
    ltimer *heap;
    size_t ntimers, max_timers;
    uint64_t next_id;
    hook on_wake, before_sleep, after_pass;
    int no_sleep;
    int64_t sleep_cap;
    int64_t now;
    _Atomic int stop;
    char wake_tag; /* its address marks the wake-up fd's events */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

fh_err fh_loop_new(fh_loop **out, int max_events, size_t max_timers, char *errbuf, size_t errsize)
{
    *out = NULL;
    if (max_events < 1 || max_events > 4096 || max_timers < 1)
        return fh_errf(errbuf, errsize, FH_ERR_INVAL, "loop: max_events 1..4096, max_timers >= 1");
    fh_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "loop: out of memory");
    l->epfd = l->wakefd = -1;
    l->max_events = max_events;
    l->max_timers = max_timers;
    l->evs = calloc((size_t)max_events, sizeof(*l->evs));
    l->heap = calloc(max_timers, sizeof(*l->heap));
    if (!l->evs || !l->heap) {
        fh_loop_free(l);
        return fh_errf(errbuf, errsize, FH_ERR_NOMEM, "loop: out of memory");
    }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->wake_tag};
    if (l->epfd < 0 || l->wakefd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0) {
        fh_loop_free(l);
        return fh_errf(errbuf, errsize, FH_ERR_IO, "loop: epoll or eventfd failed");
    }
    l->next_id = 1;
    l->sleep_cap = -1;
    l->now = mono_ms();
    *out = l;
    return FH_OK;
}

void fh_loop_free(fh_loop *l)
{
    if (!l)
        return;
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wakefd >= 0)
        close(l->wakefd);
    free(l->evs);
    free(l->heap);
    free(l);
}

static uint32_t epoll_bits(unsigned events)
{
    uint32_t e = 0;
    if (events & FH_LOOP_READ)
        e |= EPOLLIN | EPOLLRDHUP;
    if (events & FH_LOOP_WRITE)
        e |= EPOLLOUT;
    return e;
}

fh_err fh_loop_watch(fh_loop *l, fh_loop_io *io, unsigned events)
{
    struct epoll_event ev = {.events = epoll_bits(events), .data.ptr = io};
    if (io->watched)
        return fh_loop_rewatch(l, io, events);
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return FH_ERR_IO;
    io->events = events;
    io->watched = 1;
    return FH_OK;
}

fh_err fh_loop_rewatch(fh_loop *l, fh_loop_io *io, unsigned events)
{
    if (!io->watched)
        return fh_loop_watch(l, io, events);
    if (io->events == events)
        return FH_OK;
    struct epoll_event ev = {.events = epoll_bits(events), .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return FH_ERR_IO;
    io->events = events;
    return FH_OK;
}

void fh_loop_unwatch(fh_loop *l, fh_loop_io *io)
{
    if (!io->watched)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->watched = 0;
    io->events = 0;
    /* the rest of the batch may still name io: forget those events */
    for (int i = l->cur + 1; i < l->nevs; i++)
        if (l->evs[i].data.ptr == io)
            l->evs[i].data.ptr = NULL;
}

/* ---- timers: a binary min-heap on (when, id) ---------------------------------------------------
 */

static int timer_before(const ltimer *a, const ltimer *b)
{
    return a->when < b->when || (a->when == b->when && a->id < b->id);
}

static void heap_up(ltimer *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!timer_before(&h[i], &h[p]))
            break;
        ltimer t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static void heap_down(ltimer *h, size_t n, size_t i)
{
    for (;;) {
        size_t m = i, a = 2 * i + 1, b = a + 1;
        if (a < n && timer_before(&h[a], &h[m]))
            m = a;
        if (b < n && timer_before(&h[b], &h[m]))
            m = b;
        if (m == i)
            return;
        ltimer t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static uint64_t timer_push(fh_loop *l, int64_t when, uint64_t id, fh_loop_timer_fn fn, void *arg)
{
    if (l->ntimers == l->max_timers)
        return 0;
    l->heap[l->ntimers] = (ltimer){when, id, fn, arg};
    heap_up(l->heap, l->ntimers++);
    return id;
}

uint64_t fh_loop_timer(fh_loop *l, int64_t delay_ms, fh_loop_timer_fn fn, void *arg)
{
    if (!fn)
        return 0;
    return timer_push(l, mono_ms() + (delay_ms > 0 ? delay_ms : 0), l->next_id++, fn, arg);
}

static size_t timer_find(const fh_loop *l, uint64_t id)
{
    for (size_t i = 0; i < l->ntimers; i++)
        if (l->heap[i].id == id)
            return i;
    return SIZE_MAX;
}

/* Puts the entry at i where its (possibly changed) time belongs. */
static void heap_fix(fh_loop *l, size_t i)
{
    heap_up(l->heap, i);
    heap_down(l->heap, l->ntimers, i);
}

/* Removes the entry at i at once, so cancelled timers never fill the heap up to its cap. */
static void timer_remove(fh_loop *l, size_t i)
{
    l->heap[i] = l->heap[--l->ntimers];
    if (i < l->ntimers)
        heap_fix(l, i);
}

void fh_loop_timer_cancel(fh_loop *l, uint64_t id)
{
    size_t i = id ? timer_find(l, id) : SIZE_MAX;
    if (i != SIZE_MAX)
        timer_remove(l, i);
}

uint64_t fh_loop_timer_rearm(fh_loop *l, uint64_t id, int64_t delay_ms, fh_loop_timer_fn fn,
                             void *arg)
{
    size_t i = id ? timer_find(l, id) : SIZE_MAX;
    if (i == SIZE_MAX)
        return fh_loop_timer(l, delay_ms, fn, arg);
    l->heap[i].when = mono_ms() + (delay_ms > 0 ? delay_ms : 0);
    l->heap[i].fn = fn;
    l->heap[i].arg = arg;
    heap_fix(l, i);
    return id;
}

static int run_timers(fh_loop *l)
{
    int ran = 0;
    /* a timer that asks to run again at once waits for the next pass, so one cannot spin here */
    size_t budget = l->ntimers;
    while (l->ntimers && budget-- && l->heap[0].when <= l->now) {
        ltimer t = l->heap[0];
        l->heap[0] = l->heap[--l->ntimers];
        heap_down(l->heap, l->ntimers, 0);
        int64_t again = t.fn(l, t.arg);
        ran++;
        if (again >= 0)
            timer_push(l, mono_ms() + again, t.id, t.fn, t.arg); /* room: it just left the heap */
    }
    return ran;
}

/* ---- hooks and the pass ------------------------------------------------------------------------
 */

void fh_loop_on_wake(fh_loop *l, fh_loop_hook_fn fn, void *arg)
{
    l->on_wake = (hook){fn, arg};
}

void fh_loop_before_sleep(fh_loop *l, fh_loop_hook_fn fn, void *arg)
{
    l->before_sleep = (hook){fn, arg};
}

void fh_loop_after_pass(fh_loop *l, fh_loop_hook_fn fn, void *arg)
{
    l->after_pass = (hook){fn, arg};
}

void fh_loop_no_sleep(fh_loop *l)
{
    l->no_sleep = 1;
}

void fh_loop_sleep_at_most(fh_loop *l, int64_t ms)
{
    if (l->sleep_cap < 0 || ms < l->sleep_cap)
        l->sleep_cap = ms < 0 ? 0 : ms;
}

void fh_loop_wake(fh_loop *l)
{
    uint64_t one = 1;
    ssize_t w = write(l->wakefd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is already non-zero, a wake-up is pending */
}

void fh_loop_stop(fh_loop *l)
{
    atomic_store(&l->stop, 1);
    fh_loop_wake(l);
}

int fh_loop_stopped(fh_loop *l)
{
    return atomic_load(&l->stop);
}

int64_t fh_loop_now(const fh_loop *l)
{
    return l->now;
}

int fh_loop_once(fh_loop *l, int64_t timeout_ms)
{
    l->no_sleep = 0;
    l->sleep_cap = -1;
    if (l->before_sleep.fn)
        l->before_sleep.fn(l, l->before_sleep.arg);
    int64_t t = timeout_ms;
    if (l->sleep_cap >= 0 && (t < 0 || l->sleep_cap < t))
        t = l->sleep_cap;
    if (l->ntimers) {
        int64_t due = l->heap[0].when - mono_ms();
        if (due < 0)
            due = 0;
        if (t < 0 || due < t)
            t = due;
    }
    if (l->no_sleep)
        t = 0;
    int n = epoll_wait(l->epfd, l->evs, l->max_events, t > 1000000 ? 1000000 : (int)t);
    if (n < 0 && errno != EINTR)
        return -1;
    l->now = mono_ms();
    int ran = 0;
    l->nevs = n < 0 ? 0 : n;
    for (l->cur = 0; l->cur < l->nevs; l->cur++) {
        struct epoll_event *ev = &l->evs[l->cur];
        if (!ev->data.ptr)
            continue; /* unwatched earlier in this batch */
        if (ev->data.ptr == &l->wake_tag) {
            uint64_t v;
            ssize_t r = read(l->wakefd, &v, sizeof(v));
            (void)r;
            if (l->on_wake.fn)
                l->on_wake.fn(l, l->on_wake.arg);
            ran++;
            continue;
        }
        fh_loop_io *io = ev->data.ptr;
        unsigned what = 0;
        if (ev->events & (EPOLLERR | EPOLLHUP))
            what |= FH_LOOP_HUP;
        if (ev->events & (EPOLLIN | EPOLLRDHUP))
            what |= FH_LOOP_READ;
        if (ev->events & EPOLLOUT)
            what |= FH_LOOP_WRITE;
        io->fn(l, io, what);
        ran++;
    }
    l->nevs = l->cur = 0;
    ran += run_timers(l);
    if (l->after_pass.fn)
        l->after_pass.fn(l, l->after_pass.arg);
    return ran;
}

void fh_loop_run(fh_loop *l, int64_t max_sleep_ms)
{
    while (!fh_loop_stopped(l))
        if (fh_loop_once(l, max_sleep_ms) < 0)
            break;
}
