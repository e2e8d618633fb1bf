#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_httpproxy.sh: the http outbound against tinyproxy (CONNECT, BasicAuth), the same through
# TLS (socat OPENSSL-LISTEN in front of tinyproxy, certificate made here), and lying proxies.
#   client -> router (xproxyd, http outbound) -> proxy ns (10.1.7.2) -> server ns
# The server answers with the peer address it saw: 10.1.7.2 / fd00:1:7::2 proves the path
# went through the proxy.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/outbound_lib.sh"
xpt_require tinyproxy socat openssl
xpt_init "hp"
xpt_topology
xpo_proxy_ns
xpt_nginx
xpt_bigfile big 1
xpo_echo_server

# tinyproxy drops to nobody: its files live in a directory anyone may write
mkdir -p "$XPT_TMP/tp" && chmod 777 "$XPT_TMP/tp"
tinyproxy_conf() { # PORT [BasicAuth line]
	cat >"$XPT_TMP/tp/$1.conf" <<EOF
User nobody
Group nogroup
Port $1
Listen $X4
Timeout 60
MaxClients 200
LogLevel Info
LogFile "$XPT_TMP/tp/$1.log"
PidFile "$XPT_TMP/tp/$1.pid"
Allow 10.0.0.0/8
ConnectPort 80
ConnectPort 9000
DisableViaHeader Yes
${2:-}
EOF
}
tinyproxy_conf 3128
tinyproxy_conf 3129 "BasicAuth alice open-sesame"
xpo_bg nsx tinyproxy -d -c "$XPT_TMP/tp/3128.conf"
xpo_bg nsx tinyproxy -d -c "$XPT_TMP/tp/3129.conf"
xpo_wait_listen nsx 3128
xpo_wait_listen nsx 3129

# TLS in front of the authenticating tinyproxy, with a certificate for proxy.test and 10.1.7.2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=proxy.test -addext "subjectAltName=DNS:proxy.test,IP:$X4" \
	-keyout "$XPT_TMP/key.pem" -out "$XPT_TMP/cert.pem" 2>/dev/null || xpt_fail "openssl req"
xpo_bg nsx socat OPENSSL-LISTEN:3443,bind=$X4,reuseaddr,fork,cert="$XPT_TMP/cert.pem",key="$XPT_TMP/key.pem",verify=0 \
	TCP:$X4:3129
xpo_wait_listen nsx 3443

# Lying proxies: garbage, a head that never ends, a 2xx that announces a body
cat >"$XPT_TMP/liar.py" <<'PY'
import socket, sys, threading
answers = {
    3201: b"SSH-2.0-not-a-proxy\r\n",
    3202: b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 65536,
    3203: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
}
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            c.recv(4096)
            c.sendall(answers[port])
        except OSError:
            pass
        threading.Timer(5, c.close).start()
for p in answers:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
PY
xpo_bg nsx python3 "$XPT_TMP/liar.py" $X4
xpo_wait_listen nsx 3203

# A proxy that puts the 200 and the target's first bytes in one write (one TLS record on
# 3302): the plugin must hand those bytes on, not swallow them with the head; then it echoes
cat >"$XPT_TMP/eager.py" <<'PY'
import socket, ssl, sys, threading
def handle(c):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                return
            head += d
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\nEAGER-BANNER\n")
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    except (OSError, ssl.SSLError):
        pass
    finally:
        c.close()
def serve(port, ctx):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        if ctx:
            try:
                c = ctx.wrap_socket(c, server_side=True)
            except (OSError, ssl.SSLError):
                c.close()
                continue
        threading.Thread(target=handle, args=(c,), daemon=True).start()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
threading.Thread(target=serve, args=(3301, None), daemon=True).start()
serve(3302, ctx)
PY
xpo_bg nsx python3 "$XPT_TMP/eager.py" $X4 "$XPT_TMP/cert.pem" "$XPT_TMP/key.pem"
xpo_wait_listen nsx 3302

xpt_config "$XPT_TMP/x.ini" <<EOF
[outbound.hp]
plugin = http
server = $X4:3128

[outbound.hpauth]
plugin = http
server = $X4:3129
username = alice
password = open-sesame

[outbound.hpbad]
plugin = http
server = $X4:3129
username = alice
password = wrong-one

[outbound.hptls]
plugin = http
server = $X4:3443
tls = yes
ca_file = $XPT_TMP/cert.pem
username = alice
password = open-sesame

[outbound.hptlssni]
plugin = http
server = $X4:3443
tls = yes
sni = proxy.test
ca_file = $XPT_TMP/cert.pem
username = alice
password = open-sesame

[outbound.hptlsca]
plugin = http
server = $X4:3443
tls = yes
username = alice
password = open-sesame

[outbound.hpdown]
plugin = http
server = $X4:3199

[outbound.liar1]
plugin = http
server = $X4:3201

[outbound.liar2]
plugin = http
server = $X4:3202

[outbound.liar3]
plugin = http
server = $X4:3203

[outbound.eager]
plugin = http
server = $X4:3301

[outbound.eagertls]
plugin = http
server = $X4:3302
tls = yes
ca_file = $XPT_TMP/cert.pem

[route]
rule = dst-cidr:10.1.4.7/32, eager
rule = dst-cidr:10.1.4.8/32, eagertls
rule = dst-cidr:10.1.2.0/24|fd00:1:2::/64, hp
rule = dst-cidr:10.1.5.0/24, hpauth
rule = dst-cidr:10.1.3.0/24, hpbad
rule = dst-cidr:fd00:1:3::/64, hptls
rule = dst-cidr:fd00:1:4::/64, hptlssni
rule = dst-cidr:10.1.4.2/32, hptlsca
rule = dst-cidr:10.1.4.3/32, hpdown
rule = dst-cidr:10.1.4.4/32, liar1
rule = dst-cidr:10.1.4.5/32, liar2
rule = dst-cidr:10.1.4.6/32, liar3
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"

expect_peer "http://$P4/" "$X4" "IPv4 through tinyproxy"
expect_peer "http://[$P6]/" "$X6" "IPv6 target through tinyproxy (CONNECT [v6]:port)"
xpo_download "http://$P4/big" "tinyproxy"
xpo_echo_check "$P4" "$X4" "tinyproxy"

expect_peer "http://$S4/" "$X4" "tinyproxy with BasicAuth"
xpo_echo_check "$S4" "$X4" "tinyproxy with BasicAuth"

# 407 (or 401, tinyproxy's answer): an authentication failure, logged and counted, the password never shown
xpo_reset_check "http://$D4/" "wrong password (tinyproxy answers 401)"
grep -q "\[outbound.hpbad\].*authentication failed: proxy refused the username/password (40[17])" \
	"$XPT_DLOG" || xpt_fail "no 'authentication failed' log line for the wrong password"
grep -q "wrong-one" "$XPT_DLOG" && xpt_fail "the password appears in the log"
n=$(xpo_stat outbound.hpbad.auth_failures)
[ "${n:-0}" -ge 1 ] || xpt_fail "auth_failures counter is '${n:-none}'"
xpt_ok "wrong password logged as an authentication failure (auth_failures=$n), password not echoed"

# TLS to the proxy: the certificate's IP address, then its name through sni
expect_peer "http://[$D6]/" "$X6" "TLS to the proxy (verified by IP SAN)"
xpo_download "http://[$D6]/big" "TLS to the proxy"
xpo_echo_check "$D6" "$X6" "TLS to the proxy: bytes behind the 200 kept, 1 MB both ways"
expect_peer "http://[$B6]/" "$X6" "TLS to the proxy with sni = proxy.test"
# a certificate the system store does not know: refused, logged, counted
xpo_reset_check "http://$B4/" "TLS with an untrusted certificate"
grep -q "\[outbound.hptlsca\].*TLS to the HTTP proxy failed: .*certificate" "$XPT_DLOG" ||
	xpt_fail "no log line for the untrusted certificate"
n=$(xpo_stat outbound.hptlsca.tls_failures)
[ "${n:-0}" -ge 1 ] || xpt_fail "tls_failures counter is '${n:-none}'"
xpt_ok "an untrusted proxy certificate is refused (tls_failures=$n)"

# the target's first bytes in the same write (plain) or TLS record as the 200
for ip in 10.1.4.7 10.1.4.8; do
	out=$(nsc timeout 10 python3 -c '
import socket, sys
c = socket.create_connection((sys.argv[1], 9000), timeout=5)
f = c.makefile("rb")
first = f.readline()
c.sendall(b"ping\n")
print(first.decode().strip(), f.readline().decode().strip())' $ip 2>&1)
	[ "$out" = "EAGER-BANNER ping" ] || xpt_fail "bytes behind the 200 via $ip: got '$out'"
done
xpt_ok "bytes sent right behind the 200 reach the client (plain: MSG_PEEK; TLS: same record)"

xpo_reset_check "http://10.1.4.3/" "HTTP proxy down"
grep -q "\[outbound.hpdown\].*cannot reach the HTTP proxy" "$XPT_DLOG" ||
	xpt_fail "no log line for the unreachable proxy"

# lying proxies: each one closed at once, with a line and a counter
for i in 1 2 3; do
	xpo_reset_check "http://10.1.4.$((i + 3))/" "lying proxy $i"
	n=$(xpo_stat outbound.liar$i.protocol_errors)
	[ "${n:-0}" -ge 1 ] || xpt_fail "liar$i: protocol_errors counter is '${n:-none}'"
done
grep -q "\[outbound.liar1\].*bad response from the HTTP proxy.*not an HTTP response" \
	"$XPT_DLOG" || xpt_fail "no log line for the garbage answer"
grep -q "\[outbound.liar2\].*bad response from the HTTP proxy.*too long" "$XPT_DLOG" ||
	xpt_fail "no log line for the endless head"
grep -q "\[outbound.liar3\].*bad response from the HTTP proxy.*announces a body" "$XPT_DLOG" ||
	xpt_fail "no log line for the 2xx with a body"
xpt_ok "lying proxies (garbage, endless head, 2xx with a body) closed, logged and counted"

xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
xpt_ok "http outbound: all checks passed"
