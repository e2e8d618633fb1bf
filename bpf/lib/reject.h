/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * reject.h - answer a blocked TCP SYN with a RST|ACK, so the client fails at once instead of
 * waiting out its SYN timeout.
 *
 * API:
 *   int xp_reject(skb, p, how)   how = hook | XP_PARSE_L3 << 8 (no link-layer header).
 *                                Rewrites the SYN in place into RST|ACK (addresses, ports and
 *                                MACs swapped, seq 0, ack = seq + 1, no options, IPv4 DF, TTL /
 *                                hop limit 64), trims it with bpf_skb_change_tail and sends it
 *                                back out of the device it came in on: TC_ACT_REDIRECT. Counts
 *                                stats.rejects and drops[BLOCKED] (the SYN itself is dropped).
 *                                If a helper fails: XP_DROP_CODE(XP_DROP_BLOCKED), a plain drop.
 *
 * The new headers are built from the values parse.h saved (no parsed pointer survives the
 * helpers here), on the stack, then written with one bpf_skb_store_bytes. IPv4 options and
 * IPv6 extension headers of the SYN are not copied: the RST carries a bare IP header.
 * An 802.1Q tag in the data stays in front of it; one in skb metadata goes out with it.
 */
#ifndef XP_BPF_REJECT_H
#define XP_BPF_REJECT_H

#include "common.h"
#include "maps.h"
#include "events.h"

static __always_inline __u32 csum_bytes(__u32 sum, const __u8 *b, const int len)
{
	int i;

#pragma unroll
	for (i = 0; i < len; i += 2)
		sum += ((__u32)b[i] << 8) | b[i + 1];
	return sum;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

static __always_inline void put16(__u8 *b, __u16 v)
{
	b[0] = v >> 8;
	b[1] = v & 0xff;
}

static __always_inline void put32(__u8 *b, __u32 v)
{
	b[0] = v >> 24;
	b[1] = (v >> 16) & 0xff;
	b[2] = (v >> 8) & 0xff;
	b[3] = v & 0xff;
}

/* 20-byte TCP RST|ACK at th; the checksum is filled in by the caller. */
static __always_inline void rst_tcp(__u8 *th, const struct xp_pkt *p)
{
	put16(&th[0], p->t.dport);
	put16(&th[2], p->t.sport);
	put32(&th[4], 0);
	put32(&th[8], p->tcp_seq + 1);
	th[12] = 5 << 4;
	th[13] = XP_TH_RST | XP_TH_ACK;
	put16(&th[14], 0); /* window */
	put16(&th[16], 0); /* checksum */
	put16(&th[18], 0); /* urgent pointer */
}

__noinline int xp_reject(struct __sk_buff *skb, struct xp_pkt *p, __u32 how)
{
	__u8 h[60] __attribute__((aligned(8)));
	__u8 mac[12];
	__u8 hook = how & 0xff;
	__u32 l3 = (how >> 8) & XP_PARSE_L3;
	struct xp_stats *st;
	__u32 l3off, sum;
	int i;

	if (!skb || !p)
		return XP_DROP_CODE(XP_DROP_BLOCKED);
	l3off = p->l3off;
	if (l3off > XP_ETH_HLEN + XP_VLAN_HLEN)
		return XP_DROP_CODE(XP_DROP_BLOCKED);
	if (!l3 && bpf_skb_load_bytes(skb, 0, mac, sizeof(mac)))
		return XP_DROP_CODE(XP_DROP_BLOCKED);

	if (p->is_v6) {
		h[0] = 0x60;
		h[1] = 0;
		h[2] = 0;
		h[3] = 0;
		put16(&h[4], 20);
		h[6] = XP_IPPROTO_TCP;
		h[7] = 64;
		xp_copy16(&h[8], p->t.daddr);
		xp_copy16(&h[24], p->t.saddr);
		rst_tcp(&h[40], p);
		/* pseudo header: addresses, upper-layer length, next header */
		sum = csum_bytes(0, &h[8], 32) + 20 + XP_IPPROTO_TCP;
		put16(&h[56], csum_fold(csum_bytes(sum, &h[40], 20)));
		if (bpf_skb_change_tail(skb, l3off + 60, 0))
			return XP_DROP_CODE(XP_DROP_BLOCKED);
		if (bpf_skb_store_bytes(skb, l3off, h, 60, 0))
			return XP_DROP_CODE(XP_DROP_BLOCKED);
	} else {
		h[0] = 0x45;
		h[1] = 0;
		put16(&h[2], 40);
		put16(&h[4], 0);
		put16(&h[6], 0x4000); /* DF */
		h[8] = 64;
		h[9] = XP_IPPROTO_TCP;
		put16(&h[10], 0);
		for (i = 0; i < 4; i++) {
			h[12 + i] = p->t.daddr[12 + i];
			h[16 + i] = p->t.saddr[12 + i];
		}
		put16(&h[10], csum_fold(csum_bytes(0, h, 20)));
		rst_tcp(&h[20], p);
		sum = csum_bytes(0, &h[12], 8) + 20 + XP_IPPROTO_TCP;
		put16(&h[36], csum_fold(csum_bytes(sum, &h[20], 20)));
		if (bpf_skb_change_tail(skb, l3off + 40, 0))
			return XP_DROP_CODE(XP_DROP_BLOCKED);
		if (bpf_skb_store_bytes(skb, l3off, h, 40, 0))
			return XP_DROP_CODE(XP_DROP_BLOCKED);
	}
	if (!l3) {
		if (bpf_skb_store_bytes(skb, 0, &mac[6], 6, 0) ||
		    bpf_skb_store_bytes(skb, 6, &mac[0], 6, 0))
			return XP_DROP_CODE(XP_DROP_BLOCKED);
	}

	st = xp_stats_get();
	if (st) {
		st->rejects++;
		st->drops[XP_DROP_BLOCKED]++;
	}
	ev_drop(hook, p, skb->ifindex, XP_DROP_BLOCKED);
	return bpf_redirect(skb->ifindex, 0);
}

#endif /* XP_BPF_REJECT_H */
