/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * netns_test.h - tiny assertion helpers shared by the datapath-loader tests (test_*netns*.c).
 *
 * CHECK() records a failure with file:line and the expression and goes on, so one run shows
 * every broken property; the test's exit status is 1 if any check failed. SKIP() exits 77
 * (meson's "skipped") and is only for a capability that is really missing.
 */
#ifndef XP_NETNS_TEST_H
#define XP_NETNS_TEST_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int t_failures;
static int t_checks;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		t_checks++;                                                                        \
		if (!(cond)) {                                                                     \
			t_failures++;                                                              \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
		}                                                                                  \
	} while (0)

/* Same, with a printf-style explanation of what was seen. */
#define CHECKF(cond, ...)                                                                          \
	do {                                                                                       \
		t_checks++;                                                                        \
		if (!(cond)) {                                                                     \
			t_failures++;                                                              \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

/* A check whose failure makes the rest of the test meaningless. */
#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		t_checks++;                                                                        \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FATAL %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define SKIP(...)                                                                                  \
	do {                                                                                       \
		fprintf(stderr, "SKIP: ");                                                         \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		exit(77);                                                                          \
	} while (0)

static inline int t_done(const char *name)
{
	if (t_failures) {
		fprintf(stderr, "%s: %d of %d checks failed\n", name, t_failures, t_checks);
		return 1;
	}
	fprintf(stderr, "%s: all %d checks passed\n", name, t_checks);
	return 0;
}

static inline double t_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Output of a shell command (stdout and stderr), run in the calling thread's netns. Returns
 * a malloc'd string ("" on failure to run); the caller frees it. */
static inline char *t_cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *t_cmd(const char *fmt, ...)
{
	char cmd[1024], full[1100], *out = NULL;
	size_t len = 0, cap = 0;
	va_list ap;
	FILE *f;
	int c;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "{ %s ; } 2>&1", cmd);
	f = popen(full, "r");
	while (f && (c = fgetc(f)) != EOF) {
		if (len + 2 > cap) {
			cap = cap ? cap * 2 : 4096;
			out = realloc(out, cap);
			if (!out)
				abort();
		}
		out[len++] = (char)c;
	}
	if (f)
		pclose(f);
	if (!out)
		out = calloc(1, 1);
	else
		out[len] = '\0';
	return out;
}

/* Does the output of the command contain `needle`? Prints the output when it does not. */
static inline int t_cmd_has(const char *needle, const char *cmd)
{
	char *out = t_cmd("%s", cmd);
	int ok = strstr(out, needle) != NULL;

	if (!ok)
		fprintf(stderr, "  '%s' not in output of '%s':\n%s", needle, cmd, out);
	free(out);
	return ok;
}

/* The opposite: prints the output when `needle` IS there. */
static inline int t_cmd_lacks(const char *needle, const char *cmd)
{
	char *out = t_cmd("%s", cmd);
	int ok = strstr(out, needle) == NULL;

	if (!ok)
		fprintf(stderr, "  '%s' unexpectedly in output of '%s':\n%s", needle, cmd, out);
	free(out);
	return ok;
}

#endif
