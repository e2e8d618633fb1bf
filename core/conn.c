/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * conn - workers, the accept loop and the connection state machine. See conn.h.
 *
 * Re-entrancy: an outbound may report its result (ready_fd, ready_stream, fail) from inside
 * tcp_connect(), and a stream may call stream_wake() from inside send()/recv() or from its own
 * callbacks. None of these is acted on inside the plugin's call: they are recorded and a
 * never-started watcher (kick) is fed to the loop, whose callback runs right after the current
 * one returns, in the same loop iteration. So the core never frees a connection, or calls back
 * into a stream, while the plugin is still on the stack with its own state half updated.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "conn.h"
#include "flowev.h"
#include "log.h"
#include "outbound.h"
#include "ptrset.h"
#include "relay.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ACCEPT_BATCH	    64 /* accepts per callback, so one busy listener cannot starve relays */
#define ACCEPT_PAUSE_S	    0.1 /* after EMFILE/ENFILE */
#define EMFILE_LOG_EVERY_MS 10000
#define DEFAULT_BUFFER	    65536
#define LISTEN_BACKLOG	    4096

struct conn_stats conn_stats;
static atomic_uint_fast64_t conn_next_id;

enum conn_state {
	CONN_SNIFF,
	CONN_ROUTE,
	CONN_CONNECT,
	CONN_RELAY,
	CONN_CLOSE,
};

enum conn_result {
	RES_NONE,
	RES_FD,
	RES_STREAM,
	RES_FAIL,
};

#define KICK_RESULT 0x100 /* besides RELAY_SERVER_READ/WRITE (stream wakes) */

struct xp_conn {
	struct xp_conn *next, *prev; /* worker->conns */
	struct worker *w;
	struct xp_conn_info info;
	enum conn_state state;
	int cfd;
	struct conn_opts opts; /* as they were at accept: a reload applies to new connections */
	struct outbound *ob;
	void *cctx; /* tcp_connect's, until a result or tcp_abort */
	struct {
		enum conn_result type;
		int fd;
		int err;
		const struct xp_stream_ops *ops;
		void *stream;
	} res;
	bool ob_busy;  /* tcp_connect() returned 0 and no result came yet: tcp_abort owed */
	bool relay_on; /* relay initialised: it owns the server side */
	struct relay relay;
	ev_io cio; /* client socket */
	ev_io sio; /* server socket (fd relay) */
	ev_timer timer;
	ev_idle kick;	/* never started: only fed, see the top of this file */
	ev_timer again; /* RELAY_MORE: the stream's turn again after the others' (next iteration) */
	unsigned kick_what;
	ev_tstamp start, last, half; /* accept, last bytes moved, first direction ended */
	char why[64];
	char domain[256]; /* info.domain points here once named */
	struct ob_via via; /* the groups that led to ob (conn_route.via) */
	struct conn_headless *hl; /* headless (a dial): no client, no worker */
	/* SNIFF: the hook's state, the peek buffer, bytes seen so far */
	void *sniff_state;
	uint8_t *sniff_buf;
	size_t sniff_max, sniff_seen;
	bool sniff_lowat; /* SO_RCVLOWAT raised: lowered back before the relay */
};

static struct conn_sniff_hook sniff_hook;
static bool sniff_hook_set;

void conn_set_sniff_hook(const struct conn_sniff_hook *h)
{
	sniff_hook_set = h != NULL;
	if (h)
		sniff_hook = *h;
}

struct conn_headless {
	struct xp_loop *loop;
	struct conn_headless_ops ops;
	void *arg;
};

xp_conn_t *conn_headless_new(struct xp_loop *loop, const struct xp_conn_info *info,
			     const struct conn_headless_ops *ops, void *arg)
{
	struct xp_conn *c = calloc(1, sizeof(*c) + sizeof(struct conn_headless));

	if (!c)
		return NULL;
	c->hl = (struct conn_headless *)(c + 1);
	c->hl->loop = loop;
	c->hl->ops = *ops;
	c->hl->arg = arg;
	c->info = *info;
	c->info.size = sizeof(c->info);
	c->info.id = atomic_fetch_add(&conn_next_id, 1) + 1;
	c->cfd = -1;
	c->res.fd = -1;
	c->state = CONN_CONNECT;
	return c;
}

void conn_headless_free(xp_conn_t *c)
{
	if (c && c->hl)
		free(c);
}

static void conn_route_step(struct xp_conn *c);
static void conn_routed(struct xp_conn *c, int err, struct conn_route *rt);
static void conn_sniff_start(struct xp_conn *c, struct conn_route *rt);
static void conn_sniff_read(struct xp_conn *c);
static void conn_close(struct xp_conn *c, bool abort, const char *why);

static struct ev_loop *conn_ev(struct xp_conn *c)
{
	return c->w->loop.ev;
}

/* SO_LINGER {1, 0}: close() sends a RST instead of a FIN. */
static void reset_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* A FIN, not a RST: Linux answers close() with a RST while unread bytes sit in the receive
 * queue, so discard them first (MSG_TRUNC discards TCP data without copying). */
static void fin_close(int fd)
{
	if (fd < 0)
		return; /* handed over (adopt) */
	recv(fd, NULL, 1 << 30, MSG_TRUNC | MSG_DONTWAIT);
	close(fd);
}

static const char *addr_str(const union xp_sockaddr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (a->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->in.sin_port));
	} else if (a->sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
	return buf;
}

static void io_want(struct ev_loop *ev, ev_io *io, int events)
{
	if (ev_is_active(io) && (io->events & (EV_READ | EV_WRITE)) == events)
		return;
	if (!ev_is_active(io) && !events)
		return;
	ev_io_stop(ev, io);
	if (!events)
		return;
	ev_io_set(io, io->fd, events);
	ev_io_start(ev, io);
}

/* 0 = no timeout. */
static void timer_arm(struct xp_conn *c, ev_tstamp after)
{
	ev_timer_stop(conn_ev(c), &c->timer);
	if (after <= 0)
		return;
	ev_timer_set(&c->timer, after, 0.);
	ev_timer_start(conn_ev(c), &c->timer);
}

static ev_tstamp ms_to_s(uint64_t ms)
{
	return (ev_tstamp)ms / 1000.0;
}

static void kick(struct xp_conn *c, unsigned what)
{
	c->kick_what |= what;
	ev_feed_event(conn_ev(c), &c->kick, EV_CUSTOM);
}

/* ------------------------------------------------------------------------------------------ */
/* CLOSE                                                                                        */

static void conn_close(struct xp_conn *c, bool abort, const char *why)
{
	struct worker *w = c->w;
	struct ev_loop *ev = conn_ev(c);
	uint64_t up = 0, down = 0;

	if (c->state == CONN_CLOSE)
		return;
	/* First: anything the plugin calls from here on (a stray result or wake) is refused. */
	c->state = CONN_CLOSE;
	ev_timer_stop(ev, &c->timer);
	ev_timer_stop(ev, &c->again);
	ev_io_stop(ev, &c->cio);
	ev_io_stop(ev, &c->sio);
	if (c->sniff_state && sniff_hook_set)
		sniff_hook.abort(c->sniff_state);
	c->sniff_state = NULL;
	free(c->sniff_buf);
	c->sniff_buf = NULL;

	if (c->ob_busy) {
		/* Gave up before a result: the outbound releases cctx and forgets us. */
		c->ob_busy = false;
		if (c->ob->ops->tcp_abort)
			c->ob->ops->tcp_abort(c->ob->inst, c->cctx);
	}
	c->cctx = NULL;
	/* A result recorded but not acted on yet (worker_stop between the two). */
	if (c->res.type == RES_FD && !c->relay_on)
		reset_close(c->res.fd);
	else if (c->res.type == RES_STREAM && !c->relay_on)
		c->res.ops->close(c->res.stream, 1);

	if (c->relay_on) {
		/* Undelivered bytes: a FIN would tell the receiver it got everything. */
		if (c->relay.up.len || c->relay.down.len)
			abort = true;
		if (c->relay.ops)
			c->relay.ops->close(c->relay.stream, abort);
		else if (abort)
			reset_close(c->relay.sfd);
		else
			close(c->relay.sfd);
		up = c->relay.up.bytes;
		down = c->relay.down.bytes;
		relay_release(&c->relay);
	}
	if (abort)
		reset_close(c->cfd);
	else if (c->relay_on && c->relay.up.eof)
		close(c->cfd); /* read to its end: nothing to discard */
	else
		fin_close(c->cfd);
	/* After every plugin call above, so nothing can feed it again. */
	ev_clear_pending(ev, &c->kick);

	atomic_fetch_add(&conn_stats.bytes_up, up);
	atomic_fetch_add(&conn_stats.bytes_down, down);
	if (abort)
		atomic_fetch_add(&conn_stats.resets, 1);
	atomic_fetch_sub(&conn_stats.active, 1);

	if (log_enabled(XP_LOG_DEBUG)) {
		char cs[64], ds[64];

		log_msg(XP_LOG_DEBUG, w->loop.name,
			"conn %llu %s -> %s via %s: up %llu down %llu bytes, %.0f ms, %s%s%s%s%s%s",
			(unsigned long long)c->info.id, addr_str(&c->info.client, cs, sizeof(cs)),
			addr_str(&c->info.dst, ds, sizeof(ds)),
			c->info.outbound ? c->info.outbound : "-", (unsigned long long)up,
			(unsigned long long)down, (ev_now(ev) - c->start) * 1000.0, why,
			abort ? " (reset)" : "", c->info.domain ? ", name " : "",
			c->info.domain ? c->info.domain : "", c->info.sniffer ? " sniffed by " : "",
			c->info.sniffer ? c->info.sniffer : "");
	}
	if (c->ob) {
		atomic_fetch_add(&c->ob->bytes_up, up);
		atomic_fetch_add(&c->ob->bytes_down, down);
		outbound_put(c->ob);
	}

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
	free(c);
}

/* ------------------------------------------------------------------------------------------ */
/* RELAY                                                                                        */

static void relay_timer_rearm(struct xp_conn *c)
{
	ev_tstamp now = ev_now(conn_ev(c)), deadline = 0;

	if (c->opts.idle_timeout_ms)
		deadline = c->last + ms_to_s(c->opts.idle_timeout_ms);
	if (c->half > 0 && c->opts.halfclose_timeout_ms) {
		ev_tstamp h = c->half + ms_to_s(c->opts.halfclose_timeout_ms);

		if (!deadline || h < deadline)
			deadline = h;
	}
	if (!deadline) {
		ev_timer_stop(conn_ev(c), &c->timer);
		return;
	}
	/* A hair past the deadline, so the callback does not find it a microsecond early. */
	timer_arm(c, deadline - now > 0.001 ? deadline - now + 0.0005 : 0.001);
}

static void relay_update_io(struct xp_conn *c)
{
	unsigned want = relay_want(&c->relay);
	struct ev_loop *ev = conn_ev(c);

	io_want(ev, &c->cio,
		(want & RELAY_CLIENT_READ ? EV_READ : 0) |
			(want & RELAY_CLIENT_WRITE ? EV_WRITE : 0));
	if (!c->relay.ops)
		io_want(ev, &c->sio,
			(want & RELAY_SERVER_READ ? EV_READ : 0) |
				(want & RELAY_SERVER_WRITE ? EV_WRITE : 0));
}

static const char *err_reason(int err, bool stream)
{
	switch (err) {
	case -ECONNRESET:
	case -EPIPE:
		return stream ? "reset (stream or client)" : "reset";
	case -ETIMEDOUT:
		return "timed out";
	case -ENOMEM:
		return "out of memory";
	default:
		return "relay error";
	}
}

static void relay_step(struct xp_conn *c, unsigned what)
{
	int ret = relay_run(&c->relay, what);

	if (ret < 0) {
		snprintf(c->why, sizeof(c->why), "%s (%s)", err_reason(ret, c->relay.ops),
			 strerror(-ret));
		conn_close(c, true, c->why);
		return;
	}
	if (ret & RELAY_MOVED)
		c->last = ev_now(conn_ev(c));
	if (ret & RELAY_DONE) {
		conn_close(c, false, "done");
		return;
	}
	if ((ret & RELAY_MORE) && !ev_is_active(&c->again)) {
		/* Not fed like kick: that would run before anything else and could starve the
		 * other connections of this worker; a 0 s timer waits for the next iteration. */
		ev_timer_set(&c->again, 0., 0.);
		ev_timer_start(conn_ev(c), &c->again);
	}
	if ((ret & RELAY_HALF) && c->half == 0) {
		c->half = ev_now(conn_ev(c));
		relay_timer_rearm(c);
	}
	relay_update_io(c);
}

static void conn_client_cb(struct ev_loop *ev, ev_io *w, int revents)
{
	struct xp_conn *c = container_of(w, struct xp_conn, cio);

	if (c->state == CONN_SNIFF) {
		conn_sniff_read(c);
		return;
	}
	if (c->state != CONN_RELAY)
		return;
	relay_step(c, (revents & EV_READ ? RELAY_CLIENT_READ : 0) |
			      (revents & EV_WRITE ? RELAY_CLIENT_WRITE : 0));
}

static void conn_server_cb(struct ev_loop *ev, ev_io *w, int revents)
{
	struct xp_conn *c = container_of(w, struct xp_conn, sio);

	if (c->state != CONN_RELAY)
		return;
	relay_step(c, (revents & EV_READ ? RELAY_SERVER_READ : 0) |
			      (revents & EV_WRITE ? RELAY_SERVER_WRITE : 0));
}

static void conn_again_cb(struct ev_loop *ev, ev_timer *t, int revents)
{
	struct xp_conn *c = container_of(t, struct xp_conn, again);

	if (c->state == CONN_RELAY)
		relay_step(c, RELAY_SERVER_READ);
}

static void conn_relay_start(struct xp_conn *c)
{
	c->state = CONN_RELAY;
	c->relay_on = true;
	c->last = ev_now(conn_ev(c));
	relay_timer_rearm(c);
	if (c->relay.ops) {
		/* The stream may hold bytes already and owes no wake for them. */
		relay_step(c, RELAY_ALL);
	} else {
		ev_io_init(&c->sio, conn_server_cb, c->relay.sfd, 0);
		/* Clients usually speak first and their bytes are waiting; the server's are not. */
		relay_step(c, RELAY_CLIENT_READ);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* CONNECT results                                                                              */

static void conn_result(struct xp_conn *c)
{
	uint32_t size = c->opts.buffer_bytes ? c->opts.buffer_bytes : DEFAULT_BUFFER;
	int err;

	ev_timer_stop(conn_ev(c), &c->timer);
	c->cctx = NULL;
	switch (c->res.type) {
	case RES_FD:
		relay_init_fd(&c->relay, c->cfd, c->res.fd, size);
		conn_relay_start(c);
		return;
	case RES_STREAM:
		err = relay_init_stream(&c->relay, c->cfd, c->res.ops, c->res.stream, size);
		if (err) {
			relay_release(&c->relay);
			conn_close(c, true, "out of memory for stream buffers");
			return;
		}
		conn_relay_start(c);
		return;
	case RES_FAIL:
		atomic_fetch_add(&conn_stats.connect_failed, 1);
		atomic_fetch_add(&c->ob->fails, 1);
		/* plugin.h: a failed outbound looks like a refused or unreachable server (RST),
		 * unless it asked for a FIN with -ECONNABORTED. */
		conn_close(c, c->res.err != -ECONNABORTED, c->why);
		return;
	case RES_NONE:
		return;
	}
}

static void conn_kick_cb(struct ev_loop *ev, ev_idle *w, int revents)
{
	struct xp_conn *c = container_of(w, struct xp_conn, kick);
	unsigned what = c->kick_what;

	c->kick_what = 0;
	if ((what & KICK_RESULT) && c->state == CONN_CONNECT) {
		/* Starting the relay pumps everything once: pending wakes are covered. */
		conn_result(c);
		return;
	}
	if (c->state == CONN_RELAY && (what & (RELAY_SERVER_READ | RELAY_SERVER_WRITE)))
		relay_step(c, what & (RELAY_SERVER_READ | RELAY_SERVER_WRITE));
}

/* Exactly one result per tcp_connect(); anything else is a plugin bug we survive. */
static bool result_wanted(struct xp_conn *c, const char *what)
{
	if (c->state == CONN_CONNECT && c->res.type == RES_NONE)
		return true;
	log_msg(XP_LOG_DEBUG, c->w->loop.name, "conn %llu: %s from %s ignored (%s)",
		(unsigned long long)c->info.id, what, c->info.outbound ? c->info.outbound : "?",
		c->res.type != RES_NONE ? "a result was already given" : "not connecting");
	return false;
}

void conn_ready_fd(xp_conn_t *c, int fd)
{
	if (c && c->hl) {
		c->hl->ops.ready_fd(c->hl->arg, fd);
		return;
	}
	if (!c || !result_wanted(c, "ready_fd")) {
		/* Handed over: ours to close, or it leaks. */
		if (fd >= 0)
			reset_close(fd);
		return;
	}
	if (fd < 0) {
		conn_fail(c, -EBADF, "ready_fd with an invalid fd");
		return;
	}
	c->res.type = RES_FD;
	c->res.fd = fd;
	c->ob_busy = false;
	kick(c, KICK_RESULT);
}

void conn_ready_stream(xp_conn_t *c, const struct xp_stream_ops *ops, void *stream)
{
	bool ok = ops && ops->size >= offsetof(struct xp_stream_ops, close) + sizeof(ops->close) &&
		  ops->send && ops->recv && ops->shutdown && ops->close;

	if (c && c->hl) {
		c->hl->ops.ready_stream(c->hl->arg, ops, stream);
		return;
	}
	if (!c || !result_wanted(c, "ready_stream")) {
		if (ops && ops->close)
			ops->close(stream, 1);
		return;
	}
	if (!ok) {
		if (ops && ops->close)
			ops->close(stream, 1);
		conn_fail(c, -EINVAL, "ready_stream with incomplete stream ops");
		return;
	}
	c->res.type = RES_STREAM;
	c->res.ops = ops;
	c->res.stream = stream;
	c->ob_busy = false;
	kick(c, KICK_RESULT);
}

void conn_fail(xp_conn_t *c, int err, const char *reason)
{
	if (c && c->hl) {
		c->hl->ops.fail(c->hl->arg, err, reason);
		return;
	}
	if (!c || !result_wanted(c, "fail"))
		return;
	c->res.type = RES_FAIL;
	c->res.err = err < 0 ? err : -EIO;
	/* The plugin's string may not outlive its call: the close log line uses this copy. */
	snprintf(c->why, sizeof(c->why), "connect failed: %s (%s)", reason ? reason : "-",
		 strerror(-c->res.err));
	c->ob_busy = false;
	kick(c, KICK_RESULT);
}

void conn_stream_wake(xp_conn_t *c, unsigned what)
{
	unsigned bits;

	if (c && c->hl) {
		c->hl->ops.wake(c->hl->arg, what);
		return;
	}
	if (!c || c->state == CONN_CLOSE)
		return;
	bits = (what & XP_WAKE_RECV ? RELAY_SERVER_READ : 0) |
	       (what & XP_WAKE_SEND ? RELAY_SERVER_WRITE : 0);
	/* Before the relay starts (result still queued), the first pump covers it. */
	if (bits && c->state == CONN_RELAY && c->relay.ops)
		kick(c, bits);
}

const struct xp_conn_info *conn_info(xp_conn_t *c)
{
	return &c->info;
}

xp_loop_t *conn_loop(xp_conn_t *c)
{
	if (c->hl)
		return c->hl->loop;
	return &c->w->loop;
}

/* ------------------------------------------------------------------------------------------ */
/* SNIFF, ROUTE, CONNECT                                                                        */

static void conn_connect(struct xp_conn *c)
{
	struct outbound *ob = c->ob;
	struct xp_target target = {
		.size = sizeof(target),
		.l4proto = IPPROTO_TCP,
		.addr = c->info.dst,
		.domain = c->info.domain,
	};
	int err;

	c->state = CONN_CONNECT;
	atomic_fetch_add(&ob->conns, 1);
	if (!ob->ops || !ob->ops->tcp_connect) {
		atomic_fetch_add(&conn_stats.connect_failed, 1);
		atomic_fetch_add(&ob->fails, 1);
		conn_close(c, true, "outbound cannot do TCP");
		return;
	}
	timer_arm(c, ms_to_s(c->opts.connect_timeout_ms));
	/* Set before the call: a result given inside tcp_connect clears it. */
	c->ob_busy = true;
	err = ob->ops->tcp_connect(ob->inst, c, &target, &c->cctx);
	if (err >= 0)
		return; /* the result comes through kick, even when it was given already */
	c->ob_busy = false;

	/* Failed at once: no callback may follow, and none may have come (defensive). */
	c->cctx = NULL;
	if (c->res.type == RES_FD)
		reset_close(c->res.fd);
	else if (c->res.type == RES_STREAM)
		c->res.ops->close(c->res.stream, 1);
	c->res.type = RES_NONE;
	atomic_fetch_add(&conn_stats.connect_failed, 1);
	atomic_fetch_add(&ob->fails, 1);
	snprintf(c->why, sizeof(c->why), "connect failed: %s", strerror(-err));
	conn_close(c, err != -ECONNABORTED, c->why);
}

/* XP_EVENT_FLOW_NAMED (flowev.h): the decision for the connection and the name behind it. */
static void conn_named(struct xp_conn *c, const struct conn_route *rt)
{
	struct xp_conn_info info = c->info;

	info.route = rt->route;
	info.source = rt->source;
	info.rule_id = rt->rule_id;
	info.outbound = rt->ob ? rt->ob->name : NULL;
	info.domain = rt->domain[0] ? rt->domain : NULL;
	info.sniffer = rt->domain[0] ? rt->sniffer : NULL;
	flowev_named(c->w->loop.name, &info);
}

static void conn_route_step(struct xp_conn *c)
{
	struct worker *w = c->w;
	struct conn_route rt = {0};
	int err = -ENOENT;

	c->state = CONN_ROUTE;
	if (w->route)
		err = w->route(w->route_ctx, &c->info.client, &c->info.dst, &rt);
	if (err >= 0 && !rt.ob && !rt.adopt && rt.route == XP_ROUTE_INSPECT) {
		conn_sniff_start(c, &rt);
		return;
	}
	if (err >= 0 && rt.ob && rt.domain[0])
		conn_named(c, &rt); /* a verdict a DNS answer wrote: the name is DNS's */
	conn_routed(c, err, &rt);
}

/* The router's answer (from the flow entry, or from the sniff hook with the name). */
static void conn_routed(struct xp_conn *c, int err, struct conn_route *rtp)
{
	struct worker *w = c->w;
	struct conn_route rt = *rtp;

	c->state = CONN_ROUTE;
	if (err >= 0 && !rt.ob && rt.adopt) {
		/* Not relayed: the client socket goes to whoever serves the verdict (DNS). */
		c->info.route = rt.route;
		c->info.source = rt.source;
		c->info.from_host = rt.from_host;
		c->info.rule_id = rt.rule_id;
		if (rt.adopt(&w->loop, c->cfd, &c->info) == 0) {
			c->cfd = -1;
			conn_close(c, false, "handed over");
			return;
		}
		err = -ENOMEM;
		rt.why = "could not hand the connection over";
	}
	if (err < 0 || !rt.ob) {
		char cs[64], ds[64];

		if (rt.ob)
			outbound_put(rt.ob);
		atomic_fetch_add(&conn_stats.no_route, 1);
		/* A deliberate refusal is routine; a router error is worth seeing. */
		if (err < 0 || log_enabled(XP_LOG_DEBUG))
			log_msg(err < 0 ? XP_LOG_INFO : XP_LOG_DEBUG, w->loop.name,
				"conn %llu %s -> %s: no route: %s", (unsigned long long)c->info.id,
				addr_str(&c->info.client, cs, sizeof(cs)),
				addr_str(&c->info.dst, ds, sizeof(ds)),
				err < 0 ? strerror(-err) : (rt.why ? rt.why : "refused"));
		conn_close(c, true, "no route");
		return;
	}
	c->ob = rt.ob;
	c->via = rt.via;
	c->info.outbound = rt.ob->name;
	c->info.route = rt.route;
	c->info.source = rt.source;
	c->info.from_host = rt.from_host;
	c->info.rule_id = rt.rule_id;
	if (rt.domain[0] && !c->info.domain) {
		snprintf(c->domain, sizeof(c->domain), "%s", rt.domain);
		c->info.domain = c->domain;
		c->info.sniffer = rt.sniffer;
	}
	conn_connect(c);
}

/*
 * SNIFF: an INSPECT connection's first bytes are peeked at (MSG_PEEK), never consumed, so the
 * relay later sends every one of them to the outbound. To wait for more bytes than are queued
 * without a busy loop, SO_RCVLOWAT is raised to one more than what was seen: epoll reports the
 * socket readable only when more arrived (or at EOF / error, whatever the low-water mark). The
 * timer (sniff timeout) routes with what is known, so a server-first protocol is never stalled.
 */
static void conn_sniff_done(struct xp_conn *c)
{
	struct conn_route rt = {0};
	void *st = c->sniff_state;
	int err;

	ev_timer_stop(conn_ev(c), &c->timer);
	io_want(conn_ev(c), &c->cio, 0);
	if (c->sniff_lowat) {
		int one = 1;

		setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
		c->sniff_lowat = false;
	}
	free(c->sniff_buf);
	c->sniff_buf = NULL;
	c->sniff_state = NULL;
	err = sniff_hook.decide(st, &c->info, &rt);
	conn_named(c, &rt);
	conn_routed(c, err, &rt);
}

static void conn_sniff_start(struct xp_conn *c, struct conn_route *rt)
{
	uint64_t timeout_ms = c->opts.sniff_timeout_ms;
	size_t max = 0;
	int err;

	c->state = CONN_SNIFF;
	c->info.route = XP_ROUTE_INSPECT;
	c->info.source = rt->source;
	c->info.rule_id = rt->rule_id;
	c->info.from_host = rt->from_host;
	if (!sniff_hook_set) {
		rt->why = "INSPECT verdict but no [sniff] configured";
		conn_routed(c, -EOPNOTSUPP, rt);
		return;
	}
	err = sniff_hook.begin(&c->info, &c->sniff_state, &max, &timeout_ms);
	if (err < 0) {
		c->sniff_state = NULL;
		rt->why = "the sniff core refused the connection";
		conn_routed(c, err, rt);
		return;
	}
	if (max > 65536)
		max = 65536;
	c->sniff_buf = max ? malloc(max) : NULL;
	if (!c->sniff_buf) {
		conn_sniff_done(c); /* no port claimed (or no memory): decide without a name */
		return;
	}
	c->sniff_max = max;
	c->sniff_seen = 0;
	io_want(conn_ev(c), &c->cio, EV_READ);
	timer_arm(c, ms_to_s(timeout_ms ? timeout_ms : 1));
}

static void conn_sniff_read(struct xp_conn *c)
{
	ssize_t n = recv(c->cfd, c->sniff_buf, c->sniff_max, MSG_PEEK | MSG_DONTWAIT);

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		snprintf(c->why, sizeof(c->why), "client error while sniffing: %s",
			 strerror(errno));
		conn_close(c, true, c->why);
		return;
	}
	/* EOF (nothing, or nothing new while readable: the FIN is behind the bytes): no more
	 * bytes will come, decide with what there is */
	if (n == 0 || (size_t)n <= c->sniff_seen) {
		conn_sniff_done(c);
		return;
	}
	c->sniff_seen = (size_t)n;
	if (sniff_hook.offer(c->sniff_state, c->sniff_buf, (size_t)n) ||
	    (size_t)n >= c->sniff_max) {
		conn_sniff_done(c);
		return;
	}
	int lowat = (int)n + 1;

	if (setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) == 0)
		c->sniff_lowat = true;
	else
		conn_sniff_done(c); /* cannot wait without spinning: decide now */
}

static void conn_timer_cb(struct ev_loop *ev, ev_timer *t, int revents)
{
	struct xp_conn *c = container_of(t, struct xp_conn, timer);
	ev_tstamp now = ev_now(ev);

	switch (c->state) {
	case CONN_SNIFF:
		conn_sniff_done(c);
		return;
	case CONN_CONNECT:
		atomic_fetch_add(&conn_stats.connect_timeout, 1);
		atomic_fetch_add(&c->ob->fails, 1);
		/* conn_close() calls tcp_abort. */
		conn_close(c, true, "connect timeout");
		return;
	case CONN_RELAY:
		if (c->half > 0 && c->opts.halfclose_timeout_ms &&
		    now >= c->half + ms_to_s(c->opts.halfclose_timeout_ms)) {
			conn_close(c, false, "half-close timeout");
			return;
		}
		if (c->opts.idle_timeout_ms && now >= c->last + ms_to_s(c->opts.idle_timeout_ms)) {
			atomic_fetch_add(&conn_stats.idle_timeout, 1);
			conn_close(c, false, "idle timeout");
			return;
		}
		/* Bytes moved since the timer was armed: only now pay for re-arming it. */
		relay_timer_rearm(c);
		return;
	case CONN_ROUTE:
	case CONN_CLOSE:
		return;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Accept                                                                                       */

static void conn_new(struct worker *w, int fd, const union xp_sockaddr *peer)
{
	uint32_t max = w->opts.max_connections;
	struct xp_conn *c;
	socklen_t len;

	/* Increment first, then compare: exact across workers without a lock. */
	if (atomic_fetch_add(&conn_stats.active, 1) >= max && max) {
		atomic_fetch_sub(&conn_stats.active, 1);
		atomic_fetch_add(&conn_stats.refused_limit, 1);
		reset_close(fd);
		if (log_enabled(XP_LOG_DEBUG))
			log_msg(XP_LOG_DEBUG, w->loop.name,
				"connection refused: max_connections (%u) reached", max);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		atomic_fetch_sub(&conn_stats.active, 1);
		reset_close(fd);
		log_msg(XP_LOG_WARN, w->loop.name, "out of memory: connection reset");
		return;
	}
	c->w = w;
	c->cfd = fd;
	c->opts = w->opts;
	c->info.size = sizeof(c->info);
	c->info.l4proto = IPPROTO_TCP;
	c->info.id = atomic_fetch_add(&conn_next_id, 1) + 1;
	c->info.client = *peer;
	addr_unmap_v4(&c->info.client);
	/* On a transparent socket the local address is the original destination. */
	len = sizeof(c->info.dst);
	if (getsockname(fd, &c->info.dst.sa, &len) < 0)
		memset(&c->info.dst, 0, sizeof(c->info.dst));
	addr_unmap_v4(&c->info.dst);
	c->start = ev_now(w->loop.ev);
	c->res.fd = -1;
	ev_io_init(&c->cio, conn_client_cb, fd, 0);
	ev_io_init(&c->sio, conn_server_cb, -1, 0);
	ev_timer_init(&c->timer, conn_timer_cb, 0., 0.);
	ev_idle_init(&c->kick, conn_kick_cb);
	ev_timer_init(&c->again, conn_again_cb, 0., 0.);

	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;
	conn_route_step(c);
}

static void worker_accept_cb(struct ev_loop *ev, ev_io *io, int revents)
{
	static __thread ev_tstamp emfile_logged;
	struct worker *w = container_of(io, struct worker, accept_io);

	for (int i = 0; i < ACCEPT_BATCH && !w->stopping; i++) {
		union xp_sockaddr peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(w->tcp_fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			atomic_fetch_add(&conn_stats.accepted, 1);
			conn_new(w, fd, &peer);
			continue;
		}
		switch (errno) {
		case EAGAIN:
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			/* The pending connection stays queued and the listener stays readable:
			 * pause instead of spinning on it. */
			if (ev_now(ev) - emfile_logged >= EMFILE_LOG_EVERY_MS / 1000.0) {
				emfile_logged = ev_now(ev);
				log_msg(XP_LOG_WARN, w->loop.name,
					"accept: %s; pausing new connections (%u open here)",
					strerror(errno), w->n_conns);
			}
			ev_io_stop(ev, &w->accept_io);
			ev_timer_set(&w->accept_timer, ACCEPT_PAUSE_S, 0.);
			ev_timer_start(ev, &w->accept_timer);
			return;
		default:
			log_msg(XP_LOG_DEBUG, w->loop.name, "accept: %s", strerror(errno));
			return;
		}
	}
}

static void worker_accept_timer_cb(struct ev_loop *ev, ev_timer *t, int revents)
{
	struct worker *w = container_of(t, struct worker, accept_timer);

	if (!w->stopping)
		ev_io_start(ev, &w->accept_io);
}

/* ------------------------------------------------------------------------------------------ */
/* Listener and workers                                                                         */

int conn_listen_tcp(int fd)
{
	struct sockaddr_in6 any = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
	int one = 1, zero = 0;

	/* Transparent: accept connections to any address (bpf_sk_assign hands them over), and
	 * reply from the original destination. */
	if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0)
		return -errno;
	if (setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) < 0)
		return -errno;
	if (setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&any, sizeof(any)) < 0)
		return -errno;
	if (listen(fd, SOMAXCONN > LISTEN_BACKLOG ? SOMAXCONN : LISTEN_BACKLOG) < 0)
		return -errno;
	return 0;
}

/* On failure the caller still owns tcp_fd. */
int worker_init(struct worker *w, unsigned index, int tcp_fd, const struct conn_opts *opts,
		conn_route_fn route, void *route_ctx)
{
	char name[16];
	int err;

	memset(w, 0, sizeof(*w));
	snprintf(name, sizeof(name), "worker%u", index);
	err = loop_init(&w->loop, index + 1, false, name);
	if (err)
		return err;
	w->loop.owner = w;
	w->index = index;
	w->tcp_fd = tcp_fd;
	w->opts = *opts;
	w->route = route;
	w->route_ctx = route_ctx;
	ev_io_init(&w->accept_io, worker_accept_cb, tcp_fd, EV_READ);
	ev_timer_init(&w->accept_timer, worker_accept_timer_cb, 0., 0.);
	/* Before the thread exists, so no locking needed. */
	ev_io_start(w->loop.ev, &w->accept_io);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Cuts: closing a group's connections through one outbound (conn.h)                           */

/* The running workers, for conn_cut_post(): added by worker_start, removed by worker_stop
 * before its stop is posted (so every cut posted before runs before the loop ends). */
static struct ptrset running = PTRSET_INIT;

static void running_add(struct worker *w)
{
	if (!ptrset_add(&running, w))
		log_msg(XP_LOG_WARN, w->loop.name, "out of memory: group interrupts miss this worker");
}

struct cut_post {
	struct worker *w;
	struct conn_cut *cut;
};

static void cut_on_worker(void *arg)
{
	struct cut_post *p = arg;
	struct xp_conn *c, *next;
	uint64_t n = 0;

	for (c = p->w->conns; c; c = next) {
		next = c->next; /* conn_close frees c only */
		if (c->ob && c->state != CONN_CLOSE && conn_cut_match(p->cut, c->ob->id, &c->via)) {
			conn_close(c, true, p->cut->why);
			n++;
		}
	}
	atomic_fetch_add(&p->cut->tcp, n);
	conn_cut_put(p->cut);
	free(p);
}

void conn_cut_post(struct conn_cut *cut)
{
	pthread_mutex_lock(&running.lock);
	for (size_t i = 0; i < running.n; i++) {
		struct worker *w = running.v[i];
		struct cut_post *p = malloc(sizeof(*p));

		if (!p) {
			log_msg(XP_LOG_WARN, w->loop.name,
				"out of memory: a group interrupt misses this worker");
			continue;
		}
		p->w = w;
		p->cut = cut;
		conn_cut_hold(cut);
		if (loop_post(&w->loop, cut_on_worker, p)) {
			conn_cut_put(cut);
			free(p);
		}
	}
	pthread_mutex_unlock(&running.lock);
}

int worker_start(struct worker *w)
{
	int err = loop_start_thread(&w->loop);

	if (!err)
		running_add(w);
	return err;
}

struct worker_opts_post {
	struct worker *w;
	struct conn_opts opts;
};

static void worker_opts_apply(void *arg)
{
	struct worker_opts_post *p = arg;

	p->w->opts = p->opts;
	free(p);
}

void worker_set_opts(struct worker *w, const struct conn_opts *opts)
{
	struct worker_opts_post *p = malloc(sizeof(*p));
	int err;

	if (!p) {
		log_msg(XP_LOG_WARN, w->loop.name, "out of memory: new options not applied");
		return;
	}
	p->w = w;
	p->opts = *opts;
	err = loop_post(&w->loop, worker_opts_apply, p);
	if (err) {
		/* -ESHUTDOWN: stopping, no new connection will see options any more. */
		free(p);
	}
}

static void worker_close_all(struct worker *w)
{
	while (w->conns)
		conn_close(w->conns, true, "shutdown");
}

static void worker_stop_on_loop(void *arg)
{
	struct worker *w = arg;

	w->stopping = true;
	ev_io_stop(w->loop.ev, &w->accept_io);
	ev_timer_stop(w->loop.ev, &w->accept_timer);
	worker_close_all(w);
	/* The pipe cache is this thread's: close it before the thread ends. */
	relay_cache_flush();
	loop_stop(&w->loop);
}

void worker_stop(struct worker *w)
{
	int err;

	ptrset_del(&running, w);
	err = loop_post(&w->loop, worker_stop_on_loop, w);

	if (err && err != -ESHUTDOWN) {
		/* Out of memory for the post: at least end the loop; worker_fini closes the
		 * connections left. */
		log_msg(XP_LOG_WARN, w->loop.name, "stop: %s", strerror(-err));
		loop_stop(&w->loop);
	}
}

void worker_join(struct worker *w)
{
	loop_join(&w->loop);
}

void worker_fini(struct worker *w)
{
	if (!w || !w->loop.ev)
		return;
	ptrset_del(&running, w); /* a worker that was started but never stopped */
	/* The loop is not running any more: safe to touch its watchers from here. */
	w->stopping = true;
	worker_close_all(w);
	ev_io_stop(w->loop.ev, &w->accept_io);
	ev_timer_stop(w->loop.ev, &w->accept_timer);
	loop_fini(&w->loop);
	relay_cache_flush();
	if (w->tcp_fd >= 0)
		close(w->tcp_fd);
	w->tcp_fd = -1;
}
