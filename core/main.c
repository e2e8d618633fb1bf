/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * main.c - xproxyd's command line.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xp_config.h"

#include "cfg.h"
#include "daemon.h"
#include "log.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: xproxyd [OPTIONS]\n"
		"Transparent proxy for Linux routers and hosts: tc eBPF classifies every flow,\n"
		"plugins proxy the ones the [route] rules send to an outbound.\n"
		"\n"
		"  -c, --config FILE         configuration file (default: the embedded demo\n"
		"                            configuration; see --print-default-config)\n"
		"  -t, --test                validate the configuration and its plugins, then exit\n"
		"                            (0 = valid, 1 = errors, printed as file:line: message)\n"
		"  -l, --log-level LEVEL     error, warn, info, debug or trace (overrides the file)\n"
		"  -P, --plugin-dir DIR      load plugins from DIR (overrides $XPROXY_PLUGIN_DIR and\n"
		"                            [global] plugin_dir)\n"
		"      --print-default-config  print the embedded configuration and exit\n"
		"  -V, --version             print the version and exit\n"
		"  -h, --help                this help\n"
		"\n"
		"Signals: SIGINT/SIGTERM stop and remove everything xproxyd set up; SIGHUP reloads\n"
		"the configuration (rules, outbounds, timeouts, fail mode, log level); SIGUSR1 logs\n"
		"statistics.\n"
		"Documentation: docs/configuration.md, docs/plugin-guide.md.\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "plugin-dir", required_argument, NULL, 'P' },
		{ "print-default-config", no_argument, NULL, 'D' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon_opts o = { .log_level = -1 };
	bool test = false;
	int c;

	while ((c = getopt_long(argc, argv, "c:tl:P:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config_path = optarg;
			break;
		case 't':
			test = true;
			break;
		case 'l':
			o.log_level = log_level_parse(optarg);
			if (o.log_level < 0) {
				fprintf(stderr, "xproxyd: bad log level '%s' (error, warn, info, "
						"debug, trace)\n",
					optarg);
				return 2;
			}
			break;
		case 'P':
			o.plugin_dir = optarg;
			break;
		case 'D':
			fputs(cfg_default_text, stdout);
			return 0;
		case 'V':
			printf("xproxyd %s (plugin ABI %d.%d, BPF ABI %d)\n", XP_VERSION,
			       XP_PLUGIN_ABI_MAJOR, XP_PLUGIN_ABI_MINOR, XP_BPF_ABI_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "xproxyd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return test ? daemon_check(&o) : daemon_run(&o);
}
