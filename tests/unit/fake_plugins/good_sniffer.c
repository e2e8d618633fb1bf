/* SPDX-License-Identifier: GPL-2.0-only */
/* A valid sniffer-only plugin, without version or summary (the core fills in ""). */
#include "fake.h"

static const uint16_t ports[] = {443, 0};
static const struct xp_sniffer_ops ops = {
	.size = sizeof(ops),
	.caps = XP_SNIFF_TCP | XP_SNIFF_UDP,
	.ports = ports,
	.max_bytes = 4096,
	.sniff = fake_sniff,
};

static const struct xp_plugin_desc desc = {
	.size = sizeof(desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "good_sniffer",
	.kinds = XP_KIND_SNIFFER,
	.instance_new = fake_instance_new,
	.instance_free = fake_instance_free,
	.sniffer = &ops,
	/* a table for a kind it does not declare: ignored, never exposed */
	.dns = (const struct xp_dns_ops *)&ops,
};

FAKE_ENTRY(&desc)
