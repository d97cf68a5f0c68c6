"""Inverted page table: one system-wide entry per user frame, found by hashing.

The kernel allocates the one table of the system (``H = hash_buckets``,
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
the slot whose owner and vpn match. Every address space's root is the
system root. A frame has one slot, so a frame maps at most one (asid, vpn)
at a time. A link naming a slot that does not exist ends the chain, and a
chain is at most ``user_frames`` slots long.
"""

from __future__ import annotations

from pagingcheck.model.pagetable.base import Entry, FormatBase, Reader

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


class InvertedFormat(FormatBase):
    """One entry per user frame, shared by every address space, hashed by (asid, vpn)."""

    kind = "inverted"

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

    def _has_table(self, root: int) -> bool:
        return root != 0 and self.in_memory(root, self.table_size)

    def chain(self, memory: Reader, root: int, asid: int, vpn: int) -> list[tuple[int, int]]:
        """The chain (asid, vpn) hashes to: (link word, slot index) pairs. Reads only.

        Each slot comes with the address of the word that points at it (the
        anchor, or the previous slot's next word). A link naming no slot, or a
        chain longer than ``user_frames``, ends it.
        """
        result: list[tuple[int, int]] = []
        link = self.anchor_addr(root, asid, vpn)
        while (link_value := memory.read(link)) and len(result) < self.config.user_frames:
            index = link_value - 1
            if index >= self.config.user_frames:
                break
            result.append((link, index))
            link = self.slot_addr(root, index) + SLOT_NEXT
        return result

    def find(self, memory: Reader, root: int, asid: int, vpn: int) -> tuple[int, int] | None:
        """(link word, slot index) of the slot of (asid, vpn), or None. Reads only."""
        for link, index in self.chain(memory, root, asid, vpn):
            slot = self.slot_addr(root, index)
            owner, slot_vpn = memory.read(slot + SLOT_OWNER), memory.read(slot + SLOT_VPN)
            if owner == owner_word(asid) and slot_vpn == vpn:
                return link, index
        return None

    def owned(self, memory: Reader, root: int, asid: int) -> list[int]:
        """Indices of the slots ``asid`` owns."""
        if not self._has_table(root):
            return []
        return [
            index
            for index in range(self.config.user_frames)
            if memory.read(self.slot_addr(root, index) + SLOT_OWNER) == owner_word(asid)
        ]

    # -- the walk ----------------------------------------------------------------------

    def walk(self, memory: Reader, root: int, asid: int, vpn: int) -> Entry | None:
        """The slot of (asid, vpn) as an entry, or None (not resident, or root 0). Reads only."""
        self.check_vpn("walk", vpn)
        if not self._has_table(root):
            return None
        found = self.find(memory, root, asid, vpn)
        if found is None:
            return None
        pte_addr = self.slot_addr(root, found[1]) + SLOT_PTE
        return Entry(vpn, pte_addr, memory.read(pte_addr))

    def entries(self, memory: Reader, root: int, asid: int) -> list[Entry]:
        """The slots ``asid`` owns, by vpn."""
        found = [
            Entry(
                memory.read(self.slot_addr(root, index) + SLOT_VPN),
                self.slot_addr(root, index) + SLOT_PTE,
                memory.read(self.slot_addr(root, index) + SLOT_PTE),
            )
            for index in self.owned(memory, root, asid)
        ]
        return sorted(found, key=lambda entry: entry.vpn)

    def table_words(self, memory: Reader, root: int, asid: int) -> list[tuple[int, int]]:
        """The slots ``asid`` owns; the anchors and free slots belong to no address space."""
        return [
            (self.slot_addr(root, index), SLOT_WORDS) for index in self.owned(memory, root, asid)
        ]
