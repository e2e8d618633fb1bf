/* SPDX-License-Identifier: GPL-2.0-only
 *
 * fuzz_dns_upstream - the dns plugin's shared TCP upstream connection on arbitrary server
 * bytes: several exchanges (ids from the input, so some clash) are started on one pooled
 * connection, some are abandoned while in flight, and the input's remainder is what the server
 * sends (a stream of length-prefixed answers, strays, garbage) before it closes. Exchanges cut
 * off move to a second connection, on which the server says nothing and closes.
 *
 * Beyond crashes and leaks: every exchange still held is called back exactly once, and an
 * answer handed over parses, is an answer, and carries that exchange's own question (a
 * mismatch would mean an answer reached the wrong query); afterwards no watcher is left.
 *
 * Input: byte 0: exchanges (1-8), byte 1: which to abandon after the first loop turn, then
 * 2 bytes of request id per exchange, then the server's bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xproxy/plugin.h>

#include "../../plugins/dns/msg.h"
#include "../../plugins/dns/upstream.h"

struct xp_loop {
	int unused;
};
struct xp_handle {
	int unused;
};
struct xp_counter {
	uint64_t v;
};
struct xp_dial {
	int unused;
};
struct xp_io {
	int fd;
	unsigned events;
	xp_io_cb cb;
	void *arg;
};
struct xp_timer {
	xp_timer_cb cb;
	void *arg;
	int due;
};

#define MAXW 64
static struct xp_loop loop;
static struct xp_handle self;
static struct xp_counter counters[8];
static struct xp_dial dial_handle;
static struct xp_io *ios[MAXW];
static struct xp_timer *timers[MAXW];
static const uint8_t *server_bytes;
static size_t server_len;
static int dials;
static int peers[16]; /* the server ends, half-closed, open until the input is done */
static int n_peers;

static void h_log(xp_handle_t *who, int level, const char *fmt, ...)
{
}

static xp_loop_t *h_loop(void)
{
	return &loop;
}

static uint64_t h_now(xp_loop_t *l)
{
	return 0;
}

static void *slot(void **arr, void *p)
{
	for (int i = 0; i < MAXW; i++)
		if (!arr[i])
			return arr[i] = p;
	abort();
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
	t->due = 1 + (after > 0); /* 1: now, 2: later (idle), fired only at the end */
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

static void h_counter_add(xp_counter_t *c, uint64_t d)
{
	c->v += d;
}

/* The first dial gets the server's bytes, later ones a server that closes at once. */
static xp_dial_t *h_dial(xp_handle_t *who, xp_loop_t *l, const struct xp_dial_req *req)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		abort();
	if (!dials++ && server_len) {
		/* the socket buffer takes the whole input (max_len is small) */
		if (write(sv[1], server_bytes, server_len) != (ssize_t)server_len)
			abort();
	}
	/* the server is done sending but still takes our requests */
	shutdown(sv[1], SHUT_WR);
	if (n_peers < 16)
		peers[n_peers++] = sv[1];
	else
		close(sv[1]);
	req->done(req->arg, &dial_handle, 0, sv[0], NULL, NULL);
	return &dial_handle;
}

static void h_dial_close(xp_dial_t *d)
{
}

static const struct xp_host host = {
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
	.counter_add = h_counter_add,
	.dial = h_dial,
	.dial_close = h_dial_close,
};

/* One loop turn: every watched fd (the sockets are always ready: data or EOF), every timer
 * due now (or also the later ones, with `all`). */
static void turn(int all)
{
	for (int i = 0; i < MAXW; i++)
		if (ios[i] && ios[i]->events)
			ios[i]->cb(ios[i], ios[i]->fd, XP_IO_READ | XP_IO_WRITE, ios[i]->arg);
	for (int i = 0; i < MAXW; i++) {
		if (timers[i] && (timers[i]->due == 1 || (all && timers[i]->due))) {
			timers[i]->due = 0;
			timers[i]->cb(timers[i], timers[i]->arg);
		}
	}
}

#define NX 8

struct ex {
	struct xfer *x;
	int calls, freed;
	char name[32];
};

static void done_cb(void *arg, struct xfer *x, int err, const uint8_t *ans, size_t len)
{
	struct ex *e = arg;
	struct dns_msg m;
	char text[256];

	if (e->freed || ++e->calls > 1)
		abort();
	if (getenv("FUZZ_DEBUG"))
		fprintf(stderr, "%s: err %d len %zu\n", e->name, err, len);
	if (err)
		return;
	if (dns_parse(ans, len, &m, NULL, NULL) || !(m.flags & DNS_F_QR))
		abort();
	if (dns_name_text(m.q.name, m.q.name_len, text, sizeof(text)) < 0 ||
	    strcmp(text, e->name))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ups_ctx ctx = {
		.host = &host,
		.self = &self,
		.malformed = &counters[0],
		.mismatched = &counters[1],
		.conns = &counters[2],
		.retries = &counters[3],
		.idle_ms = 10000,
	};
	struct ex ex[NX];
	struct upstream u;
	char err[128];
	unsigned n, cancel, i;
	int t;

	if (size < 2)
		return 0;
	n = data[0] % NX + 1;
	cancel = data[1];
	if (size < 2 + 2 * n)
		return 0;
	if (upstream_parse("tcp://192.0.2.53 via px", &u, err, sizeof(err)) ||
	    ups_pools_new(&ctx))
		abort();
	server_bytes = data + 2 + 2 * n;
	server_len = size - 2 - 2 * n;
	dials = 0;
	memset(ex, 0, sizeof(ex));
	for (i = 0; i < n; i++) {
		uint8_t q[64];
		struct dns_msg m;
		size_t len;

		snprintf(ex[i].name, sizeof(ex[i].name), "q%u.example", i);
		/* header: id, RD, one question; then \2qN\7example\0, A, IN */
		memset(q, 0, sizeof(q));
		q[0] = data[2 + 2 * i];
		q[1] = data[3 + 2 * i];
		q[2] = 0x01;
		q[5] = 1;
		len = 12;
		q[len++] = 2;
		q[len++] = 'q';
		q[len++] = (uint8_t)('0' + i);
		q[len++] = 7;
		memcpy(q + len, "example", 7);
		len += 7;
		q[len++] = 0;
		q[len++] = 0;
		q[len++] = 1;
		q[len++] = 0;
		q[len++] = 1;
		if (dns_parse(q, len, &m, NULL, NULL))
			abort();
		ex[i].x = xfer_start(&ctx, &loop, &u, 0, q, len, &m.q, done_cb, &ex[i]);
		if (!ex[i].x)
			abort();
	}
	turn(0);
	for (i = 0; i < n; i++) {
		if (cancel & (1u << i) && !ex[i].calls) {
			ex[i].freed = 1;
			xfer_free(ex[i].x);
			ex[i].x = NULL;
		}
	}
	for (t = 0; t < 20; t++)
		turn(t >= 10);
	for (i = 0; i < n; i++) {
		if (!ex[i].freed && ex[i].calls != 1)
			abort(); /* every connection saw EOF: nobody may be left waiting */
		xfer_free(ex[i].x);
	}
	ups_pools_free(&ctx);
	while (n_peers)
		close(peers[--n_peers]);
	for (i = 0; i < MAXW; i++)
		if (ios[i] || timers[i])
			abort();
	return 0;
}
