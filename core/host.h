/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * host - the table of host functions handed to plugins (struct xp_host).
 *
 * Most entries forward to the module that owns the object (loop.c for loops, io and timers,
 * conn.c for connections). What needs the daemon's state (the datapath maps, the live config,
 * the mark) goes through a struct host_env the daemon installs, so the table can be tested
 * against a fake environment.
 */
#ifndef XP_HOST_H
#define XP_HOST_H

#include <stdint.h>

#include <xproxy/bpf_abi.h>
#include <xproxy/plugin.h>

#include "addr.h" /* addr16_from(), addr16_to_sockaddr() */

struct host_env {
	void *ctx;
	int (*flow_lookup)(void *ctx, const struct xp_tuple *t, struct xp_flow *out);
	int (*dst_set)(void *ctx, const struct xp_dst_key *k, const struct xp_dst_verdict *v);
	int (*dst_del)(void *ctx, const struct xp_dst_key *k);
	const char *(*config_get)(void *ctx, const char *section, const char *key);
	uint64_t (*now_ns)(void); /* the bpf_ktime_get_ns() clock */
	uint32_t mark;		  /* SO_MARK of upstream sockets */
};

/* Install the environment (main thread, before any plugin is initialised). A copy is kept. */
void host_set_env(const struct host_env *env);
const struct xp_host *host_table(void);

/* Counters created by plugins, for the statistics dump. */
void host_counters_foreach(void (*fn)(const char *name, uint64_t value, void *arg), void *arg);
void host_counters_free(void);

/* Tuple helpers shared with the daemon: IPv4 becomes IPv4-mapped. 0 or -EAFNOSUPPORT. */
int host_tuple_from(struct xp_tuple *t, const union xp_sockaddr *src,
		    const union xp_sockaddr *dst, uint8_t l4proto);

#endif
