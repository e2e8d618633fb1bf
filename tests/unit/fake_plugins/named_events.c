/* SPDX-License-Identifier: GPL-2.0-only */
/* A subscriber to XP_EVENT_FLOW_NAMED (ABI 1.2), claiming ABI 1.FAKE_MINOR: accepted for 1.2,
 * refused for 1.1 (a 1.1 plugin cannot know the bit). */
#include "fake.h"

static const struct xp_plugin_desc desc = {
	.size = sizeof(desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = FAKE_MINOR,
	.name = FAKE_NAME,
	.version = "1",
	.event_mask = XP_EVENT_MASK(XP_EVENT_FLOW_NEW) | XP_EVENT_MASK(XP_EVENT_FLOW_NAMED),
	.on_event = fake_on_event,
};

FAKE_ENTRY(&desc)
