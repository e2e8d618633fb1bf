/* SPDX-License-Identifier: GPL-2.0-only */
/* ptrset.h - a small thread-safe set of pointers (unordered, no duplicates checked): the
 * running TCP and UDP workers that group cuts are posted to (conn.c, udp.c). Iterate with
 * s->lock held over s->v[0 .. s->n). */
#ifndef XP_PTRSET_H
#define XP_PTRSET_H

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct ptrset {
	pthread_mutex_t lock;
	void **v;
	size_t n, cap;
};

#define PTRSET_INIT { .lock = PTHREAD_MUTEX_INITIALIZER }

/* false when out of memory (p is not in the set) */
static inline bool ptrset_add(struct ptrset *s, void *p)
{
	bool ok;

	pthread_mutex_lock(&s->lock);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		void **v = realloc(s->v, cap * sizeof(*v));

		if (v) {
			s->v = v;
			s->cap = cap;
		}
	}
	ok = s->n < s->cap;
	if (ok)
		s->v[s->n++] = p;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* Removing what is not there is a no-op; the last removal frees the storage. */
static inline void ptrset_del(struct ptrset *s, void *p)
{
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i] == p) {
			s->v[i] = s->v[--s->n];
			break;
		}
	}
	if (!s->n) {
		free(s->v);
		s->v = NULL;
		s->cap = 0;
	}
	pthread_mutex_unlock(&s->lock);
}

#endif
