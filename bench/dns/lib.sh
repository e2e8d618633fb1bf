# SPDX-License-Identifier: GPL-2.0-only
# bench/dns/lib.sh - what the dns benches share: unbound in the server namespace answering
# n1..nN.bench.example from memory (local-data), and dnsperf's query file for those names.
# Source it after tests/netns/lib.sh, xpt_init and xpt_topology.

# bdns_unbound DIR NAMES PROTO PORT [SERVER_LINES]: start unbound with its files in DIR on
# 10.1.5.2@PORT (SERVER_LINES: more "server:" settings, e.g. TLS), wait until it listens on
# PROTO (tcp|udp) PORT, and write DIR/../queries
bdns_unbound() {
	local u=$1 names=$2 proto=$3 port=$4 extra=${5:-} i flag
	mkdir -p "$u"
	{
		printf 'server:\n  interface: 10.1.5.2@%s\n' "$port"
		[ -n "$extra" ] && printf '%s\n' "$extra"
		cat <<EOC
  do-daemonize: no
  username: ""
  chroot: ""
  directory: $u
  pidfile: ""
  use-syslog: no
  logfile: "$u/unbound.log"
  verbosity: 0
  num-threads: 1
  access-control: 10.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "bench.example." static
EOC
		for i in $(seq 1 "$names"); do
			printf '  local-data: "n%d.bench.example. 3600 IN A 198.18.%d.%d"\n' \
				"$i" $((i / 250)) $((i % 250 + 1))
		done
		printf 'remote-control:\n  control-enable: no\n'
	} >"$u/unbound.conf"
	ip netns exec "$XPT-srv" unbound -d -c "$u/unbound.conf" </dev/null >/dev/null 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	disown $!
	[ "$proto" = tcp ] && flag=-Htln || flag=-Huln
	for _ in $(seq 1 50); do
		nss ss $flag "sport = :$port" | grep -q . && break
		sleep 0.1
	done
	nss ss $flag "sport = :$port" | grep -q . || xpt_fail "unbound does not listen on $proto $port"
	for i in $(seq 1 "$names"); do echo "n$i.bench.example A"; done >"$XPT_TMP/queries"
}
