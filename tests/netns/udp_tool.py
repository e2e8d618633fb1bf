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
#   hold DST:PORT BIND [MARK]     a connected socket from BIND (with SO_MARK = MARK if given) to
#                                 an echo server: one exchange, then prints "ready <peer-ip>
#                                 <peer-port>" (as the server saw it) and keeps the socket open,
#                                 one datagram every 0.3 s, until killed; exits 1 without answer
#   grow ADDR:PORT ...            like echo, except that a datagram "want N" is answered with the
#                                 prefix and N pattern bytes (a large reply to a small request)
#   sizes DST:PORT N,N,... [echo|grow] [BIND]
#                                 per size, one datagram of N pattern bytes to a grow server
#                                 (with "grow": a "want N" request, so only the reply is large),
#                                 from BIND if given; checks the answer byte for byte and prints
#                                 per size "<size> ok <peer-ip> <from-ip> <from-port> tries <n>
#                                 <peer-port>" or "<size> lost|mismatch ..."; exits 1 unless
#                                 every size came back intact
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


def pattern(n, seed):
    # Not a repeated short string: a fragment delivered at the wrong offset must not compare
    # equal. Each 4-byte block holds its own index and the seed.
    blocks = (n + 3) // 4
    return b"".join(((i * 2654435761 + seed) & 0xffffffff).to_bytes(4, "big")
                    for i in range(blocks))[:n]


def serve_grow(socks):
    print("ready", flush=True)
    while True:
        r, _, _ = select.select(socks, [], [])
        for s in r:
            data, peer = s.recvfrom(65535)
            prefix = ("%s %d " % (peer[0], peer[1])).encode()
            if data.startswith(b"want "):
                n = int(data.split()[1])
                s.sendto(prefix + pattern(n, n), peer)
            else:
                s.sendto(prefix + data, peer)


def sizes(dst, spec, grow=False, bind=None):
    fam, addr = parse(dst)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if bind:
        s.bind(parse(bind)[1])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    bad = 0
    for n in [int(x) for x in spec.split(",")]:
        want = pattern(n, n)
        ok = None
        for tries in range(1, 4):  # one may be lost on a loaded machine; not three times
            s.sendto(b"want %d" % n if grow else want, addr)
            s.settimeout(2)
            try:
                while True:
                    data, frm = s.recvfrom(65535)
                    head = data.split(b" ", 2)
                    if len(head) == 3 and len(head[2]) == n:
                        break
            except socket.timeout:
                continue
            ok = head[2] == want
            break
        if ok is None:
            print(n, "lost", flush=True)
            bad += 1
        elif not ok:
            print(n, "mismatch from", frm[0], len(data), flush=True)
            bad += 1
        else:
            print(n, "ok", head[0].decode(), frm[0], frm[1], "tries", tries, head[1].decode(),
                  flush=True)
    return 1 if bad else 0


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


def hold(dst, bind, mark=None):
    fam, addr = parse(dst)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if mark is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(mark, 0))
    s.bind(parse(bind)[1])
    s.connect(addr)
    s.settimeout(1)
    seen = None
    for i in range(3):
        s.send(b"hold%d" % i)
        try:
            seen = s.recv(65535).split(b" ", 2)
            break
        except socket.timeout:
            continue
    if seen is None or len(seen) < 2:
        print("no answer", flush=True)
        return 1
    print("ready", seen[0].decode(errors="replace"), seen[1].decode(errors="replace"),
          flush=True)
    s.setblocking(False)
    while True:
        time.sleep(0.3)
        s.send(b"hold")
        try:
            while True:
                s.recv(65535)
        except (BlockingIOError, ConnectionRefusedError):
            pass


def main(argv):
    if argv[1] == "echo":
        serve([bound(a) for a in argv[2:]])
    elif argv[1] == "cone":
        serve([bound(argv[2])], alt=bound(argv[3]))
    elif argv[1] == "ask":
        return ask(argv[2], int(argv[3]) if len(argv) > 3 else 3, argv[4] if len(argv) > 4 else None)
    elif argv[1] == "grow":
        serve_grow([bound(a) for a in argv[2:]])
    elif argv[1] == "sizes":
        return sizes(argv[2], argv[3], len(argv) > 4 and argv[4] == "grow",
                     argv[5] if len(argv) > 5 else None)
    elif argv[1] == "many":
        return many(argv[2], int(argv[3]))
    elif argv[1] == "hold":
        return hold(argv[2], argv[3], argv[4] if len(argv) > 4 else None)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
