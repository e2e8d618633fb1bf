/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: the entry point is not exported (hidden like everything else). */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {FAKE_DESC("no_entry"), .outbound = &ops};

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi);
const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	return &desc;
}
