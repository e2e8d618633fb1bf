/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_dns_cache - the dns plugin's cache: keys (case, type, DO bit), TTL expiry and ageing,
 * negative caching per RFC 2308, what is never stored, the entry and byte bounds with LRU
 * eviction, and many threads at once.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../plugins/dns/cache.h"
#include "dns_build.h"

static const uint8_t ip1[4] = { 192, 0, 2, 1 };

static void parse(const struct mb *m, struct dns_msg *d)
{
	assert_int_equal(dns_parse(m->b, m->n, d, NULL, NULL), 0);
}

static uint32_t first_ttl(const uint8_t *msg, size_t len)
{
	struct dns_msg d;

	assert_int_equal(dns_parse(msg, len, &d, NULL, NULL), 0);
	return d.min_answer_ttl;
}

/* Store an A answer for `name` with ttl, as asked by query (id 1, no OPT). */
static void put_a(struct dns_cache *c, const char *name, uint32_t ttl, uint64_t now)
{
	struct mb q, a;
	struct dns_msg dq, da;

	mb_query(&q, 1, name, DNS_T_A, 0, 0);
	mb_answer_a(&a, 1, name, ip1, ttl);
	parse(&q, &dq);
	parse(&a, &da);
	assert_int_equal(dns_cache_put(c, &dq, &da, a.b, a.n, now), 0);
}

static ssize_t get(struct dns_cache *c, const char *name, uint16_t type, int opt, int do_bit,
		   uint16_t id, uint8_t *out, uint64_t now)
{
	struct mb q;
	struct dns_msg dq;

	mb_query(&q, id, name, type, opt, do_bit);
	parse(&q, &dq);
	return dns_cache_get(c, &dq, out, DNS_MAX_MSG, now);
}

static void test_hit_miss_and_keys(void **state)
{
	struct dns_cache *c = dns_cache_new(100, 1 << 20, 0);
	uint8_t out[DNS_MAX_MSG];
	struct dns_msg d;
	ssize_t n;

	assert_non_null(c);
	put_a(c, "www.example.com", 300, 1000);
	/* other case, other id: a hit with the client's id and spelling */
	n = get(c, "WWW.EXAMPLE.com", DNS_T_A, 0, 0, 0x4242, out, 1000);
	assert_true(n > 0);
	assert_int_equal(dns_parse(out, (size_t)n, &d, NULL, NULL), 0);
	assert_int_equal(d.id, 0x4242);
	assert_memory_equal(out + 13, "WWW", 3);
	assert_int_equal(d.min_answer_ttl, 300);
	/* type, DO bit and name are part of the key */
	assert_int_equal(get(c, "www.example.com", DNS_T_AAAA, 0, 0, 1, out, 1000), 0);
	assert_int_equal(get(c, "www.example.com", DNS_T_A, 1, 1, 1, out, 1000), 0);
	assert_int_equal(get(c, "example.com", DNS_T_A, 0, 0, 1, out, 1000), 0);
	/* an OPT without DO is the same key as no OPT */
	assert_true(get(c, "www.example.com", DNS_T_A, 1, 0, 1, out, 1000) > 0);
	dns_cache_free(c);
}

static void test_ttl_ageing_and_expiry(void **state)
{
	struct dns_cache *c = dns_cache_new(100, 1 << 20, 0);
	uint8_t out[DNS_MAX_MSG];
	struct dns_cache_stats st;
	ssize_t n;

	put_a(c, "a.example", 10, 5000);
	n = get(c, "a.example", DNS_T_A, 0, 0, 1, out, 5000 + 3500);
	assert_true(n > 0);
	assert_int_equal(first_ttl(out, (size_t)n), 7); /* 3.5 s stored: 3 whole seconds off */
	n = get(c, "a.example", DNS_T_A, 0, 0, 1, out, 5000 + 9999);
	assert_true(n > 0);
	assert_int_equal(first_ttl(out, (size_t)n), 1);
	assert_int_equal(get(c, "a.example", DNS_T_A, 0, 0, 1, out, 5000 + 10000), 0);
	dns_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.expired, 1);
	dns_cache_free(c);

	/* max_ttl caps */
	c = dns_cache_new(100, 1 << 20, 60);
	put_a(c, "b.example", 86400, 0);
	assert_int_equal(get(c, "b.example", DNS_T_A, 0, 0, 1, out, 60000), 0);
	dns_cache_free(c);
}

static void test_negative(void **state)
{
	struct dns_cache *c = dns_cache_new(100, 1 << 20, 0);
	uint8_t out[DNS_MAX_MSG];
	struct mb q, a;
	struct dns_msg dq, da;
	ssize_t n;

	/* NXDOMAIN with SOA TTL 900 / MINIMUM 30: cached for 30 s */
	mb_query(&q, 1, "nx.example", DNS_T_A, 0, 0);
	parse(&q, &dq);
	mb_hdr(&a, 1, 0x8183, 1, 0, 1, 0);
	mb_question(&a, "nx.example", DNS_T_A);
	mb_soa(&a, 900, 30);
	parse(&a, &da);
	assert_int_equal(dns_cache_ttl(&da, 0), 30);
	assert_int_equal(dns_cache_put(c, &dq, &da, a.b, a.n, 0), 0);
	n = get(c, "nx.example", DNS_T_A, 0, 0, 9, out, 29000);
	assert_true(n > 0);
	assert_int_equal(DNS_RCODE(dns_get16(out + 2)), DNS_R_NXDOMAIN);
	assert_int_equal(get(c, "nx.example", DNS_T_A, 0, 0, 9, out, 30000), 0);

	/* NODATA (NOERROR, no answers) uses the SOA too, the smaller of TTL and MINIMUM */
	mb_hdr(&a, 1, 0x8180, 1, 0, 1, 0);
	mb_question(&a, "nx.example", DNS_T_A);
	mb_soa(&a, 20, 600);
	parse(&a, &da);
	assert_int_equal(dns_cache_ttl(&da, 0), 20);

	/* without an SOA a negative answer is not cached (RFC 2308 5) */
	mb_hdr(&a, 1, 0x8183, 1, 0, 0, 0);
	mb_question(&a, "nx.example", DNS_T_A);
	parse(&a, &da);
	assert_int_equal(dns_cache_put(c, &dq, &da, a.b, a.n, 0), 1);
	dns_cache_free(c);
}

static void test_never_stored(void **state)
{
	struct dns_cache *c = dns_cache_new(100, 1 << 20, 0);
	struct mb q, a;
	struct dns_msg dq, da;

	mb_query(&q, 1, "x.example", DNS_T_A, 0, 0);
	parse(&q, &dq);
	/* SERVFAIL */
	mb_hdr(&a, 1, 0x8182, 1, 0, 0, 0);
	mb_question(&a, "x.example", DNS_T_A);
	parse(&a, &da);
	assert_int_equal(dns_cache_put(c, &dq, &da, a.b, a.n, 0), 1);
	/* truncated */
	mb_answer_a(&a, 1, "x.example", ip1, 60);
	a.b[2] |= 0x02;
	parse(&a, &da);
	assert_int_equal(dns_cache_put(c, &dq, &da, a.b, a.n, 0), 1);
	/* TTL 0 */
	mb_answer_a(&a, 1, "x.example", ip1, 0);
	parse(&a, &da);
	assert_int_equal(dns_cache_put(c, &dq, &da, a.b, a.n, 0), 1);
	/* an answer to another question: never poisons the key */
	mb_answer_a(&a, 1, "y.example", ip1, 60);
	parse(&a, &da);
	assert_int_equal(dns_cache_put(c, &dq, &da, a.b, a.n, 0), 1);
	struct dns_cache_stats st;

	dns_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	dns_cache_free(c);
}

static void test_bounds_lru(void **state)
{
	struct dns_cache *c = dns_cache_new(3, 1 << 20, 0);
	uint8_t out[DNS_MAX_MSG];
	struct dns_cache_stats st;

	put_a(c, "one.example", 60, 0);
	put_a(c, "two.example", 60, 0);
	put_a(c, "three.example", 60, 0);
	assert_true(get(c, "one.example", DNS_T_A, 0, 0, 1, out, 1) > 0); /* one is now recent */
	put_a(c, "four.example", 60, 0);
	assert_int_equal(get(c, "two.example", DNS_T_A, 0, 0, 1, out, 1), 0); /* LRU evicted */
	assert_true(get(c, "one.example", DNS_T_A, 0, 0, 1, out, 1) > 0);
	assert_true(get(c, "four.example", DNS_T_A, 0, 0, 1, out, 1) > 0);
	dns_cache_stats(c, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.evictions, 1);
	dns_cache_free(c);

	/* bytes: room for about two entries */
	c = dns_cache_new(1000, 2 * (300 + 64), 0);
	put_a(c, "one.example", 60, 0);
	put_a(c, "two.example", 60, 0);
	put_a(c, "three.example", 60, 0);
	dns_cache_stats(c, &st);
	assert_true(st.entries <= 2);
	assert_true(st.bytes <= 2 * (300 + 64));
	assert_true(get(c, "three.example", DNS_T_A, 0, 0, 1, out, 1) > 0);
	dns_cache_free(c);

	/* an answer larger than the whole cache is refused, not stored over the limit */
	c = dns_cache_new(10, 4096, 0);
	struct mb q, a;
	struct dns_msg dq, da;
	int i;

	mb_query(&q, 1, "big.example", DNS_T_A, 0, 0);
	parse(&q, &dq);
	mb_hdr(&a, 1, 0x8180, 1, 250, 0, 0);
	mb_question(&a, "big.example", DNS_T_A);
	for (i = 0; i < 250; i++)
		mb_rr_ptr(&a, DNS_T_A, 60, ip1, 4);
	parse(&a, &da);
	assert_int_equal(dns_cache_put(c, &dq, &da, a.b, a.n, 0), 1);
	/* and a too-small output buffer is reported, not overrun */
	put_a(c, "small.example", 60, 0);
	mb_query(&q, 1, "small.example", DNS_T_A, 0, 0);
	parse(&q, &dq);
	assert_int_equal(dns_cache_get(c, &dq, out, 10, 1), -ENOSPC);
	dns_cache_free(c);
}

struct thr {
	struct dns_cache *c;
	int id;
	int hits;
};

static void *hammer(void *arg)
{
	struct thr *t = arg;
	uint8_t out[DNS_MAX_MSG];
	char name[64];
	int i;

	for (i = 0; i < 4000; i++) {
		snprintf(name, sizeof(name), "n%d.example", (i * 7 + t->id) % 300);
		if (i % 3 == 0) {
			put_a(t->c, name, 60, 0);
		} else {
			ssize_t n = get(t->c, name, DNS_T_A, 0, 0, (uint16_t)i, out, 1);

			if (n > 0) {
				struct dns_msg d;

				assert_int_equal(dns_parse(out, (size_t)n, &d, NULL, NULL), 0);
				assert_int_equal(d.id, (uint16_t)i);
				t->hits++;
			}
		}
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct dns_cache *c = dns_cache_new(128, 1 << 20, 0);
	struct thr t[4];
	pthread_t th[4];
	struct dns_cache_stats st;
	int i, hits = 0;

	for (i = 0; i < 4; i++) {
		t[i] = (struct thr){ .c = c, .id = i };
		assert_int_equal(pthread_create(&th[i], NULL, hammer, &t[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		hits += t[i].hits;
	}
	dns_cache_stats(c, &st);
	assert_true(st.entries <= 128);
	assert_true(hits > 0);
	dns_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_miss_and_keys),
		cmocka_unit_test(test_ttl_ageing_and_expiry),
		cmocka_unit_test(test_negative),
		cmocka_unit_test(test_never_stored),
		cmocka_unit_test(test_bounds_lru),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
