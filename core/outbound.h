/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * outbound - the registry of [outbound.NAME] instances.
 *
 * Ids are what the datapath stores (xp_flow.outbound_id, rule verdicts). An id is given to a
 * name the first time the name is seen and never reused or changed for the daemon's lifetime,
 * so a flow classified just before a reload still finds its outbound. Instances are
 * reference-counted: a reload that changes a section's options creates a new instance for new
 * connections while connections in flight keep the old one until they close; the last
 * reference frees it on the main thread.
 */
#ifndef XP_OUTBOUND_H
#define XP_OUTBOUND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <xproxy/plugin.h>

#include "plug.h"

struct cfg;

#define OUTBOUND_ID_NONE 0
#define OUTBOUND_ID_MAX 0xfffe

struct outbound {
	char *name; /* NAME of [outbound.NAME] */
	uint16_t id;
	struct plugin *plugin;
	const struct xp_outbound_ops *ops; /* &plugin->outbound */
	void *config;			   /* filled option struct, owned */
	void *inst;			   /* the plugin's instance */
	struct xp_handle handle;	   /* "outbound.NAME" */
	atomic_int refs;		   /* the registry's + one per connection */
	char *fingerprint;		   /* the section's keys and values, to spot changes */
	/* statistics */
	atomic_uint_fast64_t conns, fails, bytes_up, bytes_down;
	bool udp_independent; /* [outbound.NAME] udp_mapping = independent (udp.h) */
};

/* The core's own instance of the direct plugin (no options), made by outbounds_apply()
 * whenever that plugin is loaded: what a flow decided DIRECT in userspace (by a sniffed name,
 * or at a sniff deadline) leaves through. The name is reserved, so no [outbound.*] has it. */
#define OUTBOUND_INTERNAL_DIRECT "DIRECT"
#define OUTBOUND_INTERNAL_DIRECT_PLUGIN "direct"

/* Stable id for a name (allocated on first use). -ENOSPC past OUTBOUND_ID_MAX. Thread-safe. */
int outbound_id(const char *name);
/* Id of a name already known, -ENOENT otherwise. Thread-safe. */
int outbound_id_lookup(const char *name);

/* Main thread. Make the live set match cfg's [outbound.*] sections: unchanged sections keep
 * their instance, changed ones get a new instance, removed ones are retired. Plugins are
 * resolved through `reg` and initialized with `host` on first use. On any error nothing
 * changes: -EINVAL with "file:line: ..." lines appended to *errors. */
int outbounds_apply(const struct cfg *cfg, struct plug_registry *reg, const struct xp_host *host,
		    char **errors);
/* Main thread: retire everything (shutdown). */
void outbounds_clear(void);

/* The [group.NAME]s a connection went through to reach its outbound, outermost first (ids
 * are the groups' outbound ids): a rule naming group A whose member B (a group) picked
 * outbound X gives {A, B}. n = 0: no group. Deeper nesting than OB_VIA_MAX keeps the first
 * OB_VIA_MAX and sets `more`. Group interrupts close a connection only when the group that
 * moved off X is on this path. */
#define OB_VIA_MAX 4
struct ob_via {
	uint16_t id[OB_VIA_MAX];
	uint8_t n;
	bool more;
};

/* The live instance for an id, with a reference; NULL if none. Thread-safe. */
struct outbound *outbound_get(uint16_t id);
struct outbound *outbound_get_by_name(const char *name);
/* A [route] target by name, referenced: an outbound, or else what the installed resolver
 * makes of it (a [group.NAME] picks a member and sets *via to the groups it went through).
 * via->n = 0 when no group picked it. Every place that routes by a rule's target uses this, so a group works
 * the same for kernel-routed, sniffed and DNS-named flows. */
typedef struct outbound *(*outbound_resolver_fn)(const char *name, struct ob_via *via);
void outbound_set_resolver(outbound_resolver_fn fn);
struct outbound *outbound_resolve(const char *name, struct ob_via *via);
/* Drop a reference; the last one frees the instance (instance_free runs on the main thread). */
void outbound_put(struct outbound *ob);
/* Name of a live id (for logs), or NULL. The string stays valid until the next apply. */
const char *outbound_name(uint16_t id);

#endif
