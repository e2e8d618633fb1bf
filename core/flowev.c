/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * flowev - XP_EVENT_FLOW_NAMED from the workers to the plugins on the main thread. See flowev.h.
 */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flowev.h"
#include "log.h"
#include "loop.h"

static void (*sink_fn)(const struct xp_event *ev);
static atomic_bool wanted;

void flowev_set_sink(void (*sink)(const struct xp_event *ev))
{
	sink_fn = sink;
}

void flowev_set_wanted(bool on)
{
	atomic_store(&wanted, on);
}

bool flowev_wanted(void)
{
	return atomic_load(&wanted);
}

void flowev_fill(struct xp_event *ev, const struct xp_conn_info *info, uint64_t ts_ms)
{
	memset(ev, 0, sizeof(*ev));
	ev->size = sizeof(*ev);
	ev->type = XP_EVENT_FLOW_NAMED;
	ev->ts_ms = ts_ms;
	ev->l4proto = info->l4proto;
	ev->src = info->client;
	ev->dst = info->dst;
	ev->route = info->route;
	ev->source = info->source;
	ev->from_host = info->from_host;
	ev->rule_id = info->rule_id;
	ev->outbound = info->route == XP_ROUTE_PROXY ? info->outbound : NULL;
	ev->domain = info->domain && info->domain[0] ? info->domain : NULL;
	ev->sniffer = ev->domain ? info->sniffer : NULL;
}

/* The posted copy: the event plus its strings. */
struct named_rec {
	struct xp_event ev;
	char outbound[64];
	char domain[256];
	char sniffer[32];
};

static void deliver_cb(void *arg)
{
	struct named_rec *r = arg;

	if (sink_fn)
		sink_fn(&r->ev);
	free(r);
}

static const char *copy_str(char *dst, size_t len, const char *s)
{
	if (!s)
		return NULL;
	snprintf(dst, len, "%s", s);
	return dst;
}

static const char *route_name(unsigned r)
{
	static const char *const n[] = {"NONE", "DIRECT", "BLOCK", "PROXY", "INSPECT", "DNS"};

	return r < sizeof(n) / sizeof(n[0]) ? n[r] : "?";
}

static const char *addr_fmt(const union xp_sockaddr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (a->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->in.sin_port));
	} else if (a->sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
	return buf;
}

void flowev_named(const char *who, const struct xp_conn_info *info)
{
	bool want = sink_fn && atomic_load(&wanted);
	struct timespec ts;
	struct named_rec *r;
	struct xp_loop *m;

	if (!want && !log_enabled(XP_LOG_DEBUG))
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	r = malloc(sizeof(*r));
	if (!r)
		return; /* an event is not worth failing the flow */
	flowev_fill(&r->ev, info, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	r->ev.outbound = copy_str(r->outbound, sizeof(r->outbound), r->ev.outbound);
	r->ev.domain = copy_str(r->domain, sizeof(r->domain), r->ev.domain);
	r->ev.sniffer = copy_str(r->sniffer, sizeof(r->sniffer), r->ev.sniffer);
	if (log_enabled(XP_LOG_DEBUG)) {
		char a[64], b[64];

		log_msg(XP_LOG_DEBUG, who,
			"flow named proto %u %s -> %s: %s%s%s (rule %u), name %s%s%s",
			r->ev.l4proto, addr_fmt(&r->ev.src, a, sizeof(a)),
			addr_fmt(&r->ev.dst, b, sizeof(b)), route_name(r->ev.route),
			r->ev.outbound ? " via " : "", r->ev.outbound ? r->ev.outbound : "",
			r->ev.rule_id, r->ev.domain ? r->ev.domain : "-",
			r->ev.sniffer ? " by " : "", r->ev.sniffer ? r->ev.sniffer : "");
	}
	m = loop_main();
	if (!want || !m) {
		free(r);
		return;
	}
	if (loop_current() == m) {
		deliver_cb(r);
		return;
	}
	if (loop_post(m, deliver_cb, r))
		free(r); /* the main loop is stopping: nobody to tell */
}
