/* SPDX-License-Identifier: GPL-2.0-only */
/* socks5_proto: request builders byte for byte; reply parsers on every prefix of a valid
 * message (incomplete, with the exact length still needed), on wrong versions, wrong methods,
 * refused credentials, every REP code, bad address types, and on garbage; the UDP header both
 * ways. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "socks5_proto.h"

static union xp_sockaddr v4(const char *ip, uint16_t port)
{
	union xp_sockaddr a = {0};

	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &a.in.sin_addr), 1);
	return a;
}

static union xp_sockaddr v6(const char *ip, uint16_t port)
{
	union xp_sockaddr a = {0};

	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &a.in6.sin6_addr), 1);
	return a;
}

static void test_greeting(void **state)
{
	uint8_t b[8];

	assert_int_equal(s5_greeting(b, sizeof(b), false), 3);
	assert_memory_equal(b, "\x05\x01\x00", 3);
	assert_int_equal(s5_greeting(b, sizeof(b), true), 3);
	assert_memory_equal(b, "\x05\x01\x02", 3);
	assert_int_equal(s5_greeting(b, 2, true), -ENOBUFS);
}

static void test_method_reply(void **state)
{
	const char *why = NULL;
	size_t need = 0;

	/* truncated: nothing, then the version alone */
	assert_int_equal(s5_parse_method((const uint8_t *)"", 0, false, &need, &why), 0);
	assert_int_equal(need, 2);
	assert_int_equal(s5_parse_method((const uint8_t *)"\x05", 1, false, &need, &why), 0);
	assert_int_equal(need, 2);
	/* the chosen method */
	assert_int_equal(s5_parse_method((const uint8_t *)"\x05\x00", 2, false, &need, &why), 2);
	assert_int_equal(s5_parse_method((const uint8_t *)"\x05\x02", 2, true, &need, &why), 2);
	/* wrong version: refused at the first byte, without waiting for the second */
	why = NULL;
	assert_int_equal(s5_parse_method((const uint8_t *)"\x04", 1, false, &need, &why), -EPROTO);
	assert_non_null(why);
	assert_int_equal(s5_parse_method((const uint8_t *)"HTTP/1.1", 8, false, &need, &why),
			 -EPROTO);
	/* no acceptable method: an authentication failure */
	why = NULL;
	assert_int_equal(s5_parse_method((const uint8_t *)"\x05\xff", 2, true, &need, &why),
			 -EACCES);
	assert_non_null(why);
	assert_int_equal(s5_parse_method((const uint8_t *)"\x05\xff", 2, false, &need, &why),
			 -EACCES);
	/* a method we did not offer: user/pass when we offered none, none when we offered
	 * user/pass (which would skip authentication), GSSAPI */
	assert_int_equal(s5_parse_method((const uint8_t *)"\x05\x02", 2, false, &need, &why),
			 -EPROTO);
	assert_int_equal(s5_parse_method((const uint8_t *)"\x05\x00", 2, true, &need, &why),
			 -EPROTO);
	assert_int_equal(s5_parse_method((const uint8_t *)"\x05\x01", 2, true, &need, &why),
			 -EPROTO);
}

static void test_auth_request(void **state)
{
	uint8_t b[S5_MAX_MSG];
	char u255[256], p256[257];

	assert_int_equal(s5_auth_request(b, sizeof(b), "bob", "secret"), 3 + 3 + 6);
	assert_memory_equal(b,
			    "\x01\x03"
			    "bob\x06"
			    "secret",
			    12);
	/* bounds: 255 is the most either field may hold, empty is not allowed */
	memset(u255, 'u', 255);
	u255[255] = 0;
	memset(p256, 'p', 256);
	p256[256] = 0;
	assert_int_equal(s5_auth_request(b, sizeof(b), u255, u255), 3 + 255 + 255);
	assert_int_equal(b[1], 255);
	assert_int_equal(b[2 + 255], 255);
	assert_int_equal(s5_auth_request(b, sizeof(b), "u", p256), -EINVAL);
	assert_int_equal(s5_auth_request(b, sizeof(b), "", "p"), -EINVAL);
	assert_int_equal(s5_auth_request(b, sizeof(b), "u", ""), -EINVAL);
	assert_int_equal(s5_auth_request(b, sizeof(b), NULL, "p"), -EINVAL);
	assert_int_equal(s5_auth_request(b, 5, "user", "pass"), -ENOBUFS);
}

static void test_auth_reply(void **state)
{
	const char *why = NULL;
	size_t need = 0;

	assert_int_equal(s5_parse_auth((const uint8_t *)"", 0, &need, &why), 0);
	assert_int_equal(need, 2);
	assert_int_equal(s5_parse_auth((const uint8_t *)"\x01", 1, &need, &why), 0);
	assert_int_equal(s5_parse_auth((const uint8_t *)"\x01\x00", 2, &need, &why), 2);
	/* wrong password: any non-zero status */
	why = NULL;
	assert_int_equal(s5_parse_auth((const uint8_t *)"\x01\x01", 2, &need, &why), -EACCES);
	assert_non_null(why);
	assert_int_equal(s5_parse_auth((const uint8_t *)"\x01\xff", 2, &need, &why), -EACCES);
	/* wrong sub-negotiation version (a server answering with 5 is not RFC 1929) */
	assert_int_equal(s5_parse_auth((const uint8_t *)"\x05\x00", 2, &need, &why), -EPROTO);
	assert_int_equal(s5_parse_auth((const uint8_t *)"\x00", 1, &need, &why), -EPROTO);
}

static void test_request(void **state)
{
	union xp_sockaddr a4 = v4("192.0.2.7", 443), a6 = v6("2001:db8::1", 8080);
	uint8_t b[S5_MAX_MSG];
	char longname[300];

	assert_int_equal(s5_request(b, sizeof(b), S5_CMD_CONNECT, &a4, NULL), 10);
	assert_memory_equal(b, "\x05\x01\x00\x01\xc0\x00\x02\x07\x01\xbb", 10);
	assert_int_equal(s5_request(b, sizeof(b), S5_CMD_CONNECT, &a6, NULL), 22);
	assert_memory_equal(b, "\x05\x01\x00\x04\x20\x01\x0d\xb8", 8);
	assert_memory_equal(b + 20, "\x1f\x90", 2);
	/* a name, when known, with the address's port */
	assert_int_equal(s5_request(b, sizeof(b), S5_CMD_CONNECT, &a4, "example.org"),
			 4 + 1 + 11 + 2);
	assert_memory_equal(b,
			    "\x05\x01\x00\x03\x0b"
			    "example.org\x01\xbb",
			    18);
	/* a name that is not a host name falls back to the address: nothing the sniffer saw
	 * reaches the wire unless it is [A-Za-z0-9._-] */
	assert_int_equal(s5_request(b, sizeof(b), S5_CMD_CONNECT, &a4, "evil\r\nname"), 10);
	assert_int_equal(b[3], S5_ATYP_IPV4);
	assert_int_equal(s5_request(b, sizeof(b), S5_CMD_CONNECT, &a4, ""), 10);
	memset(longname, 'a', 256);
	longname[256] = 0;
	assert_int_equal(s5_request(b, sizeof(b), S5_CMD_CONNECT, &a4, longname), 10);
	longname[255] = 0;
	assert_int_equal(s5_request(b, sizeof(b), S5_CMD_CONNECT, &a4, longname), 4 + 1 + 255 + 2);
	/* UDP ASSOCIATE with the zero address */
	union xp_sockaddr z = {0};
	z.in.sin_family = AF_INET;
	assert_int_equal(s5_request(b, sizeof(b), S5_CMD_UDP_ASSOCIATE, &z, NULL), 10);
	assert_memory_equal(b, "\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00", 10);
	/* no room, unknown family */
	assert_int_equal(s5_request(b, 9, S5_CMD_CONNECT, &a4, NULL), -ENOBUFS);
	union xp_sockaddr un = {0};
	un.sa.sa_family = AF_UNIX;
	assert_int_equal(s5_request(b, sizeof(b), S5_CMD_CONNECT, &un, NULL), -EAFNOSUPPORT);
}

/* Every proper prefix of a complete reply is "incomplete" and asks for no more than the
 * whole, and never for fewer bytes than it already has. */
static void check_prefixes(const uint8_t *msg, size_t len)
{
	union xp_sockaddr bnd;
	const char *why;
	size_t need;

	for (size_t i = 0; i < len; i++) {
		need = 0;
		assert_int_equal(s5_parse_reply(msg, i, &bnd, &need, &why), 0);
		assert_true(need > i);
		assert_true(need <= len);
	}
	assert_int_equal(s5_parse_reply(msg, len, &bnd, &need, &why), (ssize_t)len);
}

static void test_reply_ok(void **state)
{
	static const uint8_t r4[] = {5, 0, 0, 1, 10, 1, 7, 2, 0x04, 0x38};
	static const uint8_t r6[] = {5, 0, 0, 4, 0xfd, 0, 0, 1, 0, 0, 0,
				     0, 0, 0, 0, 0,    0, 0, 0, 2, 0, 53};
	static const uint8_t rd[] = {5, 0, 0, 3, 4, 'h', 'o', 's', 't', 0, 80};
	union xp_sockaddr bnd;
	const char *why;
	size_t need;
	uint8_t big[300];

	check_prefixes(r4, sizeof(r4));
	assert_int_equal(s5_parse_reply(r4, sizeof(r4), &bnd, &need, &why), 10);
	assert_int_equal(bnd.sa.sa_family, AF_INET);
	assert_int_equal(ntohs(bnd.in.sin_port), 1080);
	assert_int_equal(ntohl(bnd.in.sin_addr.s_addr), 0x0a010702);
	check_prefixes(r6, sizeof(r6));
	assert_int_equal(s5_parse_reply(r6, sizeof(r6), &bnd, &need, &why), 22);
	assert_int_equal(bnd.sa.sa_family, AF_INET6);
	assert_int_equal(ntohs(bnd.in6.sin6_port), 53);
	check_prefixes(rd, sizeof(rd));
	assert_int_equal(s5_parse_reply(rd, sizeof(rd), &bnd, &need, &why), 11);
	assert_int_equal(bnd.sa.sa_family, AF_UNSPEC);
	/* trailing bytes (a server-speaks-first target's banner) are not the reply's */
	memcpy(big, r4, sizeof(r4));
	memcpy(big + sizeof(r4), "SSH-2.0-x\r\n", 11);
	assert_int_equal(s5_parse_reply(big, sizeof(r4) + 11, &bnd, &need, &why), 10);
	/* the longest reply: a 255-byte name */
	big[0] = 5, big[1] = 0, big[2] = 0, big[3] = 3, big[4] = 255;
	memset(big + 5, 'x', 255);
	big[260] = 0, big[261] = 1;
	check_prefixes(big, 262);
	assert_true(262 <= S5_MAX_MSG);
}

static void test_reply_errors(void **state)
{
	static const int errs[] = {0,		EIO,	      EACCES,
				   ENETUNREACH, EHOSTUNREACH, ECONNREFUSED,
				   ETIMEDOUT,	EOPNOTSUPP,   EAFNOSUPPORT};
	union xp_sockaddr bnd;
	const char *why;
	size_t need;
	uint8_t b[10] = {5, 0, 0, 1, 0, 0, 0, 0, 0, 0};

	/* every REP code maps to its errno with a message, as soon as REP has arrived */
	for (unsigned rep = 1; rep <= 8; rep++) {
		b[1] = (uint8_t)rep;
		why = NULL;
		assert_int_equal(s5_parse_reply(b, 2, &bnd, &need, &why), -errs[rep]);
		assert_non_null(why);
		assert_int_equal(s5_parse_reply(b, sizeof(b), &bnd, &need, &why), -errs[rep]);
	}
	b[1] = 9;
	assert_int_equal(s5_parse_reply(b, sizeof(b), &bnd, &need, &why), -EPROTO);
	b[1] = 0xff;
	assert_int_equal(s5_parse_reply(b, sizeof(b), &bnd, &need, &why), -EPROTO);
	b[1] = 0;
	/* wrong version, reserved byte, address types 0, 2, 5, 255, an empty name */
	b[0] = 4;
	assert_int_equal(s5_parse_reply(b, 1, &bnd, &need, &why), -EPROTO);
	b[0] = 5;
	b[2] = 1;
	assert_int_equal(s5_parse_reply(b, 3, &bnd, &need, &why), -EPROTO);
	b[2] = 0;
	for (unsigned t = 0; t < 256; t++) {
		if (t == 1 || t == 3 || t == 4)
			continue;
		b[3] = (uint8_t)t;
		why = NULL;
		assert_int_equal(s5_parse_reply(b, 4, &bnd, &need, &why), -EPROTO);
		assert_non_null(why);
	}
	b[3] = 3;
	b[4] = 0;
	assert_int_equal(s5_parse_reply(b, 5, &bnd, &need, &why), -EPROTO);
	/* garbage: an HTTP answer from a server that is not SOCKS */
	assert_int_equal(s5_parse_reply((const uint8_t *)"HTTP/1.0 400", 12, &bnd, &need, &why),
			 -EPROTO);
}

/* Every possible 4-byte prefix and length: the parser returns a valid verdict, never reads
 * past n (ASan sees that), and when incomplete asks for 4..262 bytes. */
static void test_reply_garbage(void **state)
{
	uint8_t *b = malloc(4);
	union xp_sockaddr bnd;
	const char *why;
	size_t need;
	unsigned seed = 12345;

	assert_non_null(b);
	for (unsigned i = 0; i < 200000; i++) {
		size_t n = (seed = seed * 1103515245 + 12345) % 5;
		ssize_t r;

		for (size_t k = 0; k < n; k++)
			b[k] = (uint8_t)((seed = seed * 1103515245 + 12345) >> 16);
		if (i & 1 && n)
			b[0] = 5;
		if (i & 2 && n > 1)
			b[1] = 0;
		if (i & 4 && n > 2)
			b[2] = 0;
		r = s5_parse_reply(b, n, &bnd, &need, &why);
		assert_true(r <= 0);
		if (r == 0)
			assert_true(need > n && need <= 262);
	}
	free(b);
}

static void test_udp_header(void **state)
{
	union xp_sockaddr a4 = v4("198.51.100.9", 53), a6 = v6("2001:db8::53", 5353), from;
	uint8_t b[S5_UDP_MAX_HDR + 16];
	const char *why;
	uint8_t frag = 9;

	assert_int_equal(s5_udp_header(b, sizeof(b), &a4, NULL), 10);
	assert_memory_equal(b, "\x00\x00\x00\x01\xc6\x33\x64\x09\x00\x35", 10);
	assert_int_equal(s5_udp_parse(b, 10, &from, &frag, &why), 10);
	assert_int_equal(frag, 0);
	assert_memory_equal(&from.in, &a4.in, sizeof(a4.in));
	assert_int_equal(s5_udp_header(b, sizeof(b), &a6, NULL), 22);
	memcpy(b + 22, "payload", 7);
	assert_int_equal(s5_udp_parse(b, 29, &from, &frag, &why), 22);
	assert_int_equal(from.sa.sa_family, AF_INET6);
	assert_int_equal(ntohs(from.in6.sin6_port), 5353);
	assert_int_equal(s5_udp_header(b, sizeof(b), &a4, "dns.example"), 4 + 1 + 11 + 2);
	assert_int_equal(s5_udp_parse(b, 18, &from, &frag, &why), 18);
	assert_int_equal(from.sa.sa_family, AF_UNSPEC);
	/* fragments are reported, the caller drops them */
	b[2] = 1;
	assert_int_equal(s5_udp_parse(b, 18, &from, &frag, &why), 18);
	assert_int_equal(frag, 1);
	/* truncated at every length, reserved bytes, bad type */
	assert_int_equal(s5_udp_header(b, sizeof(b), &a4, NULL), 10);
	for (size_t n = 0; n < 10; n++)
		assert_int_equal(s5_udp_parse(b, n, &from, &frag, &why), -EPROTO);
	b[0] = 1;
	assert_int_equal(s5_udp_parse(b, 10, &from, &frag, &why), -EPROTO);
	b[0] = 0;
	b[1] = 1;
	assert_int_equal(s5_udp_parse(b, 10, &from, &frag, &why), -EPROTO);
	b[1] = 0;
	b[3] = 2;
	assert_int_equal(s5_udp_parse(b, 10, &from, &frag, &why), -EPROTO);
	assert_int_equal(s5_udp_header(b, 9, &a4, NULL), -ENOBUFS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting),     cmocka_unit_test(test_method_reply),
		cmocka_unit_test(test_auth_request), cmocka_unit_test(test_auth_reply),
		cmocka_unit_test(test_request),	     cmocka_unit_test(test_reply_ok),
		cmocka_unit_test(test_reply_errors), cmocka_unit_test(test_reply_garbage),
		cmocka_unit_test(test_udp_header),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
