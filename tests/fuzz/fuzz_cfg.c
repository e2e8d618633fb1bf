/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_cfg - cfg_parse() on arbitrary bytes.
 *
 * Beyond "no crash, no leak, no hang" it checks the contract: success means no error text and
 * a route that compiles (every target was checked to have an outbound); failure means
 * -EINVAL with at least one "path:line: message" line (or -ENOMEM).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"

#define FUZZ_PATH "/nonexistent-xp-fuzz/fuzz.ini" /* relative @file paths cannot resolve */

/* '@' then optional blanks then '/': an absolute @file would read the host's files, which
 * makes runs depend on the machine; the rule fuzzer covers @file with its own data. */
static int refers_to_host_file(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (d[i] != '@')
			continue;
		size_t j = i + 1;

		while (j < n && (d[j] == ' ' || d[j] == '\t'))
			j++;
		if (j < n && d[j] == '/')
			return 1;
	}
	return 0;
}

static int ob_index(void *ctx, const char *name)
{
	const struct cfg *c = ctx;

	for (size_t i = 0; i < c->n_outbounds; i++)
		if (!strcmp(c->outbounds[i].name, name))
			return (int)i + 1;
	return -ENOENT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg *c = NULL;
	char *errs = NULL;
	int rc;

	if (refers_to_host_file(data, size))
		return -1; /* not added to the corpus */
	rc = cfg_parse(FUZZ_PATH, (const char *)data, size, &c, &errs);
	if (rc == 0) {
		struct rule_image img;
		char err[256];

		if (!c || errs)
			abort();
		int crc = rules_compile(&c->route, size & 1, ob_index, c, &img, err, sizeof(err));

		if (crc == 0)
			rule_image_free(&img);
		else if (crc != -E2BIG && crc != -ENOMEM)
			abort(); /* -ENOENT here would be a target cfg failed to check */
		for (size_t i = 0; i < c->n_sections; i++)
			for (size_t k = 0; k < c->sections[i].n_kv; k++)
				if (!cfg_get(c, c->sections[i].name, c->sections[i].kv[k].key))
					abort();
		for (size_t i = 0; i < c->n_outbounds; i++)
			if (cfg_outbound_find(c, c->outbounds[i].name) != &c->outbounds[i] ||
			    !c->outbounds[i].plugin || !c->outbounds[i].section)
				abort();
		cfg_free(c);
		return 0;
	}
	if (c)
		abort();
	if (rc == -ENOMEM) {
		free(errs);
		return 0;
	}
	if (rc != -EINVAL || !errs || !*errs || errs[strlen(errs) - 1] != '\n')
		abort();
	/* every line is "path:line: message" or "path: message" */
	for (const char *l = errs; *l; l = strchr(l, '\n') + 1)
		if (strncmp(l, FUZZ_PATH ":", strlen(FUZZ_PATH) + 1))
			abort();
	free(errs);
	return 0;
}
