"""The CPU: registers, mode, fault registers, ghost state, and the three restart variants.

One :meth:`CPU.step` runs one user instruction with :func:`isa.execute`,
its accesses translated by the MMU (any object with ``translate``). What
the CPU leaves behind when an access faults part-way depends on
``HardwareConfig.restart``:

=================  ======================  ==============  ===================  ==============
variant            registers and flags     pc              fault_va/access      state_register
=================  ======================  ==============  ===================  ==============
``precise``        the instruction's start the start       the faulting access  empty
``state_register`` side effects left       advanced        the faulting access  the effects
``decode``         side effects left       advanced        None (kernel finds)  empty
=================  ======================  ==============  ===================  ==============

"Advanced" is start pc + the words fetched before the fault. Every variant
sets ``fault_kind`` and ``fault_pc`` (the instruction's address) and enters
kernel mode. The kernel backs up with :func:`isa.back_up` (the effects are
``state_register``, or for ``decode`` those :func:`isa.locate_fault` finds).

Ghost state, for the checks only (a kernel never reads it): ``ghost_start``,
the architectural state when the current instruction began; ``ghost_asid``,
the address space it ran in; ``retired``, instructions retired per asid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.isa import (
    REGISTERS,
    ArchState,
    Completed,
    Faulted,
    SideEffects,
    execute,
    undo_side_effects,
)
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.traps import Access, Fault, TrapKind

__all__ = ["CPU", "CpuMode", "StepResult", "Translator", "undo_side_effects"]

CpuMode = Literal["user", "kernel"]


class Translator(Protocol):
    """What the CPU needs from an MMU: a physical address for a user access, or its fault."""

    def translate(self, memory: PhysicalMemory, va: int, access: Access) -> int | Fault: ...


class _Port:
    """isa.MemoryPort over a translator and physical memory."""

    __slots__ = ("memory", "translator")

    def __init__(self, translator: Translator, memory: PhysicalMemory) -> None:
        self.translator = translator
        self.memory = memory

    def load(self, va: int, access: Access) -> int | Fault:
        pa = self.translator.translate(self.memory, va, access)
        return pa if isinstance(pa, Fault) else self.memory.read(pa)

    def store(self, va: int, value: int) -> Fault | None:
        pa = self.translator.translate(self.memory, va, Access.WRITE)
        if isinstance(pa, Fault):
            return pa
        self.memory.write(pa, value)
        return None


@dataclass(frozen=True)
class StepResult:
    """What one user instruction did.

    ``retired``: it completed (``write`` is its memory write (va, value),
    ``syscall`` its SYS number). Otherwise ``trap`` says why control went to
    the kernel. ``fault`` and ``fault_point`` describe a faulting access for
    the checks and coverage; a kernel reads the CPU's fault registers
    instead, which under the decode variant do not hold the address.
    """

    retired: bool
    trap: TrapKind | None = None
    fault: Fault | None = None
    write: tuple[int, int] | None = None
    syscall: int | None = None
    fault_point: str | None = None


class CPU:
    """Architectural state, mode, fault registers and ghost state of the one CPU."""

    __slots__ = (
        "config",
        "fault_access",
        "fault_kind",
        "fault_pc",
        "fault_va",
        "ghost_asid",
        "ghost_start",
        "mode",
        "retired",
        "state",
        "state_register",
    )

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config
        self.state = ArchState((0,) * REGISTERS, 0, 0)
        self.mode: CpuMode = "kernel"
        self.fault_va: int | None = None
        self.fault_access: Access | None = None
        self.fault_kind: TrapKind | None = None
        self.fault_pc: int | None = None
        self.state_register: SideEffects = ()
        self.ghost_start: ArchState | None = None
        self.ghost_asid: int | None = None
        self.retired: dict[int, int] = {}

    # -- kernel-side operations ------------------------------------------------------

    def resume(self, state: ArchState) -> None:
        """Return to user mode running ``state``; the fault registers are cleared."""
        self.state = state
        self.mode = "user"
        self._clear_fault_registers()

    def _clear_fault_registers(self) -> None:
        self.fault_va = None
        self.fault_access = None
        self.fault_kind = None
        self.fault_pc = None
        self.state_register = ()

    # -- one user instruction --------------------------------------------------------

    def step(self, translator: Translator, memory: PhysicalMemory, asid: int) -> StepResult:
        """Run the instruction at ``state.pc`` in address space ``asid``.

        Changes ``state``, memory (a retired store, R/M bits through the
        translator), the ghost state, and on a trap the mode and the fault
        registers as the module docstring's table says.
        """
        start = self.state
        self.ghost_start = start
        self.ghost_asid = asid
        outcome = execute(start, _Port(translator, memory))
        if isinstance(outcome, Completed):
            self.state = outcome.state
            self.retired[asid] = self.retired.get(asid, 0) + 1
            if outcome.syscall is None:
                return StepResult(retired=True, write=outcome.write)
            self.mode = "kernel"
            return StepResult(
                retired=True, trap=TrapKind.SYSCALL, write=outcome.write, syscall=outcome.syscall
            )
        self.mode = "kernel"
        self._clear_fault_registers()
        self.fault_pc = start.pc
        if not isinstance(outcome, Faulted):  # Illegal: nothing changed
            self.fault_kind = TrapKind.ILLEGAL_INSTRUCTION
            return StepResult(retired=False, trap=TrapKind.ILLEGAL_INSTRUCTION)
        self._take_fault(start, outcome)
        return StepResult(
            retired=False,
            trap=outcome.fault.kind,
            fault=outcome.fault,
            fault_point=outcome.fault_point,
        )

    def _take_fault(self, start: ArchState, outcome: Faulted) -> None:
        """Set state and fault registers for a fault, by restart variant."""
        fault = outcome.fault
        self.fault_kind = fault.kind
        variant = self.config.restart
        if variant == "precise":
            self.state = start
        else:
            self.state = outcome.state
        if variant == "state_register":
            self.state_register = outcome.side_effects
        if variant != "decode":
            self.fault_va = fault.va
            self.fault_access = fault.access

    # -- a value -----------------------------------------------------------------------

    def snapshot(self) -> tuple[object, ...]:
        """Every field as plain values, for equality and fingerprints."""
        return (
            self.state,
            self.mode,
            self.fault_va,
            self.fault_access,
            self.fault_kind,
            self.fault_pc,
            self.state_register,
            self.ghost_start,
            self.ghost_asid,
            tuple(sorted(self.retired.items())),
        )

    def copy(self) -> CPU:
        """An independent copy (the configuration is shared; it is frozen)."""
        clone = CPU.__new__(CPU)
        for name in CPU.__slots__:
            setattr(clone, name, getattr(self, name))
        clone.retired = dict(self.retired)
        return clone

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CPU)
            and self.config == other.config
            and self.snapshot() == other.snapshot()
        )

    __hash__ = None  # type: ignore[assignment]
