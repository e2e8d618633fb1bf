#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# bench/outbound/ss_conn.sh - xproxyd's own CPU per proxied connection through the shadowsocks
# outbound, A/B between builds (figures printed, never asserted).
#
# The topology, ss-server and the wrk load of bench/outbound/ss.sh's connection trial (wrk -t 1
# -c 16, Connection: close, against nginx at 10.1.2.2, default config with one worker per CPU),
# but only that trial, and with xproxyd from each of the given build directories in turn: every
# round runs each build once, the order rotated every round (AB BA ...), so a change in the
# machine's load lands on both sides. The figure is the process's CPU time (user + system, all
# threads, /proc/PID/stat) per 1,000 connections, and the main thread's share of it (for
# ss-redir, its only thread); the rate is printed but is not the figure to trust on a shared
# machine. Each round also logs the TCP segments the client and the server namespace exchanged
# and the proxy's minor page faults.
#
# Usage: sudo bench/outbound/ss_conn.sh [--rounds N] [--dur S] [--ss] [--strace] [--perf DIR]
#             BUILD...
#   BUILD      a build directory (core/xproxyd and plugins/ in it), relative to the source tree;
#              BUILD:KEY=VALUE runs it with that [global] setting (e.g. build:redirect=plain),
#              so one build can be compared with itself under two settings
#   --ss       also run ss-redir as a case (the baseline of ss.sh)
#   --strace   after the rounds, one extra trial per build under `strace -f -c`: system calls
#              per connection (strace slows the process: its CPU figures are not comparable)
#   --perf DIR after the rounds, one extra trial per build under `perf record -g`; the reports
#              go to DIR/<build>.txt (perf report --no-children, and with children, by thread)
#              and a breakdown of the packet work run in the proxy's context is printed:
#              the share of its samples under process_backlog (the softirq that delivers what
#              veth devices queued), split into TCP receive, the tc programs by name, the
#              redirect out of xp0 (skb_do_redirect: bpf_redirect_neigh to the LAN device, with
#              its transmit) and the rest; plus veth_xmit (queueing onto a veth), anywhere
# Needs: shadowsocks-libev wrk nginx-light python3 (strace, perf for the options).
set -uo pipefail
ROUNDS=5
DUR=4
METHOD=chacha20-ietf-poly1305
STRACE=0
PERFDIR=""
WITH_SS=0
BUILDS=()
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--dur) DUR=$2; shift 2 ;;
	--strace) STRACE=1; shift ;;
	--perf) PERFDIR=$(realpath -m "$2"); shift 2 ;;
	--ss) WITH_SS=1; shift ;;
	-*) echo "usage: $0 [--rounds N] [--dur S] [--ss] [--strace] [--perf DIR] BUILD..." >&2
		exit 2 ;;
	*) BUILDS+=("$1"); shift ;;
	esac
done
[ ${#BUILDS[@]} -gt 0 ] || { echo "$0: name at least one build directory" >&2; exit 2; }
cd "$(dirname "$0")/../.." || exit 1
DIRS=() SETS=()
for b in "${BUILDS[@]}"; do
	DIRS+=("${b%%:*}")
	[[ $b == *:* ]] && SETS+=("${b#*:}") || SETS+=("")
done
for b in "${DIRS[@]}"; do
	[ -x "$b/core/xproxyd" ] || { echo "$0: no $b/core/xproxyd" >&2; exit 2; }
done
export XPT_BUILD=$PWD/${DIRS[0]}
source tests/netns/lib.sh
xpt_require wrk ss-server ss-redir nft
[ "$STRACE" = 0 ] || xpt_require strace
[ -z "$PERFDIR" ] || xpt_require perf
xpt_init bsc
xpt_topology
xpt_nginx
source bench/outbound/ss_lib.sh
ssb_server

# per build: only the plugins the config names, as ss.sh does
for i in "${!BUILDS[@]}"; do
	ssb_plugins "$XPT_TMP/plugins$i" "$PWD/${DIRS[$i]}/plugins"
done
ssb_config "$XPT_TMP/xp.ini"
for i in "${!BUILDS[@]}"; do
	if [ -n "${SETS[$i]}" ]; then # into [global] (the file's first section), or replacing
		k=${SETS[$i]%%=*} v=${SETS[$i]#*=}
		if grep -q "^$k = " "$XPT_TMP/xp.ini"; then
			sed "0,/^$k = .*/s//$k = $v/" "$XPT_TMP/xp.ini" >"$XPT_TMP/xp$i.ini"
		else
			sed "/^\[global\]$/a $k = $v" "$XPT_TMP/xp.ini" >"$XPT_TMP/xp$i.ini"
		fi
	else
		cp "$XPT_TMP/xp.ini" "$XPT_TMP/xp$i.ini"
	fi
done
ssb_tproxy_routes
RAW=$XPT_TMP/raw.tsv
: >"$RAW"

PID=""
up() { # case index ("ss" or a build index)
	if [ "$1" = ss ]; then
		ssb_redir_up
		PID=$SSB_REDIR_PID
		return
	fi
	: >"$XPT_TMP/xp$1.log" # xpt_start waits for "ready:" in it: not the previous run's
	XPROXYD=$PWD/${DIRS[$1]}/core/xproxyd XPT_PLUGINS=$XPT_TMP/plugins$1 \
		xpt_start "$XPT_TMP/xp$1.ini" "$XPT_TMP/xp$1.log"
	PID=$XPT_DPID
}
down() {
	if [ "$1" = ss ]; then
		ssb_redir_down
	else
		xpt_stop TERM
	fi
	PID=""
}
name_of() { [ "$1" = ss ] && echo ss-redir || echo "${BUILDS[$1]}"; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }
minflt() { awk '{print $10}' "/proc/$1/stat" 2>/dev/null; }
main_ticks() { awk '{print $14 + $15}' "/proc/$1/task/$1/stat" 2>/dev/null; } # main thread
TCK=$(getconf CLK_TCK)

segs() { # namespace: TCP segments in and out so far
	ip netns exec "$XPT-$1" awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) k[$i] = i; h = 1 }
		else print $k["InSegs"], $k["OutSegs"] }' /proc/net/snmp
}
trial() { # case: one wrk run; prints "requests cpu_ticks rate main_thread_ticks"
	local out t0 t1 m0 m1 f0 f1 c0 c1 s0 s1
	read -r -a c0 < <(segs cli)
	read -r -a s0 < <(segs srv)
	t0=$(cpu_ticks "$PID")
	m0=$(main_ticks "$PID")
	f0=$(minflt "$PID")
	out=$(nsc wrk -t 1 -c 16 -d "${DUR}s" -H 'Connection: close' "http://$P4/" 2>/dev/null)
	t1=$(cpu_ticks "$PID")
	m1=$(main_ticks "$PID")
	f1=$(minflt "$PID")
	read -r -a c1 < <(segs cli)
	read -r -a s1 < <(segs srv)
	SEGS="client in/out $((c1[0] - c0[0]))/$((c1[1] - c0[1])), server netns in/out \
$((s1[0] - s0[0]))/$((s1[1] - s0[1]))"
	echo "$SEGS, $((f1 - f0)) page faults" >"$XPT_TMP/segs"
	echo "$(awk '/requests in/ {print $1}' <<<"$out") $((t1 - t0)) \
$(awk '/Requests\/sec/ {print $2}' <<<"$out") $((m1 - m0))"
}

CASES=("${!BUILDS[@]}")
[ "$WITH_SS" = 0 ] || CASES=(ss "${CASES[@]}")
N=${#CASES[@]}
for ((r = 0; r < ROUNDS; r++)); do
	for ((k = 0; k < N; k++)); do
		c=${CASES[$(((k + r) % N))]}
		up "$c"
		got=$(peer_of "http://$P4/")
		[ "$got" = "$P4" ] || xpt_fail "$(name_of "$c"): nginx saw '$got', want '$P4' (via ss-server)"
		ssb_reset_state
		read -r req ticks rate mticks < <(trial "$c")
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(name_of "$c")" "$req" "$ticks" "$rate" \
			"$(cut -d' ' -f1 /proc/loadavg)" "$mticks" >>"$RAW"
		xpt_log "round $((r + 1))/$ROUNDS $(name_of "$c"): $req requests, $ticks ticks, \
TCP segments $(cat "$XPT_TMP/segs")"
		down "$c"
		ssb_reset_state
	done
done

for c in "${CASES[@]}"; do
	[ "$STRACE" = 1 ] || break
	up "$c"
	ssb_reset_state
	strace -f -c -o "$XPT_TMP/strace.txt" -p "$PID" 2>/dev/null &
	sp=$!
	sleep 1
	read -r req _ _ < <(trial "$c")
	kill -INT $sp
	wait $sp
	echo "== $(name_of "$c"): strace -f -c, $req connections; calls per connection:"
	awk -v n="$req" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
		calls = $4; name = $NF; if (name ~ /^total$/) name = "TOTAL"
		printf "  %-18s %7.2f\n", name, calls / n }' "$XPT_TMP/strace.txt"
	down "$c"
	ssb_reset_state
done

if [ -n "$PERFDIR" ]; then
	mkdir -p "$PERFDIR"
	for c in "${CASES[@]}"; do
		up "$c"
		ssb_reset_state
		perf record -q -g -o "$XPT_TMP/perf.data" -p "$PID" >/dev/null 2>&1 &
		pp=$!
		sleep 1
		read -r req _ _ < <(trial "$c")
		kill -INT $pp
		wait $pp
		f=$PERFDIR/$(name_of "$c" | tr / _).txt
		{
			echo "# $req connections"
			perf report -i "$XPT_TMP/perf.data" --no-children --stdio --percent-limit 0.5 \
				-g none --sort dso,sym 2>/dev/null
			perf report -i "$XPT_TMP/perf.data" --children --stdio --percent-limit 2 \
				-g none --sort sym 2>/dev/null
			perf report -i "$XPT_TMP/perf.data" --no-children --stdio -g none --sort comm,tid \
				2>/dev/null | grep '%'
		} >"$f"
		cp "$XPT_TMP/perf.data" "${f%.txt}.data"
		perf script -i "$XPT_TMP/perf.data" -F ip,sym 2>/dev/null | python3 -c '
import collections, re, sys
samples, cur = [], []
for line in sys.stdin:
    line = line.strip()
    if not line:
        if cur:
            samples.append(cur)
        cur = []
        continue
    p = line.split(None, 1)
    cur.append(p[1] if len(p) > 1 else p[0])
if cur:
    samples.append(cur)
n = len(samples) or 1
c = collections.Counter()
for s in samples:  # frames leaf first
    if any("veth_xmit" in x for x in s):
        c["veth_xmit (queueing onto a veth), anywhere"] += 1
    idx = [i for i, x in enumerate(s) if x.startswith("process_backlog")]
    if not idx:
        continue
    c["process_backlog (all)"] += 1
    below = s[:max(idx)]
    progs = [re.sub("^bpf_prog_[0-9a-f]+_", "", x) for x in below if x.startswith("bpf_prog_")]
    if any(x.startswith("tcp_v4_rcv") or x.startswith("tcp_v6_rcv") for x in below):
        k = "  TCP receive"
    elif any(x.startswith("skb_do_redirect") for x in below):
        k = "  skb_do_redirect (out of xp0 to the LAN device)"
    elif progs:
        k = "  tc program " + progs[-1]
    elif any(x.startswith("tc_run") for x in below):
        k = "  tc (no program frame)"
    elif any(x.startswith("ip_") or x.startswith("ip6_") for x in below):
        k = "  IP, not TCP"
    else:
        k = "  device receive (rest)"
    c[k] += 1
for k, v in sorted(c.items(), key=lambda kv: (not kv[0].startswith("process"), -kv[1])):
    print("  %5.2f %%  %s" % (100.0 * v / n, k))
' >"${f%.txt}.softirq"
		echo "== $(name_of "$c"): $req connections, share of the proxy's samples:"
		cat "${f%.txt}.softirq"
		echo "== $(name_of "$c"): perf report in $f"
		down "$c"
		ssb_reset_state
	done
fi

python3 - "$RAW" "$ROUNDS" "$DUR" "$TCK" <<'PY'
import statistics as st, sys
raw, rounds, dur, hz = sys.argv[1:]
data = {}
for line in open(raw):
    c, req, ticks, rate, load, mticks = line.rstrip("\n").split("\t")
    if not req or int(req) == 0:
        continue
    d = data.setdefault(c, {"cpu": [], "rate": [], "load": [], "main": []})
    d["cpu"].append(int(ticks) * 1000 / int(hz) / (int(req) / 1000))
    d["main"].append(int(mticks or 0) * 1000 / int(hz) / (int(req) / 1000))
    d["rate"].append(float(rate))
    d["load"].append(float(load))
print("bench/outbound/ss_conn.sh: %s rounds x %s s, wrk -t 1 -c 16, Connection: close"
      % (rounds, dur))
print("%-24s %22s %9s %22s %12s" % ("case", "CPU ms/1000 conns", "main thr", "conns/s",
                                      "load"))
for c, d in data.items():
    cpu, rate = d["cpu"], d["rate"]
    print("%-24s %8.1f (%5.1f..%5.1f) %9.1f %8.0f (%5.0f..%5.0f) %5.1f..%4.1f"
          % (c, st.median(cpu), min(cpu), max(cpu), st.median(d["main"]), st.median(rate),
             min(rate), max(rate), min(d["load"]), max(d["load"])))
print("per round, CPU ms/1000 conns: " + "; ".join(
    "%s: %s" % (c, " ".join("%.0f" % v for v in d["cpu"])) for c, d in data.items()))
PY
