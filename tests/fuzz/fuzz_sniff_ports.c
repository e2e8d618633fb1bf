/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_sniff_ports - sniff_ports_parse() on arbitrary text: never a crash or an overflow, and
 * what it accepts is a well-formed claim (1 <= lo <= hi, at most SNIFF_PORT_RANGES entries, each
 * entry's ends claimed, "any" alone) with an empty message; what it refuses has a message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sniff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sniff_ports p;
	char msg[256];
	char *s;
	int rc;

	if (size > 4096)
		return 0;
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0'; /* the INI value is a C string: stop at the first NUL like the parser */
	msg[0] = '\0';
	rc = sniff_ports_parse(s, &p, msg, sizeof(msg));
	if (rc == 0) {
		if (msg[0])
			abort();
		if (p.any && p.n)
			abort();
		if (!p.any && (p.n == 0 || p.n > SNIFF_PORT_RANGES))
			abort();
		for (unsigned i = 0; i < p.n; i++) {
			if (p.r[i].lo == 0 || p.r[i].lo > p.r[i].hi)
				abort();
			if (!sniff_ports_has(&p, p.r[i].lo) || !sniff_ports_has(&p, p.r[i].hi))
				abort();
		}
		if (!p.any && sniff_ports_has(&p, 0))
			abort();
	} else if (rc != -EINVAL || !msg[0] || !memchr(msg, '\0', sizeof(msg))) {
		abort();
	}
	free(s);
	return 0;
}
