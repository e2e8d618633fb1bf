/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_sniff - the sniff core: sniff_begin/sniff_offer with fake sniffers (found, more, not
 * mine, errors, bad names, ports and caps, max_bytes), name validation, and conn.c's SNIFF state
 * on a real worker (conn_harness) with a fake sniff hook: peeked bytes reach the outbound
 * intact, an unclaimed port is routed at once, a silent client after the timeout, EOF and
 * max_bytes end the wait, a client gone while sniffing leaks nothing.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"
#include "conn_harness.h"
#include "sniff.h"
#include "udp.h"

/* ------------------------------------------------------------------------------------------ */
/* Fake sniffers: "NAME:<name>\n" at the start of the bytes; "W" alone means "more"           */

struct fake {
	int calls;
	int mode; /* 0: parse, 1: always MORE, 2: always NOT_MINE, 3: error, 4: FOUND + garbage */
	const char *prefix;
};

static int fake_sniff(void *inst, const struct xp_sniff_input *in, struct xp_sniff_result *out)
{
	struct fake *f = inst;
	const char *pfx = f->prefix;
	size_t pl = strlen(pfx);
	const uint8_t *d;
	size_t len;

	f->calls++;
	assert_int_equal(in->size, sizeof(*in));
	assert_true(in->count >= 1);
	d = in->parts[0].data;
	len = in->parts[0].len;
	switch (f->mode) {
	case 1:
		return XP_SNIFF_MORE;
	case 2:
		return XP_SNIFF_NOT_MINE;
	case 3:
		return -EIO;
	case 4:
		memset(out->name, 'x', sizeof(out->name)); /* not terminated */
		return XP_SNIFF_FOUND;
	}
	if (len < pl)
		return memcmp(d, pfx, len) ? XP_SNIFF_NOT_MINE : XP_SNIFF_MORE;
	if (memcmp(d, pfx, pl))
		return XP_SNIFF_NOT_MINE;
	const uint8_t *nl = memchr(d + pl, '\n', len - pl);

	if (!nl)
		return XP_SNIFF_MORE;
	size_t n = (size_t)(nl - d) - pl;

	if (n >= sizeof(out->name))
		return XP_SNIFF_NOT_MINE;
	memcpy(out->name, d + pl, n);
	out->name[n] = '\0';
	snprintf(out->protocol, sizeof(out->protocol), "fake");
	return XP_SNIFF_FOUND;
}

static const uint16_t port_443[] = {443, 8443, 0};

static struct xp_sniffer_ops ops_tcp443 = {
	.size = sizeof(struct xp_sniffer_ops),
	.caps = XP_SNIFF_TCP,
	.ports = port_443,
	.max_bytes = 64,
	.sniff = fake_sniff,
};
static struct xp_sniffer_ops ops_any = {
	.size = sizeof(struct xp_sniffer_ops),
	.caps = XP_SNIFF_TCP | XP_SNIFF_UDP,
	.ports = NULL,
	.max_bytes = 32,
	.sniff = fake_sniff,
};
static struct xp_sniffer_ops ops_udp = {
	.size = sizeof(struct xp_sniffer_ops),
	.caps = XP_SNIFF_UDP,
	.ports = port_443,
	.max_bytes = 1200,
	.sniff = fake_sniff,
};

static enum sniff_verdict offer_str(const struct sniff_set *s, struct sniff_state *st,
				    const char *text, struct xp_sniff_result *res, const char **by)
{
	struct xp_bytes part = {.data = (const uint8_t *)text, .len = strlen(text)};

	return sniff_offer(s, st, &part, 1, res, by);
}

static void test_names(void **state)
{
	char n[300];

	strcpy(n, "WWW.Example.COM.");
	assert_true(sniff_name_ok(n, sizeof(n)));
	assert_string_equal(n, "www.example.com");
	strcpy(n, "xn--bcher-kva.ch");
	assert_true(sniff_name_ok(n, sizeof(n)));
	strcpy(n, "a_b-c.d");
	assert_true(sniff_name_ok(n, sizeof(n)));
	strcpy(n, "");
	assert_false(sniff_name_ok(n, sizeof(n)));
	strcpy(n, ".");
	assert_false(sniff_name_ok(n, sizeof(n)));
	strcpy(n, "a..b");
	assert_false(sniff_name_ok(n, sizeof(n)));
	strcpy(n, ".a");
	assert_false(sniff_name_ok(n, sizeof(n)));
	strcpy(n, "a b");
	assert_false(sniff_name_ok(n, sizeof(n)));
	strcpy(n, "evil\x1b[31m.com");
	assert_false(sniff_name_ok(n, sizeof(n)));
	strcpy(n, "bad/slash.com");
	assert_false(sniff_name_ok(n, sizeof(n)));
	/* labels up to 63, names up to 253 */
	memset(n, 'a', 63);
	strcpy(n + 63, ".com");
	assert_true(sniff_name_ok(n, sizeof(n)));
	memset(n, 'a', 64);
	strcpy(n + 64, ".com");
	assert_false(sniff_name_ok(n, sizeof(n)));
	for (int i = 0; i < 254; i++)
		n[i] = i % 2 ? '.' : 'a';
	n[253] = '\0';
	assert_true(sniff_name_ok(n, sizeof(n)));
	n[253] = 'a';
	n[254] = '\0';
	assert_false(sniff_name_ok(n, sizeof(n)));
	/* not terminated within the buffer */
	memset(n, 'a', 16);
	assert_false(sniff_name_ok(n, 16));
}

static void test_claims(void **state)
{
	struct fake f1 = {.prefix = "NAME:"}, f2 = {.prefix = "HOST:"}, f3 = {.prefix = "Q:"};
	struct sniff_set s = {.n = 3, .timeout_ms = 300};
	struct sniff_state st;

	s.v[0] = (struct sniffer){.name = "tls", .ops = &ops_tcp443, .inst = &f1};
	s.v[1] = (struct sniffer){.name = "http", .ops = &ops_any, .inst = &f2};
	s.v[2] = (struct sniffer){.name = "quic", .ops = &ops_udp, .inst = &f3};
	assert_true(sniff_begin(&s, IPPROTO_TCP, 443, &st));
	assert_int_equal(st.pending, 0x3);
	assert_int_equal(st.max_bytes, 64);
	assert_true(sniff_begin(&s, IPPROTO_TCP, 80, &st));
	assert_int_equal(st.pending, 0x2);
	assert_int_equal(st.max_bytes, 32);
	assert_true(sniff_begin(&s, IPPROTO_UDP, 443, &st));
	assert_int_equal(st.pending, 0x6);
	assert_int_equal(st.max_bytes, 1200);
	/* nobody claims: the caller routes at once */
	s.n = 1;
	assert_false(sniff_begin(&s, IPPROTO_TCP, 22, &st));
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.max_bytes, 0);
	assert_false(sniff_begin(&s, IPPROTO_UDP, 443, &st));
	assert_false(sniff_begin(&s, 47, 0, &st)); /* GRE: no sniffer caps */
	assert_false(sniff_begin(NULL, IPPROTO_TCP, 443, &st));
	/* a sniffer with a huge max_bytes is capped */
	struct xp_sniffer_ops big = ops_any;

	big.max_bytes = 1u << 30;
	s.v[0].ops = &big;
	assert_true(sniff_begin(&s, IPPROTO_TCP, 1, &st));
	assert_int_equal(st.max_bytes, SNIFF_BYTES_MAX);
	assert_int_equal(f1.calls + f2.calls + f3.calls, 0);
}

static void test_offer(void **state)
{
	struct fake f1 = {.prefix = "NAME:"}, f2 = {.prefix = "HOST:"};
	struct sniff_set s = {.n = 2};
	struct sniff_state st;
	struct xp_sniff_result res;
	const char *by = NULL;

	s.v[0] = (struct sniffer){.name = "tls", .ops = &ops_tcp443, .inst = &f1};
	s.v[1] = (struct sniffer){.name = "http", .ops = &ops_any, .inst = &f2};

	/* the second sniffer finds it after the first says not mine */
	assert_true(sniff_begin(&s, IPPROTO_TCP, 443, &st));
	assert_int_equal(offer_str(&s, &st, "HOST:Example.ORG\nrest", &res, &by), SNIFF_FOUND);
	assert_string_equal(res.name, "example.org");
	assert_string_equal(by, "http");
	assert_int_equal(st.pending, 0x2);

	/* more, then found with more bytes; the one that said NOT_MINE is not asked again */
	f1.calls = f2.calls = 0;
	assert_true(sniff_begin(&s, IPPROTO_TCP, 443, &st));
	assert_int_equal(offer_str(&s, &st, "NAM", &res, &by), SNIFF_MORE);
	assert_int_equal(st.pending, 0x1); /* "NAM" is not "HOST:" */
	assert_int_equal(offer_str(&s, &st, "NAME:a.b", &res, &by), SNIFF_MORE);
	assert_int_equal(offer_str(&s, &st, "NAME:a.b\n", &res, &by), SNIFF_FOUND);
	assert_string_equal(res.name, "a.b");
	assert_string_equal(by, "tls");
	assert_int_equal(f1.calls, 3);
	assert_int_equal(f2.calls, 1);
	assert_int_equal(st.offers, 4);

	/* all not mine */
	assert_true(sniff_begin(&s, IPPROTO_TCP, 443, &st));
	assert_int_equal(offer_str(&s, &st, "SSH-2.0-OpenSSH", &res, &by), SNIFF_NONE);
	assert_int_equal(st.refused, 0);

	/* MORE past max_bytes gives up: http's max is 32 */
	f2.mode = 1;
	assert_true(sniff_begin(&s, IPPROTO_TCP, 80, &st));
	assert_int_equal(offer_str(&s, &st, "0123456789", &res, &by), SNIFF_MORE);
	assert_int_equal(offer_str(&s, &st, "0123456789012345678901234567890123456789", &res,
				   &by),
			 SNIFF_NONE);

	/* an error is not mine, counted */
	f2.mode = 3;
	assert_true(sniff_begin(&s, IPPROTO_TCP, 80, &st));
	assert_int_equal(offer_str(&s, &st, "x", &res, &by), SNIFF_NONE);
	assert_int_equal(st.refused, 1);

	/* FOUND with a name that is no name: refused, counted, the next sniffer still asked */
	f1.mode = 4;
	f2.mode = 0;
	f1.calls = f2.calls = 0;
	assert_true(sniff_begin(&s, IPPROTO_TCP, 443, &st));
	assert_int_equal(offer_str(&s, &st, "HOST:ok.example\n", &res, &by), SNIFF_FOUND);
	assert_string_equal(res.name, "ok.example");
	assert_string_equal(by, "http");
	assert_int_equal(st.refused, 1);
	assert_int_equal(f1.calls, 1);
	/* a FOUND whose name has a bad character */
	f1.mode = 0;
	assert_true(sniff_begin(&s, IPPROTO_TCP, 443, &st));
	assert_int_equal(offer_str(&s, &st, "NAME:a\x01.com\n", &res, &by), SNIFF_NONE);
	assert_int_equal(st.refused, 1);

	/* the first FOUND wins: both could answer */
	f2.prefix = "NAME:";
	assert_true(sniff_begin(&s, IPPROTO_TCP, 443, &st));
	assert_int_equal(offer_str(&s, &st, "NAME:first.example\n", &res, &by), SNIFF_FOUND);
	assert_string_equal(by, "tls");

	/* UDP: several datagrams, the sniffer sees every part */
	struct fake f3 = {.prefix = "NAME:"};
	struct sniff_set u = {.n = 1};
	struct xp_bytes parts[2] = {
		{.data = (const uint8_t *)"NAME:q.example\n", .len = 15},
		{.data = (const uint8_t *)"second", .len = 6},
	};

	u.v[0] = (struct sniffer){.name = "quic", .ops = &ops_udp, .inst = &f3};
	assert_true(sniff_begin(&u, IPPROTO_UDP, 8443, &st));
	assert_int_equal(sniff_offer(&u, &st, parts, 2, &res, &by), SNIFF_FOUND);
	assert_string_equal(res.name, "q.example");
	/* nothing pending: NONE without calling anyone */
	st.pending = 0;
	f3.calls = 0;
	assert_int_equal(sniff_offer(&u, &st, parts, 1, &res, &by), SNIFF_NONE);
	assert_int_equal(f3.calls, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* conn.c's SNIFF state on a real worker                                                       */

static struct harness H;

static struct {
	atomic_int begins, offers, decides, aborts;
	atomic_size_t last_len;
	atomic_size_t max_bytes;   /* what begin asks for (0: port not claimed) */
	atomic_uint_fast64_t timeout_ms;
	atomic_int found_after;	   /* offer says decided once this many bytes are seen (0: never) */
} hk;

static int inspect_route(void *ctx, const union xp_sockaddr *client,
			 const union xp_sockaddr *dst, struct conn_route *out)
{
	out->route = XP_ROUTE_INSPECT;
	out->source = XP_SOURCE_RULE;
	out->rule_id = 3;
	return 0;
}

static int hk_begin(const struct xp_conn_info *info, void **state, size_t *max_bytes,
		    uint64_t *timeout_ms)
{
	atomic_fetch_add(&hk.begins, 1);
	*state = &hk;
	*max_bytes = atomic_load(&hk.max_bytes);
	*timeout_ms = atomic_load(&hk.timeout_ms);
	return 0;
}

static int hk_offer(void *state, const uint8_t *buf, size_t len)
{
	int after = atomic_load(&hk.found_after);

	assert_ptr_equal(state, &hk);
	atomic_fetch_add(&hk.offers, 1);
	atomic_store(&hk.last_len, len);
	return after && len >= (size_t)after;
}

static int hk_decide(void *state, const struct xp_conn_info *info, struct conn_route *out)
{
	assert_ptr_equal(state, &hk);
	atomic_fetch_add(&hk.decides, 1);
	atomic_fetch_add(&H.ob.refs, 1);
	out->ob = &H.ob;
	out->route = XP_ROUTE_PROXY;
	out->source = XP_SOURCE_RULE;
	out->rule_id = 7;
	snprintf(out->domain, sizeof(out->domain), "sniffed.example");
	out->sniffer = "fake";
	return 0;
}

static void hk_abort(void *state)
{
	assert_ptr_equal(state, &hk);
	atomic_fetch_add(&hk.aborts, 1);
}

static const struct conn_sniff_hook hook = {
	.begin = hk_begin, .offer = hk_offer, .decide = hk_decide, .abort = hk_abort};

static void start(size_t max_bytes, uint64_t timeout_ms, int found_after)
{
	struct conn_opts o = {.connect_timeout_ms = 5000, .idle_timeout_ms = 30000,
			      .halfclose_timeout_ms = 30000, .sniff_timeout_ms = 1};

	memset(&hk, 0, sizeof(hk));
	atomic_store(&hk.max_bytes, max_bytes);
	atomic_store(&hk.timeout_ms, timeout_ms);
	atomic_store(&hk.found_after, found_after);
	conn_set_sniff_hook(&hook);
	h_start(&H, FAKE_FD_SYNC, &o, 0);
	/* before any client: the worker reads these per accepted connection */
	H.w.route = inspect_route;
	H.w.route_ctx = &H;
}

static void stop(void)
{
	h_stop(&H);
	conn_set_sniff_hook(NULL);
}

static void send_all(int fd, const void *buf, size_t len)
{
	assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Bytes offered in two pieces, decided on the second: the server gets all of them, once. */
static void test_conn_found(void **state)
{
	uint8_t up[3000], got[4000];
	int c, s, end;

	start(2048, 10000, 100);
	h_fill(up, sizeof(up), 7);
	c = h_client(&H);
	send_all(c, up, 40);
	/* the worker peeks at 40 bytes, wants 100: wait until it asked */
	for (int i = 0; i < 5000 && atomic_load(&hk.offers) < 1; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&hk.offers), 1);
	assert_int_equal(h_accept(&H, 100), -1); /* not routed yet */
	send_all(c, up + 40, sizeof(up) - 40);
	s = h_accept(&H, 5000);
	assert_true(s >= 0);
	assert_int_equal(atomic_load(&hk.decides), 1);
	assert_true(atomic_load(&hk.last_len) >= 100);
	shutdown(c, SHUT_WR);
	size_t n = h_read_until_end(s, got, sizeof(got), 5000, &end);

	assert_int_equal(end, 0);
	assert_int_equal(n, sizeof(up));
	assert_memory_equal(got, up, sizeof(up));
	close(s);
	close(c);
	assert_true(h_wait(h_idle, &H, 5000));
	assert_int_equal(atomic_load(&hk.aborts), 0);
	stop();
}

/* A port no sniffer claims: routed at once, a server-first protocol works. */
static void test_conn_unclaimed(void **state)
{
	char banner[32];
	int c, s;
	double t0;

	start(0, 60000, 0);
	t0 = now_ms();
	c = h_client(&H);
	s = h_accept(&H, 30000);
	assert_true(s >= 0);
	/* far below the 60 s sniff timeout: it did not wait for it */
	assert_true(now_ms() - t0 < 30000);
	assert_int_equal(atomic_load(&hk.offers), 0);
	assert_int_equal(atomic_load(&hk.decides), 1);
	send_all(s, "220 hello\r\n", 11);
	assert_int_equal(recv(c, banner, sizeof(banner), 0), 11);
	close(s);
	close(c);
	assert_true(h_wait(h_idle, &H, 5000));
	stop();
}

/* A claimed port, a silent client: routed when the timeout ends, with no bytes offered. */
static void test_conn_timeout(void **state)
{
	int c, s;

	start(512, 200, 0);
	c = h_client(&H);
	s = h_accept(&H, 10000);
	assert_true(s >= 0);
	assert_int_equal(atomic_load(&hk.offers), 0);
	assert_int_equal(atomic_load(&hk.decides), 1);
	send_all(s, "+OK\r\n", 5);
	char b[8];

	assert_int_equal(recv(c, b, sizeof(b), 0), 5);
	/* and the client's bytes after the decision still flow */
	send_all(c, "QUIT\r\n", 6);
	assert_int_equal(recv(s, b, sizeof(b), 0), 6);
	close(s);
	close(c);
	assert_true(h_wait(h_idle, &H, 5000));
	stop();
}

/* UDP sessions the UDP core routed at the sniff deadline (udp_stats.sniff_timeout) are sniff
 * timeouts too: "stats: sniff" must add up (flows = named + no-name + timeouts + unclaimed). */
static void test_stats_udp_timeouts(void **state)
{
	struct sniff_stats a, b;

	(void)state;
	sniff_stats_get(&a);
	atomic_fetch_add(&udp_stats.sniff_timeout, 2);
	sniff_stats_get(&b);
	atomic_fetch_sub(&udp_stats.sniff_timeout, 2);
	assert_int_equal(b.timeouts - a.timeouts, 2);
	assert_int_equal(b.flows, a.flows);
	assert_int_equal(b.none, a.none);
}

/* EOF ends the wait (a short request and a half-close); max_bytes ends it too. */
static void test_conn_eof_and_max(void **state)
{
	uint8_t got[512], up[300];
	int c, s, end;

	start(512, 60000, 0);
	c = h_client(&H);
	send_all(c, "abc", 3);
	shutdown(c, SHUT_WR);
	s = h_accept(&H, 30000);
	assert_true(s >= 0);
	assert_int_equal(h_read_until_end(s, got, sizeof(got), 5000, &end), 3);
	assert_int_equal(end, 0);
	assert_memory_equal(got, "abc", 3);
	close(s);
	close(c);
	assert_true(h_wait(h_idle, &H, 5000));
	stop();

	start(16, 60000, 0);
	h_fill(up, sizeof(up), 3);
	c = h_client(&H);
	send_all(c, up, sizeof(up));
	s = h_accept(&H, 30000);
	assert_true(s >= 0);
	assert_true(atomic_load(&hk.last_len) <= 16);
	shutdown(c, SHUT_WR);
	assert_int_equal(h_read_until_end(s, got, sizeof(got), 5000, &end), sizeof(up));
	assert_memory_equal(got, up, sizeof(up));
	close(s);
	close(c);
	assert_true(h_wait(h_idle, &H, 5000));
	stop();
}

/* The client goes away while sniffing: the hook's state is released, nothing leaks. */
static void test_conn_abort(void **state)
{
	int c;

	start(512, 60000, 0);
	c = h_client(&H);
	send_all(c, "par", 3);
	for (int i = 0; i < 5000 && atomic_load(&hk.offers) < 1; i++)
		usleep(1000);
	h_reset_close(c);
	for (int i = 0; i < 5000 && atomic_load(&hk.aborts) + atomic_load(&hk.decides) < 1; i++)
		usleep(1000);
	assert_true(h_wait(h_idle, &H, 5000));
	/* either it saw the reset while sniffing (abort) or as an error right after a decide */
	assert_int_equal(atomic_load(&hk.aborts) + atomic_load(&hk.decides), 1);
	int s = h_accept(&H, 50);

	if (s >= 0)
		close(s);
	stop();
}

/* ------------------------------------------------------------------------------------------ */
/* [sniff] in the configuration                                                                */

static struct cfg *parse(const char *body, char **errors)
{
	char text[8192];
	struct cfg *c = NULL;

	snprintf(text, sizeof(text), "[global]\nlan = lan0\n%s", body);
	*errors = NULL;
	if (cfg_parse("t.ini", text, strlen(text), &c, errors))
		return NULL;
	return c;
}

static void expect_cfg_err(const char *body, const char *want)
{
	char *errors;
	struct cfg *c = parse(body, &errors);

	if (c)
		fail_msg("accepted: %s", body);
	if (!errors || !strstr(errors, want))
		fail_msg("errors '%s' do not contain '%s'", errors ? errors : "(none)", want);
	free(errors);
}

static void test_cfg_sniff(void **state)
{
	char *errors;
	struct cfg *c;

	/* no [sniff]: nothing sniffed, domain rules stay out of the kernel */
	c = parse("[route]\nrule = domain:a.com, DIRECT\n", &errors);
	assert_non_null(c);
	assert_false(c->sniff.present);
	assert_false(c->route.inspect_domains);
	assert_int_equal(c->global.sniff_timeout_ms, 300);
	cfg_free(c);

	/* defaults */
	c = parse("[sniff]\n", &errors);
	assert_non_null(c);
	assert_true(c->sniff.present);
	assert_int_equal(c->sniff.n_plugins, 2);
	assert_string_equal(c->sniff.plugins[0], "tls");
	assert_string_equal(c->sniff.plugins[1], "http");
	assert_int_equal(c->sniff.timeout_ms, 300);
	assert_true(c->sniff.cache);
	assert_true(c->route.inspect_domains);
	cfg_free(c);

	/* everything set; spaces around names; the timeout reaches the connections */
	c = parse("[sniff]\nplugins =  quic ,tls,  ./my_sniff.so\ntimeout = 1s\ncache = no\n",
		  &errors);
	assert_non_null(c);
	assert_int_equal(c->sniff.n_plugins, 3);
	assert_string_equal(c->sniff.plugins[0], "quic");
	assert_string_equal(c->sniff.plugins[2], "./my_sniff.so");
	assert_int_equal(c->sniff.timeout_ms, 1000);
	assert_int_equal(c->global.sniff_timeout_ms, 1000);
	assert_false(c->sniff.cache);
	cfg_free(c);

	/* an empty list: sniffing off */
	c = parse("[sniff]\nplugins =\n", &errors);
	assert_non_null(c);
	assert_int_equal(c->sniff.n_plugins, 0);
	assert_false(c->route.inspect_domains);
	cfg_free(c);

	/* the deprecated alias */
	c = parse("sniff_timeout = 150ms\n[sniff]\n", &errors);
	assert_non_null(c);
	assert_int_equal(c->sniff.timeout_ms, 150);
	assert_true(c->sniff.deprecated_alias);
	cfg_free(c);
	expect_cfg_err("sniff_timeout = 150ms\n[sniff]\ntimeout = 1s\n",
		       "deprecated alias of [sniff] timeout");

	/* garbage, oversized, duplicates */
	expect_cfg_err("[sniff]\ntimeout = soon\n", "[sniff] timeout: 'soon'");
	expect_cfg_err("[sniff]\ntimeout = 61s\n", "from 1ms to 60s");
	expect_cfg_err("[sniff]\ntimeout = 0\n", "from 1ms to 60s");
	expect_cfg_err("[sniff]\ncache = maybe\n", "[sniff] cache: 'maybe'");
	expect_cfg_err("[sniff]\nplugins = tls, tls\n", "'tls' is listed twice");
	expect_cfg_err("[sniff]\nplugins = tls, b@d\n", "'b@d' is not a plugin name");
	expect_cfg_err("[sniff]\nplugins = tls,,http\n" "colour = red\n",
		       "unknown key 'colour' in [sniff]");
	expect_cfg_err("[sniff]\ncache = yes\ncache = no\n", "duplicate key 'cache'");
	expect_cfg_err("[sniff]\n[sniff]\n", "duplicate section [sniff]");
	char big[2048] = "[sniff]\nplugins = ";

	for (int i = 0; i < 20; i++)
		snprintf(big + strlen(big), sizeof(big) - strlen(big), "p%d,", i);
	strcat(big, "\n");
	expect_cfg_err(big, "at most 16");
	memset(big, 0, sizeof(big));
	strcpy(big, "[sniff]\nplugins = ");
	memset(big + strlen(big), 'a', 300);
	strcat(big, "\n");
	expect_cfg_err(big, "is not a plugin name");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),	       cmocka_unit_test(test_claims),
		cmocka_unit_test(test_offer),	       cmocka_unit_test(test_conn_found),
		cmocka_unit_test(test_conn_unclaimed), cmocka_unit_test(test_conn_timeout),
		cmocka_unit_test(test_conn_eof_and_max), cmocka_unit_test(test_conn_abort),
		cmocka_unit_test(test_cfg_sniff),      cmocka_unit_test(test_stats_udp_timeouts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
