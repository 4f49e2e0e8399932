"""Hostile servers on loopback, and helpers to run the real `netprobe` CLI against them.

Everything here listens on 127.0.0.0/8 only.  `HostileServers` runs one asyncio
event loop in a background thread; each listener gets a behaviour:

* `silent`     accept, read and discard, never speak
* `drip`       send `payload` one byte every `interval` seconds
* `endless`    send `prefix`, then `chunk` again and again as fast as the peer reads
* `answer`     send `payload` once, then close
* `silent_udp` a bound UDP socket that never answers (a DNS server that never replies)

With `tls=` the behaviour starts after a completed TLS handshake.  Every
listener, connection and the thread itself end in `close()` (bounded), which
the `hostile_servers` fixtures call as a finalizer.

`loopback_net()` claims a random /22 inside 127.0.0.0/8 so that tests binding
fixed ports (80, 443, 53: the ports the probes use) do not collide with each
other, with another test run, or with anything listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import functools
import ipaddress
import os
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- addresses -----------------------------------------------------------------------------

NET_CLAIMS = Path(tempfile.gettempdir()) / "netprobe-test-nets"
_claimed: list[Path] = []


def _release_claims() -> None:
    for claim in _claimed:
        claim.unlink(missing_ok=True)


def loopback_net() -> ipaddress.IPv4Network:
    """A /22 of 127.0.0.0/8 (never 127.0.x.x) that no other test process holds.

    Claimed with an exclusive file in NET_CLAIMS, so that test runs going on at the
    same time (two checkouts, a helper and the lead) never bind the same ports 53, 80
    and 443 on the same address; a claim whose process is gone is taken over.
    """
    NET_CLAIMS.mkdir(exist_ok=True)
    if not _claimed:
        atexit.register(_release_claims)
    while True:
        net = ipaddress.ip_network(f"127.{random.randint(100, 250)}.{random.randrange(0, 256, 4)}.0/22")
        claim = NET_CLAIMS / str(net).replace("/", "-")
        try:
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                os.kill(int(claim.read_text() or 0), 0)
                continue  # held by a live process
            except (ProcessLookupError, ValueError):
                claim.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except PermissionError:
                continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        _claimed.append(claim)
        return net


@functools.lru_cache(maxsize=1)
def can_bind_privileged() -> bool:
    """Can this process bind ports below 1024 (root, or CAP_NET_BIND_SERVICE)?"""
    try:
        with socket.socket() as sock:
            sock.bind(("127.255.255.254", 80))
        return True
    except PermissionError:
        return False
    except OSError:
        return True  # in use: permission is not the problem


# --- TLS -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    ca: Path  # PEM of the CA that signed `cert`
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        context.set_alpn_protocols(["http/1.1"])
        return context


def make_pki(directory: Path, names: Iterable[str], *, organization: str = "netprobe test",
             extra_sans: int = 0) -> Pki:
    """A throwaway CA and a leaf certificate for `names` (plus `extra_sans` filler names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("netprobe test CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    names = list(names)
    sans = [x509.DNSName(n) for n in names] + [x509.DNSName(f"filler-{i}.example") for i in range(extra_sans)]
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(name(names[0])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return pki


# --- servers -------------------------------------------------------------------------------

class HostileServers:
    """Listeners with hostile behaviours, served by one event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="hostile-servers", daemon=True)
        self.servers: list[asyncio.base_events.Server] = []
        self.udp: list[socket.socket] = []
        self.connections: set[asyncio.Task] = set()
        self.peers: list[tuple[str, int]] = []  # (address, port) of every client that connected
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def listen(self, behaviour: str, host: str = "127.0.0.1", port: int = 0, *,
               tls: ssl.SSLContext | None = None, **params: Any) -> tuple[str, int]:
        """Start a TCP listener; returns (host, port)."""
        handler = getattr(self, f"_{behaviour}")

        async def tracked(reader, writer):
            self.connections.add(asyncio.current_task())
            self.peers.append(writer.get_extra_info("peername")[:2])
            try:
                await handler(reader, writer, **params)
            except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass  # the peer hung up, or close() ended us: both are the normal end
            finally:
                self.connections.discard(asyncio.current_task())
                writer.transport.abort()

        async def start():
            return await asyncio.start_server(tracked, host, port, ssl=tls, reuse_address=True, backlog=512,
                                              ssl_handshake_timeout=5 if tls else None)

        server = self._call(start())
        self.servers.append(server)
        return host, server.sockets[0].getsockname()[1]

    def silent_udp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        self.udp.append(sock)  # never read: datagrams pile up in the (bounded) kernel buffer
        return host, sock.getsockname()[1]

    # behaviours ------------------------------------------------------------------------

    @staticmethod
    async def _send(writer, data: bytes) -> None:
        """Write and drain; ConnectionResetError once the peer is gone (asyncio would
        otherwise only log every further write)."""
        if writer.transport.is_closing():
            raise ConnectionResetError("the peer hung up")
        writer.write(data)
        await writer.drain()
        # drain() returns at once when the peer reads fast (or is gone under TLS, where the
        # transport does not say so): yield, so that connection_lost can be delivered.
        await asyncio.sleep(0)

    @staticmethod
    async def _silent(reader, writer):
        while await reader.read(65536):
            pass

    @staticmethod
    async def _drip(reader, writer, payload: bytes, interval: float = 0.5):
        for i in range(len(payload)):
            await HostileServers._send(writer, payload[i:i + 1])
            await asyncio.sleep(interval)
        await reader.read(1)

    @staticmethod
    async def _endless(reader, writer, prefix: bytes = b"", chunk: bytes = b"x" * 65536, limit: int = 1 << 32):
        await HostileServers._send(writer, prefix)
        sent = 0
        while sent < limit:
            await HostileServers._send(writer, chunk)
            sent += len(chunk)

    @staticmethod
    async def _answer(reader, writer, payload: bytes, wait_request: bool = True):
        if wait_request:
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            except (asyncio.TimeoutError, asyncio.LimitOverrunError):
                pass
        await HostileServers._send(writer, payload)

    # teardown --------------------------------------------------------------------------

    def close(self) -> None:
        async def stop():
            for server in self.servers:
                server.close()
            for task in list(self.connections):
                task.cancel()
            if self.connections:
                await asyncio.wait(list(self.connections), timeout=2)

        try:
            self._call(stop(), timeout=5)
        finally:
            for sock in self.udp:
                sock.close()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            if not self.thread.is_alive():
                self.loop.close()


# --- target files and the CLI ----------------------------------------------------------------

def toml_list(values: Iterable[Any]) -> str:
    def one(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {one(x)}" for k, x in v.items()) + " }"
        if isinstance(v, (list, tuple)):
            return toml_list(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return str(v)
    return "[" + ", ".join(one(v) for v in values) + "]"


def write_targets(path: Path, *, name: str = "hostile", **keys: Iterable[Any]) -> Path:
    lines = [f'name = "{name}"'] + [f"{key} = {toml_list(values)}" for key, values in keys.items() if values]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def netprobe_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NETPROBE", "FORCE_COLOR", "TTY_", "NO_COLOR", "COLUMNS"))}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def netprobe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "netprobe", *args]


def run_netprobe(*args: str, timeout: float = 30, env: dict[str, str] | None = None,
                 **kwargs: Any) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI to completion (killed after `timeout`); returns (process, wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run(netprobe_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=env or netprobe_env(), cwd=REPO_ROOT, check=False, **kwargs)
    return proc, time.monotonic() - started


def jsonl(text: str) -> list[dict]:
    import json
    return [json.loads(line) for line in text.splitlines() if line.strip()]
