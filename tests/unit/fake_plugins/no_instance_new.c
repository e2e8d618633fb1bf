/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a kind but no instance_new. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("no_instance_new"),
	.instance_new = NULL,
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
