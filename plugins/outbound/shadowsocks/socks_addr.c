/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * socks_addr - the SOCKS5 address form (RFC 1928 section 4: ATYP, address, port) that both
 * shadowsocks and trojan put in front of a target or a datagram.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "../common/hostname.h"
#include "socks_addr.h"

ssize_t ss_addr_encode(const union xp_sockaddr *addr, const char *domain, uint8_t *out)
{
	/* a name the server can resolve, else the address (see hostname.h) */
	size_t n = xpo_name_len(domain);

	if (n) {
		out[0] = 3;
		out[1] = (uint8_t)n;
		memcpy(out + 2, domain, n);
		/* the port is the same field in both families */
		memcpy(out + 2 + n, &addr->in.sin_port, 2);
		return (ssize_t)(4 + n);
	}
	switch (addr->sa.sa_family) {
	case AF_INET:
		out[0] = 1;
		memcpy(out + 1, &addr->in.sin_addr, 4);
		memcpy(out + 5, &addr->in.sin_port, 2);
		return 7;
	case AF_INET6:
		out[0] = 4;
		memcpy(out + 1, &addr->in6.sin6_addr, 16);
		memcpy(out + 17, &addr->in6.sin6_port, 2);
		return 19;
	}
	return -EINVAL;
}

ssize_t ss_addr_decode(const uint8_t *in, size_t len, union xp_sockaddr *addr, char *name)
{
	size_t n;

	if (len < 1)
		return -EAGAIN;
	memset(addr, 0, sizeof(*addr));
	switch (in[0]) {
	case 1:
		if (len < 7)
			return -EAGAIN;
		addr->in.sin_family = AF_INET;
		memcpy(&addr->in.sin_addr, in + 1, 4);
		memcpy(&addr->in.sin_port, in + 5, 2);
		return 7;
	case 4:
		if (len < 19)
			return -EAGAIN;
		addr->in6.sin6_family = AF_INET6;
		memcpy(&addr->in6.sin6_addr, in + 1, 16);
		memcpy(&addr->in6.sin6_port, in + 17, 2);
		return 19;
	case 3:
		if (len < 2)
			return -EAGAIN;
		n = in[1];
		if (!n)
			return -EINVAL;
		if (len < 4 + n)
			return -EAGAIN;
		if (memchr(in + 2, '\0', n))
			return -EINVAL; /* a NUL would cut the name short */
		if (name) {
			memcpy(name, in + 2, n);
			name[n] = '\0';
		}
		addr->sa.sa_family = AF_UNSPEC;
		memcpy(&addr->in.sin_port, in + 2 + n, 2);
		return (ssize_t)(4 + n);
	}
	return -EINVAL;
}
