// SPDX-License-Identifier: GPL-2.0-only
/* placeholder: the entry points are being written (issue 2). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <xproxy/bpf_abi.h>

const volatile struct xp_bpf_config xp_cfg = { .abi_version = XP_BPF_ABI_VERSION };
struct xp_ctl xp_ctl = {};

SEC("tc")
int xp_lan_ingress(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
