/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ss2022 - the parts of the shadowsocks 2022 edition (SIP022) that the SIP004 codec in
 * ss_aead.c does not have: the base64 PSK, BLAKE3 session subkeys, the TCP request header,
 * UDP packets (AES: a separate header under AES-ECB with the PSK; chacha20: XChaCha20-Poly1305
 * with the PSK), the sliding replay window and XChaCha20 itself (HChaCha20 over OpenSSL's
 * ChaCha20-Poly1305, which OpenSSL 3.0 lacks). No I/O and no plugin ABI.
 *
 * TCP request stream (SIP022 3.1): salt | seal(type 0 | timestamp u64be | length u16be) |
 * seal(SOCKS address | padding length u16be | padding | initial payload) | chunks, with the
 * SIP004 chunk layout and nonce counter of ss_aead.h but payload chunks up to 0xFFFF. The
 * response: salt | seal(type 1 | timestamp | request salt | length) | seal(payload) | chunks;
 * ss_reader checks it (SS_RD_HDR).
 */
#ifndef SS2022_H
#define SS2022_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ss_aead.h"

#define SS2022_TYPE_CLIENT 0
#define SS2022_TYPE_SERVER 1
#define SS2022_SUBKEY_CONTEXT "shadowsocks 2022 session subkey"
/* type | timestamp | length */
#define SS2022_REQ_FIXED_LEN 11
/* type | timestamp | request salt | length */
#define SS2022_RESP_HDR_LEN(salt_len) (1 + 8 + (salt_len) + 2)
#define SS2022_RESP_HDR_MAX SS2022_RESP_HDR_LEN(SS_SALT_MAX)
#define SS2022_MAX_PADDING 900
/* what ss2022_request() writes at most besides the payload */
#define SS2022_REQ_OVERHEAD (SS_SALT_MAX + SS2022_REQ_FIXED_LEN + SS_TAG_LEN + SS_ADDR_MAX + 2 + \
			     SS2022_MAX_PADDING + SS_TAG_LEN)

/* BLAKE3 derive_key(SS2022_SUBKEY_CONTEXT, psk || salt), both key_len bytes -> out. 0 or
 * -EINVAL (key_len above SS_KEY_MAX). */
int ss2022_subkey(const uint8_t *psk, const uint8_t *salt, size_t key_len, uint8_t *out);

/* Decode a base64 PSK (standard alphabet, '=' padding optional, nothing else allowed) into
 * out (cap bytes). Returns the decoded length, -EINVAL for anything that is not base64 or
 * -EMSGSIZE when it decodes to more than cap bytes. out is wiped on failure. */
ssize_t ss2022_psk_decode(const char *b64, uint8_t *out, size_t cap);

/*
 * The first bytes of a request stream: salt, the fixed-length header chunk and the variable-
 * length header chunk carrying the SOCKS address, padlen zero bytes of padding (the chunk is
 * encrypted, so their value is invisible) and the initial payload. enc must be freshly keyed
 * with `salt` (nonces 0 and 1 are used). The spec wants padding or payload: plen and padlen
 * may not both be 0, and alen + 2 + padlen + plen must fit one chunk (0xFFFF); padlen <= 900.
 * Returns the bytes written to out (salt_len + 11 + 16 + alen + 2 + padlen + plen + 16) or
 * -EINVAL.
 */
ssize_t ss2022_request(struct ss_aead *enc, const uint8_t *salt, size_t salt_len,
		       const uint8_t *addr, size_t alen, const uint8_t *payload, size_t plen,
		       size_t padlen, uint64_t ts, uint8_t *out);

/* ---- the sliding replay window (SIP022 3.2.4) ----------------------------------------- */

#define SS2022_WINDOW 1024 /* packet ids this far below the highest one are still accepted */

struct ss2022_window {
	uint64_t top; /* highest packet id accepted + 1; 0: none yet */
	uint64_t bits[SS2022_WINDOW / 64];
};

/* 0 when pid is new and inside the window, -EALREADY when seen or too old. */
int ss2022_window_check(const struct ss2022_window *w, uint64_t pid);
/* Record pid (after its packet authenticated). */
void ss2022_window_commit(struct ss2022_window *w, uint64_t pid);

/* ---- XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03) ---------------------------------- */

/* HChaCha20: 32-byte subkey from key and the first 16 nonce bytes. */
void ss2022_hchacha20(const uint8_t key[32], const uint8_t in[16], uint8_t out[32]);
/* out = ciphertext || 16-byte tag; no associated data (SIP022 uses none). 0 or -errno. In
 * place (out == in) is allowed. */
int ss2022_xchacha_seal(const uint8_t key[32], const uint8_t nonce[24], const uint8_t *aad,
			size_t aad_len, const uint8_t *in, size_t len, uint8_t *out);
/* in = ciphertext || tag (len >= 16); out gets len - 16 bytes only when the tag verifies,
 * else -EBADMSG (out wiped). */
int ss2022_xchacha_open(const uint8_t key[32], const uint8_t nonce[24], const uint8_t *aad,
			size_t aad_len, const uint8_t *in, size_t len, uint8_t *out);

/* ---- UDP: one client session ------------------------------------------------------------ */

/* the server sessions a client session keeps keys and windows for (SIP022 3.2.4: "one old
 * server session and one current") */
#define SS2022_UDP_SERVER_SESSIONS 2
/* AES: separate header 16 | body | tag; chacha: nonce 24 | ids 16 | body | tag */
#define SS2022_UDP_OVERHEAD (24 + 16 + 1 + 8 + 8 + 2 + SS_TAG_LEN)

struct ss2022_udp {
	int method;
	const uint8_t *psk; /* the instance's; outlives the session */
	void *ecb_enc, *ecb_dec; /* AES methods: EVP_CIPHER_CTX, AES-ECB with the PSK */
	uint8_t csid[8];	 /* our session id */
	uint64_t cpid;		 /* the next packet id */
	struct ss_aead send;	 /* AES methods: keyed with the subkey of csid */
	struct {
		int used;
		uint8_t ssid[8];
		uint64_t last; /* when it last authenticated a packet (a use counter) */
		struct ss_aead aead; /* AES methods */
		struct ss2022_window win;
	} srv[SS2022_UDP_SERVER_SESSIONS];
	uint64_t uses;
	uint64_t now; /* tests: a fixed "now" for the timestamp check and stamps (0: the clock) */
};

/* A fresh client session: random session id, packet id 0. 0 or -errno. */
int ss2022_udp_init(struct ss2022_udp *u, int method, const uint8_t *psk);
void ss2022_udp_free(struct ss2022_udp *u);
/*
 * Seal one client packet: body type 0 | timestamp | padding length 0 | SOCKS address |
 * payload. out needs len + alen + SS2022_UDP_OVERHEAD bytes. Returns the packet length or
 * -errno (-EOVERFLOW once the packet ids ran out).
 */
ssize_t ss2022_udp_seal(struct ss2022_udp *u, const uint8_t *addr, size_t alen,
			const uint8_t *payload, size_t len, uint8_t *out);
/*
 * Open a server packet in place. On success returns the length of what follows the padding
 * (SOCKS address then payload) and points *plain at it. Errors, nothing released:
 *   -EBADMSG    short, or the tag failed (wrong PSK, not from the server, tampered)
 *   SS_E_TYPE   the type is not 1
 *   SS_E_TIME   the timestamp is more than 30 s off
 *   SS_E_SALT   the client session id in it is not ours
 *   -EALREADY   the packet id was seen already or is below the replay window
 *   -EMSGSIZE   the padding length runs past the packet
 */
ssize_t ss2022_udp_open(struct ss2022_udp *u, uint8_t *pkt, size_t len, uint8_t **plain);

/*
 * The server's side, for tests and the fuzzer: seal a server packet of session ssid/spid
 * answering client session csid, body type | timestamp | csid | padding | addr | payload
 * with the given type and timestamp. out needs len + alen + padlen + SS2022_UDP_OVERHEAD + 8.
 */
ssize_t ss2022_udp_seal_server(int method, const uint8_t *psk, const uint8_t ssid[8],
			       uint64_t spid, uint8_t type, uint64_t ts, const uint8_t csid[8],
			       size_t padlen, const uint8_t *addr, size_t alen,
			       const uint8_t *payload, size_t len, uint8_t *out);

#endif /* SS2022_H */
