/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_sniff_http - the HTTP Host sniffer (plugins/sniff/http/http.c) through its descriptor,
 * on arbitrary bytes as a flow's first bytes.
 *
 * Beyond "no crash, no over-read": a FOUND name is clean (lower-case LDH, <= 253 bytes, not all
 * digits in its last label), the protocol is "http"; the decision is stable: a strict prefix of
 * an input that is not NOT_MINE is MORE or the same FOUND, and more bytes after a FOUND or a
 * NOT_MINE never change it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xproxy/plugin.h>

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__);             \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct xp_sniffer_ops *ops;

static int sniff(const uint8_t *d, size_t n, struct xp_sniff_result *r)
{
	struct xp_bytes part = { .data = d, .len = n };
	struct xp_sniff_input in = { .size = sizeof(in), .l4proto = 6, .dport = 80, .count = 1,
				     .parts = &part };
	int rc;

	memset(r, 0x5a, sizeof(*r)); /* garbage: the plugin must write what it returns */
	r->size = sizeof(*r);
	rc = ops->sniff(NULL, &in, r);
	CHECK(rc == XP_SNIFF_FOUND || rc == XP_SNIFF_MORE || rc == XP_SNIFF_NOT_MINE);
	if (rc == XP_SNIFF_FOUND) {
		size_t len = strnlen(r->name, sizeof(r->name)), last = 0;
		int digits = 1;

		CHECK(len > 0 && len <= 253);
		for (size_t i = 0; i < len; i++) {
			char c = r->name[i];

			CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			      c == '_' || c == '.');
			if (c == '.')
				last = i + 1;
		}
		for (size_t i = last; i < len; i++)
			if (r->name[i] < '0' || r->name[i] > '9')
				digits = 0;
		CHECK(!digits);
		CHECK(!strcmp(r->protocol, "http"));
	}
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xp_sniff_result r, p;
	uint8_t *more;
	int rc;

	if (!ops) {
		const struct xp_plugin_desc *d = xp_plugin_query(XP_PLUGIN_ABI);

		CHECK(d && d->sniffer && (d->kinds & XP_KIND_SNIFFER));
		ops = d->sniffer;
	}
	rc = sniff(data, size, &r);
	if (size > ops->max_bytes)
		CHECK(rc != XP_SNIFF_MORE); /* max_bytes is enough to decide */
	if (rc != XP_SNIFF_NOT_MINE && size > 0) {
		size_t cuts[3] = { size - 1, size / 2, size / 3 };

		for (int i = 0; i < 3; i++) {
			int rp = sniff(data, cuts[i], &p);

			if (rc == XP_SNIFF_MORE)
				CHECK(rp == XP_SNIFF_MORE);
			else
				CHECK(rp == XP_SNIFF_MORE ||
				      (rp == XP_SNIFF_FOUND && !strcmp(p.name, r.name)));
		}
	}
	if (rc != XP_SNIFF_MORE) {
		/* decided: a byte more changes nothing */
		more = malloc(size + 1);
		CHECK(more);
		if (size)
			memcpy(more, data, size);
		more[size] = '\n';
		CHECK(sniff(more, size + 1, &p) == rc);
		if (rc == XP_SNIFF_FOUND)
			CHECK(!strcmp(p.name, r.name));
		free(more);
	}
	return 0;
}
