// SPDX-License-Identifier: GPL-2.0-only
/*
 * fuzz_udp - the UDP session table (core/udp.c) driven by arbitrary event sequences.
 *
 * The input is a program of one-byte opcodes with operands: datagrams from 8 clients (IPv4,
 * IPv6, IPv4-mapped, and one with a bogus address family) to 8 destinations with any length,
 * the router's answer for the next new session (PROXY, DNS, INSPECT, a refused verdict, an
 * error), endpoint-(in)dependent mapping, INSPECT decisions, outbound failures and deliveries
 * (also from inside udp_send), hook replies, option changes and loop turns (timers: idle
 * expiry, sniff deadlines, deferred closes). Replies have no sockets (hermetic): they fail and
 * are counted.
 *
 * Checks beyond crashes and leaks: the active-session counter always equals the table's size
 * and never exceeds max_sessions; after the worker is freed every outbound reference came back,
 * every udp_open was closed exactly once, and the DNS and sniff hooks saw each of their
 * sessions closed exactly once. udp.c is linked with log.c and loop.c only: the outbound
 * registry is replaced by the two functions udp.c calls.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "log.h"
#include "loop.h"
#include "outbound.h"
#include "udp.h"

#define REFS 1000000

static const struct xp_outbound_ops fz_ops;
static struct outbound OB = { .name = "fz", .id = 1, .ops = &fz_ops };

void outbound_put(struct outbound *ob)
{
	if (atomic_fetch_sub(&ob->refs, 1) <= 1)
		abort(); /* a reference given back twice */
}

struct outbound *outbound_get_by_name(const char *name)
{
	if (strcmp(name, "fz"))
		return NULL;
	atomic_fetch_add(&OB.refs, 1);
	return &OB;
}

struct outbound *outbound_resolve(const char *name, struct ob_via *via)
{
	memset(via, 0, sizeof(*via));
	return outbound_get_by_name(name);
}

static struct {
	const uint8_t *p, *end;
	int opens, closes;
	int dns_open, sniff_open; /* sessions the hooks saw and not yet closed */
	uint8_t next_route, next_rules_route;
	int route_err;
	bool fail_in_send, deliver_in_send;
	struct udp_sess *last_dns, *last_sniff;
	struct udp_worker *w;
} S;

static int fz_open(void *inst, xp_udp_t *s, const struct xp_target *t, void **uctx)
{
	if (S.route_err == -EIO)
		return -EIO;
	S.opens++;
	*uctx = s; /* the session itself: a plugin calls back for the session it serves */
	return 0;
}

static int fz_send(void *inst, void *uctx, const union xp_sockaddr *dst, const char *domain,
		   const void *buf, size_t len)
{
	union xp_sockaddr peer = *dst;

	if (S.fail_in_send)
		udp_fail(uctx, -ECONNRESET, "fuzz");
	if (S.deliver_in_send)
		udp_deliver(uctx, &peer, buf, len);
	return len == 3 ? -ENOTCONN : len == 4 ? -EAGAIN : 0;
}

static void fz_close(void *inst, void *uctx)
{
	S.closes++;
}

static const struct xp_outbound_ops fz_ops = {
	.size = sizeof(struct xp_outbound_ops),
	.caps = XP_OUTBOUND_UDP,
	.udp_open = fz_open,
	.udp_send = fz_send,
	.udp_close = fz_close,
};

static int fz_route(void *ctx, const union xp_sockaddr *c, const union xp_sockaddr *d,
		    unsigned flags, struct conn_route *out)
{
	memset(out, 0, sizeof(*out));
	if (S.route_err && S.route_err != -EIO)
		return S.route_err;
	out->route = flags & UDP_ROUTE_RULES ? S.next_rules_route : S.next_route;
	if (out->route == XP_ROUTE_PROXY)
		out->ob = outbound_get_by_name("fz");
	return 0;
}

static int fz_socket(void *ctx, int domain, int type, int protocol)
{
	return -EPERM; /* hermetic: no sockets */
}

static struct outbound *fz_direct(void *ctx)
{
	return outbound_get_by_name("fz");
}

static void dns_dgram(void *ctx, struct udp_sess *s, const union xp_sockaddr *c,
		      const union xp_sockaddr *d, const void *buf, size_t len)
{
	if (udp_sess_user(s) != &S) {
		udp_sess_set_user(s, &S);
		S.dns_open++;
	}
	S.last_dns = s;
	if (len & 1)
		udp_sess_reply(s, d, buf, len);
}

static void dns_closed(void *ctx, struct udp_sess *s)
{
	if (udp_sess_user(s) == &S)
		S.dns_open--;
	if (S.last_dns == s)
		S.last_dns = NULL;
}

static void sniff_offer(void *ctx, struct udp_sess *s, const struct xp_conn_info *info,
			const struct xp_bytes *parts, unsigned count)
{
	size_t total = 0;

	if (count < 1 || count > UDP_SNIFF_MAX_DGRAMS)
		abort();
	for (unsigned i = 0; i < count; i++)
		total += parts[i].len;
	if (total > UDP_SNIFF_MAX_BYTES)
		abort();
	if (udp_sess_user(s) != &S) {
		udp_sess_set_user(s, &S);
		S.sniff_open++;
	}
	S.last_sniff = s;
	if (parts[count - 1].len && parts[count - 1].data[0] == 'D')
		udp_sess_decide(s, parts[count - 1].len % 6, "fz", 1);
}

static void sniff_closed(void *ctx, struct udp_sess *s)
{
	if (udp_sess_user(s) == &S)
		S.sniff_open--;
	if (S.last_sniff == s)
		S.last_sniff = NULL;
}

static bool take(uint8_t *b)
{
	if (S.p >= S.end)
		return false;
	*b = *S.p++;
	return true;
}

static union xp_sockaddr addr_of(uint8_t i, bool dst)
{
	union xp_sockaddr a = { 0 };
	uint16_t port = (uint16_t)(dst ? 53 + (i & 7) : 4000 + (i & 7));

	switch ((i >> 3) & 3) {
	case 0:
		a.in.sin_family = AF_INET;
		a.in.sin_port = htons(port);
		a.in.sin_addr.s_addr = htonl((dst ? 0x0a000000u : 0xc0a80000u) | (i & 7));
		break;
	case 1:
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = htons(port);
		a.in6.sin6_addr.s6_addr[0] = dst ? 0x20 : 0xfd;
		a.in6.sin6_addr.s6_addr[15] = i & 7;
		break;
	case 2: /* IPv4-mapped, as the dual-stack socket reports IPv4 */
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = htons(port);
		a.in6.sin6_addr.s6_addr[10] = a.in6.sin6_addr.s6_addr[11] = 0xff;
		a.in6.sin6_addr.s6_addr[12] = dst ? 10 : 192;
		a.in6.sin6_addr.s6_addr[15] = i & 7;
		break;
	default:
		a.sa.sa_family = AF_UNIX; /* garbage */
		break;
	}
	return a;
}

static void check_counts(void)
{
	uint64_t active = atomic_load(&udp_stats.active);

	/* one worker: the process-wide counter is this worker's table */
	if (active != udp_worker_sessions(S.w))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct udp_dns_hook dh = { .datagram = dns_dgram, .closed = dns_closed };
	static const struct udp_sniff_hook sh = { .offer = sniff_offer, .closed = sniff_closed };
	static const struct udp_env env = {
		.route = fz_route,
		.netns_socket = fz_socket,
		.direct_outbound = fz_direct,
	};
	static bool once;
	struct udp_opts opts = { .idle_timeout_ms = 1, .sniff_timeout_ms = 1, .max_sessions = 6,
				 .max_reply_sockets = 2 };
	struct xp_loop loop;
	uint8_t op, a, b, len;
	static uint8_t payload[300];

	if (!once) {
		log_set_level(XP_LOG_ERROR);
		once = true;
	}
	memset(&S, 0, sizeof(S));
	memset(&udp_stats, 0, sizeof(udp_stats));
	atomic_store(&OB.refs, REFS);
	OB.udp_independent = false;
	S.p = data;
	S.end = data + size;
	S.next_route = XP_ROUTE_PROXY;
	S.next_rules_route = XP_ROUTE_PROXY;
	if (loop_init(&loop, 1, false, "fz"))
		return 0;
	udp_set_dns_hook(&dh);
	udp_set_sniff_hook(&sh);
	S.w = udp_worker_new(&loop, -1, &opts, &env);
	if (!S.w) {
		loop_fini(&loop);
		return 0;
	}
	while (take(&op)) {
		switch (op % 10) {
		case 0: /* a datagram: client, destination, length */
		case 1:
		case 2: {
			union xp_sockaddr c, d;

			if (!take(&a) || !take(&b) || !take(&len))
				break;
			c = addr_of(a, false);
			d = addr_of(b, true);
			for (unsigned i = 0; i < len; i++)
				payload[i] = S.p < S.end ? *S.p++ : 'x';
			udp_worker_input(S.w, &c, &d, payload, len);
			break;
		}
		case 3: /* the router's next answers */
			if (!take(&a))
				break;
			S.next_route = a % 7;
			S.next_rules_route = (a >> 3) % 7;
			S.route_err = (a >> 6) == 1 ? -ENOENT : (a >> 6) == 2 ? -EIO : 0;
			break;
		case 4:
			OB.udp_independent = !OB.udp_independent;
			break;
		case 5: /* the loop turns: timers that are due run */
			ev_now_update(loop.ev);
			ev_run(loop.ev, EVRUN_NOWAIT);
			break;
		case 6: /* a decision for the last INSPECT session */
			if (take(&a) && S.last_sniff)
				udp_sess_decide(S.last_sniff, a % 6, (a & 0x40) ? "fz" : "nope", a);
			break;
		case 7: /* from now on the outbound fails, or delivers, inside udp_send */
			if (!take(&a))
				break;
			S.fail_in_send = a & 1;
			S.deliver_in_send = a & 2;
			break;
		case 8: /* a DNS answer, and names */
			if (S.last_dns) {
				udp_sess_reply(S.last_dns, &udp_sess_info(S.last_dns)->dst, "r", 1);
				udp_sess_set_domain(S.last_dns, "example.com");
				udp_sess_set_domain(S.last_dns, NULL);
			}
			break;
		case 9: /* options as a reload sets them (applied directly: no thread here) */
			if (!take(&a))
				break;
			opts.max_sessions = 1 + a % 8;
			opts.idle_timeout_ms = 1 + (a >> 3);
			udp_worker_free(S.w); /* a restart of the worker: everything closes */
			if (S.opens != S.closes || S.dns_open || S.sniff_open)
				abort();
			S.last_dns = S.last_sniff = NULL;
			S.w = udp_worker_new(&loop, -1, &opts, &env);
			if (!S.w)
				goto out;
			break;
		}
		check_counts();
		if (atomic_load(&udp_stats.active) > opts.max_sessions)
			abort();
	}
	udp_worker_free(S.w);
out:
	udp_set_dns_hook(NULL);
	udp_set_sniff_hook(NULL);
	loop_fini(&loop);
	if (S.opens != S.closes || S.dns_open || S.sniff_open || atomic_load(&OB.refs) != REFS ||
	    atomic_load(&udp_stats.active) != 0)
		abort();
	return 0;
}
