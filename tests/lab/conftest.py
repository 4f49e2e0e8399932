"""The censorship lab's pytest wiring: the `lab` marker, the root gate, the session-wide lab.

Lab tests need root and `ip netns`.  Without them every lab test is skipped
with one reason, unless NETPROBE_REQUIRE_LAB=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the lab's modules import each other by plain name
    sys.path.insert(0, str(HERE))

import topology

REQUIRE_ENV = topology.REQUIRE_ENV


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: builds the censorship lab (network namespaces, iptables); needs root. "
                   f"Skipped when unavailable unless {REQUIRE_ENV}=1.")


_gate_cache: dict[str, str | None] = {}


def lab_gate() -> tuple[str, str] | None:
    """None when the lab can run, else ('skip'|'fail', message)."""
    if "reason" not in _gate_cache:
        _gate_cache["reason"] = topology.unavailable_reason()
    return topology.gate_decision(_gate_cache["reason"], os.environ.get(REQUIRE_ENV, ""))




@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is None:
        return
    decision = lab_gate()
    if decision is None:
        return
    action, message = decision
    if action == "fail":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> topology.Lab:
    """The lab, built once per session; torn down at the end whatever happens."""
    the_lab = topology.Lab(verbose=bool(os.environ.get("NPLAB_VERBOSE")))
    request.addfinalizer(the_lab.down)  # registered first: also runs if up() fails half-way
    the_lab.up()
    return the_lab
