/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dnsq - client DNS queries and the [dns] plugin instance. See dnsq.h.
 *
 * Re-entrancy: the plugin may answer inside query(). The answer is sent at once (the client
 * gets it soonest) but the query is only freed once query() has returned, so the core never
 * frees memory the plugin's call is still looking at. Closing a TCP connection after an answer
 * is deferred to the next loop iteration for the same reason: closing cancels the connection's
 * other queries, and cancel() must not run inside the plugin's own dns_answer() call.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cfg.h"
#include "dnsq.h"
#include "log.h"
#include "udp.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct dnsq_stats dnsq_stats;

/* ------------------------------------------------------------------------------ options */

static pthread_mutex_t opts_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dnsq_opts opts = {
	.query_timeout_ms = 10000,
	.tcp_stall_ms = 10000,
	.tcp_idle_ms = 30000,
};

void dnsq_set_opts(const struct dnsq_opts *o)
{
	pthread_mutex_lock(&opts_lock);
	opts = *o;
	pthread_mutex_unlock(&opts_lock);
}

static struct dnsq_opts opts_get(void)
{
	struct dnsq_opts o;

	pthread_mutex_lock(&opts_lock);
	o = opts;
	pthread_mutex_unlock(&opts_lock);
	return o;
}

static ev_tstamp ms_s(uint64_t ms)
{
	return (ev_tstamp)ms / 1000.0;
}

/* ------------------------------------------------------------------------------ instance */

struct dnsq_inst {
	struct plugin *plugin;
	void *config;
	void *inst;
	struct xp_handle handle;
	atomic_int refs;
	char *fingerprint;
};

static pthread_mutex_t inst_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dnsq_inst *live;

static void inst_free(struct dnsq_inst *di)
{
	if (di->inst && di->plugin->desc.instance_free)
		di->plugin->desc.instance_free(di->inst);
	if (di->config)
		plug_config_free(di->plugin, di->config);
	free(di->fingerprint);
	free(di);
}

static void inst_free_post(void *arg)
{
	inst_free(arg);
}

static void inst_put(struct dnsq_inst *di)
{
	struct xp_loop *m, *cur;

	if (!di || atomic_fetch_sub(&di->refs, 1) != 1)
		return;
	/* instance_free belongs on the main thread (plugin.h). */
	m = loop_main();
	cur = loop_current();
	if (m && cur && cur != m && loop_post(m, inst_free_post, di) == 0)
		return;
	inst_free(di);
}

static struct dnsq_inst *inst_get(void)
{
	struct dnsq_inst *di;

	pthread_mutex_lock(&inst_lock);
	di = live;
	if (di)
		atomic_fetch_add(&di->refs, 1);
	pthread_mutex_unlock(&inst_lock);
	return di;
}

static void inst_replace(struct dnsq_inst *di)
{
	struct dnsq_inst *old;

	pthread_mutex_lock(&inst_lock);
	old = live;
	live = di;
	pthread_mutex_unlock(&inst_lock);
	inst_put(old);
}

int dnsq_install(struct plugin *p, void *config, void *inst)
{
	struct dnsq_inst *di = calloc(1, sizeof(*di));

	if (!di)
		return -ENOMEM;
	di->plugin = p;
	di->config = config;
	di->inst = inst;
	di->handle.kind = HANDLE_INSTANCE;
	di->handle.plugin = p;
	di->handle.owner = di;
	snprintf(di->handle.name, sizeof(di->handle.name), "dns");
	atomic_init(&di->refs, 1);
	inst_replace(di);
	return 0;
}

void dnsq_clear(void)
{
	inst_replace(NULL);
}

static int append_err(char **errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int append_err(char **errors, const char *fmt, ...)
{
	char line[512];
	size_t old = *errors ? strlen(*errors) : 0, n;
	va_list ap;
	char *buf;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	n = strlen(line);
	buf = realloc(*errors, old + n + 2);
	if (!buf)
		return -ENOMEM;
	memcpy(buf + old, line, n);
	buf[old + n] = '\n';
	buf[old + n + 1] = '\0';
	*errors = buf;
	return 0;
}

/* The section's keys and values, the plugin's name first: equal strings, same instance. */
static char *fingerprint(const struct cfg *cfg)
{
	const struct cfg_section *s = cfg->dns.section;
	size_t len = strlen(cfg->dns.plugin) + 2;
	char *fp, *p;

	for (size_t i = 0; s && i < s->n_kv; i++)
		len += strlen(s->kv[i].key) + strlen(s->kv[i].value) + 2;
	fp = malloc(len);
	if (!fp)
		return NULL;
	p = fp + sprintf(fp, "%s\n", cfg->dns.plugin);
	for (size_t i = 0; s && i < s->n_kv; i++)
		p += sprintf(p, "%s=%s\n", s->kv[i].key, s->kv[i].value);
	return fp;
}

int dnsq_apply(const struct cfg *cfg, struct plug_registry *reg, const struct xp_host *host,
	       bool check_only, char **errors)
{
	struct cfg_section plugin_keys = { 0 };
	struct dnsq_inst *di = NULL;
	struct plugin *p = NULL;
	char err[512] = "";
	char *fp = NULL;
	int rc;

	if (!cfg->dns.present) {
		if (!check_only)
			dnsq_clear();
		return 0;
	}
	fp = fingerprint(cfg);
	if (!fp)
		return -ENOMEM;
	pthread_mutex_lock(&inst_lock);
	rc = live && live->fingerprint && !strcmp(live->fingerprint, fp);
	pthread_mutex_unlock(&inst_lock);
	if (rc && !check_only) {
		free(fp);
		return 0; /* unchanged: queries keep going to the same instance */
	}

	rc = plug_resolve(reg, cfg->dns.plugin, &p, err, sizeof(err));
	if (rc) {
		append_err(errors, "%s:%d: [dns] plugin: %s", cfg->path, cfg->dns.line, err);
		goto err_fp;
	}
	if (!plug_has_kind(p, XP_KIND_DNS)) {
		append_err(errors, "%s:%d: [dns] plugin: %s is not a DNS plugin", cfg->path,
			   cfg->dns.line, p->name);
		rc = -EINVAL;
		goto err_fp;
	}
	rc = check_only ? 0 : plug_init(p, host, err, sizeof(err));
	if (rc) {
		append_err(errors, "%s:%d: [dns] plugin %s: %s", cfg->path, cfg->dns.line, p->name,
			   err);
		goto err_fp;
	}
	/* The plugin sees only its own keys: [dns]'s core keys are not its options. */
	plugin_keys.name = cfg->dns.section->name;
	plugin_keys.line = cfg->dns.section->line;
	plugin_keys.kv = calloc(cfg->dns.section->n_kv + 1, sizeof(*plugin_keys.kv));
	if (!plugin_keys.kv) {
		rc = -ENOMEM;
		goto err_fp;
	}
	for (size_t i = 0; i < cfg->dns.section->n_kv; i++)
		if (!cfg_dns_core_key(cfg->dns.section->kv[i].key))
			plugin_keys.kv[plugin_keys.n_kv++] = cfg->dns.section->kv[i];
	di = calloc(1, sizeof(*di));
	if (!di) {
		rc = -ENOMEM;
		goto err_keys;
	}
	di->plugin = p;
	di->handle.kind = HANDLE_INSTANCE;
	di->handle.plugin = p;
	di->handle.owner = di;
	snprintf(di->handle.name, sizeof(di->handle.name), "dns");
	atomic_init(&di->refs, 1);
	rc = plug_config_fill(p, cfg->path, &plugin_keys, &di->config, errors);
	if (rc)
		goto err_di;
	if (check_only) {
		rc = 0;
		goto err_di;
	}
	err[0] = '\0';
	di->handle.last_error = err;
	di->handle.last_error_len = sizeof(err);
	rc = p->desc.instance_new(p->state, host, &di->handle, di->config, &di->inst);
	di->handle.last_error = NULL;
	if (rc) {
		append_err(errors, "%s:%d: [dns] plugin %s: %s", cfg->path, cfg->dns.line, p->name,
			   err[0] ? err : strerror(rc < 0 ? -rc : EINVAL));
		rc = -EINVAL;
		goto err_di;
	}
	di->fingerprint = fp;
	free(plugin_keys.kv);
	inst_replace(di);
	return 0;

err_di:
	if (di->config)
		plug_config_free(p, di->config);
	free(di);
err_keys:
	free(plugin_keys.kv);
err_fp:
	free(fp);
	return rc;
}

/* ------------------------------------------------------------------------------ queries */

struct owner;

struct xp_dns_query {
	struct xp_dns_query *next, *prev; /* owner's list */
	struct owner *owner;		  /* NULL for dnsq_query_new() queries */
	struct dnsq_inst *di;		  /* referenced */
	struct xp_loop *loop;
	struct xp_conn_info info;
	ev_timer timer;
	dnsq_reply_fn reply; /* owner-less queries */
	void *arg;
	bool in_query; /* inside the plugin's query(): free after it returns */
	bool done;     /* answered, dropped, timed out or cancelled */
};

/* Who asked: a UDP session or a TCP connection. */
struct owner {
	struct xp_dns_query *qs;
	unsigned n;
	void (*reply)(struct owner *o, struct xp_dns_query *q, const uint8_t *msg, size_t len);
	void (*changed)(struct owner *o); /* a query left the list */
};

static atomic_uint_fast64_t next_id;

static void q_unlink(struct xp_dns_query *q)
{
	struct owner *o = q->owner;

	if (!o)
		return;
	if (q->prev)
		q->prev->next = q->next;
	else
		o->qs = q->next;
	if (q->next)
		q->next->prev = q->prev;
	o->n--;
	q->owner = NULL;
	if (o->changed)
		o->changed(o);
}

static void q_free(struct xp_dns_query *q)
{
	ev_timer_stop(q->loop->ev, &q->timer);
	q_unlink(q);
	inst_put(q->di);
	free(q);
}

/* The plugin forgets q (timeout, client gone). */
static void q_cancel_plugin(struct xp_dns_query *q)
{
	const struct xp_dns_ops *ops = &q->di->plugin->dns;

	q->done = true;
	if (ops->cancel)
		ops->cancel(q->di->inst, q);
}

static void q_timer_cb(struct ev_loop *ev, ev_timer *t, int revents)
{
	struct xp_dns_query *q = container_of(t, struct xp_dns_query, timer);

	if (q->done)
		return;
	atomic_fetch_add(&dnsq_stats.timeouts, 1);
	q_cancel_plugin(q);
	if (!q->owner && q->reply)
		q->reply(q->arg, NULL, 0);
	q_free(q);
}

static struct xp_dns_query *q_start(struct xp_loop *loop, const struct xp_conn_info *info,
				    const uint8_t *msg, size_t len, struct owner *o,
				    dnsq_reply_fn reply, void *arg)
{
	struct xp_dns_query *q;
	struct dnsq_inst *di;
	int rc;

	if (len < DNSQ_MIN_MSG) {
		atomic_fetch_add(&dnsq_stats.bad_queries, 1);
		return NULL;
	}
	di = inst_get();
	if (!di) {
		atomic_fetch_add(&dnsq_stats.no_plugin, 1);
		return NULL;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		inst_put(di);
		return NULL;
	}
	q->di = di;
	q->loop = loop;
	q->info = *info;
	q->info.size = sizeof(q->info);
	q->info.id = atomic_fetch_add(&next_id, 1) + 1;
	q->info.route = XP_ROUTE_DNS;
	q->reply = reply;
	q->arg = arg;
	ev_timer_init(&q->timer, q_timer_cb, ms_s(opts_get().query_timeout_ms), 0.);
	ev_timer_start(loop->ev, &q->timer);
	if (o) {
		q->owner = o;
		q->next = o->qs;
		if (o->qs)
			o->qs->prev = q;
		o->qs = q;
		o->n++;
	}
	q->in_query = true;
	rc = di->plugin->dns.query(di->inst, q, msg, len);
	q->in_query = false;
	if (q->done) {
		/* Answered or dropped inside query(). */
		q_free(q);
		return NULL;
	}
	if (rc < 0) {
		atomic_fetch_add(&dnsq_stats.query_errors, 1);
		q->done = true;
		q_free(q);
		return NULL;
	}
	return q;
}

xp_dns_query_t *dnsq_query_new(struct xp_loop *loop, const struct xp_conn_info *info,
			       const uint8_t *msg, size_t len, dnsq_reply_fn reply, void *arg)
{
	return q_start(loop, info, msg, len, NULL, reply, arg);
}

void dnsq_query_cancel(xp_dns_query_t *q)
{
	if (!q || q->done)
		return;
	atomic_fetch_add(&dnsq_stats.cancelled, 1);
	q_cancel_plugin(q);
	q_free(q);
}

/* Cancel every open query of an owner that goes away. */
static void owner_cancel_all(struct owner *o)
{
	o->changed = NULL; /* the owner is being torn down: no callbacks into it */
	while (o->qs) {
		struct xp_dns_query *q = o->qs;

		atomic_fetch_add(&dnsq_stats.cancelled, 1);
		q_cancel_plugin(q);
		q_free(q);
	}
}

const struct xp_conn_info *dnsq_info(xp_dns_query_t *q)
{
	return q ? &q->info : NULL;
}

xp_loop_t *dnsq_loop(xp_dns_query_t *q)
{
	return q ? q->loop : NULL;
}

static bool answer_wanted(struct xp_dns_query *q, const char *what)
{
	if (q && !q->done)
		return true;
	log_debug("dns: %s for a query already finished ignored", what);
	return false;
}

void dnsq_answer(xp_dns_query_t *q, const uint8_t *msg, size_t len)
{
	size_t max;

	if (!answer_wanted(q, "answer"))
		return;
	q->done = true;
	max = q->info.l4proto == IPPROTO_UDP ? DNSQ_MAX_UDP : DNSQ_MAX_MSG;
	if (!msg || len < DNSQ_MIN_MSG || len > max) {
		atomic_fetch_add(&dnsq_stats.bad_answers, 1);
		log_debug("dns: answer of %zu bytes not sent (a DNS message is %d to %zu bytes)",
			  len, DNSQ_MIN_MSG, max);
		msg = NULL;
		len = 0;
	} else {
		atomic_fetch_add(&dnsq_stats.answered, 1);
	}
	if (q->owner)
		q->owner->reply(q->owner, q, msg, len);
	else if (q->reply)
		q->reply(q->arg, msg, len);
	if (!q->in_query)
		q_free(q);
}

void dnsq_drop(xp_dns_query_t *q, const char *reason)
{
	if (!answer_wanted(q, "drop"))
		return;
	q->done = true;
	atomic_fetch_add(&dnsq_stats.dropped, 1);
	log_debug("dns: query %llu dropped: %s", (unsigned long long)q->info.id,
		  reason ? reason : "-");
	if (q->owner)
		q->owner->reply(q->owner, q, NULL, 0);
	else if (q->reply)
		q->reply(q->arg, NULL, 0);
	if (!q->in_query)
		q_free(q);
}

/* ------------------------------------------------------------------------------ UDP */

struct udp_owner {
	struct owner o;
	struct udp_sess *s;
	union xp_sockaddr dst;
};

static void udp_owner_reply(struct owner *o, struct xp_dns_query *q, const uint8_t *msg,
			    size_t len)
{
	struct udp_owner *uo = container_of(o, struct udp_owner, o);

	/* A dropped query gets no datagram: the client's resolver retries or gives up. */
	if (msg)
		udp_sess_reply(uo->s, &q->info.dst, msg, len);
}

static void udp_datagram(void *ctx, struct udp_sess *s, const union xp_sockaddr *client,
			 const union xp_sockaddr *dst, const void *buf, size_t len)
{
	struct udp_owner *uo = udp_sess_user(s);
	struct xp_conn_info info = { 0 };

	atomic_fetch_add(&dnsq_stats.udp_queries, 1);
	if (!uo) {
		uo = calloc(1, sizeof(*uo));
		if (!uo)
			return;
		uo->s = s;
		uo->o.reply = udp_owner_reply;
		udp_sess_set_user(s, uo);
	}
	info = *udp_sess_info(s);
	info.l4proto = IPPROTO_UDP;
	info.client = *client;
	info.dst = *dst;
	q_start(udp_sess_loop(s), &info, buf, len, &uo->o, NULL, NULL);
}

static void udp_closed(void *ctx, struct udp_sess *s)
{
	struct udp_owner *uo = udp_sess_user(s);

	if (!uo)
		return;
	owner_cancel_all(&uo->o);
	udp_sess_set_user(s, NULL);
	free(uo);
}

void dnsq_udp_hook(struct udp_dns_hook *out)
{
	memset(out, 0, sizeof(*out));
	out->datagram = udp_datagram;
	out->closed = udp_closed;
}

/* ------------------------------------------------------------------------------ TCP */

int dnsq_frame(const uint8_t *buf, size_t len)
{
	size_t n;

	if (len < 2)
		return 0;
	n = (size_t)buf[0] << 8 | buf[1];
	if (n < DNSQ_MIN_MSG)
		return -EBADMSG;
	if (len < 2 + n)
		return 0;
	return (int)n;
}

#define TCP_RBUF (2 + DNSQ_MAX_MSG)

struct tcp_owner {
	struct owner o;
	struct xp_loop *loop;
	int fd;
	struct xp_conn_info info;
	ev_io io;
	ev_timer timer; /* stall / idle */
	ev_timer later; /* 0 s: re-evaluate after an answer, outside the plugin's call */
	struct dnsq_opts opts;
	uint8_t *rbuf;
	size_t rlen;
	uint8_t *wbuf;
	size_t wlen, wcap;
	ev_tstamp progress; /* last byte read or written */
	bool eof;	    /* the client sent FIN: answer what is open, then close */
	bool dead;	    /* send failed or the client overflowed: close (RST) next */
	bool closing;
};

static void tcp_close(struct tcp_owner *t, bool reset)
{
	struct ev_loop *ev = t->loop->ev;

	if (t->closing)
		return;
	t->closing = true;
	ev_io_stop(ev, &t->io);
	ev_timer_stop(ev, &t->timer);
	ev_timer_stop(ev, &t->later);
	owner_cancel_all(&t->o);
	if (reset) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(t->fd);
	free(t->rbuf);
	free(t->wbuf);
	free(t);
}

static void tcp_update(struct tcp_owner *t);

static void tcp_flush(struct tcp_owner *t)
{
	while (t->wlen) {
		ssize_t n = send(t->fd, t->wbuf, t->wlen, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			t->dead = true; /* the client is gone: close from tcp_update */
			t->wlen = 0;
			return;
		}
		memmove(t->wbuf, t->wbuf + n, t->wlen - (size_t)n);
		t->wlen -= (size_t)n;
		t->progress = ev_now(t->loop->ev);
	}
}

static void tcp_owner_reply(struct owner *o, struct xp_dns_query *q, const uint8_t *msg,
			    size_t len)
{
	struct tcp_owner *t = container_of(o, struct tcp_owner, o);

	if (!msg || t->closing || t->dead)
		goto later; /* a dropped query: nothing to send; the client times it out */
	if (t->wlen + 2 + len > DNSQ_TCP_WQUEUE) {
		/* Pipelining without reading the answers: bounded, not buffered forever. */
		atomic_fetch_add(&dnsq_stats.tcp_overflow, 1);
		t->dead = true;
		goto later;
	}
	if (t->wlen + 2 + len > t->wcap) {
		size_t cap = t->wcap ? t->wcap : 4096;
		uint8_t *nb;

		while (cap < t->wlen + 2 + len)
			cap *= 2;
		nb = realloc(t->wbuf, cap);
		if (!nb) {
			t->dead = true;
			goto later;
		}
		t->wbuf = nb;
		t->wcap = cap;
	}
	t->wbuf[t->wlen] = (uint8_t)(len >> 8);
	t->wbuf[t->wlen + 1] = (uint8_t)len;
	memcpy(t->wbuf + t->wlen + 2, msg, len);
	t->wlen += 2 + len;
	tcp_flush(t);
later:
	/* Re-evaluate (close, resume reading) on the next iteration, not inside the plugin. */
	if (!ev_is_active(&t->later)) {
		ev_timer_set(&t->later, 0., 0.);
		ev_timer_start(t->loop->ev, &t->later);
	}
}

/* Parse every complete message in rbuf, up to the in-flight limit. false: closed. */
static bool tcp_parse(struct tcp_owner *t)
{
	size_t off = 0;

	while (t->o.n < DNSQ_TCP_INFLIGHT) {
		int n = dnsq_frame(t->rbuf + off, t->rlen - off);

		if (n == 0)
			break;
		if (n < 0) {
			atomic_fetch_add(&dnsq_stats.tcp_closed_bad, 1);
			atomic_fetch_add(&dnsq_stats.bad_queries, 1);
			tcp_close(t, true);
			return false;
		}
		atomic_fetch_add(&dnsq_stats.tcp_queries, 1);
		q_start(t->loop, &t->info, t->rbuf + off + 2, (size_t)n, &t->o, NULL, NULL);
		off += 2 + (size_t)n;
	}
	if (off) {
		memmove(t->rbuf, t->rbuf + off, t->rlen - off);
		t->rlen -= off;
	}
	return true;
}

/* false: the connection was closed (and freed). */
static bool tcp_read(struct tcp_owner *t)
{
	for (;;) {
		ssize_t n;

		if (t->o.n >= DNSQ_TCP_INFLIGHT || t->rlen == TCP_RBUF || t->eof)
			return true;
		n = recv(t->fd, t->rbuf + t->rlen, TCP_RBUF - t->rlen, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return true;
			tcp_close(t, true);
			return false;
		}
		if (n == 0) {
			t->eof = true;
			return true;
		}
		t->rlen += (size_t)n;
		t->progress = ev_now(t->loop->ev);
		if (!tcp_parse(t))
			return false;
	}
}

/* Watchers and timer from the state; closes when there is nothing left to do. */
static void tcp_update(struct tcp_owner *t)
{
	struct ev_loop *ev = t->loop->ev;
	int events = 0;
	ev_tstamp limit;

	if (t->dead) {
		tcp_close(t, true);
		return;
	}
	if (t->eof && !t->o.n && !t->wlen) {
		/* A partial message at EOF will never complete: only whole ones were answered. */
		tcp_close(t, false);
		return;
	}
	if (!t->eof && t->o.n < DNSQ_TCP_INFLIGHT && t->rlen < TCP_RBUF)
		events |= EV_READ;
	if (t->wlen)
		events |= EV_WRITE;
	if (!ev_is_active(&t->io) || (t->io.events & (EV_READ | EV_WRITE)) != events) {
		ev_io_stop(ev, &t->io);
		if (events) {
			ev_io_set(&t->io, t->fd, events);
			ev_io_start(ev, &t->io);
		}
	}
	/* A partial message must keep moving; a connection with nothing open may idle a while
	 * (RFC 7766 6.2.3); answers still owed are the query timeout's business. */
	ev_timer_stop(ev, &t->timer);
	if (t->o.n && !t->rlen && !t->wlen)
		return;
	limit = ms_s(t->rlen || t->wlen ? t->opts.tcp_stall_ms : t->opts.tcp_idle_ms);
	if (limit > 0) {
		ev_tstamp left = t->progress + limit - ev_now(ev);

		ev_timer_set(&t->timer, left > 0.001 ? left : 0.001, 0.);
		ev_timer_start(ev, &t->timer);
	}
}

static void tcp_io_cb(struct ev_loop *ev, ev_io *w, int revents)
{
	struct tcp_owner *t = container_of(w, struct tcp_owner, io);

	if (revents & EV_WRITE)
		tcp_flush(t);
	if ((revents & EV_READ) && !tcp_read(t))
		return; /* closed and freed */
	tcp_update(t);
}

static void tcp_timer_cb(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct tcp_owner *t = container_of(w, struct tcp_owner, timer);
	ev_tstamp limit = ms_s(t->rlen || t->wlen ? t->opts.tcp_stall_ms : t->opts.tcp_idle_ms);

	if (ev_now(ev) - t->progress < limit) {
		tcp_update(t);
		return;
	}
	if (t->rlen || t->wlen)
		atomic_fetch_add(&dnsq_stats.tcp_stalled, 1);
	/* Idle with nothing open is a normal end (FIN); a stalled one is not (RST). */
	tcp_close(t, t->rlen || t->wlen);
}

static void tcp_later_cb(struct ev_loop *ev, ev_timer *w, int revents)
{
	struct tcp_owner *t = container_of(w, struct tcp_owner, later);

	/* Room again under the in-flight limit: parse what is buffered, then read on. */
	if (!t->eof && t->rlen && !tcp_parse(t))
		return;
	tcp_update(t);
}

static void tcp_changed(struct owner *o)
{
	struct tcp_owner *t = container_of(o, struct tcp_owner, o);

	if (!t->closing && !ev_is_active(&t->later)) {
		ev_timer_set(&t->later, 0., 0.);
		ev_timer_start(t->loop->ev, &t->later);
	}
}

int dnsq_tcp_adopt(struct xp_loop *loop, int fd, const struct xp_conn_info *info)
{
	struct tcp_owner *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->rbuf = malloc(TCP_RBUF);
	if (!t->rbuf) {
		free(t);
		return -ENOMEM;
	}
	t->loop = loop;
	t->fd = fd;
	t->info = *info;
	t->info.l4proto = IPPROTO_TCP;
	t->opts = opts_get();
	t->o.reply = tcp_owner_reply;
	t->o.changed = tcp_changed;
	t->progress = ev_now(loop->ev);
	ev_io_init(&t->io, tcp_io_cb, fd, 0);
	ev_timer_init(&t->timer, tcp_timer_cb, 0., 0.);
	ev_timer_init(&t->later, tcp_later_cb, 0., 0.);
	atomic_fetch_add(&dnsq_stats.tcp_conns, 1);
	/* The query is usually waiting already. */
	if (tcp_read(t))
		tcp_update(t);
	return 0;
}
