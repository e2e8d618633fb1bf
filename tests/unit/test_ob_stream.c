/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_ob_stream - the stream plumbing the transforming outbounds share
 * (plugins/outbound/common/stream.c), driven through a toy owner whose encoding is the
 * identity, against a fake host and a loopback server: what the io watch asks for, the
 * queue under backpressure, the FIN only after the queue, the sticky error, the wake-ups, the
 * connect (refused, timed out) and the server address parsing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../plugins/outbound/common/stream.h"

/* ---- a fake host ----------------------------------------------------------------------- */

struct fake_io {
	int fd;
	xp_io_cb cb;
	void *arg;
	unsigned events;
};
struct fake_timer {
	xp_timer_cb cb;
	void *arg;
	uint64_t ms;
};
static struct {
	struct fake_io *io;
	struct fake_timer *timer;
	const struct xp_stream_ops *ops;
	void *stream;
	unsigned wakes;
	int nios, ntimers; /* alive */
} fk;

static xp_io_t *fk_io_new(xp_loop_t *loop, int fd, xp_io_cb cb, void *arg)
{
	struct fake_io *io = calloc(1, sizeof(*io));

	io->fd = fd;
	io->cb = cb;
	io->arg = arg;
	fk.io = io;
	fk.nios++;
	return (xp_io_t *)io;
}
static void fk_io_set(xp_io_t *io, unsigned ev)
{
	((struct fake_io *)io)->events = ev;
}
static void fk_io_free(xp_io_t *io)
{
	if (fk.io == (struct fake_io *)io)
		fk.io = NULL;
	fk.nios--;
	free(io);
}
static xp_timer_t *fk_timer_new(xp_loop_t *loop, xp_timer_cb cb, void *arg)
{
	struct fake_timer *t = calloc(1, sizeof(*t));

	t->cb = cb;
	t->arg = arg;
	fk.timer = t;
	fk.ntimers++;
	return (xp_timer_t *)t;
}
static void fk_timer_set(xp_timer_t *t, uint64_t after_ms, uint64_t repeat_ms)
{
	((struct fake_timer *)t)->ms = after_ms;
}
static void fk_timer_free(xp_timer_t *t)
{
	if (fk.timer == (struct fake_timer *)t)
		fk.timer = NULL;
	fk.ntimers--;
	free(t);
}
static int fk_upstream_socket(xp_handle_t *who, int domain, int type, int protocol)
{
	int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);

	return fd < 0 ? -errno : fd;
}
static void fk_ready_stream(xp_conn_t *c, const struct xp_stream_ops *ops, void *stream)
{
	fk.ops = ops;
	fk.stream = stream;
}
static void fk_stream_wake(xp_conn_t *c, unsigned what)
{
	fk.wakes |= what;
}

static const struct xp_host fk_host = {
	.size = sizeof(struct xp_host),
	.io_new = fk_io_new,
	.io_set = fk_io_set,
	.io_free = fk_io_free,
	.timer_new = fk_timer_new,
	.timer_set = fk_timer_set,
	.timer_free = fk_timer_free,
	.upstream_socket = fk_upstream_socket,
	.conn_ready_stream = fk_ready_stream,
	.stream_wake = fk_stream_wake,
};

/* ---- a toy owner: the identity encoding over a plain socket ------------------------------ */

struct toy {
	struct xpo_stream xs;
	int fail_write; /* the wire's next write fails with this */
	int fins;
	int connect_err, connected, timeouts;
};

static ssize_t toy_write(struct xpo_stream *xs, const void *buf, size_t len, unsigned *need)
{
	struct toy *t = (struct toy *)xs;
	ssize_t n;

	if (t->fail_write)
		return t->fail_write;
	n = send(xs->fd, buf, len, MSG_NOSIGNAL);
	if (n < 0 && errno == EAGAIN) {
		*need = XP_IO_WRITE;
		return -EAGAIN;
	}
	return n < 0 ? -errno : n;
}
static int toy_fin(struct xpo_stream *xs, unsigned *need)
{
	((struct toy *)xs)->fins++;
	return shutdown(xs->fd, SHUT_WR) < 0 ? -errno : 0;
}
static ssize_t toy_send(struct xpo_stream *xs, const void *buf, size_t len)
{
	int rc = xpo_send_room(xs);
	size_t n;

	if (rc)
		return rc;
	n = len < xs->qcap - xs->qlen ? len : xs->qcap - xs->qlen;
	memcpy(xs->q + xs->qlen, buf, n);
	xs->qlen += n;
	return xpo_send_done(xs, n);
}
static ssize_t toy_recv(struct xpo_stream *xs, void *buf, size_t len)
{
	ssize_t n = recv(xs->fd, buf, len, 0);

	if (n < 0 && errno == EAGAIN) {
		xs->recv_need = XP_IO_READ;
		xs->recv_blocked = true;
		xpo_io_update(xs);
		return -EAGAIN;
	}
	return n < 0 ? xpo_fail(xs, -errno) : n;
}
static void toy_close(struct xpo_stream *xs, int abort)
{
	xpo_release(xs, abort);
	free(xs);
}
static void toy_connected(struct xpo_stream *xs, int err)
{
	struct toy *t = (struct toy *)xs;

	t->connected++;
	t->connect_err = err;
	xpo_timer_stop(xs);
	if (err)
		return;
	xs->state = 1;
	xpo_io_update(xs);
	fk_host.conn_ready_stream(xs->conn, &xpo_stream_ops, xs);
}
static void toy_timeout(struct xpo_stream *xs)
{
	((struct toy *)xs)->timeouts++;
}

static const struct xpo_impl toy_impl = {
	.write = toy_write,
	.fin = toy_fin,
	.send = toy_send,
	.recv = toy_recv,
	.close = toy_close,
	.connected = toy_connected,
	.timeout = toy_timeout,
};

struct rig {
	int lfd, sfd;
	struct toy *t;
	union xp_sockaddr server;
	socklen_t slen;
};

static void wait_writable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	assert_int_equal(poll(&p, 1, 2000), 1);
}

/* A toy stream connecting to a loopback listener (small buffers: backpressure comes soon). */
static void rig_up(struct rig *g, bool small, uint64_t timeout_ms)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sin);
	int sz = 4096;

	memset(&fk, 0, sizeof(fk));
	memset(g, 0, sizeof(*g));
	g->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (small)
		setsockopt(g->lfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	assert_int_equal(bind(g->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(g->lfd, 4), 0);
	getsockname(g->lfd, (struct sockaddr *)&sin, &sl);
	memcpy(&g->server, &sin, sizeof(sin));
	g->slen = sizeof(sin);

	g->t = calloc(1, sizeof(*g->t));
	xpo_init(&g->t->xs, &toy_impl, &fk_host);
	g->t->xs.conn = (xp_conn_t *)g;
	g->t->xs.qcap = 8192;
	g->t->xs.q = malloc(8192);
	assert_int_equal(xpo_socket(&g->t->xs, NULL, NULL, AF_INET, true, timeout_ms), 0);
	if (small)
		setsockopt(g->t->xs.fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	assert_int_equal(xpo_connect(&g->t->xs, &g->server, g->slen), 0);
	/* connecting: the watch asks for WRITE, nothing else */
	assert_int_equal(fk.io->events, XP_IO_WRITE);
	g->sfd = accept(g->lfd, NULL, NULL);
	assert_true(g->sfd >= 0);
	wait_writable(g->t->xs.fd);
	fk.io->cb((xp_io_t *)fk.io, fk.io->fd, XP_IO_WRITE, fk.io->arg);
	assert_int_equal(g->t->connected, 1);
	assert_int_equal(g->t->connect_err, 0);
	assert_ptr_equal(fk.stream, g->t);
	/* connected, nobody waits: the watch asks for nothing (no busy loop) */
	assert_int_equal(fk.io->events, 0);
}

static void rig_down(struct rig *g)
{
	if (fk.stream)
		fk.ops->close(fk.stream, 1);
	assert_int_equal(fk.nios, 0);
	assert_int_equal(fk.ntimers, 0);
	close(g->sfd);
	close(g->lfd);
}

static void io(unsigned revents)
{
	fk.io->cb((xp_io_t *)fk.io, fk.io->fd, revents, fk.io->arg);
}

/* Everything the server can read within 200 ms; *eof when the stream ended. */
static size_t server_drain(struct rig *g, bool *eof)
{
	static uint8_t buf[65536];
	struct pollfd p = { .fd = g->sfd, .events = POLLIN };
	size_t got = 0;

	*eof = false;
	while (poll(&p, 1, 200) > 0) {
		ssize_t n = recv(g->sfd, buf, sizeof(buf), 0);

		if (n <= 0) {
			*eof = n == 0;
			break;
		}
		got += (size_t)n;
	}
	return got;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_backpressure_and_fin_order(void **state)
{
	static uint8_t buf[65536];
	struct rig g;
	size_t sent = 0, got = 0;
	ssize_t n = 0;
	bool eof = false;

	rig_up(&g, true, 0);
	/* the server reads nothing: send() takes bytes until the socket and the bounded queue
	 * are full, then -EAGAIN and a WRITE watch */
	for (int i = 0; i < 100000; i++) {
		n = fk.ops->send(fk.stream, buf, sizeof(buf));
		if (n < 0)
			break;
		assert_true(n > 0 && (size_t)n <= 8192);
		sent += (size_t)n;
	}
	assert_int_equal(n, -EAGAIN);
	assert_true(fk.io->events & XP_IO_WRITE);
	assert_true(g.t->xs.qoff < g.t->xs.qlen);
	/* the client's EOF with bytes queued: no FIN before them */
	assert_int_equal(fk.ops->shutdown(fk.stream), 0);
	assert_int_equal(g.t->fins, 0);
	assert_int_equal(fk.ops->send(fk.stream, "x", 1), -EPIPE);
	/* the server drains; the io watch writes the rest, then the FIN, and wakes the sender */
	for (int i = 0; i < 1000 && !eof; i++) {
		got += server_drain(&g, &eof);
		if (fk.io->events & XP_IO_WRITE)
			io(XP_IO_WRITE);
	}
	assert_true(eof);
	assert_int_equal(got, sent);
	assert_int_equal(g.t->fins, 1);
	assert_true(fk.wakes & XP_WAKE_SEND);
	assert_int_equal(fk.io->events, 0);
	rig_down(&g);
}

static void test_fin_at_once_when_empty(void **state)
{
	struct rig g;
	bool eof;

	rig_up(&g, false, 0);
	assert_int_equal(fk.ops->send(fk.stream, "hello", 5), 5);
	assert_int_equal(fk.ops->shutdown(fk.stream), 0);
	assert_int_equal(g.t->fins, 1);
	assert_int_equal(server_drain(&g, &eof), 5);
	assert_true(eof);
	/* a second shutdown is not a second FIN */
	assert_int_equal(fk.ops->shutdown(fk.stream), 0);
	assert_int_equal(g.t->fins, 1);
	rig_down(&g);
}

static void test_sticky_error(void **state)
{
	static uint8_t buf[65536];
	struct rig g;
	char b[8];
	ssize_t n;

	/* from a call: every later call returns the first error */
	rig_up(&g, false, 0);
	g.t->fail_write = -ECONNRESET;
	assert_int_equal(fk.ops->send(fk.stream, "abc", 3), -ECONNRESET);
	g.t->fail_write = -EPIPE; /* a later, different failure does not replace it */
	assert_int_equal(fk.ops->send(fk.stream, "abc", 3), -ECONNRESET);
	assert_int_equal(xpo_fail(&g.t->xs, -EPIPE), -ECONNRESET); /* (an owner's later one) */
	assert_int_equal(fk.ops->recv(fk.stream, b, sizeof(b)), -ECONNRESET);
	assert_int_equal(fk.ops->shutdown(fk.stream), -ECONNRESET);
	assert_int_equal(g.t->fins, 0);
	rig_down(&g);

	/* from the io watch: both sides are woken and learn it through their next call */
	rig_up(&g, true, 0);
	do
		n = fk.ops->send(fk.stream, buf, sizeof(buf));
	while (n > 0);
	assert_int_equal(n, -EAGAIN);
	assert_int_equal(fk.ops->recv(fk.stream, b, sizeof(b)), -EAGAIN);
	g.t->fail_write = -ETIMEDOUT;
	fk.wakes = 0;
	io(XP_IO_WRITE);
	assert_int_equal(fk.wakes, XP_WAKE_RECV | XP_WAKE_SEND);
	assert_int_equal(fk.ops->recv(fk.stream, b, sizeof(b)), -ETIMEDOUT);
	assert_int_equal(fk.ops->send(fk.stream, "x", 1), -ETIMEDOUT);
	rig_down(&g);
}

static void test_recv_wake(void **state)
{
	struct rig g;
	char b[16];

	rig_up(&g, false, 0);
	assert_int_equal(fk.ops->send(fk.stream, "x", 0), -EINVAL);
	/* READ is asked for only after recv() found nothing */
	assert_false(fk.io->events & XP_IO_READ);
	assert_int_equal(fk.ops->recv(fk.stream, b, sizeof(b)), -EAGAIN);
	assert_int_equal(fk.io->events, XP_IO_READ);
	assert_int_equal(send(g.sfd, "pong", 4, 0), 4);
	io(XP_IO_READ);
	assert_int_equal(fk.wakes, XP_WAKE_RECV);
	assert_int_equal(fk.io->events, 0); /* the core calls now; no level-triggered spin */
	assert_int_equal(fk.ops->recv(fk.stream, b, sizeof(b)), 4);
	assert_memory_equal(b, "pong", 4);
	/* a readable event nobody waited for wakes nobody */
	fk.wakes = 0;
	io(XP_IO_READ);
	assert_int_equal(fk.wakes, 0);
	rig_down(&g);
}

static void test_abort_resets(void **state)
{
	struct rig g;
	char b[4];

	rig_up(&g, false, 0);
	fk.ops->close(fk.stream, 1);
	fk.stream = NULL;
	assert_int_equal(recv(g.sfd, b, sizeof(b), 0), -1);
	assert_int_equal(errno, ECONNRESET);
	rig_down(&g);

	rig_up(&g, false, 0);
	fk.ops->close(fk.stream, 0);
	fk.stream = NULL;
	assert_int_equal(recv(g.sfd, b, sizeof(b), 0), 0); /* a clean close */
	rig_down(&g);
}

static void test_connect_refused_and_timeout(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sin);
	union xp_sockaddr a;
	struct toy *t;
	int fd;

	/* a port nobody listens on */
	memset(&fk, 0, sizeof(fk));
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	close(fd);
	memcpy(&a, &sin, sizeof(sin));
	t = calloc(1, sizeof(*t));
	xpo_init(&t->xs, &toy_impl, &fk_host);
	assert_int_equal(xpo_socket(&t->xs, NULL, NULL, AF_INET, false, 5000), 0);
	assert_non_null(fk.timer);
	assert_int_equal(fk.timer->ms, 5000);
	if (xpo_connect(&t->xs, &a, sizeof(sin)) == 0) {
		wait_writable(t->xs.fd);
		io(XP_IO_WRITE);
	} else {
		t->connect_err = -ECONNREFUSED; /* refused at once: the caller's to report */
	}
	assert_int_equal(t->connect_err, -ECONNREFUSED);
	assert_null(fk.stream);
	toy_close(&t->xs, 1);
	assert_int_equal(fk.nios, 0);
	assert_int_equal(fk.ntimers, 0);

	/* the connect timer reaches the owner's timeout */
	memset(&fk, 0, sizeof(fk));
	t = calloc(1, sizeof(*t));
	xpo_init(&t->xs, &toy_impl, &fk_host);
	assert_int_equal(xpo_socket(&t->xs, NULL, NULL, AF_INET, false, 100), 0);
	fk.timer->cb((xp_timer_t *)fk.timer, fk.timer->arg);
	assert_int_equal(t->timeouts, 1);
	toy_close(&t->xs, 1);
	assert_int_equal(fk.ntimers, 0);
}

static void test_hostport(void **state)
{
	char host[256], big[400];
	const char *port = NULL;
	union xp_sockaddr a;
	socklen_t l;

	assert_int_equal(xpo_split_hostport("example.org:443", host, sizeof(host), &port), 0);
	assert_string_equal(host, "example.org");
	assert_string_equal(port, "443");
	assert_int_equal(xpo_split_hostport("[2001:db8::1]:8443", host, sizeof(host), &port), 0);
	assert_string_equal(host, "2001:db8::1");
	assert_string_equal(port, "8443");
	/* the last colon splits an unbracketed form */
	assert_int_equal(xpo_split_hostport("a:b:1", host, sizeof(host), &port), 0);
	assert_string_equal(host, "a:b");
	/* truncated, empty and garbage forms */
	assert_int_equal(xpo_split_hostport("example.org", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(xpo_split_hostport(":80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(xpo_split_hostport("[::1]", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(xpo_split_hostport("[::1:80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(xpo_split_hostport("[]:80", host, sizeof(host), &port), -EINVAL);
	assert_int_equal(xpo_split_hostport("", host, sizeof(host), &port), -EINVAL);
	/* a host longer than the buffer */
	memset(big, 'a', sizeof(big));
	strcpy(big + 300, ":1");
	assert_int_equal(xpo_split_hostport(big, host, sizeof(host), &port), -EINVAL);
	assert_int_equal(xpo_split_hostport("abcd:1", host, 4, &port), -EINVAL);
	assert_int_equal(xpo_split_hostport("abc:1", host, 4, &port), 0);

	/* numeric forms resolve without DNS */
	assert_int_equal(xpo_resolve("127.0.0.1:8080", &a, &l, NULL, 0), 0);
	assert_int_equal(a.sa.sa_family, AF_INET);
	assert_int_equal(ntohs(a.in.sin_port), 8080);
	assert_int_equal(l, sizeof(struct sockaddr_in));
	assert_int_equal(xpo_resolve("[::1]:53", &a, &l, host, sizeof(host)), 0);
	assert_int_equal(a.sa.sa_family, AF_INET6);
	assert_int_equal(ntohs(a.in6.sin6_port), 53);
	assert_string_equal(host, "::1");
	assert_int_equal(xpo_resolve("127.0.0.1", &a, &l, NULL, 0), -EINVAL);
	assert_int_equal(xpo_resolve(big, &a, &l, NULL, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backpressure_and_fin_order),
		cmocka_unit_test(test_fin_at_once_when_empty),
		cmocka_unit_test(test_sticky_error),
		cmocka_unit_test(test_recv_wake),
		cmocka_unit_test(test_abort_resets),
		cmocka_unit_test(test_connect_refused_and_timeout),
		cmocka_unit_test(test_hostport),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
