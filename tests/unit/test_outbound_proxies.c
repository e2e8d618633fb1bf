/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_outbound_proxies - the socks5 and http outbound plugins themselves (dlopen'd from the
 * build tree) against a fake host and scripted servers on the loopback: the bytes a server sends
 * right behind its reply stay in the socket handed to the core; an abort in the middle of a
 * handshake leaves no watcher, timer or fd behind; a silent server ends with -ETIMEDOUT and a
 * counted timeout; a refusal is reported with the right error.
 *
 * XP_TEST_PLUGIN_DIR (set by meson) is the build tree's plugin directory. Options are written
 * into the plugin's config struct through its own option table, as the core does.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <xproxy/plugin.h>

#define MAXW 16

/* ------------------------------------------------------------------------------ fake host */

struct xp_loop {
	int unused;
};
struct xp_io {
	int fd;
	unsigned events;
	xp_io_cb cb;
	void *arg;
};
struct xp_timer {
	xp_timer_cb cb;
	void *arg;
	uint64_t due;
};
struct xp_counter {
	char name[64];
	uint64_t value;
};
struct xp_conn {
	int result; /* 0 none, 1 fd, 2 fail */
	int fd, err;
	struct xp_conn_info info;
};

static struct xp_loop loop;
static struct xp_io *ios[MAXW];
static struct xp_timer *timers[MAXW];
static struct xp_counter counters[32];
static int ncounters;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void put(void **slots, void *o)
{
	for (int i = 0; i < MAXW; i++)
		if (!slots[i]) {
			slots[i] = o;
			return;
		}
	fail_msg("too many watchers");
}

static void del(void **slots, void *o)
{
	for (int i = 0; i < MAXW; i++)
		if (slots[i] == o)
			slots[i] = NULL;
}

static int live(void **slots)
{
	int n = 0;

	for (int i = 0; i < MAXW; i++)
		n += slots[i] != NULL;
	return n;
}

static void h_log(xp_handle_t *who, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
static int h_log_enabled(xp_handle_t *who, int level)
{
	return 1;
}
static xp_loop_t *h_loop(void)
{
	return &loop;
}
static uint64_t h_now(xp_loop_t *l)
{
	return now_ms();
}
static xp_io_t *h_io_new(xp_loop_t *l, int fd, xp_io_cb cb, void *arg)
{
	struct xp_io *io = calloc(1, sizeof(*io));

	io->fd = fd, io->cb = cb, io->arg = arg;
	put((void **)ios, io);
	return io;
}
static void h_io_set(xp_io_t *io, unsigned ev)
{
	io->events = ev;
}
static void h_io_free(xp_io_t *io)
{
	del((void **)ios, io);
	free(io);
}
static xp_timer_t *h_timer_new(xp_loop_t *l, xp_timer_cb cb, void *arg)
{
	struct xp_timer *t = calloc(1, sizeof(*t));

	t->cb = cb, t->arg = arg;
	put((void **)timers, t);
	return t;
}
static void h_timer_set(xp_timer_t *t, uint64_t after, uint64_t rep)
{
	t->due = now_ms() + after;
}
static void h_timer_stop(xp_timer_t *t)
{
	t->due = 0;
}
static void h_timer_free(xp_timer_t *t)
{
	del((void **)timers, t);
	free(t);
}
static int h_upstream(xp_handle_t *who, int domain, int type, int proto)
{
	int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);

	return fd < 0 ? -errno : fd;
}
static xp_counter_t *h_counter_new(xp_handle_t *who, const char *name, const char *help)
{
	assert_true(ncounters < 32);
	snprintf(counters[ncounters].name, sizeof(counters[0].name), "%s", name);
	return &counters[ncounters++];
}
static void h_counter_add(xp_counter_t *c, uint64_t d)
{
	c->value += d;
}
static const struct xp_conn_info *h_conn_info(xp_conn_t *c)
{
	return &c->info;
}
static xp_loop_t *h_conn_loop(xp_conn_t *c)
{
	return &loop;
}
static void h_ready_fd(xp_conn_t *c, int fd)
{
	assert_int_equal(c->result, 0);
	c->result = 1, c->fd = fd;
}
static void h_ready_stream(xp_conn_t *c, const struct xp_stream_ops *ops, void *s)
{
	fail_msg("a plain tunnel must be handed over as an fd");
}
static void h_fail(xp_conn_t *c, int err, const char *why)
{
	assert_int_equal(c->result, 0);
	assert_non_null(why);
	c->result = 2, c->err = err;
}
static void h_wake(xp_conn_t *c, unsigned what)
{
}

/* UDP sessions: what the plugin delivered, and its failure */
struct xp_udp {
	int delivered, failed, err;
	union xp_sockaddr from;
	char data[64];
	size_t len;
	struct xp_conn_info info;
};

static const struct xp_conn_info *h_udp_info(xp_udp_t *u)
{
	return &u->info;
}

static xp_loop_t *h_udp_loop(xp_udp_t *u)
{
	return &loop;
}

static void h_udp_deliver(xp_udp_t *u, const union xp_sockaddr *from, const void *buf, size_t len)
{
	u->delivered++;
	u->from = *from;
	u->len = len < sizeof(u->data) ? len : sizeof(u->data);
	memcpy(u->data, buf, u->len);
}

static void h_udp_fail(xp_udp_t *u, int err, const char *why)
{
	assert_non_null(why);
	u->failed++;
	u->err = err;
}

static const struct xp_host host = {
	.size = sizeof(struct xp_host),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.version = "test",
	.log = h_log,
	.log_enabled = h_log_enabled,
	.loop_main = h_loop,
	.loop_current = h_loop,
	.now_ms = h_now,
	.io_new = h_io_new,
	.io_set = h_io_set,
	.io_free = h_io_free,
	.timer_new = h_timer_new,
	.timer_set = h_timer_set,
	.timer_stop = h_timer_stop,
	.timer_free = h_timer_free,
	.upstream_socket = h_upstream,
	.counter_new = h_counter_new,
	.counter_add = h_counter_add,
	.conn_info = h_conn_info,
	.conn_loop = h_conn_loop,
	.conn_ready_fd = h_ready_fd,
	.conn_ready_stream = h_ready_stream,
	.conn_fail = h_fail,
	.stream_wake = h_wake,
	.udp_info = h_udp_info,
	.udp_loop = h_udp_loop,
	.udp_deliver = h_udp_deliver,
	.udp_fail = h_udp_fail,
};

/* One callback per round, like the real loop runs one watcher at a time. */
static void loop_once(int wait)
{
	struct pollfd p[MAXW];
	struct xp_io *who[MAXW];
	uint64_t now = now_ms(), due = now + (uint64_t)wait;
	int n = 0;

	for (int i = 0; i < MAXW; i++)
		if (timers[i] && timers[i]->due && timers[i]->due < due)
			due = timers[i]->due;
	for (int i = 0; i < MAXW; i++) {
		if (!ios[i] || !ios[i]->events)
			continue;
		p[n].fd = ios[i]->fd;
		p[n].events = (ios[i]->events & XP_IO_READ ? POLLIN : 0) |
			      (ios[i]->events & XP_IO_WRITE ? POLLOUT : 0);
		who[n++] = ios[i];
	}
	assert_true(poll(p, (nfds_t)n, due > now ? (int)(due - now) : 0) >= 0);
	for (int i = 0; i < n; i++) {
		unsigned ev = (p[i].revents & (POLLIN | POLLHUP | POLLERR) ? XP_IO_READ : 0) |
			      (p[i].revents & (POLLOUT | POLLHUP | POLLERR) ? XP_IO_WRITE : 0);

		if (ev & who[i]->events) {
			who[i]->cb(who[i], who[i]->fd, ev & who[i]->events, who[i]->arg);
			return;
		}
	}
	now = now_ms();
	for (int i = 0; i < MAXW; i++)
		if (timers[i] && timers[i]->due && timers[i]->due <= now) {
			timers[i]->due = 0;
			timers[i]->cb(timers[i], timers[i]->arg);
			return;
		}
}

static void run(struct xp_conn *c, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (!c->result && now_ms() < end)
		loop_once((int)(end - now_ms()));
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static uint64_t counter(const char *name)
{
	for (int i = 0; i < ncounters; i++)
		if (!strcmp(counters[i].name, name))
			return counters[i].value;
	fail_msg("no counter %s", name);
	return 0;
}

/* ------------------------------------------------------------------------ plugin instances */

struct inst {
	void *dl;
	const struct xp_plugin_desc *desc;
	void *cfg, *inst;
};

/* "key=value" pairs, written through the plugin's own option table (defaults first). */
static void set_opt(const struct xp_option *o, void *cfg, const char *val)
{
	char *f = (char *)cfg + o->offset;
	char *end;

	switch (o->type) {
	case XP_OPT_STRING:
	case XP_OPT_HOSTPORT:
		*(const char **)f = val;
		break;
	case XP_OPT_BOOL:
		*(int *)f = !strcmp(val, "yes");
		break;
	case XP_OPT_DURATION:
	case XP_OPT_SIZE: {
		uint64_t v = strtoull(val, &end, 10);

		if (*end == 's')
			v *= 1000;
		else if (*end == 'k')
			v *= 1024;
		*(uint64_t *)f = v;
		break;
	}
	default:
		fail_msg("option type %d not handled by the test", o->type);
	}
}

static void inst_new(struct inst *in, const char *name, const char *const *kv)
{
	char path[512];
	xp_plugin_query_fn q;

	snprintf(path, sizeof(path), "%s/%s.so", getenv("XP_TEST_PLUGIN_DIR"), name);
	in->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(in->dl);
	q = (xp_plugin_query_fn)dlsym(in->dl, XP_PLUGIN_ENTRY_NAME);
	assert_non_null(q);
	in->desc = q(XP_PLUGIN_ABI);
	assert_non_null(in->desc);
	in->cfg = calloc(1, in->desc->config_size);
	for (const struct xp_option *o = in->desc->options; o->name; o++)
		if (o->def)
			set_opt(o, in->cfg, o->def);
	for (; kv && *kv; kv += 2) {
		const struct xp_option *o = in->desc->options;

		while (o->name && strcmp(o->name, kv[0]))
			o++;
		assert_non_null(o->name);
		set_opt(o, in->cfg, kv[1]);
	}
	ncounters = 0;
	assert_int_equal(in->desc->instance_new(NULL, &host, NULL, in->cfg, &in->inst), 0);
}

static void inst_free(struct inst *in)
{
	in->desc->instance_free(in->inst);
	free(in->cfg);
	dlclose(in->dl);
}

/* --------------------------------------------------------------------- scripted servers */

/* A step: read `expect` bytes (checked when given), then send `say`. */
struct step {
	size_t expect;
	const char *expect_bytes;
	const char *say;
	size_t say_len; /* 0: strlen(say) */
};

struct server {
	int lfd;
	char hostport[32];
	const struct step *steps;
	int nsteps;
	bool ok;	     /* every expected byte matched */
	volatile int hangup; /* set: close the held connection (the client's EOF also does) */
	pthread_t th;
};

static void *server_main(void *arg)
{
	struct server *s = arg;
	int c = accept(s->lfd, NULL, NULL);
	char buf[2048];

	s->ok = c >= 0;
	for (int i = 0; c >= 0 && i < s->nsteps; i++) {
		const struct step *st = &s->steps[i];
		size_t got = 0;

		while (got < st->expect) {
			ssize_t n = recv(c, buf + got, st->expect - got, 0);

			if (n <= 0) {
				s->ok = false;
				goto out;
			}
			got += (size_t)n;
		}
		if (st->expect_bytes && memcmp(buf, st->expect_bytes, st->expect))
			s->ok = false;
		if (st->say &&
		    send(c, st->say, st->say_len ? st->say_len : strlen(st->say), MSG_NOSIGNAL) < 0)
			s->ok = false;
	}
	/* hold the connection until the client is done with it, or the test says hang up */
	while (c >= 0 && !s->hangup) {
		struct pollfd p = {.fd = c, .events = POLLIN};

		if (poll(&p, 1, 20) > 0 && recv(c, buf, sizeof(buf), 0) <= 0)
			break;
	}
out:
	if (c >= 0)
		close(c);
	return NULL;
}

static void server_start(struct server *s, const struct step *steps, int n)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);

	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 4), 0);
	getsockname(s->lfd, (struct sockaddr *)&a, &len);
	snprintf(s->hostport, sizeof(s->hostport), "127.0.0.1:%u", ntohs(a.sin_port));
	s->steps = steps;
	s->nsteps = n;
	s->hangup = 0;
	assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_stop(struct server *s)
{
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->th, NULL);
	close(s->lfd);
}

static struct xp_target target(void)
{
	struct xp_target t = {.size = sizeof(t), .l4proto = IPPROTO_TCP};

	t.addr.in.sin_family = AF_INET;
	t.addr.in.sin_port = htons(443);
	t.addr.in.sin_addr.s_addr = htonl(0xc0000201);
	t.domain = "example.org";
	return t;
}

/* After ready_fd, the socket must still hold exactly what the server sent after its reply. */
static void check_tail(int fd, const char *want)
{
	char buf[64] = {0};
	size_t got = 0, len = strlen(want);

	for (int tries = 0; got < len && tries < 100; tries++) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

		if (n > 0)
			got += (size_t)n;
		else
			usleep(10000);
	}
	assert_string_equal(buf, want);
}

/* ------------------------------------------------------------------------------- tests */

static void test_socks5_tail_kept(void **state)
{
	static const char reply[] = "\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"
				    "SSH-2.0-banner\r\n";
	const struct step steps[] = {
		{.expect = 3, .expect_bytes = "\x05\x01\x02", .say = "\x05\x02", .say_len = 2},
		{.expect = 3 + 5 + 6,
		 .expect_bytes = "\x01\x05"
				 "alice\x06"
				 "s3cret",
		 .say = "\x01\x00",
		 .say_len = 2},
		/* CONNECT example.org:443 by name */
		{.expect = 4 + 1 + 11 + 2,
		 .expect_bytes = "\x05\x01\x00\x03\x0b"
				 "example.org\x01\xbb",
		 .say = reply,
		 .say_len = sizeof(reply) - 1},
	};
	struct server s;
	struct inst in;
	struct xp_conn c = {0};
	struct xp_target t = target();
	void *cctx;

	server_start(&s, steps, 3);
	const char *kv[] = {"server", s.hostport, "username", "alice", "password", "s3cret", NULL};
	inst_new(&in, "socks5", kv);
	assert_int_equal(in.desc->outbound->tcp_connect(in.inst, &c, &t, &cctx), 0);
	run(&c, 3000);
	assert_int_equal(c.result, 1);
	assert_int_equal(live((void **)ios) + live((void **)timers), 0);
	check_tail(c.fd, "SSH-2.0-banner\r\n");
	assert_int_equal(counter("connects"), 1);
	close(c.fd);
	server_stop(&s);
	assert_true(s.ok);
	inst_free(&in);
}

static void test_socks5_refused(void **state)
{
	const struct step steps[] = {
		{.expect = 3, .say = "\x05\x00", .say_len = 2},
		{.expect = 18, .say = "\x05\x05\x00\x01\0\0\0\0\0\0", .say_len = 10},
	};
	struct server s;
	struct inst in;
	struct xp_conn c = {0};
	struct xp_target t = target();
	void *cctx;
	int fds = count_fds();

	server_start(&s, steps, 2);
	const char *kv[] = {"server", s.hostport, NULL};
	inst_new(&in, "socks5", kv);
	assert_int_equal(in.desc->outbound->tcp_connect(in.inst, &c, &t, &cctx), 0);
	run(&c, 3000);
	assert_int_equal(c.result, 2);
	assert_int_equal(c.err, -ECONNREFUSED);
	assert_int_equal(counter("failures"), 1);
	assert_int_equal(live((void **)ios) + live((void **)timers), 0);
	server_stop(&s);
	inst_free(&in);
	assert_int_equal(count_fds(), fds);
}

static void test_socks5_timeout_and_abort(void **state)
{
	struct server s;
	struct inst in;
	struct xp_conn c = {0}, c2 = {0};
	struct xp_target t = target();
	void *cctx;
	int fds = count_fds();
	uint64_t t0;

	/* a server that accepts and says nothing */
	server_start(&s, NULL, 0);
	const char *kv[] = {"server", s.hostport, "timeout", "300", NULL};
	inst_new(&in, "socks5", kv);
	t0 = now_ms();
	assert_int_equal(in.desc->outbound->tcp_connect(in.inst, &c, &t, &cctx), 0);
	run(&c, 3000);
	assert_int_equal(c.result, 2);
	assert_int_equal(c.err, -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 290 && now_ms() - t0 < 2000);
	assert_int_equal(counter("timeouts"), 1);
	server_stop(&s);

	/* the core gives up mid-handshake: everything released, nothing reported */
	server_start(&s, NULL, 0);
	in.desc->instance_free(in.inst);
	const char *kv2[] = {"server", s.hostport, NULL};
	for (const struct xp_option *o = in.desc->options; o->name; o++)
		if (!strcmp(o->name, "server"))
			set_opt(o, in.cfg, kv2[1]);
	ncounters = 0;
	assert_int_equal(in.desc->instance_new(NULL, &host, NULL, in.cfg, &in.inst), 0);
	assert_int_equal(in.desc->outbound->tcp_connect(in.inst, &c2, &t, &cctx), 0);
	for (int i = 0; i < 5; i++)
		loop_once(20);
	assert_true(live((void **)ios) > 0);
	in.desc->outbound->tcp_abort(in.inst, cctx);
	assert_int_equal(live((void **)ios) + live((void **)timers), 0);
	assert_int_equal(c2.result, 0);
	server_stop(&s);
	inst_free(&in);
	assert_int_equal(count_fds(), fds);
}

static void test_http_tail_kept(void **state)
{
	/* the head arrives in two pieces, the second with the target's first bytes behind it */
	const struct step steps[] = {
		{.expect = 59,
		 .expect_bytes =
			 "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n",
		 .say = "HTTP/1.1 200 Connection established\r\nVia: x\r"},
		{.expect = 0, .say = "\n\r\nBANNER"},
	};
	struct server s;
	struct inst in;
	struct xp_conn c = {0};
	struct xp_target t = target();
	void *cctx;

	/* "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n" is 59 bytes */
	server_start(&s, steps, 2);
	const char *kv[] = {"server", s.hostport, NULL};
	inst_new(&in, "http", kv);
	assert_int_equal(in.desc->outbound->tcp_connect(in.inst, &c, &t, &cctx), 0);
	run(&c, 3000);
	assert_int_equal(c.result, 1);
	assert_int_equal(live((void **)ios) + live((void **)timers), 0);
	check_tail(c.fd, "BANNER");
	close(c.fd);
	server_stop(&s);
	assert_true(s.ok);
	inst_free(&in);
}

static void test_http_407(void **state)
{
	const struct step steps[] = {
		{.expect = 59 + 30,
		 .say = "HTTP/1.1 407 Proxy Authentication Required\r\n"
			"Content-Length: 3\r\n\r\nno!"},
	};
	struct server s;
	struct inst in;
	struct xp_conn c = {0};
	struct xp_target t = target();
	void *cctx;

	/* + "Proxy-Authorization: Basic YTpi\r\n" (a:b), 33 bytes: 89 of the 92 are enough */
	server_start(&s, steps, 1);
	const char *kv[] = {"server", s.hostport, "username", "a", "password", "b", NULL};
	inst_new(&in, "http", kv);
	assert_int_equal(in.desc->outbound->tcp_connect(in.inst, &c, &t, &cctx), 0);
	run(&c, 3000);
	assert_int_equal(c.result, 2);
	assert_int_equal(c.err, -EACCES);
	assert_int_equal(counter("auth_failures"), 1);
	server_stop(&s);
	inst_free(&in);
}

/* UDP ASSOCIATE: the header on the way out (held while associating, then sent), fragments and
 * garbage dropped and counted on the way in, a datagram delivered from the address in its
 * header, the session failed when the control connection closes, nothing left after
 * udp_close. */
static void test_socks5_udp(void **state)
{
	struct sockaddr_in ra = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t rl = sizeof(ra), pl;
	int fds = count_fds(), relay;
	char reply[10] = {5, 0, 0, 1, 127, 0, 0, 1, 0, 0};
	struct sockaddr_storage peer;
	uint8_t buf[128];
	struct server s;
	struct inst in;
	struct xp_udp u = {0};
	struct xp_target t = target();
	union xp_sockaddr dst = t.addr;
	void *uctx;
	ssize_t n;

	/* the relay: a UDP socket of ours, named in the server's reply */
	relay = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(relay, (struct sockaddr *)&ra, sizeof(ra)), 0);
	getsockname(relay, (struct sockaddr *)&ra, &rl);
	memcpy(reply + 8, &ra.sin_port, 2);
	const struct step steps[] = {
		{.expect = 3, .expect_bytes = "\x05\x01\x00", .say = "\x05\x00", .say_len = 2},
		{.expect = 10,
		 .expect_bytes = "\x05\x03\x00\x01\0\0\0\0\0\0",
		 .say = reply,
		 .say_len = 10},
	};
	server_start(&s, steps, 2);
	const char *kv[] = {"server", s.hostport, NULL};
	inst_new(&in, "socks5", kv);
	t.l4proto = IPPROTO_UDP;
	t.domain = NULL;
	assert_int_equal(in.desc->outbound->udp_open(in.inst, &u, &t, &uctx), 0);
	assert_int_equal(in.desc->outbound->udp_send(in.inst, uctx, &dst, NULL, "early", 5), 0);
	for (int i = 0; i < 50 && !counter("udp_sessions"); i++)
		loop_once(20);
	assert_int_equal(counter("udp_sessions"), 1);
	pl = sizeof(peer);
	n = recvfrom(relay, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &pl);
	assert_int_equal(n, 10 + 5);
	assert_memory_equal(buf,
			    "\0\0\0\x01\xc0\0\x02\x01\x01\xbb"
			    "early",
			    15);
	/* with a name, once associated */
	assert_int_equal(in.desc->outbound->udp_send(in.inst, uctx, &dst, "dns.test", "x", 1), 0);
	n = recv(relay, buf, sizeof(buf), 0);
	assert_int_equal(n, 4 + 1 + 8 + 2 + 1);
	assert_memory_equal(buf,
			    "\0\0\0\x03\x08"
			    "dns.test\x01\xbb"
			    "x",
			    16);

	/* from the relay: a fragment and garbage (dropped), then a proper datagram */
	sendto(relay,
	       "\0\0\x01\x01\xc0\0\x02\x01\x01\xbb"
	       "frag",
	       14, 0, (struct sockaddr *)&peer, pl);
	sendto(relay, "\x01\x02", 2, 0, (struct sockaddr *)&peer, pl);
	sendto(relay,
	       "\0\0\0\x01\xc6\x33\x64\x07\x00\x35"
	       "answer",
	       16, 0, (struct sockaddr *)&peer, pl);
	for (int i = 0; i < 50 && !u.delivered; i++)
		loop_once(20);
	assert_int_equal(u.delivered, 1);
	assert_int_equal(u.len, 6);
	assert_memory_equal(u.data, "answer", 6);
	assert_int_equal(u.from.sa.sa_family, AF_INET);
	assert_int_equal(ntohl(u.from.in.sin_addr.s_addr), 0xc6336407);
	assert_int_equal(ntohs(u.from.in.sin_port), 53);
	assert_int_equal(counter("udp_frag_dropped"), 1);
	assert_int_equal(counter("udp_bad"), 1);

	/* the server ends the association: the session fails, later sends are refused */
	s.hangup = 1;
	for (int i = 0; i < 100 && !u.failed; i++)
		loop_once(20);
	assert_int_equal(u.failed, 1);
	assert_int_equal(u.err, -ENOTCONN);
	assert_int_equal(in.desc->outbound->udp_send(in.inst, uctx, &dst, NULL, "late", 4),
			 -ENOTCONN);
	in.desc->outbound->udp_close(in.inst, uctx);
	assert_int_equal(live((void **)ios) + live((void **)timers), 0);
	server_stop(&s);
	assert_true(s.ok);
	inst_free(&in);
	close(relay);
	assert_int_equal(count_fds(), fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_socks5_tail_kept),
		cmocka_unit_test(test_socks5_refused),
		cmocka_unit_test(test_socks5_timeout_and_abort),
		cmocka_unit_test(test_http_tail_kept),
		cmocka_unit_test(test_http_407),
		cmocka_unit_test(test_socks5_udp),
	};

	if (!getenv("XP_TEST_PLUGIN_DIR")) {
		fprintf(stderr, "XP_TEST_PLUGIN_DIR not set\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
