"""The user frames as one whole state: protocol fields, free set, and who maps what.

:mod:`~pagingcheck.impl.lib.frames` says what one frame may do; this module
says what the kernel does to *all* of its frame bookkeeping at once, so that
no caller has to remember to keep the free list, the reverse map and the
reference counts in step. Its state is a few array-like tables:

==========  =======================================================================
status      frame -> FREE, IN_USE or BUSY (with ``refcount``, ``transfer``,
refcount    ``orphan``: the per-frame fields of :class:`~.frames.Frame`)
transfer
orphan
free        frame -> on the free list
held        user -> the frame its present PTE maps, or :data:`NOTHING`
index       user -> its position among the frame's counted references
owner       (frame, position) -> the user counted there
==========  =======================================================================

A *user* is one (process, vpn) mapping. ``refcount``, ``held``, ``index``
and ``owner`` are the counted references of :mod:`~.counted`, a ghost
bijection that makes "the count is exact" provable for any number of frames
and users.

Each transition has the shape ``op(state, args) -> (guard, new_state)`` and
is written once over :mod:`~.logic`'s ``select``/``store``: the reference
kernel runs it on dictionaries; :mod:`pagingcheck.checks.proofs` runs the
very same function on z3 arrays. The invariants are written once too, per
element (:data:`INVARIANTS`): checked over every key of a concrete state,
quantified over all keys in a proof.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Any

from pagingcheck.impl.lib import counted
from pagingcheck.impl.lib import frames as fr
from pagingcheck.impl.lib.counted import NOTHING, Counted, Invariant, Table
from pagingcheck.impl.lib.logic import Cond, Term, all_of, ite, select, store

#: The status read for a frame a concrete state does not have: no transition allows it.
MISSING = -1


@dataclass(frozen=True)
class FrameState(Counted):
    """Every user frame's bookkeeping (see the module docstring for each table).

    Concretely each table is a ``dict``; a key it lacks holds the default (a
    user not in ``held`` holds :data:`NOTHING`). Treat it as a value: the
    transitions return a new one.
    """

    status: Table
    transfer: Table
    orphan: Table
    free: Table

    # -- reading --------------------------------------------------------------------------

    def frame(self, pfn: Term) -> fr.Frame:
        """The per-frame protocol record of ``pfn``."""
        return fr.Frame(
            select(self.status, pfn, MISSING),
            select(self.refcount, pfn, 0),
            select(self.transfer, pfn, fr.NONE),
            select(self.orphan, pfn, False),
        )

    def maps(self, user: Hashable) -> Term:
        """The frame ``user`` maps present, or :data:`NOTHING`."""
        return self.holding(user)

    def free_frames(self) -> tuple[int, ...]:
        """The free list, in frame order (concrete states only)."""
        return tuple(sorted(pfn for pfn, free in self.free.items() if free))

    # -- writing (for the transitions) ------------------------------------------------------

    def with_frame(self, pfn: Term, frame: fr.Frame, free: Cond) -> FrameState:
        """This state with ``pfn``'s protocol fields and free bit replaced."""
        return replace(
            self,
            status=store(self.status, pfn, frame.status),
            refcount=store(self.refcount, pfn, frame.refcount),
            transfer=store(self.transfer, pfn, frame.transfer),
            orphan=store(self.orphan, pfn, frame.orphan),
            free=store(self.free, pfn, free),
        )


def empty(pfns: range) -> FrameState:
    """Every frame in ``pfns`` free; nothing mapped (concrete)."""
    return FrameState(
        status={pfn: fr.FREE for pfn in pfns},
        refcount={pfn: 0 for pfn in pfns},
        transfer={pfn: fr.NONE for pfn in pfns},
        orphan={pfn: False for pfn in pfns},
        free={pfn: True for pfn in pfns},
        held={},
        index={},
        owner={},
    )


Step = tuple[Cond, FrameState]


def _apply(s: FrameState, pfn: Term, step: fr.Step) -> Step:
    """A per-frame protocol step applied to the whole state; the free bit follows FREE."""
    guard, frame = step
    return all_of(guard, pfn >= 0), s.with_frame(pfn, frame, frame.status == fr.FREE)


# -- transitions ---------------------------------------------------------------------------


def reserve(s: FrameState, pfn: Term) -> Step:
    """Take a free frame off the free list for the kernel (it becomes BUSY)."""
    guard, after = _apply(s, pfn, fr.reserve(s.frame(pfn)))
    return all_of(guard, select(s.free, pfn, False)), after  # pfn >= 0 checked by _apply


def start_writeback(s: FrameState, pfn: Term) -> Step:
    """A busy frame's page starts going to its swap slot."""
    return _apply(s, pfn, fr.start_writeback(s.frame(pfn)))


def start_pagein(s: FrameState, pfn: Term) -> Step:
    """A page starts arriving in a busy frame."""
    return _apply(s, pfn, fr.start_pagein(s.frame(pfn)))


def finish_transfer(s: FrameState, pfn: Term) -> Step:
    """A frame's transfer ended; an orphaned frame goes back on the free list."""
    return _apply(s, pfn, fr.finish_transfer(s.frame(pfn)))


def orphan(s: FrameState, pfn: Term) -> Step:
    """Every process a transfer served is gone."""
    return _apply(s, pfn, fr.orphan(s.frame(pfn)))


def adopt(s: FrameState, pfn: Term) -> Step:
    """A process waits on an orphaned transfer again."""
    return _apply(s, pfn, fr.adopt(s.frame(pfn)))


def free(s: FrameState, pfn: Term) -> Step:
    """A reserved frame nobody needs goes back on the free list."""
    return _apply(s, pfn, fr.free(s.frame(pfn)))


def install(s: FrameState, pfn: Term, user: Any) -> Step:
    """A busy frame's page is in place and ``user`` maps it: the frame is in use."""
    guard, frame = fr.install(s.frame(pfn), 1)
    after = s.with_frame(pfn, frame, False).counted(pfn, 0, user)
    return all_of(guard, pfn >= 0, s.maps(user) == NOTHING), after


def map_user(s: FrameState, pfn: Term, user: Any) -> Step:
    """One more user maps an in-use frame (a minor fault on a shared page)."""
    guard, frame = fr.map_user(s.frame(pfn))
    position = select(s.refcount, pfn, 0)
    after = s.with_frame(pfn, frame, False).counted(pfn, position, user)
    return all_of(guard, pfn >= 0, s.maps(user) == NOTHING), after


def move(s: FrameState, pfn: Term, old: Any, new: Any) -> Step:
    """The mapping of ``pfn`` passes from ``old`` to ``new`` (one mapping per frame)."""
    position = select(s.index, old, -1)
    after = replace(s, held=store(s.held, old, NOTHING)).counted(pfn, position, new)
    guard = all_of(
        select(s.status, pfn, MISSING) == fr.IN_USE,
        pfn >= 0,
        s.maps(old) == pfn,
        s.maps(new) == NOTHING,
    )
    return guard, after


def unmap_user(s: FrameState, pfn: Term, user: Any) -> Step:
    """One user of several stops mapping the frame; the others keep it."""
    guard, frame = fr.unmap_user(s.frame(pfn))
    after = s.uncounted(pfn, user).with_frame(pfn, frame, False)
    return all_of(guard, pfn >= 0, s.maps(user) == pfn), after


def evict_user(s: FrameState, pfn: Term, user: Any) -> Step:
    """A victim loses one mapping; when the last goes the frame is BUSY for the kernel."""
    last = select(s.refcount, pfn, 0) == 1
    guard, frame = fr.unmap_user(s.frame(pfn))
    evict_guard, busy = fr.evict(s.frame(pfn))
    chosen = fr.Frame(
        ite(last, busy.status, frame.status),
        ite(last, busy.refcount, frame.refcount),
        ite(last, busy.transfer, frame.transfer),
        ite(last, busy.orphan, frame.orphan),
    )
    after = s.uncounted(pfn, user).with_frame(pfn, chosen, False)
    return all_of(ite(last, evict_guard, guard), pfn >= 0, s.maps(user) == pfn), after


def release(s: FrameState, pfn: Term, user: Any) -> Step:
    """The last user stops mapping the frame, whose page needs no write: it is free."""
    guard, frame = fr.release(s.frame(pfn))
    after = s.uncounted(pfn, user).with_frame(pfn, frame, True)
    return all_of(guard, pfn >= 0, s.maps(user) == pfn), after


#: Every transition by name, with how many frame and user arguments it takes.
TRANSITIONS: dict[str, tuple[Callable[..., Step], int]] = {
    "reserve": (reserve, 0),
    "start_writeback": (start_writeback, 0),
    "start_pagein": (start_pagein, 0),
    "finish_transfer": (finish_transfer, 0),
    "orphan": (orphan, 0),
    "adopt": (adopt, 0),
    "free": (free, 0),
    "install": (install, 1),
    "map_user": (map_user, 1),
    "move": (move, 2),
    "unmap_user": (unmap_user, 1),
    "evict_user": (evict_user, 1),
    "release": (release, 1),
}


# -- invariants, per element ----------------------------------------------------------------


def frame_consistent(s: FrameState, pfn: Term) -> Cond:
    """The frame's protocol fields agree, and it is on the free list exactly when FREE."""
    frame = s.frame(pfn)
    return all_of(fr.well_formed(frame), select(s.free, pfn, False) == (frame.status == fr.FREE))


def user_counted(s: FrameState, user: Any) -> Cond:
    """A user that maps a frame maps one in use, and is counted there at its index."""
    return counted.user_counted(s, user, select(s.status, s.maps(user), MISSING) == fr.IN_USE)


def reference_held(s: FrameState, pfn: Term, position: Term) -> Cond:
    """Each counted reference of a frame is a user that maps it, indexed there."""
    return counted.reference_held(s, pfn, position)


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        "frames_consistent",
        "Each frame's fields agree with its status, and it is on the free list exactly "
        "when it is free.",
        ("key",),
        frame_consistent,
    ),
    Invariant(
        "users_counted",
        "A user whose PTE maps a frame present maps one in use, and is counted among its "
        "references at its index.",
        ("user",),
        user_counted,
    ),
    Invariant(
        "references_held",
        "Each of a frame's refcount references is a distinct user that maps it: the count "
        "is exact.",
        ("key", "position"),
        reference_held,
    ),
)


def violations(s: FrameState) -> list[str]:
    """Each invariant broken by the concrete state ``s``, with the element that breaks it."""
    return counted.violations(s, INVARIANTS, s.status)
