# SPDX-License-Identifier: GPL-2.0-only
# lib.sh - shared topology and helpers for the netns tests (sourced, not run).
#
#   client [c0 10.1.1.2 fd00:1:1::2] --- [lan0 10.1.1.1 fd00:1:1::1] router [wan0 ...] --- [s0] server
#
# The server holds one address in each routed network, so one nginx serves them all:
#   10.1.2.2  fd00:1:2::2   "proxy" network   (the embedded default config proxies it)
#   10.1.3.2  fd00:1:3::2   "direct" network  (DIRECT: the kernel forwards it)
#   10.1.4.2  fd00:1:4::2   "block" network   (BLOCK)
#   10.1.5.2                "spare" network   (tests route it however they need)
# The router forwards without NAT, so nginx's $remote_addr tells the paths apart: the client's
# own address (10.1.1.2) means the kernel forwarded it; the router's (10.1.2.1 ...) means
# xproxyd connected upstream itself.
#
# Names: every namespace is "$XPT-<role>" with XPT unique per run (meson runs tests in
# parallel); interface names live inside the namespaces, so they can be fixed (lan0, wan0).
# Everything is removed by xpt_cleanup, installed as an EXIT trap by xpt_init.

set -u

XPT_SRC=${XPT_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
XPT_BUILD=${XPT_BUILD:-$XPT_SRC/build}
XPROXYD=${XPROXYD:-$XPT_BUILD/core/xproxyd}
XPT_PLUGINS=${XPT_PLUGINS:-$XPT_BUILD/plugins}

C4=10.1.1.2 C6=fd00:1:1::2 R4=10.1.1.1 R6=fd00:1:1::1
P4=10.1.2.2 P6=fd00:1:2::2 PR4=10.1.2.1 PR6=fd00:1:2::1
D4=10.1.3.2 D6=fd00:1:3::2
B4=10.1.4.2 B6=fd00:1:4::2
S4=10.1.5.2

xpt_log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
xpt_fail() {
	xpt_log "FAIL: $*"
	if [ -n "${XPT_DLOG:-}" ] && [ -f "$XPT_DLOG" ]; then
		xpt_log "xproxyd log (last 40 lines):"
		tail -n 40 "$XPT_DLOG" >&2
	fi
	exit 1
}
xpt_skip() { xpt_log "SKIP: $*"; exit 77; }
xpt_ok() { xpt_log "ok: $*"; }

nsc() { ip netns exec "$XPT-cli" "$@"; }
nsr() { ip netns exec "$XPT-rtr" "$@"; }
nss() { ip netns exec "$XPT-srv" "$@"; }

xpt_require() {
	[ "$(id -u)" = 0 ] || xpt_skip "needs root (network namespaces, BPF)"
	local b
	for b in ip tc ss ping curl nginx python3 "$@"; do
		command -v "$b" >/dev/null || xpt_fail "missing $b (tests/run.sh installs the test packages)"
	done
	[ -x "$XPROXYD" ] || xpt_fail "no xproxyd at $XPROXYD (set XPT_BUILD)"
}

xpt_cleanup() {
	local rc=$? ns p
	for p in ${XPT_PIDS:-}; do kill -KILL "$p" 2>/dev/null; done
	for ns in cli rtr srv; do
		if ip netns list 2>/dev/null | grep -qw "^$XPT-$ns"; then
			for p in $(ip netns pids "$XPT-$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
			ip netns del "$XPT-$ns" 2>/dev/null
		fi
	done
	[ -n "${XPT_TMP:-}" ] && rm -rf "$XPT_TMP"
	exit $rc
}

# xpt_init NAME: unique prefix, temp dir, trap
xpt_init() {
	XPT=${XPT_PREFIX:-"xpt$(printf '%04x' $((RANDOM % 65536)))${1:0:3}"}
	XPT_TMP=$(mktemp -d "/tmp/$XPT.XXXXXX")
	XPT_PIDS=""
	trap xpt_cleanup EXIT
	trap 'exit 130' INT TERM
}

xpt_topology() {
	local ns
	for ns in cli rtr srv; do ip netns add "$XPT-$ns" || xpt_fail "netns add"; done
	ip link add c0 netns "$XPT-cli" type veth peer name lan0 netns "$XPT-rtr" || xpt_fail "veth"
	ip link add wan0 netns "$XPT-rtr" type veth peer name s0 netns "$XPT-srv" || xpt_fail "veth"
	for ns in cli rtr srv; do
		ip netns exec "$XPT-$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 \
			net.ipv6.conf.default.accept_dad=0 net.ipv4.conf.all.rp_filter=0 \
			net.ipv4.conf.default.rp_filter=0 net.ipv4.tcp_tw_reuse=1 \
			net.ipv4.ip_local_port_range="20000 60000" net.core.somaxconn=4096
		ip netns exec "$XPT-$ns" ip link set lo up
	done
	nsc ip addr add $C4/24 dev c0
	nsc ip -6 addr add $C6/64 dev c0 nodad
	nsc ip link set c0 up
	nsc ip route add default via $R4
	nsc ip -6 route add default via $R6

	nsr sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	nsr ip addr add $R4/24 dev lan0
	nsr ip -6 addr add $R6/64 dev lan0 nodad
	local n
	for n in 2 3 4 5; do
		nsr ip addr add 10.1.$n.1/24 dev wan0
		nss ip addr add 10.1.$n.2/24 dev s0
	done
	for n in 2 3 4; do
		nsr ip -6 addr add fd00:1:$n::1/64 dev wan0 nodad
		nss ip -6 addr add fd00:1:$n::2/64 dev s0 nodad
	done
	nsr ip link set lan0 up
	nsr ip link set wan0 up
	nss ip link set s0 up
	nss ip route add default via 10.1.2.1
	nss ip -6 route add default via fd00:1:2::1
	local ok=0
	for _ in $(seq 1 30); do
		if nsc ping -c1 -W1 $D4 >/dev/null 2>&1 && nsc ping -6 -c1 -W1 $D6 >/dev/null 2>&1; then
			ok=1
			break
		fi
		sleep 0.2
	done
	[ $ok = 1 ] || xpt_fail "client cannot reach the server before xproxyd starts"
}

# nginx on every server address: "/" answers the peer address, /big the big file.
xpt_nginx() {
	mkdir -p "$XPT_TMP/ngx/www"
	cat >"$XPT_TMP/ngx/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $XPT_TMP/ngx/nginx.pid;
error_log $XPT_TMP/ngx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $XPT_TMP/ngx/body;
  proxy_temp_path $XPT_TMP/ngx/proxy;
  fastcgi_temp_path $XPT_TMP/ngx/fcgi;
  uwsgi_temp_path $XPT_TMP/ngx/uwsgi;
  scgi_temp_path $XPT_TMP/ngx/scgi;
  keepalive_timeout 60;
  server {
    listen 80 backlog=4096;
    listen [::]:80 backlog=4096;
    root $XPT_TMP/ngx/www;
    location = / { default_type text/plain; return 200 "\$remote_addr\n"; }
    location /slow { limit_rate 2m; }
  }
}
EOF
	ip netns exec "$XPT-srv" nginx -e "$XPT_TMP/ngx/error.log" -p "$XPT_TMP/ngx" \
		-c "$XPT_TMP/ngx/nginx.conf" </dev/null >/dev/null 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	disown $! # cleanup kills it; no job notice
	for _ in $(seq 1 50); do
		nss ss -Htln 'sport = :80' | grep -q . && return 0
		sleep 0.1
	done
	xpt_fail "nginx did not start: $(cat "$XPT_TMP/ngx/error.log")"
}

# xpt_upload_sink PORT LOG: in the server namespace, HTTP POST on [::]:PORT answers the
# sha256 of the body and appends "peer bytes sha256" to LOG (the upload as the server got it)
xpt_upload_sink() {
	cat >"$XPT_TMP/sink.py" <<'PY'
import hashlib, http.server, socket, socketserver, sys
port, out = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers["Content-Length"]); h = hashlib.sha256(); left = n
        while left:
            b = self.rfile.read(min(left, 65536))
            if not b: break
            h.update(b); left -= len(b)
        with open(out, "a") as f: f.write("%s %d %s\n" % (self.client_address[0], n - left, h.hexdigest()))
        body = h.hexdigest().encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6
S(("::", port), H).serve_forever()
PY
	ip netns exec "$XPT-srv" python3 "$XPT_TMP/sink.py" "$1" "$2" 2>"$XPT_TMP/sink.err" &
	XPT_PIDS="$XPT_PIDS $!"
}

# xpt_udp_echo PORT: in the server namespace, UDP on [::]:PORT answers "echo:PEER:" + datagram
xpt_udp_echo() {
	cat >"$XPT_TMP/udpecho.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(65535); s.sendto(b"echo:" + a[0].encode() + b":" + d, a)
PY
	ip netns exec "$XPT-srv" python3 "$XPT_TMP/udpecho.py" "$1" 2>"$XPT_TMP/udpecho.err" &
	XPT_PIDS="$XPT_PIDS $!"
}

# xpt_bigfile NAME MiB: random file served by nginx, its sha256 in $XPT_TMP/NAME.sha
xpt_bigfile() {
	head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$XPT_TMP/ngx/www/$1"
	sha256sum <"$XPT_TMP/ngx/www/$1" | cut -d' ' -f1 >"$XPT_TMP/$1.sha"
}

# xpt_config FILE [EXTRA]: write a config. EXTRA holds "key = value" [global] lines that
# replace or add to the defaults below; the rest of the file comes from stdin.
xpt_config() {
	local f=$1 extra=${2:-} line key i
	local -a glob=("lan = lan0" "wan = wan0" "workers = 2" "log_level = debug")
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		key=${line%%=*}
		key=${key// /}
		for i in "${!glob[@]}"; do
			[ "${glob[$i]%% *}" = "$key" ] && unset 'glob[i]'
		done
		glob+=("$line")
	done <<<"$extra"
	{
		echo "[global]"
		printf '%s\n' "${glob[@]}"
		cat <<EOF

[outbound.proxy]
plugin = direct

[outbound.deny]
plugin = block

EOF
		cat
	} >"$f"
}

xpt_default_route() {
	cat <<EOF
[route]
rule = dst-cidr:10.1.2.0/24|fd00:1:2::/64, proxy
rule = dst-cidr:10.1.3.0/24|fd00:1:3::/64, DIRECT
rule = dst-cidr:10.1.4.0/24|fd00:1:4::/64, BLOCK
fallback = DIRECT
EOF
}

# xpt_start CONFIG [LOG]: run xproxyd in the router, wait until it says ready.
xpt_start() {
	local cfg=$1
	XPT_DLOG=${2:-$XPT_TMP/xproxyd.log}
	# not through nsr(): a function would put a subshell, not xproxyd, in $!
	ip netns exec "$XPT-rtr" "$XPROXYD" -c "$cfg" -P "$XPT_PLUGINS" >>"$XPT_DLOG" 2>&1 &
	XPT_DPID=$!
	XPT_PIDS="$XPT_PIDS $XPT_DPID"
	for _ in $(seq 1 100); do
		grep -q "ready:" "$XPT_DLOG" 2>/dev/null && return 0
		kill -0 $XPT_DPID 2>/dev/null || xpt_fail "xproxyd exited during start"
		sleep 0.1
	done
	xpt_fail "xproxyd did not become ready in 10 s"
}

# xpt_stop [SIGNAL]: stop xproxyd and wait for it (10 s at most)
xpt_stop() {
	local sig=${1:-TERM}
	kill -"$sig" "$XPT_DPID" 2>/dev/null
	for _ in $(seq 1 100); do
		kill -0 "$XPT_DPID" 2>/dev/null || { wait "$XPT_DPID" 2>/dev/null; XPT_DRC=$?; return 0; }
		sleep 0.1
	done
	xpt_fail "xproxyd did not exit within 10 s of SIG$sig"
}

# peer_of URL [curl args]: what nginx saw as the client address ("" on failure)
peer_of() {
	local url=$1
	shift
	nsc curl -s -g --max-time 5 "$@" "$url" | tr -d '\r\n'
}

expect_peer() { # URL WANT WHAT
	local got
	got=$(peer_of "$1")
	[ "$got" = "$2" ] || xpt_fail "$3: nginx saw '$got', expected '$2' ($1)"
	xpt_ok "$3 ($1 -> peer $got)"
}

# xpt_leftovers: empty output when the router namespace is back to how xpt_topology left it
xpt_leftovers() {
	local dev out=""
	for dev in lan0 wan0; do
		out+=$(nsr tc qdisc show dev $dev | grep -v -E '^qdisc (noqueue|pfifo_fast|fq_codel|noop)' || true)
		out+=$(nsr tc filter show dev $dev ingress 2>/dev/null || true)
		out+=$(nsr tc filter show dev $dev egress 2>/dev/null || true)
	done
	out+=$(nsr ip -o link show | awk -F': ' '{print $2}' | grep -v -E '^(lo|lan0@|wan0@)' || true)
	out+=$(nsr ss -Hxl | grep -F '@xproxyd' || true)
	printf '%s' "$out"
}
