#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# demo.sh - the live demo, on a fresh Debian 12 machine, as root: installs the Debian packages,
# builds, and runs a client, a router with xproxyd (its embedded default configuration: no -c)
# and a server in network namespaces, then shows how each flow was routed: by address, by the
# name in a DNS answer (decided in the kernel before the first packet) and by a sniffed name.
# Usage: sudo tests/demo.sh [--keep]    (--keep leaves it running; Ctrl-C removes everything)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
source tests/deps.sh
# shellcheck disable=SC2086
xp_install_deps $XP_BUILD_PKGS nginx-light curl iproute2 python3 unbound dnsutils openssl ||
	exit 1
BUILD=${XP_BUILD:-build}
[ -d "$BUILD" ] || meson setup "$BUILD" >/dev/null || exit 1
ninja -C "$BUILD" >/dev/null || { ninja -C "$BUILD"; exit 1; }

export XPT_BUILD=$PWD/$BUILD XPT_PREFIX=xpdemo
source tests/netns/lib.sh
xpt_require dig unbound openssl
# A demo run that was killed hard may have left its namespaces: remove them first.
for ns in cli rtr srv; do ip netns del "xpdemo-$ns" 2>/dev/null; done
xpt_init demo
bold() { printf '\033[1m%s\033[0m\n' "$*"; }

bold "== topology: client (10.1.1.2) -- router lan0|wan0 -- server (10.1.2.2 10.1.3.2 10.1.4.2 10.1.5.2-5)"
xpt_topology
nss ip addr add 10.1.5.3/24 dev s0
nss ip addr add 10.1.5.4/24 dev s0
nss ip addr add 10.1.5.5/24 dev s0

# The server: nginx on ports 80 and 443, answering with the address it saw; unbound, the
# resolver the router's dns plugin asks (the embedded configuration's upstream, 10.1.3.2).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj /CN=demo.test \
	-addext "subjectAltName=DNS:*.direct.test,DNS:*.ads.test,DNS:*.example.test" \
	-keyout "$XPT_TMP/key.pem" -out "$XPT_TMP/cert.pem" >/dev/null 2>&1 ||
	xpt_fail "openssl could not make the demo certificate"
mkdir -p "$XPT_TMP/ngx" "$XPT_TMP/unbound"
cat >"$XPT_TMP/ngx/nginx.conf" <<NGINX
worker_processes 1;
master_process off;
daemon off;
pid $XPT_TMP/ngx/nginx.pid;
error_log $XPT_TMP/ngx/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $XPT_TMP/ngx/body;
  proxy_temp_path $XPT_TMP/ngx/proxy;
  fastcgi_temp_path $XPT_TMP/ngx/fcgi;
  uwsgi_temp_path $XPT_TMP/ngx/uwsgi;
  scgi_temp_path $XPT_TMP/ngx/scgi;
  server {
    listen 80;
    listen [::]:80;
    listen 443 ssl;
    ssl_certificate $XPT_TMP/cert.pem;
    ssl_certificate_key $XPT_TMP/key.pem;
    location = / { default_type text/plain; return 200 "\$remote_addr\n"; }
  }
}
NGINX
cat >"$XPT_TMP/unbound/unbound.conf" <<UNBOUND
server:
  interface: 10.1.3.2@53
  do-daemonize: no
  username: ""
  chroot: ""
  directory: $XPT_TMP/unbound
  pidfile: ""
  use-syslog: no
  logfile: "$XPT_TMP/unbound/unbound.log"
  num-threads: 1
  access-control: 10.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "test." static
  local-data: "www.direct.test. 300 IN A 10.1.5.3"
  local-data: "www.example.test. 300 IN A 10.1.5.2"
  local-data: "www.ads.test. 300 IN A 10.1.5.4"
remote-control:
  control-enable: no
UNBOUND
ip netns exec "$XPT-srv" nginx -e "$XPT_TMP/ngx/error.log" -p "$XPT_TMP/ngx" \
	-c "$XPT_TMP/ngx/nginx.conf" </dev/null >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
disown $!
ip netns exec "$XPT-srv" unbound -d -c "$XPT_TMP/unbound/unbound.conf" </dev/null >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
disown $!
for _ in $(seq 1 50); do
	nss ss -Htln 'sport = :443' | grep -q . && nss ss -Hlun 'sport = :53' | grep -q . && break
	sleep 0.1
done
nss ss -Htln 'sport = :443' | grep -q . || xpt_fail "nginx did not start: $(cat "$XPT_TMP/ngx/error.log")"
nss ss -Hlun 'sport = :53' | grep -q . ||
	xpt_fail "unbound did not start: $(cat "$XPT_TMP/unbound/unbound.log")"

XPT_DLOG=$XPT_TMP/xproxyd.log
bold "== router: xproxyd with its embedded configuration (xproxyd --print-default-config)"
ip netns exec "$XPT-rtr" "$XPROXYD" -l debug >"$XPT_DLOG" 2>&1 &
XPT_DPID=$!
XPT_PIDS="$XPT_PIDS $XPT_DPID"
for _ in $(seq 1 100); do grep -q "ready:" "$XPT_DLOG" && break; sleep 0.1; done
grep -q "ready:" "$XPT_DLOG" || { cat "$XPT_DLOG"; xpt_fail "xproxyd did not start"; }
grep -E 'ready:|rules:|sniff: [0-9]+ domain' "$XPT_DLOG" | sed -E 's/^[^ ]+ [A-Z]+ +/   /'

show() { # URL LABEL [curl args...]
	local url=$1 label=$2 t0 out rc ms verdict
	shift 2
	t0=$(date +%s%N)
	out=$(nsc curl -s -k -g --max-time 3 "$@" "$url" | tr -d '\r\n')
	rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	if [ -z "$out" ]; then
		verdict="refused after $ms ms (curl exit $rc)"
	elif [[ "$out" == 10.1.1.2 || "$out" == fd00:1:1::2 ]]; then
		verdict="server saw the client ($out): forwarded by the kernel"
	else
		verdict="server saw the router ($out): proxied by xproxyd"
	fi
	printf '   %-28s %-37s %s\n' "$url" "$label" "$verdict"
}
# ask NAME: the A record. The client asks unbound itself (10.1.3.2), but with [dns] strict
# (the default) every port-53 flow crossing the router goes to xproxyd's dns plugin instead:
# the answer comes from the plugin, which asked unbound from the router.
ask() {
	nsc dig +short +time=3 +tries=1 @10.1.3.2 "$1" A | tail -n 1
}

echo
bold "== routed by address (rules in the kernel; DIRECT and BLOCK never reach userspace)"
show "http://10.1.2.2/" "rule -> outbound proxy"
show "http://[fd00:1:2::2]/" "rule -> outbound proxy"
show "http://10.1.3.2/" "rule -> DIRECT"
show "http://[fd00:1:3::2]/" "rule -> DIRECT"
show "http://10.1.4.2/" "rule -> BLOCK"

echo
bold "== routed by the name in a DNS answer (the verdict is in the kernel before the first SYN)"
for name in www.direct.test www.ads.test www.example.test; do
	a=$(ask "$name")
	case $name in
	*direct*) label="domain-suffix:direct.test -> DIRECT" ;;
	*ads*) label="domain-suffix:ads.test -> BLOCK" ;;
	*) label="no domain rule: fallback -> proxy" ;;
	esac
	printf '   %-28s %s\n' "dig @10.1.3.2 $name" "${a:-no answer} (answered by the router's dns plugin)"
	[ -n "$a" ] && show "http://$name/" "$label" --resolve "$name:80:$a"
done

echo
bold "== routed by a sniffed name (no DNS through the router: curl --resolve)"
show "http://10.1.5.5/" "no name: fallback -> proxy"
show "https://video.direct.test/" "TLS SNI -> DIRECT (relayed once)" \
	--resolve video.direct.test:443:10.1.5.5
sleep 0.2
show "https://video.direct.test/" "again: the verdict is now cached" \
	--resolve video.direct.test:443:10.1.5.5
show "http://tracker.ads.test/" "HTTP Host -> BLOCK" --resolve tracker.ads.test:80:10.1.5.5
sleep 0.3

echo
bold "== what xproxyd reported (FLOW_NEW events from the ring buffer, sniff decisions)"
grep -E 'flow new proto (6|17) (10\.1\.1\.2|\[fd00:1:1::2\])|flow named|dns: ' "$XPT_DLOG" |
	sed -E 's/^[^ ]+ [A-Z]+ +//; s/^\[worker[0-9]+\] //; s/^/   /' | head -30
kill -USR1 $XPT_DPID
sleep 0.3
grep -E 'stats: (flows|connections|sniff|dns names)' "$XPT_DLOG" | tail -4 |
	sed -E 's/^[^ ]+ [A-Z]+ +//; s/^/   /'
if [ $KEEP = 1 ]; then
	echo
	bold "== left running. Try: ip netns exec xpdemo-cli curl http://10.1.2.2/"
	echo "   xproxyd log: $XPT_DLOG    Ctrl-C removes everything."
	wait $XPT_DPID
fi
kill -TERM $XPT_DPID
wait $XPT_DPID 2>/dev/null
echo
bold "== stopped; left behind in the router namespace: '$(xpt_leftovers)' (empty is right)"
