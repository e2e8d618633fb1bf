/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_sniff_opts - per-sniffer options: the core's `ports` (parser, and the claim it changes),
 * [sniff.NAME] sections in the configuration, sniff_apply() matching them to the listed
 * sniffers and filling each plugin's option table (every error with file:line), and what the
 * in-tree sniffers do with their own limit (max_hello_bytes, max_header_bytes,
 * max_initial_bytes). The real plugins come from XP_TEST_PLUGIN_DIR.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "cfg.h"
#include "plug.h"
#include "sniff.h"

/* ------------------------------------------------------------------------------ ports */

static void test_ports_parse(void **state)
{
	struct sniff_ports p;
	char msg[256];

	assert_int_equal(sniff_ports_parse("443", &p, msg, sizeof(msg)), 0);
	assert_false(p.any);
	assert_int_equal(p.n, 1);
	assert_true(sniff_ports_has(&p, 443));
	assert_false(sniff_ports_has(&p, 444));
	assert_false(sniff_ports_has(&p, 0));

	assert_int_equal(sniff_ports_parse(" 443 ,8443,\t9000-9100 , 1-1", &p, msg, sizeof(msg)), 0);
	assert_int_equal(p.n, 4);
	assert_true(sniff_ports_has(&p, 8443));
	assert_true(sniff_ports_has(&p, 9000));
	assert_true(sniff_ports_has(&p, 9050));
	assert_true(sniff_ports_has(&p, 9100));
	assert_false(sniff_ports_has(&p, 9101));
	assert_false(sniff_ports_has(&p, 8999));
	assert_true(sniff_ports_has(&p, 1));
	assert_false(sniff_ports_has(&p, 2));

	assert_int_equal(sniff_ports_parse("1-65535", &p, msg, sizeof(msg)), 0);
	assert_true(sniff_ports_has(&p, 65535));
	assert_int_equal(sniff_ports_parse(" any ", &p, msg, sizeof(msg)), 0);
	assert_true(p.any);
	assert_true(sniff_ports_has(&p, 12345));
}

static void expect_ports_err(const char *s, const char *want)
{
	struct sniff_ports p;
	char msg[256] = "";

	if (sniff_ports_parse(s, &p, msg, sizeof(msg)) != -EINVAL)
		fail_msg("accepted: '%s'", s);
	if (!strstr(msg, want))
		fail_msg("'%s': message '%s' lacks '%s'", s, msg, want);
}

static void test_ports_garbage(void **state)
{
	char big[4096];
	size_t off = 0;

	expect_ports_err("", "empty entry");
	expect_ports_err("   ", "empty entry");
	expect_ports_err("443,", "empty entry");
	expect_ports_err(",443", "empty entry");
	expect_ports_err("443,,80", "empty entry");
	expect_ports_err("0", "'0' is not a port");
	expect_ports_err("65536", "'65536' is not a port");
	expect_ports_err("123456", "not a port");
	expect_ports_err("https", "'https' is not a port");
	expect_ports_err("-443", "not a port");
	expect_ports_err("443-", "not a port");
	expect_ports_err("1-2-3", "not a port");
	expect_ports_err("443 80", "not a port");
	expect_ports_err("any, 443", "not a port");
	expect_ports_err("+443", "not a port");
	expect_ports_err("10-5", "range 10-5 is backwards");
	/* oversized: more entries than fit */
	for (int i = 1; i <= SNIFF_PORT_RANGES + 1; i++)
		off += (size_t)snprintf(big + off, sizeof(big) - off, "%s%d", i > 1 ? "," : "", i);
	expect_ports_err(big, "more than 32 ports");
	/* a very long token is cut in the message, not overflowing it */
	memset(big, '9', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	expect_ports_err(big, "is not a port");
}

/* The override replaces the plugin's list in sniff_begin(). */
static int fake_sniff(void *inst, const struct xp_sniff_input *in, struct xp_sniff_result *out)
{
	return XP_SNIFF_NOT_MINE;
}

static void test_ports_claim(void **state)
{
	static const uint16_t only443[] = {443, 0};
	struct xp_sniffer_ops any = {.size = sizeof(any), .caps = XP_SNIFF_TCP, .max_bytes = 100,
				     .sniff = fake_sniff};
	struct xp_sniffer_ops listed = any;
	struct sniff_set set = {.n = 1};
	struct sniff_ports ports;
	struct sniff_state st;
	char msg[128];

	listed.ports = only443;
	/* the plugin's own: any port */
	set.v[0] = (struct sniffer){.name = "a", .ops = &any};
	assert_true(sniff_begin(&set, IPPROTO_TCP, 8443, &st));
	/* overridden: only 443 and 853 */
	assert_int_equal(sniff_ports_parse("443, 853", &ports, msg, sizeof(msg)), 0);
	set.v[0].ports = &ports;
	assert_false(sniff_begin(&set, IPPROTO_TCP, 8443, &st));
	assert_int_equal(st.pending, 0);
	assert_true(sniff_begin(&set, IPPROTO_TCP, 853, &st));
	assert_int_equal(st.max_bytes, 100);
	/* the caps still apply: a TCP sniffer never claims UDP, whatever the ports */
	assert_false(sniff_begin(&set, IPPROTO_UDP, 443, &st));
	/* a plugin listing only 443, widened to every port */
	assert_int_equal(sniff_ports_parse("any", &ports, msg, sizeof(msg)), 0);
	set.v[0] = (struct sniffer){.name = "b", .ops = &listed};
	assert_false(sniff_begin(&set, IPPROTO_TCP, 25, &st));
	set.v[0].ports = &ports;
	assert_true(sniff_begin(&set, IPPROTO_TCP, 25, &st));
}

/* ------------------------------------------------------------------------------ config */

static struct cfg *parse(const char *body, char **errors)
{
	char text[8192];
	struct cfg *c = NULL;

	snprintf(text, sizeof(text), "[global]\nlan = lan0\n%s", body);
	*errors = NULL;
	if (cfg_parse("t.ini", text, strlen(text), &c, errors))
		return NULL;
	return c;
}

static void expect_cfg_err(const char *body, const char *want)
{
	char *errors;
	struct cfg *c = parse(body, &errors);

	if (c)
		fail_msg("accepted: %s", body);
	if (!errors || !strstr(errors, want))
		fail_msg("errors '%s' do not contain '%s'", errors ? errors : "(none)", want);
	free(errors);
}

static void test_cfg_sections(void **state)
{
	const struct cfg_section *s;
	char *errors;
	struct cfg *c;

	c = parse("[sniff]\n[sniff.tls]\nports = 443\nmax_hello_bytes = 4k\n", &errors);
	assert_non_null(c);
	s = cfg_section(c, "sniff.tls");
	assert_non_null(s);
	assert_int_equal(s->n_kv, 2);
	assert_string_equal(s->kv[0].key, "ports");
	assert_int_equal(s->kv[1].line, 6);
	cfg_free(c);

	/* the section may come before [sniff] */
	c = parse("[sniff.http]\nmax_header_bytes = 1k\n[sniff]\n", &errors);
	assert_non_null(c);
	cfg_free(c);

	expect_cfg_err("[sniff.tls]\nports = 443\n",
		       "t.ini:3: [sniff.tls] sets a sniffer's options, but there is no [sniff]");
	expect_cfg_err("[sniff]\n[sniff.tls]\n[sniff.tls]\n",
		       "t.ini:5: duplicate section [sniff.tls] (first at line 4)");
	expect_cfg_err("[sniff]\n[sniff.]\n", "t.ini:4: invalid sniffer name in [sniff.]");
	expect_cfg_err("[sniff]\n[sniff.TLS]\n", "invalid sniffer name in [sniff.TLS]");
	expect_cfg_err("[sniff]\n[sniff.a/b]\n", "invalid sniffer name");
	expect_cfg_err("[sniff]\n[sniff.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n", "invalid sniffer name");
}

/* ------------------------------------------------------------------------------ sniff_apply */

static struct plug_registry reg;

static int reg_setup(void **state)
{
	const char *dir = getenv("XP_TEST_PLUGIN_DIR");

	if (!dir) {
		fprintf(stderr, "XP_TEST_PLUGIN_DIR is not set (run through meson test)\n");
		return -1;
	}
	return plug_registry_scan(&reg, dir) > 0 ? 0 : -1;
}

static int reg_teardown(void **state)
{
	plug_registry_free(&reg);
	return 0;
}

/* xproxyd -t's path: everything checked, nothing created. */
static int apply(const char *body, char **errors)
{
	struct cfg *c = parse(body, errors);
	int rc;

	if (!c)
		fail_msg("config refused: %s", *errors ? *errors : "?");
	rc = sniff_apply(c, &reg, NULL, true, errors);
	cfg_free(c);
	return rc;
}

static void expect_apply_err(const char *body, const char *want)
{
	char *errors = NULL;

	if (apply(body, &errors) == 0)
		fail_msg("accepted: %s", body);
	if (!errors || !strstr(errors, want))
		fail_msg("errors '%s' do not contain '%s'", errors ? errors : "(none)", want);
	free(errors);
}

static void test_apply_options(void **state)
{
	char *errors = NULL;

	/* every in-tree sniffer's option; "http" is http_sniff's alias, both names work */
	assert_int_equal(apply("[sniff]\nplugins = tls, http, quic\n"
			       "[sniff.tls]\nports = 443, 853\nmax_hello_bytes = 2k\n"
			       "[sniff.http]\nmax_header_bytes = 1k\nports = any\n"
			       "[sniff.quic]\nmax_initial_bytes = 4k\nports = 443\n",
			       &errors),
			 0);
	assert_null(errors);
	assert_int_equal(apply("[sniff]\nplugins = http\n[sniff.http_sniff]\nmax_header_bytes = 300\n",
			       &errors),
			 0);
	assert_null(errors);

	expect_apply_err("[sniff]\n[sniff.tls]\nports = 0\n",
			 "t.ini:5: [sniff.tls] ports: '0' is not a port");
	expect_apply_err("[sniff]\n[sniff.tls]\nports = 443\nports = 80\n",
			 "t.ini:6: [sniff.tls] ports: set twice (first at line 5)");
	expect_apply_err("[sniff]\n[sniff.tls]\nmax_bytes = 1k\n",
			 "t.ini:5: [sniff.tls] max_bytes: unknown option (valid: max_hello_bytes)");
	expect_apply_err("[sniff]\n[sniff.tls]\nmax_hello_bytes = 100\n",
			 "t.ini:5: [sniff.tls] max_hello_bytes:");
	expect_apply_err("[sniff]\n[sniff.http]\nmax_header_bytes = 1m\n",
			 "t.ini:5: [sniff.http] max_header_bytes:");
	expect_apply_err("[sniff]\n[sniff.http]\nmax_header_bytes = lots\n",
			 "t.ini:5: [sniff.http] max_header_bytes:");
	/* both a bad ports and a bad plugin key: both reported */
	expect_apply_err("[sniff]\n[sniff.tls]\nports = x\nfoo = 1\n",
			 "[sniff.tls] ports: 'x' is not a port");
	expect_apply_err("[sniff]\n[sniff.tls]\nports = x\nfoo = 1\n",
			 "t.ini:6: [sniff.tls] foo: unknown option");
	/* a section for a sniffer not listed: a typo must not do nothing silently */
	expect_apply_err("[sniff]\nplugins = tls\n[sniff.quic]\nports = 443\n",
			 "t.ini:5: [sniff.quic]: no sniffer quic in [sniff] plugins (line 3)");
	expect_apply_err("[sniff]\n[sniff.tsl]\n", "[sniff.tsl]: no sniffer tsl in [sniff] plugins");
	/* a sniffer whose own option table has "ports": refused, whatever the sections say */
	{
		char body[1024];
		const char *fake = getenv("FAKE_PLUGIN_DIR");

		assert_non_null(fake);
		snprintf(body, sizeof(body), "[sniff]\nplugins = %s/sniffer_ports_opt.so\n", fake);
		expect_apply_err(body, "t.ini:3: [sniff] plugin sniffer_ports_opt declares an "
				       "option \"ports\", which [sniff.NAME] keeps for the core");
	}
	/* one sniffer's options in two sections */
	expect_apply_err("[sniff]\n[sniff.http]\n[sniff.http_sniff]\n",
			 "t.ini:5: [sniff.http_sniff]: the options of sniffer http_sniff are already "
			 "in [sniff.http] (line 4)");
}

/* ------------------------------------------------------------------------------ the limits */

/* A sniffer instance made as the daemon makes it, from a [sniff.NAME] body. */
struct inst {
	struct plugin *p;
	void *config;
	void *inst;
};

static void inst_make(struct inst *in, const char *plugin, const char *key, const char *value)
{
	struct cfg_kv kv = {.key = (char *)key, .value = (char *)value, .line = 2};
	struct cfg_section sec = {.name = "sniff.x", .line = 1, .kv = &kv, .n_kv = key ? 1 : 0};
	char err[256], *errors = NULL;

	assert_int_equal(plug_resolve(&reg, plugin, &in->p, err, sizeof(err)), 0);
	assert_int_equal(plug_config_fill(in->p, "t.ini", &sec, &in->config, &errors), 0);
	assert_int_equal(in->p->desc.instance_new(in->p->state, NULL, NULL, in->config, &in->inst),
			 0);
}

static void inst_free(struct inst *in)
{
	in->p->desc.instance_free(in->inst);
	plug_config_free(in->p, in->config);
}

static int offer(struct inst *in, uint32_t l4, const struct xp_bytes *parts, uint32_t n,
		 struct xp_sniff_result *res)
{
	struct xp_sniff_input si = {.size = sizeof(si), .l4proto = l4, .dport = 443, .count = n,
				    .parts = parts};

	memset(res, 0, sizeof(*res));
	res->size = sizeof(*res);
	return in->p->sniffer.sniff(in->inst, &si, res);
}

static size_t put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

/* A TLS record holding a ClientHello for `name`, padded (extension 21) to about `pad` bytes. */
static size_t client_hello(uint8_t *b, const char *name, size_t pad)
{
	size_t nlen = strlen(name), o = 9, ext;

	b[0] = 22, b[1] = 3, b[2] = 1;
	b[5] = 1; /* ClientHello */
	o += put16(b + o, 0x0303);
	memset(b + o, 7, 32), o += 32;
	b[o++] = 0;			  /* session id */
	o += put16(b + o, 2);		  /* cipher suites */
	o += put16(b + o, 0x1301);
	b[o++] = 1, b[o++] = 0;		  /* compression: null */
	ext = o, o += 2;		  /* extensions length, later */
	o += put16(b + o, 0);		  /* server_name */
	o += put16(b + o, (unsigned)nlen + 5);
	o += put16(b + o, (unsigned)nlen + 3);
	b[o++] = 0;
	o += put16(b + o, (unsigned)nlen);
	memcpy(b + o, name, nlen), o += nlen;
	o += put16(b + o, 21);		  /* padding */
	o += put16(b + o, (unsigned)pad);
	memset(b + o, 0, pad), o += pad;
	put16(b + ext, (unsigned)(o - ext - 2));
	b[6] = (uint8_t)((o - 9) >> 16), put16(b + 7, (unsigned)(o - 9));
	put16(b + 3, (unsigned)(o - 5));
	return o;
}

static void test_tls_limit(void **state)
{
	static uint8_t hello[4096];
	struct xp_sniff_result res;
	struct inst def, low;
	struct xp_bytes part = {.data = hello};

	part.len = client_hello(hello, "big.example", 1500);
	inst_make(&def, "tls", NULL, NULL);
	inst_make(&low, "tls", "max_hello_bytes", "1k");
	assert_int_equal(offer(&def, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "big.example");
	/* the same hello is longer than 1 KiB: never complete within the limit */
	assert_int_equal(offer(&low, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_NOT_MINE);
	/* its first 600 bytes: still MORE under both (below the limit) */
	part.len = 600;
	assert_int_equal(offer(&low, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_MORE);
	assert_int_equal(offer(&def, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_MORE);
	/* a small hello is found under the limit */
	part.len = client_hello(hello, "small.example", 10);
	assert_int_equal(offer(&low, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "small.example");
	inst_free(&def);
	inst_free(&low);
}

static void test_http_limit(void **state)
{
	char req[2048];
	struct xp_sniff_result res;
	struct inst def, low;
	struct xp_bytes part = {.data = (const uint8_t *)req};
	int n;

	/* 600 bytes of headers before Host */
	n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Long: %0600d\r\nHost: h.example\r\n\r\n",
		     0);
	part.len = (size_t)n;
	inst_make(&def, "http_sniff", NULL, NULL);
	inst_make(&low, "http_sniff", "max_header_bytes", "512");
	assert_int_equal(offer(&def, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "h.example");
	assert_int_equal(offer(&low, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_NOT_MINE);
	/* Host first: named within the limit */
	n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: h.example\r\nX-Long: %0600d\r\n\r\n",
		     0);
	part.len = (size_t)n;
	assert_int_equal(offer(&low, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_FOUND);
	/* an unfinished head below the limit: MORE */
	part.len = 300;
	assert_int_equal(offer(&low, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_FOUND);
	part.len = 20;
	assert_int_equal(offer(&low, IPPROTO_TCP, &part, 1, &res), XP_SNIFF_MORE);
	inst_free(&def);
	inst_free(&low);
}

static void test_quic_limit(void **state)
{
	static uint8_t junk[1300];
	struct xp_sniff_result res;
	struct inst low;
	struct xp_bytes parts[2] = {{.data = junk, .len = 1300}, {.data = junk, .len = 1300}};

	inst_make(&low, "quic", "max_initial_bytes", "1200");
	/* a datagram larger than the cap is never looked at: NOT_MINE, at once */
	assert_int_equal(offer(&low, IPPROTO_UDP, parts, 2, &res), XP_SNIFF_NOT_MINE);
	/* no datagram yet: MORE */
	assert_int_equal(offer(&low, IPPROTO_UDP, parts, 0, &res), XP_SNIFF_MORE);
	inst_free(&low);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ports_parse),
		cmocka_unit_test(test_ports_garbage),
		cmocka_unit_test(test_ports_claim),
		cmocka_unit_test(test_cfg_sections),
		cmocka_unit_test(test_apply_options),
		cmocka_unit_test(test_tls_limit),
		cmocka_unit_test(test_http_limit),
		cmocka_unit_test(test_quic_limit),
	};
	return cmocka_run_group_tests(tests, reg_setup, reg_teardown);
}
