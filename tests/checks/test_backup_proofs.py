"""The instruction-backup proofs are about the code that runs, cover every form, and can fail.

Every obligation is proved and names the seeded mutant that refutes it; each
mutant refutes an obligation with a counterexample that, run again on plain
integers, really breaks the property (and the real code keeps it there); the
form classes are every opcode and mode pair, each reaching every fault point
the ISA has for it; and the symbolic runs agree with concrete runs of the
same code on generated registers, memory and faults.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import z3
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pagingcheck.checks.proofs import backup
from pagingcheck.checks.proofs.backup import RERUNS, RESTORES, FormClass
from pagingcheck.checks.proofs.core import Outcome
from pagingcheck.impl.lib import restart
from pagingcheck.model import isa
from pagingcheck.model.config import RESTART_VARIANTS
from pagingcheck.model.isa import WORD_MASK, ArchState, Instruction, Mode, Op, Operand
from pagingcheck.model.traps import Access, Fault, TrapKind


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    return [obligation() for obligation in backup.obligations()]


def test_every_backup_obligation_is_proved_and_refuted_by_a_mutant(
    outcomes: list[Outcome],
) -> None:
    classes = backup.form_classes()
    assert len(outcomes) == len(classes) * len(RESTART_VARIANTS) * 2
    assert len({o.name for o in outcomes}) == len(outcomes)
    assert [o.name for o in outcomes if o.verdict != "proved"] == []
    mutants = {m.name for m in backup.MUTANTS}
    for outcome in outcomes:
        assert outcome.detail.split("; refuted when ")[1] in mutants, outcome


def test_the_obligations_are_named_by_form_variant_and_property(
    outcomes: list[Outcome],
) -> None:
    names = {o.name for o in outcomes}
    assert "backup: MOV (rA)+, -(rB) under decode restores the start" in names
    assert "backup: MOV (rA)+, -(rB) under decode re-run equals a fault-free run" in names
    assert "backup: NOP under precise restores the start" in names
    assert "backup: SYS n under state_register re-run equals a fault-free run" in names


def test_the_form_classes_are_every_opcode_with_every_mode_pair() -> None:
    expected = {
        (op, amode, bmode)
        for op, (first, second) in isa.OPERAND_MODES.items()
        for amode, bmode in itertools.product(first, second)
    }
    found = {(c.op, c.amode, c.bmode) for c in backup.form_classes()}
    assert found == expected


def test_registers_are_distinct_and_shared_where_the_isa_allows() -> None:
    shared = FormClass(Op.MOV, Mode.INC, Mode.REG).forms()
    assert [(f.a.reg, f.b.reg) for f in shared] == [(0, 7), (7, 7)]
    # MOV (r7)+, (r7) would make decoding ambiguous: illegal_reason forbids it.
    assert [(f.a.reg, f.b.reg) for f in FormClass(Op.MOV, Mode.INC, Mode.IND).forms()] == [(0, 7)]


def concrete(form: Instruction, ext: tuple[int, int] = (0x1234, 0x5678)) -> Instruction:
    """``form`` with its symbolic extension words replaced by ``ext``."""

    def fill(operand: Operand, value: int) -> Operand:
        if operand.mode in isa.EXTENSION_MODES:
            return Operand(operand.mode, 0, value)
        return operand

    return Instruction(form.op, fill(form.a, ext[0]), fill(form.b, ext[1]), form.number)


@pytest.mark.parametrize("form_class", backup.form_classes(), ids=lambda c: c.name)
def test_every_fault_point_the_isa_has_is_reached_by_a_satisfiable_path(
    form_class: FormClass,
) -> None:
    found = backup.explored(form_class, "decode")
    for form in found.forms:
        start = ArchState((10, 20, 30, 40, 50, 60, 70, 80), 0x100, 0)
        points = tuple(dict.fromkeys(p for p, _, _ in isa.accesses(concrete(form), start)))
        assert backup.fault_points(form) == points
        assert backup.reached(found, form) == points


# -- concrete worlds: the same scenario on plain integers ----------------------------------------


@dataclasses.dataclass(frozen=True)
class ConcreteWorld:
    """An instruction's surroundings as plain values: memory is an overlay of written words
    over ``base``; ``faults`` says which accesses fault."""

    start: ArchState
    memory: dict[int, int]
    base: Callable[[int], int]
    faults: Callable[[int, Access], bool]

    def word(self, memory: dict[int, int], va: int) -> int:
        return memory[va] if va in memory else self.base(va)

    def store(self, memory: dict[int, int], va: int, value: int) -> dict[int, int]:
        return {**memory, va: value}

    def faulting(self, va: int, access: Access) -> bool:
        return self.faults(va, access)

    def starts_instruction(self, pc: int) -> bool:
        return True

    def resuming(self, pc: int) -> tuple[ConcreteWorld, Any]:
        return self, z3.BoolVal(True)


def breaks(done: backup.Run, variant: str, prop: str) -> bool:
    """Whether a concrete run breaks the property (its condition simplifies to true)."""
    return bool(z3.is_true(z3.simplify(backup.violations(done, variant)[prop])))


def from_model(model: z3.ModelRef, form: Instruction) -> tuple[Instruction, ConcreteWorld]:
    """The concrete instruction and world a z3 model gives the symbols of ``machine(form)``."""
    symbolic = backup.machine(form)

    def value(term: Any) -> int:
        return int(model.eval(term, model_completion=True).as_long())

    def word_of(sym: Any) -> int:
        return value(backup._term(sym))

    ext = (word_of(form.a.value) if form.a.mode in isa.EXTENSION_MODES else 0,
           word_of(form.b.value) if form.b.mode in isa.EXTENSION_MODES else 0)  # fmt: skip
    start = ArchState(
        tuple(word_of(r) for r in symbolic.start.regs),
        word_of(symbolic.start.pc),
        word_of(symbolic.start.flags),
    )

    def faults(va: int, access: Access) -> bool:
        answer = symbolic.faults[access](z3.BitVecVal(va, backup.WIDTH))
        return bool(z3.is_true(model.eval(answer, model_completion=True)))

    world = ConcreteWorld(
        start,
        {},
        lambda va: value(z3.Select(symbolic.memory, z3.BitVecVal(va, backup.WIDTH))),
        faults,
    )
    return concrete(form, ext), world


def counterexample(
    form_class: FormClass, variant: str, prop: str, mutant: backup.Mutant
) -> tuple[Instruction, ConcreteWorld]:
    """A concrete case z3 finds where ``prop`` fails under ``mutant``, on the form whose
    paths it comes from."""
    found = backup.explored(form_class, variant, mutant.name)
    solver = z3.Solver()
    solver.add(backup.violation(found, prop, refuting=True))
    assert solver.check() == z3.sat, f"{mutant.name} does not refute it"
    model = solver.model()
    form = next(
        p.form
        for p in found.paths
        if z3.is_true(model.eval(z3.And(p.condition, p.refuted[prop]), model_completion=True))
    )
    return from_model(model, form)


#: For each seeded mutant, obligations it refutes (the re-run ones where the bug resumes at
#: another word than the instruction's are followed under the assumption of a NOP there).
REFUTES = [
    ("the state_register trap frame drops the last change",
     FormClass(Op.MOV, Mode.INC, Mode.INC), "state_register", RESTORES),
    ("the state_register trap frame drops the last change",
     FormClass(Op.MOV, Mode.REG, Mode.DEC), "state_register", RERUNS),
    ("precise hardware restores the pc only",
     FormClass(Op.MOV, Mode.DEC, Mode.REG), "precise", RESTORES),
    ("precise hardware restores the registers only",
     FormClass(Op.JMP, Mode.ABS, Mode.NONE), "precise", RESTORES),
    ("precise hardware restores the registers only",
     FormClass(Op.JMP, Mode.ABS, Mode.NONE), "precise", RERUNS),
    ("replay_side_effects leaves out the destination's change",
     FormClass(Op.MOV, Mode.REG, Mode.DEC), "decode", RESTORES),
    ("replay_side_effects leaves out the source's change",
     FormClass(Op.MOV, Mode.INC, Mode.ABS), "decode", RERUNS),
    ("locate_fault tries dst first and skips the earlier accesses",
     FormClass(Op.MOV, Mode.IND, Mode.IND), "decode", RESTORES),
    ("locate_fault takes a PUSHM's first write for the faulting one",
     FormClass(Op.PUSHM, Mode.REG, Mode.NONE), "decode", RESTORES),
    ("PUSHM moves its stack register before each write",
     FormClass(Op.PUSHM, Mode.REG, Mode.NONE), "state_register", RERUNS),
    ("the trap frame's pc is the faulting word's",
     FormClass(Op.ADDI, Mode.REG, Mode.IMM), "state_register", RESTORES),
    ("the trap frame's pc is the faulting word's",
     FormClass(Op.MOV, Mode.IND, Mode.IND), "state_register", RERUNS),
    ("undo takes back only the last change",
     FormClass(Op.MOV, Mode.DEC, Mode.INC), "decode", RESTORES),
    ("undo adds the changes back",
     FormClass(Op.MOV, Mode.INC, Mode.REG), "state_register", RERUNS),
    ("back_up leaves the pc where the fault left it",
     FormClass(Op.LOAD, Mode.REG, Mode.ABS), "decode", RESTORES),
    ("back_up leaves the pc where the fault left it",
     FormClass(Op.BEQ, Mode.ABS, Mode.NONE), "state_register", RERUNS),
    ("the kernel saves the context without the flags",
     FormClass(Op.NOP, Mode.NONE, Mode.NONE), "precise", RESTORES),
    ("the kernel saves the context without r7",
     FormClass(Op.ADD, Mode.REG, Mode.REG), "decode", RERUNS),
]  # fmt: skip


def test_every_mutant_has_an_obligation_it_refutes() -> None:
    assert {name for name, *_ in REFUTES} == {m.name for m in backup.MUTANTS}


@pytest.mark.parametrize(
    ("name", "form_class", "variant", "prop"),
    REFUTES,
    ids=[f"{name}: {c.name} under {v} {p}" for name, c, v, p in REFUTES],
)
def test_a_mutant_is_refuted_with_a_counterexample_that_breaks_the_concrete_run(
    name: str, form_class: FormClass, variant: str, prop: str
) -> None:
    (mutant,) = [m for m in backup.MUTANTS if m.name == name]
    assert variant in mutant.variants
    instruction, world = counterexample(form_class, variant, prop, mutant)
    placed = dataclasses.replace(world, memory=placed_words(instruction, world.start.pc))
    with mutant.active():
        broken = backup.run(placed, variant)
    assert broken is not None and breaks(broken, variant, prop)
    kept = backup.run(placed, variant)
    assert kept is not None and not breaks(kept, variant, prop)


def placed_words(instruction: Instruction, pc: int) -> dict[int, int]:
    """Memory words holding ``instruction`` at ``pc``."""
    return {(pc + k) & WORD_MASK: w for k, w in enumerate(isa.encode(instruction))}


def _undo_reversed(real: Callable[..., Any]) -> Callable[..., Any]:
    return lambda state, effects: real(state, tuple(reversed(effects)))


def _locate_dst_first(real: Callable[..., Any]) -> Callable[..., Any]:
    """locate_fault trying dst before src and taking the first candidate that holds."""

    def locate(fault_pc: Any, state: ArchState, probe: restart.Probe) -> Any:
        found = real(fault_pc, state, probe)
        if found is None or found.instruction is None:
            return found
        for point in ("dst", "src"):
            effects = isa.replay_side_effects(found.instruction, point)
            start = restart.back_up(state, fault_pc, effects)
            for where, va, access in isa.accesses(found.instruction, start):
                answer = probe(va, access)
                if where == point and isinstance(answer, Fault):
                    return restart.Located(point, answer, found.instruction, effects)
                if where == point or isinstance(answer, Fault):
                    break
        return None

    return locate


#: Changes that look like bugs but are not: undoing register changes in another order
#: (they commute), and searching the decoder's candidates in another order or stopping
#: at the first (the MOV register rule of isa.illegal_reason leaves at most one).
EQUIVALENT = (
    backup.Mutant(
        "undo in the wrong order", ("state_register", "decode"), restart,
        "undo_side_effects", _undo_reversed,
    ),
    backup.Mutant(
        "locate_fault tries dst first and takes the first candidate", ("decode",), restart,
        "locate_fault", _locate_dst_first,
    ),
)  # fmt: skip


@pytest.mark.parametrize("mutant", EQUIVALENT, ids=lambda m: m.name)
def test_what_is_not_a_bug_is_proved_not_refuted(
    mutant: backup.Mutant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup, "MUTANTS", (*backup.MUTANTS, mutant))
    stepping = [c for c in backup.form_classes() if {c.amode, c.bmode} & {Mode.INC, Mode.DEC}]
    assert len(stepping) == 18
    for form_class in stepping:
        for variant in mutant.variants:
            found = backup.explored(form_class, variant, mutant.name)
            for prop in backup.PROPERTIES:
                solver = z3.Solver()
                solver.add(backup.violation(found, prop))
                assert solver.check() == z3.unsat, (form_class.name, variant, prop)


def test_a_mutant_is_undone_after_use() -> None:
    mutant = backup.MUTANTS[0]
    before = getattr(mutant.owner, mutant.attribute)
    with mutant.active():
        assert getattr(mutant.owner, mutant.attribute) is not before
    assert getattr(mutant.owner, mutant.attribute) is before


def test_an_obligation_no_mutant_refutes_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup, "MUTANTS", ())
    outcome = backup.backup_verdict(FormClass(Op.NOP, Mode.NONE, Mode.NONE), "precise", RESTORES)
    assert outcome.verdict == "unknown" and "no seeded mutant" in outcome.detail


def test_a_symbolic_value_cannot_leak_into_a_plain_branch() -> None:
    word = backup.Sym(z3.BitVec("leak", backup.WIDTH))
    with pytest.raises(TypeError):
        bool(word == 0)
    assert bool(word & 0 == 0)  # a condition that simplifies to a constant is fine


def test_exploration_covers_each_branch_once() -> None:
    word = backup.Sym(z3.BitVec("w", backup.WIDTH))
    paths = backup.explore(lambda: (bool(word == 1), bool(word == 1), bool(word > 5)))
    # A condition met again is answered as before: no path has w == 1 and w != 1.
    assert all(first == second for _, (first, second, _) in paths)
    feasible = []
    for condition, result in paths:
        solver = z3.Solver()
        solver.add(condition)
        if solver.check() == z3.sat:
            feasible.append(result)
    assert sorted(feasible) == [(False, False, False), (False, False, True), (True, True, False)]
    for (one, _), (other, _) in itertools.combinations(paths, 2):
        solver = z3.Solver()
        solver.add(one, other)
        assert solver.check() == z3.unsat
    solver = z3.Solver()
    solver.add(z3.Not(z3.Or(*(condition for condition, _ in paths))))
    assert solver.check() == z3.unsat


# -- the symbolic runs agree with concrete runs ---------------------------------------------------


FORMS = [(c, f) for c in backup.form_classes() for f in c.forms()]
WORDS = st.one_of(
    st.integers(0, WORD_MASK), st.integers(0, 3), st.integers(WORD_MASK - 3, WORD_MASK)
)


class RefusingPort:
    """isa.MemoryPort over ``words`` (else :func:`base_word`); ``refused`` accesses fault."""

    def __init__(self, words: dict[int, int], refused: set[tuple[int, Access]]) -> None:
        self.words = dict(words)
        self.refused = refused

    def load(self, va: int, access: Access) -> int | Fault:
        if (va, access) in self.refused:
            return Fault(TrapKind.PAGE_FAULT, va, access)
        return self.words[va] if va in self.words else base_word(va)

    def store(self, va: int, value: int) -> Fault | None:
        if (va, Access.WRITE) in self.refused:
            return Fault(TrapKind.PAGE_FAULT, va, Access.WRITE)
        self.words[va] = value
        return None


def base_word(va: int) -> int:
    """What memory holds where nothing was placed: a word that differs from address to address."""
    return (va * 0x9E37_79B1 + 0x55) & WORD_MASK


def evaluate(value: Any, bindings: Callable[[Any], Any]) -> Any:
    """``value`` with every z3 term or Sym in it made concrete by ``bindings``."""
    if isinstance(value, backup.Sym):
        value = value.term
    if z3.is_expr(value):
        concrete_term = bindings(value)
        if z3.is_bool(concrete_term):
            return z3.is_true(concrete_term)
        return concrete_term.as_long()
    if isinstance(value, tuple):
        return tuple(evaluate(v, bindings) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: evaluate(getattr(value, f.name), bindings) for f in dataclasses.fields(value)
        }
        return dataclasses.replace(value, **fields)
    return value


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(FORMS),
    st.sampled_from(RESTART_VARIANTS),
    st.lists(WORDS, min_size=8, max_size=8),
    WORDS,
    st.integers(0, 3),
    st.tuples(WORDS, WORDS),
    st.data(),
)
def test_the_symbolic_run_agrees_with_the_concrete_run(
    chosen: tuple[FormClass, Instruction],
    variant: str,
    regs: list[int],
    pc: int,
    flags: int,
    ext: tuple[int, int],
    data: st.DataObject,
) -> None:
    _, form = chosen
    instruction = concrete(form, ext)
    start = ArchState(tuple(regs), pc, flags)
    planned = [(va, access) for _, va, access in isa.accesses(instruction, start)]
    # The first access to fault, and maybe a later one (which the fault hides until re-run).
    first = data.draw(st.integers(0, len(planned) - 1))
    refused = {planned[first], *data.draw(st.lists(st.sampled_from(planned[first:]), max_size=1))}
    world = ConcreteWorld(
        start,
        placed_words(instruction, pc),
        base_word,
        lambda va, access: (va, access) in refused,
    )
    expected = backup.run(world, variant)
    assert expected is not None and expected.clean is not None
    event(f"faulted at {expected.result.fault_point}")
    # The concrete scenario is what isa.execute says, through a port of its own.
    faulted = isa.execute(start, RefusingPort(world.memory, refused))
    assert isinstance(faulted, isa.Faulted)
    assert faulted.fault_point == expected.result.fault_point
    assert expected.left == (start if variant == "precise" else faulted.state)
    completed = isa.execute(start, RefusingPort(world.memory, set()))
    assert isinstance(completed, isa.Completed)
    assert (expected.clean.state, expected.clean.step.writes) == (completed.state, completed.writes)

    symbolic = backup.machine(form)
    bindings = binder(symbolic, form, instruction, world, refused)
    paths = backup.explore(lambda: backup.run(symbolic, variant))
    taken = [done for condition, done in paths if z3.is_true(bindings(condition))]
    assert len(taken) == 1, "exactly one path holds for concrete values"
    (done,) = taken
    assert done is not None
    assert evaluate(without_memory(done), bindings) == without_memory(expected)
    for prop in backup.PROPERTIES:
        assert not breaks(expected, variant, prop)
        assert z3.is_false(bindings(backup.violations(done, variant)[prop]))


def without_memory(done: backup.Run) -> backup.Run:
    """``done`` without the memories after its runs (a z3 array or a dict: compared by
    the properties, not here)."""

    def strip(ran: backup.Rerun | None) -> backup.Rerun | None:
        return None if ran is None else dataclasses.replace(ran, memory=None)

    return dataclasses.replace(done, again=strip(done.again), clean=strip(done.clean))


def binder(
    symbolic: backup.Machine,
    form: Instruction,
    instruction: Instruction,
    world: ConcreteWorld,
    refused: set[tuple[int, Access]],
) -> Callable[[Any], Any]:
    """A function giving a z3 term's value when the symbols take the concrete world's values."""
    bv = z3.BitVecSort(backup.WIDTH)
    pairs = [(backup._term(s), z3.BitVecVal(v, backup.WIDTH))
             for s, v in zip(symbolic.start.regs, world.start.regs, strict=True)]  # fmt: skip
    pairs.append((backup._term(symbolic.start.pc), z3.BitVecVal(world.start.pc, backup.WIDTH)))
    pairs.append(
        (backup._term(symbolic.start.flags), z3.BitVecVal(world.start.flags, backup.WIDTH))
    )
    for sym_op, op in ((form.a, instruction.a), (form.b, instruction.b)):
        if sym_op.mode in isa.EXTENSION_MODES:
            pairs.append((backup._term(sym_op.value), z3.BitVecVal(op.value, backup.WIDTH)))
    address = z3.Const("address", bv)
    memory: Any = z3.Lambda([address], address * 0x9E37_79B1 + 0x55)
    for va, word in world.memory.items():
        memory = z3.Store(memory, va, word)
    pairs.append((symbolic.memory, memory))
    functions = []
    for access, predicate in symbolic.faults.items():
        hits = [z3.Var(0, bv) == va for va, a in refused if a is access]
        functions.append((predicate, z3.Or(*hits) if hits else z3.BoolVal(False)))

    def bind(term: Any) -> Any:
        return z3.simplify(z3.substitute_funs(z3.substitute(term, *pairs), *functions))

    return bind
