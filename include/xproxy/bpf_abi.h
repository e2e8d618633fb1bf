/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bpf_abi.h - the one header shared by the tc programs (bpf/) and userspace (core/, tests/).
 *
 * Everything that crosses the kernel/userspace boundary is declared here: map keys and values,
 * the control block, the load-time config, ring-buffer events, verdicts, counters and drop
 * reasons. Rules for this file:
 *   - fixed-width fields only, explicit padding, every size pinned by _Static_assert;
 *   - numbering of enums is never changed, only appended to;
 *   - any change to a layout bumps XP_BPF_ABI_VERSION (the loader refuses a mismatch).
 *
 * Addresses are always 16 bytes in network byte order; IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d). Ports are in host byte order.
 */
#ifndef XPROXY_BPF_ABI_H
#define XPROXY_BPF_ABI_H

#include <linux/types.h>

#define XP_BPF_ABI_VERSION 1

/* ------------------------------------------------------------------------------------------ */
/* Verdicts                                                                                    */

enum xp_verdict {
	XP_V_NONE = 0,	  /* no decision (internal: keep looking) */
	XP_V_DIRECT = 1,  /* the normal stack forwards it; never touches userspace */
	XP_V_BLOCK = 2,	  /* dropped in the kernel (TCP SYNs are answered with a RST) */
	XP_V_PROXY = 3,	  /* to a transparent listener; outbound_id says which outbound */
	XP_V_INSPECT = 4, /* to a transparent listener; sniffers name the flow first */
	XP_V_DNS = 5,	  /* to the DNS plugin through the transparent listeners */
	XP_V__MAX = 8,
};

/* Where a verdict came from (reported in FLOW_NEW events and kept in the flow entry). */
enum xp_vsrc {
	XP_SRC_NONE = 0,
	XP_SRC_FLOW = 1,     /* existing flow entry */
	XP_SRC_DSTMAP = 2,   /* destination-verdict map (written by DNS / sniff plugins) */
	XP_SRC_RULE = 3,     /* a kernel rule; rule_id says which */
	XP_SRC_FALLBACK = 4, /* the [route] fallback */
	XP_SRC_LOCAL = 5,    /* destination is one of the router's own / multicast / broadcast addresses */
	XP_SRC_FAILSAFE = 6, /* daemon heartbeat stale: fail = open (DIRECT) or closed (BLOCK) */
	XP_SRC_NOPROXY = 7,  /* proxy verdict for a protocol that cannot be proxied here: DIRECT */
	XP_SRC_MIDSTREAM = 8, /* TCP segment without SYN and without a flow entry: a connection that
			       * predates this datapath (daemon start or restart) stays DIRECT */
	XP_SRC__MAX = 16,
};

/* Which program saw the packet. */
enum xp_hook {
	XP_HOOK_LAN_INGRESS = 0,
	XP_HOOK_LAN_INGRESS_L3 = 1,
	XP_HOOK_WAN_EGRESS = 2,
	XP_HOOK_WAN_EGRESS_L3 = 3,
	XP_HOOK_WAN_INGRESS = 4,
	XP_HOOK_PROXY_INGRESS = 5, /* xp0p ingress, inside the private netns */
	XP_HOOK_PROXY_REPLY = 6,   /* xp0 ingress, host side */
	XP_HOOK_PROXY_LOOKUP = 7,  /* sk_lookup in the private netns: reassembled datagrams */
	XP_HOOK__MAX = 8,
};

/* Who started a flow. */
enum xp_origin {
	XP_ORIGIN_LAN = 0,  /* a LAN client; replies go back with bpf_redirect_neigh(ifindex) */
	XP_ORIGIN_HOST = 1, /* the router itself; replies go back with bpf_redirect(ifindex, INGRESS) */
};

/*
 * Drop reasons. A subprogram returns either a TC_ACT_* value (>= -1) or XP_DROP_CODE(reason),
 * which is far below any TC_ACT_*; the entry point turns it into a counted TC_ACT_SHOT.
 * Never renumber; only append.
 */
enum xp_drop_reason {
	XP_DROP_NONE = 0,
	XP_DROP_BLOCKED = 1,	   /* BLOCK verdict */
	XP_DROP_MALFORMED = 2,	   /* claims IPv4/IPv6 but a header is truncated or inconsistent */
	XP_DROP_EXTHDR_LIMIT = 3,  /* IPv6 extension-header chain longer than the walk bound */
	XP_DROP_FRAG_ORPHAN = 4,   /* later fragment whose first fragment was never seen */
	XP_DROP_NO_LISTENER = 5,   /* proxy ingress: no listener registered for the shard */
	XP_DROP_ASSIGN_FAILED = 6, /* proxy ingress: bpf_sk_assign() failed */
	XP_DROP_NO_FLOW = 7,	   /* proxy reply: no flow entry for the reply's tuple */
	XP_DROP_REDIRECT = 8,	   /* a redirect helper failed */
	XP_DROP_FAIL_CLOSED = 9,   /* daemon gone and fail = closed */
	XP_DROP_PULL = 10,	   /* bpf_skb_pull_data() failed */
	XP_DROP__MAX = 32,
};
#define XP_DROP_CODE_BASE (-1000)
#define XP_DROP_CODE(reason) (XP_DROP_CODE_BASE - (int)(reason))
#define XP_IS_DROP_CODE(rc) ((rc) <= XP_DROP_CODE_BASE)
#define XP_DROP_REASON(rc) ((__u32)(XP_DROP_CODE_BASE - (rc)))

/* ------------------------------------------------------------------------------------------ */
/* Flow table: BPF_MAP_TYPE_LRU_HASH "xp_flows", key = struct xp_tuple (client -> server),   */
/* value = struct xp_flow. Size from config (global.flow_entries).                             */

struct xp_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host order; 0 for ICMP */
	__u16 dport; /* host order; 0 for ICMP */
	__u8 l4proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct xp_tuple) == 40, "xp_tuple");

/* xp_flow.tcp_state bits */
#define XP_TCP_SYN_SEEN 0x01
#define XP_TCP_FIN_CLIENT 0x02 /* FIN from the client side */
#define XP_TCP_FIN_SERVER 0x04 /* FIN from the server side (where it can be seen) */
#define XP_TCP_RST 0x08
#define XP_TCP_END_SENT 0x80 /* FLOW_END already emitted */

struct xp_flow {
	__u64 first_ns; /* bpf_ktime_get_ns() when created */
	__u64 last_ns;	/* last packet seen, any direction */
	__u32 rule_id;	/* rule that decided (XP_SRC_RULE / XP_SRC_FALLBACK), else 0 */
	__u32 ifindex;	/* LAN device the client is behind, or the WAN device (origin HOST) */
	__u16 outbound_id;
	__u8 verdict;	/* enum xp_verdict */
	__u8 vsrc;	/* enum xp_vsrc */
	__u8 origin;	/* enum xp_origin */
	__u8 tcp_state; /* XP_TCP_* */
	__u8 hook;	/* enum xp_hook that created it */
	__u8 pad[1];
	__u64 packets; /* client->server packets (approximate: not atomic) */
};
_Static_assert(sizeof(struct xp_flow) == 40, "xp_flow");

/* ------------------------------------------------------------------------------------------ */
/* Destination verdicts: BPF_MAP_TYPE_HASH "xp_dst_verdicts", written by plugins (DNS answers, */
/* sniffed names). Looked up with (daddr, dport, l4proto) first, then (daddr, 0, 0).           */

struct xp_dst_key {
	__u8 addr[16];
	__u16 port;   /* 0 = any port */
	__u8 l4proto; /* 0 = any protocol */
	__u8 pad;
};
_Static_assert(sizeof(struct xp_dst_key) == 20, "xp_dst_key");

struct xp_dst_verdict {
	__u64 expires_ns; /* bpf_ktime_get_ns() clock; 0 = never; expired entries are ignored */
	__u32 tag;	  /* plugin-defined (e.g. a domain id), carried into the FLOW_NEW event */
	__u16 outbound_id;
	__u8 verdict;
	__u8 origin_plugin; /* who wrote it: enum xp_dst_writer */
};
_Static_assert(sizeof(struct xp_dst_verdict) == 16, "xp_dst_verdict");

enum xp_dst_writer {
	XP_DSTW_USER = 0,
	XP_DSTW_DNS = 1,
	XP_DSTW_SNIFF = 2,
};

/* ------------------------------------------------------------------------------------------ */
/* Kernel rules, double-buffered so a reload swaps atomically.                                 */
/*
 * "xp_rules"   BPF_MAP_TYPE_ARRAY, 2 * XP_MAX_RULES entries of struct xp_rule; generation g
 *              lives at [g * XP_MAX_RULES, g * XP_MAX_RULES + ruleset.count).
 * "xp_cidrs"   BPF_MAP_TYPE_LPM_TRIE, key struct xp_cidr_key (set id + address), value
 *              struct xp_cidr_val. A set id is never shared between generations.
 * "xp_pranges" BPF_MAP_TYPE_ARRAY, 2 * XP_MAX_PRANGES entries of struct xp_prange: sorted,
 *              disjoint destination-port intervals, binary-searched.
 *
 * A rule matches when every condition it has matches. Where the verdict comes from is given by
 * `take`: the rule itself, or the value found in its dst set / src set / port intervals. That
 * lets the compiler merge a run of consecutive single-condition rules (1,000 "dst-cidr" lines)
 * into one rule with one LPM lookup, keeping first-match semantics by storing, for every
 * prefix, the earliest rule whose prefix covers it.
 */
#define XP_MAX_RULES 1024
#define XP_MAX_PRANGES 4096

enum xp_rule_take {
	XP_TAKE_RULE = 0,    /* verdict/outbound/rule_id from struct xp_rule */
	XP_TAKE_DST_SET = 1, /* from the xp_cidr_val found for the destination */
	XP_TAKE_SRC_SET = 2, /* from the xp_cidr_val found for the source */
	XP_TAKE_PORTS = 3,   /* from the xp_prange found for the destination port */
};

/* xp_rule.flags */
#define XP_RULE_F_NOT_DST 0x01	 /* dst_set condition inverted */
#define XP_RULE_F_NOT_SRC 0x02	 /* src_set condition inverted */
#define XP_RULE_F_NOT_DPORT 0x04 /* dport_lo..dport_hi inverted */
#define XP_RULE_F_NOT_SPORT 0x08 /* sport_lo..sport_hi inverted */
#define XP_RULE_F_NOT_PRANGE 0x10 /* port-set condition inverted (take != XP_TAKE_PORTS) */

/* xp_rule.l4mask (0 = any) */
#define XP_L4_TCP 0x1
#define XP_L4_UDP 0x2
#define XP_L4_ICMP 0x4 /* ICMP and ICMPv6 */
#define XP_L4_OTHER 0x8
/* xp_rule.ipmask (0 = any) */
#define XP_IP_V4 0x1
#define XP_IP_V6 0x2

struct xp_rule {
	__u32 rule_id; /* 1-based index of the [route] line; reported in events */
	__u32 dst_set; /* 0 = any destination, else a set id in xp_cidrs */
	__u32 src_set; /* 0 = any source */
	__u16 dport_lo, dport_hi; /* inclusive; 0..65535 = any */
	__u16 sport_lo, sport_hi; /* inclusive; 0..65535 = any */
	__u16 prange_first;	  /* absolute index into xp_pranges */
	__u16 prange_count;	  /* 0 = no port-set condition */
	__u16 outbound_id;
	__u8 verdict;
	__u8 l4mask; /* XP_L4_* bits; 0 = any */
	__u8 ipmask; /* XP_IP_* bits; 0 = any */
	__u8 take;   /* enum xp_rule_take */
	__u8 flags;  /* XP_RULE_F_* */
	__u8 pad[1];
};
_Static_assert(sizeof(struct xp_rule) == 32, "xp_rule");

struct xp_cidr_key {
	__u32 prefixlen; /* 32 (set id) + address prefix length (IPv4 as /96 + len) */
	__u32 set_id;	 /* big-endian, so it is the leading 32 bits of the trie key */
	__u8 addr[16];
};
_Static_assert(sizeof(struct xp_cidr_key) == 24, "xp_cidr_key");

/* A value whose verdict is XP_V_NONE is a hole: the address is NOT in the set (used to keep
 * IPv6 prefixes such as ::/0 from matching IPv4-mapped addresses). For sets used as a plain
 * condition (XP_TAKE_RULE) any other verdict just means "member". */
struct xp_cidr_val {
	__u32 rule_id;
	__u16 outbound_id;
	__u8 verdict;
	__u8 pad;
};
_Static_assert(sizeof(struct xp_cidr_val) == 8, "xp_cidr_val");

struct xp_prange {
	__u16 lo, hi; /* inclusive */
	__u32 rule_id;
	__u16 outbound_id;
	__u8 verdict;
	__u8 pad;
};
_Static_assert(sizeof(struct xp_prange) == 12, "xp_prange");

struct xp_ruleset {
	__u32 first; /* absolute index of the first rule in xp_rules */
	__u32 count; /* number of rules, <= XP_MAX_RULES */
	__u32 fallback_rule_id;
	__u16 fallback_outbound;
	__u8 fallback_verdict;
	__u8 pad;
};
_Static_assert(sizeof(struct xp_ruleset) == 16, "xp_ruleset");

/* ------------------------------------------------------------------------------------------ */
/* Control block: a global in .bss ("xp_ctl"), written by the daemon through the skeleton's  */
/* mmap. Each field is written with one aligned store, so readers never see a torn value.    */

#define XP_CTL_FAIL_CLOSED 0x1 /* heartbeat stale: BLOCK proxied flows instead of DIRECT */
/* Nobody reads FLOW_NEW / FLOW_END (no plugin subscribes, no debug log): skip the records and
 * the wake-up of the daemon's main thread each costs. The stats count flows regardless. */
#define XP_CTL_NO_FLOW_EVENTS 0x2

struct xp_ctl {
	__u64 heartbeat_ns; /* bpf_ktime_get_ns() clock of the daemon's last tick; 0 = none */
	__u32 flags;	    /* XP_CTL_* */
	__u32 rules_gen;    /* 0 or 1: which ruleset is live */
	struct xp_ruleset rulesets[2];
};
_Static_assert(sizeof(struct xp_ctl) == 48, "xp_ctl");

/* ------------------------------------------------------------------------------------------ */
/* Load-time config: a const volatile global in .rodata ("xp_cfg"), set before load.          */

enum xp_redirect_mode {
	XP_REDIRECT_PLAIN = 0, /* bpf_redirect() everywhere */
	XP_REDIRECT_PEER = 1,  /* bpf_redirect_peer() from LAN ingress into the netns */
};

/* xp_bpf_config.flags */
#define XP_CFG_EVENTS_DIRECT 0x1 /* emit FLOW_NEW for DIRECT/BLOCK flows too (not only proxied) */
#define XP_CFG_DROP_EVENTS 0x2	 /* emit DROP events (counters are kept regardless) */
#define XP_CFG_UDP 0x4		 /* UDP listeners exist: UDP may be proxied (else NOPROXY) */

struct xp_bpf_config {
	__u32 abi_version;   /* must equal XP_BPF_ABI_VERSION; checked by the loader */
	__u32 flags;	     /* XP_CFG_* */
	__u32 mark;	     /* skb->mark of the daemon's own upstream sockets ... */
	__u32 mark_mask;     /* ... compared under this mask; never hijacked */
	__u32 xp0_ifindex;   /* host side of the pair (redirect target) */
	__u32 redirect_mode; /* enum xp_redirect_mode */
	__u32 n_workers;     /* listeners per protocol in xp_listeners, 1..XP_MAX_WORKERS */
	__u32 pad0;
	__u64 heartbeat_timeout_ns; /* xp_ctl.heartbeat_ns older than this: fail-safe */
	__u8 xp0p_mac[6];	    /* MAC of the netns side, written into frames sent there */
	__u8 xp0_mac[6];	    /* MAC of the host side */
	__u8 pad1[4];
};
_Static_assert(sizeof(struct xp_bpf_config) == 56, "xp_bpf_config");

/* ------------------------------------------------------------------------------------------ */
/* Listeners: BPF_MAP_TYPE_SOCKMAP "xp_listeners", key __u32:                                  */
/*   [0, XP_MAX_WORKERS)                 TCP listener of worker i                              */
/*   [XP_MAX_WORKERS, 2 * XP_MAX_WORKERS) UDP socket of worker i (used from the UDP issue on)  */
/* A new flow goes to worker (flow hash % n_workers). Listeners must not use SO_REUSEPORT.     */

#define XP_MAX_WORKERS 64
#define XP_LISTENER_TCP(i) ((__u32)(i))
#define XP_LISTENER_UDP(i) ((__u32)(XP_MAX_WORKERS + (i)))

/* Router-owned addresses: BPF_MAP_TYPE_HASH "xp_local_addrs", key 16-byte address, value __u8 */
/* (1). Maintained by the daemon from netlink; traffic to these is never hijacked.             */
#define XP_MAX_LOCAL_ADDRS 1024

/* Interfaces: BPF_MAP_TYPE_HASH "xp_ifaces", key __u32 ifindex, value struct xp_iface.        */
#define XP_MAX_IFACES 64

#define XP_IFACE_LAN 0x1
#define XP_IFACE_WAN 0x2
#define XP_IFACE_L3 0x4 /* no link-layer header (ppp, wireguard, tun, ipip) */

struct xp_iface {
	__u8 mac[6]; /* zero for L3 devices */
	__u8 flags;  /* XP_IFACE_* */
	__u8 pad;
};
_Static_assert(sizeof(struct xp_iface) == 8, "xp_iface");

/* Fragments: BPF_MAP_TYPE_LRU_HASH "xp_frags": the first fragment records its flow so later */
/* fragments (which carry no ports) follow the same verdict.                                  */
struct xp_frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id; /* IPv4 id (16 bits) or IPv6 fragment identification */
	__u8 l4proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct xp_frag_key) == 40, "xp_frag_key");
/* value: struct xp_tuple of the flow (its ports) */
#define XP_MAX_FRAGS 4096

/* ------------------------------------------------------------------------------------------ */
/* Events: BPF_MAP_TYPE_RINGBUF "xp_events". Every record starts with struct xp_ev_hdr.       */

#define XP_EV_VERSION 1

enum xp_ev_type {
	XP_EV_FLOW_NEW = 1,
	XP_EV_FLOW_END = 2,
	XP_EV_DROP = 3,
	XP_EV_MAP_FULL = 4,
};

struct xp_ev_hdr {
	__u16 version; /* XP_EV_VERSION */
	__u16 type;    /* enum xp_ev_type */
	__u16 len;     /* whole record, header included */
	__u8 hook;     /* enum xp_hook */
	__u8 pad;
	__u64 ts_ns; /* bpf_ktime_get_ns() */
};
_Static_assert(sizeof(struct xp_ev_hdr) == 16, "xp_ev_hdr");

struct xp_ev_flow { /* FLOW_NEW and FLOW_END */
	struct xp_ev_hdr hdr;
	struct xp_tuple tuple;
	__u32 ifindex;
	__u32 rule_id;
	__u32 tag; /* xp_dst_verdict.tag when vsrc == XP_SRC_DSTMAP */
	__u16 outbound_id;
	__u8 verdict;
	__u8 vsrc;
	__u8 origin;
	__u8 tcp_state; /* FLOW_END: XP_TCP_* bits that ended it */
	__u8 pad[6];
};
_Static_assert(sizeof(struct xp_ev_flow) == 80, "xp_ev_flow");

struct xp_ev_drop {
	struct xp_ev_hdr hdr;
	struct xp_tuple tuple; /* as far as it was parsed; zero beyond */
	__u32 ifindex;
	__u32 reason; /* enum xp_drop_reason */
};
_Static_assert(sizeof(struct xp_ev_drop) == 64, "xp_ev_drop");

enum xp_map_id {
	XP_MAP_FLOWS = 1,
	XP_MAP_DST_VERDICTS = 2,
	XP_MAP_FRAGS = 3,
};

struct xp_ev_map_full {
	struct xp_ev_hdr hdr;
	__u32 map; /* enum xp_map_id */
	__s32 err; /* what bpf_map_update_elem() returned */
};
_Static_assert(sizeof(struct xp_ev_map_full) == 24, "xp_ev_map_full");

/* ------------------------------------------------------------------------------------------ */
/* Counters: BPF_MAP_TYPE_PERCPU_ARRAY "xp_stats", one element of struct xp_stats.            */

struct xp_stats {
	__u64 pkts[XP_V__MAX];	       /* packets by the verdict applied */
	__u64 flows[XP_V__MAX];	       /* new flows by verdict */
	__u64 vsrc[XP_SRC__MAX];       /* new flows by verdict source */
	__u64 drops[XP_DROP__MAX];     /* drops by reason */
	__u64 hook_pkts[XP_HOOK__MAX]; /* packets seen per program */
	__u64 passed_non_ip;	       /* ARP, LLDP, ...: passed untouched */
	__u64 passed_icmp6_nd;	       /* neighbour discovery: passed untouched */
	__u64 events_lost;	       /* ring buffer full: event dropped, packet unaffected */
	__u64 map_full;		       /* a map update failed */
	__u64 frags_first;	       /* first fragments recorded */
	__u64 frags_later;	       /* later fragments that found their flow */
	__u64 flow_end;		       /* FLOW_END emitted */
	__u64 rejects;		       /* TCP RSTs generated for BLOCK */
};
_Static_assert(sizeof(struct xp_stats) == 640, "xp_stats");

#endif /* XPROXY_BPF_ABI_H */
