"""Hostile input, read with bounds: files someone else wrote, and single values in them.

The one home of netprobe's readers of other people's data (target files, OONI
and RIPE Atlas downloads, the Atlas state file, an archive scanned for
duplicates): `read_regular_file` (a capped regular file), `json_values` (plain
or gzip, one document or JSON lines), `json_array_or_lines` (Atlas's two
download forms), `whole_lines` (lines of an archive, oversized ones skipped),
and the readers of single JSON values (`text_of`, `integer`, `finite_number`,
`nonnegative`, `ip_text`): the wrong type or an absurd value is None, never an
exception.

JSON values from files someone else wrote: plain or gzip, one document or JSON lines.

Downloads from OONI's API are one (often pretty-printed) JSON document; its bulk
data are JSON lines, gzip-compressed.  Either may be damaged or hostile, so every
read is bounded: a line longer than MAX_LINE_BYTES is skipped without being held
in memory, a single document larger than MAX_DOCUMENT_BYTES is refused, and an
input stops at MAX_INPUT_BYTES of decompressed data (a gzip bomb).  JSON that
nests too deep, or spells NaN or Infinity, counts as broken.  A broken line is
counted and skipped; only an input with nothing readable in it at all is an
error (InputError: one line, meant for the user).
"""

from __future__ import annotations

import errno
import gzip
import io
import ipaddress
import json
import math
import os
import stat
import sys
import zlib
from collections import Counter
from typing import BinaryIO, Iterator

from netprobe.errors import NetprobeError

MAX_LINE_BYTES = 8 * 1024 * 1024  # one measurement; OONI caps bodies, so even big ones are < 1 MB
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # one pretty-printed download (an API answer, a list)
MAX_INPUT_BYTES = 4 * 1024 * 1024 * 1024  # decompressed, per input
# JSON values per line / document, counted before parsing ('{', '[' and ','): Python
# objects cost 50-100 times the bytes of `{},`, so bytes alone do not bound memory.
MAX_LINE_VALUES = 200_000  # a telegram measurement has ~2,000; web_connectivity ~5,000
MAX_DOCUMENT_VALUES = 500_000
CHUNK = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"


class InputError(NetprobeError, ValueError):
    """An input that cannot be read at all; the message is one line for the user."""


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes | str, max_values: int = MAX_LINE_VALUES):
    """json.loads without NaN/Infinity; ValueError for anything that is not plain JSON,
    or that holds more than `max_values` values (it would cost too much memory)."""
    marks = (b",", b"{", b"[") if isinstance(data, bytes) else (",", "{", "[")
    if sum(data.count(mark) for mark in marks) > max_values:
        raise ValueError(f"more than {max_values} JSON values")
    try:
        return json.loads(data, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class _Capped:
    """A binary stream that ends (and says so) after `limit` bytes."""

    def __init__(self, stream: BinaryIO, limit: int):
        self.stream, self.left, self.hit = stream, limit, False

    def read(self, size: int) -> bytes:
        if self.left <= 0:
            self.hit = True
            return b""
        data = self.stream.read(min(size, self.left))
        self.left -= len(data)
        return data

    def readline(self, size: int) -> bytes:
        if self.left <= 0:
            self.hit = True
            return b""
        data = self.stream.readline(min(size, self.left))
        self.left -= len(data)
        return data


def read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, else OSError.

    Opened non-blocking so that a FIFO nobody writes to is refused rather than
    waited on forever; devices (/dev/zero) and oversized files are refused
    before anything is read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while we read it
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data


def open_input(path: str) -> tuple[BinaryIO, BinaryIO]:
    """(decompressed stream, raw file) for a path or `-` (stdin); gzip is told by its
    first bytes, not its name.  OSError propagates (the caller names the file)."""
    raw = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
        head = buffered.peek(2)[:2]
    except OSError:
        if raw is not sys.stdin.buffer:
            raw.close()
        raise
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb"), raw
    return buffered, raw


def json_values(path: str, skipped: Counter, *, max_line: int = MAX_LINE_BYTES,
                max_document: int = MAX_DOCUMENT_BYTES, max_input: int = MAX_INPUT_BYTES) -> Iterator[object]:
    """Every top-level JSON value of one input, in order.

    JSON lines are read one line at a time; a first line that is not JSON on its
    own starts one document (up to `max_document` bytes), and if that does not
    parse either, the input is read as JSON lines after all (a JSON-lines file
    whose first line is broken).  Problems are counted in `skipped` by kind.
    """
    stream, raw = open_input(path)
    capped = _Capped(stream, max_input)
    found = 0
    problems: list[str] = []  # what made this input's first skipped piece unreadable
    mine: Counter = Counter()
    try:
        try:
            for value in _values(capped, mine, max_line, max_document, problems):
                found += 1
                yield value
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        except (EOFError, gzip.BadGzipFile, zlib.error):
            mine["damaged compressed data"] += 1
            problems.append("the compressed data is damaged")
        if capped.hit:
            mine[f"input cut at {_size(max_input)}"] += 1
        if not found and problems:
            raise InputError(f"{path}: nothing readable: {problems[0]}")
    finally:
        skipped.update(mine)
        stream.close()
        if raw is not sys.stdin.buffer:
            raw.close()


def _values(capped: _Capped, skipped: Counter, max_line: int, max_document: int,
            broken: list[str]) -> Iterator[object]:
    line = _first_line(capped, skipped, max_line, broken)
    if line is None:
        return
    try:
        first = parse_json(line)
    except ValueError:
        yield from _document(line, capped, skipped, max_line, max_document, broken)
    else:
        yield first
    yield from _lines(capped, skipped, max_line, broken)


def _document(line: bytes, capped: _Capped, skipped: Counter, max_line: int, max_document: int,
              broken: list[str]) -> Iterator[object]:
    """One JSON document starting with `line`; if it is none, its lines as JSON lines."""
    document = line + capped.read(max_document + 1 - len(line))
    if len(document) > max_document:
        raise InputError(f"one JSON document larger than {_size(max_document)} "
                         "(give them as JSON lines instead)")
    try:
        value = parse_json(document, MAX_DOCUMENT_VALUES)
    except ValueError as exc:
        _note(broken, f"not JSON or JSON lines: {_short(exc)}")
    else:
        yield value
        return
    lines = document.split(b"\n")
    tail = lines.pop()  # the part after the last newline: its line may go on in the input
    for text in lines:
        yield from _line_value(text, skipped, broken)
    if tail:
        rest = tail + capped.readline(max(max_line + 1 - len(tail), 1))
        yield from _bounded_line(rest, capped, skipped, broken, max_line)


def _first_line(capped: _Capped, skipped: Counter, max_line: int, broken: list[str]) -> bytes | None:
    """The first non-blank line, or None at the end of the input."""
    while True:
        line = capped.readline(max_line + 1)
        if not line:
            return None
        if len(line) > max_line and not line.endswith(b"\n"):
            _discard_rest_of_line(capped)
            skipped["line too long"] += 1
            _note(broken, f"a line longer than {_size(max_line)}")
            continue
        if line.strip():
            return line


def _lines(capped: _Capped, skipped: Counter, max_line: int, broken: list[str]) -> Iterator[object]:
    while True:
        line = capped.readline(max_line + 1)
        if not line:
            return
        yield from _bounded_line(line, capped, skipped, broken, max_line)


def _bounded_line(line: bytes, capped: _Capped, skipped: Counter, broken: list[str],
                  max_line: int) -> Iterator[object]:
    if len(line) > max_line and not line.endswith(b"\n"):
        _discard_rest_of_line(capped)
        skipped["line too long"] += 1
        _note(broken, f"a line longer than {_size(max_line)}")
        return
    yield from _line_value(line, skipped, broken)


def _line_value(line: bytes, skipped: Counter, broken: list[str]) -> Iterator[object]:
    if not line.strip():
        return
    try:
        value = parse_json(line)
    except ValueError as exc:
        _note(broken, f"not JSON: {_short(exc)}")
        skipped["broken line"] += 1
    else:
        yield value


def _note(broken: list[str], problem: str) -> None:
    """Keep the first problem only: it names what was wrong, and memory stays flat."""
    if not broken:
        broken.append(problem)


def _discard_rest_of_line(capped: _Capped) -> None:
    while True:
        chunk = capped.readline(CHUNK)
        if not chunk or chunk.endswith(b"\n"):
            return


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


def _short(exc: ValueError) -> str:
    return " ".join(str(exc).split())[:120]


# --- other readers of files -----------------------------------------------------------------

def json_array_or_lines(path: str | os.PathLike, max_bytes: int, max_line: int) -> list:
    """The values of a JSON-array file, or of a JSON-lines file (a line holding an array gives
    its items): RIPE Atlas's two download forms.  A line that is no JSON or longer than
    `max_line` is a None in the list (the caller counts it); a broken array is ValueError,
    an unreadable file OSError (read_regular_file)."""
    raw = read_regular_file(path, max_bytes)
    if raw.lstrip().startswith(b"["):
        data = json.loads(raw)
        return data if isinstance(data, list) else [data]
    values: list = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        if len(line) > max_line:
            values.append(None)
            continue
        try:
            value = json.loads(line)
        except ValueError:
            values.append(None)
            continue
        values.extend(value if isinstance(value, list) else [value])
    return values


def whole_lines(f: BinaryIO, max_line: int) -> Iterator[bytes]:
    """The lines of a binary file, each read at most `max_line` bytes at a time: a line that
    long or longer is skipped whole, so memory is bounded by `max_line`, not by the file."""
    while True:
        line = f.readline(max_line)
        if not line:
            return
        if not line.endswith(b"\n") and len(line) >= max_line:
            while line and not line.endswith(b"\n"):  # skip the rest of an oversized line
                line = f.readline(max_line)
            continue
        yield line


# --- single values of hostile JSON ------------------------------------------------------------

def text_of(value: object, limit: int) -> str | None:
    """A string, cut at `limit` characters; anything else is None."""
    return value[:limit] if isinstance(value, str) else None


def integer(value: object, low: int | None = None, high: int | None = None) -> int | None:
    """An int (not a bool) within [low, high] where given."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if low is not None and value < low or high is not None and value > high:
        return None
    return value


def finite_number(value: object) -> float | None:
    """An int or float (not a bool), as a float, when finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def nonnegative(value: object, below: float) -> float | None:
    """A number or its text (RIPE Atlas writes some times as strings) in [0, below), to 3 decimals."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return round(number, 3) if 0 <= number < below else None


def ip_text(value: object, strip: str | None = None) -> str | None:
    """An IP address in its canonical text; `strip`: characters allowed around it (None:
    whitespace; OONI writes "[::1]")."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(ipaddress.ip_address(value.strip(strip)))
    except ValueError:
        return None
