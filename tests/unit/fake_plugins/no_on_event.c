/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: an event_mask without on_event. */
#include "fake.h"

static const struct xp_plugin_desc desc = {
	.size = sizeof(desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "no_on_event",
	.event_mask = XP_EVENT_MASK(XP_EVENT_FLOW_END),
};

FAKE_ENTRY(&desc)
