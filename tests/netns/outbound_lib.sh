# SPDX-License-Identifier: GPL-2.0-only
# outbound_lib.sh - helpers for the proxy-outbound tests (e2e_socks5.sh, e2e_httpproxy.sh) and
# bench/outbound/run.sh; sourced after lib.sh.
#
# A fourth namespace, "$XPT-pxy", holds the proxy servers (microsocks, danted, tinyproxy):
#   router [px0 10.1.7.1 fd00:1:7::1] --- [p0 10.1.7.2 fd00:1:7::2] proxy
# The router forwards between px0 and wan0 without NAT and the datapath never sees px0, so a
# connection that went through a proxy reaches the server from 10.1.7.2 / fd00:1:7::2: the
# address the server reports is the proof of the path.
X4=10.1.7.2 X6=fd00:1:7::2

nsx() { ip netns exec "$XPT-pxy" "$@"; }

# xpo_proxy_ns: create the proxy namespace (removed by xpo_cleanup, chained into lib.sh's trap)
xpo_proxy_ns() {
	ip netns add "$XPT-pxy" || xpt_fail "netns add pxy"
	trap 'xpo_cleanup' EXIT
	ip link add px0 netns "$XPT-rtr" type veth peer name p0 netns "$XPT-pxy" || xpt_fail "veth pxy"
	nsx sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
		net.ipv4.ip_local_port_range="20000 60000" net.core.somaxconn=4096
	nsx ip link set lo up
	nsr ip addr add 10.1.7.1/24 dev px0
	nsr ip -6 addr add fd00:1:7::1/64 dev px0 nodad
	nsr ip link set px0 up
	nsx ip addr add $X4/24 dev p0
	nsx ip -6 addr add $X6/64 dev p0 nodad
	nsx ip link set p0 up
	nsx ip route add default via 10.1.7.1
	nsx ip -6 route add default via fd00:1:7::1
	for _ in $(seq 1 30); do
		nsx ping -c1 -W1 $P4 >/dev/null 2>&1 && nsx ping -6 -c1 -W1 $P6 >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	xpt_fail "the proxy namespace cannot reach the server"
}

xpo_cleanup() {
	local rc=$? p f
	if [ $rc != 0 ] && [ $rc != 77 ] && [ -n "${XPT_TMP:-}" ]; then
		# the proxies' own view of a failure
		for f in "$XPT_TMP"/servers.log "$XPT_TMP"/danted.log "$XPT_TMP"/tp/*.log; do
			[ -s "$f" ] || continue
			xpt_log "$f (last 15 lines):"
			tail -n 15 "$f" >&2
		done
	fi
	if ip netns list 2>/dev/null | grep -qw "^$XPT-pxy"; then
		for p in $(ip netns pids "$XPT-pxy" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
		ip netns del "$XPT-pxy" 2>/dev/null
	fi
	(exit $rc)
	xpt_cleanup
}

# xpo_bg NS-FUNCTION ARGS...: start a server in the background, remembered for cleanup
xpo_bg() {
	"$@" </dev/null >>"$XPT_TMP/servers.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	disown $!
}

# xpo_wait_listen NS-FUNCTION PORT [proto]: wait until something listens on PORT
xpo_wait_listen() {
	local ns=$1 port=$2 flag=${3:-t}
	for _ in $(seq 1 50); do
		$ns ss -H"$flag"ln "sport = :$port" | grep -q . && return 0
		sleep 0.1
	done
	xpt_fail "nothing listens on port $port: $(tail -5 "$XPT_TMP/servers.log")"
}

# The echo tool: "server" in the server namespace (TCP: a banner naming the peer, sent at once,
# then every byte echoed back until EOF; UDP: each datagram back prefixed with the peer), and
# "tcp"/"udp" clients that check the banner's peer and a byte-exact echo.
xpo_echo_tool() {
	cat >"$XPT_TMP/echo.py" <<'PY'
import hashlib, os, socket, sys, threading
def server(port):
    def tcp(c, a):
        try:
            c.sendall(b"BANNER %s\n" % a[0].encode())
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        c.close()
    def udp():
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        u.bind(("::", port))
        while True:
            d, a = u.recvfrom(65536)
            peer = a[0][7:] if a[0].startswith("::ffff:") else a[0]
            u.sendto(peer.encode() + b" " + d, a)
    threading.Thread(target=udp, daemon=True).start()
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(128)
    while True:
        c, a = s.accept()
        a = (a[0][7:] if a[0].startswith("::ffff:") else a[0],)
        threading.Thread(target=tcp, args=(c, a), daemon=True).start()
def tcp(host, port, size):
    data = os.urandom(size)
    c = socket.create_connection((host, port), timeout=15)
    f = b""
    while not f.endswith(b"\n"):
        d = c.recv(1)
        if not d:
            sys.exit("no banner")
        f += d
    got = []
    def reader():
        n = 0
        while n < size:
            d = c.recv(65536)
            if not d:
                break
            got.append(d)
            n += len(d)
    t = threading.Thread(target=reader)
    t.start()
    c.sendall(data)
    # no half-close before the echo is back: microsocks and tinyproxy end both directions
    # at the first EOF
    t.join(20)
    c.close()
    back = b"".join(got)
    ok = hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    print("%s %s %d" % (f.split()[1].decode(), "exact" if ok else "MISMATCH", len(back)))
def udp(host, port, n):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.settimeout(2)
    u.connect((host, port))
    peers = set()
    good = 0
    for i in range(n):
        msg = os.urandom(32 + i * 37)
        u.send(msg)
        try:
            d = u.recv(65536)
        except socket.timeout:
            continue
        p, _, body = d.partition(b" ")
        if body == msg:
            good += 1
            peers.add(p.decode())
    print("%s %d/%d" % (",".join(sorted(peers)) or "-", good, n))
if sys.argv[1] == "server":
    server(int(sys.argv[2]))
elif sys.argv[1] == "tcp":
    tcp(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
else:
    udp(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
PY
}

# xpo_echo_server: the echo tool on port 9000 (TCP and UDP) in the server namespace
xpo_echo_server() {
	xpo_echo_tool
	xpo_bg nss python3 "$XPT_TMP/echo.py" server 9000
	xpo_wait_listen nss 9000
}

# xpo_echo_check HOST WANT_PEER WHAT: 1 MB both ways through the path, banner first
xpo_echo_check() {
	local out
	out=$(nsc timeout 30 python3 "$XPT_TMP/echo.py" tcp "$1" 9000 $((1024 * 1024)) 2>&1)
	[ "$out" = "$2 exact 1048576" ] || xpt_fail "$3: echo of 1 MB to $1 gave '$out' (want '$2 exact 1048576')"
	xpt_ok "$3: server-first banner and 1 MB echoed byte-exact, server saw $2"
}

# xpo_download URL WHAT: the 1 MB nginx file "big", byte-exact
xpo_download() {
	local got
	got=$(nsc curl -s -g --max-time 20 "$1" | sha256sum | cut -d' ' -f1)
	[ "$got" = "$(cat "$XPT_TMP/big.sha")" ] || xpt_fail "$2: download of $1 is not byte-exact"
	xpt_ok "$2: 1 MB download byte-exact ($1)"
}

# xpo_stat NAME: the last value xproxyd logged for counter NAME after SIGUSR1
xpo_stat() {
	kill -USR1 "$XPT_DPID"
	sleep 0.3
	grep "stats: $1 " "$XPT_DLOG" | tail -1 | awk '{print $NF}'
}

# xpo_reset_check URL WHAT: the connection fails (reset), promptly
xpo_reset_check() {
	local out rc ms
	out=$(nsc curl -s -g --max-time 5 -o /dev/null -w '%{time_total}' "$1" 2>&1)
	rc=$?
	ms=$(awk -v t="$out" 'BEGIN { printf "%d", t * 1000 }')
	[ $rc = 56 ] || [ $rc = 52 ] || [ $rc = 7 ] ||
		xpt_fail "$2: curl exit $rc (want a reset: 56, 52 or 7), $out s"
	[ "$ms" -lt 1000 ] || xpt_fail "$2: the client waited $ms ms for the failure"
	xpt_ok "$2: client reset after $out s (curl exit $rc)"
}
