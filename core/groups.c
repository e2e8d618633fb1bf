/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * groups - the daemon's live [group.NAME] set and its health checks. See groups.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include <ev.h>

#include "conn.h"
#include "dial.h"
#include "group.h"
#include "groups.h"
#include "log.h"
#include "udp.h"

struct gcheck {
	size_t gi, mi; /* group and member index in `live` */
	struct xp_loop *loop;
	ev_timer every;	  /* the interval */
	ev_timer tmo;	  /* the whole check: dial, request, status line */
	ev_io io;	  /* fd results */
	xp_dial_t *dial;  /* in flight or holding a stream */
	int fd;		  /* fd result, -1 otherwise */
	const struct xp_stream_ops *ops;
	void *stream;
	uint64_t start_ms;
	char req[512];
	size_t req_len, sent;
	char resp[256];
	size_t got;
	bool busy;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct group_set *live; /* under lock; its health is written on the main thread */
static int *live_ids;	       /* outbound id of each group */
static struct gcheck *checks;  /* main thread only */
static size_t n_checks;
static struct xp_handle who = { .kind = HANDLE_PLUGIN, .name = "group" };
static atomic_uint_fast64_t cut_tcp, cut_udp; /* closed by interrupt = yes, all time */

static uint64_t now_ms(struct xp_loop *l)
{
	return (uint64_t)(ev_now(l->ev) * 1000.0);
}

static void check_reset(struct gcheck *c)
{
	ev_timer_stop(c->loop->ev, &c->tmo);
	if (ev_is_active(&c->io))
		ev_io_stop(c->loop->ev, &c->io);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->dial)
		dial_close(c->dial); /* cancels a pending dial or closes its stream */
	c->dial = NULL;
	c->ops = NULL;
	c->stream = NULL;
	c->busy = false;
}

/* "s5a (avg 12 ms)", "s5a (no sample yet)", "sub (a group)" */
static const char *member_desc(const struct group *g, int i, char *buf, size_t len)
{
	const struct group_member *m;

	if (i < 0 || (size_t)i >= g->n) {
		snprintf(buf, len, "none");
		return buf;
	}
	m = &g->m[i];
	if (m->group >= 0)
		snprintf(buf, len, "%s (a group)", m->name);
	else if (m->h.have_avg)
		snprintf(buf, len, "%s (avg %u ms)", m->name, m->h.avg_ms);
	else
		snprintf(buf, len, "%s (no sample yet)", m->name);
	return buf;
}

static void cut_done(struct conn_cut *cut)
{
	uint64_t tcp = atomic_load(&cut->tcp), udp = atomic_load(&cut->udp);

	atomic_fetch_add(&cut_tcp, tcp);
	atomic_fetch_add(&cut_udp, udp);
	log_info("%s: interrupt closed %llu TCP connections, %llu UDP sessions", cut->why,
		 (unsigned long long)tcp, (unsigned long long)udp);
	free(cut);
}

/* Under lock: the cut for a CUT event (posted by the caller once unlocked), NULL if none. */
static struct conn_cut *cut_make(const struct group_ev *e)
{
	const struct group *g = &live->g[e->gi];
	struct conn_cut *cut;
	size_t *holders, n;
	int ob_id = outbound_id_lookup(e->leaf);

	if (ob_id <= 0)
		return NULL; /* no connection can have it */
	holders = calloc(live->n, sizeof(*holders));
	cut = calloc(1, sizeof(*cut) + live->n * sizeof(cut->via[0]));
	if (!holders || !cut) {
		log_error("group %s: out of memory: %s keeps its connections", g->name, e->leaf);
		free(holders);
		free(cut);
		return NULL;
	}
	n = group_holders(live, e->gi, holders, live->n);
	for (size_t i = 0; i < n; i++)
		if (live_ids[holders[i]] > 0)
			cut->via[cut->n_via++] = (uint16_t)live_ids[holders[i]];
	free(holders);
	atomic_init(&cut->refs, 1);
	cut->ob_id = (uint16_t)ob_id;
	cut->gid = live_ids[e->gi] > 0 ? (uint16_t)live_ids[e->gi] : 0;
	cut->done = cut_done;
	if (e->dead)
		snprintf(cut->why, sizeof(cut->why), "group %s: %s: member is dead", g->name,
			 e->leaf);
	else
		snprintf(cut->why, sizeof(cut->why), "group %s: %s: selection moved to %s",
			 g->name, e->leaf, e->to >= 0 ? g->m[e->to].name : "none");
	return cut;
}

/* Under lock, after a health result: log selection changes, return the cuts to post. */
static size_t changes_locked(size_t gi, size_t mi, enum group_change ch, struct conn_cut ***cuts)
{
	struct group_ev *evs;
	size_t n, k = 0;
	char a[96], b[96];

	*cuts = NULL;
	if (group_update(live, gi, mi, ch, &evs, &n)) {
		log_error("groups: out of memory: a selection change is not acted on");
		return 0;
	}
	if (n)
		*cuts = calloc(n, sizeof(**cuts));
	for (size_t i = 0; i < n; i++) {
		const struct group *g = &live->g[evs[i].gi];

		if (evs[i].kind == GROUP_EV_SELECT) {
			if (evs[i].from < 0)
				log_info("group %s: selected %s", g->name,
					 member_desc(g, evs[i].to, a, sizeof(a)));
			else
				log_info("group %s: selected %s, was %s", g->name,
					 member_desc(g, evs[i].to, a, sizeof(a)),
					 member_desc(g, evs[i].from, b, sizeof(b)));
		} else if (*cuts) {
			struct conn_cut *cut = cut_make(&evs[i]);

			if (cut)
				(*cuts)[k++] = cut;
		}
	}
	free(evs);
	return k;
}

static void check_done(struct gcheck *c, bool ok, const char *why)
{
	uint32_t ms;
	struct group *g;
	struct group_member *m;
	enum group_change ch;
	struct conn_cut **cuts;
	size_t n_cuts;

	check_reset(c);
	/* ev_now is the loop's cached time: refresh it so the latency is not rounded to a loop
	 * iteration's start */
	ev_now_update(c->loop->ev);
	ms = (uint32_t)(now_ms(c->loop) - c->start_ms);
	pthread_mutex_lock(&lock);
	g = &live->g[c->gi];
	m = &g->m[c->mi];
	ch = group_health_result(&m->h, ok, ms, g->tolerance);
	if (ch == GROUP_DIED)
		log_info("group %s: member %s is dead (%u failures: %s)", g->name, m->name,
			 m->h.fails, why);
	else if (ch == GROUP_REVIVED)
		log_info("group %s: member %s is alive again, %u ms", g->name, m->name, ms);
	else if (!ok)
		log_debug("group %s: member %s check failed (%u/%u: %s)", g->name, m->name,
			  m->h.fails, g->tolerance, why);
	else
		log_trace("group %s: member %s ok, %u ms (avg %u)", g->name, m->name, ms,
			  m->h.avg_ms);
	n_cuts = changes_locked(c->gi, c->mi, ch, &cuts);
	pthread_mutex_unlock(&lock);
	/* posted unlocked: the workers' routing takes the lock too */
	for (size_t i = 0; i < n_cuts; i++) {
		conn_cut_post(cuts[i]);
		udp_cut_post(cuts[i]);
		conn_cut_put(cuts[i]);
	}
	free(cuts);
}

/* Status line "HTTP/1.x NNN ..." once it is complete: 2xx/3xx means alive. */
static void check_response(struct gcheck *c)
{
	char *eol = memchr(c->resp, '\n', c->got);
	int code;

	if (!eol && c->got < sizeof(c->resp) - 1)
		return;
	c->resp[c->got < sizeof(c->resp) ? c->got : sizeof(c->resp) - 1] = '\0';
	if (sscanf(c->resp, "HTTP/1.%*1[01] %3d", &code) == 1 && code >= 200 && code < 400)
		check_done(c, true, NULL);
	else
		check_done(c, false, "bad status line");
}

/* Push the request, then read the status line. Returns after check_done() or when it must
 * wait (EAGAIN). */
static void check_advance(struct gcheck *c)
{
	ssize_t n;

	while (c->sent < c->req_len) {
		if (c->ops) {
			n = c->ops->send(c->stream, c->req + c->sent, c->req_len - c->sent);
		} else {
			n = send(c->fd, c->req + c->sent, c->req_len - c->sent, MSG_NOSIGNAL);
			if (n < 0)
				n = -errno;
		}
		if (n == -EAGAIN || n == -EWOULDBLOCK) {
			if (!c->ops) {
				ev_io_set(&c->io, c->fd, EV_WRITE);
				ev_io_start(c->loop->ev, &c->io);
			}
			return; /* streams: check_wake() calls again */
		}
		if (n < 0) {
			check_done(c, false, "send failed");
			return;
		}
		c->sent += (size_t)n;
	}
	while (c->busy) {
		if (c->ops) {
			n = c->ops->recv(c->stream, c->resp + c->got, sizeof(c->resp) - 1 - c->got);
		} else {
			n = recv(c->fd, c->resp + c->got, sizeof(c->resp) - 1 - c->got, 0);
			if (n < 0)
				n = -errno;
		}
		if (n == -EAGAIN || n == -EWOULDBLOCK) {
			if (!c->ops) {
				ev_io_set(&c->io, c->fd, EV_READ);
				ev_io_start(c->loop->ev, &c->io);
			}
			return;
		}
		if (n <= 0) {
			check_done(c, false, n == 0 ? "closed before a status line" : "recv failed");
			return;
		}
		c->got += (size_t)n;
		check_response(c);
	}
}

static void check_io_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct gcheck *c = w->data;

	ev_io_stop(l, w);
	check_advance(c);
}

static void check_wake(void *arg, unsigned what)
{
	struct gcheck *c = arg;

	if (c->busy && c->ops)
		check_advance(c);
}

static void check_dial_done(void *arg, xp_dial_t *d, int err, int fd,
			    const struct xp_stream_ops *ops, void *stream)
{
	struct gcheck *c = arg;
	bool http;

	if (err < 0) {
		char why[96];

		snprintf(why, sizeof(why), "connect: %s",
			 err == -ETIMEDOUT ? "timeout" : strerror(-err));
		/* the dial is finished: release it here, check_reset must not close it again */
		c->dial = NULL;
		dial_close(d);
		check_done(c, false, why);
		return;
	}
	c->fd = fd;
	c->ops = ops;
	c->stream = stream;
	pthread_mutex_lock(&lock);
	http = live->g[c->gi].check_path != NULL;
	pthread_mutex_unlock(&lock);
	if (!http) {
		check_done(c, true, NULL);
		return;
	}
	if (fd >= 0)
		ev_io_init(&c->io, check_io_cb, fd, EV_WRITE);
	c->io.data = c;
	check_advance(c);
}

static void check_tmo_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	check_done(w->data, false, "timeout");
}

static void check_start(struct gcheck *c)
{
	struct xp_dial_req req = { .size = sizeof(req) };
	const struct group *g;
	union xp_sockaddr a = { 0 };
	char host[256], member[64];
	bool name = false;

	if (c->busy)
		return; /* the previous one is still running (interval < timeout) */
	pthread_mutex_lock(&lock);
	g = &live->g[c->gi];
	snprintf(host, sizeof(host), "%s", g->check_host);
	snprintf(member, sizeof(member), "%s", g->m[c->mi].name);
	if (inet_pton(AF_INET6, host, &a.in6.sin6_addr) == 1) {
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = htons(g->check_port);
	} else {
		a.in.sin_family = AF_INET;
		a.in.sin_port = htons(g->check_port);
		name = inet_pton(AF_INET, host, &a.in.sin_addr) != 1;
	}
	c->req_len = 0;
	if (g->check_path) {
		int n = snprintf(c->req, sizeof(c->req),
				 "GET %s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: xproxy\r\n"
				 "Connection: close\r\n\r\n",
				 g->check_path, strchr(host, ':') ? "[" : "", host,
				 strchr(host, ':') ? "]" : "");

		c->req_len = n > 0 && (size_t)n < sizeof(c->req) ? (size_t)n : 0;
	}
	req.timeout_ms = g->timeout_ms;
	ev_timer_set(&c->tmo, (ev_tstamp)g->timeout_ms / 1000.0, 0.);
	pthread_mutex_unlock(&lock);

	req.outbound = member;
	req.target.size = sizeof(req.target);
	req.target.l4proto = IPPROTO_TCP;
	req.target.addr = a;
	req.target.domain = name ? host : NULL; /* the outbound resolves it, as for clients */
	req.done = check_dial_done;
	req.wake = check_wake;
	req.arg = c;
	c->sent = c->got = 0;
	c->fd = -1;
	ev_now_update(c->loop->ev);
	c->start_ms = now_ms(c->loop);
	c->busy = true;
	ev_timer_start(c->loop->ev, &c->tmo);
	c->dial = dial_new(&who, c->loop, &req);
	if (!c->dial) {
		char why[96];

		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		check_done(c, false, why);
	}
}

static void check_every_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	check_start(w->data);
}

static void checks_stop(void)
{
	for (size_t i = 0; i < n_checks; i++) {
		check_reset(&checks[i]);
		ev_timer_stop(checks[i].loop->ev, &checks[i].every);
	}
	free(checks);
	checks = NULL;
	n_checks = 0;
}

static void checks_start(struct group_set *s, struct xp_loop *main)
{
	size_t n = 0, k = 0;

	for (size_t i = 0; i < s->n; i++)
		for (size_t j = 0; group_needs_health(&s->g[i]) && j < s->g[i].n; j++)
			n += s->g[i].m[j].group < 0;
	checks = calloc(n ? n : 1, sizeof(*checks));
	if (!checks) {
		log_error("groups: out of memory: no health checks");
		return;
	}
	for (size_t i = 0; i < s->n; i++) {
		for (size_t j = 0; group_needs_health(&s->g[i]) && j < s->g[i].n; j++) {
			struct gcheck *c = &checks[k];
			double every = (double)s->g[i].interval_ms / 1000.0;

			if (s->g[i].m[j].group >= 0)
				continue;
			c->gi = i;
			c->mi = j;
			c->loop = main;
			c->fd = -1;
			ev_timer_init(&c->tmo, check_tmo_cb, 1., 0.);
			c->tmo.data = c;
			ev_io_init(&c->io, check_io_cb, -1, 0);
			c->io.data = c;
			/* the first check at once (spread a little), then every interval */
			ev_timer_init(&c->every, check_every_cb, 0.01 * (double)(k % 100), every);
			c->every.data = c;
			ev_timer_start(main->ev, &c->every);
			k++;
		}
	}
	n_checks = k;
}

int groups_apply(const struct cfg *cfg, struct xp_loop *main)
{
	struct group_set *s = NULL, *old;
	int *ids, rc;

	rc = group_set_parse(cfg, &s, NULL, NULL); /* cfg_parse() reported any error */
	if (rc)
		return rc;
	ids = calloc(s->n ? s->n : 1, sizeof(*ids));
	if (!ids) {
		group_set_free(s);
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->n; i++) {
		ids[i] = outbound_id(s->g[i].name); /* the id [route] gave it, or a new one */
		if (ids[i] < 0)
			log_error("group %s: no outbound id (%s)", s->g[i].name, strerror(-ids[i]));
	}
	checks_stop();
	pthread_mutex_lock(&lock);
	group_set_carry(s, live);
	old = live;
	live = s;
	free(live_ids);
	live_ids = ids;
	pthread_mutex_unlock(&lock);
	group_set_free(old);
	if (main)
		checks_start(s, main);
	return 0;
}

void groups_clear(void)
{
	checks_stop();
	pthread_mutex_lock(&lock);
	group_set_free(live);
	live = NULL;
	free(live_ids);
	live_ids = NULL;
	pthread_mutex_unlock(&lock);
}

static uint32_t rnd32(void)
{
	static _Thread_local uint32_t x;

	if (!x)
		x = (uint32_t)(uintptr_t)&x ^ (uint32_t)time(NULL) ^ 0x9e3779b9u;
	/* xorshift32: random member choice, not cryptography */
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

static struct outbound *get_locked(size_t gi, struct ob_via *via)
{
	const struct group *g = &live->g[gi];
	char leaf[64] = "", name[64], lat[32] = "";
	size_t path[OB_VIA_MAX], n_path = 0;
	const char *p = group_pick_path(live, gi, rnd32(), path, OB_VIA_MAX, &n_path);
	struct ob_via v = {0};
	struct outbound *ob;

	for (size_t i = 0; i < n_path && i < OB_VIA_MAX; i++)
		if (live_ids[path[i]] > 0)
			v.id[v.n++] = (uint16_t)live_ids[path[i]];
	v.more = n_path > OB_VIA_MAX;

	snprintf(name, sizeof(name), "%s", g->name);
	if (p)
		snprintf(leaf, sizeof(leaf), "%s", p);
	/* min-latency: the average that chose it (an outbound member of this very group) */
	for (size_t i = 0; p && g->policy == GROUP_MIN_LATENCY && i < g->n; i++)
		if (g->m[i].group < 0 && g->m[i].h.have_avg && !strcmp(g->m[i].name, p))
			snprintf(lat, sizeof(lat), " (avg %u ms)", g->m[i].h.avg_ms);
	pthread_mutex_unlock(&lock);
	if (!leaf[0]) {
		log_debug("group %s: no member alive", name);
		return NULL;
	}
	ob = outbound_get_by_name(leaf);
	if (ob && via)
		*via = v;
	log_debug("group %s: chose member %s%s", name, leaf, lat);
	return ob;
}

struct outbound *groups_get(uint16_t id, struct ob_via *via)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; live && i < live->n; i++)
		if (live_ids[i] == (int)id)
			return get_locked(i, via);
	pthread_mutex_unlock(&lock);
	return NULL;
}

struct outbound *groups_get_by_name(const char *name, struct ob_via *via)
{
	int gi;

	pthread_mutex_lock(&lock);
	gi = live ? group_find(live, name) : -1;
	if (gi >= 0)
		return get_locked((size_t)gi, via);
	pthread_mutex_unlock(&lock);
	return NULL;
}

void groups_log_stats(void)
{
	bool any;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; live && i < live->n; i++) {
		const struct group *g = &live->g[i];

		for (size_t j = 0; j < g->n; j++) {
			const struct group_member *m = &g->m[j];

			if (m->group >= 0)
				log_info("stats: group %s member %s: a group", g->name, m->name);
			else if (!group_needs_health(g))
				log_info("stats: group %s member %s: not checked (%s)", g->name,
					 m->name, group_policy_name(g->policy));
			else
				log_info("stats: group %s member %s: %s, avg %u ms, checks %llu "
					 "failed %llu",
					 g->name, m->name, m->h.alive ? "alive" : "dead",
					 m->h.have_avg ? m->h.avg_ms : 0,
					 (unsigned long long)m->h.checks,
					 (unsigned long long)m->h.failures);
		}
	}
	any = live && live->n;
	pthread_mutex_unlock(&lock);
	if (any)
		log_info("stats: group interrupts closed %llu TCP connections, %llu UDP sessions",
			 (unsigned long long)atomic_load(&cut_tcp),
			 (unsigned long long)atomic_load(&cut_udp));
}
