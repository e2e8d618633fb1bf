/* SPDX-License-Identifier: GPL-2.0-only */
/* Valid, but its init fails. */
#include "fake.h"

static int init_fail(const struct xp_host *host, xp_handle_t *self, void **state)
{
	return -EPERM;
}

static void fini_never(void *state)
{
	/* the host must not call fini after a failed init: crash loudly if it does */
	__builtin_trap();
}

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};
static const struct xp_plugin_desc desc = {
	FAKE_DESC("init_fails"),
	.init = init_fail,
	.fini = fini_never,
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
