"""Hostile text is inert: what a remote party controls is escaped before it reaches the
terminal, and stored in JSON safely.

A loopback web server answers both HTTP and HTTPS with a Server header, a Location
and a body full of terminal escapes ("\\x1b[31m", an OSC title sequence ending in
BEL), rich markup ("[bold red]x[/]"), a bare carriage return and invalid UTF-8;
the resolver adds a TXT record and a CNAME made of the same bytes.  The real CLI
runs against it with a table on a pseudo-terminal (and with rich forced to think
stdout is one), and as JSON lines.

Unit-level escaping (render.printable, the table's cells) is in tests/test_output.py;
header escaping at the probe in tests/test_probe_https.py.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time

import pytest

from tests.support.fake_dns import FakeDNS
from tests.support.hostile import (
    REPO_ROOT,
    HostileServers,
    can_bind_privileged,
    loopback_net,
    make_pki,
    netprobe_cmd,
    netprobe_env,
    run_netprobe,
    write_targets,
)

pytestmark = pytest.mark.skipif(not can_bind_privileged(), reason="binds ports 80/443 on loopback: needs root")

EVIL = b"\x1b[31mEVIL[bold red]x[/]\r\x1b]0;pwned\x07\xff\xfe"
HOSTILE_RESPONSE = (b"HTTP/1.1 302 Found \x1b[2J\r\n"
                    b"Server: " + EVIL + b"\r\n"
                    b"Location: http://elsewhere.example/" + EVIL + b"\r\n"
                    b"Content-Length: %d\r\n\r\n" % (len(EVIL) * 3) + EVIL * 3)
DOMAIN = "evil.text.test"
ESC = "\x1b"
# rich's own styling: SGR colour/bold sequences.  Anything else with an ESC came from content.
RICH_SGR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    net = loopback_net()
    address = str(net[1])
    pki = make_pki(tmp / "pki", [DOMAIN])
    servers = HostileServers()
    try:
        servers.listen("answer", address, 443, tls=pki.server_context(), payload=HOSTILE_RESPONSE)
        servers.listen("answer", address, 80, payload=HOSTILE_RESPONSE)
        with FakeDNS({DOMAIN: ("hostile", [address])}) as dns_server:
            targets = write_targets(tmp / "t.toml", name="text", networks=[str(net)], domains=[DOMAIN])
            yield ["run", "--targets", str(targets), "--resolver", dns_server.address, "--ca-bundle", str(pki.ca),
                   "--timeout", "2", "--probes", "dns,https,http"]
    finally:
        servers.close()


def run_on_pty(args: list[str], columns: int = 300, timeout: float = 30) -> tuple[int, bytes, str]:
    """Run netprobe with stdout on a pseudo-terminal (stderr on a pipe); (exit code, stdout bytes, stderr)."""
    import fcntl
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    proc = subprocess.Popen(netprobe_cmd(*args), stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=netprobe_env(TERM="xterm-256color", COLUMNS=str(columns)), cwd=REPO_ROOT)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        else:
            pytest.fail("netprobe did not finish on the pseudo-terminal")
        stderr = proc.stderr.read().decode()
        return proc.wait(timeout=5), bytes(output), stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        os.close(master)


def check_inert(text: str) -> None:
    """No escape sequence from the content: only rich's own colour codes carry an ESC."""
    assert ESC not in RICH_SGR.sub("", text), repr(text)
    assert "\x07" not in text and "\x9b" not in text
    plain = RICH_SGR.sub("", text)
    # The remote bytes are shown, escaped: ESC as \x1b, CR as \x0d, invalid UTF-8 as \xNN ...
    assert "\\x1b[31mEVIL" in plain
    assert "\\x0d" in plain and "\\xff\\xfe" in plain
    # ... and rich markup in them is text, not styling.
    assert "[bold red]x[/]" in plain


def test_table_on_a_terminal_shows_hostile_text_inert(hostile_site):
    code, raw, stderr = run_on_pty([*hostile_site, "--format", "table", "--details"])
    assert code == 0, stderr
    text = raw.decode("utf-8")  # also: rich wrote valid UTF-8, whatever the server sent
    assert RICH_SGR.search(text), "no colour at all: the output was not treated as a terminal"
    check_inert(text)
    # The pty turns "\n" into "\r\n"; any other carriage return came from the content.
    assert "\r" not in text.replace("\r\n", "\n")
    assert "Traceback" not in stderr and ESC not in stderr


def test_table_with_rich_forced_to_colour_shows_hostile_text_inert(hostile_site):
    proc, _ = run_netprobe(*hostile_site, "--format", "table", "--details",
                           env=netprobe_env(FORCE_COLOR="1", TTY_COMPATIBLE="1", COLUMNS="300"))
    assert proc.returncode == 0, proc.stderr
    assert RICH_SGR.search(proc.stdout)
    check_inert(proc.stdout)
    assert "\r" not in proc.stdout


def test_the_grouped_table_and_verdict_block_stay_inert(hostile_site):
    """The default view: one row per group and the verdict block, whose findings quote targets."""
    proc, _ = run_netprobe(*hostile_site, "--format", "table",
                           env=netprobe_env(FORCE_COLOR="1", TTY_COMPATIBLE="1", COLUMNS="300"))
    assert proc.returncode == 0, proc.stderr
    plain = RICH_SGR.sub("", proc.stdout)
    assert ESC not in plain and "\x07" not in plain and "\r" not in plain
    assert "Verdict:" in plain


def test_jsonl_keeps_hostile_text_as_escaped_data(hostile_site):
    proc, _ = run_netprobe(*hostile_site, "--format", "jsonl", env=netprobe_env(FORCE_COLOR="1"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.isascii()
    lines = proc.stdout.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one valid JSON document
    assert all(ch >= " " for line in lines for ch in line)
    by_probe = {r["probe"]: r for r in records}
    for kind in ("https", "http"):
        http = by_probe[kind]["evidence"]["http"]
        assert http["status"] == 302
        # Stored as text that can be read back to the very bytes the server sent.
        assert http["headers"]["server"] == "\\x1b[31mEVIL[bold red]x[/]\\x0d\\x1b]0;pwned\\x07\\xff\\xfe"
        assert bytes.fromhex(http["body_prefix"]["hex"]) == EVIL * 3
    answers = [a["data"] for q in by_probe["dns"]["evidence"]["queries"] for a in q["answers"]]
    assert any("DNSEVIL[bold red]x[/]" in a and "\\027[31m" in a for a in answers)
    assert ESC not in proc.stdout
    assert "\x1b[31mEVIL" not in proc.stderr  # stderr has rich's progress bar: only its own escapes


def test_plan_table_escapes_a_hostile_target_file_name(tmp_path):
    """A target file is often someone else's: its free-text name is shown inert too."""
    path = tmp_path / "t.toml"
    path.write_text('name = "\\u001b[2J[bold]plan[/bold]\\r"\nendpoints = ["127.0.0.1:9"]\n')
    proc, _ = run_netprobe("targets", "--targets", str(path), "--format", "table",
                           env=netprobe_env(FORCE_COLOR="1", COLUMNS="200"))
    assert proc.returncode == 0, proc.stderr
    plain = RICH_SGR.sub("", proc.stdout)
    assert ESC not in plain and "\r" not in plain
    assert "\\x1b[2J[bold]plan[/bold]\\x0d" in plain

