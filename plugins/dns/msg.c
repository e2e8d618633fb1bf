/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * msg.c - DNS message validation, names, TTL ageing.
 *
 * Compression pointers must point strictly backwards (RFC 1035 only ever needs that, and
 * servers only produce that): every hop then lowers the offset, so a chain ends after at most
 * len/2 hops and no loop is possible. A pointer to a place this name already visited is
 * reported as a loop, any other non-backward pointer as forward, so tests and counters can
 * tell them apart.
 */
#include <errno.h>
#include <string.h>

#include "msg.h"

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 1 when any byte of [a, b) is marked in the bitmap (NULL: none is) */
static int marked(const uint8_t *bits, size_t a, size_t b)
{
	for (; bits && a < b; a++)
		if (bits[a >> 3] & (1u << (a & 7)))
			return 1;
	return 0;
}

static void mark(uint8_t *bits, size_t a, size_t b)
{
	for (; a < b; a++)
		bits[a >> 3] |= (uint8_t)(1u << (a & 7));
}

/* forbid: the bytes a name reached through a pointer may not touch (dns_parse marks the
 * fixed fields of what it parsed: a name made of a record's TTL would change when the TTL is
 * aged); NULL: no such check */
static int name_read(const uint8_t *msg, size_t len, size_t off, uint8_t *out, size_t *next,
		     const uint8_t *forbid)
{
	size_t pos = off, n = 0, visited[DNS_MAX_NAME], bound = len;
	int hops = 0, jumped = 0, i;

	/* bound: after a jump, what is read must lie before the pointer that jumped (a pointer
	 * names an earlier occurrence); else a name could run on past its pointer into later
	 * records, and rewriting those (ageing their TTLs) would change it */
	for (;;) {
		uint8_t l;

		if (pos >= bound)
			return jumped ? DNS_E_PTRFWD : DNS_E_TRUNC;
		l = msg[pos];
		if ((l & 0xc0) == 0xc0) {
			size_t target;

			if (pos + 1 >= bound)
				return jumped ? DNS_E_PTRFWD : DNS_E_TRUNC;
			if (jumped && marked(forbid, pos, pos + 2))
				return DNS_E_PTRFWD;
			target = (size_t)(l & 0x3f) << 8 | msg[pos + 1];
			for (i = 0; i < hops; i++)
				if (visited[i] == target)
					return DNS_E_PTRLOOP;
			if (target == pos)
				return DNS_E_PTRLOOP;
			if (target >= pos || target < DNS_HDR_LEN)
				return DNS_E_PTRFWD;
			if (hops == DNS_MAX_NAME)
				return DNS_E_PTRLOOP; /* unreachable: offsets strictly decrease */
			visited[hops++] = pos;
			if (!jumped) {
				*next = pos + 2;
				jumped = 1;
			}
			bound = pos;
			pos = target;
			continue;
		}
		if (l & 0xc0)
			return DNS_E_LABEL;
		if (n + 1 + l > DNS_MAX_NAME)
			return DNS_E_NAMELEN;
		if (pos + 1 + l > bound)
			return jumped ? DNS_E_PTRFWD : DNS_E_TRUNC;
		if (jumped && marked(forbid, pos, pos + 1 + l))
			return DNS_E_PTRFWD;
		memcpy(out + n, msg + pos, 1 + l);
		n += 1 + l;
		pos += 1 + l;
		if (!l)
			break;
	}
	if (!jumped)
		*next = pos;
	return (int)n;
}

int dns_name_read(const uint8_t *msg, size_t len, size_t off, uint8_t *out, size_t *next)
{
	return name_read(msg, len, off, out, next, NULL);
}

int dns_name_text(const uint8_t *name, size_t name_len, char *out, size_t cap)
{
	size_t i = 0, o = 0;

	if (name_len <= 1) {
		if (cap < 2)
			return -1;
		strcpy(out, ".");
		return 1;
	}
	while (i < name_len && name[i]) {
		uint8_t l = name[i++], j;

		if (o && o + 1 < cap)
			out[o++] = '.';
		for (j = 0; j < l && i < name_len; j++, i++) {
			uint8_t c = lower(name[i]);

			if (o + 5 >= cap)
				return -1;
			if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
				out[o++] = c;
			} else if (c == '.' || c == '\\') {
				out[o++] = '\\';
				out[o++] = c;
			} else {
				out[o++] = '\\';
				out[o++] = '0' + c / 100;
				out[o++] = '0' + c / 10 % 10;
				out[o++] = '0' + c % 10;
			}
		}
	}
	if (o >= cap)
		return -1;
	out[o] = 0;
	return (int)o;
}

int dns_name_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t i;

	if (alen != blen)
		return 0;
	for (i = 0; i < alen; i++)
		if (lower(a[i]) != lower(b[i]))
			return 0;
	return 1;
}

int dns_question_match(const struct dns_question *a, const struct dns_question *b)
{
	return a->qtype == b->qtype && a->qclass == b->qclass &&
	       dns_name_equal(a->name, a->name_len, b->name, b->name_len);
}

/* A name inside RDATA must end exactly where the record says (for CNAME) or leave room. */
static int rdata_name(const uint8_t *msg, size_t len, size_t off, size_t end, size_t *next,
		      const uint8_t *forbid)
{
	uint8_t tmp[DNS_MAX_NAME];
	int rc = name_read(msg, end, off, tmp, next, forbid);

	(void)len;
	if (rc == DNS_E_TRUNC)
		return DNS_E_RDATA;
	return rc < 0 ? rc : 0;
}

static int check_rdata(const uint8_t *msg, size_t len, const struct dns_rr *rr,
		       struct dns_msg *m, const uint8_t *forbid)
{
	size_t end = (size_t)rr->rdata_off + rr->rdlen, next;
	int rc;

	switch (rr->type) {
	case DNS_T_A:
		if (rr->rclass == DNS_C_IN && rr->rdlen != 4)
			return DNS_E_RDATA;
		break;
	case DNS_T_AAAA:
		if (rr->rclass == DNS_C_IN && rr->rdlen != 16)
			return DNS_E_RDATA;
		break;
	case DNS_T_CNAME:
		rc = rdata_name(msg, len, rr->rdata_off, end, &next, forbid);
		if (rc)
			return rc;
		if (next != end)
			return DNS_E_RDATA;
		break;
	case DNS_T_SOA:
		rc = rdata_name(msg, len, rr->rdata_off, end, &next, forbid); /* MNAME */
		if (!rc)
			rc = rdata_name(msg, len, next, end, &next, forbid); /* RNAME */
		if (rc)
			return rc;
		if (next + 20 != end)
			return DNS_E_RDATA;
		if (rr->section == 2 && m) {
			uint32_t minimum = dns_get32(msg + next + 16);

			if (!m->has_soa || rr->ttl < m->soa_ttl)
				m->soa_ttl = rr->ttl;
			if (!m->has_soa || minimum < m->soa_minimum)
				m->soa_minimum = minimum;
			m->has_soa = 1;
		}
		break;
	case DNS_T_OPT:
		if (rr->section != 3 || msg[rr->name_off] != 0 || (m && m->has_opt))
			return DNS_E_OPT;
		if (m) {
			m->has_opt = 1;
			m->opt_udp = rr->rclass;
			m->opt_ttl = rr->ttl;
		}
		break;
	}
	return 0;
}

int dns_parse(const uint8_t *msg, size_t len, struct dns_msg *m, dns_rr_cb cb, void *arg)
{
	struct dns_msg local;
	uint8_t name[DNS_MAX_NAME], forbid[DNS_MAX_MSG / 8 + 1];
	size_t pos, next;
	unsigned total, i;
	int rc;

	if (!m)
		m = &local;
	memset(m, 0, sizeof(*m));
	m->min_answer_ttl = UINT32_MAX;
	if (len > DNS_MAX_MSG)
		return DNS_E_OVERSIZE;
	if (len < DNS_HDR_LEN)
		return DNS_E_TRUNC;
	m->id = dns_get16(msg);
	m->flags = dns_get16(msg + 2);
	m->qdcount = dns_get16(msg + 4);
	m->ancount = dns_get16(msg + 6);
	m->nscount = dns_get16(msg + 8);
	m->arcount = dns_get16(msg + 10);
	if (m->qdcount != 1)
		return DNS_E_COUNT;
	total = (unsigned)m->ancount + m->nscount + m->arcount;
	if (total > DNS_MAX_RRS)
		return DNS_E_COUNT;
	/* every record takes at least 11 octets: counts the bytes cannot hold are truncation */
	if ((size_t)total * 11 > len - DNS_HDR_LEN)
		return DNS_E_TRUNC;
	memset(forbid, 0, (len + 7) / 8);

	rc = name_read(msg, len, DNS_HDR_LEN, m->q.name, &next, forbid);
	if (rc < 0)
		return rc;
	m->q.name_len = (uint16_t)rc;
	m->q.name_off = DNS_HDR_LEN;
	if (next + 4 > len)
		return DNS_E_TRUNC;
	m->q.qtype = dns_get16(msg + next);
	m->q.qclass = dns_get16(msg + next + 2);
	mark(forbid, next, next + 4);
	pos = next + 4;
	m->question_end = (uint16_t)pos;

	for (i = 0; i < total; i++) {
		struct dns_rr rr = { 0 };

		rr.section = i < m->ancount ? 1 : i < (unsigned)m->ancount + m->nscount ? 2 : 3;
		rr.name_off = (uint16_t)pos;
		rc = name_read(msg, len, pos, name, &next, forbid);
		if (rc < 0)
			return rc;
		if (next + 10 > len)
			return DNS_E_TRUNC;
		mark(forbid, next, next + 10); /* type, class, TTL, RDLENGTH */
		rr.type = dns_get16(msg + next);
		rr.rclass = dns_get16(msg + next + 2);
		rr.ttl_off = (uint16_t)(next + 4);
		rr.ttl = dns_get32(msg + next + 4);
		rr.rdlen = dns_get16(msg + next + 8);
		rr.rdata_off = (uint16_t)(next + 10);
		if ((size_t)rr.rdata_off + rr.rdlen > len)
			return DNS_E_TRUNC;
		/* RFC 2181 8: a TTL with the top bit set is treated as zero */
		if (rr.type != DNS_T_OPT && rr.ttl > 0x7fffffffu)
			rr.ttl = 0;
		rc = check_rdata(msg, len, &rr, m, forbid);
		if (rc)
			return rc;
		if (rr.section == 1) {
			if (rr.ttl < m->min_answer_ttl)
				m->min_answer_ttl = rr.ttl;
			if (rr.rclass == DNS_C_IN && (rr.type == DNS_T_A || rr.type == DNS_T_AAAA))
				m->n_addr++;
			if (rr.type == m->q.qtype || rr.type == DNS_T_CNAME)
				m->n_answer_qtype++;
		}
		pos = (size_t)rr.rdata_off + rr.rdlen;
		if (cb) {
			rc = cb(msg, len, &rr, arg);
			if (rc)
				return rc;
		}
	}
	if (pos != len)
		return DNS_E_TRAILING;
	return 0;
}

static int age_cb(const uint8_t *msg, size_t len, const struct dns_rr *rr, void *arg)
{
	uint32_t elapsed = *(const uint32_t *)arg;
	uint8_t *p = (uint8_t *)msg + rr->ttl_off; /* the caller's buffer is writable */

	if (rr->type == DNS_T_OPT)
		return 0;
	dns_put32(p, rr->ttl > elapsed ? rr->ttl - elapsed : 0);
	return 0;
}

int dns_age(uint8_t *msg, size_t len, uint32_t elapsed_s)
{
	return dns_parse(msg, len, NULL, age_cb, &elapsed_s);
}

size_t dns_make_error(const struct dns_msg *query, int rcode, uint8_t *out)
{
	size_t n = DNS_HDR_LEN;

	dns_put16(out, query->id);
	/* QR, the query's opcode and RD, RA set: we are a recursive resolver to the client */
	dns_put16(out + 2, DNS_F_QR | (query->flags & 0x7900) | 0x0080 | (rcode & 0xf));
	dns_put16(out + 4, 1);
	memset(out + 6, 0, 6);
	memcpy(out + n, query->q.name, query->q.name_len);
	n += query->q.name_len;
	dns_put16(out + n, query->q.qtype);
	dns_put16(out + n + 2, query->q.qclass);
	return n + 4;
}

const char *dns_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case DNS_E_TRUNC:
		return "truncated message";
	case DNS_E_LABEL:
		return "bad label length";
	case DNS_E_NAMELEN:
		return "name longer than 255 octets";
	case DNS_E_PTRLOOP:
		return "compression pointer loop";
	case DNS_E_PTRFWD:
		return "compression pointer forward, or to bytes that are not a name";
	case DNS_E_COUNT:
		return "bad record counts";
	case DNS_E_TRAILING:
		return "trailing bytes";
	case DNS_E_RDATA:
		return "bad record data";
	case DNS_E_OPT:
		return "misplaced or repeated OPT record";
	case DNS_E_OVERSIZE:
		return "message longer than 65535 octets";
	}
	return "unknown error";
}
