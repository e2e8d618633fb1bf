/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cache.c - a hash table with chaining plus an LRU list, under one mutex.
 *
 * Lookups are short (hash, compare, copy at most one message), so a mutex costs less than the
 * bookkeeping a lock-free or per-loop design would need; per-loop caches would also multiply
 * memory by the number of workers and miss more often.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

struct lru {
	struct lru *prev, *next; /* head is the most recent */
};

struct entry {
	struct lru lru;	     /* first: an entry is its LRU node */
	struct entry *hnext; /* hash chain */
	uint32_t hash;
	uint16_t qtype, qclass;
	uint8_t bits; /* DO, CD */
	uint8_t key_len;
	uint8_t key[DNS_MAX_NAME]; /* lower-cased wire name */
	uint64_t stored_ms, expire_ms;
	size_t len;
	uint8_t msg[]; /* the answer as received (id and TTLs rewritten on the way out) */
};

struct dns_cache {
	pthread_mutex_t lock;
	struct entry **buckets;
	size_t n_buckets; /* power of two */
	struct lru lru;	    /* sentinel */
	size_t max_entries, max_bytes;
	uint32_t max_ttl_s;
	struct dns_cache_stats st;
};

#define KEY_DO 0x1
#define KEY_CD 0x2

struct key {
	uint8_t name[DNS_MAX_NAME];
	uint8_t len;
	uint16_t qtype, qclass;
	uint8_t bits;
	uint32_t hash;
};

static void make_key(const struct dns_msg *q, struct key *k)
{
	uint32_t h = 2166136261u;
	size_t i;

	k->len = (uint8_t)q->q.name_len;
	for (i = 0; i < q->q.name_len; i++) {
		uint8_t c = q->q.name[i];

		k->name[i] = c >= 'A' && c <= 'Z' ? c + 32 : c;
		h = (h ^ k->name[i]) * 16777619u;
	}
	k->qtype = q->q.qtype;
	k->qclass = q->q.qclass;
	k->bits = (dns_do_bit(q) ? KEY_DO : 0) | (q->flags & DNS_F_CD ? KEY_CD : 0);
	h = (h ^ k->qtype) * 16777619u;
	h = (h ^ k->qclass) * 16777619u;
	h = (h ^ k->bits) * 16777619u;
	k->hash = h;
}

static size_t entry_bytes(const struct entry *e)
{
	return sizeof(*e) + e->len;
}

struct dns_cache *dns_cache_new(size_t max_entries, size_t max_bytes, uint32_t max_ttl_s)
{
	struct dns_cache *c;
	size_t n = 16;

	if (!max_entries || !max_bytes) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	while (n < max_entries && n < (1u << 24))
		n <<= 1;
	c->buckets = calloc(n, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		return NULL;
	}
	c->n_buckets = n;
	c->max_entries = max_entries;
	c->max_bytes = max_bytes;
	c->max_ttl_s = max_ttl_s;
	c->lru.next = c->lru.prev = &c->lru;
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void dns_cache_free(struct dns_cache *c)
{
	struct lru *e, *n;

	if (!c)
		return;
	for (e = c->lru.next; e != &c->lru; e = n) {
		n = e->next;
		free(e); /* the node is the entry's first member */
	}
	pthread_mutex_destroy(&c->lock);
	free(c->buckets);
	free(c);
}

static void lru_unlink(struct entry *e)
{
	e->lru.prev->next = e->lru.next;
	e->lru.next->prev = e->lru.prev;
}

static void lru_push(struct dns_cache *c, struct entry *e)
{
	e->lru.next = c->lru.next;
	e->lru.prev = &c->lru;
	c->lru.next->prev = &e->lru;
	c->lru.next = &e->lru;
}

static struct entry **find(struct dns_cache *c, const struct key *k)
{
	struct entry **pp = &c->buckets[k->hash & (c->n_buckets - 1)];

	for (; *pp; pp = &(*pp)->hnext) {
		struct entry *e = *pp;

		if (e->hash == k->hash && e->qtype == k->qtype && e->qclass == k->qclass &&
		    e->bits == k->bits && e->key_len == k->len && !memcmp(e->key, k->name, k->len))
			return pp;
	}
	return pp;
}

static void drop(struct dns_cache *c, struct entry **pp)
{
	struct entry *e = *pp;

	*pp = e->hnext;
	lru_unlink(e);
	c->st.entries--;
	c->st.bytes -= entry_bytes(e);
	free(e);
}

static void drop_entry(struct dns_cache *c, struct entry *e)
{
	struct entry **pp = &c->buckets[e->hash & (c->n_buckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	drop(c, pp);
}

uint32_t dns_cache_ttl(const struct dns_msg *a, uint32_t max_ttl_s)
{
	int rcode = DNS_RCODE(a->flags);
	uint32_t ttl;

	if (a->flags & DNS_F_TC)
		return 0;
	if (rcode == DNS_R_NOERROR && a->n_answer_qtype) {
		ttl = a->min_answer_ttl;
	} else if (rcode == DNS_R_NXDOMAIN || (rcode == DNS_R_NOERROR && !a->ancount)) {
		if (!a->has_soa)
			return 0;
		ttl = a->soa_ttl < a->soa_minimum ? a->soa_ttl : a->soa_minimum;
	} else {
		return 0;
	}
	if (max_ttl_s && ttl > max_ttl_s)
		ttl = max_ttl_s;
	return ttl;
}

int dns_cache_put(struct dns_cache *c, const struct dns_msg *q, const struct dns_msg *a,
		  const uint8_t *ans, size_t len, uint64_t now_ms)
{
	uint32_t ttl = dns_cache_ttl(a, c->max_ttl_s);
	struct entry **pp, *e;
	struct key k;

	if (!ttl || !dns_question_match(&q->q, &a->q))
		return 1;
	if (sizeof(*e) + len > c->max_bytes)
		return 1;
	e = malloc(sizeof(*e) + len);
	if (!e)
		return -ENOMEM;
	make_key(q, &k);
	e->hash = k.hash;
	e->qtype = k.qtype;
	e->qclass = k.qclass;
	e->bits = k.bits;
	e->key_len = k.len;
	memcpy(e->key, k.name, k.len);
	e->stored_ms = now_ms;
	e->expire_ms = now_ms + (uint64_t)ttl * 1000;
	e->len = len;
	memcpy(e->msg, ans, len);

	pthread_mutex_lock(&c->lock);
	pp = find(c, &k);
	if (*pp)
		drop(c, pp); /* a fresher answer replaces the old one */
	while (c->st.entries && (c->st.entries + 1 > c->max_entries ||
				 c->st.bytes + entry_bytes(e) > c->max_bytes)) {
		drop_entry(c, (struct entry *)c->lru.prev);
		c->st.evictions++;
	}
	pp = find(c, &k);
	e->hnext = NULL;
	*pp = e;
	lru_push(c, e);
	c->st.entries++;
	c->st.bytes += entry_bytes(e);
	c->st.inserts++;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

ssize_t dns_cache_get(struct dns_cache *c, const struct dns_msg *q, uint8_t *out, size_t cap,
		      uint64_t now_ms)
{
	struct entry **pp, *e;
	uint32_t elapsed;
	struct key k;
	size_t len;

	make_key(q, &k);
	pthread_mutex_lock(&c->lock);
	pp = find(c, &k);
	e = *pp;
	if (!e) {
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	if (now_ms >= e->expire_ms) {
		drop(c, pp);
		c->st.expired++;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	if (e->len > cap) {
		pthread_mutex_unlock(&c->lock);
		return -ENOSPC;
	}
	lru_unlink(e);
	lru_push(c, e);
	len = e->len;
	memcpy(out, e->msg, len);
	elapsed = (uint32_t)((now_ms - e->stored_ms) / 1000);
	pthread_mutex_unlock(&c->lock);

	dns_put16(out, q->id);
	/* same name ignoring case, so same length: the client sees its own spelling back */
	memcpy(out + DNS_HDR_LEN, q->q.name, q->q.name_len);
	if (elapsed && dns_age(out, len, elapsed))
		return 0; /* cannot happen for a message validated before it was stored */
	return (ssize_t)len;
}

void dns_cache_stats(struct dns_cache *c, struct dns_cache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->st;
	pthread_mutex_unlock(&c->lock);
}
