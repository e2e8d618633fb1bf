/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * hostname - the one rule for a name an outbound puts on the wire verbatim (a SOCKS5 or
 * shadowsocks/trojan address, an HTTP CONNECT target and Host header, an SNI): 1..255 bytes of
 * [A-Za-z0-9._-]. A sniffed or DNS-learned name is whatever a client sent, so anything else
 * (a colon, a slash, CR/LF, a byte above 0x7f) is refused and the caller sends the address
 * instead: nothing can be smuggled into a request line or a header. Header-only: the socks5,
 * http, shadowsocks and trojan codecs (and their tests and fuzz targets) all use it.
 */
#ifndef XP_OUTBOUND_COMMON_HOSTNAME_H
#define XP_OUTBOUND_COMMON_HOSTNAME_H

#include <stddef.h>

/* The name's length (1..255), or 0 when it is NULL, empty, longer or has another byte. */
static inline size_t xpo_name_len(const char *name)
{
	size_t n = 0;

	if (!name)
		return 0;
	for (; name[n]; n++) {
		char c = name[n];

		if (n == 255 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				  (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
			return 0;
	}
	return n;
}

#endif
