/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * trojan_proto - trojan request and UDP framing. See trojan_proto.h.
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "trojan_proto.h"

int trojan_password_hash(const char *password, char out[TROJAN_HASH_LEN])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[28];
	unsigned int len;

	if (!EVP_Digest(password, strlen(password), md, &len, EVP_sha224(), NULL) || len != 28)
		return -EIO;
	for (int i = 0; i < 28; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	return 0;
}

ssize_t trojan_request(const char hash[TROJAN_HASH_LEN], int cmd, const union xp_sockaddr *addr,
		       const char *domain, uint8_t *out)
{
	uint8_t *p = out;
	ssize_t n;

	if (cmd != TROJAN_CMD_CONNECT && cmd != TROJAN_CMD_UDP)
		return -EINVAL;
	memcpy(p, hash, TROJAN_HASH_LEN);
	p += TROJAN_HASH_LEN;
	*p++ = '\r';
	*p++ = '\n';
	*p++ = (uint8_t)cmd;
	n = ss_addr_encode(addr, domain, p);
	if (n < 0)
		return n;
	p += n;
	*p++ = '\r';
	*p++ = '\n';
	return p - out;
}

ssize_t trojan_udp_header(const union xp_sockaddr *addr, const char *domain, size_t len,
			  uint8_t *out)
{
	ssize_t n;

	if (len > TROJAN_UDP_MAX)
		return -EMSGSIZE;
	n = ss_addr_encode(addr, domain, out);
	if (n < 0)
		return n;
	out[n] = (uint8_t)(len >> 8);
	out[n + 1] = (uint8_t)len;
	out[n + 2] = '\r';
	out[n + 3] = '\n';
	return n + 4;
}

ssize_t trojan_udp_parse(const uint8_t *in, size_t len, union xp_sockaddr *from, char *name,
			 const uint8_t **payload, size_t *plen)
{
	ssize_t a = ss_addr_decode(in, len, from, name);
	size_t off, n;

	if (a < 0)
		return a;
	off = (size_t)a;
	if (len < off + 4)
		return -EAGAIN;
	n = (size_t)in[off] << 8 | in[off + 1];
	if (in[off + 2] != '\r' || in[off + 3] != '\n')
		return -EINVAL;
	off += 4;
	if (len - off < n)
		return -EAGAIN;
	*payload = in + off;
	*plen = n;
	return (ssize_t)(off + n);
}
