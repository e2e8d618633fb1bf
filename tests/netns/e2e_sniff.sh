#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_sniff.sh: flows named by the tls and http sniffers, decided by domain rules that come
# BEFORE address rules saying otherwise (so a wrong path is visible at the server):
#   a.sniff.test (HTTPS, 10.1.5.2)  -> tunnel        address rule would say DIRECT
#   b.sniff.test (HTTPS, 10.1.3.2)  -> DIRECT        address rule would say BLOCK
#   c.sniff.test (HTTP,  10.1.2.2)  -> tunnel        address rule would say DIRECT
#   no name      (HTTPS to 10.1.5.2:8443, no SNI)    -> the address rule: DIRECT
#   server-first (socat banner, 10.1.4.2:2525)       -> routed by address when the sniff
#                                                      timeout ends: the banner arrives
#   q.sniff.test (QUIC Initial, UDP 10.1.4.2:443)    -> tunnel: the FLOW_NAMED event of a UDP
#                                                      session names the quic sniffer
# nginx answers "$remote_addr $name": the client's address means the kernel forwarded the flow,
# the router's means xproxyd relayed it. A sniffed DIRECT flow is relayed once (it is in
# userspace already); with cache = yes its verdict is then in the kernel, and the next flow to
# that address goes DIRECT in the kernel (the client's address). No DNS: curl --resolve.
# The eventlog test plugin logs the core's FLOW_NAMED event (ABI 1.2): the decision, the name
# and the sniffer that found it.
source "$(dirname "$0")/lib.sh"
EVENTLOG=${XPT_EVENTLOG:?path to eventlog.so}
QC=${XPT_QUIC_CLIENT:-$XPT_BUILD/tests/netns/quic_client}
xpt_require openssl socat
xpt_init sniff
xpt_topology

[ -x "$QC" ] || xpt_fail "no quic_client at $QC (built with the tests)"
for so in tls.so http_sniff.so quic.so; do
	[ -f "$XPT_PLUGINS/$so" ] || xpt_fail "no $XPT_PLUGINS/$so (the sniffer plugins are built with xproxyd)"
done

# certificate for both HTTPS names, made now
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj /CN=sniff.test -addext "subjectAltName=DNS:a.sniff.test,DNS:b.sniff.test" \
	-keyout "$XPT_TMP/key.pem" -out "$XPT_TMP/cert.pem" >/dev/null 2>&1 ||
	xpt_fail "openssl could not make a certificate"

mkdir -p "$XPT_TMP/ngx"
cat >"$XPT_TMP/ngx/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $XPT_TMP/ngx/nginx.pid;
error_log $XPT_TMP/ngx/error.log warn;
events { worker_connections 256; }
http {
  access_log $XPT_TMP/ngx/access.log;
  client_body_temp_path $XPT_TMP/ngx/body;
  proxy_temp_path $XPT_TMP/ngx/proxy;
  fastcgi_temp_path $XPT_TMP/ngx/fcgi;
  uwsgi_temp_path $XPT_TMP/ngx/uwsgi;
  scgi_temp_path $XPT_TMP/ngx/scgi;
  server {
    listen 443 ssl;
    listen 8443 ssl;
    server_name a.sniff.test b.sniff.test;
    ssl_certificate $XPT_TMP/cert.pem;
    ssl_certificate_key $XPT_TMP/key.pem;
    location = / { default_type text/plain; return 200 "\$remote_addr \$ssl_server_name\n"; }
  }
  server {
    listen 80;
    server_name c.sniff.test;
    location = / { default_type text/plain; return 200 "\$remote_addr \$host\n"; }
  }
}
EOF
ip netns exec "$XPT-srv" nginx -e "$XPT_TMP/ngx/error.log" -p "$XPT_TMP/ngx" \
	-c "$XPT_TMP/ngx/nginx.conf" </dev/null >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
disown $!
ip netns exec "$XPT-srv" socat TCP-LISTEN:2525,bind=10.1.4.2,reuseaddr,fork \
	SYSTEM:'echo 220 banner-first' </dev/null >/dev/null 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
disown $!
for _ in $(seq 1 50); do
	nss ss -Htln 'sport = :443' | grep -q . && nss ss -Htln 'sport = :2525' | grep -q . && break
	sleep 0.1
done
nss ss -Htln 'sport = :443' | grep -q . || xpt_fail "nginx did not start: $(cat "$XPT_TMP/ngx/error.log")"

xpt_config "$XPT_TMP/x.ini" <<EOF
[outbound.tunnel]
plugin = direct

[outbound.events]
plugin = $EVENTLOG

# a group as a domain rule's target: the sniffed flow gets the group's member
[group.pool]
members = tunnel
policy = fixed

[sniff]
plugins = tls, http, quic
timeout = 400ms
cache = yes

# per-sniffer options: the core's ports (tls claims every port by default) and the plugin's
# own option, under the name listed above ("http" is http_sniff's alias)
[sniff.tls]
ports = 443, 853

[sniff.http]
max_header_bytes = 4k

[route]
rule = domain:a.sniff.test, tunnel
rule = domain-suffix:b.sniff.test, DIRECT
rule = domain:c.sniff.test, tunnel
rule = domain:q.sniff.test, tunnel
rule = domain:d.sniff.test, pool
rule = dst-cidr:10.1.5.0/24, DIRECT
rule = dst-cidr:10.1.3.0/24, BLOCK
rule = dst-cidr:10.1.2.0/24, DIRECT
rule = dst-cidr:10.1.4.0/24, proxy
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"
grep -q "sniff: 5 domain rules send their flows to the sniffers" "$XPT_DLOG" ||
	xpt_fail "the daemon did not say domain rules go to the sniffers"

RA=10.1.5.1 # the router on the server's networks: what nginx sees for relayed flows
RB=10.1.3.1
RC=10.1.2.1

https() { # NAME ADDR: "peer name" as nginx saw it
	nsc curl -s -k --max-time 10 --resolve "$1:443:$2" "https://$1/" | tr -d '\r\n'
}

got=$(https a.sniff.test 10.1.5.2)
[ "$got" = "$RA a.sniff.test" ] ||
	xpt_fail "a.sniff.test: nginx saw '$got', want '$RA a.sniff.test' (tunnel, not the DIRECT address rule)"
grep -q "sniff: conn [0-9]* a.sniff.test by tls -> tunnel" "$XPT_DLOG" ||
	xpt_fail "no log line: a.sniff.test named by tls and sent to tunnel"
xpt_ok "HTTPS a.sniff.test named by tls, sent through tunnel (peer $RA)"

# FLOW_NAMED: PROXY (3) by rule 1 (source RULE, 3) through tunnel, the name and the sniffer; and
# the daemon's own line for it. Delivered through the main loop: wait for it a little.
named() { # PATTERN: the eventlog line for a FLOW_NAMED event, within 2 s
	for _ in $(seq 1 20); do
		grep -q "\[eventlog\] eventlog: flow-named $1" "$XPT_DLOG" && return 0
		sleep 0.1
	done
	return 1
}
named "$C4:[0-9]* -> 10.1.5.2:443 route 3 source 3 rule 1 outbound tunnel domain a.sniff.test sniffer tls" ||
	xpt_fail "no FLOW_NAMED event naming a.sniff.test by tls (tunnel, rule 1): $(grep flow-named "$XPT_DLOG" | tail -3)"
grep -q "flow named proto 6 $C4:[0-9]* -> 10.1.5.2:443: PROXY via tunnel (rule 1), name a.sniff.test by tls" "$XPT_DLOG" ||
	xpt_fail "no daemon log line for the FLOW_NAMED decision of a.sniff.test"
xpt_ok "FLOW_NAMED event and log line: a.sniff.test by tls, PROXY via tunnel, rule 1"

got=$(https b.sniff.test 10.1.3.2)
[ "$got" = "$RB b.sniff.test" ] ||
	xpt_fail "b.sniff.test: nginx saw '$got', want '$RB b.sniff.test' (DIRECT by name, relayed once)"
xpt_ok "HTTPS b.sniff.test named by tls: DIRECT by name, not BLOCKed by the address rule"
# the sniffed verdict is cached in the kernel: the next flow there is forwarded by the kernel
ok=0
for _ in $(seq 1 20); do
	got=$(https b.sniff.test 10.1.3.2)
	[ "$got" = "$C4 b.sniff.test" ] && { ok=1; break; }
	sleep 0.2
done
[ $ok = 1 ] || xpt_fail "b.sniff.test again: nginx saw '$got', want the client '$C4' (cached DIRECT verdict)"
xpt_ok "the cached DIRECT verdict for b.sniff.test is applied in the kernel (peer $C4)"

got=$(nsc curl -s --max-time 10 --resolve "c.sniff.test:80:10.1.2.2" "http://c.sniff.test/" | tr -d '\r\n')
[ "$got" = "$RC c.sniff.test" ] ||
	xpt_fail "c.sniff.test: nginx saw '$got', want '$RC c.sniff.test' (tunnel by Host)"
grep -q "sniff: conn [0-9]* c.sniff.test by http_sniff -> tunnel" "$XPT_DLOG" ||
	xpt_fail "no log line: c.sniff.test named by http_sniff"
named "$C4:[0-9]* -> 10.1.2.2:80 route 3 source 3 rule 3 outbound tunnel domain c.sniff.test sniffer http_sniff" ||
	xpt_fail "no FLOW_NAMED event naming c.sniff.test by http_sniff: $(grep flow-named "$XPT_DLOG" | tail -3)"
xpt_ok "HTTP c.sniff.test named by the http sniffer, sent through tunnel (peer $RC)"

# (10.1.4.2: c.sniff.test's verdict is cached for 10.1.2.2:80, so a flow there is not sniffed)
got=$(nsc curl -s --max-time 10 --resolve "d.sniff.test:80:10.1.4.2" "http://d.sniff.test/" | tr -d '\r\n')
[ "$got" = "10.1.4.1 d.sniff.test" ] ||
	xpt_fail "d.sniff.test: nginx saw '$got', want '10.1.4.1 d.sniff.test' (group pool, member tunnel)"
grep -q "sniff: conn [0-9]* d.sniff.test by http_sniff -> tunnel (rule 5)" "$XPT_DLOG" ||
	xpt_fail "no log line: d.sniff.test by http_sniff through the group's member tunnel: $(grep "sniff: conn" "$XPT_DLOG" | tail -2)"
named "$C4:[0-9]* -> 10.1.4.2:80 route 3 source 3 rule 5 outbound tunnel domain d.sniff.test sniffer http_sniff" ||
	xpt_fail "no FLOW_NAMED event for d.sniff.test through the group: $(grep flow-named "$XPT_DLOG" | tail -3)"
xpt_ok "HTTP d.sniff.test: a sniffed name whose rule targets a group goes through its member"

# [sniff.tls] ports = 443, 853: TLS to b.sniff.test on 8443 is not offered to tls (by default it
# claims every port and would name it, DIRECT); http_sniff says NOT_MINE, so no name, and the
# address rule (rule 7, BLOCK) decides: the client is reset
got=$(nsc curl -s -k --max-time 10 --resolve "b.sniff.test:8443:10.1.3.2" "https://b.sniff.test:8443/" 2>&1 | tr -d '\r\n')
[ -z "$got" ] || xpt_fail "b.sniff.test:8443 answered '$got': tls should not claim port 8443 ([sniff.tls] ports)"
named "$C4:[0-9]* -> 10.1.3.2:8443 route 2 source 3 rule 7 domain - sniffer -" ||
	xpt_fail "no FLOW_NAMED event: b.sniff.test:8443 unnamed, BLOCK by rule 7: $(grep flow-named "$XPT_DLOG" | tail -3)"
xpt_ok "[sniff.tls] ports = 443, 853: a TLS flow to 8443 is not sniffed by tls (BLOCK by address, rule 7)"

# HTTPS without SNI (an address literal) on a port no cached verdict covers: no name, so the
# first rule that needs none decides (dst-cidr:10.1.5.0/24, DIRECT: relayed, it is in userspace)
got=$(nsc curl -s -k --max-time 10 "https://10.1.5.2:8443/" | tr -d '\r\n')
[ "$got" = "$RA " ] || xpt_fail "HTTPS without a name: nginx saw '$got', want '$RA ' (DIRECT by address)"
grep -q "sniff: conn [0-9]* no name -> DIRECT (rule 6)" "$XPT_DLOG" ||
	xpt_fail "no log line for the nameless flow routed by the address rule (rule 6)"
# the event for a flow no sniffer named: the decision, no name, no sniffer (DIRECT: no outbound)
named "$C4:[0-9]* -> 10.1.5.2:8443 route 1 source 3 rule 6 domain - sniffer -" ||
	xpt_fail "no FLOW_NAMED event for the nameless flow (DIRECT by rule 6): $(grep flow-named "$XPT_DLOG" | tail -3)"
xpt_ok "HTTPS without a name is routed by the first rule that needs none (rule 6, never dropped)"

# server-first: the client sends nothing and keeps its side open (no EOF to end the wait); the
# flow is routed by address when the sniff timeout ends, and the banner arrives
out=$(nsc python3 -c '
import socket, time
t0 = time.monotonic()
s = socket.create_connection(("10.1.4.2", 2525), timeout=10)
data = s.recv(100)
print(data.decode().strip(), int((time.monotonic() - t0) * 1000))
' 2>&1)
ms=${out##* }
got=${out% *}
[ "$got" = "220 banner-first" ] || xpt_fail "server-first protocol: got '$out'"
[ "$ms" -ge 300 ] || xpt_fail "server-first banner after $ms ms: the sniff wait (400 ms) was skipped?"
xpt_ok "server-first banner arrived after $ms ms (sniff timeout 400 ms, then the address rule)"

# UDP: a QUIC v1 Initial for q.sniff.test; the session's FLOW_NAMED names the quic sniffer
out=$(nsc "$QC" 10.1.4.2 443 initial:1:q.sniff.test 2>&1) || xpt_fail "quic_client failed: $out"
named "$C4:[0-9]* -> 10.1.4.2:443 route 3 source 3 rule 4 outbound tunnel domain q.sniff.test sniffer quic" ||
	xpt_fail "no FLOW_NAMED event naming the UDP session q.sniff.test by quic: $(grep flow-named "$XPT_DLOG" | tail -3)"
grep -q "flow named proto 17 $C4:[0-9]* -> 10.1.4.2:443: PROXY via tunnel (rule 4), name q.sniff.test by quic" "$XPT_DLOG" ||
	xpt_fail "no daemon log line for the FLOW_NAMED decision of the UDP session"
xpt_ok "UDP: FLOW_NAMED event and log line: q.sniff.test by quic, PROXY via tunnel, rule 4"

kill -USR1 "$XPT_DPID"
sleep 0.5
grep "stats: sniff" "$XPT_DLOG" | tail -1 >&2
grep -q "stats: sniff flows [1-9]" "$XPT_DLOG" || xpt_fail "no sniff statistics"
xpt_stop
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exited with $XPT_DRC"
xpt_ok "clean stop"
