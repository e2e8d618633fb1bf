#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_dns.sh: the dns plugin against a real resolver. unbound runs in the server namespace on
# 10.1.5.2 / fd00:1:5::2 with plain DNS (53, UDP and TCP), DoT (853) and DoH (443, HTTP/2),
# using a certificate made by openssl for this run. xproxyd in the router runs [dns] with the
# dns plugin, pointed at one upstream kind at a time; dig in the client asks an address that
# has no resolver at all (the DNS verdict takes every port-53 query) and must get unbound's
# answer:
#   udp://, tcp://, tls://#NAME, https:// (address in the certificate)   A over IPv4
#   tls:// cache misses share one connection; a reload closes the old instance's
#   tls:// via the direct outbound (the core's dial)
#   AAAA asked over IPv6
#   failover: a silent first upstream (timeout) and one that answers garbage (counted as
#             malformed) before the real one
source "$(dirname "$0")/lib.sh"
xpt_require dig unbound openssl
xpt_init dnp
xpt_topology
nsr ip -6 addr add fd00:1:5::1/64 dev wan0 nodad
nss ip -6 addr add fd00:1:5::2/64 dev s0 nodad

U=$XPT_TMP/unbound
mkdir -p "$U"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-keyout "$U/key.pem" -out "$U/cert.pem" -subj /CN=dns.test \
	-addext "subjectAltName=DNS:dns.test,IP:10.1.5.2,IP:fd00:1:5::2" 2>/dev/null ||
	xpt_fail "openssl could not make the test certificate"
cat >"$U/unbound.conf" <<EOF
server:
  interface: 10.1.5.2@53
  interface: fd00:1:5::2@53
  interface: 10.1.5.2@853
  interface: 10.1.5.2@443
  tls-port: 853
  https-port: 443
  tls-service-key: $U/key.pem
  tls-service-pem: $U/cert.pem
  http-endpoint: "/dns-query"
  do-daemonize: no
  username: ""
  chroot: ""
  directory: $U
  pidfile: ""
  use-syslog: no
  logfile: "$U/unbound.log"
  verbosity: 1
  num-threads: 1
  do-ip6: yes
  access-control: 10.0.0.0/8 allow
  access-control: fd00::/8 allow
  module-config: "iterator"
  local-zone: "test.example." static
  local-data: "www.test.example. 300 IN A 192.0.2.80"
  local-data: "www.test.example. 300 IN AAAA 2001:db8::80"
  local-data: "udp.test.example. 300 IN A 192.0.2.1"
  local-data: "tcp.test.example. 300 IN A 192.0.2.2"
  local-data: "tls.test.example. 300 IN A 192.0.2.3"
  local-data: "doh.test.example. 300 IN A 192.0.2.4"
  local-data: "fo.test.example. 300 IN A 192.0.2.5"
remote-control:
  control-enable: no
EOF
ip netns exec "$XPT-srv" unbound -d -c "$U/unbound.conf" </dev/null >"$U/stdout.log" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
disown $!
for _ in $(seq 1 50); do
	n=$(nss ss -Htln '( sport = :53 or sport = :853 or sport = :443 )' | wc -l)
	[ "$n" -ge 4 ] && break
	sleep 0.1
done
[ "${n:-0}" -ge 4 ] || xpt_fail "unbound did not start: $(tail -5 "$U/unbound.log" "$U/stdout.log")"
nss dig +short +time=2 +tries=1 @10.1.5.2 www.test.example A | grep -qx 192.0.2.80 ||
	xpt_fail "unbound does not answer in its own namespace"

# A server that answers every query with garbage (first upstream of the failover run).
cat >"$XPT_TMP/junk.py" <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.1.5.2", 5353))
while True:
    q, peer = s.recvfrom(4096)
    # the query's id and flags, QR set, then a count of 1 question and no question bytes
    s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00", peer)
EOF
ip netns exec "$XPT-srv" python3 "$XPT_TMP/junk.py" </dev/null >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
disown $!

# run_with UPSTREAM_LINES...: restart xproxyd with a [dns] section holding these upstreams
run_with() {
	[ -n "${XPT_DPID:-}" ] && xpt_stop TERM
	{
		echo "[dns]"
		echo "plugin = dns"
		printf '%s\n' "$@"
		echo "ca_file = $U/cert.pem"
		echo "timeout = 400ms"
		echo
		xpt_default_route
	} | xpt_config "$XPT_TMP/x.ini"
	: >"$XPT_TMP/xproxyd.log"
	xpt_start "$XPT_TMP/x.ini"
}

# expect_a WHAT WANT NAME TYPE [dig args]: dig from the client to an address with no resolver
expect_a() {
	local what=$1 want=$2 name=$3 type=$4 got
	shift 4
	got=$(nsc dig +short +time=5 +tries=1 "$@" "$name" "$type" 2>&1 | tr '\n' ' ' | sed 's/ $//')
	[ "$got" = "$want" ] || xpt_fail "$what: dig said '$got', expected '$want'"
	xpt_ok "$what ($name $type -> $got)"
}

stat_of() { # COUNTER: the dns plugin's counter from a fresh SIGUSR1 dump
	kill -USR1 "$XPT_DPID"
	sleep 0.5
	grep -E "stats: [A-Za-z0-9_.-]*\.$1 [0-9]+" "$XPT_DLOG" | tail -1 | awk '{print $NF}'
}

run_with "upstream = udp://10.1.5.2"
expect_a "over udp://" 192.0.2.1 udp.test.example A @10.9.9.9
expect_a "AAAA over IPv6, udp://" 2001:db8::80 www.test.example AAAA -6 @fd00:1:3::99

run_with "upstream = tcp://10.1.5.2"
expect_a "over tcp://" 192.0.2.2 tcp.test.example A @10.9.9.9
expect_a "over tcp://, client over TCP" 192.0.2.80 www.test.example A +tcp @10.9.9.9

run_with "upstream = tls://10.1.5.2#dns.test"
expect_a "over tls:// (DoT, name checked)" 192.0.2.3 tls.test.example A @10.9.9.9
# five more cache misses: connections are kept per worker (2 here) and shared
expect_a "over tls://, a second name" 192.0.2.1 udp.test.example A @10.9.9.9
expect_a "over tls://, a third name" 192.0.2.2 tcp.test.example A @10.9.9.9
expect_a "over tls://, a fourth name" 192.0.2.4 doh.test.example A @10.9.9.9
expect_a "over tls://, a fifth name" 192.0.2.5 fo.test.example A @10.9.9.9
expect_a "over tls://, a sixth name" 192.0.2.80 www.test.example A @10.9.9.9
dot_conns() { nss ss -Htn state established '( sport = :853 )' | wc -l; }
conns=$(stat_of upstream_conns)
[ "${conns:-9}" -le 2 ] || xpt_fail "DoT: upstream_conns '$conns' for 6 misses, expected <= 2"
[ "$(dot_conns)" = "$conns" ] ||
	xpt_fail "DoT: unbound holds $(dot_conns) connections, the plugin opened $conns"
xpt_ok "six DoT cache misses, $conns TLS connection(s) open (one per worker at most)"
# a reload that replaces the instance: its pooled connection is closed on its worker loop
sed -i 's/^timeout = 400ms/timeout = 450ms/' "$XPT_TMP/x.ini"
kill -HUP "$XPT_DPID"
for _ in $(seq 1 50); do
	grep -q "reload: done" "$XPT_DLOG" && break
	sleep 0.1
done
grep -q "reload: done" "$XPT_DLOG" || xpt_fail "reload did not finish"
expect_a "over tls:// after a reload" 192.0.2.3 tls.test.example A @10.9.9.9
for _ in $(seq 1 30); do
	[ "$(dot_conns)" = 1 ] && break
	sleep 0.1
done
[ "$(dot_conns)" = 1 ] || xpt_fail "after the reload unbound holds $(dot_conns) DoT connections, expected 1"
xpt_ok "the old instance's connections closed after the reload, the new one has its own"

run_with "upstream = tls://10.1.5.2#dns.test via proxy"
expect_a "over tls:// through the direct outbound (host->dial)" 192.0.2.3 tls.test.example A \
	@10.9.9.9

run_with "upstream = https://10.1.5.2/dns-query"
expect_a "over https:// (DoH, HTTP/2, address checked)" 192.0.2.4 doh.test.example A @10.9.9.9
expect_a "AAAA over IPv6, https://" 2001:db8::80 www.test.example AAAA -6 @fd00:1:3::99
hits=$(stat_of cache_hits)
expect_a "the same question again" 192.0.2.4 doh.test.example A @10.9.9.9
[ "$(stat_of cache_hits)" -gt "${hits:-0}" ] || xpt_fail "the repeated question was not a cache hit"
xpt_ok "the repeated question came from the cache"

# 10.1.5.77 does not exist (no answer, no ICMP in time), 10.1.5.2:5353 answers garbage.
run_with "upstream = udp://10.1.5.77" "upstream = udp://10.1.5.2:5353" "upstream = udp://10.1.5.2"
expect_a "failover past a silent and a garbage upstream" 192.0.2.5 fo.test.example A @10.9.9.9
fails=$(stat_of upstream_failures)
bad=$(stat_of malformed)
[ "${fails:-0}" -ge 2 ] || xpt_fail "upstream_failures is '${fails:-none}', expected >= 2"
[ "${bad:-0}" -ge 1 ] || xpt_fail "malformed is '${bad:-none}', expected >= 1"
xpt_ok "failover counted (upstream_failures $fails) and the garbage answer too (malformed $bad)"

# A certificate the CA file does not vouch for: SERVFAIL, not a forged answer.
run_with "upstream = tls://10.1.5.2#not-the-name.test"
st=$(nsc dig +time=5 +tries=1 @10.9.9.9 tls.test.example A | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
[ "$st" = SERVFAIL ] || xpt_fail "DoT with the wrong name: status '$st', expected SERVFAIL"
xpt_ok "DoT to a certificate without the configured name: SERVFAIL"

xpt_stop TERM
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exit code $XPT_DRC after SIGTERM"
left=$(xpt_leftovers)
[ -z "$left" ] || xpt_fail "left behind after SIGTERM: $left"
xpt_ok "SIGTERM left nothing behind"
