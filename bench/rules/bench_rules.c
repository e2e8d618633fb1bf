/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bench_rules - the cost of domain rules at scale: load time (parse + index), memory per 10,000
 * rules, and ns per match, for a list of 1,000 and one of 100,000 domain-suffix rules, measured
 * side by side in the same run. The ratio 100k / 1k shows whether matching cost depends on the
 * number of rules (1.0x: it does not). The plain walk (the index switched off) is measured on
 * the same lists as the baseline.
 *
 *   build/bench/rules/bench_rules [-r ROUNDS]   (default 5, at most 32)
 *
 * Figures only, never pass/fail.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "domain.h"
#include "rules.h"

/* CPU time of this thread, not wall time: the machine is shared, and a 500 ms load preempted
 * a few times would otherwise look slower than a 1 ms one that never is. */
static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const tlds[] = {"com", "net", "org", "io", "co.uk", "de", "cn", "ru"};

/* The i-th rule's suffix: "w<i>-<mix>.<tld>", one or two labels deep. */
static void rule_name(char *buf, size_t len, unsigned i)
{
	if (i % 3 == 0)
		snprintf(buf, len, "cdn%u.s%u.%s", i % 97, i, tlds[i % 8]);
	else
		snprintf(buf, len, "s%u-%x.%s", i, i * 2654435761u, tlds[i % 8]);
}

struct list {
	struct rule_list rl;
	double load_s;
	size_t heap;  /* bytes the parsed rules and the index hold */
	size_t index; /* of which the index */
};

static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* n rules: a few address rules first (as real configs have), then domain-suffix rules. */
static void load(struct list *L, unsigned n)
{
	static const char *const ob[] = {"proxy", "DIRECT", "BLOCK", "hk"};
	char text[300], name[128], err[256];
	size_t before = heap_used();
	double t0 = now_s();

	memset(L, 0, sizeof(*L));
	L->rl.rules = calloc(n, sizeof(*L->rl.rules));
	for (unsigned i = 0; i < n; i++) {
		if (i < 8)
			snprintf(text, sizeof(text), "dst-cidr:10.%u.0.0/16, DIRECT", i);
		else {
			rule_name(name, sizeof(name), i);
			snprintf(text, sizeof(text), "domain-suffix:%s, %s", name, ob[i % 4]);
		}
		if (rule_parse(text, false, NULL, &L->rl.rules[i], err, sizeof(err))) {
			fprintf(stderr, "bench: '%s': %s\n", text, err);
			exit(1);
		}
		L->rl.rules[i].id = i + 1;
		L->rl.n++;
	}
	rule_parse("DIRECT", true, NULL, &L->rl.fallback, err, sizeof(err));
	if (rule_list_index(&L->rl)) {
		fprintf(stderr, "bench: out of memory\n");
		exit(1);
	}
	L->load_s = now_s() - t0;
	L->heap = heap_used() - before;
	L->index = domain_index_mem(L->rl.index);
}

/* Queries: names that hit rules spread over the whole list (as subdomains), and misses. */
static char (*queries(unsigned n, unsigned nq))[160]
{
	char(*q)[160] = calloc(nq, sizeof(*q));
	char name[128];
	uint64_t x = 88172645463325252ull;

	for (unsigned k = 0; k < nq; k++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		unsigned i = 8 + (unsigned)(x % (n - 8));

		if (k % 4 == 3) {
			snprintf(q[k], sizeof(q[k]), "www.miss%u.example.%s", k, tlds[k % 8]);
			continue;
		}
		rule_name(name, sizeof(name), i);
		snprintf(q[k], sizeof(q[k]), "%s%s", k % 2 ? "img.www." : "", name);
	}
	return q;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

enum mode { FULL, PARTIAL };

/* Median ns per match over `rounds`. */
static double bench_match(const struct rule_list *rl, char (*q)[160], unsigned nq, unsigned iters,
			  enum mode mode, int rounds)
{
	double r[32];

	if (rounds > 32)
		rounds = 32;
	struct rule_flow f = {.sport = 40000, .dport = 443, .l4proto = 6};
	volatile uint32_t sink = 0;
	bool partial;

	rule_addr_from_v4(f.daddr, 0x010200c0); /* 192.0.2.1 */
	rule_addr_from_v4(f.saddr, 0x0201a8c0);
	for (int k = 0; k < rounds; k++) {
		double t0 = now_s();

		for (unsigned i = 0; i < iters; i++) {
			f.domain = q[i % nq];
			if (mode == FULL)
				sink += rule_list_match(rl, &f)->id;
			else
				sink += rule_list_match_partial(rl, &f,
								RF_KNOWN_DST | RF_KNOWN_DOMAIN,
								&partial)
						->id;
		}
		r[k] = (now_s() - t0) * 1e9 / iters;
	}
	(void)sink;
	qsort(r, (size_t)rounds, sizeof(double), cmp_d);
	return r[rounds / 2];
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_d);
	return v[n / 2];
}

int main(int argc, char **argv)
{
	int rounds = 5, opt;
	const unsigned sizes[2] = {1000, 100000}, nq = 4096;
	struct list L[2];
	double load_t[2][32], ns[3][2][32], ratio[4][32];
	char(*q[2])[160];

	while ((opt = getopt(argc, argv, "r:")) != -1) {
		if (opt == 'r')
			rounds = atoi(optarg);
		else {
			fprintf(stderr, "usage: %s [-r ROUNDS]\n", argv[0]);
			return 2;
		}
	}
	if (rounds < 1 || rounds > 32)
		rounds = 5;
	/* every round measures both sizes back to back, so a change of load on the machine moves
	 * both sides of a ratio alike; the figures are medians over the rounds */
	for (int r = 0; r < rounds; r++) {
		for (int s = 0; s < 2; s++) {
			if (r)
				rule_list_free(&L[s].rl);
			load(&L[s], sizes[s]);
			load_t[s][r] = L[s].load_s;
		}
		ratio[3][r] = load_t[1][r] / load_t[0][r];
	}
	for (int s = 0; s < 2; s++)
		q[s] = queries(sizes[s], nq);
	for (int r = 0; r < rounds; r++) {
		for (int s = 0; s < 2; s++) {
			struct rule_list plain = L[s].rl;

			plain.index = NULL;
			ns[0][s][r] = bench_match(&L[s].rl, q[s], nq, 200000, FULL, 1);
			ns[1][s][r] = bench_match(&L[s].rl, q[s], nq, 200000, PARTIAL, 1);
			/* the walk over 100k rules is slow: fewer iterations */
			ns[2][s][r] = bench_match(&plain, q[s], nq, s ? 200 : 20000, FULL, 1);
		}
		for (int m = 0; m < 3; m++)
			ratio[m][r] = ns[m][1][r] / ns[m][0][r];
	}
	double lt[2], nsm[3][2], rt[4];

	for (int s = 0; s < 2; s++) {
		lt[s] = median(load_t[s], rounds);
		for (int m = 0; m < 3; m++)
			nsm[m][s] = median(ns[m][s], rounds);
	}
	for (int m = 0; m < 4; m++)
		rt[m] = median(ratio[m], rounds);
	printf("domain-suffix rules                     1,000        100,000  (100k / 1k)\n");
	printf("load (parse + index) ms        %14.2f %14.2f  (%.0fx for 100x the rules)\n",
	       lt[0] * 1e3, lt[1] * 1e3, rt[3]);
	printf("memory per 10k rules MiB       %14.2f %14.2f\n",
	       (double)L[0].heap * 10000 / sizes[0] / 1048576,
	       (double)L[1].heap * 10000 / sizes[1] / 1048576);
	printf("  of which the index MiB       %14.2f %14.2f\n",
	       (double)L[0].index * 10000 / sizes[0] / 1048576,
	       (double)L[1].index * 10000 / sizes[1] / 1048576);
	printf("match ns/op (index)            %14.0f %14.0f  (%.2fx)\n", nsm[0][0], nsm[0][1],
	       rt[0]);
	printf("match_partial ns/op (index)    %14.0f %14.0f  (%.2fx)\n", nsm[1][0], nsm[1][1],
	       rt[1]);
	printf("match ns/op (plain walk)       %14.0f %14.0f  (%.2fx)\n", nsm[2][0], nsm[2][1],
	       rt[2]);
	printf("index speed-up over the walk   %13.1fx %13.1fx\n", nsm[2][0] / nsm[0][0],
	       nsm[2][1] / nsm[0][1]);
	printf("(thread CPU time; medians of %d rounds, ratios per round; queries: 3/4 hit a rule anywhere in the "
	       "list as the name or a subdomain, 1/4 miss)\n",
	       rounds);
	for (int s = 0; s < 2; s++) {
		rule_list_free(&L[s].rl);
		free(q[s]);
	}
	return 0;
}
