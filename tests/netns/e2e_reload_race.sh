#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_reload_race.sh: reloads while workers are routing. Workers read the live configuration's
# rules without a lock (sniffed TCP flows, UDP sessions decided by rules); a reload must not
# free the configuration a worker is reading (docs/ARCHITECTURE.md "Threads and lifetimes").
#  1. A worker is stalled inside a rule lookup (the test hook XPROXYD_TEST_ROUTE_DELAY_MS, as
#     a preempted thread would be) while three reloads complete: no old configuration may be
#     freed before the lookup goes on, the flow is routed by the rules it read, and all three
#     are freed after it. (Before the grace periods the second reload freed the configuration
#     under the stalled worker: a use-after-free, an AddressSanitizer abort in an ASan build.)
#  2. Fifty reloads between two files while sniffed HTTP requests and new UDP sessions are
#     routed: every request and datagram answered, every retired configuration freed, a clean
#     stop (and no AddressSanitizer report when the build has it).
source "$(dirname "$0")/lib.sh"
xpt_require
xpt_init race
xpt_topology
xpt_nginx
[ -f "$XPT_PLUGINS/http_sniff.so" ] || xpt_fail "no $XPT_PLUGINS/http_sniff.so"

# UDP echo in the server namespace (answers from the address the datagram was sent to)
nss python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.1.5.2", 7007))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)
' </dev/null >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
disown $!

# With [sniff], the domain rule makes every flow INSPECT: each one is routed by the full rule
# list on a worker (sniff.c for TCP and UDP, the UDP core's rules path as the fallback);
# cache = no keeps sniffed names out of the kernel, so every request is decided again.
write_cfg() { # FILE N_EXTRA: the rules plus N_EXTRA unrelated lines (files of other sizes)
	{
		cat <<'EOC'
[sniff]
plugins = http
timeout = 300ms
cache = no

[route]
rule = domain:named.test, proxy
EOC
		for i in $(seq 1 "$2"); do echo "rule = dst-cidr:172.$((16 + i / 250)).$((i % 250)).0/24, deny"; done
		cat <<'EOC'
rule = dst-cidr:10.1.5.0/24, proxy
fallback = DIRECT
EOC
	} | xpt_config "$1"
}
write_cfg "$XPT_TMP/a.ini" 0
write_cfg "$XPT_TMP/b.ini" 300
cp "$XPT_TMP/a.ini" "$XPT_TMP/x.ini"

n_of() { grep -c -- "$1" "$XPT_DLOG"; }
wait_count() { # PATTERN N SECONDS
	for _ in $(seq 1 $(($3 * 10))); do
		[ "$(n_of "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
asan_check() {
	! grep -q "AddressSanitizer" "$XPT_DLOG" ||
		xpt_fail "AddressSanitizer: $(grep -m3 -A12 'AddressSanitizer' "$XPT_DLOG")"
}
FREED='previous configuration freed'

# --- 1. three reloads while a worker is stalled in a rule lookup -----------------------------
XPROXYD_TEST_ROUTE_DELAY_MS=4000 xpt_start "$XPT_TMP/x.ini"
nsc curl -s --max-time 20 -H 'Host: named.test' -o "$XPT_TMP/stalled.out" "http://$S4/" &
cl=$!
wait_count 'a rule lookup stalls' 1 5 || xpt_fail "the sniffed request never reached the rules"
for i in 1 2 3; do
	cp "$XPT_TMP/$([ $((i % 2)) = 1 ] && echo b || echo a).ini" "$XPT_TMP/x.ini"
	kill -HUP $XPT_DPID
	wait_count 'reload: done' $i 5 || xpt_fail "reload $i did not finish"
done
snap=$(cat "$XPT_DLOG")
grep -q 'stalled rule lookup goes on' <<<"$snap" &&
	xpt_fail "the reloads took longer than the 4 s stall: the race was not exercised"
[ "$(grep -c -- "$FREED" <<<"$snap")" = 0 ] ||
	xpt_fail "a configuration was freed while a worker was still reading it"
xpt_ok "three reloads done during the stall, no configuration freed under the worker"
wait $cl || xpt_fail "the stalled request failed (curl exit $?)"
[ "$(tr -d '\r\n' <"$XPT_TMP/stalled.out")" = 10.1.5.1 ] ||
	xpt_fail "the stalled request was not proxied: '$(cat "$XPT_TMP/stalled.out")'"
wait_count "$FREED" 3 5 || xpt_fail "retired configurations not freed after the stall: $(n_of "$FREED")/3"
kill -0 $XPT_DPID 2>/dev/null || xpt_fail "xproxyd died"
asan_check
xpt_ok "the stalled request was proxied by the rules it read; 3 configurations freed after it"
xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit $XPT_DRC after the stall phase"
asan_check

# --- 2. fifty reloads while sniffed TCP and rule-routed UDP flows are decided ----------------
: >"$XPT_TMP/x2.log"
xpt_start "$XPT_TMP/x.ini" "$XPT_TMP/x2.log"
(
	ok=0
	for i in $(seq 1 120); do
		[ "$(nsc curl -s --max-time 5 -H 'Host: named.test' "http://$S4/" | tr -d '\r\n')" = 10.1.5.1 ] &&
			ok=$((ok + 1))
	done
	echo $ok >"$XPT_TMP/tcp.ok"
) &
tp=$!
nsc python3 -c '
import socket, sys
ok = 0
keep = []  # open until the end: every session has its own client port
for i in range(200):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"ping %d" % i, ("10.1.5.2", 7007))
    try:
        if s.recv(64) == b"ping %d" % i:
            ok += 1
    except OSError:
        pass
    keep.append(s)
open(sys.argv[1], "w").write("%d\n" % ok)
' "$XPT_TMP/udp.ok" &
up=$!
for i in $(seq 1 50); do
	cp "$XPT_TMP/$([ $((i % 2)) = 1 ] && echo b || echo a).ini" "$XPT_TMP/x.ini"
	kill -HUP $XPT_DPID
	wait_count 'reload: done' $i 5 || xpt_fail "reload $i did not finish"
done
wait $tp
wait $up
kill -0 $XPT_DPID 2>/dev/null || xpt_fail "xproxyd died during the reloads"
asan_check
tcp=$(cat "$XPT_TMP/tcp.ok") udp=$(cat "$XPT_TMP/udp.ok")
[ "$tcp" = 120 ] || xpt_fail "sniffed requests answered through the proxy: $tcp/120"
[ "$udp" = 200 ] || xpt_fail "UDP sessions answered: $udp/200"
sessions=$(grep -c 'sniff: conn .* named.test' "$XPT_DLOG")
[ "$sessions" -ge 120 ] || xpt_fail "only $sessions of 120 requests were routed by a worker's rules"
wait_count "$FREED" 50 5 || xpt_fail "retired configurations freed: $(n_of "$FREED")/50"
xpt_ok "50 reloads during 120 sniffed requests and 200 UDP sessions: all answered, 50 freed"
xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit $XPT_DRC after the reloads"
asan_check
# UDP sessions no sniffer claims (http_sniff is TCP only) are routed by the rules at once.
# None may be passed by the datapath as "DIRECT (midstream)": that was a client port equal to
# one of xproxyd's own upstream sockets' (the reverse-tuple rule, bpf/lib/flow.h), now fixed.
usess=$(sed -n 's/.*stats: sniff flows .* unclaimed \([0-9]*\).*/\1/p' "$XPT_DLOG" | tail -1)
umid=$(grep -c 'flow new proto 17 .*:7007: DIRECT (midstream' "$XPT_DLOG")
[ "$umid" = 0 ] && [ "${usess:-0}" -ge 200 ] ||
	xpt_fail "UDP sessions routed by the rules: ${usess:-0} of 200, kernel midstream: $umid (want 0)"
[ -z "$(xpt_leftovers)" ] || xpt_fail "left behind: $(xpt_leftovers)"
xpt_ok "clean stop after $sessions sniffed TCP and $usess UDP rule decisions ($umid UDP midstream) and 50 reloads"
