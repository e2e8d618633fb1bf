/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * socks5_proto - the SOCKS5 wire format (RFC 1928, RFC 1929), with no I/O, so the unit tests and
 * the fuzzer drive exactly the code the plugin runs.
 *
 * Builders write into a caller's buffer and return the length or -errno. Parsers look at the
 * bytes received so far and return:
 *   > 0   the message is complete and this many bytes belong to it;
 *   0     incomplete: *need is the total length known to be required so far (read exactly up to
 *         it, never beyond, so bytes the target sends after the reply stay in the socket);
 *   < 0   -errno, with *why set to a constant sentence for the log: -EPROTO for a malformed or
 *         unexpected message, -EACCES for an authentication refusal, and for a CONNECT or UDP
 *         ASSOCIATE reply with REP != 0 the errno closest to the server's reason.
 */
#ifndef XP_SOCKS5_PROTO_H
#define XP_SOCKS5_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xproxy/plugin.h>

#define S5_VERSION	     5
#define S5_AUTH_VERSION	     1 /* RFC 1929 sub-negotiation */
#define S5_METHOD_NONE	     0x00
#define S5_METHOD_USERPASS   0x02
#define S5_METHOD_NOACCEPT   0xff
#define S5_CMD_CONNECT	     1
#define S5_CMD_UDP_ASSOCIATE 3
#define S5_ATYP_IPV4	     1
#define S5_ATYP_DOMAIN	     3
#define S5_ATYP_IPV6	     4

/* The longest message either side sends in a TCP handshake: an auth request (1+1+255+1+255) */
#define S5_MAX_MSG 513
/* The longest UDP request header: RSV RSV FRAG ATYP LEN DOMAIN(255) PORT */
#define S5_UDP_MAX_HDR (4 + 1 + 255 + 2)

/* Greeting: offer user/password only when credentials are configured (a server choosing "no
 * authentication" while we hold credentials would still be accepted by a lax client; we offer
 * exactly one method so the choice is never ambiguous). */
ssize_t s5_greeting(uint8_t *buf, size_t cap, bool userpass);
/* The server's method choice: 2 bytes. -EACCES when it accepts none of ours. */
ssize_t s5_parse_method(const uint8_t *b, size_t n, bool userpass, size_t *need, const char **why);
/* RFC 1929 request; user and password 1..255 bytes (else -EINVAL). */
ssize_t s5_auth_request(uint8_t *buf, size_t cap, const char *user, const char *pass);
/* RFC 1929 status: 2 bytes. -EACCES when the credentials were refused. */
ssize_t s5_parse_auth(const uint8_t *b, size_t n, size_t *need, const char **why);
/* CONNECT or UDP ASSOCIATE request for `addr`, or for `domain` when it is a usable name
 * (1..255 bytes, printable, no spaces). -EAFNOSUPPORT for an address of another family. */
ssize_t s5_request(uint8_t *buf, size_t cap, uint8_t cmd, const union xp_sockaddr *addr,
		   const char *domain);
/* The reply to a request. On success *bnd is BND.ADDR:BND.PORT (sa_family AF_UNSPEC when the
 * server named a domain). */
ssize_t s5_parse_reply(const uint8_t *b, size_t n, union xp_sockaddr *bnd, size_t *need,
		       const char **why);

/* UDP request header (RFC 1928 section 7) in front of a datagram to `dst` (or `domain`). */
ssize_t s5_udp_header(uint8_t *buf, size_t cap, const union xp_sockaddr *dst, const char *domain);
/* A datagram from the relay: returns the header length (the payload follows), or -EPROTO.
 * *frag is FRAG; *from the source (AF_UNSPEC when the relay named a domain). */
ssize_t s5_udp_parse(const uint8_t *b, size_t n, union xp_sockaddr *from, uint8_t *frag,
		     const char **why);

#endif /* XP_SOCKS5_PROTO_H */
