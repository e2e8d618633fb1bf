/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: no name at all. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {FAKE_DESC(NULL), .outbound = &ops};

FAKE_ENTRY(&desc)
