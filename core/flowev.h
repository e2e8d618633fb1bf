/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * flowev - XP_EVENT_FLOW_NAMED (ABI 1.2): the decision userspace made for a flow, with the name
 * that decided it and the sniffer that found the name.
 *
 * The datapath's FLOW_NEW is written before any byte of the flow is read, so it cannot say what
 * a sniffer found. The connection (conn.c) and UDP session (udp.c) code calls flowev_named()
 * on its worker once it knows: after a sniff decision (found, none, timeout) and for flows a DNS
 * answer named. Plugins get events on the main thread (plugin.h), so the record is copied,
 * strings included, and posted to the main loop, where the sink (daemon.c) hands it to every
 * subscribed plugin. Nothing is copied or posted unless a plugin subscribed (flowev_set_wanted)
 * or the debug log is on; the debug line ("flow named ...") is written on the worker.
 */
#ifndef XP_FLOWEV_H
#define XP_FLOWEV_H

#include <stdbool.h>

#include <xproxy/plugin.h>

/* Main thread, before the workers start: who receives the events (NULL: nobody). The event and
 * its strings are valid for the call only. */
void flowev_set_sink(void (*sink)(const struct xp_event *ev));
/* Any thread: does a loaded plugin subscribe to XP_EVENT_FLOW_NAMED? (start and every reload) */
void flowev_set_wanted(bool on);
bool flowev_wanted(void);

/* Worker: report the decision for a flow. `info` carries the final route, source, rule_id,
 * outbound, domain and sniffer; `who` names the loop for the log line. */
void flowev_named(const char *who, const struct xp_conn_info *info);

/* Build the event for `info` (strings borrowed from it): used by flowev_named and tests. */
void flowev_fill(struct xp_event *ev, const struct xp_conn_info *info, uint64_t ts_ms);

#endif
