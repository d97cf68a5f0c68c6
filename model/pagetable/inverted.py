"""Inverted page table: one system-wide entry per user frame, found by hashing.

``boot`` allocates the one table of the system (``H = hash_buckets``,
``F = user_frames``); slot ``i`` describes frame ``first_user_frame + i``::

    system_root -> +-------------+
                   | anchor 0    |  slot index + 1 of the first slot of chain 0, 0 = empty
                   |    ...      |
                   | anchor H-1  |
                   +-------------+  system_root + H
                   | slot 0      |  4 words each
                   |    ...      |
                   | slot F-1    |
                   +-------------+

    slot i, at system_root + H + 4*i:
        +0  owner   asid + 1; 0 = the frame is in no table
        +1  vpn
        +2  PTE     always present while the slot is in use
        +3  next    slot index + 1 of the next slot in the same chain, 0 = end

    anchor(asid, vpn) = (asid + vpn) mod hash_buckets

The walk hashes (asid, vpn), follows the chain from that anchor and returns
the slot whose owner and vpn match. A frame has one slot, so a frame maps
at most one (asid, vpn) at a time: installing a PTE for a frame whose slot
holds another page is a kernel bug (InternalError); the kernel must clear
that page first. Frames are shared between address spaces only one mapping
at a time.

Only resident pages are in the table: ``set_pte`` with a non-present PTE is
a ``clear``. A kernel that wants protection or swap location for pages
that are not resident keeps it in its own per-process records, not here.
``create`` allocates nothing and returns ``system_root`` for every asid;
``destroy`` clears that asid's slots and frees nothing. Nothing after
``boot`` allocates, so only ``boot`` can run out of memory.
"""

from __future__ import annotations

from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError
from pagingcheck.model.kalloc import KernelAllocator
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.pagetable.base import Entry

SLOT_WORDS = 4
SLOT_OWNER = 0
SLOT_VPN = 1
SLOT_PTE = 2
SLOT_NEXT = 3


def anchor(asid: int, vpn: int, buckets: int) -> int:
    """The hash function: index of the anchor whose chain holds (asid, vpn)."""
    return (asid + vpn) % buckets


def owner_word(asid: int) -> int:
    """What a slot's owner word holds for ``asid`` (0 is kept for a free slot)."""
    return asid + 1


class InvertedFormat:
    """One entry per user frame, shared by every address space, hashed by (asid, vpn)."""

    kind = "inverted"

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config

    # -- layout ----------------------------------------------------------------------

    @property
    def table_size(self) -> int:
        """Words of the system-wide table: the anchors, then one slot per user frame."""
        return self.config.hash_buckets + SLOT_WORDS * self.config.user_frames

    def anchor_addr(self, root: int, asid: int, vpn: int) -> int:
        """Address of the anchor word of (asid, vpn)'s chain."""
        return root + anchor(asid, vpn, self.config.hash_buckets)

    def slot_addr(self, root: int, index: int) -> int:
        """Address of slot ``index`` (frame ``first_user_frame + index``)."""
        return root + self.config.hash_buckets + SLOT_WORDS * index

    def _check(self, where: str, root: int, asid: int, vpn: int | None = None) -> None:
        if root <= 0:
            raise InternalError(f"InvertedFormat.{where}: system root {root}: boot first")
        if not 0 <= asid < bits.WORD_MASK:
            raise InternalError(f"InvertedFormat.{where}: asid {asid} out of range")
        if vpn is not None and not 0 <= vpn < self.config.va_pages:
            raise InternalError(f"InvertedFormat.{where}: vpn {vpn} out of range")

    def _chain(
        self, memory: PhysicalMemory, root: int, asid: int, vpn: int
    ) -> list[tuple[int, int]]:
        """The chain (asid, vpn) hashes to: (link word, slot index) pairs. Reads only.

        Each slot comes with the address of the word that points at it (the
        anchor, or the previous slot's next word).
        """
        result: list[tuple[int, int]] = []
        head = link = self.anchor_addr(root, asid, vpn)
        while link_value := memory.read(link):
            index = link_value - 1
            if index >= self.config.user_frames or len(result) == self.config.user_frames:
                raise InternalError(
                    f"InvertedFormat: the chain of anchor {head - root} is broken at word {link}"
                )
            result.append((link, index))
            link = self.slot_addr(root, index) + SLOT_NEXT
        return result

    def _find(
        self, memory: PhysicalMemory, root: int, asid: int, vpn: int
    ) -> tuple[int, int] | None:
        """(link word, slot index) of the slot of (asid, vpn), or None. Reads only."""
        for link, index in self._chain(memory, root, asid, vpn):
            slot = self.slot_addr(root, index)
            owner, slot_vpn = memory.read(slot + SLOT_OWNER), memory.read(slot + SLOT_VPN)
            if owner == owner_word(asid) and slot_vpn == vpn:
                return link, index
        return None

    def _unlink(self, memory: PhysicalMemory, root: int, link: int, index: int) -> None:
        """Take slot ``index`` (pointed at by ``link``) out of its chain and mark it free."""
        slot = self.slot_addr(root, index)
        memory.write(link, memory.read(slot + SLOT_NEXT))
        for offset in range(SLOT_WORDS):
            memory.write(slot + offset, 0)

    def _owned(self, memory: PhysicalMemory, root: int, asid: int) -> list[int]:
        """Indices of the slots ``asid`` owns."""
        return [
            index
            for index in range(self.config.user_frames)
            if memory.read(self.slot_addr(root, index) + SLOT_OWNER) == owner_word(asid)
        ]

    # -- the format ------------------------------------------------------------------

    def boot(self, memory: PhysicalMemory, kalloc: KernelAllocator) -> int | None:
        """Allocate and zero the system-wide table; its address, or None if no memory."""
        root = kalloc.alloc(self.table_size)
        if root is None:
            return None
        for offset in range(self.table_size):
            memory.write(root + offset, 0)
        return root

    def create(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, asid: int, system_root: int
    ) -> int | None:
        """``system_root`` itself: every address space shares the one table."""
        self._check("create", system_root, asid)
        return system_root

    def walk(self, memory: PhysicalMemory, root: int, asid: int, vpn: int) -> Entry | None:
        """The slot of (asid, vpn) as an entry, or None (not resident, or root 0). Reads only."""
        if root == 0:
            return None
        self._check("walk", root, asid, vpn)
        found = self._find(memory, root, asid, vpn)
        if found is None:
            return None
        pte_addr = self.slot_addr(root, found[1]) + SLOT_PTE
        return Entry(vpn, pte_addr, memory.read(pte_addr))

    def set_pte(
        self,
        memory: PhysicalMemory,
        kalloc: KernelAllocator,
        root: int,
        asid: int,
        vpn: int,
        pte: int,
    ) -> bool:
        """Put (asid, vpn, pte) in the slot of ``pte``'s frame; always True.

        A non-present ``pte`` is a clear. If (asid, vpn) sat in another
        frame's slot it moves. Raises InternalError when ``pte`` names a frame
        outside the user pool or a slot that holds a different page.
        """
        self._check("set_pte", root, asid, vpn)
        if not bits.is_present(pte):
            self.clear(memory, kalloc, root, asid, vpn)
            return True
        index = bits.pfn(pte) - self.config.first_user_frame
        if not 0 <= index < self.config.user_frames:
            raise InternalError(
                f"InvertedFormat.set_pte: PTE {pte:#010x} for vpn {vpn} (asid {asid}) names "
                f"frame {bits.pfn(pte)}, which has no slot: only user frames can be mapped"
            )
        slot = self.slot_addr(root, index)
        owner, slot_vpn = memory.read(slot + SLOT_OWNER), memory.read(slot + SLOT_VPN)
        if owner == owner_word(asid) and slot_vpn == vpn:
            memory.write(slot + SLOT_PTE, pte)
            return True
        if owner != 0:
            raise InternalError(
                f"InvertedFormat.set_pte: frame {bits.pfn(pte)} already maps vpn {slot_vpn} "
                f"of asid {owner - 1}; clear it before mapping vpn {vpn} of asid {asid}"
            )
        self.clear(memory, kalloc, root, asid, vpn)
        head = self.anchor_addr(root, asid, vpn)
        memory.write(slot + SLOT_OWNER, owner_word(asid))
        memory.write(slot + SLOT_VPN, vpn)
        memory.write(slot + SLOT_PTE, pte)
        memory.write(slot + SLOT_NEXT, memory.read(head))
        memory.write(head, index + 1)
        return True

    def clear(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int, vpn: int
    ) -> None:
        """Unlink and free the slot of (asid, vpn), if it has one."""
        self._check("clear", root, asid, vpn)
        found = self._find(memory, root, asid, vpn)
        if found is not None:
            self._unlink(memory, root, *found)

    def entries(self, memory: PhysicalMemory, root: int, asid: int) -> list[Entry]:
        """The slots ``asid`` owns, by vpn."""
        self._check("entries", root, asid)
        found = [
            Entry(
                memory.read(self.slot_addr(root, index) + SLOT_VPN),
                self.slot_addr(root, index) + SLOT_PTE,
                memory.read(self.slot_addr(root, index) + SLOT_PTE),
            )
            for index in self._owned(memory, root, asid)
        ]
        return sorted(found, key=lambda entry: entry.vpn)

    def table_words(self, memory: PhysicalMemory, root: int, asid: int) -> list[tuple[int, int]]:
        """The slots ``asid`` owns; the anchors and free slots belong to no address space."""
        self._check("table_words", root, asid)
        return [
            (self.slot_addr(root, index), SLOT_WORDS) for index in self._owned(memory, root, asid)
        ]

    def destroy(
        self, memory: PhysicalMemory, kalloc: KernelAllocator, root: int, asid: int
    ) -> None:
        """Clear every slot ``asid`` owns; the table itself stays."""
        self._check("destroy", root, asid)
        for entry in self.entries(memory, root, asid):
            self.clear(memory, kalloc, root, asid, entry.vpn)
