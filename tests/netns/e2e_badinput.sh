#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_badinput.sh: malformed config, missing devices, missing privileges, a plugin that fails
# init, a client that sends nothing, an upstream that never answers: a clear message or a
# logged, counted close; never a crash, a hang or a leaked descriptor.
source "$(dirname "$0")/lib.sh"
xpt_require setpriv
xpt_init bad
FAILINIT=${XPT_FAILINIT:?path to failinit.so}
xpt_topology
xpt_nginx

expect_exit() { # WANT_RC PATTERN DESC -- CMD... (run in the router namespace)
	local want=$1 pat=$2 what=$3 out rc
	shift 4
	out=$(timeout 20 ip netns exec "$XPT-rtr" "$@" 2>&1)
	rc=$?
	[ $rc = "$want" ] || xpt_fail "$what: exit $rc, want $want; output: $out"
	echo "$out" | grep -qE -- "$pat" || xpt_fail "$what: no line matching '$pat' in: $out"
	xpt_ok "$what: $(echo "$out" | grep -E -m1 -- "$pat")"
}

# Malformed configuration: -t and a real start both report file:line and exit 1.
printf '[global]\nlan = lan0\nworkers = many\n[nowhere]\n[route]\nrule = dst-cidr:10.0.0.1/8, DIRECT\n' \
	>"$XPT_TMP/bad.ini"
expect_exit 1 'bad.ini:3: .*workers' "-t reports a bad value with its line" -- \
	"$XPROXYD" -t -c "$XPT_TMP/bad.ini" -P "$XPT_PLUGINS"
expect_exit 1 'bad.ini:4: .*nowhere' "-t reports an unknown section with its line" -- \
	"$XPROXYD" -t -c "$XPT_TMP/bad.ini" -P "$XPT_PLUGINS"
expect_exit 1 'bad.ini:6: .*host bits' "-t reports a bad rule with its line" -- \
	"$XPROXYD" -t -c "$XPT_TMP/bad.ini" -P "$XPT_PLUGINS"
expect_exit 1 'bad.ini:3: ' "start refuses a malformed file" -- \
	"$XPROXYD" -c "$XPT_TMP/bad.ini" -P "$XPT_PLUGINS"
xpt_config "$XPT_TMP/good.ini" < <(xpt_default_route)
expect_exit 0 'configuration OK' "-t accepts a good file" -- \
	"$XPROXYD" -t -c "$XPT_TMP/good.ini" -P "$XPT_PLUGINS"
expect_exit 1 'No such file|cannot' "a missing file" -- \
	"$XPROXYD" -c "$XPT_TMP/nonexistent.ini" -P "$XPT_PLUGINS"

# A device that does not exist.
sed 's/^lan = lan0$/lan = nosuch0/' "$XPT_TMP/good.ini" >"$XPT_TMP/nodev.ini"
expect_exit 1 'nosuch0' "a missing lan device is named" -- \
	"$XPROXYD" -c "$XPT_TMP/nodev.ini" -P "$XPT_PLUGINS"

# No privileges (the file and the plugins readable, so privileges are what is missing).
chmod o+rx "$XPT_TMP"
chmod o+r "$XPT_TMP/good.ini"
expect_exit 1 'CAP_NET_ADMIN|root|privilege|permission' "without privileges" -- \
	setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
	"$XPROXYD" -c "$XPT_TMP/good.ini" -P "$XPT_PLUGINS"

# A plugin whose init fails.
mkdir -p "$XPT_TMP/plugins"
ln -s "$XPT_PLUGINS"/*.so "$XPT_TMP/plugins/"
ln -s "$FAILINIT" "$XPT_TMP/plugins/failinit.so"
xpt_config "$XPT_TMP/fi.ini" <<'EOF2'
[outbound.broken]
plugin = failinit

[route]
rule = dst-cidr:10.1.2.0/24, broken
EOF2
expect_exit 1 'fi.ini:[0-9]+: \[outbound.broken\] .*failinit.so: init failed' \
	"a plugin that fails init stops the start, naming the section and the plugin" -- \
	"$XPROXYD" -c "$XPT_TMP/fi.ini" -P "$XPT_TMP/plugins"
[ -z "$(xpt_leftovers)" ] || xpt_fail "a failed start left: $(xpt_leftovers)"
xpt_ok "failed starts left nothing behind"

# Runtime: a silent client and an upstream that never answers.
# One worker: the descriptor check below must not depend on which worker's pipe cache
# (core/relay.c) a connection happens to land on.
xpt_config "$XPT_TMP/rt.ini" "idle_timeout = 2s
connect_timeout = 1s
workers = 1" <<'EOF2'
[route]
rule = dst-cidr:10.1.2.0/24|10.1.5.99/32, proxy
fallback = DIRECT
EOF2
xpt_start "$XPT_TMP/rt.ini"
# one proxied request first: the worker's pipe cache (core/relay.c) fills on first use
expect_peer "http://$P4/" "$PR4" "warm-up request through the proxy"
fd0=$(ls /proc/$XPT_DPID/fd | wc -l)

# Timed from the established connection, inside the client, so a slow process start on a busy
# machine is not counted against the idle timeout.
ms=$(nsc python3 - <<'PY'
import socket, sys, time
s = socket.create_connection(("10.1.2.2", 80), timeout=10)
t0 = time.monotonic()
s.settimeout(10)
try:
    b = s.recv(1)          # we send nothing; the proxy must end the connection
except ConnectionResetError:
    b = b""
except socket.timeout:
    b = None
print(int((time.monotonic() - t0) * 1000) if b == b"" else -1)
PY
)
[ "${ms:--1}" -ge 0 ] || xpt_fail "silent client: the proxy did not close the idle connection"
[ "$ms" -ge 1500 ] || xpt_fail "idle connection closed after $ms ms, before idle_timeout 2s"
[ "$ms" -lt 6000 ] || xpt_fail "idle connection closed only after $ms ms (idle_timeout 2s)"
xpt_ok "a client that sends nothing is closed after the idle timeout ($ms ms)"

t=$(nsc curl -s --max-time 10 -o /dev/null -w '%{time_total}' "http://10.1.5.99/")
rc=$?
ms=$(awk -v t="$t" 'BEGIN { printf "%d", t * 1000 }')
[ $rc != 0 ] || xpt_fail "an unanswering upstream produced a successful request"
[ $ms -lt 3000 ] || xpt_fail "unanswering upstream: client waited $ms ms (connect_timeout 1s)"
xpt_ok "an upstream that never answers: client reset after $ms ms (curl exit $rc)"
kill -USR1 $XPT_DPID
sleep 0.5
grep -E 'connect-timeout [1-9]' "$XPT_DLOG" >/dev/null || xpt_fail "connect timeout not counted"
sleep 1
fd1=$(ls /proc/$XPT_DPID/fd | wc -l)
[ "$fd1" -le "$fd0" ] || xpt_fail "descriptor leak: $fd0 -> $fd1"
xpt_ok "timeouts counted, no descriptor leak ($fd0 -> $fd1)"
xpt_stop TERM
[ -z "$(xpt_leftovers)" ] || xpt_fail "left behind: $(xpt_leftovers)"
