#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_data.sh: bulk data and concurrency through the proxy path (direct outbound, splice relay):
# a 100 MB download and a 20 MB upload byte-identical, 200 concurrent connections all complete,
# and no descriptor leaks in xproxyd afterwards.
source "$(dirname "$0")/lib.sh"
xpt_require xargs sha256sum
xpt_init data
xpt_topology
xpt_nginx
xpt_bigfile big 100

xpt_config "$XPT_TMP/x.ini" "log_level = info" < <(xpt_default_route)
xpt_start "$XPT_TMP/x.ini"
fd0=$(ls /proc/$XPT_DPID/fd | wc -l)

for url in "http://$P4/big" "http://[$P6]/big"; do
	sum=$(nsc curl -s -g --max-time 60 "$url" | sha256sum | cut -d' ' -f1)
	[ "$sum" = "$(cat "$XPT_TMP/big.sha")" ] || xpt_fail "100 MB download via $url differs"
	xpt_ok "100 MB download via the proxy is byte-identical ($url)"
done

# Upload: python in the server namespace checks what arrives.
cat >"$XPT_TMP/sink.py" <<'PY'
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.1.2.2", 9000)); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
h = hashlib.sha256()
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b)
c.sendall(h.hexdigest().encode())   # answer after our EOF: exercises the half-close
c.close()
PY
nss python3 "$XPT_TMP/sink.py" >"$XPT_TMP/sink.out" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
for _ in $(seq 1 50); do grep -q ready "$XPT_TMP/sink.out" && break; sleep 0.1; done
head -c $((20 * 1024 * 1024)) /dev/urandom >"$XPT_TMP/up.bin"
want=$(sha256sum <"$XPT_TMP/up.bin" | cut -d' ' -f1)
got=$(nsc python3 - "$XPT_TMP/up.bin" <<'PY'
import socket, sys
s = socket.create_connection(("10.1.2.2", 9000), timeout=30)
with open(sys.argv[1], "rb") as f:
    s.sendall(f.read())
s.shutdown(socket.SHUT_WR)          # half-close: the server must still be able to answer
out = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    out += b
print(out.decode())
PY
)
[ "$got" = "$want" ] || xpt_fail "20 MB upload differs or the half-closed answer was lost ('$got')"
xpt_ok "20 MB upload byte-identical, answer after the client's half-close delivered"

# Port reuse: new connections on the 4-tuples of connections that just ended (nginx closes
# first, so the client keeps no TIME_WAIT and may reuse its port at once, as busy clients do).
# A proxy-side TIME_WAIT in the private netns would stall each reuse for a SYN timeout.
cat >"$XPT_TMP/reuse.py" <<'PY'
import socket, sys
dst, fails = sys.argv[1], 0
for i in range(200):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.1.1.2", 10000 + i % 4))  # below the ephemeral range (lib.sh: 20000-60000)
    s.settimeout(2)
    try:
        s.connect((dst, 80))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        if b" 200 " not in data:
            fails += 1
    except OSError as e:
        fails += 1
        print("connection %d: %s" % (i, e), file=sys.stderr)
    s.close()
    if fails >= 3:
        break  # enough to know; do not wait out 200 timeouts
print(fails)
PY
fails=$(nsc python3 "$XPT_TMP/reuse.py" "$P4")
[ "$fails" = 0 ] || xpt_fail "$fails of 200 connections reusing 4 client ports failed or stalled"
xpt_ok "200 connections reusing the same 4 client ports through the proxy all completed"

# 200 concurrent connections, each a full request; twice, to see descriptors stay flat.
burst() {
	seq 1 200 | nsc xargs -P 200 -I{} curl -s --max-time 20 -o /dev/null -w '%{http_code}\n' \
		"http://$P4/" >"$XPT_TMP/codes" 2>/dev/null
	n=$(grep -c '^200$' "$XPT_TMP/codes" || true)
	[ "$n" = 200 ] || xpt_fail "only $n of 200 concurrent connections completed"
	sleep 1
	ls /proc/$XPT_DPID/fd | wc -l
}
# Each worker keeps up to 32 empty pipes (64 fds) for the next connections (core/relay.c), so
# the count may rise by that much above the start, and never further however many bursts run:
# a leak of one descriptor per connection would add 200 a burst.
bound=$((fd0 + 2 * 64 + 2))
for i in 1 2 3; do
	fd=$(burst)
	[ "$fd" -le "$bound" ] || xpt_fail "descriptor leak: $fd0 at start, $fd after burst $i (bound $bound)"
	xpt_ok "burst $i: 200 concurrent connections completed, $fd descriptors (start $fd0, bound $bound)"
done
xpt_stop TERM
