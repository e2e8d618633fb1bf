/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * link - share links as an alternative to an outbound's plugin options.
 *
 *   [outbound.hk]
 *   link = ss://YWVzLTEyOC1nY206c2VjcmV0@192.0.2.1:8388#hk
 *
 * is the same as plugin = shadowsocks, server = 192.0.2.1:8388, method = aes-128-gcm,
 * password = secret. Supported: ss:// (SIP002, and the older all-base64 form), trojan://,
 * socks5:// (and socks5h://), http:// and https://. The parser turns a link into a plugin name
 * and option key/value pairs; cfg.c appends those to the section as if they had been written
 * on the link's line, so the plugin manager checks them like any other option.
 *
 * Error messages never contain the link's secrets (they name the part that is wrong).
 */
#ifndef XP_LINK_H
#define XP_LINK_H

#include <stddef.h>

#define LINK_MAX_KV 8
#define LINK_MAX_LEN 4096

struct link_kv {
	const char *key; /* a plugin option name (static string) */
	char *value;	 /* malloc'd */
};

struct link_out {
	const char *plugin; /* "shadowsocks", "trojan", "socks5" or "http" (static string) */
	struct link_kv kv[LINK_MAX_KV];
	size_t n;
};

/* 0, -EINVAL (err says why, without secrets) or -ENOMEM. On error *out holds nothing to free. */
int link_parse(const char *uri, struct link_out *out, char *err, size_t errlen);
void link_out_free(struct link_out *out);

#endif
