/* SPDX-License-Identifier: GPL-2.0-only */
/* quic - the sniff entry point, visible to the unit tests, the fuzzer and the benchmark. */
#ifndef XP_SNIFF_QUIC_H
#define XP_SNIFF_QUIC_H

#include <stdint.h>

#include <xproxy/plugin.h>

/* Datagram bytes looked at, at most (xp_sniffer_ops.max_bytes): the CRYPTO stream bound. */
#define QUIC_SNIFF_MAX_BYTES 65536

/* The sniff function over `count` datagrams: XP_SNIFF_FOUND (out filled), _MORE, _NOT_MINE,
 * or -errno (treated as NOT_MINE). Pure: the same datagrams give the same answer. */
int quic_sniff_parts(const struct xp_bytes *parts, uint32_t count, struct xp_sniff_result *out);

#endif
