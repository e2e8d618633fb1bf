/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * daemon.c - the order of things. See daemon.h and docs/ARCHITECTURE.md ("Daemon").
 *
 * Start: lock, plugins, outbounds, datapath (netns, pair, programs: nothing attached), workers
 * and their listeners, rules, heartbeat, then attach, so traffic is steered only once every
 * piece that handles it exists. Stop: the reverse, datapath first, so clients fall back to
 * plain forwarding before the proxy goes away.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <ev.h>

#include "xp_config.h"

#include "cfg.h"
#include "conn.h"
#include "daemon.h"
#include "dial.h"
#include "dnsq.h"
#include "sniff.h"
#include "dp.h"
#include "flowev.h"
#include "groups.h"
#include "host.h"
#include "log.h"
#include "loop.h"
#include "names.h"
#include "outbound.h"
#include "plug.h"
#include "rules.h"
#include "udp.h"

#define JANITOR_MS 5000
#define LOCK_NAME "xproxyd" /* abstract unix socket "@xproxyd": one daemon per netns */

struct daemon {
	struct daemon_opts opts;
	/* The live configuration. Written by the main thread only; workers read it without a
	 * lock or a reference (route_udp, sniff_rules, config_get_cb) and never keep a pointer
	 * into it past the callback they are in, so a reload frees the old one after a grace
	 * period (loop_grace_start: every worker loop has returned to its event loop). */
	struct cfg *_Atomic cfg;
	struct cfg *applying; /* main thread: the configuration a reload is applying */
	unsigned route_delay_ms; /* test hook, see live_rules() */
	char *plugin_dir;
	struct plug_registry plugins;
	struct xp_loop main;
	bool main_ready;
	struct dp *dp;
	struct worker *workers;
	unsigned n_workers;
	unsigned n_started;
	struct conn_opts copts;
	struct udp_worker **udp; /* one per worker, NULL where it could not be made */
	struct udp_opts uopts;
	atomic_int direct_ob_id; /* an outbound of the direct plugin (INSPECT -> DIRECT), 0: none */
	int lock_fd;
	ev_io lock_io;
	ev_io events_io;
	ev_io netlink_io;
	xp_timer_t *heartbeat; /* on worker 0's loop, see start_heartbeat() */
	ev_timer janitor_timer;
	ev_signal sig_int, sig_term, sig_hup, sig_usr1;
	uint64_t events_bad;
	uint64_t map_full_logged_ns;
};

static struct daemon D = { .lock_fd = -1 };

static struct cfg *live_cfg(void)
{
	return atomic_load_explicit(&D.cfg, memory_order_acquire);
}

/* The rules of the live configuration, for one routing decision on a worker. The test hook
 * XPROXYD_TEST_ROUTE_DELAY_MS stalls the worker between reading the pointer and using it, as
 * a preempted thread would be, so tests/netns/e2e_reload_race.sh can fire reloads into that
 * window; it is read once at start and is off (0) unless set. */
static const struct rule_list *live_rules(void)
{
	const struct rule_list *rl = &live_cfg()->route;

	if (D.route_delay_ms) {
		log_info("test hook: a rule lookup stalls %u ms", D.route_delay_ms);
		usleep(D.route_delay_ms * 1000);
		log_info("test hook: the stalled rule lookup goes on");
	}
	return rl;
}

/* ------------------------------------------------------------------------------ helpers */

static void print_errors(const char *errors)
{
	if (errors && *errors)
		fputs(errors, stderr);
}

static char *resolve_plugin_dir(const struct daemon_opts *o, const struct cfg *cfg)
{
	const char *env = getenv("XPROXY_PLUGIN_DIR");
	const char *dir = cfg->global.plugin_dir;

	if (o->plugin_dir)
		return strdup(o->plugin_dir);
	if (env && *env)
		return strdup(env);
	/* Run from the build tree without installing: the compiled-in default does not exist yet,
	 * the build's plugin directory does. */
	if (!strcmp(dir, XP_PLUGIN_DIR) && access(dir, R_OK | X_OK) != 0 &&
	    access(XP_BUILD_PLUGIN_DIR, R_OK | X_OK) == 0) {
		log_info("plugin directory %s does not exist: using the build tree's %s", dir,
			 XP_BUILD_PLUGIN_DIR);
		return strdup(XP_BUILD_PLUGIN_DIR);
	}
	return strdup(dir);
}

static int load_config(const struct daemon_opts *o, struct cfg **out)
{
	char *errors = NULL;
	int err;

	if (o->config_path)
		err = cfg_load(o->config_path, out, &errors);
	else
		err = cfg_parse("<embedded>", cfg_default_text, strlen(cfg_default_text), out,
				&errors);
	if (err) {
		print_errors(errors);
		if (!errors || !*errors)
			fprintf(stderr, "%s: %s\n", o->config_path ? o->config_path : "<embedded>",
				strerror(-err));
	}
	free(errors);
	return err;
}

/* [dns] query_timeout, tcp_idle_timeout, tcp_stall_timeout: for queries and DNS-over-TCP
 * connections that start after this (start and every reload). */
static void dns_opts_apply(const struct cfg *cfg)
{
	dnsq_set_opts(&(struct dnsq_opts){ .query_timeout_ms = cfg->dns.query_timeout_ms,
					   .tcp_idle_ms = cfg->dns.tcp_idle_ms,
					   .tcp_stall_ms = cfg->dns.tcp_stall_ms });
}

static void conn_opts_from(struct conn_opts *co, const struct cfg_global *g)
{
	co->sniff_timeout_ms = g->sniff_timeout_ms;
	co->connect_timeout_ms = g->connect_timeout_ms;
	co->idle_timeout_ms = g->idle_timeout_ms;
	co->halfclose_timeout_ms = g->halfclose_timeout_ms;
	co->buffer_bytes = g->buffer_bytes;
	co->max_connections = g->max_connections;
}

static void udp_opts_from(struct udp_opts *uo, const struct cfg_global *g)
{
	memset(uo, 0, sizeof(*uo));
	uo->idle_timeout_ms = g->udp_idle_timeout_ms;
	uo->sniff_timeout_ms = g->sniff_timeout_ms;
	uo->max_sessions = g->max_udp_sessions;
	/* dns_idle_timeout_ms, max_reply_sockets: udp.c's defaults */
}

/* Flows decided DIRECT in userspace (sniffed, or at a sniff deadline) go through the core's
 * own direct instance (outbound.h: OUTBOUND_INTERNAL_DIRECT), never a user's outbound that
 * happens to use the direct plugin with options. Main thread, after every outbounds_apply(). */
static void find_direct_outbound(const struct cfg *cfg)
{
	int id = outbound_id_lookup(OUTBOUND_INTERNAL_DIRECT);
	struct outbound *ob = id > 0 ? outbound_get((uint16_t)id) : NULL;

	(void)cfg;
	if (!ob)
		log_warn("no direct plugin loaded: flows a sniffer decides DIRECT will be refused");
	outbound_put(ob);
	atomic_store(&D.direct_ob_id, ob ? id : 0);
}

static const char *verdict_name(unsigned v)
{
	static const char *const names[] = { "NONE", "DIRECT", "BLOCK", "PROXY", "INSPECT", "DNS" };

	return v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

static const char *vsrc_name(unsigned s)
{
	static const char *const names[] = { "none",	 "flow",     "dst-map",	  "rule",
					     "fallback", "local",    "fail-safe", "no-proxy",
					     "midstream" };

	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static void format_sockaddr(char *buf, size_t len, const union xp_sockaddr *sa)
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

/* ------------------------------------------------------------------------------ instance lock */

static void lock_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	int fd;

	/* Nothing is served here yet: a second instance only connects to learn our pid. */
	while ((fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(fd);
}

static int instance_lock(char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t salen = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(LOCK_NAME);
	struct ucred cred;
	socklen_t credlen = sizeof(cred);
	int fd, c;

	memcpy(sa.sun_path + 1, LOCK_NAME, strlen(LOCK_NAME));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "instance lock: socket: %s", strerror(errno));
		return -errno;
	}
	if (bind(fd, (struct sockaddr *)&sa, salen) == 0 && listen(fd, 8) == 0)
		return fd;
	if (errno != EADDRINUSE) {
		snprintf(err, errlen, "instance lock @%s: %s", LOCK_NAME, strerror(errno));
		close(fd);
		return -EIO;
	}
	close(fd);
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c >= 0 && connect(c, (struct sockaddr *)&sa, salen) == 0 &&
	    getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0)
		snprintf(err, errlen,
			 "xproxyd is already running (pid %d) in this network namespace", cred.pid);
	else
		snprintf(err, errlen,
			 "another xproxyd holds the instance lock (@%s) in this network namespace",
			 LOCK_NAME);
	if (c >= 0)
		close(c);
	return -EEXIST;
}

/* ------------------------------------------------------------------------------ routing */

/* Called on a worker thread for every accepted connection. */
static int route_connection(void *ctx, const union xp_sockaddr *client,
			    const union xp_sockaddr *dst, struct conn_route *out)
{
	struct xp_tuple t;
	struct xp_flow f;
	int err;

	memset(out, 0, sizeof(*out));
	err = host_tuple_from(&t, client, dst, IPPROTO_TCP);
	if (err) {
		out->why = "unsupported address family";
		return err;
	}
	err = dp_flow_lookup(D.dp, &t, &f);
	if (err) {
		out->why = "no flow entry for the connection";
		return err;
	}
	out->route = f.verdict;
	out->source = f.vsrc;
	out->rule_id = f.rule_id;
	out->from_host = f.origin == XP_ORIGIN_HOST;
	switch (f.verdict) {
	case XP_V_PROXY:
		out->ob = outbound_get(f.outbound_id);
		if (!out->ob)
			out->ob = groups_get(f.outbound_id, &out->via); /* a [group.NAME] member */
		if (!out->ob) {
			out->why = "its outbound no longer exists";
			return -ENOENT;
		}
		/* A verdict a DNS answer (or a sniffed name) wrote: the outbound gets the name. */
		if (f.vsrc == XP_SRC_DSTMAP)
			names_lookup(dst, IPPROTO_TCP, out->domain, sizeof(out->domain));
		return 0;
	case XP_V_INSPECT:
		/* conn.c's SNIFF state reads the first bytes; sniff.c routes by the name */
		return 0;
	case XP_V_DNS:
		/* DNS over TCP: dnsq reads the queries and writes the answers itself. */
		out->adopt = dnsq_tcp_adopt;
		return 0;
	default:
		out->why = "the flow is not a proxied one";
		return -EINVAL;
	}
}

/* Called on a worker thread for every new UDP session (udp.h). */
static int route_udp(void *ctx, const union xp_sockaddr *client, const union xp_sockaddr *dst,
		     unsigned flags, struct conn_route *out)
{
	struct rule_flow rf = { .l4proto = IPPROTO_UDP };
	const struct rule *r;
	struct xp_tuple t;
	struct xp_flow f;
	int err;

	memset(out, 0, sizeof(*out));
	err = host_tuple_from(&t, client, dst, IPPROTO_UDP);
	if (err) {
		out->why = "unsupported address family";
		return err;
	}
	err = dp_flow_lookup(D.dp, &t, &f);
	if (err) {
		out->why = "no flow entry for the datagram";
		return err;
	}
	out->source = f.vsrc;
	out->rule_id = f.rule_id;
	out->from_host = f.origin == XP_ORIGIN_HOST;
	if (!(flags & UDP_ROUTE_RULES)) {
		out->route = f.verdict;
		if (f.verdict == XP_V_PROXY) {
			out->ob = outbound_get(f.outbound_id);
			if (!out->ob)
				out->ob = groups_get(f.outbound_id, &out->via);
			if (!out->ob) {
				out->why = "its outbound no longer exists";
				return -ENOENT;
			}
		}
		/* A verdict a DNS answer (or a sniffed name) wrote: the session gets the name. */
		if (f.vsrc == XP_SRC_DSTMAP)
			names_lookup(dst, IPPROTO_UDP, out->domain, sizeof(out->domain));
		return 0;
	}
	/* INSPECT without a name: the [route] rules that do not need one. */
	memcpy(rf.saddr, t.saddr, 16);
	memcpy(rf.daddr, t.daddr, 16);
	rf.sport = t.sport; /* xp_tuple ports are in host order */
	rf.dport = t.dport;
	r = rule_list_match(live_rules(), &rf);
	out->rule_id = r->id;
	out->source = r->id ? XP_SRC_RULE : XP_SRC_FALLBACK;
	switch (r->kind) {
	case RT_BLOCK:
		out->route = XP_V_BLOCK;
		return 0;
	case RT_OUTBOUND:
		out->ob = outbound_resolve(r->target, &out->via);
		break;
	default:
		out->ob = outbound_get((uint16_t)atomic_load(&D.direct_ob_id));
		break;
	}
	if (!out->ob) {
		out->why = "no outbound for the rule";
		return -ENOENT;
	}
	out->route = XP_V_PROXY;
	return 0;
}

static int udp_netns_socket(void *ctx, int domain, int type, int protocol)
{
	return dp_netns_socket(D.dp, domain, type | SOCK_CLOEXEC, protocol);
}

/* A full-cone session's new peer: its datagrams must find the client in the reply program. */
static int udp_peer_learn(void *ctx, const union xp_sockaddr *client,
			  const union xp_sockaddr *dst, const union xp_sockaddr *peer)
{
	struct xp_tuple t, tp;
	struct xp_flow f;
	int err;

	err = host_tuple_from(&t, client, dst, IPPROTO_UDP);
	if (!err)
		err = host_tuple_from(&tp, client, peer, IPPROTO_UDP);
	if (!err)
		err = dp_flow_lookup(D.dp, &t, &f);
	if (err)
		return err;
	f.first_ns = f.last_ns = dp_now_ns();
	f.packets = 0;
	return dp_flow_update(D.dp, &tp, &f);
}

static struct outbound *udp_direct_outbound(void *ctx)
{
	return outbound_get((uint16_t)atomic_load(&D.direct_ob_id));
}

static bool udp_ob_alive(struct outbound *ob)
{
	struct outbound *live = outbound_get(ob->id);

	if (live)
		outbound_put(live);
	return live == ob;
}

static int rule_outbound_id(void *ctx, const char *name)
{
	return outbound_id(name);
}

/* [dns] strict = yes: `proto:tcp|udp & dport:53, DNS` ahead of the user's rules, so every
 * port-53 flow (LAN and the router's own) reaches the DNS plugin, whatever resolver it names.
 * Only the kernel gets it: names.c routes answers by the user's rules alone. *out shares the
 * user's rules (free only out->rules); id 0, so a FLOW_NEW names no [route] line for it. */
static int strict_dns_rules(const struct cfg *cfg, struct rule_list *out, struct rule *dns)
{
	char err[128];
	int rc;

	*out = cfg->route;
	out->index = NULL;
	if (!cfg->dns.present || !cfg->dns.strict)
		return 0;
	rc = rule_parse("proto:tcp|udp & dport:53, DNS", false, ".", dns, err, sizeof(err));
	if (rc)
		return rc;
	dns->id = 0;
	dns->line = cfg->dns.line;
	out->rules = malloc((cfg->route.n + 1) * sizeof(*out->rules));
	if (!out->rules) {
		rule_free(dns);
		return -ENOMEM;
	}
	out->rules[0] = *dns;
	if (cfg->route.n)
		memcpy(out->rules + 1, cfg->route.rules, cfg->route.n * sizeof(*out->rules));
	out->n = cfg->route.n + 1;
	return 0;
}

static int apply_rules(const struct cfg *cfg)
{
	struct rule_image img = { 0 };
	struct rule_list klist;
	struct rule dns = { 0 };
	char err[256] = "";
	int rc;

	rc = strict_dns_rules(cfg, &klist, &dns);
	if (rc) {
		log_error("%s: [dns] strict: %s", cfg->path, strerror(-rc));
		return rc;
	}
	rc = rules_compile(&klist, dp_rules_next_gen(D.dp), rule_outbound_id, NULL, &img, err,
			   sizeof(err));
	if (klist.rules != cfg->route.rules) {
		free(klist.rules);
		rule_free(&dns);
	}
	if (rc) {
		log_error("%s: [route]: %s", cfg->path, err[0] ? err : strerror(-rc));
		return rc;
	}
	rc = dp_rules_apply(D.dp, &img);
	if (rc)
		log_error("cannot load the rules into the datapath: %s", strerror(-rc));
	else
		log_info("rules: %zu kernel rules from %zu lines (%zu need a domain), fallback %s",
			 img.n_rules, cfg->route.n, img.n_skipped,
			 cfg->route.fallback.target ? cfg->route.fallback.target : "DIRECT");
	rule_image_free(&img);
	return rc;
}

/* ------------------------------------------------------------------------------ events */

static void dispatch_event(const struct xp_event *ev)
{
	for (size_t i = 0; i < D.plugins.n; i++) {
		struct plugin *p = D.plugins.v[i];

		if (p->initialized && p->desc.on_event &&
		    (p->desc.event_mask & XP_EVENT_MASK(ev->type)))
			p->desc.on_event(p->state, ev);
	}
}

/* FLOW_NEW / FLOW_END: the datapath writes them only while someone reads them, a plugin or the
 * debug log (on_datapath_event). Each record costs the datapath a ring buffer reserve and the
 * main thread a wake-up; a router without such a plugin pays that for nothing on every flow. */
static void update_flow_events(void)
{
	bool on = log_enabled(XP_LOG_DEBUG);

	for (size_t i = 0; i < D.plugins.n && !on; i++) {
		struct plugin *p = D.plugins.v[i];

		on = p->initialized && p->desc.on_event &&
		     (p->desc.event_mask &
		      (XP_EVENT_MASK(XP_EVENT_FLOW_NEW) | XP_EVENT_MASK(XP_EVENT_FLOW_END)));
	}
	dp_set_flow_events(D.dp, on);
}

/* XP_EVENT_FLOW_NAMED comes from the workers (flowev.c), only when a plugin wants it. */
static void update_named_wanted(void)
{
	bool on = false;

	for (size_t i = 0; i < D.plugins.n; i++) {
		struct plugin *p = D.plugins.v[i];

		on |= p->initialized && p->desc.on_event &&
		      (p->desc.event_mask & XP_EVENT_MASK(XP_EVENT_FLOW_NAMED));
	}
	flowev_set_wanted(on);
}

static void on_datapath_event(void *ctx, const void *data, size_t len)
{
	const struct xp_ev_hdr *h = data;
	struct xp_event ev = { .size = sizeof(ev) };
	char a[64], b[64];

	if (len < sizeof(*h) || h->version != XP_EV_VERSION || h->len > len) {
		D.events_bad++;
		return;
	}
	ev.ts_ms = h->ts_ns / 1000000;
	switch (h->type) {
	case XP_EV_FLOW_NEW:
	case XP_EV_FLOW_END: {
		const struct xp_ev_flow *f = data;

		if (h->len < sizeof(*f)) {
			D.events_bad++;
			return;
		}
		ev.type = h->type == XP_EV_FLOW_NEW ? XP_EVENT_FLOW_NEW : XP_EVENT_FLOW_END;
		ev.l4proto = f->tuple.l4proto;
		ev.ifindex = f->ifindex;
		addr16_to_sockaddr(&ev.src, f->tuple.saddr, f->tuple.sport);
		addr16_to_sockaddr(&ev.dst, f->tuple.daddr, f->tuple.dport);
		ev.route = f->verdict;
		ev.source = f->vsrc;
		ev.from_host = f->origin == XP_ORIGIN_HOST;
		ev.rule_id = f->rule_id;
		ev.tag = f->tag;
		ev.outbound = f->verdict == XP_V_PROXY ? outbound_name(f->outbound_id) : NULL;
		if (log_enabled(XP_LOG_DEBUG)) {
			format_sockaddr(a, sizeof(a), &ev.src);
			format_sockaddr(b, sizeof(b), &ev.dst);
			log_debug("flow %s proto %u %s -> %s: %s%s%s (%s, rule %u)",
				  ev.type == XP_EVENT_FLOW_NEW ? "new" : "end", ev.l4proto, a, b,
				  verdict_name(f->verdict), ev.outbound ? " via " : "",
				  ev.outbound ? ev.outbound : "", vsrc_name(f->vsrc), f->rule_id);
		}
		break;
	}
	case XP_EV_DROP: {
		const struct xp_ev_drop *d = data;

		if (h->len < sizeof(*d)) {
			D.events_bad++;
			return;
		}
		ev.type = XP_EVENT_DROP;
		ev.l4proto = d->tuple.l4proto;
		ev.ifindex = d->ifindex;
		addr16_to_sockaddr(&ev.src, d->tuple.saddr, d->tuple.sport);
		addr16_to_sockaddr(&ev.dst, d->tuple.daddr, d->tuple.dport);
		ev.drop_reason = d->reason;
		break;
	}
	case XP_EV_MAP_FULL: {
		const struct xp_ev_map_full *m = data;
		uint64_t now = dp_now_ns();

		if (h->len < sizeof(*m)) {
			D.events_bad++;
			return;
		}
		/* One line per 10 s at most: a full map produces an event per packet. */
		if (now - D.map_full_logged_ns > 10ull * 1000000000) {
			D.map_full_logged_ns = now;
			log_warn("datapath map %u is full (update returned %d): raise its size in "
				 "[global]",
				 m->map, m->err);
		}
		return;
	}
	default:
		D.events_bad++;
		return;
	}
	dispatch_event(&ev);
}

static void events_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	int n = dp_events_consume(D.dp);

	if (n < 0)
		log_warn("ring buffer: %s", strerror(-n));
}

static void netlink_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	int err = dp_netlink_process(D.dp);

	if (err)
		log_warn("address tracking: %s", strerror(-err));
}

/* ------------------------------------------------------------------------------ timers */

/* The heartbeat says "this daemon can proxy", so it ticks on a worker's loop, not the main
 * one: a long reload (a huge CIDR file parsed and loaded) may hold the main loop for seconds,
 * and must not make the datapath fail open while the workers serve connections. */
static void heartbeat_cb(xp_timer_t *t, void *arg)
{
	dp_heartbeat(D.dp);
}

static void heartbeat_start_post(void *arg)
{
	D.heartbeat = loop_timer_new(&D.workers[0].loop, heartbeat_cb, NULL);
	if (D.heartbeat)
		loop_timer_set(D.heartbeat, DP_HEARTBEAT_MS, DP_HEARTBEAT_MS);
	else
		log_error("heartbeat timer: out of memory");
}

static void heartbeat_stop_post(void *arg)
{
	loop_timer_free(D.heartbeat);
	D.heartbeat = NULL;
}

static void janitor_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	int n = dp_janitor(D.dp);

	n += (int)names_expire();
	if (n > 0)
		log_debug("janitor: %d expired entries removed", n);
}

/* ------------------------------------------------------------------------------ statistics */

static void log_counter(const char *name, uint64_t value, void *arg)
{
	log_info("stats: %s %llu", name, (unsigned long long)value);
}

#define U(x) ((unsigned long long)(x))
static void log_dns_stats(void)
{
	struct dnsq_stats *q = &dnsq_stats;
	struct names_stats n;

	log_info("stats: dns queries udp %llu tcp %llu answered %llu dropped %llu timeouts %llu "
		 "cancelled %llu no-plugin %llu query-errors %llu bad-queries %llu bad-answers %llu; "
		 "tcp conns %llu closed-bad %llu stalled %llu overflow %llu",
		 U(q->udp_queries), U(q->tcp_queries), U(q->answered), U(q->dropped),
		 U(q->timeouts), U(q->cancelled), U(q->no_plugin), U(q->query_errors),
		 U(q->bad_queries), U(q->bad_answers), U(q->tcp_conns), U(q->tcp_closed_bad),
		 U(q->tcp_stalled), U(q->tcp_overflow));
	names_stats_get(&n);
	log_info("stats: dns names learned %llu sniffed %llu sniff-skipped %llu sniff-mixed %llu "
		 "conflicts %llu partial %llu full %llu map-errors %llu expired %llu; live "
		 "addresses %llu names %llu",
		 U(n.learned), U(n.sniffed), U(n.sniff_skipped), U(n.sniff_mixed), U(n.conflicts),
		 U(n.partial),
		 U(n.full), U(n.map_errors), U(n.expired), U(n.live), U(n.names));
}
static void log_sniff_stats(void)
{
	struct sniff_stats s;

	if (!D.cfg || !D.cfg->sniff.present)
		return;
	sniff_stats_get(&s);
	log_info("stats: sniff flows %llu named %llu no-name %llu timeouts %llu unclaimed %llu "
		 "cached %llu refused %llu",
		 U(s.flows), U(s.found), U(s.none), U(s.timeouts), U(s.unclaimed), U(s.cached),
		 U(s.refused));
}
#undef U

/* Once per configuration: what domain rules can and cannot do with it. */
static void log_sniff_mode(const struct cfg *cfg)
{
	size_t n_dom = 0;

	for (size_t i = 0; i < cfg->route.n; i++)
		n_dom += cfg->route.rules[i].has_domain;
	if (cfg->sniff.deprecated_alias)
		log_warn("%s: [global] sniff_timeout is deprecated: use [sniff] timeout", cfg->path);
	if (!n_dom)
		return;
	if (cfg->route.inspect_domains)
		log_info("sniff: %zu domain rules send their flows to the sniffers (INSPECT); "
			 "timeout %llu ms, cache %s",
			 n_dom, (unsigned long long)cfg->sniff.timeout_ms,
			 cfg->sniff.cache ? "yes" : "no");
	else
		log_info("sniff: no [sniff] section: %zu domain rules only apply to flows named "
			 "by DNS ([dns]); other flows are decided by the address rules",
			 n_dom);
}

static const struct rule_list *sniff_rules(void *ctx)
{
	return live_rules();
}

static struct outbound *sniff_direct(void *ctx)
{
	return outbound_get((uint16_t)atomic_load(&D.direct_ob_id));
}

static void log_stats(void)
{
	struct xp_stats s;
	unsigned long long drops = 0;

	if (D.dp && dp_stats(D.dp, &s) == 0) {
		for (int i = 0; i < XP_DROP__MAX; i++)
			drops += s.drops[i];
		log_info("stats: flows direct %llu block %llu proxy %llu; packets direct %llu "
			 "proxy %llu; drops %llu (malformed %llu, blocked %llu); rejects %llu; "
			 "events lost %llu",
			 (unsigned long long)s.flows[XP_V_DIRECT],
			 (unsigned long long)s.flows[XP_V_BLOCK],
			 (unsigned long long)s.flows[XP_V_PROXY],
			 (unsigned long long)s.pkts[XP_V_DIRECT],
			 (unsigned long long)s.pkts[XP_V_PROXY], drops,
			 (unsigned long long)s.drops[XP_DROP_MALFORMED],
			 (unsigned long long)s.drops[XP_DROP_BLOCKED],
			 (unsigned long long)s.rejects, (unsigned long long)s.events_lost);
		log_info("stats: frags first %llu later %llu orphan %llu reassembled %llu",
			 (unsigned long long)s.frags_first, (unsigned long long)s.frags_later,
			 (unsigned long long)s.drops[XP_DROP_FRAG_ORPHAN],
			 (unsigned long long)s.hook_pkts[XP_HOOK_PROXY_LOOKUP]);
	}
	log_info("stats: connections accepted %llu active %llu refused %llu no-route %llu "
		 "connect-failed %llu connect-timeout %llu resets %llu; bytes up %llu down %llu",
		 (unsigned long long)conn_stats.accepted, (unsigned long long)conn_stats.active,
		 (unsigned long long)conn_stats.refused_limit,
		 (unsigned long long)conn_stats.no_route,
		 (unsigned long long)conn_stats.connect_failed,
		 (unsigned long long)conn_stats.connect_timeout,
		 (unsigned long long)conn_stats.resets, (unsigned long long)conn_stats.bytes_up,
		 (unsigned long long)conn_stats.bytes_down);
	log_info("stats: udp sessions %llu active %llu refused %llu no-route %llu open-failed %llu "
		 "idle-expired %llu failed %llu; datagrams up %llu down %llu; bytes up %llu down "
		 "%llu; errors send %llu reply %llu recv %llu overflow %llu; sniff dropped %llu "
		 "timeout %llu full %llu",
		 (unsigned long long)udp_stats.sessions, (unsigned long long)udp_stats.active,
		 (unsigned long long)udp_stats.refused_limit, (unsigned long long)udp_stats.no_route,
		 (unsigned long long)udp_stats.open_failed,
		 (unsigned long long)udp_stats.idle_expired, (unsigned long long)udp_stats.failed,
		 (unsigned long long)udp_stats.dgrams_up, (unsigned long long)udp_stats.dgrams_down,
		 (unsigned long long)udp_stats.bytes_up, (unsigned long long)udp_stats.bytes_down,
		 (unsigned long long)udp_stats.send_errors,
		 (unsigned long long)udp_stats.reply_errors,
		 (unsigned long long)udp_stats.recv_errors,
		 (unsigned long long)udp_stats.overflow,
		 (unsigned long long)udp_stats.sniff_dropped,
		 (unsigned long long)udp_stats.sniff_timeout,
		 (unsigned long long)udp_stats.sniff_full);
	log_dns_stats();
	log_sniff_stats();
	groups_log_stats();
	host_counters_foreach(log_counter, NULL);
}

/* ------------------------------------------------------------------------------ reload */

#define G_CHANGED(field) (memcmp(&a->field, &b->field, sizeof(a->field)) != 0)

static bool strv_equal(char **x, size_t nx, char **y, size_t ny)
{
	if (nx != ny)
		return false;
	for (size_t i = 0; i < nx; i++)
		if (strcmp(x[i], y[i]))
			return false;
	return true;
}

/* Keys that only take effect at start: say so instead of silently ignoring them. */
static void warn_restart_only(const struct cfg_global *a, const struct cfg_global *b)
{
	if (!strv_equal(a->lan, a->n_lan, b->lan, b->n_lan))
		log_warn("reload: lan changed: needs a restart (ignored)");
	if (!strv_equal(a->wan, a->n_wan, b->wan, b->n_wan))
		log_warn("reload: wan changed: needs a restart (ignored)");
	if (strcmp(a->veth, b->veth))
		log_warn("reload: veth changed: needs a restart (ignored)");
	if (strcmp(a->plugin_dir, b->plugin_dir))
		log_warn("reload: plugin_dir changed: needs a restart (ignored)");
	if (G_CHANGED(redirect) || G_CHANGED(workers) || G_CHANGED(mark) ||
	    G_CHANGED(mark_mask) || G_CHANGED(flow_entries) || G_CHANGED(dst_entries) ||
	    G_CHANGED(cidr_entries) || G_CHANGED(ringbuf_bytes) || G_CHANGED(flow_events_all))
		log_warn("reload: redirect, workers, mark, mark_mask, table sizes and flow_events "
			 "need a restart (changes ignored)");
}

/* The end of a grace period: no worker can still be reading `arg`. Runs on the last worker
 * loop to pass (or in stop_workers()); cfg_free touches nothing but the configuration. */
static void retire_cfg(void *arg)
{
	log_debug("reload: previous configuration freed (every worker has passed its loop)");
	cfg_free(arg);
}

static void reload(void)
{
	struct xp_loop *loops[XP_MAX_WORKERS];
	struct loop_grace *grace;
	struct cfg *ncfg, *old;
	char *errors = NULL;
	int err;

	log_info("reload: reading %s", D.opts.config_path ? D.opts.config_path : "<embedded>");
	if (load_config(&D.opts, &ncfg)) {
		log_error("reload: configuration has errors (above); still running the old one");
		return;
	}
	/* Allocated first: once the new configuration is applied the swap must not fail. */
	grace = loop_grace_new(D.n_started);
	if (!grace) {
		log_error("reload: out of memory; still running the old configuration");
		cfg_free(ncfg);
		return;
	}
	D.applying = ncfg;
	warn_restart_only(&D.cfg->global, &ncfg->global);
	err = outbounds_apply(ncfg, &D.plugins, host_table(), &errors);
	if (err) {
		print_errors(errors);
		free(errors);
		log_error("reload: outbounds failed (above); still running the old configuration");
		D.applying = NULL;
		loop_grace_free(grace);
		cfg_free(ncfg);
		return;
	}
	free(errors);
	errors = NULL;
	if (dnsq_apply(ncfg, &D.plugins, host_table(), false, &errors)) {
		/* The old instance (or none) keeps answering; the outbounds already changed. */
		print_errors(errors);
		log_error("reload: [dns] failed (above); DNS queries keep the previous plugin");
	}
	free(errors);
	errors = NULL;
	if (sniff_apply(ncfg, &D.plugins, host_table(), false, &errors)) {
		print_errors(errors);
		log_error("reload: [sniff] failed (above); flows keep the previous sniffers");
	}
	free(errors);
	log_sniff_mode(ncfg);
	update_named_wanted();
	if (apply_rules(ncfg)) {
		/* The outbounds already changed; the old rules stay live and still name them by
		 * stable ids, so a flow classified by an old rule still finds its outbound. */
		log_error("reload: rules not applied; the previous rules stay live");
	}
	/* Live names re-routed by the new rules (ncfg outlives them: it becomes D.cfg). */
	names_set_rules(&ncfg->route, ncfg->dns.map_size, ncfg->dns.grace_ms);
	dns_opts_apply(ncfg);
	dial_set_default_timeout(ncfg->global.connect_timeout_ms);
	dp_set_fail_closed(D.dp, ncfg->global.fail == CFG_FAIL_CLOSED);
	if (D.opts.log_level < 0)
		log_set_level(ncfg->global.log_level);
	update_flow_events();
	conn_opts_from(&D.copts, &ncfg->global);
	for (unsigned i = 0; i < D.n_started; i++)
		worker_set_opts(&D.workers[i], &D.copts);
	find_direct_outbound(ncfg);
	if (groups_apply(ncfg, &D.main))
		log_error("reload: groups not applied (out of memory); the previous ones stay");
	udp_opts_from(&D.uopts, &ncfg->global);
	for (unsigned i = 0; i < D.n_started; i++) {
		if (!D.udp[i])
			continue;
		udp_worker_set_opts(D.udp[i], &D.uopts);
		udp_worker_set_buffer(D.udp[i], ncfg->global.udp_buffer_bytes);
		/* Sessions of a changed or removed outbound end; the client's next datagram
		 * starts a session through the new one. */
		udp_worker_sweep(D.udp[i], udp_ob_alive);
	}
	/* Workers that read the old configuration may be inside a routing decision right now
	 * (or stalled in one): it is freed once each of them has returned to its loop. */
	old = D.cfg;
	atomic_store_explicit(&D.cfg, ncfg, memory_order_release);
	D.applying = NULL;
	for (unsigned i = 0; i < D.n_started; i++)
		loops[i] = &D.workers[i].loop;
	loop_grace_start(grace, loops, D.n_started, retire_cfg, old);
	log_info("reload: done");
}

/* ------------------------------------------------------------------------------ signals */

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	switch (w->signum) {
	case SIGINT:
	case SIGTERM:
		log_info("%s: stopping", w->signum == SIGINT ? "SIGINT" : "SIGTERM");
		loop_stop(&D.main);
		break;
	case SIGHUP:
		reload();
		break;
	case SIGUSR1:
		log_stats();
		break;
	}
}

/* A plugin's instance_new during a reload (main thread) sees the configuration being applied
 * (a [dns] upstream `via` an outbound the same reload adds); everyone else the live one. */
static const char *config_get_cb(void *ctx, const char *section, const char *key)
{
	const struct cfg *cfg = loop_current() == &D.main && D.applying ? D.applying : live_cfg();

	return cfg ? cfg_get(cfg, section, key) : NULL;
}

static int flow_lookup_cb(void *ctx, const struct xp_tuple *t, struct xp_flow *out)
{
	return dp_flow_lookup(D.dp, t, out);
}

static int dst_set_cb(void *ctx, const struct xp_dst_key *k, const struct xp_dst_verdict *v)
{
	return dp_dst_set(D.dp, k, v);
}

static int dst_del_cb(void *ctx, const struct xp_dst_key *k)
{
	return dp_dst_del(D.dp, k);
}

static int names_dst_set(void *ctx, const struct xp_dst_key *k, const struct xp_dst_verdict *v)
{
	int err = dp_dst_set(D.dp, k, v);

	return err == -E2BIG ? -ENOSPC : err;
}

static int names_dst_del(void *ctx, const struct xp_dst_key *k)
{
	return dp_dst_del(D.dp, k);
}

static int names_ob_id(void *ctx, const char *name)
{
	return outbound_id_lookup(name);
}

/* ------------------------------------------------------------------------------ start/stop */

static void raise_fd_limit(void)
{
	struct rlimit rl;

	/* Six descriptors per spliced connection (two sockets, two pipes). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			log_debug("setrlimit(RLIMIT_NOFILE): %s", strerror(errno));
	}
}

/* Worker i's UDP socket, before its thread starts. */
static int start_udp(unsigned i)
{
	static const struct udp_env uenv = {
		.route = route_udp,
		.netns_socket = udp_netns_socket,
		.peer_learn = udp_peer_learn,
		.direct_outbound = udp_direct_outbound,
	};
	int fd = dp_netns_socket(D.dp, AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int err;

	if (fd < 0) {
		log_error("worker %u: UDP socket in the private netns: %s", i, strerror(-fd));
		return fd;
	}
	err = udp_listen(fd, D.cfg->global.udp_buffer_bytes);
	if (!err)
		err = dp_listener_set(D.dp, XP_LISTENER_UDP(i), fd);
	if (err) {
		log_error("worker %u: UDP socket: %s", i, strerror(-err));
		close(fd);
		return err;
	}
	D.udp[i] = udp_worker_new(&D.workers[i].loop, fd, &D.uopts, &uenv);
	if (!D.udp[i]) {
		log_error("worker %u: UDP: %s", i, strerror(errno));
		return -errno;
	}
	return 0;
}

static int start_workers(void)
{
	unsigned n = dp_n_workers(D.dp);
	int err;

	D.workers = calloc(n, sizeof(*D.workers));
	D.udp = calloc(n, sizeof(*D.udp));
	if (!D.workers || !D.udp)
		return -ENOMEM;
	D.n_workers = n;
	udp_opts_from(&D.uopts, &D.cfg->global);
	for (unsigned i = 0; i < n; i++) {
		int fd = dp_netns_socket(D.dp, AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
					 0);

		if (fd < 0) {
			log_error("worker %u: listener socket in the private netns: %s", i,
				  strerror(-fd));
			return fd;
		}
		err = conn_listen_tcp(fd);
		if (!err)
			err = dp_listener_set(D.dp, XP_LISTENER_TCP(i), fd);
		if (!err)
			err = worker_init(&D.workers[i], i, fd, &D.copts, route_connection, NULL);
		if (err) {
			log_error("worker %u: listener: %s", i, strerror(-err));
			close(fd);
			return err;
		}
		err = start_udp(i);
		if (err) {
			worker_fini(&D.workers[i]);
			return err;
		}
		err = worker_start(&D.workers[i]);
		if (err) {
			log_error("worker %u: thread: %s", i, strerror(-err));
			udp_worker_free(D.udp[i]); /* uses the worker's loop: before worker_fini */
			D.udp[i] = NULL;
			worker_fini(&D.workers[i]);
			return err;
		}
		D.n_started++;
	}
	return 0;
}

static void stop_workers(void)
{
	/* Posted before the stop so it runs on worker 0's own loop; if it could not be posted,
	 * it is freed after the join, once no thread runs that loop but before it is destroyed. */
	if (D.n_started && D.heartbeat)
		loop_post(&D.workers[0].loop, heartbeat_stop_post, NULL);
	for (unsigned i = 0; i < D.n_started; i++) {
		if (D.udp[i])
			udp_worker_stop(D.udp[i]); /* posted first: runs before the loop stops */
		worker_stop(&D.workers[i]);
	}
	for (unsigned i = 0; i < D.n_started; i++)
		worker_join(&D.workers[i]);
	if (D.heartbeat)
		heartbeat_stop_post(NULL);
	for (unsigned i = 0; i < D.n_workers && D.udp; i++) {
		udp_worker_free(D.udp[i]);
		D.udp[i] = NULL;
	}
	for (unsigned i = 0; i < D.n_started; i++)
		worker_fini(&D.workers[i]);
	free(D.workers);
	D.workers = NULL;
	free(D.udp);
	D.udp = NULL;
	D.n_started = D.n_workers = 0;
}

static void log_ready(void)
{
	const struct cfg_global *g = &D.cfg->global;
	char lan[256] = "", wan[256] = "";

	for (size_t i = 0; i < g->n_lan; i++)
		snprintf(lan + strlen(lan), sizeof(lan) - strlen(lan), "%s%s", i ? "," : "",
			 g->lan[i]);
	for (size_t i = 0; i < g->n_wan; i++)
		snprintf(wan + strlen(wan), sizeof(wan) - strlen(wan), "%s%s", i ? "," : "",
			 g->wan[i]);
	log_info("xproxyd %s ready: lan %s, wan %s, redirect %s (%s), %u workers, fail %s",
		 XP_VERSION, lan[0] ? lan : "-", wan[0] ? wan : "-",
		 dp_redirect_mode(D.dp) == XP_REDIRECT_PEER ? "peer" : "plain",
		 dp_redirect_mode_why(D.dp), D.n_workers,
		 g->fail == CFG_FAIL_CLOSED ? "closed" : "open");
	log_info("private netns: nsenter --net=/proc/%d/fd/%d (the listeners live there)",
		 (int)getpid(), dp_netns_fd(D.dp));
}

static void teardown(void)
{
	struct ev_loop *loop = D.main_ready ? D.main.ev : NULL;

	if (loop) {
		ev_timer_stop(loop, &D.janitor_timer);
		ev_io_stop(loop, &D.events_io);
		ev_io_stop(loop, &D.netlink_io);
		ev_io_stop(loop, &D.lock_io);
		ev_signal_stop(loop, &D.sig_int);
		ev_signal_stop(loop, &D.sig_term);
		ev_signal_stop(loop, &D.sig_hup);
		ev_signal_stop(loop, &D.sig_usr1);
	}
	if (D.dp)
		log_stats();
	/* Workers first: their router reads the datapath's maps. Until dp_destroy() detaches
	 * the programs, new proxied SYNs find no listener and are dropped; the client's
	 * retransmission a second later is forwarded by the kernel as if we were not there. */
	stop_workers();
	udp_set_dns_hook(NULL);
	udp_set_sniff_hook(NULL);
	conn_set_sniff_hook(NULL);
	flowev_set_sink(NULL); /* events still posted are freed undelivered */
	sniff_clear();
	dnsq_clear();
	names_fini(0); /* the kernel map goes with the datapath */
	dp_destroy(D.dp);
	D.dp = NULL;
	groups_clear();
	outbounds_clear();
	if (D.main_ready) {
		/* Instances retired above free themselves through posts to the main loop. */
		loop_fini(&D.main);
		D.main_ready = false;
	}
	plug_registry_free(&D.plugins);
	host_counters_free();
	/* Configurations retired by reloads were freed in stop_workers() (worker_fini runs the
	 * grace marks still queued). */
	cfg_free(D.cfg);
	D.cfg = NULL;
	free(D.plugin_dir);
	D.plugin_dir = NULL;
	if (D.lock_fd >= 0)
		close(D.lock_fd);
	D.lock_fd = -1;
}

int daemon_run(const struct daemon_opts *o)
{
	struct dp_opts dpo = { 0 };
	struct host_env env = { 0 };
	char err[512] = "";
	char *errors = NULL;
	const char *delay;
	struct cfg *cfg;
	int rc;

	D.opts = *o;
	if (load_config(o, &cfg))
		return 1;
	atomic_store(&D.cfg, cfg);
	log_set_level(o->log_level >= 0 ? o->log_level : D.cfg->global.log_level);
	delay = getenv("XPROXYD_TEST_ROUTE_DELAY_MS");
	if (delay && *delay) {
		D.route_delay_ms = (unsigned)strtoul(delay, NULL, 10);
		log_warn("XPROXYD_TEST_ROUTE_DELAY_MS: every rule lookup on a worker stalls %u ms "
			 "(a test hook; never set it in production)",
			 D.route_delay_ms);
	}
	if (!o->config_path)
		log_info("no -c given: running the embedded default configuration "
			 "(xproxyd --print-default-config shows it)");

	rc = instance_lock(err, sizeof(err));
	if (rc < 0) {
		log_error("%s", err);
		goto err_out;
	}
	D.lock_fd = rc;
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	if (loop_init(&D.main, 0, true, "main")) {
		log_error("cannot create the main event loop");
		goto err_out;
	}
	D.main_ready = true;

	D.plugin_dir = resolve_plugin_dir(o, D.cfg);
	if (!D.plugin_dir)
		goto err_out;
	rc = plug_registry_scan(&D.plugins, D.plugin_dir);
	if (rc < 0) {
		log_error("plugin directory %s: %s", D.plugin_dir, strerror(-rc));
		goto err_out;
	}
	log_info("plugins: %d loaded from %s", rc, D.plugin_dir);

	env.config_get = config_get_cb;
	env.flow_lookup = flow_lookup_cb;
	env.dst_set = dst_set_cb;
	env.dst_del = dst_del_cb;
	env.now_ns = dp_now_ns;
	env.mark = D.cfg->global.mark;
	host_set_env(&env);

	rc = outbounds_apply(D.cfg, &D.plugins, host_table(), &errors);
	if (rc) {
		print_errors(errors);
		free(errors);
		log_error("outbounds could not be created (above)");
		goto err_out;
	}
	free(errors);

	errors = NULL;
	rc = dnsq_apply(D.cfg, &D.plugins, host_table(), false, &errors);
	if (rc) {
		print_errors(errors);
		free(errors);
		log_error("[dns] could not be set up (above)");
		goto err_out;
	}
	free(errors);
	errors = NULL;
	rc = sniff_apply(D.cfg, &D.plugins, host_table(), false, &errors);
	if (rc) {
		print_errors(errors);
		free(errors);
		log_error("[sniff] could not be set up (above)");
		goto err_out;
	}
	free(errors);
	log_sniff_mode(D.cfg);
	update_named_wanted();
	dial_set_default_timeout(D.cfg->global.connect_timeout_ms);

	find_direct_outbound(D.cfg);
	outbound_set_resolver(groups_get_by_name); /* sniffed and DNS-named flows reach groups */
	if (groups_apply(D.cfg, D.main_ready ? &D.main : NULL)) {
		log_error("groups: out of memory");
		goto err_out;
	}
	dpo.udp = true; /* start_workers() registers a UDP socket per worker or fails */
	rc = dp_create(D.cfg, &dpo, &D.dp, err, sizeof(err));
	if (rc) {
		log_error("datapath: %s", err[0] ? err : strerror(-rc));
		goto err_out;
	}
	dp_set_fail_closed(D.dp, D.cfg->global.fail == CFG_FAIL_CLOSED);
	dp_set_event_handler(D.dp, on_datapath_event, NULL);
	update_flow_events();

	dns_opts_apply(D.cfg);
	rc = names_init(&(struct names_env){ .dst_set = names_dst_set, .dst_del = names_dst_del,
					     .now_ns = dp_now_ns, .outbound_id = names_ob_id },
			&D.cfg->route, D.cfg->dns.map_size, D.cfg->dns.grace_ms);
	if (rc) {
		log_error("dns names: %s", strerror(-rc));
		goto err_out;
	}
	if (D.cfg->dns.present) {
		struct udp_dns_hook hook;

		dnsq_udp_hook(&hook);
		udp_set_dns_hook(&hook);
	}
	/* Always installed: a reload may add [sniff]; without sniffers an INSPECT flow is
	 * routed at once by the rules that need no name. */
	sniff_set_env(&(struct sniff_env){ .rules = sniff_rules, .direct = sniff_direct,
					   .learn = names_learn_sniffed,
					   .lookup = names_lookup,
					   .cache_ttl_ms = 300 * 1000 });
	sniff_install_hooks();
	flowev_set_sink(dispatch_event);

	conn_opts_from(&D.copts, &D.cfg->global);
	if (start_workers())
		goto err_out;
	if (apply_rules(D.cfg))
		goto err_out;

	dp_heartbeat(D.dp);
	if (loop_post(&D.workers[0].loop, heartbeat_start_post, NULL)) {
		log_error("cannot start the heartbeat on worker 0");
		goto err_out;
	}
	ev_timer_init(&D.janitor_timer, janitor_cb, JANITOR_MS / 1000.0, JANITOR_MS / 1000.0);
	ev_timer_start(D.main.ev, &D.janitor_timer);
	ev_io_init(&D.events_io, events_cb, dp_events_fd(D.dp), EV_READ);
	ev_io_start(D.main.ev, &D.events_io);
	ev_io_init(&D.netlink_io, netlink_cb, dp_netlink_fd(D.dp), EV_READ);
	ev_io_start(D.main.ev, &D.netlink_io);
	ev_io_init(&D.lock_io, lock_accept_cb, D.lock_fd, EV_READ);
	ev_io_start(D.main.ev, &D.lock_io);
	ev_signal_init(&D.sig_int, signal_cb, SIGINT);
	ev_signal_init(&D.sig_term, signal_cb, SIGTERM);
	ev_signal_init(&D.sig_hup, signal_cb, SIGHUP);
	ev_signal_init(&D.sig_usr1, signal_cb, SIGUSR1);
	ev_signal_start(D.main.ev, &D.sig_int);
	ev_signal_start(D.main.ev, &D.sig_term);
	ev_signal_start(D.main.ev, &D.sig_hup);
	ev_signal_start(D.main.ev, &D.sig_usr1);

	rc = dp_attach(D.dp, err, sizeof(err));
	if (rc) {
		log_error("datapath: %s", err[0] ? err : strerror(-rc));
		goto err_out;
	}
	log_ready();

	loop_run(&D.main);

	teardown();
	log_info("stopped; the machine is as it was");
	return 0;

err_out:
	teardown();
	return 1;
}

/* ------------------------------------------------------------------------------ -t */

struct check_ids {
	const struct cfg *cfg;
};

static int check_outbound_id(void *ctx, const char *name)
{
	const struct check_ids *c = ctx;

	const struct cfg *cfg = c->cfg;
	int id = (int)cfg->n_outbounds;

	for (size_t i = 0; i < cfg->n_outbounds; i++)
		if (!strcmp(cfg->outbounds[i].name, name))
			return (int)i + 1;
	/* A [group.NAME] is a rule target too (cfg_parse checked it); the daemon gives it an id
	 * from the same space, so any id past the outbounds' will do here. */
	for (size_t i = 0; i < cfg->n_sections; i++) {
		if (strncmp(cfg->sections[i].name, "group.", 6))
			continue;
		id++;
		if (!strcmp(cfg->sections[i].name + 6, name))
			return id;
	}
	return -ENOENT;
}

int daemon_check(const struct daemon_opts *o)
{
	struct plug_registry reg = { 0 };
	struct host_env env = { 0 };
	struct rule_image img = { 0 };
	struct check_ids ids;
	struct cfg *cfg;
	char *errors = NULL;
	char *dir = NULL;
	char err[512];
	bool ok = true;
	int rc;

	if (load_config(o, &cfg))
		return 1;
	log_set_level(o->log_level >= 0 ? o->log_level : cfg->global.log_level);
	dir = resolve_plugin_dir(o, cfg);
	rc = dir ? plug_registry_scan(&reg, dir) : -ENOMEM;
	if (rc < 0) {
		fprintf(stderr, "plugin directory %s: %s\n", dir ? dir : "?", strerror(-rc));
		ok = false;
	}
	if (ok) {
		/* Every instance the daemon would make, made and destroyed again: what a plugin
		 * only checks in instance_new (a server name it resolves, a CA file, a key) is
		 * found now and not at start. Nothing else runs: no loop, no listener, no
		 * datapath; instances see the checked file through config_get. Each step reports
		 * every error it finds, "file:line: [section] plugin: ...". */
		atomic_store(&D.cfg, cfg);
		env.config_get = config_get_cb;
		env.now_ns = dp_now_ns;
		env.mark = cfg->global.mark;
		host_set_env(&env);
		if (outbounds_apply(cfg, &reg, host_table(), &errors))
			ok = false;
		if (dnsq_apply(cfg, &reg, host_table(), false, &errors))
			ok = false;
		if (sniff_apply(cfg, &reg, host_table(), false, &errors))
			ok = false;
		sniff_clear();
		dnsq_clear();
		outbounds_clear();
		host_set_env(&(struct host_env){ 0 });
		atomic_store(&D.cfg, NULL);
	}
	print_errors(errors);
	free(errors);
	/* The rules are checked whatever the plugins said: every error in one run. */
	ids.cfg = cfg;
	rc = rules_compile(&cfg->route, 0, check_outbound_id, &ids, &img, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "%s: [route]: %s\n", cfg->path, err);
		ok = false;
	}
	for (size_t i = 0; i < cfg->global.n_lan + cfg->global.n_wan; i++) {
		const char *dev = i < cfg->global.n_lan ? cfg->global.lan[i]
							 : cfg->global.wan[i - cfg->global.n_lan];

		if (!if_nametoindex(dev))
			fprintf(stderr, "%s: warning: device %s does not exist (yet)\n", cfg->path,
				dev);
	}
	if (ok)
		printf("%s: configuration OK: %zu outbounds, %zu rules (%zu kernel rules, %zu need "
		       "a domain), plugins from %s\n",
		       cfg->path, cfg->n_outbounds, cfg->route.n, img.n_rules, img.n_skipped, dir);
	rule_image_free(&img);
	plug_registry_free(&reg);
	host_counters_free();
	free(dir);
	cfg_free(cfg);
	return ok ? 0 : 1;
}
