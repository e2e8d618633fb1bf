/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ss2022 - shadowsocks 2022 edition (SIP022) pieces. See ss2022.h for the wire formats.
 *
 * Written from SIP022 (shadowsocks-org) and draft-irtf-cfrg-xchacha-03 with OpenSSL's EVP
 * interface and the BLAKE3 of blake3.c. As in ss_aead.c, nothing of a packet leaves before its
 * tag verified, and a header that authenticated but fails its checks releases nothing either.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "blake3.h"
#include "ss2022.h"

static uint64_t now_or(uint64_t fixed)
{
	return fixed ? fixed : (uint64_t)time(NULL);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int skew_ok(uint64_t ts, uint64_t now)
{
	return (ts > now ? ts - now : now - ts) <= SS2022_MAX_SKEW;
}

int ss2022_subkey(const uint8_t *psk, const uint8_t *salt, size_t key_len, uint8_t *out)
{
	uint8_t material[2 * SS_KEY_MAX];

	if (key_len > SS_KEY_MAX)
		return -EINVAL;
	memcpy(material, psk, key_len);
	memcpy(material + key_len, salt, key_len);
	b3_derive_key(SS2022_SUBKEY_CONTEXT, material, 2 * key_len, out, key_len);
	OPENSSL_cleanse(material, sizeof(material));
	return 0;
}

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

ssize_t ss2022_psk_decode(const char *b64, uint8_t *out, size_t cap)
{
	size_t n = strlen(b64), pad = 0, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	while (n && b64[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	/* with padding the whole must be a multiple of 4; a lone leftover character carries
	 * fewer than 8 bits and is never valid */
	if (!n || (pad && (n + pad) % 4) || n % 4 == 1)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		int v = b64_val(b64[i]);

		if (v < 0)
			goto bad;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap) {
				OPENSSL_cleanse(out, cap);
				return -EMSGSIZE;
			}
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* the leftover bits must be zero (one canonical spelling per key) */
	if (acc & ((1u << bits) - 1))
		goto bad;
	return (ssize_t)o;
bad:
	OPENSSL_cleanse(out, cap);
	return -EINVAL;
}

ssize_t ss2022_request(struct ss_aead *enc, const uint8_t *salt, size_t salt_len,
		       const uint8_t *addr, size_t alen, const uint8_t *payload, size_t plen,
		       size_t padlen, uint64_t ts, uint8_t *out)
{
	uint8_t fixed[SS2022_REQ_FIXED_LEN], *p, *var;
	size_t vlen = alen + 2 + padlen + plen;
	int rc;

	if ((!plen && !padlen) || padlen > SS2022_MAX_PADDING || vlen > SS2022_MAX_PAYLOAD ||
	    !alen)
		return -EINVAL;
	memcpy(out, salt, salt_len);
	p = out + salt_len;
	fixed[0] = SS2022_TYPE_CLIENT;
	put_be64(fixed + 1, ts);
	fixed[9] = (uint8_t)(vlen >> 8);
	fixed[10] = (uint8_t)vlen;
	rc = ss_aead_seal(enc, fixed, sizeof(fixed), p);
	if (rc)
		return rc;
	var = p + sizeof(fixed) + SS_TAG_LEN;
	/* payload first: it may not overlap out, but keep the copy order obvious */
	memmove(var + alen + 2 + padlen, payload, plen);
	memcpy(var, addr, alen);
	var[alen] = (uint8_t)(padlen >> 8);
	var[alen + 1] = (uint8_t)padlen;
	memset(var + alen + 2, 0, padlen);
	rc = ss_aead_seal(enc, var, vlen, var);
	if (rc)
		return rc;
	return (ssize_t)(salt_len + sizeof(fixed) + SS_TAG_LEN + vlen + SS_TAG_LEN);
}

/* ------------------------------------------------------------------------------------------ */
/* the replay window                                                                            */

int ss2022_window_check(const struct ss2022_window *w, uint64_t pid)
{
	if (pid == UINT64_MAX)
		return -EALREADY; /* top would wrap; no honest sender gets there */
	if (pid >= w->top)
		return 0;
	if (w->top - pid > SS2022_WINDOW)
		return -EALREADY;
	return (w->bits[(pid / 64) % (SS2022_WINDOW / 64)] >> (pid % 64)) & 1 ? -EALREADY : 0;
}

void ss2022_window_commit(struct ss2022_window *w, uint64_t pid)
{
	if (pid == UINT64_MAX)
		return;
	if (pid >= w->top) {
		/* slide: the bits of ids top .. pid (reused ring slots) start clear */
		if (pid - w->top >= SS2022_WINDOW) {
			memset(w->bits, 0, sizeof(w->bits));
		} else {
			for (uint64_t i = w->top; i <= pid; i++)
				w->bits[(i / 64) % (SS2022_WINDOW / 64)] &= ~(1ull << (i % 64));
		}
		w->top = pid + 1;
	}
	w->bits[(pid / 64) % (SS2022_WINDOW / 64)] |= 1ull << (pid % 64);
}

/* ------------------------------------------------------------------------------------------ */
/* XChaCha20-Poly1305                                                                           */

static uint32_t rotl(uint32_t v, int n)
{
	return v << n | v >> (32 - n);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define QR(a, b, c, d)                                                                     \
	do {                                                                               \
		a += b; d ^= a; d = rotl(d, 16);                                           \
		c += d; b ^= c; b = rotl(b, 12);                                           \
		a += b; d ^= a; d = rotl(d, 8);                                            \
		c += d; b ^= c; b = rotl(b, 7);                                            \
	} while (0)

void ss2022_hchacha20(const uint8_t key[32], const uint8_t in[16], uint8_t out[32])
{
	/* the ChaCha20 state with the 16 nonce bytes where counter and nonce go, 20 rounds, no
	 * final addition; words 0-3 and 12-15 are the subkey (draft-irtf-cfrg-xchacha 2.2) */
	uint32_t x[16] = { 0x61707865, 0x3320646e, 0x79622d32, 0x6b206574 };

	for (int i = 0; i < 8; i++)
		x[4 + i] = le32(key + 4 * i);
	for (int i = 0; i < 4; i++)
		x[12 + i] = le32(in + 4 * i);
	for (int r = 0; r < 10; r++) {
		QR(x[0], x[4], x[8], x[12]);
		QR(x[1], x[5], x[9], x[13]);
		QR(x[2], x[6], x[10], x[14]);
		QR(x[3], x[7], x[11], x[15]);
		QR(x[0], x[5], x[10], x[15]);
		QR(x[1], x[6], x[11], x[12]);
		QR(x[2], x[7], x[8], x[13]);
		QR(x[3], x[4], x[9], x[14]);
	}
	for (int i = 0; i < 8; i++) {
		uint32_t v = x[i < 4 ? i : i + 8];

		out[4 * i] = (uint8_t)v;
		out[4 * i + 1] = (uint8_t)(v >> 8);
		out[4 * i + 2] = (uint8_t)(v >> 16);
		out[4 * i + 3] = (uint8_t)(v >> 24);
	}
	OPENSSL_cleanse(x, sizeof(x));
}

static EVP_CIPHER *chacha_poly;
static pthread_once_t chacha_once = PTHREAD_ONCE_INIT;

static void chacha_fetch(void)
{
	chacha_poly = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

/* ChaCha20-Poly1305 (RFC 8439) under HChaCha20(key, nonce[0..16]) with the nonce
 * 00000000 || nonce[16..24] */
static int xchacha(int enc, const uint8_t key[32], const uint8_t nonce[24], const uint8_t *aad,
		   size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
	uint8_t sub[32], n12[12] = { 0 };
	EVP_CIPHER_CTX *ctx;
	int n = 0, f, ok;

	pthread_once(&chacha_once, chacha_fetch);
	if (!chacha_poly || len > INT32_MAX || aad_len > INT32_MAX)
		return -EINVAL;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return -ENOMEM;
	ss2022_hchacha20(key, nonce, sub);
	memcpy(n12 + 4, nonce + 16, 8);
	ok = EVP_CipherInit_ex(ctx, chacha_poly, NULL, sub, n12, enc) &&
	     (!aad_len || EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len)) &&
	     EVP_CipherUpdate(ctx, out, &n, in, (int)len);
	OPENSSL_cleanse(sub, sizeof(sub));
	if (ok && enc)
		ok = EVP_CipherFinal_ex(ctx, out + n, &f) &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, SS_TAG_LEN, tag);
	else if (ok) {
		ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, SS_TAG_LEN, tag);
		if (ok && EVP_CipherFinal_ex(ctx, out + n, &f) <= 0) {
			EVP_CIPHER_CTX_free(ctx);
			OPENSSL_cleanse(out, len);
			return -EBADMSG;
		}
	}
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

int ss2022_xchacha_seal(const uint8_t key[32], const uint8_t nonce[24], const uint8_t *aad,
			size_t aad_len, const uint8_t *in, size_t len, uint8_t *out)
{
	return xchacha(1, key, nonce, aad, aad_len, in, len, out, out + len);
}

int ss2022_xchacha_open(const uint8_t key[32], const uint8_t nonce[24], const uint8_t *aad,
			size_t aad_len, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t tag[SS_TAG_LEN];

	if (len < SS_TAG_LEN)
		return -EBADMSG;
	memcpy(tag, in + len - SS_TAG_LEN, SS_TAG_LEN);
	return xchacha(0, key, nonce, aad, aad_len, in, len - SS_TAG_LEN, out, tag);
}

/* ------------------------------------------------------------------------------------------ */
/* UDP                                                                                          */

static int is_chacha(int method)
{
	return method == SS_2022_CHACHA20_POLY1305;
}

static EVP_CIPHER_CTX *ecb_new(int method, const uint8_t *psk, int enc)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	const EVP_CIPHER *c = method == SS_2022_AES_128_GCM ? EVP_aes_128_ecb() : EVP_aes_256_ecb();

	if (!ctx)
		return NULL;
	if (!EVP_CipherInit_ex(ctx, c, NULL, psk, NULL, enc) ||
	    !EVP_CIPHER_CTX_set_padding(ctx, 0)) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int ecb_block(EVP_CIPHER_CTX *ctx, const uint8_t in[16], uint8_t out[16])
{
	int n;

	return EVP_CipherUpdate(ctx, out, &n, in, 16) && n == 16 ? 0 : -EIO;
}

/* the AES methods' per-session AEAD: subkey = derive_key(ctx, PSK || session id) */
static int session_aead(int method, const uint8_t *psk, const uint8_t sid[8], struct ss_aead *a)
{
	const struct ss_method_info *mi = ss_method_info(method);
	uint8_t sub[SS_KEY_MAX], material[SS_KEY_MAX + 8];
	int rc;

	memcpy(material, psk, mi->key_len);
	memcpy(material + mi->key_len, sid, 8);
	b3_derive_key(SS2022_SUBKEY_CONTEXT, material, mi->key_len + 8, sub, mi->key_len);
	rc = ss_aead_init_key(a, method, sub);
	OPENSSL_cleanse(material, sizeof(material));
	OPENSSL_cleanse(sub, sizeof(sub));
	return rc;
}

int ss2022_udp_init(struct ss2022_udp *u, int method, const uint8_t *psk)
{
	const struct ss_method_info *mi = ss_method_info(method);
	int rc;

	memset(u, 0, sizeof(*u));
	if (!mi || !mi->is2022)
		return -EINVAL;
	u->method = method;
	u->psk = psk;
	if (RAND_bytes(u->csid, sizeof(u->csid)) != 1)
		return -EIO;
	if (is_chacha(method))
		return 0;
	u->ecb_enc = ecb_new(method, psk, 1);
	u->ecb_dec = ecb_new(method, psk, 0);
	if (!u->ecb_enc || !u->ecb_dec) {
		ss2022_udp_free(u);
		return -EIO;
	}
	rc = session_aead(method, psk, u->csid, &u->send);
	if (rc)
		ss2022_udp_free(u);
	return rc;
}

void ss2022_udp_free(struct ss2022_udp *u)
{
	if (u->ecb_enc)
		EVP_CIPHER_CTX_free(u->ecb_enc);
	if (u->ecb_dec)
		EVP_CIPHER_CTX_free(u->ecb_dec);
	u->ecb_enc = u->ecb_dec = NULL;
	ss_aead_free(&u->send);
	for (int i = 0; i < SS2022_UDP_SERVER_SESSIONS; i++)
		ss_aead_free(&u->srv[i].aead);
	OPENSSL_cleanse(u->csid, sizeof(u->csid));
}

/*
 * Seal one packet: ids (sid, pid) and body (already in place at out + the ids' offset for
 * the method, blen bytes). AES: out = ECB(sid | pid) | AEAD(body) with nonce ids[4..16];
 * chacha: out = nonce | XChaCha(ids | body). Returns the packet length.
 */
static ssize_t udp_pack(int method, const uint8_t *psk, EVP_CIPHER_CTX *ecb, struct ss_aead *a,
			const uint8_t sid[8], uint64_t pid, uint8_t *out, size_t blen)
{
	uint8_t ids[16];
	int rc;

	memcpy(ids, sid, 8);
	put_be64(ids + 8, pid);
	if (is_chacha(method)) {
		if (RAND_bytes(out, 24) != 1)
			return -EIO;
		memcpy(out + 24, ids, 16);
		rc = ss2022_xchacha_seal(psk, out, NULL, 0, out + 24, 16 + blen, out + 24);
		return rc ? rc : (ssize_t)(24 + 16 + blen + SS_TAG_LEN);
	}
	memcpy(a->nonce, ids + 4, SS_NONCE_LEN);
	rc = ss_aead_seal(a, out + 16, blen, out + 16);
	if (!rc)
		rc = ecb_block(ecb, ids, out);
	return rc ? rc : (ssize_t)(16 + blen + SS_TAG_LEN);
}

static size_t body_off(int method)
{
	return is_chacha(method) ? 24 + 16 : 16;
}

ssize_t ss2022_udp_seal(struct ss2022_udp *u, const uint8_t *addr, size_t alen,
			const uint8_t *payload, size_t len, uint8_t *out)
{
	uint8_t *b = out + body_off(u->method);

	if (u->cpid == UINT64_MAX)
		return -EOVERFLOW;
	memmove(b + 11 + alen, payload, len);
	b[0] = SS2022_TYPE_CLIENT;
	put_be64(b + 1, now_or(u->now));
	b[9] = b[10] = 0; /* no padding */
	memcpy(b + 11, addr, alen);
	return udp_pack(u->method, u->psk, u->ecb_enc, &u->send, u->csid, u->cpid++, out,
			11 + alen + len);
}

ssize_t ss2022_udp_seal_server(int method, const uint8_t *psk, const uint8_t ssid[8],
			       uint64_t spid, uint8_t type, uint64_t ts, const uint8_t csid[8],
			       size_t padlen, const uint8_t *addr, size_t alen,
			       const uint8_t *payload, size_t len, uint8_t *out)
{
	const struct ss_method_info *mi = ss_method_info(method);
	uint8_t *b = out + body_off(method);
	EVP_CIPHER_CTX *ecb = NULL;
	struct ss_aead a = { 0 };
	ssize_t rc;

	if (!mi || !mi->is2022 || padlen > 0xFFFF)
		return -EINVAL;
	memmove(b + 19 + padlen + alen, payload, len);
	b[0] = type;
	put_be64(b + 1, ts);
	memcpy(b + 9, csid, 8);
	b[17] = (uint8_t)(padlen >> 8);
	b[18] = (uint8_t)padlen;
	memset(b + 19, 0, padlen);
	memcpy(b + 19 + padlen, addr, alen);
	if (!is_chacha(method)) {
		ecb = ecb_new(method, psk, 1);
		rc = ecb ? session_aead(method, psk, ssid, &a) : -EIO;
		if (rc)
			goto out;
	}
	rc = udp_pack(method, psk, ecb, &a, ssid, spid, out, 19 + padlen + alen + len);
out:
	if (ecb)
		EVP_CIPHER_CTX_free(ecb);
	ss_aead_free(&a);
	return rc;
}

/* the body's checks once it authenticated: type | timestamp | csid | padding length | pad */
static ssize_t check_server_body(struct ss2022_udp *u, uint8_t *b, size_t blen, uint8_t **plain)
{
	size_t pad;

	if (blen < 19)
		return -EBADMSG;
	if (b[0] != SS2022_TYPE_SERVER)
		return SS_E_TYPE;
	if (!skew_ok(get_be64(b + 1), now_or(u->now)))
		return SS_E_TIME;
	if (CRYPTO_memcmp(b + 9, u->csid, 8))
		return SS_E_SALT;
	pad = (size_t)b[17] << 8 | b[18];
	if (pad > blen - 19)
		return -EMSGSIZE;
	*plain = b + 19 + pad;
	return (ssize_t)(blen - 19 - pad);
}

/* the slot of server session ssid, or -1 */
static int slot_find(const struct ss2022_udp *u, const uint8_t ssid[8])
{
	for (int i = 0; i < SS2022_UDP_SERVER_SESSIONS; i++)
		if (u->srv[i].used && !memcmp(u->srv[i].ssid, ssid, 8))
			return i;
	return -1;
}

/* a slot for a new server session: a free one, else the one that authenticated least
 * recently */
static int slot_victim(const struct ss2022_udp *u)
{
	int v = 0;

	for (int i = 0; i < SS2022_UDP_SERVER_SESSIONS; i++) {
		if (!u->srv[i].used)
			return i;
		if (u->srv[i].last < u->srv[v].last)
			v = i;
	}
	return v;
}

ssize_t ss2022_udp_open(struct ss2022_udp *u, uint8_t *pkt, size_t len, uint8_t **plain)
{
	uint8_t ids[16], *b;
	struct ss_aead fresh = { 0 }, *a;
	uint64_t pid;
	ssize_t rc;
	size_t blen;
	int s;

	if (is_chacha(u->method)) {
		if (len < 24 + 16 + SS_TAG_LEN)
			return -EBADMSG;
		rc = ss2022_xchacha_open(u->psk, pkt, NULL, 0, pkt + 24, len - 24, pkt + 24);
		if (rc)
			return rc;
		memcpy(ids, pkt + 24, 16);
		b = pkt + 40;
		blen = len - 40 - SS_TAG_LEN;
		s = slot_find(u, ids);
		pid = get_be64(ids + 8);
		if (s >= 0 && ss2022_window_check(&u->srv[s].win, pid))
			return -EALREADY;
	} else {
		if (len < 16 + SS_TAG_LEN)
			return -EBADMSG;
		rc = ecb_block(u->ecb_dec, pkt, ids);
		if (rc)
			return rc;
		pid = get_be64(ids + 8);
		s = slot_find(u, ids);
		/* a replay costs no AEAD: the window is checked before the tag */
		if (s >= 0 && ss2022_window_check(&u->srv[s].win, pid))
			return -EALREADY;
		if (s >= 0) {
			a = &u->srv[s].aead;
		} else {
			rc = session_aead(u->method, u->psk, ids, &fresh);
			if (rc)
				return rc;
			a = &fresh;
		}
		memcpy(a->nonce, ids + 4, SS_NONCE_LEN);
		rc = ss_aead_open(a, pkt + 16, len - 16, pkt + 16);
		if (rc) {
			ss_aead_free(&fresh);
			return rc;
		}
		b = pkt + 16;
		blen = len - 16 - SS_TAG_LEN;
	}
	if (s < 0 && ss2022_window_check(&(struct ss2022_window){ 0 }, pid)) {
		ss_aead_free(&fresh);
		return -EALREADY;
	}
	rc = check_server_body(u, b, blen, plain);
	if (rc < 0) {
		ss_aead_free(&fresh);
		OPENSSL_cleanse(b, blen);
		return rc;
	}
	if (s < 0) {
		/* an authenticated new server session takes a slot (never before: garbage
		 * must not evict a live session's key and window) */
		s = slot_victim(u);
		ss_aead_free(&u->srv[s].aead);
		memset(&u->srv[s], 0, sizeof(u->srv[s]));
		u->srv[s].used = 1;
		memcpy(u->srv[s].ssid, ids, 8);
		u->srv[s].aead = fresh;
	}
	ss2022_window_commit(&u->srv[s].win, pid);
	u->srv[s].last = ++u->uses;
	return rc;
}
