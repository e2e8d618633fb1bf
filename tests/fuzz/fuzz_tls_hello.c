/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_tls_hello - the ClientHello parser (plugins/sniff/common/tls_hello.c) and the tls
 * sniffer's record layer (plugins/sniff/tls/tls.c, called through its descriptor).
 *
 * An input starting with 22 (a handshake record) goes to the sniffer as a flow's first bytes
 * and its first record's payload to the parser. Any other input is a selector byte and a
 * Handshake message: the parser reads the message, and the sniffer reads it wrapped in records
 * of 1 + selector % 64 bytes; both must agree.
 *
 * Beyond "no crash, no over-read": FOUND names are clean (lower-case LDH, <= 253 bytes), ALPN
 * is printable; msg_len fits the input; and no strict prefix of a message that is not
 * NOT_MINE may be NOT_MINE or FOUND (MORE is a promise: "this may still become a hello").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xproxy/plugin.h>

#include "../../plugins/sniff/common/tls_hello.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__);             \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct xp_sniffer_ops *ops;

static void check_name(const char *s, size_t cap, int may_be_empty)
{
	size_t n = strnlen(s, cap);

	CHECK(n < cap);
	CHECK(n <= 253);
	CHECK(may_be_empty || n > 0);
	for (size_t i = 0; i < n; i++)
		CHECK((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '_' || s[i] == '.');
}

static void check_alpn(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	CHECK(n < cap);
	for (size_t i = 0; i < n; i++)
		CHECK(s[i] > 0x20 && s[i] < 0x7f);
}

static int sniff(const uint8_t *d, size_t n, struct xp_sniff_result *r)
{
	struct xp_bytes part = { .data = d, .len = n };
	struct xp_sniff_input in = { .size = sizeof(in), .l4proto = 6, .dport = 443, .count = 1,
				     .parts = &part };
	int rc;

	memset(r, 0, sizeof(*r));
	r->size = sizeof(*r);
	rc = ops->sniff(NULL, &in, r);
	CHECK(rc == XP_SNIFF_FOUND || rc == XP_SNIFF_MORE || rc == XP_SNIFF_NOT_MINE);
	if (rc == XP_SNIFF_FOUND) {
		check_name(r->name, sizeof(r->name), 0);
		check_alpn(r->alpn, sizeof(r->alpn));
		CHECK(!strcmp(r->protocol, "tls"));
	}
	return rc;
}

/* The parser on msg[0..n), with its contract checked; returns the status. */
static enum tls_hello_status parse(const uint8_t *msg, size_t n, struct tls_hello *h)
{
	enum tls_hello_status st = tls_hello_parse(msg, n, h);

	CHECK(st == TLS_HELLO_FOUND || st == TLS_HELLO_MORE || st == TLS_HELLO_NOT_MINE);
	if (st == TLS_HELLO_FOUND) {
		check_name(h->sni, sizeof(h->sni), 1);
		check_alpn(h->alpn, sizeof(h->alpn));
		CHECK(h->msg_len >= 4 && h->msg_len <= n && h->msg_len <= TLS_HELLO_MAX);
	}
	return st;
}

static void parse_and_prefixes(const uint8_t *msg, size_t n, struct tls_hello *h,
			       enum tls_hello_status *st)
{
	struct tls_hello p;
	size_t end;

	*st = parse(msg, n, h);
	if (*st == TLS_HELLO_NOT_MINE)
		return;
	end = *st == TLS_HELLO_FOUND ? h->msg_len : n;
	/* a few prefixes, cheap enough to keep the fuzzer fast */
	for (size_t k = end; k > 0 && end - k < 3; k--)
		CHECK(tls_hello_parse(msg, k - 1, &p) == TLS_HELLO_MORE);
	if (end > 2)
		CHECK(tls_hello_parse(msg, end / 2, &p) == TLS_HELLO_MORE);
	if (*st == TLS_HELLO_FOUND) {
		/* the same message alone gives the same answer */
		CHECK(tls_hello_parse(msg, h->msg_len, &p) == TLS_HELLO_FOUND);
		CHECK(!strcmp(p.sni, h->sni) && !strcmp(p.alpn, h->alpn));
		CHECK(p.has_ech == h->has_ech && p.legacy_version == h->legacy_version);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xp_sniff_result r, r2;
	enum tls_hello_status st;
	struct tls_hello h;

	if (!ops) {
		const struct xp_plugin_desc *d = xp_plugin_query(XP_PLUGIN_ABI);

		CHECK(d && d->sniffer && !strcmp(d->name, "tls"));
		ops = d->sniffer;
	}
	if (size == 0)
		return 0;
	if (data[0] == 22) {
		/* a flow's first bytes */
		int rc = sniff(data, size, &r);

		if (rc != XP_SNIFF_NOT_MINE && size > 1) {
			int rp = sniff(data, size - 1, &r2);

			/* one byte less: still arriving, or (bytes after the hello) the same */
			if (rc == XP_SNIFF_MORE)
				CHECK(rp == XP_SNIFF_MORE);
			else
				CHECK(rp == XP_SNIFF_MORE ||
				      (rp == XP_SNIFF_FOUND && !strcmp(r.name, r2.name)));
		}
		if (size > 5)
			parse_and_prefixes(data + 5, size - 5, &h, &st);
		return 0;
	}

	/* a Handshake message, parsed and then sniffed in records */
	size_t frag = 1 + data[0] % 64, n = size - 1, nrec = (n + frag - 1) / frag;
	const uint8_t *msg = data + 1;
	uint8_t *rec;
	size_t at = 0;
	int rc;

	parse_and_prefixes(msg, n, &h, &st);
	if (!n || nrec > 64)
		return 0;
	rec = malloc(n + 5 * nrec);
	CHECK(rec);
	for (size_t i = 0; i < n; i += frag) {
		size_t f = n - i < frag ? n - i : frag;

		rec[at++] = 22;
		rec[at++] = 3;
		rec[at++] = 1;
		rec[at++] = (uint8_t)(f >> 8);
		rec[at++] = (uint8_t)f;
		memcpy(rec + at, msg + i, f);
		at += f;
	}
	rc = sniff(rec, at, &r);
	if (st == TLS_HELLO_FOUND && h.sni[0]) {
		CHECK(rc == XP_SNIFF_FOUND);
		CHECK(!strcmp(r.name, h.sni) && !strcmp(r.alpn, h.alpn));
	} else if (st == TLS_HELLO_MORE) {
		CHECK(rc == XP_SNIFF_MORE);
	} else {
		CHECK(rc == XP_SNIFF_NOT_MINE);
	}
	free(rec);
	return 0;
}
