"""The reference kernel: demand paging over the hardware model, following the seeds.

:class:`ReferenceKernel` implements :class:`~pagingcheck.impl.interface.Kernel`.
Each hook runs atomically and returns the events it caused. The work is
done by the modules named after the seeds' four times:

* creation - :func:`pagingcheck.impl.reference.process.spawn`;
* execution - :func:`pagingcheck.impl.reference.process.dispatch`;
* page fault - :mod:`pagingcheck.impl.reference.fault` (ten steps; the
  kernel library's :mod:`~pagingcheck.impl.lib.restart` backs instructions up);
* termination - :func:`pagingcheck.impl.reference.process.terminate`.

State lives in :class:`~pagingcheck.impl.reference.tables.Tables`; frames and slots
change only through the protocols of :mod:`pagingcheck.impl.lib.frames` and
:mod:`pagingcheck.impl.lib.swap`, PTEs only through :mod:`pagingcheck.impl.lib.vm`.
The kernel reaches the hardware only through the port each call is handed.

Events (``KernelEvent.kind``; docs/kernel.md explains each one):

=============  ==============================================================
boot           the kernel initialised its structures
spawn          a process was created (detail: program)
dispatch       a process was put on the CPU (detail: "switch" when the MMU
               changed address space)
prepage        a page-in started by prepaging at first dispatch
fault          a fault trap (detail: kind, restart variant, access, va, point)
tlb_refill     software TLB refill from the page table
minor_fault    a resident (shared) page was mapped without I/O
wait_transfer  the faulting process waits for a transfer already in flight
wait_memory    the faulting process waits until a frame may be taken for it
evict_clean    a clean victim was unmapped everywhere (no write needed)
evict_dirty    a dirty victim was unmapped everywhere (write-back follows)
writeback      a write of a frame to its slot, or of a file's page to its
               block, started (detail: why)
pagein         a page arrived (or was zero-filled) and was mapped
backup         a faulting instruction was backed up (detail: the pc)
ready          a process became ready
signal         a process is killed by a signal (detail: invalid, protection,
               illegal)
exit           a process terminated (detail: exit, kill or the signal)
free_frame     a frame went back to the free list
free_slot      a swap slot went back to the free list
shared_zero    a shared object's last user left (detail: its key)
mmap           an MMAP mapped a file (detail: its key, shared or private,
               its pages), or failed
munmap         a MUNMAP unmapped pages an MMAP mapped, or failed
clean          the cleaner started writing a dirty page back ahead of need
tick           the timer fired
=============  ==============================================================
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import (
    FileView,
    FrameView,
    KernelEvent,
    KernelView,
    Location,
    PageView,
    ProcessView,
    SlotView,
    SpawnRefused,
)
from pagingcheck.impl.lib import frames as fr
from pagingcheck.impl.lib.framestate import FrameState
from pagingcheck.impl.lib.memory import FREED_PATTERN
from pagingcheck.impl.lib.slotstate import SlotState
from pagingcheck.impl.reference import fault as faults
from pagingcheck.impl.reference import process
from pagingcheck.impl.reference.tables import Mapping, PageId, PageRecord, Tables, User
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.disk import Request
from pagingcheck.model.errors import ConfigError, InternalError, UserError
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.isa import (
    SYS_EXEC,
    SYS_EXIT,
    SYS_FORK,
    SYS_MMAP,
    SYS_MUNMAP,
    SYS_PUTC,
    SYS_READ,
    SYS_SBRK,
    SYS_WAIT,
    SYS_WRITE,
)
from pagingcheck.model.port import Port
from pagingcheck.model.program import Image
from pagingcheck.model.traps import TrapFrame, TrapKind

#: Policies that learn of uses only through ``accessed``: at each tick the kernel
#: samples (and clears) the R bits for them.
SAMPLED_AT_TICK = frozenset({"lru"})

FAULT_TRAPS = (TrapKind.PAGE_FAULT, TrapKind.PROTECTION_FAULT, TrapKind.TLB_MISS)


class ReferenceKernel:
    """The reference paging kernel. Copyable and comparable as a value."""

    def __init__(self, hardware: HardwareConfig, kernel: KernelConfig | None = None) -> None:
        self.hardware = hardware
        self.kconfig = kernel if kernel is not None else KernelConfig()
        self.t = Tables.fresh(hardware, self.kconfig)

    # -- operations ---------------------------------------------------------------------

    def boot(self, port: Port) -> tuple[KernelEvent, ...]:
        """Allocate the system-wide page-table structures, scrub the user frames, arm the timer."""
        self._check_hardware(port)
        t = self.t
        root = t.editor.boot(port, t.kalloc)
        if root is None:
            raise ConfigError(
                f"hardware.kernel_frames: {t.config.kernel_frames} kernel frames cannot "
                f"hold the {t.editor.layout.kind} table's system structures; add kernel frames"
            )
        t.system_root = root
        t.booted = True
        for pfn in t.config.user_pfns:
            port.fill(pfn, FREED_PATTERN)
        port.set_timer(True)
        t.emit("boot", detail=t.editor.layout.kind)
        return t.take_events()

    def spawn(self, port: Port, image: Image) -> int | SpawnRefused:
        """Create a process running ``image``'s program (see :func:`process.spawn`)."""
        self._check_booted(port)
        process.rerun_finished(self.t)
        outcome = process.spawn(self.t, port, image)
        self.t.take_events()
        return outcome

    def runnable(self) -> tuple[int, ...]:
        """Every ready process and the running one, in pid order; but only the running
        one while it has not yet re-run an instruction whose fault was just handled.

        Returning from a fault handler goes straight back to the faulting
        process (step 10), as any kernel's trap return does; at every other
        instruction boundary the driver may switch.
        """
        t = self.t
        if t.current is not None and t.process(t.current).waiting_to_rerun:
            return (t.current,)
        return tuple(p.pid for p in t.live() if p.state in ("ready", "running"))

    def dispatch(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """Put runnable ``pid`` on the CPU."""
        if pid not in self.runnable():
            raise UserError(
                f"dispatch: process {pid} is not runnable (runnable: {self.runnable()})"
            )
        process.dispatch(self.t, port, pid)
        return self._finish(port)

    def kill(self, port: Port, pid: int) -> tuple[KernelEvent, ...]:
        """Terminate live ``pid`` from outside."""
        proc = self.t.processes.get(pid)
        if proc is None or proc.state == "exited":
            raise UserError(f"kill: no live process {pid}")
        process.rerun_finished(self.t)
        process.terminate(self.t, port, pid, "kill")
        return self._finish(port)

    # -- hooks ----------------------------------------------------------------------------

    def on_trap(self, port: Port, trap: TrapFrame) -> tuple[KernelEvent, ...]:
        """Handle the trap the running process just took."""
        pid = self.t.current
        if pid is None:
            raise InternalError("ReferenceKernel.on_trap: a trap with no process on the CPU")
        self.t.advance_clock()
        if trap.kind is TrapKind.SYSCALL:
            if trap.number not in (SYS_READ, SYS_WRITE):  # they retire their SYS when done
                process.instruction_retired(self.t, self.t.process(pid))
            if trap.number == SYS_EXIT:
                status = port.context().regs[0]
                process.terminate(self.t, port, pid, "exit", status=status)
            elif trap.number == SYS_SBRK:
                process.sbrk(self.t, port, pid)
            elif trap.number == SYS_PUTC:
                process.putc(self.t, port, pid)
            elif trap.number == SYS_WRITE:
                process.write(self.t, port, pid)
            elif trap.number == SYS_READ:
                process.read(self.t, port, pid)
            elif trap.number == SYS_FORK:
                process.fork(self.t, port, pid)
            elif trap.number == SYS_EXEC:
                process.exec_program(self.t, port, pid)
            elif trap.number == SYS_WAIT:
                process.wait(self.t, port, pid)
            elif trap.number == SYS_MMAP:
                process.mmap(self.t, port, pid)
            elif trap.number == SYS_MUNMAP:
                process.munmap(self.t, port, pid)
            else:  # no other system call does anything: return to the caller
                port.resume(port.context())
        elif trap.kind is TrapKind.ILLEGAL_INSTRUCTION:
            process.terminate(self.t, port, pid, "signal", "illegal")
        elif trap.kind in FAULT_TRAPS:
            self._page_fault(port, pid, trap)
        else:
            raise InternalError(f"ReferenceKernel.on_trap: unexpected trap {trap.kind}")
        return self._finish(port)

    def _page_fault(self, port: Port, pid: int, trap: TrapFrame) -> None:
        signal = faults.handle_fault(self.t, port, pid, trap)
        if signal is not None:
            process.terminate(self.t, port, pid, "signal", signal.reason)

    def on_disk(self, port: Port, request: Request) -> tuple[KernelEvent, ...]:
        """Carry on with the transfer that just completed."""
        process.rerun_finished(self.t)
        faults.complete_transfer(self.t, port, request)
        return self._finish(port)

    def on_timer(self, port: Port) -> tuple[KernelEvent, ...]:
        """Advance time, let the policy sample R bits, and run the cleaner.

        The timer does not reschedule: the driver chooses who runs next.
        """
        t = self.t
        process.rerun_finished(t)
        t.advance_clock()
        t.emit("tick")
        refbits = t.bits(port)
        t.policy.tick(t.clock, refbits)
        if t.policy.name in SAMPLED_AT_TICK:
            for pfn in self._in_use():
                if refbits.referenced(pfn):
                    t.policy.accessed(pfn, t.clock, refbits.modified(pfn))
                    refbits.clear_referenced(pfn)
        if self.kconfig.cleaner and len(t.free_frames) < self.kconfig.cleaner_threshold:
            faults.clean_ahead(t, port)
        return self._finish(port)

    def _in_use(self) -> list[int]:
        return [pfn for pfn, f in sorted(self.t.frames.items()) if f.status == fr.IN_USE]

    def _finish(self, port: Port) -> tuple[KernelEvent, ...]:
        faults.settle_transfers(self.t, port)
        faults.wake_memory_waiters(self.t, port)
        return self.t.take_events()

    def _check_hardware(self, port: Port) -> None:
        if port.config != self.hardware:
            raise UserError(
                "ReferenceKernel: the machine's hardware configuration differs from the one "
                "the kernel was built for; build both from the same HardwareConfig"
            )

    def _check_booted(self, port: Port) -> None:
        self._check_hardware(port)
        if not self.t.booted:
            raise UserError("ReferenceKernel: call boot() before anything else")

    # -- view and values ----------------------------------------------------------------

    def view(self) -> KernelView:
        """The introspection snapshot (see :class:`KernelView`)."""
        t = self.t
        processes = []
        slot_users: dict[int, list[User]] = {}
        for pid, proc in sorted(t.processes.items()):
            pages = []
            if proc.state != "exited":
                for entry in proc.mappings:
                    rec = t.record(entry.page)
                    if rec.slot is not None:
                        slot_users.setdefault(rec.slot, []).append((pid, entry.vpn))
                    pages.append(_page_view(entry, rec))
            processes.append(
                ProcessView(
                    pid,
                    proc.asid,
                    proc.state,
                    proc.root,
                    tuple(pages),
                    proc.context,
                    proc.fault is not None,
                )
            )
        frame_views, free_frames = _frame_views(t)
        taken, free_slots = _slot_records(t)
        slot_views = tuple(
            SlotView(slot, refcount, tuple(sorted(slot_users.get(slot, ()))), transfer)
            for slot, refcount, transfer in taken
        )
        return KernelView(
            tuple(processes),
            frame_views,
            free_frames,
            slot_views,
            free_slots,
            t.current,
            _file_views(t),
        )

    def copy(self) -> Self:
        """An independent copy of all kernel state, of this kernel's own class, so a
        subclass keeps its overrides. What a subclass adds to the instance is copied
        shallowly: a subclass with mutable state of its own copies it in its own copy()."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.t = self.t.copy()
        return clone

    def fingerprint(self) -> bytes:
        """A stable digest of all kernel state."""
        return fingerprint(self.kconfig, self.t.snapshot())

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ReferenceKernel)
            and self.kconfig == other.kconfig
            and self.fingerprint() == other.fingerprint()
        )

    __hash__ = None  # type: ignore[assignment]


def _file_views(t: Tables) -> tuple[FileView, ...]:
    """The pages of the files that a frame holds (resident, or being written back)."""
    return tuple(
        FileView(key[len("file:") :], index, Location("frame", rec.frame))
        for key in sorted(t.objects)
        if process.is_file(key)
        for index in range(t.objects[key].pages)
        if (rec := t.pages[PageId(key, index)]).frame is not None
    )


# -- views of immutable records, kept ---------------------------------------------------------
#
# A state's view is mostly made of records (mappings, page records, the frame and slot
# states) that earlier states had too, and building view records is most of view()'s
# time. Records are values that no code changes, so a view made of one is kept, by the
# record's identity, with the record itself (so its id is not reused while kept). Only
# time is saved: a kept view is the one view() would build again.

#: How many records' views are kept; past it the cache starts again.
VIEWS_KEPT = 1 << 12

_page_views: dict[tuple[int, int], tuple[Mapping, PageRecord, PageView]] = {}
# The frame and slot views are read through the tables' methods, so they are kept by the
# tables' class too (a kernel may bring tables of its own).
_frame_views_of: dict[
    tuple[int, type], tuple[FrameState, tuple[FrameView, ...], tuple[int, ...]]
] = {}
_slot_records_of: dict[tuple[int, type], tuple[SlotState, list[SlotRecord], tuple[int, ...]]] = {}

SlotRecord = tuple[int, int, Literal["read", "write"] | None]  # slot, refcount, transfer


def _kept(cache: dict[Any, Any]) -> dict[Any, Any]:
    """``cache``, emptied first when full."""
    if len(cache) >= VIEWS_KEPT:
        cache.clear()
    return cache


def _page_view(entry: Mapping, rec: PageRecord) -> PageView:
    """The view of mapping ``entry`` whose page record is ``rec``."""
    key = (id(entry), id(rec))
    found = _page_views.get(key)
    if found is not None and found[0] is entry and found[1] is rec:
        return found[2]
    view = PageView(entry.vpn, entry.prot, entry.kind, rec.home(), entry.shared_key, entry.index)
    _kept(_page_views)[key] = (entry, rec, view)
    return view


def _frame_views(t: Tables) -> tuple[tuple[FrameView, ...], tuple[int, ...]]:
    """The view of every user frame, and the free list: both read the frame state only."""
    fs = t.fs
    key = (id(fs), type(t))
    found = _frame_views_of.get(key)
    if found is not None and found[0] is fs:
        return found[1], found[2]
    views = tuple(
        FrameView(
            pfn,
            fr.status_name(frame),
            int(frame.refcount),
            t.users(pfn),
            fr.transfer_name(frame.transfer),
        )
        for pfn, frame in sorted(t.frames.items())
    )
    free = t.free_frames
    _kept(_frame_views_of)[key] = (fs, views, free)
    return views, free


def _slot_records(t: Tables) -> tuple[list[SlotRecord], tuple[int, ...]]:
    """Each allocated slot's number, count and transfer, and the free list: both read the
    slot state only (the users of a slot come from the page records)."""
    ss = t.ss
    key = (id(ss), type(t))
    found = _slot_records_of.get(key)
    if found is not None and found[0] is ss:
        return found[1], found[2]
    taken: list[SlotRecord] = [
        (slot, int(state.refcount), fr.transfer_name(state.transfer))
        for slot, state in t.taken_slots()
    ]
    free = t.free_slots
    _kept(_slot_records_of)[key] = (ss, taken, free)
    return taken, free
