/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * addr - socket addresses <-> the 16-byte form the datapath keys on (IPv4 as IPv4-mapped
 * IPv6). In xpbase, so every layer (names, host table, daemon) converts the same way.
 */
#ifndef XP_ADDR_H
#define XP_ADDR_H

#include <stdint.h>

#include <xproxy/plugin.h>

/* 0, or -EAFNOSUPPORT for a family other than AF_INET / AF_INET6. `port` may be NULL. */
int addr16_from(uint8_t out[16], uint16_t *port, const union xp_sockaddr *sa);
/* AF_INET for IPv4-mapped addresses, AF_INET6 otherwise. */
void addr16_to_sockaddr(union xp_sockaddr *sa, const uint8_t addr[16], uint16_t port);
/* An IPv4-mapped AF_INET6 address (what a dual-stack socket reports) becomes AF_INET, in place;
 * anything else is left alone. */
void addr_unmap_v4(union xp_sockaddr *a);

#endif
