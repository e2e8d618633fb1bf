/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a sniffer without sniff. */
#include "fake.h"

static const struct xp_sniffer_ops ops = {.size = sizeof(ops), .caps = XP_SNIFF_TCP};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("no_sniff"),
	.kinds = XP_KIND_SNIFFER,
	.sniffer = &ops,
};

FAKE_ENTRY(&desc)
