#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_conformance.sh PLUGIN: the SDK's outbound conformance kit (sdk/conformance/xp-conformance.py)
# against one in-tree outbound and a real server for it.
#
# The kit's server listens on the "proxy" network (10.1.2.2, fd00:1:2::2); [route] sends that
# network and a blackhole address (10.1.5.99: routed, never answers ARP) to [outbound.ut], the
# outbound under test. Proxy servers run in the server namespace on the "direct" network
# (10.1.3.2), which xproxyd's own upstream connections reach without being proxied again.
# Besides the real server, a second instance of the plugin ([outbound.ref], and [outbound.reftls]
# for http's TLS path) runs against the kit's own reference proxy, reached through a second kit
# server on 10.1.5.2 (ports 7000, 7002): there the half-close and reset checks have no limit.
#
# PLUGIN: direct | socks5 | http | shadowsocks | trojan
source "$(dirname "$0")/lib.sh"
set -o pipefail
plugin=${1:?usage: e2e_conformance.sh PLUGIN}
KIT=$(cd "$(dirname "$0")/../../sdk/conformance" && pwd)/xp-conformance.py
xpt_require python3
xpt_init "cf${plugin:0:2}"
xpt_topology

udp=0      # does this plugin claim UDP in this tree? (set per case below)
# --known-limit CHECK=REASON: checks that fail through this real server and are reported as TAP
# TODO, not passed. Each one is a proven limit of the server: conformance_reference.sh runs the
# same checks through the same server without xproxyd (the kit's own protocol client and the
# server project's client) and gets the same failure. Everything else must pass.
limits=()
# lim CHECK WHAT: a known limit of $server; $refby got the same through it without xproxyd
lim() {
	limits+=(--known-limit "$1=$server $2; $refby gets the same, see conformance_reference.sh")
}
FIN_C="passes the client's FIN on, then closes the way back before the answer"
FIN_S="ends both directions at the target's FIN"
RST_S="answers the target's RST with a FIN"
RST_C="answers the client's RST with a FIN to the target"
outbound=""
# The plugin's own share, without a server's limits: a second outbound [outbound.ref] of the same
# plugin against the kit's reference proxy of the protocol (xp-conformance.py proxy), which
# forwards half-closes and resets faithfully; the kit's server on 10.1.5.2 is routed to it, and
# there the half-close and reset checks run with no known limit at all.
refproxy="" refout="" refargs=() reftls=""
REFCHECKS=echo-1m,halfclose-client,halfclose-server,server-rst,client-rst
case $plugin in
direct)
	outbound="plugin = direct"
	udp=1
	;;
socks5)
	# dante, not microsocks: dante forwards half-closes (conformance_reference.sh), so these
	# checks prove the plugin's share; microsocks ends both directions at the first EOF
	xpt_require danted
	cat >"$XPT_TMP/danted.conf" <<EOF
logoutput: $XPT_TMP/danted.log
internal: 10.1.3.2 port = 1080
external: s0
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0/0 to: 0/0 }
socks pass { from: 0/0 to: 0/0 command: connect }
EOF
	nss danted -f "$XPT_TMP/danted.conf" >"$XPT_TMP/socks.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	outbound=$'plugin = socks5\nserver = 10.1.3.2:1080'
	refproxy=socks5 refout=$'plugin = socks5\nserver = 10.1.3.2:1095'
	server=dante refby="the kit's SOCKS5 client"
	lim server-rst "$RST_S"
	lim client-rst "$RST_C"
	;;
http)
	xpt_require tinyproxy
	cat >"$XPT_TMP/tinyproxy.conf" <<EOF
Port 3128
Listen 10.1.3.2
Timeout 60
MaxClients 400
Allow 10.0.0.0/8
ConnectPort 7000
LogLevel Error
EOF
	nss tinyproxy -d -c "$XPT_TMP/tinyproxy.conf" >"$XPT_TMP/tinyproxy.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	outbound=$'plugin = http\nserver = 10.1.3.2:3128'
	refproxy=http refout=$'plugin = http\nserver = 10.1.3.2:1095'
	# and the TLS path (a stream, not a spliced socket): close_notify and FIN on a half-close
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=proxy.test" -addext "subjectAltName=DNS:proxy.test" \
		-keyout "$XPT_TMP/px.key" -out "$XPT_TMP/px.crt" >/dev/null 2>&1 ||
		xpt_fail "openssl could not make a test certificate"
	reftls=$'plugin = http\nserver = 10.1.3.2:1096\ntls = yes\nsni = proxy.test\n'
	reftls+="ca_file = $XPT_TMP/px.crt"
	server=tinyproxy refby="the kit's HTTP CONNECT client"
	lim halfclose-client "$FIN_C"
	lim halfclose-server "$FIN_S"
	lim server-rst "$RST_S"
	lim client-rst "$RST_C"
	;;
shadowsocks)
	xpt_require ss-server
	python3 -c 'import cryptography' 2>/dev/null ||
		xpt_fail "python3-cryptography is missing (the kit's reference shadowsocks proxy)"
	nss ss-server -s 10.1.3.2 -p 8388 -k conformance-pw -m aes-256-gcm -u \
		>"$XPT_TMP/ss.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	outbound=$'plugin = shadowsocks\nserver = 10.1.3.2:8388\nmethod = aes-256-gcm\npassword = conformance-pw'
	refproxy=ss refout=${outbound/:8388/:1095}
	udp=1
	server=ss-server refby="ss-local (and the kit's ss client)"
	lim halfclose-client "$FIN_C"
	lim halfclose-server "$FIN_S"
	lim server-rst "$RST_S"
	lim client-rst "$RST_C"
	;;
trojan)
	xpt_require trojan openssl
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=trojan.test" \
		-addext "subjectAltName=DNS:trojan.test" \
		-keyout "$XPT_TMP/tj.key" -out "$XPT_TMP/tj.crt" >/dev/null 2>&1 ||
		xpt_fail "openssl could not make a test certificate"
	cat >"$XPT_TMP/trojan.json" <<EOF
{"run_type": "server", "local_addr": "10.1.3.2", "local_port": 4443,
 "remote_addr": "127.0.0.1", "remote_port": 9,
 "password": ["conformance-pw"], "log_level": 2,
 "ssl": {"cert": "$XPT_TMP/tj.crt", "key": "$XPT_TMP/tj.key", "alpn": ["http/1.1"]}}
EOF
	nss trojan -c "$XPT_TMP/trojan.json" >"$XPT_TMP/trojan.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	outbound=$'plugin = trojan\nserver = 10.1.3.2:4443\npassword = conformance-pw\nsni = trojan.test\nca_file = '"$XPT_TMP/tj.crt"
	refproxy=trojan refout=${outbound/:4443/:1095}
	refargs=(--cert "$XPT_TMP/tj.crt" --key "$XPT_TMP/tj.key")
	udp=1
	server=trojan-gfw refby="trojan's client mode (and the kit's trojan client)"
	lim halfclose-client "passes the client's close_notify on as a FIN, then closes the way back"
	lim halfclose-server "$FIN_S"
	lim server-rst "answers the target's RST with close_notify and a FIN"
	lim client-rst "$RST_C"
	;;
*)
	xpt_fail "unknown plugin '$plugin'"
	;;
esac
[ -e "$XPT_PLUGINS/$plugin.so" ] || xpt_fail "$XPT_PLUGINS/$plugin.so is not built"

kit_udp=()
if [ $udp = 1 ]; then kit_udp=(--udp-port 7001); fi
nss python3 "$KIT" server --listen 10.1.2.2 --port 7000 --forbid-peer $C4 "${kit_udp[@]}" >"$XPT_TMP/kit4.log" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
nss python3 "$KIT" server --listen fd00:1:2::2 --port 7000 --forbid-peer $C6 "${kit_udp[@]}" >"$XPT_TMP/kit6.log" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"

refsection="" refrule=""
if [ -n "$refproxy" ]; then
	nss python3 "$KIT" proxy --protocol $refproxy --listen 10.1.3.2 --port 1095 \
		--password conformance-pw "${refargs[@]}" >"$XPT_TMP/refproxy.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	nss python3 "$KIT" server --listen 10.1.5.2 --port 7000 --forbid-peer $C4 \
		>"$XPT_TMP/kitref.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	refsection=$'[outbound.ref]\n'"$refout"
	refrule="rule = dst-cidr:10.1.5.2/32 & dport:7000, ref"
fi
if [ -n "$reftls" ]; then
	nss python3 "$KIT" proxy --protocol http --tls --listen 10.1.3.2 --port 1096 \
		--cert "$XPT_TMP/px.crt" --key "$XPT_TMP/px.key" >"$XPT_TMP/refproxytls.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	nss python3 "$KIT" server --listen 10.1.5.2 --port 7002 --forbid-peer $C4 \
		>"$XPT_TMP/kitreftls.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	refsection+=$'\n\n[outbound.reftls]\n'"$reftls"
	refrule+=$'\nrule = dst-cidr:10.1.5.2/32 & dport:7002, reftls'
fi

xpt_config "$XPT_TMP/x.ini" $'log_level = info\nconnect_timeout = 3s' <<EOF
[outbound.ut]
$outbound

$refsection

[route]
rule = dst-cidr:10.1.2.0/24|fd00:1:2::/64|10.1.5.99/32, ut
$refrule
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"

# servers up (they bind at once; a proxy that failed to start shows in the checks)
for _ in $(seq 1 50); do
	grep -q "server on" "$XPT_TMP/kit4.log" && grep -q "server on" "$XPT_TMP/kit6.log" &&
		{ [ -z "$refproxy" ] || { grep -q "proxy on" "$XPT_TMP/refproxy.log" &&
			grep -q "server on" "$XPT_TMP/kitref.log"; }; } &&
		{ [ -z "$reftls" ] || { grep -q "proxy on" "$XPT_TMP/refproxytls.log" &&
			grep -q "server on" "$XPT_TMP/kitreftls.log"; }; } && break
	sleep 0.1
done

rc=0
xpt_log "conformance: $plugin over IPv4"
nsc python3 "$KIT" client --target 10.1.2.2 --port 7000 --blackhole 10.1.5.99 \
	--connect-timeout 3 "${kit_udp[@]}" "${limits[@]}" | tee "$XPT_TMP/v4.tap" >&2 || rc=1
xpt_log "conformance: $plugin over IPv6 (echo and half-close)"
nsc python3 "$KIT" client --target fd00:1:2::2 --port 7000 \
	--only echo-1m,halfclose-client,halfclose-server "${kit_udp[@]}" "${limits[@]}" | tee "$XPT_TMP/v6.tap" >&2 || rc=1
if [ -n "$refproxy" ]; then
	xpt_log "conformance: $plugin through the kit's $refproxy proxy (no known limits)"
	nsc python3 "$KIT" client --target 10.1.5.2 --port 7000 --only $REFCHECKS |
		tee "$XPT_TMP/ref.tap" >&2 || rc=1
fi
if [ -n "$reftls" ]; then
	xpt_log "conformance: $plugin with TLS through the kit's $refproxy proxy (no known limits)"
	nsc python3 "$KIT" client --target 10.1.5.2 --port 7002 --only $REFCHECKS |
		tee "$XPT_TMP/reftls.tap" >&2 || rc=1
fi
if [ $rc != 0 ]; then
	tail -n 40 "$XPT_DLOG" >&2
	for f in "$XPT_TMP"/*.log; do
		[ "$f" = "$XPT_DLOG" ] && continue
		echo "--- $f" >&2
		tail -n 10 "$f" >&2
	done
	xpt_fail "$plugin does not pass the conformance kit"
fi
# (the kit's servers reset every connection from the client's own address, so passing means
# every flow went through [outbound.ut] or [outbound.ref])
xpt_ok "$plugin passes the outbound conformance kit"
