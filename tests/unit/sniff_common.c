/* SPDX-License-Identifier: GPL-2.0-only */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sniff_common.h"

const struct xp_sniffer_ops *sniff_load(const char *name)
{
	const char *dir = getenv("XP_TEST_PLUGIN_DIR");
	const struct xp_plugin_desc *d;
	xp_plugin_query_fn q;
	char path[4096];
	void *h;

	if (!dir) {
		fprintf(stderr, "XP_TEST_PLUGIN_DIR is not set (run through meson test)\n");
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s.so", dir, name);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		return NULL;
	}
	q = (xp_plugin_query_fn)dlsym(h, XP_PLUGIN_ENTRY_NAME);
	d = q ? q(XP_PLUGIN_ABI) : NULL;
	if (!d || !d->sniffer || !(d->kinds & XP_KIND_SNIFFER) || strcmp(d->name, name)) {
		fprintf(stderr, "%s: not the sniffer plugin \"%s\"\n", path, name);
		return NULL;
	}
	return d->sniffer; /* the handle stays open for the process's life */
}

int sniff_tcp(const struct xp_sniffer_ops *ops, const void *data, size_t len, uint16_t dport,
	      struct xp_sniff_result *out)
{
	struct xp_bytes part = { .data = data, .len = len };
	struct xp_sniff_input in = {
		.size = sizeof(in),
		.l4proto = 6, /* IPPROTO_TCP */
		.dport = dport,
		.count = 1,
		.parts = &part,
	};

	memset(out, 0, sizeof(*out));
	out->size = sizeof(*out);
	return ops->sniff(NULL, &in, out);
}

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *d = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
		d = malloc((size_t)n);
		if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
			free(d);
			d = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return d;
}

int sniff_capture(const char *kind, struct sample **out)
{
	const char *script = getenv("XP_SNIFF_CAPTURE"), *py = getenv("XP_PYTHON");
	char dir[] = "/tmp/xp-sniff-capture-XXXXXX", path[4096], line[1024];
	struct sample *s = NULL;
	int n = 0, status;
	pid_t pid;
	FILE *m;

	*out = NULL;
	if (!script || !py) {
		fprintf(stderr, "XP_SNIFF_CAPTURE / XP_PYTHON are not set (run through meson)\n");
		return -1;
	}
	if (!mkdtemp(dir))
		return -1;
	pid = fork();
	if (pid == 0) {
		execl(py, py, script, dir, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		fprintf(stderr, "capture_hellos.py failed (see its messages above)\n");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/manifest.tsv", dir);
	m = fopen(path, "r");
	if (!m)
		goto out;
	while (fgets(line, sizeof(line), m)) {
		struct sample x = { 0 };
		struct sample *t;

		if (sscanf(line, "%127[^\t]\t%7[^\t]\t%255[^\t]\t%63[^\t\n]", x.file, x.kind, x.name,
			   x.alpn) != 4 ||
		    strcmp(x.kind, kind))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, x.file);
		x.data = read_all(path, &x.len);
		t = realloc(s, (n + 1) * sizeof(*s));
		if (!x.data || !t) {
			free(x.data);
			fclose(m);
			goto out;
		}
		s = t;
		s[n++] = x;
	}
	fclose(m);
out:
	/* the samples are in memory now; the directory goes */
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	if (system(path) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	if (n == 0) {
		free(s);
		return -1;
	}
	*out = s;
	return n;
}

void sniff_samples_free(struct sample *s, int n)
{
	for (int i = 0; i < n; i++)
		free(s[i].data);
	free(s);
}
