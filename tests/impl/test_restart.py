"""Restart exactness of the CPU and the kernel library's backup: every instruction form,
fault point and restart variant.

For each form the instruction is placed so the wanted access is the first
one that faults (an extension word that starts a new page, for a fetch
fault), and the page of that access is unmapped or stripped of the access
it needs. The CPU must leave exactly what its restart variant promises in
its trap frame; a kernel backing up with that promise (the library's
``restart`` module) recovers the start state; and after the fault is
resolved, running the instruction again gives a fault-free run's result.

The translator is a fake: a dict vpn -> (pfn, allowed accesses), vpn v in
frame v + 1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagingcheck.impl.lib import restart
from pagingcheck.model import isa
from pagingcheck.model.config import RESTART_VARIANTS, HardwareConfig
from pagingcheck.model.cpu import CPU, StepResult
from pagingcheck.model.isa import (
    FLAG_Z,
    OPERAND_MODES,
    ArchState,
    Instruction,
    Mode,
    Op,
    Operand,
)
from pagingcheck.model.memory import PhysicalMemory
from pagingcheck.model.traps import Access, Fault, TrapFrame, TrapKind
from tests.model.test_isa import instructions

PAGE = 4
VA_PAGES = 16
ALL = frozenset(Access)
CODE_VPN = 2  # code on pages 2 and 3
SRC_VPN = 6  # the source operand's data
DST_VPN = 10  # the destination operand's data
SRC = SRC_VPN * PAGE + 1  # r1 and source addresses point here
DST = DST_VPN * PAGE + 1  # r2 and destination addresses point here
START_REGS = (100, SRC, DST, 7, 0, 0, 0, 0)


def config(restart: str = "precise") -> HardwareConfig:
    base = HardwareConfig(page_words=PAGE, va_pages=VA_PAGES, kernel_frames=1, user_frames=VA_PAGES)
    return base.replace(restart=restart)


@dataclass
class FakeTranslator:
    """vpn -> (pfn, allowed accesses); anything else is a page fault."""

    pages: dict[int, tuple[int, frozenset[Access]]] = field(
        default_factory=lambda: {vpn: (vpn + 1, ALL) for vpn in range(VA_PAGES)}
    )

    def translate(self, memory: PhysicalMemory, va: int, access: Access) -> int | Fault:
        entry = self.pages.get(va // PAGE) if 0 <= va < VA_PAGES * PAGE else None
        if entry is None:
            return Fault(TrapKind.PAGE_FAULT, va, access)
        pfn, allowed = entry
        if access not in allowed:
            return Fault(TrapKind.PROTECTION_FAULT, va, access)
        return pfn * PAGE + va % PAGE

    def refusing(self, vpn: int, kind: TrapKind, access: Access) -> FakeTranslator:
        """A copy in which ``access`` to page ``vpn`` takes a ``kind`` fault."""
        pages = dict(self.pages)
        if kind is TrapKind.PAGE_FAULT:
            del pages[vpn]
        else:
            pfn, allowed = pages[vpn]
            pages[vpn] = (pfn, allowed - {access})
        return FakeTranslator(pages)

    def probe(self, va: int, access: Access, memory: PhysicalMemory) -> int | Fault:
        pa = self.translate(memory, va, access)
        return pa if isinstance(pa, Fault) else memory.read(pa)


def load(words: dict[int, int]) -> PhysicalMemory:
    """Memory holding ``words`` at their virtual addresses, plus recognisable data."""
    memory = PhysicalMemory(config())
    for va in range(VA_PAGES * PAGE):
        memory.write(PAGE + va, 0x5000 + va)
    for va, word in words.items():
        memory.write(PAGE + va, word)
    return memory


def forms() -> list[Instruction]:
    """One instruction of every form: each opcode, each MOV mode pair, legal shared registers."""

    def operand(mode: Mode, r: int, address: int) -> Operand:
        if mode is Mode.NONE:
            return isa.NO_OPERAND
        if mode is Mode.IMM:
            return isa.imm(0xFFFF_FFF0)
        if mode is Mode.ABS:
            return isa.absolute(address)
        return Operand(mode, r)

    found: list[Instruction] = []
    for op, (first, second) in OPERAND_MODES.items():
        for amode, bmode in itertools.product(
            sorted(first, key=lambda m: m.value), sorted(second, key=lambda m: m.value)
        ):
            # LOAD's address operand is its source; STORE's and MOV's second is the destination.
            b_address = SRC if op is Op.LOAD else DST
            a_address = CODE_VPN * PAGE + 3 if bmode is Mode.NONE else SRC
            for a_reg, b_reg in ((1, 2), (1, 1)):
                a = operand(amode, a_reg, a_address)
                b = operand(bmode, b_reg, b_address)
                number = 5 if op is Op.SYS else 0
                if isa.illegal_reason(op, a, b, number) is None:
                    found.append(Instruction(op, a, b, number))
    # PUSHM below r2 (DST): its first write is on the destination page, the next two on
    # the page below, so a fault there comes after a write; and a single push.
    found += [
        Instruction(Op.PUSHM, isa.reg(2), number=0b1011),
        Instruction(Op.PUSHM, isa.reg(2), number=0b1000_0000),
    ]
    return sorted(set(found), key=repr)


FORMS = forms()


@dataclass(frozen=True)
class Case:
    """One instruction placed in memory at ``pc`` and the start state to run it from."""

    instruction: Instruction
    start: ArchState

    def memory(self) -> PhysicalMemory:
        words = isa.encode(self.instruction)
        return load({self.start.pc + k: w for k, w in enumerate(words)})


def place(instruction: Instruction, point: str) -> Case:
    """Put the instruction where a fault at ``point`` can be arranged: fetch k on a new page."""
    k = int(point[-1]) if point in ("fetch1", "fetch2") else 0
    pc = (CODE_VPN + 1) * PAGE - k if k else CODE_VPN * PAGE
    return Case(instruction, ArchState(START_REGS, pc, FLAG_Z))


def run(cpu: CPU, translator: FakeTranslator, memory: PhysicalMemory) -> StepResult:
    return cpu.step(translator, memory)


def trap(cpu: CPU) -> TrapFrame:
    assert cpu.trap is not None
    return cpu.trap


def kernel_backup(cpu: CPU, translator: FakeTranslator, memory: PhysicalMemory) -> ArchState:
    """What a kernel does to find the start state, using only what its variant gives it."""
    frame = trap(cpu)
    variant = cpu.config.restart
    if variant == "precise":
        return cpu.state
    if variant == "state_register":
        return restart.back_up(cpu.state, frame.pc, frame.state_register)
    located = restart.locate_fault(
        frame.pc, cpu.state, lambda va, access: translator.probe(va, access, memory)
    )
    assert located is not None
    return restart.back_up(cpu.state, frame.pc, located.side_effects)


def words_fetched(point: str, instruction: Instruction) -> int:
    return int(point[-1]) if point.startswith("fetch") else instruction.length


def check_fault(case: Case, variant: str, point: str, kind: TrapKind) -> str:
    """Fault ``case`` at the access named ``point`` with a ``kind`` fault; check everything.

    Returns the fault point the CPU reported (the caller checks coverage).
    """
    instruction, start = case.instruction, case.start
    planned = {p: (va, access) for p, va, access in isa.accesses(instruction, start)}
    va, access = planned[point]
    full = FakeTranslator()
    faulty = full.refusing(va // PAGE, kind, access)
    expected = next(
        (p, v, a)
        for p, v, a in isa.accesses(instruction, start)
        if isinstance(faulty.translate(case.memory(), v, a), Fault)
    )

    reference = CPU(config(variant))
    reference.resume(start)
    reference_memory = case.memory()
    done = run(reference, full, reference_memory)
    assert done.retired

    cpu = CPU(config(variant))
    cpu.resume(start)
    memory = case.memory()
    before = memory.copy()
    result = run(cpu, faulty, memory)
    fault = Fault(kind, expected[1], expected[2])
    # The writes before the faulting access stay made (a PUSHM's); no other word changes.
    order = [(v, a) for _, v, a in isa.accesses(instruction, start)]
    writes_before = [a for _, a in order[: order.index(expected[1:])]].count(Access.WRITE)
    made = done.writes[:writes_before]
    assert result == StepResult(
        retired=False, trap=kind, fault=fault, writes=made, fault_point=expected[0]
    ), instruction
    for va, value in made:
        before.write(PAGE + va, value)
    assert memory == before
    frame = trap(cpu)
    assert (cpu.mode, frame.kind, frame.pc) == ("kernel", kind, start.pc)
    effects = isa.replay_side_effects(instruction, expected[0])

    if variant == "precise":
        assert cpu.state == start
        assert (frame.va, frame.access, frame.state_register) == (fault.va, fault.access, ())
    elif variant == "state_register":
        assert cpu.state.pc == start.pc + words_fetched(expected[0], instruction)
        assert (frame.va, frame.access) == (fault.va, fault.access)
        assert frame.state_register == effects
        # The register really moved by the recorded deltas, and no other did.
        moved = {r: 0 for r in range(8)}
        for r, delta in frame.state_register:
            moved[r] += delta
        for r in range(8):
            assert cpu.state.regs[r] == (start.regs[r] + moved[r]) & isa.WORD_MASK
        assert restart.back_up(cpu.state, start.pc, frame.state_register) == start
    else:
        assert cpu.state.pc == start.pc + words_fetched(expected[0], instruction)
        assert (frame.va, frame.access, frame.state_register) == (None, None, ())
        assert restart.back_up(cpu.state, start.pc, effects) == start
        located = restart.locate_fault(start.pc, cpu.state, lambda v, a: faulty.probe(v, a, memory))
        assert located is not None
        assert (located.fault_point, located.fault, located.side_effects) == (
            expected[0],
            fault,
            effects,
        )

    # The kernel resolves the fault (maps the page) and runs the instruction again.
    backed_up = kernel_backup(cpu, faulty, memory)
    assert backed_up == start
    cpu.resume(backed_up)
    again = run(cpu, full, memory)
    assert again == done
    assert cpu.state == reference.state
    assert memory == reference_memory
    assert (cpu.trap, cpu.mode) == (reference.trap, reference.mode)
    return expected[0]


@pytest.mark.parametrize("variant", RESTART_VARIANTS)
@pytest.mark.parametrize("instruction", FORMS, ids=[repr(i) for i in range(len(FORMS))])
def test_every_fault_point_restarts_exactly(variant: str, instruction: Instruction) -> None:
    points = [p for p, _, _ in isa.accesses(instruction, place(instruction, "fetch0").start)]
    reached: set[str] = set()
    for point, kind in itertools.product(points, (TrapKind.PAGE_FAULT, TrapKind.PROTECTION_FAULT)):
        reached.add(check_fault(place(instruction, point), variant, point, kind))
    assert reached == set(points), f"{instruction}: fault points {set(points) - reached} unreached"


def test_forms_cover_every_mode_pair_and_fault_point() -> None:
    pairs = {(i.a.mode, i.b.mode) for i in FORMS if i.op is Op.MOV}
    assert pairs == set(itertools.product(*OPERAND_MODES[Op.MOV]))
    assert {i.op for i in FORMS} == set(Op)
    points = {p for i in FORMS for p, _, _ in isa.accesses(i, place(i, "fetch0").start)}
    assert points == set(isa.FAULT_POINTS)


@given(
    instructions(st.integers(0, VA_PAGES * PAGE - 1)),
    st.lists(st.integers(1, VA_PAGES * PAGE - 2), min_size=8, max_size=8),
    st.integers(0, VA_PAGES * PAGE - 3),
    st.sampled_from(RESTART_VARIANTS),
    st.sets(st.integers(0, VA_PAGES - 1), max_size=4),
    st.sampled_from([TrapKind.PAGE_FAULT, TrapKind.PROTECTION_FAULT]),
)
def test_random_faults_restart_exactly(
    instruction: Instruction,
    regs: list[int],
    pc: int,
    variant: str,
    refused: set[int],
    kind: TrapKind,
) -> None:
    case = Case(instruction, ArchState(tuple(regs), pc, 0))
    full = FakeTranslator()
    faulty = FakeTranslator(dict(full.pages))
    for vpn in refused:
        if kind is TrapKind.PAGE_FAULT:
            del faulty.pages[vpn]
        else:
            faulty.pages[vpn] = (vpn + 1, frozenset())
    reference = CPU(config(variant))
    reference.resume(case.start)
    reference_memory = case.memory()
    done = run(reference, full, reference_memory)

    cpu = CPU(config(variant))
    cpu.resume(case.start)
    memory = case.memory()
    result = run(cpu, faulty, memory)
    if result.retired:
        assert result == done and cpu.state == reference.state
        return
    assert result.fault is not None
    backed_up = kernel_backup(cpu, faulty, memory)
    assert backed_up == case.start
    cpu.resume(backed_up)
    assert run(cpu, full, memory) == done
    assert cpu.state == reference.state and memory == reference_memory


def test_illegal_instruction_changes_nothing() -> None:
    cpu = CPU(config("decode"))
    start = ArchState(START_REGS, CODE_VPN * PAGE, FLAG_Z)
    cpu.resume(start)
    memory = load({start.pc: 0xDEADBEEF})
    before = memory.copy()
    result = run(cpu, FakeTranslator(), memory)
    assert result == StepResult(retired=False, trap=TrapKind.ILLEGAL_INSTRUCTION)
    assert cpu.state == start and memory == before
    assert cpu.mode == "kernel"
    assert cpu.trap == TrapFrame(TrapKind.ILLEGAL_INSTRUCTION, start.pc)


def test_syscall_retires_and_traps() -> None:
    cpu = CPU(config())
    start = ArchState(START_REGS, CODE_VPN * PAGE, 0)
    cpu.resume(start)
    memory = load({start.pc: isa.encode(Instruction(Op.SYS, number=isa.SYS_EXIT))[0]})
    result = run(cpu, FakeTranslator(), memory)
    assert result == StepResult(retired=True, trap=TrapKind.SYSCALL, syscall=0)
    assert cpu.state.pc == start.pc + 1 and cpu.mode == "kernel"
    assert cpu.trap == TrapFrame(TrapKind.SYSCALL, start.pc, number=isa.SYS_EXIT)


def test_cpu_is_a_value() -> None:
    cpu = CPU(config("state_register"))
    cpu.resume(ArchState(START_REGS, CODE_VPN * PAGE, 0))
    memory = load({CODE_VPN * PAGE: isa.encode(Instruction(Op.NOP))[0]})
    clone = cpu.copy()
    assert clone == cpu and clone.snapshot() == cpu.snapshot()
    run(cpu, FakeTranslator(), memory)
    assert clone != cpu
    assert clone.state.pc == CODE_VPN * PAGE and cpu.state.pc == CODE_VPN * PAGE + 1


def test_back_up_undoes_the_effects_last_first_and_resets_the_pc() -> None:
    start = ArchState((0, 10, 20, 0, 0, 0, 0, 0), 0, 0)
    after = ArchState((0, 11, 19, 0, 0, 0, 0, 0), 1, 0)
    assert restart.back_up(after, 0, ((1, 1), (2, -1))) == start
