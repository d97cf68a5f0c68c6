"""Memory management unit: user-mode address translation through the TLB.

Registers: ``ptbr`` (page-table base: the root of the current address
space's table) and ``asid`` (the current address-space id). The kernel loads
both with :meth:`MMU.load_context`; whether to flush the TLB at the same time
is the kernel's decision, never the MMU's.

Translating a user access to virtual address ``va``:

1. ``va`` outside ``[0, va_words)``: page fault.
2. ``vpn = va // page_words``, ``offset = va % page_words``.
3. Look up ``(asid, vpn)`` in the TLB. On a miss, a software-refilled TLB
   traps (TLB miss) and the kernel answers with :meth:`MMU.tlb_write`; a
   hardware-refilled TLB walks the table at ``ptbr``. No entry, or an entry
   that is not present: page fault.
4. Check the entry's PTE snapshot: the USER bit, plus EXEC for a fetch,
   READ for a read, WRITE for a write. Anything missing: protection fault.
5. If the snapshot lacks REFERENCED (or MODIFIED, on a write), OR the bit
   into the PTE word in memory at the entry's ``pte_addr`` and into the
   snapshot. A walked entry is inserted into the TLB with those bits.
6. The physical address is ``pfn * page_words + offset``, with ``pfn`` from
   the snapshot: a stale entry really reaches its stale frame, and its R/M
   write lands on whatever ``pte_addr`` now holds.

Decide, then perform: :meth:`MMU.resolve` does steps 1-4 and computes step 5
and 6 without changing anything; :meth:`MMU.translate` applies the result.
A refused access changes nothing (no TLB fill, no R/M write), so
:meth:`MMU.probe` answers exactly what ``translate`` would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pagingcheck.model import bits
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import InternalError
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.pagetable.base import Entry, PageTableFormat
from pagingcheck.model.tlb import TLB, TlbEntry
from pagingcheck.model.tlb import Snapshot as TlbSnapshot
from pagingcheck.model.traps import Access, Fault, TrapKind

#: Protection bits each access kind needs, besides USER.
NEEDED: dict[Access, int] = {
    Access.FETCH: bits.EXEC,
    Access.READ: bits.READ,
    Access.WRITE: bits.WRITE,
}


@dataclass(frozen=True)
class Translation:
    """An allowed access, decided but not yet performed.

    ``entry`` is the TLB entry to use with the R/M bits already ORed into its
    snapshot; ``slot`` is the TLB slot that hit, or None when ``entry`` came
    from a hardware walk and must be inserted; ``set_bits`` are the R/M bits
    to OR into the PTE word at ``entry.pte_addr`` (0 when none are missing).
    """

    pa: int
    entry: TlbEntry
    slot: int | None
    set_bits: int


class MMU:
    """Registers ``ptbr`` and ``asid``, a TLB, and the page-table format it walks."""

    __slots__ = ("asid", "config", "format", "ptbr", "tlb")

    def __init__(self, config: HardwareConfig, fmt: PageTableFormat) -> None:
        self.config = config
        self.format = fmt
        self.ptbr = 0
        self.asid = 0
        self.tlb = TLB(config)

    # -- user-mode translation ---------------------------------------------------

    def resolve(self, memory: PhysicalMemory, va: int, access: Access) -> Translation | Fault:
        """Decide how ``access`` to ``va`` translates, changing nothing.

        Returns the fault the access takes, or the translation to perform.
        Raises InternalError if the PTE used names a frame beyond memory.
        """
        if not 0 <= va < self.config.va_words:
            return Fault(TrapKind.PAGE_FAULT, va, access)
        vpn, offset = divmod(va, self.config.page_words)
        hit = self.tlb.lookup(self.asid, vpn)
        slot: int | None
        if hit is not None:
            slot, entry = hit
        elif self.config.tlb_refill == "software":
            return Fault(TrapKind.TLB_MISS, va, access)
        else:
            walked = self.format.walk(memory, self.ptbr, self.asid, vpn)
            if walked is None:
                return Fault(TrapKind.PAGE_FAULT, va, access)
            slot, entry = None, TlbEntry(self.asid, vpn, walked.pte_addr, walked.pte)
        if not bits.is_present(entry.pte):
            return Fault(TrapKind.PAGE_FAULT, va, access)
        needed = NEEDED[access] | bits.USER
        if entry.pte & needed != needed:
            return Fault(TrapKind.PROTECTION_FAULT, va, access)
        wanted = bits.REFERENCED | (bits.MODIFIED if access is Access.WRITE else 0)
        set_bits = wanted & ~entry.pte
        frame = bits.pfn(entry.pte)
        if frame >= self.config.total_frames:
            raise InternalError(
                f"MMU.resolve: PTE {entry.pte:#010x} for vpn {vpn} (asid {self.asid}) "
                f"names frame {frame}, beyond the {self.config.total_frames} frames of memory"
            )
        if set_bits:
            entry = replace(entry, pte=entry.pte | set_bits)
        return Translation(frame * self.config.page_words + offset, entry, slot, set_bits)

    def translate(self, memory: PhysicalMemory, va: int, access: Access) -> int | Fault:
        """Translate a user access: the physical address, or the fault it takes.

        Changes, for an allowed access only: the TLB (fill on a hardware walk,
        R/M bits in the snapshot) and the PTE word at the entry's ``pte_addr``.
        """
        decided = self.resolve(memory, va, access)
        if isinstance(decided, Fault):
            return decided
        entry = decided.entry
        if decided.set_bits:
            memory.write(entry.pte_addr, memory.read(entry.pte_addr) | decided.set_bits)
        if decided.slot is None:
            self.tlb.insert(entry)
        elif decided.set_bits:
            self.tlb.update(decided.slot, entry)
        return decided.pa

    def probe(self, memory: PhysicalMemory, va: int, access: Access) -> int | Fault:
        """What ``translate`` would answer now, with no side effects at all."""
        decided = self.resolve(memory, va, access)
        return decided if isinstance(decided, Fault) else decided.pa

    # -- kernel-side operations ----------------------------------------------------

    def load_context(self, ptbr: int, asid: int) -> None:
        """Load the page-table base and asid registers (the TLB is left alone)."""
        self.ptbr = ptbr
        self.asid = asid

    def tlb_write(self, entry: TlbEntry) -> int:
        """Software refill: cache ``entry`` by the TLB's replacement rule; return its slot."""
        return self.tlb.insert(entry)

    def walk(self, memory: PhysicalMemory, vpn: int) -> Entry | None:
        """Walk the current table (``ptbr``, ``asid``) for ``vpn``; reads memory only."""
        return self.format.walk(memory, self.ptbr, self.asid, vpn)

    # -- values ----------------------------------------------------------------------

    def copy(self) -> MMU:
        """An independent copy (configuration and format are shared: they hold no state)."""
        clone = MMU.__new__(MMU)
        clone.config = self.config
        clone.format = self.format
        clone.ptbr = self.ptbr
        clone.asid = self.asid
        clone.tlb = self.tlb.copy()
        return clone

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MMU)
            and self.ptbr == other.ptbr
            and self.asid == other.asid
            and self.tlb == other.tlb
        )

    __hash__ = None  # type: ignore[assignment]

    def snapshot(self) -> tuple[int, int, TlbSnapshot]:
        """A hashable value: ``(ptbr, asid, tlb.snapshot())``."""
        return self.ptbr, self.asid, self.tlb.snapshot()
