/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_ss2022 - the shadowsocks 2022 (SIP022) readers, four ways:
 *
 *  1. the raw input as a server's TCP response stream: the reader must fail with a defined
 *     error or wait for more, and release nothing (random bytes never authenticate);
 *  2. a response the harness seals from the input (header fields, chunk size and plaintext
 *     from the input), then tampers with at most three bytes: untampered and with a valid
 *     header, the reader gives back exactly the plaintext; otherwise a prefix of it (chunks
 *     authenticated before the damage) and an error;
 *  3. the raw input as a UDP packet from the server: never accepted;
 *  4. a server packet the harness seals, maybe tampered: accepted exactly when untampered
 *     with a valid header, and then with exactly the sealed address and payload;
 * and the raw input as a base64 PSK.
 *
 * Input: [method][step][chunk-size seed][flips][header variant][2 bytes per flip]... payload.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/outbound/shadowsocks/ss2022.h"
#include "../../plugins/outbound/shadowsocks/ss_aead.h"
#include "ss_drain.h"

#define NOW 1700000000ull

static const int M2022[] = { SS_2022_AES_128_GCM, SS_2022_AES_256_GCM,
			     SS_2022_CHACHA20_POLY1305 };
static uint8_t psk[32];
static const uint8_t req_salt[32] = { 0x13, 0x13, 0x13 };

/* the errors a 2022 server stream may end with: a tag, or a header that authenticated but
 * is not ours (type, time, request salt) */
static int allowed(ssize_t n)
{
	return n == -EBADMSG || n == SS_E_TYPE || n == SS_E_TIME || n == SS_E_SALT;
}

static size_t drain(struct ss_reader *r, const uint8_t *in, size_t len, size_t step, size_t cap,
		    uint8_t *out, size_t out_cap, ssize_t *err)
{
	return ss_drain(r, in, len, step, cap, SS2022_MAX_PAYLOAD, out, out_cap, err, allowed);
}

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t wire[3 * (SS2022_MAX_PAYLOAD + 64) + 128], out[3 * SS2022_MAX_PAYLOAD + 64];
	static uint8_t pkt[70000];
	uint8_t hdr[SS2022_RESP_HDR_MAX], salt[32], ssid[8] = { 9 }, b64out[64], *pl;
	const struct ss_method_info *mi;
	struct ss2022_udp u;
	struct ss_reader r;
	struct ss_aead a;
	size_t step, csz, nflip, off, plen, wlen, got, first, hl;
	const uint8_t *plain;
	int method, variant, valid;
	ssize_t err, n;
	char *s;

	if (!psk[0])
		for (int i = 0; i < 32; i++)
			psk[i] = (uint8_t)(i * 5 + 1);
	/* the PSK decoder, on the raw input as a string */
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	n = ss2022_psk_decode(s, b64out, sizeof(b64out));
	if (n != -EINVAL && n != -EMSGSIZE && (n < 0 || (size_t)n > sizeof(b64out)))
		abort();
	free(s);
	if (size < 5)
		return 0;
	method = M2022[data[0] % 3];
	mi = ss_method_info(method);
	step = 1 + data[1] * 37u;
	csz = 1 + (data[2] * 397u) % SS2022_MAX_PAYLOAD;
	nflip = data[3] % 4;
	variant = data[4] % 8; /* 0-4: valid header; 5: type 0; 6: stale; 7: other salt */
	valid = variant < 5;

	/* 1: raw bytes as a response stream */
	ss_reader_init(&r, method, psk);
	ss_reader_set_request_salt(&r, req_salt);
	r.now = NOW;
	got = drain(&r, data + 5, size - 5, step, 1 + data[1] % 64, out, sizeof(out), &err);
	if (got)
		abort(); /* forged a header tag? */
	ss_reader_free(&r);

	/* 3: raw bytes as a server's UDP packet */
	if (ss2022_udp_init(&u, method, psk))
		abort();
	u.now = NOW;
	plen = size - 5 < sizeof(pkt) ? size - 5 : sizeof(pkt);
	memcpy(pkt, data + 5, plen);
	if (ss2022_udp_open(&u, pkt, plen, &pl) >= 0)
		abort();

	/* 2: a sealed response, maybe tampered */
	off = 5 + 2 * nflip;
	if (size < off) {
		ss2022_udp_free(&u);
		return 0;
	}
	plain = data + off;
	plen = size - off;
	if (plen > 3 * SS2022_MAX_PAYLOAD)
		plen = 3 * SS2022_MAX_PAYLOAD;
	if (plen > (sizeof(wire) - 256) / (csz + SS_LEN_CHUNK + SS_TAG_LEN) * csz)
		plen = (sizeof(wire) - 256) / (csz + SS_LEN_CHUNK + SS_TAG_LEN) * csz;
	memset(salt, 0x5a, sizeof(salt));
	memcpy(wire, salt, mi->salt_len);
	if (ss_aead_init(&a, method, psk, salt))
		abort();
	wlen = mi->salt_len;
	hl = SS2022_RESP_HDR_LEN(mi->salt_len);
	first = plen < csz ? plen : csz;
	hdr[0] = variant == 5 ? 0 : 1;
	be64(hdr + 1, variant == 6 ? NOW - 31 - data[1] : NOW - 30 + variant * 15);
	memcpy(hdr + 9, req_salt, mi->salt_len);
	if (variant == 7)
		hdr[9 + data[1] % mi->salt_len] ^= 0x80;
	hdr[9 + mi->salt_len] = (uint8_t)(first >> 8);
	hdr[10 + mi->salt_len] = (uint8_t)first;
	if (ss_aead_seal(&a, hdr, hl, wire + wlen) ||
	    ss_aead_seal(&a, plain, first, wire + wlen + hl + 16))
		abort();
	wlen += hl + 16 + first + 16;
	for (size_t p = first; p < plen; p += csz) {
		size_t k = plen - p < csz ? plen - p : csz;
		ssize_t w = ss_seal_chunk(&a, plain + p, k, wire + wlen);

		if (w < 0)
			abort();
		wlen += (size_t)w;
	}
	ss_aead_free(&a);
	for (size_t i = 0; i < nflip; i++) {
		size_t pos = ((size_t)data[5 + 2 * i] << 8 | data[6 + 2 * i]) % wlen;

		wire[pos] ^= (uint8_t)(1 + data[1] % 255);
	}
	ss_reader_init(&r, method, psk);
	ss_reader_set_request_salt(&r, req_salt);
	r.now = NOW;
	got = drain(&r, wire, wlen, step, 1 + (data[2] % 3) * 30000, out, sizeof(out), &err);
	if (got > plen || memcmp(out, plain, got))
		abort(); /* released something that is not the sealed plaintext */
	if (!valid && got)
		abort(); /* released payload behind a header that fails its checks */
	if (!nflip && valid && (err || got != plen || !ss_reader_at_boundary(&r)))
		abort();
	ss_reader_free(&r);

	/* 4: a sealed server packet, maybe tampered */
	{
		static const uint8_t addr[] = { 1, 10, 1, 2, 3, 0x00, 0x35 };
		size_t ulen = plen > 60000 ? 60000 : plen;
		ssize_t k = ss2022_udp_seal_server(method, psk, ssid, data[1], variant == 5 ? 0 : 1,
						   variant == 6 ? NOW + 31 : NOW, u.csid,
						   data[2] % 64, addr, sizeof(addr), plain, ulen,
						   pkt);

		if (k < 0)
			abort();
		if (variant == 7)
			u.csid[0] ^= 1; /* the packet names another session */
		for (size_t i = 0; i < nflip; i++) {
			size_t pos = ((size_t)data[5 + 2 * i] << 8 | data[6 + 2 * i]) % (size_t)k;

			pkt[pos] ^= (uint8_t)(1 + data[1] % 255);
		}
		n = ss2022_udp_open(&u, pkt, (size_t)k, &pl);
		if (!nflip && valid) {
			if (n != (ssize_t)(sizeof(addr) + ulen) || memcmp(pl, addr, sizeof(addr)) ||
			    memcmp(pl + sizeof(addr), plain, ulen))
				abort();
		} else if (n >= 0 && (!valid || nflip == 1)) {
			/* accepted a bad or tampered packet (two or three flips may cancel out, so
			 * only a single one surely changed the packet) */
			abort();
		}
	}
	ss2022_udp_free(&u);
	return 0;
}
