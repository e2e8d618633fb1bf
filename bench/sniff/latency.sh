#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# bench/sniff/latency.sh - what sniffing adds to a new HTTPS connection (printed, never asserted).
#
# One xproxyd, one config, three cases interleaved in every round (order rotated), each a new
# curl process and a new TLS connection to nginx in the server namespace (no DNS: --resolve):
#
#   direct   10.1.3.2  DIRECT by an address rule: the kernel forwards (the baseline)
#   proxy    10.1.2.2  proxy by an address rule: xproxyd accepts and connects upstream itself
#   inspect  10.1.5.2  INSPECT: only `domain:lat.test & dst-cidr:10.1.5.0/24, proxy` matches, so
#                      the tls sniffer must read the ClientHello's name before the flow is routed
#                      (cache = no: every connection is sniffed) and then proxied
#
# For each case, curl -w time_appconnect (TCP + TLS handshake done) and time_total: p10, median
# and p90 in microseconds, then inspect - direct and inspect - proxy (added microseconds, ratios,
# and a 95 % bootstrap interval of each difference: one that spans 0 is not resolved by the run).
# Before timing, each case's path is checked at the server (nginx answers $remote_addr: the
# client's address for the kernel path, the router's for a proxied one; without the sniffed name
# the inspect case would fall back to DIRECT and show the client's address).
#
# Usage: sudo bench/sniff/latency.sh [--rounds N] [--rt]  (default 200 connections per case)
#   --rt  run nginx, xproxyd and each curl as SCHED_FIFO (priority 10): on a loaded machine the
#         handshakes then wait less behind other processes, so the spread shrinks; the kernel
#         still leaves other tasks 5 % (sched_rt_runtime_us). Figures with and without --rt are
#         not comparable with each other, only the cases within one run are.
#        meson compile -C BUILD bench-sniff-latency      (the same, default rounds, as root)
# Needs: curl nginx openssl python3 and a build in $XPT_BUILD (default build/).
set -uo pipefail
ROUNDS=200
RT=()
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--rt) RT=(chrt -f 10); shift ;;
	*) echo "usage: $0 [--rounds N] [--rt]" >&2; exit 2 ;;
	esac
done
cd "$(dirname "$0")/../.." || exit 1
export XPT_BUILD=${XPT_BUILD:-$PWD/${XP_BUILD:-build}}
source tests/netns/lib.sh
xpt_require openssl
[ -f "$XPT_PLUGINS/tls.so" ] || xpt_fail "no $XPT_PLUGINS/tls.so"
xpt_init blat
xpt_topology

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj /CN=lat.test -addext "subjectAltName=DNS:lat.test" \
	-keyout "$XPT_TMP/key.pem" -out "$XPT_TMP/cert.pem" >/dev/null 2>&1 ||
	xpt_fail "openssl could not make a certificate"
mkdir -p "$XPT_TMP/ngx"
cat >"$XPT_TMP/ngx/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $XPT_TMP/ngx/nginx.pid;
error_log $XPT_TMP/ngx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $XPT_TMP/ngx/body;
  proxy_temp_path $XPT_TMP/ngx/proxy;
  fastcgi_temp_path $XPT_TMP/ngx/fcgi;
  uwsgi_temp_path $XPT_TMP/ngx/uwsgi;
  scgi_temp_path $XPT_TMP/ngx/scgi;
  server {
    listen 443 ssl backlog=1024;
    server_name lat.test;
    ssl_certificate $XPT_TMP/cert.pem;
    ssl_certificate_key $XPT_TMP/key.pem;
    location = / { default_type text/plain; return 200 "\$remote_addr\n"; }
  }
}
EOF
ip netns exec "$XPT-srv" "${RT[@]}" nginx -e "$XPT_TMP/ngx/error.log" -p "$XPT_TMP/ngx" \
	-c "$XPT_TMP/ngx/nginx.conf" </dev/null >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
disown $!
for _ in $(seq 1 50); do
	nss ss -Htln 'sport = :443' | grep -q . && break
	sleep 0.1
done
nss ss -Htln 'sport = :443' | grep -q . || xpt_fail "nginx did not start: $(cat "$XPT_TMP/ngx/error.log")"

# info, not debug: a log line per connection would be part of what is measured
xpt_config "$XPT_TMP/x.ini" "log_level = info" <<EOF
[sniff]
plugins = tls
timeout = 300ms
cache = no

[route]
rule = domain:lat.test & dst-cidr:10.1.5.0/24, proxy
rule = dst-cidr:10.1.2.0/24, proxy
rule = dst-cidr:10.1.3.0/24, DIRECT
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"
# every thread of xproxyd (workers included)
[ ${#RT[@]} = 0 ] || chrt -a -f -p 10 "$XPT_DPID" >/dev/null || xpt_fail "chrt: cannot make xproxyd SCHED_FIFO"

declare -A ADDR=([direct]=10.1.3.2 [proxy]=10.1.2.2 [inspect]=10.1.5.2)
declare -A PEER=([direct]=$C4 [proxy]=10.1.2.1 [inspect]=10.1.5.1)
for c in direct proxy inspect; do
	got=$(nsc curl -s -k --max-time 5 --resolve "lat.test:443:${ADDR[$c]}" https://lat.test/ |
		tr -d '\r\n')
	[ "$got" = "${PEER[$c]}" ] ||
		xpt_fail "$c: nginx saw '$got', want '${PEER[$c]}' (the case would not measure its path)"
	xpt_log "path ok: $c -> ${ADDR[$c]}, nginx sees $got"
done

RAW=$XPT_TMP/raw.tsv
: >"$RAW"
read -r load0 _ </proc/loadavg
read -r _ U0 N0 S0 I0 W0 Q0 SQ0 ST0 _ </proc/stat
cases=(direct proxy inspect)
fails=0
for ((r = 0; r < ROUNDS; r++)); do
	for ((k = 0; k < 3; k++)); do
		c=${cases[$(((k + r) % 3))]}
		# a failed transfer is counted and left out (curl prints zeros for it)
		if out=$(nsc "${RT[@]}" curl -s -k -o /dev/null --max-time 5 --resolve "lat.test:443:${ADDR[$c]}" \
			-w '%{time_appconnect} %{time_total}' https://lat.test/); then
			printf '%s %s\n' "$c" "$out" >>"$RAW"
		else
			fails=$((fails + 1))
		fi
	done
	[ $(((r + 1) % 50)) = 0 ] && xpt_log "round $((r + 1))/$ROUNDS"
done
read -r load1 _ </proc/loadavg
read -r _ U1 N1 S1 I1 W1 Q1 SQ1 ST1 _ </proc/stat
TOT=$(((U1 + N1 + S1 + I1 + W1 + Q1 + SQ1 + ST1) - (U0 + N0 + S0 + I0 + W0 + Q0 + SQ0 + ST0)))
STEAL=$((100 * (ST1 - ST0) / (TOT ? TOT : 1)))
BUSY=$((100 * (TOT - (I1 - I0) - (W1 - W0)) / (TOT ? TOT : 1)))

# the sniffer named every inspected connection (the path check's included)
nlines=$(grep -c "stats: sniff" "$XPT_DLOG")
kill -USR1 "$XPT_DPID"
for _ in $(seq 1 20); do
	[ "$(grep -c "stats: sniff" "$XPT_DLOG")" -gt "$nlines" ] && break
	sleep 0.1
done
sniffline=$(grep "stats: sniff" "$XPT_DLOG" | tail -1 | sed 's/.*stats: //')
xpt_stop

python3 - "$RAW" "$ROUNDS" "$fails" "$load0" "$load1" "$STEAL" "$BUSY" "$sniffline" "${#RT[@]}" <<'PY'
import random, statistics as st, sys
raw, rounds, fails, load0, load1, steal, busy, sniff, rt = sys.argv[1:]
rt = rt != "0"
data = {}
for line in open(raw):
    c, app, tot = line.split()
    data.setdefault(c, {"app": [], "tot": []})
    data[c]["app"].append(float(app) * 1e6)
    data[c]["tot"].append(float(tot) * 1e6)
def p(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]
def ci(a, b, q=0.5, n=2000):
    """95 % bootstrap interval of p_q(a) - p_q(b): the difference is resolved when it excludes 0"""
    rnd = random.Random(1)
    d = sorted(p(rnd.choices(a, k=len(a)), q) - p(rnd.choices(b, k=len(b)), q) for _ in range(n))
    return d[int(0.025 * n)], d[int(0.975 * n)]
cases = ["direct", "proxy", "inspect"]
labels = {"direct": "direct (DIRECT, kernel)", "proxy": "proxy (address rule)",
          "inspect": "inspect (tls -> proxy)"}
print("bench/sniff/latency.sh: %s new HTTPS connections per case (curl, TLS 1.3), interleaved;"
      " microseconds%s" % (rounds, "; SCHED_FIFO (--rt)" if rt else ""))
print("%-24s %5s %21s %21s" % ("", "", "time_appconnect", "time_total"))
print("%-24s %5s %7s %7s %7s %7s %7s %7s" % ("case", "n", "p10", "p50", "p90", "p10", "p50", "p90"))
for c in cases:
    d = data.get(c)
    if not d:
        print("%-24s %5d" % (labels[c], 0))
        continue
    print("%-24s %5d %7.0f %7.0f %7.0f %7.0f %7.0f %7.0f" % (labels[c], len(d["app"]),
          p(d["app"], 0.1), st.median(d["app"]), p(d["app"], 0.9),
          p(d["tot"], 0.1), st.median(d["tot"]), p(d["tot"], 0.9)))
def added(a, b):
    if a not in data or b not in data:
        return
    for k, name in (("app", "time_appconnect"), ("tot", "time_total")):
        for q, qn in ((0.5, "p50"), (0.1, "p10"), (0.9, "p90")):
            xa, xb = p(data[a][k], q), p(data[b][k], q)
            lo, hi = ci(data[a][k], data[b][k], q)
            print("  %-15s %s %+7.0f us (%.2fx), 95%% interval %+.0f..%+.0f us"
                  % (name, qn, xa - xb, xa / xb, lo, hi))
print("inspect vs direct (what sniffing and proxying add to a DIRECT flow):")
added("inspect", "direct")
print("inspect vs proxy (what the sniff step adds to a proxied flow):")
added("inspect", "proxy")
print("failed transfers left out: %s" % fails)
print("xproxyd: %s" % sniff)
print("machine: load average %s before, %s after; CPU busy %s%%, stolen by the hypervisor %s%%"
      % (load0, load1, busy, steal))
PY
