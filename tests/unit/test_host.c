/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_host.c - the host function table against a fake host environment: a flow table and a
 * destination-verdict map kept in memory, a fixed clock, a fake config.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "host.h"
#include "log.h"
#include "outbound.h"
#include "plug.h"

/* ------------------------------------------------------------------ fake environment */

#define NOW_NS 5000000000ull

static struct {
	struct xp_tuple flow_key;
	struct xp_flow flow;
	bool have_flow;
	struct xp_dst_key dst_key;
	struct xp_dst_verdict dst_val;
	int dst_sets, dst_dels;
	int dst_set_rc;
	char cfg_section[32], cfg_key[32];
} fake;

static int fake_flow_lookup(void *ctx, const struct xp_tuple *t, struct xp_flow *out)
{
	assert_ptr_equal(ctx, &fake);
	if (!fake.have_flow || memcmp(t, &fake.flow_key, sizeof(*t)))
		return -ENOENT;
	*out = fake.flow;
	return 0;
}

static int fake_dst_set(void *ctx, const struct xp_dst_key *k, const struct xp_dst_verdict *v)
{
	fake.dst_key = *k;
	fake.dst_val = *v;
	fake.dst_sets++;
	return fake.dst_set_rc;
}

static int fake_dst_del(void *ctx, const struct xp_dst_key *k)
{
	fake.dst_key = *k;
	fake.dst_dels++;
	return 0;
}

static const char *fake_config_get(void *ctx, const char *section, const char *key)
{
	snprintf(fake.cfg_section, sizeof(fake.cfg_section), "%s", section);
	snprintf(fake.cfg_key, sizeof(fake.cfg_key), "%s", key);
	return !strcmp(section, "outbound.hk") && !strcmp(key, "server") ? "192.0.2.1:8388" : NULL;
}

static uint64_t fake_now(void)
{
	return NOW_NS;
}

static int setup(void **state)
{
	struct host_env env = {
		.ctx = &fake,
		.flow_lookup = fake_flow_lookup,
		.dst_set = fake_dst_set,
		.dst_del = fake_dst_del,
		.config_get = fake_config_get,
		.now_ns = fake_now,
		.mark = 0x7870,
	};

	memset(&fake, 0, sizeof(fake));
	host_set_env(&env);
	return 0;
}

static void sa4(union xp_sockaddr *sa, const char *ip, uint16_t port)
{
	memset(sa, 0, sizeof(*sa));
	sa->in.sin_family = AF_INET;
	sa->in.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &sa->in.sin_addr), 1);
}

static void sa6(union xp_sockaddr *sa, const char *ip, uint16_t port)
{
	memset(sa, 0, sizeof(*sa));
	sa->in6.sin6_family = AF_INET6;
	sa->in6.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &sa->in6.sin6_addr), 1);
}

static void mapped(uint8_t out[16], const char *ip4)
{
	memset(out, 0, 16);
	out[10] = out[11] = 0xff;
	assert_int_equal(inet_pton(AF_INET, ip4, out + 12), 1);
}

/* ------------------------------------------------------------------ tests */

static void test_table_complete(void **state)
{
	const struct xp_host *h = host_table();
	const void *const *fn;
	size_t first = offsetof(struct xp_host, log);

	assert_int_equal(h->size, sizeof(struct xp_host));
	assert_int_equal(h->abi_major, XP_PLUGIN_ABI_MAJOR);
	assert_int_equal(h->abi_minor, XP_PLUGIN_ABI_MINOR);
	assert_non_null(h->version);
	/* Every slot from the first function on is a function pointer: none may be NULL. */
	for (fn = (const void *const *)((const char *)h + first);
	     (const char *)fn < (const char *)h + sizeof(*h); fn++)
		assert_non_null(*fn);
}

static void test_upstream_socket(void **state)
{
	const struct xp_host *h = host_table();
	uint32_t mark = 0;
	socklen_t len = sizeof(mark);
	int fd, fl;

	fd = h->upstream_socket(NULL, AF_INET, SOCK_STREAM, 0);
	if (fd == -EPERM) {
		skip(); /* SO_MARK needs CAP_NET_ADMIN */
		return;
	}
	assert_true(fd >= 0);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &len), 0);
	assert_int_equal(mark, 0x7870);
	fl = fcntl(fd, F_GETFL);
	assert_true(fl & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	fd = h->upstream_socket(NULL, AF_INET6, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(h->upstream_socket(NULL, AF_UNIX, SOCK_STREAM, 0), -EAFNOSUPPORT);
}

static void test_verdict_set_v4(void **state)
{
	const struct xp_host *h = host_table();
	struct xp_verdict_req r = { .size = sizeof(r) };
	uint8_t want[16];
	int id;

	id = outbound_id("hostest-hk");
	assert_true(id > 0);
	sa4(&r.dst, "198.51.100.7", 443);
	r.l4proto = IPPROTO_TCP;
	r.route = XP_ROUTE_PROXY;
	r.outbound = "hostest-hk";
	r.ttl_ms = 30000;
	r.tag = 77;
	assert_int_equal(h->verdict_set(NULL, &r), 0);
	assert_int_equal(fake.dst_sets, 1);
	mapped(want, "198.51.100.7");
	assert_memory_equal(fake.dst_key.addr, want, 16);
	assert_int_equal(fake.dst_key.port, 443);
	assert_int_equal(fake.dst_key.l4proto, IPPROTO_TCP);
	assert_int_equal(fake.dst_val.verdict, XP_V_PROXY);
	assert_int_equal(fake.dst_val.outbound_id, id);
	assert_int_equal(fake.dst_val.tag, 77);
	assert_int_equal(fake.dst_val.expires_ns, NOW_NS + 30000ull * 1000000);
	assert_int_equal(fake.dst_val.origin_plugin, XP_DSTW_USER);
}

static void test_verdict_set_v6_any_port(void **state)
{
	const struct xp_host *h = host_table();
	struct xp_verdict_req r = { .size = sizeof(r) };
	uint8_t want[16];

	sa6(&r.dst, "2001:db8::42", 0);
	r.route = XP_ROUTE_DIRECT;
	assert_int_equal(h->verdict_set(NULL, &r), 0);
	inet_pton(AF_INET6, "2001:db8::42", want);
	assert_memory_equal(fake.dst_key.addr, want, 16);
	assert_int_equal(fake.dst_key.port, 0);
	assert_int_equal(fake.dst_key.l4proto, 0);
	assert_int_equal(fake.dst_val.verdict, XP_V_DIRECT);
	assert_int_equal(fake.dst_val.expires_ns, 0); /* ttl 0: until cleared */
}

static void test_verdict_set_errors(void **state)
{
	const struct xp_host *h = host_table();
	struct xp_verdict_req r = { .size = sizeof(r) };

	sa4(&r.dst, "192.0.2.9", 0);
	r.route = XP_ROUTE_PROXY;
	r.outbound = "no-such-outbound";
	assert_int_equal(h->verdict_set(NULL, &r), -ENOENT);
	r.outbound = NULL;
	assert_int_equal(h->verdict_set(NULL, &r), -EINVAL);
	r.route = XP_ROUTE_DNS; /* not a destination verdict */
	assert_int_equal(h->verdict_set(NULL, &r), -EINVAL);
	r.route = 99;
	assert_int_equal(h->verdict_set(NULL, &r), -EINVAL);
	r.route = XP_ROUTE_BLOCK;
	sa4(&r.dst, "192.0.2.9", 80); /* a port without a protocol can never be looked up */
	assert_int_equal(h->verdict_set(NULL, &r), -EINVAL);
	r.dst.sa.sa_family = AF_UNIX;
	assert_int_equal(h->verdict_set(NULL, &r), -EAFNOSUPPORT);
	assert_int_equal(fake.dst_sets, 0);

	sa4(&r.dst, "192.0.2.9", 0);
	fake.dst_set_rc = -E2BIG; /* the map is full */
	assert_int_equal(h->verdict_set(NULL, &r), -ENOSPC);
	assert_int_equal(h->verdict_set(NULL, NULL), -EINVAL);
}

static void test_verdict_set_unknown_tail(void **state)
{
	const struct xp_host *h = host_table();
	struct {
		struct xp_verdict_req r;
		uint32_t future;
	} big = { .r = { .size = sizeof(big) } };

	sa4(&big.r.dst, "192.0.2.10", 0);
	big.r.route = XP_ROUTE_DIRECT;
	big.future = 1; /* a field this host does not know: refused, not ignored */
	assert_int_equal(h->verdict_set(NULL, &big.r), -E2BIG);
	big.future = 0;
	assert_int_equal(h->verdict_set(NULL, &big.r), 0);
}

static void test_verdict_writer(void **state)
{
	const struct xp_host *h = host_table();
	struct xp_verdict_req r = { .size = sizeof(r) };
	struct plugin p = { 0 };
	struct xp_handle who = { .kind = HANDLE_INSTANCE, .name = "dns.main", .plugin = &p };

	sa4(&r.dst, "192.0.2.11", 0);
	r.route = XP_ROUTE_INSPECT;
	p.desc.kinds = XP_KIND_DNS;
	assert_int_equal(h->verdict_set(&who, &r), 0);
	assert_int_equal(fake.dst_val.origin_plugin, XP_DSTW_DNS);
	assert_int_equal(fake.dst_val.verdict, XP_V_INSPECT);
	p.desc.kinds = XP_KIND_SNIFFER;
	assert_int_equal(h->verdict_set(&who, &r), 0);
	assert_int_equal(fake.dst_val.origin_plugin, XP_DSTW_SNIFF);
}

static void test_verdict_clear(void **state)
{
	const struct xp_host *h = host_table();
	union xp_sockaddr dst;
	uint8_t want[16];

	sa4(&dst, "203.0.113.5", 53);
	assert_int_equal(h->verdict_clear(NULL, &dst, IPPROTO_UDP), 0);
	assert_int_equal(fake.dst_dels, 1);
	mapped(want, "203.0.113.5");
	assert_memory_equal(fake.dst_key.addr, want, 16);
	assert_int_equal(fake.dst_key.port, 53);
	assert_int_equal(fake.dst_key.l4proto, IPPROTO_UDP);
	assert_int_equal(h->verdict_clear(NULL, &dst, 0), -EINVAL);
}

static void test_flow_lookup(void **state)
{
	const struct xp_host *h = host_table();
	struct xp_flow_key k = { .size = sizeof(k), .l4proto = IPPROTO_TCP };
	struct xp_flow_info info;
	int id = outbound_id("hostest-jp");

	sa4(&k.src, "192.168.1.10", 40000);
	sa4(&k.dst, "198.51.100.20", 443);
	assert_int_equal(host_tuple_from(&fake.flow_key, &k.src, &k.dst, IPPROTO_TCP), 0);
	fake.have_flow = true;
	fake.flow.first_ns = NOW_NS - 3000000000ull;
	fake.flow.last_ns = NOW_NS - 250000000ull;
	fake.flow.verdict = XP_V_PROXY;
	fake.flow.vsrc = XP_SRC_RULE;
	fake.flow.rule_id = 4;
	fake.flow.ifindex = 7;
	fake.flow.outbound_id = (uint16_t)id;
	fake.flow.origin = XP_ORIGIN_LAN;
	fake.flow.tcp_state = XP_TCP_SYN_SEEN | XP_TCP_FIN_CLIENT;

	memset(&info, 0xaa, sizeof(info));
	info.size = sizeof(info);
	assert_int_equal(h->flow_lookup(&k, &info), 0);
	assert_int_equal(info.size, sizeof(info));
	assert_int_equal(info.route, XP_ROUTE_PROXY);
	assert_int_equal(info.source, XP_SOURCE_RULE);
	assert_int_equal(info.from_host, 0);
	assert_int_equal(info.tcp_closed, 1);
	assert_int_equal(info.rule_id, 4);
	assert_int_equal(info.ifindex, 7);
	assert_int_equal(info.age_ms, 3000);
	assert_int_equal(info.idle_ms, 250);
	/* outbound_name() only knows live instances; none is live in this test */
	assert_null(info.outbound);

	/* A plugin built against an older, shorter struct: nothing past its size is written. */
	{
		struct {
			struct xp_flow_info info;
			uint8_t guard[8];
		} small;
		size_t n = offsetof(struct xp_flow_info, ifindex);

		memset(&small, 0x5a, sizeof(small));
		small.info.size = (uint32_t)n;
		assert_int_equal(h->flow_lookup(&k, &small.info), 0);
		assert_int_equal(small.info.size, n);
		assert_int_equal(small.info.rule_id, 4);
		for (size_t i = n; i < sizeof(small); i++)
			assert_int_equal(((uint8_t *)&small)[i], 0x5a);
	}

	info.size = 4; /* too small to hold anything */
	assert_int_equal(h->flow_lookup(&k, &info), -EINVAL);
	info.size = sizeof(info);
	sa4(&k.dst, "198.51.100.21", 443);
	assert_int_equal(h->flow_lookup(&k, &info), -ENOENT);
	sa6(&k.dst, "2001:db8::1", 443); /* mixed families can never be a flow */
	assert_int_equal(h->flow_lookup(&k, &info), -EAFNOSUPPORT);
}

static void test_config_get(void **state)
{
	const struct xp_host *h = host_table();

	assert_string_equal(h->config_get("outbound.hk", "server"), "192.0.2.1:8388");
	assert_string_equal(fake.cfg_section, "outbound.hk");
	assert_null(h->config_get("outbound.hk", "nope"));
	assert_null(h->config_get(NULL, "server"));
}

struct seen {
	char name[96];
	uint64_t value;
	int n;
};

static void collect(const char *name, uint64_t value, void *arg)
{
	struct seen *s = arg;

	if (!strcmp(name, "outbound.hk.connects")) {
		snprintf(s->name, sizeof(s->name), "%s", name);
		s->value = value;
		s->n++;
	}
}

static void test_counters(void **state)
{
	const struct xp_host *h = host_table();
	struct xp_handle who = { .kind = HANDLE_INSTANCE, .name = "outbound.hk" };
	struct seen s = { 0 };
	xp_counter_t *c;

	c = h->counter_new(&who, "connects", "connections opened");
	assert_non_null(c);
	h->counter_add(c, 3);
	h->counter_add(c, 4);
	h->counter_add(NULL, 1); /* harmless */
	assert_null(h->counter_new(&who, "", "empty name"));
	host_counters_foreach(collect, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.value, 7);
}

static void test_log_prefix(void **state)
{
	const struct xp_host *h = host_table();
	struct xp_handle who = { .kind = HANDLE_INSTANCE, .name = "outbound.hk" };
	char buf[512] = "";
	int p[2], saved;
	ssize_t n;

	assert_int_equal(pipe(p), 0);
	saved = dup(2);
	dup2(p[1], 2);
	log_set_level(XP_LOG_INFO);
	h->log(&who, XP_LOG_WARN, "server %s refused: %d", "hk1", 42);
	h->log(&who, XP_LOG_DEBUG, "not shown at info");
	dup2(saved, 2);
	close(saved);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	assert_true(n > 0);
	buf[n] = 0;
	assert_non_null(strstr(buf, "[outbound.hk] server hk1 refused: 42"));
	assert_null(strstr(buf, "not shown"));
	assert_int_equal(h->log_enabled(&who, XP_LOG_DEBUG), 0);
	assert_int_equal(h->log_enabled(&who, XP_LOG_WARN), 1);
}

static void test_tuple_helpers(void **state)
{
	union xp_sockaddr a, b, back;
	struct xp_tuple t;
	uint8_t want[16];

	sa4(&a, "10.0.0.2", 1234);
	sa4(&b, "10.1.2.3", 80);
	assert_int_equal(host_tuple_from(&t, &a, &b, IPPROTO_UDP), 0);
	mapped(want, "10.0.0.2");
	assert_memory_equal(t.saddr, want, 16);
	assert_int_equal(t.sport, 1234);
	assert_int_equal(t.dport, 80);
	assert_int_equal(t.l4proto, IPPROTO_UDP);
	addr16_to_sockaddr(&back, t.daddr, t.dport);
	assert_int_equal(back.sa.sa_family, AF_INET);
	assert_memory_equal(&back.in.sin_addr, &b.in.sin_addr, 4);
	assert_int_equal(ntohs(back.in.sin_port), 80);
	sa6(&a, "2001:db8::2", 5555);
	sa6(&b, "2001:db8::3", 443);
	assert_int_equal(host_tuple_from(&t, &a, &b, IPPROTO_TCP), 0);
	addr16_to_sockaddr(&back, t.saddr, t.sport);
	assert_int_equal(back.sa.sa_family, AF_INET6);
	assert_memory_equal(&back.in6.sin6_addr, &a.in6.sin6_addr, 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_table_complete, setup),
		cmocka_unit_test_setup(test_upstream_socket, setup),
		cmocka_unit_test_setup(test_verdict_set_v4, setup),
		cmocka_unit_test_setup(test_verdict_set_v6_any_port, setup),
		cmocka_unit_test_setup(test_verdict_set_errors, setup),
		cmocka_unit_test_setup(test_verdict_set_unknown_tail, setup),
		cmocka_unit_test_setup(test_verdict_writer, setup),
		cmocka_unit_test_setup(test_verdict_clear, setup),
		cmocka_unit_test_setup(test_flow_lookup, setup),
		cmocka_unit_test_setup(test_config_get, setup),
		cmocka_unit_test_setup(test_counters, setup),
		cmocka_unit_test_setup(test_log_prefix, setup),
		cmocka_unit_test_setup(test_tuple_helpers, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
