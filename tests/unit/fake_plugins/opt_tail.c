/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Options from a "future" build with one more field per option; FAKE_TAIL is the value in the
 * second option's extra field: 0 is accepted, anything else refused.
 */
#include "fake.h"

struct cfg {
	const char *s;
	int64_t i;
};

struct bigger_option {
	struct xp_option o;
	uint64_t future;
};

static const struct bigger_option options[] = {
	{.o = XP_OPT(struct cfg, s, "s", XP_OPT_STRING, "x", 0, NULL)},
	{.o = XP_OPT(struct cfg, i, "i", XP_OPT_INT, "3", 0, NULL), .future = FAKE_TAIL},
	{.o = XP_OPTION_END},
};

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC(FAKE_NAME),	  .option_size = sizeof(struct bigger_option),
	.options = &options[0].o, .config_size = sizeof(struct cfg),
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
