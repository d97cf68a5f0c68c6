"""Each mapping's PTE word, TLB entry and dirty state, as one whole state.

A *user* is one (process, vpn) mapping. Per user, the state holds:

==========  ==========================================================================
pte         the PTE word the page table holds for it (``model.bits`` layout)
cached      whether the TLB holds an entry for it
snapshot    the PTE word that TLB entry holds (its frame, rights, R and M bits)
dirty       the kernel has recorded that a write through this mapping is not yet
            in the page's stored copy (the M bit harvested when it was unmapped)
copied      the kernel said, at its last map or protect, that the page is shared
            copy-on-write (a fork's copy no side has written yet): no write may go
            through this mapping
written     ghost: the page was written through this mapping since its stored
            copy was last made current
lost        ghost: such a write was dropped, its frame reused before a write-back
==========  ==========================================================================

Nothing running reads the ghost fields; the kernel's own state is the rest.

Kernel transitions are the PTE edits of :mod:`~pagingcheck.impl.lib.vm`, which
computes every word it writes, and whether it must invalidate the TLB, by
calling them. Hardware transitions (:func:`fill`, :func:`access`, :func:`drop`) say what the
MMU of ``pagingcheck.model.mmu`` does to the same state; that module cannot
import this one (the hardware depends on nothing of ours), so a test drives
the real MMU and checks that it agrees with them step by step.

Words are Python ints when the kernel runs, 32-bit z3 bit-vectors when
:mod:`pagingcheck.checks.proofs` runs the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pagingcheck.impl.lib.counted import Invariant, Table
from pagingcheck.impl.lib.logic import Cond, Term, all_of, any_of, implies, ite, not_, select, store
from pagingcheck.model import bits

#: The bits a TLB entry may hold only if its PTE holds them too.
CACHED_BITS = bits.PROT_MASK | bits.REFERENCED | bits.MODIFIED


def has(word: Term, mask: int) -> Cond:
    """Whether ``word`` has any bit of ``mask`` set."""
    return (word & mask) != 0


def frame_of(word: Term) -> Term:
    """The frame number field of a PTE word."""
    return (word >> bits.PFN_SHIFT) & bits.PFN_MASK


@dataclass(frozen=True)
class Entry:
    """One user's part of the state (fields are ints/bools, or z3 terms)."""

    pte: Term
    cached: Cond
    snapshot: Term
    dirty: Cond
    written: Cond
    lost: Cond
    copied: Cond = False


#: A user the state has never seen: no PTE, nothing cached, nothing written.
ABSENT = Entry(0, False, 0, False, False, False)


@dataclass(frozen=True)
class MappingState:
    """Every user's :class:`Entry`, one table per field (see the module docstring)."""

    pte: Table
    cached: Table
    snapshot: Table
    dirty: Table
    written: Table
    lost: Table
    copied: Table

    def entry(self, user: Any) -> Entry:
        """The entry of ``user``."""
        return Entry(
            select(self.pte, user, ABSENT.pte),
            select(self.cached, user, ABSENT.cached),
            select(self.snapshot, user, ABSENT.snapshot),
            select(self.dirty, user, ABSENT.dirty),
            select(self.written, user, ABSENT.written),
            select(self.lost, user, ABSENT.lost),
            select(self.copied, user, ABSENT.copied),
        )

    def with_entry(self, user: Any, entry: Entry) -> MappingState:
        """This state with ``user``'s entry replaced."""
        return replace(
            self,
            pte=store(self.pte, user, entry.pte),
            cached=store(self.cached, user, entry.cached),
            snapshot=store(self.snapshot, user, entry.snapshot),
            dirty=store(self.dirty, user, entry.dirty),
            written=store(self.written, user, entry.written),
            lost=store(self.lost, user, entry.lost),
            copied=store(self.copied, user, entry.copied),
        )


def empty() -> MappingState:
    """No user has a PTE, a TLB entry or a write (concrete)."""
    return MappingState({}, {}, {}, {}, {}, {}, {})


EntryStep = tuple[Cond, Entry]
Step = tuple[Cond, MappingState]


# -- kernel transitions: the PTE edits of vm, each with its TLB duty --------------------------


def map_page(e: Entry, word: Term, copied: Cond = False) -> EntryStep:
    """A non-present PTE becomes ``word``: present, R and M clear; the TLB entry goes.
    ``copied``: the page is shared copy-on-write, so ``word`` grants no write."""
    guard = all_of(
        not_(has(e.pte, bits.PRESENT)),
        has(word, bits.PRESENT),
        not_(has(word, bits.REFERENCED | bits.MODIFIED)),
        implies(copied, not_(has(word, bits.WRITE))),
    )
    return guard, replace(e, pte=word, cached=False, copied=copied)


def unmap(e: Entry, word: Term) -> EntryStep:
    """A present PTE becomes the absent ``word``; its M bit is harvested into ``dirty``
    first, and the TLB entry goes (a cached entry would keep reaching the frame)."""
    guard = all_of(has(e.pte, bits.PRESENT), not_(has(word, bits.PRESENT)))
    dirty = any_of(e.dirty, has(e.pte, bits.MODIFIED))
    return guard, replace(e, pte=word, cached=False, dirty=dirty)


def clear_referenced(e: Entry) -> EntryStep:
    """Clear the PTE's R bit; the TLB entry goes, or the MMU, seeing R in its cached
    word, would never set it again."""
    return has(e.pte, bits.PRESENT), replace(e, pte=e.pte & ~bits.REFERENCED, cached=False)


def protect(e: Entry, rights: Term, copied: Cond = False) -> EntryStep:
    """A present PTE's rights become ``rights`` (frame, R and M kept); the TLB entry goes,
    or it would keep the old rights (a write allowed on a page now shared read-only).
    ``copied``: the page is shared copy-on-write, so ``rights`` grant no write."""
    word = (e.pte & ~bits.PROT_MASK) | (rights & bits.PROT_MASK)
    guard = all_of(has(e.pte, bits.PRESENT), implies(copied, not_(has(rights, bits.WRITE))))
    return guard, replace(e, pte=word, cached=False, copied=copied)


def start_writeback(e: Entry) -> EntryStep:
    """The unmapped page's contents start going to its stored copy: nothing of this
    mapping is unsaved once the transfer copies the frame."""
    return not_(has(e.pte, bits.PRESENT)), replace(e, dirty=False, written=False)


def discard(e: Entry) -> EntryStep:
    """The unmapped, clean page's frame is reused for something else, and its record
    forgets it: whatever was written through this mapping and not saved is gone."""
    guard = all_of(not_(has(e.pte, bits.PRESENT)), not_(e.dirty))
    return guard, replace(e, dirty=False, written=False, lost=any_of(e.lost, e.written))


# -- hardware transitions: what the MMU does (model.mmu) ------------------------------------


def fill(e: Entry) -> EntryStep:
    """A TLB miss walks the table: the entry caches the PTE word."""
    return all_of(has(e.pte, bits.PRESENT), not_(e.cached)), replace(e, cached=True, snapshot=e.pte)


def access(e: Entry, write: Cond) -> EntryStep:
    """An allowed access through the cached entry: R (and M on a write) missing from
    the cached word are ORed into it and into the PTE word."""
    allowed = all_of(
        e.cached,
        has(e.snapshot, bits.PRESENT),
        implies(write, has(e.snapshot, bits.WRITE)),
    )
    missing = (bits.REFERENCED & ~e.snapshot) | ite(write, bits.MODIFIED & ~e.snapshot, 0)
    after = replace(
        e,
        pte=e.pte | missing,
        snapshot=e.snapshot | missing,
        written=any_of(e.written, write),
    )
    return allowed, after


def drop(e: Entry) -> EntryStep:
    """The TLB drops the entry to make room for another (or a flush empties it)."""
    return e.cached, replace(e, cached=False)


def _whole(op: Callable[..., EntryStep]) -> Callable[..., Step]:
    """The whole-state transition that applies ``op`` to one user's entry."""

    def step(s: MappingState, user: Any, *args: Any) -> Step:
        guard, entry = op(s.entry(user), *args)
        return guard, s.with_entry(user, entry)

    step.__name__ = op.__name__
    step.__doc__ = op.__doc__
    return step


#: Every transition by name, with the kind of each argument after the user
#: ("word": a PTE word, "bool": a condition).
TRANSITIONS: dict[str, tuple[Callable[..., Step], tuple[str, ...]]] = {
    "map_page": (_whole(map_page), ("word", "bool")),
    "unmap": (_whole(unmap), ("word",)),
    "clear_referenced": (_whole(clear_referenced), ()),
    "protect": (_whole(protect), ("word", "bool")),
    "start_writeback": (_whole(start_writeback), ()),
    "discard": (_whole(discard), ()),
    "fill": (_whole(fill), ()),
    "access": (_whole(access), ("bool",)),
    "drop": (_whole(drop), ()),
}

#: The transitions the hardware takes; the others are the kernel's.
HARDWARE = ("fill", "access", "drop")


# -- invariants, per user -------------------------------------------------------------------


def tlb_agrees(s: MappingState, user: Any) -> Cond:
    """A cached entry is of a present PTE, names its frame, and holds no right or R/M bit
    the PTE lacks."""
    e = s.entry(user)
    return implies(
        e.cached,
        all_of(
            has(e.pte, bits.PRESENT),
            has(e.snapshot, bits.PRESENT),
            frame_of(e.snapshot) == frame_of(e.pte),
            (e.snapshot & ~e.pte & CACHED_BITS) == 0,
        ),
    )


def writes_recorded(s: MappingState, user: Any) -> Cond:
    """A write through the mapping is recorded: in the present PTE's M bit, or harvested
    into ``dirty`` until a write-back saves it."""
    e = s.entry(user)
    in_pte = all_of(has(e.pte, bits.PRESENT), has(e.pte, bits.MODIFIED))
    return implies(e.written, any_of(e.dirty, in_pte))


def no_dirty_dropped(s: MappingState, user: Any) -> Cond:
    """No write through the mapping was dropped with its frame."""
    return not_(s.entry(user).lost)


def copies_read_only(s: MappingState, user: Any) -> Cond:
    """A mapping of a page shared copy-on-write grants no write: not in its present PTE,
    not in its TLB entry."""
    e = s.entry(user)
    return implies(
        e.copied,
        all_of(
            implies(has(e.pte, bits.PRESENT), not_(has(e.pte, bits.WRITE))),
            implies(e.cached, not_(has(e.snapshot, bits.WRITE))),
        ),
    )


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        "tlb_agrees",
        "A TLB entry caches a present PTE: the same frame, and no right or R/M bit the PTE lacks.",
        ("user",),
        tlb_agrees,
    ),
    Invariant(
        "writes_recorded",
        "Every write through a mapping is recorded, in its present PTE's M bit or in the "
        "kernel's dirty record, until a write-back saves it.",
        ("user",),
        writes_recorded,
    ),
    Invariant(
        "no_dirty_dropped",
        "No page's frame is reused while it holds a write not yet saved.",
        ("user",),
        no_dirty_dropped,
    ),
    Invariant(
        "copies_read_only",
        "A mapping of a page shared copy-on-write grants no write, in its present PTE or "
        "its TLB entry.",
        ("user",),
        copies_read_only,
    ),
)


def violations(s: MappingState) -> list[str]:
    """Each invariant broken by the concrete state ``s``, with the user that breaks it."""
    users = {*s.pte, *s.cached, *s.snapshot, *s.dirty, *s.written, *s.lost, *s.copied}
    return [
        f"{invariant.name} at {(user,)}"
        for invariant in INVARIANTS
        for user in sorted(users)
        if not invariant.holds(s, user)
    ]
