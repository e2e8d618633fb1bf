/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_dial.c - host->dial (core/dial.c): DIRECT and the direct outbound plugin to a loopback
 * listener, refused and timed-out connects, a fake outbound that hangs or hands back a stream
 * (headless connections: results and wakes reach the dial), cancel before the result, bad
 * requests. done() must never run inside dial() itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "cfg.h"
#include "dial.h"
#include "host.h"
#include "loop.h"
#include "outbound.h"
#include "plug.h"

/* ------------------------------------------------------------------ a fake outbound */

enum fake_mode { HANG, STREAM_NOW, FAIL_LATER };

static struct {
	enum fake_mode mode;
	unsigned connects, aborts, closes, wakes;
	int close_abort;
	xp_conn_t *conn;
} fk;

static ssize_t s_send(void *s, const void *b, size_t n)
{
	return (ssize_t)n;
}

static ssize_t s_recv(void *s, void *b, size_t n)
{
	return -EAGAIN;
}

static int s_shutdown(void *s)
{
	return 0;
}

static void s_close(void *s, int abort)
{
	fk.closes++;
	fk.close_abort = abort;
}

static const struct xp_stream_ops sops = {
	.size = sizeof(sops),
	.send = s_send,
	.recv = s_recv,
	.shutdown = s_shutdown,
	.close = s_close,
};

static int fk_connect(void *inst, xp_conn_t *conn, const struct xp_target *t, void **cctx)
{
	const struct xp_host *h = host_table();

	fk.connects++;
	fk.conn = conn;
	assert_int_equal(h->conn_info(conn)->route, XP_ROUTE_PROXY);
	assert_non_null(h->conn_loop(conn));
	switch (fk.mode) {
	case STREAM_NOW:
		/* a result and a wake from inside tcp_connect: neither may re-enter the caller */
		h->conn_ready_stream(conn, &sops, &fk);
		h->stream_wake(conn, XP_WAKE_RECV);
		break;
	case HANG:
	case FAIL_LATER:
		break;
	}
	return 0;
}

static void fk_abort(void *inst, void *cctx)
{
	fk.aborts++;
}

static const struct xp_outbound_ops fk_ops = {
	.size = sizeof(fk_ops),
	.caps = XP_OUTBOUND_TCP,
	.tcp_connect = fk_connect,
	.tcp_abort = fk_abort,
};

static int fk_new(void *state, const struct xp_host *host, xp_handle_t *self, const void *config,
		  void **inst)
{
	*inst = &fk;
	return 0;
}

static void fk_free(void *inst)
{
}

/* ------------------------------------------------------------------ fixture */

static struct xp_loop loop;
static struct plug_registry reg;
static struct plugin *fake;
static struct cfg *cfg;

static struct {
	unsigned calls;
	int err, fd;
	const struct xp_stream_ops *ops;
	void *stream;
	xp_dial_t *d;
	unsigned wakes;
} res;

static bool in_dial;

static void done_cb(void *arg, xp_dial_t *d, int err, int fd, const struct xp_stream_ops *ops,
		    void *stream)
{
	assert_false(in_dial);
	assert_ptr_equal(arg, &res);
	res.calls++;
	res.err = err;
	res.fd = fd;
	res.ops = ops;
	res.stream = stream;
	res.d = d;
}

static void wake_cb(void *arg, unsigned what)
{
	res.wakes |= what;
}

static void run_until(unsigned ms, const unsigned *flag)
{
	ev_tstamp end = ev_time() + ms / 1000.0;

	while (ev_time() < end && (!flag || !*flag)) {
		ev_run(loop.ev, EVRUN_NOWAIT);
		usleep(1000);
	}
}

static xp_dial_t *dial(const char *outbound, const union xp_sockaddr *to, uint64_t timeout_ms)
{
	struct xp_dial_req r = {
		.size = sizeof(r),
		.outbound = outbound,
		.target = { .size = sizeof(r.target), .l4proto = IPPROTO_TCP, .addr = *to,
			    .domain = "example.test" },
		.timeout_ms = timeout_ms,
		.done = done_cb,
		.wake = wake_cb,
		.arg = &res,
	};
	xp_dial_t *d;

	memset(&res, 0, sizeof(res));
	res.fd = -2;
	in_dial = true;
	d = host_table()->dial(NULL, &loop, &r);
	in_dial = false;
	return d;
}

static int setup(void **state)
{
	const char *dir = getenv("XP_TEST_PLUGIN_DIR");
	static const char text[] = "[global]\nlan = eth0\n[outbound.d]\nplugin = direct\n"
				   "[outbound.hang]\nplugin = fakeob\n";
	struct host_env env = { 0 };
	char path[512], err[256], *errors = NULL;
	struct plugin *p;

	if (!dir) {
		print_error("XP_TEST_PLUGIN_DIR is not set (run through meson test)\n");
		return -1;
	}
	host_set_env(&env);
	memset(&fk, 0, sizeof(fk));
	assert_int_equal(loop_init(&loop, 1, false, "test"), 0);
	snprintf(path, sizeof(path), "%s/direct.so", dir);
	assert_int_equal(plug_load(path, &p, err, sizeof(err)), 0);
	assert_int_equal(plug_registry_add(&reg, p, err, sizeof(err)), 0);
	fake = calloc(1, sizeof(*fake));
	snprintf(fake->name, sizeof(fake->name), "fakeob");
	fake->path = strdup("fakeob");
	fake->desc.size = sizeof(fake->desc);
	fake->desc.name = fake->name;
	fake->desc.kinds = XP_KIND_OUTBOUND;
	fake->desc.instance_new = fk_new;
	fake->desc.instance_free = fk_free;
	fake->outbound = fk_ops;
	fake->options = calloc(1, sizeof(*fake->options));
	assert_int_equal(plug_registry_add(&reg, fake, err, sizeof(err)), 0);
	assert_int_equal(cfg_parse("t.ini", text, strlen(text), &cfg, &errors), 0);
	if (outbounds_apply(cfg, &reg, host_table(), &errors)) {
		print_error("%s", errors ? errors : "?");
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	outbounds_clear();
	/* the fake is not a dlopen'd plugin: plug_unload must not see it */
	assert_ptr_equal(reg.v[reg.n - 1], fake);
	reg.n--;
	free(fake->options);
	free(fake->path);
	free(fake);
	plug_registry_free(&reg);
	cfg_free(cfg);
	loop_fini(&loop);
	return 0;
}

/* A loopback listener; its address in *a. */
static int listener(union xp_sockaddr *a, int family)
{
	socklen_t len = sizeof(*a);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(a, 0, sizeof(*a));
	if (family == AF_INET) {
		a->in.sin_family = AF_INET;
		a->in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else {
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_addr = in6addr_loopback;
	}
	assert_int_equal(bind(fd, &a->sa, family == AF_INET ? sizeof(a->in) : sizeof(a->in6)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, &a->sa, &len), 0);
	return fd;
}

/* The dial's fd really reaches the listener: bytes go both ways. */
static void check_connected(int lfd, int fd)
{
	char buf[8] = "";
	int s = accept(lfd, NULL, NULL);

	assert_true(s >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
	assert_int_equal(write(s, "ping", 4), 4);
	for (int i = 0; i < 100 && read(fd, buf, 4) != 4; i++)
		usleep(1000);
	assert_string_equal(buf, "ping");
	close(s);
}

static void test_direct(void **state)
{
	union xp_sockaddr a;
	xp_dial_t *d;
	int lfd;

	for (int fam = 0; fam < 2; fam++) {
		lfd = listener(&a, fam ? AF_INET6 : AF_INET);
		d = dial(fam ? "DIRECT" : NULL, &a, 2000);
		assert_non_null(d);
		assert_int_equal(res.calls, 0);
		run_until(2000, &res.calls);
		assert_int_equal(res.calls, 1);
		assert_int_equal(res.err, 0);
		assert_true(res.fd >= 0);
		assert_null(res.ops);
		assert_ptr_equal(res.d, d);
		check_connected(lfd, res.fd);
		close(res.fd);
		host_table()->dial_close(d); /* after an fd result: only the handle */
		close(lfd);
	}
}

static void test_outbound_direct(void **state)
{
	union xp_sockaddr a;
	xp_dial_t *d;
	int lfd = listener(&a, AF_INET);

	d = dial("d", &a, 2000);
	assert_non_null(d);
	run_until(2000, &res.calls);
	assert_int_equal(res.calls, 1);
	assert_int_equal(res.err, 0);
	assert_true(res.fd >= 0);
	check_connected(lfd, res.fd);
	close(res.fd);
	dial_close(d);
	close(lfd);
}

static void test_refused(void **state)
{
	union xp_sockaddr a;
	int lfd = listener(&a, AF_INET);
	xp_dial_t *d;

	close(lfd); /* nobody listens on that port any more */
	for (int via = 0; via < 2; via++) {
		d = dial(via ? "d" : NULL, &a, 2000);
		if (!d) {
			/* refused at once: also a valid outcome, with errno and no callback */
			assert_int_equal(errno, ECONNREFUSED);
			continue;
		}
		run_until(2000, &res.calls);
		assert_int_equal(res.calls, 1);
		assert_int_equal(res.err, -ECONNREFUSED);
		assert_int_equal(res.fd, -1);
		dial_close(d);
	}
}

static void test_timeout_and_cancel(void **state)
{
	union xp_sockaddr a;
	int lfd = listener(&a, AF_INET);
	xp_dial_t *d;

	fk.mode = HANG;
	d = dial("hang", &a, 50);
	assert_non_null(d);
	assert_int_equal(fk.connects, 1);
	run_until(1000, &res.calls);
	assert_int_equal(res.calls, 1);
	assert_int_equal(res.err, -ETIMEDOUT);
	assert_int_equal(fk.aborts, 1); /* the outbound was told to forget it */
	dial_close(d);

	/* closed before any result: aborted, and done never runs */
	d = dial("hang", &a, 5000);
	assert_non_null(d);
	dial_close(d);
	assert_int_equal(fk.aborts, 2);
	run_until(50, NULL);
	assert_int_equal(res.calls, 0);
	/* a late result for the cancelled dial would be a plugin bug; the headless connection
	 * is gone with the dial, so the fake does not give one */
	close(lfd);
}

static void test_stream(void **state)
{
	union xp_sockaddr a;
	int lfd = listener(&a, AF_INET6);
	xp_dial_t *d;

	memset(&fk, 0, sizeof(fk));
	fk.mode = STREAM_NOW;
	d = dial("hang", &a, 2000);
	assert_non_null(d);
	assert_int_equal(res.calls, 0); /* given inside tcp_connect, delivered later */
	run_until(1000, &res.calls);
	assert_int_equal(res.calls, 1);
	assert_int_equal(res.err, 0);
	assert_int_equal(res.fd, -1);
	assert_ptr_equal(res.ops, &sops);
	assert_ptr_equal(res.stream, &fk);
	/* the wake from before done() is delivered right after it */
	assert_int_equal(res.wakes, XP_WAKE_RECV);
	/* later wakes go straight through */
	res.wakes = 0;
	host_table()->stream_wake(fk.conn, XP_WAKE_SEND);
	assert_int_equal(res.wakes, XP_WAKE_SEND);
	dial_close(d);
	assert_int_equal(fk.closes, 1);
	assert_int_equal(fk.close_abort, 0);
	assert_int_equal(fk.aborts, 0);
	close(lfd);
}

static void test_bad_requests(void **state)
{
	struct xp_dial_req r = { .size = sizeof(r), .done = done_cb, .arg = &res };
	union xp_sockaddr a;
	int lfd = listener(&a, AF_INET);

	assert_null(dial("nosuch", &a, 100));
	assert_int_equal(errno, ENOENT);
	r.target.addr.sa.sa_family = AF_UNIX;
	assert_null(host_table()->dial(NULL, &loop, &r));
	assert_int_equal(errno, EAFNOSUPPORT);
	r.target.addr = a;
	r.done = NULL;
	assert_null(host_table()->dial(NULL, &loop, &r));
	assert_int_equal(errno, EINVAL);
	r.done = done_cb;
	assert_null(host_table()->dial(NULL, NULL, &r));
	assert_int_equal(errno, EINVAL);
	r.size = sizeof(r) + 8; /* a newer plugin's request with a non-zero tail is refused */
	{
		uint8_t big[sizeof(r) + 8];

		memcpy(big, &r, sizeof(r));
		memset(big + sizeof(r), 0xff, 8);
		assert_null(host_table()->dial(NULL, &loop, (struct xp_dial_req *)big));
		assert_int_equal(errno, EINVAL);
	}
	dial_close(NULL);
	run_until(20, NULL);
	assert_int_equal(res.calls, 0);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_direct),
		cmocka_unit_test(test_outbound_direct),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_timeout_and_cancel),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_bad_requests),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
