/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: option_size smaller than ABI 1.0's struct xp_option. */
#include "fake.h"

struct cfg {
	const char *s;
	int64_t i;
	int e;
};

static const struct xp_option options[] = {
	XP_OPT(struct cfg, s, "s", XP_OPT_STRING, NULL, 0, NULL),
	XP_OPTION_END,
};

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("opt_size_small"),	   .option_size = 16, .options = options,
	.config_size = sizeof(struct cfg), .outbound = &ops,
};

FAKE_ENTRY(&desc)
