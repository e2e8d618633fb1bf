/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * nl - a small rtnetlink client (see nl.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/fib_rules.h>
#include <linux/if_addr.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#include "nl.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

/* Dump replies are at most 32 KiB per datagram on current kernels; 64 KiB leaves room. */
#define NL_RBUF 65536

struct nl {
	int fd;
	uint32_t portid;
	uint32_t seq;
	char ext_err[160];
	char *rbuf;
};

static struct nl *nl_new(int flags, const unsigned *groups, size_t n_groups)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	socklen_t salen = sizeof(sa);
	struct nl *nl;
	int one = 1;
	int err;

	nl = calloc(1, sizeof(*nl));
	if (!nl)
		return NULL;
	nl->rbuf = malloc(NL_RBUF);
	if (!nl->rbuf) {
		err = -ENOMEM;
		goto err_free;
	}
	nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | flags, NETLINK_ROUTE);
	if (nl->fd < 0) {
		err = -errno;
		goto err_free;
	}
	/* Best effort: older kernels simply give no extended ack / full echoes. */
	setsockopt(nl->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(nl->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(nl->fd, (struct sockaddr *)&sa, &salen) < 0) {
		err = -errno;
		goto err_close;
	}
	/* After bind(): bind() rewrites the first 32 group bits from nl_groups. */
	for (size_t i = 0; i < n_groups; i++) {
		if (setsockopt(nl->fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &groups[i],
			       sizeof(groups[i])) < 0) {
			err = -errno;
			goto err_close;
		}
	}
	nl->portid = sa.nl_pid;
	nl->seq = (uint32_t)getpid() << 8; /* any start; only our own echo has to match */
	return nl;

err_close:
	close(nl->fd);
err_free:
	free(nl->rbuf);
	free(nl);
	errno = -err;
	return NULL;
}

struct nl *nl_open(void)
{
	return nl_new(0, NULL, 0);
}

struct nl *nl_open_groups(const unsigned *groups, size_t n)
{
	return nl_new(SOCK_NONBLOCK, groups, n);
}

void nl_close(struct nl *nl)
{
	if (!nl)
		return;
	close(nl->fd);
	free(nl->rbuf);
	free(nl);
}

int nl_fd(const struct nl *nl)
{
	return nl->fd;
}

const char *nl_last_error(const struct nl *nl)
{
	return nl->ext_err;
}

/* ------------------------------------------------------------------------------------------ */
/* Building */

void nl_msg_init(struct nl_msg *m, uint16_t type, uint16_t flags, const void *hdr, size_t hdrlen)
{
	memset(m, 0, sizeof(*m));
	m->nlh.nlmsg_len = NLMSG_LENGTH(0);
	m->nlh.nlmsg_type = type;
	m->nlh.nlmsg_flags = flags;
	if (hdrlen)
		nl_put_raw(m, hdr, hdrlen);
}

static void *tail(struct nl_msg *m)
{
	return m->buf + NLMSG_ALIGN(m->nlh.nlmsg_len);
}

static bool room(struct nl_msg *m, size_t len)
{
	if (NLMSG_ALIGN(m->nlh.nlmsg_len) + NLA_ALIGN(len) > sizeof(m->buf)) {
		m->overflow = true;
		return false;
	}
	return true;
}

void nl_put_raw(struct nl_msg *m, const void *data, size_t len)
{
	if (!room(m, len))
		return;
	memset(tail(m), 0, NLA_ALIGN(len));
	if (data)
		memcpy(tail(m), data, len);
	m->nlh.nlmsg_len = NLMSG_ALIGN(m->nlh.nlmsg_len) + NLA_ALIGN(len);
}

void nl_put(struct nl_msg *m, uint16_t type, const void *data, size_t len)
{
	struct nlattr *a;

	if (len > UINT16_MAX - NLA_HDRLEN || !room(m, NLA_HDRLEN + len)) {
		m->overflow = true;
		return;
	}
	a = tail(m);
	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	memset((char *)a + NLA_HDRLEN, 0, NLA_ALIGN(len));
	if (len)
		memcpy((char *)a + NLA_HDRLEN, data, len);
	m->nlh.nlmsg_len = NLMSG_ALIGN(m->nlh.nlmsg_len) + NLA_HDRLEN + NLA_ALIGN(len);
}

void nl_put_u8(struct nl_msg *m, uint16_t type, uint8_t v)
{
	nl_put(m, type, &v, sizeof(v));
}

void nl_put_u32(struct nl_msg *m, uint16_t type, uint32_t v)
{
	nl_put(m, type, &v, sizeof(v));
}

void nl_put_str(struct nl_msg *m, uint16_t type, const char *s)
{
	nl_put(m, type, s, strlen(s) + 1);
}

struct nlattr *nl_nest_start(struct nl_msg *m, uint16_t type)
{
	struct nlattr *a = tail(m);

	nl_put(m, type | NLA_F_NESTED, NULL, 0);
	return m->overflow ? NULL : a;
}

void nl_nest_end(struct nl_msg *m, struct nlattr *nest)
{
	if (!nest || m->overflow)
		return;
	nest->nla_len = (char *)tail(m) - (char *)nest;
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing */

int nl_parse_attrs(const void *start, size_t len, const struct nlattr **tb, unsigned max)
{
	const char *p = start;

	memset(tb, 0, (max + 1) * sizeof(*tb));
	while (len >= NLA_HDRLEN) {
		const struct nlattr *a = (const struct nlattr *)p;
		unsigned type = a->nla_type & NLA_TYPE_MASK;

		if (a->nla_len < NLA_HDRLEN || a->nla_len > len)
			return -EINVAL;
		if (type <= max)
			tb[type] = a;
		if ((size_t)NLA_ALIGN(a->nla_len) >= len)
			break;
		len -= NLA_ALIGN(a->nla_len);
		p += NLA_ALIGN(a->nla_len);
	}
	return 0;
}

int nl_parse_msg(const struct nlmsghdr *nlh, size_t hdrlen, const struct nlattr **tb, unsigned max)
{
	size_t off = NLMSG_LENGTH(NLMSG_ALIGN(hdrlen));

	if (nlh->nlmsg_len < NLMSG_LENGTH(hdrlen))
		return -EINVAL;
	if (nlh->nlmsg_len <= off) {
		memset(tb, 0, (max + 1) * sizeof(*tb));
		return 0;
	}
	return nl_parse_attrs((const char *)nlh + off, nlh->nlmsg_len - off, tb, max);
}

/* ------------------------------------------------------------------------------------------ */
/* Transactions */

static void save_ext_ack(struct nl *nl, const struct nlmsghdr *nlh, size_t hdr_off)
{
	const struct nlattr *tb[NLMSGERR_ATTR_MAX + 1];

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS) || nlh->nlmsg_len <= hdr_off)
		return;
	if (nl_parse_attrs((const char *)nlh + hdr_off, nlh->nlmsg_len - hdr_off, tb,
			   NLMSGERR_ATTR_MAX) < 0)
		return;
	if (tb[NLMSGERR_ATTR_MSG] && nl_len(tb[NLMSGERR_ATTR_MSG]) > 0) {
		size_t n = nl_len(tb[NLMSGERR_ATTR_MSG]);

		if (n >= sizeof(nl->ext_err))
			n = sizeof(nl->ext_err) - 1;
		memcpy(nl->ext_err, nl_data(tb[NLMSGERR_ATTR_MSG]), n);
		nl->ext_err[n] = '\0';
	}
}

/* The error carried by an NLMSG_ERROR message, with its extended ack saved. */
static int ack_error(struct nl *nl, const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e = NLMSG_DATA(nlh);
	size_t off;

	if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
		return -EBADMSG;
	off = NLMSG_LENGTH(sizeof(*e));
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += NLMSG_ALIGN(e->msg.nlmsg_len) - NLMSG_HDRLEN;
	if (e->error)
		save_ext_ack(nl, nlh, off);
	return e->error > 0 ? -e->error : e->error;
}

static ssize_t recv_dgram(struct nl *nl, int flags)
{
	struct sockaddr_nl sa;
	struct iovec iov = {nl->rbuf, NL_RBUF};
	struct msghdr mh = {
		.msg_name = &sa,
		.msg_namelen = sizeof(sa),
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	ssize_t n;

	do {
		n = recvmsg(nl->fd, &mh, flags);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (mh.msg_flags & MSG_TRUNC)
		return -EMSGSIZE;
	if (sa.nl_pid != 0) /* only the kernel talks to us */
		return 0;
	return n;
}

/* Send m and process replies carrying its sequence number until the ack (or NLMSG_DONE for a
 * dump). fn may be NULL. */
static int transact(struct nl *nl, struct nl_msg *m, nl_msg_fn fn, void *ctx)
{
	bool dump = m->nlh.nlmsg_flags & NLM_F_DUMP;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	int cb_err = 0, intr = 0;
	ssize_t n;

	nl->ext_err[0] = '\0';
	if (m->overflow)
		return -EMSGSIZE;
	m->nlh.nlmsg_seq = ++nl->seq;
	m->nlh.nlmsg_pid = 0;
	do {
		n = sendto(nl->fd, m->buf, m->nlh.nlmsg_len, 0, (struct sockaddr *)&kernel,
			   sizeof(kernel));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	for (;;) {
		const struct nlmsghdr *h;
		size_t len;

		n = recv_dgram(nl, 0);
		if (n < 0)
			return (int)n;
		len = (size_t)n;
		for (h = (const struct nlmsghdr *)nl->rbuf; NLMSG_OK(h, len);
		     h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_seq != nl->seq || h->nlmsg_pid != nl->portid)
				continue; /* a late reply to an earlier, abandoned request */
			if (h->nlmsg_flags & NLM_F_DUMP_INTR)
				intr = 1;
			if (h->nlmsg_type == NLMSG_ERROR) {
				int err = ack_error(nl, h);

				return err ? err : cb_err;
			}
			if (h->nlmsg_type == NLMSG_DONE) {
				int err = 0;

				if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int)))
					memcpy(&err, NLMSG_DATA(h), sizeof(int));
				if (err < 0) {
					save_ext_ack(nl, h, NLMSG_LENGTH(sizeof(int)));
					return err;
				}
				if (cb_err)
					return cb_err;
				return intr ? -EINTR : 0;
			}
			if (h->nlmsg_type < NLMSG_MIN_TYPE)
				continue; /* NLMSG_NOOP, NLMSG_OVERRUN */
			if (fn && !cb_err)
				cb_err = fn(h, ctx);
		}
		if (!dump && !(m->nlh.nlmsg_flags & NLM_F_ACK))
			return cb_err;
	}
}

int nl_request(struct nl *nl, struct nl_msg *m)
{
	m->nlh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	return transact(nl, m, NULL, NULL);
}

static int request_reply(struct nl *nl, struct nl_msg *m, nl_msg_fn fn, void *ctx)
{
	m->nlh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	return transact(nl, m, fn, ctx);
}

int nl_dump(struct nl *nl, struct nl_msg *m, nl_msg_fn fn, void *ctx)
{
	m->nlh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_DUMP;
	return transact(nl, m, fn, ctx);
}

int nl_recv_notifications(struct nl *nl, nl_msg_fn fn, void *ctx)
{
	int handled = 0;

	for (;;) {
		const struct nlmsghdr *h;
		ssize_t n = recv_dgram(nl, MSG_DONTWAIT);
		size_t len;

		if (n == -EAGAIN || n == -EWOULDBLOCK)
			return handled;
		if (n == -ENOBUFS) {
			/* Everything still queued predates the state a resync will read:
			 * applying it afterwards could resurrect a deleted address. */
			do {
				n = recv_dgram(nl, MSG_DONTWAIT);
			} while (n >= 0 || n == -ENOBUFS);
			return -ENOBUFS;
		}
		if (n < 0)
			return (int)n;
		len = (size_t)n;
		for (h = (const struct nlmsghdr *)nl->rbuf; NLMSG_OK(h, len);
		     h = NLMSG_NEXT(h, len)) {
			int err;

			if (h->nlmsg_type < NLMSG_MIN_TYPE)
				continue;
			err = fn(h, ctx);
			if (err < 0)
				return err;
			handled++;
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Links */

static int check_name(const char *name)
{
	if (!name || !name[0] || strlen(name) >= NL_IFNAMSIZ)
		return -EINVAL;
	return 0;
}

static void copy_str(char *dst, size_t size, const struct nlattr *a)
{
	size_t n = nl_len(a);
	const char *s = nl_data(a);

	if (n && s[n - 1] == '\0')
		n--;
	if (n >= size)
		n = size - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

static int parse_link(const struct nlmsghdr *nlh, void *ctx)
{
	const struct ifinfomsg *ifi = NLMSG_DATA(nlh);
	const struct nlattr *tb[IFLA_MAX + 1];
	struct nl_link *l = ctx;

	if (nlh->nlmsg_type != RTM_NEWLINK || nl_parse_msg(nlh, sizeof(*ifi), tb, IFLA_MAX) < 0)
		return -EBADMSG;
	memset(l, 0, sizeof(*l));
	l->ifindex = ifi->ifi_index;
	l->type = ifi->ifi_type;
	l->flags = ifi->ifi_flags;
	if (tb[IFLA_IFNAME])
		copy_str(l->name, sizeof(l->name), tb[IFLA_IFNAME]);
	if (tb[IFLA_IFALIAS])
		copy_str(l->alias, sizeof(l->alias), tb[IFLA_IFALIAS]);
	if (tb[IFLA_ADDRESS] && nl_len(tb[IFLA_ADDRESS]) == 6) {
		memcpy(l->mac, nl_data(tb[IFLA_ADDRESS]), 6);
		l->has_mac = true;
	}
	if (tb[IFLA_LINKINFO]) {
		const struct nlattr *li[IFLA_INFO_MAX + 1];

		if (nl_parse_attrs(nl_data(tb[IFLA_LINKINFO]), nl_len(tb[IFLA_LINKINFO]), li,
				   IFLA_INFO_MAX) == 0 &&
		    li[IFLA_INFO_KIND])
			copy_str(l->kind, sizeof(l->kind), li[IFLA_INFO_KIND]);
	}
	return 0;
}

int nl_link_get(struct nl *nl, const char *name, struct nl_link *out)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
	struct nl_msg m;
	int err;

	err = check_name(name);
	if (err)
		return err;
	nl_msg_init(&m, RTM_GETLINK, 0, &ifi, sizeof(ifi));
	nl_put_str(&m, IFLA_IFNAME, name);
	nl_put_u32(&m, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	return request_reply(nl, &m, parse_link, out);
}

int nl_link_get_index(struct nl *nl, int ifindex, struct nl_link *out)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
	struct nl_msg m;

	if (ifindex <= 0)
		return -EINVAL;
	nl_msg_init(&m, RTM_GETLINK, 0, &ifi, sizeof(ifi));
	nl_put_u32(&m, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	return request_reply(nl, &m, parse_link, out);
}

int nl_veth_create(struct nl *nl, const char *name, const uint8_t mac[6], const char *peer,
		   const uint8_t peer_mac[6], int peer_netns_fd)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
	struct nlattr *linkinfo, *data, *peer_nest;
	struct nl_msg m;

	if (check_name(name) || check_name(peer))
		return -EINVAL;
	nl_msg_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
	nl_put_str(&m, IFLA_IFNAME, name);
	nl_put(&m, IFLA_ADDRESS, mac, 6);
	linkinfo = nl_nest_start(&m, IFLA_LINKINFO);
	nl_put_str(&m, IFLA_INFO_KIND, "veth");
	data = nl_nest_start(&m, IFLA_INFO_DATA);
	peer_nest = nl_nest_start(&m, VETH_INFO_PEER);
	nl_put_raw(&m, &ifi, sizeof(ifi));
	nl_put_str(&m, IFLA_IFNAME, peer);
	nl_put(&m, IFLA_ADDRESS, peer_mac, 6);
	if (peer_netns_fd >= 0)
		nl_put_u32(&m, IFLA_NET_NS_FD, (uint32_t)peer_netns_fd);
	nl_nest_end(&m, peer_nest);
	nl_nest_end(&m, data);
	nl_nest_end(&m, linkinfo);
	return nl_request(nl, &m);
}

int nl_link_set_alias(struct nl *nl, int ifindex, const char *alias)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
	struct nl_msg m;

	nl_msg_init(&m, RTM_SETLINK, 0, &ifi, sizeof(ifi));
	nl_put(&m, IFLA_IFALIAS, alias, strlen(alias)); /* the kernel stores it unterminated */
	return nl_request(nl, &m);
}

int nl_link_set_addr_gen_mode(struct nl *nl, int ifindex, uint8_t mode)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
	struct nlattr *spec, *inet6;
	struct nl_msg m;

	nl_msg_init(&m, RTM_SETLINK, 0, &ifi, sizeof(ifi));
	spec = nl_nest_start(&m, IFLA_AF_SPEC);
	inet6 = nl_nest_start(&m, AF_INET6);
	nl_put_u8(&m, IFLA_INET6_ADDR_GEN_MODE, mode);
	nl_nest_end(&m, inet6);
	nl_nest_end(&m, spec);
	return nl_request(nl, &m);
}

int nl_link_set_up(struct nl *nl, int ifindex)
{
	struct ifinfomsg ifi = {
		.ifi_family = AF_UNSPEC,
		.ifi_index = ifindex,
		.ifi_flags = IFF_UP,
		.ifi_change = IFF_UP,
	};
	struct nl_msg m;

	nl_msg_init(&m, RTM_SETLINK, 0, &ifi, sizeof(ifi));
	return nl_request(nl, &m);
}

int nl_link_del(struct nl *nl, int ifindex)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
	struct nl_msg m;

	if (ifindex <= 0)
		return -EINVAL;
	nl_msg_init(&m, RTM_DELLINK, 0, &ifi, sizeof(ifi));
	return nl_request(nl, &m);
}

/* ------------------------------------------------------------------------------------------ */
/* Addresses */

static size_t addr_len(int family)
{
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

int nl_addr_parse(const struct nlmsghdr *nlh, struct nl_addr *a)
{
	const struct ifaddrmsg *ifa = NLMSG_DATA(nlh);
	const struct nlattr *tb[IFA_MAX + 1];
	const struct nlattr *local;
	size_t alen;

	if ((nlh->nlmsg_type != RTM_NEWADDR && nlh->nlmsg_type != RTM_DELADDR) ||
	    nl_parse_msg(nlh, sizeof(*ifa), tb, IFA_MAX) < 0)
		return -EINVAL;
	alen = addr_len(ifa->ifa_family);
	if (!alen)
		return -EAFNOSUPPORT;
	memset(a, 0, sizeof(*a));
	a->family = ifa->ifa_family;
	a->ifindex = (int)ifa->ifa_index;
	a->prefixlen = ifa->ifa_prefixlen;
	a->scope = ifa->ifa_scope;
	a->flags = ifa->ifa_flags;
	a->deleted = nlh->nlmsg_type == RTM_DELADDR;
	if (tb[IFA_FLAGS] && nl_len(tb[IFA_FLAGS]) == 4)
		memcpy(&a->flags, nl_data(tb[IFA_FLAGS]), 4);
	/* On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is always ours. */
	local = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!local || nl_len(local) != alen)
		return -EINVAL;
	memcpy(a->local, nl_data(local), alen);
	if (tb[IFA_BROADCAST] && nl_len(tb[IFA_BROADCAST]) == alen) {
		memcpy(a->broadcast, nl_data(tb[IFA_BROADCAST]), alen);
		a->has_broadcast = true;
	}
	return 0;
}

struct addr_dump_ctx {
	nl_addr_fn fn;
	void *ctx;
};

static int addr_dump_cb(const struct nlmsghdr *nlh, void *ctx)
{
	struct addr_dump_ctx *c = ctx;
	struct nl_addr a;
	int err;

	err = nl_addr_parse(nlh, &a);
	if (err == -EAFNOSUPPORT)
		return 0;
	if (err)
		return err;
	return c->fn(&a, c->ctx);
}

int nl_addr_dump(struct nl *nl, int family, nl_addr_fn fn, void *ctx)
{
	struct ifaddrmsg ifa = {.ifa_family = (uint8_t)family};
	struct addr_dump_ctx c = {fn, ctx};
	struct nl_msg m;

	nl_msg_init(&m, RTM_GETADDR, 0, &ifa, sizeof(ifa));
	return nl_dump(nl, &m, addr_dump_cb, &c);
}

/* ------------------------------------------------------------------------------------------ */
/* Routes, rules, neighbours, filters */

int nl_route_add(struct nl *nl, const struct nl_route *r)
{
	struct rtmsg rtm = {
		.rtm_family = (uint8_t)r->family,
		.rtm_dst_len = r->dst_len,
		.rtm_table = r->table < 256 ? (uint8_t)r->table : RT_TABLE_UNSPEC,
		.rtm_protocol = RTPROT_STATIC,
		.rtm_scope = r->scope,
		.rtm_type = r->type,
		.rtm_flags = r->onlink ? RTNH_F_ONLINK : 0,
	};
	size_t alen = addr_len(r->family);
	struct nl_msg m;

	if (!alen || r->dst_len > alen * 8)
		return -EINVAL;
	nl_msg_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rtm, sizeof(rtm));
	nl_put_u32(&m, RTA_TABLE, r->table);
	if (r->dst_len)
		nl_put(&m, RTA_DST, r->dst, alen);
	if (r->has_gateway)
		nl_put(&m, RTA_GATEWAY, r->gateway, alen);
	if (r->oif > 0)
		nl_put_u32(&m, RTA_OIF, (uint32_t)r->oif);
	return nl_request(nl, &m);
}

int nl_rule_add(struct nl *nl, int family, const char *iifname, uint32_t table, uint32_t priority)
{
	struct fib_rule_hdr frh = {
		.family = (uint8_t)family,
		.table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC,
		.action = FR_ACT_TO_TBL,
	};
	struct nl_msg m;

	if (!addr_len(family) || check_name(iifname))
		return -EINVAL;
	/* EXCL: without it the kernel happily stacks identical rules. */
	nl_msg_init(&m, RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, &frh, sizeof(frh));
	nl_put_u32(&m, FRA_TABLE, table);
	nl_put_u32(&m, FRA_PRIORITY, priority);
	nl_put_str(&m, FRA_IIFNAME, iifname);
	return nl_request(nl, &m);
}

int nl_neigh_add_permanent(struct nl *nl, int family, int ifindex, const uint8_t *addr,
			   const uint8_t lladdr[6])
{
	struct ndmsg ndm = {
		.ndm_family = (uint8_t)family,
		.ndm_ifindex = ifindex,
		.ndm_state = NUD_PERMANENT,
	};
	size_t alen = addr_len(family);
	struct nl_msg m;

	if (!alen)
		return -EINVAL;
	nl_msg_init(&m, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &ndm, sizeof(ndm));
	nl_put(&m, NDA_DST, addr, alen);
	nl_put(&m, NDA_LLADDR, lladdr, 6);
	return nl_request(nl, &m);
}

struct filter_dump_ctx {
	nl_filter_fn fn;
	void *ctx;
};

static int filter_dump_cb(const struct nlmsghdr *nlh, void *ctx)
{
	const struct tcmsg *tcm = NLMSG_DATA(nlh);
	const struct nlattr *tb[TCA_MAX + 1];
	struct filter_dump_ctx *c = ctx;
	struct nl_filter f = {0};

	if (nlh->nlmsg_type != RTM_NEWTFILTER || nl_parse_msg(nlh, sizeof(*tcm), tb, TCA_MAX) < 0)
		return -EBADMSG;
	f.handle = tcm->tcm_handle;
	f.priority = (uint16_t)(TC_H_MAJ(tcm->tcm_info) >> 16);
	f.protocol = ntohs((uint16_t)TC_H_MIN(tcm->tcm_info));
	if (tb[TCA_KIND])
		copy_str(f.kind, sizeof(f.kind), tb[TCA_KIND]);
	return c->fn(&f, c->ctx);
}

int nl_filter_dump(struct nl *nl, int ifindex, uint32_t parent, nl_filter_fn fn, void *ctx)
{
	struct tcmsg tcm = {
		.tcm_family = AF_UNSPEC,
		.tcm_ifindex = ifindex,
		.tcm_parent = parent,
	};
	struct filter_dump_ctx c = {fn, ctx};
	struct nl_msg m;

	nl_msg_init(&m, RTM_GETTFILTER, 0, &tcm, sizeof(tcm));
	return nl_dump(nl, &m, filter_dump_cb, &c);
}
