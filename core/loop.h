/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * loop - libev event loops: the main loop (signals, ring buffer, timers, control) and one loop
 * per worker thread. struct xp_loop is the SDK's opaque xp_loop_t; the io/timer functions
 * below are the host table's implementations.
 */
#ifndef XP_LOOP_H
#define XP_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include <xproxy/plugin.h>

struct loop_post;

struct xp_loop {
	struct ev_loop *ev;
	unsigned index; /* 0 = main loop, 1..n = worker i-1 */
	char name[16];	/* "main", "worker0", ... (thread name) */
	pthread_t thread;
	bool has_thread;
	ev_async async; /* wakes the loop for posted functions and stop requests */
	pthread_mutex_t lock;
	struct loop_post *posts; /* FIFO of posted functions, under lock */
	struct loop_post **posts_tail;
	bool stop; /* under lock */
	void *owner; /* the worker running this loop; NULL for main */
};

/* main: use libev's default loop (the only one that can take signals). 0 or -errno. */
int loop_init(struct xp_loop *l, unsigned index, bool main, const char *name);
/* Runs posted functions still queued, then frees the loop (must not be running). */
void loop_fini(struct xp_loop *l);

/* Run the loop on the calling thread until loop_stop(). */
void loop_run(struct xp_loop *l);
/* Start a thread that runs the loop (blocks all signals in it). 0 or -errno. */
int loop_start_thread(struct xp_loop *l);
/* Thread-safe: make loop_run() return soon. */
void loop_stop(struct xp_loop *l);
void loop_join(struct xp_loop *l);

/* Thread-safe: run fn(arg) on the loop's thread. 0 or -errno (-ESHUTDOWN once stopped). */
int loop_post(struct xp_loop *l, void (*fn)(void *arg), void *arg);

/*
 * Grace periods (quiescent-state reclamation). Data that loop callbacks read without a lock
 * or a reference (the live configuration's rules, see docs/ARCHITECTURE.md "Threads and
 * lifetimes") is replaced by swapping a pointer; the old copy may be freed once every loop
 * that could have read it has returned to its event loop since the swap, because no callback
 * keeps such a pointer past its return. A grace period queues one mark on each loop and calls
 * fn(arg) when the last mark has run: on the thread of that loop (or inside loop_fini() of a
 * loop that was stopped), so fn must not need a particular thread; inline in
 * loop_grace_start() when n is 0. A loop that never runs again and is never loop_fini()ed
 * keeps the period open forever.
 *
 * loop_grace_new() allocates everything (the only step that can fail: NULL, errno set), so a
 * caller can allocate before it commits to a swap; loop_grace_start() cannot fail and hands
 * the period over (it frees itself after fn); loop_grace_free() drops one never started.
 */
struct loop_grace;
struct loop_grace *loop_grace_new(unsigned n_loops);
void loop_grace_start(struct loop_grace *g, struct xp_loop *const *loops, unsigned n,
		      void (*fn)(void *arg), void *arg);
void loop_grace_free(struct loop_grace *g);

/* The loop running on this thread, NULL if none. */
struct xp_loop *loop_current(void);
struct xp_loop *loop_main(void);
uint64_t loop_now_ms(struct xp_loop *l);

/* SDK watches and timers (same loop). */
xp_io_t *loop_io_new(struct xp_loop *l, int fd, xp_io_cb cb, void *arg);
void loop_io_set(xp_io_t *io, unsigned events);
void loop_io_free(xp_io_t *io);
xp_timer_t *loop_timer_new(struct xp_loop *l, xp_timer_cb cb, void *arg);
void loop_timer_set(xp_timer_t *t, uint64_t after_ms, uint64_t repeat_ms);
void loop_timer_stop(xp_timer_t *t);
void loop_timer_free(xp_timer_t *t);

#endif
