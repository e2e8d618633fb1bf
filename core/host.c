/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * host.c - the struct xp_host table plugins call. See host.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "xp_config.h"

#include "conn.h"
#include "dial.h"
#include "dnsq.h"
#include "host.h"
#include "log.h"
#include "loop.h"
#include "names.h"
#include "outbound.h"
#include "plug.h"
#include "udp.h"

/* The SDK's route and source numbers are the datapath's verdict and source numbers. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(XP_ROUTE_DIRECT, XP_V_DIRECT) && SAME(XP_ROUTE_BLOCK, XP_V_BLOCK) &&
		       SAME(XP_ROUTE_PROXY, XP_V_PROXY) && SAME(XP_ROUTE_INSPECT, XP_V_INSPECT) &&
		       SAME(XP_ROUTE_DNS, XP_V_DNS),
	       "xp_route must mirror xp_verdict");
_Static_assert(SAME(XP_SOURCE_FLOW, XP_SRC_FLOW) && SAME(XP_SOURCE_DSTMAP, XP_SRC_DSTMAP) &&
		       SAME(XP_SOURCE_RULE, XP_SRC_RULE) &&
		       SAME(XP_SOURCE_FALLBACK, XP_SRC_FALLBACK) &&
		       SAME(XP_SOURCE_LOCAL, XP_SRC_LOCAL) &&
		       SAME(XP_SOURCE_FAILSAFE, XP_SRC_FAILSAFE) &&
		       SAME(XP_SOURCE_NOPROXY, XP_SRC_NOPROXY) &&
		       SAME(XP_SOURCE_MIDSTREAM, XP_SRC_MIDSTREAM),
	       "xp_route_source must mirror xp_vsrc");

static struct host_env env;

void host_set_env(const struct host_env *e)
{
	env = *e;
}

/* ------------------------------------------------------------------------------ addresses */

int host_tuple_from(struct xp_tuple *t, const union xp_sockaddr *src,
		    const union xp_sockaddr *dst, uint8_t l4proto)
{
	int err;

	memset(t, 0, sizeof(*t));
	err = addr16_from(t->saddr, &t->sport, src);
	if (err)
		return err;
	err = addr16_from(t->daddr, &t->dport, dst);
	if (err)
		return err;
	/* An IPv4 flow has IPv4 on both ends; a mixed key can never be in the table. */
	if (src->sa.sa_family != dst->sa.sa_family)
		return -EAFNOSUPPORT;
	t->l4proto = l4proto;
	return 0;
}

/* ------------------------------------------------------------------------------ logging */

static void host_log(xp_handle_t *who, int level, const char *fmt, ...)
{
	va_list ap;

	if (who && who->last_error && level <= XP_LOG_ERROR) {
		va_start(ap, fmt);
		vsnprintf(who->last_error, who->last_error_len, fmt, ap);
		va_end(ap);
	}
	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vmsg(level, who ? who->name : "plugin", fmt, ap);
	va_end(ap);
}

static int host_log_enabled(xp_handle_t *who, int level)
{
	return log_enabled(level);
}

/* ------------------------------------------------------------------------------ loops */

static xp_loop_t *host_loop_main(void)
{
	return loop_main();
}

static xp_loop_t *host_loop_current(void)
{
	return loop_current();
}

static uint64_t host_now_ms(xp_loop_t *l)
{
	return loop_now_ms(l);
}

static int host_loop_post(xp_loop_t *l, void (*fn)(void *arg), void *arg)
{
	if (!l || !fn)
		return -EINVAL;
	return loop_post(l, fn, arg);
}

/* ------------------------------------------------------------------------------ sockets */

static int host_upstream_socket(xp_handle_t *who, int domain, int type, int protocol)
{
	uint32_t mark = env.mark;
	int fd, err;

	if (domain != AF_INET && domain != AF_INET6)
		return -EAFNOSUPPORT;
	/* Worker and main threads never stay in the private netns (listeners are made there from
	 * the main thread and it switches straight back), so this socket is in the host netns. */
	fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
	if (fd < 0)
		return -errno;
	if (mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* ------------------------------------------------------------------------------ flows */

static uint64_t host_clock_ns(void)
{
	return env.now_ns ? env.now_ns() : 0;
}

static int host_flow_lookup(const struct xp_flow_key *key, struct xp_flow_info *out)
{
	struct xp_flow_key k = { 0 };
	struct xp_flow_info info = { 0 };
	struct xp_tuple t;
	struct xp_flow f;
	uint64_t now;
	size_t n;
	int err;

	if (!key || !out || !env.flow_lookup)
		return -EINVAL;
	if (out->size < offsetof(struct xp_flow_info, rule_id))
		return -EINVAL; /* the caller must set out->size = sizeof(*out) */
	err = plug_abi_copy(&k, sizeof(k), key, key->size);
	if (err)
		return err;
	err = host_tuple_from(&t, &k.src, &k.dst, (uint8_t)k.l4proto);
	if (err)
		return err;
	err = env.flow_lookup(env.ctx, &t, &f);
	if (err)
		return err;
	now = host_clock_ns();
	info.size = sizeof(info);
	info.route = f.verdict;
	info.source = f.vsrc;
	info.from_host = f.origin == XP_ORIGIN_HOST;
	info.tcp_closed = !!(f.tcp_state & (XP_TCP_FIN_CLIENT | XP_TCP_FIN_SERVER | XP_TCP_RST));
	info.rule_id = f.rule_id;
	info.ifindex = f.ifindex;
	info.age_ms = now > f.first_ns ? (now - f.first_ns) / 1000000 : 0;
	info.idle_ms = now > f.last_ns ? (now - f.last_ns) / 1000000 : 0;
	info.outbound = f.verdict == XP_V_PROXY ? outbound_name(f.outbound_id) : NULL;
	/* The caller's struct may be older (smaller) than ours: write only what it has room for. */
	n = out->size < sizeof(info) ? out->size : sizeof(info);
	info.size = (uint32_t)n;
	memcpy(out, &info, n);
	return 0;
}

static uint8_t writer_of(xp_handle_t *who)
{
	if (who && who->plugin) {
		if (who->plugin->desc.kinds & XP_KIND_DNS)
			return XP_DSTW_DNS;
		if (who->plugin->desc.kinds & XP_KIND_SNIFFER)
			return XP_DSTW_SNIFF;
	}
	return XP_DSTW_USER;
}

static int dst_key_from(struct xp_dst_key *k, const union xp_sockaddr *dst, uint32_t l4proto)
{
	int err;

	memset(k, 0, sizeof(*k));
	err = addr16_from(k->addr, &k->port, dst);
	if (err)
		return err;
	if (l4proto > 255)
		return -EINVAL;
	k->l4proto = (uint8_t)l4proto;
	/* The datapath looks up (addr, port, proto) and (addr, 0, 0): a port needs a protocol. */
	if ((k->port != 0) != (k->l4proto != 0))
		return -EINVAL;
	return 0;
}

static int host_verdict_set(xp_handle_t *who, const struct xp_verdict_req *req)
{
	struct xp_verdict_req r = { 0 };
	struct xp_dst_verdict v = { 0 };
	struct xp_dst_key k;
	int err, id;

	if (!req || !env.dst_set)
		return -EINVAL;
	err = plug_abi_copy(&r, sizeof(r), req, req->size);
	if (err)
		return err;
	err = dst_key_from(&k, &r.dst, r.l4proto);
	if (err)
		return err;
	switch (r.route) {
	case XP_ROUTE_DIRECT:
	case XP_ROUTE_BLOCK:
	case XP_ROUTE_INSPECT:
		break;
	case XP_ROUTE_PROXY:
		if (!r.outbound)
			return -EINVAL;
		id = outbound_id_lookup(r.outbound);
		if (id < 0)
			return -ENOENT;
		v.outbound_id = (uint16_t)id;
		break;
	default:
		return -EINVAL;
	}
	v.verdict = (uint8_t)r.route;
	v.tag = r.tag;
	v.origin_plugin = writer_of(who);
	v.expires_ns = r.ttl_ms ? host_clock_ns() + (uint64_t)r.ttl_ms * 1000000 : 0;
	err = env.dst_set(env.ctx, &k, &v);
	if (err == -E2BIG)
		err = -ENOSPC;
	return err;
}

static int host_verdict_clear(xp_handle_t *who, const union xp_sockaddr *dst, uint32_t l4proto)
{
	struct xp_dst_key k;
	int err;

	if (!dst || !env.dst_del)
		return -EINVAL;
	err = dst_key_from(&k, dst, l4proto);
	if (err)
		return err;
	return env.dst_del(env.ctx, &k);
}

/* ------------------------------------------------------------------------------ config */

static const char *host_config_get(const char *section, const char *key)
{
	if (!section || !key || !env.config_get)
		return NULL;
	return env.config_get(env.ctx, section, key);
}

/* ------------------------------------------------------------------------------ counters */

struct xp_counter {
	struct xp_counter *next;
	atomic_uint_fast64_t value;
	char name[96];
};

static pthread_mutex_t counters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct xp_counter *counters;

static xp_counter_t *host_counter_new(xp_handle_t *who, const char *name, const char *help)
{
	struct xp_counter *c;

	if (!name || !*name)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	snprintf(c->name, sizeof(c->name), "%s.%s", who ? who->name : "plugin", name);
	atomic_init(&c->value, 0);
	pthread_mutex_lock(&counters_lock);
	c->next = counters;
	counters = c;
	pthread_mutex_unlock(&counters_lock);
	return c;
}

static void host_counter_add(xp_counter_t *c, uint64_t delta)
{
	if (c)
		atomic_fetch_add_explicit(&c->value, delta, memory_order_relaxed);
}

void host_counters_foreach(void (*fn)(const char *name, uint64_t value, void *arg), void *arg)
{
	pthread_mutex_lock(&counters_lock);
	for (struct xp_counter *c = counters; c; c = c->next)
		fn(c->name, atomic_load_explicit(&c->value, memory_order_relaxed), arg);
	pthread_mutex_unlock(&counters_lock);
}

/* Plugins may keep counter pointers until they are unloaded: call after the last unload. */
void host_counters_free(void)
{
	pthread_mutex_lock(&counters_lock);
	while (counters) {
		struct xp_counter *c = counters;

		counters = c->next;
		free(c);
	}
	pthread_mutex_unlock(&counters_lock);
}

/* ------------------------------------------------------------------------------ DNS */

static int host_route_domain(xp_handle_t *who, const char *domain, struct xp_route_result *out)
{
	return names_route_domain(domain, out);
}

static int host_dns_learn(xp_handle_t *who, const char *domain, const union xp_sockaddr *addr,
			  uint32_t ttl_ms)
{
	return names_learn(domain, addr, ttl_ms);
}

static xp_dial_t *host_dial(xp_handle_t *who, xp_loop_t *loop, const struct xp_dial_req *req)
{
	return dial_new(who, loop, req);
}

/* ------------------------------------------------------------------------------ the table */

static const struct xp_host table = {
	.size = sizeof(struct xp_host),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.version = XP_VERSION,
	.log = host_log,
	.log_enabled = host_log_enabled,
	.loop_main = host_loop_main,
	.loop_current = host_loop_current,
	.now_ms = host_now_ms,
	.loop_post = host_loop_post,
	.io_new = loop_io_new,
	.io_set = loop_io_set,
	.io_free = loop_io_free,
	.timer_new = loop_timer_new,
	.timer_set = loop_timer_set,
	.timer_stop = loop_timer_stop,
	.timer_free = loop_timer_free,
	.upstream_socket = host_upstream_socket,
	.flow_lookup = host_flow_lookup,
	.verdict_set = host_verdict_set,
	.verdict_clear = host_verdict_clear,
	.config_get = host_config_get,
	.counter_new = host_counter_new,
	.counter_add = host_counter_add,
	.conn_info = conn_info,
	.conn_loop = conn_loop,
	.conn_ready_fd = conn_ready_fd,
	.conn_ready_stream = conn_ready_stream,
	.conn_fail = conn_fail,
	.stream_wake = conn_stream_wake,
	.udp_info = udp_info,
	.udp_loop = udp_loop,
	.udp_deliver = udp_deliver,
	.udp_fail = udp_fail,
	.route_domain = host_route_domain,
	.dns_learn = host_dns_learn,
	.dns_query_info = dnsq_info,
	.dns_query_loop = dnsq_loop,
	.dns_answer = dnsq_answer,
	.dns_drop = dnsq_drop,
	.dial = host_dial,
	.dial_close = dial_close,
};

const struct xp_host *host_table(void)
{
	return &table;
}
