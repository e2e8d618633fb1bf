/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_dp_netns - the whole datapath with real TCP traffic: client / router / server network
 * namespaces (made by dp_netns.sh), this program running in the router's.
 *
 * For each redirect mode (peer, plain) it brings the datapath up through dp.h exactly as the
 * daemon does (dp_create, listeners made with dp_netns_socket and registered per worker,
 * rules, heartbeat, dp_attach) and checks, for IPv4 and IPv6:
 *   - PROXY: a client connect() lands on our listener, which sees the original destination
 *     (getsockname) and the client (getpeername); data flows both ways; the flow entry says
 *     PROXY / LAN / lan ifindex / outbound 1; the real server never sees it;
 *   - DIRECT: reaches the real server, which sees the client's own address;
 *   - BLOCK: fails with ECONNREFUSED within a second, the server never sees it;
 *   - the router's own connect() to a PROXY address lands on the listener (WAN egress path),
 *     flow entry origin HOST / wan ifindex;
 *   - fail-open: with the heartbeat stopped, a new PROXY connection reaches the real server
 *     within 2 s; fail-closed: it reaches nobody; heartbeat back: proxied again;
 *   - dp_destroy leaves no filter, no clsact qdisc and no veth behind.
 * Then: crash takeover (a child attaches and exits without cleaning up; the next dp_attach
 * replaces its filters and inherits "the qdisc is ours"), a clsact qdisc that was there before
 * us (kept on stop), a foreign filter on our qdisc (qdisc kept), and preflight errors.
 *
 * Sockets of the client and server are created from this thread after setns() into their
 * namespace (a socket stays in the netns it was made in), so one thread drives everything.
 */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "cfg.h"
#include "dp.h"
#include "log.h"
#include "netns_test.h"
#include "rules.h"

#define PORT 8080

struct fam {
	const char *name;
	int af;
	const char *client, *router_wan, *proxy, *direct, *block;
	const char *proxy_net, *direct_net, *block_net;
	int plen;
};

static const struct fam fams[] = {
	{"IPv4", AF_INET, "10.9.1.2", "10.9.0.1", "10.9.2.1", "10.9.3.1", "10.9.4.1", "10.9.2.0",
	 "10.9.3.0", "10.9.4.0", 24},
	{"IPv6", AF_INET6, "fd00:9:1::2", "fd00:9::1", "fd00:9:2::1", "fd00:9:3::1", "fd00:9:4::1",
	 "fd00:9:2::", "fd00:9:3::", "fd00:9:4::", 64},
};

static int ns_router = -1, ns_client = -1, ns_server = -1;
static int srv_listener = -1;
static const char *lan_dev = "lan0", *wan_dev = "wan0";
static const char *bpf_obj;
static const char *abi_obj; /* an object built for XP_BPF_ABI_VERSION + 1 */

/* ------------------------------------------------------------------------------------------ */
/* Sockets */

static int sock_in(int nsfd, int af)
{
	int fd;

	REQUIRE(setns(nsfd, CLONE_NEWNET) == 0, "setns: %s", strerror(errno));
	fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	REQUIRE(setns(ns_router, CLONE_NEWNET) == 0, "setns back: %s", strerror(errno));
	REQUIRE(fd >= 0, "socket: %s", strerror(errno));
	return fd;
}

/* 16-byte form of an address (IPv4 mapped), as in the BPF maps. */
static void addr16(int af, const char *s, uint8_t out[16])
{
	memset(out, 0, 16);
	if (af == AF_INET) {
		out[10] = out[11] = 0xff;
		inet_pton(AF_INET, s, out + 12);
	} else {
		inet_pton(AF_INET6, s, out);
	}
}

static socklen_t mksa(int af, const char *addr, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (af == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;

		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		inet_pton(AF_INET, addr, &s->sin_addr);
		return sizeof(*s);
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(port);
	inet_pton(AF_INET6, addr, &s6->sin6_addr);
	return sizeof(*s6);
}

/* Address and port of a sockaddr in 16-byte form. */
static void sa16(const struct sockaddr_storage *ss, uint8_t out[16], int *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		memset(out, 0, 16);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &s->sin_addr, 4);
		*port = ntohs(s->sin_port);
	} else {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		memcpy(out, &s6->sin6_addr, 16);
		*port = ntohs(s6->sin6_port);
	}
}

static const char *fmt16(const uint8_t a[16], int port, char *buf, size_t len)
{
	char s[INET6_ADDRSTRLEN];
	static const uint8_t pfx[12] = {[10] = 0xff, [11] = 0xff};

	if (!memcmp(a, pfx, 12))
		inet_ntop(AF_INET, a + 12, s, sizeof(s));
	else
		inet_ntop(AF_INET6, a, s, sizeof(s));
	snprintf(buf, len, "%s:%d", s, port);
	return buf;
}

/* Start a non-blocking connect from netns `nsfd`. fd, or exits. */
static int connect_start(int nsfd, int af, const char *dst)
{
	struct sockaddr_storage ss;
	socklen_t len = mksa(af, dst, PORT, &ss);
	int fd = sock_in(nsfd, af);

	if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)
		REQUIRE(0, "connect %s: %s", dst, strerror(errno));
	return fd;
}

/* Wait for the connect to finish. 0, -errno from SO_ERROR, or -ETIMEDOUT. */
static int connect_wait(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int soerr = 0;
	socklen_t l = sizeof(soerr);

	if (poll(&p, 1, timeout_ms) <= 0)
		return -ETIMEDOUT;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
	return -soerr;
}

/* Accept one connection from any of fds within timeout_ms. fd or -1. */
static int accept_any(const int *fds, int n, int timeout_ms)
{
	struct pollfd p[XP_MAX_WORKERS + 1];
	double end = t_now() + timeout_ms / 1000.0;

	for (int i = 0; i < n; i++)
		p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
	for (;;) {
		int left = (int)((end - t_now()) * 1000);

		if (poll(p, n, left > 0 ? left : 0) > 0) {
			for (int i = 0; i < n; i++) {
				int c;

				if (!(p[i].revents & POLLIN))
					continue;
				c = accept4(fds[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (c >= 0)
					return c;
			}
		}
		if (t_now() >= end)
			return -1;
	}
}

/* Drain and close whatever is queued on the listeners (connections we do not care about). */
static int drain(const int *fds, int n)
{
	int c, count = 0;

	while ((c = accept_any(fds, n, 0)) >= 0) {
		close(c);
		count++;
	}
	return count;
}

static bool xfer(int from, int to, const char *msg)
{
	char buf[64] = {0};
	struct pollfd p = {.fd = to, .events = POLLIN};
	ssize_t n;

	if (send(from, msg, strlen(msg), MSG_NOSIGNAL) != (ssize_t)strlen(msg))
		return false;
	if (poll(&p, 1, 2000) <= 0)
		return false;
	n = recv(to, buf, sizeof(buf) - 1, 0);
	return n == (ssize_t)strlen(msg) && !memcmp(buf, msg, (size_t)n);
}

/* ------------------------------------------------------------------------------------------ */
/* Datapath set-up */

struct tdp {
	struct dp *dp;
	int listeners[XP_MAX_WORKERS];
	int n;
	unsigned lan_ifindex, wan_ifindex;
	int flow_new;
};

static char *lan_list[1], *wan_list[1];
static uint32_t cidr_entries = 1024;

static void make_cfg(struct cfg *cfg, enum cfg_redirect mode)
{
	memset(cfg, 0, sizeof(*cfg));
	lan_list[0] = (char *)lan_dev;
	wan_list[0] = (char *)wan_dev;
	cfg->path = (char *)"<test>";
	cfg->global.lan = lan_list;
	cfg->global.n_lan = 1;
	cfg->global.wan = wan_list;
	cfg->global.n_wan = 1;
	cfg->global.redirect = mode;
	cfg->global.workers = 2; /* sharding over more than one listener */
	cfg->global.mark = 0x5870;
	cfg->global.mark_mask = 0xffff;
	cfg->global.fail = CFG_FAIL_OPEN;
	cfg->global.veth = (char *)"xp0";
	cfg->global.flow_entries = 4096;
	cfg->global.dst_entries = 1024;
	cfg->global.cidr_entries = cidr_entries;
	cfg->global.ringbuf_bytes = 1 << 16;
	cfg->global.flow_events_all = true;
}

static void on_event(void *ctx, const void *data, size_t len)
{
	const struct xp_ev_hdr *h = data;
	struct tdp *t = ctx;

	if (len >= sizeof(*h) && h->type == XP_EV_FLOW_NEW)
		t->flow_new++;
}

static int make_listener(struct dp *dp)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6};
	int fd = dp_netns_socket(dp, AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int one = 1, zero = 0;

	REQUIRE(fd >= 0, "dp_netns_socket: %s", strerror(-fd));
	REQUIRE(setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) == 0, "IP_TRANSPARENT");
	REQUIRE(setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) == 0, "V6ONLY");
	REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s", strerror(errno));
	REQUIRE(listen(fd, 128) == 0, "listen: %s", strerror(errno));
	return fd;
}

static void cidr(struct rule_image_cidr *c, uint32_t gen, uint32_t set, const struct fam *f,
		 const char *net, uint32_t rule_id, uint8_t verdict, uint16_t outbound)
{
	memset(c, 0, sizeof(*c));
	c->key.set_id = htonl(gen << 31 | set);
	addr16(f->af, net, c->key.addr);
	c->key.prefixlen = 32 + (f->af == AF_INET ? 96 : 0) + f->plen;
	c->val.rule_id = rule_id;
	c->val.verdict = verdict;
	c->val.outbound_id = outbound;
}

/* One merged dst-cidr rule, as the compiler makes of six "dst-cidr" lines. */
static int apply_rules_gen(struct dp *dp, uint32_t gen)
{
	struct rule_image_cidr cidrs[6];
	struct xp_rule rule = {0};
	struct rule_image img = {0};

	for (int i = 0; i < 2; i++) {
		const struct fam *f = &fams[i];

		cidr(&cidrs[i * 3 + 0], gen, 1, f, f->proxy_net, 1 + i * 3, XP_V_PROXY, 1);
		cidr(&cidrs[i * 3 + 1], gen, 1, f, f->direct_net, 2 + i * 3, XP_V_DIRECT, 0);
		cidr(&cidrs[i * 3 + 2], gen, 1, f, f->block_net, 3 + i * 3, XP_V_BLOCK, 0);
	}
	rule.rule_id = 1;
	rule.dst_set = gen << 31 | 1; /* host order here, big-endian in the trie key */
	rule.dport_hi = rule.sport_hi = 65535;
	rule.take = XP_TAKE_DST_SET;
	img.gen = gen;
	img.rules = &rule;
	img.n_rules = 1;
	img.cidrs = cidrs;
	img.n_cidrs = 6;
	img.set.first = gen * XP_MAX_RULES;
	img.set.count = 1;
	img.set.fallback_verdict = XP_V_DIRECT;
	return dp_rules_apply(dp, &img);
}

static int apply_rules(struct dp *dp)
{
	return apply_rules_gen(dp, dp_rules_next_gen(dp));
}

static int tdp_up(struct tdp *t, enum cfg_redirect mode, bool attach)
{
	struct cfg cfg;
	char err[256];
	int ret;

	memset(t, 0, sizeof(*t));
	make_cfg(&cfg, mode);
	{
		struct dp_opts opts = {.bpf_obj = bpf_obj};

		ret = dp_create(&cfg, &opts, &t->dp, err, sizeof(err));
	}
	if (ret) {
		fprintf(stderr, "dp_create: %s\n", err);
		return ret;
	}
	t->lan_ifindex = if_nametoindex(lan_dev);
	t->wan_ifindex = if_nametoindex(wan_dev);
	t->n = (int)dp_n_workers(t->dp);
	CHECKF(t->n == 2, "%d workers", t->n);
	for (int i = 0; i < t->n; i++) {
		t->listeners[i] = make_listener(t->dp);
		CHECK(dp_listener_set(t->dp, XP_LISTENER_TCP(i), t->listeners[i]) == 0);
	}
	CHECK(dp_listener_set(t->dp, 2 * XP_MAX_WORKERS, t->listeners[0]) == -EINVAL);
	ret = apply_rules(t->dp);
	CHECKF(ret == 0, "dp_rules_apply: %s", strerror(-ret));
	dp_set_event_handler(t->dp, on_event, t);
	dp_heartbeat(t->dp);
	if (!attach)
		return 0;
	ret = dp_attach(t->dp, err, sizeof(err));
	if (ret)
		fprintf(stderr, "dp_attach: %s\n", err);
	return ret;
}

static void tdp_down(struct tdp *t)
{
	dp_destroy(t->dp);
	for (int i = 0; i < t->n; i++)
		close(t->listeners[i]);
	t->dp = NULL;
	t->n = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The checks */

static void check_flow(struct tdp *t, const struct fam *f, int cfd, int sfd_is_router,
		       const char *dst, uint8_t verdict, uint8_t origin, unsigned ifindex)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	struct xp_tuple k = {0};
	struct xp_flow fl;
	int port, ret;

	(void)sfd_is_router;
	REQUIRE(getsockname(cfd, (struct sockaddr *)&ss, &l) == 0, "getsockname");
	sa16(&ss, k.saddr, &port);
	k.sport = (uint16_t)port;
	addr16(f->af, dst, k.daddr);
	k.dport = PORT;
	k.l4proto = IPPROTO_TCP;
	ret = dp_flow_lookup(t->dp, &k, &fl);
	CHECKF(ret == 0, "%s flow to %s: %s", f->name, dst, strerror(-ret));
	if (ret)
		return;
	CHECKF(fl.verdict == verdict, "%s %s: verdict %u, want %u", f->name, dst, fl.verdict,
	       verdict);
	CHECKF(fl.origin == origin, "%s %s: origin %u, want %u", f->name, dst, fl.origin, origin);
	CHECKF(fl.ifindex == ifindex, "%s %s: ifindex %u, want %u", f->name, dst, fl.ifindex,
	       ifindex);
	if (verdict == XP_V_PROXY)
		CHECKF(fl.outbound_id == 1, "%s: outbound %u", f->name, fl.outbound_id);
	CHECKF(fl.vsrc == XP_SRC_RULE, "%s %s: vsrc %u", f->name, dst, fl.vsrc);
}

/* A connection from netns `from` to the PROXY address lands on our listener: returns true if
 * everything about it is right. */
static bool check_proxied(struct tdp *t, const struct fam *f, int from, const char *src,
			  uint8_t origin, unsigned ifindex)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	uint8_t want[16], got[16];
	char b1[64], b2[64];
	int cfd, afd, port, ret, before = t_failures;

	dp_heartbeat(t->dp);
	cfd = connect_start(from, f->af, f->proxy);
	ret = connect_wait(cfd, 2000);
	CHECKF(ret == 0, "%s connect to PROXY %s from %s: %s", f->name, f->proxy, src,
	       strerror(-ret));
	afd = accept_any(t->listeners, t->n, 2000);
	CHECKF(afd >= 0, "%s: PROXY connection from %s not on our listener", f->name, src);
	if (afd >= 0) {
		/* The listener sees the original destination... */
		CHECK(getsockname(afd, (struct sockaddr *)&ss, &l) == 0);
		sa16(&ss, got, &port);
		addr16(f->af, f->proxy, want);
		CHECKF(!memcmp(got, want, 16) && port == PORT, "%s: listener local %s, want %s",
		       f->name, fmt16(got, port, b1, 64), fmt16(want, PORT, b2, 64));
		/* ...and the client's own address and port. */
		l = sizeof(ss);
		CHECK(getpeername(afd, (struct sockaddr *)&ss, &l) == 0);
		sa16(&ss, got, &port);
		addr16(f->af, src, want);
		{
			struct sockaddr_storage cs;
			socklen_t cl = sizeof(cs);
			uint8_t ca[16];
			int cport;

			getsockname(cfd, (struct sockaddr *)&cs, &cl);
			sa16(&cs, ca, &cport);
			CHECKF(!memcmp(got, want, 16) && port == cport,
			       "%s: listener peer %s, want %s", f->name, fmt16(got, port, b1, 64),
			       fmt16(want, cport, b2, 64));
		}
		/* The client got its SYN-ACK and gets our data from the original destination:
		 * its socket is connected to f->proxy, so the kernel matched the source. */
		CHECKF(xfer(afd, cfd, "from-proxy"), "%s: listener -> client data", f->name);
		CHECKF(xfer(cfd, afd, "from-client"), "%s: client -> listener data", f->name);
		close(afd);
	}
	check_flow(t, f, cfd, 0, f->proxy, XP_V_PROXY, origin, ifindex);
	close(cfd);
	/* The real server never saw it. */
	CHECKF(accept_any(&srv_listener, 1, 50) < 0, "%s: the server got a PROXY connection",
	       f->name);
	return t_failures == before;
}

static void check_direct(struct tdp *t, const struct fam *f)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	uint8_t want[16], got[16];
	char b1[64];
	int cfd, sfd, port, ret;

	dp_heartbeat(t->dp);
	cfd = connect_start(ns_client, f->af, f->direct);
	ret = connect_wait(cfd, 2000);
	CHECKF(ret == 0, "%s connect to DIRECT %s: %s", f->name, f->direct, strerror(-ret));
	sfd = accept_any(&srv_listener, 1, 2000);
	CHECKF(sfd >= 0, "%s: DIRECT connection did not reach the server", f->name);
	if (sfd >= 0) {
		CHECK(getpeername(sfd, (struct sockaddr *)&ss, &l) == 0);
		sa16(&ss, got, &port);
		addr16(f->af, f->client, want);
		CHECKF(!memcmp(got, want, 16), "%s: server sees %s, want the client %s", f->name,
		       fmt16(got, port, b1, 64), f->client);
		CHECKF(xfer(sfd, cfd, "from-server"), "%s: server -> client data", f->name);
		close(sfd);
	}
	check_flow(t, f, cfd, 0, f->direct, XP_V_DIRECT, XP_ORIGIN_LAN, t->lan_ifindex);
	close(cfd);
	CHECKF(drain(t->listeners, t->n) == 0, "%s: a DIRECT connection reached our listener",
	       f->name);
}

static void check_block(struct tdp *t, const struct fam *f)
{
	double t0;
	int cfd, ret;

	dp_heartbeat(t->dp);
	t0 = t_now();
	cfd = connect_start(ns_client, f->af, f->block);
	ret = connect_wait(cfd, 1000);
	CHECKF(ret == -ECONNREFUSED,
	       "%s: BLOCK connect gave '%s' after %.2f s, want a refusal "
	       "within 1 s",
	       f->name, strerror(-ret), t_now() - t0);
	CHECKF(accept_any(&srv_listener, 1, 100) < 0, "%s: the server got a BLOCKed connection",
	       f->name);
	CHECKF(drain(t->listeners, t->n) == 0, "%s: a BLOCKed connection reached our listener",
	       f->name);
	check_flow(t, f, cfd, 0, f->block, XP_V_BLOCK, XP_ORIGIN_LAN, t->lan_ifindex);
	close(cfd);
}

/* Where does a new client connection to the PROXY address land? 'p' our listener, 's' the
 * real server, '-' nowhere within timeout_ms. */
static char land(struct tdp *t, const struct fam *f, int timeout_ms)
{
	int cfd = connect_start(ns_client, f->af, f->proxy);
	char where = '-';
	int c;

	if (connect_wait(cfd, timeout_ms) == 0) {
		if ((c = accept_any(t->listeners, t->n, 200)) >= 0) {
			where = 'p';
			close(c);
		} else if ((c = accept_any(&srv_listener, 1, 200)) >= 0) {
			where = 's';
			close(c);
		}
	}
	close(cfd);
	/* Nothing must have arrived anywhere else either. */
	if (where == '-' && (drain(t->listeners, t->n) || drain(&srv_listener, 1)))
		where = '?';
	return where;
}

static void check_fail_safe(struct tdp *t)
{
	double t0, elapsed = -1;
	char w;

	dp_heartbeat(t->dp);
	t0 = t_now();
	w = land(t, &fams[0], 1000);
	CHECKF(w == 'p', "fresh heartbeat: PROXY went to '%c'", w);
	/* Heartbeat stopped: within 2 s new connections must go to the real server. */
	while (t_now() - t0 < 3.0) {
		w = land(t, &fams[0], 300);
		if (w == 's') {
			elapsed = t_now() - t0;
			break;
		}
		CHECKF(w == 'p', "stale heartbeat: PROXY connection went to '%c'", w);
		usleep(50 * 1000);
	}
	CHECKF(elapsed > 0 && elapsed <= 2.0, "fail-open took %.2f s (want <= 2 s)", elapsed);
	fprintf(stderr, "  fail-open after %.2f s without heartbeat\n", elapsed);
	w = land(t, &fams[1], 1000);
	CHECKF(w == 's', "IPv6 fail-open: PROXY went to '%c'", w);

	dp_set_fail_closed(t->dp, true);
	for (int i = 0; i < 2; i++) {
		w = land(t, &fams[i], 1000);
		CHECKF(w == '-', "%s fail-closed: PROXY went to '%c', want dropped", fams[i].name,
		       w);
	}
	dp_set_fail_closed(t->dp, false);
	dp_heartbeat(t->dp);
	for (int i = 0; i < 2; i++) {
		w = land(t, &fams[i], 1000);
		CHECKF(w == 'p', "%s heartbeat back: PROXY went to '%c'", fams[i].name, w);
	}
}

/* prog: the program name as tc prints it, "name:" (the kernel keeps 15 characters of it, so
 * xp_lan_ingress_l3 shows as "xp_lan_ingress_:"). */
static void check_tc(const char *dev, const char *dir, const char *prog, const char *handle)
{
	char cmd[128];
	char *out;

	snprintf(cmd, sizeof(cmd), "tc filter show dev %s %s", dev, dir);
	out = t_cmd("%s", cmd);
	CHECKF(strstr(out, prog) && strstr(out, "pref 22640") && strstr(out, handle),
	       "%s %s: want %s pref 22640 %s in:\n%s", dev, dir, prog, handle, out);
	free(out);
}

static void check_clean(const char *when)
{
	char *out = t_cmd("tc qdisc show dev %s; tc qdisc show dev %s; tc filter show dev %s "
			  "ingress; tc filter show dev %s ingress; tc filter show dev %s egress; "
			  "ip -o link show",
			  lan_dev, wan_dev, lan_dev, wan_dev, wan_dev);

	CHECKF(!strstr(out, "clsact") && !strstr(out, "filter") && !strstr(out, "xp0"),
	       "%s: left behind:\n%s", when, out);
	free(out);
}

static void run_mode(enum cfg_redirect mode)
{
	const char *name = mode == CFG_REDIRECT_PEER ? "peer" : "plain";
	struct xp_dst_key dk = {.port = 1};
	struct xp_dst_verdict dv = {.verdict = XP_V_DIRECT};
	struct xp_stats st;
	struct tdp t;
	int ret;

	fprintf(stderr, "--- redirect = %s\n", name);
	ret = tdp_up(&t, mode, true);
	if (ret == -EOPNOTSUPP && mode == CFG_REDIRECT_PEER) {
		/* A kernel without bpf_redirect_peer(): that mode cannot exist here. */
		fprintf(stderr, "  peer mode not supported by this kernel: not tested\n");
		tdp_down(&t);
		return;
	}
	REQUIRE(ret == 0, "datapath up (%s): %s", name, strerror(-ret));
	CHECK(dp_redirect_mode(t.dp) ==
	      (mode == CFG_REDIRECT_PEER ? XP_REDIRECT_PEER : XP_REDIRECT_PLAIN));
	CHECK(strcmp(dp_redirect_mode_why(t.dp), "forced by config") == 0);
	check_tc(lan_dev, "ingress", "xp_lan_ingress:", "handle 0x5871");
	check_tc(wan_dev, "egress", "xp_wan_egress:", "handle 0x5871");
	check_tc(wan_dev, "ingress", "xp_wan_ingress:", "handle 0x5871");
	check_tc("xp0", "ingress", "xp_proxy_reply:", "handle 0x5871");

	for (int i = 0; i < 2; i++) {
		const struct fam *f = &fams[i];

		fprintf(stderr, "  %s LAN PROXY\n", f->name);
		check_proxied(&t, f, ns_client, f->client, XP_ORIGIN_LAN, t.lan_ifindex);
		fprintf(stderr, "  %s LAN DIRECT\n", f->name);
		check_direct(&t, f);
		fprintf(stderr, "  %s LAN BLOCK\n", f->name);
		check_block(&t, f);
		fprintf(stderr, "  %s router PROXY\n", f->name);
		check_proxied(&t, f, ns_router, f->router_wan, XP_ORIGIN_HOST, t.wan_ifindex);
	}
	fprintf(stderr, "  fail-safe\n");
	check_fail_safe(&t);

	ret = dp_events_consume(t.dp);
	CHECKF(ret > 0 && t.flow_new > 0, "events: consume %d, FLOW_NEW %d", ret, t.flow_new);
	CHECK(dp_events_fd(t.dp) >= 0 && dp_netlink_fd(t.dp) >= 0);
	CHECK(dp_netlink_process(t.dp) == 0);
	CHECK(dp_stats(t.dp, &st) == 0);
	CHECKF(st.flows[XP_V_PROXY] >= 4 && st.flows[XP_V_DIRECT] >= 2 && st.flows[XP_V_BLOCK] >= 2,
	       "stats: new flows proxy %llu direct %llu block %llu",
	       (unsigned long long)st.flows[XP_V_PROXY], (unsigned long long)st.flows[XP_V_DIRECT],
	       (unsigned long long)st.flows[XP_V_BLOCK]);

	/* Janitor: an expired destination verdict goes, a live one stays. */
	addr16(AF_INET, "192.0.2.1", dk.addr);
	dv.expires_ns = dp_now_ns() - 1;
	CHECK(dp_dst_set(t.dp, &dk, &dv) == 0);
	dk.port = 2;
	dv.expires_ns = dp_now_ns() + 3600 * 1000000000ULL;
	CHECK(dp_dst_set(t.dp, &dk, &dv) == 0);
	ret = dp_janitor(t.dp);
	CHECKF(ret >= 1, "janitor removed %d", ret);
	CHECK(dp_dst_del(t.dp, &dk) == 0);
	dk.port = 1;
	CHECK(dp_dst_del(t.dp, &dk) == -ENOENT);
	dv.verdict = XP_V_NONE;
	CHECK(dp_dst_set(t.dp, &dk, &dv) == -EINVAL);

	tdp_down(&t);
	check_clean(name);
	/* Without the datapath, PROXY addresses are plain routed destinations again. */
	{
		int cfd = connect_start(ns_client, AF_INET, fams[0].proxy);

		CHECK(connect_wait(cfd, 2000) == 0);
		ret = accept_any(&srv_listener, 1, 1000);
		CHECKF(ret >= 0, "after dp_destroy the server is not reachable");
		if (ret >= 0)
			close(ret);
		close(cfd);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Leftovers and ownership of the clsact qdisc */

static void check_takeover(void)
{
	struct tdp t;
	int pipefd[2], status;
	char c = 0;
	pid_t pid;
	char *out;

	fprintf(stderr, "--- crash takeover\n");
	REQUIRE(pipe(pipefd) == 0, "pipe");
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		/* The "crashed daemon": attach, then die without any cleanup. */
		close(pipefd[0]);
		if (tdp_up(&t, CFG_REDIRECT_AUTO, true) == 0)
			c = 'y';
		if (write(pipefd[1], &c, 1) != 1)
			_exit(2);
		_exit(0);
	}
	close(pipefd[1]);
	CHECK(read(pipefd[0], &c, 1) == 1 && c == 'y');
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	/* Its filters outlive it. */
	check_tc(lan_dev, "ingress", "xp_lan_ingress:", "handle 0x5871");

	CHECK(tdp_up(&t, CFG_REDIRECT_AUTO, true) == 0);
	if (t.dp) {
		out = t_cmd(
			"tc filter show dev %s ingress | grep -c 'pref 22640 bpf chain 0 handle'",
			lan_dev);
		CHECKF(atoi(out) == 1, "one filter of ours after takeover, not %s", out);
		free(out);
		check_tc(lan_dev, "ingress", "xp_lan_ingress:", "handle 0x5871");
		check_proxied(&t, &fams[0], ns_client, fams[0].client, XP_ORIGIN_LAN,
			      t.lan_ifindex);
		tdp_down(&t);
	}
	/* The crashed run created clsact; the run that took over removes it. */
	check_clean("after takeover");

	fprintf(stderr, "--- clsact that was there before us\n");
	out = t_cmd("tc qdisc add dev %s clsact", lan_dev);
	CHECKF(!out[0], "%s", out);
	free(out);
	CHECK(tdp_up(&t, CFG_REDIRECT_AUTO, true) == 0);
	if (t.dp) {
		check_tc(lan_dev, "ingress", "xp_lan_ingress:", "handle 0x5872");
		check_tc(wan_dev, "egress", "xp_wan_egress:", "handle 0x5871");
		tdp_down(&t);
	}
	CHECK(t_cmd_has("clsact", "tc qdisc show dev lan0"));
	CHECK(t_cmd_lacks("filter", "tc filter show dev lan0 ingress"));
	out = t_cmd("tc qdisc del dev %s clsact", lan_dev);
	free(out);

	fprintf(stderr, "--- a foreign filter on our clsact\n");
	CHECK(tdp_up(&t, CFG_REDIRECT_AUTO, true) == 0);
	out = t_cmd("tc filter add dev %s ingress prio 7 protocol ip u32 match ip dst "
		    "192.0.2.99/32 flowid 1:1",
		    lan_dev);
	CHECKF(!out[0], "%s", out);
	free(out);
	tdp_down(&t);
	CHECK(t_cmd_has("clsact", "tc qdisc show dev lan0"));
	CHECK(t_cmd_has("u32", "tc filter show dev lan0 ingress"));
	CHECK(t_cmd_lacks("22640", "tc filter show dev lan0 ingress"));
	out = t_cmd("tc qdisc del dev %s clsact", lan_dev);
	free(out);
	check_clean("after the foreign-filter case");
}

static void check_preflight(void)
{
	struct cfg cfg;
	struct dp *dp = NULL;
	char err[256], *out;
	char *bad[1] = {(char *)"nosuch0"};
	int ret;

	fprintf(stderr, "--- preflight errors\n");
	make_cfg(&cfg, CFG_REDIRECT_AUTO);
	cfg.global.lan = bad;
	ret = dp_create(&cfg, NULL, &dp, err, sizeof(err));
	CHECKF(ret == -ENODEV && !strcmp(err, "lan device nosuch0 does not exist"), "%d %s", ret,
	       err);
	CHECK(dp == NULL);

	make_cfg(&cfg, CFG_REDIRECT_AUTO);
	cfg.global.wan = lan_list;
	ret = dp_create(&cfg, NULL, &dp, err, sizeof(err));
	CHECKF(ret == -EINVAL && strstr(err, "lan0 is both lan and wan"), "%d %s", ret, err);

	make_cfg(&cfg, CFG_REDIRECT_AUTO);
	cfg.global.veth = (char *)"xp0-much-too-lg"; /* 15: no room for the "p" */
	ret = dp_create(&cfg, NULL, &dp, err, sizeof(err));
	CHECKF(ret == -EINVAL && strstr(err, "veth name"), "%d %s", ret, err);

	/* A device with our veth's name that is not ours is refused, not deleted. */
	out = t_cmd("ip link add xpf0 type veth peer name xpf0b");
	CHECKF(!out[0], "%s", out);
	free(out);
	make_cfg(&cfg, CFG_REDIRECT_AUTO);
	cfg.global.veth = (char *)"xpf0";
	ret = dp_create(&cfg, NULL, &dp, err, sizeof(err));
	CHECKF(ret == -EEXIST && strstr(err, "xpf0 exists and is not ours"), "%d %s", ret, err);
	CHECK(t_cmd_has("xpf0", "ip -o link show xpf0"));

	/* With our alias it is a leftover: removed, and the start goes on. */
	out = t_cmd("ip link set xpf0 alias xproxy");
	free(out);
	{
		struct dp_opts opts = {.bpf_obj = bpf_obj};

		ret = dp_create(&cfg, &opts, &dp, err, sizeof(err));
	}
	CHECKF(ret == 0, "leftover veth: %s", err);
	CHECK(t_cmd_lacks("xpf0b", "ip -o link show"));
	dp_destroy(dp);
	dp_destroy(NULL);
	CHECK(t_cmd_lacks("xpf0", "ip -o link show"));

	/* An object of another ABI version: refused by name, nothing left behind. */
	if (abi_obj) {
		struct dp_opts opts = {.bpf_obj = abi_obj};
		char want[64];

		snprintf(want, sizeof(want), "BPF ABI mismatch: object %d, daemon %d",
			 XP_BPF_ABI_VERSION + 1, XP_BPF_ABI_VERSION);
		make_cfg(&cfg, CFG_REDIRECT_AUTO);
		ret = dp_create(&cfg, &opts, &dp, err, sizeof(err));
		CHECKF(ret == -EPROTO && !strcmp(err, want), "%d %s", ret, err);
		CHECK(t_cmd_lacks("xp0", "ip -o link show"));
	} else {
		fprintf(stderr, "  no --abi-obj: the ABI-mismatch case is not run\n");
	}

	/* An object file that is not a BPF object. */
	{
		struct dp_opts opts = {.bpf_obj = "/proc/self/status"};

		make_cfg(&cfg, CFG_REDIRECT_AUTO);
		ret = dp_create(&cfg, &opts, &dp, err, sizeof(err));
		CHECKF(ret < 0 && strstr(err, "cannot open BPF object"), "%d %s", ret, err);
		CHECK(t_cmd_lacks("xp0", "ip -o link show"));
	}
}

/* dp_rules_apply() refuses what would corrupt the live rules, and frees the old generation's
 * CIDR keys: with room for 12 entries (two generations of 6), alternating applies only keep
 * fitting if it does. */
static void check_rules(void)
{
	struct rule_image_cidr many[9], bad;
	struct xp_rule rule = {.rule_id = 1, .dport_hi = 65535, .sport_hi = 65535};
	struct rule_image img;
	struct tdp t;
	uint32_t gen;
	int ret;

	fprintf(stderr, "--- rule generations\n");
	cidr_entries = 12;
	ret = tdp_up(&t, CFG_REDIRECT_AUTO, false); /* applies one generation already */
	cidr_entries = 1024;
	REQUIRE(ret == 0, "datapath up: %s", strerror(-ret));
	gen = dp_rules_next_gen(t.dp);
	CHECK(gen == 0);				  /* the first apply went to 1 */
	CHECK(apply_rules_gen(t.dp, gen ^ 1) == -EINVAL); /* the live one */
	CHECK(apply_rules_gen(t.dp, 2) == -EINVAL);

	memset(&img, 0, sizeof(img));
	img.gen = gen;
	img.rules = &rule;
	img.n_rules = XP_MAX_RULES + 1;
	img.set.first = gen * XP_MAX_RULES;
	img.set.count = (uint32_t)img.n_rules;
	CHECK(dp_rules_apply(t.dp, &img) == -E2BIG);
	img.n_rules = img.set.count = 1;
	img.set.first = 5; /* not where generation 0 lives */
	CHECK(dp_rules_apply(t.dp, &img) == -EINVAL);
	img.set.first = gen * XP_MAX_RULES;
	cidr(&bad, gen ^ 1, 1, &fams[0], "10.0.0.0", 1, XP_V_DIRECT, 0); /* other generation's id */
	img.cidrs = &bad;
	img.n_cidrs = 1;
	CHECK(dp_rules_apply(t.dp, &img) == -EINVAL);
	rule.prange_first = (uint16_t)(gen * XP_MAX_PRANGES);
	rule.prange_count = 3; /* more intervals than the image has */
	img.n_cidrs = 0;
	CHECK(dp_rules_apply(t.dp, &img) == -EINVAL);
	rule.prange_count = 0;

	/* Full trie: -ENOSPC, and the live generation stays. */
	for (int i = 0; i < 9; i++) {
		char net[32];

		snprintf(net, sizeof(net), "10.%d.0.0", 100 + i);
		cidr(&many[i], gen, 1, &fams[0], net, 1, XP_V_DIRECT, 0);
	}
	img.cidrs = many;
	img.n_cidrs = 9;
	ret = dp_rules_apply(t.dp, &img);
	CHECKF(ret == -ENOSPC, "%d", ret);
	CHECK(dp_rules_next_gen(t.dp) == gen);

	for (int i = 0; i < 4; i++) {
		ret = apply_rules(t.dp);
		CHECKF(ret == 0, "alternating apply %d: %s", i, strerror(-ret));
	}
	CHECK(dp_rules_next_gen(t.dp) == gen);
	tdp_down(&t);
}

/* Where does a client connection to addr land: 'r' the router's own listener, 'p' ours, 's'
 * the real server, '-' nowhere. */
static char land_addr(struct tdp *t, int rl, int af, const char *addr)
{
	int cfd = connect_start(ns_client, af, addr);
	char where = '-';
	int c;

	dp_heartbeat(t->dp);
	if (connect_wait(cfd, 1000) == 0) {
		if ((c = accept_any(&rl, 1, 200)) >= 0)
			where = 'r';
		else if ((c = accept_any(t->listeners, t->n, 200)) >= 0)
			where = 'p';
		else if ((c = accept_any(&srv_listener, 1, 200)) >= 0)
			where = 's';
		if (c >= 0)
			close(c);
	}
	close(cfd);
	return where;
}

/* Let dp_netlink_process() take in what rtnetlink announces (IPv6 does it from a work item, a
 * moment after `ip` returns): until the socket stays quiet for 300 ms. */
static void settle(struct tdp *t)
{
	double end = t_now() + 3.0, quiet = t_now() + 0.3;

	while (t_now() < end && t_now() < quiet) {
		struct pollfd p = {.fd = dp_netlink_fd(t->dp), .events = POLLIN};

		if (poll(&p, 1, 50) > 0) {
			CHECK(dp_netlink_process(t->dp) == 0);
			quiet = t_now() + 0.3;
		}
	}
	CHECK(dp_netlink_process(t->dp) == 0);
}

/* xp_local_addrs follows the router's addresses: an address of the router inside a PROXY
 * range is the router's, not proxied; gone again, it is proxied. Also after an overrun of the
 * rtnetlink socket (a burst of changes into a tiny receive buffer): the resync must catch up. */
static void check_local_addrs(void)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(PORT)};
	int rl, zero = 0, one = 1, rcvbuf = 1, ret;
	struct tdp t;
	char *out, w;

	fprintf(stderr, "--- local addresses\n");
	rl = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	REQUIRE(rl >= 0, "socket");
	setsockopt(rl, SOL_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	setsockopt(rl, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	REQUIRE(bind(rl, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(rl, 64) == 0,
		"router listener: %s", strerror(errno));

	ret = tdp_up(&t, CFG_REDIRECT_AUTO, true);
	REQUIRE(ret == 0, "datapath up: %s", strerror(-ret));
	CHECKF((dp_redirect_mode(t.dp) == XP_REDIRECT_PEER) ==
		       (strstr(dp_redirect_mode_why(t.dp), ">= 6.8") != NULL),
	       "auto: mode %d because '%s'", dp_redirect_mode(t.dp), dp_redirect_mode_why(t.dp));
	fprintf(stderr, "  auto chose %s: %s\n",
		dp_redirect_mode(t.dp) == XP_REDIRECT_PEER ? "peer" : "plain",
		dp_redirect_mode_why(t.dp));

	/* The router's own LAN address is local from the start (initial dump). */
	w = land_addr(&t, rl, AF_INET, "10.9.1.1");
	CHECKF(w == 'r', "router LAN address went to '%c'", w);

	w = land_addr(&t, rl, AF_INET, "10.9.2.77");
	CHECKF(w == 'p', "10.9.2.77 before it is the router's: '%c'", w);
	out = t_cmd("ip addr add 10.9.2.77/32 dev lo && ip addr add fd00:9:2::77/128 dev lo");
	CHECKF(!out[0], "%s", out);
	free(out);
	settle(&t);
	w = land_addr(&t, rl, AF_INET, "10.9.2.77");
	CHECKF(w == 'r', "10.9.2.77 as the router's address went to '%c'", w);
	w = land_addr(&t, rl, AF_INET6, "fd00:9:2::77");
	CHECKF(w == 'r', "fd00:9:2::77 as the router's address went to '%c'", w);
	out = t_cmd("ip addr del 10.9.2.77/32 dev lo && ip addr del fd00:9:2::77/128 dev lo");
	free(out);
	settle(&t);
	w = land_addr(&t, rl, AF_INET, "10.9.2.77");
	CHECKF(w == 'p', "10.9.2.77 after it was removed went to '%c'", w);

	/* Overrun: the kernel drops notifications; dp_netlink_process() must resync. */
	CHECK(setsockopt(dp_netlink_fd(t.dp), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0);
	out = t_cmd("for i in $(seq 100 250); do echo addr add 10.9.2.$i/32 dev lo; done | "
		    "ip -batch -");
	CHECKF(!out[0], "%s", out);
	free(out);
	settle(&t);
	w = land_addr(&t, rl, AF_INET, "10.9.2.250");
	CHECKF(w == 'r', "after an overrun, the last new address went to '%c'", w);
	w = land_addr(&t, rl, AF_INET, "10.9.2.100");
	CHECKF(w == 'r', "after an overrun, the first new address went to '%c'", w);
	out = t_cmd("for i in $(seq 100 250); do echo addr del 10.9.2.$i/32 dev lo; done | "
		    "ip -batch -");
	free(out);
	settle(&t);
	w = land_addr(&t, rl, AF_INET, "10.9.2.180");
	CHECKF(w == 'p', "after the burst of deletions, 10.9.2.180 went to '%c'", w);

	/* More router addresses than xp_local_addrs holds, then all of them replaced by one
	 * new address: the stale entries must not keep the new one out. */
	out = t_cmd(
		"for i in $(seq 0 1099); do echo addr add 10.77.$((i / 200)).$((i %% 200 + 1))/32 "
		"dev lo; done | ip -batch -");
	CHECKF(!out[0], "%s", out);
	free(out);
	settle(&t);
	out = t_cmd("{ for i in $(seq 0 1099); do echo addr del 10.77.$((i / 200)).$((i %% 200 + "
		    "1))/32 "
		    "dev lo; done; echo addr add 10.9.2.78/32 dev lo; } | ip -batch -");
	CHECKF(!out[0], "%s", out);
	free(out);
	settle(&t);
	w = land_addr(&t, rl, AF_INET, "10.9.2.78");
	CHECKF(w == 'r', "new address after a full xp_local_addrs went to '%c'", w);
	free(t_cmd("ip addr del 10.9.2.78/32 dev lo"));

	tdp_down(&t);
	close(rl);
}

/* The janitor sweeps in bounded steps (~64 Ki entries a tick, read in batches): with more
 * expired entries than one step looks at, the first call cannot finish, later calls resume
 * where it stopped, every expired entry goes and every live one stays. */
static void check_janitor(void)
{
	struct dp_opts opts = {.bpf_obj = bpf_obj, .no_lan_wan = true};
	struct xp_dst_verdict dv = {.verdict = XP_V_DIRECT};
	struct xp_dst_key dk = {0};
	enum { N_DEAD = 100000, N_LIVE = 50 };
	struct dp *dp = NULL;
	struct cfg cfg;
	char err[256];
	int ret, calls = 0, removed = 0, first = -1;

	fprintf(stderr, "--- janitor in bounded steps\n");
	make_cfg(&cfg, CFG_REDIRECT_AUTO);
	cfg.global.dst_entries = 131072;
	ret = dp_create(&cfg, &opts, &dp, err, sizeof(err));
	CHECKF(ret == 0, "janitor: %s", err);
	if (ret)
		return;
	addr16(AF_INET, "198.18.0.0", dk.addr);
	dv.expires_ns = dp_now_ns() - 1;
	for (uint32_t i = 0; i < N_DEAD + N_LIVE; i++) {
		if (i == N_DEAD)
			dv.expires_ns = dp_now_ns() + 3600 * 1000000000ULL;
		dk.addr[13] = (uint8_t)(i >> 16);
		dk.addr[14] = (uint8_t)(i >> 8);
		dk.addr[15] = (uint8_t)i;
		if (dp_dst_set(dp, &dk, &dv)) {
			CHECKF(0, "dst_set %u: %s", i, strerror(errno));
			break;
		}
	}
	while (calls < 10) {
		ret = dp_janitor(dp);
		CHECKF(ret >= 0, "janitor: %d", ret);
		if (ret <= 0)
			break;
		if (first < 0)
			first = ret;
		removed += ret;
		calls++;
	}
	/* a step looks at 64 Ki entries, plus at most one batch (1 Ki) past them */
	CHECKF(first > 0 && first < 65 * 1024, "first step removed %d (bound 66560)", first);
	CHECKF(calls >= 2, "a %d-entry sweep took %d steps (want >= 2)", N_DEAD + N_LIVE, calls);
	CHECKF(removed == N_DEAD, "removed %d expired entries, want %d", removed, N_DEAD);
	for (uint32_t i = N_DEAD; i < N_DEAD + N_LIVE; i++) {
		dk.addr[13] = (uint8_t)(i >> 16);
		dk.addr[14] = (uint8_t)(i >> 8);
		dk.addr[15] = (uint8_t)i;
		if (dp_dst_del(dp, &dk) != 0) {
			CHECKF(0, "live entry %u was removed", i);
			break;
		}
	}
	dp_destroy(dp);
	check_clean("janitor");
}

/* dp_opts.no_lan_wan: the pair and the maps only; nothing on the LAN/WAN devices. And L3
 * devices (no link-layer header) get the _l3 programs. */
static void check_variants(void)
{
	struct dp_opts opts = {.bpf_obj = bpf_obj, .no_lan_wan = true};
	char *tuns[2] = {(char *)"xptun0", (char *)"xptun1"};
	struct dp *dp = NULL;
	struct cfg cfg;
	char err[256], *out;
	int ret;

	fprintf(stderr, "--- no_lan_wan, L3 devices\n");
	make_cfg(&cfg, CFG_REDIRECT_AUTO);
	ret = dp_create(&cfg, &opts, &dp, err, sizeof(err));
	CHECKF(ret == 0, "no_lan_wan: %s", err);
	if (!ret) {
		ret = dp_attach(dp, err, sizeof(err));
		CHECKF(ret == 0, "no_lan_wan attach: %s", err);
		CHECK(dp_attach(dp, err, sizeof(err)) == -EALREADY);
		check_tc("xp0", "ingress", "xp_proxy_reply:", "handle 0x5871");
		CHECK(t_cmd_lacks("clsact", "tc qdisc show dev lan0; tc qdisc show dev wan0"));
		dp_destroy(dp);
	}
	check_clean("no_lan_wan");

	out = t_cmd("ip tuntap add dev xptun0 mode tun && ip tuntap add dev xptun1 mode tun");
	CHECKF(!out[0], "%s", out);
	free(out);
	make_cfg(&cfg, CFG_REDIRECT_AUTO);
	cfg.global.lan = &tuns[0];
	cfg.global.wan = &tuns[1];
	opts.no_lan_wan = false;
	ret = dp_create(&cfg, &opts, &dp, err, sizeof(err));
	CHECKF(ret == 0, "L3 devices: %s", err);
	if (!ret) {
		ret = dp_attach(dp, err, sizeof(err));
		CHECKF(ret == 0, "L3 attach: %s", err);
		check_tc("xptun0", "ingress", "xp_lan_ingress_:", "handle 0x5871");
		check_tc("xptun1", "egress", "xp_wan_egress_l:", "handle 0x5871");
		check_tc("xptun1", "ingress", "xp_wan_ingress:", "handle 0x5871");
		dp_destroy(dp);
	}
	CHECK(t_cmd_lacks("clsact", "tc qdisc show dev xptun0; tc qdisc show dev xptun1"));
	out = t_cmd("ip link del xptun0; ip link del xptun1");
	free(out);
}

static int open_ns(const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0, "%s: %s", path, strerror(errno));
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		/* clang-format off */
		{"client", required_argument, NULL, 'c'},
		{"server", required_argument, NULL, 's'},
		{"bpf-obj", required_argument, NULL, 'o'},
		{"abi-obj", required_argument, NULL, 'a'},
		{"mode", required_argument, NULL, 'm'},
		{"verbose", no_argument, NULL, 'v'},
		{},
		/* clang-format on */
	};
	const char *mode = "all";
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(PORT)};
	int opt, zero = 0, one = 1;

	log_set_level(XP_LOG_WARN);
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'c':
			ns_client = open_ns(optarg);
			break;
		case 's':
			ns_server = open_ns(optarg);
			break;
		case 'o':
			bpf_obj = optarg;
			break;
		case 'm':
			mode = optarg;
			break;
		case 'a':
			abi_obj = optarg;
			break;
		case 'v':
			log_set_level(XP_LOG_DEBUG);
			break;
		default:
			return 2;
		}
	}
	REQUIRE(ns_client >= 0 && ns_server >= 0,
		"usage: --client NS --server NS (run by dp_netns.sh)");
	if (!strcmp(mode, "nocaps")) {
		/* Run by dp_netns.sh without CAP_SYS_ADMIN in its bounding set. */
		struct dp *dp = NULL;
		struct cfg cfg;
		char err[256];
		int ret;

		make_cfg(&cfg, CFG_REDIRECT_AUTO);
		ret = dp_create(&cfg, NULL, &dp, err, sizeof(err));
		CHECKF(ret == -EPERM && strstr(err, "missing CAP_SYS_ADMIN") && !dp, "%d %s", ret,
		       err);
		return t_done("test_dp_netns (no CAP_SYS_ADMIN)");
	}
	ns_router = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	REQUIRE(ns_router >= 0, "own netns");
	signal(SIGPIPE, SIG_IGN);

	/* The real server: [::]:8080 in the server netns, both families. */
	REQUIRE(setns(ns_server, CLONE_NEWNET) == 0, "setns server");
	srv_listener = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	REQUIRE(setns(ns_router, CLONE_NEWNET) == 0, "setns back");
	REQUIRE(srv_listener >= 0, "server socket");
	setsockopt(srv_listener, SOL_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	setsockopt(srv_listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	REQUIRE(bind(srv_listener, (struct sockaddr *)&a, sizeof(a)) == 0, "server bind: %s",
		strerror(errno));
	REQUIRE(listen(srv_listener, 128) == 0, "server listen");

	if (!strcmp(mode, "all") || !strcmp(mode, "peer"))
		run_mode(CFG_REDIRECT_PEER);
	if (!strcmp(mode, "all") || !strcmp(mode, "plain"))
		run_mode(CFG_REDIRECT_PLAIN);
	if (!strcmp(mode, "all") || !strcmp(mode, "takeover")) {
		check_takeover();
		check_preflight();
		check_rules();
		check_local_addrs();
		check_variants();
		check_janitor();
	}
	return t_done("test_dp_netns");
}
