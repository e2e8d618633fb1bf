/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a descriptor shorter than ABI 1.0's. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("short_size"),
	.size = offsetof(struct xp_plugin_desc, dns),
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
