/* SPDX-License-Identifier: GPL-2.0-only */
/* A valid dns-kind plugin (no cancel: optional). */
#include "fake.h"

static const struct xp_dns_ops ops = {.size = sizeof(ops), .query = fake_query};

static const struct xp_plugin_desc desc = {
	FAKE_DESC("good_dns"),
	.kinds = XP_KIND_DNS,
	.dns = &ops,
};

FAKE_ENTRY(&desc)
