/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_plug - the plugin manager against fake plugins (tests/unit/fake_plugins/): every refusal
 * with its exact one-line message, the registry, init/fini, and option filling.
 *
 * FAKE_PLUGIN_DIR (set by meson) is where the fake .so files are built. Built a second time as
 * test_plug_compat with PLUG_HOST_ABI_MINOR=3 (plug.c compiled in) to play a newer daemon: only
 * the minor-compatibility group runs there.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"
#include "plug.h"

#include "fake_plugins/good_outbound.h"

static const char *fake_dir;

static const char *fake_path(const char *name)
{
	static char buf[8][PATH_MAX];
	static unsigned next;
	char *p = buf[next++ % 8];

	snprintf(p, PATH_MAX, "%s/%s.so", fake_dir, name);
	return p;
}

/* Load a fake that must be accepted. */
static struct plugin *load_ok(const char *name)
{
	struct plugin *p = (struct plugin *)1;
	char err[512] = "";
	int rc;

	rc = plug_load(fake_path(name), &p, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(p);
	return p;
}

/* Load a fake (or any path) that must be refused with exactly "plugin PATH: <why>". */
static void expect_refused_path(const char *path, int want_rc, const char *why)
{
	struct plugin *p = (struct plugin *)1;
	char err[512] = "", want[1024];
	int rc;

	rc = plug_load(path, &p, err, sizeof(err));
	assert_null(p);
	if (want_rc)
		assert_int_equal(rc, want_rc);
	else
		assert_true(rc < 0);
	snprintf(want, sizeof(want), "plugin %s: %s", path, why);
	assert_string_equal(err, want);
	assert_null(strchr(err, '\n'));
}

static void expect_refused(const char *name, int want_rc, const char *why)
{
	expect_refused_path(fake_path(name), want_rc, why);
}

#ifndef PLUG_HOST_ABI_MINOR

/* The test's own host table: the fake plugins only remember its address in init. */
static const struct xp_host test_host = {
	.size = sizeof(struct xp_host),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.version = "test",
};

/* ------------------------------------------------------------------------------ accepted */

static void test_good_outbound(void **state)
{
	struct plugin *p = load_ok("good_outbound");

	assert_string_equal(p->name, "good_outbound");
	assert_ptr_equal(p->desc.name, p->name);
	assert_string_equal(p->desc.version, "1.2.3");
	assert_string_equal(p->desc.summary, "every option type");
	assert_string_equal(p->path, fake_path("good_outbound"));
	assert_int_equal(p->desc.kinds, XP_KIND_OUTBOUND);
	assert_true(plug_has_kind(p, XP_KIND_OUTBOUND));
	assert_false(plug_has_kind(p, XP_KIND_SNIFFER));
	assert_false(plug_has_kind(p, XP_KIND_OUTBOUND | XP_KIND_DNS));
	assert_false(plug_has_kind(p, 0));
	/* the copy points at host-owned tables only */
	assert_ptr_equal(p->desc.outbound, &p->outbound);
	assert_null(p->desc.sniffer);
	assert_null(p->desc.dns);
	assert_int_equal(p->outbound.size, sizeof(struct xp_outbound_ops));
	assert_int_equal(p->outbound.caps, XP_OUTBOUND_TCP);
	assert_non_null(p->outbound.tcp_connect);
	assert_non_null(p->outbound.tcp_abort);
	assert_non_null(p->desc.instance_new);
	assert_non_null(p->desc.instance_free);
	assert_int_equal(p->desc.config_size, sizeof(struct good_cfg));
	/* options: normalized copy, NULL-terminated */
	assert_int_equal(p->n_options, 10);
	assert_ptr_equal(p->desc.options, p->options);
	assert_int_equal(p->desc.option_size, sizeof(struct xp_option));
	assert_string_equal(p->options[0].name, "label");
	assert_string_equal(p->options[6].name, "server");
	assert_int_equal(p->options[6].flags, XP_OPT_REQUIRED);
	assert_int_equal(p->options[6].type, XP_OPT_HOSTPORT);
	assert_int_equal(p->options[6].offset, offsetof(struct good_cfg, server));
	assert_int_equal(p->options[1].min, -5);
	assert_int_equal(p->options[1].max, 100);
	assert_string_equal(p->options[5].choices, "fast|safe|paranoid");
	assert_null(p->options[10].name);
	/* its handle, for log prefixes and counters */
	assert_int_equal(p->handle.kind, HANDLE_PLUGIN);
	assert_string_equal(p->handle.name, "good_outbound");
	assert_ptr_equal(p->handle.plugin, p);
	assert_false(p->initialized);
	plug_unload(p);
}

static void test_good_sniffer(void **state)
{
	struct plugin *p = load_ok("good_sniffer");

	assert_int_equal(p->desc.kinds, XP_KIND_SNIFFER);
	assert_true(plug_has_kind(p, XP_KIND_SNIFFER));
	assert_ptr_equal(p->desc.sniffer, &p->sniffer);
	assert_int_equal(p->sniffer.caps, XP_SNIFF_TCP | XP_SNIFF_UDP);
	assert_int_equal(p->sniffer.max_bytes, 4096);
	assert_int_equal(p->sniffer.ports[0], 443);
	assert_non_null(p->sniffer.sniff);
	/* it points .dns at something without declaring the kind: never exposed */
	assert_null(p->desc.dns);
	assert_null(p->desc.outbound);
	/* absent version and summary read as "" */
	assert_string_equal(p->desc.version, "");
	assert_string_equal(p->desc.summary, "");
	assert_int_equal(p->n_options, 0);
	assert_non_null(p->options);
	assert_null(p->options[0].name);
	plug_unload(p);
}

static void test_good_dns(void **state)
{
	struct plugin *p = load_ok("good_dns");

	assert_true(plug_has_kind(p, XP_KIND_DNS));
	assert_ptr_equal(p->desc.dns, &p->dns);
	assert_non_null(p->dns.query);
	assert_null(p->dns.cancel);
	plug_unload(p);
}

static void test_good_events(void **state)
{
	struct plugin *p = load_ok("good_events");

	assert_string_equal(p->name, "good-events_2");
	assert_int_equal(p->desc.kinds, 0);
	assert_int_equal(p->desc.event_mask,
			 XP_EVENT_MASK(XP_EVENT_FLOW_NEW) | XP_EVENT_MASK(XP_EVENT_DROP));
	assert_non_null(p->desc.on_event);
	assert_null(p->desc.instance_new);
	assert_false(plug_has_kind(p, XP_KIND_OUTBOUND));
	plug_unload(p);

	/* ABI 1.2's FLOW_NAMED: taken from a 1.2 plugin, junk in a 1.1 one */
	p = load_ok("named_events");
	assert_int_equal(p->desc.event_mask,
			 XP_EVENT_MASK(XP_EVENT_FLOW_NEW) | XP_EVENT_MASK(XP_EVENT_FLOW_NAMED));
	plug_unload(p);
	expect_refused("named_events_1_1", -EINVAL, "unknown event_mask bits 0x10");
}

/* A larger struct from a newer build is fine as long as what this host does not know is 0. */
static void test_zero_tails_accepted(void **state)
{
	struct plugin *p = load_ok("tail_zero");

	assert_string_equal(p->name, "tail_zero");
	assert_ptr_equal(p->desc.outbound, &p->outbound);
	plug_unload(p);

	p = load_ok("opt_tail_zero");
	/* elements are read with the plugin's stride, not ours */
	assert_int_equal(p->n_options, 2);
	assert_string_equal(p->options[0].name, "s");
	assert_string_equal(p->options[1].name, "i");
	assert_string_equal(p->options[1].def, "3");
	assert_int_equal(p->options[1].type, XP_OPT_INT);
	plug_unload(p);
}

/* ------------------------------------------------------------------------------ refused */

static void test_refuse_version(void **state)
{
	expect_refused("major2", -EPROTO,
		       "built for plugin ABI 2.0, this xproxyd speaks 1.2 (major differs)");
	expect_refused("minor3", -EPROTO,
		       "built for plugin ABI 1.3, this xproxyd speaks 1.2 (plugin is newer: "
		       "upgrade xproxyd)");
}

static void test_refuse_entry(void **state)
{
	expect_refused("no_entry", -ENOEXEC, "no symbol xp_plugin_query (not an xproxy plugin?)");
	expect_refused("null_desc", -EPROTO, "xp_plugin_query(1.2) returned no descriptor");
}

static void test_refuse_dlopen(void **state)
{
	char dir[] = "/tmp/xp-test-plug-dl.XXXXXX", path[PATH_MAX], want[PATH_MAX + 64];
	struct plugin *p;
	char err[512];
	int fd, rc;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/missing.so", dir);
	expect_refused_path(
		path, -ENOEXEC,
		"cannot load: cannot open shared object file: No such file or directory");

	/* not an ELF file: the exact wording is glibc's, the prefix and one line are ours */
	snprintf(path, sizeof(path), "%s/text.so", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hello, not an ELF file at all\n", 30), 30);
	close(fd);
	rc = plug_load(path, &p, err, sizeof(err));
	assert_int_equal(rc, -ENOEXEC);
	assert_null(p);
	snprintf(want, sizeof(want), "plugin %s: cannot load: ", path);
	assert_memory_equal(err, want, strlen(want));
	assert_true(strlen(err) > strlen(want));
	assert_null(strchr(err, '\n'));

	/* a bare name is a file in the current directory, never a library-path search */
	rc = plug_load("libc.so.6", &p, err, sizeof(err));
	assert_int_equal(rc, -ENOEXEC);
	assert_string_equal(err, "plugin libc.so.6: cannot load: cannot open shared object file: "
				 "No such file or directory");

	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void test_refuse_size(void **state)
{
	char want[256];

	snprintf(want, sizeof(want), "descriptor size %zu is smaller than ABI 1.0's %zu",
		 offsetof(struct xp_plugin_desc, dns), sizeof(struct xp_plugin_desc));
	expect_refused("short_size", -EINVAL, want);
	snprintf(want, sizeof(want), "descriptor size 4 is smaller than ABI 1.0's %zu",
		 sizeof(struct xp_plugin_desc));
	expect_refused("tiny_size", -EINVAL, want);
	snprintf(want, sizeof(want),
		 "descriptor size %zu carries non-zero bytes past the %zu this xproxyd knows",
		 sizeof(struct xp_plugin_desc) + 8, sizeof(struct xp_plugin_desc));
	expect_refused("tail_nonzero", -EINVAL, want);
}

static void test_refuse_name(void **state)
{
	expect_refused("bad_name", -EINVAL, "bad name \"Bad Name?\" (want [a-z0-9_-]{1,31})");
	expect_refused("long_name", -EINVAL,
		       "bad name \"abcdefghijklmnopqrstuvwxyz012345\" (want [a-z0-9_-]{1,31})");
	expect_refused("no_name", -EINVAL, "bad name \"(null)\" (want [a-z0-9_-]{1,31})");
}

static void test_refuse_kinds(void **state)
{
	char want[256];

	expect_refused("unknown_kind", -EINVAL,
		       "unknown kinds 0x10 (this xproxyd knows outbound, sniffer, dns)");
	expect_refused("no_ops", -EINVAL, "kind outbound without its outbound ops table");
	snprintf(want, sizeof(want), "outbound ops size 8 is smaller than ABI 1.0's %zu",
		 sizeof(struct xp_outbound_ops));
	expect_refused("bad_ops_size", -EINVAL, want);
}

static void test_refuse_callbacks(void **state)
{
	expect_refused("no_instance_new", -EINVAL, "has kinds but no instance_new");
	expect_refused("no_instance_free", -EINVAL, "has instance_new but no instance_free");
	expect_refused("no_on_event", -EINVAL, "has an event_mask but no on_event");
	expect_refused("no_tcp_connect", -EINVAL,
		       "outbound with XP_OUTBOUND_TCP but no tcp_connect");
	expect_refused("no_tcp_abort", -EINVAL, "outbound with XP_OUTBOUND_TCP but no tcp_abort");
	expect_refused("no_sniff", -EINVAL, "sniffer without sniff");
	expect_refused("no_query", -EINVAL, "dns without query");
}

static void test_refuse_options(void **state)
{
	char want[256];

	snprintf(want, sizeof(want), "option_size 16 is smaller than ABI 1.0's %zu",
		 sizeof(struct xp_option));
	expect_refused("opt_size_small", -EINVAL, want);
	expect_refused("opt_bad_type", -EINVAL, "option \"weird\": unknown type 42");
	expect_refused("opt_dup", -EINVAL, "option \"key\" is declared twice");
	/* struct cfg { char *s; int64_t i; int e; } is 24 bytes; an int64 at 20 ends at 28 */
	expect_refused("opt_offset", -EINVAL,
		       "option \"far\": field at offset 20 (8 bytes) is beyond config_size 24");
	expect_refused("opt_plugin", -EINVAL,
		       "option \"plugin\": reserved (the key that names the plugin)");
	expect_refused("opt_required_default", -EINVAL,
		       "option \"server\": required options cannot have a default");
	expect_refused("opt_enum_nochoices", -EINVAL,
		       "option \"mode\": enum without valid choices (want \"a|b|c\")");
	expect_refused("opt_enum_empty_choice", -EINVAL,
		       "option \"mode\": enum without valid choices (want \"a|b|c\")");
	expect_refused("opt_bad_default", -EINVAL,
		       "option \"count\": default \"ten\" does not parse: \"ten\" is not an "
		       "integer");
	expect_refused("opt_default_range", -EINVAL,
		       "option \"count\": default \"11\" does not parse: \"11\" is out of range "
		       "[1, 10]");
	expect_refused("opt_bad_range", -EINVAL, "option \"count\": min 5 > max 0");
	expect_refused("opt_bad_flags", -EINVAL, "option \"s\": unknown flags 0x80");
	expect_refused("opt_bad_name", -EINVAL,
		       "option \"has space\": bad name (want [A-Za-z0-9_.-]{1,63})");
	snprintf(want, sizeof(want),
		 "option 1 carries non-zero bytes past the %zu this xproxyd "
		 "knows",
		 sizeof(struct xp_option));
	expect_refused("opt_tail_nonzero", -EINVAL, want);
}

static void test_abi_copy(void **state)
{
	unsigned char src[16], dst[8];

	memset(src, 0xab, sizeof(src));
	memset(dst, 0x55, sizeof(dst));
	/* shorter source: copied and zero-extended */
	assert_int_equal(plug_abi_copy(dst, sizeof(dst), src, 3), 0);
	assert_int_equal(dst[2], 0xab);
	assert_int_equal(dst[3], 0);
	assert_int_equal(dst[7], 0);
	/* longer source with a non-zero tail: refused, destination untouched */
	memset(dst, 0x55, sizeof(dst));
	assert_int_equal(plug_abi_copy(dst, sizeof(dst), src, sizeof(src)), -E2BIG);
	assert_int_equal(dst[0], 0x55);
	/* longer source with a zero tail: accepted */
	memset(src + 8, 0, 8);
	assert_int_equal(plug_abi_copy(dst, sizeof(dst), src, sizeof(src)), 0);
	assert_int_equal(dst[7], 0xab);
}

/* ------------------------------------------------------------------------------ init/fini */

static int *fake_counter(struct plugin *p, const char *sym)
{
	int *c = dlsym(p->dl, sym);

	assert_non_null(c);
	return c;
}

static void test_init_fini(void **state)
{
	struct plugin *p = load_ok("good_outbound");
	const struct xp_host **seen_host;
	int *init_calls, *fini_calls;
	char err[256] = "";
	void *ref;

	init_calls = fake_counter(p, "fake_init_calls");
	fini_calls = fake_counter(p, "fake_fini_calls");
	seen_host = dlsym(p->dl, "fake_init_host");
	assert_non_null(seen_host);
	assert_int_equal(*init_calls, 0);

	assert_int_equal(plug_init(p, &test_host, err, sizeof(err)), 0);
	assert_true(p->initialized);
	assert_non_null(p->state);
	assert_ptr_equal(*seen_host, &test_host);
	/* once only */
	assert_int_equal(plug_init(p, &test_host, err, sizeof(err)), 0);
	assert_int_equal(*init_calls, 1);
	assert_int_equal(*fini_calls, 0);

	/* keep the library mapped past the unload to read its counter */
	ref = dlopen(fake_path("good_outbound"), RTLD_NOW | RTLD_NOLOAD);
	assert_non_null(ref);
	plug_unload(p);
	assert_int_equal(*fini_calls, 1);
	dlclose(ref);
}

static void test_init_fails(void **state)
{
	struct plugin *p = load_ok("init_fails");
	char err[256] = "", want[PATH_MAX + 64];

	assert_int_equal(plug_init(p, &test_host, err, sizeof(err)), -EPERM);
	snprintf(want, sizeof(want), "plugin %s: init failed: %s", fake_path("init_fails"),
		 strerror(EPERM));
	assert_string_equal(err, want);
	assert_false(p->initialized);
	/* its fini traps if called: unload must not call it */
	plug_unload(p);
	plug_unload(NULL);
}

/* ------------------------------------------------------------------------------ registry */

struct tmpdir {
	char path[64];
};

static int tmpdir_setup(void **state)
{
	struct tmpdir *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	snprintf(t->path, sizeof(t->path), "/tmp/xp-test-plug-%d.XXXXXX", (int)getpid());
	if (!mkdtemp(t->path)) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

/* Runs after a failed test too: nothing is left in /tmp. */
static int tmpdir_teardown(void **state)
{
	struct tmpdir *t = *state;
	char cmd[128];
	int rc;

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->path);
	rc = system(cmd);
	free(t);
	return rc ? -1 : 0;
}

static void link_fake(const char *dir, const char *fake, const char *as)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, as);
	assert_int_equal(symlink(fake_path(fake), path), 0);
}

/* Run plug_registry_scan with stderr captured into buf. */
static int scan_captured(struct plug_registry *reg, const char *dir, char *buf, size_t len)
{
	char cap[PATH_MAX];
	int fd, saved, rc;
	ssize_t n;

	snprintf(cap, sizeof(cap), "%s/stderr.txt", dir);
	fd = open(cap, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	fflush(stderr);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	rc = plug_registry_scan(reg, dir);
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	n = pread(fd, buf, len - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	close(fd);
	assert_int_equal(unlink(cap), 0);
	return rc;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_registry_scan(void **state)
{
	struct tmpdir *t = *state;
	struct plug_registry reg = {0};
	char out[4096], want[PATH_MAX * 2], path[PATH_MAX];
	struct plugin *p;
	int fd;

	/* sorted: 10 loads first and takes the name "good_outbound"; 20 is then a duplicate */
	link_fake(t->path, "dup_name", "10-first.so");
	link_fake(t->path, "good_outbound", "20-good.so");
	link_fake(t->path, "major2", "30-major.so");
	link_fake(t->path, "good_sniffer", "40-sniffer.so");
	snprintf(path, sizeof(path), "%s/notes.txt", t->path);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);

	assert_int_equal(scan_captured(&reg, t->path, out, sizeof(out)), 2);
	assert_int_equal(reg.n, 2);
	p = plug_registry_find(&reg, "good_outbound");
	assert_non_null(p);
	snprintf(want, sizeof(want), "%s/10-first.so", t->path);
	assert_string_equal(p->path, want);
	assert_non_null(plug_registry_find(&reg, "good_sniffer"));
	assert_null(plug_registry_find(&reg, "major2"));
	assert_null(plug_registry_find(&reg, "nope"));

	/* one warning line per refusal, each naming the file */
	assert_int_equal(count_lines(out), 2);
	snprintf(
		want, sizeof(want),
		"plugin %s/20-good.so: name \"good_outbound\" is already taken by %s/10-first.so\n",
		t->path, t->path);
	assert_non_null(strstr(out, want));
	snprintf(want, sizeof(want),
		 "plugin %s/30-major.so: built for plugin ABI 2.0, this xproxyd speaks 1.2 "
		 "(major differs)\n",
		 t->path);
	assert_non_null(strstr(out, want));

	/* a second scan skips what it already has and adds nothing */
	assert_int_equal(scan_captured(&reg, t->path, out, sizeof(out)), 0);
	assert_int_equal(reg.n, 2);

	plug_registry_free(&reg);
	assert_int_equal(reg.n, 0);
	assert_null(reg.v);
	plug_registry_free(&reg);

	snprintf(path, sizeof(path), "%s/does-not-exist", t->path);
	assert_int_equal(plug_registry_scan(&reg, path), -ENOENT);
}

static void test_registry_add_duplicate(void **state)
{
	struct plug_registry reg = {0};
	struct plugin *a = load_ok("good_outbound"), *b = load_ok("dup_name");
	char err[1024] = "", want[PATH_MAX * 2 + 64];

	assert_int_equal(plug_registry_add(&reg, a, err, sizeof(err)), 0);
	assert_int_equal(plug_registry_add(&reg, b, err, sizeof(err)), -EEXIST);
	snprintf(want, sizeof(want), "plugin %s: name \"good_outbound\" is already taken by %s",
		 fake_path("dup_name"), fake_path("good_outbound"));
	assert_string_equal(err, want);
	assert_int_equal(reg.n, 1);
	plug_unload(b);
	plug_registry_free(&reg);
}

static void test_resolve(void **state)
{
	struct tmpdir *t = *state;
	struct plug_registry reg = {0};
	struct plugin *p, *q;
	char err[1024] = "", want[PATH_MAX * 2], path[PATH_MAX];

	/* by name, nothing loaded */
	assert_int_equal(plug_resolve(&reg, "direct", &p, err, sizeof(err)), -ENOENT);
	assert_null(p);
	assert_string_equal(err, "plugin \"direct\": not found (loaded: none)");

	/* by path: loaded and added */
	assert_int_equal(plug_resolve(&reg, fake_path("good_sniffer"), &p, err, sizeof(err)), 0);
	assert_string_equal(p->name, "good_sniffer");
	assert_int_equal(reg.n, 1);
	/* the same file again, spelled differently: the same plugin, nothing loaded */
	snprintf(path, sizeof(path), "%s/./good_sniffer.so", fake_dir);
	assert_int_equal(plug_resolve(&reg, path, &q, err, sizeof(err)), 0);
	assert_ptr_equal(q, p);
	link_fake(t->path, "good_sniffer", "alias.so");
	snprintf(path, sizeof(path), "%s/alias.so", t->path);
	assert_int_equal(plug_resolve(&reg, path, &q, err, sizeof(err)), 0);
	assert_ptr_equal(q, p);
	assert_int_equal(reg.n, 1);

	/* by name now */
	assert_int_equal(plug_resolve(&reg, "good_sniffer", &q, err, sizeof(err)), 0);
	assert_ptr_equal(q, p);
	assert_int_equal(plug_resolve(&reg, fake_path("good_dns"), &q, err, sizeof(err)), 0);
	assert_int_equal(plug_resolve(&reg, "nope", &q, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "plugin \"nope\": not found (loaded: good_sniffer, good_dns)");

	/* a path that is refused: the load's message, registry unchanged */
	assert_int_equal(plug_resolve(&reg, fake_path("major2"), &q, err, sizeof(err)), -EPROTO);
	assert_null(q);
	snprintf(want, sizeof(want),
		 "plugin %s: built for plugin ABI 2.0, this xproxyd speaks 1.2 (major differs)",
		 fake_path("major2"));
	assert_string_equal(err, want);
	/* a path whose name is taken */
	assert_int_equal(plug_resolve(&reg, fake_path("good_outbound"), &q, err, sizeof(err)), 0);
	assert_int_equal(plug_resolve(&reg, fake_path("dup_name"), &q, err, sizeof(err)), -EEXIST);
	assert_null(q);
	assert_int_equal(reg.n, 3);
	plug_registry_free(&reg);
}

/* registry_free runs fini for initialized plugins only */
static void test_registry_free_fini(void **state)
{
	struct plug_registry reg = {0};
	struct plugin *p = load_ok("good_outbound"), *s = load_ok("init_fails");
	char err[256];
	int *fini_calls;
	void *ref;

	assert_int_equal(plug_registry_add(&reg, p, err, sizeof(err)), 0);
	assert_int_equal(plug_registry_add(&reg, s, err, sizeof(err)), 0);
	assert_int_equal(plug_init(p, &test_host, err, sizeof(err)), 0);
	assert_int_equal(plug_init(s, &test_host, err, sizeof(err)), -EPERM);
	fini_calls = fake_counter(p, "fake_fini_calls");
	ref = dlopen(fake_path("good_outbound"), RTLD_NOW | RTLD_NOLOAD);
	assert_non_null(ref);
	plug_registry_free(&reg);
	assert_int_equal(*fini_calls, 1);
	dlclose(ref);
}

/* ------------------------------------------------------------------------------ options */

struct kvdef {
	const char *key, *value;
	int line;
};

/* A section as cfg would hand it over; freed with free_section. */
static struct cfg_section *make_section(const char *name, int line, const struct kvdef *kv)
{
	struct cfg_section *s = calloc(1, sizeof(*s));
	size_t i, n = 0;

	assert_non_null(s);
	while (kv && kv[n].key)
		n++;
	s->name = strdup(name);
	s->line = line;
	s->kv = calloc(n ? n : 1, sizeof(*s->kv));
	assert_non_null(s->kv);
	for (i = 0; i < n; i++) {
		s->kv[i].key = strdup(kv[i].key);
		s->kv[i].value = strdup(kv[i].value);
		s->kv[i].line = kv[i].line;
	}
	s->n_kv = n;
	return s;
}

static void free_section(struct cfg_section *s)
{
	size_t i;

	for (i = 0; i < s->n_kv; i++) {
		free(s->kv[i].key);
		free(s->kv[i].value);
	}
	free(s->kv);
	free(s->name);
	free(s);
}

static int good_setup(void **state)
{
	char err[512];
	struct plugin *p;

	if (plug_load(fake_path("good_outbound"), &p, err, sizeof(err))) {
		print_error("%s\n", err);
		return -1;
	}
	*state = p;
	return 0;
}

static int good_teardown(void **state)
{
	plug_unload(*state);
	return 0;
}

/* Fill from kv; on success the config is returned, on failure NULL with the errors in *errors. */
static struct good_cfg *fill(struct plugin *p, const struct kvdef *kv, int *rc, char **errors)
{
	struct cfg_section *s = make_section("outbound.t", 3, kv);
	void *config = (void *)1;

	*errors = NULL;
	*rc = plug_config_fill(p, "t.ini", s, &config, errors);
	free_section(s);
	if (*rc)
		assert_null(config);
	return config;
}

static void test_fill_defaults(void **state)
{
	static const struct kvdef kv[] = {
		{"plugin", "good_outbound", 4},
		{"server", "example.org:443", 5},
		{.key = NULL},
	};
	struct plugin *p = *state;
	struct good_cfg *c;
	char *errors;
	int rc;

	c = fill(p, kv, &rc, &errors);
	assert_int_equal(rc, 0);
	assert_null(errors);
	assert_string_equal(c->label, "anon");
	assert_int_equal(c->count, 7);
	assert_int_equal(c->enabled, 1);
	assert_int_equal(c->timeout_ms, 10000);
	assert_int_equal(c->buffer, 65536);
	assert_int_equal(c->mode, 1);
	assert_string_equal(c->server, "example.org:443");
	assert_null(c->password);
	assert_int_equal(c->pin, 0);
	assert_null(c->comment);
	plug_config_free(p, c);
	plug_config_free(p, NULL);
}

static void test_fill_every_type(void **state)
{
	static const struct kvdef kv[] = {
		{"label", "hk-1", 4},
		{"count", "0x10", 5},
		{"enabled", "off", 6},
		{"timeout", "5m", 7},
		{"buffer", "4m", 8},
		{"mode", "paranoid", 9},
		{"server", "[2001:db8::1]:8443", 10},
		{"password", "hunter2", 11},
		{"pin", "42", 12},
		{"comment", "", 13},
		{.key = NULL},
	};
	struct plugin *p = *state;
	struct good_cfg *c;
	char *errors;
	int rc;

	c = fill(p, kv, &rc, &errors);
	assert_int_equal(rc, 0);
	assert_string_equal(c->label, "hk-1");
	assert_int_equal(c->count, 16);
	assert_int_equal(c->enabled, 0);
	assert_int_equal(c->timeout_ms, 300000);
	assert_int_equal(c->buffer, 4 << 20);
	assert_int_equal(c->mode, 2);
	assert_string_equal(c->server, "[2001:db8::1]:8443");
	assert_string_equal(c->password, "hunter2");
	assert_int_equal(c->pin, 42);
	assert_string_equal(c->comment, "");
	plug_config_free(p, c);
}

static void test_fill_bounds(void **state)
{
	struct plugin *p = *state;
	struct kvdef kv[] = {
		{"server", "a:1", 4},
		{"count", "-5", 5},
		{"timeout", "100ms", 6},
		{.key = NULL},
	};
	struct good_cfg *c;
	char *errors;
	int rc;

	/* bounds are inclusive */
	c = fill(p, kv, &rc, &errors);
	assert_int_equal(rc, 0);
	assert_int_equal(c->count, -5);
	assert_int_equal(c->timeout_ms, 100);
	plug_config_free(p, c);
	kv[1].value = "100";
	kv[2].value = "1h";
	c = fill(p, kv, &rc, &errors);
	assert_int_equal(rc, 0);
	assert_int_equal(c->count, 100);
	assert_int_equal(c->timeout_ms, 3600000);
	plug_config_free(p, c);

	kv[1].value = "101";
	kv[2].value = "99ms";
	c = fill(p, kv, &rc, &errors);
	assert_int_equal(rc, -EINVAL);
	assert_null(c);
	assert_string_equal(errors,
			    "t.ini:5: [outbound.t] count: \"101\" is out of range [-5, 100]\n"
			    "t.ini:6: [outbound.t] timeout: \"99ms\" is out of range [100ms, "
			    "3600000ms]\n");
	free(errors);

	kv[1].value = "-6";
	kv[2].value = "2h";
	c = fill(p, kv, &rc, &errors);
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(errors,
			    "t.ini:5: [outbound.t] count: \"-6\" is out of range [-5, 100]\n"
			    "t.ini:6: [outbound.t] timeout: \"2h\" is out of range [100ms, "
			    "3600000ms]\n");
	free(errors);
}

static void test_fill_bad_values(void **state)
{
	static const struct kvdef kv[] = {
		{"label", "fine", 4},		{"count", "12abc", 5}, {"enabled", "maybe", 6},
		{"timeout", "10 parsecs", 7},	{"buffer", "lots", 8}, {"mode", "slow", 9},
		{"server", "no-port-here", 10}, {.key = NULL},
	};
	struct plugin *p = *state;
	struct good_cfg *c;
	char *errors;
	int rc;

	/* every error is reported, each with its own line, in table order */
	c = fill(p, kv, &rc, &errors);
	assert_int_equal(rc, -EINVAL);
	assert_null(c);
	assert_string_equal(
		errors,
		"t.ini:5: [outbound.t] count: \"12abc\" is not an integer\n"
		"t.ini:6: [outbound.t] enabled: \"maybe\" is not a boolean (yes/no, true/false, "
		"on/off, 1/0)\n"
		"t.ini:7: [outbound.t] timeout: \"10 parsecs\" is not a duration (250ms, 10s, 5m, "
		"1h)\n"
		"t.ini:8: [outbound.t] buffer: \"lots\" is not a size (512, 64k, 4m, 1g)\n"
		"t.ini:9: [outbound.t] mode: \"slow\" is not one of fast|safe|paranoid\n"
		"t.ini:10: [outbound.t] server: \"no-port-here\" is not host:port or [v6]:port\n");
	free(errors);
}

static void test_fill_unknown_and_required(void **state)
{
	static const struct kvdef kv[] = {
		{"plugin", "good_outbound", 4},
		{"colour", "blue", 7},
		{.key = NULL},
	};
	struct plugin *p = *state;
	struct good_cfg *c;
	char *errors;
	int rc;

	c = fill(p, kv, &rc, &errors);
	assert_int_equal(rc, -EINVAL);
	assert_null(c);
	/* required: at the section header's line (3) */
	assert_string_equal(errors,
			    "t.ini:7: [outbound.t] colour: unknown option (valid: label, count, "
			    "enabled, timeout, buffer, mode, server, password, pin, comment)\n"
			    "t.ini:3: [outbound.t] server: required option missing\n");
	free(errors);
}

static void test_fill_twice(void **state)
{
	static const struct kvdef kv[] = {
		{"server", "a:1", 4},
		{"label", "one", 5},
		{"label", "two", 8},
		{.key = NULL},
	};
	struct plugin *p = *state;
	char *errors;
	int rc;

	assert_null(fill(p, kv, &rc, &errors));
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(errors, "t.ini:8: [outbound.t] label: set twice (first at line 5)\n");
	free(errors);
}

static void test_fill_secret(void **state)
{
	struct kvdef kv[] = {
		{"server", "a:1", 4},
		{"pin", "12345", 9},
		{"password", "hunter2", 10},
		{.key = NULL},
	};
	struct plugin *p = *state;
	char *errors;
	int rc;

	assert_null(fill(p, kv, &rc, &errors));
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(errors, "t.ini:9: [outbound.t] pin: the value (secret, not shown) is "
				    "out of range [0, 9999]\n");
	assert_null(strstr(errors, "12345"));
	free(errors);

	kv[1].value = "s3cr3t-hunter2";
	assert_null(fill(p, kv, &rc, &errors));
	assert_string_equal(errors, "t.ini:9: [outbound.t] pin: the value (secret, not shown) is "
				    "not an integer\n");
	assert_null(strstr(errors, "s3cr3t"));
	assert_null(strstr(errors, "hunter2"));
	free(errors);
}

static void test_fill_appends_errors(void **state)
{
	static const struct kvdef kv[] = {{.key = NULL}};
	struct cfg_section *s = make_section("outbound.x", 12, kv);
	struct plugin *p = *state;
	char *errors = strdup("t.ini:1: an earlier problem\n");
	void *config;

	assert_int_equal(plug_config_fill(p, "t.ini", s, &config, &errors), -EINVAL);
	assert_null(config);
	assert_string_equal(errors, "t.ini:1: an earlier problem\n"
				    "t.ini:12: [outbound.x] server: required option missing\n");
	free(errors);
	/* no error list wanted: still refused */
	assert_int_equal(plug_config_fill(p, "t.ini", s, &config, NULL), -EINVAL);
	assert_null(config);
	free_section(s);
}

static void test_fill_no_options(void **state)
{
	static const struct kvdef none[] = {{"plugin", "./good_dns.so", 2}, {.key = NULL}};
	static const struct kvdef one[] = {{"server", "a:1", 2}, {.key = NULL}};
	struct plugin *p = load_ok("good_dns");
	struct cfg_section *s;
	char *errors = NULL;
	void *config;

	s = make_section("outbound.d", 1, none);
	assert_int_equal(plug_config_fill(p, "t.ini", s, &config, &errors), 0);
	/* never NULL: instance_new is promised a struct */
	assert_non_null(config);
	assert_null(errors);
	plug_config_free(p, config);
	free_section(s);

	s = make_section("outbound.d", 1, one);
	assert_int_equal(plug_config_fill(p, "t.ini", s, &config, &errors), -EINVAL);
	assert_string_equal(errors, "t.ini:2: [outbound.d] server: unknown option (plugin "
				    "good_dns takes no options)\n");
	free(errors);
	free_section(s);
	plug_unload(p);
}

#else /* PLUG_HOST_ABI_MINOR: this host plays ABI 1.3 */

static void test_older_minor_accepted(void **state)
{
	struct plugin *p;

	/* built for 1.0, a daemon speaking 1.3 takes it, with every later field zero */
	p = load_ok("minor0");
	assert_int_equal(p->desc.abi_minor, 0);
	plug_unload(p);
	p = load_ok("minor1");
	assert_int_equal(p->desc.abi_minor, 1);
	plug_unload(p);
	/* built for 1.2, the current ABI, by a daemon one minor newer */
	p = load_ok("minor2");
	assert_int_equal(p->desc.abi_minor, 2);
	plug_unload(p);
	p = load_ok("named_events");
	assert_int_equal(p->desc.event_mask & XP_EVENT_MASK(XP_EVENT_FLOW_NAMED),
			 XP_EVENT_MASK(XP_EVENT_FLOW_NAMED));
	plug_unload(p);
	/* built for 1.3: the same minor */
	p = load_ok("minor3");
	assert_int_equal(p->desc.abi_minor, 3);
	plug_unload(p);
	expect_refused("minor4", -EPROTO,
		       "built for plugin ABI 1.4, this xproxyd speaks 1.3 (plugin is newer: "
		       "upgrade xproxyd)");
	expect_refused("major2", -EPROTO,
		       "built for plugin ABI 2.0, this xproxyd speaks 1.3 (major differs)");
}

#endif

int main(void)
{
	fake_dir = getenv("FAKE_PLUGIN_DIR");
	if (!fake_dir) {
		fprintf(stderr, "FAKE_PLUGIN_DIR is not set (run through meson test)\n");
		return 1;
	}
#ifndef PLUG_HOST_ABI_MINOR
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_outbound),
		cmocka_unit_test(test_good_sniffer),
		cmocka_unit_test(test_good_dns),
		cmocka_unit_test(test_good_events),
		cmocka_unit_test(test_zero_tails_accepted),
		cmocka_unit_test(test_refuse_version),
		cmocka_unit_test(test_refuse_entry),
		cmocka_unit_test(test_refuse_dlopen),
		cmocka_unit_test(test_refuse_size),
		cmocka_unit_test(test_refuse_name),
		cmocka_unit_test(test_refuse_kinds),
		cmocka_unit_test(test_refuse_callbacks),
		cmocka_unit_test(test_refuse_options),
		cmocka_unit_test(test_abi_copy),
		cmocka_unit_test(test_init_fini),
		cmocka_unit_test(test_init_fails),
		cmocka_unit_test_setup_teardown(test_registry_scan, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test(test_registry_add_duplicate),
		cmocka_unit_test_setup_teardown(test_resolve, tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test(test_registry_free_fini),
		cmocka_unit_test_setup_teardown(test_fill_defaults, good_setup, good_teardown),
		cmocka_unit_test_setup_teardown(test_fill_every_type, good_setup, good_teardown),
		cmocka_unit_test_setup_teardown(test_fill_bounds, good_setup, good_teardown),
		cmocka_unit_test_setup_teardown(test_fill_bad_values, good_setup, good_teardown),
		cmocka_unit_test_setup_teardown(test_fill_unknown_and_required, good_setup,
						good_teardown),
		cmocka_unit_test_setup_teardown(test_fill_twice, good_setup, good_teardown),
		cmocka_unit_test_setup_teardown(test_fill_secret, good_setup, good_teardown),
		cmocka_unit_test_setup_teardown(test_fill_appends_errors, good_setup,
						good_teardown),
		cmocka_unit_test(test_fill_no_options),
	};
#else
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_older_minor_accepted),
	};
#endif
	return cmocka_run_group_tests(tests, NULL, NULL);
}
