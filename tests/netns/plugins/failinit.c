/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * failinit.c - a test plugin whose init fails, to check that xproxyd reports it with one clear
 * line and exits instead of running half set up.
 */
#include <errno.h>

#include <xproxy/plugin.h>

static int fail_init(const struct xp_host *host, xp_handle_t *self, void **state)
{
	host->log(self, XP_LOG_ERROR, "refusing to start (this plugin always does)");
	return -ENOTRECOVERABLE;
}

static int inst_new(void *state, const struct xp_host *host, xp_handle_t *self,
		    const void *config, void **inst)
{
	return -EINVAL;
}

static void inst_free(void *inst)
{
}

static int tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *t, void **cctx)
{
	return -ENOSYS;
}

static void tcp_abort(void *inst, void *cctx)
{
}

static const struct xp_outbound_ops ops = {
	.size = sizeof(ops),
	.caps = XP_OUTBOUND_TCP,
	.tcp_connect = tcp_connect,
	.tcp_abort = tcp_abort,
};

static const struct xp_plugin_desc desc = {
	.size = sizeof(desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "failinit",
	.version = "1",
	.summary = "test plugin whose init fails",
	.kinds = XP_KIND_OUTBOUND,
	.init = fail_init,
	.instance_new = inst_new,
	.instance_free = inst_free,
	.outbound = &ops,
};

const struct xp_plugin_desc *xp_plugin_query(uint32_t host_abi)
{
	return &desc;
}
