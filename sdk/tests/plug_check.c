/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * plug_check - load a plugin the way xproxyd does and check its descriptor (sdk-example test).
 *
 *   plug_check --abi                     print the plugin ABI this tree speaks ("1.0")
 *   plug_check FILE.so NAME KIND [OPT...] load FILE.so; its name must be NAME, it must have
 *                                         kind KIND (outbound|sniffer|dns), declare every OPT,
 *                                         and fill its defaults from an empty section.
 * Exit 0 when all holds, 1 with one line on stderr otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "plug.h"

static int kind_bit(const char *s)
{
	if (!strcmp(s, "outbound"))
		return XP_KIND_OUTBOUND;
	if (!strcmp(s, "sniffer"))
		return XP_KIND_SNIFFER;
	if (!strcmp(s, "dns"))
		return XP_KIND_DNS;
	return 0;
}

static int check(int argc, char **argv)
{
	struct cfg_section empty = {.name = "outbound.check", .line = 1};
	char err[1024], *errors = NULL;
	struct plugin *p;
	void *config;
	int i, rc;
	size_t j;

	rc = plug_load(argv[1], &p, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	rc = 1;
	if (strcmp(p->name, argv[2])) {
		fprintf(stderr, "plug_check: name is \"%s\", want \"%s\"\n", p->name, argv[2]);
		goto out;
	}
	if (!kind_bit(argv[3]) || !plug_has_kind(p, kind_bit(argv[3]))) {
		fprintf(stderr, "plug_check: kinds 0x%x lack %s\n", p->desc.kinds, argv[3]);
		goto out;
	}
	for (i = 4; i < argc; i++) {
		for (j = 0; j < p->n_options; j++)
			if (!strcmp(p->options[j].name, argv[i]))
				break;
		if (j == p->n_options) {
			fprintf(stderr, "plug_check: no option \"%s\"\n", argv[i]);
			goto out;
		}
	}
	if (plug_config_fill(p, "plug_check", &empty, &config, &errors)) {
		fprintf(stderr, "plug_check: defaults do not fill:\n%s", errors ? errors : "");
		free(errors);
		goto out;
	}
	plug_config_free(p, config);
	printf("%s %s: %s %s (ABI %u.%u), %zu options\n", argv[1], p->name, argv[3],
	       p->desc.version, p->desc.abi_major, p->desc.abi_minor, p->n_options);
	rc = 0;
out:
	plug_unload(p);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--abi")) {
		printf("%d.%d\n", XP_PLUGIN_ABI_MAJOR, XP_PLUGIN_ABI_MINOR);
		return 0;
	}
	if (argc < 4) {
		fprintf(stderr, "usage: plug_check --abi | FILE.so NAME KIND [OPTION...]\n");
		return 1;
	}
	return check(argc, argv);
}
