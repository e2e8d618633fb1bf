/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * parse.h - turn a packet into a struct xp_pkt, with direct packet access.
 *
 * API:
 *   int xp_parse(skb, p, flags)   global subprogram. flags: XP_PARSE_L3 (the device has no
 *                                 link-layer header). Returns
 *       XP_NEXT          an IPv4/IPv6 packet, *p filled
 *       XP_PASS_NON_IP   ARP, LLDP, ...: the caller counts passed_non_ip and passes it
 *       XP_PASS_ND       ICMPv6 RS/RA/NS/NA/redirect: counted passed_icmp6_nd, passed
 *       XP_DROP_CODE(r)  MALFORMED (truncated/inconsistent IP or L4 header), EXTHDR_LIMIT
 *                        (IPv6 chain longer than XP_IPV6_EXT_MAX), PULL (pull failed)
 *
 * Rules this file keeps (see the seeds in the shared design):
 *   - one pointer at a time, derived from skb->data + an offset right where it is used, never
 *     separate iph/ip6h/tcph locals that clang could merge across the v4/v6 branches;
 *   - the first XP_PULL_LEN bytes are pulled into the linear area once, when the device left
 *     them outside (skb->len says they exist but data_end is short); an L4 header further in
 *     (long IPv6 chains) is pulled by pkt_need() where it is read. A pull kills every packet
 *     pointer, so no pointer is kept across one;
 *   - IPv6 extension headers are read with bpf_skb_load_bytes (rare, and it keeps the walk's
 *     offset out of the verifier's exact tracking, see parse_ipv6);
 *   - the result holds offsets and values, never pointers: later code re-derives what it
 *     needs after the helpers that may move skb->data.
 *
 * Length checks: an IPv4 packet whose tot_len exceeds the bytes present, ihl < 5,
 * tot_len < ihl*4, a version nibble that contradicts the ethertype, an IPv6 payload_len
 * beyond the bytes present, an extension header running past the payload, a TCP header
 * shorter than 20 bytes or whose doff is < 5 or past the segment, a UDP header < 8 bytes,
 * an ICMP header < 8 bytes: all MALFORMED. Bytes past tot_len (Ethernet padding) are ignored.
 */
#ifndef XP_BPF_PARSE_H
#define XP_BPF_PARSE_H

#include "common.h"

#define XP_PARSE_L3 0x1

/* Pulled into the linear area up front when the device left them outside: Ethernet, a tag,
 * IPv6 and a full TCP header fit, and so do IPv4 with 40 bytes of options and TCP. */
#define XP_PULL_LEN 128

/* Internal to parse.h: an IP header without an L4 header after it (a later fragment). */
#define XP_DONE 0x1003

/* Longest IPv6 extension-header chain walked. Longer chains are dropped: passing them
 * unclassified would let anyone bypass the rules by prepending options. */
#ifndef XP_IPV6_EXT_MAX
#define XP_IPV6_EXT_MAX 8
#endif

/*
 * skb->data / data_end through a one-instruction asm: written as (void *)(long)skb->data,
 * clang sees a 32-bit integer it may zero-extend or compare as an integer, which turns the
 * verifier's packet pointer into a scalar ("invalid mem access 'scalar'") depending on the
 * clang version. The asm result is opaque to clang, so it stays a pointer.
 */
static __always_inline void *xp_ctx_ptr(const struct __sk_buff *skb, const int off)
{
	void *ptr;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(ptr) : "r"(skb), "i"(off));
	return ptr;
}
/* The verifier gives a packet pointer a range only while its offset plus the access stays
 * within 0xffff; an L4 header further in than this cannot be read directly. */
#define XP_MAX_L4OFF 0xff00

#define XP_DATA(skb)	 xp_ctx_ptr(skb, __builtin_offsetof(struct __sk_buff, data))
#define XP_DATA_END(skb) xp_ctx_ptr(skb, __builtin_offsetof(struct __sk_buff, data_end))

/* Make the first `end` bytes directly accessible. 0, or a drop code: MALFORMED when the
 * packet is shorter than that, PULL when the pull itself failed. */
static __always_inline int pkt_need(struct __sk_buff *skb, __u32 end)
{
	if (XP_DATA(skb) + end <= XP_DATA_END(skb))
		return 0;
	if (end > skb->len)
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	if (bpf_skb_pull_data(skb, end))
		return XP_DROP_CODE(XP_DROP_PULL);
	return 0;
}

static __always_inline __u8 l4_category(__u8 proto)
{
	switch (proto) {
	case XP_IPPROTO_TCP:
		return XP_L4_TCP;
	case XP_IPPROTO_UDP:
		return XP_L4_UDP;
	case XP_IPPROTO_ICMP:
	case XP_IPPROTO_ICMPV6:
		return XP_L4_ICMP;
	default:
		return XP_L4_OTHER;
	}
}

/* The transport header at `off`, `len` bytes of L4 data according to the IP header. */
static __always_inline int parse_l4(struct __sk_buff *skb, struct xp_pkt *p, __u32 off, __u32 len)
{
	__u8 proto = p->t.l4proto;
	__u8 *l4;
	int rc;

	if (proto == XP_IPPROTO_TCP) {
		__u32 doff;

		if (len < 20)
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		rc = pkt_need(skb, off + 20);
		if (rc)
			return rc;
		l4 = XP_DATA(skb) + off;
		if ((void *)(l4 + 20) > XP_DATA_END(skb))
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		doff = (l4[12] >> 4) * 4;
		if (doff < 20 || doff > len)
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		p->t.sport = bpf_ntohs(*(__u16 *)&l4[0]);
		p->t.dport = bpf_ntohs(*(__u16 *)&l4[2]);
		p->tcp_seq = bpf_ntohl(*(__u32 *)&l4[4]);
		p->tcp_flags = l4[13];
	} else if (proto == XP_IPPROTO_UDP) {
		if (len < 8)
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		rc = pkt_need(skb, off + 8);
		if (rc)
			return rc;
		l4 = XP_DATA(skb) + off;
		if ((void *)(l4 + 8) > XP_DATA_END(skb))
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		p->t.sport = bpf_ntohs(*(__u16 *)&l4[0]);
		p->t.dport = bpf_ntohs(*(__u16 *)&l4[2]);
	} else if (proto == XP_IPPROTO_ICMP || proto == XP_IPPROTO_ICMPV6) {
		if (len < 8)
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		rc = pkt_need(skb, off + 8);
		if (rc)
			return rc;
		l4 = XP_DATA(skb) + off;
		if ((void *)(l4 + 8) > XP_DATA_END(skb))
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		/* Neighbour discovery keeps the link working; it is never classified. */
		if (proto == XP_IPPROTO_ICMPV6 && l4[0] >= 133 && l4[0] <= 137)
			return XP_PASS_ND;
	} else {
		/* no ports: rules see port 0, as for ICMP */
		p->l4off = 0;
		return XP_NEXT;
	}
	p->l4off = off;
	return XP_NEXT;
}

/* IPv4 header at off. XP_NEXT with l4off and l4len set when an L4 header follows; XP_DONE for
 * a later fragment (no L4 header); else a drop code. */
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct xp_pkt *p, __u32 off,
				      __u32 *l4off, __u32 *l4len)
{
	__u32 ihl, tot, foff;
	__u16 frag;
	__u8 *ip;

	ip = XP_DATA(skb) + off;
	if ((void *)(ip + 20) > XP_DATA_END(skb))
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	if ((ip[0] >> 4) != 4)
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	ihl = (ip[0] & 0xf) * 4;
	tot = bpf_ntohs(*(__u16 *)&ip[2]);
	if (ihl < 20 || tot < ihl || off + tot > skb->len)
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	xp_set_v4mapped(p->t.saddr, *(__u32 *)&ip[12]);
	xp_set_v4mapped(p->t.daddr, *(__u32 *)&ip[16]);
	p->t.l4proto = ip[9];
	frag = bpf_ntohs(*(__u16 *)&ip[6]);
	foff = frag & 0x1fff;
	if (frag & 0x3fff) { /* MF or an offset: a fragment */
		p->frag_id = bpf_ntohs(*(__u16 *)&ip[4]);
		p->frag_proto = ip[9];
		if (foff) {
			p->frag = XP_FRAG_LATER;
			/* RFC 1858: an offset of 8 bytes can only serve to overwrite the TCP flags
			 * that the first fragment showed the rules. */
			if (foff == 1 && ip[9] == XP_IPPROTO_TCP)
				return XP_DROP_CODE(XP_DROP_MALFORMED);
			/* A fragment ending past 65535 bytes belongs to no datagram that can
			 * exist (the old ping of death): the reassembly would drop it anyway. */
			if (foff * 8 + tot - ihl > 0xffff)
				return XP_DROP_CODE(XP_DROP_MALFORMED);
			return XP_DONE;
		}
		p->frag = XP_FRAG_FIRST;
	}
	*l4off = off + ihl;
	*l4len = tot - ihl;
	return XP_NEXT;
}

/* IPv6 header at off and its extension headers; results as parse_ipv4. */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct xp_pkt *p, __u32 off,
				      __u32 *l4off, __u32 *l4len)
{
	__u32 plen, hoff, end;
	__u8 nh, *h;
	int i;

	h = XP_DATA(skb) + off;
	if ((void *)(h + 40) > XP_DATA_END(skb))
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	if ((h[0] >> 4) != 6)
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	plen = bpf_ntohs(*(__u16 *)&h[4]);
	if (off + 40 + plen > skb->len)
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	xp_copy16(p->t.saddr, &h[8]);
	xp_copy16(p->t.daddr, &h[24]);
	nh = h[6];
	p->is_v6 = 1;
	hoff = off + 40;
	end = hoff + plen;

	/*
	 * The chain is read with bpf_skb_load_bytes (8 bytes a header, only for the rare packet
	 * that has one), not through packet pointers: a pointer at hoff would make the verifier
	 * track hoff exactly, and with five header kinds per step the paths multiply (8 steps
	 * cost 150k verified instructions). As a plain scalar, hoff lets the states merge.
	 */
#pragma unroll
	for (i = 0; i < XP_IPV6_EXT_MAX + 1; i++) {
		__u8 eh[8];
		__u32 hl;

		if (nh != XP_IPPROTO_HOPOPTS && nh != XP_IPPROTO_ROUTING &&
		    nh != XP_IPPROTO_DSTOPTS && nh != XP_IPPROTO_FRAGMENT && nh != XP_IPPROTO_AH)
			break;
		if (i == XP_IPV6_EXT_MAX)
			return XP_DROP_CODE(XP_DROP_EXTHDR_LIMIT);
		if (hoff + 8 > end) /* every extension header is at least 8 bytes */
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		if (bpf_skb_load_bytes(skb, hoff, eh, sizeof(eh)))
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		if (nh == XP_IPPROTO_FRAGMENT) {
			__u16 fo = ((__u16)eh[2] << 8) | eh[3];

			if (p->frag != XP_FRAG_NONE) /* two fragment headers: never valid */
				return XP_DROP_CODE(XP_DROP_MALFORMED);
			if (fo & 0xfff9) { /* an offset or M: a real fragment, not an atomic one */
				p->frag_id = ((__u32)eh[4] << 24) | ((__u32)eh[5] << 16) |
					     ((__u32)eh[6] << 8) | eh[7];
				p->frag_proto = eh[0];
				if (fo & 0xfff8) {
					/* ending past 65535 bytes: as for IPv4 */
					if ((fo & 0xfff8) + (end - hoff - 8) > 0xffff)
						return XP_DROP_CODE(XP_DROP_MALFORMED);
					p->frag = XP_FRAG_LATER;
					p->t.l4proto = eh[0];
					return XP_DONE;
				}
				p->frag = XP_FRAG_FIRST;
			}
			hl = 8;
		} else if (nh == XP_IPPROTO_AH) {
			hl = ((__u32)eh[1] + 2) * 4;
		} else {
			hl = ((__u32)eh[1] + 1) * 8;
		}
		nh = eh[0];
		hoff += hl;
		if (hoff > end)
			return XP_DROP_CODE(XP_DROP_MALFORMED);
	}
	p->t.l4proto = nh;
	*l4off = hoff;
	*l4len = end - hoff;
	return XP_NEXT;
}

__noinline int xp_parse(struct __sk_buff *skb, struct xp_pkt *p, __u32 flags)
{
	__u32 off = 0, want, l4off = 0, l4len = 0;
	__u16 proto;
	__u8 *d;
	int rc;

	if (!skb || !p)
		return XP_DROP_CODE(XP_DROP_MALFORMED);

	/* Once: the headers of nearly every packet are in the first XP_PULL_LEN bytes. */
	want = skb->len < XP_PULL_LEN ? skb->len : XP_PULL_LEN;
	if (XP_DATA(skb) + want > XP_DATA_END(skb) && bpf_skb_pull_data(skb, want))
		return XP_DROP_CODE(XP_DROP_PULL);

	d = XP_DATA(skb);
	if (flags & XP_PARSE_L3) {
		/* No link-layer header: the version nibble says what it is (skb->protocol is
		 * set by the device, but a tun device trusts its writer for it). */
		if ((void *)(d + 1) > XP_DATA_END(skb))
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		if ((d[0] >> 4) == 4)
			proto = ETH_P_IP;
		else if ((d[0] >> 4) == 6)
			proto = ETH_P_IPV6;
		else
			return XP_PASS_NON_IP;
	} else {
		if ((void *)(d + XP_ETH_HLEN) > XP_DATA_END(skb))
			return XP_DROP_CODE(XP_DROP_MALFORMED);
		proto = bpf_ntohs(*(__u16 *)&d[12]);
		off = XP_ETH_HLEN;
		if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
			if ((void *)(d + XP_ETH_HLEN + XP_VLAN_HLEN) > XP_DATA_END(skb))
				return XP_DROP_CODE(XP_DROP_MALFORMED);
			proto = bpf_ntohs(*(__u16 *)&d[16]);
			off = XP_ETH_HLEN + XP_VLAN_HLEN;
			p->vlan = XP_VLAN_DATA;
		} else if (skb->vlan_present) {
			p->vlan = XP_VLAN_META;
		}
	}
	p->l3off = off;
	if (proto == ETH_P_IP)
		rc = parse_ipv4(skb, p, off, &l4off, &l4len);
	else if (proto == ETH_P_IPV6)
		rc = parse_ipv6(skb, p, off, &l4off, &l4len);
	else
		return XP_PASS_NON_IP;
	p->l4cat = l4_category(p->t.l4proto);
	if (rc == XP_DONE)
		return XP_NEXT;
	if (rc != XP_NEXT)
		return rc;

	/* Through memory: the exact offset the L4 pointer needs must not be propagated back
	 * into the extension-header walk (precision backtracking would keep every path of it
	 * apart). */
	if (l4off > XP_MAX_L4OFF)
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	p->l4off = l4off;
	l4off = *(volatile __u16 *)&p->l4off;
	if (l4off > XP_MAX_L4OFF)
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	return parse_l4(skb, p, l4off, l4len);
}

#endif /* XP_BPF_PARSE_H */
