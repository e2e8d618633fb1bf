#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# bench/e2e/udp.sh - UDP through xproxyd against kernel forwarding, side by side in one run
# (printed, never asserted):
#
#   forward  plain kernel forwarding, no xproxyd             (the baseline: ratio 1.00)
#   proxy    xproxyd proxying UDP through the direct outbound (netns, session, upstream socket)
#
# Workloads, client namespace -> server 10.1.2.2 across the router, iperf3 -u at an unlimited
# send rate (-b 0), so the figure is what arrives:
#   udp1400  1400-byte datagrams, Mbit/s received
#   udp64    64-byte datagrams, thousands of datagrams/s received
#   rr       request/response: one datagram out, the echo back, one at a time, exchanges/s
# Cases are interleaved and their order rotated every round; medians are printed.
#
# Usage: sudo bench/e2e/udp.sh [--rounds N] [--dur S]       (defaults: 3 rounds, 5 s)
# Needs: iperf3 python3 (tests/deps.sh) and a build in $XP_BUILD (default build/).
set -uo pipefail
ROUNDS=3
DUR=5
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--dur) DUR=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--dur S]" >&2; exit 2 ;;
	esac
done
cd "$(dirname "$0")/../.." || exit 1
export XPT_BUILD=${XPT_BUILD:-$PWD/${XP_BUILD:-build}}
source tests/netns/lib.sh
xpt_require iperf3
xpt_init ubench
xpt_topology
TOOL=$PWD/tests/netns/udp_tool.py
nss iperf3 -s -B $P4 -p 5201 >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
nss python3 "$TOOL" echo "$P4:7" >"$XPT_TMP/echo.out" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
for _ in $(seq 1 50); do grep -q ready "$XPT_TMP/echo.out" && break; sleep 0.1; done

printf '[route]\nrule = dst-cidr:10.1.2.0/24, proxy\nfallback = DIRECT\n' |
	xpt_config "$XPT_TMP/proxy.ini" "log_level = info"
sed -i 's/^workers = 2$/workers = 0/' "$XPT_TMP/proxy.ini" # one worker per CPU, the default
RAW=$XPT_TMP/raw.tsv
: >"$RAW"

up() {
	case $1 in
	forward) XPT_DPID="" ;;
	*) : >"$XPT_TMP/$1.log"; xpt_start "$XPT_TMP/$1.ini" "$XPT_TMP/$1.log" ;;
	esac
}
down() {
	[ -n "${XPT_DPID:-}" ] && xpt_stop TERM
	XPT_DPID=""
}

check_path() { # the echo server sees the client (forward) or the router (proxy)
	local seen want
	seen=$(nsc python3 "$TOOL" ask "$P4:7" 1 | awk '{print $3; exit}')
	case $1 in proxy) want=$PR4 ;; *) want=$C4 ;; esac
	[ "$seen" = "$want" ] || { xpt_log "$1: the server saw '$seen', want '$want'"; return 1; }
}

iperf_udp() { # LEN: received Mbit/s and kdatagrams/s
	local out
	out=$(nsc iperf3 -c $P4 -p 5201 -u -b 0 -l "$1" -t "$DUR" -J 2>/dev/null) || return
	python3 -c '
import json, sys
s = json.load(sys.stdin)["end"]["sum"]
got = s["packets"] - s["lost_packets"]
print("%.1f %.1f" % (got * int(sys.argv[1]) * 8 / s["seconds"] / 1e6, got / s["seconds"] / 1e3))
' "$1" <<<"$out"
}

rr_rate() {
	nsc python3 - "$P4" "$DUR" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.connect((sys.argv[1], 7))
n, end = 0, time.time() + float(sys.argv[2])
while time.time() < end:
    s.send(b"x")
    try:
        s.recv(2048)
        n += 1
    except socket.timeout:
        pass
print(n / float(sys.argv[2]))
PY
}

read -r _ U0 N0 S0 I0 W0 Q0 SQ0 ST0 _ </proc/stat # hypervisor steal over the run
for ((r = 0; r < ROUNDS; r++)); do
	cases=(forward proxy)
	for ((k = 0; k < 2; k++)); do
		c=${cases[$(((k + r) % 2))]}
		xpt_log "round $((r + 1))/$ROUNDS: $c"
		up "$c"
		if check_path "$c"; then
			read -r mbit _ <<<"$(iperf_udp 1400)"
			printf '%s\tudp1400\t%s\n' "$c" "$mbit" >>"$RAW"
			read -r _ kpps <<<"$(iperf_udp 64)"
			printf '%s\tudp64\t%s\n' "$c" "$kpps" >>"$RAW"
			printf '%s\trr\t%s\n' "$c" "$(rr_rate)" >>"$RAW"
		fi
		down
		sleep 0.3
	done
done
read -r _ U1 N1 S1 I1 W1 Q1 SQ1 ST1 _ </proc/stat
TOT=$(((U1 + N1 + S1 + I1 + W1 + Q1 + SQ1 + ST1) - (U0 + N0 + S0 + I0 + W0 + Q0 + SQ0 + ST0)))
STEAL=$((100 * (ST1 - ST0) / (TOT ? TOT : 1)))

python3 - "$RAW" "$ROUNDS" "$DUR" "$STEAL" <<'PY'
import statistics as st, sys
raw, rounds, dur, steal = sys.argv[1:]
data = {}
for line in open(raw):
    c, m, v = line.rstrip("\n").split("\t")
    try:
        data.setdefault((c, m), []).append(float(v))
    except ValueError:
        pass
cases = ["forward", "proxy"]
rows = (("udp1400", "UDP 1400 B Mbit/s rcvd"), ("udp64", "UDP 64 B kdgram/s rcvd"),
        ("rr", "UDP request/response /s"))
print("bench/e2e/udp: medians of %s rounds x %s s; (x) = ratio to kernel forwarding" % (rounds, dur))
print("%-26s" % "metric" + "".join("%18s" % c for c in cases))
for m, label in rows:
    row = "%-26s" % label
    b = st.median(data[("forward", m)]) if data.get(("forward", m)) else None
    for c in cases:
        v = data.get((c, m))
        x = st.median(v) if v else None
        s = "-" if x is None else "%.0f" % x
        if x is not None and b and c != "forward":
            s += " (%.2fx)" % (x / b)
        row += "%18s" % s
    print(row)
print("spread (min..max over rounds):")
for m, label in rows:
    row = "%-26s" % label
    for c in cases:
        v = data.get((c, m))
        row += "%18s" % ("%.0f..%.0f" % (min(v), max(v)) if v else "-")
    print(row)
print("CPU stolen by the hypervisor during the run: %s%%" % steal)
PY
