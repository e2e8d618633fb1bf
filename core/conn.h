/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * conn - workers and proxied TCP connections.
 *
 * Each worker owns a libev loop on its own thread and a transparent TCP listener inside the
 * private netns (the datapath assigns new flows to worker (hash % n) through the sockmap).
 * A connection is a small state machine, every state with its timeout:
 *
 *   SNIFF -> ROUTE -> CONNECT -> RELAY -> CLOSE
 *
 *   SNIFF    read the first bytes for the sniffers (skipped when no sniffer is configured)
 *   ROUTE    ask the router (flow table, outbound registry) where it goes
 *   CONNECT  the outbound's tcp_connect(), until conn_ready_fd / conn_ready_stream / conn_fail
 *   RELAY    ready_fd: splice() through a pipe per direction (zero copy);
 *            ready_stream: bounded buffers through the stream ops;
 *            half-close propagated, RST propagated, memory per connection bounded
 *   CLOSE    release, count, log
 */
#ifndef XP_CONN_H
#define XP_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include <xproxy/plugin.h>

#include "loop.h"
#include "outbound.h"

struct outbound;

struct conn_opts {
	uint64_t sniff_timeout_ms;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms;     /* RELAY with no bytes either way */
	uint64_t halfclose_timeout_ms; /* after one direction ended, for the other to end */
	uint32_t buffer_bytes;	       /* per direction: pipe size or stream buffer */
	uint32_t max_connections;      /* across all workers; past it new ones are reset */
};

/* What the router decided for an accepted connection. */
struct conn_route {
	struct outbound *ob; /* referenced (the connection drops it); NULL: refuse */
	uint8_t route;	     /* enum xp_route */
	uint8_t source;	     /* enum xp_route_source */
	uint8_t from_host;
	uint32_t rule_id;
	const char *why; /* when ob == NULL: a short reason for the log */
	/* Instead of an outbound (ob NULL): hand the client socket over (DNS over TCP). 0: fd is
	 * the callee's now; -errno: refused, the connection is reset. */
	int (*adopt)(struct xp_loop *loop, int fd, const struct xp_conn_info *info);
	char domain[256]; /* the flow's name (core/names.c), "" when unknown */
	const char *sniffer; /* the sniffer that found `domain` (a plugin name), NULL if none */
	struct ob_via via; /* the [group.NAME]s that led to ob (outbound.h), n = 0: none */
};

/* The SNIFF state's helper (core/sniff.c installs it on the main thread before the workers
 * start; without one an INSPECT connection is refused). Called on the connection's loop.
 *   begin   an INSPECT connection: *max_bytes > 0 means peek at up to that many first bytes
 *           for at most *timeout_ms; 0 means decide at once (no sniffer claims the port).
 *           0 or -errno (refused: the connection is reset).
 *   offer   every byte received so far (peeked: they stay in the socket for the relay):
 *           1 = decided, 0 = more please.
 *   decide  route now (decided, timed out, EOF, max_bytes reached): fill `out` as a
 *           conn_route_fn does, domain/sniffer included. Releases the state.
 *   abort   the connection closes while sniffing: release the state. */
struct conn_sniff_hook {
	int (*begin)(const struct xp_conn_info *info, void **state, size_t *max_bytes,
		     uint64_t *timeout_ms);
	int (*offer)(void *state, const uint8_t *buf, size_t len);
	int (*decide)(void *state, const struct xp_conn_info *info, struct conn_route *out);
	void (*abort)(void *state);
};
void conn_set_sniff_hook(const struct conn_sniff_hook *h); /* copied; NULL removes it */

/* Called on the worker's thread for every accepted connection. 0, or -errno (refuse). */
typedef int (*conn_route_fn)(void *ctx, const union xp_sockaddr *client,
			     const union xp_sockaddr *dst, struct conn_route *out);

/* Process-wide counters (all workers). */
struct conn_stats {
	atomic_uint_fast64_t accepted;
	atomic_uint_fast64_t active;
	atomic_uint_fast64_t refused_limit;   /* max_connections reached */
	atomic_uint_fast64_t no_route;	      /* router refused */
	atomic_uint_fast64_t connect_failed;  /* outbound reported failure */
	atomic_uint_fast64_t connect_timeout; /* CONNECT timed out */
	atomic_uint_fast64_t idle_timeout;
	atomic_uint_fast64_t resets;	      /* closed abortively (RST propagated or sent) */
	atomic_uint_fast64_t bytes_up;	      /* client -> server */
	atomic_uint_fast64_t bytes_down;      /* server -> client */
};
extern struct conn_stats conn_stats;

struct xp_conn; /* a connection: the SDK's opaque xp_conn_t, defined in conn.c */

struct worker {
	struct xp_loop loop; /* loop.owner == this */
	unsigned index;	     /* 0..n-1: the sockmap key of its listener */
	int tcp_fd;	     /* listening, inside the private netns; owned */
	ev_io accept_io;
	ev_timer accept_timer; /* resumes accepting after EMFILE/ENFILE */
	struct conn_opts opts;
	conn_route_fn route;
	void *route_ctx;
	struct xp_conn *conns; /* every live connection of this worker (doubly linked) */
	unsigned n_conns;
	bool stopping;
};

/* Make `fd` (a fresh AF_INET6 SOCK_STREAM socket, created inside the private netns) a
 * transparent dual-stack listener: IP_TRANSPARENT, IPV6_V6ONLY off, no SO_REUSEPORT (refused by
 * bpf_sk_assign on 6.1), bound to [::]:0, listening. 0 or -errno. */
int conn_listen_tcp(int fd);

int worker_init(struct worker *w, unsigned index, int tcp_fd, const struct conn_opts *opts,
		conn_route_fn route, void *route_ctx);
int worker_start(struct worker *w); /* starts the thread */
/* Thread-safe: new options for new connections (reload). */
void worker_set_opts(struct worker *w, const struct conn_opts *opts);
/* Thread-safe: stop accepting, close every connection, end the loop. worker_join waits. */
void worker_stop(struct worker *w);
void worker_join(struct worker *w);
void worker_fini(struct worker *w); /* closes the listener; NULL-safe */

/* Headless connections: an xp_conn_t with no client socket, for a plugin's own connection
 * through an outbound (core/dial.c). The outbound's results and stream wakes go to these
 * callbacks, called as the outbound calls them (possibly inside tcp_connect()). */
struct conn_headless_ops {
	void (*ready_fd)(void *arg, int fd);
	void (*ready_stream)(void *arg, const struct xp_stream_ops *ops, void *stream);
	void (*fail)(void *arg, int err, const char *reason);
	void (*wake)(void *arg, unsigned what);
};
/* info is copied (its strings are not: they must outlive the connection). NULL with errno. */
xp_conn_t *conn_headless_new(struct xp_loop *loop, const struct xp_conn_info *info,
			     const struct conn_headless_ops *ops, void *arg);
void conn_headless_free(xp_conn_t *c); /* NULL-safe */

/* Closing the connections a group moved away from (core/groups.c, interrupt = yes): every
 * TCP connection and UDP session whose outbound has id `ob_id` and whose group path holds the
 * group `gid` is closed (TCP: reset both ways). A path cut short (more than OB_VIA_MAX groups)
 * is matched by its innermost known group: one of via[0..n_via), the groups that hold gid. Reference-counted across the
 * workers it is posted to; `done` runs once, on the last worker's thread (or the caller's),
 * with tcp/udp final. */
struct conn_cut {
	atomic_uint refs;
	atomic_uint_fast64_t tcp, udp; /* closed so far */
	uint16_t ob_id;
	uint16_t gid;
	char why[128];			/* the close reason in the log */
	void (*done)(struct conn_cut *cut); /* frees the cut */
	void *arg;
	size_t n_via;
	uint16_t via[];
};
/* Thread-safe: post the cut to every running worker (each holds a reference). */
void conn_cut_post(struct conn_cut *cut);

/* Inline: udp.c uses them too, and is linked without conn.c in tests. */
static inline void conn_cut_hold(struct conn_cut *cut)
{
	atomic_fetch_add(&cut->refs, 1);
}

static inline void conn_cut_put(struct conn_cut *cut) /* the last one calls done */
{
	if (atomic_fetch_sub(&cut->refs, 1) == 1)
		cut->done(cut);
}

static inline bool conn_cut_match(const struct conn_cut *cut, uint16_t ob_id,
				  const struct ob_via *via)
{
	if (!via->n || ob_id != cut->ob_id)
		return false;
	for (size_t i = 0; i < via->n && i < OB_VIA_MAX; i++)
		if (via->id[i] == cut->gid)
			return true;
	if (!via->more)
		return false;
	/* the groups below the last known one are unknown: gid may be among them */
	for (size_t i = 0; i < cut->n_via; i++)
		if (cut->via[i] == via->id[OB_VIA_MAX - 1])
			return true;
	return false;
}

/* Host-table implementations (same loop as the connection). */
const struct xp_conn_info *conn_info(xp_conn_t *c);
xp_loop_t *conn_loop(xp_conn_t *c);
void conn_ready_fd(xp_conn_t *c, int fd);
void conn_ready_stream(xp_conn_t *c, const struct xp_stream_ops *ops, void *stream);
void conn_fail(xp_conn_t *c, int err, const char *reason);
void conn_stream_wake(xp_conn_t *c, unsigned what);

#endif
