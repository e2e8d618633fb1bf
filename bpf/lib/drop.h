/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * drop.h - the last thing every entry point does: count the packet and turn a subprogram's
 * result into a tc action.
 *
 * API:
 *   xp_finish(skb, hook, rc, p, d)   hook_pkts[hook]; XP_PASS_NON_IP / XP_PASS_ND counted and
 *                                    passed; pkts[d->verdict] (and vsrc[LOCAL] for traffic
 *                                    to the router itself, which has no flow entry);
 *                                    XP_DROP_CODE(r): drops[r], a DROP event when
 *                                    XP_CFG_DROP_EVENTS, TC_ACT_SHOT. Anything else is
 *                                    returned as it is (TC_ACT_OK, TC_ACT_REDIRECT).
 *   xp_finish_passive(...)           the same counters for a program that must never change
 *                                    a packet's fate (WAN ingress): always TC_ACT_OK, and a
 *                                    malformed packet is not counted as a drop.
 */
#ifndef XP_BPF_DROP_H
#define XP_BPF_DROP_H

#include "common.h"
#include "maps.h"
#include "events.h"

static __always_inline int xp_finish(struct __sk_buff *skb, const __u8 hook, int rc,
				     const struct xp_pkt *p, const struct xp_decision *d)
{
	struct xp_stats *st = xp_stats_get();
	__u32 reason;

	if (st) {
		st->hook_pkts[hook]++;
		if (d->verdict) {
			st->pkts[d->verdict & (XP_V__MAX - 1)]++;
			if (d->vsrc == XP_SRC_LOCAL)
				st->vsrc[XP_SRC_LOCAL]++;
		}
	}
	if (rc == XP_PASS_NON_IP) {
		if (st)
			st->passed_non_ip++;
		return TC_ACT_OK;
	}
	if (rc == XP_PASS_ND) {
		if (st)
			st->passed_icmp6_nd++;
		return TC_ACT_OK;
	}
	if (rc == XP_NEXT) /* a path that decided nothing: leave the packet alone */
		return TC_ACT_OK;
	if (!XP_IS_DROP_CODE(rc))
		return rc;
	reason = XP_DROP_REASON(rc) & (XP_DROP__MAX - 1);
	if (st)
		st->drops[reason]++;
	ev_drop(hook, p, skb->ifindex, reason);
	return TC_ACT_SHOT;
}

static __always_inline int xp_finish_passive(const __u8 hook, int rc)
{
	struct xp_stats *st = xp_stats_get();

	if (st) {
		st->hook_pkts[hook]++;
		if (rc == XP_PASS_NON_IP)
			st->passed_non_ip++;
		else if (rc == XP_PASS_ND)
			st->passed_icmp6_nd++;
	}
	return TC_ACT_OK;
}

#endif /* XP_BPF_DROP_H */
