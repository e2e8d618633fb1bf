/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_rules - rule_parse(), rules_compile() and rule_list_match() on arbitrary text, checked
 * against the kernel model of tests/unit/rule_model.h.
 *
 * Input: lines. The first is the fallback target, every other line a rule (at most 64).
 * Lines that do not parse must come with a message; the rest are compiled (generation from
 * the input) and, for flows derived from the input, the compiled image evaluated the way the
 * kernel does must give the same rule, verdict and outbound as the userspace matcher.
 *
 * @file paths resolve against tests/fuzz/data (FUZZ_DATA_DIR); inputs naming an absolute
 * path or ".." are skipped so a run never depends on the host's files.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"
#include "rule_model.h"

#define MAX_RULES 64
#define FLOWS	  24

static const char *const outbounds[] = {"a", "b", "proxy"};

static int ob_id(void *ctx, const char *name)
{
	(void)ctx;
	for (size_t i = 0; i < sizeof(outbounds) / sizeof(outbounds[0]); i++)
		if (!strcmp(outbounds[i], name))
			return (int)i + 1;
	return -ENOENT;
}

static int escapes_data_dir(const char *s)
{
	if (strstr(s, ".."))
		return 1;
	for (const char *p = strchr(s, '@'); p; p = strchr(p + 1, '@')) {
		const char *q = p + 1;

		while (*q == ' ' || *q == '\t')
			q++;
		if (*q == '/')
			return 1;
	}
	return 0;
}

static uint64_t rng;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

/* An address inside one of the rules' prefixes (or anywhere), in the given family. */
static void pick_addr(const struct rule_list *rl, uint8_t out[16], int v4)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	struct rule_cidr c = {.plen = 0};

	if (v4) {
		rule_addr_from_v4(c.addr, 0);
		c.plen = 96;
	}
	if (rl->n && rnd() % 4) {
		const struct rule *r = &rl->rules[rnd() % rl->n];

		for (size_t i = 0; i < r->n_conds; i++) {
			const struct rule_cond *cd = &r->conds[i];

			if ((cd->type == RC_DST_CIDR || cd->type == RC_SRC_CIDR) && cd->n) {
				const struct rule_cidr *p = &cd->cidrs[rnd() % cd->n];

				if ((p->plen >= 96 && !memcmp(p->addr, mapped, 12)) == !!v4)
					c = *p;
			}
		}
	}
	memcpy(out, c.addr, 16);
	for (unsigned b = c.plen; b < 128; b++)
		if (rnd() & 1)
			out[b / 8] |= (uint8_t)(0x80 >> (b % 8));
	if (!v4 && !memcmp(out, mapped, 12))
		out[9] = 1;
}

static uint16_t pick_port(const struct rule_list *rl)
{
	if (rl->n && rnd() % 2) {
		const struct rule *r = &rl->rules[rnd() % rl->n];

		for (size_t i = 0; i < r->n_conds; i++) {
			const struct rule_cond *cd = &r->conds[i];

			if ((cd->type == RC_DPORT || cd->type == RC_SPORT) && cd->n) {
				const struct rule_prange *p = &cd->ports[rnd() % cd->n];

				return (uint16_t)(p->lo + rnd() % 3 - 1); /* at, below, above */
			}
		}
	}
	return (uint16_t)rnd();
}

static struct model_verdict expected(const struct rule_list *rl, const struct rule_flow *f)
{
	const struct rule *r = rule_list_match(rl, f);
	struct model_verdict v = {.vsrc = r == &rl->fallback ? XP_SRC_FALLBACK : XP_SRC_RULE};

	v.rule_id = r == &rl->fallback ? 0 : r->id;
	v.verdict = r->kind == RT_BLOCK	     ? XP_V_BLOCK
		    : r->kind == RT_OUTBOUND ? XP_V_PROXY
					     : XP_V_DIRECT;
	if (r->kind == RT_OUTBOUND)
		v.outbound_id = (uint16_t)ob_id(NULL, r->target);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rule_list rl = {0};
	struct rule_image img;
	char *text, *line;
	char err[1024];
	int rc;

	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0'; /* a NUL inside ends the input early: rule text is a C string */
	if (escapes_data_dir(text)) {
		free(text);
		return -1;
	}
	rl.rules = calloc(MAX_RULES, sizeof(*rl.rules));
	if (!rl.rules) {
		free(text);
		return 0;
	}
	rng = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < size; i++)
		rng = (rng ^ data[i]) * 0x100000001b3ull;
	if (!rng)
		rng = 1;

	/* strtok_r would merge empty lines; keep them (they are rules that must be refused) */
	line = text;
	for (int first = 1; line && rl.n < MAX_RULES; first = 0) {
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = '\0';
		if (first) {
			rc = rule_parse(line, true, FUZZ_DATA_DIR, &rl.fallback, err, sizeof(err));
			if (rc && (rc != -EINVAL || !err[0]))
				abort();
			if (rc)
				rl.fallback.kind = RT_DIRECT; /* as cfg does without a fallback */
		} else {
			struct rule *r = &rl.rules[rl.n];

			err[0] = '\0';
			rc = rule_parse(line, false, FUZZ_DATA_DIR, r, err, sizeof(err));
			if (rc == 0) {
				r->id = (uint32_t)rl.n + 1;
				rl.n++;
			} else if (rc != -ENOMEM &&
				   (rc != -EINVAL || !err[0] || r->conds || r->target)) {
				abort();
			}
		}
		line = nl ? nl + 1 : NULL;
	}

	rc = rules_compile(&rl, size & 1, ob_id, NULL, &img, err, sizeof(err));
	if (rc == 0) {
		char msg[256];

		if (model_check_image(&img, msg, sizeof(msg))) {
			fprintf(stderr, "malformed image: %s\n", msg);
			abort();
		}
		for (int k = 0; k < FLOWS; k++) {
			static const uint8_t protos[] = {6, 17, 1, 58, 47};
			struct rule_flow f = {0};
			int v4 = rnd() & 1;

			pick_addr(&rl, f.saddr, v4);
			pick_addr(&rl, f.daddr, v4);
			f.l4proto = protos[rnd() % 5];
			f.sport = pick_port(&rl);
			f.dport = pick_port(&rl);
			struct model_verdict e = expected(&rl, &f), m = model_eval(&img, &f);

			if (e.verdict != m.verdict || e.outbound_id != m.outbound_id ||
			    e.rule_id != m.rule_id || e.vsrc != m.vsrc) {
				fprintf(stderr,
					"kernel model: rule %u verdict %u ob %u; matcher: rule %u "
					"verdict %u ob %u\n",
					m.rule_id, m.verdict, m.outbound_id, e.rule_id, e.verdict,
					e.outbound_id);
				abort();
			}
			/* names: exercised for crashes (the kernel has none to compare with) */
			f.domain = (const char *)text + (rnd() % (size + 1));
			rule_list_match(&rl, &f);
		}
		rule_image_free(&img);
	} else if (rc != -E2BIG && rc != -ENOENT && rc != -ENOMEM) {
		abort();
	} else if (!err[0]) {
		abort(); /* every compile error says why */
	}
	rule_list_free(&rl);
	free(text);
	return 0;
}
