#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_lifecycle.sh: one instance per namespace; kill -9 fails open within 2 s (closed with
# fail = closed); a restart takes over and a later SIGTERM leaves the router as it was.
source "$(dirname "$0")/lib.sh"
xpt_require
xpt_init life
xpt_topology
xpt_nginx

xpt_config "$XPT_TMP/x.ini" < <(xpt_default_route)
xpt_start "$XPT_TMP/x.ini"
expect_peer "http://$P4/" "$PR4" "proxied while running"

# A second instance in the same namespace is refused with a clear line.
out=$(nsr "$XPROXYD" -c "$XPT_TMP/x.ini" -P "$XPT_PLUGINS" 2>&1)
rc=$?
[ $rc = 1 ] || xpt_fail "second instance exit code $rc, want 1"
echo "$out" | grep -q "already running (pid $XPT_DPID)" ||
	xpt_fail "second instance message: $out"
xpt_ok "second instance refused: $(echo "$out" | grep -o 'xproxyd is already running.*')"

# kill -9: the tc filters stay, the heartbeat stops; within 2 s new flows go DIRECT.
# A prober started before the kill opens a fresh connection every 50 ms and notes the wall time
# of the first one the server sees from the client's own address: what is measured is when the
# datapath changed its mind, not process starts or TCP's one-second SYN retransmission.
cat >"$XPT_TMP/prober.py" <<'PY'
import socket, sys, time
dst, want, end = sys.argv[1], sys.argv[2], time.time() + 8
while time.time() < end:
    try:
        s = socket.create_connection((dst, 80), timeout=0.2)
        s.settimeout(0.5)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        s.close()
        if data.split(b"\r\n\r\n", 1)[-1].strip() == want.encode():
            print("%.3f" % time.time(), flush=True)
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
print("none", flush=True)
PY
ip netns exec "$XPT-cli" python3 "$XPT_TMP/prober.py" "$P4" "$C4" >"$XPT_TMP/prober.out" 2>&1 &
prober=$!
sleep 0.5
old=$XPT_DPID
t_kill=$(date +%s.%N)
kill -KILL $old
wait $old 2>/dev/null
wait $prober
t_ok=$(cat "$XPT_TMP/prober.out")
[ "$t_ok" != none ] && [ -n "$t_ok" ] || xpt_fail "after kill -9 the client never got the direct path"
ms=$(awk -v a="$t_kill" -v b="$t_ok" 'BEGIN { printf "%d", (b - a) * 1000 }')
[ "$ms" -le 2000 ] || xpt_fail "fail-open took $ms ms (> 2 s)"
xpt_ok "kill -9: new connections forwarded directly after $ms ms (fail open)"
expect_peer "http://[$P6]/" "$C6" "kill -9: IPv6 fails open too"
expect_peer "http://$D4/" "$C4" "kill -9: DIRECT traffic unaffected"
nsr tc filter show dev lan0 ingress | grep -q xp_lan_ingress ||
	xpt_fail "expected the dead daemon's filter to still be attached (test premise)"

# Restart: takes over the stale filters atomically and proxies again.
: >"$XPT_TMP/x2.log"
xpt_start "$XPT_TMP/x.ini" "$XPT_TMP/x2.log"
expect_peer "http://$P4/" "$PR4" "restart took over"
n=$(nsr tc filter show dev lan0 ingress | grep -c 'xp_lan_ingress' || true)
[ "$n" = 1 ] || xpt_fail "after restart lan0 has $n xproxy filters (want exactly 1)"
xpt_stop TERM
left=$(xpt_leftovers)
[ -z "$left" ] || xpt_fail "left behind after restart + SIGTERM: $left"
xpt_ok "restart + SIGTERM left nothing behind (qdiscs, filters, links, lock)"

# fail = closed: after kill -9 the proxied network is unreachable, DIRECT still works.
xpt_config "$XPT_TMP/closed.ini" "fail = closed" < <(xpt_default_route)
: >"$XPT_TMP/x3.log"
xpt_start "$XPT_TMP/closed.ini" "$XPT_TMP/x3.log"
kill -KILL $XPT_DPID
wait $XPT_DPID 2>/dev/null
sleep 2
got=$(peer_of "http://$P4/" --max-time 2)
[ -z "$got" ] || xpt_fail "fail = closed: proxied network still reachable ('$got')"
expect_peer "http://$D4/" "$C4" "fail = closed: DIRECT traffic unaffected"
xpt_ok "fail = closed blocks proxied flows once the daemon is gone"
: >"$XPT_TMP/x4.log"
xpt_start "$XPT_TMP/x.ini" "$XPT_TMP/x4.log"
expect_peer "http://$P4/" "$PR4" "restart after fail-closed took over"
xpt_stop INT
left=$(xpt_leftovers)
[ -z "$left" ] || xpt_fail "left behind after SIGINT: $left"
xpt_ok "SIGINT left nothing behind"
