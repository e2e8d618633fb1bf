/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_blake3 - plugins/outbound/shadowsocks/blake3.c against the BLAKE3 team's published
 * vectors (blake3_vectors.h: all three modes, 131-byte extended outputs, inputs from 0 bytes
 * to 100 KiB), fed in one piece and in awkward pieces across block and chunk boundaries; then
 * against Debian's b3sum (the BLAKE3 team's Rust implementation) for the lengths the stored
 * vectors do not cover and for SIP022's own use (derive_key over PSK || salt).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../plugins/outbound/shadowsocks/blake3.h"
#include "blake3_vectors.h"

#define XOF_LEN 131

static void unhex(const char *hex, uint8_t *out, size_t n)
{
	assert_int_equal(strlen(hex), 2 * n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(sscanf(hex + 2 * i, "%2hhx", &out[i]), 1);
}

static uint8_t *vector_input(size_t len)
{
	uint8_t *in = malloc(len ? len : 1);

	assert_non_null(in);
	for (size_t i = 0; i < len; i++)
		in[i] = (uint8_t)(i % 251);
	return in;
}

enum mode { HASH, KEYED, DERIVE };

static void start(struct b3_hasher *h, enum mode m)
{
	switch (m) {
	case HASH:
		b3_init(h);
		break;
	case KEYED:
		b3_init_keyed(h, (const uint8_t *)B3V_KEY);
		break;
	case DERIVE:
		b3_init_derive_key(h, B3V_CONTEXT);
		break;
	}
}

/* Feed `in` in pieces of the given sizes, cycling, and compare the extended and the default
 * output with the vector. */
static void check(enum mode m, const uint8_t *in, size_t len, const char *hex,
		  const size_t *pieces, size_t npieces)
{
	uint8_t want[XOF_LEN], got[XOF_LEN], got32[B3_OUT_LEN];
	struct b3_hasher h;
	size_t off = 0, k = 0;

	unhex(hex, want, sizeof(want));
	start(&h, m);
	while (off < len) {
		size_t n = pieces ? pieces[k++ % npieces] : len;

		if (n > len - off)
			n = len - off;
		b3_update(&h, in + off, n);
		off += n;
	}
	b3_finalize(&h, got, sizeof(got));
	b3_finalize(&h, got32, sizeof(got32));
	if (memcmp(got, want, sizeof(want)) != 0)
		fail_msg("mode %d, input_len %zu: extended output differs", m, len);
	if (memcmp(got32, want, sizeof(got32)) != 0)
		fail_msg("mode %d, input_len %zu: 32-byte output differs", m, len);
}

static void test_vectors_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(b3_vectors) / sizeof(b3_vectors[0]); i++) {
		const struct b3_vector *v = &b3_vectors[i];
		uint8_t *in = vector_input(v->input_len);

		check(HASH, in, v->input_len, v->hash, NULL, 0);
		check(KEYED, in, v->input_len, v->keyed_hash, NULL, 0);
		check(DERIVE, in, v->input_len, v->derive_key, NULL, 0);
		free(in);
	}
}

/* byte by byte, and pieces that straddle every block (64) and chunk (1024) boundary */
static void test_vectors_pieces(void **state)
{
	static const size_t odd[] = {1, 63, 64, 65, 1, 1023, 1024, 1025, 7, 2048, 3};
	static const size_t one[] = {1};

	(void)state;
	for (size_t i = 0; i < sizeof(b3_vectors) / sizeof(b3_vectors[0]); i++) {
		const struct b3_vector *v = &b3_vectors[i];
		uint8_t *in = vector_input(v->input_len);

		check(HASH, in, v->input_len, v->hash, odd, sizeof(odd) / sizeof(odd[0]));
		check(KEYED, in, v->input_len, v->keyed_hash, odd, sizeof(odd) / sizeof(odd[0]));
		check(DERIVE, in, v->input_len, v->derive_key, odd, sizeof(odd) / sizeof(odd[0]));
		if (v->input_len <= 8193)
			check(HASH, in, v->input_len, v->hash, one, 1);
		free(in);
	}
}

/* Output prefixes: any output length is a prefix of the longer output (XOF). */
static void test_xof_prefix(void **state)
{
	uint8_t full[1000], part[1000];
	struct b3_hasher h;

	(void)state;
	b3_init(&h);
	b3_update(&h, "abc", 3);
	b3_finalize(&h, full, sizeof(full));
	for (size_t n = 0; n <= sizeof(part); n += 37) {
		memset(part, 0xAA, sizeof(part));
		b3_finalize(&h, part, n);
		assert_memory_equal(part, full, n);
		if (n < sizeof(part))
			assert_int_equal(part[n], 0xAA); /* nothing written past out_len */
	}
}

/* b3_finalize leaves the hasher alone: more input continues the same message */
static void test_finalize_then_update(void **state)
{
	uint8_t *in = vector_input(5121), a[32], b[32];
	struct b3_hasher h1, h2;

	(void)state;
	b3_init(&h1);
	b3_update(&h1, in, 3000);
	b3_finalize(&h1, a, sizeof(a));
	b3_update(&h1, in + 3000, 5121 - 3000);
	b3_finalize(&h1, a, sizeof(a));
	b3_init(&h2);
	b3_update(&h2, in, 5121);
	b3_finalize(&h2, b, sizeof(b));
	assert_memory_equal(a, b, sizeof(a));
	free(in);
}

static void test_derive_key_oneshot(void **state)
{
	uint8_t *in = vector_input(1025), want[XOF_LEN], got[XOF_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(b3_vectors) / sizeof(b3_vectors[0]); i++) {
		if (b3_vectors[i].input_len != 1025)
			continue;
		unhex(b3_vectors[i].derive_key, want, sizeof(want));
		b3_derive_key(B3V_CONTEXT, in, 1025, got, sizeof(got));
		assert_memory_equal(got, want, sizeof(want));
		free(in);
		return;
	}
	fail_msg("the 1025-byte vector is missing");
}

/* Run b3sum with args, input on stdin; its raw output into out. 0, or -1 if b3sum is absent. */
static int b3sum(char *const argv[], const uint8_t *in, size_t len, uint8_t *out, size_t out_len)
{
	int pin[2], pout[2], st;
	pid_t pid;

	if (access("/usr/bin/b3sum", X_OK) != 0)
		return -1;
	assert_int_equal(pipe(pin), 0);
	assert_int_equal(pipe(pout), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		close(pin[0]);
		close(pin[1]);
		close(pout[0]);
		close(pout[1]);
		execv("/usr/bin/b3sum", argv);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	/* inputs here are at most a few KiB: well inside a pipe's buffer */
	assert_int_equal(write(pin[1], in, len), (ssize_t)len);
	close(pin[1]);
	size_t got = 0;
	ssize_t n;

	while (got < out_len && (n = read(pout[0], out + got, out_len - got)) > 0)
		got += (size_t)n;
	close(pout[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(got, out_len);
	return 0;
}

/* Lengths around every block and chunk boundary up to 3 chunks, all three modes. */
static void test_against_b3sum(void **state)
{
	uint8_t *in = vector_input(3200), want[XOF_LEN], got[XOF_LEN];
	char *hash_argv[] = {"b3sum", "--raw", "-l", "131", NULL};
	char path[] = "/tmp/test_blake3.XXXXXX", fdpath[32];
	int fd = mkstemp(path);
	char *keyed_argv[] = {"b3sum", "--raw", "-l", "131", "--keyed", fdpath, NULL};
	char *derive_argv[] = {"b3sum", "--raw", "-l", "131", "--derive-key", B3V_CONTEXT, NULL};
	static const size_t lens[] = {2, 3, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 192, 1000,
				      1023, 1024, 1025, 1087, 1088, 1089, 2047, 2048, 2049, 3072,
				      3073, 3199};
	struct b3_hasher h;

	(void)state;
	assert_true(fd >= 0);
	/* unlinked at once, so nothing is left behind; b3sum opens the inherited descriptor */
	unlink(path);
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", fd);
	if (b3sum(hash_argv, in, 0, want, sizeof(want)) < 0) {
		free(in);
		close(fd);
		skip(); /* tests/deps.sh installs b3sum; this says loudly when it did not */
	}
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t len = lens[i];

		b3sum(hash_argv, in, len, want, sizeof(want));
		b3_init(&h);
		b3_update(&h, in, len);
		b3_finalize(&h, got, sizeof(got));
		if (memcmp(got, want, sizeof(want)))
			fail_msg("hash of %zu bytes differs from b3sum", len);

		/* b3sum --keyed reads the 32-byte key on stdin and the input from a file */
		assert_int_equal(ftruncate(fd, 0), 0);
		assert_int_equal(pwrite(fd, in, len, 0), (ssize_t)len);
		b3sum(keyed_argv, (const uint8_t *)B3V_KEY, 32, want, sizeof(want));
		b3_init_keyed(&h, (const uint8_t *)B3V_KEY);
		b3_update(&h, in, len);
		b3_finalize(&h, got, sizeof(got));
		if (memcmp(got, want, sizeof(want)))
			fail_msg("keyed hash of %zu bytes differs from b3sum", len);

		b3sum(derive_argv, in, len, want, sizeof(want));
		b3_derive_key(B3V_CONTEXT, in, len, got, sizeof(got));
		if (memcmp(got, want, sizeof(want)))
			fail_msg("derive_key of %zu bytes differs from b3sum", len);
	}
	close(fd);
	free(in);
}

/* SIP022's use: derive_key("shadowsocks 2022 session subkey", PSK || salt), 16 or 32 bytes */
static void test_sip022_subkey_b3sum(void **state)
{
	char *argv16[] = {"b3sum", "--raw", "-l", "16", "--derive-key",
			  "shadowsocks 2022 session subkey", NULL};
	char *argv32[] = {"b3sum", "--raw", "-l", "32", "--derive-key",
			  "shadowsocks 2022 session subkey", NULL};
	uint8_t material[64], want[32], got[32];

	(void)state;
	for (size_t i = 0; i < sizeof(material); i++)
		material[i] = (uint8_t)(i * 7 + 1);
	if (b3sum(argv16, material, 32, want, 16) < 0)
		skip();
	b3_derive_key("shadowsocks 2022 session subkey", material, 32, got, 16);
	assert_memory_equal(got, want, 16);
	b3sum(argv32, material, 64, want, 32);
	b3_derive_key("shadowsocks 2022 session subkey", material, 64, got, 32);
	assert_memory_equal(got, want, 32);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_whole),
		cmocka_unit_test(test_vectors_pieces),
		cmocka_unit_test(test_xof_prefix),
		cmocka_unit_test(test_finalize_then_update),
		cmocka_unit_test(test_derive_key_oneshot),
		cmocka_unit_test(test_against_b3sum),
		cmocka_unit_test(test_sip022_subkey_b3sum),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
