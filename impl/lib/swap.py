"""The swap-slot protocol: every change to a swap slot, as a small pure function.

Written like :mod:`pagingcheck.impl.lib.frames`: ``op(slot, args...) ->
(guard, new_slot)`` over fields that are Python values when the kernel runs
and z3 terms when a proof runs.

A slot is the page-sized home on the swap device of one page: a private page
(one user) or a page of a shared object (text or segment), whose users are
every process attached to the object (one ``(pid, vpn)`` each).

States of one slot::

    free          not allocated: refcount 0, no transfer
    allocated     refcount >= 1 pages use it; at most one transfer in flight
                  (``READ``: a page-in reads it, ``WRITE``: a write-back fills it)
    orphan        allocated with refcount 0: its last user went while a
                  transfer was in flight; freed when that transfer ends, so the
                  slot is not handed out while the disk still works on it

Transitions (guard in brackets)::

    allocate(n)     free                     -> allocated(n)   n >= 1
    add_user        allocated(n) [!orphan]   -> allocated(n+1) a process attaches
    drop_user       allocated(n), n >= 2     -> allocated(n-1) one user goes
    release         allocated(1), NONE       -> free           the last user goes
    orphan          allocated(1), READ|WRITE -> orphan         the last user goes mid-transfer
    start_read      allocated(n>=1), NONE    -> READ
    start_write     allocated(n>=1), NONE    -> WRITE
    finish_transfer READ|WRITE               -> NONE (or free when orphan)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pagingcheck.impl.lib.frames import NONE, READ, WRITE
from pagingcheck.impl.lib.logic import Cond, Term, all_of, implies, not_, one_of

__all__ = ["FREE_SLOT", "NONE", "READ", "WRITE", "Slot"]


@dataclass(frozen=True)
class Slot:
    """The protocol state of one swap slot (fields are ints/bools, or z3 terms)."""

    allocated: Cond
    refcount: Term
    transfer: Term
    orphan: Cond


FREE_SLOT = Slot(False, 0, NONE, False)

Step = tuple[Cond, Slot]


def well_formed(s: Slot) -> Cond:
    """A slot's fields agree (the lemma every operation preserves)."""
    return all_of(
        one_of(s.transfer, NONE, READ, WRITE),
        s.refcount >= 0,
        implies(not_(s.allocated), all_of(s.refcount == 0, s.transfer == NONE, not_(s.orphan))),
        implies(all_of(s.allocated, not_(s.orphan)), s.refcount >= 1),
        implies(s.orphan, all_of(s.allocated, s.refcount == 0, s.transfer != NONE)),
    )


def allocate(s: Slot, users: Term) -> Step:
    """Take a free slot for a page used by ``users`` (>= 1) pages."""
    return all_of(not_(s.allocated), users >= 1), Slot(True, users, NONE, False)


def add_user(s: Slot) -> Step:
    """One more page uses the slot (a process attaches the slot's shared object)."""
    guard = all_of(s.allocated, not_(s.orphan))
    return guard, Slot(True, s.refcount + 1, s.transfer, False)


def drop_user(s: Slot) -> Step:
    """One of several pages stops using the slot."""
    guard = all_of(s.allocated, s.refcount >= 2)
    return guard, Slot(True, s.refcount - 1, s.transfer, False)


def release(s: Slot) -> Step:
    """The last page stops using an idle slot: it is free again."""
    guard = all_of(s.allocated, s.refcount == 1, s.transfer == NONE)
    return guard, FREE_SLOT


def orphan(s: Slot) -> Step:
    """The last page stops using a slot with a transfer in flight: free it when that ends."""
    guard = all_of(s.allocated, s.refcount == 1, s.transfer != NONE)
    return guard, Slot(True, 0, s.transfer, True)


def start_read(s: Slot) -> Step:
    """A page-in starts reading the slot."""
    guard = all_of(s.allocated, s.refcount >= 1, s.transfer == NONE)
    return guard, Slot(True, s.refcount, READ, False)


def start_write(s: Slot) -> Step:
    """A write-back starts filling the slot."""
    guard = all_of(s.allocated, s.refcount >= 1, s.transfer == NONE)
    return guard, Slot(True, s.refcount, WRITE, False)


def finish_transfer(s: Slot) -> Step:
    """The slot's transfer ended: idle again, or free if it was orphaned."""
    guard = all_of(s.allocated, s.transfer != NONE)
    # An orphan has refcount 0, so clearing ``allocated`` leaves exactly FREE_SLOT.
    return guard, Slot(not_(s.orphan), s.refcount, NONE, False)


#: Every transition by name, with the number of extra integer arguments it takes.
TRANSITIONS: dict[str, tuple[Callable[..., Step], int]] = {
    "allocate": (allocate, 1),
    "add_user": (add_user, 0),
    "drop_user": (drop_user, 0),
    "release": (release, 0),
    "orphan": (orphan, 0),
    "start_read": (start_read, 0),
    "start_write": (start_write, 0),
    "finish_transfer": (finish_transfer, 0),
}
