/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dp - the datapath from userspace (see dp.h for the life cycle).
 *
 * One code path for the embedded skeleton and for an object file (dp_opts.bpf_obj): both end
 * up as a struct bpf_object, and everything after that finds maps, programs and the two
 * globals by name. The globals are located through BTF (their DATASEC offsets), and .bss is
 * mmap'ed from its map fd after load, which works the same for both (a plain
 * bpf_object__load() in libbpf 1.1 does not remap .bss the way the skeleton loader does).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/if_arp.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "cfg.h"
#include "dp.h"
#include "log.h"
#include "netns.h"
#include "nl.h"
#include "rules.h"
#include "xproxy.skel.h"

#define DP_DEFAULT_VETH "xp0"
#define DP_MAX_DEVS	32

#define NS_PER_MS	      1000000ULL
#define NS_PER_S	      1000000000ULL
#define JANITOR_TCP_CLOSED_NS (60 * NS_PER_S)
#define JANITOR_DGRAM_NS      (300 * NS_PER_S)
#define JANITOR_ANY_NS	      (24 * 3600 * NS_PER_S)

struct dp_hook {
	enum bpf_tc_attach_point where;
	uint32_t handle; /* 0: nothing of ours attached */
};

struct dp_dev {
	char name[NL_IFNAMSIZ];
	int ifindex;
	unsigned type; /* ARPHRD_* */
	uint8_t mac[6];
	uint8_t flags;	  /* XP_IFACE_* */
	bool in_netns;	  /* xp0p: tc calls run inside the private netns */
	bool qdisc_known; /* qdisc_owned below has been decided */
	bool qdisc_owned; /* this run (or the crashed run it took over from) created clsact */
	struct dp_hook ingress, egress;
};

struct dp_addr_set {
	uint8_t (*addrs)[16];
	size_t n, cap;
};

struct dp_cidr_keys {
	struct xp_cidr_key *keys;
	size_t n;
};

/* Where the janitor is in a map's sweep (see dp_janitor()). */
struct sweep {
	uint32_t cursor;  /* the kernel's batch token (a bucket index for hash maps) */
	bool started;	  /* cursor valid */
	uint64_t seen;	  /* entries seen in the current sweep */
};

struct dp {
	struct bpf_object *obj;
	struct xproxy_bpf *skel; /* NULL when loaded from dp_opts.bpf_obj */
	struct xp_ctl *ctl;	 /* inside the mmap of .bss */
	void *bss;
	size_t bss_len;

	struct bpf_map *flows, *dst_verdicts, *rules, *cidrs, *pranges, *listeners, *local_addrs,
		*ifaces, *events, *stats;
	struct bpf_program *prog_lan, *prog_lan_l3, *prog_wan_egress, *prog_wan_egress_l3,
		*prog_wan_ingress, *prog_proxy_ingress, *prog_proxy_reply, *prog_proxy_lookup;
	struct bpf_link *lookup_link; /* xp_proxy_lookup on the private netns */

	struct nl *nl;	   /* host netns */
	struct nl *nl_sub; /* host netns, address notifications */
	struct netns *ns;
	struct netns_pair pair;
	bool pair_created;

	struct dp_dev devs[DP_MAX_DEVS]; /* LAN devices, then WAN devices */
	size_t n_lan, n_wan;
	struct dp_dev xp0, xp0p;
	bool attached;

	enum xp_redirect_mode redirect;
	char redirect_why[64];
	unsigned n_workers;

	struct ring_buffer *rb;
	dp_event_fn ev_fn;
	void *ev_ctx;

	bool addr_resync;
	bool local_full; /* an address did not fit into xp_local_addrs (this sync) */
	bool local_full_warned;
	bool flows_full_warned;
	struct sweep jan_flows; /* janitor cursors, see dp_janitor() */
	struct sweep jan_dst;
	struct dp_cidr_keys gen_cidrs[2]; /* CIDR keys written for each generation */
};

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

__attribute__((format(printf, 4, 5))) static int errf(char *err, size_t len, int ret,
						      const char *fmt, ...)
{
	va_list ap;

	if (!len)
		return ret;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return ret;
}

/* ": <strerror> (<extended ack>)" for a failed rtnetlink request. */
static const char *nl_why(struct nl *nl, int ret, char *buf, size_t len)
{
	const char *ext = nl ? nl_last_error(nl) : "";

	snprintf(buf, len, "%s%s%s%s", strerror(-ret), ext[0] ? " (" : "", ext, ext[0] ? ")" : "");
	return buf;
}

uint64_t dp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void addr_v4mapped(uint8_t out[16], const uint8_t v4[4])
{
	memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	memcpy(out + 12, v4, 4);
}

/* > 0 while libbpf calls whose failures are expected run (leftover probes): its warnings are
 * then logged at debug level. */
static __thread int libbpf_quiet;

static int libbpf_print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char buf[LINE_MAX * 4];
	size_t n;
	int lvl = level == LIBBPF_WARN && !libbpf_quiet ? XP_LOG_WARN : XP_LOG_DEBUG;

	if (!log_enabled(lvl))
		return 0;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	log_msg(lvl, "libbpf", "%s", buf);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Preflight */

static int check_caps(char *err, size_t errlen)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {0};
	uint64_t eff;
	bool net_admin, sys_admin;

	if (syscall(SYS_capget, &hdr, data) < 0)
		return errf(err, errlen, -errno, "cannot read capabilities: %s", strerror(errno));
	eff = (uint64_t)data[1].effective << 32 | data[0].effective;
	net_admin = eff & (1ULL << CAP_NET_ADMIN);
	sys_admin = eff & (1ULL << CAP_SYS_ADMIN);
	/* CAP_BPF alone is not enough: unshare(CLONE_NEWNET) and setns() need CAP_SYS_ADMIN,
	 * which also covers every BPF operation. */
	if (!net_admin || !sys_admin)
		return errf(err, errlen, -EPERM,
			    "need CAP_NET_ADMIN and CAP_SYS_ADMIN (run as root); missing%s%s",
			    net_admin ? "" : " CAP_NET_ADMIN", sys_admin ? "" : " CAP_SYS_ADMIN");
	return 0;
}

static int add_dev(struct dp *dp, const char *name, uint8_t role, char *err, size_t errlen)
{
	const char *what = role == XP_IFACE_LAN ? "lan" : "wan";
	struct dp_dev *d;
	struct nl_link l;
	char why[200];
	int ret;

	for (size_t i = 0; i < dp->n_lan + dp->n_wan; i++) {
		if (strcmp(dp->devs[i].name, name))
			continue;
		if (dp->devs[i].flags & role)
			return errf(err, errlen, -EINVAL, "%s device %s is listed twice", what,
				    name);
		return errf(err, errlen, -EINVAL, "device %s is both lan and wan", name);
	}
	if (dp->n_lan + dp->n_wan >= DP_MAX_DEVS)
		return errf(err, errlen, -E2BIG, "too many lan/wan devices (at most %d)",
			    DP_MAX_DEVS);
	ret = nl_link_get(dp->nl, name, &l);
	if (ret == -ENODEV || ret == -EINVAL)
		return errf(err, errlen, -ENODEV, "%s device %s does not exist", what, name);
	if (ret)
		return errf(err, errlen, ret, "%s device %s: %s", what, name,
			    nl_why(dp->nl, ret, why, sizeof(why)));
	if (l.type == ARPHRD_LOOPBACK)
		return errf(err, errlen, -EINVAL, "%s device %s is a loopback device", what, name);
	d = &dp->devs[dp->n_lan + dp->n_wan];
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->ifindex = l.ifindex;
	d->type = l.type;
	d->flags = role;
	/* No link-layer header: the programs push/expect none (ppp, wireguard, tun, ipip). */
	if (l.type != ARPHRD_ETHER)
		d->flags |= XP_IFACE_L3;
	else if (l.has_mac)
		memcpy(d->mac, l.mac, 6);
	d->ingress.where = BPF_TC_INGRESS;
	d->egress.where = BPF_TC_EGRESS;
	if (role == XP_IFACE_LAN)
		dp->n_lan++;
	else
		dp->n_wan++;
	return 0;
}

static int preflight(struct dp *dp, const struct cfg *cfg, const struct dp_opts *opts,
		     const char *veth, char *err, size_t errlen)
{
	const struct cfg_global *g = &cfg->global;
	struct nl_link l;
	char why[200];
	int ret;

	if (strlen(veth) == 0 || strlen(veth) > NL_IFNAMSIZ - 2)
		return errf(err, errlen, -EINVAL, "veth name '%s' must be 1 to %d characters", veth,
			    NL_IFNAMSIZ - 2);
	if (!opts->no_lan_wan) {
		if (!g->n_lan && !g->n_wan)
			return errf(err, errlen, -EINVAL, "no lan or wan device configured");
		for (size_t i = 0; i < g->n_lan; i++) {
			ret = add_dev(dp, g->lan[i], XP_IFACE_LAN, err, errlen);
			if (ret)
				return ret;
		}
		for (size_t i = 0; i < g->n_wan; i++) {
			ret = add_dev(dp, g->wan[i], XP_IFACE_WAN, err, errlen);
			if (ret)
				return ret;
		}
		for (size_t i = 0; i < dp->n_lan + dp->n_wan; i++)
			if (!strcmp(dp->devs[i].name, veth))
				return errf(err, errlen, -EINVAL,
					    "device %s is the veth of the proxy pair", veth);
	}

	ret = nl_link_get(dp->nl, veth, &l);
	if (ret == -ENODEV)
		return 0;
	if (ret)
		return errf(err, errlen, ret, "looking up %s: %s", veth,
			    nl_why(dp->nl, ret, why, sizeof(why)));
	if (strcmp(l.alias, NETNS_PAIR_ALIAS) || strcmp(l.kind, "veth"))
		return errf(err, errlen, -EEXIST,
			    "device %s exists and is not ours (no ifalias '%s'): set another "
			    "[global] veth name",
			    veth, NETNS_PAIR_ALIAS);
	/* Ours, from a run whose namespace is still held by something (an nsenter shell): the
	 * pair cannot be reused since its peer is in a namespace we cannot reach. */
	log_warn("removing leftover %s from an earlier run", veth);
	ret = nl_link_del(dp->nl, l.ifindex);
	if (ret && ret != -ENODEV)
		return errf(err, errlen, ret, "removing leftover %s: %s", veth,
			    nl_why(dp->nl, ret, why, sizeof(why)));
	return 0;
}

static unsigned kernel_version(unsigned *major, unsigned *minor)
{
	struct utsname u;

	*major = *minor = 0;
	if (uname(&u) == 0)
		sscanf(u.release, "%u.%u", major, minor);
	return *major * 1000 + *minor;
}

static int choose_redirect(struct dp *dp, enum cfg_redirect want, char *err, size_t errlen)
{
	unsigned major, minor;
	bool helper =
		libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_redirect_peer, NULL) == 1;
	bool recent = kernel_version(&major, &minor) >= 6008;

	switch (want) {
	case CFG_REDIRECT_PEER:
		if (!helper)
			return errf(err, errlen, -EOPNOTSUPP,
				    "redirect = peer: kernel %u.%u has no bpf_redirect_peer() for "
				    "tc programs",
				    major, minor);
		dp->redirect = XP_REDIRECT_PEER;
		snprintf(dp->redirect_why, sizeof(dp->redirect_why), "forced by config");
		return 0;
	case CFG_REDIRECT_PLAIN:
		dp->redirect = XP_REDIRECT_PLAIN;
		snprintf(dp->redirect_why, sizeof(dp->redirect_why), "forced by config");
		return 0;
	case CFG_REDIRECT_AUTO:
		break;
	}
	if (!helper) {
		dp->redirect = XP_REDIRECT_PLAIN;
		snprintf(dp->redirect_why, sizeof(dp->redirect_why),
			 "kernel %u.%u has no bpf_redirect_peer", major, minor);
	} else if (!recent) {
		dp->redirect = XP_REDIRECT_PLAIN;
		snprintf(dp->redirect_why, sizeof(dp->redirect_why), "kernel %u.%u < 6.8", major,
			 minor);
	} else {
		dp->redirect = XP_REDIRECT_PEER;
		snprintf(dp->redirect_why, sizeof(dp->redirect_why), "kernel %u.%u >= 6.8", major,
			 minor);
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Skeleton */

/* Offset and size of global `var` in DATASEC `sec` of the object's BTF. */
static int find_global(struct bpf_object *obj, const char *sec, const char *var, size_t *off,
		       size_t *size)
{
	const struct btf_var_secinfo *vs;
	const struct btf_type *t;
	struct btf *btf = bpf_object__btf(obj);
	int id;

	if (!btf)
		return -ENOENT;
	id = btf__find_by_name_kind(btf, sec, BTF_KIND_DATASEC);
	if (id < 0)
		return -ENOENT;
	t = btf__type_by_id(btf, id);
	vs = btf_var_secinfos(t);
	for (unsigned i = 0; i < btf_vlen(t); i++, vs++) {
		const struct btf_type *v = btf__type_by_id(btf, vs->type);

		if (v && !strcmp(btf__name_by_offset(btf, v->name_off), var)) {
			*off = vs->offset;
			*size = vs->size;
			return 0;
		}
	}
	return -ENOENT;
}

static int find_maps_progs(struct dp *dp, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		size_t off;
	} maps[] = {
#define M(n, f) {n, offsetof(struct dp, f)}
		M("xp_flows", flows),
		M("xp_dst_verdicts", dst_verdicts),
		M("xp_rules", rules),
		M("xp_cidrs", cidrs),
		M("xp_pranges", pranges),
		M("xp_listeners", listeners),
		M("xp_local_addrs", local_addrs),
		M("xp_ifaces", ifaces),
		M("xp_events", events),
		M("xp_stats", stats),
#undef M
	};
	static const struct {
		const char *name;
		size_t off;
	} progs[] = {
#define P(n, f) {n, offsetof(struct dp, f)}
		P("xp_lan_ingress", prog_lan),	       P("xp_lan_ingress_l3", prog_lan_l3),
		P("xp_wan_egress", prog_wan_egress),   P("xp_wan_egress_l3", prog_wan_egress_l3),
		P("xp_wan_ingress", prog_wan_ingress), P("xp_proxy_ingress", prog_proxy_ingress),
		P("xp_proxy_reply", prog_proxy_reply), P("xp_proxy_lookup", prog_proxy_lookup),
#undef P
	};

	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(dp->obj, maps[i].name);

		if (!m)
			return errf(err, errlen, -ENOENT, "BPF object has no map %s", maps[i].name);
		*(struct bpf_map **)((char *)dp + maps[i].off) = m;
	}
	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		struct bpf_program *p = bpf_object__find_program_by_name(dp->obj, progs[i].name);

		if (!p)
			return errf(err, errlen, -ENOENT, "BPF object has no program %s",
				    progs[i].name);
		*(struct bpf_program **)((char *)dp + progs[i].off) = p;
	}
	return 0;
}

static int resize(struct bpf_map *m, uint32_t n, const char *key, char *err, size_t errlen)
{
	int ret;

	if (!n)
		return 0; /* keep the object's default */
	ret = bpf_map__set_max_entries(m, n);
	if (ret)
		return errf(err, errlen, ret, "cannot size %s to %u (%s): %s", bpf_map__name(m), n,
			    key, strerror(-ret));
	return 0;
}

static int open_object(struct dp *dp, const struct dp_opts *opts, char *err, size_t errlen)
{
	if (opts->bpf_obj) {
		dp->obj = bpf_object__open_file(opts->bpf_obj, NULL);
		if (!dp->obj)
			return errf(err, errlen, -errno, "cannot open BPF object %s: %s",
				    opts->bpf_obj, strerror(errno));
		return 0;
	}
	dp->skel = xproxy_bpf__open();
	if (!dp->skel)
		return errf(err, errlen, -errno, "cannot open the embedded BPF object: %s",
			    strerror(errno));
	dp->obj = dp->skel->obj;
	return 0;
}

static unsigned effective_workers(unsigned want)
{
	long n = want;

	if (!n)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > XP_MAX_WORKERS)
		n = XP_MAX_WORKERS;
	return (unsigned)n;
}

static int load_object(struct dp *dp, const struct cfg *cfg, const struct dp_opts *opts, char *err,
		       size_t errlen)
{
	const struct cfg_global *g = &cfg->global;
	struct xp_bpf_config *xc;
	struct bpf_map *rodata, *bss;
	size_t off, size, rolen = 0;
	const void *ro_init;
	char *ro = NULL;
	int ret;

	ret = open_object(dp, opts, err, errlen);
	if (ret)
		return ret;

	/* The ABI version first: an object of another version is best reported as that, not as
	 * whichever map or program it happens to lack. */
	rodata = bpf_object__find_map_by_name(dp->obj, ".rodata");
	bss = bpf_object__find_map_by_name(dp->obj, ".bss");
	ro_init = rodata ? bpf_map__initial_value(rodata, &rolen) : NULL;
	if (!ro_init || find_global(dp->obj, ".rodata", "xp_cfg", &off, &size) ||
	    size != sizeof(*xc) || off + size > rolen)
		return errf(err, errlen, -ENOENT,
			    "BPF object has no const volatile struct xp_bpf_config xp_cfg");
	/* libbpf 1.1 hands out the initial value read-only: edit a copy and set it back. */
	ro = malloc(rolen);
	if (!ro)
		return errf(err, errlen, -ENOMEM, "out of memory");
	memcpy(ro, ro_init, rolen);
	xc = (struct xp_bpf_config *)(ro + off);
	if (xc->abi_version != XP_BPF_ABI_VERSION) {
		ret = errf(err, errlen, -EPROTO, "BPF ABI mismatch: object %u, daemon %u",
			   xc->abi_version, XP_BPF_ABI_VERSION);
		goto out;
	}
	ret = find_maps_progs(dp, err, errlen);
	if (ret)
		goto out;

	dp->n_workers = effective_workers(g->workers);
	xc->flags = g->flow_events_all ? XP_CFG_EVENTS_DIRECT : 0;
	if (opts && opts->udp)
		xc->flags |= XP_CFG_UDP;
	xc->mark = g->mark;
	xc->mark_mask = g->mark_mask;
	xc->xp0_ifindex = (uint32_t)dp->pair.host_ifindex;
	xc->redirect_mode = dp->redirect;
	xc->n_workers = dp->n_workers;
	xc->heartbeat_timeout_ns = DP_HEARTBEAT_TIMEOUT_MS * NS_PER_MS;
	memcpy(xc->xp0p_mac, dp->pair.peer_mac, 6);
	memcpy(xc->xp0_mac, dp->pair.host_mac, 6);
	ret = bpf_map__set_initial_value(rodata, ro, rolen);
	if (ret) {
		errf(err, errlen, ret, "cannot set xp_cfg: %s", strerror(-ret));
		goto out;
	}
	if (!bss || find_global(dp->obj, ".bss", "xp_ctl", &off, &size) ||
	    size != sizeof(struct xp_ctl)) {
		ret = errf(err, errlen, -ENOENT, "BPF object has no struct xp_ctl xp_ctl in .bss");
		goto out;
	}

	ret = resize(dp->flows, g->flow_entries, "flow_entries", err, errlen);
	if (!ret)
		ret = resize(dp->dst_verdicts, g->dst_entries, "dst_entries", err, errlen);
	if (!ret)
		ret = resize(dp->cidrs, g->cidr_entries, "cidr_entries", err, errlen);
	if (!ret)
		ret = resize(dp->events, g->ringbuf_bytes, "ringbuf_bytes", err, errlen);
	if (ret)
		goto out;

	libbpf_set_print(libbpf_print_fn);
	ret = bpf_object__load(dp->obj);
	if (ret) {
		errf(err, errlen, ret, "loading the BPF programs failed: %s%s", strerror(-ret),
		     log_enabled(XP_LOG_WARN) ? " (the verifier log is above)" : "");
		goto out;
	}

	dp->bss_len = (size_t)bpf_map__value_size(bss);
	dp->bss_len = (dp->bss_len + (size_t)getpagesize() - 1) & ~((size_t)getpagesize() - 1);
	dp->bss = mmap(NULL, dp->bss_len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(bss), 0);
	if (dp->bss == MAP_FAILED) {
		dp->bss = NULL;
		ret = errf(err, errlen, -errno, "cannot mmap the BPF .bss: %s", strerror(errno));
		goto out;
	}
	dp->ctl = (struct xp_ctl *)((char *)dp->bss + off);
	__atomic_store_n(&dp->ctl->flags, g->fail == CFG_FAIL_CLOSED ? XP_CTL_FAIL_CLOSED : 0,
			 __ATOMIC_RELAXED);
out:
	free(ro);
	return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Interfaces and local addresses */

static int fill_ifaces(struct dp *dp, char *err, size_t errlen)
{
	int fd = bpf_map__fd(dp->ifaces);

	for (size_t i = 0; i < dp->n_lan + dp->n_wan; i++) {
		struct xp_iface v = {.flags = dp->devs[i].flags};
		uint32_t key = (uint32_t)dp->devs[i].ifindex;

		memcpy(v.mac, dp->devs[i].mac, 6);
		if (bpf_map_update_elem(fd, &key, &v, BPF_ANY))
			return errf(err, errlen, -errno, "xp_ifaces: %s", strerror(errno));
	}
	return 0;
}

static int set_add(struct dp_addr_set *s, const uint8_t a[16])
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		void *p = realloc(s->addrs, cap * 16);

		if (!p)
			return -ENOMEM;
		s->addrs = p;
		s->cap = cap;
	}
	memcpy(s->addrs[s->n++], a, 16);
	return 0;
}

static bool set_has(const struct dp_addr_set *s, const uint8_t a[16])
{
	for (size_t i = 0; i < s->n; i++)
		if (!memcmp(s->addrs[i], a, 16))
			return true;
	return false;
}

/* The map keys an address contributes: its own address and, for IPv4, its broadcast. */
static int addr_keys(const struct nl_addr *a, uint8_t keys[2][16])
{
	static const uint8_t zero[4];
	int n = 0;

	if (a->family == AF_INET) {
		addr_v4mapped(keys[n++], a->local);
		if (a->has_broadcast && memcmp(a->broadcast, zero, 4))
			addr_v4mapped(keys[n++], a->broadcast);
	} else {
		memcpy(keys[n++], a->local, 16);
	}
	return n;
}

static int local_add(struct dp *dp, const uint8_t key[16])
{
	uint8_t one = 1;

	if (bpf_map_update_elem(bpf_map__fd(dp->local_addrs), key, &one, BPF_ANY) == 0)
		return 0;
	if (errno == E2BIG || errno == ENOSPC) {
		/* Traffic to the missing address may be hijacked: say so, once. */
		dp->local_full = true;
		if (!dp->local_full_warned)
			log_warn("xp_local_addrs is full (%d addresses): traffic to further router "
				 "addresses is not recognised as local",
				 XP_MAX_LOCAL_ADDRS);
		dp->local_full_warned = true;
		return 0;
	}
	return -errno;
}

static int collect_addr(const struct nl_addr *a, void *ctx)
{
	uint8_t keys[2][16];
	int n = addr_keys(a, keys), ret = 0;

	for (int i = 0; i < n && !ret; i++)
		ret = set_add(ctx, keys[i]);
	return ret;
}

/* Make xp_local_addrs equal to the addresses the host netns has now. New addresses go in
 * before stale ones are removed, so no current address is ever missing. */
static int local_addrs_sync(struct dp *dp)
{
	struct dp_addr_set now = {0}, stale = {0};
	int fd = bpf_map__fd(dp->local_addrs);
	uint8_t key[16], next[16];
	int ret = -EINTR;

	for (int tries = 0; tries < 5 && ret == -EINTR; tries++) {
		now.n = 0;
		ret = nl_addr_dump(dp->nl, AF_UNSPEC, collect_addr, &now);
	}
	if (ret)
		goto out;
	dp->local_full = false;
	for (size_t i = 0; i < now.n && !ret; i++)
		ret = local_add(dp, now.addrs[i]);
	if (ret)
		goto out;
	for (int r = bpf_map_get_next_key(fd, NULL, next); r == 0;
	     r = bpf_map_get_next_key(fd, key, next)) {
		memcpy(key, next, 16);
		if (!set_has(&now, key) && (ret = set_add(&stale, key)))
			goto out;
	}
	for (size_t i = 0; i < stale.n; i++)
		bpf_map_delete_elem(fd, stale.addrs[i]);
	if (dp->local_full && stale.n) {
		/* The stale entries took room the current ones need. */
		dp->local_full = false;
		for (size_t i = 0; i < now.n && !ret; i++)
			ret = local_add(dp, now.addrs[i]);
	}
	if (!dp->local_full)
		dp->local_full_warned = false; /* everything fits: warn again next time */
out:
	free(now.addrs);
	free(stale.addrs);
	return ret;
}

static int addr_event(const struct nlmsghdr *nlh, void *ctx)
{
	struct dp *dp = ctx;
	uint8_t keys[2][16];
	struct nl_addr a;
	int n, ret;

	if (nl_addr_parse(nlh, &a))
		return 0;
	if (a.deleted) {
		/* The same address can sit on two devices; only a dump tells whether it is
		 * really gone. Deletions are rare, so one dump per batch is cheap. */
		dp->addr_resync = true;
		return 0;
	}
	n = addr_keys(&a, keys);
	for (int i = 0; i < n; i++) {
		ret = local_add(dp, keys[i]);
		if (ret)
			return ret;
	}
	return 0;
}

int dp_netlink_fd(struct dp *dp)
{
	return nl_fd(dp->nl_sub);
}

int dp_netlink_process(struct dp *dp)
{
	int ret = nl_recv_notifications(dp->nl_sub, addr_event, dp);

	if (ret == -ENOBUFS) {
		log_debug("rtnetlink overrun: resyncing local addresses");
		dp->addr_resync = true;
		ret = 0;
	}
	if (ret < 0)
		return ret;
	if (dp->addr_resync) {
		ret = local_addrs_sync(dp);
		if (ret)
			return ret; /* addr_resync stays set: the next call tries again */
		dp->addr_resync = false;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Events */

static int on_event(void *ctx, void *data, size_t len)
{
	struct dp *dp = ctx;

	if (dp->ev_fn)
		dp->ev_fn(dp->ev_ctx, data, len);
	return 0;
}

void dp_set_event_handler(struct dp *dp, dp_event_fn fn, void *ctx)
{
	dp->ev_fn = fn;
	dp->ev_ctx = ctx;
}

int dp_events_fd(struct dp *dp)
{
	return ring_buffer__epoll_fd(dp->rb);
}

int dp_events_consume(struct dp *dp)
{
	return ring_buffer__consume(dp->rb);
}

/* ------------------------------------------------------------------------------------------ */
/* Create / destroy */

int dp_create(const struct cfg *cfg, const struct dp_opts *opts, struct dp **out, char *err,
	      size_t errlen)
{
	static const struct dp_opts no_opts;
	const unsigned groups[] = {RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR};
	const char *veth;
	struct dp *dp;
	char why[200];
	int ret;

	if (errlen)
		err[0] = '\0';
	if (!opts)
		opts = &no_opts;
	*out = NULL;
	veth = cfg->global.veth && cfg->global.veth[0] ? cfg->global.veth : DP_DEFAULT_VETH;

	ret = check_caps(err, errlen);
	if (ret)
		return ret;
	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return errf(err, errlen, -ENOMEM, "out of memory");
	dp->nl = nl_open();
	if (!dp->nl) {
		ret = errf(err, errlen, -errno, "rtnetlink socket: %s", strerror(errno));
		goto err_dp;
	}
	ret = preflight(dp, cfg, opts, veth, err, errlen);
	if (ret)
		goto err_dp;
	ret = choose_redirect(dp, cfg->global.redirect, err, errlen);
	if (ret)
		goto err_dp;

	dp->ns = netns_create();
	if (!dp->ns) {
		ret = errf(err, errlen, -errno, "cannot create the private network namespace: %s",
			   strerror(errno));
		goto err_dp;
	}
	ret = netns_pair_setup(dp->ns, dp->nl, veth, &dp->pair, err, errlen);
	if (ret)
		goto err_dp;
	dp->pair_created = true;
	snprintf(dp->xp0.name, sizeof(dp->xp0.name), "%s", dp->pair.host);
	dp->xp0.ifindex = dp->pair.host_ifindex;
	dp->xp0.ingress.where = BPF_TC_INGRESS;
	dp->xp0.egress.where = BPF_TC_EGRESS;
	snprintf(dp->xp0p.name, sizeof(dp->xp0p.name), "%s", dp->pair.peer);
	dp->xp0p.ifindex = dp->pair.peer_ifindex;
	dp->xp0p.in_netns = true;
	dp->xp0p.ingress.where = BPF_TC_INGRESS;
	dp->xp0p.egress.where = BPF_TC_EGRESS;

	ret = load_object(dp, cfg, opts, err, errlen);
	if (ret)
		goto err_dp;
	ret = fill_ifaces(dp, err, errlen);
	if (ret)
		goto err_dp;

	/* Subscribe before the dump, so no change between the two is missed. */
	dp->nl_sub = nl_open_groups(groups, sizeof(groups) / sizeof(groups[0]));
	if (!dp->nl_sub) {
		ret = errf(err, errlen, -errno, "rtnetlink address subscription: %s",
			   strerror(errno));
		goto err_dp;
	}
	ret = local_addrs_sync(dp);
	if (ret) {
		errf(err, errlen, ret, "reading the router's addresses: %s",
		     nl_why(dp->nl, ret, why, sizeof(why)));
		goto err_dp;
	}

	dp->rb = ring_buffer__new(bpf_map__fd(dp->events), on_event, dp, NULL);
	if (!dp->rb) {
		ret = errf(err, errlen, -errno, "ring buffer on xp_events: %s", strerror(errno));
		goto err_dp;
	}
	*out = dp;
	return 0;

err_dp:
	dp_destroy(dp);
	return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* tc attach / detach */

/* libbpf refuses option structs with non-zero padding: always build them with LIBBPF_OPTS. */
#define TC_HOOK(name, d, where)                                                                    \
	LIBBPF_OPTS(bpf_tc_hook, name, .ifindex = (d)->ifindex, .attach_point = (where))

/* Handle of a filter of ours (our priority, either handle) on that hook, or 0. */
static uint32_t find_ours(const struct dp_dev *d, enum bpf_tc_attach_point where)
{
	static const uint32_t handles[] = {DP_TC_HANDLE_OWN_QDISC, DP_TC_HANDLE_FOREIGN_QDISC};
	uint32_t found = 0;
	TC_HOOK(h, d, where);

	/* Misses are the normal case; keep libbpf's "not found" messages out of the log. */
	libbpf_quiet++;
	for (size_t i = 0; i < 2 && !found; i++) {
		LIBBPF_OPTS(bpf_tc_opts, o, .handle = handles[i], .priority = DP_TC_PRIORITY);

		if (bpf_tc_query(&h, &o) == 0)
			found = handles[i];
	}
	libbpf_quiet--;
	return found;
}

/* Runs in the device's netns. */
static int attach_hook(struct dp_dev *d, struct dp_hook *hk, struct bpf_program *prog, char *err,
		       size_t errlen)
{
	const char *dir = hk->where == BPF_TC_INGRESS ? "ingress" : "egress";
	uint32_t leftover;
	TC_HOOK(h, d, hk->where);
	LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = bpf_program__fd(prog), .priority = DP_TC_PRIORITY);
	int ret;

	if (!d->qdisc_known) {
		/* A filter a crashed run left on either hook tells who made the qdisc. */
		leftover = find_ours(d, BPF_TC_INGRESS);
		if (!leftover)
			leftover = find_ours(d, BPF_TC_EGRESS);
		if (leftover) {
			d->qdisc_owned = leftover == DP_TC_HANDLE_OWN_QDISC;
		} else {
			libbpf_quiet++; /* -EEXIST is an answer, not a problem */
			ret = bpf_tc_hook_create(&h);
			libbpf_quiet--;
			if (ret && ret != -EEXIST)
				return errf(err, errlen, ret, "creating clsact on %s: %s", d->name,
					    strerror(-ret));
			d->qdisc_owned = ret == 0;
		}
		d->qdisc_known = true;
	}
	leftover = find_ours(d, hk->where);
	if (leftover) {
		/* Atomic takeover: the old program runs until ours replaces it. */
		o.handle = leftover;
		o.flags = BPF_TC_F_REPLACE;
	} else {
		o.handle = d->qdisc_owned ? DP_TC_HANDLE_OWN_QDISC : DP_TC_HANDLE_FOREIGN_QDISC;
	}
	ret = bpf_tc_attach(&h, &o);
	if (ret)
		return errf(err, errlen, ret, "attaching %s to %s %s: %s", bpf_program__name(prog),
			    d->name, dir, strerror(-ret));
	hk->handle = o.handle;
	if (leftover)
		log_info("took over the %s filter on %s from an earlier run", dir, d->name);
	return 0;
}

struct netns_attach {
	struct dp_dev *d;
	struct dp_hook *hk;
	struct bpf_program *prog;
	char *err;
	size_t errlen;
};

static int attach_in_netns(void *arg)
{
	struct netns_attach *a = arg;

	return attach_hook(a->d, a->hk, a->prog, a->err, a->errlen);
}

static int count_filter(const struct nl_filter *f, void *ctx)
{
	(*(int *)ctx)++;
	return 0;
}

/* Detach what we attached on d; remove clsact if we own it and nothing else uses it. Runs in
 * the device's netns (dp->nl is only used for host devices). */
static void detach_dev(struct dp *dp, struct dp_dev *d)
{
	struct dp_hook *hooks[] = {&d->ingress, &d->egress};
	int ret, left = 0;

	for (size_t i = 0; i < 2; i++) {
		TC_HOOK(h, d, hooks[i]->where);
		LIBBPF_OPTS(bpf_tc_opts, o, .handle = hooks[i]->handle, .priority = DP_TC_PRIORITY);

		if (!hooks[i]->handle)
			continue;
		ret = bpf_tc_detach(&h, &o);
		if (ret && ret != -ENOENT && ret != -ENODEV)
			log_warn("cannot detach the %s filter from %s: %s",
				 hooks[i]->where == BPF_TC_INGRESS ? "ingress" : "egress", d->name,
				 strerror(-ret));
		hooks[i]->handle = 0;
	}
	if (!d->qdisc_known || !d->qdisc_owned || d->in_netns)
		return;
	d->qdisc_known = false;
	/* Someone else's filter on our qdisc: leave the qdisc to them. */
	ret = nl_filter_dump(dp->nl, d->ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS),
			     count_filter, &left);
	if (!ret)
		ret = nl_filter_dump(dp->nl, d->ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS),
				     count_filter, &left);
	if (ret == -ENODEV)
		return;
	if (ret) {
		log_warn("cannot list the filters on %s (%s): leaving its clsact qdisc", d->name,
			 strerror(-ret));
		return;
	}
	if (left) {
		log_info("leaving the clsact qdisc on %s: other filters use it", d->name);
		return;
	}
	{
		TC_HOOK(h, d, BPF_TC_INGRESS | BPF_TC_EGRESS);

		ret = bpf_tc_hook_destroy(&h);
		if (ret && ret != -ENOENT && ret != -EINVAL && ret != -ENODEV)
			log_warn("cannot delete the clsact qdisc on %s: %s", d->name,
				 strerror(-ret));
	}
}

static int detach_in_netns(void *arg)
{
	struct netns_attach *a = arg;

	detach_dev(NULL, a->d);
	return 0;
}

/* Everything dp_attach() attached, LAN first (no new traffic is steered), then WAN, then the
 * pair. */
static void detach_all(struct dp *dp)
{
	for (size_t i = 0; i < dp->n_lan + dp->n_wan; i++)
		detach_dev(dp, &dp->devs[i]);
	detach_dev(dp, &dp->xp0);
	bpf_link__destroy(dp->lookup_link);
	dp->lookup_link = NULL;
	if (dp->xp0p.ingress.handle || dp->xp0p.egress.handle) {
		struct netns_attach a = {.d = &dp->xp0p};
		int ret = netns_run(dp->ns, detach_in_netns, &a);

		if (ret)
			log_warn("cannot enter the private netns to detach from %s: %s",
				 dp->xp0p.name, strerror(-ret));
	}
	dp->attached = false;
}

int dp_attach(struct dp *dp, char *err, size_t errlen)
{
	struct netns_attach a = {
		.d = &dp->xp0p,
		.hk = &dp->xp0p.ingress,
		.prog = dp->prog_proxy_ingress,
		.err = err,
		.errlen = errlen,
	};
	int ret;

	if (errlen)
		err[0] = '\0';
	if (dp->attached)
		return errf(err, errlen, -EALREADY, "datapath already attached");
	dp->attached = true;

	/* libbpf's tc calls open their netlink socket in the calling thread's netns. */
	ret = netns_run(dp->ns, attach_in_netns, &a);
	if (ret) {
		if (errlen && !err[0])
			errf(err, errlen, ret, "entering the private netns: %s", strerror(-ret));
		goto err_detach;
	}
	/* Before anything steers traffic into the netns: datagrams that arrive fragmented reach
	 * their listener through this lookup program once the netns has reassembled them. The
	 * link lives as long as its fd (and the netns): nothing outlives the daemon. */
	dp->lookup_link = bpf_program__attach_netns(dp->prog_proxy_lookup, netns_fd(dp->ns));
	if (!dp->lookup_link) {
		ret = -errno;
		errf(err, errlen, ret, "attaching %s to the private netns: %s",
		     bpf_program__name(dp->prog_proxy_lookup), strerror(-ret));
		goto err_detach;
	}
	ret = attach_hook(&dp->xp0, &dp->xp0.ingress, dp->prog_proxy_reply, err, errlen);
	if (ret)
		goto err_detach;
	for (size_t i = dp->n_lan; i < dp->n_lan + dp->n_wan; i++) {
		struct dp_dev *d = &dp->devs[i];
		bool l3 = d->flags & XP_IFACE_L3;

		ret = attach_hook(d, &d->egress, l3 ? dp->prog_wan_egress_l3 : dp->prog_wan_egress,
				  err, errlen);
		if (!ret)
			ret = attach_hook(d, &d->ingress, dp->prog_wan_ingress, err, errlen);
		if (ret)
			goto err_detach;
	}
	for (size_t i = 0; i < dp->n_lan; i++) {
		struct dp_dev *d = &dp->devs[i];

		ret = attach_hook(d, &d->ingress,
				  d->flags & XP_IFACE_L3 ? dp->prog_lan_l3 : dp->prog_lan, err,
				  errlen);
		if (ret)
			goto err_detach;
	}
	return 0;

err_detach:
	detach_all(dp);
	return ret;
}

void dp_destroy(struct dp *dp)
{
	int ret;

	if (!dp)
		return;
	if (dp->attached)
		detach_all(dp);
	if (dp->pair_created) {
		ret = netns_pair_delete(dp->nl, &dp->pair);
		if (ret && ret != -ENODEV)
			log_warn("cannot delete the veth pair %s: %s", dp->pair.host,
				 strerror(-ret));
	}
	ring_buffer__free(dp->rb);
	if (dp->bss)
		munmap(dp->bss, dp->bss_len);
	if (dp->skel)
		xproxy_bpf__destroy(dp->skel);
	else if (dp->obj)
		bpf_object__close(dp->obj);
	netns_destroy(dp->ns);
	nl_close(dp->nl_sub);
	nl_close(dp->nl);
	free(dp->gen_cidrs[0].keys);
	free(dp->gen_cidrs[1].keys);
	free(dp);
}

/* ------------------------------------------------------------------------------------------ */
/* Accessors */

enum xp_redirect_mode dp_redirect_mode(const struct dp *dp)
{
	return dp->redirect;
}

const char *dp_redirect_mode_why(const struct dp *dp)
{
	return dp->redirect_why;
}

unsigned dp_n_workers(const struct dp *dp)
{
	return dp->n_workers;
}

int dp_netns_fd(const struct dp *dp)
{
	return netns_fd(dp->ns);
}

int dp_netns_socket(struct dp *dp, int domain, int type, int protocol)
{
	return netns_socket(dp->ns, domain, type, protocol);
}

int dp_listener_set(struct dp *dp, uint32_t key, int fd)
{
	uint64_t v64 = (uint64_t)fd;
	uint32_t v32 = (uint32_t)fd;
	const void *v = bpf_map__value_size(dp->listeners) == 8 ? (const void *)&v64 : &v32;

	if (key >= 2 * XP_MAX_WORKERS || fd < 0)
		return -EINVAL;
	if (bpf_map_update_elem(bpf_map__fd(dp->listeners), &key, v, BPF_ANY))
		return -errno;
	return 0;
}

int dp_listener_clear(struct dp *dp, uint32_t key)
{
	if (key >= 2 * XP_MAX_WORKERS)
		return -EINVAL;
	if (bpf_map_delete_elem(bpf_map__fd(dp->listeners), &key))
		return -errno;
	return 0;
}

void dp_heartbeat(struct dp *dp)
{
	__atomic_store_n(&dp->ctl->heartbeat_ns, dp_now_ns(), __ATOMIC_RELEASE);
}

void dp_set_flow_events(struct dp *dp, bool on)
{
	uint32_t flags = __atomic_load_n(&dp->ctl->flags, __ATOMIC_RELAXED);

	flags = on ? flags & ~XP_CTL_NO_FLOW_EVENTS : flags | XP_CTL_NO_FLOW_EVENTS;
	__atomic_store_n(&dp->ctl->flags, flags, __ATOMIC_RELEASE);
}

void dp_set_fail_closed(struct dp *dp, bool closed)
{
	uint32_t flags = __atomic_load_n(&dp->ctl->flags, __ATOMIC_RELAXED);

	flags = closed ? flags | XP_CTL_FAIL_CLOSED : flags & ~XP_CTL_FAIL_CLOSED;
	__atomic_store_n(&dp->ctl->flags, flags, __ATOMIC_RELEASE);
}

int dp_flow_lookup(struct dp *dp, const struct xp_tuple *t, struct xp_flow *out)
{
	if (bpf_map_lookup_elem(bpf_map__fd(dp->flows), t, out))
		return -errno;
	return 0;
}

int dp_flow_update(struct dp *dp, const struct xp_tuple *t, const struct xp_flow *f)
{
	if (bpf_map_update_elem(bpf_map__fd(dp->flows), t, f, BPF_ANY))
		return -errno;
	return 0;
}

int dp_dst_set(struct dp *dp, const struct xp_dst_key *k, const struct xp_dst_verdict *v)
{
	if (v->verdict == XP_V_NONE || v->verdict >= XP_V__MAX)
		return -EINVAL;
	if (bpf_map_update_elem(bpf_map__fd(dp->dst_verdicts), k, v, BPF_ANY))
		return -errno;
	return 0;
}

int dp_dst_del(struct dp *dp, const struct xp_dst_key *k)
{
	if (bpf_map_delete_elem(bpf_map__fd(dp->dst_verdicts), k))
		return -errno;
	return 0;
}

int dp_stats(struct dp *dp, struct xp_stats *sum)
{
	enum { N = sizeof(struct xp_stats) / sizeof(uint64_t) };
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *vals, *s = (uint64_t *)sum;
	uint32_t zero = 0;
	int ret = 0;

	_Static_assert(sizeof(struct xp_stats) % sizeof(uint64_t) == 0, "xp_stats: only u64s");
	if (ncpu < 1)
		return ncpu < 0 ? ncpu : -EINVAL;
	vals = calloc((size_t)ncpu, sizeof(struct xp_stats));
	if (!vals)
		return -ENOMEM;
	if (bpf_map_lookup_elem(bpf_map__fd(dp->stats), &zero, vals)) {
		ret = -errno;
		goto out;
	}
	memset(sum, 0, sizeof(*sum));
	for (int c = 0; c < ncpu; c++)
		for (size_t i = 0; i < N; i++)
			s[i] += vals[(size_t)c * N + i];
out:
	free(vals);
	return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Rules */

uint32_t dp_rules_next_gen(const struct dp *dp)
{
	return __atomic_load_n(&dp->ctl->rules_gen, __ATOMIC_RELAXED) ^ 1;
}

static void cidrs_delete(struct dp *dp, struct dp_cidr_keys *k)
{
	int fd = bpf_map__fd(dp->cidrs);

	for (size_t i = 0; i < k->n; i++)
		bpf_map_delete_elem(fd, &k->keys[i]);
	free(k->keys);
	k->keys = NULL;
	k->n = 0;
}

static int check_image(const struct dp *dp, const struct rule_image *img)
{
	uint32_t gen = img->gen;

	if (gen > 1 || gen != dp_rules_next_gen(dp))
		return -EINVAL; /* never write into the live generation */
	if (img->n_rules > XP_MAX_RULES || img->n_pranges > XP_MAX_PRANGES)
		return -E2BIG;
	if (img->set.first != gen * XP_MAX_RULES || img->set.count != img->n_rules)
		return -EINVAL;
	for (size_t i = 0; i < img->n_rules; i++) {
		const struct xp_rule *r = &img->rules[i];

		if (r->prange_count && (r->prange_first < gen * XP_MAX_PRANGES ||
					(size_t)r->prange_first + r->prange_count >
						gen * XP_MAX_PRANGES + img->n_pranges))
			return -EINVAL;
	}
	for (size_t i = 0; i < img->n_cidrs; i++)
		if (ntohl(img->cidrs[i].key.set_id) >> 31 != gen ||
		    img->cidrs[i].key.prefixlen > 32 + 128)
			return -EINVAL;
	return 0;
}

int dp_rules_apply(struct dp *dp, const struct rule_image *img)
{
	struct dp_cidr_keys *mine = &dp->gen_cidrs[img->gen & 1];
	int rfd = bpf_map__fd(dp->rules), pfd = bpf_map__fd(dp->pranges);
	int cfd = bpf_map__fd(dp->cidrs);
	int ret;

	ret = check_image(dp, img);
	if (ret)
		return ret;
	/* This generation's slots still hold the rules that were live two applies ago. Their
	 * CIDR keys are deleted only now, a whole reload after they stopped being live, so a
	 * packet that read rules_gen just before the previous flip never finds its set gone
	 * half-way through its rule walk. */
	cidrs_delete(dp, mine);

	for (size_t i = 0; i < img->n_rules; i++) {
		uint32_t key = img->set.first + (uint32_t)i;

		if (bpf_map_update_elem(rfd, &key, &img->rules[i], BPF_ANY))
			return -errno;
	}
	for (size_t i = 0; i < img->n_pranges; i++) {
		uint32_t key = img->gen * XP_MAX_PRANGES + (uint32_t)i;

		if (bpf_map_update_elem(pfd, &key, &img->pranges[i], BPF_ANY))
			return -errno;
	}
	if (img->n_cidrs) {
		mine->keys = calloc(img->n_cidrs, sizeof(*mine->keys));
		if (!mine->keys)
			return -ENOMEM;
	}
	for (size_t i = 0; i < img->n_cidrs; i++) {
		if (bpf_map_update_elem(cfd, &img->cidrs[i].key, &img->cidrs[i].val, BPF_ANY)) {
			ret = errno == E2BIG ? -ENOSPC : -errno;
			cidrs_delete(dp, mine); /* not live: nobody looks at them */
			return ret;
		}
		mine->keys[mine->n++] = img->cidrs[i].key;
	}

	/* The ruleset of the idle generation, then the flip: one aligned 32-bit store. The old
	 * generation's entries stay until the next apply (see above), which is why cidr_entries
	 * must hold two generations. */
	dp->ctl->rulesets[img->gen] = img->set;
	__atomic_store_n(&dp->ctl->rules_gen, img->gen, __ATOMIC_RELEASE);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Janitor */

struct key_list {
	void *keys;
	size_t n, cap, size;
};

static int key_list_add(struct key_list *l, const void *key)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		void *p = realloc(l->keys, cap * l->size);

		if (!p)
			return -ENOMEM;
		l->keys = p;
		l->cap = cap;
	}
	memcpy((char *)l->keys + l->n * l->size, key, l->size);
	l->n++;
	return 0;
}

static bool flow_expired(const struct xp_tuple *t, const struct xp_flow *f, uint64_t now)
{
	uint64_t idle = now > f->last_ns ? now - f->last_ns : 0;

	if (idle > JANITOR_ANY_NS)
		return true;
	if (t->l4proto == IPPROTO_TCP)
		return (f->tcp_state & (XP_TCP_FIN_CLIENT | XP_TCP_FIN_SERVER | XP_TCP_RST)) &&
		       idle > JANITOR_TCP_CLOSED_NS;
	return idle > JANITOR_DGRAM_NS;
}

/* Delete the keys (their entries may have gone meanwhile: LRU eviction, the datapath). */
static int delete_keys(int fd, const struct key_list *l)
{
	int n = 0;

	for (size_t i = 0; i < l->n; i++)
		if (bpf_map_delete_elem(fd, (char *)l->keys + i * l->size) == 0)
			n++;
	return n;
}

/*
 * One map's sweep, spread over janitor ticks. Batched lookups (bpf_map_lookup_batch, kernel
 * >= 5.6) read BATCH entries per system call, and a tick stops once it has seen BUDGET entries
 * (one batch more at most: the kernel hands out whole hash buckets, so the last batch cannot
 * be cut short) and resumes from the kernel's batch cursor on the next one: the main loop is
 * never held for
 * long whatever the table size (16 M flows at two syscalls an entry would stall it for
 * seconds, long enough for the heartbeat to go stale and the datapath to fail open).
 * Entries inserted or removed meanwhile may be seen twice or not at all in a sweep; a
 * janitor can live with that.
 */
#define JANITOR_BATCH 1024
#define JANITOR_BUDGET (64 * JANITOR_BATCH)

/* Look at up to JANITOR_BUDGET entries, adding the keys `dead(key, value)` selects to l.
 * Returns 1 when the sweep completed, 0 when it will go on next time, -errno on error. */
static int sweep_step(int fd, struct sweep *sw, size_t ksz, size_t vsz,
		      bool (*dead)(const void *key, const void *val, uint64_t now), uint64_t now,
		      struct key_list *l)
{
	char *keys = malloc(JANITOR_BATCH * ksz), *vals = malloc(JANITOR_BATCH * vsz);
	uint32_t budget = JANITOR_BUDGET, out;
	int ret = 0, err;

	if (!keys || !vals) {
		ret = -ENOMEM;
		goto out;
	}
	while (budget) {
		__u32 n = JANITOR_BATCH;

		err = bpf_map_lookup_batch(fd, sw->started ? &sw->cursor : NULL, &out, keys, vals,
					   &n, NULL);
		if (err && err != -ENOENT && errno != ENOENT) {
			ret = err < 0 ? err : -errno;
			goto out;
		}
		for (__u32 i = 0; i < n; i++)
			if (dead(keys + i * ksz, vals + i * vsz, now) &&
			    (ret = key_list_add(l, keys + i * ksz)))
				goto out;
		sw->seen += n;
		budget = budget > n ? budget - n : 0;
		if (err) { /* -ENOENT: no more entries, the sweep is complete */
			sw->started = false;
			ret = 1;
			goto out;
		}
		sw->cursor = out;
		sw->started = true;
	}
out:
	free(keys);
	free(vals);
	return ret;
}

static bool flow_dead(const void *key, const void *val, uint64_t now)
{
	return flow_expired(key, val, now);
}

static bool dst_dead(const void *key, const void *val, uint64_t now)
{
	const struct xp_dst_verdict *v = val;

	return v->expires_ns && v->expires_ns <= now;
}

int dp_janitor(struct dp *dp)
{
	struct key_list dead = {.size = sizeof(struct xp_tuple)};
	struct key_list dead_dst = {.size = sizeof(struct xp_dst_key)};
	int ffd = bpf_map__fd(dp->flows), dfd = bpf_map__fd(dp->dst_verdicts);
	uint32_t max = bpf_map__max_entries(dp->flows);
	uint64_t now = dp_now_ns(), count;
	int ret, done;

	done = sweep_step(ffd, &dp->jan_flows, sizeof(struct xp_tuple), sizeof(struct xp_flow),
			  flow_dead, now, &dead);
	if (done < 0) {
		ret = done;
		goto out;
	}
	if (done) {
		/* A whole sweep seen: judge how full the table is. */
		count = dp->jan_flows.seen;
		dp->jan_flows.seen = 0;
		if (count * 10 >= (uint64_t)max * 9) {
			if (!dp->flows_full_warned)
				log_warn("xp_flows is %llu%% full (%llu of %u): raise flow_entries",
					 (unsigned long long)(count * 100 / max),
					 (unsigned long long)count, max);
			dp->flows_full_warned = true;
		} else if (count * 10 < (uint64_t)max * 8) {
			dp->flows_full_warned = false; /* warn again on the next climb */
		}
	}
	ret = sweep_step(dfd, &dp->jan_dst, sizeof(struct xp_dst_key),
			 sizeof(struct xp_dst_verdict), dst_dead, now, &dead_dst);
	if (ret < 0)
		goto out;
	if (ret)
		dp->jan_dst.seen = 0;
	ret = delete_keys(ffd, &dead) + delete_keys(dfd, &dead_dst);
out:
	free(dead.keys);
	free(dead_dst.keys);
	return ret;
}
