#!/usr/bin/env python3
"""An on-path DNS injector for the censorship lab: it answers first, with a forged address.

Runs in the censor's namespace.  An AF_PACKET socket on the censor's client-side
veth sees every frame the client sends, before it is forwarded.  For each UDP query
to port 53 of a --dst address (the lab's resolver) asking A or AAAA of a name in
one of the --zone zones, it sends back at once, on the same veth, a forged answer
whose source is the address the query was sent to.  The query itself is not
touched: it is forwarded as usual, so when the real resolver answers, that genuine
answer arrives second — the racing pair an on-path injector (the GFW's, for one)
leaves behind.

Why only --dst: a query to the DNS canary (an address running no DNS server) is
answered by an ICMP port unreachable within a millisecond in the lab, before this
Python injector can answer, and the canary probe stops at the first ICMP error.

The DNS message is built with dnspython; the Ethernet, IPv4/IPv6 and UDP headers
(with their checksums) with struct.

    python tests/lab/dns_injector.py --iface c-client --dst 10.53.0.53 --dst fd53::53 \
        --zone telegram.lab --a 10.99.99.99 --aaaa fd99::99

Prints READY (flushed) once the socket is bound, then one line per injected answer.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import struct
import sys

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4  # sll_pkttype of frames this host sends (our own injections among them)
IPPROTO_UDP = 17
TTL = 300


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_datagram(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header + payload, checksummed over the IPv4 or IPv6 pseudo-header (by address length)."""
    length = 8 + len(payload)
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, length)
    else:
        pseudo = src + dst + struct.pack("!I3xB", length, IPPROTO_UDP)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    csum = checksum(pseudo + header + payload) or 0xFFFF  # 0 means "no checksum": send all ones
    return struct.pack("!HHHH", sport, dport, length, csum) + payload


def ipv4_packet(src: bytes, dst: bytes, udp: bytes) -> bytes:
    ident = int.from_bytes(os.urandom(2), "big")
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident, 0x4000, 64, IPPROTO_UDP, 0, src, dst)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + udp


def ipv6_packet(src: bytes, dst: bytes, udp: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(udp), IPPROTO_UDP, 64, src, dst) + udp


def parse_query(frame: bytes):
    """(ethertype, src_mac, dst_mac, src_ip, dst_ip, sport, dns payload) of a UDP datagram to port 53, or None."""
    if len(frame) < 14:
        return None
    dst_mac, src_mac = frame[:6], frame[6:12]
    (ethertype,) = struct.unpack("!H", frame[12:14])
    packet = frame[14:]
    if ethertype == ETH_P_IP and len(packet) >= 20:
        ihl = (packet[0] & 0x0F) * 4
        (total,) = struct.unpack("!H", packet[2:4])
        (frag,) = struct.unpack("!H", packet[6:8])
        if packet[9] != IPPROTO_UDP or frag & 0x3FFF:  # not UDP, or a fragment
            return None
        src, dst, udp = packet[12:16], packet[16:20], packet[ihl:total]
    elif ethertype == ETH_P_IPV6 and len(packet) >= 40:
        (plen,) = struct.unpack("!H", packet[4:6])
        if packet[6] != IPPROTO_UDP:  # extension headers: not worth it here
            return None
        src, dst, udp = packet[8:24], packet[24:40], packet[40:40 + plen]
    else:
        return None
    if len(udp) < 8:
        return None
    sport, dport, length = struct.unpack("!HHH", udp[:6])
    if dport != 53:
        return None
    return ethertype, src_mac, dst_mac, src, dst, sport, udp[8:length]


class Injector:
    def __init__(self, zones: list[str], answers: dict[int, str], destinations: list[str]):
        self.zones = [dns.name.from_text(z) for z in zones]
        self.answers = answers  # rdtype -> forged address
        self.destinations = {ipaddress.ip_address(d).packed for d in destinations}

    def forged_answer(self, payload: bytes) -> tuple[bytes, str] | None:
        """The forged DNS answer to a query (wire, description), or None to stay out of it."""
        try:
            query = dns.message.from_wire(payload)
        except dns.exception.DNSException:
            return None
        if query.flags & dns.flags.QR or query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            return None
        question = query.question[0]
        forged = self.answers.get(question.rdtype)
        if forged is None or question.rdclass != dns.rdataclass.IN:
            return None
        if not any(question.name.is_subdomain(z) for z in self.zones):
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA | dns.flags.AA
        response.answer.append(dns.rrset.from_text(question.name, TTL, "IN", question.rdtype, forged))
        return response.to_wire(), f"{question.name} {dns.rdatatype.to_text(question.rdtype)} -> {forged}"

    def handle(self, frame: bytes) -> tuple[bytes, str] | None:
        """The frame to send back for a captured one, or None."""
        parsed = parse_query(frame)
        if parsed is None:
            return None
        ethertype, src_mac, dst_mac, src, dst, sport, payload = parsed
        if dst not in self.destinations:
            return None
        answer = self.forged_answer(payload)
        if answer is None:
            return None
        wire, what = answer
        udp = udp_datagram(dst, src, 53, sport, wire)  # from the address the query was sent to
        packet = ipv4_packet(dst, src, udp) if ethertype == ETH_P_IP else ipv6_packet(dst, src, udp)
        where = f"{ipaddress.ip_address(src)}:{sport} asked {ipaddress.ip_address(dst)}"
        # Back to the client: its MAC is the destination, ours (the query's destination MAC) the source.
        return src_mac + dst_mac + struct.pack("!H", ethertype) + packet, f"{where}: {what}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iface", required=True, help="the interface the client's queries arrive on")
    parser.add_argument("--dst", action="append", required=True,
                        help="answer queries sent to this address (the resolver); repeatable")
    parser.add_argument("--zone", action="append", required=True, help="answer names in this zone; repeatable")
    parser.add_argument("--a", required=True, help="the forged IPv4 address")
    parser.add_argument("--aaaa", required=True, help="the forged IPv6 address")
    args = parser.parse_args(argv)
    injector = Injector(args.zone, {dns.rdatatype.A: str(ipaddress.IPv4Address(args.a)),
                                    dns.rdatatype.AAAA: str(ipaddress.IPv6Address(args.aaaa))}, args.dst)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, ETH_P_ALL))
    print(f"READY sniffing {args.iface}", flush=True)
    while True:
        frame, address = sock.recvfrom(65535)
        if address[2] == PACKET_OUTGOING:
            continue
        out = injector.handle(frame)
        if out is not None:
            sock.send(out[0])
            print(f"injected {out[1]}", flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
