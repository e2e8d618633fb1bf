/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: an INT field that would end past config_size. */
#include "fake.h"

struct cfg {
	const char *s;
	int64_t i;
	int e;
};

static const struct xp_option options[] = {
	{.name = "far", .type = XP_OPT_INT, .offset = sizeof(struct cfg) - 4},
	XP_OPTION_END,
};

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("opt_offset"), .option_size = sizeof(struct xp_option),
	.options = options,	 .config_size = sizeof(struct cfg),
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
