/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * tls - name a TCP flow from the server_name of its TLS ClientHello.
 *
 * The core hands us the flow's first bytes, all of them so far, each time more arrive. They are
 * TLS records (RFC 8446 5.1): type 22 (handshake), legacy_record_version 3.x, a length of
 * 1..2^14. The ClientHello may be fragmented over several records (large key shares make that
 * common) and the records over several TCP segments, so we walk the records, gather the
 * handshake bytes they carry and hand them to the shared parser (../common/tls_hello.c). Until
 * the whole message is in we say MORE; anything that is not a TLS handshake says NOT_MINE on
 * the first byte that proves it, so other protocols cost the core nothing.
 *
 * Ports: every port (NULL). A flow reaches the sniffers only because the rules sent its
 * destination to INSPECT, and HTTPS lives on 8443, 4443, 9443 and worse; missing a name there
 * routes the flow wrongly, while a server-speaks-first protocol only waits for the core's
 * sniff_timeout (docs/plugins/tls.md).
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <xproxy/plugin.h>

#include "../common/tls_hello.h"

#define REC_HANDSHAKE 22
#define REC_HDR 5
#define REC_MAX 16384 /* RFC 8446 5.1: TLSPlaintext.length MUST NOT exceed 2^14 */
/* A hello in more records than this is refused. 64 KiB fits in 4 full records; a client that
 * needs dozens is not a client we know, and the bound keeps max_bytes meaningful. */
#define REC_MAX_COUNT 64
#define TLS_SNIFF_MAX_BYTES (TLS_HELLO_MAX + REC_HDR * REC_MAX_COUNT)

/* The first bytes of a record header, as far as they are present: 0 = plausible, -1 = not. */
static int header_prefix_ok(const uint8_t *h, size_t n)
{
	if (n >= 1 && h[0] != REC_HANDSHAKE)
		return -1;
	if (n >= 2 && h[1] != 3)
		return -1;
	if (n >= 3 && h[2] > 4)
		return -1;
	return 0;
}

/*
 * Gather the handshake bytes of buf's records and parse them. The first record's payload is
 * parsed in place when the message fits in it (nearly always); otherwise the fragments are
 * copied into one heap buffer, because the parser wants contiguous bytes.
 */
static enum tls_hello_status records_hello(const uint8_t *buf, size_t len, struct tls_hello *h)
{
	size_t pos = 0, hs_have = 0, hs_want = 0, nrec = 0;
	uint8_t hs_hdr[4];
	const uint8_t *first = NULL;
	size_t first_len = 0;
	uint8_t *gather = NULL;
	enum tls_hello_status st;

	memset(h, 0, sizeof(*h));
	/* pass 1: validate the headers and find how many handshake bytes are here */
	while (pos < len) {
		size_t rlen, frag;

		if (len - pos < REC_HDR) {
			if (header_prefix_ok(buf + pos, len - pos))
				return TLS_HELLO_NOT_MINE;
			/* a header still arriving: judge the handshake bytes so far below, so one
			 * more byte never turns the parser's NOT_MINE into MORE */
			break;
		}
		if (header_prefix_ok(buf + pos, REC_HDR))
			return TLS_HELLO_NOT_MINE;
		rlen = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
		if (rlen == 0 || rlen > REC_MAX || ++nrec > REC_MAX_COUNT)
			return TLS_HELLO_NOT_MINE;
		frag = len - pos - REC_HDR < rlen ? len - pos - REC_HDR : rlen;
		if (!first) {
			first = buf + pos + REC_HDR;
			first_len = frag;
		}
		for (size_t i = 0; i < frag && hs_have + i < 4; i++)
			hs_hdr[hs_have + i] = buf[pos + REC_HDR + i];
		hs_have += frag;
		if (hs_have >= 4 && !hs_want) {
			if (hs_hdr[0] != 1)
				return TLS_HELLO_NOT_MINE;
			hs_want = 4 + ((size_t)hs_hdr[1] << 16 | (size_t)hs_hdr[2] << 8 | hs_hdr[3]);
			if (hs_want > TLS_HELLO_MAX)
				return TLS_HELLO_NOT_MINE;
		}
		if (hs_want && hs_have >= hs_want)
			break; /* the message is complete; what follows is not ours */
		if (frag < rlen)
			break; /* a record still arriving */
		pos += REC_HDR + rlen;
	}
	if (!first)
		return TLS_HELLO_MORE;
	if (first_len == hs_have || (hs_want && first_len >= hs_want))
		return tls_hello_parse(first, first_len, h);

	/* pass 2: the message spans records */
	if (hs_want && hs_have > hs_want)
		hs_have = hs_want;
	gather = malloc(hs_have);
	if (!gather)
		return TLS_HELLO_NOT_MINE;
	for (size_t got = 0, p = 0; got < hs_have; p += REC_HDR) {
		size_t rlen = (size_t)buf[p + 3] << 8 | buf[p + 4];
		size_t take = rlen < hs_have - got ? rlen : hs_have - got;

		memcpy(gather + got, buf + p + REC_HDR, take);
		got += take;
		p += rlen;
	}
	st = tls_hello_parse(gather, hs_have, h);
	free(gather);
	return st;
}

/* [sniff.tls] options; the instance is its config. */
struct tls_cfg {
	uint64_t max_bytes; /* max_hello_bytes */
};

static const struct xp_option tls_options[] = {
	XP_OPT_RANGE(struct tls_cfg, max_bytes, "max_hello_bytes", XP_OPT_SIZE, "65856", 0, 512,
		     TLS_SNIFF_MAX_BYTES,
		     "bytes of TLS records read for the ClientHello; a hello still incomplete "
		     "then is NOT_MINE"),
	XP_OPTION_END,
};
_Static_assert(TLS_SNIFF_MAX_BYTES == 65856, "max_hello_bytes' default is TLS_SNIFF_MAX_BYTES");

static int tls_sniff(void *inst, const struct xp_sniff_input *in, struct xp_sniff_result *out)
{
	const struct tls_cfg *cfg = inst;
	size_t len, cap = cfg && cfg->max_bytes ? (size_t)cfg->max_bytes : TLS_SNIFF_MAX_BYTES;
	struct tls_hello h;

	if (in->l4proto != IPPROTO_TCP || in->count > 1 || (in->count && !in->parts))
		return XP_SNIFF_NOT_MINE;
	if (in->count == 0 || !in->parts[0].len)
		return XP_SNIFF_MORE;
	/* only the first `cap` bytes count: past them a MORE can never be answered */
	len = in->parts[0].len < cap ? in->parts[0].len : cap;
	switch (records_hello(in->parts[0].data, len, &h)) {
	case TLS_HELLO_MORE:
		return len >= cap ? XP_SNIFF_NOT_MINE : XP_SNIFF_MORE;
	case TLS_HELLO_FOUND:
		if (!h.sni[0])
			return XP_SNIFF_NOT_MINE; /* TLS, but nothing to route on */
		/* both fit: sni[256] and alpn[64] are at most the result's sizes */
		memcpy(out->name, h.sni, sizeof(out->name));
		memcpy(out->alpn, h.alpn, sizeof(out->alpn));
		memset(out->protocol, 0, sizeof(out->protocol));
		memcpy(out->protocol, "tls", 3);
		return XP_SNIFF_FOUND;
	default:
		return XP_SNIFF_NOT_MINE;
	}
}

_Static_assert(sizeof(((struct tls_hello *)0)->sni) == sizeof(((struct xp_sniff_result *)0)->name),
	       "name sizes differ");
_Static_assert(sizeof(((struct tls_hello *)0)->alpn) == sizeof(((struct xp_sniff_result *)0)->alpn),
	       "alpn sizes differ");

/* The instance is its (core-owned, immutable) config: sniff() stays a pure function. */
static int tls_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			    const void *config, void **inst)
{
	*inst = (void *)config;
	return 0;
}

static void tls_instance_free(void *inst)
{
}

static const struct xp_sniffer_ops tls_ops = {
	.size = sizeof(struct xp_sniffer_ops),
	.caps = XP_SNIFF_TCP,
	.ports = NULL,
	.max_bytes = TLS_SNIFF_MAX_BYTES,
	.sniff = tls_sniff,
};

static const struct xp_plugin_desc tls_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "tls",
	.version = "1.0",
	.summary = "name TCP flows from the server_name of the TLS ClientHello",
	.kinds = XP_KIND_SNIFFER,
	.option_size = sizeof(struct xp_option),
	.options = tls_options,
	.config_size = sizeof(struct tls_cfg),
	.instance_new = tls_instance_new,
	.instance_free = tls_instance_free,
	.sniffer = &tls_ops,
};

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	return &tls_desc;
}
