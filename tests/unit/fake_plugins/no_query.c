/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: a dns plugin without query. */
#include "fake.h"

static const struct xp_dns_ops ops = {.size = sizeof(ops)};
static const struct xp_plugin_desc desc = {FAKE_DESC("no_query"), .kinds = XP_KIND_DNS,
					   .dns = &ops};

FAKE_ENTRY(&desc)
