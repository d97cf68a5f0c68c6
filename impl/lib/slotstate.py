"""The swap slots as one whole state: protocol fields, free set, and whose page is where.

:mod:`~pagingcheck.impl.lib.swap` says what one slot may do; this module
says what the kernel does to all of its slot bookkeeping at once, so that
the free list and the reference counts cannot fall out of step. Its state:

==========  =======================================================================
allocated   slot -> taken (with ``refcount``, ``transfer``, ``orphan``: the
refcount    per-slot fields of :class:`~.swap.Slot`)
transfer
orphan
free        slot -> on the free list
held        user -> the slot that is its page's swap home, or :data:`NOTHING`
index       user -> its position among the slot's counted references
owner       (slot, position) -> the user counted there
==========  =======================================================================

A *user* is one (process, vpn) page: a private page has one, a page of a
shared object one per attached process. ``refcount``, ``held``, ``index``
and ``owner`` are the counted references of :mod:`~.counted`, so "a shared
slot is freed only at its last reference" is provable for any number of
slots and users. Transitions have the shape ``op(state, slot, users...) ->
(guard, new_state)`` and are the functions the reference kernel runs and
:mod:`pagingcheck.checks.proofs` proves, like :mod:`~.framestate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pagingcheck.impl.lib import counted
from pagingcheck.impl.lib import swap as sw
from pagingcheck.impl.lib.counted import NOTHING, Counted, Invariant, Table
from pagingcheck.impl.lib.logic import Cond, Term, all_of, not_, select, store


@dataclass(frozen=True)
class SlotState(Counted):
    """Every swap slot's bookkeeping (see the module docstring for each table)."""

    allocated: Table
    transfer: Table
    orphan: Table
    free: Table

    def slot(self, slot: Term) -> sw.Slot:
        """The per-slot protocol record of ``slot``."""
        return sw.Slot(
            select(self.allocated, slot, False),
            select(self.refcount, slot, 0),
            select(self.transfer, slot, sw.NONE),
            select(self.orphan, slot, False),
        )

    def free_slots(self) -> tuple[int, ...]:
        """The free list, in slot order (concrete states only)."""
        return tuple(sorted(slot for slot, free in self.free.items() if free))

    def with_slot(self, slot: Term, record: sw.Slot) -> SlotState:
        """This state with ``slot``'s protocol fields replaced; free exactly when not taken."""
        return replace(
            self,
            allocated=store(self.allocated, slot, record.allocated),
            refcount=store(self.refcount, slot, record.refcount),
            transfer=store(self.transfer, slot, record.transfer),
            orphan=store(self.orphan, slot, record.orphan),
            free=store(self.free, slot, not_(record.allocated)),
        )


def empty(slots: range) -> SlotState:
    """Every slot in ``slots`` free; no page has a slot (concrete)."""
    return SlotState(
        allocated={slot: False for slot in slots},
        refcount={slot: 0 for slot in slots},
        transfer={slot: sw.NONE for slot in slots},
        orphan={slot: False for slot in slots},
        free={slot: True for slot in slots},
        held={},
        index={},
        owner={},
    )


Step = tuple[Cond, SlotState]


def _apply(s: SlotState, slot: Term, step: sw.Step) -> Step:
    guard, record = step
    return all_of(guard, slot >= 0), s.with_slot(slot, record)


# -- transitions ---------------------------------------------------------------------------


def allocate(s: SlotState, slot: Term, user: Any) -> Step:
    """A free slot becomes the swap home of ``user``'s new page."""
    guard, after = _apply(s, slot, sw.allocate(s.slot(slot), 1))
    guard = all_of(guard, select(s.free, slot, False), s.holding(user) == NOTHING)
    return guard, after.counted(slot, 0, user)


def add_user(s: SlotState, slot: Term, user: Any) -> Step:
    """One more process's page (of a shared object) lives in ``slot``."""
    position = select(s.refcount, slot, 0)
    guard, after = _apply(s, slot, sw.add_user(s.slot(slot)))
    return all_of(guard, s.holding(user) == NOTHING), after.counted(slot, position, user)


def drop_user(s: SlotState, slot: Term, user: Any) -> Step:
    """One of several users goes; the others keep the slot."""
    guard, record = sw.drop_user(s.slot(slot))
    after = s.uncounted(slot, user).with_slot(slot, record)
    return all_of(guard, slot >= 0, s.holding(user) == slot), after


def release(s: SlotState, slot: Term, user: Any) -> Step:
    """The last user of an idle slot goes: the slot is free."""
    guard, record = sw.release(s.slot(slot))
    after = s.uncounted(slot, user).with_slot(slot, record)
    return all_of(guard, slot >= 0, s.holding(user) == slot), after


def orphan(s: SlotState, slot: Term, user: Any) -> Step:
    """The last user goes while a transfer is in flight: freed when that ends."""
    guard, record = sw.orphan(s.slot(slot))
    after = s.uncounted(slot, user).with_slot(slot, record)
    return all_of(guard, slot >= 0, s.holding(user) == slot), after


def start_read(s: SlotState, slot: Term) -> Step:
    """A page-in starts reading the slot."""
    return _apply(s, slot, sw.start_read(s.slot(slot)))


def start_write(s: SlotState, slot: Term) -> Step:
    """A write-back starts filling the slot."""
    return _apply(s, slot, sw.start_write(s.slot(slot)))


def finish_transfer(s: SlotState, slot: Term) -> Step:
    """The slot's transfer ended: idle again, or free if it was orphaned."""
    return _apply(s, slot, sw.finish_transfer(s.slot(slot)))


#: Every transition by name, with how many user arguments it takes after the slot.
TRANSITIONS: dict[str, tuple[Callable[..., Step], int]] = {
    "allocate": (allocate, 1),
    "add_user": (add_user, 1),
    "drop_user": (drop_user, 1),
    "release": (release, 1),
    "orphan": (orphan, 1),
    "start_read": (start_read, 0),
    "start_write": (start_write, 0),
    "finish_transfer": (finish_transfer, 0),
}


# -- invariants, per element ----------------------------------------------------------------


def slot_consistent(s: SlotState, slot: Term) -> Cond:
    """The slot's protocol fields agree, and it is on the free list exactly when not taken."""
    record = s.slot(slot)
    return all_of(sw.well_formed(record), select(s.free, slot, False) == not_(record.allocated))


def user_counted(s: SlotState, user: Any) -> Cond:
    """A user whose page lives in a slot holds a taken, live slot, counted at its index."""
    record = s.slot(s.holding(user))
    return counted.user_counted(s, user, all_of(record.allocated, not_(record.orphan)))


def reference_held(s: SlotState, slot: Term, position: Term) -> Cond:
    """Each counted reference of a slot is a user whose page lives there, indexed there."""
    return counted.reference_held(s, slot, position)


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        "slots_consistent",
        "Each slot's fields agree, and it is on the free list exactly when it is not taken.",
        ("key",),
        slot_consistent,
    ),
    Invariant(
        "slot_users_counted",
        "A page whose swap home is a slot holds a taken slot that is not orphaned, and is "
        "counted among its references at its index.",
        ("user",),
        user_counted,
    ),
    Invariant(
        "slot_references_held",
        "Each of a slot's refcount references is a distinct page that lives there: the "
        "count is exact, so a shared slot is freed only at its last reference.",
        ("key", "position"),
        reference_held,
    ),
)


def violations(s: SlotState) -> list[str]:
    """Each invariant broken by the concrete state ``s``, with the element that breaks it."""
    return counted.violations(s, INVARIANTS, s.allocated)
