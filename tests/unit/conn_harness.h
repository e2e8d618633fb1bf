/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * conn_harness - a real worker on loopback with a fake outbound, for test_conn and test_relay.
 *
 * The test thread plays both ends: the client (connects to the worker's listener) and the
 * server (a loopback listener the fake outbound connects to). The fake outbound is a
 * hand-built struct outbound whose reference the harness holds, so the connection's
 * outbound_put() never frees it and the test can check that every reference came back.
 */
#ifndef CONN_HARNESS_H
#define CONN_HARNESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "conn.h"
#include "outbound.h"

enum fake_mode {
	FAKE_FD_SYNC,	  /* connect, then ready_fd inside tcp_connect */
	FAKE_FD_ASYNC,	  /* non-blocking connect, ready_fd from an io callback */
	FAKE_STREAM,	  /* connect, XOR stream with random -EAGAIN; ready_stream from a timer */
	FAKE_STREAM_SYNC, /* the same, ready_stream inside tcp_connect */
	FAKE_NEVER,	  /* no answer until tcp_abort */
	FAKE_FAIL_SYNC,	  /* conn_fail(err) inside tcp_connect */
	FAKE_FAIL_ASYNC,  /* conn_fail(err) from a timer */
	FAKE_RETURN_ERR,  /* tcp_connect returns err */
	FAKE_FD_TWICE,	  /* ready_fd twice (a plugin bug): the second must be refused */
};

#define XOR_KEY 0x5a

struct harness {
	struct worker w;
	bool started;
	int port;   /* the worker's listener */
	int srv_fd; /* the "server" listener */
	int srv_port;
	int fd_base;		 /* open fds before start */
	uint64_t stats_base[10]; /* conn_stats at start, in struct order */

	/* route */
	atomic_int route_err;	  /* returned by the route function */
	atomic_bool route_refuse; /* ob = NULL */
	atomic_bool v6;		  /* clients connect to [::1] instead of 127.0.0.1 */
	atomic_int routes;

	/* fake outbound */
	_Atomic enum fake_mode mode; /* read on the worker, changed by tests */
	int fail_err;
	int upstream_sndbuf;	  /* SO_SNDBUF on the upstream socket, 0 = default */
	atomic_bool stream_stall; /* stream send() says -EAGAIN without waking until cleared */
	atomic_bool stream_noise; /* random -EAGAIN and wake styles */
	struct plugin plugin;
	struct outbound ob;
	atomic_int connects, aborts, stream_closes, stream_aborts, stream_shutdowns;
	atomic_int info_bad; /* conn_info/conn_loop checks failed inside tcp_connect */
	atomic_uint_fast64_t last_id;
	struct fake_stream *_Atomic stalled; /* the stream whose send is stalled */
};

/* Listener (with SO_RCVBUF rcvbuf when > 0), server, worker thread. Skips (exit 77) without
 * IP_TRANSPARENT permission. */
void h_start(struct harness *h, enum fake_mode mode, const struct conn_opts *opts, int rcvbuf);
/* worker_stop/join/fini, server close; checks the outbound's references came back and no fd
 * leaked (the test must have closed its own sockets). */
void h_stop(struct harness *h);
uint64_t h_stat(struct harness *h, size_t offset); /* conn_stats field delta since start */
#define H_STAT(h, field) h_stat((h), offsetof(struct conn_stats, field))

int h_client(struct harness *h);			     /* connected, blocking */
int h_client_buf(struct harness *h, int sndbuf, int rcvbuf); /* with socket buffer sizes */
int h_accept(struct harness *h, int timeout_ms);	     /* the upstream side, or -1 */
void h_nonblock(int fd);

/* Wait for a condition polled every millisecond; false on timeout. */
bool h_wait(bool (*cond)(struct harness *h), struct harness *h, int timeout_ms);
bool h_idle(struct harness *h); /* no live connection (conn_stats.active back to base) */

/* Read from fd until EOF/error/timeout; returns bytes read (into buf up to cap, the rest
 * discarded), *end = 0 on EOF, -errno on error, -ETIMEDOUT on timeout. */
size_t h_read_until_end(int fd, uint8_t *buf, size_t cap, int timeout_ms, int *end);
/* 0 on EOF, -ECONNRESET on reset, -ETIMEDOUT, other -errno; discards data */
int h_wait_end(int fd, int timeout_ms);

/* Send `up` from client to server and `down` from server to client at the same time, both
 * byte-exact (the server sees up ^ xor, sends down ^ xor), then half-close both ways and
 * check EOFs. Closes both fds. */
void h_exchange(int cfd, int sfd, size_t up, size_t down, uint8_t xor);

void h_fill(uint8_t *buf, size_t len, uint32_t seed);
int h_fd_count(void);
void h_reset_close(int fd);

void h_stream_unstall(struct harness *h); /* wake the stalled stream (from the test thread) */

#endif
