/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * msg.h - DNS message codec for the dns plugin (RFC 1035 wire format, RFC 6891 OPT).
 *
 * The parser validates a whole message in one pass before anything trusts it: header counts
 * against the bytes present, names with compression (pointers only backwards, so no loops),
 * label and name lengths, RDATA of the types the plugin reads (A, AAAA, CNAME, SOA, OPT), and
 * no trailing bytes. Everything else is opaque RDATA, passed through untouched. No allocation,
 * no global state: safe on any thread, and the fuzz target drives it directly.
 */
#ifndef XP_DNS_MSG_H
#define XP_DNS_MSG_H

#include <stddef.h>
#include <stdint.h>

#define DNS_HDR_LEN 12
#define DNS_MAX_NAME 255  /* wire length, length octets and the root label included */
#define DNS_MAX_LABEL 63
#define DNS_MAX_MSG 65535
#define DNS_MAX_RRS 1024  /* records in one message; more is treated as garbage */

#define DNS_T_A 1
#define DNS_T_NS 2
#define DNS_T_CNAME 5
#define DNS_T_SOA 6
#define DNS_T_AAAA 28
#define DNS_T_OPT 41
#define DNS_C_IN 1

#define DNS_F_QR 0x8000
#define DNS_F_TC 0x0200
#define DNS_F_RD 0x0100
#define DNS_F_CD 0x0010
#define DNS_OPCODE(f) (((f) >> 11) & 0xf)
#define DNS_RCODE(f) ((f) & 0xf)
#define DNS_OPT_DO 0x8000 /* in the OPT record's TTL field, low 16 bits */

#define DNS_R_NOERROR 0
#define DNS_R_FORMERR 1
#define DNS_R_SERVFAIL 2
#define DNS_R_NXDOMAIN 3
#define DNS_R_REFUSED 5

/* Why a message was refused (negative return values of dns_parse). */
enum dns_err {
	DNS_E_TRUNC = -1,     /* ends inside the header, a name, a record or before the counts */
	DNS_E_LABEL = -2,     /* label length byte 64..191 (reserved label types) */
	DNS_E_NAMELEN = -3,   /* name longer than 255 octets */
	DNS_E_PTRLOOP = -4,   /* compression pointer to a place already visited */
	DNS_E_PTRFWD = -5,    /* compression pointer forward, into the header, or to record fields */
	DNS_E_COUNT = -6,     /* QDCOUNT other than 1, or more than DNS_MAX_RRS records */
	DNS_E_TRAILING = -7,  /* bytes after the last record */
	DNS_E_RDATA = -8,     /* A/AAAA of the wrong size, CNAME/SOA RDATA not a name + fields */
	DNS_E_OPT = -9,       /* OPT outside the additional section, twice, or not at the root */
	DNS_E_OVERSIZE = -10, /* longer than 65535 octets */
};

struct dns_question {
	uint8_t name[DNS_MAX_NAME]; /* uncompressed wire form, as sent (case kept) */
	uint16_t name_len;
	uint16_t qtype, qclass;
	uint16_t name_off; /* where the question's name starts in the message (12) */
};

struct dns_msg {
	uint16_t id, flags;
	uint16_t qdcount, ancount, nscount, arcount;
	struct dns_question q;
	uint16_t question_end; /* offset of the first byte after the question */
	/* OPT (EDNS0) */
	uint8_t has_opt;
	uint16_t opt_udp; /* requestor's payload size */
	uint32_t opt_ttl; /* extended rcode, version, flags (DO) */
	/* answer facts */
	uint16_t n_addr;	/* A/AAAA (class IN) in the answer section */
	uint16_t n_answer_qtype; /* answer records of the question's type (or CNAME) */
	uint32_t min_answer_ttl; /* over the answer section; UINT32_MAX without answers */
	uint8_t has_soa;	 /* an SOA in the authority section */
	uint32_t soa_ttl, soa_minimum;
};

/* One record as dns_parse walks it. */
struct dns_rr {
	uint8_t section; /* 1 answer, 2 authority, 3 additional */
	uint16_t type, rclass;
	uint32_t ttl;
	uint16_t ttl_off; /* offset of the TTL field in the message */
	uint16_t rdlen;
	uint16_t rdata_off;
	uint16_t name_off;
};

/* Called for every record after it validated; a non-zero return stops the walk and is
 * returned by dns_parse. */
typedef int (*dns_rr_cb)(const uint8_t *msg, size_t len, const struct dns_rr *rr, void *arg);

/* Validate `msg` and fill `m` (any of m, cb may be NULL). 0 or an enum dns_err. Exactly one
 * question is required (every query and answer the plugin handles has one). */
int dns_parse(const uint8_t *msg, size_t len, struct dns_msg *m, dns_rr_cb cb, void *arg);

/* Read the (possibly compressed) name at `off` into uncompressed wire form `out`
 * (DNS_MAX_NAME bytes). Returns its length (>= 1) and sets *next to the offset after the name
 * as stored at `off`, or an enum dns_err. */
int dns_name_read(const uint8_t *msg, size_t len, size_t off, uint8_t *out, size_t *next);

/* A wire-form name as text, lower-cased, without the final dot ("." for the root); bytes other
 * than [A-Za-z0-9_-] become \DDD and dots inside labels \. . Returns the text length or -1 when
 * `cap` is too small (1024 always fits). */
int dns_name_text(const uint8_t *name, size_t name_len, char *out, size_t cap);

/* Case-insensitive (ASCII only, RFC 4343) equality of two wire-form names. */
int dns_name_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* Rewrite every TTL (all sections, OPT excluded) in a validated message to
 * max(ttl - elapsed_s, 0). 0 or an enum dns_err. */
int dns_age(uint8_t *msg, size_t len, uint32_t elapsed_s);

/* The DO bit of the message's OPT record (0 without OPT). */
static inline int dns_do_bit(const struct dns_msg *m)
{
	return m->has_opt && (m->opt_ttl & DNS_OPT_DO);
}

/* The question of `a` equals the one of `b`: name (case-insensitively), type and class. */
int dns_question_match(const struct dns_question *a, const struct dns_question *b);

/* Write a header-only answer to `query` (its id, RD, question and OPT dropped) with `rcode`
 * into out (at least DNS_HDR_LEN + DNS_MAX_NAME + 4 bytes). Returns the length. */
size_t dns_make_error(const struct dns_msg *query, int rcode, uint8_t *out);

const char *dns_strerror(int err);

static inline uint16_t dns_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t dns_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void dns_put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static inline void dns_put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

#endif
