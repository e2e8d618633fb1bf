/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_link - share links (core/link.c) and their expansion in [outbound.NAME] (core/cfg.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "link.h"

static const char *get(const struct link_out *o, const char *key)
{
	for (size_t i = 0; i < o->n; i++)
		if (!strcmp(o->kv[i].key, key))
			return o->kv[i].value;
	return NULL;
}

static void parse_ok(const char *uri, struct link_out *o)
{
	char err[256] = "";
	int rc = link_parse(uri, o, err, sizeof(err));

	if (rc)
		print_error("%s: %s\n", uri, err);
	assert_int_equal(rc, 0);
}

/* Refused with a message containing `want`, and never the secret `secret`. */
static void parse_bad(const char *uri, const char *want, const char *secret)
{
	struct link_out o;
	char err[256] = "";

	assert_int_equal(link_parse(uri, &o, err, sizeof(err)), -EINVAL);
	assert_int_equal(o.n, 0);
	if (!strstr(err, want))
		print_error("%s: got '%s', want '%s'\n", uri, err, want);
	assert_non_null(strstr(err, want));
	if (secret)
		assert_null(strstr(err, secret));
}

static void test_ss(void **state)
{
	struct link_out o;

	(void)state;
	/* SIP002: base64url("aes-128-gcm:test") without padding */
	parse_ok("ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1:8888#Example1", &o);
	assert_string_equal(o.plugin, "shadowsocks");
	assert_string_equal(get(&o, "server"), "192.168.100.1:8888");
	assert_string_equal(get(&o, "method"), "aes-128-gcm");
	assert_string_equal(get(&o, "password"), "test");
	link_out_free(&o);
	/* with padding, a trailing slash and an IPv6 server */
	parse_ok("ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpwYXNz@[2001:db8::1]:8388/#x", &o);
	assert_string_equal(get(&o, "method"), "chacha20-ietf-poly1305");
	assert_string_equal(get(&o, "password"), "pass");
	assert_string_equal(get(&o, "server"), "[2001:db8::1]:8388");
	link_out_free(&o);
	/* percent-encoded userinfo (the SIP002 form for 2022 ciphers); ':' inside the password */
	parse_ok("ss://2022-blake3-aes-128-gcm:a%3Ab%2Fc@example.com:443", &o);
	assert_string_equal(get(&o, "method"), "2022-blake3-aes-128-gcm");
	assert_string_equal(get(&o, "password"), "a:b/c");
	assert_string_equal(get(&o, "server"), "example.com:443");
	link_out_free(&o);
	/* 2022 (SIP022) PSKs are standard base64, so '+', '/' and '=' arrive percent-encoded
	 * (SIP002 wants the userinfo of 2022 methods percent-encoded, not base64) */
	parse_ok("ss://2022-blake3-aes-256-gcm:%2B%2F%2B%2FAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
		 "%3D@[2001:db8::7]:8388#ss22", &o);
	assert_string_equal(get(&o, "method"), "2022-blake3-aes-256-gcm");
	assert_string_equal(get(&o, "password"), "+/+/AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
	assert_string_equal(get(&o, "server"), "[2001:db8::7]:8388");
	link_out_free(&o);
	/* '+' and '=' are legal raw in a userinfo and stay as they are (no form decoding) */
	parse_ok("ss://2022-BLAKE3-AES-128-GCM:AAECAwQFBgc+CQoLDA0ODw==@192.0.2.1:443", &o);
	assert_string_equal(get(&o, "method"), "2022-blake3-aes-128-gcm");
	assert_string_equal(get(&o, "password"), "AAECAwQFBgc+CQoLDA0ODw==");
	link_out_free(&o);
	/* some clients base64url the whole userinfo anyway:
	 * base64url("2022-blake3-aes-256-gcm:+/+/AwQF...Hh8=") without padding */
	parse_ok("ss://MjAyMi1ibGFrZTMtYWVzLTI1Ni1nY206Ky8rL0F3UUZCZ2NJQ1FvTERBME9EeEFSRWhNVUZSWVhHQm"
		 "thR3h3ZEhoOD0@192.0.2.1:8388", &o);
	assert_string_equal(get(&o, "method"), "2022-blake3-aes-256-gcm");
	assert_string_equal(get(&o, "password"), "+/+/AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
	link_out_free(&o);
	/* several PSKs (SIP023 identity headers) pass through as one password; the plugin
	 * refuses them by name when the section loads */
	parse_ok("ss://2022-blake3-aes-128-gcm:AAECAwQFBgcICQoLDA0ODw%3D%3D%3AAAECAwQFBgcICQoLDA0ODw"
		 "%3D%3D@192.0.2.1:1", &o);
	assert_string_equal(get(&o, "password"), "AAECAwQFBgcICQoLDA0ODw==:AAECAwQFBgcICQoLDA0ODw==");
	link_out_free(&o);
	/* the legacy all-base64 form: base64("aes-256-gcm:pw@10.0.0.1:8388") */
	parse_ok("ss://YWVzLTI1Ni1nY206cHdAMTAuMC4wLjE6ODM4OA==#legacy", &o);
	assert_string_equal(get(&o, "method"), "aes-256-gcm");
	assert_string_equal(get(&o, "password"), "pw");
	assert_string_equal(get(&o, "server"), "10.0.0.1:8388");
	link_out_free(&o);

	parse_bad("ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1", "no server port", NULL);
	parse_bad("ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1:8888/?plugin=obfs-local%3Bobfs%3Dhttp",
		  "SIP003", NULL);
	parse_bad("ss://!!!!@1.2.3.4:1", "bad base64", NULL);
	/* base64("nocolon") */
	parse_bad("ss://bm9jb2xvbg@1.2.3.4:1", "method:password", NULL);
	parse_bad("ss://YWVzLTEyOC1nY206c2VjcmV0@1.2.3.4:99999", "port", "secret");
	parse_bad("ss://YWVzLTEyOC1nY206c2VjcmV0@1.2.3.4:0", "port", "secret");
	parse_bad("ss://aes-128-gcm:sec%zzret@1.2.3.4:1", "percent", "sec");
	parse_bad("ss://aes-128-gcm:sec%00ret@1.2.3.4:1", "percent", "sec");
	parse_bad("ss://YWVzLTEyOC1nY206c2VjcmV0@[::1:1", "unterminated", "secret");
	parse_bad("ss://YWVzLTEyOC1nY206c2VjcmV0@ho st:1", "spaces", "secret");
}

static void test_trojan(void **state)
{
	struct link_out o;

	(void)state;
	parse_ok("trojan://p%40ss@example.org:8443?sni=cdn.example.org&allowInsecure=1"
		 "&alpn=h2%2Chttp%2F1.1#jp",
		 &o);
	assert_string_equal(o.plugin, "trojan");
	assert_string_equal(get(&o, "server"), "example.org:8443");
	assert_string_equal(get(&o, "password"), "p@ss");
	assert_string_equal(get(&o, "sni"), "cdn.example.org");
	assert_string_equal(get(&o, "verify"), "no");
	assert_string_equal(get(&o, "alpn"), "h2,http/1.1");
	link_out_free(&o);
	/* default port 443, peer= as the older name of sni=, verification stays on */
	parse_ok("trojan://pw@10.0.0.2?peer=a.example", &o);
	assert_string_equal(get(&o, "server"), "10.0.0.2:443");
	assert_string_equal(get(&o, "sni"), "a.example");
	assert_null(get(&o, "verify"));
	link_out_free(&o);

	parse_bad("trojan://example.org:443", "no password", NULL);
	parse_bad("trojan://secretpw@example.org:443?type=ws", "only tcp", "secretpw");
	parse_bad("trojan://secretpw@example.org:443?security=reality", "security=tls",
		  "secretpw");
	parse_bad("trojan://secretpw@example.org:443?sni=%zz", "percent", "secretpw");
}

static void test_socks_http(void **state)
{
	struct link_out o;

	(void)state;
	parse_ok("socks5://user:pa%3Ass@10.1.2.3:1081", &o);
	assert_string_equal(o.plugin, "socks5");
	assert_string_equal(get(&o, "server"), "10.1.2.3:1081");
	assert_string_equal(get(&o, "username"), "user");
	assert_string_equal(get(&o, "password"), "pa:ss");
	link_out_free(&o);
	parse_ok("socks5h://proxy.lan", &o);
	assert_string_equal(get(&o, "server"), "proxy.lan:1080");
	assert_null(get(&o, "username"));
	link_out_free(&o);
	parse_ok("http://u@10.0.0.1:3128", &o);
	assert_string_equal(o.plugin, "http");
	assert_string_equal(get(&o, "username"), "u");
	assert_null(get(&o, "password"));
	assert_null(get(&o, "tls"));
	link_out_free(&o);
	parse_ok("https://u:p@proxy.example.net", &o);
	assert_string_equal(get(&o, "server"), "proxy.example.net:443");
	assert_string_equal(get(&o, "tls"), "yes");
	assert_string_equal(get(&o, "sni"), "proxy.example.net");
	link_out_free(&o);
	/* an address needs no SNI */
	parse_ok("https://192.0.2.7:8443", &o);
	assert_string_equal(get(&o, "tls"), "yes");
	assert_null(get(&o, "sni"));
	link_out_free(&o);

	parse_bad("http://u:p@10.0.0.1:3128/path", "path", NULL);
	parse_bad("socks5://u:p@10.0.0.1:1080?x=1", "query", NULL);
	parse_bad("socks5://:pw@10.0.0.1:1080", "empty user", "pw");
	parse_bad("vmess://abc", "unknown link scheme", NULL);
	parse_bad("no-scheme", "not a link", NULL);
	parse_bad("://x", "bad scheme", NULL);
}

static void test_limits(void **state)
{
	size_t n = LINK_MAX_LEN + 100;
	char *big = malloc(n + 1);

	(void)state;
	assert_non_null(big);
	memcpy(big, "socks5://", 9);
	memset(big + 9, 'a', n - 9);
	big[n] = '\0';
	parse_bad(big, "longer than", NULL);
	/* a host name over 253 characters */
	big[9 + 300] = '\0';
	parse_bad(big, "no usable server host", NULL);
	free(big);
	parse_bad("socks5://10.0.0.1:\t1", "control", NULL);
	parse_bad("socks5://10.0.0.1:", "port", NULL);
	parse_bad("socks5://10.0.0.1:12ab", "port", NULL);
	parse_bad("socks5://@:1", "no usable server host", NULL);
}

/* The expansion in a config file: plugin and options appear on the link's line. */
static void test_cfg_expansion(void **state)
{
	static const char ini[] = "[global]\nlan = eth0\n[outbound.hk]\n"
				  "link = ss://YWVzLTEyOC1nY206c2VjcmV0@192.0.2.1:8388#hk\n"
				  "timeout = 5s\n"
				  "[route]\n"
				  "fallback = hk\n";
	static const char clash[] = "[global]\nlan = eth0\n[outbound.hk]\n"
				    "plugin = trojan\n"
				    "link = ss://YWVzLTEyOC1nY206c2VjcmV0@192.0.2.1:8388\n";
	static const char clash2[] = "[global]\nlan = eth0\n[outbound.hk]\n"
				     "link = ss://YWVzLTEyOC1nY206c2VjcmV0@192.0.2.1:8388\n"
				     "plugin = socks5\n";
	static const char same[] = "[global]\nlan = eth0\n[outbound.hk]\n"
				   "link = socks5://10.0.0.1:1080\n"
				   "plugin = socks5\n";
	static const char bad[] = "[global]\nlan = eth0\n[outbound.hk]\n"
				  "link = ss://YWVzLTEyOC1nY206c2VjcmV0@192.0.2.1\n";
	static const char twice[] = "[global]\nlan = eth0\n[outbound.hk]\n"
				    "link = socks5://10.0.0.1:1080\n"
				    "link = socks5://10.0.0.2:1080\n";
	struct cfg *cfg = NULL;
	char *errors = NULL;
	const struct cfg_outbound *o;

	(void)state;
	if (cfg_parse("t.ini", ini, sizeof(ini) - 1, &cfg, &errors))
		fail_msg("%s", errors);
	o = cfg_outbound_find(cfg, "hk");
	assert_non_null(o);
	assert_string_equal(o->plugin, "shadowsocks");
	assert_int_equal(o->link_line, 4);
	assert_string_equal(cfg_get(cfg, "outbound.hk", "server"), "192.0.2.1:8388");
	assert_string_equal(cfg_get(cfg, "outbound.hk", "method"), "aes-128-gcm");
	assert_string_equal(cfg_get(cfg, "outbound.hk", "password"), "secret");
	for (size_t i = 0; i < o->section->n_kv; i++)
		if (!strcmp(o->section->kv[i].key, "password"))
			assert_int_equal(o->section->kv[i].line, 4);
	cfg_free(cfg);

	assert_int_equal(cfg_parse("t.ini", clash, sizeof(clash) - 1, &cfg, &errors), -EINVAL);
	assert_non_null(strstr(errors, "t.ini:5: [outbound.hk] link is a shadowsocks link but "
					"'plugin' says trojan"));
	free(errors);
	errors = NULL;
	assert_int_equal(cfg_parse("t.ini", clash2, sizeof(clash2) - 1, &cfg, &errors), -EINVAL);
	assert_non_null(strstr(errors, "t.ini:5: [outbound.hk] 'plugin' says socks5 but the link "
					"on line 4 is a shadowsocks link"));
	free(errors);
	errors = NULL;
	assert_int_equal(cfg_parse("t.ini", same, sizeof(same) - 1, &cfg, &errors), 0);
	cfg_free(cfg);
	assert_int_equal(cfg_parse("t.ini", bad, sizeof(bad) - 1, &cfg, &errors), -EINVAL);
	assert_non_null(strstr(errors, "t.ini:4: [outbound.hk] link: the link has no server port"));
	assert_null(strstr(errors, "secret"));
	assert_null(strstr(errors, "YWVz"));
	free(errors);
	errors = NULL;
	assert_int_equal(cfg_parse("t.ini", twice, sizeof(twice) - 1, &cfg, &errors), -EINVAL);
	assert_non_null(strstr(errors, "t.ini:5: duplicate key 'link' in [outbound.hk] (first at "
					"line 4)"));
	free(errors);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ss),
		cmocka_unit_test(test_trojan),
		cmocka_unit_test(test_socks_http),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_cfg_expansion),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
