/* SPDX-License-Identifier: GPL-2.0-only */
/* loop: cross-thread posts, worker threads, io watches and timers. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"

/* ------------------------------------------------------------------------------------------ */
/* Posts                                                                                        */

#define POSTERS	   4
#define POSTS_EACH 20000

struct post_state {
	struct xp_loop *l;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t next_seq[POSTERS]; /* next expected sequence per poster */
	unsigned out_of_order, wrong_thread, wrong_loop, unblocked_signals;
	uint64_t total;
	bool done;
	char thread_name[16];
};

struct post_item {
	struct post_state *st;
	unsigned poster;
	uint64_t seq;
};

static struct post_item items[POSTERS][POSTS_EACH];

static void post_fn(void *arg)
{
	struct post_item *it = arg;
	struct post_state *st = it->st;

	/* Only the loop thread runs this: no lock needed for the counters. */
	if (loop_current() != st->l)
		st->wrong_loop++;
	if (!pthread_equal(pthread_self(), st->l->thread))
		st->wrong_thread++;
	if (st->next_seq[it->poster] != it->seq)
		st->out_of_order++;
	st->next_seq[it->poster] = it->seq + 1;
	st->total++;
}

static void done_fn(void *arg)
{
	struct post_state *st = arg;
	sigset_t cur;

	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	if (!sigismember(&cur, SIGTERM) || !sigismember(&cur, SIGINT) ||
	    !sigismember(&cur, SIGHUP) || !sigismember(&cur, SIGPIPE))
		st->unblocked_signals++;
	pthread_getname_np(pthread_self(), st->thread_name, sizeof(st->thread_name));
	pthread_mutex_lock(&st->lock);
	st->done = true;
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->lock);
}

struct poster_arg {
	struct post_state *st;
	unsigned idx;
	int failures;
};

static void *poster(void *arg)
{
	struct poster_arg *pa = arg;

	for (unsigned i = 0; i < POSTS_EACH; i++) {
		struct post_item *it = &items[pa->idx][i];

		it->st = pa->st;
		it->poster = pa->idx;
		it->seq = i;
		if (loop_post(pa->st->l, post_fn, it))
			pa->failures++;
	}
	return NULL;
}

static void noop_fn(void *arg)
{
	(*(int *)arg)++;
}

static void test_post_threads(void **state)
{
	struct xp_loop l;
	struct post_state st = {.l = &l};
	struct poster_arg pa[POSTERS];
	pthread_t th[POSTERS];
	int ran = 0;

	pthread_mutex_init(&st.lock, NULL);
	pthread_cond_init(&st.cond, NULL);
	assert_int_equal(loop_init(&l, 1, false, "tl-worker"), 0);
	assert_int_equal(loop_start_thread(&l), 0);
	assert_true(l.has_thread);

	for (unsigned i = 0; i < POSTERS; i++) {
		pa[i] = (struct poster_arg){.st = &st, .idx = i};
		assert_int_equal(pthread_create(&th[i], NULL, poster, &pa[i]), 0);
	}
	for (unsigned i = 0; i < POSTERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(pa[i].failures, 0);
	}
	/* FIFO: posted after every poster finished, so it runs after all their items. */
	assert_int_equal(loop_post(&l, done_fn, &st), 0);
	pthread_mutex_lock(&st.lock);
	while (!st.done)
		pthread_cond_wait(&st.cond, &st.lock);
	pthread_mutex_unlock(&st.lock);

	assert_int_equal(st.total, (uint64_t)POSTERS * POSTS_EACH);
	assert_int_equal(st.out_of_order, 0);
	assert_int_equal(st.wrong_thread, 0);
	assert_int_equal(st.wrong_loop, 0);
	assert_int_equal(st.unblocked_signals, 0);
	assert_string_equal(st.thread_name, "tl-worker");
	assert_null(loop_current()); /* this thread runs no loop */

	loop_stop(&l);
	loop_join(&l);
	assert_false(l.has_thread);
	assert_int_equal(loop_post(&l, noop_fn, &ran), -ESHUTDOWN);
	loop_fini(&l);
	assert_int_equal(ran, 0);
	pthread_cond_destroy(&st.cond);
	pthread_mutex_destroy(&st.lock);
}

/* Posted before the loop ever ran: loop_fini must still run it (it may own memory). */
static void test_post_unrun_runs_at_fini(void **state)
{
	struct xp_loop l;
	int ran = 0;

	assert_int_equal(loop_init(&l, 1, false, "tl-idle"), 0);
	assert_int_equal(loop_post(&l, noop_fn, &ran), 0);
	assert_int_equal(loop_post(&l, noop_fn, &ran), 0);
	assert_int_equal(ran, 0);
	loop_fini(&l);
	assert_int_equal(ran, 2);
	assert_int_equal(loop_post(NULL, noop_fn, &ran), -EINVAL);
}

/* A stop requested before run makes run return at once, after running earlier posts. */
static void test_stop_before_run(void **state)
{
	struct xp_loop l;
	int ran = 0;

	assert_int_equal(loop_init(&l, 2, false, "tl-stop"), 0);
	assert_int_equal(loop_post(&l, noop_fn, &ran), 0);
	loop_stop(&l);
	loop_run(&l); /* returns: the test would hang otherwise (meson timeout) */
	assert_int_equal(ran, 1);
	assert_int_equal(loop_post(&l, noop_fn, &ran), -ESHUTDOWN);
	loop_fini(&l);
	assert_int_equal(ran, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* io and timers on the main loop                                                               */

struct io_state {
	struct xp_loop *l;
	int p[2];
	xp_io_t *rio, *wio;
	xp_timer_t *check, *once, *rep, *stopped;
	int reads, writes, rep_fires, once_fires, stopped_fires, checks;
	bool read_freed;
	unsigned last_events;
	uint64_t t_start, t_once;
	int step;
};

static void rio_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct io_state *s = arg;
	char b;

	s->last_events = revents;
	if (read(fd, &b, 1) == 1)
		s->reads++;
	if (s->reads == 1) {
		/* Pause; the check timer writes another byte that must not be seen. */
		loop_io_set(io, 0);
	} else if (s->reads == 2) {
		/* Freeing a watch inside its own callback. */
		loop_io_free(io);
		s->rio = NULL;
		s->read_freed = true;
	}
}

static void wio_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct io_state *s = arg;

	if (revents & XP_IO_WRITE)
		s->writes++;
	loop_io_free(io);
	s->wio = NULL;
}

static void once_cb(xp_timer_t *t, void *arg)
{
	struct io_state *s = arg;

	s->once_fires++;
	s->t_once = loop_now_ms(s->l);
}

static void rep_cb(xp_timer_t *t, void *arg)
{
	struct io_state *s = arg;

	if (++s->rep_fires == 3) {
		loop_timer_free(t); /* inside its own callback, while repeating */
		s->rep = NULL;
	}
}

static void stopped_cb(xp_timer_t *t, void *arg)
{
	((struct io_state *)arg)->stopped_fires++;
}

static void check_cb(xp_timer_t *t, void *arg)
{
	struct io_state *s = arg;

	s->checks++;
	switch (s->step++) {
	case 0:
		/* First byte was read and the watch paused: write a second one. */
		assert_int_equal(write(s->p[1], "b", 1), 1);
		loop_timer_set(t, 50, 0);
		break;
	case 1:
		/* 50 ms later the paused watch has not fired; resume it. */
		s->checks += 100 * s->reads; /* recorded for the test below */
		loop_io_set(s->rio, XP_IO_READ);
		loop_timer_set(t, 50, 0);
		break;
	default:
		loop_timer_free(t);
		s->check = NULL;
		loop_stop(s->l);
		break;
	}
}

static void test_io_and_timers(void **state)
{
	struct xp_loop l;
	struct io_state s = {.l = &l};

	assert_int_equal(loop_init(&l, 0, true, NULL), 0);
	assert_ptr_equal(loop_main(), &l);
	assert_string_equal(l.name, "main");
	assert_int_equal(pipe(s.p), 0);

	s.rio = loop_io_new(&l, s.p[0], rio_cb, &s);
	s.wio = loop_io_new(&l, s.p[1], wio_cb, &s);
	assert_non_null(s.rio);
	assert_non_null(s.wio);
	assert_null(loop_io_new(&l, -1, rio_cb, &s));
	loop_io_set(s.rio, XP_IO_READ);
	loop_io_set(s.wio, XP_IO_WRITE);
	assert_int_equal(write(s.p[1], "a", 1), 1);

	s.once = loop_timer_new(&l, once_cb, &s);
	s.rep = loop_timer_new(&l, rep_cb, &s);
	s.stopped = loop_timer_new(&l, stopped_cb, &s);
	s.check = loop_timer_new(&l, check_cb, &s);
	s.t_start = loop_now_ms(&l);
	/* Re-arm before it fires: only the second setting counts. */
	loop_timer_set(s.once, 5000, 0);
	loop_timer_set(s.once, 30, 0);
	loop_timer_set(s.rep, 5, 5);
	loop_timer_set(s.stopped, 10, 0);
	loop_timer_stop(s.stopped);
	loop_timer_set(s.check, 20, 0);

	loop_run(&l);

	assert_int_equal(s.writes, 1);
	assert_null(s.wio);
	assert_true(s.read_freed);
	assert_int_equal(s.reads, 2);
	assert_int_equal(s.last_events, XP_IO_READ);
	assert_int_equal(s.checks, 3 + 100); /* one read when checked while paused */
	assert_int_equal(s.rep_fires, 3);
	assert_int_equal(s.once_fires, 1);
	assert_int_equal(s.stopped_fires, 0);
	assert_true(s.t_once >= s.t_start + 25);

	loop_timer_free(s.once);
	loop_timer_free(s.stopped);
	loop_timer_free(NULL);
	loop_io_free(NULL);
	close(s.p[0]);
	close(s.p[1]);
	loop_fini(&l);
	assert_null(loop_main());
}

/* Thread start, stop from another thread while idle, join, restartable set-up. */
static void test_thread_lifecycle(void **state)
{
	for (int i = 0; i < 3; i++) {
		struct xp_loop l;

		assert_int_equal(loop_init(&l, 3, false, "tl-cycle"), 0);
		assert_int_equal(loop_start_thread(&l), 0);
		assert_int_equal(loop_start_thread(&l), -EALREADY);
		usleep(10000);
		loop_stop(&l);
		loop_join(&l);
		loop_join(&l); /* second join: no-op */
		loop_fini(&l);
	}
}


/* ------------------------------------------------------------------------------------------ */
/* Grace periods                                                                                */

#define SNAP_MAGIC 0x5eadc0deu
#define SNAP_WORDS 64

/* Stands for a configuration: readers check that it is whole; freeing poisons it first, so a
 * reader that got it too late fails the check even without AddressSanitizer (with it, the read
 * itself is reported). */
struct snap {
	unsigned magic;
	unsigned gen;
	unsigned words[SNAP_WORDS]; /* every word == gen */
};

static atomic_uint snaps_freed;

static struct snap *snap_new(unsigned gen)
{
	struct snap *s = malloc(sizeof(*s));

	assert_non_null(s);
	s->magic = SNAP_MAGIC;
	s->gen = gen;
	for (unsigned i = 0; i < SNAP_WORDS; i++)
		s->words[i] = gen;
	return s;
}

static void snap_free(void *arg)
{
	struct snap *s = arg;

	s->magic = 0;
	memset(s->words, 0xff, sizeof(s->words));
	free(s);
	atomic_fetch_add(&snaps_freed, 1);
}

static bool snap_whole(const struct snap *s)
{
	if (s->magic != SNAP_MAGIC)
		return false;
	for (unsigned i = 0; i < SNAP_WORDS; i++)
		if (s->words[i] != s->gen)
			return false;
	return true;
}

static void wait_for(atomic_uint *v, unsigned want)
{
	for (int i = 0; i < 5000 && atomic_load(v) < want; i++)
		usleep(1000);
}

/* A callback that holds the snapshot it read while the main thread swaps it twice and starts
 * a grace period for each old one: neither may be freed before the callback returns. */
struct holder {
	struct snap *_Atomic *cur;
	atomic_uint entered, release, bad, done;
};

static void holder_fn(void *arg)
{
	struct holder *h = arg;
	struct snap *s = atomic_load(h->cur);

	atomic_store(&h->entered, 1);
	while (!atomic_load(&h->release))
		usleep(500);
	if (!snap_whole(s))
		atomic_fetch_add(&h->bad, 1);
	atomic_store(&h->done, 1);
}

static void test_grace_waits_for_busy_loop(void **state)
{
	struct snap *_Atomic cur = snap_new(1);
	struct holder h = {.cur = &cur};
	struct xp_loop w[2];
	struct xp_loop *loops[2] = {&w[0], &w[1]};

	atomic_store(&snaps_freed, 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(loop_init(&w[i], (unsigned)i + 1, false, "tl-grace"), 0);
		assert_int_equal(loop_start_thread(&w[i]), 0);
	}
	assert_int_equal(loop_post(&w[0], holder_fn, &h), 0);
	wait_for(&h.entered, 1);
	assert_int_equal(atomic_load(&h.entered), 1);

	for (unsigned gen = 2; gen <= 3; gen++) {
		struct loop_grace *g = loop_grace_new(2);
		struct snap *old = atomic_exchange(&cur, snap_new(gen));

		assert_non_null(g);
		loop_grace_start(g, loops, 2, snap_free, old);
	}
	/* w[1] is idle and passes at once; w[0] is still inside holder_fn. */
	usleep(50 * 1000);
	assert_int_equal(atomic_load(&snaps_freed), 0);
	atomic_store(&h.release, 1);
	wait_for(&snaps_freed, 2);
	assert_int_equal(atomic_load(&h.done), 1);
	assert_int_equal(atomic_load(&h.bad), 0);
	assert_int_equal(atomic_load(&snaps_freed), 2);

	for (int i = 0; i < 2; i++) {
		loop_stop(&w[i]);
		loop_join(&w[i]);
		loop_fini(&w[i]);
	}
	snap_free(atomic_load(&cur));
}

static void count_fn(void *arg)
{
	atomic_fetch_add((atomic_uint *)arg, 1);
}

/* No loops: fn runs inline. A never-started period is just freed. A stopped (joined) loop
 * runs its mark in loop_fini(); a loop that never ran does too. */
static void test_grace_edges(void **state)
{
	atomic_uint ran = 0;
	struct loop_grace *g;
	struct xp_loop a, b;
	struct xp_loop *loops[2] = {&a, &b};

	g = loop_grace_new(0);
	assert_non_null(g);
	loop_grace_start(g, NULL, 0, count_fn, &ran);
	assert_int_equal(atomic_load(&ran), 1);

	loop_grace_free(loop_grace_new(4));
	loop_grace_free(NULL);

	assert_int_equal(loop_init(&a, 1, false, "tl-ga"), 0);
	assert_int_equal(loop_init(&b, 2, false, "tl-gb"), 0);
	assert_int_equal(loop_start_thread(&a), 0);
	loop_stop(&a);
	loop_join(&a); /* a: stopped; b: never ran */
	g = loop_grace_new(2);
	assert_non_null(g);
	loop_grace_start(g, loops, 2, count_fn, &ran);
	assert_int_equal(atomic_load(&ran), 1);
	loop_fini(&a);
	assert_int_equal(atomic_load(&ran), 1); /* b has not passed */
	loop_fini(&b);
	assert_int_equal(atomic_load(&ran), 2);
}

/* Readers on two worker loops look at the live snapshot in every callback (re-posting
 * themselves, so they never stop reading) while the main thread replaces it thousands of
 * times, each old one retired through a grace period. Every snapshot a reader sees must be
 * whole, and every retired one must be freed exactly once by the end. */
#define SWAPS 3000

struct reader {
	struct xp_loop *l;
	struct snap *_Atomic *cur;
	atomic_bool *stop;
	atomic_uint bad;
	unsigned long reads;
};

static void reader_fn(void *arg)
{
	struct reader *r = arg;
	struct snap *s = atomic_load(r->cur);

	for (int i = 0; i < 20; i++) /* a routing decision reads the rules for a while */
		if (!snap_whole(s))
			atomic_fetch_add(&r->bad, 1);
	r->reads++;
	/* Refused only once the test stops the loop (after setting stop). */
	if (!atomic_load(r->stop) && loop_post(r->l, reader_fn, r) && !atomic_load(r->stop))
		atomic_fetch_add(&r->bad, 1);
}

static void test_grace_stress(void **state)
{
	struct snap *_Atomic cur = snap_new(0);
	atomic_bool stop = false;
	struct xp_loop w[2];
	struct xp_loop *loops[2] = {&w[0], &w[1]};
	struct reader r[2];

	atomic_store(&snaps_freed, 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(loop_init(&w[i], (unsigned)i + 1, false, "tl-stress"), 0);
		r[i] = (struct reader){.l = &w[i], .cur = &cur, .stop = &stop};
		assert_int_equal(loop_start_thread(&w[i]), 0);
		assert_int_equal(loop_post(&w[i], reader_fn, &r[i]), 0);
	}
	for (unsigned gen = 1; gen <= SWAPS; gen++) {
		struct loop_grace *g = loop_grace_new(2);
		struct snap *old;

		assert_non_null(g);
		old = atomic_exchange(&cur, snap_new(gen));
		loop_grace_start(g, loops, 2, snap_free, old);
		if (gen % 64 == 0)
			usleep(200); /* let the readers catch up now and then */
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++) {
		loop_stop(&w[i]);
		loop_join(&w[i]);
		loop_fini(&w[i]); /* marks still queued run here */
	}
	assert_int_equal(atomic_load(&snaps_freed), SWAPS);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(atomic_load(&r[i].bad), 0);
		assert_true(r[i].reads > 0);
	}
	snap_free(atomic_load(&cur));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_post_threads),
		cmocka_unit_test(test_post_unrun_runs_at_fini),
		cmocka_unit_test(test_stop_before_run),
		cmocka_unit_test(test_io_and_timers),
		cmocka_unit_test(test_thread_lifecycle),
		cmocka_unit_test(test_grace_waits_for_busy_loop),
		cmocka_unit_test(test_grace_edges),
		cmocka_unit_test(test_grace_stress),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
