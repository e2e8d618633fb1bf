/* SPDX-License-Identifier: GPL-2.0-only */
/* outbound: stable ids, reload semantics (keep / replace / retire), all-or-nothing apply,
 * reference counting and where the last reference frees an instance. Fake plugin structs and
 * hand-built configs; the real plug.c fills the option structs. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "loop.h"
#include "outbound.h"
#include "plug.h"

struct fake_config {
	int64_t level;
	const char *tag;
};

struct fake_inst {
	int64_t level;
	char tag[32];
	xp_handle_t *self;
};

static int n_init, n_new, n_free, n_new_fail;
static pthread_t freed_on;
static const struct xp_host fake_host = {.size = sizeof(struct xp_host)};

static int fake_init(const struct xp_host *host, xp_handle_t *self, void **state)
{
	n_init++;
	*state = &n_init;
	return 0;
}

static int fake_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			     const void *config, void **inst)
{
	const struct fake_config *cfg = config;
	struct fake_inst *fi;

	assert_ptr_equal(state, &n_init);
	assert_ptr_equal(host, &fake_host);
	if (cfg->level == 666) {
		n_new_fail++;
		return -EINVAL;
	}
	fi = calloc(1, sizeof(*fi));
	fi->level = cfg->level;
	if (cfg->tag)
		strncpy(fi->tag, cfg->tag, sizeof(fi->tag) - 1);
	fi->self = self;
	*inst = fi;
	n_new++;
	return 0;
}

static void fake_instance_free(void *inst)
{
	n_free++;
	freed_on = pthread_self();
	free(inst);
}

static int fake_connect(void *inst, xp_conn_t *conn, const struct xp_target *t, void **cctx)
{
	return -ENOSYS;
}

static struct xp_option fake_options[] = {
	{.name = "level",
	 .type = XP_OPT_INT,
	 .offset = offsetof(struct fake_config, level),
	 .def = "1"},
	{.name = "tag", .type = XP_OPT_STRING, .offset = offsetof(struct fake_config, tag)},
};

static struct plugin fake_plugin, sniff_plugin;
static struct plugin *plugins[2] = {&fake_plugin, &sniff_plugin};
static struct plug_registry reg = {.v = plugins, .n = 2};

static int group_setup(void **state)
{
	strcpy(fake_plugin.name, "fake");
	fake_plugin.path = "fake.so";
	fake_plugin.desc.name = fake_plugin.name;
	fake_plugin.desc.kinds = XP_KIND_OUTBOUND;
	fake_plugin.desc.config_size = sizeof(struct fake_config);
	fake_plugin.desc.init = fake_init;
	fake_plugin.desc.instance_new = fake_instance_new;
	fake_plugin.desc.instance_free = fake_instance_free;
	fake_plugin.outbound.size = sizeof(fake_plugin.outbound);
	fake_plugin.outbound.caps = XP_OUTBOUND_TCP;
	fake_plugin.outbound.tcp_connect = fake_connect;
	fake_plugin.options = fake_options;
	fake_plugin.n_options = 2;
	fake_plugin.handle.kind = HANDLE_PLUGIN;

	/* A plugin of another kind: naming it in [outbound.X] is an error. */
	strcpy(sniff_plugin.name, "sniffy");
	sniff_plugin.path = "sniffy.so";
	sniff_plugin.desc.name = sniff_plugin.name;
	sniff_plugin.desc.kinds = XP_KIND_SNIFFER;
	sniff_plugin.desc.instance_new = fake_instance_new;
	sniff_plugin.desc.instance_free = fake_instance_free;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Config builder                                                                               */

#define MAX_OB 8

struct conf {
	struct cfg cfg;
	struct cfg_outbound ob[MAX_OB];
	struct cfg_section sec[MAX_OB];
	struct cfg_kv kv[MAX_OB][4];
};

/* add(c, "name", "plugin", "level", "tag"); NULL leaves a key out. */
static void add(struct conf *c, const char *name, const char *plugin, const char *level,
		const char *tag)
{
	size_t i = c->cfg.n_outbounds++;
	struct cfg_section *s = &c->sec[i];
	int line = 10 * (int)(i + 1);

	assert_true(i < MAX_OB);
	c->cfg.path = "test.ini";
	c->cfg.outbounds = c->ob;
	s->name = malloc(64);
	snprintf(s->name, 64, "outbound.%s", name);
	s->line = line;
	s->kv = c->kv[i];
	s->kv[s->n_kv++] = (struct cfg_kv){"plugin", (char *)plugin, line + 1};
	if (level)
		s->kv[s->n_kv++] = (struct cfg_kv){"level", (char *)level, line + 2};
	if (tag)
		s->kv[s->n_kv++] = (struct cfg_kv){"tag", (char *)tag, line + 3};
	c->ob[i] = (struct cfg_outbound){.name = (char *)name, .plugin = (char *)plugin,
					 .line = line, .section = s};
}

static void conf_free(struct conf *c)
{
	for (size_t i = 0; i < c->cfg.n_outbounds; i++)
		free(c->sec[i].name);
}

static int apply(struct conf *c, char **errors)
{
	return outbounds_apply(&c->cfg, &reg, &fake_host, errors);
}

static struct fake_inst *inst_of(const char *name)
{
	struct outbound *ob = outbound_get_by_name(name);
	struct fake_inst *fi;

	if (!ob)
		return NULL;
	fi = ob->inst;
	outbound_put(ob);
	return fi;
}

/* ------------------------------------------------------------------------------------------ */

static void test_ids(void **state)
{
	int a = outbound_id("id-a"), b = outbound_id("id-b");

	assert_true(a > OUTBOUND_ID_NONE && a <= OUTBOUND_ID_MAX);
	assert_true(b > OUTBOUND_ID_NONE && b != a);
	assert_int_equal(outbound_id("id-a"), a);
	assert_int_equal(outbound_id_lookup("id-b"), b);
	assert_int_equal(outbound_id_lookup("id-none"), -ENOENT);
	assert_int_equal(outbound_id(""), -EINVAL);
	assert_null(outbound_get((uint16_t)a)); /* an id is not an instance */
	assert_null(outbound_get(OUTBOUND_ID_NONE));
	assert_null(outbound_get(OUTBOUND_ID_MAX));
	assert_null(outbound_name((uint16_t)a));
	outbound_put(NULL);
}

static void test_apply_keep_change_retire(void **state)
{
	struct conf c1 = {0}, c2 = {0}, c3 = {0};
	struct outbound *a, *b, *old_b, *b2;
	int id_a, id_b, frees;
	char *errors = NULL;

	n_init = n_new = n_free = 0;
	add(&c1, "a", "fake", "5", "hk");
	add(&c1, "b", "fake", NULL, NULL);
	assert_int_equal(apply(&c1, &errors), 0);
	assert_null(errors);
	assert_int_equal(n_init, 1);
	assert_int_equal(n_new, 2);

	id_a = outbound_id_lookup("a");
	id_b = outbound_id_lookup("b");
	assert_true(id_a > 0 && id_b > 0 && id_a != id_b);
	a = outbound_get((uint16_t)id_a);
	assert_non_null(a);
	assert_string_equal(a->name, "a");
	assert_int_equal(a->id, id_a);
	assert_ptr_equal(a->plugin, &fake_plugin);
	assert_ptr_equal(a->ops, &fake_plugin.outbound);
	assert_int_equal(a->handle.kind, HANDLE_INSTANCE);
	assert_string_equal(a->handle.name, "outbound.a");
	assert_ptr_equal(a->handle.owner, a);
	assert_ptr_equal(((struct fake_inst *)a->inst)->self, &a->handle);
	assert_int_equal(((struct fake_inst *)a->inst)->level, 5);
	assert_string_equal(((struct fake_inst *)a->inst)->tag, "hk");
	assert_int_equal(inst_of("b")->level, 1); /* the option's default */
	assert_string_equal(outbound_name((uint16_t)id_a), "a");
	assert_int_equal(atomic_load(&a->refs), 2); /* registry + ours */

	/* Same sections again: same instances, nothing built. */
	assert_int_equal(apply(&c1, &errors), 0);
	assert_int_equal(n_new, 2);
	assert_ptr_equal(outbound_get_by_name("a"), a);
	outbound_put(a);
	outbound_put(a);

	/* b changes while a connection (our reference) still uses it. */
	old_b = outbound_get((uint16_t)id_b);
	add(&c2, "a", "fake", "5", "hk");
	add(&c2, "b", "fake", "7", NULL);
	assert_int_equal(apply(&c2, &errors), 0);
	assert_int_equal(n_new, 3);
	assert_int_equal(n_free, 0);			 /* old b lives on for its connection */
	assert_int_equal(outbound_id_lookup("b"), id_b); /* the id stays */
	b2 = outbound_get((uint16_t)id_b);
	assert_ptr_not_equal(b2, old_b);
	assert_int_equal(((struct fake_inst *)b2->inst)->level, 7);
	assert_int_equal(((struct fake_inst *)old_b->inst)->level, 1);
	assert_int_equal(atomic_load(&old_b->refs), 1); /* only ours left */
	outbound_put(old_b);
	assert_int_equal(n_free, 1);
	outbound_put(b2);
	assert_ptr_equal(inst_of("a"), a->inst); /* a untouched */

	/* a removed: retired and freed (no reference left); its id is not reused. */
	add(&c3, "b", "fake", "7", NULL);
	add(&c3, "c", "fake", "1", NULL);
	frees = n_free;
	assert_int_equal(apply(&c3, &errors), 0);
	assert_int_equal(n_free, frees + 1);
	assert_null(outbound_get((uint16_t)id_a));
	assert_null(outbound_get_by_name("a"));
	assert_null(outbound_name((uint16_t)id_a));
	assert_int_equal(outbound_id_lookup("a"), id_a);
	assert_true(outbound_id_lookup("c") != id_a);
	b = outbound_get_by_name("b");
	assert_ptr_equal(b, b2); /* unchanged since c2 */
	outbound_put(b);

	/* a comes back: its old id, a new instance. */
	assert_int_equal(apply(&c2, &errors), 0);
	assert_int_equal(outbound_id_lookup("a"), id_a);
	assert_non_null(inst_of("a"));
	assert_null(outbound_get_by_name("c"));
	assert_null(errors);

	outbounds_clear();
	assert_null(outbound_get((uint16_t)id_b));
	assert_int_equal(n_free, n_new);
	conf_free(&c1);
	conf_free(&c2);
	conf_free(&c3);
}

/* Any error: nothing changes, every error is reported with file:line, nothing leaks. */
static void test_apply_errors_change_nothing(void **state)
{
	struct conf good = {0}, bad = {0};
	struct fake_inst *a, *b;
	char *errors = NULL;
	int news;

	n_new = n_free = n_new_fail = 0;
	add(&good, "a", "fake", "1", NULL);
	add(&good, "b", "fake", "2", NULL);
	assert_int_equal(apply(&good, NULL), 0);
	a = inst_of("a");
	b = inst_of("b");
	news = n_new;

	add(&bad, "a", "fake", "3", NULL);	      /* would change: built, then thrown away */
	add(&bad, "b", "nosuch", NULL, NULL);	      /* unknown plugin */
	add(&bad, "c", "sniffy", NULL, NULL);	      /* not an outbound plugin */
	add(&bad, "d", "fake", "not-a-number", NULL); /* option error (plug.c's message) */
	add(&bad, "e", "fake", "666", NULL);	      /* instance_new fails */
	add(&bad, "a", "fake", "1", NULL);	      /* defined twice */
	assert_int_equal(apply(&bad, &errors), -EINVAL);
	assert_non_null(errors);
	assert_non_null(strstr(errors, "test.ini:20: [outbound.b] plugin nosuch"));
	assert_non_null(
		strstr(errors, "test.ini:30: [outbound.c] plugin sniffy is not an outbound"));
	assert_non_null(strstr(errors, "test.ini:42: [outbound.d] level"));
	assert_non_null(strstr(errors, "test.ini:50: [outbound.e] fake"));
	assert_non_null(strstr(errors, "test.ini:60: [outbound.a] defined twice"));
	assert_int_equal(n_new_fail, 1);
	free(errors);

	/* Unchanged live set, and what was built for the failed apply is gone. */
	assert_ptr_equal(inst_of("a"), a);
	assert_ptr_equal(inst_of("b"), b);
	assert_int_equal(a->level, 1);
	assert_null(outbound_get_by_name("d"));
	assert_int_equal(n_new - news, n_free);

	outbounds_clear();
	assert_int_equal(n_new, n_free);
	conf_free(&good);
	conf_free(&bad);
}

struct put_arg {
	struct outbound *ob;
};

static void *put_thread(void *arg)
{
	outbound_put(((struct put_arg *)arg)->ob);
	return NULL;
}

static void stop_fn(void *arg)
{
	loop_stop(arg);
}

/* The last reference dropped on a worker thread: instance_free runs on the main loop. */
static void test_last_put_on_worker_frees_on_main(void **state)
{
	struct conf c = {0}, empty = {0};
	struct put_arg pa;
	struct xp_loop main_loop;
	pthread_t th;
	int frees;

	n_new = n_free = 0;
	add(&c, "w", "fake", "1", NULL);
	assert_int_equal(apply(&c, NULL), 0);
	pa.ob = outbound_get_by_name("w");
	assert_non_null(pa.ob);
	empty.cfg.path = "test.ini";
	assert_int_equal(apply(&empty, NULL), 0); /* retired; our reference keeps it */
	assert_int_equal(n_free, 0);

	assert_int_equal(loop_init(&main_loop, 0, true, "main"), 0);
	frees = n_free;
	assert_int_equal(pthread_create(&th, NULL, put_thread, &pa), 0);
	pthread_join(th, NULL);
	assert_int_equal(n_free, frees); /* posted, not freed on the worker */
	assert_int_equal(loop_post(&main_loop, stop_fn, &main_loop), 0);
	loop_run(&main_loop);
	assert_int_equal(n_free, frees + 1);
	assert_true(pthread_equal(freed_on, pthread_self()));

	/* On the main thread itself: freed inline. */
	assert_int_equal(apply(&c, NULL), 0);
	frees = n_free;
	assert_int_equal(apply(&empty, NULL), 0);
	assert_int_equal(n_free, frees + 1);
	loop_fini(&main_loop);
	conf_free(&c);
}

/* A group stand-in: "grp" picks outbound b and says so in *via. */
static int resolver_calls;
static struct outbound *fake_group(const char *name, struct ob_via *via)
{
	resolver_calls++;
	if (strcmp(name, "grp"))
		return NULL;
	via->id[0] = 77;
	via->id[1] = 78;
	via->n = 2;
	return outbound_get_by_name("b");
}

/* outbound_resolve(): an outbound by name first, a group (the resolver) only for other names,
 * *via always set. */
static void test_resolve(void **state)
{
	struct conf c = {0};
	struct outbound *ob;
	struct ob_via via = {.id = {5}, .n = 1};

	add(&c, "a", "fake", "1", NULL);
	add(&c, "b", "fake", "2", NULL);
	assert_int_equal(apply(&c, NULL), 0);

	outbound_set_resolver(NULL);
	assert_null(outbound_resolve("grp", &via));
	assert_int_equal(via.n, 0);

	outbound_set_resolver(fake_group);
	resolver_calls = 0;
	via = (struct ob_via){.id = {5}, .n = 1};
	ob = outbound_resolve("a", &via);
	assert_ptr_equal(ob, outbound_get_by_name("a"));
	outbound_put(ob);
	outbound_put(ob);
	assert_int_equal(via.n, 0);
	assert_int_equal(resolver_calls, 0); /* an outbound's own name never asks the groups */

	ob = outbound_resolve("grp", &via);
	assert_non_null(ob);
	assert_string_equal(ob->name, "b");
	assert_int_equal(via.n, 2);
	assert_int_equal(via.id[0], 77);
	assert_int_equal(via.id[1], 78);
	outbound_put(ob);

	via = (struct ob_via){.id = {5}, .n = 1};
	assert_null(outbound_resolve("nothing", &via));
	assert_int_equal(via.n, 0);
	assert_int_equal(resolver_calls, 2);
	outbound_set_resolver(NULL);
	outbounds_clear();
	conf_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_apply_keep_change_retire),
		cmocka_unit_test(test_apply_errors_change_nothing),
		cmocka_unit_test(test_last_put_on_worker_frees_on_main),
		cmocka_unit_test(test_resolve),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
