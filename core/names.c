/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * names - the address -> name table. See names.h.
 *
 * Three hash tables under one mutex:
 *   interned names  name -> {id, refs}, and id -> name (the tag written into the kernel)
 *   addresses       addr16 -> up to CLAIMS_MAX live DNS claims {name, expiry, verdict}
 *   sniffed         (addr16, port, proto) -> {name, expiry, verdict}
 * The kernel entry of an address is derived from its claims every time they change: one common
 * verdict, or INSPECT when they disagree; its expiry is the latest claim's.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "addr.h"
#include "names.h"

#define CLAIMS_MAX 8		  /* names per address; past it the oldest claim is replaced */
#define BUCKETS_MAX (1u << 20)	  /* hash buckets never exceed this many */
#define BUCKETS_MIN 256

struct name {
	struct name *next_s, *next_id; /* by string, by id */
	uint32_t id;
	uint32_t refs;
	char s[];
};

struct verdict {
	uint8_t v; /* enum xp_verdict; XP_V_NONE = the rules decide, nothing written */
	uint16_t ob;
	uint32_t rule_id;
};

struct claim {
	struct name *name;
	uint64_t expires_ns;
	uint64_t seq; /* learn order: the newest claim names the address */
	struct verdict vd;
};

struct addr_entry {
	struct addr_entry *next;
	uint8_t addr[16];
	unsigned n;
	struct claim c[CLAIMS_MAX];
	bool written; /* an entry is in the kernel map */
};

struct sniff_entry {
	struct sniff_entry *next;
	struct xp_dst_key key;
	struct name *name;
	uint64_t expires_ns;	 /* the cached verdict's end (kernel entry and names_lookup) */
	uint64_t mixed_until_ns; /* names with different verdicts were sniffed here: no cache */
	struct verdict vd;
	uint8_t confirms; /* sniffs here that agreed with the last verdict (SNIFF_CONFIRM_MAX) */
	bool written;
};

/* A sniffed (address, port, proto) is remembered this long after its cached verdict expires,
 * so the next sniff there can be compared with the last one; and once names with different
 * verdicts were seen there (shared hosting, a CDN), nothing is cached there for this long:
 * every flow is sniffed, since a cached verdict would be one name's for all of them. */
#define SNIFF_REMEMBER_NS (1800ull * 1000000000ull)
#define SNIFF_MIXED_NS	  (1800ull * 1000000000ull)
/* A place's first cached verdict lasts this long (at most the configured TTL), each later
 * sniff there with the same verdict doubles it up to that TTL: a second name on a shared
 * address is seen (and the place marked mixed) within seconds, not after the full TTL. */
#define SNIFF_FIRST_TTL_MS 30000u
#define SNIFF_CONFIRM_MAX  4u

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct names_env env;
static const struct rule_list *rules;
static struct rule_list empty_rules = { .fallback = { .kind = RT_DIRECT } };
static uint32_t map_size;
static uint64_t grace_ns;
static uint32_t nbuckets; /* power of two */
static struct name **by_str, **by_id;
static struct addr_entry **addrs;
static struct sniff_entry **sniffs;
static uint32_t next_id;
static uint64_t seq;
static struct names_stats st;

/* ------------------------------------------------------------------------------ hashing */

static uint32_t hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 16777619u;
	}
	return h;
}

static uint32_t slot(uint32_t h)
{
	return h & (nbuckets - 1);
}

/* ------------------------------------------------------------------------------ names */

int names_normalize(const char *in, char *out, size_t outlen)
{
	size_t n, label = 0;

	if (!in || !out || !outlen)
		return -EINVAL;
	n = strnlen(in, NAMES_NAME_MAX + 2);
	if (n && in[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || n + 1 > outlen)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];

		if (ch == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
		} else {
			/* Printable only: names end up in logs and in rule matching. */
			if (ch <= 0x20 || ch >= 0x7f || ++label > 63)
				return -EINVAL;
		}
		out[i] = (char)tolower(ch);
	}
	if (label == 0)
		return -EINVAL;
	out[n] = '\0';
	return 0;
}

/* Under lock. A reference on the interned name, created on first use. */
static struct name *name_get(const char *s)
{
	uint32_t h = slot(hash_bytes(s, strlen(s)));
	struct name *nm;

	for (nm = by_str[h]; nm; nm = nm->next_s)
		if (!strcmp(nm->s, s)) {
			nm->refs++;
			return nm;
		}
	nm = malloc(sizeof(*nm) + strlen(s) + 1);
	if (!nm)
		return NULL;
	strcpy(nm->s, s);
	nm->refs = 1;
	/* Small ids that never repeat while a name with the same id is live: skip 0 and any id
	 * still in use after a wrap (4 billion names later). */
	for (;;) {
		struct name *o;

		if (++next_id == 0)
			next_id = 1;
		for (o = by_id[slot(next_id)]; o && o->id != next_id; o = o->next_id)
			;
		if (!o)
			break;
	}
	nm->id = next_id;
	nm->next_s = by_str[h];
	by_str[h] = nm;
	nm->next_id = by_id[slot(nm->id)];
	by_id[slot(nm->id)] = nm;
	st.names++;
	return nm;
}

static void name_put(struct name *nm)
{
	struct name **pp;

	if (!nm || --nm->refs)
		return;
	for (pp = &by_str[slot(hash_bytes(nm->s, strlen(nm->s)))]; *pp != nm; pp = &(*pp)->next_s)
		;
	*pp = nm->next_s;
	for (pp = &by_id[slot(nm->id)]; *pp != nm; pp = &(*pp)->next_id)
		;
	*pp = nm->next_id;
	st.names--;
	free(nm);
}

/* ------------------------------------------------------------------------------ routing */

/* addr16_from(), with every failure (no address, another family) as -EINVAL */
static int addr16(uint8_t out[16], uint16_t *port, const union xp_sockaddr *sa)
{
	return sa && !addr16_from(out, port, sa) ? 0 : -EINVAL;
}

/* Under lock. The verdict of the rules for a flow whose known fields are in f. */
static int evaluate(const struct rule_flow *f, unsigned known, struct verdict *out, bool *partial)
{
	const struct rule_list *rl = rules ? rules : &empty_rules;
	const struct rule *r;
	int id;

	*partial = false;
	r = rule_list_match_partial(rl, f, known, partial);
	memset(out, 0, sizeof(*out));
	out->rule_id = r->id;
	if (*partial) {
		/* The rule also looks at what a DNS answer cannot know (ports, protocol, client):
		 * only the flow itself can be decided, by userspace. */
		out->v = XP_V_INSPECT;
		return 0;
	}
	switch (r->kind) {
	case RT_DIRECT:
		out->v = XP_V_DIRECT;
		return 0;
	case RT_BLOCK:
		out->v = XP_V_BLOCK;
		return 0;
	case RT_OUTBOUND:
		id = env.outbound_id ? env.outbound_id(env.ctx, r->target) : -ENOENT;
		if (id < 0)
			return -ENOENT;
		out->v = XP_V_PROXY;
		out->ob = (uint16_t)id;
		return 0;
	default:
		/* A DNS target names a resolver, not a destination: the kernel rules decide. */
		out->v = XP_V_NONE;
		return 0;
	}
}

static bool vd_eq(const struct verdict *a, const struct verdict *b)
{
	return a->v == b->v && (a->v != XP_V_PROXY || a->ob == b->ob);
}

static uint64_t now_ns(void)
{
	return env.now_ns ? env.now_ns() : 0;
}

static int map_write(const struct xp_dst_key *k, const struct verdict *vd, uint32_t tag,
		     uint64_t expires_ns, uint8_t writer)
{
	struct xp_dst_verdict v = {
		.expires_ns = expires_ns,
		.tag = tag,
		.outbound_id = vd->v == XP_V_PROXY ? vd->ob : 0,
		.verdict = vd->v,
		.origin_plugin = writer,
	};
	int err = env.dst_set ? env.dst_set(env.ctx, k, &v) : -ENOSYS;

	if (err)
		st.map_errors++;
	return err;
}

static void map_del(const struct xp_dst_key *k)
{
	if (env.dst_del)
		env.dst_del(env.ctx, k);
}

/* Under lock: make the kernel entry of `e` match its claims. */
static int addr_sync(struct addr_entry *e)
{
	struct xp_dst_key k = { 0 };
	struct verdict vd;
	const struct claim *newest = NULL;
	uint64_t expires = 0;
	bool conflict = false;
	int err;

	memcpy(k.addr, e->addr, 16);
	for (unsigned i = 0; i < e->n; i++) {
		const struct claim *c = &e->c[i];

		if (!newest || c->seq > newest->seq)
			newest = c;
		if (c->expires_ns > expires)
			expires = c->expires_ns;
		if (i && !vd_eq(&c->vd, &e->c[0].vd))
			conflict = true;
	}
	if (!newest) {
		if (e->written)
			map_del(&k);
		e->written = false;
		return 0;
	}
	vd = newest->vd;
	if (conflict) {
		/* Two live names on one address that the rules route differently (a CDN, shared
		 * hosting): only the flow's own name (SNI, Host) can say which it is. */
		vd.v = XP_V_INSPECT;
		vd.ob = 0;
		st.conflicts++;
	}
	if (vd.v == XP_V_NONE) {
		if (e->written)
			map_del(&k);
		e->written = false;
		return 0;
	}
	err = map_write(&k, &vd, newest->name->id, expires, XP_DSTW_DNS);
	e->written = !err;
	return err;
}

static uint64_t now_ns(void);

static int sniff_sync(struct sniff_entry *s)
{
	uint64_t now = now_ns();
	int err;

	if (s->vd.v == XP_V_NONE || s->mixed_until_ns > now || s->expires_ns <= now) {
		if (s->written)
			map_del(&s->key);
		s->written = false;
		return 0;
	}
	err = map_write(&s->key, &s->vd, s->name->id, s->expires_ns, XP_DSTW_SNIFF);
	s->written = !err;
	return err;
}

/* ------------------------------------------------------------------------------ lifecycle */

static uint32_t buckets_for(uint32_t n)
{
	uint32_t b = BUCKETS_MIN;

	while (b < n && b < BUCKETS_MAX)
		b <<= 1;
	return b;
}

int names_init(const struct names_env *e, const struct rule_list *rl, uint32_t size,
	       uint64_t grace_ms)
{
	uint32_t b = buckets_for(size);

	pthread_mutex_lock(&lock);
	by_str = calloc(b, sizeof(*by_str));
	by_id = calloc(b, sizeof(*by_id));
	addrs = calloc(b, sizeof(*addrs));
	sniffs = calloc(b, sizeof(*sniffs));
	if (!by_str || !by_id || !addrs || !sniffs) {
		free(by_str);
		free(by_id);
		free(addrs);
		free(sniffs);
		by_str = by_id = NULL;
		addrs = NULL;
		sniffs = NULL;
		pthread_mutex_unlock(&lock);
		return -ENOMEM;
	}
	nbuckets = b;
	env = *e;
	rules = rl;
	map_size = size;
	grace_ns = grace_ms * 1000000ull;
	memset(&st, 0, sizeof(st));
	pthread_mutex_unlock(&lock);
	return 0;
}

void names_fini(int clear_kernel)
{
	pthread_mutex_lock(&lock);
	for (uint32_t i = 0; addrs && i < nbuckets; i++) {
		while (addrs[i]) {
			struct addr_entry *e = addrs[i];

			addrs[i] = e->next;
			if (clear_kernel) {
				e->n = 0;
				addr_sync(e);
			}
			for (unsigned j = 0; j < e->n; j++)
				name_put(e->c[j].name);
			free(e);
		}
		while (sniffs[i]) {
			struct sniff_entry *s = sniffs[i];

			sniffs[i] = s->next;
			if (clear_kernel && s->written)
				map_del(&s->key);
			name_put(s->name);
			free(s);
		}
	}
	free(by_str);
	free(by_id);
	free(addrs);
	free(sniffs);
	by_str = by_id = NULL;
	addrs = NULL;
	sniffs = NULL;
	nbuckets = 0;
	rules = NULL;
	st.live = 0;
	pthread_mutex_unlock(&lock);
}

void names_set_rules(const struct rule_list *rl, uint32_t size, uint64_t grace_ms)
{
	pthread_mutex_lock(&lock);
	rules = rl;
	map_size = size;
	grace_ns = grace_ms * 1000000ull;
	for (uint32_t i = 0; addrs && i < nbuckets; i++) {
		for (struct addr_entry *e = addrs[i]; e; e = e->next) {
			for (unsigned j = 0; j < e->n; j++) {
				struct rule_flow f = { .domain = e->c[j].name->s };
				bool partial;

				memcpy(f.daddr, e->addr, 16);
				/* An outbound that no longer exists: the rules decide from now on. */
				if (evaluate(&f, RF_KNOWN_DST | RF_KNOWN_DOMAIN, &e->c[j].vd,
					     &partial))
					e->c[j].vd.v = XP_V_NONE;
			}
			addr_sync(e);
		}
		for (struct sniff_entry *s = sniffs[i]; s; s = s->next) {
			struct rule_flow f = { .domain = s->name->s, .dport = s->key.port,
					       .l4proto = s->key.l4proto };
			bool partial;

			memcpy(f.daddr, s->key.addr, 16);
			if (evaluate(&f, RF_KNOWN_DST | RF_KNOWN_DOMAIN | RF_KNOWN_PORTS |
						 RF_KNOWN_PROTO,
				     &s->vd, &partial))
				s->vd.v = XP_V_NONE;
			sniff_sync(s);
		}
	}
	pthread_mutex_unlock(&lock);
}

/* ------------------------------------------------------------------------------ learning */

static struct addr_entry *addr_find(const uint8_t a[16])
{
	for (struct addr_entry *e = addrs[slot(hash_bytes(a, 16))]; e; e = e->next)
		if (!memcmp(e->addr, a, 16))
			return e;
	return NULL;
}

static struct sniff_entry *sniff_find(const struct xp_dst_key *k)
{
	for (struct sniff_entry *s = sniffs[slot(hash_bytes(k, sizeof(*k)))]; s; s = s->next)
		if (!memcmp(&s->key, k, sizeof(*k)))
			return s;
	return NULL;
}

/* Under lock: drop the claims of e that have expired at `now`. */
static void claims_expire(struct addr_entry *e, uint64_t now)
{
	unsigned j = 0;

	for (unsigned i = 0; i < e->n; i++) {
		if (e->c[i].expires_ns && e->c[i].expires_ns <= now) {
			name_put(e->c[i].name);
			continue;
		}
		e->c[j++] = e->c[i];
	}
	e->n = j;
}

static bool addr_live(const struct addr_entry *e, uint64_t now)
{
	for (unsigned i = 0; i < e->n; i++)
		if (!e->c[i].expires_ns || e->c[i].expires_ns > now)
			return true;
	return false;
}

static uint64_t expiry(uint64_t now, uint32_t ttl_ms)
{
	return now + (uint64_t)ttl_ms * 1000000ull + grace_ns;
}

int names_learn(const char *domain, const union xp_sockaddr *sa, uint32_t ttl_ms)
{
	char name[NAMES_NAME_MAX + 1];
	struct rule_flow f = { 0 };
	struct addr_entry *e;
	struct verdict vd;
	struct claim *c;
	uint64_t now;
	bool partial;
	int err;

	if (names_normalize(domain, name, sizeof(name)) || addr16(f.daddr, NULL, sa))
		return -EINVAL;
	f.domain = name;
	pthread_mutex_lock(&lock);
	if (!addrs) {
		err = -ENODEV;
		goto out;
	}
	err = evaluate(&f, RF_KNOWN_DST | RF_KNOWN_DOMAIN, &vd, &partial);
	if (err)
		goto out;
	now = now_ns();
	e = addr_find(f.daddr);
	if (!e) {
		if (st.live >= map_size) {
			st.full++;
			err = -ENOSPC;
			goto out;
		}
		e = calloc(1, sizeof(*e));
		if (!e) {
			err = -ENOMEM;
			goto out;
		}
		memcpy(e->addr, f.daddr, 16);
		e->next = addrs[slot(hash_bytes(f.daddr, 16))];
		addrs[slot(hash_bytes(f.daddr, 16))] = e;
		st.live++;
	}
	claims_expire(e, now);
	c = NULL;
	for (unsigned i = 0; i < e->n; i++)
		if (!strcmp(e->c[i].name->s, name))
			c = &e->c[i];
	if (!c) {
		struct name *nm = name_get(name);

		if (!nm) {
			err = -ENOMEM;
			goto sync;
		}
		if (e->n == CLAIMS_MAX) {
			/* Replace the claim that expires first: it is the least useful one. */
			unsigned oldest = 0;

			for (unsigned i = 1; i < e->n; i++)
				if (e->c[i].expires_ns < e->c[oldest].expires_ns)
					oldest = i;
			name_put(e->c[oldest].name);
			c = &e->c[oldest];
		} else {
			c = &e->c[e->n++];
		}
		c->name = nm;
	}
	c->expires_ns = expiry(now, ttl_ms);
	c->seq = ++seq;
	c->vd = vd;
	if (partial)
		st.partial++;
sync:
	if (!err) {
		err = addr_sync(e);
		if (!err)
			st.learned++;
	}
out:
	pthread_mutex_unlock(&lock);
	return err;
}

int names_learn_sniffed(const char *domain, const union xp_sockaddr *sa, uint16_t port,
			uint8_t l4proto, uint32_t ttl_ms)
{
	char name[NAMES_NAME_MAX + 1];
	struct xp_dst_key k = { 0 };
	struct rule_flow f = { 0 };
	struct addr_entry *e;
	struct sniff_entry *s;
	struct verdict vd;
	struct name *nm;
	uint64_t now;
	bool partial;
	int err;

	if (names_normalize(domain, name, sizeof(name)) || addr16(k.addr, NULL, sa) || !port ||
	    (l4proto != IPPROTO_TCP && l4proto != IPPROTO_UDP))
		return -EINVAL;
	k.port = port;
	k.l4proto = l4proto;
	memcpy(f.daddr, k.addr, 16);
	f.dport = port;
	f.l4proto = l4proto;
	f.domain = name;
	pthread_mutex_lock(&lock);
	if (!addrs) {
		err = -ENODEV;
		goto out;
	}
	now = now_ns();
	e = addr_find(k.addr);
	if (e && addr_live(e, now)) {
		/* The DNS answer's verdict (or its INSPECT) stands. */
		st.sniff_skipped++;
		err = -EEXIST;
		goto out;
	}
	/* The sniffer saw the port and the protocol: only the client is unknown. */
	err = evaluate(&f, RF_KNOWN_DST | RF_KNOWN_DOMAIN | RF_KNOWN_PORTS | RF_KNOWN_PROTO, &vd,
		       &partial);
	if (err)
		goto out;
	s = sniff_find(&k);
	if (!s) {
		if (st.live >= map_size) {
			st.full++;
			err = -ENOSPC;
			goto out;
		}
		s = calloc(1, sizeof(*s));
		nm = s ? name_get(name) : NULL;
		if (!nm) {
			free(s);
			err = -ENOMEM;
			goto out;
		}
		s->key = k;
		s->name = nm;
		s->next = sniffs[slot(hash_bytes(&k, sizeof(k)))];
		sniffs[slot(hash_bytes(&k, sizeof(k)))] = s;
		st.live++;
	} else {
		/* Same place, another verdict than the last name sniffed here: names routed
		 * differently share it, and a cached verdict would misroute all but one. */
		if (s->vd.v != vd.v || s->vd.ob != vd.ob) {
			s->mixed_until_ns = now + SNIFF_MIXED_NS;
			s->confirms = 0;
			st.sniff_mixed++;
		} else if (s->confirms < SNIFF_CONFIRM_MAX) {
			s->confirms++;
		}
		if (strcmp(s->name->s, name)) {
			nm = name_get(name);
			if (!nm) {
				err = -ENOMEM;
				goto out;
			}
			name_put(s->name);
			s->name = nm;
		}
	}
	{
		uint32_t first = SNIFF_FIRST_TTL_MS << s->confirms;

		/* no DNS grace here: nobody was told a TTL */
		s->expires_ns = now + (uint64_t)(ttl_ms < first ? ttl_ms : first) * 1000000ull;
	}
	s->vd = vd;
	if (partial)
		st.partial++;
	err = sniff_sync(s);
	if (!err && s->mixed_until_ns > now)
		err = -EBUSY; /* not cached: this flow was routed by its own name, that is all */
	else if (!err)
		st.sniffed++;
out:
	pthread_mutex_unlock(&lock);
	return err;
}

/* ------------------------------------------------------------------------------ queries */

int names_lookup(const union xp_sockaddr *sa, uint8_t l4proto, char *buf, size_t len)
{
	struct xp_dst_key k = { 0 };
	const struct name *found = NULL;
	struct addr_entry *e;
	struct sniff_entry *s;
	uint64_t now;

	if (!buf || !len || addr16(k.addr, &k.port, sa))
		return -EINVAL;
	k.l4proto = l4proto;
	pthread_mutex_lock(&lock);
	if (!addrs)
		goto out;
	now = now_ns();
	s = k.port ? sniff_find(&k) : NULL;
	if (s && s->expires_ns > now && s->mixed_until_ns <= now)
		found = s->name;
	e = found ? NULL : addr_find(k.addr);
	if (e) {
		uint64_t best = 0;

		for (unsigned i = 0; i < e->n; i++)
			if (e->c[i].expires_ns > now && e->c[i].seq > best) {
				best = e->c[i].seq;
				found = e->c[i].name;
			}
	}
	if (found) {
		strncpy(buf, found->s, len - 1);
		buf[len - 1] = '\0';
	}
out:
	pthread_mutex_unlock(&lock);
	return found ? 0 : -ENOENT;
}

int names_by_tag(uint32_t tag, char *buf, size_t len)
{
	const struct name *nm = NULL;

	if (!buf || !len || !tag)
		return -EINVAL;
	pthread_mutex_lock(&lock);
	if (by_id)
		for (nm = by_id[slot(tag)]; nm && nm->id != tag; nm = nm->next_id)
			;
	if (nm) {
		strncpy(buf, nm->s, len - 1);
		buf[len - 1] = '\0';
	}
	pthread_mutex_unlock(&lock);
	return nm ? 0 : -ENOENT;
}

/* plugin.h: rules without a domain condition are taken as not matching (the caller has no
 * flow, only a name); a domain rule whose other conditions are unknown is a partial match.
 * Each such rule is asked alone, as a one-rule list, so the partial semantics stay the rule
 * module's. Linear in the domain rules: this serves plugins (upstream choice), not flows. */
static const struct rule *route_by_name(const struct rule_list *rl, const struct rule_flow *f,
					bool *partial)
{
	for (size_t i = 0; i < rl->n; i++) {
		struct rule_list one = { .rules = &rl->rules[i], .n = 1 };
		const struct rule *r;

		if (!rl->rules[i].has_domain)
			continue;
		*partial = false;
		r = rule_list_match_partial(&one, f, RF_KNOWN_DOMAIN, partial);
		if (r != &one.fallback)
			return r;
	}
	*partial = false;
	return &rl->fallback;
}

int names_route_domain(const char *domain, struct xp_route_result *out)
{
	char name[NAMES_NAME_MAX + 1];
	struct xp_route_result r = { .size = sizeof(r) };
	struct rule_flow f = { 0 };
	const struct rule *rule;
	bool partial = false;
	size_t n;

	if (!out || out->size < offsetof(struct xp_route_result, outbound) ||
	    names_normalize(domain, name, sizeof(name)))
		return -EINVAL;
	f.domain = name;
	pthread_mutex_lock(&lock);
	rule = route_by_name(rules ? rules : &empty_rules, &f, &partial);
	r.rule_id = rule->id;
	r.flags = partial ? XP_ROUTE_F_PARTIAL : 0;
	switch (rule->kind) {
	case RT_DIRECT:
		r.route = XP_ROUTE_DIRECT;
		break;
	case RT_BLOCK:
		r.route = XP_ROUTE_BLOCK;
		break;
	case RT_OUTBOUND:
		r.route = XP_ROUTE_PROXY;
		/* The rule's own string: valid until the reload that frees the rules. */
		r.outbound = rule->target;
		break;
	default:
		r.route = XP_ROUTE_DNS;
		break;
	}
	pthread_mutex_unlock(&lock);
	n = out->size < sizeof(r) ? out->size : sizeof(r);
	r.size = (uint32_t)n;
	memcpy(out, &r, n);
	return 0;
}

unsigned names_expire(void)
{
	unsigned n = 0;
	uint64_t now;

	pthread_mutex_lock(&lock);
	now = now_ns();
	for (uint32_t i = 0; addrs && i < nbuckets; i++) {
		struct addr_entry **pe = &addrs[i];
		struct sniff_entry **ps = &sniffs[i];

		while (*pe) {
			struct addr_entry *e = *pe;
			unsigned before = e->n;

			claims_expire(e, now);
			if (e->n == before) {
				pe = &e->next;
				continue;
			}
			/* What is left may agree now: rewrite (or clear) the kernel entry. */
			addr_sync(e);
			if (e->n) {
				pe = &e->next;
				continue;
			}
			*pe = e->next;
			free(e);
			st.live--;
			st.expired++;
			n++;
		}
		while (*ps) {
			struct sniff_entry *s = *ps;

			if (s->expires_ns > now) {
				ps = &s->next;
				continue;
			}
			if (s->written)
				map_del(&s->key);
			s->written = false;
			/* remembered a while longer (no kernel entry, no name): see SNIFF_REMEMBER_NS */
			if (s->expires_ns + SNIFF_REMEMBER_NS > now || s->mixed_until_ns > now) {
				ps = &s->next;
				continue;
			}
			*ps = s->next;
			name_put(s->name);
			free(s);
			st.live--;
			st.expired++;
			n++;
		}
	}
	pthread_mutex_unlock(&lock);
	return n;
}

void names_stats_get(struct names_stats *out)
{
	pthread_mutex_lock(&lock);
	*out = st;
	pthread_mutex_unlock(&lock);
}
