/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_ss - the shadowsocks AEAD codec: key derivation against values computed independently
 * (Python hashlib/hmac and the `cryptography` package, see the comments), chunk round trips,
 * and every way a server's stream can be wrong. Then the plugin's stream as the core drives
 * it, against a fake host and a server made of a loopback socket: the bytes it sends, small
 * caller buffers, backpressure, and hostile or truncated server streams.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../plugins/outbound/shadowsocks/ss_aead.h"
/* the plugin itself, for the stream tests at the end (its statics are reachable) */
#include "../../plugins/outbound/shadowsocks/shadowsocks.c"

static void unhex(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &out[i]);
}

static void test_password_key(void **state)
{
	uint8_t k[32], want[32];

	/* MD5("password"), then MD5(that || "password") */
	assert_int_equal(ss_password_key("password", k, 16), 0);
	unhex("5f4dcc3b5aa765d61d8327deb882cf99", want, 16);
	assert_memory_equal(k, want, 16);
	assert_int_equal(ss_password_key("password", k, 32), 0);
	unhex("5f4dcc3b5aa765d61d8327deb882cf992b95990a9151374abd8ff8c5a7a0fe08", want, 32);
	assert_memory_equal(k, want, 32);
}

static void test_subkey(void **state)
{
	uint8_t k[32], salt[32], sk[32], want[32];

	for (int i = 0; i < 32; i++)
		salt[i] = (uint8_t)i;
	/* HKDF-SHA1(ikm = key("password"), salt = 00..1f, info = "ss-subkey") */
	ss_password_key("password", k, 32);
	assert_int_equal(ss_subkey(k, 32, salt, 32, sk, 32), 0);
	unhex("ee187aed3f87574907a39db98606f60a526114831288097cac66054b33a9464f", want, 32);
	assert_memory_equal(sk, want, 32);
	ss_password_key("password", k, 16);
	assert_int_equal(ss_subkey(k, 16, salt, 16, sk, 16), 0);
	unhex("ed2a618d9490d1701de885d82aa80616", want, 16);
	assert_memory_equal(sk, want, 16);
}

/* The first chunk "hello" with salt 00..(n-1), as the `cryptography` package seals it. */
static void chunk_kat(int method, const char *hex)
{
	const struct ss_method_info *mi = ss_method_info(method);
	uint8_t key[32], salt[32], out[64], want[64];
	struct ss_aead a;
	ssize_t n;

	for (int i = 0; i < 32; i++)
		salt[i] = (uint8_t)i;
	ss_password_key("password", key, mi->key_len);
	assert_int_equal(ss_aead_init(&a, method, key, salt), 0);
	n = ss_seal_chunk(&a, (const uint8_t *)"hello", 5, out);
	assert_int_equal(n, 2 + 16 + 5 + 16);
	unhex(hex, want, (size_t)n);
	assert_memory_equal(out, want, (size_t)n);
	/* the nonce counter moved by two (length, payload) */
	assert_int_equal(a.nonce[0], 2);
	ss_aead_free(&a);
}

static void test_chunk_kat(void **state)
{
	chunk_kat(SS_AES_128_GCM,
		  "5c2b27a26ad0cdf9cd7aa4f3c851b134b4b9947477b58a2f87d1affe84b78de924b5f222d5ec8c");
	chunk_kat(SS_CHACHA20_POLY1305,
		  "ad4d5c2599d42f6d9b26804b82a3b96dc584e8adc7498c0ff41f578989fe0c5ded753038d91134");
}

/* A server stream: salt, then chunks of the given sizes filled with a pattern. */
struct wire {
	uint8_t buf[4 * SS_MAX_CHUNK + 64];
	size_t len;
	uint8_t plain[4 * SS_MAX_PAYLOAD];
	size_t plen;
	uint8_t key[32];
};

static void make_wire(struct wire *w, int method, const char *pw, const size_t *sizes, int n)
{
	const struct ss_method_info *mi = ss_method_info(method);
	struct ss_aead a;

	memset(w, 0, sizeof(*w));
	ss_password_key(pw, w->key, mi->key_len);
	for (size_t i = 0; i < mi->salt_len; i++)
		w->buf[i] = (uint8_t)(0xa0 + i);
	assert_int_equal(ss_aead_init(&a, method, w->key, w->buf), 0);
	w->len = mi->salt_len;
	for (int c = 0; c < n; c++) {
		uint8_t *p = w->plain + w->plen;

		for (size_t i = 0; i < sizes[c]; i++)
			p[i] = (uint8_t)(i * 7 + c);
		ssize_t k = ss_seal_chunk(&a, p, sizes[c], w->buf + w->len);

		assert_true(k > 0);
		w->len += (size_t)k;
		w->plen += sizes[c];
	}
	ss_aead_free(&a);
}

/* Feed `in` to the reader in steps of at most `step` bytes of new input; returns the
 * plaintext length, or the first error. */
static ssize_t read_all(struct ss_reader *r, const uint8_t *in, size_t len, size_t step,
			uint8_t *out, size_t cap)
{
	size_t off = 0, avail = 0, got = 0;

	for (;;) {
		size_t used;
		ssize_t n = ss_reader_feed(r, in + off, avail - off, &used, out + got, cap - got);

		if (n == -EAGAIN) {
			if (avail == len)
				return (ssize_t)got;
			avail = avail + step > len ? len : avail + step;
			continue;
		}
		if (n < 0)
			return n;
		off += used;
		got += (size_t)n;
	}
}

/* Salts from the per-thread pool: never repeated, also across refills (1024-byte pool, odd
 * sizes so draws straddle the refill), and a request larger than the pool is refused. */
static void test_salt_pool(void **state)
{
	enum { N = 200 };
	static uint8_t salts[N][SS_SALT_MAX];
	uint8_t big[1025];

	(void)state;
	for (int i = 0; i < N; i++) {
		size_t len = i % 3 == 0 ? 16 : i % 3 == 1 ? 32 : 24;

		memset(salts[i], 0, sizeof(salts[i]));
		assert_int_equal(ss_salt(salts[i], len), 0);
		for (int j = 0; j < i; j++)
			assert_memory_not_equal(salts[i], salts[j], 16);
	}
	assert_int_equal(ss_salt(big, sizeof(big)), -EINVAL);
	assert_int_equal(ss_salt(big, 1024), 0);
}

static void test_round_trip(void **state)
{
	static const size_t sizes[] = { 1, 100, SS_MAX_PAYLOAD, 2 };
	static const size_t steps[] = { 1, 7, 4096, 1 << 20 };
	static struct wire w;
	static uint8_t out[sizeof(w.plain)];

	for (int m = 0; m < SS_AEAD_METHODS; m++) {
		make_wire(&w, m, "correct horse", sizes, 4);
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			struct ss_reader r;

			ss_reader_init(&r, m, w.key);
			memset(out, 0, sizeof(out));
			assert_int_equal(read_all(&r, w.buf, w.len, steps[s], out, sizeof(out)),
					 w.plen);
			assert_memory_equal(out, w.plain, w.plen);
			assert_true(ss_reader_at_boundary(&r));
			assert_int_equal(r.chunks, 4);
			ss_reader_free(&r);
		}
	}
}

static void test_truncated(void **state)
{
	static const size_t sizes[] = { 300 };
	static struct wire w;
	const struct ss_method_info *mi = ss_method_info(SS_AES_256_GCM);
	uint8_t out[SS_MAX_PAYLOAD];
	struct ss_reader r;
	size_t used;

	make_wire(&w, SS_AES_256_GCM, "pw", sizes, 1);
	ss_reader_init(&r, SS_AES_256_GCM, w.key);
	/* a short salt */
	assert_int_equal(ss_reader_feed(&r, w.buf, mi->salt_len - 1, &used, out, sizeof(out)),
			 -EAGAIN);
	assert_int_equal(used, 0);
	assert_int_equal(ss_reader_feed(&r, w.buf, mi->salt_len, &used, out, sizeof(out)), 0);
	assert_int_equal(used, mi->salt_len);
	/* a truncated length block: nothing consumed, not a boundary once it is read */
	assert_int_equal(ss_reader_feed(&r, w.buf + 32, SS_LEN_CHUNK - 1, &used, out, sizeof(out)),
			 -EAGAIN);
	assert_int_equal(used, 0);
	assert_int_equal(ss_reader_feed(&r, w.buf + 32, SS_LEN_CHUNK, &used, out, sizeof(out)), 0);
	assert_int_equal(ss_reader_want(&r), 300);
	assert_false(ss_reader_at_boundary(&r));
	/* a truncated payload: nothing released */
	memset(out, 0, sizeof(out));
	assert_int_equal(ss_reader_feed(&r, w.buf + 32 + SS_LEN_CHUNK, 300 + SS_TAG_LEN - 1, &used,
					out, sizeof(out)),
			 -EAGAIN);
	assert_int_equal(used, 0);
	for (size_t i = 0; i < 300; i++)
		assert_int_equal(out[i], 0);
	/* a buffer too small for the chunk: asked for a bigger one, nothing consumed */
	assert_int_equal(ss_reader_feed(&r, w.buf + 32 + SS_LEN_CHUNK, 300 + SS_TAG_LEN, &used,
					out, 299),
			 -ENOBUFS);
	assert_int_equal(ss_reader_feed(&r, w.buf + 32 + SS_LEN_CHUNK, 300 + SS_TAG_LEN, &used,
					out, 300),
			 300);
	assert_memory_equal(out, w.plain, 300);
	ss_reader_free(&r);
}

/* Flip one bit at `pos` of a one-chunk stream and expect `err` from the reader. */
static void tamper(int method, size_t pos_after_salt, ssize_t err)
{
	static const size_t sizes[] = { 64 };
	static struct wire w;
	const struct ss_method_info *mi = ss_method_info(method);
	uint8_t out[SS_MAX_PAYLOAD];
	struct ss_reader r;

	make_wire(&w, method, "pw", sizes, 1);
	w.buf[mi->salt_len + pos_after_salt] ^= 0x10;
	ss_reader_init(&r, method, w.key);
	memset(out, 0, sizeof(out));
	assert_int_equal(read_all(&r, w.buf, w.len, 1 << 20, out, sizeof(out)), err);
	/* nothing of the payload escaped */
	for (size_t i = 0; i < 64; i++)
		assert_int_equal(out[i], 0);
	ss_reader_free(&r);
}

static void test_tampered(void **state)
{
	for (int m = 0; m < SS_AEAD_METHODS; m++) {
		tamper(m, 0, -EBADMSG);			      /* length ciphertext */
		tamper(m, 5, -EBADMSG);			      /* length tag */
		tamper(m, SS_LEN_CHUNK + 3, -EBADMSG);	      /* payload */
		tamper(m, SS_LEN_CHUNK + 64 + 15, -EBADMSG); /* payload tag */
	}
}

static void test_tampered_salt_and_wrong_key(void **state)
{
	static const size_t sizes[] = { 10 };
	static struct wire w;
	uint8_t out[64], other[32];
	struct ss_reader r;

	make_wire(&w, SS_CHACHA20_POLY1305, "right", sizes, 1);
	/* a wrong password fails on the very first length block */
	ss_password_key("wrong", other, 32);
	ss_reader_init(&r, SS_CHACHA20_POLY1305, other);
	assert_int_equal(read_all(&r, w.buf, w.len, 1 << 20, out, sizeof(out)), -EBADMSG);
	assert_int_equal(r.chunks, 0);
	ss_reader_free(&r);
	/* another method with the same password: the same */
	ss_reader_init(&r, SS_AES_256_GCM, w.key);
	assert_int_equal(read_all(&r, w.buf, w.len, 1 << 20, out, sizeof(out)), -EBADMSG);
	ss_reader_free(&r);
	/* a changed salt is a different subkey */
	w.buf[3] ^= 1;
	ss_reader_init(&r, SS_CHACHA20_POLY1305, w.key);
	assert_int_equal(read_all(&r, w.buf, w.len, 1 << 20, out, sizeof(out)), -EBADMSG);
	ss_reader_free(&r);
}

static void test_oversized_length(void **state)
{
	const struct ss_method_info *mi = ss_method_info(SS_AES_128_GCM);
	uint8_t key[16], buf[64], out[64];
	static const uint8_t lens[][2] = { { 0x40, 0x00 }, { 0xff, 0xff }, { 0x80, 0x01 } };
	struct ss_aead a;
	struct ss_reader r;
	size_t used;

	ss_password_key("pw", key, 16);
	for (size_t i = 0; i < 3; i++) {
		/* a correctly sealed length with the reserved bits set */
		memset(buf, 0x11, mi->salt_len);
		assert_int_equal(ss_aead_init(&a, SS_AES_128_GCM, key, buf), 0);
		assert_int_equal(ss_aead_seal(&a, lens[i], 2, buf + mi->salt_len), 0);
		ss_aead_free(&a);
		ss_reader_init(&r, SS_AES_128_GCM, key);
		assert_int_equal(ss_reader_feed(&r, buf, mi->salt_len + SS_LEN_CHUNK, &used, out,
						sizeof(out)),
				 0);
		assert_int_equal(ss_reader_feed(&r, buf + mi->salt_len, SS_LEN_CHUNK, &used, out,
						sizeof(out)),
				 -EMSGSIZE);
		ss_reader_free(&r);
	}
}

static void test_garbage(void **state)
{
	uint8_t key[32], buf[4096], out[SS_MAX_PAYLOAD];

	ss_password_key("pw", key, 32);
	srand(7);
	for (int round = 0; round < 200; round++) {
		struct ss_reader r;

		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)rand();
		ss_reader_init(&r, round % SS_METHOD_COUNT, key);
		assert_int_equal(read_all(&r, buf, sizeof(buf), 1 + round, out, sizeof(out)),
				 -EBADMSG);
		ss_reader_free(&r);
	}
}

static void test_seal_bounds(void **state)
{
	static uint8_t in[SS_MAX_PAYLOAD + 1], out[SS_MAX_CHUNK + 32];
	uint8_t key[32] = { 0 }, salt[32] = { 0 };
	struct ss_aead a;

	assert_int_equal(ss_aead_init(&a, SS_AES_256_GCM, key, salt), 0);
	assert_int_equal(ss_seal_chunk(&a, in, 0, out), -EINVAL);
	assert_int_equal(ss_seal_chunk(&a, in, SS_MAX_PAYLOAD + 1, out), -EINVAL);
	assert_int_equal(ss_seal_chunk(&a, in, SS_MAX_PAYLOAD, out), SS_MAX_CHUNK);
	ss_aead_free(&a);
	assert_int_equal(ss_aead_init(&a, 7, key, salt), -EINVAL);
	assert_null(ss_method_info(-1));
	assert_null(ss_method_info(SS_METHOD_COUNT));
}

static void test_addr(void **state)
{
	union xp_sockaddr a = { 0 }, b;
	uint8_t buf[SS_ADDR_MAX + 8];
	char name[256], longname[300];
	ssize_t n;

	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(443);
	inet_pton(AF_INET, "10.1.2.3", &a.in.sin_addr);
	n = ss_addr_encode(&a, NULL, buf);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "\x01\x0a\x01\x02\x03\x01\xbb", 7);
	assert_int_equal(ss_addr_decode(buf, 7, &b, name), 7);
	assert_int_equal(b.sa.sa_family, AF_INET);
	assert_memory_equal(&b.in.sin_addr, &a.in.sin_addr, 4);
	assert_int_equal(b.in.sin_port, a.in.sin_port);
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(ss_addr_decode(buf, i, &b, name), -EAGAIN);

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(53);
	inet_pton(AF_INET6, "fd00::1", &a.in6.sin6_addr);
	assert_int_equal(ss_addr_encode(&a, NULL, buf), 19);
	assert_int_equal(buf[0], 4);
	assert_int_equal(ss_addr_decode(buf, 19, &b, name), 19);
	assert_int_equal(b.sa.sa_family, AF_INET6);
	assert_memory_equal(&b.in6.sin6_addr, &a.in6.sin6_addr, 16);
	assert_int_equal(ss_addr_decode(buf, 18, &b, name), -EAGAIN);

	/* a domain wins over the address */
	assert_int_equal(ss_addr_encode(&a, "example.org", buf), 15);
	assert_memory_equal(buf, "\x03\x0b" "example.org\x00\x35", 15);
	assert_int_equal(ss_addr_decode(buf, 15, &b, name), 15);
	assert_string_equal(name, "example.org");
	assert_int_equal(b.sa.sa_family, AF_UNSPEC);
	assert_int_equal(b.in.sin_port, htons(53));
	assert_int_equal(ss_addr_decode(buf, 14, &b, name), -EAGAIN);
	assert_int_equal(ss_addr_decode(buf, 1, &b, name), -EAGAIN);

	/* a name that is too long or not a plain host name: the address goes instead */
	memset(longname, 'a', 256);
	longname[256] = '\0';
	assert_int_equal(ss_addr_encode(&a, longname, buf), 19);
	assert_int_equal(buf[0], 4);
	assert_int_equal(ss_addr_encode(&a, "bad name", buf), 19);
	assert_int_equal(ss_addr_encode(&a, "x\r\nHost: y", buf), 19);
	assert_int_equal(ss_addr_encode(&a, "", buf), 19);
	assert_int_equal(ss_addr_encode(&a, "A-b_c.9", buf), 4 + 7);
	longname[255] = '\0';
	assert_int_equal(ss_addr_encode(&a, longname, buf), 4 + 255);
	assert_int_equal(ss_addr_decode(buf, 4 + 255, &b, name), 4 + 255);
	assert_int_equal(strlen(name), 255);

	/* garbage: unknown types, an empty name */
	buf[0] = 2;
	assert_int_equal(ss_addr_decode(buf, 20, &b, name), -EINVAL);
	buf[0] = 0xff;
	assert_int_equal(ss_addr_decode(buf, 20, &b, name), -EINVAL);
	buf[0] = 3;
	buf[1] = 0;
	assert_int_equal(ss_addr_decode(buf, 20, &b, name), -EINVAL);
	/* a name with a NUL inside (found by fuzz_trojan): refused, not cut short */
	memcpy(buf, "\x03\x04" "ab\0c" "\x00\x35", 8);
	assert_int_equal(ss_addr_decode(buf, 8, &b, name), -EINVAL);
	a.sa.sa_family = AF_UNIX;
	assert_int_equal(ss_addr_encode(&a, NULL, buf), -EINVAL);
}

static void test_udp(void **state)
{
	uint8_t key[32], other[32], salt[32], hdr[SS_ADDR_MAX], pkt[2048], *plain;
	union xp_sockaddr a = { 0 }, b;
	const char *msg = "a datagram";
	ssize_t hl, n, pl;

	ss_password_key("udp", key, 32);
	ss_password_key("nope", other, 32);
	memset(salt, 0x42, sizeof(salt));
	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(5353);
	a.in.sin_addr.s_addr = htonl(0x0a010202);
	hl = ss_addr_encode(&a, NULL, hdr);
	for (int m = 0; m < SS_AEAD_METHODS; m++) {
		const struct ss_method_info *mi = ss_method_info(m);

		n = ss_udp_seal(m, key, salt, hdr, (size_t)hl, (const uint8_t *)msg, strlen(msg),
				pkt);
		assert_int_equal(n, (ssize_t)(mi->salt_len + hl + strlen(msg) + SS_TAG_LEN));
		pl = ss_udp_open(m, key, pkt, (size_t)n, &plain);
		assert_int_equal(pl, hl + (ssize_t)strlen(msg));
		assert_int_equal(ss_addr_decode(plain, (size_t)pl, &b, NULL), hl);
		assert_int_equal(b.in.sin_port, a.in.sin_port);
		assert_memory_equal(plain + hl, msg, strlen(msg));

		/* wrong key, tampered, short */
		n = ss_udp_seal(m, key, salt, hdr, (size_t)hl, (const uint8_t *)msg, strlen(msg),
				pkt);
		assert_int_equal(ss_udp_open(m, other, pkt, (size_t)n, &plain), -EBADMSG);
		n = ss_udp_seal(m, key, salt, hdr, (size_t)hl, (const uint8_t *)msg, strlen(msg),
				pkt);
		pkt[n - 1] ^= 1;
		assert_int_equal(ss_udp_open(m, key, pkt, (size_t)n, &plain), -EBADMSG);
		assert_int_equal(ss_udp_open(m, key, pkt, mi->salt_len + SS_TAG_LEN - 1, &plain),
				 -EBADMSG);
		assert_int_equal(ss_udp_open(m, key, pkt, 0, &plain), -EBADMSG);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* The plugin's stream against a fake host                                                      */

struct fake_io {
	int fd;
	xp_io_cb cb;
	void *arg;
	unsigned events;
};
struct fake_counter {
	char name[64];
	uint64_t value;
};
static struct {
	char last_log[512];
	const struct xp_stream_ops *ops;
	void *stream;
	int fail_err;
	unsigned wakes;
	struct fake_io *io; /* the last one made */
	struct fake_counter counters[16];
	int ncounters;
	struct xp_conn_info info;
} fk;

static void fk_log(xp_handle_t *who, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fk.last_log, sizeof(fk.last_log), fmt, ap);
	va_end(ap);
}
static xp_io_t *fk_io_new(xp_loop_t *loop, int fd, xp_io_cb cb, void *arg)
{
	struct fake_io *io = calloc(1, sizeof(*io));

	io->fd = fd;
	io->cb = cb;
	io->arg = arg;
	fk.io = io;
	return (xp_io_t *)io;
}
static void fk_io_set(xp_io_t *io, unsigned ev)
{
	((struct fake_io *)io)->events = ev;
}
static void fk_io_free(xp_io_t *io)
{
	if (fk.io == (struct fake_io *)io)
		fk.io = NULL;
	free(io);
}
static int fk_upstream_socket(xp_handle_t *who, int domain, int type, int protocol)
{
	int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);

	return fd < 0 ? -errno : fd;
}
static xp_counter_t *fk_counter_new(xp_handle_t *who, const char *name, const char *help)
{
	struct fake_counter *c = &fk.counters[fk.ncounters++];

	snprintf(c->name, sizeof(c->name), "%s", name);
	return (xp_counter_t *)c;
}
static void fk_counter_add(xp_counter_t *c, uint64_t d)
{
	((struct fake_counter *)c)->value += d;
}
static uint64_t counter(const char *name)
{
	for (int i = 0; i < fk.ncounters; i++)
		if (!strcmp(fk.counters[i].name, name))
			return fk.counters[i].value;
	fail_msg("no counter %s", name);
	return 0;
}
static const struct xp_conn_info *fk_conn_info(xp_conn_t *c)
{
	return &fk.info;
}
static xp_loop_t *fk_conn_loop(xp_conn_t *c)
{
	return NULL;
}
static void fk_ready_stream(xp_conn_t *c, const struct xp_stream_ops *ops, void *stream)
{
	fk.ops = ops;
	fk.stream = stream;
}
static void fk_conn_fail(xp_conn_t *c, int err, const char *reason)
{
	fk.fail_err = err;
}
static void fk_stream_wake(xp_conn_t *c, unsigned what)
{
	fk.wakes |= what;
}

static const struct xp_host fk_host = {
	.size = sizeof(struct xp_host),
	.log = fk_log,
	.io_new = fk_io_new,
	.io_set = fk_io_set,
	.io_free = fk_io_free,
	.upstream_socket = fk_upstream_socket,
	.counter_new = fk_counter_new,
	.counter_add = fk_counter_add,
	.conn_info = fk_conn_info,
	.conn_loop = fk_conn_loop,
	.conn_ready_stream = fk_ready_stream,
	.conn_fail = fk_conn_fail,
	.stream_wake = fk_stream_wake,
};

struct rig {
	int lfd, sfd; /* listener, the server's end */
	struct ss_cfg cfg;
	char server[64];
	void *inst;
	uint8_t key[32];
	int method;
};

/* A listener, an instance pointing at it, one connection made ready. */
static void rig_up(struct rig *g, int method, int small_rcvbuf)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sin);
	union xp_sockaddr dst = { 0 };
	struct xp_target t = { .size = sizeof(t), .l4proto = IPPROTO_TCP };
	void *cctx;
	int one = 4096;

	memset(&fk, 0, sizeof(fk));
	memset(g, 0, sizeof(*g));
	g->method = method;
	g->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (small_rcvbuf)
		setsockopt(g->lfd, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one));
	assert_int_equal(bind(g->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(g->lfd, 4), 0);
	getsockname(g->lfd, (struct sockaddr *)&sin, &sl);
	snprintf(g->server, sizeof(g->server), "127.0.0.1:%u", ntohs(sin.sin_port));
	g->cfg.server = g->server;
	g->cfg.method = method;
	if (ss_method_info(method)->is2022) {
		/* base64 of bytes 00..1f, or of 00..0f for the 16-byte method */
		g->cfg.password = ss_method_info(method)->key_len == 16
					  ? "AAECAwQFBgcICQoLDA0ODw=="
					  : "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
		for (int i = 0; i < 32; i++)
			g->key[i] = (uint8_t)i;
	} else {
		g->cfg.password = "stream test";
		ss_password_key("stream test", g->key, ss_method_info(method)->key_len);
	}
	assert_int_equal(ss_instance_new(NULL, &fk_host, NULL, &g->cfg, &g->inst), 0);

	dst.in.sin_family = AF_INET;
	dst.in.sin_port = htons(80);
	dst.in.sin_addr.s_addr = htonl(0x0a010203);
	t.addr = dst;
	fk.info.id = 42;
	assert_int_equal(ss_tcp_connect(g->inst, (xp_conn_t *)g, &t, &cctx), 0);
	g->sfd = accept(g->lfd, NULL, NULL);
	assert_true(g->sfd >= 0);
	if (small_rcvbuf) {
		struct ss_stream *st = cctx;

		setsockopt(st->xs.fd, SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
	}
	/* the connect completes: the core gets the stream */
	assert_non_null(fk.io);
	assert_true(fk.io->events & XP_IO_WRITE);
	fk.io->cb((xp_io_t *)fk.io, fk.io->fd, XP_IO_WRITE, fk.io->arg);
	assert_non_null(fk.ops);
	assert_int_equal(fk.fail_err, 0);
}

static void rig_down(struct rig *g)
{
	if (fk.ops)
		fk.ops->close(fk.stream, 1);
	if (g->sfd >= 0)
		close(g->sfd);
	close(g->lfd);
	ss_instance_free(g->inst);
}

/* Read what the plugin sent: everything available within 200 ms. */
static size_t server_read(struct rig *g, uint8_t *buf, size_t cap)
{
	size_t got = 0;
	struct pollfd p = { .fd = g->sfd, .events = POLLIN };

	while (got < cap && poll(&p, 1, 200) > 0) {
		ssize_t n = recv(g->sfd, buf + got, cap - got, 0);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* The server side of the stream: its own salt and writer. */
struct srv_writer {
	struct ss_aead a;
};
static void srv_start(struct rig *g, struct srv_writer *w)
{
	const struct ss_method_info *mi = ss_method_info(g->method);
	uint8_t salt[32];

	memset(salt, 0x77, sizeof(salt));
	assert_int_equal(ss_aead_init(&w->a, g->method, g->key, salt), 0);
	assert_int_equal(send(g->sfd, salt, mi->salt_len, 0), (ssize_t)mi->salt_len);
}
static void srv_chunk(struct rig *g, struct srv_writer *w, const uint8_t *p, size_t n,
		      size_t cut, int flip)
{
	static uint8_t out[SS_MAX_CHUNK];
	ssize_t k = ss_seal_chunk(&w->a, p, n, out);

	assert_true(k > 0);
	if (flip >= 0)
		out[flip] ^= 0x01;
	if (cut)
		k = (ssize_t)cut;
	assert_int_equal(send(g->sfd, out, (size_t)k, 0), k);
}

/* recv() until -EAGAIN, 0 or an error, in buffers of `step` bytes; returns the last result. */
static ssize_t client_recv_all(uint8_t *buf, size_t cap, size_t step, size_t *got)
{
	ssize_t n;

	*got = 0;
	for (;;) {
		size_t want = cap - *got < step ? cap - *got : step;

		n = fk.ops->recv(fk.stream, buf + *got, want);
		if (n <= 0)
			return n;
		assert_true((size_t)n <= want);
		*got += (size_t)n;
	}
}

static void test_stream_wire_and_small_buffers(void **state)
{
	static uint8_t buf[65536], plain[12000];
	struct rig g;
	struct srv_writer w;
	struct ss_reader r;
	size_t got, n, used, off = 0;
	ssize_t k;
	uint8_t out[SS_MAX_PAYLOAD];

	for (int m = 0; m < SS_AEAD_METHODS; m++) {
		rig_up(&g, m, 0);
		/* the client's first bytes leave with the salt and the address chunk */
		assert_int_equal(fk.ops->send(fk.stream, "GET / HTTP/1.0\r\n\r\n", 18), 18);
		n = server_read(&g, buf, sizeof(buf));
		ss_reader_init(&r, m, g.key);
		assert_int_equal(ss_reader_feed(&r, buf, n, &used, out, sizeof(out)), 0); /* salt */
		off = used;
		assert_int_equal(ss_reader_feed(&r, buf + off, n - off, &used, out, sizeof(out)), 0);
		off += used;
		k = ss_reader_feed(&r, buf + off, n - off, &used, out, sizeof(out));
		assert_int_equal(k, 7);
		assert_memory_equal(out, "\x01\x0a\x01\x02\x03\x00\x50", 7);
		off += used;
		assert_int_equal(ss_reader_feed(&r, buf + off, n - off, &used, out, sizeof(out)), 0);
		off += used;
		k = ss_reader_feed(&r, buf + off, n - off, &used, out, sizeof(out));
		assert_int_equal(k, 18);
		assert_memory_equal(out, "GET / HTTP/1.0\r\n\r\n", 18);
		assert_int_equal(off + used, n);
		ss_reader_free(&r);

		/* the server's 12000-byte chunk read through 100-byte buffers */
		for (size_t i = 0; i < sizeof(plain); i++)
			plain[i] = (uint8_t)(i * 13);
		srv_start(&g, &w);
		srv_chunk(&g, &w, plain, sizeof(plain), 0, -1);
		srv_chunk(&g, &w, plain, 10, 0, -1);
		assert_int_equal(client_recv_all(buf, sizeof(buf), 100, &got), -EAGAIN);
		assert_int_equal(got, sizeof(plain) + 10);
		assert_memory_equal(buf, plain, sizeof(plain));
		assert_memory_equal(buf + sizeof(plain), plain, 10);
		/* nothing more: it waits for readability, and the next byte wakes the core */
		assert_true(fk.io->events & XP_IO_READ);
		srv_chunk(&g, &w, plain, 1, 0, -1);
		fk.io->cb((xp_io_t *)fk.io, fk.io->fd, XP_IO_READ, fk.io->arg);
		assert_true(fk.wakes & XP_WAKE_RECV);
		assert_int_equal(fk.ops->recv(fk.stream, buf, sizeof(buf)), 1);
		/* the server's clean end at a chunk boundary is a clean end */
		shutdown(g.sfd, SHUT_WR);
		assert_int_equal(client_recv_all(buf, sizeof(buf), 100, &got), 0);
		/* the client's half-close reaches the server as a FIN after its bytes */
		assert_int_equal(fk.ops->shutdown(fk.stream), 0);
		assert_int_equal(recv(g.sfd, buf, sizeof(buf), 0), 0);
		ss_aead_free(&w.a);
		assert_int_equal(counter("connects"), 1);
		rig_down(&g);
	}
}

static void test_stream_tampered(void **state)
{
	static uint8_t buf[65536];
	struct rig g;
	struct srv_writer w;
	size_t got;

	rig_up(&g, SS_AES_256_GCM, 0);
	srv_start(&g, &w);
	srv_chunk(&g, &w, (const uint8_t *)"good bytes", 10, 0, -1);
	srv_chunk(&g, &w, (const uint8_t *)"evil bytes", 10, 0, SS_LEN_CHUNK + 2);
	/* what authenticated before the damage is delivered, then the reset */
	assert_int_equal(client_recv_all(buf, sizeof(buf), 4096, &got), -ECONNRESET);
	assert_int_equal(got, 10);
	assert_memory_equal(buf, "good bytes", 10);
	assert_non_null(strstr(fk.last_log, "authentication failed after 1 chunks"));
	assert_int_equal(counter("auth_failures"), 1);
	/* dead for good, both ways */
	assert_int_equal(fk.ops->recv(fk.stream, buf, 10), -ECONNRESET);
	assert_int_equal(fk.ops->send(fk.stream, "x", 1), -ECONNRESET);
	ss_aead_free(&w.a);
	rig_down(&g);

	/* a first chunk sealed with another key: the log names the likely cause */
	rig_up(&g, SS_CHACHA20_POLY1305, 0);
	ss_password_key("another password", g.key, 32);
	srv_start(&g, &w);
	srv_chunk(&g, &w, (const uint8_t *)"hello", 5, 0, -1);
	assert_int_equal(client_recv_all(buf, sizeof(buf), 4096, &got), -ECONNRESET);
	assert_int_equal(got, 0);
	assert_non_null(strstr(fk.last_log, "first chunk (wrong password or method?)"));
	ss_aead_free(&w.a);
	rig_down(&g);
}

static void test_stream_truncated(void **state)
{
	static uint8_t buf[65536];
	struct rig g;
	struct srv_writer w;
	size_t got;

	/* the server stops inside a chunk's payload */
	rig_up(&g, SS_AES_128_GCM, 0);
	srv_start(&g, &w);
	srv_chunk(&g, &w, (const uint8_t *)"0123456789", 10, SS_LEN_CHUNK + 4, -1);
	shutdown(g.sfd, SHUT_WR);
	usleep(20000);
	assert_int_equal(client_recv_all(buf, sizeof(buf), 4096, &got), -ECONNRESET);
	assert_int_equal(got, 0);
	assert_non_null(strstr(fk.last_log, "ended inside a chunk"));
	assert_int_equal(counter("truncated"), 1);
	ss_aead_free(&w.a);
	rig_down(&g);

	/* inside the salt */
	rig_up(&g, SS_AES_128_GCM, 0);
	assert_int_equal(send(g.sfd, "abc", 3, 0), 3);
	shutdown(g.sfd, SHUT_WR);
	usleep(20000);
	assert_int_equal(client_recv_all(buf, sizeof(buf), 4096, &got), -ECONNRESET);
	assert_non_null(strstr(fk.last_log, "ended inside a chunk"));
	rig_down(&g);

	/* not a byte */
	rig_up(&g, SS_AES_128_GCM, 0);
	shutdown(g.sfd, SHUT_WR);
	usleep(20000);
	assert_int_equal(client_recv_all(buf, sizeof(buf), 4096, &got), -ECONNRESET);
	assert_non_null(strstr(fk.last_log, "closed without a reply"));
	rig_down(&g);
}

static void test_stream_backpressure(void **state)
{
	static uint8_t buf[1 << 16];
	struct rig g;
	ssize_t n = 0;
	size_t sent = 0, drained = 0;

	rig_up(&g, SS_CHACHA20_POLY1305, 1);
	/* the server reads nothing: send() takes bytes until the socket is full, then -EAGAIN
	 * and a write watch, never an unbounded queue */
	for (int i = 0; i < 100000; i++) {
		n = fk.ops->send(fk.stream, buf, sizeof(buf));
		if (n < 0)
			break;
		assert_true(n > 0 && (size_t)n <= 2 * SS_MAX_PAYLOAD);
		sent += (size_t)n;
	}
	assert_int_equal(n, -EAGAIN);
	assert_true(fk.io->events & XP_IO_WRITE);
	assert_true(sent < (64u << 20));
	/* the server drains; the queued ciphertext goes out and the core is woken to send more */
	fk.wakes = 0;
	for (int i = 0; i < 1000 && !(fk.wakes & XP_WAKE_SEND); i++) {
		ssize_t k = recv(g.sfd, buf, sizeof(buf), MSG_DONTWAIT);

		if (k > 0)
			drained += (size_t)k;
		fk.io->cb((xp_io_t *)fk.io, fk.io->fd, XP_IO_WRITE, fk.io->arg);
	}
	assert_true(fk.wakes & XP_WAKE_SEND);
	assert_false(fk.io->events & XP_IO_WRITE);
	assert_true(fk.ops->send(fk.stream, buf, 100) == 100);
	/* every byte taken went out exactly once: each send() took two full chunks */
	assert_int_equal(sent % (2 * SS_MAX_PAYLOAD), 0);
	drained += server_read(&g, buf, sizeof(buf));
	while (drained < sent) {
		size_t k = server_read(&g, buf, sizeof(buf));

		if (!k)
			break;
		drained += k;
	}
	assert_int_equal(drained, 32 + (7 + 34) + sent / SS_MAX_PAYLOAD * (SS_MAX_PAYLOAD + 34) +
					  (100 + 34));
	rig_down(&g);
}

/* ---- the 2022 edition through the plugin's stream ------------------------------------- */

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Open a 2022 request as a server: the salt goes to *salt, the variable header's plaintext
 * to var; returns its length. Checks the fixed header on the way. */
static size_t open_request(struct rig *g, const uint8_t *buf, size_t n, uint8_t *salt,
			   uint8_t *var)
{
	const struct ss_method_info *mi = ss_method_info(g->method);
	struct ss_aead a;
	uint8_t fixed[11];
	size_t vlen;
	uint64_t now = (uint64_t)time(NULL), ts;

	assert_true(n > mi->salt_len + 27);
	memcpy(salt, buf, mi->salt_len);
	assert_int_equal(ss_aead_init(&a, g->method, g->key, buf), 0);
	assert_int_equal(ss_aead_open(&a, buf + mi->salt_len, 27, fixed), 0);
	assert_int_equal(fixed[0], 0);
	ts = rd64(fixed + 1);
	assert_true(ts + 5 >= now && ts <= now + 5);
	vlen = (size_t)fixed[9] << 8 | fixed[10];
	/* both header chunks arrived together, nothing else yet */
	assert_int_equal(n, mi->salt_len + 27 + vlen + 16);
	assert_int_equal(ss_aead_open(&a, buf + mi->salt_len + 27, vlen + 16, var), 0);
	ss_aead_free(&a);
	return vlen;
}

/* The server's response: salt 0x77.., header (type, timestamp, request salt, length), the
 * first payload. */
static void srv_response(struct rig *g, struct srv_writer *w, uint8_t type, uint64_t ts,
			 const uint8_t *req_salt, const char *payload)
{
	const struct ss_method_info *mi = ss_method_info(g->method);
	uint8_t salt[32], hdr[SS2022_RESP_HDR_MAX], out[SS2022_RESP_HDR_MAX + 512];
	size_t hl = SS2022_RESP_HDR_LEN(mi->salt_len), pl = strlen(payload);

	memset(salt, 0x77, sizeof(salt));
	assert_int_equal(ss_aead_init(&w->a, g->method, g->key, salt), 0);
	hdr[0] = type;
	for (int i = 0; i < 8; i++)
		hdr[1 + i] = (uint8_t)(ts >> (56 - 8 * i));
	memcpy(hdr + 9, req_salt, mi->salt_len);
	hdr[9 + mi->salt_len] = (uint8_t)(pl >> 8);
	hdr[10 + mi->salt_len] = (uint8_t)pl;
	memcpy(out, salt, mi->salt_len);
	assert_int_equal(ss_aead_seal(&w->a, hdr, hl, out + mi->salt_len), 0);
	assert_int_equal(ss_aead_seal(&w->a, (const uint8_t *)payload, pl,
				      out + mi->salt_len + hl + 16), 0);
	assert_int_equal(send(g->sfd, out, mi->salt_len + hl + 16 + pl + 16, 0),
			 (ssize_t)(mi->salt_len + hl + 16 + pl + 16));
}

static void test_stream_2022(void **state)
{
	static uint8_t buf[65536], var[65536], plain[40000];
	static const int ms[] = { SS_2022_AES_128_GCM, SS_2022_AES_256_GCM,
				  SS_2022_CHACHA20_POLY1305 };
	uint8_t salt[32];
	struct rig g;
	struct srv_writer w;
	size_t n, vlen, got;

	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i * 11);
	for (int k = 0; k < 3; k++) {
		int m = ms[k];

		/* the client's first bytes ride in the variable header (padding 0), the salt and
		 * both header chunks in one write */
		rig_up(&g, m, 0);
		assert_int_equal(fk.ops->send(fk.stream, "GET / HTTP/1.0\r\n\r\n", 18), 18);
		n = server_read(&g, buf, sizeof(buf));
		vlen = open_request(&g, buf, n, salt, var);
		assert_int_equal(vlen, 7 + 2 + 18);
		assert_memory_equal(var, "\x01\x0a\x01\x02\x03\x00\x50\x00\x00", 9);
		assert_memory_equal(var + 9, "GET / HTTP/1.0\r\n\r\n", 18);
		/* the answer, then a 40000-byte chunk (above SIP004's 0x3FFF) through 100-byte
		 * buffers */
		srv_response(&g, &w, 1, (uint64_t)time(NULL), salt, "HTTP/1.0 200 OK\r\n");
		srv_chunk(&g, &w, plain, sizeof(plain), 0, -1);
		assert_int_equal(client_recv_all(buf, sizeof(buf), 100, &got), -EAGAIN);
		assert_int_equal(got, 17 + sizeof(plain));
		assert_memory_equal(buf, "HTTP/1.0 200 OK\r\n", 17);
		assert_memory_equal(buf + 17, plain, sizeof(plain));
		assert_int_equal(counter("header_rejects"), 0);
		ss_aead_free(&w.a);
		rig_down(&g);

		/* the server speaks first: the first recv() sends the header with 1..900 bytes
		 * of padding and no payload */
		rig_up(&g, m, 0);
		assert_int_equal(fk.ops->recv(fk.stream, buf, sizeof(buf)), -EAGAIN);
		n = server_read(&g, buf, sizeof(buf));
		vlen = open_request(&g, buf, n, salt, var);
		assert_int_equal(var[0], 1);
		n = (size_t)var[7] << 8 | var[8];
		assert_true(n >= 1 && n <= 900);
		assert_int_equal(vlen, 7 + 2 + n);
		rig_down(&g);

		/* a client that closes at once still names its target, with padding */
		rig_up(&g, m, 0);
		assert_int_equal(fk.ops->shutdown(fk.stream), 0);
		n = server_read(&g, buf, sizeof(buf));
		vlen = open_request(&g, buf, n, salt, var);
		assert_true(vlen > 9);
		rig_down(&g);
	}

	/* the response header's checks: each resets the client with its own line and counts */
	static const struct {
		uint8_t type;
		int64_t skew;
		int other_salt;
		const char *log;
	} bad[] = {
		{ 0, 0, 0, "not of the server-stream type" },
		{ 1, -31, 0, "more than 30 s" },
		{ 1, 40, 0, "more than 30 s" },
		{ 1, 0, 1, "another request's salt" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rig_up(&g, SS_2022_AES_256_GCM, 0);
		assert_int_equal(fk.ops->send(fk.stream, "x", 1), 1);
		n = server_read(&g, buf, sizeof(buf));
		open_request(&g, buf, n, salt, var);
		salt[0] ^= (uint8_t)bad[i].other_salt;
		srv_response(&g, &w, bad[i].type, (uint64_t)((int64_t)time(NULL) + bad[i].skew),
			     salt, "secret");
		assert_int_equal(client_recv_all(buf, sizeof(buf), 4096, &got), -ECONNRESET);
		assert_int_equal(got, 0);
		assert_non_null(strstr(fk.last_log, bad[i].log));
		assert_int_equal(counter("header_rejects"), 1);
		ss_aead_free(&w.a);
		rig_down(&g);
	}
	/* a response under another PSK: the header's tag fails, and the line says PSK */
	rig_up(&g, SS_2022_AES_128_GCM, 0);
	assert_int_equal(fk.ops->send(fk.stream, "x", 1), 1);
	n = server_read(&g, buf, sizeof(buf));
	open_request(&g, buf, n, salt, var);
	g.key[0] ^= 1;
	srv_response(&g, &w, 1, (uint64_t)time(NULL), salt, "secret");
	assert_int_equal(client_recv_all(buf, sizeof(buf), 4096, &got), -ECONNRESET);
	assert_int_equal(got, 0);
	assert_non_null(strstr(fk.last_log, "response header (wrong PSK or method?)"));
	assert_int_equal(counter("auth_failures"), 1);
	ss_aead_free(&w.a);
	rig_down(&g);
}

static void test_instance_psk(void **state)
{
	struct ss_cfg cfg = { .server = "127.0.0.1:1", .method = SS_2022_AES_256_GCM };
	void *inst;

	memset(&fk, 0, sizeof(fk));
	cfg.password = "AAECAwQFBgcICQoLDA0ODw==";
	assert_int_equal(ss_instance_new(NULL, &fk_host, NULL, &cfg, &inst), -EINVAL);
	assert_non_null(strstr(fk.last_log, "exactly 32 bytes"));
	assert_non_null(strstr(fk.last_log, "decodes to 16 bytes"));
	assert_null(strstr(fk.last_log, "AAECAwQF"));
	cfg.password = "correct horse battery staple";
	assert_int_equal(ss_instance_new(NULL, &fk_host, NULL, &cfg, &inst), -EINVAL);
	assert_non_null(strstr(fk.last_log, "not base64"));
	assert_null(strstr(fk.last_log, "horse"));
	cfg.password = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4"
		       "OTo7PD0+P0BBQkNERUZHSElKS0xNTk9Q";
	assert_int_equal(ss_instance_new(NULL, &fk_host, NULL, &cfg, &inst), -EINVAL);
	assert_non_null(strstr(fk.last_log, "more than 64 bytes"));
	cfg.password = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:"
		       "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
	assert_int_equal(ss_instance_new(NULL, &fk_host, NULL, &cfg, &inst), -EINVAL);
	assert_non_null(strstr(fk.last_log, "SIP023"));
	cfg.password = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
	fk.ncounters = 0;
	assert_int_equal(ss_instance_new(NULL, &fk_host, NULL, &cfg, &inst), 0);
	ss_instance_free(inst);
}

/* 2022: the first send() seals the header with the client's first bytes. When the socket
 * takes only part of it, those bytes are still taken: send() must not report -EAGAIN for
 * bytes it already sealed, or the core sends them again and the server gets them twice. The
 * server here decodes the whole request stream and compares it with what send() took. */
static void test_stream_2022_first_send_partial(void **state)
{
	static uint8_t pat[65536], wire[1 << 20], got[1 << 20];
	const struct ss_method_info *mi = ss_method_info(SS_2022_AES_128_GCM);
	struct rig g;
	struct ss_aead a;
	uint8_t fixed[11];
	size_t off = 0, wl = 0, gl = 0, p, vlen;
	int eagain = 0;

	for (size_t i = 0; i < sizeof(pat); i++)
		pat[i] = (uint8_t)(i * 7 + i / 251);
	rig_up(&g, SS_2022_AES_128_GCM, 1); /* small buffers both sides */
	for (int round = 0; round < 100000 && off < sizeof(pat); round++) {
		ssize_t n = fk.ops->send(fk.stream, pat + off, sizeof(pat) - off);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		assert_int_equal(n, -EAGAIN);
		eagain++;
		/* the server reads a little; the io watch flushes; the core retries */
		for (;;) {
			ssize_t k = recv(g.sfd, wire + wl, sizeof(wire) - wl, MSG_DONTWAIT);

			if (k <= 0)
				break;
			wl += (size_t)k;
		}
		fk.io->cb((xp_io_t *)fk.io, fk.io->fd, XP_IO_WRITE, fk.io->arg);
	}
	assert_int_equal(off, sizeof(pat));
	assert_true(eagain > 0); /* the buffers were small enough to matter */
	assert_int_equal(fk.ops->shutdown(fk.stream), 0);
	for (;;) {
		size_t k = server_read(&g, wire + wl, sizeof(wire) - wl);

		if (!k)
			break;
		wl += k;
	}
	/* salt | fixed header | variable header (address, padding length, payload) | chunks */
	assert_true(wl > mi->salt_len + 27);
	assert_int_equal(ss_aead_init(&a, g.method, g.key, wire), 0);
	p = mi->salt_len;
	assert_int_equal(ss_aead_open(&a, wire + p, 27, fixed), 0);
	p += 27;
	vlen = (size_t)fixed[9] << 8 | fixed[10];
	assert_true(p + vlen + 16 <= wl);
	assert_int_equal(ss_aead_open(&a, wire + p, vlen + 16, got), 0);
	p += vlen + 16;
	assert_int_equal(got[7] << 8 | got[8], 0); /* no padding: there was payload */
	gl = vlen - 9;
	memmove(got, got + 9, gl);
	while (p < wl) {
		uint8_t l[2];
		size_t cl;

		assert_true(p + 18 <= wl);
		assert_int_equal(ss_aead_open(&a, wire + p, 18, l), 0);
		p += 18;
		cl = (size_t)l[0] << 8 | l[1];
		assert_true(p + cl + 16 <= wl && gl + cl <= sizeof(got));
		assert_int_equal(ss_aead_open(&a, wire + p, cl + 16, got + gl), 0);
		p += cl + 16;
		gl += cl;
	}
	assert_int_equal(gl, sizeof(pat));
	assert_memory_equal(got, pat, sizeof(pat));
	ss_aead_free(&a);
	rig_down(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_password_key),
		cmocka_unit_test(test_subkey),
		cmocka_unit_test(test_chunk_kat),
		cmocka_unit_test(test_salt_pool),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_tampered_salt_and_wrong_key),
		cmocka_unit_test(test_oversized_length),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_seal_bounds),
		cmocka_unit_test(test_addr),
		cmocka_unit_test(test_udp),
		cmocka_unit_test(test_stream_wire_and_small_buffers),
		cmocka_unit_test(test_stream_tampered),
		cmocka_unit_test(test_stream_truncated),
		cmocka_unit_test(test_stream_backpressure),
		cmocka_unit_test(test_stream_2022),
		cmocka_unit_test(test_stream_2022_first_send_partial),
		cmocka_unit_test(test_instance_psk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
