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
console    ``console_write(byte)``: print one byte (``0 .. 255``) on the console;
           ``console_read()``: take the next byte typed at the console, or None when
           the input is exhausted
spaces     ``register_space(asid, root)``, ``release_space(asid)``: declare the
           address spaces the kernel runs, so the checks can walk every one of them
programs   ``image(index)``: the program image installed at position ``index`` of the
           workload (the disk's directory of programs, read-only), or None; what EXEC
           starts
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
  block); reads may name any disk block, writes only swap slots and the
  blocks of the workload's files (program images are read-only);
* ``tlb_insert`` exists only on a software-refilled TLB;
* ``resume`` takes an :class:`~pagingcheck.model.isa.ArchState` of 32-bit words.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.disk import DiskFile
from pagingcheck.model.errors import PortError
from pagingcheck.model.isa import REGISTERS, ArchState
from pagingcheck.model.machine import Machine
from pagingcheck.model.memory import Words
from pagingcheck.model.program import Image
from pagingcheck.model.tlb import TlbEntry
from pagingcheck.model.traps import Access, Fault

WORD_MAX = 0xFFFF_FFFF
#: The largest address-space id (the inverted table stores asid + 1 in a word).
MAX_ASID = 0x7FFF_FFFF
#: Largest value of the flags field of the CPU (Z and N).
FLAGS_MAX = 3


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Port(ABC):
    """The hardware port: the operations a kernel performs, and the rules they obey.

    :class:`MachinePort` carries the operations out on a machine; a port
    carried over a process boundary (``pagingcheck.checks.host``) sends them
    to one. Both check the same rules here, so both refuse exactly the same
    calls. A refusal raises :class:`PortError` and is remembered in
    :attr:`broken`: a broken rule is the kernel's violation even if the
    kernel catches the error.
    """

    def __init__(self, config: HardwareConfig) -> None:
        #: The hardware's configuration (sizes and variants).
        self.config: HardwareConfig = config
        # The last physical address, a derived size: every memory call checks against it.
        self._last_address = config.memory_words - 1
        #: Whether a kernel call is under way (the driver opens and closes the port).
        self.open = False
        #: The first rule a kernel broke, if any.
        self.broken: PortError | None = None

    def _refuse(self, message: str) -> PortError:
        """Record and return the error for a broken rule (the caller raises it)."""
        error = PortError(message)
        if self.broken is None:
            self.broken = error
        return error

    def _closed(self, call: str) -> None:
        """Refuse a call made while the port is closed."""
        if not self.open:
            raise self._refuse(f"{call}: the port is open only during a kernel call")

    def _integer(self, call: str, name: str, value: object, top: int) -> int:
        """``value`` if it is an integer in ``0..top``."""
        if not _is_int(value) or not 0 <= value <= top:  # type: ignore[operator]
            raise self._refuse(f"{call}: {name} {value!r} is not an integer in 0..{top}")
        return value  # type: ignore[return-value]

    def _address(self, call: str, pa: object) -> int:
        """A physical address."""
        if type(pa) is int and 0 <= pa <= self._last_address:
            return pa  # the common case, answered before the general check
        return self._integer(call, "physical address", pa, self._last_address)

    def _word(self, call: str, value: object) -> int:
        """A 32-bit word."""
        return self._integer(call, "word", value, WORD_MAX)

    def _byte(self, call: str, byte: object) -> int:
        """A byte."""
        return self._integer(call, "byte", byte, 0xFF)

    def _asid(self, call: str, asid: object) -> int:
        """An address-space id."""
        return self._integer(call, "asid", asid, MAX_ASID)

    def _vpn(self, call: str, vpn: object) -> int:
        """A virtual page number."""
        return self._integer(call, "vpn", vpn, self.config.va_pages - 1)

    def _user_frame(self, call: str, pfn: object) -> int:
        """A user frame number."""
        config = self.config
        if not _is_int(pfn) or pfn not in config.user_pfns:
            raise self._refuse(
                f"{call}: frame {pfn!r} is not a user frame "
                f"({config.first_user_frame}..{config.total_frames - 1})"
            )
        return pfn  # type: ignore[return-value]

    def _access(self, call: str, access: object) -> Access:
        """An Access."""
        if not isinstance(access, Access):
            raise self._refuse(f"{call}: access {access!r} is not an Access")
        return access

    def _flag(self, call: str, on: object) -> bool:
        """True or False."""
        if not isinstance(on, bool):
            raise self._refuse(f"{call}: {on!r} is not true or false")
        return on

    def _tlb_entry(self, asid: int, vpn: int, pte_addr: int, pte: int) -> TlbEntry:
        """The entry ``tlb_insert`` would cache (software refill only)."""
        if self.config.tlb_refill != "software":
            raise self._refuse("tlb_insert: this TLB is refilled by the hardware walker")
        return TlbEntry(
            self._asid("tlb_insert", asid),
            self._vpn("tlb_insert", vpn),
            self._address("tlb_insert", pte_addr),
            self._word("tlb_insert", pte),
        )

    def _arch_state(self, call: str, state: object) -> ArchState:
        """An ArchState of 32-bit registers and pc, flags 0..3."""
        if (
            not isinstance(state, ArchState)
            or not isinstance(state.regs, tuple)
            or len(state.regs) != REGISTERS
            or not all(_is_int(r) and 0 <= r <= WORD_MAX for r in state.regs)
            or not (_is_int(state.pc) and 0 <= state.pc <= WORD_MAX)
            or not (_is_int(state.flags) and 0 <= state.flags <= FLAGS_MAX)
        ):
            raise self._refuse(
                f"{call}: {state!r} is not an ArchState of {REGISTERS} 32-bit registers, "
                f"a 32-bit pc and flags in 0..{FLAGS_MAX}"
            )
        return state

    def _transfer(self, call: str, op: object, block: object, pfn: object) -> tuple[int, int]:
        """The block and frame of a transfer ``op``: reads any block, writes swap slots
        and file blocks (:meth:`_writable`)."""
        if op not in ("read", "write"):
            raise self._refuse(f"{call}: op {op!r} is not 'read' or 'write'")
        last = self.config.disk_blocks - 1
        if last < 0:
            raise self._refuse(f"{call}: this disk has no block to {op}")
        number = self._integer(call, "disk block", block, last)
        if op == "write" and not self._writable(number):
            raise self._refuse(
                f"{call}: block {number} is neither a swap slot nor a file's block "
                "(program images are read-only)"
            )
        return number, self._user_frame(call, pfn)

    def _writable(self, block: int) -> bool:
        """Whether a write may name ``block``: a swap slot (a port that knows the disk's
        directory allows file blocks too)."""
        return block < self.config.swap_slots

    @contextmanager
    def opened(self) -> Iterator[Port]:
        """The port, open for the duration of one kernel call (the driver's side)."""
        self.open = True
        try:
            yield self
        finally:
            self.open = False

    # -- the operations ----------------------------------------------------------------

    @abstractmethod
    def read(self, pa: int) -> int:
        """The word at physical address ``pa``."""

    @abstractmethod
    def write(self, pa: int, value: int) -> None:
        """Store the word ``value`` at physical address ``pa``."""

    @abstractmethod
    def fill(self, pfn: int, value: int) -> None:
        """Store the word ``value`` in every word of user frame ``pfn``."""

    @abstractmethod
    def load_context(self, root: int, asid: int) -> None:
        """Load the page-table base and address-space id registers (the TLB is left alone)."""

    @abstractmethod
    def probe(self, va: int, access: Access) -> int | Fault:
        """What a user ``access`` to ``va`` would do now: its physical address, or the fault."""

    @abstractmethod
    def tlb_insert(self, asid: int, vpn: int, pte_addr: int, pte: int) -> None:
        """Software refill: cache PTE word ``pte`` (read from ``pte_addr``) for ``vpn``."""

    @abstractmethod
    def tlb_invalidate(self, asid: int, vpn: int) -> None:
        """Drop the TLB entries that match ``(asid, vpn)`` (untagged: any asid)."""

    @abstractmethod
    def tlb_flush(self) -> None:
        """Empty the whole TLB."""

    @abstractmethod
    def tlb_flush_asid(self, asid: int) -> None:
        """Drop every TLB entry loaded for ``asid``."""

    @abstractmethod
    def context(self) -> ArchState:
        """The user registers, PC and flags as they are now (after a trap: as it left them)."""

    @abstractmethod
    def resume(self, state: ArchState) -> None:
        """Load ``state`` into the CPU and return to user mode."""

    @abstractmethod
    def submit(self, op: str, block: int, pfn: int) -> int:
        """Queue a transfer between disk ``block`` and user frame ``pfn``; return its id."""

    @abstractmethod
    def set_timer(self, on: bool) -> None:
        """Arm (True) or disarm (False) the interval timer."""

    @abstractmethod
    def console_write(self, byte: int) -> None:
        """Print ``byte`` (``0 .. 255``) on the console."""

    @abstractmethod
    def console_read(self) -> int | None:
        """Take the next byte (``0 .. 255``) typed at the console; None when there is none."""

    @abstractmethod
    def register_space(self, asid: int, root: int) -> None:
        """Declare address space ``asid`` with its table at ``root`` (again: a new root)."""

    @abstractmethod
    def release_space(self, asid: int) -> None:
        """Withdraw the declaration of address space ``asid``."""

    @abstractmethod
    def image(self, index: int) -> Image | None:
        """The program image installed at position ``index`` of the workload, or None."""

    @abstractmethod
    def file(self, index: int) -> DiskFile | None:
        """The workload's file number ``index`` on the disk, or None."""

    def _index(self, call: str, index: object, what: str = "program index") -> int:
        return self._integer(call, what, index, WORD_MAX)


class MachinePort(Port):
    """The port carried out on a :class:`~pagingcheck.model.machine.Machine`."""

    def __init__(self, machine: Machine) -> None:
        super().__init__(machine.config)
        self.__machine = machine

    def words(self) -> Words:
        """A copy of all of physical memory (what reading every word would give)."""
        self._closed("words")
        return self.__machine.memory.words.copy()

    def _machine(self, call: str) -> Machine:
        self._closed(call)
        return self.__machine

    # -- memory --------------------------------------------------------------------------

    def read(self, pa: int) -> int:
        """The word at physical address ``pa``."""
        machine = self._machine("read")
        return machine.memory.read(self._address("read", pa))

    def write(self, pa: int, value: int) -> None:
        """Store the word ``value`` at physical address ``pa``."""
        machine = self._machine("write")
        machine.memory.write(self._address("write", pa), self._word("write", value))

    def fill(self, pfn: int, value: int) -> None:
        """Store the word ``value`` in every word of user frame ``pfn``."""
        machine = self._machine("fill")
        machine.memory.fill_frame(self._user_frame("fill", pfn), self._word("fill", value))

    # -- MMU and TLB ------------------------------------------------------------------------

    def load_context(self, root: int, asid: int) -> None:
        """Load the page-table base and address-space id registers (the TLB is left alone)."""
        machine = self._machine("load_context")
        machine.mmu.load_context(
            self._address("load_context", root), self._asid("load_context", asid)
        )

    def probe(self, va: int, access: Access) -> int | Fault:
        """What a user ``access`` to ``va`` would do now: its physical address, or the fault."""
        machine = self._machine("probe")
        kind = self._access("probe", access)
        address = self._integer("probe", "virtual address", va, WORD_MAX)
        return machine.mmu.probe(machine.memory, address, kind)

    def tlb_insert(self, asid: int, vpn: int, pte_addr: int, pte: int) -> None:
        """Software refill: cache PTE word ``pte`` (read from ``pte_addr``) for ``vpn``."""
        machine = self._machine("tlb_insert")
        machine.mmu.tlb_write(self._tlb_entry(asid, vpn, pte_addr, pte))

    def tlb_invalidate(self, asid: int, vpn: int) -> None:
        """Drop the TLB entries that match ``(asid, vpn)`` (untagged: any asid)."""
        machine = self._machine("tlb_invalidate")
        machine.mmu.tlb.invalidate(
            self._asid("tlb_invalidate", asid), self._vpn("tlb_invalidate", vpn)
        )

    def tlb_flush(self) -> None:
        """Empty the whole TLB."""
        self._machine("tlb_flush").mmu.tlb.flush()

    def tlb_flush_asid(self, asid: int) -> None:
        """Drop every TLB entry loaded for ``asid``."""
        machine = self._machine("tlb_flush_asid")
        machine.mmu.tlb.flush_asid(self._asid("tlb_flush_asid", asid))

    # -- CPU --------------------------------------------------------------------------------

    def context(self) -> ArchState:
        """The user registers, PC and flags as they are now (after a trap: as it left them)."""
        return self._machine("context").cpu.state

    def resume(self, state: ArchState) -> None:
        """Load ``state`` into the CPU and return to user mode."""
        machine = self._machine("resume")
        machine.cpu.resume(self._arch_state("resume", state))

    # -- disk, timer and console ------------------------------------------------------------

    def submit(self, op: str, block: int, pfn: int) -> int:
        """Queue a transfer between disk ``block`` and user frame ``pfn``; return its id.

        ``read`` copies the block into the frame, ``write`` the frame to the
        block, both when the request completes (not now).
        """
        machine = self._machine("submit")
        number, frame = self._transfer("submit", op, block, pfn)
        return machine.disk.submit(op, number, frame).id  # type: ignore[arg-type]

    def set_timer(self, on: bool) -> None:
        """Arm (True) or disarm (False) the interval timer."""
        machine = self._machine("set_timer")
        machine.timer = self._flag("set_timer", on)

    def console_write(self, byte: int) -> None:
        """Print ``byte`` (``0 .. 255``) on the console."""
        machine = self._machine("console_write")
        machine.console += (self._byte("console_write", byte),)

    def console_read(self) -> int | None:
        """Take the next byte (``0 .. 255``) typed at the console; None when there is none."""
        machine = self._machine("console_read")
        if not machine.console_input:
            return None
        byte = machine.console_input[0]
        machine.console_input = machine.console_input[1:]
        return byte

    # -- address spaces ------------------------------------------------------------------------

    def register_space(self, asid: int, root: int) -> None:
        """Declare address space ``asid`` with its table at ``root`` (again: a new root)."""
        machine = self._machine("register_space")
        number = self._asid("register_space", asid)
        machine.spaces[number] = self._address("register_space", root)

    def release_space(self, asid: int) -> None:
        """Withdraw the declaration of address space ``asid``."""
        machine = self._machine("release_space")
        number = self._asid("release_space", asid)
        if number not in machine.spaces:
            raise self._refuse(f"release_space: address space {number} was never registered")
        del machine.spaces[number]

    # -- programs ------------------------------------------------------------------------------

    def image(self, index: int) -> Image | None:
        """The program image installed at position ``index`` of the workload, or None."""
        machine = self._machine("image")
        number = self._index("image", index)
        return machine.images[number] if number < len(machine.images) else None

    def file(self, index: int) -> DiskFile | None:
        """The workload's file number ``index`` on the disk, or None."""
        machine = self._machine("file")
        number = self._index("file", index, "file number")
        return machine.files[number] if number < len(machine.files) else None

    def _writable(self, block: int) -> bool:
        """Swap slots and the blocks of the workload's files."""
        files = self.__machine.files
        return block < self.config.swap_slots or any(block in f.blocks for f in files)
