// SPDX-License-Identifier: GPL-2.0-only
/*
 * xp_bpfload - load a datapath object on the running kernel and print, per program, how many
 * instructions the verifier processed (bpf_prog_info.verified_insns, read with libbpf 1.1's
 * bpf_obj_get_info_by_fd, which later libbpf calls bpf_prog_get_info_by_fd).
 *
 *   xp_bpfload [-m MAX] [-r daemon|peer|zero|unknown] [-l LABEL] OBJ.o
 *
 * -r chooses what the verifier sees in xp_cfg (.rodata):
 *   daemon   (default) what the daemon sets: plain redirect, 4 workers, every XP_CFG_* flag
 *   peer     the same with redirect = peer
 *   zero     the object's own initial values
 *   unknown  .rodata loses BPF_F_RDONLY_PROG, so no config value is a constant and every
 *            config-dependent branch is verified (the worst case)
 *
 * Output, one line per program:   LABEL PROGRAM verified_insns=N
 *                             or  LABEL PROGRAM FAILED ... (with the tail of libbpf's log)
 * Exit 0 when every program loaded with at most MAX (default 20000) verified instructions,
 * 1 otherwise, 77 without the privileges to load BPF.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <xproxy/bpf_abi.h>

static char logbuf[1 << 20];
static size_t loglen;

static int log_cb(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	int n;

	if (level == LIBBPF_DEBUG)
		return 0;
	n = vsnprintf(logbuf + loglen, sizeof(logbuf) - loglen, fmt, ap);
	if (n > 0)
		loglen = loglen + (size_t)n >= sizeof(logbuf) ? sizeof(logbuf) - 1 : loglen + n;
	return 0;
}

static void print_log_tail(int lines)
{
	const char *p = logbuf + loglen;
	int seen = 0;

	while (p > logbuf && seen <= lines) {
		p--;
		if (*p == '\n')
			seen++;
	}
	fprintf(stderr, "%s", p);
}

/* Offset of a variable inside a datasec, or -1. */
static long var_offset(const struct btf *btf, const char *sec, const char *var)
{
	const struct btf_var_secinfo *vs;
	const struct btf_type *t;
	int id, i;

	id = btf__find_by_name_kind(btf, sec, BTF_KIND_DATASEC);
	if (id < 0)
		return -1;
	t = btf__type_by_id(btf, id);
	vs = btf_var_secinfos(t);
	for (i = 0; i < btf_vlen(t); i++, vs++) {
		const struct btf_type *v = btf__type_by_id(btf, vs->type);

		if (!strcmp(btf__name_by_offset(btf, v->name_off), var))
			return vs->offset;
	}
	return -1;
}

static int set_config(struct bpf_object *obj, const char *mode)
{
	struct xp_bpf_config cfg = {
		.abi_version = XP_BPF_ABI_VERSION,
		.flags = XP_CFG_EVENTS_DIRECT | XP_CFG_DROP_EVENTS | XP_CFG_UDP,
		.mark = 0x5870,
		.mark_mask = 0xffff,
		.xp0_ifindex = 1,
		.redirect_mode = XP_REDIRECT_PLAIN,
		.n_workers = 4,
		.heartbeat_timeout_ns = 1500000000ull,
		.xp0p_mac = {0x02, 0, 0, 0, 0, 0x02},
		.xp0_mac = {0x02, 0, 0, 0, 0, 0x01},
	};
	struct bpf_map *map;
	size_t size;
	long off;
	char *val;

	map = bpf_object__find_map_by_name(obj, ".rodata");
	if (!map) {
		fprintf(stderr, "xp_bpfload: object has no .rodata (xp_cfg)\n");
		return -1;
	}
	if (!strcmp(mode, "zero"))
		return 0;
	if (!strcmp(mode, "unknown"))
		return bpf_map__set_map_flags(map, bpf_map__map_flags(map) & ~BPF_F_RDONLY_PROG);
	if (!strcmp(mode, "peer"))
		cfg.redirect_mode = XP_REDIRECT_PEER;
	else if (strcmp(mode, "daemon")) {
		fprintf(stderr, "xp_bpfload: unknown -r mode %s\n", mode);
		return -1;
	}
	off = var_offset(bpf_object__btf(obj), ".rodata", "xp_cfg");
	/* libbpf 1.1 declares it const; before load it is the writable initial image */
	val = (char *)bpf_map__initial_value(map, &size);
	if (off < 0 || !val || off + sizeof(cfg) > size) {
		fprintf(stderr, "xp_bpfload: xp_cfg not found in .rodata\n");
		return -1;
	}
	memcpy(val + off, &cfg, sizeof(cfg));
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = "daemon", *label = NULL, *path;
	struct bpf_program *prog;
	struct bpf_object *obj;
	unsigned long max = 20000;
	int opt, err, bad = 0;

	while ((opt = getopt(argc, argv, "m:r:l:")) != -1) {
		switch (opt) {
		case 'm':
			max = strtoul(optarg, NULL, 0);
			break;
		case 'r':
			mode = optarg;
			break;
		case 'l':
			label = optarg;
			break;
		default:
			fprintf(stderr, "usage: xp_bpfload [-m MAX] [-r MODE] [-l LABEL] OBJ.o\n");
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: xp_bpfload [-m MAX] [-r MODE] [-l LABEL] OBJ.o\n");
		return 2;
	}
	path = argv[optind];
	if (!label)
		label = path;
	if (geteuid() != 0) {
		printf("SKIP: loading BPF needs root (CAP_BPF, CAP_NET_ADMIN)\n");
		return 77;
	}
	libbpf_set_print(log_cb);

	obj = bpf_object__open_file(path, NULL);
	if (!obj) {
		fprintf(stderr, "xp_bpfload: cannot open %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (set_config(obj, mode)) {
		bpf_object__close(obj);
		return 1;
	}
	err = bpf_object__load(obj);
	if (err) {
		printf("%s - FAILED: %s (libbpf log tail on stderr)\n", label, strerror(-err));
		print_log_tail(40);
		bpf_object__close(obj);
		return err == -EPERM ? 77 : 1;
	}
	bpf_object__for_each_program(prog, obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len)) {
			printf("%s %s FAILED: prog info: %s\n", label, bpf_program__name(prog),
			       strerror(errno));
			bad = 1;
			continue;
		}
		printf("%s %s verified_insns=%u%s\n", label, bpf_program__name(prog),
		       info.verified_insns, info.verified_insns > max ? " OVER LIMIT" : "");
		if (info.verified_insns > max)
			bad = 1;
	}
	bpf_object__close(obj);
	return bad;
}
