/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_dns_msg - the dns plugin's codec and cache on arbitrary bytes.
 *
 * Beyond crashes: a message dns_parse accepts must still parse after dns_age with the same
 * header and question, its TTLs must not grow, an error answer made for it must parse and
 * match its question, and a cache round trip must hand back a message that parses with the
 * asker's id. Names read at any offset must be refused or fit in 255 octets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/dns/cache.h"
#include "../../plugins/dns/msg.h"

static struct dns_cache *cache;

struct ttls {
	uint32_t v[DNS_MAX_RRS];
	unsigned n;
};

static int ttl_cb(const uint8_t *msg, size_t len, const struct dns_rr *rr, void *arg)
{
	struct ttls *t = arg;

	if (t->n < DNS_MAX_RRS)
		t->v[t->n++] = rr->type == DNS_T_OPT ? 0 : rr->ttl;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t copy[DNS_MAX_MSG], out[DNS_MAX_MSG];
	uint8_t name[DNS_MAX_NAME];
	struct dns_msg m, m2;
	struct ttls before = { 0 }, after = { 0 };
	size_t next, off;
	char text[1024];
	int rc, n;
	unsigned i;

	if (!cache)
		cache = dns_cache_new(64, 1 << 20, 0);
	for (off = 0; off < size && off < 64; off++) {
		n = dns_name_read(data, size, off, name, &next);
		if (n > 0) {
			if (n > DNS_MAX_NAME || next > size)
				abort();
			if (dns_name_text(name, (size_t)n, text, sizeof(text)) < 0)
				abort();
		}
	}

	rc = dns_parse(data, size, &m, ttl_cb, &before);
	if (rc) {
		if (rc < DNS_E_OVERSIZE || rc > 0)
			abort();
		return 0;
	}
	if (size > sizeof(copy))
		abort();
	memcpy(copy, data, size);
	if (dns_age(copy, size, 7))
		abort();
	if (dns_parse(copy, size, &m2, ttl_cb, &after))
		abort();
	if (m2.id != m.id || m2.flags != m.flags || !dns_question_match(&m.q, &m2.q) ||
	    after.n != before.n)
		abort();
	for (i = 0; i < after.n; i++)
		if (after.v[i] > before.v[i])
			abort();

	n = (int)dns_make_error(&m, DNS_R_SERVFAIL, out);
	if (dns_parse(out, (size_t)n, &m2, NULL, NULL) || !dns_question_match(&m.q, &m2.q) ||
	    m2.id != m.id)
		abort();

	/* the same bytes as query and answer: stored only if cacheable, read back intact */
	if (dns_cache_put(cache, &m, &m, data, size, 1000) == 0) {
		ssize_t got = dns_cache_get(cache, &m, out, sizeof(out), 1000);

		if (got != (ssize_t)size || dns_parse(out, (size_t)got, &m2, NULL, NULL) ||
		    m2.id != m.id)
			abort();
	}
	return 0;
}
