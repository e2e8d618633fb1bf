// SPDX-License-Identifier: GPL-2.0-only
/*
 * udp - transparent UDP sessions. See udp.h.
 *
 * Re-entrancy: an outbound may call udp_deliver() or udp_fail() from inside udp_open() or
 * udp_send(), and a hook may call udp_sess_decide() or udp_sess_reply() from inside offer().
 * Deliveries are copied into the worker's reply queue (they change nothing but counters and the
 * idle clock; the queue is sent at the end of the loop iteration, see struct reply_q); a failure
 * only marks the session and arms its timer to fire in the next loop iteration, so a session is
 * never freed while a plugin or hook is on the stack.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "addr.h"
#include "flowev.h"
#include "log.h"
#include "outbound.h"
#include "ptrset.h"
#include "udp.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define RECV_BATCH	   16	 /* datagrams per recvmmsg(), and batches per callback: ... */
#define RECV_ROUNDS	   4	 /* ... so one busy socket cannot starve the worker's relays */
#define DGRAM_MAX	   65536 /* a whole UDP payload: never truncate */
#define PEERS_LEARNED	   32	 /* per independent session, peers already in the flow table */
#define DEF_IDLE_MS	   60000
#define DEF_DNS_IDLE_MS	   10000
#define DEF_MAX_SESSIONS   16384
#define DEF_REPLY_SOCKETS  1024
#define LOG_EVERY_S	   10.0
#define REPLY_BATCH	   32		/* replies queued per worker before a sendmmsg() ... */
#define REPLY_BYTES	   (256 << 10)	/* ... or this many bytes of them */

struct udp_stats udp_stats;
static atomic_uint_fast64_t udp_next_id;
static struct udp_dns_hook dns_hook;
static struct udp_sniff_hook sniff_hook;

/* A session's key: client and (dependent) destination, as 16-byte IPv4-mapped addresses. */
struct sess_key {
	uint8_t caddr[16];
	uint8_t daddr[16]; /* zero for an endpoint-independent session */
	uint16_t cport, dport;
	uint8_t any; /* 1: endpoint-independent (daddr/dport unused) */
	uint8_t pad[3];
};

enum sess_kind {
	SESS_PROXY,
	SESS_DNS,
	SESS_INSPECT,
	SESS_BLOCK, /* a decision said drop: datagrams are swallowed until expiry */
};

struct sniff_buf {
	struct xp_bytes parts[UDP_SNIFF_MAX_DGRAMS];
	unsigned count;
	size_t bytes;
};

struct udp_sess {
	struct udp_sess *hnext; /* hash chain */
	struct udp_sess *next, *prev; /* every session of the worker */
	struct udp_worker *uw;
	struct sess_key key;
	struct xp_conn_info info;
	enum sess_kind kind;
	struct outbound *ob; /* referenced */
	void *uctx;	     /* udp_open's */
	bool open;	     /* udp_open returned 0: udp_close owed */
	bool failed;	     /* udp_fail came, or a fatal send: closed on the next timer run */
	bool closing;
	bool decided;	     /* INSPECT: udp_sess_decide ran */
	uint64_t idle_ms;
	ev_tstamp start, last;
	ev_timer timer; /* idle, sniff deadline and deferred close */
	struct sniff_buf *sniff;
	char *domain;
	void *user;
	union xp_sockaddr peers[PEERS_LEARNED];
	unsigned n_peers;
	struct ob_via via; /* the groups that led to ob (conn_route.via) */
	char why[64];
};

/* A socket bound to a source the client must see (inside the netns), kept for reuse. */
struct reply_sock {
	struct reply_sock *hnext;
	struct reply_sock *lru_prev, *lru_next; /* most recent at the head */
	union xp_sockaddr addr;
	int fd;
};

/* Replies an outbound delivered (udp_deliver), copied, sent with one sendmmsg() per run of
 * the same reply socket: when the queue is full, before a reply socket closes, before a reply
 * that does not queue (udp_sess_reply), and at the end of the loop iteration (an ev_prepare
 * watcher, started while the queue holds something). Sent in queue order: a session's replies
 * stay in order. */
struct reply_q {
	unsigned n;
	size_t used; /* bytes of buf */
	int fd[REPLY_BATCH];
	union xp_sockaddr to[REPLY_BATCH];
	struct mmsghdr msgs[REPLY_BATCH];
	struct iovec iov[REPLY_BATCH];
	uint8_t *buf; /* REPLY_BYTES */
	ev_prepare flush;
};

struct udp_worker {
	struct xp_loop *loop;
	int fd;
	ev_io io;
	struct udp_opts opts;
	struct udp_env env;
	struct udp_sess **tab;
	size_t tab_size; /* power of two */
	unsigned n_sess;
	struct udp_sess *sessions;
	/* The last lookup, for the next datagram of the same flow (they come in bursts): the
	 * key looked up and the session it found. Cleared whenever the table changes. */
	struct sess_key hot_key;
	struct udp_sess *hot;
	struct reply_sock **rtab;
	size_t rtab_size;
	struct reply_sock *rlru_head, *rlru_tail;
	unsigned n_reply;
	struct reply_q rq;
	bool stopping;
	ev_tstamp limit_logged;
	/* recvmmsg buffers */
	struct mmsghdr msgs[RECV_BATCH];
	struct iovec iov[RECV_BATCH];
	union xp_sockaddr names[RECV_BATCH];
	char ctl[RECV_BATCH][128];
	uint8_t *bufs;	      /* RECV_BATCH * DGRAM_MAX */
	uint32_t drops_seen; /* the listener's kernel drop count, as last reported (SO_RXQ_OVFL) */
};

static void sess_close(struct udp_sess *s, const char *why);

/* ------------------------------------------------------------------------------ addresses */

static bool addr_equal(const union xp_sockaddr *a, const union xp_sockaddr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_port == b->in.sin_port &&
		       a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
	return a->in6.sin6_port == b->in6.sin6_port &&
	       !memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16);
}

static socklen_t addr_len(const union xp_sockaddr *a)
{
	return a->sa.sa_family == AF_INET ? sizeof(a->in) : sizeof(a->in6);
}

static const char *addr_str(const union xp_sockaddr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (a->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->in.sin_port));
	} else if (a->sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
	return buf;
}

static uint32_t hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t h = 0x811c9dc5;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x01000193;
	return h ^ (h >> 15);
}

static int key_make(struct sess_key *k, const union xp_sockaddr *client,
		    const union xp_sockaddr *dst)
{
	memset(k, 0, sizeof(*k));
	if (addr16_from(k->caddr, &k->cport, client))
		return -EAFNOSUPPORT;
	if (!dst) {
		k->any = 1;
		return 0;
	}
	return addr16_from(k->daddr, &k->dport, dst);
}

/* ------------------------------------------------------------------------------ session table */

static struct udp_sess *tab_find(struct udp_worker *uw, const struct sess_key *k)
{
	struct udp_sess *s;

	if (!uw->tab_size)
		return NULL;
	for (s = uw->tab[hash_bytes(k, sizeof(*k)) & (uw->tab_size - 1)]; s; s = s->hnext)
		if (!memcmp(&s->key, k, sizeof(*k)))
			return s;
	return NULL;
}

static int tab_grow(struct udp_worker *uw)
{
	size_t n = uw->tab_size ? uw->tab_size * 2 : 64;
	struct udp_sess **t = calloc(n, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < uw->tab_size; i++) {
		struct udp_sess *s = uw->tab[i], *nx;

		for (; s; s = nx) {
			size_t b = hash_bytes(&s->key, sizeof(s->key)) & (n - 1);

			nx = s->hnext;
			s->hnext = t[b];
			t[b] = s;
		}
	}
	free(uw->tab);
	uw->tab = t;
	uw->tab_size = n;
	return 0;
}

static int tab_insert(struct udp_worker *uw, struct udp_sess *s)
{
	size_t b;

	if (uw->n_sess + 1 > uw->tab_size && tab_grow(uw) && !uw->tab_size)
		return -ENOMEM;
	uw->hot = NULL; /* a new exact key may shadow the independent session found for it */
	b = hash_bytes(&s->key, sizeof(s->key)) & (uw->tab_size - 1);
	s->hnext = uw->tab[b];
	uw->tab[b] = s;
	s->next = uw->sessions;
	s->prev = NULL;
	if (uw->sessions)
		uw->sessions->prev = s;
	uw->sessions = s;
	uw->n_sess++;
	return 0;
}

static void tab_remove(struct udp_worker *uw, struct udp_sess *s)
{
	struct udp_sess **pp = &uw->tab[hash_bytes(&s->key, sizeof(s->key)) & (uw->tab_size - 1)];

	uw->hot = NULL;
	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == s) {
			*pp = s->hnext;
			break;
		}
	}
	if (s->prev)
		s->prev->next = s->next;
	else
		uw->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	uw->n_sess--;
}

/* ------------------------------------------------------------------------------ reply sockets */

static void rlru_unlink(struct udp_worker *uw, struct reply_sock *r)
{
	if (r->lru_prev)
		r->lru_prev->lru_next = r->lru_next;
	else
		uw->rlru_head = r->lru_next;
	if (r->lru_next)
		r->lru_next->lru_prev = r->lru_prev;
	else
		uw->rlru_tail = r->lru_prev;
	r->lru_prev = r->lru_next = NULL;
}

static void rlru_push(struct udp_worker *uw, struct reply_sock *r)
{
	r->lru_prev = NULL;
	r->lru_next = uw->rlru_head;
	if (uw->rlru_head)
		uw->rlru_head->lru_prev = r;
	uw->rlru_head = r;
	if (!uw->rlru_tail)
		uw->rlru_tail = r;
}

static size_t rhash(const struct udp_worker *uw, const union xp_sockaddr *a)
{
	uint8_t k[18];
	uint16_t port = 0;

	addr16_from(k, &port, a);
	memcpy(k + 16, &port, 2);
	return hash_bytes(k, sizeof(k)) & (uw->rtab_size - 1);
}

/* Send what the queue holds. A datagram the kernel refuses (EAGAIN: the socket's send buffer is
 * full) is dropped and counted, as an unbatched sendto's would be. */
static void rq_flush(struct udp_worker *uw)
{
	struct reply_q *q = &uw->rq;
	uint64_t sent = 0, bytes = 0, errs = 0;
	unsigned i = 0;

	while (i < q->n) {
		unsigned end = i + 1;
		int n;

		while (end < q->n && q->fd[end] == q->fd[i])
			end++;
		n = sendmmsg(q->fd[i], &q->msgs[i], end - i, MSG_DONTWAIT);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			errs++; /* this one failed: go on with the next */
			n = 1;
		} else {
			for (int k = 0; k < n; k++)
				bytes += q->msgs[i + k].msg_len;
			sent += n;
		}
		i += n;
	}
	if (sent) {
		atomic_fetch_add(&udp_stats.dgrams_down, sent);
		atomic_fetch_add(&udp_stats.bytes_down, bytes);
	}
	if (errs)
		atomic_fetch_add(&udp_stats.reply_errors, errs);
	q->n = 0;
	q->used = 0;
	ev_prepare_stop(uw->loop->ev, &q->flush);
}

static void rq_flush_cb(struct ev_loop *ev, ev_prepare *w, int revents)
{
	rq_flush(container_of(w, struct udp_worker, rq.flush));
}

/* Queue one reply (the socket stays open until the queue is sent: reply_free flushes). */
static int rq_add(struct udp_worker *uw, int fd, const union xp_sockaddr *to, const void *buf,
		  size_t len)
{
	struct reply_q *q = &uw->rq;
	struct msghdr *m;

	if (len > REPLY_BYTES)
		return -EMSGSIZE;
	if (q->n == REPLY_BATCH || q->used + len > REPLY_BYTES)
		rq_flush(uw);
	if (!q->n)
		ev_prepare_start(uw->loop->ev, &q->flush);
	memcpy(q->buf + q->used, buf, len);
	q->fd[q->n] = fd;
	q->to[q->n] = *to;
	q->iov[q->n] = (struct iovec){ .iov_base = q->buf + q->used, .iov_len = len };
	m = &q->msgs[q->n].msg_hdr;
	*m = (struct msghdr){
		.msg_name = &q->to[q->n],
		.msg_namelen = addr_len(to),
		.msg_iov = &q->iov[q->n],
		.msg_iovlen = 1,
	};
	q->msgs[q->n].msg_len = 0;
	q->used += len;
	q->n++;
	return 0;
}

static void reply_free(struct udp_worker *uw, struct reply_sock *r)
{
	struct reply_sock **pp = &uw->rtab[rhash(uw, &r->addr)];

	if (uw->rq.n)
		rq_flush(uw); /* it may hold datagrams for r->fd */

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == r) {
			*pp = r->hnext;
			break;
		}
	}
	rlru_unlink(uw, r);
	close(r->fd);
	free(r);
	uw->n_reply--;
}

/* Reply sockets only send: every datagram in the netns is meant for the worker's socket. One
 * that reaches a reply socket anyway (bound to a server's address, so any datagram the datapath
 * did not assign) would sit in its queue for the socket's life, and the queues of up to
 * max_reply_sockets sockets would fill with them. A classic BPF filter that accepts nothing
 * drops them on arrival (counted in the socket's drops, /proc/net/udp). */
static struct sock_filter drop_insn[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
static const struct sock_fprog drop_all = {.len = 1, .filter = drop_insn};

static int reply_open(struct udp_worker *uw, const union xp_sockaddr *from)
{
	int one = 1, fd, err;

	if (!uw->env.netns_socket)
		return -ENOTSUP;
	fd = uw->env.netns_socket(uw->env.ctx, from->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fd;
	/* Transparent: bind to an address that is not ours (the server's). SO_REUSEADDR: every
	 * worker may hold a socket bound to the same popular server address and port. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0 ||
	    (from->sa.sa_family == AF_INET6 &&
	     (setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) < 0 ||
	      setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)) ||
	    setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &drop_all, sizeof(drop_all)) < 0 ||
	    bind(fd, &from->sa, addr_len(from)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* The cached socket for `from`, opened on a miss; the least recently used one is closed past
 * max_reply_sockets. fd or -errno. */
static int reply_get(struct udp_worker *uw, const union xp_sockaddr *from)
{
	struct reply_sock *r;
	size_t b;
	int fd;

	if (!uw->rtab_size) {
		uw->rtab_size = 256;
		uw->rtab = calloc(uw->rtab_size, sizeof(*uw->rtab));
		if (!uw->rtab) {
			uw->rtab_size = 0;
			return -ENOMEM;
		}
	}
	b = rhash(uw, from);
	for (r = uw->rtab[b]; r; r = r->hnext) {
		if (addr_equal(&r->addr, from)) {
			if (uw->rlru_head != r) {
				rlru_unlink(uw, r);
				rlru_push(uw, r);
			}
			return r->fd;
		}
	}
	fd = reply_open(uw, from);
	if (fd < 0)
		return fd;
	r = calloc(1, sizeof(*r));
	if (!r) {
		close(fd);
		return -ENOMEM;
	}
	while (uw->n_reply >= uw->opts.max_reply_sockets && uw->rlru_tail)
		reply_free(uw, uw->rlru_tail);
	r->addr = *from;
	r->fd = fd;
	r->hnext = uw->rtab[b];
	uw->rtab[b] = r;
	rlru_push(uw, r);
	uw->n_reply++;
	return fd;
}

static void reply_flush(struct udp_worker *uw)
{
	if (uw->rq.n)
		rq_flush(uw);
	while (uw->rlru_head)
		reply_free(uw, uw->rlru_head);
	free(uw->rtab);
	uw->rtab = NULL;
	uw->rtab_size = 0;
}

/* ------------------------------------------------------------------------------ sessions */

static struct ev_loop *sess_ev(struct udp_sess *s)
{
	return s->uw->loop->ev;
}

static void timer_in(struct udp_sess *s, ev_tstamp after)
{
	ev_timer_stop(sess_ev(s), &s->timer);
	ev_timer_set(&s->timer, after > 0 ? after : 0., 0.);
	ev_timer_start(sess_ev(s), &s->timer);
}

static void touch(struct udp_sess *s)
{
	s->last = ev_now(sess_ev(s));
}

/* Deferred: the caller may be a plugin still on the stack. */
static void sess_fail_later(struct udp_sess *s, const char *why)
{
	if (s->failed || s->closing)
		return;
	s->failed = true;
	snprintf(s->why, sizeof(s->why), "%s", why);
	timer_in(s, 0.);
}

static void sniff_buf_free(struct udp_sess *s)
{
	if (!s->sniff)
		return;
	for (unsigned i = 0; i < s->sniff->count; i++)
		free((void *)s->sniff->parts[i].data);
	free(s->sniff);
	s->sniff = NULL;
}

static void sess_close(struct udp_sess *s, const char *why)
{
	struct udp_worker *uw = s->uw;
	char cs[64], ds[64];

	if (s->closing)
		return;
	s->closing = true;
	ev_timer_stop(sess_ev(s), &s->timer);
	if (s->open && s->ob->ops->udp_close)
		s->ob->ops->udp_close(s->ob->inst, s->uctx);
	s->open = false;
	if (s->kind == SESS_DNS && dns_hook.closed)
		dns_hook.closed(dns_hook.ctx, s);
	else if (s->info.route == XP_ROUTE_INSPECT && sniff_hook.closed)
		sniff_hook.closed(sniff_hook.ctx, s);
	if (log_enabled(XP_LOG_DEBUG))
		log_msg(XP_LOG_DEBUG, uw->loop->name, "udp %llu %s -> %s: closed: %s",
			(unsigned long long)s->info.id, addr_str(&s->info.client, cs, sizeof(cs)),
			addr_str(&s->info.dst, ds, sizeof(ds)), why);
	tab_remove(uw, s);
	atomic_fetch_sub(&udp_stats.active, 1);
	sniff_buf_free(s);
	if (s->ob)
		outbound_put(s->ob);
	free(s->domain);
	free(s);
}

static void sess_timer_cb(struct ev_loop *ev, ev_timer *t, int revents)
{
	struct udp_sess *s = container_of(t, struct udp_sess, timer);
	ev_tstamp now = ev_now(ev), idle = (ev_tstamp)s->idle_ms / 1000.0;

	if (s->failed) {
		sess_close(s, s->why);
		return;
	}
	if (s->kind == SESS_INSPECT && !s->decided) {
		/* the sniff deadline: the hook never decided */
		atomic_fetch_add(&udp_stats.sniff_timeout, 1);
		udp_sess_decide(s, XP_ROUTE_NONE, NULL, 0);
		if (s->failed) {
			sess_close(s, s->why);
			return;
		}
	}
	if (now >= s->last + idle) {
		atomic_fetch_add(&udp_stats.idle_expired, 1);
		sess_close(s, "idle");
		return;
	}
	timer_in(s, s->last + idle - now);
}

static int sess_open_outbound(struct udp_sess *s, struct outbound *ob)
{
	struct xp_target target = {
		.size = sizeof(target),
		.l4proto = IPPROTO_UDP,
		.addr = s->info.dst,
		.domain = s->domain,
	};
	int err;

	s->ob = ob;
	s->info.outbound = ob->name;
	s->kind = SESS_PROXY;
	if (!(ob->ops->caps & XP_OUTBOUND_UDP) || !ob->ops->udp_open || !ob->ops->udp_send) {
		atomic_fetch_add(&udp_stats.open_failed, 1);
		atomic_fetch_add(&ob->fails, 1);
		return -EPROTONOSUPPORT;
	}
	err = ob->ops->udp_open(ob->inst, (xp_udp_t *)s, &target, &s->uctx);
	if (err < 0) {
		s->uctx = NULL;
		atomic_fetch_add(&udp_stats.open_failed, 1);
		atomic_fetch_add(&ob->fails, 1);
		return err;
	}
	s->open = true;
	atomic_fetch_add(&ob->conns, 1);
	return 0;
}

static void sess_send(struct udp_sess *s, const union xp_sockaddr *dst, const void *buf,
		      size_t len)
{
	int err;

	if (!s->open || s->failed)
		return;
	err = s->ob->ops->udp_send(s->ob->inst, s->uctx, dst, s->domain, buf, len);
	if (err < 0) {
		atomic_fetch_add(&udp_stats.send_errors, 1);
		if (err == -ENOTCONN)
			sess_fail_later(s, "outbound ended the session");
		return;
	}
	atomic_fetch_add(&udp_stats.dgrams_up, 1);
	atomic_fetch_add(&udp_stats.bytes_up, len);
	atomic_fetch_add(&s->ob->bytes_up, len);
}

/* INSPECT: keep the datagram for the replay; false when the buffer is full (dropped). */
static bool sniff_keep(struct udp_sess *s, const void *buf, size_t len)
{
	struct sniff_buf *b = s->sniff;
	void *copy;

	if (!b) {
		b = s->sniff = calloc(1, sizeof(*b));
		if (!b)
			return false;
	}
	if (b->count >= UDP_SNIFF_MAX_DGRAMS || b->bytes + len > UDP_SNIFF_MAX_BYTES)
		return false;
	copy = malloc(len ? len : 1);
	if (!copy)
		return false;
	memcpy(copy, buf, len);
	b->parts[b->count].data = copy;
	b->parts[b->count].len = len;
	b->count++;
	b->bytes += len;
	return true;
}

/* One datagram from the client, on an existing or new session. */
static void sess_input(struct udp_sess *s, const union xp_sockaddr *dst, const void *buf,
		       size_t len)
{
	touch(s);
	switch (s->kind) {
	case SESS_PROXY:
		sess_send(s, dst, buf, len);
		return;
	case SESS_DNS:
		atomic_fetch_add(&udp_stats.dgrams_up, 1);
		atomic_fetch_add(&udp_stats.bytes_up, len);
		dns_hook.datagram(dns_hook.ctx, s, &s->info.client, &s->info.dst, buf, len);
		return;
	case SESS_INSPECT:
		if (!sniff_keep(s, buf, len)) {
			/* The buffer is full (or memory is out): the sniffers cannot get more
			 * than they had, so waiting for the deadline would only drop datagrams.
			 * Decide by the rules that need no name now; the kept datagrams are
			 * replayed and this one follows them. */
			atomic_fetch_add(&udp_stats.sniff_full, 1);
			if (udp_sess_decide(s, XP_ROUTE_NONE, NULL, 0) == 0 &&
			    s->kind == SESS_PROXY && !s->failed)
				sess_send(s, dst, buf, len);
			else if (s->kind != SESS_BLOCK)
				atomic_fetch_add(&udp_stats.sniff_dropped, 1);
			return;
		}
		if (sniff_hook.offer)
			sniff_hook.offer(sniff_hook.ctx, s, &s->info, s->sniff->parts,
					 s->sniff->count);
		return;
	case SESS_BLOCK:
		return;
	}
}

static bool limit_reached(struct udp_worker *uw)
{
	uint32_t max = uw->opts.max_sessions;

	/* Increment first, then compare: exact across workers without a lock. */
	if (atomic_fetch_add(&udp_stats.active, 1) < max || !max)
		return false;
	atomic_fetch_sub(&udp_stats.active, 1);
	atomic_fetch_add(&udp_stats.refused_limit, 1);
	if (ev_now(uw->loop->ev) - uw->limit_logged >= LOG_EVERY_S) {
		uw->limit_logged = ev_now(uw->loop->ev);
		log_msg(XP_LOG_WARN, uw->loop->name,
			"udp: max_udp_sessions (%u) reached: new sessions refused", max);
	}
	return true;
}

static void sess_named(struct udp_sess *s, uint8_t route, uint8_t source,
		       const struct outbound *ob);

/* A datagram no session took: route it and make a session. NULL when refused (counted). */
static struct udp_sess *sess_new(struct udp_worker *uw, const union xp_sockaddr *client,
				 const union xp_sockaddr *dst)
{
	struct conn_route rt = { 0 };
	struct udp_sess *s;
	char cs[64], ds[64];
	int err = -ENOENT;

	if (limit_reached(uw))
		return NULL;
	if (uw->env.route)
		err = uw->env.route(uw->env.ctx, client, dst, 0, &rt);
	if (!err && rt.route == XP_ROUTE_PROXY && !rt.ob)
		err = -ENOENT;
	if (!err && rt.route == XP_ROUTE_DNS && !dns_hook.datagram) {
		rt.why = "DNS verdict but no DNS handler";
		err = -EOPNOTSUPP;
	}
	if (!err && rt.route == XP_ROUTE_INSPECT && !sniff_hook.offer) {
		/* No sniffer: decide by rules at once, as a sniff timeout would. */
		memset(&rt, 0, sizeof(rt));
		err = uw->env.route(uw->env.ctx, client, dst, UDP_ROUTE_RULES, &rt);
		if (!err && (rt.route != XP_ROUTE_PROXY || !rt.ob))
			err = -ENOENT;
	}
	if (!err && rt.route != XP_ROUTE_PROXY && rt.route != XP_ROUTE_DNS &&
	    rt.route != XP_ROUTE_INSPECT)
		err = -EINVAL;
	if (err) {
		if (rt.ob)
			outbound_put(rt.ob);
		atomic_fetch_sub(&udp_stats.active, 1);
		atomic_fetch_add(&udp_stats.no_route, 1);
		if (log_enabled(XP_LOG_DEBUG))
			log_msg(XP_LOG_DEBUG, uw->loop->name, "udp %s -> %s: no route: %s",
				addr_str(client, cs, sizeof(cs)), addr_str(dst, ds, sizeof(ds)),
				rt.why ? rt.why : strerror(-err));
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		if (rt.ob)
			outbound_put(rt.ob);
		atomic_fetch_sub(&udp_stats.active, 1);
		log_msg(XP_LOG_WARN, uw->loop->name, "udp: out of memory: datagram dropped");
		return NULL;
	}
	s->uw = uw;
	s->info.size = sizeof(s->info);
	s->info.l4proto = IPPROTO_UDP;
	s->info.id = atomic_fetch_add(&udp_next_id, 1) + 1;
	s->info.client = *client;
	s->info.dst = *dst;
	s->info.route = rt.route;
	s->info.source = rt.source;
	s->info.from_host = rt.from_host;
	s->info.rule_id = rt.rule_id;
	s->via = rt.via;
	s->idle_ms = uw->opts.idle_timeout_ms;
	key_make(&s->key, client,
		 rt.route == XP_ROUTE_PROXY && rt.ob->udp_independent ? NULL : dst);
	if (s->key.any)
		s->info.flags |= XP_CONN_F_UDP_INDEPENDENT;
	if (rt.domain[0])
		udp_sess_set_domain(s, rt.domain); /* before udp_open: the target carries it */
	ev_timer_init(&s->timer, sess_timer_cb, 0., 0.);
	s->start = s->last = ev_now(uw->loop->ev);
	if (tab_insert(uw, s)) {
		if (rt.ob)
			outbound_put(rt.ob);
		atomic_fetch_sub(&udp_stats.active, 1);
		free(s);
		return NULL;
	}
	atomic_fetch_add(&udp_stats.sessions, 1);

	switch (rt.route) {
	case XP_ROUTE_PROXY:
		err = sess_open_outbound(s, rt.ob);
		if (err) {
			snprintf(s->why, sizeof(s->why), "udp_open: %s", strerror(-err));
			log_msg(XP_LOG_INFO, uw->loop->name, "udp %llu %s -> %s via %s: %s",
				(unsigned long long)s->info.id, addr_str(client, cs, sizeof(cs)),
				addr_str(dst, ds, sizeof(ds)), rt.ob->name, s->why);
			/* Closed now, not deferred: nothing of the plugin is on the stack. */
			s->open = false;
			sess_close(s, s->why);
			return NULL;
		}
		if (s->info.domain) /* a verdict a DNS answer wrote: the name is DNS's */
			sess_named(s, rt.route, rt.source, s->ob);
		break;
	case XP_ROUTE_DNS:
		s->kind = SESS_DNS;
		if (uw->opts.dns_idle_timeout_ms && uw->opts.dns_idle_timeout_ms < s->idle_ms)
			s->idle_ms = uw->opts.dns_idle_timeout_ms;
		break;
	case XP_ROUTE_INSPECT:
		s->kind = SESS_INSPECT;
		timer_in(s, (ev_tstamp)uw->opts.sniff_timeout_ms / 1000.0);
		return s;
	}
	timer_in(s, (ev_tstamp)s->idle_ms / 1000.0);
	if (log_enabled(XP_LOG_DEBUG))
		log_msg(XP_LOG_DEBUG, uw->loop->name, "udp %llu %s -> %s: new, %s%s%s",
			(unsigned long long)s->info.id, addr_str(client, cs, sizeof(cs)),
			addr_str(dst, ds, sizeof(ds)),
			s->kind == SESS_DNS ? "dns" : "via ", s->ob ? s->ob->name : "",
			s->key.any ? " (endpoint-independent)" : "");
	return s;
}

/* One datagram as the socket got it. */
static void dgram_in(struct udp_worker *uw, const union xp_sockaddr *client_in,
		     const union xp_sockaddr *dst_in, const void *buf, size_t len)
{
	union xp_sockaddr c = *client_in, d = *dst_in;
	union xp_sockaddr *client = &c, *dst = &d;
	struct sess_key k;
	struct udp_sess *s;

	if (uw->stopping)
		return;
	addr_unmap_v4(client);
	addr_unmap_v4(dst);
	if (key_make(&k, client, dst)) {
		atomic_fetch_add(&udp_stats.recv_errors, 1);
		return;
	}
	if (uw->hot && !memcmp(&uw->hot_key, &k, sizeof(k))) {
		s = uw->hot;
	} else {
		struct sess_key exact = k;

		s = tab_find(uw, &k);
		if (!s) {
			k.any = 1;
			memset(k.daddr, 0, sizeof(k.daddr));
			k.dport = 0;
			s = tab_find(uw, &k);
		}
		if (s) {
			uw->hot_key = exact;
			uw->hot = s;
		}
	}
	if (!s)
		s = sess_new(uw, client, dst);
	if (s && !s->closing && !s->failed)
		sess_input(s, dst, buf, len);
}

void udp_worker_input(struct udp_worker *uw, const union xp_sockaddr *client,
		      const union xp_sockaddr *dst, const void *buf, size_t len)
{
	dgram_in(uw, client, dst, buf, len);
}

/* ------------------------------------------------------------------------------ the socket */

static bool orig_dst(struct msghdr *m, union xp_sockaddr *dst)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR &&
		    c->cmsg_len >= CMSG_LEN(sizeof(struct sockaddr_in))) {
			memset(dst, 0, sizeof(*dst));
			memcpy(&dst->in, CMSG_DATA(c), sizeof(struct sockaddr_in));
			return dst->sa.sa_family == AF_INET;
		}
		if (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR &&
		    c->cmsg_len >= CMSG_LEN(sizeof(struct sockaddr_in6))) {
			memset(dst, 0, sizeof(*dst));
			memcpy(&dst->in6, CMSG_DATA(c), sizeof(struct sockaddr_in6));
			return dst->sa.sa_family == AF_INET6;
		}
	}
	return false;
}

/* The kernel's count of datagrams this socket dropped (receive buffer full), sent with every
 * datagram (SO_RXQ_OVFL): count what is new since the last one. */
static void count_drops(struct udp_worker *uw, struct msghdr *m)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL &&
		    c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
			uint32_t drops;

			memcpy(&drops, CMSG_DATA(c), sizeof(drops));
			if (drops != uw->drops_seen) {
				atomic_fetch_add(&udp_stats.overflow,
						 (uint32_t)(drops - uw->drops_seen));
				uw->drops_seen = drops;
			}
			return;
		}
	}
}

static void udp_io_cb(struct ev_loop *ev, ev_io *io, int revents)
{
	struct udp_worker *uw = container_of(io, struct udp_worker, io);

	for (int round = 0; round < RECV_ROUNDS && !uw->stopping; round++) {
		int n;

		for (int i = 0; i < RECV_BATCH; i++) {
			struct msghdr *m = &uw->msgs[i].msg_hdr;

			uw->iov[i].iov_base = uw->bufs + (size_t)i * DGRAM_MAX;
			uw->iov[i].iov_len = DGRAM_MAX;
			memset(m, 0, sizeof(*m));
			m->msg_name = &uw->names[i];
			m->msg_namelen = sizeof(uw->names[i]);
			m->msg_iov = &uw->iov[i];
			m->msg_iovlen = 1;
			m->msg_control = uw->ctl[i];
			m->msg_controllen = sizeof(uw->ctl[i]);
		}
		n = recvmmsg(uw->fd, uw->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				log_msg(XP_LOG_DEBUG, uw->loop->name, "udp: recvmmsg: %s",
					strerror(errno));
			return;
		}
		for (int i = 0; i < n; i++) {
			struct msghdr *m = &uw->msgs[i].msg_hdr;
			union xp_sockaddr dst;

			count_drops(uw, m);
			if ((m->msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || !orig_dst(m, &dst)) {
				atomic_fetch_add(&udp_stats.recv_errors, 1);
				continue;
			}
			dgram_in(uw, &uw->names[i], &dst, uw->iov[i].iov_base, uw->msgs[i].msg_len);
		}
		if (n < RECV_BATCH)
			return;
	}
}

int udp_set_buffer(int fd, uint32_t bytes)
{
	int want = (int)(bytes > INT_MAX / 2 ? INT_MAX / 2 : bytes), got = 0;
	socklen_t len = sizeof(got);

	/* A datagram that finds the buffer full is lost. A worker busy for a few milliseconds
	 * (another socket's burst, a reload, a slow plugin) must not cost the flows queued
	 * behind it, so the listener gets far more than rmem_default. FORCE (CAP_NET_ADMIN)
	 * goes past net.core.rmem_max; without it the kernel caps the value. The kernel doubles
	 * what it is given (bookkeeping), so ask for half. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &(int){ want / 2 }, sizeof(int)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){ want / 2 }, sizeof(int)) < 0)
		return -errno;
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) < 0)
		return -errno;
	return got;
}

int udp_listen(int fd, uint32_t rcvbuf)
{
	struct sockaddr_in6 any = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	int one = 1, zero = 0, got;

	/* Transparent: datagrams to any address (bpf_sk_assign hands them over); the original
	 * destination comes with each datagram. The IPv4 options apply to IPv4-mapped traffic
	 * of this dual-stack socket. SO_RXQ_OVFL: the kernel's drop count comes along too, so
	 * a full receive buffer is counted (stats: udp ... overflow), not silent. */
	if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0 ||
	    setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one)) < 0)
		return -errno;
	got = udp_set_buffer(fd, rcvbuf);
	if (got < 0)
		return got;
	if ((uint32_t)got < rcvbuf)
		log_warn(
			"udp: receive buffer %d bytes, not the %u of udp_buffer "
			"(no CAP_NET_ADMIN; net.core.rmem_max caps it)",
			got, rcvbuf);
	if (bind(fd, (struct sockaddr *)&any, sizeof(any)) < 0)
		return -errno;
	return 0;
}

void udp_worker_set_buffer(struct udp_worker *uw, uint32_t bytes)
{
	int got = uw->fd >= 0 ? udp_set_buffer(uw->fd, bytes) : 0;

	if (got < 0)
		log_msg(XP_LOG_WARN, uw->loop->name, "udp: udp_buffer: %s", strerror(-got));
}

static void opts_fix(struct udp_opts *o)
{
	if (!o->idle_timeout_ms)
		o->idle_timeout_ms = DEF_IDLE_MS;
	if (!o->dns_idle_timeout_ms)
		o->dns_idle_timeout_ms = DEF_DNS_IDLE_MS;
	if (o->dns_idle_timeout_ms > o->idle_timeout_ms)
		o->dns_idle_timeout_ms = o->idle_timeout_ms;
	if (!o->max_sessions)
		o->max_sessions = DEF_MAX_SESSIONS;
	if (!o->max_reply_sockets)
		o->max_reply_sockets = DEF_REPLY_SOCKETS;
}

/* ------------------------------------------------------------------------------ cuts */

/* The UDP workers that take cuts (conn.h): from udp_worker_new to udp_worker_stop. */
static struct ptrset running = PTRSET_INIT;

static void running_add(struct udp_worker *uw)
{
	if (!ptrset_add(&running, uw))
		log_msg(XP_LOG_WARN, uw->loop->name,
			"udp: out of memory: group interrupts miss this worker");
}

struct cut_post {
	struct udp_worker *uw;
	struct conn_cut *cut;
};

static void cut_on_loop(void *arg)
{
	struct cut_post *p = arg;
	struct udp_sess *s, *nx;
	uint64_t n = 0;

	for (s = p->uw->sessions; s; s = nx) {
		nx = s->next; /* sess_close frees s only */
		if (s->ob && !s->closing && conn_cut_match(p->cut, s->ob->id, &s->via)) {
			sess_close(s, p->cut->why);
			n++;
		}
	}
	atomic_fetch_add(&p->cut->udp, n);
	conn_cut_put(p->cut);
	free(p);
}

void udp_cut_post(struct conn_cut *cut)
{
	pthread_mutex_lock(&running.lock);
	for (size_t i = 0; i < running.n; i++) {
		struct udp_worker *uw = running.v[i];
		struct cut_post *p = malloc(sizeof(*p));

		if (!p) {
			log_msg(XP_LOG_WARN, uw->loop->name,
				"udp: out of memory: a group interrupt misses this worker");
			continue;
		}
		p->uw = uw;
		p->cut = cut;
		conn_cut_hold(cut);
		if (loop_post(uw->loop, cut_on_loop, p)) {
			conn_cut_put(cut);
			free(p);
		}
	}
	pthread_mutex_unlock(&running.lock);
}

struct udp_worker *udp_worker_new(struct xp_loop *loop, int fd, const struct udp_opts *opts,
				  const struct udp_env *env)
{
	struct udp_worker *uw = calloc(1, sizeof(*uw));

	if (!uw)
		goto err_fd;
	uw->bufs = malloc((size_t)RECV_BATCH * DGRAM_MAX);
	uw->rq.buf = malloc(REPLY_BYTES);
	if (!uw->bufs || !uw->rq.buf)
		goto err_uw;
	ev_prepare_init(&uw->rq.flush, rq_flush_cb);
	uw->loop = loop;
	uw->fd = fd;
	uw->opts = *opts;
	opts_fix(&uw->opts);
	uw->env = *env;
	if (fd >= 0) {
		ev_io_init(&uw->io, udp_io_cb, fd, EV_READ);
		ev_io_start(loop->ev, &uw->io);
	}
	running_add(uw);
	return uw;

err_uw:
	free(uw->bufs);
	free(uw->rq.buf);
	free(uw);
err_fd:
	if (fd >= 0)
		close(fd);
	errno = ENOMEM;
	return NULL;
}

struct opts_post {
	struct udp_worker *uw;
	struct udp_opts opts;
};

static void opts_apply(void *arg)
{
	struct opts_post *p = arg;

	p->uw->opts = p->opts;
	free(p);
}

void udp_worker_set_opts(struct udp_worker *uw, const struct udp_opts *opts)
{
	struct opts_post *p = malloc(sizeof(*p));

	if (!p) {
		log_msg(XP_LOG_WARN, uw->loop->name, "udp: out of memory: new options not applied");
		return;
	}
	p->uw = uw;
	p->opts = *opts;
	opts_fix(&p->opts);
	if (loop_post(uw->loop, opts_apply, p))
		free(p);
}

struct sweep_post {
	struct udp_worker *uw;
	bool (*alive)(struct outbound *ob);
};

static void sweep_apply(void *arg)
{
	struct sweep_post *p = arg;
	struct udp_sess *s = p->uw->sessions, *nx;

	for (; s; s = nx) {
		nx = s->next;
		if (s->ob && !p->alive(s->ob))
			sess_close(s, "outbound changed or removed");
	}
	free(p);
}

void udp_worker_sweep(struct udp_worker *uw, bool (*ob_alive)(struct outbound *ob))
{
	struct sweep_post *p = malloc(sizeof(*p));

	if (!p)
		return;
	p->uw = uw;
	p->alive = ob_alive;
	if (loop_post(uw->loop, sweep_apply, p))
		free(p);
}

static void close_all(struct udp_worker *uw)
{
	while (uw->sessions)
		sess_close(uw->sessions, "shutdown");
}

static void stop_on_loop(void *arg)
{
	struct udp_worker *uw = arg;

	uw->stopping = true;
	ev_io_stop(uw->loop->ev, &uw->io);
	close_all(uw);
	reply_flush(uw);
}

void udp_worker_stop(struct udp_worker *uw)
{
	ptrset_del(&running, uw);
	if (loop_post(uw->loop, stop_on_loop, uw))
		uw->stopping = true; /* udp_worker_free cleans up after the join */
}

void udp_worker_free(struct udp_worker *uw)
{
	if (!uw)
		return;
	ptrset_del(&running, uw); /* never stopped (a start that failed) */
	/* The loop does not run any more: its watchers can be touched from here. */
	uw->stopping = true;
	if (uw->fd >= 0)
		ev_io_stop(uw->loop->ev, &uw->io);
	close_all(uw);
	reply_flush(uw);
	if (uw->fd >= 0)
		close(uw->fd);
	free(uw->tab);
	free(uw->bufs);
	free(uw->rq.buf);
	free(uw);
}

unsigned udp_worker_sessions(const struct udp_worker *uw)
{
	return uw->n_sess;
}

/* ------------------------------------------------------------------------------ hooks */

void udp_set_dns_hook(const struct udp_dns_hook *h)
{
	if (h)
		dns_hook = *h;
	else
		memset(&dns_hook, 0, sizeof(dns_hook));
}

void udp_set_sniff_hook(const struct udp_sniff_hook *h)
{
	if (h)
		sniff_hook = *h;
	else
		memset(&sniff_hook, 0, sizeof(sniff_hook));
}

/* queue: an outbound's delivery, sent with the others of this loop iteration (rq_add); else at
 * once, after what is queued, so that the error can be returned. */
static int sess_reply(struct udp_sess *s, const union xp_sockaddr *from, const void *buf,
		      size_t len, bool queue)
{
	struct udp_worker *uw = s->uw;
	union xp_sockaddr src = *from, to = s->info.client;
	int fd, err;

	if (s->closing)
		return -ESHUTDOWN;
	addr_unmap_v4(&src);
	if (src.sa.sa_family != to.sa.sa_family) {
		atomic_fetch_add(&udp_stats.reply_errors, 1);
		return -EAFNOSUPPORT;
	}
	fd = reply_get(uw, &src);
	if (fd < 0) {
		atomic_fetch_add(&udp_stats.reply_errors, 1);
		return fd;
	}
	if (queue) {
		err = rq_add(uw, fd, &to, buf, len);
		if (err) {
			atomic_fetch_add(&udp_stats.reply_errors, 1);
			return err;
		}
		touch(s);
		return 0;
	}
	if (uw->rq.n)
		rq_flush(uw);
	if (sendto(fd, buf, len, 0, &to.sa, addr_len(&to)) < 0) {
		atomic_fetch_add(&udp_stats.reply_errors, 1);
		return -errno;
	}
	touch(s);
	atomic_fetch_add(&udp_stats.dgrams_down, 1);
	atomic_fetch_add(&udp_stats.bytes_down, len);
	return 0;
}

int udp_sess_reply(struct udp_sess *s, const union xp_sockaddr *from, const void *buf,
		   size_t len)
{
	return sess_reply(s, from, buf, len, false);
}

/* XP_EVENT_FLOW_NAMED (flowev.h): the decision for the session and the name behind it. */
static void sess_named(struct udp_sess *s, uint8_t route, uint8_t source, const struct outbound *ob)
{
	struct xp_conn_info info = s->info;

	info.route = route;
	info.source = source;
	info.outbound = ob ? ob->name : NULL;
	if (!info.domain)
		info.sniffer = NULL;
	flowev_named(s->uw->loop->name, &info);
}

int udp_sess_decide(struct udp_sess *s, uint8_t route, const char *outbound, uint32_t rule_id)
{
	struct udp_worker *uw = s->uw;
	struct conn_route rt = { 0 };
	struct outbound *ob = NULL;
	int err = 0;

	if (s->kind != SESS_INSPECT || s->decided)
		return -EALREADY;
	if (s->closing || s->failed)
		return -ESHUTDOWN;
	s->decided = true;
	switch (route) {
	case XP_ROUTE_PROXY:
		ob = outbound ? outbound_resolve(outbound, &s->via) : NULL;
		if (!ob)
			err = -ENOENT;
		break;
	case XP_ROUTE_DIRECT:
		ob = uw->env.direct_outbound ? uw->env.direct_outbound(uw->env.ctx) : NULL;
		if (!ob)
			err = -ENOENT;
		break;
	case XP_ROUTE_BLOCK:
		break;
	default:
		err = uw->env.route ? uw->env.route(uw->env.ctx, &s->info.client, &s->info.dst,
						    UDP_ROUTE_RULES, &rt)
				    : -ENOENT;
		ob = rt.ob;
		route = rt.route;
		rule_id = rt.rule_id;
		s->via = rt.via;
		if (!err && route == XP_ROUTE_PROXY && !ob)
			err = -ENOENT;
		if (!err && route != XP_ROUTE_PROXY && route != XP_ROUTE_BLOCK)
			err = -EINVAL;
		break;
	}
	if (err) {
		if (ob)
			outbound_put(ob);
		atomic_fetch_add(&udp_stats.no_route, 1);
		sess_fail_later(s, "no route after inspection");
		return err;
	}
	s->info.rule_id = rule_id;
	sess_named(s, route, rt.route ? rt.source : rule_id ? XP_SOURCE_RULE : XP_SOURCE_FALLBACK,
		   ob);
	if (route == XP_ROUTE_BLOCK) {
		s->kind = SESS_BLOCK;
		sniff_buf_free(s);
	} else {
		err = sess_open_outbound(s, ob);
		if (err) {
			sess_fail_later(s, "udp_open failed");
			return err;
		}
		/* Replay what the hook saw, in order. */
		for (unsigned i = 0; s->sniff && i < s->sniff->count && !s->failed; i++)
			sess_send(s, &s->info.dst, s->sniff->parts[i].data, s->sniff->parts[i].len);
		sniff_buf_free(s);
	}
	timer_in(s, (ev_tstamp)s->idle_ms / 1000.0);
	return 0;
}

void udp_sess_set_domain(struct udp_sess *s, const char *domain)
{
	char *d = domain ? strdup(domain) : NULL;

	if (domain && !d)
		return; /* keep the old name: out of memory is not worth failing the session */
	free(s->domain);
	s->domain = d;
	s->info.domain = d;
}

void udp_sess_set_sniffer(struct udp_sess *s, const char *sniffer)
{
	s->info.sniffer = sniffer;
}

const struct xp_conn_info *udp_sess_info(struct udp_sess *s)
{
	return &s->info;
}

struct xp_loop *udp_sess_loop(struct udp_sess *s)
{
	return s->uw->loop;
}

void udp_sess_set_user(struct udp_sess *s, void *user)
{
	s->user = user;
}

void *udp_sess_user(struct udp_sess *s)
{
	return s->user;
}

/* ------------------------------------------------------------------------------ host table */

const struct xp_conn_info *udp_info(xp_udp_t *s)
{
	return &((struct udp_sess *)s)->info;
}

xp_loop_t *udp_loop(xp_udp_t *s)
{
	return ((struct udp_sess *)s)->uw->loop;
}

/* Independent sessions: the first datagram from a new peer makes the datapath return that
 * peer's datagrams to the client (the reply program finds the client through the flow). */
static void peer_learn(struct udp_sess *s, const union xp_sockaddr *peer)
{
	struct udp_worker *uw = s->uw;

	if (!s->key.any || addr_equal(peer, &s->info.dst) || !uw->env.peer_learn)
		return;
	for (unsigned i = 0; i < s->n_peers; i++)
		if (addr_equal(&s->peers[i], peer))
			return;
	if (uw->env.peer_learn(uw->env.ctx, &s->info.client, &s->info.dst, peer))
		return;
	if (s->n_peers < PEERS_LEARNED)
		s->peers[s->n_peers++] = *peer;
}

void udp_deliver(xp_udp_t *us, const union xp_sockaddr *from, const void *buf, size_t len)
{
	struct udp_sess *s = (struct udp_sess *)us;
	union xp_sockaddr src;

	if (s->closing || s->failed)
		return;
	/* Endpoint-dependent: the client talks to one destination and must see only it. */
	src = s->key.any && from ? *from : s->info.dst;
	addr_unmap_v4(&src);
	peer_learn(s, &src);
	if (sess_reply(s, &src, buf, len, true) == 0 && s->ob)
		atomic_fetch_add(&s->ob->bytes_down, len);
}

void udp_fail(xp_udp_t *us, int err, const char *reason)
{
	struct udp_sess *s = (struct udp_sess *)us;
	char why[64];

	if (s->closing || s->failed)
		return;
	atomic_fetch_add(&udp_stats.failed, 1);
	snprintf(why, sizeof(why), "%s%s%s", reason ? reason : "failed", err ? ": " : "",
		 err ? strerror(err < 0 ? -err : err) : "");
	sess_fail_later(s, why);
}
