/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * http_proto - the CONNECT request and the proxy's response head. See http_proto.h.
 *
 * The response parser is strict where leniency would hide a lie: the head must end within a
 * limit, the status line must be exactly "HTTP/1.x NNN[ reason]", every header line must be a
 * token, a colon and a value without control characters, and a 2xx must not announce a body
 * (RFC 9110 9.3.6: after a 2xx to CONNECT the connection is the tunnel, so a body would be
 * relayed to the client as if the target had sent it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../common/hostname.h"
#include "http_proto.h"

size_t hp_base64(char *out, const void *in, size_t len)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *p = in;
	size_t o = 0, i;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
		out[o++] = tab[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
		out[o++] = '=';
	}
	out[o] = 0;
	return o;
}

ssize_t hp_connect_request(char *buf, size_t cap, const union xp_sockaddr *addr, const char *domain,
			   const char *user, const char *pass)
{
	char host[INET6_ADDRSTRLEN + 2], cred[512], b64[700];
	unsigned port;
	int n, m = 0;

	if (addr->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &addr->in.sin_addr, host, sizeof(host));
		port = ntohs(addr->in.sin_port);
	} else if (addr->sa.sa_family == AF_INET6) {
		host[0] = '[';
		inet_ntop(AF_INET6, &addr->in6.sin6_addr, host + 1, sizeof(host) - 2);
		strcat(host, "]");
		port = ntohs(addr->in6.sin6_port);
	} else {
		return -EAFNOSUPPORT;
	}
	if (xpo_name_len(domain)) {
		/* a plain name of at most 255 bytes (hostname.h); host[] is for addresses only */
		n = snprintf(buf, cap, "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n", domain, port,
			     domain, port);
	} else {
		n = snprintf(buf, cap, "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n", host, port,
			     host, port);
	}
	if (n < 0 || (size_t)n >= cap)
		return -ENOBUFS;
	if (user) {
		size_t ul = strlen(user), pl = pass ? strlen(pass) : 0;

		/* RFC 7617: the user-id cannot contain a colon; both are bounded so the header is
		 */
		if (!ul || ul > 255 || pl > 255 || memchr(user, ':', ul))
			return -EINVAL;
		memcpy(cred, user, ul);
		cred[ul] = ':';
		if (pl)
			memcpy(cred + ul + 1, pass, pl);
		hp_base64(b64, cred, ul + 1 + pl);
		memset(cred, 0, sizeof(cred));
		m = snprintf(buf + n, cap - (size_t)n, "Proxy-Authorization: Basic %s\r\n", b64);
		memset(b64, 0, sizeof(b64));
		if (m < 0 || (size_t)m >= cap - (size_t)n)
			return -ENOBUFS;
	}
	if ((size_t)(n + m) + 2 >= cap)
		return -ENOBUFS;
	memcpy(buf + n + m, "\r\n", 3);
	return n + m + 2;
}

size_t hp_head_end(const char *b, size_t n, size_t from)
{
	for (size_t i = from; i + 4 <= n; i++)
		if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n')
			return i + 4;
	return 0;
}

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Header value bytes: visible ASCII, space, tab, and obs-text (>= 0x80). */
static bool is_vchar(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool value_is_zero(const char *v, size_t len)
{
	size_t i = 0;

	while (i < len && (v[i] == ' ' || v[i] == '\t'))
		i++;
	while (len > i && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	if (i == len)
		return false;
	for (; i < len; i++)
		if (v[i] != '0')
			return false;
	return true;
}

ssize_t hp_parse_response(const char *b, size_t n, size_t max, struct hp_response *r,
			  const char **why)
{
	size_t end, i, lines = 0;
	size_t pre = n < 5 ? n : 5;

	/* Garbage is refused as soon as it shows, not after waiting for a CRLFCRLF that a
	 * non-HTTP server may never send. */
	if (memcmp(b, "HTTP/", pre)) {
		*why = "not an HTTP response";
		return -EPROTO;
	}
	end = hp_head_end(b, n < max ? n : max, 0);
	if (!end) {
		if (n >= max) {
			*why = "response head too long (no end of headers within the limit)";
			return -EMSGSIZE;
		}
		return 0;
	}
	/* Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF */
	if (end < 14 + 2 || memcmp(b, "HTTP/1.", 7) || b[7] < '0' || b[7] > '9' || b[8] != ' ' ||
	    b[9] < '1' || b[9] > '5' || b[10] < '0' || b[10] > '9' || b[11] < '0' || b[11] > '9' ||
	    (b[12] != ' ' && b[12] != '\r')) {
		*why = "bad status line";
		return -EPROTO;
	}
	r->status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
	r->reason[0] = 0;
	i = 12;
	if (b[i] == ' ') {
		size_t rl = 0;

		for (i++; b[i] != '\r'; i++) {
			if (!is_vchar((unsigned char)b[i]) || (unsigned char)b[i] >= 0x80) {
				*why = "bad status line";
				return -EPROTO;
			}
			if (rl + 1 < sizeof(r->reason))
				r->reason[rl++] = b[i];
		}
		r->reason[rl] = 0;
	}
	if (b[i + 1] != '\n') {
		*why = "bad status line";
		return -EPROTO;
	}
	i += 2;

	/* Header lines until the empty line that ends the head (at end - 2). */
	while (i < end - 2) {
		size_t name = i, colon, vend;
		bool body_header = false;

		if (++lines > HP_MAX_HEADER_LINES) {
			*why = "too many header lines in the response";
			return -EMSGSIZE;
		}
		while (i < end && is_tchar(b[i]))
			i++;
		if (i == name || b[i] != ':') {
			/* includes obs-fold (a line starting with SP/HT), which RFC 9112 lets a
			 * client refuse, and a lone LF or CR */
			*why = "bad header line in the response";
			return -EPROTO;
		}
		colon = i;
		for (i++; b[i] != '\r'; i++) {
			if (!is_vchar((unsigned char)b[i])) {
				*why = "control character in a response header";
				return -EPROTO;
			}
		}
		if (b[i + 1] != '\n') {
			*why = "bad line ending in the response";
			return -EPROTO;
		}
		vend = i;
		i += 2;
		if (r->status / 100 != 2)
			continue;
		if (colon - name == 17 && !strncasecmp(b + name, "transfer-encoding", 17))
			body_header = true;
		if (colon - name == 14 && !strncasecmp(b + name, "content-length", 14) &&
		    !value_is_zero(b + colon + 1, vend - colon - 1))
			body_header = true;
		if (body_header) {
			*why = "2xx response to CONNECT announces a body";
			return -EPROTO;
		}
	}
	return (ssize_t)end;
}
