/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * log - one line per message to stderr, thread-safe (a single write(2) per line).
 *
 * Format: "2026-11-22T10:00:00.123 LEVEL [prefix] message". The code that decides what to do
 * about an error logs it, once; helpers return -errno and log at debug at most.
 */
#ifndef XP_LOG_H
#define XP_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include <xproxy/plugin.h> /* enum xp_log_level */

void log_set_level(int level);
int log_get_level(void);
bool log_enabled(int level);
/* "error" "warn" "info" "debug" "trace" -> level, or -EINVAL */
int log_level_parse(const char *s);
const char *log_level_name(int level);

void log_msg(int level, const char *prefix, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(int level, const char *prefix, const char *fmt, va_list ap);

#define log_error(...) log_msg(XP_LOG_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(XP_LOG_WARN, NULL, __VA_ARGS__)
#define log_info(...) log_msg(XP_LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...)                                                                            \
	do {                                                                                      \
		if (log_enabled(XP_LOG_DEBUG))                                                    \
			log_msg(XP_LOG_DEBUG, NULL, __VA_ARGS__);                                 \
	} while (0)
#define log_trace(...)                                                                            \
	do {                                                                                      \
		if (log_enabled(XP_LOG_TRACE))                                                    \
			log_msg(XP_LOG_TRACE, NULL, __VA_ARGS__);                                 \
	} while (0)

#endif
