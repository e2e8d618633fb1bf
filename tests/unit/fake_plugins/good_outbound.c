/* SPDX-License-Identifier: GPL-2.0-only */
/* A valid outbound with an option of every type, and init/fini the test can count. */
#include "fake.h"
#include "good_outbound.h"

XP_PLUGIN_EXPORT int fake_init_calls;
XP_PLUGIN_EXPORT int fake_fini_calls;
XP_PLUGIN_EXPORT const struct xp_host *fake_init_host;

static int state_token;

static int good_init(const struct xp_host *host, xp_handle_t *self, void **state)
{
	fake_init_calls++;
	fake_init_host = host;
	*state = &state_token;
	return 0;
}

static void good_fini(void *state)
{
	/* only count a fini that gets back the state init made */
	if (state == &state_token)
		fake_fini_calls++;
}

static const struct xp_option options[] = {
	XP_OPT(struct good_cfg, label, "label", XP_OPT_STRING, "anon", 0, "a name"),
	XP_OPT_RANGE(struct good_cfg, count, "count", XP_OPT_INT, "7", 0, -5, 100, "a number"),
	XP_OPT(struct good_cfg, enabled, "enabled", XP_OPT_BOOL, "yes", 0, "a switch"),
	XP_OPT_RANGE(struct good_cfg, timeout_ms, "timeout", XP_OPT_DURATION, "10s", 0, 100,
		     3600000, "a duration"),
	XP_OPT(struct good_cfg, buffer, "buffer", XP_OPT_SIZE, "64k", 0, "a size"),
	XP_OPT_CHOICE(struct good_cfg, mode, "mode", "safe", 0, "fast|safe|paranoid", "a choice"),
	XP_OPT(struct good_cfg, server, "server", XP_OPT_HOSTPORT, NULL, XP_OPT_REQUIRED,
	       "where to"),
	XP_OPT(struct good_cfg, password, "password", XP_OPT_STRING, NULL, XP_OPT_SECRET,
	       "a secret"),
	XP_OPT_RANGE(struct good_cfg, pin, "pin", XP_OPT_INT, NULL, XP_OPT_SECRET, 0, 9999,
		     "a secret number"),
	XP_OPT(struct good_cfg, comment, "comment", XP_OPT_STRING, NULL, 0, "free text"),
	XP_OPTION_END,
};

static const struct xp_outbound_ops ops = {FAKE_OUTBOUND_OPS};

static const struct xp_plugin_desc desc = {
	FAKE_DESC("good_outbound"),
	.version = "1.2.3",
	.summary = "every option type",
	.option_size = sizeof(struct xp_option),
	.options = options,
	.config_size = sizeof(struct good_cfg),
	.init = good_init,
	.fini = good_fini,
	.outbound = &ops,
};

FAKE_ENTRY(&desc)
