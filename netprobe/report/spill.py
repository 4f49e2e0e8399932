"""Sorting more items than memory should hold: sorted chunks spilled to temporary files, merged.

A history is folded in time order (fold.py).  Archives are nearly always in
that order already; when they are not, or when the change list of a long,
flapping history grows large, items go through this sorter, whose memory is
bounded by `chunk` items in memory plus one small block per spilled chunk.
"""

from __future__ import annotations

import heapq
import marshal
import tempfile
from operator import itemgetter
from typing import Iterator

CHUNK = 50_000  # items sorted in memory before they are spilled
BLOCK = 512  # items per marshalled block: what the merge holds per chunk

_key = itemgetter(0)


class ExternalSorter:
    """add() items (tuples whose first field is the sort key, of one type), then iterate once:
    sorted by that key, items with equal keys in the order they were added."""

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
        self.items.sort(key=_key)
        spill = tempfile.TemporaryFile(prefix="netprobe-report-")
        items = self.items
        for start in range(0, len(items), BLOCK):
            marshal.dump(items[start:start + BLOCK], spill)
        spill.seek(0)
        self.files.append(spill)
        self.items = []

    def __iter__(self) -> Iterator[tuple]:
        self.items.sort(key=_key)
        if not self.files:
            yield from self.items
            return
        try:
            yield from heapq.merge(*(_blocks(f) for f in self.files), self.items, key=_key)
        finally:
            self.close()

    def close(self) -> None:
        for spill in self.files:
            spill.close()
        self.files = []
        self.items = []


def _blocks(spill) -> Iterator[tuple]:
    while True:
        try:
            block = marshal.load(spill)
        except EOFError:
            return
        yield from block
