/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_quic - the quic sniffer (plugins/sniff/quic) over sequences of datagrams, called through
 * its descriptor as the daemon calls it.
 *
 * Random bytes almost never pass the AEAD tag, so two modes:
 *   - first byte even: the rest is raw datagrams, each as a 2-byte big-endian length and the
 *     bytes (headers, lengths and tags as the fuzzer writes them);
 *   - first byte odd: the rest is records of a flags byte, a 2-byte length and a PLAINTEXT
 *     payload; the harness seals each into a client Initial with the keys of a fixed DCID, so
 *     the frame parser, the reassembly and the ClientHello parser behind the decryption get
 *     fuzzed. Flags: bits 0-1 packet-number length - 1, bit 2 QUIC v2, bit 3 coalesce with the
 *     previous datagram, bit 4 append a 0-RTT packet, bit 5 pad the datagram to 1200 bytes,
 *     bit 6 flip one bit of the sealed packet (at an offset taken from the payload's length).
 *
 * Every datagram sits in its own exactly-sized heap block, so any over-read is caught. Beyond
 * that: the result is FOUND, MORE or NOT_MINE; FOUND has a clean non-empty name and protocol
 * "quic"; the same datagrams give the same answer twice (the function is pure); each prefix of
 * the sequence is sniffed too, as the daemon would as datagrams arrive.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <xproxy/plugin.h>

#include "../../plugins/sniff/quic/quic_initial.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__);             \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define MAX_DG 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_dcid[8] = {0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08};
static struct quic_keys keys_v1, keys_v2;
static const struct xp_sniffer_ops *ops;

static void init_once(void)
{
	const struct xp_plugin_desc *d;

	if (ops)
		return;
	d = xp_plugin_query(XP_PLUGIN_ABI);
	CHECK(d && d->sniffer && d->sniffer->sniff);
	ops = d->sniffer;
	CHECK(!quic_initial_keys(QUIC_VERSION_1, fuzz_dcid, sizeof(fuzz_dcid), 0, &keys_v1));
	CHECK(!quic_initial_keys(QUIC_VERSION_2, fuzz_dcid, sizeof(fuzz_dcid), 0, &keys_v2));
}

/* Seal `plen` bytes of plaintext as a client Initial into out (room for plen + 64). */
static size_t seal(uint8_t *out, unsigned flags, uint64_t pn, const uint8_t *pl, size_t plen)
{
	int v2 = !!(flags & 4);
	const struct quic_keys *k = v2 ? &keys_v2 : &keys_v1;
	uint32_t version = v2 ? QUIC_VERSION_2 : QUIC_VERSION_1;
	size_t pn_len = (flags & 3) + 1, n = 0, pn_off, i, body = pn_len + plen + 16;
	uint8_t nonce[12], mask[16];
	EVP_CIPHER_CTX *c;
	int len;

	out[n++] = 0xc0 | (v2 ? 0x10 : 0x00) | (uint8_t)(pn_len - 1);
	for (i = 0; i < 4; i++)
		out[n++] = (uint8_t)(version >> (24 - 8 * i));
	out[n++] = sizeof(fuzz_dcid);
	memcpy(out + n, fuzz_dcid, sizeof(fuzz_dcid));
	n += sizeof(fuzz_dcid);
	out[n++] = 0;				    /* SCID */
	out[n++] = 0;				    /* token */
	out[n++] = 0x80;			    /* Length, 4-byte varint */
	out[n++] = (uint8_t)(body >> 16);
	out[n++] = (uint8_t)(body >> 8);
	out[n++] = (uint8_t)body;
	pn_off = n;
	for (i = 0; i < pn_len; i++)
		out[n++] = (uint8_t)(pn >> (8 * (pn_len - 1 - i)));
	memcpy(nonce, k->iv, 12);
	for (i = 0; i < 8; i++)
		nonce[11 - i] ^= (uint8_t)(pn >> (8 * i));

	c = EVP_CIPHER_CTX_new();
	CHECK(c);
	CHECK(EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, k->key, nonce) == 1);
	CHECK(EVP_EncryptUpdate(c, NULL, &len, out, (int)n) == 1);
	if (plen)
		CHECK(EVP_EncryptUpdate(c, out + n, &len, pl, (int)plen) == 1);
	CHECK(EVP_EncryptFinal_ex(c, out + n + plen, &len) == 1);
	CHECK(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + n + plen) == 1);
	n += plen + 16;
	/* the sample needs 20 bytes after the packet number's start: short packets stay as they
	 * are (the sniffer must refuse them without reading past them) */
	if (n >= pn_off + 20) {
		CHECK(EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, k->hp, NULL) == 1);
		EVP_CIPHER_CTX_set_padding(c, 0);
		CHECK(EVP_EncryptUpdate(c, mask, &len, out + pn_off + 4, 16) == 1);
		out[0] ^= mask[0] & 0x0f;
		for (i = 0; i < pn_len; i++)
			out[pn_off + i] ^= mask[1 + i];
	}
	EVP_CIPHER_CTX_free(c);
	return n;
}

static void check_result(int rc, const struct xp_sniff_result *r)
{
	size_t n;

	CHECK(rc == XP_SNIFF_FOUND || rc == XP_SNIFF_MORE || rc == XP_SNIFF_NOT_MINE);
	if (rc != XP_SNIFF_FOUND)
		return;
	n = strnlen(r->name, sizeof(r->name));
	CHECK(n > 0 && n < sizeof(r->name));
	for (size_t i = 0; i < n; i++)
		CHECK((r->name[i] >= 'a' && r->name[i] <= 'z') ||
		      (r->name[i] >= '0' && r->name[i] <= '9') || r->name[i] == '-' ||
		      r->name[i] == '_' || r->name[i] == '.');
	CHECK(!strcmp(r->protocol, "quic"));
	CHECK(strnlen(r->alpn, sizeof(r->alpn)) < sizeof(r->alpn));
}

static void run(struct xp_bytes *parts, uint32_t count)
{
	struct xp_sniff_input in = {.size = sizeof(in), .l4proto = 17, .dport = 443};
	struct xp_sniff_result r1, r2;
	uint32_t k;

	in.parts = parts;
	for (k = 1; k <= count; k++) {
		int a, b;

		in.count = k;
		memset(&r1, 0, sizeof(r1));
		memset(&r2, 0x5a, sizeof(r2));
		r1.size = r2.size = sizeof(r1);
		a = ops->sniff(NULL, &in, &r1);
		b = ops->sniff(NULL, &in, &r2);
		check_result(a, &r1);
		CHECK(a == b);
		if (a == XP_SNIFF_FOUND)
			CHECK(!strcmp(r1.name, r2.name) && !strcmp(r1.alpn, r2.alpn));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xp_bytes parts[MAX_DG];
	uint8_t *bufs[MAX_DG];
	uint32_t count = 0, i;
	size_t off = 1;

	init_once();
	if (!size)
		return 0;
	if (!(data[0] & 1)) {
		while (count < MAX_DG && size - off >= 2) {
			size_t len = (size_t)data[off] << 8 | data[off + 1];

			off += 2;
			if (len > size - off)
				len = size - off;
			bufs[count] = malloc(len ? len : 1);
			CHECK(bufs[count]);
			memcpy(bufs[count], data + off, len);
			parts[count].data = bufs[count];
			parts[count].len = len;
			count++;
			off += len;
		}
	} else {
		uint8_t *scratch = malloc(70000);
		size_t used = 0;

		CHECK(scratch);
		while (count < MAX_DG && size - off >= 3) {
			unsigned flags = data[off];
			size_t len = (size_t)data[off + 1] << 8 | data[off + 2], n;

			off += 3;
			if (len > size - off)
				len = size - off;
			if (len > 4000)
				len = 4000;
			/* coalesce: the previous datagram's bytes, then this packet */
			used = (flags & 8) && count ? parts[count - 1].len : 0;
			if (used + len + 64 + 32 + 1200 > 70000)
				break;
			if (used) {
				count--;
				memcpy(scratch, bufs[count], used);
				free(bufs[count]);
			}
			n = seal(scratch + used, flags, count, data + off, len);
			if (flags & 0x40)
				scratch[used + len % n] ^= (uint8_t)(1u << (len & 7));
			n += used;
			if (flags & 0x10) { /* 0-RTT: type bits for the version, 16 opaque bytes */
				memcpy(scratch + n, scratch + used, 14);
				scratch[n] = (flags & 4) ? 0xe0 : 0xd0;
				scratch[n + 14] = 0;
				scratch[n + 15] = 16;
				memset(scratch + n + 16, 0xa5, 16);
				n += 32;
			}
			if ((flags & 0x20) && n < 1200) {
				memset(scratch + n, 0, 1200 - n);
				n = 1200;
			}
			bufs[count] = malloc(n);
			CHECK(bufs[count]);
			memcpy(bufs[count], scratch, n);
			parts[count].data = bufs[count];
			parts[count].len = n;
			count++;
			off += len;
		}
		free(scratch);
	}
	if (count)
		run(parts, count);
	for (i = 0; i < count; i++)
		free(bufs[i]);
	return 0;
}
