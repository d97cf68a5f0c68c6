"""Multi-level page table: a tree of tables, each indexed by one slice of the vpn.

The vpn has ``B = log2(va_pages)`` bits. They are cut into ``L = levels``
slices, level 0 (the root) taking the most significant ones: as
``level_bits`` says (a 9/11 split, say), or else evenly: every level gets
``B // L`` bits and the ``B % L`` remainder bits go one each to the levels
nearest the root, so B=6, L=4 gives 2,2,1,1 bits. A table at level
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
the format is the linear table. A next-table address whose table would not
fit in memory ends the walk, as a missing table does.
"""

from __future__ import annotations

from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import ConfigError
from pagingcheck.model.pagetable.base import Entry, FormatBase, Reader


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
        self.level_bits = config.level_bits or split_vpn_bits(vpn_bits, config.levels)
        # The geometry, worked out once: every walk asks for it at every level.
        self._sizes = tuple(1 << level_bits for level_bits in self.level_bits)
        self._shifts = tuple(
            sum(self.level_bits[level + 1 :]) for level in range(len(self.level_bits))
        )

    # -- geometry ------------------------------------------------------------------

    @property
    def leaf_level(self) -> int:
        """Index of the last level, whose words are PTEs."""
        return len(self._sizes) - 1

    def table_size(self, level: int) -> int:
        """Words in a table at ``level``."""
        return self._sizes[level]

    def index(self, vpn: int, level: int) -> int:
        """The slice of ``vpn`` that indexes a table at ``level``."""
        return (vpn >> self._shifts[level]) & (self._sizes[level] - 1)

    def below(self, memory: Reader, table: int, level: int, slot: int) -> int | None:
        """The table at ``level + 1`` that slot ``slot`` of ``table`` points at, or None
        (no table, or one that would not fit in memory). Reads only."""
        lower = next_table(memory.read(table + slot))
        if lower is None or not self.in_memory(lower, self.table_size(level + 1)):
            return None
        return lower

    def path_end(self, memory: Reader, root: int, vpn: int) -> tuple[int, int]:
        """Follow ``vpn``'s path from ``root`` as far as it goes; reads only.

        Returns ``(level, table)``: the leaf table when ``level == leaf_level``,
        else the deepest table on the path, whose entry for ``vpn`` points nowhere.
        """
        table = root
        for level in range(self.leaf_level):
            lower = self.below(memory, table, level, self.index(vpn, level))
            if lower is None:
                return level, table
            table = lower
        return self.leaf_level, table

    # -- the walk ------------------------------------------------------------------

    def walk(self, memory: Reader, root: int, asid: int, vpn: int) -> Entry | None:
        """The leaf entry of ``vpn``, or None (no path, zero PTE, or root 0). Reads only."""
        self.check_vpn("walk", vpn)
        if root == 0 or not self.in_memory(root, self.table_size(0)):
            return None
        level, table = self.path_end(memory, root, vpn)
        if level != self.leaf_level:
            return None
        addr = table + self.index(vpn, level)
        pte = memory.read(addr)
        return Entry(vpn, addr, pte) if pte else None

    def tables(self, memory: Reader, root: int) -> list[tuple[int, int, int]]:
        """Every table of the tree as (level, address, vpn prefix), parents first.

        A table reached twice (a malformed tree) is listed each time it is
        reached but descended into once, so the walk always ends.
        """
        if root == 0:
            return []
        found = [(0, root, 0)]
        if not self.in_memory(root, self.table_size(0)):
            return found
        queue = list(found)
        seen = {root}
        while queue:
            level, table, prefix = queue.pop(0)
            if level == self.leaf_level:
                continue
            for slot in range(self.table_size(level)):
                lower = self.below(memory, table, level, slot)
                if lower is None:
                    continue
                child = (level + 1, lower, prefix << self.level_bits[level] | slot)
                found.append(child)
                if lower not in seen:
                    seen.add(lower)
                    queue.append(child)
        return found

    def entries(self, memory: Reader, root: int, asid: int) -> list[Entry]:
        """Every non-zero leaf PTE, by vpn."""
        result = []
        for level, table, prefix in self.tables(memory, root):
            if level != self.leaf_level or not self.in_memory(table, self.table_size(level)):
                continue
            for slot in range(self.table_size(level)):
                pte = memory.read(table + slot)
                if pte:
                    vpn = prefix << self.level_bits[level] | slot
                    result.append(Entry(vpn, table + slot, pte))
        return sorted(result, key=lambda entry: entry.vpn)

    def table_words(self, memory: Reader, root: int, asid: int) -> list[tuple[int, int]]:
        """Every table of the tree, root first."""
        return [(table, self.table_size(level)) for level, table, _ in self.tables(memory, root)]
