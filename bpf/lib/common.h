/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * common.h - includes, constants and small helpers every datapath header uses.
 *
 * API:
 *   struct xp_pkt        what parse.h extracted from a packet: the tuple as seen on the wire,
 *                        header offsets (not pointers: pointers die at the next helper that
 *                        may move skb->data), TCP flags/seq, fragment and VLAN state
 *   struct xp_decision   what flow.h decided for it (verdict, source, rule, outbound, tag)
 *   XP_NEXT              internal "keep going" code of the subprograms (never returned to tc)
 *   v4-mapped helpers    xp_is_v4mapped(), the IPv4 address inside a 16-byte address
 *
 * Subprograms return a TC_ACT_* value, XP_NEXT, or XP_DROP_CODE(reason); only the entry points
 * (xproxy.bpf.c) turn drop codes into TC_ACT_SHOT (drop.h).
 */
#ifndef XP_BPF_COMMON_H
#define XP_BPF_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include <xproxy/bpf_abi.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
/* One load the compiler may not merge or repeat: xp_ctl fields the daemon writes any time. */
#define XP_READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))

/* Internal: "not finished, go on". Far from every TC_ACT_* and from the drop codes. */
#define XP_NEXT 0x1000
/* parse.h results besides XP_NEXT (the entry point counts them, then passes the packet). */
#define XP_PASS_NON_IP 0x1001
#define XP_PASS_ND     0x1002

#define XP_ETH_HLEN  14
#define XP_VLAN_HLEN 4

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

#define XP_IPPROTO_HOPOPTS  0
#define XP_IPPROTO_ICMP	    1
#define XP_IPPROTO_TCP	    6
#define XP_IPPROTO_UDP	    17
#define XP_IPPROTO_ROUTING  43
#define XP_IPPROTO_FRAGMENT 44
#define XP_IPPROTO_AH	    51
#define XP_IPPROTO_ICMPV6   58
#define XP_IPPROTO_NONE	    59
#define XP_IPPROTO_DSTOPTS  60

/* TCP flag bits in byte 13 of the TCP header. */
#define XP_TH_FIN 0x01
#define XP_TH_SYN 0x02
#define XP_TH_RST 0x04
#define XP_TH_ACK 0x10

/* xp_pkt.frag */
#define XP_FRAG_NONE  0
#define XP_FRAG_FIRST 1 /* offset 0, more fragments follow: carries the L4 header */
#define XP_FRAG_LATER 2 /* offset != 0: no L4 header */

/* xp_pkt.vlan */
#define XP_VLAN_NONE 0
#define XP_VLAN_DATA 1 /* the 802.1Q tag is in the packet data (l3off includes it) */
#define XP_VLAN_META 2 /* the tag is in skb metadata (already stripped by the device) */

struct xp_pkt {
	struct xp_tuple t; /* src -> dst as on the wire; ports 0 where there are none */
	__u32 frag_id;	   /* IPv4 id (16 bits) / IPv6 fragment identification, host order */
	__u32 tcp_seq;	   /* host order */
	__u16 l3off;	   /* network header, from skb->data */
	__u16 l4off;	   /* transport header (0 when absent) */
	__u8 is_v6;
	__u8 tcp_flags;	 /* byte 13 of the TCP header, 0 for other protocols */
	__u8 frag;	 /* XP_FRAG_* */
	__u8 frag_proto; /* protocol field of a fragment (IPv4 protocol / IPv6 frag nexthdr) */
	__u8 vlan;	 /* XP_VLAN_* */
	__u8 l4cat;	 /* XP_L4_* category of t.l4proto */
	__u8 pad[6];
} __attribute__((aligned(8))); /* the tuple is read as 64-bit words; stack access must align */
_Static_assert(sizeof(struct xp_pkt) == 64, "xp_pkt");

struct xp_decision {
	__u32 rule_id;
	__u32 tag;
	__u16 outbound_id;
	__u8 verdict; /* the verdict applied to this packet */
	__u8 vsrc;
	__u8 counted; /* flow.h already counted pkts[verdict] */
	__u8 pad[3];
};
_Static_assert(sizeof(struct xp_decision) == 16, "xp_decision");

static __always_inline int xp_is_proxy_verdict(__u32 v)
{
	return v == XP_V_PROXY || v == XP_V_INSPECT || v == XP_V_DNS;
}

/* ::ffff:a.b.c.d? Reads the first 12 bytes as three 32-bit words. */
static __always_inline int xp_is_v4mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void xp_set_v4mapped(__u8 *dst, __u32 addr_be)
{
	__u32 *w = (__u32 *)dst;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0x0000ffff);
	w[3] = addr_be;
}

static __always_inline void xp_copy16(__u8 *dst, const __u8 *src)
{
	__u64 *d = (__u64 *)dst;
	const __u64 *s = (const __u64 *)src;

	d[0] = s[0];
	d[1] = s[1];
}

/* The reply direction of a tuple: what the client -> server key of a server -> client packet
 * is. */
static __always_inline void xp_tuple_reverse(struct xp_tuple *dst, const struct xp_tuple *src)
{
	xp_copy16(dst->saddr, src->daddr);
	xp_copy16(dst->daddr, src->saddr);
	dst->sport = src->dport;
	dst->dport = src->sport;
	dst->l4proto = src->l4proto;
	dst->pad[0] = 0;
	dst->pad[1] = 0;
	dst->pad[2] = 0;
}

#endif /* XP_BPF_COMMON_H */
