"""bounded_input's readers of single hostile values and of Atlas's files, by table: the wrong
type or an absurd value is None (or a counted None), never an exception.  json_values is
tested through the commands (tests/test_ooni_cli.py: gzip bombs, long lines)."""

from __future__ import annotations

import io

import pytest

from netprobe.bounded_input import (
    finite_number, integer, ip_text, json_array_or_lines, nonnegative, text_of, whole_lines,
)


@pytest.mark.parametrize("reader, value, expected", [
    (lambda v: text_of(v, 3), "abcdef", "abc"),
    (lambda v: text_of(v, 3), 12, None),
    (integer, 7, 7),
    (integer, True, None),  # a bool is no number, though Python says it is an int
    (integer, 7.0, None),
    (lambda v: integer(v, 1, 10), 0, None),
    (lambda v: integer(v, 1, 10), 10, 10),
    (lambda v: integer(v, 1, 10), 11, None),
    (finite_number, 3, 3.0),
    (finite_number, float("nan"), None),
    (finite_number, float("inf"), None),
    (finite_number, False, None),
    (finite_number, "3", None),
    (lambda v: nonnegative(v, 1e9), "12.34567", 12.346),  # Atlas writes some times as text
    (lambda v: nonnegative(v, 1e9), -1, None),
    (lambda v: nonnegative(v, 1e9), 1e9, None),
    (lambda v: nonnegative(v, 1e9), None, None),
    (ip_text, " 2001:DB8::1 ", "2001:db8::1"),
    (ip_text, "[::1]", None),
    (lambda v: ip_text(v, "[]"), "[::1]", "::1"),  # OONI's form
    (lambda v: ip_text(v, "[]"), " 10.0.0.1", None),
    (ip_text, "1.2.3.4" + " " * 60, None),  # too long to be one
    (ip_text, 16909060, None),
])
def test_single_values(reader, value, expected):
    assert reader(value) == expected


@pytest.mark.parametrize("data, expected", [
    (b' [{"a": 1}, 2]', [{"a": 1}, 2]),
    (b'{"a": 1}\n\n[2, 3]\nnot json\n' + b"x" * 20 + b"\n4", [{"a": 1}, 2, 3, None, None, 4]),
    (b"", []),
])
def test_atlas_files_are_an_array_or_lines(tmp_path, data, expected):
    path = tmp_path / "results"
    path.write_bytes(data)
    assert json_array_or_lines(path, 1000, 10) == expected


def test_a_broken_array_is_an_error_and_an_oversized_file_is_refused(tmp_path):
    path = tmp_path / "results"
    path.write_bytes(b"[1, 2")
    with pytest.raises(ValueError):
        json_array_or_lines(path, 1000, 10)
    with pytest.raises(OSError, match="larger than"):
        json_array_or_lines(path, 4, 10)


def test_whole_lines_skips_an_oversized_line_whole():
    f = io.BytesIO(b"short\n" + b"x" * 25 + b"\nnext\nlast")
    assert list(whole_lines(f, 10)) == [b"short\n", b"next\n", b"last"]
