#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_udp.sh [peer|plain]: UDP through xproxyd's direct outbound.
#   - echo over IPv4 and IPv6: the answer comes from the original destination address:port and
#     the server saw the router (the datagrams really went through xproxyd);
#   - endpoint-dependent (default): a second server address cannot reach the client;
#     endpoint-independent (udp_mapping = independent): it can, through the same session;
#   - the router itself as a UDP client is proxied and answered;
#   - a UDP server on the router answering a WAN client is not taken for a new proxied flow;
#   - a LAN client that uses the port of one of xproxyd's upstream sockets towards the same
#     server (connected, endpoint-dependent; unconnected, full-cone) is still proxied;
#   - iperf3 -u completes with low loss; ICMP errors are counted and the session goes on;
#   - idle sessions expire (statistics), and max_udp_sessions refuses and counts the rest.
source "$(dirname "$0")/lib.sh"
MODE=${1:-peer}
xpt_require iperf3
xpt_init udp
xpt_topology
TOOL="$(dirname "$0")/udp_tool.py"
MAXS=40

stats() { # the latest "stats: udp" line after a SIGUSR1
	local n
	n=$(grep -c "stats: udp" "$XPT_DLOG")
	kill -USR1 "$XPT_DPID"
	for _ in $(seq 1 50); do
		[ "$(grep -c "stats: udp" "$XPT_DLOG")" -gt "$n" ] && break
		sleep 0.1
	done
	grep "stats: udp" "$XPT_DLOG" | tail -n 1
}
stat_of() { # NAME in the udp stats line (first number after it)
	sed -E "s/.*[ ;]$1 ([0-9]+).*/\\1/" <<<"$2"
}

start_server() { # NAME ARGS...: a udp_tool.py server in the server namespace
	local name=$1
	shift
	nss python3 "$TOOL" "$@" >"$XPT_TMP/$name.out" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	for _ in $(seq 1 50); do grep -q ready "$XPT_TMP/$name.out" && return 0; sleep 0.1; done
	xpt_fail "udp server $name did not start: $(cat "$XPT_TMP/$name.out")"
}

CA4=10.1.1.3 # a second LAN client, always DIRECT (the NAT check below)
start_server echo echo "$P4:7" "[$P6]:7"
start_server dep cone "$P4:7002" "$D4:7003"
start_server cone cone "$S4:7000" "$D4:7001"

xpt_config "$XPT_TMP/x.ini" "redirect = $MODE
udp_idle_timeout = 2s
max_udp_sessions = $MAXS" <<EOF
[outbound.cone]
plugin = direct
udp_mapping = independent

[route]
rule = src-cidr:$CA4/32, DIRECT
rule = dst-cidr:10.1.5.0/24, cone
rule = dst-cidr:10.1.2.0/24|fd00:1:2::/64, proxy
rule = dst-cidr:10.1.3.0/24|fd00:1:3::/64, DIRECT
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"
grep -q "redirect $MODE" "$XPT_DLOG" || xpt_fail "xproxyd did not run in $MODE mode"

# --- echo, IPv4 and IPv6 ----------------------------------------------------------------
for dst in "$P4:7" "[$P6]:7"; do
	out=$(nsc python3 "$TOOL" ask "$dst" 3) || xpt_fail "no UDP answer from $dst"
	want=${dst%:*}
	want=${want//[\[\]]/}
	n=$(awk -v a="$want" '$1 == a && $2 == 7' <<<"$out" | wc -l)
	[ "$n" = 3 ] || xpt_fail "$dst: expected 3 answers from $want:7, got: $out"
	seen=$(awk '{print $3; exit}' <<<"$out")
	case "$seen" in
	"$C4" | "$C6") xpt_fail "$dst: the server saw the client ($seen): not proxied" ;;
	esac
	xpt_ok "UDP echo via xproxyd ($dst): 3/3 answers from $want:7, server saw $seen"
done

# --- mapping ----------------------------------------------------------------------------
out=$(nsc python3 "$TOOL" ask "$P4:7002" 2) || xpt_fail "no answer from $P4:7002"
grep -q "^$P4 7002 " <<<"$out" || xpt_fail "dependent: no answer from $P4:7002: $out"
grep -q "^$D4 " <<<"$out" && xpt_fail "dependent mapping let a second address in: $out"
xpt_ok "endpoint-dependent: only $P4:7002 answers, $D4:7003 is filtered"

out=$(nsc python3 "$TOOL" ask "$S4:7000" 2) || xpt_fail "no answer from $S4:7000"
grep -q "^$S4 7000 " <<<"$out" || xpt_fail "independent: no answer from $S4:7000: $out"
grep -q "^$D4 7001 alt " <<<"$out" ||
	xpt_fail "independent mapping: the second server address did not reach the client: $out"
xpt_ok "endpoint-independent: answers from $S4:7000 and from $D4:7001 on the same client port"
# The full-cone upstream socket is unconnected (any peer may answer), but carries xproxyd's
# mark: the server's answers to it are not a flow the server started, so a LAN client from
# that very port to the same server is proxied, not taken for an answer and sent DIRECT.
q=$(awk -v a="$S4" '$1 == a && $2 == 7000 {print $4; exit}' <<<"$out")
[ -n "$q" ] || xpt_fail "independent: no server-seen port in: $out"
out=$(nsc python3 "$TOOL" ask "$S4:7000" 1 "$C4:$q") || xpt_fail "no answer from $S4:7000 to port $q"
seen=$(awk -v a="$S4" '$1 == a && $2 == 7000 {print $3; exit}' <<<"$out")
[ -n "$seen" ] || xpt_fail "client port $q to $S4:7000: no answer from it: $out"
[ "$seen" != "$C4" ] ||
	xpt_fail "client port $q (xproxyd's full-cone socket's) to $S4:7000: the server saw the client: forwarded DIRECT by the reverse-tuple rule: $out"
xpt_ok "a client port equal to xproxyd's full-cone upstream port ($q) is still proxied"

# --- the router itself as a client --------------------------------------------------------
# From a fixed port: the server sees another one (xproxyd's upstream socket) when proxied.
for pair in "$P4:7 $PR4:47000" "[$P6]:7 [$PR6]:47000"; do
	read -r dst src <<<"$pair"
	want=${dst%:*}
	want=${want//[\[\]]/}
	out=$(nsr python3 "$TOOL" ask "$dst" 2 "$src") ||
		xpt_fail "router as a UDP client ($dst): no answer"
	grep -q "^$want 7 " <<<"$out" || xpt_fail "router as a UDP client ($dst): wrong source: $out"
	[ "$(awk '{print $4; exit}' <<<"$out")" != 47000 ] ||
		xpt_fail "router as a UDP client ($dst): the server saw port 47000: not proxied"
	xpt_ok "the router's own UDP to $dst is proxied and answered from $want:7"
done

# --- a UDP server on the router answering a WAN client -----------------------------------
nsr python3 "$TOOL" echo "$PR4:9999" >"$XPT_TMP/rtrsrv.out" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
for _ in $(seq 1 50); do grep -q ready "$XPT_TMP/rtrsrv.out" && break; sleep 0.1; done
out=$(nss python3 "$TOOL" ask "$PR4:9999" 2 "$P4:9998") || xpt_fail "router's UDP server: no answer"
grep -q "^$PR4 9999 $P4 9998 " <<<"$out" ||
	xpt_fail "router's UDP server: the answer was taken for a new proxied flow: $out"
xpt_ok "a UDP server on the router answers a WAN client directly (not proxied)"

# --- a client port equal to a port of a connected upstream socket on the router ------------
# What xproxyd's endpoint-dependent sessions do, from a fixed port: the router talks to $P4:7
# from $PR4:47011 over a connected socket with xproxyd's mark (0x7870, the default), which
# the datapath leaves alone at WAN egress (no flow entry), so the server's answers reach WAN
# ingress with no entry for their reverse tuple. A LAN client then sends from port 47011 to
# the same $P4:7, which the rules proxy: that is a new flow, not an answer to one the server
# started. (A socket without the mark gets a flow entry at WAN egress, and its answers find
# it: they never reach the check.)
nsr python3 "$TOOL" hold "$P4:7" "$PR4:47011" 0x7870 >"$XPT_TMP/hold.out" 2>&1 &
hold=$!
XPT_PIDS="$XPT_PIDS $hold"
for _ in $(seq 1 50); do grep -q "ready\|no answer" "$XPT_TMP/hold.out" && break; sleep 0.1; done
read -r _ seen port < <(grep ready "$XPT_TMP/hold.out") ||
	xpt_fail "the router's connected socket got no answer: $(cat "$XPT_TMP/hold.out")"
[ "$seen $port" = "$PR4 47011" ] ||
	xpt_fail "the router's marked socket was not left alone: the server saw $seen:$port"
sleep 0.5 # a few more exchanges: the answers have been seen at WAN ingress
out=$(nsc python3 "$TOOL" ask "$P4:7" 2 "$C4:47011") || xpt_fail "client port 47011: no answer"
kill "$hold" 2>/dev/null
wait "$hold" 2>/dev/null
seen=$(awk -v a="$P4" '$1 == a && $2 == 7 {print $3; exit}' <<<"$out")
[ "$seen" = "$PR4" ] ||
	xpt_fail "client port 47011 to $P4:7 (the connected upstream socket's): the server saw '$seen', not the router: forwarded DIRECT by the reverse-tuple rule: $out"
xpt_ok "a client port equal to a connected upstream socket's (47011, to the same $P4:7) is still proxied"

# --- NAT: a reply to one LAN client's DIRECT flow is not an answer for another ---------------
# With masquerade on the WAN side, client A's DIRECT flow leaves as $PR4:port and the server's
# replies arrive addressed to the router, owned by no socket. Unless the datapath knows them
# for NATed replies (WAN egress records the flow's NATed tuple), WAN ingress records them as a
# flow the server started, and client B, sending from the same port to the same server, is
# taken for an answer and forwarded DIRECT instead of proxied (rule dst-cidr 10.1.2.0/24).
nsr nft -f - <<NFT || xpt_fail "nft masquerade"
table ip xpt_nat {
	chain post { type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }
}
NFT
nsc ip addr add $CA4/24 dev c0 || xpt_fail "second client address"
for port in 47021 47022 47023; do
	out=$(nsc python3 "$TOOL" ask "$P4:7" 2 "$CA4:$port") || xpt_fail "client A ($CA4:$port): no answer"
	grep -q "^$P4 7 $PR4 " <<<"$out" || xpt_fail "client A ($CA4:$port, DIRECT) was not masqueraded: $out"
	before=$(stat_of sessions "$(stats)")
	out=$(nsc python3 "$TOOL" ask "$P4:7" 2 "$C4:$port") || xpt_fail "client B ($C4:$port): no answer"
	after=$(stat_of sessions "$(stats)")
	[ "$after" = $((before + 1)) ] ||
		xpt_fail "client B from port $port to $P4:7, after client A's DIRECT flow from the same port: not proxied (sessions $before -> $after): the NATed replies were taken for a flow the server started: $out"
done
nsr nft delete table ip xpt_nat
nsc ip addr del $CA4/24 dev c0
xpt_ok "behind masquerade, a client port equal to another client's DIRECT flow's (3 ports) is still proxied"

# --- iperf3 -u --------------------------------------------------------------------------
nss iperf3 -s -1 -B "$P4" -p 5201 >"$XPT_TMP/iperf-s.out" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
for _ in $(seq 1 50); do nss ss -Htln 'sport = :5201' | grep -q . && break; sleep 0.1; done
# -w: the iperf3 server's own socket gets a large receive buffer too, so its drops (counted in
# its netns, not ours) do not pass for the proxy's.
nsc iperf3 -c "$P4" -p 5201 -u -b 50M -t 3 -O 1 -w 2M -J >"$XPT_TMP/iperf.json" 2>&1 ||
	xpt_fail "iperf3 -u failed: $(tail -n 5 "$XPT_TMP/iperf.json")"
loss=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum"]["lost_percent"])' \
	"$XPT_TMP/iperf.json") || xpt_fail "iperf3 output: $(tail -n 5 "$XPT_TMP/iperf.json")"
line=$(stats)
srvdrops=$(nss nstat -asz UdpRcvbufErrors | awk '/UdpRcvbufErrors/ {print $2}')
python3 -c "import sys; sys.exit(0 if float('$loss') < 5 else 1)" ||
	xpt_fail "iperf3 -u at 50 Mbit/s lost $loss % through xproxyd (listener overflow $(stat_of overflow "$line"), iperf3 server's buffer drops ${srvdrops:-?}): $line"
xpt_ok "iperf3 -u 50 Mbit/s for 3 s (after a 1 s warm-up) through xproxyd: $loss % lost, listener overflow $(stat_of overflow "$line")"

# --- ICMP errors: counted, the session goes on ------------------------------------------
nsc python3 "$TOOL" ask "$P4:9" 2 >/dev/null && xpt_fail "nothing listens on $P4:9, yet it answered"
line=$(stats)
grep -qE "stats: outbound\.proxy\.udp_icmp_errors [1-9]" "$XPT_DLOG" ||
	xpt_fail "port unreachable from $P4:9 not counted: $(grep icmp "$XPT_DLOG" | tail -n 1)"
[ "$(stat_of failed "$line")" = 0 ] || xpt_fail "an ICMP error ended a session: $line"
[ "$(stat_of sessions "$line")" -ge 1 ] || xpt_fail "no session for $P4:9: $line"
xpt_ok "ICMP port unreachable counted ($(grep -oE 'udp_icmp_errors [0-9]+' "$XPT_DLOG" | tail -n 1)); the session went on"

# --- idle expiry ------------------------------------------------------------------------
sleep 3.5 # udp_idle_timeout = 2s, plus the timers' slack
line=$(stats)
[ "$(stat_of active "$line")" = 0 ] || xpt_fail "sessions still active after the idle timeout: $line"
[ "$(stat_of idle-expired "$line")" -ge 5 ] || xpt_fail "idle expiry not counted: $line"
xpt_ok "idle sessions expired: $line"

# --- the session bound ------------------------------------------------------------------
# With a long idle timeout (SIGHUP; new sessions take it), so no session can expire while the
# client ports are still arriving and free a slot: on a loaded machine the 2 s of the expiry
# test above did, and a 41st session was legitimately admitted.
sed -i 's/^udp_idle_timeout = 2s$/udp_idle_timeout = 60s/' "$XPT_TMP/x.ini"
grep -q '^udp_idle_timeout = 60s$' "$XPT_TMP/x.ini" || xpt_fail "test edit of udp_idle_timeout"
n=$(grep -c 'reload: done' "$XPT_DLOG")
kill -HUP "$XPT_DPID"
for _ in $(seq 1 50); do [ "$(grep -c 'reload: done' "$XPT_DLOG")" -gt "$n" ] && break; sleep 0.1; done
[ "$(grep -c 'reload: done' "$XPT_DLOG")" -gt "$n" ] || xpt_fail "SIGHUP: no 'reload: done'"
sleep 0.3 # the workers take new options on their own loops
read -r n direct < <(nsc python3 "$TOOL" many "$P4:7" $((MAXS + 20)))
# Every client port is a new flow. The server's answers to xproxyd's upstream sockets
# (connected, or marked) are not recorded as flows the server started, so the datapath's
# reverse-tuple rule (docs/datapath.md) has nothing to take a client port for an answer by:
# none may be forwarded DIRECT, whichever ports the client and the upstream sockets drew.
[ "$direct" = 0 ] ||
	xpt_fail "$direct of $((MAXS + 20)) client ports to $P4:7 forwarded DIRECT (the reverse-tuple rule took them for answers); $(stats)"
[ "$n" = "$MAXS" ] ||
	xpt_fail "max_udp_sessions = $MAXS: $n of $((MAXS + 20)) client ports answered; $(stats)"
line=$(stats)
[ "$(stat_of refused "$line")" -ge 20 ] || xpt_fail "refused sessions not counted: $line"
xpt_ok "max_udp_sessions = $MAXS: $n client ports answered, the rest refused and counted"

xpt_stop
grep -q "stats: udp" "$XPT_DLOG" || xpt_fail "no UDP statistics at stop"
xpt_ok "xproxyd stopped cleanly"
