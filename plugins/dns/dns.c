/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dns - the [dns] plugin: answers the clients' DNS queries from a cache or from upstream
 * servers (UDP, TCP, DoT, DoH; directly or through an outbound), and tells the core every
 * address an answer carries (host->dns_learn) before the client sees the answer, so the
 * client's first packet to that address is already routed by name in the kernel.
 *
 * A query lives on the loop the core handed it to; its upstream exchanges, timer and answer
 * stay on that loop. What loops share: the instance (immutable after instance_new), the cache
 * (its own lock), the table that finds a query again on cancel (its own lock) and counters.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <xproxy/plugin.h>

#include "cache.h"
#include "msg.h"
#include "upstream.h"

struct dns_cfg {
	const char *const *upstream;
	const char *const *upstream_rule;
	uint64_t timeout_ms;
	const char *ca_file;
	int64_t cache_size;
	uint64_t cache_bytes;
	uint64_t cache_max_ttl_ms;
	uint64_t upstream_idle_ms;
};

static const struct xp_option dns_options[] = {
	XP_OPT(struct dns_cfg, upstream, "upstream", XP_OPT_LIST, NULL, 0,
	       "[TAG=]udp|tcp|tls|https://ADDR[:PORT][/PATH][#NAME][ via OUTBOUND]; repeat to "
	       "fail over in order"),
	XP_OPT(struct dns_cfg, upstream_rule, "upstream_rule", XP_OPT_LIST, NULL, 0,
	       "domain-suffix:NAME[|NAME...], TAG (or domain:NAME): send these names to the "
	       "upstreams tagged TAG"),
	XP_OPT_RANGE(struct dns_cfg, timeout_ms, "timeout", XP_OPT_DURATION, "2s", 0, 50, 60000,
		     "wait this long for one upstream before trying the next"),
	XP_OPT(struct dns_cfg, ca_file, "ca_file", XP_OPT_STRING, NULL, 0,
	       "PEM CA certificates for tls:// and https:// upstreams (default: system store)"),
	XP_OPT_RANGE(struct dns_cfg, cache_size, "cache_size", XP_OPT_INT, "4096", 0, 0, 10000000,
		     "most cached answers (0: no cache)"),
	XP_OPT_RANGE(struct dns_cfg, cache_bytes, "cache_bytes", XP_OPT_SIZE, "4m", 0, 4096,
		     (int64_t)1 << 34, "most memory the cached answers may take"),
	XP_OPT_RANGE(struct dns_cfg, cache_max_ttl_ms, "cache_max_ttl", XP_OPT_DURATION, "24h", 0,
		     1000, (int64_t)7 * 86400 * 1000, "keep no answer longer than this"),
	XP_OPT_RANGE(struct dns_cfg, upstream_idle_ms, "upstream_idle_timeout", XP_OPT_DURATION,
		     "10s", 0, 0, 3600000,
		     "close a tcp/tls/https upstream connection idle this long (0: one connection "
		     "per query)"),
	XP_OPTION_END,
};

#define QTAB_BUCKETS 1024

struct query;

struct dns_inst {
	const struct xp_host *host;
	xp_handle_t *self;
	const struct dns_cfg *cfg;
	struct upstream *ups;
	size_t n_ups;
	struct ups_rule *rules;
	size_t n_rules;
	struct dns_cache *cache;
	struct ups_ctx uctx;
	xp_counter_t *queries, *hits, *failures, *malformed, *mismatched, *servfail, *answers,
		*learn_errors, *tcp_retries, *conns, *retries, *resumed;
	pthread_mutex_t qlock;
	struct query *qtab[QTAB_BUCKETS];
};

struct query {
	struct query *hnext;
	struct dns_inst *d;
	xp_dns_query_t *q;
	xp_loop_t *loop;
	struct dns_msg m; /* the client's query */
	uint8_t *msg;	  /* a copy, carrying our own id while upstream */
	size_t len;
	int udp_client;
	char name[1024]; /* question name, lower-case text */
	const char *tag;
	size_t next_ups; /* index into d->ups to look at next */
	const struct upstream *cur;
	int tcp_retry;
	struct xfer *x;
	xp_timer_t *timer;
};

/* ---------------------------------------------------------------------------- query table */

static size_t qhash(const xp_dns_query_t *q)
{
	uintptr_t v = (uintptr_t)q;

	return (size_t)((v >> 4) ^ (v >> 14)) & (QTAB_BUCKETS - 1);
}

static void qtab_add(struct dns_inst *d, struct query *r)
{
	size_t h = qhash(r->q);

	pthread_mutex_lock(&d->qlock);
	r->hnext = d->qtab[h];
	d->qtab[h] = r;
	pthread_mutex_unlock(&d->qlock);
}

/* Remove r (or, with r NULL, the query for q) and return it. */
static struct query *qtab_del(struct dns_inst *d, xp_dns_query_t *q, struct query *r)
{
	struct query **pp, *found = NULL;

	pthread_mutex_lock(&d->qlock);
	for (pp = &d->qtab[qhash(q)]; *pp; pp = &(*pp)->hnext) {
		if ((*pp)->q == q && (!r || *pp == r)) {
			found = *pp;
			*pp = found->hnext;
			break;
		}
	}
	pthread_mutex_unlock(&d->qlock);
	return found;
}

static void query_free(struct query *r)
{
	const struct xp_host *host = r->d->host;

	xfer_free(r->x);
	if (r->timer)
		host->timer_free(r->timer);
	free(r->msg);
	free(r);
}

/* ---------------------------------------------------------------------------- answering */

struct learn_arg {
	struct dns_inst *d;
	const char *name;
};

static int learn_cb(const uint8_t *msg, size_t len, const struct dns_rr *rr, void *arg)
{
	struct learn_arg *la = arg;
	union xp_sockaddr a;
	uint64_t ttl_ms;

	if (rr->section != 1 || rr->rclass != DNS_C_IN)
		return 0;
	memset(&a, 0, sizeof(a));
	if (rr->type == DNS_T_A) {
		a.in.sin_family = AF_INET;
		memcpy(&a.in.sin_addr, msg + rr->rdata_off, 4);
	} else if (rr->type == DNS_T_AAAA) {
		a.in6.sin6_family = AF_INET6;
		memcpy(&a.in6.sin6_addr, msg + rr->rdata_off, 16);
	} else {
		return 0;
	}
	/* a TTL of 0 still names the connection the client is about to open */
	ttl_ms = rr->ttl ? (uint64_t)rr->ttl * 1000 : 1000;
	if (ttl_ms > UINT32_MAX)
		ttl_ms = UINT32_MAX;
	if (la->d->host->dns_learn(la->d->self, la->name, &a, (uint32_t)ttl_ms))
		la->d->host->counter_add(la->d->learn_errors, 1);
	return 0;
}

/* Learn every address in `ans` (client-ready: the client's id, aged TTLs), then release it. */
static void deliver(struct dns_inst *d, xp_dns_query_t *q, const struct dns_msg *cq,
		    const char *name, uint8_t *ans, size_t len, int udp_client)
{
	const struct xp_host *host = d->host;
	struct learn_arg la = { d, name };
	uint8_t small[DNS_HDR_LEN + DNS_MAX_NAME + 4];
	size_t limit;

	dns_parse(ans, len, NULL, learn_cb, &la);
	limit = cq->has_opt && cq->opt_udp > 512 ? cq->opt_udp : 512;
	if (udp_client && len > limit) {
		/* too big for the client's UDP buffer: TC, so it retries over TCP (RFC 1035) */
		len = dns_make_error(cq, DNS_RCODE(dns_get16(ans + 2)), small);
		dns_put16(small + 2, dns_get16(small + 2) | DNS_F_TC);
		ans = small;
	}
	host->counter_add(d->answers, 1);
	host->dns_answer(q, ans, len);
}

static void answer_error(struct dns_inst *d, xp_dns_query_t *q, const struct dns_msg *cq,
			 int rcode)
{
	uint8_t buf[DNS_HDR_LEN + DNS_MAX_NAME + 4];
	size_t n = dns_make_error(cq, rcode, buf);

	if (rcode == DNS_R_SERVFAIL)
		d->host->counter_add(d->servfail, 1);
	d->host->dns_answer(q, buf, n);
}

/* ---------------------------------------------------------------------------- upstreams */

static void try_next(struct query *r);

/* Another upstream of the query's set is left to try. */
static int has_more(const struct query *r)
{
	size_t i;

	for (i = r->next_ups; i < r->d->n_ups; i++)
		if (!strcmp(r->d->ups[i].tag, r->tag))
			return 1;
	return 0;
}

static void attempt_failed(struct query *r, int err, const char *why)
{
	struct dns_inst *d = r->d;

	d->host->counter_add(d->failures, 1);
	d->host->log(d->self, XP_LOG_DEBUG, "%s: upstream %s failed: %s (%s)", r->name,
		     r->cur->spec, why, strerror(-err));
	xfer_free(r->x);
	r->x = NULL;
	r->tcp_retry = 0;
	try_next(r);
}

static void timer_cb(xp_timer_t *t, void *arg)
{
	attempt_failed(arg, -ETIMEDOUT, "timeout");
}

static void xfer_done(void *arg, struct xfer *x, int err, const uint8_t *ans, size_t len)
{
	struct query *r = arg;
	struct dns_inst *d = r->d;
	uint8_t out[DNS_MAX_MSG];
	struct dns_msg a;
	int rcode;

	if (err) {
		attempt_failed(r, err, "exchange failed");
		return;
	}
	d->host->timer_stop(r->timer);
	dns_parse(ans, len, &a, NULL, NULL); /* validated by the exchange */
	if ((a.flags & DNS_F_TC) && r->cur->kind == UPS_UDP && !r->tcp_retry) {
		d->host->counter_add(d->tcp_retries, 1);
		xfer_free(r->x);
		r->x = NULL;
		r->tcp_retry = 1;
		r->next_ups--; /* the same server again, over TCP */
		try_next(r);
		return;
	}
	rcode = DNS_RCODE(a.flags);
	if ((rcode == DNS_R_SERVFAIL || rcode == DNS_R_REFUSED) && has_more(r)) {
		attempt_failed(r, -EREMOTEIO, rcode == DNS_R_SERVFAIL ? "SERVFAIL" : "REFUSED");
		return;
	}
	if (d->cache)
		dns_cache_put(d->cache, &r->m, &a, ans, len, d->host->now_ms(r->loop));
	memcpy(out, ans, len);
	dns_put16(out, r->m.id);
	xfer_free(r->x);
	r->x = NULL;
	if (qtab_del(d, r->q, r)) {
		deliver(d, r->q, &r->m, r->name, out, len, r->udp_client);
		query_free(r);
	}
}

/* Start the next upstream of the query's set, or answer SERVFAIL when none is left. */
static void try_next(struct query *r)
{
	struct dns_inst *d = r->d;
	const struct xp_host *host = d->host;
	uint16_t id;

	while (r->next_ups < d->n_ups) {
		const struct upstream *u = &d->ups[r->next_ups++];

		if (strcmp(u->tag, r->tag))
			continue;
		r->cur = u;
		/* a fresh random id for every exchange (RFC 5452) */
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			id = (uint16_t)(uintptr_t)r ^ (uint16_t)host->now_ms(r->loop);
		dns_put16(r->msg, id);
		r->x = xfer_start(&d->uctx, r->loop, u, r->tcp_retry, r->msg, r->len, &r->m.q,
				  xfer_done, r);
		if (!r->x) {
			host->counter_add(d->failures, 1);
			host->log(d->self, XP_LOG_DEBUG, "%s: upstream %s: cannot start: %s",
				  r->name, u->spec, strerror(errno));
			r->tcp_retry = 0;
			continue;
		}
		host->timer_set(r->timer, d->cfg->timeout_ms, 0);
		return;
	}
	host->log(d->self, XP_LOG_DEBUG, "%s: every upstream failed", r->name);
	if (qtab_del(d, r->q, r)) {
		answer_error(d, r->q, &r->m, DNS_R_SERVFAIL);
		query_free(r);
	}
}

/* ---------------------------------------------------------------------------- entry points */

static int dns_query(void *inst, xp_dns_query_t *q, const uint8_t *msg, size_t len)
{
	struct dns_inst *d = inst;
	const struct xp_host *host = d->host;
	const struct xp_conn_info *ci = host->dns_query_info(q);
	uint8_t out[DNS_MAX_MSG];
	struct query *r;
	ssize_t n;
	int rc;

	host->counter_add(d->queries, 1);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	rc = dns_parse(msg, len, &r->m, NULL, NULL);
	if (rc || (r->m.flags & DNS_F_QR)) {
		host->counter_add(d->malformed, 1);
		free(r);
		host->dns_drop(q, rc ? dns_strerror(rc) : "not a query (QR set)");
		return 0;
	}
	r->udp_client = !ci || ci->l4proto != IPPROTO_TCP;
	if (DNS_OPCODE(r->m.flags) != 0) {
		answer_error(d, q, &r->m, 4 /* NOTIMP */);
		free(r);
		return 0;
	}
	dns_name_text(r->m.q.name, r->m.q.name_len, r->name, sizeof(r->name));

	if (d->cache) {
		n = dns_cache_get(d->cache, &r->m, out, sizeof(out), host->now_ms(host->dns_query_loop(q)));
		if (n > 0) {
			host->counter_add(d->hits, 1);
			deliver(d, q, &r->m, r->name, out, (size_t)n, r->udp_client);
			free(r);
			return 0;
		}
	}

	r->d = d;
	r->q = q;
	r->loop = host->dns_query_loop(q);
	r->tag = ups_rule_select(d->rules, d->n_rules, r->name);
	r->msg = malloc(len);
	r->timer = host->timer_new(r->loop, timer_cb, r);
	if (!r->msg || !r->timer) {
		query_free(r);
		return -ENOMEM;
	}
	memcpy(r->msg, msg, len);
	r->len = len;
	qtab_add(d, r);
	try_next(r);
	return 0;
}

static void dns_cancel(void *inst, xp_dns_query_t *q)
{
	struct query *r = qtab_del(inst, q, NULL);

	if (r)
		query_free(r);
}

static int setup_upstreams(struct dns_inst *d, const struct dns_cfg *cfg)
{
	const struct xp_host *host = d->host;
	int need_tls = 0, n_default = 0, rc;
	char err[700];
	size_t i, j, n = 0;

	for (i = 0; cfg->upstream && cfg->upstream[i]; i++)
		n++;
	if (!n) {
		host->log(d->self, XP_LOG_ERROR, "upstream: at least one is required");
		return -EINVAL;
	}
	d->ups = calloc(n, sizeof(*d->ups));
	if (!d->ups)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct upstream *u = &d->ups[i];

		rc = upstream_parse(cfg->upstream[i], u, err, sizeof(err));
		if (rc) {
			host->log(d->self, XP_LOG_ERROR, "upstream %s", err);
			return rc;
		}
		if (u->via[0] && u->kind == UPS_UDP) {
			/* ABI 1.1 dials are TCP only: there is no way to hand a plugin's datagrams
			 * to an outbound, so this cannot work whatever the outbound supports */
			host->log(d->self, XP_LOG_ERROR,
				  "upstream %s: udp:// cannot go via an outbound (plugins can only "
				  "dial TCP through one); use tcp://, tls:// or https:// via %s",
				  u->spec, u->via);
			return -EINVAL;
		}
		if (u->via[0] && strcmp(u->via, "DIRECT")) {
			char sect[80];

			snprintf(sect, sizeof(sect), "outbound.%s", u->via);
			if (host->config_get && !host->config_get(sect, "plugin")) {
				host->log(d->self, XP_LOG_ERROR,
					  "upstream %s: no [outbound.%s] section", u->spec, u->via);
				return -EINVAL;
			}
		}
		if (u->via[0] && (host->abi_minor < 1 || !host->dial)) {
			host->log(d->self, XP_LOG_ERROR, "upstream %s: this xproxyd cannot dial",
				  u->spec);
			return -EINVAL;
		}
		need_tls |= u->kind == UPS_TLS || u->kind == UPS_HTTPS;
		n_default += !u->tag[0];
	}
	d->n_ups = n;
	if (!n_default) {
		host->log(d->self, XP_LOG_ERROR,
			  "upstream: every upstream has a tag; names no upstream_rule matches "
			  "need at least one without");
		return -EINVAL;
	}
	for (i = 0; cfg->upstream_rule && cfg->upstream_rule[i]; i++) {
		size_t before = d->n_rules;

		rc = ups_rule_parse(cfg->upstream_rule[i], &d->rules, &d->n_rules, err,
				    sizeof(err));
		if (rc) {
			host->log(d->self, XP_LOG_ERROR, "upstream_rule %s", rc == -EINVAL ? err : strerror(-rc));
			return rc;
		}
		for (j = 0; j < n && before < d->n_rules; j++)
			if (!strcmp(d->ups[j].tag, d->rules[before].tag))
				break;
		if (before < d->n_rules && j == n) {
			host->log(d->self, XP_LOG_ERROR,
				  "upstream_rule \"%s\": no upstream is tagged %s",
				  cfg->upstream_rule[i], d->rules[before].tag);
			return -EINVAL;
		}
	}
	if (need_tls) {
		d->uctx.tls_ctx = ups_tls_ctx_new(cfg->ca_file, err, sizeof(err));
		if (!d->uctx.tls_ctx) {
			host->log(d->self, XP_LOG_ERROR, "ca_file: %s", err);
			return -EINVAL;
		}
	}
	return 0;
}

static void dns_instance_free(void *inst)
{
	struct dns_inst *d = inst;
	size_t i;

	if (!d)
		return;
	/* the core cancels every pending query before freeing the instance; anything left is
	 * freed without an answer */
	for (i = 0; i < QTAB_BUCKETS; i++) {
		while (d->qtab[i]) {
			struct query *r = d->qtab[i];

			d->qtab[i] = r->hnext;
			query_free(r);
		}
	}
	ups_pools_free(&d->uctx); /* the pooled connections, each closed on its loop */
	ups_tls_ctx_free(d->uctx.tls_ctx);
	dns_cache_free(d->cache);
	free(d->ups);
	free(d->rules);
	pthread_mutex_destroy(&d->qlock);
	free(d);
}

static int dns_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			    const void *config, void **inst)
{
	const struct dns_cfg *cfg = config;
	struct dns_inst *d;
	int rc;

	if (host->abi_minor < 1 || !host->dns_answer || !host->dns_learn) {
		host->log(self, XP_LOG_ERROR, "needs xproxyd with plugin ABI 1.1 or newer");
		return -ENOTSUP;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->qlock, NULL);
	d->host = host;
	d->self = self;
	d->cfg = cfg;
	rc = setup_upstreams(d, cfg);
	if (rc)
		goto err;
	if (cfg->cache_size > 0) {
		d->cache = dns_cache_new((size_t)cfg->cache_size, cfg->cache_bytes,
					 (uint32_t)(cfg->cache_max_ttl_ms / 1000));
		if (!d->cache) {
			rc = -errno;
			goto err;
		}
	}
	rc = -ENOMEM;
	d->queries = host->counter_new(self, "queries", "client queries");
	d->hits = host->counter_new(self, "cache_hits", "queries answered from the cache");
	d->answers = host->counter_new(self, "answers", "answers released to clients");
	d->failures = host->counter_new(self, "upstream_failures",
					"upstream exchanges that failed or timed out");
	d->malformed = host->counter_new(self, "malformed",
					 "client queries and upstream answers that did not parse");
	d->mismatched = host->counter_new(self, "mismatched",
					  "upstream answers whose id or question did not match");
	d->servfail = host->counter_new(self, "servfail", "SERVFAIL answers we made");
	d->learn_errors = host->counter_new(self, "learn_errors", "dns_learn calls that failed");
	d->tcp_retries = host->counter_new(self, "tcp_retries", "truncated UDP answers retried");
	d->conns = host->counter_new(self, "upstream_conns",
				     "tcp/tls/https upstream connections opened");
	d->retries = host->counter_new(self, "upstream_retries",
				       "queries sent again after a server closed their connection");
	d->resumed = host->counter_new(self, "tls_resumed",
				       "tls/https upstream connections that resumed a TLS session");
	if (!d->queries || !d->hits || !d->answers || !d->failures || !d->malformed ||
	    !d->mismatched || !d->servfail || !d->learn_errors || !d->tcp_retries || !d->conns ||
	    !d->retries || !d->resumed)
		goto err;
	if (ups_pools_new(&d->uctx))
		goto err;
	d->uctx.host = host;
	d->uctx.self = self;
	d->uctx.malformed = d->malformed;
	d->uctx.mismatched = d->mismatched;
	d->uctx.conns = d->conns;
	d->uctx.retries = d->retries;
	d->uctx.resumed = d->resumed;
	d->uctx.idle_ms = cfg->upstream_idle_ms;
	*inst = d;
	return 0;
err:
	dns_instance_free(d);
	return rc;
}

static const struct xp_dns_ops dns_ops = {
	.size = sizeof(struct xp_dns_ops),
	.query = dns_query,
	.cancel = dns_cancel,
};

static const struct xp_plugin_desc dns_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "dns",
	.version = "1.0",
	.summary = "caching DNS forwarder over UDP, TCP, DoT and DoH that names flows by answer",
	.kinds = XP_KIND_DNS,
	.option_size = sizeof(struct xp_option),
	.options = dns_options,
	.config_size = sizeof(struct dns_cfg),
	.instance_new = dns_instance_new,
	.instance_free = dns_instance_free,
	.dns = &dns_ops,
};

XP_PLUGIN_EXPORT const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi);

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	return &dns_desc;
}
