/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cfg - the INI configuration (parsed with inih).
 *
 * cfg_parse() turns a file or an embedded text into a struct cfg, or into a list of
 * "file:line: message" errors (every error found, not only the first). Unknown sections and
 * unknown keys are errors. Plugin options are not checked here (the plugin manager does that,
 * with the same file:line format, once the plugin is loaded); cfg keeps every section's raw
 * key/value/line list for it and for host->config_get().
 *
 * Sections known in this version: [global], [outbound.NAME], [route]. See
 * docs/configuration.md for every key.
 */
#ifndef XP_CFG_H
#define XP_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rules.h"

enum cfg_redirect {
	CFG_REDIRECT_AUTO = 0,
	CFG_REDIRECT_PEER = 1,
	CFG_REDIRECT_PLAIN = 2,
};

enum cfg_fail {
	CFG_FAIL_OPEN = 0,   /* daemon gone: proxied flows go DIRECT */
	CFG_FAIL_CLOSED = 1, /* daemon gone: proxied flows are dropped */
};

struct cfg_kv {
	char *key;
	char *value;
	int line;
};

struct cfg_section {
	char *name; /* "global", "outbound.hk", "route" */
	int line;   /* line of the [header]; 0 for sections that were not in the file */
	struct cfg_kv *kv;
	size_t n_kv;
};

struct cfg_outbound {
	char *name;   /* NAME of [outbound.NAME] */
	char *plugin; /* plugin name, or a path ending in .so */
	int line;     /* line of the section header */
	int link_line; /* line of its `link =` share link (0: none); see link.h */
	const struct cfg_section *section; /* raw keys, "plugin" included */
	bool udp_independent; /* udp_mapping = independent ("full cone") */
};

struct cfg_global {
	char **lan; /* device names */
	size_t n_lan;
	char **wan;
	size_t n_wan;
	enum cfg_redirect redirect;
	unsigned workers; /* 0 = one per CPU (capped at XP_MAX_WORKERS) */
	uint32_t mark;
	uint32_t mark_mask;
	enum cfg_fail fail;
	char *veth; /* host side of the pair; the netns side is "<veth>p" */
	/* table sizes */
	uint32_t flow_entries;
	uint32_t dst_entries;
	uint32_t cidr_entries;
	uint32_t ringbuf_bytes; /* power of two, >= 4096 */
	bool flow_events_all;	/* FLOW_NEW for DIRECT/BLOCK flows too */
	int log_level;		/* enum xp_log_level */
	char *plugin_dir;
	/* connections */
	uint64_t sniff_timeout_ms;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms;
	uint64_t halfclose_timeout_ms;
	uint32_t max_connections;
	uint32_t buffer_bytes; /* per direction, per connection (stream relays and pipes) */
	/* UDP sessions (udp.h) */
	uint64_t udp_idle_timeout_ms;
	uint32_t max_udp_sessions; /* across all workers */
	uint32_t udp_buffer_bytes; /* receive buffer of each worker's UDP listener */
};

/* [dns]: the DNS plugin and DNS routing (core/names.c, core/dnsq.c). */
struct cfg_dns {
	bool present;	   /* the file has a [dns] section */
	int line;	   /* its header */
	char *plugin;	   /* default "dns" */
	bool strict;	   /* default yes: every port-53 flow goes to the plugin */
	uint64_t grace_ms; /* kept past an answer's TTL (default 60 s) */
	uint32_t map_size; /* addresses remembered (default 65536) */
	uint64_t query_timeout_ms; /* a client query the plugin never answers (default 10 s) */
	uint64_t tcp_idle_ms;	   /* a DNS-over-TCP client with nothing open (default 30 s) */
	uint64_t tcp_stall_ms;	   /* ... with a partial message that does not move (10 s) */
	const struct cfg_section *section; /* raw keys; the plugin's options among them */
};

/* [sniff]: the sniffer plugins (core/sniff.c). */
struct cfg_sniff {
	bool present;	     /* the file has a [sniff] section */
	int line;	     /* its header */
	char **plugins;	     /* plugin names or .so paths, in order (default: tls, http) */
	size_t n_plugins;
	uint64_t timeout_ms; /* default 300 ms; [global] sniff_timeout is a deprecated alias */
	bool cache;	     /* default yes: sniffed names are cached (names_learn_sniffed) */
	bool deprecated_alias; /* [global] sniff_timeout was used: the daemon warns once */
};

struct cfg {
	char *path; /* file name used in messages ("<embedded>" for the default) */
	struct cfg_global global;
	struct cfg_outbound *outbounds;
	size_t n_outbounds;
	struct rule_list route; /* [route] rules and fallback; targets resolved by name only */
	struct cfg_section *sections;
	size_t n_sections;
	struct cfg_dns dns;
	struct cfg_sniff sniff;
};

/* Parse `text`; `path` is only used in messages. On success *out is set and 0 returned. On
 * failure -EINVAL is returned and *errors (if errors != NULL) receives a malloc'd string of
 * "path:line: message\n" lines. Other negative errnos: -ENOMEM. */
/* Is `key` one of [dns]'s own keys (not the plugin's)? */
bool cfg_dns_core_key(const char *key);

int cfg_parse(const char *path, const char *text, size_t len, struct cfg **out, char **errors);
/* Read and parse a file (-errno with a message in *errors when it cannot be read). */
int cfg_load(const char *path, struct cfg **out, char **errors);
void cfg_free(struct cfg *cfg);

/* Raw lookup; NULL when absent. For repeated keys, the last value. */
const char *cfg_get(const struct cfg *cfg, const char *section, const char *key);
const struct cfg_section *cfg_section(const struct cfg *cfg, const char *name);
const struct cfg_outbound *cfg_outbound_find(const struct cfg *cfg, const char *name);

/* The embedded default configuration (the demo's). */
extern const char cfg_default_text[];

/* Value parsers shared with the plugin option filler. 0 or -EINVAL (msg filled). */
int cfg_parse_bool(const char *s, bool *out);
int cfg_parse_u64(const char *s, uint64_t *out);   /* decimal or 0x */
int cfg_parse_i64(const char *s, int64_t *out);
int cfg_parse_duration_ms(const char *s, uint64_t *out); /* "250ms" "10s" "5m" "1h"; bare = ms */
int cfg_parse_size(const char *s, uint64_t *out);	 /* "512" "64k" "4m" "1g" */
int cfg_parse_hostport(const char *s);			 /* validate "host:port" / "[v6]:port" */

#endif
