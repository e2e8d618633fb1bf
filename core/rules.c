/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * rules - the [route] rule language.
 *
 * Three parts:
 *   - rule_parse(): text -> struct rule. Every error names the offending token.
 *   - rule_match() / rule_list_match(): the userspace matcher, used for flows that have a name
 *     (DNS answers, sniffed SNI/Host). For rules without domain conditions it must agree with
 *     the kernel bit for bit; tests/unit/test_rules.c checks that against a model of the BPF
 *     rule walk.
 *   - rules_compile(): struct rule_list -> the map image of one generation (see bpf_abi.h).
 *
 * Address conventions: 16-byte addresses, IPv4 as ::ffff:a.b.c.d with prefix length 96 + n.
 * An IPv6 prefix never matches an IPv4-mapped address; an IPv4-mapped IPv6 literal is refused
 * at parse time so there is exactly one way to write an IPv4 prefix.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "array.h"
#include "domain.h"
#include "log.h"
#include "rules.h"

#define RULE_FILE_MAX_ENTRIES 1000000
#define RULE_FILE_MAX_BYTES   (256l << 20)
#define RULE_FILE_LINE_MAX    256 /* a CIDR is at most ~50 chars; longer lines are garbage */
#define DOMAIN_MAX	      253
#define LABEL_MAX	      63
#define REGEX_MAX	      256 /* pattern length */
#define REGEX_EXPANDED_MAX    512 /* atoms after regcomp expands repetitions; bounds match time */
#define REGEX_DEPTH_MAX	      32  /* nested groups */
#define TARGET_NAME_MAX	      31

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Append to a message that may already hold text (used for multi-line @file reports). */
static void adderr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void adderr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	size_t used;

	if (!err || !errlen)
		return;
	used = strnlen(err, errlen);
	if (used + 1 >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool addr_is_v4(const uint8_t a[16])
{
	return memcmp(a, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0;
}

static bool cidr_is_v4(const struct rule_cidr *c)
{
	return c->plen >= 96 && addr_is_v4(c->addr);
}

/* Do the first plen bits of a and p agree? */
static bool prefix_eq(const uint8_t *a, const uint8_t *p, unsigned plen)
{
	unsigned bytes = plen / 8, bits = plen % 8;

	if (memcmp(a, p, bytes))
		return false;
	if (!bits)
		return true;
	uint8_t m = (uint8_t)(0xff << (8 - bits));

	return (a[bytes] & m) == (p[bytes] & m);
}

static void mask_addr(uint8_t a[16], unsigned plen)
{
	for (unsigned i = 0; i < 16; i++) {
		if (plen >= 8) {
			plen -= 8;
			continue;
		}
		a[i] &= (uint8_t)(0xff << (8 - plen));
		plen = 0;
	}
}

/* Semantic membership: prefix match, and an IPv6 prefix never matches an IPv4 address. */
static bool cidr_contains(const struct rule_cidr *c, const uint8_t addr[16])
{
	if (cidr_is_v4(c) != addr_is_v4(addr))
		return false;
	return prefix_eq(addr, c->addr, c->plen);
}

void rule_addr_from_v4(uint8_t out[16], uint32_t v4_be)
{
	memcpy(out, v4mapped_prefix, sizeof(v4mapped_prefix));
	memcpy(out + 12, &v4_be, 4);
}

static const char *cidr_str(const struct rule_cidr *c, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (cidr_is_v4(c)) {
		inet_ntop(AF_INET, c->addr + 12, a, sizeof(a));
		snprintf(buf, len, "%s/%u", a, c->plen - 96);
	} else {
		inet_ntop(AF_INET6, c->addr, a, sizeof(a));
		snprintf(buf, len, "%s/%u", a, c->plen);
	}
	return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* Value parsers                                                                               */

/* Strict decimal: digits only, no sign, no whitespace, at most max. */
static int parse_dec(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return -ERANGE;
	}
	*out = v;
	return 0;
}

static int parse_cidr_msg(const char *s, struct rule_cidr *out, char *err, size_t errlen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	char *slash;
	unsigned long plen;
	bool v4;
	struct rule_cidr c;

	memset(&c, 0, sizeof(c));
	if (strlen(s) >= sizeof(buf)) {
		seterr(err, errlen, "invalid address '%.64s...'", s);
		return -EINVAL;
	}
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, c.addr + 12) == 1) {
		memcpy(c.addr, v4mapped_prefix, sizeof(v4mapped_prefix));
		v4 = true;
	} else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
		v4 = false;
	} else {
		seterr(err, errlen, "invalid address '%s'", s);
		return -EINVAL;
	}
	if (slash) {
		int rc = strlen(slash + 1) <= 3 ? parse_dec(slash + 1, v4 ? 32 : 128, &plen)
						: -EINVAL;

		if (rc) {
			seterr(err, errlen, "invalid prefix length in '%s' (0-%d for %s)", s,
			       v4 ? 32 : 128, v4 ? "IPv4" : "IPv6");
			return -EINVAL;
		}
	} else {
		plen = v4 ? 32 : 128;
	}
	c.plen = (uint8_t)(v4 ? 96 + plen : plen);
	if (!v4 && c.plen >= 96 && addr_is_v4(c.addr)) {
		char a[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, c.addr + 12, a, sizeof(a));
		seterr(err, errlen, "'%s' is IPv4-mapped: write IPv4 prefixes as IPv4 (%s/%u)", s,
		       a, c.plen - 96);
		return -EINVAL;
	}
	struct rule_cidr m = c;

	mask_addr(m.addr, m.plen);
	if (memcmp(m.addr, c.addr, 16)) {
		char sug[INET6_ADDRSTRLEN + 8];

		seterr(err, errlen, "'%s': host bits set, did you mean %s?", s,
		       cidr_str(&m, sug, sizeof(sug)));
		return -EINVAL;
	}
	*out = c;
	return 0;
}

int rule_parse_cidr(const char *s, struct rule_cidr *out)
{
	if (!s || !out)
		return -EINVAL;
	return parse_cidr_msg(s, out, NULL, 0);
}

static int parse_port(const char *s, unsigned long *out)
{
	int rc = strlen(s) <= 5 ? parse_dec(s, 65535, out) : -EINVAL;

	return rc ? -EINVAL : 0;
}

static int parse_prange(const char *tname, const char *s, struct rule_prange *out, char *err,
			size_t errlen)
{
	char buf[16];
	unsigned long lo, hi;
	char *dash;

	if (strlen(s) >= sizeof(buf))
		goto bad;
	strcpy(buf, s);
	dash = strchr(buf, '-');
	if (dash) {
		*dash = '\0';
		if (parse_port(trim(buf), &lo) || parse_port(trim(dash + 1), &hi))
			goto bad;
	} else {
		if (parse_port(buf, &lo))
			goto bad;
		hi = lo;
	}
	if (lo == 0 || hi == 0) {
		seterr(err, errlen, "%s: port 0 in '%s' is not valid (ports are 1-65535)", tname,
		       s);
		return -EINVAL;
	}
	if (lo > hi) {
		seterr(err, errlen, "%s: range '%s' has its low end above its high end", tname, s);
		return -EINVAL;
	}
	out->lo = (uint16_t)lo;
	out->hi = (uint16_t)hi;
	return 0;
bad:
	seterr(err, errlen, "%s: invalid port '%s' (expected 1-65535 or LO-HI)", tname, s);
	return -EINVAL;
}

/* Lower-case and validate a name. Domain names: labels of [a-z0-9_-], 1..63 each, 253 in all,
 * one trailing dot allowed (and dropped). Keywords: a substring, so only the character set. */
static int parse_domain(const char *tname, const char *s, bool keyword, char **out, char *err,
			size_t errlen)
{
	size_t len = strlen(s);
	char *n;

	if (!keyword && len > 1 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > DOMAIN_MAX) {
		seterr(err, errlen, "%s: '%.64s%s' is not a valid name (1-%d characters)", tname, s,
		       len > 64 ? "..." : "", DOMAIN_MAX);
		return -EINVAL;
	}
	n = strndup(s, len);
	if (!n)
		return -ENOMEM;
	size_t label = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)tolower((unsigned char)n[i]);

		n[i] = (char)c;
		if (c == '.') {
			if (!keyword && label == 0)
				goto empty_label;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-' || c == '_') || c >= 0x80) {
			if (c == '*')
				seterr(err, errlen,
				       "%s: '%s': '*' is not allowed (domain-suffix matches a name "
				       "and all its subdomains)",
				       tname, s);
			else if (c >= 0x20 && c < 0x7f)
				seterr(err, errlen, "%s: '%s': character '%c' is not allowed",
				       tname, s, c);
			else
				seterr(err, errlen, "%s: '%s': byte 0x%02x is not allowed", tname,
				       s, c);
			free(n);
			return -EINVAL;
		}
		if (++label > LABEL_MAX && !keyword) {
			seterr(err, errlen, "%s: '%s': a label is longer than %d characters", tname,
			       s, LABEL_MAX);
			free(n);
			return -EINVAL;
		}
	}
	if (!keyword && label == 0)
		goto empty_label;
	*out = n;
	return 0;
empty_label:
	seterr(err, errlen, "%s: '%s' has an empty label", tname, s);
	free(n);
	return -EINVAL;
}

/* Every alternative of a name condition, packed into one block: the pointer array followed by
 * the strings. 100,000 one-name rules would otherwise hold two small allocations each (pointer
 * array, string) and the domain index target is under 2 MB per 10,000 rules, parse included. */
static int parse_names(const char *tname, char **alts, size_t n, bool keyword, char ***out,
		       char *err, size_t errlen)
{
	char **tmp = calloc(n ? n : 1, sizeof(*tmp)), **block, *q;
	size_t total = n * sizeof(*block);
	int rc = 0;

	if (!tmp)
		return -ENOMEM;
	for (size_t i = 0; i < n && !rc; i++) {
		rc = parse_domain(tname, alts[i], keyword, &tmp[i], err, errlen);
		if (!rc)
			total += strlen(tmp[i]) + 1;
	}
	block = rc ? NULL : malloc(total);
	if (!rc && !block)
		rc = -ENOMEM;
	q = block ? (char *)(block + n) : NULL;
	for (size_t i = 0; i < n; i++) {
		if (block && tmp[i]) {
			size_t len = strlen(tmp[i]) + 1;

			memcpy(q, tmp[i], len);
			block[i] = q;
			q += len;
		}
		free(tmp[i]);
	}
	free(tmp);
	if (rc)
		return rc;
	*out = block;
	return 0;
}

/*
 * glibc's regcomp expands repetitions into copies of the sub-expression: "x+" becomes "xx*",
 * "x{m,n}" n copies, so "a++++...+" or "((a{1,50}){1,50}){1,50}" needs memory exponential in
 * the pattern length (the rule fuzzer found the first). Estimate the expanded size the way
 * regcomp builds it (atoms count 1; '+' doubles the preceding atom or group; {m,n} multiplies
 * it by max(n, m + 1)) and refuse patterns above a budget no name pattern needs; the budget
 * also bounds matching, whose cost grows with the square of the expanded size. Repetition
 * bounds above the length of a name are refused outright. Back-references are refused too:
 * glibc accepts them in EREs and matching them can take exponential time.
 */
static bool regex_too_big(const char *p)
{
	unsigned long outer_total[REGEX_DEPTH_MAX];
	unsigned long total = 0, last = 0;
	int depth = 0;

	for (; *p; p++) {
		unsigned long copies = 1;

		switch (*p) {
		case '\\':
			if (p[1] >= '1' && p[1] <= '9')
				return true;
			if (p[1])
				p++;
			last = 1;
			total += 1;
			break;
		case '[':
			/* a bracket expression is one atom; ']' first (after an optional '^') is
			 * a member, and [:class:] [.x.] [=x=] may contain ']' */
			p++;
			if (*p == '^')
				p++;
			if (*p == ']')
				p++;
			while (*p && *p != ']') {
				if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
					char close = p[1];

					p += 2;
					while (*p && !(*p == close && p[1] == ']'))
						p++;
					if (*p)
						p++;
				}
				if (*p)
					p++;
			}
			if (!*p)
				return false; /* unterminated: regcomp reports it */
			last = 1;
			total += 1;
			break;
		case '(':
			if (depth == REGEX_DEPTH_MAX)
				return true;
			outer_total[depth] = total;
			depth++;
			total = last = 0;
			break;
		case ')':
			if (depth == 0) {
				last = 1; /* an unmatched ')' is an ordinary character */
				total += 1;
				break;
			}
			depth--;
			last = total ? total : 1;
			total = outer_total[depth] + last;
			break;
		case '|':
			last = 0;
			break;
		case '+':
			copies = 2;
			break;
		case '{': {
			unsigned long m = 0, n = 0;
			bool comma = false, has_n = false;
			const char *q = p + 1;

			while (*q >= '0' && *q <= '9' && m <= DOMAIN_MAX)
				m = m * 10 + (unsigned long)(*q++ - '0');
			if (*q == ',') {
				comma = true;
				q++;
				while (*q >= '0' && *q <= '9' && n <= DOMAIN_MAX) {
					n = n * 10 + (unsigned long)(*q++ - '0');
					has_n = true;
				}
			}
			if (m > DOMAIN_MAX || n > DOMAIN_MAX)
				return true;
			if (*q != '}') { /* not a bound: an ordinary character to regcomp */
				last = 1;
				total += 1;
				break;
			}
			p = q;
			copies = has_n ? n : comma ? m + 1 : m;
			if (copies == 0)
				copies = 1;
			break;
		}
		default: /* '*', '?', anchors, '.', ordinary characters */
			if (*p != '*' && *p != '?') {
				last = 1;
				total += 1;
			}
			break;
		}
		if (copies > 1) {
			total += last * (copies - 1);
			last *= copies;
		}
		if (total > REGEX_EXPANDED_MAX || last > REGEX_EXPANDED_MAX)
			return true;
	}
	return false;
}

static int parse_target(const char *s, struct rule *out, char *err, size_t errlen)
{
	static const char *const reserved[] = {"INSPECT", "REJECT"};
	size_t len = strlen(s);

	if (len == 0) {
		seterr(err, errlen, "missing target (expected DIRECT, BLOCK or an outbound name)");
		return -EINVAL;
	}
	if (!strcasecmp(s, "DIRECT")) {
		out->kind = RT_DIRECT;
	} else if (!strcasecmp(s, "BLOCK")) {
		out->kind = RT_BLOCK;
	} else if (!strcasecmp(s, "DNS")) {
		out->kind = RT_DNS; /* the [dns] plugin answers the flow's queries */
	} else {
		for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
			if (!strcasecmp(s, reserved[i])) {
				seterr(err, errlen,
				       "target '%s' is reserved (use DIRECT, BLOCK or an outbound "
				       "name)",
				       s);
				return -EINVAL;
			}
		}
		bool ok = len <= TARGET_NAME_MAX;

		for (size_t i = 0; ok && i < len; i++)
			ok = isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_';
		if (!ok) {
			seterr(err, errlen,
			       "invalid target '%.64s' (expected DIRECT, BLOCK or an outbound name "
			       "of 1-%d characters A-Z a-z 0-9 _ -)",
			       s, TARGET_NAME_MAX);
			return -EINVAL;
		}
		out->kind = RT_OUTBOUND;
	}
	out->target = strdup(s);
	return out->target ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------------------------------ */
/* Conditions                                                                                  */

static const struct {
	const char *name;
	enum rule_cond_type type;
} cond_types[] = {
	{"dst-cidr", RC_DST_CIDR},
	{"src-cidr", RC_SRC_CIDR},
	{"dport", RC_DPORT},
	{"sport", RC_SPORT},
	{"proto", RC_PROTO},
	{"ipv", RC_IPVER},
	{"domain", RC_DOMAIN},
	{"domain-suffix", RC_DOMAIN_SUFFIX},
	{"domain-keyword", RC_DOMAIN_KEYWORD},
	{"domain-regex", RC_DOMAIN_REGEX},
};

static const char *type_name(enum rule_cond_type t)
{
	for (size_t i = 0; i < sizeof(cond_types) / sizeof(cond_types[0]); i++)
		if (cond_types[i].type == t)
			return cond_types[i].name;
	return "?";
}

static bool is_domain_type(enum rule_cond_type t)
{
	return t == RC_DOMAIN || t == RC_DOMAIN_SUFFIX || t == RC_DOMAIN_KEYWORD ||
	       t == RC_DOMAIN_REGEX;
}

static void cond_free(struct rule_cond *c)
{
	switch (c->type) {
	case RC_DST_CIDR:
	case RC_SRC_CIDR:
		free(c->cidrs);
		break;
	case RC_DPORT:
	case RC_SPORT:
		free(c->ports);
		break;
	case RC_PROTO:
		free(c->l4masks);
		break;
	case RC_IPVER:
		free(c->ipmasks);
		break;
	case RC_DOMAIN:
	case RC_DOMAIN_SUFFIX:
	case RC_DOMAIN_KEYWORD:
	case RC_DOMAIN_REGEX:
		/* full, suffix and keyword names are packed into the names block itself */
		if (c->names && c->type == RC_DOMAIN_REGEX)
			for (size_t i = 0; i < c->n; i++)
				free(c->names[i]);
		free(c->names);
		if (c->regexes) {
			regex_t *re = c->regexes;

			for (size_t i = 0; i < c->n; i++)
				regfree(&re[i]);
			free(re);
		}
		break;
	}
	memset(c, 0, sizeof(*c));
}

static int cmp_cidr(const void *a, const void *b)
{
	const struct rule_cidr *x = a, *y = b;

	if (x->plen != y->plen)
		return x->plen < y->plen ? -1 : 1;
	return memcmp(x->addr, y->addr, 16);
}

/* Sort by (plen, addr) and drop duplicates: the matcher binary-searches each prefix length. */
static void cidrs_normalise(struct rule_cond *c)
{
	size_t out = 0;

	if (c->n < 2)
		return;
	qsort(c->cidrs, c->n, sizeof(c->cidrs[0]), cmp_cidr);
	for (size_t i = 0; i < c->n; i++)
		if (out == 0 || cmp_cidr(&c->cidrs[out - 1], &c->cidrs[i]))
			c->cidrs[out++] = c->cidrs[i];
	c->n = out;
}

struct cidr_vec {
	struct rule_cidr *v;
	size_t n, cap;
};

static int cidr_push(struct cidr_vec *cv, const struct rule_cidr *c)
{
	if (array_grow(&cv->v, &cv->cap, cv->n + 1, sizeof(*cv->v)))
		return -ENOMEM;
	cv->v[cv->n++] = *c;
	return 0;
}

/* Read an @file of CIDRs. Every bad line is reported ("FILE:LINE: message", one per line of
 * err, as many as fit, then a count of the rest). */
static int load_cidr_file(const char *tname, const char *spec, const char *base_dir,
			  struct cidr_vec *cv, char *err, size_t errlen)
{
	char *path = NULL, *line = NULL;
	size_t linecap = 0, lineno = 0, entries = 0, bad = 0, shown = 0;
	ssize_t len;
	struct stat st;
	FILE *f;
	int fd = -1, rc = 0;

	if (!*spec) {
		seterr(err, errlen, "%s: '@' needs a file name", tname);
		return -EINVAL;
	}
	if (spec[0] != '/' && base_dir && *base_dir) {
		if (asprintf(&path, "%s/%s", base_dir, spec) < 0)
			return -ENOMEM;
	} else {
		path = strdup(spec);
		if (!path)
			return -ENOMEM;
	}
	/* O_NONBLOCK: a FIFO must not block the daemon's reload; only regular files of bounded
	 * size are lists (not /dev/zero, not /proc/kcore) */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		seterr(err, errlen, "%s: cannot open '%s': %s", tname, path, strerror(errno));
		rc = -EINVAL; /* the message carries the reason; rule_parse's contract is -EINVAL */
		goto err_fd;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > RULE_FILE_MAX_BYTES) {
		seterr(err, errlen, "%s: '%s' is %s", tname, path,
		       S_ISREG(st.st_mode) ? "larger than 256 MiB" : "not a regular file");
		rc = -EINVAL;
		goto err_fd;
	}
	f = fdopen(fd, "r");
	if (!f) {
		rc = -ENOMEM;
		goto err_fd;
	}
	fd = -1; /* owned by f now */
	if (err && errlen)
		err[0] = '\0';
	while ((len = getline(&line, &linecap, f)) >= 0) {
		char msg[192];
		struct rule_cidr c;
		char *s;

		lineno++;
		msg[0] = '\0';
		if ((size_t)len != strlen(line)) {
			snprintf(msg, sizeof(msg), "NUL byte in line");
		} else if (len > RULE_FILE_LINE_MAX) {
			snprintf(msg, sizeof(msg), "line too long (%zd bytes, max %d)", len,
				 RULE_FILE_LINE_MAX);
		} else {
			char *hash = strchr(line, '#');

			if (hash)
				*hash = '\0';
			s = trim(line);
			if (!*s)
				continue;
			if (entries >= RULE_FILE_MAX_ENTRIES) {
				seterr(err, errlen, "%s: '%s' has more than %d entries", tname,
				       path, RULE_FILE_MAX_ENTRIES);
				rc = -EINVAL;
				goto err_read;
			}
			if (parse_cidr_msg(s, &c, msg, sizeof(msg)) == 0) {
				if (cidr_push(cv, &c)) {
					rc = -ENOMEM;
					goto err_read;
				}
				entries++;
				continue;
			}
		}
		bad++;
		/* keep room for the summary line so the count is always reported */
		if (err && strnlen(err, errlen) + strlen(path) + strlen(msg) + 32 + 80 < errlen) {
			adderr(err, errlen, "%s%s:%zu: %s", shown ? "\n" : "", path, lineno, msg);
			shown++;
		}
	}
	if (ferror(f)) {
		rc = -EINVAL;
		seterr(err, errlen, "%s: error reading '%s'", tname, path);
		goto err_read;
	}
	if (bad) {
		if (bad > shown)
			adderr(err, errlen, "%s%s: %zu more bad line%s not shown",
			       shown ? "\n" : "", path, bad - shown, bad - shown == 1 ? "" : "s");
		rc = -EINVAL;
		goto err_read;
	}
	if (entries == 0) {
		seterr(err, errlen, "%s: '%s' has no entries", tname, path);
		rc = -EINVAL;
	}
err_read:
	free(line);
	fclose(f);
err_fd:
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

/* Split s at every `sep` into trimmed, non-empty pieces (s is modified). */
static int split(char *s, char sep, char ***out, size_t *n)
{
	size_t cnt = 1, i = 0;
	char **v;

	for (char *p = s; *p; p++)
		if (*p == sep)
			cnt++;
	v = calloc(cnt, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (char *p = s;;) {
		char *q = strchr(p, sep);

		if (q)
			*q = '\0';
		v[i++] = trim(p);
		if (!q)
			break;
		p = q + 1;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int parse_cond(char *text, const char *base_dir, struct rule_cond *c, char *err,
		      size_t errlen)
{
	char *colon, *tname_s, *value;
	char **alts = NULL;
	size_t n_alts = 0;
	const char *tname = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	if (*text == '!') {
		c->negate = true;
		text = trim(text + 1);
		if (*text == '!') {
			seterr(err, errlen, "double negation in '!%s'", text);
			return -EINVAL;
		}
	}
	colon = strchr(text, ':');
	if (!colon) {
		seterr(err, errlen, "condition '%.64s' has no ':' (expected TYPE:VALUE)", text);
		return -EINVAL;
	}
	*colon = '\0';
	tname_s = trim(text);
	value = trim(colon + 1);
	for (size_t i = 0; i < sizeof(cond_types) / sizeof(cond_types[0]); i++) {
		if (!strcmp(tname_s, cond_types[i].name)) {
			c->type = cond_types[i].type;
			tname = cond_types[i].name;
		}
	}
	if (!tname) {
		seterr(err, errlen,
		       "unknown condition type '%.64s' (expected dst-cidr, src-cidr, dport, sport, "
		       "proto, ipv, domain, domain-suffix, domain-keyword or domain-regex)",
		       tname_s);
		return -EINVAL;
	}
	if (!*value) {
		seterr(err, errlen, "%s: empty value", tname);
		return -EINVAL;
	}

	if (c->type == RC_DOMAIN_REGEX) {
		/* One POSIX ERE: '|' inside it is the regex's own alternation, which means the
		 * same as OR-ed alternatives, so the value is not split. */
		regex_t *re;

		if (strlen(value) > REGEX_MAX) {
			seterr(err, errlen, "%s: pattern longer than %d characters", tname,
			       REGEX_MAX);
			return -EINVAL;
		}
		if (regex_too_big(value)) {
			seterr(err, errlen,
			       "%s: '%s' is too complex (back-references, or repetitions that "
			       "expand too far; names are at most %d characters)",
			       tname, value, DOMAIN_MAX);
			return -EINVAL;
		}
		c->names = calloc(1, sizeof(*c->names));
		re = calloc(1, sizeof(*re));
		if (!c->names || !re) {
			free(re);
			rc = -ENOMEM;
			goto err_cond;
		}
		c->names[0] = strdup(value);
		if (!c->names[0]) {
			free(re);
			rc = -ENOMEM;
			goto err_cond;
		}
		int rrc = regcomp(re, value, REG_EXTENDED | REG_NOSUB | REG_ICASE);

		if (rrc) {
			char msg[128];

			regerror(rrc, re, msg, sizeof(msg));
			seterr(err, errlen, "%s: invalid regex '%s': %s", tname, value, msg);
			free(re);
			c->n = 1; /* so cond_free frees names[0] */
			rc = -EINVAL;
			goto err_cond;
		}
		c->regexes = re;
		c->n = 1;
		return 0;
	}

	rc = split(value, '|', &alts, &n_alts);
	if (rc)
		return rc;
	for (size_t i = 0; i < n_alts; i++) {
		if (!*alts[i]) {
			seterr(err, errlen, "%s: empty alternative (stray '|'?)", tname);
			rc = -EINVAL;
			goto err_alts;
		}
	}

	switch (c->type) {
	case RC_DST_CIDR:
	case RC_SRC_CIDR: {
		struct cidr_vec cv = {0};

		for (size_t i = 0; i < n_alts; i++) {
			struct rule_cidr one;
			char msg[256];

			if (alts[i][0] == '@') {
				rc = load_cidr_file(tname, trim(alts[i] + 1), base_dir, &cv, err,
						    errlen);
			} else {
				rc = parse_cidr_msg(alts[i], &one, msg, sizeof(msg));
				if (rc)
					seterr(err, errlen, "%s: %s", tname, msg);
				else
					rc = cidr_push(&cv, &one);
			}
			if (rc) {
				free(cv.v);
				goto err_alts;
			}
		}
		c->cidrs = cv.v;
		c->n = cv.n;
		cidrs_normalise(c);
		break;
	}
	case RC_DPORT:
	case RC_SPORT:
		c->ports = calloc(n_alts, sizeof(*c->ports));
		if (!c->ports) {
			rc = -ENOMEM;
			goto err_alts;
		}
		c->n = n_alts;
		for (size_t i = 0; i < n_alts; i++) {
			rc = parse_prange(tname, alts[i], &c->ports[i], err, errlen);
			if (rc)
				goto err_alts;
		}
		break;
	case RC_PROTO:
	case RC_IPVER: {
		uint8_t *m = calloc(n_alts, 1), all = 0;

		if (!m) {
			rc = -ENOMEM;
			goto err_alts;
		}
		if (c->type == RC_PROTO)
			c->l4masks = m;
		else
			c->ipmasks = m;
		c->n = n_alts;
		for (size_t i = 0; i < n_alts; i++) {
			const char *v = alts[i];

			if (c->type == RC_PROTO && !strcmp(v, "tcp"))
				m[i] = XP_L4_TCP;
			else if (c->type == RC_PROTO && !strcmp(v, "udp"))
				m[i] = XP_L4_UDP;
			else if (c->type == RC_PROTO && !strcmp(v, "icmp"))
				m[i] = XP_L4_ICMP;
			else if (c->type == RC_IPVER && !strcmp(v, "4"))
				m[i] = XP_IP_V4;
			else if (c->type == RC_IPVER && !strcmp(v, "6"))
				m[i] = XP_IP_V6;
			if (!m[i]) {
				seterr(err, errlen, "%s: invalid value '%.64s' (expected %s)",
				       tname, v,
				       c->type == RC_PROTO ? "tcp, udp or icmp" : "4 or 6");
				rc = -EINVAL;
				goto err_alts;
			}
			all |= m[i];
		}
		if (c->negate && c->type == RC_IPVER && all == (XP_IP_V4 | XP_IP_V6)) {
			seterr(err, errlen, "'!ipv:4|6' can never match");
			rc = -EINVAL;
			goto err_alts;
		}
		break;
	}
	case RC_DOMAIN:
	case RC_DOMAIN_SUFFIX:
	case RC_DOMAIN_KEYWORD:
		rc = parse_names(tname, alts, n_alts, c->type == RC_DOMAIN_KEYWORD, &c->names, err,
				 errlen);
		if (rc)
			goto err_alts;
		c->n = n_alts;
		break;
	case RC_DOMAIN_REGEX:
		break; /* handled above */
	}
	free(alts);
	return 0;

err_alts:
	free(alts);
err_cond:
	if (rc == -ENOMEM)
		seterr(err, errlen, "out of memory");
	cond_free(c);
	return rc;
}

int rule_parse(const char *text, bool is_fallback, const char *base_dir, struct rule *out,
	       char *err, size_t errlen)
{
	char *buf, *conds, *comma;
	char **parts = NULL;
	size_t n_parts = 0;
	int rc;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (err && errlen)
		err[0] = '\0';
	if (!text) {
		seterr(err, errlen, "missing rule text");
		return -EINVAL;
	}
	buf = strdup(text);
	if (!buf) {
		seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (is_fallback) {
		char *t = trim(buf);

		if (strpbrk(t, ",&|:!")) {
			seterr(err, errlen,
			       "fallback takes only a target (DIRECT, BLOCK or an outbound name), "
			       "got '%.64s'",
			       t);
			rc = -EINVAL;
			goto err_buf;
		}
		rc = parse_target(t, out, err, errlen);
		if (!rc && out->kind == RT_DNS) {
			/* Every flow nothing else matched is not a DNS query. */
			seterr(err, errlen, "fallback cannot be DNS (use a rule such as "
					    "'dport:53, DNS')");
			free(out->target);
			out->target = NULL;
			rc = -EINVAL;
		}
		if (rc)
			goto err_rule;
		free(buf);
		return 0;
	}

	comma = strrchr(buf, ',');
	if (!comma) {
		seterr(err, errlen,
		       "missing target: expected 'CONDITION [& CONDITION ...], TARGET'");
		rc = -EINVAL;
		goto err_buf;
	}
	*comma = '\0';
	rc = parse_target(trim(comma + 1), out, err, errlen);
	if (rc)
		goto err_rule;
	conds = trim(buf);
	if (!*conds) {
		seterr(err, errlen,
		       "no condition before the target (use 'fallback = TARGET' for a catch-all)");
		rc = -EINVAL;
		goto err_rule;
	}
	rc = split(conds, '&', &parts, &n_parts);
	if (rc)
		goto err_rule;
	out->conds = calloc(n_parts, sizeof(*out->conds));
	if (!out->conds) {
		rc = -ENOMEM;
		goto err_rule;
	}
	for (size_t i = 0; i < n_parts; i++) {
		if (!*parts[i]) {
			seterr(err, errlen, "empty condition (dangling '&'?)");
			rc = -EINVAL;
			goto err_rule;
		}
		rc = parse_cond(parts[i], base_dir, &out->conds[i], err, errlen);
		if (rc)
			goto err_rule;
		out->n_conds++;
		for (size_t j = 0; j < i; j++) {
			if (out->conds[j].type == out->conds[i].type) {
				seterr(err, errlen,
				       "condition type '%s' appears twice in one rule; use "
				       "alternatives (%s:A|B) or two rules",
				       type_name(out->conds[i].type),
				       type_name(out->conds[i].type));
				rc = -EINVAL;
				goto err_rule;
			}
		}
		if (is_domain_type(out->conds[i].type))
			out->has_domain = true;
	}
	free(parts);
	free(buf);
	return 0;

err_rule:
	free(parts);
	rule_free(out);
err_buf:
	if (rc == -ENOMEM)
		seterr(err, errlen, "out of memory");
	free(buf);
	return rc;
}

void rule_free(struct rule *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_conds; i++)
		cond_free(&r->conds[i]);
	free(r->conds);
	free(r->target);
	memset(r, 0, sizeof(*r));
}

void rule_list_free(struct rule_list *rl)
{
	if (!rl)
		return;
	for (size_t i = 0; i < rl->n; i++)
		rule_free(&rl->rules[i]);
	domain_index_free(rl->index);
	free(rl->rules);
	rule_free(&rl->fallback);
	memset(rl, 0, sizeof(*rl));
}

/* ------------------------------------------------------------------------------------------ */
/* Userspace matcher                                                                           */

static uint8_t flow_l4_bit(uint8_t proto)
{
	switch (proto) {
	case 6: /* IPPROTO_TCP */
		return XP_L4_TCP;
	case 17: /* IPPROTO_UDP */
		return XP_L4_UDP;
	case 1:	 /* IPPROTO_ICMP */
	case 58: /* IPPROTO_ICMPV6 */
		return XP_L4_ICMP;
	default:
		return XP_L4_OTHER;
	}
}

/* cidrs are sorted by (plen, addr): binary-search each prefix-length group. */
static bool cidrs_match(const struct rule_cond *c, const uint8_t addr[16])
{
	size_t i = 0;

	while (i < c->n) {
		uint8_t plen = c->cidrs[i].plen;
		size_t end = i;

		while (end < c->n && c->cidrs[end].plen == plen)
			end++;
		struct rule_cidr key = {.plen = plen};

		memcpy(key.addr, addr, 16);
		mask_addr(key.addr, plen);
		size_t lo = i, hi = end;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int d = memcmp(c->cidrs[mid].addr, key.addr, 16);

			if (d == 0) {
				/* ::/0 and friends are found for IPv4 too, but do not match */
				if (cidr_contains(&c->cidrs[mid], addr))
					return true;
				break;
			}
			if (d < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		i = end;
	}
	return false;
}

static bool ports_match(const struct rule_cond *c, uint16_t port)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->ports[i].lo <= port && port <= c->ports[i].hi)
			return true;
	return false;
}

/* Lower-case copy without one trailing dot; false when it is not a plausible name. */
static bool norm_name(const char *in, char out[DOMAIN_MAX + 1])
{
	size_t len = strnlen(in, DOMAIN_MAX + 2);

	if (len > 1 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[len] = '\0';
	return true;
}

static bool domain_match(const struct rule_cond *c, const char *name)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < c->n; i++) {
		const char *s = c->names[i];
		size_t sl = strlen(s);

		switch (c->type) {
		case RC_DOMAIN:
			if (!strcmp(name, s))
				return true;
			break;
		case RC_DOMAIN_SUFFIX:
			if (nl == sl ? !strcmp(name, s)
				     : nl > sl && name[nl - sl - 1] == '.' &&
					       !strcmp(name + nl - sl, s))
				return true;
			break;
		case RC_DOMAIN_KEYWORD:
			if (strstr(name, s))
				return true;
			break;
		case RC_DOMAIN_REGEX:
			if (regexec(&((regex_t *)c->regexes)[i], name, 0, NULL, 0) == 0)
				return true;
			break;
		default:
			break;
		}
	}
	return false;
}

static bool cond_match(const struct rule_cond *c, const struct rule_flow *f, const char *name)
{
	bool m = false;

	switch (c->type) {
	case RC_DST_CIDR:
		m = cidrs_match(c, f->daddr);
		break;
	case RC_SRC_CIDR:
		m = cidrs_match(c, f->saddr);
		break;
	case RC_DPORT:
		m = ports_match(c, f->dport);
		break;
	case RC_SPORT:
		m = ports_match(c, f->sport);
		break;
	case RC_PROTO:
		for (size_t i = 0; i < c->n; i++)
			m |= (c->l4masks[i] & flow_l4_bit(f->l4proto)) != 0;
		break;
	case RC_IPVER:
		for (size_t i = 0; i < c->n; i++)
			m |= (c->ipmasks[i] & (addr_is_v4(f->daddr) ? XP_IP_V4 : XP_IP_V6)) != 0;
		break;
	case RC_DOMAIN:
	case RC_DOMAIN_SUFFIX:
	case RC_DOMAIN_KEYWORD:
	case RC_DOMAIN_REGEX:
		/* unknown is not "not example.com": no name, no match, negated or not */
		if (!name)
			return false;
		m = domain_match(c, name);
		break;
	}
	return m != c->negate;
}

/* `skip`: a condition already known to hold (the index found the rule through it), or -1. */
static bool match_named(const struct rule *r, const struct rule_flow *f, const char *name,
			int skip)
{
	if (r->n_conds == 0)
		return false; /* only the fallback has none; it is not a rule */
	for (size_t i = 0; i < r->n_conds; i++)
		if ((int)i != skip && !cond_match(&r->conds[i], f, name))
			return false;
	return true;
}

bool rule_match(const struct rule *r, const struct rule_flow *f)
{
	char buf[DOMAIN_MAX + 1];
	const char *name = NULL;

	if (!r || !f)
		return false;
	if (r->has_domain && f->domain && norm_name(f->domain, buf))
		name = buf;
	return match_named(r, f, name, -1);
}

const struct rule *rule_list_match(const struct rule_list *rl, const struct rule_flow *f)
{
	char buf[DOMAIN_MAX + 1];
	const char *name = NULL;

	if (f && f->domain && norm_name(f->domain, buf))
		name = buf;
	if (f && domain_index_covers(rl->index, rl->rules, rl->n)) {
		struct domain_iter it;
		long i;
		int skip;

		domain_iter_init(&it, rl->index, name);
		while ((i = domain_iter_next(&it, &skip)) >= 0)
			if (match_named(&rl->rules[i], f, name, skip))
				return &rl->rules[i];
		return &rl->fallback;
	}
	for (size_t i = 0; f && i < rl->n; i++)
		if (match_named(&rl->rules[i], f, name, -1))
			return &rl->rules[i];
	return &rl->fallback;
}

int rule_list_index(struct rule_list *rl)
{
	domain_index_free(rl->index);
	rl->index = domain_index_build(rl->rules, rl->n);
	return rl->index ? 0 : -errno;
}

/* Which RF_KNOWN_* bit a condition needs. */
static unsigned cond_field(enum rule_cond_type t)
{
	switch (t) {
	case RC_DST_CIDR:
	case RC_IPVER:
		return RF_KNOWN_DST;
	case RC_SRC_CIDR:
		return RF_KNOWN_SRC;
	case RC_DPORT:
	case RC_SPORT:
		return RF_KNOWN_PORTS;
	case RC_PROTO:
		return RF_KNOWN_PROTO;
	default:
		return RF_KNOWN_DOMAIN;
	}
}

/* 1: all conditions known and true; 0: a known condition is false; -1: the known ones are true
 * and at least one is unknown ("maybe"). */
static int match_partial(const struct rule *r, const struct rule_flow *f, const char *name,
			 unsigned known, int skip)
{
	bool maybe = false;

	if (r->n_conds == 0)
		return 0;
	for (size_t i = 0; i < r->n_conds; i++) {
		const struct rule_cond *c = &r->conds[i];

		if ((int)i == skip)
			continue;
		if (!(known & cond_field(c->type)))
			maybe = true;
		else if (!cond_match(c, f, name))
			return 0;
	}
	return maybe ? -1 : 1;
}

const struct rule *rule_list_match_partial(const struct rule_list *rl, const struct rule_flow *f,
					   unsigned known, bool *partial)
{
	char buf[DOMAIN_MAX + 1];
	const char *name = NULL;

	if (partial)
		*partial = false;
	if (!f)
		return &rl->fallback;
	/* an implausible name is as good as none; a name given without RF_KNOWN_DOMAIN is not
	 * trusted either (unknown means unknown) */
	if ((known & RF_KNOWN_DOMAIN) && f->domain && norm_name(f->domain, buf))
		name = buf;
	/* the index needs the name known (or known absent); an unknown name makes every domain
	 * rule a candidate, so that case walks the list */
	if ((known & RF_KNOWN_DOMAIN) && domain_index_covers(rl->index, rl->rules, rl->n)) {
		struct domain_iter it;
		long i;
		int skip, m;

		domain_iter_init(&it, rl->index, name);
		while ((i = domain_iter_next(&it, &skip)) >= 0) {
			m = match_partial(&rl->rules[i], f, name, known, skip);
			if (m == 0)
				continue;
			if (partial)
				*partial = m < 0;
			return &rl->rules[i];
		}
		return &rl->fallback;
	}
	for (size_t i = 0; i < rl->n; i++) {
		int m = match_partial(&rl->rules[i], f, name, known, -1);

		if (m == 0)
			continue;
		if (partial)
			*partial = m < 0;
		return &rl->rules[i];
	}
	return &rl->fallback;
}

/* ------------------------------------------------------------------------------------------ */
/* Compiler                                                                                    */

struct target {
	uint8_t verdict;
	uint16_t outbound_id;
	uint32_t rule_id;
};

struct compiler {
	uint32_t gen;
	uint32_t next_set;
	rule_outbound_id_fn outbound_id;
	void *ctx;
	char *err;
	size_t errlen;
	size_t cap_rules, cap_cidrs, cap_pranges;
	struct rule_image *img;
	/* [sniff]: domain rules stand in as these copies without their domain conditions; their
	 * verdict is XP_V_INSPECT */
	const struct rule *insp;
	size_t n_insp;
	struct rule_cond *insp_conds_base; /* owned by rules_compile */
};

static int resolve(struct compiler *cc, const struct rule *r, struct target *t)
{
	t->rule_id = r->id;
	t->outbound_id = 0;
	if (cc->n_insp && r >= cc->insp && r < cc->insp + cc->n_insp) {
		t->verdict = XP_V_INSPECT;
		return 0;
	}
	switch (r->kind) {
	case RT_BLOCK:
		t->verdict = XP_V_BLOCK;
		return 0;
	case RT_OUTBOUND: {
		int id = cc->outbound_id ? cc->outbound_id(cc->ctx, r->target) : -ENOENT;

		if (id < 0 || id > UINT16_MAX) {
			if (r->id)
				seterr(cc->err, cc->errlen, "unknown outbound '%s' (rule %u)",
				       r->target, r->id);
			else
				seterr(cc->err, cc->errlen, "unknown outbound '%s' (fallback)",
				       r->target);
			return id < 0 ? id : -ERANGE;
		}
		t->verdict = XP_V_PROXY;
		t->outbound_id = (uint16_t)id;
		return 0;
	}
	case RT_DNS:
		t->verdict = XP_V_DNS;
		return 0;
	case RT_DIRECT:
	default: /* a zeroed fallback means "no fallback line": DIRECT */
		t->verdict = XP_V_DIRECT;
		return 0;
	}
}

static struct xp_rule *new_krule(struct compiler *cc, const struct target *t)
{
	struct rule_image *img = cc->img;
	struct xp_rule *k;

	if (array_grow(&img->rules, &cc->cap_rules, img->n_rules + 1, sizeof(*img->rules)))
		return NULL;
	k = &img->rules[img->n_rules++];
	memset(k, 0, sizeof(*k));
	k->rule_id = t->rule_id;
	k->verdict = t->verdict;
	k->outbound_id = t->outbound_id;
	k->dport_hi = 65535;
	k->sport_hi = 65535;
	k->take = XP_TAKE_RULE;
	return k;
}

static int add_cidr(struct compiler *cc, uint32_t set_id, const struct rule_cidr *c,
		    const struct target *t)
{
	struct rule_image *img = cc->img;
	struct rule_image_cidr *e;

	if (array_grow(&img->cidrs, &cc->cap_cidrs, img->n_cidrs + 1, sizeof(*img->cidrs)))
		return -ENOMEM;
	e = &img->cidrs[img->n_cidrs++];
	memset(e, 0, sizeof(*e));
	e->key.prefixlen = 32u + c->plen;
	e->key.set_id = htonl(set_id);
	memcpy(e->key.addr, c->addr, 16);
	e->val.rule_id = t ? t->rule_id : 0;
	e->val.outbound_id = t ? t->outbound_id : 0;
	e->val.verdict = t ? t->verdict : XP_V_NONE;
	return 0;
}

/* One prefix of a set being built, with the position (in the run) of the rule that listed it. */
struct sentry {
	struct rule_cidr c;
	size_t pos;
};

static int cmp_sentry(const void *a, const void *b)
{
	const struct sentry *x = a, *y = b;
	int d = memcmp(x->c.addr, y->c.addr, 16);

	if (d)
		return d;
	if (x->c.plen != y->c.plen)
		return x->c.plen < y->c.plen ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static bool pfx_covers(const struct rule_cidr *q, const struct rule_cidr *p)
{
	return q->plen <= p->plen && prefix_eq(p->addr, q->addr, q->plen);
}

/*
 * Emit a set from entries of one family (all IPv4 or all IPv6). Each distinct prefix gets the
 * earliest rule (lowest pos) among the prefixes that cover it, so a longest-prefix lookup
 * returns the first rule, in [route] order, that matches the address.
 *
 * Sorted by (address, length), a prefix comes after every prefix that covers it, and the
 * prefixes that cover the current one are exactly a stack of nested prefixes.
 */
static int emit_family(struct compiler *cc, uint32_t set_id, struct sentry *e, size_t n,
		       const struct target *targets)
{
	size_t *stack, sp = 0;
	size_t *best;
	int rc = 0;

	if (!n)
		return 0;
	qsort(e, n, sizeof(*e), cmp_sentry);
	stack = calloc(n, sizeof(*stack));
	best = calloc(n, sizeof(*best));
	if (!stack || !best) {
		rc = -ENOMEM;
		goto err_alloc;
	}
	for (size_t i = 0; i < n; i++) {
		/* duplicates sort with the lowest pos first: that one wins, skip the rest */
		if (i > 0 && e[i].c.plen == e[i - 1].c.plen &&
		    !memcmp(e[i].c.addr, e[i - 1].c.addr, 16))
			continue;
		while (sp > 0 && !pfx_covers(&e[stack[sp - 1]].c, &e[i].c))
			sp--;
		best[i] = e[i].pos;
		if (sp > 0 && best[stack[sp - 1]] < best[i])
			best[i] = best[stack[sp - 1]];
		stack[sp++] = i;
		rc = add_cidr(cc, set_id, &e[i].c, &targets[best[i]]);
		if (rc)
			goto err_alloc;
	}
err_alloc:
	free(best);
	free(stack);
	return rc;
}

/* Build set `set_id` from rules run[0..n) (their single CIDR condition of type `type`).
 * targets[k] is run[k]'s resolved target. */
static int emit_set(struct compiler *cc, uint32_t set_id, const struct rule *const *run, size_t n,
		    enum rule_cond_type type, const struct target *targets)
{
	struct sentry *v4 = NULL, *v6 = NULL;
	size_t n4 = 0, n6 = 0, total = 0;
	bool v6_covers_mapped = false, has_v4_all = false;
	static const struct rule_cidr mapped96 = {
		.addr = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
		.plen = 96,
	};
	int rc;

	for (size_t k = 0; k < n; k++)
		for (size_t j = 0; j < run[k]->n_conds; j++)
			if (run[k]->conds[j].type == type)
				total += run[k]->conds[j].n;
	v4 = calloc(total ? total : 1, sizeof(*v4));
	v6 = calloc(total ? total : 1, sizeof(*v6));
	if (!v4 || !v6) {
		rc = -ENOMEM;
		goto err_alloc;
	}
	for (size_t k = 0; k < n; k++) {
		for (size_t j = 0; j < run[k]->n_conds; j++) {
			const struct rule_cond *c = &run[k]->conds[j];

			if (c->type != type)
				continue;
			for (size_t i = 0; i < c->n; i++) {
				const struct rule_cidr *p = &c->cidrs[i];

				if (cidr_is_v4(p)) {
					v4[n4++] = (struct sentry){.c = *p, .pos = k};
					has_v4_all |= p->plen == 96;
				} else {
					v6[n6++] = (struct sentry){.c = *p, .pos = k};
					v6_covers_mapped |= pfx_covers(p, &mapped96);
				}
			}
		}
	}
	rc = emit_family(cc, set_id, v4, n4, targets);
	if (rc)
		goto err_alloc;
	rc = emit_family(cc, set_id, v6, n6, targets);
	if (rc)
		goto err_alloc;
	/* An IPv6 prefix covering ::ffff:0:0/96 would otherwise catch IPv4 lookups that no IPv4
	 * prefix matches: plug that hole (0.0.0.0/0, when present, is the same key and already
	 * carries the IPv4 value). */
	if (v6_covers_mapped && !has_v4_all)
		rc = add_cidr(cc, set_id, &mapped96, NULL);
err_alloc:
	free(v4);
	free(v6);
	return rc;
}

static int cmp_prange(const void *a, const void *b)
{
	const struct rule_prange *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return (x->hi > y->hi) - (x->hi < y->hi);
}

/* Sorted, merged, disjoint copy of a port condition's ranges (adjacent ranges merge too). */
static int merge_ports(const struct rule_cond *c, struct rule_prange **out, size_t *n_out)
{
	struct rule_prange *v = malloc(c->n * sizeof(*v));
	size_t n = 0;

	if (!v)
		return -ENOMEM;
	memcpy(v, c->ports, c->n * sizeof(*v));
	qsort(v, c->n, sizeof(*v), cmp_prange);
	for (size_t i = 0; i < c->n; i++) {
		if (n > 0 && (uint32_t)v[i].lo <= (uint32_t)v[n - 1].hi + 1) {
			if (v[i].hi > v[n - 1].hi)
				v[n - 1].hi = v[i].hi;
		} else {
			v[n++] = v[i];
		}
	}
	*out = v;
	*n_out = n;
	return 0;
}

static int add_prange(struct compiler *cc, uint16_t lo, uint16_t hi, const struct target *t)
{
	struct rule_image *img = cc->img;
	struct xp_prange *p;

	if (array_grow(&img->pranges, &cc->cap_pranges, img->n_pranges + 1, sizeof(*img->pranges)))
		return -ENOMEM;
	p = &img->pranges[img->n_pranges++];
	memset(p, 0, sizeof(*p));
	p->lo = lo;
	p->hi = hi;
	p->rule_id = t->rule_id;
	p->outbound_id = t->outbound_id;
	p->verdict = t->verdict;
	return 0;
}

static uint16_t prange_index(const struct compiler *cc, size_t i)
{
	/* only meaningful when the total stays within XP_MAX_PRANGES, which is checked last */
	return (uint16_t)(cc->gen * XP_MAX_PRANGES + (i < XP_MAX_PRANGES ? i : 0));
}

static uint32_t new_set_id(struct compiler *cc)
{
	return (cc->gen << 31) | cc->next_set++;
}

/* A rule on its own: one kernel rule, or several when sport has several ranges. */
static int emit_rule(struct compiler *cc, const struct rule *r)
{
	struct rule_prange *sp = NULL, *tmp = NULL;
	size_t n_sp = 0, n_tmp = 0;
	struct xp_rule base;
	struct target t;
	int rc;

	rc = resolve(cc, r, &t);
	if (rc)
		return rc;
	memset(&base, 0, sizeof(base));
	base.rule_id = t.rule_id;
	base.verdict = t.verdict;
	base.outbound_id = t.outbound_id;
	base.dport_hi = 65535;
	base.sport_hi = 65535;
	base.take = XP_TAKE_RULE;

	for (size_t i = 0; i < r->n_conds; i++) {
		const struct rule_cond *c = &r->conds[i];
		uint8_t m = 0;

		switch (c->type) {
		case RC_IPVER:
			for (size_t j = 0; j < c->n; j++)
				m |= c->ipmasks[j];
			base.ipmask = c->negate ? (uint8_t)(~m & (XP_IP_V4 | XP_IP_V6)) : m;
			break;
		case RC_PROTO:
			for (size_t j = 0; j < c->n; j++)
				m |= c->l4masks[j];
			base.l4mask = c->negate ? (uint8_t)(~m & 0xf) : m;
			break;
		case RC_DPORT:
			rc = merge_ports(c, &tmp, &n_tmp);
			if (rc)
				goto err_rule;
			if (n_tmp == 1) {
				base.dport_lo = tmp[0].lo;
				base.dport_hi = tmp[0].hi;
				if (c->negate)
					base.flags |= XP_RULE_F_NOT_DPORT;
			} else {
				base.prange_first = prange_index(cc, cc->img->n_pranges);
				base.prange_count =
					(uint16_t)(n_tmp > UINT16_MAX ? UINT16_MAX : n_tmp);
				for (size_t j = 0; j < n_tmp; j++) {
					rc = add_prange(cc, tmp[j].lo, tmp[j].hi, &t);
					if (rc)
						goto err_rule;
				}
				if (c->negate)
					base.flags |= XP_RULE_F_NOT_PRANGE;
			}
			free(tmp);
			tmp = NULL;
			break;
		case RC_SPORT:
			rc = merge_ports(c, &sp, &n_sp);
			if (rc)
				goto err_rule;
			if (n_sp == 1) {
				base.sport_lo = sp[0].lo;
				base.sport_hi = sp[0].hi;
				if (c->negate)
					base.flags |= XP_RULE_F_NOT_SPORT;
				free(sp);
				sp = NULL;
				n_sp = 0;
			} else if (c->negate) {
				/* not in any range = in one of the gaps, port 0 included: expand
				 * over the complement, which keeps OR semantics */
				struct rule_prange *g = calloc(n_sp + 1, sizeof(*g));
				size_t ng = 0;
				uint32_t next = 0;

				if (!g) {
					rc = -ENOMEM;
					goto err_rule;
				}
				for (size_t j = 0; j < n_sp; j++) {
					if (sp[j].lo > next)
						g[ng++] = (struct rule_prange){
							(uint16_t)next, (uint16_t)(sp[j].lo - 1)};
					next = (uint32_t)sp[j].hi + 1;
				}
				if (next <= 65535)
					g[ng++] = (struct rule_prange){(uint16_t)next, 65535};
				free(sp);
				sp = g;
				n_sp = ng;
			}
			break;
		case RC_DST_CIDR:
		case RC_SRC_CIDR: {
			uint32_t id = new_set_id(cc);
			const struct rule *one = r;

			rc = emit_set(cc, id, &one, 1, c->type, &t);
			if (rc)
				goto err_rule;
			if (c->type == RC_DST_CIDR) {
				base.dst_set = id;
				if (c->negate)
					base.flags |= XP_RULE_F_NOT_DST;
			} else {
				base.src_set = id;
				if (c->negate)
					base.flags |= XP_RULE_F_NOT_SRC;
			}
			break;
		}
		default:
			break; /* domain rules never reach the compiler */
		}
	}

	for (size_t j = 0; j < (n_sp ? n_sp : 1); j++) {
		struct xp_rule *k = new_krule(cc, &t);

		if (!k) {
			rc = -ENOMEM;
			goto err_rule;
		}
		*k = base;
		if (n_sp) {
			k->sport_lo = sp[j].lo;
			k->sport_hi = sp[j].hi;
		}
	}
err_rule:
	free(tmp);
	free(sp);
	return rc;
}

/* Union-find "next unpainted port" so painting a run costs O(65536 + ranges). */
static uint32_t next_free(uint32_t *nxt, uint32_t p)
{
	uint32_t root = p;

	while (nxt[root] != root)
		root = nxt[root];
	while (nxt[p] != root) {
		uint32_t n = nxt[p];

		nxt[p] = root;
		p = n;
	}
	return root;
}

/* A run of single-condition dport rules: every port gets the earliest rule covering it. */
static int emit_port_run(struct compiler *cc, const struct rule *const *run, size_t n,
			 const struct target *targets)
{
	uint32_t *owner = malloc(65536 * sizeof(*owner));
	uint32_t *nxt = malloc(65537 * sizeof(*nxt));
	size_t first = cc->img->n_pranges;
	struct xp_rule *k;
	int rc = 0;

	if (!owner || !nxt) {
		rc = -ENOMEM;
		goto err_alloc;
	}
	for (uint32_t p = 0; p <= 65536; p++)
		nxt[p] = p;
	for (uint32_t p = 0; p < 65536; p++)
		owner[p] = UINT32_MAX;
	for (size_t r = 0; r < n; r++) {
		const struct rule_cond *c = &run[r]->conds[0];

		for (size_t j = 0; j < c->n; j++) {
			for (uint32_t p = next_free(nxt, c->ports[j].lo); p <= c->ports[j].hi;
			     p = next_free(nxt, p)) {
				owner[p] = (uint32_t)r;
				nxt[p] = p + 1;
			}
		}
	}
	for (uint32_t p = 0; p < 65536;) {
		uint32_t q = p;

		while (q + 1 < 65536 && owner[q + 1] == owner[p])
			q++;
		if (owner[p] != UINT32_MAX) {
			rc = add_prange(cc, (uint16_t)p, (uint16_t)q, &targets[owner[p]]);
			if (rc)
				goto err_alloc;
		}
		p = q + 1;
	}
	k = new_krule(cc, &targets[0]);
	if (!k) {
		rc = -ENOMEM;
		goto err_alloc;
	}
	k->take = XP_TAKE_PORTS;
	k->prange_first = prange_index(cc, first);
	size_t cnt = cc->img->n_pranges - first;

	k->prange_count = (uint16_t)(cnt > UINT16_MAX ? UINT16_MAX : cnt);
err_alloc:
	free(owner);
	free(nxt);
	return rc;
}

static int emit_run(struct compiler *cc, const struct rule *const *run, size_t n)
{
	enum rule_cond_type type = run[0]->conds[0].type;
	struct target *targets;
	struct xp_rule *k;
	int rc = 0;

	targets = calloc(n, sizeof(*targets));
	if (!targets)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		rc = resolve(cc, run[i], &targets[i]);
		if (rc)
			goto err_targets;
	}
	if (type == RC_DPORT) {
		rc = emit_port_run(cc, run, n, targets);
		goto err_targets;
	}
	uint32_t id = new_set_id(cc);

	rc = emit_set(cc, id, run, n, type, targets);
	if (rc)
		goto err_targets;
	k = new_krule(cc, &targets[0]);
	if (!k) {
		rc = -ENOMEM;
		goto err_targets;
	}
	if (type == RC_DST_CIDR) {
		k->take = XP_TAKE_DST_SET;
		k->dst_set = id;
	} else {
		k->take = XP_TAKE_SRC_SET;
		k->src_set = id;
	}
err_targets:
	free(targets);
	return rc;
}

/* Same non-domain conditions (shallow copies of parsed ones), in the same order? */
static bool conds_equal(const struct rule *a, const struct rule *b)
{
	if (a->n_conds != b->n_conds)
		return false;
	for (size_t i = 0; i < a->n_conds; i++) {
		const struct rule_cond *x = &a->conds[i], *y = &b->conds[i];
		size_t sz;

		if (x->type != y->type || x->negate != y->negate || x->n != y->n)
			return false;
		switch (x->type) {
		case RC_DST_CIDR:
		case RC_SRC_CIDR:
			sz = sizeof(*x->cidrs);
			break;
		case RC_DPORT:
		case RC_SPORT:
			sz = sizeof(*x->ports);
			break;
		case RC_PROTO:
		case RC_IPVER:
			sz = 1;
			break;
		default:
			return false;
		}
		if (memcmp(x->cidrs, y->cidrs, x->n * sz))
			return false;
	}
	return true;
}

/* Kind of a rule that can join a merged run, or 0. */
static enum rule_cond_type merge_kind(const struct rule *r)
{
	if (r->n_conds != 1 || r->conds[0].negate)
		return 0;
	switch (r->conds[0].type) {
	case RC_DST_CIDR:
	case RC_SRC_CIDR:
	case RC_DPORT:
		return r->conds[0].type;
	default:
		return 0;
	}
}

int rules_compile(const struct rule_list *rl, uint32_t gen, rule_outbound_id_fn outbound_id,
		  void *ctx, struct rule_image *out, char *err, size_t errlen)
{
	struct compiler cc = {
		.gen = gen,
		.next_set = 1,
		.outbound_id = outbound_id,
		.ctx = ctx,
		.err = err,
		.errlen = errlen,
		.img = out,
	};
	const struct rule **kr = NULL;
	struct rule *insp = NULL;
	struct rule_cond *insp_conds = NULL;
	size_t nk = 0;
	struct target fb;
	int rc;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (err && errlen)
		err[0] = '\0';
	if (!rl || gen > 1) {
		seterr(err, errlen, "invalid arguments (generation %u)", gen);
		return -EINVAL;
	}
	out->gen = gen;
	rc = resolve(&cc, &rl->fallback, &fb);
	if (rc)
		goto err_image;
	if (rl->n) {
		kr = calloc(rl->n, sizeof(*kr));
		if (!kr) {
			rc = -ENOMEM;
			goto err_image;
		}
	}
	if (rl->inspect_domains) {
		size_t n_dom = 0, n_dconds = 0;

		for (size_t i = 0; i < rl->n; i++) {
			if (rl->rules[i].has_domain) {
				n_dom++;
				n_dconds += rl->rules[i].n_conds;
			}
		}
		insp = calloc(n_dom ? n_dom : 1, sizeof(*insp));
		insp_conds = calloc(n_dconds ? n_dconds : 1, sizeof(*insp_conds));
		cc.insp_conds_base = insp_conds;
		if (!insp || !insp_conds) {
			rc = -ENOMEM;
			goto err_image;
		}
		cc.insp = insp;
	}
	for (size_t i = 0; i < rl->n; i++)
		out->n_skipped += rl->rules[i].has_domain;
	for (size_t i = 0; i < rl->n; i++) {
		const struct rule *r = &rl->rules[i];

		if (!r->has_domain) {
			kr[nk++] = r;
			continue;
		}
		/* Without [sniff], domain rules never match in the kernel: dropping them first
		 * also lets the runs on either side of one merge, which is still first-match for
		 * every unnamed flow. */
		if (!rl->inspect_domains)
			continue;
		/* With [sniff], a flow that could match the rule must reach the sniffers: the rule
		 * without its domain conditions sends it there (XP_V_INSPECT). */
		struct rule *p = &insp[cc.n_insp];

		*p = *r;
		p->conds = insp_conds;
		p->n_conds = 0;
		p->has_domain = false;
		for (size_t j = 0; j < r->n_conds; j++)
			if (!is_domain_type(r->conds[j].type))
				p->conds[p->n_conds++] = r->conds[j];
		/* the same conditions as the INSPECT rule just before: nothing new can reach it
		 * in the kernel (consecutive pure domain rules become one INSPECT rule) */
		if (nk && kr[nk - 1] == p - 1 && conds_equal(p - 1, p))
			continue;
		insp_conds += p->n_conds;
		cc.n_insp++;
		kr[nk++] = p;
		/* an INSPECT rule with no condition catches every flow: what follows is never
		 * reached in the kernel */
		if (p->n_conds == 0)
			break;
	}
	for (size_t i = 0; i < nk;) {
		enum rule_cond_type kind = merge_kind(kr[i]);
		size_t j = i + 1;

		while (kind && j < nk && merge_kind(kr[j]) == kind)
			j++;
		if (j - i >= 2)
			rc = emit_run(&cc, kr + i, j - i);
		else
			rc = emit_rule(&cc, kr[i]);
		if (rc)
			goto err_image;
		i = j;
	}
	if (out->n_rules > XP_MAX_RULES) {
		seterr(err, errlen, "too many kernel rules: %zu (max %d)", out->n_rules,
		       XP_MAX_RULES);
		rc = -E2BIG;
		goto err_image;
	}
	if (out->n_pranges > XP_MAX_PRANGES) {
		seterr(err, errlen, "too many port intervals: %zu (max %d)", out->n_pranges,
		       XP_MAX_PRANGES);
		rc = -E2BIG;
		goto err_image;
	}
	out->set.first = gen * XP_MAX_RULES;
	out->set.count = (uint32_t)out->n_rules;
	out->set.fallback_rule_id = 0;
	out->set.fallback_verdict = fb.verdict;
	out->set.fallback_outbound = fb.outbound_id;
	free(kr);
	free(insp);
	free(cc.insp_conds_base);
	return 0;

err_image:
	if (rc == -ENOMEM)
		seterr(err, errlen, "out of memory");
	free(kr);
	free(insp);
	free(cc.insp_conds_base);
	rule_image_free(out);
	return rc;
}

void rule_image_free(struct rule_image *img)
{
	if (!img)
		return;
	free(img->rules);
	free(img->cidrs);
	free(img->pranges);
	memset(img, 0, sizeof(*img));
}
