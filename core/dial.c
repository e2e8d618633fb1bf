/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dial - a plugin's own TCP connection through DIRECT or an outbound. See dial.h.
 *
 * A result is recorded where it arrives (inside tcp_connect(), an outbound's io callback, the
 * connect socket's writability) and delivered from a 0 s timer: the plugin that asked never
 * sees its done() run inside dial() or inside the outbound's call, so neither is re-entered
 * with half-updated state.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "conn.h"
#include "dial.h"
#include "host.h"
#include "log.h"
#include "outbound.h"
#include "plug.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static atomic_uint_fast64_t default_timeout_ms = 10000;

void dial_set_default_timeout(uint64_t ms)
{
	atomic_store(&default_timeout_ms, ms ? ms : 10000);
}

enum dial_state {
	DIAL_PENDING,	/* waiting for a result */
	DIAL_RESULT,	/* a result is recorded, delivery scheduled */
	DIAL_DELIVERED, /* done() ran */
};

struct xp_dial {
	struct xp_loop *loop;
	enum dial_state state;
	void (*done)(void *arg, xp_dial_t *d, int err, int fd, const struct xp_stream_ops *ops,
		     void *stream);
	void (*wake)(void *arg, unsigned what);
	void *arg;
	struct xp_target target;
	char *domain; /* target.domain's copy */
	/* DIRECT */
	int fd;
	ev_io io;
	/* through an outbound */
	struct outbound *ob;
	xp_conn_t *hc;
	void *cctx;
	bool ob_busy; /* tcp_connect() returned 0, no result yet: tcp_abort owed on cancel */
	/* the result */
	int err;
	int rfd;
	const struct xp_stream_ops *ops;
	void *stream;
	unsigned wakes; /* stream wakes before done() ran: delivered right after it */
	bool in_done, close_pending;
	ev_timer timer; /* the timeout, then reused as the 0 s delivery timer */
};

static struct ev_loop *ev_of(struct xp_dial *d)
{
	return d->loop->ev;
}

static void dial_free(struct xp_dial *d);

static void deliver_cb(struct ev_loop *ev, ev_timer *t, int revents)
{
	struct xp_dial *d = container_of(t, struct xp_dial, timer);
	unsigned wakes = d->wakes;

	if (d->state != DIAL_RESULT)
		return;
	d->state = DIAL_DELIVERED;
	d->wakes = 0;
	/* done() may call dial_close(): it then only marks d, freed once done() is back. */
	d->in_done = true;
	if (d->err)
		d->done(d->arg, d, d->err, -1, NULL, NULL);
	else
		d->done(d->arg, d, 0, d->ops ? -1 : d->rfd, d->ops, d->stream);
	d->in_done = false;
	if (d->close_pending) {
		dial_free(d);
		return;
	}
	/* Wakes that came before the plugin had the stream: it would have missed them. */
	if (wakes && d->ops && d->wake)
		d->wake(d->arg, wakes);
}

/* Record a result once and schedule its delivery. */
static void result(struct xp_dial *d, int err, int fd, const struct xp_stream_ops *ops,
		   void *stream)
{
	if (d->state != DIAL_PENDING) {
		/* A second result from a buggy outbound: ours to release. */
		if (fd >= 0)
			close(fd);
		if (ops && ops->close)
			ops->close(stream, 1);
		return;
	}
	d->state = DIAL_RESULT;
	d->ob_busy = false;
	d->err = err;
	d->rfd = fd;
	d->ops = ops;
	d->stream = stream;
	ev_io_stop(ev_of(d), &d->io);
	ev_timer_stop(ev_of(d), &d->timer);
	ev_set_cb(&d->timer, deliver_cb);
	ev_timer_set(&d->timer, 0., 0.);
	ev_timer_start(ev_of(d), &d->timer);
}

static void timeout_cb(struct ev_loop *ev, ev_timer *t, int revents)
{
	struct xp_dial *d = container_of(t, struct xp_dial, timer);

	if (d->state != DIAL_PENDING)
		return;
	if (d->ob_busy && d->ob->ops->tcp_abort)
		d->ob->ops->tcp_abort(d->ob->inst, d->cctx);
	d->ob_busy = false;
	if (d->fd >= 0) {
		close(d->fd);
		d->fd = -1;
	}
	result(d, -ETIMEDOUT, -1, NULL, NULL);
}

/* ------------------------------------------------------------------------------ DIRECT */

static void direct_io_cb(struct ev_loop *ev, ev_io *w, int revents)
{
	struct xp_dial *d = container_of(w, struct xp_dial, io);
	int soerr = 0, fd = d->fd;
	socklen_t len = sizeof(soerr);

	ev_io_stop(ev, w);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	d->fd = -1;
	if (soerr) {
		close(fd);
		result(d, -soerr, -1, NULL, NULL);
		return;
	}
	result(d, 0, fd, NULL, NULL);
}

static int direct_start(struct xp_dial *d, xp_handle_t *who)
{
	const union xp_sockaddr *a = &d->target.addr;
	socklen_t len = a->sa.sa_family == AF_INET ? sizeof(a->in) : sizeof(a->in6);
	int fd;

	fd = host_table()->upstream_socket(who, a->sa.sa_family, SOCK_STREAM, 0);
	if (fd < 0)
		return fd;
	if (connect(fd, &a->sa, len) < 0 && errno != EINPROGRESS) {
		int err = -errno;

		close(fd);
		return err;
	}
	d->fd = fd;
	ev_io_init(&d->io, direct_io_cb, fd, EV_WRITE);
	ev_io_start(ev_of(d), &d->io);
	return 0;
}

/* ------------------------------------------------------------------------------ outbound */

static void hl_ready_fd(void *arg, int fd)
{
	result(arg, 0, fd, NULL, NULL);
}

static void hl_ready_stream(void *arg, const struct xp_stream_ops *ops, void *stream)
{
	bool ok = ops && ops->size >= offsetof(struct xp_stream_ops, close) + sizeof(ops->close) &&
		  ops->send && ops->recv && ops->shutdown && ops->close;

	if (!ok) {
		if (ops && ops->close)
			ops->close(stream, 1);
		result(arg, -EINVAL, -1, NULL, NULL);
		return;
	}
	result(arg, 0, -1, ops, stream);
}

static void hl_fail(void *arg, int err, const char *reason)
{
	struct xp_dial *d = arg;

	log_debug("dial via %s failed: %s", d->ob ? d->ob->name : "?", reason ? reason : "-");
	result(d, err < 0 ? err : -EIO, -1, NULL, NULL);
}

static void hl_wake(void *arg, unsigned what)
{
	struct xp_dial *d = arg;

	if (d->state == DIAL_DELIVERED) {
		if (d->wake)
			d->wake(d->arg, what);
	} else {
		d->wakes |= what;
	}
}

static const struct conn_headless_ops hl_ops = {
	.ready_fd = hl_ready_fd,
	.ready_stream = hl_ready_stream,
	.fail = hl_fail,
	.wake = hl_wake,
};

static int outbound_start(struct xp_dial *d, const char *name)
{
	struct xp_conn_info info = { .size = sizeof(info) };
	struct ob_via via;
	int rc;

	d->ob = outbound_resolve(name, &via); /* a group picks its member now */
	if (!d->ob)
		return -ENOENT;
	if (!d->ob->ops || !d->ob->ops->tcp_connect)
		return -EPROTONOSUPPORT;
	info.l4proto = IPPROTO_TCP;
	info.dst = d->target.addr;
	info.domain = d->domain;
	info.outbound = d->ob->name;
	info.route = XP_ROUTE_PROXY;
	info.from_host = 1;
	d->hc = conn_headless_new(d->loop, &info, &hl_ops, d);
	if (!d->hc)
		return -ENOMEM;
	d->ob_busy = true;
	rc = d->ob->ops->tcp_connect(d->ob->inst, d->hc, &d->target, &d->cctx);
	if (rc < 0) {
		d->ob_busy = false;
		/* plugin.h: no callback may follow a failure at once; one that came anyway was
		 * recorded: release it. */
		if (d->state == DIAL_RESULT) {
			if (d->rfd >= 0)
				close(d->rfd);
			if (d->ops)
				d->ops->close(d->stream, 1);
			ev_timer_stop(ev_of(d), &d->timer);
		}
		return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------------------ API */

static void dial_free(struct xp_dial *d)
{
	ev_io_stop(ev_of(d), &d->io);
	ev_timer_stop(ev_of(d), &d->timer);
	if (d->fd >= 0)
		close(d->fd);
	conn_headless_free(d->hc);
	outbound_put(d->ob);
	free(d->domain);
	free(d);
}

xp_dial_t *dial_new(xp_handle_t *who, struct xp_loop *loop, const struct xp_dial_req *req)
{
	struct xp_dial_req r = { 0 };
	struct xp_dial *d;
	uint64_t timeout;
	int rc;

	if (!req || !loop || plug_abi_copy(&r, sizeof(r), req, req->size) || !r.done) {
		errno = EINVAL;
		return NULL;
	}
	if (r.target.addr.sa.sa_family != AF_INET && r.target.addr.sa.sa_family != AF_INET6) {
		errno = EAFNOSUPPORT;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		errno = ENOMEM;
		return NULL;
	}
	d->loop = loop;
	d->done = r.done;
	d->wake = r.wake;
	d->arg = r.arg;
	d->fd = -1;
	d->rfd = -1;
	d->target.size = sizeof(d->target);
	d->target.l4proto = IPPROTO_TCP;
	d->target.addr = r.target.addr;
	if (r.target.domain) {
		d->domain = strdup(r.target.domain);
		if (!d->domain) {
			rc = -ENOMEM;
			goto err;
		}
		d->target.domain = d->domain;
	}
	ev_io_init(&d->io, direct_io_cb, -1, 0);
	timeout = r.timeout_ms ? r.timeout_ms : atomic_load(&default_timeout_ms);
	ev_timer_init(&d->timer, timeout_cb, (ev_tstamp)timeout / 1000.0, 0.);
	ev_timer_start(loop->ev, &d->timer);
	if (!r.outbound || !strcmp(r.outbound, "DIRECT"))
		rc = direct_start(d, who);
	else
		rc = outbound_start(d, r.outbound);
	if (rc)
		goto err;
	return d;
err:
	d->state = DIAL_DELIVERED; /* nothing may be delivered any more */
	dial_free(d);
	errno = -rc;
	return NULL;
}

void dial_close(xp_dial_t *d)
{
	if (!d)
		return;
	if (d->state == DIAL_PENDING && d->ob_busy && d->ob->ops->tcp_abort)
		d->ob->ops->tcp_abort(d->ob->inst, d->cctx);
	if (d->state == DIAL_RESULT) {
		/* Recorded, never delivered: ours to release. */
		if (d->rfd >= 0)
			close(d->rfd);
		if (d->ops)
			d->ops->close(d->stream, 1);
	} else if (d->state == DIAL_DELIVERED && d->ops) {
		d->ops->close(d->stream, 0);
		d->ops = NULL;
	}
	if (d->in_done) {
		d->close_pending = true;
		return;
	}
	dial_free(d);
}
