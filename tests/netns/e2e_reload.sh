#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# e2e_reload.sh: SIGHUP applies changed rules and outbound options to new connections while an
# open connection keeps going; a broken file is refused and the old configuration kept.
source "$(dirname "$0")/lib.sh"
xpt_require sha256sum
xpt_init rld
xpt_topology
xpt_nginx
xpt_bigfile slow 8

xpt_config "$XPT_TMP/x.ini" < <(xpt_default_route)
xpt_start "$XPT_TMP/x.ini"
expect_peer "http://$P4/" "$PR4" "before reload: proxied"

# An open proxied download, rate-limited by nginx to ~2 MB/s: it spans the reload.
nsc curl -s --max-time 30 -o "$XPT_TMP/slow.out" "http://$P4/slow" &
dl=$!
sleep 1

# New rules: the proxy network becomes DIRECT, the spare network is proxied.
xpt_config "$XPT_TMP/x.ini" <<'EOF2'
[route]
rule = dst-cidr:10.1.5.0/24, proxy
rule = dst-cidr:10.1.4.0/24|fd00:1:4::/64, BLOCK
fallback = DIRECT
EOF2
kill -HUP $XPT_DPID
for _ in $(seq 1 50); do grep -q 'reload: done' "$XPT_DLOG" && break; sleep 0.1; done
grep -q 'reload: done' "$XPT_DLOG" || xpt_fail "reload did not finish"
expect_peer "http://$P4/" "$C4" "after reload: the changed rule applies to new connections"
expect_peer "http://$S4/" "10.1.5.1" "after reload: the new proxy rule applies"
kill -0 $dl 2>/dev/null || xpt_fail "the open download ended during the reload"
wait $dl || xpt_fail "the open download failed across the reload"
[ "$(sha256sum <"$XPT_TMP/slow.out" | cut -d' ' -f1)" = "$(cat "$XPT_TMP/slow.sha")" ] ||
	xpt_fail "the download that spanned the reload is corrupt"
xpt_ok "a connection open across SIGHUP completed byte-identical"

# Outbound options reload: the same outbound name now uses the block plugin, so new
# connections through it are reset by xproxyd (instead of being connected upstream).
sed -i '/^\[outbound.proxy\]$/,/^$/ s/^plugin = direct$/plugin = block/' "$XPT_TMP/x.ini"
grep -A1 '^\[outbound.proxy\]' "$XPT_TMP/x.ini" | grep -q 'plugin = block' || xpt_fail "test edit"
n=$(grep -c 'reload: done' "$XPT_DLOG")
kill -HUP $XPT_DPID
for _ in $(seq 1 50); do [ "$(grep -c 'reload: done' "$XPT_DLOG")" -gt "$n" ] && break; sleep 0.1; done
got=$(peer_of "http://$S4/")
[ -z "$got" ] || xpt_fail "after the outbound reload nginx still answered ('$got')"
nsc curl -s --max-time 3 -o /dev/null "http://$S4/"
rc=$?
[ $rc = 56 ] || [ $rc = 52 ] || [ $rc = 7 ] || xpt_fail "outbound reload: curl exit $rc (want a reset)"
xpt_ok "an outbound whose options changed serves new connections with the new instance"

# A broken file: refused, the running configuration stays.
printf '[global]\nlan = lan0\nbogus_key = 1\n' >"$XPT_TMP/x.ini"
kill -HUP $XPT_DPID
for _ in $(seq 1 50); do grep -q 'still running the old one' "$XPT_DLOG" && break; sleep 0.1; done
grep -q "x.ini:3: " "$XPT_DLOG" || xpt_fail "the reload error did not name file:line"
expect_peer "http://$P4/" "$C4" "after a bad reload the previous rules still apply"
[ -z "$(peer_of "http://$S4/")" ] || xpt_fail "after a bad reload the previous outbound changed"
kill -0 $XPT_DPID || xpt_fail "xproxyd died on a bad reload"
xpt_stop TERM
[ -z "$(xpt_leftovers)" ] || xpt_fail "left behind: $(xpt_leftovers)"
xpt_ok "bad reload refused, daemon kept running"
