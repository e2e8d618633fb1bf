#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# demo.sh - the live demo, on a fresh Debian 12 machine, as root: installs the Debian packages,
# builds, and runs a client, a router with xproxyd (its embedded default configuration: no -c)
# and a server in network namespaces, then shows how each flow was routed.
# Usage: sudo tests/demo.sh [--keep]    (--keep leaves it running; Ctrl-C removes everything)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
source tests/deps.sh
# shellcheck disable=SC2086
xp_install_deps $XP_BUILD_PKGS nginx-light curl iproute2 python3 || exit 1
BUILD=${XP_BUILD:-build}
[ -d "$BUILD" ] || meson setup "$BUILD" >/dev/null || exit 1
ninja -C "$BUILD" >/dev/null || { ninja -C "$BUILD"; exit 1; }

export XPT_BUILD=$PWD/$BUILD XPT_PREFIX=xpdemo
source tests/netns/lib.sh
xpt_require
# A demo run that was killed hard may have left its namespaces: remove them first.
for ns in cli rtr srv; do ip netns del "xpdemo-$ns" 2>/dev/null; done
xpt_init demo
bold() { printf '\033[1m%s\033[0m\n' "$*"; }

bold "== topology: client (10.1.1.2) -- router lan0|wan0 -- server (10.1.2.2 10.1.3.2 10.1.4.2 ...)"
xpt_topology
xpt_nginx
XPT_DLOG=$XPT_TMP/xproxyd.log
bold "== router: xproxyd with its embedded configuration (xproxyd --print-default-config)"
ip netns exec "$XPT-rtr" "$XPROXYD" -l debug >"$XPT_DLOG" 2>&1 &
XPT_DPID=$!
XPT_PIDS="$XPT_PIDS $XPT_DPID"
for _ in $(seq 1 100); do grep -q "ready:" "$XPT_DLOG" && break; sleep 0.1; done
grep -q "ready:" "$XPT_DLOG" || { cat "$XPT_DLOG"; xpt_fail "xproxyd did not start"; }
grep -E 'ready:|rules:' "$XPT_DLOG" | sed 's/^/   /'

show() { # URL LABEL
	local t0 out rc ms verdict
	t0=$(date +%s%N)
	out=$(nsc curl -s -g --max-time 3 "$1" | tr -d '\r\n')
	rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	if [ -z "$out" ]; then
		verdict="refused after $ms ms (curl exit $rc)"
	elif [[ "$out" == 10.1.1.2 || "$out" == fd00:1:1::2 ]]; then
		verdict="server saw the client ($out): forwarded by the kernel"
	else
		verdict="server saw the router ($out): proxied by xproxyd"
	fi
	printf '   %-24s %-28s %s\n' "$1" "$2" "$verdict"
}
echo
bold "== client requests"
show "http://10.1.2.2/" "rule -> outbound proxy"
show "http://[fd00:1:2::2]/" "rule -> outbound proxy"
show "http://10.1.3.2/" "rule -> DIRECT"
show "http://[fd00:1:3::2]/" "rule -> DIRECT"
show "http://10.1.4.2/" "rule -> BLOCK"
show "http://10.1.5.2/" "fallback -> proxy"
sleep 0.3
echo
bold "== what the datapath reported (FLOW_NEW events from the ring buffer)"
grep -E 'flow new proto 6 10\.1\.1\.2|flow new proto 6 \[fd00:1:1::2\]' "$XPT_DLOG" |
	sed -E 's/^[^ ]+ [A-Z]+ +//; s/^/   /' | head -12
kill -USR1 $XPT_DPID
sleep 0.3
grep -E 'stats: (flows|connections)' "$XPT_DLOG" | tail -2 | sed -E 's/^[^ ]+ [A-Z]+ +//; s/^/   /'
echo
echo "   Domain-based routing (DNS answers, TLS/HTTP/QUIC sniffing) arrives with the DNS and"
echo "   sniffing plugins; this build routes by address, port, protocol and source."
if [ $KEEP = 1 ]; then
	echo
	bold "== left running. Try: ip netns exec xpdemo-cli curl http://10.1.2.2/"
	echo "   xproxyd log: $XPT_DLOG    Ctrl-C removes everything."
	wait $XPT_DPID
fi
kill -TERM $XPT_DPID
wait $XPT_DPID 2>/dev/null
echo
bold "== stopped; left behind in the router namespace: '$(xpt_leftovers)' (empty is right)"
