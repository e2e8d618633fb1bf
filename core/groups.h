/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * groups - the daemon's live [group.NAME] set (core/group.c) and its health checks.
 *
 * Checks run on the main loop through dial_new() (host->dial): per outbound member of every
 * group that needs health, every `interval`, a TCP connection through the member to the check
 * target, then for check_url a GET and a status line. Routing (worker threads) resolves a
 * group's outbound id to a live leaf outbound under one mutex. With interrupt = yes, a member
 * that dies or that the selection leaves has its connections through the group closed on
 * every worker (conn_cut_post, udp_cut_post), so that clients reconnect through the new one.
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
 * reference; NULL when id is not a group, or no member is alive. *via (NULL: not wanted) is
 * set to the groups the choice went through (this one first) when a member is returned: the
 * connection keeps it (conn_route.via) so that interrupt = yes can find it. */
struct outbound *groups_get(uint16_t id, struct ob_via *via);
struct outbound *groups_get_by_name(const char *name, struct ob_via *via);

/* SIGUSR1: each member's state and average latency, and what interrupt = yes closed. */
void groups_log_stats(void);

#endif
