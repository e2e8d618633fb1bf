/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * quic_initial - the QUIC layers of the quic sniffer: long headers, Initial keys, header
 * protection, AEAD, frames, and the CRYPTO stream they carry (RFC 9000, RFC 9001, RFC 9369).
 *
 * Everything here is a pure function of its arguments: no state survives a call except the
 * algorithm objects fetched once from OpenSSL (immutable, shared by every thread). The ClientHello
 * inside the CRYPTO stream is left to tls_hello_parse().
 */
#ifndef XP_SNIFF_QUIC_INITIAL_H
#define XP_SNIFF_QUIC_INITIAL_H

#include <stddef.h>
#include <stdint.h>

#define QUIC_VERSION_1 0x00000001u
#define QUIC_VERSION_2 0x6b3343cfu /* RFC 9369 */

#define QUIC_CID_MAX	   20	 /* RFC 9000 17.2: v1 and v2 connection IDs are at most 20 bytes */
#define QUIC_CRYPTO_MAX	   65536 /* CRYPTO stream bytes kept: as long as the longest ClientHello */
#define QUIC_PACKET_MAX	   65536 /* a packet longer than this cannot be in a UDP datagram */
#define QUIC_MAX_DATAGRAMS 32	 /* datagrams of one flow looked at, at most */

/* Packet types with v1 numbering (v2 numbers them differently on the wire; quic_parse_long maps). */
enum quic_ptype {
	QUIC_PT_INITIAL = 0,
	QUIC_PT_0RTT = 1,
	QUIC_PT_HANDSHAKE = 2,
	QUIC_PT_RETRY = 3,
};

struct quic_keys {
	uint8_t key[16]; /* AEAD_AES_128_GCM key */
	uint8_t iv[12];
	uint8_t hp[16]; /* header protection, AES-128 */
};

/* A long-header packet as parsed from the wire (fields point into the datagram). */
struct quic_long {
	uint32_t version;
	uint8_t type; /* enum quic_ptype */
	const uint8_t *dcid;
	size_t dcid_len;
	size_t pn_off; /* offset of the (protected) packet number from the packet's start */
	size_t len;    /* bytes of this packet: header + packet number + payload */
};

/* The CRYPTO stream reassembled from frames in any order: a byte is kept the first time it
 * arrives, bit `have` says which are present. */
struct quic_stream {
	size_t contig; /* bytes present from offset 0 */
	uint8_t have[QUIC_CRYPTO_MAX / 8];
	uint8_t data[QUIC_CRYPTO_MAX];
};

enum quic_dg_status {
	QUIC_DG_INITIAL = 0, /* at least one client Initial opened; its CRYPTO data is in the stream */
	QUIC_DG_FOREIGN = 1, /* not QUIC v1/v2, malformed header, or no Initial that opens */
	QUIC_DG_INVALID = 2, /* an authenticated Initial that breaks the rules (frames, overlaps) */
};

/* Per-flow working memory: keys derived for up to two connection IDs and room for one packet. */
struct quic_work {
	struct quic_stream stream;
	int have_first;		    /* first_* is the flow's first opened Initial's keys */
	uint32_t first_version;
	size_t first_dcid_len;
	uint8_t first_dcid[QUIC_CID_MAX];
	struct quic_keys first_keys;
	uint8_t buf[QUIC_PACKET_MAX]; /* unprotected header + plaintext of the packet being opened */
};

/* The version's Initial secret for one side (server != 0: the server's). 0 or -1. */
int quic_initial_secret(uint32_t version, const uint8_t *dcid, size_t dcid_len, int server,
			uint8_t secret[32]);
/* Packet protection keys for one side's Initial packets. 0, or -1 (unknown version, no crypto). */
int quic_initial_keys(uint32_t version, const uint8_t *dcid, size_t dcid_len, int server,
		      struct quic_keys *out);

/* Read a variable-length integer (RFC 9000 16). Bytes used, 0 when truncated. */
size_t quic_varint(const uint8_t *p, size_t len, uint64_t *v);

/* Parse the long header at p[0..len). 0, or -1 when it is not a v1/v2 long header whose lengths
 * fit in len (a Retry, which has no Length, also gives -1: nothing can follow it). */
int quic_parse_long(const uint8_t *p, size_t len, struct quic_long *out);

/* Remove header protection and decrypt the Initial packet `h` at pkt[0..h->len) with `k`.
 * The plaintext goes to buf (cap bytes); *plain points at it and *plain_len is its length.
 * 0, or -1 (too short for a sample, too long for buf, or the AEAD tag does not verify). */
int quic_open(const struct quic_keys *k, const uint8_t *pkt, const struct quic_long *h,
	      uint8_t *buf, size_t cap, const uint8_t **plain, size_t *plain_len, uint64_t *pn);

void quic_stream_init(struct quic_stream *s);
/* Add CRYPTO data at `off`. Bytes past QUIC_CRYPTO_MAX are dropped (the ClientHello cannot be
 * there). 0, or -1 when it contradicts bytes already received at the same offsets. */
int quic_stream_add(struct quic_stream *s, uint64_t off, const uint8_t *data, size_t len);

/* Walk the frames of a decrypted Initial payload: CRYPTO into the stream; PADDING, PING, ACK,
 * CONNECTION_CLOSE skipped. 0, or -1 for any other frame or a frame that runs past the end. */
int quic_frames(const uint8_t *p, size_t len, struct quic_stream *s);

/* Every client Initial in one datagram (coalesced packets included) into w->stream. */
enum quic_dg_status quic_datagram(struct quic_work *w, const uint8_t *dg, size_t len);

#endif
