/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * netns - the private network namespace and the veth pair into it (see netns.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

#include "netns.h"
#include "nl.h"

struct netns {
	int fd;	     /* the private netns */
	int host_fd; /* where netns_create() was called from */
};

static int open_thread_netns(void)
{
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

struct netns *netns_create(void)
{
	struct netns *ns;
	int err;

	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return NULL;
	ns->host_fd = open_thread_netns();
	if (ns->host_fd < 0) {
		err = ns->host_fd;
		goto err_free;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		err = -errno;
		goto err_host;
	}
	ns->fd = open_thread_netns();
	err = ns->fd < 0 ? ns->fd : 0;
	if (setns(ns->host_fd, CLONE_NEWNET) < 0) {
		/* Stuck in the new netns: nothing sane to continue with. */
		err = -errno;
		goto err_fd;
	}
	if (err)
		goto err_host;
	return ns;

err_fd:
	if (ns->fd >= 0)
		close(ns->fd);
err_host:
	close(ns->host_fd);
err_free:
	free(ns);
	errno = -err;
	return NULL;
}

void netns_destroy(struct netns *ns)
{
	if (!ns)
		return;
	close(ns->fd);
	close(ns->host_fd);
	free(ns);
}

int netns_fd(const struct netns *ns)
{
	return ns->fd;
}

int netns_host_fd(const struct netns *ns)
{
	return ns->host_fd;
}

int netns_enter(const struct netns *ns)
{
	return setns(ns->fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

int netns_leave(const struct netns *ns)
{
	return setns(ns->host_fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

int netns_run(const struct netns *ns, int (*fn)(void *arg), void *arg)
{
	int ret, err;

	err = netns_enter(ns);
	if (err)
		return err;
	ret = fn(arg);
	err = netns_leave(ns);
	return err ? err : ret;
}

int netns_socket(const struct netns *ns, int domain, int type, int protocol)
{
	int fd, err;

	err = netns_enter(ns);
	if (err)
		return err;
	fd = socket(domain, type | SOCK_CLOEXEC, protocol);
	if (fd < 0)
		fd = -errno;
	err = netns_leave(ns);
	if (err) {
		if (fd >= 0)
			close(fd);
		return err;
	}
	return fd;
}

/* ------------------------------------------------------------------------------------------ */
/* Sysctls */

static int sysctl_path(const char *key, char *path, size_t len)
{
	int n = snprintf(path, len, "/proc/sys/%s", key);

	if (n < 0 || (size_t)n >= len || strstr(key, ".."))
		return -EINVAL;
	return 0;
}

int netns_sysctl_write(const char *key, const char *value)
{
	char path[256];
	size_t len = strlen(value);
	ssize_t n;
	int fd, err;

	err = sysctl_path(key, path, sizeof(path));
	if (err)
		return err;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, value, len);
	err = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
	close(fd);
	return err;
}

int netns_sysctl_read(const char *key, char *buf, size_t len)
{
	char path[256];
	ssize_t n;
	int fd, err;

	if (!len)
		return -EINVAL;
	err = sysctl_path(key, path, sizeof(path));
	if (err)
		return err;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	err = n < 0 ? -errno : 0;
	close(fd);
	if (err)
		return err;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The pair */

struct setup {
	struct netns_pair *p;
	char *err;
	size_t errlen;
	struct nl *nl; /* in the netns */
};

__attribute__((format(printf, 4, 5))) static int fail(struct setup *s, int err, struct nl *nl,
						      const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(s->err, s->errlen, fmt, ap);
	va_end(ap);
	n = strlen(s->err);
	if (n < s->errlen)
		snprintf(s->err + n, s->errlen - n, ": %s%s%s%s", strerror(-err),
			 nl && nl_last_error(nl)[0] ? " (" : "", nl ? nl_last_error(nl) : "",
			 nl && nl_last_error(nl)[0] ? ")" : "");
	return err;
}

static int sysctl_set(struct setup *s, const char *fmt, const char *dev, const char *value)
{
	char key[128];
	int err;

	snprintf(key, sizeof(key), fmt, dev);
	err = netns_sysctl_write(key, value);
	if (err)
		return fail(s, err, NULL, "private netns: sysctl %s = %s", key, value);
	return 0;
}

static int route_local_default(struct setup *s, int family, int lo)
{
	struct nl_route r = {
		.family = family,
		.table = NETNS_TABLE,
		.type = RTN_LOCAL,
		.scope = RT_SCOPE_HOST,
		.oif = lo,
	};
	int err = nl_route_add(s->nl, &r);

	if (err)
		return fail(s, err, s->nl, "private netns: local default dev lo table %d (%s)",
			    NETNS_TABLE, family == AF_INET ? "IPv4" : "IPv6");
	return 0;
}

static int route_default_via(struct setup *s, int family, const char *gw)
{
	struct nl_route r = {
		.family = family,
		.table = RT_TABLE_MAIN,
		.type = RTN_UNICAST,
		.scope = RT_SCOPE_UNIVERSE,
		.has_gateway = true,
		.oif = s->p->peer_ifindex,
		.onlink = true,
	};
	int err;

	inet_pton(family, gw, r.gateway);
	err = nl_route_add(s->nl, &r);
	if (err)
		return fail(s, err, s->nl, "private netns: default via %s dev %s onlink", gw,
			    s->p->peer);
	err = nl_neigh_add_permanent(s->nl, family, s->p->peer_ifindex, r.gateway, s->p->host_mac);
	if (err)
		return fail(s, err, s->nl, "private netns: permanent neighbour %s dev %s", gw,
			    s->p->peer);
	return 0;
}

static int rule_iif(struct setup *s, int family)
{
	int err = nl_rule_add(s->nl, family, s->p->peer, NETNS_TABLE, NETNS_RULE_PRIO);

	if (err)
		return fail(s, err, s->nl, "private netns: rule iif %s lookup %d (%s)", s->p->peer,
			    NETNS_TABLE, family == AF_INET ? "IPv4" : "IPv6");
	return 0;
}

/* Runs inside the netns. */
static int setup_inside(void *arg)
{
	struct setup *s = arg;
	struct netns_pair *p = s->p;
	struct nl_link link;
	char v6conf[96];
	int err, lo;

	s->nl = nl_open();
	if (!s->nl)
		return fail(s, -errno, NULL, "private netns: rtnetlink socket");

	err = sysctl_set(s, "net/ipv4/conf/%s/rp_filter", "all", "0");
	if (!err)
		err = sysctl_set(s, "net/ipv4/conf/%s/rp_filter", p->peer, "0");
	if (!err)
		err = sysctl_set(s, "net/ipv4/conf/%s/accept_local", p->peer, "1");
	/* No TIME_WAIT here. A proxied connection the server closes first leaves our client-side
	 * socket in TIME_WAIT with the client's 4-tuple; the client, which has no TIME_WAIT of its
	 * own, soon reuses the port, and bpf_sk_assign() hands the new SYN straight to the
	 * listener, past the TIME_WAIT socket that would have accepted it, so the new connection
	 * collides with it and stalls. The sysctl is per netns (it covers IPv6 as well); the
	 * only loss is the re-ACK of a retransmitted final FIN, answered with a RST instead. */
	if (!err)
		err = sysctl_set(s, "net/ipv4/%s", "tcp_max_tw_buckets", "0");
	if (err)
		goto out;
	/* No /proc/sys/net/ipv6: IPv6 is disabled in this kernel; run IPv4 only. */
	snprintf(v6conf, sizeof(v6conf), "/proc/sys/net/ipv6/conf/%s", p->peer);
	p->ipv6 = access(v6conf, F_OK) == 0;
	if (p->ipv6) {
		/* Before the link goes up, or DAD and RA would already have started. */
		err = sysctl_set(s, "net/ipv6/conf/%s/accept_dad", p->peer, "0");
		if (!err)
			err = sysctl_set(s, "net/ipv6/conf/%s/accept_ra", p->peer, "0");
		if (err)
			goto out;
	}

	err = nl_link_get(s->nl, "lo", &link);
	if (!err) {
		lo = link.ifindex;
		err = nl_link_set_up(s->nl, lo);
	}
	if (err) {
		fail(s, err, s->nl, "private netns: lo up");
		goto out;
	}
	err = nl_link_get(s->nl, p->peer, &link);
	if (err) {
		fail(s, err, s->nl, "private netns: %s not found", p->peer);
		goto out;
	}
	p->peer_ifindex = link.ifindex;
	/* onlink routes need the device up (IPv4 refuses them otherwise). */
	err = nl_link_set_up(s->nl, p->peer_ifindex);
	if (err) {
		fail(s, err, s->nl, "private netns: %s up", p->peer);
		goto out;
	}

	err = rule_iif(s, AF_INET);
	if (!err)
		err = route_local_default(s, AF_INET, lo);
	if (!err)
		err = route_default_via(s, AF_INET, NETNS_GW4);
	if (!err && p->ipv6)
		err = rule_iif(s, AF_INET6);
	if (!err && p->ipv6)
		err = route_local_default(s, AF_INET6, lo);
	if (!err && p->ipv6)
		err = route_default_via(s, AF_INET6, NETNS_GW6);
out:
	nl_close(s->nl);
	s->nl = NULL;
	return err;
}

int netns_pair_setup(struct netns *ns, struct nl *host_nl, const char *name, struct netns_pair *out,
		     char *err, size_t errlen)
{
	const uint8_t host_mac[6] = NETNS_HOST_MAC, peer_mac[6] = NETNS_PEER_MAC;
	struct setup s = {.p = out, .err = err, .errlen = errlen};
	struct nl_link link;
	int ret;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	if (!name || !name[0] || strlen(name) > NL_IFNAMSIZ - 2) {
		snprintf(err, errlen, "veth name '%s' must be 1 to %d characters", name ? name : "",
			 NL_IFNAMSIZ - 2);
		return -EINVAL;
	}
	snprintf(out->host, sizeof(out->host), "%s", name);
	snprintf(out->peer, sizeof(out->peer), "%sp", name);
	memcpy(out->host_mac, host_mac, 6);
	memcpy(out->peer_mac, peer_mac, 6);

	ret = nl_veth_create(host_nl, out->host, host_mac, out->peer, peer_mac, netns_fd(ns));
	if (ret)
		return fail(&s, ret, host_nl, "creating veth pair %s/%s", out->host, out->peer);
	ret = nl_link_get(host_nl, out->host, &link);
	if (ret) {
		fail(&s, ret, host_nl, "veth %s vanished after creation", out->host);
		goto err_out;
	}
	out->host_ifindex = link.ifindex;
	ret = nl_link_set_alias(host_nl, out->host_ifindex, NETNS_PAIR_ALIAS);
	if (ret) {
		fail(&s, ret, host_nl, "setting ifalias of %s", out->host);
		goto err_del;
	}
	/* No link-local address on the host side: nothing there should speak IPv6 itself. */
	ret = nl_link_set_addr_gen_mode(host_nl, out->host_ifindex, IN6_ADDR_GEN_MODE_NONE);
	if (ret && ret != -EAFNOSUPPORT && ret != -EOPNOTSUPP) {
		fail(&s, ret, host_nl, "setting IPv6 addr_gen_mode none on %s", out->host);
		goto err_del;
	}
	ret = netns_run(ns, setup_inside, &s);
	if (ret) {
		if (errlen && !err[0])
			fail(&s, ret, NULL, "switching into the private netns");
		goto err_del;
	}
	ret = nl_link_set_up(host_nl, out->host_ifindex);
	if (ret) {
		fail(&s, ret, host_nl, "%s up", out->host);
		goto err_del;
	}
	return 0;

err_del:
	nl_link_del(host_nl, out->host_ifindex);
err_out:
	return ret;
}

int netns_pair_delete(struct nl *host_nl, const struct netns_pair *p)
{
	if (p->host_ifindex <= 0)
		return 0;
	return nl_link_del(host_nl, p->host_ifindex);
}
