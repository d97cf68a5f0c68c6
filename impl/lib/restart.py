"""Restarting a faulted instruction: finding the fault (decode variant) and backing up.

Kernel software, in the kernel library because every kernel needs it and
the hardware does not do it. After a fault the CPU leaves the registers as
its restart variant says (``model.cpu``); the kernel makes them the state
at the start of the instruction again:

* ``precise``: nothing to do, the hardware restored them;
* ``state_register``: undo the side effects the trap frame lists;
* ``decode``: the trap frame holds only the instruction's address, so the
  kernel parses the instruction (:func:`locate_fault`) to learn which
  access faulted and which side effects it made, then undoes those.

:func:`locate` runs the search over the kernel's hardware port: it fetches
the instruction's words and asks the privileged PROBE operation what each
access would do now, so every access is answered as the hardware answered
it at the fault (the address space, page tables and TLB are still as the
trap left them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pagingcheck.model.errors import InternalError
from pagingcheck.model.isa import (
    WORD_MASK,
    ArchState,
    Instruction,
    SideEffects,
    accesses,
    decode,
    length,
    replay_side_effects,
)
from pagingcheck.model.traps import Access, Fault

__all__ = [
    "Located",
    "Probe",
    "Prober",
    "back_up",
    "locate",
    "locate_fault",
    "undo_side_effects",
]


def undo_side_effects(state: ArchState, effects: SideEffects) -> ArchState:
    """``state`` with each (register, delta) change taken back, last first; pc unchanged."""
    regs = list(state.regs)
    for r, delta in reversed(effects):
        regs[r] = (regs[r] - delta) & WORD_MASK
    return dataclasses.replace(state, regs=tuple(regs))


def back_up(state: ArchState, fault_pc: int, effects: SideEffects) -> ArchState:
    """The state at the start of the faulting instruction: changes undone, pc = ``fault_pc``."""
    return dataclasses.replace(undo_side_effects(state, effects), pc=fault_pc)


@dataclass(frozen=True)
class Located:
    """What a decoding kernel found: where the instruction faulted and what to undo.

    ``instruction`` is None for a fetch fault: the kernel could not read all its words.
    """

    fault_point: str
    fault: Fault
    instruction: Instruction | None
    side_effects: SideEffects


Probe = Callable[[int, Access], int | Fault]


def locate_fault(fault_pc: int, state: ArchState, probe: Probe) -> Located | None:
    """Find the fault point of the instruction at ``fault_pc`` from the state after the fault.

    For the decode restart variant. Requires ``probe(va, access)`` to answer
    what that access would do now (the word there, or the fault) without
    side effects; ``state`` holds the registers as the fault left them.
    Tries each fault point in order: the candidate start state is ``state``
    with that point's side effects undone; the candidate holds when every
    earlier access of the instruction from that start succeeds and this one
    faults. Returns the one candidate, or None if none holds (the memory
    map changed since the fault). The MOV register rule of
    :func:`illegal_reason` makes two candidates impossible; raises
    InternalError if it happens anyway. A PUSHM's writes are one fault point
    with no side effects: the candidate holds when the first of them that
    faults is the first access that does.
    """
    words: list[int] = []
    for k in range(3):
        if words and k >= length(words[0]):
            break
        word = probe((fault_pc + k) & WORD_MASK, Access.FETCH)
        if isinstance(word, Fault):
            return Located(f"fetch{k}", word, None, ())
        words.append(word)
    instruction = decode(words)
    if instruction is None:
        return None
    found: list[Located] = []
    for point in ("src", "dst", "push"):
        effects = replay_side_effects(instruction, point)
        start = back_up(state, fault_pc, effects)
        for where, va, access in accesses(instruction, start):
            answer = probe(va, access)
            if isinstance(answer, Fault):
                if where == point:
                    found.append(Located(point, answer, instruction, effects))
                break
    if len(found) > 1:
        raise InternalError(
            f"isa.locate_fault: {instruction} at {fault_pc} has several fault points {found}"
        )
    return found[0] if found else None


class Prober(Protocol):
    """The part of the hardware port :func:`locate` needs."""

    def probe(self, va: int, access: Access) -> int | Fault:
        """What a user access to ``va`` would do now: its physical address, or the fault."""
        ...

    def read(self, pa: int) -> int:
        """The word at physical address ``pa``."""
        ...


def locate(port: Prober, fault_pc: int, state: ArchState) -> Located | None:
    """:func:`locate_fault` with every access probed through ``port``."""

    def probe(va: int, access: Access) -> int | Fault:
        answer = port.probe(va, access)
        return answer if isinstance(answer, Fault) else port.read(answer)

    return locate_fault(fault_pc, state, probe)
