"""The probe-kind registry (netprobe/probes/kinds.py) is the one home of what a kind is:
no other module spells a table of kind names, and every registration can be measured."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from netprobe.probes import kinds
from netprobe.probes.kinds import INPUTS, KINDS, NAMES

PACKAGE = Path(__file__).resolve().parent.parent / "netprobe"
REGISTRY = PACKAGE / "probes" / "kinds.py"


# Literals that spell kind names but are not kind tables: stage and URL-scheme names are also
# kind names (a kind is named after its stage or scheme).  Keyed by file name and source line.
NOT_KIND_TABLES = {
    ("classify.py", 'for stage in ("tcp", "http")},'): "reason stages",
    ("read.py", 'scheme = parts.scheme.lower() if parts.scheme.lower() in ("http", "https") else None'): "URL scheme",
    ("read.py", 'port = parts.port or {"http": 80, "https": 443}.get(scheme or "")'): "URL scheme",
    ("web_connectivity.py", 'port = parts.port or {"http": 80, "https": 443}.get(scheme)'): "URL scheme",
    ("web_connectivity.py", 'if scheme not in ("http", "https") or not host:'): "URL scheme",
}
RECORD_KINDS = {*KINDS, kinds.CONTROL, kinds.SUMMARY}


def kind_tables(source: str, file: str = "x.py") -> list[tuple[int, list[str]]]:
    """Tuples, lists, sets and dicts (by key) of two or more kind names and nothing else but
    record kinds (one that also holds "tls" or "interception" is a stage table): kind tables."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        strings = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
        names = [s for s in strings if s in KINDS]
        if len(names) >= 2 and set(strings) <= RECORD_KINDS \
                and (file, lines[node.lineno - 1].strip()) not in NOT_KIND_TABLES:
            found.append((node.lineno, names))
    return found


def test_no_module_but_the_registry_spells_a_table_of_kind_names():
    tables = {str(path.relative_to(PACKAGE)): found for path in sorted(PACKAGE.rglob("*.py")) if path != REGISTRY
              for found in [kind_tables(path.read_text(encoding="utf-8"), path.name)] if found}
    assert tables == {}, "ask netprobe/probes/kinds.py instead"


def test_every_exception_is_still_spelled():
    """An exception whose line is gone leaves NOT_KIND_TABLES too."""
    lines = {(p.name, line.strip()) for p in PACKAGE.rglob("*.py")
             for line in p.read_text(encoding="utf-8").splitlines()}
    assert set(NOT_KIND_TABLES) - lines == set()


def test_no_module_but_the_registry_names_an_mtproto_transport_kind():
    spelled = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p != REGISTRY and any(f'"{name}"' in p.read_text(encoding="utf-8")
                                        for name in ("mtproto_abridged", "mtproto_obfuscated2"))]
    assert spelled == []


@pytest.mark.parametrize("source, expected", [
    ('X = ("https", "http")', [["https", "http"]]),
    ('X = frozenset({"tcp", "control", "dns"})', [["tcp", "dns"]]),
    ('X = {"mtproto": 1, "mtproto_abridged": 2}', [["mtproto", "mtproto_abridged"]]),
    ('if p in ["tcp", "http"]: pass', [["tcp", "http"]]),
    ('X = ("control", "tcp", "summary", "http")', [["tcp", "http"]]),
    ('X = ("https", HOST)', []),                 # one kind name is a value, not a table
    ('X = ("tls", "http", "tcp")', []),          # a stage table: "tls" is a stage, not a kind
    ('if scheme not in ("http", "https") or not host: pass', [["http", "https"]]),  # not in web_connectivity.py
])
def test_the_table_finder_finds_every_form(source, expected):
    assert [names for _, names in kind_tables(source)] == expected


@pytest.mark.parametrize("name", NAMES)
def test_every_kind_measures_with_a_probe_that_takes_its_arguments(name):
    kind = KINDS[name]
    probe = getattr(importlib.import_module(kind.measure.module), kind.measure.function)
    assert inspect.iscoroutinefunction(probe)
    assert set(kind.measure.args + kind.measure.keywords) <= set(INPUTS)
    signature = inspect.signature(probe)
    # prepared: what engine.Runner.address_choice gives a web probe
    prepared = ("addresses", "address_source", "dns_reason") if kind.measure.prepared else ()
    signature.bind(*kind.measure.args, **dict.fromkeys(kind.measure.keywords + prepared))


@pytest.mark.parametrize("name, family, board, transport", [
    ("dns", kinds.DNS, "dns", None),
    ("dns_injection", kinds.INJECTION, "dns_injection", None),
    ("tcp", kinds.CONNECT, "tcp", None),
    ("https", kinds.WEB, "tls", None),
    ("http", kinds.WEB, "http", None),
    ("mtproto", kinds.MTPROTO, "tcp", "intermediate"),
    ("mtproto_abridged", kinds.MTPROTO, "tcp", "abridged"),
    ("mtproto_obfuscated2", kinds.MTPROTO, "tcp", "obfuscated2"),
])
def test_each_kind_is_registered_as_before(name, family, board, transport):
    assert (kinds.family_of(name), kinds.board_stage(name), KINDS[name].transport) == (family, board, transport)
    if transport:
        assert kinds.by_transport(transport) == name


@pytest.mark.parametrize("stage, board", [
    ("mtproto", "tcp"),  # MTProto's failures are weighed against the same endpoint's connect
    ("dns", "dns"),      # dns and dns_injection both fail at dns.*: the stage itself
    ("tls", "tls"), ("http", "http"), ("tcp", "tcp"), ("interception", "interception"),
])
def test_the_board_stage_behind_a_reason_stage(stage, board):
    assert kinds.board_stage_of(stage) == board


def test_records_order_controls_first_summary_last_unknown_after():
    order = sorted(["summary", "quic", "mtproto", "control", "dns", "https"], key=kinds.record_order)
    assert order == ["control", "dns", "https", "mtproto", "summary", "quic"]


def test_every_kind_is_planned_per_a_known_unit_and_web_kinds_have_a_port():
    units = {kinds.PER_RESOLVER, kinds.PER_CANARY, kinds.PER_DOMAIN, kinds.PER_ENDPOINT, kinds.PER_RANGE_ADDRESS}
    for kind in KINDS.values():
        assert kind.planned and set(kind.planned) <= units, kind.name
        assert (kind.port is not None) == (kind.family == kinds.WEB), kind.name


async def probe_echo(endpoint, timeout: float, kind: str):
    """A probe kind's module in one function (test_a_kind_is_one_registration_...)."""
    from netprobe.records import Result
    return Result(kind, str(endpoint), str(endpoint), None, 1.0, {"timeout_s": timeout})


def test_a_kind_is_one_registration_planned_measured_and_folded(monkeypatch):
    """The module docstring's promise: register a kind and `--probes` accepts it, the plan
    makes its tasks, the engine measures it and the diagnosis folds it, with no other edit."""
    import asyncio

    from netprobe.tallies import Tallies
    from netprobe.engine import Settings, execute
    from netprobe.plan import Plan, parse_probe_kinds
    from netprobe.targets import parse_target_text

    monkeypatch.setitem(KINDS, "echo", kinds.Kind(
        "echo", kinds.CONNECT, stage="tcp", board_stage="tcp", planned=(kinds.PER_ENDPOINT,),
        measure=kinds.Measure(__name__, "probe_echo", args=("endpoint", "timeout"), keywords=("kind",))))
    text = b'name = "t"\nnetworks = ["127.0.0.0/8"]\nendpoints = ["127.0.0.1:9"]\n'
    plan = Plan(targets=parse_target_text(text, "t.toml"), kinds=parse_probe_kinds("echo,tcp"), resolvers=(), seed=1)
    tasks = list(plan.tasks())
    assert [(t.kind, t.target) for t in tasks] == [("tcp", "127.0.0.1:9"), ("echo", "127.0.0.1:9")]
    assert len(plan) == len(plan.controls()) + 2
    result = asyncio.run(execute(tasks[1], plan, Settings(timeout=1.5, concurrency=1), {}))
    assert (result.probe, result.target, result.evidence) == ("echo", "127.0.0.1:9", {"timeout_s": 1.5})
    tallies = Tallies()
    tallies.add(result)  # its family has a rule
    assert tallies.endpoints.tested == {"127.0.0.1:9"}
