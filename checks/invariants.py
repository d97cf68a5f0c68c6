"""The invariant catalog: each invariant a named predicate, its English statement the docstring.

A predicate takes an :class:`~pagingcheck.checks.observe.Observed` state and
returns the first :class:`~pagingcheck.checks.observe.Violation` it finds,
with a witness, or None. :data:`INVARIANTS` maps each name to its predicate;
the Hypothesis machines, the explorer and replay all check exactly these.
Properties of a *step* (refinement, restart exactness, no dirty page
dropped) live in :mod:`pagingcheck.checks.refinement`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from pagingcheck.checks.observe import Observed, Violation
from pagingcheck.model import bits

Predicate = Callable[[Observed], Violation | None]


@dataclass(frozen=True)
class Invariant:
    """A named state predicate and its statement in English."""

    name: str
    statement: str
    check: Predicate


def busy_frame_exclusive(s: Observed) -> Violation | None:
    """A frame with a transfer in flight is on no free list, mapped by no present PTE,
    in no TLB entry, marked busy in the frame table, and the target of one transfer only."""
    name = "busy_frame_exclusive"
    free = set(s.view.free_frames)
    status = {f.pfn: f.status for f in s.view.frames}
    for pfn, ops in sorted(s.transfers.items()):
        if len(ops) > 1:
            return Violation(
                name, "two transfers in flight on one frame", (("pfn", pfn), ("ops", ops))
            )
        if pfn in free:
            return Violation(
                name, "frame with a transfer in flight is on the free list", (("pfn", pfn),)
            )
        if s.mappers.get(pfn):
            who = sorted(s.mappers[pfn])[0]
            return Violation(
                name,
                "frame with a transfer in flight is mapped by a present PTE",
                (("pfn", pfn), ("pid", who[0]), ("vpn", who[1])),
            )
        for entry in s.machine.mmu.tlb.entries():
            if bits.is_present(entry.pte) and bits.pfn(entry.pte) == pfn:
                return Violation(
                    name,
                    "frame with a transfer in flight is in a TLB entry",
                    (("pfn", pfn), ("asid", entry.asid), ("vpn", entry.vpn)),
                )
        if status.get(pfn) != "busy":
            return Violation(
                name,
                "frame with a transfer in flight is not marked busy",
                (("pfn", pfn), ("status", status.get(pfn))),
            )
    return None


def freed_at_last_reference(s: Observed) -> Violation | None:
    """A frame or swap slot is free only when no mapping uses it and no transfer is in flight;
    a frame in use has a user, and a live page never has its contents in a free frame or slot."""
    name = "freed_at_last_reference"
    free_frames = set(s.view.free_frames)
    free_slots = set(s.view.free_slots)
    for frame in s.view.frames:
        if frame.status == "in_use" and frame.refcount == 0:
            return Violation(name, "frame in use with no user (leaked)", (("pfn", frame.pfn),))
        if frame.pfn in free_frames and (frame.refcount or s.mappers.get(frame.pfn)):
            return Violation(name, "free frame still referenced", (("pfn", frame.pfn),))
    for slot in s.view.slots:
        if slot.slot in free_slots and (slot.refcount or slot.transfer):
            return Violation(name, "free swap slot still referenced", (("slot", slot.slot),))
        if slot.slot not in free_slots and slot.refcount == 0 and not slot.transfer:
            return Violation(
                name, "allocated swap slot with no user (leaked)", (("slot", slot.slot),)
            )
    for proc in s.view.processes:
        if proc.state == "exited":
            continue
        for page in proc.pages:
            home = page.home
            if home.where == "frame" and home.index in free_frames:
                return Violation(
                    name,
                    "live page's contents are in a free frame",
                    (("pid", proc.pid), ("vpn", page.vpn), ("pfn", home.index)),
                )
            if home.where == "slot" and home.index in free_slots:
                return Violation(
                    name,
                    "live page's contents are in a free swap slot",
                    (("pid", proc.pid), ("vpn", page.vpn), ("slot", home.index)),
                )
    return None


def refcounts_exact(s: Observed) -> Violation | None:
    """Each frame's reference count equals its reverse map's size, which equals the present
    PTEs mapping it; each slot's reference count equals the pages using it."""
    name = "refcounts_exact"
    for frame in s.view.frames:
        users = set(frame.users)
        if frame.refcount != len(frame.users) or len(users) != len(frame.users):
            return Violation(
                name,
                "frame reference count differs from its reverse map",
                (("pfn", frame.pfn), ("refcount", frame.refcount), ("users", frame.users)),
            )
        mapped = s.mappers.get(frame.pfn, set())
        if frame.status == "in_use" and users != mapped:
            return Violation(
                name,
                "frame's reverse map differs from the PTEs that map it",
                (("pfn", frame.pfn), ("reverse_map", sorted(users)), ("ptes", sorted(mapped))),
            )
    for slot in s.view.slots:
        if slot.refcount != len(slot.users):
            return Violation(
                name,
                "slot reference count differs from its users",
                (("slot", slot.slot), ("refcount", slot.refcount), ("users", slot.users)),
            )
    return None


def tlb_agrees(s: Observed) -> Violation | None:
    """Every TLB entry user code could hit matches a walk of the page table it stands for:
    the current address space's (untagged) or its own asid's (tagged): same frame, no more
    rights. Checked after every step and also as the CPU enters user mode."""
    name = "tlb_agrees"
    mmu = s.machine.mmu
    by_asid = {p.asid: p.pid for p in s.view.processes if p.state != "exited"}
    for entry in mmu.tlb.entries():
        asid = entry.asid if mmu.tlb.tagged else mmu.asid
        pid = by_asid.get(asid)
        if pid is None:
            if mmu.tlb.tagged:
                return Violation(
                    name,
                    "TLB entry of an address space that no longer exists",
                    (("asid", asid), ("vpn", entry.vpn)),
                )
            continue
        pfn = s.present.get((pid, entry.vpn))
        if pfn is None or pfn != bits.pfn(entry.pte):
            return Violation(
                name,
                "TLB entry does not match the page table",
                (
                    ("asid", asid),
                    ("vpn", entry.vpn),
                    ("tlb_pfn", bits.pfn(entry.pte)),
                    ("table_pfn", pfn),
                ),
            )
        table = next(e.pte for e in s.tables[pid] if e.vpn == entry.vpn)
        if bits.prot(entry.pte) & ~bits.prot(table):
            return Violation(
                name,
                "TLB entry grants rights the page table does not",
                (("asid", asid), ("vpn", entry.vpn)),
            )
    return None


def page_tables_well_formed(s: Observed) -> Violation | None:
    """Page tables lie in the kernel region, no two address spaces share table memory (each
    table page has one parent), and no PTE maps a kernel frame or a frame outside memory."""
    name = "page_tables_well_formed"
    config = s.machine.config
    kernel_words = config.kernel_frames * config.page_words
    owner: dict[int, int] = {}
    shared_root = config.page_table == "inverted"
    for proc in s.view.processes:
        if proc.state == "exited" or shared_root:
            continue
        for start, length in s.machine.format.table_words(s.machine.memory, proc.root, proc.asid):
            if start < 0 or start + length > kernel_words:
                return Violation(name, "table outside the kernel region", (("pid", proc.pid),))
            for word in range(start, start + length):
                if word in owner:
                    why = (
                        "a table is reached twice within one address space (two parents)"
                        if owner[word] == proc.pid
                        else "two address spaces share page-table memory"
                    )
                    return Violation(
                        name, why, (("pids", (owner[word], proc.pid)), ("address", word))
                    )
                owner[word] = proc.pid
    for (pid, vpn), pfn in sorted(s.present.items()):
        if pfn not in config.user_pfns:
            return Violation(
                name,
                "PTE maps a frame outside the user pool",
                (("pid", pid), ("vpn", vpn), ("pfn", pfn)),
            )
    return None


def frame_table_agrees(s: Observed) -> Violation | None:
    """Every present PTE maps an in-use frame that lists it, and every in-use frame's users
    have present PTEs mapping it: frame table and page tables agree both ways."""
    name = "frame_table_agrees"
    frames = {f.pfn: f for f in s.view.frames}
    for (pid, vpn), pfn in sorted(s.present.items()):
        frame = frames.get(pfn)
        if frame is None or frame.status != "in_use" or (pid, vpn) not in frame.users:
            return Violation(
                name,
                "present PTE maps a frame the frame table does not give it",
                (
                    ("pid", pid),
                    ("vpn", vpn),
                    ("pfn", pfn),
                    ("status", None if frame is None else frame.status),
                ),
            )
    for frame in s.view.frames:
        if frame.status != "in_use":
            continue
        for user in frame.users:
            if s.present.get(user) != frame.pfn:
                return Violation(
                    name,
                    "frame table lists a user whose PTE does not map the frame",
                    (("pfn", frame.pfn), ("pid", user[0]), ("vpn", user[1])),
                )
    return None


def free_lists_clean(s: Observed) -> Violation | None:
    """Free lists of frames and slots hold no duplicates, and nothing in use or busy."""
    name = "free_lists_clean"
    for label, items in (("frame", s.view.free_frames), ("slot", s.view.free_slots)):
        repeated = [item for item, count in Counter(items).items() if count > 1]
        if repeated:
            return Violation(name, f"{label} twice on the free list", ((label, repeated[0]),))
    status = {f.pfn: f for f in s.view.frames}
    for pfn in s.view.free_frames:
        frame = status.get(pfn)
        if frame is None or frame.status != "free" or frame.users or frame.transfer:
            return Violation(name, "free list holds a frame in use or busy", (("pfn", pfn),))
        if s.transfers.get(pfn):
            return Violation(name, "free list holds a frame with a transfer", (("pfn", pfn),))
    for slot in s.view.free_slots:
        if s.slot_transfers.get(slot):
            return Violation(name, "free list holds a slot with a transfer", (("slot", slot),))
    return None


INVARIANTS: dict[str, Invariant] = {
    inv.__name__: Invariant(inv.__name__, " ".join((inv.__doc__ or "").split()), inv)
    # The order is the order of checking, structural facts first, so that the
    # property reported for a broken state is the most basic one it breaks.
    for inv in (
        page_tables_well_formed,
        busy_frame_exclusive,
        freed_at_last_reference,
        frame_table_agrees,
        refcounts_exact,
        tlb_agrees,
        free_lists_clean,
    )
}


def check_all(s: Observed) -> Violation | None:
    """The first violated invariant, in catalog order, or None."""
    for invariant in INVARIANTS.values():
        violation = invariant.check(s)
        if violation is not None:
            return violation
    return None
