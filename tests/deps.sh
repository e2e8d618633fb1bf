# SPDX-License-Identifier: GPL-2.0-only
# deps.sh - install the Debian packages the build, the tests and the demo need (sourced).
# Only what is missing is installed; services are not started by the packages (policy-rc.d),
# so nothing listens on the host after an install.
XP_BUILD_PKGS="meson ninja-build pkg-config gcc make libc6-dev clang llvm clang-15 clang-16
	libbpf-dev bpftool libelf-dev zlib1g-dev libev-dev libinih-dev libssl-dev"
XP_TEST_PKGS="libcmocka-dev libclang-rt-14-dev nginx-light curl iproute2 python3 util-linux
	procps iputils-ping iperf3 wrk qemu-system-x86 busybox-static libzstd-dev"
XP_TEST_PKGS="$XP_TEST_PKGS shadowsocks-libev trojan nftables" # e2e_ss/e2e_trojan servers; bench/outbound/ss.sh (ss-redir TPROXY)
XP_TEST_PKGS="$XP_TEST_PKGS openssl gnutls-bin wget" # test_sniff_*: real TLS/HTTP clients
XP_TEST_PKGS="$XP_TEST_PKGS strace" # xproxyd_check.sh: -t opens no network socket
XP_TEST_PKGS="$XP_TEST_PKGS microsocks dante-server tinyproxy socat" # e2e_socks5, e2e_httpproxy, bench/outbound
XP_TEST_PKGS="$XP_TEST_PKGS python3-cryptography" # xp-conformance.py: shadowsocks reference client and proxy
XP_TEST_PKGS="$XP_TEST_PKGS b3sum" # test_blake3 and the SIP022 reference proxy: the BLAKE3 team's own implementation
XP_TEST_PKGS="$XP_TEST_PKGS bind9-dnsutils tcpdump" # e2e_dnsroute: dig, a capture on the server side
XP_TEST_PKGS="$XP_TEST_PKGS libnghttp2-dev unbound bind9-dnsutils dnsperf" # dns plugin (DoH), test_dns_upstream/e2e_dns: unbound, dig; bench/dns

xp_install_deps() { # PACKAGES...
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
			missing+=("$p")
	done
	[ ${#missing[@]} = 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages: ${missing[*]} (run as root to install them)" >&2
		return 1
	fi
	echo "installing: ${missing[*]}" >&2
	local prc=/usr/sbin/policy-rc.d created=0
	if [ ! -e $prc ]; then
		printf '#!/bin/sh\nexit 101\n' >$prc && chmod +x $prc && created=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
	local rc=$?
	[ $created = 1 ] && rm -f $prc
	return $rc
}
