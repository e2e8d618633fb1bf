/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a descriptor too short to even hold its ABI version. */
#include "fake.h"

static const struct xp_plugin_desc desc = {FAKE_DESC("tiny_size"), .size = 4};

FAKE_ENTRY(&desc)
