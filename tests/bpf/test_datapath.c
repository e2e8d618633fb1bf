// SPDX-License-Identifier: GPL-2.0-only
/*
 * test_datapath - every tc program of bpf/xproxy.bpf.c through BPF_PROG_TEST_RUN.
 *
 * The skeleton is loaded three times with different load-time config (xp_cfg):
 *   plain   redirect = plain, UDP proxying on, DROP events on, 4 workers
 *   peer    redirect = peer, UDP off, FLOW_NEW for every verdict, a 4 KiB ring buffer
 *   bare    the object's defaults (no xp0: proxy verdicts cannot be redirected)
 * Each test starts from empty maps, zeroed counters, no events and a fresh heartbeat, fills
 * what it needs directly (maps, xp_ctl through the mmap), runs crafted packets and asserts
 * the return code, the output bytes where the program rewrites them, the flow entry, the
 * ring-buffer events and the counters.
 *
 * The process runs in a network namespace of its own (unshare), where it creates veth pairs
 * to have real ifindexes for skb->ifindex; the namespace and everything in it disappear with
 * the process, whatever way it exits. Needs CAP_BPF/CAP_SYS_ADMIN and CAP_NET_ADMIN: exits
 * 77 with a message when they are missing.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>

#include <cmocka.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <xproxy/bpf_abi.h>

#include "xproxy.skel.h"
#include "pkt.h"

enum { P_LAN, P_LAN_L3, P_WAN_EG, P_WAN_EG_L3, P_WAN_IN, P_PX_IN, P_PX_REPLY, P__N };

static const uint8_t mac_xp0p[6] = {0x02, 0x58, 0x50, 0x00, 0x00, 0x02};
static const uint8_t mac_xp0[6] = {0x02, 0x58, 0x50, 0x00, 0x00, 0x01};
static const uint8_t mac_wan[6] = {0x02, 0x77, 0x41, 0x4e, 0x00, 0x01};

#define MARK	0x5870
#define OUT_ANY 0

struct inst {
	const char *name;
	uint32_t rules_dirty[64]; /* xp_rules slots written since the last reset */
	int n_rules_dirty;
	int listeners_dirty;
	struct xproxy_bpf *skel;
	struct ring_buffer *rb;
	int prog[P__N];
	int lookup; /* xp_proxy_lookup (sk_lookup, not a tc program) */
	int flows, dst, rules, cidrs, pranges, listeners, local, ifaces, frags, stats;
};

static struct inst I_plain = {.name = "plain"}, I_peer = {.name = "peer"},
		   I_bare = {.name = "bare"};
static unsigned int if_lan, if_wan, if_xp0;
static int ncpu;

/* ------------------------------------------------------------------------------ events */

struct ev {
	uint8_t data[128];
	size_t len;
};
static struct ev evs[512];
static int n_evs;

static int ev_cb(void *ctx, void *data, size_t len)
{
	if (n_evs < (int)(sizeof(evs) / sizeof(evs[0]))) {
		memcpy(evs[n_evs].data, data, len < 128 ? len : 128);
		evs[n_evs].len = len;
		n_evs++;
	}
	return 0;
}

static void ev_collect(struct inst *in)
{
	n_evs = 0;
	assert_true(ring_buffer__consume(in->rb) >= 0);
}

/* The idx-th event of a type, or NULL. */
static const void *ev_find(uint16_t type, int idx)
{
	int i;

	for (i = 0; i < n_evs; i++) {
		const struct xp_ev_hdr *h = (const void *)evs[i].data;

		if (h->type == type && idx-- == 0)
			return h;
	}
	return NULL;
}

static int ev_count(uint16_t type)
{
	int i, n = 0;

	for (i = 0; i < n_evs; i++)
		n += ((const struct xp_ev_hdr *)evs[i].data)->type == type;
	return n;
}

/* ------------------------------------------------------------------------------ set-up */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int load(struct inst *in, const struct xp_bpf_config *cfg, uint32_t ringbuf)
{
	struct xproxy_bpf *s;
	int err;

	s = xproxy_bpf__open();
	if (!s)
		return -errno;
	if (cfg)
		s->rodata->xp_cfg = *cfg;
	if (ringbuf)
		bpf_map__set_max_entries(s->maps.xp_events, ringbuf);
	err = xproxy_bpf__load(s);
	if (err) {
		xproxy_bpf__destroy(s);
		return err;
	}
	in->skel = s;
	in->prog[P_LAN] = bpf_program__fd(s->progs.xp_lan_ingress);
	in->prog[P_LAN_L3] = bpf_program__fd(s->progs.xp_lan_ingress_l3);
	in->prog[P_WAN_EG] = bpf_program__fd(s->progs.xp_wan_egress);
	in->prog[P_WAN_EG_L3] = bpf_program__fd(s->progs.xp_wan_egress_l3);
	in->prog[P_WAN_IN] = bpf_program__fd(s->progs.xp_wan_ingress);
	in->prog[P_PX_IN] = bpf_program__fd(s->progs.xp_proxy_ingress);
	in->prog[P_PX_REPLY] = bpf_program__fd(s->progs.xp_proxy_reply);
	in->lookup = bpf_program__fd(s->progs.xp_proxy_lookup);
	in->flows = bpf_map__fd(s->maps.xp_flows);
	in->dst = bpf_map__fd(s->maps.xp_dst_verdicts);
	in->rules = bpf_map__fd(s->maps.xp_rules);
	in->cidrs = bpf_map__fd(s->maps.xp_cidrs);
	in->pranges = bpf_map__fd(s->maps.xp_pranges);
	in->listeners = bpf_map__fd(s->maps.xp_listeners);
	in->local = bpf_map__fd(s->maps.xp_local_addrs);
	in->ifaces = bpf_map__fd(s->maps.xp_ifaces);
	in->frags = bpf_map__fd(s->maps.xp_frags);
	in->stats = bpf_map__fd(s->maps.xp_stats);
	in->rb = ring_buffer__new(bpf_map__fd(s->maps.xp_events), ev_cb, NULL, NULL);
	return in->rb ? 0 : -errno;
}

static void map_clear(int fd)
{
	uint8_t key[64];

	while (bpf_map_get_next_key(fd, NULL, key) == 0)
		assert_int_equal(bpf_map_delete_elem(fd, key), 0);
}

static void stats_zero(struct inst *in)
{
	struct xp_stats *z = calloc(ncpu, sizeof(*z));
	uint32_t k = 0;

	assert_non_null(z);
	assert_int_equal(bpf_map_update_elem(in->stats, &k, z, BPF_ANY), 0);
	free(z);
}

static void stats_get(struct inst *in, struct xp_stats *sum)
{
	struct xp_stats *v = calloc(ncpu, sizeof(*v));
	uint64_t *d = (uint64_t *)sum;
	uint32_t k = 0;
	size_t i;
	int c;

	assert_non_null(v);
	assert_int_equal(bpf_map_lookup_elem(in->stats, &k, v), 0);
	memset(sum, 0, sizeof(*sum));
	for (c = 0; c < ncpu; c++) {
		const uint64_t *s = (const uint64_t *)&v[c];

		for (i = 0; i < sizeof(*sum) / 8; i++)
			d[i] += s[i];
	}
	free(v);
}

static struct inst *reset(struct inst *in)
{
	uint32_t k;

	map_clear(in->flows);
	map_clear(in->dst);
	map_clear(in->cidrs);
	map_clear(in->local);
	map_clear(in->ifaces);
	map_clear(in->frags);
	if (in->listeners_dirty)
		for (k = 0; k < 2 * XP_MAX_WORKERS; k++)
			bpf_map_delete_elem(in->listeners, &k);
	in->listeners_dirty = 0;
	while (in->n_rules_dirty > 0) {
		struct xp_rule zero = {};

		k = in->rules_dirty[--in->n_rules_dirty];
		assert_int_equal(bpf_map_update_elem(in->rules, &k, &zero, BPF_ANY), 0);
	}
	stats_zero(in);
	memset(&in->skel->bss->xp_ctl, 0, sizeof(in->skel->bss->xp_ctl));
	in->skel->bss->xp_ctl.heartbeat_ns = now_ns();
	ev_collect(in);
	n_evs = 0;
	return in;
}

/* ------------------------------------------------------------------------------ running */

struct run {
	uint32_t retval;
	uint8_t out[PKT_MAX + 64];
	uint32_t out_len;
};

/* test_run's own error (EINVAL for a frame shorter than Ethernet), or 0 */
static int run_raw(struct inst *in, int prog, const void *data, size_t len, unsigned int ifindex,
		   uint32_t mark, struct run *r)
{
	struct __sk_buff ctx = {.ifindex = ifindex, .mark = mark};
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = data, .data_size_in = (uint32_t)len,
		    .data_out = r->out, .data_size_out = sizeof(r->out), .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = 1);
	int err;

	memset(r, 0, sizeof(*r));
	err = bpf_prog_test_run_opts(in->prog[prog], &o);
	if (err)
		return -errno;
	r->retval = o.retval;
	r->out_len = o.data_size_out;
	return 0;
}

static uint32_t run(struct inst *in, int prog, const struct pkt *p, unsigned int ifindex,
		    struct run *r)
{
	assert_int_equal(run_raw(in, prog, p->b, p->len, ifindex, 0, r), 0);
	return r->retval;
}

static uint32_t send_spec(struct inst *in, int prog, const struct pkt_spec *s, unsigned int ifindex,
			  struct run *r)
{
	struct pkt p;

	pkt_build(s, &p);
	return run(in, prog, &p, ifindex, r);
}

static int flow_get(struct inst *in, const struct pkt_spec *s, struct xp_flow *f)
{
	struct xp_tuple t;

	pkt_tuple(s, &t);
	return bpf_map_lookup_elem(in->flows, &t, f);
}

static void flow_put(struct inst *in, const struct pkt_spec *s, uint8_t verdict, uint8_t vsrc,
		     uint8_t origin, unsigned int ifindex, uint16_t outbound)
{
	struct xp_flow f = {
		/* older than a tick: the datapath's clock has tick resolution */
		.first_ns = now_ns() - 100000000,
		.last_ns = now_ns() - 100000000,
		.rule_id = 4,
		.ifindex = ifindex,
		.outbound_id = outbound,
		.verdict = verdict,
		.vsrc = vsrc,
		.origin = origin,
		.tcp_state = s->proto == IPPROTO_TCP ? XP_TCP_SYN_SEEN : 0,
		.packets = 5,
	};
	struct xp_tuple t;

	pkt_tuple(s, &t);
	assert_int_equal(bpf_map_update_elem(in->flows, &t, &f, BPF_ANY), 0);
}

static void dst_put(struct inst *in, const char *addr, int v6, uint16_t port, uint8_t proto,
		    uint8_t verdict, uint16_t outbound, uint32_t tag, uint64_t expires)
{
	struct xp_dst_key k = {.port = port, .l4proto = proto};
	struct xp_dst_verdict v = {
		.expires_ns = expires, .tag = tag, .outbound_id = outbound, .verdict = verdict};

	pkt_addr16(addr, v6, k.addr);
	assert_int_equal(bpf_map_update_elem(in->dst, &k, &v, BPF_ANY), 0);
}

static void local_put(struct inst *in, const char *addr, int v6)
{
	uint8_t k[16], one = 1;

	pkt_addr16(addr, v6, k);
	assert_int_equal(bpf_map_update_elem(in->local, k, &one, BPF_ANY), 0);
}

static void iface_put(struct inst *in, unsigned int ifindex, const uint8_t *mac, uint8_t flags)
{
	struct xp_iface v = {.flags = flags};

	if (mac)
		memcpy(v.mac, mac, 6);
	assert_int_equal(bpf_map_update_elem(in->ifaces, &ifindex, &v, BPF_ANY), 0);
}

/* ------------------------------------------------------------------------------ rules */

static void rule_put(struct inst *in, uint32_t gen, uint32_t i, const struct xp_rule *r)
{
	uint32_t k = gen * XP_MAX_RULES + i;

	assert_true(in->n_rules_dirty < 64);
	in->rules_dirty[in->n_rules_dirty++] = k;
	assert_int_equal(bpf_map_update_elem(in->rules, &k, r, BPF_ANY), 0);
}

static void ruleset(struct inst *in, uint32_t gen, uint32_t count, uint8_t fb_verdict,
		    uint32_t fb_rule, uint16_t fb_outbound)
{
	struct xp_ruleset *rs = &in->skel->bss->xp_ctl.rulesets[gen];

	rs->first = gen * XP_MAX_RULES;
	rs->count = count;
	rs->fallback_verdict = fb_verdict;
	rs->fallback_rule_id = fb_rule;
	rs->fallback_outbound = fb_outbound;
	in->skel->bss->xp_ctl.rules_gen = gen;
}

/* "10.0.0.0/8" or "2001:db8::/32" into set `set`. */
static void cidr_put(struct inst *in, uint32_t set, const char *cidr, uint8_t verdict,
		     uint32_t rule_id, uint16_t outbound)
{
	struct xp_cidr_key k = {.set_id = htonl(set)};
	struct xp_cidr_val v = {.rule_id = rule_id, .outbound_id = outbound, .verdict = verdict};
	char buf[64], *slash;
	int v6, plen, i;

	snprintf(buf, sizeof(buf), "%s", cidr);
	slash = strchr(buf, '/');
	assert_non_null(slash);
	*slash = 0;
	plen = atoi(slash + 1);
	v6 = strchr(buf, ':') != NULL;
	pkt_addr16(buf, v6, k.addr);
	if (!v6)
		plen += 96;
	for (i = plen; i < 128; i++) /* masked, as the compiler stores them */
		k.addr[i / 8] &= (uint8_t) ~(0x80 >> (i % 8));
	k.prefixlen = 32 + plen;
	assert_int_equal(bpf_map_update_elem(in->cidrs, &k, &v, BPF_ANY), 0);
}

static void prange_put(struct inst *in, uint32_t idx, uint16_t lo, uint16_t hi, uint8_t verdict,
		       uint32_t rule_id, uint16_t outbound)
{
	struct xp_prange v = {.lo = lo,
			      .hi = hi,
			      .rule_id = rule_id,
			      .outbound_id = outbound,
			      .verdict = verdict};

	assert_int_equal(bpf_map_update_elem(in->pranges, &idx, &v, BPF_ANY), 0);
}

#define RULE_ANY_PORTS .dport_lo = 0, .dport_hi = 65535, .sport_lo = 0, .sport_hi = 65535

/* ------------------------------------------------------------------------------ checks */

static void check_flow(struct inst *in, const struct pkt_spec *s, uint8_t verdict, uint8_t vsrc,
		       uint32_t rule_id, uint16_t outbound, uint8_t origin, unsigned int ifindex,
		       uint8_t hook)
{
	struct xp_flow f;
	uint64_t now = now_ns();

	assert_int_equal(flow_get(in, s, &f), 0);
	assert_int_equal(f.verdict, verdict);
	assert_int_equal(f.vsrc, vsrc);
	assert_int_equal(f.rule_id, rule_id);
	assert_int_equal(f.outbound_id, outbound);
	assert_int_equal(f.origin, origin);
	assert_int_equal(f.ifindex, ifindex);
	assert_int_equal(f.hook, hook);
	assert_true(f.first_ns > 0 && f.first_ns <= now);
	assert_true(f.last_ns >= f.first_ns && f.last_ns <= now);
	assert_int_equal(f.packets, 1);
	if (s->proto == IPPROTO_TCP)
		assert_int_equal(f.tcp_state & XP_TCP_SYN_SEEN,
				 s->tcp_flags & TH_SYN ? XP_TCP_SYN_SEEN : 0);
}

static void check_no_flow(struct inst *in, const struct pkt_spec *s)
{
	struct xp_flow f;

	assert_int_not_equal(flow_get(in, s, &f), 0);
}

static void check_ev_flow(const struct xp_ev_flow *e, uint16_t type, const struct pkt_spec *s,
			  uint8_t verdict, uint8_t vsrc, uint32_t rule_id, uint16_t outbound,
			  uint8_t origin, unsigned int ifindex, uint8_t hook, uint32_t tag)
{
	struct xp_tuple t;

	assert_non_null(e);
	pkt_tuple(s, &t);
	assert_int_equal(e->hdr.version, XP_EV_VERSION);
	assert_int_equal(e->hdr.type, type);
	assert_int_equal(e->hdr.len, sizeof(*e));
	assert_int_equal(e->hdr.hook, hook);
	assert_true(e->hdr.ts_ns > 0 && e->hdr.ts_ns <= now_ns());
	assert_memory_equal(&e->tuple, &t, sizeof(t));
	assert_int_equal(e->ifindex, ifindex);
	assert_int_equal(e->verdict, verdict);
	assert_int_equal(e->vsrc, vsrc);
	assert_int_equal(e->rule_id, rule_id);
	assert_int_equal(e->outbound_id, outbound);
	assert_int_equal(e->origin, origin);
	assert_int_equal(e->tag, tag);
}

/* A plain-mode redirect into the netns: the frame is the input with xp0p's MAC in front. */
static void check_to_proxy_plain(const struct run *r, const struct pkt *p)
{
	assert_int_equal(r->retval, TC_ACT_REDIRECT);
	assert_int_equal(r->out_len, p->len);
	assert_memory_equal(r->out, mac_xp0p, 6);
	assert_memory_equal(r->out + 6, p->b + 6, p->len - 6);
}

/* ============================================================================= tests */

/* IPv4/IPv6 x TCP/UDP x first packet/established x verdict source (flow entry, destination
 * map, rule, fallback): the full record of each. */
static void test_matrix(void **state)
{
	enum { SRC_FLOW, SRC_DST, SRC_RULE, SRC_FALLBACK, SRC__N };
	static const uint8_t exp_vsrc[SRC__N] = {XP_SRC_FLOW, XP_SRC_DSTMAP, XP_SRC_RULE,
						 XP_SRC_FALLBACK};
	int v6, udp, src;

	for (v6 = 0; v6 < 2; v6++)
		for (udp = 0; udp < 2; udp++)
			for (src = 0; src < SRC__N; src++) {
				struct inst *in = reset(&I_plain);
				const char *c = v6 ? "2001:db8:1::10" : "192.168.1.10";
				const char *d = v6 ? "2001:db8:99::7" : "198.51.100.7";
				struct pkt_spec s1, s2;
				struct xp_stats st;
				struct xp_flow f;
				struct pkt p1, p2;
				struct run r;
				uint32_t rule_id = 0;
				uint16_t ob = 0;

				if (udp) {
					s1 = v6 ? PKT_UDP6(c, 5353, d, 443)
						: PKT_UDP4(c, 5353, d, 443);
					s2 = s1;
				} else {
					s1 = v6 ? PKT_TCP6(c, 40001, d, 443, TH_SYN)
						: PKT_TCP4(c, 40001, d, 443, TH_SYN);
					s2 = s1;
					s2.tcp_flags = TH_ACK | TH_PSH;
					s2.payload = 100;
				}
				pkt_build(&s1, &p1);
				pkt_build(&s2, &p2);
				ruleset(in, 0, 0, XP_V_DIRECT, 0, 0);

				switch (src) {
				case SRC_FLOW:
					flow_put(in, &s1, XP_V_PROXY, XP_SRC_RULE, XP_ORIGIN_LAN,
						 if_lan, 7);
					run(in, P_LAN, &p2, if_lan, &r);
					check_to_proxy_plain(&r, &p2);
					assert_int_equal(flow_get(in, &s1, &f), 0);
					assert_int_equal(f.packets, 6);
					assert_true(f.last_ns > f.first_ns);
					assert_int_equal(f.verdict, XP_V_PROXY);
					assert_int_equal(f.vsrc, XP_SRC_RULE); /* not rewritten */
					assert_int_equal(f.outbound_id, 7);
					ev_collect(in);
					assert_int_equal(n_evs, 0);
					stats_get(in, &st);
					assert_int_equal(st.pkts[XP_V_PROXY], 1);
					assert_int_equal(st.flows[XP_V_PROXY], 0);
					assert_int_equal(st.hook_pkts[XP_HOOK_LAN_INGRESS], 1);
					continue;
				case SRC_DST:
					dst_put(in, d, v6, 443, s1.proto, XP_V_PROXY, 3, 99, 0);
					ob = 3;
					break;
				case SRC_RULE: {
					struct xp_rule ru = {.rule_id = 2,
							     .dst_set = 5,
							     .outbound_id = 5,
							     .verdict = XP_V_PROXY,
							     RULE_ANY_PORTS};

					cidr_put(in, 5, v6 ? "2001:db8:99::/48" : "198.51.100.0/24",
						 XP_V_PROXY, 2, 0);
					rule_put(in, 0, 0, &ru);
					ruleset(in, 0, 1, XP_V_DIRECT, 0, 0);
					rule_id = 2;
					ob = 5;
					break;
				}
				case SRC_FALLBACK:
					ruleset(in, 0, 0, XP_V_PROXY, 9, 1);
					rule_id = 9;
					ob = 1;
					break;
				}

				/* first packet: a new flow */
				run(in, P_LAN, &p1, if_lan, &r);
				check_to_proxy_plain(&r, &p1);
				check_flow(in, &s1, XP_V_PROXY, exp_vsrc[src], rule_id, ob,
					   XP_ORIGIN_LAN, if_lan, XP_HOOK_LAN_INGRESS);
				ev_collect(in);
				assert_int_equal(n_evs, 1);
				check_ev_flow(ev_find(XP_EV_FLOW_NEW, 0), XP_EV_FLOW_NEW, &s1,
					      XP_V_PROXY, exp_vsrc[src], rule_id, ob, XP_ORIGIN_LAN,
					      if_lan, XP_HOOK_LAN_INGRESS, src == SRC_DST ? 99 : 0);
				stats_get(in, &st);
				assert_int_equal(st.pkts[XP_V_PROXY], 1);
				assert_int_equal(st.flows[XP_V_PROXY], 1);
				assert_int_equal(st.vsrc[exp_vsrc[src]], 1);

				/* established: the entry decides, nothing new is emitted */
				run(in, P_LAN, &p2, if_lan, &r);
				check_to_proxy_plain(&r, &p2);
				assert_int_equal(flow_get(in, &s1, &f), 0);
				assert_int_equal(f.packets, 2);
				assert_int_equal(f.vsrc, exp_vsrc[src]);
				ev_collect(in);
				assert_int_equal(n_evs, 0);
				stats_get(in, &st);
				assert_int_equal(st.pkts[XP_V_PROXY], 2);
				assert_int_equal(st.flows[XP_V_PROXY], 1);
				assert_int_equal(st.hook_pkts[XP_HOOK_LAN_INGRESS], 2);
			}
}

/* The destination map: (addr, port, proto) first, then (addr, 0, 0); expired or invalid
 * entries are skipped, not obeyed. */
static void test_dst_map(void **state)
{
	struct pkt_spec s = PKT_TCP4("192.168.1.10", 40002, "203.0.113.5", 443, TH_SYN);
	struct inst *in = reset(&I_plain);
	uint64_t now = now_ns(), past = now - 100000000; /* expired more than a tick ago */
	struct run r;

	ruleset(in, 0, 0, XP_V_DIRECT, 0, 0);
	/* both keys: the port-specific one wins */
	dst_put(in, "203.0.113.5", 0, 443, IPPROTO_TCP, XP_V_INSPECT, 4, 1, 0);
	dst_put(in, "203.0.113.5", 0, 0, 0, XP_V_PROXY, 2, 2, 0);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &s, XP_V_INSPECT, XP_SRC_DSTMAP, 0, 4, XP_ORIGIN_LAN, if_lan, 0);
	ev_collect(in);
	check_ev_flow(ev_find(XP_EV_FLOW_NEW, 0), XP_EV_FLOW_NEW, &s, XP_V_INSPECT, XP_SRC_DSTMAP,
		      0, 4, XP_ORIGIN_LAN, if_lan, 0, 1);

	/* another port: only the address-wide key applies */
	s.sport = 40003;
	s.dport = 8443;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &s, XP_V_PROXY, XP_SRC_DSTMAP, 0, 2, XP_ORIGIN_LAN, if_lan, 0);

	/* expired port key: fall back to the address key */
	dst_put(in, "203.0.113.5", 0, 8443, IPPROTO_TCP, XP_V_BLOCK, 0, 3, past);
	s.sport = 40004;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &s, XP_V_PROXY, XP_SRC_DSTMAP, 0, 2, XP_ORIGIN_LAN, if_lan, 0);

	/* both expired: the rules (fallback DIRECT) decide */
	dst_put(in, "203.0.113.5", 0, 0, 0, XP_V_PROXY, 2, 2, past);
	s.sport = 40005;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0, XP_ORIGIN_LAN, if_lan, 0);

	/* expiring in the future: obeyed */
	dst_put(in, "203.0.113.5", 0, 0, 0, XP_V_DNS, 6, 7, now + 60000000000ull);
	s.sport = 40006;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &s, XP_V_DNS, XP_SRC_DSTMAP, 0, 6, XP_ORIGIN_LAN, if_lan, 0);

	/* an entry whose verdict is not one (NONE, or out of range) is skipped */
	dst_put(in, "203.0.113.6", 0, 443, IPPROTO_TCP, XP_V_NONE, 0, 0, 0);
	dst_put(in, "203.0.113.6", 0, 0, 0, 9, 0, 0, 0);
	s = PKT_TCP4("192.168.1.10", 40007, "203.0.113.6", 443, TH_SYN);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0, XP_ORIGIN_LAN, if_lan, 0);

	/* IPv6 and UDP use the same keys */
	dst_put(in, "2001:db8:5::1", 1, 53, IPPROTO_UDP, XP_V_DNS, 1, 11, 0);
	s = PKT_UDP6("2001:db8:1::10", 33000, "2001:db8:5::1", 53);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &s, XP_V_DNS, XP_SRC_DSTMAP, 0, 1, XP_ORIGIN_LAN, if_lan, 0);
}

/* One rule (verdict PROXY, rule 1) against one packet: did it match? */
struct rule_case {
	const char *name;
	struct xp_rule rule;
	struct pkt_spec pkt;
	int match;
};

/* R(...): a PROXY rule 1 matching anything, with the case's conditions written over those
 * defaults (designated initializers overriding the defaults on purpose). */
#pragma GCC diagnostic ignored "-Woverride-init"
#define R(...) ((struct xp_rule){.verdict = XP_V_PROXY, .rule_id = 1, RULE_ANY_PORTS, __VA_ARGS__})
#define T4(dp) PKT_TCP4("192.168.1.10", 40000, "198.51.100.7", dp, TH_SYN)
#define T6(dp) PKT_TCP6("2001:db8:1::10", 40000, "2001:db8:99::7", dp, TH_SYN)
#define U4(dp) PKT_UDP4("192.168.1.10", 5000, "198.51.100.7", dp)
#define ICMP4  ((struct pkt_spec){.proto = 1, .src = "192.168.1.10", .dst = "198.51.100.7"})
#define ICMP6                                                                                      \
	((struct pkt_spec){.v6 = 1, .proto = 58, .src = "2001:db8:1::10", .dst = "2001:db8:99::7"})
#define GRE4                                                                                       \
	((struct pkt_spec){.proto = 47, .src = "192.168.1.10", .dst = "198.51.100.7", .payload = 8})

static void test_rule_conditions(void **state)
{
	struct inst *in = &I_plain;
	struct rule_case cases[] = {
		{"ipmask v4 / v4", R(.ipmask = XP_IP_V4), T4(443), 1},
		{"ipmask v4 / v6", R(.ipmask = XP_IP_V4), T6(443), 0},
		{"ipmask v6 / v6", R(.ipmask = XP_IP_V6), T6(443), 1},
		{"ipmask both", R(.ipmask = XP_IP_V4 | XP_IP_V6), T6(443), 1},
		{"l4 tcp / tcp", R(.l4mask = XP_L4_TCP), T4(443), 1},
		{"l4 tcp / udp", R(.l4mask = XP_L4_TCP), U4(443), 0},
		{"l4 udp / udp", R(.l4mask = XP_L4_UDP), U4(443), 1},
		{"l4 icmp / icmp", R(.l4mask = XP_L4_ICMP), ICMP4, 1},
		{"l4 icmp / icmpv6", R(.l4mask = XP_L4_ICMP), ICMP6, 1},
		{"l4 icmp / tcp", R(.l4mask = XP_L4_ICMP), T4(443), 0},
		{"l4 other / gre", R(.l4mask = XP_L4_OTHER), GRE4, 1},
		{"l4 tcp|udp / gre", R(.l4mask = XP_L4_TCP | XP_L4_UDP), GRE4, 0},
		{"dport in", R(.dport_lo = 80, .dport_hi = 90), T4(85), 1},
		{"dport lo edge", R(.dport_lo = 80, .dport_hi = 90), T4(80), 1},
		{"dport hi edge", R(.dport_lo = 80, .dport_hi = 90), T4(90), 1},
		{"dport above", R(.dport_lo = 80, .dport_hi = 90), T4(91), 0},
		{"dport below", R(.dport_lo = 80, .dport_hi = 90), T4(79), 0},
		{"!dport in", R(.dport_lo = 80, .dport_hi = 90, .flags = XP_RULE_F_NOT_DPORT),
		 T4(85), 0},
		{"!dport out", R(.dport_lo = 80, .dport_hi = 90, .flags = XP_RULE_F_NOT_DPORT),
		 T4(443), 1},
		{"dport 0 / icmp", R(.dport_lo = 0, .dport_hi = 0), ICMP4, 1},
		{"dport 1-65535 / icmp", R(.dport_lo = 1, .dport_hi = 65535), ICMP4, 0},
		{"sport in", R(.sport_lo = 40000, .sport_hi = 40000), T4(443), 1},
		{"sport out", R(.sport_lo = 1, .sport_hi = 1024), T4(443), 0},
		{"!sport", R(.sport_lo = 1, .sport_hi = 1024, .flags = XP_RULE_F_NOT_SPORT),
		 T4(443), 1},
		{"port set in", R(.prange_first = 0, .prange_count = 3), T4(85), 1},
		{"port set first", R(.prange_first = 0, .prange_count = 3), T4(22), 1},
		{"port set last", R(.prange_first = 0, .prange_count = 3), T4(443), 1},
		{"port set gap", R(.prange_first = 0, .prange_count = 3), T4(100), 0},
		{"port set below", R(.prange_first = 0, .prange_count = 3), T4(21), 0},
		{"port set above", R(.prange_first = 0, .prange_count = 3), T4(444), 0},
		{"!port set in",
		 R(.prange_first = 0, .prange_count = 3, .flags = XP_RULE_F_NOT_PRANGE), T4(85), 0},
		{"!port set out",
		 R(.prange_first = 0, .prange_count = 3, .flags = XP_RULE_F_NOT_PRANGE), T4(100),
		 1},
		{"dst set in", R(.dst_set = 10), T4(443), 1},
		{"dst set out", R(.dst_set = 11), T4(443), 0},
		{"!dst set in", R(.dst_set = 10, .flags = XP_RULE_F_NOT_DST), T4(443), 0},
		{"!dst set out", R(.dst_set = 11, .flags = XP_RULE_F_NOT_DST), T4(443), 1},
		{"dst set v6 in", R(.dst_set = 12), T6(443), 1},
		{"dst set ::/0 / v4 (hole)", R(.dst_set = 12), T4(443), 0},
		{"!dst set ::/0 / v4 (hole)", R(.dst_set = 12, .flags = XP_RULE_F_NOT_DST), T4(443),
		 1},
		{"src set in", R(.src_set = 13), T4(443), 1},
		{"src set out", R(.src_set = 11), T4(443), 0},
		{"!src set", R(.src_set = 13, .flags = XP_RULE_F_NOT_SRC), T4(443), 0},
		{"all of them",
		 R(.ipmask = XP_IP_V4, .l4mask = XP_L4_TCP, .dst_set = 10, .src_set = 13,
		   .dport_lo = 400, .dport_hi = 500, .sport_lo = 40000, .sport_hi = 40000,
		   .prange_first = 0, .prange_count = 3),
		 T4(443), 1},
		{"all but one (sport)",
		 R(.ipmask = XP_IP_V4, .l4mask = XP_L4_TCP, .dst_set = 10, .src_set = 13,
		   .dport_lo = 400, .dport_hi = 500, .sport_lo = 1, .sport_hi = 2,
		   .prange_first = 0, .prange_count = 3),
		 T4(443), 0},
		{"take dst set without a dst set", R(.take = XP_TAKE_DST_SET), T4(443), 0},
		{"take src set without a src set", R(.take = XP_TAKE_SRC_SET), T4(443), 0},
		{"take ports without intervals", R(.take = XP_TAKE_PORTS), T4(443), 0},
		{"unknown take", R(.take = 9), T4(443), 0},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got;

		reset(in);
		/* the sets and intervals the cases refer to */
		cidr_put(in, 10, "198.51.100.0/24", XP_V_PROXY, 1, 0);
		cidr_put(in, 11, "203.0.113.0/24", XP_V_PROXY, 1, 0);
		cidr_put(in, 12, "::/0", XP_V_PROXY, 1, 0);
		cidr_put(in, 12, "::ffff:0:0/96", XP_V_NONE, 0, 0);
		cidr_put(in, 13, "192.168.0.0/16", XP_V_PROXY, 1, 0);
		prange_put(in, 0, 22, 22, XP_V_PROXY, 1, 0);
		prange_put(in, 1, 80, 90, XP_V_PROXY, 1, 0);
		prange_put(in, 2, 443, 443, XP_V_PROXY, 1, 0);
		rule_put(in, 0, 0, &cases[i].rule);
		ruleset(in, 0, 1, XP_V_DIRECT, 0, 0);
		{
			struct xp_flow f;
			struct run r;

			send_spec(in, P_LAN, &cases[i].pkt, if_lan, &r);
			assert_int_equal(flow_get(in, &cases[i].pkt, &f), 0);
			got = f.vsrc == XP_SRC_RULE || f.vsrc == XP_SRC_NOPROXY;
			if (got != cases[i].match)
				fail_msg(
					"rule case '%s': matched %d, expected %d (vsrc %u rule %u)",
					cases[i].name, got, cases[i].match, f.vsrc, f.rule_id);
			if (got)
				assert_int_equal(f.rule_id, 1);
			else
				assert_int_equal(f.vsrc, XP_SRC_FALLBACK);
		}
	}
}

/* take: the verdict comes from the set or interval that matched. A merged dst-cidr block with
 * overlapping prefixes: the longest prefix holds the earliest covering rule. */
static void test_rule_take(void **state)
{
	struct inst *in = reset(&I_plain);
	struct xp_rule dst = {.rule_id = 100,
			      .dst_set = 20,
			      .take = XP_TAKE_DST_SET,
			      .verdict = XP_V_BLOCK,
			      RULE_ANY_PORTS};
	struct xp_rule srcr = {.rule_id = 200,
			       .src_set = 21,
			       .take = XP_TAKE_SRC_SET,
			       .verdict = XP_V_BLOCK,
			       RULE_ANY_PORTS};
	struct xp_rule ports = {.rule_id = 300,
				.prange_first = 0,
				.prange_count = 100,
				.take = XP_TAKE_PORTS,
				.verdict = XP_V_BLOCK,
				RULE_ANY_PORTS};
	struct {
		const char *src, *dst;
		uint16_t dport;
		uint8_t verdict, vsrc;
		uint32_t rule;
		uint16_t ob;
	} c[] = {
		/* dst block: [route] 1: dst 10.1.0.0/16 DIRECT, 2: dst 10.1.2.0/24 -> ob 2 (never
		 * reached inside 10.1/16, so stored as rule 1), 3: dst 10.0.0.0/8 -> ob 3 */
		{"192.168.1.10", "10.1.2.3", 0, XP_V_DIRECT, XP_SRC_RULE, 1, 0},
		{"192.168.1.10", "10.1.9.9", 0, XP_V_DIRECT, XP_SRC_RULE, 1, 0},
		{"192.168.1.10", "10.2.0.1", 0, XP_V_PROXY, XP_SRC_RULE, 3, 3},
		{"192.168.1.10", "2001:db8:aa::1", 0, XP_V_INSPECT, XP_SRC_RULE, 4, 4},
		{"192.168.1.10", "2001:db8:bb::1", 0, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0},
		/* not in the dst block: the src block (172.16/12 -> rule 5) */
		{"172.16.5.5", "198.51.100.1", 0, XP_V_PROXY, XP_SRC_RULE, 5, 9},
		/* neither: the port block, 100 intervals [600k + 1, 600k + 10] -> rule 10 + k,
		 * the last one (k = 99) a hole */
		{"192.168.1.10", "198.51.100.1", 0, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0},
		{"192.168.1.10", "198.51.100.1", 601, XP_V_PROXY, XP_SRC_RULE, 11, 11},
		{"192.168.1.10", "198.51.100.1", 610, XP_V_PROXY, XP_SRC_RULE, 11, 11},
		{"192.168.1.10", "198.51.100.1", 611, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0},
		{"192.168.1.10", "198.51.100.1", 600, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0},
		{"192.168.1.10", "198.51.100.1", 1, XP_V_PROXY, XP_SRC_RULE, 10, 10},
		{"192.168.1.10", "198.51.100.1", 10, XP_V_PROXY, XP_SRC_RULE, 10, 10},
		{"192.168.1.10", "198.51.100.1", 30005, XP_V_PROXY, XP_SRC_RULE, 60, 60},
		{"192.168.1.10", "198.51.100.1", 21606, XP_V_PROXY, XP_SRC_RULE, 46, 46},
		{"192.168.1.10", "198.51.100.1", 58805, XP_V_PROXY, XP_SRC_RULE, 108, 108},
		{"192.168.1.10", "198.51.100.1", 59405, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0},
		{"192.168.1.10", "198.51.100.1", 65535, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0},
	};
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		int v6 = strchr(c[i].dst, ':') != NULL;
		struct pkt_spec s =
			v6 ? PKT_TCP6("2001:db8:1::10", 40000, c[i].dst, c[i].dport, TH_SYN)
			   : PKT_TCP4(c[i].src, 40000, c[i].dst, c[i].dport, TH_SYN);
		struct xp_flow f;
		struct run r;
		int k;

		reset(in);
		cidr_put(in, 20, "10.0.0.0/8", XP_V_PROXY, 3, 3);
		cidr_put(in, 20, "10.1.0.0/16", XP_V_DIRECT, 1, 0);
		cidr_put(in, 20, "10.1.2.0/24", XP_V_DIRECT, 1, 0);
		cidr_put(in, 20, "2001:db8:aa::/48", XP_V_INSPECT, 4, 4);
		cidr_put(in, 20, "2001:db8:bb::/48", XP_V_NONE, 0, 0); /* a hole */
		cidr_put(in, 21, "172.16.0.0/12", XP_V_PROXY, 5, 9);
		for (k = 0; k < 100; k++)
			prange_put(in, k, (uint16_t)(600 * k + 1), (uint16_t)(600 * k + 10),
				   k == 99 ? XP_V_NONE : XP_V_PROXY, 10 + k, (uint16_t)(10 + k));
		rule_put(in, 0, 0, &dst);
		rule_put(in, 0, 1, &srcr);
		rule_put(in, 0, 2, &ports);
		ruleset(in, 0, 3, XP_V_DIRECT, 0, 0);
		send_spec(in, P_LAN, &s, if_lan, &r);
		assert_int_equal(flow_get(in, &s, &f), 0);
		if (f.verdict != c[i].verdict || f.vsrc != c[i].vsrc || f.rule_id != c[i].rule ||
		    f.outbound_id != c[i].ob)
			fail_msg(
				"take case %zu (%s -> %s:%u): got verdict %u vsrc %u rule %u ob %u",
				i, c[i].src, c[i].dst, s.dport, f.verdict, f.vsrc, f.rule_id,
				f.outbound_id);
	}
}

/* First match wins; the fallback and its absence; a bogus image never misroutes; the
 * generation flip. */
static void test_rule_order_and_fallback(void **state)
{
	struct inst *in = reset(&I_plain);
	struct xp_rule r443 = {.rule_id = 1,
			       .verdict = XP_V_DIRECT,
			       .dport_lo = 443,
			       .dport_hi = 443,
			       .sport_lo = 0,
			       .sport_hi = 65535};
	struct xp_rule rnet = {.rule_id = 2,
			       .dst_set = 30,
			       .verdict = XP_V_PROXY,
			       .outbound_id = 8,
			       RULE_ANY_PORTS};
	struct xp_rule bad = {.rule_id = 3, .verdict = 9, RULE_ANY_PORTS};
	struct pkt_spec s = T4(443);
	struct run r;

	s.dst = "10.9.9.9";
	cidr_put(in, 30, "10.0.0.0/8", XP_V_PROXY, 2, 0);
	rule_put(in, 0, 0, &r443);
	rule_put(in, 0, 1, &rnet);
	ruleset(in, 0, 2, XP_V_BLOCK, 77, 0);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_RULE, 1, 0, XP_ORIGIN_LAN, if_lan, 0);
	s.dport = 80;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &s, XP_V_PROXY, XP_SRC_RULE, 2, 8, XP_ORIGIN_LAN, if_lan, 0);
	/* neither: the fallback (BLOCK, rule 77) */
	s.dst = "11.0.0.1";
	s.tcp_flags = TH_SYN;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT); /* the RST */
	check_flow(in, &s, XP_V_BLOCK, XP_SRC_FALLBACK, 77, 0, XP_ORIGIN_LAN, if_lan, 0);

	/* no rules applied yet: fallback NONE is DIRECT */
	reset(in);
	ruleset(in, 0, 0, XP_V_NONE, 0, 0);
	s = T4(443);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0, XP_ORIGIN_LAN, if_lan, 0);
	/* a fallback verdict out of range: DIRECT */
	reset(in);
	ruleset(in, 0, 0, 12, 5, 0);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_FALLBACK, 5, 0, XP_ORIGIN_LAN, if_lan, 0);
	/* a matching rule with a verdict out of range: DIRECT, attributed to the rule */
	reset(in);
	rule_put(in, 0, 0, &bad);
	ruleset(in, 0, 1, XP_V_PROXY, 0, 0);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_RULE, 3, 0, XP_ORIGIN_LAN, if_lan, 0);
	/* a ruleset pointing past the array: the walk stops, the fallback decides */
	reset(in);
	ruleset(in, 1, 5, XP_V_PROXY, 6, 2);
	in->skel->bss->xp_ctl.rulesets[1].first = 2 * XP_MAX_RULES - 2;
	rule_put(in, 1, XP_MAX_RULES - 2, &r443);
	s.dport = 80;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &s, XP_V_PROXY, XP_SRC_FALLBACK, 6, 2, XP_ORIGIN_LAN, if_lan, 0);
	/* a count beyond XP_MAX_RULES is clamped, not trusted */
	reset(in);
	ruleset(in, 0, 0xffffffff, XP_V_DIRECT, 0, 0);
	s.sport = 40100;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_FALLBACK, 0, 0, XP_ORIGIN_LAN, if_lan, 0);

	/* the generation flip: gen 1 says PROXY, gen 0 DIRECT; rules_gen picks (bit 0 only) */
	reset(in);
	ruleset(in, 0, 0, XP_V_DIRECT, 10, 0);
	ruleset(in, 1, 0, XP_V_PROXY, 11, 3);
	in->skel->bss->xp_ctl.rules_gen = 1;
	s.sport = 40101;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &s, XP_V_PROXY, XP_SRC_FALLBACK, 11, 3, XP_ORIGIN_LAN, if_lan, 0);
	in->skel->bss->xp_ctl.rules_gen = 2;
	s.sport = 40102;
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_FALLBACK, 10, 0, XP_ORIGIN_LAN, if_lan, 0);
}

/* Traffic for the router itself, multicast, broadcast, link-local: DIRECT, LOCAL, no entry,
 * whatever the rules say. */
static void test_local(void **state)
{
	struct {
		const char *dst;
		int v6;
	} c[] = {
		{"192.168.1.1", 0},	{"2001:db8:1::1", 1},	{"224.0.0.251", 0},
		{"239.255.255.250", 0}, {"255.255.255.255", 0}, {"169.254.10.1", 0},
		{"ff02::fb", 1},	{"ff0e::1", 1},		{"fe80::1", 1},
		{"febf::1", 1},
	};
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct inst *in = reset(&I_plain);
		struct pkt_spec s = c[i].v6 ? PKT_UDP6("2001:db8:1::10", 5000, c[i].dst, 53)
					    : PKT_UDP4("192.168.1.10", 5000, c[i].dst, 53);
		struct xp_stats st;
		struct run r;

		local_put(in, "192.168.1.1", 0);
		local_put(in, "2001:db8:1::1", 1);
		ruleset(in, 0, 0, XP_V_PROXY, 1, 1);
		dst_put(in, c[i].dst, c[i].v6, 0, 0, XP_V_PROXY, 1, 0, 0);
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
		check_no_flow(in, &s);
		stats_get(in, &st);
		assert_int_equal(st.pkts[XP_V_DIRECT], 1);
		assert_int_equal(st.vsrc[XP_SRC_LOCAL], 1);
		assert_int_equal(st.flows[XP_V_DIRECT] + st.flows[XP_V_PROXY], 0);
		ev_collect(in);
		assert_int_equal(n_evs, 0);
	}
	/* just outside the special ranges: classified (fallback PROXY) */
	{
		struct inst *in = reset(&I_plain);
		struct pkt_spec s = PKT_UDP6("2001:db8:1::10", 5000, "fec0::1", 53);
		struct run r;

		ruleset(in, 0, 0, XP_V_PROXY, 1, 1);
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
		s = PKT_UDP4("192.168.1.10", 5000, "169.255.0.1", 53);
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	}
}

/* A TCP segment without SYN and without an entry: DIRECT, MIDSTREAM, recorded. */
static void test_midstream(void **state)
{
	struct inst *in = reset(&I_plain);
	struct pkt_spec s = PKT_TCP6("2001:db8:1::10", 40000, "2001:db8:99::7", 443, TH_ACK);
	struct xp_flow f;
	struct xp_stats st;
	struct run r;

	ruleset(in, 0, 0, XP_V_PROXY, 1, 1);
	dst_put(in, "2001:db8:99::7", 1, 0, 0, XP_V_PROXY, 1, 0, 0);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_LAN, if_lan, 0);
	stats_get(in, &st);
	assert_int_equal(st.vsrc[XP_SRC_MIDSTREAM], 1);
	assert_int_equal(st.flows[XP_V_DIRECT], 1);
	ev_collect(in);
	assert_int_equal(n_evs, 0); /* DIRECT: no event without XP_CFG_EVENTS_DIRECT */
	/* the next segment hits the entry */
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	assert_int_equal(flow_get(in, &s, &f), 0);
	assert_int_equal(f.packets, 2);
	assert_int_equal(f.vsrc, XP_SRC_MIDSTREAM);

	/* A SYN|ACK answers a connection the other side started (a port-forwarded server on
	 * the LAN; at WAN egress, a server on the router): never through the rules. */
	s = PKT_TCP4("192.168.1.20", 22, "198.51.100.9", 50000, TH_SYN | TH_ACK);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_LAN, if_lan, 0);
	s.src = "203.0.113.2";
	assert_int_equal(send_spec(in, P_WAN_EG, &s, if_wan, &r), TC_ACT_OK);
	check_flow(in, &s, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_HOST, if_wan,
		   XP_HOOK_WAN_EGRESS);
}

/* A proxy verdict for what cannot be proxied: DIRECT, NOPROXY. */
static void test_noproxy(void **state)
{
	struct pkt_spec icmp = ICMP4, icmp6 = ICMP6, gre = GRE4;
	struct pkt_spec udp = U4(443);
	struct inst *in;
	struct run r;

	in = reset(&I_plain);
	ruleset(in, 0, 0, XP_V_PROXY, 4, 2);
	assert_int_equal(send_spec(in, P_LAN, &icmp, if_lan, &r), TC_ACT_OK);
	check_flow(in, &icmp, XP_V_DIRECT, XP_SRC_NOPROXY, 4, 0, XP_ORIGIN_LAN, if_lan, 0);
	assert_int_equal(send_spec(in, P_LAN, &icmp6, if_lan, &r), TC_ACT_OK);
	check_flow(in, &icmp6, XP_V_DIRECT, XP_SRC_NOPROXY, 4, 0, XP_ORIGIN_LAN, if_lan, 0);
	assert_int_equal(send_spec(in, P_LAN, &gre, if_lan, &r), TC_ACT_OK);
	check_flow(in, &gre, XP_V_DIRECT, XP_SRC_NOPROXY, 4, 0, XP_ORIGIN_LAN, if_lan, 0);
	/* UDP with XP_CFG_UDP: proxied */
	assert_int_equal(send_spec(in, P_LAN, &udp, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &udp, XP_V_PROXY, XP_SRC_FALLBACK, 4, 2, XP_ORIGIN_LAN, if_lan, 0);
	/* without it (the peer instance): NOPROXY */
	in = reset(&I_peer);
	ruleset(in, 0, 0, XP_V_PROXY, 4, 2);
	assert_int_equal(send_spec(in, P_LAN, &udp, if_lan, &r), TC_ACT_OK);
	check_flow(in, &udp, XP_V_DIRECT, XP_SRC_NOPROXY, 4, 0, XP_ORIGIN_LAN, if_lan, 0);
	/* XP_CFG_EVENTS_DIRECT: a FLOW_NEW for it all the same */
	ev_collect(in);
	check_ev_flow(ev_find(XP_EV_FLOW_NEW, 0), XP_EV_FLOW_NEW, &udp, XP_V_DIRECT, XP_SRC_NOPROXY,
		      4, 0, XP_ORIGIN_LAN, if_lan, 0, 0);
}

/* The daemon's heartbeat is stale: fail open (DIRECT, recorded) or closed (dropped, nothing
 * recorded); an existing proxied flow gets the same treatment without its entry changing. */
static void test_failsafe(void **state)
{
	struct pkt_spec s = PKT_TCP4("192.168.1.10", 41000, "198.51.100.7", 443, TH_SYN);
	struct pkt_spec est = s;
	uint64_t stale[] = {0, 1 /* set below */};
	struct xp_stats st;
	struct xp_flow f;
	struct run r;
	size_t i;

	est.tcp_flags = TH_ACK;
	for (i = 0; i < 2; i++) {
		struct inst *in = reset(&I_plain);

		stale[1] = now_ns() - 2000000000ull; /* 2 s > the 1.5 s timeout */
		in->skel->bss->xp_ctl.heartbeat_ns = stale[i];
		ruleset(in, 0, 0, XP_V_PROXY, 3, 1);
		/* fail open: a new flow goes DIRECT and stays so */
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
		check_flow(in, &s, XP_V_DIRECT, XP_SRC_FAILSAFE, 3, 0, XP_ORIGIN_LAN, if_lan, 0);
		in->skel->bss->xp_ctl.heartbeat_ns = now_ns(); /* back */
		assert_int_equal(send_spec(in, P_LAN, &est, if_lan, &r), TC_ACT_OK);
		stats_get(in, &st);
		assert_int_equal(st.vsrc[XP_SRC_FAILSAFE], 1);
		assert_int_equal(st.pkts[XP_V_DIRECT], 2);

		/* an existing proxied flow fails open, its entry keeps PROXY */
		in->skel->bss->xp_ctl.heartbeat_ns = stale[i];
		est.sport = s.sport = 41001;
		flow_put(in, &s, XP_V_PROXY, XP_SRC_RULE, XP_ORIGIN_LAN, if_lan, 1);
		assert_int_equal(send_spec(in, P_LAN, &est, if_lan, &r), TC_ACT_OK);
		assert_int_equal(flow_get(in, &s, &f), 0);
		assert_int_equal(f.verdict, XP_V_PROXY);
		assert_int_equal(f.packets, 6);
		/* daemon back: proxied again */
		in->skel->bss->xp_ctl.heartbeat_ns = now_ns();
		assert_int_equal(send_spec(in, P_LAN, &est, if_lan, &r), TC_ACT_REDIRECT);

		/* fail closed: dropped, nothing recorded; existing proxied flows dropped too */
		in->skel->bss->xp_ctl.heartbeat_ns = stale[i];
		in->skel->bss->xp_ctl.flags = XP_CTL_FAIL_CLOSED;
		est.sport = s.sport = 41002;
		stats_zero(in);
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_SHOT);
		check_no_flow(in, &s);
		assert_int_equal(send_spec(in, P_LAN, &est, if_lan, &r), TC_ACT_OK); /* midstream */
		est.sport = s.sport = 41001;
		assert_int_equal(send_spec(in, P_LAN, &est, if_lan, &r), TC_ACT_SHOT);
		assert_int_equal(flow_get(in, &s, &f), 0);
		assert_int_equal(f.verdict, XP_V_PROXY);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_FAIL_CLOSED], 2);
		assert_int_equal(st.pkts[XP_V_BLOCK], 2);
		/* DIRECT verdicts are not affected by the fail-safe */
		ruleset(in, 0, 0, XP_V_DIRECT, 3, 1);
		est.sport = s.sport = 41003;
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
		check_flow(in, &s, XP_V_DIRECT, XP_SRC_FALLBACK, 3, 1, XP_ORIGIN_LAN, if_lan, 0);
		est.sport = s.sport = 41000;
	}

	/* a heartbeat slightly ahead of the program's clock read is fresh, not stale */
	{
		struct inst *in = reset(&I_plain);

		in->skel->bss->xp_ctl.heartbeat_ns = now_ns() + 5000000;
		ruleset(in, 0, 0, XP_V_PROXY, 3, 1);
		s.sport = 41010;
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
	}
}

/* WAN egress: the daemon's own sockets (mark) untouched; the router's own flows classified
 * with origin HOST and redirected to xp0 with xp0p's MAC; L3 devices get a header pushed. */
static void test_wan_egress(void **state)
{
	struct inst *in = reset(&I_plain);
	struct pkt_spec s = PKT_TCP4("203.0.113.2", 42000, "198.51.100.7", 443, TH_SYN);
	struct xp_stats st;
	struct pkt p;
	struct run r;

	ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
	pkt_build(&s, &p);
	/* the mark, exactly and under the mask */
	assert_int_equal(run_raw(in, P_WAN_EG, p.b, p.len, if_wan, MARK, &r), 0);
	assert_int_equal(r.retval, TC_ACT_OK);
	assert_int_equal(run_raw(in, P_WAN_EG, p.b, p.len, if_wan, MARK | 0x30000, &r), 0);
	assert_int_equal(r.retval, TC_ACT_OK);
	assert_memory_equal(r.out, p.b, p.len);
	check_no_flow(in, &s);
	stats_get(in, &st);
	assert_int_equal(st.hook_pkts[XP_HOOK_WAN_EGRESS], 2);
	assert_int_equal(st.pkts[XP_V_DIRECT] + st.pkts[XP_V_PROXY], 0);
	/* another mark: classified */
	assert_int_equal(run_raw(in, P_WAN_EG, p.b, p.len, if_wan, 0x5871, &r), 0);
	check_to_proxy_plain(&r, &p);
	check_flow(in, &s, XP_V_PROXY, XP_SRC_FALLBACK, 2, 6, XP_ORIGIN_HOST, if_wan,
		   XP_HOOK_WAN_EGRESS);
	ev_collect(in);
	check_ev_flow(ev_find(XP_EV_FLOW_NEW, 0), XP_EV_FLOW_NEW, &s, XP_V_PROXY, XP_SRC_FALLBACK,
		      2, 6, XP_ORIGIN_HOST, if_wan, XP_HOOK_WAN_EGRESS, 0);
	/* BLOCK: dropped (no RST on egress) */
	ruleset(in, 0, 0, XP_V_BLOCK, 2, 0);
	s.sport = 42001;
	pkt_build(&s, &p);
	assert_int_equal(run(in, P_WAN_EG, &p, if_wan, &r), TC_ACT_SHOT);
	stats_get(in, &st);
	assert_int_equal(st.drops[XP_DROP_BLOCKED], 1);
	assert_int_equal(st.rejects, 0);
	/* DIRECT: untouched */
	ruleset(in, 0, 0, XP_V_DIRECT, 2, 0);
	s.sport = 42002;
	pkt_build(&s, &p);
	assert_int_equal(run(in, P_WAN_EG, &p, if_wan, &r), TC_ACT_OK);
	assert_memory_equal(r.out, p.b, p.len);

	/* L3 WAN device (wireguard, ppp): Ethernet pushed, xp0p <- xp0, ethertype by version */
	ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
	{
		struct pkt_spec s6 =
			PKT_TCP6("2001:db8:ff::2", 42003, "2001:db8:99::7", 443, TH_SYN);

		s6.l3 = 1;
		s6.payload = 10;
		pkt_build(&s6, &p);
		assert_int_equal(run(in, P_WAN_EG_L3, &p, if_wan, &r), TC_ACT_REDIRECT);
		assert_int_equal(r.out_len, p.len + 14);
		assert_memory_equal(r.out, mac_xp0p, 6);
		assert_memory_equal(r.out + 6, mac_xp0, 6);
		assert_int_equal(r.out[12] << 8 | r.out[13], 0x86dd);
		assert_memory_equal(r.out + 14, p.b, p.len);
		check_flow(in, &s6, XP_V_PROXY, XP_SRC_FALLBACK, 2, 6, XP_ORIGIN_HOST, if_wan,
			   XP_HOOK_WAN_EGRESS_L3);
	}
}

/* LAN L3 device: an Ethernet header is pushed last; DIRECT leaves the packet alone. */
static void test_lan_l3(void **state)
{
	struct inst *in = reset(&I_plain);
	struct pkt_spec s = PKT_UDP4("10.8.0.2", 5000, "198.51.100.7", 443);
	struct pkt p;
	struct run r;

	s.l3 = 1;
	ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
	pkt_build(&s, &p);
	assert_int_equal(run(in, P_LAN_L3, &p, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(r.out_len, p.len + 14);
	assert_memory_equal(r.out, mac_xp0p, 6);
	assert_memory_equal(r.out + 6, mac_xp0, 6);
	assert_int_equal(r.out[12] << 8 | r.out[13], 0x0800);
	assert_memory_equal(r.out + 14, p.b, p.len);
	check_flow(in, &s, XP_V_PROXY, XP_SRC_FALLBACK, 2, 6, XP_ORIGIN_LAN, if_lan,
		   XP_HOOK_LAN_INGRESS_L3);
	/* peer mode pushes the same header */
	in = reset(&I_peer);
	ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
	s.proto = 6;
	s.tcp_flags = TH_SYN;
	pkt_build(&s, &p);
	assert_int_equal(run(in, P_LAN_L3, &p, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(r.out_len, p.len + 14);
	assert_memory_equal(r.out, mac_xp0p, 6);
	assert_memory_equal(r.out + 14, p.b, p.len);
	/* DIRECT */
	ruleset(in, 0, 0, XP_V_DIRECT, 0, 0);
	s.sport = 5001;
	pkt_build(&s, &p);
	assert_int_equal(run(in, P_LAN_L3, &p, if_lan, &r), TC_ACT_OK);
	assert_int_equal(r.out_len, p.len);
	assert_memory_equal(r.out, p.b, p.len);
	/* something that is not IP on an L3 device */
	memset(p.b, 0, 40);
	assert_int_equal(run_raw(in, P_LAN_L3, p.b, 40, if_lan, 0, &r), 0);
	assert_int_equal(r.retval, TC_ACT_OK);
}

/* Peer mode: bpf_redirect_peer, no MAC rewrite (pkt_type is already HOST there). */
static void test_peer_mode(void **state)
{
	struct inst *in = reset(&I_peer);
	struct pkt_spec s = PKT_TCP4("192.168.1.10", 43000, "198.51.100.7", 443, TH_SYN);
	struct pkt p;
	struct run r;

	ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
	pkt_build(&s, &p);
	assert_int_equal(run(in, P_LAN, &p, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(r.out_len, p.len);
	assert_memory_equal(r.out, p.b, p.len);
	/* WAN egress is always plain (redirect_peer only works from ingress) */
	s.src = "203.0.113.2";
	pkt_build(&s, &p);
	assert_int_equal(run(in, P_WAN_EG, &p, if_wan, &r), TC_ACT_REDIRECT);
	assert_memory_equal(r.out, mac_xp0p, 6);
}

/* One 802.1Q tag: parsed; popped when the frame goes into the netns; kept otherwise. */
static void test_vlan(void **state)
{
	int v6, peer;

	for (peer = 0; peer < 2; peer++)
		for (v6 = 0; v6 < 2; v6++) {
			struct inst *in = reset(peer ? &I_peer : &I_plain);
			struct pkt_spec s =
				v6 ? PKT_TCP6("2001:db8:1::10", 44000, "2001:db8:99::7", 443,
					      TH_SYN)
				   : PKT_TCP4("192.168.1.10", 44000, "198.51.100.7", 443, TH_SYN);
			struct pkt tagged, plain;
			struct run r;

			s.payload = 20;
			pkt_build(&s, &plain);
			s.vlan = 1;
			pkt_build(&s, &tagged);
			ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
			assert_int_equal(run(in, P_LAN, &tagged, if_lan, &r), TC_ACT_REDIRECT);
			/* the untagged frame, with xp0p's MAC in plain mode */
			assert_int_equal(r.out_len, plain.len);
			assert_memory_equal(r.out, peer ? plain.b : mac_xp0p, 6);
			assert_memory_equal(r.out + 6, plain.b + 6, plain.len - 6);
			check_flow(in, &s, XP_V_PROXY, XP_SRC_FALLBACK, 2, 6, XP_ORIGIN_LAN, if_lan,
				   0);
			/* DIRECT: the tag stays */
			ruleset(in, 0, 0, XP_V_DIRECT, 0, 0);
			s.sport = 44001;
			pkt_build(&s, &tagged);
			assert_int_equal(run(in, P_LAN, &tagged, if_lan, &r), TC_ACT_OK);
			assert_int_equal(r.out_len, tagged.len);
			assert_memory_equal(r.out, tagged.b, tagged.len);
		}
	/* a tag in front of ARP: still not IP */
	{
		struct inst *in = reset(&I_plain);
		struct pkt_spec arp = {.ethertype = 0x0806, .vlan = 1};
		struct xp_stats st;
		struct run r;

		assert_int_equal(send_spec(in, P_LAN, &arp, if_lan, &r), TC_ACT_OK);
		stats_get(in, &st);
		assert_int_equal(st.passed_non_ip, 1);
	}
}

/* Verify a generated RST|ACK against the SYN it answers. */
static void check_rst(const struct run *r, const struct pkt_spec *s, const struct pkt *syn)
{
	size_t l3off = syn->l3off, iphl = s->v6 ? 40 : 20;
	const uint8_t *ip = r->out + l3off, *th = ip + iphl;
	uint8_t a[16];

	assert_int_equal(r->retval, TC_ACT_REDIRECT);
	assert_int_equal(r->out_len, l3off + iphl + 20);
	if (!s->l3) {
		assert_memory_equal(r->out, syn->b + 6, 6); /* dst = the client */
		assert_memory_equal(r->out + 6, syn->b, 6); /* src = what the client sent to */
		assert_memory_equal(r->out + 12, syn->b + 12, l3off - 12); /* tag, ethertype */
	}
	if (s->v6) {
		assert_int_equal(ip[0] >> 4, 6);
		assert_int_equal(ip[4] << 8 | ip[5], 20);
		assert_int_equal(ip[6], IPPROTO_TCP);
		assert_int_equal(ip[7], 64);
		inet_pton(AF_INET6, s->dst, a);
		assert_memory_equal(ip + 8, a, 16);
		inet_pton(AF_INET6, s->src, a);
		assert_memory_equal(ip + 24, a, 16);
	} else {
		assert_int_equal(ip[0], 0x45);
		assert_int_equal(ip[2] << 8 | ip[3], 40);
		assert_int_equal(ip[6] << 8 | ip[7], 0x4000);
		assert_int_equal(ip[8], 64);
		assert_int_equal(ip[9], IPPROTO_TCP);
		inet_pton(AF_INET, s->dst, a);
		assert_memory_equal(ip + 12, a, 4);
		inet_pton(AF_INET, s->src, a);
		assert_memory_equal(ip + 16, a, 4);
		assert_int_equal(pkt_csum_fold(pkt_csum_add(0, ip, 20)), 0);
	}
	assert_int_equal(th[0] << 8 | th[1], s->dport);
	assert_int_equal(th[2] << 8 | th[3], s->sport);
	assert_int_equal(th[4] | th[5] | th[6] | th[7], 0); /* seq */
	assert_int_equal((uint32_t)th[8] << 24 | th[9] << 16 | th[10] << 8 | th[11],
			 s->seq + 1); /* ack */
	assert_int_equal(th[12], 5 << 4);
	assert_int_equal(th[13], TH_RST | TH_ACK);
	assert_int_equal(pkt_l4_csum_check(ip, s->v6, th, 20, IPPROTO_TCP), 0);
}

/* BLOCK: a SYN is answered with a RST|ACK out of the same device; anything else dropped. */
static void test_block_rst(void **state)
{
	struct pkt_spec cases[] = {
		PKT_TCP4("192.168.1.10", 45000, "198.51.100.7", 443, TH_SYN),
		PKT_TCP6("2001:db8:1::10", 45001, "2001:db8:99::7", 443, TH_SYN),
		PKT_TCP4("192.168.1.10", 45002, "198.51.100.7", 443, TH_SYN),
		PKT_TCP6("2001:db8:1::10", 45003, "2001:db8:99::7", 443, TH_SYN),
		PKT_TCP4("192.168.1.10", 45004, "198.51.100.7", 443, TH_SYN),
		PKT_TCP6("2001:db8:1::10", 45005, "2001:db8:99::7", 443, TH_SYN),
		PKT_TCP4("10.8.0.2", 45006, "198.51.100.7", 443, TH_SYN),
		PKT_TCP6("2001:db8:8::2", 45007, "2001:db8:99::7", 443, TH_SYN),
	};
	size_t i;

	cases[0].payload = 30; /* SYN with data (TFO): trimmed away */
	cases[2].vlan = 1;
	cases[3].vlan = 1;
	cases[4].ip4_optlen = 12; /* options are not copied into the RST */
	cases[5].n_ext = 2;	  /* nor extension headers */
	cases[5].ext[0] = 0;
	cases[5].ext[1] = 60;
	cases[6].l3 = 1;
	cases[7].l3 = 1;
	cases[1].seq = 0xffffffff; /* ack wraps */
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct inst *in = reset(&I_plain);
		struct xp_stats st;
		struct pkt p;
		struct run r;

		ruleset(in, 0, 0, XP_V_BLOCK, 8, 0);
		pkt_build(&cases[i], &p);
		run(in, cases[i].l3 ? P_LAN_L3 : P_LAN, &p, if_lan, &r);
		check_rst(&r, &cases[i], &p);
		check_flow(in, &cases[i], XP_V_BLOCK, XP_SRC_FALLBACK, 8, 0, XP_ORIGIN_LAN, if_lan,
			   cases[i].l3 ? XP_HOOK_LAN_INGRESS_L3 : XP_HOOK_LAN_INGRESS);
		stats_get(in, &st);
		assert_int_equal(st.rejects, 1);
		assert_int_equal(st.drops[XP_DROP_BLOCKED], 1);
		assert_int_equal(st.pkts[XP_V_BLOCK], 1);
		assert_int_equal(st.flows[XP_V_BLOCK], 1);
		ev_collect(in); /* DROP events are on: one, reason BLOCKED */
		assert_int_equal(ev_count(XP_EV_DROP), 1);
		assert_int_equal(((const struct xp_ev_drop *)ev_find(XP_EV_DROP, 0))->reason,
				 XP_DROP_BLOCKED);
		assert_int_equal(ev_count(XP_EV_FLOW_NEW), 0); /* BLOCK is not proxied */

		/* the blocked flow's later segments: a plain counted drop */
		cases[i].tcp_flags = TH_ACK;
		pkt_build(&cases[i], &p);
		assert_int_equal(run(in, cases[i].l3 ? P_LAN_L3 : P_LAN, &p, if_lan, &r),
				 TC_ACT_SHOT);
		stats_get(in, &st);
		assert_int_equal(st.rejects, 1);
		assert_int_equal(st.drops[XP_DROP_BLOCKED], 2);
	}
	/* UDP and a SYN|ACK: no RST */
	{
		struct inst *in = reset(&I_plain);
		struct pkt_spec u = U4(53), sa = T4(443);
		struct xp_stats st;
		struct run r;

		sa.tcp_flags = TH_SYN | TH_ACK;
		ruleset(in, 0, 0, XP_V_BLOCK, 8, 0);
		assert_int_equal(send_spec(in, P_LAN, &u, if_lan, &r), TC_ACT_SHOT);
		assert_int_equal(send_spec(in, P_LAN, &sa, if_lan, &r), TC_ACT_OK); /* midstream */
		stats_get(in, &st);
		assert_int_equal(st.rejects, 0);
		assert_int_equal(st.drops[XP_DROP_BLOCKED], 1);
	}
}

/* Fragments: the first is classified and remembered, later ones follow it, orphans are
 * dropped (unless they are for the router itself). */
static void test_fragments(void **state)
{
	int v6;

	for (v6 = 0; v6 < 2; v6++) {
		struct inst *in = reset(&I_plain);
		struct pkt_spec first = v6 ? PKT_UDP6("2001:db8:1::10", 6000, "2001:db8:99::7", 443)
					   : PKT_UDP4("192.168.1.10", 6000, "198.51.100.7", 443);
		struct pkt_spec later = first, orphan, tolocal;
		struct xp_frag_key fk = {.id = 0x1234, .l4proto = IPPROTO_UDP};
		struct xp_tuple t, ft;
		struct xp_stats st;
		struct pkt p;
		struct run r;

		first.frag = 1;
		first.frag_id = 0x1234;
		first.payload = 64;
		later.frag = 2;
		later.frag_id = 0x1234;
		later.frag_off8 = 9;
		later.payload = 40;
		ruleset(in, 0, 0, XP_V_PROXY, 2, 6);

		pkt_build(&first, &p);
		run(in, P_LAN, &p, if_lan, &r);
		check_to_proxy_plain(&r, &p);
		check_flow(in, &first, XP_V_PROXY, XP_SRC_FALLBACK, 2, 6, XP_ORIGIN_LAN, if_lan, 0);
		pkt_tuple(&first, &t);
		memcpy(fk.saddr, t.saddr, 16);
		memcpy(fk.daddr, t.daddr, 16);
		assert_int_equal(bpf_map_lookup_elem(in->frags, &fk, &ft), 0);
		assert_memory_equal(&ft, &t, sizeof(t));

		pkt_build(&later, &p);
		run(in, P_LAN, &p, if_lan, &r);
		check_to_proxy_plain(&r, &p);
		stats_get(in, &st);
		assert_int_equal(st.frags_first, 1);
		assert_int_equal(st.frags_later, 1);
		assert_int_equal(st.pkts[XP_V_PROXY], 2);
		assert_int_equal(st.flows[XP_V_PROXY], 1);

		/* a later fragment whose first was never seen */
		orphan = later;
		orphan.frag_id = 0x9999;
		assert_int_equal(send_spec(in, P_LAN, &orphan, if_lan, &r), TC_ACT_SHOT);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_FRAG_ORPHAN], 1);
		ev_collect(in);
		assert_int_equal(((const struct xp_ev_drop *)ev_find(XP_EV_DROP, 0))->reason,
				 XP_DROP_FRAG_ORPHAN);
		/* ... unless it is for the router itself */
		tolocal = orphan;
		tolocal.dst = v6 ? "2001:db8:1::1" : "192.168.1.1";
		local_put(in, tolocal.dst, v6);
		assert_int_equal(send_spec(in, P_LAN, &tolocal, if_lan, &r), TC_ACT_OK);

		/* TCP: a later fragment follows the first one's verdict (here DIRECT) */
		{
			struct pkt_spec tf =
				v6 ? PKT_TCP6("2001:db8:1::10", 6001, "2001:db8:99::8", 80, TH_SYN)
				   : PKT_TCP4("192.168.1.10", 6001, "198.51.100.8", 80, TH_SYN);
			struct pkt_spec tl;

			ruleset(in, 0, 0, XP_V_DIRECT, 3, 0);
			tf.frag = 1;
			tf.frag_id = 77;
			tf.payload = 16;
			tl = tf;
			tl.frag = 2;
			tl.frag_off8 = 5;
			assert_int_equal(send_spec(in, P_LAN, &tf, if_lan, &r), TC_ACT_OK);
			assert_int_equal(send_spec(in, P_LAN, &tl, if_lan, &r), TC_ACT_OK);
			stats_get(in, &st);
			assert_int_equal(st.frags_later, 2);
			/* RFC 1858: TCP at offset 8 would overwrite the flags the rules saw */
			if (!v6) {
				tl.frag_off8 = 1;
				assert_int_equal(send_spec(in, P_LAN, &tl, if_lan, &r),
						 TC_ACT_SHOT);
				stats_get(in, &st);
				assert_int_equal(st.drops[XP_DROP_MALFORMED], 1);
			}
		}
	}
	/* an IPv6 atomic fragment (offset 0, no M) is an ordinary packet */
	{
		struct inst *in = reset(&I_plain);
		struct pkt_spec s = PKT_TCP6("2001:db8:1::10", 6002, "2001:db8:99::7", 443, TH_SYN);
		struct xp_stats st;
		struct run r;

		s.v6_atomic_frag = 1;
		s.frag_id = 5;
		ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
		check_flow(in, &s, XP_V_PROXY, XP_SRC_FALLBACK, 2, 6, XP_ORIGIN_LAN, if_lan, 0);
		stats_get(in, &st);
		assert_int_equal(st.frags_first, 0);
	}
}

/* Every fragment of a datagram takes its first fragment's path: first, middle (MF and an
 * offset), last; a later fragment that comes before its first is a counted orphan drop and
 * does not poison the flow: the first, arriving next, is classified as usual. The key holds
 * the id and the protocol field: another id or protocol between the same addresses is not
 * the same datagram. IPv6: the fragment header behind another extension header. */
static void test_fragment_order(void **state)
{
	int v6;

	for (v6 = 0; v6 < 2; v6++) {
		struct inst *in = reset(&I_plain);
		struct pkt_spec first = v6 ? PKT_UDP6("2001:db8:1::10", 6100, "2001:db8:99::7", 4433)
					   : PKT_UDP4("192.168.1.10", 6100, "198.51.100.7", 4433);
		struct pkt_spec mid, last, other;
		struct xp_stats st;
		struct xp_flow f;
		struct pkt p;
		struct run r;

		if (v6) { /* a destination-options header before the fragment header */
			first.n_ext = 1;
			first.ext[0] = 60;
		}
		first.frag = 1;
		first.frag_id = v6 ? 0x89abcdef : 0xbeef;
		first.payload = 1000;
		mid = first;
		mid.frag = 2;
		mid.frag_more = 1;
		mid.frag_off8 = 126; /* 1008 bytes: the first fragment's UDP header and payload */
		mid.payload = 1008;
		last = mid;
		last.frag_more = 0;
		last.frag_off8 = 252;
		last.payload = 100;
		ruleset(in, 0, 0, XP_V_PROXY, 2, 6);

		/* the middle fragment overtakes the first: dropped, counted, nothing recorded */
		assert_int_equal(send_spec(in, P_LAN, &mid, if_lan, &r), TC_ACT_SHOT);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_FRAG_ORPHAN], 1);
		assert_int_equal(st.frags_later, 0);
		assert_int_equal(st.flows[XP_V_PROXY], 0);
		check_no_flow(in, &first);

		pkt_build(&first, &p);
		run(in, P_LAN, &p, if_lan, &r);
		check_to_proxy_plain(&r, &p);
		check_flow(in, &first, XP_V_PROXY, XP_SRC_FALLBACK, 2, 6, XP_ORIGIN_LAN, if_lan, 0);
		pkt_build(&mid, &p);
		run(in, P_LAN, &p, if_lan, &r);
		check_to_proxy_plain(&r, &p);
		pkt_build(&last, &p);
		run(in, P_LAN, &p, if_lan, &r);
		check_to_proxy_plain(&r, &p);
		/* a retransmitted first fragment (same id) refreshes the record, one flow still */
		assert_int_equal(send_spec(in, P_LAN, &first, if_lan, &r), TC_ACT_REDIRECT);
		stats_get(in, &st);
		assert_int_equal(st.frags_first, 2);
		assert_int_equal(st.frags_later, 2);
		assert_int_equal(st.flows[XP_V_PROXY], 1);
		assert_int_equal(st.pkts[XP_V_PROXY], 4);
		assert_int_equal(st.drops[XP_DROP_FRAG_ORPHAN], 1);
		assert_int_equal(flow_get(in, &first, &f), 0);
		assert_int_equal(f.packets, 4); /* every fragment counted on the flow */

		/* same addresses, another id: another datagram, not recorded */
		other = last;
		other.frag_id ^= 1;
		assert_int_equal(send_spec(in, P_LAN, &other, if_lan, &r), TC_ACT_SHOT);
		/* same id, another protocol field: not the same datagram either */
		other = last;
		other.proto = IPPROTO_TCP;
		assert_int_equal(send_spec(in, P_LAN, &other, if_lan, &r), TC_ACT_SHOT);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_FRAG_ORPHAN], 3);

		/* DIRECT: the later fragments pass untouched, as the kernel forwards them */
		ruleset(in, 0, 0, XP_V_DIRECT, 3, 0);
		first.sport = mid.sport = last.sport = 6101;
		first.frag_id = mid.frag_id = last.frag_id = 0x77;
		assert_int_equal(send_spec(in, P_LAN, &first, if_lan, &r), TC_ACT_OK);
		pkt_build(&last, &p);
		assert_int_equal(run(in, P_LAN, &p, if_lan, &r), TC_ACT_OK);
		assert_int_equal(r.out_len, p.len);
		assert_memory_equal(r.out, p.b, p.len);
		stats_get(in, &st);
		assert_int_equal(st.frags_later, 3);
		assert_int_equal(st.pkts[XP_V_DIRECT], 2);
	}
}

/* Fragments that cannot belong to any datagram: dropped MALFORMED (counted) at every hook
 * that may drop, before any lookup; a first fragment too short for its UDP header too. */
static void test_fragment_garbage(void **state)
{
	int v6;

	for (v6 = 0; v6 < 2; v6++) {
		struct inst *in = reset(&I_plain);
		struct pkt_spec first = v6 ? PKT_UDP6("2001:db8:1::10", 6200, "2001:db8:99::7", 53)
					   : PKT_UDP4("192.168.1.10", 6200, "198.51.100.7", 53);
		struct pkt_spec late;
		struct xp_stats st;
		struct pkt p;
		struct run r;

		ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
		first.frag = 1;
		first.frag_id = 4242;
		first.payload = 64;
		assert_int_equal(send_spec(in, P_LAN, &first, if_lan, &r), TC_ACT_REDIRECT);

		/* the largest offset (65528) with 8 bytes still fits; 16 ends past 65535 */
		late = first;
		late.frag = 2;
		late.frag_off8 = 0x1fff;
		late.payload = 7;
		assert_int_equal(send_spec(in, P_LAN, &late, if_lan, &r), TC_ACT_REDIRECT);
		late.payload = 16;
		assert_int_equal(send_spec(in, P_LAN, &late, if_lan, &r), TC_ACT_SHOT);
		/* a middle fragment ending past it as well */
		late.frag_off8 = 0x1ff0;
		late.frag_more = 1;
		late.payload = 200;
		assert_int_equal(send_spec(in, P_LAN, &late, if_lan, &r), TC_ACT_SHOT);
		assert_int_equal(send_spec(in, P_WAN_EG, &late, if_wan, &r), TC_ACT_SHOT);
		assert_int_equal(send_spec(in, P_PX_REPLY, &late, if_xp0, &r), TC_ACT_SHOT);
		/* WAN ingress never drops: passed, not counted */
		assert_int_equal(send_spec(in, P_WAN_IN, &late, if_wan, &r), TC_ACT_OK);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_MALFORMED], 4);
		assert_int_equal(st.drops[XP_DROP_FRAG_ORPHAN], 0);
		assert_int_equal(st.frags_later, 1);

		/* a first fragment that ends inside its UDP header */
		first.payload = 0;
		pkt_build(&first, &p);
		p.len -= 4;
		if (v6)
			pkt_put16(p.b + p.l3off + 4, (uint16_t)(p.len - p.l3off - 40));
		else
			pkt_put16(p.b + p.l3off + 2, (uint16_t)(p.len - p.l3off));
		assert_int_equal(run(in, P_LAN, &p, if_lan, &r), TC_ACT_SHOT);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_MALFORMED], 5);
		assert_int_equal(st.frags_first, 1);
	}
}

/* In the private netns: the first fragment of a proxied datagram goes to the shard's socket
 * like any datagram (no listener here: the counted NO_LISTENER drop), a later one passes to
 * the IP stack, which reassembles it (xp_proxy_lookup then finds the socket); replies from
 * the netns that the stack fragmented follow their first fragment back to the client. */
static void test_fragment_proxy_side(void **state)
{
	int v6;

	for (v6 = 0; v6 < 2; v6++) {
		struct inst *in = reset(&I_plain);
		struct pkt_spec fwd = v6 ? PKT_UDP6("2001:db8:1::10", 6300, "2001:db8:99::7", 443)
					 : PKT_UDP4("192.168.1.10", 6300, "198.51.100.7", 443);
		struct pkt_spec rep = v6 ? PKT_UDP6("2001:db8:99::7", 443, "2001:db8:1::10", 6300)
					 : PKT_UDP4("198.51.100.7", 443, "192.168.1.10", 6300);
		struct pkt_spec later, rlater;
		struct xp_stats st;
		struct pkt p;
		struct run r;

		fwd.frag = 1;
		fwd.frag_id = 99;
		fwd.payload = 1000;
		later = fwd;
		later.frag = 2;
		later.frag_off8 = 126;
		later.payload = 500;
		assert_int_equal(send_spec(in, P_PX_IN, &fwd, if_xp0, &r), TC_ACT_SHOT);
		pkt_build(&later, &p);
		assert_int_equal(run(in, P_PX_IN, &p, if_xp0, &r), TC_ACT_OK);
		assert_memory_equal(r.out, p.b, p.len);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_NO_LISTENER], 1);

		/* replies: first and last fragment to the LAN client, an orphan dropped */
		flow_put(in, &fwd, XP_V_PROXY, XP_SRC_RULE, XP_ORIGIN_LAN, if_lan, 1);
		rep.frag = 1;
		rep.frag_id = 0x5151;
		rep.payload = 1400;
		rlater = rep;
		rlater.frag = 2;
		rlater.frag_off8 = 176;
		rlater.payload = 1200; /* PKT_MAX is 1600 */
		assert_int_equal(send_spec(in, P_PX_REPLY, &rlater, if_xp0, &r), TC_ACT_SHOT);
		assert_int_equal(send_spec(in, P_PX_REPLY, &rep, if_xp0, &r), TC_ACT_REDIRECT);
		rlater.frag_more = 1;
		assert_int_equal(send_spec(in, P_PX_REPLY, &rlater, if_xp0, &r), TC_ACT_REDIRECT);
		rlater.frag_more = 0;
		rlater.frag_off8 = 926;
		rlater.payload = 100;
		assert_int_equal(send_spec(in, P_PX_REPLY, &rlater, if_xp0, &r), TC_ACT_REDIRECT);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_FRAG_ORPHAN], 1);
		assert_int_equal(st.frags_first, 1);
		assert_int_equal(st.drops[XP_DROP_NO_FLOW], 0);
	}
}

/* flow_shard() of xproxy.bpf.c, for the expected worker */
static uint32_t shard_of(const struct xp_tuple *t, uint32_t n)
{
	uint32_t w[10], h = 0x9e3779b9;
	int i;

	memcpy(w, t, sizeof(w)); /* not a cast: gcc -O2 moved the tuple's byte stores past it */

	for (i = 0; i < 9; i++)
		h = (h ^ w[i]) * 0x01000193;
	h ^= h >> 16;
	return h % n;
}

static int lookup_run(struct inst *in, struct bpf_sk_lookup *ctx, uint32_t *retval)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = ctx, .ctx_size_in = sizeof(*ctx),
		    .ctx_out = ctx, .ctx_size_out = sizeof(*ctx), .repeat = 1);

	if (bpf_prog_test_run_opts(in->lookup, &o))
		return -errno;
	*retval = o.retval;
	return 0;
}

/* xp_proxy_lookup (the socket lookup of the private netns, which reassembled datagrams go
 * through): a UDP lookup gets the UDP socket of the same shard xp_proxy_ingress would pick,
 * IPv4 and IPv6; TCP is left to the normal lookup; an empty slot is a counted drop. */
static void test_proxy_lookup(void **state)
{
	struct inst *in = reset(&I_plain); /* 4 workers */
	uint64_t cookie[4];
	int fd[4], i, k;

	in->listeners_dirty = 1;
	for (i = 0; i < 4; i++) {
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
		socklen_t len = sizeof(cookie[i]);
		uint32_t key = XP_LISTENER_UDP(i);
		uint64_t v;
		int off = 0;

		fd[i] = socket(AF_INET6, SOCK_DGRAM, 0); /* dual-stack, as the daemon's */
		assert_true(fd[i] >= 0);
		assert_int_equal(setsockopt(fd[i], IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0);
		assert_int_equal(bind(fd[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockopt(fd[i], SOL_SOCKET, SO_COOKIE, &cookie[i], &len), 0);
		v = (uint64_t)fd[i];
		assert_int_equal(bpf_map_update_elem(in->listeners, &key, &v, BPF_ANY), 0);
	}
	for (k = 0; k < 16; k++) {
		int v6 = k & 1;
		char src[64];
		struct pkt_spec s;
		struct bpf_sk_lookup ctx = {.protocol = IPPROTO_UDP};
		struct xp_tuple t;
		uint32_t ret;

		snprintf(src, sizeof(src), v6 ? "2001:db8:1::%x" : "192.168.1.%d", 10 + k);
		s = v6 ? PKT_UDP6(src, 40000 + k * 7, "2001:db8:99::7", 443)
		       : PKT_UDP4(src, 40000 + k * 7, "198.51.100.7", 443);
		pkt_tuple(&s, &t);
		ctx.family = v6 ? AF_INET6 : AF_INET;
		if (v6) {
			memcpy(ctx.remote_ip6, t.saddr, 16);
			memcpy(ctx.local_ip6, t.daddr, 16);
		} else {
			memcpy(&ctx.remote_ip4, t.saddr + 12, 4);
			memcpy(&ctx.local_ip4, t.daddr + 12, 4);
		}
		ctx.remote_port = htons(t.sport);
		ctx.local_port = t.dport;
		assert_int_equal(lookup_run(in, &ctx, &ret), 0);
		assert_int_equal(ret, SK_PASS);
		assert_true(ctx.cookie == cookie[shard_of(&t, 4)]);
	}
	{
		struct bpf_sk_lookup ctx = {.family = AF_INET, .protocol = IPPROTO_TCP,
					    .local_port = 443, .remote_port = htons(5000)};
		struct bpf_sk_lookup u = {.family = AF_INET, .protocol = IPPROTO_UDP,
					  .local_port = 443, .remote_port = htons(5000)};
		struct xp_stats st;
		struct xp_tuple t = {.sport = 5000, .dport = 443, .l4proto = IPPROTO_UDP};
		uint32_t ret, key;

		ctx.remote_ip4 = u.remote_ip4 = htonl(0xc0a8010a);
		ctx.local_ip4 = u.local_ip4 = htonl(0xc6336407);
		assert_int_equal(lookup_run(in, &ctx, &ret), 0);
		assert_int_equal(ret, SK_PASS);
		assert_true(ctx.cookie == 0);

		/* the shard's slot empty: dropped, counted, not left to the reply sockets */
		t.saddr[10] = t.saddr[11] = t.daddr[10] = t.daddr[11] = 0xff;
		memcpy(t.saddr + 12, &u.remote_ip4, 4);
		memcpy(t.daddr + 12, &u.local_ip4, 4);
		key = XP_LISTENER_UDP(shard_of(&t, 4));
		assert_int_equal(bpf_map_delete_elem(in->listeners, &key), 0);
		assert_int_equal(lookup_run(in, &u, &ret), 0);
		assert_int_equal(ret, SK_DROP);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_NO_LISTENER], 1);
		assert_int_equal(st.hook_pkts[XP_HOOK_PROXY_LOOKUP], 17); /* not the TCP one */
	}
	for (i = 0; i < 4; i++)
		close(fd[i]);
}

/* IPv6 extension headers: walked up to the bound, ports found behind them; a longer chain
 * is dropped, never passed unclassified. IPv4 options: the TCP header behind them. */
static void test_exthdr_and_options(void **state)
{
	static const uint8_t kinds[] = {0, 60, 43, 51, 60, 43, 60, 51, 60};
	struct xp_rule ru = {.rule_id = 1,
			     .verdict = XP_V_PROXY,
			     .dport_lo = 8443,
			     .dport_hi = 8443,
			     .sport_lo = 0,
			     .sport_hi = 65535};
	int n;

	for (n = 0; n <= 9; n++) {
		struct inst *in = reset(&I_plain);
		struct pkt_spec s =
			PKT_TCP6("2001:db8:1::10", 46000, "2001:db8:99::7", 8443, TH_SYN);
		struct xp_stats st;
		struct run r;

		s.n_ext = n;
		memcpy(s.ext, kinds, sizeof(kinds));
		s.ext_len8 = n & 1; /* 8 or 16 bytes each */
		rule_put(in, 0, 0, &ru);
		ruleset(in, 0, 1, XP_V_DIRECT, 0, 0);
		send_spec(in, P_LAN, &s, if_lan, &r);
		stats_get(in, &st);
		if (n <= 8) {
			assert_int_equal(r.retval, TC_ACT_REDIRECT);
			check_flow(in, &s, XP_V_PROXY, XP_SRC_RULE, 1, 0, XP_ORIGIN_LAN, if_lan, 0);
		} else {
			assert_int_equal(r.retval, TC_ACT_SHOT);
			assert_int_equal(st.drops[XP_DROP_EXTHDR_LIMIT], 1);
			check_no_flow(in, &s);
		}
	}
	/* 8 headers and a fragment header make 9: over the bound */
	{
		struct inst *in = reset(&I_plain);
		struct pkt_spec s = PKT_UDP6("2001:db8:1::10", 46001, "2001:db8:99::7", 8443);
		struct run r;

		s.n_ext = 8;
		memcpy(s.ext, kinds, 8);
		s.frag = 1;
		s.frag_id = 3;
		ruleset(in, 0, 0, XP_V_PROXY, 0, 0);
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_SHOT);
	}
	/* IPv4 options up to the maximum header (60 bytes) */
	for (n = 0; n <= 40; n += 4) {
		struct inst *in = reset(&I_plain);
		struct pkt_spec s = PKT_TCP4("192.168.1.10", 46100, "198.51.100.7", 8443, TH_SYN);
		struct run r;

		s.ip4_optlen = n;
		rule_put(in, 0, 0, &ru);
		ruleset(in, 0, 1, XP_V_DIRECT, 0, 0);
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
		check_flow(in, &s, XP_V_PROXY, XP_SRC_RULE, 1, 0, XP_ORIGIN_LAN, if_lan, 0);
	}
}

/* Not IP, or IP that is neighbour discovery: passed untouched and counted. */
static void test_non_ip_and_nd(void **state)
{
	static const uint16_t types[] = {0x0806, 0x88cc, 0x8035, 0x88e5};
	static const uint8_t nd[] = {133, 134, 135, 136, 137};
	int prog[] = {P_LAN, P_WAN_EG, P_WAN_IN, P_PX_IN, P_PX_REPLY};
	size_t i, j;

	for (j = 0; j < sizeof(prog) / sizeof(prog[0]); j++) {
		struct inst *in = reset(&I_plain);
		struct xp_stats st;
		struct run r;

		ruleset(in, 0, 0, XP_V_PROXY, 0, 0);
		for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
			struct pkt_spec s = {.ethertype = types[i]};
			struct pkt p;

			pkt_build(&s, &p);
			assert_int_equal(run(in, prog[j], &p, if_lan, &r), TC_ACT_OK);
			assert_memory_equal(r.out, p.b, p.len);
		}
		for (i = 0; i < sizeof(nd); i++) {
			struct pkt_spec s = ICMP6;
			struct pkt p;

			s.dst = "fe80::1"; /* also special, but ND is recognised first */
			s.icmp_type = nd[i];
			pkt_build(&s, &p);
			assert_int_equal(run(in, prog[j], &p, if_lan, &r), TC_ACT_OK);
			assert_memory_equal(r.out, p.b, p.len);
			s.dst = "2001:db8:99::7"; /* an NS to a global address too */
			pkt_build(&s, &p);
			assert_int_equal(run(in, prog[j], &p, if_lan, &r), TC_ACT_OK);
		}
		stats_get(in, &st);
		assert_int_equal(st.passed_non_ip, 4);
		assert_int_equal(st.passed_icmp6_nd, 10);
		assert_int_equal(st.pkts[XP_V_DIRECT] + st.pkts[XP_V_PROXY], 0);
		ev_collect(in);
		assert_int_equal(n_evs, 0);
	}
	/* an ICMPv6 echo is not ND: classified (PROXY -> NOPROXY) */
	{
		struct inst *in = reset(&I_plain);
		struct pkt_spec s = ICMP6;
		struct run r;

		ruleset(in, 0, 0, XP_V_PROXY, 1, 0);
		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_OK);
		check_flow(in, &s, XP_V_DIRECT, XP_SRC_NOPROXY, 1, 0, XP_ORIGIN_LAN, if_lan, 0);
	}
}

/* FLOW_END: once per flow, the first time a FIN or RST is seen, on either side. A SYN on an
 * ended flow's tuple starts a new flow. */
static void test_flow_end(void **state)
{
	struct inst *in = reset(&I_plain);
	struct pkt_spec syn = PKT_TCP4("192.168.1.10", 47000, "198.51.100.7", 443, TH_SYN);
	struct pkt_spec fin = syn, rst = syn;
	const struct xp_ev_flow *e;
	struct xp_stats st;
	struct xp_flow f;
	struct run r;

	fin.tcp_flags = TH_FIN | TH_ACK;
	rst.tcp_flags = TH_RST;
	ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
	assert_int_equal(send_spec(in, P_LAN, &syn, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(send_spec(in, P_LAN, &fin, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(send_spec(in, P_LAN, &fin, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(send_spec(in, P_LAN, &rst, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(flow_get(in, &syn, &f), 0);
	assert_int_equal(f.tcp_state,
			 XP_TCP_SYN_SEEN | XP_TCP_FIN_CLIENT | XP_TCP_RST | XP_TCP_END_SENT);
	assert_int_equal(f.packets, 4);
	ev_collect(in);
	assert_int_equal(ev_count(XP_EV_FLOW_NEW), 1);
	assert_int_equal(ev_count(XP_EV_FLOW_END), 1);
	e = ev_find(XP_EV_FLOW_END, 0);
	check_ev_flow(e, XP_EV_FLOW_END, &syn, XP_V_PROXY, XP_SRC_FALLBACK, 2, 6, XP_ORIGIN_LAN,
		      if_lan, XP_HOOK_LAN_INGRESS, 0);
	assert_int_equal(e->tcp_state, XP_TCP_FIN_CLIENT);
	stats_get(in, &st);
	assert_int_equal(st.flow_end, 1);

	/* the client reuses the port: a new flow under today's rules */
	ruleset(in, 0, 0, XP_V_DIRECT, 3, 0);
	assert_int_equal(send_spec(in, P_LAN, &syn, if_lan, &r), TC_ACT_OK);
	check_flow(in, &syn, XP_V_DIRECT, XP_SRC_FALLBACK, 3, 0, XP_ORIGIN_LAN, if_lan, 0);
	assert_int_equal(flow_get(in, &syn, &f), 0);
	assert_int_equal(f.tcp_state, XP_TCP_SYN_SEEN);
	/* ... but a SYN retransmission of a live flow is just a hit */
	assert_int_equal(send_spec(in, P_LAN, &syn, if_lan, &r), TC_ACT_OK);
	assert_int_equal(flow_get(in, &syn, &f), 0);
	assert_int_equal(f.packets, 2);

	/* a RST as the first packet of a flow: entry (midstream) and FLOW_END at once */
	rst.sport = 47001;
	assert_int_equal(send_spec(in, P_LAN, &rst, if_lan, &r), TC_ACT_OK);
	assert_int_equal(flow_get(in, &rst, &f), 0);
	assert_int_equal(f.tcp_state, XP_TCP_RST | XP_TCP_END_SENT);
	ev_collect(in);
	assert_int_equal(ev_count(XP_EV_FLOW_END), 1);
	assert_int_equal(((const struct xp_ev_flow *)ev_find(XP_EV_FLOW_END, 0))->tcp_state,
			 XP_TCP_RST);

	/* XP_CTL_NO_FLOW_EVENTS (nobody reads them): the same flow's life writes no record,
	 * the flow entry and the stats are kept as before */
	in->skel->bss->xp_ctl.flags = XP_CTL_NO_FLOW_EVENTS;
	syn.sport = fin.sport = 47002;
	stats_zero(in);
	assert_int_equal(send_spec(in, P_LAN, &syn, if_lan, &r), TC_ACT_OK); /* DIRECT rules */
	ruleset(in, 0, 0, XP_V_PROXY, 2, 6);
	syn.sport = fin.sport = 47003;
	assert_int_equal(send_spec(in, P_LAN, &syn, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(send_spec(in, P_LAN, &fin, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(flow_get(in, &syn, &f), 0);
	assert_int_equal(f.tcp_state, XP_TCP_SYN_SEEN | XP_TCP_FIN_CLIENT | XP_TCP_END_SENT);
	stats_get(in, &st);
	assert_int_equal(st.flows[XP_V_PROXY], 1);
	assert_int_equal(st.flow_end, 1);
	ev_collect(in);
	assert_int_equal(n_evs, 0);
	/* and back on: records again */
	in->skel->bss->xp_ctl.flags = 0;
	syn.sport = fin.sport = 47004;
	assert_int_equal(send_spec(in, P_LAN, &syn, if_lan, &r), TC_ACT_REDIRECT);
	assert_int_equal(send_spec(in, P_LAN, &fin, if_lan, &r), TC_ACT_REDIRECT);
	ev_collect(in);
	assert_int_equal(ev_count(XP_EV_FLOW_NEW), 1);
	assert_int_equal(ev_count(XP_EV_FLOW_END), 1);
}

/* WAN ingress: bookkeeping of host flows from the server side; never changes a packet. */
static void test_wan_ingress(void **state)
{
	struct inst *in = reset(&I_plain);
	struct pkt_spec out = PKT_TCP4("203.0.113.2", 48000, "198.51.100.7", 443, TH_SYN);
	struct pkt_spec back = PKT_TCP4("198.51.100.7", 443, "203.0.113.2", 48000, TH_SYN | TH_ACK);
	struct xp_stats st;
	struct xp_flow f;
	struct pkt p;
	struct run r;

	ruleset(in, 0, 0, XP_V_DIRECT, 0, 0);
	assert_int_equal(send_spec(in, P_WAN_EG, &out, if_wan, &r), TC_ACT_OK);
	assert_int_equal(send_spec(in, P_WAN_IN, &back, if_wan, &r), TC_ACT_OK);
	assert_int_equal(flow_get(in, &out, &f), 0);
	assert_int_equal(f.tcp_state, XP_TCP_SYN_SEEN); /* a server SYN|ACK adds nothing */
	back.tcp_flags = TH_FIN | TH_ACK;
	pkt_build(&back, &p);
	assert_int_equal(run(in, P_WAN_IN, &p, if_wan, &r), TC_ACT_OK);
	assert_memory_equal(r.out, p.b, p.len);
	assert_int_equal(run(in, P_WAN_IN, &p, if_wan, &r), TC_ACT_OK);
	assert_int_equal(flow_get(in, &out, &f), 0);
	assert_int_equal(f.tcp_state, XP_TCP_SYN_SEEN | XP_TCP_FIN_SERVER | XP_TCP_END_SENT);
	assert_int_equal(f.packets, 1); /* client->server packets only */
	ev_collect(in);
	assert_int_equal(ev_count(XP_EV_FLOW_END), 1);
	check_ev_flow(ev_find(XP_EV_FLOW_END, 0), XP_EV_FLOW_END, &out, XP_V_DIRECT,
		      XP_SRC_FALLBACK, 0, 0, XP_ORIGIN_HOST, if_wan, XP_HOOK_WAN_INGRESS, 0);
	assert_int_equal(((const struct xp_ev_flow *)ev_find(XP_EV_FLOW_END, 0))->tcp_state,
			 XP_TCP_FIN_SERVER);
	/* then the client's FIN at WAN egress: bits added, no second FLOW_END */
	out.tcp_flags = TH_FIN | TH_ACK;
	assert_int_equal(send_spec(in, P_WAN_EG, &out, if_wan, &r), TC_ACT_OK);
	assert_int_equal(flow_get(in, &out, &f), 0);
	assert_int_equal(f.tcp_state,
			 XP_TCP_SYN_SEEN | XP_TCP_FIN_SERVER | XP_TCP_FIN_CLIENT | XP_TCP_END_SENT);
	ev_collect(in);
	assert_int_equal(ev_count(XP_EV_FLOW_END), 0);
	/* a RST from the server of another flow */
	out.sport = back.dport = 48001;
	out.tcp_flags = TH_SYN;
	back.tcp_flags = TH_RST;
	assert_int_equal(send_spec(in, P_WAN_EG, &out, if_wan, &r), TC_ACT_OK);
	assert_int_equal(send_spec(in, P_WAN_IN, &back, if_wan, &r), TC_ACT_OK);
	assert_int_equal(flow_get(in, &out, &f), 0);
	assert_int_equal(f.tcp_state, XP_TCP_SYN_SEEN | XP_TCP_RST | XP_TCP_END_SENT);
	/* unknown flows, malformed packets, fragments: passed, not counted as drops */
	back.sport = 1;
	assert_int_equal(send_spec(in, P_WAN_IN, &back, if_wan, &r), TC_ACT_OK);
	pkt_build(&back, &p);
	p.b[14] = 0x4f; /* ihl 15: the header runs past tot_len */
	assert_int_equal(run(in, P_WAN_IN, &p, if_wan, &r), TC_ACT_OK);
	stats_get(in, &st);
	assert_int_equal(st.drops[XP_DROP_MALFORMED], 0);
	assert_int_equal(st.hook_pkts[XP_HOOK_WAN_INGRESS], 6);
	/* an L3 WAN device, known from xp_ifaces */
	iface_put(in, if_wan, NULL, XP_IFACE_WAN | XP_IFACE_L3);
	out = PKT_TCP6("2001:db8:ff::2", 48002, "2001:db8:99::7", 443, TH_SYN);
	back = PKT_TCP6("2001:db8:99::7", 443, "2001:db8:ff::2", 48002, TH_FIN | TH_ACK);
	out.l3 = back.l3 = 1;
	assert_int_equal(send_spec(in, P_WAN_EG_L3, &out, if_wan, &r), TC_ACT_OK);
	assert_int_equal(send_spec(in, P_WAN_IN, &back, if_wan, &r), TC_ACT_OK);
	assert_int_equal(flow_get(in, &out, &f), 0);
	assert_true(f.tcp_state & XP_TCP_FIN_SERVER);
}

/* xp_proxy_ingress: new flows need a listener; the rest finds sockets the normal way. */
static void test_proxy_ingress(void **state)
{
	struct inst *in = reset(&I_plain);
	struct pkt_spec syn = PKT_TCP4("192.168.1.10", 49000, "198.51.100.7", 443, TH_SYN);
	struct pkt_spec ack = syn, udp = U4(443), icmp = ICMP4, frag = U4(443);
	struct xp_stats st;
	struct run r;

	ack.tcp_flags = TH_ACK;
	frag.frag = 2;
	frag.frag_off8 = 10;
	frag.frag_id = 3;
	assert_int_equal(send_spec(in, P_PX_IN, &syn, if_xp0, &r), TC_ACT_SHOT);
	assert_int_equal(send_spec(in, P_PX_IN, &ack, if_xp0, &r), TC_ACT_OK);
	assert_int_equal(send_spec(in, P_PX_IN, &udp, if_xp0, &r), TC_ACT_SHOT);
	assert_int_equal(send_spec(in, P_PX_IN, &icmp, if_xp0, &r), TC_ACT_OK);
	assert_int_equal(send_spec(in, P_PX_IN, &frag, if_xp0, &r), TC_ACT_OK);
	syn.tcp_flags = TH_SYN | TH_ACK; /* not a new flow */
	assert_int_equal(send_spec(in, P_PX_IN, &syn, if_xp0, &r), TC_ACT_OK);
	stats_get(in, &st);
	assert_int_equal(st.drops[XP_DROP_NO_LISTENER], 2);
	assert_int_equal(st.hook_pkts[XP_HOOK_PROXY_INGRESS], 6);
	check_no_flow(in, &ack); /* this program never creates entries */
	ev_collect(in);
	assert_int_equal(ev_count(XP_EV_DROP), 2);
	assert_int_equal(((const struct xp_ev_drop *)ev_find(XP_EV_DROP, 0))->reason,
			 XP_DROP_NO_LISTENER);

	/* With a listener in every TCP slot. bpf_sk_assign() itself only works on a packet at
	 * tc ingress, which BPF_PROG_TEST_RUN does not make (the namespace test covers the
	 * real path): here the SYN finds the listener and the assign is refused, which must be
	 * the counted ASSIGN_FAILED drop, never a pass without a socket. */
	{
		int fd = socket(AF_INET, SOCK_STREAM, 0), i;
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(0x7f000001)};
		uint32_t ret;

		assert_true(fd >= 0);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(listen(fd, 8), 0);
		in->listeners_dirty = 1;
		for (i = 0; i < XP_MAX_WORKERS; i++) {
			uint32_t k = XP_LISTENER_TCP(i);
			uint64_t v = (uint64_t)fd;

			assert_int_equal(bpf_map_update_elem(in->listeners, &k, &v, BPF_ANY), 0);
		}
		stats_zero(in);
		syn.tcp_flags = TH_SYN;
		ret = send_spec(in, P_PX_IN, &syn, if_xp0, &r);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_NO_LISTENER], 0);
		if (ret == TC_ACT_OK) {
			assert_int_equal(st.drops[XP_DROP_ASSIGN_FAILED], 0);
		} else {
			assert_int_equal(ret, TC_ACT_SHOT);
			assert_int_equal(st.drops[XP_DROP_ASSIGN_FAILED], 1);
		}
		close(fd);
	}
}

/* xp_proxy_reply: back to the client through the flow entry. */
static void test_proxy_reply(void **state)
{
	struct inst *in = reset(&I_plain);
	struct pkt_spec fwd = PKT_TCP4("192.168.1.10", 50000, "198.51.100.7", 443, TH_SYN);
	struct pkt_spec rep = PKT_TCP4("198.51.100.7", 443, "192.168.1.10", 50000, TH_SYN | TH_ACK);
	struct xp_stats st;
	struct xp_flow f;
	struct pkt p;
	struct run r;

	/* LAN origin: redirect_neigh, packet untouched (the neighbour layer fills L2) */
	flow_put(in, &fwd, XP_V_PROXY, XP_SRC_RULE, XP_ORIGIN_LAN, if_lan, 1);
	pkt_build(&rep, &p);
	assert_int_equal(run(in, P_PX_REPLY, &p, if_xp0, &r), TC_ACT_REDIRECT);
	assert_memory_equal(r.out, p.b, p.len);
	assert_int_equal(flow_get(in, &fwd, &f), 0);
	assert_true(f.last_ns > f.first_ns);
	assert_int_equal(f.packets, 5); /* replies are not client->server packets */

	/* HOST origin: the WAN device's MAC in front, redirect into its ingress */
	fwd.src = rep.dst = "203.0.113.2";
	flow_put(in, &fwd, XP_V_PROXY, XP_SRC_RULE, XP_ORIGIN_HOST, if_wan, 1);
	iface_put(in, if_wan, mac_wan, XP_IFACE_WAN);
	pkt_build(&rep, &p);
	assert_int_equal(run(in, P_PX_REPLY, &p, if_xp0, &r), TC_ACT_REDIRECT);
	assert_memory_equal(r.out, mac_wan, 6);
	assert_memory_equal(r.out + 6, p.b + 6, p.len - 6);
	/* ... an L3 WAN device: no MAC to write */
	iface_put(in, if_wan, NULL, XP_IFACE_WAN | XP_IFACE_L3);
	assert_int_equal(run(in, P_PX_REPLY, &p, if_xp0, &r), TC_ACT_REDIRECT);
	assert_memory_equal(r.out, p.b, p.len);
	/* ... a device the loader did not describe: a counted drop, not a frame nobody takes */
	map_clear(in->ifaces);
	assert_int_equal(run(in, P_PX_REPLY, &p, if_xp0, &r), TC_ACT_SHOT);
	/* no flow */
	rep.dport = 1;
	assert_int_equal(send_spec(in, P_PX_REPLY, &rep, if_xp0, &r), TC_ACT_SHOT);
	stats_get(in, &st);
	assert_int_equal(st.drops[XP_DROP_REDIRECT], 1);
	assert_int_equal(st.drops[XP_DROP_NO_FLOW], 1);
	assert_int_equal(st.hook_pkts[XP_HOOK_PROXY_REPLY], 5);

	/* IPv6, and a fragmented reply: the first fragment is remembered, the later follows */
	{
		struct pkt_spec f6 = PKT_UDP6("2001:db8:1::10", 5353, "2001:db8:99::7", 443);
		struct pkt_spec r6 = PKT_UDP6("2001:db8:99::7", 443, "2001:db8:1::10", 5353);
		struct pkt_spec r6l;

		flow_put(in, &f6, XP_V_PROXY, XP_SRC_RULE, XP_ORIGIN_LAN, if_lan, 1);
		r6.frag = 1;
		r6.frag_id = 0xabcdef;
		r6.payload = 48;
		r6l = r6;
		r6l.frag = 2;
		r6l.frag_off8 = 7;
		assert_int_equal(send_spec(in, P_PX_REPLY, &r6, if_xp0, &r), TC_ACT_REDIRECT);
		assert_int_equal(send_spec(in, P_PX_REPLY, &r6l, if_xp0, &r), TC_ACT_REDIRECT);
		r6l.frag_id = 1;
		assert_int_equal(send_spec(in, P_PX_REPLY, &r6l, if_xp0, &r), TC_ACT_SHOT);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_FRAG_ORPHAN], 1);
	}
}

/* ---------------------------------------------------------------- UDP (owner: the UDP work) */

/* The entry WAN ingress leaves for UDP a remote peer sends to the router: the tuple with the
 * destination address zeroed (flow.h, udp_answers_remote). */
static int remote_get(struct inst *in, const struct pkt_spec *s, struct xp_flow *f)
{
	struct xp_tuple t;

	pkt_tuple(s, &t);
	memset(t.daddr, 0, sizeof(t.daddr));
	return bpf_map_lookup_elem(in->flows, &t, f);
}

/* UDP answering a flow the other side started is not a new client flow: a server on the
 * router (WAN egress), a port-forwarded server behind it (LAN ingress), v4 and v6; the rules
 * still decide real client flows; nothing is recorded without XP_CFG_UDP or for forwarded
 * traffic. */
static void test_udp_answers(void **state)
{
	struct inst *in = reset(&I_plain);
	struct pkt_spec ask = PKT_UDP4("198.51.100.9", 5000, "203.0.113.2", 9999);
	struct pkt_spec ans_rtr = PKT_UDP4("203.0.113.2", 9999, "198.51.100.9", 5000);
	struct pkt_spec ans_fwd = PKT_UDP4("192.168.1.20", 9999, "198.51.100.9", 5000);
	struct pkt_spec client = PKT_UDP4("192.168.1.21", 9998, "198.51.100.9", 5000);
	struct pkt_spec ask6 = PKT_UDP6("2001:db8:99::9", 5000, "2001:db8:ff::2", 4500);
	struct pkt_spec ans6 = PKT_UDP6("2001:db8:1::20", 4500, "2001:db8:99::9", 5000);
	struct xp_stats st;
	struct xp_flow f;
	struct run r;

	ruleset(in, 0, 0, XP_V_PROXY, 4, 2);
	local_put(in, "203.0.113.2", 0);
	local_put(in, "2001:db8:ff::2", 1);
	assert_int_equal(send_spec(in, P_WAN_IN, &ask, if_wan, &r), TC_ACT_OK);
	assert_int_equal(remote_get(in, &ask, &f), 0);
	assert_int_equal(f.verdict, XP_V_DIRECT);
	assert_int_equal(f.vsrc, XP_SRC_MIDSTREAM);
	assert_int_equal(f.origin, XP_ORIGIN_HOST);
	assert_int_equal(f.ifindex, if_wan);
	assert_int_equal(f.hook, XP_HOOK_WAN_INGRESS);
	check_no_flow(in, &ask); /* only the zeroed key */
	/* a second datagram refreshes it, it does not add one */
	assert_int_equal(send_spec(in, P_WAN_IN, &ask, if_wan, &r), TC_ACT_OK);
	assert_int_equal(remote_get(in, &ask, &f), 0);
	assert_int_equal(f.packets, 1);

	/* the router's own server answers: DIRECT at WAN egress, not through the rules */
	assert_int_equal(send_spec(in, P_WAN_EG, &ans_rtr, if_wan, &r), TC_ACT_OK);
	check_flow(in, &ans_rtr, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_HOST, if_wan,
		   XP_HOOK_WAN_EGRESS);
	/* a port-forwarded server behind the router answers (DNAT changed the address) */
	assert_int_equal(send_spec(in, P_LAN, &ans_fwd, if_lan, &r), TC_ACT_OK);
	check_flow(in, &ans_fwd, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_LAN, if_lan, 0);
	/* a client flow to the same peer from another port is the rules' to decide: proxied */
	assert_int_equal(send_spec(in, P_LAN, &client, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &client, XP_V_PROXY, XP_SRC_FALLBACK, 4, 2, XP_ORIGIN_LAN, if_lan, 0);

	/* IPv6 */
	assert_int_equal(send_spec(in, P_WAN_IN, &ask6, if_wan, &r), TC_ACT_OK);
	assert_int_equal(send_spec(in, P_LAN, &ans6, if_lan, &r), TC_ACT_OK);
	check_flow(in, &ans6, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_LAN, if_lan, 0);

	/* an exact reverse entry counts as well */
	{
		struct pkt_spec theirs = PKT_UDP4("198.51.100.9", 6000, "192.168.1.30", 7000);
		struct pkt_spec back = PKT_UDP4("192.168.1.30", 7000, "198.51.100.9", 6000);

		flow_put(in, &theirs, XP_V_DIRECT, XP_SRC_RULE, XP_ORIGIN_LAN, if_lan, 0);
		assert_int_equal(send_spec(in, P_LAN, &back, if_lan, &r), TC_ACT_OK);
		check_flow(in, &back, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_LAN, if_lan, 0);
	}
	stats_get(in, &st);
	assert_int_equal(st.vsrc[XP_SRC_MIDSTREAM], 4);
	assert_int_equal(st.flows[XP_V_PROXY], 1);
	assert_int_equal(st.map_full, 0);

	/* forwarded UDP (not to a router address) leaves nothing behind at WAN ingress */
	ask.dst = "198.51.100.200";
	ask.sport = 5001; /* the zeroed key would otherwise be the entry above */
	assert_int_equal(send_spec(in, P_WAN_IN, &ask, if_wan, &r), TC_ACT_OK);
	assert_int_not_equal(remote_get(in, &ask, &f), 0);
	/* neither does anything without XP_CFG_UDP: UDP is never proxied there */
	in = reset(&I_peer);
	local_put(in, "203.0.113.2", 0);
	ask.dst = "203.0.113.2";
	assert_int_equal(send_spec(in, P_WAN_IN, &ask, if_wan, &r), TC_ACT_OK);
	assert_int_not_equal(remote_get(in, &ask, &f), 0);
}

/* A UDP socket of the test's own netns: bound to local:lport, connected to peer:pport when
 * peer is not NULL. The fd, or -1 (failed with a message). */
static int sh(const char *cmd);

static int udp_sock(int v6, const char *local, uint16_t lport, const char *peer, uint16_t pport)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	struct sockaddr *a = v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4;
	socklen_t alen = v6 ? sizeof(a6) : sizeof(a4);
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);

	if (fd < 0)
		goto fail;
	a6.sin6_port = a4.sin_port = htons(lport);
	if (inet_pton(v6 ? AF_INET6 : AF_INET, local,
		      v6 ? (void *)&a6.sin6_addr : (void *)&a4.sin_addr) != 1 ||
	    bind(fd, a, alen))
		goto fail;
	if (!peer)
		return fd;
	a6.sin6_port = a4.sin_port = htons(pport);
	if (inet_pton(v6 ? AF_INET6 : AF_INET, peer,
		      v6 ? (void *)&a6.sin6_addr : (void *)&a4.sin_addr) != 1 ||
	    connect(fd, a, alen))
		goto fail;
	return fd;
fail:
	fprintf(stderr, "udp_sock %s:%u -> %s:%u: %s\n", local, lport, peer ? peer : "-", pport,
		strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* WAN ingress asks the kernel which socket a UDP datagram to a router address goes to: a
 * reply to a connected socket of the router (xproxyd's upstream sockets), or to any socket
 * with xproxy's mark, is not recorded as a flow the peer started, so a LAN client that later
 * uses the same port towards the same peer is classified by the rules. A server's unconnected
 * socket, or no socket at all, is recorded as before. v4 and v6; the sockets live in the
 * test's netns, which BPF_PROG_TEST_RUN looks up in. */
static void test_udp_answers_socket(void **state)
{
	struct inst *in = reset(&I_plain);
	/* a reply to the router's connected socket 203.0.113.2:7001 <-> 198.51.100.9:5000 */
	struct pkt_spec rep = PKT_UDP4("198.51.100.9", 5000, "203.0.113.2", 7001);
	struct pkt_spec client = PKT_UDP4("192.168.1.21", 7001, "198.51.100.9", 5000);
	/* the same local port from another peer port: not that socket's tuple */
	struct pkt_spec other = PKT_UDP4("198.51.100.9", 5001, "203.0.113.2", 7001);
	/* a server (unconnected) on 7002, nothing on 7003; xproxyd's own unconnected socket
	 * (a full-cone upstream one: it carries the mark) on 7006 */
	struct pkt_spec ask_srv = PKT_UDP4("198.51.100.9", 5000, "203.0.113.2", 7002);
	struct pkt_spec ans_srv = PKT_UDP4("203.0.113.2", 7002, "198.51.100.9", 5000);
	struct pkt_spec ask_none = PKT_UDP4("198.51.100.9", 5000, "203.0.113.2", 7003);
	struct pkt_spec ans_fwd = PKT_UDP4("192.168.1.20", 7003, "198.51.100.9", 5000);
	struct pkt_spec rep_cone = PKT_UDP4("198.51.100.9", 5000, "203.0.113.2", 7006);
	struct pkt_spec client_cone = PKT_UDP4("192.168.1.21", 7006, "198.51.100.9", 5000);
	struct pkt_spec rep6 = PKT_UDP6("2001:db8:99::9", 5000, "2001:db8:ff::2", 7004);
	struct pkt_spec client6 = PKT_UDP6("2001:db8:1::21", 7004, "2001:db8:99::9", 5000);
	struct pkt_spec ask6 = PKT_UDP6("2001:db8:99::9", 5000, "2001:db8:ff::2", 7005);
	struct pkt_spec ans6 = PKT_UDP6("2001:db8:1::20", 7005, "2001:db8:99::9", 5000);
	int conn, srv, conn6, srv6, cone, mark = MARK | 0x10000 /* outside the mask */;
	struct xp_stats st;
	struct xp_flow f;
	struct run r;

	/* the router's addresses and routes to the peers, in the test's own netns */
	assert_int_equal(sh("ip link set lo up && ip addr replace 203.0.113.2/32 dev lo && "
			    "ip addr replace 2001:db8:ff::2/128 dev lo nodad && "
			    "ip route replace 198.51.100.0/24 dev lo && "
			    "ip -6 route replace 2001:db8:99::/64 dev lo"),
			 0);
	conn = udp_sock(0, "203.0.113.2", 7001, "198.51.100.9", 5000);
	srv = udp_sock(0, "203.0.113.2", 7002, NULL, 0);
	conn6 = udp_sock(1, "2001:db8:ff::2", 7004, "2001:db8:99::9", 5000);
	srv6 = udp_sock(1, "::", 7005, NULL, 0); /* a wildcard server socket counts as one */
	cone = udp_sock(0, "203.0.113.2", 7006, NULL, 0);
	assert_true(conn >= 0 && srv >= 0 && conn6 >= 0 && srv6 >= 0 && cone >= 0);
	assert_int_equal(setsockopt(cone, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)), 0);

	ruleset(in, 0, 0, XP_V_PROXY, 4, 2);
	local_put(in, "203.0.113.2", 0);
	local_put(in, "2001:db8:ff::2", 1);

	/* the reply to the connected socket: nothing recorded, whatever the number of replies */
	assert_int_equal(send_spec(in, P_WAN_IN, &rep, if_wan, &r), TC_ACT_OK);
	assert_int_equal(send_spec(in, P_WAN_IN, &rep, if_wan, &r), TC_ACT_OK);
	assert_int_not_equal(remote_get(in, &rep, &f), 0);
	check_no_flow(in, &rep);
	/* so a LAN client from that port to that peer is the rules' to decide: proxied */
	assert_int_equal(send_spec(in, P_LAN, &client, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &client, XP_V_PROXY, XP_SRC_FALLBACK, 4, 2, XP_ORIGIN_LAN, if_lan, 0);
	/* a datagram from another peer port is not the connected socket's (no socket): recorded */
	assert_int_equal(send_spec(in, P_WAN_IN, &other, if_wan, &r), TC_ACT_OK);
	assert_int_equal(remote_get(in, &other, &f), 0);
	assert_int_equal(f.vsrc, XP_SRC_MIDSTREAM);

	/* a server's unconnected socket: recorded, and the server's answer stays DIRECT */
	assert_int_equal(send_spec(in, P_WAN_IN, &ask_srv, if_wan, &r), TC_ACT_OK);
	assert_int_equal(remote_get(in, &ask_srv, &f), 0);
	assert_int_equal(f.verdict, XP_V_DIRECT);
	assert_int_equal(f.vsrc, XP_SRC_MIDSTREAM);
	assert_int_equal(send_spec(in, P_WAN_EG, &ans_srv, if_wan, &r), TC_ACT_OK);
	check_flow(in, &ans_srv, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_HOST, if_wan,
		   XP_HOOK_WAN_EGRESS);
	/* no socket (a port forward): recorded, the forwarded server's answer stays DIRECT */
	assert_int_equal(send_spec(in, P_WAN_IN, &ask_none, if_wan, &r), TC_ACT_OK);
	assert_int_equal(remote_get(in, &ask_none, &f), 0);
	assert_int_equal(send_spec(in, P_LAN, &ans_fwd, if_lan, &r), TC_ACT_OK);
	check_flow(in, &ans_fwd, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_LAN, if_lan, 0);

	/* xproxyd's marked socket: not recorded though unconnected, a LAN client is proxied */
	assert_int_equal(send_spec(in, P_WAN_IN, &rep_cone, if_wan, &r), TC_ACT_OK);
	assert_int_not_equal(remote_get(in, &rep_cone, &f), 0);
	assert_int_equal(send_spec(in, P_LAN, &client_cone, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &client_cone, XP_V_PROXY, XP_SRC_FALLBACK, 4, 2, XP_ORIGIN_LAN, if_lan, 0);

	/* IPv6: the connected socket's reply is not recorded, the wildcard server's question is */
	assert_int_equal(send_spec(in, P_WAN_IN, &rep6, if_wan, &r), TC_ACT_OK);
	assert_int_not_equal(remote_get(in, &rep6, &f), 0);
	assert_int_equal(send_spec(in, P_LAN, &client6, if_lan, &r), TC_ACT_REDIRECT);
	check_flow(in, &client6, XP_V_PROXY, XP_SRC_FALLBACK, 4, 2, XP_ORIGIN_LAN, if_lan, 0);
	assert_int_equal(send_spec(in, P_WAN_IN, &ask6, if_wan, &r), TC_ACT_OK);
	assert_int_equal(remote_get(in, &ask6, &f), 0);
	assert_int_equal(send_spec(in, P_LAN, &ans6, if_lan, &r), TC_ACT_OK);
	check_flow(in, &ans6, XP_V_DIRECT, XP_SRC_MIDSTREAM, 0, 0, XP_ORIGIN_LAN, if_lan, 0);

	/* once the connected socket is gone, the same reply is recorded again (nothing cached) */
	close(conn);
	assert_int_equal(send_spec(in, P_WAN_IN, &rep, if_wan, &r), TC_ACT_OK);
	assert_int_equal(remote_get(in, &rep, &f), 0);

	stats_get(in, &st);
	assert_int_equal(st.flows[XP_V_PROXY], 3);
	assert_int_equal(st.vsrc[XP_SRC_MIDSTREAM], 3);
	assert_int_equal(st.map_full, 0);
	close(srv);
	close(conn6);
	close(srv6);
	close(cone);
}

/* UDP replies from the private netns reach the client: LAN (redirect_neigh, untouched) and the
 * router itself (WAN MAC, redirect to ingress), v4 and v6; a full-cone session's second peer
 * once the daemon wrote its entry (before that: a counted NO_FLOW drop). */
static void test_udp_replies(void **state)
{
	struct inst *in = reset(&I_plain);
	struct pkt_spec fwd = PKT_UDP4("192.168.1.10", 5000, "198.51.100.7", 3478);
	struct pkt_spec rep = PKT_UDP4("198.51.100.7", 3478, "192.168.1.10", 5000);
	struct pkt_spec peer2 = PKT_UDP4("198.51.100.8", 4000, "192.168.1.10", 5000);
	struct pkt_spec learn = PKT_UDP4("192.168.1.10", 5000, "198.51.100.8", 4000);
	struct pkt_spec fwd6 = PKT_UDP6("2001:db8:ff::2", 5001, "2001:db8:99::7", 53);
	struct pkt_spec rep6 = PKT_UDP6("2001:db8:99::7", 53, "2001:db8:ff::2", 5001);
	struct xp_stats st;
	struct pkt p;
	struct run r;

	flow_put(in, &fwd, XP_V_PROXY, XP_SRC_RULE, XP_ORIGIN_LAN, if_lan, 1);
	pkt_build(&rep, &p);
	assert_int_equal(run(in, P_PX_REPLY, &p, if_xp0, &r), TC_ACT_REDIRECT);
	assert_memory_equal(r.out, p.b, p.len);
	assert_int_equal(send_spec(in, P_PX_REPLY, &peer2, if_xp0, &r), TC_ACT_SHOT);
	flow_put(in, &learn, XP_V_PROXY, XP_SRC_RULE, XP_ORIGIN_LAN, if_lan, 1);
	assert_int_equal(send_spec(in, P_PX_REPLY, &peer2, if_xp0, &r), TC_ACT_REDIRECT);
	/* and the client's next datagram to that peer goes to the proxy (the same session) */
	assert_int_equal(send_spec(in, P_LAN, &learn, if_lan, &r), TC_ACT_REDIRECT);

	flow_put(in, &fwd6, XP_V_PROXY, XP_SRC_RULE, XP_ORIGIN_HOST, if_wan, 1);
	iface_put(in, if_wan, mac_wan, XP_IFACE_WAN);
	pkt_build(&rep6, &p);
	assert_int_equal(run(in, P_PX_REPLY, &p, if_xp0, &r), TC_ACT_REDIRECT);
	assert_memory_equal(r.out, mac_wan, 6);
	assert_memory_equal(r.out + 6, p.b + 6, p.len - 6);
	stats_get(in, &st);
	assert_int_equal(st.drops[XP_DROP_NO_FLOW], 1);
}

/* A proxy verdict on an object without xp0 (bare config): a counted drop, not a redirect to
 * nowhere. Its WAN egress (mark 0 under mask 0) leaves everything alone. */
static void test_bare_config(void **state)
{
	struct inst *in = reset(&I_bare);
	struct pkt_spec s = T4(443);
	struct xp_stats st;
	struct run r;

	/* heartbeat_timeout_ns is 0 here: any heartbeat not ahead of the clock is stale */
	in->skel->bss->xp_ctl.heartbeat_ns = now_ns() + 60000000000ull;
	ruleset(in, 0, 0, XP_V_PROXY, 1, 1);
	assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_SHOT);
	stats_get(in, &st);
	assert_int_equal(st.drops[XP_DROP_REDIRECT], 1);
	s.sport = 1;
	assert_int_equal(send_spec(in, P_WAN_EG, &s, if_wan, &r), TC_ACT_OK);
	check_no_flow(in, &s);
	ev_collect(in);
	assert_int_equal(ev_count(XP_EV_DROP), 0); /* DROP events are off */
}

/* A full ring buffer costs events, never packets. */
static void test_ringbuf_full(void **state)
{
	struct inst *in = reset(&I_peer); /* 4 KiB ring */
	struct xp_stats st;
	int i;

	ruleset(in, 0, 0, XP_V_PROXY, 1, 1);
	for (i = 0; i < 200; i++) {
		struct pkt_spec s = PKT_TCP4("192.168.1.10", (uint16_t)(20000 + i), "198.51.100.7",
					     443, TH_SYN);
		struct run r;

		assert_int_equal(send_spec(in, P_LAN, &s, if_lan, &r), TC_ACT_REDIRECT);
		check_flow(in, &s, XP_V_PROXY, XP_SRC_FALLBACK, 1, 1, XP_ORIGIN_LAN, if_lan, 0);
	}
	ev_collect(in);
	stats_get(in, &st);
	assert_true(n_evs > 0 && n_evs < 200);
	assert_int_equal(st.events_lost, 200 - n_evs);
	assert_int_equal(st.flows[XP_V_PROXY], 200);
}

/* Headers that claim IPv4/IPv6 but contradict themselves: counted MALFORMED drops, whichever
 * program sees them (WAN ingress excepted: it never drops). */
static void test_malformed_headers(void **state)
{
	struct {
		const char *what;
		struct pkt_spec s;
		size_t off; /* byte to patch, from the L3 header (or from the L4 header: l4 = 1) */
		int l4;
		uint8_t val;
	} c[] = {
		{"TCP doff 4", T4(443), 12, 1, 4 << 4},
		{"TCP doff 0", T6(443), 12, 1, 0},
		{"TCP doff past the segment", T4(443), 12, 1, 15 << 4},
		{"IPv4 ethertype, version 6", T4(443), 0, 0, 0x65},
		{"IPv6 ethertype, version 4", T6(443), 0, 0, 0x40},
		{"IPv4 ihl 4", T4(443), 0, 0, 0x44},
		{"IPv4 tot_len below ihl", T4(443), 3, 0, 16},
		{"IPv4 tot_len past the frame", U4(53), 3, 0, 200},
		{"IPv6 payload_len past the frame", T6(443), 5, 0, 200},
		{"IPv6 hop-by-hop past the payload", T6(443), 41, 0, 9},
	};
	int progs[] = {P_LAN, P_WAN_EG, P_PX_IN, P_PX_REPLY};
	size_t i, j;

	c[9].s.n_ext = 1;
	c[9].s.ext[0] = 0;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		for (j = 0; j < sizeof(progs) / sizeof(progs[0]); j++) {
			struct inst *in = reset(&I_plain);
			struct xp_stats st;
			struct pkt p;
			struct run r;

			ruleset(in, 0, 0, XP_V_PROXY, 1, 1);
			pkt_build(&c[i].s, &p);
			p.b[(c[i].l4 ? p.l4off : p.l3off) + c[i].off] = c[i].val;
			if (run(in, progs[j], &p, if_lan, &r) != TC_ACT_SHOT)
				fail_msg("%s: program %d returned %u", c[i].what, progs[j],
					 r.retval);
			stats_get(in, &st);
			assert_int_equal(st.drops[XP_DROP_MALFORMED], 1);
			check_no_flow(in, &c[i].s);
			assert_int_equal(run(in, P_WAN_IN, &p, if_lan, &r), TC_ACT_OK);
		}
	/* two IPv6 fragment headers: an hop-by-hop header turned into a second one */
	{
		struct inst *in = reset(&I_plain);
		struct pkt_spec s = PKT_UDP6("2001:db8:1::10", 5000, "2001:db8:99::7", 53);
		struct xp_stats st;
		struct pkt p;
		struct run r;

		s.n_ext = 1;
		s.ext[0] = 0;
		s.frag = 1;
		s.frag_id = 9;
		pkt_build(&s, &p);
		p.b[p.l3off + 6] = 44;	   /* the first header is a fragment header too */
		p.b[p.l3off + 40 + 1] = 0; /* 8 bytes, like a fragment header */
		p.b[p.l3off + 40 + 2] = 0; /* offset 0 ... */
		p.b[p.l3off + 40 + 3] = 1; /* ... and M: a first fragment */
		assert_int_equal(run(in, P_LAN, &p, if_lan, &r), TC_ACT_SHOT);
		stats_get(in, &st);
		assert_int_equal(st.drops[XP_DROP_MALFORMED], 1);
	}
}

/* ------------------------------------------------------------------------ truncation */

/* The corpus: every kind of packet the other tests use. */
static int corpus(struct pkt_spec *out)
{
	int n = 0, i;

	out[n++] = T4(443);
	out[n++] = T6(443);
	out[n++] = U4(53);
	out[n++] = PKT_UDP6("2001:db8:1::10", 5000, "2001:db8:99::7", 53);
	out[n++] = ICMP4;
	out[n++] = ICMP6;
	out[n++] = GRE4;
	out[n] = T4(443);
	out[n++].vlan = 1;
	out[n] = T6(443);
	out[n++].vlan = 1;
	out[n] = T4(443);
	out[n++].ip4_optlen = 40;
	out[n] = T6(443);
	out[n].n_ext = 4;
	for (i = 0; i < 4; i++)
		out[n].ext[i] = (uint8_t[]){0, 60, 43, 51}[i];
	n++;
	out[n] = U4(53);
	out[n].frag = 1;
	out[n++].payload = 24;
	out[n] = U4(53);
	out[n].frag = 2;
	out[n].frag_off8 = 3;
	out[n++].payload = 24;
	out[n] = PKT_UDP6("2001:db8:1::10", 5000, "2001:db8:99::7", 53);
	out[n].frag = 1;
	out[n++].payload = 16;
	out[n] = T4(443);
	out[n].tcp_flags = TH_ACK;
	out[n++].payload = 60;
	out[n] = T4(443);
	out[n++].l3 = 1;
	out[n] = T6(443);
	out[n++].l3 = 1;
	out[n] = (struct pkt_spec){.ethertype = 0x0806};
	n++;
	return n;
}

/* Rewrite the IP length fields to the truncated length, so the L4 checks are what fails. */
static void make_consistent(const struct pkt_spec *s, struct pkt *p, size_t len)
{
	uint8_t *ip = p->b + p->l3off;

	if (s->ethertype || len < p->l3off + (s->v6 ? 40 : 20))
		return;
	if (s->v6) {
		pkt_put16(ip + 4, (uint16_t)(len - p->l3off - 40));
	} else {
		pkt_put16(ip + 2, (uint16_t)(len - p->l3off));
		ip[10] = ip[11] = 0;
		pkt_put16(ip + 10, pkt_csum_fold(pkt_csum_add(0, ip, (ip[0] & 0xf) * 4)));
	}
}

/* Every packet of the corpus, at every length, through every program that takes it: never
 * a crash or a redirect of a broken packet; an outcome fixed by the table in
 * docs/datapath.md. */
static void test_truncation(void **state)
{
	struct pkt_spec c[32];
	int n = corpus(c), i, consistent;

	for (consistent = 0; consistent < 2; consistent++)
		for (i = 0; i < n; i++) {
			int progs_l2[] = {P_LAN, P_WAN_EG, P_WAN_IN, P_PX_IN, P_PX_REPLY};
			int progs_l3[] = {P_LAN_L3, P_WAN_EG_L3};
			int *progs = c[i].l3 ? progs_l3 : progs_l2;
			int nprogs = c[i].l3 ? 2 : 5, j;
			size_t hdr_end, len;
			struct pkt full;

			pkt_build(&c[i], &full);
			/* where the headers the datapath must see end */
			hdr_end = c[i].ethertype   ? full.l3off
				  : c[i].frag == 2 ? full.l4off
						   : full.l4off + pkt_l4hdr_len(c[i].proto);
			for (j = 0; j < nprogs; j++)
				for (len = 0; len < full.len; len++) {
					struct inst *in = &I_plain;
					struct xp_stats st;
					struct pkt p = full;
					struct run r;
					int err, malformed;

					reset(in);
					ruleset(in, 0, 0, XP_V_PROXY, 1, 1);
					if (consistent)
						make_consistent(&c[i], &p, len);
					err = run_raw(in, progs[j], p.b, len, if_lan, 0, &r);
					/* test_run's own limits, not the program's: frames below
					 * ETH_HLEN, and (on recent kernels) frames whose ethertype
					 * says IPv4/IPv6 but that cannot hold that header. The same
					 * parser checks run at those lengths for the tagged and L3
					 * entries of the corpus, where test_run does not look. */
					if (err == -EINVAL &&
					    (len < 14 ||
					     (!c[i].vlan && !c[i].l3 && !c[i].ethertype &&
					      len < full.l3off + (c[i].v6 ? 40 : 20))))
						continue;
					if (err)
						fail_msg("corpus %d prog %d len %zu: test_run %d",
							 i, progs[j], len, err);
					stats_get(in, &st);
					/* what the program must conclude */
					if (c[i].ethertype)
						malformed = len < full.l3off;
					else if (!consistent)
						malformed = 1; /* an IP length field now lies */
					else
						malformed = len < hdr_end;
					if (c[i].ethertype && !c[i].vlan && len >= 14)
						malformed = 0;
					if (progs[j] == P_WAN_IN) {
						/* never changes a packet's fate */
						assert_int_equal(r.retval, TC_ACT_OK);
						assert_int_equal(st.drops[XP_DROP_MALFORMED], 0);
						continue;
					}
					if (malformed) {
						if (r.retval != TC_ACT_SHOT ||
						    st.drops[XP_DROP_MALFORMED] != 1)
							fail_msg("corpus %d prog %d len %zu/%zu "
								 "consistent "
								 "%d: ret %u malformed drops %llu",
								 i, progs[j], len, full.len,
								 consistent, r.retval,
								 (unsigned long long)st
									 .drops[XP_DROP_MALFORMED]);
						check_no_flow(in, &c[i]);
						ev_collect(in);
						assert_int_equal(ev_count(XP_EV_FLOW_NEW), 0);
						assert_int_equal(ev_count(XP_EV_DROP), 1);
					} else {
						assert_int_equal(st.drops[XP_DROP_MALFORMED], 0);
						assert_true(r.retval == TC_ACT_OK ||
							    r.retval == TC_ACT_REDIRECT ||
							    r.retval == TC_ACT_SHOT);
					}
				}
		}
}

/* ------------------------------------------------------------------------------ main */

static int has_caps(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {};
	uint64_t eff;

	if (syscall(SYS_capget, &h, d))
		return 0;
	eff = (uint64_t)d[1].effective << 32 | d[0].effective;
	return (eff & (1ull << CAP_NET_ADMIN)) &&
	       ((eff & (1ull << 39 /* CAP_BPF */)) || (eff & (1ull << CAP_SYS_ADMIN)));
}

static int sh(const char *cmd)
{
	int rc = system(cmd);

	if (rc != 0)
		fprintf(stderr, "test_datapath: '%s' failed (%d)\n", cmd, rc);
	return rc;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matrix),
		cmocka_unit_test(test_dst_map),
		cmocka_unit_test(test_rule_conditions),
		cmocka_unit_test(test_rule_take),
		cmocka_unit_test(test_rule_order_and_fallback),
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_midstream),
		cmocka_unit_test(test_noproxy),
		cmocka_unit_test(test_failsafe),
		cmocka_unit_test(test_wan_egress),
		cmocka_unit_test(test_lan_l3),
		cmocka_unit_test(test_peer_mode),
		cmocka_unit_test(test_vlan),
		cmocka_unit_test(test_block_rst),
		cmocka_unit_test(test_fragments),
		cmocka_unit_test(test_fragment_order),
		cmocka_unit_test(test_fragment_garbage),
		cmocka_unit_test(test_fragment_proxy_side),
		cmocka_unit_test(test_proxy_lookup),
		cmocka_unit_test(test_exthdr_and_options),
		cmocka_unit_test(test_malformed_headers),
		cmocka_unit_test(test_non_ip_and_nd),
		cmocka_unit_test(test_flow_end),
		cmocka_unit_test(test_wan_ingress),
		cmocka_unit_test(test_proxy_ingress),
		cmocka_unit_test(test_proxy_reply),
		cmocka_unit_test(test_bare_config),
		cmocka_unit_test(test_ringbuf_full),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_udp_answers),
		cmocka_unit_test(test_udp_answers_socket),
		cmocka_unit_test(test_udp_replies),
	};
	struct xp_bpf_config plain = {
		.abi_version = XP_BPF_ABI_VERSION,
		.flags = XP_CFG_DROP_EVENTS | XP_CFG_UDP,
		.mark = MARK,
		.mark_mask = 0xffff,
		.redirect_mode = XP_REDIRECT_PLAIN,
		.n_workers = 4,
		.heartbeat_timeout_ns = 1500000000ull,
	};
	struct xp_bpf_config peer;
	int err;

	if (!has_caps()) {
		printf("SKIP: test_datapath needs CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN\n");
		return 77;
	}
	/* A network namespace of our own: veth devices for real ifindexes, gone with us. */
	if (unshare(CLONE_NEWNET)) {
		if (errno == EPERM) {
			printf("SKIP: unshare(CLONE_NEWNET) not permitted\n");
			return 77;
		}
		fprintf(stderr, "test_datapath: unshare: %s\n", strerror(errno));
		return 1;
	}
	if (sh("ip link add xpt-lan type veth peer name xpt-lanp") ||
	    sh("ip link add xpt-wan type veth peer name xpt-wanp") ||
	    sh("ip link add xpt-xp0 type veth peer name xpt-xp0p"))
		return 1;
	if_lan = if_nametoindex("xpt-lan");
	if_wan = if_nametoindex("xpt-wan");
	if_xp0 = if_nametoindex("xpt-xp0");
	if (!if_lan || !if_wan || !if_xp0)
		return 1;
	ncpu = libbpf_num_possible_cpus();

	plain.xp0_ifindex = if_xp0;
	memcpy(plain.xp0p_mac, mac_xp0p, 6);
	memcpy(plain.xp0_mac, mac_xp0, 6);
	peer = plain;
	peer.redirect_mode = XP_REDIRECT_PEER;
	peer.flags = XP_CFG_EVENTS_DIRECT;
	peer.n_workers = 1;
	err = load(&I_plain, &plain, 0);
	if (!err)
		err = load(&I_peer, &peer, 4096);
	if (!err)
		err = load(&I_bare, NULL, 0);
	if (err) {
		fprintf(stderr, "test_datapath: loading the skeleton failed: %s\n", strerror(-err));
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
