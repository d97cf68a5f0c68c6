"""Step 3 for the decode restart variant: find the faulting access by parsing the instruction.

Hardware of the decode variant saves only the address of the faulting
instruction (``fault_pc``); the fault address and access registers are
empty, and the registers hold whatever side effects (auto-increment,
auto-decrement) happened before the fault. The kernel:

1. fetches the instruction's words at ``fault_pc`` through the MMU's
   side-effect-free :meth:`~pagingcheck.model.mmu.MMU.probe` (still loaded
   with the faulting process's page table and TLB, exactly as the hardware
   left them, so each access is answered as the hardware answered it);
   a word that cannot be fetched *is* the fault;
2. parses the words into an instruction;
3. for each point where it could have faulted, undoes that point's side
   effects from the registers, replays the instruction's accesses from
   that start state, and keeps the point where every earlier access
   succeeds and this one faults.

The search itself is :func:`pagingcheck.model.isa.locate_fault`, shared
with the proofs; this module supplies the probe and turns its answer into
a :class:`~pagingcheck.impl.tables.FaultRecord`.
"""

from __future__ import annotations

from pagingcheck.impl.tables import FaultRecord
from pagingcheck.model import isa
from pagingcheck.model.machine import Machine
from pagingcheck.model.traps import Access, Fault


def locate_fault(machine: Machine) -> FaultRecord | None:
    """The fault record the decode variant's kernel reconstructs, or None if none fits.

    Reads the CPU registers and probes memory through the MMU; changes nothing.
    """
    cpu = machine.cpu
    fault_pc = cpu.fault_pc
    if fault_pc is None:
        return None

    def probe(va: int, access: Access) -> int | Fault:
        answer = machine.mmu.probe(machine.memory, va, access)
        if isinstance(answer, Fault):
            return answer
        return machine.memory.read(answer)

    located = isa.locate_fault(fault_pc, cpu.state, probe)
    if located is None:
        return None
    fault = located.fault
    return FaultRecord(
        fault.kind, fault.va, fault.access, fault_pc, located.side_effects, located.fault_point
    )
