/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_sniff_http - the HTTP Host sniffer (<build>/plugins/http_sniff.so, loaded as the daemon
 * loads it), against requests curl, wget and python3's http.client send to a recorder at test
 * time (capture_hellos.py), and against hand-written requests for each rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sniff_common.h"

#define PLUGIN "http_sniff"
#define MAX_HEAD 16384 /* the plugin's max_bytes, checked below */

static const struct xp_sniffer_ops *ops;
static struct sample *samples;
static int n_samples;

static int sniff_str(const char *s, struct xp_sniff_result *r)
{
	return sniff_tcp(ops, s, strlen(s), 80, r);
}

/* FOUND with `name`, as the protocol "http", without ALPN. */
static void expect_name(const char *req, const char *name)
{
	struct xp_sniff_result r;
	int rc = sniff_str(req, &r);

	if (rc != XP_SNIFF_FOUND)
		fail_msg("\"%s\": rc %d, not FOUND", req, rc);
	assert_string_equal(r.name, name);
	assert_string_equal(r.protocol, "http");
	assert_string_equal(r.alpn, "");
}

static void expect_rc(const char *req, int want)
{
	struct xp_sniff_result r;
	int rc = sniff_str(req, &r);

	if (rc != want)
		fail_msg("\"%s\": rc %d, want %d", req, rc, want);
	if (rc != XP_SNIFF_FOUND)
		assert_string_equal(r.name, "");
}

static void test_captured_clients(void **state)
{
	int seen = 0;

	for (int i = 0; i < n_samples; i++) {
		const struct sample *s = &samples[i];
		struct xp_sniff_result r;
		int rc = sniff_tcp(ops, s->data, s->len, 80, &r);
		const uint8_t *sp;
		size_t eoh;

		printf("# %s: %s -> rc %d name \"%s\"\n", s->file, s->name, rc, r.name);
		assert_int_equal(rc, XP_SNIFF_FOUND);
		assert_string_equal(r.name, s->name);
		assert_string_equal(r.protocol, "http");
		/* cut anywhere before the end of the line that names it: MORE; we do not know
		 * which line that is, but every prefix is MORE or FOUND with the same name, and a
		 * prefix without the whole head is never NOT_MINE */
		for (size_t k = 0; k < s->len; k++) {
			rc = sniff_tcp(ops, s->data, k, 80, &r);
			if (rc == XP_SNIFF_FOUND)
				assert_string_equal(r.name, s->name);
			else if (rc != XP_SNIFF_MORE)
				fail_msg("%s: %zu of %zu bytes gave %d", s->file, k, s->len, rc);
		}
		/* the request line alone names absolute- and authority-form requests; an
		 * origin-form one ("/...") needs its Host line */
		eoh = (size_t)((const uint8_t *)memchr(s->data, '\n', s->len) - s->data) + 1;
		sp = (const uint8_t *)memchr(s->data, ' ', s->len);
		assert_non_null(sp);
		rc = sniff_tcp(ops, s->data, eoh, 80, &r);
		assert_int_equal(rc, sp[1] == '/' ? XP_SNIFF_MORE : XP_SNIFF_FOUND);
		seen++;
	}
	/* wget's CONNECT, curl x4 (origin, HEAD, absolute, CONNECT), wget via proxy, python */
	assert_int_equal(seen, 7);
}

static void test_methods(void **state)
{
	static const char *const m[] = { "GET", "POST", "HEAD", "PUT", "DELETE",
					  "OPTIONS", "PATCH", "TRACE" };
	char req[256];

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		snprintf(req, sizeof(req), "%s /x HTTP/1.1\r\nHost: m%zu.example\r\n\r\n", m[i], i);
		char want[32];

		snprintf(want, sizeof(want), "m%zu.example", i);
		expect_name(req, want);
		/* every prefix of the method is MORE */
		for (size_t k = 0; k <= strlen(m[i]); k++) {
			struct xp_sniff_result r;

			assert_int_equal(sniff_tcp(ops, req, k, 80, &r), XP_SNIFF_MORE);
		}
	}
	expect_name("CONNECT tunnel.example:443 HTTP/1.1\r\nHost: other.example\r\n\r\n",
		    "tunnel.example");
	expect_name("OPTIONS * HTTP/1.1\r\nHost: star.example\r\n\r\n", "star.example");
	/* methods are case-sensitive; others are not ours */
	expect_rc("get / HTTP/1.1\r\nHost: a.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("PROPFIND / HTTP/1.1\r\nHost: a.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GETX / HTTP/1.1\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("G", XP_SNIFF_MORE);
	expect_rc("X", XP_SNIFF_NOT_MINE);
	expect_rc("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("\x16\x03\x01\x02\x00\x01", XP_SNIFF_NOT_MINE);
}

static void test_forms(void **state)
{
	/* absolute form: the authority names it, even against Host (RFC 9112 3.2.2) */
	expect_name("GET http://abs.example:8080/p?q HTTP/1.1\r\nHost: wrong.example\r\n\r\n",
		    "abs.example");
	expect_name("GET http://abs.example HTTP/1.1\r\n", "abs.example");
	expect_name("GET HTTPS://Abs.Example?x HTTP/1.0\r\n", "abs.example");
	expect_name("GET http://user:pw@inner.example/ HTTP/1.1\r\n", "inner.example");
	expect_rc("GET http://[2001:db8::1]:80/ HTTP/1.1\r\nHost: x.example\r\n\r\n",
		  XP_SNIFF_NOT_MINE);
	expect_rc("GET http:///nohost HTTP/1.1\r\n", XP_SNIFF_NOT_MINE);
	/* the request line is not complete: not yet */
	expect_rc("GET http://abs.example/ HTTP/1.1", XP_SNIFF_MORE);
	expect_rc("GET http://abs.example/ HTTP/1.1\r", XP_SNIFF_MORE);
	/* origin form */
	expect_name("GET / HTTP/1.1\r\nHost: plain.example\r\n\r\n", "plain.example");
	expect_rc("GET / HTTP/1.1\r\n", XP_SNIFF_MORE);
	expect_rc("GET / HTTP/1.1\r\nAccept: */*\r\n", XP_SNIFF_MORE);
	expect_rc("GET / HTTP/1.1\r\nHost: plain.example", XP_SNIFF_MORE);
	expect_rc("GET / HTTP/1.1\r\nHost: plain.example\r", XP_SNIFF_MORE);
	/* no Host by the end of the head: nothing to route on */
	expect_rc("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.0\n\n", XP_SNIFF_NOT_MINE);
	/* bare LF line ends are accepted (RFC 9112 2.2) */
	expect_name("GET / HTTP/1.1\nHost: lf.example\n\n", "lf.example");
	/* not HTTP/1.x, or a malformed request line */
	expect_rc("GET / HTTP/2.0\r\nHost: a.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET /\r\n", XP_SNIFF_NOT_MINE); /* HTTP/0.9 */
	expect_rc("GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / x HTTP/1.1\r\nHost: a.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET relative HTTP/1.1\r\nHost: a.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET  HTTP/1.1\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\rHost: a.example\r\n\r\n", XP_SNIFF_NOT_MINE);
}

static void test_host_header(void **state)
{
	expect_name("GET / HTTP/1.1\r\nhOsT: Case.Example\r\n\r\n", "case.example");
	expect_name("GET / HTTP/1.1\r\nHost:nows.example\r\n\r\n", "nows.example");
	expect_name("GET / HTTP/1.1\r\nHost: \t ows.example \t\r\n\r\n", "ows.example");
	expect_name("GET / HTTP/1.1\r\nHost: port.example:8080\r\n\r\n", "port.example");
	expect_name("GET / HTTP/1.1\r\nHost: dot.example.\r\n\r\n", "dot.example");
	expect_name("GET / HTTP/1.1\r\nHost: emptyport.example:\r\n\r\n", "emptyport.example");
	expect_name("GET / HTTP/1.1\r\nUser-Agent: x\r\nX-Host: no.example\r\nHostile: no\r\n"
		    "Host: late.example\r\n\r\n",
		    "late.example");
	/* found on the Host line; later lines are not waited for */
	expect_name("GET / HTTP/1.1\r\nHost: early.example\r\nAccept: ", "early.example");
	/* addresses are not names */
	expect_rc("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_name("GET / HTTP/1.1\r\nHost: 192.0.2.com\r\n\r\n", "192.0.2.com");
	/* bad values */
	expect_rc("GET / HTTP/1.1\r\nHost:\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nHost: a b.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nHost: a..example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nHost: a%2eexample\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nHost: a.example:http\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nHost: a.example:65536\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nHost: a.example:0000080\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nHost: \xc3\xa9.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	/* malformed header lines before Host */
	expect_rc("GET / HTTP/1.1\r\nHost : a.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nNoColon\r\nHost: a.example\r\n\r\n", XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\nA: b\r\n folded\r\nHost: a.example\r\n\r\n",
		  XP_SNIFF_NOT_MINE);
	expect_rc("GET / HTTP/1.1\r\n: empty\r\n", XP_SNIFF_NOT_MINE);
	{
		static const char nul[] = "GET / HTTP/1.1\r\nHost: a\0b.example\r\n\r\n";
		struct xp_sniff_result r;

		assert_int_equal(sniff_tcp(ops, nul, sizeof(nul) - 1, 80, &r), XP_SNIFF_NOT_MINE);
	}
	/* a 253-byte name is the longest; 254 is refused; a 64-byte label too */
	{
		char req[600], name[300];
		size_t n = 0;

		while (n < 240) {
			memset(name + n, 'a', 59);
			name[n + 59] = '.';
			n += 60;
		}
		memset(name + n, 'z', 13);
		name[n + 13] = '\0'; /* 253 */
		snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", name);
		expect_name(req, name);
		snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %sz\r\n\r\n", name);
		expect_rc(req, XP_SNIFF_NOT_MINE);
		memset(name, 'b', 64);
		name[64] = '\0';
		snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s.example\r\n\r\n", name);
		expect_rc(req, XP_SNIFF_NOT_MINE);
	}
}

/* The limits: a long request line or header line, or a head that never ends. */
static void test_limits(void **state)
{
	static char req[3 * MAX_HEAD];
	struct xp_sniff_result r;
	size_t n;

	assert_int_equal(ops->max_bytes, MAX_HEAD);
	assert_int_equal(ops->caps, XP_SNIFF_TCP);
	assert_null(ops->ports);

	/* a request line just under the line limit is fine; at it, refused */
	n = (size_t)sprintf(req, "GET /");
	memset(req + n, 'a', 8192 - n - 11);
	n = 8192 - 11;
	n += (size_t)sprintf(req + n, " HTTP/1.1\r\nHost: long.example\r\n\r\n");
	assert_int_equal(sniff_tcp(ops, req, n, 80, &r), XP_SNIFF_FOUND);
	n = (size_t)sprintf(req, "GET /");
	memset(req + n, 'a', 8192 - n);
	assert_int_equal(sniff_tcp(ops, req, 8191, 80, &r), XP_SNIFF_MORE);
	assert_int_equal(sniff_tcp(ops, req, 8192, 80, &r), XP_SNIFF_NOT_MINE);
	assert_int_equal(sniff_tcp(ops, req, 20000, 80, &r), XP_SNIFF_NOT_MINE);

	/* one header line too long */
	n = (size_t)sprintf(req, "GET / HTTP/1.1\r\nX-Long: ");
	memset(req + n, 'v', 9000);
	n += 9000;
	n += (size_t)sprintf(req + n, "\r\nHost: a.example\r\n\r\n");
	assert_int_equal(sniff_tcp(ops, req, n, 80, &r), XP_SNIFF_NOT_MINE);

	/* many short headers: Host past the head limit is not reached */
	n = (size_t)sprintf(req, "GET / HTTP/1.1\r\n");
	while (n < MAX_HEAD + 100)
		n += (size_t)sprintf(req + n, "X-Pad: 0123456789012345678901234567890123\r\n");
	n += (size_t)sprintf(req + n, "Host: far.example\r\n\r\n");
	assert_int_equal(sniff_tcp(ops, req, n, 80, &r), XP_SNIFF_NOT_MINE);
	/* ...and, cut at max_bytes, the answer is already final: never MORE at max_bytes */
	assert_int_equal(sniff_tcp(ops, req, MAX_HEAD, 80, &r), XP_SNIFF_NOT_MINE);
	/* Host just inside the limit */
	n = (size_t)sprintf(req, "GET / HTTP/1.1\r\n");
	while (n < MAX_HEAD - 200)
		n += (size_t)sprintf(req + n, "X-Pad: 0123456789012345678901234567890123\r\n");
	n += (size_t)sprintf(req + n, "Host: near.example\r\n");
	assert_true(n <= MAX_HEAD);
	assert_int_equal(sniff_tcp(ops, req, n, 80, &r), XP_SNIFF_FOUND);
	assert_string_equal(r.name, "near.example");
}

static void test_contract(void **state)
{
	struct xp_sniff_result r;
	struct xp_bytes part = { .data = (const uint8_t *)"GET / HTTP/1.1\r\nHost: a.b\r\n",
				 .len = 27 };
	struct xp_sniff_input in = { .size = sizeof(in), .l4proto = 17, .count = 1,
				     .parts = &part };

	assert_int_equal(ops->sniff(NULL, &in, &r), XP_SNIFF_NOT_MINE);
	in.l4proto = 6;
	assert_int_equal(ops->sniff(NULL, &in, &r), XP_SNIFF_FOUND);
	assert_string_equal(r.name, "a.b");
	in.count = 0;
	assert_int_equal(ops->sniff(NULL, &in, &r), XP_SNIFF_MORE);
	expect_rc("", XP_SNIFF_MORE);
}

/* Random bytes after a plausible start: no crash, no over-read (ASan in the fuzz target). */
static void test_garbage(void **state)
{
	static const char *const starts[] = { "GET ", "GET / HTTP/1.1\r\n",
					      "GET / HTTP/1.1\r\nHost: ", "CONNECT " };
	uint32_t x = 777;

	for (int round = 0; round < 20000; round++) {
		const char *st = starts[round % 4];
		size_t sl = strlen(st), n = sl + (x % 300);
		uint8_t g[400];
		struct xp_sniff_result r;
		int rc;

		memcpy(g, st, sl);
		for (size_t i = sl; i < n; i++) {
			x = x * 1103515245 + 12345;
			g[i] = (uint8_t)(x >> 16);
			if (round % 3 == 0 && g[i] > 0x7e)
				g[i] = (uint8_t)('a' + g[i] % 26); /* text-like, to go deeper */
		}
		rc = sniff_tcp(ops, g, n, 80, &r);
		assert_true(rc == XP_SNIFF_NOT_MINE || rc == XP_SNIFF_MORE || rc == XP_SNIFF_FOUND);
		if (rc == XP_SNIFF_FOUND)
			assert_true(r.name[0] && strlen(r.name) <= 253);
	}
}

static int setup(void **state)
{
	ops = sniff_load(PLUGIN);
	if (!ops)
		return -1;
	n_samples = sniff_capture("http", &samples);
	return n_samples > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	sniff_samples_free(samples, n_samples);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_captured_clients),
		cmocka_unit_test(test_methods),
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_host_header),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_contract),
		cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
