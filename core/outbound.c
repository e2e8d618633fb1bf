/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * outbound - the registry of [outbound.NAME] instances. See outbound.h.
 *
 * One table indexed by id: the name (set once, never changed or freed, so ids are stable and
 * never reused) and the live instance (swapped by outbounds_apply). Everything under one
 * mutex; outbound_get() holds it only to take a reference.
 */
#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "log.h"
#include "loop.h"
#include "outbound.h"

struct ob_slot {
	char *name;
	struct outbound *live; /* the registry's reference */
};

static pthread_mutex_t ob_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ob_slot *slots; /* [0] unused: OUTBOUND_ID_NONE */
static size_t n_slots;	      /* ids handed out + 1 */
static size_t cap_slots;

/* Under ob_lock. */
static int id_find(const char *name)
{
	for (size_t i = 1; i < n_slots; i++)
		if (!strcmp(slots[i].name, name))
			return (int)i;
	return -ENOENT;
}

int outbound_id(const char *name)
{
	int id;

	if (!name || !*name)
		return -EINVAL;
	pthread_mutex_lock(&ob_lock);
	id = id_find(name);
	if (id > 0)
		goto out;
	if (n_slots == 0)
		n_slots = 1;
	if (n_slots > OUTBOUND_ID_MAX) {
		id = -ENOSPC;
		goto out;
	}
	if (n_slots >= cap_slots) {
		size_t cap = cap_slots ? cap_slots * 2 : 16;
		struct ob_slot *v = realloc(slots, cap * sizeof(*v));

		if (!v) {
			id = -ENOMEM;
			goto out;
		}
		slots = v;
		cap_slots = cap;
	}
	slots[n_slots].name = strdup(name);
	if (!slots[n_slots].name) {
		id = -ENOMEM;
		goto out;
	}
	slots[n_slots].live = NULL;
	id = (int)n_slots++;
out:
	pthread_mutex_unlock(&ob_lock);
	return id;
}

int outbound_id_lookup(const char *name)
{
	int id;

	if (!name)
		return -EINVAL;
	pthread_mutex_lock(&ob_lock);
	id = id_find(name);
	pthread_mutex_unlock(&ob_lock);
	return id;
}

/* ------------------------------------------------------------------------------------------ */
/* Instances                                                                                    */

static void outbound_free(struct outbound *ob)
{
	if (ob->inst && ob->plugin->desc.instance_free)
		ob->plugin->desc.instance_free(ob->inst);
	if (ob->config)
		plug_config_free(ob->plugin, ob->config);
	free(ob->fingerprint);
	free(ob->name);
	free(ob);
}

static void outbound_free_post(void *arg)
{
	outbound_free(arg);
}

static bool on_main_thread(struct xp_loop *m)
{
	struct xp_loop *cur = loop_current();

	if (cur)
		return cur == m;
	/* Outside any running loop: the thread that made the main loop is the main thread. */
	return pthread_equal(pthread_self(), m->thread);
}

void outbound_put(struct outbound *ob)
{
	struct xp_loop *m;

	if (!ob)
		return;
	if (atomic_fetch_sub(&ob->refs, 1) != 1)
		return;
	/* instance_free belongs on the main thread (plugin.h). Without a main loop (tests, or
	 * a daemon already past its loop) nothing else runs plugin code: free here. */
	m = loop_main();
	if (m && !on_main_thread(m) && loop_post(m, outbound_free_post, ob) == 0)
		return;
	outbound_free(ob);
}

struct outbound *outbound_get(uint16_t id)
{
	struct outbound *ob = NULL;

	pthread_mutex_lock(&ob_lock);
	if (id != OUTBOUND_ID_NONE && id < n_slots) {
		ob = slots[id].live;
		if (ob)
			atomic_fetch_add(&ob->refs, 1);
	}
	pthread_mutex_unlock(&ob_lock);
	return ob;
}

struct outbound *outbound_get_by_name(const char *name)
{
	struct outbound *ob = NULL;
	int id;

	if (!name)
		return NULL;
	pthread_mutex_lock(&ob_lock);
	id = id_find(name);
	if (id > 0) {
		ob = slots[id].live;
		if (ob)
			atomic_fetch_add(&ob->refs, 1);
	}
	pthread_mutex_unlock(&ob_lock);
	return ob;
}

static _Atomic(outbound_resolver_fn) resolver;

void outbound_set_resolver(outbound_resolver_fn fn)
{
	atomic_store(&resolver, fn);
}

struct outbound *outbound_resolve(const char *name, struct ob_via *via)
{
	outbound_resolver_fn fn = atomic_load(&resolver);
	struct outbound *ob;

	memset(via, 0, sizeof(*via));
	ob = outbound_get_by_name(name);
	if (!ob && name && fn)
		ob = fn(name, via);
	return ob;
}

const char *outbound_name(uint16_t id)
{
	const char *name = NULL;

	pthread_mutex_lock(&ob_lock);
	if (id != OUTBOUND_ID_NONE && id < n_slots && slots[id].live)
		name = slots[id].name; /* never freed: valid even past the next apply */
	pthread_mutex_unlock(&ob_lock);
	return name;
}

/* ------------------------------------------------------------------------------------------ */
/* Apply                                                                                        */

static void errors_add(char **errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void errors_add(char **errors, const char *fmt, ...)
{
	size_t old = *errors ? strlen(*errors) : 0;
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	s = realloc(*errors, old + (size_t)n + 2);
	if (!s)
		return;
	va_start(ap, fmt);
	vsnprintf(s + old, (size_t)n + 1, fmt, ap);
	va_end(ap);
	s[old + (size_t)n] = '\n';
	s[old + (size_t)n + 1] = '\0';
	*errors = s;
}

/* "key=value\n" for every key, in file order: equal text means an unchanged section. */
static char *fingerprint(const struct cfg_section *sec)
{
	size_t len = 1;
	char *fp, *p;

	for (size_t i = 0; sec && i < sec->n_kv; i++)
		len += strlen(sec->kv[i].key) + strlen(sec->kv[i].value) + 2;
	fp = malloc(len);
	if (!fp)
		return NULL;
	p = fp;
	for (size_t i = 0; sec && i < sec->n_kv; i++)
		p += sprintf(p, "%s=%s\n", sec->kv[i].key, sec->kv[i].value);
	*p = '\0';
	return fp;
}

/* A new instance for `o`, or NULL with the reason appended to *errors. */
static struct outbound *instance_build(const struct cfg *cfg, const struct cfg_outbound *o,
				       uint16_t id, char *fp, struct plug_registry *reg,
				       const struct xp_host *host, char **errors)
{
	const char *file = cfg->path ? cfg->path : "<config>";
	struct plugin *p = NULL;
	struct outbound *ob;
	char err[256] = "";
	int ret;

	ret = plug_resolve(reg, o->plugin, &p, err, sizeof(err));
	if (ret < 0) {
		errors_add(errors, "%s:%d: [outbound.%s] plugin %s: %s", file, o->line, o->name,
			   o->plugin, err[0] ? err : strerror(-ret));
		goto err_fp;
	}
	if (!plug_has_kind(p, XP_KIND_OUTBOUND) || !p->desc.instance_new) {
		errors_add(errors, "%s:%d: [outbound.%s] plugin %s is not an outbound plugin", file,
			   o->line, o->name, p->name);
		goto err_fp;
	}
	ret = plug_init(p, host, err, sizeof(err));
	if (ret < 0) {
		errors_add(errors, "%s:%d: [outbound.%s] plugin %s: %s", file, o->line, o->name,
			   p->name, err[0] ? err : strerror(-ret));
		goto err_fp;
	}
	ob = calloc(1, sizeof(*ob));
	if (!ob)
		goto err_nomem;
	ob->name = strdup(o->name);
	if (!ob->name)
		goto err_ob;
	ob->id = id;
	ob->plugin = p;
	ob->ops = &p->outbound;
	ob->fingerprint = fp;
	ob->udp_independent = o->udp_independent;
	ob->handle.kind = HANDLE_INSTANCE;
	snprintf(ob->handle.name, sizeof(ob->handle.name), "outbound.%s", o->name);
	ob->handle.plugin = p;
	ob->handle.owner = ob;
	atomic_init(&ob->refs, 1);

	ret = plug_config_fill(p, file, o->section, &ob->config, errors);
	if (ret < 0) {
		ob->config = NULL; /* plug_config_fill reported it */
		goto err_ob_fp;
	}
	err[0] = '\0';
	ob->handle.last_error = err;
	ob->handle.last_error_len = sizeof(err);
	ret = p->desc.instance_new(p->state, host, &ob->handle, ob->config, &ob->inst);
	ob->handle.last_error = NULL;
	if (ret < 0) {
		ob->inst = NULL;
		errors_add(errors, "%s:%d: [outbound.%s] %s: %s", file, o->line, o->name, p->name,
			   err[0] ? err : strerror(-ret));
		goto err_ob_fp;
	}
	return ob;

err_ob_fp:
	/* outbound_free frees the fingerprint with it; the caller's copy is gone. */
	outbound_free(ob);
	return NULL;
err_ob:
	free(ob);
err_nomem:
	errors_add(errors, "%s:%d: [outbound.%s]: out of memory", file, o->line, o->name);
err_fp:
	free(fp);
	return NULL;
}

static struct cfg_kv internal_direct_kv[] = {
	{ .key = (char *)"plugin", .value = (char *)OUTBOUND_INTERNAL_DIRECT_PLUGIN },
};
static const struct cfg_section internal_direct_section = {
	.name = (char *)"outbound." OUTBOUND_INTERNAL_DIRECT,
	.kv = internal_direct_kv,
	.n_kv = 1,
};
static const struct cfg_outbound internal_direct = {
	.name = (char *)OUTBOUND_INTERNAL_DIRECT,
	.plugin = (char *)OUTBOUND_INTERNAL_DIRECT_PLUGIN,
	.section = &internal_direct_section,
};

int outbounds_apply(const struct cfg *cfg, struct plug_registry *reg, const struct xp_host *host,
		    char **errors)
{
	size_t n = cfg->n_outbounds;
	struct outbound **next = NULL, *retire_one;
	struct cfg_outbound *all = NULL;
	int *ids = NULL;
	char *dummy = NULL, **errs = errors ? errors : &dummy;
	int ret = 0;

	next = calloc(n + 1, sizeof(*next));
	ids = calloc(n + 1, sizeof(*ids));
	all = calloc(n + 1, sizeof(*all));
	if (!next || !ids || !all) {
		ret = -ENOMEM;
		goto out;
	}
	if (n)
		memcpy(all, cfg->outbounds, n * sizeof(*all));
	/* The core's own DIRECT: flows a sniffer or a late decision sends DIRECT are in userspace
	 * already and leave through it. It is an instance of the direct plugin with no options,
	 * never one of the user's (whose bind_interface or mark would misroute them). Users
	 * cannot name an outbound DIRECT (reserved). Skipped when no direct plugin is loaded. */
	if (reg && plug_registry_find(reg, OUTBOUND_INTERNAL_DIRECT_PLUGIN))
		all[n++] = internal_direct;

	/* Build everything first; the live set is untouched until all of it worked. */
	for (size_t i = 0; i < n; i++) {
		const struct cfg_outbound *o = &all[i];
		struct outbound *old;
		bool dup = false;
		char *fp;

		for (size_t j = 0; j < i && !dup; j++) {
			if (!strcmp(all[j].name, o->name)) {
				errors_add(errs,
					   "%s:%d: [outbound.%s] defined twice (first on line %d)",
					   cfg->path ? cfg->path : "<config>", o->line, o->name,
					   all[j].line);
				dup = true;
			}
		}
		if (dup) {
			ret = ret ? ret : -EINVAL;
			continue;
		}
		ids[i] = outbound_id(o->name);
		if (ids[i] < 0) {
			errors_add(errs, "%s:%d: [outbound.%s]: no id left (%s)",
				   cfg->path ? cfg->path : "<config>", o->line, o->name,
				   strerror(-ids[i]));
			ret = ret ? ret : -EINVAL;
			continue;
		}
		fp = fingerprint(o->section);
		if (!fp) {
			ret = -ENOMEM;
			break;
		}
		old = outbound_get((uint16_t)ids[i]);
		if (old && !strcmp(old->fingerprint, fp)) {
			next[i] = old; /* unchanged: keeps its instance (and this reference) */
			free(fp);
			continue;
		}
		outbound_put(old);
		next[i] = instance_build(cfg, o, (uint16_t)ids[i], fp, reg, host, errs);
		if (!next[i])
			ret = ret ? ret : -EINVAL;
	}
	if (ret)
		goto out;

	/* Swap: the registry's reference moves from the old live set to the new one. */
	pthread_mutex_lock(&ob_lock);
	for (size_t id = 1; id < n_slots; id++) {
		bool kept = false;

		for (size_t i = 0; i < n && !kept; i++)
			kept = (size_t)ids[i] == id;
		if (kept)
			continue;
		retire_one = slots[id].live;
		slots[id].live = NULL;
		if (retire_one) {
			pthread_mutex_unlock(&ob_lock);
			outbound_put(retire_one);
			pthread_mutex_lock(&ob_lock);
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct outbound *old = slots[ids[i]].live;

		slots[ids[i]].live = next[i];
		next[i] = NULL;
		/* Unchanged: `old` is next[i], whose extra reference (from outbound_get above)
		 * is the one to drop. Changed: the old instance loses the registry's. */
		if (old) {
			pthread_mutex_unlock(&ob_lock);
			outbound_put(old);
			pthread_mutex_lock(&ob_lock);
		}
	}
	pthread_mutex_unlock(&ob_lock);

out:
	if (ret == -ENOMEM)
		errors_add(errs, "%s: out of memory applying outbounds",
			   cfg->path ? cfg->path : "<config>");
	for (size_t i = 0; next && i < n; i++) {
		if (!next[i])
			continue;
		/* Not applied: a fresh instance is ours alone; a kept one only loses the
		 * reference taken above. */
		outbound_put(next[i]);
	}
	free(next);
	free(ids);
	free(all);
	free(dummy);
	return ret ? (ret == -ENOMEM ? -ENOMEM : -EINVAL) : 0;
}

void outbounds_clear(void)
{
	pthread_mutex_lock(&ob_lock);
	for (size_t id = 1; id < n_slots; id++) {
		struct outbound *ob = slots[id].live;

		slots[id].live = NULL;
		if (ob) {
			pthread_mutex_unlock(&ob_lock);
			outbound_put(ob);
			pthread_mutex_lock(&ob_lock);
		}
	}
	pthread_mutex_unlock(&ob_lock);
}
