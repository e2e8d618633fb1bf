/* SPDX-License-Identifier: GPL-2.0-only */
/* The config struct of good_outbound.so, shared with test_plug to check what the core fills. */
#ifndef FAKE_GOOD_OUTBOUND_H
#define FAKE_GOOD_OUTBOUND_H

#include <stdint.h>

struct good_cfg {
	const char *label;    /* STRING, default "anon" */
	int64_t count;	      /* INT [-5, 100], default 7 */
	int enabled;	      /* BOOL, default yes */
	uint64_t timeout_ms;  /* DURATION [100ms, 1h], default 10s */
	uint64_t buffer;      /* SIZE, unbounded, default 64k */
	int mode;	      /* ENUM fast|safe|paranoid, default safe */
	const char *server;   /* HOSTPORT, REQUIRED */
	const char *password; /* STRING, SECRET, no default */
	int64_t pin;	      /* INT, SECRET, [0, 9999], no default */
	const char *comment;  /* STRING, no default: stays NULL */
};

#endif
