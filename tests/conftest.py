"""Fixtures shared by the loopback tests."""

from __future__ import annotations

import socket
import time

import pytest


@pytest.fixture
def blackhole():
    """`127.0.0.3:PORT` whose SYNs are dropped (a listener that never accepts, its
    backlog full): what a censor's DROP looks like, on loopback."""
    server = socket.socket()
    server.bind(("127.0.0.3", 0))
    server.listen(0)
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(server.getsockname())
            fillers.append(filler)
        time.sleep(0.1)
        yield "127.0.0.3:%d" % server.getsockname()[1]
    finally:
        for filler in fillers:
            filler.close()
        server.close()
