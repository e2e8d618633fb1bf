/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * eventlog.c - a test plugin that subscribes to the datapath's flow events and logs each one,
 * so the netns tests can see the ring buffer -> daemon -> plugin path end to end, and the
 * core's FLOW_NAMED (ABI 1.2: the decision after sniffing, with the name and the sniffer). It is an
 * outbound (the daemon initialises plugins that an [outbound.NAME] section names) whose
 * connections always fail.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <arpa/inet.h>

#include <xproxy/plugin.h>

static const struct xp_host *H;
static xp_handle_t *self_handle;

static int ev_init(const struct xp_host *host, xp_handle_t *self, void **state)
{
	H = host;
	self_handle = self;
	return 0;
}

static void addr(char *buf, size_t len, const union xp_sockaddr *sa)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (sa->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &sa->in.sin_addr, a, sizeof(a));
		snprintf(buf, len, "%s:%u", a, ntohs(sa->in.sin_port));
	} else {
		inet_ntop(AF_INET6, &sa->in6.sin6_addr, a, sizeof(a));
		snprintf(buf, len, "[%s]:%u", a, ntohs(sa->in6.sin6_port));
	}
}

static void ev_event(void *state, const struct xp_event *ev)
{
	char src[64], dst[64];

	addr(src, sizeof(src), &ev->src);
	addr(dst, sizeof(dst), &ev->dst);
	if (ev->type == XP_EVENT_FLOW_NAMED) {
		/* ABI 1.2: the name and the sniffer are trailing fields, present when size says */
		int has = ev->size >= offsetof(struct xp_event, sniffer) + sizeof(ev->sniffer);

		H->log(self_handle, XP_LOG_INFO,
		       "eventlog: flow-named %s -> %s route %u source %u rule %u%s%s domain %s "
		       "sniffer %s",
		       src, dst, ev->route, ev->source, ev->rule_id, ev->outbound ? " outbound " : "",
		       ev->outbound ? ev->outbound : "", has && ev->domain ? ev->domain : "-",
		       has && ev->sniffer ? ev->sniffer : "-");
		return;
	}
	H->log(self_handle, XP_LOG_INFO, "eventlog: %s %s -> %s route %u source %u rule %u%s%s",
	       ev->type == XP_EVENT_FLOW_NEW ? "flow-new" : "flow-end", src, dst, ev->route,
	       ev->source, ev->rule_id, ev->outbound ? " outbound " : "",
	       ev->outbound ? ev->outbound : "");
}

static int inst_new(void *state, const struct xp_host *host, xp_handle_t *self,
		    const void *config, void **inst)
{
	*inst = NULL;
	return 0;
}

static void inst_free(void *inst)
{
}

static int tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *t, void **cctx)
{
	return -ENETUNREACH;
}

static void tcp_abort(void *inst, void *cctx)
{
}

static const struct xp_outbound_ops ops = {
	.size = sizeof(ops),
	.caps = XP_OUTBOUND_TCP,
	.tcp_connect = tcp_connect,
	.tcp_abort = tcp_abort,
};

static const struct xp_plugin_desc desc = {
	.size = sizeof(desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "eventlog",
	.version = "1",
	.summary = "test plugin: logs every flow event",
	.kinds = XP_KIND_OUTBOUND,
	.event_mask = XP_EVENT_MASK(XP_EVENT_FLOW_NEW) | XP_EVENT_MASK(XP_EVENT_FLOW_END) |
		      XP_EVENT_MASK(XP_EVENT_FLOW_NAMED),
	.init = ev_init,
	.instance_new = inst_new,
	.instance_free = inst_free,
	.on_event = ev_event,
	.outbound = &ops,
};

const struct xp_plugin_desc *xp_plugin_query(uint32_t host_abi)
{
	return &desc;
}
