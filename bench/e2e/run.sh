#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# bench/e2e/run.sh - end-to-end figures, side by side in one run (printed, never asserted):
#
#   forward  plain kernel forwarding, no xproxyd              (the baseline: ratio 1.00)
#   direct   xproxyd running, the flow's verdict is DIRECT   (tc programs on the path)
#   proxy    xproxyd proxying through the direct outbound     (netns + splice relay)
#
# Workloads, client namespace -> server 10.1.2.2 across the router:
#   tcp1   iperf3 single stream, Gbit/s (receiver)
#   tcp4   iperf3 -P 4, Gbit/s
#   conn   new TCP connection per request (wrk -H 'Connection: close' against nginx), conns/s
# Plus xproxyd's RSS idle and with 1,000 open proxied connections.
# Cases are interleaved and their order rotated every round; medians are printed.
#
# Usage: sudo bench/e2e/run.sh [--rounds N] [--dur S]       (defaults: 3 rounds, 5 s)
# Needs: iperf3 wrk nginx-light curl python3 (installed by tests/deps.sh) and a build in
#        $XP_BUILD (default build/).
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
xpt_require iperf3 wrk
xpt_init bench
xpt_topology
xpt_nginx
nss iperf3 -s -B $P4 -p 5201 >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
sleep 0.5

cfg() { # FILE VERDICT
	printf '[route]\nrule = dst-cidr:10.1.2.0/24, %s\nfallback = DIRECT\n' "$2" |
		xpt_config "$1" "log_level = info"
}
cfg "$XPT_TMP/direct.ini" DIRECT
cfg "$XPT_TMP/proxy.ini" proxy
# one worker per CPU, like a default install
sed -i 's/^workers = 2$/workers = 0/' "$XPT_TMP/direct.ini" "$XPT_TMP/proxy.ini"
RAW=$XPT_TMP/raw.tsv
: >"$RAW"

reset_state() { # sockets of the previous trial must not shape the next (TIME-WAIT reuse)
	local ns
	for ns in cli rtr srv; do
		ip netns exec "$XPT-$ns" ss -K -t state time-wait >/dev/null 2>&1
	done
	sleep 0.3
}

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

check_path() { # case: the right path is in use
	local got want
	got=$(peer_of "http://$P4/")
	case $1 in proxy) want=$PR4 ;; *) want=$C4 ;; esac
	[ "$got" = "$want" ] || { xpt_log "$1: nginx saw '$got', want '$want'"; return 1; }
}

iperf() { # streams
	local out
	out=$(nsc iperf3 -c $P4 -p 5201 -t "$DUR" -P "$1" -J 2>/dev/null) || return
	python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)' \
		<<<"$out"
}

conn_rate() {
	nsc wrk -t 1 -c 16 -d "${DUR}s" -H 'Connection: close' "http://$P4/" 2>/dev/null |
		awk '/Requests\/sec/ {print $2}'
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

read -r _ U0 N0 S0 I0 W0 Q0 SQ0 ST0 _ </proc/stat # hypervisor steal over the run
for ((r = 0; r < ROUNDS; r++)); do
	cases=(forward direct proxy)
	for ((k = 0; k < 3; k++)); do
		c=${cases[$(((k + r) % 3))]}
		xpt_log "round $((r + 1))/$ROUNDS: $c"
		up "$c"
		if check_path "$c"; then
			reset_state
			printf '%s\ttcp1\t%s\n' "$c" "$(iperf 1)" >>"$RAW"
			reset_state
			printf '%s\ttcp4\t%s\n' "$c" "$(iperf 4)" >>"$RAW"
			reset_state
			printf '%s\tconn\t%s\n' "$c" "$(conn_rate)" >>"$RAW"
		fi
		down
		reset_state
	done
done

read -r _ U1 N1 S1 I1 W1 Q1 SQ1 ST1 _ </proc/stat
TOT=$(((U1 + N1 + S1 + I1 + W1 + Q1 + SQ1 + ST1) - (U0 + N0 + S0 + I0 + W0 + Q0 + SQ0 + ST0)))
STEAL=$((100 * (ST1 - ST0) / (TOT ? TOT : 1)))

# RSS: idle, then with 1,000 proxied connections held open.
up proxy
sleep 1
idle=$(rss_kb "$XPT_DPID")
cat >"$XPT_TMP/hold.py" <<'PY'
import socket, sys, time
socks = []
for i in range(1000):
    socks.append(socket.create_connection((sys.argv[1], 80), timeout=10))
print("open", len(socks), flush=True)
time.sleep(30)
PY
ip netns exec "$XPT-cli" python3 "$XPT_TMP/hold.py" "$P4" >"$XPT_TMP/hold.out" 2>&1 &
holder=$!
XPT_PIDS="$XPT_PIDS $holder"
for _ in $(seq 1 200); do grep -q open "$XPT_TMP/hold.out" && break; sleep 0.1; done
sleep 1
busy=$(rss_kb "$XPT_DPID")
held=$(grep -o 'open [0-9]*' "$XPT_TMP/hold.out" | cut -d' ' -f2)
kill $holder 2>/dev/null
down

cat >"$XPT_TMP/report.py" <<'PY'
import statistics as st, sys
raw, idle, busy, held, rounds, dur, steal = sys.argv[1:]
data = {}
for line in open(raw):
    c, m, v = line.rstrip("\n").split("\t")
    try:
        data.setdefault((c, m), []).append(float(v))
    except ValueError:
        pass
med = lambda c, m: st.median(data[(c, m)]) if data.get((c, m)) else None
cases = ["forward", "direct", "proxy"]
print("bench/e2e: medians of %s rounds x %s s; (x) = ratio to kernel forwarding" % (rounds, dur))
print("%-26s" % "metric" + "".join("%18s" % c for c in cases))
for m, label in (("tcp1", "TCP 1 stream Gbit/s"), ("tcp4", "TCP 4 streams Gbit/s"),
                 ("conn", "new connections/s")):
    row = "%-26s" % label
    for c in cases:
        x, b = med(c, m), med("forward", m)
        s = "-" if x is None else ("%.2f" % x if m != "conn" else "%.0f" % x)
        if x is not None and b and c != "forward":
            s += " (%.2fx)" % (x / b)
        row += "%18s" % s
    print(row)
print("spread (min..max over rounds):")
for m, label in (("tcp1", "TCP 1 stream Gbit/s"), ("tcp4", "TCP 4 streams Gbit/s"),
                 ("conn", "new connections/s")):
    row = "%-26s" % label
    for c in cases:
        v = data.get((c, m))
        fmt = "%.1f" if m != "conn" else "%.0f"
        row += "%18s" % ((fmt + ".." + fmt) % (min(v), max(v)) if v else "-")
    print(row)
print("xproxyd RSS: idle %.1f MiB, with %s open proxied connections %.1f MiB"
      % (int(idle or 0) / 1024, held, int(busy or 0) / 1024))
print("CPU stolen by the hypervisor during the run: %s%% (high values make every figure noisy)"
      % steal)
PY
python3 "$XPT_TMP/report.py" "$RAW" "${idle:-0}" "${busy:-0}" "${held:-0}" "$ROUNDS" "$DUR" \
	"$STEAL"
