#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_paths.sh MODE (peer|plain): the three paths through a router running xproxyd, IPv4 and
# IPv6, from a LAN client and from the router itself.
#   proxy rule  -> nginx sees the router's address (xproxyd connected upstream via the direct
#                  outbound in userspace)
#   DIRECT rule -> nginx sees the client's own address (the kernel forwarded it)
#   BLOCK rule  -> the connection fails fast (the datapath answers the SYN with a RST)
source "$(dirname "$0")/lib.sh"
MODE=${1:?usage: e2e_paths.sh peer|plain}
xpt_require bpftool
xpt_init "p$MODE"
xpt_topology
xpt_nginx

# The eventlog test plugin (tests/netns/plugins) logs every flow event it is given.
EVENTLOG=${XPT_EVENTLOG:?path to eventlog.so}
mkdir -p "$XPT_TMP/plugins"
ln -s "$XPT_PLUGINS"/*.so "$EVENTLOG" "$XPT_TMP/plugins/"
XPT_PLUGINS=$XPT_TMP/plugins
{
	printf '[outbound.events]\nplugin = eventlog\n\n'
	xpt_default_route
} | xpt_config "$XPT_TMP/x.ini" "redirect = $MODE"
xpt_start "$XPT_TMP/x.ini"
grep -q "redirect $MODE" "$XPT_DLOG" || xpt_fail "daemon did not use redirect mode $MODE"

expect_peer "http://$P4/" "$PR4" "IPv4 proxy rule goes through xproxyd"
expect_peer "http://[$P6]/" "$PR6" "IPv6 proxy rule goes through xproxyd"
expect_peer "http://$D4/" "$C4" "IPv4 DIRECT rule stays in the kernel"
expect_peer "http://[$D6]/" "$C6" "IPv6 DIRECT rule stays in the kernel"
expect_peer "http://$S4/" "$C4" "fallback DIRECT"

for url in "http://$B4/" "http://[$B6]/"; do
	# curl's own clock: a slow process start on a busy machine is not the datapath's time
	out=$(nsc curl -s -g --max-time 5 -o /dev/null -w '%{http_code} %{time_total}' "$url" 2>&1)
	rc=$?
	secs=${out#* }
	ms=$(awk -v t="$secs" 'BEGIN { printf "%d", t * 1000 }')
	out=${out%% *}
	[ $rc = 7 ] || xpt_fail "BLOCK $url: curl exit $rc (want 7, connection refused), output '$out'"
	[ $ms -lt 1000 ] || xpt_fail "BLOCK $url took $ms ms: not failing fast"
	xpt_ok "BLOCK $url refused after $secs s"
done

# The router's own traffic (WAN egress path): a proxied destination goes through xproxyd,
# which is visible in its connection counter, not in the peer address (both are the router's).
got=$(nsr curl -s --max-time 5 "http://$P4/" | tr -d '\r\n')
[ "$got" = "$PR4" ] || xpt_fail "router -> proxy network: nginx saw '$got'"
nsr curl -s -g --max-time 5 "http://[$P6]/" >/dev/null || xpt_fail "router -> IPv6 proxy network"
kill -USR1 "$XPT_DPID"
sleep 0.5
acc=$(grep 'stats: connections accepted' "$XPT_DLOG" | tail -1 | sed -E 's/.*accepted ([0-9]+).*/\1/')
# 2 LAN + 2 host connections were proxied
[ "${acc:-0}" -ge 4 ] || xpt_fail "expected >= 4 proxied connections, stats say '${acc:-none}'"
xpt_ok "router-originated connections to the proxy network were proxied (accepted=$acc)"
grep -q 'flow new proto 6 .*10.1.3.2:80: DIRECT (rule, rule 2)' "$XPT_DLOG" ||
	xpt_fail "no FLOW_NEW event for the DIRECT flow in the log"
xpt_ok "flow events reach the daemon"
grep -q "\[eventlog\] eventlog: flow-new $C4:[0-9]* -> $D4:80 route 1 source 3 rule 2" \
	"$XPT_DLOG" || xpt_fail "the subscribed plugin did not get the DIRECT flow's FLOW_NEW"
grep -q "\[eventlog\] eventlog: flow-new $C4:[0-9]* -> $P4:80 route 3 source 3 rule 1 outbound proxy" \
	"$XPT_DLOG" || xpt_fail "the subscribed plugin did not get the proxied flow's FLOW_NEW"
grep -q "eventlog: flow-end .* -> $P4:80" "$XPT_DLOG" ||
	xpt_fail "the subscribed plugin did not get a FLOW_END"
xpt_ok "flow events reach the plugin that subscribed (FLOW_NEW with route, source, rule, outbound; FLOW_END)"

xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
left=$(xpt_leftovers)
[ -z "$left" ] || xpt_fail "left behind after SIGTERM: $left"
expect_peer "http://$P4/" "$C4" "after stop the proxy network is plainly forwarded"
xpt_ok "SIGTERM left nothing behind"

# Flow events only while someone reads them (docs/datapath.md "Events and counters"): the
# datapath skips FLOW_NEW / FLOW_END while the control block has XP_CTL_NO_FLOW_EVENTS (2).
ctl_flags() { # xp_ctl.flags of the running daemon, from its .bss map
	local fd id
	for fd in /proc/"$XPT_DPID"/fdinfo/*; do
		id=$(awk '/^map_id:/ {print $2}' "$fd" 2>/dev/null)
		[ -n "$id" ] || continue
		bpftool -j map show id "$id" 2>/dev/null | grep -q '"name":"[^"]*\.bss"' || continue
		bpftool -j map dump id "$id" | python3 -c '
import json, sys
print(json.load(sys.stdin)[0]["formatted"]["value"][".bss"][0]["xp_ctl"]["flags"])'
		return
	done
}
{
	printf '[outbound.events]\nplugin = eventlog\n\n'
	xpt_default_route
} | xpt_config "$XPT_TMP/info.ini" "redirect = $MODE
log_level = info"
: >"$XPT_DLOG"
xpt_start "$XPT_TMP/info.ini"
flags=$(ctl_flags)
[ -n "$flags" ] && [ $((flags & 2)) = 0 ] ||
	xpt_fail "log level info with a subscribed plugin: xp_ctl.flags '$flags', want bit 2 clear"
expect_peer "http://$P4/" "$PR4" "proxied at log level info"
sleep 0.3
grep -q "eventlog: flow-new $C4:[0-9]* -> $P4:80" "$XPT_DLOG" ||
	xpt_fail "log level info: the subscribed plugin did not get the proxied flow's FLOW_NEW"
xpt_ok "log level info, a plugin subscribes: flow events on and delivered"
xpt_stop TERM
rm "$XPT_TMP/plugins/$(basename "$EVENTLOG")"
xpt_default_route | xpt_config "$XPT_TMP/quiet.ini" "redirect = $MODE
log_level = info"
: >"$XPT_DLOG"
xpt_start "$XPT_TMP/quiet.ini"
flags=$(ctl_flags)
[ -n "$flags" ] && [ $((flags & 2)) = 2 ] ||
	xpt_fail "log level info, no subscriber: xp_ctl.flags '$flags', want bit 2 set"
expect_peer "http://$P4/" "$PR4" "proxied with flow events off"
expect_peer "http://$D4/" "$C4" "DIRECT with flow events off"
sed -i 's/^log_level = info$/log_level = debug/' "$XPT_TMP/quiet.ini"
kill -HUP "$XPT_DPID"
for _ in $(seq 1 50); do
	flags=$(ctl_flags)
	[ $((flags & 2)) = 0 ] && break
	sleep 0.1
done
[ $((flags & 2)) = 0 ] || xpt_fail "reload to log level debug: xp_ctl.flags '$flags', want bit 2 clear"
expect_peer "http://$D4/" "$C4" "DIRECT after the reload"
sleep 0.3
grep -q "flow new proto 6 .*10.1.3.2:80: DIRECT" "$XPT_DLOG" ||
	xpt_fail "reload to log level debug: no FLOW_NEW in the debug log"
xpt_ok "no subscriber at log level info: flow events off; a reload to debug turns them on"
xpt_stop TERM
