/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_link - link_parse() on arbitrary text. A link either parses into a known plugin with a
 * server option in host:port form, or is refused with a message and nothing to free.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct link_out o;
	char err[256];
	char *s = malloc(size + 1);
	int rc;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	rc = link_parse(s, &o, err, sizeof(err));
	if (rc == 0) {
		const char *server = NULL;

		if (!o.plugin || o.n == 0 || o.n > LINK_MAX_KV)
			abort();
		for (size_t i = 0; i < o.n; i++) {
			if (!o.kv[i].key || !o.kv[i].value)
				abort();
			if (!strcmp(o.kv[i].key, "server"))
				server = o.kv[i].value;
		}
		/* host:port with a port of 1..65535 */
		const char *c = server ? strrchr(server, ':') : NULL;
		long port = c ? strtol(c + 1, NULL, 10) : 0;

		if (!c || c == server || port < 1 || port > 65535)
			abort();
		link_out_free(&o);
	} else {
		if ((rc != -EINVAL && rc != -ENOMEM) || o.n != 0 || !err[0])
			abort();
	}
	free(s);
	return 0;
}
