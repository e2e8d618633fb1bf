/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * upstream.c - one query's exchange with one upstream server.
 *
 * UDP: a fresh marked socket per exchange (so a fresh random source port, RFC 5452), connected
 * to the server so the kernel already drops datagrams from anyone else. A datagram that does
 * not parse, or whose id or question differs, is counted and ignored: a spoofer must not be able
 * to end the exchange early, the timeout (owned by the caller) does that.
 *
 * TCP, TLS, HTTPS: one connection per exchange, either a marked socket of our own or a dial
 * through an outbound (which hands back a socket or a transforming stream). Every kind is the
 * same pump over two byte buffers: the network side (socket or stream) and, for TLS, OpenSSL
 * with memory BIOs in between, so TLS runs the same way over a socket and over an outbound's
 * stream. On top: the 2-byte length framing (TCP, TLS; RFC 1035 4.2.2, RFC 7858), or an
 * RFC 8484 POST over HTTP/2 (nghttp2's memory interface) or HTTP/1.1 when ALPN picks it.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

void *ups_tls_ctx_new(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
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

#define BUF_MAX (DNS_MAX_MSG + 8192) /* one message plus framing or HTTP headers */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static int buf_add(struct buf *b, const void *data, size_t len)
{
	if (b->len + len > BUF_MAX)
		return -EMSGSIZE;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		uint8_t *p;

		while (cap < b->len + len)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

static void buf_eat(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

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

	int fd;
	xp_io_t *io;
	uint8_t connecting, eof, starting, finished, in_pump, again;
	/* dial through an outbound */
	xp_dial_t *dial;
	const struct xp_stream_ops *sops;
	void *stream;
	int early_err; /* a dial result that came while xfer_start was still running */
	xp_timer_t *kick; /* starts pumping a stream that a dial handed over at once */

	struct buf netout, appin;
	/* TLS */
	SSL *ssl;
	BIO *rbio, *wbio;
	uint8_t hs_done, app_started, h1;
	/* HTTP/2 */
	nghttp2_session *h2;
	int32_t stream_id;
	size_t body_sent;
	int status;
	uint8_t h2_closed;
	uint32_t h2_error;
	struct buf body;

	uint8_t ans[DNS_MAX_MSG];
	size_t ans_len;
};

static void xfer_close_net(struct xfer *x)
{
	const struct xp_host *host = x->ctx->host;

	if (x->io) {
		host->io_free(x->io);
		x->io = NULL;
	}
	if (x->kick) {
		host->timer_free(x->kick);
		x->kick = NULL;
	}
	if (x->fd >= 0) {
		close(x->fd);
		x->fd = -1;
	}
	if (x->dial) {
		host->dial_close(x->dial);
		x->dial = NULL;
		x->sops = NULL;
		x->stream = NULL;
	}
}

void xfer_free(struct xfer *x)
{
	if (!x)
		return;
	xfer_close_net(x);
	if (x->h2)
		nghttp2_session_del(x->h2);
	SSL_free(x->ssl); /* frees the BIOs */
	free(x->netout.p);
	free(x->appin.p);
	free(x->body.p);
	free(x->req);
	free(x);
}

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

static void finish(struct xfer *x, int err)
{
	if (x->finished)
		return;
	if (x->starting) {
		/* xfer_start is still on the stack: it reports the failure instead (only a dial
		 * result can come that early, and it is never a success) */
		x->early_err = err;
		return;
	}
	x->finished = 1;
	xfer_close_net(x);
	x->done(x->arg, x, err, err ? NULL : x->ans, err ? 0 : x->ans_len);
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
			finish(x, -errno);
			return;
		}
		if (!check_answer(x, buf, (size_t)n)) {
			finish(x, 0);
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

/* Streams ---------------------------------------------------------------------------------- */

static void pump(struct xfer *x);

/* Plaintext for the server. */
static int app_write(struct xfer *x, const void *data, size_t len)
{
	if (!x->ssl)
		return buf_add(&x->netout, data, len);
	/* a memory BIO takes everything */
	if (len && SSL_write(x->ssl, data, (int)len) != (int)len)
		return -EPROTO;
	return 0;
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
	struct xfer *x = user;

	if (frame->hd.type == NGHTTP2_HEADERS && frame->hd.stream_id == x->stream_id &&
	    namelen == 7 && !memcmp(name, ":status", 7))
		x->status = atoi((const char *)value);
	return 0;
}

static int h2_data_cb(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
		      size_t len, void *user)
{
	struct xfer *x = user;

	if (stream_id == x->stream_id && buf_add(&x->body, data, len))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int h2_close_cb(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *user)
{
	struct xfer *x = user;

	if (stream_id == x->stream_id) {
		x->h2_closed = 1;
		x->h2_error = error_code;
	}
	return 0;
}

static ssize_t h2_body_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t len,
			  uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct xfer *x = user;
	size_t n = x->req_len - x->body_sent;

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

static const char *authority(const struct xfer *x, char *buf, size_t cap)
{
	const char *h = x->u->name[0] ? x->u->name : x->u->host;
	int v6 = !x->u->name[0] && x->u->addr.sa.sa_family == AF_INET6;
	uint16_t port = ntohs(x->u->addr.in.sin_port); /* same offset in sockaddr_in6 */

	if (port == 443)
		snprintf(buf, cap, v6 ? "[%s]" : "%s", h);
	else
		snprintf(buf, cap, v6 ? "[%s]:%u" : "%s:%u", h, port);
	return buf;
}

static int app_start(struct xfer *x)
{
	char auth[300], clen[16];
	uint8_t pfx[2];
	int rc;

	x->app_started = 1;
	if (x->kind == UPS_TCP || x->kind == UPS_TLS) {
		dns_put16(pfx, (uint16_t)x->req_len);
		rc = app_write(x, pfx, 2);
		return rc ? rc : app_write(x, x->req, x->req_len);
	}
	authority(x, auth, sizeof(auth));
	snprintf(clen, sizeof(clen), "%zu", x->req_len);
	if (x->h1) {
		char head[1024];
		int n = snprintf(head, sizeof(head),
				 "POST %s HTTP/1.1\r\nHost: %s\r\n"
				 "Content-Type: application/dns-message\r\n"
				 "Accept: application/dns-message\r\nContent-Length: %s\r\n"
				 "Connection: close\r\n\r\n",
				 x->u->path, auth, clen);

		rc = app_write(x, head, (size_t)n);
		return rc ? rc : app_write(x, x->req, x->req_len);
	}

	nghttp2_session_callbacks *cbs;
	nghttp2_data_provider prd = { .read_callback = h2_body_cb };
	const nghttp2_nv nva[] = {
		NV(":method", "POST"),
		NV(":scheme", "https"),
		NV(":authority", auth),
		NV(":path", x->u->path),
		NV("content-type", "application/dns-message"),
		NV("accept", "application/dns-message"),
		NV("content-length", clen),
	};

	if (nghttp2_session_callbacks_new(&cbs))
		return -ENOMEM;
	nghttp2_session_callbacks_set_send_callback(cbs, h2_send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_data_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_close_cb);
	rc = nghttp2_session_client_new(&x->h2, cbs, x);
	nghttp2_session_callbacks_del(cbs);
	if (rc)
		return -ENOMEM;
	if (nghttp2_submit_settings(x->h2, NGHTTP2_FLAG_NONE, NULL, 0))
		return -EPROTO;
	x->stream_id = nghttp2_submit_request(x->h2, NULL, nva, sizeof(nva) / sizeof(nva[0]),
					      &prd, NULL);
	return x->stream_id < 0 ? -EPROTO : 0;
}

/* An HTTP/1.1 response in appin: 1 complete (answer checked), 0 need more, -errno. */
static int h1_parse(struct xfer *x)
{
	const char *head = (const char *)x->appin.p, *end, *line;
	long clen = -1;
	size_t hlen;
	int status;

	end = x->appin.len ? memmem(head, x->appin.len, "\r\n\r\n", 4) : NULL;
	if (!end)
		return x->eof ? -EPROTO : 0;
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
	if (status != 200)
		return -EPROTO;
	if (clen < 0 ? !x->eof : x->appin.len - hlen < (size_t)clen)
		return x->eof ? -EPROTO : 0;
	if (clen < 0)
		clen = (long)(x->appin.len - hlen);
	return check_answer(x, x->appin.p + hlen, (size_t)clen) ? -EBADMSG : 1;
}

/* Plaintext from the server. 1 complete, 0 more, -errno. */
static int app_feed(struct xfer *x, const uint8_t *data, size_t len)
{
	int rc;

	if (x->h2) {
		ssize_t n = nghttp2_session_mem_recv(x->h2, data, len);

		if (n < 0)
			return -EPROTO;
		if (!x->h2_closed)
			return 0;
		if (x->h2_error || x->status != 200) {
			x->ctx->host->log(x->ctx->self, XP_LOG_DEBUG,
					  "upstream %s: HTTP status %d, stream error %u",
					  x->u->spec, x->status, x->h2_error);
			return -EPROTO;
		}
		return check_answer(x, x->body.p, x->body.len) ? -EBADMSG : 1;
	}
	rc = buf_add(&x->appin, data, len);
	if (rc)
		return rc;
	if (x->h1)
		return h1_parse(x);
	if (x->appin.len >= 2) {
		size_t mlen = dns_get16(x->appin.p);

		if (x->appin.len >= 2 + mlen)
			return check_answer(x, x->appin.p + 2, mlen) ? -EBADMSG : 1;
	}
	return 0;
}

static ssize_t net_send(struct xfer *x, const void *buf, size_t len)
{
	ssize_t n;

	if (x->sops)
		return x->sops->send(x->stream, buf, len);
	n = send(x->fd, buf, len, MSG_NOSIGNAL);
	return n < 0 ? -errno : n;
}

static ssize_t net_recv(struct xfer *x, void *buf, size_t len)
{
	ssize_t n;

	if (x->sops)
		return x->sops->recv(x->stream, buf, len);
	n = recv(x->fd, buf, len, 0);
	return n < 0 ? -errno : n;
}

static int tls_error(struct xfer *x, int r)
{
	int e = SSL_get_error(x->ssl, r);
	long v;

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN) {
		x->eof = 1;
		return 0;
	}
	v = SSL_get_verify_result(x->ssl);
	x->ctx->host->log(x->ctx->self, XP_LOG_WARN, "upstream %s: TLS failed: %s", x->u->spec,
			  v != X509_V_OK ? X509_verify_cert_error_string(v)
					 : ERR_reason_error_string(ERR_peek_last_error()));
	ERR_clear_error();
	return -EPROTO;
}

/* One round: 1 answered, 0 waiting, -errno failed. Sets x->again when it made progress that
 * may allow more. */
static int step(struct xfer *x)
{
	uint8_t tmp[16384];
	ssize_t n;
	int rc, r;

	if (x->connecting) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		struct sockaddr_storage peer;

		if (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr)
			return -soerr;
		sl = sizeof(peer);
		if (getpeername(x->fd, (struct sockaddr *)&peer, &sl) < 0)
			return 0;
		x->connecting = 0;
	}
	if (x->ssl && !x->hs_done) {
		r = SSL_do_handshake(x->ssl);
		if (r == 1) {
			x->hs_done = 1;
			if (x->kind == UPS_HTTPS) {
				const unsigned char *alpn;
				unsigned alen;

				SSL_get0_alpn_selected(x->ssl, &alpn, &alen);
				x->h1 = !(alen == 2 && !memcmp(alpn, "h2", 2));
			}
		} else if ((rc = tls_error(x, r))) {
			return rc;
		}
	}
	if ((!x->ssl || x->hs_done) && !x->app_started) {
		rc = app_start(x);
		if (rc)
			return rc;
	}
	if (x->h2) {
		const uint8_t *out;

		while ((n = nghttp2_session_mem_send(x->h2, &out)) > 0) {
			rc = app_write(x, out, (size_t)n);
			if (rc)
				return rc;
		}
		if (n < 0)
			return -EPROTO;
	}
	if (x->ssl) {
		while ((r = BIO_read(x->wbio, tmp, sizeof(tmp))) > 0) {
			rc = buf_add(&x->netout, tmp, (size_t)r);
			if (rc)
				return rc;
		}
	}
	while (x->netout.len) {
		n = net_send(x, x->netout.p, x->netout.len);
		if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR)
			break;
		if (n < 0)
			return (int)n;
		buf_eat(&x->netout, (size_t)n);
	}
	while (!x->eof) {
		n = net_recv(x, tmp, sizeof(tmp));
		if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR)
			break;
		if (n < 0)
			return (int)n;
		if (!n) {
			x->eof = 1;
			break;
		}
		x->again = 1;
		if (x->ssl) {
			if (BIO_write(x->rbio, tmp, (int)n) != n)
				return -ENOMEM;
			continue;
		}
		rc = app_feed(x, tmp, (size_t)n);
		if (rc)
			return rc;
	}
	if (x->ssl && x->hs_done) {
		for (;;) {
			r = SSL_read(x->ssl, tmp, sizeof(tmp));
			if (r <= 0) {
				rc = tls_error(x, r);
				if (rc)
					return rc;
				break;
			}
			rc = app_feed(x, tmp, (size_t)r);
			if (rc)
				return rc;
		}
		if (BIO_ctrl_pending(x->wbio) || (x->h2 && nghttp2_session_want_write(x->h2)))
			x->again = 1;
	} else if (x->ssl && BIO_ctrl_pending(x->wbio)) {
		x->again = 1;
	}
	if (x->eof) {
		if (x->h1 && !x->h2) {
			rc = h1_parse(x);
			if (rc)
				return rc;
		}
		return -ECONNRESET;
	}
	return 0;
}

static void pump(struct xfer *x)
{
	int rc = 0;

	if (x->finished)
		return;
	if (x->in_pump) {
		x->again = 1;
		return;
	}
	x->in_pump = 1;
	do {
		x->again = 0;
		rc = step(x);
	} while (!rc && x->again);
	x->in_pump = 0;
	if (rc) {
		finish(x, rc < 0 ? rc : 0);
		return;
	}
	if (x->io)
		x->ctx->host->io_set(x->io, XP_IO_READ |
						    (x->netout.len || x->connecting ? XP_IO_WRITE : 0));
}

static void stream_io_cb(xp_io_t *io, int fd, unsigned revents, void *arg)
{
	pump(arg);
}

static void dial_wake(void *arg, unsigned what)
{
	pump(arg);
}

static void kick_cb(xp_timer_t *t, void *arg)
{
	pump(arg);
}

static int attach_fd(struct xfer *x, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	x->fd = fd;
	/* a dial's socket may come blocking; the pump must never block the loop */
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	x->io = x->ctx->host->io_new(x->loop, fd, stream_io_cb, x);
	return x->io ? 0 : -ENOMEM;
}

static void dial_done(void *arg, xp_dial_t *d, int err, int fd,
		      const struct xp_stream_ops *ops, void *stream)
{
	struct xfer *x = arg;

	if (!x->dial)
		x->dial = d;
	if (!err && fd >= 0)
		err = attach_fd(x, fd);
	else if (!err) {
		x->sops = ops;
		x->stream = stream;
	}
	if (err) {
		if (fd >= 0 && !x->io)
			close(fd);
		finish(x, err); /* recorded as early_err while xfer_start runs */
		return;
	}
	if (!x->starting)
		pump(x);
}

static int tls_setup(struct xfer *x)
{
	const char *name = x->u->name[0] ? x->u->name : x->u->host;
	static const unsigned char alpn[] = "\x02h2\x08http/1.1";

	if (!x->ctx->tls_ctx)
		return -EINVAL;
	x->ssl = SSL_new(x->ctx->tls_ctx);
	x->rbio = BIO_new(BIO_s_mem());
	x->wbio = BIO_new(BIO_s_mem());
	if (!x->ssl || !x->rbio || !x->wbio) {
		BIO_free(x->rbio);
		BIO_free(x->wbio);
		return -ENOMEM;
	}
	SSL_set_bio(x->ssl, x->rbio, x->wbio);
	SSL_set_connect_state(x->ssl);
	if (x->u->name[0]) {
		SSL_set_tlsext_host_name(x->ssl, name);
		if (!SSL_set1_host(x->ssl, name))
			return -EINVAL;
	} else if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(x->ssl), name)) {
		return -EINVAL;
	}
	if (x->kind == UPS_HTTPS && SSL_set_alpn_protos(x->ssl, alpn, sizeof(alpn) - 1))
		return -ENOMEM;
	return 0;
}

static int stream_start(struct xfer *x)
{
	const struct xp_host *host = x->ctx->host;
	int family = x->u->addr.sa.sa_family, rc;
	socklen_t alen = family == AF_INET ? sizeof(struct sockaddr_in)
					   : sizeof(struct sockaddr_in6);

	if (x->kind == UPS_TLS || x->kind == UPS_HTTPS) {
		rc = tls_setup(x);
		if (rc)
			return rc;
	}
	if (x->u->via[0]) {
		struct xp_dial_req req = {
			.size = sizeof(req),
			.outbound = x->u->via,
			.target = { .size = sizeof(struct xp_target), .l4proto = IPPROTO_TCP,
				    .addr = x->u->addr },
			.done = dial_done,
			.wake = dial_wake,
			.arg = x,
		};
		xp_dial_t *d;

		x->starting = 1;
		errno = 0;
		d = host->dial(x->ctx->self, x->loop, &req);
		if (d)
			x->dial = d;
		if (!d && !x->early_err)
			x->early_err = errno ? -errno : -EIO;
		x->starting = 0;
		if (x->early_err)
			return x->early_err;
		/* the result came at once: start on the loop, never inside xfer_start */
		if (x->io) {
			host->io_set(x->io, XP_IO_READ | XP_IO_WRITE);
		} else if (x->sops) {
			x->kick = host->timer_new(x->loop, kick_cb, x);
			if (!x->kick)
				return -ENOMEM;
			host->timer_set(x->kick, 0, 0);
		}
		return 0;
	}
	rc = host->upstream_socket(x->ctx->self, family, SOCK_STREAM, IPPROTO_TCP);
	if (rc < 0)
		return rc;
	rc = attach_fd(x, rc);
	if (rc)
		return rc;
	if (connect(x->fd, &x->u->addr.sa, alen)) {
		if (errno != EINPROGRESS)
			return -errno;
		x->connecting = 1;
	}
	host->io_set(x->io, XP_IO_READ | XP_IO_WRITE);
	return 0;
}

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
	x->req = malloc(len);
	if (!x->req) {
		free(x);
		errno = ENOMEM;
		return NULL;
	}
	memcpy(x->req, msg, len);
	x->req_len = len;
	rc = x->kind == UPS_UDP ? udp_start(x) : stream_start(x);
	if (rc) {
		x->finished = 1; /* no callback for a failed start */
		xfer_free(x);
		errno = -rc;
		return NULL;
	}
	return x;
}
