#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""capture_hellos.py OUTDIR - record the first bytes real clients send, for the sniffer tests.

For each client a fresh recorder listens on 127.0.0.1 (an ephemeral port), accepts one
connection, keeps the first bytes (a whole TLS ClientHello, or HTTP request headers) and
closes. The client's handshake then fails, which is expected. Every client is asked for its
own name (and ALPN, where it lets us choose), so a sample cannot pass by carrying another's.

Writes OUTDIR/NN-<client>.bin and OUTDIR/manifest.tsv, one line per sample:
    file <TAB> tls|http <TAB> expected name <TAB> expected ALPN ("-": none asked for)
A client binary that is missing, or a client that sends nothing, is an error (exit 1): every
client used here is a Debian package (curl, openssl, gnutls-bin, wget; python3's ssl module).
"""
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import http.client

TIMEOUT = 10.0
LIMIT = 70000  # more than any hello the parsers accept

PACKAGES = {"curl": "curl", "openssl": "openssl", "gnutls-cli": "gnutls-bin", "wget": "wget"}


def recv_exact(conn, n, buf):
    while len(buf) < n:
        chunk = conn.recv(min(65536, n - len(buf)))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_tls_hello(conn, buf=b""):
    """TLS records until the first Handshake message is complete (or the peer stops)."""
    hs = b""
    try:
        while len(buf) < LIMIT:
            buf = recv_exact(conn, len(buf) + 5, buf)
            rlen = struct.unpack("!H", buf[-2:])[0]
            buf = recv_exact(conn, len(buf) + rlen, buf)
            if buf[-5 - rlen] != 22:
                break
            hs += buf[-rlen:] if rlen else b""
            if len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                break
    except (EOFError, socket.timeout, ConnectionError):
        pass
    return buf


def read_http_head(conn):
    buf = b""
    try:
        while b"\r\n\r\n" not in buf and len(buf) < LIMIT:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (socket.timeout, ConnectionError):
        pass
    return buf


class Recorder:
    """One listener, one connection. mode: tls, http, or connect (an HTTP CONNECT answered
    with 200, then the TLS hello that follows; both are kept)."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.got = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            conn, _ = self.sock.accept()
        except socket.timeout:
            return
        conn.settimeout(TIMEOUT)
        with conn:
            if self.mode == "tls":
                self.got.append(read_tls_hello(conn))
            elif self.mode == "http":
                self.got.append(read_http_head(conn))
            else:
                head = read_http_head(conn)
                self.got.append(head)
                if head.startswith(b"CONNECT "):
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.got.append(read_tls_hello(conn))
        self.sock.close()

    def wait(self):
        self.thread.join(TIMEOUT + 5)
        return self.got


def run_client(argv):
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=TIMEOUT + 5, check=False)
    except subprocess.TimeoutExpired:
        pass


def python_tls(port, name, alpn):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            with ctx.wrap_socket(s, server_hostname=name):
                pass
    except (ssl.SSLError, OSError):
        pass


def python_http(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        c.putrequest("POST", "/submit?x=1", skip_host=True)
        c.putheader("host", name)  # lower-case on purpose: names are case-insensitive
        c.putheader("Content-Length", "3")
        c.endheaders(b"a=b")
        c.getresponse()
    except (http.client.HTTPException, OSError):
        pass
    finally:
        c.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    missing = [b for b in PACKAGES if shutil.which(b) is None]
    if missing:
        for b in missing:
            print(f"capture: client '{b}' is missing: install the Debian package "
                  f"'{PACKAGES[b]}' (tests/deps.sh)", file=sys.stderr)
        return 1

    T = ".sniff.test"
    # (label, recorder mode, how to run the client, [(kind, name, alpn) per recorded part])
    cases = [
        ("curl-tls", "tls",
         lambda p: run_client(["curl", "-sk", "--http1.1", "--max-time", "5", "--resolve",
                               f"curl{T}:{p}:127.0.0.1", f"https://curl{T}:{p}/"]),
         [("tls", f"curl{T}", "http/1.1")]),
        ("curl-h2", "tls",
         lambda p: run_client(["curl", "-sk", "--http2", "--max-time", "5", "--resolve",
                               f"Curl-H2{T}:{p}:127.0.0.1", f"https://Curl-H2{T}:{p}/"]),
         [("tls", f"curl-h2{T}", "h2")]),
        ("openssl", "tls",
         lambda p: run_client(["openssl", "s_client", "-connect", f"127.0.0.1:{p}",
                               "-servername", f"openssl{T}", "-alpn", "h2,http/1.1"]),
         [("tls", f"openssl{T}", "h2")]),
        ("openssl-tls12", "tls",
         lambda p: run_client(["openssl", "s_client", "-tls1_2", "-connect",
                               f"127.0.0.1:{p}", "-servername", f"tls12.openssl{T}"]),
         [("tls", f"tls12.openssl{T}", "-")]),
        ("gnutls", "tls",
         lambda p: run_client(["gnutls-cli", "--insecure", "-p", str(p),
                               f"--sni-hostname=gnutls{T}", "--alpn=spdy/3.1",
                               "--alpn=http/1.1", "127.0.0.1"]),
         [("tls", f"gnutls{T}", "spdy/3.1")]),
        ("python-ssl", "tls",
         lambda p: python_tls(p, f"python{T}", ["acme-tls/1", "http/1.1"]),
         [("tls", f"python{T}", "acme-tls/1")]),
        # wget has no --resolve: it goes through the recorder as an HTTPS proxy, which yields
        # its CONNECT request and then its ClientHello. Whether wget offers ALPN depends on
        # its build, so no ALPN is asserted ("*").
        ("wget-tls", "connect",
         lambda p: run_client(["wget", "-q", "-O", "/dev/null", "--tries=1", "--timeout=5",
                               "--no-check-certificate", "-e", "use_proxy=yes", "-e",
                               f"https_proxy=http://127.0.0.1:{p}",
                               f"https://wget{T}:8443/x"]),
         [("http", f"wget{T}", "-"), ("tls", f"wget{T}", "*")]),
        ("curl-http", "http",
         lambda p: run_client(["curl", "-s", "--max-time", "5", "--resolve",
                               f"curl-http{T}:{p}:127.0.0.1", f"http://curl-http{T}:{p}/a"]),
         [("http", f"curl-http{T}", "-")]),
        ("curl-head", "http",
         lambda p: run_client(["curl", "-sI", "--max-time", "5", "-H",
                               f"Host: head{T}", f"http://127.0.0.1:{p}/"]),
         [("http", f"head{T}", "-")]),
        ("curl-proxy", "http",
         lambda p: run_client(["curl", "-s", "--max-time", "5", "-x", f"http://127.0.0.1:{p}",
                               f"http://absolute{T}:8080/path?q=1"]),
         [("http", f"absolute{T}", "-")]),
        ("curl-connect", "http",
         lambda p: run_client(["curl", "-s", "--max-time", "5", "-x", f"http://127.0.0.1:{p}",
                               f"https://connect{T}/"]),
         [("http", f"connect{T}", "-")]),
        ("wget-http", "http",
         lambda p: run_client(["wget", "-q", "-O", "/dev/null", "--tries=1", "--timeout=5",
                               "-e", "use_proxy=yes", "-e", f"http_proxy=http://127.0.0.1:{p}",
                               f"http://wget-http{T}/index.html"]),
         [("http", f"wget-http{T}", "-")]),
        ("python-http", "http", lambda p: python_http(p, f"python-http{T}"),
         [("http", f"python-http{T}", "-")]),
    ]

    lines = []
    failed = 0
    for i, (label, mode, client, expect) in enumerate(cases):
        rec = Recorder(mode)
        client(rec.port)
        got = rec.wait()
        if len(got) < len(expect) or not all(got[: len(expect)]):
            print(f"capture: {label}: the client sent nothing usable "
                  f"({[len(g) for g in got]} bytes)", file=sys.stderr)
            failed += 1
            continue
        for j, (kind, name, alpn) in enumerate(expect):
            fname = f"{i:02d}-{label}{'-' + str(j) if len(expect) > 1 else ''}.bin"
            with open(os.path.join(out, fname), "wb") as f:
                f.write(got[j])
            lines.append(f"{fname}\t{kind}\t{name}\t{alpn}\n")
    with open(os.path.join(out, "manifest.tsv"), "w") as f:
        f.writelines(lines)
    print(f"capture: {len(lines)} samples in {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
