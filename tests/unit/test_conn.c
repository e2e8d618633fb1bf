/* SPDX-License-Identifier: GPL-2.0-only */
/* conn: the state machine around the relay: routing, connect results and timeouts, limits,
 * shutdown with live connections, file descriptors on every path. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "conn_harness.h"

static const struct conn_opts base_opts = {
	.sniff_timeout_ms = 300,
	.connect_timeout_ms = 3000,
	.idle_timeout_ms = 10000,
	.halfclose_timeout_ms = 10000,
	.buffer_bytes = 65536,
	.max_connections = 100,
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void ping(int cfd, int sfd)
{
	char buf[4];

	assert_int_equal(send(cfd, "ping", 4, 0), 4);
	assert_int_equal(recv(sfd, buf, 4, MSG_WAITALL), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(send(sfd, "pong", 4, 0), 4);
	assert_int_equal(recv(cfd, buf, 4, MSG_WAITALL), 4);
	assert_memory_equal(buf, "pong", 4);
}

static void test_listener_options(void **state)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), v = -1;
	socklen_t len = sizeof(v);

	assert_true(fd >= 0);
	if (conn_listen_tcp(fd) == -EPERM) {
		fprintf(stderr, "SKIP: IP_TRANSPARENT needs CAP_NET_ADMIN (run as root)\n");
		exit(77);
	}
	assert_int_equal(getsockopt(fd, SOL_IP, IP_TRANSPARENT, &v, &len), 0);
	assert_int_equal(v, 1);
	assert_int_equal(getsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &v, &len), 0);
	assert_int_equal(v, 1);
	assert_int_equal(getsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &v, &len), 0);
	assert_int_equal(v, 0);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &len), 0);
	assert_int_equal(v, 0);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len), 0);
	assert_int_equal(v, 1);
	close(fd);
	/* A socket that cannot listen reports an error instead of half-working. */
	fd = socket(AF_INET6, SOCK_DGRAM, 0);
	assert_true(conn_listen_tcp(fd) < 0);
	close(fd);
}

/* An outbound that never answers: the client is reset after connect_timeout, tcp_abort is
 * called once, and its context is released (fd count). */
static void test_connect_timeout(void **state)
{
	struct harness h = {0};
	struct conn_opts o = base_opts;
	uint64_t t0, dt;
	int cfd;

	o.connect_timeout_ms = 200;
	h_start(&h, FAKE_NEVER, &o, 0);
	cfd = h_client(&h);
	t0 = mono_ms();
	assert_int_equal(h_wait_end(cfd, 3000), -ECONNRESET);
	dt = mono_ms() - t0;
	assert_true(dt >= 150 && dt < 2000);
	close(cfd);
	assert_true(h_wait(h_idle, &h, 1000));
	assert_int_equal(atomic_load(&h.aborts), 1);
	assert_int_equal(H_STAT(&h, connect_timeout), 1);
	assert_int_equal(H_STAT(&h, resets), 1);
	assert_int_equal(atomic_load(&h.ob.fails), 1);
	h_stop(&h);
}

static void fail_case(enum fake_mode mode, int err, int client_sees)
{
	struct harness h = {.fail_err = err};
	int cfd;

	h_start(&h, mode, &base_opts, 0);
	cfd = h_client(&h);
	assert_int_equal(h_wait_end(cfd, 3000), client_sees);
	close(cfd);
	assert_true(h_wait(h_idle, &h, 1000));
	assert_int_equal(atomic_load(&h.connects), 1);
	assert_int_equal(atomic_load(&h.aborts), 0); /* a result was given: no abort */
	assert_int_equal(H_STAT(&h, connect_failed), 1);
	assert_int_equal(H_STAT(&h, resets), client_sees == -ECONNRESET ? 1 : 0);
	h_stop(&h);
}

static void test_fail_refused_sync(void **state)
{
	fail_case(FAKE_FAIL_SYNC, -ECONNREFUSED, -ECONNRESET);
}

static void test_fail_refused_async(void **state)
{
	fail_case(FAKE_FAIL_ASYNC, -ECONNREFUSED, -ECONNRESET);
}

static void test_fail_aborted_sync_fin(void **state)
{
	fail_case(FAKE_FAIL_SYNC, -ECONNABORTED, 0);
}

static void test_fail_aborted_async_fin(void **state)
{
	fail_case(FAKE_FAIL_ASYNC, -ECONNABORTED, 0);
}

static void test_connect_returns_error(void **state)
{
	fail_case(FAKE_RETURN_ERR, -EHOSTUNREACH, -ECONNRESET);
}

/* -ECONNABORTED closes with a FIN even when the client already sent bytes we never read. */
static void test_fail_aborted_with_unread_input(void **state)
{
	struct harness h = {.fail_err = -ECONNABORTED};
	struct conn_opts o = base_opts;
	int cfd;

	o.connect_timeout_ms = 5000;
	h_start(&h, FAKE_FAIL_ASYNC, &o, 0);
	cfd = h_client(&h);
	assert_int_equal(send(cfd, "GET / HTTP/1.0\r\n\r\n", 18, 0), 18);
	assert_int_equal(h_wait_end(cfd, 3000), 0);
	close(cfd);
	assert_true(h_wait(h_idle, &h, 1000));
	assert_int_equal(H_STAT(&h, resets), 0);
	h_stop(&h);
}

/* ready_fd inside tcp_connect, then a second ready_fd (a plugin bug): the first wins, the
 * second fd is closed by the core (no leak), the connection works. */
static void test_sync_ready_and_duplicate(void **state)
{
	struct harness h = {0};
	int cfd, sfd;

	h_start(&h, FAKE_FD_TWICE, &base_opts, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	ping(cfd, sfd);
	close(cfd);
	assert_int_equal(h_wait_end(sfd, 2000), 0);
	close(sfd);
	assert_true(h_wait(h_idle, &h, 1000));
	assert_int_equal(H_STAT(&h, connect_failed), 0);
	h_stop(&h);
}

static void test_sync_ready_stream(void **state)
{
	struct harness h = {0};
	char buf[4];
	int cfd, sfd;

	h_start(&h, FAKE_STREAM_SYNC, &base_opts, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	assert_int_equal(send(cfd, "abcd", 4, 0), 4);
	assert_int_equal(recv(sfd, buf, 4, MSG_WAITALL), 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal((uint8_t)buf[i], (uint8_t)("abcd"[i] ^ XOR_KEY));
	close(sfd);
	assert_int_equal(h_wait_end(cfd, 2000), 0);
	close(cfd);
	assert_true(h_wait(h_idle, &h, 1000));
	assert_int_equal(atomic_load(&h.stream_closes), 1);
	h_stop(&h);
}

static bool two_connects(struct harness *h)
{
	return atomic_load(&h->connects) >= 2;
}

static void test_max_connections(void **state)
{
	struct harness h = {0};
	struct conn_opts o = base_opts;
	int c1, c2, c3, s1, s2, s4, c4;

	o.max_connections = 2;
	h_start(&h, FAKE_FD_SYNC, &o, 0);
	c1 = h_client(&h);
	s1 = h_accept(&h, 2000);
	c2 = h_client(&h);
	s2 = h_accept(&h, 2000);
	assert_true(s1 >= 0 && s2 >= 0);
	assert_true(h_wait(two_connects, &h, 1000));
	ping(c1, s1);
	ping(c2, s2);
	c3 = h_client(&h);
	assert_int_equal(h_wait_end(c3, 2000), -ECONNRESET);
	close(c3);
	assert_int_equal(H_STAT(&h, refused_limit), 1);
	assert_int_equal(atomic_load(&h.connects), 2);
	assert_int_equal(atomic_load(&conn_stats.active), 2);

	/* A slot freed is a slot for the next client. */
	close(c1);
	assert_int_equal(h_wait_end(s1, 2000), 0);
	close(s1);
	usleep(50000);
	c4 = h_client(&h);
	s4 = h_accept(&h, 2000);
	assert_true(s4 >= 0);
	ping(c4, s4);
	assert_int_equal(H_STAT(&h, refused_limit), 1);
	close(c4);
	close(s4);
	close(c2);
	close(s2);
	assert_true(h_wait(h_idle, &h, 2000));
	h_stop(&h);
}

static void test_route_refused(void **state)
{
	struct harness h = {.route_refuse = true};
	int cfd;

	h_start(&h, FAKE_FD_SYNC, &base_opts, 0);
	cfd = h_client(&h);
	assert_int_equal(h_wait_end(cfd, 2000), -ECONNRESET);
	close(cfd);
	h.route_refuse = false;
	h.route_err = -EHOSTUNREACH; /* a router error is a refusal too */
	cfd = h_client(&h);
	assert_int_equal(h_wait_end(cfd, 2000), -ECONNRESET);
	close(cfd);
	assert_true(h_wait(h_idle, &h, 1000));
	assert_int_equal(atomic_load(&h.routes), 2);
	assert_int_equal(atomic_load(&h.connects), 0);
	assert_int_equal(H_STAT(&h, no_route), 2);
	h_stop(&h);
}

/* Connects, sends nothing, closes: the EOF travels to the server, the server's close ends it. */
static void silent(enum fake_mode mode)
{
	struct harness h = {0};
	int cfd, sfd;

	h_start(&h, mode, &base_opts, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	close(cfd);
	assert_int_equal(h_wait_end(sfd, 2000), 0);
	close(sfd);
	assert_true(h_wait(h_idle, &h, 2000));
	assert_int_equal(H_STAT(&h, resets), 0);
	assert_int_equal(H_STAT(&h, bytes_up) + H_STAT(&h, bytes_down), 0);
	h_stop(&h);
}

static void test_silent_client_fd(void **state)
{
	silent(FAKE_FD_ASYNC);
}

static void test_silent_client_stream(void **state)
{
	silent(FAKE_STREAM);
}

static bool one_connect(struct harness *h)
{
	return atomic_load(&h->connects) >= 1;
}

/* The client closes while the outbound is still connecting: nothing leaks, the outbound is
 * aborted when the connect timeout fires. */
static void test_client_gone_while_connecting(void **state)
{
	struct harness h = {0};
	struct conn_opts o = base_opts;

	o.connect_timeout_ms = 150;
	h_start(&h, FAKE_NEVER, &o, 0);
	close(h_client(&h));
	assert_true(h_wait(one_connect, &h, 2000));
	assert_true(h_wait(h_idle, &h, 2000));
	assert_int_equal(atomic_load(&h.aborts), 1);
	h_stop(&h);
}

static bool four_connects(struct harness *h)
{
	return atomic_load(&h->connects) >= 4;
}

static bool stream_relaying(struct harness *h)
{
	return atomic_load(&h->connects) >= 3;
}

/* worker_stop with connections in every state: relaying (fd and stream) and connecting.
 * Every client is reset, the connecting one aborted, the stream closed with abort. */
static void test_worker_stop_live(void **state)
{
	struct harness h = {0};
	int c[4], s[3];

	h_start(&h, FAKE_FD_SYNC, &base_opts, 0);
	c[0] = h_client(&h);
	s[0] = h_accept(&h, 2000);
	c[1] = h_client(&h);
	s[1] = h_accept(&h, 2000);
	ping(c[0], s[0]);
	ping(c[1], s[1]);
	h.mode = FAKE_STREAM_SYNC; /* read by tcp_connect on the worker: set before connecting */
	c[2] = h_client(&h);
	s[2] = h_accept(&h, 2000);
	assert_true(h_wait(stream_relaying, &h, 1000));
	h.mode = FAKE_NEVER;
	c[3] = h_client(&h);
	assert_true(h_wait(four_connects, &h, 1000));
	assert_int_equal(atomic_load(&conn_stats.active), 4);

	worker_stop(&h.w);
	worker_join(&h.w);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(h_wait_end(c[i], 2000), -ECONNRESET);
		close(c[i]);
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(h_wait_end(s[i], 2000), -ECONNRESET);
		close(s[i]);
	}
	assert_int_equal(atomic_load(&h.aborts), 1);
	assert_int_equal(atomic_load(&h.stream_closes), 1);
	assert_int_equal(atomic_load(&h.stream_aborts), 1);
	assert_int_equal(atomic_load(&conn_stats.active), 0);
	h_stop(&h); /* a second stop after the loop ended is harmless */
}

/* New options apply to new connections only. */
static void test_set_opts(void **state)
{
	struct harness h = {0};
	struct conn_opts o = base_opts;
	uint64_t t0;
	int c1, c2;

	o.connect_timeout_ms = 5000;
	h_start(&h, FAKE_NEVER, &o, 0);
	c1 = h_client(&h);
	assert_true(h_wait(one_connect, &h, 2000)); /* accepted under the old options */
	o.connect_timeout_ms = 100;
	worker_set_opts(&h.w, &o);
	usleep(20000); /* the options travel through the worker's loop */
	t0 = mono_ms();
	c2 = h_client(&h);
	assert_int_equal(h_wait_end(c2, 2000), -ECONNRESET);
	assert_true(mono_ms() - t0 < 1000);
	/* The first one still waits under its own 5 s. */
	assert_int_equal(h_wait_end(c1, 300), -ETIMEDOUT);
	assert_int_equal(atomic_load(&h.aborts), 1);
	close(c2);
	worker_stop(&h.w);
	worker_join(&h.w);
	assert_int_equal(h_wait_end(c1, 1000), -ECONNRESET);
	close(c1);
	assert_int_equal(atomic_load(&h.aborts), 2);
	h_stop(&h);
}

/* An IPv6 client: conn_info keeps AF_INET6 (the IPv4 tests check the mapped case). */
static void test_ipv6_client(void **state)
{
	struct harness h = {.v6 = true};
	int cfd, sfd;

	h_start(&h, FAKE_FD_SYNC, &base_opts, 0);
	cfd = h_client(&h);
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	ping(cfd, sfd);
	close(cfd);
	assert_int_equal(h_wait_end(sfd, 2000), 0);
	close(sfd);
	assert_true(h_wait(h_idle, &h, 2000));
	h_stop(&h); /* checks info_bad == 0 */
}

/* Many short connections, 32 at a time: ids, the connection list, the pipe cache and the
 * counters stay consistent, and nothing leaks. */
static void test_many_short_connections(void **state)
{
	struct harness h = {0};
	enum { BATCH = 32, ROUNDS = 10 };
	int c[BATCH], s[BATCH];

	h_start(&h, FAKE_FD_SYNC, &base_opts, 0);
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < BATCH; i++) {
			c[i] = h_client(&h);
			s[i] = h_accept(&h, 2000);
			assert_true(s[i] >= 0);
		}
		for (int i = 0; i < BATCH; i++)
			ping(c[i], s[i]);
		for (int i = 0; i < BATCH; i++) {
			close(c[i]);
			assert_int_equal(h_wait_end(s[i], 2000), 0);
			close(s[i]);
		}
	}
	assert_true(h_wait(h_idle, &h, 2000));
	assert_int_equal(atomic_load(&h.connects), BATCH * ROUNDS);
	assert_int_equal(H_STAT(&h, accepted), BATCH * ROUNDS);
	assert_int_equal(H_STAT(&h, bytes_up), 4 * BATCH * ROUNDS);
	assert_int_equal(H_STAT(&h, bytes_down), 4 * BATCH * ROUNDS);
	assert_int_equal(H_STAT(&h, resets), 0);
	assert_int_equal(atomic_load(&h.ob.conns), BATCH * ROUNDS);
	h_stop(&h);
}

static bool one_accepted(struct harness *h)
{
	return H_STAT(h, accepted) >= 1;
}

static uint64_t thread_cpu_ms(pthread_t t)
{
	struct timespec ts;
	clockid_t id;

	assert_int_equal(pthread_getcpuclockid(t, &id), 0);
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Out of file descriptors: the worker pauses accepting instead of spinning on the readable
 * listener, and takes the connection once descriptors are available again. */
static void test_emfile_pauses(void **state)
{
	struct harness h = {0};
	struct rlimit old, low;
	uint64_t cpu0, cpu;
	int cfd, sfd, fill[64], n_fill = 0;

	h_start(&h, FAKE_FD_SYNC, &base_opts, 0);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)h_fd_count() + 8;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	/* Take every descriptor left but one, for the client: the worker's accept4 then gets
	 * EMFILE (filling after connecting would race with the accept). */
	while (n_fill < 64 && (fill[n_fill] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) >= 0)
		n_fill++;
	assert_true(n_fill > 0 && n_fill < 64);
	assert_int_equal(errno, EMFILE);
	close(fill[--n_fill]);
	cfd = h_client(&h);
	usleep(50000);
	cpu0 = thread_cpu_ms(h.w.loop.thread);
	usleep(400000);
	cpu = thread_cpu_ms(h.w.loop.thread) - cpu0;
	assert_true(cpu < 100); /* spinning would burn ~400 ms */
	assert_int_equal(H_STAT(&h, accepted), 0);

	while (n_fill)
		close(fill[--n_fill]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_true(h_wait(one_accepted, &h, 2000));
	sfd = h_accept(&h, 2000);
	assert_true(sfd >= 0);
	ping(cfd, sfd);
	close(cfd);
	close(sfd);
	assert_true(h_wait(h_idle, &h, 2000));
	h_stop(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listener_options),
		cmocka_unit_test(test_connect_timeout),
		cmocka_unit_test(test_fail_refused_sync),
		cmocka_unit_test(test_fail_refused_async),
		cmocka_unit_test(test_fail_aborted_sync_fin),
		cmocka_unit_test(test_fail_aborted_async_fin),
		cmocka_unit_test(test_connect_returns_error),
		cmocka_unit_test(test_fail_aborted_with_unread_input),
		cmocka_unit_test(test_sync_ready_and_duplicate),
		cmocka_unit_test(test_sync_ready_stream),
		cmocka_unit_test(test_max_connections),
		cmocka_unit_test(test_route_refused),
		cmocka_unit_test(test_silent_client_fd),
		cmocka_unit_test(test_silent_client_stream),
		cmocka_unit_test(test_client_gone_while_connecting),
		cmocka_unit_test(test_worker_stop_live),
		cmocka_unit_test(test_set_opts),
		cmocka_unit_test(test_ipv6_client),
		cmocka_unit_test(test_many_short_connections),
		cmocka_unit_test(test_emfile_pauses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
