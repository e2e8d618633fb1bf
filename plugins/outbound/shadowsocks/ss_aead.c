/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ss_aead - the shadowsocks AEAD codec. See ss_aead.h for the wire format.
 *
 * Written from the specifications (SIP004, SIP007) with OpenSSL's EVP interface. The one
 * invariant that matters for safety: a chunk's plaintext leaves ss_reader_feed() only after
 * its tag verified, and the length block is authenticated before any payload byte is awaited,
 * so a tampered length can neither release data nor make the reader wait for 16 KiB of junk
 * beyond the 0x3FFF cap.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ss2022.h"
#include "ss_aead.h"

static const struct ss_method_info methods[SS_METHOD_COUNT] = {
	[SS_AES_128_GCM] = { "aes-128-gcm", 16, 16, 0, SS_MAX_PAYLOAD },
	[SS_AES_256_GCM] = { "aes-256-gcm", 32, 32, 0, SS_MAX_PAYLOAD },
	[SS_CHACHA20_POLY1305] = { "chacha20-ietf-poly1305", 32, 32, 0, SS_MAX_PAYLOAD },
	/* SIP022 2.1: key and salt lengths; 3.1.2: payload chunks up to 0xFFFF */
	[SS_2022_AES_128_GCM] = { "2022-blake3-aes-128-gcm", 16, 16, 1, SS2022_MAX_PAYLOAD },
	[SS_2022_AES_256_GCM] = { "2022-blake3-aes-256-gcm", 32, 32, 1, SS2022_MAX_PAYLOAD },
	[SS_2022_CHACHA20_POLY1305] = { "2022-blake3-chacha20-poly1305", 32, 32, 1,
					SS2022_MAX_PAYLOAD },
};

const struct ss_method_info *ss_method_info(int method)
{
	if (method < 0 || method >= SS_METHOD_COUNT)
		return NULL;
	return &methods[method];
}

/*
 * Algorithms are fetched once. OpenSSL 3 looks an algorithm up in its provider tables on every
 * EVP_aes_128_gcm()-style use and every HMAC() one-shot; per connection (two subkeys, two
 * cipher contexts) that lookup cost more than the cryptography itself.
 */
static EVP_CIPHER *ciphers[SS_METHOD_COUNT];
static EVP_MD *md_sha1;
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;

static void algs_fetch(void)
{
	ciphers[SS_AES_128_GCM] = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
	ciphers[SS_AES_256_GCM] = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	ciphers[SS_CHACHA20_POLY1305] = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
	/* the 2022 methods use the same AEADs (fetched once, like the others never freed) */
	ciphers[SS_2022_AES_128_GCM] = ciphers[SS_AES_128_GCM];
	ciphers[SS_2022_AES_256_GCM] = ciphers[SS_AES_256_GCM];
	ciphers[SS_2022_CHACHA20_POLY1305] = ciphers[SS_CHACHA20_POLY1305];
	md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
}

static const EVP_CIPHER *method_cipher(int method)
{
	pthread_once(&algs_once, algs_fetch);
	if (method < 0 || method >= SS_METHOD_COUNT)
		return NULL;
	return ciphers[method];
}

/* HMAC-SHA1(key, a || b || c) with the fetched digest (RFC 2104; key <= 64 bytes). */
static int hmac_sha1(const uint8_t *key, size_t klen, const uint8_t *a, size_t alen,
		     const uint8_t *b, size_t blen, const uint8_t *c, size_t clen, uint8_t out[20])
{
	uint8_t pad[64], inner[20];
	EVP_MD_CTX *ctx;
	int ok;

	pthread_once(&algs_once, algs_fetch);
	if (!md_sha1 || klen > sizeof(pad))
		return -EIO;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	memset(pad, 0x36, sizeof(pad));
	for (size_t i = 0; i < klen; i++)
		pad[i] ^= key[i];
	ok = EVP_DigestInit_ex2(ctx, md_sha1, NULL) && EVP_DigestUpdate(ctx, pad, sizeof(pad)) &&
	     EVP_DigestUpdate(ctx, a, alen) && EVP_DigestUpdate(ctx, b, blen) &&
	     EVP_DigestUpdate(ctx, c, clen) && EVP_DigestFinal_ex(ctx, inner, NULL);
	for (size_t i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36 ^ 0x5c;
	ok = ok && EVP_DigestInit_ex2(ctx, md_sha1, NULL) &&
	     EVP_DigestUpdate(ctx, pad, sizeof(pad)) && EVP_DigestUpdate(ctx, inner, 20) &&
	     EVP_DigestFinal_ex(ctx, out, NULL);
	EVP_MD_CTX_free(ctx);
	OPENSSL_cleanse(pad, sizeof(pad));
	OPENSSL_cleanse(inner, sizeof(inner));
	return ok ? 0 : -EIO;
}

/*
 * Salts come from a per-thread pool filled by one RAND_bytes() call: OpenSSL's DRBG costs a
 * lock, a getpid() (its fork check) and a generate per call, which per connection showed in
 * the profile next to the cryptography itself. A salt is public (it leads the stream), so
 * handing out bytes drawn a little earlier reveals nothing; each byte is handed out once.
 */
#define SALT_POOL 1024
static __thread uint8_t salt_pool[SALT_POOL];
static __thread size_t salt_left;

int ss_salt(uint8_t *salt, size_t len)
{
	if (len > SALT_POOL)
		return -EINVAL;
	if (salt_left < len) {
		if (RAND_bytes(salt_pool, SALT_POOL) != 1) {
			salt_left = 0;
			return -EIO;
		}
		salt_left = SALT_POOL;
	}
	memcpy(salt, salt_pool + SALT_POOL - salt_left, len);
	salt_left -= len;
	return 0;
}

int ss_password_key(const char *password, uint8_t *key, size_t key_len)
{
	uint8_t prev[16], buf[16 + 1024];
	size_t plen = strlen(password), done = 0, blen = 0;
	unsigned int mdlen;

	if (plen > 1024 || key_len > SS_KEY_MAX)
		return -EINVAL;
	/* D_i = MD5(D_{i-1} || password), key = D_1 || D_2 ... (OpenSSL's EVP_BytesToKey with
	 * MD5, one round, no salt: what every shadowsocks implementation derives) */
	while (done < key_len) {
		size_t n;

		memcpy(buf + blen, password, plen);
		if (!EVP_Digest(buf, blen + plen, prev, &mdlen, EVP_md5(), NULL) || mdlen != 16)
			return -EIO;
		n = key_len - done < 16 ? key_len - done : 16;
		memcpy(key + done, prev, n);
		done += n;
		memcpy(buf, prev, 16);
		blen = 16;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	OPENSSL_cleanse(prev, sizeof(prev));
	return 0;
}

int ss_subkey(const uint8_t *key, size_t key_len, const uint8_t *salt, size_t salt_len,
	      uint8_t *out, size_t out_len)
{
	static const char info[] = "ss-subkey";
	uint8_t prk[20], t[20];
	size_t done = 0, tlen = 0;
	uint8_t i = 1;
	int rc;

	if (out_len > 255 * 20)
		return -EINVAL;
	/* RFC 5869: PRK = HMAC(salt, IKM); T(i) = HMAC(PRK, T(i-1) || info || i) */
	rc = hmac_sha1(salt, salt_len, key, key_len, NULL, 0, NULL, 0, prk);
	while (!rc && done < out_len) {
		size_t n;

		rc = hmac_sha1(prk, sizeof(prk), t, tlen, (const uint8_t *)info, sizeof(info) - 1,
			       &i, 1, t);
		i++;
		tlen = 20;
		n = out_len - done < 20 ? out_len - done : 20;
		memcpy(out + done, t, n);
		done += n;
	}
	OPENSSL_cleanse(prk, sizeof(prk));
	OPENSSL_cleanse(t, sizeof(t));
	return rc;
}

int ss_aead_init(struct ss_aead *a, int method, const uint8_t *master, const uint8_t *salt)
{
	const struct ss_method_info *mi = ss_method_info(method);
	uint8_t subkey[SS_KEY_MAX];
	int rc;

	memset(a, 0, sizeof(*a));
	if (!mi)
		return -EINVAL;
	if (mi->is2022)
		rc = ss2022_subkey(master, salt, mi->key_len, subkey);
	else
		rc = ss_subkey(master, mi->key_len, salt, mi->salt_len, subkey, mi->key_len);
	if (rc)
		return rc;
	rc = ss_aead_init_key(a, method, subkey);
	OPENSSL_cleanse(subkey, sizeof(subkey));
	return rc;
}

int ss_aead_init_key(struct ss_aead *a, int method, const uint8_t *subkey)
{
	EVP_CIPHER_CTX *ctx;

	memset(a, 0, sizeof(*a));
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return -ENOMEM;
	/* the key schedule once; each seal/open only sets the nonce */
	if (!method_cipher(method) ||
	    !EVP_CipherInit_ex(ctx, method_cipher(method), NULL, subkey, NULL, 1)) {
		EVP_CIPHER_CTX_free(ctx);
		return -EIO;
	}
	a->ctx = ctx;
	a->method = method;
	return 0;
}

void ss_aead_free(struct ss_aead *a)
{
	if (a->ctx)
		EVP_CIPHER_CTX_free(a->ctx);
	a->ctx = NULL;
}

static void nonce_inc(uint8_t *n)
{
	for (int i = 0; i < SS_NONCE_LEN; i++)
		if (++n[i])
			break;
}

int ss_aead_seal(struct ss_aead *a, const uint8_t *in, size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = a->ctx;
	int n, f;

	if (!ctx || len > INT32_MAX)
		return -EINVAL;
	if (!EVP_CipherInit_ex(ctx, NULL, NULL, NULL, a->nonce, 1) ||
	    !EVP_CipherUpdate(ctx, out, &n, in, (int)len) ||
	    !EVP_CipherFinal_ex(ctx, out + n, &f) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, SS_TAG_LEN, out + len))
		return -EIO;
	nonce_inc(a->nonce);
	return 0;
}

int ss_aead_open(struct ss_aead *a, const uint8_t *in, size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = a->ctx;
	uint8_t tag[SS_TAG_LEN];
	size_t clen;
	int n = 0, f, ok;

	if (!ctx || len < SS_TAG_LEN || len > INT32_MAX)
		return -EINVAL;
	clen = len - SS_TAG_LEN;
	memcpy(tag, in + clen, SS_TAG_LEN); /* in and out may overlap */
	ok = EVP_CipherInit_ex(ctx, NULL, NULL, NULL, a->nonce, 0) &&
	     EVP_CipherUpdate(ctx, out, &n, in, (int)clen) &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, SS_TAG_LEN, tag);
	nonce_inc(a->nonce);
	if (!ok)
		return -EIO;
	if (EVP_CipherFinal_ex(ctx, out + n, &f) <= 0) {
		/* unauthenticated: the caller never sees it */
		OPENSSL_cleanse(out, clen);
		return -EBADMSG;
	}
	return 0;
}

ssize_t ss_seal_chunk(struct ss_aead *a, const uint8_t *in, size_t n, uint8_t *out)
{
	const struct ss_method_info *mi = ss_method_info(a->method);
	uint8_t len[2];
	int rc;

	if (!mi || !n || n > mi->max_payload)
		return -EINVAL;
	len[0] = (uint8_t)(n >> 8);
	len[1] = (uint8_t)n;
	rc = ss_aead_seal(a, len, 2, out);
	if (!rc)
		rc = ss_aead_seal(a, in, n, out + SS_LEN_CHUNK);
	return rc ? rc : (ssize_t)(SS_LEN_CHUNK + n + SS_TAG_LEN);
}

void ss_reader_init(struct ss_reader *r, int method, const uint8_t *master)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->master = master;
	r->state = SS_RD_SALT;
}

void ss_reader_set_request_salt(struct ss_reader *r, const uint8_t *salt)
{
	const struct ss_method_info *mi = ss_method_info(r->method);

	if (mi)
		memcpy(r->req_salt, salt, mi->salt_len);
}

/* SIP022 3.1.3: type 1 | timestamp u64be | request salt | length u16be, already opened */
static ssize_t check_response_header(struct ss_reader *r, const struct ss_method_info *mi,
				     const uint8_t *h)
{
	uint64_t ts = 0, now = r->now ? r->now : (uint64_t)time(NULL);

	if (h[0] != SS2022_TYPE_SERVER)
		return SS_E_TYPE;
	for (int i = 0; i < 8; i++)
		ts = ts << 8 | h[1 + i];
	if ((ts > now ? ts - now : now - ts) > SS2022_MAX_SKEW)
		return SS_E_TIME;
	if (CRYPTO_memcmp(h + 9, r->req_salt, mi->salt_len))
		return SS_E_SALT;
	r->plen = (size_t)h[9 + mi->salt_len] << 8 | h[10 + mi->salt_len];
	return 0;
}

void ss_reader_free(struct ss_reader *r)
{
	ss_aead_free(&r->aead);
}

size_t ss_reader_want(const struct ss_reader *r)
{
	return r->state == SS_RD_PAYLOAD ? r->plen : 0;
}

int ss_reader_at_boundary(const struct ss_reader *r)
{
	return r->state == SS_RD_LEN;
}

ssize_t ss_reader_feed(struct ss_reader *r, const uint8_t *in, size_t len, size_t *used,
		       uint8_t *out, size_t out_cap)
{
	const struct ss_method_info *mi = ss_method_info(r->method);
	uint8_t lb[2], hdr[SS2022_RESP_HDR_MAX];
	size_t hlen;
	int rc;

	*used = 0;
	if (!mi)
		return -EINVAL;
	switch (r->state) {
	case SS_RD_SALT:
		if (len < mi->salt_len)
			return -EAGAIN;
		rc = ss_aead_init(&r->aead, r->method, r->master, in);
		if (rc)
			return rc;
		*used = mi->salt_len;
		r->state = mi->is2022 ? SS_RD_HDR : SS_RD_LEN;
		return 0;
	case SS_RD_HDR:
		hlen = SS2022_RESP_HDR_LEN(mi->salt_len);
		if (len < hlen + SS_TAG_LEN)
			return -EAGAIN;
		rc = ss_aead_open(&r->aead, in, hlen + SS_TAG_LEN, hdr);
		if (!rc)
			rc = (int)check_response_header(r, mi, hdr);
		OPENSSL_cleanse(hdr, sizeof(hdr));
		if (rc)
			return rc;
		*used = hlen + SS_TAG_LEN;
		/* the header counts as the first authenticated chunk: what fails later is
		 * tampering, not a wrong key */
		r->chunks++;
		r->state = SS_RD_PAYLOAD;
		return 0;
	case SS_RD_LEN:
		if (len < SS_LEN_CHUNK)
			return -EAGAIN;
		rc = ss_aead_open(&r->aead, in, SS_LEN_CHUNK, lb);
		if (rc)
			return rc;
		r->plen = (size_t)lb[0] << 8 | lb[1];
		if (r->plen > mi->max_payload)
			return -EMSGSIZE;
		*used = SS_LEN_CHUNK;
		r->state = SS_RD_PAYLOAD;
		return 0;
	case SS_RD_PAYLOAD:
		if (len < r->plen + SS_TAG_LEN)
			return -EAGAIN;
		if (out_cap < r->plen)
			return -ENOBUFS;
		rc = ss_aead_open(&r->aead, in, r->plen + SS_TAG_LEN, out);
		if (rc)
			return rc;
		*used = r->plen + SS_TAG_LEN;
		r->state = SS_RD_LEN;
		r->chunks++;
		return (ssize_t)r->plen;
	}
	return -EINVAL;
}

ssize_t ss_udp_seal(int method, const uint8_t *master, const uint8_t *salt,
		    const uint8_t *hdr, size_t hdr_len, const uint8_t *payload, size_t len,
		    uint8_t *out)
{
	const struct ss_method_info *mi = ss_method_info(method);
	struct ss_aead a;
	uint8_t *p;
	int rc;

	if (!mi)
		return -EINVAL;
	memcpy(out, salt, mi->salt_len);
	p = out + mi->salt_len;
	/* one contiguous plaintext: address header then payload, sealed in place */
	memmove(p + hdr_len, payload, len);
	memcpy(p, hdr, hdr_len);
	rc = ss_aead_init(&a, method, master, salt);
	if (rc)
		return rc;
	rc = ss_aead_seal(&a, p, hdr_len + len, p);
	ss_aead_free(&a);
	return rc ? rc : (ssize_t)(mi->salt_len + hdr_len + len + SS_TAG_LEN);
}

ssize_t ss_udp_open(int method, const uint8_t *master, uint8_t *pkt, size_t len,
		    uint8_t **plain)
{
	const struct ss_method_info *mi = ss_method_info(method);
	struct ss_aead a;
	uint8_t *ct;
	int rc;

	if (!mi)
		return -EINVAL;
	if (len < mi->salt_len + SS_TAG_LEN)
		return -EBADMSG;
	rc = ss_aead_init(&a, method, master, pkt);
	if (rc)
		return rc;
	ct = pkt + mi->salt_len;
	rc = ss_aead_open(&a, ct, len - mi->salt_len, ct);
	ss_aead_free(&a);
	if (rc)
		return rc;
	*plain = ct;
	return (ssize_t)(len - mi->salt_len - SS_TAG_LEN);
}
