/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * log - leveled, one-line-per-message logging to stderr.
 *
 * Every line is built in a local buffer and handed to the kernel with a single write(2), so
 * lines from several threads never interleave. A line is at most LOG_LINE_MAX bytes, which is
 * also PIPE_BUF: a write of that size into a pipe (journald, a supervisor) is atomic too.
 *
 * Messages may carry text from the network (sniffed names, plugin errors): control characters
 * are replaced so a peer cannot forge log lines or drive the terminal. A message with embedded
 * newlines becomes several lines, each with the full header, so every line stays greppable.
 *
 * Timestamps are local time with milliseconds, as on the rest of the router's logs.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 4096  /* bytes per line, newline included; PIPE_BUF on Linux */
#define LOG_MSG_MAX  16384 /* formatted message before splitting into lines */
#define LOG_HEAD_MAX 128   /* timestamp, level and "[prefix] " */
#define LOG_ELLIPSIS "..."

static atomic_int cur_level = XP_LOG_INFO;

static const char *const level_names[] = {
	[XP_LOG_ERROR] = "error", [XP_LOG_WARN] = "warn",   [XP_LOG_INFO] = "info",
	[XP_LOG_DEBUG] = "debug", [XP_LOG_TRACE] = "trace",
};

static const char *const level_tags[] = {
	[XP_LOG_ERROR] = "ERROR", [XP_LOG_WARN] = "WARN",   [XP_LOG_INFO] = "INFO",
	[XP_LOG_DEBUG] = "DEBUG", [XP_LOG_TRACE] = "TRACE",
};

static int clamp_level(int level)
{
	if (level < XP_LOG_ERROR)
		return XP_LOG_ERROR;
	if (level > XP_LOG_TRACE)
		return XP_LOG_TRACE;
	return level;
}

void log_set_level(int level)
{
	atomic_store_explicit(&cur_level, clamp_level(level), memory_order_relaxed);
}

int log_get_level(void)
{
	return atomic_load_explicit(&cur_level, memory_order_relaxed);
}

bool log_enabled(int level)
{
	return level <= log_get_level();
}

int log_level_parse(const char *s)
{
	if (!s)
		return -EINVAL;
	for (int i = XP_LOG_ERROR; i <= XP_LOG_TRACE; i++)
		if (!strcasecmp(s, level_names[i]))
			return i;
	return -EINVAL;
}

const char *log_level_name(int level)
{
	if (level < XP_LOG_ERROR || level > XP_LOG_TRACE)
		return "unknown";
	return level_names[level];
}

/* Write all of buf; a short write to a regular file or a pipe is retried so the line is never
 * lost half-way (it can only be short when stderr is something unusual). */
static void write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return; /* nowhere left to report it */
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* Length of the longest prefix of s[0..len) that does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len)
{
	size_t i = len;
	size_t back = 0;

	/* walk back over continuation bytes to the lead byte of the last sequence */
	while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (i == 0)
		return len;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need;

	if (lead < 0x80)
		return len; /* ASCII: the prefix already ends cleanly */
	if ((lead & 0xe0) == 0xc0)
		need = 1;
	else if ((lead & 0xf0) == 0xe0)
		need = 2;
	else if ((lead & 0xf8) == 0xf0)
		need = 3;
	else
		return len; /* not UTF-8 anyway */
	return back >= need ? len : i - 1;
}

static void emit_line(const char *head, size_t head_len, const char *msg, size_t msg_len)
{
	char line[LOG_LINE_MAX];
	size_t n = msg_len;
	bool cut = false;

	if (head_len > LOG_HEAD_MAX)
		head_len = LOG_HEAD_MAX;
	size_t room = sizeof(line) - 1 - head_len; /* keep one byte for '\n' */

	if (n > room) {
		n = utf8_cut(msg, room - (sizeof(LOG_ELLIPSIS) - 1));
		cut = true;
	}
	memcpy(line, head, head_len);
	size_t pos = head_len;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)msg[i];

		line[pos++] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
	}
	if (cut) {
		memcpy(line + pos, LOG_ELLIPSIS, sizeof(LOG_ELLIPSIS) - 1);
		pos += sizeof(LOG_ELLIPSIS) - 1;
	}
	line[pos++] = '\n';
	write_all(line, pos);
}

void log_vmsg(int level, const char *prefix, const char *fmt, va_list ap)
{
	char msg[LOG_MSG_MAX];
	char head[LOG_HEAD_MAX + 1];
	struct timespec ts;
	struct tm tm;
	int saved_errno = errno; /* callers may log between a failure and reading errno */

	if (!log_enabled(level))
		return;
	level = clamp_level(level);

	int m = vsnprintf(msg, sizeof(msg), fmt, ap);

	if (m < 0) {
		snprintf(msg, sizeof(msg), "(unformattable log message)");
		m = (int)strlen(msg);
	} else if ((size_t)m >= sizeof(msg)) {
		m = (int)sizeof(msg) - 1; /* emit_line adds the ellipsis if still too long */
	}

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	int h = snprintf(head, sizeof(head), "%04d-%02d-%02dT%02d:%02d:%02d.%03ld %s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, level_tags[level]);

	if (prefix && *prefix) {
		/* a prefix is a short module or plugin name; clip it so the header stays bounded */
		h += snprintf(head + h, sizeof(head) - (size_t)h, "[%.64s] ", prefix);
	}
	if (h < 0 || h > LOG_HEAD_MAX)
		h = LOG_HEAD_MAX; /* cannot happen with the widths above; keeps the bound explicit
				   */

	/* drop trailing newlines callers sometimes add, then one line per remaining segment */
	size_t len = (size_t)m;

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		len--;
	const char *p = msg;
	const char *end = msg + len;

	do {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t seg = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (seg > 0 && p[seg - 1] == '\r')
			seg--;
		emit_line(head, (size_t)h, p, seg);
		p = nl ? nl + 1 : end;
	} while (p < end);
	errno = saved_errno;
}

void log_msg(int level, const char *prefix, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, prefix, fmt, ap);
	va_end(ap);
}
