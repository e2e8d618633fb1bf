// SPDX-License-Identifier: GPL-2.0-only
/*
 * xproxy.bpf.c - the tc entry points. Each is a few lines: parse (lib/parse.h), decide
 * (lib/flow.h), act (lib/redirect.h, lib/reject.h), count (lib/drop.h). docs/datapath.md
 * describes the paths and every bad-input outcome.
 *
 * The shared bodies are __always_inline with constant hook / L3 / mode arguments, so each
 * program is verified only along its own paths; the heavy parts are global subprograms
 * (verified once per program, independent of the caller's state).
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/events.h"
#include "lib/rules.h"
#include "lib/flow.h"
#include "lib/redirect.h"
#include "lib/reject.h"
#include "lib/drop.h"

/* Client -> world on a LAN device. */
static __always_inline int lan_ingress(struct __sk_buff *skb, const int l3, const __u8 hook)
{
	struct xp_pkt p = {};
	struct xp_decision d = {};
	int rc;

	rc = xp_parse(skb, &p, l3 ? XP_PARSE_L3 : 0);
	if (rc == XP_NEXT)
		rc = xp_classify(skb, &p, &d, hook | XP_ORIGIN_LAN << 8);
	if (rc == XP_NEXT) {
		if (d.verdict == XP_V_DIRECT) {
			rc = TC_ACT_OK;
		} else if (d.verdict == XP_V_BLOCK) {
			if (p.t.l4proto == XP_IPPROTO_TCP && p.frag != XP_FRAG_LATER &&
			    (p.tcp_flags & (XP_TH_SYN | XP_TH_ACK)) == XP_TH_SYN)
				/* the RST path counts its own drop */
				return xp_finish(
					skb, hook,
					xp_reject(skb, &p, hook | (l3 ? XP_PARSE_L3 : 0) << 8), &p,
					&d);
			rc = XP_DROP_CODE(XP_DROP_BLOCKED);
		} else {
			rc = to_proxy(skb, &p, l3, xp_cfg.redirect_mode == XP_REDIRECT_PEER);
		}
	}
	return xp_finish(skb, hook, rc, &p, &d);
}

/* Flows the router itself starts, on a WAN device. */
static __always_inline int wan_egress(struct __sk_buff *skb, const int l3, const __u8 hook)
{
	struct xp_pkt p = {};
	struct xp_decision d = {};
	int rc;

	/* The daemon's own upstream sockets; and packets without a local socket, which are
	 * forwarded (LAN flows, classified at LAN ingress and now source-NATed) or made by the
	 * kernel itself. Forwarded UDP is only remembered: see xp_track_forwarded. */
	if ((skb->mark & xp_cfg.mark_mask) == xp_cfg.mark)
		return xp_finish(skb, hook, TC_ACT_OK, &p, &d);
	if (!skb->sk) {
		/* (p is only counted through d's verdict, which stays empty here) */
		if ((xp_cfg.flags & XP_CFG_UDP) &&
		    xp_parse(skb, &p, l3 ? XP_PARSE_L3 : 0) == XP_NEXT)
			xp_track_forwarded(skb, &p, hook);
		return xp_finish(skb, hook, TC_ACT_OK, &p, &d);
	}

	rc = xp_parse(skb, &p, l3 ? XP_PARSE_L3 : 0);
	if (rc == XP_NEXT)
		rc = xp_classify(skb, &p, &d, hook | XP_ORIGIN_HOST << 8);
	if (rc == XP_NEXT) {
		if (d.verdict == XP_V_DIRECT)
			rc = TC_ACT_OK;
		else if (d.verdict == XP_V_BLOCK)
			rc = XP_DROP_CODE(XP_DROP_BLOCKED);
		else
			rc = to_proxy(skb, &p, l3, 0);
	}
	return xp_finish(skb, hook, rc, &p, &d);
}

SEC("tc")
int xp_lan_ingress(struct __sk_buff *skb)
{
	return lan_ingress(skb, 0, XP_HOOK_LAN_INGRESS);
}

SEC("tc")
int xp_lan_ingress_l3(struct __sk_buff *skb)
{
	return lan_ingress(skb, 1, XP_HOOK_LAN_INGRESS_L3);
}

SEC("tc")
int xp_wan_egress(struct __sk_buff *skb)
{
	return wan_egress(skb, 0, XP_HOOK_WAN_EGRESS);
}

SEC("tc")
int xp_wan_egress_l3(struct __sk_buff *skb)
{
	return wan_egress(skb, 1, XP_HOOK_WAN_EGRESS_L3);
}

/* Server -> router on a WAN device: bookkeeping only, the packet's fate never changes. */
SEC("tc")
int xp_wan_ingress(struct __sk_buff *skb)
{
	struct xp_pkt p = {};
	struct xp_iface *ifc;
	__u32 ifindex = skb->ifindex;
	int rc;

	/* One program for both kinds of WAN device: the loader marks L3 ones in xp_ifaces. */
	ifc = bpf_map_lookup_elem(&xp_ifaces, &ifindex);
	rc = xp_parse(skb, &p, ifc && (ifc->flags & XP_IFACE_L3) ? XP_PARSE_L3 : 0);
	if (rc == XP_NEXT)
		rc = xp_track_server(skb, &p, XP_HOOK_WAN_INGRESS);
	return xp_finish_passive(XP_HOOK_WAN_INGRESS, rc);
}

/* Shard of a flow: the same flow always goes to the same worker. */
static __always_inline __u32 flow_shard(const struct xp_tuple *t)
{
	const __u32 *w = (const __u32 *)t;
	__u32 h = 0x9e3779b9;
	__u32 n = xp_cfg.n_workers;
	int i;

#pragma unroll
	for (i = 0; i < 9; i++) /* addresses and ports; the protocol picks the key space */
		h = (h ^ w[i]) * 0x01000193;
	h ^= h >> 16;
	if (n < 1 || n > XP_MAX_WORKERS)
		n = 1;
	return h % n;
}

/* xp0p, inside the private netns: hand new flows to a worker's listener. */
SEC("tc")
int xp_proxy_ingress(struct __sk_buff *skb)
{
	struct xp_pkt p = {};
	struct xp_decision d = {};
	struct bpf_sock *sk;
	__u32 key;
	long err;
	int rc;

	/* Plain-mode frames carry xp0p's MAC already; this is the second guard (and the only
	 * one for frames that bypassed the LAN program's rewrite). */
	if (skb->pkt_type == PACKET_OTHERHOST)
		bpf_skb_change_type(skb, PACKET_HOST);

	rc = xp_parse(skb, &p, 0);
	if (rc != XP_NEXT)
		return xp_finish(skb, XP_HOOK_PROXY_INGRESS, rc, &p, &d);
	if (p.frag == XP_FRAG_LATER)
		return xp_finish(skb, XP_HOOK_PROXY_INGRESS, TC_ACT_OK, &p, &d);
	if (p.t.l4proto == XP_IPPROTO_TCP) {
		/* Established segments find their socket through the normal lookup. */
		if ((p.tcp_flags & (XP_TH_SYN | XP_TH_ACK)) != XP_TH_SYN)
			return xp_finish(skb, XP_HOOK_PROXY_INGRESS, TC_ACT_OK, &p, &d);
		key = XP_LISTENER_TCP(flow_shard(&p.t));
	} else if (p.t.l4proto == XP_IPPROTO_UDP) {
		key = XP_LISTENER_UDP(flow_shard(&p.t));
	} else {
		return xp_finish(skb, XP_HOOK_PROXY_INGRESS, TC_ACT_OK, &p, &d);
	}

	sk = bpf_map_lookup_elem(&xp_listeners, &key);
	if (!sk)
		return xp_finish(skb, XP_HOOK_PROXY_INGRESS, XP_DROP_CODE(XP_DROP_NO_LISTENER), &p,
				 &d);
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	rc = err ? XP_DROP_CODE(XP_DROP_ASSIGN_FAILED) : TC_ACT_OK;
	return xp_finish(skb, XP_HOOK_PROXY_INGRESS, rc, &p, &d);
}

/*
 * Socket lookup in the private netns (SEC("sk_lookup"), attached to the netns, not a device):
 * the way in for datagrams that arrived as IP fragments. xp_proxy_ingress runs before
 * reassembly, and the netns's IP stack reassembles them later (ip_defrag() orphans the skb,
 * so an assignment made to the first fragment is gone); the whole datagram then reaches an
 * ordinary socket lookup for the server's address and port, which would find nothing or, worse,
 * a reply socket bound to that very address that is never read. Every UDP lookup in this netns
 * that comes here is such a datagram: all others carry the socket xp_proxy_ingress assigned
 * and skip the lookup. The same shard hash as xp_proxy_ingress, so a flow's large and small
 * datagrams reach the same worker and session. TCP is left to the normal lookup (established
 * segments find their sockets there; a fragmented SYN is not handled, see datapath.md).
 * Lookups for traffic on lo (someone debugging inside the netns) are left alone.
 */
#define XP_AF_INET	    2
#define XP_CTX_U32(f)	    (*(volatile __u32 *)&(f))
#define XP_LOOPBACK_IFINDEX 1 /* lo is always ifindex 1 in a netns */

SEC("sk_lookup")
int xp_proxy_lookup(struct bpf_sk_lookup *ctx)
{
	struct xp_tuple t __attribute__((aligned(8)));
	struct xp_stats *st;
	struct bpf_sock *sk;
	__u32 key, ra, la, r6[4], l6[4];
	long err;

	if (ctx->protocol != XP_IPPROTO_UDP || ctx->ingress_ifindex == XP_LOOPBACK_IFINDEX)
		return SK_PASS;
	/* Every address field is read unconditionally and as a volatile, each at its constant
	 * offset: read in the branches (or read plainly, which clang sinks into them), clang
	 * merged the IPv4 and IPv6 loads into one through a ctx pointer plus an offset, which
	 * the verifier refuses ("dereference of modified ctx ptr"). */
	__builtin_memset(&t, 0, sizeof(t));
	ra = XP_CTX_U32(ctx->remote_ip4);
	la = XP_CTX_U32(ctx->local_ip4);
	r6[0] = XP_CTX_U32(ctx->remote_ip6[0]);
	r6[1] = XP_CTX_U32(ctx->remote_ip6[1]);
	r6[2] = XP_CTX_U32(ctx->remote_ip6[2]);
	r6[3] = XP_CTX_U32(ctx->remote_ip6[3]);
	l6[0] = XP_CTX_U32(ctx->local_ip6[0]);
	l6[1] = XP_CTX_U32(ctx->local_ip6[1]);
	l6[2] = XP_CTX_U32(ctx->local_ip6[2]);
	l6[3] = XP_CTX_U32(ctx->local_ip6[3]);
	if (ctx->family == XP_AF_INET) {
		xp_set_v4mapped(t.saddr, ra);
		xp_set_v4mapped(t.daddr, la);
	} else {
		__builtin_memcpy(t.saddr, r6, 16);
		__builtin_memcpy(t.daddr, l6, 16);
	}
	t.sport = bpf_ntohs(ctx->remote_port);
	t.dport = ctx->local_port;
	t.l4proto = XP_IPPROTO_UDP;
	key = XP_LISTENER_UDP(flow_shard(&t));

	st = xp_stats_get();
	if (st)
		st->hook_pkts[XP_HOOK_PROXY_LOOKUP]++;
	sk = bpf_map_lookup_elem(&xp_listeners, &key);
	if (!sk) {
		if (st)
			st->drops[XP_DROP_NO_LISTENER]++;
		return SK_DROP;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		if (st)
			st->drops[XP_DROP_ASSIGN_FAILED]++;
		return SK_DROP;
	}
	return SK_PASS;
}

/* xp0, host side: a listener's reply goes back to the client (or into the router's stack). */
SEC("tc")
int xp_proxy_reply(struct __sk_buff *skb)
{
	struct xp_pkt p = {};
	struct xp_decision d = {};
	struct xp_reply_target r = {};
	int rc;

	rc = xp_parse(skb, &p, 0);
	if (rc == XP_NEXT)
		rc = xp_reply_lookup(skb, &p, &r, XP_HOOK_PROXY_REPLY);
	if (rc == XP_NEXT)
		rc = to_client(skb, &r);
	return xp_finish(skb, XP_HOOK_PROXY_REPLY, rc, &p, &d);
}

char LICENSE[] SEC("license") = "GPL";
