"""Multi-level page table: a tree of tables, each indexed by one slice of the vpn.

The vpn has ``B = log2(va_pages)`` bits. They are cut into ``L = levels``
slices, level 0 (the root) taking the most significant ones. Every level
gets ``B // L`` bits and the ``B % L`` remainder bits go one each to the
levels nearest the root, so B=6, L=4 gives 2,2,1,1 bits. A table at level
``i`` has ``2**bits[i]`` words::

    vpn:   | index at level 0 | index at level 1 | ... | index at level L-1 |
             (most significant)                          (least significant)

    root (level 0)        level 1                    level L-1 (leaf)
    +-------------+       +-------------+            +-------------+
    | upper entry |--+    | upper entry |--> ... --> | PTE         |
    | ...         |  +--> | ...         |            | ...         |
    +-------------+       +-------------+            +-------------+

Upper entry (levels 0 .. L-2), one word, in the PTE's own layout::

     31                                   8 7              1   0
    +--------------------------------------+----------------+---+
    |   word address of the next table     |       0        | P |
    +--------------------------------------+----------------+---+

    0 means no table below; PRESENT set means the next table exists.

Leaf words are PTEs (``model.bits``); zero means no entry. With ``L = 1``
the format is the linear table. The root table is allocated by ``create``;
lower tables are allocated by ``set_pte`` on first need, all of a path at
once or none of it. ``clear`` only zeroes the leaf word: a lower table that
becomes empty stays allocated until ``destroy`` frees the whole tree.
"""

from __future__ import annotations

from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import ConfigError, InternalError
from pagingcheck.model.kalloc import KernelAllocator
from pagingcheck.model.memory import FREED_PATTERN, PhysicalMemory
from pagingcheck.model.pagetable.base import Entry, FormatBase


def split_vpn_bits(vpn_bits: int, levels: int) -> tuple[int, ...]:
    """Bits of the vpn each level indexes with, root first; the remainder goes rootward."""
    share, extra = divmod(vpn_bits, levels)
    return tuple(share + (1 if level < extra else 0) for level in range(levels))


def upper_entry(table: int) -> int:
    """The upper-level word pointing at the table at address ``table``."""
    return bits.make_pte(table, 0)


def next_table(entry: int) -> int | None:
    """The table an upper-level word points at, or None when it points nowhere."""
    return bits.pfn(entry) if bits.is_present(entry) else None


class MultilevelFormat(FormatBase):
    """A tree of ``config.levels`` levels of tables; the asid is ignored."""

    kind = "multilevel"

    def __init__(self, config: HardwareConfig) -> None:
        vpn_bits = config.va_pages.bit_length() - 1
        if not 1 <= config.levels <= vpn_bits:
            raise ConfigError(
                f"hardware.levels: {config.levels} levels need 1 to {vpn_bits} vpn bits "
                f"(va_pages={config.va_pages}); use fewer levels or more pages"
            )
        if config.kernel_frames * config.page_words > 1 << bits.PFN_BITS:
            raise ConfigError(
                "hardware.kernel_frames: the kernel region must fit the 24-bit address "
                "field of an upper-level entry; use fewer kernel frames"
            )
        super().__init__(config)
        #: vpn bits indexed at each level, root first.
        self.level_bits = split_vpn_bits(vpn_bits, config.levels)

    # -- geometry ------------------------------------------------------------------

    @property
    def leaf_level(self) -> int:
        """Index of the last level, whose words are PTEs."""
        return len(self.level_bits) - 1

    def table_size(self, level: int) -> int:
        """Words in a table at ``level``."""
        return 1 << self.level_bits[level]

    def index(self, vpn: int, level: int) -> int:
        """The slice of ``vpn`` that indexes a table at ``level``."""
        shift = sum(self.level_bits[level + 1 :])
        return (vpn >> shift) & (self.table_size(level) - 1)

    def _path_end(self, memory: PhysicalMemory, root: int, vpn: int) -> tuple[int, int]:
        """Follow ``vpn``'s path from ``root`` as far as it goes; reads only.

        Returns ``(level, table)``: the leaf table when ``level == leaf_level``,
        else the deepest table on the path, whose entry for ``vpn`` points nowhere.
        """
        table = root
        for level in range(self.leaf_level):
            below = next_table(memory.read(table + self.index(vpn, level)))
            if below is None:
                return level, table
            table = below
        return self.leaf_level, table

    def _zero(self, memory: PhysicalMemory, table: int, level: int) -> None:
        for offset in range(self.table_size(level)):
            memory.write(table + offset, 0)

    # -- the format ----------------------------------------------------------------

    def create(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """Allocate a zeroed root table; its address, or None if no memory."""
        root = kalloc.alloc(self.table_size(0))
        if root is None:
            return None
        self._zero(memory, root, 0)
        return root

    def walk(self, memory: PhysicalMemory, root: int, asid: int, vpn: int) -> Entry | None:
        """The leaf entry of ``vpn``, or None (no path, zero PTE, or root 0). Reads only."""
        if root == 0:
            return None
        self._check("walk", root, vpn)
        level, table = self._path_end(memory, root, vpn)
        if level != self.leaf_level:
            return None
        addr = table + self.index(vpn, level)
        pte = memory.read(addr)
        return Entry(vpn, addr, pte) if pte else None

    def set_pte(
        self,
        memory: PhysicalMemory,
        kalloc: KernelAllocator,
        root: int,
        asid: int,
        vpn: int,
        pte: int,
    ) -> bool:
        """Write ``pte`` for ``vpn``, allocating the missing lower tables of its path.

        A zero ``pte`` is a clear (allocates nothing). Returns False, with
        memory and ``kalloc`` untouched, when the missing tables do not all fit.
        """
        self._check("set_pte", root, vpn)
        if pte == 0:
            self.clear(memory, kalloc, root, asid, vpn)
            return True
        level, table = self._path_end(memory, root, vpn)
        missing = range(level + 1, self.leaf_level + 1)
        # Decide: the allocations must all succeed on a trial copy first.
        trial = kalloc.copy()
        if any(trial.alloc(self.table_size(lower)) is None for lower in missing):
            return False
        # Perform: the same allocations on the real allocator cannot fail.
        for lower in missing:
            below = kalloc.alloc(self.table_size(lower))
            if below is None:
                raise InternalError(f"MultilevelFormat.set_pte: allocation for vpn {vpn} failed")
            self._zero(memory, below, lower)
            memory.write(table + self.index(vpn, lower - 1), upper_entry(below))
            table = below
        memory.write(table + self.index(vpn, self.leaf_level), pte)
        return True

    def clear(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Zero the leaf word of ``vpn`` if its path exists; tables are kept."""
        self._check("clear", root, vpn)
        level, table = self._path_end(memory, root, vpn)
        if level == self.leaf_level:
            memory.write(table + self.index(vpn, level), 0)

    def _tables(self, memory: PhysicalMemory, root: int) -> list[tuple[int, int, int]]:
        """Every table of the tree as (level, address, vpn prefix), parents first."""
        found = [(0, root, 0)]
        for level, table, prefix in found:
            if level == self.leaf_level:
                continue
            for slot in range(self.table_size(level)):
                below = next_table(memory.read(table + slot))
                if below is not None:
                    found.append((level + 1, below, prefix << self.level_bits[level] | slot))
        return found

    def entries(self, memory: PhysicalMemory, root: int, asid: int) -> list[Entry]:
        """Every non-zero leaf PTE, by vpn."""
        self._check("entries", root)
        result = []
        for level, table, prefix in self._tables(memory, root):
            if level != self.leaf_level:
                continue
            for slot in range(self.table_size(level)):
                pte = memory.read(table + slot)
                if pte:
                    vpn = prefix << self.level_bits[level] | slot
                    result.append(Entry(vpn, table + slot, pte))
        return sorted(result, key=lambda entry: entry.vpn)

    def table_words(self, memory: PhysicalMemory, root: int, asid: int) -> list[tuple[int, int]]:
        """Every table of the tree, root first."""
        self._check("table_words", root)
        return [(table, self.table_size(level)) for level, table, _ in self._tables(memory, root)]

    def destroy(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int
    ) -> None:
        """Fill every table with FREED_PATTERN and free it, leaves first."""
        self._check("destroy", root)
        for level, table, _ in reversed(self._tables(memory, root)):
            size = self.table_size(level)
            for offset in range(size):
                memory.write(table + offset, FREED_PATTERN)
            kalloc.free(table, size)
