/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_nl_netns - the rtnetlink helper (core/nl.c) and the private netns + veth pair
 * (core/netns.c), against the real kernel.
 *
 * The process first moves itself into a throwaway anonymous netns (the "router"), so nothing
 * it creates can touch the machine or survive the process, whatever happens: no names to clean
 * up, parallel runs cannot collide. Inside it, it builds the private netns and the pair the way
 * the daemon does, reads everything back with iproute2 (independent of nl.c), then deletes it
 * and checks nothing is left.
 */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/if_arp.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <netinet/in.h>

#include "netns.h"
#include "netns_test.h"
#include "nl.h"

#define VETH "xpt0"
#define PEER "xpt0p"

static ino_t ns_inode_of_fd(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

static ino_t thread_ns_inode(void)
{
	struct stat st;

	return stat("/proc/thread-self/ns/net", &st) == 0 ? st.st_ino : 0;
}

/* ------------------------------------------------------------------------------------------ */

static void test_links(struct nl *nl)
{
	struct nl_link l;
	struct nl_msg m;
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
	const uint8_t mac[6] = {2, 0, 0, 0, 0, 1};
	int err;

	CHECK(nl_link_get(nl, "lo", &l) == 0);
	CHECK(l.type == ARPHRD_LOOPBACK && l.ifindex > 0 && strcmp(l.name, "lo") == 0);
	CHECK(l.kind[0] == '\0');

	err = nl_link_get(nl, "lan0", &l);
	CHECKF(err == 0, "%s", strerror(-err));
	CHECK(l.type == ARPHRD_ETHER && l.has_mac && strcmp(l.kind, "veth") == 0);
	CHECK(strcmp(l.alias, "a-lan") == 0);
	CHECK(nl_link_get_index(nl, l.ifindex, &l) == 0 && strcmp(l.name, "lan0") == 0);

	CHECK(nl_link_get(nl, "nosuchdev0", &l) == -ENODEV);
	CHECK(nl_link_get(nl, "a-name-longer-than-ifnamsiz", &l) == -EINVAL);
	CHECK(nl_link_get(nl, "", &l) == -EINVAL);
	CHECK(nl_link_get_index(nl, 99999, &l) == -ENODEV);
	CHECK(nl_link_del(nl, 99999) == -ENODEV);

	/* A device that exists: exclusive create must refuse it. */
	CHECK(nl_veth_create(nl, "lan0", mac, "lan0x", mac, -1) == -EEXIST);

	/* Error extraction: a name the policy refuses comes back as -EINVAL with the kernel's
	 * extended-ack text. */
	nl_msg_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
	nl_put_str(&m, IFLA_IFNAME, "a-name-longer-than-ifnamsiz");
	err = nl_request(nl, &m);
	CHECKF(err == -EINVAL || err == -ERANGE, "%d", err);
	CHECKF(nl_last_error(nl)[0] != '\0', "no extended ack text");
	fprintf(stderr, "  extended ack for an over-long name: %s (%s)\n", nl_last_error(nl),
		strerror(-err));

	/* Oversized message: refused before anything is sent. */
	{
		static char big[NL_MSG_MAX];

		nl_msg_init(&m, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
		nl_put(&m, IFLA_IFALIAS, big, sizeof(big));
		CHECK(m.overflow);
		CHECK(nl_request(nl, &m) == -EMSGSIZE);
	}
}

static void test_parse(void)
{
	const struct nlattr *tb[8];
	struct {
		struct nlattr a;
		uint32_t v;
		struct nlattr b; /* claims more than there is */
	} buf = {{8, 1}, 7, {200, 2}};
	struct nlmsghdr bogus = {.nlmsg_len = NLMSG_HDRLEN, .nlmsg_type = RTM_NEWLINK};
	struct nl_addr a;

	CHECK(nl_parse_attrs(&buf, 8, tb, 7) == 0 && tb[1] && !tb[2]);
	CHECK(nl_parse_attrs(&buf, sizeof(buf), tb, 7) == -EINVAL);
	buf.a.nla_len = 2; /* shorter than its own header */
	CHECK(nl_parse_attrs(&buf, sizeof(buf), tb, 7) == -EINVAL);
	CHECK(nl_addr_parse(&bogus, &a) == -EINVAL);
	bogus.nlmsg_type = RTM_NEWADDR; /* too short for an ifaddrmsg */
	CHECK(nl_addr_parse(&bogus, &a) == -EINVAL);
}

struct addr_seen {
	int v4, v4_bcast, v6, v4_del, v6_del, other;
	int lan_ifindex;
};

static int note_addr(const struct nl_addr *a, void *ctx)
{
	struct addr_seen *s = ctx;
	uint8_t v4[4] = {10, 77, 0, 1}, bc[4] = {10, 77, 0, 255};
	uint8_t v6[16] = {0xfd, [7] = 0x77, [15] = 1}; /* fd00:0:0:77::1 */

	if (a->family == AF_INET && memcmp(a->local, v4, 4) == 0 && a->ifindex == s->lan_ifindex) {
		if (a->deleted)
			s->v4_del++;
		else
			s->v4++;
		if (a->has_broadcast && memcmp(a->broadcast, bc, 4) == 0)
			s->v4_bcast++;
	} else if (a->family == AF_INET6 && memcmp(a->local, v6, 16) == 0) {
		if (a->deleted)
			s->v6_del++;
		else
			s->v6++;
	} else {
		s->other++;
	}
	return 0;
}

static int note_msg(const struct nlmsghdr *nlh, void *ctx)
{
	struct nl_addr a;

	if (nl_addr_parse(nlh, &a) == 0)
		note_addr(&a, ctx);
	return 0;
}

/* Read notifications until `want` messages came or 2 s passed, waiting with poll() on the
 * non-blocking socket. Messages read, or the first error. */
static int recv_until(struct nl *sub, struct addr_seen *seen, int want)
{
	double end = t_now() + 2.0;
	int total = 0;

	while (total < want && t_now() < end) {
		struct pollfd p = {.fd = nl_fd(sub), .events = POLLIN};
		int n;

		poll(&p, 1, 100);
		n = nl_recv_notifications(sub, note_msg, seen);
		if (n < 0)
			return n;
		total += n;
	}
	return total;
}

static void test_addrs(struct nl *nl)
{
	const unsigned groups[] = {RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR};
	struct addr_seen seen = {0};
	struct nl_link l;
	struct nl *sub;
	int rcvbuf = 1, n;
	char *out;

	REQUIRE(nl_link_get(nl, "lan0", &l) == 0, "lan0");
	seen.lan_ifindex = l.ifindex;
	sub = nl_open_groups(groups, 2);
	REQUIRE(sub, "nl_open_groups: %s", strerror(errno));
	CHECK(nl_recv_notifications(sub, note_msg, &seen) == 0); /* nothing yet, no blocking */

	out = t_cmd("ip addr add 10.77.0.1/24 brd + dev lan0 && "
		    "ip addr add fd00:0:0:77::1/64 dev lan0 nodad");
	CHECKF(out[0] == '\0', "%s", out);
	free(out);
	/* IPv6 announces a new address from a work item, a moment after `ip` returns. */
	n = recv_until(sub, &seen, 2);
	CHECKF(n >= 2, "%d", n);
	CHECK(seen.v4 == 1 && seen.v4_bcast == 1 && seen.v6 == 1);

	memset(&seen, 0, sizeof(seen));
	seen.lan_ifindex = l.ifindex;
	CHECK(nl_addr_dump(nl, AF_UNSPEC, note_addr, &seen) == 0);
	CHECK(seen.v4 == 1 && seen.v4_bcast == 1 && seen.v6 == 1);
	CHECK(seen.other >= 2); /* 127.0.0.1, ::1 */
	memset(&seen, 0, sizeof(seen));
	seen.lan_ifindex = l.ifindex;
	CHECK(nl_addr_dump(nl, AF_INET6, note_addr, &seen) == 0);
	CHECK(seen.v4 == 0 && seen.v6 == 1);

	memset(&seen, 0, sizeof(seen));
	seen.lan_ifindex = l.ifindex;
	out = t_cmd("ip addr del 10.77.0.1/24 dev lan0 && ip addr del fd00:0:0:77::1/64 dev lan0");
	free(out);
	n = recv_until(sub, &seen, 2);
	CHECKF(n >= 2 && seen.v4_del == 1 && seen.v6_del == 1, "n=%d v4_del=%d v6_del=%d", n,
	       seen.v4_del, seen.v6_del);

	/* Overrun: a tiny receive buffer and a burst of changes must come back as -ENOBUFS (so
	 * the caller resyncs), with the stale backlog discarded, never as silent loss. */
	CHECK(setsockopt(nl_fd(sub), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0);
	out = t_cmd(
		"for i in $(seq 1 200); do echo addr add 10.78.$((i / 250)).$((i %% 250 + 1))/32 "
		"dev lan0; done | ip -batch -");
	free(out);
	n = nl_recv_notifications(sub, note_msg, &seen);
	CHECKF(n == -ENOBUFS, "%d", n);
	CHECK(nl_recv_notifications(sub, note_msg, &seen) == 0);
	nl_close(sub);
	nl_close(NULL);
}

/* ------------------------------------------------------------------------------------------ */

static int check_inside(void *arg)
{
	const struct netns_pair *p = arg;
	char v[32];

	CHECK(t_cmd_has("iif " PEER " lookup 100", "ip -4 rule show"));
	CHECK(t_cmd_has("iif " PEER " lookup 100", "ip -6 rule show"));
	CHECK(t_cmd_has("local default dev lo", "ip -4 route show table 100"));
	CHECK(t_cmd_has("local default dev lo", "ip -6 route show table 100"));
	CHECK(t_cmd_has("default via 169.254.0.1 dev " PEER " proto static onlink",
			"ip -4 route show"));
	CHECK(t_cmd_has("default via fe80::1 dev " PEER, "ip -6 route show"));
	CHECK(t_cmd_has("onlink", "ip -6 route show default"));
	CHECK(t_cmd_has("169.254.0.1 dev " PEER " lladdr 02:58:50:00:00:01 PERMANENT",
			"ip -4 neigh show"));
	CHECK(t_cmd_has("fe80::1 dev " PEER " lladdr 02:58:50:00:00:01 PERMANENT",
			"ip -6 neigh show"));
	CHECK(t_cmd_has("link/ether 02:58:50:00:00:02", "ip link show " PEER));
	CHECK(t_cmd_has(",UP,LOWER_UP>", "ip link show " PEER));
	CHECK(t_cmd_has(",UP,LOWER_UP>", "ip link show lo"));
	/* Only the pair's peer and lo live here. */
	{
		char *out = t_cmd("ip -o link show | wc -l");

		CHECKF(atoi(out) == 2, "%s", out);
		free(out);
	}

	CHECK(netns_sysctl_read("net/ipv4/conf/all/rp_filter", v, sizeof(v)) == 0 &&
	      !strcmp(v, "0"));
	CHECK(netns_sysctl_read("net/ipv4/conf/" PEER "/rp_filter", v, sizeof(v)) == 0 &&
	      !strcmp(v, "0"));
	CHECK(netns_sysctl_read("net/ipv4/conf/" PEER "/accept_local", v, sizeof(v)) == 0 &&
	      !strcmp(v, "1"));
	CHECK(netns_sysctl_read("net/ipv6/conf/" PEER "/accept_dad", v, sizeof(v)) == 0 &&
	      !strcmp(v, "0"));
	CHECK(netns_sysctl_read("net/ipv6/conf/" PEER "/accept_ra", v, sizeof(v)) == 0 &&
	      !strcmp(v, "0"));
	CHECK(p->ipv6);
	return 42;
}

static int set_and_read(void *arg)
{
	char v[32];

	if (netns_sysctl_write("net/ipv4/ip_forward", "1") ||
	    netns_sysctl_read("net/ipv4/ip_forward", v, sizeof(v)))
		return -1;
	return atoi(v);
}

static void test_pair(struct nl *nl)
{
	struct netns_pair p, p2;
	struct nl_link l;
	struct netns *ns;
	ino_t home = thread_ns_inode();
	char err[256], v[16];
	int fd, sfd, ret;

	ns = netns_create();
	REQUIRE(ns, "netns_create: %s", strerror(errno));
	CHECK(thread_ns_inode() == home);
	CHECK(ns_inode_of_fd(netns_fd(ns)) != home);
	CHECK(ns_inode_of_fd(netns_host_fd(ns)) == home);

	/* Per-netns sysctls: written inside, invisible outside. */
	CHECK(netns_run(ns, set_and_read, NULL) == 1);
	CHECK(netns_sysctl_read("net/ipv4/ip_forward", v, sizeof(v)) == 0 && !strcmp(v, "0"));
	CHECK(thread_ns_inode() == home);

	/* Bad input: clear errors, nothing created. */
	CHECK(netns_pair_setup(ns, nl, "a-very-long-nam", &p2, err, sizeof(err)) == -EINVAL);
	CHECKF(strstr(err, "veth name") != NULL, "%s", err);
	CHECK(netns_pair_setup(ns, nl, "", &p2, err, sizeof(err)) == -EINVAL);
	CHECK(netns_pair_setup(ns, nl, "lan0", &p2, err, sizeof(err)) == -EEXIST);
	CHECKF(strstr(err, "creating veth pair lan0/lan0p") != NULL, "%s", err);

	ret = netns_pair_setup(ns, nl, VETH, &p, err, sizeof(err));
	REQUIRE(ret == 0, "netns_pair_setup: %s", err);
	CHECK(thread_ns_inode() == home);
	CHECK(strcmp(p.host, VETH) == 0 && strcmp(p.peer, PEER) == 0);

	CHECK(nl_link_get(nl, VETH, &l) == 0);
	CHECK(l.ifindex == p.host_ifindex && strcmp(l.kind, "veth") == 0);
	CHECK(strcmp(l.alias, NETNS_PAIR_ALIAS) == 0);
	CHECK(l.has_mac && memcmp(l.mac, p.host_mac, 6) == 0);
	CHECK(l.flags & IFF_UP);
	CHECK(nl_link_get(nl, PEER, &l) == -ENODEV); /* the peer is not here */
	CHECK(t_cmd_has("addrgenmode none", "ip -d link show " VETH));
	CHECK(t_cmd_lacks("inet", "ip addr show dev " VETH));

	CHECK(netns_run(ns, check_inside, &p) == 42);
	CHECK(thread_ns_inode() == home);

	/* Sockets made through netns_socket() live in the private netns. */
	fd = netns_socket(ns, AF_INET6, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	sfd = fd >= 0 ? ioctl(fd, SIOCGSKNS) : -1;
	CHECK(sfd >= 0 && ns_inode_of_fd(sfd) == ns_inode_of_fd(netns_fd(ns)));
	if (sfd >= 0)
		close(sfd);
	if (fd >= 0)
		close(fd);

	/* A second pair with the same name is refused while the first exists. */
	CHECK(netns_pair_setup(ns, nl, VETH, &p2, err, sizeof(err)) == -EEXIST);

	CHECK(netns_pair_delete(nl, &p) == 0);
	CHECK(nl_link_get(nl, VETH, &l) == -ENODEV);
	CHECK(netns_pair_delete(nl, &p) == -ENODEV);
	netns_destroy(ns);
	netns_destroy(NULL);

	/* Nothing left in the router: only lo and lan0, no qdisc but the defaults. */
	CHECK(t_cmd_lacks("xpt0", "ip -o link show"));
	CHECK(t_cmd_lacks("clsact", "tc qdisc show"));
}

int main(void)
{
	struct nl *nl;
	char *out;

	if (unshare(CLONE_NEWNET) < 0) {
		if (errno == EPERM)
			SKIP("unshare(CLONE_NEWNET): %s (needs CAP_SYS_ADMIN)", strerror(errno));
		REQUIRE(0, "unshare(CLONE_NEWNET): %s", strerror(errno));
	}
	out = t_cmd("ip link set lo up && ip link add lan0 type veth peer name lan0b && "
		    "ip link set lan0 alias a-lan && ip link set lan0 up");
	REQUIRE(out[0] == '\0', "router setup: %s", out);
	free(out);

	nl = nl_open();
	REQUIRE(nl, "nl_open: %s", strerror(errno));
	test_parse();
	test_links(nl);
	test_addrs(nl);
	test_pair(nl);
	nl_close(nl);
	return t_done("test_nl_netns");
}
