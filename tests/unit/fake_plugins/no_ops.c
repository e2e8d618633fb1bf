/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: kind outbound without an outbound ops table. */
#include "fake.h"

static const struct xp_plugin_desc desc = {FAKE_DESC("no_ops")};

FAKE_ENTRY(&desc)
