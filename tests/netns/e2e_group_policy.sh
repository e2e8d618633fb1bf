#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_group_policy.sh: the min-latency and random policies of [group.NAME] end to end.
#   client -> router (xproxyd) -> proxy ns -> nginx, which reports the peer: every microsocks
#   leaves from its own address (-b), so nginx names the member that carried each connection.
#
#   [group.lat] min-latency: s5a and s5b, each a lag relay (lag_relay.py: a delay per chunk
#       read from a file; the kernel here has no netem) in front of a microsocks. s5b starts
#       slow: lat picks s5a; then the delay moves to s5a and lat switches to s5b within a few
#       check intervals. The log's "selected" lines carry both averages.
#   [group.rnd] random: r5a and r5b (plain microsocks) and r5c (nothing listens: dead at the
#       first check). 60 connections: each live member carries some (>= 10 of 60: a binomial
#       tail below 1e-6), r5c none, and every one succeeds.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/outbound_lib.sh"
xpt_require microsocks
xpt_init "gpl"
xpt_topology
xpo_proxy_ns
XB=10.1.7.3
nsx ip addr add $XB/24 dev p0
xpt_nginx
LAG="$(dirname "$0")/lag_relay.py"
DELAY_MS=30

wait_listen_on() { # ADDR:PORT
	for _ in $(seq 1 50); do
		nsx ss -Htln "src $1" | grep -q . && return 0
		sleep 0.1
	done
	xpt_fail "nothing listens on $1"
}
# min-latency members: the relay on ADDR:1080 -> microsocks on 127.0.0.1:PORT leaving from ADDR
echo 0 >"$XPT_TMP/delay.a"
echo $DELAY_MS >"$XPT_TMP/delay.b"
xpo_bg ip netns exec "$XPT-pxy" microsocks -i 127.0.0.1 -p 1091 -b $X4
xpo_bg ip netns exec "$XPT-pxy" microsocks -i 127.0.0.1 -p 1092 -b $XB
xpo_bg ip netns exec "$XPT-pxy" python3 "$LAG" $X4 1080 127.0.0.1 1091 "$XPT_TMP/delay.a"
xpo_bg ip netns exec "$XPT-pxy" python3 "$LAG" $XB 1080 127.0.0.1 1092 "$XPT_TMP/delay.b"
# random members
xpo_bg ip netns exec "$XPT-pxy" microsocks -i $X4 -p 1081 -b $X4
xpo_bg ip netns exec "$XPT-pxy" microsocks -i $XB -p 1081 -b $XB
for a in 127.0.0.1:1091 127.0.0.1:1092 $X4:1080 $XB:1080 $X4:1081 $XB:1081; do
	wait_listen_on $a
done

xpt_config "$XPT_TMP/x.ini" <<EOF
[outbound.s5a]
plugin = socks5
server = $X4:1080

[outbound.s5b]
plugin = socks5
server = $XB:1080

[outbound.r5a]
plugin = socks5
server = $X4:1081

[outbound.r5b]
plugin = socks5
server = $XB:1081

[outbound.r5c]
plugin = socks5
server = $X4:1082

[group.lat]
members = s5a, s5b
policy = min-latency
check_url = http://$P4/
interval = 500ms
timeout = 2s
tolerance = 2

[group.rnd]
members = r5a, r5b, r5c
policy = random
check_url = http://$P4/
interval = 1s
timeout = 2s
tolerance = 1

[route]
rule = dst-cidr:10.1.2.0/24, lat
rule = dst-cidr:10.1.5.0/24, rnd
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"

# ------------------------------------------------------------------------------ random
for _ in $(seq 1 50); do
	grep -q "group rnd: member r5c is dead" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "group rnd: member r5c is dead (1 failures: connect" "$XPT_DLOG" ||
	xpt_fail "r5c (nothing listens) not declared dead: $(grep 'group rnd' "$XPT_DLOG" | tail -3)"
seq 60 | xargs -P 8 -I{} ip netns exec "$XPT-cli" curl -s -g --max-time 5 "http://$S4/" \
	>"$XPT_TMP/rnd.out" 2>/dev/null
na=$(grep -cx "$X4" "$XPT_TMP/rnd.out")
nb=$(grep -cx "$XB" "$XPT_TMP/rnd.out")
total=$(grep -c . "$XPT_TMP/rnd.out")
[ "$total" = 60 ] && [ $((na + nb)) = 60 ] ||
	xpt_fail "random: $total of 60 answered, $na via r5a, $nb via r5b: $(sort "$XPT_TMP/rnd.out" | uniq -c)"
[ "$na" -ge 10 ] && [ "$nb" -ge 10 ] || xpt_fail "random: $na via r5a, $nb via r5b (want >= 10 each)"
# the daemon's own account of each choice matches what nginx saw
la=$(grep -c "group rnd: chose member r5a$" "$XPT_DLOG")
lb=$(grep -c "group rnd: chose member r5b$" "$XPT_DLOG")
lc=$(grep -c "group rnd: chose member r5c" "$XPT_DLOG")
[ "$la" = "$na" ] && [ "$lb" = "$nb" ] && [ "$lc" = 0 ] ||
	xpt_fail "random: the log chose r5a $la, r5b $lb, r5c $lc times; nginx saw $na and $nb"
xpt_ok "random: 60 connections, $na through r5a and $nb through r5b (nginx and the log agree), none through the dead r5c"

# ------------------------------------------------------------------------------ min-latency
# both members measured, then lat must have selected s5a (SIGUSR1 lists the averages)
for _ in $(seq 1 20); do
	kill -USR1 "$XPT_DPID"
	sleep 0.25
	grep "stats: group lat member s5b: alive" "$XPT_DLOG" | tail -1 | grep -q "checks [1-9]" && break
done
stat_avg() { # MEMBER: its last average in the SIGUSR1 lines
	grep -o "stats: group lat member $1: alive, avg [0-9]* ms" "$XPT_DLOG" | tail -1 |
		sed 's/.*avg \([0-9]*\) ms/\1/'
}
sa=$(stat_avg s5a)
sb=$(stat_avg s5b)
[ -n "$sa" ] && [ -n "$sb" ] && [ "$sb" -gt $((sa + 20)) ] ||
	xpt_fail "min-latency: averages s5a '$sa' ms, s5b '$sb' ms (s5b has $DELAY_MS ms per chunk)"
# (the first selection may come before any sample of lat's: "selected s5a (no sample yet)")
grep -q "group lat: selected s5a (" "$XPT_DLOG" ||
	xpt_fail "min-latency: no 'selected s5a' line: $(grep 'group lat' "$XPT_DLOG" | tail -3)"
! grep -q "group lat: selected s5b" "$XPT_DLOG" ||
	xpt_fail "min-latency: s5b selected while it was the slow one: $(grep 'group lat: sel' "$XPT_DLOG")"
for i in 1 2 3 4 5; do
	expect_peer "http://$P4/" "$X4" "min-latency: connection $i through s5a (avg $sa ms, s5b $sb ms)"
done
grep -q "group lat: chose member s5a (avg [0-9]* ms)" "$XPT_DLOG" ||
	xpt_fail "min-latency: no 'chose member s5a (avg N ms)' line"
xpt_ok "min-latency: $(grep -o 'group lat: chose member s5a.*' "$XPT_DLOG" | tail -1)"

# the delay moves to s5a: lat must switch within 10 intervals (the average moves a quarter of
# the way to each sample, and a switch wants a margin: about 3 intervals here)
echo $DELAY_MS >"$XPT_TMP/delay.a"
echo 0 >"$XPT_TMP/delay.b"
t0=$(date +%s%N)
for _ in $(seq 1 50); do
	grep -q "group lat: selected s5b" "$XPT_DLOG" && break
	sleep 0.1
done
line=$(grep -o "group lat: selected s5b.*" "$XPT_DLOG" | head -1)
[ -n "$line" ] || xpt_fail "min-latency: no switch to s5b within 5 s of moving the delay"
ms=$((($(date +%s%N) - t0) / 1000000))
# "selected s5b (avg N ms), was s5a (avg M ms)": the new one is the faster by the log's figures
nb=$(sed -n 's/.*selected s5b (avg \([0-9]*\) ms), was s5a (avg \([0-9]*\) ms).*/\1/p' <<<"$line")
na=$(sed -n 's/.*selected s5b (avg \([0-9]*\) ms), was s5a (avg \([0-9]*\) ms).*/\2/p' <<<"$line")
[ -n "$nb" ] && [ -n "$na" ] && [ "$nb" -lt "$na" ] || xpt_fail "min-latency: odd switch line '$line'"
xpt_ok "min-latency switched after ~$ms ms: $line"
for i in 1 2 3 4 5; do
	expect_peer "http://$P4/" "$XB" "min-latency: connection $i through s5b after the switch"
done

xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
xpt_ok "group policies: random spreads over the live members, min-latency follows the latency"
