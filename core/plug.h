/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * plug - the plugin manager: loading shared objects, validating descriptors against the ABI
 * rules of sdk/include/xproxy/plugin.h, the registry of loaded plugins, and filling plugin
 * option structs from INI sections.
 *
 * Every refusal is one clear line naming the file and the reason, e.g.
 *   plugin build/plugins/foo.so: built for plugin ABI 2.0, this xproxyd speaks 1.0 (major differs)
 *   plugin ./bar.so: no symbol xp_plugin_query (not an xproxy plugin?)
 *   plugin ./baz.so: name "direct" is already taken by /usr/lib/xproxy/plugins/direct.so
 */
#ifndef XP_PLUG_H
#define XP_PLUG_H

#include <stdbool.h>
#include <stddef.h>

#include <xproxy/plugin.h>

struct cfg_section;

enum handle_kind {
	HANDLE_PLUGIN = 1,
	HANDLE_INSTANCE = 2,
};

/* The SDK's opaque xp_handle_t: says who is calling (for log prefixes, counters, ownership). */
struct xp_handle {
	enum handle_kind kind;
	char name[64]; /* log prefix: "direct" (plugin) or "outbound.hk" (instance) */
	struct plugin *plugin;
	void *owner; /* struct outbound * for HANDLE_INSTANCE */
	/* While the core creates an instance (instance_new): the last ERROR line the plugin logs
	 * through this handle is copied here, so the config error can say why, not just errno. */
	char *last_error;
	size_t last_error_len;
};

struct plugin {
	char *path;
	void *dl;
	char name[32];
	struct xp_plugin_desc desc; /* zero-extended copy; desc.name points to this->name */
	/* zero-extended copies of the kind tables (valid when the matching kind bit is set) */
	struct xp_outbound_ops outbound;
	struct xp_sniffer_ops sniffer;
	struct xp_dns_ops dns;
	struct xp_option *options; /* normalized copy of the option table */
	size_t n_options;
	void *state; /* from desc.init */
	bool initialized;
	struct xp_handle handle;
};

struct plug_registry {
	struct plugin **v;
	size_t n;
};

/* dlopen + query + validate. 0, or -errno with one line in err. */
int plug_load(const char *path, struct plugin **out, char *err, size_t errlen);
/* fini (when initialized) and dlclose. NULL is a no-op. */
void plug_unload(struct plugin *p);

/* Add a loaded plugin; -EEXIST (err filled) when its name is taken: the caller unloads it. */
int plug_registry_add(struct plug_registry *reg, struct plugin *p, char *err, size_t errlen);
/* Load every *.so in dir (sorted by name); each refusal is logged as one warning line and the
 * file skipped. Returns the number of plugins added, or -errno if dir cannot be read. */
int plug_registry_scan(struct plug_registry *reg, const char *dir);
struct plugin *plug_registry_find(const struct plug_registry *reg, const char *name);
void plug_registry_free(struct plug_registry *reg);

/* "NAME" -> registry lookup; "/path/x.so" or "./x.so" -> load (if not loaded yet) and add.
 * -ENOENT / -errno with one line in err. */
int plug_resolve(struct plug_registry *reg, const char *name_or_path, struct plugin **out,
		 char *err, size_t errlen);

/* Call desc.init once. -errno (err filled) if init fails. */
int plug_init(struct plugin *p, const struct xp_host *host, char *err, size_t errlen);

/* Fill a config struct (desc.config_size bytes, malloc'd) from `sec`: every key but "plugin"
 * must be one of the plugin's options; required options must be present; defaults applied.
 * Errors are appended to *errors as "file:line: [section] key: message" lines (secret values
 * are never echoed). 0 or -EINVAL / -ENOMEM. */
int plug_config_fill(const struct plugin *p, const char *file, const struct cfg_section *sec,
		     void **config, char **errors);
void plug_config_free(const struct plugin *p, void *config);

/* Does this plugin validate with the kind the section asks for? */
bool plug_has_kind(const struct plugin *p, uint32_t kind);

/* Copy an append-only ABI struct: min(src_size, dst_size) bytes, zero the rest; -E2BIG if
 * src_size > dst_size and any byte past dst_size is non-zero. */
int plug_abi_copy(void *dst, size_t dst_size, const void *src, size_t src_size);

#endif
