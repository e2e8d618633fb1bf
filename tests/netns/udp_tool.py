# SPDX-License-Identifier: GPL-2.0-only
# udp_tool.py - UDP helpers for e2e_udp.sh (python3 standard library only).
#
#   echo ADDR:PORT ...            echo server: answers "<peer-ip> <peer-port> <payload>" from the
#                                 address the datagram was sent to
#   cone ADDR:PORT ALT:PORT       like echo on ADDR:PORT, and also answers from ALT:PORT (a
#                                 second server address: only a full-cone mapping delivers it)
#   ask DST:PORT [N] [BIND]       send N datagrams (default 3) from one socket and print, per
#                                 answer, "<from-ip> <from-port> <text>"; exits 1 without answers
#   many DST:PORT N               N sockets (N client ports) send one datagram each; prints
#                                 "<answered> <direct>": how many got an answer, and how many of
#                                 those the server saw from the client's own address (forwarded
#                                 by the kernel, not through a proxy session)
# Addresses: IPv6 in brackets, "[fd00::1]:7".
import select
import socket
import sys
import time


def parse(s):
    host, _, port = s.rpartition(":")
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    return fam, (host, int(port))


def bound(spec):
    fam, addr = parse(spec)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    return s


def serve(socks, alt=None):
    print("ready", flush=True)
    while True:
        r, _, _ = select.select(socks, [], [])
        for s in r:
            data, peer = s.recvfrom(65535)
            msg = ("%s %d " % (peer[0], peer[1])).encode() + data
            s.sendto(msg, peer)
            if alt is not None:
                alt.sendto(b"alt " + msg, peer)


def ask(dst, n, bind=None):
    fam, addr = parse(dst)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if bind:
        s.bind(parse(bind)[1])
    s.settimeout(2)
    got = 0
    for i in range(n):
        s.sendto(b"ping%d" % i, addr)
        end = time.time() + 2
        while time.time() < end:
            try:
                data, frm = s.recvfrom(65535)
            except socket.timeout:
                break
            print(frm[0], frm[1], data.decode(errors="replace"), flush=True)
            got += 1
            s.settimeout(0.3)  # an "alt" answer may follow
        s.settimeout(2)
    return 0 if got else 1


def many(dst, n):
    fam, addr = parse(dst)
    socks = []
    for i in range(n):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.sendto(b"many%d" % i, addr)
        socks.append(s)
        time.sleep(0.002)
    # The unconnected sockets report 0.0.0.0 as their address: learn the source address the
    # kernel picks for dst from a connected probe socket, to tell a direct answer (the server
    # saw this host) from one through the proxy (the server saw the router).
    probe = socket.socket(fam, socket.SOCK_DGRAM)
    probe.connect(addr)
    me = probe.getsockname()[0]
    probe.close()
    answered = set()
    direct = 0
    end = time.time() + 3
    while time.time() < end and len(answered) < n:
        r, _, _ = select.select(socks, [], [], 0.2)
        for s in r:
            try:
                data, _ = s.recvfrom(65535)
            except BlockingIOError:
                continue
            if s in answered:
                continue
            answered.add(s)
            seen = data.split(b" ", 2)
            if len(seen) >= 2 and seen[0].decode(errors="replace") == me \
                    and int(seen[1]) == s.getsockname()[1]:
                direct += 1
    print(len(answered), direct)
    return 0


def main(argv):
    if argv[1] == "echo":
        serve([bound(a) for a in argv[2:]])
    elif argv[1] == "cone":
        serve([bound(argv[2])], alt=bound(argv[3]))
    elif argv[1] == "ask":
        return ask(argv[2], int(argv[3]) if len(argv) > 3 else 3, argv[4] if len(argv) > 4 else None)
    elif argv[1] == "many":
        return many(argv[2], int(argv[3]))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
