#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_dnsroute.sh: DNS routing end to end, with the fakedns test plugin as the [dns] plugin.
#   strict mode  dig to ANY resolver address (one that does not exist, one with no DNS server,
#                the router's own traffic) is answered by the router; a capture on the server
#                side sees no port-53 packet at all
#   routing      px.test (domain-suffix -> proxy) and dr.test (-> DIRECT) behave so from the
#                first SYN: nginx sees the router or the client, and the FLOW_NEW events (the
#                eventlog plugin) say source DSTMAP (2) with the right route and outbound,
#                although the fallback would proxy both addresses
#   TCP          dig +tcp, and several queries pipelined on one connection
#   IPv6         AAAA over IPv6, then HTTP to the AAAA address by its routed path
#   reload       SIGHUP with a changed domain rule re-routes a live name without a new query
source "$(dirname "$0")/lib.sh"
xpt_require dig tcpdump
xpt_init dns
xpt_topology
# The spare network gets two more server addresses and IPv6: the names' answers.
nss ip addr add 10.1.5.3/24 dev s0
nsr ip -6 addr add fd00:1:5::1/64 dev wan0 nodad
nss ip -6 addr add fd00:1:5::2/64 dev s0 nodad
nss ip -6 addr add fd00:1:5::3/64 dev s0 nodad
xpt_nginx

EVENTLOG=${XPT_EVENTLOG:?path to eventlog.so}
FAKEDNS=${XPT_FAKEDNS:?path to fakedns.so}
mkdir -p "$XPT_TMP/plugins"
ln -s "$XPT_PLUGINS"/*.so "$EVENTLOG" "$FAKEDNS" "$XPT_TMP/plugins/"
XPT_PLUGINS=$XPT_TMP/plugins
xpt_config "$XPT_TMP/x.ini" "flow_events = all" <<'EOF'
[outbound.events]
plugin = eventlog

[dns]
plugin = fakedns
answer = www.px.test 10.1.5.2
answer = www.px.test fd00:1:5::2
answer = www.dr.test 10.1.5.3
answer = www.dr.test fd00:1:5::3
ttl = 30s

[route]
rule = domain-suffix:px.test, proxy
rule = domain-suffix:dr.test, DIRECT
fallback = proxy
EOF
xpt_start "$XPT_TMP/x.ini"

# Everything that reaches the server side on port 53 is in this capture.
# Not through nss(): a function would put a subshell, not tcpdump, in $!
# (--immediate-mode: without it packets wait in the ring's blocks and a stop loses them)
ip netns exec "$XPT-srv" tcpdump --immediate-mode -i s0 -n -U -w "$XPT_TMP/dns.pcap" 'port 53' \
	>"$XPT_TMP/tcpdump.log" 2>&1 &
TCPDUMP=$!
XPT_PIDS="$XPT_PIDS $TCPDUMP"
for _ in $(seq 1 50); do
	grep -q 'listening on' "$XPT_TMP/tcpdump.log" 2>/dev/null && break
	sleep 0.1
done

# dig_a WHERE SERVER NAME TYPE [dig args]: the answer section's addresses, one line
dig_a() {
	local where=$1 server=$2 name=$3 type=$4
	shift 4
	$where dig +short +time=3 +tries=1 "$@" @"$server" "$name" "$type" 2>&1 | tr '\n' ' ' |
		sed 's/ $//'
}

expect_dig() { # WHAT WANT WHERE SERVER NAME TYPE [dig args]
	local what=$1 want=$2 got
	shift 2
	got=$(dig_a "$@")
	[ "$got" = "$want" ] || xpt_fail "$what: dig said '$got', expected '$want'"
	xpt_ok "$what ($got)"
}

# --- strict mode: any resolver address is the router ---------------------------------------
expect_dig "UDP query to a resolver that does not exist" 10.1.5.2 nsc 10.9.9.9 www.px.test A
expect_dig "UDP query to a server with no DNS server" 10.1.5.3 nsc $D4 www.dr.test A
expect_dig "TCP query (dig +tcp)" 10.1.5.2 nsc $D4 www.px.test A +tcp
expect_dig "AAAA over IPv6" fd00:1:5::2 nsc $D6 www.px.test AAAA
expect_dig "AAAA over IPv6 and TCP" fd00:1:5::3 nsc $D6 www.dr.test AAAA +tcp
# (the router's own packets reach tc egress only once the next hop resolves: a real host)
expect_dig "the router's own query (to a host with no DNS server)" 10.1.5.3 nsr $D4 www.dr.test A
st=$(nsc dig +time=3 +tries=1 @10.9.9.9 nowhere.test A | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
[ "$st" = NXDOMAIN ] || xpt_fail "unknown name: status '$st', expected NXDOMAIN"
xpt_ok "an unknown name gets NXDOMAIN from the plugin"

# Several queries on one TCP connection (dig keeps it open with +keepopen).
got=$(nsc dig +tcp +keepopen +short +time=3 +tries=1 @$D4 www.px.test A www.dr.test A \
	www.px.test AAAA 2>&1 | tr '\n' ' ' | sed 's/ $//')
[ "$got" = "10.1.5.2 10.1.5.3 fd00:1:5::2" ] ||
	xpt_fail "three queries on one TCP connection: got '$got'"
xpt_ok "three queries on one TCP connection answered in order"

# --- routing from the first SYN -------------------------------------------------------------
expect_peer "http://10.1.5.2/" 10.1.5.1 "www.px.test (domain-suffix -> proxy) goes through xproxyd"
expect_peer "http://10.1.5.3/" $C4 "www.dr.test (domain-suffix -> DIRECT) stays in the kernel"
expect_peer "http://[fd00:1:5::2]/" fd00:1:5::1 "www.px.test over IPv6 goes through xproxyd"
expect_peer "http://[fd00:1:5::3]/" $C6 "www.dr.test over IPv6 stays in the kernel"
# Without a name the fallback (proxy) would take the spare network: prove it with an address
# no answer named.
nss ip addr add 10.1.5.4/24 dev s0
expect_peer "http://10.1.5.4/" 10.1.5.1 "an address no answer named takes the fallback (proxy)"

sleep 0.5
grep -q "\[eventlog\] eventlog: flow-new $C4:[0-9]* -> 10.1.5.2:80 route 3 source 2 rule 0 outbound proxy" \
	"$XPT_DLOG" || xpt_fail "FLOW_NEW of the px.test flow: not DSTMAP through outbound proxy"
grep -q "\[eventlog\] eventlog: flow-new $C4:[0-9]* -> 10.1.5.3:80 route 1 source 2 rule 0" \
	"$XPT_DLOG" || xpt_fail "FLOW_NEW of the dr.test flow: not DIRECT from DSTMAP"
grep -q "\[eventlog\] eventlog: flow-new \[$C6\]:[0-9]* -> \[fd00:1:5::2\]:80 route 3 source 2 rule 0 outbound proxy" \
	"$XPT_DLOG" || xpt_fail "FLOW_NEW of the IPv6 px.test flow: not DSTMAP through outbound proxy"
grep -q "\[eventlog\] eventlog: flow-new $C4:[0-9]* -> 10.1.5.4:80 route 3 source 4" \
	"$XPT_DLOG" || xpt_fail "FLOW_NEW of the unnamed flow: not the fallback"
xpt_ok "FLOW_NEW events: source DSTMAP with the routed outbound; the unnamed address: fallback"
grep -q "conn [0-9]* .*-> 10.1.5.2:80 via proxy" "$XPT_DLOG" ||
	xpt_fail "the proxied px.test connection is not in the daemon's log"

# --- nothing left the router on port 53 -----------------------------------------------------
# A positive control first: the capture does see port 53 (the server's own query to the router,
# which has no DNS server and is not xproxyd's to answer: the server is no LAN client).
nss dig +time=1 +tries=1 @$PR4 control.test A >/dev/null 2>&1
sleep 0.3
kill -INT $TCPDUMP 2>/dev/null
for _ in $(seq 1 50); do
	kill -0 $TCPDUMP 2>/dev/null || break
	sleep 0.1
done
kill -0 $TCPDUMP 2>/dev/null && xpt_fail "tcpdump did not stop"
wait $TCPDUMP 2>/dev/null
all=$(tcpdump -n -r "$XPT_TMP/dns.pcap" 2>/dev/null | wc -l)
[ "$all" -ge 1 ] || xpt_fail "the capture saw not even the control query: it cannot prove anything"
n=$(tcpdump -n -r "$XPT_TMP/dns.pcap" "src host $C4 or src host $C6 or src host $PR4 or src host 10.1.3.1" \
	2>/dev/null | wc -l)
[ "$n" = 0 ] || xpt_fail "the server side saw $n port-53 packets from the client or the router: $(tcpdump -n -r "$XPT_TMP/dns.pcap" 2>/dev/null | head -3)"
xpt_ok "no query left the router (server-side capture: 0 port-53 packets from the client or the router, $all from the control)"

# --- reload: live names are routed again by the new rules ----------------------------------
sed -i 's/^rule = domain-suffix:px.test, proxy/rule = domain-suffix:px.test, DIRECT/' "$XPT_TMP/x.ini"
kill -HUP "$XPT_DPID"
for _ in $(seq 1 50); do
	grep -q "reload: done" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "reload: done" "$XPT_DLOG" || xpt_fail "reload did not finish"
# no new query: the name learned before the reload now says DIRECT in the kernel
expect_peer "http://10.1.5.2/" $C4 "after SIGHUP the live name www.px.test is DIRECT (re-routed without a new query)"

kill -USR1 "$XPT_DPID"
sleep 0.5
line=$(grep 'stats: dns queries' "$XPT_DLOG" | tail -1)
udp=$(sed -E 's/.*queries udp ([0-9]+) tcp ([0-9]+) answered ([0-9]+).*/\1/' <<<"$line")
tcp=$(sed -E 's/.*queries udp ([0-9]+) tcp ([0-9]+) answered ([0-9]+).*/\2/' <<<"$line")
[ "${udp:-0}" -ge 5 ] && [ "${tcp:-0}" -ge 5 ] ||
	xpt_fail "DNS statistics do not add up: '$line'"
xpt_ok "DNS statistics count the queries (udp $udp, tcp $tcp)"

xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
left=$(xpt_leftovers)
[ -z "$left" ] || xpt_fail "left behind after SIGTERM: $left"
xpt_ok "SIGTERM left nothing behind"
