/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * shadowsocks - the shadowsocks AEAD outbound (SIP004/SIP007) and its 2022 edition (SIP022),
 * TCP and UDP.
 *
 * TCP: connect to the server from the host network namespace (host->upstream_socket), then
 * hand the core a stream (struct ss_stream) it drives like a non-blocking socket: send()
 * encrypts the client's bytes into chunks, recv() returns what the reader authenticated. The
 * salt and the target address chunk are queued when the connection is made and leave with the
 * client's first bytes (one segment for a request), or on the first recv() for protocols where
 * the server speaks first.
 *
 * Memory per connection is fixed: one ciphertext buffer each way and one chunk of plaintext for
 * a reader whose caller gave a buffer smaller than the chunk. The stream owns one io watch; it
 * asks for READ only after a recv() found the socket empty and for WRITE only while ciphertext
 * is queued, so a relay that stops calling (backpressure) never makes the loop spin. That
 * plumbing (connect, watch, queue, shutdown order, sticky error, wake-ups, free) is the shared
 * ../common/stream.c; this file is the AEAD framing on top of it.
 *
 * The 2022 methods differ in the request's start: the target address travels in a header chunk
 * together with the client's first bytes (or random padding when the server speaks first), so
 * nothing is sealed before the first send(), recv() or shutdown() (hdr_pending); the reader
 * checks the response header (type, timestamp, our request salt) before any payload.
 *
 * A stream that fails (tag, length, truncation) is dead for good: every later call returns the
 * same error, and nothing unauthenticated was released before it.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <xproxy/plugin.h>

#include "../common/stream.h"
#include "ss2022.h"
#include "ss_aead.h"

/* Plaintext taken per send(): two full chunks, about 32 KiB of ciphertext per write(). The
 * two buffers stay below glibc's mmap threshold (128 KiB) together, so a connection's buffers
 * come from the heap instead of an mmap/munmap pair per connection. */
#define SEND_CHUNKS 2
#define WBUF_CAP    (SS2022_REQ_OVERHEAD + SEND_CHUNKS * SS_MAX_CHUNK)
#define RBUF_CAP    32768
/* 2022: the server's chunks may carry 0xFFFF bytes and the reader wants a whole one; the two
 * buffers (about 99 KiB) still stay below the mmap threshold */
#define RBUF2022_CAP (SS2022_MAX_PAYLOAD + SS_TAG_LEN + 64)
#define UDP_BUF	    65536

struct ss_cfg {
	const char *server;
	int method;
	const char *password;
	uint64_t timeout_ms;
	int tcp_nodelay;
};

static const struct xp_option ss_options[] = {
	XP_OPT(struct ss_cfg, server, "server", XP_OPT_HOSTPORT, NULL, XP_OPT_REQUIRED,
	       "the shadowsocks server, host:port"),
	XP_OPT_CHOICE(struct ss_cfg, method, "method", "chacha20-ietf-poly1305", 0,
		      SS_METHOD_CHOICES, "AEAD cipher (SIP004) or 2022 edition method (SIP022)"),
	XP_OPT(struct ss_cfg, password, "password", XP_OPT_STRING, NULL,
	       XP_OPT_REQUIRED | XP_OPT_SECRET,
	       "the server's password; 2022 methods: the base64 PSK (16 or 32 bytes)"),
	XP_OPT_RANGE(struct ss_cfg, timeout_ms, "timeout", XP_OPT_DURATION, "0", 0, 0, 3600000,
		     "give up connecting to the server after this long (0: the core's timeout)"),
	XP_OPT(struct ss_cfg, tcp_nodelay, "tcp_nodelay", XP_OPT_BOOL, "yes", 0,
	       "TCP_NODELAY on the connection to the server"),
	XP_OPTION_END,
};

struct ss {
	const struct xp_host *host;
	xp_handle_t *self;
	const struct ss_cfg *cfg;
	union xp_sockaddr server;
	socklen_t server_len;
	const struct ss_method_info *mi;
	uint8_t key[SS_KEY_MAX]; /* the master key, or the 2022 PSK */
	size_t rbuf_cap;
	xp_counter_t *connects, *connect_failures, *auth_failures, *proto_errors, *truncated;
	xp_counter_t *header_rejects;
	xp_counter_t *udp_sent, *udp_received, *udp_dropped;
};

struct ss_stream {
	struct xpo_stream xs; /* first: the stream the core holds; xs.q is the ciphertext queue */
	struct ss *ss;
	uint64_t id;
	bool hdr_fresh;	  /* the queue holds only the salt and address chunk, never tried */
	bool hdr_pending; /* 2022: the request header is not sealed yet (salt, addr below) */
	bool eof;
	uint8_t salt[SS_SALT_MAX], addr[SS_ADDR_MAX];
	size_t alen;

	struct ss_aead enc;

	struct ss_reader rd;
	uint8_t *rbuf; /* behind the queue, in its allocation */
	size_t rlen, roff;
	uint8_t *pend; /* one chunk's plaintext the caller had no room for (allocated on need) */
	size_t plen, poff;
};

enum { ST_READY = 1 }; /* after XPO_CONNECTING */

/* ------------------------------------------------------------------------------------------ */
/* what the shared stream asks of us: the wire under the queue                                 */

/* Ciphertext to the socket. The write queue asks for WRITE while bytes are left. */
static ssize_t ss_write(struct xpo_stream *xs, const void *buf, size_t len, unsigned *need)
{
	struct ss_stream *st = (struct ss_stream *)xs;

	st->hdr_fresh = false;
	for (;;) {
		ssize_t n = send(xs->fd, buf, len, MSG_NOSIGNAL);

		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			*need = XP_IO_WRITE;
			return -EAGAIN;
		}
		return n < 0 ? -errno : -EIO;
	}
}

static int ss_fin(struct xpo_stream *xs, unsigned *need)
{
	return shutdown(xs->fd, SHUT_WR) < 0 ? -errno : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* the stream                                                                                   */

/* 2022: queue salt | fixed header | variable header (address, padding, the first n bytes of
 * p). Without payload (the server speaks first, or the client closes at once) the padding is
 * 1..900 random bytes, as SIP022 3.1.3 requires. The queue is empty when this runs. */
static int request_header(struct ss_stream *st, const uint8_t *p, size_t n)
{
	const struct ss_method_info *mi = st->ss->mi;
	size_t pad = 0;
	ssize_t w;

	if (!n) {
		uint8_t r[2];

		if (ss_salt(r, sizeof(r)))
			return -EIO;
		pad = 1 + ((size_t)r[0] << 8 | r[1]) % SS2022_MAX_PADDING;
	}
	w = ss2022_request(&st->enc, st->salt, mi->salt_len, st->addr, st->alen, p, n, pad,
			   (uint64_t)time(NULL), st->xs.q + st->xs.qlen);
	if (w < 0)
		return (int)w;
	st->xs.qlen += (size_t)w;
	st->hdr_pending = false;
	return 0;
}

/* The client's bytes, sealed into chunks (the stream is alive, not shut down, len > 0). */
static ssize_t ss_send(struct xpo_stream *xs, const void *buf, size_t len)
{
	struct ss_stream *st = (struct ss_stream *)xs;
	const uint8_t *p = buf;
	size_t take = 0;
	int rc;

	if (st->hdr_pending) {
		/* 2022: salt, both header chunks and the first bytes in one write (SIP022
		 * 3.1.3 asks for one write call) */
		size_t n = len < SS_MAX_PAYLOAD ? len : SS_MAX_PAYLOAD;

		rc = request_header(st, p, n);
		if (rc)
			return xpo_fail(xs, rc);
		take = n;
		/* those bytes are taken now: whatever the socket accepts below, -EAGAIN would
		 * make the core send them again */
		st->hdr_fresh = true;
	}
	/* The fresh header is merged with these bytes; anything else queued goes first. */
	if (!st->hdr_fresh) {
		rc = xpo_send_room(xs);
		if (rc)
			return rc;
	}
	for (int i = take ? 1 : 0; i < SEND_CHUNKS && take < len; i++) {
		size_t n = len - take < SS_MAX_PAYLOAD ? len - take : SS_MAX_PAYLOAD;
		ssize_t w = ss_seal_chunk(&st->enc, p + take, n, xs->q + xs->qlen);

		if (w < 0)
			return xpo_fail(xs, (int)w);
		xs->qlen += (size_t)w;
		take += n;
	}
	return xpo_send_done(xs, take);
}

static int reader_error(struct ss_stream *st, ssize_t rc)
{
	struct ss *ss = st->ss;
	const struct xp_host *host = ss->host;

	if (rc == SS_E_TYPE || rc == SS_E_TIME || rc == SS_E_SALT) {
		/* the header authenticated, so the PSK is right: a replayed or misdirected
		 * response (or a clock more than 30 s off) */
		host->counter_add(ss->header_rejects, 1);
		host->log(ss->self, XP_LOG_WARN,
			  "conn %" PRIu64 ": the server's response header %s: connection reset",
			  st->id,
			  rc == SS_E_TYPE ? "is not of the server-stream type (replayed request?)"
			  : rc == SS_E_TIME ? "has a timestamp more than 30 s from our clock "
					      "(replay, or a clock off on either side)"
					    : "names another request's salt (replayed response)");
		return xpo_fail(&st->xs, -ECONNRESET);
	}
	if (rc == -EBADMSG) {
		host->counter_add(ss->auth_failures, 1);
		if (!st->rd.chunks && ss->mi->is2022)
			host->log(ss->self, XP_LOG_WARN,
				  "conn %" PRIu64 ": authentication failed on the server's "
				  "response header (wrong PSK or method?): connection reset",
				  st->id);
		else if (!st->rd.chunks)
			host->log(ss->self, XP_LOG_WARN,
				  "conn %" PRIu64 ": authentication failed on the server's first "
				  "chunk (wrong password or method?): connection reset", st->id);
		else
			host->log(ss->self, XP_LOG_WARN,
				  "conn %" PRIu64 ": authentication failed after %" PRIu64
				  " chunks (tampered stream): connection reset", st->id,
				  st->rd.chunks);
	} else if (rc == -EMSGSIZE) {
		host->counter_add(ss->proto_errors, 1);
		host->log(ss->self, XP_LOG_WARN,
			  "conn %" PRIu64 ": chunk length above 0x3FFF from the server: connection "
			  "reset", st->id); /* (2022 allows any 16-bit length) */
	} else {
		host->counter_add(ss->proto_errors, 1);
		host->log(ss->self, XP_LOG_WARN, "conn %" PRIu64 ": decrypting failed (%s)",
			  st->id, strerror((int)-rc));
	}
	return xpo_fail(&st->xs, -ECONNRESET);
}

/* What the reader authenticated (the stream is alive). */
static ssize_t ss_recv(struct xpo_stream *xs, void *buf, size_t len)
{
	struct ss_stream *st = (struct ss_stream *)xs;
	struct ss *ss = st->ss;
	uint8_t *out = buf;
	size_t total = 0;

	if (!len)
		return -EINVAL;
	if (st->hdr_pending) {
		int rc = request_header(st, NULL, 0);

		if (rc)
			return xpo_fail(xs, rc);
		st->hdr_fresh = true;
	}
	if (st->hdr_fresh) {
		/* the server may be waiting for the target before it says anything */
		int rc = xpo_flush_fin(xs);

		if (rc)
			return xpo_fail(xs, rc);
		xpo_io_update(xs);
	}
	for (;;) {
		if (st->poff < st->plen) {
			size_t n = st->plen - st->poff < len - total ? st->plen - st->poff
								     : len - total;

			memcpy(out + total, st->pend + st->poff, n);
			st->poff += n;
			total += n;
			if (total == len)
				return (ssize_t)total;
		}
		while (total < len) {
			size_t used;
			ssize_t n = ss_reader_feed(&st->rd, st->rbuf + st->roff,
						   st->rlen - st->roff, &used, out + total,
						   len - total);

			if (n == -ENOBUFS) {
				if (!st->pend && !(st->pend = malloc(ss->mi->max_payload)))
					return xpo_fail(xs, -ENOMEM);
				n = ss_reader_feed(&st->rd, st->rbuf + st->roff,
						   st->rlen - st->roff, &used, st->pend,
						   ss->mi->max_payload);
				if (n < 0)
					return reader_error(st, n);
				st->roff += used;
				st->plen = (size_t)n;
				st->poff = 0;
				break; /* to the copy above */
			}
			if (n == -EAGAIN)
				break;
			if (n < 0) {
				/* what was authenticated before stays deliverable */
				reader_error(st, n);
				return total ? (ssize_t)total : xs->err;
			}
			st->roff += used;
			total += (size_t)n;
		}
		if (st->poff < st->plen && total < len)
			continue;
		if (total)
			return (ssize_t)total;
		if (st->eof) {
			if (st->rd.state == SS_RD_SALT && st->roff == st->rlen && !st->rlen) {
				ss->host->log(ss->self, XP_LOG_INFO,
					      "conn %" PRIu64 ": the server closed without a reply "
					      "(wrong %s or method, or the target refused)",
					      st->id, ss->mi->is2022 ? "PSK" : "password");
				ss->host->counter_add(ss->truncated, 1);
				return xpo_fail(xs, -ECONNRESET);
			}
			if (!ss_reader_at_boundary(&st->rd) || st->roff < st->rlen) {
				ss->host->log(ss->self, XP_LOG_WARN,
					      "conn %" PRIu64 ": the server's stream ended inside a "
					      "chunk (truncated): connection reset", st->id);
				ss->host->counter_add(ss->truncated, 1);
				return xpo_fail(xs, -ECONNRESET);
			}
			return 0;
		}
		if (st->roff) {
			memmove(st->rbuf, st->rbuf + st->roff, st->rlen - st->roff);
			st->rlen -= st->roff;
			st->roff = 0;
		}
		ssize_t n = recv(xs->fd, st->rbuf + st->rlen, ss->rbuf_cap - st->rlen, 0);

		if (n > 0) {
			st->rlen += (size_t)n;
			continue;
		}
		if (n == 0) {
			st->eof = true;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			xs->recv_need = XP_IO_READ;
			xs->recv_blocked = true;
			xpo_io_update(xs);
			return -EAGAIN;
		}
		if (errno == ECONNRESET && st->rd.state == SS_RD_SALT && !st->rlen) {
			/* a SIP022 server may answer a request it cannot authenticate with a
			 * reset (its 3.1.3, strategy 1) */
			ss->host->log(ss->self, XP_LOG_INFO,
				      "conn %" PRIu64 ": the server reset the connection without a "
				      "reply (wrong %s or method, or the target refused)", st->id,
				      ss->mi->is2022 ? "PSK" : "password");
			ss->host->counter_add(ss->truncated, 1);
		}
		return xpo_fail(xs, -errno);
	}
}

/* The client's EOF: the shared stream then flushes and shuts down. */
static int ss_shutdown(struct xpo_stream *xs)
{
	struct ss_stream *st = (struct ss_stream *)xs;

	/* 2022: a request without a byte still names its target (with padding) */
	if (st->hdr_pending)
		return request_header(st, NULL, 0);
	return 0;
}

static void stream_free(struct ss_stream *st, int abort)
{
	xpo_release(&st->xs, abort); /* the socket, the watch, the timer, both buffers */
	ss_aead_free(&st->enc);
	ss_reader_free(&st->rd);
	if (st->pend) {
		OPENSSL_cleanse(st->pend, st->ss->mi->max_payload);
		free(st->pend);
	}
	free(st);
}

static void ss_close(struct xpo_stream *xs, int abort)
{
	stream_free((struct ss_stream *)xs, abort);
}

/* ------------------------------------------------------------------------------------------ */
/* connecting                                                                                   */

static void connect_done(struct ss_stream *st, int err, const char *reason)
{
	struct ss *ss = st->ss;
	const struct xp_host *host = ss->host;
	xp_conn_t *conn = st->xs.conn;

	xpo_timer_stop(&st->xs);
	if (err) {
		host->counter_add(ss->connect_failures, 1);
		stream_free(st, 1);
		host->conn_fail(conn, err, reason);
		return;
	}
	st->xs.state = ST_READY;
	/* the salt and target chunk leave with the client's first bytes or the first writable
	 * event, whichever comes first */
	if (st->xs.qoff < st->xs.qlen)
		st->xs.send_need = XP_IO_WRITE;
	xpo_io_update(&st->xs);
	host->counter_add(ss->connects, 1);
	host->conn_ready_stream(conn, &xpo_stream_ops, &st->xs);
}

static void ss_connected(struct xpo_stream *xs, int err)
{
	connect_done((struct ss_stream *)xs, err, "connecting to the shadowsocks server failed");
}

static void ss_timeout(struct xpo_stream *xs)
{
	connect_done((struct ss_stream *)xs, -ETIMEDOUT,
		     "connecting to the shadowsocks server timed out");
}

static const struct xpo_impl ss_impl = {
	.write = ss_write,
	.fin = ss_fin,
	.send = ss_send,
	.recv = ss_recv,
	.shutdown = ss_shutdown,
	.close = ss_close,
	.connected = ss_connected,
	.timeout = ss_timeout,
};

static int ss_tcp_connect(void *inst, xp_conn_t *conn, const struct xp_target *target,
			  void **cctx)
{
	struct ss *ss = inst;
	const struct xp_host *host = ss->host;
	const struct xp_conn_info *ci = host->conn_info(conn);
	uint8_t salt[SS_SALT_MAX], hdr[SS_ADDR_MAX];
	struct ss_stream *st;
	ssize_t hl, w;
	int rc;

	*cctx = NULL;
	hl = ss_addr_encode(&target->addr, target->domain, hdr);
	if (hl < 0)
		return -EAFNOSUPPORT;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	xpo_init(&st->xs, &ss_impl, host);
	st->xs.conn = conn;
	st->ss = ss;
	st->id = ci ? ci->id : 0;
	ss_reader_init(&st->rd, ss->cfg->method, ss->key);
	/* one allocation: the queue, then the read buffer */
	st->xs.q = malloc(WBUF_CAP + ss->rbuf_cap);
	if (!st->xs.q) {
		rc = -ENOMEM;
		goto err;
	}
	st->xs.qcap = WBUF_CAP;
	st->rbuf = st->xs.q + WBUF_CAP;

	/* salt and target chunk first: a crypto failure costs no connection */
	rc = ss_salt(salt, ss->mi->salt_len);
	if (rc)
		goto err;
	rc = ss_aead_init(&st->enc, ss->cfg->method, ss->key, salt);
	if (rc)
		goto err;
	if (ss->mi->is2022) {
		/* the header waits for the first bytes (see request_header) */
		memcpy(st->salt, salt, ss->mi->salt_len);
		ss_reader_set_request_salt(&st->rd, salt);
		memcpy(st->addr, hdr, (size_t)hl);
		st->alen = (size_t)hl;
		st->hdr_pending = true;
		goto connect;
	}
	memcpy(st->xs.q, salt, ss->mi->salt_len);
	w = ss_seal_chunk(&st->enc, hdr, (size_t)hl, st->xs.q + ss->mi->salt_len);
	if (w < 0) {
		rc = (int)w;
		goto err;
	}
	st->xs.qlen = ss->mi->salt_len + (size_t)w;
	st->hdr_fresh = true;
connect:
	rc = xpo_socket(&st->xs, ss->self, host->conn_loop(conn), ss->server.sa.sa_family,
			ss->cfg->tcp_nodelay, ss->cfg->timeout_ms);
	if (rc)
		goto err;
	rc = xpo_connect(&st->xs, &ss->server, ss->server_len);
	if (rc) {
		host->counter_add(ss->connect_failures, 1);
		stream_free(st, 1);
		host->conn_fail(conn, rc, "connecting to the shadowsocks server failed");
		return 0;
	}
	*cctx = st;
	return 0;
err:
	stream_free(st, 1);
	return rc;
}

static void ss_tcp_abort(void *inst, void *cctx)
{
	if (cctx)
		stream_free(cctx, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* UDP: one upstream socket per session, one sealed packet per datagram; with a 2022 method
 * the session is also a SIP022 session (its id, packet counter and the server's windows)     */

struct ss_udp {
	struct ss *ss;
	xp_udp_t *s;
	union xp_sockaddr dst; /* the session's destination: the source for domain replies */
	int fd;
	xp_io_t *io;
	struct ss2022_udp s22; /* 2022 methods */
};

/* one datagram at a time per worker thread */
static __thread uint8_t udp_buf[UDP_BUF + SS_SALT_MAX + SS_ADDR_MAX + SS2022_UDP_OVERHEAD];

static const char *udp2022_why(ssize_t rc)
{
	switch (rc) {
	case -EBADMSG:
		return "failed authentication";
	case SS_E_TYPE:
		return "is not of the server-packet type";
	case SS_E_TIME:
		return "has a timestamp more than 30 s off";
	case SS_E_SALT:
		return "names another client session";
	case -EALREADY:
		return "repeats a packet id or is below the replay window";
	case -EMSGSIZE:
		return "has padding past its end";
	}
	return "could not be decrypted";
}

static void udp_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct ss_udp *u = arg;
	struct ss *ss = u->ss;
	const struct xp_host *host = ss->host;

	for (int i = 0; i < 64; i++) {
		union xp_sockaddr from;
		uint8_t *plain;
		ssize_t n = recv(fd, udp_buf, sizeof(udp_buf), MSG_TRUNC), hl, pl;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				host->udp_fail(u->s, -errno, "the shadowsocks server is unreachable");
			return;
		}
		if ((size_t)n > sizeof(udp_buf)) {
			host->counter_add(ss->udp_dropped, 1);
			continue;
		}
		if (ss->mi->is2022) {
			pl = ss2022_udp_open(&u->s22, udp_buf, (size_t)n, &plain);
			if (pl < 0) {
				host->counter_add(ss->udp_dropped, 1);
				host->log(ss->self, XP_LOG_DEBUG,
					  "UDP: a datagram from the server %s: dropped",
					  udp2022_why(pl));
				continue;
			}
		} else {
			pl = ss_udp_open(ss->cfg->method, ss->key, udp_buf, (size_t)n, &plain);
		}
		if (pl < 0) {
			host->counter_add(ss->udp_dropped, 1);
			host->log(ss->self, XP_LOG_DEBUG,
				  "UDP: a datagram from the server failed authentication (%s): "
				  "dropped", strerror((int)-pl));
			continue;
		}
		hl = ss_addr_decode(plain, (size_t)pl, &from, NULL);
		if (hl < 0) {
			host->counter_add(ss->udp_dropped, 1);
			host->log(ss->self, XP_LOG_DEBUG,
				  "UDP: a datagram from the server has no valid address: dropped");
			continue;
		}
		if (from.sa.sa_family == AF_UNSPEC) {
			in_port_t port = from.in.sin_port;

			from = u->dst;
			from.in.sin_port = port;
		}
		host->counter_add(ss->udp_received, 1);
		host->udp_deliver(u->s, &from, plain + hl, (size_t)(pl - hl));
	}
}

static int ss_udp_open_session(void *inst, xp_udp_t *s, const struct xp_target *target,
			       void **uctx)
{
	struct ss *ss = inst;
	const struct xp_host *host = ss->host;
	struct ss_udp *u;
	int rc;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->ss = ss;
	u->s = s;
	u->dst = target->addr;
	if (ss->mi->is2022) {
		rc = ss2022_udp_init(&u->s22, ss->cfg->method, ss->key);
		if (rc) {
			free(u);
			return rc;
		}
	}
	u->fd = host->upstream_socket(ss->self, ss->server.sa.sa_family, SOCK_DGRAM,
				      IPPROTO_UDP);
	if (u->fd < 0) {
		rc = u->fd;
		ss2022_udp_free(&u->s22);
		free(u);
		return rc;
	}
	if (connect(u->fd, &ss->server.sa, ss->server_len) < 0) {
		rc = -errno;
		goto err;
	}
	u->io = host->io_new(host->udp_loop(s), u->fd, udp_io_cb, u);
	if (!u->io) {
		rc = -ENOMEM;
		goto err;
	}
	host->io_set(u->io, XP_IO_READ);
	*uctx = u;
	return 0;
err:
	close(u->fd);
	ss2022_udp_free(&u->s22);
	free(u);
	return rc;
}

static int ss_udp_send(void *inst, void *uctx, const union xp_sockaddr *dst, const char *domain,
		       const void *buf, size_t len)
{
	struct ss *ss = inst;
	struct ss_udp *u = uctx;
	uint8_t salt[SS_SALT_MAX], hdr[SS_ADDR_MAX];
	ssize_t hl, n;

	if (len > UDP_BUF)
		return -EMSGSIZE;
	hl = ss_addr_encode(dst, domain, hdr);
	if (hl < 0)
		return (int)hl;
	if (ss->mi->is2022)
		n = ss2022_udp_seal(&u->s22, hdr, (size_t)hl, buf, len, udp_buf);
	else if (ss_salt(salt, ss->mi->salt_len))
		return -EIO;
	else
		n = ss_udp_seal(ss->cfg->method, ss->key, salt, hdr, (size_t)hl, buf, len,
				udp_buf);
	if (n < 0)
		return (int)n;
	if (send(u->fd, udp_buf, (size_t)n, 0) < 0)
		return errno == ECONNREFUSED ? -ENOTCONN : -errno;
	ss->host->counter_add(ss->udp_sent, 1);
	return 0;
}

static void ss_udp_close(void *inst, void *uctx)
{
	struct ss_udp *u = uctx;

	u->ss->host->io_free(u->io);
	close(u->fd);
	ss2022_udp_free(&u->s22);
	free(u);
}

/* ------------------------------------------------------------------------------------------ */
/* instances                                                                                    */

/* 2022: the password is the PSK itself, base64, exactly the method's key length (SIP022 2.1:
 * no derivation from a password). The messages never show the value. */
static int psk_load(struct ss *ss, const char *pw)
{
	const struct xp_host *host = ss->host;
	uint8_t buf[64];
	ssize_t n;

	if (strchr(pw, ':')) {
		host->log(ss->self, XP_LOG_ERROR,
			  "password: several ':'-separated PSKs are the identity-header "
			  "extension (SIP023), which this plugin does not implement; give the "
			  "server's one PSK");
		return -EINVAL;
	}
	n = ss2022_psk_decode(pw, buf, sizeof(buf));
	if (n < 0 || (size_t)n != ss->mi->key_len) {
		if (n < 0 && n != -EMSGSIZE)
			host->log(ss->self, XP_LOG_ERROR,
				  "password: %s needs a base64 PSK of %zu bytes (e.g. `openssl rand "
				  "-base64 %zu`), and this is not base64", ss->mi->name,
				  ss->mi->key_len, ss->mi->key_len);
		else
			host->log(ss->self, XP_LOG_ERROR,
				  "password: %s needs a base64 PSK of exactly %zu bytes (e.g. "
				  "`openssl rand -base64 %zu`); this one decodes to %s%zd bytes",
				  ss->mi->name, ss->mi->key_len, ss->mi->key_len,
				  n < 0 ? "more than " : "", n < 0 ? (ssize_t)sizeof(buf) : n);
		OPENSSL_cleanse(buf, sizeof(buf));
		return -EINVAL;
	}
	memcpy(ss->key, buf, ss->mi->key_len);
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

static int ss_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			   const void *config, void **inst)
{
	const struct ss_cfg *cfg = config;
	struct ss *ss;
	int rc;

	ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	ss->host = host;
	ss->self = self;
	ss->cfg = cfg;
	ss->mi = ss_method_info(cfg->method);
	if (!ss->mi || !cfg->password || !*cfg->password) {
		host->log(self, XP_LOG_ERROR, "password: must not be empty");
		rc = -EINVAL;
		goto err;
	}
	rc = xpo_resolve(cfg->server, &ss->server, &ss->server_len, NULL, 0);
	if (rc) {
		host->log(self, XP_LOG_ERROR, "server \"%s\": cannot resolve it", cfg->server);
		goto err;
	}
	if (ss->mi->is2022) {
		rc = psk_load(ss, cfg->password);
		if (rc)
			goto err;
		ss->rbuf_cap = RBUF2022_CAP;
	} else {
		rc = ss_password_key(cfg->password, ss->key, ss->mi->key_len);
		if (rc) {
			host->log(self, XP_LOG_ERROR, "password: cannot derive the key (%s)",
				  strerror(-rc));
			goto err;
		}
		ss->rbuf_cap = RBUF_CAP;
	}
	ss->connects = host->counter_new(self, "connects", "connections to the server made");
	ss->connect_failures = host->counter_new(self, "connect_failures",
						 "connections to the server that failed");
	ss->auth_failures = host->counter_new(self, "auth_failures",
					      "server chunks that failed authentication");
	ss->proto_errors = host->counter_new(self, "protocol_errors",
					     "bad lengths or crypto failures from the server");
	ss->truncated = host->counter_new(self, "truncated",
					  "server streams that ended early or inside a chunk");
	ss->header_rejects = host->counter_new(self, "header_rejects",
					       "2022 response headers that authenticated but "
					       "failed their checks (type, timestamp, request salt)");
	ss->udp_sent = host->counter_new(self, "udp_sent", "datagrams sent to the server");
	ss->udp_received = host->counter_new(self, "udp_received",
					     "datagrams from the server delivered");
	ss->udp_dropped = host->counter_new(self, "udp_dropped",
					    "datagrams from the server dropped (bad tag or header)");
	if (!ss->connects || !ss->connect_failures || !ss->auth_failures || !ss->proto_errors ||
	    !ss->truncated || !ss->header_rejects || !ss->udp_sent || !ss->udp_received ||
	    !ss->udp_dropped) {
		rc = -ENOMEM;
		goto err;
	}
	host->log(self, XP_LOG_DEBUG, "server %s, method %s", cfg->server, ss->mi->name);
	*inst = ss;
	return 0;
err:
	OPENSSL_cleanse(ss->key, sizeof(ss->key));
	free(ss);
	return rc;
}

static void ss_instance_free(void *inst)
{
	struct ss *ss = inst;

	OPENSSL_cleanse(ss->key, sizeof(ss->key));
	free(ss);
}

static const struct xp_outbound_ops ss_ops = {
	.size = sizeof(struct xp_outbound_ops),
	.caps = XP_OUTBOUND_TCP | XP_OUTBOUND_UDP,
	.tcp_connect = ss_tcp_connect,
	.tcp_abort = ss_tcp_abort,
	.udp_open = ss_udp_open_session,
	.udp_send = ss_udp_send,
	.udp_close = ss_udp_close,
};

static const struct xp_plugin_desc ss_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "shadowsocks",
	.version = "1.0",
	.summary = "shadowsocks AEAD (aes-*-gcm, chacha20-ietf-poly1305) and 2022 (2022-blake3-*), "
		   "TCP+UDP",
	.kinds = XP_KIND_OUTBOUND,
	.option_size = sizeof(struct xp_option),
	.options = ss_options,
	.config_size = sizeof(struct ss_cfg),
	.instance_new = ss_instance_new,
	.instance_free = ss_instance_free,
	.outbound = &ss_ops,
};

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	/* UDP ops and the udp_* host functions are 1.1 */
	if ((host_abi >> 16) != XP_PLUGIN_ABI_MAJOR || (host_abi & 0xffff) < 1)
		return NULL;
	return &ss_desc;
}
