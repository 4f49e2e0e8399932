"""A scriptable DNS server on loopback, for probe tests that need answers no
real resolver would give on demand (bogons, Teredo, silence, truncation).

Behaviour per name: a list of addresses, or one of the rcodes "NXDOMAIN",
"SERVFAIL", "REFUSED", or "silent" (never answer), "truncate" (TC over UDP,
the addresses over TCP), "tcp_reset" (TC over UDP, then reset the TCP query), or a tuple
("race", forged, genuine): two UDP answers, the forged one first, as an on-path
injector racing the real resolver produces; or ("delay", seconds, addresses): the
addresses, but only after `seconds` (a resolver that answers after the deadline); or
("hostile", addresses): the addresses plus a TXT record and a CNAME whose bytes are
terminal escapes, rich markup, a carriage return and invalid UTF-8 (HOSTILE_BYTES).
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import NamedTuple

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TXT
import dns.rcode
import dns.rdatatype
import dns.rrset


HOSTILE_BYTES = b"\x1b[31mDNSEVIL[bold red]x[/]\r\xff\xfe"


class Delayed(NamedTuple):
    seconds: float
    wire: bytes


class FakeDNS:
    def __init__(self, behaviour: dict[str, object], host: str = "127.0.0.1"):
        self.behaviour = {k.rstrip(".").lower(): v for k, v in behaviour.items()}
        for attempt in range(20):  # the UDP port the kernel picked may be taken for TCP
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((host, 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((host, self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
                if attempt == 19:
                    raise
        self.tcp.listen(16)
        self.address = f"{host}:{self.port}"
        self.queries: list[tuple[str, str, str]] = []
        self.late_sent = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]

    def __enter__(self) -> "FakeDNS":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.udp.close()
        self.tcp.close()

    def answer(self, wire: bytes, transport: str) -> bytes | list[bytes] | None | str:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        qtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, qtype, transport))
        behaviour = self.behaviour.get(name, "NXDOMAIN")
        response = dns.message.make_response(query)
        if behaviour == "silent":
            return None
        if isinstance(behaviour, tuple) and behaviour[0] == "hostile":
            return self._hostile(query, behaviour[1])
        if isinstance(behaviour, tuple) and behaviour[0] == "delay":
            _, seconds, addresses = behaviour
            return Delayed(seconds, self._addresses(query, addresses))
        if isinstance(behaviour, tuple):
            _, forged, genuine = behaviour
            return [self._addresses(query, forged), self._addresses(query, genuine)]
        if behaviour in ("truncate", "tcp_reset") and transport == "udp":
            response.flags |= dns.flags.TC
            return response.to_wire()
        if behaviour == "tcp_reset":
            return "reset"
        if behaviour == "truncate":
            behaviour = self.behaviour.get(name + "/tcp", [])
        if isinstance(behaviour, str):
            response.set_rcode(dns.rcode.from_text(behaviour))
            return response.to_wire()
        return self._addresses(query, behaviour)

    @staticmethod
    def _addresses(query: dns.message.Message, addresses: list[str]) -> bytes:
        question = query.question[0]
        qtype = dns.rdatatype.to_text(question.rdtype)
        response = dns.message.make_response(query)
        wanted = [a for a in addresses if (":" in a) == (qtype == "AAAA")]
        if wanted:
            response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", qtype, wanted))
        return response.to_wire(max_size=65535)  # a lying server need not honour the EDNS size

    @classmethod
    def _hostile(cls, query: dns.message.Message, addresses: list[str]) -> bytes:
        response = dns.message.from_wire(cls._addresses(query, addresses))
        question = query.question[0]
        txt = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [HOSTILE_BYTES])
        response.answer.append(dns.rrset.from_rdata(question.name, 300, txt))
        alias = dns.name.Name([HOSTILE_BYTES[:20], b"example", b""])
        cname = dns.rdtypes.ANY.CNAME.CNAME(dns.rdataclass.IN, dns.rdatatype.CNAME, alias)
        response.answer.append(dns.rrset.from_rdata(question.name, 300, cname))
        return response.to_wire(max_size=65535)

    def _serve_udp(self) -> None:
        while not self.stopping.is_set():
            try:
                wire, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            reply = self.answer(wire, "udp")
            if isinstance(reply, Delayed):
                timer = threading.Timer(reply.seconds, self._send_late, (reply.wire, peer))
                timer.daemon = True
                timer.start()
                continue
            for datagram in ([reply] if isinstance(reply, bytes) else reply or []):
                self.udp.sendto(datagram, peer)

    def _send_late(self, wire: bytes, peer) -> None:
        try:
            self.udp.sendto(wire, peer)
            self.late_sent += 1
        except OSError:
            pass  # closed meanwhile

    def _serve_tcp(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    length = struct.unpack("!H", conn.recv(2))[0]
                    wire = b""
                    while len(wire) < length:
                        wire += conn.recv(length - len(wire))
                    reply = self.answer(wire, "tcp")
                    if reply == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    elif isinstance(reply, bytes):
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    continue
