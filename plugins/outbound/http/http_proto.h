/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * http_proto - the HTTP/1.1 CONNECT request and the proxy's response head, without I/O, so the
 * unit tests and the fuzzer drive exactly the code the plugin runs.
 */
#ifndef XP_HTTP_PROTO_H
#define XP_HTTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xproxy/plugin.h>

#define HP_MAX_REQUEST	    2048 /* CONNECT line (a 255-byte name), Host, Basic credentials */
#define HP_MAX_HEAD	    8192 /* the default limit on the response head (status + headers) */
#define HP_MAX_HEADER_LINES 64

/* Standard base64 (RFC 4648) of `len` bytes; `out` holds 4 * ceil(len / 3) + 1. Returns the
 * length written, without the terminating NUL. */
size_t hp_base64(char *out, const void *in, size_t len);

/* "CONNECT host:port HTTP/1.1" with Host and, when `user` is set, Proxy-Authorization: Basic.
 * `domain` is the target when it is a plain host name (../common/hostname.h), else the
 * address is: a sniffed name cannot inject anything into the request line or a header.
 * Returns the length, -ENOBUFS, -EINVAL (bad credentials) or -EAFNOSUPPORT. */
ssize_t hp_connect_request(char *buf, size_t cap, const union xp_sockaddr *addr, const char *domain,
			   const char *user, const char *pass);

struct hp_response {
	int status;	 /* 100..599 */
	char reason[64]; /* the reason phrase, truncated; printable ASCII only */
};

/* Where the head ends: the offset just past the first CRLFCRLF in b[0..n), or 0. `from` is
 * where to start looking (the caller already searched before it). */
size_t hp_head_end(const char *b, size_t n, size_t from);

/* The response head in b[0..n), at most `max` bytes long. Returns:
 *   > 0  the head's length (status line, headers and the empty line); *r is filled. Bytes
 *        after it are tunnel data;
 *   0    incomplete: read more (never more than `max` in all);
 *   < 0  -EPROTO (garbage, a bad status line or header, a 2xx that announces a body) or
 *        -EMSGSIZE (no end of head within `max` bytes, or too many header lines), with *why a
 *        constant sentence for the log.
 * A status other than 2xx is still a complete head: the caller decides what it means. */
ssize_t hp_parse_response(const char *b, size_t n, size_t max, struct hp_response *r,
			  const char **why);

#endif /* XP_HTTP_PROTO_H */
