"""Fast start: `--version` and `--help` import nothing heavy, and a run imports only the
modules its probe kinds need (checked with `python -X importtime`)."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def imported(*args: str, tmp_path: Path | None = None) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETPROBE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "netprobe", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path or REPO, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
            and "|" in line}


HEAVY_FOR_VERSION = ("asyncio", "rich", "dns", "cryptography", "netprobe.engine", "netprobe.targets",
                     "netprobe.report", "netprobe.probes", "netprobe.interop")
PROBE_MODULES = ("dns", "cryptography", "netprobe.probes.dns", "netprobe.probes.https", "netprobe.probes.mtproto",
                 "netprobe.mtproto_wire", "requests", "netprobe.interop", "asyncio", "ssl", "rich")


def loaded(modules: set[str], prefix: str) -> list[str]:
    return sorted(m for m in modules if m == prefix or m.startswith(prefix + "."))


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_nothing_heavy(args):
    modules = imported(*args)
    for heavy in HEAVY_FOR_VERSION:
        assert not loaded(modules, heavy), (heavy, loaded(modules, heavy))


def test_a_tcp_run_imports_no_other_probe(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: the probe is refused
    targets = tmp_path / "t.toml"
    targets.write_text(f'name = "t"\nnetworks = ["127.0.0.0/8"]\nendpoints = ["127.0.0.1:{port}"]\n')
    modules = imported("run", "--targets", str(targets), "--probes", "tcp", "--format", "jsonl", "--timeout", "0.5",
                       tmp_path=tmp_path)
    assert "netprobe.probes.tcp" in modules
    for other in PROBE_MODULES:
        assert not loaded(modules, other), (other, loaded(modules, other))


def undeclared_lazy_imports(path: Path) -> list[int]:
    """Lines of imports inside functions without a `# lazy:` reason on their line or above
    their block of imports (ARCHITECTURE.md, "Deferred imports")."""
    lines = path.read_text().splitlines()
    missing = []
    for function in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or "# lazy:" in lines[node.lineno - 1]:
                continue
            above = node.lineno - 2
            while above >= 0 and (not lines[above].strip() or lines[above].lstrip().startswith(("import ", "from "))):
                above -= 1
            if above < 0 or not lines[above].lstrip().startswith("# lazy:"):
                missing.append(node.lineno)
    return missing


@pytest.mark.parametrize("source, missing", [
    ("def f():\n    # lazy: heavy\n    import a\n\n    from b import c\n", []),
    ("def f():\n    import a  # lazy: cycle\n", []),
    ("import a\ndef f():\n    x = 1\n    import b\n", [4]),
    ("# lazy: not this one\nx = 1\ndef f():\n    import b\n", [4]),
])
def test_the_lazy_comment_rule(tmp_path, source, missing):
    module = tmp_path / "m.py"
    module.write_text(source)
    assert undeclared_lazy_imports(module) == missing


def test_every_import_inside_a_function_says_why():
    """Imports go at the top unless deferred for a measured cost or a cycle, and then say which."""
    missing = {str(path.relative_to(REPO)): lines for path in sorted((REPO / "netprobe").rglob("*.py"))
               if "interop" not in path.parts and (lines := undeclared_lazy_imports(path))}
    assert not missing, missing
