/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * names - the address -> name table behind host->dns_learn, and routing by name.
 *
 * For every (name, address, ttl) the DNS plugin learns, the [route] rules are evaluated with the
 * address and the name known (rule_list_match_partial, RF_KNOWN_DST | RF_KNOWN_DOMAIN) and the
 * verdict is written into the kernel destination-verdict map (writer XP_DSTW_DNS, expiry = TTL +
 * grace, tag = the name's id) before names_learn() returns, so the client's first packet to the
 * address, which can only come after the answer, is decided in the kernel. A partial result (the
 * rule also depends on ports, protocol or client) and an address claimed by live names whose
 * verdicts differ are written as XP_V_INSPECT: the sniffers decide per flow.
 *
 * Sniffed names (names_learn_sniffed) are cached per (address, port, protocol), and only when no
 * live DNS name claims the address (a DNS name is a stronger statement than one flow's SNI).
 *
 * Bounded: at most map_size addresses (DNS and sniffed entries together); past it -ENOSPC is
 * returned and counted. Entries expire (names_expire(), called by the janitor, also clears them
 * from the kernel). A reload (names_set_rules) re-evaluates every live entry.
 *
 * Thread-safe: every function may be called from any thread (one mutex; the work under it is a
 * rule walk and one map update).
 */
#ifndef XP_NAMES_H
#define XP_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include <xproxy/bpf_abi.h>
#include <xproxy/plugin.h>

#include "rules.h"

#define NAMES_NAME_MAX 254 /* longest DNS name in text form, without the root dot */

/* Where verdicts go and how outbound names become ids (the daemon's, or a test's fake). */
struct names_env {
	void *ctx;
	int (*dst_set)(void *ctx, const struct xp_dst_key *k, const struct xp_dst_verdict *v);
	int (*dst_del)(void *ctx, const struct xp_dst_key *k);
	uint64_t (*now_ns)(void); /* the bpf_ktime_get_ns() clock */
	int (*outbound_id)(void *ctx, const char *name); /* -ENOENT when unknown */
};

struct names_stats {
	uint64_t learned;	/* names_learn calls that wrote a verdict */
	uint64_t sniffed;	/* names_learn_sniffed calls that wrote a verdict */
	uint64_t sniff_skipped; /* sniffed names not cached: a DNS name claims the address */
	uint64_t sniff_mixed;	/* a sniffed place saw names with different verdicts: not cached */
	uint64_t conflicts;	/* verdicts turned into INSPECT: live names disagree */
	uint64_t partial;	/* verdicts turned into INSPECT: the rule needs ports/client */
	uint64_t full;		/* -ENOSPC: map_size addresses live */
	uint64_t map_errors;	/* the kernel map refused an update */
	uint64_t expired;	/* addresses removed after their TTL + grace */
	uint64_t live;		/* addresses in the table now (DNS and sniffed) */
	uint64_t names;		/* distinct names in the table now */
};

/* Main thread, before any other call. `rules` is borrowed and must stay valid until the next
 * names_set_rules() (or names_fini()); NULL = no rules yet (everything takes the fallback of an
 * empty list: DIRECT). 0 or -ENOMEM. */
int names_init(const struct names_env *env, const struct rule_list *rules, uint32_t map_size,
	       uint64_t grace_ms);
/* Forget everything; entries are cleared from the kernel map too when `clear_kernel`. */
void names_fini(int clear_kernel);

/* Reload: new rules (same lifetime rule as names_init) and options; every live entry is
 * re-evaluated and its kernel verdict rewritten. A smaller map_size does not evict live
 * entries: new ones are refused until enough expire. */
void names_set_rules(const struct rule_list *rules, uint32_t map_size, uint64_t grace_ms);

/* host->dns_learn. 0, -EINVAL (bad name or address), -ENOSPC (table full), -ENOENT (the rule
 * names an outbound that does not exist), or the map's -errno. */
int names_learn(const char *name, const union xp_sockaddr *addr, uint32_t ttl_ms);

/* For the sniffers: `name` was seen in a flow to addr:port/l4proto. Cached as the verdict of
 * (addr, port, l4proto) for ttl_ms, unless a live DNS name claims addr (then -EEXIST, nothing
 * written). Same errors as names_learn otherwise. The address's port in `addr` is ignored. */
int names_learn_sniffed(const char *name, const union xp_sockaddr *addr, uint16_t port,
			uint8_t l4proto, uint32_t ttl_ms);

/* The live name for a destination: the sniffed name of (addr, port of addr, l4proto) if any,
 * else the most recently learned DNS name of the address. Copied into buf (NUL-terminated,
 * truncated to len). 0 or -ENOENT. */
int names_lookup(const union xp_sockaddr *addr, uint8_t l4proto, char *buf, size_t len);

/* The name whose id is `tag` (xp_dst_verdict.tag, FLOW_NEW events), while it is live. 0 or
 * -ENOENT. */
int names_by_tag(uint32_t tag, char *buf, size_t len);

/* host->route_domain: the rules for a flow to `domain` with nothing else known
 * (RF_KNOWN_DOMAIN only). out->size is set by the caller; filled up to it. 0 or -errno. */
int names_route_domain(const char *domain, struct xp_route_result *out);

/* Janitor (main thread): drop entries whose TTL + grace has passed. Returns how many. */
unsigned names_expire(void);

void names_stats_get(struct names_stats *out);

/* Name normalisation shared with dnsq and tests: lower-case, strip one trailing dot, check the
 * RFC 1035 text limits (1..253 characters, labels 1..63, no empty label). 0 or -EINVAL. */
int names_normalize(const char *in, char *out, size_t outlen);

#endif
