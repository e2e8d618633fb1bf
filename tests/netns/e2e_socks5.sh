#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_socks5.sh: the socks5 outbound against real SOCKS5 servers, microsocks (no auth, and
# -u/-P) and dante (username method, UDP ASSOCIATE), running in their own namespace.
#   client -> router (xproxyd, socks5 outbound) -> proxy ns (10.1.7.2) -> server ns
# The server answers with the peer address it saw: 10.1.7.2 / fd00:1:7::2 proves the path
# went through the proxy (direct would show the router, forwarding the client).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/outbound_lib.sh"
xpt_require microsocks danted openssl unshare
xpt_init "s5"
xpt_topology
xpo_proxy_ns
xpt_nginx
xpt_bigfile big 1
xpo_echo_server

# microsocks: open on 1080, with credentials on 1081
xpo_bg nsx microsocks -i $X4 -p 1080
xpo_bg nsx microsocks -i $X4 -p 1081 -u alice -P 'open sesame'
xpo_wait_listen nsx 1080
xpo_wait_listen nsx 1081

# dante, with the username method: it checks system accounts, so it runs in a private mount
# namespace where /etc/passwd and /etc/shadow are copies holding one extra test user
cp /etc/passwd "$XPT_TMP/passwd"
cp /etc/shadow "$XPT_TMP/shadow"
echo "xpt_s5:x:60999:65534::/nonexistent:/usr/sbin/nologin" >>"$XPT_TMP/passwd"
echo "xpt_s5:$(openssl passwd -6 'dante pw'):19000:0:99999:7:::" >>"$XPT_TMP/shadow"
chmod 600 "$XPT_TMP/shadow"
cat >"$XPT_TMP/danted.conf" <<EOF
logoutput: $XPT_TMP/danted.log
internal: $X4 port = 1090
external: p0
clientmethod: none
socksmethod: username
user.privileged: root
user.unprivileged: nobody
# 0/0: any address of either family (0.0.0.0/0 would be IPv4 only)
client pass { from: 0/0 to: 0/0 }
socks pass {
	from: 0/0 to: 0/0
	command: connect udpassociate
	socksmethod: username
}
socks pass { from: 0/0 to: 0/0 command: udpreply }
EOF
xpo_bg nsx unshare -m sh -c "mount --bind '$XPT_TMP/passwd' /etc/passwd &&
	mount --bind '$XPT_TMP/shadow' /etc/shadow && exec danted -f '$XPT_TMP/danted.conf'"
xpo_wait_listen nsx 1090

# Lying SOCKS5 servers: an HTTP answer, a reply with an unknown address type, silence
cat >"$XPT_TMP/liar.py" <<'PY'
import socket, sys, threading
answers = {
    1181: [b"HTTP/1.0 400 Bad Request\r\n\r\n"],
    1182: [b"\x05\x00", b"\x05\x00\x00\x09" + b"\x00" * 32],
    1183: [],
}
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            for a in answers[port]:
                c.recv(4096)
                c.sendall(a)
        except OSError:
            pass
        threading.Timer(10, c.close).start()
for p in answers:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
PY
xpo_bg nsx python3 "$XPT_TMP/liar.py" $X4
xpo_wait_listen nsx 1183

# 10.1.2.x / fd00:1:2::x: microsocks without auth; 10.1.5.2: microsocks with the right
# password; 10.1.3.2: the wrong one; 10.1.4.2: a port nobody listens on; fd00:1:4::2: dante
xpt_config "$XPT_TMP/x.ini" <<EOF
[outbound.s5]
plugin = socks5
server = $X4:1080

[outbound.s5auth]
plugin = socks5
server = $X4:1081
username = alice
password = open sesame

[outbound.s5bad]
plugin = socks5
server = $X4:1081
username = alice
password = not it

[outbound.s5down]
plugin = socks5
server = $X4:1099
timeout = 2s

[outbound.dante]
plugin = socks5
server = $X4:1090
username = xpt_s5
password = dante pw

[outbound.liar1]
plugin = socks5
server = $X4:1181

[outbound.liar2]
plugin = socks5
server = $X4:1182

[outbound.liar3]
plugin = socks5
server = $X4:1183
timeout = 1s

[route]
rule = dst-cidr:10.1.4.4/32, liar1
rule = dst-cidr:10.1.4.5/32, liar2
rule = dst-cidr:10.1.4.6/32, liar3
rule = dst-cidr:10.1.2.0/24|fd00:1:2::/64, s5
rule = dst-cidr:10.1.5.0/24, s5auth
rule = dst-cidr:10.1.3.0/24, s5bad
rule = dst-cidr:10.1.4.0/24, s5down
rule = dst-cidr:fd00:1:4::/64, dante
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"

expect_peer "http://$P4/" "$X4" "IPv4 through microsocks"
expect_peer "http://[$P6]/" "$X6" "IPv6 target through microsocks (ATYP 4)"
xpo_download "http://$P4/big" "microsocks"
xpo_echo_check "$P4" "$X4" "microsocks, IPv4"
xpo_echo_check "$P6" "$X6" "microsocks, IPv6"

expect_peer "http://$S4/" "$X4" "microsocks with username/password"
xpo_echo_check "$S4" "$X4" "microsocks with username/password"

# wrong password: refused by the server, reset to the client, said in the log and counted
xpo_reset_check "http://$D4/" "wrong password"
grep -q "\[outbound.s5bad\].*authentication failed: server rejected the username/password" \
	"$XPT_DLOG" || xpt_fail "no 'authentication failed' log line for the wrong password"
grep -q "not it" "$XPT_DLOG" && xpt_fail "the password appears in the log"
n=$(xpo_stat outbound.s5bad.auth_failures)
[ "${n:-0}" -ge 1 ] || xpt_fail "auth_failures counter is '${n:-none}'"
xpt_ok "wrong password logged as an authentication failure (auth_failures=$n), not echoed"

# nothing listening: the client is reset at once, not left to time out
xpo_reset_check "http://$B4/" "SOCKS5 server down"
grep -q "\[outbound.s5down\].*cannot reach the SOCKS5 server" "$XPT_DLOG" ||
	xpt_fail "no log line for the unreachable SOCKS5 server"

# lying servers: closed with a line and a counter (the silent one when `timeout` ends)
for i in 1 2; do
	xpo_reset_check "http://10.1.4.$((i + 3))/" "lying SOCKS5 server $i"
	n=$(xpo_stat outbound.liar$i.protocol_errors)
	[ "${n:-0}" -ge 1 ] || xpt_fail "liar$i: protocol_errors counter is '${n:-none}'"
done
grep -q "\[outbound.liar1\].*bad reply from the SOCKS5 server.*not a SOCKS5 server" "$XPT_DLOG" ||
	xpt_fail "no log line for the HTTP answer"
grep -q "\[outbound.liar2\].*bad reply from the SOCKS5 server.*unknown address type" \
	"$XPT_DLOG" || xpt_fail "no log line for the unknown address type"
out=$(nsc curl -s --max-time 5 -o /dev/null -w '%{time_total}' "http://10.1.4.6/" 2>&1)
rc=$?
[ $rc != 0 ] && [ $rc != 28 ] || xpt_fail "silent server: curl exit $rc after $out s (want a reset)"
n=$(xpo_stat outbound.liar3.timeouts)
[ "${n:-0}" -ge 1 ] || xpt_fail "liar3: timeouts counter is '${n:-none}'"
xpt_ok "lying SOCKS5 servers (HTTP answer, bad address type) and a silent one ($out s, timeout 1s) closed, logged and counted"

# dante: username method (system account in its mount namespace), TCP
expect_peer "http://[$B6]/" "$X6" "dante with username/password"
xpo_echo_check "$B6" "$X6" "dante with username/password"

# UDP ASSOCIATE through dante, when this tree's core proxies UDP
if grep -q "udp_open" "$XPT_SRC/core/udp.c" 2>/dev/null; then
	out=$(nsc timeout 20 python3 "$XPT_TMP/echo.py" udp "$B6" 9000 20)
	[ "$out" = "$X6 20/20" ] || xpt_fail "UDP through dante: '$out' (want '$X6 20/20')"
	n=$(xpo_stat outbound.dante.udp_sessions)
	[ "${n:-0}" -ge 1 ] || xpt_fail "udp_sessions counter is '${n:-none}'"
	xpt_ok "UDP ASSOCIATE through dante: 20/20 datagrams echoed, relay saw $X6"
else
	xpt_log "note: this tree's core has no UDP sessions; UDP ASSOCIATE not exercised"
fi

n=$(xpo_stat outbound.s5.connects)
[ "${n:-0}" -ge 5 ] || xpt_fail "s5 connects counter is '${n:-none}'"
xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
xpt_ok "socks5 outbound: all checks passed"
