"""Throwaway network namespaces for tests that need a network of their own.

Names start with `npt-` and carry the test process's pid, so they never clash
with the censorship lab (`nplab-*`) or with another test run.  Everything made
here is removed by `Namespaces.close()`, which the fixtures call as a finalizer:
processes started inside (by pid), then the namespaces (their veths go with them).
Nothing here touches the host's own network namespace except creating veth pairs
whose both ends are moved into these namespaces at once.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time

_counter = itertools.count()


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    probe = f"npt-check-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


def sh(*args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc


class Namespaces:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.processes: list[subprocess.Popen] = []

    def add(self, role: str, ipv6: bool = True) -> str:
        name = f"npt-{role}-{os.getpid()}-{next(_counter)}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        if not ipv6:
            for key in ("all", "default", "lo"):
                sh("ip", "netns", "exec", name, "sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_addr: list[str], b: str, b_addr: list[str]) -> tuple[str, str]:
        """A veth pair between namespaces a and b, both ends up, with these addresses (CIDR)."""
        n = next(_counter)
        end_a, end_b = f"npa{os.getpid() % 10000}x{n}", f"npb{os.getpid() % 10000}x{n}"
        sh("ip", "link", "add", end_a, "netns", a, "type", "veth", "peer", "name", end_b, "netns", b)
        for ns, end, addresses in ((a, end_a, a_addr), (b, end_b, b_addr)):
            for address in addresses:
                extra = ["nodad"] if ":" in address else []
                sh("ip", "-n", ns, "addr", "add", address, "dev", end, *extra)
            sh("ip", "-n", ns, "link", "set", end, "up")
        return end_a, end_b

    def run(self, ns: str, *argv: str, timeout: float = 30, env: dict | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=cwd)

    def listen(self, ns: str, host: str, port: int) -> None:
        """A TCP listener inside `ns` (the kernel completes handshakes; nothing is sent)."""
        code = ("import socket, sys, time\n"
                f"s = socket.socket(socket.AF_INET6 if ':' in {host!r} else socket.AF_INET)\n"
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                f"s.bind(({host!r}, {port})); s.listen(64)\n"
                "print('ready', flush=True)\n"
                "time.sleep(60)\n")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.processes.append(proc)
        deadline = time.monotonic() + 10
        line = proc.stdout.readline()  # "ready", or "" if it died
        if line.strip() != "ready" or time.monotonic() > deadline:
            raise RuntimeError(f"listener in {ns} did not start: {proc.stderr.read()}")

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        for name in reversed(self.names):
            sh("ip", "netns", "del", name, check=False)
        self.names.clear()
