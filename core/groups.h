/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * groups - the daemon's live [group.NAME] set (core/group.c) and its health checks.
 *
 * Checks run on the main loop through dial_new() (host->dial): per outbound member of every
 * group that needs health, every `interval`, a TCP connection through the member to the check
 * target, then for check_url a GET and a status line. Routing (worker threads) resolves a
 * group's outbound id to a live leaf outbound under one mutex.
 */
#ifndef XP_GROUPS_H
#define XP_GROUPS_H

#include <stdint.h>

#include "cfg.h"
#include "loop.h"
#include "outbound.h"

/* Main thread, after outbounds_apply() succeeded: make the live groups match cfg (health of
 * unchanged members carried over) and restart the checks. 0 or -errno (the set stays). */
int groups_apply(const struct cfg *cfg, struct xp_loop *main);
/* Main thread: stop every check and drop the set. */
void groups_clear(void);

/* Thread-safe: the outbound a new connection to group `id` (or named `name`) uses, with a
 * reference; NULL when id is not a group, or no member is alive. */
struct outbound *groups_get(uint16_t id);
struct outbound *groups_get_by_name(const char *name);

/* SIGUSR1: each member's state and average latency. */
void groups_log_stats(void);

#endif
