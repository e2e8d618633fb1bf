/* SPDX-License-Identifier: GPL-2.0-only */
/* http_proto: the CONNECT request byte for byte (names, IPv4, IPv6, Basic credentials, names
 * that must not reach the wire); the response head parser on complete heads, every prefix of
 * one, oversized heads, too many headers, garbage, bad status lines and header lines, and 2xx
 * answers that announce a body. */
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

#include "../../plugins/outbound/common/hostname.h"
#include "http_proto.h"

static union xp_sockaddr v4(const char *ip, uint16_t port)
{
	union xp_sockaddr a = {0};

	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &a.in.sin_addr), 1);
	return a;
}

static void test_base64(void **state)
{
	char out[64];

	/* RFC 4648 test vectors */
	assert_int_equal(hp_base64(out, "", 0), 0);
	assert_string_equal(out, "");
	assert_int_equal(hp_base64(out, "f", 1), 4);
	assert_string_equal(out, "Zg==");
	hp_base64(out, "fo", 2);
	assert_string_equal(out, "Zm8=");
	hp_base64(out, "foo", 3);
	assert_string_equal(out, "Zm9v");
	hp_base64(out, "foob", 4);
	assert_string_equal(out, "Zm9vYg==");
	hp_base64(out, "fooba", 5);
	assert_string_equal(out, "Zm9vYmE=");
	hp_base64(out, "foobar", 6);
	assert_string_equal(out, "Zm9vYmFy");
	hp_base64(out, "\xff\xfe\x00", 3);
	assert_string_equal(out, "//4A");
}

static void test_request(void **state)
{
	union xp_sockaddr a4 = v4("192.0.2.1", 443), a6 = {0};
	char b[HP_MAX_REQUEST], name[300], user[300];

	assert_int_equal(hp_connect_request(b, sizeof(b), &a4, NULL, NULL, NULL),
			 strlen("CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n"));
	assert_string_equal(b, "CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n");
	a6.in6.sin6_family = AF_INET6;
	a6.in6.sin6_port = htons(8443);
	inet_pton(AF_INET6, "2001:db8::2", &a6.in6.sin6_addr);
	assert_true(hp_connect_request(b, sizeof(b), &a6, NULL, NULL, NULL) > 0);
	assert_string_equal(b, "CONNECT [2001:db8::2]:8443 HTTP/1.1\r\n"
			       "Host: [2001:db8::2]:8443\r\n\r\n");
	assert_true(hp_connect_request(b, sizeof(b), &a4, "www.example.org", NULL, NULL) > 0);
	assert_string_equal(b, "CONNECT www.example.org:443 HTTP/1.1\r\n"
			       "Host: www.example.org:443\r\n\r\n");
	/* Aladdin:open sesame, RFC 7617's example */
	assert_true(hp_connect_request(b, sizeof(b), &a4, NULL, "Aladdin", "open sesame") > 0);
	assert_string_equal(b, "CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n"
			       "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n");
	/* names that would inject a header or break the request line fall back to the address */
	hp_connect_request(b, sizeof(b), &a4, "x.org\r\nX-Evil: 1", NULL, NULL);
	assert_null(strstr(b, "Evil"));
	assert_non_null(strstr(b, "CONNECT 192.0.2.1:443 "));
	hp_connect_request(b, sizeof(b), &a4, "a b", NULL, NULL);
	assert_non_null(strstr(b, "CONNECT 192.0.2.1:443 "));
	hp_connect_request(b, sizeof(b), &a4, "", NULL, NULL);
	assert_non_null(strstr(b, "CONNECT 192.0.2.1:443 "));
	memset(name, 'n', 256);
	name[256] = 0;
	hp_connect_request(b, sizeof(b), &a4, name, NULL, NULL);
	assert_non_null(strstr(b, "CONNECT 192.0.2.1:443 "));
	/* the largest request fits the buffer the plugin uses */
	memset(user, 'u', 255);
	user[255] = 0;
	name[255] = 0;
	assert_true(hp_connect_request(b, sizeof(b), &a4, name, user, user) > 0);
	/* bad credentials: a colon in the user, oversized fields */
	assert_int_equal(hp_connect_request(b, sizeof(b), &a4, NULL, "a:b", "c"), -EINVAL);
	assert_int_equal(hp_connect_request(b, sizeof(b), &a4, NULL, "", "c"), -EINVAL);
	user[255] = 'u';
	user[256] = 0;
	assert_int_equal(hp_connect_request(b, sizeof(b), &a4, NULL, user, "c"), -EINVAL);
	/* no room */
	assert_int_equal(hp_connect_request(b, 20, &a4, NULL, NULL, NULL), -ENOBUFS);
	assert_int_equal(hp_connect_request(b, 60, &a4, NULL, "Aladdin", "open sesame"), -ENOBUFS);
}

static ssize_t parse(const char *s, struct hp_response *r, const char **why)
{
	return hp_parse_response(s, strlen(s), HP_MAX_HEAD, r, why);
}

static void test_response_ok(void **state)
{
	static const char *ok[] = {
		"HTTP/1.1 200 Connection established\r\n\r\n",
		"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n",
		"HTTP/1.1 200\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nVia: 1.1 p\r\n\r\n",
		"HTTP/1.1 204 \r\nX-Empty:\r\n\r\n",
	};
	struct hp_response r;
	const char *why;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		size_t len = strlen(ok[i]);

		/* every proper prefix is incomplete */
		for (size_t k = 0; k < len; k++)
			assert_int_equal(hp_parse_response(ok[i], k, HP_MAX_HEAD, &r, &why), 0);
		assert_int_equal(parse(ok[i], &r, &why), (ssize_t)len);
		assert_int_equal(r.status / 100, 2);
	}
	parse(ok[0], &r, &why);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.reason, "Connection established");
	/* tunnel bytes after the head are not part of it */
	assert_int_equal(parse("HTTP/1.1 200 OK\r\n\r\nSSH-2.0-banner\r\n", &r, &why), 19);
	/* a 407 and a 502 are complete heads with their status (and may carry a body) */
	assert_int_equal(parse("HTTP/1.1 407 Proxy Authentication Required\r\n"
			       "Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 5\r\n\r\n",
			       &r, &why),
			 44 + 37 + 19 + 2);
	assert_int_equal(r.status, 407);
	assert_true(parse("HTTP/1.0 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>", &r,
			  &why) > 0);
	assert_int_equal(r.status, 502);
}

static void test_response_bad(void **state)
{
	static const char *bad[] = {
		/* garbage and wrong protocols, refused from the first bytes */
		"SSH-2.0-OpenSSH\r\n",
		"\x05\x00",
		"http/1.1 200 OK\r\n\r\n",
		/* status lines */
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 099 X\r\n\r\n",
		"HTTP/1.1 600 X\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.x 200 OK\r\n\r\n",
		"HTTP/1.1 200 O\x01K\r\n\r\n",
		"HTTP/1.1 200 OK\rX\r\n\r\n",
		"HTTP/1.1 200 OK\n\r\n\r\n",
		/* header lines */
		"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n",
		/* a 2xx that announces a body lies about what follows */
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
		"HTTP/1.1 200 OK\r\ncontent-length:1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	};
	struct hp_response r;
	const char *why;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		ssize_t got = parse(bad[i], &r, &why);

		if (got != -EPROTO)
			fail_msg("case %zu \"%s\": got %zd, want -EPROTO", i, bad[i], got);
		assert_non_null(why);
	}
}

static void test_response_limits(void **state)
{
	char *b = malloc(HP_MAX_HEAD * 2);
	struct hp_response r;
	const char *why;
	size_t n;

	assert_non_null(b);
	/* no CRLFCRLF within the limit: refused once the limit is reached, not before */
	n = (size_t)snprintf(b, HP_MAX_HEAD * 2, "HTTP/1.1 200 OK\r\nX: ");
	memset(b + n, 'a', HP_MAX_HEAD * 2 - n);
	assert_int_equal(hp_parse_response(b, HP_MAX_HEAD - 1, HP_MAX_HEAD, &r, &why), 0);
	why = NULL;
	assert_int_equal(hp_parse_response(b, HP_MAX_HEAD, HP_MAX_HEAD, &r, &why), -EMSGSIZE);
	assert_non_null(why);
	assert_int_equal(hp_parse_response(b, HP_MAX_HEAD * 2, HP_MAX_HEAD, &r, &why), -EMSGSIZE);
	/* a complete head one byte over the limit is still too long */
	memcpy(b + HP_MAX_HEAD - 3, "\r\n\r\n", 4);
	assert_int_equal(hp_parse_response(b, HP_MAX_HEAD + 1, HP_MAX_HEAD, &r, &why), -EMSGSIZE);
	/* exactly at the limit is fine */
	assert_int_equal(hp_parse_response(b, HP_MAX_HEAD + 1, HP_MAX_HEAD + 1, &r, &why),
			 HP_MAX_HEAD + 1);
	/* header lines: the limit passes, one more is refused */
	n = (size_t)snprintf(b, HP_MAX_HEAD, "HTTP/1.1 200 OK\r\n");
	for (int i = 0; i < HP_MAX_HEADER_LINES; i++)
		n += (size_t)snprintf(b + n, HP_MAX_HEAD - n, "H%d: v\r\n", i);
	memcpy(b + n, "\r\n", 2);
	assert_int_equal(hp_parse_response(b, n + 2, HP_MAX_HEAD, &r, &why), (ssize_t)(n + 2));
	memcpy(b + n, "Z: v\r\n\r\n", 8);
	assert_int_equal(hp_parse_response(b, n + 8, HP_MAX_HEAD, &r, &why), -EMSGSIZE);
	free(b);
}

/* Random bytes behind a valid prefix: every verdict is one of the documented ones and a
 * success never claims more than the input or the limit (ASan checks the reads). */
static void test_response_garbage(void **state)
{
	static const char *pre[] = {"", "HTTP/1.1 200 OK\r\n", "HTTP/1.1 407 x\r\nA: b\r\n"};
	unsigned seed = 777;
	char b[256];

	for (unsigned i = 0; i < 100000; i++) {
		const char *p = pre[i % 3];
		size_t pl = strlen(p), n = pl + (seed = seed * 1103515245 + 12345) % 64;
		struct hp_response r;
		const char *why = NULL;
		ssize_t got;

		memcpy(b, p, pl);
		for (size_t k = pl; k < n; k++) {
			static const char alpha[] = "\r\n:aZ 0\t\x01\x80-";

			b[k] = alpha[((seed = seed * 1103515245 + 12345) >> 16) % 12];
		}
		got = hp_parse_response(b, n, 128, &r, &why);
		assert_true(got == 0 || got == -EPROTO || got == -EMSGSIZE ||
			    (got > 0 && (size_t)got <= n && got <= 128));
		if (got < 0)
			assert_non_null(why);
		if (got > 0)
			assert_true(r.status >= 100 && r.status <= 599);
	}
}

/* The name rule every outbound shares (plugins/outbound/common/hostname.h). */
static void test_host_ok(void **state)
{
	char name[300];

	assert_int_equal(xpo_name_len("a"), 1);
	assert_int_equal(xpo_name_len("xn--bcher-kva.example"), 21);
	assert_int_equal(xpo_name_len("_srv.example"), 12);
	assert_int_equal(xpo_name_len(NULL), 0);
	assert_int_equal(xpo_name_len(""), 0);
	assert_int_equal(xpo_name_len("a:80"), 0);
	assert_int_equal(xpo_name_len("a/b"), 0);
	assert_int_equal(xpo_name_len("a\r\nb"), 0);
	assert_int_equal(xpo_name_len("b\xc3\xbc" "cher.example"), 0);
	/* 255 bytes is the most a SOCKS5 length byte (and a DNS name) holds */
	memset(name, 'x', sizeof(name));
	name[255] = 0;
	assert_int_equal(xpo_name_len(name), 255);
	name[255] = 'x';
	name[256] = 0;
	assert_int_equal(xpo_name_len(name), 0);
	/* a refused name: the CONNECT names the address instead */
	{
		union xp_sockaddr a = { .in = { .sin_family = AF_INET, .sin_port = htons(443) } };
		char req[1024];

		a.in.sin_addr.s_addr = htonl(0xc0000201);
		assert_true(hp_connect_request(req, sizeof(req), &a, name, NULL, NULL) > 0);
		assert_non_null(strstr(req, "CONNECT 192.0.2.1:443 HTTP/1.1\r\n"));
		assert_true(hp_connect_request(req, sizeof(req), &a, "ok.example", NULL, NULL) > 0);
		assert_non_null(strstr(req, "CONNECT ok.example:443 HTTP/1.1\r\n"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),		cmocka_unit_test(test_request),
		cmocka_unit_test(test_response_ok),	cmocka_unit_test(test_response_bad),
		cmocka_unit_test(test_response_limits), cmocka_unit_test(test_response_garbage),
		cmocka_unit_test(test_host_ok),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
