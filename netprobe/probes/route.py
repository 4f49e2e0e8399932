"""Does this machine have a route to an address at all?

connect() on a UDP socket consults the routing table and sends nothing, so a
failure here is about this vantage point (no IPv6, no default route), never
about the network path: such probes are inconclusive, not blocked.
"""

from __future__ import annotations

import socket

from netprobe.addresses import Endpoint


def local_route_error(endpoint: Endpoint) -> OSError | None:
    family = socket.AF_INET6 if endpoint.family == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((str(endpoint.ip), endpoint.port))
    except OSError as exc:
        return exc
    return None
