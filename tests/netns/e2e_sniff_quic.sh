#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_sniff_quic.sh: UDP flows named by the quic sniffer from real QUIC v1 and v2 client Initials
# (tests/netns/quic_client), routed by domain rules that come BEFORE address rules saying
# otherwise, and the datagrams buffered while sniffing replayed to the server byte for byte, in
# order. No DNS: the client sends to addresses.
#
#   a.quic.test, example.com  -> proxy (the direct plugin: the server sees the router)
#   b.quic.test               -> DIRECT (relayed once, it is in userspace; cached, the next
#                                flow there is forwarded by the kernel: the server sees the client)
#   10.1.5.0/24, fd00:1:2::/64 -> BLOCK (a flow there reaches the server only by its name)
#   10.1.3.0/24               -> proxy  (where name-less flows go)
#
# Cases: one-packet Initials (v1, v2), a ClientHello over two Initials sent tail first with its
# CRYPTO frames out of order (v2 over IPv4, v1 over IPv6), the RFC 9001 and RFC 9369 client
# Initials as published; garbage (routed by address at once: no sniffer claims it), an
# incomplete hello (routed by address when the sniff timeout ends), the sniff buffer bound
# (an incomplete hello followed by garbage: 8 datagrams kept and replayed, the rest dropped and
# counted), and the cache (both names' verdicts reach the kernel: a second flow is not sniffed).
# A python recorder in the server namespace writes every datagram with its source; it answers
# each one, so the return path through the session is checked too.
source "$(dirname "$0")/lib.sh"
xpt_require
xpt_init squic
QC=${XPT_QUIC_CLIENT:-$XPT_BUILD/tests/netns/quic_client}
[ -x "$QC" ] || xpt_fail "no quic_client at $QC (built with the tests)"
[ -f "$XPT_PLUGINS/quic.so" ] || xpt_fail "no $XPT_PLUGINS/quic.so (the sniffer plugins are built with xproxyd)"
RFCDATA=$XPT_SRC/tests/unit/data/quic
for f in rfc9001_client_initial.bin rfc9369_client_initial.bin; do
	[ -f "$RFCDATA/$f" ] || xpt_fail "no $RFCDATA/$f"
done
xpt_topology

for n in 3 4 5 6; do nss ip addr add 10.1.5.$n/24 dev s0; done
for n in 3 4; do nss ip addr add 10.1.3.$n/24 dev s0; done

REC=$XPT_TMP/rec.txt
cat >"$XPT_TMP/rec.py" <<'EOF'
# UDP recorder: one socket per ADDR (port 443); every datagram becomes a line
# "DST SRC SRCPORT TIME HEX", and is answered with "ack" from the same socket.
import selectors, socket, sys, time
out = open(sys.argv[1], "w")
sel = selectors.DefaultSelector()
for a in sys.argv[2:]:
    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((a, 443))
    sel.register(s, selectors.EVENT_READ, a)
open(sys.argv[1] + ".ready", "w").close()
while True:
    for key, _ in sel.select():
        data, peer = key.fileobj.recvfrom(65536)
        out.write("%s %s %d %.6f %s\n" % (key.data, peer[0], peer[1], time.time(), data.hex()))
        out.flush()
        key.fileobj.sendto(b"ack", peer)
EOF
nss python3 "$XPT_TMP/rec.py" "$REC" 10.1.5.2 10.1.5.3 10.1.5.4 10.1.5.5 10.1.5.6 \
	10.1.3.2 10.1.3.3 10.1.3.4 fd00:1:2::2 </dev/null >"$XPT_TMP/rec.log" 2>&1 &
XPT_PIDS="$XPT_PIDS $!"
disown $!
for _ in $(seq 1 50); do
	[ -f "$REC.ready" ] && break
	sleep 0.1
done
[ -f "$REC.ready" ] || xpt_fail "the UDP recorder did not start: $(cat "$XPT_TMP/rec.log")"

xpt_config "$XPT_TMP/x.ini" <<EOF
[sniff]
plugins = quic
timeout = 400ms
cache = yes

[route]
rule = domain:a.quic.test, proxy
rule = domain:example.com, proxy
rule = domain:b.quic.test, DIRECT
rule = dst-cidr:10.1.5.0/24|fd00:1:2::/64, BLOCK
rule = dst-cidr:10.1.3.0/24, proxy
fallback = DIRECT
EOF
xpt_start "$XPT_TMP/x.ini"
grep -q "sniff: 3 domain rules send their flows to the sniffers" "$XPT_DLOG" ||
	xpt_fail "the daemon did not say domain rules go to the sniffers"

n_case=0
# send [-r N] DST STEP...: run quic_client from the client (with -r: and wait for N answers);
# the datagrams it sent are in $SENT
send() {
	local -a opt=()
	if [ "$1" = -r ]; then
		opt=(-r "$2")
		shift 2
	fi
	local dst=$1 out
	shift
	n_case=$((n_case + 1))
	SENT=$XPT_TMP/sent.$n_case
	MARK=$(wc -l <"$REC")
	out=$(nsc "$QC" "${opt[@]}" -o "$SENT" "$dst" 443 "$@") ||
		xpt_fail "quic_client $dst $*: failed ($out)"
}

# received DST SRC: the hex of the datagrams to DST from SRC since the last send, in arrival order
received() {
	tail -n +$((MARK + 1)) "$REC" | awk -v d="$1" -v s="$2" '$1 == d && $2 == s { print $5 }'
}

# expect DST SRC WANTFILE WHAT: the server got exactly WANTFILE's datagrams from SRC (5 s wait)
expect() {
	local dst=$1 src=$2 want=$3 what=$4 n others
	n=$(wc -l <"$want")
	for _ in $(seq 1 50); do
		[ "$(received "$dst" "$src" | wc -l)" -ge "$n" ] && break
		sleep 0.1
	done
	sleep 0.2 # anything extra (a duplicate) would arrive now
	if ! received "$dst" "$src" | cmp -s - "$want"; then
		xpt_log "server got from $src to $dst: $(received "$dst" "$src" | cut -c1-40 | tr '\n' ' ')"
		xpt_log "expected: $(cut -c1-40 "$want" | tr '\n' ' ')"
		others=$(tail -n +$((MARK + 1)) "$REC" | awk -v d="$dst" '$1 == d { print $2 }' | sort | uniq -c | tr '\n' ' ')
		xpt_fail "$what: the server did not get the $n datagrams byte for byte in order from $src (sources seen: ${others:-none})"
	fi
	xpt_ok "$what: $n datagram(s) to $dst from $src, byte for byte, in order"
}

# log_has REGEX WHAT
log_has() {
	for _ in $(seq 1 20); do
		grep -Eq "$1" "$XPT_DLOG" && return 0
		sleep 0.1
	done
	xpt_fail "no log line for $2 (/$1/)"
}

RT5=10.1.5.1 RT3=10.1.3.1 RT6=fd00:1:2::1 # the router, as the server sees relayed flows

# --- names: proxy and DIRECT, v1 and v2 ----------------------------------------------------
send -r 1 10.1.5.2 initial:1:a.quic.test
expect 10.1.5.2 $RT5 "$SENT" "QUIC v1 Initial a.quic.test -> proxy"
log_has "sniff: udp [0-9]+ a\.quic\.test by quic -> proxy \(rule 1\)" "a.quic.test by quic, rule 1"

send -r 1 10.1.5.3 initial:2:b.quic.test
expect 10.1.5.3 $RT5 "$SENT" "QUIC v2 Initial b.quic.test -> DIRECT (relayed: the datagram is in userspace)"
log_has "sniff: udp [0-9]+ b\.quic\.test by quic -> DIRECT \(rule 3\)" "b.quic.test by quic, rule 3"

# a ClientHello of 1,700 bytes in two Initials: the tail's packet first, its CRYPTO frames in
# reverse order; both datagrams are buffered until the name is complete, then replayed
# (-r 2: the server's two answers come back to the client through the session)
send -r 2 10.1.5.4 split:2:a.quic.test
expect 10.1.5.4 $RT5 "$SENT" "QUIC v2 ClientHello over two Initials, out of order -> proxy"
send -r 2 fd00:1:2::2 split:1:a.quic.test
expect fd00:1:2::2 $RT6 "$SENT" "QUIC v1 ClientHello over two Initials, IPv6 -> proxy"

# the RFCs' own client Initials (v1: RFC 9001 A.2, v2: RFC 9369 A.2): name example.com
send 10.1.5.5 "file:$RFCDATA/rfc9001_client_initial.bin"
expect 10.1.5.5 $RT5 "$SENT" "the RFC 9001 client Initial (example.com) -> proxy"
send 10.1.5.6 "file:$RFCDATA/rfc9369_client_initial.bin"
expect 10.1.5.6 $RT5 "$SENT" "the RFC 9369 (v2) client Initial (example.com) -> proxy"
log_has "sniff: udp [0-9]+ example\.com by quic -> proxy \(rule 2\)" "example.com by quic, rule 2"

# --- no name ------------------------------------------------------------------------------
# garbage: the sniffer refuses the first datagram, the address rule decides at once
send 10.1.3.2 garbage:3
expect 10.1.3.2 $RT3 "$SENT" "garbage, no name -> the address rule (proxy)"
log_has "sniff: udp [0-9]+ no name -> proxy \(rule 5\)" "the name-less flow, rule 5"

# an incomplete hello: the sniffer wants more, the sniff timeout (400 ms) decides by address
t0=$(date +%s.%N)
send 10.1.3.3 head:1:a.quic.test
expect 10.1.3.3 $RT3 "$SENT" "an incomplete hello -> the address rule after the sniff timeout"
t1=$(tail -n +$((MARK + 1)) "$REC" | awk '$1 == "10.1.3.3" { print $4; exit }')
ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) * 1000 }')
[ "$ms" -ge 300 ] || xpt_fail "the incomplete hello reached the server after $ms ms: no sniff wait?"
xpt_ok "the incomplete hello was held $ms ms (sniff timeout 400 ms), then replayed"

# the bound: an incomplete hello and 19 garbage datagrams at once. The session keeps 8
# (UDP_SNIFF_MAX_DGRAMS); the 9th finds the buffer full, so the session is decided by the
# address rule at once (the sniffer cannot get more than it had): the 8 are replayed, the 9th
# and the rest follow in order, none is dropped, and it is no sniff timeout ('full' counts it)
kill -USR1 "$XPT_DPID"
log_has "sniff dropped [0-9]+ timeout [0-9]+ full" "the first statistics"
drop0=$(grep -o "sniff dropped [0-9]*" "$XPT_DLOG" | tail -1 | awk '{ print $3 }')
full0=$(grep -o "timeout [0-9]* full [0-9]*" "$XPT_DLOG" | tail -1 | awk '{ print $4 }')
t0=$(date +%s.%N)
send 10.1.3.4 head:2:a.quic.test garbage:19 sleep:900 garbage:1
expect 10.1.3.4 $RT3 "$SENT" "sniff buffer bound: all 21 datagrams, in order"
t1=$(tail -n +$((MARK + 1)) "$REC" | awk '$1 == "10.1.3.4" { print $4; exit }')
ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) * 1000 }')
[ "$ms" -lt 300 ] || xpt_fail "the full sniff buffer was held $ms ms: it should be decided at once"
nlines=$(grep -c "sniff dropped" "$XPT_DLOG")
kill -USR1 "$XPT_DPID"
for _ in $(seq 1 20); do
	[ "$(grep -c "sniff dropped" "$XPT_DLOG")" -gt "$nlines" ] && break
	sleep 0.1
done
drop1=$(grep -o "sniff dropped [0-9]*" "$XPT_DLOG" | tail -1 | awk '{ print $3 }')
full1=$(grep -o "timeout [0-9]* full [0-9]*" "$XPT_DLOG" | tail -1 | awk '{ print $4 }')
[ "$drop1" = "$drop0" ] || xpt_fail "sniff dropped went from $drop0 to $drop1: nothing should be lost"
[ $((full1 - full0)) = 1 ] || xpt_fail "sniff full went from $full0 to $full1, want one more"
xpt_ok "a full sniff buffer is decided at once ($ms ms): nothing dropped, 'full' $full0 -> $full1"

# --- the cache ------------------------------------------------------------------------------
# b.quic.test's DIRECT verdict is in the kernel now: a new flow there is forwarded by the
# kernel (the server sees the client) and never reaches the sniffer
ok=0
for _ in $(seq 1 10); do
	send 10.1.5.3 initial:2:b.quic.test
	sleep 0.3
	[ -n "$(received 10.1.5.3 $C4)" ] && { ok=1; break; }
done
[ $ok = 1 ] || xpt_fail "b.quic.test again: the server never saw the client $C4 (cached DIRECT verdict)"
expect 10.1.5.3 $C4 "$SENT" "b.quic.test again: the cached DIRECT verdict, forwarded by the kernel"
# a.quic.test's address: garbage now goes through proxy (the cached verdict); unnamed, the
# address rule would BLOCK it
send 10.1.5.2 garbage:2
expect 10.1.5.2 $RT5 "$SENT" "garbage to a.quic.test's address: the cached proxy verdict, not BLOCK"

# --- statistics and stop ------------------------------------------------------------------
nlines=$(grep -c "stats: sniff" "$XPT_DLOG")
kill -USR1 "$XPT_DPID"
for _ in $(seq 1 20); do
	[ "$(grep -c "stats: sniff" "$XPT_DLOG")" -gt "$nlines" ] && break
	sleep 0.1
done
line=$(grep "stats: sniff" "$XPT_DLOG" | tail -1)
xpt_log "${line#*stats: }"
grep "stats: udp" "$XPT_DLOG" | tail -1 | sed 's/.*stats: /  /' >&2
named=$(sed -n 's/.* named \([0-9]*\) .*/\1/p' <<<"$line")
noname=$(sed -n 's/.* no-name \([0-9]*\) .*/\1/p' <<<"$line")
cached=$(sed -n 's/.* cached \([0-9]*\) .*/\1/p' <<<"$line")
[ "$named" = 6 ] || xpt_fail "sniff named $named flows, want 6 (v1, v2, two split hellos, two RFC Initials)"
[ "$noname" = 1 ] || xpt_fail "sniff no-name $noname, want 1 (the garbage flow)"
[ "${cached:-0}" -ge 2 ] || xpt_fail "sniff cached $cached names, want at least 2"
timeouts=$(grep -o "sniff dropped [0-9]* timeout [0-9]*" "$XPT_DLOG" | tail -1 | awk '{ print $5 }')
[ "$timeouts" = 1 ] || xpt_fail "udp sniff timeouts $timeouts, want 1 (the incomplete hello)"
stimeouts=$(sed -n 's/.* timeouts \([0-9]*\) .*/\1/p' <<<"$line")
[ "$stimeouts" = 1 ] || xpt_fail "stats: sniff timeouts $stimeouts, want 1 (the UDP deadline counts too)"
xpt_ok "statistics: named $named, no-name $noname, cached $cached, timeouts $timeouts (udp) $stimeouts (sniff)"

xpt_stop
[ "$XPT_DRC" = 0 ] || xpt_fail "xproxyd exited with $XPT_DRC"
xpt_ok "clean stop"
