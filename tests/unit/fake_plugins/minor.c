/* SPDX-License-Identifier: GPL-2.0-only */
/* A valid outbound claiming plugin ABI 1.FAKE_MINOR (built several times by meson). */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC(FAKE_NAME),
	.abi_minor = FAKE_MINOR,
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
