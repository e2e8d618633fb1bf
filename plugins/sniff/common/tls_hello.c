/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * tls_hello - parse a TLS ClientHello Handshake message (RFC 8446 4.1.2, RFC 5246 7.4.1.2) far
 * enough to route it: server_name (RFC 6066 3), ALPN (RFC 7301 3.1) and whether
 * encrypted_client_hello is present.
 *
 * Two ends bound every read: `avail` (the bytes we were given) and the end each enclosing
 * structure declares (message, extensions block, one extension, one list). A field that runs
 * past a declared end is malformed (NOT_MINE); one that runs only past `avail` means the
 * message is still arriving (MORE). So a prefix of a well-formed hello is always MORE, and
 * garbage is refused as soon as the bytes that prove it are in.
 *
 * The whole message must be present before FOUND: a later extension may still be malformed
 * or duplicate the server_name, and routing on a name the server then rejects would be wrong.
 */
#include <string.h>

#include "tls_hello.h"

#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_ECH 0xfe0d /* draft-ietf-tls-esni: encrypted_client_hello */
#define SNI_HOST_NAME 0

/* version(2) random(32) session_id(1+0) cipher_suites(2+2) compression_methods(1+1) */
#define HELLO_MIN_BODY 41

struct cur {
	const uint8_t *p;
	size_t pos;
	size_t avail; /* bytes readable in p */
};

/* RFC 8701: GREASE values are 0x?A?A with both bytes equal (types, versions, suites...). */
static int is_grease16(unsigned v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

static unsigned rd16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/*
 * Can n bytes be read at c->pos without crossing `end` (a declared end)? Returns -1 when they
 * cross it (malformed), 0 when they are not all here yet, 1 when they are.
 */
static int have(const struct cur *c, size_t n, size_t end)
{
	if (c->pos > end || n > end - c->pos)
		return -1;
	if (c->pos > c->avail || n > c->avail - c->pos)
		return 0;
	return 1;
}

/*
 * A DNS host name as RFC 6066 wants it: LDH labels (and '_', seen in the wild), 1..63 bytes
 * each, no empty label; one trailing dot is tolerated and dropped. Lower-cased into out.
 * 0: a name; 1: well-formed but an IPv4 literal (RFC 6066 forbids them; no top-level domain
 * is all digits), which names nothing, so out stays ""; -1: malformed.
 */
static int copy_host_name(const uint8_t *s, size_t n, char out[256])
{
	size_t label = 0;
	int digits = 1;

	if (n && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return -1;
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = s[i];

		if (ch == '.') {
			if (label == 0)
				return -1;
			label = 0;
			digits = 1;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
			   ch == '_') {
			label++;
			if (ch < '0' || ch > '9')
				digits = 0;
		} else if (ch >= 'A' && ch <= 'Z') {
			digits = 0;
			ch = ch - 'A' + 'a';
			label++;
		} else {
			return -1;
		}
		if (label > 63)
			return -1;
		out[i] = (char)ch;
	}
	if (digits) {
		out[0] = '\0';
		return 1;
	}
	out[n] = '\0';
	return 0;
}

/* server_name extension body (exactly `n` bytes, all present). 0 or -1 (malformed). */
static int parse_sni(const uint8_t *d, size_t n, struct tls_hello *out)
{
	size_t pos = 2, list;
	int got = 0;

	if (n < 2)
		return -1;
	list = rd16(d);
	if (list != n - 2 || list == 0)
		return -1;
	while (pos < n) {
		unsigned type;
		size_t len;

		if (n - pos < 3)
			return -1;
		type = d[pos];
		len = rd16(d + pos + 1);
		pos += 3;
		if (len > n - pos)
			return -1;
		if (type == SNI_HOST_NAME && !got) {
			if (len == 0 || len > 255 || memchr(d + pos, 0, len) ||
			    copy_host_name(d + pos, len, out->sni) < 0)
				return -1;
			got = 1;
		}
		pos += len;
	}
	return 0;
}

/* Printable ASCII without space: what a C string result can carry unambiguously. */
static int alpn_printable(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return 0;
	return 1;
}

/* ALPN extension body. The first protocol that is neither GREASE nor unrepresentable (too long
 * for alpn[], or bytes a string cannot hold) is kept; the list must be well-formed throughout. */
static int parse_alpn(const uint8_t *d, size_t n, struct tls_hello *out)
{
	size_t pos = 2, list;
	int got = 0;

	if (n < 2)
		return -1;
	list = rd16(d);
	if (list != n - 2 || list == 0)
		return -1;
	while (pos < n) {
		size_t len = d[pos++];

		if (len == 0 || len > n - pos)
			return -1;
		if (!got && !(len == 2 && is_grease16(rd16(d + pos))) &&
		    len < sizeof(out->alpn) && alpn_printable(d + pos, len)) {
			memcpy(out->alpn, d + pos, len);
			out->alpn[len] = '\0';
			got = 1;
		}
		pos += len;
	}
	return 0;
}

enum tls_hello_status tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *out)
{
	struct cur c = { .p = buf, .pos = 0, .avail = len };
	size_t body, end, ext_end, n;
	int seen_sni = 0, seen_alpn = 0, r;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return TLS_HELLO_MORE;
	if (buf[0] != HS_CLIENT_HELLO)
		return TLS_HELLO_NOT_MINE;
	if (len < 4)
		return TLS_HELLO_MORE;
	body = (size_t)buf[1] << 16 | rd16(buf + 2);
	if (body < HELLO_MIN_BODY || body > TLS_HELLO_MAX - 4)
		return TLS_HELLO_NOT_MINE;
	end = 4 + body;
	if (c.avail > end)
		c.avail = end; /* bytes after the message are not ours to read */
	c.pos = 4;

	/* legacy_version: SSL 3.0 .. TLS 1.3 numbering (1.3 clients send 0x0303) */
	if ((r = have(&c, 2, end)) <= 0)
		return r ? TLS_HELLO_NOT_MINE : TLS_HELLO_MORE;
	out->legacy_version = (uint16_t)rd16(buf + c.pos);
	if (buf[c.pos] != 3 || buf[c.pos + 1] > 4)
		return TLS_HELLO_NOT_MINE;
	c.pos += 2 + 32; /* random: any bytes */

	/* session_id <0..32> */
	if ((r = have(&c, 1, end)) <= 0)
		return r ? TLS_HELLO_NOT_MINE : TLS_HELLO_MORE;
	n = buf[c.pos];
	if (n > 32)
		return TLS_HELLO_NOT_MINE;
	c.pos += 1 + n;

	/* cipher_suites <2..2^16-2>, an even count of bytes */
	if ((r = have(&c, 2, end)) <= 0)
		return r ? TLS_HELLO_NOT_MINE : TLS_HELLO_MORE;
	n = rd16(buf + c.pos);
	if (n < 2 || n % 2)
		return TLS_HELLO_NOT_MINE;
	c.pos += 2 + n;

	/* compression_methods <1..2^8-1> */
	if ((r = have(&c, 1, end)) <= 0)
		return r ? TLS_HELLO_NOT_MINE : TLS_HELLO_MORE;
	n = buf[c.pos];
	if (n < 1)
		return TLS_HELLO_NOT_MINE;
	c.pos += 1 + n;
	if (c.pos > end)
		return TLS_HELLO_NOT_MINE;
	if (c.pos == end) {
		/* a pre-extension hello (SSL 3.0 style): well-formed, nothing to route on */
		if (c.avail < end)
			return TLS_HELLO_MORE;
		out->msg_len = end;
		return TLS_HELLO_FOUND;
	}

	/* extensions <8..2^16-1>: they fill the rest of the message exactly */
	if ((r = have(&c, 2, end)) <= 0)
		return r ? TLS_HELLO_NOT_MINE : TLS_HELLO_MORE;
	n = rd16(buf + c.pos);
	c.pos += 2;
	if (n != end - c.pos)
		return TLS_HELLO_NOT_MINE;
	ext_end = end;

	while (c.pos < ext_end) {
		unsigned type;
		size_t elen;

		if ((r = have(&c, 4, ext_end)) <= 0)
			return r ? TLS_HELLO_NOT_MINE : TLS_HELLO_MORE;
		type = rd16(buf + c.pos);
		elen = rd16(buf + c.pos + 2);
		c.pos += 4;
		if ((r = have(&c, elen, ext_end)) <= 0)
			return r ? TLS_HELLO_NOT_MINE : TLS_HELLO_MORE;
		/*
		 * A type may appear once (RFC 8446 4.2). Duplicates of the ones we read are
		 * refused: a second server_name the server might honour instead of ours would
		 * let a client steer routing. GREASE types carry nothing and are skipped.
		 */
		if (type == EXT_SERVER_NAME) {
			if (seen_sni++ || parse_sni(buf + c.pos, elen, out))
				return TLS_HELLO_NOT_MINE;
		} else if (type == EXT_ALPN) {
			if (seen_alpn++ || parse_alpn(buf + c.pos, elen, out))
				return TLS_HELLO_NOT_MINE;
		} else if (type == EXT_ECH) {
			if (out->has_ech)
				return TLS_HELLO_NOT_MINE;
			out->has_ech = 1;
		}
		c.pos += elen;
	}
	out->msg_len = end;
	return TLS_HELLO_FOUND;
}
