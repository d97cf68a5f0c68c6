"""z3 proofs of instruction backup: every instruction form, fault point and restart variant.

Each obligation takes one opcode with one pair of operand modes (a *form
class*, e.g. ``MOV (rA)+, -(rB)``) and one restart variant, and runs the code
that really runs, on symbolic values:

1. the CPU (:meth:`pagingcheck.model.cpu.CPU.step`, so :func:`isa.execute`
   and the CPU's fault handling for the variant) runs the instruction from a
   start state whose registers, pc, flags and extension words are z3 terms,
   over a memory of z3 words in which any access may fault;
2. the reference kernel saves the registers, reads the trap frame (decoding
   the instruction with :func:`pagingcheck.impl.lib.restart.locate_fault`
   under the decode variant) and backs the instruction up
   (:func:`pagingcheck.impl.reference.fault.backup`, so
   :func:`~pagingcheck.impl.lib.restart.back_up`);
3. the CPU runs the backed-up state again, now that every page is present,
   and a second CPU runs the start state on the same memory, never faulting.

Two properties, each an obligation:

* *restores the start*: the backed-up state is the start state (registers,
  pc, flags) and the kernel learnt the access that faulted (address and
  kind; under decode, also the fault point the hardware took);
* *re-run equals a fault-free run*: the re-run's state, memory write, system
  call and final memory equal the fault-free run's.

Where the code branches on a symbolic value (does this access fault? is the
result zero? is a branch taken?) the whole scenario is run again for each
outcome (:func:`explore`), and each run's path condition is kept, so the
obligation covers every path. Whether an access faults is an uninterpreted
predicate of its address and kind, the same for the hardware and for the
kernel's probes: the address space does not change between the fault and
the kernel's decoding, which the kernel guarantees (it decodes before it
changes any mapping). Every register pattern of the form class (distinct
registers, and one register for both operands where :func:`isa.illegal_reason`
allows it) is covered, and every fault point arises from the paths.

Each obligation is also shown to be *refutable*: some seeded mutant
(:data:`MUTANTS`) of the ISA, the CPU or the kernel makes z3 find a
counterexample; an obligation no mutant refutes is ``unknown``, and so is
one whose form has a fault point (by :func:`isa.accesses`) that no
satisfiable path reaches.

A run the proof cannot follow (a kernel decoding at another address than
the instruction's, a re-run from another word than the instruction's: the
code decodes only a concrete word 0) counts as broken in a proof. A
refutation leaves the first out and follows the second assuming a NOP where
it resumes, so each counterexample is a run followed to its end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar, cast

import z3

from pagingcheck.checks.proofs.core import Outcome, solve
from pagingcheck.impl.lib import restart
from pagingcheck.impl.mutants import locate_blames_first_push
from pagingcheck.impl.reference import fault as kernel
from pagingcheck.impl.reference.tables import FaultRecord
from pagingcheck.model import isa
from pagingcheck.model.config import RESTART_VARIANTS, HardwareConfig
from pagingcheck.model.cpu import CPU, StepResult
from pagingcheck.model.errors import InternalError
from pagingcheck.model.isa import WORD_MASK, ArchState, Instruction, Mode, Op, Operand
from pagingcheck.model.traps import Access, Fault, TrapFrame, TrapKind

#: Bits of a machine word: symbolic words are z3 bit-vectors of this width, so the
#: code's ``& WORD_MASK`` is what z3's wrap-around arithmetic already does.
WIDTH = WORD_MASK.bit_length()

#: A form class explored into more paths than this is a bug in the exploration.
MAX_PATHS = 4096

#: The word a refutation assumes where a broken backup resumes outside the instruction.
NOP_WORD = isa.encode(Instruction(Op.NOP))[0]

RESTORES = "restores the start"
RERUNS = "re-run equals a fault-free run"
PROPERTIES = (RESTORES, RERUNS)


# -- symbolic words: the real code computes with them; where it branches, we fork ------------


def _term(value: Any) -> Any:
    """The z3 term of a word, a condition, or a plain int or bool."""
    if isinstance(value, Sym):
        return value.term
    if isinstance(value, bool):
        return z3.BoolVal(value)
    if isinstance(value, int):
        return _constant(value)
    raise TypeError(f"backup proofs: cannot make a z3 term of {value!r}")


@functools.lru_cache(maxsize=1024)
def _constant(value: int) -> Any:
    # The code uses a few constants (masks, shifts, deltas) over and over.
    return z3.BitVecVal(value, WIDTH)


#: Simplified forms of the terms met so far, by z3's structural id (each entry keeps its
#: term alive, so no id is reused for another term); emptied before each exploration.
_SIMPLIFIED: dict[int, tuple[Any, Any]] = {}


def simplified(term: Any) -> Any:
    """``z3.simplify(term)``, computed once per term."""
    known = _SIMPLIFIED.get(term.get_id())
    if known is None:
        known = _SIMPLIFIED[term.get_id()] = (term, z3.simplify(term))
    return known[1]


class Sym:
    """A machine word or a condition as a z3 term, standing in for a Python int or bool.

    Arithmetic builds terms modulo 2**32 and comparisons are unsigned, as the
    model's words are ints in 0..WORD_MASK (a Hypothesis test checks that the
    symbolic runs agree with concrete ones). Where the code needs a plain
    value (``if``, ``not``, an index), :func:`decide` answers: the value if the
    term simplifies to a constant, else the current exploration's choice.
    """

    __slots__ = ("term",)

    def __init__(self, term: Any) -> None:
        self.term = term

    def _bin(self, other: Any, op: Callable[[Any, Any], Any]) -> Sym:
        return Sym(op(self.term, _term(other)))

    def _rbin(self, other: Any, op: Callable[[Any, Any], Any]) -> Sym:
        return Sym(op(_term(other), self.term))

    def __add__(self, other: Any) -> Sym:
        return self._bin(other, lambda a, b: a + b)

    def __radd__(self, other: Any) -> Sym:
        return self._rbin(other, lambda a, b: a + b)

    def __sub__(self, other: Any) -> Sym:
        return self._bin(other, lambda a, b: a - b)

    def __rsub__(self, other: Any) -> Sym:
        return self._rbin(other, lambda a, b: a - b)

    def __and__(self, other: Any) -> Sym:
        return self._bin(other, lambda a, b: a & b)

    def __rand__(self, other: Any) -> Sym:
        return self._rbin(other, lambda a, b: a & b)

    def __or__(self, other: Any) -> Sym:
        return self._bin(other, lambda a, b: a | b)

    def __ror__(self, other: Any) -> Sym:
        return self._rbin(other, lambda a, b: a | b)

    def __lshift__(self, other: Any) -> Sym:
        return self._bin(other, lambda a, b: a << b)

    def __rshift__(self, other: Any) -> Sym:
        return self._bin(other, z3.LShR)

    def __neg__(self) -> Sym:
        return Sym(-self.term)

    def __eq__(self, other: object) -> Sym:  # type: ignore[override]
        return self._bin(other, lambda a, b: a == b)

    def __ne__(self, other: object) -> Sym:  # type: ignore[override]
        return self._bin(other, lambda a, b: a != b)

    def __lt__(self, other: Any) -> Sym:
        return self._bin(other, z3.ULT)

    def __le__(self, other: Any) -> Sym:
        return self._bin(other, z3.ULE)

    def __gt__(self, other: Any) -> Sym:
        return self._bin(other, z3.UGT)

    def __ge__(self, other: Any) -> Sym:
        return self._bin(other, z3.UGE)

    def __bool__(self) -> bool:
        return decide(self.term if z3.is_bool(self.term) else self.term != 0)

    def __index__(self) -> int:
        value = simplified(self.term)
        if not z3.is_bv_value(value):
            raise TypeError(f"backup proofs: {self.term} is not a constant, cannot index with it")
        return int(value.as_long())

    def __format__(self, spec: str) -> str:
        # A constant prints as its number (the ISA names fault points f"fetch{k}"); any
        # other term as itself, for messages.
        value = simplified(self.term)
        return format(value.as_long(), spec) if z3.is_bv_value(value) else str(self.term)

    # Unhashable: a dict or cache lookup (an Enum's value table, say) would compare by
    # hash and silently miss; failing loudly is the only safe answer.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Sym({self.term})"


class _Exploration:
    """One run of a scenario: the choices it takes at symbolic branches, and their conditions.

    The first ``len(prefix)`` choices are replayed from ``prefix``, later ones take
    the true side. A condition met again (the same term, or its negation) is answered
    as before, so the hardware and the kernel's probe of one access agree without a fork.
    """

    def __init__(self, prefix: list[bool]) -> None:
        self.prefix = prefix
        self.taken: list[bool] = []
        self.conditions: list[Any] = []
        self.known: dict[int, bool] = {}

    def choose(self, condition: Any) -> bool:
        known = self.known.get(condition.get_id())
        if known is not None:
            return known
        turn = len(self.taken)
        choice = self.prefix[turn] if turn < len(self.prefix) else True
        self.taken.append(choice)
        self.conditions.append(condition if choice else z3.Not(condition))
        self.known[condition.get_id()] = choice
        self.known[simplified(z3.Not(condition)).get_id()] = not choice
        return choice


_ACTIVE: list[_Exploration] = []


def decide(condition: Any) -> bool:
    """A plain bool for a z3 condition: its value if it simplifies to one, else the choice
    of the exploration under way (none under way: TypeError, as a leak must fail loudly)."""
    simple = simplified(condition)
    if z3.is_true(simple):
        return True
    if z3.is_false(simple):
        return False
    if not _ACTIVE:
        raise TypeError(f"backup proofs: {condition} is symbolic outside an exploration")
    return _ACTIVE[-1].choose(simple)


T = TypeVar("T")


def explore(scenario: Callable[[], T]) -> list[tuple[Any, T]]:
    """Run ``scenario`` once per path through its symbolic branches (depth first).

    Returns each path's condition (a z3 conjunction) and the scenario's result on it;
    the conditions are disjoint and together cover every case.
    """
    paths: list[tuple[Any, T]] = []
    prefix: list[bool] = []
    while True:
        run = _Exploration(prefix)
        _ACTIVE.append(run)
        try:
            result = scenario()
        finally:
            _ACTIVE.pop()
        paths.append((z3.And(*run.conditions), result))
        taken = run.taken
        while taken and not taken[-1]:
            taken.pop()
        if not taken:
            return paths
        if len(paths) >= MAX_PATHS:
            raise InternalError(f"backup proofs: more than {MAX_PATHS} paths")
        prefix = [*taken[:-1], False]


# -- the symbolic machine: registers, memory, and which accesses fault -------------------------


class World(Protocol):
    """An instruction's surroundings: its start state, memory, and which accesses fault.

    :class:`Machine` is the symbolic one the proofs use; the tests run the same
    scenario on concrete ones and compare.
    """

    @property
    def start(self) -> ArchState:
        """The state at the start of the instruction."""
        ...

    @property
    def memory(self) -> Any:
        """Every word of memory before the instruction runs."""
        ...

    def word(self, memory: Any, va: Any) -> Any:
        """The word at ``va`` of ``memory``."""
        ...

    def store(self, memory: Any, va: Any, value: Any) -> Any:
        """``memory`` with ``value`` at ``va``."""
        ...

    def faulting(self, va: Any, access: Access) -> bool:
        """Whether this access faults."""
        ...

    def starts_instruction(self, pc: Any) -> bool:
        """Whether a run from ``pc`` can be followed: it fetches a word 0 that decodes."""
        ...

    def resuming(self, pc: Any) -> tuple[World, Any]:
        """A world in which a run from ``pc`` can be followed, and what it assumes
        (a z3 condition; true when this world already can)."""
        ...


@dataclass(frozen=True)
class Machine:
    """One instruction placed at a symbolic pc over symbolic memory.

    ``memory`` is the z3 array of every word before the instruction runs; the
    instruction's words lie in it at ``pc``, ``pc+1``, ... (:meth:`facts`).
    ``faults[access]`` is the predicate "an access of that kind to this address
    faults", the same for the hardware and for the kernel's probes.
    """

    instruction: Instruction
    start: ArchState
    memory: Any
    faults: dict[Access, Any]
    pinned: tuple[tuple[Any, int], ...] = ()

    @property
    def words(self) -> tuple[Any, ...]:
        """The instruction's words: word 0 (concrete: it says what the instruction is),
        then its extension words (symbolic)."""
        return isa.encode(self.instruction)

    def facts(self) -> list[Any]:
        """Memory holds the instruction's words at its pc; and a PUSHM cannot write them
        (text is never writable), for a PUSHM that rewrote its own word before a fault
        would run another instruction when restarted, which no backup can help."""
        held = [
            z3.Select(self.memory, _term(self.start.pc + k)) == _term(word)
            for k, word in enumerate(self.words)
        ]
        if self.instruction.op is not Op.PUSHM:
            return held
        return [*held, self.faults[Access.WRITE](_term(self.start.pc))]

    def offset(self, va: Any) -> int | None:
        """Which of the instruction's words ``va`` is, when it is ``pc + k`` as a term."""
        offset = simplified(_term(va) - _term(self.start.pc))
        if z3.is_bv_value(offset) and offset.as_long() < len(self.words):
            return int(offset.as_long())
        return None

    def word(self, memory: Any, va: Any) -> Any:
        """The word at ``va`` of ``memory``: an instruction word where ``va`` is
        ``pc + k`` (so word 0 stays concrete for decoding), a pinned word where
        :meth:`resuming` pinned one, else a symbolic word."""
        for where, word in self.pinned:
            if z3.is_true(simplified(_term(va) == where)):
                return word
        k = self.offset(va)
        return Sym(z3.Select(memory, _term(va))) if k is None else self.words[k]

    def store(self, memory: Any, va: Any, value: Any) -> Any:
        """``memory`` with ``value`` at ``va``."""
        return z3.Store(memory, _term(va), _term(value))

    def faulting(self, va: Any, access: Access) -> bool:
        """Whether this access faults (a symbolic branch)."""
        return decide(self.faults[access](_term(va)))

    def starts_instruction(self, pc: Any) -> bool:
        """Whether ``pc`` is the instruction's own (as a term): only its word 0 is
        concrete, and the code decodes only a concrete word."""
        return self.offset(pc) == 0

    def resuming(self, pc: Any) -> tuple[Machine, Any]:
        """This machine if a run from ``pc`` is the instruction's; else one where the
        word at ``pc`` is pinned to a NOP, assuming memory (or the extension word)
        holds one there. Only a refutation uses such a run: assuming more can only
        make its counterexample rarer, never wrong."""
        if self.starts_instruction(pc):
            return self, z3.BoolVal(True)
        assumed = _term(self.word(self.memory, pc)) == _term(NOP_WORD)
        return dataclasses.replace(self, pinned=((_term(pc), NOP_WORD),)), assumed


def machine(instruction: Instruction) -> Machine:
    """Fresh symbols for every register, the pc, the flags, memory and the fault predicate."""
    word = z3.BitVecSort(WIDTH)
    regs = tuple(Sym(z3.BitVec(f"r{i}", WIDTH)) for i in range(isa.REGISTERS))
    pc, flags = Sym(z3.BitVec("pc", WIDTH)), Sym(z3.BitVec("flags", WIDTH))
    # The model's state holds ints; Sym stands in for them (see Sym's docstring).
    start = ArchState(cast(tuple[int, ...], regs), cast(int, pc), cast(int, flags))
    faults = {
        access: z3.Function(f"faults_{access.value}", word, z3.BoolSort()) for access in Access
    }
    return Machine(instruction, start, z3.Array("memory", word, word), faults)


class Memory:
    """Physical memory as the CPU sees it (read, write), over the world's memory.

    Virtual and physical addresses coincide: translation is the translator's fault
    or success, nothing more, so a write lands in the word the proof reads back.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.contents = world.memory

    def read(self, pa: Any) -> Any:
        """The word at ``pa``."""
        return self.world.word(self.contents, pa)

    def write(self, pa: Any, value: Any) -> None:
        """Store ``value`` at ``pa``."""
        self.contents = self.world.store(self.contents, pa, value)


class Translator:
    """The MMU: an access faults where the machine's fault predicate says (or never,
    once every page is present); otherwise its physical address is its virtual one."""

    def __init__(self, world: World, present: bool = False) -> None:
        self.world = world
        self.present = present

    def translate(self, memory: Any, va: int, access: Access) -> int | Fault:
        """The address, or the fault."""
        if not self.present and self.world.faulting(va, access):
            return Fault(TrapKind.PAGE_FAULT, va, access)
        return va


class KernelPort:
    """What the reference kernel's fault steps use of its hardware port: the saved
    registers, and PROBE and READ answered by the same translator and memory."""

    def __init__(self, cpu: CPU, translator: Translator, memory: Memory) -> None:
        self.cpu = cpu
        self.translator = translator
        self.memory = memory

    def context(self) -> ArchState:
        """The registers as the trap left them."""
        return self.cpu.state

    def probe(self, va: Any, access: Access) -> Any:
        """What the access would do now: its physical address or its fault."""
        return self.translator.translate(self.memory, va, access)

    def read(self, pa: Any) -> Any:
        """The word at a physical address."""
        return self.memory.read(pa)


# -- one scenario: fault, back up, run again ----------------------------------------------------


def config(variant: str) -> HardwareConfig:
    """A hardware configuration with this restart variant (its sizes do not matter here)."""
    return HardwareConfig().replace(restart=variant)


def _same(a: Any, b: Any) -> Any:
    return _term(a) == _term(b)


def same_state(a: ArchState, b: ArchState) -> Any:
    """Registers, pc and flags equal, as a z3 condition."""
    pairs = [*zip(a.regs, b.regs, strict=True), (a.pc, b.pc), (a.flags, b.flags)]
    # Most fields are the very same term on both sides (registers nothing changed):
    # leaving them out keeps the condition, and the time to build it, small.
    differing = [_same(x, y) for x, y in pairs if not _identical(x, y)]
    return z3.And(*differing) if differing else z3.BoolVal(True)


def _identical(a: Any, b: Any) -> bool:
    """The same value or the same z3 term (structurally, so equal on every model)."""
    if a is b:
        return True
    if isinstance(a, Sym) or isinstance(b, Sym):
        return bool(_term(a).eq(_term(b)))
    return bool(a == b)


def same_step(a: StepResult, b: StepResult) -> Any:
    """Both retired, with the same memory write and system call."""
    if not (a.retired and b.retired) or a.syscall != b.syscall:
        return z3.BoolVal(False)
    if len(a.writes) != len(b.writes):
        return z3.BoolVal(False)
    pairs = zip(a.writes, b.writes, strict=True)
    same = [_same(x, y) for one, other in pairs for x, y in zip(one, other, strict=True)]
    return z3.And(*same) if same else z3.BoolVal(True)


@dataclass(frozen=True)
class Rerun:
    """A run that does not fault (every page present): its step, then state and memory."""

    step: StepResult
    state: ArchState
    memory: Any


def run_present(cpu: CPU, world: World, contents: Any) -> Rerun:
    """Run ``cpu`` one instruction on memory ``contents`` with every page present."""
    memory = Memory(world)
    memory.contents = contents
    step = cpu.step(Translator(world, present=True), cast(Any, memory))
    return Rerun(step, cpu.state, memory.contents)


def fault_free(world: World, variant: str) -> Rerun:
    """The start state run on the untouched memory, never faulting."""
    cpu = CPU(config(variant))
    cpu.resume(world.start)
    return run_present(cpu, world, world.memory)


@dataclass(frozen=True)
class Run:
    """What one path of the scenario computed, for the properties and for the tests.

    ``left`` is the state the CPU left at the fault, ``record`` what the kernel read
    from the trap (None when its decoder found no fault point, or several),
    ``backed`` the state it backed up to; ``again`` is the re-run, ``clean`` the
    fault-free run (None when :func:`run` was told the caller runs it).
    ``followed`` are the properties whose runs the proof could follow to the end: not
    a decoder starting at another word than the instruction's; nor a re-run, unless
    run under ``assumed``, which :meth:`World.resuming` needed to follow it.
    """

    start: ArchState
    result: StepResult
    left: ArchState
    trap: TrapFrame
    record: FaultRecord | None
    backed: ArchState | None = None
    again: Rerun | None = None
    clean: Rerun | None = None
    followed: tuple[str, ...] = PROPERTIES
    assumed: Any = True


def run(world: World, variant: str, clean: bool = True) -> Run | None:
    """The scenario on the current path; None when the instruction did not fault.

    The CPU runs the instruction; on a fault the kernel's fault steps 2, 3 and 8
    (save registers, read the trap, back up) run on what the CPU left; then the
    CPU runs the backed-up state with every page present, and (if ``clean``) a
    second CPU runs the start state on the untouched memory, never faulting. The
    proofs run that one once per form (:func:`explored`): it is the same on every path.
    """
    memory = Memory(world)
    cpu = CPU(config(variant))
    cpu.resume(world.start)
    result = cpu.step(Translator(world), cast(Any, memory))
    if result.fault is None or cpu.trap is None:
        return None
    left, trap = cpu.state, cpu.trap
    if trap.va is None and not world.starts_instruction(trap.pc):
        # A kernel decoding from another address than the instruction's parses some
        # other word, which we cannot follow: counted as broken (see violation()).
        return Run(world.start, result, left, trap, None, followed=())
    port = KernelPort(cpu, Translator(world), memory)
    context = kernel.save_registers(cast(Any, port))
    try:
        record = kernel.read_trap(cast(Any, port), trap)
    except InternalError:  # the decoder found several fault points
        record = None
    if record is None:
        return Run(world.start, result, left, trap, None)
    backed = kernel.backup(cast(Any, SimpleNamespace(config=cpu.config)), context, record)
    # Only a broken backup resumes elsewhere; what runs there is not this instruction,
    # so the re-run is followed only under an assumption, and counts as broken in a
    # proof (see violation()).
    resumed, assumed = world.resuming(backed.pc)
    followed = PROPERTIES if resumed is world else (RESTORES,)
    cpu.resume(backed)
    again = run_present(cpu, resumed, memory.contents)
    reference = fault_free(world, variant) if clean else None
    return Run(world.start, result, left, trap, record, backed, again, reference, followed, assumed)


def restore_violation(done: Run, variant: str) -> Any:
    """The backup did not give the start state, or the kernel did not learn the fault."""
    record, fault = done.record, done.result.fault
    if record is None or done.backed is None or fault is None:
        return z3.BoolVal(True)
    learnt = [_same(record.va, fault.va), z3.BoolVal(record.access is fault.access)]
    if variant == "decode":
        learnt.append(z3.BoolVal(record.point == done.result.fault_point))
    return z3.Not(z3.And(same_state(done.backed, done.start), *learnt))


def rerun_violation(done: Run, clean: Rerun) -> Any:
    """The re-run differs from the fault-free run ``clean``: state, step or memory."""
    if done.again is None:  # no backup, or it resumed elsewhere
        return z3.BoolVal(True)
    again = done.again
    return z3.Not(
        z3.And(
            same_state(again.state, clean.state),
            same_step(again.step, clean.step),
            _same_memory(again.memory, clean.memory),
        )
    )


def _same_memory(a: Any, b: Any) -> Any:
    return z3.BoolVal(a == b) if isinstance(a, dict) else a == b


def violations(done: Run, variant: str) -> dict[str, Any]:
    """Each property's violation on this path, as a z3 condition (``done.clean`` is set)."""
    assert done.clean is not None or done.again is None
    rerun = z3.BoolVal(True) if done.clean is None else rerun_violation(done, done.clean)
    return {RESTORES: restore_violation(done, variant), RERUNS: rerun}


def scenario(
    world: Machine, variant: str, clean: list[tuple[Any, Rerun]]
) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """The fault point, and each property's violation for a proof and for a refutation,
    on this path (None: no fault). ``clean`` is every path of the fault-free run, with
    its condition.

    They differ only where the proof could not follow the run: a proof counts such
    a path as broken, a refutation needs the run followed (under its assumption)."""
    done = run(world, variant, clean=False)
    if done is None:
        return None
    rerun = z3.Or(*(z3.And(when, rerun_violation(done, ran)) for when, ran in clean))
    found = {RESTORES: restore_violation(done, variant), RERUNS: rerun}
    proof = {p: v if p in done.followed else z3.BoolVal(True) for p, v in found.items()}
    refutation = {p: z3.BoolVal(False) for p in PROPERTIES}
    if RESTORES in done.followed:
        refutation = {RESTORES: found[RESTORES], RERUNS: z3.And(done.assumed, rerun)}
    return str(done.result.fault_point), proof, refutation


# -- forms: every opcode, mode pair and register pattern ---------------------------------------


@dataclass(frozen=True)
class FormClass:
    """An opcode with a mode for each operand; its forms vary the registers."""

    op: Op
    amode: Mode
    bmode: Mode

    @property
    def name(self) -> str:
        """As written, with register letters: ``MOV (rA)+, -(rB)``."""
        operands = [
            _spelling(mode, letter)
            for mode, letter in ((self.amode, "A"), (self.bmode, "B"))
            if mode is not Mode.NONE
        ]
        if self.op is Op.SYS:
            operands = ["n"]
        if self.op is Op.PUSHM:
            operands = [*operands, "{list}"]
        return " ".join([self.op.name, ", ".join(operands)]).strip()

    def forms(self) -> list[Instruction]:
        """Each legal register pattern: one register (r7) per operand that names one;
        for two, distinct (r0, r7) and shared (r7, r7)."""
        found: list[Instruction] = []
        both = _named(self.amode) and _named(self.bmode)
        for a_reg, b_reg in ((0, 7), (7, 7)) if both else ((7, 7),):
            a = _operand(self.amode, a_reg, "a")
            b = _operand(self.bmode, b_reg, "b")
            # SYS 1; a PUSHM of three registers, so a fault can follow one or two writes
            number = {Op.SYS: 1, Op.PUSHM: 0b111}.get(self.op, 0)
            if isa.illegal_reason(self.op, a, b, number) is None:
                instruction = Instruction(self.op, a, b, number)
                if instruction not in found:
                    found.append(instruction)
        return found


def _named(mode: Mode) -> bool:
    return mode in (Mode.REG, Mode.IND, Mode.INC, Mode.DEC)


def _operand(mode: Mode, reg: int, tag: str) -> Operand:
    """An operand of ``mode``: register ``reg`` if it names one (r7 if it is the only one),
    a symbolic extension word ``ext_a``/``ext_b`` if it has one."""
    if mode is Mode.NONE:
        return isa.NO_OPERAND
    if mode in isa.EXTENSION_MODES:
        return Operand(mode, 0, cast(int, Sym(z3.BitVec(f"ext_{tag}", WIDTH))))
    return Operand(mode, reg)


def _spelling(mode: Mode, letter: str) -> str:
    return {
        Mode.REG: f"r{letter}",
        Mode.IND: f"(r{letter})",
        Mode.INC: f"(r{letter})+",
        Mode.DEC: f"-(r{letter})",
        Mode.IMM: "#imm",
        Mode.ABS: "@addr",
    }[mode]


def form_classes() -> list[FormClass]:
    """Every opcode with every pair of modes :data:`isa.OPERAND_MODES` allows it."""
    found = []
    # In opcode order: the table is built partly from sets, whose order is not the same in
    # every process (each would otherwise list, and prove, the forms in its own order).
    for op, (first, second) in sorted(isa.OPERAND_MODES.items(), key=lambda item: item[0].value):
        for amode, bmode in itertools.product(
            sorted(first, key=lambda m: m.value), sorted(second, key=lambda m: m.value)
        ):
            if FormClass(op, amode, bmode).forms():
                found.append(FormClass(op, amode, bmode))
    return found


def spell(instruction: Instruction) -> str:
    """An instruction as written, extension words as ``#imm`` / ``@addr``."""
    parts = []
    for operand in (instruction.a, instruction.b):
        if operand.mode is not Mode.NONE:
            parts.append(_spelling(operand.mode, str(operand.reg)))
    if instruction.op is Op.PUSHM:
        parts.append("{" + ", ".join(f"r{r}" for r in sorted(instruction.pushed)) + "}")
    text = ", ".join(parts)
    if instruction.op is Op.SYS:
        text = str(instruction.number)
    return f"{instruction.op.name} {text}".strip()


# -- seeded mutants: each obligation must be refutable ------------------------------------------


@dataclass(frozen=True)
class Mutant:
    """A seeded bug: replaces one attribute of one real module or class while active.

    ``variants`` are the restart variants whose code path it changes.
    """

    name: str
    variants: tuple[str, ...]
    owner: Any
    attribute: str
    replacement: Callable[[Callable[..., Any]], Callable[..., Any]]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The bug in place, the real code restored afterwards."""
        original = getattr(self.owner, self.attribute)
        setattr(self.owner, self.attribute, self.replacement(original))
        try:
            yield
        finally:
            setattr(self.owner, self.attribute, original)


def _undo_adding(_real: Callable[..., Any]) -> Callable[..., Any]:
    def undo(state: ArchState, effects: isa.SideEffects) -> ArchState:
        regs = list(state.regs)
        for r, delta in reversed(effects):
            regs[r] = (regs[r] + delta) & WORD_MASK
        return dataclasses.replace(state, regs=tuple(regs))

    return undo


def _undo_last_only(real: Callable[..., Any]) -> Callable[..., Any]:
    return lambda state, effects: real(state, effects[-1:])


def _back_up_keeping_pc(_real: Callable[..., Any]) -> Callable[..., Any]:
    return lambda state, fault_pc, effects: restart.undo_side_effects(state, effects)


def _replay_without_destination(real: Callable[..., Any]) -> Callable[..., Any]:
    return lambda instruction, point: real(instruction, "src" if point == "dst" else point)


def _replay_without_source(real: Callable[..., Any]) -> Callable[..., Any]:
    def replay(instruction: Instruction, point: str) -> isa.SideEffects:
        made: isa.SideEffects = real(instruction, point)
        by_source: isa.SideEffects = real(instruction, "src") if point == "dst" else made
        return made[len(by_source) :] if point in ("src", "dst") else made

    return replay


def _locate_unchecked(real: Callable[..., Any]) -> Callable[..., Any]:
    """locate_fault trying dst before src and taking the first point whose own access
    faults, without checking that the accesses before it succeed."""

    def locate(fault_pc: Any, state: ArchState, probe: restart.Probe) -> Any:
        found = real(fault_pc, state, probe)
        if found is None or found.instruction is None:
            return found
        for point in ("dst", "src"):
            effects = isa.replay_side_effects(found.instruction, point)
            start = restart.back_up(state, fault_pc, effects)
            for where, va, access in isa.accesses(found.instruction, start):
                answer = probe(va, access) if where == point else None
                if isinstance(answer, Fault):
                    return restart.Located(point, answer, found.instruction, effects)
        return found

    return locate


def _push_moving_as_it_goes(_real: Callable[..., Any]) -> Callable[..., Any]:
    """PUSHM as the 68000's MOVEM: the stack register moves before each write, and a
    fault leaves it moved with no record of how far."""

    def push(instruction: Instruction, state: ArchState, next_pc: int, port: Any) -> Any:
        regs = list(state.regs)
        stack = instruction.a.reg
        writes: list[tuple[int, int]] = []
        for r in instruction.pushed:
            regs[stack] = (regs[stack] - 1) & WORD_MASK
            refused = port.store(regs[stack], state.regs[r])
            if refused is not None:
                left = ArchState(tuple(regs), next_pc, state.flags)
                return isa.Faulted(refused, left, (), "push", tuple(writes))
            writes.append((regs[stack], state.regs[r]))
        return isa.Completed(ArchState(tuple(regs), next_pc, state.flags), tuple(writes))

    return push


def _cpu_edit(
    edit: Callable[[CPU, ArchState, isa.Faulted], None],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A CPU whose fault handling is the real one followed by ``edit``."""

    def mutate(real: Callable[..., Any]) -> Callable[..., Any]:
        def take_fault(self: CPU, start: ArchState, outcome: isa.Faulted) -> None:
            real(self, start, outcome)
            edit(self, start, outcome)

        return take_fault

    return mutate


def _drop_last_effect(cpu: CPU, start: ArchState, outcome: isa.Faulted) -> None:
    if cpu.trap is not None and cpu.config.restart == "state_register":
        cpu.trap = dataclasses.replace(cpu.trap, state_register=cpu.trap.state_register[:-1])


def _precise_pc_only(cpu: CPU, start: ArchState, outcome: isa.Faulted) -> None:
    if cpu.config.restart == "precise":
        cpu.state = dataclasses.replace(outcome.state, pc=start.pc)


def _precise_registers_only(cpu: CPU, start: ArchState, outcome: isa.Faulted) -> None:
    if cpu.config.restart == "precise":
        cpu.state = dataclasses.replace(start, pc=outcome.state.pc)


def _trap_pc_advanced(cpu: CPU, start: ArchState, outcome: isa.Faulted) -> None:
    if cpu.trap is not None:
        cpu.trap = dataclasses.replace(cpu.trap, pc=outcome.state.pc)


def _save_without(field: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mutate(real: Callable[..., Any]) -> Callable[..., Any]:
        def save(port: Any) -> ArchState:
            state: ArchState = real(port)
            if field == "flags":
                return dataclasses.replace(state, flags=0)
            return dataclasses.replace(state, regs=(*state.regs[:-1], 0))

        return save

    return mutate


_UNDOING = ("state_register", "decode")

#: Seeded bugs in the code the proofs run, most specific first: the CPU's fault handling
#: per variant, the ISA's record of side effects as the decoder uses it, the decoder's
#: search, the kernel library's undo and backup, and last the kernel's saved context
#: (the only bugs that can break a fault at ``fetch0``, before anything changed).
MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "the state_register trap frame drops the last change",
        ("state_register",),
        CPU,
        "_take_fault",
        _cpu_edit(_drop_last_effect),
    ),
    Mutant(
        "precise hardware restores the pc only",
        ("precise",),
        CPU,
        "_take_fault",
        _cpu_edit(_precise_pc_only),
    ),
    Mutant(
        "precise hardware restores the registers only",
        ("precise",),
        CPU,
        "_take_fault",
        _cpu_edit(_precise_registers_only),
    ),
    Mutant(
        "replay_side_effects leaves out the destination's change",
        ("decode",),
        restart,
        "replay_side_effects",
        _replay_without_destination,
    ),
    Mutant(
        "replay_side_effects leaves out the source's change",
        ("decode",),
        restart,
        "replay_side_effects",
        _replay_without_source,
    ),
    Mutant(
        "locate_fault tries dst first and skips the earlier accesses",
        ("decode",),
        restart,
        "locate_fault",
        _locate_unchecked,
    ),
    Mutant(
        "locate_fault takes a PUSHM's first write for the faulting one",
        ("decode",),
        restart,
        "locate_fault",
        locate_blames_first_push,
    ),
    Mutant(
        "PUSHM moves its stack register before each write",
        _UNDOING,
        isa,
        "_push",
        _push_moving_as_it_goes,
    ),
    Mutant(
        "the trap frame's pc is the faulting word's",
        _UNDOING,
        CPU,
        "_take_fault",
        _cpu_edit(_trap_pc_advanced),
    ),
    Mutant(
        "undo takes back only the last change",
        _UNDOING,
        restart,
        "undo_side_effects",
        _undo_last_only,
    ),
    Mutant("undo adds the changes back", _UNDOING, restart, "undo_side_effects", _undo_adding),
    Mutant(
        "back_up leaves the pc where the fault left it",
        _UNDOING,
        restart,
        "back_up",
        _back_up_keeping_pc,
    ),
    Mutant(
        "the kernel saves the context without the flags",
        RESTART_VARIANTS,
        kernel,
        "save_registers",
        _save_without("flags"),
    ),
    Mutant(
        "the kernel saves the context without r7",
        RESTART_VARIANTS,
        kernel,
        "save_registers",
        _save_without("r7"),
    ),
)


# -- obligations -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    """One path of one form's scenario that faulted: where, when, and what broke."""

    form: Instruction
    point: str
    condition: Any
    broken: dict[str, Any]
    refuted: dict[str, Any]


@dataclass(frozen=True)
class Explored:
    """Every faulting path of every form of a class under one variant (and mutant)."""

    forms: tuple[Instruction, ...]
    paths: tuple[Path, ...]


#: Explorations kept: enough for one form class and variant under every mutant, so its two
#: properties share them, and no more, so a second ``prove`` run decides everything anew.
_KEPT = 2 * len(MUTANTS)


@functools.lru_cache(maxsize=_KEPT)
def explored(form_class: FormClass, variant: str, mutant: str | None = None) -> Explored:
    """Run the scenario on every path of every form of ``form_class``."""
    active = (
        next(m for m in MUTANTS if m.name == mutant).active()
        if mutant
        else contextlib.nullcontext()
    )
    forms = tuple(form_class.forms())
    paths = []
    _SIMPLIFIED.clear()
    with active:
        for instruction in forms:
            world = machine(instruction)
            facts = world.facts()
            clean = explore(functools.partial(fault_free, world, variant))
            for condition, result in explore(functools.partial(scenario, world, variant, clean)):
                if result is not None:
                    point, broken, refuted = result
                    condition = z3.And(*facts, condition)
                    paths.append(Path(instruction, point, condition, broken, refuted))
    return Explored(forms, tuple(paths))


def violation(found: Explored, prop: str, refuting: bool = False) -> Any:
    """Some path of some form on which ``prop`` fails.

    A path the proof cannot follow to its end counts as failing in a proof, so the
    proof never passes because of it; a mutant's counterexample (``refuting``) must
    be a run followed to its end, under the assumption that made it possible.
    """
    return z3.Or(
        *(
            z3.And(path.condition, (path.refuted if refuting else path.broken)[prop])
            for path in found.paths
        )
    )


def fault_points(instruction: Instruction) -> tuple[str, ...]:
    """Where the ISA says ``instruction`` can fault: the points of its accesses
    (:func:`isa.accesses`, on every path through its symbolic branches)."""
    start = machine(instruction).start
    seen = {p for _, made in explore(lambda: isa.accesses(instruction, start)) for p, _, _ in made}
    return tuple(p for p in isa.FAULT_POINTS if p in seen)


def reached(found: Explored, instruction: Instruction) -> tuple[str, ...]:
    """The fault points of ``instruction`` some satisfiable path of the exploration faults
    at: a point whose paths are all impossible would be proved only vacuously."""
    points = []
    for point in isa.FAULT_POINTS:
        conditions = [
            p.condition for p in found.paths if p.form == instruction and p.point == point
        ]
        if conditions and solve("", [z3.Or(*conditions)], want_sat=True).verdict == "proved":
            points.append(point)
    return tuple(points)


def unreached(found: Explored) -> list[str]:
    """Each form's fault points (by the ISA) that no satisfiable path reaches."""
    missing = []
    for form in found.forms:
        reachable = reached(found, form)
        missing += [f"{spell(form)} at {p}" for p in fault_points(form) if p not in reachable]
    return missing


def obligation_name(form_class: FormClass, variant: str, prop: str) -> str:
    """``backup: MOV (rA)+, -(rB) under decode restores the start``."""
    return f"backup: {form_class.name} under {variant} {prop}"


def refuting_mutant(form_class: FormClass, variant: str, prop: str) -> str | None:
    """The first seeded mutant of this variant under which z3 finds a counterexample."""
    for mutant in MUTANTS:
        if variant not in mutant.variants:
            continue
        found = explored(form_class, variant, mutant.name)
        if solve("", [violation(found, prop, refuting=True)], want_sat=True).verdict == "proved":
            return mutant.name
    return None


def backup_verdict(form_class: FormClass, variant: str, prop: str) -> Outcome:
    """The property on every path of every form of the class, proved, shown to reach every
    fault point the ISA has for it, and shown refutable."""
    began = time.perf_counter()
    name = obligation_name(form_class, variant, prop)
    found = explored(form_class, variant)
    outcome = solve(name, [violation(found, prop)], want_sat=False)
    forms = "; ".join(spell(i) for i in found.forms)
    points = ", ".join(fault_points(found.forms[0]))
    covered = f"forms {forms}; fault points {points}"
    if outcome.verdict != "proved":
        return dataclasses.replace(
            outcome, seconds=time.perf_counter() - began, detail=f"{covered}: {outcome.detail}"
        )
    missing = unreached(found) if prop == RESTORES else []
    mutant = refuting_mutant(form_class, variant, prop)
    seconds = time.perf_counter() - began
    if missing:
        return Outcome(name, "unknown", seconds, f"{covered}; never reached: {', '.join(missing)}")
    if mutant is None:
        return Outcome(name, "unknown", seconds, f"{covered}; no seeded mutant refutes it")
    return Outcome(name, "proved", seconds, f"{covered}; refuted when {mutant}")


def obligations() -> Iterator[Callable[[], Outcome]]:
    """Every backup obligation, lazily: each form class, variant and property."""
    for form_class in form_classes():
        for variant in RESTART_VARIANTS:
            for prop in PROPERTIES:
                yield functools.partial(backup_verdict, form_class, variant, prop)
