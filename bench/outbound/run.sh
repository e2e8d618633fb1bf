#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# bench/outbound/run.sh - every outbound side by side in one run (figures printed, never
# asserted), against plain kernel forwarding measured in the same rounds:
#
#   forward  no xproxyd: the router forwards                   (the baseline: ratio 1.00)
#   direct   xproxyd, direct outbound                         (splice relay, no proxy server)
#   socks5   xproxyd, socks5 outbound -> microsocks           (proxy namespace, 10.1.7.2)
#   http     xproxyd, http outbound   -> tinyproxy (CONNECT)
#   shadowsocks  xproxyd, shadowsocks outbound -> ss-server (chacha20-ietf-poly1305)
#   trojan   xproxyd, trojan outbound -> trojan-gfw (TLS, self-signed certificate)
#   socks5_native, http_native: no xproxyd; the client itself uses microsocks / tinyproxy
#            (curl --socks5, curl -p -x): what the proxy server alone delivers, to tell its
#            cost from xproxyd's (only the dl workload can be proxy-aware)
#
# Workloads, client namespace -> 10.1.2.2 across the router:
#   tcp1   iperf3, 1 stream, Gbit/s at the receiver
#   conn   wrk -H 'Connection: close' against nginx: new connections (requests) per second
#   dl     curl downloading a 256 MiB file from nginx, Gbit/s
# Cases are interleaved and their order rotated every round; medians and spreads are printed.
# Proxy servers run in their own namespace (tests/netns/outbound_lib.sh), so a proxied case
# pays for the proxy server as well as for xproxyd: that is what a user gets.
#
# Adding an outbound: write case_<name>_setup (start its server, once), case_<name>_outbound
# (the body of its [outbound] section on stdout) and case_<name>_peer (the address the server
# sees), and add <name> to CASES below or pass --cases. A case_<name>_curl (curl options, no
# xproxyd) makes a client-side case instead.
#
# Usage: sudo bench/outbound/run.sh [--rounds N] [--dur S] [--cases "forward direct ..."]
#        (defaults: 3 rounds, 4 s, all cases; XP_BUILD=build-x picks the build)
# Needs: iperf3 wrk nginx-light microsocks tinyproxy shadowsocks-libev trojan python3
#        (tests/deps.sh installs them).
set -uo pipefail
ROUNDS=3
DUR=4
CASES="forward direct socks5 socks5_native http http_native shadowsocks trojan"
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--dur) DUR=$2; shift 2 ;;
	--cases) CASES=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--dur S] [--cases LIST]" >&2; exit 2 ;;
	esac
done
cd "$(dirname "$0")/../.." || exit 1
export XPT_BUILD=${XPT_BUILD:-$PWD/${XP_BUILD:-build}}
source tests/netns/lib.sh
source tests/netns/outbound_lib.sh
xpt_require iperf3 wrk microsocks tinyproxy ss-server trojan openssl
xpt_init bob
xpt_topology
xpo_proxy_ns
xpt_nginx
nss iperf3 -s -B $P4 -p 5201 >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
head -c $((256 << 20)) /dev/zero >"$XPT_TMP/ngx/www/dl"

# ---- the cases ---------------------------------------------------------------------------
case_forward_peer() { echo $C4; }

case_direct_outbound() { echo "plugin = direct"; }
case_direct_peer() { echo $PR4; }

case_socks5_setup() {
	xpo_bg nsx microsocks -i $X4 -p 1080
	xpo_wait_listen nsx 1080
}
case_socks5_outbound() { printf 'plugin = socks5\nserver = %s:1080\n' $X4; }
case_socks5_peer() { echo $X4; }

case_http_setup() {
	mkdir -p "$XPT_TMP/tp" && chmod 777 "$XPT_TMP/tp"
	cat >"$XPT_TMP/tp/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port 3128
Listen $X4
Timeout 60
MaxClients 400
LogLevel Warning
LogFile "$XPT_TMP/tp/tinyproxy.log"
PidFile "$XPT_TMP/tp/tinyproxy.pid"
Allow 10.0.0.0/8
ConnectPort 80
ConnectPort 5201
DisableViaHeader Yes
EOF
	xpo_bg nsx tinyproxy -d -c "$XPT_TMP/tp/tinyproxy.conf"
	xpo_wait_listen nsx 3128
}
case_http_outbound() { printf 'plugin = http\nserver = %s:3128\n' $X4; }
case_http_peer() { echo $X4; }

# shadowsocks -> ss-server (chacha20-ietf-poly1305); trojan -> trojan-gfw with a fresh
# self-signed certificate (bench/outbound/ss.sh compares shadowsocks with ss-redir itself)
case_shadowsocks_setup() {
	xpo_bg nsx ss-server -s $X4 -p 8388 -k bench-pw -m chacha20-ietf-poly1305 --no-delay
	xpo_wait_listen nsx 8388
}
case_shadowsocks_outbound() {
	printf 'plugin = shadowsocks\nserver = %s:8388\npassword = bench-pw\n' $X4
	printf 'method = chacha20-ietf-poly1305\n'
}
case_shadowsocks_peer() { echo $X4; }

case_trojan_setup() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-keyout "$XPT_TMP/tj-key.pem" -out "$XPT_TMP/tj-cert.pem" -subj /CN=trojan.test \
		-addext subjectAltName=DNS:trojan.test >/dev/null 2>&1
	cat >"$XPT_TMP/trojan.json" <<TJ
{"run_type": "server", "local_addr": "$X4", "local_port": 8443,
 "remote_addr": "$P4", "remote_port": 80, "password": ["bench-pw"], "log_level": 2,
 "ssl": {"cert": "$XPT_TMP/tj-cert.pem", "key": "$XPT_TMP/tj-key.pem", "key_password": "",
         "prefer_server_cipher": true, "alpn": ["http/1.1"], "reuse_session": true,
         "session_ticket": false, "session_timeout": 600, "plain_http_response": "",
         "curves": "", "dhparam": ""},
 "tcp": {"prefer_ipv4": false, "no_delay": true, "keep_alive": true, "reuse_port": false,
         "fast_open": false, "fast_open_qlen": 20},
 "mysql": {"enabled": false}}
TJ
	xpo_bg nsx trojan -c "$XPT_TMP/trojan.json" -l "$XPT_TMP/trojan.log"
	xpo_wait_listen nsx 8443
}
case_trojan_outbound() {
	printf 'plugin = trojan\nserver = %s:8443\npassword = bench-pw\nsni = trojan.test\n' $X4
	printf 'ca_file = %s\n' "$XPT_TMP/tj-cert.pem"
}
case_trojan_peer() { echo $X4; }

case_socks5_native_curl() { echo "--socks5 $X4:1080"; }
case_socks5_native_peer() { echo $X4; }
case_http_native_curl() { echo "-p -x http://$X4:3128"; }
case_http_native_peer() { echo $X4; }

# ---- one config per case -----------------------------------------------------------------
for c in $CASES; do
	declare -F "case_${c}_peer" >/dev/null || { echo "unknown case $c" >&2; exit 2; }
	declare -F "case_${c}_setup" >/dev/null && "case_${c}_setup"
	declare -F "case_${c}_outbound" >/dev/null || continue
	{
		printf '[outbound.ut]\n'
		"case_${c}_outbound"
		printf '\n[route]\nrule = dst-cidr:10.1.2.0/24, ut\nfallback = DIRECT\n'
	} | xpt_config "$XPT_TMP/$c.ini" "log_level = info"
	# one worker per CPU, like a default install
	sed -i 's/^workers = 2$/workers = 0/' "$XPT_TMP/$c.ini"
done
RAW=$XPT_TMP/raw.tsv
: >"$RAW"

reset_state() { # sockets of the previous trial must not shape the next (TIME-WAIT reuse)
	local ns
	for ns in cli rtr srv pxy; do
		ip netns exec "$XPT-$ns" ss -K -t state time-wait >/dev/null 2>&1
	done
	sleep 0.3
}

up() {
	if [ -f "$XPT_TMP/$1.ini" ]; then
		: >"$XPT_TMP/$1.log"
		xpt_start "$XPT_TMP/$1.ini" "$XPT_TMP/$1.log"
	else
		XPT_DPID=""
	fi
}
down() {
	[ -n "${XPT_DPID:-}" ] && xpt_stop TERM
	XPT_DPID=""
}

check_path() { # case: the traffic takes the path the case names
	local got want
	got=$(peer_of "http://$P4/" $(curl_args "$1"))
	want=$("case_${1}_peer")
	[ "$got" = "$want" ] || { xpt_log "$1: nginx saw '$got', want '$want'"; return 1; }
}

curl_args() { declare -F "case_${1}_curl" >/dev/null && "case_${1}_curl"; }

download() { # case
	nsc curl -s -o /dev/null --max-time 60 -w '%{speed_download}' $(curl_args "$1") \
		"http://$P4/dl" | awk '{ printf "%.3f\n", $1 * 8 / 1e9 }'
}

iperf() {
	local out
	out=$(nsc iperf3 -c $P4 -p 5201 -t "$DUR" -J 2>/dev/null) || return
	python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)' \
		<<<"$out"
}

conn_rate() {
	nsc wrk -t 1 -c 16 -d "${DUR}s" -H 'Connection: close' "http://$P4/" 2>/dev/null |
		awk '/Requests\/sec/ {print $2}'
}

read -r -a cases <<<"$CASES"
n=${#cases[@]}
read -r _ U0 N0 S0 I0 W0 Q0 SQ0 ST0 _ </proc/stat # hypervisor steal over the run
for ((r = 0; r < ROUNDS; r++)); do
	for ((k = 0; k < n; k++)); do
		c=${cases[$(((k + r) % n))]}
		xpt_log "round $((r + 1))/$ROUNDS: $c"
		up "$c"
		if check_path "$c"; then
			if ! declare -F "case_${c}_curl" >/dev/null; then
				reset_state
				printf '%s\ttcp1\t%s\n' "$c" "$(iperf)" >>"$RAW"
				reset_state
				printf '%s\tconn\t%s\n' "$c" "$(conn_rate)" >>"$RAW"
			fi
			reset_state
			printf '%s\tdl\t%s\n' "$c" "$(download "$c")" >>"$RAW"
		fi
		down
		reset_state
	done
done
read -r _ U1 N1 S1 I1 W1 Q1 SQ1 ST1 _ </proc/stat
TOT=$(((U1 + N1 + S1 + I1 + W1 + Q1 + SQ1 + ST1) - (U0 + N0 + S0 + I0 + W0 + Q0 + SQ0 + ST0)))
STEAL=$((100 * (ST1 - ST0) / (TOT ? TOT : 1)))

cat >"$XPT_TMP/report.py" <<'PY'
import statistics as st, sys
raw, rounds, dur, steal = sys.argv[1:5]
cases = sys.argv[5:]
data = {}
for line in open(raw):
    c, m, v = line.rstrip("\n").split("\t")
    try:
        data.setdefault((c, m), []).append(float(v))
    except ValueError:
        pass
med = lambda c, m: st.median(data[(c, m)]) if data.get((c, m)) else None
base = cases[0]
metrics = (("tcp1", "TCP 1 stream Gbit/s", "%.2f"), ("conn", "new connections/s", "%.0f"),
           ("dl", "256 MiB download Gbit/s", "%.2f"))
print("bench/outbound: medians of %s rounds x %s s; (x) = ratio to %s" % (rounds, dur, base))
print("%-24s" % "metric" + "".join("%16s" % c for c in cases))
for m, label, fmt in metrics:
    row = "%-24s" % label
    for c in cases:
        x, b = med(c, m), med(base, m)
        s = "-" if x is None else fmt % x
        if x is not None and b and c != base:
            s += " (%.2fx)" % (x / b)
        row += "%16s" % s
    print(row)
print("spread (min..max over rounds):")
for m, label, fmt in metrics:
    row = "%-24s" % label
    for c in cases:
        v = data.get((c, m))
        row += "%16s" % ((fmt + ".." + fmt) % (min(v), max(v)) if v else "-")
    print(row)
print("CPU stolen by the hypervisor during the run: %s%% (high values make every figure noisy)"
      % steal)
PY
python3 "$XPT_TMP/report.py" "$RAW" "$ROUNDS" "$DUR" "$STEAL" "${cases[@]}"
