/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_trojan - trojan request framing and the UDP frame codec: known bytes, every truncation,
 * malformed and oversized frames.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../plugins/outbound/trojan/trojan_proto.h"

static void test_hash(void **state)
{
	char h[TROJAN_HASH_LEN];

	/* hashlib.sha224(b"password").hexdigest() */
	assert_int_equal(trojan_password_hash("password", h), 0);
	assert_memory_equal(h, "d63dc919e201d7bc4c825630d2cf25fdc93d4b2f0d46706d29038d01",
			    TROJAN_HASH_LEN);
}

static void v4(union xp_sockaddr *a, const char *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	a->in.sin_family = AF_INET;
	a->in.sin_port = htons(port);
	inet_pton(AF_INET, ip, &a->in.sin_addr);
}

static void test_request(void **state)
{
	union xp_sockaddr a;
	uint8_t buf[TROJAN_REQ_MAX];
	char h[TROJAN_HASH_LEN];
	ssize_t n;

	trojan_password_hash("password", h);
	v4(&a, "10.1.2.3", 80);
	n = trojan_request(h, TROJAN_CMD_CONNECT, &a, NULL, buf);
	assert_int_equal(n, 56 + 2 + 1 + 7 + 2);
	assert_memory_equal(buf, h, 56);
	assert_memory_equal(buf + 56, "\r\n\x01\x01\x0a\x01\x02\x03\x00\x50\r\n", 13);

	n = trojan_request(h, TROJAN_CMD_UDP, &a, "example.org", buf);
	assert_int_equal(n, 56 + 2 + 1 + 15 + 2);
	assert_memory_equal(buf + 56, "\r\n\x03\x03\x0b" "example.org\x00\x50\r\n", 20);

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(443);
	inet_pton(AF_INET6, "fd00::2", &a.in6.sin6_addr);
	n = trojan_request(h, TROJAN_CMD_CONNECT, &a, NULL, buf);
	assert_int_equal(n, 56 + 2 + 1 + 19 + 2);
	assert_int_equal(buf[59], 4);
	assert_int_equal(buf[n - 4], 0x01);
	assert_int_equal(buf[n - 3], 0xbb);

	assert_int_equal(trojan_request(h, 2, &a, NULL, buf), -EINVAL);
	a.sa.sa_family = AF_UNIX;
	assert_int_equal(trojan_request(h, TROJAN_CMD_CONNECT, &a, NULL, buf), -EINVAL);
}

static void test_udp_round_trip(void **state)
{
	static uint8_t buf[2 * (TROJAN_UDP_HDR_MAX + TROJAN_UDP_MAX)];
	union xp_sockaddr a, b;
	const uint8_t *p;
	char name[256];
	size_t plen, off = 0;
	ssize_t hl, n;

	/* two frames back to back: 5 bytes to an IPv4 address, a maximal one to a name */
	v4(&a, "10.1.2.2", 53);
	hl = trojan_udp_header(&a, NULL, 5, buf);
	assert_int_equal(hl, 7 + 4);
	assert_memory_equal(buf, "\x01\x0a\x01\x02\x02\x00\x35\x00\x05\r\n", 11);
	memcpy(buf + hl, "hello", 5);
	off = (size_t)hl + 5;
	hl = trojan_udp_header(&a, "dns.example", TROJAN_UDP_MAX, buf + off);
	assert_int_equal(hl, 4 + 11 + 4);
	memset(buf + off + hl, 0xab, TROJAN_UDP_MAX);
	off += (size_t)hl + TROJAN_UDP_MAX;

	n = trojan_udp_parse(buf, off, &b, name, &p, &plen);
	assert_int_equal(n, 16);
	assert_int_equal(b.sa.sa_family, AF_INET);
	assert_int_equal(b.in.sin_addr.s_addr, a.in.sin_addr.s_addr);
	assert_int_equal(b.in.sin_port, htons(53));
	assert_int_equal(plen, 5);
	assert_memory_equal(p, "hello", 5);
	n = trojan_udp_parse(buf + 16, off - 16, &b, name, &p, &plen);
	assert_int_equal(n, (ssize_t)(off - 16));
	assert_int_equal(b.sa.sa_family, AF_UNSPEC);
	assert_string_equal(name, "dns.example");
	assert_int_equal(plen, TROJAN_UDP_MAX);
	assert_int_equal(p[0], 0xab);
	assert_int_equal(p[plen - 1], 0xab);

	/* an empty datagram is a frame too */
	hl = trojan_udp_header(&a, NULL, 0, buf);
	assert_int_equal(trojan_udp_parse(buf, (size_t)hl, &b, NULL, &p, &plen), hl);
	assert_int_equal(plen, 0);
}

static void test_udp_truncated(void **state)
{
	uint8_t buf[64];
	union xp_sockaddr a, b;
	const uint8_t *p;
	size_t plen;
	ssize_t hl;

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(9);
	hl = trojan_udp_header(&a, NULL, 10, buf);
	memset(buf + hl, 'x', 10);
	/* every prefix is incomplete, never a frame and never an error */
	for (size_t i = 0; i < (size_t)hl + 10; i++)
		assert_int_equal(trojan_udp_parse(buf, i, &b, NULL, &p, &plen), -EAGAIN);
	assert_int_equal(trojan_udp_parse(buf, (size_t)hl + 10, &b, NULL, &p, &plen), hl + 10);
}

static void test_udp_malformed(void **state)
{
	uint8_t buf[64];
	union xp_sockaddr a, b;
	const uint8_t *p;
	size_t plen;
	ssize_t hl;

	v4(&a, "1.2.3.4", 1);
	hl = trojan_udp_header(&a, NULL, 3, buf);
	memcpy(buf + hl, "abc", 3);
	/* no CRLF after the length */
	buf[hl - 2] = '\n';
	buf[hl - 1] = '\r';
	assert_int_equal(trojan_udp_parse(buf, (size_t)hl + 3, &b, NULL, &p, &plen), -EINVAL);
	/* unknown address types */
	buf[0] = 0;
	assert_int_equal(trojan_udp_parse(buf, sizeof(buf), &b, NULL, &p, &plen), -EINVAL);
	buf[0] = 2;
	assert_int_equal(trojan_udp_parse(buf, sizeof(buf), &b, NULL, &p, &plen), -EINVAL);
	buf[0] = 0x7f;
	assert_int_equal(trojan_udp_parse(buf, sizeof(buf), &b, NULL, &p, &plen), -EINVAL);
	/* an empty name */
	memcpy(buf, "\x03\x00\x00\x35\x00\x01\r\nz", 9);
	assert_int_equal(trojan_udp_parse(buf, 9, &b, NULL, &p, &plen), -EINVAL);
	/* a length larger than what follows is only incomplete: bounded by the data, never read
	 * past it */
	hl = trojan_udp_header(&a, NULL, 3, buf);
	buf[hl - 4] = 0xff;
	buf[hl - 3] = 0xff;
	assert_int_equal(trojan_udp_parse(buf, sizeof(buf), &b, NULL, &p, &plen), -EAGAIN);
}

static void test_udp_oversized(void **state)
{
	uint8_t buf[TROJAN_UDP_HDR_MAX];
	union xp_sockaddr a;

	v4(&a, "1.2.3.4", 1);
	assert_int_equal(trojan_udp_header(&a, NULL, TROJAN_UDP_MAX + 1, buf), -EMSGSIZE);
	assert_int_equal(trojan_udp_header(&a, NULL, (size_t)1 << 32, buf), -EMSGSIZE);
	a.sa.sa_family = AF_UNSPEC;
	assert_int_equal(trojan_udp_header(&a, NULL, 1, buf), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_udp_round_trip),
		cmocka_unit_test(test_udp_truncated),
		cmocka_unit_test(test_udp_malformed),
		cmocka_unit_test(test_udp_oversized),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
