"""The CPU: registers, mode, trap registers, and the three restart variants.

One :meth:`CPU.step` runs one user instruction with :func:`isa.execute`,
its accesses translated by the MMU (any object with ``translate``). When
the instruction traps, the CPU enters kernel mode and fills its trap
registers (:attr:`CPU.trap`, a :class:`~pagingcheck.model.traps.TrapFrame`).
What it leaves behind when an access faults part-way depends on
``HardwareConfig.restart``:

=================  ======================  ==============  ===================  ==============
variant            registers and flags     pc              trap va/access       state_register
=================  ======================  ==============  ===================  ==============
``precise``        the instruction's start the start       the faulting access  empty
``state_register`` side effects left       advanced        the faulting access  the effects
``decode``         side effects left       advanced        None (kernel finds)  empty
=================  ======================  ==============  ===================  ==============

"Advanced" is start pc + the words fetched before the fault. Every variant
records the instruction's address as the trap's ``pc``. The kernel backs
the instruction up itself (the kernel library's ``restart`` module).

The CPU keeps no record for the checks: the driver notes the state at the
start of each instruction before it runs, so nothing a kernel does can
change that record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pagingcheck.model.config import HardwareConfig
from pagingcheck.model.isa import REGISTERS, ArchState, Completed, Faulted, Writes, execute
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.traps import Access, Fault, TrapFrame, TrapKind

__all__ = ["CPU", "CpuMode", "StepResult", "Translator"]

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
    """What one user instruction did, for the checks (a kernel sees only the trap frame).

    ``retired``: it completed (``writes`` are its memory writes (va, value),
    ``syscall`` its SYS number). Otherwise ``trap`` says why control went to
    the kernel. ``fault`` and ``fault_point`` describe a faulting access
    (under the decode variant the trap frame does not hold the address), and
    ``writes`` the writes a PUSHM made before it, which memory keeps.
    """

    retired: bool
    trap: TrapKind | None = None
    fault: Fault | None = None
    writes: Writes = ()
    syscall: int | None = None
    fault_point: str | None = None


class CPU:
    """Architectural state, mode and trap registers of the one CPU."""

    __slots__ = ("config", "mode", "state", "trap")

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config
        self.state = ArchState((0,) * REGISTERS, 0, 0)
        self.mode: CpuMode = "kernel"
        self.trap: TrapFrame | None = None

    # -- kernel-side operations ------------------------------------------------------

    def resume(self, state: ArchState) -> None:
        """Return to user mode running ``state``; the trap registers are cleared."""
        self.state = state
        self.mode = "user"
        self.trap = None

    # -- one user instruction --------------------------------------------------------

    def step(self, translator: Translator, memory: PhysicalMemory) -> StepResult:
        """Run the instruction at ``state.pc``.

        Changes ``state``, memory (a retired store, R/M bits through the
        translator), and on a trap the mode and the trap registers as the
        module docstring's table says.
        """
        start = self.state
        outcome = execute(start, _Port(translator, memory))
        if isinstance(outcome, Completed):
            self.state = outcome.state
            if outcome.syscall is None:
                return StepResult(retired=True, writes=outcome.writes)
            self.mode = "kernel"
            self.trap = TrapFrame(TrapKind.SYSCALL, start.pc, number=outcome.syscall)
            return StepResult(
                retired=True, trap=TrapKind.SYSCALL, writes=outcome.writes, syscall=outcome.syscall
            )
        self.mode = "kernel"
        if not isinstance(outcome, Faulted):  # Illegal: nothing changed
            self.trap = TrapFrame(TrapKind.ILLEGAL_INSTRUCTION, start.pc)
            return StepResult(retired=False, trap=TrapKind.ILLEGAL_INSTRUCTION)
        self._take_fault(start, outcome)
        return StepResult(
            retired=False,
            trap=outcome.fault.kind,
            fault=outcome.fault,
            writes=outcome.writes,
            fault_point=outcome.fault_point,
        )

    def _take_fault(self, start: ArchState, outcome: Faulted) -> None:
        """Set state and trap registers for a fault, by restart variant."""
        fault = outcome.fault
        variant = self.config.restart
        self.state = start if variant == "precise" else outcome.state
        if variant == "decode":
            self.trap = TrapFrame(fault.kind, start.pc)
        elif variant == "state_register":
            self.trap = TrapFrame(
                fault.kind, start.pc, fault.va, fault.access, outcome.side_effects
            )
        else:
            self.trap = TrapFrame(fault.kind, start.pc, fault.va, fault.access)

    # -- a value -----------------------------------------------------------------------

    def snapshot(self) -> tuple[object, ...]:
        """Every field as plain values, for equality and fingerprints."""
        return (self.state, self.mode, self.trap)

    def copy(self) -> CPU:
        """An independent copy (the configuration is shared; it is frozen)."""
        clone = CPU.__new__(CPU)
        clone.config = self.config
        clone.state = self.state
        clone.mode = self.mode
        clone.trap = self.trap
        return clone

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CPU)
            and self.config == other.config
            and self.snapshot() == other.snapshot()
        )

    __hash__ = None  # type: ignore[assignment]
