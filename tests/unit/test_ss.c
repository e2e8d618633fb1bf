/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_ss - the shadowsocks AEAD codec: key derivation against values computed independently
 * (Python hashlib/hmac and the `cryptography` package, see the comments), chunk round trips,
 * and every way a server's stream can be wrong.
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

#include "../../plugins/outbound/shadowsocks/ss_aead.h"

static void unhex(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &out[i]);
}

static void test_password_key(void **state)
{
	uint8_t k[32], want[32];

	/* MD5("password"), then MD5(that || "password") */
	assert_int_equal(ss_password_key("password", k, 16), 0);
	unhex("5f4dcc3b5aa765d61d8327deb882cf99", want, 16);
	assert_memory_equal(k, want, 16);
	assert_int_equal(ss_password_key("password", k, 32), 0);
	unhex("5f4dcc3b5aa765d61d8327deb882cf992b95990a9151374abd8ff8c5a7a0fe08", want, 32);
	assert_memory_equal(k, want, 32);
}

static void test_subkey(void **state)
{
	uint8_t k[32], salt[32], sk[32], want[32];

	for (int i = 0; i < 32; i++)
		salt[i] = (uint8_t)i;
	/* HKDF-SHA1(ikm = key("password"), salt = 00..1f, info = "ss-subkey") */
	ss_password_key("password", k, 32);
	assert_int_equal(ss_subkey(k, 32, salt, 32, sk, 32), 0);
	unhex("ee187aed3f87574907a39db98606f60a526114831288097cac66054b33a9464f", want, 32);
	assert_memory_equal(sk, want, 32);
	ss_password_key("password", k, 16);
	assert_int_equal(ss_subkey(k, 16, salt, 16, sk, 16), 0);
	unhex("ed2a618d9490d1701de885d82aa80616", want, 16);
	assert_memory_equal(sk, want, 16);
}

/* The first chunk "hello" with salt 00..(n-1), as the `cryptography` package seals it. */
static void chunk_kat(int method, const char *hex)
{
	const struct ss_method_info *mi = ss_method_info(method);
	uint8_t key[32], salt[32], out[64], want[64];
	struct ss_aead a;
	ssize_t n;

	for (int i = 0; i < 32; i++)
		salt[i] = (uint8_t)i;
	ss_password_key("password", key, mi->key_len);
	assert_int_equal(ss_aead_init(&a, method, key, salt), 0);
	n = ss_seal_chunk(&a, (const uint8_t *)"hello", 5, out);
	assert_int_equal(n, 2 + 16 + 5 + 16);
	unhex(hex, want, (size_t)n);
	assert_memory_equal(out, want, (size_t)n);
	/* the nonce counter moved by two (length, payload) */
	assert_int_equal(a.nonce[0], 2);
	ss_aead_free(&a);
}

static void test_chunk_kat(void **state)
{
	chunk_kat(SS_AES_128_GCM,
		  "5c2b27a26ad0cdf9cd7aa4f3c851b134b4b9947477b58a2f87d1affe84b78de924b5f222d5ec8c");
	chunk_kat(SS_CHACHA20_POLY1305,
		  "ad4d5c2599d42f6d9b26804b82a3b96dc584e8adc7498c0ff41f578989fe0c5ded753038d91134");
}

/* A server stream: salt, then chunks of the given sizes filled with a pattern. */
struct wire {
	uint8_t buf[4 * SS_MAX_CHUNK + 64];
	size_t len;
	uint8_t plain[4 * SS_MAX_PAYLOAD];
	size_t plen;
	uint8_t key[32];
};

static void make_wire(struct wire *w, int method, const char *pw, const size_t *sizes, int n)
{
	const struct ss_method_info *mi = ss_method_info(method);
	struct ss_aead a;

	memset(w, 0, sizeof(*w));
	ss_password_key(pw, w->key, mi->key_len);
	for (size_t i = 0; i < mi->salt_len; i++)
		w->buf[i] = (uint8_t)(0xa0 + i);
	assert_int_equal(ss_aead_init(&a, method, w->key, w->buf), 0);
	w->len = mi->salt_len;
	for (int c = 0; c < n; c++) {
		uint8_t *p = w->plain + w->plen;

		for (size_t i = 0; i < sizes[c]; i++)
			p[i] = (uint8_t)(i * 7 + c);
		ssize_t k = ss_seal_chunk(&a, p, sizes[c], w->buf + w->len);

		assert_true(k > 0);
		w->len += (size_t)k;
		w->plen += sizes[c];
	}
	ss_aead_free(&a);
}

/* Feed `in` to the reader in steps of at most `step` bytes of new input; returns the
 * plaintext length, or the first error. */
static ssize_t read_all(struct ss_reader *r, const uint8_t *in, size_t len, size_t step,
			uint8_t *out, size_t cap)
{
	size_t off = 0, avail = 0, got = 0;

	for (;;) {
		size_t used;
		ssize_t n = ss_reader_feed(r, in + off, avail - off, &used, out + got, cap - got);

		if (n == -EAGAIN) {
			if (avail == len)
				return (ssize_t)got;
			avail = avail + step > len ? len : avail + step;
			continue;
		}
		if (n < 0)
			return n;
		off += used;
		got += (size_t)n;
	}
}

static void test_round_trip(void **state)
{
	static const size_t sizes[] = { 1, 100, SS_MAX_PAYLOAD, 2 };
	static const size_t steps[] = { 1, 7, 4096, 1 << 20 };
	static struct wire w;
	static uint8_t out[sizeof(w.plain)];

	for (int m = 0; m < SS_METHOD_COUNT; m++) {
		make_wire(&w, m, "correct horse", sizes, 4);
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			struct ss_reader r;

			ss_reader_init(&r, m, w.key);
			memset(out, 0, sizeof(out));
			assert_int_equal(read_all(&r, w.buf, w.len, steps[s], out, sizeof(out)),
					 w.plen);
			assert_memory_equal(out, w.plain, w.plen);
			assert_true(ss_reader_at_boundary(&r));
			assert_int_equal(r.chunks, 4);
			ss_reader_free(&r);
		}
	}
}

static void test_truncated(void **state)
{
	static const size_t sizes[] = { 300 };
	static struct wire w;
	const struct ss_method_info *mi = ss_method_info(SS_AES_256_GCM);
	uint8_t out[SS_MAX_PAYLOAD];
	struct ss_reader r;
	size_t used;

	make_wire(&w, SS_AES_256_GCM, "pw", sizes, 1);
	ss_reader_init(&r, SS_AES_256_GCM, w.key);
	/* a short salt */
	assert_int_equal(ss_reader_feed(&r, w.buf, mi->salt_len - 1, &used, out, sizeof(out)),
			 -EAGAIN);
	assert_int_equal(used, 0);
	assert_int_equal(ss_reader_feed(&r, w.buf, mi->salt_len, &used, out, sizeof(out)), 0);
	assert_int_equal(used, mi->salt_len);
	/* a truncated length block: nothing consumed, not a boundary once it is read */
	assert_int_equal(ss_reader_feed(&r, w.buf + 32, SS_LEN_CHUNK - 1, &used, out, sizeof(out)),
			 -EAGAIN);
	assert_int_equal(used, 0);
	assert_int_equal(ss_reader_feed(&r, w.buf + 32, SS_LEN_CHUNK, &used, out, sizeof(out)), 0);
	assert_int_equal(ss_reader_want(&r), 300);
	assert_false(ss_reader_at_boundary(&r));
	/* a truncated payload: nothing released */
	memset(out, 0, sizeof(out));
	assert_int_equal(ss_reader_feed(&r, w.buf + 32 + SS_LEN_CHUNK, 300 + SS_TAG_LEN - 1, &used,
					out, sizeof(out)),
			 -EAGAIN);
	assert_int_equal(used, 0);
	for (size_t i = 0; i < 300; i++)
		assert_int_equal(out[i], 0);
	/* a buffer too small for the chunk: asked for a bigger one, nothing consumed */
	assert_int_equal(ss_reader_feed(&r, w.buf + 32 + SS_LEN_CHUNK, 300 + SS_TAG_LEN, &used,
					out, 299),
			 -ENOBUFS);
	assert_int_equal(ss_reader_feed(&r, w.buf + 32 + SS_LEN_CHUNK, 300 + SS_TAG_LEN, &used,
					out, 300),
			 300);
	assert_memory_equal(out, w.plain, 300);
	ss_reader_free(&r);
}

/* Flip one bit at `pos` of a one-chunk stream and expect `err` from the reader. */
static void tamper(int method, size_t pos_after_salt, ssize_t err)
{
	static const size_t sizes[] = { 64 };
	static struct wire w;
	const struct ss_method_info *mi = ss_method_info(method);
	uint8_t out[SS_MAX_PAYLOAD];
	struct ss_reader r;

	make_wire(&w, method, "pw", sizes, 1);
	w.buf[mi->salt_len + pos_after_salt] ^= 0x10;
	ss_reader_init(&r, method, w.key);
	memset(out, 0, sizeof(out));
	assert_int_equal(read_all(&r, w.buf, w.len, 1 << 20, out, sizeof(out)), err);
	/* nothing of the payload escaped */
	for (size_t i = 0; i < 64; i++)
		assert_int_equal(out[i], 0);
	ss_reader_free(&r);
}

static void test_tampered(void **state)
{
	for (int m = 0; m < SS_METHOD_COUNT; m++) {
		tamper(m, 0, -EBADMSG);			      /* length ciphertext */
		tamper(m, 5, -EBADMSG);			      /* length tag */
		tamper(m, SS_LEN_CHUNK + 3, -EBADMSG);	      /* payload */
		tamper(m, SS_LEN_CHUNK + 64 + 15, -EBADMSG); /* payload tag */
	}
}

static void test_tampered_salt_and_wrong_key(void **state)
{
	static const size_t sizes[] = { 10 };
	static struct wire w;
	uint8_t out[64], other[32];
	struct ss_reader r;

	make_wire(&w, SS_CHACHA20_POLY1305, "right", sizes, 1);
	/* a wrong password fails on the very first length block */
	ss_password_key("wrong", other, 32);
	ss_reader_init(&r, SS_CHACHA20_POLY1305, other);
	assert_int_equal(read_all(&r, w.buf, w.len, 1 << 20, out, sizeof(out)), -EBADMSG);
	assert_int_equal(r.chunks, 0);
	ss_reader_free(&r);
	/* another method with the same password: the same */
	ss_reader_init(&r, SS_AES_256_GCM, w.key);
	assert_int_equal(read_all(&r, w.buf, w.len, 1 << 20, out, sizeof(out)), -EBADMSG);
	ss_reader_free(&r);
	/* a changed salt is a different subkey */
	w.buf[3] ^= 1;
	ss_reader_init(&r, SS_CHACHA20_POLY1305, w.key);
	assert_int_equal(read_all(&r, w.buf, w.len, 1 << 20, out, sizeof(out)), -EBADMSG);
	ss_reader_free(&r);
}

static void test_oversized_length(void **state)
{
	const struct ss_method_info *mi = ss_method_info(SS_AES_128_GCM);
	uint8_t key[16], buf[64], out[64];
	static const uint8_t lens[][2] = { { 0x40, 0x00 }, { 0xff, 0xff }, { 0x80, 0x01 } };
	struct ss_aead a;
	struct ss_reader r;
	size_t used;

	ss_password_key("pw", key, 16);
	for (size_t i = 0; i < 3; i++) {
		/* a correctly sealed length with the reserved bits set */
		memset(buf, 0x11, mi->salt_len);
		assert_int_equal(ss_aead_init(&a, SS_AES_128_GCM, key, buf), 0);
		assert_int_equal(ss_aead_seal(&a, lens[i], 2, buf + mi->salt_len), 0);
		ss_aead_free(&a);
		ss_reader_init(&r, SS_AES_128_GCM, key);
		assert_int_equal(ss_reader_feed(&r, buf, mi->salt_len + SS_LEN_CHUNK, &used, out,
						sizeof(out)),
				 0);
		assert_int_equal(ss_reader_feed(&r, buf + mi->salt_len, SS_LEN_CHUNK, &used, out,
						sizeof(out)),
				 -EMSGSIZE);
		ss_reader_free(&r);
	}
}

static void test_garbage(void **state)
{
	uint8_t key[32], buf[4096], out[SS_MAX_PAYLOAD];

	ss_password_key("pw", key, 32);
	srand(7);
	for (int round = 0; round < 200; round++) {
		struct ss_reader r;

		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)rand();
		ss_reader_init(&r, round % SS_METHOD_COUNT, key);
		assert_int_equal(read_all(&r, buf, sizeof(buf), 1 + round, out, sizeof(out)),
				 -EBADMSG);
		ss_reader_free(&r);
	}
}

static void test_seal_bounds(void **state)
{
	static uint8_t in[SS_MAX_PAYLOAD + 1], out[SS_MAX_CHUNK + 32];
	uint8_t key[32] = { 0 }, salt[32] = { 0 };
	struct ss_aead a;

	assert_int_equal(ss_aead_init(&a, SS_AES_256_GCM, key, salt), 0);
	assert_int_equal(ss_seal_chunk(&a, in, 0, out), -EINVAL);
	assert_int_equal(ss_seal_chunk(&a, in, SS_MAX_PAYLOAD + 1, out), -EINVAL);
	assert_int_equal(ss_seal_chunk(&a, in, SS_MAX_PAYLOAD, out), SS_MAX_CHUNK);
	ss_aead_free(&a);
	assert_int_equal(ss_aead_init(&a, 7, key, salt), -EINVAL);
	assert_null(ss_method_info(-1));
	assert_null(ss_method_info(SS_METHOD_COUNT));
}

static void test_addr(void **state)
{
	union xp_sockaddr a = { 0 }, b;
	uint8_t buf[SS_ADDR_MAX + 8];
	char name[256], longname[300];
	ssize_t n;

	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(443);
	inet_pton(AF_INET, "10.1.2.3", &a.in.sin_addr);
	n = ss_addr_encode(&a, NULL, buf);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "\x01\x0a\x01\x02\x03\x01\xbb", 7);
	assert_int_equal(ss_addr_decode(buf, 7, &b, name), 7);
	assert_int_equal(b.sa.sa_family, AF_INET);
	assert_memory_equal(&b.in.sin_addr, &a.in.sin_addr, 4);
	assert_int_equal(b.in.sin_port, a.in.sin_port);
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(ss_addr_decode(buf, i, &b, name), -EAGAIN);

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(53);
	inet_pton(AF_INET6, "fd00::1", &a.in6.sin6_addr);
	assert_int_equal(ss_addr_encode(&a, NULL, buf), 19);
	assert_int_equal(buf[0], 4);
	assert_int_equal(ss_addr_decode(buf, 19, &b, name), 19);
	assert_int_equal(b.sa.sa_family, AF_INET6);
	assert_memory_equal(&b.in6.sin6_addr, &a.in6.sin6_addr, 16);
	assert_int_equal(ss_addr_decode(buf, 18, &b, name), -EAGAIN);

	/* a domain wins over the address */
	assert_int_equal(ss_addr_encode(&a, "example.org", buf), 15);
	assert_memory_equal(buf, "\x03\x0b" "example.org\x00\x35", 15);
	assert_int_equal(ss_addr_decode(buf, 15, &b, name), 15);
	assert_string_equal(name, "example.org");
	assert_int_equal(b.sa.sa_family, AF_UNSPEC);
	assert_int_equal(b.in.sin_port, htons(53));
	assert_int_equal(ss_addr_decode(buf, 14, &b, name), -EAGAIN);
	assert_int_equal(ss_addr_decode(buf, 1, &b, name), -EAGAIN);

	/* a name that is too long or not a plain host name: the address goes instead */
	memset(longname, 'a', 256);
	longname[256] = '\0';
	assert_int_equal(ss_addr_encode(&a, longname, buf), 19);
	assert_int_equal(buf[0], 4);
	assert_int_equal(ss_addr_encode(&a, "bad name", buf), 19);
	assert_int_equal(ss_addr_encode(&a, "x\r\nHost: y", buf), 19);
	assert_int_equal(ss_addr_encode(&a, "", buf), 19);
	assert_int_equal(ss_addr_encode(&a, "A-b_c.9", buf), 4 + 7);
	longname[255] = '\0';
	assert_int_equal(ss_addr_encode(&a, longname, buf), 4 + 255);
	assert_int_equal(ss_addr_decode(buf, 4 + 255, &b, name), 4 + 255);
	assert_int_equal(strlen(name), 255);

	/* garbage: unknown types, an empty name */
	buf[0] = 2;
	assert_int_equal(ss_addr_decode(buf, 20, &b, name), -EINVAL);
	buf[0] = 0xff;
	assert_int_equal(ss_addr_decode(buf, 20, &b, name), -EINVAL);
	buf[0] = 3;
	buf[1] = 0;
	assert_int_equal(ss_addr_decode(buf, 20, &b, name), -EINVAL);
	/* a name with a NUL inside (found by fuzz_trojan): refused, not cut short */
	memcpy(buf, "\x03\x04" "ab\0c" "\x00\x35", 8);
	assert_int_equal(ss_addr_decode(buf, 8, &b, name), -EINVAL);
	a.sa.sa_family = AF_UNIX;
	assert_int_equal(ss_addr_encode(&a, NULL, buf), -EINVAL);
}

static void test_udp(void **state)
{
	uint8_t key[32], other[32], salt[32], hdr[SS_ADDR_MAX], pkt[2048], *plain;
	union xp_sockaddr a = { 0 }, b;
	const char *msg = "a datagram";
	ssize_t hl, n, pl;

	ss_password_key("udp", key, 32);
	ss_password_key("nope", other, 32);
	memset(salt, 0x42, sizeof(salt));
	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(5353);
	a.in.sin_addr.s_addr = htonl(0x0a010202);
	hl = ss_addr_encode(&a, NULL, hdr);
	for (int m = 0; m < SS_METHOD_COUNT; m++) {
		const struct ss_method_info *mi = ss_method_info(m);

		n = ss_udp_seal(m, key, salt, hdr, (size_t)hl, (const uint8_t *)msg, strlen(msg),
				pkt);
		assert_int_equal(n, (ssize_t)(mi->salt_len + hl + strlen(msg) + SS_TAG_LEN));
		pl = ss_udp_open(m, key, pkt, (size_t)n, &plain);
		assert_int_equal(pl, hl + (ssize_t)strlen(msg));
		assert_int_equal(ss_addr_decode(plain, (size_t)pl, &b, NULL), hl);
		assert_int_equal(b.in.sin_port, a.in.sin_port);
		assert_memory_equal(plain + hl, msg, strlen(msg));

		/* wrong key, tampered, short */
		n = ss_udp_seal(m, key, salt, hdr, (size_t)hl, (const uint8_t *)msg, strlen(msg),
				pkt);
		assert_int_equal(ss_udp_open(m, other, pkt, (size_t)n, &plain), -EBADMSG);
		n = ss_udp_seal(m, key, salt, hdr, (size_t)hl, (const uint8_t *)msg, strlen(msg),
				pkt);
		pkt[n - 1] ^= 1;
		assert_int_equal(ss_udp_open(m, key, pkt, (size_t)n, &plain), -EBADMSG);
		assert_int_equal(ss_udp_open(m, key, pkt, mi->salt_len + SS_TAG_LEN - 1, &plain),
				 -EBADMSG);
		assert_int_equal(ss_udp_open(m, key, pkt, 0, &plain), -EBADMSG);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_password_key),
		cmocka_unit_test(test_subkey),
		cmocka_unit_test(test_chunk_kat),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_tampered_salt_and_wrong_key),
		cmocka_unit_test(test_oversized_length),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_seal_bounds),
		cmocka_unit_test(test_addr),
		cmocka_unit_test(test_udp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
