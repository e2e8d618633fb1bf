/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * loop - libev loops, cross-thread posts, and the SDK's io/timer wrappers.
 *
 * Posting: a mutex-protected FIFO plus one ev_async per loop. The async watcher stays referenced,
 * so an idle loop keeps running until loop_stop() (a worker with no connections must not return
 * from ev_run).
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct loop_post {
	struct loop_post *next;
	void (*fn)(void *arg);
	void *arg;
	bool embedded; /* part of a struct loop_grace: run_posts() must not free it */
};

/* A grace period: one embedded post per loop; the last one to run calls fn. */
struct loop_grace {
	atomic_uint pending;
	unsigned n;
	void (*fn)(void *arg);
	void *arg;
	struct loop_post marks[];
};

struct xp_io {
	ev_io w;
	struct xp_loop *loop;
	xp_io_cb cb;
	void *arg;
};

struct xp_timer {
	ev_timer w;
	struct xp_loop *loop;
	xp_timer_cb cb;
	void *arg;
};

static __thread struct xp_loop *current_loop;
static struct xp_loop *_Atomic main_loop;

/* Take the whole queue under the lock, run it unlocked: a posted function may post again (that
 * lands in the next batch) or take locks of its own. */
static void run_posts(struct xp_loop *l)
{
	struct loop_post *p, *next;

	pthread_mutex_lock(&l->lock);
	p = l->posts;
	l->posts = NULL;
	l->posts_tail = &l->posts;
	pthread_mutex_unlock(&l->lock);

	for (; p; p = next) {
		/* An embedded post may be freed by its own fn (the last mark of a grace period
		 * frees the period): read everything first. */
		bool embedded = p->embedded;

		next = p->next;
		p->fn(p->arg);
		if (!embedded)
			free(p);
	}
}

static void loop_async_cb(struct ev_loop *ev, ev_async *w, int revents)
{
	struct xp_loop *l = container_of(w, struct xp_loop, async);
	bool stop;

	run_posts(l);
	pthread_mutex_lock(&l->lock);
	stop = l->stop;
	pthread_mutex_unlock(&l->lock);
	if (stop)
		ev_break(ev, EVBREAK_ALL);
}

int loop_init(struct xp_loop *l, unsigned index, bool main, const char *name)
{
	int err;

	memset(l, 0, sizeof(*l));
	l->index = index;
	snprintf(l->name, sizeof(l->name), "%s", name ? name : (main ? "main" : "worker"));
	err = -pthread_mutex_init(&l->lock, NULL);
	if (err)
		return err;
	l->posts_tail = &l->posts;
	/* Workers block every signal, so libev need not touch their signal mask. */
	l->ev = main ? ev_default_loop(EVFLAG_AUTO) : ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!l->ev) {
		err = -ENOMEM;
		goto err_mutex;
	}
	ev_async_init(&l->async, loop_async_cb);
	ev_async_start(l->ev, &l->async);
	ev_set_userdata(l->ev, l);
	if (main) {
		/* outbound_put() compares this with pthread_self() to free inline on the main
		 * thread; has_thread stays false (there is nothing to join). */
		l->thread = pthread_self();
		main_loop = l;
	}
	return 0;

err_mutex:
	pthread_mutex_destroy(&l->lock);
	return err;
}

void loop_fini(struct xp_loop *l)
{
	if (!l || !l->ev)
		return;
	/* Posts made from here on fail with -ESHUTDOWN (their callers fall back to doing the work
	 * inline); the ones already queued often own memory only they release, so run them. */
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_mutex_unlock(&l->lock);
	run_posts(l);
	ev_async_stop(l->ev, &l->async);
	if (main_loop == l)
		main_loop = NULL;
	ev_loop_destroy(l->ev);
	l->ev = NULL;
	pthread_mutex_destroy(&l->lock);
}

void loop_run(struct xp_loop *l)
{
	struct xp_loop *prev = current_loop;

	current_loop = l;
	ev_run(l->ev, 0);
	current_loop = prev;
}

static void *loop_thread(void *arg)
{
	struct xp_loop *l = arg;

	loop_run(l);
	return NULL;
}

int loop_start_thread(struct xp_loop *l)
{
	sigset_t all, old;
	int err;

	if (l->has_thread)
		return -EALREADY;
	/* The thread inherits the mask at creation: no window in which it could take a signal
	 * meant for the main loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&l->thread, NULL, loop_thread, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return err;
	l->has_thread = true;
	pthread_setname_np(l->thread, l->name);
	return 0;
}

void loop_stop(struct xp_loop *l)
{
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_mutex_unlock(&l->lock);
	ev_async_send(l->ev, &l->async);
}

void loop_join(struct xp_loop *l)
{
	if (!l->has_thread)
		return;
	pthread_join(l->thread, NULL);
	l->has_thread = false;
}

int loop_post(struct xp_loop *l, void (*fn)(void *arg), void *arg)
{
	struct loop_post *p;

	if (!l || !fn)
		return -EINVAL;
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->fn = fn;
	p->arg = arg;
	p->embedded = false;

	pthread_mutex_lock(&l->lock);
	if (l->stop) {
		pthread_mutex_unlock(&l->lock);
		free(p);
		return -ESHUTDOWN;
	}
	*l->posts_tail = p;
	l->posts_tail = &p->next;
	/* Sent under the lock so loop_fini (after stop) cannot race with a send on a freed
	 * loop: once stop is seen here, nothing is queued or sent. */
	ev_async_send(l->ev, &l->async);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Grace periods                                                                               */

struct loop_grace *loop_grace_new(unsigned n_loops)
{
	struct loop_grace *g = calloc(1, sizeof(*g) + (size_t)n_loops * sizeof(g->marks[0]));

	if (g)
		g->n = n_loops;
	return g;
}

void loop_grace_free(struct loop_grace *g)
{
	free(g);
}

static void grace_done(struct loop_grace *g)
{
	g->fn(g->arg);
	free(g);
}

static void grace_mark_cb(void *arg)
{
	struct loop_grace *g = arg;

	if (atomic_fetch_sub(&g->pending, 1) == 1)
		grace_done(g);
}

void loop_grace_start(struct loop_grace *g, struct xp_loop *const *loops, unsigned n,
		      void (*fn)(void *arg), void *arg)
{
	if (n > g->n)
		n = g->n; /* a caller bug; never more marks than were allocated */
	g->fn = fn;
	g->arg = arg;
	/* One count per loop plus ours, dropped below: a mark that runs at once (another
	 * thread's loop) cannot end the period before every mark is queued. */
	atomic_init(&g->pending, n + 1);
	for (unsigned i = 0; i < n; i++) {
		struct xp_loop *l = loops[i];
		struct loop_post *p = &g->marks[i];

		p->next = NULL;
		p->fn = grace_mark_cb;
		p->arg = g;
		p->embedded = true;
		pthread_mutex_lock(&l->lock);
		*l->posts_tail = p;
		l->posts_tail = &p->next;
		/* Queued even when the loop is stopping (unlike loop_post): it then runs in the
		 * loop's last wake-up or in loop_fini(), after its thread left every callback,
		 * which is exactly the guarantee. No wake-up is sent to a stopping loop (see
		 * loop_post). */
		if (!l->stop)
			ev_async_send(l->ev, &l->async);
		pthread_mutex_unlock(&l->lock);
	}
	grace_mark_cb(g);
}

struct xp_loop *loop_current(void)
{
	return current_loop;
}

struct xp_loop *loop_main(void)
{
	return main_loop;
}

uint64_t loop_now_ms(struct xp_loop *l)
{
	return (uint64_t)(ev_now(l->ev) * 1000.0);
}

/* ------------------------------------------------------------------------------------------ */

static unsigned to_ev(unsigned events)
{
	return (events & XP_IO_READ ? EV_READ : 0) | (events & XP_IO_WRITE ? EV_WRITE : 0);
}

/* Nothing may touch `io` after the callback returns: the callback is allowed to free it (libev
 * itself does not touch a watcher after invoking it). */
static void io_ready_cb(struct ev_loop *ev, ev_io *w, int revents)
{
	struct xp_io *io = container_of(w, struct xp_io, w);
	unsigned events =
		(revents & EV_READ ? XP_IO_READ : 0) | (revents & EV_WRITE ? XP_IO_WRITE : 0);

	io->cb(io, w->fd, events, io->arg);
}

xp_io_t *loop_io_new(struct xp_loop *l, int fd, xp_io_cb cb, void *arg)
{
	struct xp_io *io;

	if (!l || fd < 0 || !cb) {
		errno = EINVAL;
		return NULL;
	}
	io = calloc(1, sizeof(*io));
	if (!io)
		return NULL;
	io->loop = l;
	io->cb = cb;
	io->arg = arg;
	ev_io_init(&io->w, io_ready_cb, fd, 0);
	return io;
}

void loop_io_set(xp_io_t *io, unsigned events)
{
	int ev = to_ev(events);

	if (!io)
		return;
	if (ev_is_active(&io->w) && (io->w.events & (EV_READ | EV_WRITE)) == ev)
		return;
	ev_io_stop(io->loop->ev, &io->w);
	if (!ev)
		return;
	ev_io_set(&io->w, io->w.fd, ev);
	ev_io_start(io->loop->ev, &io->w);
}

void loop_io_free(xp_io_t *io)
{
	if (!io)
		return;
	/* Stopping also drops a pending event, so the callback cannot run on freed memory. */
	ev_io_stop(io->loop->ev, &io->w);
	free(io);
}

static void timer_fire_cb(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct xp_timer *t = container_of(w, struct xp_timer, w);

	/* As for io: the callback may free the timer; nothing below touches it. */
	t->cb(t, t->arg);
}

xp_timer_t *loop_timer_new(struct xp_loop *l, xp_timer_cb cb, void *arg)
{
	struct xp_timer *t;

	if (!l || !cb) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->loop = l;
	t->cb = cb;
	t->arg = arg;
	ev_timer_init(&t->w, timer_fire_cb, 0., 0.);
	return t;
}

void loop_timer_set(xp_timer_t *t, uint64_t after_ms, uint64_t repeat_ms)
{
	if (!t)
		return;
	ev_timer_stop(t->loop->ev, &t->w);
	ev_timer_set(&t->w, (double)after_ms / 1000.0, (double)repeat_ms / 1000.0);
	ev_timer_start(t->loop->ev, &t->w);
}

void loop_timer_stop(xp_timer_t *t)
{
	if (!t)
		return;
	ev_timer_stop(t->loop->ev, &t->w);
}

void loop_timer_free(xp_timer_t *t)
{
	if (!t)
		return;
	ev_timer_stop(t->loop->ev, &t->w);
	free(t);
}
