/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: "plugin" used as an option name (it names the plugin in the INI). */
#include "fake.h"

struct cfg {
	const char *s;
	int64_t i;
	int e;
};

static const struct xp_option options[] = {
	XP_OPT(struct cfg, s, "plugin", XP_OPT_STRING, NULL, 0, NULL),
	XP_OPTION_END,
};

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("opt_plugin"), .option_size = sizeof(struct xp_option),
	.options = options,	 .config_size = sizeof(struct cfg),
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
