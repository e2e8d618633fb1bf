/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_ob_common - what plugins/outbound/common parses: a server's host:port (stream.c) and
 * the name rule (hostname.h), on arbitrary bytes.
 *
 * Input: one selector byte (the host buffer's size, 1..256), then the text (cut at a NUL).
 * Beyond crashes: a split host is NUL-terminated inside its buffer, non-empty, and is the
 * input's own bytes; the port is the rest of the input after the colon; a name the rule
 * accepts is 1..255 bytes of [A-Za-z0-9._-], and one it refuses has another byte or length.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/outbound/common/hostname.h"
#include "../../plugins/outbound/common/stream.h"

static int name_byte(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in, host[256];
	const char *port = NULL;
	size_t cap, len, nl;
	int ok;

	if (size < 1)
		return 0;
	cap = 1 + data[0];
	in = malloc(size);
	memcpy(in, data + 1, size - 1);
	in[size - 1] = 0;
	len = strlen(in);

	memset(host, 0x55, sizeof(host));
	if (!xpo_split_hostport(in, host, cap, &port)) {
		size_t hl = strnlen(host, cap);

		if (hl == 0 || hl >= cap)
			abort();
		if (!port || port < in || port > in + len || port[-1] != ':')
			abort();
		if (!strstr(in, host))
			abort();
	}

	nl = xpo_name_len(in);
	ok = len >= 1 && len <= 255;
	for (size_t i = 0; ok && i < len; i++)
		ok = name_byte(in[i]);
	if (ok ? nl != len : nl != 0)
		abort();
	free(in);
	return 0;
}
