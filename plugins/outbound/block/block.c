/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * block - the refusing outbound, for flows a plugin or a domain rule routes to it after the
 * client's handshake was already accepted by the proxy (the datapath's BLOCK verdict drops in
 * the kernel before that). The connection fails at once, without any upstream socket:
 *   mode = reset  the core resets the client, as a refused server would (-ECONNREFUSED)
 *   mode = close  the core closes the client with a FIN (-ECONNABORTED)
 */
#include <errno.h>
#include <stdlib.h>

#include <xproxy/plugin.h>

enum block_mode {
	BLOCK_RESET = 0, /* index in the choices string below */
	BLOCK_CLOSE = 1,
};

struct block_cfg {
	int mode; /* enum block_mode */
};

static const struct xp_option block_options[] = {
	XP_OPT_CHOICE(struct block_cfg, mode, "mode", "reset", 0, "reset|close",
		      "how the client learns: a TCP reset, or a plain close (FIN)"),
	XP_OPTION_END,
};

struct block {
	const struct xp_host *host;
	int err; /* what conn_fail reports, from mode */
	xp_counter_t *blocked;
};

static int block_tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *target,
			     void **cctx)
{
	struct block *b = inst;

	*cctx = NULL;
	b->host->counter_add(b->blocked, 1);
	b->host->conn_fail(conn, b->err, "blocked by rule");
	return 0;
}

static void block_tcp_abort(void *inst, void *cctx)
{
	/* tcp_connect always reports before returning: nothing is ever pending */
}

static int block_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			      const void *config, void **inst)
{
	const struct block_cfg *cfg = config;
	struct block *b;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->host = host;
	b->err = cfg->mode == BLOCK_CLOSE ? -ECONNABORTED : -ECONNREFUSED;
	b->blocked = host->counter_new(self, "blocked", "connections refused");
	if (!b->blocked) {
		free(b);
		return -ENOMEM;
	}
	*inst = b;
	return 0;
}

static void block_instance_free(void *inst)
{
	free(inst);
}

static const struct xp_outbound_ops block_ops = {
	.size = sizeof(struct xp_outbound_ops),
	.caps = XP_OUTBOUND_TCP,
	.tcp_connect = block_tcp_connect,
	.tcp_abort = block_tcp_abort,
};

static const struct xp_plugin_desc block_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "block",
	.version = "1.0",
	.summary = "refuse the connection (reset or close the client)",
	.kinds = XP_KIND_OUTBOUND,
	.option_size = sizeof(struct xp_option),
	.options = block_options,
	.config_size = sizeof(struct block_cfg),
	.instance_new = block_instance_new,
	.instance_free = block_instance_free,
	.outbound = &block_ops,
};

XP_PLUGIN_EXPORT const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi);

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	return &block_desc;
}
