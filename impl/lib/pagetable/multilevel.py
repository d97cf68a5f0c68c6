"""Editing multi-level page tables (layout: ``pagingcheck.model.pagetable.multilevel``).

The root table is allocated by ``create``; lower tables are allocated by
``set_pte`` on first need, all of a path at once or none of it. ``clear``
only zeroes the leaf word: a lower table that becomes empty stays allocated
until ``destroy`` frees the whole tree.
"""

from __future__ import annotations

from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.memory import Memory, fill
from pagingcheck.impl.lib.pagetable.base import TableEditor, free_words
from pagingcheck.model.errors import InternalError
from pagingcheck.model.pagetable.multilevel import MultilevelFormat, upper_entry


class MultilevelEditor(TableEditor):
    """A tree of ``config.levels`` levels of tables; the asid is ignored."""

    layout: MultilevelFormat

    def create(
        self, memory: Memory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """Allocate a zeroed root table; its address, or None if no memory."""
        return self.alloc_zeroed(memory, kalloc, self.layout.table_size(0))

    def set_pte(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int, pte: int
    ) -> bool:
        """Write ``pte`` for ``vpn``, allocating the missing lower tables of its path.

        A zero ``pte`` is a clear (allocates nothing). Returns False, with
        memory and ``kalloc`` untouched, when the missing tables do not all fit.
        """
        self.check("set_pte", root, vpn)
        if pte == 0:
            self.clear(memory, kalloc, root, asid, vpn)
            return True
        layout = self.layout
        level, table = layout.path_end(memory, root, vpn)
        missing = range(level + 1, layout.leaf_level + 1)
        # Decide: the allocations must all succeed on a trial copy first.
        trial = kalloc.copy()
        if any(trial.alloc(layout.table_size(lower)) is None for lower in missing):
            return False
        # Perform: the same allocations on the real allocator cannot fail.
        for lower in missing:
            below = kalloc.alloc(layout.table_size(lower))
            if below is None:
                raise InternalError(f"MultilevelEditor.set_pte: allocation for vpn {vpn} failed")
            fill(memory, below, layout.table_size(lower), 0)
            memory.write(table + layout.index(vpn, lower - 1), upper_entry(below))
            table = below
        memory.write(table + layout.index(vpn, layout.leaf_level), pte)
        return True

    def clear(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Zero the leaf word of ``vpn`` if its path exists; tables are kept."""
        self.check("clear", root, vpn)
        level, table = self.layout.path_end(memory, root, vpn)
        if level == self.layout.leaf_level:
            memory.write(table + self.layout.index(vpn, level), 0)

    def destroy(self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int) -> None:
        """Fill every table with FREED_PATTERN and free it, leaves first."""
        self.check("destroy", root)
        for level, table, _ in reversed(self.layout.tables(memory, root)):
            free_words(memory, kalloc, table, self.layout.table_size(level))
