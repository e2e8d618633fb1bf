/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * socks5_proto - SOCKS5 messages, built and parsed without I/O. See socks5_proto.h.
 *
 * Every length a parser reads comes from the peer, so each one is checked against what has
 * arrived before it is used, and every field with a fixed set of values is checked against it.
 */
#include <errno.h>
#include <string.h>

#include "../common/hostname.h"
#include "socks5_proto.h"

ssize_t s5_greeting(uint8_t *buf, size_t cap, bool userpass)
{
	if (cap < 3)
		return -ENOBUFS;
	buf[0] = S5_VERSION;
	buf[1] = 1;
	buf[2] = userpass ? S5_METHOD_USERPASS : S5_METHOD_NONE;
	return 3;
}

ssize_t s5_parse_method(const uint8_t *b, size_t n, bool userpass, size_t *need, const char **why)
{
	*need = 2;
	if (n >= 1 && b[0] != S5_VERSION) {
		*why = "not a SOCKS5 server (wrong version in the method reply)";
		return -EPROTO;
	}
	if (n < 2)
		return 0;
	if (b[1] == S5_METHOD_NOACCEPT) {
		*why = userpass ? "server does not accept username/password authentication"
				: "server requires authentication (set username and password)";
		return -EACCES;
	}
	if (b[1] != (userpass ? S5_METHOD_USERPASS : S5_METHOD_NONE)) {
		*why = "server chose an authentication method we did not offer";
		return -EPROTO;
	}
	return 2;
}

ssize_t s5_auth_request(uint8_t *buf, size_t cap, const char *user, const char *pass)
{
	size_t ul = user ? strlen(user) : 0, pl = pass ? strlen(pass) : 0;

	if (ul < 1 || ul > 255 || pl < 1 || pl > 255)
		return -EINVAL;
	if (cap < 3 + ul + pl)
		return -ENOBUFS;
	buf[0] = S5_AUTH_VERSION;
	buf[1] = (uint8_t)ul;
	memcpy(buf + 2, user, ul);
	buf[2 + ul] = (uint8_t)pl;
	memcpy(buf + 3 + ul, pass, pl);
	return (ssize_t)(3 + ul + pl);
}

ssize_t s5_parse_auth(const uint8_t *b, size_t n, size_t *need, const char **why)
{
	*need = 2;
	if (n >= 1 && b[0] != S5_AUTH_VERSION) {
		*why = "bad username/password reply (wrong sub-negotiation version)";
		return -EPROTO;
	}
	if (n < 2)
		return 0;
	if (b[1] != 0) {
		*why = "server rejected the username/password";
		return -EACCES;
	}
	return 2;
}

/* ATYP + address + port, shared by requests and UDP headers. */
static ssize_t put_addr(uint8_t *buf, size_t cap, const union xp_sockaddr *addr, const char *domain)
{
	/* a sniffed or DNS-learned name reaches the wire verbatim: only a plain host name */
	size_t len = xpo_name_len(domain);

	if (len) {
		if (cap < 1 + 1 + len + 2)
			return -ENOBUFS;
		buf[0] = S5_ATYP_DOMAIN;
		buf[1] = (uint8_t)len;
		memcpy(buf + 2, domain, len);
		/* the port is the original destination's whatever named the flow */
		memcpy(buf + 2 + len,
		       addr->sa.sa_family == AF_INET6 ? (const void *)&addr->in6.sin6_port
						      : (const void *)&addr->in.sin_port,
		       2);
		return (ssize_t)(1 + 1 + len + 2);
	}
	if (addr->sa.sa_family == AF_INET) {
		if (cap < 1 + 4 + 2)
			return -ENOBUFS;
		buf[0] = S5_ATYP_IPV4;
		memcpy(buf + 1, &addr->in.sin_addr, 4);
		memcpy(buf + 5, &addr->in.sin_port, 2);
		return 7;
	}
	if (addr->sa.sa_family == AF_INET6) {
		if (cap < 1 + 16 + 2)
			return -ENOBUFS;
		buf[0] = S5_ATYP_IPV6;
		memcpy(buf + 1, &addr->in6.sin6_addr, 16);
		memcpy(buf + 17, &addr->in6.sin6_port, 2);
		return 19;
	}
	return -EAFNOSUPPORT;
}

ssize_t s5_request(uint8_t *buf, size_t cap, uint8_t cmd, const union xp_sockaddr *addr,
		   const char *domain)
{
	ssize_t len;

	if (cap < 3)
		return -ENOBUFS;
	buf[0] = S5_VERSION;
	buf[1] = cmd;
	buf[2] = 0;
	len = put_addr(buf + 3, cap - 3, addr, domain);
	return len < 0 ? len : len + 3;
}

/* ATYP + address + port at b[0..]: the length they take (> 0), 0 when more is needed (*need
 * relative to b), or -EPROTO. Fills *sa (AF_UNSPEC for a domain). */
static ssize_t get_addr(const uint8_t *b, size_t n, union xp_sockaddr *sa, size_t *need,
			const char **why)
{
	size_t len;

	*need = 1;
	if (n < 1)
		return 0;
	switch (b[0]) {
	case S5_ATYP_IPV4:
		len = 1 + 4 + 2;
		break;
	case S5_ATYP_IPV6:
		len = 1 + 16 + 2;
		break;
	case S5_ATYP_DOMAIN:
		*need = 2;
		if (n < 2)
			return 0;
		if (b[1] == 0) {
			*why = "empty domain name in the server's address";
			return -EPROTO;
		}
		len = 1 + 1 + (size_t)b[1] + 2;
		break;
	default:
		*why = "unknown address type in the server's reply";
		return -EPROTO;
	}
	*need = len;
	if (n < len)
		return 0;
	memset(sa, 0, sizeof(*sa));
	if (b[0] == S5_ATYP_IPV4) {
		sa->in.sin_family = AF_INET;
		memcpy(&sa->in.sin_addr, b + 1, 4);
		memcpy(&sa->in.sin_port, b + 5, 2);
	} else if (b[0] == S5_ATYP_IPV6) {
		sa->in6.sin6_family = AF_INET6;
		memcpy(&sa->in6.sin6_addr, b + 1, 16);
		memcpy(&sa->in6.sin6_port, b + 17, 2);
	} else {
		sa->sa.sa_family = AF_UNSPEC;
	}
	return (ssize_t)len;
}

static const char *rep_text(uint8_t rep, int *err)
{
	static const struct {
		int err;
		const char *text;
	} reps[] = {
		[1] = {EIO, "server reports a general failure"},
		[2] = {EACCES, "connection not allowed by the server's ruleset"},
		[3] = {ENETUNREACH, "server reports network unreachable"},
		[4] = {EHOSTUNREACH, "server reports host unreachable"},
		[5] = {ECONNREFUSED, "server reports connection refused"},
		[6] = {ETIMEDOUT, "server reports TTL expired"},
		[7] = {EOPNOTSUPP, "server does not support the command"},
		[8] = {EAFNOSUPPORT, "server does not support the address type"},
	};

	if (rep >= 1 && rep <= 8) {
		*err = reps[rep].err;
		return reps[rep].text;
	}
	*err = EPROTO;
	return "server replied with an unknown error code";
}

ssize_t s5_parse_reply(const uint8_t *b, size_t n, union xp_sockaddr *bnd, size_t *need,
		       const char **why)
{
	ssize_t alen;
	size_t aneed;
	int err;

	*need = 4;
	if (n >= 1 && b[0] != S5_VERSION) {
		*why = "not a SOCKS5 reply (wrong version)";
		return -EPROTO;
	}
	/* A refusal is decided by REP alone: report it even if the rest never comes. */
	if (n >= 2 && b[1] != 0) {
		*why = rep_text(b[1], &err);
		return -err;
	}
	if (n >= 3 && b[2] != 0) {
		*why = "reserved byte set in the server's reply";
		return -EPROTO;
	}
	if (n < 4)
		return 0;
	alen = get_addr(b + 3, n - 3, bnd, &aneed, why);
	*need = 3 + aneed;
	if (alen <= 0)
		return alen;
	return 3 + alen;
}

ssize_t s5_udp_header(uint8_t *buf, size_t cap, const union xp_sockaddr *dst, const char *domain)
{
	ssize_t len;

	if (cap < 3)
		return -ENOBUFS;
	buf[0] = 0;
	buf[1] = 0;
	buf[2] = 0; /* FRAG: we never fragment */
	len = put_addr(buf + 3, cap - 3, dst, domain);
	return len < 0 ? len : len + 3;
}

ssize_t s5_udp_parse(const uint8_t *b, size_t n, union xp_sockaddr *from, uint8_t *frag,
		     const char **why)
{
	ssize_t alen;
	size_t need;

	if (n < 4) {
		*why = "datagram shorter than a SOCKS5 UDP header";
		return -EPROTO;
	}
	if (b[0] != 0 || b[1] != 0) {
		*why = "reserved bytes set in a SOCKS5 UDP header";
		return -EPROTO;
	}
	*frag = b[2];
	alen = get_addr(b + 3, n - 3, from, &need, why);
	if (alen == 0) {
		*why = "datagram shorter than its SOCKS5 UDP header";
		return -EPROTO;
	}
	return alen < 0 ? alen : 3 + alen;
}
