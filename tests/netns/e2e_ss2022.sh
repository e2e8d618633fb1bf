#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_ss2022.sh: the shadowsocks outbound's 2022 edition (SIP022) against an independent
# implementation, for each of its three methods.
#
# No Debian package has a SIP022 server, so the server is the SDK conformance kit's reference
# shadowsocks proxy (sdk/conformance/xp-conformance.py proxy --protocol ss), which speaks the
# 2022 methods in Python with the `cryptography` package, its own HChaCha20, and BLAKE3 from
# Debian's b3sum (the BLAKE3 team's Rust implementation): nothing is shared with the plugin's C.
#
# One xproxyd, one outbound per method ([outbound.m1] .. [outbound.m3]), each against its own
# reference proxy on the "direct" network (10.1.3.2:1095..1097, TCP and UDP). The kit's server
# listens on 10.1.2.2, one port pair per method (7000/7001, 7010/7011, 7020/7021), and the
# routes send each pair to its outbound. Each method runs the kit's echo-1m, half-close (both
# ways), reset (both ways), concurrent and udp-roundtrip checks with no known limit: the
# reference proxy forwards FINs and resets faithfully. Then [outbound.bad], the AES-256 method
# with another PSK, must fail with the plugin's clear log line.
source "$(dirname "$0")/lib.sh"
set -o pipefail
KIT=$(cd "$(dirname "$0")/../../sdk/conformance" && pwd)/xp-conformance.py
xpt_require python3 b3sum
python3 -c 'import cryptography' 2>/dev/null ||
	xpt_fail "python3-cryptography is missing (the kit's reference shadowsocks proxy)"
xpt_init ss22
xpt_topology
[ -e "$XPT_PLUGINS/shadowsocks.so" ] || xpt_fail "$XPT_PLUGINS/shadowsocks.so is not built"

METHODS=(2022-blake3-aes-128-gcm 2022-blake3-aes-256-gcm 2022-blake3-chacha20-poly1305)
PSKS=("$(openssl rand -base64 16)" "$(openssl rand -base64 32)" "$(openssl rand -base64 32)")
sections="" rules=""
for i in 0 1 2; do
	nss python3 "$KIT" proxy --protocol ss --method "${METHODS[$i]}" --password "${PSKS[$i]}" \
		--listen $D4 --port $((1095 + i)) >"$XPT_TMP/ref$i.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	nss python3 "$KIT" server --listen $P4 --port $((7000 + 10 * i)) \
		--udp-port $((7001 + 10 * i)) --forbid-peer $C4 >"$XPT_TMP/kit$i.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	sections+="[outbound.m$((i + 1))]
plugin = shadowsocks
server = $D4:$((1095 + i))
method = ${METHODS[$i]}
password = ${PSKS[$i]}

"
	rules+="rule = dst-cidr:$P4/32 & dport:$((7000 + 10 * i))-$((7001 + 10 * i)), m$((i + 1))
"
done
# a wrong PSK of the right length against the AES-256 proxy
xpt_config "$XPT_TMP/x.ini" $'log_level = info\nconnect_timeout = 3s' <<EOF
$sections
[outbound.bad]
plugin = shadowsocks
server = $D4:1096
method = 2022-blake3-aes-256-gcm
password = $(openssl rand -base64 32)

[route]
${rules}rule = dst-cidr:$P4/32 & dport:7030, bad
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"
for _ in $(seq 1 50); do
	n=$(cat "$XPT_TMP"/ref*.log "$XPT_TMP"/kit*.log 2>/dev/null | grep -c " on ")
	[ "$n" = 6 ] && break
	sleep 0.1
done

rc=0
for i in 0 1 2; do
	xpt_log "ss 2022: ${METHODS[$i]} through the kit's reference proxy (no known limits)"
	nsc python3 "$KIT" client --target $P4 --port $((7000 + 10 * i)) \
		--udp-port $((7001 + 10 * i)) --concurrency 40 \
		--only echo-1m,halfclose-client,halfclose-server,server-rst,client-rst,concurrent,udp-roundtrip |
		tee "$XPT_TMP/m$i.tap" >&2 || rc=1
	# every check ran (a check that was skipped would not fail the run by itself)
	[ "$(grep -c '^ok - ' "$XPT_TMP/m$i.tap")" = 7 ] || rc=1
done

# The wrong PSK: the reference proxy cannot authenticate the request header and resets (SIP022
# 3.1.3 strategy 1); the client's connection fails and the plugin says why.
xpt_log "ss 2022: a wrong PSK"
out=$(nsc python3 - "$P4" <<'EOF' 2>&1
import socket, sys
s = socket.create_connection((sys.argv[1], 7030), timeout=5)
s.sendall(b"ECHO\nhello")
try:
    data = s.recv(100)
    print("got %r" % data)
except OSError as e:
    print("failed: %s" % e)
EOF
)
xpt_log "client: $out"
case $out in
"got b''" | failed:*) ;;
*) rc=1; xpt_log "a wrong PSK carried data: $out" ;;
esac
for _ in $(seq 1 30); do
	grep -q "\[outbound.bad\].*without a reply (wrong PSK or method" "$XPT_DLOG" && break
	sleep 0.1
done
grep "\[outbound.bad\]" "$XPT_DLOG" >&2
grep -q "\[outbound.bad\].*without a reply (wrong PSK or method" "$XPT_DLOG" ||
	{ rc=1; xpt_log "no 'wrong PSK' line from [outbound.bad]"; }
grep -q "request.*failed\|handshake or connect failed" "$XPT_TMP/ref1.log" ||
	{ rc=1; xpt_log "the reference proxy did not refuse the wrong PSK"; }
# no PSK ever reaches the log
for p in "${PSKS[@]}"; do
	grep -qF -- "$p" "$XPT_DLOG" && { rc=1; xpt_log "a PSK appears in the daemon's log"; }
done

if [ $rc != 0 ]; then
	tail -n 40 "$XPT_DLOG" >&2
	for f in "$XPT_TMP"/ref*.log "$XPT_TMP"/kit*.log; do
		echo "--- $f" >&2
		tail -n 10 "$f" >&2
	done
	xpt_fail "the 2022 methods do not pass against the reference implementation"
fi
xpt_ok "the shadowsocks 2022 methods pass the conformance checks against the reference proxy"
