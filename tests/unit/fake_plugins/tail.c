/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A descriptor from a "future" build with one more field than this host knows; FAKE_TAIL is its
 * value: 0 is accepted (the field is unused), anything else refused.
 */
#include "fake.h"

struct bigger_desc {
	struct xp_plugin_desc d;
	uint64_t future;
};

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct bigger_desc desc = {
	.d = {FAKE_DESC(FAKE_NAME), .size = sizeof(struct bigger_desc), .outbound = &ops},
	.future = FAKE_TAIL,
};

FAKE_ENTRY(&desc.d)
