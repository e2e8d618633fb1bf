/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cfg - the INI configuration.
 *
 * inih does the key/value splitting and inline comments; everything around it is ours so that
 * every error carries its line and all of them are reported in one pass:
 *   - our reader hands inih one line at a time and counts lines, so the handler (which inih
 *     calls before it asks for the next line) always knows the current line number;
 *   - the reader checks each line first (length, NUL bytes, section headers, lines that are
 *     neither a key nor a comment) and hands inih an empty line instead of a bad one, so inih
 *     never truncates or half-parses anything and never stops us after its first error;
 *   - section headers are handled in the reader, which also sees sections without keys.
 *
 * inih (Debian's build) keeps its dialect in process-wide globals. They are set once, the same
 * way every time, before the first parse.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "array.h"
#include "xp_config.h"

#include "cfg.h"
#include "group.h"
#include "link.h"
#include "log.h"

#define CFG_LINE_MAX	  16384	      /* characters per line; @file lists are for longer ones */
#define CFG_FILE_MAX	  (16u << 20) /* a config file above this is certainly not a config */
#define CFG_ERRORS_MAX	  1000	      /* then one summary line: a garbage file stays readable */
#define RULE_ERR_MAX	  8192
#define IFNAME_MAX	  15 /* IFNAMSIZ - 1 */
#define VETH_MAX	  13 /* "<veth>p" must fit IFNAMSIZ - 1 */
#define OUTBOUND_NAME_MAX 31
#define OUTBOUNDS_MAX	  4096 /* ids are 16 bits; far more than any router needs */

/* ------------------------------------------------------------------------------------------ */
/* Value parsers (shared with the plugin option filler): strict, whole string, no sign.       */

static int parse_digits(const char *s, unsigned base, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -EINVAL;
		if (v > (UINT64_MAX - d) / base)
			return -EINVAL; /* overflow */
		v = v * base + d;
	}
	*out = v;
	return 0;
}

int cfg_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v;
	int rc;

	if (!s || !out)
		return -EINVAL;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		rc = parse_digits(s + 2, 16, &v);
	else
		rc = parse_digits(s, 10, &v);
	if (rc)
		return rc;
	*out = v;
	return 0;
}

int cfg_parse_i64(const char *s, int64_t *out)
{
	bool neg = false;
	uint64_t v;

	if (!s || !out)
		return -EINVAL;
	if (*s == '-') {
		neg = true;
		s++;
	}
	if (cfg_parse_u64(s, &v))
		return -EINVAL;
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return -EINVAL;
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	} else {
		if (v > INT64_MAX)
			return -EINVAL;
		*out = (int64_t)v;
	}
	return 0;
}

int cfg_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};

	if (!s || !out)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* "NUMBER[unit]": the number is decimal; unit from the table, or none (mult of bare). */
static int parse_scaled(const char *s, const char *const *units, const uint64_t *mults,
			size_t n_units, uint64_t bare, uint64_t *out)
{
	char num[24];
	size_t i = 0;
	uint64_t v, m = 0;

	if (!s || !out)
		return -EINVAL;
	while (s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == 0 || i >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, i);
	num[i] = '\0';
	if (parse_digits(num, 10, &v))
		return -EINVAL;
	if (!s[i]) {
		m = bare;
	} else {
		for (size_t u = 0; u < n_units; u++)
			if (!strcasecmp(s + i, units[u]))
				m = mults[u];
		if (!m)
			return -EINVAL;
	}
	if (v && m > UINT64_MAX / v)
		return -EINVAL;
	*out = v * m;
	return 0;
}

int cfg_parse_duration_ms(const char *s, uint64_t *out)
{
	static const char *const units[] = {"ms", "s", "m", "h"};
	static const uint64_t mults[] = {1, 1000, 60 * 1000, 3600 * 1000};

	return parse_scaled(s, units, mults, 4, 1, out);
}

int cfg_parse_size(const char *s, uint64_t *out)
{
	static const char *const units[] = {"k", "m", "g"};
	static const uint64_t mults[] = {1ull << 10, 1ull << 20, 1ull << 30};

	return parse_scaled(s, units, mults, 3, 1, out);
}

static bool valid_hostname(const char *h, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-' || c == '_') || ++label > 63)
			return false;
	}
	return label > 0 || len > 1; /* one trailing dot is fine, "." alone is not */
}

int cfg_parse_hostport(const char *s)
{
	const char *colon;
	char host[256];
	uint64_t port;
	size_t hl;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		struct in6_addr a6;

		if (!end || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - s - 1);
		if (hl == 0 || hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return -EINVAL;
		colon = end + 1;
	} else {
		colon = strchr(s, ':');
		if (!colon || strchr(colon + 1, ':'))
			return -EINVAL; /* none, or an IPv6 address without brackets */
		hl = (size_t)(colon - s);
		if (!valid_hostname(s, hl))
			return -EINVAL;
	}
	if (strlen(colon + 1) > 5 || parse_digits(colon + 1, 10, &port) || port < 1 || port > 65535)
		return -EINVAL;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Parser state                                                                                */

#define SEC_NONE   (-1) /* no section yet */
#define SEC_IGNORE (-2) /* a bad or duplicate section: its keys were already reported */

enum gkey {
	G_LAN,
	G_WAN,
	G_REDIRECT,
	G_WORKERS,
	G_MARK,
	G_MARK_MASK,
	G_FAIL,
	G_VETH,
	G_FLOW_ENTRIES,
	G_DST_ENTRIES,
	G_CIDR_ENTRIES,
	G_RINGBUF_SIZE,
	G_FLOW_EVENTS,
	G_LOG_LEVEL,
	G_PLUGIN_DIR,
	G_SNIFF_TIMEOUT,
	G_CONNECT_TIMEOUT,
	G_IDLE_TIMEOUT,
	G_HALFCLOSE_TIMEOUT,
	G_MAX_CONNECTIONS,
	G_BUFFER_SIZE,
	G_UDP_IDLE_TIMEOUT,
	G_MAX_UDP_SESSIONS,
	G_UDP_BUFFER,
	G__COUNT,
};

static const char *const gkey_names[G__COUNT] = {
	[G_LAN] = "lan",
	[G_WAN] = "wan",
	[G_REDIRECT] = "redirect",
	[G_WORKERS] = "workers",
	[G_MARK] = "mark",
	[G_MARK_MASK] = "mark_mask",
	[G_FAIL] = "fail",
	[G_VETH] = "veth",
	[G_FLOW_ENTRIES] = "flow_entries",
	[G_DST_ENTRIES] = "dst_entries",
	[G_CIDR_ENTRIES] = "cidr_entries",
	[G_RINGBUF_SIZE] = "ringbuf_size",
	[G_FLOW_EVENTS] = "flow_events",
	[G_LOG_LEVEL] = "log_level",
	[G_PLUGIN_DIR] = "plugin_dir",
	[G_SNIFF_TIMEOUT] = "sniff_timeout",
	[G_CONNECT_TIMEOUT] = "connect_timeout",
	[G_IDLE_TIMEOUT] = "idle_timeout",
	[G_HALFCLOSE_TIMEOUT] = "halfclose_timeout",
	[G_MAX_CONNECTIONS] = "max_connections",
	[G_BUFFER_SIZE] = "buffer_size",
	[G_UDP_IDLE_TIMEOUT] = "udp_idle_timeout",
	[G_MAX_UDP_SESSIONS] = "max_udp_sessions",
	[G_UDP_BUFFER] = "udp_buffer",
};

struct cfg_error {
	int line; /* 0 = about the whole file */
	int n;	  /* strlen(text) */
	size_t seq;
	char *text; /* "path:line: message\n" */
};

struct parser {
	const char *path;
	char *dir; /* resolves relative @file paths */
	const char *text;
	size_t len, pos;
	int lineno;
	bool nomem;

	struct cfg *cfg;
	size_t cap_sections, cap_outbounds, cap_rules;
	size_t *ob_section; /* outbound i -> index of its section (sections move while growing) */
	size_t *kv_cap;	    /* allocated kv entries of section i */
	long cur;	    /* current section index, or SEC_* */
	long cur_ob;	    /* current outbound index, or -1 */
	long sec_global, sec_route;
	long sec_dns;	/* [dns], or -3 while there is none */
	long sec_sniff;	/* [sniff], or -3 while there is none */
	int sseen[3];	/* line of each [sniff] key (plugins, timeout, cache) */
	int dseen[7];	/* line of each core [dns] key (dns_keys order) */

	int gseen[G__COUNT]; /* line of each [global] key, 0 = not set */
	uint32_t next_rule_id;
	int fallback_line;
	bool value_is_comment; /* the current line's value is only a comment */
	struct group_set *groups; /* [group.*], while finish() checks route targets */

	struct cfg_error *errv; /* min(n_errors, CFG_ERRORS_MAX) of them */
	size_t n_errors;
};

static void add_error(struct parser *ps, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void add_error(struct parser *ps, int line, const char *fmt, ...)
{
	struct cfg_error *e;
	char msg[1024];
	va_list ap;

	ps->n_errors++;
	if (ps->n_errors > CFG_ERRORS_MAX)
		return; /* counted; summarised at the end */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e = realloc(ps->errv, ps->n_errors * sizeof(*e));
	if (!e) {
		ps->n_errors--;
		ps->nomem = true;
		return;
	}
	ps->errv = e;
	e = &ps->errv[ps->n_errors - 1];
	e->line = line;
	e->seq = ps->n_errors;
	if (line > 0)
		e->n = asprintf(&e->text, "%s:%d: %s\n", ps->path, line, msg);
	else
		e->n = asprintf(&e->text, "%s: %s\n", ps->path, msg);
	if (e->n < 0) {
		e->text = NULL;
		ps->nomem = true;
		return;
	}
	/* one error, one line: a stray CR or control byte quoted from the file must not break
	 * the "file:line: message" format or reach a terminal raw */
	for (int i = 0; i < e->n - 1; i++)
		if ((unsigned char)e->text[i] < 0x20 && e->text[i] != '\t')
			e->text[i] = '?';
}

/* In line order (whole-file errors last), each group in the order found. */
static int cmp_error(const void *a, const void *b)
{
	const struct cfg_error *x = a, *y = b;
	unsigned lx = x->line > 0 ? (unsigned)x->line : UINT_MAX;
	unsigned ly = y->line > 0 ? (unsigned)y->line : UINT_MAX;

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static char *join_errors(struct parser *ps)
{
	size_t n = ps->n_errors < CFG_ERRORS_MAX ? ps->n_errors : CFG_ERRORS_MAX;
	size_t len = 0, pos = 0;
	char *out;

	qsort(ps->errv, n, sizeof(*ps->errv), cmp_error);
	for (size_t i = 0; i < n; i++)
		len += ps->errv[i].text ? (size_t)ps->errv[i].n : 0;
	len += strlen(ps->path) + 64; /* the "more errors" line */
	out = malloc(len + 1);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (!ps->errv[i].text)
			continue;
		memcpy(out + pos, ps->errv[i].text, (size_t)ps->errv[i].n);
		pos += (size_t)ps->errv[i].n;
	}
	if (ps->n_errors > CFG_ERRORS_MAX)
		pos += (size_t)snprintf(out + pos, len + 1 - pos, "%s: %zu more errors not shown\n",
					ps->path, ps->n_errors - CFG_ERRORS_MAX);
	out[pos] = '\0';
	return out;
}

static void free_errors(struct parser *ps)
{
	size_t n = ps->n_errors < CFG_ERRORS_MAX ? ps->n_errors : CFG_ERRORS_MAX;

	for (size_t i = 0; ps->errv && i < n; i++)
		free(ps->errv[i].text);
	free(ps->errv);
	ps->errv = NULL;
}

static char *xstrdup(struct parser *ps, const char *s)
{
	char *d = strdup(s);

	if (!d)
		ps->nomem = true;
	return d;
}

static long add_section(struct parser *ps, const char *name, int line)
{
	struct cfg *cfg = ps->cfg;
	struct cfg_section *s;

	size_t cap = ps->cap_sections;

	if (array_grow(&cfg->sections, &ps->cap_sections, cfg->n_sections + 1, sizeof(*s))) {
		ps->nomem = true;
		return SEC_IGNORE;
	}
	if (ps->cap_sections != cap) {
		size_t *kc = realloc(ps->kv_cap, ps->cap_sections * sizeof(*kc));

		if (!kc) {
			ps->nomem = true;
			return SEC_IGNORE;
		}
		memset(kc + cap, 0, (ps->cap_sections - cap) * sizeof(*kc));
		ps->kv_cap = kc;
	}
	s = &cfg->sections[cfg->n_sections];
	s->name = xstrdup(ps, name);
	if (!s->name)
		return SEC_IGNORE;
	s->line = line;
	return (long)cfg->n_sections++;
}

/* [dns]: the core's keys; every other key is the DNS plugin's option, checked by the plugin
 * manager once the plugin is loaded (file:line errors there, as for [outbound.NAME]). */
static const char *const dns_keys[] = {"plugin",	   "strict",	       "grace",
				       "map_size",	   "query_timeout",    "tcp_idle_timeout",
				       "tcp_stall_timeout"};

bool cfg_dns_core_key(const char *key)
{
	for (size_t i = 0; i < sizeof(dns_keys) / sizeof(dns_keys[0]); i++)
		if (!strcmp(key, dns_keys[i]))
			return true;
	return false;
}

static void handle_dns(struct parser *ps, const char *key, const char *value)
{
	struct cfg_dns *d = &ps->cfg->dns;
	uint64_t v;
	bool b;
	int k = -1;

	for (int j = 0; j < (int)(sizeof(dns_keys) / sizeof(dns_keys[0])); j++)
		if (!strcmp(key, dns_keys[j]))
			k = j;
	if (k < 0)
		return; /* the plugin's */
	if (ps->dseen[k]) {
		add_error(ps, ps->lineno, "duplicate key '%s' in [dns] (first at line %d)", key,
			  ps->dseen[k]);
		return;
	}
	ps->dseen[k] = ps->lineno;
	switch (k) {
	case 0:
		if (!*value) {
			add_error(ps, ps->lineno, "[dns] plugin: empty (a plugin name or a .so path)");
			return;
		}
		free(d->plugin);
		d->plugin = xstrdup(ps, value);
		return;
	case 1:
		if (cfg_parse_bool(value, &b)) {
			add_error(ps, ps->lineno,
				  "[dns] strict: '%.64s' is not a boolean (yes/no, true/false, "
				  "on/off, 1/0)",
				  value);
			return;
		}
		d->strict = b;
		return;
	case 2:
		if (cfg_parse_duration_ms(value, &v) || v > 24ull * 3600 * 1000) {
			add_error(ps, ps->lineno,
				  "[dns] grace: '%.64s' is not a duration from 0 to 24h (250ms, 10s, "
				  "5m, 1h)",
				  value);
			return;
		}
		d->grace_ms = v;
		return;
	case 3:
		if (cfg_parse_u64(value, &v) || v < 16 || v > (1u << 24)) {
			add_error(ps, ps->lineno,
				  "[dns] map_size: '%.64s' is not a number from 16 to 16777216",
				  value);
			return;
		}
		d->map_size = (uint32_t)v;
		return;
	case 4:
	case 5:
	case 6: {
		static const uint64_t lo[] = { 100, 1000, 100 }, hi[] = { 600000, 3600000, 600000 };
		static const char *const range[] = { "100ms to 10m", "1s to 1h", "100ms to 10m" };

		if (cfg_parse_duration_ms(value, &v) || v < lo[k - 4] || v > hi[k - 4]) {
			add_error(ps, ps->lineno,
				  "[dns] %s: '%.64s' is not a duration from %s (250ms, 10s, 5m)",
				  key, value, range[k - 4]);
			return;
		}
		if (k == 4)
			d->query_timeout_ms = v;
		else if (k == 5)
			d->tcp_idle_ms = v;
		else
			d->tcp_stall_ms = v;
		return;
	}
	}
}

static bool valid_outbound_name(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > OUTBOUND_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && n[i] != '_' && n[i] != '-')
			return false;
	return true;
}

static bool reserved_name(const char *n)
{
	static const char *const reserved[] = {"DIRECT", "BLOCK", "INSPECT", "DNS", "REJECT"};

	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (!strcasecmp(n, reserved[i]))
			return true;
	return false;
}

static bool in_list(char **v, size_t n, const char *s);

/* [sniff]: plugins = tls, http, quic | timeout = 300ms | cache = yes */
static void handle_sniff(struct parser *ps, const char *key, const char *value)
{
	static const char *const keys[] = {"plugins", "timeout", "cache"};
	struct cfg_sniff *sn = &ps->cfg->sniff;
	uint64_t v;
	bool b;
	int k = -1;

	for (int j = 0; j < 3; j++)
		if (!strcmp(key, keys[j]))
			k = j;
	if (k < 0) {
		add_error(ps, ps->lineno,
			  "unknown key '%.64s' in [sniff] (expected plugins, timeout or cache)", key);
		return;
	}
	if (ps->sseen[k]) {
		add_error(ps, ps->lineno, "duplicate key '%s' in [sniff] (first at line %d)", key,
			  ps->sseen[k]);
		return;
	}
	ps->sseen[k] = ps->lineno;
	switch (k) {
	case 0: {
		char *copy = xstrdup(ps, value), *save = NULL;

		for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
		     t = strtok_r(NULL, ",", &save)) {
			char *e;

			while (*t == ' ' || *t == '\t')
				t++;
			e = t + strlen(t);
			while (e > t && (e[-1] == ' ' || e[-1] == '\t'))
				*--e = '\0';
			bool ok = *t && strlen(t) < 256;

			for (const char *q = t; ok && *q; q++)
				ok = isalnum((unsigned char)*q) || strchr("_-./", *q);
			if (!ok) {
				add_error(ps, ps->lineno,
					  "[sniff] plugins: '%.64s' is not a plugin name or .so path",
					  t);
				continue;
			}
			if (in_list(sn->plugins, sn->n_plugins, t)) {
				add_error(ps, ps->lineno, "[sniff] plugins: '%s' is listed twice", t);
				continue;
			}
			if (sn->n_plugins >= 16) {
				add_error(ps, ps->lineno, "[sniff] plugins: at most 16");
				break;
			}
			char **nv = realloc(sn->plugins, (sn->n_plugins + 1) * sizeof(*nv));

			if (!nv) {
				ps->nomem = true;
				break;
			}
			sn->plugins = nv;
			sn->plugins[sn->n_plugins] = xstrdup(ps, t);
			if (sn->plugins[sn->n_plugins])
				sn->n_plugins++;
		}
		free(copy);
		return;
	}
	case 1:
		if (cfg_parse_duration_ms(value, &v) || v < 1 || v > 60000) {
			add_error(ps, ps->lineno,
				  "[sniff] timeout: '%.64s' is not a duration from 1ms to 60s", value);
			return;
		}
		sn->timeout_ms = v;
		return;
	case 2:
		if (cfg_parse_bool(value, &b)) {
			add_error(ps, ps->lineno,
				  "[sniff] cache: '%.64s' is not a boolean (yes/no, true/false, "
				  "on/off, 1/0)",
				  value);
			return;
		}
		sn->cache = b;
		return;
	}
}

static void open_section(struct parser *ps, const char *name)
{
	struct cfg *cfg = ps->cfg;
	int line = ps->lineno;

	ps->cur = SEC_IGNORE;
	ps->cur_ob = -1;
	if (!strcmp(name, "global") || !strcmp(name, "route")) {
		long idx = !strcmp(name, "global") ? ps->sec_global : ps->sec_route;

		if (cfg->sections[idx].line) {
			add_error(ps, line, "duplicate section [%s] (first at line %d)", name,
				  cfg->sections[idx].line);
			return;
		}
		cfg->sections[idx].line = line;
		ps->cur = idx;
		return;
	}
	if (!strcmp(name, "sniff")) {
		if (ps->sec_sniff >= 0) {
			add_error(ps, line, "duplicate section [sniff] (first at line %d)",
				  cfg->sniff.line);
			return;
		}
		ps->sec_sniff = add_section(ps, name, line);
		if (ps->sec_sniff < 0) {
			ps->sec_sniff = -3;
			return;
		}
		cfg->sniff.present = true;
		cfg->sniff.line = line;
		ps->cur = ps->sec_sniff;
		return;
	}
	if (!strncmp(name, "sniff.", 6)) {
		/* one sniffer's options: raw keys, filled into the plugin's option table (and
		 * matched to a [sniff] plugins entry) by core/sniff.c */
		const char *sn = name + 6;
		bool ok = *sn && strlen(sn) <= 31;

		for (const char *q = sn; ok && *q; q++)
			ok = (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_' ||
			     *q == '-';
		if (!ok) {
			add_error(ps, line,
				  "invalid sniffer name in [%.64s] (expected a plugin name: 1-31 "
				  "characters a-z 0-9 _ -)",
				  name);
			return;
		}
		for (size_t i = 0; i < cfg->n_sections; i++) {
			if (!strcmp(cfg->sections[i].name, name)) {
				add_error(ps, line, "duplicate section [%s] (first at line %d)",
					  name, cfg->sections[i].line);
				return;
			}
		}
		long idx = add_section(ps, name, line);

		if (idx >= 0)
			ps->cur = idx;
		return;
	}
	if (!strcmp(name, "dns")) {
		if (ps->sec_dns >= 0) {
			add_error(ps, line, "duplicate section [dns] (first at line %d)",
				  cfg->dns.line);
			return;
		}
		ps->sec_dns = add_section(ps, name, line);
		if (ps->sec_dns < 0) {
			ps->sec_dns = -3;
			return;
		}
		cfg->dns.present = true;
		cfg->dns.line = line;
		ps->cur = ps->sec_dns;
		return;
	}
	if (!strncmp(name, "outbound.", 9) || !strcmp(name, "outbound")) {
		const char *ob = name[8] ? name + 9 : "";

		if (!*ob) {
			add_error(ps, line, "section [%s] needs a name: [outbound.NAME]", name);
			return;
		}
		if (!valid_outbound_name(ob)) {
			add_error(
				ps, line,
				"invalid outbound name '%s' (expected 1-%d characters A-Z a-z 0-9 "
				"_ -)",
				ob, OUTBOUND_NAME_MAX);
			return;
		}
		if (reserved_name(ob)) {
			add_error(ps, line,
				  "outbound name '%s' is reserved (DIRECT, BLOCK, INSPECT, DNS and "
				  "REJECT, in any case)",
				  ob);
			return;
		}
		if (cfg->n_outbounds >= OUTBOUNDS_MAX) {
			add_error(ps, line, "more than %d outbounds", OUTBOUNDS_MAX);
			return;
		}
		for (size_t i = 0; i < cfg->n_outbounds; i++) {
			if (!strcmp(cfg->outbounds[i].name, ob)) {
				add_error(ps, line, "duplicate section [%s] (first at line %d)",
					  name, cfg->outbounds[i].line);
				return;
			}
		}
		if (array_grow(&cfg->outbounds, &ps->cap_outbounds, cfg->n_outbounds + 1,
			 sizeof(*cfg->outbounds))) {
			ps->nomem = true;
			return;
		}
		size_t *obs = realloc(ps->ob_section, ps->cap_outbounds * sizeof(*obs));

		if (!obs) {
			ps->nomem = true;
			return;
		}
		ps->ob_section = obs;
		long idx = add_section(ps, name, line);

		if (idx < 0)
			return;
		struct cfg_outbound *o = &cfg->outbounds[cfg->n_outbounds];

		o->name = xstrdup(ps, ob);
		if (!o->name)
			return;
		o->line = line;
		ps->ob_section[cfg->n_outbounds] = (size_t)idx;
		ps->cur_ob = (long)cfg->n_outbounds++;
		ps->cur = idx;
		return;
	}
	if (!strncmp(name, "group.", 6)) {
		/* raw keys: core/group.c checks them (and the name) in finish() */
		long idx = add_section(ps, name, line);

		if (idx >= 0)
			ps->cur = idx;
		return;
	}
	add_error(ps, line, "unknown section [%s] (expected [global], [route] or [outbound.NAME])",
		  name);
}

/* ------------------------------------------------------------------------------------------ */
/* [global]                                                                                    */

static bool valid_ifname(const char *n, size_t max)
{
	size_t len = strlen(n);

	if (len == 0 || len > max || !strcmp(n, ".") || !strcmp(n, ".."))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)n[i];

		if (c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == ',')
			return false;
	}
	return true;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static int parse_devlist(struct parser *ps, const char *key, const char *value, char ***out,
			 size_t *n_out)
{
	char *copy = xstrdup(ps, value), *save = NULL;
	char **v = NULL;
	size_t n = 0;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
		if (!valid_ifname(tok, IFNAME_MAX)) {
			add_error(
				ps, ps->lineno,
				"%s: invalid device name '%.64s' (1-%d characters, no '/', ':' or "
				"spaces)",
				key, tok, IFNAME_MAX);
			rc = -EINVAL;
			continue;
		}
		bool dup = false;

		for (size_t i = 0; i < n; i++)
			dup |= !strcmp(v[i], tok);
		if (dup) {
			add_error(ps, ps->lineno, "%s: device '%s' is listed twice", key, tok);
			rc = -EINVAL;
			continue;
		}
		if (n >= XP_MAX_IFACES) {
			add_error(ps, ps->lineno, "%s: more than %d devices", key, XP_MAX_IFACES);
			rc = -EINVAL;
			break;
		}
		char **nv = realloc(v, (n + 1) * sizeof(*v));

		if (!nv || !(nv[n] = strdup(tok))) {
			if (nv)
				v = nv;
			ps->nomem = true;
			rc = -ENOMEM;
			break;
		}
		v = nv;
		n++;
	}
	free(copy);
	if (!rc && n == 0) {
		add_error(ps, ps->lineno,
			  "%s: no device names (expected names separated by spaces or commas)",
			  key);
		rc = -EINVAL;
	}
	if (rc) {
		free_strv(v, n);
		return rc;
	}
	*out = v;
	*n_out = n;
	return 0;
}

static void bad_value(struct parser *ps, const char *key, const char *value, const char *expected)
{
	add_error(ps, ps->lineno, "%s: invalid value '%.128s' (expected %s)", key, value, expected);
}

static int pick(const char *value, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(value, names[i]))
			return (int)i;
	return -1;
}

/* Integer key within [min, max]; `expected` describes the range in the message. */
static bool get_u64(struct parser *ps, const char *key, const char *value,
		    int (*fn)(const char *, uint64_t *), uint64_t min, uint64_t max,
		    const char *expected, uint64_t *out)
{
	uint64_t v;

	if (fn(value, &v) || v < min || v > max) {
		bad_value(ps, key, value, expected);
		return false;
	}
	*out = v;
	return true;
}

static void handle_global(struct parser *ps, const char *key, const char *value)
{
	static const char *const redirects[] = {"auto", "peer", "plain"};
	static const char *const fails[] = {"open", "closed"};
	static const char *const events[] = {"proxied", "all"};
	struct cfg_global *g = &ps->cfg->global;
	uint64_t v;
	int k = -1, i;

	for (int j = 0; j < G__COUNT; j++)
		if (!strcmp(key, gkey_names[j]))
			k = j;
	if (k < 0) {
		add_error(ps, ps->lineno, "unknown key '%.64s' in [global]", key);
		return;
	}
	if (ps->gseen[k]) {
		add_error(ps, ps->lineno, "duplicate key '%s' in [global] (first at line %d)", key,
			  ps->gseen[k]);
		return;
	}
	ps->gseen[k] = ps->lineno;

	switch ((enum gkey)k) {
	case G_LAN:
		parse_devlist(ps, key, value, &g->lan, &g->n_lan);
		break;
	case G_WAN:
		parse_devlist(ps, key, value, &g->wan, &g->n_wan);
		break;
	case G_REDIRECT:
		i = pick(value, redirects, 3);
		if (i < 0)
			bad_value(ps, key, value, "auto, peer or plain");
		else
			g->redirect = (enum cfg_redirect)i;
		break;
	case G_WORKERS:
		if (get_u64(ps, key, value, cfg_parse_u64, 0, XP_MAX_WORKERS,
			    "0-64; 0 = one per CPU", &v))
			g->workers = (unsigned)v;
		break;
	case G_MARK:
		if (get_u64(ps, key, value, cfg_parse_u64, 1, UINT32_MAX,
			    "a non-zero 32-bit value such as 0x7870", &v))
			g->mark = (uint32_t)v;
		break;
	case G_MARK_MASK:
		if (get_u64(ps, key, value, cfg_parse_u64, 1, UINT32_MAX,
			    "a non-zero 32-bit value such as 0xffffffff", &v))
			g->mark_mask = (uint32_t)v;
		break;
	case G_FAIL:
		i = pick(value, fails, 2);
		if (i < 0)
			bad_value(ps, key, value, "open or closed");
		else
			g->fail = (enum cfg_fail)i;
		break;
	case G_VETH:
		if (!valid_ifname(value, VETH_MAX)) {
			bad_value(ps, key, value,
				  "a device name of 1-13 characters, so that \"<veth>p\" fits");
			break;
		}
		free(g->veth);
		g->veth = xstrdup(ps, value);
		break;
	case G_FLOW_ENTRIES:
	case G_DST_ENTRIES:
	case G_CIDR_ENTRIES:
		if (get_u64(ps, key, value, cfg_parse_u64, 1024, 16u << 20, "1024-16777216", &v)) {
			if (k == G_FLOW_ENTRIES)
				g->flow_entries = (uint32_t)v;
			else if (k == G_DST_ENTRIES)
				g->dst_entries = (uint32_t)v;
			else
				g->cidr_entries = (uint32_t)v;
		}
		break;
	case G_RINGBUF_SIZE:
		if (cfg_parse_size(value, &v) || v < 4096 || v > (256u << 20) || (v & (v - 1)))
			bad_value(ps, key, value, "a power of two from 4k to 256m");
		else
			g->ringbuf_bytes = (uint32_t)v;
		break;
	case G_FLOW_EVENTS:
		i = pick(value, events, 2);
		if (i < 0)
			bad_value(ps, key, value, "all or proxied");
		else
			g->flow_events_all = i == 1;
		break;
	case G_LOG_LEVEL:
		i = strcmp(value, "") ? log_level_parse(value) : -EINVAL;
		if (i < 0 || strcmp(value, log_level_name(i)))
			bad_value(ps, key, value, "error, warn, info, debug or trace");
		else
			g->log_level = i;
		break;
	case G_PLUGIN_DIR:
		if (!*value) {
			bad_value(ps, key, value, "a directory");
			break;
		}
		free(g->plugin_dir);
		g->plugin_dir = xstrdup(ps, value);
		break;
	case G_SNIFF_TIMEOUT:
		if (get_u64(ps, key, value, cfg_parse_duration_ms, 1, 60000, "a duration, 1ms-60s",
			    &v))
			g->sniff_timeout_ms = v;
		break;
	case G_CONNECT_TIMEOUT:
		if (get_u64(ps, key, value, cfg_parse_duration_ms, 100, 600000,
			    "a duration, 100ms-10m", &v))
			g->connect_timeout_ms = v;
		break;
	case G_IDLE_TIMEOUT:
		if (get_u64(ps, key, value, cfg_parse_duration_ms, 1000, 7 * 24 * 3600000ull,
			    "a duration, 1s-168h", &v))
			g->idle_timeout_ms = v;
		break;
	case G_HALFCLOSE_TIMEOUT:
		if (get_u64(ps, key, value, cfg_parse_duration_ms, 1000, 24 * 3600000ull,
			    "a duration, 1s-24h", &v))
			g->halfclose_timeout_ms = v;
		break;
	case G_MAX_CONNECTIONS:
		if (get_u64(ps, key, value, cfg_parse_u64, 1, 4u << 20, "1-4194304", &v))
			g->max_connections = (uint32_t)v;
		break;
	case G_BUFFER_SIZE:
		if (get_u64(ps, key, value, cfg_parse_size, 4096, 16u << 20, "a size, 4k-16m", &v))
			g->buffer_bytes = (uint32_t)v;
		break;
	case G_UDP_IDLE_TIMEOUT:
		if (get_u64(ps, key, value, cfg_parse_duration_ms, 1000, 24 * 3600000ull,
			    "a duration, 1s-24h", &v))
			g->udp_idle_timeout_ms = v;
		break;
	case G_MAX_UDP_SESSIONS:
		if (get_u64(ps, key, value, cfg_parse_u64, 1, 4u << 20, "1-4194304", &v))
			g->max_udp_sessions = (uint32_t)v;
		break;
	case G_UDP_BUFFER:
		if (get_u64(ps, key, value, cfg_parse_size, 64u << 10, 256u << 20,
			    "a size, 64k-256m", &v))
			g->udp_buffer_bytes = (uint32_t)v;
		break;
	case G__COUNT:
		break;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* [route] and [outbound.NAME]                                                                 */

/* A rule error may span lines (one per bad line of an @file): each gets file:line. */
static void add_rule_errors(struct parser *ps, const char *what, const char *msg)
{
	const char *p = msg;

	if (!*p) {
		add_error(ps, ps->lineno, "%s: invalid", what);
		return;
	}
	while (*p) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);

		if (len > 0)
			add_error(ps, ps->lineno, "%.*s", len, p);
		p += len + (nl ? 1 : 0);
	}
}

static void handle_route(struct parser *ps, const char *key, const char *value)
{
	struct rule_list *rl = &ps->cfg->route;
	char *err;
	struct rule r;
	int rc;

	if (strcmp(key, "rule") && strcmp(key, "fallback")) {
		add_error(ps, ps->lineno,
			  "unknown key '%.64s' in [route] (expected rule or fallback)", key);
		return;
	}
	err = malloc(RULE_ERR_MAX);
	if (!err) {
		ps->nomem = true;
		return;
	}
	if (!strcmp(key, "fallback")) {
		if (ps->fallback_line) {
			add_error(ps, ps->lineno, "more than one fallback (first at line %d)",
				  ps->fallback_line);
			goto out;
		}
		ps->fallback_line = ps->lineno;
		rc = rule_parse(value, true, ps->dir, &r, err, RULE_ERR_MAX);
		if (rc == -ENOMEM)
			ps->nomem = true;
		if (rc) {
			add_rule_errors(ps, "fallback", err);
			goto out;
		}
		rule_free(&rl->fallback);
		rl->fallback = r;
		rl->fallback.line = ps->lineno;
		rl->fallback.id = 0;
		goto out;
	}
	/* ids are positions among the rule lines, bad ones included, so they match the file */
	uint32_t id = ++ps->next_rule_id;

	rc = rule_parse(value, false, ps->dir, &r, err, RULE_ERR_MAX);
	if (rc == -ENOMEM)
		ps->nomem = true;
	if (rc) {
		add_rule_errors(ps, "rule", err);
		goto out;
	}
	r.line = ps->lineno;
	r.id = id;
	if (array_grow(&rl->rules, &ps->cap_rules, rl->n + 1, sizeof(r))) {
		rule_free(&r);
		ps->nomem = true;
		goto out;
	}
	rl->rules[rl->n++] = r;
out:
	free(err);
}

/* `link = URI`: the link's plugin becomes the section's plugin and its options are appended to
 * the section on the link's line, so the plugin manager checks them like written ones. */
static void expand_link(struct parser *ps, struct cfg_outbound *o, const char *value)
{
	struct cfg_section *s = &ps->cfg->sections[ps->cur];
	struct link_out lo;
	char err[256];
	int rc;

	if (o->link_line) {
		add_error(ps, ps->lineno, "duplicate key 'link' in [outbound.%s] (first at line %d)",
			  o->name, o->link_line);
		return;
	}
	o->link_line = ps->lineno;
	rc = link_parse(value, &lo, err, sizeof(err));
	if (rc == -ENOMEM) {
		ps->nomem = true;
		return;
	}
	if (rc) {
		/* never echo the value: a link carries a password */
		add_error(ps, ps->lineno, "[outbound.%s] link: %s", o->name, err);
		return;
	}
	if (o->plugin && strcmp(o->plugin, lo.plugin)) {
		add_error(ps, ps->lineno,
			  "[outbound.%s] link is a %s link but 'plugin' says %s", o->name,
			  lo.plugin, o->plugin);
	} else if (!o->plugin) {
		o->plugin = xstrdup(ps, lo.plugin);
	}
	for (size_t i = 0; i < lo.n && !ps->nomem; i++) {
		if (array_grow(&s->kv, &ps->kv_cap[ps->cur], s->n_kv + 1, sizeof(*s->kv))) {
			ps->nomem = true;
			break;
		}
		s->kv[s->n_kv].key = xstrdup(ps, lo.kv[i].key);
		s->kv[s->n_kv].value = xstrdup(ps, lo.kv[i].value);
		s->kv[s->n_kv].line = ps->lineno;
		s->n_kv++;
	}
	link_out_free(&lo);
}

static void handle_outbound(struct parser *ps, struct cfg_outbound *o, const char *key,
			    const char *value, int first_line)
{
	size_t len = strlen(value);

	if (!strcmp(key, "link")) {
		expand_link(ps, o, value);
		return;
	}
	if (!strcmp(key, "udp_mapping")) {
		/* a core key: how UDP sessions through this outbound are keyed (udp.h) */
		if (!strcmp(value, "dependent") || !strcmp(value, "independent"))
			o->udp_independent = !strcmp(value, "independent");
		else
			bad_value(ps, key, value, "dependent or independent");
		return;
	}
	if (strcmp(key, "plugin"))
		return; /* plugin options: checked by the plugin manager */
	if (o->link_line && o->plugin) {
		if (strcmp(o->plugin, value))
			add_error(ps, ps->lineno,
				  "[outbound.%s] 'plugin' says %s but the link on line %d is a %s "
				  "link",
				  o->name, value, o->link_line, o->plugin);
		return;
	}
	if (first_line) {
		add_error(ps, ps->lineno,
			  "duplicate key 'plugin' in [outbound.%s] (first at line %d)", o->name,
			  first_line);
		return;
	}
	bool ok;

	if (strchr(value, '/')) {
		ok = len > 3 && !strcmp(value + len - 3, ".so");
	} else {
		ok = len > 0 && len <= 31;
		for (size_t i = 0; ok && i < len; i++)
			ok = isalnum((unsigned char)value[i]) || value[i] == '_' || value[i] == '-';
	}
	if (!ok) {
		bad_value(ps, key, value, "a plugin name, or a path to a .so file");
		o->plugin = xstrdup(ps, ""); /* present, so no second "missing plugin" error */
		return;
	}
	o->plugin = xstrdup(ps, value);
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
	struct parser *ps = user;
	struct cfg *cfg = ps->cfg;
	struct cfg_section *s;
	int first_line = 0;

	(void)section; /* we track sections ourselves: inih never sees a header */
	if (ps->value_is_comment)
		value = "";
	if (ps->cur == SEC_NONE) {
		add_error(ps, ps->lineno, "key '%.64s' outside of any section", name);
		return 1;
	}
	if (ps->cur == SEC_IGNORE)
		return 1;
	s = &cfg->sections[ps->cur];
	/* only "plugin" is non-repeatable in an outbound; [global] keeps its own record, and
	 * scanning every key would be quadratic for long [route] sections */
	if (ps->cur_ob >= 0 && !strcmp(name, "plugin"))
		for (size_t i = 0; i < s->n_kv && !first_line; i++)
			if (!strcmp(s->kv[i].key, name))
				first_line = s->kv[i].line;
	/* geometric growth: [route] may hold tens of thousands of lines */
	if (array_grow(&s->kv, &ps->kv_cap[ps->cur], s->n_kv + 1, sizeof(*s->kv))) {
		ps->nomem = true;
		return 1;
	}
	struct cfg_kv *kv = s->kv;

	kv[s->n_kv].key = xstrdup(ps, name);
	kv[s->n_kv].value = xstrdup(ps, value);
	kv[s->n_kv].line = ps->lineno;
	s->n_kv++;
	if (!kv[s->n_kv - 1].key || !kv[s->n_kv - 1].value)
		return 1;

	if (ps->cur == ps->sec_global) {
		handle_global(ps, name, value);
	} else if (ps->cur == ps->sec_route) {
		handle_route(ps, name, value);
	} else if (ps->cur == ps->sec_dns) {
		handle_dns(ps, name, value);
	} else if (ps->cur == ps->sec_sniff) {
		handle_sniff(ps, name, value);
	} else if (ps->cur_ob >= 0) {
		handle_outbound(ps, &cfg->outbounds[ps->cur_ob], name, value, first_line);
	}
	return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Line reader                                                                                 */

/*
 * Returns true when inih should see the line. Section headers are handled here (inih would
 * silently truncate long section names and never reports empty sections); lines inih would
 * reject are reported here with a useful message instead.
 */
static bool check_line(struct parser *ps, char *line)
{
	char *p = line;

	while (isspace((unsigned char)*p))
		p++;
	if (!*p || *p == ';' || *p == '#')
		return false;
	if (*p == '[') {
		char *close = strchr(p, ']'), *rest, *name, *e;

		if (!close) {
			add_error(ps, ps->lineno, "section header without a closing ']'");
			ps->cur = SEC_IGNORE;
			ps->cur_ob = -1;
			return false;
		}
		*close = '\0';
		rest = close + 1;
		while (isspace((unsigned char)*rest))
			rest++;
		if (*rest && *rest != ';' && *rest != '#') {
			add_error(ps, ps->lineno, "unexpected text '%.64s' after ']'", rest);
			ps->cur = SEC_IGNORE;
			ps->cur_ob = -1;
			return false;
		}
		name = p + 1;
		while (isspace((unsigned char)*name))
			name++;
		e = name + strlen(name);
		while (e > name && isspace((unsigned char)e[-1]))
			*--e = '\0';
		open_section(ps, name);
		return false;
	}
	/* the same scan inih does: the first '=' or ':' unless an inline comment comes first */
	bool was_space = false;
	char *q = p;

	while (*q && *q != '=' && *q != ':' && !(was_space && (*q == ';' || *q == '#'))) {
		was_space = isspace((unsigned char)*q);
		q++;
	}
	if (*q != '=' && *q != ':') {
		add_error(ps, ps->lineno, "expected 'key = value', '[section]' or a comment");
		return false;
	}
	if (q == p) {
		add_error(ps, ps->lineno, "missing key name before '%c'", *q);
		return false;
	}
	/* "key = ; comment": inih only sees an inline comment after whitespace inside the value,
	 * so one that starts the value would become the value */
	char *v = q + 1;

	while (*v == ' ' || *v == '\t')
		v++;
	ps->value_is_comment = v > q + 1 && (*v == ';' || *v == '#');
	return true;
}

static char *read_line(char *str, int num, void *stream)
{
	struct parser *ps = stream;
	const char *s, *nl;
	size_t len;

	if (ps->pos >= ps->len)
		return NULL;
	s = ps->text + ps->pos;
	nl = memchr(s, '\n', ps->len - ps->pos);
	len = nl ? (size_t)(nl - s) : ps->len - ps->pos;
	ps->pos += len + (nl ? 1 : 0);
	ps->lineno++;
	if (len && s[len - 1] == '\r')
		len--;
	if (ps->lineno == 1 && len >= 3 && !memcmp(s, "\xef\xbb\xbf", 3)) {
		s += 3; /* UTF-8 byte order mark, as some editors write it */
		len -= 3;
	}
	str[0] = '\0';
	if (memchr(s, '\0', len)) {
		add_error(ps, ps->lineno, "NUL byte in line");
		return str;
	}
	if (len > CFG_LINE_MAX || len + 1 > (size_t)num) {
		add_error(ps, ps->lineno, "line too long (%zu characters, max %d)", len,
			  CFG_LINE_MAX);
		return str;
	}
	memcpy(str, s, len);
	str[len] = '\0';
	if (!check_line(ps, str)) {
		str[0] = '\0';
		return str;
	}
	/* check_line only reads key lines, so str is still the untouched line */
	return str;
}

static char comment_prefixes[] = ";#";

static void ini_setup(void)
{
	ini_allow_multiline = false; /* an indented line is a line of its own */
	ini_allow_bom = false;	     /* the reader strips it */
	ini_start_comment_prefixes = comment_prefixes;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = comment_prefixes; /* after whitespace only */
	ini_use_stack = false;
	ini_max_line = CFG_LINE_MAX + 3;
	ini_initial_alloc = CFG_LINE_MAX + 3;
	ini_allow_realloc = false;
	ini_stop_on_first_error = false;
	ini_allow_no_value = false;
}

/* ------------------------------------------------------------------------------------------ */
/* Whole-config checks                                                                         */

static bool in_list(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void group_error(void *arg, int line, const char *msg)
{
	add_error(arg, line, "%s", msg);
}

/* names: the outbound names, sorted (NULL when that allocation failed: search linearly) */
static void check_target(struct parser *ps, const struct rule *r, const char *what,
			 const char **names)
{
	if (r->kind != RT_OUTBOUND)
		return;
	if (names ? bsearch(&r->target, names, ps->cfg->n_outbounds, sizeof(*names), cmp_name) !=
			    NULL
		  : cfg_outbound_find(ps->cfg, r->target) != NULL)
		return;
	if (group_find(ps->groups, r->target) >= 0)
		return;
	add_error(ps, r->line, "%s target '%s' has no [outbound.%s] section", what, r->target,
		  r->target);
}

static void finish(struct parser *ps)
{
	struct cfg *cfg = ps->cfg;
	struct cfg_global *g = &cfg->global;

	for (size_t i = 0; i < cfg->n_outbounds; i++) {
		cfg->outbounds[i].section = &cfg->sections[ps->ob_section[i]];
		if (!cfg->outbounds[i].plugin)
			add_error(ps, cfg->outbounds[i].line, "[outbound.%s] has no 'plugin' key",
				  cfg->outbounds[i].name);
	}
	if (group_set_parse(cfg, &ps->groups, group_error, ps) == -ENOMEM)
		ps->nomem = true;
	/* sorted names: thousands of rules times thousands of outbounds stays cheap */
	const char **names = cfg->n_outbounds ? malloc(cfg->n_outbounds * sizeof(*names)) : NULL;

	for (size_t i = 0; names && i < cfg->n_outbounds; i++)
		names[i] = cfg->outbounds[i].name;
	if (names)
		qsort(names, cfg->n_outbounds, sizeof(*names), cmp_name);
	for (size_t i = 0; i < cfg->route.n; i++) {
		check_target(ps, &cfg->route.rules[i], "rule", names);
		if (cfg->route.rules[i].kind == RT_DNS && !cfg->dns.present)
			add_error(ps, cfg->route.rules[i].line,
				  "rule target DNS needs a [dns] section (the plugin that answers)");
	}
	if (ps->sec_dns >= 0)
		cfg->dns.section = &cfg->sections[ps->sec_dns];
	check_target(ps, &cfg->route.fallback, "fallback", names);
	free(names);
	group_set_free(ps->groups);
	ps->groups = NULL;
	/* [sniff]: timeout (with [global] sniff_timeout as its deprecated alias), default list */
	if (ps->gseen[G_SNIFF_TIMEOUT] && ps->sseen[1])
		add_error(ps, ps->gseen[G_SNIFF_TIMEOUT],
			  "[global] sniff_timeout is the deprecated alias of [sniff] timeout (line "
			  "%d): set only the latter",
			  ps->sseen[1]);
	else if (ps->gseen[G_SNIFF_TIMEOUT])
		cfg->sniff.timeout_ms = g->sniff_timeout_ms, cfg->sniff.deprecated_alias = true;
	g->sniff_timeout_ms = cfg->sniff.timeout_ms;
	if (cfg->sniff.present && !ps->sseen[0]) {
		static const char *const defaults[] = {"tls", "http"};

		cfg->sniff.plugins = calloc(2, sizeof(*cfg->sniff.plugins));
		for (size_t i = 0; cfg->sniff.plugins && i < 2; i++)
			if ((cfg->sniff.plugins[i] = xstrdup(ps, defaults[i])))
				cfg->sniff.n_plugins++;
	}
	for (size_t i = 0; i < cfg->n_sections; i++)
		if (!strncmp(cfg->sections[i].name, "sniff.", 6) && !cfg->sniff.present)
			add_error(ps, cfg->sections[i].line,
				  "[%s] sets a sniffer's options, but there is no [sniff] section",
				  cfg->sections[i].name);
	/* with sniffers, domain rules send their flows to them in the kernel (INSPECT) */
	cfg->route.inspect_domains = cfg->sniff.present && cfg->sniff.n_plugins > 0;
	/* the domain index: matching cost independent of the number of domain rules */
	if (rule_list_index(&cfg->route))
		add_error(ps, cfg->sections[ps->sec_route].line, "out of memory indexing [route]");

	if (!g->n_lan && !g->n_wan && !ps->gseen[G_LAN] && !ps->gseen[G_WAN])
		add_error(ps, cfg->sections[ps->sec_global].line,
			  "neither lan nor wan is set in [global]: xproxy needs at least one "
			  "device to work on");
	for (size_t i = 0; i < g->n_wan; i++)
		if (in_list(g->lan, g->n_lan, g->wan[i]))
			add_error(ps, ps->gseen[G_WAN], "device '%s' is in both lan and wan",
				  g->wan[i]);
	if (g->veth && (in_list(g->lan, g->n_lan, g->veth) || in_list(g->wan, g->n_wan, g->veth)))
		add_error(ps, ps->gseen[G_VETH], "veth '%s' is also listed in lan or wan", g->veth);
	if ((g->mark & ~g->mark_mask) && (ps->gseen[G_MARK] || ps->gseen[G_MARK_MASK]))
		add_error(ps, ps->gseen[G_MARK] ? ps->gseen[G_MARK] : ps->gseen[G_MARK_MASK],
			  "mark 0x%x has bits outside mark_mask 0x%x", g->mark, g->mark_mask);
}

static void set_defaults(struct parser *ps)
{
	struct cfg_global *g = &ps->cfg->global;

	g->redirect = CFG_REDIRECT_AUTO;
	g->workers = 0;
	g->mark = 0x7870;
	g->mark_mask = 0xffffffff;
	g->fail = CFG_FAIL_OPEN;
	g->veth = xstrdup(ps, "xp0");
	g->flow_entries = 65536;
	g->dst_entries = 65536;
	g->cidr_entries = 65536;
	g->ringbuf_bytes = 1u << 20;
	g->flow_events_all = true;
	g->log_level = XP_LOG_INFO;
	g->plugin_dir = xstrdup(ps, XP_PLUGIN_DIR);
	g->sniff_timeout_ms = 300;
	g->connect_timeout_ms = 10 * 1000;
	g->idle_timeout_ms = 10 * 60 * 1000;
	g->halfclose_timeout_ms = 60 * 1000;
	g->max_connections = 65536;
	g->buffer_bytes = 1024 * 1024;
	g->udp_idle_timeout_ms = 60 * 1000;
	g->max_udp_sessions = 16384;
	g->udp_buffer_bytes = 4u << 20;

	ps->cfg->route.fallback.kind = RT_DIRECT;
	ps->cfg->route.fallback.target = xstrdup(ps, "DIRECT");
	ps->sec_global = add_section(ps, "global", 0);
	ps->sec_route = add_section(ps, "route", 0);
	ps->sec_dns = -3;
	ps->sec_sniff = -3;
	ps->cfg->sniff.timeout_ms = 300;
	ps->cfg->sniff.cache = true;
	ps->cfg->dns.plugin = xstrdup(ps, "dns");
	ps->cfg->dns.strict = true;
	ps->cfg->dns.grace_ms = 60 * 1000;
	ps->cfg->dns.map_size = 65536;
	ps->cfg->dns.query_timeout_ms = 10 * 1000;
	ps->cfg->dns.tcp_idle_ms = 30 * 1000;
	ps->cfg->dns.tcp_stall_ms = 10 * 1000;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

int cfg_parse(const char *path, const char *text, size_t len, struct cfg **out, char **errors)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct parser ps;
	int rc;

	if (errors)
		*errors = NULL;
	if (!out || (!text && len))
		return -EINVAL;
	*out = NULL;
	pthread_once(&once, ini_setup);
	memset(&ps, 0, sizeof(ps));
	ps.path = path ? path : "<config>";
	ps.text = text ? text : "";
	ps.len = len;
	ps.cur = SEC_NONE;
	ps.cur_ob = -1;
	ps.cfg = calloc(1, sizeof(*ps.cfg));
	ps.dir = dir_of(ps.path);
	if (!ps.cfg || !ps.dir) {
		rc = -ENOMEM;
		goto err_cfg;
	}
	ps.cfg->path = xstrdup(&ps, ps.path);
	set_defaults(&ps);
	if (ps.nomem) {
		rc = -ENOMEM;
		goto err_cfg;
	}

	rc = ini_parse_stream(read_line, &ps, ini_cb, &ps);
	if (rc == -2 || ps.nomem) {
		rc = -ENOMEM;
		goto err_cfg;
	}
	if (rc != 0) /* the reader filters every line inih could reject; report, don't trust */
		add_error(&ps, rc > 0 ? rc : 0, "syntax error");
	finish(&ps);
	if (ps.nomem) {
		rc = -ENOMEM;
		goto err_cfg;
	}
	if (ps.n_errors) {
		rc = -EINVAL;
		goto err_cfg;
	}
	free_errors(&ps);
	free(ps.ob_section);
	free(ps.kv_cap);
	free(ps.dir);
	*out = ps.cfg;
	return 0;

err_cfg:
	if (errors) {
		if (rc == -ENOMEM || !(*errors = join_errors(&ps))) {
			if (asprintf(errors, "%s: out of memory\n", ps.path) < 0)
				*errors = NULL;
		}
	}
	free_errors(&ps);
	cfg_free(ps.cfg);
	free(ps.ob_section);
	free(ps.kv_cap);
	free(ps.dir);
	return rc;
}

int cfg_load(const char *path, struct cfg **out, char **errors)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd, rc;

	if (errors)
		*errors = NULL;
	if (!path || !out)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto err_msg;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto err_fd;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto err_fd;
	}
	/* read to EOF rather than trusting st_size (pipes, /proc, a file being rewritten) */
	for (size_t cap = 0;;) {
		if (len == cap) {
			char *nb;

			if (cap >= CFG_FILE_MAX) {
				rc = -EFBIG;
				goto err_fd;
			}
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				rc = -ENOMEM;
				goto err_fd;
			}
			buf = nb;
		}
		ssize_t n = read(fd, buf + len, cap - len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto err_fd;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	rc = cfg_parse(path, buf, len, out, errors);
	free(buf);
	return rc;

err_fd:
	close(fd);
	free(buf);
err_msg:
	if (errors) {
		const char *why = rc == -EFBIG ? "file is larger than 16 MiB" : strerror(-rc);

		if (asprintf(errors, "%s: cannot read: %s\n", path, why) < 0)
			*errors = NULL;
	}
	return rc;
}

void cfg_free(struct cfg *cfg)
{
	if (!cfg)
		return;
	struct cfg_global *g = &cfg->global;

	free_strv(g->lan, g->n_lan);
	free_strv(g->wan, g->n_wan);
	free(g->veth);
	free(g->plugin_dir);
	for (size_t i = 0; i < cfg->n_outbounds; i++) {
		free(cfg->outbounds[i].name);
		free(cfg->outbounds[i].plugin);
	}
	free(cfg->outbounds);
	free(cfg->dns.plugin);
	free_strv(cfg->sniff.plugins, cfg->sniff.n_plugins);
	rule_list_free(&cfg->route);
	for (size_t i = 0; i < cfg->n_sections; i++) {
		struct cfg_section *s = &cfg->sections[i];

		for (size_t j = 0; j < s->n_kv; j++) {
			free(s->kv[j].key);
			free(s->kv[j].value);
		}
		free(s->kv);
		free(s->name);
	}
	free(cfg->sections);
	free(cfg->path);
	free(cfg);
}

const struct cfg_section *cfg_section(const struct cfg *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_sections; i++)
		if (!strcmp(cfg->sections[i].name, name))
			return &cfg->sections[i];
	return NULL;
}

const char *cfg_get(const struct cfg *cfg, const char *section, const char *key)
{
	const struct cfg_section *s = cfg_section(cfg, section);

	if (!s || !key)
		return NULL;
	for (size_t i = s->n_kv; i > 0; i--)
		if (!strcmp(s->kv[i - 1].key, key))
			return s->kv[i - 1].value;
	return NULL;
}

const struct cfg_outbound *cfg_outbound_find(const struct cfg *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_outbounds; i++)
		if (!strcmp(cfg->outbounds[i].name, name))
			return &cfg->outbounds[i];
	return NULL;
}
