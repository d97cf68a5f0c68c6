"""The hardware port: everything kernel code can do to the machine, and nothing more.

A kernel never holds the :class:`~pagingcheck.model.machine.Machine`. Each
call the driver makes into a kernel (boot, spawn, dispatch, kill and the
trap, disk and timer hooks) is handed a port, open for that call only. It
offers what a kernel's privileged code can do on real hardware:

=========  ===========================================================================
memory     ``read(pa)``, ``write(pa, word)``: any physical word (the kernel region
           holds page tables, the user frames hold pages); ``fill(pfn, word)`` sets
           every word of a frame (a loop of writes, done at once)
MMU        ``load_context(root, asid)``: the page-table base and address-space id
           registers; ``probe(va, access)``: the privileged PROBE instruction, what
           a user access would do now in the loaded address space (its physical
           address, or the fault), changing nothing
TLB        ``tlb_insert(asid, vpn, pte_addr, pte)`` (software-refilled TLB only),
           ``tlb_invalidate(asid, vpn)``, ``tlb_flush()``, ``tlb_flush_asid(asid)``
CPU        ``context()``: the user registers as the trap left them; ``resume(state)``:
           load registers and return to user mode
disk       ``submit(op, block, pfn)``: queue a transfer, return its request id; the
           copy happens when the request completes, and the kernel hears of that
           in its disk hook
timer      ``set_timer(on)``: arm or disarm the interval timer
spaces     ``register_space(asid, root)``, ``release_space(asid)``: declare the
           address spaces the kernel runs, so the checks can walk every one of them
=========  ===========================================================================

plus ``config``, the hardware's documented parameters.

What the port does not offer is as deliberate: the disk's queue of pending
requests, the MMU's walk of a table (a kernel walks its own tables by
reading memory), the TLB's contents, the driver's choices and every record
the checks keep. A trap's details arrive as the
:class:`~pagingcheck.model.traps.TrapFrame` the CPU's registers hold.

A call that breaks the rules below raises :class:`PortError` naming the call
and the rule; so does any call made while the port is closed (from a
kernel's ``view``, say, or kept from an earlier call). Rules:

* physical addresses are ``0 .. memory_words - 1``; a word is ``0 .. 2**32 - 1``;
* frames named by ``fill`` and ``submit`` are user frames;
* vpns are ``0 .. va_pages - 1``; asids are ``0 .. MAX_ASID``;
* ``submit``: ``op`` is ``"read"`` (block to frame) or ``"write"`` (frame to
  block); reads may name any disk block, writes only swap slots (program
  images are read-only);
* ``tlb_insert`` exists only on a software-refilled TLB;
* ``resume`` takes an :class:`~pagingcheck.model.isa.ArchState` of 32-bit words.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.errors import PortError
from pagingcheck.model.isa import REGISTERS, ArchState
from pagingcheck.model.machine import Machine
from pagingcheck.model.tlb import TlbEntry
from pagingcheck.model.traps import Access, Fault

WORD_MAX = 0xFFFF_FFFF
#: The largest address-space id (the inverted table stores asid + 1 in a word).
MAX_ASID = 0x7FFF_FFFF
#: Largest value of the flags field of the CPU (Z and N).
FLAGS_MAX = 3


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Port:
    """The operations a kernel performs on the hardware; see the module docstring."""

    __slots__ = ("__machine", "__open", "config")

    def __init__(self, machine: Machine) -> None:
        self.__machine = machine
        self.__open = False
        #: The hardware's configuration (sizes and variants).
        self.config: HardwareConfig = machine.config

    # -- opening (the driver's side) ------------------------------------------------

    @contextmanager
    def opened(self) -> Iterator[Port]:
        """The port, open for the duration of one kernel call."""
        self.__open = True
        try:
            yield self
        finally:
            self.__open = False

    # -- checks ----------------------------------------------------------------------

    def _machine(self, call: str) -> Machine:
        if not self.__open:
            raise PortError(f"{call}: the port is open only during a kernel call")
        return self.__machine

    def _int(self, call: str, name: str, value: object, top: int) -> int:
        if not _is_int(value) or not 0 <= value <= top:  # type: ignore[operator]
            raise PortError(f"{call}: {name} {value!r} is not an integer in 0..{top}")
        return value  # type: ignore[return-value]

    def _address(self, call: str, pa: object) -> int:
        return self._int(call, "physical address", pa, self.config.memory_words - 1)

    def _user_frame(self, call: str, pfn: object) -> int:
        config = self.config
        if not _is_int(pfn) or pfn not in config.user_pfns:
            raise PortError(
                f"{call}: frame {pfn!r} is not a user frame "
                f"({config.first_user_frame}..{config.total_frames - 1})"
            )
        return pfn  # type: ignore[return-value]

    # -- memory --------------------------------------------------------------------------

    def read(self, pa: int) -> int:
        """The word at physical address ``pa``."""
        machine = self._machine("read")
        return machine.memory.read(self._address("read", pa))

    def write(self, pa: int, value: int) -> None:
        """Store the word ``value`` at physical address ``pa``."""
        machine = self._machine("write")
        address = self._address("write", pa)
        machine.memory.write(address, self._int("write", "word", value, WORD_MAX))

    def fill(self, pfn: int, value: int) -> None:
        """Store the word ``value`` in every word of user frame ``pfn``."""
        machine = self._machine("fill")
        frame = self._user_frame("fill", pfn)
        machine.memory.fill_frame(frame, self._int("fill", "word", value, WORD_MAX))

    # -- MMU and TLB ------------------------------------------------------------------------

    def load_context(self, root: int, asid: int) -> None:
        """Load the page-table base and address-space id registers (the TLB is left alone)."""
        machine = self._machine("load_context")
        machine.mmu.load_context(
            self._address("load_context", root),
            self._int("load_context", "asid", asid, MAX_ASID),
        )

    def probe(self, va: int, access: Access) -> int | Fault:
        """What a user ``access`` to ``va`` would do now: its physical address, or the fault."""
        machine = self._machine("probe")
        if not isinstance(access, Access):
            raise PortError(f"probe: access {access!r} is not an Access")
        address = self._int("probe", "virtual address", va, WORD_MAX)
        return machine.mmu.probe(machine.memory, address, access)

    def tlb_insert(self, asid: int, vpn: int, pte_addr: int, pte: int) -> None:
        """Software refill: cache PTE word ``pte`` (read from ``pte_addr``) for ``vpn``."""
        machine = self._machine("tlb_insert")
        if self.config.tlb_refill != "software":
            raise PortError("tlb_insert: this TLB is refilled by the hardware walker")
        entry = TlbEntry(
            self._int("tlb_insert", "asid", asid, MAX_ASID),
            self._int("tlb_insert", "vpn", vpn, self.config.va_pages - 1),
            self._address("tlb_insert", pte_addr),
            self._int("tlb_insert", "pte", pte, WORD_MAX),
        )
        machine.mmu.tlb_write(entry)

    def tlb_invalidate(self, asid: int, vpn: int) -> None:
        """Drop the TLB entries that match ``(asid, vpn)`` (untagged: any asid)."""
        machine = self._machine("tlb_invalidate")
        machine.mmu.tlb.invalidate(
            self._int("tlb_invalidate", "asid", asid, MAX_ASID),
            self._int("tlb_invalidate", "vpn", vpn, self.config.va_pages - 1),
        )

    def tlb_flush(self) -> None:
        """Empty the whole TLB."""
        self._machine("tlb_flush").mmu.tlb.flush()

    def tlb_flush_asid(self, asid: int) -> None:
        """Drop every TLB entry loaded for ``asid``."""
        machine = self._machine("tlb_flush_asid")
        machine.mmu.tlb.flush_asid(self._int("tlb_flush_asid", "asid", asid, MAX_ASID))

    # -- CPU --------------------------------------------------------------------------------

    def context(self) -> ArchState:
        """The user registers, PC and flags as they are now (after a trap: as it left them)."""
        return self._machine("context").cpu.state

    def resume(self, state: ArchState) -> None:
        """Load ``state`` into the CPU and return to user mode."""
        machine = self._machine("resume")
        if (
            not isinstance(state, ArchState)
            or len(state.regs) != REGISTERS
            or not all(_is_int(r) and 0 <= r <= WORD_MAX for r in state.regs)
            or not (_is_int(state.pc) and 0 <= state.pc <= WORD_MAX)
            or not (_is_int(state.flags) and 0 <= state.flags <= FLAGS_MAX)
        ):
            raise PortError(
                f"resume: {state!r} is not an ArchState of {REGISTERS} 32-bit registers, "
                f"a 32-bit pc and flags in 0..{FLAGS_MAX}"
            )
        machine.cpu.resume(state)

    # -- disk and timer -----------------------------------------------------------------------

    def submit(self, op: str, block: int, pfn: int) -> int:
        """Queue a transfer between disk ``block`` and user frame ``pfn``; return its id.

        ``read`` copies the block into the frame, ``write`` the frame to the
        block, both when the request completes (not now).
        """
        machine = self._machine("submit")
        if op not in ("read", "write"):
            raise PortError(f"submit: op {op!r} is not 'read' or 'write'")
        last = self.config.disk_blocks - 1 if op == "read" else self.config.swap_slots - 1
        what = "disk block" if op == "read" else "swap slot (images are read-only)"
        if last < 0:
            raise PortError(f"submit: this disk has no {what} to {op}")
        number = self._int("submit", what, block, last)
        frame = self._user_frame("submit", pfn)
        return machine.disk.submit(op, number, frame).id  # type: ignore[arg-type]

    def set_timer(self, on: bool) -> None:
        """Arm (True) or disarm (False) the interval timer."""
        machine = self._machine("set_timer")
        if not isinstance(on, bool):
            raise PortError(f"set_timer: {on!r} is not true or false")
        machine.timer = on

    # -- address spaces ------------------------------------------------------------------------

    def register_space(self, asid: int, root: int) -> None:
        """Declare address space ``asid`` with its table at ``root`` (again: a new root)."""
        machine = self._machine("register_space")
        number = self._int("register_space", "asid", asid, MAX_ASID)
        machine.spaces[number] = self._address("register_space", root)

    def release_space(self, asid: int) -> None:
        """Withdraw the declaration of address space ``asid``."""
        machine = self._machine("release_space")
        number = self._int("release_space", "asid", asid, MAX_ASID)
        if number not in machine.spaces:
            raise PortError(f"release_space: address space {number} was never registered")
        del machine.spaces[number]
