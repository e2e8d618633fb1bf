/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dnsq - client DNS queries (the SDK's xp_dns_query_t) and the [dns] plugin instance.
 *
 * Flows with the DNS verdict reach the daemon like proxied ones; instead of an outbound they
 * get the [dns] plugin:
 *   UDP  the UDP core's DNS hook (udp.h): one query per datagram, answered with
 *        udp_sess_reply() from the original destination, so the client sees its resolver.
 *   TCP  the connection is adopted from conn.c and read as RFC 1035 section 4.2.2 messages
 *        (2-byte length, big endian): several per connection, pipelined, answered in any
 *        order with their length prefix. A length under DNSQ_MIN_MSG, a partial message that
 *        stalls, or a client that does not read its answers closes the connection (counted).
 * Each query goes to xp_dns_ops.query(); the plugin answers once with host->dns_answer() or
 * host->dns_drop() on the query's loop, or the query times out (counted, the plugin gets
 * cancel()). When the client goes first (TCP close, UDP session end), the plugin gets cancel().
 *
 * The instance: dnsq_apply() (main thread) makes it match cfg's [dns] section; a query holds a
 * reference on the instance it was given to, so a reload never frees an instance under a
 * query in flight.
 */
#ifndef XP_DNSQ_H
#define XP_DNSQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <xproxy/plugin.h>

#include "loop.h"
#include "plug.h"

struct cfg;
struct udp_dns_hook;

#define DNSQ_MIN_MSG 12		/* a DNS header: anything shorter is not a DNS message */
#define DNSQ_MAX_MSG 65535	/* what a 2-byte TCP length can say */
#define DNSQ_MAX_UDP 65507	/* the largest UDP payload over IPv4 */
#define DNSQ_TCP_INFLIGHT 32	/* queries one TCP client may have open; then reading pauses */
#define DNSQ_TCP_WQUEUE (256 * 1024) /* answers queued for a client that does not read */

struct dnsq_opts {
	uint64_t query_timeout_ms; /* a query never answered is dropped (default 10 s) */
	uint64_t tcp_stall_ms;	   /* a partial TCP message with no progress (default 10 s) */
	uint64_t tcp_idle_ms;	   /* a TCP connection with nothing open (default 30 s) */
};

struct dnsq_stats {
	atomic_uint_fast64_t udp_queries;
	atomic_uint_fast64_t tcp_queries;
	atomic_uint_fast64_t answered;
	atomic_uint_fast64_t dropped;	    /* the plugin said dns_drop() */
	atomic_uint_fast64_t timeouts;	    /* never answered in query_timeout_ms */
	atomic_uint_fast64_t cancelled;	    /* the client went away first */
	atomic_uint_fast64_t no_plugin;	    /* no [dns] instance: query dropped */
	atomic_uint_fast64_t query_errors;  /* query() returned an error */
	atomic_uint_fast64_t bad_queries;   /* shorter than a DNS header (UDP or TCP) */
	atomic_uint_fast64_t bad_answers;   /* shorter than a header or too long to send */
	atomic_uint_fast64_t tcp_conns;
	atomic_uint_fast64_t tcp_closed_bad; /* a length prefix under DNSQ_MIN_MSG */
	atomic_uint_fast64_t tcp_stalled;    /* partial message with no progress, or idle */
	atomic_uint_fast64_t tcp_overflow;   /* the client did not read its answers */
};
extern struct dnsq_stats dnsq_stats;

/* Thread-safe: options for queries and TCP connections from now on. */
void dnsq_set_opts(const struct dnsq_opts *o);

/* Main thread. Make the [dns] instance match cfg (none when cfg has no [dns] section):
 * unchanged keys keep the instance; otherwise a new one replaces it for new queries. Errors
 * (unknown plugin, not a DNS plugin, bad options, instance_new failing) are appended to
 * *errors as "file:line: ..." lines and nothing changes: -EINVAL. `check_only`: validate,
 * change nothing (xproxyd -t). */
int dnsq_apply(const struct cfg *cfg, struct plug_registry *reg, const struct xp_host *host,
	       bool check_only, char **errors);
/* Main thread: drop the instance (shutdown; queries in flight keep theirs). */
void dnsq_clear(void);
/* For tests: install a loaded plugin's instance directly (config owned by dnsq afterwards,
 * may be NULL). */
int dnsq_install(struct plugin *p, void *config, void *inst);

/* The UDP core's DNS hook (install with udp_set_dns_hook). */
void dnsq_udp_hook(struct udp_dns_hook *out);

/* conn.c's adopt callback: the accepted TCP client `fd` (port 53, DNS verdict) now belongs to
 * dnsq on `loop` (the caller's worker loop). 0, or -errno (the caller still owns fd). */
int dnsq_tcp_adopt(struct xp_loop *loop, int fd, const struct xp_conn_info *info);

/* One RFC 1035 TCP frame at the front of buf[0..len): 0 = incomplete (need more bytes); > 0 =
 * a complete message of that many bytes at buf + 2 (the frame is 2 + n bytes); -EBADMSG = the
 * length prefix is under DNSQ_MIN_MSG (0 included): not a DNS stream. */
int dnsq_frame(const uint8_t *buf, size_t len);

/* Queries with no owner, for tests and for callers that answer by callback: `reply` gets the
 * answer (msg, len) or a drop (msg NULL) exactly once, unless dnsq_query_cancel() came first.
 * Returns the query (already handed to the plugin, possibly already answered and freed: do not
 * touch it after reply ran) or NULL when it could not be handed over (counted; reply has not
 * run). Same loop as `loop`. */
typedef void (*dnsq_reply_fn)(void *arg, const uint8_t *msg, size_t len);
xp_dns_query_t *dnsq_query_new(struct xp_loop *loop, const struct xp_conn_info *info,
			       const uint8_t *msg, size_t len, dnsq_reply_fn reply, void *arg);
void dnsq_query_cancel(xp_dns_query_t *q);

/* Host-table implementations (same loop as the query). */
const struct xp_conn_info *dnsq_info(xp_dns_query_t *q);
xp_loop_t *dnsq_loop(xp_dns_query_t *q);
void dnsq_answer(xp_dns_query_t *q, const uint8_t *msg, size_t len);
void dnsq_drop(xp_dns_query_t *q, const char *reason);

#endif
