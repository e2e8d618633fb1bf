/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * stream - the plumbing every transforming outbound (shadowsocks, trojan, and the next one)
 * needs to hand the core a stream (xp_stream_ops) driven like a non-blocking socket. Compiled
 * into each plugin that uses it (plugins/meson.build), like plugins/sniff/common.
 *
 * What it does: the TCP connect to the server (upstream socket, TCP_NODELAY, io watch, connect
 * timeout, SO_ERROR); one io watch that asks only for what someone waits for (so a relay that
 * stops calling never makes the loop spin); a bounded write queue of bytes the stream owns and
 * its flush; the shutdown order (the queue first, then the half-close); the sticky error (a
 * stream that fails is dead for good: every later call returns the same error); wake-ups to
 * the core; and the free path (abort = reset).
 *
 * What the owner provides (struct xpo_impl), which is all that is protocol-specific:
 *   - write: put queued bytes on the wire (plain send() of ciphertext, SSL_write of
 *     plaintext);
 *   - fin: the half-close once the queue is out (shutdown(SHUT_WR), close_notify);
 *   - send: its encode on send (called once the stream is known alive, not shut down, and len
 *     is not 0): take the client's bytes, queue or write them, return what it took;
 *   - recv: its decode on recv (called once the stream is known alive);
 *   - shutdown (optional): what must be queued before the half-close;
 *   - close: free the owner, calling xpo_release() for the common part;
 *   - connected / timeout: the TCP connect finished (err 0 or -errno) / the connect timer ran
 *     out; io (optional): sees every event once connected first, and returns true when it took
 *     it (a TLS handshake, a UDP tunnel, a dead stream).
 *
 * The owner embeds struct xpo_stream as its FIRST member, so the stream pointer the core holds
 * is the owner's too. The core gets xpo_stream_ops; the ops dispatch through s->impl.
 *
 * Needs: "waiting" is a pair per side. recv_need / send_need are the XP_IO_* events the side
 * waits for (set by the owner from EAGAIN or WANT_READ/WANT_WRITE, and by the queue flush);
 * recv_blocked / send_blocked say the core was told -EAGAIN and wants a wake-up when the event
 * comes. hs_need is for an owner's handshake; keep_ev is asked for always (a UDP tunnel reads
 * whatever comes). While connecting only WRITE is asked for.
 */
#ifndef XP_OUTBOUND_COMMON_STREAM_H
#define XP_OUTBOUND_COMMON_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xproxy/plugin.h>

enum { XPO_CONNECTING = 0 }; /* owners number their later states from 1 */

struct xpo_stream;

struct xpo_impl {
	/* Write buf[0..len) from the queue: bytes written (> 0), -EAGAIN with *need set to the
	 * XP_IO_* event to wait for, or another -errno (fatal). */
	ssize_t (*write)(struct xpo_stream *s, const void *buf, size_t len, unsigned *need);
	/* The half-close, once the queue is empty: 0 (done), -EAGAIN with *need, or -errno. */
	int (*fin)(struct xpo_stream *s, unsigned *need);
	ssize_t (*send)(struct xpo_stream *s, const void *buf, size_t len);
	ssize_t (*recv)(struct xpo_stream *s, void *buf, size_t len);
	int (*shutdown)(struct xpo_stream *s); /* optional: 0 or -errno */
	void (*close)(struct xpo_stream *s, int abort);
	void (*connected)(struct xpo_stream *s, int err);
	void (*timeout)(struct xpo_stream *s);
	bool (*io)(struct xpo_stream *s, unsigned revents); /* optional */
};

struct xpo_stream {
	const struct xpo_impl *impl;
	const struct xp_host *host;
	xp_conn_t *conn; /* the core's connection, for wake-ups; NULL (UDP tunnels): no wake-ups */
	int fd;
	int state; /* XPO_CONNECTING, then the owner's */
	xp_io_t *io;
	xp_timer_t *timer; /* connect timeout; NULL without one, or once it is over */
	unsigned io_events;
	unsigned hs_need, recv_need, send_need, keep_ev; /* XP_IO_*, see above */
	int err;				 /* sticky: the stream is dead */
	bool recv_blocked, send_blocked;	 /* the core was told -EAGAIN */
	bool shut_pending, shut_done;
	bool q_secret; /* wipe the queue when freed (it held a password or its hash) */

	uint8_t *q; /* bytes the stream owns, waiting for write; freed by xpo_release */
	size_t qlen, qoff, qcap;
};

extern const struct xp_stream_ops xpo_stream_ops;

/* Zero the common part, with fd -1. */
void xpo_init(struct xpo_stream *s, const struct xpo_impl *impl, const struct xp_host *host);
/* Free the watch, the timer, the queue and the socket (abort: reset, not a FIN). Not `s`. */
void xpo_release(struct xpo_stream *s, int abort);

/* A non-blocking TCP socket towards `family` from the host's network namespace, its io watch
 * and (timeout_ms > 0) the connect timer. 0 or -errno (xpo_release cleans up either way). */
int xpo_socket(struct xpo_stream *s, xp_handle_t *self, xp_loop_t *loop, int family, bool nodelay,
	       uint64_t timeout_ms);
/* Start connecting; impl->connected follows from the io watch. 0 or -errno (connect failed at
 * once). */
int xpo_connect(struct xpo_stream *s, const union xp_sockaddr *server, socklen_t len);
/* Stop the connect timer (connected, or given up). */
void xpo_timer_stop(struct xpo_stream *s);

/* Ask the io watch for what someone waits for now. */
void xpo_io_update(struct xpo_stream *s);
/* Record the first error (sticky) and return the one recorded. */
int xpo_fail(struct xpo_stream *s, int err);

/* Write the queue: 0 (empty, or waiting with send_need set) or -errno. */
int xpo_flush(struct xpo_stream *s);
/* xpo_flush, then the half-close once the queue is empty and a shutdown is pending. */
int xpo_flush_fin(struct xpo_stream *s);
/* Move the unwritten bytes to the start of the queue (owners that add to a queue with a
 * write in progress must use a moving-buffer-safe writer). */
void xpo_compact(struct xpo_stream *s);

/* An owner's send() around its encoding, for owners that queue everything they encode:
 * xpo_send_room before (what is queued goes first: 0 with the queue compacted, -EAGAIN with
 * the send side waiting, or the sticky error), xpo_send_done after (flush what it queued and
 * report `taken`, or the sticky error). */
int xpo_send_room(struct xpo_stream *s);
ssize_t xpo_send_done(struct xpo_stream *s, size_t taken);

/* The io event handling of a connected stream: the recv side's wake-up, the queue's flush and
 * half-close, and the send side's wake-up. Returns the XP_WAKE_* to give the core; a failed
 * flush fails the stream and wakes both sides (they learn through their next call). */
unsigned xpo_events(struct xpo_stream *s, unsigned revents);

/* host:port or [v6]:port -> the host part (NUL-terminated in host[0..cap)) and the port.
 * 0 or -EINVAL. */
int xpo_split_hostport(const char *hp, char *host, size_t cap, const char **port);
/* Resolve a host:port (TCP) into *out. host (cap > 0) receives the host part. 0, -EINVAL (not
 * host:port), -EHOSTUNREACH (does not resolve) or -EAFNOSUPPORT. */
int xpo_resolve(const char *hp, union xp_sockaddr *out, socklen_t *len, char *host, size_t cap);

#endif
