/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * trojan - the trojan outbound: TLS to the server (OpenSSL), the request header, then the
 * target's bytes (CONNECT) or framed datagrams (UDP ASSOCIATE) inside the TLS connection.
 *
 * One object (struct tstream) is the TLS connection to the server, for a TCP stream handed to
 * the core or for a UDP session. Non-blocking OpenSSL: an SSL call that returns WANT_READ or
 * WANT_WRITE records which socket event the waiting side (recv or send) needs; the io callback
 * turns that event into stream_wake() for that side. The io watch asks only for what someone
 * waits for, so a relay that stops calling never makes the loop spin.
 *
 * Plaintext the stream owns (the request header, merged with the client's first bytes, and
 * UDP frames) sits in a bounded queue until SSL_write took all of it; OpenSSL may be handed a
 * moved buffer on a retry (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), never a changed one.
 *
 * The connect, the io watch, the queue and its flush, the shutdown order (queue, then
 * close_notify), the sticky error and the free path are the shared ../common/stream.c; this
 * file is TLS and the trojan framing on top of it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <xproxy/plugin.h>

#include "../common/stream.h"
#include "trojan_proto.h"

/* the header plus the client's first bytes, in one TLS record */
#define FIRST_DATA  8192
#define QCAP_TCP    (TROJAN_REQ_MAX + FIRST_DATA)
/* UDP: frames waiting for SSL_write; a datagram that does not fit is dropped (counted) */
#define QCAP_UDP    (256 * 1024)
#define UDP_RBUF    (TROJAN_UDP_HDR_MAX + TROJAN_UDP_MAX + 16384)
/* one send() hands SSL_write at most this much */
#define WRITE_MAX   (256 * 1024)
/* TLS sessions kept for resumption, per instance */
#define SESS_MAX    64

struct trojan_cfg {
	const char *server;
	const char *password;
	const char *sni;
	int verify;
	const char *ca_file;
	const char *alpn;
	uint64_t timeout_ms;
	int tcp_nodelay;
};

static const struct xp_option trojan_options[] = {
	XP_OPT(struct trojan_cfg, server, "server", XP_OPT_HOSTPORT, NULL, XP_OPT_REQUIRED,
	       "the trojan server, host:port"),
	XP_OPT(struct trojan_cfg, password, "password", XP_OPT_STRING, NULL,
	       XP_OPT_REQUIRED | XP_OPT_SECRET, "the server's password"),
	XP_OPT(struct trojan_cfg, sni, "sni", XP_OPT_STRING, NULL, 0,
	       "TLS server name (default: the server's host); also the name verified"),
	XP_OPT(struct trojan_cfg, verify, "verify", XP_OPT_BOOL, "yes", 0,
	       "verify the server's certificate chain and name"),
	XP_OPT(struct trojan_cfg, ca_file, "ca_file", XP_OPT_STRING, NULL, 0,
	       "PEM file of trusted CAs (default: the system's)"),
	XP_OPT(struct trojan_cfg, alpn, "alpn", XP_OPT_STRING, NULL, 0,
	       "ALPN protocols offered, comma-separated (e.g. h2,http/1.1)"),
	XP_OPT_RANGE(struct trojan_cfg, timeout_ms, "timeout", XP_OPT_DURATION, "0", 0, 0, 3600000,
		     "give up connecting (TCP and TLS) after this long (0: the core's timeout)"),
	XP_OPT(struct trojan_cfg, tcp_nodelay, "tcp_nodelay", XP_OPT_BOOL, "yes", 0,
	       "TCP_NODELAY on the connection to the server"),
	XP_OPTION_END,
};

struct trojan {
	const struct xp_host *host;
	xp_handle_t *self;
	const struct trojan_cfg *cfg;
	union xp_sockaddr server;
	socklen_t server_len;
	char hash[TROJAN_HASH_LEN];
	SSL_CTX *ctx;
	char sni[256];
	bool sni_is_ip;
	/* Sessions (TLS 1.3 tickets) from earlier connections, each used once: a resumed
	 * handshake skips the certificate, its decoding and its verification, which with
	 * OpenSSL 3 cost milliseconds of CPU per connection. Workers share them: locked. */
	pthread_mutex_t sess_lock;
	SSL_SESSION *sess[SESS_MAX];
	int nsess;
	xp_counter_t *connects, *resumed, *connect_failures, *tls_failures, *stream_errors;
	xp_counter_t *udp_sent, *udp_received, *udp_dropped, *udp_errors;
};

enum { T_HANDSHAKE = 1, T_READY }; /* after XPO_CONNECTING */

struct tstream {
	struct xpo_stream xs; /* first: the stream the core holds; xs.q is owned plaintext */
	struct trojan *t;
	xp_udp_t *udp; /* UDP session (xs.conn: a TCP stream) */
	uint64_t id;
	SSL *ssl;
	bool qfresh; /* the queue holds only the request header */
	bool eof, failed;

	uint8_t *rbuf; /* UDP: frames from the server */
	size_t rlen;
};

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                      */

static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : "unknown TLS error";
}

/* SSL_write for the shared queue: bytes taken, -EAGAIN (*need set) or -EPIPE. */
static ssize_t t_write(struct xpo_stream *xs, const void *buf, size_t len, unsigned *need)
{
	struct tstream *s = (struct tstream *)xs;
	size_t n = 0;
	int r, e;

	ERR_clear_error();
	r = SSL_write_ex(s->ssl, buf, len, &n);
	if (r) {
		if (n == len)
			s->qfresh = false; /* the queue is out */
		return (ssize_t)n;
	}
	e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
		*need = e == SSL_ERROR_WANT_WRITE ? XP_IO_WRITE : XP_IO_READ;
		return -EAGAIN;
	}
	return -EPIPE;
}

/* close_notify, once the queue is out. */
static int t_fin(struct xpo_stream *xs, unsigned *need)
{
	struct tstream *s = (struct tstream *)xs;
	int r;

	ERR_clear_error();
	r = SSL_shutdown(s->ssl);
	if (r >= 0)
		return 0;
	r = SSL_get_error(s->ssl, r);
	if (r == SSL_ERROR_WANT_WRITE || r == SSL_ERROR_WANT_READ) {
		*need = r == SSL_ERROR_WANT_WRITE ? XP_IO_WRITE : XP_IO_READ;
		return -EAGAIN;
	}
	return -EPIPE;
}

static void tstream_free(struct tstream *s, int abort)
{
	if (s->ssl)
		SSL_free(s->ssl);
	xpo_release(&s->xs, abort); /* the queue is wiped: it held the password hash */
	free(s->rbuf);
	free(s);
}

/* ------------------------------------------------------------------------------------------ */
/* the TCP stream                                                                               */

/* The client's bytes (the stream is alive, not shut down, len > 0). */
static ssize_t t_send(struct xpo_stream *xs, const void *buf, size_t len)
{
	struct tstream *s = (struct tstream *)xs;
	size_t take = 0, n = 0;
	int rc, r, e;

	if (xs->qlen) {
		if (s->qfresh) {
			/* the client's first bytes ride in the header's record */
			take = len < xs->qcap - xs->qlen ? len : xs->qcap - xs->qlen;
			memcpy(xs->q + xs->qlen, buf, take);
			xs->qlen += take;
		}
		rc = xpo_flush(xs);
		if (rc)
			return xpo_fail(xs, rc);
		if (xs->qlen) {
			xpo_io_update(xs);
			if (take)
				return (ssize_t)take;
			xs->send_blocked = true;
			return -EAGAIN;
		}
		if (take)
			return (ssize_t)take;
	}
	ERR_clear_error();
	r = SSL_write_ex(s->ssl, buf, len < WRITE_MAX ? len : WRITE_MAX, &n);
	if (r) {
		xs->send_need = 0;
		xpo_io_update(xs);
		return (ssize_t)n;
	}
	e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
		xs->send_need = e == SSL_ERROR_WANT_WRITE ? XP_IO_WRITE : XP_IO_READ;
		xs->send_blocked = true;
		xpo_io_update(xs);
		return -EAGAIN;
	}
	s->t->host->counter_add(s->t->stream_errors, 1);
	s->t->host->log(s->t->self, XP_LOG_INFO, "conn %" PRIu64 ": TLS write failed (%s)", s->id,
			ssl_reason());
	return xpo_fail(xs, -ECONNRESET);
}

/* The server's bytes (the stream is alive). */
static ssize_t t_recv(struct xpo_stream *xs, void *buf, size_t len)
{
	struct tstream *s = (struct tstream *)xs;
	struct trojan *t = s->t;
	size_t total = 0;

	if (s->eof)
		return 0;
	if (!len)
		return -EINVAL;
	if (s->qfresh) {
		/* nothing from the client yet: the header goes alone (server-first protocols) */
		int rc = xpo_flush(xs);

		if (rc)
			return xpo_fail(xs, rc);
		s->qfresh = false;
	}
	while (total < len) {
		size_t n = 0;
		int r, e;

		ERR_clear_error();
		r = SSL_read_ex(s->ssl, (uint8_t *)buf + total, len - total, &n);
		if (r) {
			total += n;
			continue;
		}
		e = SSL_get_error(s->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (total)
				break;
			xs->recv_need = e == SSL_ERROR_WANT_READ ? XP_IO_READ : XP_IO_WRITE;
			xs->recv_blocked = true;
			xpo_io_update(xs);
			return -EAGAIN;
		}
		if (e == SSL_ERROR_ZERO_RETURN) {
			s->eof = true;
			break;
		}
		if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			/* a TCP FIN without close_notify: the server's side may be truncated */
			t->host->counter_add(t->stream_errors, 1);
			t->host->log(t->self, XP_LOG_DEBUG,
				     "conn %" PRIu64 ": the server closed without close_notify: "
				     "connection reset", s->id);
		} else {
			t->host->counter_add(t->stream_errors, 1);
			t->host->log(t->self, XP_LOG_INFO,
				     "conn %" PRIu64 ": TLS read failed (%s): connection reset",
				     s->id, e == SSL_ERROR_SYSCALL ? "connection lost" : ssl_reason());
		}
		xpo_fail(xs, -ECONNRESET);
		break;
	}
	if (total)
		return (ssize_t)total;
	return xs->err ? xs->err : 0;
}

static void t_close(struct xpo_stream *xs, int abort)
{
	tstream_free((struct tstream *)xs, abort);
}

/* ------------------------------------------------------------------------------------------ */
/* UDP over the TLS stream                                                                      */

static void udp_failed(struct tstream *s, int err, const char *why)
{
	struct trojan *t = s->t;

	if (s->failed)
		return;
	s->failed = true;
	t->host->counter_add(t->udp_errors, 1);
	t->host->log(t->self, XP_LOG_INFO, "UDP session: %s", why);
	/* the core may close the session from inside: nothing of `s` is touched after */
	t->host->udp_fail(s->udp, err, why);
}

static void udp_read(struct tstream *s)
{
	struct trojan *t = s->t;

	/* a bounded round: a server that floods must not starve the loop's other sessions. Only
	 * stop where OpenSSL holds nothing back: the level-triggered watch then brings us back. */
	for (int round = 0;; round++) {
		size_t n = 0, off = 0;
		int r, e;

		if (round >= 64 && !SSL_has_pending(s->ssl))
			return;

		ERR_clear_error();
		r = SSL_read_ex(s->ssl, s->rbuf + s->rlen, UDP_RBUF - s->rlen, &n);
		if (!r) {
			e = SSL_get_error(s->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return;
			udp_failed(s, -ECONNRESET, e == SSL_ERROR_ZERO_RETURN
							   ? "the server closed the UDP tunnel"
							   : "the UDP tunnel failed (TLS read)");
			return;
		}
		s->rlen += n;
		for (;;) {
			union xp_sockaddr from;
			const uint8_t *p;
			size_t plen;
			ssize_t f = trojan_udp_parse(s->rbuf + off, s->rlen - off, &from, NULL, &p,
						     &plen);

			if (f == -EAGAIN)
				break;
			if (f < 0) {
				udp_failed(s, -EPROTO, "a malformed UDP frame from the server");
				return;
			}
			off += (size_t)f;
			if (from.sa.sa_family == AF_UNSPEC) {
				/* a name we cannot show the client: the session's peer stands in */
				const struct xp_conn_info *ci = t->host->udp_info(s->udp);
				in_port_t port = from.in.sin_port;

				from = ci->dst;
				from.in.sin_port = port;
			}
			t->host->counter_add(t->udp_received, 1);
			t->host->udp_deliver(s->udp, &from, p, plen);
		}
		memmove(s->rbuf, s->rbuf + off, s->rlen - off);
		s->rlen -= off;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* connecting: TCP, then TLS                                                                    */

static void setup_failed(struct tstream *s, int err, const char *why)
{
	struct trojan *t = s->t;

	t->host->counter_add(t->connect_failures, 1);
	if (s->xs.conn) {
		xp_conn_t *conn = s->xs.conn;

		tstream_free(s, 1);
		t->host->conn_fail(conn, err, why);
		return;
	}
	xpo_timer_stop(&s->xs);
	s->xs.state = T_READY; /* no more handshake steps */
	s->xs.err = err;
	udp_failed(s, err, why);
}

static void handshake_done(struct tstream *s)
{
	struct trojan *t = s->t;

	xpo_timer_stop(&s->xs);
	s->xs.state = T_READY;
	s->xs.hs_need = 0;
	t->host->counter_add(t->connects, 1);
	if (SSL_session_reused(s->ssl))
		t->host->counter_add(t->resumed, 1);
	if (s->xs.conn) {
		xpo_io_update(&s->xs);
		t->host->conn_ready_stream(s->xs.conn, &xpo_stream_ops, &s->xs);
		return;
	}
	/* UDP: datagrams are read as they come (no backpressure to respect); the header and
	 * whatever datagrams were queued meanwhile go out now */
	s->xs.keep_ev = XP_IO_READ;
	if (xpo_flush(&s->xs)) {
		udp_failed(s, -EPIPE, "the UDP tunnel failed (TLS write)");
		return;
	}
	xpo_io_update(&s->xs);
}

static void handshake_step(struct tstream *s)
{
	struct trojan *t = s->t;
	int r, e;

	ERR_clear_error();
	r = SSL_connect(s->ssl);
	if (r == 1) {
		handshake_done(s);
		return;
	}
	e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		s->xs.hs_need = e == SSL_ERROR_WANT_READ ? XP_IO_READ : XP_IO_WRITE;
		xpo_io_update(&s->xs);
		return;
	}
	t->host->counter_add(t->tls_failures, 1);
	if (SSL_get_verify_result(s->ssl) != X509_V_OK)
		t->host->log(t->self, XP_LOG_WARN,
			     "TLS handshake with the server failed: certificate: %s",
			     X509_verify_cert_error_string(SSL_get_verify_result(s->ssl)));
	else
		t->host->log(t->self, XP_LOG_WARN, "TLS handshake with the server failed: %s",
			     e == SSL_ERROR_SYSCALL ? "connection lost" : ssl_reason());
	setup_failed(s, -ECONNREFUSED, "TLS handshake with the trojan server failed");
}

/* OpenSSL hands us each new session (ticket) the server issued; we keep it (return 1). */
static int session_new_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct trojan *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));

	if (!t || !SSL_SESSION_is_resumable(sess))
		return 0;
	pthread_mutex_lock(&t->sess_lock);
	if (t->nsess == SESS_MAX) {
		/* the oldest goes */
		SSL_SESSION_free(t->sess[0]);
		memmove(t->sess, t->sess + 1, (SESS_MAX - 1) * sizeof(t->sess[0]));
		t->nsess--;
	}
	t->sess[t->nsess++] = sess;
	pthread_mutex_unlock(&t->sess_lock);
	return 1;
}

/* The newest kept session, taken out (tickets are for one use). NULL when none. */
static SSL_SESSION *session_take(struct trojan *t)
{
	SSL_SESSION *sess = NULL;

	pthread_mutex_lock(&t->sess_lock);
	if (t->nsess)
		sess = t->sess[--t->nsess];
	pthread_mutex_unlock(&t->sess_lock);
	return sess;
}

static int tls_start(struct tstream *s)
{
	struct trojan *t = s->t;
	SSL_SESSION *sess;

	s->ssl = SSL_new(t->ctx);
	if (!s->ssl || !SSL_set_fd(s->ssl, s->xs.fd))
		return -ENOMEM;
	SSL_set_connect_state(s->ssl);
	sess = session_take(t);
	if (sess) {
		/* a failed resumption is a full handshake, decided by the server */
		SSL_set_session(s->ssl, sess);
		SSL_SESSION_free(sess);
	}
	if (!t->sni_is_ip && !SSL_set_tlsext_host_name(s->ssl, t->sni))
		return -EINVAL;
	if (t->cfg->verify) {
		if (t->sni_is_ip) {
			if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), t->sni))
				return -EINVAL;
		} else if (!SSL_set1_host(s->ssl, t->sni)) {
			return -EINVAL;
		}
	}
	s->xs.state = T_HANDSHAKE;
	handshake_step(s);
	return 0;
}

static void tstream_connected(struct xpo_stream *xs, int err)
{
	struct tstream *s = (struct tstream *)xs;

	if (err) {
		setup_failed(s, err, "connecting to the trojan server failed");
		return;
	}
	if (tls_start(s))
		setup_failed(s, -ENOMEM, "TLS setup failed");
}

/* Before the shared handling of a connected stream's events: the handshake, a dead tunnel,
 * and UDP's own reading. true: the event is taken (and `s` may be gone). */
static bool tstream_io(struct xpo_stream *xs, unsigned revents)
{
	struct tstream *s = (struct tstream *)xs;

	if (xs->state == T_HANDSHAKE) {
		if (revents & xs->hs_need)
			handshake_step(s);
		return true;
	}
	if (s->failed || xs->err)
		return true;
	if (!s->udp)
		return false;
	xpo_events(xs, revents); /* the queued frames; nobody to wake */
	if (xs->err) {
		udp_failed(s, xs->err, "the UDP tunnel failed (TLS write)");
		return true;
	}
	if (revents & XP_IO_READ) {
		udp_read(s);
		return true; /* `s` may be gone (udp_fail) */
	}
	xpo_io_update(xs);
	return true;
}

static void tstream_timeout(struct xpo_stream *xs)
{
	struct tstream *s = (struct tstream *)xs;

	if (xs->state != T_READY)
		setup_failed(s, -ETIMEDOUT, "connecting to the trojan server timed out");
}

static const struct xpo_impl tstream_impl = {
	.write = t_write,
	.fin = t_fin,
	.send = t_send,
	.recv = t_recv,
	.close = t_close,
	.connected = tstream_connected,
	.timeout = tstream_timeout,
	.io = tstream_io,
};

/* A new connection to the server with the request queued. NULL with *err on failure. */
static struct tstream *tstream_new(struct trojan *t, xp_loop_t *loop, int cmd,
				   const struct xp_target *target, size_t qcap, int *err)
{
	struct tstream *s;
	ssize_t hl;

	s = calloc(1, sizeof(*s));
	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	xpo_init(&s->xs, &tstream_impl, t->host);
	s->t = t;
	s->xs.qcap = qcap;
	s->xs.q_secret = true; /* the password hash */
	s->xs.q = malloc(qcap);
	if (!s->xs.q) {
		*err = -ENOMEM;
		goto err;
	}
	hl = trojan_request(t->hash, cmd, &target->addr, target->domain, s->xs.q);
	if (hl < 0) {
		*err = -EAFNOSUPPORT;
		goto err;
	}
	s->xs.qlen = (size_t)hl;
	s->qfresh = cmd == TROJAN_CMD_CONNECT;
	*err = xpo_socket(&s->xs, t->self, loop, t->server.sa.sa_family, t->cfg->tcp_nodelay,
			  t->cfg->timeout_ms);
	if (*err)
		goto err;
	*err = xpo_connect(&s->xs, &t->server, t->server_len);
	if (*err)
		goto err;
	return s;
err:
	tstream_free(s, 1);
	return NULL;
}

static int trojan_tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *target,
			      void **cctx)
{
	struct trojan *t = inst;
	const struct xp_conn_info *ci = t->host->conn_info(conn);
	struct tstream *s;
	int err = 0;

	*cctx = NULL;
	s = tstream_new(t, t->host->conn_loop(conn), TROJAN_CMD_CONNECT, target, QCAP_TCP, &err);
	if (!s) {
		if (err == -ENOMEM || err == -EAFNOSUPPORT)
			return err;
		/* the server is unreachable: tell the client as a refused connect would */
		t->host->counter_add(t->connect_failures, 1);
		t->host->conn_fail(conn, err, "connecting to the trojan server failed");
		return 0;
	}
	s->xs.conn = conn;
	s->id = ci ? ci->id : 0;
	*cctx = s;
	return 0;
}

static void trojan_tcp_abort(void *inst, void *cctx)
{
	if (cctx)
		tstream_free(cctx, 1);
}

static int trojan_udp_open(void *inst, xp_udp_t *u, const struct xp_target *target,
			   void **uctx)
{
	struct trojan *t = inst;
	struct tstream *s;
	int err = 0;

	s = tstream_new(t, t->host->udp_loop(u), TROJAN_CMD_UDP, target, QCAP_UDP, &err);
	if (!s)
		return err;
	s->udp = u;
	s->rbuf = malloc(UDP_RBUF);
	if (!s->rbuf) {
		tstream_free(s, 1);
		return -ENOMEM;
	}
	*uctx = s;
	return 0;
}

static int trojan_udp_send(void *inst, void *uctx, const union xp_sockaddr *dst,
			   const char *domain, const void *buf, size_t len)
{
	struct trojan *t = inst;
	struct tstream *s = uctx;
	ssize_t hl;
	int rc;

	struct xpo_stream *xs = &s->xs;

	if (s->failed || xs->err)
		return -ENOTCONN;
	if (len > TROJAN_UDP_MAX)
		return -EMSGSIZE;
	/* SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: a pending retry may see the bytes moved */
	xpo_compact(xs);
	if (xs->qcap - xs->qlen < TROJAN_UDP_HDR_MAX + len) {
		t->host->counter_add(t->udp_dropped, 1);
		return -ENOBUFS; /* the tunnel is slower than the client: drop, as a router would */
	}
	hl = trojan_udp_header(dst, domain, len, xs->q + xs->qlen);
	if (hl < 0)
		return (int)hl;
	memcpy(xs->q + xs->qlen + hl, buf, len);
	xs->qlen += (size_t)hl + len;
	t->host->counter_add(t->udp_sent, 1);
	if (xs->state != T_READY || xs->send_need)
		return 0; /* goes out when the tunnel is up or writable again */
	rc = xpo_flush(xs);
	if (rc) {
		xpo_fail(xs, rc);
		return -ENOTCONN;
	}
	xpo_io_update(xs);
	return 0;
}

static void trojan_udp_close(void *inst, void *uctx)
{
	tstream_free(uctx, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* instances                                                                                    */

/* "h2,http/1.1" -> ALPN wire format. Length or -EINVAL. */
static int alpn_wire(const char *list, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*list) {
		const char *comma = strchr(list, ',');
		size_t l = comma ? (size_t)(comma - list) : strlen(list);

		if (!l || l > 255 || n + 1 + l > cap)
			return -EINVAL;
		out[n++] = (uint8_t)l;
		memcpy(out + n, list, l);
		n += l;
		list += l + (comma ? 1 : 0);
	}
	return n ? (int)n : -EINVAL;
}

static int trojan_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			       const void *config, void **inst)
{
	const struct trojan_cfg *cfg = config;
	struct in6_addr ip;
	struct trojan *t;
	char hostname[256];
	uint8_t alpn[256];
	int rc, n;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->host = host;
	t->self = self;
	t->cfg = cfg;
	pthread_mutex_init(&t->sess_lock, NULL);
	rc = -EINVAL;
	if (!cfg->password || !*cfg->password) {
		host->log(self, XP_LOG_ERROR, "password: must not be empty");
		goto err;
	}
	n = xpo_resolve(cfg->server, &t->server, &t->server_len, hostname, sizeof(hostname));
	if (n == -EINVAL) {
		host->log(self, XP_LOG_ERROR, "server \"%s\": not host:port", cfg->server);
		goto err;
	}
	if (n) {
		host->log(self, XP_LOG_ERROR, "server \"%s\": cannot resolve it", cfg->server);
		rc = -EHOSTUNREACH;
		goto err;
	}
	snprintf(t->sni, sizeof(t->sni), "%s", cfg->sni && *cfg->sni ? cfg->sni : hostname);
	t->sni_is_ip = inet_pton(AF_INET, t->sni, &ip) == 1 || inet_pton(AF_INET6, t->sni, &ip) == 1;
	if (trojan_password_hash(cfg->password, t->hash)) {
		rc = -EIO;
		goto err;
	}

	t->ctx = SSL_CTX_new(TLS_client_method());
	if (!t->ctx) {
		rc = -ENOMEM;
		goto err;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_app_data(t->ctx, t);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT |
						       SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(t->ctx, session_new_cb);
	if (cfg->verify) {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
		if (cfg->ca_file ? !SSL_CTX_load_verify_locations(t->ctx, cfg->ca_file, NULL)
				 : !SSL_CTX_set_default_verify_paths(t->ctx)) {
			host->log(self, XP_LOG_ERROR, "ca_file \"%s\": cannot load it (%s)",
				  cfg->ca_file ? cfg->ca_file : "(system)", ssl_reason());
			goto err;
		}
	} else {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
		host->log(self, XP_LOG_WARN,
			  "verify = no: the server's certificate is not checked (anyone on the "
			  "path can impersonate it)");
	}
	if (cfg->alpn && *cfg->alpn) {
		n = alpn_wire(cfg->alpn, alpn, sizeof(alpn));
		if (n < 0 || SSL_CTX_set_alpn_protos(t->ctx, alpn, (unsigned)n)) {
			host->log(self, XP_LOG_ERROR, "alpn \"%s\": not a list of protocol names",
				  cfg->alpn);
			goto err;
		}
	}
#define COUNTER(f, name, help)                                                                    \
	if (!(t->f = host->counter_new(self, name, help))) {                                      \
		rc = -ENOMEM;                                                                     \
		goto err;                                                                         \
	}
	COUNTER(connects, "connects", "TLS connections to the server made");
	COUNTER(resumed, "resumed", "of those, TLS sessions resumed (no certificate exchange)");
	COUNTER(connect_failures, "connect_failures", "connections to the server that failed");
	COUNTER(tls_failures, "tls_failures", "TLS handshakes that failed (certificate, protocol)");
	COUNTER(stream_errors, "stream_errors", "TLS streams that failed after the handshake");
	COUNTER(udp_sent, "udp_sent", "datagrams queued to the server");
	COUNTER(udp_received, "udp_received", "datagrams from the server delivered");
	COUNTER(udp_dropped, "udp_dropped", "datagrams dropped: the tunnel's queue was full");
	COUNTER(udp_errors, "udp_errors", "UDP tunnels that failed (closed, malformed frames)");
#undef COUNTER
	host->log(self, XP_LOG_DEBUG, "server %s, sni %s, verify %s", cfg->server, t->sni,
		  cfg->verify ? "yes" : "no");
	*inst = t;
	return 0;
err:
	if (t->ctx)
		SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->sess_lock);
	OPENSSL_cleanse(t->hash, sizeof(t->hash));
	free(t);
	return rc;
}

static void trojan_instance_free(void *inst)
{
	struct trojan *t = inst;

	while (t->nsess)
		SSL_SESSION_free(t->sess[--t->nsess]);
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->sess_lock);
	OPENSSL_cleanse(t->hash, sizeof(t->hash));
	free(t);
}

static const struct xp_outbound_ops trojan_ops = {
	.size = sizeof(struct xp_outbound_ops),
	.caps = XP_OUTBOUND_TCP | XP_OUTBOUND_UDP,
	.tcp_connect = trojan_tcp_connect,
	.tcp_abort = trojan_tcp_abort,
	.udp_open = trojan_udp_open,
	.udp_send = trojan_udp_send,
	.udp_close = trojan_udp_close,
};

static const struct xp_plugin_desc trojan_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "trojan",
	.version = "1.0",
	.summary = "trojan over TLS (OpenSSL), TCP CONNECT and UDP ASSOCIATE",
	.kinds = XP_KIND_OUTBOUND,
	.option_size = sizeof(struct xp_option),
	.options = trojan_options,
	.config_size = sizeof(struct trojan_cfg),
	.instance_new = trojan_instance_new,
	.instance_free = trojan_instance_free,
	.outbound = &trojan_ops,
};

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	if ((host_abi >> 16) != XP_PLUGIN_ABI_MAJOR || (host_abi & 0xffff) < 1)
		return NULL;
	return &trojan_desc;
}
