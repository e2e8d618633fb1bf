/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: instance_new without instance_free. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("no_instance_free"),
	.instance_free = NULL,
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
