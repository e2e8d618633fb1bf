/* SPDX-License-Identifier: MIT */
/*
 * hello - an example xproxy outbound plugin, built out of tree against the installed SDK:
 *
 *   make                      # uses `pkg-config --cflags xproxy-plugin`
 *   make install              # copies hello.so into the plugin dir the SDK names
 *
 * It connects straight to each connection's original destination, like the built-in "direct"
 * outbound, and logs a greeting for every Nth connection. docs/plugin-guide.md walks through
 * this file. Use it in xproxyd's config as:
 *
 *   [outbound.hi]
 *   plugin = hello
 *   greeting = hi there
 *   log_every = 10
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xproxy/plugin.h>

/*
 * 1. Options. The core fills this struct from the [outbound.NAME] section, as the table below
 * describes: the plugin never parses text. Strings are owned by the core and stay valid until
 * instance_free.
 */
struct hello_cfg {
	const char *greeting;
	int64_t log_every;
	uint64_t connect_timeout_ms;
	int show_client;
};

static const struct xp_option hello_options[] = {
	XP_OPT(struct hello_cfg, greeting, "greeting", XP_OPT_STRING, "hello", 0,
	       "what to say in the log for each connection"),
	XP_OPT_RANGE(struct hello_cfg, log_every, "log_every", XP_OPT_INT, "1", 0, 1, 1000000,
		     "log one connection in this many"),
	XP_OPT_RANGE(struct hello_cfg, connect_timeout_ms, "connect_timeout", XP_OPT_DURATION,
		     "10s", 0, 100, 300000, "give up connecting after this long"),
	XP_OPT(struct hello_cfg, show_client, "show_client", XP_OPT_BOOL, "yes", 0,
	       "include the client's address in the log line"),
	XP_OPTION_END,
};

/*
 * 2. The instance: one per [outbound.NAME] section, shared by every worker thread. Anything
 * that changes after instance_new must be atomic (or locked).
 */
struct hello {
	const struct xp_host *host;
	xp_handle_t *self;
	const struct hello_cfg *cfg;
	atomic_uint_fast64_t seen;
	xp_counter_t *connects;
	xp_counter_t *failures;
};

/* 3. Per-connection state: one connect in progress, owned by the connection's worker loop. */
struct attempt {
	struct hello *h;
	xp_conn_t *conn;
	int fd;
	xp_io_t *io;
	xp_timer_t *timer;
};

static const char *addr_str(const union xp_sockaddr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (a->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->in.sin_port));
	} else {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	}
	return buf;
}

/* Exactly one result per tcp_connect: this is the only place that reports one. */
static void attempt_finish(struct attempt *a, int err, const char *reason)
{
	const struct xp_host *host = a->h->host;
	struct hello *h = a->h;
	xp_conn_t *conn = a->conn;
	int fd = a->fd;

	host->io_free(a->io);
	host->timer_free(a->timer);
	free(a); /* before reporting: the core may close the connection right away */
	if (err) {
		close(fd);
		host->counter_add(h->failures, 1);
		host->conn_fail(conn, err, reason);
		return;
	}
	host->counter_add(h->connects, 1);
	host->conn_ready_fd(conn, fd); /* the core owns fd now and relays it with splice() */
}

static void attempt_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	socklen_t len = sizeof(int);
	struct sockaddr_storage peer;
	int soerr = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	len = sizeof(peer);
	if (!soerr && getpeername(fd, (struct sockaddr *)&peer, &len) < 0 && errno == ENOTCONN)
		return; /* woken without a result yet: keep waiting */
	attempt_finish(arg, -soerr, soerr ? "connect failed" : NULL);
}

static void attempt_timer_cb(xp_timer_t *timer, void *arg)
{
	attempt_finish(arg, -ETIMEDOUT, "connect timed out");
}

static void say_hello(struct hello *h, xp_conn_t *conn, const struct xp_target *target)
{
	const struct xp_conn_info *info = h->host->conn_info(conn);
	uint64_t n = atomic_fetch_add(&h->seen, 1) + 1;
	char from[64], to[64];

	/* log_enabled first: formatting addresses for a line nobody reads is wasted work */
	if (n % (uint64_t)h->cfg->log_every || !h->host->log_enabled(h->self, XP_LOG_INFO))
		return;
	h->host->log(h->self, XP_LOG_INFO, "%s! connection #%llu%s%s to %s%s%s%s", h->cfg->greeting,
		     (unsigned long long)n, h->cfg->show_client ? " from " : "",
		     h->cfg->show_client ? addr_str(&info->client, from, sizeof(from)) : "",
		     addr_str(&target->addr, to, sizeof(to)), target->domain ? " (" : "",
		     target->domain ? target->domain : "", target->domain ? ")" : "");
}

/* 4. The outbound operations, called on the worker loop that owns `conn`. */
static int hello_tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *target,
			     void **cctx)
{
	struct hello *h = inst;
	const struct xp_host *host = h->host;
	xp_loop_t *loop = host->conn_loop(conn);
	int family = target->addr.sa.sa_family;
	struct attempt *a;
	int fd, rc;

	*cctx = NULL;
	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT; /* failed at once: no callback follows */
	say_hello(h, conn, target);

	/* upstream_socket sets the xproxy mark, so the datapath does not catch us again */
	fd = host->upstream_socket(h->self, family, SOCK_STREAM, 0);
	if (fd < 0)
		return fd;
	a = calloc(1, sizeof(*a));
	if (!a) {
		rc = -ENOMEM;
		goto err_fd;
	}
	a->h = h;
	a->conn = conn;
	a->fd = fd;
	a->io = host->io_new(loop, fd, attempt_io_cb, a);
	a->timer = host->timer_new(loop, attempt_timer_cb, a);
	if (!a->io || !a->timer) {
		rc = -ENOMEM;
		goto err_watchers;
	}

	/* never block the loop: the socket is non-blocking, the result comes as "writable" */
	if (connect(fd, &target->addr.sa,
		    family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) &&
	    errno != EINPROGRESS) {
		attempt_finish(a, -errno, "connect failed");
		return 0;
	}
	host->io_set(a->io, XP_IO_WRITE);
	host->timer_set(a->timer, h->cfg->connect_timeout_ms, 0);
	*cctx = a;
	return 0;

err_watchers:
	if (a->io)
		host->io_free(a->io);
	if (a->timer)
		host->timer_free(a->timer);
	free(a);
err_fd:
	close(fd);
	return rc;
}

/* The core gave up first (its own timeout, or the client left): clean up, never call back. */
static void hello_tcp_abort(void *inst, void *cctx)
{
	struct attempt *a = cctx;
	const struct xp_host *host;

	if (!a)
		return;
	host = a->h->host;
	host->io_free(a->io);
	host->timer_free(a->timer);
	close(a->fd);
	free(a);
}

/* 5. Instances, on the main thread. */
static int hello_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			      const void *config, void **inst)
{
	struct hello *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->host = host;
	h->self = self;
	h->cfg = config;
	atomic_init(&h->seen, 0);
	h->connects = host->counter_new(self, "connects", "connections established");
	h->failures = host->counter_new(self, "failures", "connections that failed");
	if (!h->connects || !h->failures) {
		free(h);
		return -ENOMEM;
	}
	*inst = h;
	return 0;
}

static void hello_instance_free(void *inst)
{
	free(inst);
}

/* 6. The descriptor: what the plugin is and what it provides. */
static const struct xp_outbound_ops hello_ops = {
	.size = sizeof(struct xp_outbound_ops),
	.caps = XP_OUTBOUND_TCP,
	.tcp_connect = hello_tcp_connect,
	.tcp_abort = hello_tcp_abort,
};

static const struct xp_plugin_desc hello_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "hello",
	.version = "1.0",
	.summary = "example: connect directly and greet every connection in the log",
	.kinds = XP_KIND_OUTBOUND,
	.option_size = sizeof(struct xp_option),
	.options = hello_options,
	.config_size = sizeof(struct hello_cfg),
	.instance_new = hello_instance_new,
	.instance_free = hello_instance_free,
	.outbound = &hello_ops,
};

/* 7. The one exported symbol. Everything else is hidden (-fvisibility=hidden). */
XP_PLUGIN_EXPORT const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi);

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	return &hello_desc;
}
