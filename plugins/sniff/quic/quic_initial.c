/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * quic_initial - open client Initial packets and collect their CRYPTO stream.
 *
 * Initial packets are encrypted with keys anyone can derive from the Destination Connection ID
 * (RFC 9001 5.2), so an on-path box can read the ClientHello exactly as the server will. Every
 * length is checked against the datagram before it is used; the AEAD tag decides whether a
 * packet is really a client Initial (a server Initial, a forged or a corrupted one fails it).
 *
 * OpenSSL: the digest and the two ciphers are fetched once per process and shared read-only;
 * each call makes its own short-lived contexts, so nothing is shared between threads that
 * changes. HMAC is composed from the fetched digest rather than going through EVP_MAC, whose
 * per-call parameter handling costs more than the five HMACs of a key derivation.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "quic_initial.h"

static const uint8_t salt_v1[20] = {
	0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
	0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a,
};
static const uint8_t salt_v2[20] = {
	0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
	0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
};

#define TAG_LEN	   16
#define SAMPLE_LEN 16

/* ---- OpenSSL algorithms, fetched once ------------------------------------------------------- */

static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_MD *alg_sha256;
static EVP_CIPHER *alg_ecb, *alg_gcm;

static void algs_fetch(void)
{
	alg_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	alg_ecb = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
	alg_gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
}

static int algs_ready(void)
{
	pthread_once(&algs_once, algs_fetch);
	return alg_sha256 && alg_ecb && alg_gcm;
}

/* The plugin can be dlclose()d and loaded again: give the fetched objects back. */
__attribute__((destructor)) static void algs_free(void)
{
	EVP_MD_free(alg_sha256);
	EVP_CIPHER_free(alg_ecb);
	EVP_CIPHER_free(alg_gcm);
	alg_sha256 = NULL;
	alg_ecb = alg_gcm = NULL;
}

/* ---- HKDF (RFC 5869) with SHA-256, the TLS 1.3 label form (RFC 8446 7.1) -------------------- */

/* HMAC-SHA256(key, a || b); key is at most one block (salts, 32-byte secrets). */
static int hmac(EVP_MD_CTX *c, const uint8_t *key, size_t klen, const uint8_t *a, size_t alen,
		const uint8_t *b, size_t blen, uint8_t out[32])
{
	uint8_t pad[64], inner[32];
	unsigned int n;
	size_t i;

	if (klen > sizeof(pad))
		return -1;
	memset(pad, 0x36, sizeof(pad));
	for (i = 0; i < klen; i++)
		pad[i] ^= key[i];
	if (!EVP_DigestInit_ex2(c, alg_sha256, NULL) || !EVP_DigestUpdate(c, pad, sizeof(pad)) ||
	    !EVP_DigestUpdate(c, a, alen) || (blen && !EVP_DigestUpdate(c, b, blen)) ||
	    !EVP_DigestFinal_ex(c, inner, &n))
		return -1;
	for (i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36 ^ 0x5c; /* ipad to opad */
	if (!EVP_DigestInit_ex2(c, alg_sha256, NULL) || !EVP_DigestUpdate(c, pad, sizeof(pad)) ||
	    !EVP_DigestUpdate(c, inner, sizeof(inner)) || !EVP_DigestFinal_ex(c, out, &n))
		return -1;
	return 0;
}

/* HKDF-Expand-Label(secret, label, "", len) for len <= 32: one HMAC block is enough. */
static int expand_label(EVP_MD_CTX *c, const uint8_t secret[32], const char *label,
			uint8_t *out, size_t len)
{
	uint8_t info[2 + 1 + 255 + 1 + 1], t[32];
	size_t ll = strlen(label), n = 0;

	if (len > sizeof(t) || 6 + ll > 255)
		return -1;
	info[n++] = 0;
	info[n++] = (uint8_t)len;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = 0;	  /* empty context */
	info[n++] = 0x01; /* T(1) counter */
	if (hmac(c, secret, 32, info, n, NULL, 0, t))
		return -1;
	memcpy(out, t, len);
	return 0;
}

static const uint8_t *version_salt(uint32_t version)
{
	switch (version) {
	case QUIC_VERSION_1:
		return salt_v1;
	case QUIC_VERSION_2:
		return salt_v2;
	}
	return NULL;
}

static int initial_secret(EVP_MD_CTX *c, uint32_t version, const uint8_t *dcid, size_t dcid_len,
			  int server, uint8_t secret[32])
{
	const uint8_t *salt = version_salt(version);
	uint8_t prk[32];

	if (!salt || dcid_len > QUIC_CID_MAX)
		return -1;
	/* HKDF-Extract(salt, dcid) = HMAC(salt, dcid) */
	if (hmac(c, salt, 20, dcid, dcid_len, NULL, 0, prk))
		return -1;
	return expand_label(c, prk, server ? "server in" : "client in", secret, 32);
}

static int initial_keys(EVP_MD_CTX *c, uint32_t version, const uint8_t *dcid, size_t dcid_len,
			int server, struct quic_keys *out)
{
	int v2 = version == QUIC_VERSION_2;
	uint8_t secret[32];

	if (initial_secret(c, version, dcid, dcid_len, server, secret))
		return -1;
	if (expand_label(c, secret, v2 ? "quicv2 key" : "quic key", out->key, sizeof(out->key)) ||
	    expand_label(c, secret, v2 ? "quicv2 iv" : "quic iv", out->iv, sizeof(out->iv)) ||
	    expand_label(c, secret, v2 ? "quicv2 hp" : "quic hp", out->hp, sizeof(out->hp)))
		return -1;
	return 0;
}

int quic_initial_secret(uint32_t version, const uint8_t *dcid, size_t dcid_len, int server,
			uint8_t secret[32])
{
	EVP_MD_CTX *c;
	int rc;

	if (!algs_ready() || !(c = EVP_MD_CTX_new()))
		return -1;
	rc = initial_secret(c, version, dcid, dcid_len, server, secret);
	EVP_MD_CTX_free(c);
	return rc;
}

int quic_initial_keys(uint32_t version, const uint8_t *dcid, size_t dcid_len, int server,
		      struct quic_keys *out)
{
	EVP_MD_CTX *c;
	int rc;

	if (!algs_ready() || !(c = EVP_MD_CTX_new()))
		return -1;
	rc = initial_keys(c, version, dcid, dcid_len, server, out);
	EVP_MD_CTX_free(c);
	return rc;
}

/* ---- wire format ----------------------------------------------------------------------------- */

size_t quic_varint(const uint8_t *p, size_t len, uint64_t *v)
{
	size_t n, i;
	uint64_t x;

	if (!len)
		return 0;
	n = (size_t)1 << (p[0] >> 6);
	if (n > len)
		return 0;
	x = p[0] & 0x3f;
	for (i = 1; i < n; i++)
		x = x << 8 | p[i];
	*v = x;
	return n;
}

int quic_parse_long(const uint8_t *p, size_t len, struct quic_long *out)
{
	uint64_t tlen, plen;
	size_t off, n;
	unsigned bits;

	/* form bit, then version (the fixed bit may be greased, RFC 9287: not checked) */
	if (len < 7 || !(p[0] & 0x80))
		return -1;
	out->version = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
	bits = (p[0] >> 4) & 3;
	if (out->version == QUIC_VERSION_1)
		out->type = bits;
	else if (out->version == QUIC_VERSION_2)
		out->type = (bits + 3) & 3; /* RFC 9369 3.2: Initial 1, 0-RTT 2, Handshake 3, Retry 0 */
	else
		return -1;
	if (out->type == QUIC_PT_RETRY)
		return -1;

	off = 5;
	out->dcid_len = p[off++];
	if (out->dcid_len > QUIC_CID_MAX || len - off < out->dcid_len + 1)
		return -1;
	out->dcid = p + off;
	off += out->dcid_len;
	n = p[off++]; /* SCID length */
	if (n > QUIC_CID_MAX || len - off < n)
		return -1;
	off += n;
	if (out->type == QUIC_PT_INITIAL) {
		if (!(n = quic_varint(p + off, len - off, &tlen)))
			return -1;
		off += n;
		if (tlen > len - off)
			return -1;
		off += (size_t)tlen;
	}
	if (!(n = quic_varint(p + off, len - off, &plen)))
		return -1;
	off += n;
	if (plen > len - off)
		return -1;
	out->pn_off = off;
	out->len = off + (size_t)plen;
	return 0;
}

/* ---- packet protection ----------------------------------------------------------------------- */

int quic_open(const struct quic_keys *k, const uint8_t *pkt, const struct quic_long *h,
	      uint8_t *buf, size_t cap, const uint8_t **plain, size_t *plain_len, uint64_t *pn)
{
	uint8_t mask[32], nonce[12];
	size_t pn_len, hdr_len, ct_len, i;
	EVP_CIPHER_CTX *c;
	uint64_t num = 0;
	int n, ok = 0;

	/* the sample starts 4 bytes after the packet number's start, whatever its length */
	if (h->len < h->pn_off + 4 + SAMPLE_LEN || h->len > cap || !algs_ready())
		return -1;
	if (!(c = EVP_CIPHER_CTX_new()))
		return -1;
	if (!EVP_EncryptInit_ex2(c, alg_ecb, k->hp, NULL, NULL) ||
	    !EVP_CIPHER_CTX_set_padding(c, 0) ||
	    !EVP_EncryptUpdate(c, mask, &n, pkt + h->pn_off + 4, SAMPLE_LEN) || n != SAMPLE_LEN)
		goto out;

	/* the unprotected header is the AEAD's associated data: rebuild it in buf */
	pn_len = (size_t)((pkt[0] ^ mask[0]) & 0x03) + 1;
	hdr_len = h->pn_off + pn_len;
	if (h->len < hdr_len + TAG_LEN)
		goto out;
	memcpy(buf, pkt, hdr_len);
	buf[0] ^= mask[0] & 0x0f;
	for (i = 0; i < pn_len; i++) {
		buf[h->pn_off + i] ^= mask[1 + i];
		num = num << 8 | buf[h->pn_off + i];
	}
	/* The full packet number: no packet was acknowledged yet, so the expected one is 0 and
	 * RFC 9000 A.3 gives the truncated value unchanged. */
	memcpy(nonce, k->iv, sizeof(nonce));
	for (i = 0; i < 8; i++)
		nonce[sizeof(nonce) - 1 - i] ^= (uint8_t)(num >> (8 * i));

	ct_len = h->len - hdr_len - TAG_LEN;
	if (!EVP_DecryptInit_ex2(c, alg_gcm, k->key, nonce, NULL) ||
	    !EVP_DecryptUpdate(c, NULL, &n, buf, (int)hdr_len) ||
	    !EVP_DecryptUpdate(c, buf + hdr_len, &n, pkt + hdr_len, (int)ct_len) ||
	    (size_t)n != ct_len ||
	    !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
				 (void *)(pkt + hdr_len + ct_len)) ||
	    EVP_DecryptFinal_ex(c, buf + hdr_len + n, &n) <= 0)
		goto out;
	*plain = buf + hdr_len;
	*plain_len = ct_len;
	*pn = num;
	ok = 1;
out:
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

/* ---- CRYPTO stream ---------------------------------------------------------------------------- */

void quic_stream_init(struct quic_stream *s)
{
	s->contig = 0;
	memset(s->have, 0, sizeof(s->have));
}

static inline int have_bit(const struct quic_stream *s, size_t i)
{
	return s->have[i >> 3] >> (i & 7) & 1;
}

int quic_stream_add(struct quic_stream *s, uint64_t off, const uint8_t *data, size_t len)
{
	size_t i, end;

	if (off >= QUIC_CRYPTO_MAX)
		return 0;
	end = len < QUIC_CRYPTO_MAX - off ? (size_t)off + len : QUIC_CRYPTO_MAX;
	for (i = (size_t)off; i < end; i++) {
		uint8_t b = data[i - off];

		/* the usual case, 8 new bytes at an aligned offset: no per-byte bookkeeping */
		if (!(i & 7) && end - i >= 8 && !s->have[i >> 3]) {
			memcpy(s->data + i, data + (i - off), 8);
			s->have[i >> 3] = 0xff;
			i += 7;
			continue;
		}

		if (have_bit(s, i)) {
			/* RFC 9000 2.2: data at an offset must not change on resend */
			if (s->data[i] != b)
				return -1;
			continue;
		}
		s->data[i] = b;
		s->have[i >> 3] |= (uint8_t)(1u << (i & 7));
	}
	while (s->contig < QUIC_CRYPTO_MAX) {
		if (!(s->contig & 7) && s->have[s->contig >> 3] == 0xff)
			s->contig += 8;
		else if (have_bit(s, s->contig))
			s->contig++;
		else
			break;
	}
	return 0;
}

/* ---- frames ------------------------------------------------------------------------------------ */

#define FRAME_PADDING	   0x00
#define FRAME_PING	   0x01
#define FRAME_ACK	   0x02
#define FRAME_ACK_ECN	   0x03
#define FRAME_CRYPTO	   0x06
#define FRAME_CONN_CLOSE   0x1c /* the transport variant; 0x1d is not allowed in Initials */
#define VARINT_MAX	   ((UINT64_C(1) << 62) - 1)

/* Skip `count` varints; 0, or -1 when they run past the end. */
static int skip_varints(const uint8_t *p, size_t len, size_t *off, unsigned count)
{
	uint64_t v;
	size_t n;

	while (count--) {
		if (!(n = quic_varint(p + *off, len - *off, &v)))
			return -1;
		*off += n;
	}
	return 0;
}

int quic_frames(const uint8_t *p, size_t len, struct quic_stream *s)
{
	uint64_t type, a, b;
	size_t off = 0, n;

	if (!len)
		return -1; /* RFC 9000 12.4: a packet holds at least one frame */
	while (off < len) {
		if (!(n = quic_varint(p + off, len - off, &type)))
			return -1;
		off += n;
		switch (type) {
		case FRAME_PADDING:
			/* usually most of the packet: skip zeros a word at a time */
			while (len - off >= 8) {
				uint64_t w8;

				memcpy(&w8, p + off, 8);
				if (w8)
					break;
				off += 8;
			}
			while (off < len && !p[off])
				off++;
			break;
		case FRAME_PING:
			break;
		case FRAME_ACK:
		case FRAME_ACK_ECN:
			/* largest, delay, range count, first range; then count (gap, length) pairs;
			 * ECN counts. The count is bounded by the bytes left: each pair takes >= 2. */
			if (skip_varints(p, len, &off, 2) ||
			    !(n = quic_varint(p + off, len - off, &a)))
				return -1;
			off += n;
			if (skip_varints(p, len, &off, 1) || a > (len - off) / 2 ||
			    skip_varints(p, len, &off, (unsigned)a * 2))
				return -1;
			if (type == FRAME_ACK_ECN && skip_varints(p, len, &off, 3))
				return -1;
			break;
		case FRAME_CRYPTO:
			if (!(n = quic_varint(p + off, len - off, &a)))
				return -1;
			off += n;
			if (!(n = quic_varint(p + off, len - off, &b)))
				return -1;
			off += n;
			if (b > len - off || a + b > VARINT_MAX)
				return -1;
			if (quic_stream_add(s, a, p + off, (size_t)b))
				return -1;
			off += (size_t)b;
			break;
		case FRAME_CONN_CLOSE:
			/* error code, frame type, reason length, reason */
			if (skip_varints(p, len, &off, 2) ||
			    !(n = quic_varint(p + off, len - off, &a)))
				return -1;
			off += n;
			if (a > len - off)
				return -1;
			off += (size_t)a;
			break;
		default:
			return -1; /* RFC 9000 12.4, table 3: not allowed in an Initial */
		}
	}
	return 0;
}

/* ---- datagrams ---------------------------------------------------------------------------------- */

/* Open one client Initial: with the flow's keys first (RFC 9001 5.2: they come from the first
 * Initial's DCID, even once the client has switched to the server's connection ID), then with
 * keys from this packet's own DCID (the first Initial of the flow, or one after a Retry). */
static int open_initial(struct quic_work *w, EVP_MD_CTX *md, const uint8_t *pkt,
			const struct quic_long *h, const uint8_t **plain, size_t *plain_len)
{
	struct quic_keys k;
	uint64_t pn;

	if (w->have_first && w->first_version == h->version &&
	    !quic_open(&w->first_keys, pkt, h, w->buf, sizeof(w->buf), plain, plain_len, &pn))
		return 0;
	if (w->have_first && w->first_version == h->version && w->first_dcid_len == h->dcid_len &&
	    !memcmp(w->first_dcid, h->dcid, h->dcid_len))
		return -1; /* the same keys again would fail again */
	if (initial_keys(md, h->version, h->dcid, h->dcid_len, 0, &k) ||
	    quic_open(&k, pkt, h, w->buf, sizeof(w->buf), plain, plain_len, &pn))
		return -1;
	if (!w->have_first) {
		w->have_first = 1;
		w->first_version = h->version;
		w->first_dcid_len = h->dcid_len;
		memcpy(w->first_dcid, h->dcid, h->dcid_len);
		w->first_keys = k;
	}
	return 0;
}

enum quic_dg_status quic_datagram(struct quic_work *w, const uint8_t *dg, size_t len)
{
	enum quic_dg_status st = QUIC_DG_FOREIGN;
	const uint8_t *plain;
	struct quic_long h;
	size_t off = 0, plain_len;
	EVP_MD_CTX *md;

	if (!algs_ready() || !(md = EVP_MD_CTX_new()))
		return QUIC_DG_FOREIGN;
	/* Coalesced packets (RFC 9000 12.2) follow each other; a short header, a Retry or
	 * trailing bytes that do not parse end the walk. */
	while (off < len && !quic_parse_long(dg + off, len - off, &h)) {
		if (h.type == QUIC_PT_INITIAL) {
			if (open_initial(w, md, dg + off, &h, &plain, &plain_len))
				break; /* a server's Initial, or not ours to read */
			if (quic_frames(plain, plain_len, &w->stream)) {
				st = QUIC_DG_INVALID;
				break;
			}
			st = QUIC_DG_INITIAL;
		}
		off += h.len;
	}
	EVP_MD_CTX_free(md);
	return st;
}
