/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dp - the datapath from userspace: the private network namespace and its veth pair, the BPF
 * skeleton (open, configure, ABI check, load), tc attachment, and every map the daemon reads or
 * writes at run time.
 *
 * Life cycle (the daemon drives it in this order):
 *   dp_create()        preflight (privileges, devices), redirect mode, private netns + veth pair
 *                      + policy routing, skeleton load, interface and local-address maps;
 *                      nothing is attached yet, so no traffic changes
 *   dp_netns_socket() / dp_listener_set()   workers' listeners, created inside the netns
 *   dp_rules_apply()   the compiled [route] rules
 *   dp_heartbeat()     first tick (then every DP_HEARTBEAT_MS from a main-loop timer)
 *   dp_attach()        tc filters: xp0p and xp0 first, then WAN and LAN (each replaces a
 *                      filter a crashed earlier run left behind, atomically)
 *   ... run: dp_events_fd()/dp_events_consume(), dp_netlink_fd()/dp_netlink_process(),
 *            dp_janitor() from timers ...
 *   dp_destroy()       detach LAN/WAN first, then the pair; remove clsact qdiscs this run (or
 *                      the crashed run it took over from) created; delete the pair; close
 *
 * The private netns is anonymous (no /run/netns entry): it lives as long as the daemon's
 * sockets and fds, so a killed daemon leaves none behind. tc filters attached through netlink
 * do outlive the process: the programs then see a stale heartbeat and fail open (or closed)
 * within XP_HEARTBEAT_TIMEOUT_MS, and the next start replaces them.
 */
#ifndef XP_DP_H
#define XP_DP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xproxy/bpf_abi.h>

struct cfg;
struct rule_image;

#define DP_HEARTBEAT_MS 200
#define DP_HEARTBEAT_TIMEOUT_MS 1500 /* < 2 s: fail-open within 2 seconds of the daemon's death */

/* tc filter identity on every device we attach to. The handle also records whether this
 * project created the clsact qdisc, so a run that takes over after a crash knows whether to
 * delete it on stop. */
#define DP_TC_PRIORITY 0x5870 /* "Xp" */
#define DP_TC_HANDLE_OWN_QDISC 0x5871
#define DP_TC_HANDLE_FOREIGN_QDISC 0x5872

struct dp;

/* dp_create() options beyond the config (tests use them). */
struct dp_opts {
	const char *bpf_obj; /* load this object instead of the embedded skeleton (NULL) */
	bool no_lan_wan;     /* set up netns + pair + maps only (BPF tests) */
	bool udp;	     /* the daemon will register UDP sockets: let UDP be proxied (XP_CFG_UDP) */
};

/* 0, or -errno with one clear line in err ("lan device eth9 does not exist", "need
 * CAP_NET_ADMIN and CAP_BPF (run as root)", "BPF ABI mismatch: object 2, daemon 1", ...). */
int dp_create(const struct cfg *cfg, const struct dp_opts *opts, struct dp **out, char *err,
	      size_t errlen);
int dp_attach(struct dp *dp, char *err, size_t errlen);
void dp_destroy(struct dp *dp); /* NULL-safe; never fails half-way: logs what it could not undo */

enum xp_redirect_mode dp_redirect_mode(const struct dp *dp);
const char *dp_redirect_mode_why(const struct dp *dp); /* "kernel 6.18 >= 6.8", "forced by config" */
/* Listeners per protocol the datapath shards over: [global] workers, or the online CPUs when
 * that is 0, capped at XP_MAX_WORKERS. The daemon starts this many workers. */
unsigned dp_n_workers(const struct dp *dp);

/* The fd the daemon holds on its private netns (for "nsenter --net=/proc/PID/fd/N"). */
int dp_netns_fd(const struct dp *dp);

/* Sockets inside the private netns (for listeners). fd or -errno. */
int dp_netns_socket(struct dp *dp, int domain, int type, int protocol);
/* Put/remove a listener in xp_listeners (key: XP_LISTENER_TCP(i) / XP_LISTENER_UDP(i)). */
int dp_listener_set(struct dp *dp, uint32_t key, int fd);
int dp_listener_clear(struct dp *dp, uint32_t key);

/* Write img into its generation's slots, then make it live with one store; the previous
 * generation's CIDR entries are deleted afterwards. 0 or -errno (-ENOSPC: xp_cidrs full). */
int dp_rules_apply(struct dp *dp, const struct rule_image *img);
/* The generation the next dp_rules_apply() must be compiled for (the one not live). */
uint32_t dp_rules_next_gen(const struct dp *dp);

void dp_heartbeat(struct dp *dp);
void dp_set_fail_closed(struct dp *dp, bool closed);
/* FLOW_NEW / FLOW_END records in the ring buffer (on after dp_create): off when nobody reads
 * them. The main thread is the only writer of the control block's flags. */
void dp_set_flow_events(struct dp *dp, bool on);

/* Ring buffer. The handler gets each record (it starts with struct xp_ev_hdr). */
typedef void (*dp_event_fn)(void *ctx, const void *data, size_t len);
void dp_set_event_handler(struct dp *dp, dp_event_fn fn, void *ctx);
int dp_events_fd(struct dp *dp);      /* epoll fd: readable when records are pending */
int dp_events_consume(struct dp *dp); /* records handled, or -errno */

/* Router address tracking (xp_local_addrs), driven by an rtnetlink subscription. */
int dp_netlink_fd(struct dp *dp);
int dp_netlink_process(struct dp *dp); /* 0 or -errno; resyncs after an overrun */

/* Map access. */
int dp_flow_lookup(struct dp *dp, const struct xp_tuple *t, struct xp_flow *out); /* -ENOENT */
/* Create or replace a flow entry (UDP: a full-cone session's new peer, see udp.h). */
int dp_flow_update(struct dp *dp, const struct xp_tuple *t, const struct xp_flow *f);
int dp_dst_set(struct dp *dp, const struct xp_dst_key *k, const struct xp_dst_verdict *v);
int dp_dst_del(struct dp *dp, const struct xp_dst_key *k);
int dp_stats(struct dp *dp, struct xp_stats *sum); /* summed over CPUs */

/* Expire flows and destination verdicts (idle closed TCP after 60 s, UDP/ICMP after 300 s,
 * anything after 24 h; expired verdicts). Logs a warning once when xp_flows passes 90 % full.
 * Returns the number of entries removed. */
int dp_janitor(struct dp *dp);

/* Current monotonic time on the bpf_ktime_get_ns() clock. */
uint64_t dp_now_ns(void);

#endif
