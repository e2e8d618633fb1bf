/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_dns_msg - the dns plugin's codec: valid messages read right, every kind of bad input
 * refused with its own error (truncation at every length, pointer loops and forward pointers,
 * long labels and names, bad counts, trailing bytes, bad RDATA, misplaced OPT), TTL ageing and
 * error answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../plugins/dns/msg.h"
#include "dns_build.h"

static const uint8_t ip1[4] = { 192, 0, 2, 1 };

static void test_query_ok(void **state)
{
	struct mb m;
	struct dns_msg d;
	char text[1024];

	mb_query(&m, 0x1234, "WWW.Example.com", DNS_T_AAAA, 1, 1);
	assert_int_equal(dns_parse(m.b, m.n, &d, NULL, NULL), 0);
	assert_int_equal(d.id, 0x1234);
	assert_int_equal(d.q.qtype, DNS_T_AAAA);
	assert_int_equal(d.q.qclass, DNS_C_IN);
	assert_int_equal(d.q.name_len, 17);
	assert_true(d.has_opt);
	assert_int_equal(d.opt_udp, 1232);
	assert_true(dns_do_bit(&d));
	assert_int_equal(d.question_end, 12 + 17 + 4);
	assert_int_equal(dns_name_text(d.q.name, d.q.name_len, text, sizeof(text)), 15);
	assert_string_equal(text, "www.example.com");

	mb_query(&m, 1, "a.b", DNS_T_A, 0, 0);
	assert_int_equal(dns_parse(m.b, m.n, &d, NULL, NULL), 0);
	assert_false(d.has_opt);
	assert_false(dns_do_bit(&d));
}

struct seen {
	int n, a, opt;
	uint32_t ttl_a;
};

static int seen_cb(const uint8_t *msg, size_t len, const struct dns_rr *rr, void *arg)
{
	struct seen *s = arg;

	s->n++;
	if (rr->type == DNS_T_A) {
		s->a++;
		s->ttl_a = rr->ttl;
		assert_memory_equal(msg + rr->rdata_off, ip1, 4);
	}
	if (rr->type == DNS_T_OPT)
		s->opt++;
	return 0;
}

static void test_answer_cname_chain(void **state)
{
	struct mb m;
	struct dns_msg d;
	struct seen s = { 0 };
	size_t cname_at;

	/* www.example.com CNAME edge.example.net (compressed to "edge" + ptr to example?) ;
	 * edge... A 192.0.2.1; additional OPT */
	mb_hdr(&m, 7, 0x8180, 1, 2, 0, 1);
	mb_question(&m, "www.example.com", DNS_T_A);
	mb_u16(&m, 0xc00c);
	mb_u16(&m, DNS_T_CNAME);
	mb_u16(&m, 1);
	mb_u32(&m, 300);
	mb_u16(&m, 7);
	cname_at = m.n;
	mb_u8(&m, 4);
	mb_bytes(&m, "edge", 4);
	mb_u16(&m, 0xc010); /* -> "example.com" inside the question */
	mb_u16(&m, (uint16_t)(0xc000 | cname_at));
	mb_u16(&m, DNS_T_A);
	mb_u16(&m, 1);
	mb_u32(&m, 60);
	mb_u16(&m, 4);
	mb_bytes(&m, ip1, 4);
	mb_opt(&m, 1232, 0);
	assert_int_equal(dns_parse(m.b, m.n, &d, seen_cb, &s), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.a, 1);
	assert_int_equal(s.opt, 1);
	assert_int_equal(s.ttl_a, 60);
	assert_int_equal(d.min_answer_ttl, 60);
	assert_int_equal(d.n_addr, 1);
	assert_int_equal(d.n_answer_qtype, 2);
	assert_true(d.has_opt);

	uint8_t name[DNS_MAX_NAME];
	char text[1024];
	size_t next;
	int n = dns_name_read(m.b, m.n, cname_at, name, &next);

	assert_true(n > 0);
	assert_int_equal(next, cname_at + 7);
	dns_name_text(name, (size_t)n, text, sizeof(text));
	assert_string_equal(text, "edge.example.com");
}

static void test_truncated_everywhere(void **state)
{
	struct mb m;
	size_t len;

	mb_answer_a(&m, 9, "host.example", ip1, 30);
	mb_opt(&m, 1232, 0);
	m.b[11] = 1; /* arcount */
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), 0);
	/* every proper prefix fails cleanly, and says truncated */
	for (len = 0; len < m.n; len++)
		assert_int_equal(dns_parse(m.b, len, NULL, NULL, NULL), DNS_E_TRUNC);
}

static void test_pointer_loop_and_forward(void **state)
{
	struct mb m;

	/* question name is a pointer to itself */
	mb_hdr(&m, 1, 0, 1, 0, 0, 0);
	mb_u16(&m, 0xc00c);
	mb_u16(&m, 1);
	mb_u16(&m, 1);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_PTRLOOP);

	/* answer owner points forward, into its own RDATA */
	mb_hdr(&m, 1, 0x8000, 1, 1, 0, 0);
	mb_question(&m, "a.b", 1);
	mb_u16(&m, (uint16_t)(0xc000 | (m.n + 12)));
	mb_u16(&m, 1);
	mb_u16(&m, 1);
	mb_u32(&m, 1);
	mb_u16(&m, 4);
	mb_bytes(&m, ip1, 4);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_PTRFWD);

	/* a pointer into the header */
	mb_hdr(&m, 1, 0x8000, 1, 1, 0, 0);
	mb_question(&m, "a.b", 1);
	mb_u16(&m, 0xc002);
	mb_u16(&m, 1);
	mb_u16(&m, 1);
	mb_u32(&m, 1);
	mb_u16(&m, 4);
	mb_bytes(&m, ip1, 4);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_PTRFWD);

	/* a pointer back into the middle of the question: "0" (48) read as a label length, so
	 * the name would run on past the pointer through the answer's RDATA (zeros, which end
	 * it). Such a name would change when a later record is rewritten (dns_age), so what a
	 * pointer names must lie before the pointer (found by fuzz_dns_msg) */
	{
		static const uint8_t zeros[100];

		mb_hdr(&m, 1, 0x8000, 1, 1, 0, 0);
		mb_question(&m, "a0c", 1);
		mb_u16(&m, 0xc00e); /* at 21, to 14: '0' = a 48-byte label from 15 */
		mb_u16(&m, 99);
		mb_u16(&m, 1);
		mb_u32(&m, 1);
		mb_u16(&m, sizeof(zeros));
		mb_bytes(&m, zeros, sizeof(zeros));
		assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_PTRFWD);
	}

	/* a pointer into an earlier record's TTL, whose bytes 01 'x' 00 00 read as the name "x":
	 * ageing that TTL would rewrite the later name (found by fuzz_dns_msg) */
	{
		static const uint8_t ttl_name[4] = { 1, 'x', 0, 0 };

		mb_hdr(&m, 1, 0x8000, 1, 2, 0, 0);
		mb_question(&m, "a", 1); /* 12..18 */
		mb_u16(&m, 0xc00c);	 /* answer 1 at 19 */
		mb_u16(&m, 1);
		mb_u16(&m, 1);
		mb_bytes(&m, ttl_name, 4); /* its TTL, at 25 */
		mb_u16(&m, 4);
		mb_bytes(&m, ip1, 4);
		mb_u16(&m, 0xc019); /* answer 2: owner -> 25 */
		mb_u16(&m, 1);
		mb_u16(&m, 1);
		mb_u32(&m, 1);
		mb_u16(&m, 4);
		mb_bytes(&m, ip1, 4);
		assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_PTRFWD);
	}

	/* two pointers pointing at each other: A at 12 -> 14 (forward, visited later) */
	mb_hdr(&m, 1, 0, 1, 0, 0, 0);
	mb_u16(&m, 0xc00e);
	mb_u16(&m, 0xc00c);
	mb_u16(&m, 1);
	mb_u16(&m, 1);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_PTRFWD);
}

static void test_label_and_name_length(void **state)
{
	struct mb m;
	int i;

	/* label length 64: reserved label type bits 01 */
	mb_hdr(&m, 1, 0, 1, 0, 0, 0);
	mb_u8(&m, 64);
	for (i = 0; i < 64; i++)
		mb_u8(&m, 'a');
	mb_u8(&m, 0);
	mb_u16(&m, 1);
	mb_u16(&m, 1);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_LABEL);

	/* 0x80 label type */
	mb_hdr(&m, 1, 0, 1, 0, 0, 0);
	mb_u8(&m, 0x81);
	mb_u8(&m, 'a');
	mb_u8(&m, 0);
	mb_u16(&m, 1);
	mb_u16(&m, 1);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_LABEL);

	/* 63-byte labels are fine, but five of them make a 321-octet name */
	mb_hdr(&m, 1, 0, 1, 0, 0, 0);
	for (int l = 0; l < 5; l++) {
		mb_u8(&m, 63);
		for (i = 0; i < 63; i++)
			mb_u8(&m, 'x');
	}
	mb_u8(&m, 0);
	mb_u16(&m, 1);
	mb_u16(&m, 1);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_NAMELEN);

	/* exactly 255: 3 x 63 + 61 + root = 4*1 + 189 + 61 + 1 = 255 */
	mb_hdr(&m, 1, 0, 1, 0, 0, 0);
	for (int l = 0; l < 3; l++) {
		mb_u8(&m, 63);
		for (i = 0; i < 63; i++)
			mb_u8(&m, 'x');
	}
	mb_u8(&m, 61);
	for (i = 0; i < 61; i++)
		mb_u8(&m, 'y');
	mb_u8(&m, 0);
	mb_u16(&m, 1);
	mb_u16(&m, 1);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), 0);
	/* one more byte in the last label: 256 */
	m.b[12 + 3 * 64] = 62;
	m.n = 12 + 3 * 64;
	mb_u8(&m, 62);
	for (i = 0; i < 62; i++)
		mb_u8(&m, 'y');
	mb_u8(&m, 0);
	mb_u16(&m, 1);
	mb_u16(&m, 1);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_NAMELEN);
}

static void test_counts(void **state)
{
	struct mb m;

	mb_query(&m, 1, "a.b", 1, 0, 0);
	m.b[5] = 0; /* qdcount 0 */
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_COUNT);
	m.b[5] = 2;
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_COUNT);
	m.b[5] = 1;
	m.b[7] = 1; /* one answer claimed, none there */
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_TRUNC);
	m.b[6] = 0xff; /* 65281 answers */
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_COUNT);

	/* a record past the counts is trailing garbage */
	mb_answer_a(&m, 1, "a.b", ip1, 1);
	m.b[7] = 0;
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_TRAILING);
	mb_query(&m, 1, "a.b", 1, 0, 0);
	mb_u8(&m, 0);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_TRAILING);
}

static void test_oversized(void **state)
{
	uint8_t *big = calloc(1, DNS_MAX_MSG + 1);

	assert_non_null(big);
	assert_int_equal(dns_parse(big, DNS_MAX_MSG + 1, NULL, NULL, NULL), DNS_E_OVERSIZE);
	free(big);
}

static void test_rdata(void **state)
{
	struct mb m;
	static const uint8_t three[3] = { 1, 2, 3 };

	mb_hdr(&m, 1, 0x8180, 1, 1, 0, 0);
	mb_question(&m, "a.b", 1);
	mb_rr_ptr(&m, DNS_T_A, 5, three, 3);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_RDATA);

	mb_hdr(&m, 1, 0x8180, 1, 1, 0, 0);
	mb_question(&m, "a.b", DNS_T_AAAA);
	mb_rr_ptr(&m, DNS_T_AAAA, 5, ip1, 4);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_RDATA);

	/* CNAME whose name runs past its RDATA */
	mb_hdr(&m, 1, 0x8180, 1, 1, 0, 0);
	mb_question(&m, "a.b", 1);
	mb_u16(&m, 0xc00c);
	mb_u16(&m, DNS_T_CNAME);
	mb_u16(&m, 1);
	mb_u32(&m, 5);
	mb_u16(&m, 2);
	mb_u8(&m, 1);
	mb_u8(&m, 'x');
	mb_u8(&m, 0); /* the root is outside RDATA */
	m.b[7] = 1;
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_RDATA);

	/* SOA with a short fixed part */
	mb_hdr(&m, 1, 0x8183, 1, 0, 1, 0);
	mb_question(&m, "a.b", 1);
	mb_soa(&m, 60, 30);
	m.b[m.n - 22 - 1] = 21; /* rdlen 22 -> 21 */
	m.n--;
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_RDATA);
}

static void test_opt_rules(void **state)
{
	struct mb m;

	/* OPT in the answer section */
	mb_hdr(&m, 1, 0x8180, 1, 1, 0, 0);
	mb_question(&m, "a.b", 1);
	mb_opt(&m, 512, 0);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_OPT);
	/* two OPTs */
	mb_hdr(&m, 1, 0x8180, 1, 0, 0, 2);
	mb_question(&m, "a.b", 1);
	mb_opt(&m, 512, 0);
	mb_opt(&m, 512, 0);
	assert_int_equal(dns_parse(m.b, m.n, NULL, NULL, NULL), DNS_E_OPT);
}

static void test_soa_negative(void **state)
{
	struct mb m;
	struct dns_msg d;

	mb_hdr(&m, 1, 0x8183, 1, 0, 1, 0);
	mb_question(&m, "nx.example", 1);
	mb_soa(&m, 900, 120);
	assert_int_equal(dns_parse(m.b, m.n, &d, NULL, NULL), 0);
	assert_int_equal(DNS_RCODE(d.flags), DNS_R_NXDOMAIN);
	assert_true(d.has_soa);
	assert_int_equal(d.soa_ttl, 900);
	assert_int_equal(d.soa_minimum, 120);
}

static void test_age_and_name_helpers(void **state)
{
	struct mb m;
	struct dns_msg d;
	struct seen s = { 0 };

	mb_answer_a(&m, 3, "a.b", ip1, 100);
	mb_opt(&m, 4096, 0x8000);
	m.b[11] = 1;
	assert_int_equal(dns_age(m.b, m.n, 30), 0);
	assert_int_equal(dns_parse(m.b, m.n, &d, seen_cb, &s), 0);
	assert_int_equal(s.ttl_a, 70);
	assert_int_equal(d.opt_ttl, 0x8000); /* OPT's TTL field is flags, never aged */
	assert_int_equal(dns_age(m.b, m.n, 1000), 0);
	s.n = 0;
	assert_int_equal(dns_parse(m.b, m.n, &d, seen_cb, &s), 0);
	assert_int_equal(s.ttl_a, 0);

	static const uint8_t n1[] = "\x03WwW\x01" "A\x00", n2[] = "\x03www\x01" "a\x00";
	assert_true(dns_name_equal(n1, 7, n2, 7));
	assert_false(dns_name_equal(n1, 7, n2, 6));

	static const uint8_t odd[] = "\x03" "a.\x01\x00";
	char text[64];

	assert_true(dns_name_text(odd, 5, text, sizeof(text)) > 0);
	assert_string_equal(text, "a\\.\\001");
	assert_int_equal(dns_name_text(odd, 5, text, 4), -1);
	assert_int_equal(dns_name_text((const uint8_t *)"", 1, text, sizeof(text)), 1);
	assert_string_equal(text, ".");
}

static void test_make_error(void **state)
{
	struct mb m;
	struct dns_msg q, a;
	uint8_t out[DNS_HDR_LEN + DNS_MAX_NAME + 4];
	size_t n;

	mb_query(&m, 0xbeef, "x.example", DNS_T_A, 1, 0);
	assert_int_equal(dns_parse(m.b, m.n, &q, NULL, NULL), 0);
	n = dns_make_error(&q, DNS_R_SERVFAIL, out);
	assert_int_equal(dns_parse(out, n, &a, NULL, NULL), 0);
	assert_int_equal(a.id, 0xbeef);
	assert_true(a.flags & DNS_F_QR);
	assert_true(a.flags & DNS_F_RD);
	assert_int_equal(DNS_RCODE(a.flags), DNS_R_SERVFAIL);
	assert_true(dns_question_match(&q.q, &a.q));
	assert_int_equal(a.ancount + a.nscount + a.arcount, 0);
}

/* Garbage: random bytes must be refused or accepted without reading out of bounds (run under
 * ASan in the fuzz target; here, a smoke check that nothing crashes and errors are known). */
static void test_garbage(void **state)
{
	uint8_t buf[600];
	unsigned seed = 12345;
	int i, rc;
	size_t j, len;

	for (i = 0; i < 20000; i++) {
		len = (size_t)(rand_r(&seed) % sizeof(buf));
		for (j = 0; j < len; j++)
			buf[j] = (uint8_t)rand_r(&seed);
		if (len > 5) {
			buf[4] = 0; /* qdcount 1, small counts: reach the name and record code */
			buf[5] = 1;
			buf[6] = buf[8] = buf[10] = 0;
			buf[7] &= 3;
			buf[9] &= 3;
			buf[11] &= 3;
		}
		rc = dns_parse(buf, len, NULL, NULL, NULL);
		assert_true(rc <= 0 && rc >= DNS_E_OVERSIZE);
		assert_string_not_equal(dns_strerror(rc), "unknown error");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_ok),
		cmocka_unit_test(test_answer_cname_chain),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_pointer_loop_and_forward),
		cmocka_unit_test(test_label_and_name_length),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_rdata),
		cmocka_unit_test(test_opt_rules),
		cmocka_unit_test(test_soa_negative),
		cmocka_unit_test(test_age_and_name_helpers),
		cmocka_unit_test(test_make_error),
		cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
