"""Translation lookaside buffer: a small cache of PTEs, as a value.

The TLB has ``config.tlb_entries`` slots. Each occupied slot holds a
:class:`TlbEntry`: the address space and page it translates, the physical
address its PTE was read from, and a snapshot of that PTE word. The snapshot
is what the MMU translates with; it is *not* reread from memory, so when the
kernel changes a PTE without invalidating, the TLB goes on using the old
word. That staleness is real, and the checks are meant to catch it.

Matching (one rule, used by lookup, insert and invalidate):

* tagged (``config.tlb_tagged``): an entry matches ``(asid, vpn)`` when both
  are equal, so address spaces share the TLB safely;
* untagged: an entry matches any ``asid`` with the same ``vpn``. The asid
  field only records who loaded it; the kernel must flush on a switch.

Replacement rule: ``insert`` overwrites the entry matching the new one if
there is one. Otherwise it takes the lowest-numbered empty slot; when every
slot is full it takes the slot under the round-robin ``hand`` and moves the
hand to the next slot (wrapping). ``flush`` empties every slot and puts the
hand back at slot 0. Nothing else moves the hand.

Storage is an immutable tuple, so ``copy`` shares it and costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError


@dataclass(frozen=True)
class TlbEntry:
    """One cached translation: ``vpn`` of ``asid`` uses PTE word ``pte`` read from ``pte_addr``."""

    asid: int
    vpn: int
    pte_addr: int
    pte: int


Slots = tuple[TlbEntry | None, ...]
Snapshot = tuple[int, tuple[tuple[int, int, int, int] | None, ...]]


class TLB:
    """``tlb_entries`` slots, tagged by asid or not, with round-robin replacement."""

    __slots__ = ("hand", "slots", "tagged")

    def __init__(self, config: HardwareConfig) -> None:
        self.tagged: bool = config.tlb_tagged
        self.slots: Slots = (None,) * config.tlb_entries
        self.hand: int = 0

    def _matches(self, entry: TlbEntry, asid: int, vpn: int) -> bool:
        return entry.vpn == vpn and (not self.tagged or entry.asid == asid)

    def _check_slot(self, slot: int, caller: str) -> None:
        if not 0 <= slot < len(self.slots):
            raise InternalError(f"TLB.{caller}: slot {slot} out of range 0..{len(self.slots) - 1}")

    # -- reading ---------------------------------------------------------------

    def lookup(self, asid: int, vpn: int) -> tuple[int, TlbEntry] | None:
        """The lowest slot whose entry matches ``(asid, vpn)`` and that entry, or None (a miss)."""
        for slot, entry in enumerate(self.slots):
            if entry is not None and self._matches(entry, asid, vpn):
                return slot, entry
        return None

    def entries(self) -> tuple[TlbEntry, ...]:
        """The occupied slots' entries, in slot order."""
        return tuple(entry for entry in self.slots if entry is not None)

    def victim(self, entry: TlbEntry) -> int:
        """The slot ``insert(entry)`` would write (see the replacement rule above)."""
        found = self.lookup(entry.asid, entry.vpn)
        if found is not None:
            return found[0]
        for slot, occupant in enumerate(self.slots):
            if occupant is None:
                return slot
        return self.hand

    # -- changing ----------------------------------------------------------------

    def insert(self, entry: TlbEntry) -> int:
        """Cache ``entry`` in the slot chosen by the replacement rule; return that slot."""
        slot = self.victim(entry)
        occupant = self.slots[slot]
        evicts = occupant is not None and not self._matches(occupant, entry.asid, entry.vpn)
        self._set(slot, entry)
        if evicts:
            self.hand = (slot + 1) % len(self.slots)
        return slot

    def update(self, slot: int, entry: TlbEntry) -> None:
        """Overwrite ``slot`` with ``entry`` (the MMU uses it to record R/M bits)."""
        self._check_slot(slot, "update")
        self._set(slot, entry)

    def invalidate(self, asid: int, vpn: int) -> None:
        """Empty every slot matching ``(asid, vpn)`` (untagged: any asid with that vpn)."""
        self.slots = tuple(
            None if entry is not None and self._matches(entry, asid, vpn) else entry
            for entry in self.slots
        )

    def flush_asid(self, asid: int) -> None:
        """Empty every slot loaded for ``asid`` (by the recorded asid, in either mode)."""
        self.slots = tuple(
            None if entry is not None and entry.asid == asid else entry for entry in self.slots
        )

    def flush(self) -> None:
        """Empty every slot and reset the replacement hand to slot 0."""
        self.slots = (None,) * len(self.slots)
        self.hand = 0

    def _set(self, slot: int, entry: TlbEntry) -> None:
        self.slots = (*self.slots[:slot], entry, *self.slots[slot + 1 :])

    # -- values --------------------------------------------------------------------

    def copy(self) -> TLB:
        """An independent copy (the slot tuple is immutable, so it is shared)."""
        clone = TLB.__new__(TLB)
        clone.tagged = self.tagged
        clone.slots = self.slots
        clone.hand = self.hand
        return clone

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TLB)
            and self.tagged == other.tagged
            and self.hand == other.hand
            and self.slots == other.slots
        )

    __hash__ = None  # type: ignore[assignment]

    def snapshot(self) -> Snapshot:
        """A hashable value: ``(hand, per slot (asid, vpn, pte_addr, pte) or None)``."""
        return self.hand, tuple(
            None if e is None else (e.asid, e.vpn, e.pte_addr, e.pte) for e in self.slots
        )
