"""Servers for a test, run as a process inside a network namespace.

    ip netns exec NS python -m tests.support.ns_servers SPEC_JSON

SPEC_JSON: {"tcp": [[behaviour, host, port, params], ...], "dns": {"host": H, "behaviour": {...}},
            "udp_silent": [[host, port], ...], "pki": DIR or null, "names": [...]}
Prints one JSON line with the ports bound ({"tcp": [...], "dns": "H:P"}), then serves
until stdin closes (or 60 s pass), prints the peers that connected as one JSON
line, and exits.  Params are JSON; bytes values are given as {"bytes": "hex"}.
"""

from __future__ import annotations

import json
import select
import sys
from pathlib import Path

from tests.support.fake_dns import FakeDNS
from tests.support.hostile import HostileServers, make_pki


def decode(params: dict) -> dict:
    return {k: bytes.fromhex(v["bytes"]) if isinstance(v, dict) and "bytes" in v else v for k, v in params.items()}


def main() -> None:
    spec = json.loads(sys.argv[1])
    servers = HostileServers()
    pki = make_pki(Path(spec["pki"]), spec["names"]) if spec.get("pki") else None
    try:
        bound = []
        for behaviour, host, port, params in spec.get("tcp", []):
            tls = pki.server_context() if params.pop("tls", False) else None
            bound.append(servers.listen(behaviour, host, port, tls=tls, **decode(params)))
        for host, port in spec.get("udp_silent", []):
            servers.silent_udp(host, port)
        dns_spec = spec.get("dns")
        resolver = FakeDNS(dns_spec["behaviour"], host=dns_spec["host"]).__enter__() if dns_spec else None
        print(json.dumps({"tcp": bound, "dns": resolver.address if resolver else None}), flush=True)
        select.select([sys.stdin], [], [], 60)
        print(json.dumps({"peers": servers.peers}), flush=True)
        if resolver:
            resolver.__exit__(None, None, None)
    finally:
        servers.close()


if __name__ == "__main__":
    main()
