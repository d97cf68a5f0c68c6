"""Word access to physical memory for kernel code: trial edits and the freed pattern.

Kernel code reaches memory through anything with ``read`` and ``write``
(:class:`Memory`): the hardware port itself, or an :class:`Overlay` on it.
An overlay is how a kernel decides before it performs: it makes a series of
edits (building a page table, say) as a trial, reading through to the port
and keeping its writes to itself; if the trial succeeds, :meth:`Overlay.commit`
writes them to the port, and if it fails, the overlay is dropped and
nothing changed.
"""

from __future__ import annotations

from typing import Protocol

#: Written into memory the kernel frees (a frame, table memory), so a use after
#: free shows in the data rather than passing silently.
FREED_PATTERN = 0xDEADBEEF


class Memory(Protocol):
    """Word access to physical memory."""

    def read(self, pa: int) -> int:
        """The word at physical address ``pa``."""
        ...

    def write(self, pa: int, value: int) -> None:
        """Store ``value`` at physical address ``pa``."""
        ...


class Overlay:
    """Trial writes over a :class:`Memory`: reads see them, the memory does not until commit."""

    __slots__ = ("base", "writes")

    def __init__(self, base: Memory) -> None:
        self.base = base
        self.writes: dict[int, int] = {}

    def read(self, pa: int) -> int:
        """The word at ``pa``: the trial's write if there is one, else the memory's."""
        if pa in self.writes:
            return self.writes[pa]
        return self.base.read(pa)

    def write(self, pa: int, value: int) -> None:
        """Record a trial write."""
        self.writes[pa] = value & 0xFFFF_FFFF

    def commit(self) -> None:
        """Write every trial write to the memory, in address order."""
        for pa, value in sorted(self.writes.items()):
            self.base.write(pa, value)
        self.writes.clear()


def fill(memory: Memory, address: int, words: int, value: int) -> None:
    """Write ``value`` into ``words`` words from ``address``."""
    for offset in range(words):
        memory.write(address + offset, value)
