/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fuzz_trojan - the trojan UDP frame parser over a stream of back-to-back frames: every result
 * stays inside the input, a frame that parses re-encodes to the same header bytes (names
 * that are not plain host names excepted: the encoder never sends those), an
 * incomplete frame stays incomplete for every shorter prefix (no frame parses from less input
 * than it claims).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/outbound/trojan/trojan_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		union xp_sockaddr from;
		char name[256];
		const uint8_t *payload;
		uint8_t hdr[TROJAN_UDP_HDR_MAX];
		size_t plen;
		ssize_t n = trojan_udp_parse(data + off, size - off, &from, name, &payload, &plen);
		ssize_t hl;

		if (n == -EAGAIN || n == -EINVAL)
			return 0;
		if (n <= 0 || (size_t)n > size - off)
			abort();
		if (payload < data + off || payload + plen != data + off + n)
			abort();
		hl = trojan_udp_header(&from, from.sa.sa_family == AF_UNSPEC ? name : NULL, plen,
				       hdr);
		/* a name that is not a plain host name is never sent (the encoder would use the
		 * address, which a name frame does not have) */
		if (hl == -EINVAL && from.sa.sa_family == AF_UNSPEC &&
		    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
			    strlen(name)) {
			off += (size_t)n;
			continue;
		}
		if (hl < 0 || (size_t)hl != (size_t)(payload - (data + off)) ||
		    memcmp(hdr, data + off, (size_t)hl))
			abort();
		/* one byte less is never a whole frame */
		if (trojan_udp_parse(data + off, (size_t)n - 1, &from, name, &payload, &plen) !=
		    -EAGAIN)
			abort();
		off += (size_t)n;
	}
	return 0;
}
