/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * link.c - share links to plugin options. See link.h.
 *
 * One generic split (scheme://userinfo@host:port/path?query#fragment), then one small function
 * per scheme. Everything is bounded by LINK_MAX_LEN; decoded parts are NUL-checked so a
 * "%00" cannot cut an option value short behind the plugin's back.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"

struct uri {
	char scheme[16];
	char *userinfo; /* raw (still percent-encoded); NULL when there is no '@' */
	char *authority; /* raw host[:port] */
	char *query;	 /* raw, without '?'; NULL when absent */
	bool has_at;
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decode s[0..len) into a new string. NULL on a bad escape or an encoded NUL (errno
 * EINVAL), or on allocation failure (errno ENOMEM). */
static char *pct_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1), *o = out;

	if (!out) {
		errno = ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		if (len - i < 3 || hexval((unsigned char)s[i + 1]) < 0 ||
		    hexval((unsigned char)s[i + 2]) < 0) {
			free(out);
			errno = EINVAL;
			return NULL;
		}
		int v = hexval((unsigned char)s[i + 1]) << 4 | hexval((unsigned char)s[i + 2]);

		if (!v) {
			free(out);
			errno = EINVAL;
			return NULL;
		}
		*o++ = (char)v;
		i += 2;
	}
	*o = '\0';
	return out;
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Base64, standard or URL-safe alphabet, padding optional. NULL on bad input or a decoded NUL
 * (errno EINVAL) or ENOMEM. */
static char *b64_decode(const char *s, size_t len)
{
	char *out, *o;
	unsigned acc = 0, bits = 0;

	while (len && s[len - 1] == '=')
		len--;
	if (len % 4 == 1) {
		errno = EINVAL;
		return NULL;
	}
	out = o = malloc(len * 3 / 4 + 1);
	if (!out) {
		errno = ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		int v = b64val((unsigned char)s[i]);

		if (v < 0)
			goto bad;
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			char c = (char)(acc >> bits & 0xff);

			if (!c)
				goto bad;
			*o++ = c;
		}
	}
	*o = '\0';
	return out;
bad:
	free(out);
	errno = EINVAL;
	return NULL;
}

static int uri_split(char *s, struct uri *u, char *err, size_t errlen)
{
	char *p = strstr(s, "://"), *a, *end;
	size_t n;

	memset(u, 0, sizeof(*u));
	if (!p)
		return fail(err, errlen, "not a link (expected scheme://...)");
	n = (size_t)(p - s);
	if (!n || n >= sizeof(u->scheme))
		return fail(err, errlen, "not a link (bad scheme)");
	for (size_t i = 0; i < n; i++)
		u->scheme[i] = (char)tolower((unsigned char)s[i]);
	a = p + 3;
	end = strchr(a, '#'); /* the fragment is only a label */
	if (end)
		*end = '\0';
	p = strchr(a, '?');
	if (p) {
		*p = '\0';
		u->query = p + 1;
	}
	p = strchr(a, '/');
	if (p) {
		/* a path: ss links may end the authority with "/", nothing else uses one */
		if (p[1])
			return fail(err, errlen, "a path is not expected in a %s link", u->scheme);
		*p = '\0';
	}
	p = strrchr(a, '@');
	if (p) {
		*p = '\0';
		u->userinfo = a;
		u->authority = p + 1;
		u->has_at = true;
	} else {
		u->authority = a;
	}
	return 0;
}

static bool host_char_ok(int c)
{
	return isalnum(c) || c == '.' || c == '-' || c == '_';
}

/* authority -> "host:port" / "[v6]:port" (malloc'd) in *server; *is_name: host is a DNS name. */
static int parse_hostport(const char *auth, unsigned def_port, char **server, bool *is_name,
			  char *host_out, size_t host_len, char *err, size_t errlen)
{
	const char *host = auth, *port_s = NULL;
	size_t hlen;
	bool v6 = false;
	char *end;
	unsigned long port = def_port;

	if (*auth == '[') {
		const char *rb = strchr(auth, ']');

		if (!rb)
			return fail(err, errlen, "unterminated '[' in the server address");
		host = auth + 1;
		hlen = (size_t)(rb - host);
		v6 = true;
		if (rb[1] == ':')
			port_s = rb + 2;
		else if (rb[1])
			return fail(err, errlen, "unexpected characters after ']'");
		for (size_t i = 0; i < hlen; i++)
			if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.')
				return fail(err, errlen, "bad IPv6 address in the link");
	} else {
		const char *c = strrchr(auth, ':');

		hlen = c ? (size_t)(c - auth) : strlen(auth);
		if (c)
			port_s = c + 1;
		for (size_t i = 0; i < hlen; i++)
			if (!host_char_ok((unsigned char)host[i]))
				return fail(err, errlen, "bad character in the server host name");
	}
	if (!hlen || hlen >= host_len || hlen > 253)
		return fail(err, errlen, "the link has no usable server host");
	if (port_s) {
		if (!*port_s || !isdigit((unsigned char)*port_s))
			return fail(err, errlen, "bad server port in the link");
		errno = 0;
		port = strtoul(port_s, &end, 10);
		if (errno || *end || port == 0 || port > 65535)
			return fail(err, errlen, "bad server port in the link");
	} else if (!def_port) {
		return fail(err, errlen, "the link has no server port");
	}
	memcpy(host_out, host, hlen);
	host_out[hlen] = '\0';
	*is_name = false;
	if (!v6)
		for (size_t i = 0; i < hlen; i++)
			if (!isdigit((unsigned char)host[i]) && host[i] != '.')
				*is_name = true;
	char buf[300];

	snprintf(buf, sizeof(buf), v6 ? "[%s]:%lu" : "%s:%lu", host_out, port);
	*server = strdup(buf);
	if (!*server)
		return -ENOMEM;
	return 0;
}

static int add(struct link_out *o, const char *key, char *value)
{
	if (!value)
		return -ENOMEM;
	if (o->n >= LINK_MAX_KV) {
		free(value);
		return -E2BIG;
	}
	o->kv[o->n].key = key;
	o->kv[o->n].value = value;
	o->n++;
	return 0;
}

static int add_dup(struct link_out *o, const char *key, const char *value)
{
	return add(o, key, strdup(value));
}

/* The value of `name` in a query string (percent-decoded, malloc'd); NULL when absent.
 * *bad set on a malformed escape. */
static char *query_get(const char *q, const char *name, bool *bad)
{
	size_t nl = strlen(name);

	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);

		if (len > nl && !strncmp(q, name, nl) && q[nl] == '=') {
			char *v = pct_decode(q + nl + 1, len - nl - 1);

			if (!v && errno == EINVAL)
				*bad = true;
			return v;
		}
		q = amp ? amp + 1 : NULL;
	}
	return NULL;
}

static bool truthy(const char *v)
{
	return !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes");
}

static int userinfo_pair(const char *ui, char **user, char **pass, char *err, size_t errlen)
{
	const char *c = strchr(ui, ':');

	*user = pct_decode(ui, c ? (size_t)(c - ui) : strlen(ui));
	*pass = NULL;
	if (!*user)
		goto bad;
	if (c) {
		*pass = pct_decode(c + 1, strlen(c + 1));
		if (!*pass)
			goto bad;
	}
	return 0;
bad:
	free(*user);
	*user = NULL;
	if (errno == ENOMEM)
		return -ENOMEM;
	return fail(err, errlen, "bad percent-encoding in the link's credentials");
}

static int parse_ss(struct uri *u, struct link_out *o, char *err, size_t errlen)
{
	char host[256], *server = NULL, *mp = NULL, *legacy = NULL, *c;
	const char *auth = u->authority;
	size_t mp_len = 0;
	bool is_name, bad = false;
	int rc;

	if (u->query) {
		char *plug = query_get(u->query, "plugin", &bad);

		if (plug || bad) {
			free(plug);
			return fail(err, errlen, "ss:// links with a SIP003 plugin (plugin=) are not "
						 "supported");
		}
	}
	if (!u->has_at) {
		/* the old form: ss://BASE64(method:password@host:port) */
		legacy = b64_decode(auth, strlen(auth));
		if (!legacy)
			return errno == ENOMEM ? -ENOMEM
					       : fail(err, errlen, "ss:// link: bad base64");
		c = strrchr(legacy, '@');
		if (!c) {
			free(legacy);
			return fail(err, errlen, "ss:// link: no '@' between the credentials and "
						 "the server");
		}
		*c = '\0';
		mp = strdup(legacy);
		auth = c + 1;
		if (!mp) {
			free(legacy);
			return -ENOMEM;
		}
	} else if (strchr(u->userinfo, ':') || strchr(u->userinfo, '%')) {
		/* SIP002 allows method:password percent-encoded instead of base64 */
		mp = pct_decode(u->userinfo, strlen(u->userinfo));
		if (!mp)
			return errno == ENOMEM ? -ENOMEM
					       : fail(err, errlen, "ss:// link: bad percent-encoding");
	} else {
		mp = b64_decode(u->userinfo, strlen(u->userinfo));
		if (!mp)
			return errno == ENOMEM ? -ENOMEM
					       : fail(err, errlen, "ss:// link: bad base64 in the "
								   "credentials");
	}
	mp_len = strlen(mp);
	rc = parse_hostport(auth, 0, &server, &is_name, host, sizeof(host), err, errlen);
	if (legacy) {
		memset(legacy, 0, strlen(legacy));
		free(legacy);
	}
	if (rc)
		goto out;
	c = strchr(mp, ':');
	if (!c || c == mp || !c[1]) {
		rc = fail(err, errlen, "ss:// link: credentials are not method:password");
		goto out;
	}
	*c = '\0';
	for (char *m = mp; *m; m++)
		*m = (char)tolower((unsigned char)*m);
	o->plugin = "shadowsocks";
	rc = add(o, "server", server);
	server = NULL;
	if (!rc)
		rc = add_dup(o, "method", mp);
	if (!rc)
		rc = add_dup(o, "password", c + 1);
out:
	free(server);
	if (mp) {
		memset(mp, 0, mp_len); /* the password was in it */
		free(mp);
	}
	return rc;
}

static int parse_trojan(struct uri *u, struct link_out *o, char *err, size_t errlen)
{
	char host[256], *server = NULL, *pass, *v;
	bool is_name, bad = false;
	int rc;

	if (!u->has_at || !*u->userinfo)
		return fail(err, errlen, "trojan:// link: no password");
	if (u->query) {
		v = query_get(u->query, "type", &bad);
		if (v && strcmp(v, "tcp")) {
			free(v);
			return fail(err, errlen, "trojan:// link: transport type is not supported "
						 "(only tcp)");
		}
		free(v);
		v = query_get(u->query, "security", &bad);
		if (v && strcmp(v, "tls")) {
			free(v);
			return fail(err, errlen, "trojan:// link: only security=tls is supported");
		}
		free(v);
	}
	rc = parse_hostport(u->authority, 443, &server, &is_name, host, sizeof(host), err,
			    errlen);
	if (rc)
		return rc;
	pass = pct_decode(u->userinfo, strlen(u->userinfo));
	if (!pass) {
		free(server);
		return errno == ENOMEM ? -ENOMEM
				       : fail(err, errlen, "trojan:// link: bad percent-encoding in "
							   "the password");
	}
	o->plugin = "trojan";
	rc = add(o, "server", server);
	if (!rc)
		rc = add(o, "password", pass);
	else
		free(pass);
	if (rc || !u->query)
		return rc;
	v = query_get(u->query, "sni", &bad);
	if (!v)
		v = query_get(u->query, "peer", &bad);
	if (v)
		rc = add(o, "sni", v);
	v = query_get(u->query, "allowInsecure", &bad);
	if (!rc && v && truthy(v))
		rc = add_dup(o, "verify", "no");
	free(v);
	v = query_get(u->query, "alpn", &bad);
	if (!rc && v)
		rc = add(o, "alpn", v);
	else
		free(v);
	if (!rc && bad)
		rc = fail(err, errlen, "trojan:// link: bad percent-encoding in the query");
	return rc;
}

/* socks5://, socks5h://, http://, https:// */
static int parse_proxy(struct uri *u, struct link_out *o, bool tls, unsigned def_port,
		       const char *plugin, char *err, size_t errlen)
{
	char host[256], *server = NULL, *user = NULL, *pass = NULL;
	bool is_name;
	int rc;

	if (u->query && *u->query)
		return fail(err, errlen, "%s:// link: a query is not expected", u->scheme);
	rc = parse_hostport(u->authority, def_port, &server, &is_name, host, sizeof(host), err,
			    errlen);
	if (rc)
		return rc;
	o->plugin = plugin;
	rc = add(o, "server", server);
	if (!rc && u->has_at) {
		rc = userinfo_pair(u->userinfo, &user, &pass, err, errlen);
		if (!rc && !*user) {
			rc = fail(err, errlen, "%s:// link: empty user name", u->scheme);
			free(user);
			free(pass);
		} else if (!rc) {
			rc = add(o, "username", user);
			if (pass)
				rc = rc ? (free(pass), rc) : add(o, "password", pass);
		}
	}
	if (!rc && tls) {
		rc = add_dup(o, "tls", "yes");
		if (!rc && is_name)
			rc = add_dup(o, "sni", host);
	}
	return rc;
}

int link_parse(const char *uri, struct link_out *out, char *err, size_t errlen)
{
	struct uri u;
	size_t len = strlen(uri);
	char *s;
	int rc;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	if (len > LINK_MAX_LEN)
		return fail(err, errlen, "link longer than %d characters", LINK_MAX_LEN);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)uri[i] <= ' ' || uri[i] == 0x7f)
			return fail(err, errlen, "spaces or control characters in the link");
	s = strdup(uri);
	if (!s)
		return -ENOMEM;
	rc = uri_split(s, &u, err, errlen);
	if (rc)
		goto out;
	if (!strcmp(u.scheme, "ss"))
		rc = parse_ss(&u, out, err, errlen);
	else if (!strcmp(u.scheme, "trojan"))
		rc = parse_trojan(&u, out, err, errlen);
	else if (!strcmp(u.scheme, "socks5") || !strcmp(u.scheme, "socks5h"))
		rc = parse_proxy(&u, out, false, 1080, "socks5", err, errlen);
	else if (!strcmp(u.scheme, "http"))
		rc = parse_proxy(&u, out, false, 80, "http", err, errlen);
	else if (!strcmp(u.scheme, "https"))
		rc = parse_proxy(&u, out, true, 443, "http", err, errlen);
	else
		rc = fail(err, errlen,
			  "unknown link scheme '%s' (expected ss, trojan, socks5, http or https)",
			  u.scheme);
out:
	memset(s, 0, len);
	free(s);
	if (rc) {
		if (rc == -E2BIG)
			rc = fail(err, errlen, "the link has too many parameters");
		else if (rc == -ENOMEM && errlen)
			snprintf(err, errlen, "out of memory");
		link_out_free(out);
	}
	return rc;
}

void link_out_free(struct link_out *out)
{
	for (size_t i = 0; i < out->n; i++) {
		if (out->kv[i].value) {
			memset(out->kv[i].value, 0, strlen(out->kv[i].value));
			free(out->kv[i].value);
		}
	}
	memset(out, 0, sizeof(*out));
}
