// SPDX-License-Identifier: GPL-2.0-only
/* udp: the session table (keys, dependent and independent mapping, the bound), idle expiry,
 * the DNS and INSPECT hooks (buffer bounds, decisions, the sniff timeout, replay order),
 * deferred failures, deliveries (which source the client sees) and bad input; and the config
 * keys udp.c reads. Datagrams are fed with udp_worker_input(); a fake outbound records what it
 * gets. Replies go out of real loopback sockets, so the test also checks the source address a
 * client sees; those checks need CAP_NET_ADMIN (IP_TRANSPARENT) and are skipped without it. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"
#include "loop.h"
#include "outbound.h"
#include "udp.h"

/* ------------------------------------------------------------------------------ fakes */

#define MAXREC 64

struct rec {
	union xp_sockaddr dst;
	char data[64];
	size_t len;
};

static struct fake {
	int opens, closes, sends;
	int open_err;		/* udp_open returns this */
	int send_err;		/* udp_send returns this */
	bool fail_in_send;	/* udp_fail from inside udp_send */
	bool deliver_in_send;	/* udp_deliver(peer) from inside udp_send */
	int deliver_n;		/* ... this many, "a0".."aN" (0: one "answer") */
	union xp_sockaddr peer; /* ... from this address */
	xp_udp_t *last;
	struct xp_target target;
	uint32_t info_flags;
	struct rec rec[MAXREC];
} F;

static int fake_udp_open(void *inst, xp_udp_t *s, const struct xp_target *t, void **uctx)
{
	if (F.open_err)
		return F.open_err;
	F.opens++;
	F.last = s;
	F.target = *t;
	F.info_flags = udp_info(s)->flags;
	*uctx = &F;
	return 0;
}

static int fake_udp_send(void *inst, void *uctx, const union xp_sockaddr *dst, const char *dom,
			 const void *buf, size_t len)
{
	assert_ptr_equal(uctx, &F);
	if (F.send_err)
		return F.send_err;
	if (F.sends < MAXREC) {
		F.rec[F.sends].dst = *dst;
		F.rec[F.sends].len = len;
		memcpy(F.rec[F.sends].data, buf, len < 64 ? len : 64);
	}
	F.sends++;
	if (F.fail_in_send)
		udp_fail(F.last, -ECONNRESET, "tunnel closed");
	if (F.deliver_in_send && !F.deliver_n)
		udp_deliver(F.last, &F.peer, "answer", 6);
	for (int i = 0; F.deliver_in_send && i < F.deliver_n; i++) {
		char a[16];

		udp_deliver(F.last, &F.peer, a, (size_t)snprintf(a, sizeof(a), "a%d", i));
	}
	return 0;
}

static void fake_udp_close(void *inst, void *uctx)
{
	assert_ptr_equal(uctx, &F);
	F.closes++;
}

static const struct xp_outbound_ops fake_ops = {
	.size = sizeof(struct xp_outbound_ops),
	.caps = XP_OUTBOUND_UDP,
	.udp_open = fake_udp_open,
	.udp_send = fake_udp_send,
	.udp_close = fake_udp_close,
};

#define REFS 1000 /* never reaches 0: every test checks the sessions gave theirs back */
static struct outbound OB = { .name = "fake", .id = 7, .ops = &fake_ops };

/* The router: returns what the test asks for. */
static struct {
	int err;
	uint8_t route;
	uint8_t rules_route; /* for UDP_ROUTE_RULES */
	const char *domain;  /* the name the router knows for the destination */
	int calls, rules_calls;
} R;

static int fake_route(void *ctx, const union xp_sockaddr *client, const union xp_sockaddr *dst,
		      unsigned flags, struct conn_route *out)
{
	memset(out, 0, sizeof(*out));
	if (flags & UDP_ROUTE_RULES) {
		R.rules_calls++;
		out->route = R.rules_route;
	} else {
		R.calls++;
		out->route = R.route;
	}
	if (R.err)
		return R.err;
	if (R.domain)
		snprintf(out->domain, sizeof(out->domain), "%s", R.domain);
	if (out->route == XP_ROUTE_PROXY) {
		atomic_fetch_add(&OB.refs, 1);
		out->ob = &OB;
	}
	return 0;
}

static int n_learned;
static union xp_sockaddr learned;

static int fake_peer_learn(void *ctx, const union xp_sockaddr *c, const union xp_sockaddr *d,
			   const union xp_sockaddr *peer)
{
	n_learned++;
	learned = *peer;
	return 0;
}

static struct outbound *fake_direct(void *ctx)
{
	atomic_fetch_add(&OB.refs, 1);
	return &OB;
}

static int plain_socket(void *ctx, int domain, int type, int protocol)
{
	int fd = socket(domain, type, protocol);

	return fd < 0 ? -errno : fd;
}

static const struct udp_env ENV = {
	.route = fake_route,
	.netns_socket = plain_socket,
	.peer_learn = fake_peer_learn,
	.direct_outbound = fake_direct,
};

/* ------------------------------------------------------------------------------ helpers */

static struct xp_loop L;
static struct udp_worker *W;
static bool can_transparent;

static union xp_sockaddr v4(const char *a, uint16_t port)
{
	union xp_sockaddr s = { 0 };

	s.in.sin_family = AF_INET;
	s.in.sin_port = htons(port);
	inet_pton(AF_INET, a, &s.in.sin_addr);
	return s;
}

static union xp_sockaddr v6(const char *a, uint16_t port)
{
	union xp_sockaddr s = { 0 };

	s.in6.sin6_family = AF_INET6;
	s.in6.sin6_port = htons(port);
	inet_pton(AF_INET6, a, &s.in6.sin6_addr);
	return s;
}

static void feed(const union xp_sockaddr *c, const union xp_sockaddr *d, const char *text)
{
	udp_worker_input(W, c, d, text, strlen(text));
}

/* Run the loop until cond() or ~2 s. */
static void run_until(bool (*cond)(void))
{
	for (int i = 0; i < 400 && !cond(); i++) {
		ev_run(L.ev, EVRUN_NOWAIT);
		usleep(5000);
	}
}

static bool no_sessions(void)
{
	return udp_worker_sessions(W) == 0;
}

static struct udp_opts OPTS;

static int setup(void **state)
{
	memset(&F, 0, sizeof(F));
	memset(&R, 0, sizeof(R));
	R.route = XP_ROUTE_PROXY;
	R.rules_route = XP_ROUTE_PROXY;
	n_learned = 0;
	OB.udp_independent = false;
	atomic_store(&OB.refs, REFS);
	memset(&udp_stats, 0, sizeof(udp_stats));
	OPTS = (struct udp_opts){ .idle_timeout_ms = 60000, .sniff_timeout_ms = 100,
				  .max_sessions = 100, .max_reply_sockets = 4 };
	assert_int_equal(loop_init(&L, 1, false, "test"), 0);
	W = udp_worker_new(&L, -1, &OPTS, &ENV);
	assert_non_null(W);
	return 0;
}

static int teardown(void **state)
{
	udp_worker_free(W);
	W = NULL;
	/* Every session gave its outbound reference back, and udp_close matched udp_open. */
	assert_int_equal(atomic_load(&OB.refs), REFS);
	assert_int_equal(F.opens, F.closes);
	assert_int_equal(atomic_load(&udp_stats.active), 0);
	udp_set_dns_hook(NULL);
	udp_set_sniff_hook(NULL);
	loop_fini(&L);
	return 0;
}

/* A loopback socket the "client" reads replies on. */
static int client_socket(int family, union xp_sockaddr *addr)
{
	socklen_t len = sizeof(*addr);
	struct timeval tv = { .tv_sec = 1 };
	int fd = socket(family, SOCK_DGRAM, 0);

	assert_true(fd >= 0);
	memset(addr, 0, sizeof(*addr));
	addr->sa.sa_family = family;
	if (family == AF_INET)
		inet_pton(AF_INET, "127.0.0.1", &addr->in.sin_addr);
	else
		addr->in6.sin6_addr = in6addr_loopback;
	assert_int_equal(bind(fd, &addr->sa, family == AF_INET ? sizeof(addr->in)
								: sizeof(addr->in6)), 0);
	assert_int_equal(getsockname(fd, &addr->sa, &len), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void expect_reply(int fd, const union xp_sockaddr *from, const char *text)
{
	union xp_sockaddr got;
	socklen_t len = sizeof(got);
	char buf[128];
	ssize_t n = recvfrom(fd, buf, sizeof(buf) - 1, 0, &got.sa, &len);

	assert_true(n >= 0);
	buf[n] = 0;
	assert_string_equal(buf, text);
	assert_int_equal(got.sa.sa_family, from->sa.sa_family);
	if (from->sa.sa_family == AF_INET) {
		assert_int_equal(got.in.sin_port, from->in.sin_port);
		assert_int_equal(got.in.sin_addr.s_addr, from->in.sin_addr.s_addr);
	} else {
		assert_int_equal(got.in6.sin6_port, from->in6.sin6_port);
		assert_memory_equal(&got.in6.sin6_addr, &from->in6.sin6_addr, 16);
	}
}

/* ------------------------------------------------------------------------------ tests */

static void t_dependent_sessions(void **state)
{
	union xp_sockaddr c1 = v4("10.0.0.2", 4000), c2 = v4("10.0.0.2", 4001);
	union xp_sockaddr d1 = v4("1.1.1.1", 53), d2 = v4("8.8.8.8", 53);

	feed(&c1, &d1, "a");
	feed(&c1, &d1, "b");
	assert_int_equal(udp_worker_sessions(W), 1);
	assert_int_equal(F.opens, 1);
	assert_int_equal(R.calls, 1); /* routed once per session, not per datagram */
	assert_int_equal(F.target.l4proto, IPPROTO_UDP);
	assert_int_equal(F.target.addr.in.sin_addr.s_addr, d1.in.sin_addr.s_addr);
	assert_int_equal(F.info_flags & XP_CONN_F_UDP_INDEPENDENT, 0);
	feed(&c2, &d1, "c"); /* another client port */
	feed(&c1, &d2, "d"); /* same client, other destination: its own session */
	assert_int_equal(udp_worker_sessions(W), 3);
	assert_int_equal(F.sends, 4);
	assert_string_equal(F.rec[1].data, "b");
	assert_int_equal(F.rec[3].dst.in.sin_addr.s_addr, d2.in.sin_addr.s_addr);
	assert_int_equal(atomic_load(&udp_stats.dgrams_up), 4);
	assert_int_equal(atomic_load(&udp_stats.bytes_up), 4);
	assert_int_equal(atomic_load(&udp_stats.sessions), 3);
	assert_int_equal(atomic_load(&OB.refs), REFS + 3);
}

static void t_route_domain(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), d = v4("1.1.1.1", 443);

	R.domain = "dns.example";
	feed(&c, &d, "a");
	/* the name the router knew reaches the outbound's target and the session's info */
	assert_non_null(F.target.domain);
	assert_string_equal(F.target.domain, "dns.example");
	assert_string_equal(udp_info(F.last)->domain, "dns.example");
	udp_sess_set_domain((struct udp_sess *)F.last, NULL);
	assert_null(udp_info(F.last)->domain);
}

static void t_ipv4_mapped_is_ipv4(void **state)
{
	/* The dual-stack socket reports IPv4 as ::ffff:a.b.c.d: the same session as plain v4. */
	union xp_sockaddr c = v4("10.0.0.2", 4000), d = v4("1.1.1.1", 53);
	union xp_sockaddr cm = v6("::ffff:10.0.0.2", 4000), dm = v6("::ffff:1.1.1.1", 53);

	feed(&cm, &dm, "a");
	feed(&c, &d, "b");
	assert_int_equal(udp_worker_sessions(W), 1);
	assert_int_equal(F.target.addr.sa.sa_family, AF_INET);
	assert_int_equal(udp_info(F.last)->client.sa.sa_family, AF_INET);
}

static void t_independent_sessions(void **state)
{
	union xp_sockaddr c = v6("fd00::2", 5000), c2 = v6("fd00::2", 5001);
	union xp_sockaddr d1 = v6("2001:db8::1", 3478), d2 = v6("2001:db8::2", 9999);

	OB.udp_independent = true;
	feed(&c, &d1, "stun");
	feed(&c, &d2, "peer"); /* any destination from the same client port: same session */
	assert_int_equal(udp_worker_sessions(W), 1);
	assert_int_equal(F.opens, 1);
	assert_int_equal(R.calls, 1);
	assert_int_equal(F.info_flags & XP_CONN_F_UDP_INDEPENDENT, XP_CONN_F_UDP_INDEPENDENT);
	assert_memory_equal(&F.rec[1].dst.in6.sin6_addr, &d2.in6.sin6_addr, 16);
	assert_int_equal(F.rec[1].dst.in6.sin6_port, htons(9999));
	feed(&c2, &d1, "x"); /* another client port is another mapping */
	assert_int_equal(udp_worker_sessions(W), 2);
}

static void t_session_bound(void **state)
{
	union xp_sockaddr d = v4("1.1.1.1", 53);

	OPTS.max_sessions = 3;
	udp_worker_free(W);
	W = udp_worker_new(&L, -1, &OPTS, &ENV);
	for (int i = 0; i < 5; i++) {
		union xp_sockaddr c = v4("10.0.0.2", 4000 + i);

		feed(&c, &d, "x");
	}
	assert_int_equal(udp_worker_sessions(W), 3);
	assert_int_equal(F.opens, 3);
	assert_int_equal(R.calls, 3); /* refused before routing: no map lookup wasted */
	assert_int_equal(atomic_load(&udp_stats.refused_limit), 2);
	assert_int_equal(atomic_load(&udp_stats.active), 3);
	assert_int_equal(F.sends, 3);
}

static void t_idle_expiry(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), d = v4("1.1.1.1", 53);

	OPTS.idle_timeout_ms = 50;
	udp_worker_free(W);
	W = udp_worker_new(&L, -1, &OPTS, &ENV);
	feed(&c, &d, "x");
	assert_int_equal(udp_worker_sessions(W), 1);
	run_until(no_sessions);
	assert_int_equal(udp_worker_sessions(W), 0);
	assert_int_equal(F.closes, 1);
	assert_int_equal(atomic_load(&udp_stats.idle_expired), 1);
	/* The next datagram starts a new session. */
	feed(&c, &d, "y");
	assert_int_equal(F.opens, 2);
	assert_int_equal(R.calls, 2);
}

static void t_refused_routes(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), d = v4("1.1.1.1", 53);

	R.err = -ENOENT; /* no flow entry */
	feed(&c, &d, "x");
	R.err = 0;
	R.route = XP_ROUTE_DIRECT; /* not a verdict for userspace */
	feed(&c, &d, "x");
	R.route = XP_ROUTE_DNS; /* no DNS hook installed */
	feed(&c, &d, "x");
	assert_int_equal(udp_worker_sessions(W), 0);
	assert_int_equal(atomic_load(&udp_stats.no_route), 3);
	assert_int_equal(F.opens, 0);

	R.route = XP_ROUTE_PROXY;
	F.open_err = -EPROTONOSUPPORT;
	feed(&c, &d, "x");
	assert_int_equal(udp_worker_sessions(W), 0);
	assert_int_equal(atomic_load(&udp_stats.open_failed), 1);
	assert_int_equal(atomic_load(&OB.refs), REFS);
}

static void t_bad_input(void **state)
{
	union xp_sockaddr c = { 0 }, d = v4("1.1.1.1", 53);
	char big[70000];

	c.sa.sa_family = AF_UNIX; /* garbage family: counted, nothing created */
	feed(&c, &d, "x");
	assert_int_equal(atomic_load(&udp_stats.recv_errors), 1);
	assert_int_equal(udp_worker_sessions(W), 0);

	/* Empty and oversized datagrams are passed on as they are; the outbound decides. */
	c = v4("10.0.0.2", 4000);
	udp_worker_input(W, &c, &d, "", 0);
	memset(big, 'x', sizeof(big));
	udp_worker_input(W, &c, &d, big, sizeof(big));
	assert_int_equal(F.sends, 2);
	assert_int_equal(F.rec[0].len, 0);
	assert_int_equal(F.rec[1].len, sizeof(big));

	/* A refused datagram is counted; -ENOTCONN ends the session (deferred). */
	F.send_err = -EAGAIN;
	feed(&c, &d, "x");
	assert_int_equal(atomic_load(&udp_stats.send_errors), 1);
	assert_int_equal(udp_worker_sessions(W), 1);
	F.send_err = -ENOTCONN;
	feed(&c, &d, "x");
	assert_int_equal(udp_worker_sessions(W), 1); /* not freed under the caller */
	run_until(no_sessions);
	assert_int_equal(udp_worker_sessions(W), 0);
}

static void t_fail_is_deferred(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), d = v4("1.1.1.1", 53);

	F.fail_in_send = true;
	feed(&c, &d, "x");
	/* udp_fail came from inside udp_send: the session still exists after the call ... */
	assert_int_equal(udp_worker_sessions(W), 1);
	assert_int_equal(F.closes, 0);
	/* ... and further datagrams are not sent into the failed session. */
	feed(&c, &d, "y");
	assert_int_equal(F.sends, 1);
	run_until(no_sessions);
	assert_int_equal(F.closes, 1);
	assert_int_equal(atomic_load(&udp_stats.failed), 1);
}

/* The worker remembers its last lookup (a flow's datagrams come in bursts): a closed session is
 * never found through it, and flows that alternate each reach their own session. */
static void t_lookup_cache(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), d1 = v4("1.1.1.1", 53), d2 = v4("1.1.1.2", 53);

	feed(&c, &d2, "a");
	feed(&c, &d1, "b"); /* opened last: the one udp_fail below ends (F.last) */
	feed(&c, &d1, "c"); /* found through the cache */
	feed(&c, &d2, "d");
	assert_int_equal(F.opens, 2);
	assert_int_equal(F.sends, 4);
	assert_int_equal(F.rec[3].dst.in.sin_addr.s_addr, d2.in.sin_addr.s_addr);
	feed(&c, &d1, "d");
	/* d1's session fails and closes while it is the cached one ... */
	F.fail_in_send = true;
	feed(&c, &d1, "e");
	F.fail_in_send = false;
	for (int i = 0; i < 50 && udp_worker_sessions(W) > 1; i++) {
		ev_run(L.ev, EVRUN_NOWAIT);
		usleep(2000);
	}
	assert_int_equal(udp_worker_sessions(W), 1);
	assert_int_equal(F.closes, 1);
	/* ... so the next datagram opens a new one instead of using the freed one */
	feed(&c, &d1, "f");
	assert_int_equal(F.opens, 3);
	assert_int_equal(udp_worker_sessions(W), 2);
	assert_int_equal(F.sends, 7);
	assert_memory_equal(F.rec[6].data, "f", 1);
}

/* The receive queue and drop count of the IPv4 UDP socket bound to `a` (/proc/net/udp).
 * false when no socket is bound there. */
static bool udp4_socket_counters(const union xp_sockaddr *a, unsigned long *rxq,
				 unsigned long *drops)
{
	FILE *f = fopen("/proc/net/udp", "r");
	char line[512];
	bool found = false;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned addr, port, rem, remport, st, txq, ref;
		unsigned long rq, dr, inode;

		if (sscanf(line, " %*u: %X:%X %X:%X %X %X:%lX %*X:%*X %*X %*u %*d %lu %u %*s %lu",
			   &addr, &port, &rem, &remport, &st, &txq, &rq, &inode, &ref, &dr) != 10)
			continue;
		if (addr != a->in.sin_addr.s_addr || port != ntohs(a->in.sin_port))
			continue;
		*rxq = rq;
		*drops = dr;
		found = true;
	}
	fclose(f);
	return found;
}

static void t_reply_source(void **state)
{
	union xp_sockaddr c, d = v4("127.0.0.1", 0), other = v4("127.0.0.1", 0);
	int cfd = client_socket(AF_INET, &c);

	if (!can_transparent) {
		close(cfd);
		skip();
	}
	d.in.sin_port = htons(40000 + getpid() % 10000);
	other.in.sin_port = htons(ntohs(d.in.sin_port) + 1);
	F.peer = other;
	F.deliver_in_send = true;
	feed(&c, &d, "q");
	/* A delivery goes out at the end of the loop iteration, with the others of that
	 * iteration (one sendmmsg): nothing before. */
	assert_true(recv(cfd, (char[8]){ 0 }, 8, MSG_DONTWAIT) < 0 && errno == EAGAIN);
	assert_int_equal(atomic_load(&udp_stats.dgrams_down), 0);
	ev_run(L.ev, EVRUN_NOWAIT);
	/* Endpoint-dependent: whoever answered, the client sees the original destination. */
	expect_reply(cfd, &d, "answer");
	assert_int_equal(n_learned, 0);
	assert_int_equal(atomic_load(&udp_stats.dgrams_down), 1);

	/* The reply socket now bound to d only sends: stray datagrams to d are dropped on
	 * arrival, not queued for the socket's life. */
	unsigned long rxq = 0, drops = 0;

	for (int i = 0; i < 3; i++)
		assert_int_equal(sendto(cfd, "stray", 5, 0, &d.sa, sizeof(d.in)), 5);
	for (int tries = 0; tries < 100 && drops < 3; tries++) {
		assert_true(udp4_socket_counters(&d, &rxq, &drops));
		if (drops < 3)
			usleep(10000);
	}
	assert_int_equal(rxq, 0);
	assert_true(drops >= 3);
	close(cfd);
}

static void t_reply_source_independent(void **state)
{
	union xp_sockaddr c, d = v6("::1", 0), other = v6("::1", 0);
	int cfd = client_socket(AF_INET6, &c);

	if (!can_transparent) {
		close(cfd);
		skip();
	}
	OB.udp_independent = true;
	d.in6.sin6_port = htons(40000 + getpid() % 10000);
	other.in6.sin6_port = htons(ntohs(d.in6.sin6_port) + 2);
	F.peer = other;
	F.deliver_in_send = true;
	feed(&c, &d, "q");
	ev_run(L.ev, EVRUN_NOWAIT);
	/* Full cone: the client sees the peer that answered, and the datapath learns it once. */
	expect_reply(cfd, &other, "answer");
	feed(&c, &d, "q");
	ev_run(L.ev, EVRUN_NOWAIT);
	expect_reply(cfd, &other, "answer");
	assert_int_equal(n_learned, 1);
	assert_int_equal(learned.in6.sin6_port, other.in6.sin6_port);
	close(cfd);
}

/* Deliveries queue up to 32 (REPLY_BATCH): a burst past that is sent in full batches at once, the
 * rest at the end of the loop iteration, all in order; a reply that does not queue
 * (udp_sess_reply) goes after what is queued, never before it. */
static void t_reply_batch(void **state)
{
	union xp_sockaddr c, d = v4("127.0.0.1", 0);
	int cfd = client_socket(AF_INET, &c);
	char want[16];

	if (!can_transparent) {
		close(cfd);
		skip();
	}
	d.in.sin_port = htons(43000 + getpid() % 10000);
	F.peer = d;
	F.deliver_in_send = true;
	F.deliver_n = 40;
	feed(&c, &d, "q");
	/* the queue is bounded: the first 32 are out before the loop runs, the 8 others wait */
	assert_int_equal(atomic_load(&udp_stats.dgrams_down), 32);
	assert_int_equal(udp_sess_reply((struct udp_sess *)F.last, &d, "sync", 4), 0);
	assert_int_equal(atomic_load(&udp_stats.dgrams_down), 41);
	ev_run(L.ev, EVRUN_NOWAIT);
	for (int i = 0; i < 40; i++) {
		snprintf(want, sizeof(want), "a%d", i);
		expect_reply(cfd, &d, want);
	}
	expect_reply(cfd, &d, "sync");
	assert_int_equal(atomic_load(&udp_stats.dgrams_down), 41);
	assert_int_equal(atomic_load(&udp_stats.reply_errors), 0);
	close(cfd);
}

/* A reply socket the cache closes (max_reply_sockets 4) may hold queued replies: they go out
 * before it closes, none is lost. */
static void t_reply_batch_eviction(void **state)
{
	union xp_sockaddr c, d = v4("127.0.0.1", 0), peer[5];
	int cfd = client_socket(AF_INET, &c);
	char text[16];

	if (!can_transparent) {
		close(cfd);
		skip();
	}
	OB.udp_independent = true;
	d.in.sin_port = htons(44000 + getpid() % 10000);
	feed(&c, &d, "q");
	for (int i = 0; i < 5; i++) {
		peer[i] = d;
		peer[i].in.sin_port = htons(ntohs(d.in.sin_port) + 1 + i);
		udp_deliver(F.last, &peer[i], text, (size_t)snprintf(text, sizeof(text), "p%d", i));
	}
	/* the fifth source closed the least recently used socket, sending the four queued */
	assert_int_equal(atomic_load(&udp_stats.dgrams_down), 4);
	ev_run(L.ev, EVRUN_NOWAIT);
	assert_int_equal(atomic_load(&udp_stats.dgrams_down), 5);
	for (int i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), "p%d", i);
		expect_reply(cfd, &peer[i], text);
	}
	assert_int_equal(atomic_load(&udp_stats.reply_errors), 0);
	close(cfd);
}

static void t_reply_cache_bounded(void **state)
{
	union xp_sockaddr c;
	int cfd = client_socket(AF_INET, &c);

	if (!can_transparent) {
		close(cfd);
		skip();
	}
	/* More distinct sources than max_reply_sockets (4): every reply still goes out. */
	for (int i = 0; i < 10; i++) {
		union xp_sockaddr d = v4("127.0.0.1", 41000 + getpid() % 10000 + i);

		feed(&c, &d, "q");
		assert_int_equal(udp_sess_reply((struct udp_sess *)F.last, &d, "r", 1), 0);
		expect_reply(cfd, &d, "r");
	}
	/* The wrong family for this client is refused and counted. */
	union xp_sockaddr d6 = v6("::1", 53);

	assert_int_equal(udp_sess_reply((struct udp_sess *)F.last, &d6, "r", 1), -EAFNOSUPPORT);
	assert_int_equal(atomic_load(&udp_stats.reply_errors), 1);
	close(cfd);
}

/* DNS hook */
static int dns_calls, dns_closed;
static struct udp_sess *dns_sess;

static void dns_datagram(void *ctx, struct udp_sess *s, const union xp_sockaddr *client,
			 const union xp_sockaddr *dst, const void *buf, size_t len)
{
	assert_ptr_equal(ctx, &dns_calls);
	dns_calls++;
	dns_sess = s;
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "query", 5);
	assert_int_equal(ntohs(dst->in.sin_port), ntohs(udp_sess_info(s)->dst.in.sin_port));
	assert_int_equal(udp_sess_info(s)->route, XP_ROUTE_DNS);
	if (can_transparent)
		assert_int_equal(udp_sess_reply(s, dst, "reply", 5), 0);
}

static void dns_close(void *ctx, struct udp_sess *s)
{
	assert_ptr_equal(s, dns_sess);
	dns_closed++;
}

static void t_dns_hook(void **state)
{
	struct udp_dns_hook h = { .datagram = dns_datagram, .closed = dns_close, .ctx = &dns_calls };
	union xp_sockaddr c, d = v4("127.0.0.1", 42000 + getpid() % 10000);
	int cfd = client_socket(AF_INET, &c);

	dns_calls = dns_closed = 0;
	udp_set_dns_hook(&h);
	R.route = XP_ROUTE_DNS;
	OPTS.idle_timeout_ms = 5000;
	OPTS.dns_idle_timeout_ms = 50; /* DNS sessions end sooner */
	udp_worker_free(W);
	W = udp_worker_new(&L, -1, &OPTS, &ENV);
	feed(&c, &d, "query");
	feed(&c, &d, "query");
	assert_int_equal(dns_calls, 2);
	assert_int_equal(udp_worker_sessions(W), 1);
	assert_int_equal(F.opens, 0);
	if (can_transparent) {
		expect_reply(cfd, &d, "reply");
		expect_reply(cfd, &d, "reply");
	}
	udp_sess_set_user(dns_sess, &dns_calls);
	assert_ptr_equal(udp_sess_user(dns_sess), &dns_calls);
	run_until(no_sessions);
	assert_int_equal(dns_closed, 1);
	close(cfd);
}

/* INSPECT hook */
static unsigned offers, last_count;
static struct udp_sess *sniff_sess;
static int decide_at;	     /* decide when this many datagrams were offered (0: never) */
static uint8_t decide_route;
static int sniff_closed;

static void sniff_offer(void *ctx, struct udp_sess *s, const struct xp_conn_info *info,
			const struct xp_bytes *parts, unsigned count)
{
	offers++;
	sniff_sess = s;
	assert_int_equal(count, last_count + 1);
	last_count = count;
	assert_int_equal(info->route, XP_ROUTE_INSPECT);
	for (unsigned i = 0; i < count; i++)
		assert_int_equal(parts[i].data[0], 'a' + i);
	if (decide_at && (int)count == decide_at) {
		udp_sess_set_domain(s, "example.com");
		udp_sess_set_sniffer(s, "quic");
		assert_int_equal(udp_sess_decide(s, decide_route, NULL, 12), 0);
		assert_int_equal(udp_sess_decide(s, decide_route, NULL, 12), -EALREADY);
	}
}

static void sniff_close(void *ctx, struct udp_sess *s)
{
	sniff_closed++;
}

static void sniff_setup(void)
{
	static const struct udp_sniff_hook h = { .offer = sniff_offer, .closed = sniff_close };

	offers = last_count = 0;
	sniff_closed = 0;
	decide_at = 0;
	udp_set_sniff_hook(&h);
	R.route = XP_ROUTE_INSPECT;
}

static void t_inspect_decide_replays(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), d = v4("1.1.1.1", 443);

	sniff_setup();
	decide_at = 3;
	decide_route = XP_ROUTE_DIRECT; /* through the direct outbound */
	feed(&c, &d, "a");
	feed(&c, &d, "b");
	assert_int_equal(F.opens, 0);
	feed(&c, &d, "c");
	/* Decided at the third: the three buffered datagrams were replayed in order. */
	assert_int_equal(F.opens, 1);
	assert_int_equal(F.sends, 3);
	assert_string_equal(F.rec[0].data, "a");
	assert_string_equal(F.rec[2].data, "c");
	assert_string_equal(F.target.domain, "example.com");
	assert_string_equal(udp_info(F.last)->domain, "example.com");
	assert_string_equal(udp_info(F.last)->sniffer, "quic");
	assert_int_equal(udp_info(F.last)->rule_id, 12);
	/* Later datagrams go straight to the outbound, not to the hook. */
	feed(&c, &d, "d");
	assert_int_equal(offers, 3);
	assert_int_equal(F.sends, 4);
	udp_worker_free(W);
	W = udp_worker_new(&L, -1, &OPTS, &ENV);
	assert_int_equal(sniff_closed, 1);
}

static void t_inspect_bounds(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), c2 = v4("10.0.0.2", 4001);
	union xp_sockaddr d = v4("1.1.1.1", 443);
	char chunk[UDP_SNIFF_MAX_BYTES / 2 + 1];
	int sends;

	sniff_setup();
	for (int i = 0; i < UDP_SNIFF_MAX_DGRAMS + 3; i++) {
		char t[2] = { (char)('a' + i), 0 };

		feed(&c, &d, t);
	}
	/* The hook saw the buffer's worth; the next datagram found it full: decided by the
	 * rules at once, the kept ones replayed, it and the rest sent after them, in order. */
	assert_int_equal(offers, UDP_SNIFF_MAX_DGRAMS);
	assert_int_equal(R.rules_calls, 1);
	assert_int_equal(F.opens, 1);
	assert_int_equal(F.sends, UDP_SNIFF_MAX_DGRAMS + 3);
	for (int i = 0; i < UDP_SNIFF_MAX_DGRAMS + 3; i++) {
		char t[2] = { (char)('a' + i), 0 };

		assert_string_equal(F.rec[i].data, t);
	}
	assert_int_equal(atomic_load(&udp_stats.sniff_full), 1);
	assert_int_equal(atomic_load(&udp_stats.sniff_dropped), 0);
	assert_int_equal(atomic_load(&udp_stats.sniff_timeout), 0);

	/* The byte bound: two datagrams of just over half of it (another session). */
	sends = F.sends;
	last_count = 0;
	memset(chunk, 'a', sizeof(chunk));
	udp_worker_input(W, &c2, &d, chunk, sizeof(chunk));
	assert_int_equal(F.sends, sends);
	chunk[0] = 'b';
	udp_worker_input(W, &c2, &d, chunk, sizeof(chunk));
	assert_int_equal(F.sends, sends + 2);
	assert_int_equal(atomic_load(&udp_stats.sniff_full), 2);
	assert_int_equal(atomic_load(&udp_stats.sniff_dropped), 0);
}

static bool opened(void)
{
	return F.opens > 0;
}

static void t_inspect_timeout_decides_by_rules(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), d = v4("1.1.1.1", 443);

	sniff_setup();
	feed(&c, &d, "a");
	feed(&c, &d, "b");
	assert_int_equal(F.opens, 0);
	run_until(opened); /* sniff_timeout_ms = 100 */
	assert_int_equal(R.rules_calls, 1);
	assert_int_equal(atomic_load(&udp_stats.sniff_timeout), 1);
	assert_int_equal(F.sends, 2);
	assert_string_equal(F.rec[1].data, "b");
	assert_int_equal(udp_sess_decide(sniff_sess, XP_ROUTE_PROXY, "x", 0), -EALREADY);
}

static void t_inspect_block(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), d = v4("1.1.1.1", 443);

	sniff_setup();
	decide_at = 1;
	decide_route = XP_ROUTE_BLOCK;
	feed(&c, &d, "a");
	feed(&c, &d, "b");
	assert_int_equal(F.opens, 0);
	assert_int_equal(offers, 1);
	assert_int_equal(udp_worker_sessions(W), 1); /* kept, swallowing, until idle */
}

static void t_inspect_without_sniffer(void **state)
{
	union xp_sockaddr c = v4("10.0.0.2", 4000), d = v4("1.1.1.1", 443);

	/* No sniff hook: INSPECT is decided by rules at once. */
	R.route = XP_ROUTE_INSPECT;
	feed(&c, &d, "a");
	assert_int_equal(R.rules_calls, 1);
	assert_int_equal(F.opens, 1);
	assert_int_equal(F.sends, 1);
}

/* ------------------------------------------------------------------------------ config */

static struct cfg *parse(const char *text, char **errors)
{
	struct cfg *cfg = NULL;

	*errors = NULL;
	if (cfg_parse("t.ini", text, strlen(text), &cfg, errors)) {
		if (getenv("TEST_UDP_VERBOSE"))
			fprintf(stderr, "%s", *errors ? *errors : "?\n");
		return NULL;
	}
	return cfg;
}

static void t_cfg_keys(void **state)
{
	char *errors;
	struct cfg *cfg = parse("[global]\nlan = eth0\n"
				"[outbound.a]\nplugin = direct\n"
				"[outbound.b]\nplugin = direct\nudp_mapping = independent\n"
				"[outbound.c]\nplugin = direct\nudp_mapping = dependent\n",
				&errors);

	assert_non_null(cfg);
	assert_int_equal(cfg->global.udp_idle_timeout_ms, 60000);
	assert_int_equal(cfg->global.max_udp_sessions, 16384);
	assert_false(cfg_outbound_find(cfg, "a")->udp_independent);
	assert_true(cfg_outbound_find(cfg, "b")->udp_independent);
	assert_false(cfg_outbound_find(cfg, "c")->udp_independent);
	cfg_free(cfg);
	free(errors);

	cfg = parse("[global]\nlan = eth0\nudp_idle_timeout = 90s\nmax_udp_sessions = 100\n", &errors);
	assert_non_null(cfg);
	assert_int_equal(cfg->global.udp_idle_timeout_ms, 90000);
	assert_int_equal(cfg->global.max_udp_sessions, 100);
	cfg_free(cfg);
	free(errors);
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void t_cfg_bad_values(void **state)
{
	static const char *const bad[] = {
		"[global]\nlan = eth0\nudp_idle_timeout = 0s\n",
		"[global]\nlan = eth0\nudp_idle_timeout = 25h\n",
		"[global]\nlan = eth0\nudp_idle_timeout = soon\n",
		"[global]\nlan = eth0\nmax_udp_sessions = 0\n",
		"[global]\nlan = eth0\nmax_udp_sessions = 99999999999\n",
		"[global]\nlan = eth0\nmax_udp_sessions = -1\n",
		"[global]\nlan = eth0\n[outbound.a]\nplugin = direct\nudp_mapping = cone\n",
		"[global]\nlan = eth0\n[outbound.a]\nplugin = direct\nudp_mapping =\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *errors;
		struct cfg *cfg = parse(bad[i], &errors);

		assert_null(cfg);
		assert_non_null(errors);
		/* exactly one error, on the bad key's line, naming the key */
		assert_non_null(strstr(errors, i < 6 ? "t.ini:3: " : "t.ini:5: "));
		assert_non_null(strstr(errors, i < 3 ? "udp_idle_timeout" : i < 6 ? "max_udp_sessions"
									 : "udp_mapping"));
		assert_int_equal(count_lines(errors), 1);
		free(errors);
	}
}

int main(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0), one = 1;

	can_transparent = fd >= 0 && setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) == 0;
	if (fd >= 0)
		close(fd);
	if (!can_transparent)
		fprintf(stderr, "no CAP_NET_ADMIN: the reply-source checks are skipped\n");

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(t_dependent_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(t_route_domain, setup, teardown),
		cmocka_unit_test_setup_teardown(t_ipv4_mapped_is_ipv4, setup, teardown),
		cmocka_unit_test_setup_teardown(t_independent_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(t_session_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(t_idle_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(t_refused_routes, setup, teardown),
		cmocka_unit_test_setup_teardown(t_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(t_fail_is_deferred, setup, teardown),
		cmocka_unit_test_setup_teardown(t_lookup_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(t_reply_source, setup, teardown),
		cmocka_unit_test_setup_teardown(t_reply_source_independent, setup, teardown),
		cmocka_unit_test_setup_teardown(t_reply_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(t_reply_batch_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(t_reply_cache_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(t_dns_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(t_inspect_decide_replays, setup, teardown),
		cmocka_unit_test_setup_teardown(t_inspect_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(t_inspect_timeout_decides_by_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(t_inspect_block, setup, teardown),
		cmocka_unit_test_setup_teardown(t_inspect_without_sniffer, setup, teardown),
		cmocka_unit_test(t_cfg_keys),
		cmocka_unit_test(t_cfg_bad_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
