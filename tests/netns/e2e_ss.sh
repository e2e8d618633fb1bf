#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_ss.sh: the shadowsocks outbound against ss-server (shadowsocks-libev) for every AEAD
# cipher. The client's curl goes through the router (xproxyd, shadowsocks outbound) to
# ss-server in the server namespace, which connects to nginx / a python upload sink:
#   - nginx sees ss-server's address as the peer (the path really went through ss-server);
#   - 1 MiB down (sha256 at the client) and 1 MiB up (sha256 computed by the server-side sink)
#     byte-exact, IPv4 and IPv6 targets;
#   - UDP: datagrams echoed through ss-server -u, the echo naming ss-server as its peer;
#   - a wrong password: curl gets nothing from nginx, xproxyd logs it and counts it.
# Each cipher has its own target network 10.1.6-8.0/24 (10.1.9.0/24: wrong password).
source "$(dirname "$0")/lib.sh"
xpt_require ss-server sha256sum
xpt_init ss
xpt_topology
xpt_nginx
xpt_bigfile big 1

SS=10.1.5.2
PW=xpt-ss-secret-pw
METHODS=(aes-128-gcm aes-256-gcm chacha20-ietf-poly1305)
for n in 6 7 8 9 10 11; do
	nsr ip addr add 10.1.$n.1/24 dev wan0
	nss ip addr add 10.1.$n.2/24 dev s0
done
for i in 0 1 2; do
	ip netns exec "$XPT-srv" ss-server -s $SS -p $((8381 + i)) -k "$PW" -m "${METHODS[$i]}" -u \
		-t 10 >"$XPT_TMP/ss-$i.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
done
ip netns exec "$XPT-srv" ss-server -s $SS -p 8384 -k "$PW" -m aes-256-gcm -t 10 \
	>"$XPT_TMP/ss-3.log" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"

# A hostile server: reads the request, answers a salt and garbage.
cat >"$XPT_TMP/bad.py" <<'PY'
import os, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.1.5.2", 8385)); s.listen(8)
while True:
    c, _ = s.accept(); c.recv(4096); c.sendall(os.urandom(32 + 300)); c.close()
PY
ip netns exec "$XPT-srv" python3 "$XPT_TMP/bad.py" 2>"$XPT_TMP/bad.err" &
XPT_PIDS="$XPT_PIDS $!"
xpt_upload_sink 8080 "$XPT_TMP/up.log"
xpt_udp_echo 7007
for p in 8381 8382 8383 8384 8385 8080; do
	for _ in $(seq 1 50); do
		nss ss -Htln "sport = :$p" | grep -q . && break
		sleep 0.1
	done
	nss ss -Htln "sport = :$p" | grep -q . || xpt_fail "server port $p did not come up"
done

{
	for i in 0 1 2; do
		printf '[outbound.ss%d]\nplugin = shadowsocks\nserver = %s:%d\nmethod = %s\n' \
			$i $SS $((8381 + i)) "${METHODS[$i]}"
		printf 'password = %s\ntimeout = 5s\n\n' "$PW"
	done
	printf '[outbound.sswrong]\nplugin = shadowsocks\nserver = %s:8384\n' $SS
	printf 'method = aes-256-gcm\npassword = not-the-password\n\n'
	# the same server as ss2, configured by a SIP002 share link
	printf '[outbound.sslink]\nlink = ss://%s@%s:8383#link\n\n' \
		"$(printf 'chacha20-ietf-poly1305:%s' "$PW" | base64 -w0 | tr '+/' '-_' | tr -d =)" $SS
	printf '[outbound.ssbad]\nplugin = shadowsocks\nserver = %s:8385\n' $SS
	printf 'method = chacha20-ietf-poly1305\npassword = x\n\n'
	cat <<EOF
[route]
rule = dst-cidr:10.1.6.0/24|fd00:1:2::/64, ss0
rule = dst-cidr:10.1.7.0/24, ss1
rule = dst-cidr:10.1.8.0/24, ss2
rule = dst-cidr:10.1.9.0/24, sswrong
rule = dst-cidr:10.1.10.0/24, ssbad
rule = dst-cidr:10.1.11.0/24, sslink
fallback = DIRECT
EOF
} | xpt_config "$XPT_TMP/x.ini"
xpt_start "$XPT_TMP/x.ini"

head -c $((1024 * 1024)) /dev/urandom >"$XPT_TMP/up.bin"
UPSHA=$(sha256sum <"$XPT_TMP/up.bin" | cut -d' ' -f1)
BIGSHA=$(cat "$XPT_TMP/big.sha")

for i in 0 1 2; do
	ip=10.1.$((6 + i)).2
	m=${METHODS[$i]}
	expect_peer "http://$ip/" "$ip" "$m: nginx is reached through ss-server"
	sum=$(nsc curl -s --max-time 20 "http://$ip/big" | sha256sum | cut -d' ' -f1)
	[ "$sum" = "$BIGSHA" ] || xpt_fail "$m: 1 MiB download differs"
	xpt_ok "$m: 1 MiB download byte-exact"
	: >"$XPT_TMP/up.log"
	got=$(nsc curl -s --max-time 20 --data-binary @"$XPT_TMP/up.bin" "http://$ip:8080/up")
	[ "$got" = "$UPSHA" ] || xpt_fail "$m: upload reply '$got'"
	grep -qE "^(::ffff:)?$ip 1048576 $UPSHA\$" "$XPT_TMP/up.log" ||
		xpt_fail "$m: the server side did not receive the 1 MiB upload intact: $(cat "$XPT_TMP/up.log")"
	xpt_ok "$m: 1 MiB upload byte-exact at the server (via ss-server $ip)"
done
expect_peer "http://10.1.11.2/" "10.1.11.2" "an ss:// share link configures the outbound"
# IPv6 target through the aes-128-gcm instance
expect_peer "http://[$P6]/" "$P6" "aes-128-gcm: IPv6 target address through ss-server"
sum=$(nsc curl -s -g --max-time 20 "http://[$P6]/big" | sha256sum | cut -d' ' -f1)
[ "$sum" = "$BIGSHA" ] || xpt_fail "IPv6: 1 MiB download differs"
xpt_ok "IPv6 target: 1 MiB download byte-exact"

# UDP: datagrams of 8, 600 and 1200 bytes echoed through the server
udp_echo() { # IP -> reply text
	nsc python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
out = []
for n in (8, 600, 1200):  # ss-server drops larger replies (its UDP packet size limit)
    s.sendto(b"ping-123" + b"x" * (n - 8), (sys.argv[1], 7007))
    try: d = s.recvfrom(65535)[0].decode()
    except Exception as e: d = "none"
    if n > 8 and not d.endswith("ping-123" + "x" * (n - 8)): d = "bad %d-byte echo" % n
    out.append(d)
print(out[0] if len(set(x[:len(out[0])] for x in out)) == 1 else " | ".join(out))
PY
}
for i in 0 1 2; do
	ip=10.1.$((6 + i)).2
	got=$(udp_echo $ip)
	# the echo names the peer it saw: ss-server's address, not the client's
	[ "$got" = "echo:::ffff:$ip:ping-123" ] || xpt_fail "${METHODS[$i]}: UDP echo through ss-server got '$got'"
	xpt_ok "${METHODS[$i]}: UDP echo through ss-server"
done
# Wrong password: ss-server (3.3.5) logs "authentication error" and then holds the connection
# open without a byte (it tells a prober nothing), so the client sees a stalled request. What
# matters: no content of nginx's ever reaches the client, and once the client gives up xproxyd
# closes the upstream, logs why and counts it.
out=$(nsc curl -s --max-time 4 "http://10.1.9.2/" 2>&1)
wrc=$?
[ $wrc != 0 ] || xpt_fail "wrong password: curl succeeded ('$out')"
[ -z "$out" ] || xpt_fail "wrong password: the client got '$out'"
for _ in $(seq 1 50); do
	grep -q "closed without a reply (wrong password or method" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "closed without a reply (wrong password or method" "$XPT_DLOG" ||
	xpt_fail "wrong password: no log line saying so"
grep -q "authentication error" "$XPT_TMP/ss-3.log" ||
	xpt_fail "wrong password: ss-server did not see an authentication failure"
# A server answering garbage: the first chunk fails authentication, the client is reset.
out=$(nsc curl -s --max-time 5 "http://10.1.10.2/" 2>&1)
rc=$?
# 56 (reset while receiving) or 7 (reset before curl sent its request: the server answered
# the address chunk at once): the client is reset either way
[ $rc = 56 ] || [ $rc = 7 ] ||
	xpt_fail "garbage server: curl exit $rc, want 56 or 7 (reset), output '$out'"
[ -z "$out" ] || xpt_fail "garbage server: the client got '$out'"
grep -q "authentication failed on the server's first chunk (wrong password or method?)" \
	"$XPT_DLOG" || xpt_fail "garbage server: no authentication failure in the log"
xpt_ok "garbage from the server: the client is reset (curl exit $rc), logged"
kill -USR1 "$XPT_DPID"
sleep 0.5
grep -q "stats: outbound.sswrong.truncated [1-9]" "$XPT_DLOG" ||
	xpt_fail "wrong password: not counted ($(grep 'stats: outbound.sswrong' "$XPT_DLOG" | tail -3))"
grep -q "stats: outbound.ss0.connects [1-9]" "$XPT_DLOG" || xpt_fail "ss0.connects not counted"
grep -q "stats: outbound.ssbad.auth_failures [1-9]" "$XPT_DLOG" ||
	xpt_fail "garbage server: auth_failures not counted"
xpt_ok "wrong password: curl exit $wrc with no content, logged and counted"
grep -q "$PW\|not-the-password" "$XPT_DLOG" && xpt_fail "a password appears in the log"
xpt_ok "no password in the log"

kill -0 "$XPT_DPID" || xpt_fail "xproxyd died"
xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
xpt_ok "shadowsocks interop done"
