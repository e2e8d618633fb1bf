/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * flow.h - verdicts and the flow table.
 *
 * API (global subprograms: each is verified once, whatever state its callers are in):
 *   int xp_classify(skb, p, d, how)   client -> server packet at LAN ingress / WAN egress.
 *                                     how = hook | origin << 8. Fills d; XP_NEXT, or a drop
 *                                     code (FRAG_ORPHAN, FAIL_CLOSED).
 *   int xp_track_server(skb, p, hook) server -> client packet at WAN ingress: bookkeeping only
 *                                     (FIN_SERVER / RST, FLOW_END, last_ns; with XP_CFG_UDP,
 *                                     UDP a remote peer starts towards the router is
 *                                     remembered: udp_remote_record); TC_ACT_OK.
 *   int xp_track_forwarded(skb, p, hook)  forwarded packet at WAN egress (after source NAT):
 *                                     with XP_CFG_UDP, a UDP flow's NATed tuple gets an entry
 *                                     so its replies are known; TC_ACT_OK.
 *   int xp_reply_lookup(skb, p, r, hook)  reply from a listener at xp0: where it goes back to.
 *                                     XP_NEXT, or NO_FLOW / FRAG_ORPHAN / REDIRECT drop codes.
 *
 * Order for a client packet:
 *   0. multicast, broadcast, link-local destination: DIRECT, LOCAL, no entry
 *   later fragment: xp_frags -> flow -> its verdict (else a local address: DIRECT, LOCAL;
 *      else FRAG_ORPHAN)
 *   1. xp_flows hit: its verdict (last_ns, packets, tcp_state updated in place)
 *   -. destination in xp_local_addrs: DIRECT, LOCAL, no entry. Checked after a flow miss
 *      only: such flows never get an entry, so a hit cannot be one, and the established
 *      path saves a hash lookup.
 *   2. TCP that does not start a connection (no SYN, or SYN|ACK): DIRECT, MIDSTREAM (entry
 *      created: it predates us, or the other side started it). With XP_CFG_UDP, UDP that
 *      answers a flow the other side started (udp_answers_remote): DIRECT, MIDSTREAM too
 *   3. xp_dst_verdicts (daddr, dport, proto), then (daddr, 0, 0); expired entries ignored
 *   4. kernel rules, 5. fallback (rules.h)
 *   then a proxy verdict the flow cannot have (not TCP; UDP without XP_CFG_UDP): DIRECT,
 *   NOPROXY; then the fail-safe (stale heartbeat): DIRECT, FAILSAFE (recorded, so the flow
 *   stays direct) or, with XP_CTL_FAIL_CLOSED, a FAIL_CLOSED drop (nothing recorded). A flow
 *   hit whose stored verdict is proxied gets the same fail-safe, without rewriting the entry.
 *
 * A SYN (without ACK) on a tuple whose entry already ended (FLOW_END sent) starts a new flow:
 * the client reused the port, and the old verdict (perhaps from old rules) must not stick.
 *
 * tcp_state changes go through one atomic OR on the 32-bit word that holds it, so FLOW_END
 * is emitted exactly once even when both directions see a FIN on two CPUs at the same time.
 * packets and last_ns are plain stores (approximate by design, see bpf_abi.h).
 */
#ifndef XP_BPF_FLOW_H
#define XP_BPF_FLOW_H

#include "common.h"
#include "maps.h"
#include "events.h"
#include "rules.h"

#define XP_TCP_END_BITS (XP_TCP_FIN_CLIENT | XP_TCP_FIN_SERVER | XP_TCP_RST)

struct xp_reply_target {
	__u32 ifindex;
	__u8 origin;
	__u8 l3;     /* origin HOST: the device has no link-layer header */
	__u8 mac[6]; /* origin HOST, not l3: the WAN device's MAC */
};
_Static_assert(sizeof(struct xp_reply_target) == 12, "xp_reply_target");

/* The 64-bit word at offset 24 of struct xp_flow holds outbound_id, verdict, vsrc, origin,
 * tcp_state, hook, pad; tcp_state is its byte 5. 64 bits because an atomic OR that returns
 * the old value on a 32-bit word needs clang's alu32 mode. */
_Static_assert(__builtin_offsetof(struct xp_flow, outbound_id) == 24 &&
		       __builtin_offsetof(struct xp_flow, tcp_state) == 29,
	       "xp_flow tcp_state word");
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define XP_TCP_STATE_SHIFT 40
#else
#define XP_TCP_STATE_SHIFT 16
#endif

/*
 * The clock of every per-packet timestamp and comparison (last_ns, first_ns, the heartbeat,
 * expires_ns): CLOCK_MONOTONIC as bpf_ktime_get_ns() and the daemon's dp_now_ns() read it,
 * but at tick resolution, up to one tick (<= 10 ms) behind. Reading the precise clock costs
 * 45-70 ns a packet in a VM, more than a flow lookup; every deadline here is in seconds.
 * Event timestamps (rare) use the precise clock.
 */
static __always_inline __u64 xp_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

static __always_inline int hb_stale(__u64 now)
{
	__u64 hb = XP_READ_ONCE(xp_ctl.heartbeat_ns);

	/* A heartbeat newer than now (a tick that landed after our clock read, or the precise
	 * clock running ahead of the coarse one) is fresh, not an underflow. */
	return hb == 0 || (now > hb && now - hb > xp_cfg.heartbeat_timeout_ns);
}

/* A proxy verdict while the daemon is gone: DIRECT (XP_NEXT) or the fail-closed drop. */
static __always_inline int failsafe(struct xp_decision *d)
{
	d->vsrc = XP_SRC_FAILSAFE;
	d->outbound_id = 0;
	if (XP_READ_ONCE(xp_ctl.flags) & XP_CTL_FAIL_CLOSED) {
		d->verdict = XP_V_BLOCK;
		return XP_DROP_CODE(XP_DROP_FAIL_CLOSED);
	}
	d->verdict = XP_V_DIRECT;
	return XP_NEXT;
}

static __always_inline __u8 tcp_bits(__u8 th, int server)
{
	__u8 b = 0;

	if ((th & XP_TH_SYN) && !server)
		b |= XP_TCP_SYN_SEEN;
	if (th & XP_TH_FIN)
		b |= server ? XP_TCP_FIN_SERVER : XP_TCP_FIN_CLIENT;
	if (th & XP_TH_RST)
		b |= XP_TCP_RST;
	return b;
}

/* Add tcp_state bits to an entry; the first FIN/RST emits FLOW_END (exactly once). */
static __always_inline void flow_tcp_update(struct xp_flow *f, const struct xp_tuple *key,
					    __u8 bits, __u8 hook)
{
	struct xp_stats *st;
	__u64 old;
	__u8 end;

	if (!(bits & ~f->tcp_state))
		return;
	end = bits & XP_TCP_END_BITS;
	if (end)
		bits |= XP_TCP_END_SENT;
	old = __sync_fetch_and_or((__u64 *)&f->outbound_id, (__u64)bits << XP_TCP_STATE_SHIFT);
	old >>= XP_TCP_STATE_SHIFT;
	if (!end || (old & XP_TCP_END_SENT))
		return;
	ev_flow(XP_EV_FLOW_END, hook, key, f, (old | bits) & XP_TCP_END_BITS, 0);
	st = xp_stats_get();
	if (st)
		st->flow_end++;
}

static __always_inline void flow_to_decision(const struct xp_flow *f, struct xp_decision *d)
{
	d->verdict = f->verdict;
	d->vsrc = XP_SRC_FLOW;
	d->rule_id = f->rule_id;
	d->outbound_id = f->outbound_id;
}

/* Remember which flow a fragmented datagram belongs to, for its later fragments. The key is
 * the fragment's own addresses (as on the wire), id and protocol field; the value the flow
 * key. */
static __always_inline void frag_record(const struct xp_pkt *p, const struct xp_tuple *flow,
					__u8 hook)
{
	struct xp_frag_key fk __attribute__((aligned(8)));
	struct xp_stats *st;
	long err;

	xp_copy16(fk.saddr, p->t.saddr);
	xp_copy16(fk.daddr, p->t.daddr);
	fk.id = p->frag_id;
	fk.l4proto = p->frag_proto;
	fk.pad[0] = 0;
	fk.pad[1] = 0;
	fk.pad[2] = 0;
	err = bpf_map_update_elem(&xp_frags, &fk, flow, BPF_ANY);
	st = xp_stats_get();
	if (err) {
		if (st)
			st->map_full++;
		ev_map_full(hook, XP_MAP_FRAGS, err);
		return;
	}
	if (st)
		st->frags_first++;
}

static __always_inline struct xp_tuple *frag_find(const struct xp_pkt *p)
{
	struct xp_frag_key fk __attribute__((aligned(8)));

	xp_copy16(fk.saddr, p->t.saddr);
	xp_copy16(fk.daddr, p->t.daddr);
	fk.id = p->frag_id;
	fk.l4proto = p->frag_proto;
	fk.pad[0] = 0;
	fk.pad[1] = 0;
	fk.pad[2] = 0;
	return bpf_map_lookup_elem(&xp_frags, &fk);
}

/* Multicast, limited broadcast, link-local: never proxied, never tracked. */
static __always_inline int dst_is_special(const struct xp_pkt *p)
{
	const __u8 *a = p->t.daddr;

	if (!p->is_v6)
		return (a[12] & 0xf0) == 0xe0 || *(const __u32 *)&a[12] == 0xffffffff ||
		       (a[12] == 169 && a[13] == 254);
	return a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

/* key: on the stack (6.1 refuses a global subprogram's memory argument as a map key) */
static __always_inline int dst_is_local(const struct xp_tuple *key)
{
	return bpf_map_lookup_elem(&xp_local_addrs, key->daddr) != NULL;
}

static __always_inline int dst_usable(const struct xp_dst_verdict *v, __u64 now)
{
	return (v->expires_ns == 0 || v->expires_ns > now) && v->verdict >= XP_V_DIRECT &&
	       v->verdict <= XP_V_DNS;
}

/* Destination-verdict map: 1 when it decided. */
static __always_inline int dst_lookup(const struct xp_pkt *p, struct xp_decision *d, __u64 now)
{
	struct xp_dst_key k __attribute__((aligned(8)));
	struct xp_dst_verdict *v;

	xp_copy16(k.addr, p->t.daddr);
	k.port = p->t.dport;
	k.l4proto = p->t.l4proto;
	k.pad = 0;
	v = bpf_map_lookup_elem(&xp_dst_verdicts, &k);
	if (!v || !dst_usable(v, now)) {
		k.port = 0;
		k.l4proto = 0;
		v = bpf_map_lookup_elem(&xp_dst_verdicts, &k);
		if (!v || !dst_usable(v, now))
			return 0;
	}
	d->verdict = v->verdict;
	d->vsrc = XP_SRC_DSTMAP;
	d->rule_id = 0;
	d->outbound_id = v->outbound_id;
	d->tag = v->tag;
	return 1;
}

static __always_inline int decide_local(struct xp_decision *d)
{
	d->verdict = XP_V_DIRECT;
	d->vsrc = XP_SRC_LOCAL;
	return XP_NEXT;
}

static __always_inline int flow_hit(struct xp_flow *f, const struct xp_pkt *p,
				    const struct xp_tuple *key, struct xp_decision *d, __u64 now,
				    __u8 hook)
{
	f->last_ns = now;
	f->packets++;
	if (p->t.l4proto == XP_IPPROTO_TCP && p->frag != XP_FRAG_LATER)
		flow_tcp_update(f, key, tcp_bits(p->tcp_flags, 0), hook);
	flow_to_decision(f, d);
	if (xp_is_proxy_verdict(d->verdict) && hb_stale(now))
		return failsafe(d);
	return XP_NEXT;
}

/*
 * UDP has no SYN: a datagram answering a flow the other side started (a server on the router
 * answering a WAN client, seen at WAN egress; a port-forwarded server behind the router, seen
 * at LAN ingress) looks like a new client flow and the rules could send it to the proxy, which
 * would break that server. WAN ingress remembers UDP that a remote peer sends to a router
 * address under (peer, zero address, local port): the destination address is zeroed because a
 * port forward rewrites it (DNAT, after tc) to the LAN server's. An answer is then a new UDP
 * flow whose reverse tuple, with the same address zeroed, is known. An exact reverse entry
 * (the other side's flow classified by us) counts too.
 *
 * Not recorded: a datagram that goes to a socket of the router which started the flow itself
 * (udp_to_connected: a connected socket owning the 4-tuple, or one with xproxy's mark, i.e.
 * xproxyd's upstream sockets), so a LAN client that uses one of their ports towards the same
 * peer is still classified by the rules. A socket without the mark gets a flow entry at WAN
 * egress, and its answers find that entry before they get here.
 *
 * Not recorded either: a NATed reply to a LAN client's flow. It arrives addressed to the router
 * (conntrack rewrites it after tc) and owned by no socket, so it would be recorded, and another
 * LAN client that starts a flow from that very NAT port towards the same peer would be taken
 * for an answer and sent DIRECT. WAN egress sees the LAN flow after source NAT and records the
 * NATed tuple (xp_track_forwarded), so the reply finds that entry and never gets here.
 *
 * What remains: an answer to a router socket whose own flow entry expired first. Ports are
 * chosen at random; the entries expire with other idle UDP flows.
 */
static __always_inline int udp_answers_remote(const struct xp_pkt *p)
{
	struct xp_tuple k __attribute__((aligned(8)));

	xp_tuple_reverse(&k, &p->t);
	if (bpf_map_lookup_elem(&xp_flows, &k))
		return 1;
	__builtin_memset(k.daddr, 0, sizeof(k.daddr));
	return bpf_map_lookup_elem(&xp_flows, &k) != NULL;
}

/*
 * 1 when the datagram goes to a UDP socket of this netns that started the flow itself: a
 * connected socket that owns the 4-tuple (xproxyd's endpoint-dependent upstream sockets, any
 * connected client on the router), or one that carries xproxy's mark (xproxyd's own sockets,
 * the unconnected full-cone upstream ones among them). Its datagrams are answers, not a
 * remote peer starting a flow. A server's unconnected socket, or no socket at all (a port
 * forward, DNATed after tc; a NATed reply to a LAN client), gives 0. For UDP, connect() sets
 * the state to ESTABLISHED and the peer's port; an unconnected socket stays CLOSE with port
 * 0. The lookup is the one the stack makes for the same datagram a moment later, without
 * reuseport selection or sk_lookup programs.
 */
static __always_inline int udp_to_connected(struct __sk_buff *skb, const struct xp_pkt *p)
{
	struct bpf_sock_tuple t;
	struct bpf_sock *sk;
	int conn;

	__builtin_memset(&t, 0, sizeof(t));
	if (p->is_v6) {
		__builtin_memcpy(t.ipv6.saddr, p->t.saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, p->t.daddr, 16);
		t.ipv6.sport = bpf_htons(p->t.sport);
		t.ipv6.dport = bpf_htons(p->t.dport);
		sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	} else {
		__builtin_memcpy(&t.ipv4.saddr, &p->t.saddr[12], 4);
		__builtin_memcpy(&t.ipv4.daddr, &p->t.daddr[12], 4);
		t.ipv4.sport = bpf_htons(p->t.sport);
		t.ipv4.dport = bpf_htons(p->t.dport);
		sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return 0;
	conn = (sk->state == BPF_TCP_ESTABLISHED && sk->dst_port != 0) ||
	       (xp_cfg.mark && (sk->mark & xp_cfg.mark_mask) == xp_cfg.mark);
	bpf_sk_release(sk);
	return conn;
}

/* A bookkeeping entry for `k` that no client packet created: DIRECT, MIDSTREAM, origin HOST.
 * A full table is counted (map_full) and reported; losing the race to another CPU is not. */
static __always_inline void record_host_direct(struct __sk_buff *skb, struct xp_tuple *k,
					       __u64 now, __u8 hook)
{
	struct xp_flow nf;
	long err;

	__builtin_memset(&nf, 0, sizeof(nf));
	nf.first_ns = now;
	nf.last_ns = now;
	nf.ifindex = skb->ifindex;
	nf.verdict = XP_V_DIRECT;
	nf.vsrc = XP_SRC_MIDSTREAM;
	nf.origin = XP_ORIGIN_HOST;
	nf.hook = hook;
	nf.packets = 1;
	err = bpf_map_update_elem(&xp_flows, k, &nf, BPF_NOEXIST);
	if (err && err != -17 /* -EEXIST: another CPU recorded it first */) {
		struct xp_stats *st = xp_stats_get();

		if (st)
			st->map_full++;
		ev_map_full(hook, XP_MAP_FLOWS, err);
	}
}

/*
 * WAN egress, a forwarded UDP datagram (no local socket): a LAN flow, classified at LAN
 * ingress under the client's address and now leaving with the router's address after source
 * NAT (tc egress runs after POSTROUTING). Its NATed tuple gets an entry of its own (DIRECT,
 * MIDSTREAM, origin HOST), so the replies, which reach WAN ingress still addressed to the
 * router, find it and are not taken for flows the peer started (udp_answers_remote). Routed
 * (not NATed) traffic leaves from the client's own address: nothing to record. Forwarded
 * datagrams never consult the entry; it lives while the replies or the flow refresh it.
 */
__noinline int xp_track_forwarded(struct __sk_buff *skb, struct xp_pkt *p, __u32 hook)
{
	struct xp_tuple k __attribute__((aligned(8)));
	struct xp_flow *f;
	__u64 now;

	if (!skb || !p || p->t.l4proto != XP_IPPROTO_UDP || p->frag == XP_FRAG_LATER ||
	    !(xp_cfg.flags & XP_CFG_UDP))
		return TC_ACT_OK;
	now = xp_now();
	__builtin_memcpy(&k, &p->t, sizeof(k));
	f = bpf_map_lookup_elem(&xp_flows, &k);
	if (f) {
		f->last_ns = now;
		return TC_ACT_OK;
	}
	if (!bpf_map_lookup_elem(&xp_local_addrs, k.saddr))
		return TC_ACT_OK;
	record_host_direct(skb, &k, now, hook);
	return TC_ACT_OK;
}

/* WAN ingress, no entry for the reverse tuple: see udp_answers_remote. */
static __always_inline void udp_remote_record(struct __sk_buff *skb, const struct xp_pkt *p,
					      __u8 hook)
{
	struct xp_tuple k __attribute__((aligned(8)));
	struct xp_flow *f;
	__u64 now = xp_now();

	__builtin_memcpy(&k, &p->t, sizeof(k));
	if (!dst_is_local(&k))
		return; /* forwarded traffic: its answer is not ours to tell apart */
	__builtin_memset(k.daddr, 0, sizeof(k.daddr));
	f = bpf_map_lookup_elem(&xp_flows, &k);
	if (f) {
		f->last_ns = now;
		return;
	}
	if (udp_to_connected(skb, p))
		return; /* an answer to the router's own socket: nothing the peer started */
	record_host_direct(skb, &k, now, hook);
}

static __always_inline int classify_new(struct __sk_buff *skb, const struct xp_pkt *p,
					const struct xp_tuple *key, struct xp_decision *d,
					__u64 now, __u8 hook, __u8 origin)
{
	struct xp_flow nf;
	struct xp_stats *st;
	__u8 proto = p->t.l4proto, bits = 0, end;
	long err;
	int rc;

	if (proto == XP_IPPROTO_TCP)
		bits = tcp_bits(p->tcp_flags, 0);
	/* Only a SYN without ACK starts a connection here. A SYN|ACK without an entry answers
	 * one the other side started (a port-forwarded server behind us, a server on the
	 * router): through the rules it could be sent to the proxy, which would break it. */
	if ((proto == XP_IPPROTO_TCP && (p->tcp_flags & (XP_TH_SYN | XP_TH_ACK)) != XP_TH_SYN) ||
	    (proto == XP_IPPROTO_UDP && (xp_cfg.flags & XP_CFG_UDP) && udp_answers_remote(p))) {
		d->verdict = XP_V_DIRECT;
		d->vsrc = XP_SRC_MIDSTREAM;
	} else {
		if (!dst_lookup(p, d, now))
			rules_eval(p, d);
		if (xp_is_proxy_verdict(d->verdict) && proto != XP_IPPROTO_TCP &&
		    !(proto == XP_IPPROTO_UDP && (xp_cfg.flags & XP_CFG_UDP))) {
			d->verdict = XP_V_DIRECT;
			d->vsrc = XP_SRC_NOPROXY;
			d->outbound_id = 0;
		}
		if (xp_is_proxy_verdict(d->verdict) && hb_stale(now)) {
			rc = failsafe(d);
			if (rc != XP_NEXT)
				return rc; /* fail closed: nothing recorded, a retry after the
					    * daemon is back gets proxied */
		}
	}

	end = bits & XP_TCP_END_BITS;
	nf.first_ns = now;
	nf.last_ns = now;
	nf.rule_id = d->rule_id;
	nf.ifindex = skb->ifindex;
	nf.outbound_id = d->outbound_id;
	nf.verdict = d->verdict;
	nf.vsrc = d->vsrc;
	nf.origin = origin;
	nf.tcp_state = end ? bits | XP_TCP_END_SENT : bits;
	nf.hook = hook;
	nf.pad[0] = 0;
	nf.packets = 1;
	err = bpf_map_update_elem(&xp_flows, key, &nf, BPF_ANY);

	st = xp_stats_get();
	if (st) {
		st->flows[d->verdict & (XP_V__MAX - 1)]++;
		st->vsrc[d->vsrc & (XP_SRC__MAX - 1)]++;
		if (err)
			st->map_full++;
		else if (end)
			st->flow_end++;
	}
	if (err) {
		ev_map_full(hook, XP_MAP_FLOWS, err);
	} else {
		if (xp_is_proxy_verdict(d->verdict) || (xp_cfg.flags & XP_CFG_EVENTS_DIRECT))
			ev_flow(XP_EV_FLOW_NEW, hook, key, &nf, nf.tcp_state, d->tag);
		if (end)
			ev_flow(XP_EV_FLOW_END, hook, key, &nf, end, 0);
	}
	if (p->frag == XP_FRAG_FIRST)
		frag_record(p, key, hook);
	return XP_NEXT;
}

__noinline int xp_classify(struct __sk_buff *skb, struct xp_pkt *p, struct xp_decision *d,
			   __u32 how)
{
	__u8 hook = how & 0xff, origin = (how >> 8) & 1;
	struct xp_tuple key __attribute__((aligned(8)));
	struct xp_stats *st;
	struct xp_flow *f;
	__u64 now;

	if (!skb || !p || !d)
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	if (dst_is_special(p))
		return decide_local(d);
	now = xp_now();
	__builtin_memcpy(&key, &p->t, sizeof(key));
	if (p->frag == XP_FRAG_LATER) {
		struct xp_tuple *fkey = frag_find(p);

		f = fkey ? bpf_map_lookup_elem(&xp_flows, fkey) : NULL;
		if (!f)
			return dst_is_local(&key) ? decide_local(d)
						  : XP_DROP_CODE(XP_DROP_FRAG_ORPHAN);
		st = xp_stats_get();
		if (st)
			st->frags_later++;
	} else {
		f = bpf_map_lookup_elem(&xp_flows, &key);
#ifdef XP_BENCH_NEW_FLOWS
		/* bench/bpf's object only: after paying for the lookup, every packet is a new
		 * flow (its insert replaces the entry), so BPF_PROG_TEST_RUN's repeat measures
		 * the new-flow path. Never defined for the real object. */
		f = NULL;
#endif
		if (f && p->t.l4proto == XP_IPPROTO_TCP &&
		    (p->tcp_flags & (XP_TH_SYN | XP_TH_ACK)) == XP_TH_SYN &&
		    (f->tcp_state & XP_TCP_END_SENT))
			f = NULL; /* the port was reused after the old flow ended */
		if (!f) {
			if (dst_is_local(&key))
				return decide_local(d);
			return classify_new(skb, p, &key, d, now, hook, origin);
		}
		if (p->frag == XP_FRAG_FIRST)
			frag_record(p, &key, hook);
	}
	return flow_hit(f, p, &key, d, now, hook);
}

__noinline int xp_track_server(struct __sk_buff *skb, struct xp_pkt *p, __u32 hook)
{
	struct xp_tuple k __attribute__((aligned(8)));
	struct xp_flow *f;

	if (!skb || !p || p->frag == XP_FRAG_LATER)
		return TC_ACT_OK;
	xp_tuple_reverse(&k, &p->t);
	f = bpf_map_lookup_elem(&xp_flows, &k);
	if (!f) {
		if (p->t.l4proto == XP_IPPROTO_UDP && (xp_cfg.flags & XP_CFG_UDP))
			udp_remote_record(skb, p, hook);
		return TC_ACT_OK;
	}
	f->last_ns = xp_now();
	if (p->t.l4proto == XP_IPPROTO_TCP)
		flow_tcp_update(f, &k, tcp_bits(p->tcp_flags, 1), hook);
	return TC_ACT_OK;
}

__noinline int xp_reply_lookup(struct __sk_buff *skb, struct xp_pkt *p, struct xp_reply_target *r,
			       __u32 hook)
{
	struct xp_tuple k __attribute__((aligned(8)));
	const struct xp_tuple *key = &k;
	struct xp_iface *ifc;
	struct xp_flow *f;
	__u32 ifindex;

	if (!skb || !p || !r)
		return XP_DROP_CODE(XP_DROP_MALFORMED);
	if (p->frag == XP_FRAG_LATER) {
		key = frag_find(p);
		if (!key)
			return XP_DROP_CODE(XP_DROP_FRAG_ORPHAN);
	} else {
		xp_tuple_reverse(&k, &p->t);
	}
	f = bpf_map_lookup_elem(&xp_flows, key);
	if (!f)
		return XP_DROP_CODE(p->frag == XP_FRAG_LATER ? XP_DROP_FRAG_ORPHAN
							     : XP_DROP_NO_FLOW);
	f->last_ns = xp_now();
	r->ifindex = f->ifindex;
	r->origin = f->origin;
	if (p->frag == XP_FRAG_FIRST)
		frag_record(p, key, hook);
	if (r->origin != XP_ORIGIN_HOST)
		return XP_NEXT;
	ifindex = r->ifindex;
	ifc = bpf_map_lookup_elem(&xp_ifaces, &ifindex);
	if (!ifc) /* no MAC to put in front of it: the WAN stack would drop it as not ours */
		return XP_DROP_CODE(XP_DROP_REDIRECT);
	r->l3 = !!(ifc->flags & XP_IFACE_L3);
	__builtin_memcpy(r->mac, ifc->mac, 6);
	return XP_NEXT;
}

#endif /* XP_BPF_FLOW_H */
