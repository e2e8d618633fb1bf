/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_domain - the domain index (core/domain.c) behind rule_list_match() and
 * rule_list_match_partial(): hand-written cases for the name rules (case, trailing dots, label
 * boundaries, negation, ports, IDNA, empty and oversized names), then thousands of random rule
 * lists where the indexed matchers must agree with the plain walk, and rule_list_match_partial
 * must agree with rule_list_match for every completion of what it did not know.
 *
 * XP_TEST_SEED=<n> replays a random run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "domain.h"
#include "rules.h"

static void list_from(struct rule_list *rl, const char *const *texts, size_t n, bool index)
{
	char err[256];

	memset(rl, 0, sizeof(*rl));
	rl->rules = calloc(n ? n : 1, sizeof(*rl->rules));
	assert_non_null(rl->rules);
	for (size_t i = 0; i < n; i++) {
		if (rule_parse(texts[i], false, NULL, &rl->rules[i], err, sizeof(err)))
			fail_msg("'%s' refused: %s", texts[i], err);
		rl->rules[i].id = (uint32_t)i + 1;
		rl->n++;
	}
	assert_int_equal(rule_parse("o9", true, NULL, &rl->fallback, err, sizeof(err)), 0);
	if (index)
		assert_int_equal(rule_list_index(rl), 0);
}

static struct rule_flow flow4(const char *dst, uint16_t dport, const char *name)
{
	struct rule_flow f = {.sport = 40000, .dport = dport, .l4proto = 6, .domain = name};
	struct in_addr a;

	assert_int_equal(inet_pton(AF_INET, dst, &a), 1);
	rule_addr_from_v4(f.daddr, a.s_addr);
	rule_addr_from_v4(f.saddr, htonl(0xc0a80102));
	return f;
}

/* The id of the rule that matches (0: fallback), indexed, and checked against the walk. */
static uint32_t id_of(const struct rule_list *rl, const struct rule_flow *f)
{
	struct rule_list plain = *rl;
	const struct rule *a, *b;

	assert_non_null(rl->index);
	plain.index = NULL;
	a = rule_list_match(rl, f);
	b = rule_list_match(&plain, f);
	if (b == &plain.fallback)
		b = &rl->fallback;
	if (a != b)
		fail_msg("name '%s': index says rule %u, walk says rule %u",
			 f->domain ? f->domain : "(none)", a->id, b->id);
	return a->id;
}

static void test_names(void **state)
{
	static const char *const rules[] = {
		"domain-suffix:example.com, o1",		 /* 1 */
		"domain:Exact.ORG., o2",			 /* 2 */
		"dst-cidr:10.0.0.0/8, o3",			 /* 3 */
		"domain-suffix:a.example.net & dport:443, o1",	 /* 4 */
		"domain-suffix:example.net, o2",		 /* 5 */
		"domain-keyword:track, BLOCK",			 /* 6 */
		"domain-suffix:xn--bcher-kva.ch, o3",		 /* 7 */
		"!domain-suffix:internal.lan & dport:8080, o1", /* 8 */
		"domain-regex:^cdn[0-9]+\\.x\\.io$, o2",	 /* 9 */
		"domain:co, o3",				 /* 10 */
		"dport:22, DIRECT",				 /* 11 */
	};
	struct rule_list rl;
	struct rule_flow f;

	list_from(&rl, rules, sizeof(rules) / sizeof(rules[0]), true);
	f = flow4("192.0.2.1", 80, "example.com");
	assert_int_equal(id_of(&rl, &f), 1);
	/* case and one trailing dot do not matter, on either side */
	f.domain = "WWW.Example.COM.";
	assert_int_equal(id_of(&rl, &f), 1);
	f.domain = "exact.org";
	assert_int_equal(id_of(&rl, &f), 2);
	f.domain = "EXACT.org.";
	assert_int_equal(id_of(&rl, &f), 2);
	/* a full match is not a suffix match */
	f.domain = "www.exact.org";
	assert_ptr_equal(rule_list_match(&rl, &f), &rl.fallback);
	/* label boundaries only */
	f.domain = "badexample.com";
	assert_int_equal(id_of(&rl, &f), 0);
	f.domain = "example.com.evil";
	assert_int_equal(id_of(&rl, &f), 0);
	f.domain = "xample.com";
	assert_int_equal(id_of(&rl, &f), 0);
	/* an address rule between domain rules keeps its place */
	f = flow4("10.1.1.1", 80, "x.example.net");
	assert_int_equal(id_of(&rl, &f), 3);
	f = flow4("10.1.1.1", 80, "x.example.com");
	assert_int_equal(id_of(&rl, &f), 1);
	/* domain AND port: the earlier rule only with its port */
	f = flow4("192.0.2.1", 443, "b.a.example.net");
	assert_int_equal(id_of(&rl, &f), 4);
	f.dport = 80;
	assert_int_equal(id_of(&rl, &f), 5);
	/* keyword and regex stay per rule, in order */
	f.domain = "tracker.example.net";
	assert_int_equal(id_of(&rl, &f), 5);
	f.domain = "tracker.io";
	assert_int_equal(id_of(&rl, &f), 6);
	f.domain = "cdn12.x.io";
	assert_int_equal(id_of(&rl, &f), 9);
	f.domain = "cdn.x.io";
	assert_int_equal(id_of(&rl, &f), 0);
	/* IDNA names are plain labels */
	f.domain = "www.XN--BCHER-KVA.ch";
	assert_int_equal(id_of(&rl, &f), 7);
	/* negation: any name but internal.lan, with the port */
	f = flow4("192.0.2.1", 8080, "host.internal.lan");
	assert_int_equal(id_of(&rl, &f), 0);
	f.domain = "host.internal.lan.example";
	assert_int_equal(id_of(&rl, &f), 8);
	/* ... and no name is not "not internal.lan" */
	f.domain = NULL;
	assert_int_equal(id_of(&rl, &f), 0);
	/* a one-label name */
	f = flow4("192.0.2.1", 80, "CO");
	assert_int_equal(id_of(&rl, &f), 10);
	f.domain = "co.uk";
	assert_int_equal(id_of(&rl, &f), 0);
	/* no name: only rules without domain conditions */
	f = flow4("192.0.2.1", 22, NULL);
	assert_int_equal(id_of(&rl, &f), 11);
	/* empty, dot-only and oversized names count as none */
	f.domain = "";
	assert_int_equal(id_of(&rl, &f), 11);
	f.domain = ".";
	assert_int_equal(id_of(&rl, &f), 11);
	char big[400];

	memset(big, 'a', sizeof(big));
	for (size_t i = 1; i < sizeof(big) - 1; i += 2)
		big[i] = '.';
	big[sizeof(big) - 1] = '\0';
	memcpy(big + sizeof(big) - 13, ".example.com", 12);
	f.domain = big;
	assert_int_equal(id_of(&rl, &f), 11);
	/* the longest valid name: 253 characters, 127 labels, every suffix looked up */
	big[253] = '\0';
	memcpy(big + 253 - 12, ".example.com", 12);
	f.domain = big + (big[0] == '.');
	f.dport = 80;
	assert_int_equal(id_of(&rl, &f), big[0] == '.' ? 0 : 1);
	rule_list_free(&rl);
}

/* Many indexed rules with the same key, several keys per rule, duplicates. */
static void test_postings(void **state)
{
	static const char *const rules[] = {
		"domain-suffix:a.com|a.com|b.a.com & dport:1, o1", /* 1 */
		"domain-suffix:b.a.com & dport:2, o2",		   /* 2 */
		"domain:x.b.a.com|a.com & dport:3, o3",		   /* 3 */
		"domain-suffix:com & dport:4, o1",		   /* 4 */
		"domain-suffix:a.com & domain-keyword:zz, o2",	   /* 5 */
		"domain-suffix:a.com & !domain:y.a.com, o3",	   /* 6 */
		"domain-suffix:a.com, BLOCK",			   /* 7 */
	};
	struct rule_list rl;
	struct rule_flow f;

	list_from(&rl, rules, 7, true);
	f = flow4("192.0.2.1", 1, "x.b.a.com");
	assert_int_equal(id_of(&rl, &f), 1);
	f.dport = 2;
	assert_int_equal(id_of(&rl, &f), 2);
	f.dport = 3;
	assert_int_equal(id_of(&rl, &f), 3);
	f.dport = 4;
	assert_int_equal(id_of(&rl, &f), 4);
	f.dport = 5;
	assert_int_equal(id_of(&rl, &f), 6);
	f.domain = "zz.a.com";
	assert_int_equal(id_of(&rl, &f), 5);
	f.domain = "y.a.com";
	assert_int_equal(id_of(&rl, &f), 7);
	f.domain = "a.com";
	f.dport = 3;
	assert_int_equal(id_of(&rl, &f), 3);
	assert_true(domain_index_mem(rl.index) > 0);

	/* a list changed after indexing is walked, not looked up through a stale index */
	struct rule *grown = realloc(rl.rules, 8 * sizeof(*grown));
	char err[128];

	assert_non_null(grown);
	rl.rules = grown;
	assert_int_equal(rule_parse("domain:q.org, o1", false, NULL, &rl.rules[7], err,
				    sizeof(err)),
			 0);
	rl.rules[7].id = 8;
	rl.n = 8;
	assert_false(domain_index_covers(rl.index, rl.rules, rl.n));
	f.domain = "q.org";
	assert_int_equal(rule_list_match(&rl, &f)->id, 8);
	assert_int_equal(rule_list_index(&rl), 0);
	assert_int_equal(id_of(&rl, &f), 8);
	rule_list_free(&rl);

	/* an empty list indexes too */
	list_from(&rl, NULL, 0, true);
	f.domain = "a.com";
	assert_int_equal(id_of(&rl, &f), 0);
	f.domain = NULL;
	assert_int_equal(id_of(&rl, &f), 0);
	rule_list_free(&rl);
	domain_index_free(NULL);
	assert_int_equal(domain_index_mem(NULL), 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Random lists                                                                                */

static uint64_t rng;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static uint32_t rn(uint32_t n)
{
	return n ? rnd() % n : 0;
}

static const char *const bases[] = {"example.com", "a.example.com", "b.a.example.com",
				    "example.net", "com",	    "net",
				    "xn--80ak6aa92e.com", "co.uk", "bbc.co.uk", "x-y_z.org"};
#define N_BASES (sizeof(bases) / sizeof(bases[0]))

static void rand_name(char *buf, size_t len)
{
	static const char *const pre[] = {"", "www.", "a.", "b.a.", "bad", "x.b.", "WWW."};
	const char *b = bases[rn(N_BASES)];

	snprintf(buf, len, "%s%s%s", pre[rn(7)], b, rn(8) ? "" : ".");
}

/* Kinds 0..7: suffix, full, keyword, dport, dst-cidr, proto, src-cidr, regex. */
static void rand_cond(char *buf, size_t len, unsigned kind)
{
	size_t pos = strlen(buf);
	bool neg = rn(6) == 0;

	switch (kind) {
	case 0:
		pos += (size_t)snprintf(buf + pos, len - pos, "%sdomain-suffix:", neg ? "!" : "");
		for (uint32_t i = 0, n = 1 + (rn(3) ? 0 : rn(3)); i < n; i++)
			pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", i ? "|" : "",
						bases[rn(N_BASES)]);
		break;
	case 1:
		pos += (size_t)snprintf(buf + pos, len - pos, "%sdomain:", neg ? "!" : "");
		for (uint32_t i = 0, n = 1 + (rn(3) ? 0 : rn(3)); i < n; i++) {
			char nm[64];

			rand_name(nm, sizeof(nm));
			if (nm[strlen(nm) - 1] == '.')
				nm[strlen(nm) - 1] = '\0';
			pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", i ? "|" : "", nm);
		}
		break;
	case 2:
		snprintf(buf + pos, len - pos, "%sdomain-keyword:%s", neg ? "!" : "",
			 (const char *[]){"exam", "co", "a.e", "xn--"}[rn(4)]);
		break;
	case 3:
		snprintf(buf + pos, len - pos, "%sdport:%s", neg ? "!" : "",
			 (const char *[]){"443", "80", "1-1000", "8080|22"}[rn(4)]);
		break;
	case 4:
		snprintf(buf + pos, len - pos, "%sdst-cidr:%s", neg ? "!" : "",
			 (const char *[]){"10.0.0.0/8", "192.0.2.0/24", "::/0"}[rn(3)]);
		break;
	default:
		snprintf(buf + pos, len - pos, "%s%s", neg ? "!" : "",
			 (const char *[]){"proto:udp", "src-cidr:192.168.0.0/16",
					  "domain-regex:^www\\."}[kind - 5]);
		break;
	}
}

static void rand_list(struct rule_list *rl, size_t n, char texts[][256])
{
	const char **p = calloc(n ? n : 1, sizeof(*p));

	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		static const unsigned weights[] = {0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7};
		unsigned used = 0;

		texts[i][0] = '\0';
		for (uint32_t c = 0, nc = 1 + (rn(3) ? 0 : rn(3)); c < nc; c++) {
			unsigned kind = weights[rn(sizeof(weights) / sizeof(weights[0]))];

			if (used & (1u << kind))
				continue; /* one condition per type and rule */
			used |= 1u << kind;
			if (texts[i][0])
				strcat(texts[i], " & ");
			rand_cond(texts[i], 200, kind);
		}
		strcat(texts[i], (const char *[]){", o1", ", o2", ", DIRECT", ", BLOCK"}[rn(4)]);
		p[i] = texts[i];
	}
	list_from(rl, p, n, true);
	free(p);
}

static void rand_flow(struct rule_flow *f, char *name, size_t len)
{
	static const char *const dsts[] = {"10.1.2.3", "192.0.2.9", "198.51.100.1"};

	*f = flow4(dsts[rn(3)], (const uint16_t[]){443, 80, 22, 8080, 5000}[rn(5)], NULL);
	if (rn(2))
		rule_addr_from_v4(f->saddr, htonl(0x0a000001));
	f->l4proto = rn(3) ? 6 : 17;
	if (rn(6)) {
		rand_name(name, len);
		f->domain = name;
	}
}

/* Fill in what `known` leaves out with random values: what the flow might really be. */
static void complete(struct rule_flow *f, unsigned known, char *name, size_t len)
{
	struct rule_flow r;

	rand_flow(&r, name, len);
	if (!(known & RF_KNOWN_DST))
		memcpy(f->daddr, r.daddr, 16);
	if (!(known & RF_KNOWN_SRC))
		memcpy(f->saddr, r.saddr, 16);
	if (!(known & RF_KNOWN_PORTS)) {
		f->sport = r.sport;
		f->dport = r.dport;
	}
	if (!(known & RF_KNOWN_PROTO))
		f->l4proto = r.l4proto;
	if (!(known & RF_KNOWN_DOMAIN))
		f->domain = r.domain;
}

static void test_random(void **state)
{
	const char *seed = getenv("XP_TEST_SEED");
	static char texts[40][256];
	size_t lists = 3000, hits = 0, partials = 0;

	rng = seed ? strtoull(seed, NULL, 0) : 0x2545f4914f6cdd1dull;
	if (!rng)
		rng = 1;
	for (size_t l = 0; l < lists; l++) {
		uint64_t list_seed = rng;
		struct rule_list rl, plain;
		size_t n = rn(40);

		rand_list(&rl, n, texts);
		plain = rl;
		plain.index = NULL;
		for (int k = 0; k < 60; k++) {
			struct rule_flow f, g;
			char name[80], name2[80];
			unsigned known = rn(2) ? (RF_KNOWN_DST | RF_KNOWN_DOMAIN) : rn(32);
			bool pa = false, pb = true;

			rand_flow(&f, name, sizeof(name));
			const struct rule *a = rule_list_match(&rl, &f), *b = rule_list_match(&plain, &f);

			if (b == &plain.fallback)
				b = &rl.fallback;

			if (a != b) {
				for (size_t i = 0; i < n; i++)
					print_error("  %zu: %s\n", i + 1, texts[i]);
				fail_msg("XP_TEST_SEED=0x%llx: name %s port %u: index %u, walk %u",
					 (unsigned long long)list_seed, f.domain ? f.domain : "-",
					 f.dport, a->id, b->id);
			}
			hits += a != &rl.fallback;
			a = rule_list_match_partial(&rl, &f, known, &pa);
			b = rule_list_match_partial(&plain, &f, known, &pb);
			if (b == &plain.fallback)
				b = &rl.fallback;
			if (a != b || pa != pb) {
				for (size_t i = 0; i < n; i++)
					print_error("  %zu: %s\n", i + 1, texts[i]);
				fail_msg("XP_TEST_SEED=0x%llx: partial (known 0x%x) name %s: index "
					 "%u/%d, walk %u/%d",
					 (unsigned long long)list_seed, known,
					 f.domain ? f.domain : "-", a->id, pa, b->id, pb);
			}
			partials += pa;
			/* everything known: the full matcher's answer, never partial */
			b = rule_list_match_partial(&rl, &f, RF_KNOWN_ALL, &pb);
			assert_false(pb);
			assert_ptr_equal(b, rule_list_match(&rl, &f));
			/* whatever the unknown fields are, a decided answer stays the answer, and
			 * a partial one is never passed over by the full match */
			for (int c = 0; c < 8; c++) {
				g = f;
				complete(&g, known, name2, sizeof(name2));
				const struct rule *full = rule_list_match(&rl, &g);

				if (!pa && full != a)
					fail_msg("XP_TEST_SEED=0x%llx: decided rule %u (known 0x%x) "
						 "but the flow matches rule %u",
						 (unsigned long long)list_seed, a->id, known,
						 full->id);
				if (pa && full != &rl.fallback && full < a)
					fail_msg("XP_TEST_SEED=0x%llx: partial rule %u, but earlier "
						 "rule %u matches",
						 (unsigned long long)list_seed, a->id, full->id);
			}
		}
		rule_list_free(&rl);
	}
	/* the generator must make rules match and partial answers happen */
	assert_true(hits > lists * 5);
	assert_true(partials > lists);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_postings),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
