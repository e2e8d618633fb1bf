/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_cfg - the INI configuration (every error with its exact "file:line: message", every
 * [global] key at and beyond its limits, the embedded default), the value parsers shared with
 * the plugin option filler, and the logger (core/log.c, also part of xpbase).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "cfg.h"
#include "log.h"
#include "xp_config.h"

#define BASE "[global]\nlan = eth0\n" /* a key on line 3 follows this */

static char tmpdir[64];

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		fail_msg("out of memory");
	if (!p)
		abort(); /* fail_msg does not return; tells the compiler so */
	return p;
}

static void rm_tmpdir(void)
{
	char cmd[128];

	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	tmpdir[0] = '\0';
}

static int group_setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/xp-test-cfg-%d-XXXXXX", (int)getpid());
	if (!mkdtemp(tmpdir))
		return -1;
	atexit(rm_tmpdir);
	return 0;
}

static int group_teardown(void **state)
{
	rm_tmpdir();
	return 0;
}

static struct cfg *parse_ok_len(const char *text, size_t len)
{
	struct cfg *c = NULL;
	char *errs = NULL;
	int rc = cfg_parse("t.ini", text, len, &c, &errs);

	if (rc)
		fail_msg("unexpected failure %d:\n%s", rc, errs ? errs : "(no errors)");
	assert_null(errs);
	assert_non_null(c);
	return c;
}

static struct cfg *parse_ok(const char *text)
{
	return parse_ok_len(text, strlen(text));
}

/* The whole error text must be exactly `want`. */
static void expect_errors_len(const char *text, size_t len, const char *want)
{
	struct cfg *c = (struct cfg *)1;
	char *errs = NULL;
	int rc = cfg_parse("t.ini", text, len, &c, &errs);

	if (rc != -EINVAL)
		fail_msg("expected -EINVAL, got %d for:\n%s", rc, text);
	assert_null(c);
	assert_non_null(errs);
	if (strcmp(errs, want))
		fail_msg("errors differ.\n--- got:\n%s--- expected:\n%s", errs, want);
	free(errs);
}

static void expect_errors(const char *text, const char *want)
{
	expect_errors_len(text, strlen(text), want);
}

/* ------------------------------------------------------------------------------------------ */
/* Defaults and the embedded config                                                            */

static void test_defaults(void **state)
{
	struct cfg *c = parse_ok("[global]\nwan = eth1\n");
	const struct cfg_global *g = &c->global;

	assert_string_equal(c->path, "t.ini");
	assert_int_equal(g->n_lan, 0);
	assert_int_equal(g->n_wan, 1);
	assert_string_equal(g->wan[0], "eth1");
	assert_int_equal(g->redirect, CFG_REDIRECT_AUTO);
	assert_int_equal(g->workers, 0);
	assert_int_equal(g->mark, 0x7870);
	assert_int_equal(g->mark_mask, 0xffffffff);
	assert_int_equal(g->fail, CFG_FAIL_OPEN);
	assert_string_equal(g->veth, "xp0");
	assert_int_equal(g->flow_entries, 65536);
	assert_int_equal(g->dst_entries, 65536);
	assert_int_equal(g->cidr_entries, 65536);
	assert_int_equal(g->ringbuf_bytes, 1 << 20);
	assert_true(g->flow_events_all);
	assert_int_equal(g->log_level, XP_LOG_INFO);
	assert_string_equal(g->plugin_dir, XP_PLUGIN_DIR);
	assert_int_equal(g->sniff_timeout_ms, 300);
	assert_int_equal(g->connect_timeout_ms, 10000);
	assert_int_equal(g->idle_timeout_ms, 600000);
	assert_int_equal(g->halfclose_timeout_ms, 60000);
	assert_int_equal(g->max_connections, 65536);
	assert_int_equal(g->buffer_bytes, 1024 * 1024);
	assert_int_equal(c->n_outbounds, 0);
	assert_int_equal(c->route.n, 0);
	assert_int_equal(c->route.fallback.kind, RT_DIRECT);
	assert_int_equal(c->route.fallback.id, 0);
	/* [route] was not in the file, but is there (line 0) like [global] */
	assert_int_equal(cfg_section(c, "route")->line, 0);
	assert_int_equal(cfg_section(c, "global")->line, 1);
	assert_int_equal(cfg_section(c, "global")->n_kv, 1);
	assert_int_equal(cfg_section(c, "global")->kv[0].line, 2);
	cfg_free(c);
	cfg_free(NULL);
}

static int default_ob(void *ctx, const char *name)
{
	(void)ctx;
	return !strcmp(name, "proxy") ? 7 : !strcmp(name, "deny") ? 8 : -ENOENT;
}

static const struct rule *route(const struct cfg *c, const char *dst, uint16_t dport)
{
	struct rule_flow f = {.dport = dport, .sport = 40000, .l4proto = 6};
	struct in_addr a4;

	if (inet_pton(AF_INET, dst, &a4) == 1) {
		rule_addr_from_v4(f.daddr, a4.s_addr);
		rule_addr_from_v4(f.saddr, htonl(0xc0a80102));
	} else {
		assert_int_equal(inet_pton(AF_INET6, dst, f.daddr), 1);
		assert_int_equal(inet_pton(AF_INET6, "fd00:1:1::2", f.saddr), 1);
	}
	return rule_list_match(&c->route, &f);
}

/* route() for a flow to port 443 that a DNS answer or a sniffer named */
static const struct rule *route_name(const struct cfg *c, const char *dst, const char *name)
{
	struct rule_flow f = {.dport = 443, .sport = 40000, .l4proto = 6, .domain = name};
	struct in_addr a4;

	assert_int_equal(inet_pton(AF_INET, dst, &a4), 1);
	rule_addr_from_v4(f.daddr, a4.s_addr);
	rule_addr_from_v4(f.saddr, htonl(0xc0a80102));
	return rule_list_match(&c->route, &f);
}

static void test_default_config(void **state)
{
	struct cfg *c = NULL;
	char *errs = NULL;
	struct rule_image img;
	char err[256];

	assert_int_equal(
		cfg_parse("<embedded>", cfg_default_text, strlen(cfg_default_text), &c, &errs), 0);
	assert_null(errs);
	assert_int_equal(c->global.n_lan, 1);
	assert_string_equal(c->global.lan[0], "lan0");
	assert_int_equal(c->global.n_wan, 1);
	assert_string_equal(c->global.wan[0], "wan0");
	assert_int_equal(c->n_outbounds, 2);
	assert_string_equal(cfg_outbound_find(c, "proxy")->plugin, "direct");
	assert_string_equal(cfg_outbound_find(c, "deny")->plugin, "block");
	assert_string_equal(cfg_get(c, "outbound.proxy", "plugin"), "direct");
	assert_int_equal(c->route.fallback.kind, RT_OUTBOUND);
	assert_string_equal(c->route.fallback.target, "proxy");

	/* the demo's networks */
	assert_string_equal(route(c, "10.1.2.5", 80)->target, "proxy");
	assert_int_equal(route(c, "10.1.3.5", 80)->kind, RT_DIRECT);
	assert_int_equal(route(c, "10.1.4.5", 80)->kind, RT_BLOCK);
	assert_string_equal(route(c, "fd00:1:2::5", 80)->target, "proxy");
	assert_int_equal(route(c, "fd00:1:3::5", 80)->kind, RT_DIRECT);
	/* special-purpose ranges stay direct, 10/8 and the rest of the world go to the fallback */
	assert_int_equal(route(c, "192.168.7.1", 80)->kind, RT_DIRECT);
	assert_int_equal(route(c, "172.20.0.1", 80)->kind, RT_DIRECT);
	assert_int_equal(route(c, "127.0.0.1", 80)->kind, RT_DIRECT);
	assert_int_equal(route(c, "239.1.1.1", 80)->kind, RT_DIRECT);
	assert_int_equal(route(c, "fe80::1", 80)->kind, RT_DIRECT);
	assert_ptr_equal(route(c, "10.9.9.9", 80), &c->route.fallback);
	assert_ptr_equal(route(c, "8.8.8.8", 443), &c->route.fallback);
	assert_ptr_equal(route(c, "2606:4700::1", 443), &c->route.fallback);

	/* the domain rules below them: DNS and sniffing are on */
	assert_true(c->dns.present);
	assert_string_equal(c->dns.plugin, "dns");
	assert_true(c->sniff.present);
	assert_int_equal(route_name(c, "10.1.5.2", "www.direct.test")->kind, RT_DIRECT);
	assert_int_equal(route_name(c, "10.1.5.2", "a.ads.test")->kind, RT_BLOCK);
	assert_ptr_equal(route_name(c, "10.1.5.2", "example.org"), &c->route.fallback);
	/* an address rule above them still wins */
	assert_int_equal(route_name(c, "10.1.4.2", "www.direct.test")->kind, RT_BLOCK);

	/* the address rules compile into one kernel lookup; the two domain rules (with [sniff])
	 * into one more that sends what is left to the sniffers */
	assert_int_equal(rules_compile(&c->route, 0, default_ob, NULL, &img, err, sizeof(err)), 0);
	assert_int_equal(img.n_skipped, 2);
	assert_int_equal(img.n_rules, 2);
	assert_int_equal(img.rules[0].take, XP_TAKE_DST_SET);
	assert_int_equal(img.rules[1].verdict, XP_V_INSPECT);
	assert_int_equal(img.set.fallback_verdict, XP_V_PROXY);
	assert_int_equal(img.set.fallback_outbound, 7);
	rule_image_free(&img);
	cfg_free(c);
}

static void test_full_file(void **state)
{
	const char *dir = getenv("XP_TEST_DATA");
	char path[512];
	struct cfg *c = NULL;
	char *errs = NULL;

	if (!dir)
		fail_msg("XP_TEST_DATA is not set (run through meson test)");
	snprintf(path, sizeof(path), "%s/full.ini", dir);
	if (cfg_load(path, &c, &errs))
		fail_msg("%s", errs);
	const struct cfg_global *g = &c->global;

	assert_int_equal(g->n_lan, 2);
	assert_string_equal(g->lan[1], "lan1");
	assert_string_equal(g->wan[0], "ppp0");
	assert_int_equal(g->redirect, CFG_REDIRECT_PLAIN);
	assert_int_equal(g->workers, 3);
	assert_int_equal(g->mark, 0x100);
	assert_int_equal(g->mark_mask, 0xff00);
	assert_int_equal(g->fail, CFG_FAIL_CLOSED);
	assert_string_equal(g->veth, "xpt0");
	assert_int_equal(g->flow_entries, 2048);
	assert_int_equal(g->dst_entries, 4096);
	assert_int_equal(g->cidr_entries, 8192);
	assert_int_equal(g->ringbuf_bytes, 256 * 1024);
	assert_false(g->flow_events_all);
	assert_int_equal(g->log_level, XP_LOG_DEBUG);
	assert_string_equal(g->plugin_dir, "/opt/xproxy/plugins");
	assert_int_equal(g->sniff_timeout_ms, 150);
	assert_int_equal(g->connect_timeout_ms, 5000);
	assert_int_equal(g->idle_timeout_ms, 2 * 3600 * 1000);
	assert_int_equal(g->halfclose_timeout_ms, 30000);
	assert_int_equal(g->max_connections, 1000);
	assert_int_equal(g->buffer_bytes, 128 * 1024);

	/* plugin options are kept raw, with their lines; inline comments need whitespace */
	const struct cfg_outbound *o = cfg_outbound_find(c, "hk");

	assert_non_null(o);
	assert_string_equal(o->plugin, "socks5");
	assert_int_equal(o->line, 26);
	assert_ptr_equal(o->section, cfg_section(c, "outbound.hk"));
	assert_int_equal(o->section->n_kv, 4);
	assert_string_equal(o->section->kv[1].key, "server");
	assert_string_equal(o->section->kv[1].value, "192.0.2.10:1080");
	assert_int_equal(o->section->kv[1].line, 28);
	assert_string_equal(cfg_get(c, "outbound.hk", "username"), "alice");
	assert_string_equal(cfg_get(c, "outbound.hk", "password"), "p;w#1");

	/* the @file next to the config: 4 prefixes */
	assert_int_equal(c->route.n, 2);
	assert_int_equal(c->route.rules[0].conds[0].n, 4);
	assert_int_equal(c->route.rules[0].line, 33);
	assert_int_equal(c->route.rules[1].id, 2);
	assert_int_equal(c->route.fallback.line, 35);
	cfg_free(c);
}

/* ------------------------------------------------------------------------------------------ */
/* [global] keys                                                                               */

struct gcase {
	const char *key, *value;
	uint64_t want;	 /* parsed value when accepted */
	const char *err; /* message after "t.ini:3: ", NULL when accepted */
};

static uint64_t field(const struct cfg *c, const char *key)
{
	const struct cfg_global *g = &c->global;

	if (!strcmp(key, "redirect"))
		return g->redirect;
	if (!strcmp(key, "workers"))
		return g->workers;
	if (!strcmp(key, "mark"))
		return g->mark;
	if (!strcmp(key, "mark_mask"))
		return g->mark_mask;
	if (!strcmp(key, "fail"))
		return g->fail;
	if (!strcmp(key, "flow_entries"))
		return g->flow_entries;
	if (!strcmp(key, "dst_entries"))
		return g->dst_entries;
	if (!strcmp(key, "cidr_entries"))
		return g->cidr_entries;
	if (!strcmp(key, "ringbuf_size"))
		return g->ringbuf_bytes;
	if (!strcmp(key, "flow_events"))
		return g->flow_events_all;
	if (!strcmp(key, "log_level"))
		return (uint64_t)g->log_level;
	if (!strcmp(key, "sniff_timeout"))
		return g->sniff_timeout_ms;
	if (!strcmp(key, "connect_timeout"))
		return g->connect_timeout_ms;
	if (!strcmp(key, "idle_timeout"))
		return g->idle_timeout_ms;
	if (!strcmp(key, "halfclose_timeout"))
		return g->halfclose_timeout_ms;
	if (!strcmp(key, "max_connections"))
		return g->max_connections;
	if (!strcmp(key, "buffer_size"))
		return g->buffer_bytes;
	if (!strcmp(key, "udp_buffer"))
		return g->udp_buffer_bytes;
	if (!strcmp(key, "wan"))
		return g->n_wan;
	if (!strcmp(key, "veth"))
		return strlen(g->veth);
	if (!strcmp(key, "plugin_dir"))
		return strlen(g->plugin_dir);
	fail_msg("no field for %s", key);
	return 0;
}

static void test_global_keys(void **state)
{
#define E(k, v, exp)                                                                               \
	{                                                                                          \
		k, v, 0, k ": invalid value '" v "' (expected " exp ")"                            \
	}
	static const struct gcase cases[] = {
		{"redirect", "auto", CFG_REDIRECT_AUTO, NULL},
		{"redirect", "peer", CFG_REDIRECT_PEER, NULL},
		{"redirect", "plain", CFG_REDIRECT_PLAIN, NULL},
		E("redirect", "Peer", "auto, peer or plain"),
		E("redirect", "", "auto, peer or plain"),
		{"workers", "0", 0, NULL},
		{"workers", "64", 64, NULL},
		{"workers", "0x10", 16, NULL},
		{"workers", "4 ; four", 4, NULL},
		E("workers", "65", "0-64; 0 = one per CPU"),
		E("workers", "-1", "0-64; 0 = one per CPU"),
		E("workers", "4x", "0-64; 0 = one per CPU"),
		E("workers", "99999999999999999999999", "0-64; 0 = one per CPU"),
		{"mark", "0x7870", 0x7870, NULL},
		{"mark", "1", 1, NULL},
		{"mark", "0xffffffff", 0xffffffff, NULL},
		E("mark", "0", "a non-zero 32-bit value such as 0x7870"),
		E("mark", "0x100000000", "a non-zero 32-bit value such as 0x7870"),
		E("mark", "0x", "a non-zero 32-bit value such as 0x7870"),
		{"mark_mask", "0xffffffff", 0xffffffff, NULL},
		{"mark_mask", "0x7fff", 0x7fff, NULL},
		E("mark_mask", "0", "a non-zero 32-bit value such as 0xffffffff"),
		{"fail", "open", CFG_FAIL_OPEN, NULL},
		{"fail", "closed", CFG_FAIL_CLOSED, NULL},
		E("fail", "close", "open or closed"),
		{"veth", "x", 1, NULL},
		{"veth", "abcdefghijklm", 13, NULL},
		E("veth", "abcdefghijklmn",
		  "a device name of 1-13 characters, so that \"<veth>p\" fits"),
		E("veth", "a/b", "a device name of 1-13 characters, so that \"<veth>p\" fits"),
		E("veth", "", "a device name of 1-13 characters, so that \"<veth>p\" fits"),
		{"flow_entries", "1024", 1024, NULL},
		{"flow_entries", "16777216", 16777216, NULL},
		E("flow_entries", "1023", "1024-16777216"),
		E("flow_entries", "16777217", "1024-16777216"),
		{"dst_entries", "100000", 100000, NULL},
		E("dst_entries", "64k", "1024-16777216"),
		{"cidr_entries", "1024", 1024, NULL},
		E("cidr_entries", "0", "1024-16777216"),
		{"ringbuf_size", "4096", 4096, NULL},
		{"ringbuf_size", "4k", 4096, NULL},
		{"ringbuf_size", "1M", 1 << 20, NULL},
		{"ringbuf_size", "256m", 256u << 20, NULL},
		E("ringbuf_size", "2048", "a power of two from 4k to 256m"),
		E("ringbuf_size", "3000", "a power of two from 4k to 256m"),
		E("ringbuf_size", "512m", "a power of two from 4k to 256m"),
		E("ringbuf_size", "1mb", "a power of two from 4k to 256m"),
		E("ringbuf_size", "1.5m", "a power of two from 4k to 256m"),
		{"flow_events", "all", 1, NULL},
		{"flow_events", "proxied", 0, NULL},
		E("flow_events", "none", "all or proxied"),
		{"log_level", "error", XP_LOG_ERROR, NULL},
		{"log_level", "warn", XP_LOG_WARN, NULL},
		{"log_level", "info", XP_LOG_INFO, NULL},
		{"log_level", "debug", XP_LOG_DEBUG, NULL},
		{"log_level", "trace", XP_LOG_TRACE, NULL},
		E("log_level", "INFO", "error, warn, info, debug or trace"),
		E("log_level", "warning", "error, warn, info, debug or trace"),
		{"plugin_dir", "/opt/p", 6, NULL},
		E("plugin_dir", "", "a directory"),
		{"sniff_timeout", "1", 1, NULL},
		{"sniff_timeout", "300ms", 300, NULL},
		{"sniff_timeout", "60s", 60000, NULL},
		{"sniff_timeout", "1m", 60000, NULL},
		E("sniff_timeout", "0", "a duration, 1ms-60s"),
		E("sniff_timeout", "61s", "a duration, 1ms-60s"),
		E("sniff_timeout", "1.5s", "a duration, 1ms-60s"),
		E("sniff_timeout", "5x", "a duration, 1ms-60s"),
		E("sniff_timeout", "s", "a duration, 1ms-60s"),
		{"connect_timeout", "100ms", 100, NULL},
		{"connect_timeout", "10m", 600000, NULL},
		E("connect_timeout", "99", "a duration, 100ms-10m"),
		E("connect_timeout", "601s", "a duration, 100ms-10m"),
		{"idle_timeout", "1s", 1000, NULL},
		{"idle_timeout", "168h", 168ull * 3600000, NULL},
		E("idle_timeout", "169h", "a duration, 1s-168h"),
		E("idle_timeout", "999ms", "a duration, 1s-168h"),
		E("idle_timeout", "99999999999999999h", "a duration, 1s-168h"),
		{"halfclose_timeout", "24h", 24ull * 3600000, NULL},
		E("halfclose_timeout", "25h", "a duration, 1s-24h"),
		{"max_connections", "1", 1, NULL},
		{"max_connections", "4194304", 4194304, NULL},
		E("max_connections", "0", "1-4194304"),
		E("max_connections", "4194305", "1-4194304"),
		{"buffer_size", "4k", 4096, NULL},
		{"buffer_size", "16m", 16u << 20, NULL},
		{"buffer_size", "65536", 65536, NULL},
		E("buffer_size", "4095", "a size, 4k-16m"),
		E("buffer_size", "17m", "a size, 4k-16m"),
		E("buffer_size", "1g", "a size, 4k-16m"),
		{"udp_buffer", "64k", 64u << 10, NULL},
		{"udp_buffer", "256m", 256u << 20, NULL},
		E("udp_buffer", "65535", "a size, 64k-256m"),
		E("udp_buffer", "257m", "a size, 64k-256m"),
		{"wan", "eth1", 1, NULL},
		{"wan", "eth1, eth2\teth3,,eth4", 4, NULL},
		{"wan", "abcdefghijklmno", 1, NULL},
		E("wan", "abcdefghijklmnop", "x"), /* replaced below: device names say more */
	};
#undef E
	char text[512], want[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct gcase *t = &cases[i];

		snprintf(text, sizeof(text), BASE "%s = %s\n", t->key, t->value);
		if (t->err && !strcmp(t->key, "wan")) {
			snprintf(want, sizeof(want),
				 "t.ini:3: wan: invalid device name '%s' (1-15 characters, no '/', "
				 "':' or spaces)\n",
				 t->value);
			expect_errors(text, want);
			continue;
		}
		if (t->err) {
			snprintf(want, sizeof(want), "t.ini:3: %s\n", t->err);
			expect_errors(text, want);
			continue;
		}
		struct cfg *c = parse_ok(text);

		if (field(c, t->key) != t->want)
			fail_msg("%s = %s: got %llu, expected %llu", t->key, t->value,
				 (unsigned long long)field(c, t->key), (unsigned long long)t->want);
		cfg_free(c);
	}
}

static void test_global_cross_checks(void **state)
{
	expect_errors(BASE "mark_mask = 0xff00\n",
		      "t.ini:3: mark 0x7870 has bits outside mark_mask 0xff00\n");
	expect_errors(BASE "mark = 0x10000\nmark_mask = 0xffff\n",
		      "t.ini:3: mark 0x10000 has bits outside mark_mask 0xffff\n");
	expect_errors(BASE "wan = eth1 eth0\n", "t.ini:3: device 'eth0' is in both lan and wan\n");
	expect_errors(BASE "veth = eth0\n", "t.ini:3: veth 'eth0' is also listed in lan or wan\n");
	expect_errors("[global]\nlan = a b a\n", "t.ini:2: lan: device 'a' is listed twice\n");
	expect_errors("[global]\nlan = ,\n",
		      "t.ini:2: lan: no device names (expected names separated by spaces or "
		      "commas)\n");
	expect_errors("[global]\nlan = a:1\n",
		      "t.ini:2: lan: invalid device name 'a:1' (1-15 characters, no '/', ':' or "
		      "spaces)\n");
	{
		char text[1024] = "[global]\nlan =";

		for (int i = 0; i < 65; i++)
			snprintf(text + strlen(text), sizeof(text) - strlen(text), " d%d", i);
		strcat(text, "\n");
		expect_errors(text, "t.ini:2: lan: more than 64 devices\n");
	}
	/* neither lan nor wan: at the [global] line, or about the file when there is none */
	expect_errors("[global]\nworkers = 1\n",
		      "t.ini:1: neither lan nor wan is set in [global]: xproxy needs at least one "
		      "device to work on\n");
	expect_errors("", "t.ini: neither lan nor wan is set in [global]: xproxy needs at least "
			  "one device to work on\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Structure errors                                                                            */

static void test_structure_errors(void **state)
{
	expect_errors(BASE "[nope]\nx = 1\n[Global]\n",
		      "t.ini:3: unknown section [nope] (expected [global], [route] or "
		      "[outbound.NAME])\n"
		      "t.ini:5: unknown section [Global] (expected [global], [route] or "
		      "[outbound.NAME])\n");
	expect_errors(BASE "foo = 1\nLAN = x\n",
		      "t.ini:3: unknown key 'foo' in [global]\nt.ini:4: unknown key 'LAN' in "
		      "[global]\n");
	expect_errors(BASE "[route]\nrules = dport:1, DIRECT\n",
		      "t.ini:4: unknown key 'rules' in [route] (expected rule or fallback)\n");
	expect_errors(BASE "workers = 1\nworkers = 2\n",
		      "t.ini:4: duplicate key 'workers' in [global] (first at line 3)\n");
	expect_errors(BASE "[route]\n[global]\nwan = x\n[route]\n",
		      "t.ini:4: duplicate section [global] (first at line 1)\n"
		      "t.ini:6: duplicate section [route] (first at line 3)\n");
	expect_errors(BASE "[outbound.a]\nplugin = direct\n[outbound.a]\nplugin = direct\n",
		      "t.ini:5: duplicate section [outbound.a] (first at line 3)\n");
	expect_errors("x = 1\n" BASE, "t.ini:1: key 'x' outside of any section\n");
	expect_errors(BASE "[global\n", "t.ini:3: section header without a closing ']'\n");
	expect_errors(BASE "[route] x\n", "t.ini:3: unexpected text 'x' after ']'\n");
	expect_errors(BASE "just words\n",
		      "t.ini:3: expected 'key = value', '[section]' or a comment\n");
	expect_errors(BASE "x ; = 1\n",
		      "t.ini:3: expected 'key = value', '[section]' or a comment\n");
	expect_errors(BASE "= 1\n", "t.ini:3: missing key name before '='\n");
	/* keys of a bad section are not reported again */
	expect_errors(BASE "[bad]\nfoo = 1\nbar\n",
		      "t.ini:3: unknown section [bad] (expected [global], [route] or "
		      "[outbound.NAME])\n"
		      "t.ini:5: expected 'key = value', '[section]' or a comment\n");
	/* accepted: spaces inside brackets, trailing comments, "key: value", indentation */
	struct cfg *c = parse_ok("[ global ] ; the globals\n  lan: eth0\n\tworkers=2 # two\n");

	assert_int_equal(c->global.workers, 2);
	cfg_free(c);
}

static void test_outbound_errors(void **state)
{
	expect_errors(BASE "[outbound.a]\nserver = x\n",
		      "t.ini:3: [outbound.a] has no 'plugin' key\n");
	expect_errors(BASE "[outbound.a]\n", "t.ini:3: [outbound.a] has no 'plugin' key\n");
	expect_errors(BASE "[outbound.]\n[outbound]\n",
		      "t.ini:3: section [outbound.] needs a name: [outbound.NAME]\n"
		      "t.ini:4: section [outbound] needs a name: [outbound.NAME]\n");
	expect_errors(
		BASE
		"[outbound.a b]\n[outbound.a.b]\n[outbound.abcdefghijabcdefghijabcdefghij12]\n",
		"t.ini:3: invalid outbound name 'a b' (expected 1-31 characters A-Z a-z 0-9 "
		"_ -)\n"
		"t.ini:4: invalid outbound name 'a.b' (expected 1-31 characters A-Z a-z 0-9 "
		"_ -)\n"
		"t.ini:5: invalid outbound name 'abcdefghijabcdefghijabcdefghij12' (expected "
		"1-31 characters A-Z a-z 0-9 _ -)\n");
	static const char *const reserved[] = {"DIRECT", "direct", "Block", "INSPECT",
					       "dns",	 "REJECT", "reject"};
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		char text[128], want[256];

		snprintf(text, sizeof(text), BASE "[outbound.%s]\nplugin = direct\n", reserved[i]);
		snprintf(want, sizeof(want),
			 "t.ini:3: outbound name '%s' is reserved (DIRECT, BLOCK, INSPECT, DNS and "
			 "REJECT, in any case)\n",
			 reserved[i]);
		expect_errors(text, want);
	}
	expect_errors(BASE "[outbound.a]\nplugin = direct\nplugin = block\n",
		      "t.ini:5: duplicate key 'plugin' in [outbound.a] (first at line 4)\n");
	expect_errors(
		BASE "[outbound.a]\nplugin = no such\n[outbound.b]\nplugin = /x/y.txt\n"
		     "[outbound.c]\nplugin =\n",
		"t.ini:4: plugin: invalid value 'no such' (expected a plugin name, or a path "
		"to a .so file)\n"
		"t.ini:6: plugin: invalid value '/x/y.txt' (expected a plugin name, or a path "
		"to a .so file)\n"
		"t.ini:8: plugin: invalid value '' (expected a plugin name, or a path to a "
		".so file)\n");

	struct cfg *c = parse_ok(BASE "[outbound.A-b_9]\nplugin = ./x.so\nopt = 1\nopt = 2\n"
				      "[outbound.a]\nplugin = direct\n");

	assert_int_equal(c->n_outbounds, 2);
	assert_string_equal(c->outbounds[0].name, "A-b_9");
	assert_string_equal(c->outbounds[0].plugin, "./x.so");
	assert_string_equal(cfg_get(c, "outbound.A-b_9", "opt"), "2"); /* the last one */
	assert_int_equal(c->outbounds[0].section->n_kv, 3);
	assert_int_equal(c->outbounds[0].section->kv[2].line, 6);
	assert_null(cfg_get(c, "outbound.A-b_9", "nope"));
	assert_null(cfg_get(c, "outbound.zz", "plugin"));
	assert_null(cfg_outbound_find(c, "A-B_9")); /* names are case-sensitive */
	assert_null(cfg_section(c, "nope"));
	assert_ptr_equal(cfg_outbound_find(c, "a")->section, cfg_section(c, "outbound.a"));
	cfg_free(c);
}

static void test_route(void **state)
{
	struct cfg *c = parse_ok(BASE "[outbound.p]\nplugin = direct\n[route]\n"
				      "rule = dport:22, BLOCK\n"
				      "; a comment between rules\n"
				      "rule = dst-cidr:10.0.0.0/8 & proto:tcp, p\n"
				      "fallback = p\n");

	assert_int_equal(c->route.n, 2);
	assert_int_equal(c->route.rules[0].id, 1);
	assert_int_equal(c->route.rules[0].line, 6);
	assert_int_equal(c->route.rules[1].id, 2);
	assert_int_equal(c->route.rules[1].line, 8);
	assert_string_equal(c->route.rules[1].target, "p");
	assert_int_equal(c->route.fallback.line, 9);
	assert_string_equal(c->route.fallback.target, "p");
	cfg_free(c);

	expect_errors(BASE "[route]\nrule = dport:0, DIRECT\nrule = dport:22, nowhere\n"
			   "rule = , x\nfallback = gone\nfallback = DIRECT\n",
		      "t.ini:4: dport: port 0 in '0' is not valid (ports are 1-65535)\n"
		      "t.ini:5: rule target 'nowhere' has no [outbound.nowhere] section\n"
		      "t.ini:6: no condition before the target (use 'fallback = TARGET' for a "
		      "catch-all)\n"
		      "t.ini:7: fallback target 'gone' has no [outbound.gone] section\n"
		      "t.ini:8: more than one fallback (first at line 7)\n");
	expect_errors(BASE "[route]\nfallback = a, b\n",
		      "t.ini:4: fallback takes only a target (DIRECT, BLOCK or an outbound name), "
		      "got 'a, b'\n");
	/* an outbound section that failed does not also produce "no section" for its rules */
	expect_errors(
		BASE "[outbound.dns]\nplugin = x\n[route]\nrule = dport:53, dns\n",
		"t.ini:3: outbound name 'dns' is reserved (DIRECT, BLOCK, INSPECT, DNS and "
		"REJECT, in any case)\n"
		"t.ini:6: rule target DNS needs a [dns] section (the plugin that answers)\n");
}

static void test_route_files(void **state)
{
	char dir[128], path[160], want[2048];
	FILE *f;
	struct cfg *c = NULL;
	char *errs = NULL;

	snprintf(dir, sizeof(dir), "%s/conf", tmpdir);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/list.txt", dir);
	f = fopen(path, "w");
	fputs("10.0.0.0/8\nbogus\n192.0.2.1/24\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/x.ini", dir);
	f = fopen(path, "w");
	fputs(BASE
	      "[route]\nrule = dst-cidr:@list.txt, DIRECT\nrule = dst-cidr:@none.txt, DIRECT\n",
	      f);
	fclose(f);
	assert_int_equal(cfg_load(path, &c, &errs), -EINVAL);
	assert_null(c);
	snprintf(want, sizeof(want),
		 "%s:4: %s/list.txt:2: invalid address 'bogus'\n"
		 "%s:4: %s/list.txt:3: '192.0.2.1/24': host bits set, did you mean 192.0.2.0/24?\n"
		 "%s:5: dst-cidr: cannot open '%s/none.txt': No such file or directory\n",
		 path, dir, path, dir, path, dir);
	assert_string_equal(errs, want);
	free(errs);

	/* cfg_load errors */
	snprintf(path, sizeof(path), "%s/missing.ini", dir);
	assert_int_equal(cfg_load(path, &c, &errs), -ENOENT);
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory\n", path);
	assert_string_equal(errs, want);
	free(errs);
	assert_int_equal(cfg_load(dir, &c, &errs), -EISDIR);
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory\n", dir);
	assert_string_equal(errs, want);
	free(errs);
	assert_int_equal(cfg_load(dir, &c, NULL), -EISDIR);
}

/* ------------------------------------------------------------------------------------------ */
/* Lexical details: long lines, CRLF, BOM, NUL, comments                                       */

static void test_long_lines(void **state)
{
	/* a 10,000-character rule line works (no truncation: the last port counts) */
	size_t cap = 20000 + 17000;
	char *t = xmalloc(cap), *q;
	struct cfg *c;

	q = t + sprintf(t, BASE "[route]\nrule = dport:");
	for (int i = 1; (size_t)(q - t) < 10000; i++)
		q += sprintf(q, "%d|", 2 * i);
	q += sprintf(q, "65535, BLOCK\n");
	c = parse_ok(t);
	struct rule_cond *d = &c->route.rules[0].conds[0];

	assert_int_equal(d->ports[d->n - 1].lo, 65535);
	cfg_free(c);

	/* exactly 16,384 characters is fine, one more is an error, and later lines still count */
	for (size_t len = 16384; len <= 16385; len++) {
		q = t + sprintf(t, BASE "# ");
		memset(q, 'x', len - 2);
		q += len - 2;
		q += sprintf(q, "\r\nworkers = 99\n");
		if (len == 16384) {
			expect_errors(t, "t.ini:4: workers: invalid value '99' (expected 0-64; 0 = "
					 "one per CPU)\n");
		} else {
			expect_errors(t, "t.ini:3: line too long (16385 characters, max 16384)\n"
					 "t.ini:4: workers: invalid value '99' (expected 0-64; 0 = "
					 "one per CPU)\n");
		}
	}
	/* a long section name is not silently truncated (inih would cut it at 49) */
	{
		char name[201], want[512];

		memset(name, 'a', 200);
		name[200] = '\0';
		sprintf(t, BASE "[outbound.%s]\nplugin = direct\n", name);
		snprintf(want, sizeof(want),
			 "t.ini:3: invalid outbound name '%s' (expected 1-31 characters A-Z a-z "
			 "0-9 _ -)\n",
			 name);
		expect_errors(t, want);
	}
	free(t);
}

static void test_lexical(void **state)
{
	struct cfg *c;

	/* CRLF everywhere, a BOM, comments of both kinds, no final newline */
	c = parse_ok("\xef\xbb\xbf; comment\r\n# comment\r\n[global]\r\nlan = eth0 ; inline\r\n"
		     "wan = eth1 # inline\r\n\r\n[outbound.p]\r\nplugin = direct\r\n"
		     "password = a;b#c\r\n[route]\r\nrule = dport:80, p\r\nfallback = DIRECT");
	assert_string_equal(c->global.lan[0], "eth0");
	assert_string_equal(c->global.wan[0], "eth1");
	assert_string_equal(cfg_get(c, "outbound.p", "password"), "a;b#c");
	assert_int_equal(c->route.rules[0].line, 11);
	assert_int_equal(c->route.fallback.line, 12);
	assert_int_equal(c->route.fallback.kind, RT_DIRECT);
	cfg_free(c);

	/* a comment right after '=' leaves the value empty; without whitespace it is the value */
	expect_errors(BASE "plugin_dir = ; none\n",
		      "t.ini:3: plugin_dir: invalid value '' (expected a directory)\n");
	c = parse_ok(BASE "[outbound.p]\nplugin = direct\npassword =#x ; comment\nuser = ;\n");
	assert_string_equal(cfg_get(c, "outbound.p", "password"), "#x");
	assert_string_equal(cfg_get(c, "outbound.p", "user"), "");
	cfg_free(c);

	/* a lone CR or another control byte quoted in a message is replaced: one error, one line */
	expect_errors(BASE "wan = a\rb\x1b\n",
		      "t.ini:3: wan: invalid device name 'a?b?' (1-15 characters, no '/', ':' or "
		      "spaces)\n");

	/* a BOM anywhere but the start is just bytes */
	expect_errors(BASE "\xef\xbb\xbf[route]\n",
		      "t.ini:3: expected 'key = value', '[section]' or a comment\n");
	/* NUL bytes: the line is refused, not cut short */
	static const char nul[] = BASE "workers = 1\0 junk\nwan = x\n";

	expect_errors_len(nul, sizeof(nul) - 1, "t.ini:3: NUL byte in line\n");
	/* an indented line is a line of its own (no multi-line values) */
	c = parse_ok(BASE "workers = 1\n  wan = eth9\n");
	assert_string_equal(c->global.wan[0], "eth9");
	cfg_free(c);
	/* bad arguments */
	struct cfg *out;

	assert_int_equal(cfg_parse("t.ini", NULL, 5, &out, NULL), -EINVAL);
	assert_int_equal(cfg_parse("t.ini", "", 0, NULL, NULL), -EINVAL);
	assert_int_equal(cfg_parse("t.ini", BASE, strlen(BASE), &out, NULL), 0); /* no errors ptr */
	cfg_free(out);
	assert_int_equal(cfg_parse("t.ini", "[x]", 3, &out, NULL), -EINVAL);
}

static void test_error_cap(void **state)
{
	/* 1,500 bad lines: the first 1,000 errors, then how many more (plus lan/wan) */
	size_t n = 1500;
	char *t = xmalloc(n * 8 + 64), *q = t, *errs = NULL;
	struct cfg *c = NULL;
	size_t lines = 0;

	q += sprintf(q, "[global]\n");
	for (size_t i = 0; i < n; i++)
		q += sprintf(q, "bad%zu\n", i);
	assert_int_equal(cfg_parse("t.ini", t, (size_t)(q - t), &c, &errs), -EINVAL);
	for (char *s = errs; *s; s++)
		lines += *s == '\n';
	assert_int_equal(lines, 1001);
	assert_non_null(
		strstr(errs, "t.ini:2: expected 'key = value', '[section]' or a comment\n"));
	assert_non_null(strstr(errs, "t.ini:1001: expected"));
	assert_null(strstr(errs, "t.ini:1002: expected"));
	assert_non_null(strstr(errs, "\nt.ini: 501 more errors not shown\n"));
	free(errs);
	free(t);
}

static void test_big_configs(void **state)
{
	/* 50,000 rule lines (domain lists get long) and 4,096 outbounds: linear, not quadratic */
	size_t cap = 50000 * 64 + 4097 * 48 + 64, n = 0;
	char *t = xmalloc(cap), *q = t;
	struct cfg *c;

	q += sprintf(q, BASE);
	for (int i = 0; i < 4096; i++)
		q += sprintf(q, "[outbound.o%d]\nplugin = direct\n", i);
	q += sprintf(q, "[route]\n");
	for (int i = 0; i < 50000; i++)
		q += sprintf(q, "rule = domain-suffix:d%d.example.com, o%d\n", i, i % 4096);
	c = parse_ok_len(t, (size_t)(q - t));
	assert_int_equal(c->route.n, 50000);
	assert_int_equal(c->route.rules[49999].id, 50000);
	assert_int_equal(c->n_outbounds, 4096);
	assert_string_equal(cfg_outbound_find(c, "o4095")->plugin, "direct");
	cfg_free(c);

	/* one outbound more is an error */
	q = t + sprintf(t, BASE);
	for (int i = 0; i <= 4096; i++)
		q += sprintf(q, "[outbound.o%d]\nplugin = direct\n", i);
	char *errs = NULL;

	c = NULL;
	assert_int_equal(cfg_parse("t.ini", t, (size_t)(q - t), &c, &errs), -EINVAL);
	n = 3 + 2 * 4096;
	{
		char want[64];

		snprintf(want, sizeof(want), "t.ini:%zu: more than 4096 outbounds\n", n);
		assert_string_equal(errs, want);
	}
	free(errs);
	free(t);
}

static void test_garbage(void **state)
{
	size_t len = strlen(cfg_default_text);
	static const char alphabet[] = "[]=:;#\n\r\t .,|&!@-_/globalrouteoutbound.plugindport";
	uint64_t rng = 88172645463325252ull;
	regex_t line_re;

	assert_int_equal(
		regcomp(&line_re, "^(t\\.ini|<x>)(:[0-9]+)?: [^\n]+$", REG_EXTENDED | REG_NOSUB),
		0);
	/* every truncation of the default config: parses, or says why (one error per line) */
	for (size_t cut = 0; cut <= len; cut++) {
		struct cfg *c = NULL;
		char *errs = NULL;
		int rc = cfg_parse("<x>", cfg_default_text, cut, &c, &errs);

		if (rc == 0) {
			cfg_free(c);
			continue;
		}
		assert_int_equal(rc, -EINVAL);
		assert_non_null(errs);
		for (char *line = strtok(errs, "\n"); line; line = strtok(NULL, "\n"))
			if (regexec(&line_re, line, 0, NULL, 0))
				fail_msg("malformed error line '%s'", line);
		free(errs);
	}
	/* random bytes, and random INI-ish text */
	for (int i = 0; i < 5000; i++) {
		char buf[2048];
		size_t n = 0;
		struct cfg *c = NULL;
		char *errs = NULL;

		for (; n < (size_t)(rng % sizeof(buf)); n++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			buf[n] = i & 1 ? (char)rng : alphabet[rng % (sizeof(alphabet) - 1)];
		}
		int rc = cfg_parse("t.ini", buf, n, &c, &errs);

		if (rc == 0) {
			cfg_free(c);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_non_null(errs);
			assert_true(strlen(errs) > 0);
			free(errs);
		}
	}
	regfree(&line_re);
}

/* ------------------------------------------------------------------------------------------ */
/* Value parsers                                                                               */

static void test_value_parsers(void **state)
{
	uint64_t u;
	int64_t i;
	bool b;

	assert_int_equal(cfg_parse_u64("0", &u), 0);
	assert_int_equal(u, 0);
	assert_int_equal(cfg_parse_u64("18446744073709551615", &u), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(cfg_parse_u64("0xffffffffffffffff", &u), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(cfg_parse_u64("0X1f", &u), 0);
	assert_int_equal(u, 31);
	assert_int_equal(cfg_parse_u64("010", &u), 0);
	assert_int_equal(u, 10); /* decimal, not octal */
	static const char *const bad_u[] = {"18446744073709551616",
					    "0x10000000000000000",
					    "0x",
					    "",
					    " 1",
					    "1 ",
					    "-1",
					    "+1",
					    "1e3",
					    "0b1",
					    "١"};
	for (size_t k = 0; k < sizeof(bad_u) / sizeof(bad_u[0]); k++)
		if (cfg_parse_u64(bad_u[k], &u) != -EINVAL)
			fail_msg("u64 '%s' accepted", bad_u[k]);
	assert_int_equal(cfg_parse_u64(NULL, &u), -EINVAL);

	assert_int_equal(cfg_parse_i64("-9223372036854775808", &i), 0);
	assert_true(i == INT64_MIN);
	assert_int_equal(cfg_parse_i64("9223372036854775807", &i), 0);
	assert_true(i == INT64_MAX);
	assert_int_equal(cfg_parse_i64("-0x10", &i), 0);
	assert_int_equal(i, -16);
	assert_int_equal(cfg_parse_i64("-0", &i), 0);
	assert_int_equal(i, 0);
	static const char *const bad_i[] = {
		"-9223372036854775809", "9223372036854775808", "--1", "-", "+5", "", "5-"};
	for (size_t k = 0; k < sizeof(bad_i) / sizeof(bad_i[0]); k++)
		if (cfg_parse_i64(bad_i[k], &i) != -EINVAL)
			fail_msg("i64 '%s' accepted", bad_i[k]);

	static const char *const yes[] = {"1", "true", "YES", "On"};
	static const char *const no[] = {"0", "False", "no", "OFF"};
	for (size_t k = 0; k < 4; k++) {
		assert_int_equal(cfg_parse_bool(yes[k], &b), 0);
		assert_true(b);
		assert_int_equal(cfg_parse_bool(no[k], &b), 0);
		assert_false(b);
	}
	assert_int_equal(cfg_parse_bool("2", &b), -EINVAL);
	assert_int_equal(cfg_parse_bool("", &b), -EINVAL);
	assert_int_equal(cfg_parse_bool("truee", &b), -EINVAL);
	assert_int_equal(cfg_parse_bool(" true", &b), -EINVAL);

	static const struct {
		const char *s;
		uint64_t ms;
	} durs[] = {{"250ms", 250}, {"10s", 10000},
		    {"5m", 300000}, {"1h", 3600000},
		    {"7", 7},	    {"0", 0},
		    {"1S", 1000},   {"5124095576030h", 5124095576030ull * 3600000}};
	for (size_t k = 0; k < sizeof(durs) / sizeof(durs[0]); k++) {
		assert_int_equal(cfg_parse_duration_ms(durs[k].s, &u), 0);
		assert_true(u == durs[k].ms);
	}
	static const char *const bad_d[] = {
		"1d", "ms",    "-1s",  "1 s", "1.5s", "5124095576031h", "18446744073709551616",
		"",   "10sec", "0x10s"};
	for (size_t k = 0; k < sizeof(bad_d) / sizeof(bad_d[0]); k++)
		if (cfg_parse_duration_ms(bad_d[k], &u) != -EINVAL)
			fail_msg("duration '%s' accepted", bad_d[k]);

	static const struct {
		const char *s;
		uint64_t v;
	} sizes[] = {{"512", 512},
		     {"64k", 65536},
		     {"4M", 4 << 20},
		     {"1g", 1 << 30},
		     {"17179869183g", 17179869183ull << 30}};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		assert_int_equal(cfg_parse_size(sizes[k].s, &u), 0);
		assert_true(u == sizes[k].v);
	}
	static const char *const bad_s[] = {"1t", "1kb", "17179869184g", "k", "-1k", "1 k", ""};
	for (size_t k = 0; k < sizeof(bad_s) / sizeof(bad_s[0]); k++)
		if (cfg_parse_size(bad_s[k], &u) != -EINVAL)
			fail_msg("size '%s' accepted", bad_s[k]);

	static const char *const good_hp[] = {"example.com:443", "1.2.3.4:80", "[2001:db8::1]:443",
					      "[::1]:1",	 "a:65535",    "host.:8080"};
	for (size_t k = 0; k < sizeof(good_hp) / sizeof(good_hp[0]); k++)
		if (cfg_parse_hostport(good_hp[k]))
			fail_msg("hostport '%s' refused", good_hp[k]);
	static const char *const bad_hp[] = {
		"2001:db8::1:443", "host:0", "host:65536", "host:",    ":80",	  "[::1]", "[::1]:",
		"[zz]:1",	   "a..b:1", "host:80x",   "host:+80", "ho st:1", "",	   "[]:1",
		"[1.2.3.4]:80",	   ".:80",   "host:000080"};
	for (size_t k = 0; k < sizeof(bad_hp) / sizeof(bad_hp[0]); k++)
		if (cfg_parse_hostport(bad_hp[k]) != -EINVAL)
			fail_msg("hostport '%s' accepted", bad_hp[k]);
	assert_int_equal(cfg_parse_hostport(NULL), -EINVAL);
}

/* ------------------------------------------------------------------------------------------ */
/* log                                                                                         */

/* Run fn with stderr redirected into a temp file; return what it wrote (malloc'd). */
static char *capture(void (*fn)(void *), void *arg)
{
	char path[128];
	int fd, saved;
	struct stat st;
	char *buf;

	snprintf(path, sizeof(path), "%s/log.XXXXXX", tmpdir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	fn(arg);
	dup2(saved, STDERR_FILENO);
	close(saved);
	fd = open(path, O_RDONLY);
	assert_int_equal(fstat(fd, &st), 0);
	buf = calloc(1, (size_t)st.st_size + 1);
	assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	unlink(path);
	return buf;
}

static void log_basic(void *arg)
{
	log_set_level(XP_LOG_INFO);
	errno = 42;
	log_msg(XP_LOG_INFO, "cfg", "hello %s", "world");
	assert_int_equal(errno, 42); /* logging never clobbers errno */
	log_debug("not shown %d", 1);
	log_msg(XP_LOG_DEBUG, "x", "not shown either");
	log_warn("plain\n");
	log_error("two\nlines\r\n");
	log_msg(XP_LOG_INFO, "", "esc\x1b[31m red\x7f tab\tend");
	log_set_level(XP_LOG_TRACE);
	log_trace("trace %d", 5);
	log_set_level(XP_LOG_INFO);
}

static void log_long(void *arg)
{
	char *msg = xmalloc(20001);

	/* "é" is two bytes: the cut must not split one */
	for (int i = 0; i < 20000; i += 2)
		memcpy(msg + i, "\xc3\xa9", 2);
	msg[20000] = '\0';
	log_msg(XP_LOG_WARN, "p", "%s", msg);
	memset(msg, 'a', 20000);
	log_msg(XP_LOG_WARN, "p", "%s", msg);
	free(msg);
}

static void *log_thread(void *arg)
{
	for (int i = 0; i < 2000; i++)
		log_msg(XP_LOG_INFO, "t", "thread %ld line %d %s", (long)(intptr_t)arg, i,
			"................................................................");
	return NULL;
}

static void log_threads(void *arg)
{
	pthread_t th[4];

	for (long i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, log_thread, (void *)(intptr_t)i);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
}

static void test_log(void **state)
{
	regex_t re;
	char *out, *line, *save = NULL;
	const char *want[] = {
		"INFO [cfg] hello world",      "WARN plain",	"ERROR two", "ERROR lines",
		"INFO esc?[31m red? tab\tend", "TRACE trace 5",
	};
	size_t n = 0;

	assert_int_equal(log_level_parse("error"), XP_LOG_ERROR);
	assert_int_equal(log_level_parse("WARN"), XP_LOG_WARN);
	assert_int_equal(log_level_parse("trace"), XP_LOG_TRACE);
	assert_int_equal(log_level_parse("warning"), -EINVAL);
	assert_int_equal(log_level_parse(NULL), -EINVAL);
	assert_string_equal(log_level_name(XP_LOG_DEBUG), "debug");
	assert_string_equal(log_level_name(99), "unknown");
	log_set_level(99);
	assert_int_equal(log_get_level(), XP_LOG_TRACE);
	log_set_level(-5);
	assert_int_equal(log_get_level(), XP_LOG_ERROR);
	assert_false(log_enabled(XP_LOG_WARN));
	log_set_level(XP_LOG_INFO);
	assert_true(log_enabled(XP_LOG_INFO));
	assert_false(log_enabled(XP_LOG_DEBUG));

	assert_int_equal(
		regcomp(&re,
			"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} "
			"(.*)$",
			REG_EXTENDED),
		0);
	out = capture(log_basic, NULL);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		regmatch_t mt[2];

		if (regexec(&re, line, 2, mt, 0))
			fail_msg("bad log line '%s'", line);
		assert_true(n < sizeof(want) / sizeof(want[0]));
		assert_string_equal(line + mt[1].rm_so, want[n]);
		n++;
	}
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	free(out);

	/* overlong: one line of at most 4096 bytes, ending in "...", valid UTF-8 */
	out = capture(log_long, NULL);
	n = 0;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t len = strlen(line);

		assert_true(len + 1 <= 4096);
		assert_true(len + 1 >= 4090);
		assert_string_equal(line + len - 3, "...");
		if (n == 0) {
			/* the byte before "..." ends a complete 2-byte sequence */
			assert_int_equal((unsigned char)line[len - 4], 0xa9);
			assert_int_equal((unsigned char)line[len - 5], 0xc3);
		}
		n++;
	}
	assert_int_equal(n, 2);
	free(out);

	/* four threads: 8,000 intact lines */
	out = capture(log_threads, NULL);
	n = 0;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		regmatch_t mt[2];
		long t;
		int i;
		char dots[80];

		if (regexec(&re, line, 2, mt, 0) ||
		    sscanf(line + mt[1].rm_so, "INFO [t] thread %ld line %d %79s", &t, &i, dots) !=
			    3 ||
		    strlen(dots) != 64)
			fail_msg("torn log line '%s'", line);
		n++;
	}
	assert_int_equal(n, 8000);
	free(out);
	regfree(&re);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_default_config),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_global_keys),
		cmocka_unit_test(test_global_cross_checks),
		cmocka_unit_test(test_structure_errors),
		cmocka_unit_test(test_outbound_errors),
		cmocka_unit_test(test_route),
		cmocka_unit_test(test_route_files),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_lexical),
		cmocka_unit_test(test_error_cap),
		cmocka_unit_test(test_big_configs),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_value_parsers),
		cmocka_unit_test(test_log),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
