/* SPDX-License-Identifier: MIT */
/*
 * xproxy/plugin.h - the xproxy plugin ABI.
 *
 * A plugin is a shared object that exports one symbol, XP_PLUGIN_ENTRY ("xp_plugin_query"),
 * returning a descriptor. The daemon passes the plugin a table of host functions; plugins never
 * link against the daemon and never see libev, libbpf or the daemon's structs: every host object
 * is an opaque handle.
 *
 * Compatibility rules (see sdk/ABI.md for the changelog):
 *   - XP_PLUGIN_ABI_MAJOR changes only when an existing field or function changes meaning;
 *     a plugin built for another major is refused.
 *   - XP_PLUGIN_ABI_MINOR grows when fields are appended; a plugin built for a NEWER minor than
 *     the daemon's is refused, an older one is accepted.
 *   - Every struct that crosses the boundary starts with `uint32_t size` (sizeof as the side
 *     that filled it was built) and is append-only. The receiver copies min(size, known) and
 *     zero-fills the rest; bytes past what it knows must be zero or the plugin is refused.
 *   - Arrays of structs (option tables) carry their element size separately.
 *
 * Threads: init, fini, instance_new, instance_free and on_event run on the main thread.
 * tcp_connect, tcp_abort, stream ops and io/timer callbacks run on the worker loop that owns
 * the connection (host->conn_loop()). One instance serves every worker: instance state shared
 * across connections must be immutable or thread-safe. Host functions are thread-safe unless
 * a comment says "same loop".
 */
#ifndef XPROXY_PLUGIN_H
#define XPROXY_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XP_PLUGIN_ABI_MAJOR 1
#define XP_PLUGIN_ABI_MINOR 2
#define XP_PLUGIN_ABI ((uint32_t)XP_PLUGIN_ABI_MAJOR << 16 | XP_PLUGIN_ABI_MINOR)

/* The one exported symbol. `host_abi` is the daemon's XP_PLUGIN_ABI. */
#define XP_PLUGIN_ENTRY xp_plugin_query
#define XP_PLUGIN_ENTRY_NAME "xp_plugin_query"
#define XP_PLUGIN_EXPORT __attribute__((visibility("default")))

struct xp_plugin_desc;
typedef const struct xp_plugin_desc *(*xp_plugin_query_fn)(uint32_t host_abi);
/* Every plugin defines this (declared here so the definition is type-checked). */
XP_PLUGIN_EXPORT const struct xp_plugin_desc *xp_plugin_query(uint32_t host_abi);

/* ------------------------------------------------------------------------------------------ */
/* Opaque host objects                                                                          */

typedef struct xp_handle xp_handle_t;	/* who calls: a plugin (init) or an instance */
typedef struct xp_loop xp_loop_t;	/* an event loop: the main one or a worker's */
typedef struct xp_io xp_io_t;		/* a file-descriptor watch */
typedef struct xp_timer xp_timer_t;	/* a timer */
typedef struct xp_conn xp_conn_t;	/* a proxied TCP connection (client side is the host's) */
typedef struct xp_counter xp_counter_t; /* a named counter */
typedef struct xp_udp xp_udp_t;		/* ABI 1.1: a proxied UDP session (client side is the host's) */
typedef struct xp_dial xp_dial_t;	/* ABI 1.1: a plugin's own connection through an outbound */
typedef struct xp_dns_query xp_dns_query_t; /* a client's DNS query handed to the DNS plugin */

/* ------------------------------------------------------------------------------------------ */
/* Plain data                                                                                   */

/* An IPv4 or IPv6 socket address; `sa.sa_family` says which. */
union xp_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

enum xp_log_level {
	XP_LOG_ERROR = 0,
	XP_LOG_WARN = 1,
	XP_LOG_INFO = 2,
	XP_LOG_DEBUG = 3,
	XP_LOG_TRACE = 4,
};

/* Routing decisions, as plugins see and write them. */
enum xp_route {
	XP_ROUTE_NONE = 0,
	XP_ROUTE_DIRECT = 1,  /* forwarded by the kernel, never through userspace */
	XP_ROUTE_BLOCK = 2,   /* dropped by the kernel */
	XP_ROUTE_PROXY = 3,   /* through an outbound, named in the request */
	XP_ROUTE_INSPECT = 4, /* through the sniffers first */
	XP_ROUTE_DNS = 5,     /* to the DNS plugin */
};

/* Where a flow's decision came from. */
enum xp_route_source {
	XP_SOURCE_NONE = 0,
	XP_SOURCE_FLOW = 1,
	XP_SOURCE_DSTMAP = 2, /* a verdict a plugin wrote (DNS answer, sniffed name) */
	XP_SOURCE_RULE = 3,
	XP_SOURCE_FALLBACK = 4,
	XP_SOURCE_LOCAL = 5,
	XP_SOURCE_FAILSAFE = 6,
	XP_SOURCE_NOPROXY = 7,
	XP_SOURCE_MIDSTREAM = 8, /* a TCP connection older than the datapath: left DIRECT */
};

/* What a connection is going to. */
struct xp_target {
	uint32_t size;
	uint32_t l4proto;	/* IPPROTO_TCP or IPPROTO_UDP */
	union xp_sockaddr addr; /* original destination address and port */
	const char *domain;	/* from a DNS answer or a sniffer; NULL when unknown */
};

/* Everything known about a connection; valid for the connection's lifetime. */
struct xp_conn_info {
	uint32_t size;
	uint32_t l4proto;
	uint64_t id;		  /* unique within this daemon's lifetime */
	union xp_sockaddr client; /* the LAN client, or the router itself */
	union xp_sockaddr dst;	  /* original destination */
	const char *domain;	  /* NULL when unknown */
	const char *sniffer;	  /* plugin that named the flow, NULL if none */
	const char *outbound;	  /* instance handling it ("[outbound.NAME]") */
	uint32_t rule_id;	  /* [route] line number (1-based) that decided, 0 if none */
	uint8_t route;		  /* enum xp_route */
	uint8_t source;		  /* enum xp_route_source */
	uint8_t from_host;	  /* 1: the router itself started it */
	uint8_t pad;
	/* ABI 1.1 (check size): */
	uint32_t flags; /* XP_CONN_F_* */
	uint32_t pad2;
};

/* xp_conn_info.flags (ABI 1.1) */
#define XP_CONN_F_UDP_INDEPENDENT 0x1 /* a UDP session with endpoint-independent mapping
				       * ([outbound.NAME] udp_mapping = independent): udp_send
				       * names any destination, and datagrams from any peer are
				       * for the client; known before udp_open is called */

/* A flow as the datapath knows it. */
struct xp_flow_key {
	uint32_t size;
	uint32_t l4proto;
	union xp_sockaddr src; /* client side */
	union xp_sockaddr dst; /* server side */
};

struct xp_flow_info {
	uint32_t size;
	uint8_t route;	/* enum xp_route */
	uint8_t source; /* enum xp_route_source */
	uint8_t from_host;
	uint8_t tcp_closed; /* FIN or RST seen */
	uint32_t rule_id;
	uint32_t ifindex;
	uint64_t age_ms;  /* since the first packet */
	uint64_t idle_ms; /* since the last packet */
	const char *outbound; /* for XP_ROUTE_PROXY; NULL otherwise; valid until the next reload */
};

/* A destination verdict for the kernel: later flows to `dst` are decided without userspace. */
struct xp_verdict_req {
	uint32_t size;
	uint32_t l4proto;      /* 0 = any protocol */
	union xp_sockaddr dst; /* address; port 0 = any port */
	uint32_t route;	       /* XP_ROUTE_DIRECT, _BLOCK, _PROXY or _INSPECT */
	uint32_t ttl_ms;       /* 0 = until cleared */
	const char *outbound;  /* instance name, for XP_ROUTE_PROXY */
	uint32_t tag;	       /* reported back in flow events (e.g. a domain id) */
	uint32_t pad;
};

/* Events from the datapath, for plugins that set event_mask. */
enum xp_event_type {
	XP_EVENT_FLOW_NEW = 1,
	XP_EVENT_FLOW_END = 2,
	XP_EVENT_DROP = 3,
	/* ABI 1.2: userspace decided a flow that went through it (an INSPECT verdict: after
	 * sniffing, or after the sniff found nothing). Not from the datapath: emitted by the
	 * core once per TCP connection / UDP session, after FLOW_NEW. route, source, rule_id and
	 * outbound are the final decision; domain and sniffer say what named the flow. */
	XP_EVENT_FLOW_NAMED = 4,
};
#define XP_EVENT_MASK(t) (1u << (t))

struct xp_event {
	uint32_t size;
	uint32_t type; /* enum xp_event_type */
	uint64_t ts_ms;
	uint32_t l4proto;
	uint32_t ifindex;
	union xp_sockaddr src;
	union xp_sockaddr dst;
	uint8_t route;	/* enum xp_route */
	uint8_t source; /* enum xp_route_source */
	uint8_t from_host;
	uint8_t pad;
	uint32_t rule_id;
	uint32_t tag;
	uint32_t drop_reason; /* XP_EVENT_DROP: datapath drop reason code */
	const char *outbound; /* for XP_ROUTE_PROXY; NULL otherwise */
	/* ABI 1.2 (check size >= offsetof(struct xp_event, sniffer) + sizeof(char *)): set for
	 * XP_EVENT_FLOW_NAMED, NULL for the others. Valid for the on_event call only. */
	const char *domain;  /* the flow's name (sniffed, or from DNS); NULL when unknown */
	const char *sniffer; /* the sniffer plugin that found `domain`; NULL: none named it */
};

/* ABI 1.1: the result of host->route_domain(). */
#define XP_ROUTE_F_PARTIAL 0x1 /* the deciding rule also depends on port, protocol or client */

struct xp_route_result {
	uint32_t size;
	uint8_t route; /* enum xp_route: DIRECT, BLOCK or PROXY */
	uint8_t pad[3];
	uint32_t rule_id;     /* [route] line index (1-based), 0 = fallback */
	uint32_t flags;	      /* XP_ROUTE_F_* */
	const char *outbound; /* for XP_ROUTE_PROXY; valid until the next reload */
};

/* ABI 1.1: a dial request (host->dial). */
struct xp_stream_ops;
struct xp_dial_req {
	uint32_t size;
	uint32_t pad;
	const char *outbound; /* [outbound.NAME] to go through; NULL or "DIRECT": a plain socket */
	struct xp_target target;
	uint64_t timeout_ms; /* 0: the [global] connect_timeout */
	/* Exactly once: err < 0 (failed; fd -1, ops NULL), or fd >= 0 (a connected socket the
	 * plugin now owns and closes), or ops/stream (a transforming stream, driven like a
	 * non-blocking socket through ops; release it with dial_close()). */
	void (*done)(void *arg, xp_dial_t *d, int err, int fd, const struct xp_stream_ops *ops,
		     void *stream);
	/* For stream results: recv() or send() can make progress (XP_WAKE_*). */
	void (*wake)(void *arg, unsigned what);
	void *arg;
};

/* ------------------------------------------------------------------------------------------ */
/* Options: a table the core fills from the plugin's INI section. No plugin parses text.        */

enum xp_opt_type {
	XP_OPT_STRING = 1,   /* const char *; core-owned, valid for the instance's lifetime */
	XP_OPT_INT = 2,	     /* int64_t; decimal or 0x hex; range [min, max] unless both are 0 */
	XP_OPT_BOOL = 3,     /* int; true/false, yes/no, on/off, 1/0 */
	XP_OPT_DURATION = 4, /* uint64_t milliseconds; "250ms", "10s", "5m", "1h"; bare = ms */
	XP_OPT_SIZE = 5,     /* uint64_t bytes; "512", "64k", "4m", "1g" (powers of 1024) */
	XP_OPT_ENUM = 6,     /* int: index of the value in `choices` ("a|b|c") */
	XP_OPT_HOSTPORT = 7, /* const char *, validated as "host:port" or "[v6]:port" */
	/* ABI 1.1: const char *const *, NULL-terminated, core-owned: every value of a key that
	 * may repeat, in file order ("upstream = a" / "upstream = b"). Never NULL (an empty
	 * list is { NULL }); `def` is one value. Only this type may repeat a key. */
	XP_OPT_LIST = 8,
};

/* xp_option.flags */
#define XP_OPT_REQUIRED 0x1 /* no default: the section must set it */
#define XP_OPT_SECRET 0x2   /* never logged or echoed (passwords, keys) */

struct xp_option {
	const char *name; /* the INI key; the table ends with name == NULL */
	uint16_t type;	  /* enum xp_opt_type */
	uint16_t flags;	  /* XP_OPT_* */
	uint32_t offset;  /* offsetof() the field in the plugin's config struct */
	const char *def;  /* default, as INI text; NULL = none (zero) */
	int64_t min, max; /* bounds for INT, DURATION, SIZE; 0/0 = unbounded */
	const char *choices; /* XP_OPT_ENUM */
	const char *help;
};

#define XP_OPTION_END { .name = NULL }

/* ------------------------------------------------------------------------------------------ */
/* Host functions                                                                               */

/* xp_io events */
#define XP_IO_READ 0x1
#define XP_IO_WRITE 0x2

typedef void (*xp_io_cb)(xp_io_t *io, int fd, unsigned revents, void *arg);
typedef void (*xp_timer_cb)(xp_timer_t *timer, void *arg);

/* host->stream_wake() */
#define XP_WAKE_RECV 0x1 /* recv() has data, EOF or an error to report */
#define XP_WAKE_SEND 0x2 /* send() can accept more */

struct xp_stream_ops;

struct xp_host {
	uint32_t size;
	uint16_t abi_major, abi_minor;
	const char *version; /* xproxyd version */

	/* Logging: one line, prefixed with the instance or plugin name. */
	void (*log)(xp_handle_t *who, int level, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));
	int (*log_enabled)(xp_handle_t *who, int level);

	/* Loops. now_ms is the loop's monotonic clock (milliseconds). */
	xp_loop_t *(*loop_main)(void);
	xp_loop_t *(*loop_current)(void); /* NULL outside loop threads */
	uint64_t (*now_ms)(xp_loop_t *loop);
	/* Run fn(arg) on `loop` soon (from any thread). 0 or -errno. */
	int (*loop_post)(xp_loop_t *loop, void (*fn)(void *arg), void *arg);

	/* File-descriptor watches (same loop). io_set(0) pauses; io_free stops and frees, the fd
	 * stays open. */
	xp_io_t *(*io_new)(xp_loop_t *loop, int fd, xp_io_cb cb, void *arg);
	void (*io_set)(xp_io_t *io, unsigned events);
	void (*io_free)(xp_io_t *io);

	/* Timers (same loop). timer_set re-arms: first after `after_ms`, then every `repeat_ms`
	 * (0 = once). */
	xp_timer_t *(*timer_new)(xp_loop_t *loop, xp_timer_cb cb, void *arg);
	void (*timer_set)(xp_timer_t *t, uint64_t after_ms, uint64_t repeat_ms);
	void (*timer_stop)(xp_timer_t *t);
	void (*timer_free)(xp_timer_t *t);

	/* A socket for talking to the outside: created in the host network namespace, carrying
	 * the xproxy mark (the datapath never hijacks it), O_NONBLOCK and O_CLOEXEC. fd or -errno. */
	int (*upstream_socket)(xp_handle_t *who, int domain, int type, int protocol);

	/* The datapath's view of a flow. Set out->size = sizeof(*out) first; the host fills what
	 * fits and sets out->size to what it wrote. 0, -ENOENT, or -errno. */
	int (*flow_lookup)(const struct xp_flow_key *key, struct xp_flow_info *out);
	/* Write or clear a destination verdict in the kernel. 0 or -errno (-ENOSPC: table full,
	 * -ENOENT: unknown outbound). */
	int (*verdict_set)(xp_handle_t *who, const struct xp_verdict_req *req);
	int (*verdict_clear)(xp_handle_t *who, const union xp_sockaddr *dst, uint32_t l4proto);

	/* The raw INI value of any key, NULL when absent. Valid until the next reload. */
	const char *(*config_get)(const char *section, const char *key);

	/* Counters, reported with the daemon's statistics as "<instance>.<name>". */
	xp_counter_t *(*counter_new)(xp_handle_t *who, const char *name, const char *help);
	void (*counter_add)(xp_counter_t *c, uint64_t delta);

	/* Connections (same loop as the connection). */
	const struct xp_conn_info *(*conn_info)(xp_conn_t *c);
	xp_loop_t *(*conn_loop)(xp_conn_t *c);
	/* Outbound results: exactly one of these per tcp_connect(). ready_fd hands over a connected
	 * socket the core relays with splice(); ready_stream hands over a transforming stream;
	 * fail resets the client (as a refused or unreachable server would), except
	 * err == -ECONNABORTED, which closes it with a FIN. */
	void (*conn_ready_fd)(xp_conn_t *c, int fd);
	void (*conn_ready_stream)(xp_conn_t *c, const struct xp_stream_ops *ops, void *stream);
	void (*conn_fail)(xp_conn_t *c, int err, const char *reason);
	/* A stream tells the core that recv() or send() can make progress (XP_WAKE_*). For a
	 * stream an outbound made for a dial (below), `c` is the dial's connection and the wake
	 * reaches the dial's owner. */
	void (*stream_wake)(xp_conn_t *c, unsigned what);

	/* ---- ABI 1.1 (check abi_minor >= 1, or size, before using anything below) ---- */

	/* UDP sessions, for outbounds with XP_OUTBOUND_UDP (same loop as the session). */
	const struct xp_conn_info *(*udp_info)(xp_udp_t *s);
	xp_loop_t *(*udp_loop)(xp_udp_t *s);
	/* A datagram from the far side for the client. `from` is the source the client must see:
	 * the session's destination, or any peer for an endpoint-independent session. */
	void (*udp_deliver)(xp_udp_t *s, const union xp_sockaddr *from, const void *buf,
			    size_t len);
	/* The session cannot go on (server unreachable, tunnel closed): the core drops it. */
	void (*udp_fail)(xp_udp_t *s, int err, const char *reason);

	/* Routing by name: the [route] rules evaluated for a flow to `domain` whose address and
	 * port are unknown. Rules with non-domain conditions are evaluated as not matching,
	 * except that a rule whose domain conditions match and whose other conditions could
	 * match sets XP_ROUTE_F_PARTIAL (the verdict depends on the port or the client: the
	 * caller should leave the flow to userspace, i.e. INSPECT). 0 or -errno. */
	int (*route_domain)(xp_handle_t *who, const char *domain, struct xp_route_result *out);
	/* The DNS plugin learned that `domain` resolves to `addr` (A or AAAA) for ttl_ms. The
	 * core routes the name, remembers address -> name (bounded table, expires with the TTL
	 * plus the [dns] grace period) and writes the address's verdict into the kernel before
	 * returning; an address claimed by live names with different verdicts becomes INSPECT.
	 * Call it for every address of an answer BEFORE dns_answer(). 0 or -errno (-ENOSPC:
	 * table full; the answer may still be released, the flow is then routed by rules). */
	int (*dns_learn)(xp_handle_t *who, const char *domain, const union xp_sockaddr *addr,
			 uint32_t ttl_ms);
	/* Queries (same loop as the query; see xp_dns_ops). */
	const struct xp_conn_info *(*dns_query_info)(xp_dns_query_t *q); /* client, dst, l4 */
	xp_loop_t *(*dns_query_loop)(xp_dns_query_t *q);
	void (*dns_answer)(xp_dns_query_t *q, const uint8_t *msg, size_t len); /* copied */
	void (*dns_drop)(xp_dns_query_t *q, const char *reason); /* counted, logged at debug */

	/* A plugin's own TCP connection through an outbound (DNS upstreams, health checks). The
	 * result arrives once through req->done on `loop`; see struct xp_dial_req. NULL with
	 * errno set when it fails at once. Every xp_dial_t the plugin got must be given back
	 * with dial_close() exactly once, whatever happened: it cancels a pending dial, closes a
	 * delivered stream, and after an fd result (the fd is the plugin's, not closed here) it
	 * frees the small handle, which leaks otherwise. It may be called from req->done. */
	xp_dial_t *(*dial)(xp_handle_t *who, xp_loop_t *loop, const struct xp_dial_req *req);
	void (*dial_close)(xp_dial_t *d);
};

/* ------------------------------------------------------------------------------------------ */
/* Kind-specific operations                                                                     */

/* A transforming tunnel (encryption, framing). The core calls these like a non-blocking socket. */
struct xp_stream_ops {
	uint32_t size;
	uint32_t pad;
	/* Plaintext from the client. Returns bytes taken (> 0), -EAGAIN when full (then call
	 * stream_wake(XP_WAKE_SEND) once it can take more), or another -errno (fatal). */
	ssize_t (*send)(void *stream, const void *buf, size_t len);
	/* Plaintext for the client. Returns bytes (> 0), 0 at the server's EOF, -EAGAIN when none
	 * yet (then call stream_wake(XP_WAKE_RECV) once there is), or another -errno (fatal;
	 * -ECONNRESET resets the client). */
	ssize_t (*recv)(void *stream, void *buf, size_t len);
	/* The client sent EOF: forward a half-close. 0 or -errno. */
	int (*shutdown)(void *stream);
	/* Release the stream; abort != 0 means reset the upstream instead of closing it cleanly. */
	void (*close)(void *stream, int abort);
};

/* xp_outbound_ops.caps */
#define XP_OUTBOUND_TCP 0x1
#define XP_OUTBOUND_UDP 0x2 /* ABI 1.1: udp_open/udp_send/udp_close are set */

struct xp_outbound_ops {
	uint32_t size;
	uint32_t caps; /* XP_OUTBOUND_* */
	/* Start connecting `conn` to `target`. Returns 0 (then exactly one of conn_ready_fd,
	 * conn_ready_stream or conn_fail follows, possibly before this returns) or -errno
	 * (failed at once; no callback). *cctx is handed back to tcp_abort. */
	int (*tcp_connect)(void *inst, xp_conn_t *conn, const struct xp_target *target,
			   void **cctx);
	/* The core gave up before a result (timeout, client gone): release cctx and never call
	 * back for this connection. */
	void (*tcp_abort)(void *inst, void *cctx);

	/* ---- ABI 1.1: UDP (with XP_OUTBOUND_UDP) ----
	 * A session is one client address:port, with one destination (endpoint-dependent
	 * mapping) or any number (endpoint-independent, "full cone": [outbound.NAME]
	 * udp_mapping = independent). udp_open returns 0 (the session is ready for udp_send at
	 * once; datagrams sent before the tunnel is up are the plugin's to queue, bounded, or
	 * drop) or -errno. Datagrams from the far side go to host->udp_deliver(). */
	int (*udp_open)(void *inst, xp_udp_t *s, const struct xp_target *target, void **uctx);
	/* One datagram to `dst` (the original destination; `domain` when known, else NULL).
	 * 0, or -errno: the datagram is dropped and counted; -ENOTCONN ends the session. */
	int (*udp_send)(void *inst, void *uctx, const union xp_sockaddr *dst, const char *domain,
			const void *buf, size_t len);
	/* Idle expiry, client gone, reload or shutdown: release uctx; no udp_* call after. */
	void (*udp_close)(void *inst, void *uctx);
};

/* Sniffers: [sniff] plugins = tls, http_sniff, quic (in that order; a plain protocol name such as
 * "http" also finds the sniffer "<name>_sniff"). The INSPECT verdict reads the first bytes (TCP)
 * or datagrams (UDP, buffered and replayed) of a flow and offers them to each sniffer whose
 * ports and caps fit, until one says FOUND or all say NOT_MINE, or the sniff timeout ends it (at
 * once when no sniffer claims the port). A sniffer's options come from [sniff.NAME] (its own
 * XP_OPT table, like an outbound's); the core's key `ports` there overrides `ports` below for
 * that instance (ABI 1.2). The decision is reported as XP_EVENT_FLOW_NAMED (ABI 1.2). */
enum xp_sniff_status {
	XP_SNIFF_FOUND = 0,    /* out->name is set */
	XP_SNIFF_MORE = 1,     /* might be mine: call again with more bytes */
	XP_SNIFF_NOT_MINE = 2, /* not this protocol, or no name in it */
};

struct xp_bytes {
	const uint8_t *data;
	size_t len;
};

struct xp_sniff_input {
	uint32_t size;
	uint32_t l4proto;
	uint16_t dport;
	uint16_t pad;
	uint32_t count;		   /* TCP: 1 (all bytes so far); UDP: datagrams so far */
	const struct xp_bytes *parts;
};

struct xp_sniff_result {
	uint32_t size;
	char name[256];	   /* NUL-terminated server name */
	char protocol[16]; /* "tls", "http", "quic", ... */
	char alpn[64];	   /* first ALPN protocol offered, if any */
};

#define XP_SNIFF_TCP 0x1
#define XP_SNIFF_UDP 0x2

struct xp_sniffer_ops {
	uint32_t size;
	uint32_t caps;		/* XP_SNIFF_* */
	const uint16_t *ports;	/* ports it expects, 0-terminated; NULL = any */
	uint32_t max_bytes;	/* the most it ever needs to decide */
	uint32_t pad;
	/* Pure function: no I/O, no state between calls. Negative = error (treated as NOT_MINE). */
	int (*sniff)(void *inst, const struct xp_sniff_input *in, struct xp_sniff_result *out);
};

/* DNS: the DNS verdict (port-53 flows, UDP and TCP, from the LAN and from the router itself)
 * hands every client message to the one [dns] instance. Called on the loop that owns the client
 * flow (host->dns_query_loop(q)); answer with host->dns_answer() or host->dns_drop(), from that
 * loop, exactly once per query, unless cancel() came first. */

struct xp_dns_ops {
	uint32_t size;
	uint32_t flags;
	/* One DNS message from a client (a UDP datagram, or a TCP message without its length
	 * prefix). 0 or -errno. */
	int (*query)(void *inst, xp_dns_query_t *q, const uint8_t *msg, size_t len);
	/* The client went away before an answer: q is invalid once this returns; never answer
	 * it. */
	void (*cancel)(void *inst, xp_dns_query_t *q);
};

/* ------------------------------------------------------------------------------------------ */
/* The descriptor                                                                               */

/* xp_plugin_desc.kinds */
#define XP_KIND_OUTBOUND 0x1
#define XP_KIND_SNIFFER 0x2
#define XP_KIND_DNS 0x4

struct xp_plugin_desc {
	uint32_t size;
	uint16_t abi_major, abi_minor; /* XP_PLUGIN_ABI_MAJOR / _MINOR as built */
	const char *name;	       /* [a-z0-9_-]{1,31}, unique among loaded plugins */
	const char *version;
	const char *summary;
	uint32_t kinds;	      /* XP_KIND_* */
	uint32_t option_size; /* sizeof(struct xp_option) as built; 0 when there are no options */
	const struct xp_option *options;
	uint32_t config_size; /* size of the struct the options fill */
	uint32_t event_mask;  /* XP_EVENT_MASK() bits delivered to on_event */

	/* Once after loading, before any instance (optional). */
	int (*init)(const struct xp_host *host, xp_handle_t *self, void **state);
	void (*fini)(void *state);
	/* One instance per INI section naming this plugin ([outbound.NAME]). `config` points to a
	 * filled struct of config_size bytes, valid until instance_free. Required when kinds != 0. */
	int (*instance_new)(void *state, const struct xp_host *host, xp_handle_t *self,
			    const void *config, void **inst);
	void (*instance_free)(void *inst);
	/* Datapath events (main thread). Required when event_mask != 0. */
	void (*on_event)(void *state, const struct xp_event *ev);

	const struct xp_outbound_ops *outbound; /* required with XP_KIND_OUTBOUND */
	const struct xp_sniffer_ops *sniffer;	/* required with XP_KIND_SNIFFER */
	const struct xp_dns_ops *dns;		/* required with XP_KIND_DNS */
};

/* Helpers for option tables: XP_OPT(struct cfg, field, "key", XP_OPT_STRING, "default", flags,
 * "help"). */
#define XP_OPT(st, field, key, typ, dflt, flg, hlp)                                               \
	{ .name = (key), .type = (typ), .flags = (flg), .offset = offsetof(st, field),            \
	  .def = (dflt), .help = (hlp) }
#define XP_OPT_RANGE(st, field, key, typ, dflt, flg, lo, hi, hlp)                                 \
	{ .name = (key), .type = (typ), .flags = (flg), .offset = offsetof(st, field),            \
	  .def = (dflt), .min = (lo), .max = (hi), .help = (hlp) }
#define XP_OPT_CHOICE(st, field, key, dflt, flg, chs, hlp)                                        \
	{ .name = (key), .type = XP_OPT_ENUM, .flags = (flg), .offset = offsetof(st, field),      \
	  .def = (dflt), .choices = (chs), .help = (hlp) }

#ifdef __cplusplus
}
#endif
#endif /* XPROXY_PLUGIN_H */
