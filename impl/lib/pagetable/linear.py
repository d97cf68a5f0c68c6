"""Editing linear page tables (layout: ``pagingcheck.model.pagetable.linear``).

The whole array is allocated by :meth:`LinearEditor.create`, so ``set_pte``
never needs memory and never fails.
"""

from __future__ import annotations

from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.memory import Memory
from pagingcheck.impl.lib.pagetable.base import TableEditor, free_words
from pagingcheck.model.pagetable.linear import LinearFormat, pte_addr


class LinearEditor(TableEditor):
    """One array of ``va_pages`` PTE words per address space; the asid is ignored."""

    layout: LinearFormat

    def create(
        self, memory: Memory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """Allocate ``va_pages`` zeroed words; return their address, or None if no memory."""
        return self.alloc_zeroed(memory, kalloc, self.config.va_pages)

    def set_pte(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int, pte: int
    ) -> bool:
        """Write ``pte`` into the word of ``vpn``; always True."""
        self.check("set_pte", root, vpn)
        memory.write(pte_addr(root, vpn), pte)
        return True

    def clear(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Zero the word of ``vpn``."""
        self.check("clear", root, vpn)
        memory.write(pte_addr(root, vpn), 0)

    def destroy(self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int) -> None:
        """Fill the array with FREED_PATTERN and free it."""
        self.check("destroy", root)
        free_words(memory, kalloc, root, self.config.va_pages)
