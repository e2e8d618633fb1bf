/* SPDX-License-Identifier: GPL-2.0-only */
/* A kind-less event subscriber: no instances, only on_event. */
#include "fake.h"

static const struct xp_plugin_desc desc = {
	.size = sizeof(desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "good-events_2",
	.version = "2",
	.event_mask = XP_EVENT_MASK(XP_EVENT_FLOW_NEW) | XP_EVENT_MASK(XP_EVENT_DROP),
	.on_event = fake_on_event,
};

FAKE_ENTRY(&desc)
