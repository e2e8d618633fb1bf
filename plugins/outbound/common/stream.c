/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * stream - the plumbing shared by transforming outbounds; see stream.h for who provides what.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream.h"

void xpo_init(struct xpo_stream *s, const struct xpo_impl *impl, const struct xp_host *host)
{
	memset(s, 0, sizeof(*s));
	s->impl = impl;
	s->host = host;
	s->fd = -1;
}

void xpo_release(struct xpo_stream *s, int abort)
{
	const struct xp_host *host = s->host;

	if (s->io)
		host->io_free(s->io);
	if (s->timer)
		host->timer_free(s->timer);
	s->io = NULL;
	s->timer = NULL;
	if (s->fd >= 0) {
		if (abort) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(s->fd);
		s->fd = -1;
	}
	if (s->q) {
		if (s->q_secret)
			explicit_bzero(s->q, s->qcap);
		free(s->q);
		s->q = NULL;
	}
}

void xpo_io_update(struct xpo_stream *s)
{
	unsigned ev = s->hs_need | s->recv_need | s->send_need | s->keep_ev;

	if (s->state == XPO_CONNECTING)
		ev = XP_IO_WRITE;
	if (ev != s->io_events) {
		s->io_events = ev;
		s->host->io_set(s->io, ev);
	}
}

int xpo_fail(struct xpo_stream *s, int err)
{
	if (!s->err)
		s->err = err;
	return s->err;
}

int xpo_flush(struct xpo_stream *s)
{
	s->send_need = 0;
	while (s->qoff < s->qlen) {
		ssize_t n = s->impl->write(s, s->q + s->qoff, s->qlen - s->qoff, &s->send_need);

		if (n > 0) {
			s->qoff += (size_t)n;
			continue;
		}
		if (n == -EAGAIN)
			return 0;
		s->send_need = 0;
		return n < 0 ? (int)n : -EIO;
	}
	s->qoff = s->qlen = 0;
	return 0;
}

int xpo_flush_fin(struct xpo_stream *s)
{
	int rc = xpo_flush(s);

	if (rc || s->qlen || !s->shut_pending || s->shut_done)
		return rc;
	rc = s->impl->fin(s, &s->send_need);
	if (!rc)
		s->shut_done = true;
	return rc == -EAGAIN ? 0 : rc;
}

void xpo_compact(struct xpo_stream *s)
{
	if (!s->qoff)
		return;
	memmove(s->q, s->q + s->qoff, s->qlen - s->qoff);
	s->qlen -= s->qoff;
	s->qoff = 0;
}

int xpo_send_room(struct xpo_stream *s)
{
	if (s->qoff < s->qlen) {
		int rc = xpo_flush(s);

		if (rc)
			return xpo_fail(s, rc);
		if (s->qoff < s->qlen) {
			s->send_blocked = true;
			xpo_io_update(s);
			return -EAGAIN;
		}
	}
	xpo_compact(s);
	return 0;
}

ssize_t xpo_send_done(struct xpo_stream *s, size_t taken)
{
	int rc = xpo_flush(s);

	if (rc)
		return xpo_fail(s, rc);
	s->send_blocked = false;
	xpo_io_update(s);
	return (ssize_t)taken;
}

unsigned xpo_events(struct xpo_stream *s, unsigned revents)
{
	unsigned wake = 0;

	if (s->recv_need & revents) {
		s->recv_need = 0;
		if (s->recv_blocked) {
			s->recv_blocked = false;
			wake |= XP_WAKE_RECV;
		}
	}
	if (s->send_need & revents) {
		int rc = xpo_flush_fin(s);

		if (rc) {
			xpo_fail(s, rc);
			wake |= XP_WAKE_RECV | XP_WAKE_SEND;
		} else if (!s->send_need && s->send_blocked) {
			s->send_blocked = false;
			wake |= XP_WAKE_SEND;
		}
	}
	return wake;
}

/* ------------------------------------------------------------------------------------------ */
/* connecting                                                                                   */

void xpo_timer_stop(struct xpo_stream *s)
{
	if (s->timer) {
		s->host->timer_free(s->timer);
		s->timer = NULL;
	}
}

static void io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct xpo_stream *s = arg;
	unsigned wake;

	if (s->state == XPO_CONNECTING) {
		socklen_t len = sizeof(int);
		int soerr = 0;

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			soerr = errno;
		if (soerr)
			s->impl->connected(s, -soerr);
		else if (revents & XP_IO_WRITE)
			s->impl->connected(s, 0);
		return; /* `s` may be gone */
	}
	if (s->impl->io && s->impl->io(s, revents))
		return;
	wake = xpo_events(s, revents);
	xpo_io_update(s);
	if (wake && s->conn)
		s->host->stream_wake(s->conn, wake);
}

static void timer_cb(xp_timer_t *t, void *arg)
{
	struct xpo_stream *s = arg;

	s->impl->timeout(s);
}

int xpo_socket(struct xpo_stream *s, xp_handle_t *self, xp_loop_t *loop, int family, bool nodelay,
	       uint64_t timeout_ms)
{
	const struct xp_host *host = s->host;
	int one = 1;

	s->fd = host->upstream_socket(self, family, SOCK_STREAM, IPPROTO_TCP);
	if (s->fd < 0) {
		int rc = s->fd;

		s->fd = -1;
		return rc;
	}
	if (nodelay)
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->io = host->io_new(loop, s->fd, io_cb, s);
	if (!s->io)
		return -ENOMEM;
	if (timeout_ms) {
		s->timer = host->timer_new(loop, timer_cb, s);
		if (!s->timer)
			return -ENOMEM;
		host->timer_set(s->timer, timeout_ms, 0);
	}
	return 0;
}

int xpo_connect(struct xpo_stream *s, const union xp_sockaddr *server, socklen_t len)
{
	if (connect(s->fd, &server->sa, len) < 0 && errno != EINPROGRESS)
		return -errno;
	s->state = XPO_CONNECTING;
	xpo_io_update(s);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* the ops the core drives: the common checks, then the owner                                  */

static ssize_t ops_send(void *stream, const void *buf, size_t len)
{
	struct xpo_stream *s = stream;

	if (s->err)
		return s->err;
	if (s->shut_pending)
		return -EPIPE;
	if (!len)
		return -EINVAL;
	return s->impl->send(s, buf, len);
}

static ssize_t ops_recv(void *stream, void *buf, size_t len)
{
	struct xpo_stream *s = stream;

	if (s->err)
		return s->err;
	return s->impl->recv(s, buf, len);
}

/* The client's EOF: whatever the owner queues first, then the queue, then the half-close (at
 * once when nothing is queued, else from the io watch once the queue is out). */
static int ops_shutdown(void *stream)
{
	struct xpo_stream *s = stream;
	int rc;

	if (s->err)
		return s->err;
	if (s->impl->shutdown) {
		rc = s->impl->shutdown(s);
		if (rc)
			return xpo_fail(s, rc);
	}
	s->shut_pending = true;
	rc = xpo_flush_fin(s);
	if (rc)
		return xpo_fail(s, rc);
	xpo_io_update(s);
	return 0;
}

static void ops_close(void *stream, int abort)
{
	struct xpo_stream *s = stream;

	s->impl->close(s, abort);
}

const struct xp_stream_ops xpo_stream_ops = {
	.size = sizeof(struct xp_stream_ops),
	.send = ops_send,
	.recv = ops_recv,
	.shutdown = ops_shutdown,
	.close = ops_close,
};

/* ------------------------------------------------------------------------------------------ */
/* the server's address                                                                         */

int xpo_split_hostport(const char *hp, char *host, size_t cap, const char **port)
{
	const char *colon, *h = hp;
	size_t hl;

	if (*hp == '[') {
		colon = strstr(hp, "]:");
		if (!colon)
			return -EINVAL;
		h = hp + 1;
		hl = (size_t)(colon - h);
		colon++;
	} else {
		colon = strrchr(hp, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - hp);
	}
	if (!hl || hl >= cap)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = colon + 1;
	return 0;
}

int xpo_resolve(const char *hp, union xp_sockaddr *out, socklen_t *len, char *host, size_t cap)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	char buf[256];
	const char *port;

	if (!cap) {
		host = buf;
		cap = sizeof(buf);
	}
	if (xpo_split_hostport(hp, host, cap, &port))
		return -EINVAL;
	if (getaddrinfo(host, port, &hints, &res))
		return -EHOSTUNREACH;
	if (res->ai_addrlen > sizeof(*out)) {
		freeaddrinfo(res);
		return -EAFNOSUPPORT;
	}
	memset(out, 0, sizeof(*out));
	memcpy(out, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}
