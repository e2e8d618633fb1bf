/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_group - [group.NAME] sections through cfg_parse(), then a sequence of health results
 * through group_health_result() + group_update() + group_pick(), as core/groups.c feeds them.
 *
 * Input: INI text, optionally followed by a NUL and two bytes per health result: the first
 * picks an outbound member (over every group's outbound members in order), the second says
 * ok (low bit) and a latency ((byte >> 1) * 8 ms).
 *
 * Beyond "no crash, no leak, no hang" it checks what groups.c relies on: a SELECT names the
 * member now in g->current and indexes in range; a CUT only for a group with interrupt = yes,
 * of an outbound under that group, once per (group, leaf), and a "dead" one exactly for the
 * member whose result killed it; group_pick() returns NULL or an alive outbound under the
 * group; group_holders() lists the group first, each group once.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "group.h"

#define FUZZ_PATH "/nonexistent-xp-fuzz/fuzz.ini"

static int refers_to_host_file(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t j = i + 1;

		if (d[i] != '@')
			continue;
		while (j < n && (d[j] == ' ' || d[j] == '\t'))
			j++;
		if (j < n && d[j] == '/')
			return 1;
	}
	return 0;
}

/* Is `leaf` an outbound member anywhere under group gi? */
static int under(const struct group_set *s, size_t gi, const char *leaf, unsigned depth)
{
	const struct group *g = &s->g[gi];

	if (depth > s->n)
		return 0;
	for (size_t i = 0; i < g->n; i++) {
		if (g->m[i].group < 0 ? !strcmp(g->m[i].name, leaf)
				      : under(s, (size_t)g->m[i].group, leaf, depth + 1))
			return 1;
	}
	return 0;
}

/* Is outbound `leaf` alive as a member of some group under gi (where its health lives)? */
static int alive_under(const struct group_set *s, size_t gi, const char *leaf, unsigned depth)
{
	const struct group *g = &s->g[gi];

	if (depth > s->n)
		return 0;
	for (size_t i = 0; i < g->n; i++) {
		if (g->m[i].group < 0 ? !strcmp(g->m[i].name, leaf) &&
					       (g->m[i].h.alive || g->policy == GROUP_FIXED)
				      : alive_under(s, (size_t)g->m[i].group, leaf, depth + 1))
			return 1;
	}
	return 0;
}

static void check_events(struct group_set *s, size_t gi, size_t mi, enum group_change ch,
			 const struct group_ev *evs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct group_ev *e = &evs[i];
		const struct group *g;

		if (e->gi >= s->n)
			abort();
		g = &s->g[e->gi];
		if (e->from < -1 || e->from >= (int)g->n || e->to < -1 || e->to >= (int)g->n)
			abort();
		if (e->kind == GROUP_EV_SELECT) {
			if (e->from == e->to || g->current != e->to)
				abort();
			if (g->policy != GROUP_FALLBACK && g->policy != GROUP_MIN_LATENCY)
				abort();
			continue;
		}
		if (e->kind != GROUP_EV_CUT || !g->interrupt || !e->leaf ||
		    !under(s, e->gi, e->leaf, 0))
			abort();
		if (e->dead && (ch != GROUP_DIED || e->gi != gi || strcmp(e->leaf, g->m[mi].name)))
			abort();
		for (size_t j = 0; j < i; j++)
			if (evs[j].kind == GROUP_EV_CUT && evs[j].gi == e->gi &&
			    !strcmp(evs[j].leaf, e->leaf))
				abort();
	}
}

static void drive(struct group_set *s, const uint8_t *d, size_t n)
{
	size_t n_leaf = 0, *lg, *lm, *holders;

	for (size_t i = 0; i < s->n; i++)
		for (size_t j = 0; j < s->g[i].n; j++)
			n_leaf += s->g[i].m[j].group < 0;
	if (!n_leaf || !s->n)
		return;
	lg = calloc(n_leaf, sizeof(*lg));
	lm = calloc(n_leaf, sizeof(*lm));
	holders = calloc(s->n, sizeof(*holders));
	if (!lg || !lm || !holders)
		goto out;
	n_leaf = 0;
	for (size_t i = 0; i < s->n; i++) {
		for (size_t j = 0; j < s->g[i].n; j++) {
			if (s->g[i].m[j].group < 0) {
				lg[n_leaf] = i;
				lm[n_leaf++] = j;
			}
		}
	}
	for (size_t i = 0; i < s->n; i++) {
		size_t h = group_holders(s, i, holders, s->n);

		if (!h || h > s->n || holders[0] != i)
			abort();
		for (size_t a = 0; a < h; a++)
			for (size_t b = a + 1; b < h; b++)
				if (holders[a] == holders[b])
					abort();
	}
	for (size_t k = 0; k + 1 < n && k < 2 * 512; k += 2) {
		size_t which = d[k] % n_leaf, gi = lg[which], mi = lm[which];
		struct group *g = &s->g[gi];
		enum group_change ch = group_health_result(&g->m[mi].h, d[k + 1] & 1,
							   (uint32_t)(d[k + 1] >> 1) * 8,
							   g->tolerance);
		struct group_ev *evs = NULL;
		size_t ne = 0;

		if (group_update(s, gi, mi, ch, &evs, &ne) == 0)
			check_events(s, gi, mi, ch, evs, ne);
		free(evs);
		for (size_t i = 0; i < s->n; i++) {
			const char *p = group_pick(s, i, (uint32_t)k * 2654435761u);

			if (p && (!under(s, i, p, 0) || !alive_under(s, i, p, 0)))
				abort();
		}
	}
out:
	free(lg);
	free(lm);
	free(holders);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t text = nul ? (size_t)(nul - data) : size;
	struct group_set *s = NULL;
	struct cfg *c = NULL;
	char *errs = NULL;

	if (refers_to_host_file(data, text))
		return -1;
	if (cfg_parse(FUZZ_PATH, (const char *)data, text, &c, &errs) == 0) {
		if (group_set_parse(c, &s, NULL, NULL) == 0) {
			if (nul)
				drive(s, nul + 1, size - text - 1);
			group_set_free(s);
		} else {
			abort(); /* cfg_parse accepted the groups: the same parse must succeed */
		}
	}
	cfg_free(c);
	free(errs);
	return 0;
}
