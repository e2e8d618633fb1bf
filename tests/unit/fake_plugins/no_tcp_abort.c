/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: XP_OUTBOUND_TCP without tcp_abort. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS, .tcp_abort = NULL};
static const struct xp_plugin_desc desc = {FAKE_DESC("no_tcp_abort"), .outbound = &ops};

FAKE_ENTRY(&desc)
