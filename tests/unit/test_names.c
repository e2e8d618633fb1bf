/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_names.c - the address -> name table (core/names.c) against a fake kernel map and clock:
 * verdicts written before learn returns, rule order, partial rules and conflicting names turned
 * into INSPECT, the bound, expiry, reload, sniffed names, lookups and bad input.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "names.h"
#include "rules.h"

/* ------------------------------------------------------------------ fake kernel map */

#define MAP_MAX 64
#define SEC 1000000000ull

static struct {
	struct xp_dst_key k[MAP_MAX];
	struct xp_dst_verdict v[MAP_MAX];
	unsigned n;
	unsigned sets, dels;
	int set_rc;
	uint64_t now;
} km;

static int km_find(const struct xp_dst_key *k)
{
	for (unsigned i = 0; i < km.n; i++)
		if (!memcmp(&km.k[i], k, sizeof(*k)))
			return (int)i;
	return -1;
}

static int fake_set(void *ctx, const struct xp_dst_key *k, const struct xp_dst_verdict *v)
{
	int i;

	km.sets++;
	if (km.set_rc)
		return km.set_rc;
	i = km_find(k);
	if (i < 0) {
		assert_true(km.n < MAP_MAX);
		i = (int)km.n++;
	}
	km.k[i] = *k;
	km.v[i] = *v;
	return 0;
}

static int fake_del(void *ctx, const struct xp_dst_key *k)
{
	int i = km_find(k);

	km.dels++;
	if (i < 0)
		return -ENOENT;
	km.k[i] = km.k[km.n - 1];
	km.v[i] = km.v[km.n - 1];
	km.n--;
	return 0;
}

static uint64_t fake_now(void)
{
	return km.now;
}

static int fake_ob(void *ctx, const char *name)
{
	if (!strcmp(name, "px"))
		return 7;
	if (!strcmp(name, "py"))
		return 9;
	return -ENOENT;
}

static const struct names_env env = {
	.dst_set = fake_set,
	.dst_del = fake_del,
	.now_ns = fake_now,
	.outbound_id = fake_ob,
};

/* The kernel entry for (addr, 0, 0) or (addr, port, proto); NULL when absent. */
static const struct xp_dst_verdict *kget(const char *ip, uint16_t port, uint8_t proto)
{
	struct xp_dst_key k = { .port = port, .l4proto = proto };
	struct in_addr a4;
	int i;

	if (inet_pton(AF_INET, ip, &a4) == 1) {
		k.addr[10] = k.addr[11] = 0xff;
		memcpy(k.addr + 12, &a4, 4);
	} else {
		assert_int_equal(inet_pton(AF_INET6, ip, k.addr), 1);
	}
	i = km_find(&k);
	return i < 0 ? NULL : &km.v[i];
}

static union xp_sockaddr sa(const char *ip, uint16_t port)
{
	union xp_sockaddr s;

	memset(&s, 0, sizeof(s));
	if (inet_pton(AF_INET, ip, &s.in.sin_addr) == 1) {
		s.in.sin_family = AF_INET;
		s.in.sin_port = htons(port);
	} else {
		assert_int_equal(inet_pton(AF_INET6, ip, &s.in6.sin6_addr), 1);
		s.in6.sin6_family = AF_INET6;
		s.in6.sin6_port = htons(port);
	}
	return s;
}

/* ------------------------------------------------------------------ rule lists */

static void rules_build(struct rule_list *rl, const char *const *lines, const char *fallback)
{
	char err[256];
	size_t n = 0;

	while (lines[n])
		n++;
	memset(rl, 0, sizeof(*rl));
	rl->rules = calloc(n ? n : 1, sizeof(*rl->rules));
	assert_non_null(rl->rules);
	for (size_t i = 0; i < n; i++) {
		int rc = rule_parse(lines[i], false, ".", &rl->rules[i], err, sizeof(err));

		if (rc)
			fail_msg("rule '%s': %s", lines[i], err);
		rl->rules[i].id = (uint32_t)i + 1;
		rl->rules[i].line = (int)i + 10;
	}
	rl->n = n;
	assert_int_equal(rule_parse(fallback, true, ".", &rl->fallback, err, sizeof(err)), 0);
	assert_int_equal(rule_list_index(rl), 0);
}

static struct rule_list rl;

static int setup_with(const char *const *lines, const char *fallback, uint32_t size)
{
	memset(&km, 0, sizeof(km));
	km.now = 100 * SEC;
	rules_build(&rl, lines, fallback);
	return names_init(&env, &rl, size, 60000);
}

static int teardown(void **state)
{
	names_fini(0);
	rule_list_free(&rl);
	return 0;
}

static const char *const basic_rules[] = {
	"dst-cidr:10.9.0.0/16, DIRECT",
	"domain-suffix:proxied.test, px",
	"domain:blocked.test, BLOCK",
	"domain:webonly.test & dport:443, py",
	"domain-suffix:other.test, py",
	NULL,
};

static int setup(void **state)
{
	return setup_with(basic_rules, "DIRECT", 16);
}

/* ------------------------------------------------------------------ tests */

static void test_learn_writes_before_return(void **state)
{
	union xp_sockaddr a = sa("192.0.2.10", 0);
	const struct xp_dst_verdict *v;
	char name[64];

	assert_int_equal(names_learn("WWW.Proxied.Test.", &a, 30000), 0);
	v = kget("192.0.2.10", 0, 0);
	assert_non_null(v);
	assert_int_equal(v->verdict, XP_V_PROXY);
	assert_int_equal(v->outbound_id, 7);
	assert_int_equal(v->origin_plugin, XP_DSTW_DNS);
	/* TTL 30 s + the 60 s grace */
	assert_int_equal(v->expires_ns, km.now + 90 * SEC);
	assert_int_not_equal(v->tag, 0);
	assert_int_equal(names_by_tag(v->tag, name, sizeof(name)), 0);
	assert_string_equal(name, "www.proxied.test");

	/* any port of the address names it */
	a = sa("192.0.2.10", 443);
	assert_int_equal(names_lookup(&a, IPPROTO_TCP, name, sizeof(name)), 0);
	assert_string_equal(name, "www.proxied.test");
	/* truncated copy stays NUL-terminated */
	assert_int_equal(names_lookup(&a, IPPROTO_TCP, name, 4), 0);
	assert_string_equal(name, "www");

	assert_int_equal(names_learn("blocked.test", &a, 1000), 0);
	/* two names on one address with different verdicts */
	v = kget("192.0.2.10", 0, 0);
	assert_int_equal(v->verdict, XP_V_INSPECT);

	a = sa("2001:db8::5", 0);
	assert_int_equal(names_learn("x.other.test", &a, 1000), 0);
	v = kget("2001:db8::5", 0, 0);
	assert_non_null(v);
	assert_int_equal(v->verdict, XP_V_PROXY);
	assert_int_equal(v->outbound_id, 9);
}

static void test_address_rule_first(void **state)
{
	union xp_sockaddr in = sa("10.9.3.4", 0), out = sa("198.51.100.1", 0);

	/* an address rule above the domain rule wins for addresses it covers */
	assert_int_equal(names_learn("a.proxied.test", &in, 1000), 0);
	assert_int_equal(kget("10.9.3.4", 0, 0)->verdict, XP_V_DIRECT);
	assert_int_equal(names_learn("a.proxied.test", &out, 1000), 0);
	assert_int_equal(kget("198.51.100.1", 0, 0)->verdict, XP_V_PROXY);
	/* a name no rule names takes the fallback, still written (the flow is named) */
	assert_int_equal(names_learn("plain.example", &out, 1000), 0);
	assert_int_equal(kget("198.51.100.1", 0, 0)->verdict, XP_V_INSPECT);
}

static void test_partial_is_inspect(void **state)
{
	union xp_sockaddr a = sa("203.0.113.7", 0);
	struct names_stats st;

	assert_int_equal(names_learn("webonly.test", &a, 1000), 0);
	assert_int_equal(kget("203.0.113.7", 0, 0)->verdict, XP_V_INSPECT);
	names_stats_get(&st);
	assert_int_equal(st.partial, 1);
}

static void test_conflict_and_expiry(void **state)
{
	union xp_sockaddr a = sa("198.51.100.9", 0);
	const struct xp_dst_verdict *v;
	struct names_stats st;
	char name[64];

	assert_int_equal(names_learn("cdn.proxied.test", &a, 10000), 0); /* expires at +70 s */
	assert_int_equal(names_learn("cdn.other.test", &a, 100000), 0);	  /* +160 s */
	v = kget("198.51.100.9", 0, 0);
	assert_int_equal(v->verdict, XP_V_INSPECT);
	assert_int_equal(v->expires_ns, km.now + 160 * SEC);
	/* the same outbound from two names is no conflict */
	assert_int_equal(names_learn("z.other.test", &a, 50000), 0);	  /* +110 s */
	names_stats_get(&st);
	assert_true(st.conflicts >= 1);

	/* 71 s later the proxied name is gone; the other two agree: py again */
	km.now += 71 * SEC;
	assert_int_equal(names_expire(), 0); /* no address went away, only a claim */
	v = kget("198.51.100.9", 0, 0);
	assert_int_equal(v->verdict, XP_V_PROXY);
	assert_int_equal(v->outbound_id, 9);
	assert_int_equal(names_lookup(&a, 0, name, sizeof(name)), 0);
	assert_string_equal(name, "z.other.test");

	km.now += 100 * SEC;
	assert_int_equal(names_expire(), 1);
	assert_null(kget("198.51.100.9", 0, 0));
	assert_int_equal(names_lookup(&a, 0, name, sizeof(name)), -ENOENT);
	names_stats_get(&st);
	assert_int_equal(st.live, 0);
	assert_int_equal(st.names, 0);
	assert_int_equal(st.expired, 1);
}

static void test_bound(void **state)
{
	char ip[32], nm[32];
	struct names_stats st;
	union xp_sockaddr a;

	names_fini(0);
	assert_int_equal(names_init(&env, &rl, 4, 0), 0);
	for (int i = 0; i < 4; i++) {
		snprintf(ip, sizeof(ip), "192.0.2.%d", i + 1);
		snprintf(nm, sizeof(nm), "h%d.proxied.test", i);
		a = sa(ip, 0);
		assert_int_equal(names_learn(nm, &a, 1000), 0);
	}
	/* a new name for a known address fits; a new address does not */
	a = sa("192.0.2.1", 0);
	assert_int_equal(names_learn("again.proxied.test", &a, 1000), 0);
	a = sa("192.0.2.99", 0);
	assert_int_equal(names_learn("h99.proxied.test", &a, 1000), -ENOSPC);
	assert_null(kget("192.0.2.99", 0, 0));
	names_stats_get(&st);
	assert_int_equal(st.full, 1);
	assert_int_equal(st.live, 4);
	/* sniffed entries share the bound */
	assert_int_equal(names_learn_sniffed("s.proxied.test", &a, 443, IPPROTO_TCP, 1000),
			 -ENOSPC);
	/* after expiry there is room again (grace 0: the TTL alone) */
	km.now += 2 * SEC;
	assert_int_equal(names_expire(), 4);
	assert_int_equal(names_learn("h99.proxied.test", &a, 1000), 0);

	/* many names on one address: bounded per address, the newest always kept */
	for (int i = 0; i < 20; i++) {
		snprintf(nm, sizeof(nm), "n%d.other.test", i);
		assert_int_equal(names_learn(nm, &a, 1000 + i), 0);
	}
	assert_int_equal(names_lookup(&a, 0, ip, sizeof(ip)), 0);
	assert_string_equal(ip, "n19.other.test");
	names_stats_get(&st);
	assert_true(st.names <= 9);
}

static void test_reload(void **state)
{
	static const char *const next_rules[] = {
		"domain-suffix:proxied.test, BLOCK",
		"domain:gone.test, nosuch",
		NULL,
	};
	union xp_sockaddr a = sa("192.0.2.50", 0), b = sa("192.0.2.51", 0);
	struct rule_list next;

	assert_int_equal(names_learn("r.proxied.test", &a, 1000), 0);
	assert_int_equal(names_learn("r.other.test", &b, 1000), 0);
	assert_int_equal(kget("192.0.2.50", 0, 0)->verdict, XP_V_PROXY);
	assert_int_equal(kget("192.0.2.51", 0, 0)->verdict, XP_V_PROXY);

	rules_build(&next, next_rules, "DIRECT");
	names_set_rules(&next, 16, 60000);
	rule_list_free(&rl);
	rl = next;
	assert_int_equal(kget("192.0.2.50", 0, 0)->verdict, XP_V_BLOCK);
	assert_int_equal(kget("192.0.2.51", 0, 0)->verdict, XP_V_DIRECT);
	/* a rule naming an unknown outbound: refused, nothing written */
	a = sa("192.0.2.52", 0);
	assert_int_equal(names_learn("gone.test", &a, 1000), -ENOENT);
	assert_null(kget("192.0.2.52", 0, 0));
}

static void test_sniffed(void **state)
{
	union xp_sockaddr a = sa("203.0.113.20", 0), b = sa("203.0.113.21", 0);
	const struct xp_dst_verdict *v;
	char name[64];

	/* a DNS name claims a: the sniffed one is not cached */
	assert_int_equal(names_learn("dns.other.test", &a, 1000), 0);
	assert_int_equal(names_learn_sniffed("sni.proxied.test", &a, 443, IPPROTO_TCP, 1000),
			 -EEXIST);
	assert_null(kget("203.0.113.20", 443, IPPROTO_TCP));

	/* no DNS name for b: cached per (addr, port, proto), with ports known */
	assert_int_equal(names_learn_sniffed("webonly.test", &b, 443, IPPROTO_TCP, 1000), 0);
	v = kget("203.0.113.21", 443, IPPROTO_TCP);
	assert_non_null(v);
	assert_int_equal(v->verdict, XP_V_PROXY);
	assert_int_equal(v->outbound_id, 9);
	assert_int_equal(v->origin_plugin, XP_DSTW_SNIFF);
	assert_null(kget("203.0.113.21", 0, 0));
	b.in.sin_port = htons(443);
	assert_int_equal(names_lookup(&b, IPPROTO_TCP, name, sizeof(name)), 0);
	assert_string_equal(name, "webonly.test");
	/* another port of the address is not named by it */
	b.in.sin_port = htons(80);
	assert_int_equal(names_lookup(&b, IPPROTO_TCP, name, sizeof(name)), -ENOENT);

	/* bad input */
	assert_int_equal(names_learn_sniffed("x.test", &b, 0, IPPROTO_TCP, 1000), -EINVAL);
	assert_int_equal(names_learn_sniffed("x.test", &b, 443, IPPROTO_ICMP, 1000), -EINVAL);
}

/* Names routed differently at one sniffed place (shared hosting): nothing is cached there, and
 * the place is remembered past its cached verdict's expiry to notice it. */
static void test_sniffed_mixed(void **state)
{
	union xp_sockaddr c = sa("203.0.113.30", 443), d = sa("203.0.113.31", 443);
	struct names_stats st;
	char name[64];

	/* first name: cached (px) */
	assert_int_equal(names_learn_sniffed("a.proxied.test", &c, 443, IPPROTO_TCP, 1000), 0);
	assert_non_null(kget("203.0.113.30", 443, IPPROTO_TCP));
	/* another name with the same verdict: still one verdict, still cached */
	assert_int_equal(names_learn_sniffed("b.proxied.test", &c, 443, IPPROTO_TCP, 1000), 0);
	assert_int_equal(kget("203.0.113.30", 443, IPPROTO_TCP)->outbound_id, 7);
	/* a name routed otherwise (DIRECT by fallback): mixed, the kernel entry goes */
	assert_int_equal(names_learn_sniffed("plain.test", &c, 443, IPPROTO_TCP, 1000), -EBUSY);
	assert_null(kget("203.0.113.30", 443, IPPROTO_TCP));
	assert_int_equal(names_lookup(&c, IPPROTO_TCP, name, sizeof(name)), -ENOENT);
	/* and stays uncached for the first name too, while the hold lasts */
	assert_int_equal(names_learn_sniffed("a.proxied.test", &c, 443, IPPROTO_TCP, 1000), -EBUSY);
	assert_null(kget("203.0.113.30", 443, IPPROTO_TCP));
	names_expire();
	assert_int_equal(names_learn_sniffed("a.proxied.test", &c, 443, IPPROTO_TCP, 1000), -EBUSY);
	names_stats_get(&st);
	assert_int_equal(st.sniff_mixed, 2);
	/* after the hold, caching resumes */
	km.now += 1801 * SEC;
	names_expire();
	assert_int_equal(names_learn_sniffed("a.proxied.test", &c, 443, IPPROTO_TCP, 1000), 0);
	assert_non_null(kget("203.0.113.30", 443, IPPROTO_TCP));

	/* d: cached, then expired (the kernel entry goes), but remembered: a different verdict
	 * sniffed after the expiry is still seen as mixed */
	assert_int_equal(names_learn_sniffed("a.proxied.test", &d, 443, IPPROTO_TCP, 1000), 0);
	km.now += 2 * SEC; /* past the TTL (sniffed entries get no DNS grace) */
	names_expire();
	assert_null(kget("203.0.113.31", 443, IPPROTO_TCP));
	assert_int_equal(names_lookup(&d, IPPROTO_TCP, name, sizeof(name)), -ENOENT);
	assert_int_equal(names_learn_sniffed("blocked.test", &d, 443, IPPROTO_TCP, 1000), -EBUSY);
	assert_null(kget("203.0.113.31", 443, IPPROTO_TCP));
	/* forgotten after the remembering time and the hold: a fresh start */
	km.now += 3700 * SEC;
	names_expire();
	names_stats_get(&st);
	assert_int_equal(names_learn_sniffed("blocked.test", &d, 443, IPPROTO_TCP, 1000), 0);
	assert_int_equal(kget("203.0.113.31", 443, IPPROTO_TCP)->verdict, XP_V_BLOCK);
}

/* A place's cached verdict starts short and grows with each agreeing sniff, up to the TTL. */
static void test_sniffed_ttl_grows(void **state)
{
	union xp_sockaddr e = sa("203.0.113.40", 443);
	const uint64_t ttl = 300000; /* sniff.c's 5 minutes */
	uint64_t want[] = { 30, 60, 120, 240, 300, 300 };

	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct xp_dst_verdict *v;

		assert_int_equal(names_learn_sniffed("a.proxied.test", &e, 443, IPPROTO_TCP, ttl), 0);
		v = kget("203.0.113.40", 443, IPPROTO_TCP);
		assert_non_null(v);
		assert_int_equal(v->expires_ns, km.now + want[i] * SEC);
		km.now += want[i] * SEC + SEC; /* expired: the next flow is sniffed again */
		names_expire();
		assert_null(kget("203.0.113.40", 443, IPPROTO_TCP));
	}
	/* another verdict there starts the count over (and the place is mixed for a while):
	 * after the hold, the first agreeing sniff is the second of the new verdict (60 s) */
	assert_int_equal(names_learn_sniffed("plain.test", &e, 443, IPPROTO_TCP, ttl), -EBUSY);
	km.now += 1801 * SEC;
	names_expire();
	assert_int_equal(names_learn_sniffed("plain.test", &e, 443, IPPROTO_TCP, ttl), 0);
	assert_int_equal(kget("203.0.113.40", 443, IPPROTO_TCP)->expires_ns, km.now + 60 * SEC);
}

static void test_bad_input(void **state)
{
	char long_label[80], long_name[300], out[300];
	union xp_sockaddr a = sa("192.0.2.1", 0), bad;
	struct names_stats st;

	memset(long_label, 'a', 64);
	long_label[64] = '\0';
	memset(long_name, 0, sizeof(long_name));
	for (int i = 0; i < 127; i++)
		strcat(long_name, "a.");
	strcat(long_name, "bb"); /* 256 characters */
	memset(&bad, 0, sizeof(bad));
	bad.sa.sa_family = AF_UNIX;

	assert_int_equal(names_learn(NULL, &a, 1), -EINVAL);
	assert_int_equal(names_learn("", &a, 1), -EINVAL);
	assert_int_equal(names_learn(".", &a, 1), -EINVAL);
	assert_int_equal(names_learn("a..b", &a, 1), -EINVAL);
	assert_int_equal(names_learn(".a", &a, 1), -EINVAL);
	assert_int_equal(names_learn("a b.test", &a, 1), -EINVAL);
	assert_int_equal(names_learn("a\x01.test", &a, 1), -EINVAL);
	assert_int_equal(names_learn("caf\xc3\xa9.test", &a, 1), -EINVAL);
	assert_int_equal(names_learn(long_label, &a, 1), -EINVAL);
	assert_int_equal(names_learn(long_name, &a, 1), -EINVAL);
	assert_int_equal(names_learn("ok.test", &bad, 1), -EINVAL);
	assert_int_equal(names_learn("ok.test", NULL, 1), -EINVAL);
	assert_int_equal(km.sets, 0);
	names_stats_get(&st);
	assert_int_equal(st.live, 0);

	/* the longest legal name and label */
	long_label[63] = '\0';
	assert_int_equal(names_normalize(long_label, out, sizeof(out)), 0);
	long_name[253] = '\0';
	assert_int_equal(names_normalize(long_name, out, sizeof(out)), 0);
	assert_int_equal(strlen(out), 253);
	/* a buffer too small is an error, not a truncation */
	assert_int_equal(names_normalize("abc.test", out, 4), -EINVAL);

	/* the map refuses: the error comes back, nothing claims to be written */
	km.set_rc = -E2BIG;
	assert_int_equal(names_learn("ok.proxied.test", &a, 1), -E2BIG);
	names_stats_get(&st);
	assert_int_equal(st.map_errors, 1);
	assert_int_equal(st.learned, 0);
}

static void test_route_domain(void **state)
{
	struct xp_route_result r = { .size = sizeof(r) };

	assert_int_equal(names_route_domain("www.proxied.test", &r), 0);
	assert_int_equal(r.route, XP_ROUTE_PROXY);
	assert_string_equal(r.outbound, "px");
	assert_int_equal(r.rule_id, 2);
	assert_int_equal(r.flags, 0);

	/* the address rule is unknown and does not match; the port rule makes it partial */
	assert_int_equal(names_route_domain("webonly.test", &r), 0);
	assert_int_equal(r.flags, XP_ROUTE_F_PARTIAL);
	assert_int_equal(r.rule_id, 4);

	assert_int_equal(names_route_domain("blocked.test", &r), 0);
	assert_int_equal(r.route, XP_ROUTE_BLOCK);
	assert_int_equal(names_route_domain("nothing.example", &r), 0);
	assert_int_equal(r.route, XP_ROUTE_DIRECT);
	assert_int_equal(r.rule_id, 0);

	assert_int_equal(names_route_domain("bad..name", &r), -EINVAL);
	r.size = 4;
	assert_int_equal(names_route_domain("blocked.test", &r), -EINVAL);
}

static void test_dns_target(void **state)
{
	static const char *const dns_rules[] = {
		"dst-cidr:192.0.2.53/32, DNS",
		"domain-suffix:proxied.test, px",
		NULL,
	};
	union xp_sockaddr a = sa("192.0.2.53", 0), b = sa("192.0.2.54", 0);
	char err[256];
	struct rule r;

	names_fini(0);
	rule_list_free(&rl);
	assert_int_equal(setup_with(dns_rules, "DIRECT", 16), 0);
	assert_int_equal(rl.rules[0].kind, RT_DNS);
	/* the resolver's own address: the kernel rule (DNS) decides, nothing is written */
	assert_int_equal(names_learn("ns.proxied.test", &a, 1000), 0);
	assert_null(kget("192.0.2.53", 0, 0));
	assert_int_equal(names_learn("www.proxied.test", &b, 1000), 0);
	assert_int_equal(kget("192.0.2.54", 0, 0)->verdict, XP_V_PROXY);

	/* DNS is a rule target, never the fallback */
	assert_int_equal(rule_parse("dns", true, ".", &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "fallback cannot be DNS"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_learn_writes_before_return, setup, teardown),
		cmocka_unit_test_setup_teardown(test_address_rule_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_is_inspect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_and_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sniffed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sniffed_mixed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sniffed_ttl_grows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_route_domain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dns_target, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
