/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Shared scaffolding for the fake plugins test_plug loads: do-nothing callbacks and a base
 * descriptor, so each fake_*.c file differs from a valid plugin in exactly the one way its
 * refusal test is about.
 */
#ifndef FAKE_H
#define FAKE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <xproxy/plugin.h>

static inline int fake_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
				    const void *config, void **inst)
{
	*inst = state;
	return 0;
}

static inline void fake_instance_free(void *inst)
{
}

static inline void fake_on_event(void *state, const struct xp_event *ev)
{
}

static inline int fake_tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *target,
				   void **cctx)
{
	return -ENOSYS;
}

static inline void fake_tcp_abort(void *inst, void *cctx)
{
}

static inline int fake_sniff(void *inst, const struct xp_sniff_input *in,
			     struct xp_sniff_result *out)
{
	return XP_SNIFF_NOT_MINE;
}

static inline int fake_query(void *inst, xp_dns_query_t *q, const uint8_t *msg, size_t len)
{
	return -ENOSYS;
}

/* A complete outbound ops table. */
#define FAKE_OUTBOUND_OPS                                                                          \
	.size = sizeof(struct xp_outbound_ops), .caps = XP_OUTBOUND_TCP,                           \
	.tcp_connect = fake_tcp_connect, .tcp_abort = fake_tcp_abort

/* The fields of a valid outbound descriptor without options, named `nm`. */
#define FAKE_DESC(nm)                                                                              \
	.size = sizeof(struct xp_plugin_desc), .abi_major = XP_PLUGIN_ABI_MAJOR,                   \
	.abi_minor = XP_PLUGIN_ABI_MINOR, .name = (nm), .version = "0.0.1",                        \
	.summary = "test fake", .kinds = XP_KIND_OUTBOUND, .instance_new = fake_instance_new,      \
	.instance_free = fake_instance_free

/* Export `desc_expr` (a pointer to a descriptor) as the plugin's entry point. */
#define FAKE_ENTRY(desc_expr)                                                                      \
	XP_PLUGIN_EXPORT const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi);          \
	XP_PLUGIN_EXPORT const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)           \
	{                                                                                          \
		return (desc_expr);                                                                \
	}

#endif
