/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * socks_addr - the SOCKS5 address form shared by the shadowsocks and trojan outbounds.
 */
#ifndef SOCKS_ADDR_H
#define SOCKS_ADDR_H

#include <stddef.h>
#include <sys/types.h>

#include <xproxy/plugin.h>

/* ATYP 3, length byte, 255-byte name, port */
#define SOCKS_ADDR_MAX (1 + 1 + 255 + 2)

/* SOCKS5 address form: ATYP 1 (IPv4), 3 (domain), 4 (IPv6), then the port (big-endian).
 * ss_addr_encode: the domain when it is 1-255 of [A-Za-z0-9._-], else addr. Returns the length written
 * (<= SOCKS_ADDR_MAX) or -EINVAL. */
ssize_t ss_addr_encode(const union xp_sockaddr *addr, const char *domain, uint8_t *out);
/* Parse an address header at in[0..len). Returns its length, -EAGAIN when truncated, -EINVAL
 * for an unknown type, an empty domain or one with a NUL byte. IPv4/IPv6 go to *addr; a domain is copied, NUL
 * terminated, into name (256 bytes, may be NULL) and *addr gets family AF_UNSPEC with the
 * port in in.sin_port. */
ssize_t ss_addr_decode(const uint8_t *in, size_t len, union xp_sockaddr *addr, char *name);

#endif /* SOCKS_ADDR_H */
