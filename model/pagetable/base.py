"""The interface every page-table format implements.

A format object holds only configuration, never table state: all table
state is in physical memory, so copying the machine copies the tables.
Tables live in the kernel region and are allocated with
:class:`~pagingcheck.model.kalloc.KernelAllocator`; running out of kernel
memory is reported as a value (``None`` / ``False``), never as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError
from pagingcheck.model.kalloc import KernelAllocator
from pagingcheck.model.memory import PhysicalMemory


@dataclass(frozen=True)
class Entry:
    """A leaf entry found by a walk: where the PTE word lives and its value."""

    vpn: int
    pte_addr: int
    pte: int


class PageTableFormat(Protocol):
    """What every page-table format provides.

    ``root`` is the value the kernel loads into the MMU's page-table base
    register for an address space; ``asid`` names the address space (the
    inverted table needs it, the others ignore it).
    """

    kind: str
    config: HardwareConfig

    def boot(self, memory: PhysicalMemory, kalloc: KernelAllocator) -> int | None:
        """Allocate system-wide structures once at boot; return ``system_root`` (0 if none).

        Returns None when kernel memory cannot hold them.
        """
        ...

    def create(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """Allocate and clear an empty table for ``asid``; return its root or None if no memory."""
        ...

    def walk(self, memory: PhysicalMemory, root: int, asid: int, vpn: int) -> Entry | None:
        """Hardware walk: the leaf entry for ``vpn``, or None when the table has none.

        Reads memory only. An entry whose PTE is not present is still returned.
        """
        ...

    def set_pte(
        self,
        memory: PhysicalMemory,
        kalloc: KernelAllocator,
        root: int,
        asid: int,
        vpn: int,
        pte: int,
    ) -> bool:
        """Install or overwrite the PTE for ``vpn``; False (nothing changed) if out of memory."""
        ...

    def clear(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Remove any entry for ``vpn``; afterwards ``walk`` returns None or a zero PTE."""
        ...

    def entries(self, memory: PhysicalMemory, root: int, asid: int) -> list[Entry]:
        """Every leaf entry with a non-zero PTE, sorted by vpn."""
        ...

    def table_words(self, memory: PhysicalMemory, root: int, asid: int) -> list[tuple[int, int]]:
        """The (address, length) ranges of kernel memory this address space's table uses."""
        ...

    def destroy(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int
    ) -> None:
        """Free every table structure of ``asid`` (system-wide structures stay)."""
        ...


class FormatBase:
    """What every format class shares: its configuration and the argument checks."""

    kind = "abstract"

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config

    def boot(self, memory: PhysicalMemory, kalloc: KernelAllocator) -> int | None:
        """No system-wide structures: returns 0."""
        return 0

    def _alloc_zeroed(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, words: int
    ) -> int | None:
        """``words`` zeroed words of kernel memory; their address, or None if none is left."""
        address = kalloc.alloc(words)
        if address is not None:
            memory.words[address : address + words] = 0
        return address

    def _check(self, where: str, root: int, vpn: int | None = None) -> None:
        """Raise InternalError (a kernel bug) for a null root or a vpn outside the space."""
        name = type(self).__name__
        if root <= 0:
            raise InternalError(f"{name}.{where}: root {root} is not a table")
        if vpn is not None and not 0 <= vpn < self.config.va_pages:
            raise InternalError(f"{name}.{where}: vpn {vpn} out of range")
