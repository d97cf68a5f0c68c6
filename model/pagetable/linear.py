"""Linear page table: one PTE word per virtual page, in one array.

Layout of one address space's table (``N = va_pages``)::

    root -> +----------------+
            | PTE of vpn 0   |  root + 0
            | PTE of vpn 1   |  root + 1
            |      ...       |
            | PTE of vpn N-1 |  root + N - 1
            +----------------+

Each word is a PTE in the ``model.bits`` layout. A zero word means "no
entry"; a non-zero PTE without PRESENT (protection kept by the kernel for a
page that is not resident) is a real entry and the walk returns it. The
whole array is allocated by :meth:`LinearFormat.create`, so ``set_pte``
never needs memory and never fails.
"""

from __future__ import annotations

from pagingcheck.model.kalloc import KernelAllocator
from pagingcheck.model.memory import FREED_PATTERN, PhysicalMemory
from pagingcheck.model.pagetable.base import Entry, FormatBase


def pte_addr(root: int, vpn: int) -> int:
    """Address of the PTE word of ``vpn`` in the table at ``root``."""
    return root + vpn


class LinearFormat(FormatBase):
    """One array of ``va_pages`` PTE words per address space; the asid is ignored."""

    kind = "linear"

    def create(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """Allocate ``va_pages`` zeroed words; return their address, or None if no memory."""
        return self._alloc_zeroed(memory, kalloc, self.config.va_pages)

    def walk(self, memory: PhysicalMemory, root: int, asid: int, vpn: int) -> Entry | None:
        """The entry of ``vpn``, or None if its word is zero or ``root`` is 0. Reads only."""
        if root == 0:
            return None
        self._check("walk", root, vpn)
        pte = memory.read(pte_addr(root, vpn))
        return Entry(vpn, pte_addr(root, vpn), pte) if pte else None

    def set_pte(
        self,
        memory: PhysicalMemory,
        kalloc: KernelAllocator,
        root: int,
        asid: int,
        vpn: int,
        pte: int,
    ) -> bool:
        """Write ``pte`` into the word of ``vpn``; always True."""
        self._check("set_pte", root, vpn)
        memory.write(pte_addr(root, vpn), pte)
        return True

    def clear(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Zero the word of ``vpn``."""
        self._check("clear", root, vpn)
        memory.write(pte_addr(root, vpn), 0)

    def entries(self, memory: PhysicalMemory, root: int, asid: int) -> list[Entry]:
        """Every non-zero PTE, by vpn."""
        self._check("entries", root)
        found = (self.walk(memory, root, asid, vpn) for vpn in range(self.config.va_pages))
        return [entry for entry in found if entry is not None]

    def table_words(self, memory: PhysicalMemory, root: int, asid: int) -> list[tuple[int, int]]:
        """The one array: ``[(root, va_pages)]``."""
        self._check("table_words", root)
        return [(root, self.config.va_pages)]

    def destroy(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int
    ) -> None:
        """Fill the array with FREED_PATTERN and free it."""
        self._check("destroy", root)
        for vpn in range(self.config.va_pages):
            memory.write(pte_addr(root, vpn), FREED_PATTERN)
        kalloc.free(root, self.config.va_pages)
