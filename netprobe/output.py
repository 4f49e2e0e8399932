"""Where records go: an append-only JSON-lines file shared with other runs, and stdout.

RecordSink is the one writer of every command that writes records (`run`,
`import ooni`, `atlas fetch`); AppendFile and StdoutWriter are its two halves.

The file is the measurement archive: whole lines are written with one write()
under an exclusive flock, so concurrent cron jobs never interleave, and a
failed write is rolled back so that no partial record is left behind.

A run writes in batches (`flush_interval`): a sweep measures thousands of
records a second, and a write() with its lock per record cost more than
measuring one.  A batched line waits at most `flush_interval` (the caller's
timer flushes when nothing else does), so SIGKILL loses at most that much;
close() writes the rest, so SIGINT and SIGTERM lose nothing.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import stat
import sys
import time
from typing import Any, TextIO

from netprobe.errors import NetprobeError
from netprobe.records import RECORD_FIELDS, to_json_line


def default_format(fmt: str | None, tty: str = "table", pipe: str = "jsonl") -> str:
    """The format asked for, else a table for a person at a terminal and JSON for a program:
    the one rule every command follows."""
    return fmt or (tty if sys.stdout.isatty() else pipe)


class OutputError(NetprobeError, OSError):
    """The output file cannot be written; the message is one line for the user."""


# How long a run may hold a measured record before writing it (SIGKILL loses at most this much).
FLUSH_INTERVAL_S = 0.1
# A batch is written early once it holds this much.
MAX_BATCH_BYTES = 1 << 20


class Batch:
    """Lines waiting to be written; `due` is when the oldest must be out."""

    def __init__(self, flush_interval: float):
        self.flush_interval = flush_interval
        self.lines: list[bytes] = []
        self.size = 0
        self.due = 0.0

    def add(self, line: bytes) -> bool:
        """Keep the line; True when the batch should be written now."""
        if not self.lines:
            self.due = time.monotonic() + self.flush_interval
        self.lines.append(line)
        self.size += len(line)
        return self.size >= MAX_BATCH_BYTES or time.monotonic() >= self.due

    def take(self) -> bytes:
        data = b"".join(self.lines)
        self.lines.clear()
        self.size = 0
        return data


class AppendFile:
    """`append` writes at once, or with `flush_interval` > 0 in batches (flush(), close())."""

    def __init__(self, path: str, flush_interval: float = 0.0):
        self.path = path
        self.readable = True
        self.batch = Batch(flush_interval) if flush_interval > 0 else None
        try:
            self.fd = self._open(path)
            mode = os.fstat(self.fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                os.close(self.fd)
                raise OSError(errno.EINVAL, "not a regular file (a pipe or socket)")
            os.set_blocking(self.fd, True)
        except OSError as exc:
            raise OutputError(f"cannot open output file {path}: {exc.strerror or exc}") from None

    def _open(self, path: str) -> int:
        """Open for appending, and for reading if allowed (to look at the last byte
        through this descriptor, not by name: the name may be a rotated file's by now).
        Non-blocking, so that a FIFO without a reader is an error instead of a hang."""
        flags = os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            return os.open(path, os.O_RDWR | flags, 0o644)
        except PermissionError:
            self.readable = False
            return os.open(path, os.O_WRONLY | flags, 0o644)

    def append(self, line: bytes) -> None:
        if self.batch is None:
            self._write(line)
        elif self.batch.add(line):
            self.flush()

    @property
    def pending(self) -> bool:
        return bool(self.batch and self.batch.lines)

    def flush(self) -> None:
        if self.batch is not None and self.batch.lines:
            self._write(self.batch.take())

    def _write(self, line: bytes) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(self.fd).st_size
            if size and not self._ends_with_newline(size):
                # A writer killed mid-line left a fragment: start on a fresh line
                # so that our record stays whole (readers skip the fragment).
                line = b"\n" + line
            try:
                written = os.write(self.fd, line)
                if written != len(line):
                    raise OSError(28, "No space left on device (short write)")
            except OSError as exc:
                try:
                    os.ftruncate(self.fd, size)  # leave no partial record behind
                except OSError:
                    pass  # not a regular file (/dev/full, a pipe): nothing to roll back
                raise OutputError(f"cannot write to output file {self.path}: {exc.strerror}") from None
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Write what is batched, and close (closed even when that write fails)."""
        try:
            self.flush()
        finally:
            os.close(self.fd)

    def _ends_with_newline(self, size: int) -> bool:
        try:
            if self.readable:
                return os.pread(self.fd, 1, size - 1) == b"\n"
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                return f.read(1) == b"\n"
        except OSError:
            return True


def csv_row(record: dict[str, Any]) -> list[str]:
    row = []
    for name in RECORD_FIELDS:
        value = record.get(name)
        if isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str)
        row.append("" if value is None else str(value))
    return row


class StdoutWriter:
    """Streams jsonl and csv as results arrive (jsonl with `flush_interval` > 0 in batches:
    flush(), close()); json and table are printed at the end."""

    def __init__(self, fmt: str, stream: TextIO | None = None, flush_interval: float = 0.0):
        self.fmt = fmt
        self.stream = stream or sys.stdout
        self.kept: list[dict[str, Any]] = []
        self.batch = Batch(flush_interval) if flush_interval > 0 else None
        if fmt == "csv":
            self.csv = csv.writer(self.stream, lineterminator="\n")
            self.csv.writerow(RECORD_FIELDS)

    def write(self, record: dict[str, Any], line: bytes | None = None) -> None:
        """One record; `line` is its to_json_line, when the caller has it already."""
        fmt = self.fmt
        if fmt == "jsonl":
            line = line or to_json_line(record)
            if self.batch is None:
                self._out(line)
            elif self.batch.add(line):
                self.flush()
        elif fmt == "csv":
            self._out(csv_row(record))
        elif fmt != "closed":
            self.kept.append(record)

    @property
    def pending(self) -> bool:
        return bool(self.batch and self.batch.lines)

    def flush(self) -> None:
        if self.batch is not None and self.batch.lines:
            self._out(self.batch.take())

    def close(self) -> None:
        self.flush()

    def _out(self, data: bytes | list[str]) -> None:
        try:
            if self.fmt == "jsonl":
                self.stream.write(data.decode("ascii"))
            elif self.fmt == "csv":
                self.csv.writerow(data)
            else:
                return
            self.stream.flush()
        except BrokenPipeError:
            # The reader went away (`netprobe run | head`): the run and its
            # --output archive go on; stdout is pointed at /dev/null so that
            # the interpreter's final flush does not fail either.
            self.fmt = "closed"
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())
                os.close(devnull)
            except (OSError, ValueError, io.UnsupportedOperation):
                pass

    def json_text(self) -> str:
        buffer = io.StringIO()
        json.dump(self.kept, buffer, ensure_ascii=True, indent=2, default=str)
        return buffer.getvalue() + "\n"


class RecordSink:
    """Every record of one command, to the --output archive and to stdout: `run`,
    `import ooni` and `atlas fetch` all write through this one object, so all three
    append whole lines under the lock and (`flush_interval` > 0) in batches.

    An archive that fails is written no more: its first error is kept in `failure`
    and raised once, after stdout has the record (a run shows what it measured and
    stops; a command turns the error into one line and exit 2).  close() writes
    what is batched, so an interrupted command loses nothing it had written.
    """

    def __init__(self, fmt: str, output: str | None, quiet: bool, flush_interval: float = 0.0):
        """The archive is opened first (OutputError: the user's to fix), before stdout's csv header."""
        self.archive = AppendFile(output, flush_interval=flush_interval) if output else None
        self.stdout = None if quiet else StdoutWriter(fmt, flush_interval=flush_interval)
        self.failure: OutputError | None = None

    def write(self, record: dict[str, Any]) -> None:
        line = error = None
        if self.archive is not None and self.failure is None:
            line = to_json_line(record)
            try:
                self.archive.append(line)
            except OutputError as exc:
                self.failure = error = exc
        if self.stdout is not None:
            self.stdout.write(record, line)
        if error is not None:
            raise error

    @property
    def pending(self) -> bool:
        """Lines batched and not yet written: the caller's timer flushes them."""
        return (self.archive is not None and self.archive.pending
                or self.stdout is not None and self.stdout.pending)

    @property
    def kept(self) -> list[dict[str, Any]]:
        """The records stdout prints at the end (json, table, ooni)."""
        return self.stdout.kept if self.stdout is not None else []

    def flush(self) -> None:
        error = None
        if self.archive is not None and self.failure is None:
            try:
                self.archive.flush()
            except OutputError as exc:
                self.failure = error = exc
        if self.stdout is not None:
            self.stdout.flush()
        if error is not None:
            raise error

    def close(self) -> None:
        """Write what is batched, and close the archive (closed even when that write fails)."""
        if self.stdout is not None:
            self.stdout.close()
        if self.archive is not None:
            archive, self.archive = self.archive, None
            archive.close()
