/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dns_build.h - build DNS messages byte by byte for the dns plugin's tests (a tiny writer,
 * independent of the codec under test, so a codec bug cannot hide behind itself).
 */
#ifndef XP_TEST_DNS_BUILD_H
#define XP_TEST_DNS_BUILD_H

#include <stdint.h>
#include <string.h>

struct mb {
	uint8_t b[4096];
	size_t n;
};

static inline void mb_u8(struct mb *m, uint8_t v)
{
	m->b[m->n++] = v;
}

static inline void mb_u16(struct mb *m, uint16_t v)
{
	mb_u8(m, v >> 8);
	mb_u8(m, v & 0xff);
}

static inline void mb_u32(struct mb *m, uint32_t v)
{
	mb_u16(m, v >> 16);
	mb_u16(m, v & 0xffff);
}

static inline void mb_bytes(struct mb *m, const void *p, size_t n)
{
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

/* "www.example.com" -> uncompressed labels + root */
static inline void mb_name(struct mb *m, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		mb_u8(m, (uint8_t)l);
		mb_bytes(m, name, l);
		name += l + (dot ? 1 : 0);
	}
	mb_u8(m, 0);
}

static inline void mb_hdr(struct mb *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
			  uint16_t ns, uint16_t ar)
{
	m->n = 0;
	mb_u16(m, id);
	mb_u16(m, flags);
	mb_u16(m, qd);
	mb_u16(m, an);
	mb_u16(m, ns);
	mb_u16(m, ar);
}

static inline void mb_question(struct mb *m, const char *name, uint16_t type)
{
	mb_name(m, name);
	mb_u16(m, type);
	mb_u16(m, 1);
}

/* A record whose owner is a pointer to offset 12 (the question name). */
static inline void mb_rr_ptr(struct mb *m, uint16_t type, uint32_t ttl, const void *rdata,
			     uint16_t rdlen)
{
	mb_u16(m, 0xc00c);
	mb_u16(m, type);
	mb_u16(m, 1);
	mb_u32(m, ttl);
	mb_u16(m, rdlen);
	mb_bytes(m, rdata, rdlen);
}

static inline void mb_opt(struct mb *m, uint16_t udp, uint32_t ttl)
{
	mb_u8(m, 0);
	mb_u16(m, 41);
	mb_u16(m, udp);
	mb_u32(m, ttl);
	mb_u16(m, 0);
}

/* SOA owned by the question name: mname/rname root, serial..minimum */
static inline void mb_soa(struct mb *m, uint32_t ttl, uint32_t minimum)
{
	mb_u16(m, 0xc00c);
	mb_u16(m, 6);
	mb_u16(m, 1);
	mb_u32(m, ttl);
	mb_u16(m, 2 + 20);
	mb_u8(m, 0);
	mb_u8(m, 0);
	mb_u32(m, 1);
	mb_u32(m, 3600);
	mb_u32(m, 600);
	mb_u32(m, 86400);
	mb_u32(m, minimum);
}

/* query for name/type with id (RD set), optional OPT with DO */
static inline void mb_query(struct mb *m, uint16_t id, const char *name, uint16_t type,
			    int opt, int do_bit)
{
	mb_hdr(m, id, 0x0100, 1, 0, 0, opt ? 1 : 0);
	mb_question(m, name, type);
	if (opt)
		mb_opt(m, 1232, do_bit ? 0x8000 : 0);
}

/* answer: one A (4 bytes) with ttl */
static inline void mb_answer_a(struct mb *m, uint16_t id, const char *name, const uint8_t ip[4],
			       uint32_t ttl)
{
	mb_hdr(m, id, 0x8180, 1, 1, 0, 0);
	mb_question(m, name, 1);
	mb_rr_ptr(m, 1, ttl, ip, 4);
}

#endif
