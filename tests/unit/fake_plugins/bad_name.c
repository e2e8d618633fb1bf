/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a name with characters outside [a-z0-9_-]. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {FAKE_DESC("Bad Name\n"), .outbound = &ops};

FAKE_ENTRY(&desc)
