/* SPDX-License-Identifier: GPL-2.0-only */
/* group: [group.NAME] parsing and validation through cfg_parse (file:line errors), every
 * selection policy, tolerance and revival, the moving average, min-latency's hysteresis,
 * nested groups and carrying health over a reload. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "conn.h"
#include "group.h"

#define BASE                                                                                   \
	"[global]\nlan = eth0\n[outbound.a]\nplugin = direct\n[outbound.b]\nplugin = direct\n" \
	"[outbound.c]\nplugin = direct\n" /* the next line is line 9 */

static struct group_set *parse_ok(const char *text, struct cfg **cfgp)
{
	struct group_set *s = NULL;
	char *errors = NULL;
	struct cfg *cfg = NULL;
	int rc = cfg_parse("t.ini", text, strlen(text), &cfg, &errors);

	if (rc)
		fprintf(stderr, "unexpected errors:\n%s", errors ? errors : "(none)\n");
	assert_int_equal(rc, 0);
	assert_int_equal(group_set_parse(cfg, &s, NULL, NULL), 0);
	assert_non_null(s);
	if (cfgp)
		*cfgp = cfg;
	else
		cfg_free(cfg);
	return s;
}

static void expect_error(const char *text, const char *want)
{
	char *errors = NULL;
	struct cfg *cfg = NULL;

	assert_int_equal(cfg_parse("t.ini", text, strlen(text), &cfg, &errors), -EINVAL);
	assert_non_null(errors);
	if (!strstr(errors, want))
		fprintf(stderr, "wanted '%s' in:\n%s", want, errors);
	assert_non_null(strstr(errors, want));
	free(errors);
}

static void test_parse(void **state)
{
	struct cfg *cfg;
	struct group_set *s = parse_ok(BASE "[group.hk]\nmembers = a, b,c\npolicy = min-latency\n"
					    "check_url = http://[2001:db8::1]:8080/gen_204\n"
					    "interval = 1s\ntimeout = 500ms\ntolerance = 2\n"
					    "[group.top]\nmembers = hk c\ncheck_target = x.test:443\n"
					    "[route]\nrule = dport:443, top\nfallback = hk\n",
					    &cfg);
	struct group *g;

	assert_int_equal(s->n, 2);
	g = &s->g[group_find(s, "hk")];
	assert_int_equal(g->line, 9);
	assert_int_equal(g->policy, GROUP_MIN_LATENCY);
	assert_int_equal(g->n, 3);
	assert_string_equal(g->m[2].name, "c");
	assert_int_equal(g->m[2].group, -1);
	assert_string_equal(g->check_host, "2001:db8::1");
	assert_int_equal(g->check_port, 8080);
	assert_string_equal(g->check_path, "/gen_204");
	assert_int_equal(g->interval_ms, 1000);
	assert_int_equal(g->timeout_ms, 500);
	assert_int_equal(g->tolerance, 2);
	g = &s->g[group_find(s, "top")];
	assert_int_equal(g->policy, GROUP_FALLBACK); /* the default */
	assert_int_equal(g->m[0].group, group_find(s, "hk"));
	assert_string_equal(g->check_host, "x.test");
	assert_int_equal(g->check_port, 443);
	assert_null(g->check_path); /* TCP connect only */
	assert_int_equal(g->interval_ms, 30000);
	assert_int_equal(g->timeout_ms, 5000);
	assert_int_equal(g->tolerance, 3);
	assert_string_equal(cfg->route.fallback.target, "hk");
	group_set_free(s);
	cfg_free(cfg);

	/* default port and path; fixed needs no checks */
	s = parse_ok(BASE "[group.u]\nmembers = a\ncheck_url = http://probe.test\n"
			  "[group.f]\nmembers = b\npolicy = fixed\n",
		     NULL);
	assert_int_equal(s->g[0].check_port, 80);
	assert_string_equal(s->g[0].check_path, "/");
	assert_false(group_needs_health(&s->g[1]));
	group_set_free(s);
}

static void test_parse_errors(void **state)
{
	expect_error(BASE "[group.g]\nmembers = a, nope\ncheck_target = h:1\n",
		     "t.ini:9: [group.g] member 'nope' is neither an [outbound.nope] nor a "
		     "[group.nope]\n");
	expect_error(BASE "[group.x]\nmembers = a, y\ncheck_target = h:1\n"
			  "[group.y]\nmembers = z\ncheck_target = h:1\n"
			  "[group.z]\nmembers = b, x\ncheck_target = h:1\n",
		     "makes a cycle of groups\n");
	expect_error(BASE "[group.self]\nmembers = self\npolicy = fixed\n",
		     "t.ini:9: [group.self] member 'self' makes a cycle of groups\n");
	expect_error(BASE "[group.g]\nmembers = a\n",
		     "t.ini:9: [group.g] policy fallback needs health checks: set check_url or "
		     "check_target\n");
	expect_error(BASE "[group.g]\nmembers = a\npolicy = best\ncheck_target = h:1\n",
		     "t.ini:11: [group.g] policy 'best'");
	expect_error(BASE "[group.g]\nmembers = a\ncheck_url = https://h/\n",
		     "t.ini:11: [group.g] check_url 'https://h/'");
	expect_error(BASE "[group.g]\nmembers = a\ncheck_target = h\n",
		     "t.ini:11: [group.g] check_target 'h'");
	expect_error(BASE "[group.g]\nmembers = a\ncheck_target = h:1\ntolerance = 0\n",
		     "t.ini:12: [group.g] tolerance '0'");
	expect_error(BASE "[group.g]\nmembers = a\ncheck_target = h:1\ninterval = soon\n",
		     "t.ini:12: [group.g] interval 'soon'");
	expect_error(BASE "[group.g]\nmembers = a\ncheck_target = h:1\ncolour = red\n",
		     "t.ini:12: unknown key 'colour' in [group.g]");
	expect_error(BASE "[group.g]\npolicy = fixed\n", "t.ini:9: [group.g] has no members\n");
	expect_error(BASE "[group.a]\nmembers = b\npolicy = fixed\n",
		     "t.ini:9: [group.a]: there is an [outbound.a] too\n");
	expect_error(BASE "[group.direct]\nmembers = b\npolicy = fixed\n",
		     "t.ini:9: group name 'direct' is reserved");
	expect_error(BASE "[group.g]\nmembers = a, a\npolicy = fixed\n",
		     "t.ini:10: [group.g] lists member 'a' twice\n");
	expect_error(BASE "[group.g]\nmembers = a\ncheck_target = h:1\ninterrupt = maybe\n",
		     "t.ini:12: [group.g] interrupt 'maybe' (expected yes or no)\n");
	expect_error(BASE "[group.g]\nmembers = a\npolicy = fixed\ninterrupt = yes\n",
		     "t.ini:12: [group.g] interrupt = yes needs health checks (policy fixed has "
		     "none)\n");
	/* a route target that is neither */
	expect_error(BASE "[group.g]\nmembers = a\npolicy = fixed\n[route]\nfallback = h\n",
		     "t.ini:13: fallback target 'h' has no [outbound.h] section\n");
}

static struct group_set *three(const char *policy)
{
	char text[512];

	snprintf(text, sizeof(text),
		 BASE "[group.g]\nmembers = a, b, c\npolicy = %s\ncheck_target = h:1\n", policy);
	return parse_ok(text, NULL);
}

static void kill_member(struct group *g, size_t i)
{
	for (unsigned k = 0; k < g->tolerance; k++)
		group_health_result(&g->m[i].h, false, 0, g->tolerance);
	assert_false(g->m[i].h.alive);
}

static void test_fallback(void **state)
{
	struct group_set *s = three("fallback");
	struct group *g = &s->g[0];

	assert_string_equal(group_pick(s, 0, 0), "a");
	kill_member(g, 0);
	assert_string_equal(group_pick(s, 0, 0), "b");
	kill_member(g, 1);
	assert_string_equal(group_pick(s, 0, 7), "c");
	kill_member(g, 2);
	assert_null(group_pick(s, 0, 0));
	/* one success revives, and the order wins again */
	assert_int_equal(group_health_result(&g->m[1].h, true, 10, g->tolerance), GROUP_REVIVED);
	assert_string_equal(group_pick(s, 0, 0), "b");
	group_health_result(&g->m[0].h, true, 10, g->tolerance);
	assert_string_equal(group_pick(s, 0, 0), "a");
	group_set_free(s);
}

static void test_fixed(void **state)
{
	struct group_set *s = three("fixed");

	kill_member(&s->g[0], 0); /* fixed does not look at health */
	for (uint32_t r = 0; r < 10; r++)
		assert_string_equal(group_pick(s, 0, r), "a");
	group_set_free(s);
}

static void test_random(void **state)
{
	struct group_set *s = three("random");
	struct group *g = &s->g[0];
	unsigned seen[3] = { 0 };

	for (uint32_t r = 0; r < 300; r++)
		seen[group_pick(s, 0, r)[0] - 'a']++;
	/* uniform: consecutive random numbers cover every member equally */
	assert_int_equal(seen[0], 100);
	assert_int_equal(seen[1], 100);
	assert_int_equal(seen[2], 100);
	kill_member(g, 1);
	memset(seen, 0, sizeof(seen));
	for (uint32_t r = 0; r < 300; r++)
		seen[group_pick(s, 0, r)[0] - 'a']++;
	assert_int_equal(seen[0], 150);
	assert_int_equal(seen[1], 0);
	assert_int_equal(seen[2], 150);
	kill_member(g, 0);
	kill_member(g, 2);
	assert_null(group_pick(s, 0, 5));
	group_set_free(s);
}

static void test_tolerance(void **state)
{
	struct group_health h = { .alive = true };

	assert_int_equal(group_health_result(&h, false, 0, 3), GROUP_SAME);
	assert_int_equal(group_health_result(&h, false, 0, 3), GROUP_SAME);
	assert_true(h.alive);
	/* a success in between resets the count */
	assert_int_equal(group_health_result(&h, true, 5, 3), GROUP_SAME);
	assert_int_equal(h.fails, 0);
	assert_int_equal(group_health_result(&h, false, 0, 3), GROUP_SAME);
	assert_int_equal(group_health_result(&h, false, 0, 3), GROUP_SAME);
	assert_int_equal(group_health_result(&h, false, 0, 3), GROUP_DIED);
	assert_false(h.alive);
	/* dead stays dead without a second "died" */
	assert_int_equal(group_health_result(&h, false, 0, 3), GROUP_SAME);
	assert_int_equal(h.fails, 4);
	assert_int_equal(group_health_result(&h, true, 5, 3), GROUP_REVIVED);
	assert_true(h.alive);
	assert_int_equal(h.checks, 8);
	assert_int_equal(h.failures, 6);
	/* tolerance 1: the first failure kills */
	assert_int_equal(group_health_result(&h, false, 0, 1), GROUP_DIED);
}

static void test_moving_average(void **state)
{
	struct group_health h = { .alive = true };

	group_health_result(&h, true, 100, 3);
	assert_true(h.have_avg);
	assert_int_equal(h.avg_ms, 100); /* the first sample sets it */
	group_health_result(&h, true, 20, 3);
	assert_int_equal(h.avg_ms, 80); /* 100 + (20 - 100) / 4 */
	group_health_result(&h, true, 200, 3);
	assert_int_equal(h.avg_ms, 110); /* 80 + 120 / 4 */
	/* failures do not move it */
	group_health_result(&h, false, 0, 3);
	assert_int_equal(h.avg_ms, 110);
}

static void test_min_latency(void **state)
{
	struct group_set *s = three("min-latency");
	struct group *g = &s->g[0];

	/* never measured: unknown sorts last, so the measured one wins */
	group_health_result(&g->m[1].h, true, 50, 3);
	assert_string_equal(group_pick(s, 0, 0), "b");
	group_health_result(&g->m[0].h, true, 40, 3);
	group_health_result(&g->m[2].h, true, 60, 3);
	/* a is 10 ms better than b's 50, more than the margin (max(10%, 5 ms)): switch */
	assert_string_equal(group_pick(s, 0, 0), "a");
	/* b drifts slightly below a: within the hysteresis, a stays */
	g->m[1].h.avg_ms = 37;
	assert_string_equal(group_pick(s, 0, 0), "a");
	assert_int_equal(g->current, 0);
	/* clearly better: switch */
	g->m[1].h.avg_ms = 30;
	assert_string_equal(group_pick(s, 0, 0), "b");
	/* large latencies: the margin is 10% (100 ms of 1000), not 5 ms */
	g->m[1].h.avg_ms = 1000;
	g->m[0].h.avg_ms = 950;
	g->m[2].h.avg_ms = 5000;
	assert_string_equal(group_pick(s, 0, 0), "b");
	g->m[0].h.avg_ms = 899;
	assert_string_equal(group_pick(s, 0, 0), "a");
	/* the current one dies: the best alive at once, hysteresis or not */
	kill_member(g, 0);
	assert_string_equal(group_pick(s, 0, 0), "b");
	kill_member(g, 1);
	kill_member(g, 2);
	assert_null(group_pick(s, 0, 0));
	group_set_free(s);
}

static void test_nested(void **state)
{
	struct group_set *s = parse_ok(BASE "[group.outer]\nmembers = inner, c\ncheck_target = h:1\n"
					    "[group.inner]\nmembers = a, b\ncheck_target = h:1\n"
					    "tolerance = 1\n",
					    NULL);
	int outer = group_find(s, "outer"), inner = group_find(s, "inner");
	struct group *gi = &s->g[inner];

	size_t path[4], n = 0;

	assert_string_equal(group_pick(s, (size_t)outer, 0), "a");
	/* the groups the choice went through, outermost first */
	assert_string_equal(group_pick_path(s, (size_t)outer, 0, path, 4, &n), "a");
	assert_int_equal(n, 2);
	assert_int_equal(path[0], outer);
	assert_int_equal(path[1], inner);
	assert_string_equal(group_pick_path(s, (size_t)outer, 0, path, 1, &n), "a");
	assert_int_equal(n, 2); /* more than fitted */
	assert_int_equal(path[0], outer);
	kill_member(gi, 0);
	assert_string_equal(group_pick(s, (size_t)outer, 0), "b");
	/* inner has nobody alive: it counts as dead in outer */
	kill_member(gi, 1);
	assert_string_equal(group_pick(s, (size_t)outer, 0), "c");
	/* c is outer's own member: inner is not on the path */
	assert_string_equal(group_pick_path(s, (size_t)outer, 0, path, 4, &n), "c");
	assert_int_equal(n, 1);
	assert_int_equal(path[0], outer);
	group_health_result(&gi->m[1].h, true, 3, 1);
	assert_string_equal(group_pick(s, (size_t)outer, 0), "b");
	group_set_free(s);
}

/* One health result through group_update(), as groups.c feeds it. */
static size_t feed(struct group_set *s, size_t gi, size_t mi, bool ok, uint32_t ms,
		   struct group_ev **evs)
{
	struct group *g = &s->g[gi];
	enum group_change ch = group_health_result(&g->m[mi].h, ok, ms, g->tolerance);
	size_t n = 99;

	free(*evs);
	assert_int_equal(group_update(s, gi, mi, ch, evs, &n), 0);
	return n;
}

static void expect_select(const struct group_ev *e, size_t gi, int from, int to)
{
	assert_int_equal(e->kind, GROUP_EV_SELECT);
	assert_int_equal(e->gi, gi);
	assert_int_equal(e->from, from);
	assert_int_equal(e->to, to);
}

static void expect_cut(const struct group_ev *e, size_t gi, const char *leaf, bool dead)
{
	assert_int_equal(e->kind, GROUP_EV_CUT);
	assert_int_equal(e->gi, gi);
	assert_string_equal(e->leaf, leaf);
	assert_int_equal(e->dead, dead);
}

static void test_interrupt_fallback(void **state)
{
	struct group_set *s = parse_ok(BASE "[group.g]\nmembers = a, b\ncheck_target = h:1\n"
					    "tolerance = 1\ninterrupt = yes\n"
					    "[group.k]\nmembers = a, b\ncheck_target = h:1\n"
					    "tolerance = 1\n",
					    NULL);
	struct group_ev *evs = NULL;

	assert_true(s->g[0].interrupt);
	assert_false(s->g[1].interrupt); /* the default */
	/* the first result: both groups select a; nothing to close */
	assert_int_equal(feed(s, 0, 0, true, 5, &evs), 2);
	expect_select(&evs[0], 0, -1, 0);
	expect_select(&evs[1], 1, -1, 0);
	assert_int_equal(feed(s, 0, 1, true, 5, &evs), 0);
	/* a dies in g: g moves to b and closes a's connections, once (dead, not "moved") */
	assert_int_equal(feed(s, 0, 0, false, 0, &evs), 2);
	expect_cut(&evs[0], 0, "a", true);
	expect_select(&evs[1], 0, 0, 1);
	/* a dies in k (interrupt = no): only the selection changes */
	assert_int_equal(feed(s, 1, 0, false, 0, &evs), 1);
	expect_select(&evs[0], 1, 0, 1);
	/* failures of a dead member change nothing */
	assert_int_equal(feed(s, 0, 0, false, 0, &evs), 0);
	/* a returns in g: the selection moves off b, whose connections close */
	assert_int_equal(feed(s, 0, 0, true, 5, &evs), 2);
	expect_select(&evs[0], 0, 1, 0);
	expect_cut(&evs[1], 0, "b", false);
	assert_int_equal(evs[1].from, 1);
	assert_int_equal(evs[1].to, 0);
	/* b dies while not selected: its connections (opened before) still close */
	assert_int_equal(feed(s, 0, 1, false, 0, &evs), 1);
	expect_cut(&evs[0], 0, "b", true);
	/* the last member dies: selection none, cut a */
	assert_int_equal(feed(s, 0, 0, false, 0, &evs), 2);
	expect_cut(&evs[0], 0, "a", true);
	expect_select(&evs[1], 0, 0, -1);
	free(evs);
	group_set_free(s);
}

static void test_interrupt_min_latency(void **state)
{
	struct group_set *s = parse_ok(BASE "[group.g]\nmembers = a, b\npolicy = min-latency\n"
					    "check_target = h:1\ninterrupt = yes\n",
					    NULL);
	struct group_ev *evs = NULL;

	assert_int_equal(feed(s, 0, 0, true, 100, &evs), 1);
	expect_select(&evs[0], 0, -1, 0);
	/* b measures far better: switch, a's connections close though a is alive */
	assert_int_equal(feed(s, 0, 1, true, 10, &evs), 2);
	expect_select(&evs[0], 0, 0, 1);
	expect_cut(&evs[1], 0, "a", false);
	/* a inside the hysteresis of b: nothing moves */
	assert_int_equal(feed(s, 0, 0, true, 10, &evs), 0); /* a's average: 100 - 90/4 = 78 */
	s->g[0].m[0].h.avg_ms = 8;
	assert_int_equal(feed(s, 0, 1, true, 10, &evs), 0); /* b 10, a 8: within 5 ms */
	free(evs);
	/* the choice is what group_pick uses */
	assert_string_equal(group_pick(s, 0, 0), "b");
	group_set_free(s);
}

static void test_interrupt_nested(void **state)
{
	/* top: [mid, c]; mid: [a, b] (interrupt = yes); top has interrupt = yes too */
	struct group_set *s = parse_ok(BASE "[group.top]\nmembers = mid, c\ncheck_target = h:1\n"
					    "tolerance = 1\ninterrupt = yes\n"
					    "[group.mid]\nmembers = a, b\ncheck_target = h:1\n"
					    "tolerance = 1\ninterrupt = yes\n"
					    "[group.other]\nmembers = c\ncheck_target = h:1\n",
					    NULL);
	int top = group_find(s, "top"), mid = group_find(s, "mid"), other = group_find(s, "other");
	struct group_ev *evs = NULL;
	size_t h[3], n;

	/* the groups a cut in mid concerns: mid and top (connections routed to top through mid),
	 * not other */
	n = group_holders(s, (size_t)mid, h, 3);
	assert_int_equal(n, 2);
	assert_int_equal(h[0], mid);
	assert_int_equal(h[1], top);
	assert_int_equal(group_holders(s, (size_t)other, h, 3), 1);
	assert_int_equal(group_holders(s, (size_t)top, h, 3), 1);

	feed(s, (size_t)mid, 0, true, 5, &evs); /* first selections */
	/* a dies: mid cuts a (dead) and moves to b; top still selects mid */
	n = feed(s, (size_t)mid, 0, false, 0, &evs);
	assert_int_equal(n, 2);
	expect_cut(&evs[0], (size_t)mid, "a", true);
	expect_select(&evs[1], (size_t)mid, 0, 1);
	/* b dies: mid is dead, top moves to c and cuts every leaf of mid (a and b) */
	n = feed(s, (size_t)mid, 1, false, 0, &evs);
	assert_int_equal(n, 5);
	expect_cut(&evs[0], (size_t)mid, "b", true);
	expect_select(&evs[1], (size_t)top, 0, 1);
	expect_cut(&evs[2], (size_t)top, "a", false);
	expect_cut(&evs[3], (size_t)top, "b", false);
	expect_select(&evs[4], (size_t)mid, 1, -1);
	free(evs);
	group_set_free(s);
}

/* Which connections a cut closes (conn_cut_match): those whose group path holds the group that
 * moved off the outbound. top: [mid, c], mid: [c, d] (ids 10 and 11; outbound c has id 3):
 * mid's cut of c closes top -> mid -> c and mid -> c, never top -> c chosen by top itself. */
static void test_cut_path(void **state)
{
	struct {
		struct conn_cut cut;
		uint16_t via[2];
	} k = {.cut = {.ob_id = 3, .gid = 11, .n_via = 2}, .via = {11, 10}};
	const struct conn_cut *cut = &k.cut;
	struct ob_via top_c = {.id = {10}, .n = 1}, top_mid_c = {.id = {10, 11}, .n = 2},
		      mid_c = {.id = {11}, .n = 1}, none = {0},
		      deep_mid = {.id = {20, 21, 22, 11}, .n = 4, .more = true},
		      deep_other = {.id = {20, 21, 22, 23}, .n = 4, .more = true},
		      full_no_more = {.id = {20, 21, 22, 10}, .n = 4};

	(void)state;
	assert_false(conn_cut_match(cut, 3, &top_c));
	assert_true(conn_cut_match(cut, 3, &top_mid_c));
	assert_true(conn_cut_match(cut, 3, &mid_c));
	assert_false(conn_cut_match(cut, 3, &none));
	assert_false(conn_cut_match(cut, 4, &top_mid_c)); /* another outbound */
	/* a path cut short: matched by its innermost known group, when that holds mid */
	assert_true(conn_cut_match(cut, 3, &deep_mid));
	assert_false(conn_cut_match(cut, 3, &deep_other));
	assert_false(conn_cut_match(cut, 3, &full_no_more));
	k.via[0] = 23; /* 23 holds mid, somewhere below the known part */
	assert_true(conn_cut_match(cut, 3, &deep_other));
}

static void test_interrupt_overlap(void **state)
{
	/* g: [sub, a]; sub: [a, b]. When g leaves sub for a, only b's connections close: a is
	 * under the member g moved to as well. */
	struct group_set *s = parse_ok(BASE "[group.g]\nmembers = sub, a\ncheck_target = h:1\n"
					    "interrupt = yes\n"
					    "[group.sub]\nmembers = a, b\ncheck_target = h:2\n"
					    "tolerance = 1\n",
					    NULL);
	size_t g = (size_t)group_find(s, "g"), sub = (size_t)group_find(s, "sub");
	struct group_ev *evs = NULL;
	size_t n;

	feed(s, sub, 0, true, 5, &evs); /* first selections: g -> sub, sub -> a */
	n = feed(s, sub, 0, false, 0, &evs); /* a dies in sub (no interrupt there) */
	assert_int_equal(n, 1);
	expect_select(&evs[0], sub, 0, 1);
	n = feed(s, sub, 1, false, 0, &evs); /* b too: sub is dead, g moves to a */
	assert_int_equal(n, 3);
	expect_select(&evs[0], g, 0, 1);
	expect_cut(&evs[1], g, "b", false);
	expect_select(&evs[2], sub, 1, -1);
	assert_string_equal(group_pick(s, g, 0), "a");
	free(evs);
	group_set_free(s);
}

static void test_carry(void **state)
{
	struct group_set *old = parse_ok(BASE "[group.g]\nmembers = a, b\ncheck_target = h:1\n"
					      "[group.k]\nmembers = a\ncheck_target = h:1\n",
					      NULL);
	struct group_set *s;

	kill_member(&old->g[0], 0);
	group_health_result(&old->g[0].m[1].h, true, 42, 3);
	kill_member(&old->g[1], 0);
	/* g: members reordered and one added, same checks: a stays dead, b keeps its average.
	 * k: other checks: health starts over. */
	s = parse_ok(BASE "[group.g]\nmembers = c, b, a\ncheck_target = h:1\n"
			  "[group.k]\nmembers = a\ncheck_target = h:2\n",
		     NULL);
	group_set_carry(s, old);
	assert_true(s->g[0].m[0].h.alive);
	assert_true(s->g[0].m[1].h.have_avg);
	assert_int_equal(s->g[0].m[1].h.avg_ms, 42);
	assert_false(s->g[0].m[2].h.alive);
	assert_true(s->g[1].m[0].h.alive);
	group_set_free(s);
	group_set_free(old);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),	      cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_fallback),      cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_random),	      cmocka_unit_test(test_tolerance),
		cmocka_unit_test(test_moving_average), cmocka_unit_test(test_min_latency),
		cmocka_unit_test(test_nested),	      cmocka_unit_test(test_carry),
		cmocka_unit_test(test_interrupt_fallback),
		cmocka_unit_test(test_interrupt_min_latency),
		cmocka_unit_test(test_interrupt_nested),
		cmocka_unit_test(test_interrupt_overlap),
		cmocka_unit_test(test_cut_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
