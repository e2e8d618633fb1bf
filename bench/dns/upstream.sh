#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# bench/dns/upstream.sh - cache misses over DNS over TLS: the dns plugin's shared upstream
# connections against a fresh connection per query, side by side in one run (printed, never
# asserted):
#
#   fresh    upstream_idle_timeout = 0: every query opens its own TCP and TLS connection to
#            the resolver (the plugin's behaviour before connections were shared; the TLS
#            session is resumed from the previous connection, which helps this case)
#   reuse    upstream_idle_timeout = 10s (the default): queries share a kept-alive
#            connection, pipelined
#
# dnsperf in the client asks the router (strict [dns]: every port-53 query goes to the
# plugin), the plugin has no cache (cache_size = 0), so each query is an upstream exchange with
# unbound in the server namespace over tls:// (answers from memory, local-data). The server's
# link delays its packets by --delay ms (default 10: a resolver nearby on the internet).
# Two measures per case: the mean latency of one query at a time, and queries per second with
# 20 outstanding. The cases alternate every round; medians printed.
#
# Usage: sudo bench/dns/upstream.sh [--rounds N] [--dur S] [--delay MS]  (defaults: 3, 5, 10)
# Needs: dnsperf unbound openssl (tests/deps.sh) and a build in $XP_BUILD (default build/).
set -uo pipefail
ROUNDS=3
DUR=5
DELAY=10
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--dur) DUR=$2; shift 2 ;;
	--delay) DELAY=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--dur S] [--delay MS]" >&2; exit 2 ;;
	esac
done
cd "$(dirname "$0")/../.." || exit 1
export XPT_BUILD=${XPT_BUILD:-$PWD/${XP_BUILD:-build}}
source tests/netns/lib.sh
xpt_require dnsperf unbound openssl
xpt_init bdu
xpt_topology
if [ "$DELAY" -gt 0 ] && ! nss tc qdisc add dev s0 root netem delay "${DELAY}ms" 2>/dev/null; then
	xpt_log "netem is not available (sch_netem): no delay added"
	DELAY=0
fi

U=$XPT_TMP/unbound
mkdir -p "$U"
(cd "$U" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout key.pem -out cert.pem -days 2 -subj /CN=bench.test \
	-addext subjectAltName=DNS:bench.test 2>/dev/null && head -c 80 /dev/urandom >ticket.key) ||
	xpt_fail "cannot make a certificate"
source bench/dns/lib.sh
bdns_unbound "$U" 1000 tcp 853 "  tls-port: 853
  tls-service-key: $U/key.pem
  tls-service-pem: $U/cert.pem
  tls-session-ticket-keys: $U/ticket.key
  incoming-num-tcp: 200"

config() { # IDLE
	{
		printf '[dns]\nplugin = dns\nupstream = tls://10.1.5.2#bench.test\n'
		printf 'ca_file = %s\ncache_size = 0\ntimeout = 5s\n' "$U/cert.pem"
		printf 'upstream_idle_timeout = %s\n\n' "$1"
		xpt_default_route
	} | xpt_config "$XPT_TMP/x-$1.ini" "workers = 1
log_level = info"
}
config 0
config 10s

latency() { # mean ms of one query at a time
	nsc dnsperf -s 10.1.5.2 -d "$XPT_TMP/queries" -l "$DUR" -c 1 -q 1 -t 5 2>&1 |
		awk '/Average Latency \(s\):/ { printf "%.2f", $4 * 1000 }'
}
qps() { # queries per second with 20 outstanding
	nsc dnsperf -s 10.1.5.2 -d "$XPT_TMP/queries" -l "$DUR" -c 4 -q 20 -t 5 2>&1 |
		awk '/Queries per second:/ { printf "%d", $4 }'
}
lost() { # a short check that every query is answered
	nsc dnsperf -s 10.1.5.2 -d "$XPT_TMP/queries" -l 1 -c 1 -q 1 -t 5 2>&1 |
		awk '/Queries lost:/ { print $3 }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -a lat_f lat_r qps_f qps_r
conns_f=? conns_r=?
for r in $(seq 1 "$ROUNDS"); do
	for idle in 0 10s; do
		xpt_start "$XPT_TMP/x-$idle.ini"
		[ "$(lost)" = 0 ] || xpt_fail "queries lost with upstream_idle_timeout = $idle"
		l=$(latency)
		q=$(qps)
		kill -USR1 "$XPT_DPID"
		sleep 0.3
		c=$(grep -E 'stats: [a-z0-9_.-]*\.upstream_conns ' "$XPT_DLOG" | tail -1 | awk '{print $NF}')
		xpt_stop TERM
		if [ "$idle" = 0 ]; then
			lat_f+=("$l") qps_f+=("$q") conns_f=$c
		else
			lat_r+=("$l") qps_r+=("$q") conns_r=$c
		fi
		xpt_log "round $r, upstream_idle_timeout = $idle: $l ms, $q q/s, $c connections"
		rm -f "$XPT_DLOG"
	done
done
lf=$(printf '%s\n' "${lat_f[@]}" | median)
lr=$(printf '%s\n' "${lat_r[@]}" | median)
qf=$(printf '%s\n' "${qps_f[@]}" | median)
qr=$(printf '%s\n' "${qps_r[@]}" | median)
echo
echo "dns: cache misses over tls://, $ROUNDS rounds x 2 x ${DUR} s, server delay ${DELAY} ms, medians"
printf '  %-7s %9s ms/query (1 at a time) %8s q/s (20 outstanding) %8s connections\n' \
	fresh "$lf" "$qf" "$conns_f"
printf '  %-7s %9s ms/query (1 at a time) %8s q/s (20 outstanding) %8s connections\n' \
	reuse "$lr" "$qr" "$conns_r"
awk -v lf="$lf" -v lr="$lr" -v qf="$qf" -v qr="$qr" 'BEGIN {
	printf "  reuse/fresh: latency x%.2f, rate x%.2f\n", lf ? lr / lf : 0, qf ? qr / qf : 0 }'
