/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_socks5 - the SOCKS5 parsers (plugins/outbound/socks5/socks5_proto.c) on arbitrary bytes.
 *
 * Input: one selector byte, then a message. Selector & 3 picks the parser (method choice, RFC
 * 1929 status, CONNECT reply, UDP header); bit 2 says whether credentials were offered.
 * Beyond crashes: an error always has a message; "incomplete" asks for more than it has and no
 * more than S5_MAX_MSG; reading the message the way the plugin does (exactly `need` bytes at a
 * time) reaches the same verdict as parsing it whole; a parsed UDP header re-encodes to the
 * same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/outbound/socks5/socks5_proto.h"

static ssize_t run(int which, bool userpass, const uint8_t *b, size_t n, size_t *need,
		   const char **why)
{
	union xp_sockaddr bnd;

	switch (which) {
	case 0:
		return s5_parse_method(b, n, userpass, need, why);
	case 1:
		return s5_parse_auth(b, n, need, why);
	default:
		return s5_parse_reply(b, n, &bnd, need, why);
	}
}

static void check_tcp(int which, bool userpass, const uint8_t *b, size_t n)
{
	const char *why = NULL;
	size_t need = 0, have = 0;
	ssize_t whole = run(which, userpass, b, n, &need, &why), step;

	if (whole < 0 && !why)
		abort();
	if (whole == 0 && (need <= n || need > S5_MAX_MSG))
		abort();
	if (whole > 0 && (size_t)whole > n)
		abort();
	/* the plugin's way: parse what it has, read up to `need`, never beyond */
	for (;;) {
		why = NULL;
		step = run(which, userpass, b, have, &need, &why);
		if (step != 0)
			break;
		if (need <= have || need > S5_MAX_MSG)
			abort();
		if (have == n)
			break;
		/* a read of need - have bytes may return fewer: here, the rest of the input */
		have = need < n ? need : n;
	}
	if (step != whole)
		abort();
}

static void check_udp(const uint8_t *b, size_t n)
{
	union xp_sockaddr from;
	const char *why = NULL;
	uint8_t frag = 0, re[S5_UDP_MAX_HDR];
	ssize_t hl = s5_udp_parse(b, n, &from, &frag, &why), rl;

	if (hl < 0) {
		if (!why)
			abort();
		return;
	}
	if ((size_t)hl > n || hl < 3 + 1 + 1 + 1 + 2 || hl > S5_UDP_MAX_HDR)
		abort();
	if (from.sa.sa_family == AF_UNSPEC)
		return; /* a name: re-encoding it depends on its characters, not checked here */
	rl = s5_udp_header(re, sizeof(re), &from, NULL);
	re[2] = frag;
	if (rl != hl || memcmp(re, b, (size_t)hl))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;
	int which;

	if (size < 1)
		return 0;
	which = data[0] & 3;
	/* a copy of exactly the message, so ASan catches any read past its end */
	copy = malloc(size - 1 ? size - 1 : 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, size - 1);
	if (which == 3)
		check_udp(copy, size - 1);
	else
		check_tcp(which, data[0] & 4, copy, size - 1);
	free(copy);
	return 0;
}
