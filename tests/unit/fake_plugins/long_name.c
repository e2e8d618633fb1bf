/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a 32-character name (the limit is 31). */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("abcdefghijklmnopqrstuvwxyz012345"),
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
