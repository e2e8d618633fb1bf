/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_dnsq.c - client DNS queries (core/dnsq.c) against a fake DNS plugin, over a socketpair
 * for the TCP framing (pipelined, byte by byte, out of order, truncated, garbage lengths,
 * stalls, clients that leave), timeouts and bad answers; the [dns] section; XP_OPT_LIST
 * options through the fakedns test plugin and dnsq_apply().
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
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "cfg.h"
#include "dnsq.h"
#include "loop.h"
#include "plug.h"

/* ------------------------------------------------------------------ fake plugin */

enum mode { ANSWER_NOW, HOLD, DROP_NOW, ANSWER_HUGE, FAIL_QUERY };

static struct {
	enum mode mode;
	xp_dns_query_t *held[64];
	unsigned n_held;
	unsigned queries, cancels;
	size_t last_len;
} fp;

/* The answer: the query with QR set (same id, so the test can tell them apart). */
static void answer(xp_dns_query_t *q, const uint8_t *msg, size_t len)
{
	uint8_t out[512];

	memcpy(out, msg, len);
	out[2] |= 0x80;
	dnsq_answer(q, out, len);
}

static struct {
	uint8_t msg[64][64];
	size_t len[64];
} held_msgs;

static int fake_query(void *inst, xp_dns_query_t *q, const uint8_t *msg, size_t len)
{
	static uint8_t huge[70000];

	assert_ptr_equal(inst, &fp);
	assert_int_equal(dnsq_info(q)->route, XP_ROUTE_DNS);
	fp.queries++;
	fp.last_len = len;
	switch (fp.mode) {
	case ANSWER_NOW:
		answer(q, msg, len);
		return 0;
	case DROP_NOW:
		dnsq_drop(q, "test");
		return 0;
	case ANSWER_HUGE:
		dnsq_answer(q, huge, sizeof(huge));
		return 0;
	case FAIL_QUERY:
		return -EIO;
	case HOLD:
		assert_true(fp.n_held < 64 && len <= 64);
		memcpy(held_msgs.msg[fp.n_held], msg, len);
		held_msgs.len[fp.n_held] = len;
		fp.held[fp.n_held++] = q;
		return 0;
	}
	return 0;
}

static void fake_cancel(void *inst, xp_dns_query_t *q)
{
	fp.cancels++;
	for (unsigned i = 0; i < fp.n_held; i++)
		if (fp.held[i] == q)
			fp.held[i] = NULL;
}

static struct plugin fake_plugin;
static struct xp_loop loop;

static void run(unsigned ms)
{
	/* Run the loop for about `ms` (timers included). */
	ev_tstamp end = ev_time() + ms / 1000.0;

	do {
		ev_run(loop.ev, EVRUN_NOWAIT);
		usleep(1000);
	} while (ev_time() < end);
}

static int setup(void **state)
{
	struct dnsq_opts o = { .query_timeout_ms = 10000, .tcp_stall_ms = 10000,
			       .tcp_idle_ms = 30000 };

	memset(&fp, 0, sizeof(fp));
	memset(&fake_plugin, 0, sizeof(fake_plugin));
	snprintf(fake_plugin.name, sizeof(fake_plugin.name), "fake");
	fake_plugin.dns.size = sizeof(fake_plugin.dns);
	fake_plugin.dns.query = fake_query;
	fake_plugin.dns.cancel = fake_cancel;
	dnsq_set_opts(&o);
	memset(&dnsq_stats, 0, sizeof(dnsq_stats));
	assert_int_equal(loop_init(&loop, 1, false, "test"), 0);
	return dnsq_install(&fake_plugin, NULL, &fp);
}

static int teardown(void **state)
{
	dnsq_clear();
	loop_fini(&loop);
	return 0;
}

/* ------------------------------------------------------------------ helpers */

static size_t make_query(uint8_t *buf, uint16_t id, size_t len)
{
	memset(buf, 0, len);
	buf[0] = (uint8_t)(id >> 8);
	buf[1] = (uint8_t)id;
	buf[5] = 1; /* one question (content does not matter to the core) */
	for (size_t i = 12; i < len; i++)
		buf[i] = (uint8_t)i;
	return len;
}

static size_t frame(uint8_t *out, uint16_t id, size_t len)
{
	out[0] = (uint8_t)(len >> 8);
	out[1] = (uint8_t)len;
	return 2 + make_query(out + 2, id, len);
}

/* A connected pair: [0] adopted by dnsq, [1] the test's client. */
static int client_pair(void)
{
	struct xp_conn_info info = { .size = sizeof(info), .l4proto = IPPROTO_TCP };
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(dnsq_tcp_adopt(&loop, sv[0], &info), 0);
	return sv[1];
}

/* Read framed answers until `n` are in or `ms` passed; their ids in order. Returns how many. */
static unsigned read_answers(int fd, uint16_t *ids, unsigned n, unsigned ms)
{
	static uint8_t buf[4096];
	static size_t have;
	unsigned got = 0;
	ev_tstamp end = ev_time() + ms / 1000.0;

	have = 0;
	while (got < n && ev_time() < end) {
		ssize_t r;

		run(2);
		r = recv(fd, buf + have, sizeof(buf) - have, MSG_DONTWAIT);
		if (r > 0)
			have += (size_t)r;
		while (have >= 2) {
			size_t len = (size_t)buf[0] << 8 | buf[1];

			if (have < 2 + len)
				break;
			assert_true(len >= 12);
			assert_true(buf[4] & 0x80); /* QR set by the fake plugin */
			ids[got++] = (uint16_t)(buf[2] << 8 | buf[3]);
			memmove(buf, buf + 2 + len, have - 2 - len);
			have -= 2 + len;
		}
	}
	return got;
}

/* Has dnsq closed its end? (EOF or reset on the client side) */
static bool peer_closed(int fd, unsigned ms)
{
	ev_tstamp end = ev_time() + ms / 1000.0;
	uint8_t b[512];

	while (ev_time() < end) {
		ssize_t r;

		run(2);
		r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------ framing */

static void test_frame(void **state)
{
	uint8_t b[80] = { 0 };

	assert_int_equal(dnsq_frame(b, 0), 0);
	b[0] = 0;
	assert_int_equal(dnsq_frame(b, 1), 0);
	b[1] = 0; /* length 0 */
	assert_int_equal(dnsq_frame(b, 2), -EBADMSG);
	b[1] = 11; /* shorter than a header */
	assert_int_equal(dnsq_frame(b, 2), -EBADMSG);
	b[1] = 12;
	assert_int_equal(dnsq_frame(b, 13), 0); /* truncated */
	assert_int_equal(dnsq_frame(b, 14), 12);
	assert_int_equal(dnsq_frame(b, 80), 12); /* the rest is the next frame's */
	b[0] = 0xff;
	b[1] = 0xff; /* the largest a prefix can say: needs all of it */
	assert_int_equal(dnsq_frame(b, 80), 0);
}

static void test_tcp_pipelined(void **state)
{
	uint8_t buf[512];
	uint16_t ids[8];
	size_t n = 0;
	int c = client_pair();

	n += frame(buf + n, 101, 20);
	n += frame(buf + n, 102, 12);
	n += frame(buf + n, 103, 40);
	assert_int_equal(send(c, buf, n, 0), (ssize_t)n);
	assert_int_equal(read_answers(c, ids, 3, 2000), 3);
	assert_int_equal(ids[0], 101);
	assert_int_equal(ids[1], 102);
	assert_int_equal(ids[2], 103);
	assert_int_equal(fp.queries, 3);
	assert_int_equal(dnsq_stats.tcp_queries, 3);
	assert_int_equal(dnsq_stats.answered, 3);
	close(c);
	run(20);
}

static void test_tcp_byte_by_byte(void **state)
{
	uint8_t buf[64];
	uint16_t id;
	size_t n = frame(buf, 7, 30);
	int c = client_pair();

	for (size_t i = 0; i < n; i++) {
		assert_int_equal(send(c, buf + i, 1, 0), 1);
		run(1);
		if (i + 1 < n)
			assert_int_equal(fp.queries, 0);
	}
	assert_int_equal(read_answers(c, &id, 1, 2000), 1);
	assert_int_equal(id, 7);
	assert_int_equal(fp.last_len, 30);
	close(c);
	run(20);
}

static void test_tcp_out_of_order(void **state)
{
	uint8_t buf[256];
	uint16_t ids[4];
	size_t n = 0;
	int c = client_pair();

	fp.mode = HOLD;
	for (uint16_t i = 0; i < 4; i++)
		n += frame(buf + n, (uint16_t)(200 + i), 16);
	assert_int_equal(send(c, buf, n, 0), (ssize_t)n);
	run(20);
	assert_int_equal(fp.n_held, 4);
	/* answered last first: each goes out as it comes, with its own prefix */
	for (int i = 3; i >= 0; i--)
		answer(fp.held[i], held_msgs.msg[i], held_msgs.len[i]);
	assert_int_equal(read_answers(c, ids, 4, 2000), 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ids[i], 203 - i);
	/* the client half-closes: nothing open, so dnsq closes too */
	shutdown(c, SHUT_WR);
	assert_true(peer_closed(c, 1000));
	assert_int_equal(fp.cancels, 0);
	close(c);
}

static void test_tcp_garbage_lengths(void **state)
{
	static const uint8_t zero[] = { 0, 0 }, short_len[] = { 0, 5, 1, 2, 3, 4, 5 };
	int c = client_pair();

	assert_int_equal(send(c, zero, sizeof(zero), 0), 2);
	assert_true(peer_closed(c, 1000));
	close(c);
	assert_int_equal(dnsq_stats.tcp_closed_bad, 1);

	c = client_pair();
	assert_int_equal(send(c, short_len, sizeof(short_len), 0), (ssize_t)sizeof(short_len));
	assert_true(peer_closed(c, 1000));
	close(c);
	assert_int_equal(dnsq_stats.tcp_closed_bad, 2);
	assert_int_equal(fp.queries, 0);

	/* random bytes: the first two are a length; whatever they say, no crash, no answer
	 * to anything the plugin did not see as a whole message */
	srand(7);
	for (int round = 0; round < 50; round++) {
		uint8_t junk[300];
		uint16_t id;
		unsigned before = fp.queries;

		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)rand();
		c = client_pair();
		send(c, junk, 1 + (size_t)rand() % sizeof(junk), 0);
		read_answers(c, &id, 1, 5);
		close(c);
		run(5);
		assert_true(fp.queries - before <= 25);
	}
}

static void test_tcp_truncated_and_stalled(void **state)
{
	struct dnsq_opts o = { .query_timeout_ms = 10000, .tcp_stall_ms = 50, .tcp_idle_ms = 80 };
	uint8_t buf[64];
	size_t n;
	int c;

	dnsq_set_opts(&o);
	/* a message cut short by the client's close: never handed to the plugin */
	c = client_pair();
	n = frame(buf, 9, 40);
	assert_int_equal(send(c, buf, n - 5, 0), (ssize_t)(n - 5));
	shutdown(c, SHUT_WR);
	assert_true(peer_closed(c, 1000));
	close(c);
	assert_int_equal(fp.queries, 0);

	/* a client that stops mid-message: closed after tcp_stall_ms, counted */
	c = client_pair();
	assert_int_equal(send(c, buf, 7, 0), 7);
	assert_true(peer_closed(c, 2000));
	close(c);
	assert_int_equal(dnsq_stats.tcp_stalled, 1);

	/* an idle connection with nothing open: closed after tcp_idle_ms, not a stall */
	c = client_pair();
	assert_true(peer_closed(c, 2000));
	close(c);
	assert_int_equal(dnsq_stats.tcp_stalled, 1);
	assert_int_equal(fp.queries, 0);
}

static void test_tcp_client_gone_cancels(void **state)
{
	uint8_t buf[128];
	size_t n = frame(buf, 11, 20);
	int c;

	/* EOF with a query open: the answer still goes out, then the connection closes */
	c = client_pair();
	fp.mode = HOLD;
	assert_int_equal(send(c, buf, n, 0), (ssize_t)n);
	run(20);
	assert_int_equal(fp.n_held, 1);
	shutdown(c, SHUT_WR);
	run(20);
	answer(fp.held[0], held_msgs.msg[0], held_msgs.len[0]);
	uint16_t id;

	assert_int_equal(read_answers(c, &id, 1, 1000), 1);
	assert_int_equal(id, 11);
	assert_true(peer_closed(c, 1000));
	close(c);
	assert_int_equal(fp.cancels, 0);

	/* a client that resets (closes with our answer unread): open queries are cancelled */
	c = client_pair();
	n = frame(buf, 12, 20);
	n += frame(buf + n, 13, 20);
	assert_int_equal(send(c, buf, n, 0), (ssize_t)n);
	run(20);
	assert_int_equal(fp.n_held, 3);
	answer(fp.held[1], held_msgs.msg[1], held_msgs.len[1]);
	run(20);
	close(c);
	run(50);
	assert_int_equal(fp.cancels, 1);
	assert_null(fp.held[2]);
	assert_int_equal(dnsq_stats.cancelled, 1);
}

static void test_tcp_inflight_bound(void **state)
{
	uint8_t buf[64 * 20];
	uint16_t ids[64];
	size_t n = 0;
	int c = client_pair();

	fp.mode = HOLD;
	for (uint16_t i = 0; i < 40; i++)
		n += frame(buf + n, (uint16_t)(1000 + i), 16);
	assert_int_equal(send(c, buf, n, 0), (ssize_t)n);
	run(30);
	/* reading pauses at the bound */
	assert_int_equal(fp.n_held, DNSQ_TCP_INFLIGHT);
	for (unsigned i = 0; i < fp.n_held; i++)
		answer(fp.held[i], held_msgs.msg[i], held_msgs.len[i]);
	run(30);
	/* the rest were read once there was room */
	assert_int_equal(fp.n_held, 40);
	for (unsigned i = DNSQ_TCP_INFLIGHT; i < fp.n_held; i++)
		answer(fp.held[i], held_msgs.msg[i], held_msgs.len[i]);
	assert_int_equal(read_answers(c, ids, 40, 2000), 40);
	assert_int_equal(ids[39], 1039);
	close(c);
	run(20);
}

/* ------------------------------------------------------------------ owner-less queries */

static struct {
	unsigned calls;
	size_t len;
	bool dropped;
} rep;

static void reply_cb(void *arg, const uint8_t *msg, size_t len)
{
	rep.calls++;
	rep.len = len;
	rep.dropped = msg == NULL;
}

static void test_query_paths(void **state)
{
	struct xp_conn_info info = { .size = sizeof(info), .l4proto = IPPROTO_UDP };
	struct dnsq_opts o = { .query_timeout_ms = 40, .tcp_stall_ms = 50, .tcp_idle_ms = 80 };
	uint8_t q[40];

	make_query(q, 1, sizeof(q));
	memset(&rep, 0, sizeof(rep));
	/* answered inside query() */
	assert_null(dnsq_query_new(&loop, &info, q, sizeof(q), reply_cb, NULL));
	assert_int_equal(rep.calls, 1);
	assert_int_equal(rep.len, sizeof(q));

	/* too short to be DNS: the plugin never sees it */
	assert_null(dnsq_query_new(&loop, &info, q, 11, reply_cb, NULL));
	assert_int_equal(dnsq_stats.bad_queries, 1);
	assert_int_equal(fp.queries, 1);

	/* dropped by the plugin */
	fp.mode = DROP_NOW;
	assert_null(dnsq_query_new(&loop, &info, q, sizeof(q), reply_cb, NULL));
	assert_true(rep.dropped);
	assert_int_equal(dnsq_stats.dropped, 1);

	/* an answer too big to send: counted, reported as a drop */
	fp.mode = ANSWER_HUGE;
	rep.calls = 0;
	assert_null(dnsq_query_new(&loop, &info, q, sizeof(q), reply_cb, NULL));
	assert_int_equal(rep.calls, 1);
	assert_true(rep.dropped);
	assert_int_equal(dnsq_stats.bad_answers, 1);

	/* query() failing: counted, no reply */
	fp.mode = FAIL_QUERY;
	rep.calls = 0;
	assert_null(dnsq_query_new(&loop, &info, q, sizeof(q), reply_cb, NULL));
	assert_int_equal(dnsq_stats.query_errors, 1);
	assert_int_equal(rep.calls, 0);

	/* never answered: timed out, the plugin told */
	dnsq_set_opts(&o);
	fp.mode = HOLD;
	assert_non_null(dnsq_query_new(&loop, &info, q, sizeof(q), reply_cb, NULL));
	run(120);
	assert_int_equal(dnsq_stats.timeouts, 1);
	assert_int_equal(fp.cancels, 1);
	assert_int_equal(rep.calls, 1);
	assert_true(rep.dropped);

	/* cancelled by the caller: the plugin told, no reply */
	rep.calls = 0;
	xp_dns_query_t *h = dnsq_query_new(&loop, &info, q, sizeof(q), reply_cb, NULL);
	assert_non_null(h);
	dnsq_query_cancel(h);
	assert_int_equal(fp.cancels, 2);
	assert_int_equal(rep.calls, 0);
	assert_null(fp.held[1]);

	/* no [dns] instance */
	dnsq_clear();
	assert_null(dnsq_query_new(&loop, &info, q, sizeof(q), reply_cb, NULL));
	assert_int_equal(dnsq_stats.no_plugin, 1);
}

/* ------------------------------------------------------------------ [dns] and options */

static struct cfg *parse(const char *text, char **errors)
{
	struct cfg *cfg = NULL;

	*errors = NULL;
	cfg_parse("t.ini", text, strlen(text), &cfg, errors);
	return cfg;
}

#define BASE "[global]\nlan = eth0\n"

static void test_dns_section(void **state)
{
	struct cfg *cfg;
	char *errors;

	cfg = parse(BASE, &errors);
	assert_non_null(cfg);
	assert_false(cfg->dns.present);
	assert_string_equal(cfg->dns.plugin, "dns");
	assert_true(cfg->dns.strict);
	assert_int_equal(cfg->dns.grace_ms, 60000);
	assert_int_equal(cfg->dns.map_size, 65536);
	assert_int_equal(cfg->dns.query_timeout_ms, 10000);
	assert_int_equal(cfg->dns.tcp_idle_ms, 30000);
	assert_int_equal(cfg->dns.tcp_stall_ms, 10000);
	cfg_free(cfg);

	/* the core's timeouts: parsed here, not handed to the plugin */
	cfg = parse(BASE "[dns]\nquery_timeout = 3s\ntcp_idle_timeout = 1h\n"
			 "tcp_stall_timeout = 100ms\n",
		    &errors);
	assert_non_null(cfg);
	assert_int_equal(cfg->dns.query_timeout_ms, 3000);
	assert_int_equal(cfg->dns.tcp_idle_ms, 3600000);
	assert_int_equal(cfg->dns.tcp_stall_ms, 100);
	assert_true(cfg_dns_core_key("query_timeout"));
	assert_true(cfg_dns_core_key("tcp_idle_timeout"));
	assert_true(cfg_dns_core_key("tcp_stall_timeout"));
	assert_false(cfg_dns_core_key("timeout")); /* the plugin's own (per upstream) */
	cfg_free(cfg);
	cfg = parse(BASE "[dns]\nquery_timeout = 99ms\ntcp_idle_timeout = 2h\n"
			 "tcp_stall_timeout = soon\nquery_timeout = 1s\n",
		    &errors);
	assert_null(cfg);
	assert_non_null(strstr(errors, "t.ini:4: [dns] query_timeout: '99ms' is not a duration "
				       "from 100ms to 10m"));
	assert_non_null(strstr(errors, "t.ini:5: [dns] tcp_idle_timeout: '2h' is not a duration "
				       "from 1s to 1h"));
	assert_non_null(strstr(errors, "t.ini:6: [dns] tcp_stall_timeout: 'soon' is not a "
				       "duration"));
	assert_non_null(strstr(errors, "t.ini:7: duplicate key 'query_timeout' in [dns]"));
	free(errors);

	cfg = parse(BASE "[dns]\nplugin = fakedns\nstrict = no\ngrace = 5m\nmap_size = 1024\n"
			 "answer = a.test 192.0.2.1\nanswer = b.test 192.0.2.2\n"
			 "[route]\nrule = dport:53, DNS\n",
		    &errors);
	assert_non_null(cfg);
	assert_true(cfg->dns.present);
	assert_int_equal(cfg->dns.line, 3);
	assert_string_equal(cfg->dns.plugin, "fakedns");
	assert_false(cfg->dns.strict);
	assert_int_equal(cfg->dns.grace_ms, 300000);
	assert_int_equal(cfg->dns.map_size, 1024);
	assert_non_null(cfg->dns.section);
	assert_int_equal(cfg->dns.section->n_kv, 6);
	assert_int_equal(cfg->route.rules[0].kind, RT_DNS);
	cfg_free(cfg);

	cfg = parse(BASE "[dns]\nstrict = maybe\ngrace = forever\nmap_size = 3\nplugin =\n"
			 "strict = yes\n[dns]\n[route]\nfallback = DNS\n",
		    &errors);
	assert_null(cfg);
	assert_non_null(errors);
	assert_non_null(strstr(errors, "t.ini:4: [dns] strict: 'maybe' is not a boolean"));
	assert_non_null(strstr(errors, "t.ini:5: [dns] grace: 'forever' is not a duration"));
	assert_non_null(strstr(errors, "t.ini:6: [dns] map_size: '3' is not a number from 16"));
	assert_non_null(strstr(errors, "t.ini:7: [dns] plugin: empty"));
	assert_non_null(strstr(errors, "t.ini:8: duplicate key 'strict' in [dns] (first at line 4)"));
	assert_non_null(strstr(errors, "t.ini:9: duplicate section [dns] (first at line 3)"));
	assert_non_null(strstr(errors, "fallback cannot be DNS"));
	free(errors);

	cfg = parse(BASE "[route]\nrule = dport:53, DNS\n", &errors);
	assert_null(cfg);
	assert_non_null(strstr(errors, "t.ini:4: rule target DNS needs a [dns] section"));
	free(errors);
}

/* The fakedns test plugin declares `answer` as XP_OPT_LIST and `ttl` as a duration. */
struct fake_cfg {
	const char *const *answer;
	uint64_t ttl_ms;
};

static void test_opt_list(void **state)
{
	const char *so = getenv("XP_FAKEDNS");
	struct plug_registry reg = { 0 };
	struct plugin *p;
	struct cfg *cfg;
	char err[512], *errors = NULL;
	struct fake_cfg *fc;
	void *conf;
	char *text;
	size_t n;

	if (!so)
		skip();
	assert_int_equal(plug_load(so, &p, err, sizeof(err)), 0);
	assert_int_equal(plug_registry_add(&reg, p, err, sizeof(err)), 0);

	/* [dns]'s own keys are not the plugin's options: dnsq_apply leaves them out */
	cfg = parse(BASE "[dns]\nplugin = fakedns\nanswer = a.test 192.0.2.1\nttl = 5s\n"
			 "strict = no\nanswer = b.test 2001:db8::1\ngrace = 1s\n",
		    &errors);
	assert_non_null(cfg);
	assert_int_equal(plug_config_fill(p, "t.ini", cfg->dns.section, &conf, &errors), -EINVAL);
	assert_non_null(strstr(errors, "t.ini:7: [dns] strict: unknown option"));
	free(errors);
	errors = NULL;
	assert_int_equal(dnsq_apply(cfg, &reg, NULL, true, &errors), 0);
	assert_null(errors);
	cfg_free(cfg);

	/* fill directly from a section without core keys */
	struct cfg_kv kv[] = {
		{ "answer", "a.test 192.0.2.1", 3 },
		{ "ttl", "5s", 4 },
		{ "answer", "b.test 2001:db8::1", 5 },
	};
	struct cfg_section sec = { .name = "dns", .line = 2, .kv = kv, .n_kv = 3 };

	assert_int_equal(plug_config_fill(p, "t.ini", &sec, &conf, &errors), 0);
	fc = conf;
	assert_string_equal(fc->answer[0], "a.test 192.0.2.1");
	assert_string_equal(fc->answer[1], "b.test 2001:db8::1");
	assert_null(fc->answer[2]);
	assert_int_equal(fc->ttl_ms, 5000);
	plug_config_free(p, conf);

	/* absent: an empty list, never NULL */
	sec.kv = kv + 1;
	sec.n_kv = 1;
	assert_int_equal(plug_config_fill(p, "t.ini", &sec, &conf, &errors), 0);
	fc = conf;
	assert_non_null(fc->answer);
	assert_null(fc->answer[0]);
	plug_config_free(p, conf);

	/* only LIST keys may repeat */
	struct cfg_kv twice[] = { { "ttl", "5s", 3 }, { "ttl", "6s", 4 } };

	sec.kv = twice;
	sec.n_kv = 2;
	assert_int_equal(plug_config_fill(p, "t.ini", &sec, &conf, &errors), -EINVAL);
	assert_non_null(strstr(errors, "t.ini:4: [dns] ttl: set twice (first at line 3)"));
	free(errors);
	errors = NULL;

	/* bounded: 1024 values, the 1025th is an error naming its line */
	struct cfg_kv *many = calloc(1100, sizeof(*many));

	assert_non_null(many);
	for (n = 0; n < 1100; n++) {
		many[n].key = "answer";
		many[n].value = "x.test 192.0.2.1";
		many[n].line = (int)n + 3;
	}
	sec.kv = many;
	sec.n_kv = 1100;
	assert_int_equal(plug_config_fill(p, "t.ini", &sec, &conf, &errors), -EINVAL);
	assert_non_null(strstr(errors, "t.ini:1027: [dns] answer: more than 1024 values"));
	free(errors);
	errors = NULL;
	free(many);

	/* dnsq_apply: the plugin's option errors come back with file:line */
	text = BASE "[dns]\nplugin = fakedns\nbogus = 1\nttl = soon\n";
	cfg = parse(text, &errors);
	assert_non_null(cfg);
	assert_int_equal(dnsq_apply(cfg, &reg, NULL, true, &errors), -EINVAL);
	assert_non_null(strstr(errors, "t.ini:5: [dns] bogus: unknown option"));
	assert_non_null(strstr(errors, "t.ini:6: [dns] ttl: \"soon\" is not a duration"));
	free(errors);
	errors = NULL;
	cfg_free(cfg);

	/* a plugin that is not a DNS plugin */
	cfg = parse(BASE "[dns]\nplugin = nosuch\n", &errors);
	assert_true(dnsq_apply(cfg, &reg, NULL, true, &errors) < 0);
	assert_non_null(strstr(errors, "t.ini:3: [dns] plugin:"));
	free(errors);
	cfg_free(cfg);
	plug_registry_free(&reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame),
		cmocka_unit_test_setup_teardown(test_tcp_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_byte_by_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_out_of_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_garbage_lengths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_truncated_and_stalled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_client_gone_cancels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_inflight_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_paths, setup, teardown),
		cmocka_unit_test(test_dns_section),
		cmocka_unit_test(test_opt_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
