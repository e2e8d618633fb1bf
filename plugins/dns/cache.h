/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cache.h - the dns plugin's answer cache.
 *
 * Keyed by (question name lower-cased, type, class, the query's DO and CD bits): a client that
 * asks for DNSSEC records or checking disabled never gets an answer fetched without them.
 * Bounded by entries and bytes, least recently used evicted first. Positive answers live for
 * their smallest answer TTL, negative ones (NXDOMAIN, NODATA) for min(SOA TTL, SOA MINIMUM)
 * (RFC 2308 5); a negative answer without an SOA, SERVFAIL, a truncated answer or a TTL of 0 is
 * not stored. One mutex: a single instance serves every worker loop.
 */
#ifndef XP_DNS_CACHE_H
#define XP_DNS_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "msg.h"

struct dns_cache;

struct dns_cache_stats {
	uint64_t entries, bytes;
	uint64_t inserts, evictions, expired;
};

/* NULL with errno on failure. max_ttl_s caps every stored TTL (0: no cap). */
struct dns_cache *dns_cache_new(size_t max_entries, size_t max_bytes, uint32_t max_ttl_s);
void dns_cache_free(struct dns_cache *c);

/* Store the answer `ans` (`a` as dns_parse filled it) to the query `q`. The answer's question
 * must already have been checked against the query. 0 stored, 1 not cacheable (or larger than
 * the whole cache), -errno. */
int dns_cache_put(struct dns_cache *c, const struct dns_msg *q, const struct dns_msg *a,
		  const uint8_t *ans, size_t len, uint64_t now_ms);

/* The cached answer to `q`, written to out: with q's id, q's question name spelling (0x20
 * case), and every TTL lowered by the seconds it has been stored. Returns the length, 0 on a
 * miss, -ENOSPC when cap is too small. */
ssize_t dns_cache_get(struct dns_cache *c, const struct dns_msg *q, uint8_t *out, size_t cap,
		      uint64_t now_ms);

/* The TTL in seconds `a` would be cached for (0: not cacheable). */
uint32_t dns_cache_ttl(const struct dns_msg *a, uint32_t max_ttl_s);

void dns_cache_stats(struct dns_cache *c, struct dns_cache_stats *out);

#endif
