/* fh_loop: a small event loop for the broker's threads, in the spirit of Redis's ae: epoll for
 * file descriptors, one wake-up eventfd other threads may signal, a timer heap, and hooks that run
 * before the loop sleeps and after each pass.
 *
 * One thread owns a loop: every function but fh_loop_wake and fh_loop_stop is called on it.
 *
 * A watch (fh_loop_io) is memory the caller owns and keeps in place while it is watched (embed it
 * in the object it serves). fh_loop_unwatch may be called from any callback, including one for
 * another descriptor of the same batch: events of that batch not yet dispatched for the unwatched
 * io are forgotten, so the caller may free it at once. The after-pass hook is the place to free
 * objects that other lists still point at during a pass. */
#ifndef FH_LOOP_H
#define FH_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "fh_error.h"

typedef struct fh_loop fh_loop;

enum {
    FH_LOOP_READ = 1,
    FH_LOOP_WRITE = 2,
    FH_LOOP_HUP = 4 /* error or hang-up (reported only) */
};

typedef struct fh_loop_io fh_loop_io;
/* Called with what happened: FH_LOOP_READ (also for EPOLLRDHUP), FH_LOOP_WRITE, FH_LOOP_HUP. */
typedef void (*fh_loop_io_fn)(fh_loop *l, fh_loop_io *io, unsigned what);

struct fh_loop_io {
    int fd;
    fh_loop_io_fn fn;
    void *arg;
    unsigned events; /* what is watched now (FH_LOOP_READ | FH_LOOP_WRITE) */
    int watched;
};

/* A timer callback returns the delay in ms until it runs again, or -1 to end. */
typedef int64_t (*fh_loop_timer_fn)(fh_loop *l, void *arg);
/* Hooks: before the loop sleeps (may shorten the sleep with fh_loop_no_sleep), after each pass,
 * and when another thread called fh_loop_wake. */
typedef void (*fh_loop_hook_fn)(fh_loop *l, void *arg);

/* Creates a loop that takes at most max_events descriptors per wait (1..4096) and keeps at most
 * max_timers timers. */
fh_err fh_loop_new(fh_loop **out, int max_events, size_t max_timers, char *errbuf, size_t errsize);
/* Frees the loop (not the watches, which the caller owns). NULL is a no-op. */
void fh_loop_free(fh_loop *l);

/* Starts watching io->fd for events (FH_LOOP_READ, FH_LOOP_WRITE or both); io->fn and io->arg
 * are the caller's. Returns FH_ERR_IO when epoll refuses (errno kept). */
fh_err fh_loop_watch(fh_loop *l, fh_loop_io *io, unsigned events);
/* Changes what a watched io waits for; a no-op when it already waits for exactly that. */
fh_err fh_loop_rewatch(fh_loop *l, fh_loop_io *io, unsigned events);
/* Stops watching io (the descriptor is not closed); pending events of the current batch for io
 * are dropped. A no-op for an io not watched. */
void fh_loop_unwatch(fh_loop *l, fh_loop_io *io);

/* Adds a timer that first runs after delay_ms. Returns its id (> 0), or 0 at the cap. */
uint64_t fh_loop_timer(fh_loop *l, int64_t delay_ms, fh_loop_timer_fn fn, void *arg);
/* Cancels a timer (a no-op when it already ended, or for id 0); its slot is free at once. */
void fh_loop_timer_cancel(fh_loop *l, uint64_t id);
/* Moves timer id to run after delay_ms (with fn and arg) and returns id; when id is 0, already
 * ended, or is the timer running now, adds a new timer instead and returns its id (0 at the
 * cap). One timer that follows a changing deadline (curl's, a batch's) without filling the
 * heap. */
uint64_t fh_loop_timer_rearm(fh_loop *l, uint64_t id, int64_t delay_ms, fh_loop_timer_fn fn,
                             void *arg);

void fh_loop_on_wake(fh_loop *l, fh_loop_hook_fn fn, void *arg);
void fh_loop_before_sleep(fh_loop *l, fh_loop_hook_fn fn, void *arg);
void fh_loop_after_pass(fh_loop *l, fh_loop_hook_fn fn, void *arg);
/* From the before-sleep hook: the next wait returns at once (work is ready). */
void fh_loop_no_sleep(fh_loop *l);
/* From the before-sleep hook: sleep at most ms (timers may make it shorter). */
void fh_loop_sleep_at_most(fh_loop *l, int64_t ms);

/* Any thread: runs the wake hook on the loop's thread soon (wake-ups coalesce). */
void fh_loop_wake(fh_loop *l);
/* Any thread: fh_loop_run returns after the current pass. */
void fh_loop_stop(fh_loop *l);
int fh_loop_stopped(fh_loop *l);

/* One pass: waits at most timeout_ms (-1: until something happens; timers and hooks shorten it),
 * dispatches descriptor events, due timers, then the after-pass hook. Returns the number of
 * callbacks run, or -1 when the wait failed other than by EINTR. It may be called again from the
 * after-pass hook (a nested pass, to wait for something the hook needs before it returns; the
 * hooks then run nested too and must know it); never from a descriptor or timer callback. */
int fh_loop_once(fh_loop *l, int64_t timeout_ms);
/* Passes until fh_loop_stop; max_sleep_ms bounds each wait (the loop's idle tick). */
void fh_loop_run(fh_loop *l, int64_t max_sleep_ms);

/* The loop's clock (CLOCK_MONOTONIC, ms), read once per pass. */
int64_t fh_loop_now(const fh_loop *l);

#endif
