/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * direct - the plain outbound: connect to the original destination from the host network
 * namespace and hand the connected socket to the core, which relays it with splice().
 *
 * The socket comes from host->upstream_socket(): it carries the xproxy mark, so the datapath
 * lets it leave instead of catching it again, and it is already non-blocking. A pending connect
 * is one heap object (struct pending) owned by the connection's worker loop: it is freed exactly
 * once, by the io callback, the optional timer, or tcp_abort, whichever comes first.
 *
 * UDP: one upstream socket per session, watched on the session's loop. Endpoint-dependent
 * sessions connect it to the destination (the kernel then drops datagrams from anyone else and
 * reports ICMP errors); endpoint-independent ones leave it unconnected and send each datagram to
 * the destination the client chose, delivering whatever any peer sends back.
 */
#include <errno.h>
#include <stdbool.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xproxy/plugin.h>

struct direct_cfg {
	uint64_t connect_timeout_ms; /* 0: only the core's connect timeout applies */
	const char *bind_interface;  /* NULL: any device the routing table picks */
	int tcp_nodelay;
};

static const struct xp_option direct_options[] = {
	XP_OPT_RANGE(struct direct_cfg, connect_timeout_ms, "connect_timeout", XP_OPT_DURATION, "0",
		     0, 0, 3600000, "give up connecting after this long (0: the core's timeout)"),
	XP_OPT(struct direct_cfg, bind_interface, "bind_interface", XP_OPT_STRING, NULL, 0,
	       "leave through this device only (SO_BINDTODEVICE)"),
	XP_OPT(struct direct_cfg, tcp_nodelay, "tcp_nodelay", XP_OPT_BOOL, "yes", 0,
	       "send small writes at once (TCP_NODELAY) on the upstream socket"),
	XP_OPTION_END,
};

struct direct {
	const struct xp_host *host;
	xp_handle_t *self;
	const struct direct_cfg *cfg;
	/* counter_add is thread-safe: every worker updates these */
	xp_counter_t *connects;
	xp_counter_t *failures;
	xp_counter_t *udp_sessions;
	xp_counter_t *udp_icmp; /* ICMP errors reported on a session's socket; the session goes on */
};

struct pending {
	struct direct *d;
	xp_conn_t *conn;
	int fd;
	xp_io_t *io;
	xp_timer_t *timer; /* NULL without connect_timeout */
};

/* Release the watchers and report; `p` is gone afterwards. */
static void pending_finish(struct pending *p, int err, const char *reason)
{
	const struct xp_host *host = p->d->host;
	struct direct *d = p->d;
	xp_conn_t *conn = p->conn;
	int fd = p->fd;

	host->io_free(p->io);
	if (p->timer)
		host->timer_free(p->timer);
	/* freed before the callback: the core may tear the connection down inside it */
	free(p);
	if (!err) {
		host->counter_add(d->connects, 1);
		host->conn_ready_fd(conn, fd);
		return;
	}
	close(fd);
	host->counter_add(d->failures, 1);
	host->conn_fail(conn, err, reason);
}

static void pending_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct pending *p = arg;
	socklen_t len = sizeof(int);
	struct sockaddr_storage peer;
	int soerr = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (!soerr) {
		/* a wakeup without a result (spurious, or not writable yet): keep waiting */
		len = sizeof(peer);
		if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0 && errno == ENOTCONN)
			return;
	}
	pending_finish(p, -soerr, soerr ? "connect failed" : NULL);
}

static void pending_timer_cb(xp_timer_t *timer, void *arg)
{
	pending_finish(arg, -ETIMEDOUT, "connect timed out (direct connect_timeout)");
}

static int setup_socket(const struct direct *d, int fd, const char **reason)
{
	int one = 1;

	if (d->cfg->tcp_nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))) {
		*reason = "setting TCP_NODELAY failed";
		return -errno;
	}
	if (d->cfg->bind_interface &&
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, d->cfg->bind_interface,
		       strlen(d->cfg->bind_interface))) {
		*reason = "binding to bind_interface failed";
		return -errno;
	}
	return 0;
}

static int direct_tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *target,
			      void **cctx)
{
	struct direct *d = inst;
	const struct xp_host *host = d->host;
	const char *reason = "connect failed";
	int family = target->addr.sa.sa_family;
	struct pending *p;
	socklen_t alen;
	int fd, rc;

	*cctx = NULL;
	if (family == AF_INET)
		alen = sizeof(struct sockaddr_in);
	else if (family == AF_INET6)
		alen = sizeof(struct sockaddr_in6);
	else
		return -EAFNOSUPPORT;

	fd = host->upstream_socket(d->self, family, SOCK_STREAM, IPPROTO_TCP);
	if (fd < 0)
		return fd;
	rc = setup_socket(d, fd, &reason);
	if (rc)
		goto err_fail;
	if (!connect(fd, &target->addr.sa, alen)) {
		/* loopback and some local destinations complete at once */
		host->counter_add(d->connects, 1);
		host->conn_ready_fd(conn, fd);
		return 0;
	}
	if (errno != EINPROGRESS) {
		rc = -errno;
		goto err_fail;
	}

	p = calloc(1, sizeof(*p));
	if (!p) {
		rc = -ENOMEM;
		goto err_close;
	}
	p->d = d;
	p->conn = conn;
	p->fd = fd;
	p->io = host->io_new(host->conn_loop(conn), fd, pending_io_cb, p);
	if (!p->io) {
		rc = -ENOMEM;
		goto err_pending;
	}
	if (d->cfg->connect_timeout_ms) {
		p->timer = host->timer_new(host->conn_loop(conn), pending_timer_cb, p);
		if (!p->timer) {
			rc = -ENOMEM;
			goto err_io;
		}
		host->timer_set(p->timer, d->cfg->connect_timeout_ms, 0);
	}
	host->io_set(p->io, XP_IO_WRITE);
	*cctx = p;
	return 0;

err_io:
	host->io_free(p->io);
err_pending:
	free(p);
err_close:
	/* resources, not the destination, failed: no callback, the core reports -errno */
	close(fd);
	return rc;
err_fail:
	/* the destination (or the socket setup the user asked for) failed: tell the core why */
	close(fd);
	host->counter_add(d->failures, 1);
	host->conn_fail(conn, rc, reason);
	return 0;
}

static void direct_tcp_abort(void *inst, void *cctx)
{
	struct pending *p = cctx;

	if (!p)
		return;
	p->d->host->io_free(p->io);
	if (p->timer)
		p->d->host->timer_free(p->timer);
	close(p->fd);
	free(p);
}

/* ------------------------------------------------------------------------------------------ */
/* UDP                                                                                          */

/* Replies are drained with recvmmsg(): one call per UDP_RECV_BATCH datagrams instead of one
 * each, and a lone reply (request/response traffic) costs one call, not a second one that only
 * says EAGAIN. At most UDP_RECV_ROUNDS batches per wakeup: one busy session cannot starve the
 * loop. */
#define UDP_RECV_BATCH	16
#define UDP_RECV_ROUNDS 4
#define UDP_DGRAM_MAX	65536 /* a whole UDP payload: never truncate */

/* Per worker thread (the plugin's instances are shared by every worker): 1 MiB of buffers,
 * thread-local storage that the C library allocates when a thread first receives on a
 * session's socket and frees when the thread ends (or the plugin is unloaded). */
struct dudp_rx {
	struct mmsghdr msgs[UDP_RECV_BATCH];
	struct iovec iov[UDP_RECV_BATCH];
	union xp_sockaddr from[UDP_RECV_BATCH];
	uint8_t buf[UDP_RECV_BATCH][UDP_DGRAM_MAX];
};

struct dudp {
	struct direct *d;
	xp_udp_t *s;
	int fd;
	int family;
	bool connected;
	xp_io_t *io;
};

static socklen_t sa_len(int family)
{
	return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* ICMP errors (port unreachable, host unreachable) surface as the next call's error. */
static bool icmp_error(int err)
{
	return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH ||
	       err == EHOSTDOWN || err == ENETDOWN || err == EMSGSIZE;
}

static void dudp_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	static __thread struct dudp_rx rxs;
	struct dudp_rx *rx = &rxs;
	struct dudp *u = arg;
	const struct xp_host *host = u->d->host;

	for (int round = 0, errs = 0; round < UDP_RECV_ROUNDS;) {
		int n;

		for (int i = 0; i < UDP_RECV_BATCH; i++) {
			rx->iov[i] = (struct iovec){ .iov_base = rx->buf[i], .iov_len = UDP_DGRAM_MAX };
			rx->msgs[i].msg_hdr = (struct msghdr){
				.msg_name = &rx->from[i],
				.msg_namelen = sizeof(rx->from[i]),
				.msg_iov = &rx->iov[i],
				.msg_iovlen = 1,
			};
		}
		n = recvmmsg(fd, rx->msgs, UDP_RECV_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			/* An ICMP error is reported once, by itself, before the datagrams behind
			 * it: count it and read on (a bounded number of times). */
			if ((errno == EINTR || icmp_error(errno)) && errs++ < UDP_RECV_BATCH) {
				if (errno != EINTR)
					host->counter_add(u->d->udp_icmp, 1);
				continue;
			}
			return; /* EAGAIN, or nothing we can do about it here */
		}
		/* udp_deliver may not end the session under us: the core defers that. */
		for (int i = 0; i < n; i++)
			host->udp_deliver(u->s, &rx->from[i], rx->buf[i], rx->msgs[i].msg_len);
		if (n < UDP_RECV_BATCH)
			return;
		round++;
	}
}

static int direct_udp_open(void *inst, xp_udp_t *s, const struct xp_target *target,
			   void **uctx)
{
	struct direct *d = inst;
	const struct xp_host *host = d->host;
	const struct xp_conn_info *info = host->udp_info(s);
	int family = target->addr.sa.sa_family;
	const char *reason = NULL;
	struct dudp *u;
	int err;

	*uctx = NULL;
	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->d = d;
	u->s = s;
	u->family = family;
	u->fd = host->upstream_socket(d->self, family, SOCK_DGRAM, IPPROTO_UDP);
	if (u->fd < 0) {
		err = u->fd;
		goto err_free;
	}
	if (d->cfg->bind_interface &&
	    setsockopt(u->fd, SOL_SOCKET, SO_BINDTODEVICE, d->cfg->bind_interface,
		       strlen(d->cfg->bind_interface))) {
		err = -errno;
		reason = "binding to bind_interface failed";
		goto err_close;
	}
	/* Replies to one session (a QUIC download) arrive in bursts while the worker serves
	 * others: 1 MiB of queue (the kernel doubles the value), past rmem_max where the daemon
	 * may. Best effort: the kernel's default is used if neither call works. */
	if (setsockopt(u->fd, SOL_SOCKET, SO_RCVBUFFORCE, &(int){ 512 << 10 }, sizeof(int)) < 0)
		(void)setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &(int){ 512 << 10 }, sizeof(int));
	/* 1.0-sized info (an older core) has no flags: endpoint-dependent. */
	u->connected = !(info->size >= offsetof(struct xp_conn_info, flags) + sizeof(info->flags) &&
			 (info->flags & XP_CONN_F_UDP_INDEPENDENT));
	if (u->connected && connect(u->fd, &target->addr.sa, sa_len(family))) {
		err = -errno;
		reason = "connect failed";
		goto err_close;
	}
	u->io = host->io_new(host->udp_loop(s), u->fd, dudp_io_cb, u);
	if (!u->io) {
		err = -ENOMEM;
		goto err_close;
	}
	host->io_set(u->io, XP_IO_READ);
	host->counter_add(d->udp_sessions, 1);
	*uctx = u;
	return 0;

err_close:
	close(u->fd);
err_free:
	free(u);
	if (reason)
		host->log(d->self, XP_LOG_DEBUG, "udp: %s: %s", reason, strerror(-err));
	host->counter_add(d->failures, 1);
	return err;
}

static int direct_udp_send(void *inst, void *uctx, const union xp_sockaddr *dst,
			   const char *domain, const void *buf, size_t len)
{
	struct dudp *u = uctx;
	ssize_t n;

	for (int tries = 0; tries < 2; tries++) {
		if (u->connected)
			n = send(u->fd, buf, len, MSG_DONTWAIT);
		else if (dst->sa.sa_family == u->family)
			n = sendto(u->fd, buf, len, MSG_DONTWAIT, &dst->sa, sa_len(u->family));
		else
			return -EAFNOSUPPORT;
		if (n >= 0)
			return 0;
		/* An ICMP error from an earlier datagram is reported once, on this call: count
		 * it and send this datagram anyway. */
		if (!icmp_error(errno) || errno == EMSGSIZE)
			return -errno;
		u->d->host->counter_add(u->d->udp_icmp, 1);
	}
	return -EIO;
}

static void direct_udp_close(void *inst, void *uctx)
{
	struct dudp *u = uctx;

	if (!u)
		return;
	u->d->host->io_free(u->io);
	close(u->fd);
	free(u);
}

static int direct_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			       const void *config, void **inst)
{
	const struct direct_cfg *cfg = config;
	struct direct *d;

	if (cfg->bind_interface &&
	    (!*cfg->bind_interface || strlen(cfg->bind_interface) >= IFNAMSIZ)) {
		host->log(self, XP_LOG_ERROR,
			  "bind_interface \"%s\": not a device name (1-%d "
			  "characters)",
			  cfg->bind_interface, IFNAMSIZ - 1);
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->host = host;
	d->self = self;
	d->cfg = cfg;
	d->connects = host->counter_new(self, "connects", "upstream connections established");
	d->failures = host->counter_new(self, "failures", "upstream connections that failed");
	d->udp_sessions = host->counter_new(self, "udp_sessions", "UDP sessions opened");
	d->udp_icmp = host->counter_new(self, "udp_icmp_errors",
					"ICMP errors on UDP sessions (the session goes on)");
	if (!d->connects || !d->failures || !d->udp_sessions || !d->udp_icmp) {
		free(d);
		return -ENOMEM;
	}
	*inst = d;
	return 0;
}

static void direct_instance_free(void *inst)
{
	free(inst);
}

static const struct xp_outbound_ops direct_ops = {
	.size = sizeof(struct xp_outbound_ops),
	.caps = XP_OUTBOUND_TCP | XP_OUTBOUND_UDP,
	.tcp_connect = direct_tcp_connect,
	.tcp_abort = direct_tcp_abort,
	.udp_open = direct_udp_open,
	.udp_send = direct_udp_send,
	.udp_close = direct_udp_close,
};

static const struct xp_plugin_desc direct_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "direct",
	.version = "1.0",
	.summary = "connect to the original destination from the host network namespace",
	.kinds = XP_KIND_OUTBOUND,
	.option_size = sizeof(struct xp_option),
	.options = direct_options,
	.config_size = sizeof(struct direct_cfg),
	.instance_new = direct_instance_new,
	.instance_free = direct_instance_free,
	.outbound = &direct_ops,
};

XP_PLUGIN_EXPORT const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi);

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	return &direct_desc;
}
