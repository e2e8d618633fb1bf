/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * rules.h - the kernel half of [route]: walk the live generation of xp_rules, first match wins.
 *
 * API:
 *   int rules_eval(p, d)   fill d (verdict, vsrc RULE or FALLBACK, rule_id, outbound_id)
 *                          from xp_ctl.rulesets[xp_ctl.rules_gen & 1]; always decides
 *
 * Semantics (the encoding is described in include/xproxy/bpf_abi.h; core/rules.c matches the
 * same way in userspace). A rule matches when every condition it has matches:
 *   ipmask          the flow's XP_IP_V4/XP_IP_V6 bit is in it (0 = any)
 *   l4mask          the flow's XP_L4_* category is in it (0 = any)
 *   dport/sport     lo <= port <= hi unless the range is 0..65535, inverted by NOT_DPORT/SPORT;
 *                   flows without ports use port 0
 *   port set        (prange_count > 0, take != PORTS) dport inside one of the sorted disjoint
 *                   intervals, inverted by NOT_PRANGE
 *   dst/src set     LPM lookup {160, htonl(set), addr}: member = found and verdict != NONE
 *                   (NONE marks a hole), inverted by NOT_DST/NOT_SRC
 * take selects where the verdict comes from: the rule, or the value found in the dst set, the
 * src set or the port intervals (which must then be found: a take-rule matches only members,
 * and its NOT flag is not applied). Entries from userspace that cannot be right are not
 * guessed at: a take from a set the rule does not have, an unknown take, a prange whose
 * verdict is NONE never match. No rule matched: the ruleset's fallback (XP_V_NONE: no rules
 * loaded yet, DIRECT).
 *
 * The walk is a bpf_loop() over at most XP_MAX_RULES rules (the verifier checks the callback
 * once, not once per rule); the port-interval binary search is a bpf_loop() of
 * XP_PRANGE_STEPS probes.
 */
#ifndef XP_BPF_RULES_H
#define XP_BPF_RULES_H

#include "common.h"
#include "maps.h"

/* ceil(log2(XP_MAX_PRANGES + 1)): enough probes for any count <= XP_MAX_PRANGES. */
#define XP_PRANGE_STEPS 13
_Static_assert((1u << (XP_PRANGE_STEPS - 1)) <= XP_MAX_PRANGES + 1 &&
		       (1u << XP_PRANGE_STEPS) > XP_MAX_PRANGES,
	       "XP_PRANGE_STEPS");

struct rule_ctx {
	__u8 daddr[16];
	__u8 saddr[16];
	__u32 first; /* absolute index of the ruleset's first rule */
	__u16 dport;
	__u16 sport;
	__u8 l4cat;
	__u8 ipbit;
	__u8 matched;
	__u8 verdict;
	__u32 rule_id;
	__u16 outbound_id;
	__u8 pad[2];
} __attribute__((aligned(8)));

static __always_inline int verdict_valid(__u32 v)
{
	return v >= XP_V_DIRECT && v <= XP_V_DNS;
}

struct prange_ctx {
	__u32 first;
	__u32 lo, hi; /* the interval still searched, relative to first */
	__u32 rule_id;
	__u16 outbound_id;
	__u16 port;
	__u8 found;
	__u8 verdict;
	__u8 pad[2];
};

/* One probe of the binary search. A callback of its own: as a plain loop inside the rule
 * callback, the verifier walked every lo/hi path (2^13) and hit its 1M limit. */
static long prange_step(__u32 i, void *data)
{
	struct prange_ctx *c = data;
	struct xp_prange *pr;
	__u32 mid, idx;

	if (c->lo >= c->hi)
		return 1;
	mid = (c->lo + c->hi) >> 1;
	idx = c->first + mid;
	pr = bpf_map_lookup_elem(&xp_pranges, &idx);
	if (!pr)
		return 1;
	if (c->port < pr->lo) {
		c->hi = mid;
	} else if (c->port > pr->hi) {
		c->lo = mid + 1;
	} else {
		c->found = 1;
		c->verdict = pr->verdict;
		c->rule_id = pr->rule_id;
		c->outbound_id = pr->outbound_id;
		return 1;
	}
	return 0;
}

/* Is port inside one of the sorted disjoint intervals xp_pranges[first, first + count)?
 * c->found, and c->verdict/rule_id/outbound_id of that interval. */
static __always_inline void prange_find(struct prange_ctx *c, __u32 first, __u32 count, __u16 port)
{
	c->first = first;
	c->lo = 0;
	c->hi = count > XP_MAX_PRANGES ? XP_MAX_PRANGES : count;
	c->port = port;
	c->found = 0;
	c->verdict = XP_V_NONE;
	c->rule_id = 0;
	c->outbound_id = 0;
	bpf_loop(XP_PRANGE_STEPS, prange_step, c, 0);
}

static __always_inline struct xp_cidr_val *cidr_find(__u32 set, const __u8 *addr)
{
	struct xp_cidr_key k __attribute__((aligned(8)));

	k.prefixlen = 32 + 128;
	k.set_id = bpf_htonl(set);
	xp_copy16(k.addr, addr);
	return bpf_map_lookup_elem(&xp_cidrs, &k);
}

static __always_inline int port_in(__u16 port, __u16 lo, __u16 hi)
{
	return port >= lo && port <= hi;
}

/* Does rule idx match? 1: yes (c->matched and the result set), 0: no, -1: no such rule. A
 * global subprogram: verified once, however often the loop callback around it is. */
__noinline int xp_rule_match(struct rule_ctx *c, __u32 idx)
{
	struct prange_ctx pc;
	struct xp_cidr_val *cv;
	struct xp_rule *r;
	__u32 verdict, rule_id;
	__u16 outbound;
	__u8 take, flags;

	if (!c)
		return -1;
	r = bpf_map_lookup_elem(&xp_rules, &idx);
	if (!r)
		return -1;
	take = r->take;
	flags = r->flags;
	if (r->ipmask && !(r->ipmask & c->ipbit))
		return 0;
	if (r->l4mask && !(r->l4mask & c->l4cat))
		return 0;
	if ((r->dport_lo != 0 || r->dport_hi != 65535) &&
	    port_in(c->dport, r->dport_lo, r->dport_hi) == !!(flags & XP_RULE_F_NOT_DPORT))
		return 0;
	if ((r->sport_lo != 0 || r->sport_hi != 65535) &&
	    port_in(c->sport, r->sport_lo, r->sport_hi) == !!(flags & XP_RULE_F_NOT_SPORT))
		return 0;

	verdict = r->verdict;
	rule_id = r->rule_id;
	outbound = r->outbound_id;

	if (take == XP_TAKE_PORTS || r->prange_count) {
		prange_find(&pc, r->prange_first, r->prange_count, c->dport);
		if (take == XP_TAKE_PORTS) {
			if (!pc.found || pc.verdict == XP_V_NONE)
				return 0;
			verdict = pc.verdict;
			rule_id = pc.rule_id;
			outbound = pc.outbound_id;
		} else if (pc.found == !!(flags & XP_RULE_F_NOT_PRANGE)) {
			return 0;
		}
	}

	if (r->dst_set) {
		cv = cidr_find(r->dst_set, c->daddr);
		if (take == XP_TAKE_DST_SET) {
			if (!cv || cv->verdict == XP_V_NONE)
				return 0;
			verdict = cv->verdict;
			rule_id = cv->rule_id;
			outbound = cv->outbound_id;
		} else if ((cv && cv->verdict != XP_V_NONE) == !!(flags & XP_RULE_F_NOT_DST)) {
			return 0;
		}
	} else if (take == XP_TAKE_DST_SET) {
		return 0;
	}

	if (r->src_set) {
		cv = cidr_find(r->src_set, c->saddr);
		if (take == XP_TAKE_SRC_SET) {
			if (!cv || cv->verdict == XP_V_NONE)
				return 0;
			verdict = cv->verdict;
			rule_id = cv->rule_id;
			outbound = cv->outbound_id;
		} else if ((cv && cv->verdict != XP_V_NONE) == !!(flags & XP_RULE_F_NOT_SRC)) {
			return 0;
		}
	} else if (take == XP_TAKE_SRC_SET) {
		return 0;
	}

	if (take > XP_TAKE_PORTS)
		return 0;
	c->matched = 1;
	c->verdict = verdict;
	c->rule_id = rule_id;
	c->outbound_id = outbound;
	return 1;
}

static long rule_cb(__u32 i, void *data)
{
	struct rule_ctx *c = data;

	/* 1 stops the walk: first match wins; a missing rule means the ruleset points past
	 * the array, and the fallback decides */
	return xp_rule_match(c, c->first + i) != 0;
}

static __always_inline void rules_eval(const struct xp_pkt *p, struct xp_decision *d)
{
	struct rule_ctx c;
	__u32 gen = XP_READ_ONCE(xp_ctl.rules_gen) & 1;
	__u32 count;

	xp_copy16(c.daddr, p->t.daddr);
	xp_copy16(c.saddr, p->t.saddr);
	c.first = XP_READ_ONCE(xp_ctl.rulesets[gen].first);
	c.dport = p->t.dport;
	c.sport = p->t.sport;
	c.l4cat = p->l4cat;
	c.ipbit = p->is_v6 ? XP_IP_V6 : XP_IP_V4;
	c.matched = 0;
	c.verdict = XP_V_NONE;
	c.rule_id = 0;
	c.outbound_id = 0;
	c.pad[0] = 0;
	c.pad[1] = 0;

	count = XP_READ_ONCE(xp_ctl.rulesets[gen].count);
	if (count > XP_MAX_RULES)
		count = XP_MAX_RULES;
	if (count)
		bpf_loop(count, rule_cb, &c, 0);

	if (c.matched) {
		/* A verdict outside DIRECT..DNS is the image's fault: DIRECT, never a guess. */
		d->verdict = verdict_valid(c.verdict) ? c.verdict : XP_V_DIRECT;
		d->vsrc = XP_SRC_RULE;
		d->rule_id = c.rule_id;
		d->outbound_id = c.outbound_id;
		return;
	}
	d->verdict = XP_READ_ONCE(xp_ctl.rulesets[gen].fallback_verdict);
	d->vsrc = XP_SRC_FALLBACK;
	d->rule_id = XP_READ_ONCE(xp_ctl.rulesets[gen].fallback_rule_id);
	d->outbound_id = XP_READ_ONCE(xp_ctl.rulesets[gen].fallback_outbound);
	if (!verdict_valid(d->verdict)) /* XP_V_NONE: no rules applied yet */
		d->verdict = XP_V_DIRECT;
}

#endif /* XP_BPF_RULES_H */
