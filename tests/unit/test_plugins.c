/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_plugins - the direct and block outbounds, loaded from <build>/plugins through the plugin
 * manager, against a fake host table: a poll()-driven fake loop runs the io and timer
 * callbacks, and fake connections record which of ready_fd / ready_stream / fail the plugin
 * called. Real sockets on the loopback device; no root needed.
 *
 * XP_TEST_PLUGIN_DIR (set by meson) is the build tree's plugin directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"
#include "plug.h"

static const char *plugin_dir;

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
	uint64_t due_ms; /* 0: not armed */
	uint64_t repeat_ms;
};

struct xp_counter {
	char name[160]; /* "<handle name>.<counter name>" */
	uint64_t value;
};

enum result {
	RES_NONE = 0,
	RES_FD,
	RES_STREAM,
	RES_FAIL,
};

struct xp_conn {
	struct xp_conn_info info;
	enum result result;
	int calls; /* the contract: exactly one result per tcp_connect */
	int fd;
	int err;
	char reason[128];
};

#define MAX_WATCHERS 16

static struct xp_loop the_loop;
static struct xp_io *ios[MAX_WATCHERS];
static struct xp_timer *timers[MAX_WATCHERS];
static struct xp_counter *counters[MAX_WATCHERS];
static int upstream_sockets;
static char last_log[512];

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fake_log(xp_handle_t *who, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[%s] %s\n", who ? who->name : "?", last_log);
}

static int fake_log_enabled(xp_handle_t *who, int level)
{
	return 1;
}

static xp_loop_t *fake_loop_main(void)
{
	return &the_loop;
}

static uint64_t fake_now_ms(xp_loop_t *loop)
{
	return now_ms();
}

static int slot_add(void **slots, void *obj)
{
	int i;

	for (i = 0; i < MAX_WATCHERS; i++) {
		if (!slots[i]) {
			slots[i] = obj;
			return 0;
		}
	}
	return -ENOSPC;
}

static void slot_del(void **slots, void *obj)
{
	int i;

	for (i = 0; i < MAX_WATCHERS; i++)
		if (slots[i] == obj)
			slots[i] = NULL;
}

static int slots_live(void **slots)
{
	int i, n = 0;

	for (i = 0; i < MAX_WATCHERS; i++)
		n += slots[i] != NULL;
	return n;
}

static xp_io_t *fake_io_new(xp_loop_t *loop, int fd, xp_io_cb cb, void *arg)
{
	struct xp_io *io = calloc(1, sizeof(*io));

	assert_ptr_equal(loop, &the_loop);
	if (!io)
		return NULL;
	io->fd = fd;
	io->cb = cb;
	io->arg = arg;
	if (slot_add((void **)ios, io)) {
		free(io);
		return NULL;
	}
	return io;
}

static void fake_io_set(xp_io_t *io, unsigned events)
{
	io->events = events;
}

static void fake_io_free(xp_io_t *io)
{
	slot_del((void **)ios, io);
	free(io);
}

static xp_timer_t *fake_timer_new(xp_loop_t *loop, xp_timer_cb cb, void *arg)
{
	struct xp_timer *t = calloc(1, sizeof(*t));

	assert_ptr_equal(loop, &the_loop);
	if (!t)
		return NULL;
	t->cb = cb;
	t->arg = arg;
	if (slot_add((void **)timers, t)) {
		free(t);
		return NULL;
	}
	return t;
}

static void fake_timer_set(xp_timer_t *t, uint64_t after_ms, uint64_t repeat_ms)
{
	t->due_ms = now_ms() + after_ms;
	t->repeat_ms = repeat_ms;
}

static void fake_timer_stop(xp_timer_t *t)
{
	t->due_ms = 0;
}

static void fake_timer_free(xp_timer_t *t)
{
	slot_del((void **)timers, t);
	free(t);
}

static int fake_upstream_socket(xp_handle_t *who, int domain, int type, int protocol)
{
	int fd;

	/* the real one also sets the xproxy mark, which needs CAP_NET_ADMIN: not here */
	assert_non_null(who);
	assert_int_equal(who->kind, HANDLE_INSTANCE);
	upstream_sockets++;
	fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
	return fd < 0 ? -errno : fd;
}

static xp_counter_t *fake_counter_new(xp_handle_t *who, const char *name, const char *help)
{
	struct xp_counter *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	snprintf(c->name, sizeof(c->name), "%s.%s", who->name, name);
	if (slot_add((void **)counters, c)) {
		free(c);
		return NULL;
	}
	return c;
}

static void fake_counter_add(xp_counter_t *c, uint64_t delta)
{
	c->value += delta;
}

static const struct xp_conn_info *fake_conn_info(xp_conn_t *c)
{
	return &c->info;
}

static xp_loop_t *fake_conn_loop(xp_conn_t *c)
{
	return &the_loop;
}

static void fake_conn_ready_fd(xp_conn_t *c, int fd)
{
	c->calls++;
	c->result = RES_FD;
	c->fd = fd;
}

static void fake_conn_ready_stream(xp_conn_t *c, const struct xp_stream_ops *ops, void *stream)
{
	c->calls++;
	c->result = RES_STREAM;
}

static void fake_conn_fail(xp_conn_t *c, int err, const char *reason)
{
	c->calls++;
	c->result = RES_FAIL;
	c->err = err;
	snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "");
}

static const struct xp_host host = {
	.size = sizeof(struct xp_host),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.version = "test",
	.log = fake_log,
	.log_enabled = fake_log_enabled,
	.loop_main = fake_loop_main,
	.loop_current = fake_loop_main,
	.now_ms = fake_now_ms,
	.io_new = fake_io_new,
	.io_set = fake_io_set,
	.io_free = fake_io_free,
	.timer_new = fake_timer_new,
	.timer_set = fake_timer_set,
	.timer_stop = fake_timer_stop,
	.timer_free = fake_timer_free,
	.upstream_socket = fake_upstream_socket,
	.counter_new = fake_counter_new,
	.counter_add = fake_counter_add,
	.conn_info = fake_conn_info,
	.conn_loop = fake_conn_loop,
	.conn_ready_fd = fake_conn_ready_fd,
	.conn_ready_stream = fake_conn_ready_stream,
	.conn_fail = fake_conn_fail,
};

/*
 * One round of the fake loop: poll the watched fds until the earliest timer, then run at most
 * one callback (a callback may free any watcher, so the lists are re-read every round).
 */
static void loop_once(int max_wait_ms)
{
	struct pollfd pfd[MAX_WATCHERS];
	struct xp_io *who[MAX_WATCHERS];
	uint64_t now = now_ms(), due = now + max_wait_ms;
	int i, n = 0, rc;

	for (i = 0; i < MAX_WATCHERS; i++)
		if (timers[i] && timers[i]->due_ms && timers[i]->due_ms < due)
			due = timers[i]->due_ms;
	for (i = 0; i < MAX_WATCHERS; i++) {
		if (!ios[i] || !ios[i]->events)
			continue;
		pfd[n].fd = ios[i]->fd;
		pfd[n].events = ((ios[i]->events & XP_IO_READ) ? POLLIN : 0) |
				((ios[i]->events & XP_IO_WRITE) ? POLLOUT : 0);
		who[n++] = ios[i];
	}
	rc = poll(pfd, n, due > now ? (int)(due - now) : 0);
	assert_true(rc >= 0);
	for (i = 0; i < n; i++) {
		unsigned ev = 0;

		if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
			ev |= XP_IO_READ;
		if (pfd[i].revents & (POLLOUT | POLLHUP | POLLERR))
			ev |= XP_IO_WRITE;
		ev &= who[i]->events;
		if (ev) {
			who[i]->cb(who[i], who[i]->fd, ev, who[i]->arg);
			return;
		}
	}
	now = now_ms();
	for (i = 0; i < MAX_WATCHERS; i++) {
		struct xp_timer *t = timers[i];

		if (t && t->due_ms && t->due_ms <= now) {
			t->due_ms = t->repeat_ms ? now + t->repeat_ms : 0;
			t->cb(t, t->arg);
			return;
		}
	}
}

/* Run the loop until the connection has a result or `ms` pass. */
static void run_until_result(struct xp_conn *c, int ms)
{
	uint64_t end = now_ms() + ms;

	while (c->result == RES_NONE && now_ms() < end)
		loop_once((int)(end - now_ms()));
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------------------ instances */

struct kvdef {
	const char *key, *value;
};

struct inst {
	struct plugin *p;
	void *config;
	void *inst;
	struct xp_handle handle;
};

static struct plugin *load_plugin(const char *name)
{
	char path[PATH_MAX], err[512] = "";
	struct plugin *p = NULL;
	int rc;

	snprintf(path, sizeof(path), "%s/%s.so", plugin_dir, name);
	rc = plug_load(path, &p, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	assert_int_equal(plug_init(p, &host, err, sizeof(err)), 0);
	return p;
}

static struct cfg_section *make_section(const struct kvdef *kv)
{
	struct cfg_section *s = calloc(1, sizeof(*s));
	size_t n = 0;

	assert_non_null(s);
	while (kv && kv[n].key)
		n++;
	s->name = strdup("outbound.t");
	s->line = 1;
	s->kv = calloc(n + 1, sizeof(*s->kv));
	assert_non_null(s->kv);
	for (s->n_kv = 0; s->n_kv < n; s->n_kv++) {
		s->kv[s->n_kv].key = strdup(kv[s->n_kv].key);
		s->kv[s->n_kv].value = strdup(kv[s->n_kv].value);
		s->kv[s->n_kv].line = (int)s->n_kv + 2;
	}
	return s;
}

static void free_section(struct cfg_section *s)
{
	size_t i;

	for (i = 0; i < s->n_kv; i++) {
		free(s->kv[i].key);
		free(s->kv[i].value);
	}
	free(s->kv);
	free(s->name);
	free(s);
}

/* Fill the options and create an instance; the return value is instance_new's. */
static int inst_new(struct inst *in, const char *plugin, const struct kvdef *kv)
{
	struct cfg_section *s = make_section(kv);
	char *errors = NULL;
	int rc;

	memset(in, 0, sizeof(*in));
	in->p = load_plugin(plugin);
	rc = plug_config_fill(in->p, "t.ini", s, &in->config, &errors);
	free_section(s);
	if (rc)
		print_error("%s", errors);
	assert_int_equal(rc, 0);
	in->handle.kind = HANDLE_INSTANCE;
	snprintf(in->handle.name, sizeof(in->handle.name), "outbound.t");
	in->handle.plugin = in->p;
	return in->p->desc.instance_new(in->p->state, &host, &in->handle, in->config, &in->inst);
}

static void inst_free(struct inst *in)
{
	int i;

	if (in->inst)
		in->p->desc.instance_free(in->inst);
	plug_config_free(in->p, in->config);
	plug_unload(in->p);
	for (i = 0; i < MAX_WATCHERS; i++) {
		free(counters[i]);
		counters[i] = NULL;
	}
}

static uint64_t counter(const char *name)
{
	int i;

	for (i = 0; i < MAX_WATCHERS; i++)
		if (counters[i] && !strcmp(counters[i]->name, name))
			return counters[i]->value;
	fail_msg("no counter %s", name);
	return 0;
}

static int connect_target(struct inst *in, struct xp_conn *c, const union xp_sockaddr *to,
			  void **cctx)
{
	struct xp_target t = {.size = sizeof(t), .l4proto = IPPROTO_TCP, .addr = *to};

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->info.size = sizeof(c->info);
	c->info.dst = *to;
	return in->p->outbound.tcp_connect(in->inst, c, &t, cctx);
}

static int test_setup(void **state)
{
	upstream_sockets = 0;
	return 0;
}

/* After every test: the plugin left no watcher behind. */
static int test_teardown(void **state)
{
	int live = slots_live((void **)ios) + slots_live((void **)timers);

	if (live)
		print_error("%d io/timer watchers still live\n", live);
	return live ? -1 : 0;
}

/* ------------------------------------------------------------------------------ sockets */

/* A listener on the loopback of `family` with the given backlog; its address in *addr. */
static int listener(int family, int backlog, union xp_sockaddr *addr)
{
	socklen_t len = sizeof(*addr);
	int fd;

	memset(addr, 0, sizeof(*addr));
	addr->sa.sa_family = family;
	if (family == AF_INET)
		addr->in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		addr->in6.sin6_addr = in6addr_loopback;
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (bind(fd, &addr->sa, family == AF_INET ? sizeof(addr->in) : sizeof(addr->in6))) {
		close(fd);
		return -errno;
	}
	if (backlog >= 0)
		assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, &addr->sa, &len), 0);
	return fd;
}

static bool same_addr(const union xp_sockaddr *a, const union xp_sockaddr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_port == b->in.sin_port &&
		       a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
	return a->in6.sin6_port == b->in6.sin6_port &&
	       !memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(a->in6.sin6_addr));
}

/*
 * A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
 * stays pending (retransmitting) - a deterministic "slow server" on the loopback.
 */
struct full_listener {
	int lfd;
	int fillers[4];
	union xp_sockaddr addr;
};

static void full_listener_open(struct full_listener *f)
{
	int i, n = 0;

	f->lfd = listener(AF_INET, 0, &f->addr);
	assert_true(f->lfd >= 0);
	for (i = 0; i < 4; i++) {
		struct pollfd pfd;

		f->fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(f->fillers[i] >= 0);
		if (connect(f->fillers[i], &f->addr.sa, sizeof(f->addr.in)) && errno != EINPROGRESS)
			fail_msg("filler connect: %s", strerror(errno));
		pfd.fd = f->fillers[i];
		pfd.events = POLLOUT;
		n += poll(&pfd, 1, 50) == 1;
	}
	/* at least one filler got in and at least one did not: the queue is full */
	assert_true(n >= 1 && n < 4);
}

static void full_listener_close(struct full_listener *f)
{
	int i;

	for (i = 0; i < 4; i++)
		close(f->fillers[i]);
	close(f->lfd);
}

/* ------------------------------------------------------------------------------ direct */

static void check_connected(struct xp_conn *c, int lfd, const union xp_sockaddr *to,
			    int want_nodelay)
{
	union xp_sockaddr peer;
	socklen_t len = sizeof(peer);
	int v = -1, afd;

	assert_int_equal(c->result, RES_FD);
	assert_int_equal(c->calls, 1);
	assert_true(c->fd >= 0);
	assert_int_equal(getpeername(c->fd, &peer.sa, &len), 0);
	assert_true(same_addr(&peer, to));
	len = sizeof(v);
	assert_int_equal(getsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
	assert_int_equal(!!v, want_nodelay);
	/* the server really has the connection */
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(afd >= 0);
	close(afd);
}

static void direct_connect_ok(int family)
{
	static const struct kvdef kv[] = {{"plugin", "direct"}, {.key = NULL}};
	union xp_sockaddr to;
	struct xp_conn c;
	struct inst in;
	void *cctx = NULL;
	int lfd;

	lfd = listener(family, 8, &to);
	if (lfd == -EADDRNOTAVAIL && family == AF_INET6)
		skip(); /* no ::1 on this machine */
	assert_true(lfd >= 0);
	assert_int_equal(inst_new(&in, "direct", kv), 0);

	assert_int_equal(connect_target(&in, &c, &to, &cctx), 0);
	run_until_result(&c, 2000);
	check_connected(&c, lfd, &to, 1);
	assert_int_equal(upstream_sockets, 1);
	assert_int_equal(counter("outbound.t.connects"), 1);
	assert_int_equal(counter("outbound.t.failures"), 0);
	/* the fd belongs to the core now; the plugin holds nothing else */
	assert_int_equal(slots_live((void **)ios), 0);

	close(c.fd);
	close(lfd);
	inst_free(&in);
}

static void test_direct_connect_v4(void **state)
{
	direct_connect_ok(AF_INET);
}

static void test_direct_connect_v6(void **state)
{
	direct_connect_ok(AF_INET6);
}

static void test_direct_refused(void **state)
{
	static const struct kvdef kv[] = {{.key = NULL}};
	union xp_sockaddr to;
	struct xp_conn c;
	struct inst in;
	void *cctx = NULL;
	int fd, before;

	/* bound but not listening: the port is ours and answers SYNs with a reset */
	fd = listener(AF_INET, -1, &to);
	assert_true(fd >= 0);
	assert_int_equal(inst_new(&in, "direct", kv), 0);
	before = count_fds();

	assert_int_equal(connect_target(&in, &c, &to, &cctx), 0);
	run_until_result(&c, 2000);
	assert_int_equal(c.result, RES_FAIL);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.err, -ECONNREFUSED);
	assert_string_equal(c.reason, "connect failed");
	assert_int_equal(count_fds(), before);
	assert_int_equal(counter("outbound.t.failures"), 1);
	assert_int_equal(counter("outbound.t.connects"), 0);

	close(fd);
	inst_free(&in);
}

static void test_direct_abort(void **state)
{
	static const struct kvdef kv[] = {{.key = NULL}};
	struct full_listener f;
	struct xp_conn c;
	struct inst in;
	void *cctx = NULL;
	int before;

	full_listener_open(&f);
	assert_int_equal(inst_new(&in, "direct", kv), 0);
	before = count_fds();

	assert_int_equal(connect_target(&in, &c, &f.addr, &cctx), 0);
	assert_non_null(cctx);
	run_until_result(&c, 300);
	assert_int_equal(c.result, RES_NONE);
	assert_int_equal(count_fds(), before + 1);
	assert_int_equal(slots_live((void **)ios), 1);

	in.p->outbound.tcp_abort(in.inst, cctx);
	assert_int_equal(count_fds(), before);
	assert_int_equal(slots_live((void **)ios), 0);
	/* and nothing calls back later */
	run_until_result(&c, 100);
	assert_int_equal(c.calls, 0);

	inst_free(&in);
	full_listener_close(&f);
}

static void test_direct_timeout(void **state)
{
	static const struct kvdef kv[] = {{"connect_timeout", "150ms"}, {.key = NULL}};
	struct full_listener f;
	struct xp_conn c;
	struct inst in;
	void *cctx = NULL;
	uint64_t start;
	int before;

	full_listener_open(&f);
	assert_int_equal(inst_new(&in, "direct", kv), 0);
	before = count_fds();

	start = now_ms();
	assert_int_equal(connect_target(&in, &c, &f.addr, &cctx), 0);
	assert_int_equal(slots_live((void **)timers), 1);
	run_until_result(&c, 3000);
	assert_int_equal(c.result, RES_FAIL);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.err, -ETIMEDOUT);
	assert_true(now_ms() - start >= 150);
	assert_true(now_ms() - start < 1500);
	assert_int_equal(count_fds(), before);
	assert_int_equal(slots_live((void **)timers), 0);
	assert_int_equal(counter("outbound.t.failures"), 1);

	inst_free(&in);
	full_listener_close(&f);
}

static void test_direct_options(void **state)
{
	static const struct kvdef no_delay[] = {{"tcp_nodelay", "no"}, {.key = NULL}};
	static const struct kvdef lo[] = {{"bind_interface", "lo"}, {.key = NULL}};
	static const struct kvdef nodev[] = {{"bind_interface", "xpt-nodev0"}, {.key = NULL}};
	static const struct kvdef toolong[] = {
		{"bind_interface", "a-name-longer-than-ifnamsiz"},
		{.key = NULL},
	};
	union xp_sockaddr to;
	struct xp_conn c;
	struct inst in;
	void *cctx;
	int lfd;

	lfd = listener(AF_INET, 8, &to);
	assert_true(lfd >= 0);

	assert_int_equal(inst_new(&in, "direct", no_delay), 0);
	assert_int_equal(connect_target(&in, &c, &to, &cctx), 0);
	run_until_result(&c, 2000);
	check_connected(&c, lfd, &to, 0);
	close(c.fd);
	inst_free(&in);

	/* SO_BINDTODEVICE on an unbound socket needs no privilege since Linux 5.7 */
	assert_int_equal(inst_new(&in, "direct", lo), 0);
	assert_int_equal(connect_target(&in, &c, &to, &cctx), 0);
	run_until_result(&c, 2000);
	check_connected(&c, lfd, &to, 1);
	close(c.fd);
	inst_free(&in);

	assert_int_equal(inst_new(&in, "direct", nodev), 0);
	assert_int_equal(connect_target(&in, &c, &to, &cctx), 0);
	assert_int_equal(c.result, RES_FAIL);
	assert_int_equal(c.err, -ENODEV);
	assert_string_equal(c.reason, "binding to bind_interface failed");
	inst_free(&in);

	assert_int_equal(inst_new(&in, "direct", toolong), -EINVAL);
	assert_null(in.inst);
	assert_non_null(strstr(last_log, "bind_interface \"a-name-longer-than-ifnamsiz\""));
	inst_free(&in);

	close(lfd);
}

static void test_direct_bad_family(void **state)
{
	static const struct kvdef kv[] = {{.key = NULL}};
	union xp_sockaddr to = {0};
	struct xp_conn c;
	struct inst in;
	void *cctx;

	to.sa.sa_family = AF_UNIX;
	assert_int_equal(inst_new(&in, "direct", kv), 0);
	/* failed at once: -errno and no callback */
	assert_int_equal(connect_target(&in, &c, &to, &cctx), -EAFNOSUPPORT);
	assert_int_equal(c.calls, 0);
	assert_int_equal(upstream_sockets, 0);
	inst_free(&in);
}

static void test_direct_bad_options(void **state)
{
	static const struct kvdef kv[] = {
		{"tcp_nodelay", "perhaps"},
		{"connect_timeout", "2h"},
		{"colour", "red"},
		{.key = NULL},
	};
	struct plugin *p = load_plugin("direct");
	struct cfg_section *s = make_section(kv);
	char *errors = NULL;
	void *config;

	assert_int_equal(plug_config_fill(p, "t.ini", s, &config, &errors), -EINVAL);
	assert_string_equal(
		errors, "t.ini:2: [outbound.t] tcp_nodelay: \"perhaps\" is not a boolean (yes/no, "
			"true/false, on/off, 1/0)\n"
			"t.ini:3: [outbound.t] connect_timeout: \"2h\" is out of range [0ms, "
			"3600000ms]\n"
			"t.ini:4: [outbound.t] colour: unknown option (valid: connect_timeout, "
			"bind_interface, tcp_nodelay)\n");
	free(errors);
	free_section(s);
	plug_unload(p);
}

/* ------------------------------------------------------------------------------ block */

static void block_case(const struct kvdef *kv, int want_err)
{
	union xp_sockaddr to = {0};
	struct xp_conn c;
	struct inst in;
	void *cctx = (void *)1;
	int before;

	to.in.sin_family = AF_INET;
	to.in.sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1: never contacted */
	to.in.sin_port = htons(443);
	assert_int_equal(inst_new(&in, "block", kv), 0);
	before = count_fds();

	assert_int_equal(connect_target(&in, &c, &to, &cctx), 0);
	/* decided before returning: no loop needed, nothing pending, no socket made */
	assert_int_equal(c.result, RES_FAIL);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.err, want_err);
	assert_string_equal(c.reason, "blocked by rule");
	assert_null(cctx);
	assert_int_equal(upstream_sockets, 0);
	assert_int_equal(count_fds(), before);
	assert_int_equal(counter("outbound.t.blocked"), 1);
	in.p->outbound.tcp_abort(in.inst, NULL);
	inst_free(&in);
}

static void test_block_reset(void **state)
{
	static const struct kvdef dflt[] = {{"plugin", "block"}, {.key = NULL}};
	static const struct kvdef reset[] = {{"mode", "reset"}, {.key = NULL}};

	block_case(dflt, -ECONNREFUSED);
	block_case(reset, -ECONNREFUSED);
}

static void test_block_close(void **state)
{
	static const struct kvdef kv[] = {{"mode", "close"}, {.key = NULL}};

	block_case(kv, -ECONNABORTED);
}

static void test_block_bad_mode(void **state)
{
	static const struct kvdef kv[] = {{"mode", "drop"}, {.key = NULL}};
	struct plugin *p = load_plugin("block");
	struct cfg_section *s = make_section(kv);
	char *errors = NULL;
	void *config;

	assert_int_equal(plug_config_fill(p, "t.ini", s, &config, &errors), -EINVAL);
	assert_string_equal(errors,
			    "t.ini:2: [outbound.t] mode: \"drop\" is not one of reset|close\n");
	free(errors);
	free_section(s);
	plug_unload(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_direct_connect_v4, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_direct_connect_v6, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_direct_refused, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_direct_abort, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_direct_timeout, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_direct_options, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_direct_bad_family, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_direct_bad_options, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_block_reset, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_block_close, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_block_bad_mode, test_setup, test_teardown),
	};

	plugin_dir = getenv("XP_TEST_PLUGIN_DIR");
	if (!plugin_dir) {
		fprintf(stderr, "XP_TEST_PLUGIN_DIR is not set (run through meson test)\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
