/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * domain - hash index of full and suffix domain conditions (see domain.h).
 *
 * Layout, chosen for memory (the target is well under 2 MB per 10,000 rules, parse included):
 *   slots[]     uint32 per slot, open addressing with linear probing, 0 = empty, else entry + 1;
 *               at most half full
 *   entries[]   one per distinct (kind, key): the key points into the rule's own string
 *   postings[]  rule indices, grouped per entry, ascending within a group
 *   nodomain[]  rules without any domain condition (candidates for a flow with no name)
 *   rest[]      rules not indexed (candidates for every named flow)
 *
 * Hashes run from the last character to the first, so one backward pass over a name yields the
 * hash of every label suffix: the lookups for "a.b.example.com" cost one pass, not four.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "rules.h"

#define KIND_FULL 1u
#define KIND_SUFFIX 2u

/* 16 bytes: no stored hash (a probe compares the key: at most half the slots are used, so a
 * lookup compares about 1.5 keys, most of which differ in the first character). */
struct dentry {
	const char *key;
	uint32_t first;	 /* into postings; for a key of one rule (n == 1): the rule itself */
	uint32_t n : 31; /* rules under the key */
	uint32_t suffix : 1;
};

struct domain_index {
	const struct rule *rules; /* what it was built for */
	size_t n_rules;
	uint32_t *slots;
	uint32_t mask; /* n_slots - 1 */
	struct dentry *entries;
	uint32_t n_entries;
	uint32_t *postings;
	uint32_t n_postings;
	uint32_t *nodomain, *rest;
	uint32_t n_nodomain, n_rest;
	size_t mem;
};

#define FNV_BASIS 2166136261u
#define FNV_PRIME 16777619u

static inline uint32_t hash_step(uint32_t h, char c)
{
	return (h ^ (uint8_t)c) * FNV_PRIME;
}

/* fmix32 of murmur3: FNV alone clusters badly under linear probing */
static inline uint32_t hash_final(uint32_t h, uint32_t kind)
{
	h ^= kind * 0x9e3779b9u;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static uint32_t hash_key(const char *s, size_t len, uint32_t kind)
{
	uint32_t h = FNV_BASIS;

	while (len--)
		h = hash_step(h, s[len]);
	return hash_final(h, kind);
}

/* Entry index of (kind, key), or UINT32_MAX. `key` need not be NUL-terminated at klen. */
static uint32_t find(const struct domain_index *di, uint32_t h, uint32_t kind, const char *key,
		     size_t klen)
{
	for (uint32_t s = h & di->mask;; s = (s + 1) & di->mask) {
		uint32_t e = di->slots[s];

		if (!e)
			return UINT32_MAX;
		const struct dentry *d = &di->entries[e - 1];

		if (d->suffix == (kind == KIND_SUFFIX) && d->key[0] == key[0] &&
		    !strncmp(d->key, key, klen) && d->key[klen] == '\0')
			return e - 1;
	}
}

static const uint32_t *postings(const struct domain_index *di, const struct dentry *d)
{
	return d->n == 1 ? &d->first : di->postings + d->first;
}

/* The condition a rule is indexed by: its first non-negated full or suffix condition. */
int domain_index_cond(const struct rule *r)
{
	for (size_t i = 0; i < r->n_conds; i++) {
		const struct rule_cond *c = &r->conds[i];

		if (!c->negate && c->n && (c->type == RC_DOMAIN || c->type == RC_DOMAIN_SUFFIX))
			return (int)i;
	}
	return -1;
}

static void *xcalloc(size_t n, size_t sz, size_t *mem)
{
	void *p = calloc(n ? n : 1, sz);

	if (p)
		*mem += (n ? n : 1) * sz;
	return p;
}

struct domain_index *domain_index_build(const struct rule *rules, size_t n)
{
	struct domain_index *di;
	uint32_t *pair_entry = NULL; /* per key occurrence: its entry */
	uint32_t *all = NULL;	     /* every posting, before single ones move into entries */
	size_t n_pairs = 0, n_slots = 2;

	if (n >= UINT32_MAX) {
		errno = E2BIG;
		return NULL;
	}
	di = calloc(1, sizeof(*di));
	if (!di)
		return NULL;
	di->mem = sizeof(*di);
	di->rules = rules;
	di->n_rules = n;
	size_t n_nodomain = 0, n_rest = 0;

	for (size_t i = 0; i < n; i++) {
		int ic = domain_index_cond(&rules[i]);

		if (ic >= 0)
			n_pairs += rules[i].conds[ic].n;
		else
			n_rest++;
		if (!rules[i].has_domain)
			n_nodomain++;
	}
	if (n_pairs >= UINT32_MAX / 4) {
		errno = E2BIG;
		goto err;
	}
	while (n_slots < 2 * n_pairs)
		n_slots <<= 1;
	/* sized for every pair being distinct; keys shared by rules only lower the load */
	di->mask = (uint32_t)n_slots - 1;
	di->slots = xcalloc(n_slots, sizeof(*di->slots), &di->mem);
	di->nodomain = xcalloc(n_nodomain, sizeof(*di->nodomain), &di->mem);
	di->rest = xcalloc(n_rest, sizeof(*di->rest), &di->mem);
	pair_entry = calloc(n_pairs ? n_pairs : 1, sizeof(*pair_entry));
	/* entries: at most one per pair; shrunk below once the distinct count is known */
	di->entries = calloc(n_pairs ? n_pairs : 1, sizeof(*di->entries));
	if (!di->slots || !di->nodomain || !di->rest || !pair_entry || !di->entries)
		goto err;

	/* pass 1: distinct keys and their posting counts */
	size_t p = 0;

	for (size_t i = 0; i < n; i++) {
		int ic = domain_index_cond(&rules[i]);

		if (!rules[i].has_domain)
			di->nodomain[di->n_nodomain++] = (uint32_t)i;
		if (ic < 0) {
			di->rest[di->n_rest++] = (uint32_t)i;
			continue;
		}
		const struct rule_cond *c = &rules[i].conds[ic];
		uint32_t kind = c->type == RC_DOMAIN ? KIND_FULL : KIND_SUFFIX;

		for (size_t j = 0; j < c->n; j++, p++) {
			const char *key = c->names[j];
			size_t klen = strlen(key);
			uint32_t h = hash_key(key, klen, kind);
			uint32_t e = find(di, h, kind, key, klen);

			if (e == UINT32_MAX) {
				uint32_t s = h & di->mask;

				while (di->slots[s])
					s = (s + 1) & di->mask;
				e = di->n_entries++;
				di->slots[s] = e + 1;
				di->entries[e] = (struct dentry){
					.key = key,
					.suffix = kind == KIND_SUFFIX,
				};
			}
			pair_entry[p] = e;
			di->entries[e].n++;
		}
	}
	/* offsets; counts are recomputed in pass 2 (duplicates within one rule collapse) */
	uint32_t off = 0;

	for (uint32_t e = 0; e < di->n_entries; e++) {
		di->entries[e].first = off;
		off += di->entries[e].n;
		di->entries[e].n = 0;
	}
	all = calloc(off ? off : 1, sizeof(*all));
	if (!all)
		goto err;
	/* pass 2: rules in ascending order, so every group comes out sorted */
	p = 0;
	for (size_t i = 0; i < n; i++) {
		int ic = domain_index_cond(&rules[i]);

		if (ic < 0)
			continue;
		const struct rule_cond *c = &rules[i].conds[ic];

		for (size_t j = 0; j < c->n; j++, p++) {
			struct dentry *d = &di->entries[pair_entry[p]];
			uint32_t *g = all + d->first;

			if (d->n && g[d->n - 1] == (uint32_t)i)
				continue; /* "a.com|a.com" */
			g[d->n++] = (uint32_t)i;
		}
	}
	free(pair_entry);
	pair_entry = NULL;
	/* keep only the groups of two or more; a single rule lives in its entry */
	off = 0;
	for (uint32_t e = 0; e < di->n_entries; e++)
		if (di->entries[e].n > 1)
			off += di->entries[e].n;
	di->postings = xcalloc(off, sizeof(*di->postings), &di->mem);
	if (!di->postings)
		goto err;
	di->n_postings = off;
	off = 0;
	for (uint32_t e = 0; e < di->n_entries; e++) {
		struct dentry *d = &di->entries[e];

		if (d->n == 1) {
			d->first = all[d->first];
			continue;
		}
		memcpy(di->postings + off, all + d->first, d->n * sizeof(*all));
		d->first = off;
		off += d->n;
	}
	free(all);
	if (di->n_entries < n_pairs) {
		struct dentry *shrunk =
			realloc(di->entries, (di->n_entries ? di->n_entries : 1) * sizeof(*shrunk));

		if (shrunk)
			di->entries = shrunk;
	}
	di->mem += (di->n_entries ? di->n_entries : 1) * sizeof(*di->entries);
	return di;

err:
	free(all);
	free(pair_entry);
	domain_index_free(di);
	errno = ENOMEM;
	return NULL;
}

void domain_index_free(struct domain_index *di)
{
	if (!di)
		return;
	free(di->slots);
	free(di->entries);
	free(di->postings);
	free(di->nodomain);
	free(di->rest);
	free(di);
}

size_t domain_index_mem(const struct domain_index *di)
{
	return di ? di->mem : 0;
}

bool domain_index_covers(const struct domain_index *di, const struct rule *rules, size_t n)
{
	return di && di->rules == rules && di->n_rules == n;
}

static void add_list(struct domain_iter *it, const uint32_t *l, uint32_t len)
{
	if (!len || it->n_lists >= DOMAIN_ITER_LISTS)
		return;
	it->list[it->n_lists] = l;
	it->len[it->n_lists] = len;
	it->pos[it->n_lists] = 0;
	it->n_lists++;
}

static void add_hit(struct domain_iter *it, const struct domain_index *di, uint32_t h,
		    uint32_t kind, const char *key, size_t klen)
{
	uint32_t e = find(di, h, kind, key, klen);

	if (e != UINT32_MAX)
		add_list(it, postings(di, &di->entries[e]), di->entries[e].n);
}

void domain_iter_init(struct domain_iter *it, const struct domain_index *di, const char *name)
{
	it->n_lists = 0;
	it->started = false;
	it->last = 0;
	it->rules = di->rules;
	if (!name) {
		add_list(it, di->nodomain, di->n_nodomain);
		it->n_hit_lists = 0;
		return;
	}
	size_t len = strnlen(name, 256);
	uint32_t h = FNV_BASIS;

	if (di->n_entries && len > 0 && len <= 253) {
		/* backward: at each label start, the suffix from there is complete */
		for (size_t i = len; i-- > 0;) {
			h = hash_step(h, name[i]);
			if (i == 0 || name[i - 1] == '.')
				add_hit(it, di, hash_final(h, KIND_SUFFIX), KIND_SUFFIX, name + i,
					len - i);
		}
		add_hit(it, di, hash_final(h, KIND_FULL), KIND_FULL, name, len);
	}
	it->n_hit_lists = it->n_lists;
	add_list(it, di->rest, di->n_rest);
}

long domain_iter_next(struct domain_iter *it, int *skip_cond)
{
	for (;;) {
		unsigned best = DOMAIN_ITER_LISTS;
		uint32_t v = UINT32_MAX;

		for (unsigned k = 0; k < it->n_lists; k++) {
			if (it->pos[k] < it->len[k] && it->list[k][it->pos[k]] < v) {
				v = it->list[k][it->pos[k]];
				best = k;
			}
		}
		if (best == DOMAIN_ITER_LISTS)
			return -1;
		it->pos[best]++;
		if (it->started && v == it->last)
			continue;
		it->started = true;
		it->last = v;
		if (skip_cond)
			*skip_cond = best < it->n_hit_lists ? domain_index_cond(&it->rules[v]) : -1;
		return (long)v;
	}
}
