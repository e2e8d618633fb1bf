/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * nl - a small rtnetlink client: just what the datapath loader needs, without libmnl/libnl.
 *
 * A struct nl is one NETLINK_ROUTE socket. It talks to the network namespace the calling
 * thread was in when nl_open() ran, for its whole life (a netlink socket is bound to the netns
 * it was created in), so open one per namespace.
 *
 * Requests are synchronous: nl_request() sends one message and waits for its ack, nl_dump()
 * sends a dump request and calls a function for every reply. Errors come back as -errno; the
 * kernel's extended-ack text, when it sent one, is kept in nl_last_error() so the caller that
 * reports the error can quote it. Nothing in here logs.
 *
 * Messages are built in a fixed buffer (struct nl_msg); an attribute that does not fit marks
 * the message as overflowed and the request fails with -EMSGSIZE instead of sending half of it.
 */
#ifndef XP_NL_H
#define XP_NL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/netlink.h>

#define NL_MSG_MAX 4096
/* IFNAMSIZ without <net/if.h> or <linux/if.h>: those two clash, and our includers pick one. */
#define NL_IFNAMSIZ 16

struct nl;

struct nl_msg {
	union {
		struct nlmsghdr nlh;
		char buf[NL_MSG_MAX];
	};
	bool overflow;
};

/* Open a NETLINK_ROUTE socket in the calling thread's netns. NULL with errno on failure. */
struct nl *nl_open(void);
/* Open a non-blocking socket subscribed to the given RTNLGRP_* groups (notifications only). */
struct nl *nl_open_groups(const unsigned *groups, size_t n);
void nl_close(struct nl *nl); /* NULL-safe */
int nl_fd(const struct nl *nl);
/* Extended-ack message of the last failed request ("" if the kernel gave none). */
const char *nl_last_error(const struct nl *nl);

/* Message building. `hdr` (may be NULL) is the family header (ifinfomsg, rtmsg, ...). */
void nl_msg_init(struct nl_msg *m, uint16_t type, uint16_t flags, const void *hdr, size_t hdrlen);
void nl_put(struct nl_msg *m, uint16_t type, const void *data, size_t len);
void nl_put_u8(struct nl_msg *m, uint16_t type, uint8_t v);
void nl_put_u32(struct nl_msg *m, uint16_t type, uint32_t v);
void nl_put_str(struct nl_msg *m, uint16_t type, const char *s);
/* Raw bytes with no attribute header (the ifinfomsg inside VETH_INFO_PEER). */
void nl_put_raw(struct nl_msg *m, const void *data, size_t len);
struct nlattr *nl_nest_start(struct nl_msg *m, uint16_t type);
void nl_nest_end(struct nl_msg *m, struct nlattr *nest);

/* Send m (NLM_F_REQUEST|NLM_F_ACK are added) and wait for the ack. 0 or -errno. */
int nl_request(struct nl *nl, struct nl_msg *m);
/* Send a dump request (NLM_F_REQUEST|NLM_F_DUMP are added) and call fn for every message until
 * NLMSG_DONE. fn returns 0 to go on or -errno to stop (the rest is drained, that error is
 * returned). 0 or -errno; -EINTR if the kernel marked the dump inconsistent (retry). */
typedef int (*nl_msg_fn)(const struct nlmsghdr *nlh, void *ctx);
int nl_dump(struct nl *nl, struct nl_msg *m, nl_msg_fn fn, void *ctx);
/* Read whatever notifications are queued on a nl_open_groups() socket, calling fn for each.
 * Returns the number of messages handled, or -ENOBUFS when the kernel dropped some (the
 * caller must resync from a dump), or another -errno. Never blocks. */
int nl_recv_notifications(struct nl *nl, nl_msg_fn fn, void *ctx);

/* Parsing. tb[0..max] is filled with the last attribute of each type (NULL when absent);
 * attributes above max are ignored. -EINVAL when an attribute runs past the end. */
int nl_parse_attrs(const void *start, size_t len, const struct nlattr **tb, unsigned max);
/* The attributes following a family header of hdrlen bytes. */
int nl_parse_msg(const struct nlmsghdr *nlh, size_t hdrlen, const struct nlattr **tb, unsigned max);
static inline const void *nl_data(const struct nlattr *a)
{
	return (const char *)a + NLA_HDRLEN;
}
static inline size_t nl_len(const struct nlattr *a)
{
	return a->nla_len - NLA_HDRLEN;
}

/* ------------------------------------------------------------------------------------------ */
/* Links */

struct nl_link {
	int ifindex;
	unsigned type;	/* ARPHRD_* */
	unsigned flags; /* IFF_* */
	uint8_t mac[6]; /* zero if the device has no 6-byte hardware address */
	bool has_mac;
	char name[NL_IFNAMSIZ];
	char alias[64]; /* IFLA_IFALIAS, "" if none (truncated to fit) */
	char kind[16];	/* IFLA_INFO_KIND ("veth"), "" for devices without one */
};

/* -ENODEV when there is no such device. */
int nl_link_get(struct nl *nl, const char *name, struct nl_link *out);
int nl_link_get_index(struct nl *nl, int ifindex, struct nl_link *out);
/* A veth pair: `name` here with `mac`, and `peer` with `peer_mac` created directly in the netns
 * whose fd is peer_netns_fd (-1: this netns). Exclusive: -EEXIST if `name` exists. */
int nl_veth_create(struct nl *nl, const char *name, const uint8_t mac[6], const char *peer,
		   const uint8_t peer_mac[6], int peer_netns_fd);
int nl_link_set_alias(struct nl *nl, int ifindex, const char *alias);
/* IN6_ADDR_GEN_MODE_* (linux/if_link.h); -EAFNOSUPPORT if IPv6 is off. */
int nl_link_set_addr_gen_mode(struct nl *nl, int ifindex, uint8_t mode);
int nl_link_set_up(struct nl *nl, int ifindex);
int nl_link_del(struct nl *nl, int ifindex);

/* ------------------------------------------------------------------------------------------ */
/* Addresses */

struct nl_addr {
	int family; /* AF_INET, AF_INET6 */
	int ifindex;
	uint8_t prefixlen;
	uint8_t scope;
	uint32_t flags;	   /* IFA_F_* */
	uint8_t local[16]; /* the device's own address (IFA_LOCAL, else IFA_ADDRESS) */
	uint8_t broadcast[16];
	bool has_broadcast; /* IPv4 only */
	bool deleted;	    /* RTM_DELADDR */
};

/* Fills a from an RTM_NEWADDR/RTM_DELADDR message. -EINVAL if it is not one or is malformed;
 * -EAFNOSUPPORT for families other than IPv4/IPv6. */
int nl_addr_parse(const struct nlmsghdr *nlh, struct nl_addr *a);
typedef int (*nl_addr_fn)(const struct nl_addr *a, void *ctx);
/* Every address of `family` (AF_UNSPEC: all) in the socket's netns. */
int nl_addr_dump(struct nl *nl, int family, nl_addr_fn fn, void *ctx);

/* ------------------------------------------------------------------------------------------ */
/* Routes, rules, neighbours, tc filters */

struct nl_route {
	int family;
	uint32_t table; /* RT_TABLE_MAIN, 100, ... */
	uint8_t type;	/* RTN_UNICAST, RTN_LOCAL, ... */
	uint8_t scope;	/* RT_SCOPE_* */
	uint8_t dst_len;
	uint8_t dst[16];
	bool has_gateway;
	uint8_t gateway[16];
	int oif;
	bool onlink;
};
int nl_route_add(struct nl *nl, const struct nl_route *r);
/* Policy rule "iif <iifname> lookup <table>" at `priority`. */
int nl_rule_add(struct nl *nl, int family, const char *iifname, uint32_t table, uint32_t priority);
/* Permanent neighbour entry (replaces an existing one). */
int nl_neigh_add_permanent(struct nl *nl, int family, int ifindex, const uint8_t *addr,
			   const uint8_t lladdr[6]);

struct nl_filter {
	uint32_t handle;
	uint16_t priority;
	uint16_t protocol; /* ETH_P_* in host order */
	char kind[16];	   /* "bpf" */
};
typedef int (*nl_filter_fn)(const struct nl_filter *f, void *ctx);
/* Every tc filter under `parent` (TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS) ...) of ifindex.
 * Entries with handle 0 are the per-priority headers the kernel emits before the filters. */
int nl_filter_dump(struct nl *nl, int ifindex, uint32_t parent, nl_filter_fn fn, void *ctx);

#endif
