/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bench_sniff - how many first-bytes inputs (ClientHellos, HTTP request heads, QUIC Initials)
 * a sniffer plugin decides per second on one core, next to two baselines over the same bytes
 * measured in the same rounds: memchr() for a byte that is not there (one read of every byte)
 * and memcpy() into a scratch buffer. A ratio is sniff time / baseline time, so a load change on
 * the machine moves both sides alike.
 *
 *   bench_sniff [-u] [-n ITER] [-r ROUNDS] [-p PORT] PLUGIN.so FILE...
 *
 * Each FILE is one input: a TCP flow's first bytes (one part), or with -u one UDP datagram
 * (count 1). Every input must come back FOUND once before timing starts, or the run stops:
 * a benchmark of the refusal path would measure something else.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xproxy/plugin.h>

struct input {
	const char *path;
	uint8_t *data;
	size_t len;
};

static volatile uintptr_t sink;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *d;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET)) {
		fclose(f);
		return NULL;
	}
	d = malloc((size_t)n);
	if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
		free(d);
		d = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return d;
}

static int run_sniff(const struct xp_sniffer_ops *ops, const struct input *in, int udp,
		     uint16_t port, struct xp_sniff_result *r)
{
	struct xp_bytes part = { .data = in->data, .len = in->len };
	struct xp_sniff_input si = {
		.size = sizeof(si),
		.l4proto = udp ? IPPROTO_UDP : IPPROTO_TCP,
		.dport = port,
		.count = 1,
		.parts = &part,
	};

	r->size = sizeof(*r);
	return ops->sniff(NULL, &si, r);
}

enum { K_SNIFF, K_MEMCHR, K_MEMCPY, K_N };

int main(int argc, char **argv)
{
	long iters = 20000, rounds = 7, port = 0;
	int udp = 0, opt, n_in;
	struct input *in;
	const struct xp_plugin_desc *desc;
	xp_plugin_query_fn query;
	uint8_t *scratch;
	size_t max_len = 0, total = 0;
	double *best, *ratio[K_N];
	cpu_set_t one;
	void *h;

	while ((opt = getopt(argc, argv, "un:r:p:")) != -1) {
		switch (opt) {
		case 'u':
			udp = 1;
			break;
		case 'n':
			iters = strtol(optarg, NULL, 10);
			break;
		case 'r':
			rounds = strtol(optarg, NULL, 10);
			break;
		case 'p':
			port = strtol(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind < 2 || iters < 1 || rounds < 1 || rounds > 99 || port < 0 ||
	    port > 65535)
		goto usage;
	if (!port)
		port = 443; /* tls and quic; -p 80 for http */

	h = dlopen(argv[optind], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	query = (xp_plugin_query_fn)dlsym(h, XP_PLUGIN_ENTRY_NAME);
	desc = query ? query(XP_PLUGIN_ABI) : NULL;
	if (!desc || !(desc->kinds & XP_KIND_SNIFFER) || !desc->sniffer ||
	    !(desc->sniffer->caps & (udp ? XP_SNIFF_UDP : XP_SNIFF_TCP))) {
		fprintf(stderr, "%s: not a %s sniffer plugin\n", argv[optind], udp ? "UDP" : "TCP");
		return 1;
	}

	n_in = argc - optind - 1;
	in = calloc((size_t)n_in, sizeof(*in));
	for (int i = 0; i < n_in; i++) {
		struct xp_sniff_result r;

		in[i].path = argv[optind + 1 + i];
		in[i].data = read_file(in[i].path, &in[i].len);
		if (!in[i].data) {
			fprintf(stderr, "%s: cannot read\n", in[i].path);
			return 1;
		}
		if (run_sniff(desc->sniffer, &in[i], udp, (uint16_t)port, &r) != XP_SNIFF_FOUND) {
			fprintf(stderr, "%s: %s does not find a name in it\n", in[i].path,
				desc->name);
			return 1;
		}
		if (in[i].len > max_len)
			max_len = in[i].len;
		total += in[i].len;
	}
	scratch = malloc(max_len);

	/* one core: the figure is per core, and migrations only add noise */
	opt = sched_getcpu();
	CPU_ZERO(&one);
	CPU_SET(opt < 0 ? 0 : opt, &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		fprintf(stderr, "warning: cannot pin to one CPU: %s\n", strerror(errno));

	best = calloc(K_N, sizeof(*best));
	for (int k = 0; k < K_N; k++) {
		ratio[k] = calloc((size_t)rounds, sizeof(double));
		best[k] = 1e300;
	}
	for (long round = 0; round < rounds; round++) {
		double t[K_N];

		for (int k = 0; k < K_N; k++) {
			uint64_t t0 = now_ns();

			for (long it = 0; it < iters; it++) {
				for (int i = 0; i < n_in; i++) {
					struct xp_sniff_result r;

					switch (k) {
					case K_SNIFF:
						sink += (uintptr_t)run_sniff(desc->sniffer, &in[i],
									     udp, (uint16_t)port,
									     &r);
						break;
					case K_MEMCHR:
						/* 0xfe: reads every byte unless it occurs */
						sink += (uintptr_t)memchr(in[i].data, 0xfe,
									  in[i].len);
						break;
					default:
						memcpy(scratch, in[i].data, in[i].len);
						sink += scratch[in[i].len - 1];
						break;
					}
				}
			}
			t[k] = (double)(now_ns() - t0) / ((double)iters * n_in);
			if (t[k] < best[k])
				best[k] = t[k];
		}
		ratio[K_SNIFF][round] = 1.0;
		ratio[K_MEMCHR][round] = t[K_SNIFF] / t[K_MEMCHR];
		ratio[K_MEMCPY][round] = t[K_SNIFF] / t[K_MEMCPY];
	}
	qsort(ratio[K_MEMCHR], (size_t)rounds, sizeof(double), cmp_double);
	qsort(ratio[K_MEMCPY], (size_t)rounds, sizeof(double), cmp_double);

	printf("sniffer %s (%s): %d inputs, %zu bytes on average, %ld x %ld rounds, one core\n",
	       desc->name, argv[optind], n_in, total / (size_t)n_in, iters, rounds);
	printf("%-10s %12s %14s %18s\n", "what", "ns/input", "inputs/s", "sniff/this (median)");
	printf("%-10s %12.1f %14.0f %18s\n", "sniff", best[K_SNIFF], 1e9 / best[K_SNIFF], "1.00");
	printf("%-10s %12.1f %14.0f %18.2f\n", "memchr", best[K_MEMCHR], 1e9 / best[K_MEMCHR],
	       ratio[K_MEMCHR][rounds / 2]);
	printf("%-10s %12.1f %14.0f %18.2f\n", "memcpy", best[K_MEMCPY], 1e9 / best[K_MEMCPY],
	       ratio[K_MEMCPY][rounds / 2]);
	return 0;

usage:
	fprintf(stderr, "usage: %s [-u] [-n ITER] [-r ROUNDS] [-p PORT] PLUGIN.so FILE...\n",
		argv[0]);
	return 2;
}
