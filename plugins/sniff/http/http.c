/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * http - name a TCP flow from its first HTTP/1.x request (RFC 9112).
 *
 * The name comes from the request target when it carries an authority (absolute form, as
 * clients send to proxies, and CONNECT's authority form: RFC 9112 3.2.2 says the target then
 * wins over Host), else from the Host header. The port is dropped; an IP literal (IPv6 in
 * brackets, or a dotted IPv4) is not a name, so NOT_MINE: the flow already has that address.
 *
 * The core calls us with all the bytes so far. We say NOT_MINE on the first byte that cannot
 * start a request we know, MORE while the request line or the Host line is still arriving, and
 * FOUND as soon as the line that names the flow is complete; headers after it are not waited
 * for. Lines are bounded (HTTP_MAX_LINE) and so is the whole head (HTTP_MAX_HEAD = max_bytes,
 * lowered per instance by the option max_header_bytes), so a client that never finishes costs
 * at most that, then NOT_MINE.
 *
 * Ports: every port (NULL), for the reason the tls sniffer gives (docs/plugins/http_sniff.md).
 */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <xproxy/plugin.h>

/* The name the daemon and [sniff] plugins = know this plugin by. The outbound HTTP-proxy
 * plugin is already called "http" and names are unique, so the sniffer takes this one. */
#define HTTP_SNIFF_NAME "http_sniff"

#define HTTP_MAX_LINE 8192  /* request line, or one header line, CRLF included */
#define HTTP_MAX_HEAD 16384 /* everything we will read before the Host line is complete */

enum { NOT_MINE = XP_SNIFF_NOT_MINE, MORE = XP_SNIFF_MORE, FOUND = XP_SNIFF_FOUND };

static const char *const methods[] = {
	"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
};

/* RFC 9110 5.6.2 tchar */
static int is_tchar(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/*
 * The method and its space. Returns the offset after the space, 0 when the bytes are a strict
 * prefix of "<method> " (MORE), -1 when they cannot be (methods are case-sensitive).
 */
static long match_method(const uint8_t *b, size_t len)
{
	int prefix = 0;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		size_t m = strlen(methods[i]);
		size_t n = len < m ? len : m;

		if (memcmp(b, methods[i], n))
			continue;
		if (len <= m) {
			prefix = 1;
			continue;
		}
		if (b[m] == ' ')
			return (long)m + 1;
	}
	return prefix ? 0 : -1;
}

/*
 * The end of the line starting at `at`: the index of its '\n', -1 when not here yet (MORE),
 * -2 when it is malformed (a CR not before LF, a NUL) or longer than HTTP_MAX_LINE.
 */
static long line_end(const uint8_t *b, size_t len, size_t at)
{
	for (size_t i = at; i < len; i++) {
		if (i - at >= HTTP_MAX_LINE)
			return -2;
		if (b[i] == '\n')
			return (long)i;
		if (b[i] == 0 || (b[i] == '\r' && i + 1 < len && b[i + 1] != '\n'))
			return -2;
	}
	return len - at >= HTTP_MAX_LINE ? -2 : -1;
}

/*
 * A host as an authority carries it ("name", "name:port", "[v6]:port"), with the port
 * dropped and the name checked and lower-cased into out. FOUND, or NOT_MINE for anything
 * that is not a DNS name: IP literals, empty, bad characters, labels > 63, names > 253.
 */
static int take_host(const uint8_t *s, size_t n, char out[256])
{
	size_t h = n, label = 0, digits_only = 1;

	if (n && s[0] == '[')
		return NOT_MINE; /* IPv6 (or IPvFuture) literal */
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ':') {
			h = i;
			break;
		}
	}
	if (h < n) {
		/* port = *DIGIT (RFC 3986 3.2.3: may be empty), at most 65535 */
		unsigned long port = 0;

		if (n - h - 1 > 5)
			return NOT_MINE;
		for (size_t i = h + 1; i < n; i++) {
			if (s[i] < '0' || s[i] > '9')
				return NOT_MINE;
			port = port * 10 + (s[i] - '0');
		}
		if (port > 65535)
			return NOT_MINE;
	}
	if (h && s[h - 1] == '.')
		h--; /* one trailing dot: the same name */
	if (h == 0 || h > 253)
		return NOT_MINE;
	for (size_t i = 0; i < h; i++) {
		uint8_t c = lower(s[i]);

		if (c == '.') {
			if (!label)
				return NOT_MINE;
			label = 0;
			digits_only = 1;
			out[i] = '.';
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return NOT_MINE;
		if (!(c >= '0' && c <= '9'))
			digits_only = 0;
		if (++label > 63)
			return NOT_MINE;
		out[i] = (char)c;
	}
	/* no top-level domain is all digits: "10.0.0.1" (or "2130706433") is an address */
	if (digits_only)
		return NOT_MINE;
	out[h] = '\0';
	return FOUND;
}

/* The authority of an absolute-form target (scheme "://" authority [path]), or NULL. */
static const uint8_t *absolute_authority(const uint8_t *t, size_t n, size_t *alen)
{
	size_t i = 0, start, end, at;

	/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 3.1) */
	while (i < n && (is_alpha(t[i]) || (i && ((t[i] >= '0' && t[i] <= '9') || t[i] == '+' ||
						  t[i] == '-' || t[i] == '.'))))
		i++;
	if (i == 0)
		return NULL;
	if (n - i < 3 || memcmp(t + i, "://", 3))
		return NULL;
	start = i + 3;
	end = start;
	while (end < n && t[end] != '/' && t[end] != '?' && t[end] != '#')
		end++;
	/* userinfo@host: servers take what follows the last '@' */
	for (at = end; at > start; at--) {
		if (t[at - 1] == '@') {
			start = at;
			break;
		}
	}
	*alen = end - start;
	return t + start;
}

/* The request line b[0..eol) (eol at '\n'). *named is set when the target names the host. */
static int request_line(const uint8_t *b, size_t eol, size_t mlen, int connect,
			struct xp_sniff_result *out, int *named)
{
	size_t end = eol, sp, t;
	const uint8_t *auth;
	size_t alen;

	if (end && b[end - 1] == '\r')
		end--;
	/* "<target> HTTP/1.<d>" */
	if (end < mlen + 10 || memcmp(b + end - 9, " HTTP/1.", 8) || b[end - 1] < '0' ||
	    b[end - 1] > '9')
		return NOT_MINE;
	sp = end - 9;
	if (sp <= mlen)
		return NOT_MINE;
	for (t = mlen; t < sp; t++)
		if (b[t] <= 0x20 || b[t] == 0x7f)
			return NOT_MINE; /* one target, no spaces or controls in it */
	*named = 0;
	if (connect) {
		/* authority form: host ":" port */
		*named = 1;
		return take_host(b + mlen, sp - mlen, out->name);
	}
	auth = absolute_authority(b + mlen, sp - mlen, &alen);
	if (auth) {
		*named = 1;
		return take_host(auth, alen, out->name);
	}
	if (b[mlen] != '/' && !(sp - mlen == 1 && b[mlen] == '*'))
		return NOT_MINE;
	return MORE;
}

/* One header line b[at..eol): FOUND/NOT_MINE when it is Host, MORE to go on. */
static int header_line(const uint8_t *b, size_t at, size_t eol, struct xp_sniff_result *out)
{
	size_t end = eol, colon = at, v;

	if (end > at && b[end - 1] == '\r')
		end--;
	if (b[at] == ' ' || b[at] == '\t')
		return NOT_MINE; /* obs-fold: RFC 9112 5.2 lets a server refuse it; we do too */
	while (colon < end && is_tchar(b[colon]))
		colon++;
	if (colon == at || colon == end || b[colon] != ':')
		return NOT_MINE; /* no name, or a space before the colon (RFC 9112 5.1) */
	if (colon - at != 4 || lower(b[at]) != 'h' || lower(b[at + 1]) != 'o' ||
	    lower(b[at + 2]) != 's' || lower(b[at + 3]) != 't')
		return MORE;
	v = colon + 1;
	while (v < end && (b[v] == ' ' || b[v] == '\t'))
		v++;
	while (end > v && (b[end - 1] == ' ' || b[end - 1] == '\t'))
		end--;
	return take_host(b + v, end - v, out->name);
}

static int http_parse(const uint8_t *b, size_t len, struct xp_sniff_result *out)
{
	long m, eol;
	size_t at;
	int rc, named;

	if (len == 0)
		return MORE;
	m = match_method(b, len);
	if (m <= 0)
		return m ? NOT_MINE : MORE;
	eol = line_end(b, len, 0);
	if (eol < 0)
		return eol == -1 ? MORE : NOT_MINE;
	rc = request_line(b, (size_t)eol, (size_t)m, m == 8 && !memcmp(b, "CONNECT", 7), out,
			  &named);
	if (rc != MORE || named)
		return rc;

	for (at = (size_t)eol + 1;;) {
		if (at >= HTTP_MAX_HEAD)
			return NOT_MINE;
		eol = line_end(b, len, at);
		if (eol < 0)
			return eol == -1 && len < HTTP_MAX_HEAD ? MORE : NOT_MINE;
		if ((size_t)eol == at || ((size_t)eol == at + 1 && b[at] == '\r'))
			return NOT_MINE; /* end of the head and no Host: nothing to route on */
		if ((size_t)eol >= HTTP_MAX_HEAD)
			return NOT_MINE;
		rc = header_line(b, at, (size_t)eol, out);
		if (rc != MORE)
			return rc;
		at = (size_t)eol + 1;
	}
}

/* [sniff.http_sniff] (or [sniff.http]) options; the instance is its config. */
struct http_cfg {
	uint64_t max_head; /* max_header_bytes */
};

static const struct xp_option http_options[] = {
	XP_OPT_RANGE(struct http_cfg, max_head, "max_header_bytes", XP_OPT_SIZE, "16k", 0, 256,
		     HTTP_MAX_HEAD,
		     "bytes of request head read before the Host line must be complete; a "
		     "request still unnamed then is NOT_MINE"),
	XP_OPTION_END,
};

static int http_sniff(void *inst, const struct xp_sniff_input *in, struct xp_sniff_result *out)
{
	const struct http_cfg *cfg = inst;
	size_t len, cap = cfg && cfg->max_head ? (size_t)cfg->max_head : HTTP_MAX_HEAD;
	int rc;

	if (in->l4proto != IPPROTO_TCP || in->count > 1 || (in->count && !in->parts))
		return NOT_MINE;
	if (in->count == 0)
		return MORE;
	/* only the first `cap` bytes count: past them a MORE can never be answered */
	len = in->parts[0].len < cap ? in->parts[0].len : cap;
	rc = http_parse(in->parts[0].data, len, out);
	if (rc == MORE && len >= cap)
		rc = NOT_MINE;
	if (rc == FOUND) {
		memset(out->protocol, 0, sizeof(out->protocol));
		memcpy(out->protocol, "http", 4);
		out->alpn[0] = '\0';
	} else {
		out->name[0] = '\0';
	}
	return rc;
}

/* The instance is its (core-owned, immutable) config: sniff() stays a pure function. */
static int http_instance_new(void *state, const struct xp_host *host, xp_handle_t *self,
			     const void *config, void **inst)
{
	*inst = (void *)config;
	return 0;
}

static void http_instance_free(void *inst)
{
}

static const struct xp_sniffer_ops http_ops = {
	.size = sizeof(struct xp_sniffer_ops),
	.caps = XP_SNIFF_TCP,
	.ports = NULL,
	.max_bytes = HTTP_MAX_HEAD,
	.sniff = http_sniff,
};

static const struct xp_plugin_desc http_desc = {
	.size = sizeof(struct xp_plugin_desc),
	.abi_major = XP_PLUGIN_ABI_MAJOR,
	.abi_minor = XP_PLUGIN_ABI_MINOR,
	.name = HTTP_SNIFF_NAME,
	.version = "1.0",
	.summary = "name TCP flows from the Host of their first HTTP/1.x request",
	.kinds = XP_KIND_SNIFFER,
	.option_size = sizeof(struct xp_option),
	.options = http_options,
	.config_size = sizeof(struct http_cfg),
	.instance_new = http_instance_new,
	.instance_free = http_instance_free,
	.sniffer = &http_ops,
};

const struct xp_plugin_desc *XP_PLUGIN_ENTRY(uint32_t host_abi)
{
	return &http_desc;
}
