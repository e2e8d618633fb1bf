/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * upstream.c - one query's exchange with one upstream server.
 *
 * UDP: a fresh marked socket per exchange (so a fresh random source port, RFC 5452), connected
 * to the server so the kernel already drops datagrams from anyone else. A datagram that does
 * not parse, or whose id or question differs, is counted and ignored: a spoofer must not be able
 * to end the exchange early, the timeout (owned by the caller) does that.
 *
 * TCP, TLS, HTTPS: persistent connections shared by many exchanges, pooled per loop and per
 * upstream (see "Pools" below), each either a marked socket of our own or a dial through an
 * outbound (which hands back a socket or a transforming stream). Every kind is the same pump
 * over two byte buffers: the network side (socket or stream) and, for TLS, OpenSSL
 * with memory BIOs in between, so TLS runs the same way over a socket and over an outbound's
 * stream. On top: the 2-byte length framing (TCP, TLS; RFC 1035 4.2.2, RFC 7858), or an
 * RFC 8484 POST over HTTP/2 (nghttp2's memory interface) or HTTP/1.1 when ALPN picks it.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "upstream.h"

/* ------------------------------------------------------------------------- spec parsing */

static int errf(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -EINVAL;
}

int upstream_parse(const char *text, struct upstream *u, char *err, size_t errlen)
{
	static const struct {
		const char *scheme;
		enum ups_kind kind;
		uint16_t port;
	} kinds[] = {
		{ "udp://", UPS_UDP, 53 },
		{ "tcp://", UPS_TCP, 53 },
		{ "tls://", UPS_TLS, 853 },
		{ "https://", UPS_HTTPS, 443 },
	};
	char buf[600], addr[64], *p, *via, *hash, *slash, *port = NULL, *end;
	size_t i, n;
	unsigned long portnum;

	memset(u, 0, sizeof(*u));
	if (strlen(text) >= sizeof(buf))
		return errf(err, errlen, "\"%.40s...\": too long", text);
	snprintf(u->spec, sizeof(u->spec), "%s", text);
	snprintf(buf, sizeof(buf), "%s", text);
	p = buf;
	while (isspace((unsigned char)*p))
		p++;

	/* " via NAME" at the end */
	via = strstr(p, " via ");
	if (via) {
		*via = 0;
		via += 5;
		while (*via == ' ')
			via++;
		n = strcspn(via, " \t");
		if (!n || via[n + strspn(via + n, " \t")] || n >= sizeof(u->via))
			return errf(err, errlen, "\"%s\": want \"... via OUTBOUND\"", text);
		via[n] = 0;
		snprintf(u->via, sizeof(u->via), "%s", via);
	}
	n = strlen(p);
	while (n && isspace((unsigned char)p[n - 1]))
		p[--n] = 0;

	/* TAG= */
	end = strstr(p, "://");
	hash = strchr(p, '=');
	if (hash && (!end || hash < end)) {
		*hash = 0;
		if (!*p || strlen(p) >= sizeof(u->tag))
			return errf(err, errlen, "\"%s\": bad tag (1-31 characters)", text);
		for (i = 0; p[i]; i++)
			if (!isalnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '_')
				return errf(err, errlen, "\"%s\": bad tag (letters, digits, - and _)",
					    text);
		snprintf(u->tag, sizeof(u->tag), "%s", p);
		p = hash + 1;
	}

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strncasecmp(p, kinds[i].scheme, strlen(kinds[i].scheme)))
			break;
	if (i == sizeof(kinds) / sizeof(kinds[0]))
		return errf(err, errlen, "\"%s\": want udp://, tcp://, tls:// or https://", text);
	u->kind = kinds[i].kind;
	portnum = kinds[i].port;
	p += strlen(kinds[i].scheme);

	hash = strchr(p, '#');
	if (hash) {
		*hash++ = 0;
		if (u->kind != UPS_TLS && u->kind != UPS_HTTPS)
			return errf(err, errlen, "\"%s\": #NAME is for tls:// and https:// only",
				    text);
		if (!*hash || strlen(hash) >= sizeof(u->name))
			return errf(err, errlen, "\"%s\": bad #NAME", text);
		snprintf(u->name, sizeof(u->name), "%s", hash);
	}
	slash = strchr(p, '/');
	if (slash) {
		if (u->kind != UPS_HTTPS)
			return errf(err, errlen, "\"%s\": a /PATH is for https:// only", text);
		if (strlen(slash) >= sizeof(u->path))
			return errf(err, errlen, "\"%s\": path too long", text);
		snprintf(u->path, sizeof(u->path), "%s", slash);
		*slash = 0;
	} else if (u->kind == UPS_HTTPS) {
		snprintf(u->path, sizeof(u->path), "/dns-query");
	}

	if (*p == '[') {
		end = strchr(p, ']');
		if (!end)
			return errf(err, errlen, "\"%s\": missing ]", text);
		*end = 0;
		snprintf(addr, sizeof(addr), "%s", p + 1);
		if (end[1] == ':')
			port = end + 2;
		else if (end[1])
			return errf(err, errlen, "\"%s\": junk after ]", text);
	} else {
		end = strchr(p, ':');
		if (end) {
			*end = 0;
			port = end + 1;
		}
		snprintf(addr, sizeof(addr), "%s", p);
	}
	if (port) {
		portnum = strtoul(port, &end, 10);
		if (!*port || *end || !portnum || portnum > 65535)
			return errf(err, errlen, "\"%s\": bad port", text);
	}
	if (inet_pton(AF_INET, addr, &u->addr.in.sin_addr) == 1) {
		u->addr.in.sin_family = AF_INET;
		u->addr.in.sin_port = htons(portnum);
	} else if (inet_pton(AF_INET6, addr, &u->addr.in6.sin6_addr) == 1) {
		u->addr.in6.sin6_family = AF_INET6;
		u->addr.in6.sin6_port = htons(portnum);
	} else {
		return errf(err, errlen,
			    "\"%s\": the server must be an IP address (a name would need DNS)",
			    text);
	}
	snprintf(u->host, sizeof(u->host), "%s", addr);
	return 0;
}

int ups_rule_parse(const char *text, struct ups_rule **rules, size_t *n, char *err,
		   size_t errlen)
{
	char buf[1024], *comma, *tag, *list, *dom, *save = NULL;
	int exact;
	size_t i;

	if (strlen(text) >= sizeof(buf))
		return errf(err, errlen, "\"%.40s...\": too long", text);
	snprintf(buf, sizeof(buf), "%s", text);
	comma = strrchr(buf, ',');
	if (!comma)
		return errf(err, errlen, "\"%s\": want \"domain-suffix:NAME, TAG\"", text);
	*comma = 0;
	tag = comma + 1;
	while (isspace((unsigned char)*tag))
		tag++;
	for (i = strlen(tag); i && isspace((unsigned char)tag[i - 1]); i--)
		tag[i - 1] = 0;
	if (!*tag || strlen(tag) >= UPS_TAG_MAX)
		return errf(err, errlen, "\"%s\": bad tag", text);
	list = buf;
	while (isspace((unsigned char)*list))
		list++;
	if (!strncmp(list, "domain-suffix:", 14)) {
		exact = 0;
		list += 14;
	} else if (!strncmp(list, "domain:", 7)) {
		exact = 1;
		list += 7;
	} else {
		return errf(err, errlen, "\"%s\": want domain-suffix:NAME or domain:NAME", text);
	}
	if (!list[strspn(list, " \t|")])
		return errf(err, errlen, "\"%s\": no domain", text);
	for (dom = strtok_r(list, "|", &save); dom; dom = strtok_r(NULL, "|", &save)) {
		struct ups_rule *r, *grown;
		size_t len;

		while (isspace((unsigned char)*dom))
			dom++;
		len = strlen(dom);
		while (len && (isspace((unsigned char)dom[len - 1]) || dom[len - 1] == '.'))
			dom[--len] = 0;
		if (*dom == '.')
			dom++, len--;
		if (!len || len > 253)
			return errf(err, errlen, "\"%s\": empty or overlong domain", text);
		grown = realloc(*rules, (*n + 1) * sizeof(**rules));
		if (!grown)
			return -ENOMEM;
		*rules = grown;
		r = &grown[(*n)++];
		memset(r, 0, sizeof(*r));
		r->exact = exact;
		for (i = 0; i <= len; i++)
			r->domain[i] = (char)tolower((unsigned char)dom[i]);
		snprintf(r->tag, sizeof(r->tag), "%s", tag);
	}
	return 0;
}

const char *ups_rule_select(const struct ups_rule *rules, size_t n, const char *name)
{
	size_t i, nl = strlen(name);

	for (i = 0; i < n; i++) {
		size_t dl = strlen(rules[i].domain);

		if (nl == dl && !strcmp(name, rules[i].domain))
			return rules[i].tag;
		if (!rules[i].exact && nl > dl && name[nl - dl - 1] == '.' &&
		    !strcmp(name + nl - dl, rules[i].domain))
			return rules[i].tag;
	}
	return "";
}

/* ---------------------------------------------------------------------------- TLS context */

static int new_session_cb(SSL *ssl, SSL_SESSION *sess);

void *ups_tls_ctx_new(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* sessions to resume are kept per loop and upstream (the pools), not in the context */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
						    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
		    : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "cannot load CA certificates from %s: %s",
			 ca_file ? ca_file : "the system store",
			 ERR_reason_error_string(ERR_get_error()));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void ups_tls_ctx_free(void *ctx)
{
	SSL_CTX_free(ctx);
}

/* ---------------------------------------------------------------------------- exchanges */

#define BUF_MAX (2 * DNS_MAX_MSG + 16384) /* a partial message plus one read, or HTTP headers */
#define PIPE_MAX 64  /* requests in flight (or abandoned, unanswered) on one TCP/TLS connection, or
		      * streams on one HTTP/2 session */
#define H1_QUEUE 4   /* HTTP/1.1: one request at a time, a few more waiting their turn */
#define CONNS_MAX 4  /* connections per upstream and transport on one loop (when pooling) */
#define SEND_LOW 16384 /* write more requests only while less than this waits to be sent */
#define MOVES_MAX 8  /* a request goes to another connection at most this often */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

/* The bytes are followed by a 0 that is not counted, so the HTTP/1.1 header parsing (sscanf,
 * strtol) stops at the end of what came. */
static int buf_add(struct buf *b, const void *data, size_t len)
{
	if (b->len + len > BUF_MAX)
		return -EMSGSIZE;
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		uint8_t *p;

		while (cap < b->len + len + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = 0;
	return 0;
}

static void buf_eat(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	b->p[b->len] = 0;
}

size_t ups_frame_next(const uint8_t *buf, size_t len, size_t *mlen)
{
	if (len < 2)
		return 0;
	*mlen = dns_get16(buf);
	return len - 2 >= *mlen ? 2 + *mlen : 0;
}

/* A circular doubly linked list; a node alone points at itself. */
struct link {
	struct link *prev, *next;
};

#define LINK_ENTRY(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

static void link_init(struct link *l)
{
	l->prev = l->next = l;
}

static int link_empty(const struct link *head)
{
	return head->next == head;
}

static void link_add_tail(struct link *head, struct link *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static void link_del(struct link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	link_init(n);
}

/*
 * Pools. One per loop and instance, found under the instance's lock (once per exchange); all
 * else about a pool and its connections happens on its loop only. A connection (struct conn)
 * carries many exchanges (struct xfer): TCP and TLS pipeline them with distinct ids (RFC 7766
 * 6.2.1.1; answers matched by id and question, in any order), HTTP/2 gives each a stream,
 * HTTP/1.1 sends them one after another on a kept-alive connection.
 *
 * Callbacks never run inside xfer_start: an exchange joining a connection is written when the
 * connection's kick timer (or its socket) next fires. Finished exchanges are collected on the
 * connection's done list during a pump and called back after it, so a callback that starts or
 * frees exchanges (on this connection too) never meets a half-updated connection.
 */
struct ups_pools {
	pthread_mutex_t lock;
	struct pool *list;
};

struct pool {
	struct pool *next;
	xp_loop_t *loop;
	const struct xp_host *host; /* static: still valid while a teardown is pending */
	const struct ups_ctx *ctx;  /* the instance's: only while !dying */
	struct link conns;
	struct sess *sessions; /* the newest TLS session of each upstream, to resume */
	/* Held by every callback the loop makes into the pool (socket, timers, dial), and by
	 * the teardown while it sets `dying`: once that is set no callback is still inside,
	 * and the ones that come later return at once, so nothing touches the instance after
	 * instance_free. Recursive: a dial may report back from inside another callback. */
	pthread_mutex_t lock;
	int dying;
};

struct sess {
	struct sess *next;
	const struct upstream *u;
	enum ups_kind kind;
	SSL_SESSION *s;
};

struct conn {
	struct link link; /* in pool->conns */
	struct pool *pool;
	const struct ups_ctx *ctx;
	const struct upstream *u;
	enum ups_kind kind;

	int fd;
	xp_io_t *io;
	xp_timer_t *kick, *idle;
	uint8_t connecting, eof, in_pump, again, dead, draining, starting, idle_armed;
	int early_err; /* a dial failure, reported by the next pump */
	xp_dial_t *dial;
	const struct xp_stream_ops *sops;
	void *stream;

	struct buf netout, appin;
	SSL *ssl;
	BIO *rbio, *wbio;
	uint8_t hs_done, proto_started, h1, h1_skip, tls_failed;
	nghttp2_session *h2;

	struct link xfers; /* joined: waiting to be written, or in flight */
	struct link done;  /* finished, not yet called back */
	unsigned n_live;
	uint16_t ghosts[PIPE_MAX]; /* ids of abandoned requests whose answers may still come */
	unsigned n_ghosts;
	uint64_t answers; /* answers this connection carried */
};

struct xfer {
	const struct ups_ctx *ctx;
	const struct upstream *u;
	xp_loop_t *loop;
	enum ups_kind kind; /* UDP becomes TCP after a truncated answer */
	uint16_t id;
	struct dns_question q;
	uint8_t *req;
	size_t req_len;
	xfer_done_fn done;
	void *arg;

	/* UDP */
	int fd;
	xp_io_t *io;
	uint8_t finished;

	/* streams */
	struct conn *conn;
	struct link link; /* in conn->xfers or conn->done */
	uint8_t sent, in_done, moves, retried; /* retried: once after a close without progress */
	uint64_t answers_at_send; /* conn->answers when it was written */
	int err;		  /* the result, once on the done list */
	int32_t stream_id;
	size_t body_sent;
	int status;
	struct buf body;

	uint8_t ans[DNS_MAX_MSG];
	size_t ans_len;
};

/* Validate a candidate answer. 0: it is the answer; -EBADMSG: counted. */
static int check_answer(struct xfer *x, const uint8_t *msg, size_t len)
{
	const struct xp_host *host = x->ctx->host;
	struct dns_msg m;
	int rc;

	rc = dns_parse(msg, len, &m, NULL, NULL);
	if (rc) {
		host->counter_add(x->ctx->malformed, 1);
		host->log(x->ctx->self, XP_LOG_DEBUG, "upstream %s: malformed answer (%s)",
			  x->u->spec, dns_strerror(rc));
		return -EBADMSG;
	}
	if (m.id != x->id || !(m.flags & DNS_F_QR) || !dns_question_match(&m.q, &x->q)) {
		host->counter_add(x->ctx->mismatched, 1);
		host->log(x->ctx->self, XP_LOG_DEBUG,
			  "upstream %s: answer does not match the query (id or question)",
			  x->u->spec);
		return -EBADMSG;
	}
	memcpy(x->ans, msg, len);
	x->ans_len = len;
	return 0;
}

/* UDP ------------------------------------------------------------------------------------- */

static void udp_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct xfer *x = arg;
	uint8_t buf[DNS_MAX_MSG];
	ssize_t n;

	for (;;) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			/* ICMP port or host unreachable: fail over now, not at the timeout */
			n = -errno;
			x->ctx->host->io_set(x->io, 0);
			x->finished = 1;
			x->done(x->arg, x, (int)n, NULL, 0);
			return;
		}
		if (!check_answer(x, buf, (size_t)n)) {
			x->ctx->host->io_set(x->io, 0);
			x->finished = 1;
			x->done(x->arg, x, 0, x->ans, x->ans_len);
			return;
		}
	}
}

static int udp_start(struct xfer *x)
{
	const struct xp_host *host = x->ctx->host;
	int family = x->u->addr.sa.sa_family;
	socklen_t alen = family == AF_INET ? sizeof(struct sockaddr_in)
					   : sizeof(struct sockaddr_in6);

	x->fd = host->upstream_socket(x->ctx->self, family, SOCK_DGRAM, IPPROTO_UDP);
	if (x->fd < 0)
		return x->fd;
	if (connect(x->fd, &x->u->addr.sa, alen) || send(x->fd, x->req, x->req_len, 0) < 0)
		return -errno;
	x->io = host->io_new(x->loop, x->fd, udp_io_cb, x);
	if (!x->io)
		return -ENOMEM;
	host->io_set(x->io, XP_IO_READ);
	return 0;
}

/* Connections ------------------------------------------------------------------------------ */

static void conn_pump(struct conn *c);
static void conn_destroy(struct conn *c, int loop_alive);
static int place(struct xfer *x);

/* A callback from the loop enters the pool: 1, or 0 when the pool is dying (not entered). */
static int pool_enter(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	if (!p->dying)
		return 1;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void pool_leave(struct pool *p)
{
	pthread_mutex_unlock(&p->lock);
}

static void conn_close_net(struct conn *c, int loop_alive)
{
	const struct xp_host *host = c->pool->host;

	if (loop_alive) {
		if (c->io)
			host->io_free(c->io);
		if (c->kick)
			host->timer_free(c->kick);
		if (c->idle)
			host->timer_free(c->idle);
		if (c->dial)
			host->dial_close(c->dial);
	}
	c->io = NULL;
	c->kick = c->idle = NULL;
	c->dial = NULL;
	c->sops = NULL;
	c->stream = NULL;
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

/* Free a connection nobody is on (no joined exchange, none waiting for its callback). With
 * !loop_alive (a teardown whose loop is gone) the loop's watchers are left alone. */
static void conn_destroy(struct conn *c, int loop_alive)
{
	link_del(&c->link);
	if (c->ssl && c->hs_done && !c->tls_failed) {
		/* close_notify: an orderly end (RFC 8446 6.1), which also keeps the session
		 * resumable; OpenSSL spoils the session of a connection freed without it */
		uint8_t tmp[256];
		int r;

		SSL_shutdown(c->ssl);
		r = BIO_read(c->wbio, tmp, sizeof(tmp));
		if (r > 0 && loop_alive && c->fd >= 0 && !c->connecting)
			(void)!send(c->fd, tmp, (size_t)r, MSG_NOSIGNAL | MSG_DONTWAIT);
		else if (r > 0 && loop_alive && c->sops)
			(void)!c->sops->send(c->stream, tmp, (size_t)r);
	}
	conn_close_net(c, loop_alive);
	if (c->h2)
		nghttp2_session_del(c->h2);
	SSL_free(c->ssl); /* frees the BIOs */
	free(c->netout.p);
	free(c->appin.p);
	free(c);
}

/* Room for another exchange: 0 when none. */
static unsigned conn_room(const struct conn *c)
{
	unsigned used = c->n_live + c->n_ghosts, cap = PIPE_MAX;

	if (c->dead || c->draining || c->eof)
		return 0;
	if (c->kind == UPS_HTTPS) {
		if (c->h1)
			cap = H1_QUEUE;
		else if (c->h2) {
			uint32_t m = nghttp2_session_get_remote_settings(
				c->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);

			cap = m < PIPE_MAX ? m : PIPE_MAX;
		}
		used = c->n_live;
	}
	return used < cap ? cap - used : 0;
}

static void finish_x(struct conn *c, struct xfer *x, int err)
{
	link_del(&x->link);
	c->n_live--;
	x->err = err;
	x->in_done = 1;
	link_add_tail(&c->done, &x->link);
}

/* The request has to be written again, on another connection. */
static void xfer_reset(struct xfer *x)
{
	x->sent = 0;
	x->stream_id = 0;
	x->body_sent = 0;
	x->status = 0;
	x->body.len = 0;
}

/* x left c (which is closing, or refused it) without an answer: write it on another
 * connection when `move` (and it has not moved too often), else it fails with err. */
static void move_or_fail(struct conn *c, struct xfer *x, int err, int move)
{
	if (move && x->moves < MOVES_MAX) {
		link_del(&x->link);
		c->n_live--;
		x->moves++;
		if (x->sent)
			c->ctx->host->counter_add(c->ctx->retries, 1);
		xfer_reset(x);
		x->conn = NULL;
		if (!place(x))
			return;
		/* nowhere to go: it fails on c, called back after c's pump */
		x->conn = c;
		c->n_live++;
		link_add_tail(&c->xfers, &x->link);
	}
	finish_x(c, x, err);
}

/* The connection cannot go on. When the server closed a connection that had been answering
 * (an idle close racing our request, RFC 7766 6.2.3, or a server that answers a few per
 * connection), its exchanges move to another connection: those never written always, written
 * ones once when nothing was answered since they were written, more often while it made
 * progress. Any other failure (refused, TLS, garbage, a server closing before answering
 * anything) is the upstream's, for every exchange on it. */
static void conn_fail(struct conn *c, int err)
{
	int closed = err == -ECONNRESET || err == -EPIPE || err == -ECONNABORTED;

	c->dead = 1;
	while (!link_empty(&c->xfers)) {
		struct xfer *x = LINK_ENTRY(c->xfers.next, struct xfer, link);
		int progress = c->answers > x->answers_at_send;
		int move = closed && c->answers && (!x->sent || progress || !x->retried);

		if (x->sent && !progress)
			x->retried = 1;
		move_or_fail(c, x, err, move);
	}
}

static void deliver(struct conn *c)
{
	while (!link_empty(&c->done)) {
		struct xfer *x = LINK_ENTRY(c->done.next, struct xfer, link);

		link_del(&x->link);
		x->in_done = 0;
		x->conn = NULL;
		x->finished = 1;
		x->done(x->arg, x, x->err, x->err ? NULL : x->ans, x->err ? 0 : x->ans_len);
	}
}

static void idle_cb(xp_timer_t *t, void *arg)
{
	struct conn *c = arg;
	struct pool *p = c->pool;

	if (!pool_enter(p))
		return;
	c->idle_armed = 0;
	if (!c->n_live && !c->in_pump)
		conn_destroy(c, 1);
	pool_leave(p);
}

/* After a pump, or after an exchange left: close, or wait for the right events. */
static void conn_settle(struct conn *c)
{
	const struct xp_host *host = c->pool->host;

	if (c->in_pump)
		return;
	if (!c->n_live && (c->dead || c->draining || c->eof || !c->ctx->idle_ms)) {
		conn_destroy(c, 1);
		return;
	}
	if (c->io)
		host->io_set(c->io,
			     XP_IO_READ | (c->netout.len || c->connecting ? XP_IO_WRITE : 0));
	if (!c->n_live && !c->idle_armed && c->idle) {
		host->timer_set(c->idle, c->ctx->idle_ms, 0);
		c->idle_armed = 1;
	}
}

static void kick(struct conn *c)
{
	if (c->in_pump)
		c->again = 1;
	else if (c->kick)
		c->pool->host->timer_set(c->kick, 0, 0);
}

static void xfer_detach(struct xfer *x)
{
	struct conn *c = x->conn;

	x->conn = NULL;
	link_del(&x->link);
	if (x->in_done) {
		x->in_done = 0;
		return;
	}
	c->n_live--;
	if (x->sent) {
		if (c->h2) {
			/* the answer is not wanted: the stream goes, the session stays */
			nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, x->stream_id,
						  NGHTTP2_CANCEL);
			kick(c);
		} else if (c->h1) {
			c->h1_skip++; /* its response still comes first */
		} else if (c->n_ghosts < PIPE_MAX) {
			/* its id stays taken until the answer comes (dropped quietly then) */
			c->ghosts[c->n_ghosts++] = x->id;
		} else {
			c->draining = 1;
		}
		/* given up (mostly the caller's timeout) while nothing came back on the
		 * connection: it may be dead without a word (a NAT mapping gone, a server
		 * wedged), so new queries go to a fresh one; the others on it still finish */
		if (c->answers == x->answers_at_send)
			c->draining = 1;
	}
	conn_settle(c);
}

void xfer_free(struct xfer *x)
{
	if (!x)
		return;
	if (x->conn)
		xfer_detach(x);
	if (x->io)
		x->ctx->host->io_free(x->io);
	if (x->fd >= 0)
		close(x->fd);
	free(x->body.p);
	free(x->req);
	free(x);
}

/* Plaintext for the server. */
static int app_write(struct conn *c, const void *data, size_t len)
{
	if (!c->ssl)
		return buf_add(&c->netout, data, len);
	/* a memory BIO takes everything */
	if (len && SSL_write(c->ssl, data, (int)len) != (int)len)
		return -EPROTO;
	return 0;
}

static size_t waiting_out(const struct conn *c)
{
	return c->netout.len + (c->ssl ? BIO_ctrl_pending(c->wbio) : 0);
}

static struct xfer *by_stream(struct conn *c, int32_t stream_id)
{
	struct link *l;

	for (l = c->xfers.next; l != &c->xfers; l = l->next) {
		struct xfer *x = LINK_ENTRY(l, struct xfer, link);

		if (x->sent && x->stream_id == stream_id)
			return x;
	}
	return NULL;
}

static ssize_t h2_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
			  void *user)
{
	return NGHTTP2_ERR_CALLBACK_FAILURE; /* unused: the memory interface is used instead */
}

static int h2_header_cb(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
			size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			void *user)
{
	struct xfer *x;

	if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7 || memcmp(name, ":status", 7))
		return 0;
	x = by_stream(user, frame->hd.stream_id);
	if (x)
		x->status = atoi((const char *)value);
	return 0;
}

static int h2_data_cb(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
		      size_t len, void *user)
{
	struct xfer *x = by_stream(user, stream_id);

	if (x && buf_add(&x->body, data, len))
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
	return 0;
}

static int h2_frame_cb(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
	struct conn *c = user;

	if (frame->hd.type == NGHTTP2_GOAWAY)
		c->draining = 1; /* no new streams; the ones it will still answer finish */
	return 0;
}

static int h2_close_cb(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *user)
{
	struct conn *c = user;
	struct xfer *x = by_stream(c, stream_id);

	if (!x)
		return 0;
	if (error_code == NGHTTP2_REFUSED_STREAM) {
		/* never processed (RFC 9113 8.7, also the streams a GOAWAY cut off) */
		c->draining = 1;
		move_or_fail(c, x, -ECONNRESET, 1);
		return 0;
	}
	if (error_code || x->status != 200) {
		c->ctx->host->log(c->ctx->self, XP_LOG_DEBUG,
				  "upstream %s: HTTP status %d, stream error %u", c->u->spec,
				  x->status, error_code);
		finish_x(c, x, -EPROTO);
		return 0;
	}
	if (check_answer(x, x->body.p, x->body.len)) {
		finish_x(c, x, -EBADMSG);
		return 0;
	}
	c->answers++;
	finish_x(c, x, 0);
	return 0;
}

static ssize_t h2_body_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t len,
			  uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct xfer *x = by_stream(user, stream_id);
	size_t n;

	if (!x)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* abandoned: reset the stream */
	n = x->req_len - x->body_sent;
	if (n > len)
		n = len;
	memcpy(buf, x->req + x->body_sent, n);
	x->body_sent += n;
	if (x->body_sent == x->req_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

#define NV(n, v)                                                                                 \
	{ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

static const char *authority(const struct upstream *u, char *buf, size_t cap)
{
	const char *h = u->name[0] ? u->name : u->host;
	int v6 = !u->name[0] && u->addr.sa.sa_family == AF_INET6;
	uint16_t port = ntohs(u->addr.in.sin_port); /* same offset in sockaddr_in6 */

	if (port == 443)
		snprintf(buf, cap, v6 ? "[%s]" : "%s", h);
	else
		snprintf(buf, cap, v6 ? "[%s]:%u" : "%s:%u", h, port);
	return buf;
}

static int h2_start(struct conn *c)
{
	nghttp2_session_callbacks *cbs;
	int rc;

	if (nghttp2_session_callbacks_new(&cbs))
		return -ENOMEM;
	nghttp2_session_callbacks_set_send_callback(cbs, h2_send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_data_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_frame_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_close_cb);
	rc = nghttp2_session_client_new(&c->h2, cbs, c);
	nghttp2_session_callbacks_del(cbs);
	if (rc)
		return -ENOMEM;
	return nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0) ? -EPROTO : 0;
}

/* Write one request. 0, or -errno for the connection. */
static int write_request(struct conn *c, struct xfer *x)
{
	char auth[300], clen[16];
	uint8_t pfx[2];
	int rc;

	x->sent = 1;
	x->answers_at_send = c->answers;
	if (c->kind == UPS_TCP || c->kind == UPS_TLS) {
		dns_put16(pfx, (uint16_t)x->req_len);
		rc = app_write(c, pfx, 2);
		return rc ? rc : app_write(c, x->req, x->req_len);
	}
	authority(c->u, auth, sizeof(auth));
	snprintf(clen, sizeof(clen), "%zu", x->req_len);
	if (c->h1) {
		char head[1024];
		int n = snprintf(head, sizeof(head),
				 "POST %s HTTP/1.1\r\nHost: %s\r\n"
				 "Content-Type: application/dns-message\r\n"
				 "Accept: application/dns-message\r\nContent-Length: %s\r\n\r\n",
				 c->u->path, auth, clen);

		rc = app_write(c, head, (size_t)n);
		return rc ? rc : app_write(c, x->req, x->req_len);
	}

	nghttp2_data_provider prd = { .read_callback = h2_body_cb };
	const nghttp2_nv nva[] = {
		NV(":method", "POST"),
		NV(":scheme", "https"),
		NV(":authority", auth),
		NV(":path", c->u->path),
		NV("content-type", "application/dns-message"),
		NV("accept", "application/dns-message"),
		NV("content-length", clen),
	};

	x->stream_id = nghttp2_submit_request(c->h2, NULL, nva, sizeof(nva) / sizeof(nva[0]),
					      &prd, NULL);
	if (x->stream_id < 0) {
		/* the session takes no more streams (GOAWAY, ids used up): elsewhere */
		c->draining = 1;
		x->stream_id = 0;
		move_or_fail(c, x, -EPROTO, 1);
	}
	return 0;
}

/* Write what the connection has room for: every waiting request over TCP, TLS and HTTP/2 (as
 * long as the output stays short), the next one when an HTTP/1.1 response is done. */
static int write_requests(struct conn *c)
{
	struct link *l, *next;
	int rc;

	for (l = c->xfers.next; l != &c->xfers; l = next) {
		struct xfer *x = LINK_ENTRY(l, struct xfer, link);

		next = l->next; /* write_request may move x to another connection */
		if (x->sent) {
			if (c->h1)
				return 0;
			continue;
		}
		if (c->h1 && c->h1_skip)
			return 0;
		if (waiting_out(c) >= SEND_LOW)
			return 0;
		rc = write_request(c, x);
		if (rc)
			return rc;
		if (c->h1)
			return 0;
	}
	return 0;
}

/* An HTTP/1.1 response in appin: its length (answer checked into the head exchange, or
 * discarded for an abandoned one), 0 need more, -errno. */
static int h1_parse(struct conn *c)
{
	const char *head = (const char *)c->appin.p, *end, *line;
	long clen = -1;
	size_t hlen, total;
	int status;
	struct xfer *x;

	if (!c->appin.len)
		return 0;
	end = memmem(head, c->appin.len, "\r\n\r\n", 4);
	if (!end)
		return c->eof ? -EPROTO : 0;
	hlen = (size_t)(end - head) + 4;
	if (sscanf(head, "HTTP/1.%*d %d", &status) != 1)
		return -EPROTO;
	for (line = memmem(head, hlen, "\r\n", 2); line && line < end;
	     line = memmem(line + 2, (size_t)(end - line), "\r\n", 2)) {
		if (!strncasecmp(line + 2, "content-length:", 15))
			clen = strtol(line + 17, NULL, 10);
		else if (!strncasecmp(line + 2, "transfer-encoding:", 18))
			return -EPROTO; /* chunked DNS answers: not supported */
	}
	if (clen < 0 ? !c->eof : c->appin.len - hlen < (size_t)clen)
		return c->eof ? -EPROTO : 0;
	if (clen < 0) {
		/* delimited by the close: this connection carries no more */
		clen = (long)(c->appin.len - hlen);
		c->draining = 1;
	}
	if (clen > DNS_MAX_MSG)
		return -EPROTO;
	total = hlen + (size_t)clen;
	if (c->h1_skip) {
		c->h1_skip--;
		return (int)total;
	}
	if (link_empty(&c->xfers))
		return -EPROTO; /* a response nobody asked for */
	x = LINK_ENTRY(c->xfers.next, struct xfer, link);
	if (!x->sent)
		return -EPROTO;
	if (status != 200) {
		c->ctx->host->log(c->ctx->self, XP_LOG_DEBUG, "upstream %s: HTTP status %d",
				  c->u->spec, status);
		finish_x(c, x, -EPROTO);
	} else if (check_answer(x, c->appin.p + hlen, (size_t)clen)) {
		finish_x(c, x, -EBADMSG);
	} else {
		c->answers++;
		finish_x(c, x, 0);
	}
	return (int)total;
}

/* One message off a TCP or TLS connection: the answer of the exchange in flight with its id
 * (a failure of that exchange when it does not parse or match its question, as over a
 * connection of its own), an abandoned exchange's late answer (dropped), or a stray one
 * (counted and dropped; the others on the connection go on). */
static void dispatch(struct conn *c, const uint8_t *msg, size_t len)
{
	const struct xp_host *host = c->ctx->host;
	struct link *l;
	uint16_t id;
	unsigned i;

	if (len >= 2) {
		id = dns_get16(msg);
		for (l = c->xfers.next; l != &c->xfers; l = l->next) {
			struct xfer *x = LINK_ENTRY(l, struct xfer, link);

			if (!x->sent || x->id != id)
				continue;
			if (check_answer(x, msg, len)) {
				finish_x(c, x, -EBADMSG);
				return;
			}
			c->answers++;
			finish_x(c, x, 0);
			return;
		}
		for (i = 0; i < c->n_ghosts; i++) {
			if (c->ghosts[i] == id) {
				c->ghosts[i] = c->ghosts[--c->n_ghosts];
				c->answers++;
				return;
			}
		}
	}
	if (len < DNS_HDR_LEN || dns_parse(msg, len, NULL, NULL, NULL))
		host->counter_add(c->ctx->malformed, 1);
	else
		host->counter_add(c->ctx->mismatched, 1);
	host->log(c->ctx->self, XP_LOG_DEBUG,
		  "upstream %s: an answer no query on the connection asked for, dropped",
		  c->u->spec);
}

/* Plaintext from the server. 0 or -errno (for the connection). */
static int app_feed(struct conn *c, const uint8_t *data, size_t len)
{
	size_t n, mlen;
	int rc;

	if (c->h2) {
		ssize_t r = nghttp2_session_mem_recv(c->h2, data, len);

		return r < 0 ? -EPROTO : 0;
	}
	if (!c->proto_started)
		return -EPROTO; /* a server talking before the handshake or request: garbage */
	rc = buf_add(&c->appin, data, len);
	if (rc)
		return rc;
	if (c->h1) {
		while ((rc = h1_parse(c)) > 0) {
			buf_eat(&c->appin, (size_t)rc);
			c->again = 1; /* the next request may go */
		}
		return rc;
	}
	while ((n = ups_frame_next(c->appin.p, c->appin.len, &mlen)) > 0) {
		dispatch(c, c->appin.p + 2, mlen);
		buf_eat(&c->appin, n);
	}
	return 0;
}

static ssize_t net_send(struct conn *c, const void *buf, size_t len)
{
	ssize_t n;

	if (c->sops)
		return c->sops->send(c->stream, buf, len);
	n = send(c->fd, buf, len, MSG_NOSIGNAL);
	return n < 0 ? -errno : n;
}

static ssize_t net_recv(struct conn *c, void *buf, size_t len)
{
	ssize_t n;

	if (c->sops)
		return c->sops->recv(c->stream, buf, len);
	n = recv(c->fd, buf, len, 0);
	return n < 0 ? -errno : n;
}

static int tls_error(struct conn *c, int r)
{
	int e = SSL_get_error(c->ssl, r);
	long v;

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN) {
		c->eof = 1;
		return 0;
	}
	c->tls_failed = 1;
	v = SSL_get_verify_result(c->ssl);
	c->ctx->host->log(c->ctx->self, XP_LOG_WARN, "upstream %s: TLS failed: %s", c->u->spec,
			  v != X509_V_OK ? X509_verify_cert_error_string(v)
					 : ERR_reason_error_string(ERR_peek_last_error()));
	ERR_clear_error();
	return -EPROTO;
}

/* One round: 0 fine so far, -errno the connection failed. Sets c->again when it made
 * progress that may allow more. */
static int step(struct conn *c)
{
	uint8_t tmp[16384];
	ssize_t n;
	int rc, r;

	if (c->early_err)
		return c->early_err;
	if (c->fd < 0 && !c->sops)
		return 0; /* the dial is still on its way */
	if (c->connecting) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		struct sockaddr_storage peer;

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr)
			return -soerr;
		sl = sizeof(peer);
		if (getpeername(c->fd, (struct sockaddr *)&peer, &sl) < 0)
			return 0;
		c->connecting = 0;
	}
	if (c->ssl && !c->hs_done) {
		r = SSL_do_handshake(c->ssl);
		if (r == 1) {
			c->hs_done = 1;
			if (SSL_session_reused(c->ssl) && c->ctx->resumed)
				c->ctx->host->counter_add(c->ctx->resumed, 1);
			if (c->kind == UPS_HTTPS) {
				const unsigned char *alpn;
				unsigned alen;

				SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
				c->h1 = !(alen == 2 && !memcmp(alpn, "h2", 2));
			}
		} else if ((rc = tls_error(c, r))) {
			return rc;
		}
	}
	if ((!c->ssl || c->hs_done) && !c->proto_started) {
		c->proto_started = 1;
		if (c->kind == UPS_HTTPS && !c->h1) {
			rc = h2_start(c);
			if (rc)
				return rc;
		}
	}
	if (c->proto_started) {
		rc = write_requests(c);
		if (rc)
			return rc;
	}
	if (c->h2) {
		const uint8_t *out;

		while ((n = nghttp2_session_mem_send(c->h2, &out)) > 0) {
			rc = app_write(c, out, (size_t)n);
			if (rc)
				return rc;
		}
		if (n < 0)
			return -EPROTO;
	}
	if (c->ssl) {
		while ((r = BIO_read(c->wbio, tmp, sizeof(tmp))) > 0) {
			rc = buf_add(&c->netout, tmp, (size_t)r);
			if (rc)
				return rc;
		}
	}
	while (c->netout.len) {
		n = net_send(c, c->netout.p, c->netout.len);
		if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR)
			break;
		if (n < 0)
			return (int)n;
		buf_eat(&c->netout, (size_t)n);
		c->again = 1; /* room for more requests */
	}
	while (!c->eof) {
		n = net_recv(c, tmp, sizeof(tmp));
		if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR)
			break;
		if (n < 0)
			return (int)n;
		if (!n) {
			c->eof = 1;
			break;
		}
		c->again = 1;
		if (c->ssl) {
			if (BIO_write(c->rbio, tmp, (int)n) != n)
				return -ENOMEM;
			continue;
		}
		rc = app_feed(c, tmp, (size_t)n);
		if (rc)
			return rc;
	}
	if (c->ssl && c->hs_done) {
		for (;;) {
			r = SSL_read(c->ssl, tmp, sizeof(tmp));
			if (r <= 0) {
				rc = tls_error(c, r);
				if (rc)
					return rc;
				break;
			}
			rc = app_feed(c, tmp, (size_t)r);
			if (rc)
				return rc;
		}
	}
	if (c->ssl && BIO_ctrl_pending(c->wbio))
		c->again = 1;
	if (c->h2 && nghttp2_session_want_write(c->h2))
		c->again = 1;
	if (c->eof) {
		if (c->h1) {
			while ((rc = h1_parse(c)) > 0)
				buf_eat(&c->appin, (size_t)rc);
			if (rc)
				return rc;
		}
		return -ECONNRESET;
	}
	return 0;
}

static void conn_pump(struct conn *c)
{
	int rc;

	if (c->in_pump) {
		c->again = 1;
		return;
	}
	if (c->dead)
		return;
	c->in_pump = 1;
	for (;;) {
		do {
			c->again = 0;
			rc = step(c);
		} while (!rc && c->again);
		if (rc) {
			if (rc != -ECONNRESET || c->n_live)
				c->ctx->host->log(c->ctx->self, XP_LOG_DEBUG,
						  "upstream %s: connection closed: %s", c->u->spec,
						  strerror(-rc));
			conn_fail(c, rc);
		}
		if (link_empty(&c->done))
			break;
		deliver(c); /* may start exchanges here (again) or free them */
		if (c->dead || !c->again)
			break;
	}
	c->in_pump = 0;
	conn_settle(c);
}

static void conn_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	struct conn *c = arg;
	struct pool *p = c->pool;

	if (!pool_enter(p)) {
		p->host->io_set(io, 0); /* quiet until the teardown runs here */
		return;
	}
	conn_pump(c);
	pool_leave(p);
}

static void kick_cb(xp_timer_t *t, void *arg)
{
	struct conn *c = arg;
	struct pool *p = c->pool;

	if (!pool_enter(p))
		return;
	conn_pump(c);
	pool_leave(p);
}

static void dial_wake(void *arg, unsigned what)
{
	struct conn *c = arg;
	struct pool *p = c->pool;

	if (!pool_enter(p))
		return;
	conn_pump(c);
	pool_leave(p);
}

static int attach_fd(struct conn *c, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	c->fd = fd;
	/* a dial's socket may come blocking; the pump must never block the loop */
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	c->io = c->pool->host->io_new(c->pool->loop, fd, conn_io_cb, c);
	return c->io ? 0 : -ENOMEM;
}

static void dial_done(void *arg, xp_dial_t *d, int err, int fd,
		      const struct xp_stream_ops *ops, void *stream)
{
	struct conn *c = arg;
	struct pool *p = c->pool;

	if (!pool_enter(p)) {
		/* too late: keep what came so the teardown closes it */
		if (!c->dial)
			c->dial = d;
		if (fd >= 0 && c->fd < 0)
			c->fd = fd;
		else if (fd >= 0)
			close(fd);
		return;
	}
	if (!c->dial)
		c->dial = d;
	if (!err && fd >= 0)
		err = attach_fd(c, fd);
	else if (!err) {
		c->sops = ops;
		c->stream = stream;
	}
	if (err) {
		if (fd >= 0 && !c->io && c->fd != fd)
			close(fd);
		c->early_err = err;
	}
	if (!c->starting)
		conn_pump(c);
	pool_leave(p);
}

static struct sess *sess_find(struct pool *p, const struct upstream *u, enum ups_kind kind)
{
	struct sess *e;

	for (e = p->sessions; e; e = e->next)
		if (e->u == u && e->kind == kind)
			return e;
	return NULL;
}

/* OpenSSL made a session this connection may resume later (after the handshake, or when a TLS
 * 1.3 ticket comes): keep it for the next connection to the same upstream on this loop. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct conn *c = SSL_get_app_data(ssl);
	struct sess *e;

	if (!c)
		return 0;
	e = sess_find(c->pool, c->u, c->kind);
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return 0;
		e->u = c->u;
		e->kind = c->kind;
		e->next = c->pool->sessions;
		c->pool->sessions = e;
	}
	SSL_SESSION_free(e->s);
	e->s = sess;
	return 1; /* the reference is ours */
}

static int tls_setup(struct conn *c)
{
	struct sess *e;
	const char *name = c->u->name[0] ? c->u->name : c->u->host;
	static const unsigned char alpn[] = "\x02h2\x08http/1.1";

	if (!c->ctx->tls_ctx)
		return -EINVAL;
	c->ssl = SSL_new(c->ctx->tls_ctx);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (!c->ssl || !c->rbio || !c->wbio) {
		BIO_free(c->rbio);
		BIO_free(c->wbio);
		return -ENOMEM;
	}
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_connect_state(c->ssl);
	SSL_set_app_data(c->ssl, c);
	e = sess_find(c->pool, c->u, c->kind);
	if (e && e->s && SSL_SESSION_is_resumable(e->s))
		SSL_set_session(c->ssl, e->s);
	if (c->u->name[0]) {
		SSL_set_tlsext_host_name(c->ssl, name);
		if (!SSL_set1_host(c->ssl, name))
			return -EINVAL;
	} else if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name)) {
		return -EINVAL;
	}
	if (c->kind == UPS_HTTPS && SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1))
		return -ENOMEM;
	return 0;
}

/* Open a connection to u. 0 with the connection in *out, or -errno. */
static int conn_new(struct pool *p, const struct upstream *u, enum ups_kind kind,
		    struct conn **out)
{
	const struct ups_ctx *ctx = p->ctx;
	const struct xp_host *host = ctx->host;
	int family = u->addr.sa.sa_family, rc;
	socklen_t alen = family == AF_INET ? sizeof(struct sockaddr_in)
					   : sizeof(struct sockaddr_in6);
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->pool = p;
	c->ctx = ctx;
	c->u = u;
	c->kind = kind;
	c->fd = -1;
	link_init(&c->xfers);
	link_init(&c->done);
	link_add_tail(&p->conns, &c->link);
	c->kick = host->timer_new(p->loop, kick_cb, c);
	c->idle = host->timer_new(p->loop, idle_cb, c);
	rc = -ENOMEM;
	if (!c->kick || !c->idle)
		goto err;
	if (kind == UPS_TLS || kind == UPS_HTTPS) {
		rc = tls_setup(c);
		if (rc)
			goto err;
	}
	if (ctx->conns)
		host->counter_add(ctx->conns, 1);
	if (u->via[0]) {
		struct xp_dial_req req = {
			.size = sizeof(req),
			.outbound = u->via,
			.target = { .size = sizeof(struct xp_target), .l4proto = IPPROTO_TCP,
				    .addr = u->addr },
			.done = dial_done,
			.wake = dial_wake,
			.arg = c,
		};
		xp_dial_t *d;

		c->starting = 1;
		errno = 0;
		d = host->dial(ctx->self, p->loop, &req);
		if (d)
			c->dial = d;
		if (!d && !c->early_err)
			c->early_err = errno ? -errno : -EIO;
		c->starting = 0;
		rc = c->early_err;
		if (rc)
			goto err;
		if (c->io)
			host->io_set(c->io, XP_IO_READ | XP_IO_WRITE);
		*out = c;
		return 0;
	}
	rc = host->upstream_socket(ctx->self, family, SOCK_STREAM, IPPROTO_TCP);
	if (rc < 0)
		goto err;
	rc = attach_fd(c, rc);
	if (rc)
		goto err;
	if (connect(c->fd, &u->addr.sa, alen)) {
		rc = -errno;
		if (rc != -EINPROGRESS)
			goto err;
		c->connecting = 1;
	}
	host->io_set(c->io, XP_IO_READ | XP_IO_WRITE);
	*out = c;
	return 0;
err:
	conn_destroy(c, 1);
	return rc;
}

static struct pool *pool_get(const struct ups_ctx *ctx, xp_loop_t *loop)
{
	struct ups_pools *ps = ctx->pools;
	struct pool *p;

	if (!ps)
		return NULL;
	pthread_mutex_lock(&ps->lock);
	for (p = ps->list; p && p->loop != loop; p = p->next)
		;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (p) {
			pthread_mutexattr_t ma;

			pthread_mutexattr_init(&ma);
			pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
			pthread_mutex_init(&p->lock, &ma);
			pthread_mutexattr_destroy(&ma);
			p->loop = loop;
			p->host = ctx->host;
			p->ctx = ctx;
			link_init(&p->conns);
			p->next = ps->list;
			ps->list = p;
		}
	}
	pthread_mutex_unlock(&ps->lock);
	return p;
}

/* A request id no other exchange in flight on c uses (nor an abandoned one still expected). */
static void unique_id(struct conn *c, struct xfer *x)
{
	struct link *l;
	unsigned i;
	int clash;

	if (c->kind != UPS_TCP && c->kind != UPS_TLS)
		return;
	do {
		clash = 0;
		for (l = c->xfers.next; l != &c->xfers && !clash; l = l->next)
			clash = LINK_ENTRY(l, struct xfer, link)->id == x->id;
		for (i = 0; i < c->n_ghosts && !clash; i++)
			clash = c->ghosts[i] == x->id;
		if (clash) {
			uint16_t id;

			if (getrandom(&id, sizeof(id), 0) != sizeof(id))
				id = (uint16_t)(x->id * 40503u + 1);
			x->id = id;
			dns_put16(x->req, id);
		}
	} while (clash);
}

/* Join x to a connection of its upstream on its loop: the open one with most room, or a new
 * one. 0 or -errno (-EBUSY: every connection allowed is full). */
static int place(struct xfer *x)
{
	struct pool *p = pool_get(x->ctx, x->loop);
	struct conn *c, *best = NULL;
	unsigned n = 0, room, best_room = 0;
	struct link *l;
	int rc;

	if (!p)
		return -ENOMEM;
	for (l = p->conns.next; x->ctx->idle_ms && l != &p->conns; l = l->next) {
		c = LINK_ENTRY(l, struct conn, link);
		if (c->u != x->u || c->kind != x->kind)
			continue;
		n++;
		room = conn_room(c);
		if (room > best_room) {
			best = c;
			best_room = room;
		}
	}
	c = best;
	if (!c) {
		if (n >= CONNS_MAX)
			return -EBUSY;
		rc = conn_new(p, x->u, x->kind, &c);
		if (rc)
			return rc;
	}
	unique_id(c, x);
	x->conn = c;
	link_add_tail(&c->xfers, &x->link);
	c->n_live++;
	if (c->idle_armed) {
		x->ctx->host->timer_stop(c->idle);
		c->idle_armed = 0;
	}
	if (!x->ctx->idle_ms)
		c->draining = 1; /* no reuse: one exchange per connection */
	kick(c);
	return 0;
}

/* Teardown ----------------------------------------------------------------------------------- */

int ups_pools_new(struct ups_ctx *ctx)
{
	ctx->pools = calloc(1, sizeof(*ctx->pools));
	if (!ctx->pools)
		return -ENOMEM;
	pthread_mutex_init(&ctx->pools->lock, NULL);
	return 0;
}

static void pool_destroy(struct pool *p, int loop_alive)
{
	while (!link_empty(&p->conns))
		conn_destroy(LINK_ENTRY(p->conns.next, struct conn, link), loop_alive);
	while (p->sessions) {
		struct sess *e = p->sessions;

		p->sessions = e->next;
		SSL_SESSION_free(e->s);
		free(e);
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static void pool_destroy_post(void *arg)
{
	pool_destroy(arg, 1);
}

void ups_pools_free(struct ups_ctx *ctx)
{
	struct ups_pools *ps = ctx->pools;
	const struct xp_host *host = ctx->host;
	struct pool *p, *next;

	if (!ps)
		return;
	for (p = ps->list; p; p = next) {
		next = p->next;
		/* waits for a callback that is inside the pool right now */
		pthread_mutex_lock(&p->lock);
		p->dying = 1;
		pthread_mutex_unlock(&p->lock);
		if (host->loop_current && host->loop_current() == p->loop)
			pool_destroy(p, 1);
		else if (!host->loop_post || host->loop_post(p->loop, pool_destroy_post, p))
			/* the loop is gone (shutdown): its watchers went with it, fds and memory
			 * are still ours */
			pool_destroy(p, 0);
	}
	pthread_mutex_destroy(&ps->lock);
	free(ps);
	ctx->pools = NULL;
}

/* ---------------------------------------------------------------------------------------- */

struct xfer *xfer_start(const struct ups_ctx *ctx, xp_loop_t *loop, const struct upstream *u,
			int force_tcp, const uint8_t *msg, size_t len, const struct dns_question *q,
			xfer_done_fn done, void *arg)
{
	struct xfer *x = calloc(1, sizeof(*x));
	int rc;

	if (!x)
		return NULL;
	x->ctx = ctx;
	x->u = u;
	x->loop = loop;
	x->kind = u->kind == UPS_UDP && force_tcp ? UPS_TCP : u->kind;
	x->id = dns_get16(msg);
	x->q = *q;
	x->done = done;
	x->arg = arg;
	x->fd = -1;
	link_init(&x->link);
	x->req = malloc(len);
	if (!x->req) {
		free(x);
		errno = ENOMEM;
		return NULL;
	}
	memcpy(x->req, msg, len);
	x->req_len = len;
	rc = x->kind == UPS_UDP ? udp_start(x) : place(x);
	if (rc) {
		xfer_free(x);
		errno = -rc;
		return NULL;
	}
	return x;
}
