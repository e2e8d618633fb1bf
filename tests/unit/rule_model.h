/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * rule_model.h - a deliberately plain C model of what the tc programs do with a compiled rule
 * image (include/xproxy/bpf_abi.h, "Kernel rules"). Tests compare it with the userspace
 * matcher (rule_list_match) and can compare it with the BPF programs themselves.
 *
 * It shares no code with core/rules.c on purpose: the LPM trie is a linear scan for the longest
 * prefix, the port intervals are binary-searched the way the datapath does (so an unsorted or
 * overlapping block gives wrong answers instead of being forgiven), and every condition is
 * written straight from the ABI comments.
 *
 * Usage:
 *   struct model_verdict v = model_eval(&img, &flow);
 *   model_check_image(&img, msg, sizeof(msg))   -> 0, or -1 with msg saying what is malformed
 */
#ifndef XP_TEST_RULE_MODEL_H
#define XP_TEST_RULE_MODEL_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "rules.h"

struct model_verdict {
	uint8_t verdict;
	uint8_t vsrc; /* XP_SRC_RULE or XP_SRC_FALLBACK */
	uint16_t outbound_id;
	uint32_t rule_id;
};

static inline bool model_bit(const uint8_t *a, unsigned i)
{
	return (a[i / 8] >> (7 - i % 8)) & 1;
}

static inline bool model_prefix_eq(const uint8_t *a, const uint8_t *p, unsigned plen)
{
	for (unsigned i = 0; i < plen; i++)
		if (model_bit(a, i) != model_bit(p, i))
			return false;
	return true;
}

/* BPF_MAP_TYPE_LPM_TRIE lookup with key (prefixlen 160, set id, addr): the entry of that set
 * with the longest prefix that contains addr, or NULL. */
static inline const struct xp_cidr_val *model_lpm(const struct rule_image *img, uint32_t set_id,
						  const uint8_t addr[16])
{
	const struct rule_image_cidr *best = NULL;

	for (size_t i = 0; i < img->n_cidrs; i++) {
		const struct rule_image_cidr *c = &img->cidrs[i];

		if (ntohl(c->key.set_id) != set_id || c->key.prefixlen < 32)
			continue;
		if (!model_prefix_eq(addr, c->key.addr, c->key.prefixlen - 32))
			continue;
		if (!best || c->key.prefixlen > best->key.prefixlen)
			best = c;
	}
	return best ? &best->val : NULL;
}

/* The block of intervals a rule points at (prange_first is absolute in xp_pranges). */
static inline const struct xp_prange *model_block(const struct rule_image *img,
						  const struct xp_rule *r)
{
	size_t first = (size_t)r->prange_first - (size_t)img->gen * XP_MAX_PRANGES;

	if (r->prange_first < img->gen * XP_MAX_PRANGES || first + r->prange_count > img->n_pranges)
		return NULL;
	return &img->pranges[first];
}

/* Binary search, as the datapath does. */
static inline const struct xp_prange *model_prange(const struct rule_image *img,
						   const struct xp_rule *r, uint16_t port)
{
	const struct xp_prange *b = model_block(img, r);
	size_t lo = 0, hi = r->prange_count;

	if (!b)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (port < b[mid].lo)
			hi = mid;
		else if (port > b[mid].hi)
			lo = mid + 1;
		else
			return &b[mid];
	}
	return NULL;
}

static inline bool model_is_v4(const uint8_t a[16])
{
	static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return memcmp(a, pfx, sizeof(pfx)) == 0;
}

static inline uint8_t model_l4(uint8_t proto)
{
	if (proto == 6)
		return XP_L4_TCP;
	if (proto == 17)
		return XP_L4_UDP;
	if (proto == 1 || proto == 58)
		return XP_L4_ICMP;
	return XP_L4_OTHER;
}

/* A set condition: member = found && verdict != NONE. */
static inline bool model_member(const struct rule_image *img, uint32_t set, const uint8_t addr[16],
				const struct xp_cidr_val **val)
{
	const struct xp_cidr_val *v = model_lpm(img, set, addr);

	*val = v;
	return v && v->verdict != XP_V_NONE;
}

static inline struct model_verdict model_eval(const struct rule_image *img,
					      const struct rule_flow *f)
{
	struct model_verdict out = {
		.verdict = img->set.fallback_verdict,
		.vsrc = XP_SRC_FALLBACK,
		.outbound_id = img->set.fallback_outbound,
		.rule_id = img->set.fallback_rule_id,
	};
	uint8_t ipbit = model_is_v4(f->daddr) ? XP_IP_V4 : XP_IP_V6;
	uint8_t l4bit = model_l4(f->l4proto);

	for (uint32_t i = 0; i < img->set.count && i < img->n_rules; i++) {
		const struct xp_rule *r = &img->rules[i];
		const struct xp_cidr_val *dv = NULL, *sv = NULL;
		const struct xp_prange *pr = NULL;
		bool in;

		if (r->ipmask && !(r->ipmask & ipbit))
			continue;
		if (r->l4mask && !(r->l4mask & l4bit))
			continue;
		if (!(r->dport_lo == 0 && r->dport_hi == 65535)) {
			in = r->dport_lo <= f->dport && f->dport <= r->dport_hi;
			if (r->flags & XP_RULE_F_NOT_DPORT)
				in = !in;
			if (!in)
				continue;
		}
		if (!(r->sport_lo == 0 && r->sport_hi == 65535)) {
			in = r->sport_lo <= f->sport && f->sport <= r->sport_hi;
			if (r->flags & XP_RULE_F_NOT_SPORT)
				in = !in;
			if (!in)
				continue;
		}
		if (r->take == XP_TAKE_PORTS) {
			pr = model_prange(img, r, f->dport);
			if (!pr)
				continue;
		} else if (r->prange_count > 0) {
			in = model_prange(img, r, f->dport) != NULL;
			if (r->flags & XP_RULE_F_NOT_PRANGE)
				in = !in;
			if (!in)
				continue;
		}
		if (r->dst_set) {
			in = model_member(img, r->dst_set, f->daddr, &dv);
			if (r->flags & XP_RULE_F_NOT_DST)
				in = !in;
			if (!in)
				continue;
		}
		if (r->src_set) {
			in = model_member(img, r->src_set, f->saddr, &sv);
			if (r->flags & XP_RULE_F_NOT_SRC)
				in = !in;
			if (!in)
				continue;
		}
		out.vsrc = XP_SRC_RULE;
		switch (r->take) {
		case XP_TAKE_DST_SET:
			out.verdict = dv->verdict;
			out.outbound_id = dv->outbound_id;
			out.rule_id = dv->rule_id;
			break;
		case XP_TAKE_SRC_SET:
			out.verdict = sv->verdict;
			out.outbound_id = sv->outbound_id;
			out.rule_id = sv->rule_id;
			break;
		case XP_TAKE_PORTS:
			out.verdict = pr->verdict;
			out.outbound_id = pr->outbound_id;
			out.rule_id = pr->rule_id;
			break;
		default:
			out.verdict = r->verdict;
			out.outbound_id = r->outbound_id;
			out.rule_id = r->rule_id;
			break;
		}
		return out;
	}
	return out;
}

/*
 * What the datapath relies on without checking: counts within the map sizes, set ids of this
 * generation, masked trie keys without duplicates, sorted disjoint interval blocks, take
 * values that name a set the rule has (and is not negated). -1 and a message on the first
 * violation.
 */
static inline int model_check_image(const struct rule_image *img, char *msg, size_t len)
{
	uint32_t gen = img->gen;

	if (img->n_rules > XP_MAX_RULES || img->n_pranges > XP_MAX_PRANGES)
		return snprintf(msg, len, "image too big"), -1;
	if (img->set.first != gen * XP_MAX_RULES || img->set.count != img->n_rules)
		return snprintf(msg, len, "ruleset first/count wrong"), -1;
	for (size_t i = 0; i < img->n_cidrs; i++) {
		const struct rule_image_cidr *c = &img->cidrs[i];
		uint32_t id = ntohl(c->key.set_id);
		unsigned plen = c->key.prefixlen - 32;

		if (c->key.prefixlen < 32 || plen > 128)
			return snprintf(msg, len, "cidr %zu: prefixlen %u", i, c->key.prefixlen),
			       -1;
		if ((id >> 31) != gen || (id & 0x7fffffff) == 0)
			return snprintf(msg, len, "cidr %zu: set id 0x%x not of gen %u", i, id,
					gen),
			       -1;
		for (unsigned b = plen; b < 128; b++)
			if (model_bit(c->key.addr, b))
				return snprintf(msg, len, "cidr %zu: host bits set", i), -1;
		for (size_t j = 0; j < i; j++)
			if (!memcmp(&img->cidrs[j].key, &c->key, sizeof(c->key)))
				return snprintf(msg, len, "cidr %zu: duplicate key", i), -1;
	}
	for (size_t i = 0; i < img->n_rules; i++) {
		const struct xp_rule *r = &img->rules[i];

		if (r->dst_set && (r->dst_set >> 31) != gen)
			return snprintf(msg, len, "rule %zu: dst set of the other gen", i), -1;
		if (r->src_set && (r->src_set >> 31) != gen)
			return snprintf(msg, len, "rule %zu: src set of the other gen", i), -1;
		if (r->take == XP_TAKE_DST_SET && (!r->dst_set || (r->flags & XP_RULE_F_NOT_DST)))
			return snprintf(msg, len, "rule %zu: take dst without a dst set", i), -1;
		if (r->take == XP_TAKE_SRC_SET && (!r->src_set || (r->flags & XP_RULE_F_NOT_SRC)))
			return snprintf(msg, len, "rule %zu: take src without a src set", i), -1;
		if (r->take == XP_TAKE_PORTS &&
		    (!r->prange_count || (r->flags & XP_RULE_F_NOT_PRANGE)))
			return snprintf(msg, len, "rule %zu: take ports without intervals", i), -1;
		if (r->take > XP_TAKE_PORTS)
			return snprintf(msg, len, "rule %zu: take %u", i, r->take), -1;
		if (r->dport_lo > r->dport_hi || r->sport_lo > r->sport_hi)
			return snprintf(msg, len, "rule %zu: inverted port range", i), -1;
		if (!r->prange_count)
			continue;
		const struct xp_prange *b = model_block(img, r);

		if (!b)
			return snprintf(msg, len, "rule %zu: interval block out of range", i), -1;
		for (size_t j = 0; j < r->prange_count; j++) {
			if (b[j].lo > b[j].hi)
				return snprintf(msg, len, "rule %zu: interval %zu inverted", i, j),
				       -1;
			if (j && b[j].lo <= b[j - 1].hi)
				return snprintf(msg, len, "rule %zu: intervals overlap/unsorted",
						i),
				       -1;
		}
	}
	return 0;
}

#endif
