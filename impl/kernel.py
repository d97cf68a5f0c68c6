"""The reference kernel: demand paging over the hardware model, following the seeds.

:class:`ReferenceKernel` implements :class:`~pagingcheck.impl.interface.Kernel`.
Each hook runs atomically and returns the events it caused. The work is
done by the modules named after the seeds' four times:

* creation - :mod:`pagingcheck.impl.process` (:func:`~pagingcheck.impl.process.spawn`);
* execution - :func:`pagingcheck.impl.process.dispatch`;
* page fault - :mod:`pagingcheck.impl.fault` (ten steps) and
  :mod:`pagingcheck.impl.decode`;
* termination - :func:`pagingcheck.impl.process.terminate`.

State lives in :class:`~pagingcheck.impl.tables.Tables`; frames and slots
change only through the protocols of :mod:`pagingcheck.impl.frames` and
:mod:`pagingcheck.impl.swap`, PTEs only through :mod:`pagingcheck.impl.vm`.

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
evict_clean    a clean victim was unmapped everywhere (no write needed)
evict_dirty    a dirty victim was unmapped everywhere (write-back follows)
writeback      a write of a frame to its slot started (detail: why)
pagein         a page arrived (or was zero-filled) and was mapped
backup         a faulting instruction was backed up (detail: the pc)
ready          a process became ready
signal         a process is killed by a signal (detail: invalid, protection,
               illegal)
exit           a process terminated (detail: exit, kill or the signal)
free_frame     a frame went back to the free list
free_slot      a swap slot went back to the free list
shared_zero    a shared object's last user left (detail: its key)
clean          the cleaner started writing a dirty page back ahead of need
tick           the timer fired
=============  ==============================================================
"""

from __future__ import annotations

from pagingcheck.impl import fault as faults
from pagingcheck.impl import frames as fr
from pagingcheck.impl import process
from pagingcheck.impl.config import KernelConfig
from pagingcheck.impl.interface import (
    FrameView,
    KernelEvent,
    KernelView,
    PageView,
    ProcessView,
    SlotView,
    SpawnRefused,
)
from pagingcheck.impl.tables import Tables, User
from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.cpu import StepResult
from pagingcheck.model.disk import Request
from pagingcheck.model.errors import ConfigError, InternalError, UserError
from pagingcheck.model.fingerprint import fingerprint
from pagingcheck.model.isa import SYS_EXIT
from pagingcheck.model.machine import Machine
from pagingcheck.model.memory import FREED_PATTERN
from pagingcheck.model.program import Program
from pagingcheck.model.traps import TrapKind

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

    def boot(self, machine: Machine) -> tuple[KernelEvent, ...]:
        """Allocate the system-wide page-table structures and scrub the user frames."""
        self._check_machine(machine)
        root = machine.format.boot(machine.memory, self.t.kalloc)
        if root is None:
            raise ConfigError(
                f"hardware.kernel_frames: {machine.config.kernel_frames} kernel frames cannot "
                f"hold the {machine.format.kind} table's system structures; add kernel frames"
            )
        self.t.system_root = root
        self.t.booted = True
        for pfn in machine.config.user_pfns:
            machine.memory.fill_frame(pfn, FREED_PATTERN)
        self.t.emit("boot", detail=machine.format.kind)
        return self.t.take_events()

    def spawn(self, machine: Machine, program: Program) -> int | SpawnRefused:
        """Create a process running ``program`` (see :func:`process.spawn`)."""
        self._check_booted(machine)
        outcome = process.spawn(self.t, machine, program)
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

    def dispatch(self, machine: Machine, pid: int) -> tuple[KernelEvent, ...]:
        """Put runnable ``pid`` on the CPU."""
        if pid not in self.runnable():
            raise UserError(
                f"dispatch: process {pid} is not runnable (runnable: {self.runnable()})"
            )
        process.dispatch(self.t, machine, pid)
        return self._finish(machine)

    def kill(self, machine: Machine, pid: int) -> tuple[KernelEvent, ...]:
        """Terminate live ``pid`` from outside."""
        proc = self.t.processes.get(pid)
        if proc is None or proc.state == "exited":
            raise UserError(f"kill: no live process {pid}")
        process.terminate(self.t, machine, pid, "kill")
        return self._finish(machine)

    # -- hooks ----------------------------------------------------------------------------

    def on_trap(self, machine: Machine, result: StepResult) -> tuple[KernelEvent, ...]:
        """Handle the trap the running process just took."""
        pid = self.t.current
        if pid is None:
            raise InternalError("ReferenceKernel.on_trap: a trap with no process on the CPU")
        trap = result.trap
        self.t.advance_clock()
        if trap is TrapKind.SYSCALL:
            if result.syscall == SYS_EXIT:
                process.terminate(self.t, machine, pid, "exit")
            else:  # no other system call does anything: return to the caller
                machine.cpu.resume(machine.cpu.state)
        elif trap is TrapKind.ILLEGAL_INSTRUCTION:
            process.terminate(self.t, machine, pid, "signal", "illegal")
        elif trap in FAULT_TRAPS:
            self._page_fault(machine, pid)
        else:
            raise InternalError(f"ReferenceKernel.on_trap: unexpected trap {trap}")
        return self._finish(machine)

    def _page_fault(self, machine: Machine, pid: int) -> None:
        signal = faults.handle_fault(self.t, machine, pid)
        if signal is not None:
            process.terminate(self.t, machine, pid, "signal", signal.reason)

    def on_disk(self, machine: Machine, request: Request) -> tuple[KernelEvent, ...]:
        """Carry on with the transfer that just completed."""
        faults.complete_transfer(self.t, machine, request)
        return self._finish(machine)

    def on_timer(self, machine: Machine) -> tuple[KernelEvent, ...]:
        """Advance time, let the policy sample R bits, and run the cleaner.

        The timer does not reschedule: the driver chooses who runs next.
        """
        t = self.t
        t.advance_clock()
        t.emit("tick")
        refbits = t.bits(machine)
        t.policy.tick(t.clock, refbits)
        if t.policy.name in SAMPLED_AT_TICK:
            for pfn in self._in_use():
                if refbits.referenced(pfn):
                    t.policy.accessed(pfn, t.clock, refbits.modified(pfn))
                    refbits.clear_referenced(pfn)
        if self.kconfig.cleaner and len(t.free_frames) < self.kconfig.cleaner_threshold:
            faults.clean_ahead(t, machine)
        return self._finish(machine)

    def _in_use(self) -> list[int]:
        return [pfn for pfn, f in sorted(self.t.frames.items()) if f.status == fr.IN_USE]

    def _finish(self, machine: Machine) -> tuple[KernelEvent, ...]:
        faults.settle_transfers(self.t, machine)
        return self.t.take_events()

    def _check_machine(self, machine: Machine) -> None:
        if machine.config != self.hardware:
            raise UserError(
                "ReferenceKernel: the machine's hardware configuration differs from the one "
                "the kernel was built for; build both from the same HardwareConfig"
            )

    def _check_booted(self, machine: Machine) -> None:
        self._check_machine(machine)
        if not self.t.booted:
            raise UserError("ReferenceKernel: call boot(machine) before anything else")

    # -- view and values ----------------------------------------------------------------

    def view(self, machine: Machine) -> KernelView:
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
                    pages.append(
                        PageView(
                            entry.vpn,
                            entry.prot,
                            entry.kind,
                            rec.home(),
                            entry.shared_key,
                            entry.index,
                        )
                    )
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
        frame_views = tuple(
            FrameView(
                pfn,
                fr.status_name(frame),
                int(frame.refcount),
                t.rmap.get(pfn, ()),
                fr.transfer_name(frame.transfer),
            )
            for pfn, frame in sorted(t.frames.items())
        )
        slot_views = tuple(
            SlotView(
                slot,
                int(state.refcount),
                tuple(sorted(slot_users.get(slot, ()))),
                fr.transfer_name(state.transfer),
            )
            for slot, state in sorted(t.slots.items())
            if state.allocated
        )
        return KernelView(
            tuple(processes), frame_views, t.free_frames, slot_views, t.free_slots, t.current
        )

    def copy(self) -> ReferenceKernel:
        """An independent copy of all kernel state."""
        clone = ReferenceKernel.__new__(ReferenceKernel)
        clone.hardware = self.hardware
        clone.kconfig = self.kconfig
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
