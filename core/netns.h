/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * netns - the private network namespace and the veth pair into it.
 *
 * netns_create() makes an anonymous namespace with unshare(CLONE_NEWNET) on the calling thread,
 * keeps an fd to it and puts the thread straight back into the namespace it came from (the
 * "host" netns, whose fd is kept too). Nothing is bound under /run/netns: the namespace lives
 * exactly as long as our fds and the sockets made in it.
 *
 * Switching is per thread: netns_enter() / netns_leave() call setns() on the calling thread
 * only, so other threads keep running in the host netns. Sockets and netlink sockets stay in
 * the netns they were created in, which is how listeners and the in-netns rtnetlink socket
 * are made (netns_socket(), netns_run()).
 *
 * netns_pair_setup() builds the pair and the netns side of the data path:
 *   host:  <name> (NETNS_HOST_MAC), ifalias NETNS_PAIR_ALIAS, IPv6 addr_gen_mode none, up
 *   netns: <name>p (NETNS_PEER_MAC), rp_filter 0 (all and <name>p), accept_local 1,
 *          accept_dad 0 and accept_ra 0 on <name>p (before it goes up), lo up, <name>p up,
 *          rule "iif <name>p lookup NETNS_TABLE" (v4 + v6, priority NETNS_RULE_PRIO),
 *          "local default dev lo table NETNS_TABLE" (v4 + v6),
 *          main: "default via 169.254.0.1 dev <name>p onlink", "default via fe80::1 dev <name>p
 *          onlink", both gateways permanent neighbours with NETNS_HOST_MAC.
 * The MACs are fixed, locally administered unicast addresses ("XP" = 0x58 0x50): the pair is
 * a point-to-point link private to one daemon, so they never meet another instance's.
 */
#ifndef XP_NETNS_H
#define XP_NETNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nl.h"

struct nl;
struct netns;

#define NETNS_PAIR_ALIAS "xproxy" /* IFLA_IFALIAS of the host side: marks the device as ours */
#define NETNS_HOST_MAC                                                                             \
	{                                                                                          \
		0x02, 0x58, 0x50, 0x00, 0x00, 0x01                                                 \
	} /* xp0 */
#define NETNS_PEER_MAC                                                                             \
	{                                                                                          \
		0x02, 0x58, 0x50, 0x00, 0x00, 0x02                                                 \
	} /* xp0p */
#define NETNS_TABLE	100
#define NETNS_RULE_PRIO 100
#define NETNS_GW4	"169.254.0.1"
#define NETNS_GW6	"fe80::1"

/* New anonymous netns; the calling thread is back in its own netns on return. NULL + errno. */
struct netns *netns_create(void);
/* Close our fds; the namespace goes away once no socket in it remains. NULL-safe. */
void netns_destroy(struct netns *ns);
int netns_fd(const struct netns *ns);
int netns_host_fd(const struct netns *ns);

/* setns() the calling thread into the private netns / back to the host netns. 0 or -errno.
 * A failed netns_leave() leaves the thread in the private netns: the caller must treat it as
 * fatal for that thread. */
int netns_enter(const struct netns *ns);
int netns_leave(const struct netns *ns);
/* Run fn(arg) with the calling thread inside the netns. fn's result, or -errno if switching
 * failed (fn did not run, or the thread could not switch back). */
int netns_run(const struct netns *ns, int (*fn)(void *arg), void *arg);
/* socket(2) inside the netns. fd (CLOEXEC) or -errno. */
int netns_socket(const struct netns *ns, int domain, int type, int protocol);

/* Sysctls of the calling thread's current netns. `key` is relative to /proc/sys
 * ("net/ipv4/conf/all/rp_filter"). 0 or -errno. read: value without the newline. */
int netns_sysctl_write(const char *key, const char *value);
int netns_sysctl_read(const char *key, char *buf, size_t len);

struct netns_pair {
	char host[NL_IFNAMSIZ]; /* "xp0" */
	char peer[NL_IFNAMSIZ]; /* "xp0p", inside the netns */
	int host_ifindex;
	int peer_ifindex; /* in the netns */
	uint8_t host_mac[6];
	uint8_t peer_mac[6];
	bool ipv6; /* IPv6 routes were set up (false when the kernel has IPv6 disabled) */
};

/* Create the pair (name must leave room for the "p": at most NL_IFNAMSIZ - 2 characters) and
 * set up both sides as described above. host_nl is a socket in the host netns. On failure
 * everything created is removed again, and err holds one line naming the step. 0 or -errno. */
int netns_pair_setup(struct netns *ns, struct nl *host_nl, const char *name, struct netns_pair *out,
		     char *err, size_t errlen);
/* Delete the pair (the peer goes with it). 0, or -errno (-ENODEV: already gone). */
int netns_pair_delete(struct nl *host_nl, const struct netns_pair *p);

#endif
