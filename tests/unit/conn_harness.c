/* SPDX-License-Identifier: GPL-2.0-only */
/* conn_harness - see conn_harness.h. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "conn_harness.h"
#include "loop.h"

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                                */

int h_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

void h_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void h_reset_close(int fd)
{
	struct linger lg = {1, 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

void h_fill(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)x;
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool h_wait(bool (*cond)(struct harness *h), struct harness *h, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	while (!cond(h)) {
		if (now_ms() > end)
			return false;
		usleep(1000);
	}
	return true;
}

static uint64_t stat_at(size_t offset)
{
	return atomic_load((atomic_uint_fast64_t *)((char *)&conn_stats + offset));
}

uint64_t h_stat(struct harness *h, size_t offset)
{
	return stat_at(offset) - h->stats_base[offset / sizeof(atomic_uint_fast64_t)];
}

bool h_idle(struct harness *h)
{
	return atomic_load(&conn_stats.active) == 0;
}

int h_wait_end(int fd, int timeout_ms)
{
	uint8_t buf[4096];
	int end;

	h_read_until_end(fd, buf, sizeof(buf), timeout_ms, &end);
	return end;
}

size_t h_read_until_end(int fd, uint8_t *buf, size_t cap, int timeout_ms, int *end)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	uint8_t scratch[65536];
	size_t got = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(deadline - now_ms());
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			*end = -ETIMEDOUT;
			return got;
		}
		if (got < cap)
			n = recv(fd, buf + got, cap - got, MSG_DONTWAIT);
		else
			n = recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0) {
			*end = 0;
			return got;
		}
		if (errno == EAGAIN || errno == EINTR)
			continue;
		*end = -errno;
		return got;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* The fake outbound                                                                            */

struct fake_stream {
	struct harness *h;
	xp_conn_t *conn;
	int fd;
	xp_io_t *io;
	unsigned io_events;
	xp_timer_t *wake_t;
	unsigned wake_pending;
	uint32_t rng;
	uint8_t tmp[16384];
};

struct fake_pending {
	struct harness *h;
	xp_conn_t *conn;
	int fd;
	xp_io_t *io;
	xp_timer_t *t;
	bool twice;
};

static uint32_t rnd(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static int upstream_connect(struct harness *h, bool nonblock)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->srv_port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0)
		return -errno;
	if (h->upstream_sndbuf)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &h->upstream_sndbuf,
			   sizeof(h->upstream_sndbuf));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
		int err = -errno;

		close(fd);
		return err;
	}
	if (!nonblock)
		h_nonblock(fd);
	return fd;
}

static void stream_wake_cb(xp_timer_t *t, void *arg)
{
	struct fake_stream *s = arg;
	unsigned what = s->wake_pending;

	s->wake_pending = 0;
	conn_stream_wake(s->conn, what);
}

/* Random styles: a wake from inside send()/recv() (the core must not re-enter), or later. */
static void stream_wake_later(struct fake_stream *s, unsigned what)
{
	if (rnd(&s->rng) % 2) {
		conn_stream_wake(s->conn, what);
		return;
	}
	s->wake_pending |= what;
	loop_timer_set(s->wake_t, rnd(&s->rng) % 2, 0);
}

static void stream_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct fake_stream *s = arg;
	unsigned what = 0;

	/* Level-triggered: stop watching until the core comes back and hits EAGAIN again. */
	if (revents & XP_IO_READ) {
		s->io_events &= ~XP_IO_READ;
		what |= XP_WAKE_RECV;
	}
	if (revents & XP_IO_WRITE) {
		s->io_events &= ~XP_IO_WRITE;
		what |= XP_WAKE_SEND;
	}
	loop_io_set(io, s->io_events);
	conn_stream_wake(s->conn, what);
}

static ssize_t fs_send(void *stream, const void *buf, size_t len)
{
	struct fake_stream *s = stream;
	size_t n = len < sizeof(s->tmp) ? len : sizeof(s->tmp);
	ssize_t w;

	if (s->h->stream_stall) {
		atomic_store(&s->h->stalled, s);
		return -EAGAIN; /* the wake comes from h_stream_unstall() */
	}
	if (s->h->stream_noise && rnd(&s->rng) % 4 == 0) {
		stream_wake_later(s, XP_WAKE_SEND);
		return -EAGAIN;
	}
	if (s->h->stream_noise)
		n = 1 + rnd(&s->rng) % n;
	for (size_t i = 0; i < n; i++)
		s->tmp[i] = ((const uint8_t *)buf)[i] ^ XOR_KEY;
	w = send(s->fd, s->tmp, n, MSG_NOSIGNAL);
	if (w >= 0)
		return w;
	if (errno == EAGAIN) {
		s->io_events |= XP_IO_WRITE;
		loop_io_set(s->io, s->io_events);
		return -EAGAIN;
	}
	return -errno;
}

static ssize_t fs_recv(void *stream, void *buf, size_t len)
{
	struct fake_stream *s = stream;
	ssize_t n;

	if (s->h->stream_noise && rnd(&s->rng) % 4 == 0) {
		stream_wake_later(s, XP_WAKE_RECV);
		return -EAGAIN;
	}
	if (s->h->stream_noise)
		len = 1 + rnd(&s->rng) % len;
	n = recv(s->fd, buf, len, 0);
	if (n > 0) {
		for (ssize_t i = 0; i < n; i++)
			((uint8_t *)buf)[i] ^= XOR_KEY;
		return n;
	}
	if (n == 0)
		return 0;
	if (errno == EAGAIN) {
		s->io_events |= XP_IO_READ;
		loop_io_set(s->io, s->io_events);
		return -EAGAIN;
	}
	return -errno;
}

static int fs_shutdown(void *stream)
{
	struct fake_stream *s = stream;

	atomic_fetch_add(&s->h->stream_shutdowns, 1);
	return shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
}

static void fs_close(void *stream, int abort)
{
	struct fake_stream *s = stream, *expect = s;

	atomic_fetch_add(&s->h->stream_closes, 1);
	if (abort)
		atomic_fetch_add(&s->h->stream_aborts, 1);
	atomic_compare_exchange_strong(&s->h->stalled, &expect, NULL);
	loop_io_free(s->io);
	loop_timer_free(s->wake_t);
	if (abort)
		h_reset_close(s->fd);
	else
		close(s->fd);
	free(s);
}

static const struct xp_stream_ops fake_stream_ops = {
	.size = sizeof(struct xp_stream_ops),
	.send = fs_send,
	.recv = fs_recv,
	.shutdown = fs_shutdown,
	.close = fs_close,
};

static struct fake_stream *stream_new(struct harness *h, xp_conn_t *conn, int fd)
{
	struct fake_stream *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->h = h;
	s->conn = conn;
	s->fd = fd;
	s->rng = (uint32_t)fd * 7919u + 17u;
	s->io = loop_io_new(conn_loop(conn), fd, stream_io_cb, s);
	s->wake_t = loop_timer_new(conn_loop(conn), stream_wake_cb, s);
	return s;
}

static void pending_free(struct fake_pending *p)
{
	loop_io_free(p->io);
	loop_timer_free(p->t);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

static void pending_timer_cb(xp_timer_t *t, void *arg)
{
	struct fake_pending *p = arg;
	struct harness *h = p->h;
	xp_conn_t *conn = p->conn;
	int fd = p->fd;

	p->fd = -1;
	pending_free(p); /* frees this timer inside its own callback */
	if (h->mode == FAKE_FAIL_ASYNC) {
		conn_fail(conn, h->fail_err, "fake async failure");
		return;
	}
	conn_ready_stream(conn, &fake_stream_ops, stream_new(h, conn, fd));
}

static void pending_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct fake_pending *p = arg;
	xp_conn_t *conn = p->conn;
	int err = 0;
	socklen_t len = sizeof(err);

	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		pending_free(p);
		conn_fail(conn, -err, "fake connect");
		return;
	}
	p->fd = -1;
	pending_free(p);
	conn_ready_fd(conn, fd);
}

static bool info_ok(struct harness *h, xp_conn_t *conn)
{
	const struct xp_conn_info *ci = conn_info(conn);
	uint64_t last = atomic_load(&h->last_id);

	if (conn_loop(conn) != &h->w.loop || loop_current() != &h->w.loop)
		return false;
	if (ci->size != sizeof(*ci) || ci->l4proto != IPPROTO_TCP || ci->id == 0)
		return false;
	if (atomic_load(&h->v6)) {
		/* A real IPv6 client stays AF_INET6. */
		if (ci->client.sa.sa_family != AF_INET6 || ci->dst.sa.sa_family != AF_INET6 ||
		    !IN6_IS_ADDR_LOOPBACK(&ci->dst.in6.sin6_addr) ||
		    ntohs(ci->dst.in6.sin6_port) != h->port)
			return false;
	} else {
		/* 127.0.0.1 arrives IPv4-mapped on the dual-stack listener: must be AF_INET. */
		if (ci->client.sa.sa_family != AF_INET || ci->dst.sa.sa_family != AF_INET ||
		    ci->dst.in.sin_addr.s_addr != htonl(INADDR_LOOPBACK) ||
		    ntohs(ci->dst.in.sin_port) != h->port)
			return false;
	}
	if (!ci->outbound || strcmp(ci->outbound, "fake") || ci->route != XP_ROUTE_PROXY ||
	    ci->rule_id != 7)
		return false;
	/* Ids grow; one worker, so they arrive in order. */
	if (ci->id <= last)
		return false;
	atomic_store(&h->last_id, ci->id);
	return true;
}

static int fake_tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *target,
			    void **cctx)
{
	struct harness *h = inst;
	struct fake_pending *p;
	int fd;

	atomic_fetch_add(&h->connects, 1);
	if (!info_ok(h, conn) || target->size != sizeof(*target) ||
	    target->l4proto != IPPROTO_TCP ||
	    target->addr.sa.sa_family != conn_info(conn)->dst.sa.sa_family)
		atomic_fetch_add(&h->info_bad, 1);

	switch (h->mode) {
	case FAKE_FD_SYNC:
	case FAKE_FD_TWICE:
		fd = upstream_connect(h, false);
		if (fd < 0)
			return fd;
		conn_ready_fd(conn, fd);
		if (h->mode == FAKE_FD_TWICE) {
			int extra = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

			conn_ready_fd(conn, extra); /* refused; the core closes it */
		}
		return 0;
	case FAKE_STREAM_SYNC:
		fd = upstream_connect(h, false);
		if (fd < 0)
			return fd;
		conn_ready_stream(conn, &fake_stream_ops, stream_new(h, conn, fd));
		return 0;
	case FAKE_FAIL_SYNC:
		conn_fail(conn, h->fail_err, "fake sync failure");
		return 0;
	case FAKE_RETURN_ERR:
		return h->fail_err;
	case FAKE_NEVER:
		p = calloc(1, sizeof(*p));
		p->h = h;
		p->conn = conn;
		p->fd = -1;
		*cctx = p;
		return 0;
	case FAKE_FD_ASYNC:
	case FAKE_STREAM:
	case FAKE_FAIL_ASYNC:
		break;
	}
	p = calloc(1, sizeof(*p));
	assert_non_null(p);
	p->h = h;
	p->conn = conn;
	p->fd = -1;
	if (h->mode == FAKE_FD_ASYNC) {
		p->fd = upstream_connect(h, true);
		if (p->fd < 0) {
			int err = p->fd;

			free(p);
			return err;
		}
		p->io = loop_io_new(conn_loop(conn), p->fd, pending_io_cb, p);
		loop_io_set(p->io, XP_IO_WRITE);
	} else {
		if (h->mode == FAKE_STREAM) {
			p->fd = upstream_connect(h, false);
			if (p->fd < 0) {
				int err = p->fd;

				free(p);
				return err;
			}
		}
		p->t = loop_timer_new(conn_loop(conn), pending_timer_cb, p);
		loop_timer_set(p->t, 1, 0);
	}
	*cctx = p;
	return 0;
}

static void fake_tcp_abort(void *inst, void *cctx)
{
	struct harness *h = inst;

	atomic_fetch_add(&h->aborts, 1);
	pending_free(cctx);
}

static int fake_route(void *ctx, const union xp_sockaddr *client, const union xp_sockaddr *dst,
		      struct conn_route *out)
{
	struct harness *h = ctx;

	atomic_fetch_add(&h->routes, 1);
	if (h->route_err)
		return h->route_err;
	if (h->route_refuse) {
		out->why = "test refuses";
		return 0;
	}
	atomic_fetch_add(&h->ob.refs, 1);
	out->ob = &h->ob;
	out->route = XP_ROUTE_PROXY;
	out->source = XP_SOURCE_RULE;
	out->rule_id = 7;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Start, stop                                                                                  */

static int local_port(int fd)
{
	struct sockaddr_in6 a;
	socklen_t len = sizeof(a);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	return ntohs(a.sin6_port);
}

void h_start(struct harness *h, enum fake_mode mode, const struct conn_opts *opts, int rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd, err;

	h->fd_base = h_fd_count();
	for (size_t i = 0; i < 10; i++)
		h->stats_base[i] = stat_at(i * sizeof(atomic_uint_fast64_t));
	h->mode = mode;

	h->plugin.outbound.size = sizeof(h->plugin.outbound);
	h->plugin.outbound.caps = XP_OUTBOUND_TCP;
	h->plugin.outbound.tcp_connect = fake_tcp_connect;
	h->plugin.outbound.tcp_abort = fake_tcp_abort;
	h->ob.name = "fake";
	h->ob.id = 1;
	h->ob.plugin = &h->plugin;
	h->ob.ops = &h->plugin.outbound;
	h->ob.inst = h;
	atomic_init(&h->ob.refs, 1); /* the harness's: the connections' puts never free it */

	/* The server: loopback, port chosen by the kernel. */
	h->srv_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(h->srv_fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(h->srv_fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(h->srv_fd, 128), 0);
	assert_int_equal(getsockname(h->srv_fd, (struct sockaddr *)&a, &len), 0);
	h->srv_port = ntohs(a.sin_port);

	fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (rcvbuf > 0) /* inherited by accepted sockets: bounds the proxy's receive side */
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	err = conn_listen_tcp(fd);
	if (err == -EPERM) {
		fprintf(stderr, "SKIP: IP_TRANSPARENT needs CAP_NET_ADMIN (run as root)\n");
		exit(77);
	}
	assert_int_equal(err, 0);
	h->port = local_port(fd);
	assert_int_equal(worker_init(&h->w, 0, fd, opts, fake_route, h), 0);
	assert_ptr_equal(h->w.loop.owner, &h->w);
	assert_int_equal(worker_start(&h->w), 0);
	h->started = true;
}

void h_stop(struct harness *h)
{
	worker_stop(&h->w);
	worker_join(&h->w);
	worker_fini(&h->w);
	worker_fini(NULL);
	close(h->srv_fd);
	assert_int_equal(atomic_load(&conn_stats.active), 0);
	assert_int_equal(h->w.n_conns, 0);
	assert_int_equal(atomic_load(&h->ob.refs), 1);
	assert_int_equal(atomic_load(&h->info_bad), 0);
	assert_int_equal(h_fd_count(), h->fd_base);
}

int h_client_buf(struct harness *h, int sndbuf, int rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->port)};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
				  .sin6_port = htons((uint16_t)h->port),
				  .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	bool v6 = atomic_load(&h->v6);
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (sndbuf)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (v6)
		assert_int_equal(connect(fd, (struct sockaddr *)&a6, sizeof(a6)), 0);
	else
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

int h_client(struct harness *h)
{
	return h_client_buf(h, 0, 0);
}

int h_accept(struct harness *h, int timeout_ms)
{
	struct pollfd p = {.fd = h->srv_fd, .events = POLLIN};

	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	return accept4(h->srv_fd, NULL, NULL, SOCK_CLOEXEC);
}

static void unstall_on_loop(void *arg)
{
	struct harness *h = arg;
	struct fake_stream *s = atomic_load(&h->stalled);

	h->stream_stall = false;
	if (s)
		conn_stream_wake(s->conn, XP_WAKE_SEND);
}

void h_stream_unstall(struct harness *h)
{
	assert_int_equal(loop_post(&h->w.loop, unstall_on_loop, h), 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Two-way exchange                                                                             */

struct side {
	int fd;
	const uint8_t *out; /* what this side sends */
	size_t out_len, sent;
	uint8_t *in; /* what it received */
	size_t in_len, got;
	bool eof, shut;
};

static void side_step(struct side *s, short revents)
{
	if ((revents & POLLOUT) && s->sent < s->out_len) {
		ssize_t n = send(s->fd, s->out + s->sent, s->out_len - s->sent,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		assert_true(n > 0 || errno == EAGAIN);
		if (n > 0)
			s->sent += (size_t)n;
	}
	if (s->sent == s->out_len && !s->shut) {
		assert_int_equal(shutdown(s->fd, SHUT_WR), 0);
		s->shut = true;
	}
	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		ssize_t n = recv(s->fd, s->in + s->got, s->in_len + 1 - s->got, MSG_DONTWAIT);

		if (n > 0) {
			s->got += (size_t)n;
			assert_true(s->got <= s->in_len); /* never more than was sent */
		} else if (n == 0) {
			s->eof = true;
		} else {
			assert_int_equal(errno, EAGAIN);
		}
	}
}

void h_exchange(int cfd, int sfd, size_t up, size_t down, uint8_t xor)
{
	uint8_t *cup = malloc(up + 1), *sup = malloc(up + 1);
	uint8_t *sdown = malloc(down + 1), *cdown = malloc(down + 1);
	struct side c = {.fd = cfd, .out = cup, .out_len = up, .in = cdown, .in_len = down};
	struct side s = {.fd = sfd, .out = sdown, .out_len = down, .in = sup, .in_len = up};
	uint64_t deadline = now_ms() + 20000;

	assert_non_null(cup);
	assert_non_null(sup);
	assert_non_null(sdown);
	assert_non_null(cdown);
	h_fill(cup, up, 1);
	h_fill(sdown, down, 2);
	while (!(c.eof && s.eof)) {
		struct pollfd p[2] = {
			{.fd = cfd, .events = (short)(POLLIN | (c.sent < up ? POLLOUT : 0))},
			{.fd = sfd, .events = (short)(POLLIN | (s.sent < down ? POLLOUT : 0))},
		};

		assert_true(now_ms() < deadline);
		if (c.eof)
			p[0].events &= ~POLLIN;
		if (s.eof)
			p[1].events &= ~POLLIN;
		assert_true(poll(p, 2, 1000) >= 0);
		side_step(&c, p[0].revents);
		side_step(&s, p[1].revents);
	}
	assert_int_equal(c.got, down);
	assert_int_equal(s.got, up);
	/* The server sees the client's bytes through the outbound's transformation (none for
	 * a plain fd), the client sees the server's bytes restored. */
	for (size_t i = 0; i < up; i++)
		sup[i] ^= xor;
	assert_memory_equal(sup, cup, up);
	for (size_t i = 0; i < down; i++)
		sdown[i] ^= xor;
	assert_memory_equal(cdown, sdown, down);
	close(cfd);
	close(sfd);
	free(cup);
	free(sup);
	free(sdown);
	free(cdown);
}
