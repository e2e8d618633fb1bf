/* SPDX-License-Identifier: GPL-2.0-only */
/* relay: byte-exact transfers, half-close, RST propagation, backpressure, idle timeouts,
 * through the splice relay (plain fd outbound) and the stream relay (a XOR stream). */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_segs_in */

#include "conn_harness.h"

#define MB (1024 * 1024)

static const struct conn_opts base_opts = {
	.sniff_timeout_ms = 300,
	.connect_timeout_ms = 2000,
	.idle_timeout_ms = 10000,
	.halfclose_timeout_ms = 10000,
	.buffer_bytes = 65536,
	.max_connections = 100,
};

static uint8_t xor_for(enum fake_mode m)
{
	return (m == FAKE_STREAM || m == FAKE_STREAM_SYNC) ? XOR_KEY : 0;
}

static void run_exchange(enum fake_mode mode, bool noise, uint32_t buffer)
{
	struct harness h = {.stream_noise = noise};
	struct conn_opts o = base_opts;
	int cfd, sfd;

	o.buffer_bytes = buffer;
	h_start(&h, mode, &o, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	h_exchange(cfd, sfd, MB, MB, xor_for(mode));
	assert_true(h_wait(h_idle, &h, 2000));
	assert_int_equal(H_STAT(&h, bytes_up), MB);
	assert_int_equal(H_STAT(&h, bytes_down), MB);
	assert_int_equal(H_STAT(&h, resets), 0);
	assert_int_equal(atomic_load(&h.ob.bytes_up), MB);
	assert_int_equal(atomic_load(&h.ob.bytes_down), MB);
	if (mode == FAKE_STREAM || mode == FAKE_STREAM_SYNC) {
		assert_int_equal(atomic_load(&h.stream_closes), 1);
		assert_int_equal(atomic_load(&h.stream_aborts), 0);
		assert_int_equal(atomic_load(&h.stream_shutdowns), 1);
	}
	h_stop(&h);
}

static void test_fd_1mb_each_way(void **state)
{
	run_exchange(FAKE_FD_SYNC, false, 65536);
}

static void test_fd_async_small_pipe(void **state)
{
	/* A pipe much smaller than the data: many fill/drain rounds. */
	run_exchange(FAKE_FD_ASYNC, false, 4096);
}

static void test_stream_1mb_xor_eagain(void **state)
{
	run_exchange(FAKE_STREAM, true, 65536);
}

static void test_stream_sync_small_buffer(void **state)
{
	run_exchange(FAKE_STREAM_SYNC, true, 1000);
}

/* One side ends its writing; the other keeps sending, then ends too. */
static void half_close(enum fake_mode mode, bool client_first)
{
	struct harness h = {.stream_noise = true};
	uint8_t buf[300000], want[200000];
	int cfd, sfd, end, a, b;
	size_t n;

	h_start(&h, mode, &base_opts, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	/* a ends first, b keeps sending. */
	a = client_first ? cfd : sfd;
	b = client_first ? sfd : cfd;
	assert_int_equal(send(a, "hello", 5, 0), 5);
	assert_int_equal(shutdown(a, SHUT_WR), 0);
	n = h_read_until_end(b, buf, sizeof(buf), 3000, &end);
	assert_int_equal(end, 0); /* EOF propagated */
	assert_int_equal(n, 5);
	if (xor_for(mode))
		for (size_t i = 0; i < n; i++)
			buf[i] ^= XOR_KEY;
	assert_memory_equal(buf, "hello", 5);

	/* The other direction still works after the half-close. */
	h_fill(want, sizeof(want), 9);
	for (size_t off = 0; off < sizeof(want);) {
		ssize_t w = send(b, want + off, sizeof(want) - off, 0);

		assert_true(w > 0);
		off += (size_t)w;
	}
	assert_int_equal(shutdown(b, SHUT_WR), 0);
	n = h_read_until_end(a, buf, sizeof(buf), 5000, &end);
	assert_int_equal(end, 0);
	assert_int_equal(n, sizeof(want));
	if (xor_for(mode))
		for (size_t i = 0; i < n; i++)
			buf[i] ^= XOR_KEY;
	assert_memory_equal(buf, want, sizeof(want));
	close(a);
	close(b);
	assert_true(h_wait(h_idle, &h, 2000));
	assert_int_equal(H_STAT(&h, resets), 0);
	h_stop(&h);
}

static void test_half_close_client_first_fd(void **state)
{
	half_close(FAKE_FD_SYNC, true);
}

static void test_half_close_server_first_fd(void **state)
{
	half_close(FAKE_FD_SYNC, false);
}

static void test_half_close_client_first_stream(void **state)
{
	half_close(FAKE_STREAM, true);
}

static void test_half_close_server_first_stream(void **state)
{
	half_close(FAKE_STREAM, false);
}

/* A reset on one side arrives as a reset on the other. */
static void rst(enum fake_mode mode, bool client_resets)
{
	struct harness h = {0};
	uint8_t buf[16];
	int cfd, sfd;

	h_start(&h, mode, &base_opts, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	/* Make sure the relay runs both ways first. */
	assert_int_equal(send(cfd, "ping", 4, 0), 4);
	assert_true(recv(sfd, buf, 4, MSG_WAITALL) == 4);
	assert_int_equal(send(sfd, "pong", 4, 0), 4);
	assert_true(recv(cfd, buf, 4, MSG_WAITALL) == 4);

	if (client_resets) {
		h_reset_close(cfd);
		assert_int_equal(h_wait_end(sfd, 3000), -ECONNRESET);
		close(sfd);
	} else {
		h_reset_close(sfd);
		assert_int_equal(h_wait_end(cfd, 3000), -ECONNRESET);
		close(cfd);
	}
	assert_true(h_wait(h_idle, &h, 2000));
	assert_int_equal(H_STAT(&h, resets), 1);
	if (mode == FAKE_STREAM) {
		assert_int_equal(atomic_load(&h.stream_closes), 1);
		assert_int_equal(atomic_load(&h.stream_aborts), 1);
	}
	h_stop(&h);
}

static void test_rst_client_to_server_fd(void **state)
{
	rst(FAKE_FD_SYNC, true);
}

static void test_rst_server_to_client_fd(void **state)
{
	rst(FAKE_FD_SYNC, false);
}

static void test_rst_client_to_server_stream(void **state)
{
	rst(FAKE_STREAM, true);
}

static void test_rst_server_to_client_stream(void **state)
{
	rst(FAKE_STREAM, false);
}

static int sockbuf(int fd, int opt)
{
	int v = 0;
	socklen_t len = sizeof(v);

	getsockopt(fd, SOL_SOCKET, opt, &v, &len);
	return v;
}

/* Write from the client until it has been blocked for `quiet_ms`; return the total. */
static size_t write_until_stalled(int cfd, int quiet_ms)
{
	static uint8_t chunk[65536];
	size_t total = 0;

	h_nonblock(cfd);
	for (;;) {
		struct pollfd p = {.fd = cfd, .events = POLLOUT};
		ssize_t n;

		if (poll(&p, 1, quiet_ms) == 0)
			return total;
		n = send(cfd, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);
		assert_true(n > 0 || errno == EAGAIN);
		if (n > 0)
			total += (size_t)n;
		assert_true(total < 512u * MB); /* unbounded: the relay never pushed back */
	}
}

/* The server does not read: the relay stops reading the client after a bounded amount.
 * Every socket on the path has a fixed buffer, so the bound is known: the four socket
 * buffers plus one pipe (the relay's share), with slack for skb overhead accounting. */
static void test_backpressure_fd(void **state)
{
	struct harness h = {.upstream_sndbuf = 65536};
	struct conn_opts o = base_opts;
	size_t total, bound, got;
	int cfd, sfd, small = 65536, end;

	o.buffer_bytes = 65536;
	h_start(&h, FAKE_FD_SYNC, &o, small);
	cfd = h_client_buf(&h, small, 0);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	setsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));

	total = write_until_stalled(cfd, 300);
	bound = (size_t)sockbuf(cfd, SO_SNDBUF) + (size_t)sockbuf(sfd, SO_RCVBUF) +
		2 * (size_t)small * 2 /* proxy's client rcvbuf and upstream sndbuf, doubled */ +
		o.buffer_bytes + 64 * 1024;
	assert_true(total > 0);
	/* A second round, in case a loaded machine only paused the relay: still bounded. */
	total += write_until_stalled(cfd, 300);
	assert_true(total <= bound);

	/* Reading resumes the flow, byte-exact and complete. */
	shutdown(cfd, SHUT_WR);
	got = h_read_until_end(sfd, NULL, 0, 5000, &end);
	assert_int_equal(end, 0);
	assert_int_equal(got, total);
	close(sfd);
	assert_int_equal(h_wait_end(cfd, 3000), 0);
	close(cfd);
	assert_true(h_wait(h_idle, &h, 2000));
	h_stop(&h);
}

/* A stream that takes nothing: the relay holds at most one buffer. */
static void test_backpressure_stream(void **state)
{
	struct harness h = {.stream_stall = true};
	struct conn_opts o = base_opts;
	size_t total, bound, got;
	int cfd, sfd, small = 65536, end;

	o.buffer_bytes = 32768;
	h_start(&h, FAKE_STREAM_SYNC, &o, small);
	cfd = h_client_buf(&h, small, 0);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);

	total = write_until_stalled(cfd, 300);
	total += write_until_stalled(cfd, 300);
	bound = (size_t)sockbuf(cfd, SO_SNDBUF) + (size_t)small * 2 + o.buffer_bytes + 64 * 1024;
	assert_true(total > 0);
	assert_true(total <= bound);
	assert_int_equal(got = h_read_until_end(sfd, NULL, 0, 100, &end), 0);
	assert_int_equal(end, -ETIMEDOUT);

	h_stream_unstall(&h);
	shutdown(cfd, SHUT_WR);
	got = h_read_until_end(sfd, NULL, 0, 5000, &end);
	assert_int_equal(end, 0);
	assert_int_equal(got, total);
	close(sfd);
	assert_int_equal(h_wait_end(cfd, 3000), 0);
	close(cfd);
	assert_true(h_wait(h_idle, &h, 2000));
	h_stop(&h);
}

/* No bytes either way for idle_timeout: both sides closed (FIN: nothing was in flight). */
static void idle(enum fake_mode mode)
{
	struct harness h = {0};
	struct conn_opts o = base_opts;
	uint8_t buf[4];
	int cfd, sfd;
	uint64_t t0;

	o.idle_timeout_ms = 800;
	h_start(&h, mode, &o, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	/* Activity pushes the deadline: 12 x 100 ms of traffic outlives one idle period (and
	 * leaves room for a loaded CI machine's scheduling delays). */
	for (int i = 0; i < 12; i++) {
		usleep(100000);
		assert_int_equal(send(cfd, "x", 1, 0), 1);
		assert_int_equal(recv(sfd, buf, 1, MSG_WAITALL), 1);
	}
	assert_int_equal(H_STAT(&h, idle_timeout), 0);
	t0 = (uint64_t)time(NULL);
	assert_int_equal(h_wait_end(cfd, 3000), 0);
	assert_int_equal(h_wait_end(sfd, 3000), 0);
	assert_true((uint64_t)time(NULL) - t0 <= 2);
	close(cfd);
	close(sfd);
	assert_true(h_wait(h_idle, &h, 2000));
	assert_int_equal(H_STAT(&h, idle_timeout), 1);
	assert_int_equal(H_STAT(&h, resets), 0);
	h_stop(&h);
}

static void test_idle_timeout_fd(void **state)
{
	idle(FAKE_FD_SYNC);
}

static void test_idle_timeout_stream(void **state)
{
	idle(FAKE_STREAM);
}

/* One direction ended, the other never does: closed after halfclose_timeout. */
static void test_halfclose_timeout(void **state)
{
	struct harness h = {0};
	struct conn_opts o = base_opts;
	int cfd, sfd;

	o.halfclose_timeout_ms = 300;
	h_start(&h, FAKE_FD_SYNC, &o, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	assert_int_equal(shutdown(cfd, SHUT_WR), 0);
	assert_int_equal(h_wait_end(sfd, 2000), 0); /* the half-close arrives */
	/* The server never ends its side: the relay gives up on it. */
	assert_int_equal(h_wait_end(cfd, 3000), 0);
	close(cfd);
	close(sfd);
	assert_true(h_wait(h_idle, &h, 2000));
	h_stop(&h);
}

static uint32_t segs_in(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
	return ti.tcpi_segs_in;
}

/* The server's short answer and its FIN arrive in one segment (TCP_CORK on the server): the
 * stream relay reads the end before sending, so the client gets them in one segment too
 * (MSG_MORE + shutdown), not the data and then a bare FIN (relay.c, read_ahead). */
static void server_answer_then(bool reset, uint32_t want_segs)
{
	struct harness h = {0};
	uint8_t buf[64];
	uint32_t before;
	int cfd, sfd, one = 1, zero = 0, end;
	size_t n;

	h_start(&h, FAKE_STREAM_SYNC, &base_opts, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	/* The handshake is over on both ends and the client sent nothing: nothing else is on
	 * its way to the client. */
	usleep(20 * 1000);
	before = segs_in(cfd);
	assert_int_equal(setsockopt(sfd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)), 0);
	assert_int_equal(send(sfd, "hello", 5, 0), 5);
	if (reset) {
		/* The bytes go out first (uncorked), then the RST: the client must still get
		 * the bytes before the reset. */
		assert_int_equal(setsockopt(sfd, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero)), 0);
		h_reset_close(sfd);
	} else {
		assert_int_equal(shutdown(sfd, SHUT_WR), 0);
	}
	n = h_read_until_end(cfd, buf, sizeof(buf), 3000, &end);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++)
		buf[i] ^= XOR_KEY;
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(end, reset ? -ECONNRESET : 0);
	if (want_segs)
		assert_int_equal(segs_in(cfd) - before, want_segs);
	close(cfd);
	if (!reset)
		close(sfd);
	assert_true(h_wait(h_idle, &h, 2000));
	assert_int_equal(H_STAT(&h, resets), reset ? 1 : 0);
	h_stop(&h);
}

static void test_stream_data_and_fin_one_segment(void **state)
{
	server_answer_then(false, 1);
}

static void test_stream_data_then_reset(void **state)
{
	server_answer_then(true, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_1mb_each_way),
		cmocka_unit_test(test_fd_async_small_pipe),
		cmocka_unit_test(test_stream_1mb_xor_eagain),
		cmocka_unit_test(test_stream_sync_small_buffer),
		cmocka_unit_test(test_half_close_client_first_fd),
		cmocka_unit_test(test_half_close_server_first_fd),
		cmocka_unit_test(test_half_close_client_first_stream),
		cmocka_unit_test(test_half_close_server_first_stream),
		cmocka_unit_test(test_rst_client_to_server_fd),
		cmocka_unit_test(test_rst_server_to_client_fd),
		cmocka_unit_test(test_rst_client_to_server_stream),
		cmocka_unit_test(test_rst_server_to_client_stream),
		cmocka_unit_test(test_backpressure_fd),
		cmocka_unit_test(test_backpressure_stream),
		cmocka_unit_test(test_idle_timeout_fd),
		cmocka_unit_test(test_idle_timeout_stream),
		cmocka_unit_test(test_halfclose_timeout),
		cmocka_unit_test(test_stream_data_and_fin_one_segment),
		cmocka_unit_test(test_stream_data_then_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
