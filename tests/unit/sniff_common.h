/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * sniff_common - what the sniffer tests share: loading a sniffer plugin from the build tree,
 * calling it the way the core does, and the samples capture_hellos.py records from real
 * clients at test time.
 */
#ifndef XP_TEST_SNIFF_COMMON_H
#define XP_TEST_SNIFF_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <xproxy/plugin.h>

struct sample {
	char file[128];
	char kind[8];	/* "tls" or "http" */
	char name[256]; /* the name the client was asked to use */
	char alpn[64];	/* the ALPN it was asked to offer first; "-" none, "*" not asserted */
	uint8_t *data;
	size_t len;
};

/* dlopen <XP_TEST_PLUGIN_DIR>/<name>.so; its sniffer ops, or NULL (with a message). */
const struct xp_sniffer_ops *sniff_load(const char *name);

/* One call as the core makes it for TCP: all the bytes so far in one part. */
int sniff_tcp(const struct xp_sniffer_ops *ops, const void *data, size_t len, uint16_t dport,
	      struct xp_sniff_result *out);

/* Run $XP_SNIFF_CAPTURE (with $XP_PYTHON) into a fresh directory and load every sample of
 * `kind`. Returns the count (>= 1) or -1 with a message; *out is malloc'd. */
int sniff_capture(const char *kind, struct sample **out);
void sniff_samples_free(struct sample *s, int n);

#endif
