/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ss_aead - the shadowsocks AEAD codec (SIP004 stream chunks, SIP007 subkeys, UDP packets)
 * and the SOCKS5-style address header. No I/O and no plugin ABI beyond the address types, so
 * the unit tests and the fuzzer link it on its own.
 *
 * Stream layout, each direction: salt, then chunks of
 *   [encrypted 2-byte big-endian length][tag][encrypted payload][tag]
 * with a 12-byte little-endian nonce counter that starts at zero and grows by one per seal or
 * open. The subkey is HKDF-SHA1(master key, salt, "ss-subkey"); the master key is the
 * EVP_BytesToKey-style MD5 chain over the password. UDP: salt, then one sealed packet with
 * nonce zero.
 */
#ifndef SS_AEAD_H
#define SS_AEAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xproxy/plugin.h>

#include "socks_addr.h"

enum ss_method {
	SS_AES_128_GCM = 0,
	SS_AES_256_GCM = 1,
	SS_CHACHA20_POLY1305 = 2,
	/* the 2022 edition (SIP022): a base64 PSK instead of a password, BLAKE3 subkeys, header
	 * chunks with timestamps, payload chunks up to 0xFFFF; ss2022.h has the rest */
	SS_2022_AES_128_GCM = 3,
	SS_2022_AES_256_GCM = 4,
	SS_2022_CHACHA20_POLY1305 = 5,
	SS_METHOD_COUNT,
};
/* the SIP004 methods come first: 0 .. SS_AEAD_METHODS - 1 */
#define SS_AEAD_METHODS SS_2022_AES_128_GCM
/* the option's choices, in enum order */
#define SS_METHOD_CHOICES "aes-128-gcm|aes-256-gcm|chacha20-ietf-poly1305|" \
			  "2022-blake3-aes-128-gcm|2022-blake3-aes-256-gcm|" \
			  "2022-blake3-chacha20-poly1305"

#define SS_KEY_MAX	32
#define SS_SALT_MAX	32
#define SS_TAG_LEN	16
#define SS_NONCE_LEN	12
#define SS_MAX_PAYLOAD	0x3FFF
#define SS2022_MAX_PAYLOAD 0xFFFF
#define SS_LEN_CHUNK	(2 + SS_TAG_LEN)
/* one full chunk on the wire */
#define SS_MAX_CHUNK	(SS_LEN_CHUNK + SS_MAX_PAYLOAD + SS_TAG_LEN)
#define SS_ADDR_MAX	SOCKS_ADDR_MAX

struct ss_method_info {
	const char *name;
	size_t key_len;
	size_t salt_len;
	int is2022;	    /* SIP022: BLAKE3 subkeys, header chunks */
	size_t max_payload; /* the largest payload chunk the far side may send */
};
const struct ss_method_info *ss_method_info(int method);

/* The master key from the password (MD5(pw), MD5(prev || pw), ... truncated). 0 or -errno. */
int ss_password_key(const char *password, uint8_t *key, size_t key_len);
/* A fresh random salt of len (<= 1024) bytes from a per-thread pool. 0 or -EIO. */
int ss_salt(uint8_t *salt, size_t len);
/* HKDF-SHA1(key, salt, "ss-subkey") -> out (out_len bytes). 0 or -errno. For the 2022 methods
 * ss_aead_init uses ss2022_subkey (BLAKE3) instead. */
int ss_subkey(const uint8_t *key, size_t key_len, const uint8_t *salt, size_t salt_len,
	      uint8_t *out, size_t out_len);

/* One direction's AEAD state: cipher context keyed with the subkey and the nonce counter. */
struct ss_aead {
	void *ctx; /* EVP_CIPHER_CTX */
	int method;
	uint8_t nonce[SS_NONCE_LEN];
};

/* Key `a` for `method` with the subkey derived from `master` and `salt` (HKDF-SHA1, or BLAKE3
 * derive_key over PSK || salt for the 2022 methods). 0 or -errno. */
int ss_aead_init(struct ss_aead *a, int method, const uint8_t *master, const uint8_t *salt);
/* Key `a` with a subkey made elsewhere (2022 UDP: per session id). 0 or -errno. */
int ss_aead_init_key(struct ss_aead *a, int method, const uint8_t *subkey);
void ss_aead_free(struct ss_aead *a);
/* out = ciphertext || tag (len + 16 bytes); the nonce counter advances. 0 or -errno. */
int ss_aead_seal(struct ss_aead *a, const uint8_t *in, size_t len, uint8_t *out);
/* in = ciphertext || tag (len >= 16); out gets len - 16 bytes, released only when the tag
 * verifies (else -EBADMSG and `out` is wiped). The nonce counter advances either way. */
int ss_aead_open(struct ss_aead *a, const uint8_t *in, size_t len, uint8_t *out);

/* One stream chunk of n (1..the method's max_payload) bytes: writes SS_LEN_CHUNK + n + SS_TAG_LEN
 * bytes to out and returns that count, or -errno. */
ssize_t ss_seal_chunk(struct ss_aead *a, const uint8_t *in, size_t n, uint8_t *out);

/* The decrypting reader of the far side's stream: salt, then chunks. The 2022 response stream
 * has a fixed-length header chunk after the salt (SS_RD_HDR) that also gives the first payload
 * chunk's length. */
enum ss_reader_state { SS_RD_SALT = 0, SS_RD_LEN, SS_RD_PAYLOAD, SS_RD_HDR };

/* 2022 response header checks (SIP022 3.1.3), beyond -EBADMSG for a failed tag */
#define SS_E_TYPE  (-EPROTO) /* the header's type is not 1 (server stream) */
#define SS_E_TIME  (-ETIME)  /* the timestamp is more than 30 s off */
#define SS_E_SALT  (-EBADR)  /* the request salt in it is not ours */
#define SS2022_MAX_SKEW 30

struct ss_reader {
	struct ss_aead aead;
	int method;
	const uint8_t *master; /* the instance's key; outlives the reader */
	enum ss_reader_state state;
	size_t plen;	 /* SS_RD_PAYLOAD: the authenticated length of the chunk being read */
	uint64_t chunks; /* chunks authenticated so far: 0 means "first chunk" for the log */
	/* 2022: the salt our request stream began with (the response must name it) and, for
	 * tests, a fixed "now" for the timestamp check (0: the clock) */
	uint8_t req_salt[SS_SALT_MAX];
	uint64_t now;
};

void ss_reader_init(struct ss_reader *r, int method, const uint8_t *master);
/* 2022 methods: the request salt the response header must carry (before feeding). */
void ss_reader_set_request_salt(struct ss_reader *r, const uint8_t *salt);
void ss_reader_free(struct ss_reader *r);
/*
 * Consume what can be consumed from in[0..len): the salt, a length block, or a whole payload
 * block. *used is set to the bytes consumed (possibly 0). Returns:
 *   >= 0         plaintext bytes written to out (0 after a salt or a length block)
 *   -EAGAIN      more input is needed (nothing consumed)
 *   -ENOBUFS     the chunk's payload (ss_reader_want() bytes) does not fit out_cap: call
 *                again with a bigger buffer (nothing consumed)
 *   -EBADMSG     a tag failed (the stream is dead; nothing was released)
 *   -EMSGSIZE    an authenticated length above SS_MAX_PAYLOAD (reserved bits set)
 *   SS_E_TYPE, SS_E_TIME, SS_E_SALT  (2022) an authenticated response header that fails its
 *                checks: wrong type, stale timestamp, not our request salt
 *   other -errno (crypto library failure)
 */
ssize_t ss_reader_feed(struct ss_reader *r, const uint8_t *in, size_t len, size_t *used,
		       uint8_t *out, size_t out_cap);
/* In SS_RD_PAYLOAD, the plaintext size of the pending chunk; 0 otherwise. */
size_t ss_reader_want(const struct ss_reader *r);
/* Whether the reader stands at a chunk boundary (a clean place for the stream to end). */
int ss_reader_at_boundary(const struct ss_reader *r);

/* UDP (SIP004): [salt][seal(address header || payload)], nonce zero, a fresh salt each.
 * ss_udp_seal returns the packet length or -errno; out needs salt + hdr + len + 16 bytes. */
ssize_t ss_udp_seal(int method, const uint8_t *master, const uint8_t *salt,
		    const uint8_t *hdr, size_t hdr_len, const uint8_t *payload, size_t len,
		    uint8_t *out);
/* Open a UDP packet in place: on success returns the plaintext length and *plain points into
 * pkt; -EBADMSG on a short packet or a tag failure (nothing released), other -errno. */
ssize_t ss_udp_open(int method, const uint8_t *master, uint8_t *pkt, size_t len,
		    uint8_t **plain);

#endif /* SS_AEAD_H */
