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
page that is not resident) is a real entry and the walk returns it.
"""

from __future__ import annotations

from pagingcheck.model.pagetable.base import Entry, FormatBase, Reader


def pte_addr(root: int, vpn: int) -> int:
    """Address of the PTE word of ``vpn`` in the table at ``root``."""
    return root + vpn


class LinearFormat(FormatBase):
    """One array of ``va_pages`` PTE words per address space; the asid is ignored."""

    kind = "linear"

    @property
    def table_size(self) -> int:
        """Words of one table."""
        return self.config.va_pages

    def walk(self, memory: Reader, root: int, asid: int, vpn: int) -> Entry | None:
        """The entry of ``vpn``, or None (zero word, root 0, table outside memory). Reads only."""
        self.check_vpn("walk", vpn)
        if root == 0 or not self.in_memory(root, self.table_size):
            return None
        pte = memory.read(pte_addr(root, vpn))
        return Entry(vpn, pte_addr(root, vpn), pte) if pte else None

    def entries(self, memory: Reader, root: int, asid: int) -> list[Entry]:
        """Every non-zero PTE, by vpn."""
        found = (self.walk(memory, root, asid, vpn) for vpn in range(self.config.va_pages))
        return [entry for entry in found if entry is not None]

    def table_words(self, memory: Reader, root: int, asid: int) -> list[tuple[int, int]]:
        """The one array: ``[(root, va_pages)]`` (nothing for root 0)."""
        return [(root, self.table_size)] if root else []
