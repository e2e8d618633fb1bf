/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * upstream.h - the dns plugin's upstream servers: spec parsing, per-domain selection, and one
 * exchange ("xfer") of a query with one upstream over UDP, TCP, TLS (DoT) or HTTPS (DoH,
 * HTTP/2 with an HTTP/1.1 fallback). Stream exchanges share persistent connections, pooled
 * per loop and per upstream (see upstream.c).
 */
#ifndef XP_DNS_UPSTREAM_H
#define XP_DNS_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <xproxy/plugin.h>

#include "msg.h"

enum ups_kind {
	UPS_UDP = 0,
	UPS_TCP = 1,
	UPS_TLS = 2,
	UPS_HTTPS = 3,
};

#define UPS_TAG_MAX 32

struct upstream {
	char tag[UPS_TAG_MAX]; /* "" for the default set */
	enum ups_kind kind;
	union xp_sockaddr addr;
	char host[64];	  /* the address as text, for logs and :authority */
	char name[256];	  /* TLS: SNI and the name the certificate must carry ("" = the address) */
	char path[256];	  /* HTTPS: request path */
	char via[64];	  /* outbound to dial through ("" = a plain marked socket) */
	char spec[600];	  /* as the user wrote it, for logs */
};

/* Parse "[TAG=]udp|tcp|tls|https://ADDR[:PORT][/PATH][#NAME][ via OUTBOUND]". ADDR is an IP
 * literal (IPv6 in brackets). 0, or -EINVAL with a message in err. */
int upstream_parse(const char *text, struct upstream *u, char *err, size_t errlen);

struct ups_rule {
	uint8_t exact;	/* "domain:" instead of "domain-suffix:" */
	char domain[256]; /* lower-case text, no final dot */
	char tag[UPS_TAG_MAX];
};

/* Parse "domain-suffix:A[|B...], TAG" or "domain:A[|B...], TAG" appending one rule per domain
 * to *rules (realloc'd). 0, or -EINVAL with a message in err, -ENOMEM. */
int ups_rule_parse(const char *text, struct ups_rule **rules, size_t *n, char *err,
		   size_t errlen);

/* The tag of the first rule matching `name` (lower-case text without the final dot), or "". */
const char *ups_rule_select(const struct ups_rule *rules, size_t n, const char *name);

struct ups_pools;

/* What an exchange needs from the instance; immutable once built (the pools have their own
 * lock), shared by every loop. */
struct ups_ctx {
	const struct xp_host *host;
	xp_handle_t *self;
	void *tls_ctx; /* SSL_CTX *, NULL when no upstream needs TLS */
	xp_counter_t *malformed, *mismatched;
	xp_counter_t *conns;   /* stream connections opened (NULL: not counted) */
	xp_counter_t *retries; /* exchanges moved to another connection after a server close */
	xp_counter_t *resumed; /* TLS handshakes that resumed an earlier session (NULL: not
				* counted) */
	uint64_t idle_ms;      /* close a pooled connection idle this long; 0: one per query */
	struct ups_pools *pools;
};

/* The connection pools of one instance (ctx->pools). 0 or -ENOMEM. */
int ups_pools_new(struct ups_ctx *ctx);
/* Close every pooled connection, each on its own loop (posted there when called from another
 * thread). Call once no exchange is left, before the instance's memory goes. */
void ups_pools_free(struct ups_ctx *ctx);

/* Split the first complete message off a stream of 2-byte length-prefixed DNS messages (RFC
 * 1035 4.2.2): the bytes it takes (2 + *mlen), 0 when more are needed. */
size_t ups_frame_next(const uint8_t *buf, size_t len, size_t *mlen);

/* Make the shared TLS context: verify against ca_file or, when NULL, the system store. NULL
 * with a message in err. */
void *ups_tls_ctx_new(const char *ca_file, char *err, size_t errlen);
void ups_tls_ctx_free(void *ctx);

struct xfer;
/* err < 0: the exchange failed; else `ans` is a validated answer whose id and question match
 * the query. Called once, never from inside xfer_start; the xfer must then be freed. */
typedef void (*xfer_done_fn)(void *arg, struct xfer *x, int err, const uint8_t *ans,
			     size_t len);

/* Send `msg` (whose id is `id`, already written in it; question `q`) to `u` on `loop`; over TCP
 * instead of UDP when `force_tcp`. On a shared connection the id may be replaced by another
 * random one (two requests in flight on one connection never share an id); the answer handed
 * to `done` carries the id that was sent. NULL with errno when it cannot even start (EBUSY:
 * every connection the upstream may have on this loop is full). */
struct xfer *xfer_start(const struct ups_ctx *ctx, xp_loop_t *loop, const struct upstream *u,
			int force_tcp, const uint8_t *msg, size_t len, const struct dns_question *q,
			xfer_done_fn done, void *arg);
/* Stop and release (safe at any time, also after done); NULL is a no-op. */
void xfer_free(struct xfer *x);

#endif
