"""tests/lab/mtproto_server.py as a subprocess on 127.0.0.1, for loopback tests."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "lab" / "mtproto_server.py"
STARTUP_TIMEOUT = 15.0


class LabServer:
    """The lab MTProto server listening on a kernel-chosen port of 127.0.0.1."""

    def __init__(self, *args: str, log_path: Path | None = None) -> None:
        self._log = open(log_path, "wb") if log_path else None
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=self._log or subprocess.DEVNULL)
        self.port = self._wait_until_ready()

    def _wait_until_ready(self) -> int:
        lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=lambda: [lines.put(line) for line in self.process.stdout],
                                        daemon=True)
        self._reader.start()
        port = None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2).decode().strip()
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith("LISTENING "):
                port = int(line.rpartition(":")[2])
            elif line == "READY":
                assert port is not None, "READY before any LISTENING line"
                return port
        self.stop()
        raise RuntimeError("lab server did not print READY")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._reader.join(timeout=5)  # EOF on stdout once the process is gone
        if not self._reader.is_alive():
            self.process.stdout.close()
        if self._log:
            self._log.close()
