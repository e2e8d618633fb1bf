/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * rules - the [route] rule language: parsing, userspace matching, and compiling the rules the
 * kernel can evaluate into the map image of include/xproxy/bpf_abi.h.
 *
 * Syntax (docs/configuration.md has the full reference):
 *
 *   rule = COND [& COND ...], TARGET
 *   fallback = TARGET
 *
 *   COND   := [!]TYPE:VALUE[|VALUE...]        alternatives are OR-ed, conditions AND-ed
 *   TYPE   := dst-cidr | src-cidr | dport | sport | proto | ipv
 *           | domain | domain-suffix | domain-keyword | domain-regex
 *   VALUE  := 10.0.0.0/8 | 2001:db8::/32 | 192.0.2.1 | @/path/list.txt (cidr types: one per line)
 *           | 443 | 8000-8999                (ports)
 *           | tcp | udp | icmp               (proto; icmp means ICMP and ICMPv6)
 *           | 4 | 6                          (ipv)
 *   TARGET := DIRECT | BLOCK | DNS | <outbound name>
 *
 * First match wins. Rules with a domain condition never match in the kernel (the kernel has
 * no names); they match in userspace for flows named by DNS or a sniffer.
 *
 * Addresses are 16 bytes; IPv4 is IPv4-mapped and its prefix length is 96 + n. An IPv6 prefix
 * never matches an IPv4 address (::/0 means "all IPv6").
 */
#ifndef XP_RULES_H
#define XP_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xproxy/bpf_abi.h>

enum rule_cond_type {
	RC_DST_CIDR = 1,
	RC_SRC_CIDR,
	RC_DPORT,
	RC_SPORT,
	RC_PROTO,
	RC_IPVER,
	RC_DOMAIN,
	RC_DOMAIN_SUFFIX,
	RC_DOMAIN_KEYWORD,
	RC_DOMAIN_REGEX,
};

struct rule_cidr {
	uint8_t addr[16]; /* masked to plen */
	uint8_t plen;	  /* 0..128; IPv4 as 96 + n */
};

struct rule_prange {
	uint16_t lo, hi; /* inclusive */
};

struct rule_cond {
	enum rule_cond_type type;
	bool negate;
	size_t n; /* alternatives */
	union {
		struct rule_cidr *cidrs;   /* RC_DST_CIDR, RC_SRC_CIDR */
		struct rule_prange *ports; /* RC_DPORT, RC_SPORT */
		uint8_t *l4masks;	   /* RC_PROTO: XP_L4_* bit per alternative */
		uint8_t *ipmasks;	   /* RC_IPVER: XP_IP_* bit per alternative */
		char **names;		   /* RC_DOMAIN*: lower-case; RC_DOMAIN_REGEX: the pattern */
	};
	void *regexes; /* RC_DOMAIN_REGEX: compiled (regex_t[n]) */
};

enum rule_target_kind {
	RT_DIRECT = 1,
	RT_BLOCK = 2,
	RT_OUTBOUND = 3,
	RT_DNS = 4, /* to the [dns] plugin (XP_V_DNS); not allowed as the fallback */
};

struct rule {
	int line;    /* line in the config file */
	uint32_t id; /* 1-based position among the rule lines; 0 for the fallback */
	struct rule_cond *conds;
	size_t n_conds;
	enum rule_target_kind kind;
	char *target;	 /* as written; for RT_OUTBOUND the outbound name */
	bool has_domain; /* has a domain condition: never matches in the kernel */
};

struct domain_index;
struct rule_list {
	struct rule *rules;
	size_t n;
	struct rule fallback; /* DIRECT when [route] has no fallback line */
	/* Built by rule_list_index() once the list is complete (core/domain.h); used by the two
	 * list matchers while it still covers rules[0..n), else they walk every rule. */
	struct domain_index *index;
	/* [sniff] is configured: rules_compile() turns domain rules into INSPECT kernel rules
	 * (their non-domain conditions, verdict XP_V_INSPECT) instead of skipping them. */
	bool inspect_domains;
};

/* Index the list's full and suffix domain conditions (again, if it was indexed before).
 * 0 or -ENOMEM; without an index the matchers are still correct, only linear. */
int rule_list_index(struct rule_list *rl);

/* Parse the right-hand side of a "rule =" line (`is_fallback`: of a "fallback =" line, which is
 * only a TARGET). `base_dir` resolves relative @file paths. On error returns -EINVAL and writes
 * a message (without file:line) into err. */
int rule_parse(const char *text, bool is_fallback, const char *base_dir, struct rule *out,
	       char *err, size_t errlen);
void rule_free(struct rule *r);
void rule_list_free(struct rule_list *rl);

/* Userspace evaluation (same semantics as the kernel for rules without domains). */
struct rule_flow {
	uint8_t saddr[16];
	uint8_t daddr[16];
	uint16_t sport, dport; /* host order */
	uint8_t l4proto;       /* IPPROTO_* */
	const char *domain;    /* NULL when unknown: domain conditions do not match */
};
const struct rule *rule_list_match(const struct rule_list *rl, const struct rule_flow *f);

/* Evaluation with part of the flow unknown (a DNS answer knows the name and the address, not the
 * ports, protocol or client). `known` is a mask of RF_KNOWN_*. A condition on an unknown field is
 * "maybe". Rules are walked in order: a rule with a known condition that fails is skipped; a rule
 * whose conditions are all known and match is the result (*partial = false); a rule whose known
 * conditions match but which has a "maybe" condition stops the walk: it is returned with
 * *partial = true (the verdict depends on what is unknown: leave the flow to userspace).
 * Returns &rl->fallback when nothing matches (never NULL). Full and suffix domain conditions are
 * looked up in an index: the cost does not grow with the number of such rules. */
#define RF_KNOWN_DST 0x1    /* daddr (and so the IP version) */
#define RF_KNOWN_DOMAIN 0x2 /* domain (NULL domain with this bit: known to have no name) */
#define RF_KNOWN_PORTS 0x4  /* sport, dport */
#define RF_KNOWN_PROTO 0x8  /* l4proto */
#define RF_KNOWN_SRC 0x10   /* saddr */
#define RF_KNOWN_ALL 0x1f
const struct rule *rule_list_match_partial(const struct rule_list *rl, const struct rule_flow *f,
					   unsigned known, bool *partial);
bool rule_match(const struct rule *r, const struct rule_flow *f);

/* Kernel image of one generation (0 or 1): what dp writes into xp_rules / xp_cidrs /
 * xp_pranges before flipping xp_ctl.rules_gen. Set ids of generation g have bit 31 = g, so they
 * never collide with the other generation's. */
struct rule_image_cidr {
	struct xp_cidr_key key;
	struct xp_cidr_val val;
};

struct rule_image {
	uint32_t gen;
	struct xp_rule *rules; /* rules[i] goes to xp_rules[set.first + i] */
	size_t n_rules;
	struct rule_image_cidr *cidrs;
	size_t n_cidrs;
	struct xp_prange *pranges; /* pranges[i] goes to xp_pranges[gen * XP_MAX_PRANGES + i] */
	size_t n_pranges;
	struct xp_ruleset set; /* first = gen * XP_MAX_RULES, count, fallback */
	size_t n_skipped;      /* rules that need a domain (skipped, or INSPECT with [sniff]) */
};

/* Outbound name -> id resolver (ids are stable for the daemon's lifetime); -ENOENT if unknown. */
typedef int (*rule_outbound_id_fn)(void *ctx, const char *name);

/* Compile. Consecutive single-condition dst-cidr (or src-cidr, or dport) rules are merged into
 * one kernel rule with one lookup, keeping first-match semantics. Returns 0, -E2BIG (more
 * than XP_MAX_RULES kernel rules or XP_MAX_PRANGES intervals; err says which), -ENOENT
 * (unknown outbound; err names it) or -ENOMEM. */
int rules_compile(const struct rule_list *rl, uint32_t gen, rule_outbound_id_fn outbound_id,
		  void *ctx, struct rule_image *out, char *err, size_t errlen);
void rule_image_free(struct rule_image *img);

/* Helpers shared with tests and dp. */
int rule_parse_cidr(const char *s, struct rule_cidr *out); /* 0 or -EINVAL */
void rule_addr_from_v4(uint8_t out[16], uint32_t v4_be);

#endif
