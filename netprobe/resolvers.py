"""Which DNS resolvers a run asks: the user's --resolver, else the system's."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from netprobe.addresses import AddressError, Endpoint, parse_endpoint
from netprobe.errors import NetprobeError

RESOLV_CONF = "/etc/resolv.conf"


class ResolverError(NetprobeError, ValueError):
    """No usable resolver; the message is one line for the user."""


@dataclass(frozen=True)
class DohResolver:
    """A DNS-over-HTTPS resolver (RFC 8484), to compare with the local one."""

    url: str

    def __str__(self) -> str:
        return self.url


def parse_resolver(text: str) -> Endpoint | DohResolver:
    if text.lower().startswith("https://"):
        parts = urlsplit(text)
        try:
            parts.port
        except ValueError:
            raise ResolverError(f"--resolver: bad port in {text!r}") from None
        if not parts.hostname:
            raise ResolverError(f"--resolver: no host in {text!r}")
        return DohResolver(text)
    if "://" in text:
        raise ResolverError(f"--resolver: only https:// URLs (DNS over HTTPS) are supported: {text!r}")
    try:
        return parse_endpoint(text, default_port=53)
    except AddressError as exc:
        raise ResolverError(f"--resolver: {exc} (expected IP or IP:PORT, IPv6 as [ADDR]:PORT)") from None


def system_resolvers(path: str = RESOLV_CONF) -> tuple[Endpoint, ...]:
    """The `nameserver` lines of resolv.conf; zone-scoped IPv6 entries are skipped."""
    found = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver" and "%" not in words[1]:
                    try:
                        found.append(parse_endpoint(words[1], default_port=53))
                    except AddressError:
                        continue
    except OSError as exc:
        raise ResolverError(f"cannot read {path}: {exc.strerror}; pass --resolver IP") from None
    if not found:
        raise ResolverError(f"{path} names no nameserver; pass --resolver IP")
    return tuple(dict.fromkeys(found))


def choose_resolvers(given: tuple[str, ...]) -> tuple[Endpoint | DohResolver, ...]:
    if given:
        return tuple(dict.fromkeys(parse_resolver(text) for text in given))
    return system_resolvers()
