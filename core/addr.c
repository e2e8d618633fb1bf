/* SPDX-License-Identifier: GPL-2.0-only */
/* addr.c - see addr.h. */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>

#include "addr.h"

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int addr16_from(uint8_t out[16], uint16_t *port, const union xp_sockaddr *sa)
{
	switch (sa->sa.sa_family) {
	case AF_INET:
		memcpy(out, v4mapped_prefix, 12);
		memcpy(out + 12, &sa->in.sin_addr, 4);
		if (port)
			*port = ntohs(sa->in.sin_port);
		return 0;
	case AF_INET6:
		memcpy(out, &sa->in6.sin6_addr, 16);
		if (port)
			*port = ntohs(sa->in6.sin6_port);
		return 0;
	default:
		return -EAFNOSUPPORT;
	}
}

void addr16_to_sockaddr(union xp_sockaddr *sa, const uint8_t addr[16], uint16_t port)
{
	memset(sa, 0, sizeof(*sa));
	if (!memcmp(addr, v4mapped_prefix, 12)) {
		sa->in.sin_family = AF_INET;
		memcpy(&sa->in.sin_addr, addr + 12, 4);
		sa->in.sin_port = htons(port);
	} else {
		sa->in6.sin6_family = AF_INET6;
		memcpy(&sa->in6.sin6_addr, addr, 16);
		sa->in6.sin6_port = htons(port);
	}
}

void addr_unmap_v4(union xp_sockaddr *a)
{
	struct sockaddr_in6 in6 = a->in6;

	if (a->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr))
		return;
	memset(a, 0, sizeof(*a));
	a->in.sin_family = AF_INET;
	a->in.sin_port = in6.sin6_port;
	memcpy(&a->in.sin_addr, &in6.sin6_addr.s6_addr[12], 4);
}
