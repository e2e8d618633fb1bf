/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ss_drain.h - the shadowsocks fuzzers' way of feeding a server stream to an ss_reader: the
 * input arrives `step` bytes at a time, output buffers are `cap` bytes (grown to the chunk's
 * size when the reader asks for room), and every contract of ss_reader_feed is checked as it
 * goes (abort() on a breach). Returns the plaintext released; *err gets the error the stream
 * ended with (0 when it ended cleanly for lack of input), which must be one `allowed` accepts.
 */
#ifndef XP_FUZZ_SS_DRAIN_H
#define XP_FUZZ_SS_DRAIN_H

#include <errno.h>
#include <stdlib.h>

#include "../../plugins/outbound/shadowsocks/ss_aead.h"

static size_t ss_drain(struct ss_reader *r, const uint8_t *in, size_t len, size_t step,
		       size_t cap, size_t max_payload, uint8_t *out, size_t out_cap,
		       ssize_t *err, int (*allowed)(ssize_t))
{
	size_t off = 0, avail = 0, got = 0;

	*err = 0;
	for (;;) {
		size_t used = 0, room = out_cap - got < cap ? out_cap - got : cap;
		ssize_t n = ss_reader_feed(r, in + off, avail - off, &used, out + got, room);

		if (n == -ENOBUFS) {
			if (room >= ss_reader_want(r))
				abort(); /* asked for more room than the chunk needs */
			cap = max_payload;
			continue;
		}
		if (n == -EAGAIN) {
			if (used)
				abort();
			if (avail == len)
				return got;
			avail = avail + step > len ? len : avail + step;
			continue;
		}
		if (n < 0) {
			if (!allowed(n))
				abort();
			*err = n;
			return got;
		}
		if ((size_t)n > room || used > avail - off)
			abort();
		off += used;
		got += (size_t)n;
	}
}

#endif /* XP_FUZZ_SS_DRAIN_H */
