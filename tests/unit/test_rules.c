/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_rules - the [route] language: parser (every error), userspace matcher, and the compiler,
 * checked against tests/unit/rule_model.h (a plain model of the kernel's rule walk) on
 * thousands of random rule lists and flows.
 *
 * XP_TEST_SEED=<n> in the environment replays a particular random run; the seed in use is
 * printed when a random check fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "rules.h"
#include "rule_model.h"

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                     */

static char tmpdir[64];

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		fail_msg("out of memory");
	if (!p)
		abort(); /* fail_msg does not return; tells the compiler so */
	return p;
}

static void rm_tmpdir(void)
{
	char cmd[128];

	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	tmpdir[0] = '\0';
}

static int group_setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/xp-test-rules-%d-XXXXXX", (int)getpid());
	if (!mkdtemp(tmpdir))
		return -1;
	atexit(rm_tmpdir); /* also when an assertion aborts the run */
	return 0;
}

static int group_teardown(void **state)
{
	rm_tmpdir();
	return 0;
}

static const char *write_file(const char *name, const void *data, size_t len)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void parse_ok(const char *text, struct rule *r)
{
	char err[8192];
	int rc = rule_parse(text, false, tmpdir, r, err, sizeof(err));

	if (rc)
		fail_msg("rule '%s' refused: %s", text, err);
}

static void expect_err(const char *text, const char *msg)
{
	char err[8192];
	struct rule r;
	int rc = rule_parse(text, false, tmpdir, &r, err, sizeof(err));

	if (rc != -EINVAL)
		fail_msg("rule '%s' gave %d, expected -EINVAL", text, rc);
	if (strcmp(err, msg))
		fail_msg("rule '%s':\n  got      '%s'\n  expected '%s'", text, err, msg);
	/* a refused rule must come back empty (nothing to free, nothing half-built) */
	assert_int_equal(r.n_conds, 0);
	assert_null(r.conds);
	assert_null(r.target);
}

static void expect_err_prefix(const char *text, const char *prefix)
{
	char err[8192];
	struct rule r;
	int rc = rule_parse(text, false, tmpdir, &r, err, sizeof(err));

	if (rc != -EINVAL)
		fail_msg("rule '%s' gave %d, expected -EINVAL", text, rc);
	if (strncmp(err, prefix, strlen(prefix)))
		fail_msg("rule '%s':\n  got      '%s'\n  expected '%s...'", text, err, prefix);
}

static const char *const outbounds[] = {"o1", "o2", "o3", "proxy"};

static int ob_id(void *ctx, const char *name)
{
	(void)ctx;
	for (size_t i = 0; i < sizeof(outbounds) / sizeof(outbounds[0]); i++)
		if (!strcmp(outbounds[i], name))
			return (int)i + 1;
	return -ENOENT;
}

static void list_from(struct rule_list *rl, const char *const *texts, size_t n, const char *fb)
{
	char err[256];

	memset(rl, 0, sizeof(*rl));
	rl->rules = calloc(n ? n : 1, sizeof(*rl->rules));
	assert_non_null(rl->rules);
	for (size_t i = 0; i < n; i++) {
		parse_ok(texts[i], &rl->rules[i]);
		rl->rules[i].id = (uint32_t)i + 1;
		rl->rules[i].line = (int)i + 10;
		rl->n++;
	}
	assert_int_equal(
		rule_parse(fb ? fb : "DIRECT", true, NULL, &rl->fallback, err, sizeof(err)), 0);
}

static void addr(uint8_t out[16], const char *s)
{
	struct in_addr a4;

	if (inet_pton(AF_INET, s, &a4) == 1) {
		rule_addr_from_v4(out, a4.s_addr);
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, s, out), 1);
}

static struct rule_flow flow(const char *src, const char *dst, uint16_t sport, uint16_t dport,
			     uint8_t proto, const char *domain)
{
	struct rule_flow f = {.sport = sport, .dport = dport, .l4proto = proto, .domain = domain};

	addr(f.saddr, src);
	addr(f.daddr, dst);
	return f;
}

/* What rule_list_match's answer means for the datapath: verdict, outbound, rule id. */
static struct model_verdict expected(const struct rule_list *rl, const struct rule_flow *f)
{
	const struct rule *r = rule_list_match(rl, f);
	struct model_verdict v = {.vsrc = r == &rl->fallback ? XP_SRC_FALLBACK : XP_SRC_RULE};

	v.rule_id = r == &rl->fallback ? 0 : r->id;
	switch (r->kind) {
	case RT_BLOCK:
		v.verdict = XP_V_BLOCK;
		break;
	case RT_OUTBOUND:
		v.verdict = XP_V_PROXY;
		v.outbound_id = (uint16_t)ob_id(NULL, r->target);
		break;
	default:
		v.verdict = XP_V_DIRECT;
		break;
	}
	return v;
}

static void compile_ok(const struct rule_list *rl, uint32_t gen, struct rule_image *img)
{
	char err[256], msg[256];
	int rc = rules_compile(rl, gen, ob_id, NULL, img, err, sizeof(err));

	if (rc)
		fail_msg("compile failed (%d): %s", rc, err);
	if (model_check_image(img, msg, sizeof(msg)))
		fail_msg("malformed image: %s", msg);
}

static void check_flow(const struct rule_list *rl, const struct rule_image *img,
		       const struct rule_flow *f)
{
	struct model_verdict e = expected(rl, f), m = model_eval(img, f);

	if (e.verdict != m.verdict || e.outbound_id != m.outbound_id || e.rule_id != m.rule_id ||
	    e.vsrc != m.vsrc)
		fail_msg("kernel model and rule_list_match disagree: model %u/%u/rule %u, "
			 "matcher %u/%u/rule %u",
			 m.verdict, m.outbound_id, m.rule_id, e.verdict, e.outbound_id, e.rule_id);
}

/* ------------------------------------------------------------------------------------------ */
/* Parser                                                                                      */

static void test_parse_valid(void **state)
{
	struct rule r;

	parse_ok(" dst-cidr:10.0.0.0/8 | 192.0.2.1 & !dport:80|8000-8999 &proto:tcp , proxy ", &r);
	assert_int_equal(r.kind, RT_OUTBOUND);
	assert_string_equal(r.target, "proxy");
	assert_false(r.has_domain);
	assert_int_equal(r.n_conds, 3);
	assert_int_equal(r.conds[0].type, RC_DST_CIDR);
	assert_false(r.conds[0].negate);
	assert_int_equal(r.conds[0].n, 2);
	/* sorted by prefix length: the /8 first, then the address as a /32 (96 + 32) */
	assert_int_equal(r.conds[0].cidrs[0].plen, 96 + 8);
	assert_int_equal(r.conds[0].cidrs[0].addr[12], 10);
	assert_int_equal(r.conds[0].cidrs[1].plen, 128);
	assert_int_equal(r.conds[0].cidrs[1].addr[15], 1);
	assert_int_equal(r.conds[1].type, RC_DPORT);
	assert_true(r.conds[1].negate);
	assert_int_equal(r.conds[1].n, 2);
	assert_int_equal(r.conds[1].ports[0].lo, 80);
	assert_int_equal(r.conds[1].ports[0].hi, 80);
	assert_int_equal(r.conds[1].ports[1].lo, 8000);
	assert_int_equal(r.conds[1].ports[1].hi, 8999);
	assert_int_equal(r.conds[2].type, RC_PROTO);
	assert_int_equal(r.conds[2].l4masks[0], XP_L4_TCP);
	rule_free(&r);

	parse_ok("ipv:6 & sport:1-65535 & src-cidr:2001:db8::/32|::1, direct", &r);
	assert_int_equal(r.kind, RT_DIRECT); /* DIRECT and BLOCK in any case */
	assert_int_equal(r.conds[0].ipmasks[0], XP_IP_V6);
	assert_int_equal(r.conds[1].ports[0].lo, 1);
	assert_int_equal(r.conds[1].ports[0].hi, 65535);
	assert_int_equal(r.conds[2].cidrs[0].plen, 32);
	assert_int_equal(r.conds[2].cidrs[1].plen, 128);
	rule_free(&r);

	parse_ok("domain:WWW.Example.COM. & domain-suffix:example.com|b_c.org, Block", &r);
	assert_int_equal(r.kind, RT_BLOCK);
	assert_true(r.has_domain);
	assert_string_equal(r.conds[0].names[0], "www.example.com");
	assert_string_equal(r.conds[1].names[1], "b_c.org");
	rule_free(&r);

	/* realistic patterns stay well within the expansion budget */
	static const char *const fine[] = {
		"domain-regex:^[a-z0-9-]{1,63}(\\.[a-z0-9-]{1,63}){1,4}$, DIRECT",
		"domain-regex:(a|b){1,253}, DIRECT",
		"domain-regex:^(www\\.)?ex+ample\\.(com|net|org)$, DIRECT",
		"domain-regex:[]a-z]+x{2,}y{,3}, DIRECT",
		"domain-regex:a)b, DIRECT", /* an unmatched ')' is an ordinary character */
		"domain-regex:(a|aa){1,170}$, DIRECT", /* 511 atoms: just within 512 */
	};
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		parse_ok(fine[i], &r);
		rule_free(&r);
	}

	/* a regex keeps its '|' and ',' (the target is after the LAST comma) */
	parse_ok("domain-regex:^(ads|track)[0-9]{1,3}\\.example\\.(com|net)$, o1", &r);
	assert_int_equal(r.conds[0].n, 1);
	assert_string_equal(r.conds[0].names[0], "^(ads|track)[0-9]{1,3}\\.example\\.(com|net)$");
	rule_free(&r);

	parse_ok("! dst-cidr:0.0.0.0/0|::/0, BLOCK", &r);
	assert_true(r.conds[0].negate);
	assert_int_equal(r.conds[0].cidrs[0].plen, 0);
	assert_int_equal(r.conds[0].cidrs[1].plen, 96);
	rule_free(&r);

	/* duplicates collapse */
	parse_ok("dst-cidr:10.0.0.0/8|10.0.0.0/8, DIRECT", &r);
	assert_int_equal(r.conds[0].n, 1);
	rule_free(&r);

	/* fallback: only a target */
	assert_int_equal(rule_parse("  proxy ", true, NULL, &r, NULL, 0), 0);
	assert_int_equal(r.kind, RT_OUTBOUND);
	assert_string_equal(r.target, "proxy");
	assert_int_equal(r.n_conds, 0);
	rule_free(&r);
	rule_free(&r); /* freeing twice is harmless: rule_free leaves an empty rule */
	rule_free(NULL);
}

static void test_parse_errors(void **state)
{
	static const struct {
		const char *text, *msg;
	} cases[] = {
		{"", "missing target: expected 'CONDITION [& CONDITION ...], TARGET'"},
		{"dport:80", "missing target: expected 'CONDITION [& CONDITION ...], TARGET'"},
		{", DIRECT", "no condition before the target (use 'fallback = TARGET' for a "
			     "catch-all)"},
		{"dport:80,", "missing target (expected DIRECT, BLOCK or an outbound name)"},
		{"dport:80 &, DIRECT", "empty condition (dangling '&'?)"},
		{"& dport:80, DIRECT", "empty condition (dangling '&'?)"},
		{"dport:80 && proto:tcp, DIRECT", "empty condition (dangling '&'?)"},
		{"foo:1, DIRECT",
		 "unknown condition type 'foo' (expected dst-cidr, src-cidr, dport, sport, proto, "
		 "ipv, domain, domain-suffix, domain-keyword or domain-regex)"},
		{"DPORT:80, DIRECT",
		 "unknown condition type 'DPORT' (expected dst-cidr, src-cidr, dport, sport, "
		 "proto, ipv, domain, domain-suffix, domain-keyword or domain-regex)"},
		{"dport, DIRECT", "condition 'dport' has no ':' (expected TYPE:VALUE)"},
		{"dport:, DIRECT", "dport: empty value"},
		{"dport:80|, DIRECT", "dport: empty alternative (stray '|'?)"},
		{"dport:|80, DIRECT", "dport: empty alternative (stray '|'?)"},
		{"dport:0, DIRECT", "dport: port 0 in '0' is not valid (ports are 1-65535)"},
		{"sport:0-10, DIRECT", "sport: port 0 in '0-10' is not valid (ports are 1-65535)"},
		{"dport:65536, DIRECT", "dport: invalid port '65536' (expected 1-65535 or LO-HI)"},
		{"dport:080000, DIRECT",
		 "dport: invalid port '080000' (expected 1-65535 or LO-HI)"},
		{"dport:+80, DIRECT", "dport: invalid port '+80' (expected 1-65535 or LO-HI)"},
		{"dport:-80, DIRECT", "dport: invalid port '-80' (expected 1-65535 or LO-HI)"},
		{"dport:80-, DIRECT", "dport: invalid port '80-' (expected 1-65535 or LO-HI)"},
		{"dport:1-2-3, DIRECT", "dport: invalid port '1-2-3' (expected 1-65535 or LO-HI)"},
		{"dport:http, DIRECT", "dport: invalid port 'http' (expected 1-65535 or LO-HI)"},
		{"dport:90-80, DIRECT", "dport: range '90-80' has its low end above its high end"},
		{"dport:80 & dport:81, DIRECT",
		 "condition type 'dport' appears twice in one rule; use alternatives (dport:A|B) "
		 "or two rules"},
		{"dst-cidr:10.0.0.0/8 & !dst-cidr:10.1.0.0/16, DIRECT",
		 "condition type 'dst-cidr' appears twice in one rule; use alternatives "
		 "(dst-cidr:A|B) or two rules"},
		{"!!dport:80, DIRECT", "double negation in '!!dport:80'"},
		{"proto:sctp, DIRECT", "proto: invalid value 'sctp' (expected tcp, udp or icmp)"},
		{"proto:TCP, DIRECT", "proto: invalid value 'TCP' (expected tcp, udp or icmp)"},
		{"ipv:5, DIRECT", "ipv: invalid value '5' (expected 4 or 6)"},
		{"!ipv:4|6, DIRECT", "'!ipv:4|6' can never match"},
		{"dst-cidr:10.0.0.1/8, DIRECT",
		 "dst-cidr: '10.0.0.1/8': host bits set, did you mean 10.0.0.0/8?"},
		{"src-cidr:2001:db8::1/32, DIRECT",
		 "src-cidr: '2001:db8::1/32': host bits set, did you mean 2001:db8::/32?"},
		{"dst-cidr:10.0.0.0/33, DIRECT",
		 "dst-cidr: invalid prefix length in '10.0.0.0/33' (0-32 for IPv4)"},
		{"dst-cidr:::/129, DIRECT",
		 "dst-cidr: invalid prefix length in '::/129' (0-128 for IPv6)"},
		{"dst-cidr:10.0.0.0/, DIRECT",
		 "dst-cidr: invalid prefix length in '10.0.0.0/' (0-32 for IPv4)"},
		{"dst-cidr:10.0.0.0/-8, DIRECT",
		 "dst-cidr: invalid prefix length in '10.0.0.0/-8' (0-32 for IPv4)"},
		{"dst-cidr:10.0.0.0/8x, DIRECT",
		 "dst-cidr: invalid prefix length in '10.0.0.0/8x' (0-32 for IPv4)"},
		{"dst-cidr:1.2.3, DIRECT", "dst-cidr: invalid address '1.2.3'"},
		{"dst-cidr:1.2.3.256, DIRECT", "dst-cidr: invalid address '1.2.3.256'"},
		{"dst-cidr:fe80::1%eth0, DIRECT", "dst-cidr: invalid address 'fe80::1%eth0'"},
		{"dst-cidr:::ffff:1.2.3.0/120, DIRECT",
		 "dst-cidr: '::ffff:1.2.3.0/120' is IPv4-mapped: write IPv4 prefixes as IPv4 "
		 "(1.2.3.0/24)"},
		{"dst-cidr:@, DIRECT", "dst-cidr: '@' needs a file name"},
		{"domain:exa mple.com, DIRECT",
		 "domain: 'exa mple.com': character ' ' is not allowed"},
		{"domain-suffix:*.example.com, DIRECT",
		 "domain-suffix: '*.example.com': '*' is not allowed (domain-suffix matches a name "
		 "and all its subdomains)"},
		{"domain:a..b, DIRECT", "domain: 'a..b' has an empty label"},
		{"domain:.a, DIRECT", "domain: '.a' has an empty label"},
		{"domain:., DIRECT", "domain: '.' has an empty label"},
		{"domain-keyword:a/b, DIRECT",
		 "domain-keyword: 'a/b': character '/' is not allowed"},
		{"domain-regex:(, DIRECT", NULL}, /* regerror text checked below */
#define TOO_COMPLEX(re)                                                                            \
	{"domain-regex:" re ", DIRECT",                                                            \
	 "domain-regex: '" re "' is too complex (back-references, or repetitions that expand too " \
	 "far; names are at most 253 characters)"}
		TOO_COMPLEX("((a{1,50}){1,50}){1,50}"),
		TOO_COMPLEX("a{1,1000}"),
		TOO_COMPLEX("a{254}"),
		TOO_COMPLEX("(a*)*\\1"),
		/* found by fuzz_rules: each '+' doubles what regcomp builds */
		TOO_COMPLEX(
			"DIRMproto++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++"),
		TOO_COMPLEX("((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+"),
		TOO_COMPLEX(
			"[]a]{200}[a-z]{200}x{200}y{200}z{200}[[:alpha:]]{200}w{200}v{200}"
			"u{200}t{200}s{200}r{200}q{200}p{200}o{200}n{200}m{200}l{200}k{200}j{200}"
			"i{200}"),
		TOO_COMPLEX("(((((((((((((((((((((((((((((((((a)))))))))))))))))))))))))))))))))"),
		TOO_COMPLEX("(a|aa){1,171}$"), /* 3 * 171 + 1 atoms: one over 512 */
#undef TOO_COMPLEX
		{"dport:80, REJECT",
		 "target 'REJECT' is reserved (use DIRECT, BLOCK or an outbound "
		 "name)"},
		{"dport:80, Inspect", "target 'Inspect' is reserved (use DIRECT, BLOCK or an "
				      "outbound name)"},
		{"dport:80, bad name",
		 "invalid target 'bad name' (expected DIRECT, BLOCK or an outbound name of 1-31 "
		 "characters A-Z a-z 0-9 _ -)"},
		{"dport:80, a23456789012345678901234567890123",
		 "invalid target 'a23456789012345678901234567890123' (expected DIRECT, BLOCK or an "
		 "outbound name of 1-31 characters A-Z a-z 0-9 _ -)"},
	};
	char err[512];
	struct rule r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (cases[i].msg)
			expect_err(cases[i].text, cases[i].msg);

	/* the regex error text is glibc's */
	regex_t re;
	char msg[128], want[256];
	int rc = regcomp(&re, "(", REG_EXTENDED | REG_NOSUB | REG_ICASE);

	assert_int_not_equal(rc, 0);
	regerror(rc, &re, msg, sizeof(msg));
	snprintf(want, sizeof(want), "domain-regex: invalid regex '(': %s", msg);
	expect_err("domain-regex:(, DIRECT", want);

	/* names: 63-character labels and 253-character names are the limits */
	char name[300];

	memset(name, 'a', 64);
	strcpy(name + 64, ".com, DIRECT");
	snprintf(want, sizeof(want), "domain: '%.*s.com': a label is longer than 63 characters", 64,
		 name);
	{
		char text[400];

		snprintf(text, sizeof(text), "domain:%s", name);
		expect_err(text, want);
		memset(name, 0, sizeof(name));
		for (int i = 0; i < 4; i++)
			memcpy(name + i * 64,
			       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.",
			       64);
		name[253] = '\0'; /* 253 characters, ends in a full label */
		snprintf(text, sizeof(text), "domain-suffix:%s, DIRECT", name);
		parse_ok(text, &r);
		rule_free(&r);
		name[253] = 'a';
		name[254] = '\0';
		snprintf(text, sizeof(text), "domain-suffix:%s, DIRECT", name);
		expect_err_prefix(text, "domain-suffix: '");
		snprintf(want, sizeof(want),
			 "domain-suffix: '%.64s...' is not a valid name (1-253 "
			 "characters)",
			 name);
		expect_err(text, want);
	}

	/* fallback lines */
	assert_int_equal(rule_parse("proxy, DIRECT", true, NULL, &r, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "fallback takes only a target (DIRECT, BLOCK or an outbound "
				 "name), got 'proxy, DIRECT'");
	assert_int_equal(rule_parse("", true, NULL, &r, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "missing target (expected DIRECT, BLOCK or an outbound name)");
	assert_int_equal(rule_parse("REJECT", true, NULL, &r, err, sizeof(err)), -EINVAL);
	assert_int_equal(rule_parse(NULL, false, NULL, &r, err, sizeof(err)), -EINVAL);
	/* a tiny or missing error buffer is fine */
	assert_int_equal(rule_parse("dport:0, DIRECT", false, NULL, &r, err, 4), -EINVAL);
	assert_int_equal(strlen(err), 3);
	assert_int_equal(rule_parse("dport:0, DIRECT", false, NULL, &r, NULL, 0), -EINVAL);
}

static void test_parse_cidr_helper(void **state)
{
	struct rule_cidr c;
	uint8_t a[16];

	assert_int_equal(rule_parse_cidr("192.0.2.0/24", &c), 0);
	assert_int_equal(c.plen, 96 + 24);
	rule_addr_from_v4(a, htonl(0xc0000200));
	assert_memory_equal(c.addr, a, 16);
	assert_int_equal(rule_parse_cidr("2001:db8::/32", &c), 0);
	assert_int_equal(c.plen, 32);
	assert_int_equal(rule_parse_cidr("::", &c), 0);
	assert_int_equal(c.plen, 128);
	assert_int_equal(rule_parse_cidr("0.0.0.0/0", &c), 0);
	assert_int_equal(c.plen, 96);
	assert_int_equal(rule_parse_cidr("192.0.2.1/24", &c), -EINVAL);
	assert_int_equal(rule_parse_cidr(" 192.0.2.0/24", &c), -EINVAL);
	assert_int_equal(rule_parse_cidr("192.0.2.0/24 ", &c), -EINVAL);
	assert_int_equal(rule_parse_cidr("", &c), -EINVAL);
	assert_int_equal(rule_parse_cidr(NULL, &c), -EINVAL);
	char longs[200];

	memset(longs, '1', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	assert_int_equal(rule_parse_cidr(longs, &c), -EINVAL);
}

static void test_parse_file(void **state)
{
	static const char good[] = "# a list\r\n"
				   "10.0.0.0/8\r\n"
				   "\n"
				   "   192.0.2.0/24   # documentation\n"
				   "2001:db8::/32\n"
				   "198.51.100.7"; /* no final newline */
	static const char bad[] = "10.0.0.0/8\n"
				  "10.0.0.1/8\n"
				  "# fine\n"
				  "nonsense\n"
				  "10.0.0.0/99\n"
				  "1.2.3.4\n";
	struct rule r;
	char text[512], want[2048];
	const char *p;

	write_file("good.txt", good, sizeof(good) - 1);
	parse_ok("dst-cidr:@good.txt|203.0.113.0/24, DIRECT", &r); /* relative to base_dir */
	assert_int_equal(r.conds[0].n, 5);
	rule_free(&r);
	snprintf(text, sizeof(text), "src-cidr:@ %s/good.txt, DIRECT", tmpdir);
	parse_ok(text, &r); /* absolute */
	assert_int_equal(r.conds[0].n, 4);
	rule_free(&r);

	/* every bad line, with its line number in the file */
	p = write_file("bad.txt", bad, sizeof(bad) - 1);
	snprintf(want, sizeof(want),
		 "%s:2: '10.0.0.1/8': host bits set, did you mean 10.0.0.0/8?\n"
		 "%s:4: invalid address 'nonsense'\n"
		 "%s:5: invalid prefix length in '10.0.0.0/99' (0-32 for IPv4)",
		 p, p, p);
	expect_err("dst-cidr:@bad.txt, DIRECT", want);

	/* many bad lines: as many as fit, then how many more */
	{
		size_t n = 2000;
		char *buf = xmalloc(n * 8), *q = buf;
		char err[1024];
		const char *last;

		for (size_t i = 0; i < n; i++)
			q += sprintf(q, "bad%zu\n", i % 1000);
		p = write_file("many.txt", buf, (size_t)(q - buf));
		free(buf);
		assert_int_equal(rule_parse("dst-cidr:@many.txt, DIRECT", false, tmpdir, &r, err,
					    sizeof(err)),
				 -EINVAL);
		snprintf(want, sizeof(want), "%s:1: invalid address 'bad0'\n", p);
		assert_int_equal(strncmp(err, want, strlen(want)), 0);
		last = strrchr(err, '\n');
		assert_non_null(last);
		unsigned long shown = 0, more = 0;

		for (const char *s = err; *s; s++)
			shown += *s == '\n';
		assert_int_equal(
			sscanf(last + 1 + strlen(p), ": %lu more bad lines not shown", &more), 1);
		assert_int_equal(shown + more, n); /* every line accounted for */
	}

	/* missing, empty, NUL bytes, overlong lines */
	snprintf(want, sizeof(want),
		 "dst-cidr: cannot open '%s/nope.txt': No such file or directory", tmpdir);
	expect_err("dst-cidr:@nope.txt, DIRECT", want);
	p = write_file("empty.txt", "# nothing\n\n", 11);
	snprintf(want, sizeof(want), "dst-cidr: '%s' has no entries", p);
	expect_err("dst-cidr:@empty.txt, DIRECT", want);
	p = write_file("nul.txt", "10.0.0.0/8\n1.2.3.4\0junk\n", 24);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", p);
	expect_err("dst-cidr:@nul.txt, DIRECT", want);
	{
		char line[400];

		memset(line, '1', sizeof(line) - 1);
		line[sizeof(line) - 1] = '\n';
		p = write_file("long.txt", line, sizeof(line));
		snprintf(want, sizeof(want), "%s:1: line too long (400 bytes, max 256)", p);
		expect_err("dst-cidr:@long.txt, DIRECT", want);
	}
	/* a directory, a FIFO (which must not block) or a device is not a list */
	snprintf(text, sizeof(text), "%s/adir", tmpdir);
	assert_int_equal(mkdir(text, 0700), 0);
	snprintf(want, sizeof(want), "dst-cidr: '%s' is not a regular file", text);
	expect_err("dst-cidr:@adir, DIRECT", want);
	snprintf(text, sizeof(text), "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(text, 0600), 0);
	snprintf(want, sizeof(want), "dst-cidr: '%s' is not a regular file", text);
	expect_err("dst-cidr:@fifo, DIRECT", want);
	expect_err("src-cidr:@/dev/zero, DIRECT", "src-cidr: '/dev/zero' is not a regular file");
	{
		/* sparse: 300 MiB without writing them */
		int fd;

		snprintf(text, sizeof(text), "%s/huge.txt", tmpdir);
		fd = open(text, O_CREAT | O_WRONLY, 0600);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 300l << 20), 0);
		close(fd);
		snprintf(want, sizeof(want), "dst-cidr: '%s' is larger than 256 MiB", text);
		expect_err("dst-cidr:@huge.txt, DIRECT", want);
	}
}

static void test_parse_file_limit(void **state)
{
	/* 1,000,000 entries are fine, one more is refused */
	size_t n = 1000000;
	char *buf = xmalloc(n * 20 + 32), *q = buf;
	struct rule r;
	char want[512];
	const char *p;

	assert_non_null(buf);
	for (size_t i = 0; i < n; i++)
		q += sprintf(q, "%zu.%zu.%zu.0/24\n", (i >> 16) & 255, (i >> 8) & 255, i & 255);
	p = write_file("big.txt", buf, (size_t)(q - buf));
	parse_ok("dst-cidr:@big.txt, DIRECT", &r);
	assert_int_equal(r.conds[0].n, n);
	struct rule_flow f = flow("192.0.2.1", "0.1.2.3", 1, 80, 6, NULL);

	assert_true(rule_match(&r, &f));
	rule_free(&r);
	q += sprintf(q, "255.255.255.255\n");
	p = write_file("big.txt", buf, (size_t)(q - buf));
	free(buf);
	snprintf(want, sizeof(want), "dst-cidr: '%s' has more than 1000000 entries", p);
	expect_err("dst-cidr:@big.txt, DIRECT", want);
}

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

static void seed_rng(void)
{
	const char *s = getenv("XP_TEST_SEED");

	rng = s ? strtoull(s, NULL, 0) : 0x9e3779b97f4a7c15ull;
	if (!rng)
		rng = 1;
}

/* Garbage, truncated and oversized rule text: an error with a message, or a valid rule. */
static void test_parse_garbage(void **state)
{
	static const char *const valid[] = {
		"dst-cidr:10.0.0.0/8|2001:db8::/32 & !dport:80|443-445 & proto:tcp|udp, proxy",
		"domain-regex:^a(b|c){1,3}$ & ipv:4, BLOCK",
		"src-cidr:192.0.2.0/24 & sport:1000-2000 & domain-keyword:ads, DIRECT",
	};
	static const char alphabet[] = "dst-cidr:src-cidr:dport:sport:proto:ipv:domain:"
				       "0123456789abcdef.:/|&!,@- \t[](){}*^$\\DIRECTBLOCK";
	char buf[600], err[512];
	struct rule r;

	seed_rng();
	for (size_t v = 0; v < sizeof(valid) / sizeof(valid[0]); v++) {
		size_t len = strlen(valid[v]);

		for (size_t cut = 0; cut <= len; cut++) {
			memcpy(buf, valid[v], cut);
			buf[cut] = '\0';
			err[0] = '\0';
			int rc = rule_parse(buf, false, tmpdir, &r, err, sizeof(err));

			if (rc == 0)
				rule_free(&r);
			else
				assert_true(rc == -EINVAL && err[0]);
		}
	}
	for (int i = 0; i < 20000; i++) {
		size_t len = rn(sizeof(buf) - 1);

		for (size_t j = 0; j < len; j++)
			buf[j] = i % 4 == 0 ? (char)(rn(255) + 1)
					    : alphabet[rn(sizeof(alphabet) - 1)];
		buf[len] = '\0';
		err[0] = '\0';
		int rc = rule_parse(buf, i & 1, tmpdir, &r, err, sizeof(err));

		if (rc == 0) {
			struct rule_flow f = flow("10.1.2.3", "2001:db8::1", 5, 80, 6, "a.b");

			rule_match(&r, &f);
			rule_free(&r);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_true(err[0] != '\0');
		}
	}
	/* a very long rule: 20,000 alternatives */
	{
		size_t n = 20000;
		char *t = xmalloc(n * 8 + 32), *q = t;

		q += sprintf(q, "dport:");
		for (size_t j = 0; j < n; j++)
			q += sprintf(q, "%s%zu", j ? "|" : "", j % 65535 + 1);
		sprintf(q, ", DIRECT");
		parse_ok(t, &r);
		assert_int_equal(r.conds[0].n, n);
		rule_free(&r);
		free(t);
	}
	/* garbage @file */
	{
		char junk[4096];

		for (size_t j = 0; j < sizeof(junk); j++)
			junk[j] = (char)rnd();
		write_file("junk.bin", junk, sizeof(junk));
		assert_int_equal(rule_parse("dst-cidr:@junk.bin, DIRECT", false, tmpdir, &r, err,
					    sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "junk.bin:"));
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Matcher                                                                                     */

static bool m(const char *rule, struct rule_flow f)
{
	struct rule r;
	bool res;

	parse_ok(rule, &r);
	res = rule_match(&r, &f);
	rule_free(&r);
	return res;
}

static void test_match(void **state)
{
	struct rule_flow t4 = flow("192.168.1.10", "10.1.2.3", 40000, 443, 6, NULL);
	struct rule_flow u6 = flow("fd00::10", "2001:db8:1::5", 5353, 53, 17, NULL);
	struct rule_flow i4 = flow("192.168.1.10", "8.8.8.8", 0, 0, 1, NULL);
	struct rule_flow i6 = flow("fd00::10", "2001:db8::1", 0, 0, 58, NULL);
	struct rule_flow gre = flow("192.168.1.10", "8.8.8.8", 0, 0, 47, NULL);

	assert_true(m("dst-cidr:10.0.0.0/8, DIRECT", t4));
	assert_true(m("dst-cidr:10.1.2.3, DIRECT", t4));
	assert_false(m("dst-cidr:10.1.2.4, DIRECT", t4));
	assert_true(m("dst-cidr:0.0.0.0/0, DIRECT", t4));
	assert_false(m("dst-cidr:0.0.0.0/0, DIRECT", u6)); /* IPv4 prefixes never match IPv6 */
	assert_false(m("dst-cidr:::/0, DIRECT", t4));	   /* ... and ::/0 is "all IPv6" */
	assert_true(m("!dst-cidr:::/0, DIRECT", t4));
	assert_true(m("dst-cidr:::/0, DIRECT", u6));
	assert_false(m("dst-cidr:::/64, DIRECT", t4)); /* covers ::ffff:0:0/96 bitwise only */
	assert_true(m("src-cidr:192.168.0.0/16 & dst-cidr:10.1.2.0/24, DIRECT", t4));
	assert_false(m("src-cidr:192.168.0.0/16 & !dst-cidr:10.1.2.0/24, DIRECT", t4));
	assert_true(m("dst-cidr:2001:db8::/32, DIRECT", u6));
	assert_false(m("dst-cidr:2001:db8:2::/48, DIRECT", u6));

	assert_true(m("dport:443, DIRECT", t4));
	assert_true(m("dport:1-442|443, DIRECT", t4));
	assert_false(m("dport:444-65535, DIRECT", t4));
	assert_true(m("!dport:80, DIRECT", t4));
	assert_true(m("sport:40000, DIRECT", t4));
	assert_false(m("dport:1-65535, DIRECT", i4)); /* no ports: port 0 */
	assert_true(m("!dport:1-65535, DIRECT", i4));

	assert_true(m("proto:tcp, DIRECT", t4));
	assert_false(m("proto:udp, DIRECT", t4));
	assert_true(m("proto:icmp, DIRECT", i4));
	assert_true(m("proto:icmp, DIRECT", i6)); /* ICMPv6 is icmp too */
	assert_false(m("proto:tcp|udp|icmp, DIRECT", gre));
	assert_true(m("!proto:tcp|udp|icmp, DIRECT", gre));
	assert_true(m("ipv:4, DIRECT", t4));
	assert_false(m("ipv:4, DIRECT", u6));
	assert_true(m("!ipv:4, DIRECT", u6));
	assert_true(m("ipv:4|6, DIRECT", u6));

	/* domains: only with a name */
	struct rule_flow d = flow("192.168.1.10", "10.1.2.3", 1, 443, 6, "WWW.Example.com.");

	assert_true(m("domain:www.example.com, DIRECT", d));
	assert_false(m("domain:example.com, DIRECT", d));
	assert_true(m("domain-suffix:example.com, DIRECT", d));
	assert_true(m("domain-suffix:www.example.com, DIRECT", d));
	assert_true(m("domain-suffix:com, DIRECT", d));
	assert_false(m("domain-suffix:ample.com, DIRECT", d)); /* label boundary */
	assert_true(m("domain-keyword:xamp, DIRECT", d));
	assert_false(m("domain-keyword:xyz, DIRECT", d));
	assert_true(m("domain-regex:^www\\.[a-z]+\\.com$, DIRECT", d));
	assert_true(m("domain-regex:EXAMPLE, DIRECT", d)); /* REG_ICASE */
	assert_false(m("domain-regex:^example, DIRECT", d));
	assert_true(m("!domain:other.org, DIRECT", d));
	assert_true(m("domain-suffix:example.com & dport:443, DIRECT", d));
	assert_false(m("domain-suffix:example.com & dport:80, DIRECT", d));
	/* unknown is not "not example.com" */
	assert_false(m("domain:www.example.com, DIRECT", t4));
	assert_false(m("!domain:www.example.com, DIRECT", t4));
	assert_false(m("!domain-regex:x, DIRECT", t4));
	/* an implausible name counts as unknown */
	char longname[300];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	d.domain = longname;
	assert_false(m("!domain:x.com, DIRECT", d));
	assert_false(m("domain-keyword:aaa, DIRECT", d));
	d.domain = "";
	assert_false(m("!domain:x.com, DIRECT", d));

	assert_false(rule_match(NULL, &t4));
}

static void test_list_match(void **state)
{
	static const char *const rules[] = {
		"dst-cidr:10.1.2.0/24 & dport:22, BLOCK",
		"dst-cidr:10.0.0.0/8, o1",
		"domain-suffix:example.com, o2",
		"dport:443, DIRECT",
	};
	struct rule_list rl;
	struct rule_flow f;

	list_from(&rl, rules, 4, "proxy");
	f = flow("192.168.1.2", "10.1.2.3", 1, 22, 6, NULL);
	assert_int_equal(rule_list_match(&rl, &f)->id, 1);
	f.dport = 80;
	assert_int_equal(rule_list_match(&rl, &f)->id, 2);
	f = flow("192.168.1.2", "192.0.2.1", 1, 443, 6, "a.example.com");
	assert_int_equal(rule_list_match(&rl, &f)->id, 3);
	f.domain = NULL;
	assert_int_equal(rule_list_match(&rl, &f)->id, 4);
	f.dport = 80;
	assert_ptr_equal(rule_list_match(&rl, &f), &rl.fallback);
	assert_string_equal(rule_list_match(&rl, &f)->target, "proxy");
	assert_int_equal(rule_list_match(&rl, &f)->id, 0);
	rule_list_free(&rl);
	rule_list_free(&rl);
	rule_list_free(NULL);

	/* an empty, zeroed list answers with its (zeroed) fallback */
	memset(&rl, 0, sizeof(rl));
	assert_ptr_equal(rule_list_match(&rl, &f), &rl.fallback);
}

/* rule_list_match_partial(): what a DNS answer (name + address) can decide on its own. */
static const struct rule *mp(const struct rule_list *rl, const struct rule_flow *f, unsigned known,
			     bool *partial)
{
	*partial = !*partial; /* must be written on every path */
	return rule_list_match_partial(rl, f, known, partial);
}

static void test_list_match_partial(void **state)
{
	static const char *const rules[] = {
		"dst-cidr:10.0.0.0/8, o1",			      /* 1 */
		"domain-suffix:example.com & dport:443, o2",	      /* 2 */
		"domain-suffix:example.com & !src-cidr:192.168.9.0/24, o3", /* 3 */
		"domain:plain.org, BLOCK",			      /* 4 */
		"domain-keyword:tracker & proto:udp, BLOCK",	      /* 5 */
		"!domain:x.net & dst-cidr:198.51.100.0/24, o1",	      /* 6 */
		"dport:80, DIRECT",				      /* 7 */
	};
	const unsigned dns = RF_KNOWN_DST | RF_KNOWN_DOMAIN;
	struct rule_list rl;
	struct rule_flow f;
	bool partial = false;
	const struct rule *r;

	list_from(&rl, rules, 7, "proxy");

	/* an address rule before the domain rules wins over the name */
	f = flow("::", "10.1.2.3", 0, 0, 0, "www.example.com");
	r = mp(&rl, &f, dns, &partial);
	assert_int_equal(r->id, 1);
	assert_false(partial);

	/* a domain rule that also depends on the port: partial, the walk stops there */
	f = flow("::", "192.0.2.1", 0, 0, 0, "www.example.com");
	r = mp(&rl, &f, dns, &partial);
	assert_int_equal(r->id, 2);
	assert_true(partial);
	/* ... and with the ports known it is decided either way */
	f.dport = 443;
	r = mp(&rl, &f, dns | RF_KNOWN_PORTS, &partial);
	assert_int_equal(r->id, 2);
	assert_false(partial);
	f.dport = 8443;
	r = mp(&rl, &f, dns | RF_KNOWN_PORTS, &partial);
	assert_int_equal(r->id, 3); /* the source is still unknown */
	assert_true(partial);
	addr(f.saddr, "192.168.9.9");
	r = mp(&rl, &f, RF_KNOWN_ALL, &partial);
	assert_false(partial);
	assert_ptr_equal(r, rule_list_match(&rl, &f));

	/* a name-only rule decides at once */
	f = flow("::", "192.0.2.1", 0, 0, 0, "PLAIN.org.");
	r = mp(&rl, &f, dns, &partial);
	assert_int_equal(r->id, 4);
	assert_false(partial);

	/* a known failing condition skips a rule even when another is unknown */
	f = flow("::", "192.0.2.1", 0, 0, 0, "tracker.io");
	r = mp(&rl, &f, dns | RF_KNOWN_PROTO, &partial); /* l4proto 0: not udp */
	assert_int_equal(r->id, 7);
	assert_true(partial); /* dport unknown */
	f.l4proto = 17;
	r = mp(&rl, &f, dns | RF_KNOWN_PROTO, &partial);
	assert_int_equal(r->id, 5);
	assert_false(partial);

	/* no name (known): domain conditions fail, negated ones too */
	f = flow("::", "198.51.100.7", 0, 0, 0, NULL);
	r = mp(&rl, &f, dns, &partial);
	assert_int_equal(r->id, 7);
	assert_true(partial);
	/* a negated domain condition with a name: decided */
	f.domain = "y.net";
	r = mp(&rl, &f, dns, &partial);
	assert_int_equal(r->id, 6);
	assert_false(partial);
	/* the name unknown: the first domain rule whose known conditions hold is a "maybe" */
	f = flow("::", "192.0.2.1", 0, 0, 0, "plain.org");
	r = mp(&rl, &f, RF_KNOWN_DST, &partial);
	assert_int_equal(r->id, 2);
	assert_true(partial);

	/* nothing known: the first rule is a maybe */
	r = mp(&rl, &f, 0, &partial);
	assert_int_equal(r->id, 1);
	assert_true(partial);

	/* everything known, nothing matches: the fallback, decided */
	f = flow("::", "192.0.2.1", 5, 5, 6, NULL);
	r = mp(&rl, &f, RF_KNOWN_ALL, &partial);
	assert_ptr_equal(r, &rl.fallback);
	assert_false(partial);

	/* an implausible name counts as no name */
	char longname[300];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	f = flow("::", "198.51.100.7", 0, 80, 0, longname);
	r = mp(&rl, &f, dns | RF_KNOWN_PORTS, &partial);
	assert_int_equal(r->id, 7);
	assert_false(partial);
	rule_list_free(&rl);

	/* empty list and NULL flow answer with the fallback */
	memset(&rl, 0, sizeof(rl));
	assert_ptr_equal(mp(&rl, &f, dns, &partial), &rl.fallback);
	assert_false(partial);
	assert_ptr_equal(rule_list_match_partial(&rl, NULL, dns, &partial), &rl.fallback);
	assert_ptr_equal(rule_list_match_partial(&rl, &f, dns, NULL), &rl.fallback);
}

/* ------------------------------------------------------------------------------------------ */
/* Compiler                                                                                    */

static const struct rule_image_cidr *find_cidr(const struct rule_image *img, uint32_t set,
					       const char *pfx)
{
	struct rule_cidr c;

	assert_int_equal(rule_parse_cidr(pfx, &c), 0);
	for (size_t i = 0; i < img->n_cidrs; i++)
		if (ntohl(img->cidrs[i].key.set_id) == set &&
		    img->cidrs[i].key.prefixlen == 32u + c.plen &&
		    !memcmp(img->cidrs[i].key.addr, c.addr, 16))
			return &img->cidrs[i];
	return NULL;
}

static const struct rule_image_cidr *find_mapped96(const struct rule_image *img, uint32_t set)
{
	return find_cidr(img, set, "0.0.0.0/0"); /* the same key as ::ffff:0:0/96 */
}

static void test_compile_single(void **state)
{
	static const char *const rules[] = {
		"dst-cidr:10.0.0.0/8 & !src-cidr:192.168.1.0/24 & dport:80|443|8000-8080 & "
		"!proto:tcp & ipv:4, o2",
		"!dport:22 & sport:1024-65535, BLOCK",
		"!dport:22|23 & proto:udp, DIRECT",
	};
	struct rule_list rl;
	struct rule_image img;

	list_from(&rl, rules, 3, "o3");
	compile_ok(&rl, 0, &img);
	assert_int_equal(img.n_rules, 3);
	assert_int_equal(img.set.first, 0);
	assert_int_equal(img.set.count, 3);
	assert_int_equal(img.set.fallback_verdict, XP_V_PROXY);
	assert_int_equal(img.set.fallback_outbound, 3);
	assert_int_equal(img.set.fallback_rule_id, 0);

	const struct xp_rule *r = &img.rules[0];

	assert_int_equal(r->rule_id, 1);
	assert_int_equal(r->take, XP_TAKE_RULE);
	assert_int_equal(r->verdict, XP_V_PROXY);
	assert_int_equal(r->outbound_id, 2);
	assert_int_equal(r->ipmask, XP_IP_V4);
	assert_int_equal(r->l4mask, XP_L4_UDP | XP_L4_ICMP | XP_L4_OTHER);
	assert_int_equal(r->flags, XP_RULE_F_NOT_SRC);
	assert_int_equal(r->dst_set, 1);
	assert_int_equal(r->src_set, 2);
	assert_int_equal(r->dport_lo, 0);
	assert_int_equal(r->dport_hi, 65535);
	assert_int_equal(r->prange_first, 0);
	assert_int_equal(r->prange_count, 3);
	assert_int_equal(img.pranges[0].lo, 80);
	assert_int_equal(img.pranges[1].lo, 443);
	assert_int_equal(img.pranges[2].lo, 8000);
	assert_int_equal(img.pranges[2].hi, 8080);
	assert_non_null(find_cidr(&img, 1, "10.0.0.0/8"));
	assert_int_equal(find_cidr(&img, 1, "10.0.0.0/8")->val.verdict, XP_V_PROXY);
	assert_non_null(find_cidr(&img, 2, "192.168.1.0/24"));

	r = &img.rules[1];
	assert_int_equal(r->verdict, XP_V_BLOCK);
	assert_int_equal(r->dport_lo, 22);
	assert_int_equal(r->dport_hi, 22);
	assert_int_equal(r->sport_lo, 1024);
	assert_int_equal(r->sport_hi, 65535);
	assert_int_equal(r->flags, XP_RULE_F_NOT_DPORT);

	r = &img.rules[2]; /* 22|23 merge into one range: no interval block needed */
	assert_int_equal(r->verdict, XP_V_DIRECT);
	assert_int_equal(r->dport_lo, 22);
	assert_int_equal(r->dport_hi, 23);
	assert_int_equal(r->flags, XP_RULE_F_NOT_DPORT);
	assert_int_equal(r->prange_count, 0);
	assert_int_equal(r->l4mask, XP_L4_UDP);
	rule_image_free(&img);
	rule_image_free(&img);
	rule_image_free(NULL);
	rule_list_free(&rl);
}

static void test_compile_sport_expansion(void **state)
{
	static const char *const rules[] = {
		"sport:1000|2000-2100|2101 & proto:tcp, o1",
		"!sport:80|443 & dport:53, BLOCK",
	};
	struct rule_list rl;
	struct rule_image img;

	list_from(&rl, rules, 2, NULL);
	compile_ok(&rl, 0, &img);
	/* 1000 and 2000-2101 (adjacent ranges merge): two copies; then the complement of
	 * {80, 443}: 0-79, 81-442, 444-65535 */
	assert_int_equal(img.n_rules, 5);
	assert_int_equal(img.rules[0].sport_lo, 1000);
	assert_int_equal(img.rules[0].sport_hi, 1000);
	assert_int_equal(img.rules[1].sport_lo, 2000);
	assert_int_equal(img.rules[1].sport_hi, 2101);
	assert_int_equal(img.rules[0].rule_id, 1);
	assert_int_equal(img.rules[1].rule_id, 1);
	assert_int_equal(img.rules[1].l4mask, XP_L4_TCP);
	assert_int_equal(img.rules[2].sport_lo, 0);
	assert_int_equal(img.rules[2].sport_hi, 79);
	assert_int_equal(img.rules[3].sport_lo, 81);
	assert_int_equal(img.rules[3].sport_hi, 442);
	assert_int_equal(img.rules[4].sport_lo, 444);
	assert_int_equal(img.rules[4].sport_hi, 65535);
	for (int i = 2; i < 5; i++) {
		assert_int_equal(img.rules[i].rule_id, 2);
		assert_int_equal(img.rules[i].flags, 0);
		assert_int_equal(img.rules[i].dport_lo, 53);
	}
	for (uint32_t sp = 0; sp < 65536; sp += 7) {
		struct rule_flow f = flow("10.0.0.1", "10.0.0.2", (uint16_t)sp, 53, 17, NULL);

		check_flow(&rl, &img, &f);
		f.l4proto = 6;
		check_flow(&rl, &img, &f);
	}
	rule_image_free(&img);
	rule_list_free(&rl);
}

static void test_compile_merge_cidr(void **state)
{
	/* a shorter prefix first: the longer one inside it must keep the earlier rule */
	static const char *const rules[] = {
		"dst-cidr:10.0.0.0/8, o1",
		"dst-cidr:10.1.0.0/16|192.0.2.0/24, BLOCK",
		"dst-cidr:10.1.2.0/24|10.0.0.0/8, DIRECT", /* 10/8 again: a duplicate key */
		"dst-cidr:192.0.2.128/25|2001:db8::/32, o2",
		"dst-cidr:::/0, o3",
		"dst-cidr:2001:db8::/32|2001:db8:1::/48, DIRECT",
	};
	struct rule_list rl;
	struct rule_image img;
	const struct rule_image_cidr *c;

	list_from(&rl, rules, 6, NULL);
	compile_ok(&rl, 0, &img);
	assert_int_equal(img.n_rules, 1);
	assert_int_equal(img.rules[0].take, XP_TAKE_DST_SET);
	assert_int_equal(img.rules[0].dst_set, 1);
	c = find_cidr(&img, 1, "10.0.0.0/8");
	assert_int_equal(c->val.rule_id, 1);
	c = find_cidr(&img, 1, "10.1.0.0/16");
	assert_int_equal(c->val.rule_id, 1);
	assert_int_equal(c->val.verdict, XP_V_PROXY);
	assert_int_equal(c->val.outbound_id, 1);
	c = find_cidr(&img, 1, "10.1.2.0/24");
	assert_int_equal(c->val.rule_id, 1);
	c = find_cidr(&img, 1, "192.0.2.0/24");
	assert_int_equal(c->val.rule_id, 2);
	assert_int_equal(c->val.verdict, XP_V_BLOCK);
	c = find_cidr(&img, 1, "192.0.2.128/25");
	assert_int_equal(c->val.rule_id, 2);
	c = find_cidr(&img, 1, "2001:db8::/32");
	assert_int_equal(c->val.rule_id, 4);
	c = find_cidr(&img, 1, "2001:db8:1::/48");
	assert_int_equal(c->val.rule_id, 4);
	c = find_cidr(&img, 1, "::/0");
	assert_int_equal(c->val.rule_id, 5);
	/* ::/0 covers ::ffff:0:0/96 and there is no 0.0.0.0/0: a hole */
	c = find_mapped96(&img, 1);
	assert_non_null(c);
	assert_int_equal(c->val.verdict, XP_V_NONE);
	assert_int_equal(img.n_cidrs, 9);

	struct rule_flow f = flow("1.1.1.1", "8.8.8.8", 1, 2, 6, NULL);

	check_flow(&rl, &img, &f); /* IPv4 outside every prefix: fallback, not ::/0's o3 */
	assert_int_equal(model_eval(&img, &f).vsrc, XP_SRC_FALLBACK);
	f = flow("::1", "2001:db8:1::1", 1, 2, 6, NULL);
	check_flow(&rl, &img, &f);
	assert_int_equal(model_eval(&img, &f).rule_id, 4);
	f = flow("::1", "2001:db9::1", 1, 2, 6, NULL);
	assert_int_equal(model_eval(&img, &f).rule_id, 5);
	check_flow(&rl, &img, &f);
	rule_image_free(&img);
	rule_list_free(&rl);

	/* with 0.0.0.0/0 in the run, that key carries the earliest IPv4 catch-all */
	static const char *const rules2[] = {
		"src-cidr:::/0, o3",
		"src-cidr:192.168.0.0/16, BLOCK",
		"src-cidr:0.0.0.0/0, o1",
		"src-cidr:0.0.0.0/0, o2",
	};
	list_from(&rl, rules2, 4, NULL);
	compile_ok(&rl, 1, &img);
	assert_int_equal(img.n_rules, 1);
	assert_int_equal(img.rules[0].take, XP_TAKE_SRC_SET);
	assert_int_equal(img.rules[0].src_set, 0x80000001u);
	c = find_mapped96(&img, 0x80000001u);
	assert_int_equal(c->val.rule_id, 3);
	assert_int_equal(c->val.outbound_id, 1);
	assert_int_equal(img.n_cidrs, 3);
	f = flow("192.168.7.7", "8.8.8.8", 1, 2, 6, NULL);
	assert_int_equal(model_eval(&img, &f).rule_id, 2);
	check_flow(&rl, &img, &f);
	f = flow("192.169.7.7", "8.8.8.8", 1, 2, 6, NULL);
	assert_int_equal(model_eval(&img, &f).rule_id, 3);
	check_flow(&rl, &img, &f);
	rule_image_free(&img);
	rule_list_free(&rl);

	/* a plain (take = RULE) set gets the hole too */
	static const char *const rules3[] = {"dst-cidr:::/0 & proto:tcp, BLOCK",
					     "!dst-cidr:::/64 & proto:udp, o1"};
	list_from(&rl, rules3, 2, NULL);
	compile_ok(&rl, 0, &img);
	assert_int_equal(find_mapped96(&img, 1)->val.verdict, XP_V_NONE);
	assert_int_equal(find_mapped96(&img, 2)->val.verdict, XP_V_NONE);
	f = flow("10.0.0.1", "8.8.8.8", 1, 2, 6, NULL);
	assert_int_equal(model_eval(&img, &f).vsrc, XP_SRC_FALLBACK);
	check_flow(&rl, &img, &f);
	f.l4proto = 17;
	assert_int_equal(model_eval(&img, &f).rule_id, 2);
	check_flow(&rl, &img, &f);
	rule_image_free(&img);
	rule_list_free(&rl);
}

static void test_compile_merge_ports(void **state)
{
	static const char *const rules[] = {
		"dport:100-200, o1", "dport:150-300|50, BLOCK", "dport:1-65535, DIRECT",
		"domain:x.com, o2", /* skipped: the runs on both sides join */
		"dport:22, o3",	     "proto:tcp, o2",		"dport:53, o1", /* a run of one */
	};
	struct rule_list rl;
	struct rule_image img;

	list_from(&rl, rules, 7, NULL);
	compile_ok(&rl, 0, &img);
	assert_int_equal(img.n_skipped, 1);
	assert_int_equal(img.n_rules, 3);
	assert_int_equal(img.rules[0].take, XP_TAKE_PORTS);
	assert_int_equal(img.rules[0].prange_first, 0);
	static const struct {
		uint16_t lo, hi;
		uint32_t rule;
	} want[] = {
		{1, 49, 3}, {50, 50, 2}, {51, 99, 3}, {100, 200, 1}, {201, 300, 2}, {301, 65535, 3},
	};
	assert_int_equal(img.rules[0].prange_count, 6);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(img.pranges[i].lo, want[i].lo);
		assert_int_equal(img.pranges[i].hi, want[i].hi);
		assert_int_equal(img.pranges[i].rule_id, want[i].rule);
	}
	assert_int_equal(img.rules[1].l4mask, XP_L4_TCP);
	assert_int_equal(img.rules[2].dport_lo, 53);
	for (uint32_t p = 0; p < 65536; p++) {
		struct rule_flow f = flow("10.0.0.1", "10.0.0.2", 1, (uint16_t)p, 17, NULL);

		check_flow(&rl, &img, &f);
	}
	rule_image_free(&img);

	/* generation 1: interval indexes are absolute */
	compile_ok(&rl, 1, &img);
	assert_int_equal(img.set.first, XP_MAX_RULES);
	assert_int_equal(img.rules[0].prange_first, XP_MAX_PRANGES);
	struct rule_flow f = flow("10.0.0.1", "10.0.0.2", 1, 250, 17, NULL);

	assert_int_equal(model_eval(&img, &f).rule_id, 2);
	rule_image_free(&img);
	rule_list_free(&rl);
}

static void test_compile_gen_bits(void **state)
{
	static const char *const rules[] = {
		"dst-cidr:10.0.0.0/8 & src-cidr:192.168.0.0/16, o1",
		"dst-cidr:1.0.0.0/8, DIRECT",
		"dst-cidr:2.0.0.0/8, DIRECT",
		"dport:80|8080 & proto:tcp, BLOCK",
	};
	struct rule_list rl;
	struct rule_image img0, img1;
	char err[128];

	list_from(&rl, rules, 4, NULL);
	compile_ok(&rl, 0, &img0);
	compile_ok(&rl, 1, &img1);
	assert_int_equal(img0.n_rules, img1.n_rules);
	for (size_t i = 0; i < img0.n_rules; i++) {
		uint32_t s0[2] = {img0.rules[i].dst_set, img0.rules[i].src_set};
		uint32_t s1[2] = {img1.rules[i].dst_set, img1.rules[i].src_set};

		for (int k = 0; k < 2; k++) {
			if (!s0[k])
				continue;
			assert_int_equal(s0[k] >> 31, 0);
			assert_int_equal(s1[k], s0[k] | 0x80000000u);
		}
	}
	/* no set id, no rule index and no interval index is shared by the two generations */
	for (size_t i = 0; i < img0.n_cidrs; i++)
		for (size_t j = 0; j < img1.n_cidrs; j++)
			assert_int_not_equal(img0.cidrs[i].key.set_id, img1.cidrs[j].key.set_id);
	assert_int_equal(img0.n_rules, 3); /* rules 2 and 3 merge */
	assert_int_equal(img1.rules[2].prange_count, 2);
	assert_int_equal(img1.rules[2].prange_first, XP_MAX_PRANGES);
	assert_int_equal(img0.rules[2].prange_first, 0);
	rule_image_free(&img0);
	rule_image_free(&img1);

	assert_int_equal(rules_compile(&rl, 2, ob_id, NULL, &img0, err, sizeof(err)), -EINVAL);
	rule_list_free(&rl);
}

static void test_compile_limits(void **state)
{
	struct rule_list rl;
	struct rule_image img;
	char err[256], *t;
	size_t n;

	/* 1,000 CIDR rules: one kernel rule. Every third one is a /12 that covers later /16s
	 * (and repeats), so earliest-covering-rule matters. */
	memset(&rl, 0, sizeof(rl));
	rl.rules = calloc(1000, sizeof(*rl.rules));
	for (n = 0; n < 1000; n++) {
		static const char *const tg[] = {"o1", "DIRECT", "BLOCK"};
		char text[64];

		if (n % 3 == 0)
			snprintf(text, sizeof(text), "dst-cidr:%zu.%zu.0.0/12, %s", 1 + n / 200,
				 (n % 200) & 0xf0, tg[n % 4 % 3]);
		else
			snprintf(text, sizeof(text), "dst-cidr:%zu.%zu.0.0/16, %s", 1 + n / 200,
				 n % 200, tg[n % 3]);
		parse_ok(text, &rl.rules[n]);
		rl.rules[n].id = (uint32_t)n + 1;
	}
	rl.n = 1000;
	rl.fallback.kind = RT_DIRECT;
	compile_ok(&rl, 0, &img);
	assert_int_equal(img.n_rules, 1);
	assert_true(img.n_cidrs > 500);
	for (int i = 0; i < 5000; i++) {
		char a[32];
		struct rule_flow f;

		snprintf(a, sizeof(a), "%u.%u.%u.%u", 1 + rn(6), rn(256), rn(256), rn(256));
		f = flow("192.0.2.1", a, 1, 80, 6, NULL);
		check_flow(&rl, &img, &f);
	}
	rule_image_free(&img);
	rule_list_free(&rl);

	/* 1,024 kernel rules fit, 1,025 do not */
	for (size_t total = 1024; total <= 1025; total++) {
		memset(&rl, 0, sizeof(rl));
		rl.rules = calloc(total, sizeof(*rl.rules));
		for (n = 0; n < total; n++) {
			char text[64];

			snprintf(text, sizeof(text), "proto:tcp & dport:%zu, DIRECT", n + 1);
			parse_ok(text, &rl.rules[n]);
			rl.rules[n].id = (uint32_t)n + 1;
		}
		rl.n = total;
		int rc = rules_compile(&rl, 0, ob_id, NULL, &img, err, sizeof(err));

		if (total == 1024) {
			assert_int_equal(rc, 0);
			assert_int_equal(img.n_rules, 1024);
			rule_image_free(&img);
		} else {
			assert_int_equal(rc, -E2BIG);
			assert_string_equal(err, "too many kernel rules: 1025 (max 1024)");
			assert_null(img.rules); /* nothing left behind */
		}
		rule_list_free(&rl);
	}
	/* sport expansion counts too */
	memset(&rl, 0, sizeof(rl));
	t = xmalloc(1030 * 8 + 64);
	{
		char *q = t + sprintf(t, "sport:");

		for (n = 0; n < 1030; n++)
			q += sprintf(q, "%s%zu", n ? "|" : "", 2 * n + 1);
		sprintf(q, " & proto:udp, BLOCK");
	}
	rl.rules = calloc(1, sizeof(*rl.rules));
	parse_ok(t, &rl.rules[0]);
	rl.rules[0].id = 1;
	rl.n = 1;
	assert_int_equal(rules_compile(&rl, 0, ob_id, NULL, &img, err, sizeof(err)), -E2BIG);
	assert_string_equal(err, "too many kernel rules: 1030 (max 1024)");
	rule_list_free(&rl);
	free(t);

	/* 4,096 intervals fit, 4,097 do not */
	for (size_t total = 4096; total <= 4097; total++) {
		char *q;

		t = xmalloc(total * 7 + 64);
		q = t + sprintf(t, "dport:");
		for (n = 0; n < total; n++)
			q += sprintf(q, "%s%zu", n ? "|" : "", 2 * n + 1);
		sprintf(q, ", BLOCK");
		memset(&rl, 0, sizeof(rl));
		rl.rules = calloc(2, sizeof(*rl.rules));
		parse_ok(t, &rl.rules[0]);
		rl.rules[0].id = 1;
		rl.n = 1;
		int rc = rules_compile(&rl, 1, ob_id, NULL, &img, err, sizeof(err));

		if (total == 4096) {
			assert_int_equal(rc, 0);
			assert_int_equal(img.n_pranges, 4096);
			assert_int_equal(img.rules[0].prange_first, XP_MAX_PRANGES);
			assert_int_equal(img.rules[0].prange_count, 4096);
			struct rule_flow f = flow("1.1.1.1", "2.2.2.2", 1, 8191, 6, NULL);

			check_flow(&rl, &img, &f);
			f.dport = 8190;
			check_flow(&rl, &img, &f);
			rule_image_free(&img);
		} else {
			assert_int_equal(rc, -E2BIG);
			assert_string_equal(err, "too many port intervals: 4097 (max 4096)");
		}
		rule_list_free(&rl);
		free(t);
	}

	/* unknown outbounds, in a rule and in the fallback */
	static const char *const rules[] = {"dport:1, nosuch"};
	list_from(&rl, rules, 1, NULL);
	assert_int_equal(rules_compile(&rl, 0, ob_id, NULL, &img, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "unknown outbound 'nosuch' (rule 1)");
	rule_list_free(&rl);
	list_from(&rl, NULL, 0, "gone");
	assert_int_equal(rules_compile(&rl, 0, ob_id, NULL, &img, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "unknown outbound 'gone' (fallback)");
	rule_list_free(&rl);
	/* an empty list: only the fallback */
	list_from(&rl, NULL, 0, "BLOCK");
	compile_ok(&rl, 0, &img);
	assert_int_equal(img.n_rules, 0);
	assert_int_equal(img.set.fallback_verdict, XP_V_BLOCK);
	rule_image_free(&img);
	rule_list_free(&rl);
}

/* ------------------------------------------------------------------------------------------ */
/* Reference check: random rule lists, random flows, model vs matcher                          */

static const char *const v4pool[] = {
	"0.0.0.0/0", "10.0.0.0/8",    "10.1.0.0/16",	"10.1.2.0/24",
	"10.1.2.3",  "10.1.2.128/25", "192.168.0.0/16", "192.168.1.0/24",
	"1.0.0.0/8", "1.2.3.0/24",    "128.0.0.0/1",	"172.16.0.0/12",
};
static const char *const v6pool[] = {
	"::/0",
	"::/64",
	"::/80",
	"::/95",
	"::/96",
	"2001:db8::/32",
	"2001:db8:1::/48",
	"2001:db8:1:2::/64",
	"2001:db8:1:2::5",
	"fd00::/8",
	"8000::/1",
	"::ffff:0:0:0/96", /* bitwise next to the mapped block, not in it */
};

static void rand_cidr(char *buf, size_t len)
{
	uint8_t a[16];
	char s[INET6_ADDRSTRLEN];
	unsigned plen;

	switch (rn(5)) {
	case 0:
	case 1:
		snprintf(buf, len, "%s", v4pool[rn(sizeof(v4pool) / sizeof(v4pool[0]))]);
		return;
	case 2:
		snprintf(buf, len, "%s", v6pool[rn(sizeof(v6pool) / sizeof(v6pool[0]))]);
		return;
	case 3: /* random IPv4 prefix, often inside 10/8 so it overlaps the pool */
		for (int i = 0; i < 4; i++)
			a[i] = (uint8_t)rnd();
		if (rn(2))
			a[0] = 10;
		plen = rn(33);
		for (unsigned b = plen; b < 32; b++)
			a[b / 8] &= (uint8_t) ~(0x80 >> (b % 8));
		inet_ntop(AF_INET, a, s, sizeof(s));
		snprintf(buf, len, "%s/%u", s, plen);
		return;
	default:
		for (int i = 0; i < 16; i++)
			a[i] = (uint8_t)rnd();
		if (rn(2)) {
			a[0] = 0x20, a[1] = 0x01, a[2] = 0x0d, a[3] = 0xb8;
		}
		plen = rn(129);
		for (unsigned b = plen; b < 128; b++)
			a[b / 8] &= (uint8_t) ~(0x80 >> (b % 8));
		if (!memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) && plen >= 96)
			a[0] = 0x20; /* an IPv4-mapped literal is refused by design */
		inet_ntop(AF_INET6, a, s, sizeof(s));
		snprintf(buf, len, "%s/%u", s, plen);
		return;
	}
}

static void rand_port(char *buf, size_t len)
{
	static const uint16_t common[] = {1, 22, 53, 80, 443, 1024, 8080, 65535};
	uint32_t lo, hi;

	switch (rn(3)) {
	case 0:
		snprintf(buf, len, "%u", common[rn(8)]);
		return;
	case 1:
		lo = 1 + rn(65535);
		snprintf(buf, len, "%u", lo);
		return;
	default:
		lo = 1 + rn(2000);
		hi = lo + rn(rn(2) ? 100 : 65536 - lo);
		snprintf(buf, len, "%u-%u", lo, hi);
		return;
	}
}

/* Append one condition of `type` (0..6) to buf. */
static void rand_cond(char *buf, size_t len, int type, bool neg)
{
	static const char *const names[] = {"dst-cidr", "src-cidr", "dport",
					    "sport",	"proto",    "ipv"};
	static const char *const protos[] = {"tcp", "udp", "icmp"};
	size_t n = 1 + (rn(3) ? 0 : rn(4));
	size_t pos = strlen(buf);

	if (type == 6) {
		snprintf(buf + pos, len - pos, "%sdomain-suffix:example.com", neg ? "!" : "");
		return;
	}
	pos += (size_t)snprintf(buf + pos, len - pos, "%s%s:", neg ? "!" : "", names[type]);
	if (type == 5 && neg)
		n = 1; /* "!ipv:4|6" is refused: it can never match */
	for (size_t i = 0; i < n; i++) {
		char v[64];

		if (type <= 1)
			rand_cidr(v, sizeof(v));
		else if (type <= 3)
			rand_port(v, sizeof(v));
		else if (type == 4)
			snprintf(v, sizeof(v), "%s", protos[rn(3)]);
		else
			snprintf(v, sizeof(v), "%s", rn(2) ? "4" : "6");
		pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", i ? "|" : "", v);
	}
}

static void rand_rule(char *buf, size_t len)
{
	static const char *const targets[] = {"DIRECT", "BLOCK", "o1", "o2", "o3"};

	buf[0] = '\0';
	if (rn(2)) {
		/* single-condition rules make merge runs */
		rand_cond(buf, len, (int)rn(3), rn(8) == 0);
	} else {
		int used = 0;
		size_t nc = 1 + rn(4);

		for (size_t i = 0; i < nc; i++) {
			int t = rn(20) == 0 ? 6 : (int)rn(6);

			if (used & (1 << t))
				continue;
			used |= 1 << t;
			if (buf[0])
				strncat(buf, rn(2) ? " & " : "&", len - strlen(buf) - 1);
			rand_cond(buf, len, t, rn(3) == 0);
		}
	}
	size_t pos = strlen(buf);

	snprintf(buf + pos, len - pos, ", %s", targets[rn(5)]);
}

static void rand_addr(uint8_t out[16], bool v4)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	struct rule_cidr c = {.plen = 0};

	/* mostly inside a prefix the rules use, so that rules match */
	if (rn(4)) {
		const char *pfx = v4 ? v4pool[rn(sizeof(v4pool) / sizeof(v4pool[0]))]
				     : v6pool[rn(sizeof(v6pool) / sizeof(v6pool[0]))];

		assert_int_equal(rule_parse_cidr(pfx, &c), 0);
	} else if (v4) {
		rule_addr_from_v4(c.addr, 0);
		c.plen = 96;
	}
	memcpy(out, c.addr, 16);
	for (unsigned b = c.plen; b < 128; b++)
		if (rn(2))
			out[b / 8] |= (uint8_t)(0x80 >> (b % 8));
	/* an IPv6 address inside ::ffff:0:0/96 would be an IPv4 flow: keep the family */
	if (!v4 && !memcmp(out, mapped, sizeof(mapped)))
		out[9] = 1;
}

static void rand_flow(struct rule_flow *f)
{
	static const uint8_t protos[] = {6, 6, 17, 17, 1, 58, 47, 132};
	static const uint16_t ports[] = {1, 22, 53, 80, 443, 1024, 1500, 8080, 65535};
	bool v4 = rn(2);

	memset(f, 0, sizeof(*f));
	rand_addr(f->saddr, v4);
	rand_addr(f->daddr, v4);
	f->l4proto = protos[rn(8)];
	if (f->l4proto == 6 || f->l4proto == 17) {
		f->sport = rn(3) ? ports[rn(9)] : (uint16_t)rnd();
		f->dport = rn(3) ? ports[rn(9)] : (uint16_t)(1 + rn(2100));
	}
}

static void test_compile_reference(void **state)
{
	size_t lists = 10000, flows = 150, merged = 0, holes = 0, total_rules = 0;
	char text[1024];

	seed_rng();
	for (size_t l = 0; l < lists; l++) {
		struct rule_list rl;
		struct rule_image img;
		size_t n = rn(24);
		uint64_t list_seed = rng;
		static char texts[24][1024];

		memset(&rl, 0, sizeof(rl));
		rl.rules = calloc(n ? n : 1, sizeof(*rl.rules));
		for (size_t i = 0; i < n; i++) {
			char err[512];

			rand_rule(texts[i], sizeof(texts[i]));
			if (rule_parse(texts[i], false, NULL, &rl.rules[rl.n], err, sizeof(err)))
				fail_msg("generated rule '%s' refused: %s", texts[i], err);
			rl.rules[rl.n].id = (uint32_t)rl.n + 1;
			rl.n++;
		}
		snprintf(text, sizeof(text), "%s",
			 (const char *[]){"DIRECT", "BLOCK", "o1", "o2", "o3"}[rn(5)]);
		assert_int_equal(rule_parse(text, true, NULL, &rl.fallback, NULL, 0), 0);

		uint32_t gen = rn(2);

		compile_ok(&rl, gen, &img);
		total_rules += rl.n;
		for (size_t i = 0; i < img.n_rules; i++)
			merged += img.rules[i].take != XP_TAKE_RULE;
		for (size_t i = 0; i < img.n_cidrs; i++)
			holes += img.cidrs[i].val.verdict == XP_V_NONE;
		for (size_t k = 0; k < flows; k++) {
			struct rule_flow f;

			rand_flow(&f);
			struct model_verdict e = expected(&rl, &f), mv = model_eval(&img, &f);

			if (e.verdict != mv.verdict || e.outbound_id != mv.outbound_id ||
			    e.rule_id != mv.rule_id || e.vsrc != mv.vsrc) {
				for (size_t i = 0; i < rl.n; i++)
					print_error("  rule %zu: %s\n", i + 1, texts[i]);
				char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];

				inet_ntop(AF_INET6, f.saddr, sa, sizeof(sa));
				inet_ntop(AF_INET6, f.daddr, da, sizeof(da));
				fail_msg("list %zu (XP_TEST_SEED=0x%llx to replay from here, gen "
					 "%u), "
					 "flow %s:%u -> %s:%u proto %u: model says rule %u verdict "
					 "%u "
					 "ob %u, matcher says rule %u verdict %u ob %u",
					 l, (unsigned long long)list_seed, gen, sa, f.sport, da,
					 f.dport, f.l4proto, mv.rule_id, mv.verdict, mv.outbound_id,
					 e.rule_id, e.verdict, e.outbound_id);
			}
		}
		rule_image_free(&img);
		rule_list_free(&rl);
	}
	/* the generator must actually exercise merging and the IPv6 hole */
	assert_true(merged > lists / 4);
	assert_true(holes > lists / 20);
	assert_true(total_rules > lists * 5);
}

/* [sniff]: domain rules compile to INSPECT rules with their other conditions, so the kernel
 * sends a flow to the sniffers exactly when a domain rule could decide it. The expectation is
 * rule_list_match_partial with everything known but the name: a partial answer is INSPECT. */
static void test_compile_inspect(void **state)
{
	size_t lists = 3000, flows = 100, inspects = 0, skipped_inspect = 0;
	static char texts[24][1024];

	seed_rng();
	for (size_t l = 0; l < lists; l++) {
		struct rule_list rl;
		struct rule_image img;
		size_t n = rn(16);
		uint64_t list_seed = rng;
		char err[512];

		memset(&rl, 0, sizeof(rl));
		rl.inspect_domains = true;
		rl.rules = calloc(n ? n : 1, sizeof(*rl.rules));
		for (size_t i = 0; i < n; i++) {
			char body[900];

			rand_rule(body, sizeof(body));
			/* a third are domain rules; runs of them happen */
			if (rn(3) == 0 && !strstr(body, "domain"))
				snprintf(texts[i], sizeof(texts[i]), "domain%s:%s & %s",
					 rn(2) ? "-suffix" : "", rn(2) ? "a.example" : "b.test",
					 body);
			else if (rn(6) == 0)
				snprintf(texts[i], sizeof(texts[i]), "domain-keyword:x, %s",
					 rn(2) ? "DIRECT" : "o1");
			else
				snprintf(texts[i], sizeof(texts[i]), "%s", body);
			if (rule_parse(texts[i], false, NULL, &rl.rules[rl.n], err, sizeof(err)))
				fail_msg("generated rule '%s' refused: %s", texts[i], err);
			rl.rules[rl.n].id = (uint32_t)rl.n + 1;
			rl.n++;
		}
		assert_int_equal(rule_parse("o2", true, NULL, &rl.fallback, NULL, 0), 0);
		compile_ok(&rl, rn(2), &img);
		for (size_t k = 0; k < flows; k++) {
			struct rule_flow f;
			bool partial;

			rand_flow(&f);
			const struct rule *r = rule_list_match_partial(
				&rl, &f, RF_KNOWN_ALL & ~RF_KNOWN_DOMAIN, &partial);
			struct model_verdict e = expected(&rl, &f), mv = model_eval(&img, &f);

			if (partial) {
				e.verdict = XP_V_INSPECT;
				e.outbound_id = 0;
				e.rule_id = r->id;
				e.vsrc = XP_SRC_RULE;
				inspects++;
			}
			if (e.verdict != mv.verdict || e.outbound_id != mv.outbound_id ||
			    e.rule_id != mv.rule_id || e.vsrc != mv.vsrc) {
				for (size_t i = 0; i < rl.n; i++)
					print_error("  rule %zu: %s\n", i + 1, texts[i]);
				fail_msg("list %zu (XP_TEST_SEED=0x%llx): model verdict %u rule %u, "
					 "expected verdict %u rule %u",
					 l, (unsigned long long)list_seed, mv.verdict, mv.rule_id,
					 e.verdict, e.rule_id);
			}
		}
		skipped_inspect += img.n_skipped;
		rule_image_free(&img);
		rule_list_free(&rl);
	}
	assert_true(inspects > lists);
	assert_true(skipped_inspect > lists / 2);

	/* consecutive pure domain rules: one unconditional INSPECT rule, nothing after it */
	static const char *const pure[] = {
		"dst-cidr:10.0.0.0/8, DIRECT",
		"domain-suffix:a.com, o1",
		"domain:b.com, o2",
		"domain-keyword:c, BLOCK",
		"dport:22, o3",
	};
	struct rule_list rl;
	struct rule_image img;
	struct rule_flow f = flow("192.168.1.2", "192.0.2.1", 1000, 22, 6, NULL);

	list_from(&rl, pure, 5, "DIRECT");
	compile_ok(&rl, 0, &img);
	/* without [sniff]: the two address rules; the flow falls to dport:22 */
	assert_int_equal(img.n_rules, 2);
	assert_int_equal(img.n_skipped, 3);
	assert_int_equal(model_eval(&img, &f).rule_id, 5);
	rule_image_free(&img);
	rl.inspect_domains = true;
	compile_ok(&rl, 0, &img);
	assert_int_equal(img.n_rules, 2);
	assert_int_equal(img.n_skipped, 3);
	assert_int_equal(img.rules[1].verdict, XP_V_INSPECT);
	assert_int_equal(img.rules[1].rule_id, 2);
	assert_int_equal(model_eval(&img, &f).verdict, XP_V_INSPECT);
	assert_int_equal(model_eval(&img, &f).rule_id, 2);
	rule_image_free(&img);
	rule_list_free(&rl);

	/* domain rules with ports: one INSPECT rule each, identical neighbours merged */
	static const char *const ported[] = {
		"domain-suffix:a.com & dport:443, o1",
		"domain:b.com & dport:443, o2",
		"domain:c.com & dport:80, o2",
	};
	list_from(&rl, ported, 3, "DIRECT");
	rl.inspect_domains = true;
	compile_ok(&rl, 1, &img);
	f.dport = 443;
	assert_int_equal(model_eval(&img, &f).verdict, XP_V_INSPECT);
	assert_int_equal(model_eval(&img, &f).rule_id, 1);
	f.dport = 80;
	assert_int_equal(model_eval(&img, &f).verdict, XP_V_INSPECT);
	assert_int_equal(model_eval(&img, &f).rule_id, 3);
	f.dport = 8080;
	assert_int_equal(model_eval(&img, &f).verdict, XP_V_DIRECT);
	assert_int_equal(model_eval(&img, &f).vsrc, XP_SRC_FALLBACK);
	rule_image_free(&img);
	rule_list_free(&rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_cidr_helper),
		cmocka_unit_test(test_parse_file),
		cmocka_unit_test(test_parse_file_limit),
		cmocka_unit_test(test_parse_garbage),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_list_match),
		cmocka_unit_test(test_list_match_partial),
		cmocka_unit_test(test_compile_single),
		cmocka_unit_test(test_compile_sport_expansion),
		cmocka_unit_test(test_compile_merge_cidr),
		cmocka_unit_test(test_compile_merge_ports),
		cmocka_unit_test(test_compile_gen_bits),
		cmocka_unit_test(test_compile_limits),
		cmocka_unit_test(test_compile_reference),
		cmocka_unit_test(test_compile_inspect),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
