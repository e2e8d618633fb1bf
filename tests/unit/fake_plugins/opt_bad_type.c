/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: an option type this host does not know. */
#include "fake.h"

struct cfg {
	const char *s;
	int64_t i;
	int e;
};

static const struct xp_option options[] = {
	XP_OPT(struct cfg, s, "s", XP_OPT_STRING, NULL, 0, NULL),
	XP_OPT(struct cfg, i, "weird", 42, NULL, 0, NULL),
	XP_OPTION_END,
};

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("opt_bad_type"), .option_size = sizeof(struct xp_option),
	.options = options,	   .config_size = sizeof(struct cfg),
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
