#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_trojan.sh: the trojan outbound against trojan-gfw (Debian package `trojan`) in server mode
# with a certificate made by openssl for this run. curl in the client namespace goes through
# the router (xproxyd, trojan outbound) to trojan in the server namespace, which connects to
# nginx / a python upload sink:
#   - nginx sees trojan's address as the peer (the path went through the server);
#   - 1 MiB down (sha256 at the client) and 1 MiB up (sha256 computed at the server side),
#     IPv4 and IPv6 targets;
#   - UDP ASSOCIATE: datagrams echoed through trojan, the echo naming trojan as its peer;
#   - a wrong password: trojan-gfw does not refuse, it relays the bytes to its fallback
#     (remote_addr, here nginx on another address); the client must not get the target's
#     content, and what it does get is the fallback's answer;
#   - a certificate whose name does not match sni: the handshake fails, the client is reset,
#     the log says why;
#   - a hostile server: a TCP close without close_notify mid-answer is an error for the client,
#     a malformed UDP frame ends the session with a log line and a counter.
source "$(dirname "$0")/lib.sh"
xpt_require trojan openssl sha256sum
xpt_init trj
xpt_topology
xpt_nginx
xpt_bigfile big 1

TJ=10.1.5.2
PW=xpt-trojan-pw
for n in 6 7 8 9 10; do
	nsr ip addr add 10.1.$n.1/24 dev wan0
	nss ip addr add 10.1.$n.2/24 dev s0
done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-keyout "$XPT_TMP/key.pem" -out "$XPT_TMP/cert.pem" -subj /CN=trojan.test \
	-addext subjectAltName=DNS:trojan.test >/dev/null 2>&1 || xpt_fail "openssl req"
cat >"$XPT_TMP/trojan.json" <<EOF
{
    "run_type": "server",
    "local_addr": "$TJ",
    "local_port": 8443,
    "remote_addr": "10.1.5.2",
    "remote_port": 80,
    "password": ["$PW"],
    "log_level": 1,
    "ssl": {
        "cert": "$XPT_TMP/cert.pem",
        "key": "$XPT_TMP/key.pem",
        "key_password": "",
        "prefer_server_cipher": true,
        "alpn": ["http/1.1"],
        "reuse_session": true,
        "session_ticket": false,
        "session_timeout": 600,
        "plain_http_response": "",
        "curves": "",
        "dhparam": ""
    },
    "tcp": {"prefer_ipv4": false, "no_delay": true, "keep_alive": true, "reuse_port": false,
            "fast_open": false, "fast_open_qlen": 20},
    "mysql": {"enabled": false}
}
EOF
ip netns exec "$XPT-srv" trojan -c "$XPT_TMP/trojan.json" -l "$XPT_TMP/trojan.log" \
	>/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"

xpt_upload_sink 8080 "$XPT_TMP/up.log"
xpt_udp_echo 7007
# A hostile trojan "server": TLS with the test certificate, then for CONNECT part of an HTTP
# answer and a TCP close without close_notify (a truncation), for UDP a malformed frame.
cat >"$XPT_TMP/evil.py" <<'PY'
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("10.1.5.2", 8444)); ls.listen(16)
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        req = t.recv(4096)
        if len(req) > 58 and req[58] == 3:
            t.sendall(bytes([9, 1, 2, 3]) + b"\x00\x05\r\nhello")
        else:
            t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
        c.shutdown(socket.SHUT_RDWR)  # TCP FIN under TLS: no close_notify
    except Exception:
        pass
    finally:
        c.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
ip netns exec "$XPT-srv" python3 "$XPT_TMP/evil.py" "$XPT_TMP/cert.pem" "$XPT_TMP/key.pem" \
	2>"$XPT_TMP/evil.err" &
XPT_PIDS="$XPT_PIDS $!"
for p in 8443 8080 8444; do
	for _ in $(seq 1 50); do
		nss ss -Htln "sport = :$p" | grep -q . && break
		sleep 0.1
	done
	nss ss -Htln "sport = :$p" | grep -q . ||
		xpt_fail "server port $p did not come up: $(cat "$XPT_TMP/trojan.log" 2>/dev/null)"
done

{
	cat <<EOF
[outbound.tj]
plugin = trojan
server = $TJ:8443
password = $PW
sni = trojan.test
ca_file = $XPT_TMP/cert.pem
alpn = http/1.1
timeout = 5s

[outbound.tjwrong]
plugin = trojan
server = $TJ:8443
password = not-the-password
sni = trojan.test
ca_file = $XPT_TMP/cert.pem

[outbound.tjname]
plugin = trojan
server = $TJ:8443
password = $PW
sni = other.test
ca_file = $XPT_TMP/cert.pem

[outbound.tjlink]
link = trojan://$PW@$TJ:8443?sni=trojan.test#link
ca_file = $XPT_TMP/cert.pem

[outbound.tjevil]
plugin = trojan
server = $TJ:8444
password = $PW
sni = trojan.test
ca_file = $XPT_TMP/cert.pem

[route]
rule = dst-cidr:10.1.10.0/24, tjevil
rule = dst-cidr:10.1.9.0/24, tjlink
rule = dst-cidr:10.1.6.0/24|fd00:1:2::/64, tj
rule = dst-cidr:10.1.7.0/24, tjwrong
rule = dst-cidr:10.1.8.0/24, tjname
fallback = DIRECT
EOF
} | xpt_config "$XPT_TMP/x.ini"
xpt_start "$XPT_TMP/x.ini"

head -c $((1024 * 1024)) /dev/urandom >"$XPT_TMP/up.bin"
UPSHA=$(sha256sum <"$XPT_TMP/up.bin" | cut -d' ' -f1)
BIGSHA=$(cat "$XPT_TMP/big.sha")
ip=10.1.6.2

expect_peer "http://$ip/" "$ip" "nginx is reached through trojan"
sum=$(nsc curl -s --max-time 20 "http://$ip/big" | sha256sum | cut -d' ' -f1)
[ "$sum" = "$BIGSHA" ] || xpt_fail "1 MiB download differs"
xpt_ok "1 MiB download byte-exact"
got=$(nsc curl -s --max-time 20 --data-binary @"$XPT_TMP/up.bin" "http://$ip:8080/up")
[ "$got" = "$UPSHA" ] || xpt_fail "upload reply '$got'"
grep -qE "^(::ffff:)?$ip 1048576 $UPSHA\$" "$XPT_TMP/up.log" ||
	xpt_fail "the server side did not receive the 1 MiB upload intact: $(cat "$XPT_TMP/up.log")"
xpt_ok "1 MiB upload byte-exact at the server (via trojan $ip)"
expect_peer "http://[$P6]/" "$P6" "IPv6 target address through trojan"
sum=$(nsc curl -s -g --max-time 20 "http://[$P6]/big" | sha256sum | cut -d' ' -f1)
[ "$sum" = "$BIGSHA" ] || xpt_fail "IPv6: 1 MiB download differs"
xpt_ok "IPv6 target: 1 MiB download byte-exact"
expect_peer "http://10.1.9.2/" "10.1.9.2" "a trojan:// share link configures the outbound"
# many short connections in parallel
seq 1 40 | xargs -P 8 -I{} ip netns exec "$XPT-cli" curl -s --max-time 10 -o /dev/null \
	-w '%{http_code}\n' "http://$ip/" >"$XPT_TMP/par.txt"
[ "$(grep -c '^200$' "$XPT_TMP/par.txt")" = 40 ] ||
	xpt_fail "40 parallel requests: $(sort "$XPT_TMP/par.txt" | uniq -c | xargs)"
xpt_ok "40 parallel short connections through trojan"

udp_echo() { # IP -> reply text
	nsc python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
out = []
for n in (8, 600, 1200):  # within one MTU on every hop
    s.sendto(b"ping-123" + b"x" * (n - 8), (sys.argv[1], 7007))
    try: d = s.recvfrom(65535)[0].decode()
    except Exception as e: d = "none"
    if n > 8 and not d.endswith("ping-123" + "x" * (n - 8)): d = "bad %d-byte echo" % n
    out.append(d)
print(out[0] if len(set(x[:len(out[0])] for x in out)) == 1 else " | ".join(out))
PY
}
got=$(udp_echo $ip)
# the echo names the peer it saw: trojan's address, not the client's
[ "$got" = "echo:::ffff:$ip:ping-123" ] || xpt_fail "UDP echo through trojan got '$got'"
xpt_ok "UDP ASSOCIATE: echo through trojan"
# Wrong password: trojan-gfw hands the connection to its fallback (nginx at 10.1.5.2:80), which
# sees the hash line as a bad request. The client must never get the target's content.
out=$(nsc curl -s --max-time 5 "http://10.1.7.2/" 2>&1)
[ "$out" != "10.1.7.2" ] || xpt_fail "wrong password: the client got the target's content"
case $out in
*"400 Bad Request"*) xpt_ok "wrong password: the client got the fallback's 400, not the target" ;;
"") xpt_ok "wrong password: the client got nothing" ;;
*) xpt_fail "wrong password: unexpected answer '$out'" ;;
esac
grep -q "authentication failed\|not trojan request" "$XPT_TMP/trojan.log" ||
	xpt_fail "wrong password: trojan-gfw did not log a failed authentication: $(tail -5 "$XPT_TMP/trojan.log")"
xpt_ok "wrong password: trojan-gfw logged it as unauthenticated"

# A certificate that does not match sni: no connection, the client is reset, the log says why.
out=$(nsc curl -s --max-time 5 "http://10.1.8.2/" 2>&1)
rc=$?
[ $rc = 56 ] || [ $rc = 7 ] || xpt_fail "name mismatch: curl exit $rc, output '$out'"
[ -z "$out" ] || xpt_fail "name mismatch: the client got '$out'"
grep -q "\[outbound.tjname\] TLS handshake with the server failed: certificate: " "$XPT_DLOG" ||
	xpt_fail "name mismatch: no certificate failure in the log"
xpt_ok "certificate name mismatch: curl exit $rc, logged"

# The hostile server: a truncated answer is a reset, never a clean end; a malformed UDP frame
# ends the UDP session with a log line.
out=$(nsc curl -s --max-time 5 "http://10.1.10.2/" 2>&1)
rc=$?
[ $rc = 56 ] || [ $rc = 18 ] || xpt_fail "truncating server: curl exit $rc, output '$out'"
xpt_ok "a TCP close without close_notify reaches the client as an error (curl exit $rc)"
got=$(udp_echo 10.1.10.2)
case $got in *hello* | *echo:*) xpt_fail "malformed UDP frame: the client got '$got'" ;; esac
for _ in $(seq 1 30); do
	grep -q "\[outbound.tjevil\] UDP session: a malformed UDP frame from the server" "$XPT_DLOG" &&
		break
	sleep 0.1
done
grep -q "\[outbound.tjevil\] UDP session: a malformed UDP frame from the server" "$XPT_DLOG" ||
	xpt_fail "malformed UDP frame: not logged"
xpt_ok "a malformed UDP frame ends the session with a log line"

kill -USR1 "$XPT_DPID"
sleep 0.5
grep -q "stats: outbound.tjevil.udp_errors [1-9]" "$XPT_DLOG" || xpt_fail "udp_errors not counted"
grep -q "stats: outbound.tjevil.stream_errors [1-9]" "$XPT_DLOG" ||
	xpt_fail "stream_errors not counted"
grep -q "stats: outbound.tjname.tls_failures [1-9]" "$XPT_DLOG" ||
	xpt_fail "tls_failures not counted"
grep -q "stats: outbound.tj.connects [1-9]" "$XPT_DLOG" || xpt_fail "connects not counted"
# after the first connections, tickets from trojan-gfw let later handshakes resume
grep -q "stats: outbound.tj.resumed [1-9]" "$XPT_DLOG" || xpt_fail "no TLS session was resumed"
xpt_ok "counters: tj.connects, tj.resumed, tjname.tls_failures"
grep -q "$PW\|not-the-password" "$XPT_DLOG" && xpt_fail "a password appears in the log"
xpt_ok "no password in the log"

kill -0 "$XPT_DPID" || xpt_fail "xproxyd died"
xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
xpt_ok "trojan interop done"
