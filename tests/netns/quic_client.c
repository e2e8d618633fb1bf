/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * quic_client - send QUIC client Initial packets (and other datagrams) over one UDP socket, for
 * the sniffing namespace test (e2e_sniff_quic.sh). Not a QUIC stack: it builds what a client's
 * first flight looks like on the wire and records what it sent, so the server side can check
 * that the proxy delivered those exact bytes in that order.
 *
 *   quic_client [-o HEXFILE] [-r REPLIES] [-w MS] ADDR PORT STEP...
 *
 * Every step sends datagrams from the same socket (one flow, one UDP session in xproxyd):
 *   initial:V:NAME   one 1200-byte client Initial (QUIC version V = 1 or 2) whose CRYPTO frame
 *                    holds a whole ClientHello with server_name NAME and ALPN h3
 *   split:V:NAME     a ClientHello of ~1,700 bytes over two Initials, out of order: the packet
 *                    with the tail (packet number 1, its two CRYPTO frames in reverse order)
 *                    first, then the one with offset 0 (packet number 0)
 *   head:V:NAME      only the second datagram of split (offset 0, the hello incomplete)
 *   garbage:N        N datagrams of random bytes (20 to 1200), never a QUIC v1/v2 long header
 *   file:PATH        the file's bytes as one datagram (e.g. the RFC 9001 client Initial)
 *   sleep:MS         wait
 * Each datagram sent is written as one hex line to HEXFILE (default: none). Then, with -r, it
 * waits up to -w MS (default 2000) for REPLIES datagrams from ADDR:PORT (the socket is
 * connected, so the kernel drops anything else) and prints "replies N" on stdout.
 * Exit: 0 when everything was sent (and the replies came), 1 otherwise, 2 for usage errors.
 *
 * Packet protection (RFC 9001 5, RFC 9369 3): keys from quic_initial_keys() (the quic sniffer's
 * key schedule, checked against both RFCs' Appendix A by tests/unit/test_sniff_quic.c); the
 * sealing, header protection and the ClientHello are built here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "quic_initial.h"

#define DGRAM_LEN 1200 /* RFC 9000 14.1: a client's Initial datagram is at least 1200 bytes */

static FILE *hexout;
static int sock = -1;
static unsigned sent;

static void die(const char *what)
{
	fprintf(stderr, "quic_client: %s\n", what);
	exit(1);
}

static void rand_bytes(uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("getrandom failed");
		}
		p += r;
		n -= (size_t)r;
	}
}

static void send_dgram(const uint8_t *p, size_t len)
{
	if (send(sock, p, len, 0) != (ssize_t)len) {
		perror("quic_client: send");
		exit(1);
	}
	sent++;
	if (hexout) {
		for (size_t i = 0; i < len; i++)
			fprintf(hexout, "%02x", p[i]);
		fputc('\n', hexout);
		fflush(hexout);
	}
}

/* ---- the ClientHello ------------------------------------------------------------------------ */

struct buf {
	uint8_t d[4096];
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > sizeof(b->d))
		die("internal: buffer overflow");
	memcpy(b->d + b->n, p, n);
	b->n += n;
}

static void put8(struct buf *b, unsigned v)
{
	uint8_t c = (uint8_t)v;

	put(b, &c, 1);
}

static void put16(struct buf *b, unsigned v)
{
	put8(b, v >> 8);
	put8(b, v);
}

/* Length prefixes filled in once the body is known. */
static size_t open16(struct buf *b)
{
	put16(b, 0);
	return b->n;
}

static void close16(struct buf *b, size_t at)
{
	size_t len = b->n - at;

	b->d[at - 2] = (uint8_t)(len >> 8);
	b->d[at - 1] = (uint8_t)len;
}

/* A TLS 1.3 ClientHello as a QUIC client sends it (no legacy session id, with
 * quic_transport_parameters), padded with the padding extension to at least `min_len` bytes
 * when min_len is non-zero. */
static void client_hello(struct buf *b, const char *name, size_t min_len)
{
	static const uint16_t suites[] = {0x1301, 0x1302, 0x1303};
	static const uint16_t sigalgs[] = {0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501};
	uint8_t rnd[32], share[32];
	size_t body, exts, e, l;

	rand_bytes(rnd, sizeof(rnd));
	rand_bytes(share, sizeof(share));
	b->n = 0;
	put8(b, 1); /* client_hello */
	put8(b, 0);
	body = open16(b); /* uint24: the top byte stays 0 */
	put16(b, 0x0303);
	put(b, rnd, 32);
	put8(b, 0); /* legacy_session_id: empty in QUIC (RFC 9001 8.4) */
	put16(b, sizeof(suites));
	for (size_t i = 0; i < 3; i++)
		put16(b, suites[i]);
	put8(b, 1);
	put8(b, 0); /* compression: null */
	exts = open16(b);

	put16(b, 0); /* server_name */
	e = open16(b);
	l = open16(b);
	put8(b, 0); /* host_name */
	put16(b, (unsigned)strlen(name));
	put(b, name, strlen(name));
	close16(b, l);
	close16(b, e);

	put16(b, 10); /* supported_groups: x25519 */
	e = open16(b);
	put16(b, 2);
	put16(b, 0x001d);
	close16(b, e);

	put16(b, 13); /* signature_algorithms */
	e = open16(b);
	put16(b, sizeof(sigalgs));
	for (size_t i = 0; i < sizeof(sigalgs) / 2; i++)
		put16(b, sigalgs[i]);
	close16(b, e);

	put16(b, 16); /* ALPN: h3 */
	e = open16(b);
	l = open16(b);
	put8(b, 2);
	put(b, "h3", 2);
	close16(b, l);
	close16(b, e);

	put16(b, 43); /* supported_versions: TLS 1.3 */
	e = open16(b);
	put8(b, 2);
	put16(b, 0x0304);
	close16(b, e);

	put16(b, 45); /* psk_key_exchange_modes: psk_dhe_ke */
	e = open16(b);
	put8(b, 1);
	put8(b, 1);
	close16(b, e);

	put16(b, 51); /* key_share: one x25519 share */
	e = open16(b);
	l = open16(b);
	put16(b, 0x001d);
	put16(b, 32);
	put(b, share, 32);
	close16(b, l);
	close16(b, e);

	put16(b, 0x39); /* quic_transport_parameters: initial_max_data, max_idle_timeout */
	e = open16(b);
	put8(b, 0x04);
	put8(b, 4);
	put8(b, 0x80);
	put8(b, 0x10);
	put8(b, 0x00);
	put8(b, 0x00);
	put8(b, 0x01);
	put8(b, 2);
	put16(b, 0x4000 | 10000); /* 10 s, a 2-byte varint */
	close16(b, e);

	if (min_len && b->n + 4 < min_len) {
		size_t pad = min_len - b->n - 4;

		put16(b, 21); /* padding (RFC 7685) */
		put16(b, (unsigned)pad);
		for (size_t i = 0; i < pad; i++)
			put8(b, 0);
	}
	close16(b, exts);
	close16(b, body);
}

/* ---- Initial packets ------------------------------------------------------------------------ */

struct conn {
	uint32_t version;
	uint8_t dcid[8], scid[8];
	struct quic_keys keys;
};

static size_t varint(uint8_t *p, uint64_t v)
{
	if (v < 64) {
		p[0] = (uint8_t)v;
		return 1;
	}
	if (v < 16384) {
		p[0] = 0x40 | (uint8_t)(v >> 8);
		p[1] = (uint8_t)v;
		return 2;
	}
	p[0] = 0x80 | (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
	return 4;
}

static size_t crypto_frame(uint8_t *p, size_t off, const uint8_t *data, size_t len)
{
	size_t n = 0;

	p[n++] = 0x06;
	n += varint(p + n, off);
	n += varint(p + n, len);
	memcpy(p + n, data, len);
	return n + len;
}

/* Header bytes before the payload for a packet number of pn_len bytes and a 2-byte Length. */
static size_t header_len(size_t pn_len)
{
	return 1 + 4 + 1 + 8 + 1 + 8 + 1 + 2 + pn_len;
}

/* Seal `frames` (padded with PADDING so the datagram is DGRAM_LEN bytes) into a client Initial
 * and send it: RFC 9001 5.3 (AEAD over the payload, the header as associated data, nonce = iv
 * xor packet number) and 5.4 (header protection from a sample of the ciphertext). */
static void send_initial(const struct conn *c, uint64_t pn, size_t pn_len, const uint8_t *frames,
			 size_t flen)
{
	uint8_t pkt[DGRAM_LEN + 64], nonce[12], mask[16];
	size_t hlen = header_len(pn_len), plen = DGRAM_LEN - hlen - 16, n = 0, pn_off;
	EVP_CIPHER_CTX *cx;
	int outl;

	if (flen > plen)
		die("internal: frames do not fit one Initial");
	/* v1 numbers Initial 0b00, v2 0b01 (RFC 9369 3.2) */
	pkt[n++] = 0xc0 | (c->version == QUIC_VERSION_2 ? 0x10 : 0x00) | (uint8_t)(pn_len - 1);
	pkt[n++] = (uint8_t)(c->version >> 24);
	pkt[n++] = (uint8_t)(c->version >> 16);
	pkt[n++] = (uint8_t)(c->version >> 8);
	pkt[n++] = (uint8_t)c->version;
	pkt[n++] = sizeof(c->dcid);
	memcpy(pkt + n, c->dcid, sizeof(c->dcid));
	n += sizeof(c->dcid);
	pkt[n++] = sizeof(c->scid);
	memcpy(pkt + n, c->scid, sizeof(c->scid));
	n += sizeof(c->scid);
	pkt[n++] = 0; /* no token */
	pkt[n++] = 0x40 | (uint8_t)((pn_len + plen + 16) >> 8);
	pkt[n++] = (uint8_t)(pn_len + plen + 16);
	pn_off = n;
	for (size_t i = 0; i < pn_len; i++)
		pkt[n++] = (uint8_t)(pn >> (8 * (pn_len - 1 - i)));
	memcpy(pkt + n, frames, flen);
	memset(pkt + n + flen, 0, plen - flen); /* PADDING frames */

	memcpy(nonce, c->keys.iv, 12);
	for (size_t i = 0; i < 8; i++)
		nonce[11 - i] ^= (uint8_t)(pn >> (8 * i));
	cx = EVP_CIPHER_CTX_new();
	if (!cx || EVP_EncryptInit_ex(cx, EVP_aes_128_gcm(), NULL, c->keys.key, nonce) != 1 ||
	    EVP_EncryptUpdate(cx, NULL, &outl, pkt, (int)n) != 1 ||
	    EVP_EncryptUpdate(cx, pkt + n, &outl, pkt + n, (int)plen) != 1 ||
	    EVP_EncryptFinal_ex(cx, pkt + n + plen, &outl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG, 16, pkt + n + plen) != 1)
		die("AES-128-GCM failed");
	n += plen + 16;
	if (EVP_EncryptInit_ex(cx, EVP_aes_128_ecb(), NULL, c->keys.hp, NULL) != 1 ||
	    EVP_CIPHER_CTX_set_padding(cx, 0) != 1 ||
	    EVP_EncryptUpdate(cx, mask, &outl, pkt + pn_off + 4, 16) != 1)
		die("AES-128-ECB failed");
	EVP_CIPHER_CTX_free(cx);
	pkt[0] ^= mask[0] & 0x0f;
	for (size_t i = 0; i < pn_len; i++)
		pkt[pn_off + i] ^= mask[1 + i];
	if (n != DGRAM_LEN)
		die("internal: wrong datagram length");
	send_dgram(pkt, n);
}

static void conn_init(struct conn *c, const char *ver)
{
	if (!strcmp(ver, "1"))
		c->version = QUIC_VERSION_1;
	else if (!strcmp(ver, "2"))
		c->version = QUIC_VERSION_2;
	else
		die("version must be 1 or 2");
	rand_bytes(c->dcid, sizeof(c->dcid));
	rand_bytes(c->scid, sizeof(c->scid));
	if (quic_initial_keys(c->version, c->dcid, sizeof(c->dcid), 0, &c->keys))
		die("no Initial keys (OpenSSL)");
}

/* initial / split / head */
static void step_hello(const char *kind, const char *arg)
{
	char ver[8], name[256];
	struct conn c;
	struct buf ch;
	uint8_t frames[DGRAM_LEN];
	size_t n, head, mid;

	if (sscanf(arg, "%7[^:]:%255s", ver, name) != 2)
		die("expected VERSION:NAME");
	conn_init(&c, ver);
	if (!strcmp(kind, "initial")) {
		client_hello(&ch, name, 0);
		n = crypto_frame(frames, 0, ch.d, ch.n);
		send_initial(&c, 0, c.version == QUIC_VERSION_2 ? 2 : 4, frames, n);
		return;
	}
	/* longer than one packet, as post-quantum key shares make real hellos */
	client_hello(&ch, name, 1700);
	head = 1000;
	mid = 1350;
	if (!strcmp(kind, "split")) {
		/* packet 1 first: [mid, end) then [head, mid) */
		n = crypto_frame(frames, mid, ch.d + mid, ch.n - mid);
		n += crypto_frame(frames + n, head, ch.d + head, mid - head);
		send_initial(&c, 1, 2, frames, n);
	} else if (strcmp(kind, "head")) {
		die("unknown step");
	}
	n = crypto_frame(frames, 0, ch.d, head);
	send_initial(&c, 0, 2, frames, n);
}

static void step_garbage(const char *arg)
{
	long count = strtol(arg, NULL, 10);
	uint8_t d[DGRAM_LEN];

	if (count < 1 || count > 10000)
		die("garbage: 1 to 10000 datagrams");
	for (long i = 0; i < count; i++) {
		uint16_t r;
		size_t len;

		rand_bytes((uint8_t *)&r, sizeof(r));
		len = 20 + r % (DGRAM_LEN - 20 + 1);
		rand_bytes(d, len);
		d[0] &= 0x7f; /* a short header's form bit: never a long header the sniffer opens */
		send_dgram(d, len);
	}
}

static void step_file(const char *path)
{
	uint8_t d[65536];
	ssize_t len;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		die("cannot open the datagram file");
	len = read(fd, d, sizeof(d));
	close(fd);
	if (len <= 0)
		die("empty datagram file");
	send_dgram(d, (size_t)len);
}

static int wait_replies(int want, int ms)
{
	struct timespec t0, t;
	uint8_t d[65536];
	int got = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < want) {
		struct pollfd p = {.fd = sock, .events = POLLIN};
		long left;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left = ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		if (recv(sock, d, sizeof(d), 0) >= 0)
			got++;
	}
	return got;
}

static void usage(void)
{
	fprintf(stderr, "usage: quic_client [-o HEXFILE] [-r REPLIES] [-w MS] ADDR PORT STEP...\n"
			"steps: initial:V:NAME split:V:NAME head:V:NAME garbage:N file:PATH "
			"sleep:MS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST}, *ai;
	int opt, replies = -1, wait_ms = 2000;

	while ((opt = getopt(argc, argv, "o:r:w:")) != -1) {
		switch (opt) {
		case 'o':
			hexout = fopen(optarg, "w");
			if (!hexout)
				die("cannot write the hex file");
			break;
		case 'r':
			replies = atoi(optarg);
			break;
		case 'w':
			wait_ms = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 3)
		usage();
	if (getaddrinfo(argv[optind], argv[optind + 1], &hints, &ai))
		die("bad address or port");
	sock = socket(ai->ai_family, SOCK_DGRAM, 0);
	if (sock < 0 || connect(sock, ai->ai_addr, ai->ai_addrlen) < 0)
		die("cannot make the UDP socket");
	freeaddrinfo(ai);
	for (int i = optind + 2; i < argc; i++) {
		char *colon = strchr(argv[i], ':');

		if (!colon)
			usage();
		*colon = '\0';
		if (!strcmp(argv[i], "initial") || !strcmp(argv[i], "split") ||
		    !strcmp(argv[i], "head"))
			step_hello(argv[i], colon + 1);
		else if (!strcmp(argv[i], "garbage"))
			step_garbage(colon + 1);
		else if (!strcmp(argv[i], "file"))
			step_file(colon + 1);
		else if (!strcmp(argv[i], "sleep"))
			usleep((useconds_t)strtoul(colon + 1, NULL, 10) * 1000);
		else
			usage();
	}
	if (hexout)
		fclose(hexout);
	if (replies >= 0) {
		int got = wait_replies(replies, wait_ms);

		printf("replies %d\n", got);
		return got >= replies ? 0 : 1;
	}
	return 0;
}
