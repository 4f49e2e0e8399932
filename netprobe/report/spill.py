"""Sorting more items than memory should hold: sorted chunks spilled to temporary files, merged.

A history is folded in time order (fold.py).  Archives are nearly always in
that order already; when they are not, or when the change list of a long,
flapping history grows large, items go through this sorter, whose memory is
bounded by `chunk` items in memory plus one small block for each of at most
MAX_FANIN spilled chunks (more are merged into fewer first).  Items are tuples
whose first two fields order them totally (a key, then a sequence number), so
that comparing them never reaches the rest.
"""

from __future__ import annotations

import heapq
import marshal
import tempfile
from typing import Iterator

CHUNK = 20_000  # items sorted in memory before they are spilled
BLOCK = 256  # items per marshalled block: what the merge holds per spilled chunk
MAX_FANIN = 128  # spilled chunks merged at once


class ExternalSorter:
    """add() items (tuples ordered by their first two fields: a key, then a number that is unique
    and increasing), then iterate once, in that order."""

    def __init__(self, chunk: int = CHUNK):
        self.chunk = chunk
        self.items: list[tuple] = []
        self.files: list = []
        self.count = 0

    def add(self, item: tuple) -> None:
        self.items.append(item)
        self.count += 1
        if len(self.items) >= self.chunk:
            self._spill()

    def _spill(self) -> None:
        self.items.sort()
        self.files.append(_write(self.items))
        self.items = []

    def __iter__(self) -> Iterator[tuple]:
        self.items.sort()
        if not self.files:
            yield from self.items
            return
        try:
            while len(self.files) > MAX_FANIN:  # merge the oldest into one, until few enough are left
                merged = _write(heapq.merge(*(_blocks(f) for f in self.files[:MAX_FANIN])))
                for spill in self.files[:MAX_FANIN]:
                    spill.close()
                self.files = [merged, *self.files[MAX_FANIN:]]
            yield from heapq.merge(*(_blocks(f) for f in self.files), self.items)
        finally:
            self.close()

    def close(self) -> None:
        for spill in self.files:
            spill.close()
        self.files = []
        self.items = []


def _write(items) -> object:
    """Items, in order, into a new temporary file in blocks of BLOCK (each a length and its
    marshalled bytes: read back with one read each); the file rewound."""
    spill = tempfile.TemporaryFile(prefix="netprobe-report-")
    block = []
    for item in items:
        block.append(item)
        if len(block) == BLOCK:
            _dump(block, spill)
            block = []
    if block:
        _dump(block, spill)
    spill.seek(0)
    return spill


def _dump(block: list, spill) -> None:
    data = marshal.dumps(block)
    spill.write(len(data).to_bytes(4, "little") + data)


def _blocks(spill) -> Iterator[tuple]:
    read = spill.read
    while True:
        head = read(4)
        if len(head) < 4:
            return
        yield from marshal.loads(read(int.from_bytes(head, "little")))
