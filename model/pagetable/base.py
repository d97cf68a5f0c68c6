"""What every page-table format offers the hardware and the checks: a read-only walk.

A format object holds only configuration, never table state: all table
state is in physical memory, so copying the machine copies the tables.
This half of a format is what the MMU's walker knows (the bit layout and
how to follow it); creating and editing tables is kernel software and
lives in the kernel library (``pagingcheck.impl.lib.pagetable``), which
builds on these layouts.

Every read-only operation is total: a table in memory is written by the
kernel under check, so it may be anything. A pointer that leaves physical
memory ends the walk (no entry), and a chain longer than any well-formed
one can be is cut. The checks find such tables malformed through
``table_words``; the walker itself never raises on table contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError


class Reader(Protocol):
    """Anything physical memory can be read through: the memory itself, the kernel's port."""

    def read(self, pa: int) -> int:
        """The word at physical address ``pa``."""
        ...


@dataclass(frozen=True)
class Entry:
    """A leaf entry found by a walk: where the PTE word lives and its value."""

    vpn: int
    pte_addr: int
    pte: int


class PageTableFormat(Protocol):
    """The read-only half every page-table format provides.

    ``root`` is the value the kernel loads into the MMU's page-table base
    register for an address space; ``asid`` names the address space (the
    inverted table needs it, the others ignore it). Root 0 means no table.
    """

    kind: str
    config: HardwareConfig

    def walk(self, memory: Reader, root: int, asid: int, vpn: int) -> Entry | None:
        """Hardware walk: the leaf entry for ``vpn``, or None when the table has none.

        Reads memory only. An entry whose PTE is not present is still returned.
        """
        ...

    def entries(self, memory: Reader, root: int, asid: int) -> list[Entry]:
        """Every leaf entry with a non-zero PTE, sorted by vpn."""
        ...

    def table_words(self, memory: Reader, root: int, asid: int) -> list[tuple[int, int]]:
        """The (address, length) ranges of memory this address space's table uses.

        A range may lie outside the kernel region or memory when the table is
        malformed; callers that check tables compare them with the region.
        """
        ...


class FormatBase:
    """What every format class shares: its configuration and bounds checks."""

    kind = "abstract"

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config
        self._memory_words = config.memory_words  # a derived size: asked on every walk

    def in_memory(self, address: int, words: int = 1) -> bool:
        """Whether ``words`` words from ``address`` lie inside physical memory."""
        return address >= 0 and address + words <= self._memory_words

    def check_vpn(self, where: str, vpn: int) -> None:
        """Raise InternalError for a vpn outside the address space (a caller's bug:
        the MMU and the kernel library only walk vpns they computed)."""
        if not 0 <= vpn < self.config.va_pages:
            raise InternalError(f"{type(self).__name__}.{where}: vpn {vpn} out of range")
