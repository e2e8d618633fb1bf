/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * blake3 - BLAKE3 as its specification describes it (the BLAKE3 paper, section 2 and 5):
 * 64-byte blocks compressed into 1 KiB chunks, chunks joined by a binary tree of parent nodes
 * whose chaining values wait on a stack until their sibling is complete, and the root node
 * compressed once per 64 bytes of output with a growing counter (the extendable output).
 */
#include "blake3.h"

#include <string.h>

#include <openssl/crypto.h>

enum {
	CHUNK_START = 1 << 0,
	CHUNK_END = 1 << 1,
	PARENT = 1 << 2,
	ROOT = 1 << 3,
	KEYED_HASH = 1 << 4,
	DERIVE_KEY_CONTEXT = 1 << 5,
	DERIVE_KEY_MATERIAL = 1 << 6,
};

/* SHA-256's initial hash value, as BLAKE3 uses it */
static const uint32_t IV[8] = {
	0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
	0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
};

/* the message word order of each of the 7 rounds (the permutation applied r times) */
static const uint8_t SCHEDULE[7][16] = {
	{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	{2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
	{3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
	{10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
	{12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
	{9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
	{11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

static inline uint32_t rotr(uint32_t x, int n)
{
	return (x >> n) | (x << (32 - n));
}

static inline uint32_t load32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void store32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

#define G(a, b, c, d, x, y)                                   \
	do {                                                  \
		s[a] = s[a] + s[b] + (x);                     \
		s[d] = rotr(s[d] ^ s[a], 16);                 \
		s[c] = s[c] + s[d];                           \
		s[b] = rotr(s[b] ^ s[c], 12);                 \
		s[a] = s[a] + s[b] + (y);                     \
		s[d] = rotr(s[d] ^ s[a], 8);                  \
		s[c] = s[c] + s[d];                           \
		s[b] = rotr(s[b] ^ s[c], 7);                  \
	} while (0)

/* The compression function: all 16 output words (the first 8 are the chaining value; the
 * root's extended output uses all 16). */
static void compress(const uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN], uint8_t block_len,
		     uint64_t counter, uint8_t flags, uint32_t out[16])
{
	uint32_t m[16], s[16];

	for (int i = 0; i < 16; i++)
		m[i] = load32(block + 4 * i);
	memcpy(s, cv, 8 * sizeof(uint32_t));
	memcpy(s + 8, IV, 4 * sizeof(uint32_t));
	s[12] = (uint32_t)counter;
	s[13] = (uint32_t)(counter >> 32);
	s[14] = block_len;
	s[15] = flags;
	for (int r = 0; r < 7; r++) {
		const uint8_t *o = SCHEDULE[r];

		G(0, 4, 8, 12, m[o[0]], m[o[1]]);
		G(1, 5, 9, 13, m[o[2]], m[o[3]]);
		G(2, 6, 10, 14, m[o[4]], m[o[5]]);
		G(3, 7, 11, 15, m[o[6]], m[o[7]]);
		G(0, 5, 10, 15, m[o[8]], m[o[9]]);
		G(1, 6, 11, 12, m[o[10]], m[o[11]]);
		G(2, 7, 8, 13, m[o[12]], m[o[13]]);
		G(3, 4, 9, 14, m[o[14]], m[o[15]]);
	}
	for (int i = 0; i < 8; i++) {
		out[i] = s[i] ^ s[i + 8];
		out[i + 8] = s[i + 8] ^ cv[i];
	}
	OPENSSL_cleanse(m, sizeof(m));
	OPENSSL_cleanse(s, sizeof(s));
}

/* What a node needs to produce either its chaining value or, as the root, the output. */
struct node {
	uint32_t cv[8];
	uint8_t block[B3_BLOCK_LEN];
	uint8_t block_len;
	uint64_t counter;
	uint8_t flags;
};

static void node_cv(const struct node *n, uint32_t cv[8])
{
	uint32_t out[16];

	compress(n->cv, n->block, n->block_len, n->counter, n->flags, out);
	memcpy(cv, out, 8 * sizeof(uint32_t));
}

static void parent_node(const uint32_t left[8], const uint32_t right[8], const uint32_t key[8],
			uint8_t flags, struct node *n)
{
	memcpy(n->cv, key, sizeof(n->cv));
	for (int i = 0; i < 8; i++) {
		store32(n->block + 4 * i, left[i]);
		store32(n->block + 32 + 4 * i, right[i]);
	}
	n->block_len = B3_BLOCK_LEN;
	n->counter = 0;
	n->flags = flags | PARENT;
}

static void chunk_init(struct b3_chunk *c, const uint32_t key[8], uint64_t counter, uint8_t flags)
{
	memcpy(c->cv, key, sizeof(c->cv));
	c->counter = counter;
	memset(c->block, 0, sizeof(c->block));
	c->block_len = 0;
	c->blocks_done = 0;
	c->flags = flags;
}

static size_t chunk_len(const struct b3_chunk *c)
{
	return (size_t)B3_BLOCK_LEN * c->blocks_done + c->block_len;
}

static uint8_t chunk_start_flag(const struct b3_chunk *c)
{
	return c->blocks_done == 0 ? CHUNK_START : 0;
}

static void chunk_update(struct b3_chunk *c, const uint8_t *in, size_t len)
{
	while (len > 0) {
		/* a full block is compressed only once more input proves it is not the last */
		if (c->block_len == B3_BLOCK_LEN) {
			uint32_t out[16];

			compress(c->cv, c->block, B3_BLOCK_LEN, c->counter,
				 c->flags | chunk_start_flag(c), out);
			memcpy(c->cv, out, sizeof(c->cv));
			c->blocks_done++;
			c->block_len = 0;
			memset(c->block, 0, sizeof(c->block));
		}
		size_t take = B3_BLOCK_LEN - c->block_len;

		if (take > len)
			take = len;
		memcpy(c->block + c->block_len, in, take);
		c->block_len += (uint8_t)take;
		in += take;
		len -= take;
	}
}

static void chunk_node(const struct b3_chunk *c, struct node *n)
{
	memcpy(n->cv, c->cv, sizeof(n->cv));
	memcpy(n->block, c->block, sizeof(n->block));
	n->block_len = c->block_len;
	n->counter = c->counter;
	n->flags = c->flags | chunk_start_flag(c) | CHUNK_END;
}

static void hasher_init(struct b3_hasher *h, const uint32_t key[8], uint8_t flags)
{
	memcpy(h->key, key, sizeof(h->key));
	h->flags = flags;
	h->stack_len = 0;
	chunk_init(&h->chunk, key, 0, flags);
}

void b3_init(struct b3_hasher *h)
{
	hasher_init(h, IV, 0);
}

void b3_init_keyed(struct b3_hasher *h, const uint8_t key[B3_KEY_LEN])
{
	uint32_t k[8];

	for (int i = 0; i < 8; i++)
		k[i] = load32(key + 4 * i);
	hasher_init(h, k, KEYED_HASH);
	OPENSSL_cleanse(k, sizeof(k));
}

void b3_init_derive_key(struct b3_hasher *h, const char *context)
{
	struct b3_hasher ctx;
	uint8_t ck[B3_KEY_LEN];
	uint32_t k[8];

	hasher_init(&ctx, IV, DERIVE_KEY_CONTEXT);
	b3_update(&ctx, context, strlen(context));
	b3_finalize(&ctx, ck, sizeof(ck));
	for (int i = 0; i < 8; i++)
		k[i] = load32(ck + 4 * i);
	hasher_init(h, k, DERIVE_KEY_MATERIAL);
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(ck, sizeof(ck));
}

/* A chunk is complete: merge it into the tree. total is the number of chunks so far; each
 * trailing zero bit of it means a subtree is complete and its two halves become a parent. */
static void push_chunk_cv(struct b3_hasher *h, uint32_t cv[8], uint64_t total)
{
	while ((total & 1) == 0) {
		struct node n;

		h->stack_len--;
		parent_node(h->stack[h->stack_len], cv, h->key, h->flags, &n);
		node_cv(&n, cv);
		total >>= 1;
	}
	memcpy(h->stack[h->stack_len], cv, 8 * sizeof(uint32_t));
	h->stack_len++;
}

void b3_update(struct b3_hasher *h, const void *in, size_t len)
{
	const uint8_t *p = in;

	while (len > 0) {
		/* as with blocks, a full chunk is closed only once more input follows it */
		if (chunk_len(&h->chunk) == B3_CHUNK_LEN) {
			struct node n;
			uint32_t cv[8];
			uint64_t total = h->chunk.counter + 1;

			chunk_node(&h->chunk, &n);
			node_cv(&n, cv);
			push_chunk_cv(h, cv, total);
			chunk_init(&h->chunk, h->key, total, h->flags);
		}
		size_t take = B3_CHUNK_LEN - chunk_len(&h->chunk);

		if (take > len)
			take = len;
		chunk_update(&h->chunk, p, take);
		p += take;
		len -= take;
	}
}

void b3_finalize(const struct b3_hasher *h, uint8_t *out, size_t out_len)
{
	struct node n;

	/* the last chunk, then the stack from the top down, each a right child */
	chunk_node(&h->chunk, &n);
	for (size_t i = h->stack_len; i > 0; i--) {
		uint32_t cv[8];

		node_cv(&n, cv);
		parent_node(h->stack[i - 1], cv, h->key, h->flags, &n);
	}
	for (uint64_t block = 0; out_len > 0; block++) {
		uint32_t words[16];
		uint8_t bytes[64];
		size_t take = out_len < sizeof(bytes) ? out_len : sizeof(bytes);

		compress(n.cv, n.block, n.block_len, block, n.flags | ROOT, words);
		for (int i = 0; i < 16; i++)
			store32(bytes + 4 * i, words[i]);
		memcpy(out, bytes, take);
		out += take;
		out_len -= take;
		OPENSSL_cleanse(bytes, sizeof(bytes));
	}
	OPENSSL_cleanse(&n, sizeof(n));
}

void b3_derive_key(const char *context, const void *material, size_t len, uint8_t *out,
		   size_t out_len)
{
	struct b3_hasher h;

	b3_init_derive_key(&h, context);
	b3_update(&h, material, len);
	b3_finalize(&h, out, out_len);
	b3_wipe(&h);
}

void b3_wipe(struct b3_hasher *h)
{
	OPENSSL_cleanse(h, sizeof(*h));
}
