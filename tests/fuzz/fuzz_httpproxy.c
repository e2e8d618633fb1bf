/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_httpproxy - the HTTP proxy codec (plugins/outbound/http/http_proto.c) on arbitrary bytes.
 *
 * Input: two bytes that pick the head limit (16..8207) and a chunk size (1..64), then either a
 * response head (selector bit 7 clear) or NUL-separated domain, user and password for the
 * request builder (bit 7 set).
 * Beyond crashes: a parsed head ends with CRLFCRLF inside the input and the limit, with a
 * status in 100..599; an error has a message; reading the response in chunks, as the plugin
 * does, reaches the same verdict as parsing it whole; a built request is exactly CRLF-separated
 * lines (no bare CR or LF a hostile name or credential could smuggle in) ending with an empty
 * line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/outbound/http/http_proto.h"

static void check_response(const char *b, size_t n, size_t max, size_t chunk)
{
	struct hp_response r;
	const char *why = NULL;
	ssize_t whole = hp_parse_response(b, n, max, &r, &why), step = 0;

	if (whole < 0 && !why)
		abort();
	if (whole > 0) {
		if ((size_t)whole > n || (size_t)whole > max || whole < 16 ||
		    memcmp(b + whole - 4, "\r\n\r\n", 4) || r.status < 100 || r.status > 599)
			abort();
	}
	for (size_t have = chunk < n ? chunk : n;; have = have + chunk < n ? have + chunk : n) {
		why = NULL;
		step = hp_parse_response(b, have, max, &r, &why);
		if (step != 0 || have == n)
			break;
	}
	if (step != whole)
		abort();
}

static void check_request(const char *b, size_t n)
{
	char s[3][300], out[HP_MAX_REQUEST];
	union xp_sockaddr a = {0};
	size_t i = 0, k = 0;
	ssize_t len, lines = 0;

	for (int f = 0; f < 3; f++) {
		k = 0;
		while (i < n && b[i] && k < sizeof(s[f]) - 1)
			s[f][k++] = b[i++];
		s[f][k] = 0;
		i++;
	}
	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(443);
	a.in.sin_addr.s_addr = htonl(0xc0000201);
	len = hp_connect_request(out, sizeof(out), &a, s[0], s[1][0] ? s[1] : NULL, s[2]);
	if (len == -EINVAL || len == -ENOBUFS)
		return;
	if (len < 0 || (size_t)len >= sizeof(out) || strlen(out) != (size_t)len)
		abort();
	if (len < 4 || memcmp(out + len - 4, "\r\n\r\n", 4))
		abort();
	for (ssize_t j = 0; j < len; j++) {
		if (out[j] == '\n' && (j == 0 || out[j - 1] != '\r'))
			abort();
		if (out[j] == '\r' && (j + 1 >= len || out[j + 1] != '\n'))
			abort();
		lines += out[j] == '\n';
	}
	/* request line, Host, optional Proxy-Authorization, the empty line */
	if (lines != (s[1][0] ? 4 : 3))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t max, chunk, n;
	char *copy;

	if (size < 2)
		return 0;
	max = 16 + (size_t)(data[0] & 0x1f) * 256 + data[1];
	chunk = 1 + (data[1] & 63);
	n = size - 2;
	/* a copy of exactly the message, so ASan catches any read past its end */
	copy = malloc(n ? n : 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 2, n);
	if (data[0] & 0x80)
		check_request(copy, n);
	else
		check_response(copy, n, max, chunk);
	free(copy);
	return 0;
}
