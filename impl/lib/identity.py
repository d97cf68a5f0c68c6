"""Choices that depend only on which frame, slot or process it is.

A kernel often has several interchangeable candidates: any free frame
would do, any free swap slot, and among unfinished instructions one must
be served first. The reference kernel makes each such choice here and
nowhere else, so the rule is visible in one place, and a search that
treats interchangeable frames, slots or processes as one (symmetry
reduction) knows exactly which choices it must turn into driver choices.

* a free frame: the lowest-numbered;
* free swap slots: the lowest-numbered, in order;
* which unfinished instruction goes first: the one that faulted first
  (its ticket, a number the kernel hands out in fault order); this
  depends on the order of events, not on pids.

The replacement policies break their own ties by the lowest frame number
(:mod:`pagingcheck.impl.lib.replacement`); that, too, is a choice by
identity, made inside the policy.
"""

from __future__ import annotations

from collections.abc import Sequence


def free_frame(free: Sequence[int]) -> int:
    """The free frame to take from the non-empty free list ``free``."""
    return min(free)


def free_slots(free: Sequence[int], count: int) -> tuple[int, ...]:
    """The ``count`` free slots to take from ``free`` (which holds at least that many)."""
    return tuple(sorted(free)[:count])


def first_served(tickets: dict[int, int]) -> list[int]:
    """Pids ordered by who is served first: lowest ticket first (``tickets``: pid -> ticket)."""
    return sorted(tickets, key=lambda pid: (tickets[pid], pid))
