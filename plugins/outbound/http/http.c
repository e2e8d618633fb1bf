/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * http - an outbound through an HTTP proxy: HTTP/1.1 CONNECT (RFC 9110 9.3.6), optional
 * Proxy-Authorization: Basic, optionally over TLS to the proxy (OpenSSL).
 *
 * Plain: after a 2xx the socket is the tunnel, and the core relays it with splice(). The head
 * is read with MSG_PEEK and only its own bytes are consumed, so whatever the target sent right
 * behind the proxy's response (an SSH or SMTP banner) stays in the socket for the relay.
 *
 * TLS: the tunnel is inside TLS, so the connection becomes a stream (xp_stream_ops) the core
 * drives like a non-blocking socket. Bytes that arrived in the same TLS records as the head are
 * kept and handed out by the first recv() calls.
 *
 * A proxy that lies (garbage, a head without end, too many headers, a 2xx announcing a body)
 * is closed, logged (rate-limited) and counted; a 407 is an authentication failure. One heap
 * object per connection, freed once: by its result, its timer, tcp_abort, or (TLS) the stream's
 * close().
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
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <xproxy/plugin.h>

#include "../common/hostname.h"
#include "http_proto.h"

#define WARN_INTERVAL_MS 1000 /* per instance: a dead proxy must not flood the log */

struct hp_cfg {
	const char *server;
	const char *username;
	const char *password;
	uint64_t timeout_ms;
	int tls;
	const char *sni;
	int verify;
	const char *ca_file;
	uint64_t max_head;
};

static const struct xp_option hp_options[] = {
	XP_OPT(struct hp_cfg, server, "server", XP_OPT_HOSTPORT, NULL, XP_OPT_REQUIRED,
	       "the HTTP proxy, host:port or [v6]:port (a name is resolved when loaded)"),
	XP_OPT(struct hp_cfg, username, "username", XP_OPT_STRING, NULL, 0,
	       "Proxy-Authorization: Basic user (no colon); set with password"),
	XP_OPT(struct hp_cfg, password, "password", XP_OPT_STRING, NULL, XP_OPT_SECRET,
	       "Proxy-Authorization: Basic password"),
	XP_OPT_RANGE(struct hp_cfg, timeout_ms, "timeout", XP_OPT_DURATION, "10s", 0, 100, 300000,
		     "give up when connecting, TLS and the CONNECT exchange take longer"),
	XP_OPT(struct hp_cfg, tls, "tls", XP_OPT_BOOL, "no", 0, "talk to the proxy over TLS"),
	XP_OPT(struct hp_cfg, sni, "sni", XP_OPT_STRING, NULL, 0,
	       "TLS server name (and the name verified); default: the server's host name"),
	XP_OPT(struct hp_cfg, verify, "verify", XP_OPT_BOOL, "yes", 0,
	       "verify the proxy's certificate chain and name"),
	XP_OPT(struct hp_cfg, ca_file, "ca_file", XP_OPT_STRING, NULL, 0,
	       "PEM file of trusted CAs (default: the system's store)"),
	XP_OPT_RANGE(struct hp_cfg, max_head, "max_response_head", XP_OPT_SIZE, "8k", 0, 256, 65536,
		     "largest response head (status line and headers) accepted"),
	XP_OPTION_END,
};

struct hp {
	const struct xp_host *host;
	xp_handle_t *self;
	const struct hp_cfg *cfg;
	union xp_sockaddr server;
	socklen_t server_len;
	char server_host[256]; /* as written, for SNI and name verification */
	bool server_is_ip;
	SSL_CTX *ctx; /* with tls; SSL_new from many threads is safe once it is set up */
	atomic_uint_fast64_t warn_last_ms;
	atomic_uint_fast64_t warn_suppressed;
	xp_counter_t *connects, *failures, *auth_failures, *protocol_errors, *timeouts, *refused;
	xp_counter_t *tls_failures;
};

enum hc_state {
	HC_CONNECTING,
	HC_TLS,
	HC_REQUEST,
	HC_RESPONSE,
	HC_STREAM, /* TLS tunnel handed to the core */
};

struct hc {
	struct hp *hp;
	xp_conn_t *conn;
	int fd;
	xp_io_t *io;
	xp_timer_t *timer;
	SSL *ssl;
	enum hc_state state;
	/* stream: which directions wait for the socket (XP_WAKE_*), and what each needs */
	unsigned waiting;
	unsigned ev_recv, ev_send;
	bool shut_pending;
	size_t olen, ooff;
	size_t ilen, ioff; /* the head, then (TLS) tunnel bytes from ioff to ilen */
	char out[HP_MAX_REQUEST];
	char in[]; /* cfg->max_head bytes */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* At most one warning per WARN_INTERVAL_MS per instance; the counters keep the exact tally. */
static void hp_warn(struct hp *hp, const char *what, const char *why)
{
	uint64_t now = mono_ms(), last = atomic_load(&hp->warn_last_ms);
	uint64_t skipped;

	if ((last && now - last < WARN_INTERVAL_MS) ||
	    !atomic_compare_exchange_strong(&hp->warn_last_ms, &last, now ? now : 1)) {
		atomic_fetch_add(&hp->warn_suppressed, 1);
		return;
	}
	skipped = atomic_exchange(&hp->warn_suppressed, 0);
	if (skipped)
		hp->host->log(hp->self, XP_LOG_WARN, "%s: %s (%llu similar messages suppressed)",
			      what, why, (unsigned long long)skipped);
	else
		hp->host->log(hp->self, XP_LOG_WARN, "%s: %s", what, why);
}

static void reset_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void hc_free(struct hc *c, bool abort)
{
	const struct xp_host *host = c->hp->host;

	if (c->io)
		host->io_free(c->io);
	if (c->timer)
		host->timer_free(c->timer);
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->fd >= 0) {
		if (abort)
			reset_close(c->fd);
		else
			close(c->fd);
	}
	free(c);
}

/* The handshake failed: count, log, release, then tell the core (last: it may tear the
 * connection down inside the call). */
static void hc_fail(struct hc *c, int err, const char *why)
{
	struct hp *hp = c->hp;
	const struct xp_host *host = hp->host;
	xp_conn_t *conn = c->conn;
	enum hc_state state = c->state;

	host->counter_add(hp->failures, 1);
	if (err == -EACCES) {
		host->counter_add(hp->auth_failures, 1);
		hp_warn(hp, "authentication failed", why);
	} else if (err == -EPROTO || err == -EMSGSIZE) {
		host->counter_add(hp->protocol_errors, 1);
		hp_warn(hp, "bad response from the HTTP proxy, connection closed", why);
	} else if (err == -ETIMEDOUT) {
		host->counter_add(hp->timeouts, 1);
		hp_warn(hp, "handshake timed out", why);
	} else if (state == HC_TLS) {
		host->counter_add(hp->tls_failures, 1);
		hp_warn(hp, "TLS to the HTTP proxy failed", why);
	} else if (state == HC_CONNECTING) {
		hp_warn(hp, "cannot reach the HTTP proxy", strerror(-err));
	} else if (host->log_enabled(hp->self, XP_LOG_DEBUG)) {
		host->log(hp->self, XP_LOG_DEBUG, "CONNECT failed: %s", why);
	}
	hc_free(c, true);
	host->conn_fail(conn, err, why);
}

/* ------------------------------------------------------------------------------------------ */
/* TLS helpers                                                                                  */

/* An SSL call's outcome as 1 (done), -EAGAIN with *ev the socket event it waits for, 0 for
 * a clean close_notify, or another -errno. */
static int ssl_status(SSL *ssl, int ret, unsigned *ev)
{
	int e = SSL_get_error(ssl, ret);

	switch (e) {
	case SSL_ERROR_NONE:
		return 1;
	case SSL_ERROR_WANT_READ:
		*ev = XP_IO_READ;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*ev = XP_IO_WRITE;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		return errno ? -errno : -ECONNRESET;
	default:
		ERR_clear_error();
		/* includes an EOF without close_notify: a truncated stream is not a clean end */
		return -ECONNRESET;
	}
}

static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : "TLS handshake failed";
}

/* ------------------------------------------------------------------------------------------ */
/* The CONNECT exchange                                                                          */

static void hc_step(struct hc *c);

static void hc_succeed(struct hc *c);

/* Bytes of the head that arrived: plain reads peek and consume only up to the head's end. */
static int hc_read_head(struct hc *c, const char **why)
{
	size_t cap = c->hp->cfg->max_head, end;
	struct hp_response r;
	unsigned ev = 0;
	ssize_t n;

	for (;;) {
		if (c->ssl) {
			ERR_clear_error();
			n = SSL_read(c->ssl, c->in + c->ilen, (int)(cap - c->ilen));
			if (n <= 0) {
				int st = ssl_status(c->ssl, (int)n, &ev);

				if (st == -EAGAIN) {
					c->hp->host->io_set(c->io, ev);
					return -EAGAIN;
				}
				*why = "proxy closed the connection before answering";
				return st ? st : -ECONNRESET;
			}
			end = hp_head_end(c->in, c->ilen + (size_t)n,
					  c->ilen > 3 ? c->ilen - 3 : 0);
			c->ilen += (size_t)n;
		} else {
			n = recv(c->fd, c->in + c->ilen, cap - c->ilen, MSG_PEEK);
			if (n == 0) {
				*why = "proxy closed the connection before answering";
				return -ECONNRESET;
			}
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN) {
					c->hp->host->io_set(c->io, XP_IO_READ);
					return -EAGAIN;
				}
				*why = "reading from the HTTP proxy failed";
				return -errno;
			}
			end = hp_head_end(c->in, c->ilen + (size_t)n,
					  c->ilen > 3 ? c->ilen - 3 : 0);
			/* consume the head's bytes only; the same bytes land where they were peeked
			 */
			n = end ? (ssize_t)(end - c->ilen) : n;
			n = recv(c->fd, c->in + c->ilen, (size_t)n, 0);
			if (n <= 0) {
				*why = "reading from the HTTP proxy failed";
				return n < 0 ? -errno : -ECONNRESET;
			}
			c->ilen += (size_t)n;
		}
		n = hp_parse_response(c->in, c->ilen, cap, &r, why);
		if (n < 0)
			return (int)n;
		if (n == 0)
			continue;
		c->ioff = (size_t)n; /* TLS: tunnel bytes may follow in in[ioff..ilen) */
		if (r.status / 100 == 2)
			return 0;
		/* 407 is the RFC's answer; some proxies (tinyproxy's BasicAuth) send 401 */
		if (r.status == 407 || r.status == 401) {
			if (!c->hp->cfg->username)
				*why = "proxy requires authentication (set username and password)";
			else if (r.status == 407)
				*why = "proxy refused the username/password (407)";
			else
				*why = "proxy refused the username/password (401)";
			return -EACCES;
		}
		/* the status text is the proxy's: log it here (sanitised), pass a constant on */
		if (c->hp->host->log_enabled(c->hp->self, XP_LOG_DEBUG))
			c->hp->host->log(c->hp->self, XP_LOG_DEBUG, "CONNECT answered %d %s",
					 r.status, r.reason);
		c->hp->host->counter_add(c->hp->refused, 1);
		*why = r.status == 403	     ? "proxy refused the CONNECT (403)"
		       : r.status / 100 == 5 ? "proxy could not reach the target (5xx)"
					     : "proxy refused the CONNECT (non-2xx status)";
		return r.status / 100 == 5 ? -EHOSTUNREACH : -ECONNREFUSED;
	}
}

static int hc_write_request(struct hc *c, const char **why)
{
	unsigned ev = 0;

	while (c->ooff < c->olen) {
		ssize_t n;

		if (c->ssl) {
			ERR_clear_error();
			n = SSL_write(c->ssl, c->out + c->ooff, (int)(c->olen - c->ooff));
			if (n <= 0) {
				int st = ssl_status(c->ssl, (int)n, &ev);

				if (st == -EAGAIN) {
					c->hp->host->io_set(c->io, ev);
					return -EAGAIN;
				}
				*why = "writing to the HTTP proxy failed";
				return st ? st : -ECONNRESET;
			}
		} else {
			n = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN) {
					c->hp->host->io_set(c->io, XP_IO_WRITE);
					return -EAGAIN;
				}
				*why = "writing to the HTTP proxy failed";
				return -errno;
			}
		}
		c->ooff += (size_t)n;
	}
	/* the credentials do not linger in memory longer than they must */
	memset(c->out, 0, c->olen);
	return 0;
}

static void hc_step(struct hc *c)
{
	const char *why = "CONNECT failed";
	unsigned ev = 0;
	int rc;

	switch (c->state) {
	case HC_CONNECTING: {
		socklen_t len = sizeof(int);
		struct sockaddr_storage peer;
		int soerr = 0;

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			soerr = errno;
		if (soerr) {
			hc_fail(c, -soerr, "cannot connect to the HTTP proxy");
			return;
		}
		len = sizeof(peer);
		if (getpeername(c->fd, (struct sockaddr *)&peer, &len) < 0)
			return; /* not connected yet: a spurious wakeup */
		c->state = c->ssl ? HC_TLS : HC_REQUEST;
		hc_step(c);
		return;
	}
	case HC_TLS:
		ERR_clear_error();
		rc = ssl_status(c->ssl, SSL_connect(c->ssl), &ev);
		if (rc == -EAGAIN) {
			c->hp->host->io_set(c->io, ev);
			return;
		}
		if (rc != 1) {
			long vr = SSL_get_verify_result(c->ssl);

			why = vr != X509_V_OK ? X509_verify_cert_error_string(vr) : ssl_reason();
			ERR_clear_error();
			hc_fail(c, rc < 0 ? rc : -ECONNRESET, why);
			return;
		}
		c->state = HC_REQUEST;
		__attribute__((fallthrough));
	case HC_REQUEST:
		rc = hc_write_request(c, &why);
		if (rc == -EAGAIN)
			return;
		if (rc) {
			hc_fail(c, rc, why);
			return;
		}
		/* the answer cannot be there yet: wait for it */
		c->state = HC_RESPONSE;
		c->hp->host->io_set(c->io, XP_IO_READ);
		return;
	case HC_RESPONSE:
		rc = hc_read_head(c, &why);
		if (rc == -EAGAIN)
			return;
		if (rc) {
			hc_fail(c, rc, why);
			return;
		}
		hc_succeed(c);
		return;
	case HC_STREAM:
		return;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* The TLS tunnel as a stream                                                                    */

static void stream_update_io(struct hc *c)
{
	unsigned ev = 0;

	if (c->waiting & XP_WAKE_RECV)
		ev |= c->ev_recv;
	if (c->waiting & XP_WAKE_SEND)
		ev |= c->ev_send;
	if (c->shut_pending)
		ev |= XP_IO_WRITE;
	c->hp->host->io_set(c->io, ev);
}

static void stream_try_shutdown(struct hc *c)
{
	unsigned ev = 0;
	int rc;

	ERR_clear_error();
	rc = SSL_shutdown(c->ssl);
	/* 0: our close_notify went out (the peer's has not come); 1: both */
	if (rc >= 0 || ssl_status(c->ssl, rc, &ev) != -EAGAIN) {
		c->shut_pending = false;
		ERR_clear_error();
		shutdown(c->fd, SHUT_WR);
		return;
	}
	c->shut_pending = true;
}

static ssize_t stream_send(void *stream, const void *buf, size_t len)
{
	struct hc *c = stream;
	unsigned ev = 0;
	int n, st;

	if (len > INT32_MAX)
		len = INT32_MAX;
	ERR_clear_error();
	n = SSL_write(c->ssl, buf, (int)len);
	if (n > 0)
		return n;
	st = ssl_status(c->ssl, n, &ev);
	if (st == -EAGAIN) {
		c->ev_send = ev;
		c->waiting |= XP_WAKE_SEND;
		stream_update_io(c);
		return -EAGAIN;
	}
	return st ? st : -EPIPE;
}

static ssize_t stream_recv(void *stream, void *buf, size_t len)
{
	struct hc *c = stream;
	unsigned ev = 0;
	int n, st;

	if (c->ioff < c->ilen) {
		/* what came in the same records as the CONNECT response */
		size_t take = c->ilen - c->ioff < len ? c->ilen - c->ioff : len;

		memcpy(buf, c->in + c->ioff, take);
		c->ioff += take;
		return (ssize_t)take;
	}
	if (len > INT32_MAX)
		len = INT32_MAX;
	ERR_clear_error();
	n = SSL_read(c->ssl, buf, (int)len);
	if (n > 0)
		return n;
	st = ssl_status(c->ssl, n, &ev);
	if (st == -EAGAIN) {
		c->ev_recv = ev;
		c->waiting |= XP_WAKE_RECV;
		stream_update_io(c);
		return -EAGAIN;
	}
	return st; /* 0: close_notify, the proxy's clean end */
}

static int stream_shutdown(void *stream)
{
	struct hc *c = stream;

	stream_try_shutdown(c);
	stream_update_io(c);
	return 0;
}

static void stream_close(void *stream, int abort)
{
	hc_free(stream, abort);
}

static const struct xp_stream_ops tls_stream_ops = {
	.size = sizeof(struct xp_stream_ops),
	.send = stream_send,
	.recv = stream_recv,
	.shutdown = stream_shutdown,
	.close = stream_close,
};

/* The socket is ready for what a direction waited on: wake it (a wake that finds nothing new
 * costs one spurious call; a missed one stalls the connection). */
static void stream_io(struct hc *c, unsigned revents)
{
	unsigned wake = c->waiting;

	if (c->shut_pending)
		stream_try_shutdown(c);
	c->waiting = 0;
	stream_update_io(c);
	if (wake)
		c->hp->host->stream_wake(c->conn, wake);
}

static void hc_succeed(struct hc *c)
{
	struct hp *hp = c->hp;
	const struct xp_host *host = hp->host;
	xp_conn_t *conn = c->conn;
	int fd = c->fd;

	host->counter_add(hp->connects, 1);
	host->timer_free(c->timer);
	c->timer = NULL;
	if (c->ssl) {
		c->state = HC_STREAM;
		host->io_set(c->io, 0);
		host->conn_ready_stream(conn, &tls_stream_ops, c);
		return;
	}
	/* plain: the socket is the tunnel; ours no longer */
	c->fd = -1;
	hc_free(c, false);
	host->conn_ready_fd(conn, fd);
}

static void hc_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct hc *c = arg;

	if (c->state == HC_STREAM)
		stream_io(c, revents);
	else
		hc_step(c);
}

static void hc_timer_cb(xp_timer_t *timer, void *arg)
{
	hc_fail(arg, -ETIMEDOUT, "HTTP proxy handshake timed out (timeout)");
}

static int hp_tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *target, void **cctx)
{
	struct hp *hp = inst;
	const struct xp_host *host = hp->host;
	xp_loop_t *loop = host->conn_loop(conn);
	struct hc *c;
	ssize_t len;
	int one = 1, rc;

	*cctx = NULL;
	if (target->addr.sa.sa_family != AF_INET && target->addr.sa.sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	c = calloc(1, sizeof(*c) + hp->cfg->max_head);
	if (!c)
		return -ENOMEM;
	c->hp = hp;
	c->conn = conn;
	c->fd = -1;
	len = hp_connect_request(c->out, sizeof(c->out), &target->addr, target->domain,
				 hp->cfg->username, hp->cfg->password);
	if (len < 0) {
		rc = (int)len;
		goto err;
	}
	c->olen = (size_t)len;
	c->fd = host->upstream_socket(hp->self, hp->server.sa.sa_family, SOCK_STREAM, IPPROTO_TCP);
	if (c->fd < 0) {
		rc = c->fd;
		goto err;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->io = host->io_new(loop, c->fd, hc_io_cb, c);
	c->timer = host->timer_new(loop, hc_timer_cb, c);
	if (!c->io || !c->timer) {
		rc = -ENOMEM;
		goto err;
	}
	if (hp->ctx) {
		c->ssl = SSL_new(hp->ctx);
		if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
			ERR_clear_error();
			rc = -ENOMEM;
			goto err;
		}
		if (hp->cfg->sni || !hp->server_is_ip)
			SSL_set_tlsext_host_name(
				c->ssl, (char *)(hp->cfg->sni ? hp->cfg->sni : hp->server_host));
		if (hp->cfg->verify) {
			/* the certificate must name what we asked for: the sni, else the host as
			 * written in `server` (a name or an IP address) */
			if (hp->cfg->sni || !hp->server_is_ip)
				SSL_set1_host(c->ssl,
					      hp->cfg->sni ? hp->cfg->sni : hp->server_host);
			else
				X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
							      hp->server_host);
		}
	}
	c->state = HC_CONNECTING;
	if (connect(c->fd, &hp->server.sa, hp->server_len) && errno != EINPROGRESS) {
		rc = -errno;
		hc_fail(c, rc, "cannot connect to the HTTP proxy");
		return 0;
	}
	host->io_set(c->io, XP_IO_WRITE);
	host->timer_set(c->timer, hp->cfg->timeout_ms, 0);
	*cctx = c;
	return 0;

err:
	hc_free(c, true);
	return rc;
}

static void hp_tcp_abort(void *inst, void *cctx)
{
	if (cctx)
		hc_free(cctx, true);
}

/* ------------------------------------------------------------------------------------------ */
/* Instances                                                                                    */

/* "host:port" or "[v6]:port", validated by the core. A name is resolved here, once, on the main
 * thread: the loops never block on DNS. */
static int resolve_server(struct hp *hp, const char *spec)
{
	const char *colon = strrchr(spec, ':'), *h = spec;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
	struct in6_addr probe;
	size_t hl;
	int rc;

	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - spec);
	if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
		h = spec + 1;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(hp->server_host))
		return -EINVAL;
	memcpy(hp->server_host, h, hl);
	hp->server_host[hl] = 0;
	hp->server_is_ip = inet_pton(AF_INET, hp->server_host, &probe) == 1 ||
			   inet_pton(AF_INET6, hp->server_host, &probe) == 1;
	rc = getaddrinfo(hp->server_host, colon + 1, &hints, &res);
	if (rc) {
		hp->host->log(hp->self, XP_LOG_ERROR, "server %s: %s", spec, gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(&hp->server, res->ai_addr, res->ai_addrlen);
	hp->server_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int tls_setup(struct hp *hp)
{
	const struct hp_cfg *cfg = hp->cfg;

	hp->ctx = SSL_CTX_new(TLS_client_method());
	if (!hp->ctx)
		goto err;
	SSL_CTX_set_min_proto_version(hp->ctx, TLS1_2_VERSION);
	/* the core may call send() again with the rest of a buffer, and takes partial writes */
	SSL_CTX_set_mode(hp->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
					  SSL_MODE_RELEASE_BUFFERS);
	if (cfg->verify) {
		SSL_CTX_set_verify(hp->ctx, SSL_VERIFY_PEER, NULL);
		if (cfg->ca_file ? !SSL_CTX_load_verify_locations(hp->ctx, cfg->ca_file, NULL)
				 : !SSL_CTX_set_default_verify_paths(hp->ctx)) {
			hp->host->log(hp->self, XP_LOG_ERROR, "cannot load CA certificates%s%s: %s",
				      cfg->ca_file ? " from " : "",
				      cfg->ca_file ? cfg->ca_file : "",
				      ERR_reason_error_string(ERR_peek_last_error()));
			goto err;
		}
	} else {
		SSL_CTX_set_verify(hp->ctx, SSL_VERIFY_NONE, NULL);
		hp->host->log(hp->self, XP_LOG_WARN,
			      "verify = no: the proxy's certificate is not checked");
	}
	return 0;
err:
	ERR_clear_error();
	if (hp->ctx)
		SSL_CTX_free(hp->ctx);
	hp->ctx = NULL;
	return -EINVAL;
}

static int hp_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			   const void *config, void **inst)
{
	const struct hp_cfg *cfg = config;
	struct hp *hp;
	int rc;

	if (!cfg->username != !cfg->password) {
		host->log(self, XP_LOG_ERROR, "set both username and password, or neither");
		return -EINVAL;
	}
	if (cfg->username && (!*cfg->username || strlen(cfg->username) > 255 ||
			      strchr(cfg->username, ':') || strlen(cfg->password) > 255)) {
		host->log(self, XP_LOG_ERROR,
			  "username must be 1-255 bytes without ':', password at most 255 bytes");
		return -EINVAL;
	}
	if (cfg->sni && !xpo_name_len(cfg->sni)) {
		host->log(self, XP_LOG_ERROR, "sni \"%s\" is not a host name", cfg->sni);
		return -EINVAL;
	}
	if (!cfg->tls && (cfg->sni || cfg->ca_file))
		host->log(self, XP_LOG_WARN, "sni and ca_file only apply with tls = yes");
	hp = calloc(1, sizeof(*hp));
	if (!hp)
		return -ENOMEM;
	hp->host = host;
	hp->self = self;
	hp->cfg = cfg;
	rc = resolve_server(hp, cfg->server);
	if (rc)
		goto err;
	if (cfg->tls) {
		rc = tls_setup(hp);
		if (rc)
			goto err;
	}
	hp->connects = host->counter_new(self, "connects", "tunnels established");
	hp->failures = host->counter_new(self, "failures", "handshakes that failed, any reason");
	hp->auth_failures = host->counter_new(self, "auth_failures", "407 answers");
	hp->protocol_errors = host->counter_new(self, "protocol_errors",
						"malformed or lying responses from the proxy");
	hp->timeouts = host->counter_new(self, "timeouts", "handshakes that timed out");
	hp->refused = host->counter_new(self, "refused", "CONNECTs answered with another non-2xx");
	hp->tls_failures = host->counter_new(self, "tls_failures", "TLS handshakes that failed");
	if (!hp->connects || !hp->failures || !hp->auth_failures || !hp->protocol_errors ||
	    !hp->timeouts || !hp->refused || !hp->tls_failures) {
		rc = -ENOMEM;
		goto err;
	}
	*inst = hp;
	return 0;
err:
	if (hp->ctx)
		SSL_CTX_free(hp->ctx);
	free(hp);
	return rc;
}

static void hp_instance_free(void *inst)
{
	struct hp *hp = inst;

	if (hp->ctx)
		SSL_CTX_free(hp->ctx);
	free(hp);
}

static const struct xp_outbound_ops hp_ops = {
	.size = sizeof(struct xp_outbound_ops),
	.caps = XP_OUTBOUND_TCP,
	.tcp_connect = hp_tcp_connect,
	.tcp_abort = hp_tcp_abort,
};

static const struct xp_plugin_desc hp_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "http",
	.version = "1.0",
	.summary = "tunnel through an HTTP proxy with CONNECT (Basic auth, optional TLS)",
	.kinds = XP_KIND_OUTBOUND,
	.option_size = sizeof(struct xp_option),
	.options = hp_options,
	.config_size = sizeof(struct hp_cfg),
	.instance_new = hp_instance_new,
	.instance_free = hp_instance_free,
	.outbound = &hp_ops,
};

XP_PLUGIN_EXPORT const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi);

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	return &hp_desc;
}
