/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a default outside the bounds of its own option. */
#include "fake.h"

struct cfg {
	const char *s;
	int64_t i;
	int e;
};

static const struct xp_option options[] = {
	XP_OPT_RANGE(struct cfg, i, "count", XP_OPT_INT, "11", 0, 1, 10, NULL),
	XP_OPTION_END,
};

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("opt_default_range"),
	.option_size = sizeof(struct xp_option),
	.options = options,
	.config_size = sizeof(struct cfg),
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
