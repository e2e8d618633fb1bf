#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# dp_netns.sh TEST_BINARY [ARGS...] - build client / router / server network namespaces and run
# the datapath namespace test (test_dp_netns) inside the router.
#
#   client  eth0 10.9.1.2/24 fd00:9:1::2/64, default via the router
#   router  lan0 10.9.1.1/24 fd00:9:1::1/64 (LAN), wan0 10.9.0.1/24 fd00:9::1/64 (WAN),
#           forwarding on, 10.9.2-4.0/24 and fd00:9:2-4::/64 via the server
#   server  eth0 10.9.0.2/24 fd00:9::2/64; 10.9.{2,3,4}.1 and fd00:9:{2,3,4}::1 on lo
#
# Namespace names carry a per-run prefix, so parallel runs never collide; the trap removes
# them (and stops the test) on any exit.
set -u

bin=${1:?usage: dp_netns.sh TEST_BINARY [ARGS...]}
shift

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF)"
	exit 77
fi
for tool in ip tc; do
	command -v $tool >/dev/null || { echo "SKIP: $tool (iproute2) not installed"; exit 77; }
done

prefix="xpt-dpns-$$-$RANDOM"
cli=$prefix-c
rtr=$prefix-r
srv=$prefix-s
pid=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	for ns in "$cli" "$rtr" "$srv"; do
		ip netns del "$ns" 2>/dev/null
	done
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if ! ip netns add "$cli" 2>/dev/null; then
	echo "SKIP: cannot create network namespaces"
	exit 77
fi
set -e
ip netns add "$rtr"
ip netns add "$srv"
# No DAD anywhere: a tentative link-local address cannot send neighbour solicitations, so the
# first second of IPv6 traffic would depend on timing.
for ns in "$cli" "$rtr" "$srv"; do
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 \
		net.ipv6.conf.default.accept_dad=0
done

ip -n "$rtr" link add lan0 type veth peer name eth0 netns "$cli"
ip -n "$rtr" link add wan0 type veth peer name eth0 netns "$srv"
for ns in "$cli" "$rtr" "$srv"; do
	ip -n "$ns" link set lo up
done

ip -n "$cli" addr add 10.9.1.2/24 dev eth0
ip -n "$cli" addr add fd00:9:1::2/64 dev eth0 nodad
ip -n "$cli" link set eth0 up
ip -n "$cli" route add default via 10.9.1.1
ip -n "$cli" -6 route add default via fd00:9:1::1

ip -n "$rtr" addr add 10.9.1.1/24 dev lan0
ip -n "$rtr" addr add fd00:9:1::1/64 dev lan0 nodad
ip -n "$rtr" addr add 10.9.0.1/24 dev wan0
ip -n "$rtr" addr add fd00:9::1/64 dev wan0 nodad
ip -n "$rtr" link set lan0 up
ip -n "$rtr" link set wan0 up
ip netns exec "$rtr" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
for n in 2 3 4; do
	ip -n "$rtr" route add 10.9.$n.0/24 via 10.9.0.2
	ip -n "$rtr" -6 route add fd00:9:$n::/64 via fd00:9::2
done

ip -n "$srv" addr add 10.9.0.2/24 dev eth0
ip -n "$srv" addr add fd00:9::2/64 dev eth0 nodad
ip -n "$srv" link set eth0 up
for n in 2 3 4; do
	ip -n "$srv" addr add 10.9.$n.1/32 dev lo
	ip -n "$srv" addr add fd00:9:$n::1/128 dev lo
done
ip -n "$srv" route add default via 10.9.0.1
ip -n "$srv" -6 route add default via fd00:9::1
set +e

ip netns exec "$rtr" "$bin" --client "$cli" --server "$srv" "$@" &
pid=$!
wait "$pid"
rc=$?
pid=
[ $rc -eq 0 ] || exit $rc

# Without CAP_SYS_ADMIN, dp_create() must refuse with one clear line.
if command -v setpriv >/dev/null; then
	ip netns exec "$rtr" setpriv --bounding-set -sys_admin \
		"$bin" --client "$cli" --server "$srv" --mode nocaps
	rc=$?
else
	echo "setpriv (util-linux) not installed: the missing-capability case is not run"
fi
exit $rc
