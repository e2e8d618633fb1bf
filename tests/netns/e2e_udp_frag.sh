#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_udp_frag.sh [peer|plain]: large, IP-fragmented UDP datagrams (MTU 1500 everywhere).
#   - echo of 1400 .. 65000-byte datagrams over IPv4 and IPv6 through a proxied rule (direct
#     outbound; the server must see the router) and through a DIRECT rule (kernel forwarding;
#     the server sees the client), every answer byte-exact;
#   - large replies to small requests (only the server -> client direction is fragmented);
#   - the router itself as the client (WAN egress, replies into the router's own stack);
#   - the datapath counted the fragments it tracked and dropped none as orphans.
source "$(dirname "$0")/lib.sh"
MODE=${1:-peer}
xpt_init ufr
xpt_topology
TOOL="$(dirname "$0")/udp_tool.py"
SIZES=1400,1472,3000,8000,30000,65000

start_server() { # NAME ARGS...: a udp_tool.py server in the server namespace
	local name=$1
	shift
	nss python3 "$TOOL" "$@" >"$XPT_TMP/$name.out" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	for _ in $(seq 1 50); do grep -q ready "$XPT_TMP/$name.out" && return 0; sleep 0.1; done
	xpt_fail "udp server $name did not start: $(cat "$XPT_TMP/$name.out")"
}
stats() { # the latest line starting with "stats: $1" after a SIGUSR1
	local n
	n=$(grep -c "stats: $1" "$XPT_DLOG")
	kill -USR1 "$XPT_DPID"
	for _ in $(seq 1 50); do
		[ "$(grep -c "stats: $1" "$XPT_DLOG")" -gt "$n" ] && break
		sleep 0.1
	done
	grep "stats: $1" "$XPT_DLOG" | tail -n 1
}
stat_of() { # NAME in a stats line (first number after it)
	sed -E "s/.*[ ;(]$1 ([0-9]+).*/\\1/" <<<"$2"
}

start_server grow grow "$P4:7" "[$P6]:7" "$D4:7" "[$D6]:7"

xpt_config "$XPT_TMP/x.ini" "redirect = $MODE" < <(xpt_default_route)
xpt_start "$XPT_TMP/x.ini"
grep -q "redirect $MODE" "$XPT_DLOG" || xpt_fail "xproxyd did not run in $MODE mode"

nstat_of() { # CMD...: the non-zero fragment and UDP error counters where CMD runs nstat
	"$@" nstat -az | awk '/Reasm|Frag|Udp6?(NoPorts|InErrors|RcvbufErrors)/ && $2 != 0 {printf "%s %s; ", $1, $2}'
}

# check DST SEEN WHAT [grow]: every size answered intact, and the server saw SEEN
check() {
	local dst=$1 seen=$2 what=$3 out bad
	out=$(nsc python3 "$TOOL" sizes "$dst" "$SIZES" ${4:-}) || {
		xpt_log "router: $(nstat_of nsr)"
		xpt_log "private netns: $(nstat_of nsenter --net="$(grep -o '/proc/[0-9]*/fd/[0-9]*' "$XPT_DLOG" | head -n 1)")"
		xpt_log "$(stats frags)"
		xpt_fail "$what ($dst): $(tr '\n' ';' <<<"$out")"
	}
	bad=$(awk -v s="$seen" '$2 == "ok" && $3 != s' <<<"$out")
	[ -z "$bad" ] || xpt_fail "$what ($dst): the server saw another address than $seen: $bad"
	xpt_ok "$what ($dst): $(awk '{printf "%s%s", sep, $1; sep=","}' <<<"$out") bytes intact, server saw $seen$(awk '$2 == "ok" && $7 > 1 {printf " (%s: %s tries)", $1, $7}' <<<"$out")"
}

for grow in "" grow; do
	label="echo"
	[ -n "$grow" ] && label="large replies"
	check "$P4:7" "$PR4" "proxied, $label" $grow
	check "[$P6]:7" "$PR6" "proxied, $label" $grow
	check "$D4:7" "$C4" "DIRECT, $label" $grow
	check "[$D6]:7" "$C6" "DIRECT, $label" $grow
done

# The router itself as a client (WAN egress; replies back through xp_proxy_reply into the
# router's stack): from port 47001, so a proxied datagram shows another port at the server.
for pair in "$P4:7 $PR4:47001" "[$P6]:7 [$PR6]:47001"; do
	read -r dst src <<<"$pair"
	for grow in echo grow; do
		out=$(nsr python3 "$TOOL" sizes "$dst" "$SIZES" $grow "$src") ||
			xpt_fail "router as a client ($dst, $grow): $(tr '\n' ';' <<<"$out")"
		n=$(awk '$2 == "ok" && $8 ~ /^[0-9]+$/ && $8 != 47001' <<<"$out" | wc -l)
		[ "$n" = 6 ] ||
			xpt_fail "router as a client ($dst): the server saw port 47001 (not proxied): $out"
	done
	xpt_ok "router as a client ($dst): $SIZES bytes intact both ways, server saw port $(awk '{print $8; exit}' <<<"$out"), not 47001"
done

line=$(stats "frags")
[ -n "$line" ] || xpt_fail "no fragment statistics"
[ "$(stat_of first "$line")" -gt 0 ] || xpt_fail "no first fragment recorded: $line"
[ "$(stat_of later "$line")" -gt 0 ] || xpt_fail "no later fragment followed its first: $line"
[ "$(stat_of orphan "$line")" = 0 ] || xpt_fail "orphan fragments dropped: $line"
# The client's proxied datagrams above 1472 bytes (IPv4: 3000..65000) and 1452 (IPv6:
# 1472..65000) arrive fragmented: 9 reach the listener through the netns's socket lookup.
[ "$(stat_of reassembled "$line")" -ge 9 ] ||
	xpt_fail "reassembled datagrams did not go through xp_proxy_lookup: $line"
xpt_ok "datapath: $line"
udp=$(stats "udp")
[ "$(stat_of sessions "$udp")" -ge 2 ] || xpt_fail "the proxied datagrams made no sessions: $udp"

xpt_stop
xpt_ok "xproxyd stopped cleanly"
