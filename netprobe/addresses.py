"""IP addresses and endpoints: parsing, formatting, and what counts as a bogon.

Kept free of I/O so that target parsing, classification and the CLI agree on
one spelling of `IP:PORT` (IPv6 always as `[ADDR]:PORT`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from netprobe.errors import NetprobeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Forged AAAA answers from the Great Firewall fall in Teredo (RFC 4380).
TEREDO = ipaddress.ip_network("2001::/32")


class AddressError(NetprobeError, ValueError):
    """A user-supplied address, endpoint or network that cannot be used."""


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: IPAddress
    port: int

    def __str__(self) -> str:
        return format_endpoint(self.ip, self.port)

    @property
    def family(self) -> int:
        return self.ip.version


def format_endpoint(ip: IPAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def parse_ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise AddressError(f"not an IP address: {text!r}") from None


def parse_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise AddressError(f"not a port number: {value!r}")
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise AddressError(f"not a port number: {value!r}")
    port = int(value)
    if not 1 <= port <= 65535:
        raise AddressError(f"port out of range 1-65535: {value!r}")
    return port


def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """Parse `IP:PORT` or `[IPv6]:PORT`; a bare IP takes `default_port` if given."""
    if not isinstance(text, str):
        raise AddressError(f"not an endpoint: {text!r}")
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise AddressError(f"missing ']' in {text!r}")
        if rest and not rest.startswith(":"):
            raise AddressError(f"expected ':PORT' after ']' in {text!r}")
        ip = parse_ip(host)
        if ip.version != 6:
            raise AddressError(f"brackets are for IPv6 addresses: {text!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        # A bare IPv6 address is fine when a default port applies; with a port it
        # is ambiguous, so insist on brackets as the target-file format does.
        try:
            ip = ipaddress.IPv6Address(text)
        except ValueError:
            raise AddressError(f"IPv6 endpoints are written [ADDR]:PORT: {text!r}") from None
        if default_port is None:
            raise AddressError(f"IPv6 endpoints are written [ADDR]:PORT: {text!r}")
        port_text = None
    else:
        host, sep, port_text = text.partition(":")
        ip = parse_ip(host)
        port_text = port_text if sep else None
    if port_text is None:
        if default_port is None:
            raise AddressError(f"missing ':PORT' in {text!r}")
        return Endpoint(ip, default_port)
    try:
        return Endpoint(ip, parse_port(port_text))
    except AddressError as exc:
        raise AddressError(f"{exc} in {text!r}") from None


def parse_network(text: str) -> IPNetwork:
    if not isinstance(text, str):
        raise AddressError(f"not a CIDR network: {text!r}")
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise AddressError(f"bad CIDR {text!r}: {exc}") from None


def in_networks(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def is_bogon(ip: IPAddress) -> bool:
    """An address no public service can genuinely live at (private, loopback, …)."""
    mapped = ip.version == 6 and ip.ipv4_mapped is not None
    return not ip.is_global or ip.is_multicast or mapped


def is_teredo(ip: IPAddress) -> bool:
    return ip.version == 6 and ip in TEREDO
