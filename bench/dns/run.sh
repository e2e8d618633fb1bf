#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# bench/dns/run.sh - cached-answer queries per second, the dns plugin against unbound, side by
# side in one run (printed, never asserted):
#
#   unbound  dnsperf in the client -> unbound in the server namespace, forwarded by the
#            router's kernel, no xproxyd; unbound answers from memory (local-data)
#            (the baseline: ratio 1.00)
#   plugin   the same dnsperf run with xproxyd in the router: the DNS verdict hands every query
#            to the dns plugin, which answers from its cache (warmed by one pass first) and
#            writes each answer's address back (dns_learn) before releasing it
#
# Same names, same client, same namespaces; the cases alternate every round, medians printed.
# Both sides run one thread of their own (unbound num-threads 1, xproxyd workers 1), on a
# machine whose CPUs are shared with the client.
#
# Usage: sudo bench/dns/run.sh [--rounds N] [--dur S] [--names N]   (defaults: 3, 5 s, 1000)
# Needs: dnsperf unbound dig (tests/deps.sh) and a build in $XP_BUILD (default build/).
set -uo pipefail
ROUNDS=3
DUR=5
NAMES=1000
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--dur) DUR=$2; shift 2 ;;
	--names) NAMES=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--dur S] [--names N]" >&2; exit 2 ;;
	esac
done
cd "$(dirname "$0")/../.." || exit 1
export XPT_BUILD=${XPT_BUILD:-$PWD/${XP_BUILD:-build}}
source tests/netns/lib.sh
xpt_require dnsperf unbound dig
xpt_init bdn
xpt_topology

U=$XPT_TMP/unbound
source bench/dns/lib.sh
bdns_unbound "$U" "$NAMES" udp 53
nsc dig +short +time=2 +tries=1 @10.1.5.2 n1.bench.example A | grep -q . ||
	xpt_fail "unbound does not answer"

{
	printf '[dns]\nplugin = dns\nupstream = udp://10.1.5.2\ncache_size = %d\n\n' $((NAMES * 2))
	xpt_default_route
} | xpt_config "$XPT_TMP/x.ini" "workers = 1
log_level = info"

qps() { # one dnsperf run: queries per second
	nsc dnsperf -s 10.1.5.2 -d "$XPT_TMP/queries" -l "$DUR" -c 4 -q 200 2>&1 |
		awk '/Queries per second:/ { printf "%d", $4 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

declare -a base plug
for r in $(seq 1 "$ROUNDS"); do
	base+=("$(qps)")
	xpt_start "$XPT_TMP/x.ini"
	# warm the plugin's cache: one pass over every name
	nsc dnsperf -s 10.1.5.2 -d "$XPT_TMP/queries" -n 1 -c 1 -q 50 >/dev/null 2>&1
	plug+=("$(qps)")
	kill -USR1 "$XPT_DPID"
	sleep 0.3
	xpt_stop TERM
	xpt_log "round $r: unbound ${base[-1]} q/s, plugin ${plug[-1]} q/s"
done
hits=$(grep -E 'stats: [a-z0-9_.-]*\.cache_hits ' "$XPT_DLOG" | tail -1 | awk '{print $NF}')
queries=$(grep -E 'stats: [a-z0-9_.-]*\.queries ' "$XPT_DLOG" | tail -1 | awk '{print $NF}')
b=$(printf '%s\n' "${base[@]}" | median)
p=$(printf '%s\n' "${plug[@]}" | median)
echo
echo "dns: cached answers per second, $ROUNDS rounds x ${DUR} s, $NAMES names, medians"
printf '  %-8s %10s q/s  ratio %s\n' unbound "$b" 1.00
printf '  %-8s %10s q/s  ratio %s\n' plugin "$p" "$(awk -v a="$p" -v b="$b" 'BEGIN { printf "%.2f", b ? a / b : 0 }')"
echo "  plugin cache hits in the last round: ${hits:-?} of ${queries:-?} queries"
