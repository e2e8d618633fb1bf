/* SPDX-License-Identifier: GPL-2.0-only */
/* Valid, but named like good_outbound.so: the registry must refuse the second. */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {FAKE_DESC("good_outbound"), .outbound = &ops};

FAKE_ENTRY(&desc)
