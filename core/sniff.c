/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * sniff - [sniff] plugins, the offer/decide logic, routing by sniffed name. See sniff.h.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "outbound.h"
#include "plug.h"
#include "rules.h"
#include "sniff.h"
#include "udp.h"

/* ------------------------------------------------------------------------------------------ */
/* Decision logic (pure: unit-tested with fake sniffers)                                       */

bool sniff_name_ok(char *name, size_t cap)
{
	size_t len = strnlen(name, cap);
	size_t label = 0;

	if (len == cap)
		return false; /* not terminated within the buffer */
	if (len > 1 && name[len - 1] == '.')
		name[--len] = '\0';
	if (len == 0 || len > SNIFF_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c >= 'A' && c <= 'Z')
			name[i] = c = (char)(c - 'A' + 'a');
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

static bool claims(const struct sniffer *sn, uint8_t l4proto, uint16_t dport)
{
	uint32_t cap = l4proto == IPPROTO_TCP ? XP_SNIFF_TCP
		       : l4proto == IPPROTO_UDP ? XP_SNIFF_UDP
						: 0;

	if (!sn->ops || !sn->ops->sniff || !(sn->ops->caps & cap))
		return false;
	if (sn->ports)
		return sniff_ports_has(sn->ports, dport);
	if (!sn->ops->ports)
		return true;
	for (const uint16_t *p = sn->ops->ports; *p; p++)
		if (*p == dport)
			return true;
	return false;
}

bool sniff_begin(const struct sniff_set *s, uint8_t l4proto, uint16_t dport,
		 struct sniff_state *st)
{
	memset(st, 0, sizeof(*st));
	st->dport = dport;
	st->l4proto = l4proto;
	for (unsigned i = 0; s && i < s->n && i < SNIFF_MAX; i++) {
		if (!claims(&s->v[i], l4proto, dport))
			continue;
		st->pending |= 1u << i;
		uint32_t mb = s->v[i].ops->max_bytes ? s->v[i].ops->max_bytes : SNIFF_BYTES_MAX;

		if (mb > SNIFF_BYTES_MAX)
			mb = SNIFF_BYTES_MAX;
		if (mb > st->max_bytes)
			st->max_bytes = mb;
	}
	return st->pending != 0;
}

enum sniff_verdict sniff_offer(const struct sniff_set *s, struct sniff_state *st,
			       const struct xp_bytes *parts, unsigned count,
			       struct xp_sniff_result *res, const char **by)
{
	struct xp_sniff_input in = {
		.size = sizeof(in),
		.l4proto = st->l4proto,
		.dport = st->dport,
		.count = count,
		.parts = parts,
	};
	size_t total = 0;

	for (unsigned i = 0; i < count; i++)
		total += parts[i].len;
	for (unsigned i = 0; s && i < s->n && st->pending; i++) {
		const struct sniffer *sn = &s->v[i];
		uint32_t bit = 1u << i;
		int rc;

		if (!(st->pending & bit))
			continue;
		memset(res, 0, sizeof(*res));
		res->size = sizeof(*res);
		st->offers++;
		rc = sn->ops->sniff(sn->inst, &in, res);
		if (rc == XP_SNIFF_FOUND) {
			res->name[sizeof(res->name) - 1] = '\0';
			res->protocol[sizeof(res->protocol) - 1] = '\0';
			res->alpn[sizeof(res->alpn) - 1] = '\0';
			if (sniff_name_ok(res->name, sizeof(res->name))) {
				if (by)
					*by = sn->name;
				return SNIFF_FOUND;
			}
			st->refused++; /* a name that is no name: as good as NOT_MINE */
			st->pending &= ~bit;
			continue;
		}
		uint32_t mb = sn->ops->max_bytes ? sn->ops->max_bytes : SNIFF_BYTES_MAX;

		/* MORE past its own max_bytes will never be answered: give up on it */
		if (rc == XP_SNIFF_MORE && total < mb && total < SNIFF_BYTES_MAX)
			continue;
		if (rc != XP_SNIFF_MORE && rc != XP_SNIFF_NOT_MINE)
			st->refused++; /* negative (error) or unknown answers */
		st->pending &= ~bit;
	}
	return st->pending ? SNIFF_MORE : SNIFF_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* The live set                                                                                */

struct sniff_inst {
	struct plugin *plugin;
	void *config;
	void *inst;
	struct xp_handle handle;
	struct sniff_ports ports; /* [sniff.NAME] ports, when has_ports */
	bool has_ports;
};

struct live_set {
	struct sniff_set set; /* v[i].inst = insts[i].inst */
	struct sniff_inst insts[SNIFF_MAX];
	atomic_int refs;
	char *fingerprint;
};

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct live_set *live;
static struct sniff_env env;

static struct {
	atomic_uint_fast64_t flows, unclaimed, found, none, timeouts, cached, refused;
} stats;

void sniff_stats_get(struct sniff_stats *out)
{
	out->flows = atomic_load(&stats.flows);
	out->unclaimed = atomic_load(&stats.unclaimed);
	out->found = atomic_load(&stats.found);
	out->none = atomic_load(&stats.none);
	/* TCP counts here (tcp_decide); the UDP core decides a session at the deadline itself,
	 * without the hook, and counts it in udp_stats */
	out->timeouts = atomic_load(&stats.timeouts) + atomic_load(&udp_stats.sniff_timeout);
	out->cached = atomic_load(&stats.cached);
	out->refused = atomic_load(&stats.refused);
}

static void set_free(struct live_set *ls)
{
	for (unsigned i = 0; i < ls->set.n; i++) {
		struct sniff_inst *si = &ls->insts[i];

		if (si->inst && si->plugin->desc.instance_free)
			si->plugin->desc.instance_free(si->inst);
		if (si->config)
			plug_config_free(si->plugin, si->config);
	}
	free(ls->fingerprint);
	free(ls);
}

static void set_free_post(void *arg)
{
	set_free(arg);
}

static void set_put(struct live_set *ls)
{
	struct xp_loop *m, *cur;

	if (!ls || atomic_fetch_sub(&ls->refs, 1) != 1)
		return;
	/* instance_free belongs on the main thread (plugin.h) */
	m = loop_main();
	cur = loop_current();
	if (m && cur && cur != m && loop_post(m, set_free_post, ls) == 0)
		return;
	set_free(ls);
}

static struct live_set *set_get(void)
{
	struct live_set *ls;

	pthread_mutex_lock(&live_lock);
	ls = live;
	if (ls)
		atomic_fetch_add(&ls->refs, 1);
	pthread_mutex_unlock(&live_lock);
	return ls;
}

static void set_replace(struct live_set *ls)
{
	struct live_set *old;

	pthread_mutex_lock(&live_lock);
	old = live;
	live = ls;
	pthread_mutex_unlock(&live_lock);
	set_put(old);
}

bool sniff_enabled(void)
{
	bool on;

	pthread_mutex_lock(&live_lock);
	on = live && live->set.n;
	pthread_mutex_unlock(&live_lock);
	return on;
}

void sniff_clear(void)
{
	set_replace(NULL);
}

void sniff_set_env(const struct sniff_env *e)
{
	env = *e;
}

static void append_err(char **errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append_err(char **errors, const char *fmt, ...)
{
	char line[768];
	size_t old, add;
	char *n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (!errors)
		return;
	old = *errors ? strlen(*errors) : 0;
	add = strlen(line);
	n = realloc(*errors, old + add + 2);
	if (!n)
		return;
	memcpy(n + old, line, add);
	n[old + add] = '\n';
	n[old + add + 1] = '\0';
	*errors = n;
}

static bool is_sniff_section(const struct cfg_section *sec)
{
	return !strncmp(sec->name, "sniff.", 6);
}

/* What a live set was made from: the same text (the list, the timeout, the cache and every
 * [sniff.NAME] key) means the same set (no new instances). */
static char *fingerprint(const struct cfg *cfg)
{
	size_t len = 64;
	char *fp, *q;

	for (size_t i = 0; i < cfg->sniff.n_plugins; i++)
		len += strlen(cfg->sniff.plugins[i]) + 1;
	for (size_t i = 0; i < cfg->n_sections; i++) {
		const struct cfg_section *sec = &cfg->sections[i];

		if (!is_sniff_section(sec))
			continue;
		len += strlen(sec->name) + 3;
		for (size_t k = 0; k < sec->n_kv; k++)
			len += strlen(sec->kv[k].key) + strlen(sec->kv[k].value) + 3;
	}
	fp = malloc(len);
	if (!fp)
		return NULL;
	q = fp + sprintf(fp, "%llu/%d:", (unsigned long long)cfg->sniff.timeout_ms,
			 cfg->sniff.cache);
	for (size_t i = 0; i < cfg->sniff.n_plugins; i++)
		q += sprintf(q, "%s,", cfg->sniff.plugins[i]);
	for (size_t i = 0; i < cfg->n_sections; i++) {
		const struct cfg_section *sec = &cfg->sections[i];

		if (!is_sniff_section(sec))
			continue;
		q += sprintf(q, "[%s]", sec->name);
		for (size_t k = 0; k < sec->n_kv; k++)
			q += sprintf(q, "%s=%s\n", sec->kv[k].key, sec->kv[k].value);
	}
	return fp;
}

/* The [sniff.NAME] section of the sniffer listed as `listed` (plugin p): by the listed name or
 * the plugin's own ("http" / "http_sniff"), not both. 0 (*out NULL: none) or -EINVAL. */
static int options_section(const struct cfg *cfg, const char *listed, const struct plugin *p,
			   const struct cfg_section **out, char **errors)
{
	const struct cfg_section *a = NULL, *b = NULL;
	char name[300];

	snprintf(name, sizeof(name), "sniff.%s", listed);
	a = cfg_section(cfg, name);
	if (strcmp(listed, p->name)) {
		snprintf(name, sizeof(name), "sniff.%s", p->name);
		b = cfg_section(cfg, name);
	}
	if (a && b) {
		append_err(errors, "%s:%d: [%s]: the options of sniffer %s are already in [%s] "
				   "(line %d)",
			   cfg->path, b->line, b->name, p->name, a->name, a->line);
		return -EINVAL;
	}
	*out = a ? a : b;
	return 0;
}

/* Fill one instance's options from `sec`: the core's `ports`, the rest the plugin's table. */
static int fill_options(const struct cfg *cfg, const struct cfg_section *sec,
			struct sniff_inst *si, char **errors)
{
	struct cfg_section view = *sec;
	int ports_line = 0, rc;
	char msg[256];

	view.kv = calloc(sec->n_kv + 1, sizeof(*view.kv));
	if (!view.kv)
		return -ENOMEM;
	view.n_kv = 0;
	rc = 0;
	for (size_t k = 0; k < sec->n_kv; k++) {
		const struct cfg_kv *kv = &sec->kv[k];

		if (strcmp(kv->key, "ports")) {
			view.kv[view.n_kv++] = *kv;
			continue;
		}
		if (ports_line) {
			append_err(errors, "%s:%d: [%s] ports: set twice (first at line %d)",
				   cfg->path, kv->line, sec->name, ports_line);
			rc = -EINVAL;
			continue;
		}
		ports_line = kv->line;
		if (sniff_ports_parse(kv->value, &si->ports, msg, sizeof(msg))) {
			append_err(errors, "%s:%d: [%s] ports: %s", cfg->path, kv->line, sec->name,
				   msg);
			rc = -EINVAL;
			continue;
		}
		si->has_ports = true;
	}
	/* the plugin's keys are checked even after a bad `ports`, so every error is reported */
	int frc = plug_config_fill(si->plugin, cfg->path, &view, &si->config, errors);

	free(view.kv);
	return rc ? rc : frc;
}

int sniff_apply(const struct cfg *cfg, struct plug_registry *reg, const struct xp_host *host,
		bool check_only, char **errors)
{
	const struct cfg_sniff *cs = &cfg->sniff;
	struct cfg_section empty = {.name = "sniff", .line = cs->line};
	size_t n_opt_sections = 0, n_used = 0;
	struct live_set *ls;
	char err[512];
	int rc = 0;

	if (!cs->present || !cs->n_plugins) {
		if (!check_only)
			sniff_clear();
		return 0;
	}
	if (cs->n_plugins > SNIFF_MAX) {
		append_err(errors, "%s:%d: [sniff] plugins: at most %d", cfg->path, cs->line,
			   SNIFF_MAX);
		return -EINVAL;
	}
	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	atomic_init(&ls->refs, 1);
	ls->fingerprint = fingerprint(cfg);
	if (!ls->fingerprint) {
		free(ls);
		return -ENOMEM;
	}
	pthread_mutex_lock(&live_lock);
	bool same = live && !strcmp(live->fingerprint, ls->fingerprint);
	pthread_mutex_unlock(&live_lock);
	if (same && !check_only) {
		set_free(ls);
		return 0; /* unchanged: flows keep the same instances */
	}
	ls->set.timeout_ms = cs->timeout_ms;
	ls->set.cache = cs->cache;
	for (size_t i = 0; i < cfg->n_sections; i++)
		if (is_sniff_section(&cfg->sections[i]))
			n_opt_sections++;
	for (size_t i = 0; i < cs->n_plugins; i++) {
		struct sniff_inst *si = &ls->insts[ls->set.n];
		const struct cfg_section *osec = NULL;
		struct plugin *p = NULL;

		rc = plug_resolve(reg, cs->plugins[i], &p, err, sizeof(err));
		/* "http" is also the HTTP proxy outbound: its sniffer is "http_sniff", and a
		 * plain name in [sniff] means the sniffer of that protocol */
		if ((rc || !plug_has_kind(p, XP_KIND_SNIFFER)) && !strchr(cs->plugins[i], '/')) {
			char alt[64];
			struct plugin *q = NULL;

			snprintf(alt, sizeof(alt), "%s_sniff", cs->plugins[i]);
			if (plug_resolve(reg, alt, &q, err, sizeof(err)) == 0 &&
			    plug_has_kind(q, XP_KIND_SNIFFER)) {
				p = q;
				rc = 0;
			} else if (rc) {
				plug_resolve(reg, cs->plugins[i], &p, err, sizeof(err));
			}
		}
		if (rc) {
			append_err(errors, "%s:%d: [sniff] plugins: %s", cfg->path, cs->line, err);
			goto err_set;
		}
		if (!plug_has_kind(p, XP_KIND_SNIFFER)) {
			append_err(errors, "%s:%d: [sniff] plugins: %s is not a sniffer plugin",
				   cfg->path, cs->line, p->name);
			rc = -EINVAL;
			goto err_set;
		}
		rc = check_only ? 0 : plug_init(p, host, err, sizeof(err));
		if (rc) {
			append_err(errors, "%s:%d: [sniff] plugin %s: %s", cfg->path, cs->line,
				   p->name, err);
			goto err_set;
		}
		si->plugin = p;
		si->handle.kind = HANDLE_INSTANCE;
		si->handle.plugin = p;
		si->handle.owner = ls;
		snprintf(si->handle.name, sizeof(si->handle.name), "sniff.%s", p->name);
		for (size_t k = 0; k < p->n_options; k++) {
			if (!strcmp(p->options[k].name, "ports")) {
				/* the core's key there: the plugin's option could never be set */
				append_err(errors,
					   "%s:%d: [sniff] plugin %s declares an option \"ports\", "
					   "which [sniff.NAME] keeps for the core",
					   cfg->path, cs->line, p->name);
				rc = -EINVAL;
				goto err_set;
			}
		}
		rc = options_section(cfg, cs->plugins[i], p, &osec, errors);
		if (rc)
			goto err_set;
		if (osec)
			n_used++;
		rc = fill_options(cfg, osec ? osec : &empty, si, errors);
		if (rc)
			goto err_set;
		ls->set.n++;
		if (check_only)
			continue;
		err[0] = '\0';
		si->handle.last_error = err;
		si->handle.last_error_len = sizeof(err);
		rc = p->desc.instance_new(p->state, host, &si->handle, si->config, &si->inst);
		si->handle.last_error = NULL;
		if (rc) {
			append_err(errors, "%s:%d: [sniff] plugin %s: %s", cfg->path, cs->line,
				   p->name, err[0] ? err : strerror(rc < 0 ? -rc : EINVAL));
			rc = -EINVAL;
			goto err_set;
		}
		ls->set.v[ls->set.n - 1] = (struct sniffer){
			.name = p->name,
			.ops = &p->sniffer,
			.inst = si->inst,
			.ports = si->has_ports ? &si->ports : NULL,
		};
	}
	if (n_used < n_opt_sections) {
		/* a [sniff.NAME] no listed sniffer took: a typo would silently do nothing */
		for (size_t i = 0; i < cfg->n_sections; i++) {
			const struct cfg_section *sec = &cfg->sections[i];
			bool used = false;

			if (!is_sniff_section(sec))
				continue;
			for (unsigned k = 0; k < ls->set.n && !used; k++)
				used = !strcmp(sec->name + 6, ls->insts[k].plugin->name) ||
				       !strcmp(sec->name + 6, cs->plugins[k]);
			if (!used)
				append_err(errors,
					   "%s:%d: [%s]: no sniffer %s in [sniff] plugins (line %d)",
					   cfg->path, sec->line, sec->name, sec->name + 6,
					   cs->line);
		}
		rc = -EINVAL;
		goto err_set;
	}
	if (check_only) {
		set_free(ls);
		return 0;
	}
	set_replace(ls);
	return 0;

err_set:
	set_free(ls);
	return rc ? rc : -EINVAL;
}

/* ------------------------------------------------------------------------------------------ */
/* Routing by name                                                                             */

static void addr16(uint8_t out[16], const union xp_sockaddr *a, uint16_t *port)
{
	memset(out, 0, 16);
	*port = 0;
	if (a->sa.sa_family == AF_INET) {
		rule_addr_from_v4(out, a->in.sin_addr.s_addr);
		*port = ntohs(a->in.sin_port);
	} else if (a->sa.sa_family == AF_INET6) {
		memcpy(out, &a->in6.sin6_addr, 16);
		*port = ntohs(a->in6.sin6_port);
	}
}

/* The full [route] rules for the flow with `name` (NULL: no name). */
static int route_named(const struct xp_conn_info *info, const char *name, const char *by,
		       struct conn_route *out)
{
	const struct rule_list *rl = env.rules ? env.rules(env.ctx) : NULL;
	struct rule_flow f = {.l4proto = (uint8_t)info->l4proto, .domain = name};
	char dns_name[256];
	const struct rule *r;

	/* no sniffed name: the one DNS gave the address, if any (not cached: it is DNS's) */
	if (!name && env.lookup &&
	    env.lookup(&info->dst, (uint8_t)info->l4proto, dns_name, sizeof(dns_name)) == 0 &&
	    sniff_name_ok(dns_name, sizeof(dns_name))) {
		f.domain = dns_name;
		snprintf(out->domain, sizeof(out->domain), "%s", dns_name);
	}

	out->ob = NULL;
	addr16(f.saddr, &info->client, &f.sport);
	addr16(f.daddr, &info->dst, &f.dport);
	if (!rl) {
		out->why = "no rules";
		return -ENOENT;
	}
	r = rule_list_match(rl, &f);
	out->rule_id = r->id;
	out->source = r->id ? XP_SOURCE_RULE : XP_SOURCE_FALLBACK;
	if (name) {
		snprintf(out->domain, sizeof(out->domain), "%s", name);
		out->sniffer = by;
	}
	switch (r->kind) {
	case RT_BLOCK:
		out->route = XP_ROUTE_BLOCK;
		out->why = "blocked by rule";
		return 0;
	case RT_OUTBOUND:
		out->route = XP_ROUTE_PROXY;
		out->ob = outbound_resolve(r->target, &out->via);
		break;
	default: /* DIRECT (and DNS, which only port-53 flows get): the flow is here already */
		out->route = XP_ROUTE_DIRECT;
		out->ob = env.direct ? env.direct(env.ctx) : NULL;
		break;
	}
	if (!out->ob) {
		out->why = "no outbound for the rule";
		return -ENOENT;
	}
	return 0;
}

static void cache_name(const struct live_set *ls, const struct xp_conn_info *info,
		       const char *name)
{
	uint16_t port = 0;

	if (!ls->set.cache || !env.learn)
		return;
	if (info->dst.sa.sa_family == AF_INET)
		port = ntohs(info->dst.in.sin_port);
	else if (info->dst.sa.sa_family == AF_INET6)
		port = ntohs(info->dst.in6.sin6_port);
	if (env.learn(name, &info->dst, port, (uint8_t)info->l4proto, env.cache_ttl_ms) == 0)
		atomic_fetch_add(&stats.cached, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* TCP: conn.c's SNIFF state                                                                   */

struct flow_sniff {
	struct live_set *ls;
	struct sniff_state st;
	struct xp_sniff_result res;
	const char *by;
	enum sniff_verdict v;
	bool decided; /* UDP: udp_sess_decide() was called */
};

static uint16_t dst_port(const struct xp_conn_info *info)
{
	uint8_t a[16];
	uint16_t port;

	addr16(a, &info->dst, &port);
	return port;
}

static int tcp_begin(const struct xp_conn_info *info, void **state, size_t *max_bytes,
		     uint64_t *timeout_ms)
{
	struct flow_sniff *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return -ENOMEM;
	atomic_fetch_add(&stats.flows, 1);
	fs->ls = set_get();
	fs->v = SNIFF_NONE;
	*max_bytes = 0;
	if (fs->ls && sniff_begin(&fs->ls->set, IPPROTO_TCP, dst_port(info), &fs->st)) {
		fs->v = SNIFF_MORE;
		*max_bytes = fs->st.max_bytes;
		*timeout_ms = fs->ls->set.timeout_ms;
	} else {
		atomic_fetch_add(&stats.unclaimed, 1);
	}
	*state = fs;
	return 0;
}

static int tcp_offer(void *state, const uint8_t *buf, size_t len)
{
	struct flow_sniff *fs = state;
	struct xp_bytes part = {.data = buf, .len = len};

	fs->v = sniff_offer(&fs->ls->set, &fs->st, &part, 1, &fs->res, &fs->by);
	return fs->v != SNIFF_MORE;
}

static void flow_sniff_free(struct flow_sniff *fs)
{
	if (fs->st.refused)
		atomic_fetch_add(&stats.refused, fs->st.refused);
	set_put(fs->ls);
	free(fs);
}

static int tcp_decide(void *state, const struct xp_conn_info *info, struct conn_route *out)
{
	struct flow_sniff *fs = state;
	const char *name = NULL;
	int rc;

	if (fs->v == SNIFF_FOUND) {
		name = fs->res.name;
		atomic_fetch_add(&stats.found, 1);
	} else if (fs->v == SNIFF_NONE && fs->st.pending == 0 && fs->st.offers) {
		atomic_fetch_add(&stats.none, 1);
	} else if (fs->v == SNIFF_MORE) {
		atomic_fetch_add(&stats.timeouts, 1); /* timeout, EOF or max_bytes */
	}
	rc = route_named(info, name, fs->by, out);
	if (name && rc == 0)
		cache_name(fs->ls, info, name);
	if (log_enabled(XP_LOG_DEBUG))
		log_debug("sniff: conn %llu %s%s%s -> %s (rule %u)", (unsigned long long)info->id,
			  name ? name : "no name", name ? " by " : "", name ? fs->by : "",
			  out->ob ? out->ob->name : (out->why ? out->why : "-"), out->rule_id);
	flow_sniff_free(fs);
	return rc;
}

static void tcp_abort(void *state)
{
	flow_sniff_free(state);
}

/* ------------------------------------------------------------------------------------------ */
/* UDP: udp.c's sniff hook                                                                     */

static void udp_offer_cb(void *ctx, struct udp_sess *s, const struct xp_conn_info *info,
			 const struct xp_bytes *parts, unsigned count)
{
	struct flow_sniff *fs = udp_sess_user(s);
	struct conn_route rt = {0};
	const char *name = NULL;
	int rc;

	if (!fs) {
		fs = calloc(1, sizeof(*fs));
		if (!fs) {
			udp_sess_decide(s, XP_ROUTE_NONE, NULL, 0);
			return;
		}
		atomic_fetch_add(&stats.flows, 1);
		fs->ls = set_get();
		udp_sess_set_user(s, fs);
		if (!fs->ls || !sniff_begin(&fs->ls->set, IPPROTO_UDP, dst_port(info), &fs->st)) {
			atomic_fetch_add(&stats.unclaimed, 1);
			fs->v = SNIFF_NONE;
			goto decide;
		}
	}
	if (fs->decided)
		return; /* defensive: the UDP core stops offering once decided */
	fs->v = sniff_offer(&fs->ls->set, &fs->st, parts, count, &fs->res, &fs->by);
	if (fs->v == SNIFF_MORE)
		return;
	if (fs->v == SNIFF_NONE)
		atomic_fetch_add(&stats.none, 1);
decide:
	if (fs->v == SNIFF_FOUND) {
		name = fs->res.name;
		atomic_fetch_add(&stats.found, 1);
		udp_sess_set_domain(s, name);
		udp_sess_set_sniffer(s, fs->by);
	}
	fs->decided = true;
	rc = route_named(info, name, fs->by, &rt);
	if (name && rc == 0)
		cache_name(fs->ls, info, name);
	/* the same line as tcp_decide's; before udp_sess_decide, which may free the session */
	if (log_enabled(XP_LOG_DEBUG))
		log_debug("sniff: udp %llu %s%s%s -> %s (rule %u)", (unsigned long long)info->id,
			  name ? name : "no name", name ? " by " : "", name ? fs->by : "",
			  rt.ob ? rt.ob->name : (rt.why ? rt.why : "-"), rt.rule_id);
	if (rc < 0 && rt.route != XP_ROUTE_BLOCK)
		rc = udp_sess_decide(s, XP_ROUTE_NONE, NULL, 0); /* the UDP core's rules path */
	else
		rc = udp_sess_decide(s, rt.route,
				     rt.route == XP_ROUTE_PROXY && rt.ob ? rt.ob->name : NULL,
				     rt.rule_id);
	if (rt.ob)
		outbound_put(rt.ob);
	/* s may be gone now (an unknown outbound drops the session): do not touch it */
	(void)rc;
}

static void udp_closed_cb(void *ctx, struct udp_sess *s)
{
	struct flow_sniff *fs = udp_sess_user(s);

	if (fs) {
		udp_sess_set_user(s, NULL);
		flow_sniff_free(fs);
	}
}

void sniff_install_hooks(void)
{
	static const struct conn_sniff_hook th = {
		.begin = tcp_begin,
		.offer = tcp_offer,
		.decide = tcp_decide,
		.abort = tcp_abort,
	};
	static const struct udp_sniff_hook uh = {
		.offer = udp_offer_cb,
		.closed = udp_closed_cb,
	};

	conn_set_sniff_hook(&th);
	udp_set_sniff_hook(&uh);
}
