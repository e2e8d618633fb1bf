/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_domain - the domain index (core/domain.c) against the plain first-match walk.
 *
 * Input: lines. Until a line "--": rule texts (rule_parse; refused ones are skipped). After it:
 * names, each matched with rule_list_match and rule_list_match_partial through the index and
 * without it, for a few flows. Any disagreement aborts. Names are arbitrary bytes: oversized,
 * empty, with dots in any place, upper case, control bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

#define MAX_RULES 64

static const struct rule *same(const struct rule_list *a, const struct rule_list *b,
			       const struct rule *ra, const struct rule *rb)
{
	/* the two lists share rules; only their fallbacks live at different addresses */
	if (rb == &b->fallback)
		rb = &a->fallback;
	if (ra != rb)
		abort();
	return ra;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), *save = NULL, *line;
	struct rule_list rl = {0}, plain;
	bool names = false;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	rl.rules = calloc(MAX_RULES, sizeof(*rl.rules));
	if (!rl.rules || rule_parse("DIRECT", true, NULL, &rl.fallback, NULL, 0)) {
		free(rl.rules);
		free(text);
		return 0;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!names) {
			if (!strcmp(line, "--")) {
				names = true;
				if (rule_list_index(&rl))
					break;
				plain = rl;
				plain.index = NULL;
				continue;
			}
			if (rl.n < MAX_RULES &&
			    rule_parse(line, false, NULL, &rl.rules[rl.n], NULL, 0) == 0) {
				rl.rules[rl.n].id = (uint32_t)rl.n + 1;
				rl.n++;
			}
			continue;
		}
		static const uint16_t ports[] = {443, 80, 22};

		for (unsigned k = 0; k < 3; k++) {
			struct rule_flow f = {.sport = 1000, .dport = ports[k], .l4proto = 6,
					      .domain = k == 2 ? NULL : line};
			bool pa, pb;

			rule_addr_from_v4(f.daddr, 0x0100000a | (k << 8));
			rule_addr_from_v4(f.saddr, 0x0201a8c0);
			same(&rl, &plain, rule_list_match(&rl, &f), rule_list_match(&plain, &f));
			f.domain = line;
			same(&rl, &plain,
			     rule_list_match_partial(&rl, &f, RF_KNOWN_DST | RF_KNOWN_DOMAIN, &pa),
			     rule_list_match_partial(&plain, &f, RF_KNOWN_DST | RF_KNOWN_DOMAIN,
						     &pb));
			if (pa != pb)
				abort();
		}
	}
	rule_list_free(&rl);
	free(text);
	return 0;
}
