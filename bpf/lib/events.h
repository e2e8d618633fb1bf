/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * events.h - records into the xp_events ring buffer.
 *
 * API:
 *   ev_flow(type, hook, tuple, flow, tcp_state, tag)   FLOW_NEW / FLOW_END (struct xp_ev_flow);
 *                                           the other fields come from the flow entry; none
 *                                           while xp_ctl.flags has XP_CTL_NO_FLOW_EVENTS
 *   ev_drop(hook, pkt, ifindex, reason)     DROP (struct xp_ev_drop), only when
 *                                           xp_cfg.flags & XP_CFG_DROP_EVENTS
 *   ev_map_full(hook, map, err)             MAP_FULL (struct xp_ev_map_full)
 *
 * Every record starts with struct xp_ev_hdr. A full ring buffer costs the event, never the
 * packet: the reserve fails, stats.events_lost is incremented, the caller carries on.
 * Records are fixed-size reserves (no bpf_ringbuf_output copy through the stack).
 */
#ifndef XP_BPF_EVENTS_H
#define XP_BPF_EVENTS_H

#include "common.h"
#include "maps.h"

static __always_inline void ev_hdr(struct xp_ev_hdr *h, __u16 type, __u16 len, __u8 hook)
{
	h->version = XP_EV_VERSION;
	h->type = type;
	h->len = len;
	h->hook = hook;
	h->pad = 0;
	h->ts_ns = bpf_ktime_get_ns();
}

static __always_inline void ev_lost(void)
{
	struct xp_stats *st = xp_stats_get();

	if (st)
		st->events_lost++;
}

static __always_inline void ev_flow(__u16 type, __u8 hook, const struct xp_tuple *t,
				    const struct xp_flow *f, __u8 tcp_state, __u32 tag)
{
	struct xp_ev_flow *e;

	if (XP_READ_ONCE(xp_ctl.flags) & XP_CTL_NO_FLOW_EVENTS)
		return;
	e = bpf_ringbuf_reserve(&xp_events, sizeof(*e), 0);
	if (!e) {
		ev_lost();
		return;
	}
	ev_hdr(&e->hdr, type, sizeof(*e), hook);
	__builtin_memcpy(&e->tuple, t, sizeof(e->tuple));
	e->ifindex = f->ifindex;
	e->rule_id = f->rule_id;
	e->tag = tag;
	e->outbound_id = f->outbound_id;
	e->verdict = f->verdict;
	e->vsrc = f->vsrc;
	e->origin = f->origin;
	e->tcp_state = tcp_state;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void ev_drop(__u8 hook, const struct xp_pkt *p, __u32 ifindex, __u32 reason)
{
	struct xp_ev_drop *e;

	if (!(xp_cfg.flags & XP_CFG_DROP_EVENTS))
		return;
	e = bpf_ringbuf_reserve(&xp_events, sizeof(*e), 0);
	if (!e) {
		ev_lost();
		return;
	}
	ev_hdr(&e->hdr, XP_EV_DROP, sizeof(*e), hook);
	__builtin_memcpy(&e->tuple, &p->t, sizeof(e->tuple));
	e->ifindex = ifindex;
	e->reason = reason;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void ev_map_full(__u8 hook, __u32 map, __s32 err)
{
	struct xp_ev_map_full *e;

	e = bpf_ringbuf_reserve(&xp_events, sizeof(*e), 0);
	if (!e) {
		ev_lost();
		return;
	}
	ev_hdr(&e->hdr, XP_EV_MAP_FULL, sizeof(*e), hook);
	e->map = map;
	e->err = err;
	bpf_ringbuf_submit(e, 0);
}

#endif /* XP_BPF_EVENTS_H */
