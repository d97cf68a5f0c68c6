"""Editing the inverted page table (layout: ``pagingcheck.model.pagetable.inverted``).

Only resident pages are in the table: ``set_pte`` with a non-present PTE is
a ``clear``. A kernel that wants protection or swap location for pages
that are not resident keeps it in its own per-process records. ``boot``
allocates the one table; ``create`` allocates nothing and returns
``system_root`` for every asid; ``destroy`` clears that asid's slots and
frees nothing. Nothing after ``boot`` allocates, so only ``boot`` can run
out of memory. Installing a PTE for a frame whose slot holds another page
is a kernel bug (InternalError): clear that page first.
"""

from __future__ import annotations

from pagingcheck.impl.lib.kalloc import KernelAllocator
from pagingcheck.impl.lib.memory import Memory, fill
from pagingcheck.impl.lib.pagetable.base import TableEditor
from pagingcheck.model import bits
from pagingcheck.model.errors import InternalError
from pagingcheck.model.pagetable.inverted import (
    SLOT_NEXT,
    SLOT_OWNER,
    SLOT_PTE,
    SLOT_VPN,
    SLOT_WORDS,
    InvertedFormat,
    owner_word,
)


class InvertedEditor(TableEditor):
    """One entry per user frame, shared by every address space, hashed by (asid, vpn)."""

    layout: InvertedFormat

    def check(self, where: str, root: int, vpn: int | None = None, asid: int = 0) -> None:
        """Raise InternalError for a missing system table, a bad asid or vpn."""
        if root <= 0:
            raise InternalError(f"InvertedEditor.{where}: system root {root}: boot first")
        if not 0 <= asid < bits.WORD_MASK:
            raise InternalError(f"InvertedEditor.{where}: asid {asid} out of range")
        super().check(where, root, vpn)

    def boot(self, memory: Memory, kalloc: KernelAllocator) -> int | None:
        """Allocate and zero the system-wide table; its address, or None if no memory."""
        return self.alloc_zeroed(memory, kalloc, self.layout.table_size)

    def create(
        self, memory: Memory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """``system_root`` itself: every address space shares the one table."""
        self.check("create", system_root, asid=asid)
        return system_root

    def set_pte(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int, pte: int
    ) -> bool:
        """Put (asid, vpn, pte) in the slot of ``pte``'s frame; always True.

        A non-present ``pte`` is a clear. If (asid, vpn) sat in another
        frame's slot it moves. Raises InternalError when ``pte`` names a frame
        outside the user pool or a slot that holds a different page.
        """
        self.check("set_pte", root, vpn, asid)
        if not bits.is_present(pte):
            self.clear(memory, kalloc, root, asid, vpn)
            return True
        layout = self.layout
        index = bits.pfn(pte) - self.config.first_user_frame
        if not 0 <= index < self.config.user_frames:
            raise InternalError(
                f"InvertedEditor.set_pte: PTE {pte:#010x} for vpn {vpn} (asid {asid}) names "
                f"frame {bits.pfn(pte)}, which has no slot: only user frames can be mapped"
            )
        slot = layout.slot_addr(root, index)
        owner, slot_vpn = memory.read(slot + SLOT_OWNER), memory.read(slot + SLOT_VPN)
        if owner == owner_word(asid) and slot_vpn == vpn:
            memory.write(slot + SLOT_PTE, pte)
            return True
        if owner != 0:
            raise InternalError(
                f"InvertedEditor.set_pte: frame {bits.pfn(pte)} already maps vpn {slot_vpn} "
                f"of asid {owner - 1}; clear it before mapping vpn {vpn} of asid {asid}"
            )
        self.clear(memory, kalloc, root, asid, vpn)
        head = layout.anchor_addr(root, asid, vpn)
        memory.write(slot + SLOT_OWNER, owner_word(asid))
        memory.write(slot + SLOT_VPN, vpn)
        memory.write(slot + SLOT_PTE, pte)
        memory.write(slot + SLOT_NEXT, memory.read(head))
        memory.write(head, index + 1)
        return True

    def clear(
        self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Unlink and free the slot of (asid, vpn), if it has one."""
        self.check("clear", root, vpn, asid)
        found = self.layout.find(memory, root, asid, vpn)
        if found is None:
            return
        link, index = found
        slot = self.layout.slot_addr(root, index)
        memory.write(link, memory.read(slot + SLOT_NEXT))
        fill(memory, slot, SLOT_WORDS, 0)

    def destroy(self, memory: Memory, kalloc: KernelAllocator, root: int, asid: int) -> None:
        """Clear every slot ``asid`` owns; the table itself stays."""
        self.check("destroy", root, asid=asid)
        for entry in self.layout.entries(memory, root, asid):
            self.clear(memory, kalloc, root, asid, entry.vpn)
