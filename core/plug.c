/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * plug - loading plugins, validating their descriptors, the registry, option tables.
 *
 * Nothing a plugin hands over is trusted: every struct is copied with plug_abi_copy() into
 * host-owned, zero-extended storage before any field is used, so a plugin built for an older
 * minor (shorter structs) reads as if the new fields were zero, and later code never has to
 * look at plugin memory again except through function pointers and strings.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "log.h"
#include "plug.h"

/*
 * The minor this host accepts up to. Only the ABI compatibility test overrides it, to play a
 * newer daemon loading an older plugin (there is no ABI older than 1.0 to build one with).
 */
#ifndef PLUG_HOST_ABI_MINOR
#define PLUG_HOST_ABI_MINOR XP_PLUGIN_ABI_MINOR
#endif

/*
 * The sizes of the ABI 1.0 structs: the least a plugin may hand over. When a minor appends
 * fields these must stay the 1.0 sizes (offsetof the first appended field), not sizeof.
 */
#define DESC_SIZE_1_0	  sizeof(struct xp_plugin_desc)
#define OUTBOUND_SIZE_1_0 sizeof(struct xp_outbound_ops)
#define SNIFFER_SIZE_1_0  sizeof(struct xp_sniffer_ops)
#define DNS_SIZE_1_0	  sizeof(struct xp_dns_ops)
#define OPTION_SIZE_1_0	  sizeof(struct xp_option)

/* The size, abi_major and abi_minor fields every descriptor of every ABI starts with. */
#define DESC_HEADER_SIZE 8

#define KNOWN_KINDS (XP_KIND_OUTBOUND | XP_KIND_SNIFFER | XP_KIND_DNS)
#define KNOWN_EVENTS_1_0                                                                           \
	(XP_EVENT_MASK(XP_EVENT_FLOW_NEW) | XP_EVENT_MASK(XP_EVENT_FLOW_END) |                     \
	 XP_EVENT_MASK(XP_EVENT_DROP))
/* ABI 1.2: FLOW_NAMED. A plugin built for an older minor cannot know the bit: set, it is junk. */
#define KNOWN_EVENTS (KNOWN_EVENTS_1_0 | XP_EVENT_MASK(XP_EVENT_FLOW_NAMED))
#define PLUG_LIST_MAX 1024 /* values of one XP_OPT_LIST key: a bound, not a design limit */
#define KNOWN_OPT_FLAGS	    (XP_OPT_REQUIRED | XP_OPT_SECRET)
#define KNOWN_OUTBOUND_CAPS (XP_OUTBOUND_TCP | XP_OUTBOUND_UDP)
#define KNOWN_SNIFF_CAPS    (XP_SNIFF_TCP | XP_SNIFF_UDP)

/* A table without its terminator would be read until something crashes; stop well before. */
#define MAX_OPTIONS 256
/* A config struct is a handful of fields; anything bigger is a corrupt descriptor. */
#define MAX_CONFIG_SIZE (1u << 20)
#define MAX_OPTION_NAME 63

/* Parsed option values, before they are stored in the plugin's struct. */
union optval {
	char *s;
	int64_t i;
	uint64_t u;
	int b;
	int e;
};

static int fmt_err(char *err, size_t errlen, const char *path, int rc, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* "plugin PATH: message" into err; returns rc so callers can `return fmt_err(...)`. */
static int fmt_err(char *err, size_t errlen, const char *path, int rc, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || !errlen)
		return rc;
	n = snprintf(err, errlen, "plugin %s: ", path);
	if (n < 0 || (size_t)n >= errlen)
		return rc;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
	return rc;
}

/*
 * Plugin-provided and user-provided text goes into one-line messages: cut it short and replace
 * anything that could break the line or the terminal.
 */
static const char *printable(const char *s, char *buf, size_t len)
{
	size_t i;

	if (!s)
		return "(null)";
	for (i = 0; s[i] && i + 1 < len; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	buf[i] = '\0';
	if (s[i] && len > 4)
		memcpy(buf + len - 4, "...", 4);
	return buf;
}

int plug_abi_copy(void *dst, size_t dst_size, const void *src, size_t src_size)
{
	const unsigned char *s = src;
	size_t i, n = src_size < dst_size ? src_size : dst_size;

	for (i = dst_size; i < src_size; i++)
		if (s[i])
			return -E2BIG;
	memcpy(dst, src, n);
	memset((unsigned char *)dst + n, 0, dst_size - n);
	return 0;
}

static bool valid_plugin_name(const char *s)
{
	size_t i;

	if (!s)
		return false;
	for (i = 0; s[i]; i++) {
		if (i >= sizeof(((struct plugin *)0)->name) - 1)
			return false;
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '-'))
			return false;
	}
	return i > 0;
}

/* INI keys: what a user can type on the left of '=' without surprises. */
static bool valid_option_name(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++) {
		if (i >= MAX_OPTION_NAME)
			return false;
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
			return false;
	}
	return i > 0;
}

static size_t opt_field_size(unsigned type)
{
	switch (type) {
	case XP_OPT_STRING:
	case XP_OPT_HOSTPORT:
		return sizeof(char *);
	case XP_OPT_INT:
		return sizeof(int64_t);
	case XP_OPT_BOOL:
	case XP_OPT_ENUM:
		return sizeof(int);
	case XP_OPT_DURATION:
	case XP_OPT_SIZE:
		return sizeof(uint64_t);
	case XP_OPT_LIST:
		return sizeof(char **);
	}
	return 0;
}

static bool opt_is_string(const struct xp_option *o)
{
	return o->type == XP_OPT_STRING || o->type == XP_OPT_HOSTPORT;
}

static bool opt_bounded(const struct xp_option *o)
{
	return (o->type == XP_OPT_INT || o->type == XP_OPT_DURATION || o->type == XP_OPT_SIZE) &&
	       (o->min || o->max);
}

/* Index of `s` in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *s)
{
	size_t len = strlen(s);
	const char *c = choices;
	int i = 0;

	for (;;) {
		const char *end = strchr(c, '|');
		size_t n = end ? (size_t)(end - c) : strlen(c);

		if (n == len && !memcmp(c, s, n))
			return i;
		if (!end)
			return -1;
		c = end + 1;
		i++;
	}
}

static bool choices_ok(const char *choices)
{
	const char *c;

	if (!choices || !*choices)
		return false;
	/* no empty alternative: not at either end, never two bars in a row */
	if (choices[0] == '|' || choices[strlen(choices) - 1] == '|')
		return false;
	for (c = choices; *c; c++)
		if (c[0] == '|' && c[1] == '|')
			return false;
	return true;
}

/*
 * Parse one value for option `o`. On failure writes a message without the key into msg; the
 * value itself is only quoted when the option is not secret.
 */
static int parse_value(const struct xp_option *o, const char *s, union optval *v, char *msg,
		       size_t msglen)
{
	char pbuf[72], shown[80];
	bool in_range = true;
	bool b;

	if (o->flags & XP_OPT_SECRET)
		snprintf(shown, sizeof(shown), "the value (secret, not shown)");
	else
		snprintf(shown, sizeof(shown), "\"%s\"", printable(s, pbuf, sizeof(pbuf)));

	switch (o->type) {
	case XP_OPT_STRING:
	case XP_OPT_LIST: /* one value of the list */
		v->s = (char *)s; /* copied by the caller */
		return 0;
	case XP_OPT_HOSTPORT:
		if (cfg_parse_hostport(s)) {
			snprintf(msg, msglen, "%s is not host:port or [v6]:port", shown);
			return -EINVAL;
		}
		v->s = (char *)s;
		return 0;
	case XP_OPT_BOOL:
		if (cfg_parse_bool(s, &b)) {
			snprintf(msg, msglen,
				 "%s is not a boolean (yes/no, true/false, on/off, 1/0)", shown);
			return -EINVAL;
		}
		v->b = b;
		return 0;
	case XP_OPT_ENUM:
		v->e = choice_index(o->choices, s);
		if (v->e < 0) {
			snprintf(msg, msglen, "%s is not one of %s", shown, o->choices);
			return -EINVAL;
		}
		return 0;
	case XP_OPT_INT:
		if (cfg_parse_i64(s, &v->i)) {
			snprintf(msg, msglen, "%s is not an integer", shown);
			return -EINVAL;
		}
		if (opt_bounded(o) && (v->i < o->min || v->i > o->max)) {
			snprintf(msg, msglen, "%s is out of range [%" PRId64 ", %" PRId64 "]",
				 shown, o->min, o->max);
			return -ERANGE;
		}
		return 0;
	case XP_OPT_DURATION:
	case XP_OPT_SIZE:
		if (o->type == XP_OPT_DURATION ? cfg_parse_duration_ms(s, &v->u)
					       : cfg_parse_size(s, &v->u)) {
			snprintf(msg, msglen, "%s is not a %s", shown,
				 o->type == XP_OPT_DURATION ? "duration (250ms, 10s, 5m, 1h)"
							    : "size (512, 64k, 4m, 1g)");
			return -EINVAL;
		}
		if (opt_bounded(o))
			in_range = v->u <= INT64_MAX && (int64_t)v->u >= o->min &&
				   (int64_t)v->u <= o->max;
		if (!in_range) {
			snprintf(msg, msglen, "%s is out of range [%" PRId64 "%s, %" PRId64 "%s]",
				 shown, o->min, o->type == XP_OPT_DURATION ? "ms" : "", o->max,
				 o->type == XP_OPT_DURATION ? "ms" : "");
			return -ERANGE;
		}
		return 0;
	}
	snprintf(msg, msglen, "unknown option type %u", o->type);
	return -EINVAL;
}

/* Copy and check the option table; p->options gets a NULL-terminated normalized copy. */
static int load_options(struct plugin *p, const char *path, char *err, size_t errlen)
{
	const struct xp_plugin_desc *d = &p->desc;
	const unsigned char *base = (const void *)d->options;
	char nbuf[72], dbuf[72], msg[256];
	union optval v;
	size_t i, j, n = 0;

	if (d->config_size > MAX_CONFIG_SIZE)
		return fmt_err(err, errlen, path, -EINVAL, "config_size %u is implausibly large",
			       d->config_size);
	if (!base) {
		p->options = calloc(1, sizeof(*p->options));
		return p->options ? 0 : -ENOMEM;
	}
	if (d->option_size < OPTION_SIZE_1_0)
		return fmt_err(err, errlen, path, -EINVAL,
			       "option_size %u is smaller than ABI 1.0's %zu", d->option_size,
			       OPTION_SIZE_1_0);
	for (n = 0; n < MAX_OPTIONS; n++) {
		const char *name;

		/* the name is the first field of every option version */
		memcpy(&name, base + n * d->option_size, sizeof(name));
		if (!name)
			break;
	}
	if (n == MAX_OPTIONS)
		return fmt_err(err, errlen, path, -EINVAL,
			       "option table has no end (no NULL name in %d entries)", MAX_OPTIONS);

	p->options = calloc(n + 1, sizeof(*p->options));
	if (!p->options)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct xp_option *o = &p->options[i];
		const char *on;

		if (plug_abi_copy(o, sizeof(*o), base + i * d->option_size, d->option_size))
			return fmt_err(
				err, errlen, path, -EINVAL,
				"option %zu carries non-zero bytes past the %zu this xproxyd "
				"knows",
				i, sizeof(*o));
		on = printable(o->name, nbuf, sizeof(nbuf));
		if (!valid_option_name(o->name))
			return fmt_err(err, errlen, path, -EINVAL,
				       "option \"%s\": bad name (want [A-Za-z0-9_.-]{1,%d})", on,
				       MAX_OPTION_NAME);
		if (!strcmp(o->name, "plugin"))
			return fmt_err(
				err, errlen, path, -EINVAL,
				"option \"plugin\": reserved (the key that names the plugin)");
		for (j = 0; j < i; j++)
			if (!strcmp(p->options[j].name, o->name))
				return fmt_err(err, errlen, path, -EINVAL,
					       "option \"%s\" is declared twice", on);
		if (!opt_field_size(o->type))
			return fmt_err(err, errlen, path, -EINVAL, "option \"%s\": unknown type %u",
				       on, o->type);
		if (o->flags & ~KNOWN_OPT_FLAGS)
			return fmt_err(err, errlen, path, -EINVAL,
				       "option \"%s\": unknown flags 0x%x", on,
				       o->flags & ~KNOWN_OPT_FLAGS);
		if ((uint64_t)o->offset + opt_field_size(o->type) > d->config_size)
			return fmt_err(err, errlen, path, -EINVAL,
				       "option \"%s\": field at offset %u (%zu bytes) is beyond "
				       "config_size %u",
				       on, o->offset, opt_field_size(o->type), d->config_size);
		if ((o->flags & XP_OPT_REQUIRED) && o->def)
			return fmt_err(err, errlen, path, -EINVAL,
				       "option \"%s\": required options cannot have a default", on);
		if (o->type == XP_OPT_ENUM && !choices_ok(o->choices))
			return fmt_err(err, errlen, path, -EINVAL,
				       "option \"%s\": enum without valid choices (want \"a|b|c\")",
				       on);
		if (opt_bounded(o) && o->min > o->max)
			return fmt_err(err, errlen, path, -EINVAL,
				       "option \"%s\": min %" PRId64 " > max %" PRId64, on, o->min,
				       o->max);
		if (o->def && parse_value(o, o->def, &v, msg, sizeof(msg)))
			return fmt_err(err, errlen, path, -EINVAL,
				       "option \"%s\": default \"%s\" does not parse: %s", on,
				       printable(o->def, dbuf, sizeof(dbuf)), msg);
	}
	p->n_options = n;
	return 0;
}

/* Copy one kind's ops table, checking its size. */
static int copy_ops(void *dst, size_t known, size_t min, const void *src, const char *what,
		    const char *path, char *err, size_t errlen)
{
	uint32_t size;

	if (!src)
		return fmt_err(err, errlen, path, -EINVAL, "kind %s without its %s ops table", what,
			       what);
	memcpy(&size, src, sizeof(size));
	if (size < min)
		return fmt_err(err, errlen, path, -EINVAL,
			       "%s ops size %u is smaller than ABI 1.0's %zu", what, size, min);
	if (plug_abi_copy(dst, known, src, size))
		return fmt_err(err, errlen, path, -EINVAL,
			       "%s ops size %u carries non-zero bytes past the %zu this xproxyd "
			       "knows",
			       what, size, known);
	return 0;
}

/* Everything about the (already copied) descriptor except the header and options. */
static int check_desc(struct plugin *p, const char *path, char *err, size_t errlen)
{
	struct xp_plugin_desc *c = &p->desc;
	char nbuf[48];
	int rc;

	if (!valid_plugin_name(c->name))
		return fmt_err(err, errlen, path, -EINVAL,
			       "bad name \"%s\" (want [a-z0-9_-]{1,31})",
			       printable(c->name, nbuf, sizeof(nbuf)));
	if (c->kinds & ~KNOWN_KINDS)
		return fmt_err(err, errlen, path, -EINVAL,
			       "unknown kinds 0x%x (this xproxyd knows outbound, sniffer, dns)",
			       c->kinds & ~KNOWN_KINDS);
	uint32_t known_events = c->abi_minor >= 2 ? KNOWN_EVENTS : KNOWN_EVENTS_1_0;

	if (c->event_mask & ~known_events)
		return fmt_err(err, errlen, path, -EINVAL, "unknown event_mask bits 0x%x",
			       c->event_mask & ~known_events);
	if (c->kinds && !c->instance_new)
		return fmt_err(err, errlen, path, -EINVAL, "has kinds but no instance_new");
	if (c->instance_new && !c->instance_free)
		return fmt_err(err, errlen, path, -EINVAL, "has instance_new but no instance_free");
	if (c->event_mask && !c->on_event)
		return fmt_err(err, errlen, path, -EINVAL, "has an event_mask but no on_event");

	if (c->kinds & XP_KIND_OUTBOUND) {
		rc = copy_ops(&p->outbound, sizeof(p->outbound), OUTBOUND_SIZE_1_0, c->outbound,
			      "outbound", path, err, errlen);
		if (rc)
			return rc;
		if (p->outbound.caps & ~KNOWN_OUTBOUND_CAPS)
			return fmt_err(err, errlen, path, -EINVAL,
				       "outbound caps has unknown bits 0x%x",
				       p->outbound.caps & ~KNOWN_OUTBOUND_CAPS);
		if ((p->outbound.caps & XP_OUTBOUND_TCP) && !p->outbound.tcp_connect)
			return fmt_err(err, errlen, path, -EINVAL,
				       "outbound with XP_OUTBOUND_TCP but no tcp_connect");
		if ((p->outbound.caps & XP_OUTBOUND_TCP) && !p->outbound.tcp_abort)
			return fmt_err(err, errlen, path, -EINVAL,
				       "outbound with XP_OUTBOUND_TCP but no tcp_abort");
		if ((p->outbound.caps & XP_OUTBOUND_UDP) &&
		    (!p->outbound.udp_open || !p->outbound.udp_send || !p->outbound.udp_close))
			return fmt_err(err, errlen, path, -EINVAL,
				       "outbound with XP_OUTBOUND_UDP but no udp_open, udp_send or "
				       "udp_close");
	}
	if (c->kinds & XP_KIND_SNIFFER) {
		rc = copy_ops(&p->sniffer, sizeof(p->sniffer), SNIFFER_SIZE_1_0, c->sniffer,
			      "sniffer", path, err, errlen);
		if (rc)
			return rc;
		if (p->sniffer.caps & ~KNOWN_SNIFF_CAPS)
			return fmt_err(err, errlen, path, -EINVAL,
				       "sniffer caps has unknown bits 0x%x",
				       p->sniffer.caps & ~KNOWN_SNIFF_CAPS);
		if (!p->sniffer.sniff)
			return fmt_err(err, errlen, path, -EINVAL, "sniffer without sniff");
	}
	if (c->kinds & XP_KIND_DNS) {
		rc = copy_ops(&p->dns, sizeof(p->dns), DNS_SIZE_1_0, c->dns, "dns", path, err,
			      errlen);
		if (rc)
			return rc;
		if (!p->dns.query)
			return fmt_err(err, errlen, path, -EINVAL, "dns without query");
	}
	/* the copy must only ever point at host-owned, validated tables */
	c->outbound = (c->kinds & XP_KIND_OUTBOUND) ? &p->outbound : NULL;
	c->sniffer = (c->kinds & XP_KIND_SNIFFER) ? &p->sniffer : NULL;
	c->dns = (c->kinds & XP_KIND_DNS) ? &p->dns : NULL;
	return 0;
}

/* Header, size and tail of the plugin's descriptor, then the copy into p->desc. */
static int copy_desc(struct plugin *p, const struct xp_plugin_desc *d, const char *path, char *err,
		     size_t errlen)
{
	uint32_t size;
	uint16_t major, minor;

	memcpy(&size, d, sizeof(size));
	if (size < DESC_HEADER_SIZE)
		return fmt_err(err, errlen, path, -EINVAL,
			       "descriptor size %u is smaller than ABI 1.0's %zu", size,
			       DESC_SIZE_1_0);
	/* version first: a descriptor of another ABI explains any other oddity */
	major = d->abi_major;
	minor = d->abi_minor;
	if (major != XP_PLUGIN_ABI_MAJOR)
		return fmt_err(err, errlen, path, -EPROTO,
			       "built for plugin ABI %u.%u, this xproxyd speaks %u.%u (major "
			       "differs)",
			       major, minor, XP_PLUGIN_ABI_MAJOR, PLUG_HOST_ABI_MINOR);
	if (minor > PLUG_HOST_ABI_MINOR)
		return fmt_err(err, errlen, path, -EPROTO,
			       "built for plugin ABI %u.%u, this xproxyd speaks %u.%u (plugin is "
			       "newer: upgrade xproxyd)",
			       major, minor, XP_PLUGIN_ABI_MAJOR, PLUG_HOST_ABI_MINOR);
	if (size < DESC_SIZE_1_0)
		return fmt_err(err, errlen, path, -EINVAL,
			       "descriptor size %u is smaller than ABI 1.0's %zu", size,
			       DESC_SIZE_1_0);
	if (plug_abi_copy(&p->desc, sizeof(p->desc), d, size))
		return fmt_err(err, errlen, path, -EINVAL,
			       "descriptor size %u carries non-zero bytes past the %zu this "
			       "xproxyd knows",
			       size, sizeof(p->desc));
	return 0;
}

/* dlerror() repeats the path we already print; drop it. */
static const char *strip_path(const char *msg, const char *path)
{
	size_t n = strlen(path);

	if (msg && !strncmp(msg, path, n) && msg[n] == ':' && msg[n + 1] == ' ')
		return msg + n + 2;
	return msg ? msg : "unknown dlopen error";
}

int plug_load(const char *path, struct plugin **out, char *err, size_t errlen)
{
	const struct xp_plugin_desc *d;
	xp_plugin_query_fn query;
	char dlpath[PATH_MAX];
	struct plugin *p;
	int rc;

	*out = NULL;
	/* without a slash dlopen() would search the library path instead of opening the file */
	if (snprintf(dlpath, sizeof(dlpath), "%s%s", strchr(path, '/') ? "" : "./", path) >=
	    (int)sizeof(dlpath))
		return fmt_err(err, errlen, path, -ENAMETOOLONG, "path too long");

	p = calloc(1, sizeof(*p));
	if (!p)
		return fmt_err(err, errlen, path, -ENOMEM, "out of memory");
	p->path = strdup(path);
	if (!p->path) {
		rc = fmt_err(err, errlen, path, -ENOMEM, "out of memory");
		goto err_free;
	}

	p->dl = dlopen(dlpath, RTLD_NOW | RTLD_LOCAL);
	if (!p->dl) {
		rc = fmt_err(err, errlen, path, -ENOEXEC, "cannot load: %s",
			     strip_path(dlerror(), dlpath));
		goto err_free;
	}
	query = (xp_plugin_query_fn)dlsym(p->dl, XP_PLUGIN_ENTRY_NAME);
	if (!query) {
		rc = fmt_err(err, errlen, path, -ENOEXEC,
			     "no symbol " XP_PLUGIN_ENTRY_NAME " (not an xproxy plugin?)");
		goto err_close;
	}
	d = query(XP_PLUGIN_ABI);
	if (!d) {
		rc = fmt_err(err, errlen, path, -EPROTO,
			     XP_PLUGIN_ENTRY_NAME "(%u.%u) returned no descriptor",
			     XP_PLUGIN_ABI_MAJOR, PLUG_HOST_ABI_MINOR);
		goto err_close;
	}
	rc = copy_desc(p, d, path, err, errlen);
	if (rc)
		goto err_close;
	rc = check_desc(p, path, err, errlen);
	if (rc)
		goto err_close;
	rc = load_options(p, path, err, errlen);
	if (rc == -ENOMEM)
		fmt_err(err, errlen, path, rc, "out of memory");
	if (rc)
		goto err_close;

	snprintf(p->name, sizeof(p->name), "%s", p->desc.name);
	p->desc.name = p->name;
	if (!p->desc.version)
		p->desc.version = "";
	if (!p->desc.summary)
		p->desc.summary = "";
	p->desc.options = p->options;
	p->desc.option_size = sizeof(struct xp_option);
	p->handle.kind = HANDLE_PLUGIN;
	snprintf(p->handle.name, sizeof(p->handle.name), "%s", p->name);
	p->handle.plugin = p;
	*out = p;
	return 0;

err_close:
	dlclose(p->dl);
err_free:
	free(p->options);
	free(p->path);
	free(p);
	return rc;
}

void plug_unload(struct plugin *p)
{
	if (!p)
		return;
	if (p->initialized && p->desc.fini)
		p->desc.fini(p->state);
	dlclose(p->dl);
	free(p->options);
	free(p->path);
	free(p);
}

int plug_init(struct plugin *p, const struct xp_host *host, char *err, size_t errlen)
{
	int rc;

	if (p->initialized)
		return 0;
	if (p->desc.init) {
		rc = p->desc.init(host, &p->handle, &p->state);
		if (rc) {
			/* a plugin returning a positive value still failed */
			rc = rc < 0 ? rc : -EINVAL;
			return fmt_err(err, errlen, p->path, rc, "init failed: %s", strerror(-rc));
		}
	}
	p->initialized = true;
	return 0;
}

bool plug_has_kind(const struct plugin *p, uint32_t kind)
{
	return kind && (p->desc.kinds & kind) == kind;
}

/* ---------------------------------------------------------------------------- registry */

struct plugin *plug_registry_find(const struct plug_registry *reg, const char *name)
{
	size_t i;

	for (i = 0; i < reg->n; i++)
		if (!strcmp(reg->v[i]->name, name))
			return reg->v[i];
	return NULL;
}

int plug_registry_add(struct plug_registry *reg, struct plugin *p, char *err, size_t errlen)
{
	struct plugin *old = plug_registry_find(reg, p->name);
	struct plugin **v;

	if (old)
		return fmt_err(err, errlen, p->path, -EEXIST, "name \"%s\" is already taken by %s",
			       p->name, old->path);
	v = realloc(reg->v, (reg->n + 1) * sizeof(*v));
	if (!v)
		return fmt_err(err, errlen, p->path, -ENOMEM, "out of memory");
	v[reg->n++] = p;
	reg->v = v;
	return 0;
}

void plug_registry_free(struct plug_registry *reg)
{
	size_t i;

	if (!reg)
		return;
	/* newest first: a later plugin may rely on an earlier one's library still being mapped */
	for (i = reg->n; i > 0; i--)
		plug_unload(reg->v[i - 1]);
	free(reg->v);
	reg->v = NULL;
	reg->n = 0;
}

/* The registered plugin loaded from the same file as `path` (any spelling), or NULL. */
static struct plugin *find_by_file(const struct plug_registry *reg, const char *path)
{
	char want[PATH_MAX], have[PATH_MAX];
	size_t i;

	if (!realpath(path, want))
		return NULL;
	for (i = 0; i < reg->n; i++)
		if (realpath(reg->v[i]->path, have) && !strcmp(want, have))
			return reg->v[i];
	return NULL;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_so(const char *name)
{
	size_t n = strlen(name);

	return n > 3 && !strcmp(name + n - 3, ".so");
}

int plug_registry_scan(struct plug_registry *reg, const char *dir)
{
	char **names = NULL, **nn, path[PATH_MAX], err[512];
	size_t i, n = 0;
	struct dirent *de;
	struct plugin *p;
	int rc, added = 0;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (!is_so(de->d_name))
			continue;
		nn = realloc(names, (n + 1) * sizeof(*names));
		if (!nn) {
			rc = -ENOMEM;
			goto err_names;
		}
		names = nn;
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			rc = -ENOMEM;
			goto err_names;
		}
		n++;
	}
	/* sorted, so which of two same-named plugins wins does not depend on the filesystem */
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);

	for (i = 0; i < n; i++) {
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path)) {
			log_warn("plugin %s/%s: path too long", dir, names[i]);
			continue;
		}
		if (find_by_file(reg, path)) {
			log_debug("plugin %s: already loaded", path);
			continue;
		}
		rc = plug_load(path, &p, err, sizeof(err));
		if (rc == -ENOMEM)
			goto err_names;
		if (rc) {
			log_warn("%s", err);
			continue;
		}
		rc = plug_registry_add(reg, p, err, sizeof(err));
		if (rc) {
			log_warn("%s", err);
			plug_unload(p);
			if (rc == -ENOMEM)
				goto err_names;
			continue;
		}
		log_debug("plugin %s: loaded %s %s", path, p->name, p->desc.version);
		added++;
	}
	rc = added;

err_names:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

static bool looks_like_path(const char *s)
{
	return strchr(s, '/') || is_so(s);
}

int plug_resolve(struct plug_registry *reg, const char *name_or_path, struct plugin **out,
		 char *err, size_t errlen)
{
	struct plugin *p;
	char known[256];
	size_t i, off = 0;
	int rc;

	*out = NULL;
	if (looks_like_path(name_or_path)) {
		p = find_by_file(reg, name_or_path);
		if (p) {
			*out = p;
			return 0;
		}
		rc = plug_load(name_or_path, &p, err, errlen);
		if (rc)
			return rc;
		rc = plug_registry_add(reg, p, err, errlen);
		if (rc) {
			plug_unload(p);
			return rc;
		}
		*out = p;
		return 0;
	}

	p = plug_registry_find(reg, name_or_path);
	if (p) {
		*out = p;
		return 0;
	}
	known[0] = '\0';
	for (i = 0; i < reg->n && off < sizeof(known); i++) {
		int w = snprintf(known + off, sizeof(known) - off, "%s%s", i ? ", " : "",
				 reg->v[i]->name);

		off += w > 0 ? (size_t)w : 0;
	}
	if (err && errlen) {
		char nbuf[48];

		snprintf(err, errlen, "plugin \"%s\": not found (loaded: %s)",
			 printable(name_or_path, nbuf, sizeof(nbuf)), reg->n ? known : "none");
	}
	return -ENOENT;
}

/* ---------------------------------------------------------------------------- options */

static int add_error(char **errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append one "...\n" line to *errors (NULL errors: only count). */
static int add_error(char **errors, const char *fmt, ...)
{
	size_t old = errors && *errors ? strlen(*errors) : 0;
	char *line, *buf;
	va_list ap;
	int n;

	if (!errors)
		return 0;
	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	buf = realloc(*errors, old + n + 2);
	if (!buf) {
		free(line);
		return -ENOMEM;
	}
	memcpy(buf + old, line, n);
	buf[old + n] = '\n';
	buf[old + n + 1] = '\0';
	*errors = buf;
	free(line);
	return 0;
}

static int find_option(const struct plugin *p, const char *key)
{
	size_t i;

	for (i = 0; i < p->n_options; i++)
		if (!strcmp(p->options[i].name, key))
			return (int)i;
	return -1;
}

/* XP_OPT_LIST: the field holds a NULL-terminated array (NULL until the first value); append a
 * copy of s. -E2BIG past PLUG_LIST_MAX values. */
static int list_append(unsigned char *field, const char *s)
{
	char **v, **nv;
	size_t n = 0;

	memcpy(&v, field, sizeof(v));
	while (v && v[n])
		n++;
	if (n >= PLUG_LIST_MAX)
		return -E2BIG;
	nv = realloc(v, (n + 2) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	memcpy(field, &nv, sizeof(nv));
	nv[n] = strdup(s);
	nv[n + 1] = NULL;
	return nv[n] ? 0 : -ENOMEM;
}

/* plugin.h: a list is never NULL; an empty one is { NULL }. */
static int list_ensure(unsigned char *field)
{
	char **v;

	memcpy(&v, field, sizeof(v));
	if (v)
		return 0;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	memcpy(field, &v, sizeof(v));
	return 0;
}

/* Store a parsed value at its offset (memcpy: the plugin's struct may pack fields tightly). */
static int store_value(const struct xp_option *o, void *config, const union optval *v)
{
	unsigned char *field = (unsigned char *)config + o->offset;
	char *s;

	switch (o->type) {
	case XP_OPT_STRING:
	case XP_OPT_HOSTPORT:
		s = strdup(v->s);
		if (!s)
			return -ENOMEM;
		memcpy(field, &s, sizeof(s));
		return 0;
	case XP_OPT_INT:
		memcpy(field, &v->i, sizeof(v->i));
		return 0;
	case XP_OPT_BOOL:
		memcpy(field, &v->b, sizeof(v->b));
		return 0;
	case XP_OPT_ENUM:
		memcpy(field, &v->e, sizeof(v->e));
		return 0;
	case XP_OPT_DURATION:
	case XP_OPT_SIZE:
		memcpy(field, &v->u, sizeof(v->u));
		return 0;
	case XP_OPT_LIST:
		return list_append(field, v->s);
	}
	return -EINVAL;
}

static void valid_keys(const struct plugin *p, char *buf, size_t len)
{
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = 0; i < p->n_options && off < len; i++) {
		int w = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", p->options[i].name);

		off += w > 0 ? (size_t)w : 0;
	}
}

int plug_config_fill(const struct plugin *p, const char *file, const struct cfg_section *sec,
		     void **config, char **errors)
{
	const struct cfg_kv **seen = NULL;
	char msg[256], kbuf[72], keys[1024];
	size_t i, bad = 0;
	union optval v;
	void *cfg;
	int rc = 0, idx;

	*config = NULL;
	/* never NULL, even without options: instance_new is promised a struct */
	cfg = calloc(1, p->desc.config_size ? p->desc.config_size : 1);
	if (!cfg)
		return -ENOMEM;
	if (p->n_options) {
		seen = calloc(p->n_options, sizeof(*seen));
		if (!seen) {
			rc = -ENOMEM;
			goto err_cfg;
		}
	}

	/* the user's keys in file order, so the errors come out in file order too */
	for (i = 0; i < sec->n_kv; i++) {
		const struct cfg_kv *kv = &sec->kv[i];
		const char *k = printable(kv->key, kbuf, sizeof(kbuf));

		if (!strcmp(kv->key, "plugin") || !strcmp(kv->key, "link") ||
		    !strcmp(kv->key, "udp_mapping"))
			continue; /* the core's keys (a link's options follow it as their own keys) */
		idx = find_option(p, kv->key);
		if (idx < 0) {
			valid_keys(p, keys, sizeof(keys));
			bad++;
			if (p->n_options)
				rc = add_error(errors, "%s:%d: [%s] %s: unknown option (valid: %s)",
					       file, kv->line, sec->name, k, keys);
			else
				rc = add_error(errors,
					       "%s:%d: [%s] %s: unknown option (plugin %s takes no "
					       "options)",
					       file, kv->line, sec->name, k, p->name);
		} else if (seen[idx] && p->options[idx].type != XP_OPT_LIST) {
			bad++;
			rc = add_error(errors, "%s:%d: [%s] %s: set twice (first at line %d)", file,
				       kv->line, sec->name, k, seen[idx]->line);
		} else {
			if (!seen[idx])
				seen[idx] = kv;
			if (parse_value(&p->options[idx], kv->value, &v, msg, sizeof(msg))) {
				bad++;
				rc = add_error(errors, "%s:%d: [%s] %s: %s", file, kv->line,
					       sec->name, k, msg);
			} else {
				rc = store_value(&p->options[idx], cfg, &v);
				if (rc == -E2BIG) {
					bad++;
					rc = add_error(errors,
						       "%s:%d: [%s] %s: more than %d values (first "
						       "at line %d)",
						       file, kv->line, sec->name, k, PLUG_LIST_MAX,
						       seen[idx]->line);
				}
			}
		}
		if (rc)
			goto err_seen;
	}

	/* then what the section left out: required ones are errors, the rest get defaults */
	for (i = 0; i < p->n_options; i++) {
		const struct xp_option *o = &p->options[i];

		if (seen[i])
			continue;
		if (o->flags & XP_OPT_REQUIRED) {
			bad++;
			rc = add_error(errors, "%s:%d: [%s] %s: required option missing", file,
				       sec->line, sec->name, o->name);
		} else if (o->def) {
			/* checked when the plugin was loaded: cannot fail here */
			rc = parse_value(o, o->def, &v, msg, sizeof(msg));
			if (!rc)
				rc = store_value(o, cfg, &v);
		}
		if (!rc && o->type == XP_OPT_LIST)
			rc = list_ensure((unsigned char *)cfg + o->offset);
		if (rc)
			goto err_seen;
	}
	if (bad) {
		rc = -EINVAL;
		goto err_seen;
	}
	free(seen);
	*config = cfg;
	return 0;

err_seen:
	free(seen);
err_cfg:
	plug_config_free(p, cfg);
	return rc;
}

void plug_config_free(const struct plugin *p, void *config)
{
	size_t i;

	if (!config)
		return;
	for (i = 0; i < p->n_options; i++) {
		const struct xp_option *o = &p->options[i];
		char *s;

		if (o->type == XP_OPT_LIST) {
			char **v;

			memcpy(&v, (unsigned char *)config + o->offset, sizeof(v));
			for (size_t j = 0; v && v[j]; j++)
				free(v[j]);
			free(v);
			continue;
		}
		if (!opt_is_string(o))
			continue;
		memcpy(&s, (unsigned char *)config + o->offset, sizeof(s));
		free(s);
	}
	free(config);
}
