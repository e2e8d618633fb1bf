/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * quic - name UDP flows from the ClientHello inside QUIC Initial packets (v1 and v2).
 *
 * The core hands the sniffer every datagram of the flow so far on each call; the sniffer keeps
 * nothing between calls. Each call opens the client Initials of all datagrams again (a few
 * microseconds per datagram, see bench/sniff), reassembles their CRYPTO data and, once the
 * contiguous prefix holds the whole ClientHello, reads its server_name and ALPN.
 *
 * Decisions:
 *   - The first datagram must hold a client Initial that opens: anything else (DNS, a game's
 *     protocol, a server Initial, a forged packet) is NOT_MINE at once.
 *   - A later datagram that does not open is skipped, not fatal: anyone on the path can inject
 *     a datagram into the flow, and it must not hide the name the real client sends.
 *   - An Initial that opens but breaks the rules (a frame not allowed in Initials, a CRYPTO frame
 *     past the payload, CRYPTO data that changes at an offset) is NOT_MINE: authenticated
 *     nonsense means the client is not a QUIC implementation we can follow.
 *   - Bounded: QUIC_MAX_DATAGRAMS datagrams, 64 KiB of datagrams (lowered per instance by
 *     the option max_initial_bytes) and of CRYPTO stream. A ClientHello still incomplete then
 *     is NOT_MINE.
 *   - A ClientHello without server_name is NOT_MINE (there is no name to route by).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xproxy/plugin.h>

#include "quic.h"
#include "quic_initial.h"
#include "../common/tls_hello.h"

/* 443: HTTP/3. 853: DNS over QUIC (RFC 9250), which carries an SNI and ALPN "doq".
 * 8443: the usual alternative HTTPS port, where HTTP/3 is advertised by Alt-Svc as well. */
static const uint16_t quic_ports[] = {443, 853, 8443, 0};

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

int quic_sniff_parts(const struct xp_bytes *parts, uint32_t count, struct xp_sniff_result *out)
{
	struct quic_work *w;
	struct tls_hello hello;
	enum tls_hello_status hs;
	enum quic_dg_status st;
	size_t total = 0;
	uint32_t i, n;
	int rc = XP_SNIFF_NOT_MINE, exhausted;

	if (!count)
		return XP_SNIFF_MORE;
	if (!parts)
		return -EINVAL;
	/* heap, not stack: ~140 KiB would be a lot for a worker thread's stack */
	if (!(w = malloc(sizeof(*w))))
		return -ENOMEM;
	w->have_first = 0;
	quic_stream_init(&w->stream);

	n = count < QUIC_MAX_DATAGRAMS ? count : QUIC_MAX_DATAGRAMS;
	for (i = 0; i < n; i++) {
		if (!parts[i].data && parts[i].len)
			goto out;
		if (parts[i].len > QUIC_SNIFF_MAX_BYTES - total)
			break;
		total += parts[i].len;
		st = quic_datagram(w, parts[i].data, parts[i].len);
		if (st == QUIC_DG_INVALID || (i == 0 && st != QUIC_DG_INITIAL))
			goto out;
	}
	exhausted = i < count || count >= QUIC_MAX_DATAGRAMS;

	/* a Handshake message declared longer than the stream bound can never complete */
	if (w->stream.contig >= 4) {
		const uint8_t *m = w->stream.data;
		size_t need = 4 + ((size_t)m[1] << 16 | (size_t)m[2] << 8 | m[3]);

		if (need > QUIC_CRYPTO_MAX)
			goto out;
	}

	hs = tls_hello_parse(w->stream.data, w->stream.contig, &hello);
	if (hs == TLS_HELLO_FOUND) {
		if (!hello.sni[0])
			goto out;
		memset(out->name, 0, sizeof(out->name));
		memset(out->protocol, 0, sizeof(out->protocol));
		memset(out->alpn, 0, sizeof(out->alpn));
		copy_str(out->name, sizeof(out->name), hello.sni);
		copy_str(out->protocol, sizeof(out->protocol), "quic");
		copy_str(out->alpn, sizeof(out->alpn), hello.alpn);
		rc = XP_SNIFF_FOUND;
	} else if (hs == TLS_HELLO_MORE && !exhausted && w->stream.contig < QUIC_CRYPTO_MAX) {
		rc = XP_SNIFF_MORE;
	}
out:
	free(w);
	return rc;
}

/* [sniff.quic] options; the instance is its config. */
struct quic_cfg {
	uint64_t max_initial; /* max_initial_bytes */
};

static const struct xp_option quic_options[] = {
	XP_OPT_RANGE(struct quic_cfg, max_initial, "max_initial_bytes", XP_OPT_SIZE, "64k", 0, 1200,
		     QUIC_SNIFF_MAX_BYTES,
		     "bytes of datagrams (the client's Initials) read for the ClientHello; a "
		     "hello still incomplete then is NOT_MINE"),
	XP_OPTION_END,
};

static int quic_sniff(void *inst, const struct xp_sniff_input *in, struct xp_sniff_result *out)
{
	const struct quic_cfg *cfg = inst;
	size_t cap = cfg && cfg->max_initial ? (size_t)cfg->max_initial : QUIC_SNIFF_MAX_BYTES;
	size_t total = 0;
	uint32_t n;
	int rc;

	if (!in || !out || in->l4proto != IPPROTO_UDP)
		return XP_SNIFF_NOT_MINE;
	if (in->count && !in->parts)
		return -EINVAL;
	/* the datagrams that fit in the cap; a MORE past it can never be answered */
	for (n = 0; n < in->count && in->parts[n].len <= cap - total; n++)
		total += in->parts[n].len;
	rc = quic_sniff_parts(in->parts, n, out);
	if (rc == XP_SNIFF_MORE && (n < in->count || total >= cap))
		rc = XP_SNIFF_NOT_MINE;
	return rc;
}

static int quic_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			     const void *config, void **inst)
{
	(void)state;
	(void)host;
	(void)self;
	/* the instance is its (core-owned, immutable) config: sniff stays a pure function */
	*inst = (void *)config;
	return 0;
}

static void quic_instance_free(void *inst)
{
	(void)inst;
}

static const struct xp_sniffer_ops quic_sniffer = {
	.size = sizeof(struct xp_sniffer_ops),
	.caps = XP_SNIFF_UDP,
	.ports = quic_ports,
	.max_bytes = QUIC_SNIFF_MAX_BYTES,
	.sniff = quic_sniff,
};

static const struct xp_plugin_desc quic_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = "quic",
	.version = "1.0",
	.summary = "names UDP flows from the ClientHello in QUIC v1/v2 Initial packets",
	.kinds = XP_KIND_SNIFFER,
	.option_size = sizeof(struct xp_option),
	.options = quic_options,
	.config_size = sizeof(struct quic_cfg),
	.instance_new = quic_instance_new,
	.instance_free = quic_instance_free,
	.sniffer = &quic_sniffer,
};

XP_PLUGIN_EXPORT const struct xp_plugin_desc *xp_plugin_query(uint32_t host_abi)
{
	(void)host_abi;
	return &quic_desc;
}
