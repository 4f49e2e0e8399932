"""NO_COLOR (https://no-color.org): a forced terminal writes colour, unless NO_COLOR is set.

netprobe passes nothing about NO_COLOR to rich: rich (>= 14) reads it itself, with the
same rule (set and not empty).  Each command below colours its table when NO_COLOR is
absent, so the NO_COLOR=1 case is checked against output that would otherwise carry
colour.  (`targets` and `atlas fetch` tables have no colour to lose.)
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hostile import netprobe_env

DATA = Path(__file__).parent / "data"
OONI_TELEGRAM = str(DATA / "ooni" / "api-telegram-RU-20221109.json")
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def colour_escapes(text: str) -> list[str]:
    """The SGR escapes in text that set a colour (foreground or background: 30-49, 90-107);
    bold, italic and reset are not colour."""
    found = []
    for match in SGR.finditer(text):
        codes = [int(c) for c in match.group(1).split(";") if c]
        if any(30 <= c <= 49 or 90 <= c <= 107 for c in codes):
            found.append(match.group(0))
    return found


def test_colour_escapes_tells_colour_from_style():
    assert colour_escapes("\x1b[1;31mblocked\x1b[0m \x1b[38;5;2mx\x1b[0m") == ["\x1b[1;31m", "\x1b[38;5;2m"]
    assert colour_escapes("\x1b[1mbold\x1b[0m \x1b[3mitalic\x1b[0m") == []


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> str:
    """An archive for `report`: the OONI measurement as netprobe records."""
    path = tmp_path_factory.mktemp("colour") / "records.jsonl"
    proc = subprocess.run([sys.executable, "-m", "netprobe", "import", "ooni", OONI_TELEGRAM, "--format", "jsonl"],
                          capture_output=True, text=True, timeout=60, env=netprobe_env(), check=True)
    path.write_text(proc.stdout)
    return str(path)


@pytest.fixture(scope="module")
def open_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


COMMANDS = {
    "reasons": lambda records, port: ["reasons", "--format", "table"],
    "import ooni": lambda records, port: ["import", "ooni", OONI_TELEGRAM, "--format", "table"],
    "report": lambda records, port: ["report", records, "--format", "table"],
    # a run: the table on stdout, the progress bar on stderr
    "tcp": lambda records, port: ["tcp", f"127.0.0.1:{port}", "--format", "table", "--timeout", "2"],
}


@pytest.mark.parametrize("no_color", ["", "1"], ids=["colour", "NO_COLOR=1"])
@pytest.mark.parametrize("command", COMMANDS)
def test_no_color_removes_every_colour_escape(command, no_color, records, open_port):
    env = netprobe_env(FORCE_COLOR="1", TTY_COMPATIBLE="1", COLUMNS="200")
    if no_color:
        env["NO_COLOR"] = no_color
    proc = subprocess.run([sys.executable, "-m", "netprobe", *COMMANDS[command](records, open_port)],
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    escapes = colour_escapes(proc.stdout) + colour_escapes(proc.stderr)
    if no_color:
        assert escapes == []
    else:
        assert escapes, "a forced terminal should be coloured: without it the NO_COLOR case proves nothing"
