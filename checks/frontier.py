"""The explorer's queue of states still to expand, which spills to disk when it grows.

A breadth-first search of a larger configuration holds a whole level of
states at once, each a full copy of the system. Beyond ``keep`` states in
memory, newly queued states are pickled in chunks to files in a temporary
folder and read back, in order, when the states in memory run out; first in,
first out is kept, so the search stays breadth first. A state that cannot be
pickled (a kernel running contained in a process of its own is a handle on
that process, not a value) stays in memory, and :attr:`Frontier.spillable`
says so.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

#: States kept in memory before the queue spills to disk.
KEEP_IN_MEMORY = 50_000
#: States per file written when spilling.
CHUNK = 2_000


class Frontier(Generic[T]):
    """A first-in first-out queue whose tail lives on disk once it is long."""

    def __init__(self, keep: int = KEEP_IN_MEMORY, chunk: int | None = None) -> None:
        self.keep = keep
        self.chunk = chunk or min(CHUNK, keep)  # never more at once than it keeps
        self.head: deque[T] = deque()  # in memory, taken first
        self.tail: list[T] = []  # in memory, waiting to be written after the spilled ones
        self.files: deque[tuple[Path, int]] = deque()  # spilled chunks, oldest first
        self.folder: Path | None = None
        self.count = 0
        self.spilled = 0  # states ever written to disk
        self.spillable = True

    def __len__(self) -> int:
        return self.count

    def append(self, item: T) -> None:
        """Queue ``item`` last."""
        self.count += 1
        if not self.files and not self.tail and len(self.head) < self.keep:
            self.head.append(item)
            return
        self.tail.append(item)
        if len(self.tail) >= self.chunk and self.spillable:
            self._spill()

    def popleft(self) -> T:
        """Take the first item queued (IndexError when empty)."""
        if not self.head:
            self._refill()
        item = self.head.popleft()
        self.count -= 1
        return item

    def close(self) -> None:
        """Delete the spilled files."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.files.clear()

    def _spill(self) -> None:
        try:
            data = pickle.dumps(self.tail, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            self.spillable = False  # keep everything in memory from now on
            return
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="pagingcheck-frontier-"))
        path = self.folder / f"{self.spilled:012d}.pickle"
        path.write_bytes(data)
        self.files.append((path, len(self.tail)))
        self.spilled += len(self.tail)
        self.tail = []

    def _refill(self) -> None:
        if self.files:
            path, _ = self.files.popleft()
            self.head.extend(pickle.loads(path.read_bytes()))
            path.unlink()
        else:
            self.head.extend(self.tail)
            self.tail = []
