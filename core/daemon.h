/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * daemon - start, run, reload and stop xproxyd (the order of the pieces), the single-instance
 * lock, the ring-buffer dispatch to plugins and the router workers call for every connection.
 */
#ifndef XP_DAEMON_H
#define XP_DAEMON_H

struct daemon_opts {
	const char *config_path; /* NULL: the embedded default configuration */
	const char *plugin_dir;	 /* -P; NULL: $XPROXY_PLUGIN_DIR, then [global] plugin_dir */
	int log_level;		 /* -l; -1: from the configuration */
};

/* xproxyd -t: validate the configuration and the plugins it names. Returns the exit code. */
int daemon_check(const struct daemon_opts *o);
/* xproxyd: run until SIGINT/SIGTERM. Returns the exit code. */
int daemon_run(const struct daemon_opts *o);

#endif
