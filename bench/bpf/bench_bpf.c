// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench_bpf - what each datapath path costs per packet, measured with BPF_PROG_TEST_RUN next
 * to a no-op tc program in the same run. Prints figures; asserts nothing.
 *
 *   bench_bpf [-n REPEAT] [-r ROUNDS]     (meson compile -C build bench-bpf)
 *
 * Each of ROUNDS (default 7) rounds runs REPEAT (default 1,000,000) packets through the
 * no-op program and then through the path, timed around the syscall (wall time / REPEAT).
 * A row shows the path's best round in ns/packet and the median of the per-round ratios
 * path / no-op: on a shared machine the load moves both runs of a round alike. "established" rows
 * hit a flow entry. "new flow" rows use a second object built with -DXP_BENCH_NEW_FLOWS
 * (bench/bpf/meson.build): after the flow lookup it treats every packet as new, so each repetition
 * really classifies and inserts (the insert replaces the previous one's entry: an LRU update, the
 * same work as a fresh insert). The rules are what core/rules.c makes of 1,000 dst-cidr lines and
 * 100 dport lines: one merged rule with one LPM lookup for the CIDRs, one with a binary search over
 * 100 port intervals.
 *
 * Runs in the current network namespace and changes nothing outside its own maps (no
 * device, no attachment): test runs never reach a device.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <linux/pkt_cls.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <xproxy/bpf_abi.h>

#include "pkt.h"
#include "xproxy.skel.h"
#include "xproxy_bench.skel.h"

enum { P_LAN, P_WAN_EG, P_WAN_IN, P_PX_IN, P_PX_REPLY, P__N };

struct dp {
	int prog[P__N];
	int flows, dst, rules, cidrs, pranges, local;
	struct xp_ctl *ctl;
};

#define DP_FROM(skel, d)                                                                           \
	do {                                                                                       \
		(d)->prog[P_LAN] = bpf_program__fd((skel)->progs.xp_lan_ingress);                  \
		(d)->prog[P_WAN_EG] = bpf_program__fd((skel)->progs.xp_wan_egress);                \
		(d)->prog[P_WAN_IN] = bpf_program__fd((skel)->progs.xp_wan_ingress);               \
		(d)->prog[P_PX_IN] = bpf_program__fd((skel)->progs.xp_proxy_ingress);              \
		(d)->prog[P_PX_REPLY] = bpf_program__fd((skel)->progs.xp_proxy_reply);             \
		(d)->flows = bpf_map__fd((skel)->maps.xp_flows);                                   \
		(d)->dst = bpf_map__fd((skel)->maps.xp_dst_verdicts);                              \
		(d)->rules = bpf_map__fd((skel)->maps.xp_rules);                                   \
		(d)->cidrs = bpf_map__fd((skel)->maps.xp_cidrs);                                   \
		(d)->pranges = bpf_map__fd((skel)->maps.xp_pranges);                               \
		(d)->local = bpf_map__fd((skel)->maps.xp_local_addrs);                             \
		(d)->ctl = &(skel)->bss->xp_ctl;                                                   \
	} while (0)

static unsigned int repeat = 1000000, rounds = 7;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_bpf: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static int noop_fd = -1;

static double run_once(int fd, const struct pkt *p, uint32_t want)
{
	uint8_t out[PKT_MAX + 64];
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = p->b, .data_size_in = (uint32_t)p->len,
		    .data_out = out, .data_size_out = sizeof(out), .repeat = repeat);
	uint64_t t0 = now_ns(), t1;

	if (bpf_prog_test_run_opts(fd, &o))
		die("BPF_PROG_TEST_RUN", errno);
	t1 = now_ns();
	/* the return code must be the expected one, or the figure would time another path */
	if (o.retval != want) {
		fprintf(stderr, "bench_bpf: return code %u, expected %u\n", o.retval, want);
		exit(1);
	}
	return (double)(t1 - t0) / repeat;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct timing {
	double ns;    /* best of the rounds */
	double ratio; /* median over the rounds of (path / no-op floor measured next to it) */
};

/* Each round runs the no-op floor and then the path, so a load change on the machine moves
 * both; the ratio is taken per round. */
static struct timing time_prog(int fd, const struct pkt *p, uint32_t want)
{
	double ratios[64], best = 0;
	unsigned int r, n = rounds > 64 ? 64 : rounds;
	struct timing t;

	for (r = 0; r < n; r++) {
		double fl = run_once(noop_fd, p, TC_ACT_OK), ns = run_once(fd, p, want);

		ratios[r] = ns / fl;
		if (!r || ns < best)
			best = ns;
	}
	qsort(ratios, n, sizeof(ratios[0]), cmp_double);
	t.ns = best;
	t.ratio = n & 1 ? ratios[n / 2] : (ratios[n / 2 - 1] + ratios[n / 2]) / 2;
	return t;
}

static int noop_prog(void)
{
	struct bpf_insn insns[] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = TC_ACT_OK},
		{.code = BPF_JMP | BPF_EXIT},
	};
	int fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "xp_bench_noop", "GPL", insns, 2, NULL);

	if (fd < 0)
		die("loading the no-op program", errno);
	return fd;
}

static struct xp_bpf_config bench_cfg(void)
{
	struct xp_bpf_config c = {
		.abi_version = XP_BPF_ABI_VERSION,
		.flags = XP_CFG_UDP,
		.mark = 0x5870,
		.mark_mask = 0xffff,
		.xp0_ifindex = 1, /* never reached: test runs do not transmit */
		.redirect_mode = XP_REDIRECT_PLAIN,
		.n_workers = 4,
		.heartbeat_timeout_ns = 3600ull * 1000000000ull, /* the heartbeat stays fresh */
		.xp0p_mac = {0x02, 0x58, 0x50, 0, 0, 2},
		.xp0_mac = {0x02, 0x58, 0x50, 0, 0, 1},
	};

	return c;
}

/* [route] as compiled: 1,000 dst-cidr lines -> one LPM rule, 100 dport lines -> one
 * port-interval rule; fallback as given. The prefixes avoid 198.51.100.0/24 and 2001:db8:99::/48
 * (the "miss" destinations); 10.20.0.0/16 is one of them (the "hit" destination). */
static void rules_setup(struct dp *d, uint8_t fallback)
{
	struct xp_rule r0 = {.rule_id = 1,
			     .dst_set = 1,
			     .take = XP_TAKE_DST_SET,
			     .dport_hi = 65535,
			     .sport_hi = 65535};
	struct xp_rule r1 = {.rule_id = 1001,
			     .prange_first = 0,
			     .prange_count = 100,
			     .take = XP_TAKE_PORTS,
			     .dport_hi = 65535,
			     .sport_hi = 65535};
	uint32_t k;
	int i;

	for (i = 0; i < 1000; i++) {
		struct xp_cidr_key key = {.set_id = htonl(1)};
		struct xp_cidr_val val = {.rule_id = 1 + i,
					  .verdict = i & 1 ? XP_V_PROXY : XP_V_DIRECT};

		if (i < 800) { /* IPv4 /16../24 in 10.0.0.0 - 109.255.255.255 */
			key.addr[10] = key.addr[11] = 0xff;
			key.addr[12] = (uint8_t)(10 + i / 8);
			key.addr[13] = (uint8_t)(20 + (i % 8) * 29);
			key.addr[14] = (uint8_t)(i * 7);
			key.prefixlen = 32 + 96 + 16 + (i % 9);
			if (i == 0)
				key.prefixlen = 32 + 96 + 16; /* 10.20.0.0/16 */
			if (key.prefixlen <= 32 + 96 + 16)
				key.addr[14] = 0;
		} else { /* IPv6 /32../48 under 2001:db8::/24 .. */
			key.addr[0] = 0x20;
			key.addr[1] = 0x01;
			key.addr[2] = 0x0d;
			key.addr[3] = 0xb8;
			key.addr[4] = (uint8_t)(i - 800 + 1);
			key.prefixlen = 32 + 40;
		}
		if (bpf_map_update_elem(d->cidrs, &key, &val, BPF_ANY))
			die("filling xp_cidrs", errno);
	}
	for (i = 0; i < 100; i++) {
		struct xp_prange pr = {.lo = (uint16_t)(1000 + 10 * i),
				       .hi = (uint16_t)(1002 + 10 * i),
				       .rule_id = 1001 + i,
				       .verdict = XP_V_PROXY};

		k = i;
		if (bpf_map_update_elem(d->pranges, &k, &pr, BPF_ANY))
			die("filling xp_pranges", errno);
	}
	k = 0;
	bpf_map_update_elem(d->rules, &k, &r0, BPF_ANY);
	k = 1;
	bpf_map_update_elem(d->rules, &k, &r1, BPF_ANY);
	d->ctl->rulesets[0] =
		(struct xp_ruleset){.first = 0, .count = 2, .fallback_verdict = fallback};
	d->ctl->rules_gen = 0;
	d->ctl->heartbeat_ns = now_ns();
}

static void flow_put(struct dp *d, const struct pkt_spec *s, uint8_t verdict, uint8_t origin)
{
	struct xp_flow f = {.first_ns = now_ns(),
			    .last_ns = now_ns(),
			    .ifindex = 1,
			    .verdict = verdict,
			    .origin = origin,
			    .vsrc = XP_SRC_RULE,
			    .tcp_state = XP_TCP_SYN_SEEN};
	struct xp_tuple t;

	pkt_tuple(s, &t);
	if (bpf_map_update_elem(d->flows, &t, &f, BPF_ANY))
		die("filling xp_flows", errno);
}

struct row {
	const char *name;
	struct timing t;
};
static struct row rows[32];
static int n_rows;

static void row(const char *name, struct timing t)
{
	rows[n_rows++] = (struct row){name, t};
	fprintf(stderr, "  %-62s %7.1f ns %6.2fx\n", name, t.ns, t.ratio);
}

static void print_insns(const char *label, struct bpf_object *obj)
{
	struct bpf_program *prog;

	bpf_object__for_each_program(prog, obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (!bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			printf("| %s | %s | %u |\n", label, bpf_program__name(prog),
			       info.verified_insns);
	}
}

int main(int argc, char **argv)
{
	struct xp_bpf_config cfg = bench_cfg();
	struct xproxy_bench *nb;
	struct xproxy_bpf *sk;
	struct dp est, nf;
	cpu_set_t cpus;
	struct pkt p;
	int opt, err, i;

	while ((opt = getopt(argc, argv, "n:r:")) != -1) {
		if (opt == 'n')
			repeat = (unsigned int)strtoul(optarg, NULL, 0);
		else if (opt == 'r')
			rounds = (unsigned int)strtoul(optarg, NULL, 0);
		else {
			fprintf(stderr, "usage: bench_bpf [-n REPEAT] [-r ROUNDS]\n");
			return 2;
		}
	}
	if (!repeat || !rounds) {
		fprintf(stderr, "bench_bpf: -n and -r must be positive\n");
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "bench_bpf: needs root (CAP_BPF, CAP_NET_ADMIN)\n");
		return 1;
	}

	sk = xproxy_bpf__open();
	if (!sk)
		die("opening the skeleton", errno);
	sk->rodata->xp_cfg = cfg;
	err = xproxy_bpf__load(sk);
	if (err)
		die("loading the datapath", err);
	nb = xproxy_bench__open();
	if (!nb)
		die("opening the bench skeleton", errno);
	nb->rodata->xp_cfg = cfg;
	/* room for every FLOW_NEW of a run: nobody consumes them here */
	bpf_map__set_max_entries(nb->maps.xp_events, 256u << 20);
	err = xproxy_bench__load(nb);
	if (err)
		die("loading the bench datapath", err);
	DP_FROM(sk, &est);
	DP_FROM(nb, &nf);
	noop_fd = noop_prog();
	/* stay on one CPU: test runs execute on the caller's CPU */
	CPU_ZERO(&cpus);
	CPU_SET(sched_getcpu(), &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);

	printf("bench_bpf: BPF_PROG_TEST_RUN, %u rounds x %u packets; ns/packet is the best "
	       "round,\n"
	       "x floor the median per-round ratio to the no-op program run just before\n\n",
	       rounds, repeat);
	fprintf(stderr, "measuring:\n");

	{
		struct pkt_spec s = PKT_TCP4("192.168.1.10", 40000, "198.51.100.7", 443, TH_ACK);

		pkt_build(&s, &p);
		row("no-op tc program (the floor)", time_prog(noop_fd, &p, TC_ACT_OK));
	}

	/* established flows */
	rules_setup(&est, XP_V_DIRECT);
	for (i = 0; i < 4; i++) {
		int v6 = i & 1, proxy = i >> 1;
		struct pkt_spec s =
			v6 ? PKT_TCP6("2001:db8:1::10", 40000, "2001:db8:99::7", 443, TH_ACK)
			   : PKT_TCP4("192.168.1.10", 40000, "198.51.100.7", 443, TH_ACK);
		static const char *names[] = {
			"established TCP v4, DIRECT (lan_ingress)",
			"established TCP v6, DIRECT (lan_ingress)",
			"established TCP v4, PROXY: MAC rewrite + redirect",
			"established TCP v6, PROXY: MAC rewrite + redirect",
		};

		s.payload = 1000;
		pkt_build(&s, &p);
		flow_put(&est, &s, proxy ? XP_V_PROXY : XP_V_DIRECT, XP_ORIGIN_LAN);
		row(names[i], time_prog(est.prog[P_LAN], &p, proxy ? TC_ACT_REDIRECT : TC_ACT_OK));
	}

	/* new flows through the rules */
	rules_setup(&nf, XP_V_DIRECT);
	{
		struct pkt_spec s = PKT_TCP4("192.168.1.10", 40000, "198.51.100.7", 443, TH_SYN);

		pkt_build(&s, &p);
		row("new flow v4, 1000 CIDR + 100 port rules, both miss (fallback)",
		    time_prog(nf.prog[P_LAN], &p, TC_ACT_OK));
		s.dst = "10.20.30.40";
		pkt_build(&s, &p);
		row("new flow v4, 1000 CIDR + 100 port rules, CIDR hit",
		    time_prog(nf.prog[P_LAN], &p, TC_ACT_OK));
		s = PKT_TCP6("2001:db8:1::10", 40000, "2001:db8:99::7", 443, TH_SYN);
		pkt_build(&s, &p);
		row("new flow v6, 1000 CIDR + 100 port rules, both miss (fallback)",
		    time_prog(nf.prog[P_LAN], &p, TC_ACT_OK));
		s = PKT_TCP4("192.168.1.10", 40000, "198.51.100.7", 1051, TH_SYN);
		pkt_build(&s, &p);
		row("new flow v4, port rule hit: PROXY + FLOW_NEW event + redirect",
		    time_prog(nf.prog[P_LAN], &p, TC_ACT_REDIRECT));
	}
	/* the destination map decides before the rules */
	{
		struct pkt_spec s = PKT_TCP4("192.168.1.10", 40000, "203.0.113.9", 443, TH_SYN);
		struct xp_dst_key k = {.port = 443, .l4proto = 6};
		struct xp_dst_verdict v = {.verdict = XP_V_DIRECT};

		pkt_addr16("203.0.113.9", 0, k.addr);
		if (bpf_map_update_elem(nf.dst, &k, &v, BPF_ANY))
			die("filling xp_dst_verdicts", errno);
		pkt_build(&s, &p);
		row("new flow v4, destination-map hit (port key)",
		    time_prog(nf.prog[P_LAN], &p, TC_ACT_OK));
	}
	/* the two netns-side programs */
	{
		struct pkt_spec fwd = PKT_TCP4("192.168.1.10", 40001, "198.51.100.7", 443, TH_ACK);
		struct pkt_spec rep = PKT_TCP4("198.51.100.7", 443, "192.168.1.10", 40001, TH_ACK);

		flow_put(&est, &fwd, XP_V_PROXY, XP_ORIGIN_LAN);
		rep.payload = 1000;
		pkt_build(&rep, &p);
		row("proxy_reply v4 (flow lookup + redirect_neigh)",
		    time_prog(est.prog[P_PX_REPLY], &p, TC_ACT_REDIRECT));
		fwd.payload = 1000;
		pkt_build(&fwd, &p);
		row("proxy_ingress v4, not a SYN (parse, pass)",
		    time_prog(est.prog[P_PX_IN], &p, TC_ACT_OK));
	}

	/* WAN ingress, UDP to a router address (XP_CFG_UDP): what an answer to one of xproxyd's
	 * upstream sockets costs. Its socket (connected, on loopback) is real: the datapath asks
	 * the kernel for it before recording the datagram as a flow the peer started. */
	{
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_addr.s_addr = htonl(0x7f000001)};
		struct pkt_spec s = PKT_UDP4("127.0.0.2", 5000, "127.0.0.1", 0);
		struct pkt_spec fwd;
		socklen_t alen = sizeof(a);
		struct xp_tuple t;
		uint8_t k[16], one = 1;
		int fd = socket(AF_INET, SOCK_DGRAM, 0);

		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
		    getsockname(fd, (struct sockaddr *)&a, &alen))
			die("a local UDP socket", errno);
		s.dport = ntohs(a.sin_port);
		a.sin_addr.s_addr = htonl(0x7f000002);
		a.sin_port = htons(5000);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
			die("connecting the local UDP socket", errno);
		pkt_addr16("127.0.0.1", 0, k);
		if (bpf_map_update_elem(est.local, k, &one, BPF_ANY))
			die("filling xp_local_addrs", errno);
		s.payload = 1000;
		pkt_build(&s, &p);
		row("wan_ingress UDP v4 answer, connected socket: socket lookup, no record",
		    time_prog(est.prog[P_WAN_IN], &p, TC_ACT_OK));
		/* what the same answers cost while the (peer, ::, port) entry was kept for them */
		pkt_tuple(&s, &t);
		memset(t.daddr, 0, sizeof(t.daddr));
		{
			struct xp_flow f = {.first_ns = now_ns(),
					    .last_ns = now_ns(),
					    .verdict = XP_V_DIRECT,
					    .vsrc = XP_SRC_MIDSTREAM};

			/* the row above timed the lookup only if it never recorded the answer */
			if (!bpf_map_lookup_elem(est.flows, &t, &f))
				die("the connected socket's answer was recorded", EINVAL);
			if (bpf_map_update_elem(est.flows, &t, &f, BPF_ANY))
				die("filling xp_flows", errno);
		}
		row("wan_ingress UDP v4 answer, (peer, ::, port) entry hit (refresh)",
		    time_prog(est.prog[P_WAN_IN], &p, TC_ACT_OK));
		bpf_map_delete_elem(est.flows, &t);
		/* an answer to a flow the router started through the rules: its exact entry */
		fwd = PKT_UDP4("127.0.0.1", s.dport, "127.0.0.2", 5000);
		flow_put(&est, &fwd, XP_V_DIRECT, XP_ORIGIN_HOST);
		row("wan_ingress UDP v4 answer, exact reverse entry hit",
		    time_prog(est.prog[P_WAN_IN], &p, TC_ACT_OK));
		close(fd);
	}

	printf("| path | ns/packet | x floor |\n|---|---:|---:|\n");
	for (i = 0; i < n_rows; i++)
		printf("| %s | %.1f | %.2f |\n", rows[i].name, rows[i].t.ns, rows[i].t.ratio);
	printf("\ntargets: established <= 2x floor, new flow with the rules <= 4x floor\n");
	printf("\n| object | program | verified_insns (this kernel, bench config) "
	       "|\n|---|---|---:|\n");
	print_insns("xproxy.bpf.o", sk->obj);

	close(noop_fd);
	xproxy_bench__destroy(nb);
	xproxy_bpf__destroy(sk);
	return 0;
}
