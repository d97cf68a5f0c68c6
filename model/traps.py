"""Traps and interrupts: the events that move control from hardware to kernel.

A trap is a value the hardware returns, never a Python exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Access(Enum):
    """What kind of memory access an instruction made."""

    FETCH = "fetch"
    READ = "read"
    WRITE = "write"


class TrapKind(Enum):
    """Why control passed to the kernel."""

    PAGE_FAULT = "page_fault"  # no present translation (or address outside the space)
    PROTECTION_FAULT = "protection_fault"  # present, but the access is not allowed
    TLB_MISS = "tlb_miss"  # software-managed TLB has no entry for the page
    ILLEGAL_INSTRUCTION = "illegal_instruction"  # word does not decode
    SYSCALL = "syscall"  # the SYS instruction retired
    TIMER = "timer"  # the interval timer fired
    DISK_COMPLETION = "disk_completion"  # a disk request finished


@dataclass(frozen=True)
class Fault:
    """A memory access the MMU refused: its kind, the address and the access kind."""

    kind: TrapKind
    va: int
    access: Access


@dataclass(frozen=True)
class TrapFrame:
    """What the CPU's trap registers hold when it enters the kernel: all a kernel learns.

    ``pc`` is the address of the instruction that trapped (the SYS
    instruction for a system call). ``va`` and ``access`` are the fault
    address registers: set for a memory fault except under the ``decode``
    restart variant, where the hardware records only ``pc``.
    ``state_register`` holds the side effects the instruction made before
    it faulted (register, amount added), under the ``state_register``
    variant only. ``number`` is a system call's number.
    """

    kind: TrapKind
    pc: int
    va: int | None = None
    access: Access | None = None
    state_register: tuple[tuple[int, int], ...] = ()
    number: int | None = None
