// SPDX-License-Identifier: GPL-2.0-only
/*
 * dp_netns_abi.bpf.c - an object built for the next BPF ABI version, so test_dp_netns can check
 * that dp_create() refuses it with "BPF ABI mismatch: object N, daemon M" (and cleans up).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <xproxy/bpf_abi.h>

const volatile struct xp_bpf_config xp_cfg = { .abi_version = XP_BPF_ABI_VERSION + 1 };
struct xp_ctl xp_ctl = {};

SEC("tc")
int xp_lan_ingress(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
