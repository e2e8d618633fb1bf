/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * redirect.h - the three ways a packet leaves through a redirect.
 *
 * API:
 *   to_proxy(skb, p, l3, peer)   into the private netns. peer (LAN ingress, redirect = peer):
 *                                bpf_redirect_peer(xp0) lands on xp0p's ingress; otherwise
 *                                the destination MAC becomes xp0p's and bpf_redirect(xp0, 0)
 *                                sends it out of xp0. An 802.1Q tag is popped first; an L3
 *                                device's packet gets an Ethernet header (dst xp0p, src xp0)
 *                                pushed as the very last step.
 *   to_client(skb, r)            a listener's reply: bpf_redirect_neigh(LAN device) lets the
 *                                FIB and neighbour table fill L2 (no MACs kept anywhere);
 *                                a reply to the router itself gets the WAN device's MAC (unless
 *                                it is an L3 device) and bpf_redirect(wan, BPF_F_INGRESS).
 * Both return TC_ACT_REDIRECT or XP_DROP_CODE(XP_DROP_REDIRECT).
 *
 * Everything here may move skb->data: callers hold no packet pointer across these.
 */
#ifndef XP_BPF_REDIRECT_H
#define XP_BPF_REDIRECT_H

#include "common.h"
#include "maps.h"
#include "parse.h"
#include "flow.h"

static __always_inline int to_proxy(struct __sk_buff *skb, const struct xp_pkt *p, const int l3,
				    const int peer)
{
	__u32 ifindex = xp_cfg.xp0_ifindex;
	__u8 is_v6 = p->is_v6;
	__u8 *d;
	long rc;
	int i;

	if (!ifindex)
		return XP_DROP_CODE(XP_DROP_REDIRECT);
	if (!l3 && p->vlan != XP_VLAN_NONE && bpf_skb_vlan_pop(skb))
		return XP_DROP_CODE(XP_DROP_REDIRECT);
	if (l3) {
		if (bpf_skb_change_head(skb, XP_ETH_HLEN, 0))
			return XP_DROP_CODE(XP_DROP_REDIRECT);
		d = XP_DATA(skb);
		if ((void *)(d + XP_ETH_HLEN) > XP_DATA_END(skb))
			return XP_DROP_CODE(XP_DROP_REDIRECT);
		for (i = 0; i < 6; i++) {
			d[i] = xp_cfg.xp0p_mac[i];
			d[6 + i] = xp_cfg.xp0_mac[i];
		}
		*(__u16 *)&d[12] = bpf_htons(is_v6 ? ETH_P_IPV6 : ETH_P_IP);
	} else if (!peer) {
		d = XP_DATA(skb);
		if ((void *)(d + 6) > XP_DATA_END(skb))
			return XP_DROP_CODE(XP_DROP_REDIRECT);
		for (i = 0; i < 6; i++)
			d[i] = xp_cfg.xp0p_mac[i];
	}
	rc = peer ? bpf_redirect_peer(ifindex, 0) : bpf_redirect(ifindex, 0);
	return rc == TC_ACT_REDIRECT ? TC_ACT_REDIRECT : XP_DROP_CODE(XP_DROP_REDIRECT);
}

static __always_inline int to_client(struct __sk_buff *skb, const struct xp_reply_target *r)
{
	__u8 *d;
	long rc;
	int i;

	if (r->origin == XP_ORIGIN_LAN) {
		rc = bpf_redirect_neigh(r->ifindex, NULL, 0, 0);
	} else {
		if (!r->l3) {
			d = XP_DATA(skb);
			if ((void *)(d + 6) > XP_DATA_END(skb))
				return XP_DROP_CODE(XP_DROP_REDIRECT);
			for (i = 0; i < 6; i++)
				d[i] = r->mac[i];
		}
		rc = bpf_redirect(r->ifindex, BPF_F_INGRESS);
	}
	return rc == TC_ACT_REDIRECT ? TC_ACT_REDIRECT : XP_DROP_CODE(XP_DROP_REDIRECT);
}

#endif /* XP_BPF_REDIRECT_H */
