/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_ss - the shadowsocks decrypting chunk reader (ss_reader_feed), two ways:
 *
 *  1. the raw input as a server's stream (salt, then "chunks"): whatever the split and the
 *     output buffer sizes, the reader must fail with a defined error and release nothing
 *     (random bytes never authenticate);
 *  2. a stream the harness seals from the input (chunk sizes and plaintext from the input),
 *     then tampers with at most three bytes the input picks. Untampered, the reader must give
 *     back exactly the plaintext; tampered, what it gives back must be a prefix of the
 *     plaintext (authenticated chunks before the damage) followed by an error.
 *
 * Input: [method][step][chunk-size seed][flips][2 bytes per flip]... plaintext.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/outbound/shadowsocks/ss_aead.h"
#include "ss_drain.h"

static uint8_t key[SS_METHOD_COUNT][SS_KEY_MAX];
static int ready;

/* the errors a server stream may end with */
static int allowed(ssize_t n)
{
	return n == -EBADMSG || n == -EMSGSIZE;
}

static size_t drain(struct ss_reader *r, const uint8_t *in, size_t len, size_t step, size_t cap,
		    uint8_t *out, size_t out_cap, ssize_t *err)
{
	return ss_drain(r, in, len, step, cap, SS_MAX_PAYLOAD, out, out_cap, err, allowed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t wire[4 * SS_MAX_CHUNK + 64], out[4 * SS_MAX_PAYLOAD + 64];
	const struct ss_method_info *mi;
	struct ss_reader r;
	struct ss_aead a;
	size_t step, csz, nflip, off, plen, wlen, got;
	const uint8_t *plain;
	int method;
	ssize_t err;

	if (!ready) {
		for (int m = 0; m < SS_METHOD_COUNT; m++)
			ss_password_key("fuzz", key[m], ss_method_info(m)->key_len);
		ready = 1;
	}
	if (size < 4)
		return 0;
	method = data[0] % SS_AEAD_METHODS;
	mi = ss_method_info(method);
	step = 1 + data[1] * 37u;
	csz = 1 + (data[2] * 97u) % SS_MAX_PAYLOAD;
	nflip = data[3] % 4;

	/* 1: raw bytes */
	ss_reader_init(&r, method, key[method]);
	got = drain(&r, data + 4, size - 4, step, 1 + data[1] % 64, out, sizeof(out), &err);
	if (size - 4 >= mi->salt_len + SS_LEN_CHUNK && (got || !err))
		abort(); /* forged a length tag? */
	ss_reader_free(&r);

	/* 2: a sealed stream from the input, maybe tampered */
	off = 4 + 2 * nflip;
	if (size < off)
		return 0;
	plain = data + off;
	plen = size - off;
	if (plen > 4 * SS_MAX_PAYLOAD)
		plen = 4 * SS_MAX_PAYLOAD;
	/* every chunk costs 34 bytes on the wire: small chunks fit fewer plaintext bytes */
	if (plen > (sizeof(wire) - 64) / (csz + SS_LEN_CHUNK + SS_TAG_LEN) * csz)
		plen = (sizeof(wire) - 64) / (csz + SS_LEN_CHUNK + SS_TAG_LEN) * csz;
	memset(wire, 0x5a, mi->salt_len);
	if (ss_aead_init(&a, method, key[method], wire))
		abort();
	wlen = mi->salt_len;
	for (size_t p = 0; p < plen; p += csz) {
		size_t n = plen - p < csz ? plen - p : csz;
		ssize_t w = ss_seal_chunk(&a, plain + p, n, wire + wlen);

		if (w < 0)
			abort();
		wlen += (size_t)w;
	}
	ss_aead_free(&a);
	for (size_t i = 0; i < nflip; i++) {
		size_t pos = ((size_t)data[4 + 2 * i] << 8 | data[5 + 2 * i]) % wlen;

		wire[pos] ^= (uint8_t)(1 + data[1]);
	}
	ss_reader_init(&r, method, key[method]);
	got = drain(&r, wire, wlen, step, 1 + (data[2] % 3) * 8000, out, sizeof(out), &err);
	if (got > plen || memcmp(out, plain, got))
		abort(); /* released something that is not the sealed plaintext */
	if (!nflip && (err || got != plen || !ss_reader_at_boundary(&r)))
		abort();
	ss_reader_free(&r);
	return 0;
}
