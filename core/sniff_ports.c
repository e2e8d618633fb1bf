/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * sniff_ports - the `ports` value of a [sniff.NAME] section (sniff.h). Its own file so the
 * parser's fuzz target (tests/fuzz/fuzz_sniff_ports.c) builds without the rest of the core.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sniff.h"

static int parse_port(const char *s, size_t n, uint16_t *out)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

int sniff_ports_parse(const char *s, struct sniff_ports *out, char *msg, size_t len)
{
	const char *p = s;

	memset(out, 0, sizeof(*out));
	while (*p == ' ' || *p == '\t')
		p++;
	if (!strcmp(p, "any") || !strncmp(p, "any ", 4) || !strncmp(p, "any\t", 4)) {
		for (p += 3; *p == ' ' || *p == '\t'; p++)
			;
		if (!*p) {
			out->any = true;
			return 0;
		}
	}
	for (p = s;;) {
		const char *tok, *end, *dash;
		uint16_t lo, hi;

		while (*p == ' ' || *p == '\t')
			p++;
		tok = p;
		end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		p = *end ? end + 1 : end;
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (end == tok) {
			snprintf(msg, len, "'%.64s' is not a list of ports (an empty entry)", s);
			return -EINVAL;
		}
		dash = memchr(tok, '-', (size_t)(end - tok));
		if (dash ? parse_port(tok, (size_t)(dash - tok), &lo) ||
				   parse_port(dash + 1, (size_t)(end - dash - 1), &hi)
			 : parse_port(tok, (size_t)(end - tok), &lo)) {
			snprintf(msg, len,
				 "'%.*s' is not a port (1-65535) or a range LO-HI (any: every port)",
				 (int)(end - tok > 64 ? 64 : end - tok), tok);
			return -EINVAL;
		}
		if (!dash)
			hi = lo;
		if (lo > hi) {
			snprintf(msg, len, "range %u-%u is backwards", lo, hi);
			return -EINVAL;
		}
		if (out->n >= SNIFF_PORT_RANGES) {
			snprintf(msg, len, "more than %d ports and ranges", SNIFF_PORT_RANGES);
			return -EINVAL;
		}
		out->r[out->n].lo = lo;
		out->r[out->n].hi = hi;
		out->n++;
		if (!*p && p[-1] != ',')
			return 0;
		if (!*p) {
			snprintf(msg, len, "'%.64s' is not a list of ports (an empty entry)", s);
			return -EINVAL;
		}
	}
}

bool sniff_ports_has(const struct sniff_ports *p, uint16_t port)
{
	if (p->any)
		return true;
	for (unsigned i = 0; i < p->n && i < SNIFF_PORT_RANGES; i++)
		if (port >= p->r[i].lo && port <= p->r[i].hi)
			return true;
	return false;
}
