"""The lab's root gate, testable without root: skip normally, fail when CI requires the lab."""

from __future__ import annotations

import os

import topology as T


def test_available_runs():
    assert T.gate_decision(None, "") is None
    assert T.gate_decision(None, "1") is None


def test_unavailable_skips_with_the_reason():
    action, message = T.gate_decision("needs root", "")
    assert action == "skip" and "needs root" in message
    assert T.gate_decision("needs root", "0")[0] == "skip"


def test_unavailable_fails_when_required():
    action, message = T.gate_decision("needs root", "1")
    assert action == "fail" and "NETPROBE_REQUIRE_LAB" in message and "needs root" in message


def test_non_root_is_unavailable(monkeypatch):
    # Runs as root in CI too: pretend to be an ordinary user.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in T.unavailable_reason()
