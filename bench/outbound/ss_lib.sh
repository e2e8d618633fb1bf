# SPDX-License-Identifier: GPL-2.0-only
# bench/outbound/ss_lib.sh - what ss.sh and ss_conn.sh share: the shadowsocks server, xproxyd's
# config for it, ss-redir with its TPROXY plumbing (the baseline), and the reset between trials.
# Source it after tests/netns/lib.sh, xpt_init and xpt_topology; METHOD must be set.
SS=10.1.5.2
PW=bench-ss-password

# ssb_server: ss-server in the server namespace, on $SS:8388
ssb_server() {
	ip netns exec "$XPT-srv" ss-server -s $SS -p 8388 -k $PW -m "$METHOD" --no-delay \
		>"$XPT_TMP/ss-server.log" 2>&1 &
	XPT_PIDS="$XPT_PIDS $!"
	sleep 0.5
}

# ssb_plugins DIR BUILD_PLUGINS: xproxyd loads every plugin in its plugin_dir; give it the
# ones the config uses, as an install with only the shadowsocks outbound would have
ssb_plugins() {
	local so
	mkdir -p "$1"
	for so in direct block shadowsocks; do ln -s "$2/$so.so" "$1/"; done
}

# ssb_config FILE: the shadowsocks outbound for 10.1.2.0/24, one worker per CPU (like a
# default install), log level info
ssb_config() {
	{
		printf '[outbound.ss]\nplugin = shadowsocks\nserver = %s:8388\nmethod = %s\n' $SS "$METHOD"
		printf 'password = %s\n\n' $PW
		printf '[route]\nrule = dst-cidr:10.1.2.0/24, ss\nfallback = DIRECT\n'
	} | xpt_config "$1" "log_level = info"
	sed -i 's/^workers = 2$/workers = 0/' "$1"
}

# ssb_tproxy_routes: TPROXY plumbing for ss-redir as ../shared/bench/peers.sh sets it up
ssb_tproxy_routes() {
	nsr ip rule add fwmark 0x1 lookup 100
	nsr ip route add local 0.0.0.0/0 dev lo table 100
}

# ssb_reset_state: sockets of the previous trial must not shape the next (TIME-WAIT reuse)
ssb_reset_state() {
	local ns
	for ns in cli rtr srv; do
		ip netns exec "$XPT-$ns" ss -K -t state time-wait >/dev/null 2>&1
	done
	sleep 0.3
}

# ssb_redir_up: ss-redir -T in the router, and the nft rules that send the client's TCP to it;
# its pid in SSB_REDIR_PID. SYNs always go to tproxy: the usual "socket transparent 1" rule
# also matched ss-redir's TIME-WAIT sockets and stalled new connections (see ss.sh's header).
ssb_redir_up() {
	ip netns exec "$XPT-rtr" ss-redir -s $SS -p 8388 -b 0.0.0.0 -l 12345 -k $PW \
		-m "$METHOD" -T --no-delay >"$XPT_TMP/ss-redir.log" 2>&1 &
	SSB_REDIR_PID=$!
	XPT_PIDS="$XPT_PIDS $SSB_REDIR_PID"
	for _ in $(seq 1 50); do
		nsr ss -Htln 'sport = :12345' | grep -q . && break
		sleep 0.1
	done
	nsr nft -f - <<NFT
table inet xpb_ss {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "lan0" ip daddr 10.1.2.0/24 tcp flags & (fin|syn|rst|ack) != syn socket transparent 1 meta mark set 0x1 accept
    iifname "lan0" ip daddr 10.1.2.0/24 meta l4proto tcp tproxy ip to :12345 meta mark set 0x1 accept
  }
}
NFT
}

# ssb_redir_down: the nft rules and ss-redir gone
ssb_redir_down() {
	nsr nft delete table inet xpb_ss 2>/dev/null
	kill "$SSB_REDIR_PID" 2>/dev/null
	wait "$SSB_REDIR_PID" 2>/dev/null
	SSB_REDIR_PID=""
}
