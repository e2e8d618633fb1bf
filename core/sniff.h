/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * sniff - the core side of sniffing: the [sniff] plugins, the decision logic that offers a
 * flow's first bytes to them, and routing by the name they find.
 *
 * A flow with the XP_V_INSPECT verdict (a domain rule could decide it; see rules_compile) is
 * read before it is routed. TCP: conn.c's SNIFF state peeks at the client's first bytes
 * (MSG_PEEK: they stay in the socket and reach the outbound untouched), bounded by the largest
 * max_bytes of the sniffers that claim the port. UDP: the UDP core buffers the first datagrams
 * and replays them to the chosen outbound (udp.h, the sniff hook). The bytes are offered to
 * every sniffer whose caps and ports fit, in [sniff] plugins order, until one says FOUND, all
 * say NOT_MINE, the largest max_bytes is reached, the client stops sending (EOF) or the
 * timeout ends it. A port no sniffer claims skips the wait at once, so a server-first
 * protocol on such a port is never delayed; on a claimed port it waits for the timeout.
 *
 * Then the full [route] rules decide with the name (or, with none found, the name DNS gave the
 * address if any, else no name: the first rule that does not need one); the flow is never
 * dropped for lack of a name. With `cache = yes` a found name
 * is remembered per (address, port, protocol) through names_learn_sniffed(), so the next flow
 * there is decided in the kernel.
 *
 * Threads: sniff_apply / sniff_clear on the main thread; everything else on the worker that
 * owns the flow. The live set of sniffers is reference-counted: a reload never pulls one from
 * under a flow being sniffed.
 */
#ifndef XP_SNIFF_H
#define XP_SNIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xproxy/plugin.h>

#define SNIFF_MAX 16	       /* sniffers in one [sniff] plugins list */
#define SNIFF_NAME_MAX 253     /* a found name longer than this is refused */
#define SNIFF_BYTES_MAX 65536  /* cap on any sniffer's max_bytes (bounds the TCP peek buffer) */

#define SNIFF_PORT_RANGES 32 /* entries in one [sniff.NAME] ports = list */

/* [sniff.NAME] ports = 443, 8443, 9000-9100 | any: which destination ports the instance claims,
 * instead of its plugin's xp_sniffer_ops.ports. */
struct sniff_ports {
	bool any; /* every port */
	unsigned n;
	struct {
		uint16_t lo, hi;
	} r[SNIFF_PORT_RANGES];
};

/* Parse a ports value: "any", or a comma-separated list of ports 1-65535 and ranges LO-HI.
 * 0, or -EINVAL with a message in msg. */
int sniff_ports_parse(const char *s, struct sniff_ports *out, char *msg, size_t len);
bool sniff_ports_has(const struct sniff_ports *p, uint16_t port);

/* One sniffer as the decision logic sees it (a plugin instance, or a test's fake). */
struct sniffer {
	const char *name; /* the plugin's name: shown in logs and xp_conn_info.sniffer */
	const struct xp_sniffer_ops *ops;
	void *inst;
	const struct sniff_ports *ports; /* [sniff.NAME] ports: replaces ops->ports; NULL: none */
};

struct sniff_set {
	struct sniffer v[SNIFF_MAX];
	unsigned n;
	uint64_t timeout_ms;
	bool cache;
};

/* Per-flow progress. */
struct sniff_state {
	uint32_t pending;  /* bit i: sniffer i claims the flow and has not said NOT_MINE */
	uint32_t max_bytes; /* the most any claiming sniffer needs (0: none claims the flow) */
	uint16_t dport;
	uint8_t l4proto;
	unsigned offers;   /* sniff() calls made */
	unsigned refused;  /* sniffer answers refused (error code, bad name) */
};

enum sniff_verdict {
	SNIFF_MORE = 0,	 /* wait for more bytes (or datagrams) */
	SNIFF_FOUND = 1, /* *res holds a valid, lower-case name; *by the sniffer's name */
	SNIFF_NONE = 2,	 /* no sniffer can name the flow: route it without a name */
};

/* Which sniffers claim a flow (caps, ports). Returns true when at least one does; st is filled
 * either way. */
bool sniff_begin(const struct sniff_set *s, uint8_t l4proto, uint16_t dport,
		 struct sniff_state *st);

/* Offer everything received so far: TCP one part (all bytes), UDP one part per datagram.
 * `total` is the byte count of all parts; once it reaches st->max_bytes a MORE answer counts as
 * NOT_MINE (the sniffer will never get more). */
enum sniff_verdict sniff_offer(const struct sniff_set *s, struct sniff_state *st,
			       const struct xp_bytes *parts, unsigned count,
			       struct xp_sniff_result *res, const char **by);

/* Lower-case `name` in place and check it is a plausible host name (1..253 characters of
 * [a-z0-9._-], no empty label, one trailing dot dropped). false: refuse it. */
bool sniff_name_ok(char *name, size_t cap);

/* ---- the live set (daemon) ---------------------------------------------------------------- */

struct cfg;
struct plug_registry;
struct rule_list;
struct outbound;

/* Load and instantiate the [sniff] plugins of `cfg` (each plugin one instance, options from
 * [sniff.NAME] if present, NAME as listed in plugins = or the plugin's own name; the core's key
 * `ports` there, the rest the plugin's option table) and make them the live set; an unchanged
 * list (options included) keeps the old set. A [sniff.NAME] that names no listed sniffer is an
 * error.
 * With check_only nothing is created (xproxyd -t). 0 or -errno, "file:line: ..." lines appended
 * to *errors. Without [sniff] (or with an empty list) sniffing is off. Main thread. */
int sniff_apply(const struct cfg *cfg, struct plug_registry *reg, const struct xp_host *host,
		bool check_only, char **errors);
void sniff_clear(void); /* shutdown: release the live set (flows still holding it keep it) */
bool sniff_enabled(void);

/* Where the daemon's rules and outbounds come from (main thread, before the workers start).
 * `rules` returns the live [route] list (valid for the call, on the worker); `direct` a
 * referenced outbound for DIRECT verdicts (the flow is in userspace already). */
struct sniff_env {
	const struct rule_list *(*rules)(void *ctx);
	struct outbound *(*direct)(void *ctx);
	/* names_learn_sniffed(), or NULL (no cache) */
	int (*learn)(const char *name, const union xp_sockaddr *addr, uint16_t port,
		     uint8_t l4proto, uint32_t ttl_ms);
	uint32_t cache_ttl_ms;
	/* names_lookup(): the DNS name of a destination, for flows no sniffer named (an
	 * INSPECT verdict names.c wrote because a rule also needs the port), or NULL */
	int (*lookup)(const union xp_sockaddr *addr, uint8_t l4proto, char *buf, size_t len);
	void *ctx;
};
void sniff_set_env(const struct sniff_env *env);

/* Install conn.c's and udp.c's hooks (main thread, before the workers start). */
void sniff_install_hooks(void);

struct sniff_stats {
	uint64_t flows;	    /* INSPECT flows seen */
	uint64_t unclaimed; /* no sniffer claims the port: routed at once */
	uint64_t found;	    /* named */
	uint64_t none;	    /* every sniffer said NOT_MINE (or max bytes reached) */
	uint64_t timeouts;  /* routed after the timeout (or the client's EOF) without a name */
	uint64_t cached;    /* names written through names_learn_sniffed */
	uint64_t refused;   /* sniffer errors and implausible names */
};
void sniff_stats_get(struct sniff_stats *out);

#endif
