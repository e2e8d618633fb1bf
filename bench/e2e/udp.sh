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
#   udp64r   the same, server to client (iperf3 -R): the reply path, a download
#   rr       request/response: one datagram out, the echo back, one at a time, exchanges/s
# Cases are interleaved and their order rotated every round; medians are printed. For the
# proxy cases the CPU time xproxyd used (all threads, /proc/PID/stat utime + stime) is divided
# by what arrived: microseconds per datagram (per exchange for rr), steadier on a shared
# machine than the rates.
#
#   --ab DIR   a third case, "proxy-b": the same with the xproxyd and plugins of build DIR
#              (an A/B of two builds in one run, interleaved like the others)
#
# Usage: sudo bench/e2e/udp.sh [--rounds N] [--dur S] [--ab DIR]   (defaults: 3 rounds, 5 s)
# Needs: iperf3 python3 (tests/deps.sh) and a build in $XP_BUILD (default build/).
set -uo pipefail
ROUNDS=3
DUR=5
AB=""
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--dur) DUR=$2; shift 2 ;;
	--ab) AB=$(cd "$2" && pwd) || exit 2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--dur S] [--ab DIR]" >&2; exit 2 ;;
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
[ -n "$AB" ] && cp "$XPT_TMP/proxy.ini" "$XPT_TMP/proxy-b.ini"
[ -n "$AB" ] && { [ -x "$AB/core/xproxyd" ] || xpt_fail "--ab $AB: no core/xproxyd there"; }
RAW=$XPT_TMP/raw.tsv
: >"$RAW"
XPROXYD_A=$XPROXYD
PLUGINS_A=$XPT_PLUGINS
HZ=$(getconf CLK_TCK)

up() {
	case $1 in
	forward) XPT_DPID="" ;;
	*)
		XPROXYD=$XPROXYD_A XPT_PLUGINS=$PLUGINS_A
		[ "$1" = proxy-b ] && XPROXYD=$AB/core/xproxyd XPT_PLUGINS=$AB/plugins
		: >"$XPT_TMP/$1.log"
		xpt_start "$XPT_TMP/$1.ini" "$XPT_TMP/$1.log"
		;;
	esac
}
cpu_ticks() { # xproxyd's user + system time, all threads, in clock ticks (0 without one)
	if [ -n "${XPT_DPID:-}" ]; then awk '{print $14 + $15}' "/proc/$XPT_DPID/stat"; else echo 0; fi
}
per_unit() { # TICKS COUNT: microseconds of xproxyd CPU per unit
	python3 -c 'import sys; t, n, hz = map(float, sys.argv[1:])
print("%.2f" % (t / hz * 1e6 / n) if n > 0 else "-")' "$1" "$2" "$HZ"
}
down() {
	[ -n "${XPT_DPID:-}" ] && xpt_stop TERM
	XPT_DPID=""
}

check_path() { # the echo server sees the client (forward) or the router (proxy)
	local seen want
	seen=$(nsc python3 "$TOOL" ask "$P4:7" 1 | awk '{print $3; exit}')
	case $1 in proxy*) want=$PR4 ;; *) want=$C4 ;; esac
	[ "$seen" = "$want" ] || { xpt_log "$1: the server saw '$seen', want '$want'"; return 1; }
}

iperf_udp() { # LEN [-R]: received Mbit/s and kdatagrams/s
	local out
	out=$(nsc iperf3 -c $P4 -p 5201 -u -b 0 -l "$1" -t "$DUR" ${2:-} -J 2>/dev/null) || return
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
	[ -n "$AB" ] && cases+=(proxy-b)
	for ((k = 0; k < ${#cases[@]}; k++)); do
		c=${cases[$(((k + r) % ${#cases[@]}))]}
		xpt_log "round $((r + 1))/$ROUNDS: $c"
		up "$c"
		if check_path "$c"; then
			t0=$(cpu_ticks)
			read -r mbit kpps <<<"$(iperf_udp 1400)"
			t1=$(cpu_ticks)
			printf '%s\tudp1400\t%s\n' "$c" "$mbit" >>"$RAW"
			[ -n "$XPT_DPID" ] && printf '%s\tcpu1400\t%s\n' "$c" \
				"$(per_unit $((t1 - t0)) "$(python3 -c "print(${kpps:-0} * 1e3 * $DUR)")")" >>"$RAW"
			read -r _ kpps <<<"$(iperf_udp 64)"
			t2=$(cpu_ticks)
			printf '%s\tudp64\t%s\n' "$c" "$kpps" >>"$RAW"
			[ -n "$XPT_DPID" ] && printf '%s\tcpu64\t%s\n' "$c" \
				"$(per_unit $((t2 - t1)) "$(python3 -c "print(${kpps:-0} * 1e3 * $DUR)")")" >>"$RAW"
			read -r _ kpps <<<"$(iperf_udp 64 -R)"
			t3=$(cpu_ticks)
			printf '%s\tudp64r\t%s\n' "$c" "$kpps" >>"$RAW"
			[ -n "$XPT_DPID" ] && printf '%s\tcpu64r\t%s\n' "$c" \
				"$(per_unit $((t3 - t2)) "$(python3 -c "print(${kpps:-0} * 1e3 * $DUR)")")" >>"$RAW"
			t2=$t3
			rate=$(rr_rate)
			t3=$(cpu_ticks)
			printf '%s\trr\t%s\n' "$c" "$rate" >>"$RAW"
			[ -n "$XPT_DPID" ] && printf '%s\tcpurr\t%s\n' "$c" \
				"$(per_unit $((t3 - t2)) "$(python3 -c "print(${rate:-0} * $DUR)")")" >>"$RAW"
		fi
		down
		sleep 0.3
	done
done
read -r _ U1 N1 S1 I1 W1 Q1 SQ1 ST1 _ </proc/stat
TOT=$(((U1 + N1 + S1 + I1 + W1 + Q1 + SQ1 + ST1) - (U0 + N0 + S0 + I0 + W0 + Q0 + SQ0 + ST0)))
STEAL=$((100 * (ST1 - ST0) / (TOT ? TOT : 1)))

python3 - "$RAW" "$ROUNDS" "$DUR" "$STEAL" "$AB" <<'PY'
import statistics as st, sys
raw, rounds, dur, steal, ab = sys.argv[1:]
data = {}
for line in open(raw):
    c, m, v = line.rstrip("\n").split("\t")
    try:
        data.setdefault((c, m), []).append(float(v))
    except ValueError:
        pass
cases = ["forward", "proxy"] + (["proxy-b"] if ab else [])
rows = (("udp1400", "UDP 1400 B Mbit/s rcvd"), ("udp64", "UDP 64 B kdgram/s rcvd"),
        ("udp64r", "UDP 64 B -R kdgram/s rcvd"), ("rr", "UDP request/response /s"),
        ("cpu1400", "xproxyd us CPU/dgram 1400"), ("cpu64", "xproxyd us CPU/dgram 64"),
        ("cpu64r", "xproxyd us CPU/dgram 64 -R"), ("cpurr", "xproxyd us CPU/exchange rr"))
print("bench/e2e/udp: medians of %s rounds x %s s; (x) = ratio to kernel forwarding" % (rounds, dur))
print("%-26s" % "metric" + "".join("%18s" % c for c in cases))
for m, label in rows:
    row = "%-26s" % label
    b = st.median(data[("forward", m)]) if data.get(("forward", m)) else None
    for c in cases:
        v = data.get((c, m))
        x = st.median(v) if v else None
        s = "-" if x is None else ("%.2f" if m.startswith("cpu") else "%.0f") % x
        if x is not None and b and c != "forward":
            s += " (%.2fx)" % (x / b)
        row += "%18s" % s
    print(row)
print("spread (min..max over rounds):")
for m, label in rows:
    row = "%-26s" % label
    for c in cases:
        v = data.get((c, m))
        f = "%.2f..%.2f" if m.startswith("cpu") else "%.0f..%.0f"
        row += "%18s" % (f % (min(v), max(v)) if v else "-")
    print(row)
if ab:
    print("proxy-b: the build in %s" % ab)
print("CPU stolen by the hypervisor during the run: %s%%" % steal)
PY
