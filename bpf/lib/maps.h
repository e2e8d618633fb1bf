/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * maps.h - every map and global of the datapath, in one place.
 *
 * Names, types, keys and values are a contract with core/dp.c (the loader resizes xp_flows and
 * xp_events before load, fills xp_ifaces/xp_local_addrs/xp_listeners, writes the rule maps and
 * xp_ctl at run time); the layouts live in include/xproxy/bpf_abi.h.
 *
 *   xp_cfg   const volatile (.rodata): load-time config, constant for the verifier
 *   xp_ctl   .bss: control block the daemon writes through the skeleton's mmap
 */
#ifndef XP_BPF_MAPS_H
#define XP_BPF_MAPS_H

#include "common.h"

const volatile struct xp_bpf_config xp_cfg = {.abi_version = XP_BPF_ABI_VERSION};
struct xp_ctl xp_ctl = {};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* global.flow_entries; resized by the loader */
	__type(key, struct xp_tuple);
	__type(value, struct xp_flow);
} xp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct xp_dst_key);
	__type(value, struct xp_dst_verdict);
} xp_dst_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * XP_MAX_RULES);
	__type(key, __u32);
	__type(value, struct xp_rule);
} xp_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* LPM tries must not be preallocated */
	__type(key, struct xp_cidr_key);
	__type(value, struct xp_cidr_val);
} xp_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * XP_MAX_PRANGES);
	__type(key, __u32);
	__type(value, struct xp_prange);
} xp_pranges SEC(".maps");

/* Values are socket fds from userspace; 64-bit values so a lookup from userspace would return
 * the socket cookie (libbpf and the kernel accept 4 or 8). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2 * XP_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} xp_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XP_MAX_LOCAL_ADDRS);
	__type(key, __u8[16]);
	__type(value, __u8);
} xp_local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XP_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct xp_iface);
} xp_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XP_MAX_FRAGS);
	__type(key, struct xp_frag_key);
	__type(value, struct xp_tuple);
} xp_frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* resized by the loader */
} xp_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xp_stats);
} xp_stats SEC(".maps");

static __always_inline struct xp_stats *xp_stats_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xp_stats, &zero);
}

#endif /* XP_BPF_MAPS_H */
