/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * socks5 - an outbound through a SOCKS5 server (RFC 1928), with optional username/password
 * authentication (RFC 1929).
 *
 * TCP: connect to the server, greet, authenticate, CONNECT to the flow's name (when DNS or a
 * sniffer named it) or address, then hand the socket to the core, which relays it with
 * splice(): after the handshake a SOCKS5 tunnel is plain bytes. The handshake reads exactly the
 * bytes of each reply (the parsers say how many are needed), never beyond, so a server-speaks-
 * first target whose banner arrives in the same segment as the reply loses nothing.
 *
 * UDP (XP_OUTBOUND_UDP): a session is a TCP control connection that did UDP ASSOCIATE plus one
 * connected UDP socket to the relay address the server named. Datagrams travel with the RFC
 * 1928 UDP request header both ways; fragments (FRAG != 0) are dropped and counted, since
 * reassembly is optional in the RFC and no common server sends them. The session ends when the
 * control connection closes, as the RFC ties the association's life to it.
 *
 * Everything runs non-blocking on the connection's (or session's) loop. One heap object per
 * handshake, freed exactly once by whichever comes first: its result, its timer or an abort.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <xproxy/plugin.h>

#include "socks5_proto.h"

#define UDP_QUEUE_MAX	 32 /* datagrams held while the association is set up */
#define UDP_QUEUE_BYTES	 (256 << 10)
#define UDP_RECV_BATCH	 32 /* datagrams per wakeup, so one session cannot hog a loop */
#define UDP_BUF		 65536
#define WARN_INTERVAL_MS 1000 /* per instance: a dead server must not flood the log */

struct s5_cfg {
	const char *server;
	const char *username;
	const char *password;
	uint64_t timeout_ms;
};

static const struct xp_option s5_options[] = {
	XP_OPT(struct s5_cfg, server, "server", XP_OPT_HOSTPORT, NULL, XP_OPT_REQUIRED,
	       "the SOCKS5 server, host:port or [v6]:port (a name is resolved when loaded)"),
	XP_OPT(struct s5_cfg, username, "username", XP_OPT_STRING, NULL, 0,
	       "RFC 1929 username (1-255 bytes); set with password"),
	XP_OPT(struct s5_cfg, password, "password", XP_OPT_STRING, NULL, XP_OPT_SECRET,
	       "RFC 1929 password (1-255 bytes); set with username"),
	XP_OPT_RANGE(struct s5_cfg, timeout_ms, "timeout", XP_OPT_DURATION, "10s", 0, 100, 300000,
		     "give up when connecting and the handshake take longer than this"),
	XP_OPTION_END,
};

struct s5 {
	const struct xp_host *host;
	xp_handle_t *self;
	const struct s5_cfg *cfg;
	union xp_sockaddr server;
	socklen_t server_len;
	bool userpass;
	atomic_uint_fast64_t warn_last_ms;
	atomic_uint_fast64_t warn_suppressed;
	/* counter_add is thread-safe: every worker updates these */
	xp_counter_t *connects, *failures, *auth_failures, *protocol_errors, *timeouts;
	xp_counter_t *udp_sessions, *udp_frag_dropped, *udp_bad, *udp_queue_dropped;
};

enum hs_state {
	HS_CONNECTING,
	HS_METHOD,
	HS_AUTH,
	HS_REPLY,
};

struct hs;
/* A handshake's result: err == 0 and a connected fd, or err < 0 with fd already closed. */
typedef void (*hs_done_fn)(struct hs *h, int err, const char *why);

struct hs {
	struct s5 *s5;
	xp_loop_t *loop;
	int fd;
	xp_io_t *io;
	xp_timer_t *timer;
	enum hs_state state;
	uint8_t cmd;
	union xp_sockaddr dst;
	const char *domain; /* the caller keeps it alive until the result */
	union xp_sockaddr bnd;
	hs_done_fn done;
	void *owner;
	size_t olen, ooff, ilen;
	uint8_t out[S5_MAX_MSG];
	uint8_t in[S5_MAX_MSG];
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* At most one warning per WARN_INTERVAL_MS per instance; the counters keep the exact tally. */
static void s5_warn(struct s5 *s5, const char *what, const char *why)
{
	uint64_t now = mono_ms(), last = atomic_load(&s5->warn_last_ms);
	uint64_t skipped;

	if (last && now - last < WARN_INTERVAL_MS) {
		atomic_fetch_add(&s5->warn_suppressed, 1);
		return;
	}
	if (!atomic_compare_exchange_strong(&s5->warn_last_ms, &last, now ? now : 1)) {
		atomic_fetch_add(&s5->warn_suppressed, 1);
		return;
	}
	skipped = atomic_exchange(&s5->warn_suppressed, 0);
	if (skipped)
		s5->host->log(s5->self, XP_LOG_WARN, "%s: %s (%llu similar messages suppressed)",
			      what, why, (unsigned long long)skipped);
	else
		s5->host->log(s5->self, XP_LOG_WARN, "%s: %s", what, why);
}

/* ------------------------------------------------------------------------------------------ */
/* The handshake (TCP CONNECT and the UDP control connection)                                    */

static void hs_release(struct hs *h)
{
	const struct xp_host *host = h->s5->host;

	if (h->io)
		host->io_free(h->io);
	if (h->timer)
		host->timer_free(h->timer);
	h->io = NULL;
	h->timer = NULL;
}

static void hs_finish(struct hs *h, int err, const char *why)
{
	struct s5 *s5 = h->s5;
	const struct xp_host *host = s5->host;

	hs_release(h);
	if (err) {
		host->counter_add(s5->failures, 1);
		if (err == -EACCES && h->state != HS_REPLY) {
			host->counter_add(s5->auth_failures, 1);
			s5_warn(s5, "authentication failed", why);
		} else if (err == -EPROTO) {
			host->counter_add(s5->protocol_errors, 1);
			s5_warn(s5, "bad reply from the SOCKS5 server, connection closed", why);
		} else if (err == -ETIMEDOUT && h->state != HS_REPLY) {
			host->counter_add(s5->timeouts, 1);
			s5_warn(s5, "handshake timed out", why);
		} else if (h->state == HS_CONNECTING) {
			s5_warn(s5, "cannot reach the SOCKS5 server", strerror(-err));
		} else if (host->log_enabled(s5->self, XP_LOG_DEBUG)) {
			host->log(s5->self, XP_LOG_DEBUG, "request refused: %s", why);
		}
		/* a reset, not a FIN: the server must not take a half-done handshake as an
		 * orderly end (and a hostile one learns nothing from the timing) */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		setsockopt(h->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(h->fd);
		h->fd = -1;
	}
	h->done(h, err, why);
}

static void hs_writable(struct hs *h);

/* Write the next message now (the socket is almost always writable), waiting only for what
 * does not fit. h may be gone when this returns. */
static void hs_send(struct hs *h, enum hs_state next, ssize_t len)
{
	h->state = next;
	h->olen = (size_t)len;
	h->ooff = 0;
	h->ilen = 0;
	hs_writable(h);
}

static void hs_next(struct hs *h)
{
	struct s5 *s5 = h->s5;
	ssize_t len;

	switch (h->state) {
	case HS_CONNECTING:
		len = s5_greeting(h->out, sizeof(h->out), s5->userpass);
		hs_send(h, HS_METHOD, len);
		return;
	case HS_METHOD:
		if (s5->userpass) {
			len = s5_auth_request(h->out, sizeof(h->out), s5->cfg->username,
					      s5->cfg->password);
			if (len < 0) {
				hs_finish(h, (int)len, "username or password too long");
				return;
			}
			hs_send(h, HS_AUTH, len);
			return;
		}
		/* no authentication: the request comes next */
		__attribute__((fallthrough));
	case HS_AUTH:
		len = s5_request(h->out, sizeof(h->out), h->cmd, &h->dst, h->domain);
		if (len < 0) {
			hs_finish(h, (int)len, "cannot encode the target address");
			return;
		}
		hs_send(h, HS_REPLY, len);
		return;
	case HS_REPLY:
		hs_finish(h, 0, NULL);
		return;
	}
}

static ssize_t hs_parse(struct hs *h, size_t *need, const char **why)
{
	switch (h->state) {
	case HS_METHOD:
		return s5_parse_method(h->in, h->ilen, h->s5->userpass, need, why);
	case HS_AUTH:
		return s5_parse_auth(h->in, h->ilen, need, why);
	case HS_REPLY:
		return s5_parse_reply(h->in, h->ilen, &h->bnd, need, why);
	default:
		*why = "internal state error";
		return -EINVAL;
	}
}

static void hs_readable(struct hs *h)
{
	for (;;) {
		const char *why = "malformed reply";
		size_t need = 0;
		ssize_t n = hs_parse(h, &need, &why);

		if (n > 0) {
			hs_next(h);
			return;
		}
		if (n < 0) {
			hs_finish(h, (int)n, why);
			return;
		}
		if (need <= h->ilen || need > sizeof(h->in)) {
			hs_finish(h, -EPROTO, "reply parser asked for an impossible length");
			return;
		}
		/* exactly up to what the message needs: later bytes belong to the relay */
		n = recv(h->fd, h->in + h->ilen, need - h->ilen, 0);
		if (n > 0) {
			h->ilen += (size_t)n;
			continue;
		}
		if (n == 0) {
			hs_finish(h, -ECONNRESET,
				  "server closed the connection during the handshake");
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			hs_finish(h, -errno, "reading from the SOCKS5 server failed");
		return;
	}
}

static void hs_writable(struct hs *h)
{
	while (h->ooff < h->olen) {
		ssize_t n = send(h->fd, h->out + h->ooff, h->olen - h->ooff, MSG_NOSIGNAL);

		if (n > 0) {
			h->ooff += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			h->s5->host->io_set(h->io, XP_IO_WRITE);
			return;
		}
		hs_finish(h, n < 0 ? -errno : -EIO, "writing to the SOCKS5 server failed");
		return;
	}
	/* the credentials do not linger in memory longer than they must */
	if (h->state == HS_AUTH)
		memset(h->out, 0, h->olen);
	h->s5->host->io_set(h->io, XP_IO_READ);
}

static void hs_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct hs *h = arg;

	if (h->state == HS_CONNECTING) {
		socklen_t len = sizeof(int);
		struct sockaddr_storage peer;
		int soerr = 0;

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			soerr = errno;
		if (soerr) {
			hs_finish(h, -soerr, "cannot connect to the SOCKS5 server");
			return;
		}
		len = sizeof(peer);
		if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0)
			return; /* not connected yet: a spurious wakeup */
		hs_next(h);
		return;
	}
	if (h->ooff < h->olen) {
		hs_writable(h);
		return;
	}
	hs_readable(h);
}

static void hs_timer_cb(xp_timer_t *timer, void *arg)
{
	hs_finish(arg, -ETIMEDOUT, "SOCKS5 handshake timed out (timeout)");
}

/* Start a handshake on `loop`. 0 (the result comes through h->done, never from inside this
 * call) or -errno (nothing started, h untouched apart from fd = -1). */
static int hs_start(struct hs *h, struct s5 *s5, xp_loop_t *loop)
{
	const struct xp_host *host = s5->host;
	int one = 1, rc;

	h->s5 = s5;
	h->loop = loop;
	h->fd = host->upstream_socket(s5->self, s5->server.sa.sa_family, SOCK_STREAM, IPPROTO_TCP);
	if (h->fd < 0) {
		rc = h->fd;
		h->fd = -1;
		return rc;
	}
	/* handshake messages are tiny and each waits for an answer: never delay them */
	setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	h->io = host->io_new(loop, h->fd, hs_io_cb, h);
	h->timer = host->timer_new(loop, hs_timer_cb, h);
	if (!h->io || !h->timer) {
		rc = -ENOMEM;
		goto err;
	}
	h->state = HS_CONNECTING;
	if (connect(h->fd, &s5->server.sa, s5->server_len) && errno != EINPROGRESS) {
		rc = -errno;
		goto err;
	}
	/* connected at once or not: the first writable event starts the greeting */
	host->io_set(h->io, XP_IO_WRITE);
	host->timer_set(h->timer, s5->cfg->timeout_ms, 0);
	return 0;

err:
	hs_release(h);
	close(h->fd);
	h->fd = -1;
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* TCP                                                                                          */

struct tcp_attempt {
	struct hs hs; /* first: the handshake is freed as the attempt */
	xp_conn_t *conn;
};

static void tcp_done(struct hs *h, int err, const char *why)
{
	struct tcp_attempt *a = (struct tcp_attempt *)h;
	struct s5 *s5 = h->s5;
	xp_conn_t *conn = a->conn;
	int fd = h->fd;

	/* freed before the callback: the core may tear the connection down inside it */
	free(a);
	if (err) {
		s5->host->conn_fail(conn, err, why);
		return;
	}
	s5->host->counter_add(s5->connects, 1);
	s5->host->conn_ready_fd(conn, fd);
}

static int s5_tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *target, void **cctx)
{
	struct s5 *s5 = inst;
	struct tcp_attempt *a;
	int rc;

	*cctx = NULL;
	if (target->addr.sa.sa_family != AF_INET && target->addr.sa.sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->conn = conn;
	a->hs.cmd = S5_CMD_CONNECT;
	a->hs.dst = target->addr;
	a->hs.domain = target->domain; /* valid for the connection's lifetime */
	a->hs.done = tcp_done;
	rc = hs_start(&a->hs, s5, s5->host->conn_loop(conn));
	if (rc) {
		free(a);
		if (rc == -ENOMEM || rc == -EMFILE || rc == -ENFILE)
			return rc;
		/* the server address itself failed (unreachable network): tell the core why */
		s5->host->counter_add(s5->failures, 1);
		s5_warn(s5, "cannot reach the SOCKS5 server", strerror(-rc));
		s5->host->conn_fail(conn, rc, "cannot connect to the SOCKS5 server");
		return 0;
	}
	*cctx = a;
	return 0;
}

static void s5_tcp_abort(void *inst, void *cctx)
{
	struct tcp_attempt *a = cctx;

	if (!a)
		return;
	hs_release(&a->hs);
	if (a->hs.fd >= 0)
		close(a->hs.fd);
	free(a);
}

/* ------------------------------------------------------------------------------------------ */
/* UDP ASSOCIATE                                                                                */

struct qdgram {
	struct qdgram *next;
	size_t len, hlen;
	uint8_t data[]; /* header, then payload */
};

struct udp_sess {
	struct s5 *s5;
	xp_udp_t *s;
	xp_loop_t *loop;
	struct hs *hs; /* while the association is being set up */
	int ctl_fd;    /* the control connection, once associated */
	xp_io_t *ctl_io;
	int ufd; /* connected to the relay */
	xp_io_t *uio;
	bool dead;		  /* udp_fail given: wait for udp_close */
	union xp_sockaddr target; /* the session's destination, for replies that name a domain */
	struct qdgram *qhead, **qtail;
	size_t qcount, qbytes;
};

struct udp_hs {
	struct hs hs;
	struct udp_sess *u;
};

static void queue_clear(struct udp_sess *u)
{
	struct qdgram *q, *next;

	for (q = u->qhead; q; q = next) {
		next = q->next;
		free(q);
	}
	u->qhead = NULL;
	u->qtail = &u->qhead;
	u->qcount = u->qbytes = 0;
}

static void sess_release(struct udp_sess *u)
{
	const struct xp_host *host = u->s5->host;

	if (u->hs) {
		hs_release(u->hs);
		if (u->hs->fd >= 0)
			close(u->hs->fd);
		free(u->hs);
		u->hs = NULL;
	}
	if (u->ctl_io)
		host->io_free(u->ctl_io);
	if (u->uio)
		host->io_free(u->uio);
	if (u->ctl_fd >= 0)
		close(u->ctl_fd);
	if (u->ufd >= 0)
		close(u->ufd);
	u->ctl_io = u->uio = NULL;
	u->ctl_fd = u->ufd = -1;
	queue_clear(u);
}

/* The session cannot go on: release everything but `u` (udp_close frees it), then tell the
 * core, last, since it may close the session from inside the call. */
static void sess_fail(struct udp_sess *u, int err, const char *why)
{
	sess_release(u);
	u->dead = true;
	u->s5->host->udp_fail(u->s, err, why);
}

static int udp_xmit(struct udp_sess *u, const uint8_t *hdr, size_t hlen, const void *buf,
		    size_t len)
{
	struct iovec iov[2] = {
		{.iov_base = (void *)hdr, .iov_len = hlen},
		{.iov_base = (void *)buf, .iov_len = len},
	};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};

	if (sendmsg(u->ufd, &msg, MSG_NOSIGNAL) < 0)
		return -errno;
	return 0;
}

static void udp_readable(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct udp_sess *u = arg;
	struct s5 *s5 = u->s5;
	static __thread uint8_t buf[UDP_BUF];

	for (int i = 0; i < UDP_RECV_BATCH; i++) {
		union xp_sockaddr from;
		const char *why = NULL;
		uint8_t frag = 0;
		ssize_t n = recv(fd, buf, sizeof(buf), 0), hl;

		if (n < 0) {
			/* ECONNREFUSED: an ICMP error from the relay; the next send reports again
			 */
			return;
		}
		hl = s5_udp_parse(buf, (size_t)n, &from, &frag, &why);
		if (hl < 0) {
			s5->host->counter_add(s5->udp_bad, 1);
			if (s5->host->log_enabled(s5->self, XP_LOG_DEBUG))
				s5->host->log(s5->self, XP_LOG_DEBUG, "UDP datagram dropped: %s",
					      why);
			continue;
		}
		if (frag != 0) {
			s5->host->counter_add(s5->udp_frag_dropped, 1);
			continue;
		}
		/* a name as the source cannot be shown to the client: it sees the session's peer */
		if (from.sa.sa_family == AF_UNSPEC)
			from = u->target;
		s5->host->udp_deliver(u->s, &from, buf + hl, (size_t)(n - hl));
	}
}

static void ctl_readable(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct udp_sess *u = arg;
	uint8_t junk[256];
	ssize_t n = recv(fd, junk, sizeof(junk), 0);

	/* the server says nothing on the control connection after the reply: bytes are
	 * ignored, its end ends the association */
	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
		return;
	sess_fail(u, n == 0 ? -ENOTCONN : -errno, "SOCKS5 control connection closed");
}

static bool addr_unspecified(const union xp_sockaddr *a)
{
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->sa.sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&a->in6.sin6_addr);
	return true;
}

static void udp_hs_done(struct hs *h, int err, const char *why)
{
	struct udp_sess *u = ((struct udp_hs *)h)->u;
	struct s5 *s5 = u->s5;
	const struct xp_host *host = s5->host;
	union xp_sockaddr relay = h->bnd;
	struct qdgram *q;
	in_port_t port;
	int fd = h->fd;

	free(h);
	u->hs = NULL;
	if (err) {
		sess_fail(u, err, why);
		return;
	}
	u->ctl_fd = fd;
	/* RFC 1928: BND is where to send datagrams; servers behind NAT or bound to the
	 * wildcard say 0.0.0.0 (or a name), which means "the address you reached me at" */
	if (addr_unspecified(&relay)) {
		port = relay.sa.sa_family == AF_INET6 ? relay.in6.sin6_port : relay.in.sin_port;
		relay = s5->server;
		if (relay.sa.sa_family == AF_INET6)
			relay.in6.sin6_port = port;
		else
			relay.in.sin_port = port;
	}
	u->ufd = host->upstream_socket(s5->self, relay.sa.sa_family, SOCK_DGRAM, IPPROTO_UDP);
	if (u->ufd < 0) {
		sess_fail(u, u->ufd, "cannot create the UDP socket for the SOCKS5 relay");
		return;
	}
	if (connect(u->ufd, &relay.sa,
		    relay.sa.sa_family == AF_INET6 ? sizeof(relay.in6) : sizeof(relay.in))) {
		sess_fail(u, -errno, "cannot reach the SOCKS5 UDP relay");
		return;
	}
	u->ctl_io = host->io_new(u->loop, u->ctl_fd, ctl_readable, u);
	u->uio = host->io_new(u->loop, u->ufd, udp_readable, u);
	if (!u->ctl_io || !u->uio) {
		sess_fail(u, -ENOMEM, "out of memory");
		return;
	}
	host->io_set(u->ctl_io, XP_IO_READ);
	host->io_set(u->uio, XP_IO_READ);
	host->counter_add(s5->udp_sessions, 1);
	for (q = u->qhead; q; q = q->next)
		if (udp_xmit(u, q->data, q->hlen, q->data + q->hlen, q->len - q->hlen) < 0)
			host->counter_add(s5->udp_queue_dropped, 1);
	queue_clear(u);
}

static int s5_udp_open(void *inst, xp_udp_t *s, const struct xp_target *target, void **uctx)
{
	struct s5 *s5 = inst;
	struct udp_sess *u;
	struct udp_hs *uh;
	int rc;

	*uctx = NULL;
	u = calloc(1, sizeof(*u));
	uh = calloc(1, sizeof(*uh));
	if (!u || !uh) {
		free(u);
		free(uh);
		return -ENOMEM;
	}
	u->s5 = s5;
	u->s = s;
	u->loop = s5->host->udp_loop(s);
	u->ctl_fd = u->ufd = -1;
	u->qtail = &u->qhead;
	u->target = target->addr;
	uh->u = u;
	uh->hs.cmd = S5_CMD_UDP_ASSOCIATE;
	/* RFC 1928: the address we will send from, zeros when not known (it is not: the
	 * relay socket does not exist yet) */
	uh->hs.dst.in.sin_family = AF_INET;
	uh->hs.done = udp_hs_done;
	rc = hs_start(&uh->hs, s5, u->loop);
	if (rc) {
		free(uh);
		free(u);
		return rc;
	}
	u->hs = &uh->hs;
	*uctx = u;
	return 0;
}

static int s5_udp_send(void *inst, void *uctx, const union xp_sockaddr *dst, const char *domain,
		       const void *buf, size_t len)
{
	struct udp_sess *u = uctx;
	uint8_t hdr[S5_UDP_MAX_HDR];
	ssize_t hlen;
	struct qdgram *q;

	if (u->dead)
		return -ENOTCONN;
	hlen = s5_udp_header(hdr, sizeof(hdr), dst, domain);
	if (hlen < 0)
		return (int)hlen;
	if (u->ufd >= 0)
		return udp_xmit(u, hdr, (size_t)hlen, buf, len);
	/* still associating: hold a bounded few, as a socket buffer would */
	if (u->qcount >= UDP_QUEUE_MAX || u->qbytes + len > UDP_QUEUE_BYTES)
		return -ENOBUFS;
	q = malloc(sizeof(*q) + (size_t)hlen + len);
	if (!q)
		return -ENOMEM;
	q->next = NULL;
	q->hlen = (size_t)hlen;
	q->len = (size_t)hlen + len;
	memcpy(q->data, hdr, (size_t)hlen);
	memcpy(q->data + hlen, buf, len);
	*u->qtail = q;
	u->qtail = &q->next;
	u->qcount++;
	u->qbytes += len;
	return 0;
}

static void s5_udp_close(void *inst, void *uctx)
{
	struct udp_sess *u = uctx;

	if (!u)
		return;
	sess_release(u);
	free(u);
}

/* ------------------------------------------------------------------------------------------ */
/* Instances                                                                                    */

/* "host:port" or "[v6]:port", already validated by the core. A name is resolved here, once, on
 * the main thread: the loops never block on DNS. */
static int resolve_server(struct s5 *s5, const char *hp)
{
	char host[256];
	const char *colon = strrchr(hp, ':'), *h = hp;
	size_t hl;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
	int rc;

	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - hp);
	if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') {
		h = hp + 1;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc) {
		s5->host->log(s5->self, XP_LOG_ERROR, "server %s: %s", hp, gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(&s5->server, res->ai_addr, res->ai_addrlen);
	s5->server_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int s5_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			   const void *config, void **inst)
{
	const struct s5_cfg *cfg = config;
	struct s5 *s5;
	int rc;

	if (!cfg->username != !cfg->password) {
		host->log(self, XP_LOG_ERROR, "set both username and password, or neither");
		return -EINVAL;
	}
	if (cfg->username && (strlen(cfg->username) < 1 || strlen(cfg->username) > 255 ||
			      strlen(cfg->password) < 1 || strlen(cfg->password) > 255)) {
		host->log(self, XP_LOG_ERROR, "username and password must be 1-255 bytes each");
		return -EINVAL;
	}
	s5 = calloc(1, sizeof(*s5));
	if (!s5)
		return -ENOMEM;
	s5->host = host;
	s5->self = self;
	s5->cfg = cfg;
	s5->userpass = cfg->username != NULL;
	rc = resolve_server(s5, cfg->server);
	if (rc)
		goto err;
	s5->connects = host->counter_new(self, "connects", "tunnels established");
	s5->failures = host->counter_new(self, "failures", "handshakes that failed, any reason");
	s5->auth_failures = host->counter_new(self, "auth_failures",
					      "handshakes the server refused to authenticate");
	s5->protocol_errors = host->counter_new(self, "protocol_errors",
						"malformed or unexpected replies from the server");
	s5->timeouts = host->counter_new(self, "timeouts", "handshakes that timed out");
	s5->udp_sessions = host->counter_new(self, "udp_sessions", "UDP associations set up");
	s5->udp_frag_dropped = host->counter_new(self, "udp_frag_dropped",
						 "fragmented datagrams from the relay, dropped");
	s5->udp_bad = host->counter_new(self, "udp_bad", "malformed datagrams from the relay");
	s5->udp_queue_dropped = host->counter_new(
		self, "udp_queue_dropped", "datagrams queued during setup that failed to go");
	if (!s5->connects || !s5->failures || !s5->auth_failures || !s5->protocol_errors ||
	    !s5->timeouts || !s5->udp_sessions || !s5->udp_frag_dropped || !s5->udp_bad ||
	    !s5->udp_queue_dropped) {
		rc = -ENOMEM;
		goto err;
	}
	*inst = s5;
	return 0;
err:
	free(s5);
	return rc;
}

static void s5_instance_free(void *inst)
{
	free(inst);
}

static const struct xp_outbound_ops s5_ops = {
	.size = sizeof(struct xp_outbound_ops),
	.caps = XP_OUTBOUND_TCP | XP_OUTBOUND_UDP,
	.tcp_connect = s5_tcp_connect,
	.tcp_abort = s5_tcp_abort,
	.udp_open = s5_udp_open,
	.udp_send = s5_udp_send,
	.udp_close = s5_udp_close,
};

static const struct xp_plugin_desc s5_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "socks5",
	.version = "1.0",
	.summary = "tunnel through a SOCKS5 server (CONNECT, UDP ASSOCIATE, username/password)",
	.kinds = XP_KIND_OUTBOUND,
	.option_size = sizeof(struct xp_option),
	.options = s5_options,
	.config_size = sizeof(struct s5_cfg),
	.instance_new = s5_instance_new,
	.instance_free = s5_instance_free,
	.outbound = &s5_ops,
};

XP_PLUGIN_EXPORT const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi);

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	return &s5_desc;
}
