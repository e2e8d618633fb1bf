/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dial - a plugin's own TCP connection (host->dial / host->dial_close, struct xp_dial_req):
 * DNS upstreams over TCP or through a proxy, health checks.
 *
 *   DIRECT (or NULL)  a non-blocking connect() from host->upstream_socket() (xproxy mark)
 *   [outbound.NAME]   the outbound's tcp_connect() with a headless connection (conn.h): its
 *                     conn_ready_fd / conn_ready_stream / conn_fail and stream_wake reach the
 *                     dial instead of a client
 * Exactly one req->done per dial, always from `loop` and never inside dial() itself, nor inside
 * the outbound's own call (results are delivered on the next loop iteration). A timeout
 * (req->timeout_ms, else the default) aborts the attempt with -ETIMEDOUT.
 *
 * dial_close(): before the result, cancels it (no done call follows); after a stream result,
 * closes the stream; after an fd result, only frees the handle (the fd is the plugin's). Every
 * dial is released by exactly one dial_close().
 */
#ifndef XP_DIAL_H
#define XP_DIAL_H

#include <stdint.h>

#include <xproxy/plugin.h>

#include "loop.h"

/* Thread-safe: the timeout when a request says 0 ([global] connect_timeout). */
void dial_set_default_timeout(uint64_t ms);

/* `loop`: the caller's loop (every callback runs there). NULL with errno (EINVAL: bad request,
 * ENOENT: no such outbound, EAFNOSUPPORT, EPROTONOSUPPORT: the outbound cannot do TCP, or the
 * outbound's own error). */
xp_dial_t *dial_new(xp_handle_t *who, struct xp_loop *loop, const struct xp_dial_req *req);
void dial_close(xp_dial_t *d);

#endif
