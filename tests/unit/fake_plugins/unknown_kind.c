/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a kind bit this host does not know. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("unknown_kind"),
	.kinds = XP_KIND_OUTBOUND | 0x10,
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
