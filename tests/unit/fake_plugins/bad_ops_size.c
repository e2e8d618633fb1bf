/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: an outbound ops table with a size smaller than ABI 1.0's. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS, .size = 8};
static const struct xp_plugin_desc desc = {FAKE_DESC("bad_ops_size"), .outbound = &ops};

FAKE_ENTRY(&desc)
