/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a required option with a default. */
#include "fake.h"

struct cfg {
	const char *s;
	int64_t i;
	int e;
};

static const struct xp_option options[] = {
	XP_OPT(struct cfg, s, "server", XP_OPT_HOSTPORT, "a:1", XP_OPT_REQUIRED, NULL),
	XP_OPTION_END,
};

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("opt_required_default"),
	.option_size = sizeof(struct xp_option),
	.options = options,
	.config_size = sizeof(struct cfg),
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
