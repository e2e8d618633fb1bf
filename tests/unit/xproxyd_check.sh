#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# xproxyd_check.sh XPROXYD PLUGIN_DIR: `xproxyd -t` creates (and destroys) every outbound,
# [dns] and [sniff] instance, so option values a plugin only rejects in instance_new (a CA file
# that is missing, a server name that does not resolve, a `via` naming no outbound) fail the
# check with file:line, section and plugin, and a good file passes. No root, no namespace:
# -t starts nothing (no loop, no listener, no datapath).
set -u
XPROXYD=${1:?xproxyd}
PLUGINS=${2:?plugin directory}
TMP=$(mktemp -d /tmp/xpcheck.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
# A name that must not resolve: bounded, whatever resolver the machine has.
export RES_OPTIONS="timeout:1 attempts:1"
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# check WANT_RC DESC FILE [PATTERN...]: run -t on FILE, want the exit code and every pattern
check() {
	local want=$1 what=$2 file=$3 out rc pat
	shift 3
	out=$(timeout 30 "$XPROXYD" -t -c "$file" -P "$PLUGINS" -l warn 2>&1)
	rc=$?
	if [ "$rc" != "$want" ]; then
		fail "$what: exit $rc, want $want; output:"$'\n'"$out"
		return
	fi
	for pat in "$@"; do
		if ! grep -qE -- "$pat" <<<"$out"; then
			fail "$what: no line matching '$pat' in:"$'\n'"$out"
			return
		fi
	done
	ok "$what"
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj /CN=check.test -keyout "$TMP/key.pem" -out "$TMP/ca.pem" >/dev/null 2>&1 ||
	{ echo "FAIL: openssl could not make a certificate"; exit 1; }

# A configuration with shadowsocks, trojan, socks5, [dns] via an outbound and [sniff]; the
# bad variants below are sed edits of it.
good() {
	cat <<EOC
[global]
lan = lo
log_level = warn

[outbound.plain]
plugin = direct

[outbound.ss]
plugin = shadowsocks
server = 127.0.0.1:8388
method = aes-128-gcm
password = secret

[outbound.tj]
plugin = trojan
server = 127.0.0.1:443
password = secret
sni = check.test
ca_file = $TMP/ca.pem

[outbound.s5]
plugin = socks5
server = 127.0.0.1:1080

[dns]
upstream = tcp://127.0.0.1:53 via s5

[sniff]
plugins = tls, http

[route]
rule = dst-cidr:10.1.2.0/24, ss
rule = domain-suffix:example.test, tj
fallback = DIRECT
EOC
}

good >"$TMP/good.ini"
check 0 "a good file with shadowsocks, trojan, socks5, [dns] via an outbound, [sniff]" \
	"$TMP/good.ini" 'configuration OK: 4 outbounds'

# -t starts nothing: no socket is bound or listens (every server above is an address, so the
# instances resolve nothing either). LeakSanitizer cannot run under ptrace: off for this run.
if command -v strace >/dev/null; then
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -qq -o "$TMP/trace" \
		-e trace=socket,bind,listen,connect "$XPROXYD" -t -c "$TMP/good.ini" -P "$PLUGINS" \
		-l warn >/dev/null 2>&1
	if [ ! -f "$TMP/trace" ]; then
		fail "-t under strace: no trace written"
	elif grep -E 'bind\(|listen\(|connect\(|socket\(AF_INET' "$TMP/trace" >/dev/null; then
		fail "-t made network sockets:"$'\n'"$(grep -E 'bind|listen|connect|AF_INET' "$TMP/trace")"
	else
		ok "-t binds, listens and connects nothing ($(grep -c 'socket(' "$TMP/trace") sockets, none of them IP)"
	fi
else
	echo "NOT CHECKED: no strace, so whether -t opens sockets is not checked (tests/deps.sh installs it)"
fi

# a [group.NAME] as a rule target (the rule compiler gets it an id as for an outbound)
{
	sed 's#^rule = dst-cidr:10.1.2.0/24, ss#&\nrule = dst-cidr:10.1.3.0/24, pool#' "$TMP/good.ini"
	printf '\n[group.pool]\nmembers = ss, s5\npolicy = fallback\ncheck_target = 127.0.0.1:9\n'
} >"$TMP/group.ini"
grep -q '^rule = dst-cidr:10.1.3.0/24, pool' "$TMP/group.ini" || fail "test edit: group rule"
check 0 "a rule whose target is a [group.NAME]" "$TMP/group.ini" 'configuration OK: 4 outbounds, 3 rules'

# trojan: the CA file is only opened by instance_new
sed "s#^ca_file = .*#ca_file = $TMP/missing.pem#" "$TMP/good.ini" >"$TMP/noca.ini"
line=$(grep -n '^\[outbound.tj\]' "$TMP/noca.ini" | cut -d: -f1)
check 1 "trojan with a missing CA file" "$TMP/noca.ini" \
	"noca.ini:$line: \[outbound\.tj\] trojan: ca_file .*missing\.pem.*cannot load"

# shadowsocks: a server name that does not resolve (instance_new resolves it)
sed 's#^server = 127.0.0.1:8388#server = nosuch.invalid:8388#' "$TMP/good.ini" >"$TMP/nores.ini"
line=$(grep -n '^\[outbound.ss\]' "$TMP/nores.ini" | cut -d: -f1)
check 1 "shadowsocks with a server name that does not resolve" "$TMP/nores.ini" \
	"nores.ini:$line: \[outbound\.ss\] shadowsocks: .*nosuch\.invalid.*cannot resolve"

# the file:line line itself says why (the plugin's own error line), not just errno
sed 's#^password = secret#password = #' "$TMP/good.ini" >"$TMP/nopw.ini"
line=$(grep -n '^\[outbound.ss\]' "$TMP/nopw.ini" | cut -d: -f1)
check 1 "shadowsocks with an empty password" "$TMP/nopw.ini" \
	"nopw.ini:$line: \[outbound\.ss\] shadowsocks: password: must not be empty"

# shadowsocks: an unknown cipher (the option table's choice list)
sed 's#^method = aes-128-gcm#method = rot13#' "$TMP/good.ini" >"$TMP/cipher.ini"
line=$(grep -n '^method = rot13' "$TMP/cipher.ini" | cut -d: -f1)
check 1 "shadowsocks with an unknown cipher" "$TMP/cipher.ini" "cipher.ini:$line: .*rot13"

# shadowsocks 2022: the password is the base64 PSK of exactly the key length (SIP022 2.1);
# anything else is reported with the section's line, and the value never appears
ss22() { # FILE METHOD PASSWORD
	sed -e "s#^method = aes-128-gcm#method = $2#" -e "s#^password = secret\$#password = $3#" \
		"$TMP/good.ini" >"$1"
	grep -q "^password = $3\$" "$1" || fail "test edit: 2022 password"
}
ss22 "$TMP/psk_ok.ini" 2022-blake3-aes-256-gcm AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
check 0 "shadowsocks 2022 with a 32-byte base64 PSK" "$TMP/psk_ok.ini" 'configuration OK'
ss22 "$TMP/psk_short.ini" 2022-blake3-aes-256-gcm AAECAwQFBgcICQoLDA0ODw==
line=$(grep -n '^\[outbound.ss\]' "$TMP/psk_short.ini" | cut -d: -f1)
check 1 "shadowsocks 2022 with a 16-byte PSK for aes-256" "$TMP/psk_short.ini" \
	"psk_short.ini:$line: \[outbound\.ss\] shadowsocks: " \
	'2022-blake3-aes-256-gcm needs a base64 PSK of exactly 32 bytes.*decodes to 16 bytes'
out=$(timeout 30 "$XPROXYD" -t -c "$TMP/psk_short.ini" -P "$PLUGINS" 2>&1)
grep -qF AAECAwQFBgcICQoLDA0ODw "$TMP/psk_short.ini" && ! grep -qF AAECAwQFBgcICQoLDA0ODw <<<"$out" ||
	fail "the PSK appears in the -t output"
ss22 "$TMP/psk_pw.ini" 2022-blake3-aes-128-gcm secret-password
line=$(grep -n '^\[outbound.ss\]' "$TMP/psk_pw.ini" | cut -d: -f1)
check 1 "shadowsocks 2022 with a password instead of a PSK" "$TMP/psk_pw.ini" \
	"psk_pw.ini:$line: \[outbound\.ss\] shadowsocks: " \
	'2022-blake3-aes-128-gcm needs a base64 PSK of 16 bytes.*not base64'
ss22 "$TMP/psk_multi.ini" 2022-blake3-aes-128-gcm AAECAwQFBgcICQoLDA0ODw==:AAECAwQFBgcICQoLDA0ODw==
line=$(grep -n '^\[outbound.ss\]' "$TMP/psk_multi.ini" | cut -d: -f1)
check 1 "shadowsocks 2022 with several PSKs (SIP023)" "$TMP/psk_multi.ini" \
	"psk_multi.ini:$line: \[outbound\.ss\] shadowsocks: " 'identity-header extension \(SIP023\)'

# [dns]: an upstream via an outbound the file does not have (the plugin asks config_get)
sed 's#via s5$#via nowhere#' "$TMP/good.ini" >"$TMP/via.ini"
line=$(grep -n '^\[dns\]' "$TMP/via.ini" | cut -d: -f1)
check 1 "[dns] upstream via a missing outbound" "$TMP/via.ini" \
	"via.ini:$line: \[dns\] plugin dns: " 'no \[outbound\.nowhere\] section'

# every failure in one run, not only the first
sed -e "s#^ca_file = .*#ca_file = $TMP/missing.pem#" \
	-e 's#^server = 127.0.0.1:8388#server = nosuch.invalid:8388#' \
	-e 's#via s5$#via nowhere#' "$TMP/good.ini" >"$TMP/all.ini"
check 1 "three failing instances are all reported" "$TMP/all.ini" \
	'\[outbound\.tj\] trojan: ' '\[outbound\.ss\] shadowsocks: ' '\[dns\] plugin dns: '

[ $fails = 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all xproxyd -t checks passed"
