/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: no xp_plugin_query symbol; the entry point is exported under a misspelled name.
 * (Hiding the right name is not possible: <xproxy/plugin.h> declares it exported.) */
#include "fake.h"

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {FAKE_DESC("no_entry"), .outbound = &ops};

XP_PLUGIN_EXPORT const struct xp_plugin_desc *xp_plugin_querry(uint32_t host_abi);
const struct xp_plugin_desc *xp_plugin_querry(uint32_t host_abi)
{
	return &desc;
}
