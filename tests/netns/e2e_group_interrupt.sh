#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_group_interrupt.sh: [group.NAME] interrupt = yes closes the live connections through a
# member that dies, or that the selection leaves; interrupt = no (the default) leaves them.
#   client -> router (xproxyd) -> proxy ns (microsocks, one per member, leaving from its own
#   address) -> the echo server (banner "BANNER <peer>", then an echo of every byte).
#
#   [group.cut]  fallback, interrupt = yes: s5a (10.1.7.2:1080), s5b (10.1.7.3:1080)
#   [group.keep] fallback, interrupt = no:  k5a (10.1.7.2:1081), k5b (10.1.7.3:1081)
#   [group.ucut] fallback, interrupt = yes: ssa, ssb (ss-server -u, for a UDP session)
#   [group.outer] fallback, interrupt = yes: s5a, inner
#   [group.inner] fallback, interrupt = yes: s5b, s5a (nested: a cut in inner closes only
#                 what went through inner, not outer's own choice of the same s5a)
#
# A member "dies" the way a proxy that lost its upstream does: a policy rule in the proxy ns
# makes every connection from 10.1.7.2 to the check target (10.1.3.2) fail, while connections
# already relayed (to 10.1.2.2 and 10.1.5.2) keep working. So a connection that ends does so
# because xproxyd closed it, not because its proxy went away.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/outbound_lib.sh"
xpt_require microsocks ss-server
xpt_init "gin"
xpt_topology
xpo_proxy_ns
XB=10.1.7.3
nsx ip addr add $XB/24 dev p0
# two more server addresses, routed to the nested groups outer and inner
ON4=10.1.6.2 IN4=10.1.8.2
for n in 6 8; do
	nsr ip addr add 10.1.$n.1/24 dev wan0
	nss ip addr add 10.1.$n.2/24 dev s0
done
xpt_nginx
xpo_echo_server

wait_listen_on() { # ADDR:PORT
	for _ in $(seq 1 50); do
		nsx ss -Htln "src $1" | grep -q . && return 0
		sleep 0.1
	done
	xpt_fail "nothing listens on $1"
}
for a in $X4:1080 $XB:1080 $X4:1081 $XB:1081; do
	xpo_bg ip netns exec "$XPT-pxy" microsocks -i ${a%:*} -p ${a#*:} -b ${a%:*}
	wait_listen_on $a
done

# UDP: two ss-server (shadowsocks-libev, UDP relay on) leaving from their own address too
PW=xpt-grp-pw
for a in $X4 $XB; do
	xpo_bg ip netns exec "$XPT-pxy" ss-server -s $a -p 8388 -b $a -k $PW -m aes-128-gcm -u -t 10
	wait_listen_on $a:8388
done
# ping.py HOST: a datagram every 100 ms from one source port; "EPOCH_MS PEER" per echo
cat >"$XPT_TMP/ping.py" <<'PY'
import socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(0.1)
u.connect((sys.argv[1], 9000))
while True:
    u.send(b"x")
    try:
        d = u.recv(2048)
        print("%d %s" % (time.time() * 1000, d.split(b" ")[0].decode()), flush=True)
    except socket.timeout:
        pass
    time.sleep(0.1)
PY

# hold.py HOST SECONDS: one connection to the echo server; prints "peer P", then pings every
# 100 ms; "closed EPOCH_MS ..." when it ends, "alive N" if it lasted.
cat >"$XPT_TMP/hold.py" <<'PY'
import socket, sys, time
c = socket.create_connection((sys.argv[1], 9000), timeout=5)
f = b""
while not f.endswith(b"\n"):
    d = c.recv(1)
    if not d:
        print("nobanner", flush=True)
        sys.exit(1)
    f += d
print("peer", f.split()[1].decode(), flush=True)
end, n = time.time() + float(sys.argv[2]), 0
c.settimeout(3)
while time.time() < end:
    try:
        c.sendall(b"ping\n")
        got = b""
        while len(got) < 5:
            d = c.recv(5 - len(got))
            if not d:
                raise ConnectionError("EOF")
            got += d
        n += 1
    except socket.timeout:
        print("stalled %.3f after %d echoes" % (time.time(), n), flush=True)
        sys.exit(1)
    except (OSError, ConnectionError) as e:
        print("closed %d %s after %d echoes" % (time.time() * 1000, type(e).__name__, n), flush=True)
        sys.exit(0)
    time.sleep(0.1)
print("alive %d" % n, flush=True)
PY
hold() { # NAME HOST SECONDS: in the background, output in $XPT_TMP/NAME
	nsc python3 "$XPT_TMP/hold.py" "$2" "$3" >"$XPT_TMP/$1" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	eval "HOLD_$1=$!"
	for _ in $(seq 1 50); do
		grep -q "^peer" "$XPT_TMP/$1" && return 0
		sleep 0.1
	done
	xpt_fail "$1: no banner through the group: $(cat "$XPT_TMP/$1")"
}
expect_hold_peer() { # NAME PEER
	grep -qx "peer $2" "$XPT_TMP/$1" || xpt_fail "$1 went through '$(cat "$XPT_TMP/$1")', want $2"
}
# wait_closed NAME SINCE_NS MAX_MS: the connection ended (closed by xproxyd), promptly
wait_closed() {
	local t ms
	for _ in $(seq 1 $(($3 / 100 + 10))); do
		grep -q "^closed" "$XPT_TMP/$1" && break
		sleep 0.1
	done
	grep -q "^closed" "$XPT_TMP/$1" || xpt_fail "$1 not closed: $(cat "$XPT_TMP/$1")"
	t=$(awk '/^closed/ { print $2 }' "$XPT_TMP/$1")
	ms=$((t - $2 / 1000000))
	[ "$ms" -le "$3" ] || xpt_fail "$1 closed $ms ms after the change (want <= $3)"
	xpt_ok "$1: closed $ms ms after the change: $(grep '^closed' "$XPT_TMP/$1" | cut -d' ' -f3-)"
}
expect_alive() { # NAME
	wait "$(eval echo "\$HOLD_$1")" 2>/dev/null
	grep -q "^alive [1-9]" "$XPT_TMP/$1" || xpt_fail "$1 did not last: $(cat "$XPT_TMP/$1")"
	xpt_ok "$1 lasted through it: $(grep '^alive' "$XPT_TMP/$1") echoes"
}

xpt_config "$XPT_TMP/x.ini" <<EOF
[outbound.s5a]
plugin = socks5
server = $X4:1080

[outbound.s5b]
plugin = socks5
server = $XB:1080

[outbound.k5a]
plugin = socks5
server = $X4:1081

[outbound.k5b]
plugin = socks5
server = $XB:1081

[group.cut]
members = s5a, s5b
check_url = http://$D4/
interval = 500ms
timeout = 1s
tolerance = 2
interrupt = yes

[group.keep]
members = k5a, k5b
check_url = http://$D4/
interval = 500ms
timeout = 1s
tolerance = 2

[outbound.ssa]
plugin = shadowsocks
server = $X4:8388
method = aes-128-gcm
password = $PW

[outbound.ssb]
plugin = shadowsocks
server = $XB:8388
method = aes-128-gcm
password = $PW

[group.ucut]
members = ssa, ssb
check_url = http://$D4/
interval = 500ms
timeout = 1s
tolerance = 2
interrupt = yes

[group.outer]
members = s5a, inner
check_url = http://$D4/
interval = 500ms
timeout = 1s
tolerance = 2
interrupt = yes

[group.inner]
members = s5b, s5a
check_url = http://$D4/
interval = 500ms
timeout = 1s
tolerance = 2
interrupt = yes

[route]
rule = dst-cidr:10.1.6.0/24, outer
rule = dst-cidr:10.1.8.0/24, inner
rule = dst-cidr:10.1.2.0/24, cut
rule = dst-cidr:10.1.4.0/24, ucut
rule = dst-cidr:10.1.5.0/24, keep
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"
for _ in $(seq 1 30); do
	grep -q "group keep: selected k5a" "$XPT_DLOG" && grep -q "group cut: selected s5a" "$XPT_DLOG" &&
		break
	sleep 0.1
done

# --- the first member dies: cut closes its connection, keep does not
nsc python3 "$XPT_TMP/ping.py" $B4 >"$XPT_TMP/udp" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
PING=$!
for _ in $(seq 1 30); do
	grep -q " $X4$" "$XPT_TMP/udp" && break
	sleep 0.1
done
grep -q " $X4$" "$XPT_TMP/udp" || xpt_fail "udp: no echo through ssa: $(tail -3 "$XPT_TMP/udp")"
hold c1 $P4 30
hold k1 $S4 6
expect_hold_peer c1 $X4
expect_hold_peer k1 $X4
nsx ip rule add pref 100 from $X4 to $D4 prohibit
t0=$(date +%s%N)
# interval x tolerance = 1 s to declare s5a dead (a prohibited route fails at once)
wait_closed c1 "$t0" 2500
grep -q "group cut: s5a: member is dead: interrupt closed 1 TCP connections, 0 UDP sessions" \
	"$XPT_DLOG" || xpt_fail "no interrupt line for s5a: $(grep 'group cut' "$XPT_DLOG" | tail -4)"
grep -q "group keep: member k5a is dead" "$XPT_DLOG" || xpt_fail "k5a not declared dead"
! grep -q "group keep: .*interrupt closed" "$XPT_DLOG" || xpt_fail "keep (interrupt = no) closed connections"
# udp: the session through ssa is closed, the next datagram makes one through ssb
udp_moved() { # SINCE_NS PEER MAX_MS WHAT
	local t ms
	for _ in $(seq 1 $(($3 / 100 + 10))); do
		t=$(awk -v s=$(($1 / 1000000)) -v p="$2" '$1 >= s && $2 == p { print $1; exit }' "$XPT_TMP/udp")
		[ -n "$t" ] && break
		sleep 0.1
	done
	[ -n "$t" ] || xpt_fail "udp: no echo through $2 since the change: $(tail -3 "$XPT_TMP/udp")"
	ms=$((t - $1 / 1000000))
	[ "$ms" -le "$3" ] || xpt_fail "udp: through $2 only $ms ms after the change (want <= $3)"
	sleep 0.3
	# and nothing through the other one after that
	awk -v s="$t" -v p="$2" '$1 > s && $2 != p { bad = 1 } END { exit bad }' "$XPT_TMP/udp" ||
		xpt_fail "udp: echoes through another member after the switch: $(tail -5 "$XPT_TMP/udp")"
	xpt_ok "udp: $4: echoes through $2 $ms ms after the change"
}
udp_moved "$t0" $XB 2500 "ssa dead"
grep -q "group ucut: ssa: member is dead: interrupt closed 0 TCP connections, 1 UDP sessions" \
	"$XPT_DLOG" || xpt_fail "no UDP interrupt line for ssa: $(grep 'group ucut' "$XPT_DLOG" | tail -4)"
# the client reconnects: through s5b now
hold c2 $P4 30
expect_hold_peer c2 $XB
xpt_ok "cut: the reconnection goes through s5b"
expect_alive k1

# --- s5a returns: cut's selection moves back to it and closes what went through s5b
hold k2 $S4 6
expect_hold_peer k2 $XB
nsx ip rule del pref 100
t0=$(date +%s%N)
wait_closed c2 "$t0" 2000
grep -q "group cut: s5b: selection moved to s5a: interrupt closed 1 TCP connections" "$XPT_DLOG" ||
	xpt_fail "no interrupt line for s5b: $(grep 'group cut' "$XPT_DLOG" | tail -4)"
grep -q "group cut: selected s5a (avg [0-9]* ms), was s5b (avg [0-9]* ms)" "$XPT_DLOG" ||
	xpt_fail "no 'selected s5a ... was s5b' line"
udp_moved "$t0" $X4 2500 "ssa back"
grep -q "group ucut: ssb: selection moved to ssa: interrupt closed 0 TCP connections, 1 UDP sessions" \
	"$XPT_DLOG" || xpt_fail "no UDP interrupt line for ssb: $(grep 'group ucut' "$XPT_DLOG" | tail -4)"
kill "$PING"
hold c3 $P4 2
expect_hold_peer c3 $X4
expect_alive k2
expect_alive c3
kill "$HOLD_c1" "$HOLD_c2" 2>/dev/null

kill -USR1 "$XPT_DPID"
for _ in $(seq 1 20); do
	grep -q "stats: group interrupts closed" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "stats: group interrupts closed 2 TCP connections, 2 UDP sessions" "$XPT_DLOG" ||
	xpt_fail "SIGUSR1: $(grep 'stats: group interrupts' "$XPT_DLOG")"
xpt_ok "$(grep -o 'stats: group interrupts.*' "$XPT_DLOG" | tail -1)"

# --- nested: inner leaves s5a while it is alive; outer's own choice of s5a stays
# s5b dies: inner moves to s5a. A connection through outer (its first member, s5a itself)
# and one through inner both leave through s5a. s5b returns: inner moves back to it and cuts
# s5a, which must close the connection through inner only: outer never left s5a.
nsx ip rule add pref 101 from $XB to $D4 prohibit
for _ in $(seq 1 50); do
	grep -q "group inner: selected s5a" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "group inner: selected s5a" "$XPT_DLOG" || xpt_fail "inner did not move to s5a"
hold n_outer $ON4 8
hold n_inner $IN4 30
expect_hold_peer n_outer $X4
expect_hold_peer n_inner $X4
nsx ip rule del pref 101
t0=$(date +%s%N)
wait_closed n_inner "$t0" 2500
grep -q "group inner: s5a: selection moved to s5b: interrupt closed 1 TCP connections" \
	"$XPT_DLOG" || xpt_fail "no interrupt line for inner: $(grep 'group inner' "$XPT_DLOG" | tail -4)"
expect_alive n_outer
xpt_ok "nested: inner's cut of s5a closed its own connection, not outer's own choice of s5a"

xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
xpt_ok "group interrupt: connections leave a dead or left member with interrupt = yes, stay without"
