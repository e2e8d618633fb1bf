/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * group - [group.NAME] outbound groups. See group.h.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "group.h"

#define GROUP_NAME_MAX 31 /* as outbound names: both live in one id space */

const char *group_policy_name(enum group_policy p)
{
	static const char *const names[] = { "fallback", "fixed", "random", "min-latency" };

	return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "?";
}

bool group_needs_health(const struct group *g)
{
	return g->policy != GROUP_FIXED;
}

int group_find(const struct group_set *s, const char *name)
{
	for (size_t i = 0; s && i < s->n; i++)
		if (!strcmp(s->g[i].name, name))
			return (int)i;
	return -1;
}

static void group_free_one(struct group *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->m[i].name);
	free(g->m);
	free(g->name);
	free(g->check_host);
	free(g->check_path);
}

void group_set_free(struct group_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		group_free_one(&s->g[i]);
	free(s->g);
	free(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing                                                                                      */

struct gp {
	void (*err)(void *arg, int line, const char *msg);
	void *arg;
	bool failed, nomem;
};

static void gerr(struct gp *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void gerr(struct gp *p, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->failed = true;
	if (p->err)
		p->err(p->arg, line, msg);
}

static bool valid_name(const char *n)
{
	size_t len = strlen(n);

	if (!len || len > GROUP_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && n[i] != '_' && n[i] != '-')
			return false;
	return true;
}

static bool reserved(const char *n)
{
	static const char *const r[] = { "DIRECT", "BLOCK", "INSPECT", "DNS", "REJECT" };

	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		if (!strcasecmp(n, r[i]))
			return true;
	return false;
}

/* "host:port" or "[v6]:port" into host (no brackets) and port. */
static int split_hostport(const char *s, size_t len, char **host, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hlen;
	char *end, pbuf[8];
	unsigned long v;

	if (len && s[0] == '[') {
		const char *rb = memchr(s, ']', len);

		if (!rb || rb + 1 >= s + len || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hlen = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = NULL;
		for (size_t i = 0; i < len; i++)
			if (s[i] == ':')
				colon = s + i;
		if (!colon)
			return -EINVAL;
		hlen = (size_t)(colon - s);
	}
	if (!hlen || (size_t)(s + len - colon - 1) == 0 || (size_t)(s + len - colon - 1) > 5)
		return -EINVAL;
	memcpy(pbuf, colon + 1, (size_t)(s + len - colon - 1));
	pbuf[s + len - colon - 1] = '\0';
	if (!isdigit((unsigned char)pbuf[0]))
		return -EINVAL;
	v = strtoul(pbuf, &end, 10);
	if (*end || v == 0 || v > 65535)
		return -EINVAL;
	for (size_t i = 0; i < hlen; i++)
		if (isspace((unsigned char)h[i]) || h[i] == '/' || h[i] == '@')
			return -EINVAL;
	*host = strndup(h, hlen);
	if (!*host)
		return -ENOMEM;
	*port = (uint16_t)v;
	return 0;
}

/* http://HOST[:PORT][/PATH] */
static int parse_url(struct group *g, const char *url)
{
	const char *hp, *slash;
	size_t hlen;
	int ret;

	if (strncasecmp(url, "http://", 7))
		return -EINVAL;
	hp = url + 7;
	slash = strchr(hp, '/');
	hlen = slash ? (size_t)(slash - hp) : strlen(hp);
	if (!hlen)
		return -EINVAL;
	ret = split_hostport(hp, hlen, &g->check_host, &g->check_port);
	if (ret == -EINVAL) {
		/* no port: 80 (a bracketed v6 address without a port is "[v6]") */
		const char *h = hp;
		size_t l = hlen;

		if (hp[0] == '[' && hp[hlen - 1] == ']') {
			h++;
			l -= 2;
		}
		if (!l || (memchr(h, ':', l) != NULL && hp[0] != '['))
			return -EINVAL;
		for (size_t i = 0; i < l; i++)
			if (isspace((unsigned char)h[i]) || h[i] == '@')
				return -EINVAL;
		g->check_host = strndup(h, l);
		if (!g->check_host)
			return -ENOMEM;
		g->check_port = 80;
	} else if (ret) {
		return ret;
	}
	for (const char *c = slash ? slash : ""; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return -EINVAL; /* it goes into a request line as is */
	g->check_path = strdup(slash ? slash : "/");
	return g->check_path ? 0 : -ENOMEM;
}

static int add_member(struct group *g, const char *name, size_t len)
{
	struct group_member *v = realloc(g->m, (g->n + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	g->m = v;
	memset(&v[g->n], 0, sizeof(v[g->n]));
	v[g->n].name = strndup(name, len);
	if (!v[g->n].name)
		return -ENOMEM;
	v[g->n].group = -1;
	v[g->n].h.alive = true;
	g->n++;
	return 0;
}

static void parse_section(struct gp *p, const struct cfg *cfg, const struct cfg_section *sec,
			  struct group *g)
{
	const char *url = NULL, *target = NULL;
	int members_line = 0, url_line = 0, target_line = 0, policy_line = 0, interrupt_line = 0;
	uint64_t v;

	g->policy = GROUP_FALLBACK;
	g->interval_ms = 30 * 1000;
	g->timeout_ms = 5 * 1000;
	g->tolerance = 3;
	g->current = -1;
	for (size_t i = 0; i < sec->n_kv; i++) {
		const struct cfg_kv *kv = &sec->kv[i];

		if (!strcmp(kv->key, "members")) {
			const char *s = kv->value;

			if (members_line) {
				gerr(p, kv->line,
				     "duplicate key 'members' in [group.%s] (first at line %d)",
				     g->name, members_line);
				continue;
			}
			members_line = kv->line;
			while (*s) {
				const char *e;
				size_t len;

				while (isspace((unsigned char)*s) || *s == ',')
					s++;
				if (!*s)
					break;
				e = s;
				while (*e && *e != ',' && !isspace((unsigned char)*e))
					e++;
				len = (size_t)(e - s);
				for (size_t j = 0; j < g->n; j++)
					if (strlen(g->m[j].name) == len && !memcmp(g->m[j].name, s, len))
						gerr(p, kv->line, "[group.%s] lists member '%.*s' twice",
						     g->name, (int)len, s);
				if (add_member(g, s, len)) {
					p->nomem = true;
					return;
				}
				s = e;
			}
		} else if (!strcmp(kv->key, "policy")) {
			static const char *const names[] = { "fallback", "fixed", "random",
							     "min-latency" };
			bool ok = false;

			policy_line = kv->line;
			for (size_t j = 0; j < 4 && !ok; j++)
				if (!strcmp(kv->value, names[j])) {
					g->policy = (enum group_policy)j;
					ok = true;
				}
			if (!ok)
				gerr(p, kv->line,
				     "[group.%s] policy '%.64s' (expected fixed, random, min-latency "
				     "or fallback)",
				     g->name, kv->value);
		} else if (!strcmp(kv->key, "check_url")) {
			url = kv->value;
			url_line = kv->line;
		} else if (!strcmp(kv->key, "check_target")) {
			target = kv->value;
			target_line = kv->line;
		} else if (!strcmp(kv->key, "interval") || !strcmp(kv->key, "timeout")) {
			if (cfg_parse_duration_ms(kv->value, &v) || v < 100 || v > 24 * 3600 * 1000ull) {
				gerr(p, kv->line,
				     "[group.%s] %s '%.64s' (expected a duration from 100ms to 24h)",
				     g->name, kv->key, kv->value);
				continue;
			}
			*(kv->key[0] == 'i' ? &g->interval_ms : &g->timeout_ms) = v;
		} else if (!strcmp(kv->key, "interrupt")) {
			if (cfg_parse_bool(kv->value, &g->interrupt))
				gerr(p, kv->line, "[group.%s] interrupt '%.64s' (expected yes or no)",
				     g->name, kv->value);
			interrupt_line = kv->line;
		} else if (!strcmp(kv->key, "tolerance")) {
			if (cfg_parse_u64(kv->value, &v) || v < 1 || v > 100) {
				gerr(p, kv->line,
				     "[group.%s] tolerance '%.64s' (expected 1 to 100 failures)",
				     g->name, kv->value);
				continue;
			}
			g->tolerance = (unsigned)v;
		} else {
			gerr(p, kv->line,
			     "unknown key '%.64s' in [group.%s] (expected members, policy, "
			     "check_url, check_target, interval, timeout, tolerance, interrupt)",
			     kv->key, g->name);
		}
	}
	(void)policy_line;
	if (g->interrupt && !group_needs_health(g))
		gerr(p, interrupt_line,
		     "[group.%s] interrupt = yes needs health checks (policy fixed has none)",
		     g->name);
	if (!members_line || !g->n)
		gerr(p, sec->line, "[group.%s] has no members", g->name);
	if (url && target)
		gerr(p, target_line, "[group.%s] sets both check_url (line %d) and check_target",
		     g->name, url_line);
	else if (url) {
		int ret = parse_url(g, url);

		if (ret == -ENOMEM)
			p->nomem = true;
		else if (ret)
			gerr(p, url_line,
			     "[group.%s] check_url '%.128s' (expected http://HOST[:PORT]/PATH)",
			     g->name, url);
	} else if (target) {
		int ret = split_hostport(target, strlen(target), &g->check_host, &g->check_port);

		if (ret == -ENOMEM)
			p->nomem = true;
		else if (ret)
			gerr(p, target_line, "[group.%s] check_target '%.128s' (expected HOST:PORT)",
			     g->name, target);
	} else if (group_needs_health(g)) {
		gerr(p, sec->line,
		     "[group.%s] policy %s needs health checks: set check_url or check_target",
		     g->name, group_policy_name(g->policy));
	}
}

/* Depth-first walk; state 0 new, 1 on the current path, 2 done. */
static bool find_cycle(struct gp *p, struct group_set *s, size_t gi, unsigned char *state)
{
	struct group *g = &s->g[gi];

	state[gi] = 1;
	for (size_t i = 0; i < g->n; i++) {
		int sub = g->m[i].group;

		if (sub < 0)
			continue;
		if (state[sub] == 1) {
			gerr(p, g->line, "[group.%s] member '%s' makes a cycle of groups", g->name,
			     g->m[i].name);
			return true;
		}
		if (state[sub] == 0 && find_cycle(p, s, (size_t)sub, state))
			return true;
	}
	state[gi] = 2;
	return false;
}

int group_set_parse(const struct cfg *cfg, struct group_set **out,
		    void (*err)(void *arg, int line, const char *msg), void *arg)
{
	struct gp p = { .err = err, .arg = arg };
	struct group_set *s = calloc(1, sizeof(*s));
	unsigned char *state;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_sections; i++) {
		const struct cfg_section *sec = &cfg->sections[i];
		const char *name;
		struct group *v;

		if (strncmp(sec->name, "group.", 6))
			continue;
		name = sec->name + 6;
		if (!valid_name(name)) {
			gerr(&p, sec->line,
			     "invalid group name '%.64s' (expected 1-%d characters A-Z a-z 0-9 _ -)",
			     name, GROUP_NAME_MAX);
			continue;
		}
		if (reserved(name)) {
			gerr(&p, sec->line,
			     "group name '%s' is reserved (DIRECT, BLOCK, INSPECT, DNS and REJECT, "
			     "in any case)",
			     name);
			continue;
		}
		if (cfg_outbound_find(cfg, name)) {
			gerr(&p, sec->line, "[group.%s]: there is an [outbound.%s] too", name, name);
			continue;
		}
		if (group_find(s, name) >= 0) {
			gerr(&p, sec->line, "duplicate section [group.%s] (first at line %d)", name,
			     s->g[group_find(s, name)].line);
			continue;
		}
		v = realloc(s->g, (s->n + 1) * sizeof(*v));
		if (!v)
			goto nomem;
		s->g = v;
		memset(&v[s->n], 0, sizeof(v[s->n]));
		v[s->n].name = strdup(name);
		v[s->n].line = sec->line;
		s->n++;
		if (!v[s->n - 1].name)
			goto nomem;
		parse_section(&p, cfg, sec, &v[s->n - 1]);
		if (p.nomem)
			goto nomem;
	}
	/* members: resolve names (after every group is known: order in the file is free) */
	for (size_t i = 0; i < s->n; i++) {
		struct group *g = &s->g[i];

		for (size_t j = 0; j < g->n; j++) {
			int sub = group_find(s, g->m[j].name);

			if (sub >= 0)
				g->m[j].group = sub;
			else if (!cfg_outbound_find(cfg, g->m[j].name))
				gerr(&p, g->line,
				     "[group.%s] member '%s' is neither an [outbound.%s] nor a "
				     "[group.%s]",
				     g->name, g->m[j].name, g->m[j].name, g->m[j].name);
		}
	}
	state = calloc(s->n ? s->n : 1, 1);
	if (!state)
		goto nomem;
	for (size_t i = 0; i < s->n; i++)
		if (!state[i] && find_cycle(&p, s, i, state))
			break;
	free(state);
	if (p.failed) {
		group_set_free(s);
		return -EINVAL;
	}
	*out = s;
	return 0;
nomem:
	group_set_free(s);
	return -ENOMEM;
}

/* ------------------------------------------------------------------------------------------ */
/* Health                                                                                       */

enum group_change group_health_result(struct group_health *h, bool ok, uint32_t latency_ms,
				      unsigned tolerance)
{
	h->checks++;
	if (ok) {
		bool was_dead = !h->alive;

		h->fails = 0;
		h->alive = true;
		if (!h->have_avg) {
			h->avg_ms = latency_ms;
			h->have_avg = true;
		} else {
			int64_t d = (int64_t)latency_ms - (int64_t)h->avg_ms;

			h->avg_ms = (uint32_t)((int64_t)h->avg_ms + d / GROUP_EWMA_DIV);
		}
		return was_dead ? GROUP_REVIVED : GROUP_SAME;
	}
	h->failures++;
	if (h->fails < UINT32_MAX)
		h->fails++;
	if (h->alive && h->fails >= (tolerance ? tolerance : 1)) {
		h->alive = false;
		return GROUP_DIED;
	}
	return GROUP_SAME;
}

static bool str_eq(const char *a, const char *b)
{
	return a && b ? !strcmp(a, b) : a == b;
}

/* Health measured with other checks says nothing about these. */
static bool same_checks(const struct group *a, const struct group *b)
{
	return group_needs_health(a) == group_needs_health(b) && a->check_port == b->check_port &&
	       str_eq(a->check_host, b->check_host) && str_eq(a->check_path, b->check_path);
}

void group_set_carry(struct group_set *s, const struct group_set *old)
{
	for (size_t i = 0; s && old && i < s->n; i++) {
		struct group *g = &s->g[i];
		int oi = group_find(old, g->name);
		const struct group *og;

		if (oi < 0)
			continue;
		og = &old->g[oi];
		if (!same_checks(g, og))
			continue;
		for (size_t j = 0; j < g->n; j++) {
			if (g->m[j].group >= 0)
				continue;
			for (size_t k = 0; k < og->n; k++) {
				if (og->m[k].group < 0 && !strcmp(og->m[k].name, g->m[j].name)) {
					g->m[j].h = og->m[k].h;
					if (og->current == (int)k && g->policy == og->policy)
						g->current = (int)j;
				}
			}
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Selection                                                                                    */

static bool member_alive(const struct group_set *s, const struct group_member *m, unsigned depth);

static bool group_alive(const struct group_set *s, const struct group *g, unsigned depth)
{
	if (depth > s->n)
		return false; /* cannot happen after parsing (no cycles); bounded anyway */
	if (g->policy == GROUP_FIXED)
		return g->n && member_alive(s, &g->m[0], depth + 1);
	for (size_t i = 0; i < g->n; i++)
		if (member_alive(s, &g->m[i], depth + 1))
			return true;
	return false;
}

static bool member_alive(const struct group_set *s, const struct group_member *m, unsigned depth)
{
	if (m->group < 0)
		return m->h.alive;
	return group_alive(s, &s->g[m->group], depth);
}

/* Latency of a member for min-latency: its own average, or a sub-group's best alive one.
 * UINT32_MAX: unknown (never measured), which sorts last. */
static uint32_t member_latency(const struct group_set *s, const struct group_member *m,
			       unsigned depth)
{
	const struct group *g;
	uint32_t best = UINT32_MAX;

	if (m->group < 0)
		return m->h.have_avg ? m->h.avg_ms : UINT32_MAX;
	if (depth > s->n)
		return UINT32_MAX;
	g = &s->g[m->group];
	for (size_t i = 0; i < g->n; i++) {
		uint32_t l;

		if (!member_alive(s, &g->m[i], depth + 1))
			continue;
		l = member_latency(s, &g->m[i], depth + 1);
		if (l < best)
			best = l;
	}
	return best;
}

static bool beats(uint32_t best, uint32_t cur)
{
	uint64_t margin;

	if (cur == UINT32_MAX)
		return best != UINT32_MAX;
	margin = (uint64_t)cur * GROUP_HYST_PCT / 100;
	if (margin < GROUP_HYST_MS)
		margin = GROUP_HYST_MS;
	return (uint64_t)best + margin < cur;
}

static int pick_member(struct group_set *s, struct group *g, uint32_t rnd, unsigned depth)
{
	size_t alive = 0, k;
	int best = -1;
	uint32_t best_l = UINT32_MAX;

	switch (g->policy) {
	case GROUP_FIXED:
		return g->n ? 0 : -1;
	case GROUP_FALLBACK:
		for (size_t i = 0; i < g->n; i++)
			if (member_alive(s, &g->m[i], depth))
				return (int)i;
		return -1;
	case GROUP_RANDOM:
		for (size_t i = 0; i < g->n; i++)
			alive += member_alive(s, &g->m[i], depth);
		if (!alive)
			return -1;
		k = rnd % alive;
		for (size_t i = 0; i < g->n; i++)
			if (member_alive(s, &g->m[i], depth) && k-- == 0)
				return (int)i;
		return -1;
	case GROUP_MIN_LATENCY:
		for (size_t i = 0; i < g->n; i++) {
			uint32_t l;

			if (!member_alive(s, &g->m[i], depth))
				continue;
			l = member_latency(s, &g->m[i], depth);
			if (best < 0 || l < best_l) {
				best = (int)i;
				best_l = l;
			}
		}
		if (best < 0)
			return -1;
		if (g->current >= 0 && (size_t)g->current < g->n && g->current != best &&
		    member_alive(s, &g->m[g->current], depth) &&
		    !beats(best_l, member_latency(s, &g->m[g->current], depth)))
			return g->current;
		g->current = best;
		return best;
	}
	return -1;
}

static const char *pick_in(struct group_set *s, size_t gi, uint32_t rnd, unsigned depth,
			   size_t *path, size_t max, size_t *n)
{
	struct group *g = &s->g[gi];
	int i;

	if (depth > s->n)
		return NULL;
	if (path && *n < max)
		path[*n] = gi;
	if (path)
		(*n)++;
	i = pick_member(s, g, rnd, depth + 1);
	if (i < 0)
		return NULL;
	if (g->m[i].group < 0)
		return g->m[i].name;
	/* a different slice of the random number for each level */
	return pick_in(s, (size_t)g->m[i].group, rnd / (uint32_t)(g->n ? g->n : 1) ^ rnd >> 16,
		       depth + 1, path, max, n);
}

const char *group_pick(struct group_set *s, size_t gi, uint32_t rnd)
{
	return group_pick_path(s, gi, rnd, NULL, 0, NULL);
}

const char *group_pick_path(struct group_set *s, size_t gi, uint32_t rnd, size_t *path,
			    size_t max, size_t *n)
{
	size_t dummy = 0;

	if (n)
		*n = 0;
	if (!s || gi >= s->n)
		return NULL;
	return pick_in(s, gi, rnd, 0, path, max, n ? n : &dummy);
}

/* ------------------------------------------------------------------------------------------ */
/* Changes: selection and interrupt                                                             */

static int ev_add(struct group_ev **evs, size_t *n, size_t *cap, const struct group_ev *e)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 8;
		struct group_ev *v = realloc(*evs, c * sizeof(*v));

		if (!v)
			return -ENOMEM;
		*evs = v;
		*cap = c;
	}
	(*evs)[(*n)++] = *e;
	return 0;
}

/* Is outbound `leaf` under member m (itself, or anywhere in its group)? */
static bool has_leaf(const struct group_set *s, const struct group_member *m, const char *leaf,
		     unsigned depth)
{
	const struct group *g;

	if (m->group < 0)
		return !strcmp(m->name, leaf);
	if (depth > s->n)
		return false;
	g = &s->g[m->group];
	for (size_t i = 0; i < g->n; i++)
		if (has_leaf(s, &g->m[i], leaf, depth + 1))
			return true;
	return false;
}

static bool cut_listed(const struct group_ev *evs, size_t n, size_t gi, const char *leaf)
{
	for (size_t i = 0; i < n; i++)
		if (evs[i].kind == GROUP_EV_CUT && evs[i].gi == gi && !strcmp(evs[i].leaf, leaf))
			return true;
	return false;
}

/* CUT every leaf under member `from` of gi that is not under `to`. */
static int cut_member(const struct group_set *s, size_t gi, int from, int to,
		      const struct group_member *m, unsigned depth, struct group_ev **evs,
		      size_t *n, size_t *cap)
{
	const struct group *g = &s->g[gi];
	const struct group *sub;
	int rc;

	if (m->group < 0) {
		struct group_ev e = { .kind = GROUP_EV_CUT, .gi = gi, .from = from, .to = to,
				      .leaf = m->name };

		if ((to >= 0 && has_leaf(s, &g->m[to], m->name, 0)) ||
		    cut_listed(*evs, *n, gi, m->name))
			return 0;
		return ev_add(evs, n, cap, &e);
	}
	if (depth > s->n)
		return 0;
	sub = &s->g[m->group];
	for (size_t i = 0; i < sub->n; i++) {
		rc = cut_member(s, gi, from, to, &sub->m[i], depth + 1, evs, n, cap);
		if (rc)
			return rc;
	}
	return 0;
}

int group_update(struct group_set *s, size_t gi, size_t mi, enum group_change ch,
		 struct group_ev **evs, size_t *n)
{
	size_t cap = 0;
	int rc = 0;

	*evs = NULL;
	*n = 0;
	if (!s || gi >= s->n || mi >= s->g[gi].n)
		return 0;
	if (ch == GROUP_DIED && s->g[gi].interrupt && s->g[gi].m[mi].group < 0) {
		struct group_ev e = { .kind = GROUP_EV_CUT, .gi = gi, .from = -1, .to = -1,
				      .leaf = s->g[gi].m[mi].name, .dead = true };

		rc = ev_add(evs, n, &cap, &e);
	}
	for (size_t i = 0; !rc && i < s->n; i++) {
		struct group *g = &s->g[i];
		int from = g->current, to;

		if (g->policy != GROUP_FALLBACK && g->policy != GROUP_MIN_LATENCY)
			continue;
		to = pick_member(s, g, 0, 1);
		g->current = to;
		if (to == from)
			continue;
		{
			struct group_ev e = { .kind = GROUP_EV_SELECT, .gi = i, .from = from,
					      .to = to };

			rc = ev_add(evs, n, &cap, &e);
		}
		if (!rc && g->interrupt && from >= 0 && (size_t)from < g->n)
			rc = cut_member(s, i, from, to, &g->m[from], 0, evs, n, &cap);
	}
	if (rc) {
		free(*evs);
		*evs = NULL;
		*n = 0;
	}
	return rc;
}

size_t group_holders(const struct group_set *s, size_t gi, size_t *out, size_t max)
{
	size_t n = 0;

	if (!s || gi >= s->n || !max)
		return 0;
	out[n++] = gi;
	/* breadth-first over "is a member of": every group enters once */
	for (size_t k = 0; k < n; k++) {
		for (size_t i = 0; i < s->n && n < max; i++) {
			bool seen = false;

			for (size_t j = 0; j < n && !seen; j++)
				seen = out[j] == i;
			if (seen)
				continue;
			for (size_t j = 0; j < s->g[i].n; j++) {
				if (s->g[i].m[j].group == (int)out[k]) {
					out[n++] = i;
					break;
				}
			}
		}
	}
	return n;
}
