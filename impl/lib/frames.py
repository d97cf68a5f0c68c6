"""The frame-table protocol: every change to a user frame, as a small pure function.

One source for running and proving. Each operation has the shape
``op(frame, args...) -> (guard, new_frame)``: ``guard`` says whether the
operation is allowed in that state, ``new_frame`` is the state afterwards.
Fields may be Python values (the kernel runs these functions on every frame
change) or z3 terms (a proof runs the very same functions symbolically), so
the code uses :mod:`pagingcheck.impl.lib.logic` instead of ``and``/``if``.

States of one frame (``status``)::

    FREE    on the free list; nothing maps it; no transfer.
    IN_USE  holds one page, mapped present by ``refcount`` >= 1 PTEs
            (the reverse map lists them); no transfer.
    BUSY    reserved by the kernel: mapped by no present PTE (``refcount``
            is 0), on no free list, never chosen as a victim. ``transfer``
            is the disk request in flight on it (``READ`` page-in, ``WRITE``
            write-back) or ``NONE`` for the moment inside one handler
            between two transfers. ``orphan`` is set when every process
            the transfer served has gone: the frame is freed when the
            transfer ends, not before (its DMA would corrupt a new owner).

Transitions (guard in brackets)::

    reserve          FREE                      -> BUSY        take a free frame
    evict            IN_USE        [no xfer]   -> BUSY        victim; every mapping removed
    start_writeback  BUSY, NONE    [!orphan]   -> BUSY, WRITE dirty page goes to its slot
    start_pagein     BUSY, NONE    [!orphan]   -> BUSY, READ  page comes from slot or image
    finish_transfer  BUSY, READ|WRITE          -> BUSY, NONE  (or FREE when orphan)
    orphan           BUSY, READ|WRITE [!orphan]-> orphan      the last waiter exited
    adopt            BUSY, READ|WRITE [orphan] -> !orphan     a new process waits on it
    install(n)       BUSY, NONE    [!orphan]   -> IN_USE(n)   page arrived; n users mapped
    map_user         IN_USE(n)                 -> IN_USE(n+1) another process maps the page
    unmap_user       IN_USE(n), n >= 2         -> IN_USE(n-1) one mapping goes, others stay
    release          IN_USE(1)                 -> FREE        last mapping goes, page clean
    free             BUSY, NONE    [!orphan]   -> FREE        a reserved frame not needed

Every operation keeps :func:`well_formed`; that is the lemma a proof checks
(for one frame, hence for any number of frames). The kernel keeps the free
list equal to the set of FREE frames and the reverse map's size equal to
``refcount``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pagingcheck.impl.lib.logic import Cond, Term, all_of, implies, ite, not_, one_of

FREE, IN_USE, BUSY = 0, 1, 2
NONE, READ, WRITE = 0, 1, 2

STATUS_NAMES: dict[int, Literal["free", "in_use", "busy"]] = {
    FREE: "free",
    IN_USE: "in_use",
    BUSY: "busy",
}
TRANSFER_NAMES: dict[int, Literal["read", "write"] | None] = {
    NONE: None,
    READ: "read",
    WRITE: "write",
}


@dataclass(frozen=True)
class Frame:
    """The protocol state of one frame (fields are ints/bools, or z3 terms)."""

    status: Term
    refcount: Term
    transfer: Term
    orphan: Cond


FREE_FRAME = Frame(FREE, 0, NONE, False)

Step = tuple[Cond, Frame]


def well_formed(f: Frame) -> Cond:
    """A frame's fields agree with its status (the lemma every operation preserves)."""
    return all_of(
        one_of(f.status, FREE, IN_USE, BUSY),
        one_of(f.transfer, NONE, READ, WRITE),
        f.refcount >= 0,
        implies(f.status == FREE, all_of(f.refcount == 0, f.transfer == NONE, not_(f.orphan))),
        implies(f.status == IN_USE, all_of(f.refcount >= 1, f.transfer == NONE, not_(f.orphan))),
        implies(f.status == BUSY, f.refcount == 0),
        implies(f.orphan, f.transfer != NONE),
    )


def reserve(f: Frame) -> Step:
    """Take a free frame for the kernel (it becomes BUSY)."""
    return f.status == FREE, Frame(BUSY, 0, NONE, False)


def evict(f: Frame) -> Step:
    """Make an in-use frame a victim: the caller has removed every mapping of it."""
    return f.status == IN_USE, Frame(BUSY, 0, NONE, False)


def start_writeback(f: Frame) -> Step:
    """Start writing the frame's (dirty) page to its swap slot."""
    guard = all_of(f.status == BUSY, f.transfer == NONE, not_(f.orphan))
    return guard, Frame(BUSY, 0, WRITE, False)


def start_pagein(f: Frame) -> Step:
    """Start reading a page into the frame from its slot or image block."""
    guard = all_of(f.status == BUSY, f.transfer == NONE, not_(f.orphan))
    return guard, Frame(BUSY, 0, READ, False)


def finish_transfer(f: Frame) -> Step:
    """The frame's transfer ended: BUSY with no transfer, or FREE if it was orphaned."""
    guard = all_of(f.status == BUSY, f.transfer != NONE)
    return guard, Frame(ite(f.orphan, FREE, BUSY), 0, NONE, False)


def orphan(f: Frame) -> Step:
    """Every process the transfer served is gone: free the frame when the transfer ends."""
    guard = all_of(f.status == BUSY, f.transfer != NONE, not_(f.orphan))
    return guard, Frame(BUSY, 0, f.transfer, True)


def adopt(f: Frame) -> Step:
    """A process waits on an orphaned transfer again: keep the frame when it ends."""
    guard = all_of(f.status == BUSY, f.transfer != NONE, f.orphan)
    return guard, Frame(BUSY, 0, f.transfer, False)


def install(f: Frame, users: Term) -> Step:
    """The frame's page is in place: ``users`` (>= 1) present PTEs now map it."""
    guard = all_of(f.status == BUSY, f.transfer == NONE, not_(f.orphan), users >= 1)
    return guard, Frame(IN_USE, users, NONE, False)


def map_user(f: Frame) -> Step:
    """One more present PTE maps the frame's page (a minor fault on a shared page)."""
    return f.status == IN_USE, Frame(IN_USE, f.refcount + 1, NONE, False)


def unmap_user(f: Frame) -> Step:
    """One present PTE of several stops mapping the frame."""
    guard = all_of(f.status == IN_USE, f.refcount >= 2)
    return guard, Frame(IN_USE, f.refcount - 1, NONE, False)


def release(f: Frame) -> Step:
    """The last present PTE stops mapping the frame, whose page needs no write: free it."""
    guard = all_of(f.status == IN_USE, f.refcount == 1)
    return guard, FREE_FRAME


def free(f: Frame) -> Step:
    """Give back a reserved frame with no transfer that nobody needs any more."""
    guard = all_of(f.status == BUSY, f.transfer == NONE, not_(f.orphan))
    return guard, FREE_FRAME


#: Every transition by name, with the number of extra integer arguments it takes.
TRANSITIONS: dict[str, tuple[Callable[..., Step], int]] = {
    "reserve": (reserve, 0),
    "evict": (evict, 0),
    "start_writeback": (start_writeback, 0),
    "start_pagein": (start_pagein, 0),
    "finish_transfer": (finish_transfer, 0),
    "orphan": (orphan, 0),
    "adopt": (adopt, 0),
    "install": (install, 1),
    "map_user": (map_user, 0),
    "unmap_user": (unmap_user, 0),
    "release": (release, 0),
    "free": (free, 0),
}


def status_name(f: Frame) -> Literal["free", "in_use", "busy"]:
    """``"free"``, ``"in_use"`` or ``"busy"`` for a concrete frame."""
    return STATUS_NAMES[int(f.status)]


def transfer_name(transfer: int) -> Literal["read", "write"] | None:
    """``None``, ``"read"`` or ``"write"`` for a concrete transfer field (frame or slot)."""
    return TRANSFER_NAMES[int(transfer)]
