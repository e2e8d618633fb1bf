/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_dns_upstream - the dns plugin end to end against a fake host table and fake DNS servers
 * on the loopback (threads with blocking sockets): answers and their write-back order, the
 * cache, failover on timeout and on ICMP errors, spoofed (mismatched) and malformed answers,
 * TC -> TCP, per-domain upstream selection, dials through an outbound, cancel, SERVFAIL when
 * everything fails, and config errors. Spec parsing is tested directly.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include <xproxy/plugin.h>

#include "../../plugins/dns/msg.h"
#include "../../plugins/dns/upstream.h"
#include "dns_build.h"

/* ------------------------------------------------------------------------------ fake host */

struct xp_loop {
	int unused;
};
struct xp_handle {
	int unused;
};
struct xp_io {
	int fd;
	unsigned events;
	xp_io_cb cb;
	void *arg;
	int live;
};
struct xp_timer {
	xp_timer_cb cb;
	void *arg;
	uint64_t due; /* 0: stopped */
	int live;
};
struct xp_counter {
	char name[64];
	uint64_t v;
};
struct xp_dns_query {
	struct xp_conn_info info;
	int answers, drops;
	uint8_t ans[DNS_MAX_MSG];
	size_t len;
	int learned_before_answer;
};
struct xp_dial {
	int unused;
};

#define MAXW 64
static struct xp_loop loop;
static struct xp_handle self;
static struct xp_io *ios[MAXW];
static struct xp_timer *timers[MAXW];
static struct xp_counter counters[32];
static int n_counters;
static struct {
	char name[256];
	union xp_sockaddr addr;
	uint32_t ttl_ms;
} learned[256];
static int n_learned;
static int dials;
static struct xp_dial the_dial;

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void h_log(xp_handle_t *who, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "  plugin: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

static xp_loop_t *h_loop(void)
{
	return &loop;
}

static uint64_t h_now(xp_loop_t *l)
{
	return mono_ms();
}

static void *slot(void **arr, void *p)
{
	for (int i = 0; i < MAXW; i++)
		if (!arr[i])
			return arr[i] = p;
	fail_msg("too many watchers");
	return NULL;
}

static void unslot(void **arr, void *p)
{
	for (int i = 0; i < MAXW; i++)
		if (arr[i] == p)
			arr[i] = NULL;
}

static xp_io_t *h_io_new(xp_loop_t *l, int fd, xp_io_cb cb, void *arg)
{
	struct xp_io *io = calloc(1, sizeof(*io));

	io->fd = fd;
	io->cb = cb;
	io->arg = arg;
	return slot((void **)ios, io);
}

static void h_io_set(xp_io_t *io, unsigned ev)
{
	io->events = ev;
}

static void h_io_free(xp_io_t *io)
{
	unslot((void **)ios, io);
	free(io);
}

static xp_timer_t *h_timer_new(xp_loop_t *l, xp_timer_cb cb, void *arg)
{
	struct xp_timer *t = calloc(1, sizeof(*t));

	t->cb = cb;
	t->arg = arg;
	return slot((void **)timers, t);
}

static void h_timer_set(xp_timer_t *t, uint64_t after, uint64_t rep)
{
	t->due = mono_ms() + after;
}

static void h_timer_stop(xp_timer_t *t)
{
	t->due = 0;
}

static void h_timer_free(xp_timer_t *t)
{
	unslot((void **)timers, t);
	free(t);
}

static int h_upstream_socket(xp_handle_t *who, int domain, int type, int proto)
{
	int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);

	return fd < 0 ? -errno : fd;
}

static const char *h_config_get(const char *section, const char *key)
{
	return !strcmp(section, "outbound.px") && !strcmp(key, "plugin") ? "direct" : NULL;
}

static xp_counter_t *h_counter_new(xp_handle_t *who, const char *name, const char *help)
{
	struct xp_counter *c = &counters[n_counters++];

	snprintf(c->name, sizeof(c->name), "%s", name);
	c->v = 0;
	return c;
}

static void h_counter_add(xp_counter_t *c, uint64_t d)
{
	__atomic_add_fetch(&c->v, d, __ATOMIC_RELAXED);
}

static uint64_t counter(const char *name)
{
	for (int i = 0; i < n_counters; i++)
		if (!strcmp(counters[i].name, name))
			return counters[i].v;
	fail_msg("no counter %s", name);
	return 0;
}

static int h_learn(xp_handle_t *who, const char *domain, const union xp_sockaddr *a,
		   uint32_t ttl_ms)
{
	if (n_learned == (int)(sizeof(learned) / sizeof(learned[0])))
		n_learned = 0; /* the tests look at the last few only */
	snprintf(learned[n_learned].name, sizeof(learned[0].name), "%s", domain);
	learned[n_learned].addr = *a;
	learned[n_learned].ttl_ms = ttl_ms;
	n_learned++;
	return 0;
}

static const struct xp_conn_info *h_qinfo(xp_dns_query_t *q)
{
	return &q->info;
}

static xp_loop_t *h_qloop(xp_dns_query_t *q)
{
	return &loop;
}

static void h_answer(xp_dns_query_t *q, const uint8_t *msg, size_t len)
{
	q->answers++;
	memcpy(q->ans, msg, len);
	q->len = len;
	q->learned_before_answer = n_learned;
}

static void h_drop(xp_dns_query_t *q, const char *reason)
{
	q->drops++;
}

/* A dial through "px": a plain blocking connect, reported at once (the synchronous path). */
static xp_dial_t *h_dial(xp_handle_t *who, xp_loop_t *l, const struct xp_dial_req *req)
{
	int fd = socket(req->target.addr.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	dials++;
	assert_string_equal(req->outbound, "px");
	assert_int_equal(req->target.l4proto, IPPROTO_TCP);
	if (connect(fd, &req->target.addr.sa, sizeof(struct sockaddr_in))) {
		close(fd);
		errno = ECONNREFUSED;
		return NULL;
	}
	req->done(req->arg, &the_dial, 0, fd, NULL, NULL);
	return &the_dial;
}

static void h_dial_close(xp_dial_t *d)
{
}

static struct xp_host host = {
	.size = sizeof(struct xp_host),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.log = h_log,
	.loop_main = h_loop,
	.loop_current = h_loop,
	.now_ms = h_now,
	.io_new = h_io_new,
	.io_set = h_io_set,
	.io_free = h_io_free,
	.timer_new = h_timer_new,
	.timer_set = h_timer_set,
	.timer_stop = h_timer_stop,
	.timer_free = h_timer_free,
	.upstream_socket = h_upstream_socket,
	.config_get = h_config_get,
	.counter_new = h_counter_new,
	.counter_add = h_counter_add,
	.dns_learn = h_learn,
	.dns_query_info = h_qinfo,
	.dns_query_loop = h_qloop,
	.dns_answer = h_answer,
	.dns_drop = h_drop,
	.dial = h_dial,
	.dial_close = h_dial_close,
};

/* Run io and timer callbacks until q is answered (or dropped) or max_ms passes. */
static void run(struct xp_dns_query *q, int max_ms)
{
	uint64_t end = mono_ms() + (uint64_t)max_ms;

	while ((!q || !(q->answers + q->drops)) && mono_ms() < end) {
		struct pollfd pfd[MAXW];
		struct xp_io *who[MAXW];
		int n = 0, i;

		for (i = 0; i < MAXW; i++) {
			if (ios[i] && ios[i]->events) {
				pfd[n].fd = ios[i]->fd;
				pfd[n].events = (ios[i]->events & XP_IO_READ ? POLLIN : 0) |
						(ios[i]->events & XP_IO_WRITE ? POLLOUT : 0);
				who[n++] = ios[i];
			}
		}
		poll(pfd, (nfds_t)n, 10);
		for (i = 0; i < n; i++) {
			unsigned ev = 0;
			int j, live = 0;

			for (j = 0; j < MAXW; j++)
				live |= ios[j] == who[i];
			if (!live || !pfd[i].revents)
				continue;
			if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
				ev |= XP_IO_READ;
			if (pfd[i].revents & POLLOUT)
				ev |= XP_IO_WRITE;
			who[i]->cb(who[i], who[i]->fd, ev, who[i]->arg);
		}
		for (i = 0; i < MAXW; i++) {
			if (timers[i] && timers[i]->due && timers[i]->due <= mono_ms()) {
				timers[i]->due = 0;
				timers[i]->cb(timers[i], timers[i]->arg);
			}
		}
	}
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------------------ fake servers */

enum mode {
	M_ANSWER,    /* A 192.0.2.<last> ttl 300 */
	M_SILENT,    /* read, never answer */
	M_MISMATCH,  /* first an answer with another id, then a good one */
	M_WRONGQ,    /* first an answer to another question, then a good one */
	M_MALFORMED, /* first garbage, then a good one */
	M_TC,	     /* UDP: TC answers; TCP on the same port: the real answer (.7) */
	M_SERVFAIL,
};

struct server {
	int udp, tcp;
	uint16_t port;
	enum mode mode;
	uint8_t last; /* last octet of the address it answers */
	int queries;  /* atomically counted */
	pthread_t th_udp, th_tcp;
	int stop;
};

static size_t make_answer(struct server *s, const uint8_t *q, size_t qlen, uint8_t *out,
			  int tc, uint8_t last)
{
	struct dns_msg m;
	struct mb a;
	uint8_t ip[4] = { 192, 0, 2, last };
	uint8_t ip6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = last };

	assert_int_equal(dns_parse(q, qlen, &m, NULL, NULL), 0);
	mb_hdr(&a, m.id, 0x8180 | (tc ? 0x0200 : 0), 1, tc ? 0 : 1, 0, 0);
	mb_bytes(&a, q + 12, m.question_end - 12u);
	if (s->mode == M_SERVFAIL) {
		a.b[3] = 0x82;
		a.b[7] = 0;
	} else if (!tc) {
		if (m.q.qtype == DNS_T_AAAA)
			mb_rr_ptr(&a, DNS_T_AAAA, 300, ip6, 16);
		else
			mb_rr_ptr(&a, DNS_T_A, 300, ip, 4);
	}
	memcpy(out, a.b, a.n);
	return a.n;
}

static void *udp_main(void *arg)
{
	struct server *s = arg;
	uint8_t q[4096], out[4096];
	struct sockaddr_storage peer;

	for (;;) {
		socklen_t pl = sizeof(peer);
		ssize_t n = recvfrom(s->udp, q, sizeof(q), 0, (struct sockaddr *)&peer, &pl);
		size_t alen;

		if (n <= 0 || __atomic_load_n(&s->stop, __ATOMIC_RELAXED))
			return NULL;
		__atomic_add_fetch(&s->queries, 1, __ATOMIC_RELAXED);
		if (s->mode == M_SILENT)
			continue;
		alen = make_answer(s, q, (size_t)n, out, s->mode == M_TC, s->last);
		if (s->mode == M_MISMATCH) {
			out[0] ^= 0x55;
			sendto(s->udp, out, alen, 0, (struct sockaddr *)&peer, pl);
			out[0] ^= 0x55;
		} else if (s->mode == M_WRONGQ) {
			out[13] ^= 0x01; /* first letter of the name differs */
			sendto(s->udp, out, alen, 0, (struct sockaddr *)&peer, pl);
			out[13] ^= 0x01;
		} else if (s->mode == M_MALFORMED) {
			static const uint8_t junk[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 };

			sendto(s->udp, junk, sizeof(junk), 0, (struct sockaddr *)&peer, pl);
		}
		sendto(s->udp, out, alen, 0, (struct sockaddr *)&peer, pl);
	}
}

static void *tcp_main(void *arg)
{
	struct server *s = arg;
	uint8_t q[4096], out[4096 + 2];

	for (;;) {
		int c = accept(s->tcp, NULL, NULL);
		size_t got = 0, need = 2;
		size_t alen;

		if (c < 0 || __atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
			if (c >= 0)
				close(c);
			return NULL;
		}
		while (got < need) {
			ssize_t n = read(c, q + got, need - got);

			if (n <= 0)
				break;
			got += (size_t)n;
			if (got == 2)
				need = 2 + dns_get16(q);
		}
		if (got == need && need > 2) {
			__atomic_add_fetch(&s->queries, 1, __ATOMIC_RELAXED);
			alen = make_answer(s, q + 2, need - 2, out + 2, 0,
					   s->mode == M_TC ? 7 : s->last);
			dns_put16(out, (uint16_t)alen);
			if (write(c, out, alen + 2) < 0)
				perror("write");
		}
		close(c);
	}
}

static void server_start(struct server *s, enum mode mode, uint8_t last)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t al = sizeof(a);
	int one = 1;

	memset(s, 0, sizeof(*s));
	s->mode = mode;
	s->last = last;
	/* UDP and TCP on one port number: the kernel picks the UDP port, and that number may be
	 * taken for TCP by someone else on a busy machine (CI saw it), so try a few */
	for (int tries = 0;; tries++) {
		a.sin_port = 0;
		al = sizeof(a);
		s->udp = socket(AF_INET, SOCK_DGRAM, 0);
		assert_int_equal(bind(s->udp, (struct sockaddr *)&a, sizeof(a)), 0);
		getsockname(s->udp, (struct sockaddr *)&a, &al);
		s->port = ntohs(a.sin_port);
		s->tcp = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(s->tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!bind(s->tcp, (struct sockaddr *)&a, sizeof(a)))
			break;
		assert_true(errno == EADDRINUSE && tries < 20);
		close(s->tcp);
		close(s->udp);
	}
	assert_int_equal(listen(s->tcp, 16), 0);
	pthread_create(&s->th_udp, NULL, udp_main, s);
	pthread_create(&s->th_tcp, NULL, tcp_main, s);
}

static void server_stop(struct server *s)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001),
				 .sin_port = htons(s->port) };
	int fd;

	__atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	sendto(fd, "x", 1, 0, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		close(fd);
	else
		close(fd);
	pthread_join(s->th_udp, NULL);
	pthread_join(s->th_tcp, NULL);
	close(s->udp);
	close(s->tcp);
}

/* A closed UDP port on the loopback (ICMP port unreachable). */
static uint16_t closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd);
	return ntohs(a.sin_port);
}

/* ------------------------------------------------------------------------------ the plugin */

/* same layout as the plugin's struct dns_cfg (its option table is checked below) */
struct dns_cfg {
	const char *const *upstream;
	const char *const *upstream_rule;
	uint64_t timeout_ms;
	const char *ca_file;
	int64_t cache_size;
	uint64_t cache_bytes;
	uint64_t cache_max_ttl_ms;
	uint64_t upstream_idle_ms;
};

static const struct xp_plugin_desc *desc;
static char specs[8][128];
static const char *ups_list[9];
static const char *rule_list[4];
static struct dns_cfg cfg;
/* upstream timeout of the instances: short for the fake servers; the unbound test raises it,
 * since a TLS handshake on a loaded 2-CPU CI machine can take longer than 300 ms */
static uint64_t inst_timeout_ms = 300;
static uint64_t inst_idle_ms = 10000;

static void *instance(int n_ups, int cache)
{
	void *inst = NULL;

	n_counters = 0;
	for (int i = 0; i < n_ups; i++)
		ups_list[i] = specs[i];
	ups_list[n_ups] = NULL;
	cfg.upstream = ups_list;
	cfg.upstream_rule = rule_list;
	cfg.timeout_ms = inst_timeout_ms;
	cfg.cache_size = cache ? 100 : 0;
	cfg.cache_bytes = 1 << 20;
	cfg.cache_max_ttl_ms = 86400000;
	cfg.upstream_idle_ms = inst_idle_ms;
	if (desc->instance_new(NULL, &host, &self, &cfg, &inst))
		return NULL;
	return inst;
}

static void ask(void *inst, struct xp_dns_query *q, uint16_t id, const char *name, uint16_t type)
{
	struct mb m;

	memset(q, 0, sizeof(*q));
	q->info.size = sizeof(q->info);
	q->info.l4proto = IPPROTO_UDP;
	mb_query(&m, id, name, type, 1, 0);
	assert_int_equal(desc->dns->query(inst, q, m.b, m.n), 0);
}

static int last_octet_cb(const uint8_t *msg, size_t len, const struct dns_rr *rr, void *arg)
{
	if (rr->section == 1 && (rr->type == DNS_T_A || rr->type == DNS_T_AAAA))
		*(int *)arg = msg[rr->rdata_off + rr->rdlen - 1];
	return 0;
}

/* The last octet of the one address in the answer section. */
static uint8_t answer_last_octet(const struct xp_dns_query *q)
{
	struct dns_msg d;
	int last = -1;

	assert_int_equal(dns_parse(q->ans, q->len, &d, last_octet_cb, &last), 0);
	assert_int_equal(d.ancount, 1);
	assert_true(last >= 0);
	return (uint8_t)last;
}

static int setup(void **state)
{
	desc = xp_plugin_query(XP_PLUGIN_ABI);
	assert_non_null(desc);
	n_learned = 0;
	dials = 0;
	memset(rule_list, 0, sizeof(rule_list));
	return 0;
}

static void test_option_table(void **state)
{
	const struct xp_option *o;
	int seen = 0;

	/* the test's mirror of struct dns_cfg must match the plugin's offsets */
	for (o = desc->options; o->name; o++) {
		if (!strcmp(o->name, "upstream"))
			seen += o->offset == offsetof(struct dns_cfg, upstream) &&
				o->type == XP_OPT_LIST;
		if (!strcmp(o->name, "upstream_rule"))
			seen += o->offset == offsetof(struct dns_cfg, upstream_rule) &&
				o->type == XP_OPT_LIST;
		if (!strcmp(o->name, "timeout"))
			seen += o->offset == offsetof(struct dns_cfg, timeout_ms);
		if (!strcmp(o->name, "cache_max_ttl"))
			seen += o->offset == offsetof(struct dns_cfg, cache_max_ttl_ms);
		if (!strcmp(o->name, "upstream_idle_timeout"))
			seen += o->offset == offsetof(struct dns_cfg, upstream_idle_ms) &&
				!strcmp(o->def, "10s");
	}
	assert_int_equal(seen, 5);
	assert_int_equal(desc->config_size, sizeof(struct dns_cfg));
	assert_int_equal(desc->kinds, XP_KIND_DNS);
}

static void test_answer_learn_cache(void **state)
{
	struct server s;
	struct xp_dns_query q;
	void *inst;
	int fds;

	fds = open_fds();
	server_start(&s, M_ANSWER, 9);
	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1:%u", s.port);
	inst = instance(1, 1);
	assert_non_null(inst);

	ask(inst, &q, 0x1111, "Www.Example.COM", DNS_T_A);
	run(&q, 3000);
	assert_int_equal(q.answers, 1);
	assert_int_equal(dns_get16(q.ans), 0x1111);
	assert_int_equal(answer_last_octet(&q), 9);
	/* written back before the answer, under the question's name, lower-cased */
	assert_int_equal(q.learned_before_answer, 1);
	assert_int_equal(n_learned, 1);
	assert_string_equal(learned[0].name, "www.example.com");
	assert_int_equal(learned[0].addr.sa.sa_family, AF_INET);
	assert_int_equal(ntohl(learned[0].addr.in.sin_addr.s_addr), 0xc0000209);
	assert_int_equal(learned[0].ttl_ms, 300000);

	/* again: from the cache, the server sees nothing, the address is learned again */
	ask(inst, &q, 0x2222, "www.example.com", DNS_T_A);
	assert_int_equal(q.answers, 1); /* answered inside query() */
	assert_int_equal(dns_get16(q.ans), 0x2222);
	assert_int_equal(n_learned, 2);
	assert_int_equal(__atomic_load_n(&s.queries, __ATOMIC_RELAXED), 1);
	assert_int_equal(counter("cache_hits"), 1);
	assert_int_equal(counter("queries"), 2);

	/* AAAA */
	ask(inst, &q, 0x3333, "v6.example", DNS_T_AAAA);
	run(&q, 3000);
	assert_int_equal(q.answers, 1);
	assert_int_equal(learned[2].addr.sa.sa_family, AF_INET6);
	assert_int_equal(learned[2].addr.in6.sin6_addr.s6_addr[15], 9);

	desc->instance_free(inst);
	server_stop(&s);
	assert_int_equal(open_fds(), fds);
}

static void test_failover_timeout_and_icmp(void **state)
{
	struct server silent, good;
	struct xp_dns_query q;
	uint64_t t0;
	void *inst;

	server_start(&silent, M_SILENT, 1);
	server_start(&good, M_ANSWER, 2);
	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1:%u", closed_port());
	snprintf(specs[1], sizeof(specs[1]), "127.0.0.1:%u", 0); /* replaced below */
	snprintf(specs[1], sizeof(specs[1]), "udp://127.0.0.1:%u", silent.port);
	snprintf(specs[2], sizeof(specs[2]), "tcp://127.0.0.1:%u", good.port);
	inst = instance(3, 0);
	assert_non_null(inst);
	t0 = mono_ms();
	ask(inst, &q, 7, "fo.example", DNS_T_A);
	run(&q, 9000);
	assert_int_equal(q.answers, 1);
	assert_int_equal(answer_last_octet(&q), 2);
	/* the refused port failed at once, the silent one after its 300 ms timeout */
	assert_true(mono_ms() - t0 >= 290);
	assert_int_equal(counter("upstream_failures"), 2);
	assert_int_equal(__atomic_load_n(&silent.queries, __ATOMIC_RELAXED), 1);
	desc->instance_free(inst);
	server_stop(&silent);
	server_stop(&good);
}

static void test_spoofed_and_malformed(void **state)
{
	static const enum mode modes[] = { M_MISMATCH, M_WRONGQ, M_MALFORMED };
	static const char *const counts[] = { "mismatched", "mismatched", "malformed" };

	for (size_t i = 0; i < 3; i++) {
		struct server s;
		struct xp_dns_query q;
		void *inst;

		server_start(&s, modes[i], 4);
		snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1:%u", s.port);
		inst = instance(1, 1);
		ask(inst, &q, 99, "spoof.example", DNS_T_A);
		run(&q, 3000);
		/* the bad datagram was counted and ignored, the real one answered */
		assert_int_equal(q.answers, 1);
		assert_int_equal(answer_last_octet(&q), 4);
		assert_int_equal(dns_get16(q.ans), 99);
		assert_int_equal(counter(counts[i]), 1);
		assert_int_equal(counter("upstream_failures"), 0);
		desc->instance_free(inst);
		server_stop(&s);
	}
}

static void test_tc_retries_tcp(void **state)
{
	struct server s;
	struct xp_dns_query q;
	void *inst;

	server_start(&s, M_TC, 5);
	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1:%u", s.port);
	inst = instance(1, 1);
	ask(inst, &q, 5, "big.example", DNS_T_A);
	run(&q, 3000);
	assert_int_equal(q.answers, 1);
	assert_int_equal(answer_last_octet(&q), 7); /* the TCP listener's answer */
	assert_int_equal(counter("tcp_retries"), 1);
	desc->instance_free(inst);
	server_stop(&s);
}

static void test_rules_and_via(void **state)
{
	struct server def, corp;
	struct xp_dns_query q;
	void *inst;

	server_start(&def, M_ANSWER, 10);
	server_start(&corp, M_ANSWER, 20);
	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1:%u", def.port);
	snprintf(specs[1], sizeof(specs[1]), "corp=tcp://127.0.0.1:%u via px", corp.port);
	rule_list[0] = "domain-suffix:corp.example|intra.example, corp";
	inst = instance(2, 0);
	assert_non_null(inst);

	ask(inst, &q, 1, "git.CORP.example", DNS_T_A);
	run(&q, 3000);
	assert_int_equal(answer_last_octet(&q), 20);
	assert_int_equal(dials, 1);
	ask(inst, &q, 2, "intra.example", DNS_T_A);
	run(&q, 3000);
	assert_int_equal(answer_last_octet(&q), 20);
	/* a suffix match is on label boundaries */
	ask(inst, &q, 3, "notcorp.example", DNS_T_A);
	run(&q, 3000);
	assert_int_equal(answer_last_octet(&q), 10);
	ask(inst, &q, 4, "www.example", DNS_T_A);
	run(&q, 3000);
	assert_int_equal(answer_last_octet(&q), 10);
	assert_int_equal(dials, 2);
	desc->instance_free(inst);
	server_stop(&def);
	server_stop(&corp);
}

static void test_servfail_and_cancel(void **state)
{
	struct server silent, sf, good;
	struct xp_dns_query q;
	struct dns_msg d;
	void *inst;
	int fds;

	server_start(&silent, M_SILENT, 1);
	server_start(&sf, M_SERVFAIL, 1);
	server_start(&good, M_ANSWER, 3);
	fds = open_fds();

	/* everything fails: the client gets SERVFAIL, not silence */
	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1:%u", silent.port);
	inst = instance(1, 1);
	ask(inst, &q, 42, "dead.example", DNS_T_A);
	run(&q, 3000);
	assert_int_equal(q.answers, 1);
	assert_int_equal(dns_parse(q.ans, q.len, &d, NULL, NULL), 0);
	assert_int_equal(DNS_RCODE(d.flags), DNS_R_SERVFAIL);
	assert_int_equal(d.id, 42);

	/* cancel while pending: never answered, nothing left behind */
	ask(inst, &q, 43, "dead2.example", DNS_T_A);
	run(NULL, 50);
	desc->dns->cancel(inst, &q);
	run(NULL, 500);
	assert_int_equal(q.answers + q.drops, 0);
	desc->instance_free(inst);
	for (int i = 0; i < MAXW; i++) {
		assert_null(ios[i]);
		assert_null(timers[i]);
	}

	/* SERVFAIL from the first upstream: the next one is asked */
	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1:%u", sf.port);
	snprintf(specs[1], sizeof(specs[1]), "udp://127.0.0.1:%u", good.port);
	inst = instance(2, 1);
	ask(inst, &q, 44, "x.example", DNS_T_A);
	run(&q, 3000);
	assert_int_equal(answer_last_octet(&q), 3);
	desc->instance_free(inst);
	assert_int_equal(open_fds(), fds);
	server_stop(&silent);
	server_stop(&sf);
	server_stop(&good);
}

static void test_bad_client_queries(void **state)
{
	struct xp_dns_query q = { .info = { .l4proto = IPPROTO_UDP } };
	static const uint8_t junk[] = { 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1 };
	struct mb m;
	void *inst;

	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1:9");
	inst = instance(1, 1);
	assert_int_equal(desc->dns->query(inst, &q, junk, sizeof(junk)), 0);
	assert_int_equal(q.drops, 1);
	assert_int_equal(desc->dns->query(inst, &q, junk, 5), 0);
	assert_int_equal(q.drops, 2);
	/* an answer sent as a query */
	mb_answer_a(&m, 1, "a.b", (const uint8_t *)"\1\2\3\4", 5);
	assert_int_equal(desc->dns->query(inst, &q, m.b, m.n), 0);
	assert_int_equal(q.drops, 3);
	assert_int_equal(counter("malformed"), 3);
	assert_int_equal(q.answers, 0);
	desc->instance_free(inst);
}

static void test_config_errors(void **state)
{
	/* udp via an outbound cannot work: refused at load */
	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1 via px");
	assert_null(instance(1, 1));
	/* via an outbound that does not exist */
	snprintf(specs[0], sizeof(specs[0]), "tcp://127.0.0.1 via nope");
	assert_null(instance(1, 1));
	/* no upstream */
	assert_null(instance(0, 1));
	/* a rule naming a tag no upstream has */
	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1");
	rule_list[0] = "domain-suffix:corp.example, corp";
	assert_null(instance(1, 1));
	rule_list[0] = NULL;
	/* every upstream tagged: nothing for the other names */
	snprintf(specs[0], sizeof(specs[0]), "corp=udp://127.0.0.1");
	assert_null(instance(1, 1));
	/* a host name instead of an address */
	snprintf(specs[0], sizeof(specs[0]), "udp://dns.example");
	assert_null(instance(1, 1));
	snprintf(specs[0], sizeof(specs[0]), "udp://127.0.0.1");
	void *inst = instance(1, 1);

	assert_non_null(inst);
	desc->instance_free(inst);
}

static void test_spec_parse(void **state)
{
	struct upstream u;
	char err[256];

	assert_int_equal(upstream_parse("udp://192.0.2.1", &u, err, sizeof(err)), 0);
	assert_int_equal(u.kind, UPS_UDP);
	assert_int_equal(ntohs(u.addr.in.sin_port), 53);
	assert_string_equal(u.tag, "");

	assert_int_equal(upstream_parse("tls://[2001:db8::1]#dns.example", &u, err, sizeof(err)),
			 0);
	assert_int_equal(u.kind, UPS_TLS);
	assert_int_equal(u.addr.sa.sa_family, AF_INET6);
	assert_int_equal(ntohs(u.addr.in6.sin6_port), 853);
	assert_string_equal(u.name, "dns.example");

	assert_int_equal(upstream_parse("corp=https://10.0.0.1:8443/q#doh.corp via px", &u, err,
					sizeof(err)),
			 0);
	assert_int_equal(u.kind, UPS_HTTPS);
	assert_string_equal(u.tag, "corp");
	assert_string_equal(u.path, "/q");
	assert_string_equal(u.name, "doh.corp");
	assert_string_equal(u.via, "px");
	assert_int_equal(ntohs(u.addr.in.sin_port), 8443);

	assert_int_equal(upstream_parse("https://10.0.0.1", &u, err, sizeof(err)), 0);
	assert_string_equal(u.path, "/dns-query");
	assert_int_equal(ntohs(u.addr.in.sin_port), 443);

	static const char *const bad[] = {
		"10.0.0.1",		   /* no scheme */
		"quic://10.0.0.1",	   /* unknown scheme */
		"udp://10.0.0.1:0",	   /* port 0 */
		"udp://10.0.0.1:70000",	   /* port too big */
		"udp://10.0.0.1:5x",	   /* port junk */
		"udp://10.0.0.1#name",	   /* #NAME without TLS */
		"tcp://10.0.0.1/path",	   /* path without https */
		"udp://[2001:db8::1",	   /* missing ] */
		"bad tag=udp://10.0.0.1",  /* tag with a space */
		"tcp://10.0.0.1 via",	   /* via without a name */
		"tcp://10.0.0.1 via a b",  /* via with two names */
		"udp://example.com",	   /* a name */
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(upstream_parse(bad[i], &u, err, sizeof(err)), -EINVAL);
		assert_true(strlen(err) > 0);
	}
	char longspec[2000];

	memset(longspec, 'a', sizeof(longspec) - 1);
	longspec[sizeof(longspec) - 1] = 0;
	assert_int_equal(upstream_parse(longspec, &u, err, sizeof(err)), -EINVAL);

	struct ups_rule *rules = NULL;
	size_t n = 0;

	assert_int_equal(ups_rule_parse("domain-suffix:A.example.|b.example, t1", &rules, &n, err,
					sizeof(err)),
			 0);
	assert_int_equal(ups_rule_parse("domain:exact.example, t2", &rules, &n, err, sizeof(err)),
			 0);
	assert_int_equal(n, 3);
	assert_string_equal(ups_rule_select(rules, n, "a.example"), "t1");
	assert_string_equal(ups_rule_select(rules, n, "x.a.example"), "t1");
	assert_string_equal(ups_rule_select(rules, n, "xa.example"), "");
	assert_string_equal(ups_rule_select(rules, n, "exact.example"), "t2");
	assert_string_equal(ups_rule_select(rules, n, "sub.exact.example"), "");
	assert_int_equal(ups_rule_parse("domain-suffix:x", &rules, &n, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(ups_rule_parse("cidr:1.2.3.4, t", &rules, &n, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(ups_rule_parse("domain-suffix:, t", &rules, &n, err, sizeof(err)),
			 -EINVAL);
	free(rules);
}

/* ------------------------------------------------------------- pooled stream connections */

/* A TCP server that keeps connections open and pipelines (one connection at a time): it reads
 * queries as they come, answers each batch of `batch` in reverse order, can send a stray
 * answer (unknown id) before each real one, close a connection after `close_after` answers on
 * it, or, once `answer_max` answers are out, close every connection as soon as queries come;
 * `delay_ms` holds back answers and closes. */
struct ptcp {
	int lfd;
	uint16_t port;
	pthread_t th;
	int batch, close_after, answer_max, stray;
	int delay_ms; /* before answering a batch, and before closing after close_after */
	int mute_after; /* on each connection, ignore every query after this many answers */
	uint8_t last;
	int accepts, queries, answered, server_closes, client_closes; /* atomic */
	int stop;
};

static int ptcp_get(int *v)
{
	return __atomic_load_n(v, __ATOMIC_ACQUIRE);
}

static void ptcp_inc(int *v)
{
	__atomic_add_fetch(v, 1, __ATOMIC_RELEASE);
}

static void ptcp_answer(struct ptcp *p, int c, const uint8_t *q, size_t qlen)
{
	struct server s = { .mode = M_ANSWER };
	uint8_t out[4096 + 2];
	size_t alen = make_answer(&s, q, qlen, out + 2, 0, p->last);

	dns_put16(out, (uint16_t)alen);
	if (p->stray) {
		uint16_t id = dns_get16(out + 2);

		dns_put16(out + 2, 0x7777);
		if (write(c, out, alen + 2) < 0)
			perror("write");
		dns_put16(out + 2, id);
	}
	if (write(c, out, alen + 2) < 0)
		perror("write");
}

/* Serve one connection until either side closes it. */
static void ptcp_serve(struct ptcp *p, int c)
{
	uint8_t buf[8192], q[16][512];
	size_t qlen[16], got = 0, n, mlen;
	int nq = 0, on_conn = 0;

	for (;;) {
		struct pollfd pfd = { .fd = c, .events = POLLIN };
		ssize_t r;

		if (ptcp_get(&p->stop))
			break;
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		r = read(c, buf + got, sizeof(buf) - got);
		if (r <= 0) {
			ptcp_inc(&p->client_closes);
			break;
		}
		got += (size_t)r;
		while ((n = ups_frame_next(buf, got, &mlen)) > 0) {
			if (nq < 16 && mlen <= sizeof(q[0])) {
				memcpy(q[nq], buf + 2, mlen);
				qlen[nq++] = mlen;
			}
			memmove(buf, buf + n, got - n);
			got -= n;
			ptcp_inc(&p->queries);
		}
		if (p->answer_max && ptcp_get(&p->answered) >= p->answer_max && nq) {
			usleep(50000); /* let the rest of the batch arrive, then hang up on it */
			ptcp_inc(&p->server_closes);
			break;
		}
		if (p->mute_after && on_conn >= p->mute_after) {
			nq = 0; /* read, never answered, never closed */
			continue;
		}
		if (nq < p->batch)
			continue;
		if (p->delay_ms)
			usleep((useconds_t)p->delay_ms * 1000);
		while (nq) {
			nq--;
			ptcp_answer(p, c, q[nq], qlen[nq]);
			ptcp_inc(&p->answered);
			on_conn++;
		}
		if (p->close_after && on_conn >= p->close_after) {
			if (p->delay_ms)
				usleep((useconds_t)p->delay_ms * 1000);
			ptcp_inc(&p->server_closes);
			break;
		}
	}
	close(c);
}

static void *ptcp_main(void *arg)
{
	struct ptcp *p = arg;

	while (!ptcp_get(&p->stop)) {
		struct pollfd pfd = { .fd = p->lfd, .events = POLLIN };
		int c;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		c = accept(p->lfd, NULL, NULL);
		if (c < 0)
			continue;
		ptcp_inc(&p->accepts);
		ptcp_serve(p, c);
	}
	return NULL;
}

static void ptcp_start(struct ptcp *p, int batch, uint8_t last)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t al = sizeof(a);

	memset(p, 0, sizeof(*p));
	p->batch = batch;
	p->last = last;
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(p->lfd, (struct sockaddr *)&a, &al);
	p->port = ntohs(a.sin_port);
	assert_int_equal(listen(p->lfd, 16), 0);
}

static void ptcp_run(struct ptcp *p)
{
	pthread_create(&p->th, NULL, ptcp_main, p);
}

static void ptcp_stop(struct ptcp *p)
{
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
	pthread_join(p->th, NULL);
	close(p->lfd);
}

/* Run the loop until every query of qs is answered (or max_ms passes). */
static void run_all(struct xp_dns_query *qs, int n, int max_ms)
{
	uint64_t end = mono_ms() + (uint64_t)max_ms;

	for (int i = 0; i < n && mono_ms() < end; i++)
		while (!(qs[i].answers + qs[i].drops) && mono_ms() < end)
			run(&qs[i], 10);
}

static void wait_for(int *v, int want, int max_ms)
{
	uint64_t end = mono_ms() + (uint64_t)max_ms;

	while (ptcp_get(v) < want && mono_ms() < end)
		usleep(1000);
}

static void test_pool_reuse(void **state)
{
	struct xp_dns_query qs[8];
	struct ptcp p;
	char name[64];
	void *inst;
	int fds = open_fds(), i;

	ptcp_start(&p, 1, 33);
	ptcp_run(&p);
	snprintf(specs[0], sizeof(specs[0]), "tcp://127.0.0.1:%u", p.port);
	inst = instance(1, 0);
	assert_non_null(inst);
	/* one after another */
	for (i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "seq%d.example", i);
		ask(inst, &qs[i], (uint16_t)(100 + i), name, DNS_T_A);
		run(&qs[i], 3000);
		assert_int_equal(qs[i].answers, 1);
		assert_int_equal(dns_get16(qs[i].ans), 100 + i);
		assert_int_equal(answer_last_octet(&qs[i]), 33);
	}
	/* all at once */
	for (i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "par%d.example", i);
		ask(inst, &qs[i], (uint16_t)(200 + i), name, i & 1 ? DNS_T_AAAA : DNS_T_A);
	}
	run_all(qs, 8, 3000);
	for (i = 0; i < 8; i++) {
		assert_int_equal(qs[i].answers, 1);
		assert_int_equal(dns_get16(qs[i].ans), 200 + i);
	}
	assert_int_equal(ptcp_get(&p.accepts), 1);
	assert_int_equal(ptcp_get(&p.queries), 12);
	assert_int_equal(counter("upstream_conns"), 1);
	assert_int_equal(counter("upstream_failures"), 0);
	desc->instance_free(inst);
	/* closed on unload: the server sees the close, nothing is left */
	wait_for(&p.client_closes, 1, 2000);
	assert_int_equal(ptcp_get(&p.client_closes), 1);
	for (i = 0; i < MAXW; i++) {
		assert_null(ios[i]);
		assert_null(timers[i]);
	}

	/* upstream_idle_timeout = 0: the old way, one connection per query */
	inst_idle_ms = 0;
	inst = instance(1, 0);
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "old%d.example", i);
		ask(inst, &qs[i], (uint16_t)i, name, DNS_T_A);
		run(&qs[i], 3000);
		assert_int_equal(qs[i].answers, 1);
	}
	assert_int_equal(ptcp_get(&p.accepts), 4);
	desc->instance_free(inst);
	inst_idle_ms = 10000;

	/* through an outbound: one dial carries them all */
	snprintf(specs[0], sizeof(specs[0]), "tcp://127.0.0.1:%u via px", p.port);
	inst = instance(1, 0);
	dials = 0;
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "via%d.example", i);
		ask(inst, &qs[i], (uint16_t)i, name, DNS_T_A);
		run(&qs[i], 3000);
		assert_int_equal(qs[i].answers, 1);
	}
	assert_int_equal(dials, 1);
	assert_int_equal(ptcp_get(&p.accepts), 5);
	desc->instance_free(inst);
	ptcp_stop(&p);
	assert_int_equal(open_fds(), fds);
}

struct xres {
	int calls, err;
	uint8_t ans[512];
	size_t len;
};

static void xres_done(void *arg, struct xfer *x, int err, const uint8_t *ans, size_t len)
{
	struct xres *r = arg;

	r->calls++;
	r->err = err;
	if (!err && len <= sizeof(r->ans)) {
		memcpy(r->ans, ans, len);
		r->len = len;
	}
}

/* The exchange layer itself: a context as dns.c builds it. */
static void xctx(struct ups_ctx *c, uint64_t idle_ms)
{
	memset(c, 0, sizeof(*c));
	n_counters = 0;
	c->host = &host;
	c->self = &self;
	c->malformed = h_counter_new(&self, "malformed", "");
	c->mismatched = h_counter_new(&self, "mismatched", "");
	c->conns = h_counter_new(&self, "upstream_conns", "");
	c->retries = h_counter_new(&self, "upstream_retries", "");
	c->idle_ms = idle_ms;
	assert_int_equal(ups_pools_new(c), 0);
}

static void run_x(struct xres *r, int n, int max_ms)
{
	uint64_t end = mono_ms() + (uint64_t)max_ms;

	for (int i = 0; i < n; i++)
		while (!r[i].calls && mono_ms() < end)
			run(NULL, 10);
}

static void test_pool_ids_and_order(void **state)
{
	static const char *const names[4] = { "a.example", "bb.example", "ccc.example",
					      "dddd.example" };
	struct xres res[4] = { 0 };
	struct xfer *xs[4];
	struct ups_ctx c;
	struct upstream u;
	struct ptcp p;
	char err[128];
	uint16_t ids[4];
	int i, j;

	/* the server answers the four at once, last first, each after a stray */
	ptcp_start(&p, 4, 44);
	p.stray = 1;
	ptcp_run(&p);
	xctx(&c, 10000);
	snprintf(specs[0], sizeof(specs[0]), "tcp://127.0.0.1:%u", p.port);
	assert_int_equal(upstream_parse(specs[0], &u, err, sizeof(err)), 0);
	for (i = 0; i < 4; i++) {
		struct dns_msg m;
		struct mb q;

		/* every query asks with the same id: the connection must tell them apart */
		mb_query(&q, 0x4242, names[i], DNS_T_A, 1, 0);
		assert_int_equal(dns_parse(q.b, q.n, &m, NULL, NULL), 0);
		xs[i] = xfer_start(&c, &loop, &u, 0, q.b, q.n, &m.q, xres_done, &res[i]);
		assert_non_null(xs[i]);
		assert_int_equal(res[i].calls, 0); /* never called back inside xfer_start */
	}
	run_x(res, 4, 3000);
	for (i = 0; i < 4; i++) {
		struct dns_msg a;
		char text[256];

		assert_int_equal(res[i].calls, 1);
		assert_int_equal(res[i].err, 0);
		assert_int_equal(dns_parse(res[i].ans, res[i].len, &a, NULL, NULL), 0);
		dns_name_text(a.q.name, a.q.name_len, text, sizeof(text));
		assert_string_equal(text, names[i]);
		ids[i] = a.id;
		for (j = 0; j < i; j++)
			assert_int_not_equal(ids[i], ids[j]);
		xfer_free(xs[i]);
	}
	/* the strays were counted and dropped, nothing else suffered */
	assert_int_equal(counter("mismatched"), 4);
	assert_int_equal(counter("upstream_conns"), 1);
	assert_int_equal(ptcp_get(&p.accepts), 1);
	ups_pools_free(&c);
	ptcp_stop(&p);
}

static void test_pool_server_closes(void **state)
{
	struct xp_dns_query qs[3];
	struct ptcp a, b;
	void *inst;

	/* 1. the server closes each connection after one answer: the next query, written on
	 * the connection before its close was seen, is sent again on a new one, no failure */
	ptcp_start(&a, 1, 51);
	a.close_after = 1;
	a.delay_ms = 100; /* the answer is taken, the close comes later */
	ptcp_run(&a);
	snprintf(specs[0], sizeof(specs[0]), "tcp://127.0.0.1:%u", a.port);
	inst = instance(1, 0);
	ask(inst, &qs[0], 1, "one.example", DNS_T_A);
	run(&qs[0], 3000);
	assert_int_equal(qs[0].answers, 1);
	wait_for(&a.server_closes, 1, 2000);
	usleep(20000);
	ask(inst, &qs[1], 2, "two.example", DNS_T_A);
	run(&qs[1], 3000);
	assert_int_equal(qs[1].answers, 1);
	assert_int_equal(answer_last_octet(&qs[1]), 51);
	assert_int_equal(counter("upstream_failures"), 0);
	assert_int_equal(counter("upstream_retries"), 1);
	assert_int_equal(ptcp_get(&a.accepts), 2);
	desc->instance_free(inst);
	ptcp_stop(&a);

	/* 2. after one answer the server hangs up on every query: the two in flight on the
	 * reused connection are sent again once, the new connection dies too without an
	 * answer, which is the upstream's failure: the next upstream answers */
	ptcp_start(&a, 1, 61);
	a.answer_max = 1;
	ptcp_run(&a);
	ptcp_start(&b, 1, 62);
	ptcp_run(&b);
	snprintf(specs[0], sizeof(specs[0]), "tcp://127.0.0.1:%u", a.port);
	snprintf(specs[1], sizeof(specs[1]), "tcp://127.0.0.1:%u", b.port);
	inst = instance(2, 0);
	ask(inst, &qs[0], 1, "first.example", DNS_T_A);
	run(&qs[0], 3000);
	assert_int_equal(answer_last_octet(&qs[0]), 61);
	ask(inst, &qs[1], 2, "second.example", DNS_T_A);
	ask(inst, &qs[2], 3, "third.example", DNS_T_A);
	run_all(&qs[1], 2, 5000);
	assert_int_equal(answer_last_octet(&qs[1]), 62);
	assert_int_equal(answer_last_octet(&qs[2]), 62);
	assert_int_equal(counter("upstream_retries"), 2);
	assert_int_equal(counter("upstream_failures"), 2);
	assert_int_equal(ptcp_get(&a.accepts), 2);
	/* 1 answered + 2 on the new connection, plus the two first tries if the server read
	 * them before hanging up (it may close with them still unread: timing) */
	assert_in_range(ptcp_get(&a.queries), 3, 5);
	desc->instance_free(inst);
	ptcp_stop(&a);
	ptcp_stop(&b);
}

static void test_pool_cancel_and_idle(void **state)
{
	struct xp_dns_query qs[4];
	struct ptcp p;
	void *inst;
	int i;

	/* the server answers only once three queries are in: one is cancelled meanwhile */
	ptcp_start(&p, 3, 71);
	p.delay_ms = 200;
	ptcp_run(&p);
	snprintf(specs[0], sizeof(specs[0]), "tcp://127.0.0.1:%u", p.port);
	inst_idle_ms = 300;
	inst = instance(1, 0);
	ask(inst, &qs[0], 1, "c1.example", DNS_T_A);
	ask(inst, &qs[1], 2, "c2.example", DNS_T_A);
	ask(inst, &qs[2], 3, "c3.example", DNS_T_A);
	run(NULL, 30);
	desc->dns->cancel(inst, &qs[1]);
	run_all(qs, 1, 3000);
	run(&qs[2], 3000);
	assert_int_equal(qs[0].answers, 1);
	assert_int_equal(qs[1].answers + qs[1].drops, 0);
	assert_int_equal(qs[2].answers, 1);
	assert_int_equal(dns_get16(qs[2].ans), 3);
	/* the cancelled query's answer was expected: dropped quietly */
	run(NULL, 50);
	assert_int_equal(counter("mismatched"), 0);
	assert_int_equal(counter("malformed"), 0);
	assert_int_equal(counter("upstream_failures"), 0);

	/* idle for longer than upstream_idle_timeout: closed by us, its watchers gone */
	run(NULL, 600);
	wait_for(&p.client_closes, 1, 2000);
	assert_int_equal(ptcp_get(&p.client_closes), 1);
	for (i = 0; i < MAXW; i++)
		assert_null(ios[i]);
	desc->instance_free(inst);
	inst_idle_ms = 10000;
	ptcp_stop(&p);

	/* a connection that stops answering without closing (a NAT mapping gone): the query
	 * that timed out on it is the upstream's failure, the next one gets a new connection */
	ptcp_start(&p, 1, 72);
	p.mute_after = 1;
	ptcp_run(&p);
	snprintf(specs[0], sizeof(specs[0]), "tcp://127.0.0.1:%u", p.port);
	inst = instance(1, 0);
	ask(inst, &qs[0], 1, "m1.example", DNS_T_A);
	run(&qs[0], 3000);
	assert_int_equal(answer_last_octet(&qs[0]), 72);
	ask(inst, &qs[1], 2, "m2.example", DNS_T_A);
	run(&qs[1], 3000);
	assert_int_equal(qs[1].answers, 1);
	assert_int_equal(DNS_RCODE(dns_get16(qs[1].ans + 2)), DNS_R_SERVFAIL);
	ask(inst, &qs[2], 3, "m3.example", DNS_T_A);
	run(&qs[2], 3000);
	assert_int_equal(answer_last_octet(&qs[2]), 72);
	assert_int_equal(counter("upstream_failures"), 1);
	assert_int_equal(ptcp_get(&p.accepts), 2);
	desc->instance_free(inst);
	ptcp_stop(&p);
}

/* ------------------------------------------------------------------ DoT and DoH, for real */

static uint16_t free_tcp_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd);
	return ntohs(a.sin_port);
}

static int tcp_up(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001),
				 .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	ok = !connect(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return ok;
}

/* unbound (from Debian) on the loopback with a certificate made now: tls:// with a name
 * check, https:// (HTTP/2) with an address check, and a wrong CA refused. */
static pid_t unbound_pid;
static char unbound_dir[] = "/tmp/xp-dns-unit.XXXXXX";

/* also after a failed assertion: no unbound and no files left behind */
static int unbound_teardown(void **state)
{
	char cmd[128];

	if (unbound_pid > 0) {
		kill(unbound_pid, SIGKILL);
		waitpid(unbound_pid, NULL, 0);
		unbound_pid = 0;
	}
	if (strncmp(unbound_dir + strlen(unbound_dir) - 6, "XXXXXX", 6)) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", unbound_dir);
		if (system(cmd))
			fprintf(stderr, "cannot remove %s\n", unbound_dir);
	}
	return 0;
}

/* An HTTPS server that only speaks HTTP/1.1 (ALPN), keeps connections alive and answers DNS
 * POSTs one after another, on the unbound test's certificate. */
struct h1srv {
	int lfd;
	uint16_t port;
	SSL_CTX *ctx;
	pthread_t th;
	int accepts, requests, stop; /* atomic */
};

static int h1_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned inlen, void *arg)
{
	static const unsigned char h1[] = "http/1.1";

	*out = h1;
	*outlen = sizeof(h1) - 1;
	return SSL_TLSEXT_ERR_OK;
}

static void h1_serve(struct h1srv *h, SSL *ssl)
{
	char buf[8192];
	size_t got = 0;

	for (;;) {
		char *end = got ? memmem(buf, got, "\r\n\r\n", 4) : NULL;
		int n;

		if (end) {
			size_t hlen = (size_t)(end - buf) + 4, blen = 0, alen;
			const char *cl = strcasestr(buf, "content-length:");
			uint8_t ans[1024];
			char head[256];
			struct server s = { .mode = M_ANSWER };

			if (cl)
				blen = (size_t)strtoul(cl + 15, NULL, 10);
			if (got >= hlen + blen) {
				alen = make_answer(&s, (uint8_t *)buf + hlen, blen, ans, 0, 81);
				n = snprintf(head, sizeof(head),
					     "HTTP/1.1 200 OK\r\nContent-Type: application/dns-message"
					     "\r\nContent-Length: %zu\r\n\r\n",
					     alen);
				ptcp_inc(&h->requests); /* counted before the client can see it */
				SSL_write(ssl, head, n);
				SSL_write(ssl, ans, (int)alen);
				memmove(buf, buf + hlen + blen, got - hlen - blen);
				got -= hlen + blen;
				continue;
			}
		}
		n = SSL_read(ssl, buf + got, (int)(sizeof(buf) - got));
		if (n <= 0)
			return;
		got += (size_t)n;
	}
}

static void *h1_main(void *arg)
{
	struct h1srv *h = arg;

	while (!ptcp_get(&h->stop)) {
		struct pollfd pfd = { .fd = h->lfd, .events = POLLIN };
		SSL *ssl;
		int c;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		c = accept(h->lfd, NULL, NULL);
		if (c < 0)
			continue;
		ptcp_inc(&h->accepts);
		ssl = SSL_new(h->ctx);
		SSL_set_fd(ssl, c);
		if (SSL_accept(ssl) == 1)
			h1_serve(h, ssl);
		SSL_free(ssl);
		close(c);
	}
	return NULL;
}

/* https:// to a server that picks HTTP/1.1: the connection is kept alive, requests go one
 * at a time, concurrent queries wait their turn on it. */
static void h1_keepalive(const char *dir)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t al = sizeof(a);
	struct xp_dns_query qs[4];
	struct h1srv h = { 0 };
	char path[300];
	void *inst;
	int i;

	h.ctx = SSL_CTX_new(TLS_server_method());
	snprintf(path, sizeof(path), "%s/cert.pem", dir);
	assert_int_equal(SSL_CTX_use_certificate_chain_file(h.ctx, path), 1);
	snprintf(path, sizeof(path), "%s/key.pem", dir);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(h.ctx, path, SSL_FILETYPE_PEM), 1);
	SSL_CTX_set_alpn_select_cb(h.ctx, h1_alpn, NULL);
	h.lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(h.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(h.lfd, (struct sockaddr *)&a, &al);
	h.port = ntohs(a.sin_port);
	assert_int_equal(listen(h.lfd, 8), 0);
	pthread_create(&h.th, NULL, h1_main, &h);

	snprintf(specs[0], sizeof(specs[0]), "https://127.0.0.1:%u/dns-query", h.port);
	inst = instance(1, 0);
	assert_non_null(inst);
	for (i = 0; i < 4; i++) {
		char name[32];

		snprintf(name, sizeof(name), "h1-%d.example", i);
		ask(inst, &qs[i], (uint16_t)(0x3100 + i), name, DNS_T_A);
	}
	run_all(qs, 4, 9000);
	for (i = 0; i < 4; i++) {
		assert_int_equal(qs[i].answers, 1);
		assert_int_equal(dns_get16(qs[i].ans), 0x3100 + i);
		assert_int_equal(answer_last_octet(&qs[i]), 81);
	}
	ask(inst, &qs[0], 0x3200, "h1-late.example", DNS_T_A);
	run(&qs[0], 9000);
	assert_int_equal(qs[0].answers, 1);
	assert_int_equal(ptcp_get(&h.accepts), 1);
	assert_int_equal(ptcp_get(&h.requests), 5);
	assert_int_equal(counter("upstream_conns"), 1);
	assert_int_equal(counter("upstream_failures"), 0);
	desc->instance_free(inst);
	__atomic_store_n(&h.stop, 1, __ATOMIC_RELEASE);
	pthread_join(h.th, NULL);
	close(h.lfd);
	SSL_CTX_free(h.ctx);
}

/* Connections from this process to the loopback port, as the kernel sees them. */
static int established_to(uint16_t port)
{
	char cmd[160], line[256];
	int n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ss -Htn state established '( dport = :%u )' 2>/dev/null",
		 port);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		n++;
	pclose(f);
	return n;
}

/* After one query: 20 more, half at once, half one after another, all on the connection the
 * first one opened (counted by the plugin and by the kernel). */
static void many_on_one(void *inst, uint16_t port)
{
	struct xp_dns_query qs[10];
	int i;

	for (i = 0; i < 10; i++)
		ask(inst, &qs[i], (uint16_t)(0x6000 + i), "www.test.example", DNS_T_A);
	run_all(qs, 10, 9000);
	for (i = 0; i < 10; i++) {
		assert_int_equal(qs[i].answers, 1);
		assert_int_equal(dns_get16(qs[i].ans), 0x6000 + i);
		assert_int_equal(answer_last_octet(&qs[i]), 80);
	}
	for (i = 0; i < 10; i++) {
		ask(inst, &qs[0], (uint16_t)(0x7000 + i), "www.test.example", DNS_T_AAAA);
		run(&qs[0], 9000);
		assert_int_equal(qs[0].answers, 1);
		assert_int_equal(dns_get16(qs[0].ans), 0x7000 + i);
	}
	assert_int_equal(counter("upstream_conns"), 1);
	assert_int_equal(counter("upstream_failures"), 0);
	if (!system("command -v ss >/dev/null"))
		assert_int_equal(established_to(port), 1);
}

static void test_dot_doh_unbound(void **state)
{
	char *dir = unbound_dir, cmd[2048], ca[256], wrong[256], logf[256];
	uint16_t pt = free_tcp_port(), ph = free_tcp_port();
	struct xp_dns_query q;
	pid_t pid;
	void *inst;
	FILE *f;
	int i;

	if (system("command -v unbound >/dev/null && command -v openssl >/dev/null")) {
		fprintf(stderr, "  SKIP: unbound or openssl missing (tests/deps.sh installs them)\n");
		skip();
	}
	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
		 "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		 "-keyout key.pem -out cert.pem -days 2 -subj /CN=dns.test "
		 "-addext subjectAltName=DNS:dns.test,IP:127.0.0.1 2>/dev/null && "
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		 "-keyout other.key -out other.pem -days 2 -subj /CN=other 2>/dev/null && "
		 "head -c 80 /dev/urandom >ticket.key",
		 dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/unbound.conf", dir);
	f = fopen(cmd, "w");
	assert_non_null(f);
	fprintf(f,
		"server:\n  interface: 127.0.0.1@%u\n  interface: 127.0.0.1@%u\n"
		"  tls-port: %u\n  https-port: %u\n"
		"  tls-service-key: %s/key.pem\n  tls-service-pem: %s/cert.pem\n"
		"  tls-session-ticket-keys: %s/ticket.key\n"
		"  http-endpoint: \"/dns-query\"\n  do-daemonize: no\n  username: \"\"\n"
		"  chroot: \"\"\n  directory: %s\n  pidfile: \"\"\n  use-syslog: no\n"
		"  num-threads: 1\n  access-control: 127.0.0.0/8 allow\n"
		"  module-config: \"iterator\"\n"
		"  local-zone: \"test.example.\" static\n"
		"  local-data: \"www.test.example. 300 IN A 192.0.2.80\"\n"
		"  local-data: \"www.test.example. 300 IN AAAA 2001:db8::80\"\n"
		"remote-control:\n  control-enable: no\n",
		pt, ph, pt, ph, dir, dir, dir, dir);
	fclose(f);
	snprintf(logf, sizeof(logf), "%s/unbound.log", dir);
	pid = fork();
	if (!pid) {
		/* its own output file: never hold the test runner's pipes */
		if (!freopen(logf, "w", stdout) || !freopen(logf, "w", stderr))
			_exit(126);
		execlp("unbound", "unbound", "-d", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	unbound_pid = pid;
	for (i = 0; i < 100 && !(tcp_up(pt) && tcp_up(ph)); i++)
		usleep(50000);
	if (i == 100)
		fail_msg("unbound did not start (log in %s)", logf);

	snprintf(ca, sizeof(ca), "%s/cert.pem", dir);
	snprintf(wrong, sizeof(wrong), "%s/other.pem", dir);
	snprintf(specs[0], sizeof(specs[0]), "tls://127.0.0.1:%u#dns.test", pt);
	cfg.ca_file = ca;
	inst_timeout_ms = 4000;
	inst = instance(1, 0);
	assert_non_null(inst);
	ask(inst, &q, 0x5151, "www.test.example", DNS_T_A);
	run(&q, 9000);
	assert_int_equal(q.answers, 1);
	assert_int_equal(dns_get16(q.ans), 0x5151);
	assert_int_equal(answer_last_octet(&q), 80);
	many_on_one(inst, pt);
	desc->instance_free(inst);

	/* a connection per query (upstream_idle_timeout = 0): a later one resumes the TLS
	 * session */
	inst_idle_ms = 0;
	inst = instance(1, 0);
	for (i = 0; i < 3; i++) {
		ask(inst, &q, (uint16_t)(0x5400 + i), "www.test.example", DNS_T_A);
		run(&q, 9000);
		assert_int_equal(q.answers, 1);
		assert_int_equal(answer_last_octet(&q), 80);
	}
	assert_int_equal(counter("upstream_conns"), 3);
	/* the second resumes the first's ticket; TLS 1.3 tickets are single use and unbound
	 * gives none on a resumed connection, so the third starts afresh */
	assert_true(counter("tls_resumed") >= 1);
	desc->instance_free(inst);
	inst_idle_ms = 10000;

	snprintf(specs[0], sizeof(specs[0]), "https://127.0.0.1:%u/dns-query", ph);
	inst = instance(1, 0);
	assert_non_null(inst);
	ask(inst, &q, 0x5252, "www.test.example", DNS_T_AAAA);
	run(&q, 9000);
	assert_int_equal(q.answers, 1);
	assert_int_equal(dns_get16(q.ans), 0x5252);
	assert_int_equal(answer_last_octet(&q), 0x80);
	assert_int_equal(learned[n_learned - 1].addr.sa.sa_family, AF_INET6);
	many_on_one(inst, ph);
	desc->instance_free(inst);

	/* a certificate the CA file does not vouch for: the exchange fails, SERVFAIL */
	cfg.ca_file = wrong;
	inst = instance(1, 0);
	assert_non_null(inst);
	ask(inst, &q, 0x5353, "www.test.example", DNS_T_A);
	run(&q, 9000);
	assert_int_equal(q.answers, 1);
	assert_int_equal(DNS_RCODE(dns_get16(q.ans + 2)), DNS_R_SERVFAIL);
	assert_int_equal(counter("upstream_failures"), 1);
	desc->instance_free(inst);

	cfg.ca_file = ca;
	h1_keepalive(dir);
	cfg.ca_file = NULL;
	inst_timeout_ms = 300;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_option_table, setup),
		cmocka_unit_test_setup(test_spec_parse, setup),
		cmocka_unit_test_setup(test_answer_learn_cache, setup),
		cmocka_unit_test_setup(test_failover_timeout_and_icmp, setup),
		cmocka_unit_test_setup(test_spoofed_and_malformed, setup),
		cmocka_unit_test_setup(test_tc_retries_tcp, setup),
		cmocka_unit_test_setup(test_rules_and_via, setup),
		cmocka_unit_test_setup(test_servfail_and_cancel, setup),
		cmocka_unit_test_setup(test_bad_client_queries, setup),
		cmocka_unit_test_setup(test_config_errors, setup),
		cmocka_unit_test_setup(test_pool_reuse, setup),
		cmocka_unit_test_setup(test_pool_ids_and_order, setup),
		cmocka_unit_test_setup(test_pool_server_closes, setup),
		cmocka_unit_test_setup(test_pool_cancel_and_idle, setup),
		cmocka_unit_test_setup_teardown(test_dot_doh_unbound, setup, unbound_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
