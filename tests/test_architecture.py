"""The layers of ARCHITECTURE.md, checked: no module imports across a rule that holds.

Imports are read with `ast` from every file of the package, function-local ones
included (most of netprobe's imports are deferred for start-up time; they are
dependencies all the same).  A module belongs to one layer; a layer may import
the layers listed for it.  KNOWN lists the crossings that exist today and that
issue 19 removes: each must still exist (so the list only shrinks) and no other
may appear.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "netprobe"

# Layer of each module (dotted name under netprobe; a package's name covers its modules).
# The most specific name wins: "report.fold" would beat "report".
LAYER_OF = {
    # base: no judgment, no I/O policy; imported by anyone
    "": "base",  # netprobe/__init__.py: the version
    "text": "base", "addresses": "base", "targets": "base", "resolvers": "base", "blockpages": "base",
    "mtproto_wire": "base", "bounded_input": "base", "sweep_loop": "base", "timeutil": "base",
    # the one base of the errors told to the user (turned into one line and an exit code by commands)
    "errors": "base",
    # the probe-kind registry: data every layer reads; it names probe functions, imports none
    "probes.kinds": "base",
    # the vocabulary: reasons, verdicts, failure names
    "classify": "classify",
    # the record a measurement becomes (verdict derived from reason)
    "records": "records",
    # measuring
    "probes": "probes",
    # judging against the controls, and the run's diagnosis
    "vantage": "judgment", "diagnosis": "judgment", "tallies": "judgment",
    # scheduling the plan's probes
    "plan": "engine", "engine": "engine",
    # showing records: the run's table, the history report, the output files
    "output": "report", "render": "report", "report_lines": "report", "report": "report",
    # other tools' data
    "interop": "interop",
    # one run, start to end
    "session": "run",
    # the command line
    "commands": "commands", "__main__": "commands",
}

ALLOWED = {
    "base": {"base"},
    "classify": {"base"},
    "records": {"base", "classify"},
    "probes": {"base", "records", "probes"},
    "judgment": {"base", "classify", "records", "judgment"},
    "engine": {"base", "classify", "records", "probes", "judgment", "engine"},
    "report": {"base", "classify", "records", "report"},
    "interop": {"base", "classify", "records", "judgment", "interop"},
    "run": {"base", "classify", "records", "judgment", "engine", "report", "interop", "run"},
    "commands": {"base", "classify", "records", "probes", "judgment", "engine", "report", "interop", "run",
                 "commands"},
}

# Crossings that exist today, each to be removed by issue 19 ("One home per fact").
KNOWN = {
    # Probes still judge: they name reasons with classify's rules instead of returning an
    # observation (issue 19, item 2).
    ("probes.dns", "classify"), ("probes.https", "classify"), ("probes.mtproto", "classify"),
    ("probes.tcp", "classify"),
    # The run imports the command layer above it (ExitCode, UserError).
    ("session", "commands.common"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path) -> set[str]:
    """The netprobe modules `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
                module = f"netprobe.{module}" if module else "netprobe"
            else:
                module = node.module or ""
            # `from netprobe.x import y` imports y's module when y is one
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target != "netprobe" and not target.startswith("netprobe."):
                continue
            target = target.removeprefix("netprobe").removeprefix(".")
            while target not in MODULES and target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                found.add(target)
    return found


def layer(name: str) -> str:
    """The layer of the module's most specific entry in LAYER_OF ("" is only the package's own file)."""
    key = name
    while key:
        if key in LAYER_OF:
            return LAYER_OF[key]
        key = key.rpartition(".")[0]
    if name == "":
        return LAYER_OF[""]
    raise KeyError(f"netprobe.{name} has no layer: place it in LAYER_OF and ARCHITECTURE.md")


def crossings() -> set[tuple[str, str]]:
    return {(name, target) for name, path in MODULES.items() for target in imported(name, path)
            if layer(target) not in ALLOWED[layer(name)]}


def test_every_module_has_a_layer():
    unplaced = []
    for name in MODULES:
        try:
            layer(name)
        except KeyError:
            unplaced.append(f"netprobe.{name}")
    assert unplaced == []
    assert set(LAYER_OF.values()) == set(ALLOWED)


def test_no_module_imports_across_the_layers():
    new = sorted(crossings() - KNOWN)
    assert new == [], "imports across ARCHITECTURE.md's layers (move the code, or the import): " + ", ".join(
        f"netprobe.{a} -> netprobe.{b}" for a, b in new)


def test_every_known_exception_still_exists():
    """When issue 19 removes a crossing, it leaves KNOWN too: the list only shrinks."""
    gone = sorted(KNOWN - crossings())
    assert gone == [], f"no longer imported, delete from KNOWN: {gone}"


# The reader itself, on made-up files: a checker that misses imports proves nothing.
@pytest.mark.parametrize("source, expected", [
    ("import netprobe.engine", {"engine"}),
    ("from netprobe.probes import tcp", {"probes.tcp", "probes"}),
    ("from netprobe.classify import REASONS", {"classify"}),
    ("def f():\n    from netprobe.commands.common import UserError", {"commands.common"}),
    ("from . import fold", {"report.fold", "report"}),
    ("from .. import text", {"", "text"}),  # the package's __init__, then text
    ("import json\nfrom rich.console import Console", set()),
])
def test_the_reader_finds_every_form_of_import(tmp_path, source, expected):
    path = tmp_path / "x.py"
    path.write_text(source)
    assert imported("report.x", path) == expected


@pytest.mark.parametrize("importer, target, allowed", [
    ("report.fold", "commands.common", False),
    ("vantage", "engine", False),
    ("vantage", "probes.tcp", False),
    ("records", "vantage", False),
    ("classify", "records", False),
    ("probes.tcp", "engine", False),
    ("engine", "probes.tcp", True),
    ("interop.ooni", "report.fold", False),
    ("report.fold", "interop.ooni", False),
    ("interop.ooni", "timeutil", True),
    ("report.fold", "timeutil", True),
    ("session", "interop.ooni", True),
    ("interop.ooni.measurement", "diagnosis", True),  # a module of a package is in the package's layer
    ("interop.ooni.write", "report.fold", False),
    ("commands.probe", "session", True),
    ("report.terminal", "render", True),
])
def test_the_layer_table(importer, target, allowed):
    with pytest.raises(KeyError):
        layer("newmodule")  # a new top-level module must be placed, not fall to base
    assert (layer(target) in ALLOWED[layer(importer)]) is allowed
