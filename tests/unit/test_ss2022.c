/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_ss2022 - the shadowsocks 2022 edition codec (plugins/outbound/shadowsocks/ss2022.c and
 * the 2022 half of ss_aead.c's reader).
 *
 * Fixed values and where they come from:
 *   - HChaCha20 and XChaCha20-Poly1305: draft-irtf-cfrg-xchacha-03, 2.2.1 and A.3.1;
 *   - session subkeys: Debian's b3sum 1.2.0 (the BLAKE3 team's Rust implementation),
 *     `b3sum --derive-key "shadowsocks 2022 session subkey" --raw -l N` over PSK || salt,
 *     and one vector from a public SIP022 implementation's tests (urban-spork);
 * SIP022 itself publishes no test vectors, so the wire layouts are checked by opening what
 * the client seals field by field with the layout of the specification's tables, and the
 * server side is sealed here the same way.
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
#include <time.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "../../plugins/outbound/shadowsocks/blake3.h"
#include "../../plugins/outbound/shadowsocks/ss2022.h"
#include "../../plugins/outbound/shadowsocks/ss_aead.h"

#define NOW 1700000000ull

static void unhex(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &out[i]);
}

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static const int M2022[] = { SS_2022_AES_128_GCM, SS_2022_AES_256_GCM,
			     SS_2022_CHACHA20_POLY1305 };

static void psk_for(int m, uint8_t *psk)
{
	for (int i = 0; i < 32; i++)
		psk[i] = (uint8_t)(i * 7 + m);
}

/* ---- PSK -------------------------------------------------------------------------------- */

static void test_psk_decode(void **state)
{
	uint8_t out[64], want[32];

	for (int i = 0; i < 32; i++)
		want[i] = (uint8_t)i;
	/* base64 of 00 01 .. 1f (Python base64.b64encode(bytes(range(32)))) */
	assert_int_equal(ss2022_psk_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", out,
					   sizeof(out)), 32);
	assert_memory_equal(out, want, 32);
	/* without the padding too */
	assert_int_equal(ss2022_psk_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", out,
					   sizeof(out)), 32);
	assert_memory_equal(out, want, 32);
	/* 16 bytes: bytes(range(16)) */
	assert_int_equal(ss2022_psk_decode("AAECAwQFBgcICQoLDA0ODw==", out, sizeof(out)), 16);
	assert_memory_equal(out, want, 16);
	/* '+' and '/' are the standard alphabet's: fb ff bf */
	assert_int_equal(ss2022_psk_decode("+/+/", out, sizeof(out)), 3);
	assert_memory_equal(out, "\xfb\xff\xbf", 3);
	/* garbage, URL-safe letters, whitespace, a lone character, padding in the middle,
	 * too much padding, non-zero leftover bits (a second spelling of the same key) */
	static const char *const bad[] = {
		"", "=", "====", "AAEC AwQF", "AAEC-_QF", "A", "AAECA", "AA=A", "AAE===",
		"AAECAwQFBgcICQoLDA0ODw=", "AAECAwQFBgcICQoLDA0ODx==", "AB==", "\xc3\xa9\xc3\xa9",
		"AAECAwQFBgcICQoLDA0ODw==\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(out, 0x55, sizeof(out));
		assert_int_equal(ss2022_psk_decode(bad[i], out, sizeof(out)), -EINVAL);
		/* nothing half-decoded is left behind */
		for (size_t j = 0; j < sizeof(out); j++)
			assert_int_equal(out[j], 0);
	}
	/* oversized: 48 bytes into 32 */
	assert_int_equal(ss2022_psk_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUm"
					   "JygpKissLS4v", out, 32), -EMSGSIZE);
	assert_int_equal(ss2022_psk_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUm"
					   "JygpKissLS4v", out, 48), 48);
}

/* ---- subkeys, HChaCha20, XChaCha20-Poly1305 ---------------------------------------------- */

static void test_subkey(void **state)
{
	uint8_t psk[32], salt[32], sk[32], want[32];

	for (int i = 0; i < 32; i++) {
		psk[i] = (uint8_t)i;
		salt[i] = (uint8_t)(0x40 + i);
	}
	/* b3sum --derive-key "shadowsocks 2022 session subkey" --raw -l 32 of 00..1f || 40..5f */
	unhex("cb4edecf23461aaaeee9dcb3c1eb1be555c77e3661c7dd58c96bd5c3bcb6a064", want, 32);
	assert_int_equal(ss2022_subkey(psk, salt, 32, sk), 0);
	assert_memory_equal(sk, want, 32);
	/* -l 16 of 00..0f || 40..4f */
	unhex("80e542bc94fbfe0078a6469c1e09a7cf", want, 16);
	assert_int_equal(ss2022_subkey(psk, salt, 16, sk), 0);
	assert_memory_equal(sk, want, 16);
	/* a public implementation's test (Zmax0/urban-spork, Aead2022Test.testSessionSubkey,
	 * BouncyCastle's BLAKE3): key Lc3tTx0BY6ZJ/fCwOx3JvF0I/anhwJBO5p2+FA5Vce4=, salt
	 * 3oFO0VyLyGI4nFN0M9P+62vPND/L6v8IingaPJWTbJA=, subkey EdNE+4U8dVnHT0+poAFDK2bdlwfrHT61s
	 * UNr9WYPh+E= (base64; hex below) */
	unhex("2dcded4f1d0163a649fdf0b03b1dc9bc5d08fda9e1c0904ee69dbe140e5571ee", psk, 32);
	unhex("de814ed15c8bc862389c537433d3feeb6bcf343fcbeaff088a781a3c95936c90", salt, 32);
	unhex("11d344fb853c7559c74f4fa9a001432b66dd9707eb1d3eb5b1436bf5660f87e1", want, 32);
	assert_int_equal(ss2022_subkey(psk, salt, 32, sk), 0);
	assert_memory_equal(sk, want, 32);
	assert_int_equal(ss2022_subkey(psk, salt, 33, sk), -EINVAL);
}

static void test_hchacha20(void **state)
{
	uint8_t key[32], in[16], out[32], want[32];

	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
	unhex("000000090000004a0000000031415927", in, 16);
	unhex("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc", want, 32);
	ss2022_hchacha20(key, in, out);
	assert_memory_equal(out, want, 32);
}

static void test_xchacha_poly1305(void **state)
{
	static const char pt[] = "Ladies and Gentlemen of the class of '99: If I could offer you "
				 "only one tip for the future, sunscreen would be it.";
	const size_t n = sizeof(pt) - 1;
	uint8_t key[32], nonce[24], aad[12], ct[sizeof(pt) + 16], want[sizeof(pt) + 16];
	uint8_t back[sizeof(pt)];

	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(0x80 + i);
	for (int i = 0; i < 24; i++)
		nonce[i] = (uint8_t)(0x40 + i);
	unhex("50515253c0c1c2c3c4c5c6c7", aad, 12);
	unhex("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
	      "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
	      "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
	      "21f9664c97637da9768812f615c68b13b52e"
	      "c0875924c1c7987947deafd8780acf49", want, n + 16);
	assert_int_equal(n, 114);
	assert_int_equal(ss2022_xchacha_seal(key, nonce, aad, 12, (const uint8_t *)pt, n, ct), 0);
	assert_memory_equal(ct, want, n + 16);
	assert_int_equal(ss2022_xchacha_open(key, nonce, aad, 12, ct, n + 16, back), 0);
	assert_memory_equal(back, pt, n);
	/* any flipped bit of ciphertext, tag, nonce or aad fails, and releases nothing */
	for (size_t i = 0; i < n + 16; i += 7) {
		ct[i] ^= 0x20;
		memset(back, 0x55, sizeof(back));
		assert_int_equal(ss2022_xchacha_open(key, nonce, aad, 12, ct, n + 16, back),
				 -EBADMSG);
		for (size_t j = 0; j < n; j++)
			assert_int_equal(back[j], 0);
		ct[i] ^= 0x20;
	}
	nonce[23] ^= 1;
	assert_int_equal(ss2022_xchacha_open(key, nonce, aad, 12, ct, n + 16, back), -EBADMSG);
	nonce[23] ^= 1;
	aad[0] ^= 1;
	assert_int_equal(ss2022_xchacha_open(key, nonce, aad, 12, ct, n + 16, back), -EBADMSG);
	aad[0] ^= 1;
	assert_int_equal(ss2022_xchacha_open(key, nonce, aad, 12, ct, 15, back), -EBADMSG);
	/* in place */
	memcpy(ct, pt, n);
	assert_int_equal(ss2022_xchacha_seal(key, nonce, aad, 12, ct, n, ct), 0);
	assert_memory_equal(ct, want, n + 16);
}

/* ---- TCP request ------------------------------------------------------------------------- */

static void test_request_layout(void **state)
{
	static uint8_t out[70000], plain[70000];
	static const uint8_t addr[] = { 3, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r',
					'g', 0x01, 0xbb };
	uint8_t psk[32], salt[32];

	for (size_t mi_ = 0; mi_ < 3; mi_++) {
		int m = M2022[mi_];
		const struct ss_method_info *mi = ss_method_info(m);
		struct ss_aead enc, dec;
		size_t off;
		ssize_t w;

		psk_for(m, psk);
		memset(salt, 0x31, sizeof(salt));
		assert_int_equal(ss_aead_init(&enc, m, psk, salt), 0);
		w = ss2022_request(&enc, salt, mi->salt_len, addr, sizeof(addr),
				   (const uint8_t *)"hello", 5, 0, NOW, out);
		assert_int_equal(w, mi->salt_len + 11 + 16 + sizeof(addr) + 2 + 5 + 16);
		/* as a server reads it: salt, 11-byte fixed header, variable header */
		assert_memory_equal(out, salt, mi->salt_len);
		assert_int_equal(ss_aead_init(&dec, m, psk, out), 0);
		off = mi->salt_len;
		assert_int_equal(ss_aead_open(&dec, out + off, 11 + 16, plain), 0);
		assert_int_equal(plain[0], 0);
		assert_int_equal(rd64(plain + 1), NOW);
		assert_int_equal(plain[9] << 8 | plain[10], sizeof(addr) + 2 + 5);
		off += 27;
		assert_int_equal(ss_aead_open(&dec, out + off, sizeof(addr) + 2 + 5 + 16, plain),
				 0);
		assert_memory_equal(plain, addr, sizeof(addr));
		assert_int_equal(plain[sizeof(addr)] << 8 | plain[sizeof(addr) + 1], 0);
		assert_memory_equal(plain + sizeof(addr) + 2, "hello", 5);
		ss_aead_free(&dec);
		ss_aead_free(&enc);

		/* padding only (the server speaks first) */
		assert_int_equal(ss_aead_init(&enc, m, psk, salt), 0);
		w = ss2022_request(&enc, salt, mi->salt_len, addr, sizeof(addr), NULL, 0, 900, NOW,
				   out);
		assert_int_equal(w, mi->salt_len + 27 + sizeof(addr) + 2 + 900 + 16);
		assert_int_equal(ss_aead_init(&dec, m, psk, out), 0);
		assert_int_equal(ss_aead_open(&dec, out + mi->salt_len, 27, plain), 0);
		assert_int_equal(ss_aead_open(&dec, out + mi->salt_len + 27,
					      (size_t)w - mi->salt_len - 27, plain), 0);
		assert_int_equal(plain[sizeof(addr)] << 8 | plain[sizeof(addr) + 1], 900);
		ss_aead_free(&dec);

		/* the spec's limits: padding or payload, padding <= 900, one chunk */
		assert_int_equal(ss2022_request(&enc, salt, mi->salt_len, addr, sizeof(addr), NULL,
						0, 0, NOW, out), -EINVAL);
		assert_int_equal(ss2022_request(&enc, salt, mi->salt_len, addr, sizeof(addr), NULL,
						0, 901, NOW, out), -EINVAL);
		assert_int_equal(ss2022_request(&enc, salt, mi->salt_len, addr, sizeof(addr), plain,
						0xFFFF - sizeof(addr) - 1, 0, NOW, out), -EINVAL);
		assert_true(ss2022_request(&enc, salt, mi->salt_len, addr, sizeof(addr), plain,
					   0xFFFF - sizeof(addr) - 2, 0, NOW, out) > 0);
		ss_aead_free(&enc);
	}
}

/* ---- TCP response: the reader ------------------------------------------------------------ */

/* A server response: salt 0x77.., header (type, ts, request salt, first length), first
 * payload chunk, then `more` further chunks of the same payload. */
static size_t make_response(int m, const uint8_t *psk, const uint8_t *req_salt, uint8_t type,
			    uint64_t ts, const uint8_t *p, size_t n, int more, uint8_t *out)
{
	const struct ss_method_info *mi = ss_method_info(m);
	uint8_t salt[32], hdr[SS2022_RESP_HDR_MAX];
	struct ss_aead a;
	size_t off, hl = SS2022_RESP_HDR_LEN(mi->salt_len);

	memset(salt, 0x77, sizeof(salt));
	memcpy(out, salt, mi->salt_len);
	assert_int_equal(ss_aead_init(&a, m, psk, salt), 0);
	hdr[0] = type;
	be64(hdr + 1, ts);
	memcpy(hdr + 9, req_salt, mi->salt_len);
	hdr[9 + mi->salt_len] = (uint8_t)(n >> 8);
	hdr[10 + mi->salt_len] = (uint8_t)n;
	off = mi->salt_len;
	assert_int_equal(ss_aead_seal(&a, hdr, hl, out + off), 0);
	off += hl + 16;
	assert_int_equal(ss_aead_seal(&a, p, n, out + off), 0);
	off += n + 16;
	for (int i = 0; i < more; i++) {
		ssize_t k = ss_seal_chunk(&a, p, n, out + off);

		assert_true(k > 0);
		off += (size_t)k;
	}
	ss_aead_free(&a);
	return off;
}

/* Feed everything in steps; returns plaintext bytes and *err (0, -EAGAIN at the end, or the
 * error). */
static size_t drain(int m, const uint8_t *psk, const uint8_t *req_salt, const uint8_t *in,
		    size_t len, size_t step, uint8_t *out, size_t cap, ssize_t *err)
{
	struct ss_reader r;
	size_t off = 0, avail = 0, got = 0;

	ss_reader_init(&r, m, psk);
	ss_reader_set_request_salt(&r, req_salt);
	r.now = NOW;
	for (;;) {
		size_t used;
		ssize_t n = ss_reader_feed(&r, in + off, avail - off, &used, out + got, cap - got);

		if (n == -EAGAIN) {
			assert_int_equal(used, 0);
			if (avail == len) {
				*err = -EAGAIN;
				break;
			}
			avail = avail + step > len ? len : avail + step;
			continue;
		}
		if (n < 0) {
			*err = n;
			break;
		}
		off += used;
		got += (size_t)n;
	}
	ss_reader_free(&r);
	return got;
}

static void test_response_round_trip(void **state)
{
	static uint8_t wire[4 * 70000], out[4 * 70000], p[SS2022_MAX_PAYLOAD];
	uint8_t psk[32], rs[32];
	ssize_t err;

	for (size_t i = 0; i < sizeof(p); i++)
		p[i] = (uint8_t)(i * 31 + 1);
	memset(rs, 0x13, sizeof(rs));
	for (size_t mi_ = 0; mi_ < 3; mi_++) {
		int m = M2022[mi_];
		size_t len, got;

		psk_for(m, psk);
		/* chunks of the full 0xFFFF (above SIP004's 0x3FFF) */
		len = make_response(m, psk, rs, 1, NOW, p, sizeof(p), 2, wire);
		got = drain(m, psk, rs, wire, len, len, out, sizeof(out), &err);
		assert_int_equal(err, -EAGAIN);
		assert_int_equal(got, 3 * sizeof(p));
		for (int k = 0; k < 3; k++)
			assert_memory_equal(out + k * sizeof(p), p, sizeof(p));
		/* byte by byte, small chunks */
		len = make_response(m, psk, rs, 1, NOW - 30, p, 100, 3, wire);
		got = drain(m, psk, rs, wire, len, 1, out, sizeof(out), &err);
		assert_int_equal(err, -EAGAIN);
		assert_int_equal(got, 400);
		/* the timestamp may be 30 s either way, not 31 */
		len = make_response(m, psk, rs, 1, NOW + 30, p, 100, 0, wire);
		assert_int_equal(drain(m, psk, rs, wire, len, len, out, sizeof(out), &err), 100);
		assert_int_equal(err, -EAGAIN);
	}
}

static void test_response_checks(void **state)
{
	static uint8_t wire[1000], out[1000];
	uint8_t psk[32], rs[32], other[32];
	ssize_t err;

	memset(rs, 0x13, sizeof(rs));
	memset(other, 0x13, sizeof(other));
	other[5] ^= 1;
	for (size_t mi_ = 0; mi_ < 3; mi_++) {
		int m = M2022[mi_];
		const struct ss_method_info *mi = ss_method_info(m);
		size_t len, hdr_end = mi->salt_len + SS2022_RESP_HDR_LEN(mi->salt_len) + 16;

		psk_for(m, psk);
		/* wrong type: a request stream (type 0) played back at us */
		len = make_response(m, psk, rs, 0, NOW, (const uint8_t *)"x", 1, 0, wire);
		assert_int_equal(drain(m, psk, rs, wire, len, len, out, sizeof(out), &err), 0);
		assert_int_equal(err, SS_E_TYPE);
		len = make_response(m, psk, rs, 2, NOW, (const uint8_t *)"x", 1, 0, wire);
		drain(m, psk, rs, wire, len, len, out, sizeof(out), &err);
		assert_int_equal(err, SS_E_TYPE);
		/* stale and future timestamps */
		len = make_response(m, psk, rs, 1, NOW - 31, (const uint8_t *)"x", 1, 0, wire);
		assert_int_equal(drain(m, psk, rs, wire, len, len, out, sizeof(out), &err), 0);
		assert_int_equal(err, SS_E_TIME);
		len = make_response(m, psk, rs, 1, NOW + 31, (const uint8_t *)"x", 1, 0, wire);
		drain(m, psk, rs, wire, len, len, out, sizeof(out), &err);
		assert_int_equal(err, SS_E_TIME);
		len = make_response(m, psk, rs, 1, 0, (const uint8_t *)"x", 1, 0, wire);
		drain(m, psk, rs, wire, len, len, out, sizeof(out), &err);
		assert_int_equal(err, SS_E_TIME);
		len = make_response(m, psk, rs, 1, UINT64_MAX, (const uint8_t *)"x", 1, 0, wire);
		drain(m, psk, rs, wire, len, len, out, sizeof(out), &err);
		assert_int_equal(err, SS_E_TIME);
		/* another request's salt (a replayed response) */
		len = make_response(m, psk, other, 1, NOW, (const uint8_t *)"x", 1, 0, wire);
		assert_int_equal(drain(m, psk, rs, wire, len, len, out, sizeof(out), &err), 0);
		assert_int_equal(err, SS_E_SALT);
		/* a wrong PSK fails the header's tag */
		psk[0] ^= 1;
		len = make_response(m, psk, rs, 1, NOW, (const uint8_t *)"x", 1, 0, wire);
		psk[0] ^= 1;
		assert_int_equal(drain(m, psk, rs, wire, len, len, out, sizeof(out), &err), 0);
		assert_int_equal(err, -EBADMSG);

		/* every single flipped bit after the salt fails before releasing that chunk;
		 * a flip in the salt changes the key, so the header fails */
		len = make_response(m, psk, rs, 1, NOW, (const uint8_t *)"abcdefgh", 8, 1, wire);
		for (size_t i = 0; i < len; i++) {
			size_t got;

			wire[i] ^= 0x04;
			got = drain(m, psk, rs, wire, len, len, out, sizeof(out), &err);
			assert_true(err == -EBADMSG || err == -EMSGSIZE);
			/* the first payload chunk ends at hdr_end + 8 + 16 */
			if (i < hdr_end + 8 + 16)
				assert_int_equal(got, 0);
			else
				assert_int_equal(got, 8);
			wire[i] ^= 0x04;
		}
		/* truncated at every length: never an error, never a byte of the unfinished
		 * chunk */
		for (size_t cut = 0; cut < len; cut++) {
			size_t got = drain(m, psk, rs, wire, cut, cut ? cut : 1, out, sizeof(out),
					   &err);

			assert_int_equal(err, -EAGAIN);
			assert_int_equal(got, cut < hdr_end + 24 ? 0 : cut < len ? 8 : 16);
		}
	}
}

static void test_response_garbage(void **state)
{
	static uint8_t buf[4096], out[70000];
	uint8_t psk[32], rs[32];
	ssize_t err;
	unsigned seed = 7;

	memset(rs, 0, sizeof(rs));
	for (int round = 0; round < 300; round++) {
		int m = M2022[round % 3];
		size_t len = (size_t)(rand_r(&seed) % (int)sizeof(buf));

		psk_for(m, psk);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand_r(&seed);
		assert_int_equal(drain(m, psk, rs, buf, len, 1 + round % 50, out, sizeof(out),
				       &err), 0);
		assert_true(err == -EAGAIN || err == -EBADMSG);
	}
}

/* ---- the replay window ---------------------------------------------------------------- */

static void test_window(void **state)
{
	struct ss2022_window w = { 0 };

	/* a fresh window takes anything but the id that would wrap */
	assert_int_equal(ss2022_window_check(&w, 0), 0);
	assert_int_equal(ss2022_window_check(&w, UINT64_MAX), -EALREADY);
	for (uint64_t i = 0; i < 10; i++) {
		assert_int_equal(ss2022_window_check(&w, i), 0);
		ss2022_window_commit(&w, i);
		assert_int_equal(ss2022_window_check(&w, i), -EALREADY);
	}
	/* out of order inside the window: once each */
	assert_int_equal(ss2022_window_check(&w, 500), 0);
	ss2022_window_commit(&w, 500);
	assert_int_equal(ss2022_window_check(&w, 300), 0);
	ss2022_window_commit(&w, 300);
	assert_int_equal(ss2022_window_check(&w, 300), -EALREADY);
	assert_int_equal(ss2022_window_check(&w, 301), 0);
	assert_int_equal(ss2022_window_check(&w, 9), -EALREADY);
	/* a jump: ids more than the window below the top are refused, the rest are fresh
	 * (their ring slots were reused and cleared) */
	ss2022_window_commit(&w, 500 + SS2022_WINDOW);
	assert_int_equal(ss2022_window_check(&w, 500), -EALREADY);
	assert_int_equal(ss2022_window_check(&w, 300), -EALREADY);
	assert_int_equal(ss2022_window_check(&w, 501), 0);
	assert_int_equal(ss2022_window_check(&w, 500 + SS2022_WINDOW), -EALREADY);
	assert_int_equal(ss2022_window_check(&w, 499 + SS2022_WINDOW), 0);
	/* a jump past a whole window clears it */
	ss2022_window_commit(&w, 10 * SS2022_WINDOW);
	assert_int_equal(ss2022_window_check(&w, 10 * SS2022_WINDOW - 1), 0);
	assert_int_equal(ss2022_window_check(&w, 9 * SS2022_WINDOW), -EALREADY);
	assert_int_equal(ss2022_window_check(&w, 9 * SS2022_WINDOW + 1), 0);
	/* model check: random ids against a set */
	{
		static uint8_t seen[20000];
		struct ss2022_window v = { 0 };
		uint64_t top = 0;
		unsigned seed = 3;

		for (int i = 0; i < 200000; i++) {
			uint64_t id = (uint64_t)(rand_r(&seed) % 20000);
			int want = seen[id] || (top > id && top - id > SS2022_WINDOW) ? -EALREADY
										   : 0;

			assert_int_equal(ss2022_window_check(&v, id), want);
			if (!want && rand_r(&seed) % 2) {
				ss2022_window_commit(&v, id);
				seen[id] = 1;
				if (id >= top)
					top = id + 1;
			}
		}
	}
}

/* ---- UDP ------------------------------------------------------------------------------- */

/* Open a client packet the way a server does, from the spec's tables. Returns the body. */
static size_t server_open(int m, const uint8_t *psk, uint8_t *pkt, size_t len, uint8_t *sid,
			  uint64_t *pid, uint8_t **body)
{
	const struct ss_method_info *mi = ss_method_info(m);

	if (m == SS_2022_CHACHA20_POLY1305) {
		assert_int_equal(ss2022_xchacha_open(psk, pkt, NULL, 0, pkt + 24, len - 24,
						     pkt + 24), 0);
		memcpy(sid, pkt + 24, 8);
		*pid = rd64(pkt + 32);
		*body = pkt + 40;
		return len - 40 - 16;
	}
	/* AES-ECB(PSK) of session id | packet id, then AEAD under derive_key(PSK || sid) with
	 * the nonce = separate header bytes 4..15 */
	EVP_CIPHER_CTX *ecb = EVP_CIPHER_CTX_new();
	uint8_t hdr[16], material[40], sub[32];
	struct ss_aead a;
	int n;

	assert_true(EVP_DecryptInit_ex(ecb, mi->key_len == 16 ? EVP_aes_128_ecb() : EVP_aes_256_ecb(),
				       NULL, psk, NULL));
	EVP_CIPHER_CTX_set_padding(ecb, 0);
	assert_true(EVP_DecryptUpdate(ecb, hdr, &n, pkt, 16));
	assert_int_equal(n, 16);
	EVP_CIPHER_CTX_free(ecb);
	memcpy(sid, hdr, 8);
	*pid = rd64(hdr + 8);
	memcpy(material, psk, mi->key_len);
	memcpy(material + mi->key_len, hdr, 8);
	/* (the UDP material is PSK || the 8-byte session id, not a key-length salt) */
	b3_derive_key(SS2022_SUBKEY_CONTEXT, material, mi->key_len + 8, sub, mi->key_len);
	assert_int_equal(ss_aead_init_key(&a, m, sub), 0);
	memcpy(a.nonce, hdr + 4, 12);
	assert_int_equal(ss_aead_open(&a, pkt + 16, len - 16, pkt + 16), 0);
	ss_aead_free(&a);
	*body = pkt + 16;
	return len - 16 - 16;
}

static void test_udp_client_packet(void **state)
{
	static uint8_t pkt[2048];
	static const uint8_t addr[] = { 1, 10, 1, 2, 3, 0x00, 0x35 };
	uint8_t psk[32], sid[8], *b;
	uint64_t pid;

	for (size_t mi_ = 0; mi_ < 3; mi_++) {
		int m = M2022[mi_];
		struct ss2022_udp u;
		ssize_t n;
		size_t bl;

		psk_for(m, psk);
		assert_int_equal(ss2022_udp_init(&u, m, psk), 0);
		u.now = NOW;
		for (uint64_t k = 0; k < 3; k++) {
			n = ss2022_udp_seal(&u, addr, sizeof(addr), (const uint8_t *)"query", 5,
					    pkt);
			assert_int_equal(n, (m == SS_2022_CHACHA20_POLY1305 ? 40 : 16) + 11 +
						    sizeof(addr) + 5 + 16);
			bl = server_open(m, psk, pkt, (size_t)n, sid, &pid, &b);
			assert_memory_equal(sid, u.csid, 8);
			assert_int_equal(pid, k); /* counts up from 0 */
			assert_int_equal(bl, 11 + sizeof(addr) + 5);
			assert_int_equal(b[0], 0);
			assert_int_equal(rd64(b + 1), NOW);
			assert_int_equal(b[9] << 8 | b[10], 0);
			assert_memory_equal(b + 11, addr, sizeof(addr));
			assert_memory_equal(b + 11 + sizeof(addr), "query", 5);
		}
		u.cpid = UINT64_MAX;
		assert_int_equal(ss2022_udp_seal(&u, addr, sizeof(addr), (const uint8_t *)"q", 1,
						 pkt), -EOVERFLOW);
		ss2022_udp_free(&u);
	}
}

static void test_udp_server_packets(void **state)
{
	static uint8_t pkt[2048], keep[2048];
	static const uint8_t addr[] = { 1, 10, 1, 2, 3, 0x00, 0x35 };
	uint8_t psk[32], s1[8], s2[8], s3[8], other[8], *plain;

	memset(s1, 0xa1, 8);
	memset(s2, 0xa2, 8);
	memset(s3, 0xa3, 8);
	for (size_t mi_ = 0; mi_ < 3; mi_++) {
		int m = M2022[mi_];
		struct ss2022_udp u;
		ssize_t n, k;

		psk_for(m, psk);
		assert_int_equal(ss2022_udp_init(&u, m, psk), 0);
		u.now = NOW;
#define SRV(ssid, pid, type, ts, csid, pad)                                                \
	ss2022_udp_seal_server(m, psk, ssid, pid, type, ts, csid, pad, addr, sizeof(addr),   \
			       (const uint8_t *)"answer", 6, pkt)
		/* a good one, with padding */
		n = SRV(s1, 0, 1, NOW, u.csid, 37);
		assert_true(n > 0);
		memcpy(keep, pkt, (size_t)n);
		k = ss2022_udp_open(&u, pkt, (size_t)n, &plain);
		assert_int_equal(k, sizeof(addr) + 6);
		assert_memory_equal(plain, addr, sizeof(addr));
		assert_memory_equal(plain + sizeof(addr), "answer", 6);
		/* the same packet again: a replay */
		memcpy(pkt, keep, (size_t)n);
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), -EALREADY);
		/* out of order inside the window is fine, once */
		n = SRV(s1, 5, 1, NOW, u.csid, 0);
		assert_true(ss2022_udp_open(&u, pkt, (size_t)n, &plain) > 0);
		n = SRV(s1, 3, 1, NOW, u.csid, 0);
		assert_true(ss2022_udp_open(&u, pkt, (size_t)n, &plain) > 0);
		n = SRV(s1, 3, 1, NOW, u.csid, 0);
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), -EALREADY);
		/* the checks after authentication */
		n = SRV(s1, 10, 0, NOW, u.csid, 0);
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), SS_E_TYPE);
		n = SRV(s1, 11, 1, NOW - 31, u.csid, 0);
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), SS_E_TIME);
		n = SRV(s1, 12, 1, NOW + 31, u.csid, 0);
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), SS_E_TIME);
		memcpy(other, u.csid, 8);
		other[7] ^= 1;
		n = SRV(s1, 13, 1, NOW, other, 0);
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), SS_E_SALT);
		/* (rejected ones do not use up their ids) */
		n = SRV(s1, 10, 1, NOW, u.csid, 0);
		assert_true(ss2022_udp_open(&u, pkt, (size_t)n, &plain) > 0);
		/* every flipped bit: fails, releases nothing, and does not spend the id */
		n = SRV(s1, 30, 1, NOW, u.csid, 0);
		memcpy(keep, pkt, (size_t)n);
		for (ssize_t i = 0; i < n; i++) {
			memcpy(pkt, keep, (size_t)n);
			pkt[i] ^= 0x08;
			k = ss2022_udp_open(&u, pkt, (size_t)n, &plain);
			/* AES: a flip in the separate header changes the session or packet id,
			 * so the tag fails, or the id is an old one (-EALREADY) */
			assert_true(k == -EBADMSG || k == -EALREADY);
		}
		/* truncated at every length (while its id is unused: afterwards the window
		 * answers first) */
		for (ssize_t cut = 0; cut < n; cut++) {
			memcpy(pkt, keep, (size_t)n);
			assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)cut, &plain), -EBADMSG);
		}
		memcpy(pkt, keep, (size_t)n);
		assert_true(ss2022_udp_open(&u, pkt, (size_t)n, &plain) > 0);
		/* a wrong PSK */
		psk[3] ^= 1;
		n = SRV(s1, 40, 1, NOW, u.csid, 0);
		psk[3] ^= 1;
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), -EBADMSG);

		/* server sessions: a second one has its own window; a third evicts the one
		 * that authenticated least recently */
		n = SRV(s2, 0, 1, NOW, u.csid, 0);
		assert_true(ss2022_udp_open(&u, pkt, (size_t)n, &plain) > 0);
		n = SRV(s1, 50, 1, NOW, u.csid, 0);
		assert_true(ss2022_udp_open(&u, pkt, (size_t)n, &plain) > 0);
		n = SRV(s3, 0, 1, NOW, u.csid, 0); /* evicts s2 */
		assert_true(ss2022_udp_open(&u, pkt, (size_t)n, &plain) > 0);
		n = SRV(s1, 0, 1, NOW, u.csid, 0); /* s1's window survived */
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), -EALREADY);
		n = SRV(s3, 0, 1, NOW, u.csid, 0);
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), -EALREADY);
		/* garbage never takes a slot: s1 and s3 stay */
		for (int g = 0; g < 50; g++) {
			for (int i = 0; i < 200; i++)
				pkt[i] = (uint8_t)(g * 31 + i * 7);
			assert_true(ss2022_udp_open(&u, pkt, 200, &plain) < 0);
		}
		n = SRV(s1, 0, 1, NOW, u.csid, 0);
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), -EALREADY);
		n = SRV(s3, 0, 1, NOW, u.csid, 0);
		assert_int_equal(ss2022_udp_open(&u, pkt, (size_t)n, &plain), -EALREADY);
#undef SRV
		ss2022_udp_free(&u);
	}
}

static void test_udp_padding_past_end(void **state)
{
	/* a server body whose padding length runs past the packet: sealed by hand for the
	 * AES-256 method (header, subkey and nonce as in server_open) */
	uint8_t psk[32], body[64], pkt[256], hdr[16], sid[8], material[40], sub[32], *plain;
	struct ss2022_udp u;
	struct ss_aead a;
	EVP_CIPHER_CTX *ecb;
	int n;
	const int m = SS_2022_AES_256_GCM;

	psk_for(m, psk);
	assert_int_equal(ss2022_udp_init(&u, m, psk), 0);
	u.now = NOW;
	memset(sid, 0x5a, 8);
	memcpy(hdr, sid, 8);
	be64(hdr + 8, 1);
	body[0] = 1;
	be64(body + 1, NOW);
	memcpy(body + 9, u.csid, 8);
	body[17] = 0;
	body[18] = 30; /* 30 bytes of padding, 20 present */
	memset(body + 19, 0, 20);
	memcpy(material, psk, 32);
	memcpy(material + 32, sid, 8);
	b3_derive_key(SS2022_SUBKEY_CONTEXT, material, 40, sub, 32);
	assert_int_equal(ss_aead_init_key(&a, m, sub), 0);
	memcpy(a.nonce, hdr + 4, 12);
	assert_int_equal(ss_aead_seal(&a, body, 39, pkt + 16), 0);
	ss_aead_free(&a);
	ecb = EVP_CIPHER_CTX_new();
	EVP_EncryptInit_ex(ecb, EVP_aes_256_ecb(), NULL, psk, NULL);
	EVP_CIPHER_CTX_set_padding(ecb, 0);
	EVP_EncryptUpdate(ecb, pkt, &n, hdr, 16);
	EVP_CIPHER_CTX_free(ecb);
	assert_int_equal(ss2022_udp_open(&u, pkt, 16 + 39 + 16, &plain), -EMSGSIZE);
	ss2022_udp_free(&u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_psk_decode),
		cmocka_unit_test(test_subkey),
		cmocka_unit_test(test_hchacha20),
		cmocka_unit_test(test_xchacha_poly1305),
		cmocka_unit_test(test_request_layout),
		cmocka_unit_test(test_response_round_trip),
		cmocka_unit_test(test_response_checks),
		cmocka_unit_test(test_response_garbage),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_udp_client_packet),
		cmocka_unit_test(test_udp_server_packets),
		cmocka_unit_test(test_udp_padding_past_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
