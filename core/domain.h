/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * domain - an index over the full and suffix domain conditions of a rule list, so that matching
 * a name costs the same with 10 or 100,000 domain rules.
 *
 * A rule with at least one non-negated `domain:` or `domain-suffix:` condition is "indexed": it
 * is stored under every alternative of its first such condition, in a hash table keyed by
 * (kind, name). A rule can only match a name if that condition holds, i.e. the name equals one
 * of its full keys or ends, on a label boundary, with one of its suffix keys. So the rules that
 * could match a name are: the indexed rules found by one lookup of the whole name (full keys)
 * and one lookup per label suffix (suffix keys), plus every rule that is not indexed (address
 * rules, keyword, regex and negated-only domain rules), which stay a plain walk.
 *
 * domain_iter yields those candidates in ascending rule order (a merge of the hit lists with
 * the not-indexed list), so the first candidate that matches is the first match of the whole
 * list. Cost per name: (labels + 1) hash lookups + the not-indexed rules + the rules stored
 * under the keys that hit; independent of the number of other indexed rules.
 *
 * Immutable once built: safe to share between threads. Keys point into the rules' own name
 * strings: the index must be freed before the rules (rule_list_free does it).
 */
#ifndef XP_DOMAIN_H
#define XP_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rule;
struct domain_index;

/* Build over rules[0..n). NULL with errno (ENOMEM, E2BIG past UINT32_MAX - 1 rules). */
struct domain_index *domain_index_build(const struct rule *rules, size_t n);
void domain_index_free(struct domain_index *di); /* NULL-safe */

/* The condition a rule is indexed by (its first non-negated domain: or domain-suffix:
 * condition with at least one alternative), or -1 when the rule is not indexed. */
int domain_index_cond(const struct rule *r);

/* Bytes the index holds (heap), for benchmarks and logs. */
size_t domain_index_mem(const struct domain_index *di);
/* Was it built for exactly this array? (a list changed after indexing must not use it) */
bool domain_index_covers(const struct domain_index *di, const struct rule *rules, size_t n);

#define DOMAIN_ITER_LISTS 130 /* a 253-character name has at most 127 labels, + full + rest */

/* Candidates for one name, in ascending rule index. */
struct domain_iter {
	const uint32_t *list[DOMAIN_ITER_LISTS];
	uint32_t len[DOMAIN_ITER_LISTS];
	uint32_t pos[DOMAIN_ITER_LISTS];
	unsigned n_lists;
	unsigned n_hit_lists; /* list[0..n_hit_lists) came from index hits */
	uint32_t last;	      /* the index returned last (duplicates are skipped) */
	bool started;
	const struct rule *rules;
};

/* `name`: lower-case, no trailing dot, 1..253 characters; or NULL for a flow known to have no
 * name (then only rules without any domain condition are candidates). */
void domain_iter_init(struct domain_iter *it, const struct domain_index *di, const char *name);
/* Next candidate rule index, or -1 at the end. *skip_cond is the condition the index already
 * proved true for this rule (the caller need not evaluate it again), or -1. */
long domain_iter_next(struct domain_iter *it, int *skip_cond);

#endif
