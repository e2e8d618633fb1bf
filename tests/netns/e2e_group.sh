#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_group.sh: a fallback [group.NAME] of two socks5 outbounds, with health checks through
# each member (host->dial), failing over when the first proxy dies and back when it returns.
#   client -> router (xproxyd, group of s5a, s5b) -> proxy ns: microsocks on 10.1.7.2 (leaves
#   from 10.1.7.2) and on 10.1.7.3 (leaves from 10.1.7.3) -> nginx, which reports the peer.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/outbound_lib.sh"
xpt_require microsocks
xpt_init "grp"
xpt_topology
xpo_proxy_ns
XB=10.1.7.3
nsx ip addr add $XB/24 dev p0
xpt_nginx

wait_listen_on() { # ADDR:PORT
	for _ in $(seq 1 50); do
		nsx ss -Htln "src $1" | grep -q . && return 0
		sleep 0.1
	done
	xpt_fail "nothing listens on $1"
}
start_a() {
	# not through nsx(): $! must be microsocks itself (ip netns exec execs it)
	xpo_bg ip netns exec "$XPT-pxy" microsocks -i $X4 -b $X4 -p 1080
	PID_A=$!
	wait_listen_on $X4:1080
}
start_a
xpo_bg ip netns exec "$XPT-pxy" microsocks -i $XB -b $XB -p 1080
wait_listen_on $XB:1080

xpt_config "$XPT_TMP/x.ini" <<EOF
[outbound.s5a]
plugin = socks5
server = $X4:1080

[outbound.s5b]
plugin = socks5
server = $XB:1080

[group.hk]
members = s5a, s5b
policy = fallback
check_url = http://$P4/
interval = 1s
timeout = 1s
tolerance = 2

[route]
rule = dst-cidr:10.1.2.0/24, hk
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"

expect_peer "http://$P4/" "$X4" "group hk: the first member (s5a) while both are alive"
grep -q "group hk: chose member s5a" "$XPT_DLOG" || xpt_fail "no debug line for the chosen member"

kill "$PID_A" || xpt_fail "kill microsocks A"
t0=$(date +%s%N)
for _ in $(seq 1 60); do
	grep -q "group hk: member s5a is dead (2 failures" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "group hk: member s5a is dead (2 failures" "$XPT_DLOG" ||
	xpt_fail "s5a not declared dead within 6 s: $(grep 'group hk' "$XPT_DLOG" | tail -5)"
ms=$((($(date +%s%N) - t0) / 1000000))
# interval x tolerance = 2 s (a refused connect fails at once, no timeout to wait for)
[ $ms -le 2600 ] || xpt_fail "s5a declared dead after $ms ms (want <= interval x tolerance)"
xpt_ok "s5a declared dead after $ms ms: $(grep -o 'member s5a is dead.*' "$XPT_DLOG" | head -1)"
expect_peer "http://$P4/" "$XB" "group hk: new connections go through s5b"

start_a
for _ in $(seq 1 40); do
	grep -q "group hk: member s5a is alive again" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "group hk: member s5a is alive again, [0-9]* ms" "$XPT_DLOG" ||
	xpt_fail "s5a not revived within 4 s of its restart"
xpt_ok "$(grep -o 'member s5a is alive again.*' "$XPT_DLOG" | head -1)"
expect_peer "http://$P4/" "$X4" "group hk: traffic returns to s5a"

# SIGUSR1 lists each member's state and average latency
kill -USR1 "$XPT_DPID"
for _ in $(seq 1 30); do
	grep -q "stats: group hk member s5b: alive, avg [0-9]* ms" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "stats: group hk member s5a: alive, avg [0-9]* ms" "$XPT_DLOG" ||
	xpt_fail "no SIGUSR1 line for s5a"
grep -q "stats: group hk member s5b: alive, avg [0-9]* ms" "$XPT_DLOG" ||
	xpt_fail "no SIGUSR1 line for s5b"
xpt_ok "SIGUSR1: $(grep -o 'stats: group hk member s5b.*' "$XPT_DLOG" | tail -1)"

# reload with a check URL nginx answers 404: the status line counts, both members die and
# the group has no route (the client is reset instead of going through a dead member)
sed -i "s|^check_url = .*|check_url = http://$P4/no-such-page|" "$XPT_TMP/x.ini"
kill -HUP "$XPT_DPID"
for _ in $(seq 1 60); do
	grep -q "group hk: member s5b is dead (2 failures: bad status line)" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "group hk: member s5a is dead (2 failures: bad status line)" "$XPT_DLOG" ||
	xpt_fail "a 404 check did not kill s5a: $(grep 'group hk' "$XPT_DLOG" | tail -3)"
grep -q "group hk: member s5b is dead (2 failures: bad status line)" "$XPT_DLOG" ||
	xpt_fail "a 404 check did not kill s5b"
got=$(peer_of "http://$P4/")
[ -z "$got" ] || xpt_fail "no member alive, yet nginx saw '$got'"
xpt_ok "404 status line = dead; with no member alive the connection is refused"

xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
xpt_ok "group: failover and return through health checks"
