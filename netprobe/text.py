"""Remote text made inert: the one place that decides how bytes and strings a remote
party (or a file someone else wrote) sent are shown.

A server's header, a DNS answer, a target file's name or an OS error message
can carry terminal escapes, rich markup, bidi overrides or newlines; every
path that prints or records such text goes through here.
"""

from __future__ import annotations

MAX_CELL = 120
MAX_VALUE_CHARS = 256  # recorded header values, status lines, certificate names

# Characters that move, restyle or reorder what a terminal shows: the line and paragraph
# separators and Unicode's Bidi_Control set (marks, embeddings, overrides and isolates).
_INVISIBLE = frozenset("\u2028\u2029\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                       "\u2066\u2067\u2068\u2069")


def printable(value: object, limit: int = MAX_CELL) -> str:
    """Control characters (ANSI escapes included) shown as \\xNN, text capped."""
    text = "" if value is None else str(value)
    out = []
    for ch in text[:limit]:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or ch in _INVISIBLE:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    if len(text) > limit:
        out.append("…")
    return "".join(out)


def one_line(text: str) -> str:
    """A message as one line of inert text: whitespace runs become one space, control
    characters (an ESC from a file name or a file's content) are shown as \\xNN."""
    return printable(" ".join(str(text).split()), limit=10_000)


def escape_text(data: bytes, limit: int = MAX_VALUE_CHARS) -> str:
    """Bytes a server sent, as printable ASCII: others become \\xNN; at most `limit` chars."""
    out: list[str] = []
    size = 0
    for ch in data.decode("latin-1"):
        piece = ch if " " <= ch <= "~" and ch != "\\" else ("\\\\" if ch == "\\" else f"\\x{ord(ch):02x}")
        if size + len(piece) > limit:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)
