#!/usr/bin/env python3
"""A transparent interceptor's own server: what answers when every TCP connection lands on one box.

Modelled on a real network that fooled netprobe (issue 18): nat REDIRECT takes every forwarded
TCP connection to this server, which answers in place of whatever the client wanted.

    python tests/lab/canned_proxy.py --mode peek --listen 0.0.0.0:8800 --listen [::]:8800 \
        --cert keryx.pem --key keryx.key

peek    looks at the first bytes the client sends (without taking them):
          a TLS ClientHello (16 03 ..)  -> a TLS handshake with its own certificate (--cert), then the
                                           same dispatch on the decrypted bytes;
          "GET "                        -> NOT_FOUND (HTTP/1.1 404, `server: keryx`, no body);
          anything else (MTProto too)   -> BAD_REQUEST (HTTP/1.1 400, `connection: close`, no body);
        and ends its side of the connection.
canned  sends BAD_REQUEST the moment the connection is accepted, whatever comes (TLS included),
        and ends its side of the connection.
silent  accepts and never sends a byte.
relay   a split-TCP accelerator: accepts at once, connects to the connection's original destination
        (SO_ORIGINAL_DST, set by the REDIRECT) and relays both ways, byte for byte: the client's
        handshake is the box's, the bytes are the server's.

Every read is bounded (--idle-timeout, MAX_HEAD bytes), every connection lives at most
--max-lifetime seconds; ends on SIGTERM / SIGINT.  Prints READY (flushed) once every socket
listens.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import socketserver
import selectors
import ssl
import struct
import sys
import threading
import time

# Byte for byte what the real interceptor answered (issue 18): a GET, and any other bytes.
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nserver: keryx\r\ncontent-length: 0\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
MAX_HEAD = 16 * 1024
PEEK = 4          # enough to tell "GET " and a TLS record header apart
MODES = ("peek", "canned", "silent", "relay")
SO_ORIGINAL_DST = 80          # linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h) too
MAX_RELAYED = 1024 * 1024     # bytes per direction


def parse_listen(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


def is_client_hello(first: bytes) -> bool:
    """A TLS handshake record (content type 22, version 3.x)."""
    return len(first) >= 2 and first[0] == 0x16 and first[1] == 0x03


def answer_for(first: bytes) -> bytes:
    """What the interceptor answers to a plain (or decrypted) stream that starts with FIRST."""
    return NOT_FOUND if first.startswith(b"GET ") else BAD_REQUEST


def peek_first(sock: socket.socket, deadline: float) -> bytes:
    """The first PEEK bytes the client sent (fewer if it stops or goes away), left in the socket."""
    first = b""
    while len(first) < PEEK and time.monotonic() < deadline:
        sock.settimeout(max(0.01, min(0.05, deadline - time.monotonic())))
        try:
            first = sock.recv(PEEK, socket.MSG_PEEK)
        except TimeoutError:
            continue
        if not first:
            break
        if len(first) < PEEK:
            time.sleep(0.01)  # more may be on its way: MSG_PEEK returns what is there
    return first


def read_head(sock: socket.socket, data: bytes, deadline: float) -> bytes:
    """The request, from DATA already read: up to the end of an HTTP head for a GET, else whatever
    the client sent at once; bounded by MAX_HEAD and DEADLINE."""
    while len(data) < MAX_HEAD and time.monotonic() < deadline:
        if data and (not data.startswith(b"GET ") or b"\r\n\r\n" in data):
            break
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def drain(sock: socket.socket, deadline: float) -> None:
    """Read and drop until the client goes away (closing with unread data would send a RST)."""
    total = 0
    while total < 1024 * 1024 and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except (TimeoutError, OSError):
            return
        if not chunk:
            return
        total += len(chunk)


def answer(sock: socket.socket, data: bytes, deadline: float) -> None:
    """Send DATA and end our side at once (FIN: the client sees the end of the answer without waiting),
    then read what the client still sends until it goes away."""
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    drain(sock, deadline)


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """Where the client meant to connect before the REDIRECT (conntrack's original destination)."""
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)   # struct sockaddr_in6
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack_from("!H", raw, 2)[0]
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)            # struct sockaddr_in
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack_from("!H", raw, 2)[0]


def relay(client: socket.socket, deadline: float, idle: float) -> None:
    """Connect to the original destination and copy both ways until either side ends, bounded."""
    with socket.create_connection(original_destination(client), timeout=idle) as upstream:
        peers = {client: upstream, upstream: client}
        sent = {client: 0, upstream: 0}
        with selectors.DefaultSelector() as sel:
            for sock in peers:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                ready = sel.select(timeout=min(idle, max(0.01, deadline - time.monotonic())))
                if not ready:
                    return
                for key, _ in ready:
                    data = key.fileobj.recv(65536)
                    if not data or sent[key.fileobj] > MAX_RELAYED:
                        return
                    sent[key.fileobj] += len(data)
                    other = peers[key.fileobj]
                    other.setblocking(True)
                    other.settimeout(idle)
                    other.sendall(data)
                    other.setblocking(False)


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        args = self.server.args
        deadline = time.monotonic() + args.max_lifetime
        idle = min(deadline, time.monotonic() + args.idle_timeout)
        try:
            if args.mode == "silent":
                drain(sock, deadline)
            elif args.mode == "relay":
                relay(sock, deadline, args.idle_timeout)
            elif args.mode == "canned":
                answer(sock, BAD_REQUEST, min(deadline, time.monotonic() + args.idle_timeout))
            else:
                first = peek_first(sock, idle)
                if is_client_hello(first):
                    sock.settimeout(max(0.01, idle - time.monotonic()))
                    sock = self.server.tls.wrap_socket(sock, server_side=True)
                elif not first:
                    return  # the client said nothing (a bare connect) or went away
                request = read_head(sock, b"", idle)
                if request:
                    answer(sock, answer_for(request), min(deadline, time.monotonic() + args.idle_timeout))
        except (OSError, ssl.SSLError):
            pass  # the client went away, or its TLS failed against our certificate (as it should)
        finally:
            with contextlib.suppress(OSError):
                sock.close()


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], args: argparse.Namespace, tls: ssl.SSLContext | None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.args = args
        self.tls = tls
        super().__init__(address, Handler, bind_and_activate=False)
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.server_bind()
        self.server_activate()


def main(args: argparse.Namespace) -> int:
    tls = None
    if args.mode == "peek":
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
    servers = [Server(parse_listen(spec), args, tls) for spec in args.listen]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
               for s in servers]
    for t in threads:
        t.start()
    print("READY", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--listen", action="append", default=[], metavar="ADDR:PORT", help="repeatable")
    parser.add_argument("--cert", help="the interceptor's own certificate chain (peek mode)")
    parser.add_argument("--key")
    parser.add_argument("--idle-timeout", type=float, default=5.0, help="seconds to wait for the client's bytes")
    parser.add_argument("--max-lifetime", type=float, default=30.0, help="seconds a connection may live")
    args = parser.parse_args(argv)
    if args.mode == "peek" and not (args.cert and args.key):
        parser.error("--mode peek needs --cert and --key (its answer to a ClientHello)")
    if not args.listen:
        parser.error("nothing to listen on")
    return args


if __name__ == "__main__":
    sys.exit(main(parse_args()))
