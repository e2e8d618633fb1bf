/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * trojan_proto - the trojan protocol's framing, without I/O or TLS (unit tests and the fuzzer
 * link it alone).
 *
 * Request, sent first inside the TLS connection:
 *   hex(SHA224(password)) CRLF CMD ATYP DST.ADDR DST.PORT CRLF [payload...]
 * CMD 1 = CONNECT (then the stream is the target's), 3 = UDP ASSOCIATE (then the stream
 * carries datagrams, each framed as)
 *   ATYP DST.ADDR DST.PORT LENGTH(2, big-endian) CRLF PAYLOAD
 */
#ifndef TROJAN_PROTO_H
#define TROJAN_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xproxy/plugin.h>

#include "../shadowsocks/socks_addr.h"

#define TROJAN_HASH_LEN	   56 /* hex SHA224 */
#define TROJAN_CMD_CONNECT 1
#define TROJAN_CMD_UDP	   3
#define TROJAN_REQ_MAX	   (TROJAN_HASH_LEN + 2 + 1 + SOCKS_ADDR_MAX + 2)
/* the largest payload one UDP frame can carry (its length field) */
#define TROJAN_UDP_MAX	   65535
#define TROJAN_UDP_HDR_MAX (SOCKS_ADDR_MAX + 2 + 2)

/* hex(SHA224(password)) into out (56 characters, no NUL). 0 or -errno. */
int trojan_password_hash(const char *password, char out[TROJAN_HASH_LEN]);

/* The request header (without payload). Returns its length (<= TROJAN_REQ_MAX) or -EINVAL. */
ssize_t trojan_request(const char hash[TROJAN_HASH_LEN], int cmd, const union xp_sockaddr *addr,
		       const char *domain, uint8_t *out);

/* A UDP frame header for `len` payload bytes; the payload follows it. Returns the header
 * length (<= TROJAN_UDP_HDR_MAX) or -EINVAL (bad address) / -EMSGSIZE (len too big). */
ssize_t trojan_udp_header(const union xp_sockaddr *addr, const char *domain, size_t len,
			  uint8_t *out);

/* Parse one UDP frame at in[0..len). Returns the frame's total length with *from (family
 * AF_UNSPEC and the port for a domain, whose name goes to `name` when not NULL), *payload and
 * *plen set; -EAGAIN when the frame is incomplete; -EINVAL when it is malformed (unknown
 * address type, empty name, missing CRLF). */
ssize_t trojan_udp_parse(const uint8_t *in, size_t len, union xp_sockaddr *from, char *name,
			 const uint8_t **payload, size_t *plen);

#endif /* TROJAN_PROTO_H */
