/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * relay - moving bytes between a client socket and an outbound (internal to xprt).
 *
 * No event loop here: conn.c owns the watchers and calls relay_run() when one side can make
 * progress, then asks relay_want() which events to watch. Two modes:
 *
 *   fd      splice() through one pipe per direction (zero copy). A direction reads only while
 *           its pipe is empty or its destination keeps up, so at most one pipe of bytes per
 *           direction sits in the relay (backpressure; memory bounded by the two pipes).
 *   stream  read()/write() on the client, ops->send()/recv() on the stream, one buffer of
 *           `size` bytes (at most 64 KiB) per direction, refilled only once emptied.
 *
 * EOF from a source is forwarded once everything before it was delivered (shutdown(SHUT_WR)
 * or ops->shutdown()). Errors come back as -errno and the caller aborts both sides.
 */
#ifndef XP_RELAY_H
#define XP_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include <xproxy/plugin.h>

struct relay_dir {
	int pipe[2];	/* fd mode: [0] read end, [1] write end; -1 until first needed */
	uint32_t cap;	/* bytes the pipe or buffer holds */
	uint32_t len;	/* bytes held, not yet delivered */
	uint32_t off;	/* stream mode: start of the held bytes in buf */
	uint8_t *buf;	/* stream mode */
	uint64_t bytes; /* delivered to the destination */
	bool eof;	/* the source ended */
	bool done;	/* the EOF was forwarded */
	bool blocked;	/* the destination could not take everything held */
	int err;	/* stream mode, down: the stream's error, due once len is delivered */
};

struct relay {
	int cfd; /* client socket */
	int sfd; /* fd mode: server socket; -1 in stream mode */
	const struct xp_stream_ops *ops;
	void *stream;
	uint32_t size;	       /* per direction */
	struct relay_dir up;   /* client -> server */
	struct relay_dir down; /* server -> client */
};

/* relay_run() `what`: who can make progress. */
#define RELAY_CLIENT_READ  0x01
#define RELAY_CLIENT_WRITE 0x02
#define RELAY_SERVER_READ  0x04 /* fd: readable; stream: XP_WAKE_RECV */
#define RELAY_SERVER_WRITE 0x08 /* fd: writable; stream: XP_WAKE_SEND */
#define RELAY_ALL	   0x0f

/* relay_run() result bits (>= 0) */
#define RELAY_MOVED 0x1 /* bytes moved (activity, for the idle timeout) */
#define RELAY_HALF  0x2 /* at least one direction has forwarded its EOF */
#define RELAY_DONE  0x4 /* both have */
#define RELAY_MORE  0x8 /* stream mode: recv() stopped for fairness; run SERVER_READ again soon */

void relay_init_fd(struct relay *r, int cfd, int sfd, uint32_t size);
/* 0 or -ENOMEM (buffers). */
int relay_init_stream(struct relay *r, int cfd, const struct xp_stream_ops *ops, void *stream,
		      uint32_t size);
/* RELAY_* result bits, or -errno: a reset or fatal error on either side (abort both). */
int relay_run(struct relay *r, unsigned what);
/* Events to watch: RELAY_CLIENT_* and (fd mode) RELAY_SERVER_* bits. */
unsigned relay_want(const struct relay *r);
/* Pipes and buffers (not the sockets or the stream). Pipes still empty go back to a small
 * per-thread cache; relay_cache_flush() closes it (call on the same thread before it ends). */
void relay_release(struct relay *r);
void relay_cache_flush(void);

#endif
