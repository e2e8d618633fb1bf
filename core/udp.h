/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * udp - transparent UDP proxying: per-worker sockets, sessions, reply sockets, hooks.
 *
 * Every worker owns one transparent UDP socket inside the private netns (AF_INET6 dual-stack,
 * bound [::]:0, IP_/IPV6_TRANSPARENT, IP_/IPV6_RECVORIGDSTADDR), registered in the sockmap at
 * XP_LISTENER_UDP(i); xp_proxy_ingress bpf_sk_assign()s every proxied UDP datagram to the
 * shard's socket, and recvmsg() tells the client (source) and the original destination.
 *
 * A session is one client address:port plus, for endpoint-dependent mapping (the default), one
 * original destination; for an outbound with `udp_mapping = independent` ("full cone") it is
 * the client address:port alone and any destination may be reached through it. The first
 * datagram routes the session once through udp_route_fn (flow-table lookup of the UDP tuple):
 *
 *   PROXY    an outbound: udp_open(), then udp_send() for every datagram
 *   DNS      the DNS hook (udp_set_dns_hook): every datagram goes to hook->datagram()
 *   INSPECT  the sniff hook (udp_set_sniff_hook): datagrams are buffered (UDP_SNIFF_MAX_DGRAMS
 *            / UDP_SNIFF_MAX_BYTES) and offered to hook->offer() until udp_sess_decide() is
 *            called; then the buffer is replayed to the chosen outbound. A timeout
 *            (sniff_timeout_ms), or a datagram that finds the buffer full, decides by rules
 *            (udp_route_fn with UDP_ROUTE_RULES) when the hook has not.
 *
 * Replies reach the client from transparent sockets (IP_TRANSPARENT + SO_REUSEADDR, inside the
 * netns) bound to the source the client must see: the original destination, or for an
 * endpoint-independent session the peer that answered. They are cached per worker (LRU,
 * bounded by max_reply_sockets) because the same few destinations answer most datagrams.
 *
 * Sessions end after idle_timeout_ms without a datagram either way (dns_idle_timeout_ms for DNS
 * sessions), when the outbound fails, at reload when their outbound is gone, and at shutdown.
 * max_sessions bounds the sessions across all workers: past it a new client's datagram is
 * dropped and counted (udp_stats.refused_limit).
 *
 * Threads: everything about a session happens on its worker's loop ("same loop"). Hooks are
 * installed on the main thread before the workers start.
 */
#ifndef XP_UDP_H
#define XP_UDP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xproxy/plugin.h>

#include "conn.h"
#include "loop.h"

struct outbound;
struct udp_sess;   /* a session; handed to plugins as xp_udp_t */
struct udp_worker; /* one per worker loop */

#define UDP_SNIFF_MAX_DGRAMS 8	       /* buffered per undecided INSPECT session ... */
#define UDP_SNIFF_MAX_BYTES (16 * 1024) /* ... and bytes; past either: decided by rules */

struct udp_opts {
	uint64_t idle_timeout_ms;     /* [global] udp_idle_timeout (default 60 s) */
	uint64_t dns_idle_timeout_ms; /* DNS sessions (default 10 s, never above idle_timeout_ms) */
	uint64_t sniff_timeout_ms;    /* INSPECT: decide by rules after this ([global] sniff_timeout) */
	uint32_t max_sessions;	      /* [global] max_udp_sessions (default 16384), all workers */
	uint32_t max_reply_sockets;   /* per worker (default 1024) */
};

/* udp_route_fn flags */
#define UDP_ROUTE_RULES 0x1 /* INSPECT timed out: route by [route] rules without a name; the
			     * result must not be INSPECT again (DNS neither) */

/* Route a new session (worker thread). Fill out like conn_route_fn: PROXY sets out->ob (a
 * reference the session takes over); DNS and INSPECT set only out->route (ob NULL); anything
 * else, or an error, refuses the datagram (counted as no_route, out->why logged at debug). */
typedef int (*udp_route_fn)(void *ctx, const union xp_sockaddr *client,
			    const union xp_sockaddr *dst, unsigned flags, struct conn_route *out);

/* What the workers need from the daemon (all thread-safe, called on worker threads). */
struct udp_env {
	udp_route_fn route;
	/* A socket inside the private netns (reply sockets). fd or -errno. */
	int (*netns_socket)(void *ctx, int domain, int type, int protocol);
	/* An endpoint-independent session got a datagram from `peer`, not the original
	 * destination `dst`: make the datapath return peer's datagrams to the client (a flow
	 * entry client -> peer like the client -> dst one). 0 or -errno. Optional. */
	int (*peer_learn)(void *ctx, const union xp_sockaddr *client, const union xp_sockaddr *dst,
			  const union xp_sockaddr *peer);
	/* The outbound DIRECT decisions of INSPECT sessions go through (a referenced direct-plugin
	 * instance), NULL when there is none. Optional. */
	struct outbound *(*direct_outbound)(void *ctx);
	void *ctx;
};

/* Process-wide counters (all workers), reported with SIGUSR1. */
struct udp_stats {
	atomic_uint_fast64_t sessions;	     /* created */
	atomic_uint_fast64_t active;
	atomic_uint_fast64_t refused_limit;  /* max_sessions reached: datagram dropped */
	atomic_uint_fast64_t no_route;	     /* router refused, or no hook for the verdict */
	atomic_uint_fast64_t open_failed;    /* outbound udp_open failed, or cannot do UDP */
	atomic_uint_fast64_t idle_expired;
	atomic_uint_fast64_t failed;	     /* udp_fail() from the outbound */
	atomic_uint_fast64_t dgrams_up;	     /* client -> outbound (accepted by udp_send) */
	atomic_uint_fast64_t dgrams_down;    /* delivered to the client */
	atomic_uint_fast64_t bytes_up;
	atomic_uint_fast64_t bytes_down;
	atomic_uint_fast64_t send_errors;    /* udp_send() refused a datagram */
	atomic_uint_fast64_t reply_errors;   /* a reply could not be sent to the client */
	atomic_uint_fast64_t sniff_dropped;  /* INSPECT: a datagram lost (no route, out of memory) */
	atomic_uint_fast64_t sniff_full;     /* INSPECT buffer full: decided by rules at once */
	atomic_uint_fast64_t sniff_timeout;  /* INSPECT decided by rules after the timeout */
	atomic_uint_fast64_t recv_errors;    /* malformed datagrams (no original destination) */
	atomic_uint_fast64_t overflow;	     /* dropped by the kernel: a listener's buffer was full */
};
extern struct udp_stats udp_stats;

/* ------------------------------------------------------------------------------------------ */
/* Workers                                                                                      */

/* Make `fd` (a fresh AF_INET6 SOCK_DGRAM socket made inside the private netns) the worker's
 * transparent dual-stack UDP socket: IP(V6)_TRANSPARENT, IP(V6)_RECVORIGDSTADDR, V6ONLY off,
 * SO_RXQ_OVFL, a receive buffer of `rcvbuf` bytes (udp_buffer; warns when the kernel gives
 * less), bound [::]:0. 0 or -errno. */
int udp_listen(int fd, uint32_t rcvbuf);
/* Set a UDP socket's receive buffer to `bytes` (past rmem_max where the process may): the size
 * the kernel reports afterwards, or -errno. */
int udp_set_buffer(int fd, uint32_t bytes);
/* Thread-safe: the listener's receive buffer for udp_buffer after a reload. */
void udp_worker_set_buffer(struct udp_worker *uw, uint32_t bytes);

/* Attach UDP to a worker's loop, before its thread starts (or from that loop's thread). Takes
 * ownership of fd (closed by udp_worker_free, also on failure). NULL with errno on failure. */
struct udp_worker *udp_worker_new(struct xp_loop *loop, int fd, const struct udp_opts *opts,
				  const struct udp_env *env);
/* Thread-safe: new options for new sessions (reload; max_sessions applies at once). */
void udp_worker_set_opts(struct udp_worker *uw, const struct udp_opts *opts);
/* Thread-safe: end every session whose outbound fails ob_alive(ob) (reload). */
void udp_worker_sweep(struct udp_worker *uw, bool (*ob_alive)(struct outbound *ob));
/* Thread-safe: post "close every session, stop reading" to the loop. Call it before the
 * worker's loop is stopped (posts run in order). */
void udp_worker_stop(struct udp_worker *uw);
/* Thread-safe: post the cut (conn.h) to every UDP worker still running; each closes its
 * matching sessions (their next datagram makes a new session, routed afresh). */
void udp_cut_post(struct conn_cut *cut);
/* After the loop's thread ended: release what is left. NULL-safe. */
void udp_worker_free(struct udp_worker *uw);
unsigned udp_worker_sessions(const struct udp_worker *uw);
/* Same loop: one datagram as the worker's socket received it (tests feed sessions with it). */
void udp_worker_input(struct udp_worker *uw, const union xp_sockaddr *client,
		      const union xp_sockaddr *dst, const void *buf, size_t len);

/* Endpoint-independent mapping comes from the outbound's [outbound.NAME] udp_mapping
 * (struct outbound.udp_independent). A datagram first looks for the session of its exact
 * (client, destination), then for an endpoint-independent session of its client address:port:
 * a full-cone mapping belongs to the client's port, whatever it sends to. */

/* ------------------------------------------------------------------------------------------ */
/* Hooks for the DNS core (core/dnsq.c) and the sniff core (core/sniff.c)                      */

struct udp_dns_hook {
	/* A datagram of a session whose verdict is DNS (same loop). `client` and `dst` (the
	 * original destination) are the session's; buf is valid for the call only. Answer with
	 * udp_sess_reply(s, dst, ...), now or later, while the session lives. */
	void (*datagram)(void *ctx, struct udp_sess *s, const union xp_sockaddr *client,
			 const union xp_sockaddr *dst, const void *buf, size_t len);
	/* The session ends (idle, shutdown): forget it; s is invalid once this returns. */
	void (*closed)(void *ctx, struct udp_sess *s);
	void *ctx;
};

struct udp_sniff_hook {
	/* An undecided INSPECT session got a datagram (same loop). parts[0..count) are every
	 * buffered datagram so far, oldest first, valid for the call only (the session keeps
	 * them). Call udp_sess_decide() now or later; until then datagrams keep coming here. */
	void (*offer)(void *ctx, struct udp_sess *s, const struct xp_conn_info *info,
		      const struct xp_bytes *parts, unsigned count);
	/* The session ends before or after a decision: s is invalid once this returns. */
	void (*closed)(void *ctx, struct udp_sess *s);
	void *ctx;
};

/* Main thread, before the workers start (or with NULL, after they stopped). Copied. */
void udp_set_dns_hook(const struct udp_dns_hook *h);
void udp_set_sniff_hook(const struct udp_sniff_hook *h);

/* Send a datagram to the session's client from `from` (for DNS: the original destination).
 * Same loop. Sent at once, after the replies outbounds delivered that still wait in the queue
 * (udp.c, struct reply_q). 0 or -errno (counted in reply_errors). Also refreshes the idle
 * timer. */
int udp_sess_reply(struct udp_sess *s, const union xp_sockaddr *from, const void *buf,
		   size_t len);

/* The decision for an INSPECT session (same loop, once; later calls return -EALREADY):
 *   XP_ROUTE_PROXY   through the outbound named `outbound`
 *   XP_ROUTE_DIRECT  through the direct outbound (the flow is already in userspace)
 *   XP_ROUTE_BLOCK   drop the session's datagrams until it expires
 *   XP_ROUTE_NONE    no opinion: route by rules (as the timeout does)
 * `rule_id` is the deciding [route] line (0: none) for logs and udp_info. The buffered
 * datagrams are replayed to the outbound before this returns. 0 or -errno (-ENOENT: unknown
 * outbound; the session is then dropped). */
int udp_sess_decide(struct udp_sess *s, uint8_t route, const char *outbound, uint32_t rule_id);

/* Name the session (core/names.c address -> name, a sniffed name). Copied; NULL clears. Same
 * loop. Shows in udp_info()->domain and is passed to udp_send() from now on. */
void udp_sess_set_domain(struct udp_sess *s, const char *domain);
/* And the sniffer that found it (a static string, e.g. the plugin's name). */
void udp_sess_set_sniffer(struct udp_sess *s, const char *sniffer);

/* A session's facts (same loop). */
const struct xp_conn_info *udp_sess_info(struct udp_sess *s);
struct xp_loop *udp_sess_loop(struct udp_sess *s);
/* One opaque pointer for the hook's own state (DNS queries, sniff progress). */
void udp_sess_set_user(struct udp_sess *s, void *user);
void *udp_sess_user(struct udp_sess *s);

/* ------------------------------------------------------------------------------------------ */
/* Host-table implementations (plugin.h ABI 1.1; same loop as the session)                     */

const struct xp_conn_info *udp_info(xp_udp_t *s);
xp_loop_t *udp_loop(xp_udp_t *s);
void udp_deliver(xp_udp_t *s, const union xp_sockaddr *from, const void *buf, size_t len);
void udp_fail(xp_udp_t *s, int err, const char *reason);

#endif
