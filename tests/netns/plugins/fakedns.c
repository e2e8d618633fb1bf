/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fakedns.c - a test DNS plugin (scaffolding for tests/netns/e2e_dnsroute.sh, not the real
 * resolver): it answers A and AAAA questions for the names in its configuration with fixed
 * addresses, NXDOMAIN for any other name, and tells the core every address it hands out
 * (host->dns_learn) before the answer leaves, as a real DNS plugin must.
 *
 *   [dns]
 *   plugin = fakedns
 *   answer = www.example.test 192.0.2.1     ; repeatable (an XP_OPT_LIST)
 *   answer = www.example.test 2001:db8::1
 *   ttl = 30s
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include <xproxy/plugin.h>

#define MAX_ANSWERS 64

struct fake_cfg {
	const char *const *answer;
	uint64_t ttl_ms;
};

struct entry {
	char name[256];
	union xp_sockaddr addr;
};

struct fake {
	const struct xp_host *host;
	xp_handle_t *self;
	uint32_t ttl_ms;
	struct entry e[MAX_ANSWERS];
	size_t n;
};

static int inst_new(void *state, const struct xp_host *host, xp_handle_t *self,
		    const void *config, void **inst)
{
	const struct fake_cfg *c = config;
	struct fake *f;

	if (host->abi_minor < 1)
		return -ENOTSUP; /* dns_learn and dns_answer are ABI 1.1 */
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->host = host;
	f->self = self;
	f->ttl_ms = c->ttl_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)c->ttl_ms;
	for (size_t i = 0; c->answer[i]; i++) {
		char name[256], ip[64];
		struct entry *e;

		if (f->n == MAX_ANSWERS ||
		    sscanf(c->answer[i], "%255s %63s", name, ip) != 2)
			goto bad;
		e = &f->e[f->n];
		for (size_t j = 0; name[j]; j++)
			name[j] = (char)tolower((unsigned char)name[j]);
		snprintf(e->name, sizeof(e->name), "%s", name);
		if (inet_pton(AF_INET, ip, &e->addr.in.sin_addr) == 1)
			e->addr.in.sin_family = AF_INET;
		else if (inet_pton(AF_INET6, ip, &e->addr.in6.sin6_addr) == 1)
			e->addr.in6.sin6_family = AF_INET6;
		else
			goto bad;
		f->n++;
		continue;
bad:
		host->log(self, XP_LOG_ERROR, "answer '%s': want 'NAME ADDRESS' (at most %d)",
			  c->answer[i], MAX_ANSWERS);
		free(f);
		return -EINVAL;
	}
	*inst = f;
	return 0;
}

static void inst_free(void *inst)
{
	free(inst);
}

/* The question's name as text (lower case); the offset past QNAME, or 0 when malformed. */
static size_t read_qname(const uint8_t *m, size_t len, size_t off, char *out, size_t outlen)
{
	size_t o = 0;

	for (;;) {
		uint8_t l;

		if (off >= len)
			return 0;
		l = m[off++];
		if (l == 0)
			break;
		if (l > 63 || off + l > len || o + l + 2 > outlen)
			return 0; /* compression or oversize: not in a question we answer */
		if (o)
			out[o++] = '.';
		for (uint8_t i = 0; i < l; i++)
			out[o++] = (char)tolower(m[off + i]);
		off += l;
	}
	out[o] = '\0';
	return o ? off : 0;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static int query(void *inst, xp_dns_query_t *q, const uint8_t *msg, size_t len)
{
	struct fake *f = inst;
	uint8_t out[1024];
	char name[256];
	size_t qend, o;
	uint16_t qtype, qclass, ancount = 0;
	int found_name = 0;

	if (len < 12 || (msg[2] & 0x80) || msg[4] != 0 || msg[5] != 1) {
		f->host->dns_drop(q, "not a query with one question");
		return 0;
	}
	qend = read_qname(msg, len, 12, name, sizeof(name));
	if (!qend || qend + 4 > len || qend + 4 > sizeof(out)) {
		f->host->dns_drop(q, "malformed question");
		return 0;
	}
	qtype = (uint16_t)(msg[qend] << 8 | msg[qend + 1]);
	qclass = (uint16_t)(msg[qend + 2] << 8 | msg[qend + 3]);
	qend += 4;
	/* header: same id, QR, opcode and RD copied, RA */
	memcpy(out, msg, qend);
	out[2] = (uint8_t)(0x80 | (msg[2] & 0x79));
	out[3] = 0x80;
	put16(out + 6, 0);
	put16(out + 8, 0);
	put16(out + 10, 0);
	o = qend;
	for (size_t i = 0; i < f->n; i++) {
		const struct entry *e = &f->e[i];
		int fam = e->addr.sa.sa_family;
		size_t rdlen = fam == AF_INET ? 4 : 16;

		if (strcmp(e->name, name))
			continue;
		found_name = 1;
		if (qclass != 1 || (qtype == 1) != (fam == AF_INET) || (qtype != 1 && qtype != 28))
			continue;
		if (o + 12 + rdlen > sizeof(out))
			break;
		/* Before the answer leaves: the client's first packet to the address is already
		 * decided in the kernel. */
		f->host->dns_learn(f->self, name, &e->addr, f->ttl_ms);
		put16(out + o, 0xc00c); /* the question's name */
		put16(out + o + 2, qtype);
		put16(out + o + 4, 1);
		put16(out + o + 6, (uint16_t)(f->ttl_ms / 1000 >> 16));
		put16(out + o + 8, (uint16_t)(f->ttl_ms / 1000));
		put16(out + o + 10, (uint16_t)rdlen);
		memcpy(out + o + 12, fam == AF_INET ? (const void *)&e->addr.in.sin_addr
						    : (const void *)&e->addr.in6.sin6_addr,
		       rdlen);
		o += 12 + rdlen;
		ancount++;
	}
	if (!found_name)
		out[3] |= 3; /* NXDOMAIN */
	put16(out + 6, ancount);
	f->host->dns_answer(q, out, o);
	return 0;
}

static void cancel(void *inst, xp_dns_query_t *q)
{
	/* Every query is answered inside query(): nothing is ever pending. */
}

static const struct xp_dns_ops dns_ops = {
	.size = sizeof(dns_ops),
	.query = query,
	.cancel = cancel,
};

static const struct xp_option options[] = {
	XP_OPT(struct fake_cfg, answer, "answer", XP_OPT_LIST, NULL, 0,
	       "NAME ADDRESS: answer A or AAAA for NAME with ADDRESS (repeat the key)"),
	XP_OPT(struct fake_cfg, ttl_ms, "ttl", XP_OPT_DURATION, "60s", 0, "TTL of every answer"),
	XP_OPTION_END,
};

static const struct xp_plugin_desc desc = {
	.size = sizeof(desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "fakedns",
	.version = "1",
	.summary = "test plugin: fixed A/AAAA answers, learned before they leave",
	.kinds = XP_KIND_DNS,
	.option_size = sizeof(struct xp_option),
	.options = options,
	.config_size = sizeof(struct fake_cfg),
	.instance_new = inst_new,
	.instance_free = inst_free,
	.dns = &dns_ops,
};

const struct xp_plugin_desc *xp_plugin_query(uint32_t host_abi)
{
	return &desc;
}
