/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * pkt.h - craft test packets for BPF_PROG_TEST_RUN (tests/bpf and bench/bpf).
 *
 *   struct pkt_spec s = PKT_TCP4("192.0.2.1", 40000, "198.51.100.7", 443, TH_SYN);
 *   struct pkt p;
 *   pkt_build(&s, &p);          p.b / p.len: the frame; p.l3off / p.l4off: where things are
 *   pkt_tuple(&s, &t);          the client -> server struct xp_tuple of the packet
 *
 * Frames are Ethernet (optionally with one 802.1Q tag) or bare IP (spec.l3). IPv4 can carry
 * options, IPv6 a chain of extension headers; either can be a first or later fragment.
 * Header checksums are valid (IPv4 header, TCP/UDP/ICMP over the pseudo header).
 */
#ifndef XP_TEST_PKT_H
#define XP_TEST_PKT_H

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include <xproxy/bpf_abi.h>

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

#define PKT_MAX 1600

static const uint8_t pkt_mac_client[6] = {0x02, 0xc1, 0x1e, 0x47, 0x00, 0x01};
static const uint8_t pkt_mac_router[6] = {0x02, 0x70, 0x07, 0xe7, 0x00, 0x01};

struct pkt_spec {
	int v6;
	int l3;		    /* no link-layer header */
	int vlan;	    /* one 802.1Q tag (VLAN 42) in the data */
	uint16_t ethertype; /* non-zero: a non-IP frame of this type (ARP: 0x0806) */
	uint8_t proto;	    /* IPPROTO_* */
	const char *src, *dst;
	uint16_t sport, dport;
	uint8_t tcp_flags;
	uint32_t seq;
	uint8_t icmp_type;
	size_t payload;
	int ip4_optlen;	 /* IPv4 options, multiple of 4, <= 40 */
	int n_ext;	 /* IPv6 extension headers before the L4 header */
	uint8_t ext[12]; /* their types: 0 hop-by-hop, 43 routing, 60 dest opts, 51 AH */
	int ext_len8;	 /* extra 8-byte units in each hop-by-hop/routing/dest-opts header */
	int frag;	 /* 0 none, 1 first fragment (MF, offset 0), 2 later fragment */
	uint32_t frag_id;
	uint16_t frag_off8; /* later fragment: offset in 8-byte units */
	int frag_more;	    /* later fragment: MF (IPv6: M) set, a middle fragment */
	int v6_atomic_frag; /* IPv6 fragment header with offset 0 and no M flag */
};

struct pkt {
	uint8_t b[PKT_MAX];
	size_t len;
	size_t l3off, l4off;
};

#define PKT_TCP4(s, sp, d, dp, fl)                                                                 \
	((struct pkt_spec){.proto = 6,                                                             \
			   .src = (s),                                                             \
			   .sport = (sp),                                                          \
			   .dst = (d),                                                             \
			   .dport = (dp),                                                          \
			   .tcp_flags = (fl),                                                      \
			   .seq = 1000})
#define PKT_TCP6(s, sp, d, dp, fl)                                                                 \
	((struct pkt_spec){.v6 = 1,                                                                \
			   .proto = 6,                                                             \
			   .src = (s),                                                             \
			   .sport = (sp),                                                          \
			   .dst = (d),                                                             \
			   .dport = (dp),                                                          \
			   .tcp_flags = (fl),                                                      \
			   .seq = 1000})
#define PKT_UDP4(s, sp, d, dp)                                                                     \
	((struct pkt_spec){                                                                        \
		.proto = 17, .src = (s), .sport = (sp), .dst = (d), .dport = (dp), .payload = 32})
#define PKT_UDP6(s, sp, d, dp)                                                                     \
	((struct pkt_spec){.v6 = 1,                                                                \
			   .proto = 17,                                                            \
			   .src = (s),                                                             \
			   .sport = (sp),                                                          \
			   .dst = (d),                                                             \
			   .dport = (dp),                                                          \
			   .payload = 32})

static inline void pkt_put16(uint8_t *b, uint16_t v)
{
	b[0] = v >> 8;
	b[1] = v & 0xff;
}

static inline void pkt_put32(uint8_t *b, uint32_t v)
{
	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
}

static inline uint32_t pkt_csum_add(uint32_t sum, const uint8_t *b, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)b[i] << 8 | b[i + 1];
	if (len & 1)
		sum += (uint32_t)b[len - 1] << 8;
	return sum;
}

static inline uint16_t pkt_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

/* 16-byte address: IPv6 as is, IPv4 as ::ffff:a.b.c.d. */
static inline void pkt_addr16(const char *s, int v6, uint8_t out[16])
{
	memset(out, 0, 16);
	if (v6) {
		inet_pton(AF_INET6, s, out);
	} else {
		out[10] = 0xff;
		out[11] = 0xff;
		inet_pton(AF_INET, s, out + 12);
	}
}

static inline void pkt_tuple(const struct pkt_spec *s, struct xp_tuple *t)
{
	memset(t, 0, sizeof(*t));
	pkt_addr16(s->src, s->v6, t->saddr);
	pkt_addr16(s->dst, s->v6, t->daddr);
	t->l4proto = s->proto;
	if (s->proto == 6 || s->proto == 17) {
		t->sport = s->sport;
		t->dport = s->dport;
	}
}

/* L4 header length of a first/unfragmented packet. */
static inline size_t pkt_l4hdr_len(uint8_t proto)
{
	switch (proto) {
	case 6:
		return 20;
	case 17:
	case 1:
	case 58:
		return 8;
	default:
		return 0;
	}
}

static inline void pkt_build(const struct pkt_spec *s, struct pkt *p)
{
	uint8_t src[16], dst[16], *l3, *l4;
	size_t off = 0, l4len, iphl, ext_total = 0, i;
	int later = s->frag == 2;
	uint8_t first_nh;

	memset(p, 0, sizeof(*p));
	if (!s->l3) {
		memcpy(p->b, pkt_mac_router, 6);
		memcpy(p->b + 6, pkt_mac_client, 6);
		off = 12;
		if (s->vlan) {
			pkt_put16(p->b + off, 0x8100);
			pkt_put16(p->b + off + 2, 42);
			off += 4;
		}
		pkt_put16(p->b + off, s->ethertype ? s->ethertype : s->v6 ? 0x86dd : 0x0800);
		off += 2;
	}
	p->l3off = off;
	if (s->ethertype) { /* a non-IP frame: some opaque bytes */
		for (i = 0; i < 28; i++)
			p->b[off + i] = (uint8_t)(0xa0 + i);
		p->len = off + 28;
		return;
	}

	l4len = (later ? 0 : pkt_l4hdr_len(s->proto)) + s->payload;
	l3 = p->b + off;
	if (!s->v6) {
		iphl = 20 + s->ip4_optlen;
		l3[0] = 0x40 | (uint8_t)(iphl / 4);
		pkt_put16(l3 + 2, (uint16_t)(iphl + l4len));
		pkt_put16(l3 + 4, (uint16_t)s->frag_id);
		if (s->frag == 1)
			pkt_put16(l3 + 6, 0x2000);
		else if (later)
			pkt_put16(l3 + 6, (s->frag_off8 & 0x1fff) | (s->frag_more ? 0x2000 : 0));
		l3[8] = 64;
		l3[9] = s->proto;
		inet_pton(AF_INET, s->src, l3 + 12);
		inet_pton(AF_INET, s->dst, l3 + 16);
		for (i = 20; i < iphl; i++) /* NOP options then an end-of-list */
			l3[i] = i + 1 == iphl ? 0 : 1;
		pkt_put16(l3 + 10, pkt_csum_fold(pkt_csum_add(0, l3, iphl)));
		memcpy(src, l3 + 12, 4);
		memcpy(dst, l3 + 16, 4);
	} else {
		uint8_t *h;
		int n = 0;

		l3[0] = 0x60;
		l3[7] = 64;
		inet_pton(AF_INET6, s->src, l3 + 8);
		inet_pton(AF_INET6, s->dst, l3 + 24);
		memcpy(src, l3 + 8, 16);
		memcpy(dst, l3 + 24, 16);
		/* chain: the listed headers, then a fragment header if asked for */
		h = l3 + 40;
		first_nh = s->n_ext ? s->ext[0] : (s->frag || s->v6_atomic_frag) ? 44 : s->proto;
		l3[6] = first_nh;
		for (n = 0; n < s->n_ext; n++) {
			uint8_t next = n + 1 < s->n_ext			? s->ext[n + 1]
				       : (s->frag || s->v6_atomic_frag) ? 44
									: s->proto;
			size_t hl;

			h[0] = next;
			if (s->ext[n] == 51) { /* AH: length in 4-byte units minus 2 */
				h[1] = 4;      /* 24 bytes */
				hl = 24;
			} else {
				h[1] = (uint8_t)s->ext_len8;
				hl = 8 * (size_t)(s->ext_len8 + 1);
				if (s->ext[n] != 43) { /* PadN over the option area */
					h[2] = 1;
					h[3] = (uint8_t)(hl - 4);
				}
			}
			h += hl;
			ext_total += hl;
		}
		if (s->frag || s->v6_atomic_frag) {
			uint16_t fo = 0;

			if (s->frag == 1)
				fo = 1;
			else if (later)
				fo = (uint16_t)(s->frag_off8 << 3) | (s->frag_more ? 1 : 0);
			h[0] = s->proto;
			pkt_put16(h + 2, fo);
			pkt_put32(h + 4, s->frag_id);
			h += 8;
			ext_total += 8;
		}
		iphl = 40 + ext_total;
		pkt_put16(l3 + 4, (uint16_t)(ext_total + l4len));
	}
	l4 = l3 + iphl;
	p->l4off = off + iphl;
	p->len = off + iphl + l4len;
	for (i = 0; i < s->payload; i++)
		l4[(later ? 0 : pkt_l4hdr_len(s->proto)) + i] = (uint8_t)(i * 7 + 3);
	if (later)
		return;

	if (s->proto == 6) {
		pkt_put16(l4, s->sport);
		pkt_put16(l4 + 2, s->dport);
		pkt_put32(l4 + 4, s->seq);
		pkt_put32(l4 + 8, (s->tcp_flags & TH_ACK) ? 777 : 0);
		l4[12] = 5 << 4;
		l4[13] = s->tcp_flags;
		pkt_put16(l4 + 14, 65535);
	} else if (s->proto == 17) {
		pkt_put16(l4, s->sport);
		pkt_put16(l4 + 2, s->dport);
		pkt_put16(l4 + 4, (uint16_t)l4len);
	} else if (s->proto == 1 || s->proto == 58) {
		l4[0] = s->icmp_type ? s->icmp_type : s->proto == 1 ? 8 : 128; /* echo request */
		pkt_put16(l4 + 4, 0x1234);
		pkt_put16(l4 + 6, 1);
	}
	if (s->proto == 6 || s->proto == 17 || s->proto == 58 || s->proto == 1) {
		uint32_t sum = 0;
		size_t csoff = s->proto == 6 ? 16 : s->proto == 17 ? 6 : 2;

		if (s->proto != 1) {
			size_t alen = s->v6 ? 16 : 4;

			sum = pkt_csum_add(sum, src, alen);
			sum = pkt_csum_add(sum, dst, alen);
			sum += s->proto + (uint32_t)l4len;
		}
		if (s->frag == 1) /* the checksum covers the whole datagram: leave it zero */
			return;
		sum = pkt_csum_add(sum, l4, l4len);
		pkt_put16(l4 + csoff, pkt_csum_fold(sum));
	}
}

/* Verify an L4 checksum over the pseudo header (0 when valid). */
static inline uint16_t pkt_l4_csum_check(const uint8_t *l3, int v6, const uint8_t *l4, size_t l4len,
					 uint8_t proto)
{
	uint32_t sum;

	if (v6)
		sum = pkt_csum_add(pkt_csum_add(0, l3 + 8, 16), l3 + 24, 16);
	else
		sum = pkt_csum_add(pkt_csum_add(0, l3 + 12, 4), l3 + 16, 4);
	sum += proto + (uint32_t)l4len;
	return pkt_csum_fold(pkt_csum_add(sum, l4, l4len));
}

#endif /* XP_TEST_PKT_H */
