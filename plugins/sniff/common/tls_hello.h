/* SPDX-License-Identifier: MIT */
/*
 * tls_hello - the TLS ClientHello parser shared by the tls and quic sniffers (compiled into
 * each plugin; no state, no allocation, no I/O).
 *
 * Input is a Handshake message as it appears once records (TLS) or CRYPTO frames (QUIC) are
 * stripped: type (1 = client_hello), uint24 length, body. Only what routing needs is
 * extracted; everything is bounds-checked against both the buffer and the lengths the message
 * itself declares (a length that lies is NOT_MINE, never a read past the buffer).
 */
#ifndef XP_SNIFF_TLS_HELLO_H
#define XP_SNIFF_TLS_HELLO_H

#include <stddef.h>
#include <stdint.h>

#define TLS_HELLO_MAX 65536 /* a ClientHello longer than this is refused (NOT_MINE) */

enum tls_hello_status {
	TLS_HELLO_FOUND = 0,	/* parsed; sni may still be empty (no server_name) */
	TLS_HELLO_MORE = 1,	/* a prefix of a plausible ClientHello: give more bytes */
	TLS_HELLO_NOT_MINE = 2, /* not a ClientHello, or malformed */
};

struct tls_hello {
	char sni[256];	 /* first host_name of server_name, lower-cased, NUL-terminated; "" if none */
	char alpn[64];	 /* first ALPN protocol that is not GREASE, NUL-terminated; "" if none */
	uint16_t legacy_version;
	int has_ech;	 /* encrypted_client_hello extension present (sni is then the outer name) */
	size_t msg_len;	 /* bytes the Handshake message occupies (4 + body) once FOUND */
};

/* Parse one Handshake message from buf[0..len). */
enum tls_hello_status tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *out);

#endif
