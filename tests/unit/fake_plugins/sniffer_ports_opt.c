/* SPDX-License-Identifier: GPL-2.0-only */
/* A sniffer declaring an option "ports": valid as a plugin, refused in [sniff] plugins, where
 * [sniff.NAME] keeps that key for the core (test_sniff_opts). */
#include "fake.h"

struct cfg {
	const char *ports;
};

static const struct xp_option options[] = {
	XP_OPT(struct cfg, ports, "ports", XP_OPT_STRING, "443", 0, "would never be set"),
	XP_OPTION_END,
};

static const struct xp_sniffer_ops ops = {
	.size = sizeof(ops),
	.caps = XP_SNIFF_TCP,
	.max_bytes = 4096,
	.sniff = fake_sniff,
};

static const struct xp_plugin_desc desc = {
	.size = sizeof(desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "sniffer_ports_opt",
	.kinds = XP_KIND_SNIFFER,
	.option_size = sizeof(struct xp_option),
	.options = options,
	.config_size = sizeof(struct cfg),
	.instance_new = fake_instance_new,
	.instance_free = fake_instance_free,
	.sniffer = &ops,
};

FAKE_ENTRY(&desc)
