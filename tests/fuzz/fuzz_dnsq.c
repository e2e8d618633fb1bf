// SPDX-License-Identifier: GPL-2.0-only
/*
 * fuzz_dnsq - DNS over TCP in core/dnsq.c driven by arbitrary byte streams and plugin behaviour.
 *
 * The input is a program of one-byte opcodes: send the next 1..64 input bytes from the client
 * (any framing: zero or short lengths, partial prefixes, pipelined messages), turn the loop,
 * have the fake plugin answer / drop / answer with a bad size the held queries (in any order),
 * half-close or close the client. The fake plugin holds or answers each query inside query()
 * as the input says. Also, every chunk goes through dnsq_frame() as a stream parser and the
 * frames it finds must tile the bytes exactly.
 *
 * Checks beyond crashes and leaks: every query the plugin saw ends exactly once (answered,
 * dropped, timed out or cancelled: the plugin's table is empty after the connection ends), and
 * the connection always ends once the client is gone. dnsq.c is linked with loop.c and log.c;
 * the UDP core, the plugin manager and cfg are replaced by the few functions dnsq.c calls.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cfg.h"
#include "dnsq.h"
#include "log.h"
#include "loop.h"
#include "plug.h"
#include "udp.h"

/* ------------------------------------------------------------------ stand-ins */

int udp_sess_reply(struct udp_sess *s, const union xp_sockaddr *from, const void *buf, size_t len)
{
	return -ENOTCONN;
}
void udp_sess_set_user(struct udp_sess *s, void *user) {}
void *udp_sess_user(struct udp_sess *s) { return NULL; }
const struct xp_conn_info *udp_sess_info(struct udp_sess *s) { return NULL; }
struct xp_loop *udp_sess_loop(struct udp_sess *s) { return NULL; }
int plug_resolve(struct plug_registry *reg, const char *n, struct plugin **out, char *err,
		 size_t errlen)
{
	return -ENOENT;
}
bool plug_has_kind(const struct plugin *p, uint32_t kind) { return false; }
int plug_init(struct plugin *p, const struct xp_host *host, char *err, size_t errlen)
{
	return -ENOSYS;
}
int plug_config_fill(const struct plugin *p, const char *file, const struct cfg_section *sec,
		     void **config, char **errors)
{
	return -ENOSYS;
}
void plug_config_free(const struct plugin *p, void *config) {}
bool cfg_dns_core_key(const char *key) { return false; }

/* ------------------------------------------------------------------ fake plugin */

#define HELD_MAX 64

static struct {
	xp_dns_query_t *held[HELD_MAX];
	unsigned n_held;
	unsigned hold; /* next queries: held while bits say so */
	unsigned queries, ended;
} fp;

static int fake_query(void *inst, xp_dns_query_t *q, const uint8_t *msg, size_t len)
{
	if (len < DNSQ_MIN_MSG || len > DNSQ_MAX_MSG)
		abort(); /* the framer let a bad length through */
	fp.queries++;
	if ((fp.hold & 1) && fp.n_held < HELD_MAX) {
		fp.hold >>= 1;
		fp.held[fp.n_held++] = q;
		return 0;
	}
	fp.hold >>= 1;
	fp.ended++;
	dnsq_answer(q, msg, len);
	return 0;
}

static void fake_cancel(void *inst, xp_dns_query_t *q)
{
	for (unsigned i = 0; i < fp.n_held; i++)
		if (fp.held[i] == q) {
			fp.held[i] = NULL;
			fp.ended++;
			return;
		}
	abort(); /* cancel for a query the plugin does not hold */
}

static struct plugin plugin;
static struct xp_loop loop;

static void init_once(void)
{
	static int done;
	struct dnsq_opts o = { .query_timeout_ms = 1, .tcp_stall_ms = 1, .tcp_idle_ms = 1 };

	if (done)
		return;
	done = 1;
	log_set_level(XP_LOG_ERROR);
	if (loop_init(&loop, 1, false, "fuzz"))
		abort();
	plugin.dns.size = sizeof(plugin.dns);
	plugin.dns.query = fake_query;
	plugin.dns.cancel = fake_cancel;
	dnsq_set_opts(&o);
	if (dnsq_install(&plugin, NULL, &fp))
		abort();
}

static void turn(void)
{
	ev_run(loop.ev, EVRUN_NOWAIT);
}

/* The frames dnsq_frame() finds in a stream tile it exactly. */
static void check_framer(const uint8_t *d, size_t n)
{
	size_t off = 0;

	while (off < n) {
		int r = dnsq_frame(d + off, n - off);

		if (r < 0) {
			if (n - off < 2 || ((d[off] << 8 | d[off + 1]) >= DNSQ_MIN_MSG))
				abort();
			return;
		}
		if (r == 0) {
			if (n - off >= 2 && n - off >= 2 + (size_t)(d[off] << 8 | d[off + 1]))
				abort();
			return;
		}
		if ((size_t)r != (size_t)(d[off] << 8 | d[off + 1]) || off + 2 + (size_t)r > n)
			abort();
		off += 2 + (size_t)r;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xp_conn_info info = { .size = sizeof(info), .l4proto = IPPROTO_TCP };
	size_t i = 0;
	int sv[2], c;
	uint8_t sink[4096];

	init_once();
	check_framer(data, size);
	memset(&fp, 0, sizeof(fp));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		return 0;
	if (dnsq_tcp_adopt(&loop, sv[0], &info)) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	c = sv[1];
	while (i < size && c >= 0) {
		uint8_t op = data[i++];
		size_t k;

		switch (op & 7) {
		case 0: /* client sends 1..32 bytes */
		case 1:
			k = (size_t)(op >> 3) + 1;
			if (k > size - i)
				k = size - i;
			if (send(c, data + i, k, MSG_NOSIGNAL) < 0)
				k = 0;
			i += k;
			turn();
			break;
		case 2: /* the plugin's mood for the next queries */
			fp.hold = op >> 3;
			break;
		case 3: /* answer or drop a held query */
			k = (size_t)(op >> 4) % (fp.n_held ? fp.n_held : 1);
			if (k < fp.n_held && fp.held[k]) {
				xp_dns_query_t *q = fp.held[k];
				static uint8_t big[70000];

				fp.held[k] = NULL;
				fp.ended++;
				if (op & 8)
					dnsq_drop(q, "fuzz");
				else
					dnsq_answer(q, big, (op & 0x10) ? sizeof(big) : 12 + (op >> 5));
			}
			turn();
			break;
		case 4:
			turn();
			break;
		case 5: /* the client reads what is there */
			while (recv(c, sink, sizeof(sink), MSG_DONTWAIT) > 0)
				;
			turn();
			break;
		case 6:
			shutdown(c, SHUT_WR);
			turn();
			break;
		case 7:
			close(c);
			c = -1;
			break;
		}
	}
	if (c >= 0)
		close(c);
	/* The client is gone: within a few timer periods every query has ended. */
	for (int n = 0; n < 200 && fp.ended < fp.queries; n++) {
		usleep(200);
		turn();
	}
	if (fp.ended != fp.queries)
		abort();
	for (int n = 0; n < 5; n++)
		turn();
	return 0;
}
