/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: built for plugin ABI 2.0. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {FAKE_DESC("major2"), .abi_major = 2, .abi_minor = 0, .outbound = &ops};

FAKE_ENTRY(&desc)
