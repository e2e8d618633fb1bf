/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * group - [group.NAME] outbound groups: parsing, validation, member health and selection.
 *
 * Pure: no loop, no sockets, no clock, no locks. The caller owns the threading (the daemon
 * updates health on the main thread and picks under its own lock) and feeds check results and
 * random numbers in, so every policy is testable without a network.
 *
 * A group's members are outbounds or other groups, in file order. Health is kept per leaf
 * member (an outbound member of this group: checks use this group's check_url/target, so the
 * same outbound can be alive in one group and dead in another). A member that is a group is
 * alive when any of its members is.
 */
#ifndef XP_GROUP_H
#define XP_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfg;

enum group_policy {
	GROUP_FALLBACK = 0, /* the first member alive, in order (default) */
	GROUP_FIXED,	    /* always the first member; no health checks */
	GROUP_RANDOM,	    /* uniform over the alive members */
	GROUP_MIN_LATENCY,  /* lowest moving-average latency among the alive, with hysteresis */
};

/* min-latency switches only when the best member beats the current one by both margins:
 * moving averages of nearby members cross all the time, and every switch moves new
 * connections to another exit. */
#define GROUP_HYST_PCT 10
#define GROUP_HYST_MS 5

/* Moving average: avg += (sample - avg) / GROUP_EWMA_DIV (the first sample sets it). */
#define GROUP_EWMA_DIV 4

struct group_health {
	bool alive;	   /* members start alive: a fresh daemon must route before any check */
	unsigned fails;	   /* consecutive failures */
	uint32_t avg_ms;   /* moving average latency; valid when have_avg */
	bool have_avg;
	uint64_t checks, failures; /* totals, for statistics */
};

/* group_health_result() */
enum group_change {
	GROUP_SAME = 0,
	GROUP_DIED,	/* this failure reached the tolerance */
	GROUP_REVIVED,	/* a success after being dead */
};

struct group_member {
	char *name;
	int group; /* index of the member group in the set, -1: an outbound */
	struct group_health h; /* outbound members only */
};

struct group {
	char *name;
	int line;
	enum group_policy policy;
	struct group_member *m;
	size_t n;
	/* health checks (needs_health()) */
	char *check_host; /* check_url's host or check_target's host, no brackets */
	uint16_t check_port;
	char *check_path; /* check_url's path ("/" at least); NULL: TCP connect only */
	uint64_t interval_ms, timeout_ms;
	unsigned tolerance;
	bool interrupt; /* interrupt = yes: close connections off a dead or left member */
	int current; /* fallback, min-latency: the member selected last (-1: none yet) */
};

struct group_set {
	struct group *g;
	size_t n;
};

/* Build the groups of cfg's [group.*] sections. Errors ("line: message", without the file)
 * go to err(arg, line, msg); returns 0, -EINVAL (errors reported) or -ENOMEM. An empty set
 * (no groups) is valid: *out is still allocated. */
int group_set_parse(const struct cfg *cfg, struct group_set **out,
		    void (*err)(void *arg, int line, const char *msg), void *arg);
void group_set_free(struct group_set *s);

/* Index of a group by name, -1 if none. */
int group_find(const struct group_set *s, const char *name);
/* Does this group run health checks? (Every policy but fixed.) */
bool group_needs_health(const struct group *g);

/* Reload: copy health (and min-latency's choice) from `old` for every member whose group
 * exists in both with the same check settings and which is still an outbound member. */
void group_set_carry(struct group_set *s, const struct group_set *old);

/* Feed one check result (latency_ms only matters when ok). */
enum group_change group_health_result(struct group_health *h, bool ok, uint32_t latency_ms,
				      unsigned tolerance);

/* The leaf outbound a new connection through group `gi` uses, or NULL when the group has
 * no member alive (fixed with an outbound first: never NULL). `rnd` is a uniform random number (random policy).
 * min-latency remembers its choice in the group, so this mutates the set. */
const char *group_pick(struct group_set *s, size_t gi, uint32_t rnd);
/* The same, also listing the groups the choice went through, gi first, in path[0..max);
 * *n is how many there were (more than max when the path did not fit). */
const char *group_pick_path(struct group_set *s, size_t gi, uint32_t rnd, size_t *path,
			    size_t max, size_t *n);

const char *group_policy_name(enum group_policy p);

/* What a health result changed, for the log and for interrupt = yes (group_update()). */
enum group_ev_kind {
	GROUP_EV_SELECT, /* a fallback or min-latency group selects another member */
	GROUP_EV_CUT,	 /* interrupt = yes: close the connections through `leaf` */
};

struct group_ev {
	enum group_ev_kind kind;
	size_t gi;	  /* the group */
	int from, to;	  /* SELECT: member indexes (from -1: the first selection, to -1: none
			   * alive); CUT after a switch: the same, else -1 */
	const char *leaf; /* CUT: an outbound (its name in the set) */
	bool dead;	  /* CUT: leaf died in gi (else gi's selection moved off it) */
};

/* After the health of member mi of group gi changed (`ch`, from group_health_result(), which
 * is GROUP_SAME for a plain sample: a min-latency average moves with each): recompute the
 * selection of every fallback and min-latency group (g->current, as a new connection would
 * pick) and list, in *evs / *n (malloc'd, the caller frees), every selection that changed and,
 * for groups with interrupt = yes, the leaves whose connections through that group must close:
 * the member that died, and the leaves of a member the selection moved away from (less those
 * of the member it moved to). One CUT per (group, leaf). 0 or -ENOMEM. */
int group_update(struct group_set *s, size_t gi, size_t mi, enum group_change ch,
		 struct group_ev **evs, size_t *n);

/* The groups whose connections a CUT in gi concerns: gi and every group holding it, directly
 * or through other groups. Writes their indexes to out (at most max); returns how many. */
size_t group_holders(const struct group_set *s, size_t gi, size_t *out, size_t max);

#endif
