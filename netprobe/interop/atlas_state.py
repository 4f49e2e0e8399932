"""The state file of `netprobe atlas`: which measurements were submitted, from what.

`submit` spends credits, so the ids it gets back must survive: the file is
checked writable before anything is scheduled and replaced atomically after.
It is read as hostile input (a hand edit, a damaged disk): capped, and an entry
that is not well formed is left out, never trusted.  Errors are StateError, one
line for the user (the command turns them into exit 2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from netprobe.bounded_input import read_regular_file
from netprobe.errors import NetprobeError

STATE_SCHEMA = "netprobe-atlas-state/1"
MAX_STATE_BYTES = 16 * 1024 * 1024


class StateError(NetprobeError, ValueError):
    """The state file cannot be read or written; the message is one line for the user."""


def default_state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "netprobe" / "atlas.json"


def load_state(path: Path, missing_ok: bool = True) -> dict[str, Any]:
    try:
        raw = read_regular_file(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        if missing_ok:
            return {"schema": STATE_SCHEMA, "submissions": []}
        raise StateError(f"no state file at {path}: run `netprobe atlas submit` first, or name measurement ids") from None
    except OSError as exc:
        raise StateError(f"cannot read state file {path}: {exc.strerror or exc}") from None
    try:
        state = json.loads(raw)
        if not isinstance(state, dict) or not isinstance(state.get("submissions"), list):
            raise ValueError("no submissions list")
    except ValueError as exc:
        raise StateError(f"state file {path} is not netprobe's ({str(exc)[:80]}); move it away or give --state") from None
    # A hand-edited or damaged entry is left out, not trusted: only well-formed measurements count.
    for submission in state["submissions"]:
        if isinstance(submission, dict):
            submission["measurements"] = [
                m for m in submission.get("measurements") or []
                if isinstance(m, dict) and isinstance(m.get("id"), int) and not isinstance(m.get("id"), bool)
                and isinstance(m.get("definition"), dict)]
            if not isinstance(submission.get("targets_file"), (str, type(None))):
                submission["targets_file"] = None
    state["submissions"] = [s for s in state["submissions"] if isinstance(s, dict)]
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically: a crash leaves the old state or the new one, never half of either."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise StateError(f"cannot write state file {path}: {exc.strerror or exc}") from None


def check_writable(path: Path) -> None:
    """Fail before spending credits if the ids could not be kept afterwards."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(f".{path.name}.{os.getpid()}.check")
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise StateError(f"cannot write state file {path}: {exc.strerror or exc}; give --state FILE") from None
