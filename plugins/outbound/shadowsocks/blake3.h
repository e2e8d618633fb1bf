/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * blake3 - a portable BLAKE3 (hash, keyed hash, key derivation, extendable output), for the
 * shadowsocks 2022 edition's session subkeys (SIP022: derive_key with the context
 * "shadowsocks 2022 session subkey" over PSK || salt).
 *
 * OpenSSL 3.0 (Debian 12) has no BLAKE3, and the inputs here are a few dozen bytes per
 * connection, so a plain one-block-at-a-time implementation is all that is needed: no SIMD,
 * no threads, no allocation. Checked against the BLAKE3 team's published test vectors
 * (tests/unit/test_blake3.c) and against Debian's b3sum when it is installed.
 */
#ifndef XP_BLAKE3_H
#define XP_BLAKE3_H

#include <stddef.h>
#include <stdint.h>

#define B3_OUT_LEN   32
#define B3_KEY_LEN   32
#define B3_BLOCK_LEN 64
#define B3_CHUNK_LEN 1024
/* chaining values kept for the tree: one per level, 2^54 chunks is the format's limit */
#define B3_MAX_DEPTH 54

struct b3_chunk {
	uint32_t cv[8];
	uint64_t counter; /* this chunk's index in the input */
	uint8_t block[B3_BLOCK_LEN];
	uint8_t block_len;
	uint8_t blocks_done; /* blocks compressed into cv so far */
	uint8_t flags;
};

struct b3_hasher {
	uint32_t key[8];
	struct b3_chunk chunk;
	uint8_t stack_len;
	uint8_t flags;
	uint32_t stack[B3_MAX_DEPTH][8];
};

void b3_init(struct b3_hasher *h);
void b3_init_keyed(struct b3_hasher *h, const uint8_t key[B3_KEY_LEN]);
/* context: a NUL-terminated, hard-coded, globally unique string (BLAKE3's rule) */
void b3_init_derive_key(struct b3_hasher *h, const char *context);
void b3_update(struct b3_hasher *h, const void *in, size_t len);
/* Any number of output bytes (the first 32 are the default-length hash); the hasher is left
 * unchanged, so more input may follow. */
void b3_finalize(const struct b3_hasher *h, uint8_t *out, size_t out_len);
/* derive_key mode in one call: out_len bytes from (context, material) */
void b3_derive_key(const char *context, const void *material, size_t len, uint8_t *out,
		   size_t out_len);
/* Wipe a hasher that held key material. */
void b3_wipe(struct b3_hasher *h);

#endif /* XP_BLAKE3_H */
