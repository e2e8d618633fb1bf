/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * relay - splice() and stream relays between a client and an outbound. See relay.h.
 *
 * Syscall budget, because the benchmark compares us with kernel forwarding: a direction only
 * reads into an empty pipe/buffer, so an EAGAIN on read always means "source empty" (a pipe
 * can be full of slots long before it is full of bytes, which would otherwise make EAGAIN
 * ambiguous and the loop spin). A short read or a short write ends the round without the extra
 * syscall that would only return EAGAIN: the loop is level-triggered and reports the fd again
 * if there is more.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

#define SPLICE_FLAGS (SPLICE_F_NONBLOCK | SPLICE_F_MOVE)
/* Full-sized reads a direction may do in one round before yielding to other connections. */
#define ROUND_READS 4
#define PIPE_CACHE  32
/* Stream mode: transforming outbounds work in records of 16 KiB (AEAD chunks, TLS records),
 * and a buffer holding a few of them keeps the syscalls per byte as low as a bigger one. The
 * 1 MiB default buffer_size is sized for splice pipes; as malloc'd memory it only showed up in
 * the RSS (glibc keeps the pages once touched). */
#define STREAM_BUF_MAX 65536
/* Room a read ahead needs (read_ahead): a whole 16 KiB record and its framing, so a plugin
 * never has to split one into a side buffer because our buffer is nearly full. */
#define READ_AHEAD_ROOM (16384 + 1024)

/* Empty pipes kept for the next connection: saves pipe2 + F_SETPIPE_SZ + two closes per
 * direction on short connections. Per thread, so no locking; one thread = one worker. */
struct cached_pipe {
	int fd[2];
	uint32_t want; /* the size asked for when it was made */
	uint32_t cap;
};
static __thread struct cached_pipe pipe_cache[PIPE_CACHE];
static __thread unsigned pipe_cached;

static void dir_init(struct relay_dir *d)
{
	memset(d, 0, sizeof(*d));
	d->pipe[0] = -1;
	d->pipe[1] = -1;
}

void relay_init_fd(struct relay *r, int cfd, int sfd, uint32_t size)
{
	r->cfd = cfd;
	r->sfd = sfd;
	r->ops = NULL;
	r->stream = NULL;
	r->size = size;
	dir_init(&r->up);
	dir_init(&r->down);
}

int relay_init_stream(struct relay *r, int cfd, const struct xp_stream_ops *ops, void *stream,
		      uint32_t size)
{
	uint8_t *mem;

	if (size > STREAM_BUF_MAX)
		size = STREAM_BUF_MAX;
	relay_init_fd(r, cfd, -1, size);
	r->ops = ops;
	r->stream = stream;
	mem = malloc((size_t)size * 2);
	if (!mem)
		return -ENOMEM;
	r->up.buf = mem;
	r->up.cap = size;
	r->down.buf = mem + size;
	r->down.cap = size;
	return 0;
}

static int pipe_get(struct relay_dir *d, uint32_t want)
{
	int sz;

	for (unsigned i = pipe_cached; i-- > 0;) {
		if (pipe_cache[i].want != want)
			continue;
		d->pipe[0] = pipe_cache[i].fd[0];
		d->pipe[1] = pipe_cache[i].fd[1];
		d->cap = pipe_cache[i].cap;
		pipe_cache[i] = pipe_cache[--pipe_cached];
		return 0;
	}
	if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	/* Best effort: above /proc/sys/fs/pipe-max-size (unprivileged) it fails and the pipe
	 * keeps its default size. */
	sz = fcntl(d->pipe[1], F_SETPIPE_SZ, (int)want);
	if (sz < 0)
		sz = fcntl(d->pipe[1], F_GETPIPE_SZ);
	d->cap = sz > 0 ? (uint32_t)sz : 65536;
	return 0;
}

static void pipe_put(struct relay_dir *d, uint32_t want)
{
	if (d->pipe[0] < 0)
		return;
	/* A pipe with bytes in it cannot be reused: they belong to the old connection. */
	if (d->len == 0 && pipe_cached < PIPE_CACHE) {
		pipe_cache[pipe_cached].fd[0] = d->pipe[0];
		pipe_cache[pipe_cached].fd[1] = d->pipe[1];
		pipe_cache[pipe_cached].want = want;
		pipe_cache[pipe_cached].cap = d->cap;
		pipe_cached++;
	} else {
		close(d->pipe[0]);
		close(d->pipe[1]);
	}
	d->pipe[0] = -1;
	d->pipe[1] = -1;
}

void relay_cache_flush(void)
{
	while (pipe_cached) {
		pipe_cached--;
		close(pipe_cache[pipe_cached].fd[0]);
		close(pipe_cache[pipe_cached].fd[1]);
	}
}

void relay_release(struct relay *r)
{
	if (r->ops) {
		free(r->up.buf);
		r->up.buf = NULL;
		r->down.buf = NULL;
		return;
	}
	pipe_put(&r->up, r->size);
	pipe_put(&r->down, r->size);
}

/* Deliver what the pipe holds to dst. 1 when emptied, 0 when dst is full, -errno. */
static int splice_out(struct relay_dir *d, int dst)
{
	while (d->len) {
		ssize_t n = splice(d->pipe[0], NULL, dst, NULL, d->len, SPLICE_FLAGS);

		if (n > 0) {
			d->len -= (uint32_t)n;
			d->bytes += (uint64_t)n;
			if (d->len) {
				/* Short: the socket's send buffer is full. */
				d->blocked = true;
				return 0;
			}
			break;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			d->blocked = true;
			return 0;
		}
		return n < 0 ? -errno : -EIO;
	}
	d->blocked = false;
	return 1;
}

/* One direction of an fd relay. RELAY_MOVED or 0, or -errno. */
static int pump_fd(struct relay *r, struct relay_dir *d, int src, int dst)
{
	int moved = 0, err;

	for (int reads = 0;;) {
		ssize_t n;

		err = splice_out(d, dst);
		if (err < 0)
			return err;
		if (!err)
			return moved; /* paused until dst is writable: backpressure */
		if (d->eof) {
			if (!d->done) {
				if (shutdown(dst, SHUT_WR) < 0)
					return -errno;
				d->done = true;
			}
			return moved;
		}
		if (reads++ == ROUND_READS)
			return moved;
		if (d->pipe[0] < 0) {
			err = pipe_get(d, r->size);
			if (err)
				return err;
		}
		n = splice(src, NULL, d->pipe[1], NULL, d->cap, SPLICE_FLAGS);
		if (n > 0) {
			d->len = (uint32_t)n;
			moved = RELAY_MOVED;
			if ((uint32_t)n < d->cap) {
				/* Probably all there was: deliver it and wait for more. */
				reads = ROUND_READS;
			}
			continue;
		}
		if (n == 0) {
			d->eof = true;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return moved;
		return -errno;
	}
}

/* client -> stream */
static int pump_up_stream(struct relay *r)
{
	struct relay_dir *d = &r->up;
	int moved = 0;

	for (int reads = 0;;) {
		ssize_t n;

		while (d->len) {
			n = r->ops->send(r->stream, d->buf + d->off, d->len);
			if (n > 0) {
				if ((size_t)n > d->len)
					return -EPROTO; /* a broken plugin, not a crash */
				d->off += (uint32_t)n;
				d->len -= (uint32_t)n;
				d->bytes += (uint64_t)n;
				continue;
			}
			if (n == -EAGAIN) {
				d->blocked = true;
				return moved;
			}
			return n < 0 ? (int)n : -EPROTO;
		}
		d->off = 0;
		d->blocked = false;
		if (d->eof) {
			if (!d->done) {
				int err = r->ops->shutdown(r->stream);

				if (err < 0)
					return err;
				d->done = true;
			}
			return moved;
		}
		if (reads++ == ROUND_READS)
			return moved;
		n = recv(r->cfd, d->buf, d->cap, 0);
		if (n > 0) {
			d->len = (uint32_t)n;
			moved = RELAY_MOVED;
			if ((uint32_t)n < d->cap)
				reads = ROUND_READS;
			continue;
		}
		if (n == 0) {
			d->eof = true;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return moved;
		return -errno;
	}
}

/*
 * stream -> client: one more recv() into the rest of the buffer before the bytes go out. A
 * short answer and the server's FIN usually arrive together (an HTTP response with
 * Connection: close), and knowing the end before sending lets the data and the FIN leave in
 * one segment (MSG_MORE, then shutdown): one packet fewer through the namespace hop and the
 * client's stack per connection. It costs no extra call: the loop would make this recv()
 * right after the send anyway. Only while a whole record still fits (READ_AHEAD_ROOM): a
 * plugin given less room than its next record keeps the rest in a side buffer (a copy more),
 * and a bulk transfer, whose reads fill the buffer, gains nothing here. An error found here
 * waits until the bytes before it are delivered, as it would have without the read ahead. 1
 * when the stream said -EAGAIN (the caller sends and then waits instead of asking again), 0,
 * or -EPROTO from a broken plugin.
 */
static int read_ahead(struct relay *r, struct relay_dir *d)
{
	ssize_t n = r->ops->recv(r->stream, d->buf + d->len, d->cap - d->len);

	if (n > 0) {
		if ((size_t)n > d->cap - d->len)
			return -EPROTO;
		d->len += (uint32_t)n;
	} else if (n == 0) {
		d->eof = true;
	} else if (n == -EAGAIN) {
		return 1;
	} else {
		d->err = (int)n;
	}
	return 0;
}

/* stream -> client */
static int pump_down_stream(struct relay *r)
{
	struct relay_dir *d = &r->down;
	int moved = 0;

	for (int reads = 0, dry = 0;;) {
		ssize_t n;

		while (d->len) {
			/* The end is known (read ahead, below) and the FIN follows at once: held
			 * back, the tail goes out with it in one segment instead of two. */
			n = send(r->cfd, d->buf + d->off, d->len,
				 MSG_NOSIGNAL | (d->eof ? MSG_MORE : 0));
			if (n > 0) {
				d->off += (uint32_t)n;
				d->len -= (uint32_t)n;
				d->bytes += (uint64_t)n;
				if (d->len) {
					d->blocked = true;
					return moved;
				}
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN) {
				d->blocked = true;
				return moved;
			}
			return n < 0 ? -errno : -EIO;
		}
		d->off = 0;
		d->blocked = false;
		if (d->err)
			return d->err; /* found by a read ahead: after the bytes before it */
		if (d->eof) {
			if (!d->done) {
				if (shutdown(r->cfd, SHUT_WR) < 0)
					return -errno;
				d->done = true;
			}
			return moved;
		}
		if (dry)
			return moved; /* the read ahead found the stream empty: it wakes us */
		if (reads++ == ROUND_READS) {
			/* Nothing level-triggered will remind us of what the stream still holds. */
			return moved | RELAY_MORE;
		}
		n = r->ops->recv(r->stream, d->buf, d->cap);
		if (n > 0) {
			if ((size_t)n > d->cap)
				return -EPROTO;
			d->len = (uint32_t)n;
			moved = RELAY_MOVED;
			if (d->cap - d->len >= READ_AHEAD_ROOM && reads < ROUND_READS) {
				reads++;
				dry = read_ahead(r, d);
				if (dry < 0)
					return dry;
			}
			continue;
		}
		if (n == 0) {
			d->eof = true;
			continue;
		}
		if (n == -EAGAIN)
			return moved;
		/* -ECONNRESET and every other fatal error: a truncated stream must not look like
		 * a clean end to the client, so the caller resets it. */
		return (int)n;
	}
}

int relay_run(struct relay *r, unsigned what)
{
	int moved = 0, ret;

	if (r->ops) {
		if ((what & (RELAY_CLIENT_READ | RELAY_SERVER_WRITE)) && !r->up.done) {
			ret = pump_up_stream(r);
			if (ret < 0)
				return ret;
			moved |= ret;
		}
		if ((what & (RELAY_SERVER_READ | RELAY_CLIENT_WRITE)) && !r->down.done) {
			ret = pump_down_stream(r);
			if (ret < 0)
				return ret;
			moved |= ret;
		}
	} else {
		if ((what & (RELAY_CLIENT_READ | RELAY_SERVER_WRITE)) && !r->up.done) {
			ret = pump_fd(r, &r->up, r->cfd, r->sfd);
			if (ret < 0)
				return ret;
			moved |= ret;
		}
		if ((what & (RELAY_SERVER_READ | RELAY_CLIENT_WRITE)) && !r->down.done) {
			ret = pump_fd(r, &r->down, r->sfd, r->cfd);
			if (ret < 0)
				return ret;
			moved |= ret;
		}
	}
	if (r->up.done && r->down.done)
		return moved | RELAY_HALF | RELAY_DONE;
	if (r->up.done || r->down.done)
		return moved | RELAY_HALF;
	return moved;
}

unsigned relay_want(const struct relay *r)
{
	unsigned want = 0;

	if (r->ops) {
		/* The stream side is driven by stream_wake(), not by a watched fd. */
		if (!r->up.eof && !r->up.len)
			want |= RELAY_CLIENT_READ;
		if (r->down.blocked)
			want |= RELAY_CLIENT_WRITE;
		return want;
	}
	if (!r->up.eof && !r->up.blocked)
		want |= RELAY_CLIENT_READ;
	if (r->up.blocked)
		want |= RELAY_SERVER_WRITE;
	if (!r->down.eof && !r->down.blocked)
		want |= RELAY_SERVER_READ;
	if (r->down.blocked)
		want |= RELAY_CLIENT_WRITE;
	return want;
}
